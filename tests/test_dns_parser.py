"""DNS answers on the wire: parsing real-shaped and hostile messages, and learning pool addresses."""

from __future__ import annotations

import random
import socket
import struct

import pytest

from minerwatch.network.pools import PoolList, parse_indicators
from minerwatch.network.dns import (
    DNS_A,
    DNS_AAAA,
    DNS_CNAME,
    DnsLearner,
    DnsQuery,
    DnsRecord,
    answer_chain,
    parse_dns_response,
    read_name,
)
from minerwatch.network.sniffer import PACKET_HOST, PACKET_OUTGOING, Sniffer, build_filter, parse_udp_payload
from minerwatch.network.sockets import Endpoint
from support.bpf import run_filter
from support.dnsserver import answer, encode_name, record, response

ZONE = {
    "pool.supportxmr.com": [("A", "198.51.100.7", 120), ("AAAA", "2001:db8::7", 120)],
    "innocent.example.net": [("CNAME", "edge.example.org", 30)],
    "edge.example.org": [("CNAME", "gulf.moneroocean.stream", 30)],
    "gulf.moneroocean.stream": [("A", "198.51.100.9", 5)],
    "www.example.org": [("A", "192.0.2.10", 300)],
    "blocked.supportxmr.com": [("A", "0.0.0.0", 300)],
    "cdn.supportxmr.com": [("A", "104.16.1.1", 300)],
}


def pools() -> PoolList:
    return PoolList(parse_indicators(["supportxmr.com", "gulf.moneroocean.stream stratum", "!www.example.org"], "t"))


def header(ident=0x1234, flags=0x8180, qd=1, an=1, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


# -- well-formed messages -------------------------------------------------------------------------


def test_a_and_aaaa_answers_with_a_compressed_owner_name():
    body = encode_name("pool.supportxmr.com") + struct.pack("!HH", 1, 1)
    a = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 120, 4) + bytes([198, 51, 100, 7])
    aaaa = b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 60, 16) + bytes.fromhex("20010db8000000000000000000000007")
    parsed = parse_dns_response(header(an=2) + body + a + aaaa)
    assert parsed.ident == 0x1234 and parsed.question == "pool.supportxmr.com"
    assert parsed.records == (
        DnsRecord("pool.supportxmr.com", DNS_A, 120, "198.51.100.7"),
        DnsRecord("pool.supportxmr.com", DNS_AAAA, 60, "2001:db8::7"),
    )


def test_cname_chain_is_followed_from_the_question_only():
    parsed = parse_dns_response(answer(ZONE, 7, "innocent.example.net", 1))
    chain, addresses = answer_chain(parsed)
    assert chain == ["innocent.example.net", "edge.example.org", "gulf.moneroocean.stream"]
    assert addresses == [("198.51.100.9", 5)]
    assert [r.kind for r in parsed.records] == [DNS_CNAME, DNS_CNAME, DNS_A]
    # an address for a name that is not on the chain is no answer to the question
    stray = record("pool.supportxmr.com", "A", "203.0.113.66", 60)
    parsed = parse_dns_response(response(8, "www.example.org", 1, [record("www.example.org", "A", "192.0.2.10", 60),
                                                                    stray]))
    assert answer_chain(parsed)[1] == [("192.0.2.10", 60)]


def test_queries_errors_and_other_opcodes_are_not_answers():
    assert parse_dns_response(answer(ZONE, 1, "nothing.example", 1)) is None  # NXDOMAIN
    query = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + encode_name("pool.supportxmr.com") + b"\0\1\0\1"
    assert parse_dns_response(query) is None  # a query, not a response
    two = header(qd=2, an=0) + (encode_name("a.example") + b"\0\1\0\1") * 2
    assert parse_dns_response(two) is None


