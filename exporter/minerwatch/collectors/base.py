"""What every collector shares: the Collector interface, the Context, registration by name, and
the runner that times each collector on a scrape (node_exporter keeps these beside its collectors).

Collector modules import this one; `minerwatch.collectors` imports every collector module and
offers `available()`, so nothing here imports a collector.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, Iterable, Iterator, List, Optional

from minerwatch.serving.metrics import GaugeMetricFamily, Metric

if TYPE_CHECKING:  # config.py imports the collectors' settings readers, so not at run time
    from minerwatch.config import Config
    from minerwatch.detection.process_table import ProcessTable

log = logging.getLogger("minerwatch.collectors")


class Collector:
    """Base of every minerwatch collector.

    A collector reads one area of the host and yields fresh metric families on every call of
    `collect()` (client_python's custom-collector pattern). It may keep caches between scrapes
    but never pre-built families. The runner calls `collect()` in a worker thread of the
    collector's own, one run at a time per collector (it holds a lock), so a collector needs no
    locking of its own; different collectors run at the same time, so what they share (the
    process table) locks itself.
    """

    name: str = ""
    help: str = ""
    default_enabled: bool = True

    def __init__(self, context: "Context") -> None:
        self.context = context

    @classmethod
    def applies(cls) -> bool:
        """False where what the collector reads cannot exist (Windows APIs on Linux): it is then
        neither run nor reported, so a fleet stores no series for it."""
        return True

    def collect(self) -> Iterable[Metric]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release threads, sockets or libraries; called once at shutdown."""


@dataclass
class Context:
    """What collectors share: the configuration, host paths and the shared process view.

    `config` holds one frozen settings object per area (config.py), the flags already applied:
    a collector reads its own (`config.gpu`) and the process limits (`config.process`).
    `processes` is the one classification of processes on this host (process_table.py); other
    collectors look processes up there instead of classifying them again, and feed it through
    `add_signal_source` (pool connections, antivirus exclusions) and `add_busy_source` (GPUs).
    """

    config: "Config"
    procfs: str = "/proc"
    sysfs: str = "/sys"
    rootfs: str = "/"  # the host's root, where its configuration files are (/host in a container)
    state_dir: str = ""  # --state.dir: where `minerwatch evidence` records its bundles ("" = the default)
    processes: Optional["ProcessTable"] = None


_REGISTRY: Dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a collector known by its `name` (and so a --collector.<name> flag)."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"collector name missing or registered twice: {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> Dict[str, type]:
    """The collectors registered so far, by name (`minerwatch.collectors.available()` first
    imports the built-in ones)."""
    return dict(sorted(_REGISTRY.items()))


DEFAULT_TIMEOUT = 5.0  # seconds; Prometheus gives up on a scrape after 10 s by default
WORKER_IDLE_EXIT = 300.0  # seconds without a job before a collector's worker thread ends


class _Job:
    """One run of one collector's collect(), in its worker thread."""

    def __init__(self, started: float):
        self.started = started
        self.ended: Optional[float] = None
        self.done = threading.Event()
        self.families: List[Metric] = []
        self.ok = False
        self.overdue = False  # a scrape gave up waiting for it


class _Slot:
    """A collector, the lock held while its collect() runs, the run that holds it, and the worker
    thread that runs it.

    The worker lives across scrapes: starting a thread per collector per scrape cost about 0.1 ms
    each and allocated a pid each time (which also makes the process reader list /proc again).
    It ends after WORKER_IDLE_EXIT seconds without work, or at close()."""

    def __init__(self, collector: Collector):
        self.collector = collector
        self.lock = threading.Lock()  # taken by the scrape, released by the worker when the run ends
        self.job: Optional[_Job] = None
        self._jobs: "Optional[queue.SimpleQueue[Optional[_Job]]]" = None  # the worker's, while it lives

    def submit(self, job: _Job, work: Callable[["_Slot", _Job], None]) -> None:
        """Hand `job` to the worker, starting one if there is none. The caller holds `lock`.
        Raises RuntimeError when no thread can be started."""
        if self._jobs is None:
            jobs: "queue.SimpleQueue[Optional[_Job]]" = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(jobs, work), name=f"collector-{self.collector.name}",
                             daemon=True).start()
            self._jobs = jobs
        self._jobs.put(job)

    def stop(self) -> None:
        jobs, self._jobs = self._jobs, None
        if jobs is not None:
            jobs.put(None)

    def _serve(self, jobs: "queue.SimpleQueue[Optional[_Job]]", work: Callable[["_Slot", _Job], None]) -> None:
        while True:
            try:
                job = jobs.get(timeout=WORKER_IDLE_EXIT)
            except queue.Empty:
                # Idle for long: end, unless a scrape is handing over a job right now (it holds
                # the lock from before submit() until the run ends).
                if self.lock.acquire(blocking=False):
                    try:
                        if self._jobs is jobs:
                            self._jobs = None
                        return
                    finally:
                        self.lock.release()
                continue
            if job is None:
                return
            work(self, job)


class CollectorRunner:
    """The one object registered with the metrics registry.

    Runs every enabled collector on each scrape, isolates failures (a collector that raises
    yields nothing but `..._success 0`) and adds the per-collector self-metrics.

    The collectors of a scrape run at the same time, each in a worker thread of its own (most of
    their time is the kernel answering reads, which other threads can use), and the scrape waits
    for each at most `timeout` seconds from its start: a collector stuck on the host (a hung NFS
    mount in /proc, a pathological input) is reported failed for that scrape while the others and
    the HTTP answer go on. A thread cannot be killed, so the stuck run keeps the collector's lock
    until it ends; later scrapes see the lock held by an overdue run and report the collector
    failed at once instead of starting it again beside itself.
    """

    def __init__(self, collectors: List[Collector], timeout: float = DEFAULT_TIMEOUT,
                 clock: Callable[[], float] = time.perf_counter, context: Optional[Context] = None):
        self.timeout = timeout
        self._clock = clock
        self._slots = [_Slot(c) for c in collectors]
        self.context = context  # the configuration the collectors run with (config_hashes.py)
        # the known collectors that can run here, asked once (applies() may try imports)
        self._applicable = tuple(sorted(name for name, cls in _REGISTRY.items() if cls.applies()))

    @property
    def collectors(self) -> List[Collector]:
        return [slot.collector for slot in self._slots]

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
            "1 if the collector succeeded in the last scrape, 0 if it failed or ran out of time.",
            labels=["collector"],
        )
        slots = list(self._slots)
        deadline = self._clock() + self.timeout
        started = [self._start(slot, deadline) for slot in slots]  # all at once, answered in order
        for slot, job in zip(slots, started):
            start = self._clock()
            if job is _BUSY:  # another scrape runs it within its time: wait for our turn
                job = self._wait_turn(slot, deadline)
            families, ok, took = self._finish(slot, job, deadline, start)
            duration.add_metric([slot.collector.name], took)
            success.add_metric([slot.collector.name], 1.0 if ok else 0.0)
            yield from families
        yield duration
        yield success
        yield self._disabled(slots)

    def _disabled(self, slots: List["_Slot"]) -> Metric:
        """1 for each collector turned off by a flag where it applies: it reports no `_success`
        at all, so MinerwatchCollectorFailing cannot see it. Collectors that run are not listed
        (their `_success` says they run): a fleet stores nothing for a desk that runs them all."""
        disabled = GaugeMetricFamily(
            "minerwatch_scrape_collector_disabled",
            "1 for each collector turned off by a flag on this host; running collectors have a _success series instead.",
            labels=["collector"],
        )
        running = {slot.collector.name for slot in slots}
        for name in self._applicable:
            if name not in running:
                disabled.add_metric([name], 1.0)
        return disabled

    def _start(self, slot: _Slot, deadline: float):
        """The job now running this collector for this scrape; None if it cannot run (stuck from
        an earlier scrape, or no thread); _BUSY if a concurrent scrape runs it within its time."""
        if not slot.lock.acquire(blocking=False):
            running = slot.job
            if running is None or running.overdue:
                log.debug("collector %s: still running from an earlier scrape, not started again",
                          slot.collector.name)
                return None
            return _BUSY
        return self._submit(slot)

    def _wait_turn(self, slot: _Slot, deadline: float) -> Optional[_Job]:
        if not slot.lock.acquire(timeout=max(deadline - self._clock(), 0)):
            log.debug("collector %s: another scrape held it past this scrape's deadline", slot.collector.name)
            return None
        return self._submit(slot)

    def _submit(self, slot: _Slot) -> Optional[_Job]:
        """Run the collector (its lock held by the caller); None if no thread could take it."""
        job = _Job(self._clock())
        slot.job = job
        try:
            slot.submit(job, self._work)
        except RuntimeError:  # "can't start new thread": the task limit is reached (many connections)
            slot.job = None
            slot.lock.release()
            log.warning("collector %s: no thread could be started for it: reported failed", slot.collector.name)
            return None
        return job

    def _finish(self, slot: _Slot, job: Optional[_Job], deadline: float, start: float):
        """(families, ok, seconds it took) of this scrape's run of the collector."""
        if job is None:
            return [], False, self._clock() - start
        if job.done.wait(max(deadline - self._clock(), 0)):
            return job.families, job.ok, job.ended - job.started
        job.overdue = True
        log.warning("collector %s: no answer within %gs: reported failed, left running", slot.collector.name,
                    self.timeout)
        return [], False, self._clock() - job.started

    def _work(self, slot: _Slot, job: _Job) -> None:
        try:
            job.families = list(slot.collector.collect())
            job.ok = True
        except Exception:  # one collector must never take the others down
            log.exception("collector %s failed", slot.collector.name)
        finally:
            job.ended = self._clock()
            if job.overdue:
                log.warning("collector %s: the run that ran out of time ended after %.1fs",
                            slot.collector.name, job.ended - job.started)
            slot.lock.release()
            job.done.set()

    def idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until no collector runs; False if one still does."""
        deadline = self._clock() + timeout
        for slot in self._slots:
            if not slot.lock.acquire(timeout=max(deadline - self._clock(), 0)):
                return False
            slot.lock.release()
        return True

    def replace(self, collectors: List[Collector], context: Optional[Context] = None) -> "CollectorRunner":
        """Run `collectors` from the next scrape on (a reload), with the `context` they were
        built with; returns a runner of the old ones for the caller to wait on (`idle`) and
        `close`. Scrapes already running finish on them."""
        old = CollectorRunner([], self.timeout, self._clock, self.context)
        old._slots, self._slots = self._slots, [_Slot(c) for c in collectors]
        self.context = context
        return old

    def close(self) -> None:
        for slot in self._slots:
            slot.stop()
        for collector in self.collectors:
            try:
                collector.close()
            except Exception:
                log.exception("closing collector %s failed", collector.name)


_BUSY = _Job(0.0)  # marker: a concurrent scrape runs the collector now
