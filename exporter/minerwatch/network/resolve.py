"""`minerwatch resolve-pools`: resolve the pool names once, centrally, into an IOC file for the desks.

Run it on one server (the Prometheus host, say) from a timer, point it at the DNS servers the
desks use, and hand the file it writes to the exporters (a read-only file share, or config
management) as a `network.ioc_files` entry. The desks then know the pools' addresses without
sending a single DNS query for a pool name: one server asks, not ten thousand PCs.

    minerwatch resolve-pools --output /srv/minerwatch/pool-addresses.txt \\
        --ioc-file /etc/minerwatch/iocs.txt --nameserver 10.0.0.53

The names are those an exporter would resolve: the shipped `stratum` names, the named endpoints
and the domains of the IOC files given. Queries are A and AAAA over UDP (TCP when an answer is
truncated), sent straight to the name servers given (or those of /etc/resolv.conf), each with a
timeout, at most `--concurrency` names at a time. CNAME chains are followed; sinkhole and CDN
answers are left out as the exporter leaves them out. The file is written to a temporary file and
renamed, so a reader never sees half of it, and it is not replaced at all when no name resolved
(a DNS outage must not empty every desk's list).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import random
import socket
import struct
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import click

from minerwatch.network.dns import DNS_A, DNS_AAAA, answer_chain, parse_dns_response
from minerwatch.network.pools import load_pool_list, usable_address
from minerwatch.text import host_text

Server = Tuple[str, int]


def parse_nameserver(text: str) -> Server:
    """`IP`, `IP:port` or `[IPv6]:port`; ValueError otherwise."""
    host, port = text, 53
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(text)
        port = int(rest[1:]) if rest else 53
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host)  # a name server is an address: resolving it would need DNS
    if not 0 < port < 65536:
        raise ValueError(text)
    return host, port


def system_nameservers(path: str = "/etc/resolv.conf") -> List[Server]:
    """The `nameserver` lines of resolv.conf (the first three, as the C library uses them)."""
    servers: List[Server] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    try:
                        servers.append(parse_nameserver(words[1].split("%", 1)[0]))
                    except ValueError:
                        continue
    except OSError:
        pass
    return servers[:3]


def build_query(name: str, kind: int, ident: int) -> bytes:
    """A standard query with recursion desired, one question."""
    labels = b"".join(bytes([len(part)]) + part.encode("ascii") for part in name.split(".") if part)
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", kind, 1)


def _exchange(query: bytes, server: Server, timeout: float) -> bytes:
    """One query to one server over UDP, then TCP if the answer came back truncated."""
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(server)  # connected: answers from any other address are not ours
        sock.send(query)
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            answer = sock.recv(65535)
            if answer[:2] == query[:2]:
                break  # another id is a late answer to someone else: keep waiting
    if len(answer) > 2 and answer[2] & 0x02:  # TC: the whole answer needs TCP
        with socket.create_connection(server, timeout=timeout) as sock:
            sock.sendall(struct.pack("!H", len(query)) + query)
            size = struct.unpack("!H", _read(sock, 2))[0]
            answer = _read(sock, size)
    return answer


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed mid-answer")
        data += chunk
    return data


@dataclass
class Lookup:
    name: str
    addresses: List[Tuple[str, int]] = field(default_factory=list)  # (address, ttl)
    answered: bool = False  # some server gave a well-formed answer (possibly no address)
    error: str = ""


def lookup(name: str, servers: Sequence[Server], timeout: float, attempts: int) -> Lookup:
    """A and AAAA of `name`: each server in turn, `attempts` rounds; the first answer wins."""
    result = Lookup(name)
    for kind in (DNS_A, DNS_AAAA):
        done = False
        for _ in range(attempts):
            for server in servers:
                ident = random.getrandbits(16)
                try:
                    raw = _exchange(build_query(name, kind, ident), server, timeout)
                except OSError as exc:
                    result.error = f"{server[0]}:{server[1]}: {exc.strerror or exc}"
                    continue
                if len(raw) > 3 and raw[3] & 0x0F == 3:  # NXDOMAIN: the name does not exist, ask no further
                    result.error = f"{server[0]}:{server[1]}: no such name"
                    return result
                answer = parse_dns_response(raw)
                if answer is None or answer.ident != ident or answer.question != name.lower():
                    # NXDOMAIN, SERVFAIL, REFUSED, or not an answer to this question
                    result.error = f"{server[0]}:{server[1]}: no answer"
                    continue
                result.answered, done = True, True
                result.addresses += [(a, ttl) for a, ttl in answer_chain(answer)[1]]
                break
            if done:
                break
    return result


def resolve_all(names: Sequence[str], servers: Sequence[Server], timeout: float, attempts: int,
                concurrency: int) -> List[Lookup]:
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(names) or 1))) as pool:
        return list(pool.map(lambda n: lookup(n, servers, timeout, attempts), names))


def render(lookups: Sequence[Lookup], name_ports: Dict[str, set], servers: Sequence[Server],
           written: datetime.datetime, host: str) -> Tuple[str, int, int]:
    """The IOC file's text, the number of addresses in it and of answers left out."""
    by_entry: Dict[str, List[str]] = {}
    left_out = 0
    for item in lookups:
        for text, _ in item.addresses:
            address = usable_address(text)
            if address is None:
                left_out += 1
                continue
            shown = f"[{address}]" if ":" in address else address
            entries = [f"{shown}:{port}" for port in sorted(name_ports[item.name])] \
                if item.name in name_ports else [address]
            for entry in entries:
                names = by_entry.setdefault(entry, [])
                if item.name not in names:
                    names.append(item.name)
    answered = sum(1 for item in lookups if item.answered)
    servers_text = ", ".join(f"{h}:{p}" for h, p in servers)
    lines = [
        "# Mining-pool addresses written by `minerwatch resolve-pools`: read by exporters as a",
        "# network.ioc_files entry, so that they never look pool names up themselves.",
        f"# written: {written.strftime('%Y-%m-%dT%H:%M:%SZ')} on {host} from name servers {servers_text}",
        f"# names: {len(lookups)} asked, {answered} answered, {len(lookups) - answered} failed; "
        f"addresses: {len(by_entry)}; sinkhole and CDN answers left out: {left_out}",
    ]
    for entry in sorted(by_entry, key=_sort_key):
        lines.append(f"{entry}  # {', '.join(sorted(by_entry[entry]))}")
    return "\n".join(lines) + "\n", len(by_entry), left_out


