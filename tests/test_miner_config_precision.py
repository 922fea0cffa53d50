"""Issue 23: the miner configuration check and the command-line pool check, precise and harder to
evade.

Precision: a service's database connection pools (`"pools": [{"url": "postgresql://...", "user":
"app"}]`) and a Java service's `--url db.internal:5432 --user app` are not miners, busy or not.
Recall: a config without a user, in XMRig's home-folder places, deleted after start but held
open, padded past a MiB, with escaped keys, or behind a private mount namespace, is still read.
The parser is tested on strings; every place a config hides is tested on a real busy process,
through `find` and through a real `minerwatch serve` and its /metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc

import pytest

from support.config_miners import (
    busy_script,
    connection_pool_config,
    escaped_config,
    no_user_config,
    padded_config,
    xmrig_config,
)
from support.exporter import Exporter, find as find_samples
from support.processes import wait_for
from support.wallets import MONERO_WALLET
from minerwatch.detection import miner_config
from minerwatch.detection.miner_config import classify
from minerwatch.detection.signatures import Signatures

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs and mount namespaces are Linux")

# -- the parser, on strings ----------------------------------------------------------------------


@pytest.mark.parametrize("pool", [
    {"url": "postgresql://db.internal:5432/reports", "user": "app"},
    {"url": "db.internal:5432", "user": "app"},  # no scheme, an ordinary port
    {"url": "10.1.2.3:8080", "user": "svc"},
    {"url": "mysql://db:3306/x", "user": "app"},
    {"url": "redis://cache.internal:6379", "user": "default"},
    {"url": "amqp://mq.internal:5672", "user": "guest"},
    {"url": "ldap://dc.corp.example:389", "user": "cn=svc"},
    {"url": "mongodb://mongo.internal:27017", "user": "app"},
    {"url": "https://api.example.net:8443/v1", "user": "svc"},
    {"url": "jdbc:sqlserver://db.internal:1433", "user": "app"},
])
def test_connection_pools_are_not_miner_configs(pool):
    assert classify(json.dumps({"pools": [pool], "threads": 8})) is None


def test_the_report_service_config_is_not_a_miner_config():
    assert classify(connection_pool_config()) is None


@pytest.mark.parametrize("text, reason", [
    (no_user_config(), "pools with url 10.20.30.40:3333 (pool port 3333)"),
    (json.dumps({"pools": [{"url": "pool.supportxmr.com:443"}]}), "pools with url pool.supportxmr.com:443 (a listed pool host)"),
    (json.dumps({"pools": [{"url": "stratum+ssl://10.0.0.9:9000"}]}), "pools with url 10.0.0.9:9000 (a Stratum URL)"),
    (json.dumps({"pools": [{"url": "10.0.0.9:9000", "algo": "rx/0"}]}), "pools with url 10.0.0.9:9000 (algorithm rx/0)"),
    (json.dumps({"pools": [{"url": "10.0.0.9:9000", "coin": "monero"}]}), "pools with url 10.0.0.9:9000 (coin monero)"),
    (json.dumps(xmrig_config("10.0.0.9:9000")), "pools with url 10.0.0.9:9000 (miner pool option keepalive)"),
    (json.dumps({"pools": ["10.0.0.9:14444"]}), "pools with url 10.0.0.9:14444 (pool port 14444)"),
    (escaped_config(), "pools with url 10.20.30.40:14444 (pool port 14444)"),
    (padded_config(2 << 20), "pools with url 10.20.30.40:7000 (a Stratum URL)"),
    (padded_config(3 << 20), "pools with url 10.20.30.40:7000 (a Stratum URL)"),
    # rapidjson (XMRig) reads comments and trailing commas
    ('{"pools": [ /* mine */ {"url": "10.0.0.9:3333", // here\n }, ], }', "pools with url 10.0.0.9:3333 (pool port 3333)"),
    # XMRig's shape with no URL at all (the pool given with -o, or a default)
    (json.dumps({"donate-level": 0, "pools": []}), "XMRig configuration (pools, donate-level)"),
    (json.dumps({"randomx": {"mode": "auto"}, "cpu": {"enabled": True}, "pools": [{"enabled": False}]}),
     "XMRig configuration (pools, randomx, cpu)"),
    # xmr-stak's pools.txt: key/value pairs without braces, trailing commas
    ('"pool_list" :\n[\n {"pool_address" : "10.0.0.9:8000", "wallet_address" : "x", "rig_id" : "", "use_tls" : false},\n],\n'
     '"currency" : "monero",\n', "pool_list with url 10.0.0.9:8000 (miner pool option rig_id)"),
    # cpuminer's -c file: one url and user at the top
    (json.dumps({"url": "stratum+tcp://10.0.0.9:9000", "user": "w", "algo": "scrypt"}),
     "url 10.0.0.9:9000 with a user (a Stratum URL)"),
])
def test_miner_configs_without_the_old_marks_are_recognised(text, reason):
    assert classify(text) == reason


def test_the_reason_names_the_pool_never_the_wallet_or_password():
    text = json.dumps({"pools": [{"url": "stratum+tcp://w4LL3T:s3cr3t@10.0.0.9:3333", "user": MONERO_WALLET,
                                  "pass": "s3cr3t"}]})
    reason = classify(text)
    assert reason == "pools with url 10.0.0.9:3333 (a Stratum URL)"


def _peak(text):
    tracemalloc.start()
    try:
        found = classify(text)
        return found, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("padding, pools_found", [
    ("[" + "{}," * 1_300_000 + "{}]", True),  # 1.3 million objects: about 90 MB if parsed whole
    ("[" + '"\\u0070",' * 400_000 + "0]", True),  # escapes everywhere
    ('"' + "a" * 3_000_000, False),  # a string that never ends (the pools are inside it)
    ("/*" * 1_500_000, False),  # a comment that never ends
    ("[" * 1_000_000, False),  # nesting
    ("{" + '"pools": ["a.b:1"], ' * 180_000 + '"x": 0}', True),  # decoy keys, each a window to search
    ("{" + '"pools": {"url": "a.b:1"}, ' * 120_000 + '"x": 0}', True),  # and decoy URLs
])
def test_hostile_padding_costs_little_memory_and_hides_nothing(padding, pools_found):
    """Whatever fills the first MiBs, the pools after it are found, at a bounded memory cost."""
    text = '{"pad": ' + padding + ', "\\u0070ools": [{"url": "10.0.0.9:3333"}]}'
    assert len(text) < miner_config.MAX_BYTES
    found, peak = _peak(text)
    assert peak < 4 * len(text) + (4 << 20), peak  # the text and a copy or two, no object per value
    if pools_found:
        assert found == "pools with url 10.0.0.9:3333 (pool port 3333)", found


# -- the command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["java", "-jar", "reports.jar", "--url", "db.internal:5432", "--user", "app"],
    ["./svc", "--url", "10.1.2.3:8080", "--user", "svc"],
    ["./svc", "--url", "tcp://db.internal:5432", "--user", "app"],
    ["./svc", "--url", "https://api.example.net/v1", "--user", "svc"],
    ["java", "-jar", "app.jar", "--url", "postgresql://db:5432/x", "--user", "x"],
])
def test_a_service_url_and_user_are_not_miner_options(argv):
    assert [m.signal for m in Signatures().match_cmdline(argv)] == []


@pytest.mark.parametrize("argv, reason", [
    (["./svc", "-o", "pool:3333", "-u", "rig1"], "arguments -o pool:3333 with -u"),  # a name from /etc/hosts
    (["./svc", "-a", "rx/0", "-o", "mine:5432"], "arguments -a rx/0 with -o mine:5432"),
])
def test_a_single_label_pool_host_still_counts(argv, reason):
    assert [(m.signal, m.reason) for m in Signatures().match_cmdline(argv)] == [("miner_cmdline", reason)]


# -- where the file is: a fake /proc for the passwd fallback, real processes for the rest -------

def test_home_from_the_passwd_file_of_the_process_root(tmp_path):
    """No HOME in the environment: the uid's line in the passwd file under the process's root."""
    from minerwatch.detection.miner_config import home_of
    pid = tmp_path / "4242"
    (pid / "root" / "etc").mkdir(parents=True)
    (pid / "environ").write_bytes(b"PATH=/usr/bin\0LANG=C\0")
    (pid / "status").write_text("Name:\tsvc\nUid:\t1234\t1234\t1234\t1234\nGid:\t1\t1\t1\t1\n")
    (pid / "root" / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nbob:x:1234:1:Bob:/home/bob:/bin/sh\n")
    assert home_of(str(tmp_path), 4242) == "/home/bob"
    (pid / "environ").write_bytes(b"PATH=/usr/bin\0HOME=/srv/app\0")
    assert home_of(str(tmp_path), 4242) == "/srv/app"


@pytest.fixture
def layout(tmp_path):
    """The busy script, an empty home, and a folder per process."""
    script = busy_script(tmp_path)
    home = tmp_path / "empty-home"
    home.mkdir()
    return script, home


def _env(home):
    return {"PATH": "/usr/bin:/bin", "HOME": str(home)}


def _started(spawn, tmp_path, script, name, args=(), cwd=None, home=None):
    folder = cwd or tmp_path / name
    folder.mkdir(exist_ok=True)
    return spawn.start(name, list(args), cwd=folder, env=_env(home or tmp_path / "empty-home"), script=script)


def _mount_namespace_miner(tmp_path, script, home):
    """A process in its own mount namespace, with a tmpfs over /…/private holding its config; in
    the exporter's namespace the same path holds an ordinary service's file."""
    private = tmp_path / "private"
    private.mkdir()
    (private / "app.json").write_text(connection_pool_config())
    miner_file = tmp_path / "miner.json"
    miner_file.write_text(json.dumps(xmrig_config("10.20.30.40:9000")))
    inner = (f"mount -t tmpfs mwtest {private} && cp {miner_file} {private}/app.json && "
             f"exec {sys.executable} {script} -c {private}/app.json")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", inner], cwd=tmp_path,
                            env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def inside():
        try:
            with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                return str(script).encode() in f.read()
        except OSError:
            return False

    wait_for(inside, timeout=10, what="the process in its mount namespace")
    return proc


@pytest.fixture
def cases(spawn, tmp_path, layout):
    """name -> (process, expected miner_config where-text or None for an ordinary service)."""
    script, empty = layout
    started = {}

    service = tmp_path / "report-service"
    service.mkdir()
    (service / "config.json").write_text(connection_pool_config())
    started["connection pools"] = (_started(spawn, tmp_path, script, "report-service", cwd=service), None)
    started["--url db --user"] = (_started(spawn, tmp_path, script, "billing-sync",
                                           ["--url", "db.internal:5432", "--user", "app"]), None)

    folder = tmp_path / "no-user"
    folder.mkdir()
    (folder / "config.json").write_text(no_user_config())
    started["no user"] = (_started(spawn, tmp_path, script, "no-user", cwd=folder), "config.json in the working directory")

    for place in (".xmrig.json", ".config/xmrig.json"):
        home = tmp_path / f"home-{place.replace('/', '-')}"
        (home / ".config").mkdir(parents=True)
        (home / place).write_text(json.dumps(xmrig_config("10.20.30.40:9000")))
        started[f"~/{place}"] = (_started(spawn, tmp_path, script, f"home{len(started)}", home=home), f"~/{place}")

    deleted = tmp_path / "deleted" / "settings"
    deleted.parent.mkdir()
    deleted.write_text(json.dumps(xmrig_config("10.20.30.40:9000")))
    proc = _started(spawn, tmp_path, script, "deleted-conf", ["-c", str(deleted)])
    wait_for(lambda: any(os.readlink(f"/proc/{proc.pid}/fd/{fd}") == str(deleted)
                         for fd in os.listdir(f"/proc/{proc.pid}/fd")), what="the config held open")
    deleted.unlink()
    started["-c deleted"] = (proc, "open file /")

    for name, text in (("padded", padded_config(2 << 20)), ("escaped", escaped_config())):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(text)
        started[name] = (_started(spawn, tmp_path, script, name, cwd=folder), "config.json in the working directory")

    proc = _mount_namespace_miner(tmp_path, script, empty)
    spawn.procs.append(proc)  # stopped by its pid with the others
    started["mount namespace"] = (proc, "-c /")
    return started


@linux
def test_each_hidden_config_is_found_and_the_services_are_not(cases):
    """`find` on the real processes: the miners' configs wherever they hide, and their place."""
    for name, (proc, where) in cases.items():
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0")[:-1]]
        found = miner_config.find("/proc", proc.pid, argv)
        if where is None:
            assert found is None, (name, found)
        else:
            assert found is not None and found.reason.startswith(where), (name, found)
            assert "10.20.30.40:" in found.reason, (name, found)


