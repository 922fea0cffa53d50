"""Issue 23: a pool's web site on port 443 is weak evidence; SOCKS requests name pools too.

Packets built here byte by byte, fed to the flow tracker with the shipped pool list; the kernel
filter run by a classic-BPF interpreter (what the kernel does, out-of-bounds loads included).
"""

from __future__ import annotations

import random
import socket
import struct

import pytest

from minerwatch.network.pools import PoolList, load_pool_list, parse_indicators
from minerwatch.network.sniffer import FlowTracker, build_filter, parse_socks
from support.bpf import run_filter
from test_detection_proxy_parser import client_hello

POOLS = load_pool_list()
SOCKS5_POOL = b"\x05\x01\x00\x03\x13pool.supportxmr.com\x0d\x05"


def tracker(**kwargs) -> FlowTracker:
    return FlowTracker(POOLS.match_domain, is_endpoint=POOLS.is_endpoint, match_address=POOLS.match_address, **kwargs)


def ipv4_tcp(payload: bytes, dport: int = 443, sport: int = 50000, seq: int = 1000) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0,
                     socket.inet_aton("10.1.2.3"), socket.inet_aton("10.9.9.9"))
    return ip + tcp + payload


def evidence(t: FlowTracker):
    return sorted((h.client.port, h.evidence, h.pool, h.detail) for h in t.all_hits().values())


# -- which names are web sites --------------------------------------------------------------------


def test_shipped_web_sites_and_endpoints():
    for site in ("nicehash.com", "www.nicehash.com", "f2pool.com", "www.f2pool.com", "supportxmr.com",
                 "moneroocean.stream", "p2pool.io"):
        assert POOLS.match_domain(site) and not POOLS.is_endpoint(site), site
    for endpoint in ("donate.ssl.xmrig.com", "donate.v2.xmrig.com", "pool.supportxmr.com", "xmr.f2pool.com",
                     "sg.xmr.f2pool.com", "randomxmonero.auto.nicehash.com", "kawpow.auto.nicehash.com",
                     "gulf.moneroocean.stream", "rx.unmineable.com"):
        assert POOLS.is_endpoint(endpoint), endpoint
    # an IOC file's host:port and stratum-marked lines are endpoints, its bare domains web sites
    ioc = PoolList(parse_indicators(
        ["evil.example.net", "stratum.evil.example.net:3333", "mine.evil.example.org stratum"], "iocs.txt"))
    assert ioc.is_endpoint("stratum.evil.example.net") and ioc.is_endpoint("eu.mine.evil.example.org")
    assert not ioc.is_endpoint("www.evil.example.net")


# -- SNI ------------------------------------------------------------------------------------------


def test_a_web_site_named_for_443_is_site_anything_else_stays_strong():
    t = tracker()
    t.feed(ipv4_tcp(client_hello("www.nicehash.com"), sport=1))  # a browser
    t.feed(ipv4_tcp(client_hello("f2pool.com"), sport=2))
    t.feed(ipv4_tcp(client_hello("donate.ssl.xmrig.com"), sport=3))  # XMRig's donation, Stratum on 443
    t.feed(ipv4_tcp(client_hello("www.nicehash.com"), dport=8443, sport=4))  # a pool name off 443
    t.feed(ipv4_tcp(client_hello("www.example.org"), sport=5))
    assert evidence(t) == [
        (1, "site", "nicehash.com", "www.nicehash.com"),
        (2, "site", "f2pool.com", "f2pool.com"),
        (3, "sni", "donate.ssl.xmrig.com", "donate.ssl.xmrig.com"),
        (4, "sni", "nicehash.com", "www.nicehash.com"),
    ]
    assert list(t.hits) and all(h.evidence != "site" for h in t.hits.values())
    assert t.sni_matches == 4


