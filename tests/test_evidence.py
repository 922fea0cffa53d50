"""`minerwatch evidence`: a bundle of a real miner stand-in talking to a real pool stand-in, and
`minerwatch evidence verify` catching every kind of change made after collection."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import pytest

from support.cli import minerwatch
from support.processes import wait_for
from support.wallets import MONERO_WALLET

SECRET = "s3cret-pool-pass"
ENV_SECRET = "env-value-never-copied"
CONTROL = re.compile("[\x00-\x1f\x7f]")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def offline_config(tmp_path, pool):
    """No DNS, no sniffer; the pool stand-in's address in an IOC file, so evidence is `list`."""
    iocs = tmp_path / "iocs.txt"
    iocs.write_text(f"127.0.0.1:{pool.port}\n")
    config = tmp_path / "minerwatch.yml"
    config.write_text(f"network:\n  ioc_files: [{iocs}]\n  sniffer: off\n  resolve_max_names: 0\n")
    return config


def start_miner(spawn, tmp_path, pool, name="xmrig"):
    workdir = tmp_path / f"work-{name.encode().hex()}"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps(
        {"donate-level": 1, "pools": [{"url": f"stratum+tcp://127.0.0.1:{pool.port}", "user": MONERO_WALLET}]}))
    (workdir / "notes.txt").write_text("nothing to see\n")
    env = dict(os.environ, POOL_PASS=ENV_SECRET)
    miner = spawn.start(name, ["-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET,
                               "-p", SECRET, "-t", "0"], cwd=workdir, env=env)
    wait_for(lambda: "login" in pool.methods(), what="the miner stand-in to log in")
    return miner, workdir


def collect(tmp_path, config, *args):
    out = tmp_path / "bundles"
    result = minerwatch("evidence", *args, f"--out={out}", "--interval=0", f"--config.file={config}",
                        f"--state.dir={tmp_path / 'state'}")
    assert result.returncode == 0, result.stderr
    bundles = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    return result, bundles


def test_bundle_of_a_running_miner(spawn, tmp_path, pool, offline_config):
    miner, workdir = start_miner(spawn, tmp_path, pool)
    result, bundles = collect(tmp_path, offline_config, f"--pid={miner.pid}", "--copy-exe")
    assert len(bundles) == 1
    bundle = bundles[0]
    doc = json.loads((bundle / "evidence.json").read_text())
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    assert f"pid {miner.pid} (xmrig): {bundle}  manifest sha256 {sha256(bundle / 'MANIFEST.json')}" \
        in result.stdout

    proc = doc["process"]
    assert (proc["pid"], proc["name"], proc["uid"]) == (miner.pid, "xmrig", os.getuid())
    assert proc["parents"][0]["pid"] == os.getpid()  # this test started it
    assert f"-p <redacted>" in proc["cmdline"] and MONERO_WALLET in proc["cmdline"]
    assert "POOL_PASS" in proc["environment_names"]
    assert proc["cwd"] == str(workdir)
    assert proc["threads"] >= 1 and proc["cpu_seconds"] >= 0
    assert any(f["target"].startswith("socket:[") for f in proc["open_files"])

    exe = doc["executable"]
    assert exe["path"] == os.path.realpath(sys.executable) and exe["deleted"] is False
    assert exe["sha256"] == sha256(Path(sys.executable).resolve())
    assert exe["size_bytes"] == Path(sys.executable).resolve().stat().st_size
    assert sha256(bundle / "executable") == exe["sha256"] and exe["copy_sha256_matches"] is True

    # The miner's config is copied byte for byte; other files of its directory are not.
    assert [c["path"] for c in doc["miner_config_files"]] == [str(workdir / "config.json")]
    copy = bundle / doc["miner_config_files"][0]["copy"]
    assert copy.read_bytes() == (workdir / "config.json").read_bytes()

    [conn] = [c for c in doc["network"]["connections"] if c["remote"] == f"127.0.0.1:{pool.port}"]
    assert conn["pool_evidence"][0]["kind"] == "list"
    assert {"miner_name", "pool_url", "wallet_address", "pool_connection"} <= set(doc["signals"])
    assert doc["gpu"]["available"] is False  # no NVIDIA driver here: said so, not "no use"
    assert doc["host"]["hostname"] and doc["host"]["boot_time"].endswith("Z")
    assert doc["collected_at"].endswith("Z") and doc["minerwatch_version"]

    # Secrets stay out of the bundle, except inside the verbatim config copy.
    for path in (bundle / "evidence.json", bundle / "MANIFEST.json"):
        text = path.read_text()
        assert SECRET not in text and ENV_SECRET not in text

    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert set(listed) == {"evidence.json", "SUMMARY.txt", "executable", copy.relative_to(bundle).as_posix(),
                           "SHA256SUMS"}
    assert all(sha256(bundle / name) == digest for name, digest in listed.items())

    # Reading did not disturb the miner: still running, still talking to its pool, not traced.
    assert miner.poll() is None
    status = Path(f"/proc/{miner.pid}/status").read_text()
    assert re.search(r"^TracerPid:\s+0$", status, re.M)
    assert re.search(r"^State:\s+S", status, re.M)

    ok = minerwatch("evidence", "verify", bundle, f"--manifest-sha256={sha256(bundle / 'MANIFEST.json')}")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"OK {bundle}: every file matches MANIFEST.json")


