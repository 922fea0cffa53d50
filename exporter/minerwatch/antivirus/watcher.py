"""The exclusion set of this host, kept fresh, and the process table's `av_excluded` signal.

A process covered only by exclusions its own vendor recommends for it (vendors.py) gets none.

Every source is looked at no more than once per interval; a file is parsed only when its stamp
(mtime, ctime, size, inode; for the registry, value counts and last-write times) changed. A
source that fails keeps its last good exclusions: a broken edit must not hide a miner's entry.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Set, Tuple

from minerwatch.antivirus.model import Compiled, Exclusion, Reading, SourceError
from minerwatch.antivirus.vendors import VendorExclusions, shipped_vendors
from minerwatch.detection.signatures import Match

log = logging.getLogger("minerwatch.antivirus")

SIGNAL = "av_excluded"


@dataclass
class SourceState:
    source: object  # FileSource or RegistrySource: product, kinds, name, probe(), read()
    known: bool = False  # a first read happened: later differences are changes
    present: bool = False
    ok: bool = True
    reading: Reading = field(default_factory=Reading)  # the last good one
    stamp: object = None
    error: str = ""

    @property
    def product(self) -> str:
        return self.source.product

    @property
    def name(self) -> str:
        return self.source.name


@dataclass
class Status:
    """A consistent copy of the watcher's state for one scrape."""

    sources: List[SourceState]
    changes: Dict[str, int]
    last_change: Dict[str, float]
    seen_products: Set[str]


class ExclusionWatcher:
    """A SignalSource (see process_table.py): flags processes an antivirus exclusion covers."""

    def __init__(
        self,
        sources: List,
        interval: float = 60.0,
        environ: Optional[Mapping[str, str]] = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        vendors: Optional[VendorExclusions] = None,
    ):
        self.states = [SourceState(s) for s in sources]
        self.interval = interval
        self.environ = dict(os.environ if environ is None else environ)
        # Exclusions vendors recommend for their own programs flag nothing (vendors.py).
        self.vendors = shipped_vendors(self.environ) if vendors is None else vendors
        self.generation = 0
        self._clock, self._wall = clock, wall_clock
        self._last_read: Optional[float] = None
        self._lock = threading.Lock()  # refresh() runs from the process scan and from collect()
        self._all: frozenset = frozenset()
        self._index: List[Compiled] = []
        self._changes: Dict[str, int] = {}
        self._last_change: Dict[str, float] = {}
        self._seen: Set[str] = set()

    # -- SignalSource --------------------------------------------------------------------------
    def refresh(self) -> None:
        with self._lock:
            now = self._clock()
            if self._last_read is not None and now - self._last_read < self.interval:
                return
            self._last_read = now
            self._read_all()

    def match(self, facts) -> Optional[Match]:
        for compiled in self._index:  # replaced whole on change, so no lock is needed here
            what = compiled.covers(facts.exe, facts.cwd, facts.comm)
            if what and not self.vendors.vendor_of(compiled.exclusion, facts.exe):
                return Match(SIGNAL, f"{compiled.exclusion.describe()} ({what})")
        return None  # covered by nothing, or only by its own vendor's recommended exclusions

    def vendor_of(self, exclusion: Exclusion, facts) -> str:
        """The vendor that recommends `exclusion` for the program `facts` runs; "" if none."""
        return self.vendors.vendor_of(exclusion, facts.exe)

    # -- for the collector and `scan` ----------------------------------------------------------
    def matches(self, facts) -> List[Tuple[Exclusion, str]]:
        """Every exclusion that covers a process, with what it covers."""
        out = []
        for compiled in self._index:
            what = compiled.covers(facts.exe, facts.cwd, facts.comm)
            if what:
                out.append((compiled.exclusion, what))
        return out

    def status(self) -> Status:
        with self._lock:
            copies = [SourceState(**vars(s)) for s in self.states]
            return Status(copies, dict(self._changes), dict(self._last_change), set(self._seen))

    # -- reading -------------------------------------------------------------------------------
    def _read_all(self) -> None:
        before = self._by_product()
        changed: Set[str] = set()
        for state in self.states:
            if self._read_one(state):
                changed.add(state.product)
            if state.present:
                self._seen.add(state.product)
                self._changes.setdefault(state.product, 0)
        after = self._by_product()
        for product in sorted(changed):
            self._changes[product] += 1
            self._last_change[product] = self._wall()
            old, new = before.get(product, frozenset()), after.get(product, frozenset())
            log.warning(
                "antivirus exclusions of %s changed: added [%s] removed [%s]",
                product, _listing(new - old), _listing(old - new),
            )

        current = frozenset().union(*after.values())
        if current != self._all:
            self._all = current
            ordered = sorted(current, key=lambda e: (e.product, e.kind, e.value))
            self._index = [c for c in (Compiled(e, self.environ) for e in ordered) if c.check]
            self.generation += 1

    def _by_product(self) -> Dict[str, frozenset]:
        out: Dict[str, Set[Exclusion]] = {}
        for state in self.states:
            out.setdefault(state.product, set()).update(state.reading.exclusions)
        return {product: frozenset(exclusions) for product, exclusions in out.items()}

    def _read_one(self, state: SourceState) -> bool:
        """Reads one source if it changed; True when its exclusions differ from the last read."""
        stamp = None
        try:
            stamp = state.source.probe()
            if stamp is not None and stamp == state.stamp:
                return False  # unchanged since the last read, good or bad
            reading = state.source.read() if stamp is not None else None
        except SourceError as exc:
            state.present, state.ok, state.stamp = True, False, stamp
            if str(exc) != state.error:  # once per distinct problem, not once per interval
                log.error("cannot read antivirus exclusions, keeping the last good ones: %s", exc)
            state.error = str(exc)
            return False
        if state.error:
            log.info("antivirus exclusions readable again: %s", state.name)
        state.present, state.ok, state.stamp, state.error = reading is not None, True, stamp, ""
        old = frozenset(state.reading.exclusions)
        state.reading = reading or Reading()
        first, state.known = not state.known, True
        return not first and frozenset(state.reading.exclusions) != old


def _listing(exclusions) -> str:
    return "; ".join(f"{e.kind} {e.value}" for e in sorted(exclusions, key=lambda e: (e.kind, e.value)))


def find_watcher(table) -> Optional[ExclusionWatcher]:
    """The watcher the antivirus collector added to the process table, if it runs."""
    for source in table.signal_sources if table is not None else ():
        if isinstance(source, ExclusionWatcher):
            return source
    return None
