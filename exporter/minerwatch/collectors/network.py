"""Network collector: connections to mining pools, by process, and the health of what finds them.

The work is done in the network package: sockets.py reads the socket table, sniffer.py and
dns.py read the wire (also proxy CONNECT requests, and the DNS queries of processes:
dns_queries.py, udp_owners.py), pools.py holds the lists, monitor.py decides which connections go
to a pool and on what evidence (stratum, sni, connect, list, dns, dns_query; site, dns_answer, lookup
and port are weak). This module exports what it found.

On Windows there is no packet socket: pool names come from the DNS client's log (event 3008,
windows/dns_events.py, network/dns_client.py: `dns`, `dns_answer`, `dns_query`, `lookup` as on
Linux), and connections to the configured web proxies are counted (windows/proxy.py); what a
client asks its proxy for is not seen there (docs/network.md, "Windows").

By default the exporter sends no DNS query at all (`resolve_max_names: 0`): ten thousand desks
asking for mining-pool names every few minutes is itself what DNS filters flag as infection.
Any evidence but `site`, `port`, `dns_answer` and `lookup` gives the process the `pool_connection` signal
(see process_table.py): an address learned from a DNS answer is only as good as whoever answered.

Sample output:
    minerwatch_network_pool_connections 1
    minerwatch_network_pool_connection_info{evidence="stratum,list",name="xmrig",pid="4242",pool="198.51.100.7:3333",remote="198.51.100.7:3333",user="alice"} 1
    minerwatch_network_stratum_flows_total{dialect="cryptonote"} 1
    minerwatch_network_sniffer_up 1
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Dict, Iterable, List, Optional, Tuple

from minerwatch import windows
from minerwatch.antivirus.sources import registry_module
from minerwatch.collectors.base import Collector, Context, register
from minerwatch.serving.metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from minerwatch.network.dns import RESPONSE_RESULTS
from minerwatch.network.dns_client import EVENT_RESULTS, DnsClientAnswers, DnsClientLog
from minerwatch.network.dns_queries import OWNER_RESULTS, QUERY_RESULTS, QueryTracker
from minerwatch.network.monitor import PoolMonitor
from minerwatch.network.pools import PoolListLoader, PoolResolver, Resolve, system_resolve
from minerwatch.network.settings import NetworkSettings
from minerwatch.network.sniffer import DIALECTS, Sniffer
from minerwatch.network.sockets import default_sockets
from minerwatch.network.udp_owners import UdpOwners
from minerwatch.text import host_text

log = logging.getLogger("minerwatch.network")
_AUTO = object()
MAX_PROXIES = 16  # configured proxies exported one by one


@register
class NetworkCollector(Collector):
    name = "network"
    help = "Connections to mining pools (lists, resolved names, Stratum and TLS names on the wire)."

    def __init__(
        self,
        context: Context,
        resolve: Resolve = system_resolve,
        sockets=None,
        win32=_AUTO,
        winreg=_AUTO,
    ):
        super().__init__(context)
        settings = context.config.network
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
        max_suspects = context.config.process.max_suspects
        self.max_series = max_suspects
        if win32 is _AUTO:
            win32 = windows.load()
            if win32 is not None:
                win32.win32inet = _optional_module("win32inet")
        if winreg is _AUTO:
            winreg = registry_module() if win32 is not None else None
        self.dns_client = self._dns_client(win32) if win32 is not None and self.sniffer is None else None
        self.proxies = None
        if win32 is not None:
            from minerwatch.windows.proxy import ProxySettingsReader

            self.proxies = ProxySettingsReader(winreg, getattr(win32, "win32inet", None), os.environ)
        self._proxy_errors: Dict[str, str] = {}
        self.monitor = PoolMonitor(
            self.pools, self.resolver, sockets or default_sockets(context.procfs), self.sniffer, max_suspects,
            lists=self.lists, resolve_max_names=settings.resolve_max_names, dns_client=self.dns_client,
        )
        if context.processes is not None:  # one classification: the process table asks the monitor
            context.processes.add_signal_source(self.monitor)

    def _start_sniffer(self, settings: NetworkSettings) -> Optional[Sniffer]:
        if settings.sniffer == "off":
            return None
        # through the loader: a reloaded list is the one the sniffer's thread matches against
        match = lambda name: self.lists.pools.match_domain(name)  # noqa: E731
        queries = QueryTracker(match, self._is_endpoint)
        sniffer = Sniffer(match, queries=queries, owners=UdpOwners(self.context.procfs), is_endpoint=self._is_endpoint,
                          match_address=lambda ip, port: self.lists.pools.match_address(ip, port))
        if sniffer.start():
            return sniffer
        if settings.sniffer == "on":
            raise settings.sniffer_node.error(
                f"on, but no packet socket could be opened ({sniffer.error}): it needs Linux and CAP_NET_RAW"
            )
        log.info("Stratum/TLS sniffer unavailable (%s): give the exporter CAP_NET_RAW to enable it", sniffer.error)
        return None

    def _dns_client(self, win32) -> DnsClientLog:
        """The DNS client's log in place of the sniffer's DNS path (Windows)."""
        from minerwatch.windows.dns_events import ChannelReader, DnsEventReader

        self.dns_events = DnsEventReader(win32.win32evtlog)
        match = lambda name: self.lists.pools.match_domain(name)  # noqa: E731
        answers = DnsClientAnswers(match, self._is_endpoint)
        return DnsClientLog(self.dns_events.read, answers, ChannelReader(win32.win32evtlog).read, log)

    def _is_endpoint(self, name: str) -> bool:
        """A Stratum endpoint of the list in use (the one reloaded last); other pool names are web sites."""
        return self.lists.pools.is_endpoint(name)

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
            import psutil

            proc = psutil.Process(pid)
            return host_text(proc.name(), 255), host_text(proc.username(), 255)
        except Exception:
            return "", ""

    def collect(self) -> Iterable[Metric]:
        matches = self.monitor.update()
        state, weak_total = self.monitor.sniffer_state, self.monitor.weak_total

        info = GaugeMetricFamily(
            "minerwatch_network_pool_connection_info",
            "A connection to a mining pool, or DNS queries for one: owner process, remote end (the proxy or SOCKS "
            "relay for connect, the DNS server for dns_query and lookup) and evidence (stratum, sni, connect, list, "
            "dns, dns_query; site, dns_answer, lookup and port alone are weak). Capped at process.max_suspects series.",
            labels=["pid", "name", "user", "remote", "evidence", "pool"],
        )
        for m in matches[: self.max_series]:
            name, user = self._who(m.conn.pid)
            pid = "" if m.conn.pid is None else str(m.conn.pid)
            info.add_metric([pid, name, user, str(m.conn.remote), m.kinds, m.pool], 1)
        yield info
        yield GaugeMetricFamily(
            "minerwatch_network_pool_connections",
            "Connections to mining pools, and processes looking pool endpoints up again and again, with more "
            "than weak evidence (the pool_connection signal).",
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
            "TLS ClientHellos whose server name is a listed pool (sni; site: a pool's web site on port 443).",
            value=state.sni_matches,
        )
        yield CounterMetricFamily(
            "minerwatch_network_connect_matches",
            "HTTP CONNECT requests to a web proxy and SOCKS5/SOCKS4a requests to a relay that name a listed pool "
            "(connect; site: a pool's web site on port 443).",
            value=state.connect_matches,
        )
        queries = CounterMetricFamily(
            "minerwatch_network_dns_queries",
            "DNS queries the host sent that the sniffer read, by result: pool (a listed pool name), other, malformed.",
            labels=["result"],
        )
        for result in QUERY_RESULTS:
            queries.add_metric([result], state.dns_queries.get(result, 0))
        yield queries
        owners = CounterMetricFamily(
            "minerwatch_network_dns_query_owners",
            "Searches for the process behind a pool-name query, by result: found; gone (the socket closed "
            "first); unknown (not found in time); skipped (over the rate limit); forwarder (a DNS server "
            "asking for others, or the exporter itself).",
            labels=["result"],
        )
        for result in OWNER_RESULTS:
            owners.add_metric([result], state.query_owners.get(result, 0))
        yield owners

        pools = self.monitor.pools
        yield GaugeMetricFamily(
            "minerwatch_network_pool_domains", "Pool domains in the shipped list and IOC files.",
            value=pools.domain_count,
        )
        addresses = GaugeMetricFamily(
            "minerwatch_network_pool_addresses",
            "Pool addresses known: listed (IPs, CIDRs, host:port), resolved by this exporter (dns; none by "
            "default) and learned from DNS answers to the host's own queries (dns_answers; weak evidence).",
            labels=["source"],
        )
        addresses.add_metric(["list"], pools.literal_count)
        addresses.add_metric(["dns"], self.resolver.address_count)
        addresses.add_metric(["dns_answers"], len(state.learned))
        if self.dns_client is not None:
            addresses.add_metric(["dns_client_log"], len(self.dns_client.answers))
        yield addresses
        responses = CounterMetricFamily(
            "minerwatch_network_dns_responses",
            "DNS answers the sniffer read, by result: pool (a listed pool name was asked), other, malformed; "
            "refused, never learned: unsolicited (no query of this host awaits it, or a broadcast, multicast "
            "or another host's frame), mismatched (an awaited id from the right server, another question).",
            labels=["result"],
        )
        for result in RESPONSE_RESULTS:
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
            "Packets the kernel filter passed to the sniffer (TCP segments starting with '{', 'C', a TLS "
            "record or a SOCKS CONNECT request; UDP from or to port 53).",
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
            "minerwatch_network_sockets",
            "Outgoing TCP connections (established or connecting; not those a local listener accepted) in the last scan.",
            value=self.monitor.sockets.sockets_seen,
        )
        yield CounterMetricFamily(
            "minerwatch_network_attribution_fd_reads",
            "/proc/PID/fd links read to find the process of matched connections (only matches cost reads).",
            value=self.monitor.sockets.fd_reads_total,
        )
        if self.dns_client is not None or self.proxies is not None:
            yield from self._windows_families()

    def _windows_families(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "minerwatch_network_source_up",
            "1 if a Windows source of the network collector was read at the last scrape, 0 if it failed "
            "(see the log): dns_client_channel, dns_client_events, proxy_wininet, proxy_winhttp, proxy_environment.",
            labels=["source"],
        )
        client = self.dns_client
        if client is not None:
            for source in ("dns_client_channel", "dns_client_events"):
                if source in client.up:
                    up.add_metric([source], client.up[source])
            if client.enabled is not None:
                yield GaugeMetricFamily(
                    "minerwatch_network_dns_client_log_enabled",
                    "1 if the DNS client's log (Microsoft-Windows-DNS-Client/Operational) is enabled, 0 if not: "
                    "without it pool names are not learned on Windows (wevtutil sl ... /e:true).",
                    value=1 if client.enabled else 0,
                )
            events = CounterMetricFamily(
                "minerwatch_network_dns_client_events",
                "DNS client query events (3008) read from its log, by result: pool (a listed name answered), "
                "other, failed (no answer: no such name, timeout), malformed (not parsed).",
                labels=["result"],
            )
            counts = dict(client.answers.events)
            counts["malformed"] = self.dns_events.malformed_total
            for result in EVENT_RESULTS:
                events.add_metric([result], counts.get(result, 0))
            yield events
        if self.proxies is not None:
            proxies, errors = self.proxies.read()
            self._log_proxy_errors(errors)
            for source in self.proxies.sources:
                up.add_metric([f"proxy_{source}"], 0 if source in errors else 1)
            yield from self._proxy_families(proxies)
        yield up

    def _log_proxy_errors(self, errors: Dict[str, str]) -> None:
        for source, text in errors.items():
            if self._proxy_errors.get(source) != text:
                log.error("cannot read the %s proxy settings: %s", source, text)
        for source in set(self._proxy_errors) - set(errors):
            log.info("the %s proxy settings are readable again", source)
        self._proxy_errors = dict(errors)

    def _proxy_families(self, proxies: List) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "minerwatch_network_proxy_info",
            "A web proxy the host is configured to use, by where it is set: wininet (a user's Internet Settings), "
            f"winhttp (the machine default), environment (the exporter's own). At most {MAX_PROXIES} series.",
            labels=["source", "proxy"],
        )
        for proxy in proxies[:MAX_PROXIES]:
            info.add_metric([proxy.source, str(proxy)], 1)
        yield info
        wanted: Dict[Tuple[str, int], str] = {}
        for proxy in proxies[:MAX_PROXIES]:
            if proxy.address is not None:
                wanted.setdefault((proxy.address, proxy.port), str(proxy))
        conns: Dict[str, int] = {shown: 0 for shown in wanted.values()}
        pids: Dict[str, set] = {shown: set() for shown in wanted.values()}
        for conn in self.monitor.connections:
            shown = wanted.get((conn.remote.ip, conn.remote.port))
            if shown is not None:
                conns[shown] += 1
                if conn.pid is not None:
                    pids[shown].add(conn.pid)
        total = GaugeMetricFamily(
            "minerwatch_network_proxy_connections",
            "Outgoing connections to a configured proxy written as an address, in the last scan (what each asks "
            "the proxy for is not seen on Windows).",
            labels=["proxy"],
        )
        processes = GaugeMetricFamily(
            "minerwatch_network_proxy_processes",
            "Processes with a connection to a configured proxy written as an address, in the last scan.",
            labels=["proxy"],
        )
        for shown in conns:
            total.add_metric([shown], conns[shown])
            processes.add_metric([shown], len(pids[shown]))
        yield total
        yield processes


def _optional_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
