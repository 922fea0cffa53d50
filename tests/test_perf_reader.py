"""Performance at scale (issue 17), the /proc reader's part: an unchanged process costs one read
and nothing more, per-process objects are small, and the reader forgets ended processes.

The figures themselves (time, CPU, RSS at 1,000 to 10,000 processes) are in
tests/benchmark/run.sh, not here: these tests check the mechanisms, not the speed.
"""

import os
import subprocess
import sys
import time

import pytest

from minerwatch.host.proc_reader import ProcfsReader, ReadError
from support.procfs import TICKS, FakeProcess, build, stat_line
from support.processes import stop_pid


def _rewrite_stat(proc_root, process):
    (proc_root / str(process.pid) / "stat").write_text(stat_line(process))


def test_an_unchanged_stat_line_gives_back_the_same_object(tmp_path):
    idle = FakeProcess(42, "sleep", ["sleep", "3600"], utime=3)
    proc = build(tmp_path, [idle])
    reader = ProcfsReader(str(proc))
    first = reader.stat(42)
    assert reader.stat(42, first) is first  # same line: the caller can skip everything with `is`
    assert reader.stat(42) is not first  # the caller keeps what it got, the reader keeps nothing

    _rewrite_stat(proc, FakeProcess(**{**idle.__dict__, "utime": 3 + TICKS}))
    moved = reader.stat(42, first)
    assert moved is not first and moved.cpu_seconds == pytest.approx(first.cpu_seconds + 1.0)
    assert moved.start_time is first.start_time  # one float per process life, not one per change

    # The pid reused by another process (another start time): a new object, never the old one.
    _rewrite_stat(proc, FakeProcess(**{**idle.__dict__, "comm": "other", "start_ticks": 500}))
    reused = reader.stat(42, moved)
    assert reused is not moved and reused.comm == "other" and reused.start_time != moved.start_time


@pytest.fixture
def idle_and_busy():
    idle = subprocess.Popen(["sleep", "60"])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.3)
    yield idle.pid, busy.pid
    stop_pid(idle)
    stop_pid(busy)


def test_live_idle_process_reads_as_unchanged_and_a_busy_one_does_not(idle_and_busy):
    idle, busy = idle_and_busy
    reader = ProcfsReader()
    before = {pid: reader.stat(pid) for pid in (idle, busy)}
    time.sleep(0.2)  # 20 clock ticks: the busy one's CPU time moves
    assert reader.stat(idle, before[idle]) is before[idle]
    after = reader.stat(busy, before[busy])
    assert after is not before[busy] and after.cpu_seconds > before[busy].cpu_seconds


def test_the_reader_forgets_an_ended_process_and_closes_its_descriptor():
    child = subprocess.Popen(["sleep", "60"])
    reader = ProcfsReader()
    try:
        reader.pids()
        fds_before = len(os.listdir("/proc/self/fd"))
        reader.stat(child.pid)
        assert child.pid in reader._fds
        assert len(os.listdir("/proc/self/fd")) == fds_before + 1  # one kept descriptor
    finally:
        stop_pid(child)
    with pytest.raises(ReadError):  # the scan's read of the ended process fails: it is forgotten
        reader.stat(child.pid)
    assert child.pid not in reader.pids()
    assert child.pid not in reader._fds
    assert len(os.listdir("/proc/self/fd")) == fds_before


@pytest.mark.skipif(sys.version_info < (3, 10), reason="dataclass slots came with Python 3.10")
def test_objects_kept_per_process_have_no_dict(tmp_path):
    """A dict per object costs about 100 bytes per process and object; slots do not."""
    proc = build(tmp_path, [FakeProcess(7, "bash", ["-bash"], exe="/usr/bin/bash")])
    reader = ProcfsReader(str(proc))
    stat = reader.stat(7)
    facts = reader.facts(stat)
    assert not hasattr(stat, "__dict__") and not hasattr(facts, "__dict__")
    facts.cmdline, facts.exe_sha256 = "-bash", ""  # still filled in later, once per process life


def test_strings_processes_share_are_kept_once(tmp_path):
    """1,000 copies of one program hold one copy of its name, executable, directory and arguments."""
    same = dict(comm="sleep", argv=["/usr/bin/sleep", "3600"], exe="/usr/bin/sleep", cwd="/home/alice")
    proc = build(tmp_path, [FakeProcess(101, **same), FakeProcess(102, **same)])
    reader = ProcfsReader(str(proc))
    a, b = (reader.facts(reader.stat(pid)) for pid in (101, 102))
    assert a.comm is b.comm and a.exe is b.exe and a.cwd is b.cwd
    assert all(x is y for x, y in zip(a.argv, b.argv))
    assert a.argv == b.argv == ["/usr/bin/sleep", "3600"]


