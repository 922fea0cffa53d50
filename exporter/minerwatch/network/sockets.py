"""The host's outgoing TCP connections, and the owner process of only the ones that matter.

Linux: the kernel's socket table through a sock_diag netlink dump filtered to the states that
matter (what `ss` uses: about 4 ms for 2000 sockets), or /proc/net/tcp and tcp6 parsed directly
where the table of another namespace is wanted (the host's /proc mounted into a container) or
netlink is refused; the text tables cost the kernel several times more. Mapping a socket to its
process means reading /proc/PID/fd links, which is where psutil.net_connections spends most of
its ~70 ms; here it is done only for the inodes that matched an indicator, stops as soon as all
are found, and remembers inode -> (pid, fd) so a long-lived match costs one readlink a scrape.
Elsewhere (Windows, macOS, BSD) psutil.net_connections does the whole job.

Per scrape the netlink path costs about 1.5 µs a socket in Python: listeners are dumped first so
that a connection some local listener accepted (the server end of a local connection) is counted
and dropped before any object is made for it; endpoints are named tuples (hashed and compared in
C, as the network monitor does for every connection) and connections have slots.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Dict, Iterable, List, NamedTuple, Optional, Set, Tuple


from minerwatch.network.pools import canonical_ip

# /proc/net/tcp `st` column (include/net/tcp_states.h)
ESTABLISHED, SYN_SENT, LISTEN = "01", "02", "0A"
_STATES = {ESTABLISHED: "established", SYN_SENT: "syn_sent"}  # a blocked miner retries: SYN_SENT too
_WILDCARDS = ("0.0.0.0", "::")


class Endpoint(NamedTuple):
    """An address and port; a tuple, so hashing and comparing it (dict keys of the network
    monitor and the sniffer, every connection every scrape) runs in C."""

    ip: str  # canonical: IPv4-mapped IPv6 written as IPv4
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


# Endpoint((ip, port)) without the Python-level __new__ of a named tuple: the dump makes two a socket.
_new_endpoint = partial(tuple.__new__, Endpoint)


@dataclass(**({"slots": True} if sys.version_info >= (3, 10) else {}))
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


@lru_cache(maxsize=16384)
def _endpoint(field: str, byteorder: str) -> Endpoint:
    # Cached: a long-lived connection's fields are the same text on every scrape.
    address, _, port = field.partition(":")
    return Endpoint(decode_address(address, byteorder), int(port, 16))


# -- sock_diag netlink (linux/inet_diag.h, linux/sock_diag.h) -------------------------------------
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_ESTABLISHED, TCP_SYN_SENT, TCP_LISTEN = 1, 2, 10
_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_REQ = struct.Struct("=BBBBI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states, sockid
# nlmsghdr length and type (flags, seq, pid skipped), then inet_diag_msg family and state
_HEAD = struct.Struct("=IH10xBB")
_PORTS = struct.Struct(">HH")  # sockid: sport, dport, network byte order
_OWNER = struct.Struct("=II")  # inet_diag_msg: uid, inode (after expires, rqueue, wqueue)
_DIAG_STATES = {TCP_ESTABLISHED: "established", TCP_SYN_SENT: "syn_sent"}
# The kernel fills at most about 32 KiB per read of a dump (netlink_dump); a bigger buffer
# would only be allocated and shrunk on every read.
_RECV_SIZE = 65536


@lru_cache(maxsize=8192)
def _diag_address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    return canonical_ip(socket.inet_ntop(socket.AF_INET6, raw))


def _diag_dump(family: int, states: int, extensions: int = 0, bytecode: bytes = b""):
    """The buffers of one NETLINK_SOCK_DIAG dump of TCP sockets in `states` (a bit mask), as the
    kernel sends them, whole messages each; the reader stops at NLMSG_DONE (`_end_of_dump`).
    `extensions`: attributes wanted with each socket (tcp_flows.py asks for INET_DIAG_INFO);
    `bytecode`: a kernel filter (`accepted_filter`)."""
    request = _REQ.pack(family, socket.IPPROTO_TCP, extensions, 0, states)
    if bytecode:
        request += _RTA.pack(_RTA.size + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(5)
        nl.send(_NLMSG.pack(_NLMSG.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
                + request)
        while True:
            data = nl.recv(_RECV_SIZE)
            if not data:
                raise OSError("sock_diag: connection closed")
            yield data


# The kernel's socket filter (inet_diag_bc_run): ops of 4 bytes (code, yes, no), each followed by
# its operand; "yes" and "no" are byte offsets to jump. Ending exactly at the end dumps the
# socket, jumping past it skips the socket. The kernel checks a program before it runs it
# (inet_diag_bc_audit): the chain of "yes" jumps must end exactly at the end, and every "no"
# jump must land on that chain or at end + 4 (skip).
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_JMP, INET_DIAG_BC_S_GE, INET_DIAG_BC_S_COND = 1, 2, 7
_RTA = struct.Struct("=HH")  # rtattr: length, type
_OP = struct.Struct("=BBH")  # inet_diag_bc_op: code, yes, no
_HOSTCOND = struct.Struct("=BBxxi")  # inet_diag_hostcond: family, prefix_len, port (then the address)
MAX_FILTERED_LISTENERS = 256  # beyond, no kernel filter (its check is quadratic); Python drops them


def accepted_filter(listening: Set[Endpoint]) -> bytes:
    """A kernel filter that leaves out the sockets a local listener accepted: local port of a
    wildcard listener, or local address and port of another. Parsing drops exactly these anyway
    (`diag_connections`); left out in the kernel, they cost neither a message nor a look."""
    wildcard = sorted({e.port for e in listening if e.ip in _WILDCARDS and e.port < 65535})
    specific = sorted(e for e in listening if e.ip not in _WILDCARDS)
    if not wildcard and not specific or len(wildcard) + len(specific) > MAX_FILTERED_LISTENERS:
        return b""
    blocks: List[bytes] = []
    for port in wildcard:
        # sport >= port ? next op : next block;  sport >= port + 1 ? next block : skip
        blocks.append(_OP.pack(INET_DIAG_BC_S_GE, 8, 16) + _OP.pack(0, 0, port)
                      + _OP.pack(INET_DIAG_BC_S_GE, 8, 0) + _OP.pack(0, 0, port + 1))
    for endpoint in specific:
        family = socket.AF_INET6 if ":" in endpoint.ip else socket.AF_INET
        address = socket.inet_pton(family, endpoint.ip)
        cond = _HOSTCOND.pack(family, 8 * len(address), endpoint.port) + address
        size = _OP.size + len(cond)
        # local is the listener's ? the jump that skips : next block;  jump: skip (its "yes"
        # only walks the checked chain on to the next block)
        blocks.append(_OP.pack(INET_DIAG_BC_S_COND, size, size + _OP.size) + cond + _OP.pack(INET_DIAG_BC_JMP, 4, 0))
    program = bytearray(b"".join(blocks))
    # The "skip" jumps go to the end + 4: patch each with its distance from where it sits.
    at = 0
    for port_block in blocks[: len(wildcard)]:
        second = at + 8
        _OP.pack_into(program, second, INET_DIAG_BC_S_GE, 8, len(program) - second + 4)
        at += len(port_block)
    for block in blocks[len(wildcard):]:
        jump = at + len(block) - _OP.size
        _OP.pack_into(program, jump, INET_DIAG_BC_JMP, 4, len(program) - jump + 4)
        at += len(block)
    return bytes(program)


def _end_of_dump(kind: int, length: int) -> bool:
    """True at NLMSG_DONE (or a truncated header); raises OSError at NLMSG_ERROR (refused)."""
    if kind == NLMSG_ERROR:
        raise OSError("sock_diag: the kernel refused the dump")
    return kind == NLMSG_DONE or length < _NLMSG.size


def diag_messages(family: int, states: int, extensions: int = 0, bytecode: bytes = b""):
    """(buffer, offset of the inet_diag_msg, end of the message, family, state) for each socket
    of one dump (`_diag_dump`'s arguments), until the kernel says it is done."""
    for data in _diag_dump(family, states, extensions, bytecode):
        offset, end = 0, len(data) - _HEAD.size
        while offset <= end:
            length, kind, fam, state = _HEAD.unpack_from(data, offset)
            if kind != SOCK_DIAG_BY_FAMILY or length < _NLMSG.size:
                if _end_of_dump(kind, length):
                    return
            else:
                yield data, offset + _NLMSG.size, offset + length, fam, state
            offset += (length + 3) & ~3


def diag_listeners(family: int) -> Set[Endpoint]:
    """Listening TCP endpoints of one address family (sock_diag)."""
    listening: Set[Endpoint] = set()
    for data, msg, _, fam, state in diag_messages(family, 1 << TCP_LISTEN):
        if state == TCP_LISTEN:
            port = _PORTS.unpack_from(data, msg + 4)[0]
            listening.add(_new_endpoint((_diag_address(fam, data[msg + 8 : msg + 24]), port)))
    return listening


def diag_connections(family: int, listening: Set[Endpoint], out: List[Conn],
                     known: Optional[Dict[int, Conn]] = None, kept: Optional[Dict[int, Conn]] = None,
                     kernel_filter: bool = True) -> int:
    """Append to `out` the connections of one address family in ESTABLISHED or SYN_SENT that no
    local listener accepted (`listening`: of every family); returns how many it appended. The
    kernel leaves the accepted ones out (`accepted_filter`, unless `kernel_filter` is False);
    parsing drops any it still sends. A connection is only built for what is kept.

    `known`: the connections of the last dump by inode. A socket found there in the same state is
    that very connection (an inode names one socket for its life): the same object goes to `out`,
    with nothing decoded again. Every connection kept is also put in `kept` by inode."""
    ports = {e.port for e in listening if e.ip in _WILDCARDS}
    known = known if known is not None else {}
    seen = 0
    names = _DIAG_STATES
    bytecode = accepted_filter(listening) if kernel_filter else b""
    for data, msg, _, fam, state in diag_messages(family, (1 << TCP_ESTABLISHED) | (1 << TCP_SYN_SENT), 0, bytecode):
        name = names.get(state)
        if name is None:
            continue
        sport, dport = _PORTS.unpack_from(data, msg + 4)
        if sport in ports:  # accepted by a listener on every address
            continue
        uid, inode = _OWNER.unpack_from(data, msg + 64)
        conn = known.get(inode) if inode else None
        if conn is None or conn.state != name or conn.local.port != sport or conn.remote.port != dport:
            local = _new_endpoint((_diag_address(fam, data[msg + 8 : msg + 24]), sport))
            if local in listening:  # accepted by a listener on this address
                continue
            remote = _new_endpoint((_diag_address(fam, data[msg + 24 : msg + 40]), dport))
            conn = Conn(local, remote, name, uid, inode)
        out.append(conn)
        seen += 1
        if kept is not None and inode:
            kept[inode] = conn
    return seen


def sock_diag(family: int) -> Tuple[List[Conn], Set[Endpoint]]:
    """Connections in ESTABLISHED or SYN_SENT (accepted ones included), and listening endpoints,
    of one address family, from the kernel's socket table. Raises OSError if refused."""
    conns: List[Conn] = []
    diag_connections(family, set(), conns)
    return conns, diag_listeners(family)


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

    def __init__(self, procfs: str = "/proc", netlink: Optional[bool] = None):
        self.procfs = procfs
        self.owners = InodeOwners(procfs)
        self.sockets_seen = 0
        self._known: Dict[int, Conn] = {}  # the last dump's connections by inode
        self.kernel_filter = True  # leave accepted connections out in the kernel (accepted_filter)
        # Netlink answers for the exporter's own network namespace: use it when that is the one
        # /proc describes. Another /proc (a host's, mounted into a container) means text tables.
        self.netlink = (os.path.realpath(procfs) == "/proc") if netlink is None else netlink

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

    def _netlink_connections(self) -> List[Conn]:
        families = (socket.AF_INET, socket.AF_INET6)
        listening: Set[Endpoint] = set()
        for family in families:  # first, so accepted connections are dropped while parsing
            listening |= diag_listeners(family)
        conns: List[Conn] = []
        kept: Dict[int, Conn] = {}
        try:
            for family in families:
                diag_connections(family, listening, conns, self._known, kept, self.kernel_filter)
        except OSError:
            if not self.kernel_filter:
                raise
            # A kernel that refuses the filter program: parsing alone drops accepted connections.
            self.kernel_filter = False
            return self._netlink_connections()
        self._known = kept  # closed connections are forgotten
        return conns

    def connections(self) -> List[Conn]:
        """Outgoing connections (those no local listener accepted); `sockets_seen` counts them."""
        if self.netlink:
            try:
                conns = self._netlink_connections()
                self.sockets_seen = len(conns)
                return conns
            except OSError:  # no netlink (seccomp, an old kernel): the text tables from now on
                self.netlink = False
        conns: List[Conn] = []
        listening: Set[Endpoint] = set()
        for name in ("tcp", "tcp6"):
            c, l = parse_proc_net_tcp(self._table(name))
            conns.extend(c)
            listening |= l
        conns = outgoing(conns, listening)
        self.sockets_seen = len(conns)
        return conns

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
        import psutil  # the portable path only

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
        conns = outgoing(conns, listening)
        self.sockets_seen = len(conns)
        return conns

    def attribute(self, conns: List[Conn]) -> None:
        """Nothing to do: psutil gave the pid with the connection."""


def default_sockets(procfs: str = "/proc", backend: str = "auto"):
    """/proc directly where it has socket tables, psutil everywhere else."""
    if backend == "psutil":
        return PsutilSockets()
    if backend == "procfs" or os.path.isfile(f"{procfs}/net/tcp"):
        return ProcNetSockets(procfs)
    return PsutilSockets()
