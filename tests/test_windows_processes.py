"""The psutil process path with Windows' specifics, on a fake of psutil's Windows backend that is
checked against the installed psutil: System Idle Process, kernel and protected processes, CPU
times in 100 ns units, create times and pid reuse, refused stat reads, deleted executables."""

from __future__ import annotations

import ast
import inspect
import os

import psutil
import pytest

from minerwatch.detection.process_table import ProcessTable
from minerwatch.host.proc_reader import PsutilReader, ReadError
from minerwatch.detection.signatures import Signatures
from support.fakes.psutil_windows import (
    FakeWindowsHost, WinProcess, _Process, filetime, pcputimes, pmem, system_processes,
)

BOOT = 1_700_000_000.0
SECOND = 10_000_000  # 100 ns units
TEMP = "C:\\Users\\bob\\AppData\\Local\\Temp"
PSUTIL_DIR = os.path.dirname(psutil.__file__)


def windows(*extra: WinProcess, files=(), denied_files=()):
    host = FakeWindowsHost([*system_processes(BOOT), *extra], boot_time=BOOT, files=files,
                           denied_files=denied_files)
    reader = PsutilReader(host.module(), platform="win32", file_stat=host.stat)
    return host, reader


def table_of(reader, now):
    return ProcessTable(reader, Signatures(), clock=lambda: now[0], wall_clock=lambda: BOOT + 3600 + now[0])


def miner(pid=5120, exe=TEMP + "\\svchost.exe", **kw):
    kw.setdefault("created", filetime(BOOT + 600))
    kw.setdefault("cmdline", [exe, "-o", "stratum+tcp://pool.example:3333", "--donate-level=1"])
    kw.setdefault("account", ("DESKTOP-7Q2", "bob"))
    return WinProcess(pid, exe, **kw)


