"""Busy together: processes of one user or one executable whose CPU adds up to busy.

A throttled miner keeps each of its processes under `suspect_busy_cores` (four processes at 0.45
core, under different names). Each scan, the process table adds the CPU of every process between
a floor (MEMBER_SHARE of the threshold) and the threshold, per user and per executable (its
sha256 once the background worker has it, else its path); at the next scan, such a process whose
user or executable added up to the threshold is probed like a busy one, and a weak signal makes
it suspect. Idle processes never get here (the table's fast path); a process under the floor
costs one comparison. What still hides: processes each under the floor (eight at 0.1 core),
or under different users and different files.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Tuple

MEMBER_SHARE = 0.3  # of suspect_busy_cores: 0.15 core by default

_Key = Tuple[str, str]


class BusyGroups:
    def __init__(self, threshold: float):
        self.threshold = threshold
        self.floor = threshold * MEMBER_SHARE
        self._sums: Dict[_Key, float] = {}  # this scan's, being added up
        self._busy: FrozenSet[_Key] = frozenset()  # the last finished scan's groups at the threshold

    @staticmethod
    def _keys(facts) -> Tuple[_Key, ...]:
        exe = facts.exe_sha256 or facts.exe
        return tuple(k for k in (("user", facts.user), ("exe", exe)) if k[1])

    def add(self, facts, cores: float) -> None:
        """Count a process between the floor and the threshold (the caller compares)."""
        for key in self._keys(facts):
            self._sums[key] = self._sums.get(key, 0.0) + cores

    def busy(self, facts) -> bool:
        """Whether the process's user or executable was busy together at the last scan."""
        return bool(self._busy) and any(key in self._busy for key in self._keys(facts))

    def finish(self) -> None:
        """End of a scan: its groups at the threshold are what `busy` answers until the next."""
        self._busy = frozenset(key for key, cores in self._sums.items() if cores >= self.threshold)
        self._sums = {}
