"""The rhythm of a pool session, from a connection's tcp_info counters sampled at each probe.

A miner's pool session (Stratum in clear or inside TLS, through a relay or not) has two voices:
the pool pushes jobs unasked, every few seconds (Bitcoin-style and Ethash pools: 10-30 s) to a
couple of minutes (Monero: a block every 120 s), and the miner sends shares at a steady rate set
by the pool's difficulty (vardiff aims at one every 10-30 s), each answered at once. Both small,
for hours. Between two samples of one socket (data_segs_in and data_segs_out growth, whatever
the interval), an interval is:

    unasked     data came in, none went out: the server spoke first (a job)
    unanswered  data went out, none came in: the client was not answered within the interval
    client      data went out (answered or not)

A connection has the pool rhythm when, over `push_memory_seconds`, unasked intervals outnumber
unanswered ones by at least `min_pushes`, and over `rhythm_window_seconds` at least
`min_client_intervals` intervals carried client data. What differs, measured the same way:

- a license-server heartbeat or any request/response client: the answer lands in the interval
  of the question, so no unasked interval; one that straddles a sample is cancelled by the
  unanswered interval before it;
- an RPC worker (a master sends a task, the worker computes, posts the result): each task's
  unasked interval is cancelled by the result's unanswered one;
- a server's heartbeat the client answers at once: both in one interval.

What it misses: an RPC worker whose master acknowledges each result and sends tasks more often
than twice in `rhythm_window_seconds` looks like a pool session (the other behaviour conditions
still apply); a pool that pushes no job for `push_memory_seconds` delays the signal.

On Windows no counters per connection are read: one "connection" stands for all the process's
established ones, with its read and write transfers (bytes, operations) as the counters
(probe_readers.py). Its file I/O then counts too, which can only hide the rhythm: fewer signals,
none more.

Judging costs a few comparisons per probed connection: the counters are those the probe already
reads (tcp_flows.py), kept as at most 128 times per kind and connection. Defaults (behaviour.py's
BehaviourLimits): rhythm window 120 s, push memory 30 min, two pushes, two client intervals.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Mapping, Optional, Tuple

Counters = Tuple[int, int, int, int]  # bytes acked, bytes received, data segs out, data segs in
_KEPT = 128  # times kept per kind and connection: bounded whatever the probe interval


@dataclass
class Session:
    """One connection's intervals, by kind (the end time of each interval)."""

    unasked: Deque[float] = field(default_factory=lambda: deque(maxlen=_KEPT))
    unanswered: Deque[float] = field(default_factory=lambda: deque(maxlen=_KEPT))
    client: Deque[float] = field(default_factory=lambda: deque(maxlen=_KEPT))

    def add(self, time: float, segs_out: int, segs_in: int) -> None:
        if segs_out > 0:
            self.client.append(time)
            if segs_in == 0:
                self.unanswered.append(time)
        elif segs_in > 0:
            self.unasked.append(time)

    def forget_before(self, time: float) -> None:
        for kind in (self.unasked, self.unanswered, self.client):
            while kind and kind[0] < time:
                kind.popleft()


class PoolRhythm:
    """The sessions of one process's connections, fed with each new sample's counters."""

    def __init__(self, max_connections: int = 16):
        self.max_connections = max_connections
        self.sessions: Dict[int, Session] = {}
        self._last: Optional[Mapping[int, Counters]] = None

    def add(self, time: float, sockets: Optional[Mapping[int, Counters]], memory: float) -> None:
        """Record the intervals since the last sample; `sockets` None (unreadable) breaks the
        chain: the next sample starts a new one."""
        if sockets is None or len(sockets) > self.max_connections:
            self._last = None
            self.sessions.clear()
            return
        last = self._last
        self._last = sockets
        self.sessions = {inode: s for inode, s in self.sessions.items() if inode in sockets}
        if last is None:
            return
        for inode, now in sockets.items():
            old = last.get(inode)
            if old is None:
                continue  # new since the last sample: its first interval starts now
            session = self.sessions.get(inode)
            if session is None:
                session = self.sessions[inode] = Session()
            session.add(time, now[2] - old[2], now[3] - old[3])
            session.forget_before(time - memory)

    def counts(self, now: float, window: float, memory: float) -> Dict[int, Tuple[int, int]]:
        """inode -> (unasked intervals net of unanswered ones over the last `memory` seconds,
        client intervals over the last `window` seconds)."""
        out = {}
        for inode, session in self.sessions.items():
            pushes = (sum(1 for t in session.unasked if t >= now - memory)
                      - sum(1 for t in session.unanswered if t >= now - memory))
            out[inode] = (pushes, sum(1 for t in session.client if t >= now - window))
        return out