def test_labels_with_dots_or_control_bytes_cannot_pass_for_a_pool_name():
    # one label "evil.supportxmr" then "com": on the wire that is not pool.supportxmr.com's suffix
    name = bytes([15]) + b"evil.supportxmr" + bytes([3]) + b"com\0"
    msg = header(an=1) + name + b"\0\1\0\1" + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(4)
    parsed = parse_dns_response(msg)
    assert parsed.question == "evil\\046supportxmr.com"
    assert pools().match_domain(parsed.question) is None
    weird = bytes([5]) + b"a\x1b[2J" + bytes([3]) + b"com\0"
    name_text, _ = read_name(weird, 0)
    assert name_text == "a\\027\\0912j.com" and name_text.isprintable()


# -- hostile messages -----------------------------------------------------------------------------


def test_compression_pointer_loops_end_at_once():
    question = encode_name("pool.supportxmr.com") + b"\0\1\0\1"
    self_loop = header(an=1) + question + b"\xc0" + bytes([12 + len(question)])  # points at itself
    parsed = parse_dns_response(self_loop + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(4))
    assert parsed is not None and parsed.records == ()
    # two labels that point at each other: 12 -> 14 -> 12 ...
    mutual = header(an=0) + b"\xc0\x0e\xc0\x0c" + b"\0\1\0\1"
    assert parse_dns_response(mutual) is None
    # a pointer into the middle of the same name, reached again after a label (the classic trap)
    trap = header(an=0) + b"\x01a\xc0\x0c" + b"\0\1\0\1"
    assert parse_dns_response(trap) is None


def test_huge_counts_and_truncation_keep_only_what_is_whole():
    full = answer(ZONE, 3, "pool.supportxmr.com", 1)
    claims = full[:6] + struct.pack("!H", 65535) + full[8:]  # says 65535 answers, holds one
    assert [r.value for r in parse_dns_response(claims).records] == ["198.51.100.7"]
    for cut in range(len(full)):
        parsed = parse_dns_response(full[:cut])  # every prefix: no exception, no half record
        assert parsed is None or parsed.records == () or cut == len(full)
    long_name = b"".join(bytes([63]) + b"a" * 63 for _ in range(5)) + b"\0"  # 320 bytes: over 255
    assert parse_dns_response(header(an=0) + long_name + b"\0\1\0\1") is None


def test_random_and_mutated_messages_never_raise():
    rng = random.Random(1729)
    seeds = [answer(ZONE, 9, name, qtype) for name in ZONE for qtype in (1, 28)]
    for i in range(20000):
        if i % 2:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.getrandbits(8)
            data = bytes(data[: rng.randrange(len(data) + 1)])
        parsed = parse_dns_response(data)
        if parsed is not None:
            assert len(parsed.records) <= 64
            answer_chain(parsed)


# -- packets and the kernel filter ----------------------------------------------------------------


def ipv4_udp(payload: bytes, sport=53, dport=40000, frag=0, src="192.0.2.53", dst="192.0.2.10") -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, frag, 64, 17, 0, socket.inet_aton(src),
                       socket.inet_aton(dst)) + udp


def ipv6_udp(payload: bytes, sport=53, dport=40000) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64, bytes(16), bytes(16)) + udp


def test_the_kernel_filter_passes_dns_answers_and_queries_and_nothing_else_udp():
    program = build_filter(loopback_ifindex=1)
    dns = answer(ZONE, 1, "pool.supportxmr.com", 1)
    assert run_filter(program, ipv4_udp(dns), 0x0800) > 0
    assert run_filter(program, ipv6_udp(dns), 0x86DD) > 0
    assert run_filter(program, ipv4_udp(dns, sport=40000, dport=53), 0x0800) > 0  # a query going out
    assert run_filter(program, ipv6_udp(dns, sport=40000, dport=53), 0x86DD) > 0
    assert run_filter(program, ipv4_udp(dns, sport=40000, dport=5353), 0x0800) == 0  # mDNS
    assert run_filter(program, ipv4_udp(dns, sport=443), 0x0800) == 0  # QUIC and the like
    assert run_filter(program, ipv4_udp(dns, frag=0x0010), 0x0800) == 0  # a later fragment
    assert run_filter(program, ipv6_udp(dns, sport=5353), 0x86DD) == 0
    assert parse_udp_payload(ipv4_udp(dns)) == dns and parse_udp_payload(ipv6_udp(dns)) == dns