def test_browsing_never_pushes_a_miners_hit_out():
    t = tracker(max_hits=4, max_site_hits=2)
    t.feed(ipv4_tcp(client_hello("pool.supportxmr.com"), sport=1))
    for port in range(100, 140):  # a browser's many connections, or a user flooding on purpose
        t.feed(ipv4_tcp(client_hello("www.f2pool.com"), sport=port))
    assert [h.client.port for h in t.hits.values()] == [1]
    assert len(t.site_hits) == 2


# -- CONNECT and SOCKS ------------------------------------------------------------------------------


def test_socks_requests():
    assert parse_socks(SOCKS5_POOL) == ("SOCKS5", "pool.supportxmr.com", 3333)
    assert parse_socks(b"\x05\x01\x00\x03\x0fXMR.F2POOL.COM.\x01\xbb") == ("SOCKS5", "xmr.f2pool.com.", 443)
    assert parse_socks(b"\x05\x01\x00\x01\xc6\x33\x64\x07\x0d\x05") == ("SOCKS5", "198.51.100.7", 3333)
    assert parse_socks(b"\x05\x01\x00\x04" + socket.inet_pton(socket.AF_INET6, "2001:db8::7") + b"\x0d\x05") == \
        ("SOCKS5", "2001:db8::7", 3333)
    assert parse_socks(b"\x04\x01\x0d\x05\x00\x00\x00\x01me\x00xmr.f2pool.com\x00") == ("SOCKS4a", "xmr.f2pool.com", 3333)
    for bad in (b"\x05\x01\x00", b"\x05\x01\x00\x02\x00", SOCKS5_POOL[:-1], SOCKS5_POOL[:10],
                b"\x05\x02\x00\x03\x13pool.supportxmr.com\x0d\x05",  # BIND, not CONNECT
                b"\x05\x01\x00\x03\x05a b\x00c\x0d\x05",  # not a host name
                b"\x05\x01\x00\x03\x13pool.supportxmr.com\x00\x00",  # port 0
                b"\x04\x01\x0d\x05\x00\x00\x00\x01me\x00xmr.f2pool.com",  # name cut short
                b"\x04\x01\x0d\x05\x00\x00\x00\x01" + b"u" * 300 + b"\x00a.b\x00",  # user id past the bound
                b"\x04\x01\x0d\x05\xc6\x33\x64\x07\x00",  # plain SOCKS4: an address, never read
                b"\x04\x02\x0d\x05\xc6\x33\x64\x07\x00", b"", b"\x05"):
        assert parse_socks(bad) is None, bad


def test_socks_and_connect_requests_name_pools_on_the_relay_connection():
    t = tracker()
    t.feed(ipv4_tcp(SOCKS5_POOL, dport=1080, sport=1))
    t.feed(ipv4_tcp(b"\x04\x01\x0d\x05\x00\x00\x00\x01me\x00xmr.f2pool.com\x00", dport=1080, sport=2))
    t.feed(ipv4_tcp(b"\x05\x01\x00\x03\x0ewww.f2pool.com\x01\xbb", dport=1080, sport=3))  # a browser via SOCKS
    t.feed(ipv4_tcp(b"CONNECT www.nicehash.com:443 HTTP/1.1\r\n\r\n", dport=3128, sport=4))  # via the proxy
    t.feed(ipv4_tcp(b"CONNECT www.nicehash.com:3333 HTTP/1.1\r\n\r\n", dport=3128, sport=5))  # not a browser
    t.feed(ipv4_tcp(b"\x05\x01\x00\x03\x0fwww.example.org\x01\xbb", dport=1080, sport=6))
    assert evidence(t) == [
        (1, "connect", "pool.supportxmr.com", "SOCKS5 CONNECT pool.supportxmr.com:3333"),
        (2, "connect", "xmr.f2pool.com", "SOCKS4a CONNECT xmr.f2pool.com:3333"),
        (3, "site", "f2pool.com", "SOCKS5 CONNECT www.f2pool.com:443"),
        (4, "site", "nicehash.com", "CONNECT www.nicehash.com:443"),
        (5, "connect", "nicehash.com", "CONNECT www.nicehash.com:3333"),
    ]
    assert t.connect_matches == 5


