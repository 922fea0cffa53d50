"""What is a mining pool: the shipped domain and port lists, user IOC files, resolved addresses.

IOC files are plain lists, one indicator a line: a domain (matched with its subdomains), an IP,
a CIDR, a `host:port` or a `stratum+tcp://host:port` URL; hosts-file lines (`0.0.0.0 a.example b.example`,
as CoinBlockerLists publishes) give domains; `!domain` says "never a pool"; `#` starts a comment.
A bad line is a start-up error naming the file and line:
    iocs.txt:3: not a domain, IP, CIDR or host:port: 'foo bar'

Every line is host text (a list may come from anywhere): it is decoded with its bad bytes kept
visible (`\xff`) and passes through `host_text` before any error message shows it. At run time
`PoolListLoader` reads the files again when they change; a bad file then keeps the last good list.

Pool addresses come from three places. Listed ones (IPs, CIDRs, endpoints; the file that
`minerwatch resolve-pools` writes centrally is such a list). Addresses learned from the DNS
answers the host itself receives (the sniffer). And, only when `network.resolve_max_names` is
above its default 0, a background thread (`PoolResolver`) that looks the names up from this
host: on a fleet that is thousands of hosts asking DNS for mining pools, which is what DNS
filters flag as infected. Resolved addresses are weaker evidence (`dns`) than a Stratum flow
or a TLS server name: addresses get reused and shared. Only names marked `stratum` in the
shipped list and user domains (up to a cap) are resolved, never a pool's web site, and answers
inside known CDN ranges are dropped.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple, Union

from minerwatch import data
from minerwatch.text import host_text
from minerwatch.yaml_file import ConfigError

log = logging.getLogger("minerwatch.network")

# The shipped lists (read through data.py, the one place reading shipped files).
SHIPPED_POOLS = os.path.join(data.DATA_DIR, data.POOLS)
SHIPPED_PORTS = os.path.join(data.DATA_DIR, data.POOL_PORTS)

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# Cloudflare's published ranges (https://www.cloudflare.com/ips/). Pools put their web sites and
# sometimes their Stratum hosts behind it; a resolved address in here is shared with millions of
# sites, so it is never taken as a pool address (Falco rules issue #62 shows the false alarms).
CDN_RANGES: Tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22", "141.101.64.0/18",
        "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20", "197.234.240.0/22", "198.41.128.0/17",
        "162.158.0.0/15", "104.16.0.0/13", "104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22",
        "2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32", "2405:8100::/32",
        "2a06:98c0::/29", "2c0f:f248::/32",
    )
)

# DNS filters answer blocked names with these (Pi-hole, CoinBlockerLists' hosts files): such an
# answer means "blocked", not "the pool lives here".
SINKHOLES = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1"})

# Names every hosts file carries that are not indicators.
_HOSTS_BOILERPLATE = frozenset(
    {"localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost", "ip6-loopback",
     "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters", "ip6-allhosts", "0.0.0.0"}
)

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://([^/?#]+)/?$", re.IGNORECASE)


def normalize_domain(text: str) -> Optional[str]:
    """The lower-case domain without a trailing dot or a `*.` prefix; None if it is not one."""
    name = text.strip().lower().rstrip(".")
    if name.startswith("*."):
        name = name[2:]
    if len(name) > 253 or not _DOMAIN.match(name):
        return None
    return name


def _ip(text: str) -> Optional[IPAddress]:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return None


def canonical_ip(text: str) -> str:
    """One spelling per address: IPv4-mapped IPv6 as IPv4, IPv6 compressed."""
    ip = _ip(text)
    if ip is None:
        return text
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


@dataclass
class Indicators:
    """What one or more list files say; `where` values are "file:line" for reasons and logs."""

    domains: Dict[str, str] = field(default_factory=dict)  # domain -> where
    excluded: Dict[str, str] = field(default_factory=dict)  # domain -> where
    stratum: List[str] = field(default_factory=list)  # domains to resolve first
    addresses: Dict[str, str] = field(default_factory=dict)  # canonical IP -> where
    networks: List[Tuple[IPNetwork, str, str]] = field(default_factory=list)  # (net, text, where)
    endpoints: Dict[Tuple[str, int], str] = field(default_factory=dict)  # (IP or domain, port) -> where

    def merge(self, other: "Indicators") -> None:
        for key in ("domains", "excluded", "addresses", "endpoints"):
            for k, v in getattr(other, key).items():
                getattr(self, key).setdefault(k, v)
        self.stratum.extend(n for n in other.stratum if n not in self.stratum)
        self.networks.extend(other.networks)


def _host_port(token: str) -> Optional[Tuple[str, int]]:
    """(canonical IP or domain, port) from `host:port` or `[v6]:port`; None if it is not one."""
    if token.startswith("["):
        host, sep, port = token[1:].partition("]:")
        if not sep or _ip(host) is None:
            return None
    else:
        host, sep, port = token.rpartition(":")
        if not sep or ":" in host:
            return None
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if _ip(host) is not None:
        return canonical_ip(host), int(port)
    domain = normalize_domain(host)
    return (domain, int(port)) if domain else None


def _add_token(token: str, where: str, out: Indicators) -> bool:
    """Add one indicator; False if the token is none of the accepted kinds."""
    url = _URL.match(token)
    if url:  # stratum+tcp://pool.example.com:3333 as threat feeds and miner configs write it
        token = url.group(1)
    if token.startswith("!"):
        domain = normalize_domain(token[1:])
        if domain:
            out.excluded.setdefault(domain, where)
        return domain is not None
    ip = _ip(token)
    if ip is not None:
        out.addresses.setdefault(canonical_ip(token), where)
        return True
    if "/" in token:
        try:
            net = ipaddress.ip_network(token, strict=False)
        except ValueError:
            return False
        out.networks.append((net, str(net), where))
        return True
    endpoint = _host_port(token)
    if endpoint is not None:
        out.endpoints.setdefault(endpoint, where)
        if _ip(endpoint[0]) is None and endpoint[0] not in out.stratum:
            out.stratum.append(endpoint[0])  # a named endpoint: resolve the name, match its port
        return True
    domain = normalize_domain(token)
    if domain:
        out.domains.setdefault(domain, where)
        return True
    return False


def parse_indicators(lines: Iterable[str], name: str) -> Indicators:
    """Parse one list file; raises ConfigError `name:line: ...` on the first bad line."""
    out = Indicators()
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{name}:{number}"
        tokens = line.split()
        if len(tokens) >= 2 and _ip(tokens[0]) is not None:
            # hosts-file format: the address is the sinkhole, the names are the indicators
            for token in tokens[1:]:
                if token.lower() in _HOSTS_BOILERPLATE:
                    continue
                domain = normalize_domain(token)
                if domain is None:
                    raise ConfigError(f"{where}: not a domain in a hosts-file line: {_shown(token)}")
                out.domains.setdefault(domain, where)
            continue
        if len(tokens) == 2 and tokens[1] == "stratum":
            domain = normalize_domain(tokens[0])
            if domain is None:
                raise ConfigError(f"{where}: only a domain can be marked stratum: {_shown(tokens[0])}")
            out.domains.setdefault(domain, where)
            if domain not in out.stratum:
                out.stratum.append(domain)
            continue
        if len(tokens) != 1 or not _add_token(tokens[0], where, out):
            raise ConfigError(f"{where}: not a domain, IP, CIDR or host:port: {_shown(line)}")
    return out


def _shown(text: str) -> str:
    """A token or line of a list file as an error message quotes it: safe, short, in quotes."""
    return f"'{host_text(text, 120)}'"


def load_indicators(path: str, shown_as: Optional[str] = None) -> Indicators:
    shown = host_text(shown_as or path)
    try:
        # surrogateescape: a bad byte stays visible (host_text shows it as \xff), and never
        # turns into a character that could complete a domain
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return parse_indicators(f, shown)
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror}") from None


def parse_ports(lines: Iterable[str], name: str) -> FrozenSet[int]:
    """Ports and inclusive `low-high` ranges, one a line."""
    ports: Set[int] = set()
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        low, _, high = line.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise ConfigError(f"{name}:{number}: not a port or port range: {_shown(line)}") from None
        if not 0 < first <= last < 65536:
            raise ConfigError(f"{name}:{number}: not a port or port range: {_shown(line)}")
        ports.update(range(first, last + 1))
    return frozenset(ports)


class PoolList:
    """The merged indicators with the lookups a scan needs, each O(1) or O(labels)."""

    def __init__(self, indicators: Indicators, ports: Iterable[int] = (), resolvable: Optional[List[str]] = None):
        self.indicators = indicators
        # names worth resolving, in order; by default the `stratum` ones, then every domain
        self.resolvable = resolvable if resolvable is not None else indicators.stratum + list(indicators.domains)
        self.ports: FrozenSet[int] = frozenset(ports)
        self._domains = indicators.domains
        self._excluded = indicators.excluded
        # endpoints by IP for the socket scan; named endpoints restrict their resolved addresses
        self._ip_endpoints = {k: v for k, v in indicators.endpoints.items() if _ip(k[0]) is not None}
        self.name_ports: Dict[str, Set[int]] = {}
        for (host, port) in indicators.endpoints:
            if _ip(host) is None and host not in self._domains:
                self.name_ports.setdefault(host, set()).add(port)
        # Stratum endpoints: marked `stratum`, or named with a port (host:port, stratum+tcp://)
        self._endpoints = frozenset(indicators.stratum) | frozenset(self.name_ports)

    @property
    def domain_count(self) -> int:
        return len(self._domains) + len(self.name_ports)

    @property
    def literal_count(self) -> int:
        ind = self.indicators
        return len(ind.addresses) + len(ind.networks) + len(self._ip_endpoints)

    def match_domain(self, name: str) -> Optional[str]:
        """The listed domain `name` falls under, or None; the longest listed suffix decides."""
        name = name.lower().rstrip(".")
        while name:
            if name in self._excluded:
                return None
            if name in self._domains or name in self.name_ports:
                return name
            _, _, name = name.partition(".")
        return None

    def is_endpoint(self, name: str) -> bool:
        """The name, or a domain it falls under, is a Stratum endpoint: what a miner connects to.
        Any other listed name is taken for a pool's web site (see pools.txt)."""
        name = name.lower().rstrip(".")
        while name:
            if name in self._endpoints:
                return True
            _, _, name = name.partition(".")
        return False

    def match_address(self, ip: str, port: int) -> Optional[Tuple[str, str]]:
        """(indicator text, where) when a literal list entry covers ip:port."""
        where = self._ip_endpoints.get((ip, port))
        if where:
            return (f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"), where
        where = self.indicators.addresses.get(ip)
        if where:
            return ip, where
        if self.indicators.networks:
            addr = _ip(ip)
            for net, text, where in self.indicators.networks:
                if addr is not None and addr.version == net.version and addr in net:
                    return text, where
        return None

    def resolve_names(self, limit: int) -> List[str]:
        """Names the resolver looks up: `stratum` names first, then user domains, at most `limit`."""
        names: List[str] = []
        seen: Set[str] = set()
        for name in self.resolvable:
            if name not in seen and self.match_domain(name) is not None:
                seen.add(name)
                names.append(name)
        return names[:limit]


def load_pool_list(
    ioc_files: Sequence[Tuple[str, str]] = (),
    extra_ports: Iterable[int] = (),
    exclude_domains: Iterable[str] = (),
) -> PoolList:
    """Shipped lists plus user IOC files given as (path to open, name shown in errors)."""
    indicators = Indicators()
    first: List[str] = []  # Stratum endpoints, shipped then named in IOC files
    then: List[str] = []  # other user domains; the shipped web-site names are never resolved
    ours = parse_indicators(data.shipped_lines(data.POOLS), data.POOLS)
    indicators.merge(ours)
    first.extend(ours.stratum)
    for path, shown in ioc_files:
        theirs = load_indicators(path, shown)
        indicators.merge(theirs)
        first.extend(theirs.stratum)
        then.extend(theirs.domains)
    for domain in exclude_domains:
        indicators.excluded.setdefault(domain, "config")
    ports: Set[int] = set(extra_ports)
    ports.update(parse_ports(data.shipped_lines(data.POOL_PORTS), data.POOL_PORTS))
    return PoolList(indicators, ports, first + then)


class PoolListLoader:
    """The pool list in use, read again when an IOC file changes (a new copy from the central
    resolver, an edit). A reload that fails (a bad line, a file gone) keeps the last good list
    and is reported; start-up errors still stop the exporter (the first load raises)."""

    def __init__(
        self,
        ioc_files: Sequence[Tuple[str, str]] = (),
        extra_ports: Iterable[int] = (),
        exclude_domains: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ):
        self.ioc_files = list(ioc_files)
        self.extra_ports, self.exclude_domains = list(extra_ports), list(exclude_domains)
        self._clock = clock
        self._stamp = self._stamps()
        self.pools = load_pool_list(self.ioc_files, self.extra_ports, self.exclude_domains)
        self.success = True  # the last load worked
        self.failures_total = 0
        self.error = ""
        self.loaded_at = clock()  # when the list in use was read

    def _stamps(self) -> Tuple:
        stamps = []
        for path, _ in self.ioc_files:
            try:
                st = os.stat(path)
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def refresh(self) -> bool:
        """Reload if a file changed since the last look; True when a new list is in use."""
        stamp = self._stamps()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            pools = load_pool_list(self.ioc_files, self.extra_ports, self.exclude_domains)
        except ConfigError as exc:
            self.success, self.error = False, str(exc)
            self.failures_total += 1
            log.warning("IOC files not reloaded, keeping the last good list: %s", exc)
            return False
        self.pools, self.success, self.error, self.loaded_at = pools, True, "", self._clock()
        log.info("IOC files reloaded: %d pool domains, %d listed addresses", pools.domain_count,
                 pools.literal_count)
        return True


# -- resolving ---------------------------------------------------------------------------------

Resolve = Callable[[str], Iterable[str]]


def system_resolve(name: str) -> List[str]:
    """Addresses of a name through the system resolver (getaddrinfo: /etc/hosts, DNS, ...)."""
    infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    return sorted({info[4][0] for info in infos})


def usable_address(text: str) -> Optional[str]:
    """The canonical address, or None for sinkhole answers and CDN (shared) addresses."""
    canonical = canonical_ip(text)
    ip = _ip(canonical)
    if ip is None or canonical in SINKHOLES or ip.is_unspecified:
        return None
    if any(ip.version == net.version and ip in net for net in CDN_RANGES):
        return None
    return canonical


class PoolResolver:
    """Resolves pool names in a background thread; scrapes only read its last answers.

    Each name gets `timeout` seconds in a daemon thread of its own (getaddrinfo cannot be
    cancelled); at most `workers` such threads may be stuck at once, after which names fail at
    once until one returns. Daemon threads, so a hung lookup never delays the exporter's exit.
    A name that fails keeps its previous addresses until it resolves again.
    """

    def __init__(
        self,
        names: Sequence[str],
        resolve: Resolve = system_resolve,
        interval: float = 600.0,
        timeout: float = 2.0,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ):
        self.names = list(names)
        self.resolve = resolve
        self.interval = interval
        self.timeout = timeout
        self._clock = clock
        self._workers = workers
        self._in_flight = 0  # lookup threads not yet returned
        self._flight_lock = threading.Lock()
        self._lock = threading.Lock()
        self._by_name: Dict[str, Tuple[str, ...]] = {}
        self._by_address: Dict[str, Tuple[str, ...]] = {}
        self.shared_ignored = 0  # answers dropped as CDN or sinkhole addresses, last round
        self.failures_total = 0
        self.last_refresh = 0.0  # wall-clock end of the last round; 0 before the first
        self.generation = 0  # bumped whenever the address map changes
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start the background rounds (once; later calls do nothing)."""
        with self._flight_lock:
            if self.names and self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="minerwatch-resolver", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # never let the thread die: the next round may work
                log.exception("resolving pool names failed")
            self._stop.wait(self.interval)

    def _lookup(self, name: str) -> List[str]:
        """resolve(name), waiting at most `timeout`; raises TimeoutError or what resolve raised."""
        with self._flight_lock:
            if self._in_flight >= self._workers:
                raise TimeoutError("every lookup thread is still waiting for an answer")
            self._in_flight += 1
        result: Dict[str, object] = {}
        done = threading.Event()

        def run() -> None:
            try:
                result["answers"] = [str(a) for a in self.resolve(name)]
            except Exception as exc:
                result["error"] = exc
            finally:
                with self._flight_lock:
                    self._in_flight -= 1
                done.set()

        threading.Thread(target=run, name="minerwatch-dns", daemon=True).start()
        if not done.wait(self.timeout):
            raise TimeoutError(f"no answer in {self.timeout:g} s")
        if "error" in result:
            raise result["error"]  # type: ignore[misc]
        return result["answers"]  # type: ignore[return-value]

    def refresh(self) -> None:
        """One round over every name (also called directly by tests)."""
        by_name = dict(self._by_name)
        failures = ignored = 0
        for name in self.names:
            if self._stop.is_set():
                return
            try:
                answers = self._lookup(name)
            except Exception as exc:  # NXDOMAIN, no network, timeout: keep what the name had
                log.debug("resolving %s failed: %s", name, exc)
                failures += 1
                continue
            kept = []
            for answer in answers:
                address = usable_address(answer)
                if address is None:
                    ignored += 1
                elif address not in kept:
                    kept.append(address)
            by_name[name] = tuple(kept)
        by_address: Dict[str, Tuple[str, ...]] = {}
        for name, addresses in by_name.items():
            for address in addresses:
                by_address[address] = by_address.get(address, ()) + (name,)
        with self._lock:
            changed = by_address != self._by_address
            self._by_name, self._by_address = by_name, by_address
            self.failures_total += failures
            self.shared_ignored = ignored
            self.last_refresh = self._clock()
            if changed:
                self.generation += 1

    def names_for(self, ip: str) -> Tuple[str, ...]:
        return self._by_address.get(ip, ())

    @property
    def address_count(self) -> int:
        return len(self._by_address)
