"""Pool names from the host's DNS client log (Windows, where there is no packet socket).

windows/dns_events.py reads the DNS client's "query completed" events; each carries the process
that asked, the name and the answer. Here those events become what the sniffer's DNS path gives
on Linux, so the network monitor decides on them with the same rules:
    dns         the connection's own process looked up a Stratum endpoint name and the DNS client
                answered it the connection's remote address: the process asked for a pool and
                went there (strong)
    dns_answer  the address was answered for a listed name to another process, or for a pool's
                web site: weak, exported, never a signal (whoever answers writes it)
    dns_query / lookup  the look-ups themselves, per process (dns_queries.QueryTracker, the same
                REPEATS rule as on Linux)
Bounded: at most `max_entries` addresses, each kept `ttl` seconds after the event that answered it
(the events carry no TTL); events older than `ttl` count but are not learned.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from minerwatch.network.dns_queries import Pending, QueryTracker
from minerwatch.network.pools import usable_address
from minerwatch.network.sockets import Endpoint
from minerwatch.network.udp_owners import Owner

EVENT_RESULTS = ("pool", "other", "failed", "malformed")  # failed: no answer (no such name, timeout)


class _LogEndpoint(Endpoint):
    """The remote end shown for look-ups read from the log: no socket or server is known."""

    def __str__(self) -> str:
        return "dns_client_log"


LOG_ENDPOINT = _LogEndpoint("", 0)


@dataclass(frozen=True)
class ClientAnswer:
    address: str
    name: str  # the name asked
    pool: str  # the listed domain it (or a CNAME on its chain) falls under
    pid: Optional[int]  # the process that asked
    endpoint: bool  # a Stratum endpoint name, not a pool's web site
    expires: float  # monotonic


class DnsClientAnswers:
    """Pure logic: feed DNS client events (objects with time, pid, name, status, aliases and
    addresses()), ask `evidence(conn)` for each connection."""

    def __init__(
        self,
        match_domain: Callable[[str], Optional[str]],
        is_endpoint: Callable[[str], bool],
        queries: Optional[QueryTracker] = None,
        max_entries: int = 4096,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.match_domain, self.is_endpoint = match_domain, is_endpoint
        self.queries = queries if queries is not None else QueryTracker(match_domain, is_endpoint, clock=clock)
        self.max_entries, self.ttl = max_entries, ttl
        self._clock, self._wall = clock, wall
        self._table: "OrderedDict[str, ClientAnswer]" = OrderedDict()
        self.events: Counter = Counter({r: 0 for r in EVENT_RESULTS})

    def __len__(self) -> int:
        return len(self._table)

    def feed(self, events: Iterable) -> None:
        now, wall = self._clock(), self._wall()
        for event in events:
            if event.status != 0:
                self.events["failed"] += 1
                # a miner whose pool a DNS filter blocks asks again and again: still a look-up
            pool = next((p for p in map(self.match_domain, (event.name,) + tuple(event.aliases)) if p), None)
            if pool is None:
                if event.status == 0:
                    self.events["other"] += 1
                continue
            if event.status == 0:
                self.events["pool"] += 1
            seen = now - max(0.0, wall - event.time) if event.time else now
            if now - seen > self.ttl:
                continue  # history older than anything still remembered
            owner = Owner("found", event.pid) if event.pid is not None else Owner("unknown")
            self.queries.record(Pending(LOG_ENDPOINT, LOG_ENDPOINT, event.name, pool, seen), owner)
            endpoint = self.is_endpoint(event.name)
            for text in event.addresses() if event.status == 0 else ():
                address = usable_address(text)
                if address is None:  # a sinkhole (a DNS filter blocked it) or a shared CDN address
                    continue
                self._table.pop(address, None)
                self._table[address] = ClientAnswer(address, event.name, pool, event.pid, endpoint, seen + self.ttl)
                while len(self._table) > self.max_entries:
                    self._table.popitem(last=False)

    def expire(self) -> None:
        now = self._clock()
        for address in [a for a, entry in self._table.items() if entry.expires <= now]:
            del self._table[address]

    def evidence(self, conn, name_ports: Dict) -> Optional[Tuple[str, str, str]]:
        """(kind, pool, detail) for a connection to an answered address, or None."""
        entry = self._table.get(conn.remote.ip)
        if entry is None:
            return None
        ports = name_ports.get(entry.pool)
        if ports is not None and conn.remote.port not in ports:
            return None
        if entry.endpoint and entry.pid is not None and conn.pid == entry.pid:
            return ("dns", entry.pool,
                    f"process {entry.pid} looked up {entry.name}: the DNS client answered {conn.remote.ip}")
        return ("dns_answer", entry.pool, f"the host looked up {entry.name}: the DNS client answered {conn.remote.ip}")

    def lookups(self, alive: Callable[[int], bool] = lambda pid: True) -> List:
        return self.queries.live(alive)


class DnsClientLog:
    """The monitor's view of the DNS client log: reads new events on each scan (through
    `read`, which returns a list, None where the log does not exist, or raises
    windows.ReadFailed) and keeps the answers."""

    def __init__(self, read: Callable[[], Optional[list]], answers: DnsClientAnswers,
                 enabled: Optional[Callable[[], Optional[bool]]] = None, log=None,
                 alive: Optional[Callable[[int], bool]] = None):
        from minerwatch.windows import SourceReads  # the Windows package: only where it is used

        self._read, self._enabled = read, enabled
        self._alive = alive if alive is not None else _running
        self.answers = answers
        self._reads = SourceReads(log) if log is not None else None
        self.up: Dict[str, int] = {}  # source -> 1 read / 0 failed
        self.present = True  # the channel exists
        self.enabled: Optional[bool] = None

    def _source(self, source: str, fn):
        from minerwatch.windows import ReadFailed

        if self._reads is not None:
            ok, value = self._reads.read(source, _Call(fn))
        else:
            try:
                ok, value = True, fn()
            except ReadFailed:
                ok, value = False, None
        self.up[source] = 1 if ok else 0
        return ok, value

    def update(self) -> None:
        if self._enabled is not None:
            ok, enabled = self._source("dns_client_channel", self._enabled)
            if ok:
                self.enabled = bool(enabled)  # no such channel: nothing is logged either
        ok, events = self._source("dns_client_events", self._read)
        if ok:
            self.present = events is not None
            self.answers.feed(events or ())
        self.answers.expire()

    def lookups(self) -> List:
        """The processes that looked pool names up, still running."""
        return self.answers.lookups(self._alive)

    @property
    def active(self) -> bool:
        return len(self.answers) > 0


def _running(pid: int) -> bool:
    import psutil  # the portable path: this log exists on Windows only

    return psutil.pid_exists(pid)


class _Call:
    def __init__(self, fn):
        self.fn = fn

    def read(self):
        return self.fn()
