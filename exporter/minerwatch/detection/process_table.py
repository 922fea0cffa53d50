"""The one classification of the host's processes, shared by every collector and `scan`.

Each scan lists every process, re-reads only what changes (CPU, threads, memory) and reads the
static facts (command line, executable, user, environment) and their signature matches once per
process life, keyed by (pid, start time). Other collectors add per-process signals through
signal sources (antivirus exclusions, pool connections) and look processes up here.

Beyond the one read of its /proc/PID/stat line, a scan does nothing for an idle process whose
line did not change (the reader hands back the same `ProcStat`): it keeps last scan's view.
Per process the table keeps one `_Entry` and one `ProcessView`, with slots, beside the reader's
`ProcStat` and `ProcFacts`; processes without signals share one empty dict.

No scan reads an executable: files are scanned and hashed by one background worker
(exe_worker.py), shared by the busy probe (content signals), the process collector (the sha256
of suspects) and the allowlist's `sha256` rules. A scan asks and takes what has landed.
"""

from __future__ import annotations

import logging
import sys
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Protocol, Tuple

from minerwatch.detection.allowlist import Allowlist, file_sha256
from minerwatch.detection.busy_groups import BusyGroups
from minerwatch.host.proc_reader import ProcFacts, ProcStat, ReadError, bounded_argv
from minerwatch.detection.redact import REDACTED, redact_cmdline
from minerwatch.detection.signatures import STRONG_SIGNALS, WEAK_SIGNALS, Match, Signatures
from minerwatch.text import host_text
from minerwatch.yaml_file import Node, section_fields

log = logging.getLogger("minerwatch.process")

# Slots where dataclasses have them (3.10+): no dict per object that lives as long as a process.
_SLOTS = {"slots": True} if sys.version_info >= (3, 10) else {}
_NO_SIGNALS: Dict[str, str] = {}  # shared by every process without a signal: never modified


class SignalSource(Protocol):
    """Adds one kind of per-process evidence that is not in the process itself.

    `refresh()` is called once at the start of every scan; `generation` must change whenever the
    answers of `match()` may have changed, so the table asks again only then.
    """

    generation: int

    def refresh(self) -> None: ...

    def match(self, facts: ProcFacts) -> Optional[Match]: ...


class BusySource(Protocol):
    """Processes that keep hardware other than the CPU busy (a GPU): each pid's share of the
    device, from 0 to 1. For weak signals, busy on a device counts like busy on a CPU; the table
    alone decides how busy is busy (`suspect_busy_cores`)."""

    def busy_shares(self) -> Mapping[int, float]: ...


@dataclass(frozen=True)
class ProcessSettings:
    """The `process:` section; flags override it with `dataclasses.replace`."""

    top_k: int = 5  # busiest processes exported whatever their name
    max_suspects: int = 20  # cap on per-process series for suspects
    top_min_cpu_cores: float = 0.1  # a process idler than this is never in the top-K
    suspect_busy_cores: float = 0.5  # weak signals only: suspect this busy (cores, or share of a device)
    cmdline_max_length: int = 256
    # the busy probe (busy_probe.py): processes at or above suspect_busy_cores get a deeper look
    # (executable content, miner config, behaviour, memory shape) at most this often; 0 turns it off
    busy_probe_interval_seconds: float = 5.0
    busy_probe_window_seconds: float = 20.0  # behaviour and memory shape are judged over this


# Allowed range of each setting, from what it drives: top_k and max_suspects bound per-process
# series (cardinality); the two CPU figures are in cores (or a share of one GPU) and no host has
# more than a few hundred; cmdline_max_length bounds a label.
PROCESS_RANGES = {
    "top_k": (0, 100),
    "max_suspects": (0, 1000),
    "top_min_cpu_cores": (0.0, 1024.0),
    "suspect_busy_cores": (0.0, 1024.0),
    "cmdline_max_length": (16, 4096),
    "busy_probe_interval_seconds": (0.0, 3600.0),
    "busy_probe_window_seconds": (1.0, 3600.0),
}


