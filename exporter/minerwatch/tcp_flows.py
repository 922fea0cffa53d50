"""Byte and segment counters of the host's established TCP sockets, by socket inode (Linux).

One NETLINK_SOCK_DIAG dump per address family asking for INET_DIAG_INFO (struct tcp_info): what
`ss -ti` shows. Used by the behaviour check (behaviour.py) to see that a busy process's one
long-lived connection carries only a trickle of small messages, which is how a miner talks to its
pool even through TLS; no packet capture is needed. The dump is made only when a busy process is
probed, at most once per probe round. network/sockets.py makes a similar dump without the info
attribute for the pool monitor; this one is separate so that cost stays with the probe.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Dict

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_ESTABLISHED = 1
INET_DIAG_INFO = 2
_NLMSG = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBBI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states, sockid
_MSG_LEN = 72  # inet_diag_msg
_OWNER = struct.Struct("=II")  # uid, inode at offset 64 of inet_diag_msg
_RTA = struct.Struct("=HH")
# struct tcp_info (linux/tcp.h) offsets: bytes_acked, bytes_received (u64), segs_out, segs_in
# (u32), data_segs_in, data_segs_out (u32); present since Linux 4.6.
_INFO_MIN = 160


@dataclass(frozen=True)
class TcpCounters:
    bytes_acked: int  # sent and acknowledged
    bytes_received: int
    data_segs_out: int
    data_segs_in: int


def _parse_info(raw: bytes) -> TcpCounters:
    acked, received = struct.unpack_from("=QQ", raw, 120)
    data_in, data_out = struct.unpack_from("=II", raw, 152)
    return TcpCounters(acked, received, data_out, data_in)


def dump_family(family: int) -> Dict[int, TcpCounters]:
    request = _REQ.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0, 1 << TCP_ESTABLISHED)
    out: Dict[int, TcpCounters] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(5)
        nl.send(_NLMSG.pack(_NLMSG.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
                + request)
        while True:
            data = nl.recv(1 << 20)
            if not data:
                raise OSError("sock_diag: connection closed")
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind = _NLMSG.unpack_from(data, offset)[:2]
                if length < _NLMSG.size:
                    raise OSError("sock_diag: malformed message")
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    raise OSError("sock_diag: the kernel refused the dump")
                msg = offset + _NLMSG.size
                inode = _OWNER.unpack_from(data, msg + 64)[1]
                attr, end = msg + _MSG_LEN, offset + length
                while attr + _RTA.size <= end:
                    rta_len, rta_type = _RTA.unpack_from(data, attr)
                    if rta_len < _RTA.size:
                        break
                    if rta_type == INET_DIAG_INFO and rta_len - _RTA.size >= _INFO_MIN:
                        out[inode] = _parse_info(data[attr + _RTA.size : attr + rta_len])
                    attr += (rta_len + 3) & ~3
                offset += (length + 3) & ~3


def dump() -> Dict[int, TcpCounters]:
    """Counters of every established TCP socket, IPv4 and IPv6; raises OSError where refused."""
    counters = dump_family(socket.AF_INET)
    counters.update(dump_family(socket.AF_INET6))
    return counters
