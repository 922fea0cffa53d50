"""The behaviour and memory-shape checks on Windows: the same decisions as on Linux (behaviour.py,
memory_shape.py) fed through psutil's Windows API (probe_readers.PsutilSampler), on the fake of
psutil's Windows backend, itself checked here against the installed psutil's named tuples.

Each desk process is stepped five seconds at a time, as the table scans it: what its threads
compute, how often it switches, what it reads and writes, its connections and its memory. A
miner gets `miner_behaviour` and `randomx_memory`; a compute job, a video call, a browser, an
antivirus scan and a big spreadsheet recalculation stay quiet, for the reason expected of each;
a refused or vanished read costs the signal, never the scan."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable, List, Tuple

import psutil
import pytest

from minerwatch.detection.memory_shape import CACHE_BYTES, DATASET_BYTES, private_randomx_kind
from minerwatch.detection.probe_readers import PsutilSampler
from minerwatch.detection.process_table import ProcessTable
from minerwatch.detection.signatures import Signatures
from minerwatch.host.proc_reader import PsutilReader
from support.fakes import psutil_windows as fake
from support.fakes.psutil_windows import FakeWindowsHost, WinProcess, filetime, system_processes

BOOT = 1_700_000_000.0
SECOND = 10_000_000  # 100 ns units
MiB = 1 << 20
STEP = 5.0  # seconds between scans: the probe's interval
POOL = (("192.168.10.23", 50112), ("192.0.2.10", 443), "ESTABLISHED")  # TEST-NET-1: never reached
EXE = "C:\\Users\\bob\\AppData\\Local\\Programs\\Tools\\worker.exe"
PSUTIL_DIR = os.path.dirname(psutil.__file__)
SIGNALS = {"miner_behaviour", "randomx_memory"}


# -- the fake's named tuples are psutil's Windows ones -------------------------------------------
def _windows_ntuples() -> dict:
    """psutil/_ntuples.py evaluated as on Windows (its platform branch chosen by the flags)."""
    with open(os.path.join(PSUTIL_DIR, "_ntuples.py"), encoding="utf-8") as f:
        source = f.read()
    lines = []
    for line in source.splitlines():
        if line.startswith("from ._common import "):
            flag = line.rsplit(" ", 1)[1]
            line = f"{flag} = {flag == 'WINDOWS'}"
        lines.append(line)
    namespace: dict = {}
    exec(compile("\n".join(lines), "_ntuples.py", "exec"), namespace)  # noqa: S102 - psutil's own file
    return namespace


@pytest.mark.parametrize("name", ["pmem", "pio", "pctxsw", "pthread", "pconn", "addr", "pmmap_grouped",
                                  "pmmap_ext", "popenfile"])
def test_fake_named_tuples_have_psutils_windows_fields(name):
    assert getattr(fake, name)._fields == _windows_ntuples()[name]._fields


def test_fake_connections_are_psutils_deprecated_alias():
    host = FakeWindowsHost([WinProcess(5120, EXE, connections=[POOL])])
    proc = host.module().Process(5120)
    with pytest.warns(DeprecationWarning):
        assert proc.connections() == proc.net_connections()
    (conn,) = proc.net_connections(kind="tcp")
    assert (conn.fd, conn.family, conn.type, conn.raddr.port, conn.status) == (
        -1, socket.AF_INET, socket.SOCK_STREAM, 443, psutil.CONN_ESTABLISHED)
    assert proc.net_connections(kind="udp") == [] and proc.net_connections(kind="tcp6") == []
    with pytest.raises(ValueError):
        proc.net_connections(kind="bogus")


def test_fake_refuses_as_windows_does():
    protected = WinProcess(880, "C:\\Windows\\System32\\lsass.exe", access="limited", io=(1, 2, 3, 4, 5, 6))
    host = FakeWindowsHost([protected])
    proc = host.module().Process(880)
    assert proc.io_counters().other_bytes == 6 and proc.num_ctx_switches().involuntary == 0
    for call in (proc.threads, proc.memory_maps):
        with pytest.raises(psutil.AccessDenied):
            call()
    host.exit(880)
    with pytest.raises(psutil.NoSuchProcess):
        proc.io_counters()


# -- desks -----------------------------------------------------------------------------------------
@dataclass
class Shape:
    """What a process does in each STEP: per-thread cores, switches per second, I/O of step i
    (read ops, write ops, read bytes, write bytes, other ops, other bytes), its connections."""

    cores: List[float]
    switches_per_second: float
    io: Callable[[int], Tuple[int, int, int, int, int, int]]
    connections: List[tuple]
    private: int = 64 * MiB
    mapped_files: Tuple[Tuple[str, int], ...] = ()


def pool_session(i: int):
    """A Stratum session: a job pushed unasked every 30 s, a share every 15 s answered at once."""
    reads = writes = rb = wb = 0
    if i % 6 == 0:
        reads, rb = 1, 350
    if i % 3 == 1:
        reads, writes, rb, wb = reads + 1, 1, rb + 90, 180
    return reads, writes, rb, wb, 0, 0


def rpc_worker(i: int):
    """A compute node: a task comes in, 20 s of work, the result goes out (acknowledged later)."""
    if i % 4 == 0:
        return 1, 0, 600, 0, 0, 0
    if i % 4 == 3:
        return 0, 1, 0, 400, 0, 0
    return 0, 0, 0, 0, 0, 0


MINER = Shape([1.0] * 4 + [0.0, 0.0], 2.0, pool_session, [POOL],
              private=DATASET_BYTES + CACHE_BYTES + 4 * 2 * MiB + 30 * MiB)


def start(host: FakeWindowsHost, pid: int, shape: Shape, **kw) -> WinProcess:
    proc = WinProcess(pid, kw.pop("exe", EXE), created=filetime(BOOT + 600), cmdline=["worker.exe"],
                      account=("DESKTOP-7Q2", "bob"), threads=len(shape.cores), private=shape.private,
                      connections=list(shape.connections), mapped_files=list(shape.mapped_files),
                      thread_times={pid + 4 * n: (0, 0) for n in range(len(shape.cores))}, **kw)
    return host.start(proc)


def step(proc: WinProcess, shape: Shape, i: int) -> None:
    for n, (tid, (user, kernel)) in enumerate(sorted(proc.thread_times.items())):
        proc.thread_times[tid] = (user + round(shape.cores[n] * STEP * SECOND), kernel)
    proc.user_time += round(sum(shape.cores) * STEP * SECOND)
    proc.ctx_switches += round(shape.switches_per_second * STEP)
    proc.io = tuple(a + b for a, b in zip(proc.io, shape.io(i)))


def run_desk(shapes, steps: int = 40, **kw):
    """Scan a desk with these processes (pid -> shape) every STEP seconds; the last snapshot and
    the table."""
    host = FakeWindowsHost(system_processes(BOOT), boot_time=BOOT)
    procs = {pid: start(host, pid, shape, **kw) for pid, shape in shapes.items()}
    reader = PsutilReader(host.module(), platform="win32", file_stat=host.stat)
    now = [0.0]
    table = ProcessTable(reader, Signatures(), clock=lambda: now[0], wall_clock=lambda: BOOT + 3600 + now[0])
    snapshot = table.scan()
    for i in range(steps):
        for pid, shape in shapes.items():
            step(procs[pid], shape, i)
        now[0] += STEP
        snapshot = table.scan()
    return snapshot, table, procs


def verdict(table, snapshot, pid):
    view = snapshot.by_pid()[pid]
    return table.busy_probe.verdict((pid, view.stat.start_time))


# -- the miner gets the signals ---------------------------------------------------------------------
def test_a_pool_miner_on_windows_gets_both_signals():
    snapshot, table, _ = run_desk({5120: MINER})
    signals = snapshot.by_pid()[5120].signals
    assert SIGNALS <= set(signals)
    assert "4 equally busy threads" in signals["miner_behaviour"]
    assert "with a pool session's rhythm" in signals["miner_behaviour"]
    assert signals["randomx_memory"].startswith("committed private memory of 2374 MiB (RandomX dataset)")
    assert verdict(table, snapshot, 5120) == ""


def test_a_solo_miner_with_librandomx_and_no_connection():
    solo = Shape([1.0] * 4, 2.0, lambda i: (0, 0, 0, 0, 0, 0), [], private=DATASET_BYTES + 40 * MiB,
                 mapped_files=(("C:\\Miner\\librandomx.dll", 900 * 1024), ("C:\\Windows\\System32\\ntdll.dll", 2 * MiB)))
    snapshot, _, _ = run_desk({5120: solo})
    signals = snapshot.by_pid()[5120].signals
    assert SIGNALS <= set(signals)
    assert "no connection" in signals["miner_behaviour"] and "librandomx.dll mapped" in signals["randomx_memory"]


def test_a_gpu_busy_process_is_judged_on_its_device_share():
    """A GPU miner idles on the CPU: the table's busy source brings it to the probe, judged on its
    share (flat) and its I/O; it gets no memory shape (RandomX is a CPU algorithm)."""
    gpu_miner = Shape([0.02, 0.0], 5.0, pool_session, [POOL], private=DATASET_BYTES + 40 * MiB)
    host = FakeWindowsHost(system_processes(BOOT), boot_time=BOOT)
    proc = start(host, 5120, gpu_miner)
    reader = PsutilReader(host.module(), platform="win32", file_stat=host.stat)
    now = [0.0]
    table = ProcessTable(reader, Signatures(), clock=lambda: now[0], wall_clock=lambda: BOOT + 3600 + now[0])

    class Gpu:  # the GPU collector's part that the table asks (process_table.BusySource)
        def busy_shares(self):
            return {5120: 0.97}

    table.add_busy_source(Gpu())
    snapshot = table.scan()
    for i in range(40):
        step(proc, gpu_miner, i)
        now[0] += STEP
        snapshot = table.scan()
    signals = snapshot.by_pid()[5120].signals
    assert "miner_behaviour" in signals and "randomx_memory" not in signals
    assert signals["miner_behaviour"].startswith("0.97 of a GPU, flat")


# -- ordinary work stays quiet, for the reason expected --------------------------------------------
QUIET = {
    # a numerical job fed by a scheduler: a miner's shape and memory, no pool rhythm
    "compute_job": (Shape([1.0] * 4, 2.0, rpc_worker, [(("10.1.2.3", 50200), ("10.1.0.5", 8786), "ESTABLISHED")],
                          private=DATASET_BYTES + CACHE_BYTES), "no_pool_rhythm"),
    # a video call: audio and video both ways, threads waiting on devices and the network
    "video_call": (Shape([0.6, 0.3, 0.2, 0.1], 900.0, lambda i: (400, 400, 300_000, 250_000, 800, 4096),
                         [(("192.168.10.23", 50300), ("192.0.2.40", 3478), "ESTABLISHED")]), "io"),
    # a browser: uneven threads, many switches, a little network
    "browser": (Shape([0.9, 0.3, 0.2, 0.15, 0.1], 3000.0, lambda i: (3, 3, 900, 700, 0, 0),
                      [(("192.168.10.23", 50400 + n), ("192.0.2.50", 443), "ESTABLISHED") for n in range(3)],
                      private=2300 * MiB), "context_switches"),
    # an antivirus scan: every file on the disk read
    "antivirus_scan": (Shape([1.0, 1.0], 5.0, lambda i: (2000, 10, 80 * MiB, 40_000, 100, 0), []), "io"),
    # a big spreadsheet recalculating: equal threads, quiet, 2.2 GiB private, nothing connected
    "excel_recalc": (Shape([1.0] * 8, 3.0, lambda i: (0, 0, 0, 0, 0, 0), [], private=DATASET_BYTES + 100 * MiB),
                     "no_connection"),
    # a render: equal threads but one thread of the eight twice as busy
    "render": (Shape([1.0] * 7 + [0.4], 3.0, lambda i: (0, 0, 0, 0, 0, 0), [POOL]), "threads_unequal"),
}


@pytest.mark.parametrize("name", sorted(QUIET))
def test_ordinary_work_gets_no_signal(name):
    shape, why = QUIET[name]
    snapshot, table, _ = run_desk({6000: shape})
    assert not SIGNALS & set(snapshot.by_pid()[6000].signals)
    assert verdict(table, snapshot, 6000) == why


def test_big_private_memory_without_the_rest_is_not_randomx():
    """Committed private bytes in the dataset's window alone say nothing: the process must look
    like a miner otherwise (here it does not: its threads wait on the GUI)."""
    assert private_randomx_kind(DATASET_BYTES + 100 * MiB, 8) == "dataset"
    assert private_randomx_kind(275 * MiB + CACHE_BYTES, 8) == ""  # a 6000x6000 float64 matrix beside
    office = Shape([1.0, 0.5, 0.3], 200.0, lambda i: (5, 5, 2000, 2000, 10, 400), [],
                   private=DATASET_BYTES + 100 * MiB)
    snapshot, table, _ = run_desk({6100: office})
    assert not SIGNALS & set(snapshot.by_pid()[6100].signals)
    assert verdict(table, snapshot, 6100) == "context_switches"


# -- refused reads: the signal is lost, the scan is not --------------------------------------------
@pytest.mark.parametrize("method", ["io_counters", "num_ctx_switches", "threads", "net_connections",
                                   "memory_maps"])
@pytest.mark.parametrize("error", [psutil.AccessDenied, psutil.NoSuchProcess])
def test_a_refused_read_costs_the_signal_not_the_scan(method, error):
    snapshot, table, _ = run_desk({5120: MINER, 6000: QUIET["video_call"][0]}, steps=8,
                                  fail={method: error})
    assert 5120 in snapshot.by_pid() and 6000 in snapshot.by_pid()
    assert not SIGNALS & set(snapshot.by_pid()[6000].signals)
    assert table.busy_probe.failures_total == 0
    assert verdict(table, snapshot, 5120) is not None  # judged, on what could be read
    if method in ("io_counters", "num_ctx_switches", "threads"):
        assert not SIGNALS & set(snapshot.by_pid()[5120].signals)


def test_a_protected_process_is_probed_without_error():
    """PROCESS_QUERY_LIMITED_INFORMATION only: I/O and switches through the fallback, no threads,
    no mapped files: the check cannot say."""
    snapshot, table, _ = run_desk({5120: MINER}, access="limited")
    assert not SIGNALS & set(snapshot.by_pid()[5120].signals)
    assert table.busy_probe.failures_total == 0
    assert verdict(table, snapshot, 5120) == "threads_unequal"  # no thread figures: no equal threads


def test_the_sampler_reads_a_sample_as_linux_does():
    host = FakeWindowsHost([WinProcess(5120, EXE, io=(10, 20, 1000, 2000, 5, 300), ctx_switches=77,
                                       connections=[POOL, (("0.0.0.0", 3389), (), "LISTEN")],
                                       thread_times={1: (SECOND, 0), 2: (2 * SECOND, SECOND)},
                                       private=DATASET_BYTES, threads=2)])
    reader = PsutilReader(host.module(), platform="win32", file_stat=host.stat)
    sample = PsutilSampler(reader.process, reader.psutil).sample(5120, 4.0, 100.0, 100.0)
    assert sample.io_bytes == 3300 and sample.voluntary_switches == 77
    assert sample.thread_cpu == {1: pytest.approx(1.0), 2: pytest.approx(3.0)}
    assert sample.connections == 1 and list(sample.sockets.values()) == [(2000, 1000, 20, 10)]
    assert sample.maps.candidates == ((0, DATASET_BYTES),)