# -- learning -------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


CLIENT, SERVER = Endpoint("192.0.2.10", 40000), Endpoint("192.0.2.53", 53)


def learn(learner: DnsLearner, ident: int, name: str, qtype: int, payload: bytes) -> None:
    """The host asks `name` from CLIENT to SERVER, and `payload` comes back."""
    learner.sent(CLIENT, SERVER, DnsQuery(ident, name, qtype))
    learner.feed(payload, CLIENT, SERVER)


def test_answers_for_pool_names_are_learned_for_their_ttl_floored_and_capped():
    clock = Clock()
    learner = DnsLearner(pools().match_domain, min_ttl=300, max_ttl=3600, clock=clock)
    learn(learner, 1, "pool.supportxmr.com", 1, answer(ZONE, 1, "pool.supportxmr.com", 1))
    learn(learner, 2, "innocent.example.net", 1, answer(ZONE, 2, "innocent.example.net", 1))  # a CNAME to a pool
    learn(learner, 3, "www.example.org", 1, answer(ZONE, 3, "www.example.org", 1))  # not a pool
    learn(learner, 4, "blocked.supportxmr.com", 1, answer(ZONE, 4, "blocked.supportxmr.com", 1))  # sinkholed
    learn(learner, 5, "cdn.supportxmr.com", 1, answer(ZONE, 5, "cdn.supportxmr.com", 1))  # behind a shared CDN
    learner.feed(b"\x00\x01garbage", CLIENT, SERVER)
    live = learner.live()
    assert set(live) == {"198.51.100.7", "198.51.100.9"}
    assert (live["198.51.100.7"].pool, live["198.51.100.7"].name) == ("supportxmr.com", "pool.supportxmr.com")
    assert (live["198.51.100.9"].pool, live["198.51.100.9"].name) == ("gulf.moneroocean.stream",
                                                                      "innocent.example.net")
    assert dict(learner.responses) == {"pool": 4, "other": 1, "malformed": 1, "unsolicited": 0, "mismatched": 0}
    assert live["198.51.100.9"].expires == 1000 + 300  # TTL 5: floored
    assert live["198.51.100.7"].expires == 1000 + 300  # TTL 120: floored
    learn(learner, 6, "pool.supportxmr.com", 1,
          response(6, "pool.supportxmr.com", 1, [record("pool.supportxmr.com", "A", "198.51.100.7", 86400)]))
    assert learner.live()["198.51.100.7"].expires == 1000 + 3600  # a day: capped
    clock.now += 301
    assert set(learner.live()) == {"198.51.100.7"}
    clock.now += 3600
    assert learner.live() == {}


def test_a_days_ttl_is_capped_at_ten_minutes_by_default():
    clock = Clock()
    learner = DnsLearner(pools().match_domain, clock=clock)
    learn(learner, 1, "pool.supportxmr.com", 1,
          response(1, "pool.supportxmr.com", 1, [record("pool.supportxmr.com", "A", "198.51.100.7", 86400)]))
    assert learner.live()["198.51.100.7"].expires == 1000 + 600


def test_only_an_answer_to_an_awaited_query_is_learned():
    clock = Clock()
    learner = DnsLearner(pools().match_domain, clock=clock)
    good = answer(ZONE, 9, "pool.supportxmr.com", 1)
    learner.feed(good, CLIENT, SERVER)  # nobody asked
    learner.sent(CLIENT, SERVER, DnsQuery(9, "pool.supportxmr.com", 1))
    learner.feed(good, CLIENT, Endpoint("192.0.2.66", 53))  # another server
    learner.feed(good, Endpoint("192.0.2.10", 40001), SERVER)  # another socket
    learner.feed(answer(ZONE, 10, "pool.supportxmr.com", 1), CLIENT, SERVER)  # another id
    learner.feed(good, CLIENT, SERVER, unicast=False)  # a broadcast
    learner.feed(answer(ZONE, 9, "cdn.supportxmr.com", 1), CLIENT, SERVER)  # another question
    learner.feed(answer(ZONE, 9, "pool.supportxmr.com", 28), CLIENT, SERVER)  # another type
    assert learner.live() == {}
    assert dict(learner.responses) == {"pool": 0, "other": 0, "malformed": 0, "unsolicited": 5, "mismatched": 2}
    learner.feed(good.replace(b"\x04pool\x0bsupportxmr", b"\x04PoOl\x0bSupportXMR"), CLIENT, SERVER)  # 0x20 case
    assert set(learner.live()) == {"198.51.100.7"}
    learner.feed(good, CLIENT, SERVER)  # one query, one answer
    assert learner.responses["pool"] == 1 and learner.responses["unsolicited"] == 6
    learner.sent(CLIENT, SERVER, DnsQuery(11, "pool.supportxmr.com", 1))
    clock.now += 5.5  # the stub resolver gave up on it
    learner.feed(answer(ZONE, 11, "pool.supportxmr.com", 1), CLIENT, SERVER)
    assert learner.responses["unsolicited"] == 7