def test_a_listed_address_in_a_socks_request_is_connect():
    pools = PoolList(parse_indicators(["198.51.100.7", "203.0.113.0/24"], "iocs.txt"))
    t = FlowTracker(pools.match_domain, is_endpoint=pools.is_endpoint, match_address=pools.match_address)
    t.feed(ipv4_tcp(b"\x05\x01\x00\x01\xc6\x33\x64\x07\x0d\x05", dport=1080, sport=1))
    t.feed(ipv4_tcp(b"\x05\x01\x00\x01\xcb\x00\x71\x05\x01\xbb", dport=1080, sport=2))
    t.feed(ipv4_tcp(b"\x05\x01\x00\x01\xc6\x33\x64\x08\x0d\x05", dport=1080, sport=3))  # not listed
    assert evidence(t) == [(1, "connect", "198.51.100.7", "SOCKS5 CONNECT 198.51.100.7:3333"),
                           (2, "connect", "203.0.113.0/24", "SOCKS5 CONNECT 203.0.113.5:443")]


def test_stratum_or_an_endpoint_inside_a_tunnel_to_a_web_site_turns_it_strong():
    t = tracker()
    request = b"\x05\x01\x00\x03\x0ewww.f2pool.com\x01\xbb"
    t.feed(ipv4_tcp(request, dport=1080, sport=1))
    login = b'{"id":1,"method":"login","params":{"login":"4x","pass":"x","agent":"XMRig/6.21.0"}}\n'
    t.feed(ipv4_tcp(login, dport=1080, sport=1, seq=1000 + len(request)))
    # a ClientHello through a tunnel keeps the tunnel's port: the web site on 443 stays weak
    connect = b"CONNECT 192.0.2.1:443 HTTP/1.1\r\n\r\n"
    t.feed(ipv4_tcp(connect, dport=3128, sport=2))
    t.feed(ipv4_tcp(client_hello("www.nicehash.com"), dport=3128, sport=2, seq=1000 + len(connect)))
    t.feed(ipv4_tcp(connect, dport=3128, sport=3))
    t.feed(ipv4_tcp(client_hello("rx.unmineable.com"), dport=3128, sport=3, seq=1000 + len(connect)))
    assert evidence(t) == [(1, "stratum", "", "cryptonote login"),
                           (2, "site", "nicehash.com", "www.nicehash.com"),
                           (3, "sni", "rx.unmineable.com", "rx.unmineable.com")]


# -- the kernel filter ----------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [SOCKS5_POOL, b"\x05\x01\x00\x01\xc6\x33\x64\x07\x0d\x05",
                                     b"\x05\x01\x00\x04" + bytes(18), b"\x04\x01\x0d\x05\x00\x00\x00\x01\x00",
                                     b"CONNECT a.b:443 HTTP/1.1\r\n", b"{", b"\x16\x03\x01"])
def test_the_kernel_filter_passes_relay_requests(payload):
    assert run_filter(build_filter(1), ipv4_tcp(payload)) > 0


def test_the_kernel_filter_keeps_bulk_data_starting_with_a_socks_version_out():
    program = build_filter(1)
    # a SOCKS5 greeting (three bytes: the load of a word fails), other commands and address types,
    # plain SOCKS4 (an address)
    for payload in (b"\x05\x01\x00", b"\x05\x02\x00\x02", b"\x05\x01\x00\x02abcdef", b"\x05\x03\x00\x01abcdef",
                    b"\x04\x02\x00\x50", b"\x04", b"\x04\x01\x00\x50\xc6\x33\x64\x07\x00"):
        assert run_filter(program, ipv4_tcp(payload)) == 0, payload
    rng = random.Random(23)
    passed = sum(run_filter(program, ipv4_tcp(bytes([rng.choice((4, 5))]) + rng.randbytes(63))) > 0
                 for _ in range(5000))
    assert passed == 0  # given the first byte: 3 in 2**24 for SOCKS5, 1 in 2**32 for SOCKS4a
