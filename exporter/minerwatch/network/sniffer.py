"""Stratum, TLS server names and DNS answers on the wire: a packet socket, a kernel filter, a thread.

A miner can be renamed and its settings hidden, but it must speak Stratum to its pool, a TLS
miner must name the pool in its ClientHello (SNI), and a miner behind a corporate web proxy must
name it in its `CONNECT pool:port HTTP/1.1` request, or in its SOCKS request to a relay (SOCKS5,
SOCKS4a: its own relay on a VPS, or one on 127.0.0.1). This module reads the first bytes of TCP
flows on every interface, loopback included, and records connections that do any of these.
A pool's web site (a listed name that is not a Stratum endpoint, pools.txt) named for port 443 in
a ClientHello, CONNECT or SOCKS request is what a browser does: it is recorded as weak evidence
`site`, in a table of its own, so that browsing never pushes a miner's record out. It
also reads the DNS queries the host sends (UDP to port 53) and the answers it receives (UDP from
port 53): when an answer answers one of those queries (dns_pending.py: same socket, server, id
and question; never a broadcast, multicast or another host's frame) and the name asked for, or a
CNAME on the way, is a listed pool, the answered addresses become pool addresses for a while, so
a connection to one is reported (weak evidence `dns_answer`) even when the exporter itself never
asks DNS anything. A query for a pool name is also attributed to the process that sent it
(dns_queries.py, udp_owners.py), which catches a miner whose pool a DNS filter blocks and which
therefore never connects.

Cost is bounded whatever the traffic:
- a classic BPF filter in the kernel passes only TCP segments whose payload starts with `{`
  (JSON), 0x16 (a TLS handshake record), `C` (an HTTP CONNECT), the four bytes of a SOCKS5
  CONNECT request (05 01 00 then address type 1, 3 or 4) or the start of a SOCKS4a one
  (04 01, a port, 0.0.0.x), truncated to SNAPLEN bytes, and UDP datagrams from or to port 53;
  bulk data never reaches Python (the SOCKS tests let through about one more random segment in
  a billion);
- flows live in a fixed-size LRU table; once classified, or after FLOW_BYTES bytes, a flow is
  ignored; learned pool addresses live in a fixed-size table too, each for its record's TTL
  (floored and capped);
- DNS answers go to the learner in dns.py, which parses them defensively, believes only answers
  to the host's own awaited queries (a bounded table of a few seconds each) and keeps a bounded
  table; queries for pool names go to dns_queries.py, whose owner look-ups are rate-limited and
  each bounded in time;
- the thread handles at most `max_pps` packets a second; when behind it stops reading and the
  kernel drops (counted in minerwatch_network_sniffer_dropped_total): it never blocks anything.

Linux only (AF_PACKET), and needs CAP_NET_RAW: without it the sniffer reports itself down.
Limits: Stratum v2 (binary, encrypted) and TLS with Encrypted Client Hello are not recognised;
a ClientHello larger than one segment (browsers with post-quantum key shares) is read from its
first segment only; DNS over TCP, DNS over TLS and DNS over HTTPS are not read (only plain UDP
answers), nor answers of a resolver in another network namespace the host cannot see, nor answers
to queries sent before the exporter started or dropped while it was over budget. A query
is attributed only if its socket is still open when the search reaches it: a stub resolver
answered within a millisecond can close it first (counted, see dns_queries.py).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import select
import socket
import struct
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from minerwatch.network.dns import RESPONSE_RESULTS, DnsLearner, Learned
from minerwatch.network.dns_queries import OWNER_RESULTS, QUERY_RESULTS, Lookup, QueryTracker
from minerwatch.network.pools import canonical_ip
from minerwatch.network.sockets import Endpoint
from minerwatch.network.udp_owners import Owner, UdpOwners
from minerwatch.text import host_text

log = logging.getLogger("minerwatch.network")

DIALECTS = ("stratum_v1", "cryptonote", "ethproxy")
FLOW_BYTES = 2048  # bytes of a flow's start examined at most
SNAPLEN = 120 + FLOW_BYTES  # worst-case IPv4/IPv6 + TCP headers, then the payload we read

# -- Stratum --------------------------------------------------------------------------------------

# method -> dialect, for messages a miner sends (the sender is the miner)
_CLIENT = {
    "mining.subscribe": "stratum_v1",
    "mining.authorize": "stratum_v1",
    "mining.submit": "stratum_v1",
    "mining.extranonce.subscribe": "stratum_v1",
    "eth_submitLogin": "ethproxy",
    "eth_submitWork": "ethproxy",
    "eth_submitHashrate": "ethproxy",
    "eth_getWork": "ethproxy",
    "keepalived": "cryptonote",
}
# method -> dialect, for messages a pool pushes (the receiver is the miner)
_SERVER = {"mining.notify": "stratum_v1", "mining.set_difficulty": "stratum_v1", "job": "cryptonote"}


@dataclass(frozen=True)
class Recognition:
    dialect: str  # one of DIALECTS
    role: str  # "client": the sender is the miner; "server": the receiver is
    what: str  # the method or key that gave it away


def _by_method(method: str, has: Callable[[str], bool]) -> Optional[Recognition]:
    if method in _CLIENT:
        return Recognition(_CLIENT[method], "client", method)
    if method == "login" and has("login") and has("agent"):  # XMRig and kin always send an agent
        return Recognition("cryptonote", "client", method)
    if method == "submit" and has("job_id") and has("nonce"):  # "submit" alone is too common
        return Recognition("cryptonote", "client", method)
    if method == "job" and has("blob"):
        return Recognition("cryptonote", "server", method)
    if method in _SERVER and method != "job":
        return Recognition(_SERVER[method], "server", method)
    return None


def _keys(value, depth: int = 0) -> set:
    """Every key of nested JSON objects (a few levels deep), to test for field names."""
    out = set()
    if depth > 3:
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(k)
            out |= _keys(v, depth + 1)
    elif isinstance(value, list):
        for v in value[:8]:
            out |= _keys(v, depth + 1)
    return out


def _mentions_notify(value, depth: int = 0) -> bool:
    if value == "mining.notify":
        return True
    return isinstance(value, list) and depth < 3 and any(_mentions_notify(v, depth + 1) for v in value[:8])


def _recognize_message(msg: dict) -> Optional[Recognition]:
    method = msg.get("method")
    if isinstance(method, str):
        keys = _keys(msg.get("params"))
        return _by_method(method, keys.__contains__)
    result = msg.get("result")
    if isinstance(result, dict):
        job = result.get("job")
        if isinstance(job, dict) and "blob" in job and ("job_id" in job or "seed_hash" in job):
            return Recognition("cryptonote", "server", "job")  # reply to login
    if isinstance(result, list) and _mentions_notify(result):
        return Recognition("stratum_v1", "server", "mining.subscribe reply")
    return None


_METHOD = re.compile(rb'"method"\s*:\s*"([A-Za-z0-9_.]{1,40})"')


def _recognize_text(text: bytes) -> Optional[Recognition]:
    """The same rules on a line cut short by the capture length: look for the quoted names."""
    m = _METHOD.search(text)
    if m:
        return _by_method(m.group(1).decode(), lambda key: f'"{key}"'.encode() in text)
    if re.search(rb'"job"\s*:\s*\{', text) and b'"blob"' in text and (b'"job_id"' in text or b'"seed_hash"' in text):
        return Recognition("cryptonote", "server", "job")
    return None


def recognize_stratum(data: bytes) -> Optional[Recognition]:
    """Whether the first JSON line of a flow is Stratum (any dialect), and who is the miner."""
    line = data.split(b"\n", 1)[0].strip()
    if not line.startswith(b"{"):
        return None
    try:
        msg = json.loads(line)
    except ValueError:  # cut short by the capture (or not JSON at all)
        return _recognize_text(line)
    return _recognize_message(msg) if isinstance(msg, dict) else None


# -- TLS ------------------------------------------------------------------------------------------


def parse_sni(data: bytes) -> Optional[str]:
    """The server name of a TLS ClientHello, read from as much of it as `data` holds."""
    try:
        if data[0] != 0x16 or data[1] != 3 or data[5] != 1:  # handshake record, client_hello
            return None
        p = 5 + 4 + 2 + 32  # record header, handshake header, version, random
        p += 1 + data[p]  # session id
        p += 2 + struct.unpack_from("!H", data, p)[0]  # cipher suites
        p += 1 + data[p]  # compression methods
        end = min(len(data), p + 2 + struct.unpack_from("!H", data, p)[0])
        p += 2
        while p + 4 <= end:
            kind, length = struct.unpack_from("!HH", data, p)
            p += 4
            if kind == 0:  # server_name: list length, then (type, length, name) entries
                q, stop = p + 2, p + length
                while q + 3 <= stop:
                    name_type, name_len = data[q], struct.unpack_from("!H", data, q + 1)[0]
                    name = data[q + 3 : q + 3 + name_len]
                    if name_type == 0 and len(name) == name_len:
                        return name.decode("ascii").lower()
                    q += 3 + name_len
                return None
            p += length
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return None


# -- HTTP CONNECT ---------------------------------------------------------------------------------

CONNECT_LINE = 512  # longest request line read: host (253), port, method and version fit
_CONNECT = re.compile(rb"CONNECT ([A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5}) HTTP/1\.[01]\r?\n")


def parse_connect(data: bytes) -> Optional[Tuple[str, int]]:
    """(host, port) of an HTTP proxy `CONNECT host:port HTTP/1.x` request line; None otherwise.

    The whole line must be there: a line cut short (by the capture or on purpose) says nothing."""
    m = _CONNECT.match(data[:CONNECT_LINE])
    if m is None:
        return None
    port = int(m.group(2))
    if not 0 < port < 65536:
        return None
    return m.group(1).decode("ascii").lower().strip("[]"), port


# -- SOCKS ----------------------------------------------------------------------------------------

SOCKS4_USER = 255  # longest SOCKS4 user id read
_HOSTNAME = re.compile(rb"[A-Za-z0-9._-]{1,253}")


def parse_socks(data: bytes) -> Optional[Tuple[str, str, int]]:
    """(version, host, port) of a SOCKS5 (RFC 1928) or SOCKS4a CONNECT request; None otherwise.

    The whole request must be there. `host` is a lower-case name or an address as text."""
    try:
        if data[0] == 5 and data[1] == 1 and data[2] == 0:
            kind = data[3]
            if kind == 1:
                host, p = socket.inet_ntop(socket.AF_INET, data[4:8]), 8
            elif kind == 4:
                host, p = canonical_ip(socket.inet_ntop(socket.AF_INET6, data[4:20])), 20
            elif kind == 3:
                name = data[5 : 5 + data[4]]
                if len(name) != data[4] or not _HOSTNAME.fullmatch(name):
                    return None
                host, p = name.decode("ascii").lower(), 5 + data[4]
            else:
                return None
            version, port = "SOCKS5", struct.unpack_from("!H", data, p)[0]
        elif data[0] == 4 and data[1] == 1:
            port = struct.unpack_from("!H", data, 2)[0]
            if data[4:7] != b"\0\0\0" or not data[7]:
                return None  # plain SOCKS4 (an address, not a name): the filter never passes it
            user_end = data.index(b"\0", 8, 8 + SOCKS4_USER + 1)
            name = data[user_end + 1 : data.index(b"\0", user_end + 1, user_end + 255)]
            if not _HOSTNAME.fullmatch(name):
                return None
            host, version = name.decode("ascii").lower(), "SOCKS4a"
        else:
            return None
    except (IndexError, ValueError, struct.error, OSError):
        return None
    return (version, host, port) if port else None


# -- packets --------------------------------------------------------------------------------------

Key = Tuple[bytes, int, bytes, int]  # (source address, port, destination address, port)


def parse_packet(data: bytes) -> Optional[Tuple[Key, int, bytes]]:
    """(flow key, TCP sequence number, payload) of an IPv4/IPv6 TCP packet (network header first)."""
    try:
        version = data[0] >> 4
        if version == 4:
            ihl = (data[0] & 0x0F) * 4
            if data[9] != 6:
                return None
            total = struct.unpack_from("!H", data, 2)[0] or len(data)  # 0 in TSO super-packets
            src, dst, tcp = data[12:16], data[16:20], ihl
        elif version == 6:
            if data[6] != 6:  # extension headers are not followed
                return None
            total = 40 + struct.unpack_from("!H", data, 4)[0]
            src, dst, tcp = data[8:24], data[24:40], 40
        else:
            return None
        sport, dport, seq = struct.unpack_from("!HHI", data, tcp)
        start = tcp + (data[tcp + 12] >> 4) * 4
        payload = data[start : min(total, len(data))]
        return (bytes(src), sport, bytes(dst), dport), seq, bytes(payload)
    except (IndexError, struct.error):
        return None


def parse_udp(data: bytes) -> Optional[Tuple[Key, bytes]]:
    """(addresses and ports, payload) of an IPv4/IPv6 UDP datagram (network header first)."""
    try:
        version = data[0] >> 4
        if version == 4:
            if data[9] != 17:
                return None
            udp = (data[0] & 0x0F) * 4
            src, dst = data[12:16], data[16:20]
        elif version == 6:
            if data[6] != 17:
                return None
            udp = 40
            src, dst = data[8:24], data[24:40]
        else:
            return None
        sport, dport, length = struct.unpack_from("!HHH", data, udp)
        if length < 8 or len(src) != len(dst) or len(src) not in (4, 16):
            return None
        # the capture may have cut the payload shorter
        return (bytes(src), sport, bytes(dst), dport), bytes(data[udp + 8 : udp + length])
    except (IndexError, struct.error):
        return None


def parse_udp_payload(data: bytes) -> Optional[bytes]:
    """The payload of an IPv4/IPv6 UDP datagram (network header first); None if it is not one."""
    parsed = parse_udp(data)
    return None if parsed is None else parsed[1]


def _address(raw: bytes) -> str:
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return canonical_ip(socket.inet_ntop(family, raw))


# -- classic BPF ----------------------------------------------------------------------------------

# opcodes (linux/filter.h)
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS, _LD_W_IND, _LD_H_IND, _LD_B_IND = 0x20, 0x28, 0x30, 0x40, 0x48, 0x50
_LDX_B_MSH, _LD_MEM, _ST = 0xB1, 0x60, 0x02
_ALU_ADD_K, _ALU_ADD_X, _ALU_SUB_X, _ALU_AND_K, _ALU_RSH_K = 0x04, 0x0C, 0x1C, 0x54, 0x74
_JEQ_K, _JSET_K, _TAX, _TXA, _RET_K = 0x15, 0x45, 0x07, 0x87, 0x06
_SKF_AD = 0xFFFFF000  # SKF_AD_OFF (-0x1000) as u32
_AD_PROTOCOL, _AD_PKTTYPE, _AD_IFINDEX = _SKF_AD + 0, _SKF_AD + 4, _SKF_AD + 8
# linux/if_packet.h: a frame for this host, or one it sends (broadcast 1, multicast 2, another host's 3)
PACKET_HOST, PACKET_OUTGOING = 0, 4


def build_filter(loopback_ifindex: int = 0, snaplen: int = SNAPLEN) -> List[Tuple[int, int, int, int]]:
    """The kernel filter, for a SOCK_DGRAM packet socket (data starts at the network header).

    Accepts (truncated to `snaplen`) TCP segments, not fragments, with a payload whose first
    byte is `{`, 0x16 or `C`, or that starts as a SOCKS5 (05 01 00, address type 1, 3 or 4) or
    SOCKS4a (04 01, port, 0.0.0.x) CONNECT request, and UDP datagrams from port 53 (DNS answers)
    or to it (queries).
    On loopback every packet is seen twice (sent, then received): the sent copy is dropped.
    """
    prog: List[tuple] = []  # (code, jump-true label, jump-false label, k)

    def op(code, k=0, jt=None, jf=None):
        prog.append((code, jt, jf, k))

    if loopback_ifindex:
        op(_LD_W_ABS, _AD_PKTTYPE)
        op(_JEQ_K, PACKET_OUTGOING, None, "proto")
        op(_LD_W_ABS, _AD_IFINDEX)
        op(_JEQ_K, loopback_ifindex, "drop", None)
    prog.append("proto")
    op(_LD_W_ABS, _AD_PROTOCOL)
    op(_JEQ_K, 0x0800, "v4", None)
    op(_JEQ_K, 0x86DD, "v6", "drop")
    prog.append("v4")
    op(_LD_H_ABS, 6)
    op(_JSET_K, 0x1FFF, "drop", None)  # not the first fragment
    op(_LD_B_ABS, 9)
    op(_JEQ_K, 17, "udp4", None)
    op(_JEQ_K, 6, None, "drop")  # TCP
    op(_LD_H_ABS, 2)
    op(_ST, 0)  # M[0] = IP total length
    op(_LDX_B_MSH, 0)  # X = IP header length
    op(_LD_B_IND, 12)  # TCP data offset byte
    op(_ALU_RSH_K, 2)
    op(_ALU_AND_K, 0x3C)  # TCP header length
    op(_ALU_ADD_X)
    op(_TAX)  # X = IP + TCP header lengths
    op(_LD_MEM, 0)
    op(_ALU_SUB_X)
    op(_JEQ_K, 0, "drop", "first")  # no payload
    prog.append("udp4")
    op(_LDX_B_MSH, 0)  # X = IP header length
    op(_LD_H_IND, 0)  # UDP source port
    op(_JEQ_K, 53, "accept", None)
    op(_LD_H_IND, 2)  # UDP destination port
    op(_JEQ_K, 53, "accept", "drop")
    prog.append("v6")
    op(_LD_B_ABS, 6)
    op(_JEQ_K, 17, None, "tcp6")  # UDP right after the fixed header
    op(_LD_H_ABS, 40)  # UDP source port
    op(_JEQ_K, 53, "accept", None)
    op(_LD_H_ABS, 42)  # UDP destination port
    op(_JEQ_K, 53, "accept", "drop")
    prog.append("tcp6")
    op(_JEQ_K, 6, None, "drop")  # TCP right after the fixed header
    op(_LD_H_ABS, 4)
    op(_ST, 0)  # M[0] = payload length (TCP header included)
    op(_LD_B_ABS, 40 + 12)
    op(_ALU_RSH_K, 2)
    op(_ALU_AND_K, 0x3C)
    op(_TAX)
    op(_LD_MEM, 0)
    op(_ALU_SUB_X)
    op(_JEQ_K, 0, "drop", None)
    op(_TXA)
    op(_ALU_ADD_K, 40)
    op(_TAX)  # X = 40 + TCP header length
    prog.append("first")
    op(_LD_B_IND, 0)  # first payload byte
    op(_JEQ_K, 0x7B, "accept", None)  # '{'
    op(_JEQ_K, 0x43, "accept", None)  # 'C': an HTTP CONNECT to a proxy
    op(_JEQ_K, 0x16, "accept", None)  # TLS handshake
    op(_JEQ_K, 0x05, "socks5", None)
    op(_JEQ_K, 0x04, "socks4", "drop")
    prog.append("socks5")
    # the whole first word: a random byte 05 is not enough (bulk data would pass one segment in
    # 256); a SOCKS5 greeting (05 01 00, three bytes) fails the load and is dropped
    op(_LD_W_IND, 0)
    op(_JEQ_K, 0x05010001, "accept", None)  # IPv4 address
    op(_JEQ_K, 0x05010003, "accept", None)  # domain name
    op(_JEQ_K, 0x05010004, "accept", "drop")  # IPv6 address
    prog.append("socks4")  # SOCKS4a only (a name follows): 04 01, a port, then address 0.0.0.x
    op(_LD_H_IND, 0)
    op(_JEQ_K, 0x0401, None, "drop")
    op(_LD_W_IND, 4)
    op(_ALU_AND_K, 0xFFFFFF00)
    op(_JEQ_K, 0, "accept", "drop")
    prog.append("accept")
    op(_RET_K, snaplen)
    prog.append("drop")
    op(_RET_K, 0)

    labels, index = {}, 0
    for item in prog:
        if isinstance(item, str):
            labels[item] = index
        else:
            index += 1
    out, index = [], 0
    for item in prog:
        if isinstance(item, str):
            continue
        code, jt, jf, k = item
        rel = lambda target: 0 if target is None else labels[target] - index - 1  # noqa: E731
        out.append((code, rel(jt), rel(jf), k))
        index += 1
    return out


SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
SOL_PACKET, PACKET_STATISTICS = 263, 6
ETH_P_ALL = 0x0003
LOOPBACK = "lo"


def _group_address(raw: bytes) -> bool:
    """A destination no single host owns: IPv4 multicast or broadcast (224/3), IPv6 multicast."""
    return raw[0] >= 224 if len(raw) == 4 else raw[0] == 0xFF


def open_packet_socket(snaplen: int = SNAPLEN) -> socket.socket:
    """A filtered AF_PACKET socket on every interface; raises OSError without CAP_NET_RAW."""
    # SOCK_DGRAM ("cooked"): the kernel strips link headers, so tun, WireGuard and PPP links
    # (no Ethernet header) look the same as Ethernet and loopback to the filter.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    try:
        try:
            lo = socket.if_nametoindex(LOOPBACK)
        except OSError:
            lo = 0
        program = build_filter(lo, snaplen)
        insns = (ctypes.c_ubyte * (8 * len(program))).from_buffer_copy(
            b"".join(struct.pack("HBBI", *ins) for ins in program)
        )
        fprog = struct.pack("HL", len(program), ctypes.addressof(insns))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        # Packets queued between socket() and the filter were not filtered: throw them away.
        sock.setblocking(False)  # stays non-blocking: the thread waits in select(), not in recv()
        try:
            while True:
                sock.recv(1)
        except BlockingIOError:
            pass
        return sock
    except BaseException:
        sock.close()
        raise


# -- flows ----------------------------------------------------------------------------------------


@dataclass
class Hit:
    """A connection the wire says is mining (or, evidence `site`, browsing a pool's web site):
    `client` is the miner's end, `server` the pool's (or the proxy's, the relay's)."""

    client: Endpoint
    server: Endpoint
    evidence: str  # stratum | sni | connect | site
    detail: str  # "cryptonote login", "pool.example.com", "CONNECT pool.example.com:443"
    pool: str = ""  # the listed domain (or address) an SNI, CONNECT or SOCKS request matched
    seen: float = 0.0  # monotonic time of the first sighting


@dataclass
class _Flow:
    next_seq: int
    buf: bytearray = field(default_factory=bytearray)
    done: bool = False
    tunnel_port: int = 0  # the port a CONNECT or SOCKS request named: what the tunnel goes to


SITE_PORT = 443  # a pool's web site named for this port is browsing (`site`); for any other, mining
SITE = "site"


class FlowTracker:
    """Pure flow logic: feed packets, get hits. Bounded: `max_flows` flows, `max_hits` hits and
    `max_site_hits` web-site sightings (apart, so that browsing never evicts a miner's hit).

    `is_endpoint(name)`: the name is a Stratum endpoint (by default every listed name is);
    `match_address(ip, port)`: (indicator, where) when a list covers an address a CONNECT or
    SOCKS request names (pools.PoolList.match_address)."""

    def __init__(
        self,
        match_domain: Callable[[str], Optional[str]],
        max_flows: int = 4096,
        max_hits: int = 1024,
        flow_bytes: int = FLOW_BYTES,
        clock: Callable[[], float] = time.monotonic,
        is_endpoint: Callable[[str], bool] = lambda name: True,
        match_address: Callable[[str, int], Optional[Tuple[str, str]]] = lambda ip, port: None,
        max_site_hits: int = 256,
    ):
        self.match_domain, self.is_endpoint, self.match_address = match_domain, is_endpoint, match_address
        self.max_flows, self.max_hits, self.flow_bytes = max_flows, max_hits, flow_bytes
        self.max_site_hits = max_site_hits
        self._clock = clock
        self._flows: "OrderedDict[Key, _Flow]" = OrderedDict()
        self.hits: "OrderedDict[Tuple[Endpoint, Endpoint], Hit]" = OrderedDict()
        self.site_hits: "OrderedDict[Tuple[Endpoint, Endpoint], Hit]" = OrderedDict()
        self.stratum_flows: Counter = Counter({d: 0 for d in DIALECTS})
        self.sni_matches = 0
        self.connect_matches = 0
        self.generation = 0  # bumped when hits change

    def __len__(self) -> int:
        return len(self._flows)

    def feed(self, packet: bytes) -> None:
        parsed = parse_packet(packet)
        if parsed is None:
            return
        key, seq, payload = parsed
        if not payload:
            return
        flow = self._flows.get(key)
        if flow is None:
            if len(self._flows) >= self.max_flows:
                self._flows.popitem(last=False)  # the least recently active flow goes
            flow = self._flows[key] = _Flow(next_seq=seq)
        else:
            self._flows.move_to_end(key)
        if flow.done:
            return
        if seq != flow.next_seq:
            if (seq - flow.next_seq) & 0xFFFFFFFF >= 0x80000000:
                return  # a retransmission or a copy seen on another interface
            # The filter dropped what came between: this segment starts a new message.
            flow.buf = bytearray()
        flow.next_seq = (seq + len(payload)) & 0xFFFFFFFF
        flow.buf += payload[: self.flow_bytes - len(flow.buf)]
        self._examine(key, flow)

    def _pool(self, host: str, port: int) -> Tuple[Optional[str], str]:
        """(listed domain or address, evidence) for a host named for `port`: `site` for a pool's
        web site on port 443, else the strong kind the caller names (`sni`, `connect`)."""
        pool = self.match_domain(host)
        if pool is not None:
            return pool, (SITE if port == SITE_PORT and not self.is_endpoint(host) else "")
        literal = ":" in host or host.replace(".", "").isdigit()  # an address, not a name
        listed = self.match_address(host, port) if literal else None
        return (listed[0], "") if listed else (None, "")

    def _examine(self, key: Key, flow: _Flow) -> None:
        data = bytes(flow.buf)
        if data[0] == 0x16:
            flow.done = True  # later segments of the hello never pass the filter: decide now
            name = parse_sni(data)
            pool, weak = self._pool(name, flow.tunnel_port or key[3]) if name else (None, "")
            if pool:
                self.sni_matches += self._record(key, "client", weak or "sni", host_text(name, 253), pool)
        elif data[0] in (0x43, 0x05, 0x04):  # 'C', SOCKS5, SOCKS4
            # The filter passes only the segment that starts the request: decide on it. A request
            # naming no pool, or a pool's web site, leaves the flow open: what goes through the
            # tunnel (a ClientHello, Stratum) is read next.
            if data[0] == 0x43:
                target = parse_connect(data)
                verb = "CONNECT"
            else:
                socks = parse_socks(data)
                target, verb = (socks[1:], f"{socks[0]} CONNECT") if socks else (None, "")
            if target is None:
                flow.done = True
            else:
                host, port = target
                flow.tunnel_port = port
                pool, weak = self._pool(host, port)
                if pool:
                    flow.done = not weak
                    shown = host_text(f"{verb} {host}:{port}", 280)
                    self.connect_matches += self._record(key, "client", weak or "connect", shown, pool)
                flow.buf = bytearray()
        else:
            found = recognize_stratum(data)
            if found:
                flow.done = True
                if self._record(key, found.role, "stratum", f"{found.dialect} {found.what}"):
                    self.stratum_flows[found.dialect] += 1
            elif b"\n" in data or len(data) >= self.flow_bytes:
                flow.done = True  # a whole first line, or enough bytes, and not Stratum
        if flow.done:
            flow.buf = bytearray()

    def _record(self, key: Key, role: str, evidence: str, detail: str, pool: str = "") -> int:
        """Remember the connection once; 1 if it is new (for the counters)."""
        src = Endpoint(_address(key[0]), key[1])
        dst = Endpoint(_address(key[2]), key[3])
        client, server = (src, dst) if role == "client" else (dst, src)
        conn = (client, server)
        if conn in self.hits:
            return 0
        table, limit = (self.site_hits, self.max_site_hits) if evidence == SITE else (self.hits, self.max_hits)
        if evidence == SITE and conn in table:
            return 0
        self.site_hits.pop(conn, None)  # Stratum or an endpoint through a tunnel to a web site: strong
        if len(table) >= limit:
            table.popitem(last=False)
        table[conn] = Hit(client, server, evidence, detail, pool, self._clock())
        self.generation += 1
        return 1

    def all_hits(self) -> Dict[Tuple[Endpoint, Endpoint], Hit]:
        found = dict(self.site_hits)
        found.update(self.hits)
        return found

    def forget(self, conns) -> None:
        for conn in conns:
            if self.hits.pop(conn, None) is not None or self.site_hits.pop(conn, None) is not None:
                self.generation += 1


class Sniffer:
    """The packet socket and its thread around a FlowTracker and a DnsLearner; `up` is False when
    unavailable."""

    def __init__(
        self,
        match_domain: Callable[[str], Optional[str]],
        max_pps: int = 2000,
        dns: Optional[DnsLearner] = None,
        queries: Optional[QueryTracker] = None,
        owners: Optional[UdpOwners] = None,
        **tracker_args,
    ):
        self.tracker = FlowTracker(match_domain, **tracker_args)
        self.dns = dns if dns is not None else DnsLearner(match_domain)
        self.queries = queries if queries is not None else QueryTracker(match_domain)
        self.owners = owners if owners is not None else UdpOwners()
        self.max_pps = max_pps
        self.up = False
        self.error = ""
        self.packets_total = 0
        self.dropped_total = 0
        self._sock: Optional[socket.socket] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._wake: Optional[Tuple[int, int]] = None  # a pipe that stop() writes to

    def start(self) -> bool:
        try:
            self._sock = open_packet_socket()
        except (OSError, AttributeError) as exc:  # AttributeError: no AF_PACKET on this OS
            self.error = getattr(exc, "strerror", None) or str(exc)
            return False
        self.up = True
        self._wake = os.pipe()
        self._thread = threading.Thread(target=self._run, name="minerwatch-sniffer", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._wake is not None:
            os.write(self._wake[1], b"x")  # wakes the thread out of select()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close()
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        self.up = False

    def _run(self) -> None:
        buf = bytearray(SNAPLEN)
        window, handled = time.monotonic(), 0
        # poll, not select: select() fails on descriptors above 1023, which a busy exporter
        # (or a test holding many sockets) reaches
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        poller.register(self._wake[0], select.POLLIN)
        while not self._stop.is_set():
            try:
                # No timeout: between packets the thread sleeps, costing no CPU between scrapes.
                poller.poll()
                # the address says who the frame was for (pkttype) and where it was seen
                n, (interface, _, pkttype, *_) = self._sock.recvfrom_into(buf)
            except BlockingIOError:  # woken by stop(), or the packet went elsewhere
                continue
            except OSError as exc:
                if not self._stop.is_set():
                    log.warning("packet socket failed, sniffer stopped: %s", exc)
                    self.up, self.error = False, str(exc)
                return
            self.feed(bytes(memoryview(buf)[:n]), pkttype, interface)
            if self.queries.pending:
                self.attribute_queries()
            handled += 1
            if handled >= self.max_pps:  # over budget: let the kernel drop until the next second
                rest = 1.0 - (time.monotonic() - window)
                if rest > 0:
                    self._stop.wait(rest)
                window, handled = time.monotonic(), 0
            elif time.monotonic() - window >= 1.0:
                window, handled = time.monotonic(), 0

    def feed(self, packet: bytes, pkttype: int = PACKET_HOST, interface: str = LOOPBACK) -> None:
        """One packet the kernel filter passed: DNS (UDP) or the start of a TCP flow. `pkttype` and
        `interface` are what the packet socket says: who the frame was for, where it was seen."""
        with self._lock:
            self.packets_total += 1
            try:
                udp = parse_udp(packet)
                if udp is None:
                    self.tracker.feed(packet)
                    return
                (src, sport, dst, dport), payload = udp
                # a query and its answer are matched on raw (address, port) pairs: no address
                # text is made for an answer (ipaddress parsing: about 13 us an address)
                if sport == 53:
                    # One the host sends is its own DNS server answering others: not an answer to it.
                    if pkttype != PACKET_OUTGOING:
                        unicast = pkttype == PACKET_HOST and not _group_address(dst)
                        self.dns.feed(payload, (dst, dport), (src, sport), unicast)
                elif dport == 53:
                    query = self.queries.feed(Endpoint(_address(src), sport), Endpoint(_address(dst), dport), payload)
                    # sent by this host: out through an interface, or on loopback (whose sent copy
                    # the filter drops); not a query another host sent to a DNS server here
                    if query is not None and (pkttype == PACKET_OUTGOING
                                              or (pkttype == PACKET_HOST and interface == LOOPBACK)):
                        self.dns.sent((src, sport), (dst, dport), query)
            except Exception:  # a strange packet must not end the thread
                log.debug("packet not understood", exc_info=True)

    def attribute_queries(self) -> None:
        """Find the processes behind queued pool queries, now, while their sockets may still be open.

        The /proc reads run outside the lock: a scrape never waits for them."""
        with self._lock:
            batch = self.queries.take()
        found = []
        for item, allowed in batch:
            try:
                owner = self.owners.find(item.client) if allowed else Owner("skipped")
            except Exception:  # a strange /proc must not end the thread
                log.debug("query owner not found", exc_info=True)
                owner = Owner("unknown")
            found.append((item, owner))
        with self._lock:
            for item, owner in found:
                self.queries.record(item, owner)

    def _read_drops(self) -> None:
        # The kernel's counters reset on every read: keep the sum.
        if self._sock is None or not self.up:
            return
        try:
            _, drops = struct.unpack("II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            self.dropped_total += drops
        except OSError:
            pass

    def snapshot(self) -> "SnifferState":
        with self._lock:
            self._read_drops()
            t = self.tracker
            return SnifferState(
                up=self.up,
                packets_total=self.packets_total,
                dropped_total=self.dropped_total,
                flows=len(t),
                stratum_flows=dict(t.stratum_flows),
                sni_matches=t.sni_matches,
                connect_matches=t.connect_matches,
                hits=t.all_hits(),
                generation=t.generation,
                learned=self.dns.live(),
                dns_responses=dict(self.dns.responses),
                lookups=self.queries.live(self.owners.alive),
                dns_queries=dict(self.queries.queries),
                query_owners=dict(self.queries.owners),
            )

    def forget(self, conns) -> None:
        with self._lock:
            self.tracker.forget(conns)


@dataclass
class SnifferState:
    up: bool = False
    packets_total: int = 0
    dropped_total: int = 0
    flows: int = 0
    stratum_flows: Dict[str, int] = field(default_factory=lambda: {d: 0 for d in DIALECTS})
    sni_matches: int = 0
    hits: Dict[Tuple[Endpoint, Endpoint], Hit] = field(default_factory=dict)
    generation: int = 0
    learned: Dict[str, Learned] = field(default_factory=dict)  # pool addresses from DNS answers
    dns_responses: Dict[str, int] = field(default_factory=lambda: {r: 0 for r in RESPONSE_RESULTS})
    connect_matches: int = 0
    lookups: List[Lookup] = field(default_factory=list)  # processes that asked DNS for pool names
    dns_queries: Dict[str, int] = field(default_factory=lambda: {r: 0 for r in QUERY_RESULTS})
    query_owners: Dict[str, int] = field(default_factory=lambda: {r: 0 for r in OWNER_RESULTS})
