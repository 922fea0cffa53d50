"""Both process readers: the /proc fast path on a fixture tree and live, and the psutil path live."""

import os
import subprocess
import sys
import time

import pytest

from minerwatch.host.proc_reader import ProcfsReader, PsutilReader, ReadError, default_reader
from support.procfs import BOOT_TIME, TICKS, FakeProcess, build


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
    assert not facts.errors


def test_procfs_kernel_thread_has_no_exe(tmp_path):
    proc = build(tmp_path, [FakeProcess(2, "kthreadd", [])])
    reader = ProcfsReader(str(proc))
    facts = reader.facts(reader.stat(2))
    assert (facts.exe, facts.argv, list(facts.errors)) == ("", [], [])


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


def _all_strings(facts, stat):
    values = [stat.comm, facts.comm, facts.exe, facts.cwd, facts.user, *facts.argv]
    values += [*(facts.environ or {}).keys(), *(facts.environ or {}).values()]
    return values


def _assert_safe(values):
    for value in values:
        value.encode("utf-8")  # no lone surrogates: a label or a log line can always be written
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value), repr(value)


def test_procfs_makes_every_host_string_safe_where_it_is_read(tmp_path):
    """Bytes that are not UTF-8, newlines and escapes in comm, argv, exe, cwd and environ arrive
    as visible escapes, so the rest of the exporter only ever sees safe text."""
    proc = build(tmp_path, [FakeProcess(9, "placeholder", ["x"])])
    d = proc / "9"
    stat = (d / "stat").read_bytes().replace(b"(placeholder)", b"(x\nmr\xff)")
    (d / "stat").write_bytes(stat)
    (d / "cmdline").write_bytes(b"/tmp/bad\xffdir/xmrig\0-o\0a\nb\x1b[2J\0")
    (d / "environ").write_bytes(b"K\xff=V\r\0POOL_URL=x\0")
    os.unlink(d / "cwd")
    os.symlink(b"/tmp/bad\xffdir", os.fsencode(d / "cwd"))
    os.symlink(b"/tmp/bad\xffdir/xmrig (deleted)", os.fsencode(d / "exe"))
    reader = ProcfsReader(str(proc))
    stat = reader.stat(9)
    facts = reader.facts(stat)
    assert stat.comm == "x\\nmr\\xff"
    assert facts.argv == ["/tmp/bad\\xffdir/xmrig", "-o", "a\\nb\\x1b[2J"]
    assert (facts.exe, facts.exe_deleted, facts.cwd) == ("/tmp/bad\\xffdir/xmrig", True, "/tmp/bad\\xffdir")
    assert facts.environ == {"K\\xff": "V\\r", "POOL_URL": "x"}
    _assert_safe(_all_strings(facts, stat))


def test_both_readers_make_a_live_hostile_process_safe_alike(tmp_path):
    bad_dir = tmp_path / os.fsdecode(b"bad\xffdir")
    bad_dir.mkdir()
    exe = bad_dir / "xmrig"
    os.symlink(sys.executable, exe)
    child = subprocess.Popen([str(exe), "-c", "import time; time.sleep(30)", "a\nb\x1b[31m"], cwd=bad_dir)
    try:
        time.sleep(0.5)
        fast, portable = ProcfsReader(), PsutilReader()
        a, b = fast.stat(child.pid), portable.stat(child.pid)
        fa, fb = fast.facts(a), portable.facts(b)
        assert fa.argv == fb.argv and fa.argv[0] == str(tmp_path) + "/bad\\xffdir/xmrig"
        assert fa.argv[-1] == "a\\nb\\x1b[31m"
        assert fa.cwd == fb.cwd == str(tmp_path) + "/bad\\xffdir"
        assert a.comm == b.comm
        _assert_safe(_all_strings(fa, a) + _all_strings(fb, b))
    finally:
        child.kill()
        child.wait()


def test_a_long_command_line_is_matched_whole_but_kept_bounded(spawn):
    """A miner flag after a megabyte of padding is still seen (matching reads it all); what stays
    in memory for the process's life is at most ARGV_KEPT_CHARS."""
    from minerwatch.host.proc_reader import ARGV_KEPT_CHARS
    from minerwatch.detection.process_table import ProcessTable
    from minerwatch.detection.signatures import Signatures
    from support.processes import wait_for

    padding = ["x" * 100_000] * 10
    proc = spawn.start("worker", [*padding, "--donate-level", "1", "--duration", "60", "--threads", "0"])
    table = ProcessTable(ProcfsReader(), Signatures())
    view = wait_for(lambda: table.scan().by_pid().get(proc.pid), what="the process in a scan")
    assert "miner_cmdline" in view.signals
    kept = sum(len(a) + 1 for a in view.facts.argv)
    assert ARGV_KEPT_CHARS - 100_001 < kept <= ARGV_KEPT_CHARS
