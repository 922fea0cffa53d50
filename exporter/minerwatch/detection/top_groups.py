"""The busiest processes that are not suspect, kept as (name, user) groups with a CPU counter.

A per-pid series for every process that passes through the top-K makes a new series each time a
browser tab, compiler or update job starts: on a busy desktop most series created in a day. The
pid only matters as evidence, and suspects keep theirs (collectors/process.py). The others are
counted by what on-call can act on, the program and the account:

- a group's CPU counter grows, at each scan, by each member's CPU increase since the scan before;
  a process that joins adds nothing for its first scan, one that exits or leaves the top stops
  adding, so the counter never goes down while the group lives;
- a group not in the top for `expiry_seconds` is dropped (its series ends), and at most
  `max_groups` live at a time, the one longest out of the top dropped first; a group that
  returns starts again from 0, which rate() reads as a counter reset.

Allowlisted and other processes of the same name and user are kept apart (`allowlisted` in the
key), so that an allowlisted backup never hides an impostor of the same name from the rules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Tuple

GROUP_EXPIRY_SECONDS = 900.0  # 15 minutes: longer than a scrape gap, short enough to bound churn

GroupKey = Tuple[str, str, bool]  # (name, user, allowlisted)


@dataclass
class TopGroup:
    name: str
    user: str
    allowlisted: bool
    cpu_seconds: float = 0.0  # grows only
    members: int = 0  # processes of the group in the top-K at the last scan
    last_in_top: float = 0.0  # monotonic time of the last scan that had a member


class TopGroups:
    """Groups of the top-K processes, updated once per scan with that scan's non-suspect top."""

    def __init__(self, max_groups: int, expiry_seconds: float = GROUP_EXPIRY_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.max_groups = max_groups
        self.expiry_seconds = expiry_seconds
        self._clock = clock
        self._groups: Dict[GroupKey, TopGroup] = {}
        # (pid, start time) of each member at the last scan -> its CPU seconds then
        self._members: Dict[Tuple[int, float], float] = {}

    def update(self, views: Iterable) -> List[TopGroup]:
        """Add this scan's members (ProcessView-like: pid, name, user, allowlisted,
        stat.cpu_seconds, stat.start_time); the live groups, busiest counter first."""
        now = self._clock()
        views = list(views)
        current = {(v.name, v.user, bool(v.allowlisted)) for v in views}
        for group in self._groups.values():
            group.members = 0
        members = {}
        for view in views:
            group = self._group((view.name, view.user, bool(view.allowlisted)), current)
            identity = (view.pid, view.stat.start_time)
            cpu = view.stat.cpu_seconds
            before = self._members.get(identity)
            if before is not None:
                group.cpu_seconds += max(cpu - before, 0.0)
                cpu = max(cpu, before)  # a stale reading must not count the same seconds twice
            members[identity] = cpu
            group.members += 1
            group.last_in_top = now
        self._members = members
        for key in [k for k, g in self._groups.items() if not g.members and now - g.last_in_top > self.expiry_seconds]:
            del self._groups[key]
        return sorted(self._groups.values(), key=lambda g: (-g.cpu_seconds, g.name, g.user, g.allowlisted))

    def _group(self, key: GroupKey, current: set) -> TopGroup:
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= self.max_groups:
                resting = [k for k in self._groups if k not in current]
                if resting:  # groups in the top now are never dropped (at most top_k of them)
                    del self._groups[min(resting, key=lambda k: self._groups[k].last_in_top)]
            group = self._groups[key] = TopGroup(*key)
        return group
