"""The host's outgoing TCP connections, and the owner process of only the ones that matter.

Linux: /proc/net/tcp and tcp6 are parsed directly (microseconds a line). Mapping a socket to its
process means reading /proc/PID/fd links, which is where psutil.net_connections spends most of
its ~70 ms; here it is done only for the inodes that matched an indicator, stops as soon as all
are found, and remembers inode -> (pid, fd) so a long-lived match costs one readlink a scrape.
Elsewhere (Windows, macOS, BSD) psutil.net_connections does the whole job.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Iterable, List, Optional, Set, Tuple

import psutil

from minerwatch.pool_intel import canonical_ip

# /proc/net/tcp `st` column (include/net/tcp_states.h)
ESTABLISHED, SYN_SENT, LISTEN = "01", "02", "0A"
_STATES = {ESTABLISHED: "established", SYN_SENT: "syn_sent"}  # a blocked miner retries: SYN_SENT too
_WILDCARDS = ("0.0.0.0", "::")


@dataclass(frozen=True)
class Endpoint:
    ip: str  # canonical: IPv4-mapped IPv6 written as IPv4
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass
class Conn:
    local: Endpoint
    remote: Endpoint
    state: str  # established | syn_sent
    uid: Optional[int] = None
    inode: int = 0
    pid: Optional[int] = None


@lru_cache(maxsize=8192)
def decode_address(hex_address: str, byteorder: str = sys.byteorder) -> str:
    """An address of /proc/net/tcp[6]: 32-bit words printed in host byte order, as hex."""
    raw = bytes.fromhex(hex_address)
    if byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return canonical_ip(socket.inet_ntop(socket.AF_INET6, raw))


def _endpoint(field: str, byteorder: str) -> Endpoint:
    address, _, port = field.partition(":")
    return Endpoint(decode_address(address, byteorder), int(port, 16))


def parse_proc_net_tcp(text: str, byteorder: str = sys.byteorder) -> Tuple[List[Conn], Set[Endpoint]]:
    """Connections in ESTABLISHED or SYN_SENT, and listening endpoints, of one tcp/tcp6 table."""
    conns: List[Conn] = []
    listening: Set[Endpoint] = set()
    for line in text.splitlines()[1:]:  # the first line is the header
        fields = line.split()
        if len(fields) < 10:
            continue
        state = fields[3]
        if state == LISTEN:
            listening.add(_endpoint(fields[1], byteorder))
        elif state in _STATES:
            conns.append(
                Conn(
                    local=_endpoint(fields[1], byteorder),
                    remote=_endpoint(fields[2], byteorder),
                    state=_STATES[state],
                    uid=int(fields[7]),
                    inode=int(fields[9]),
                )
            )
    return conns, listening


def outgoing(conns: Iterable[Conn], listening: Set[Endpoint]) -> List[Conn]:
    """Drop connections accepted by a local listener: a miner connects out, a pool accepts.

    Without this, a listed address would also flag the server side of a local connection.
    """
    ports = {e.port for e in listening if e.ip in _WILDCARDS}
    return [c for c in conns if c.local.port not in ports and c.local not in listening]


class InodeOwners:
    """inode -> pid through /proc/PID/fd, for a few inodes at a time.

    `fd_dirs_total` and `fd_reads_total` count the /proc reads, so tests (and the exporter's
    own metrics) can check that attribution cost follows matches, not all sockets.
    """

    def __init__(self, procfs: str = "/proc"):
        self.procfs = procfs
        self._cache: Dict[int, Tuple[int, str]] = {}  # inode -> (pid, fd name)
        self.fd_dirs_total = 0  # /proc/PID/fd directories listed
        self.fd_reads_total = 0  # /proc/PID/fd/N links read

    def _readlink(self, pid: int, fd: str) -> str:
        self.fd_reads_total += 1
        try:
            return os.readlink(f"{self.procfs}/{pid}/fd/{fd}")
        except OSError:
            return ""

    def _pids(self, uids: Set[int]) -> List[int]:
        """Every pid, those whose owner created the sockets first, the newest first."""
        pids = sorted((int(d) for d in os.listdir(self.procfs) if d.isdigit()), reverse=True)
        if not uids:
            return pids
        first, rest = [], []
        for pid in pids:
            try:
                owner = os.stat(f"{self.procfs}/{pid}").st_uid
            except OSError:
                continue
            (first if owner in uids else rest).append(pid)
        return first + rest

    def find(self, inodes: Dict[int, Optional[int]]) -> Dict[int, int]:
        """pid of each inode (given with the socket's uid, a hint) that can be found."""
        found: Dict[int, int] = {}
        for inode in inodes:
            cached = self._cache.get(inode)
            if cached and self._readlink(*cached) == f"socket:[{inode}]":
                found[inode] = cached[0]
        # forget sockets that no longer match: the cache stays as small as the match set
        self._cache = {i: v for i, v in self._cache.items() if i in found}
        missing = {i for i in inodes if i not in found and i}
        if not missing:
            return found
        uids = {inodes[i] for i in missing if inodes[i] is not None}
        for pid in self._pids(uids):
            try:
                fds = os.listdir(f"{self.procfs}/{pid}/fd")
            except OSError:  # gone, or another user's without CAP_SYS_PTRACE
                continue
            self.fd_dirs_total += 1
            for fd in fds:
                link = self._readlink(pid, fd)
                if link.startswith("socket:["):
                    inode = int(link[8:-1])
                    if inode in missing:
                        found[inode] = pid
                        self._cache[inode] = (pid, fd)
                        missing.discard(inode)
            if not missing:
                break
        return found


class ProcNetSockets:
    """Linux: /proc/net/tcp{,6} and /proc/PID/fd."""

    name = "procfs"

    def __init__(self, procfs: str = "/proc"):
        self.procfs = procfs
        self.owners = InodeOwners(procfs)
        self.sockets_seen = 0

    def _table(self, name: str) -> str:
        # /proc/1/net is the host's namespace also when the exporter runs in a container with the
        # host's /proc mounted; /proc/net (the exporter's own) is the fallback.
        for path in (f"{self.procfs}/1/net/{name}", f"{self.procfs}/net/{name}"):
            try:
                with open(path) as f:
                    return f.read()
            except OSError:
                continue
        return ""

    def connections(self) -> List[Conn]:
        conns: List[Conn] = []
        listening: Set[Endpoint] = set()
        for name in ("tcp", "tcp6"):
            c, l = parse_proc_net_tcp(self._table(name))
            conns.extend(c)
            listening |= l
        self.sockets_seen = len(conns)
        return outgoing(conns, listening)

    def attribute(self, conns: List[Conn]) -> None:
        """Fill `pid` of these connections only."""
        pids = self.owners.find({c.inode: c.uid for c in conns if c.inode})
        for c in conns:
            c.pid = pids.get(c.inode)

    @property
    def fd_reads_total(self) -> int:
        return self.owners.fd_reads_total


class PsutilSockets:
    """Any OS: psutil.net_connections maps every socket to its pid (that is its cost)."""

    name = "psutil"

    def __init__(self) -> None:
        self.sockets_seen = 0
        self.fd_reads_total = 0  # psutil reads /proc/PID/fd itself on Linux; not counted here

    def connections(self) -> List[Conn]:
        conns: List[Conn] = []
        listening: Set[Endpoint] = set()
        states = {psutil.CONN_ESTABLISHED: "established", psutil.CONN_SYN_SENT: "syn_sent"}
        try:
            raw = psutil.net_connections(kind="tcp")
        except psutil.AccessDenied:  # macOS without root
            raw = []
        for c in raw:
            if not c.laddr:
                continue
            local = Endpoint(canonical_ip(c.laddr.ip), c.laddr.port)
            if c.status == psutil.CONN_LISTEN:
                listening.add(local)
            elif c.status in states and c.raddr:
                remote = Endpoint(canonical_ip(c.raddr.ip), c.raddr.port)
                conns.append(Conn(local, remote, states[c.status], pid=c.pid))
        self.sockets_seen = len(conns)
        return outgoing(conns, listening)

    def attribute(self, conns: List[Conn]) -> None:
        """Nothing to do: psutil gave the pid with the connection."""


def default_sockets(procfs: str = "/proc", backend: str = "auto"):
    """/proc directly where it has socket tables, psutil everywhere else."""
    if backend == "psutil":
        return PsutilSockets()
    if backend == "procfs" or os.path.isfile(f"{procfs}/net/tcp"):
        return ProcNetSockets(procfs)
    return PsutilSockets()