def test_the_table_is_bounded_and_the_least_recently_answered_goes():
    learner = DnsLearner(pools().match_domain, max_entries=100)
    for i in range(1000):
        address = f"198.18.{i // 250}.{i % 250 + 1}"
        learn(learner, i, f"n{i}.supportxmr.com", 1,
              response(i, f"n{i}.supportxmr.com", 1, [record(f"n{i}.supportxmr.com", "A", address, 60)]))
    live = learner.live()
    assert len(live) == 100 and learner.evicted_total == 900
    assert "198.18.3.250" in live and "198.18.0.1" not in live


def test_the_pending_queries_are_bounded():
    learner = DnsLearner(pools().match_domain)
    for i in range(5000):
        learner.sent(Endpoint("192.0.2.10", 1024 + i), SERVER, DnsQuery(i, "pool.supportxmr.com", 1))
    assert len(learner.pending) == learner.pending.max_entries


def test_the_sniffer_learns_answers_to_the_hosts_queries_only():
    sniffer = Sniffer(pools().match_domain)
    query = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + encode_name("pool.supportxmr.com") + b"\0\1\0\1"
    reply = answer(ZONE, 1, "pool.supportxmr.com", 1)
    sent = ipv4_udp(query, 40000, 53, src="192.0.2.10", dst="192.0.2.53")
    sniffer.feed(ipv4_udp(reply))  # before any query: unsolicited
    sniffer.feed(sent, PACKET_HOST, "eth0")  # as if another host asked a DNS server here
    sniffer.feed(ipv4_udp(reply))
    sniffer.feed(sent, PACKET_OUTGOING, "eth0")  # the host's own query
    sniffer.feed(ipv4_udp(reply), 1, "eth0")  # PACKET_BROADCAST: a broadcast frame
    sniffer.feed(ipv4_udp(reply, dst="255.255.255.255"), PACKET_HOST, "eth0")  # a broadcast address
    sniffer.feed(ipv4_udp(reply), PACKET_OUTGOING, "eth0")  # the host answering someone: not read at all
    assert sniffer.snapshot().learned == {}
    sniffer.feed(ipv4_udp(reply), PACKET_HOST, "eth0")
    sniffer.feed(ipv4_udp(b"\xff" * 40))
    sniffer.feed(b"\x45")  # not even a header
    state = sniffer.snapshot()
    assert set(state.learned) == {"198.51.100.7"}
    assert state.dns_responses == {"pool": 1, "other": 0, "malformed": 1, "unsolicited": 4, "mismatched": 0}
    assert state.packets_total == 10


@pytest.mark.parametrize("ttl", [0, 0xFFFFFFFF])
def test_zero_and_negative_ttls_still_get_the_floor(ttl):
    clock = Clock()
    learner = DnsLearner(pools().match_domain, min_ttl=300, clock=clock)
    learn(learner, 1, "pool.supportxmr.com", 1,
          response(1, "pool.supportxmr.com", 1, [record("pool.supportxmr.com", "A", "198.51.100.7", ttl)]))
    assert learner.live()["198.51.100.7"].expires == 1300
