"""Issue 14: DNS queries for pool names, the process behind each, and how much a look-up weighs.

The query bytes come from support/dnsserver.py's hand-written encoder (not minerwatch's parser);
the socket owners are real processes of this test (UdpOwners reads /proc); the weighing logic is
fed owners and a clock directly.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

from minerwatch.network.dns import DnsQuery, parse_dns_query
from minerwatch.network.dns_queries import REPEATS, QueryTracker, endpoint_matcher
from minerwatch.network.pools import PoolList, parse_indicators
from minerwatch.network.sniffer import Sniffer
from minerwatch.network.sockets import Endpoint
from minerwatch.network.udp_owners import Owner, UdpOwners, parse_udp_table
from support.dnsserver import encode_name
from support.processes import stop_pid

POOLS = ["supportxmr.com", "pool.supportxmr.com stratum", "!binance.com", "nanopool.org",
         "xmr-eu1.nanopool.org stratum", "evil.example.net:5555"]


def pools() -> PoolList:
    return PoolList(parse_indicators(POOLS, "pools.txt"))


def is_endpoint():
    p = pools()
    return endpoint_matcher(list(p.indicators.stratum) + list(p.name_ports))


def query(name: str, ident: int = 7, qtype: int = 1, flags: int = 0x0100) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, 1)


# -- the query parser -----------------------------------------------------------------------------


def test_a_stub_resolvers_query_gives_its_name_and_nothing_else_does():
    assert parse_dns_query(query("Pool.SupportXMR.com")) == DnsQuery(7, "pool.supportxmr.com", 1)
    assert parse_dns_query(query("pool.supportxmr.com", ident=9, qtype=28)) == DnsQuery(9, "pool.supportxmr.com", 28)
    assert parse_dns_query(query("pool.supportxmr.com", flags=0x8180)) is None  # a response
    assert parse_dns_query(query("pool.supportxmr.com", flags=0x2800)) is None  # an UPDATE
    assert parse_dns_query(query("pool.supportxmr.com")[:-2]) is None  # type without class: cut short
    assert parse_dns_query(query("pool.supportxmr.com")[:20]) is None
    two = struct.pack("!HHHHHH", 1, 0x0100, 2, 0, 0, 0) + encode_name("a.example") + b"\0\1\0\1"
    assert parse_dns_query(two) is None
    loop = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1"  # points at itself
    assert parse_dns_query(loop) is None
    huge = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\0\0\1\0\1"
    assert parse_dns_query(huge) is None  # longer than 255 bytes
    dotted = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x13pool.supportxmr.com\0\0\1\0\1"
    assert parse_dns_query(dotted).name == "pool\\046supportxmr\\046com"  # one label with dots is not three


def test_endpoints_are_stratum_names_and_named_ioc_endpoints_with_their_subdomains():
    endpoint = is_endpoint()
    assert endpoint("pool.supportxmr.com") and endpoint("eu.pool.supportxmr.com")
    assert endpoint("XMR-EU1.nanopool.org.") and endpoint("evil.example.net")
    assert not endpoint("supportxmr.com") and not endpoint("www.supportxmr.com") and not endpoint("nanopool.org")


# -- weighing look-ups ----------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


CLIENT = Endpoint("192.0.2.10", 40001)
SERVER = Endpoint("192.0.2.53", 53)


def tracker(clock, **kwargs) -> QueryTracker:
    return QueryTracker(pools().match_domain, is_endpoint(), clock=clock, own_pid=1, **kwargs)


def ask(t: QueryTracker, name: str, owner: Owner, port: int = 40001, qtype: int = 1):
    t.feed(Endpoint("192.0.2.10", port), SERVER, query(name, qtype=qtype))
    for item, allowed in t.take():
        t.record(item, owner if allowed else Owner("skipped"))


def test_an_endpoint_asked_again_and_again_by_one_process_is_strong():
    clock = Clock()
    t = tracker(clock)
    miner = Owner("found", 4242, 1000)
    t.feed(CLIENT, SERVER, query("pool.supportxmr.com", qtype=1))
    t.feed(CLIENT, SERVER, query("pool.supportxmr.com", qtype=28))  # AAAA from the same socket
    assert len(t.pending) == 1
    [(item, allowed)] = t.take()
    t.record(item, miner)
    [lookup] = t.live()
    assert (lookup.pid, lookup.times, lookup.endpoint, lookup.strong) == (4242, 1, True, False)
    clock.now += 0.2
    ask(t, "pool.supportxmr.com", miner, port=40002)  # Go asks A and AAAA from two sockets
    assert t.live()[0].times == 1
    for _ in range(REPEATS - 1):
        clock.now += 5  # XMRig's retry pause
        ask(t, "pool.supportxmr.com", miner, port=40003)
    [lookup] = t.live()
    assert (lookup.times, lookup.strong, lookup.pool, lookup.server) == (REPEATS, True, "pool.supportxmr.com", SERVER)
    assert lookup.detail == f"looked up pool.supportxmr.com (a Stratum endpoint) {REPEATS} times"
    assert t.queries == {"pool": 4, "other": 0, "malformed": 0}
    assert t.owners["found"] == 1 + REPEATS


def test_web_sites_one_off_lookups_forwarders_and_the_exporter_are_not_strong():
    clock = Clock()
    t = tracker(clock)
    browser = Owner("found", 500, 1000)
    for _ in range(4):  # a user looking at a pool's statistics page, again and again
        ask(t, "supportxmr.com", browser)
        clock.now += 30
    ask(t, "pool.supportxmr.com", Owner("found", 501, 1000))  # an administrator's dig: once
    ask(t, "www.binance.com", browser)  # excluded: not a pool
    ask(t, "www.example.org", browser)
    for _ in range(3):  # systemd-resolved forwarding a miner's question; the exporter's own
        ask(t, "pool.supportxmr.com", Owner("found", 53, 101, resolver=True))
        ask(t, "pool.supportxmr.com", Owner("found", 1, 0))
        clock.now += 5
    lookups = {lk.pid: lk for lk in t.live()}
    assert set(lookups) == {500, 501}
    assert (lookups[500].times, lookups[500].endpoint, lookups[500].strong) == (4, False, False)
    assert (lookups[501].times, lookups[501].strong) == (1, False)
    assert t.owners["forwarder"] == 6
    assert t.queries == {"pool": 11, "other": 2, "malformed": 0}


def test_an_unattributed_lookup_is_kept_without_a_pid_and_is_never_strong():
    clock = Clock()
    t = tracker(clock)
    for result in ("gone", "unknown", "gone"):
        ask(t, "pool.supportxmr.com", Owner(result))
        clock.now += 5
    [lookup] = t.live()
    assert (lookup.pid, lookup.times, lookup.strong) == (None, 3, False)
    assert (t.owners["gone"], t.owners["unknown"]) == (2, 1)


def test_owner_searches_are_rate_limited_and_every_table_is_bounded():
    clock = Clock()
    t = tracker(clock, owner_lookups_per_second=5, max_pending=8, max_lookups=4, ttl=600)
    for port in range(40000, 40020):  # a flood of pool queries from many sockets
        t.feed(Endpoint("192.0.2.10", port), SERVER, query("pool.supportxmr.com"))
    assert len(t.pending) == 8 and t.owners["skipped"] == 12
    batch = t.take()
    assert [allowed for _, allowed in batch] == [True] * 5 + [False] * 3
    for i, (item, allowed) in enumerate(batch):
        t.record(item, Owner("found", 100 + i) if allowed else Owner("skipped"))
    # the oldest askers went first; the three over the limit are one asker without a pid
    assert [lk.pid for lk in t.live()] == [102, 103, 104, None]
    assert t.owners["skipped"] == 12 + 3
    clock.now += 1.0  # the next second has a fresh budget
    t.feed(CLIENT, SERVER, query("pool.supportxmr.com"))
    assert [allowed for _, allowed in t.take()] == [True]
    assert [lk.pid for lk in t.live(alive=lambda pid: pid != 103)] == [102, 104, None]  # 103's process ended
    clock.now += 601
    assert t.live() == []


# -- owners of real sockets -----------------------------------------------------------------------

HOLDER = """
import socket, sys, time
socks = []
for address in sys.argv[1:]:
    host, port = address.rsplit(":", 1)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, int(port)))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
