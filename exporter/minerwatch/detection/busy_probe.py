"""The busy probe: deeper looks at processes that keep hardware busy, and only at those.

The process table calls `probe()` for a process (not allowlisted) at or above
`suspect_busy_cores`, or busy on a GPU by as much, or at least a share of it and belonging to a
user or an executable whose processes together are that busy (busy_groups.py: throttled miners
split over several processes), at most every `interval` seconds per process; idle processes cost
nothing. What it looks at, and how often:

    once per distinct executable  miner byte patterns and UPX in the executable, or in the
                                  script an interpreter runs (exe_content.py), scanned in the
                                  background (exe_worker.py): asked at each probe until known
    once per process life         a miner configuration file (miner_config.py)
    every probe                   samples for the behaviour and memory-shape checks, judged over
                                  their window (behaviour.py), read from /proc on Linux, through
                                  psutil elsewhere (probe_readers.py); smaps at most once a
                                  window, only for a process that looks like a miner

The checks are independent: the configuration and the behaviour never wait for the file scan.
Its signals (and the sha256 the process collector exports) join the process's signals at the
first look after its result landed: `due()` is also true, between probes, once the worker has
finished a file since the process last asked, and that look only merges the result (no
behaviour sample, not counted as a probe). Until then the process is "not scanned yet"
(`unscanned()`), never "clean".

The signals it returns are merged into the process's signals by the table, like a signal
source's. A failing check is logged once and skipped: it must not hide the process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from minerwatch.detection import tcp_flows
from minerwatch.detection import miner_config
from minerwatch.detection.behaviour import BehaviourCheck, BehaviourLimits, Track
from minerwatch.detection.exe_content import ExePatterns, ExeScanner
from minerwatch.detection.exe_patterns import shipped_patterns
from minerwatch.detection.exe_worker import ScanWorker
from minerwatch.detection.probe_readers import ProcfsSampler, PsutilSampler, socket_inodes
from minerwatch.detection.signatures import Signatures, script_of
from minerwatch.text import host_text

log = logging.getLogger("minerwatch.process")

DEFAULT_INTERVAL = 5.0  # seconds between probes of one busy process


@dataclass
class ProbeState:
    """What the probe knows of one process life."""

    last: float = float("-inf")
    content: Optional[Dict[str, str]] = None  # from the file scan, once per life; None: not scanned yet
    asked: int = -1  # the worker's `completed` when the process last asked for its files
    config: Optional[Dict[str, str]] = None  # the miner config look, once per life
    behaviour: Dict[str, str] = field(default_factory=dict)  # the last judgement of the window
    track: Track = field(default_factory=Track)
    signals: Dict[str, str] = field(default_factory=dict)


class BusyProbe:
    def __init__(self, reader, signatures: Signatures, procfs: Optional[str] = None,
                 interval: float = DEFAULT_INTERVAL, limits: Optional[BehaviourLimits] = None,
                 tcp_dump=None, worker: Optional[ScanWorker] = None):
        self.reader = reader
        self.interval = interval
        self.procfs = procfs
        # the table shares its worker (it hashes suspects and allowlist candidates with it too)
        self.worker = worker or ScanWorker(scanner_for(signatures))
        self.scanner = self.worker.scanner
        # Without a dump given, each probe dumps tcp_info for the probed process's own sockets
        # only, and a process without sockets costs no dump at all (tcp_flows.py).
        self._own_dump = tcp_dump is None
        self._wanted: Optional[set] = None
        self.behaviour = None
        if procfs:
            self.behaviour = BehaviourCheck(ProcfsSampler(procfs, tcp_dump or self._dump_wanted), limits)
        elif getattr(reader, "windows", False) and callable(getattr(reader, "process", None)):
            # psutil's reader on Windows (its Windows API: probe_readers.py)
            self._own_dump = False
            self.behaviour = BehaviourCheck(PsutilSampler(reader.process, reader.psutil), limits)
        self._states: Dict[Tuple[int, float], ProbeState] = {}
        self.probes_total = 0
        self.failures_total = 0
        self._logged = False

    def due(self, key: Tuple[int, float], now: float) -> bool:
        state = self._states.get(key)
        if state is None or now - state.last >= self.interval:
            return True
        # between probes: only to merge a file scan that may have landed since it asked
        return state.content is None and state.asked != self.worker.completed

    def probe(self, key: Tuple[int, float], facts, stat, now: float, round_id: float,
              device_share: Optional[float] = None) -> Dict[str, str]:
        """Signals (name -> reason) of a busy process; call only when `due`. `device_share`: its
        share of a GPU when it is busy on one (judged on that rather than on its CPU)."""
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = ProbeState()
        full = now - state.last >= self.interval  # else only a landed scan result to merge
        if full:
            state.last = now
            self.probes_total += 1
        try:
            if state.content is None:
                state.content = self._content(facts, state)
            if full:
                if state.config is None:
                    state.config = {}  # once per life, even if the look fails
                    state.config = self._config(facts)
                if self.behaviour is not None:
                    if self._own_dump:  # a dump of this process's sockets: one per probe, not per round
                        inodes = socket_inodes(f"{self.procfs}/{stat.pid}")
                        self._wanted = None if inodes is None else set(inodes)
                        round_id = (round_id, stat.pid)
                    track = state.track
                    track.samples.append(self.behaviour.sample(stat.pid, stat.cpu_seconds, stat.rss_bytes, now,
                                                               round_id, device_share))
                    state.behaviour = self.behaviour.judge(track, stat.pid)
            state.signals = {**(state.content or {}), **(state.config or {}), **state.behaviour}
        except Exception as exc:  # noqa: BLE001 - a check that breaks must not hide the process
            self.failures_total += 1
            if not self._logged:
                self._logged = True
                log.error("busy probe failed for pid %d: %s", stat.pid, host_text(f"{type(exc).__name__}: {exc}", 256))
        return state.signals

    def verdict(self, key: Tuple[int, float]) -> Optional[str]:
        """The behaviour condition the process's last judged window broke ("" when it held);
        None without a behaviour check or before a first sample (for the log and the tests)."""
        state = self._states.get(key)
        if self.behaviour is None or state is None or not state.track.samples:
            return None
        return state.track.broken

    def unscanned(self, now: float) -> int:
        """Processes probed in the last two intervals whose files are not scanned yet."""
        horizon = now - 2 * self.interval
        return sum(1 for state in self._states.values() if state.content is None and state.last >= horizon)

    def _content(self, facts, state: ProbeState) -> Optional[Dict[str, str]]:
        """Signals from the executable's bytes (or the script's), None while the worker has not
        scanned them all: asked again at the next look."""
        state.asked = self.worker.completed  # before asking: a file landing from now on makes it due
        out: Dict[str, str] = {}
        pending = False
        if facts.exe:
            result = self.worker.ask(self.reader.exe_path(facts.pid))
            if result is None:
                pending = True
            else:
                if facts.exe_sha256 is None:
                    facts.exe_sha256 = result.sha256  # the evidence hash, without reading the file again
                for match in result.matches("executable"):
                    out.setdefault(match.signal, match.reason)
        script = script_of(facts.exe, facts.argv)
        if script and "miner_exe_content" not in out:
            path = script if script.startswith("/") or not self.procfs else f"{self.procfs}/{facts.pid}/cwd/{script}"
            scripted = self.worker.ask(path)
            if scripted is None:
                pending = True
            else:
                for match in scripted.matches(f"script {host_text(script, 80)}"):
                    if match.signal == "miner_exe_content":
                        out.setdefault(match.signal, match.reason)
        return None if pending else out

    def _config(self, facts) -> Dict[str, str]:
        found = None
        if self.procfs:
            found = miner_config.find(self.procfs, facts.pid, facts.argv)
        else:
            process = getattr(self.reader, "process", None)  # psutil's reader: the look through psutil (Windows)
            if callable(process):
                found = miner_config.find_psutil(process(facts.pid), facts.argv)
        if found is not None:
            return {found.signal: found.reason}
        return {}

    def _dump_wanted(self):
        return tcp_flows.dump(self._wanted)

    def forget(self, alive) -> None:
        """Drop the state of processes that ended (`alive`: the keys seen in the last scan)."""
        if len(self._states) > len(alive) or any(key not in alive for key in self._states):
            self._states = {key: state for key, state in self._states.items() if key in alive}


def scanner_for(signatures: Signatures) -> ExeScanner:
    """A scanner with the shipped executable patterns and the user's."""
    return ExeScanner(ExePatterns(shipped_patterns() + list(signatures.extra_exe_patterns)))