def test_idle_processes_hold_no_numbers_of_their_own(tmp_path):
    """Most processes never ran: their CPU seconds and recent cores are the one shared 0.0 (24
    bytes a process each otherwise), and the table keeps their argv as one tuple."""
    from minerwatch.detection.process_table import ProcessTable, ProcessSettings
    from minerwatch.detection.signatures import Signatures

    same = dict(comm="sleep", argv=["/usr/bin/sleep", "3600"], exe="/usr/bin/sleep", utime=0, stime=0)
    proc = build(tmp_path, [FakeProcess(101, **same), FakeProcess(102, **same)])
    reader = ProcfsReader(str(proc))
    a, b = reader.stat(101), reader.stat(102)
    assert a.cpu_seconds == 0.0 and a.cpu_seconds is b.cpu_seconds
    table = ProcessTable(reader, Signatures(), settings=ProcessSettings())
    first, second = (table.scan() for _ in range(2))
    views = {v.pid: v for v in second.processes}
    assert views[101].cpu_cores == 0.0 and views[101].cpu_cores is views[102].cpu_cores
    assert isinstance(views[101].facts.argv, tuple)


def test_a_dropped_reader_closes_its_descriptors():
    """A reload builds a new reader: the old one's descriptors (one per process) must not leak,
    or a few reloads on a busy host exhaust the descriptor limit and the exporter goes blind."""
    import gc

    children = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
    try:
        gc.collect()  # readers other tests dropped close theirs now, not in the middle of this count
        before = len(os.listdir("/proc/self/fd"))
        reader = ProcfsReader()
        for child in children:
            reader.stat(child.pid)
        assert len(os.listdir("/proc/self/fd")) == before + 3
        reader.close()
        assert len(os.listdir("/proc/self/fd")) == before
        for child in children:
            reader.stat(child.pid)  # still works, keeping descriptors again
        del reader
        gc.collect()
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        for child in children:
            stop_pid(child)


LISTING_PROBE = r"""
import os, subprocess, sys, threading, time
from minerwatch.host.proc_reader import ProcfsReader, ReadError

reader = ProcfsReader("/proc")
first = reader.pids()
again = reader.pids()
out = {"quiet": (reader.listings_total, sorted(again) == sorted(first))}
child = subprocess.Popen(["sleep", "30"])
out["child_seen"] = child.pid in reader.pids()
out["after_child"] = reader.listings_total
child.kill(); child.wait()
try:
    reader.stat(child.pid)
except ReadError:
    pass
out["ended_dropped"] = child.pid not in reader.pids()
out["after_end"] = reader.listings_total
t = threading.Thread(target=time.sleep, args=(0,)); t.start(); t.join()
reader.pids()
out["after_thread"] = reader.listings_total
print(repr(out))
"""


def test_proc_is_listed_again_only_when_a_pid_was_handed_out(tmp_path):
    """Listing /proc costs about 1.5 µs a process. In a pid namespace of its own (so nothing else
    on the machine starts processes in it), the reader lists /proc once while no pid is handed
    out, lists it again when a process or thread starts, and drops a process that ended without
    listing again."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", LISTING_PROBE],
                           capture_output=True, text=True, timeout=60, env=env)
    assert probe.returncode == 0, probe.stderr
    out = eval(probe.stdout.strip().splitlines()[-1])
    assert out["quiet"] == (1, True)
    assert out["child_seen"] and out["after_child"] == 2
    assert out["ended_dropped"] and out["after_end"] == 2
    assert out["after_thread"] == 3


def test_a_proc_that_is_not_our_namespace_is_listed_every_time(tmp_path):
    """A fake or foreign /proc (a host's mounted into a container) cannot vouch with /proc/loadavg."""
    proc = build(tmp_path, [FakeProcess(42, "sleep", ["sleep", "3600"])])
    (proc / "loadavg").write_text("0.00 0.00 0.00 1/100 42\n")
    reader = ProcfsReader(str(proc))
    reader.pids()
    reader.pids()
    assert reader.listings_total == 2
