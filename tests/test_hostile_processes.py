"""Processes built to break the exporter: a path that is not UTF-8, newlines and terminal escapes
in a command line and a process name. Real processes, a real `minerwatch serve` and `scan`.

Issue 11 item 1: before host_text at read time, the first one made every scrape answer 500
(`UnicodeEncodeError: surrogates not allowed`) for as long as it lived: a miner invisible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from support.exporter import Exporter, find
from support.processes import stop_pid, wait_for
from support.promtool import check_metrics
from support.repo import offline

SLEEP = shutil.which("sleep")
# A forged `scan` row and terminal escapes (clear screen, red) inside the command line.
FORGED_ARGV0 = "xmrig --donate-level 1\n  31337  root         fake-row           0.00  none\x1b[2J\x1b[31m"


@pytest.fixture
def hostile(tmp_path):
    """Two real processes: a copy of sleep named xmrig in a directory whose name has a \\xff
    byte, and a copy whose file name (so its comm) and command line hold newlines and escapes."""
    bad_dir = tmp_path / os.fsdecode(b"bad\xffdir")
    bad_dir.mkdir()
    miner = bad_dir / "xmrig"
    shutil.copy(SLEEP, miner)
    forged = tmp_path / "x\n  4242 root f\x1b[2J"
    shutil.copy(SLEEP, forged)
    procs = [
        subprocess.Popen([str(miner), "60"]),
        subprocess.Popen([FORGED_ARGV0, "60"], executable=str(forged)),
    ]
    try:
        for proc in procs:  # exec done: /proc/PID/exe is the copy, not this Python
            wait_for(lambda p=proc: os.readlink(f"/proc/{p.pid}/exe").startswith(str(tmp_path)),
                     what="the hostile process to start")
        yield procs
    finally:
        for proc in procs:
            stop_pid(proc)


def _scrape_ok(exp: Exporter, promtool: str):
    text = exp.text()  # urlopen raises on a 500
    check_metrics(promtool, text)
    return exp.scrape(), text


def test_serve_answers_and_reports_the_hostile_processes(hostile, promtool):
    miner, forged = hostile
    exp = Exporter([])
    try:
        samples, text = _scrape_ok(exp, promtool)
    finally:
        exp.stop()
    info = find(samples, "minerwatch_process_suspect_info", pid=miner.pid)
    assert len(info) == 1, "the miner in the bad directory is not reported"
    labels = info[0][0]
    assert labels["exe"].endswith("/bad\\xffdir/xmrig") and labels["name"] == "xmrig"
    assert "miner_name" in labels["signals"].split(",")

    info = find(samples, "minerwatch_process_suspect_info", pid=forged.pid)
    assert len(info) == 1, "the process with the forged command line is not reported"
    labels = info[0][0]
    assert labels["name"] == "x\\n  4242 root f"  # comm: the first 15 bytes of the file name
    assert "\\n  31337" in labels["cmdline"] and "\\x1b[2J" in labels["cmdline"]
    assert "\x1b" not in text and not any(line.startswith("  31337") for line in text.splitlines())
    assert find(samples, "minerwatch_scrape_collector_success", collector="process")[0][1] == 1
    assert find(samples, "minerwatch_process_skipped_total")[0][1] == 0


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_serve_as_nobody_answers_with_its_own_users_hostile_process(promtool):
    """The exporter as nobody, the miner as nobody too: its exe link is readable, and it was
    that read that failed every scrape."""
    top = tempfile.mkdtemp(prefix="minerwatch-hostile-")
    try:
        os.chmod(top, 0o755)  # nobody must reach the copy (pytest's tmp_path is root's alone)
        bad_dir = os.path.join(top, os.fsdecode(b"bad\xffdir"))
        os.mkdir(bad_dir)
        miner_path = os.path.join(bad_dir, "xmrig")
        shutil.copy(SLEEP, miner_path)
        os.chmod(bad_dir, 0o755)
        miner = subprocess.Popen([*NOBODY, miner_path, "60"])
        try:
            wait_for(lambda: open(f"/proc/{miner.pid}/comm").read().strip() == "xmrig",
                     what="the hostile process to start")
            exp = Exporter([], prefix=NOBODY)
            try:
                samples, _ = _scrape_ok(exp, promtool)
            finally:
                exp.stop()
        finally:
            stop_pid(miner)
    finally:
        shutil.rmtree(top)
    (labels, _), = find(samples, "minerwatch_process_suspect_info", pid=miner.pid)
    assert labels["exe"] == os.fsdecode(top) + "/bad\\xffdir/xmrig" and labels["user"] == "nobody"


def test_scan_shows_escapes_never_a_forged_row(hostile):
    miner, forged = hostile
    result = subprocess.run([sys.executable, "-m", "minerwatch", "scan", "--interval=0", *offline([])],
                            capture_output=True, text=True, errors="surrogateescape", timeout=60)
    out = result.stdout
    assert result.returncode == 1, result.stderr  # 1: suspects found
    assert "\x1b" not in out and "\udcff" not in out
    lines = out.splitlines()
    rows = {line.split()[0]: line for line in lines if line[:7].strip().isdigit()}
    assert "31337" not in rows and "4242" not in rows, "a forged row reached the table"
    assert str(miner.pid) in rows and str(forged.pid) in rows
    assert any("exe: " in l and "/bad\\xffdir/xmrig" in l for l in lines)
    assert any("cmdline: xmrig --donate-level 1\\n  31337" in l and "\\x1b[2J" in l for l in lines)
