"""Tamper through a real `minerwatch serve`: the allowlist cannot silence a process that
speaks Stratum or carries a miner command line; the configuration in effect and the collectors
turned off by flags show in /metrics."""

import os
import signal
import sys
from pathlib import Path

import pytest

from support.exporter import Exporter, find
from support.nettest import can_sniff
from support.processes import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and sockets")
NETCLIENT = Path(__file__).resolve().parent / "support" / "netclient.py"
# Every stand-in the Spawner starts runs this Python: an entry pinning its executable covers them.
PYTHON = os.path.realpath(sys.executable)


@pytest.fixture
def exporter():
    started = []

    def start(*args):
        exp = Exporter(list(args))
        started.append(exp)
        return exp

    yield start
    for exp in started:
        exp.stop()


def hashes(samples):
    return {labels["kind"]: labels["sha256"] for labels, _ in samples.get("minerwatch_config_hash_info", [])}


@pytest.mark.skipif(not can_sniff(), reason="Stratum on the wire needs the sniffer (CAP_NET_RAW)")
def test_an_allowlisted_program_that_speaks_stratum_or_carries_a_pool_url_stays_suspect(
        tmp_path, spawn, pool, exporter):
    # An entry as configs wrote it before signals existed: it pins the executable (every process
    # of this Python) and so explains every signal that can be explained - never these.
    config = tmp_path / "minerwatch.yml"
    config.write_text(f"network:\n  sniffer: on\nallowlist:\n  - exe: '{PYTHON}'\n")
    exp = exporter(f"--config.file={config}", "--collector.process.top-k=20")
    exp.scrape()  # the sniffer runs: it sees the login that opens the flow
    wire = spawn.start("backup-agent", ["cryptonote", "127.0.0.1", pool.port], script=NETCLIENT)
    cmdline = spawn.start("backup-agent2", ["-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-p", "x"])

    def both_suspect():
        samples = exp.scrape()
        signals = {pid: {l["signal"] for l, _ in find(samples, "minerwatch_process_signal", pid=pid)}
                   for pid in (wire.pid, cmdline.pid)}
        return samples if "pool_connection" in signals[wire.pid] and "pool_url" in signals[cmdline.pid] else None

    samples = wait_for(both_suspect, timeout=30, interval=1.0,
                       what="the allowlisted Stratum speaker and pool-URL carrier to be suspect")
    for proc in (wire, cmdline):
        assert find(samples, "minerwatch_process_suspect_info", pid=proc.pid)
        assert not find(samples, "minerwatch_process_allowlisted", pid=proc.pid)


def test_config_hashes_follow_the_config_and_ioc_files(tmp_path, exporter):
    ioc = tmp_path / "pools.txt"
    ioc.write_text("203.0.113.7\n")
    config = tmp_path / "minerwatch.yml"
    config.write_text(f"process:\n  top_k: 5\nnetwork:\n  ioc_files: ['{ioc}']\n")
    exp = exporter(f"--config.file={config}")
    first = hashes(exp.scrape())
    assert sorted(first) == ["ioc_files", "patterns", "settings", "shipped_data"]
    assert all(len(v) == 64 for v in first.values())
    assert hashes(exp.scrape()) == first  # stable from scrape to scrape

    ioc.write_text("203.0.113.7\n203.0.113.8\n")  # the central resolver's new list, or an edit
    os.utime(ioc, ns=(1, 1))  # a different mtime however fast the write was
    changed = hashes(exp.scrape())
    assert changed["ioc_files"] != first["ioc_files"]
    assert {k: v for k, v in changed.items() if k != "ioc_files"} == {k: v for k, v in first.items() if k != "ioc_files"}

    config.write_text(f"process:\n  top_k: 6\nnetwork:\n  ioc_files: ['{ioc}']\n")
    exp.proc.send_signal(signal.SIGHUP)
    reloaded = wait_for(lambda: (h := hashes(exp.scrape()))["settings"] != first["settings"] and h,
                        timeout=20, what="the reloaded configuration's hash")
    assert (reloaded["patterns"], reloaded["ioc_files"]) == (first["patterns"], changed["ioc_files"])

    # another process on the same configuration (another hash seed): the same hashes; with one
    # collector turned off by a flag: another settings hash
    assert hashes(exporter(f"--config.file={config}").scrape()) == reloaded
    other = exporter(f"--config.file={config}", "--no-collector.gpu")
    assert hashes(other.scrape())["settings"] != reloaded["settings"]


def test_collectors_turned_off_by_flag_are_reported(exporter):
    samples = exporter("--no-collector.gpu", "--no-collector.antivirus").scrape()
    disabled = {l["collector"]: v for l, v in samples["minerwatch_scrape_collector_disabled"]}
    assert disabled == {"gpu": 1, "antivirus": 1}  # only those turned off: nothing stored for the rest
    running = {l["collector"] for l, _ in samples["minerwatch_scrape_collector_success"]}
    assert {"process", "network", "host"} <= running and not running & set(disabled)
    # the Windows collector does not apply on this Linux host: neither run nor reported as off
    assert "windows" not in running | set(disabled)


def test_a_desk_running_every_collector_stores_no_disabled_series(exporter):
    samples = exporter().scrape()
    assert not samples.get("minerwatch_scrape_collector_disabled")
    assert "windows" not in {l["collector"] for l, _ in samples["minerwatch_scrape_collector_success"]}


def test_a_name_only_allowlist_entry_stops_start_up_with_file_and_line(tmp_path):
    import subprocess

    config = tmp_path / "minerwatch.yml"
    config.write_text("allowlist:\n  - exe: /usr/bin/restic\n  - name: xmrig\n")
    result = subprocess.run([sys.executable, "-m", "minerwatch", "serve", "--web.listen-address=127.0.0.1:0",
                             f"--config.file={config}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (f"minerwatch: error: {config}:3: allowlist[1]: an allowlist entry must pin the "
                             "program with `exe` (an absolute path) or `sha256`: a name or a user alone can be "
                             "taken by any process\n")
