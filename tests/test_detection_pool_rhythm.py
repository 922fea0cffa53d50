"""Issue 23: behaviour and memory shape rest on what mining is, not on "busy and quiet".

Real processes, judged by the real process table and busy probe: a native compute worker with no
miner strings in its file (tests/support/compute_worker.py) talking to a pool that pushes jobs
(rhythm_pool.py), to a license server that answers heartbeats, or under an RPC master
(license_server.py); a solo RandomX miner on Debian's librandomx (hashing_node.py) beside a
numpy process holding a 6000x6000 float64 matrix; a throttled miner split over four
processes, each under the busy threshold; a miner busy only on a GPU (NVML faked: this machine has none).

Windows are scaled down for the tests (probe every 1 s, shape over 6 s, rhythm over 20 s, pushes
remembered 40 s; the shipped defaults are 5 s, 20 s, 120 s and 600 s). The machine has two cores
shared with other work: every assertion is over many samples, with generous waits, and the
benign side must have been judged (a full window, the condition that broke) to count as quiet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from statistics import median

import pytest

from support.compute_worker import build
from support.hashing_node import build_stand_in, installed
from support.processes import stop_pid, wait_for
from support.repo import ROOT
from minerwatch.host.proc_reader import ProcfsReader
from minerwatch.detection.process_table import ProcessSettings, ProcessTable
from minerwatch.detection.signatures import Signatures

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs and sock_diag are Linux")

PROBE_SIGNALS = {"miner_behaviour", "randomx_memory"}
IDENTITY = {"miner_name", "miner_cmdline", "pool_url", "encoded_cmdline", "wallet_address", "miner_env",
            "miner_exe_content", "miner_config", "pool_connection"}

MATRIX = """
import numpy as np
a = np.random.default_rng(1).random((6000, 6000))  # float64: 275 MiB, one mapping, all touched
while True:
    np.multiply(a, 1.0000001, out=a)
    np.subtract(a, 1e-9, out=a)
"""


@pytest.fixture
def servers(tmp_path):
    """start(module, *args) -> port of a support server process; all stopped by PID."""
    started = []

    def start(module, *args):
        port_file = tmp_path / f"{module}-{len(started)}.port"
        log = open(tmp_path / f"{module}-{len(started)}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", f"tests.support.{module}", "--port-file", str(port_file),
                                 *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        started.append((proc, log))
        return int(wait_for(lambda: port_file.exists() and port_file.read_text(), what=module))

    yield start
    for proc, log in reversed(started):
        stop_pid(proc)
        log.close()


@pytest.fixture
def processes():
    """start(argv, **popen) -> Popen; all stopped by PID."""
    started = []

    def start(argv, **kw):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        stop_pid(proc)


@pytest.fixture
def libexec():
    """A libexec-like folder outside the temp folders (those are a signal of their own)."""
    path = tempfile.mkdtemp(prefix="minerwatch-test-libexec-", dir=os.path.expanduser("~"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _raise_priority():
    try:
        os.nice(-10)
    except OSError:
        pass  # not root: the machine's load decides


def _table(suspect_busy_cores=0.5):
    settings = ProcessSettings(suspect_busy_cores=suspect_busy_cores, busy_probe_interval_seconds=1.0,
                               busy_probe_window_seconds=6.0)
    table = ProcessTable(ProcfsReader("/proc"), Signatures(), settings=settings)
    check = table.busy_probe.behaviour
    check.limits = replace(check.limits, rhythm_window_seconds=20.0, push_memory_seconds=40.0)
    return table


class Watch:
    """Scans the table every second and keeps, per pid, what each scan saw."""

    def __init__(self, table, pids):
        self.table, self.pids = table, list(pids)
        self.seen = {pid: [] for pid in self.pids}  # (cpu cores, signals, suspect, broken)

    def scan(self):
        by_pid = self.table.scan().by_pid()
        for pid in self.pids:
            view = by_pid.get(pid)
            if view is None:
                continue
            state = self.table.busy_probe._states.get((pid, view.stat.start_time))
            broken = state.track.broken if state is not None else ""
            self.seen[pid].append((view.cpu_cores, dict(view.signals), view.suspect, broken))

    def run(self, seconds, until=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.scan()
            if until is not None and until(self):
                return True
            time.sleep(1.0)
        return False

    def signals(self, pid):
        out = {}
        for _, signals, _, _ in self.seen[pid]:
            out.update(signals)
        return out

    def flagged(self, pid):
        return set(self.signals(pid)) & PROBE_SIGNALS

    def judged(self, pid):
        return {broken for _, _, _, broken in self.seen[pid] if broken}

    def has(self, pid, signal):
        return signal in self.signals(pid)


def test_pool_session_is_told_from_a_license_heartbeat_and_an_rpc_master(servers, processes, libexec):
    """Three copies of one string-less compute job, each one busy thread, no I/O, one quiet
    connection: to a pool that pushes jobs, to a license server answering heartbeats every 2 s,
    to an RPC master sending a task every 5 s. Only the first has a pool session's rhythm."""
    pool = servers("rhythm_pool", "--job-seconds", "2")
    license_port = servers("license_server", "--mode", "answer")
    master = servers("license_server", "--mode", "rpc", "--pause", "3")
    exe = build(libexec, "solver")
    miner = processes([exe, "1", "100", "127.0.0.1", str(pool), "s", "3000"])
    licensed = processes([exe, "1", "100", "127.0.0.1", str(license_port), "h", "2000"])
    worker = processes([exe, "1", "100", "127.0.0.1", str(master), "r", "2000"])
    # a lower threshold: three busy processes share two loaded cores, and each must be probed
    watch = Watch(_table(suspect_busy_cores=0.2), [miner.pid, licensed.pid, worker.pid])
    watch.run(60, until=lambda w: w.has(miner.pid, "miner_behaviour"))
    watch.run(45)  # the benign ones over more than the push memory, judged all along

    for name, pid in (("license job", licensed.pid), ("rpc worker", worker.pid)):
        assert not watch.flagged(pid), (name, watch.signals(pid))
        assert "no_pool_rhythm" in watch.judged(pid), (name, watch.judged(pid))
    assert watch.has(miner.pid, "miner_behaviour"), (watch.judged(miner.pid), watch.seen[miner.pid][-3:])
    reason = watch.signals(miner.pid)["miner_behaviour"]
    assert "1 connection(s)" in reason and "pool session's rhythm" in reason, reason
    assert not IDENTITY & set(watch.signals(miner.pid))  # behaviour alone saw it


