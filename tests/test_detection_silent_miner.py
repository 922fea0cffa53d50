"""Issue 14: a miner that says nothing is still caught by what it is and how it behaves.

A native miner stand-in (built here with gcc, tests/support/fakeminer.py) is copied under an
innocent name into a libexec-like folder and started with NO arguments from a directory holding
its config.json; it mines over TLS to the pool stand-in on 127.0.0.1. None of the command-line,
name, environment or location signals match it: the busy probe must.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from support.processes import stop_pid, wait_for
from support.repo import ROOT
from support.wallets import MONERO_WALLET
from minerwatch.host.proc_reader import ProcfsReader
from minerwatch.detection.process_table import ProcessSettings, ProcessTable
from minerwatch.detection.signatures import Signatures
from support.fakeminer import build_native

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs and sock_diag are Linux")

NEW = {"miner_exe_content", "miner_config", "miner_behaviour", "randomx_memory"}
OLD_IDENTITY = {"miner_name", "miner_cmdline", "pool_url", "encoded_cmdline", "wallet_address", "miner_env",
                "exe_in_temp_dir", "exe_deleted", "name_mismatch"}


@pytest.fixture
def tls_pool(tmp_path):
    cert, key = tmp_path / "pool.crt", tmp_path / "pool.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=pool.standin", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port_file = tmp_path / "pool.port"
    log = open(tmp_path / "pool.log", "w")
    # a pool pushes jobs unasked (every 2 s here): the rhythm miner_behaviour needs (pool_rhythm.py)
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.rhythm_pool", "--job-seconds", "2",
                             "--port-file", str(port_file),
                             "--tls-cert", str(cert), "--tls-key", str(key)], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        yield int(wait_for(lambda: port_file.exists() and port_file.read_text(), what="TLS pool stand-in")), \
            tmp_path / "pool.log"
    finally:
        stop_pid(proc)
        log.close()


@pytest.fixture
def silent_miner(tmp_path, tls_pool):
    port, pool_log = tls_pool
    # outside the temp folders (those are a signal of their own), like /usr/local/libexec
    libexec = tempfile.mkdtemp(prefix="minerwatch-test-libexec-", dir=os.path.expanduser("~"))
    exe = build_native(libexec, "fwupd-refresh")
    work = tmp_path / "var-lib-fwupd"
    work.mkdir()
    (work / "config.json").write_text(json.dumps({
        "autosave": True,
        "cpu": {"enabled": True, "huge-pages": True, "threads": 1},
        "pools": [{"url": f"127.0.0.1:{port}", "user": MONERO_WALLET, "pass": "x", "tls": True}],
    }, indent=4))
    proc = subprocess.Popen([exe], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: "login" in pool_log.read_text(), timeout=20, what="stand-in logged in over TLS")
        yield proc
    finally:
        stop_pid(proc)
        shutil.rmtree(libexec, ignore_errors=True)


def _signals_of(table, pid):
    view = table.scan().by_pid().get(pid)
    return dict(view.signals) if view else {}, view


def test_silent_miner_is_silent_to_the_static_signals(silent_miner):
    """The premise: without the busy probe nothing matches (and the test below would fail)."""
    table = ProcessTable(ProcfsReader("/proc"), Signatures(), settings=ProcessSettings(busy_probe_interval_seconds=0))
    table.scan()
    time.sleep(1.2)
    signals, view = _signals_of(table, silent_miner.pid)
    assert view is not None and view.cpu_cores >= 0.5
    assert not signals and not view.suspect


def test_busy_probe_finds_content_config_behaviour_and_memory(silent_miner):
    settings = ProcessSettings(busy_probe_interval_seconds=1.0, busy_probe_window_seconds=6.0)
    table = ProcessTable(ProcfsReader("/proc"), Signatures(), settings=settings)
    started = time.monotonic()
    table.scan()
    time.sleep(1.1)
    signals, view = _signals_of(table, silent_miner.pid)
    # the config is decisive at the first probe: suspect within seconds
    assert "miner_config" in signals and view.suspect, signals

    def content():  # the file is scanned in the background: its signal joins a look later
        time.sleep(0.5)
        found, seen = _signals_of(table, silent_miner.pid)
        return "miner_exe_content" in found and (found, seen)

    signals, view = wait_for(content, timeout=20, interval=0.1, what="the executable's content")
    assert "miner_config" in signals and view.suspect
    assert "options (donate-level)" in signals["miner_exe_content"]
    assert "config.json in the working directory" in signals["miner_config"]
    assert "127.0.0.1:" in signals["miner_config"] and MONERO_WALLET[:8] not in signals["miner_config"]
    assert view.facts.exe_sha256  # hashed by the same pass, for the evidence
    assert not OLD_IDENTITY & set(signals)

    def behaviour():
        time.sleep(1.0)
        found, _ = _signals_of(table, silent_miner.pid)
        return {"miner_behaviour", "randomx_memory"} <= set(found) and found

    found = wait_for(behaviour, timeout=40, interval=0.1, what="behaviour and memory shape")
    assert "1 connection(s)" in found["miner_behaviour"]
    assert "256 MiB (RandomX cache)" in found["randomx_memory"]
    assert time.monotonic() - started < 60


def test_behaviour_alone_when_config_and_strings_are_gone(silent_miner, tmp_path):
    """The config deleted after start and no patterns (an unknown miner): behaviour still sees it."""
    os.unlink(tmp_path / "var-lib-fwupd" / "config.json")
    table = ProcessTable(ProcfsReader("/proc"), Signatures(),
                         settings=ProcessSettings(busy_probe_interval_seconds=1.0, busy_probe_window_seconds=6.0))
    table.busy_probe.scanner.patterns.regex = None  # as if no pattern matched this build

    def seen():
        time.sleep(1.0)
        found, view = _signals_of(table, silent_miner.pid)
        return "miner_behaviour" in found and (found, view)

    found, view = wait_for(seen, timeout=40, interval=0.1, what="miner_behaviour")
    assert "miner_config" not in found and "miner_exe_content" not in found
    assert view.suspect  # weak, and busy
