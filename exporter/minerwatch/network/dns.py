"""DNS messages on the wire: a defensive parser of answers and queries, and the learner that turns
answers for listed pool names into pool addresses for a while.

A miner's owner can hide its settings but the host still asks DNS for the pool; the sniffer
(sniffer.py) hands each UDP answer from port 53 here. Messages are parsed defensively:
compression pointers may only point backwards (no loops), names stop at 255 bytes, record counts
are capped, and a truncated message keeps what was whole.

Anyone who can put a datagram on the wire can write a DNS answer, so an answer is learned only
when it answers a query this host sent and still awaits (dns_pending.py: same client address and
port, same server, same id, same question); the others are counted as `unsolicited` or
`mismatched` and never learned. Even so a learned address is weak evidence (`dns_answer`): the
host's own user can ask a DNS server of their own and get any answer back. Learned addresses
live in a fixed-size table, each for its record's TTL (floored and capped); sinkhole and shared
CDN answers are never learned. `minerwatch resolve-pools` (resolve.py) parses its answers here
too. Queries the host sends (UDP to port 53) are read with the same name reader (dns_queries.py).
"""

from __future__ import annotations

import socket
import struct
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, Hashable, List, Optional, Tuple

from minerwatch.network.dns_pending import ANSWERED, UNSOLICITED, PendingQueries
from minerwatch.network.pools import canonical_ip, usable_address
from minerwatch.text import host_text


# -- messages ------------------------------------------------------------------------------------------

DNS_A, DNS_CNAME, DNS_AAAA = 1, 5, 28
MAX_DNS_RECORDS = 64  # answer records read from one message, whatever its header claims
MAX_NAME_BYTES = 255  # RFC 1035 2.3.4
_LDH = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")


class DnsError(ValueError):
    """A message that is not a well-formed DNS message."""


@dataclass(frozen=True)
class DnsRecord:
    name: str  # owner name, lower case, presentation form
    kind: int  # DNS_A, DNS_AAAA or DNS_CNAME
    ttl: int  # seconds
    value: str  # the canonical address, or the CNAME's target name


@dataclass(frozen=True)
class DnsResponse:
    ident: int
    question: str
    records: Tuple[DnsRecord, ...]  # the A, AAAA and CNAME records of the answer section
    qtype: int = DNS_A  # the type asked for


@dataclass(frozen=True)
class DnsQuery:
    ident: int
    name: str  # lower case, presentation form
    qtype: int


def _label(raw: bytes) -> str:
    """One label as text: letters, digits, `-` and `_` as they are, any other byte as \\DDD.

    So a label holding a dot (`evil.pool` as one label) can never pass for two labels, and
    control bytes never reach a log line or a label value."""
    raw = raw.lower()
    if all(b in _LDH for b in raw):
        return raw.decode("ascii")
    return "".join(chr(b) if b in _LDH else f"\\{b:03d}" for b in raw)


def read_name(data: bytes, offset: int) -> Tuple[str, int]:
    """(name, offset after it) of a possibly compressed name; raises DnsError or IndexError.

    Every compression pointer must point before the previous one's target (the start of the
    name at first): targets strictly decrease, so a hostile message cannot loop."""
    labels: List[str] = []
    size, pos, floor, end = 0, offset, offset, -1
    while True:
        length = data[pos]
        if length & 0xC0 == 0xC0:
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= floor:
                raise DnsError("compression pointer not pointing backwards")
            if end < 0:
                end = pos + 2
            pos = floor = target
            continue
        if length & 0xC0:
            raise DnsError("unknown label type")
        if length == 0:
            return ".".join(labels), (pos + 1 if end < 0 else end)
        size += length + 1
        if size > MAX_NAME_BYTES:
            raise DnsError("name longer than 255 bytes")
        raw = data[pos + 1 : pos + 1 + length]
        if len(raw) != length:
            raise IndexError("label cut short")
        labels.append(_label(raw))
        pos += 1 + length


def parse_dns_response(data: bytes) -> Optional[DnsResponse]:
    """The question and address/CNAME answers of a successful DNS response; None otherwise.

    Never raises on hostile bytes. A message cut short (by the capture length or on purpose)
    keeps the records read whole before the cut."""
    try:
        ident, flags, questions, answers = struct.unpack_from("!HHHH", data, 0)
        # a response (QR), standard query (opcode 0), NOERROR, exactly one question
        if not flags & 0x8000 or flags & 0x7800 or flags & 0x000F or questions != 1:
            return None
        question, pos = read_name(data, 12)
        qtype = struct.unpack_from("!H", data, pos)[0]
        pos += 4  # qtype, qclass
        if pos > len(data):
            return None
    except (IndexError, struct.error, DnsError):
        return None
    records: List[DnsRecord] = []
    for _ in range(min(answers, MAX_DNS_RECORDS)):
        try:
            name, pos = read_name(data, pos)
            kind, klass, ttl, length = struct.unpack_from("!HHIH", data, pos)
            pos += 10
            rdata = data[pos : pos + length]
            if len(rdata) != length:
                break
            ttl = ttl if ttl < 0x80000000 else 0  # RFC 2181 8: a "negative" TTL means zero
            if klass == 1 and kind == DNS_A and length == 4:
                records.append(DnsRecord(name, kind, ttl, socket.inet_ntop(socket.AF_INET, rdata)))
            elif klass == 1 and kind == DNS_AAAA and length == 16:
                records.append(DnsRecord(name, kind, ttl, canonical_ip(socket.inet_ntop(socket.AF_INET6, rdata))))
            elif klass == 1 and kind == DNS_CNAME:
                records.append(DnsRecord(name, kind, ttl, read_name(data, pos)[0]))
            pos += length
        except (IndexError, struct.error, DnsError):
            break
    return DnsResponse(ident, question, tuple(records), qtype)