def test_throttled_miner_split_over_processes_is_probed_and_judged(servers, processes, libexec):
    """Four processes, each one thread computing a fifth of the time (under suspect_busy_cores,
    0.25 here: the machine is loaded, the mechanism is proportional), under four names (copies
    of one file), talking to a pool: together they are busy, each is probed and judged."""
    pool = servers("rhythm_pool", "--job-seconds", "2")
    build(libexec, "solver")
    names = ["gvfsd-metadata", "tracker-extract", "evolution-alarm", "goa-identity"]
    for name in names:
        shutil.copy(os.path.join(libexec, "solver"), os.path.join(libexec, name))
    procs = [processes([os.path.join(libexec, name), "1", "20", "127.0.0.1", str(pool), "s", "3000"],
                       preexec_fn=_raise_priority) for name in names]
    watch = Watch(_table(suspect_busy_cores=0.25), [p.pid for p in procs])

    def all_seen(w):
        return all(w.has(p.pid, "miner_behaviour") and any(s for _, _, s, _ in w.seen[p.pid]) for p in procs)

    watch.run(120, until=all_seen)
    for proc, name in zip(procs, names):
        cores = [cpu for cpu, _, _, _ in watch.seen[proc.pid][1:]]
        assert cores and median(cores) < 0.25, (name, cores)  # each alone stays under the threshold
        assert watch.has(proc.pid, "miner_behaviour"), (name, watch.judged(proc.pid), cores)
        assert any(suspect for _, _, suspect, _ in watch.seen[proc.pid]), name


def test_solo_randomx_miner_is_told_from_a_big_matrix(processes, tmp_path):
    """RandomX hashing on librandomx, no network, nothing on its command line: randomx_memory
    and miner_behaviour. A numpy process busy on a 6000x6000 float64 matrix (275 MiB, one
    anonymous mapping, flat CPU, no I/O, no connection): neither."""
    lib = installed() or build_stand_in(str(tmp_path))
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    node = processes([sys.executable, "-m", "tests.support.hashing_node", "--lib", lib], cwd=ROOT, env=env)
    matrix = processes([sys.executable, "-c", MATRIX], env=env)
    # a low threshold: both are probed whatever else loads the machine
    watch = Watch(_table(suspect_busy_cores=0.1), [node.pid, matrix.pid])

    def found(w):
        return w.has(node.pid, "randomx_memory") and w.has(node.pid, "miner_behaviour")

    watch.run(90, until=found)
    watch.run(15)  # the matrix over more windows
    assert not watch.flagged(matrix.pid), watch.signals(matrix.pid)
    assert watch.judged(matrix.pid), "the matrix was never judged over a full window"
    signals = watch.signals(node.pid)
    assert "randomx_memory" in signals, (watch.judged(node.pid), watch.seen[node.pid][-3:])
    assert "RandomX cache" in signals["randomx_memory"] and "librandomx" in signals["randomx_memory"]
    assert "no connection" in signals.get("miner_behaviour", ""), signals


def test_miner_busy_only_on_a_gpu_is_probed(servers, processes, libexec):
    """A process with no busy thread, 97% of a GPU (NVML, faked: pynvml's own API over a GPU
    described in Python) and a pool session: probed for its GPU share, judged on it."""
    from support.fakes.nvml import FakeGpu, FakeNvml
    from minerwatch.collectors.base import Context
    from minerwatch.collectors.gpu import GpuCollector
    from minerwatch.config import Config

    pool = servers("rhythm_pool", "--job-seconds", "2")
    exe = build(libexec, "nv-display-helper")
    miner = processes([exe, "0", "100", "127.0.0.1", str(pool), "s", "3000"])
    table = _table()
    gpu = FakeGpu("GPU-11111111-2222-3333-4444-555555555555", gpu_util=97, compute=[(miner.pid, 900 << 20)])
    clock = [1000.0]
    collector = GpuCollector(Context(config=Config(), processes=table), nvml=FakeNvml([gpu]), clock=lambda: clock[0])
    watch = Watch(table, [miner.pid])
    stamp = [1_000_000]

    def scrape_gpu(w):
        for _ in range(6):  # NVML's process samples since the last read, microseconds
            stamp[0] += 166_000
            gpu.process_samples.append((miner.pid, stamp[0], 97, 60))
        clock[0] += 1.0
        list(collector.collect())
        return w.has(miner.pid, "miner_behaviour")

    watch.run(60, until=scrape_gpu)
    cores = [cpu for cpu, _, _, _ in watch.seen[miner.pid][1:]]
    assert max(cores) < 0.2, cores  # idle on the CPU
    assert watch.has(miner.pid, "miner_behaviour"), (watch.judged(miner.pid), collector.busy_shares())
    assert "of a GPU" in watch.signals(miner.pid)["miner_behaviour"]
