"""Network collector: connections to mining pools, by process, and the health of what finds them.

Evidence for a connection, strongest first (a connection can have several, comma-joined):
    stratum  its first bytes on the wire are Stratum, any dialect, any port (sniffer)
    sni      its TLS ClientHello names a listed pool (sniffer)
    list     its remote address is in a list: IP, CIDR or host:port (including the file that
             `minerwatch resolve-pools` writes centrally)
    dns      its remote address is one that a DNS answer the host received gave for a listed pool
             name (sniffer), or, only where `resolve_max_names` > 0, that this exporter resolved;
             weaker than the above (addresses are reused), so CDN and sinkhole answers are never used
    port     only its remote port is a usual Stratum port: weak, exported, never a signal alone

By default the exporter sends no DNS query at all (`resolve_max_names: 0`): ten thousand desks
asking for mining-pool names every few minutes is itself what DNS filters flag as infection.
Any evidence but `port` gives the process the `pool_connection` signal (see process_table.py).

Sample output:
    minerwatch_network_pool_connections 1
    minerwatch_network_pool_connection_info{evidence="stratum,list",name="xmrig",pid="4242",pool="198.51.100.7:3333",remote="198.51.100.7:3333",user="alice"} 1
    minerwatch_network_stratum_flows_total{dialect="cryptonote"} 1
    minerwatch_network_sniffer_up 1
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import psutil
import yaml
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from minerwatch.config import Node
from minerwatch.pool_intel import PoolList, PoolListLoader, PoolResolver, Resolve, normalize_domain, system_resolve
from minerwatch.collectors.base import Collector, Context, register
from minerwatch.signatures import Match
from minerwatch.sniffer import DIALECTS, Sniffer, SnifferState
from minerwatch.sockets import Conn, default_sockets

log = logging.getLogger("minerwatch.network")

EVIDENCE = ("stratum", "sni", "list", "dns", "port")  # strongest first
SIGNAL = "pool_connection"
HIT_TTL = 300.0  # seconds a sniffed connection not in the socket table is still reported
KEYS = (
    "ioc_files", "exclude_domains", "extra_ports", "resolve_interval_seconds",
    "resolve_timeout_seconds", "resolve_max_names", "sniffer",
)


# -- configuration --------------------------------------------------------------------------------


@dataclass
class NetworkSettings:
    ioc_files: List[Tuple[str, str]] = field(default_factory=list)  # (path to open, as written)
    exclude_domains: List[str] = field(default_factory=list)
    extra_ports: List[int] = field(default_factory=list)
    resolve_interval_seconds: float = 600.0
    resolve_timeout_seconds: float = 2.0
    resolve_max_names: int = 0  # no look-ups from the desk: resolve centrally (resolve-pools) or learn passively
    sniffer: str = "auto"  # auto | on | off
    sniffer_node: Optional[Node] = None  # where `sniffer: on` was said, for the start-up error


def read_settings(config) -> NetworkSettings:
    """The `network` section; raises ConfigError naming file:line: key."""
    settings = NetworkSettings()
    section = getattr(config, "section", None)
    node: Optional[Node] = section("network") if callable(section) else None
    if node is None or (isinstance(node.node, yaml.ScalarNode) and node.node.tag.endswith(":null")):
        return settings
    fields = node.mapping(KEYS)
    base = os.path.dirname(os.path.abspath(config.file)) if getattr(config, "file", "") else os.getcwd()
    for item in fields["ioc_files"].items() if "ioc_files" in fields else []:
        path = item.string()
        real = path if os.path.isabs(path) else os.path.join(base, path)
        if not os.access(real, os.R_OK) or os.path.isdir(real):
            raise item.error(f"cannot read IOC file {path}")
        settings.ioc_files.append((real, path))
    for item in fields["exclude_domains"].items() if "exclude_domains" in fields else []:
        domain = normalize_domain(item.string())
        if domain is None:
            raise item.error("must be a domain such as example.com")
        settings.exclude_domains.append(domain)
    for item in fields["extra_ports"].items() if "extra_ports" in fields else []:
        port = item.integer(minimum=1)
        if port > 65535:
            raise item.error("must be a port number from 1 to 65535")
        settings.extra_ports.append(port)
    if "resolve_interval_seconds" in fields:
        settings.resolve_interval_seconds = fields["resolve_interval_seconds"].number(minimum=10)
    if "resolve_timeout_seconds" in fields:
        settings.resolve_timeout_seconds = fields["resolve_timeout_seconds"].number(minimum=0.1)
    if "resolve_max_names" in fields:
        settings.resolve_max_names = fields["resolve_max_names"].integer(minimum=0)
    if "sniffer" in fields:
        child = fields["sniffer"]
        value = child.node.value if isinstance(child.node, yaml.ScalarNode) else None
        value = {"true": "on", "yes": "on", "false": "off", "no": "off"}.get(str(value).lower(), value)
        if value not in ("auto", "on", "off"):
            raise child.error("must be auto, on or off")
        settings.sniffer, settings.sniffer_node = value, child
    return settings


# -- matching -------------------------------------------------------------------------------------


@dataclass
class PoolConnection:
    conn: Conn
    evidence: List[Tuple[str, str, str]]  # (kind, pool, detail), strongest first

    @property
    def strong(self) -> bool:
        return any(kind != "port" for kind, _, _ in self.evidence)

    @property
    def kinds(self) -> str:
        return ",".join(kind for kind, _, _ in self.evidence)

    @property
    def pool(self) -> str:
        return next((pool for _, pool, _ in self.evidence if pool), "")

    @property
    def reason(self) -> str:
        details = "; ".join(f"{kind}: {detail}" for kind, _, detail in self.evidence)
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
    ):
        self.pools, self.resolver, self.sockets, self.sniffer = pools, resolver, sockets, sniffer
        self.lists, self.resolve_max_names = lists, resolve_max_names
        # connections made while their address was a learned pool address: they keep that
        # evidence for as long as they last, even after the DNS answer's time is up
        self._learned_conns: Dict[Tuple, Tuple[str, str, str]] = {}
        self.max_weak = max_weak
        self.min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last = float("-inf")
        self.matches: List[PoolConnection] = []
        self.weak_total = 0  # port-only connections, also those beyond the cap
        self.sniffer_state = SnifferState()
        self._reasons: Dict[int, str] = {}
        self.generation = 0

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

    def _evidence(self, conn: Conn, hits, learned, learned_conns) -> List[Tuple[str, str, str]]:
        found = []
        key = (conn.local, conn.remote)
        hit = hits.get(key)
        if hit is not None:
            found.append((hit.evidence, hit.pool, hit.detail))
        remote = conn.remote
        listed = self.pools.match_address(remote.ip, remote.port)
        if listed:
            found.append(("list", listed[0], f"{listed[0]} listed at {listed[1]}"))
        for name in self.resolver.names_for(remote.ip):
            ports = self.pools.name_ports.get(name)
            if ports is None or remote.port in ports:
                found.append(("dns", name, f"an address of {name}"))
                break
        if not any(kind == "dns" for kind, _, _ in found):
            seen = self._learned_conns.get(key)
            entry = learned.get(remote.ip)
            if entry is not None:
                ports = self.pools.name_ports.get(entry.pool)
                if ports is None or remote.port in ports:
                    seen = ("dns", entry.pool, f"the host looked up {entry.name}: DNS answered {remote.ip}")
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
        strong: List[PoolConnection] = []
        weak: List[PoolConnection] = []
        seen = set()
        learned_conns: Dict[Tuple, Tuple[str, str, str]] = {}
        for conn in self.sockets.connections():
            evidence = self._evidence(conn, hits, state.learned, learned_conns)
            if evidence:
                seen.add((conn.local, conn.remote))
                match = PoolConnection(conn, evidence)
                (strong if match.strong else weak).append(match)
        # Attribution reads /proc/PID/fd: only for matches, and port-only ones only up to the cap.
        matches = strong + weak[: self.max_weak]
        self.sockets.attribute([m.conn for m in matches])
        # Sniffed connections not in this namespace's socket table (a container's, or closed).
        stale = []
        for key, hit in hits.items():
            if key in seen:
                continue
            if now - hit.seen > HIT_TTL:
                stale.append(key)
            else:
                conn = Conn(hit.client, hit.server, "unknown")
                matches.append(PoolConnection(conn, [(hit.evidence, hit.pool, hit.detail)]))
        if stale and self.sniffer is not None:
            self.sniffer.forget(stale)
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
        self.weak_total = len(weak)
        self.sniffer_state = state


# -- collector ------------------------------------------------------------------------------------


@register
class NetworkCollector(Collector):
    name = "network"
    help = "Connections to mining pools (lists, resolved names, Stratum and TLS names on the wire)."

    def __init__(
        self,
        context: Context,
        resolve: Resolve = system_resolve,
        sockets=None,
    ):
        super().__init__(context)
        settings = read_settings(context.config)  # ConfigError at start-up, not at scrape time
        self.lists = PoolListLoader(settings.ioc_files, settings.extra_ports, settings.exclude_domains)
        self.pools = self.lists.pools
        names = self.pools.resolve_names(settings.resolve_max_names)
        wanted = len(self.pools.resolve_names(len(self.pools.resolvable)))
        if len(names) < wanted:
            log.info("resolving %d of %d pool names (network.resolve_max_names); the others are matched "
                     "by TLS server name only", len(names), wanted)
        self.resolver = PoolResolver(
            names, resolve, settings.resolve_interval_seconds, settings.resolve_timeout_seconds
        )
        self.sniffer = self._start_sniffer(settings)
        table = context.processes
        max_suspects = table.settings.max_suspects if table is not None else 20
        self.max_series = max_suspects
        self.monitor = PoolMonitor(
            self.pools, self.resolver, sockets or default_sockets(context.procfs), self.sniffer, max_suspects,
            lists=self.lists, resolve_max_names=settings.resolve_max_names,
        )
        context.signal_sources.append(self.monitor)  # one classification: the process table asks it
        if table is not None and self.monitor not in table.signal_sources:
            table.signal_sources.append(self.monitor)  # the table copied the list before we existed

    def _start_sniffer(self, settings: NetworkSettings) -> Optional[Sniffer]:
        if settings.sniffer == "off":
            return None
        # through the loader: a reloaded list is the one the sniffer's thread matches against
        sniffer = Sniffer(lambda name: self.lists.pools.match_domain(name))
        if sniffer.start():
            return sniffer
        if settings.sniffer == "on":
            raise settings.sniffer_node.error(
                f"on, but no packet socket could be opened ({sniffer.error}): it needs Linux and CAP_NET_RAW"
            )
        log.info("Stratum/TLS sniffer unavailable (%s): give the exporter CAP_NET_RAW to enable it", sniffer.error)
        return None

    def close(self) -> None:
        self.resolver.stop()
        if self.sniffer is not None:
            self.sniffer.stop()

    def _who(self, pid: Optional[int]) -> Tuple[str, str]:
        if pid is None:
            return "", ""
        table = self.context.processes
        view = table.lookup(pid) if table is not None else None
        if view is not None:
            return view.name, view.user
        try:  # started since the last process scan
            proc = psutil.Process(pid)
            return proc.name(), proc.username()
        except Exception:
            return "", ""

    def collect(self) -> Iterable[Metric]:
        matches = self.monitor.update()
        state, weak_total = self.monitor.sniffer_state, self.monitor.weak_total

        info = GaugeMetricFamily(
            "minerwatch_network_pool_connection_info",
            "A connection to a mining pool: owner process, remote end and evidence "
            "(stratum, sni, list, dns; port alone is weak). Capped at process.max_suspects series.",
            labels=["pid", "name", "user", "remote", "evidence", "pool"],
        )
        for m in matches[: self.max_series]:
            name, user = self._who(m.conn.pid)
            pid = "" if m.conn.pid is None else str(m.conn.pid)
            info.add_metric([pid, name, user, str(m.conn.remote), m.kinds, m.pool], 1)
        yield info
        yield GaugeMetricFamily(
            "minerwatch_network_pool_connections",
            "Connections to mining pools with more than port evidence (the pool_connection signal).",
            value=sum(1 for m in matches if m.strong),
        )
        yield GaugeMetricFamily(
            "minerwatch_network_pool_port_connections",
            "Connections whose only evidence is a usual Stratum port (weak: never a signal alone).",
            value=weak_total,
        )

        flows = CounterMetricFamily(
            "minerwatch_network_stratum_flows",
            "Connections whose first bytes were Stratum, by dialect (stratum_v1, cryptonote, ethproxy).",
            labels=["dialect"],
        )
        for dialect in DIALECTS:
            flows.add_metric([dialect], state.stratum_flows.get(dialect, 0))
        yield flows
        yield CounterMetricFamily(
            "minerwatch_network_sni_matches",
            "TLS ClientHellos whose server name is a listed pool.",
            value=state.sni_matches,
        )

        pools = self.monitor.pools
        yield GaugeMetricFamily(
            "minerwatch_network_pool_domains", "Pool domains in the shipped list and IOC files.",
            value=pools.domain_count,
        )
        addresses = GaugeMetricFamily(
            "minerwatch_network_pool_addresses",
            "Pool addresses known: listed (IPs, CIDRs, host:port), resolved by this exporter (dns; none by "
            "default) and learned from DNS answers the host received (dns_answers).",
            labels=["source"],
        )
        addresses.add_metric(["list"], pools.literal_count)
        addresses.add_metric(["dns"], self.resolver.address_count)
        addresses.add_metric(["dns_answers"], len(state.learned))
        yield addresses
        responses = CounterMetricFamily(
            "minerwatch_network_dns_responses",
            "DNS answers the sniffer read, by result: pool (a listed pool name was asked), other, malformed.",
            labels=["result"],
        )
        for result in ("pool", "other", "malformed"):
            responses.add_metric([result], state.dns_responses.get(result, 0))
        yield responses
        yield GaugeMetricFamily(
            "minerwatch_network_ioc_load_success",
            "1 if the last load of the IOC files worked; 0: a reload failed and the last good list is in use.",
            value=1 if self.lists.success else 0,
        )
        yield CounterMetricFamily(
            "minerwatch_network_ioc_load_failures",
            "Reloads of changed IOC files that failed (bad line, unreadable); the last good list stays.",
            value=self.lists.failures_total,
        )
        yield GaugeMetricFamily(
            "minerwatch_network_ioc_load_timestamp_seconds",
            "When the IOC files in use were read.",
            value=self.lists.loaded_at,
        )
        yield GaugeMetricFamily(
            "minerwatch_network_pool_resolve_names",
            "Pool names this exporter looks up each round (0 by default: the host sends no DNS queries).",
            value=len(self.resolver.names),
        )
        yield GaugeMetricFamily(
            "minerwatch_network_pool_list_refresh_timestamp_seconds",
            "When the resolver last finished a round over the pool names; 0 before the first.",
            value=self.resolver.last_refresh,
        )
        yield CounterMetricFamily(
            "minerwatch_network_pool_resolve_failures",
            "Pool names that failed to resolve or timed out.",
            value=self.resolver.failures_total,
        )

        yield GaugeMetricFamily(
            "minerwatch_network_sniffer_up",
            "1 if the Stratum/TLS sniffer runs; 0 if off or unavailable (it needs CAP_NET_RAW on Linux).",
            value=1 if state.up else 0,
        )
        yield CounterMetricFamily(
            "minerwatch_network_sniffer_packets",
            "Packets the kernel filter passed to the sniffer (TCP segments starting with '{' or a TLS record).",
            value=state.packets_total,
        )
        yield CounterMetricFamily(
            "minerwatch_network_sniffer_dropped",
            "Packets the kernel dropped because the sniffer was behind (it never blocks traffic).",
            value=state.dropped_total,
        )
        yield GaugeMetricFamily(
            "minerwatch_network_sniffer_flows", "Flows in the sniffer's bounded flow table.", value=state.flows
        )
        yield GaugeMetricFamily(
            "minerwatch_network_sockets", "TCP connections (established or connecting) seen in the last scan.",
            value=self.monitor.sockets.sockets_seen,
        )
        yield CounterMetricFamily(
            "minerwatch_network_attribution_fd_reads",
            "/proc/PID/fd links read to find the process of matched connections (only matches cost reads).",
            value=self.monitor.sockets.fd_reads_total,
        )
