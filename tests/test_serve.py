"""A real `minerwatch serve` finds a real miner-like process over HTTP; a benign one stays quiet."""

import getpass
import hashlib
import os
import subprocess
import sys
import time

import pytest

from support.exporter import Exporter, find
from support.processes import stop_pid, wait_for
from support.promtool import check_metrics
from support.wallets import MONERO_WALLET


@pytest.fixture
def exporter(request, tmp_path):
    started = []

    def start(*args, **kw):
        exp = Exporter(list(args), **kw)
        started.append(exp)
        return exp

    yield start
    for exp in started:
        exp.stop()


def test_finds_miner_renamed_busy_and_ignores_benign(spawn, pool, exporter, tmp_path, promtool):
    miner = spawn.start("xmrig", ["-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET,
                                  "-p", "hunter2", "--donate-level", "1"])
    renamed = spawn.start("dbus-daemon-x", [])  # busy, a system-looking name, no miner arguments
    benign = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        wait_for(lambda: "login" in pool.methods(), what="the miner stand-in to log in to the pool")
        exp = exporter("--collector.process.top-k=10")
        time.sleep(1.5)  # a second scrape turns lifetime CPU averages into recent use
        exp.scrape()

        def renamed_in_top():  # on a loaded machine a busy process may need a few scrapes
            scraped = exp.scrape()
            per_pid = find(scraped, "minerwatch_process_cpu_seconds_total", pid=renamed.pid)  # if suspect
            group = [s for s in find(scraped, "minerwatch_process_top_processes", name="dbus-daemon-x") if s[1] >= 1]
            # the miner's executable is hashed in the background: its sha256 is exported once known
            hashed = [l for l, _ in find(scraped, "minerwatch_process_suspect_info", pid=miner.pid) if l["exe_sha256"]]
            return scraped if (per_pid or group) and hashed else None

        samples = wait_for(renamed_in_top, timeout=20, interval=1.1,
                           what="the renamed busy process in the top-K, the miner's executable hashed")
        text = exp.text()
    finally:
        stop_pid(benign)

    user = getpass.getuser()
    info = find(samples, "minerwatch_process_suspect_info", pid=miner.pid)
    assert len(info) == 1, samples.get("minerwatch_process_suspect_info")
    labels = info[0][0]
    assert (labels["name"], labels["user"]) == ("xmrig", user)
    signals = set(labels["signals"].split(","))
    assert {"miner_name", "pool_url", "wallet_address", "miner_cmdline"} <= signals
    assert f"stratum+tcp://127.0.0.1:{pool.port}" in labels["cmdline"]
    # Evidence: the hash of what ran (this stand-in runs the Python interpreter).
    assert labels["exe_sha256"] == hashlib.sha256(open(os.path.realpath(sys.executable), "rb").read()).hexdigest()
    assert "hunter2" not in text  # the pool password never leaves the host
    for signal in signals:
        assert find(samples, "minerwatch_process_signal", pid=miner.pid, signal=signal)
    assert find(samples, "minerwatch_process_cpu_seconds_total", pid=miner.pid)[0][1] > 0

    # The renamed busy process is visible to the rules through the top-K, whatever its name: per
    # pid if suspect, else by name and user with no pid label.
    assert (find(samples, "minerwatch_process_cpu_seconds_total", pid=renamed.pid, name="dbus-daemon-x")
            or find(samples, "minerwatch_process_top_cpu_seconds_total", name="dbus-daemon-x", allowlisted="false"))
    # The benign busy process may be in the top-K, but it is not suspect.
    assert not find(samples, "minerwatch_process_suspect_info", pid=benign.pid)
    assert not find(samples, "minerwatch_process_signal", pid=benign.pid)
    # ... and no per-pid series at all: its CPU is counted in its name's group
    assert not find(samples, "minerwatch_process_cpu_seconds_total", pid=benign.pid)

    assert find(samples, "minerwatch_process_suspects")[0][1] >= 1
    for collector in ("process", "host", "tuning"):
        assert find(samples, "minerwatch_scrape_collector_success", collector=collector)[0][1] == 1
    assert find(samples, "minerwatch_host_cpus")[0][1] >= 1
    assert find(samples, "minerwatch_build_info")[0][0]["version"]
    check_metrics(promtool, text)


def test_collector_flags(exporter):
    exp = exporter("--no-collector.tuning", "--collector.disable-defaults", "--collector.host")
    samples = exp.scrape()
    collectors = {l["collector"] for l, _ in samples["minerwatch_scrape_collector_success"]}
    assert collectors == {"host"}
    assert "minerwatch_process_suspects" not in samples


def test_json_logs_and_custom_path(exporter):
    exp = exporter("--log.format=json", "--web.telemetry-path=/m")
    exp.url = exp.url.replace("/metrics", "/m")
    assert "minerwatch_process_processes" in exp.text()
    import json

    records = [json.loads(line) for line in exp.stop().splitlines()]  # every line is JSON
    listening = [r for r in records if r["msg"].startswith("listening on 127.0.0.1:")]
    assert len(listening) == 1 and listening[0]["level"] == "info" and listening[0]["logger"] == "minerwatch"


def _as_nobody(caps=""):
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if caps:
        plus = ",".join("+" + c for c in caps.split(","))
        prefix += [f"--inh-caps={plus}", f"--ambient-caps={plus}"]
    return prefix


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_runs_as_ordinary_user_and_counts_what_it_cannot_read(spawn, exporter):
    miner = spawn.start("xmrig", ["--donate-level", "1"])  # root's process, unreadable to nobody
    plain = exporter(prefix=_as_nobody())
    samples = plain.scrape()
    denied = find(samples, "minerwatch_process_read_errors_total", reason="permission")[0][1]
    assert denied > 0  # root's exe, cwd and environ links are closed to nobody: counted, skipped
    # Command lines are world-readable, so the miner is still found.
    assert find(samples, "minerwatch_process_suspect_info", pid=miner.pid)[0][0]["exe"] == ""

    # With CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH it sees everything, still as nobody.
    sighted = exporter(prefix=_as_nobody("sys_ptrace,dac_read_search"))
    samples = sighted.scrape()
    # Fewer denials (a sandbox's non-dumpable init may stay closed even to CAP_SYS_PTRACE).
    assert find(samples, "minerwatch_process_read_errors_total", reason="permission")[0][1] < denied
    info = find(samples, "minerwatch_process_suspect_info", pid=miner.pid)[0][0]
    assert info["exe"] == os.path.realpath(sys.executable)
