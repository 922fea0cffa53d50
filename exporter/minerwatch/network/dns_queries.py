"""DNS queries the host sends for pool names, and the processes that sent them.

A miner whose pool a DNS filter blocks (NXDOMAIN, or a sinkhole address) never connects
anywhere: it asks for the pool's name again and again. The sniffer (sniffer.py) hands each UDP
datagram to port 53 here; a query for a listed pool name is queued, and the sniffer's thread
looks up the sending socket's process at once (udp_owners.py: a race against the stub resolver
closing its socket), at most `owner_lookups_per_second`.

How much a look-up weighs (monitor.py exports both, only the first is a signal):
    dns_query  a Stratum endpoint name (pools.txt `stratum`, an IOC `host:port` or
               `stratum+tcp://` URL, or a name under one) asked by the same process on at
               least REPEATS occasions, REPEAT_GAP seconds apart: what a miner's reconnect loop
               does. Strong: the process gets `pool_connection`.
    lookup     any other look-up of a pool name: a pool's web site (`supportxmr.com`, what a
               curious user browses), or an endpoint asked once (an administrator's `dig`, each a
               new process, or a browser's prefetch). Weak: exported, never a signal.
Queries a DNS forwarder makes for others (a process also serving port 53, such as
systemd-resolved or dnsmasq) and the exporter's own are not counted against anyone.

Bounded: at most `max_pending` queued queries, `max_lookups` remembered askers, each forgotten
`ttl` seconds after its last look-up or when its process ends.
"""

from __future__ import annotations

import os
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Tuple

from minerwatch.network.dns import DnsQuery, parse_dns_query
from minerwatch.network.sockets import Endpoint
from minerwatch.network.udp_owners import Owner
from minerwatch.text import host_text

REPEATS = 2
REPEAT_GAP = 1.0  # seconds: A and AAAA, or a retry after a timeout, are one look-up
QUERY_RESULTS = ("pool", "other", "malformed")
OWNER_RESULTS = ("found", "gone", "unknown", "skipped", "forwarder")


def endpoint_matcher(endpoints: Iterable[str]) -> Callable[[str], bool]:
    """is_endpoint(name): the name or one of its parent domains is a listed Stratum endpoint."""
    names = frozenset(n.lower().rstrip(".") for n in endpoints)

    def is_endpoint(name: str) -> bool:
        name = name.lower().rstrip(".")
        while name:
            if name in names:
                return True
            _, _, name = name.partition(".")
        return False

    return is_endpoint


@dataclass
class Pending:
    client: Endpoint  # the sender's UDP socket
    server: Endpoint  # the DNS server asked
    name: str  # shown text
    pool: str  # the listed domain it falls under
    seen: float


@dataclass
class Lookup:
    """One process's look-ups of pool names (pid None: its process was not found in time)."""

    pid: Optional[int]
    client: Endpoint
    server: Endpoint
    name: str
    pool: str
    endpoint: bool  # a Stratum endpoint name, not only under a pool's domain
    times: int  # separate look-ups, REPEAT_GAP apart
    first: float
    last: float

    @property
    def strong(self) -> bool:
        return self.pid is not None and self.endpoint and self.times >= REPEATS

    @property
    def detail(self) -> str:
        what = "a Stratum endpoint" if self.endpoint else "a pool's name, not an endpoint"
        return f"looked up {self.name} ({what}) {self.times} time{'s' if self.times != 1 else ''}"


class QueryTracker:
    """Pure logic: feed queries, take the pending ones, record their owners, read the askers."""

    def __init__(
        self,
        match_domain: Callable[[str], Optional[str]],
        is_endpoint: Callable[[str], bool] = lambda name: False,
        max_pending: int = 64,
        max_lookups: int = 256,
        owner_lookups_per_second: int = 5,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        own_pid: Optional[int] = None,
    ):
        self.match_domain, self.is_endpoint = match_domain, is_endpoint
        self.max_pending, self.max_lookups = max_pending, max_lookups
        self.owner_lookups_per_second, self.ttl = owner_lookups_per_second, ttl
        self._clock = clock
        self.own_pid = os.getpid() if own_pid is None else own_pid
        self.pending: List[Pending] = []
        self._table: "OrderedDict[Tuple, Lookup]" = OrderedDict()
        self._window, self._in_window = float("-inf"), 0
        self.queries: Counter = Counter({r: 0 for r in QUERY_RESULTS})
        self.owners: Counter = Counter({r: 0 for r in OWNER_RESULTS})

    def feed(self, client: Endpoint, server: Endpoint, payload: bytes) -> Optional[DnsQuery]:
        """One UDP payload sent to port 53; returns the query read (None: malformed), so that the
        sniffer parses it once to await its answer too."""
        query = parse_dns_query(payload)
        if query is None:
            self.queries["malformed"] += 1
            return None
        name = query.name
        pool = self.match_domain(name)
        if pool is None:
            self.queries["other"] += 1
            return query
        self.queries["pool"] += 1
        if any(p.client == client for p in self.pending):
            return query  # A and AAAA from one socket: one look-up
        if len(self.pending) >= self.max_pending:
            self.owners["skipped"] += 1
            return query
        self.pending.append(Pending(client, server, host_text(name, 253), pool, self._clock()))
        return query

    def take(self) -> List[Tuple[Pending, bool]]:
        """The queued queries, each with whether its owner may be looked up now (the rate limit)."""
        batch, self.pending = self.pending, []
        now = self._clock()
        out = []
        for item in batch:
            if now - self._window >= 1.0:
                self._window, self._in_window = now, 0
            allowed = self._in_window < self.owner_lookups_per_second
            self._in_window += allowed
            out.append((item, allowed))
        return out

    def record(self, item: Pending, owner: Owner) -> None:
        if owner.pid is not None and (owner.resolver or owner.pid == self.own_pid):
            self.owners["forwarder"] += 1
            return
        self.owners[owner.result] += 1
        endpoint = self.is_endpoint(item.name)
        # endpoints and other pool names are counted apart: a web site browsed twice and an
        # endpoint asked once do not add up to a miner's loop
        key = (owner.pid, endpoint) if owner.pid is not None else (None, item.name)
        entry = self._table.pop(key, None)
        if entry is None:
            entry = Lookup(owner.pid, item.client, item.server, item.name, item.pool, endpoint, 1, item.seen,
                           item.seen)
        else:
            if item.seen - entry.last >= REPEAT_GAP:
                entry.times += 1
            entry.last = max(entry.last, item.seen)
            entry.client, entry.server, entry.name, entry.pool = item.client, item.server, item.name, item.pool
        self._table[key] = entry
        while len(self._table) > self.max_lookups:
            self._table.popitem(last=False)

    def live(self, alive: Callable[[int], bool] = lambda pid: True) -> List[Lookup]:
        """The askers still remembered: looked up within `ttl`, their process still running."""
        now = self._clock()
        for key in [k for k, e in self._table.items()
                    if now - e.last > self.ttl or (e.pid is not None and not alive(e.pid))]:
            del self._table[key]
        return [Lookup(**vars(e)) for e in self._table.values()]