def _edit_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_manifest_entry(bundle: Path) -> None:
    # An editor who changes evidence.json and its listed hash, but cannot fix the manifest's own.
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    _edit_byte(bundle / "evidence.json")
    manifest["files"][0]["sha256"] = sha256(bundle / "evidence.json")
    (bundle / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))


TAMPERING = {
    "document edited": (lambda b: _edit_byte(b / "evidence.json"),
                        r"evidence\.json: sha256 [0-9a-f]{64} differs from the manifest's"),
    "config copy edited": (lambda b: _edit_byte(next((b / "files").iterdir())),
                           r"files/01-config\.json: sha256 .* differs"),
    "file removed": (lambda b: next((b / "files").iterdir()).unlink(), r"files/01-config\.json: missing"),
    "file added": (lambda b: (b / "files" / "planted.txt").write_text("x"),
                   r"files/planted\.txt: not in the manifest"),
    "manifest edited": (_edit_manifest_entry, r"MANIFEST\.json: its own hash does not match"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_verify_names_what_changed(spawn, tmp_path, pool, offline_config, kind):
    miner, _ = start_miner(spawn, tmp_path, pool)
    _, [bundle] = collect(tmp_path, offline_config, f"--pid={miner.pid}")
    assert minerwatch("evidence", "verify", bundle).returncode == 0
    tamper, expected = TAMPERING[kind]
    tamper(bundle)
    result = minerwatch("evidence", "verify", bundle)
    assert result.returncode == 1, result.stdout
    assert re.search(expected, result.stdout), result.stdout
    assert all(line.startswith("FAILED ") for line in result.stdout.splitlines())


def test_verify_against_hash_kept_off_host(spawn, tmp_path, pool, offline_config):
    """A forger who rewrites the manifest consistently is caught by the hash printed at collection."""
    miner, _ = start_miner(spawn, tmp_path, pool)
    result, [bundle] = collect(tmp_path, offline_config, f"--pid={miner.pid}")
    recorded = re.search(r"manifest sha256 ([0-9a-f]{64})", result.stdout).group(1)
    _edit_manifest_entry(bundle)
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    from minerwatch.investigation.evidence import manifest_digest

    manifest["manifest_sha256"] = manifest_digest(manifest)
    (bundle / "MANIFEST.json").write_text(json.dumps(manifest))
    assert minerwatch("evidence", "verify", bundle).returncode == 0  # consistent on its own
    caught = minerwatch("evidence", "verify", bundle, f"--manifest-sha256={recorded}")
    assert caught.returncode == 1
    assert "MANIFEST.json: sha256" in caught.stdout and "not the one recorded at collection" in caught.stdout


def test_all_suspects_and_hostile_names(spawn, tmp_path, pool, offline_config):
    first, _ = start_miner(spawn, tmp_path, pool)
    hostile, _ = start_miner(spawn, tmp_path, pool, name="xmrig\x1b[2J\nx")
    result, bundles = collect(tmp_path, offline_config, "--all-suspects")
    by_pid = {json.loads((b / "evidence.json").read_text())["process"]["pid"]: b for b in bundles}
    assert {first.pid, hostile.pid} <= set(by_pid)
    doc = json.loads((by_pid[hostile.pid] / "evidence.json").read_text())
    assert doc["process"]["name"] == "xmrig\\x1b[2J\\nx"
    assert "\x1b" not in result.stdout and "\\x1b[2J\\nx" in result.stdout

    def strings(value):
        if isinstance(value, dict):
            for k, v in value.items():
                yield k
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    assert not [s for s in strings(doc) if CONTROL.search(s)]


@pytest.mark.parametrize("args, message", [
    (["evidence", "--pid=999999999", "--out=x"],
     "minerwatch: error: Invalid value for '--pid': no process 999999999 (or it cannot be read)"),
    (["evidence", "--out=x"], "minerwatch: error: give --pid N or --all-suspects"),
    (["evidence", "--pid=1"], "minerwatch: error: Missing option '--out'."),
    (["evidence", "verify", "/nonexistent/bundle"],
     "minerwatch: error: Invalid value for 'BUNDLE': Directory '/nonexistent/bundle' does not exist."),
    (["evidence", "verify", ".", "--manifest-sha256=abc"],
     "minerwatch: error: Invalid value for '--manifest-sha256': must be 64 hexadecimal digits"),
])
def test_bad_input_one_line_exit_2(args, message, tmp_path):
    result = minerwatch(*args, "--interval=0") if "verify" not in args else minerwatch(*args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith(message), result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_verify_a_directory_that_is_no_bundle(tmp_path):
    result = minerwatch("evidence", "verify", tmp_path)
    assert result.returncode == 1
    assert result.stdout == f"FAILED {tmp_path}/MANIFEST.json: cannot read: No such file or directory\n"
