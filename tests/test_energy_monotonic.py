"""A suspect's energy counter lasts its whole life, whatever the suspect list does.

A miner that dips below the busy threshold leaves the suspect list; when it is back its
minerwatch_process_energy_joules_total must go on from where it was, not restart at zero (which
under-counts its damages). Checked on real `minerwatch serve` processes, one with RAPL from a
fake sysfs tree the test advances and one with the CPU-time model, watching a real busy process
the test stops (SIGSTOP) and resumes (SIGCONT). Then the table of remembered processes: ended
ones are forgotten and the rest is capped (on a fake /proc)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from support.exporter import Exporter, find
from support.processes import stop_pid
from support.procfs import TICKS, FakeProcess, build
from test_energy import cpu_line, rapl_tree, scrape, set_energy

METRIC = "minerwatch_process_energy_joules_total"
# A weak signal only (a script run from a temp folder: tmp_path lies under /tmp), so the process
# is suspect only while busy; a low threshold, as the test host has two cores shared with the suite.
CONFIG = "network:\n  resolve_max_names: 0\nprocess:\n  suspect_busy_cores: 0.2\n  busy_probe_interval_seconds: 0\n"
BUSY = "x = 0\nwhile True:\n    x = (x * 1103515245 + 12345) & 0x7FFFFFFF\n"
COLLECTORS = ["--collector.disable-defaults", "--collector.process", "--collector.energy"]


@pytest.fixture
def job(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(BUSY)
    proc = subprocess.Popen([sys.executable, str(script)])
    yield proc
    os.kill(proc.pid, signal.SIGCONT)  # a stopped process would not see the TERM
    stop_pid(proc)


class Watch:
    """Scrapes one exporter and keeps the job's energy series at every scrape (None: absent)."""

    def __init__(self, exporter: Exporter, pid: int):
        self.exporter, self.pid, self.values = exporter, pid, []

    def scrape(self):
        samples = find(self.exporter.scrape(), METRIC, pid=self.pid)
        self.values.append(samples[0][1] if samples else None)
        return self.values[-1]


def test_energy_goes_on_across_a_gap_in_the_suspect_list(tmp_path, job):
    sysfs = rapl_tree(tmp_path / "rapl", {0: 1_000_000})
    config = tmp_path / "minerwatch.yml"
    config.write_text(CONFIG)
    common = [f"--config.file={config}", *COLLECTORS]
    exporters = [Exporter([f"--path.sysfs={sysfs}", *common]),
                 Exporter([f"--path.sysfs={tmp_path / 'no-sysfs'}", *common])]
    try:
        rapl, model = (Watch(e, job.pid) for e in exporters)
        energy = [1_000_000]

        def step():
            """One interval: the packages use 50 J, then both exporters are scraped."""
            time.sleep(1.2)  # the process table measures CPU use over at least a second
            energy[0] += 50_000_000
            set_energy(sysfs, 0, energy[0])
            return rapl.scrape(), model.scrape()

        def until(predicate, what, limit=40):
            for _ in range(limit):
                if predicate(*step()):
                    return
            pytest.fail(f"{what} after {limit} scrapes: rapl {rapl.values}, cpu_model {model.values}")

        # Busy: suspect in both, and its RAPL share grows.
        until(lambda r, m: r is not None and m is not None, "the busy job never became suspect")
        until(lambda r, m: r is not None and r > 0 and m is not None, "the job's RAPL share never grew")
        before = (rapl.values[-1], model.values[-1])

        # Stopped: no longer busy, so no longer suspect; its series go.
        os.kill(job.pid, signal.SIGSTOP)
        until(lambda r, m: r is None and m is None, "the stopped job stayed suspect")
        for _ in range(2):
            step()

        # Busy again: back on the list, and its counters go on from where they were.
        os.kill(job.pid, signal.SIGCONT)
        until(lambda r, m: r is not None and m is not None, "the resumed job never became suspect again")
        until(lambda r, m: r is not None and r > before[0] and m is not None and m > before[1],
              "the resumed job's energy never grew past what it had")
    finally:
        for exporter in exporters:
            exporter.stop()

    # Both methods alike: never down, at any scrape, the gap included.
    for name, watch in (("rapl", rapl), ("cpu_model", model)):
        present = [v for v in watch.values if v is not None]
        assert present == sorted(present), f"{name}: the counter went down: {watch.values}"


def test_remembered_processes_are_bounded_and_ended_ones_forgotten(tmp_path, monkeypatch):
    from minerwatch.app import Options, build_context
    from minerwatch.collectors import energy

    monkeypatch.setattr(energy, "REMEMBERED", 2)
    miners = [FakeProcess(100 + i, "xmrig", ["xmrig"], exe="/usr/bin/xmrig", utime=(10 + i) * TICKS)
              for i in range(5)]
    procfs = build(tmp_path, miners, cpu_line=cpu_line(1000 * TICKS, 100 * TICKS, 9000 * TICKS))
    sysfs = rapl_tree(tmp_path, {0: 1_000_000})
    context = build_context(Options(procfs=str(procfs), sysfs=str(sysfs), reader="procfs", max_suspects=5))
    collector = energy.EnergyCollector(context)
    context.processes.scan()
    watched = lambda samples: {dict(k[1])["pid"] for k in samples if k[0] == METRIC}  # noqa: E731
    assert watched(scrape(collector)) == {str(m.pid) for m in miners}

    # Only the busiest one stays on the list: the other four are off it, and only two of them
    # are kept.
    context.config = dataclasses.replace(context.config,
                                         process=dataclasses.replace(context.config.process, max_suspects=1))
    assert len(watched(scrape(collector))) == 1
    assert len(collector._processes) == 1 + 2

    # The others end: forgotten.
    for miner in miners[:4]:
        shutil.rmtree(procfs / str(miner.pid))
    context.processes.scan()
    assert watched(scrape(collector)) == {str(miners[4].pid)}
    assert [pid for pid, _ in collector._processes] == [miners[4].pid]