time.sleep(60)
"""


def holder(*addresses):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *addresses], stdout=subprocess.PIPE, text=True)
    ports = [int(p) for p in proc.stdout.readline().split()]
    return proc, ports


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/net/udp is Linux")
def test_the_owner_of_a_live_udp_socket_is_found_and_a_dns_server_is_a_forwarder():
    address = f"127.{os.getpid() % 200 + 50}.{os.getpid() % 250 + 1}.53"
    client, [port] = holder("127.0.0.1:0")
    try:
        server, ports = holder(f"{address}:53", "127.0.0.1:0")
    except ValueError:
        server, ports = None, []
    try:
        owners = UdpOwners()
        found = owners.find(Endpoint("127.0.0.1", port))
        assert (found.result, found.pid, found.uid, found.resolver) == ("found", client.pid, os.getuid(), False)
        if server is not None and len(ports) == 2:  # binding port 53 needs root
            found = owners.find(Endpoint("127.0.0.1", ports[1]))
            assert (found.pid, found.resolver) == (server.pid, True)
        stop_pid(client)
        assert owners.find(Endpoint("127.0.0.1", port)).result == "gone"
        assert not owners.alive(client.pid)
    finally:
        stop_pid(client)
        if server is not None:
            stop_pid(server)


def test_udp_table_rows_are_decoded():
    text = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
            "  1: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 4242 2 0 0\n"
            "  2: garbage\n")
    rows = parse_udp_table(text) if sys.byteorder == "little" else []
    if rows:
        assert rows == [(Endpoint("127.0.0.1", 53), 101, 4242)]


# -- the sniffer on hostile queries ---------------------------------------------------------------


def ipv4_udp(payload: bytes, sport: int, dport: int = 53) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([192, 0, 2, 10]),
                       bytes([192, 0, 2, 53])) + udp


class NoOwners:
    """The owner search of a machine where every query socket is already closed."""

    def find(self, local):
        return Owner("gone")

    def alive(self, pid):
        return True


def test_the_sniffer_reads_queries_and_survives_hostile_ones():
    import random

    sniffer = Sniffer(pools().match_domain, owners=NoOwners())
    rng = random.Random(14)
    good = query("pool.supportxmr.com")
    sniffer.feed(ipv4_udp(good, 40000))
    for i in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randint(0, len(data))])
        sniffer.feed(ipv4_udp(cut, 41000 + i % 1000))
        sniffer.feed(ipv4_udp(bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))), 42000))
        sniffer.feed(ipv4_udp(good, 43000)[: rng.randint(0, 40)])  # the capture cut the datagram
    huge = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x3f" + b"x" * 63 * 70
    sniffer.feed(ipv4_udp(huge, 44000))
    sniffer.attribute_queries()
    state = sniffer.snapshot()
    assert state.packets_total == 1 + 3 * 3000 + 1
    assert state.dns_queries["pool"] >= 1 and state.dns_queries["malformed"] > 1000
    assert all(lk.pid is None and not lk.strong for lk in state.lookups)
    assert len(sniffer.queries.pending) == 0