def parse_dns_query(data: bytes) -> Optional[DnsQuery]:
    """The id, name and type of a standard DNS query; None for anything else (never raises).

    Only what a stub resolver sends counts: a query (no QR bit), opcode 0, exactly one question,
    no answers, its type and class present."""
    try:
        ident, flags, questions, answers = struct.unpack_from("!HHHH", data, 0)
        if flags & 0x8000 or flags & 0x7800 or questions != 1 or answers:
            return None
        name, pos = read_name(data, 12)
        if pos + 4 > len(data) or not name:
            return None
        qtype = struct.unpack_from("!H", data, pos)[0]
    except (IndexError, struct.error, DnsError):
        return None
    return DnsQuery(ident, name, qtype)


def answer_chain(response: DnsResponse) -> Tuple[List[str], List[Tuple[str, int]]]:
    """(names from the question along its CNAME chain, [(address, ttl)] answered for them).

    Only records on the chain count: an address for some other name in the same message is
    not an answer to the question (a cache-poisoning classic)."""
    chain = [response.question]
    for _ in range(len(response.records)):
        target = next((r.value for r in response.records if r.kind == DNS_CNAME and r.name == chain[-1]), None)
        if target is None or target in chain:
            break
        chain.append(target)
    names = set(chain)
    addresses = [(r.value, r.ttl) for r in response.records if r.kind != DNS_CNAME and r.name in names]
    return chain, addresses


@dataclass(frozen=True)
class Learned:
    """A pool address taken from a DNS answer the host received to a query it sent."""

    address: str
    name: str  # the name the host asked for
    pool: str  # the listed domain it (or a CNAME on its chain) falls under
    expires: float  # monotonic


# dns_responses results: answers learned from or read (pool, other), refused (unsolicited: not an
# answer to a query this host awaits, or not sent to this host alone; mismatched: an awaited id
# from the right server with another question), and malformed
RESPONSE_RESULTS = ("pool", "other", "malformed", "unsolicited", "mismatched")


class DnsLearner:
    """Pure logic: feed the host's queries and the answers it receives, keep the answered addresses
    of pool names for a while.

    Only an answer to a query the host sent and still awaits is read (`pending`). Bounded: at most
    `max_entries` addresses (the least recently answered goes first), each kept for its TTL floored
    at `min_ttl` (a scrape or a reconnect comes later than a short TTL) and capped at `max_ttl`."""

    def __init__(
        self,
        match_domain: Callable[[str], Optional[str]],
        max_entries: int = 4096,
        min_ttl: float = 300.0,
        # 10 minutes, not the hour it was: a learned address is weak evidence that anyone able to
        # answer one of the host's queries (the host's own user, through a DNS server of their own)
        # can plant, and pools move; a connection made while it was learned keeps it for its life
        # (monitor.py), and a miner that reconnects looks its pool up again, which renews it.
        max_ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        pending: Optional[PendingQueries] = None,
    ):
        self.match_domain = match_domain
        self.max_entries, self.min_ttl, self.max_ttl = max_entries, min_ttl, max_ttl
        self._clock = clock
        self.pending = pending if pending is not None else PendingQueries(clock=clock)
        self._table: "OrderedDict[str, Learned]" = OrderedDict()
        self.responses: Counter = Counter({r: 0 for r in RESPONSE_RESULTS})
        self.evicted_total = 0

    def __len__(self) -> int:
        return len(self._table)

    def sent(self, client: Hashable, server: Hashable, query: DnsQuery) -> None:
        """A query the host sent from `client` to `server` (endpoints as dns_pending.py takes
        them): its answer may now be learned."""
        self.pending.sent(client, server, query)

    def feed(self, payload: bytes, client: Hashable, server: Hashable, unicast: bool = True) -> None:
        """One DNS message (a UDP payload from port 53) from `server` to `client`; `unicast`: sent
        to this host alone (not a broadcast, multicast or another host's frame)."""
        if not unicast:
            self.responses[UNSOLICITED] += 1
            return
        response = parse_dns_response(payload)
        if response is None:
            self.responses["malformed"] += 1
            return
        verdict = self.pending.answered(client, server, response)
        if verdict != ANSWERED:
            self.responses[verdict] += 1
            return
        chain, addresses = answer_chain(response)
        pool = next((p for p in map(self.match_domain, chain) if p), None)
        if pool is None:
            self.responses["other"] += 1
            return
        self.responses["pool"] += 1
        now = self._clock()
        for text, ttl in addresses:
            address = usable_address(text)
            if address is None:  # a sinkhole (the DNS filter blocked it) or a shared CDN address
                continue
            expires = now + min(max(float(ttl), self.min_ttl), self.max_ttl)
            self._table.pop(address, None)
            self._table[address] = Learned(address, host_text(response.question, 253), pool, expires)
            while len(self._table) > self.max_entries:
                self._table.popitem(last=False)
                self.evicted_total += 1

    def live(self) -> Dict[str, Learned]:
        """The addresses not yet expired (expired ones are dropped here)."""
        now = self._clock()
        for address in [a for a, entry in self._table.items() if entry.expires <= now]:
            del self._table[address]
        return dict(self._table)