@linux
def test_the_exporter_pages_on_the_hidden_configs_and_not_on_the_services(cases, tmp_path):
    """The real exporter, busy processes, /metrics: miner_config on each miner; neither
    miner_config nor miner_cmdline on the services, which it did look at (they are suspects for
    their script in a temp folder, a weak signal, and nothing more)."""
    config = tmp_path / "minerwatch.yml"
    config.write_text("network:\n  resolve_max_names: 0\n"
                      "process:\n  suspect_busy_cores: 0.05\n  busy_probe_interval_seconds: 1\n  max_suspects: 100\n")
    exporter = Exporter([f"--config.file={config}", "--no-collector.network", "--no-collector.gpu",
                         "--no-collector.antivirus"])
    try:
        def signals_of(samples, pid):
            return {labels["signal"] for labels, _ in find_samples(samples, "minerwatch_process_signal", pid=pid)}

        seen = {name: set() for name in cases}
        end = time.monotonic() + 60  # a loaded machine: until every process was probed, or this
        while time.monotonic() < end:
            time.sleep(1.0)
            samples = exporter.scrape()
            for name, (proc, _) in cases.items():
                seen[name] |= signals_of(samples, proc.pid)
            if all(("miner_config" in seen[name]) if where else seen[name] for name, (_, where) in cases.items()):
                break
        time.sleep(2.0)  # a few more probes: the services stay quiet
        samples = exporter.scrape()
    finally:
        log = exporter.stop()
    for name, (proc, where) in cases.items():
        signals = signals_of(samples, proc.pid) | seen[name]
        if where is None:
            assert "exe_in_temp_dir" in signals, (name, signals)  # busy, seen, probed
            assert not {"miner_config", "miner_cmdline"} & signals, (name, signals)
        else:
            assert "miner_config" in signals, (name, signals)
    assert "Traceback" not in log, log[-2000:]
