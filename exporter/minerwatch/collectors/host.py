"""Host collector: CPU seconds by mode and the number of CPUs, so rules need no node_exporter.

Sample output:
    minerwatch_host_cpu_seconds_total{mode="user"} 81234.5
    minerwatch_host_cpus 8
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, Tuple

from minerwatch.collectors.base import Collector, register
from minerwatch.serving.metrics import CounterMetricFamily, GaugeMetricFamily, Metric

# Field order of the "cpu" line of /proc/stat (proc(5)); guest time is already in user/nice.
PROC_STAT_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def parse_proc_stat(text: str, ticks: int) -> Tuple[Dict[str, float], int]:
    """CPU seconds by mode (all CPUs together) and the CPU count from /proc/stat."""
    modes: Dict[str, float] = {}
    cpus = 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = line.split()[1:]
            modes = {m: int(v) / ticks for m, v in zip(PROC_STAT_MODES, values)}
        elif line.startswith("cpu"):
            cpus += 1
    return modes, cpus


def read_psutil() -> Tuple[Dict[str, float], int]:
    import psutil  # where there is no /proc/stat only
    times = psutil.cpu_times()._asdict()
    modes = {m: times[m] for m in PROC_STAT_MODES if m in times}
    for m in ("interrupt", "dpc"):  # Windows names
        if m in times:
            modes["irq"] = modes.get("irq", 0.0) + times[m]
    return modes, psutil.cpu_count() or 0


def read_cpu(procfs: str) -> Tuple[Dict[str, float], int]:
    """CPU seconds by mode and the CPU count: /proc/stat where there is one, psutil elsewhere."""
    path = os.path.join(procfs, "stat")
    if os.path.isfile(path):
        with open(path) as f:
            return parse_proc_stat(f.read(), os.sysconf("SC_CLK_TCK"))
    return read_psutil()


def busy_seconds(modes: Dict[str, float]) -> float:
    """CPU seconds not spent idle or waiting for I/O."""
    return sum(v for m, v in modes.items() if m not in ("idle", "iowait"))


@register
class HostCollector(Collector):
    name = "host"
    help = "Host CPU seconds by mode and the number of CPUs."

    def collect(self) -> Iterable[Metric]:
        modes, cpus = read_cpu(self.context.procfs)
        seconds = CounterMetricFamily(
            "minerwatch_host_cpu_seconds", "CPU time of the host by mode, all CPUs together.", labels=["mode"]
        )
        for mode, value in modes.items():
            seconds.add_metric([mode], value)
        yield seconds
        yield GaugeMetricFamily("minerwatch_host_cpus", "Number of CPUs of the host.", value=cpus)
