"""Which of the host's connections go to a mining pool, and on what evidence.

Evidence for a connection, strongest first (a connection can have several, comma-joined):
    stratum  its first bytes on the wire are Stratum, any dialect, any port (sniffer.py)
    sni      its TLS ClientHello names a listed pool: a Stratum endpoint, or any pool name on a
             port other than 443 (sniffer.py)
    connect  it goes to a web proxy or a SOCKS relay, and its `CONNECT host:port` request, or
             its SOCKS5/SOCKS4a CONNECT request, names a listed pool (the same rule for port 443)
             or a listed address (sniffer.py); the remote end shown is the proxy or the relay
    list     its remote address is in a list: IP, CIDR or host:port (pools.py; including the file
             that `minerwatch resolve-pools` writes centrally, resolve.py)
    dns      its remote address is one that this exporter resolved for a pool name, only where
             `resolve_max_names` > 0 (pools.PoolResolver); weaker than the above (addresses are
             reused), so CDN and sinkhole answers are never used
    dns_answer  its remote address is one that a DNS answer the host received, to a query it
             sent, gave for a listed pool name (dns.py), and the connection was made while it was:
             weak, exported, never a signal. Whoever answers the host's queries writes it: the
             host's own user can ask a DNS server of their own, which answers what they like.
    site     its ClientHello, CONNECT or SOCKS request names a pool's web site (a listed name
             that is not a Stratum endpoint, pools.txt) for port 443: what a browser does when an
             analyst or a curious user opens nicehash.com. Weak, exported, never a signal.
    port     only its remote port is a usual Stratum port: weak, exported, never a signal alone

Processes that asked DNS for a pool name (dns_queries.py) are reported the same way, with the
UDP socket of their last query as the connection and the DNS server as its remote end:
    dns_query  a Stratum endpoint name asked again and again by one process (a miner's reconnect
               loop, typically against a DNS filter that blocks the pool): strong
    lookup     a pool's web site, or an endpoint asked once: weak, exported, never a signal

On Windows the DNS client's log stands in for the sniffer's DNS path (dns_client.py): an address
answered to a process that looked up a Stratum endpoint name is `dns` for that process's
connections to it, `dns_answer` for any other; its look-ups count as `dns_query` / `lookup`.

Any evidence but `site`, `port`, `dns_answer` and `lookup` gives the owner process the `pool_connection`
signal: the monitor is a signal source of the process table (process_table.py).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from minerwatch.network.pools import PoolList, PoolListLoader, PoolResolver
from minerwatch.network.sniffer import Sniffer, SnifferState
from minerwatch.network.sockets import Conn
from minerwatch.detection.signatures import Match

EVIDENCE = ("stratum", "sni", "connect", "list", "dns", "dns_query", "site", "dns_answer", "lookup",
            "port")  # strongest first
WEAK = frozenset({"site", "dns_answer", "lookup", "port"})  # exported, never a signal alone
SIGNAL = "pool_connection"
LISTED_CACHE_SIZE = 65536  # remote endpoints whose list verdict is remembered
HIT_TTL = 300.0  # seconds a sniffed connection not in the socket table is still reported


@dataclass
class PoolConnection:
    conn: Conn
    evidence: List[Tuple[str, str, str]]  # (kind, pool, detail), strongest first

    @property
    def strong(self) -> bool:
        return any(kind not in WEAK for kind, _, _ in self.evidence)

    @property
    def kinds(self) -> str:
        return ",".join(kind for kind, _, _ in self.evidence)

    @property
    def pool(self) -> str:
        return next((pool for _, pool, _ in self.evidence if pool), "")

    @property
    def reason(self) -> str:
        details = "; ".join(f"{kind}: {detail}" for kind, _, detail in self.evidence)
        if self.conn.state == "dns":
            return f"DNS queries to {self.conn.remote} ({details})"
        return f"connection to {self.conn.remote} ({details})"


class PoolMonitor:
    """Matches the socket table against the pool list, resolved names and sniffed flows.

    It is also the SignalSource the process table asks: `refresh()` rescans (at most once per
    `min_interval`, whoever asks first), `match()` answers from the last scan.
    """

    def __init__(
        self,
        pools: PoolList,
        resolver: PoolResolver,
        sockets,
        sniffer: Optional[Sniffer] = None,
        max_weak: int = 20,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        lists: Optional[PoolListLoader] = None,
        resolve_max_names: int = 0,
        dns_client=None,
    ):
        self.pools, self.resolver, self.sockets, self.sniffer = pools, resolver, sockets, sniffer
        self.lists, self.resolve_max_names = lists, resolve_max_names
        self.dns_client = dns_client  # network.dns_client.DnsClientLog (Windows), or None
        # connections made while their address was a learned pool address: they keep that
        # evidence for as long as they last, even after the DNS answer's time is up
        self._learned_conns: Dict[Tuple, Tuple[str, str, str]] = {}
        self.max_weak = max_weak
        self.min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last = float("-inf")
        self.matches: List[PoolConnection] = []
        self.connections: List[Conn] = []  # the last scan's outgoing connections
        self.weak_total = 0  # port-only connections, also those beyond the cap
        self.sniffer_state = SnifferState()
        self._reasons: Dict[int, str] = {}
        self.generation = 0
        self._listed_for: Optional[PoolList] = None
        self._listed_cache: Dict = {}
        self._static_cache: Dict = {}

    # SignalSource
    def refresh(self) -> None:
        self.update()

    def match(self, facts) -> Optional[Match]:
        reason = self._reasons.get(facts.pid)
        return Match(SIGNAL, reason) if reason else None

    def update(self, force: bool = False) -> List[PoolConnection]:
        # Resolving starts with the first scan, not at construction: an exporter that fails to
        # start (port taken) or a `--help` never sends a DNS query.
        self.resolver.start()
        with self._lock:
            now = self._clock()
            if force or now - self._last >= self.min_interval:
                self._last = now
                self._scan(now)
            return list(self.matches)

    def _reload_lists(self) -> None:
        if self.lists is None or not self.lists.refresh():
            return
        self.pools = self.lists.pools
        if self.resolve_max_names:
            self.resolver.names = self.pools.resolve_names(self.resolve_max_names)

    def _listed(self, remote) -> Optional[Tuple[str, str]]:
        """pools.match_address, remembered per remote endpoint while the list is the same one (the
        same endpoints come back scrape after scrape; a CIDR list is scanned once per endpoint)."""
        if self._listed_for is not self.pools:
            self._listed_for, self._listed_cache, self._static_cache = self.pools, {}, {}
        cache = self._listed_cache
        if remote in cache:
            return cache[remote]
        if len(cache) >= LISTED_CACHE_SIZE:  # bounded whatever the host connects to
            cache.clear()
        listed = cache[remote] = self.pools.match_address(remote.ip, remote.port)
        return listed

    def _static_evidence(self, remote) -> Tuple[Tuple[str, str, str], ...]:
        """The evidence that depends on the remote endpoint and the list alone (`list`, `port`),
        remembered per endpoint while the list is the same one."""
        if self._listed_for is not self.pools:
            self._listed_for, self._listed_cache, self._static_cache = self.pools, {}, {}
        cache = self._static_cache
        found = cache.get(remote)
        if found is None:
            listed = self._listed(remote)
            evidence = []
            if listed:
                evidence.append(("list", listed[0], f"{listed[0]} listed at {listed[1]}"))
            if remote.port in self.pools.ports:
                evidence.append(("port", "", f"usual Stratum port {remote.port}"))
            if len(cache) >= LISTED_CACHE_SIZE:
                cache.clear()
            found = cache[remote] = tuple(evidence)
        return found

    def _evidence(self, conn: Conn, hits, learned, learned_conns) -> List[Tuple[str, str, str]]:
        found = []
        key = (conn.local, conn.remote)
        hit = hits.get(key)
        if hit is not None:
            found.append((hit.evidence, hit.pool, hit.detail))
        remote = conn.remote
        listed = self._listed(remote)
        if listed:
            found.append(("list", listed[0], f"{listed[0]} listed at {listed[1]}"))
        for name in self.resolver.names_for(remote.ip):
            ports = self.pools.name_ports.get(name)
            if ports is None or remote.port in ports:
                found.append(("dns", name, f"an address of {name}"))
                break
        if self.dns_client is not None and not any(kind == "dns" for kind, _, _ in found):
            answered = self.dns_client.answers.evidence(conn, self.pools.name_ports)
            if answered is not None:
                learned_conns[key] = answered
                found.append(answered)
        if not any(kind in ("dns", "dns_answer") for kind, _, _ in found):
            seen = self._learned_conns.get(key)
            entry = learned.get(remote.ip)
            if entry is not None:
                ports = self.pools.name_ports.get(entry.pool)
                if ports is None or remote.port in ports:
                    seen = ("dns_answer", entry.pool, f"the host looked up {entry.name}: DNS answered {remote.ip}")
            if seen is not None:
                learned_conns[key] = seen
                found.append(seen)
        if remote.port in self.pools.ports:
            found.append(("port", "", f"usual Stratum port {remote.port}"))
        return found

    def _scan(self, now: float) -> None:
        self._reload_lists()
        state = self.sniffer.snapshot() if self.sniffer is not None else SnifferState()
        hits = state.hits
        client = self.dns_client
        if client is not None:
            client.update()
        strong: List[PoolConnection] = []
        weak: List[PoolConnection] = []
        seen = set()
        learned_conns: Dict[Tuple, Tuple[str, str, str]] = {}
        # Nothing sniffed, learned or resolved (most hosts, most scrapes): a connection's evidence
        # is its endpoint's against the list, one look-up in a cache.
        static_only = (not hits and not state.learned and not self._learned_conns and not self.resolver.address_count
                       and not (client is not None and client.active))
        # kept for the scan: the network collector counts connections to configured proxies
        self.connections = conns = self.sockets.connections()
        for conn in conns:
            if static_only:
                evidence = self._static_evidence(conn.remote)
                if not evidence:
                    continue
                evidence = list(evidence)
            else:
                evidence = self._evidence(conn, hits, state.learned, learned_conns)
            if evidence:
                seen.add((conn.local, conn.remote))
                match = PoolConnection(conn, evidence)
                (strong if match.strong else weak).append(match)
        # Attribution reads /proc/PID/fd: only for matches, and weak ones only up to the cap
        # (learned DNS answers before port-only ones).
        weak.sort(key=lambda m: m.evidence[0][0] == "port")
        matches = strong + weak[: self.max_weak]
        self.sockets.attribute([m.conn for m in matches])
        # Sniffed connections not in this namespace's socket table (a container's, or closed).
        stale = []
        for key, hit in hits.items():
            if key in seen:
                continue
            if now - hit.seen > HIT_TTL:
                stale.append(key)
            elif hit.evidence in WEAK:
                continue  # a browser's closed connection to a pool's web site: not worth a series
            else:
                conn = Conn(hit.client, hit.server, "unknown")
                matches.append(PoolConnection(conn, [(hit.evidence, hit.pool, hit.detail)]))
        if stale and self.sniffer is not None:
            self.sniffer.forget(stale)
        lookups = state.lookups if client is None else state.lookups + client.lookups()
        for lookup in lookups:
            kind = "dns_query" if lookup.strong else "lookup"
            conn = Conn(lookup.client, lookup.server, "dns", pid=lookup.pid)
            matches.append(PoolConnection(conn, [(kind, lookup.pool, lookup.detail)]))
        order = {kind: i for i, kind in enumerate(EVIDENCE)}
        matches.sort(key=lambda m: (not m.strong, order[m.evidence[0][0]], m.conn.pid is None, m.conn.pid or 0,
                                    str(m.conn.remote)))
        reasons: Dict[int, str] = {}
        for m in matches:
            if m.strong and m.conn.pid is not None:
                reasons.setdefault(m.conn.pid, m.reason)
        if reasons != self._reasons:
            self._reasons = reasons
            self.generation += 1
        self._learned_conns = learned_conns  # closed connections are forgotten
        self.matches = matches
        self.weak_total = sum(1 for m in weak if m.kinds == "port")
        self.sniffer_state = state
