"""The process behind a local UDP socket, found while the socket still exists.

A DNS query on the wire names its sender only by address and port. {procfs}/net/udp and udp6
(the exporter's own network namespace, the one the sniffer listens in) give that socket's inode
and uid; the owner is found by reading /proc/PID/fd links. A stub resolver closes its socket as
soon as the answer is in, so the search is a race: processes that owned a query socket before go
first (a miner whose pool is blocked asks again and again), then the newest; the search stops at
the first match or after `budget` seconds. A process that also holds a UDP socket on port 53 is
a DNS server or forwarder (systemd-resolved, dnsmasq): its queries are made for others, which
`Owner.resolver` says.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, List, Optional, Set, Tuple

from minerwatch.network.pools import canonical_ip
from minerwatch.network.sockets import Endpoint

_WILDCARDS = ("0.0.0.0", "::")
DNS_PORT = 53


@dataclass(frozen=True)
class Owner:
    result: str  # found | gone (no such socket any more) | unknown (socket there, owner not found in time)
    pid: Optional[int] = None
    uid: Optional[int] = None
    resolver: bool = False  # the owner also serves DNS: it asks for others


def _address(hex_address: str) -> str:
    """An address of /proc/net/udp[6]: 32-bit words in host byte order, as hex."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return canonical_ip(socket.inet_ntop(family, raw))


def parse_udp_table(text: str) -> List[Tuple[Endpoint, int, int]]:
    """(local endpoint, uid, inode) of each socket of a /proc/net/udp or udp6 table."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            address, _, port = fields[1].partition(":")
            out.append((Endpoint(_address(address), int(port, 16)), int(fields[7]), int(fields[9])))
        except ValueError:
            continue
    return out


class UdpOwners:
    """find(local endpoint) -> Owner; bounded in time per call, remembers recent owners."""

    def __init__(self, procfs: str = "/proc", budget: float = 0.1, remember: int = 16,
                 clock: Callable[[], float] = time.monotonic):
        self.procfs = procfs
        self.budget = budget
        self._clock = clock
        self._recent: "deque[int]" = deque(maxlen=remember)  # pids that owned query sockets
        self.fd_dirs_total = 0

    def _tables(self) -> List[Tuple[Endpoint, int, int]]:
        rows = []
        for name in ("udp", "udp6"):
            try:
                with open(f"{self.procfs}/net/{name}") as f:
                    rows += parse_udp_table(f.read())
            except OSError:
                continue
        return rows

    def find(self, local: Endpoint) -> Owner:
        rows = self._tables()
        match = next((r for r in rows if r[0] == local), None) or next(
            (r for r in rows if r[0].port == local.port and r[0].ip in _WILDCARDS), None)
        if match is None or not match[2]:
            return Owner("gone")
        _, uid, inode = match
        servers = {i for e, _, i in rows if e.port == DNS_PORT and i}
        pid, resolver = self._search(inode, servers)
        if pid is None:
            return Owner("unknown", uid=uid)
        if pid in self._recent:
            self._recent.remove(pid)
        self._recent.appendleft(pid)
        return Owner("found", pid, uid, resolver)

    def _candidates(self) -> List[int]:
        try:
            pids = sorted((int(d) for d in os.listdir(self.procfs) if d.isdigit()), reverse=True)
        except OSError:
            return []
        recent = list(self._recent)
        return recent + [p for p in pids if p not in recent]

    def _search(self, inode: int, servers: Set[int]) -> Tuple[Optional[int], bool]:
        wanted = f"socket:[{inode}]"
        candidates = self._candidates()
        deadline = self._clock() + self.budget  # for the fd reads: listing /proc is one call
        for pid in candidates:
            if self._clock() > deadline:
                break
            base = f"{self.procfs}/{pid}/fd"
            try:
                fds = os.listdir(base)
            except OSError:  # gone, or another user's without CAP_SYS_PTRACE
                continue
            self.fd_dirs_total += 1
            links = []
            for fd in fds:
                try:
                    links.append(os.readlink(f"{base}/{fd}"))
                except OSError:
                    continue
            if wanted in links:
                serving = {f"socket:[{i}]" for i in servers if i != inode}
                return pid, any(link in serving for link in links)
        return None, False

    def alive(self, pid: int) -> bool:
        return os.path.exists(f"{self.procfs}/{pid}")
