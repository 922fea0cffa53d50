"""Idle connections held against a server on 127.0.0.0/8, as a user who wants the exporter's
threads would open them, and what they cost the server process (threads, RSS).

Each connection is idle in one of these ways (KINDS), taking turns:
- `silent`: connected, nothing sent;
- `half`: a request line and one header, never the empty line that ends the head;
- `keepalive`: one whole request (`GET /`), its answer left unread, the connection kept;
- `tls`: the first bytes of a TLS ClientHello, never the rest.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, List, Tuple

from support.loopback import raise_descriptor_limit

KINDS = {
    "silent": b"",
    "half": b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    "keepalive": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    # A handshake record that announces 512 bytes, and a ClientHello header with 9 of them.
    "tls": bytes.fromhex("1603010200" "010001fc" "0303") + b"\0" * 3,
}
PLAIN_KINDS = ("silent", "half", "keepalive")


class IdleClients:
    """`count` connections to `address`, the `kinds` taking turns; close() ends them all."""

    def __init__(self, address: Tuple[str, int], count: int, kinds: Iterable[str] = PLAIN_KINDS):
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise ValueError("idle clients connect to loopback addresses only")
        raise_descriptor_limit(count + 256)
        kinds = list(kinds)
        self.socks: List[socket.socket] = []
        self.cut_off = 0  # connections the server had closed before their bytes were sent
        try:
            for i in range(count):
                # The kernel completes the handshake into the listen backlog whether or not the
                # server accepts: connect() returns as soon as it is queued.
                sock = socket.create_connection(address, timeout=10)
                self.socks.append(sock)
                data = KINDS[kinds[i % len(kinds)]]
                if data:
                    try:
                        sock.sendall(data)
                    except OSError:
                        self.cut_off += 1
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks = []


def status_field(pid: int, key: str) -> int:
    """A number from /proc/PID/status: `Threads`, or `VmRSS` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                fields = line.split()
                return int(fields[1]) * (1024 if fields[2:] == ["kB"] else 1)
    raise KeyError(f"no {key} in /proc/{pid}/status")
