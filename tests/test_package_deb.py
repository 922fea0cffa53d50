"""The Debian package, as a ministry's package tooling installs it: built by deploy/debian/build.sh,
installed with `dpkg -i` on this machine's real root, run, upgraded with an edited conffile,
removed and purged (cleaned up whatever happens)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support.processes import free_port, stop_pid, wait_for
from support.promtool import check_metrics, promtool_path
from support.repo import ROOT
from support.web_auth_config import basic_auth_config

import minerwatch

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dpkg -i needs root (CI runs as root)"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="not a Debian system"),
]

CONFFILE = Path("/etc/minerwatch/minerwatch.yml")


def dpkg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dpkg", *args], capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def installed_version() -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "minerwatch"], capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.startswith("install ok installed"):
        return ""
    return result.stdout.split()[-1]


def build(version: str, out: Path) -> Path:
    result = subprocess.run(["sh", str(ROOT / "deploy/debian/build.sh"), "--version", version, "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    deb = Path(result.stdout.strip().splitlines()[-1])
    assert deb.is_file(), result.stdout
    return deb


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    if installed_version() or subprocess.run(["dpkg-query", "-W", "minerwatch"], capture_output=True).returncode == 0:
        pytest.skip("a minerwatch package is already on this machine: the test will not touch it")
    out = tmp_path_factory.mktemp("debs")
    first = build(f"{minerwatch.__version__}+test1", out)
    second = build(f"{minerwatch.__version__}+test2", out)
    yield first, second
    dpkg("--purge", "minerwatch")  # whatever failed above, the machine is left as found


def test_package_contents(debs):
    first, _ = debs
    fields = subprocess.run(["dpkg-deb", "-f", str(first)], capture_output=True, text=True, check=True).stdout
    depends = next(line for line in fields.splitlines() if line.startswith("Depends:"))
    # Debian's own python3 and libraries, not copies in the venv
    for package in ("python3 (>= 3.", "python3-psutil", "python3-click", "python3-yaml", "python3-bcrypt (>= 3.2)"):
        assert package in depends
    listing = subprocess.run(["dpkg-deb", "-c", str(first)], capture_output=True, text=True, check=True).stdout
    paths = {line.split()[5] for line in listing.splitlines()}
    for path in ("./opt/minerwatch/venv/bin/minerwatch", "./lib/systemd/system/minerwatch.service",
                 "./etc/minerwatch/minerwatch.yml", "./etc/default/minerwatch", "./usr/bin/minerwatch"):
        assert path in paths
    site = "./opt/minerwatch/venv/lib/python3.11/site-packages/"
    bundled = {p[len(site):].split("/")[0] for p in paths if p.startswith(site) and p.endswith(".dist-info/")}
    assert {b.split("-")[0] for b in bundled} == {"minerwatch", "google_re2", "nvidia_ml_py"}
    conffiles = subprocess.run(["dpkg-deb", "-I", str(first), "conffiles"], capture_output=True, text=True, check=True)
    assert conffiles.stdout.split() == ["/etc/minerwatch/minerwatch.yml", "/etc/default/minerwatch"]


def test_install_run_upgrade_remove_purge(debs, tmp_path):
    first, second = debs
    result = dpkg("-i", str(first))
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed_version() == f"{minerwatch.__version__}+test1"

    version = subprocess.run(["/usr/bin/minerwatch", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == f"minerwatch {minerwatch.__version__}", version
    subprocess.run(["getent", "passwd", "minerwatch"], check=True, capture_output=True)
    st = CONFFILE.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0
    assert Path("/etc/default/minerwatch").read_text().count("--config.file=/etc/minerwatch/minerwatch.yml") == 1

    # serve as the unit runs it: the minerwatch user, the packaged config, basic auth checked by
    # Debian's bcrypt (3.2), on Debian's python3
    web = Path(basic_auth_config(tmp_path, "prometheus", b"s3cret"))
    installed_web = Path("/etc/minerwatch/web.yml")
    shutil.copy(web, installed_web)
    os.chown(installed_web, 0, CONFFILE.stat().st_gid)
    os.chmod(installed_web, 0o640)
    port = free_port()
    proc = subprocess.Popen(
        ["setpriv", "--reuid=minerwatch", "--regid=minerwatch", "--clear-groups",
         "/opt/minerwatch/venv/bin/minerwatch", "serve", f"--web.listen-address=127.0.0.1:{port}",
         f"--config.file={CONFFILE}", f"--web.config.file={installed_web}", "--no-collector.network"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def scrape(auth: str = ""):
            request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
            try:
                with urllib.request.urlopen(request, timeout=20) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, ""
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                return None, ""

        assert wait_for(lambda: scrape()[0], timeout=60, what="the installed minerwatch to answer") == 401
        token = "Basic " + base64.b64encode(b"prometheus:s3cret").decode()
        code, text = scrape(token)
        assert code == 200
        check_metrics(promtool_path(), text)
        build_info = next(line for line in text.splitlines() if line.startswith("minerwatch_build_info{"))
        assert f'pythonversion="{subprocess.check_output(["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"], text=True).strip()}"' in build_info
        assert 'minerwatch_scrape_collector_success{collector="process"} 1.0' in text
    finally:
        stop_pid(proc)

    # upgrade: the administrator's edit of a conffile survives
    CONFFILE.write_text(CONFFILE.read_text() + "# edited on this host\n")
    result = dpkg("-i", "--force-confold", str(second))
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed_version() == f"{minerwatch.__version__}+test2"
    assert CONFFILE.read_text().endswith("# edited on this host\n")
    assert subprocess.run(["/usr/bin/minerwatch", "--version"], capture_output=True, timeout=60).returncode == 0

    # remove keeps the configuration, purge takes it
    result = dpkg("-r", "minerwatch")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not Path("/opt/minerwatch").exists() and not Path("/usr/bin/minerwatch").exists()
    assert CONFFILE.exists()
    result = dpkg("-P", "minerwatch")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not Path("/etc/minerwatch").exists() and not Path("/etc/default/minerwatch").exists()
    assert installed_version() == ""


def test_readme_virtualenv_install_works_as_written(tmp_path):
    """The README's "Install for real" virtualenv line, run on Debian's python3 with the path
    changed to a temporary folder: PEP 668 does not stand in its way, and the command runs."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Install for real"):]
    section = section[:section.index("\n## ", 5)]
    [line] = [l for l in re.findall(r"```sh\n(.*?)```", section, re.S)[1].splitlines() if "venv" in l]
    assert line.startswith("python3 -m venv /opt/minerwatch/venv && /opt/minerwatch/venv/bin/pip install .")
    venv = tmp_path / "venv"
    command = line.replace("/opt/minerwatch/venv", str(venv)).replace("python3 -m venv", "/usr/bin/python3 -m venv", 1)
    result = subprocess.run(["sh", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    version = subprocess.run([str(venv / "bin" / "minerwatch"), "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"minerwatch {minerwatch.__version__}", version
