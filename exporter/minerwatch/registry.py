"""Collector registry: every collector registers itself by name, the runner times each one."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Optional

from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger("minerwatch.registry")


class Collector:
    """Base of every minerwatch collector.

    A collector reads one area of the host and yields fresh metric families on every call of
    `collect()` (client_python's custom-collector pattern). It may keep caches between scrapes
    but never pre-built families. `collect()` is called from HTTP server threads, one at a time
    per collector (the runner holds a lock), so a collector needs no locking of its own.
    """

    name: str = ""
    help: str = ""
    default_enabled: bool = True

    def __init__(self, context: "Context") -> None:
        self.context = context

    def collect(self) -> Iterable[Metric]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release threads, sockets or libraries; called once at shutdown."""


@dataclass
class Context:
    """What collectors share: configuration, host paths and the shared process view.

    `processes` is the one classification of processes on this host (see process_table.py);
    other collectors (gpu, network, antivirus) look processes up there instead of classifying
    them again. `signal_sources` are extra per-process signal providers (antivirus exclusions,
    pool connections) that the process table asks when it classifies a process;
    `busy_sources` say which processes keep other hardware busy (a GPU miner uses little CPU).
    """

    config: "object"
    procfs: str = "/proc"
    sysfs: str = "/sys"
    processes: Optional["object"] = None
    signal_sources: List["object"] = field(default_factory=list)
    busy_sources: List["object"] = field(default_factory=list)  # pids busy on other hardware (GPUs)


_REGISTRY: Dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a collector known by its `name` (and so a --collector.<name> flag)."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"collector name missing or registered twice: {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> Dict[str, type]:
    """All registered collectors by name, importing the built-in ones first."""
    import minerwatch.collectors  # noqa: F401  (registers the built-in collectors)

    return dict(sorted(_REGISTRY.items()))


class CollectorRunner:
    """The one object registered with the prometheus registry.

    Runs every enabled collector on each scrape, isolates failures (a collector that raises
    yields nothing but `..._success 0`) and adds the per-collector self-metrics.
    """

    def __init__(self, collectors: List[Collector], clock: Callable[[], float] = time.perf_counter):
        import threading

        self.collectors = collectors
        self._clock = clock
        self._locks = {c.name: threading.Lock() for c in collectors}

    def describe(self) -> Iterable[Metric]:
        # Defined so that registering the runner does not run a whole scrape.
        return []

    def collect(self) -> Iterator[Metric]:
        duration = GaugeMetricFamily(
            "minerwatch_scrape_collector_duration_seconds",
            "Time a collector took in the last scrape.",
            labels=["collector"],
        )
        success = GaugeMetricFamily(
            "minerwatch_scrape_collector_success",
            "1 if the collector succeeded in the last scrape, 0 if it failed.",
            labels=["collector"],
        )
        for collector in self.collectors:
            start = self._clock()
            with self._locks[collector.name]:
                try:
                    families = list(collector.collect())
                    ok = 1.0
                except Exception:  # one collector must never take the others down
                    log.exception("collector %s failed", collector.name)
                    families, ok = [], 0.0
            duration.add_metric([collector.name], self._clock() - start)
            success.add_metric([collector.name], ok)
            yield from families
        yield duration
        yield success

    def close(self) -> None:
        for collector in self.collectors:
            try:
                collector.close()
            except Exception:
                log.exception("closing collector %s failed", collector.name)