def read_settings(node: Optional[Node]) -> ProcessSettings:
    """The `process:` section of the config file; errors name file, line and key."""
    values = {}
    for key, child in section_fields(node, tuple(PROCESS_RANGES)).items():
        low, high = PROCESS_RANGES[key]
        values[key] = child.number(low, high) if isinstance(low, float) else child.integer(low, high)
    return ProcessSettings(**values)


@dataclass(**_SLOTS)
class ProcessView:
    """One process as the last scan saw it."""

    facts: ProcFacts
    stat: ProcStat
    cpu_cores: float  # recent CPU use, in cores (1.0 = one core fully busy)
    signals: Dict[str, str]  # signal -> reason (shared with the table's cache: do not modify)
    # an allowlist entry explains all it shows now: every signal, its busy CPU and GPU (allowlist.py)
    allowlisted: bool
    suspect: bool

    @property
    def pid(self) -> int:
        return self.stat.pid

    @property
    def name(self) -> str:
        return self.stat.comm

    @property
    def user(self) -> str:
        return self.facts.user


@dataclass
class Snapshot:
    processes: List[ProcessView]
    suspects: List[ProcessView]  # all of them, busiest first (exporters cap this)
    top: List[ProcessView]  # the top-K busiest, allowlisted or not
    read_errors: Counter = field(default_factory=Counter)
    skipped: int = 0  # processes left out because reading or classifying them raised (a bug)
    _by_pid: Optional[Dict[int, ProcessView]] = None

    def by_pid(self) -> Dict[int, ProcessView]:
        if self._by_pid is None:
            self._by_pid = {v.pid: v for v in self.processes}
        return self._by_pid

    def watched(self, max_suspects: int) -> List[ProcessView]:
        """Suspects (busiest first, capped), then the rest of the top-K; each process once."""
        seen, out = set(), []
        for view in self.suspects[:max_suspects] + self.top:
            if view.pid not in seen:
                seen.add(view.pid)
                out.append(view)
        return out


@dataclass(**_SLOTS)
class _Entry:
    facts: ProcFacts
    static: Dict[str, str]  # signature matches, once per process life
    # None while an allowlist `sha256` rule waits for the executable's hash (see _settle_allowlist)
    allowlisted: Optional[bool]
    explained: FrozenSet[str] = frozenset()  # the signals the matching allowlist entries explain
    unexplained: bool = False  # a signal no entry explains (identity and pool signals never are)
    source_generations: Optional[Tuple[int, ...]] = None
    # the dicts below are replaced, never changed in place: processes without signals share one
    sourced: Dict[str, str] = field(default_factory=lambda: _NO_SIGNALS)  # from signal sources
    probed: Dict[str, str] = field(default_factory=lambda: _NO_SIGNALS)  # from the busy probe, while busy
    # static and source signals merged, and what they make of the process; recomputed only
    # when a source's generation changes, so an unchanged process costs no dict work a scrape
    signals: Dict[str, str] = field(default_factory=lambda: _NO_SIGNALS)
    strong: bool = False  # suspect whatever its CPU
    weak: bool = False  # suspect while busy
    baseline_time: Optional[float] = None  # monotonic time of the last CPU sample...
    baseline_cpu: float = 0.0  # ...and the CPU seconds then
    cpu_cores: float = 0.0
    view: Optional[ProcessView] = None  # the last scan's view, kept while nothing changes

    def merge(self) -> None:
        if self.sourced or self.probed:
            self.signals = {**self.sourced, **self.probed, **self.static}  # a static reason wins a tie
        else:
            self.signals = self.static
        explained = self.explained
        self.strong = not STRONG_SIGNALS.isdisjoint(self.signals)  # the allowlist never explains these
        self.weak = any(s in WEAK_SIGNALS and s not in explained for s in self.signals)
        self.unexplained = any(s not in explained for s in self.signals)

    def explains_all(self, busy_cpu: bool, busy_gpu: bool) -> bool:
        """An allowlist entry explains everything the process shows now (the exported
        `allowlisted`, which the CPU, GPU and weak-signal alerts are exempt on)."""
        return (self.allowlisted is True and not self.unexplained
                and (not busy_cpu or "busy_cpu" in self.explained) and (not busy_gpu or "busy_gpu" in self.explained))