def _sort_key(entry: str):
    if entry.startswith("["):  # [v6]:port
        host = entry[1:].partition("]")[0]
    else:  # v4, v4:port or bare v6
        host = entry.partition(":")[0] if entry.count(":") == 1 else entry
    address = ipaddress.ip_address(host)
    return address.version, address, entry


def write_atomically(path: str, text: str) -> None:
    """Write `path` so that a reader sees the old file or the whole new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@click.command("resolve-pools")
@click.option("--output", "-o", "output", required=True, type=click.Path(dir_okay=False),
              help="IOC file to write (atomically) for the exporters' network.ioc_files.")
@click.option("--ioc-file", "ioc_files", multiple=True, type=click.Path(dir_okay=False),
              help="More pool lists to resolve, in the IOC file format (repeatable).")
@click.option("--nameserver", "nameservers", multiple=True,
              help="DNS server to ask: IP, IP:port or [IPv6]:port (repeatable; default: /etc/resolv.conf).")
@click.option("--timeout", type=click.FloatRange(min=0.05, max=60), default=2.0, show_default=True,
              help="Seconds to wait for one answer.")
@click.option("--attempts", type=click.IntRange(min=1, max=10), default=2, show_default=True,
              help="Rounds over the name servers before a name counts as failed.")
@click.option("--concurrency", type=click.IntRange(min=1, max=256), default=16, show_default=True,
              help="Names resolved at the same time.")
@click.option("--max-names", type=click.IntRange(min=1), default=None,
              help="Resolve at most this many names (shipped Stratum names first). Default: all.")
def resolve_pools(output, ioc_files, nameservers, timeout, attempts, concurrency, max_names):
    """Resolve the pool names centrally and write their addresses as an IOC file for the exporters."""
    servers: List[Server] = []
    for text in nameservers:
        try:
            servers.append(parse_nameserver(text))
        except ValueError:
            raise click.BadParameter(f"not an IP, IP:port or [IPv6]:port: {host_text(text, 80)!r}",
                                     param_hint="'--nameserver'")
    if not servers:
        servers = system_nameservers()
        if not servers:
            raise click.BadParameter("none given and /etc/resolv.conf names none", param_hint="'--nameserver'")
    for path in ioc_files:
        if not os.access(path, os.R_OK) or os.path.isdir(path):
            raise click.BadParameter(f"cannot read {host_text(path)}", param_hint="'--ioc-file'")
    pools = load_pool_list([(path, path) for path in ioc_files])  # a bad line: ConfigError, exit 2
    names = pools.resolve_names(max_names or len(pools.resolvable))
    started = time.monotonic()
    lookups = resolve_all(names, servers, timeout, attempts, concurrency)
    took = time.monotonic() - started
    failed = [item for item in lookups if not item.answered]
    for item in failed:
        click.echo(f"resolve-pools: {item.name}: {host_text(item.error, 200)}", err=True)
    if names and len(failed) == len(names):
        raise click.ClickException(f"no pool name resolved in {took:.1f} s: {host_text(output)} left as it was")
    text, count, left_out = render(lookups, pools.name_ports, servers,
                                   datetime.datetime.now(datetime.timezone.utc), host_text(socket.gethostname()))
    try:
        write_atomically(output, text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {host_text(output)}: {exc.strerror}")
    click.echo(f"resolve-pools: {len(names) - len(failed)} of {len(names)} names answered in {took:.1f} s; "
               f"{count} addresses written to {host_text(output)} ({left_out} sinkhole or CDN answers left out)")


if __name__ == "__main__":  # python -m minerwatch.network.resolve ...: the same exit codes as `minerwatch`
    from minerwatch import cli

    if "resolve-pools" not in cli.cli.commands:
        cli.cli.add_command(resolve_pools, "resolve-pools")
    cli.main(["resolve-pools", *sys.argv[1:]])
