"""Performance at scale (issue 17), the process table's part: beyond the one read of its stat line,
a scan does nothing for an idle process whose line did not change, and still gets CPU rates,
suspects and the top-K right.

Needs the process_table.py patch of issue 17 (it fails on the table before it: every scan made
a new view of every process). Figures are in tests/benchmark/run.sh, not here.
"""

from minerwatch.host.proc_reader import ProcfsReader
from minerwatch.detection.process_table import ProcessSettings, ProcessTable
from minerwatch.detection.signatures import Signatures
from support.procfs import TICKS, FakeProcess, build, stat_line

MINER = FakeProcess(100, "xmrig", ["./xmrig", "-o", "stratum+tcp://pool.example:3333"], exe="/home/bob/xmrig")
IDLE = [FakeProcess(pid, "bash", ["-bash"], exe="/usr/bin/bash") for pid in (200, 300, 400)]
WORKER = FakeProcess(500, "make", ["make", "-j2"], exe="/usr/bin/make")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def set_cpu(proc_root, process, seconds):
    (proc_root / str(process.pid) / "stat").write_text(stat_line(FakeProcess(**{**process.__dict__,
                                                                                "utime": int(seconds * TICKS)})))


def test_idle_processes_keep_their_view_and_rates_stay_right(tmp_path):
    proc = build(tmp_path, [MINER, *IDLE, WORKER])
    reader = ProcfsReader(str(proc))
    clock = Clock()
    table = ProcessTable(reader, Signatures(), settings=ProcessSettings(top_k=3, top_min_cpu_cores=0.0),
                         clock=clock, wall_clock=lambda: reader._boot_time + 10_000)
    first = table.scan()
    clock.now += 15
    set_cpu(proc, WORKER, 15)  # one core for 15 s
    second = table.scan()
    clock.now += 15
    third = table.scan()  # WORKER idle again

    before, after = first.by_pid(), second.by_pid()
    for pid in (100, 200, 300, 400):  # unchanged stat lines: the very same view, nothing rebuilt
        assert after[pid] is before[pid]
    assert after[500] is not before[500] and after[500].cpu_cores == 1.0
    assert third.by_pid()[500].cpu_cores == 0.0  # a rate falls back to zero once the CPU time stops
    assert [v.pid for v in second.suspects] == [100]  # an idle miner stays suspect on the fast path
    assert table.lookup(100) is third.by_pid()[100]

    # With no CPU floor the top-K is the busiest first, then idle processes (in the order listed).
    top = [v.pid for v in second.top]
    assert top[0] == 500 and len(top) == 3 and {100, 200, 300, 400} >= set(top[1:])

    # Idle for a long spell, then busy: the rate is over the last interval, not the whole spell.
    for _ in range(10):
        clock.now += 15
        table.scan()
    clock.now += 15
    set_cpu(proc, IDLE[0], 7.5)
    assert table.scan().by_pid()[200].cpu_cores == 0.5