class ProcessTable:
    def __init__(
        self,
        reader,
        signatures: Signatures,
        allowlist: Optional[Allowlist] = None,
        settings: Optional[ProcessSettings] = None,
        signal_sources: Iterable[SignalSource] = (),
        busy_sources: Iterable[BusySource] = (),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.reader = reader
        self.signatures = signatures
        self.allowlist = allowlist or Allowlist([])
        self.settings = settings or ProcessSettings()
        self._signal_sources: List[SignalSource] = list(signal_sources)
        self._busy_sources: List[BusySource] = list(busy_sources)
        self._clock = clock
        self._wall = wall_clock
        self._entries: Dict[int, _Entry] = {}  # pid -> the process the last scan saw
        self._lock = threading.Lock()
        self.last: Optional[Snapshot] = None
        self.read_errors_total: Counter = Counter()  # cumulative, for a _total counter
        self.skipped_total = 0  # cumulative: processes a scan left out after an unexpected error
        self._skip_logged: set = set()  # pids whose failure was logged
        self._allow_waiting: Dict[int, _Entry] = {}  # pid -> entry whose allowlist verdict waits for a hash
        self.exe_scans = self._make_exe_scans()
        self.busy_probe = self._make_busy_probe()
        self._busy_groups = BusyGroups(self.settings.suspect_busy_cores)
        self._own_pid = os.getpid()

    def _make_exe_scans(self):
        # Imported here, for start-up cost: config.py imports this module for its settings, and
        # `scan`, `evidence` and the tests build tables that never scan a file.
        from minerwatch.detection.exe_content import ExePatterns, ExeScanner
        from minerwatch.detection.exe_worker import ScanWorker

        if self.settings.busy_probe_interval_seconds <= 0:
            return ScanWorker(ExeScanner(ExePatterns([])))  # hashes only: suspects, allowlist rules
        from minerwatch.detection.busy_probe import scanner_for

        return ScanWorker(scanner_for(self.signatures))

    def _make_busy_probe(self):
        if self.settings.busy_probe_interval_seconds <= 0:
            return None
        from minerwatch.detection.behaviour import BehaviourLimits  # here: as in _make_exe_scans
        from minerwatch.detection.busy_probe import BusyProbe

        return BusyProbe(self.reader, self.signatures, getattr(self.reader, "procfs", None),
                         self.settings.busy_probe_interval_seconds,
                         BehaviourLimits(window_seconds=self.settings.busy_probe_window_seconds),
                         worker=self.exe_scans)

    # -- wiring: collectors built after the table add what they know ---------------------------
    def add_signal_source(self, source: SignalSource) -> None:
        """Ask `source` too when classifying processes (pool connections, antivirus exclusions)."""
        with self._lock:
            self._signal_sources.append(source)

    def add_busy_source(self, source: BusySource) -> None:
        """Count a process busy on `source`'s device like one busy on the CPU (a GPU)."""
        with self._lock:
            self._busy_sources.append(source)

    @property
    def signal_sources(self) -> Tuple[SignalSource, ...]:
        return tuple(self._signal_sources)

    @property
    def busy_sources(self) -> Tuple[BusySource, ...]:
        return tuple(self._busy_sources)

    # -- scanning -----------------------------------------------------------------------------
    def scan(self) -> Snapshot:
        with self._lock, self.exe_scans.hold():  # the file scan thread waits: no fight for the GIL
            snapshot = self._scan()
            self.last = snapshot
            self.read_errors_total.update(snapshot.read_errors)
            self.skipped_total += snapshot.skipped
            return snapshot

    def _scan(self) -> Snapshot:
        if self._allow_waiting:
            self._settle_waiting()
        for source in self._signal_sources:
            try:
                source.refresh()
            except Exception:  # a broken source must not blind the whole scan (as in match())
                log.exception("signal source %r failed to refresh", source)
        generations = tuple(s.generation for s in self._signal_sources)
        now = self._clock()
        errors: Counter = Counter()
        views: List[ProcessView] = []
        moving: List[ProcessView] = []  # processes that used CPU: the only candidates for the top-K
        suspects: List[ProcessView] = []
        entries = self._entries
        alive: Dict[int, _Entry] = {}
        busy = self.settings.suspect_busy_cores
        busy_elsewhere = self._busy_on_devices(min(busy, 1.0))  # a device is at most all busy
        skipped = 0
        probe = self.busy_probe
        groups = self._busy_groups
        for pid in busy_elsewhere:  # a GPU miner idles on the CPU: no fast path, the probe must see it
            entry = entries.get(pid)
            if entry is not None:
                entry.view = None
        for pid in self.reader.pids():
            entry = entries.get(pid)
            try:
                view = entry.view if entry is not None else None
                stat = self.reader.stat(pid, view.stat if view is not None else None)
                if (view is not None and stat is view.stat and entry.cpu_cores == 0.0 and not entry.weak
                        and entry.source_generations == generations):
                    # The same stat line, idle, nothing new from the sources: last scan's view as is.
                    entry.baseline_time = now  # its CPU time was still this now
                    alive[pid] = entry
                    views.append(view)
                    if view.suspect:
                        suspects.append(view)
                    continue
                if entry is None or entry.facts.start_time != stat.start_time:  # new, or the pid reused
                    entry = self._new_entry(stat, errors)
            except ReadError as exc:
                if exc.reason != "vanished":  # a process that exits mid-scan is not an error
                    errors[exc.reason] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - one process the code cannot handle must not blind the rest
                skipped += 1
                self._log_skipped(pid, exc)
                continue
            alive[pid] = entry
            self._update_cpu(entry, stat, now)
            if entry.source_generations != generations:
                entry.sourced = self._source_signals(entry.facts)
                entry.merge()
                entry.source_generations = generations
            # An allowlist `sha256` rule waits for the hash only where the verdict matters: a
            # process with signals, or busy (probed); the top-K below.
            if (entry.allowlisted is None and pid not in self._allow_waiting
                    and (entry.strong or entry.weak or entry.cpu_cores >= busy or pid in busy_elsewhere)):
                self._settle_allowlist(pid, entry)
            # The busy probe: only processes at or above the busy threshold, at most every
            # interval each (busy_probe.py); an idle process costs this one comparison.
            key = (pid, stat.start_time)
            # allowlisted processes too: the probe finds identity signals (content, miner config)
            # Also below it where the user's or executable's processes add up to it (busy_groups.py).
            # The exporter's own scrapes are not a throttled miner's share: it never adds up.
            grouped = busy > entry.cpu_cores >= groups.floor and pid != self._own_pid
            if grouped:
                groups.add(entry.facts, entry.cpu_cores)
                grouped = groups.busy(entry.facts)
            if ((entry.cpu_cores >= busy or grouped or pid in busy_elsewhere) and probe is not None
                    and probe.due(key, now)):
                probed = probe.probe(key, entry.facts, stat, now, now, busy_elsewhere.get(pid))
                if probed != entry.probed:
                    entry.probed = probed
                    entry.merge()
            suspect = entry.strong or (entry.weak and (entry.cpu_cores >= busy or pid in busy_elsewhere or grouped))
            allowlisted = entry.explains_all(entry.cpu_cores >= busy, pid in busy_elsewhere)
            view = entry.view
            if (view is None or view.stat is not stat or view.cpu_cores != entry.cpu_cores
                    or view.signals is not entry.signals or view.suspect != suspect or view.allowlisted != allowlisted):
                view = entry.view = ProcessView(entry.facts, stat, entry.cpu_cores, entry.signals,
                                                allowlisted, suspect)
            views.append(view)
            if entry.cpu_cores > 0.0:
                moving.append(view)
            if suspect:
                suspects.append(view)
        self._entries = alive  # forget processes that ended
        groups.finish()
        if probe is not None:
            probe.forget(_AliveKeys(alive))

        # Only what used CPU (a few dozen processes) and the suspects are sorted; `processes`
        # stays in the order listed.
        moving.sort(key=_by_cpu, reverse=True)
        suspects.sort(key=_by_cpu, reverse=True)
        top_k, floor = self.settings.top_k, self.settings.top_min_cpu_cores
        top = [v for v in moving[:top_k] if v.cpu_cores >= floor]
        if len(top) < top_k and floor <= 0.0:  # idle processes qualify too: the first ones listed
            top += [v for v in views if v.cpu_cores <= 0.0][: top_k - len(top)]
        for view in top:  # the top-K exports `allowlisted` too: its verdicts are asked for (shown next scan)
            entry = alive.get(view.pid)
            if entry is not None and entry.allowlisted is None and view.pid not in self._allow_waiting:
                self._settle_allowlist(view.pid, entry)
        return Snapshot(views, suspects, top, errors, skipped)

    def _busy_on_devices(self, threshold: float) -> Dict[int, float]:
        """Pids using at least `threshold` of some device (a GPU) in its last reading: their share."""
        busy: Dict[int, float] = {}
        for source in self._busy_sources:
            for pid, share in source.busy_shares().items():
                if share >= threshold and share > busy.get(pid, 0.0):
                    busy[pid] = share
        return busy

    def _log_skipped(self, pid: int, exc: Exception) -> None:
        """Once per pid (a process that fails every scrape must not flood the log); the reason
        may quote host text, so it goes through host_text too."""
        if pid in self._skip_logged:
            return
        if len(self._skip_logged) >= 1024:
            self._skip_logged.clear()
        self._skip_logged.add(pid)
        log.error("process %d skipped: reading or classifying it failed: %s", pid,
                  host_text(f"{type(exc).__name__}: {exc}", 512))
        log.debug("traceback of the failure", exc_info=exc)

    def _new_entry(self, stat: ProcStat, errors: Counter) -> _Entry:
        facts = self.reader.facts(stat)
        errors.update(facts.errors)
        static = {}
        for match in self.signatures.match_all(
            comm=facts.comm,
            exe=facts.exe,
            exe_deleted=facts.exe_deleted,
            argv=facts.argv,
            environ=facts.environ,
        ):
            static.setdefault(match.signal, match.reason)
        # No hashing here: a `sha256` rule whose other keys match makes this None ("waits for
        # the hash"), settled by the scans once the worker has hashed the file.
        explained = self.allowlist.explains(facts.comm, facts.exe, facts.user, lambda: facts.exe_sha256
                                            ) if self.allowlist else frozenset()
        allowlisted = None if explained is None else bool(explained)
        # The environment is only needed for matching; do not keep other users' secrets around.
        # The whole command line was matched; what stays for the process's life (the exported,
        # redacted form, the probe's script and config look-ups) is bounded, so a few processes
        # with megabyte command lines cannot grow the exporter's memory.
        facts.environ = None
        facts.argv = tuple(bounded_argv(facts.argv))  # one object, not a list and its item array
        return _Entry(facts=facts, static=static or _NO_SIGNALS, allowlisted=allowlisted,
                      explained=explained or frozenset())

    def _source_signals(self, facts: ProcFacts) -> Dict[str, str]:
        out: Dict[str, str] = {}
        for source in self._signal_sources:
            try:
                match = source.match(facts)
            except Exception:  # a broken source must not hide the process
                log.exception("signal source %r failed", source)
                continue
            if match is not None:
                out.setdefault(match.signal, match.reason)
        return out or _NO_SIGNALS

    def _update_cpu(self, entry: _Entry, stat: ProcStat, now: float) -> None:
        then = entry.baseline_time
        if then is None:
            # First sight: the lifetime average, until a second sample gives a recent rate.
            age = max(self._wall() - stat.start_time, 1.0)
            entry.cpu_cores = stat.cpu_seconds / age or 0.0  # an idle process shares the one 0.0
            entry.baseline_time, entry.baseline_cpu = now, stat.cpu_seconds
            return
        if now - then >= 1.0:  # scrapes closer than a second reuse the last rate
            entry.cpu_cores = max(stat.cpu_seconds - entry.baseline_cpu, 0.0) / (now - then) or 0.0
            entry.baseline_time, entry.baseline_cpu = now, stat.cpu_seconds

    def cmdline(self, facts: ProcFacts) -> str:
        """The redacted, truncated command line, made once per process life (a long one costs
        most of a millisecond to redact)."""
        if facts.cmdline is None:
            try:
                facts.cmdline = redact_cmdline(facts.argv, self.settings.cmdline_max_length)
            except Exception as exc:  # noqa: BLE001 - a redaction bug must not fail the scrape, nor leak
                self._log_skipped(facts.pid, exc)
                facts.cmdline = REDACTED
        return facts.cmdline

    def exe_sha256(self, facts: ProcFacts) -> str:
        """sha256 of the running executable (read through /proc/PID/exe, so a deleted one too),
        hashed now in the caller's thread if no one has yet, once per process life: for the
        commands a person runs (`evidence`, `scan`). Never from a scrape: see known_exe_sha256."""
        if facts.exe_sha256 is None:
            facts.exe_sha256 = file_sha256(self.reader.exe_path(facts.pid))
        return facts.exe_sha256

    def known_exe_sha256(self, facts: ProcFacts) -> Optional[str]:
        """The same hash if the background worker has it, else None (the file is queued for it,
        or asked again next time): what a scrape exports and what the allowlist matches on."""
        if facts.exe_sha256 is None:
            result = self.exe_scans.ask(self.reader.exe_path(facts.pid))
            if result is None:
                return None
            facts.exe_sha256 = result.sha256
        return facts.exe_sha256

    def _settle_allowlist(self, pid: int, entry: _Entry) -> None:
        """Decide a verdict that waits for the executable's hash, if the hash is known by now.

        Until then the process is not allowlisted: a hash not known vouches for nothing (as an
        unreadable file's empty hash never matches), and a user who keeps the worker busy must
        not keep every process under a bare `sha256` rule unwatched. The cost is that a
        known-good program with miner-like signals can be suspect for the scrape or two before
        its hash lands (one scan of its file, at most MAX_QUEUED files behind)."""
        if self.known_exe_sha256(entry.facts) is None:
            self._allow_waiting[pid] = entry
            return
        self._allow_waiting.pop(pid, None)
        facts = entry.facts
        entry.explained = self.allowlist.explains(facts.comm, facts.exe, facts.user, lambda: facts.exe_sha256) or frozenset()
        entry.allowlisted = bool(entry.explained)
        entry.merge()
        entry.view = None  # rebuilt by this scan or the next, with the verdict

    def _settle_waiting(self) -> None:
        """Verdicts waiting for a hash, before a scan: those whose hash has landed are decided
        (their views are rebuilt by the scan); those of processes that ended are forgotten."""
        for pid, entry in list(self._allow_waiting.items()):
            if self._entries.get(pid) is not entry:
                del self._allow_waiting[pid]
            else:
                self._settle_allowlist(pid, entry)

    def exe_unscanned(self) -> Dict[str, int]:
        """Processes waiting for the background worker: busy ones whose executable content is not
        known yet ("content"), and those whose allowlist verdict waits for a hash ("allowlist")."""
        with self._lock:
            probe = self.busy_probe
            return {"content": probe.unscanned(self._clock()) if probe is not None else 0,
                    "allowlist": len(self._allow_waiting)}

    def close(self) -> None:
        """Stop the background worker (the table is not scanned any more)."""
        self.exe_scans.close()

    # -- lookups for other collectors ---------------------------------------------------------
    def restat(self, pid: int) -> ProcStat:
        """The process's stat read now (ReadError if gone), under the table's lock: the reader's
        kept descriptors must not be used while a scan of another scrape changes them."""
        with self._lock:
            return self.reader.stat(pid)

    def lookup(self, pid: int) -> Optional[ProcessView]:
        """The process as the last scan saw it (scanning once if none ran yet)."""
        if self.last is None:
            self.scan()
        entry = self._entries.get(pid)  # the last scan's processes by pid: no dict of every view to build
        return entry.view if entry is not None else None


def _by_cpu(view: ProcessView) -> float:
    return view.cpu_cores


class _AliveKeys:
    """The (pid, start time) keys of the last scan's processes, for the busy probe's `forget`,
    answered from the table's pid-keyed entries without building a set a scan."""

    def __init__(self, entries: Dict[int, _Entry]):
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Tuple[int, float]) -> bool:
        entry = self._entries.get(key[0])
        return entry is not None and entry.facts.start_time == key[1]
