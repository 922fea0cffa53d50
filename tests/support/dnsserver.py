"""A small DNS responder for tests: answers from a dict, and logs every query it gets.

Hand-written on purpose (not minerwatch's parser): the tests check minerwatch against bytes it
did not make. Names are written without compression. It serves UDP on the address given
(127.0.0.1, or a test namespace's 198.18.x.y on port 53) as a thread of the test process,
shut down by the test:

    zone = {"pool.example.com": [("A", "198.18.1.1", 60)], "alias.example.net": [("CNAME", "pool.example.com", 60)]}
    server = DnsServer(("127.0.0.1", 0), zone).start()
    ...; server.queries  # [(client address, name, "A"), ...]
    server.close()

A name not in the zone is NXDOMAIN; a known name without a record of the asked type is an
empty NOERROR answer. `truncate=True` answers UDP with the TC bit (and a TCP listener on the
same port gives the whole answer).
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from typing import Dict, List, Optional, Tuple

TYPES = {"A": 1, "CNAME": 5, "AAAA": 28}
NAMES = {v: k for k, v in TYPES.items()}
Record = Tuple[str, str, int]  # (type, value, ttl)


def encode_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".") if p) + b"\0"


def parse_question(data: bytes) -> Tuple[int, int, str, int]:
    """(id, flags, name, type) of a query; raises ValueError on anything odd."""
    if len(data) < 12:
        raise ValueError("short")
    ident, flags, qd = struct.unpack("!HHH", data[:6])
    if qd != 1:
        raise ValueError("one question only")
    pos, labels = 12, []
    while data[pos]:
        length = data[pos]
        if length > 63:
            raise ValueError("compressed query")
        labels.append(data[pos + 1 : pos + 1 + length].decode("ascii").lower())
        pos += 1 + length
    qtype = struct.unpack("!H", data[pos + 1 : pos + 3])[0]
    return ident, flags, ".".join(labels), qtype


def record(name: str, kind: str, value: str, ttl: int) -> bytes:
    if kind == "A":
        rdata = socket.inet_pton(socket.AF_INET, value)
    elif kind == "AAAA":
        rdata = socket.inet_pton(socket.AF_INET6, value)
    else:
        rdata = encode_name(value)
    return encode_name(name) + struct.pack("!HHIH", TYPES[kind], 1, ttl, len(rdata)) + rdata


def response(ident: int, name: str, qtype: int, answers: List[bytes], rcode: int = 0, truncated: bool = False,
             rd: bool = True) -> bytes:
    flags = 0x8000 | 0x0400 | 0x0080 | (0x0100 if rd else 0) | (0x0200 if truncated else 0) | rcode
    header = struct.pack("!HHHHHH", ident, flags, 1, len(answers), 0, 0)
    return header + encode_name(name) + struct.pack("!HH", qtype, 1) + b"".join(answers)


def answer(zone: Dict[str, List[Record]], ident: int, name: str, qtype: int, truncated: bool = False) -> bytes:
    """The response to one question: the CNAME chain from `name`, then its records of `qtype`."""
    if name not in zone:
        return response(ident, name, qtype, [], rcode=3)
    if truncated:
        return response(ident, name, qtype, [], truncated=True)
    out, current = [], name
    for _ in range(8):
        cnames = [r for r in zone.get(current, []) if r[0] == "CNAME"]
        if not cnames:
            break
        _, target, ttl = cnames[0]
        out.append(record(current, "CNAME", target, ttl))
        current = target
    for kind, value, ttl in zone.get(current, []):
        if TYPES[kind] == qtype:
            out.append(record(current, kind, value, ttl))
    return response(ident, name, qtype, out)


class _UdpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        server: DnsServer = self.server.owner  # type: ignore[attr-defined]
        try:
            ident, _, name, qtype = parse_question(data)
        except (ValueError, IndexError, UnicodeDecodeError, struct.error):
            return
        server.log(self.client_address[0], name, qtype)
        sock.sendto(answer(server.zone, ident, name, qtype, server.truncate), self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        server: DnsServer = self.server.owner  # type: ignore[attr-defined]
        self.request.settimeout(5)
        try:
            size = struct.unpack("!H", self.request.recv(2))[0]
            data = b""
            while len(data) < size:
                data += self.request.recv(size - len(data))
            ident, _, name, qtype = parse_question(data)
        except (ValueError, IndexError, UnicodeDecodeError, struct.error, OSError):
            return
        server.log(self.client_address[0], name, qtype, "tcp")
        reply = answer(server.zone, ident, name, qtype)
        self.request.sendall(struct.pack("!H", len(reply)) + reply)


class _Udp(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Tcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class DnsServer:
    """UDP (and, with truncate, TCP) on one address; `queries` lists what it was asked."""

    def __init__(self, address: Tuple[str, int], zone: Dict[str, List[Record]], truncate: bool = False):
        self.zone, self.truncate = zone, truncate
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.udp = type("Udp", (_Udp,), {"address_family": family})(address, _UdpHandler)
        self.udp.owner = self  # type: ignore[attr-defined]
        self.address = self.udp.server_address[:2]
        self.tcp: Optional[_Tcp] = None
        if truncate:
            self.tcp = type("Tcp", (_Tcp,), {"address_family": family})(self.address, _TcpHandler)
            self.tcp.owner = self  # type: ignore[attr-defined]
        self.queries: List[Tuple[str, str, str]] = []  # (client address, name, type[/tcp])
        self._lock = threading.Lock()
        self._started = False

    @property
    def nameserver(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def log(self, client: str, name: str, qtype: int, transport: str = "") -> None:
        kind = NAMES.get(qtype, str(qtype)) + (f"/{transport}" if transport else "")
        with self._lock:
            self.queries.append((client, name, kind))

    def start(self) -> "DnsServer":
        self._started = True
        for server in (self.udp, self.tcp):
            if server is not None:
                threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        for server in (self.udp, self.tcp):
            if server is not None:
                if self._started:
                    server.shutdown()
                server.server_close()
