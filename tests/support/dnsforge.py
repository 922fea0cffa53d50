"""DNS queries and forged answers for tests, written by hand (not with minerwatch's parser).

    query(name, ident)                   a stub resolver's query for A records
    forged_answer(ident, name, address)  "name is address", as a DNS server would answer
    send_from_53(source_ip, destination, payload)   one datagram from source_ip:53 (needs root)

Run as a script it sends one forged answer, for a sender inside a test network namespace:

    python dnsforge.py SOURCE_IP DEST_IP DEST_PORT NAME ADDRESS [INTERFACE]

With INTERFACE the datagram is a broadcast (to 255.255.255.255 if DEST_IP says so) sent out of
that interface. Only loopback (127.0.0.0/8) and test-namespace (198.18.0.0/15) addresses are
accepted, as source, destination and answer.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from pathlib import Path
from typing import Optional, Tuple

try:
    from support.dnsserver import encode_name, record, response
except ImportError:  # run as a script, inside a test namespace
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dnsserver import encode_name, record, response

ALLOWED = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("198.18.0.0/15"))


def query(name: str, ident: int, qtype: int = 1) -> bytes:
    """A recursion-desired standard query with one question, as a stub resolver sends it."""
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, 1)


def forged_answer(ident: int, name: str, address: str, ttl: int = 300) -> bytes:
    return response(ident, name, 1, [record(name, "A", address, ttl)])


def _allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip == ipaddress.ip_address("255.255.255.255") or any(ip in net for net in ALLOWED)


def send_from_53(source_ip: str, destination: Tuple[str, int], payload: bytes,
                 broadcast_interface: Optional[str] = None) -> None:
    """One UDP datagram from source_ip:53 to destination (binding port 53 needs root)."""
    if not (_allowed(source_ip) and _allowed(destination[0])):
        raise ValueError(f"dnsforge sends only within loopback and test namespaces: {source_ip} -> {destination}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if broadcast_interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, broadcast_interface.encode())
        sock.bind((source_ip, 53))
        sock.sendto(payload, destination)


def main(argv) -> None:
    source, dest, port, name, address = argv[:5]
    if not _allowed(address):
        raise SystemExit(f"dnsforge names only loopback and test-namespace addresses: {address}")
    interface = argv[5] if len(argv) > 5 else None
    send_from_53(source, (dest, int(port)), forged_answer(0x5EED, name, address), interface)


if __name__ == "__main__":
    main(sys.argv[1:])
