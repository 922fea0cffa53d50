"""Energy collector: estimated energy of the host's CPU work and of each suspect process.

What a miner costs is counted on the host, by the best method it can read:
- `rapl`: the CPU packages' own energy counters (see rapl.py), apportioned to a process by its
  share of the host's busy CPU time over each scrape interval, the way Scaphandre and Kepler
  apportion it. The package's idle draw is shared out too, so this errs high for a process that
  is alone on an otherwise idle CPU.
- `cpu_model`: where RAPL is absent or unreadable (Windows, virtual machines, non-root since
  Linux 5.10): CPU seconds times a per-core figure, `energy.cpu_watts_per_core` (default 10 W: a
  65 W office desktop processor, e.g. Core i5-12400 or Ryzen 5 5600G, has 6 cores: 10.8 W a busy
  core, rounded down so the estimate errs low). It counts only CPU work, never idle draw.
The GPU's share is counted by the gpu collector from NVML's own energy counter.

A process's counter lasts its whole life (keyed by pid and start time), whatever the suspect
list does: a miner that dips below the busy threshold and leaves the list keeps its joules, and
when it is back, the package energy of the time it was away is apportioned to it by its share of
the host's busy CPU time over all that time (in `cpu_model` its CPU seconds count the same way).
Processes that ended are forgotten; of those alive but off the list, at most REMEMBERED are kept,
the longest gone forgotten first, so the table stays bounded.

Sample output:
    minerwatch_host_energy_joules_total{method="rapl"} 51234.5
    minerwatch_process_energy_joules_total{method="rapl",name="xmrig",pid="4242",user="alice"} 812.0
    minerwatch_energy_model_cpu_core_watts 10
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Dict, Iterable, NamedTuple, Optional, Tuple

from minerwatch.host import rapl
from minerwatch.collectors.host import busy_seconds, read_cpu
from minerwatch.collectors.process import LABELS
from minerwatch.host.proc_reader import ReadError
from minerwatch.collectors.base import Collector, Context, register
from minerwatch.yaml_file import Node, section_fields
from minerwatch.serving.metrics import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger("minerwatch.energy")

DEFAULT_CPU_WATTS_PER_CORE = 10.0
# Processes alive but off the suspect list whose joules are kept (besides those on it): a
# handful on a real desk; a host spawning more suspects than this can only make the oldest
# restart from zero, which Prometheus and `minerwatch report` read as a counter reset.
REMEMBERED = 1000


class _Share(NamedTuple):
    """A process's RAPL apportioning: its CPU seconds, the host's busy CPU seconds and the
    packages' joules when it was last apportioned, and the joules it has been given so far."""

    cpu: float
    busy: float
    package: float
    joules: float


@dataclass(frozen=True)
class EnergySettings:
    cpu_watts_per_core: float = DEFAULT_CPU_WATTS_PER_CORE


def read_settings(node: Optional[Node]) -> EnergySettings:
    """The `energy:` section of the config file; errors name file, line and key."""
    fields = section_fields(node, ("cpu_watts_per_core",))
    return EnergySettings(**{key: child.number(minimum=0.1, maximum=1000.0) for key, child in fields.items()})


@register
class EnergyCollector(Collector):
    name = "energy"
    help = "Estimated energy of the host's CPU work and of each suspect process (RAPL or a CPU-time model)."

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.settings = context.config.energy
        self._rapl = rapl.EnergyCounter()
        self._rapl_reason: Optional[str] = None  # why RAPL is not used, logged once
        # (pid, start time) -> its share; in the order last apportioned, the longest ago first
        self._processes: Dict[Tuple[int, float], _Share] = {}

    def _read_rapl(self) -> Optional[float]:
        """Joules the packages used since the last scrape (0 on the first), None without RAPL."""
        try:
            zones = rapl.read_zones(self.context.sysfs)
        except rapl.RaplUnavailable as exc:
            if self._rapl_reason != str(exc):
                self._rapl_reason = str(exc)
                log.info("RAPL not used, energy is estimated from CPU time: %s", exc)
            return None
        return self._rapl.update(zones)

    def collect(self) -> Iterable[Metric]:
        watts = self.settings.cpu_watts_per_core
        modes, _ = read_cpu(self.context.procfs)
        busy = busy_seconds(modes)
        method = "cpu_model" if self._read_rapl() is None else "rapl"

        host = CounterMetricFamily(
            "minerwatch_host_energy",
            "Estimated energy of the host's CPUs: RAPL package energy since minerwatch started, or "
            "busy CPU seconds since boot times the per-core model figure.",
            labels=["method"], unit="joules",
        )
        host.add_metric([method], self._rapl.joules if method == "rapl" else busy * watts)
        yield host
        yield GaugeMetricFamily(
            "minerwatch_energy_model_cpu_core_watts",
            "Power of one busy CPU core in the cpu_model method (energy.cpu_watts_per_core).",
            value=watts,
        )
        yield self._process_energy(method, busy, watts)

    def _process_energy(self, method: str, busy: float, watts: float) -> Metric:
        family = CounterMetricFamily(
            "minerwatch_process_energy",
            "Estimated energy of a suspect process: its share of RAPL package energy while watched, "
            "or its CPU seconds times the per-core model figure.",
            labels=LABELS + ["method"], unit="joules",
        )
        table = self.context.processes
        if table is None:
            return family
        # Which processes are suspect comes from the last scan (the process collector scans once a
        # scrape, after this collector: the first scrape has none yet); their CPU time is read
        # again now, at the moment the host's counters were read, so both deltas cover the same
        # interval. One pread each, for at most max_suspects.
        snapshot = table.last
        if snapshot is None:  # the process collector has not scanned yet: no suspects known
            return family
        apportioned = 0
        for view in snapshot.suspects[: self.context.config.process.max_suspects]:
            try:
                stat = table.restat(view.pid)
            except ReadError:
                continue
            if stat.start_time != view.stat.start_time:
                continue  # the pid was reused
            cpu = stat.cpu_seconds
            if method == "rapl":
                value = self._apportion((view.pid, stat.start_time), cpu, busy)
                apportioned += 1
            else:
                value = cpu * watts
            family.add_metric([str(view.pid), view.name, view.user, method], value)
        self._forget(snapshot, apportioned)
        return family

    def _apportion(self, key: Tuple[int, float], cpu: float, busy: float) -> float:
        """The process's joules now: what it had, plus its share of the packages' energy since it
        was last apportioned (the last scrape, or before it left the list). Without RAPL the
        shares wait: they resume over the whole time when RAPL can be read again."""
        package = self._rapl.joules
        last = self._processes.pop(key, None)  # put back last: the most recently apportioned
        joules = 0.0
        if last is not None:
            joules = last.joules
            busy_delta = busy - last.busy
            if busy_delta > 0:
                share = min(max(cpu - last.cpu, 0.0) / busy_delta, 1.0)
                joules += (package - last.package) * share
        self._processes[key] = _Share(cpu, busy, package, joules)
        return joules

    def _forget(self, snapshot, apportioned: int) -> None:
        """Forget processes that ended, then the longest gone beyond REMEMBERED off the list."""
        if len(self._processes) <= apportioned:
            return  # every process kept was apportioned this scrape: none is off the list
        alive = snapshot.by_pid()
        for key in [k for k in self._processes if k[0] not in alive or alive[k[0]].stat.start_time != k[1]]:
            del self._processes[key]
        excess = len(self._processes) - apportioned - REMEMBERED
        for key in list(itertools.islice(self._processes, max(excess, 0))):
            del self._processes[key]
