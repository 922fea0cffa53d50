"""The busy probe: deeper looks at processes that keep hardware busy, and only at those.

The process table calls `probe()` for a process at or above `suspect_busy_cores` (not
allowlisted), at most every `interval` seconds per process; idle processes cost nothing. What it
looks at, and how often:

    once per distinct executable  miner byte patterns and UPX in the executable, or in the
                                  script an interpreter runs (exe_content.py)
    once per process life         a miner configuration file (miner_config.py)
    every probe                   samples for the behaviour and memory-shape checks, judged over
                                  their window (behaviour.py; Linux /proc only)

The signals it returns are merged into the process's signals by the table, like a signal
source's. A failing check is logged once and skipped: it must not hide the process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from minerwatch import tcp_flows
from minerwatch.behaviour import BehaviourCheck, BehaviourLimits, Track, socket_inodes
from minerwatch.exe_content import ExePatterns, ExeScanner, shipped_patterns
from minerwatch.miner_config import find as find_miner_config
from minerwatch.signatures import Signatures, script_of
from minerwatch.text import host_text

log = logging.getLogger("minerwatch.process")

DEFAULT_INTERVAL = 5.0  # seconds between probes of one busy process


@dataclass
class ProbeState:
    """What the probe knows of one process life."""

    last: float = float("-inf")
    static: Dict[str, str] = field(default_factory=dict)  # content and config: once per life
    static_done: bool = False
    track: Track = field(default_factory=Track)
    signals: Dict[str, str] = field(default_factory=dict)


class BusyProbe:
    def __init__(self, reader, signatures: Signatures, procfs: Optional[str] = None,
                 interval: float = DEFAULT_INTERVAL, limits: Optional[BehaviourLimits] = None,
                 tcp_dump=None):
        self.reader = reader
        self.interval = interval
        self.procfs = procfs
        self.scanner = ExeScanner(ExePatterns(shipped_patterns() + list(signatures.extra_exe_patterns)))
        # Without a dump given, each probe dumps tcp_info for the probed process's own sockets
        # only, and a process without sockets costs no dump at all (tcp_flows.py).
        self._own_dump = tcp_dump is None
        self._wanted: Optional[set] = None
        self.behaviour = BehaviourCheck(procfs, limits, tcp_dump or self._dump_wanted) if procfs else None
        self._states: Dict[Tuple[int, float], ProbeState] = {}
        self.probes_total = 0
        self.failures_total = 0
        self._logged = False

    def due(self, key: Tuple[int, float], now: float) -> bool:
        state = self._states.get(key)
        return state is None or now - state.last >= self.interval

    def probe(self, key: Tuple[int, float], facts, stat, now: float, round_id: float) -> Dict[str, str]:
        """Signals (name -> reason) of a busy process; call only when `due`."""
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = ProbeState()
        state.last = now
        self.probes_total += 1
        try:
            if not state.static_done:
                state.static_done = True
                state.static = self._static(facts)
            signals = dict(state.static)
            if self.behaviour is not None:
                if self._own_dump:  # a dump of this process's sockets: one per probe, not per round
                    inodes = socket_inodes(f"{self.procfs}/{stat.pid}")
                    self._wanted = None if inodes is None else set(inodes)
                    round_id = (round_id, stat.pid)
                track = state.track
                track.samples.append(self.behaviour.sample(stat.pid, stat.cpu_seconds, stat.rss_bytes, now, round_id))
                signals.update(self.behaviour.judge(track))
            state.signals = signals
        except Exception as exc:  # noqa: BLE001 - a check that breaks must not hide the process
            self.failures_total += 1
            if not self._logged:
                self._logged = True
                log.error("busy probe failed for pid %d: %s", stat.pid, host_text(f"{type(exc).__name__}: {exc}", 256))
        return state.signals

    def _static(self, facts) -> Dict[str, str]:
        out: Dict[str, str] = {}
        exe = self.reader.exe_path(facts.pid)
        try:
            st = os.stat(exe)
            identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            identity = None
        result = self.scanner.scan_path(exe, identity) if facts.exe else None
        if result is not None:
            if facts.exe_sha256 is None:
                facts.exe_sha256 = result.sha256  # the evidence hash, without reading the file again
            for match in result.matches("executable"):
                out.setdefault(match.signal, match.reason)
        script = script_of(facts.exe, facts.argv)
        if script and "miner_exe_content" not in out:
            path = script if script.startswith("/") or not self.procfs else f"{self.procfs}/{facts.pid}/cwd/{script}"
            scripted = self.scanner.scan_path(path)
            if scripted is not None:
                for match in scripted.matches(f"script {host_text(script, 80)}"):
                    if match.signal == "miner_exe_content":
                        out.setdefault(match.signal, match.reason)
        if self.procfs:
            found = find_miner_config(self.procfs, facts.pid, facts.argv)
            if found is not None:
                out[found.signal] = found.reason
        return out

    def _dump_wanted(self):
        return tcp_flows.dump(self._wanted)

    def forget(self, alive) -> None:
        """Drop the state of processes that ended (`alive`: the keys seen in the last scan)."""
        if len(self._states) > len(alive) or any(key not in alive for key in self._states):
            self._states = {key: state for key, state in self._states.items() if key in alive}