# -- the fake stays psutil ---------------------------------------------------------------------
def _params(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_fake_process_methods_are_psutils_with_the_same_parameters():
    public = {n: m for n, m in vars(_Process).items() if not n.startswith("_") or n == "__init__"}
    public = {n: m for n, m in public.items() if callable(m)}
    assert {"oneshot", "name", "exe", "cmdline", "environ", "cwd", "username", "create_time",
            "cpu_times", "num_threads", "memory_info"} <= set(public)
    for name, member in public.items():
        real = getattr(psutil.Process, name, None)
        assert callable(real), f"psutil.Process has no {name}"
        assert _params(member) == _params(real), name
    assert isinstance(vars(_Process)["pid"], property) and isinstance(psutil.Process.pid, property)
    assert not hasattr(_Process, "uids")  # POSIX only: psutil's Windows Process has none


def test_fake_module_has_psutils_names_and_its_own_exceptions():
    module = FakeWindowsHost().module()
    for name, value in vars(module).items():
        assert hasattr(psutil, name), f"psutil has no {name}"
        if isinstance(value, type) and issubclass(value, BaseException):
            assert value is getattr(psutil, name)  # the very classes, constructors and attributes
        elif callable(value) and name != "Process":
            assert _params(value) == _params(getattr(psutil, name)), name
    assert issubclass(psutil.ZombieProcess, psutil.NoSuchProcess)  # the reader relies on the order
    err = psutil.AccessDenied(880, "lsass.exe")
    assert (err.pid, err.name, err.msg) == (880, "lsass.exe", "")


def _windows_tuples():
    """psutil's Windows named tuples, read from the installed psutil/_ntuples.py (the branch
    that does not run on Linux): name -> fields."""
    tree = ast.parse(open(os.path.join(PSUTIL_DIR, "_ntuples.py")).read())
    found = {}

    def collect(body):
        for node in body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and len(node.value.args) == 2:
                try:
                    found[node.targets[0].id] = tuple(ast.literal_eval(node.value.args[1]))
                except ValueError:  # built from another tuple's fields: not needed here
                    pass

    collect(tree.body)  # shared by every platform unless a branch redefines it
    for node in tree.body:
        while isinstance(node, ast.If):
            if isinstance(node.test, ast.Name) and node.test.id == "WINDOWS":
                collect(node.body)
                break
            node = node.orelse[0] if node.orelse else None
    return found


def test_fake_tuples_and_special_answers_are_psutils_windows_ones():
    tuples = _windows_tuples()
    assert pcputimes._fields == tuples["pcputimes"]
    assert pmem._fields == tuples["pmem"]
    source = open(os.path.join(PSUTIL_DIR, "_pswindows.py")).read()
    for text in ('"System Idle Process"', '"System"', "'NT AUTHORITY\\\\SYSTEM'", "if self.pid in {0, 4}:",
                 'debug("attempting cpu_times() fallback (slower)")',
                 'debug("attempting create_time() fallback (slower)")'):
        assert text in source, text


# -- System Idle Process ----------------------------------------------------------------------
def test_system_idle_process_is_not_listed_on_windows_only():
    host, reader = windows()
    assert 0 not in reader.pids() and 4 in reader.pids()
    assert 0 in PsutilReader(host.module(), platform="linux").pids()


def test_idle_time_is_not_the_busiest_process():
    host, reader = windows()
    now = [0.0]
    table = table_of(reader, now)
    table.scan()
    host.processes[0].kernel_time += 40 * SECOND  # 4 CPUs idle for 10 s
    host.processes[4].kernel_time += 2 * SECOND  # the System process works a little
    now[0] = 10.0
    snapshot = table.scan()
    names = [v.facts.comm for v in snapshot.top]
    assert "System Idle Process" not in [v.facts.comm for v in snapshot.processes]
    assert names[0] == "System" and snapshot.top[0].cpu_cores == pytest.approx(0.2)


# -- kernel and protected processes ------------------------------------------------------------
@pytest.mark.parametrize("pid,comm", [(4, "System"), (140, "Secure System"), (188, "Registry"),
                                      (2400, "MemCompression")])
def test_kernel_processes_count_no_error_and_no_disguise(pid, comm):
    host, reader = windows()
    facts = reader.facts(reader.stat(pid))
    assert (facts.comm, facts.exe, facts.exe_deleted, facts.argv, facts.errors) == (comm, "", False, [], ())
    matches = Signatures().match_all(comm=facts.comm, exe=facts.exe, exe_deleted=facts.exe_deleted,
                                     argv=facts.argv, environ=facts.environ)
    assert matches == []
    assert reader.exe_path(pid) == ""  # nothing to hash: not a file in the service's directory


def test_a_scan_of_a_bare_windows_counts_only_what_protection_hides():
    host, reader = windows()
    now = [0.0]
    table = table_of(reader, now)
    for _ in range(3):
        snapshot = table.scan()
        now[0] += 15
    assert sorted(v.facts.comm for v in snapshot.processes) == sorted(
        ["System", "Secure System", "Registry", "MemCompression", "csrss.exe", "lsass.exe", "MsMpEng.exe"])
    assert not snapshot.suspects
    # csrss, lsass, MsMpEng: environment and directory refused once per life each; kernel: nothing
    assert dict(table.read_errors_total) == {"permission": 6}


def test_protected_process_is_read_through_psutils_fallbacks():
    host, reader = windows()
    stat = reader.stat(880)
    facts = reader.facts(stat)
    assert (stat.comm, facts.exe) == ("lsass.exe", "C:\\Windows\\System32\\lsass.exe")
    assert facts.argv == ["C:\\Windows\\system32\\lsass.exe"]  # NtQueryInformationProcess, not the PEB
    assert (facts.environ, facts.cwd, facts.user) == (None, "", "NT AUTHORITY\\SYSTEM")
    assert list(facts.errors) == ["permission", "permission"]
    stat = reader.stat(188)  # OpenProcess refused: times, threads, memory from NtQuerySystemInformation
    assert stat.cpu_seconds == pytest.approx(2.0) and stat.threads == 4
    assert ("proc_info", 188) in host.calls


def test_refused_stat_degrades_and_counts_once_per_life():
    """What macOS answers for other users' processes, and what a psutil without Windows'
    fallback would: AccessDenied from cpu_times(). The process stays in the table."""
    proc = miner(fail={"cpu_times": psutil.AccessDenied})
    host, reader = windows(proc)
    now = [0.0]
    table = table_of(reader, now)
    for _ in range(4):
        snapshot = table.scan()
        now[0] += 15
    assert proc.pid in [v.facts.pid for v in snapshot.processes]
    assert proc.pid in [v.facts.pid for v in snapshot.suspects]  # the command line still speaks
    assert table.read_errors_total["permission"] == 6 + 1


def test_refused_stat_keeps_the_last_values_read():
    proc = miner(user_time=30 * SECOND, threads=8, wset=2 << 30)
    host, reader = windows(proc)
    first = reader.stat(proc.pid)
    proc.fail["cpu_times"] = psutil.AccessDenied
    later = reader.stat(proc.pid)
    assert (later.cpu_seconds, later.threads, later.rss_bytes) == (30.0, 8, 2 << 30)
    assert later.start_time == first.start_time


def test_refused_name_is_a_permission_error():
    host, reader = windows(miner(fail={"exe": psutil.AccessDenied}))
    with pytest.raises(ReadError) as err:
        reader.stat(5120)
    assert err.value.reason == "permission"


# -- CPU times in 100 ns, create times, pid reuse ----------------------------------------------
def test_cpu_times_in_100ns_units_and_past_32_bits():
    busy = miner(user_time=5_000_000_001, kernel_time=123_456_789)  # 500.0000001 s: over 2**32 units
    host, reader = windows(busy)
    stat = reader.stat(busy.pid)
    assert stat.cpu_seconds == pytest.approx(500.0000001 + 12.3456789, abs=1e-6)
    assert stat.start_time == pytest.approx(BOOT + 600, abs=1e-6)
    assert stat.rss_bytes == busy.wset
    now = [0.0]
    table = table_of(reader, now)
    table.scan()
    busy.user_time += 4 * 15 * SECOND  # four cores for 15 s
    now[0] = 15.0
    assert table.scan().top[0].cpu_cores == pytest.approx(4.0)


@pytest.mark.parametrize("later", [1, 10_000])  # 100 ns, 1 ms
def test_a_pid_reused_later_is_a_new_process(later):
    """psutil's create time is a double: at today's Unix times one step is 2**-22 s (238 ns), so
    stamps 100 ns apart read as the same time; the name tells the lives apart."""
    first = miner(pid=7000, exe="C:\\Windows\\System32\\notepad.exe", cmdline=["notepad.exe"],
                  created=filetime(BOOT + 600))
    host, reader = windows(first, files=[first.exe])
    now = [0.0]
    table = table_of(reader, now)
    assert not table.scan().suspects
    host.exit(7000)
    host.start(miner(pid=7000, created=first.created + later))
    now[0] = 15.0
    assert [v.facts.pid for v in table.scan().suspects] == [7000]
    psutil_time = host.module().Process(7000).create_time()
    assert (psutil_time == BOOT + 600) == (later == 1)


def test_a_pid_reused_within_one_clock_step_is_a_new_process_when_the_name_differs():
    first = miner(pid=7000, exe="C:\\Windows\\System32\\notepad.exe", cmdline=["notepad.exe"])
    host, reader = windows(first, files=[first.exe])
    now = [0.0]
    table = table_of(reader, now)
    assert not table.scan().suspects
    host.exit(7000)
    host.start(miner(pid=7000, created=first.created))  # the same create time stamp
    now[0] = 15.0
    snapshot = table.scan()
    assert [v.facts.comm for v in snapshot.suspects] == ["svchost.exe"]
    start = snapshot.suspects[0].stat.start_time
    assert BOOT + 600 < start < BOOT + 600 + 1e-6
    assert reader.stat(7000).start_time == start  # the same for the rest of that life


def test_system_create_times_as_psutil_gives_them():
    host, reader = windows()
    assert reader.stat(4).start_time == pytest.approx(BOOT)  # GetProcessTimes
    assert host.module().Process(0).create_time() == 0.0  # the fallback's 0 for pid 0


# -- executables: deleted, mapped, unreadable -------------------------------------------------
@pytest.mark.parametrize("exe,files,denied,deleted", [
    (TEMP + "\\svchost.exe", [], [], True),  # not found on a local drive: deleted (or ghosted)
    (TEMP + "\\svchost.exe", [TEMP + "\\svchost.exe"], [], False),
    (TEMP + "\\svchost.exe", [], [TEMP + "\\svchost.exe"], False),  # there, not for LocalSystem
    ("\\Device\\Mup\\fs01\\tools\\svchost.exe", [], [], False),  # drive mapped in the user's session
    ("\\\\fs01\\tools\\svchost.exe", [], [], False),  # a share
])
def test_exe_deleted_only_when_a_local_drive_says_not_found(exe, files, denied, deleted):
    host, reader = windows(miner(exe=exe), denied_files=denied)
    host.files = {f.lower() for f in files}
    facts = reader.facts(reader.stat(5120))
    assert (facts.exe, facts.exe_deleted, facts.errors) == (exe, deleted, ())
    assert facts.user == "DESKTOP-7Q2\\bob" and facts.cwd == "C:\\Windows\\system32"


def test_exe_path_for_hashing_is_a_file_path():
    host, reader = windows(miner(exe="\\Device\\Mup\\fs01\\tools\\x.exe"))
    assert reader.exe_path(5120) == ""
    assert reader.exe_path(880) == "C:\\Windows\\System32\\lsass.exe"


def test_a_windows_miner_is_found_with_its_evidence():
    host, reader = windows(miner(environ={"pool_url": "stratum+tcp://pool.example:3333"}))
    now = [0.0]
    table = table_of(reader, now)
    (view,) = table.scan().suspects
    assert view.facts.comm == "svchost.exe" and view.facts.user == "DESKTOP-7Q2\\bob"
    assert {"miner_cmdline", "exe_in_temp_dir"} <= set(view.signals)


def test_zombie_reads_are_not_a_vanished_process():
    """psutil raises ZombieProcess (a NoSuchProcess) on macOS and BSD for a zombie's memory."""
    host, reader = windows(miner(fail={"cmdline": psutil.ZombieProcess, "environ": psutil.ZombieProcess}))
    reader = PsutilReader(host.module(), platform="darwin", file_stat=host.stat)
    facts = reader.facts(reader.stat(5120))
    assert (facts.argv, facts.environ, facts.errors) == ([], None, ())
