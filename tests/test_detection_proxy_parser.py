"""Issue 14: the pool name in an HTTP CONNECT request, read from packets built here byte by byte."""

from __future__ import annotations

import random
import socket
import struct

from minerwatch.network.pools import PoolList, parse_indicators
from minerwatch.network.sniffer import FlowTracker, Sniffer, build_filter, parse_connect
from test_dns_parser import run_filter

POOLS = ["supportxmr.com", "pool.supportxmr.com stratum", "!binance.com"]


def match_domain(name):
    return PoolList(parse_indicators(POOLS, "pools.txt")).match_domain(name)


def ipv4_tcp(payload: bytes, seq: int = 1000, sport: int = 50000, dport: int = 3128) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0,
                     socket.inet_aton("10.1.2.3"), socket.inet_aton("10.9.9.9"))
    return ip + tcp + payload


def client_hello(name: str) -> bytes:
    host = name.encode()
    sni = struct.pack("!HBH", len(host) + 3, 0, len(host)) + host
    ext = struct.pack("!HH", 0, len(sni)) + sni
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack("!H", len(ext)) + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_connect_request_lines():
    assert parse_connect(b"CONNECT pool.supportxmr.com:443 HTTP/1.1\r\nHost: pool.supportxmr.com:443\r\n\r\n") == \
        ("pool.supportxmr.com", 443)
    assert parse_connect(b"CONNECT Pool.SupportXMR.com:3333 HTTP/1.0\n\n") == ("pool.supportxmr.com", 3333)
    assert parse_connect(b"CONNECT [2001:db8::7]:443 HTTP/1.1\r\n") == ("2001:db8::7", 443)
    for bad in (b"CONNECT pool.supportxmr.com:443 HTTP/1.1",  # cut before the line ends
                b"CONNECT pool.supportxmr.com:44", b"CONNECT pool.supportxmr.com HTTP/1.1\r\n",
                b"CONNECT pool.supportxmr.com:99999 HTTP/1.1\r\n", b"CONNECT pool.supportxmr.com:0 HTTP/1.1\r\n",
                b"CONNECT pool supportxmr.com:443 HTTP/1.1\r\n", b"CONNECT pool.supportxmr.com:443 HTTP/2\r\n",
                b"connect pool.supportxmr.com:443 HTTP/1.1\r\n", b"GET / HTTP/1.1\r\n",
                b"CONNECT " + b"a" * 300 + b".supportxmr.com:443 HTTP/1.1\r\n",  # no host name is that long
                b"CONNECT pool.supportxmr.com\x00.evil:443 HTTP/1.1\r\n", b""):
        assert parse_connect(bad) is None, bad


def test_the_kernel_filter_passes_a_connect_but_not_other_http():
    program = build_filter(loopback_ifindex=1)
    assert run_filter(program, ipv4_tcp(b"CONNECT pool.supportxmr.com:443 HTTP/1.1\r\n\r\n"), 0x0800) > 0
    assert run_filter(program, ipv4_tcp(b"GET / HTTP/1.1\r\n\r\n"), 0x0800) == 0
    assert run_filter(program, ipv4_tcp(b"POST /upload HTTP/1.1\r\n\r\n"), 0x0800) == 0


def test_a_connect_naming_a_pool_is_a_hit_on_the_proxy_connection():
    tracker = FlowTracker(match_domain)
    tracker.feed(ipv4_tcp(b"CONNECT pool.supportxmr.com:443 HTTP/1.1\r\nHost: pool.supportxmr.com:443\r\n\r\n"))
    [hit] = tracker.hits.values()
    assert (hit.client, hit.server) == (("10.1.2.3", 50000), ("10.9.9.9", 3128))
    assert (hit.evidence, hit.pool, hit.detail) == ("connect", "pool.supportxmr.com",
                                                    "CONNECT pool.supportxmr.com:443")
    assert tracker.connect_matches == 1


def test_ordinary_connects_are_nothing_but_a_pool_named_inside_their_tunnel_is_seen():
    tracker = FlowTracker(match_domain)
    line = b"CONNECT www.example.org:443 HTTP/1.1\r\n\r\n"
    tracker.feed(ipv4_tcp(line, sport=50001))
    tracker.feed(ipv4_tcp(b"CONNECT api.binance.com:443 HTTP/1.1\r\n\r\n", sport=50002))  # excluded
    assert tracker.hits == {} and tracker.connect_matches == 0
    # a CONNECT to an address, then TLS through the tunnel: the ClientHello still names the pool
    tracker.feed(ipv4_tcp(b"CONNECT 198.51.100.7:443 HTTP/1.1\r\n\r\n", sport=50003))
    tracker.feed(ipv4_tcp(client_hello("pool.supportxmr.com"), seq=1000 + 37, sport=50003))
    [hit] = tracker.hits.values()
    assert (hit.evidence, hit.client.port) == ("sni", 50003)


def test_hostile_connect_lines_never_crash_the_sniffer_nor_make_a_hit():
    sniffer = Sniffer(match_domain, max_flows=64)
    rng = random.Random(14)
    good = b"CONNECT pool.supportxmr.com:443 HTTP/1.1\r\nHost: x\r\n\r\n"
    sent = 0
    for i in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 5)):
            data[rng.randrange(8, len(data))] = rng.randrange(256)  # the method stays: it got through
        for payload in (bytes(data), good[: rng.randint(1, 40)], b"CONNECT " + bytes(rng.randrange(256) for _ in range(
                rng.randint(0, 2000)))):
            sniffer.feed(ipv4_tcp(payload, sport=1024 + (i * 3 + len(payload)) % 60000, seq=rng.randrange(1 << 32)))
            sent += 1
    sniffer.feed(ipv4_tcp(b"CONNECT " + b"a." * 2000 + b"supportxmr.com:443 HTTP/1.1\r\n\r\n", sport=7))
    sniffer.feed(ipv4_tcp(good)[:45])  # the capture cut the segment in the line
    state = sniffer.snapshot()
    assert state.packets_total == sent + 2
    # mutations that keep a whole, valid line naming a pool may hit; none of the others do
    for hit in state.hits.values():
        assert hit.evidence == "connect" and hit.pool == "supportxmr.com" or hit.pool == "pool.supportxmr.com"
        assert parse_connect(("CONNECT " + hit.detail[8:] + " HTTP/1.1\r\n").encode()) is not None
    assert len(state.hits) < 3000 // 2
