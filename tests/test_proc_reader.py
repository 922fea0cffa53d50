"""Both process readers: the /proc fast path on a fixture tree and live, and the psutil path live."""

import os
import subprocess
import sys
import time

import pytest

from minerwatch.proc_reader import ProcfsReader, PsutilReader, ReadError, default_reader
from procfs_fixture import BOOT_TIME, TICKS, FakeProcess, build


def test_procfs_parses_stat_with_odd_comm(tmp_path):
    proc = build(tmp_path, [FakeProcess(42, "we ird) (name", ["x"], utime=3 * TICKS, stime=TICKS,
                                        threads=7, start_ticks=5 * TICKS, rss_pages=3)])
    stat = ProcfsReader(str(proc)).stat(42)
    assert stat.comm == "we ird) (name"
    assert stat.cpu_seconds == pytest.approx(4.0)
    assert stat.threads == 7
    assert stat.start_time == pytest.approx(BOOT_TIME + 5)
    assert stat.rss_bytes == 3 * os.sysconf("SC_PAGE_SIZE")


def test_procfs_facts_deleted_exe_environ_cwd(tmp_path):
    proc = build(tmp_path, [FakeProcess(7, "kswapd", ["/dev/shm/.x/kswapd", "-c", "cfg.json"],
                                        exe="/dev/shm/.x/kswapd (deleted)", cwd="/dev/shm/.x",
                                        environ={"POOL_URL": "stratum+tcp://p:3333", "HOME": "/root"})])
    reader = ProcfsReader(str(proc))
    facts = reader.facts(reader.stat(7))
    assert (facts.exe, facts.exe_deleted, facts.cwd) == ("/dev/shm/.x/kswapd", True, "/dev/shm/.x")
    assert facts.argv == ["/dev/shm/.x/kswapd", "-c", "cfg.json"]
    assert facts.environ == {"POOL_URL": "stratum+tcp://p:3333", "HOME": "/root"}
    assert facts.uid == os.getuid() and facts.user
    assert facts.errors == []


def test_procfs_kernel_thread_has_no_exe(tmp_path):
    proc = build(tmp_path, [FakeProcess(2, "kthreadd", [])])
    reader = ProcfsReader(str(proc))
    facts = reader.facts(reader.stat(2))
    assert (facts.exe, facts.argv, facts.errors) == ("", [], [])


def test_vanished_process(tmp_path):
    reader = ProcfsReader(str(build(tmp_path, [])))
    with pytest.raises(ReadError) as err:
        reader.stat(999)
    assert err.value.reason == "vanished"
    with pytest.raises(ReadError):
        PsutilReader().stat(2**22 + 12345)


@pytest.fixture
def child(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time\nx=0\nwhile True: x+=1"], cwd=tmp_path)
    time.sleep(0.5)
    yield proc
    proc.kill()
    proc.wait()


def test_psutil_and_procfs_agree_on_a_live_process(child, tmp_path):
    """The portable path, tested on Linux against the fast path."""
    fast, portable = ProcfsReader(), PsutilReader()
    a, b = fast.stat(child.pid), portable.stat(child.pid)
    assert a.comm == b.comm
    assert a.start_time == pytest.approx(b.start_time, abs=1.0)
    assert a.cpu_seconds == pytest.approx(b.cpu_seconds, abs=0.2)
    assert a.threads == b.threads
    fa, fb = fast.facts(a), portable.facts(b)
    assert fa.argv == fb.argv
    assert fa.exe == fb.exe == os.path.realpath(sys.executable)
    assert fa.cwd == fb.cwd == str(tmp_path)
    assert fa.user == fb.user
    assert child.pid in fast.pids() and child.pid in portable.pids()


def test_default_reader_falls_back_to_psutil(tmp_path):
    assert isinstance(default_reader("/proc"), ProcfsReader)
    assert isinstance(default_reader(str(tmp_path)), PsutilReader)
