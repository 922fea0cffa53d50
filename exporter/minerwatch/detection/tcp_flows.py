"""Byte and segment counters of the host's established TCP sockets, by socket inode (Linux).

A NETLINK_SOCK_DIAG dump per address family asking for INET_DIAG_INFO (struct tcp_info): what
`ss -ti` shows, through network/sockets.py's netlink reader. Used by the behaviour check
(behaviour.py) to see that a busy process's connections carry only a trickle of small messages,
and which side speaks first (pool_rhythm.py: jobs pushed unasked, shares answered at once), which
is how a miner talks to its pool even through TLS; no packet capture is needed. The busy probe asks only for the sockets of the process it probes (`wanted`): the kernel
still fills tcp_info for every established socket, but Python reads one inode per socket and
parses and keeps only the wanted ones (at 4,000 sockets about 25 ms a dump parsed whole).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Collection, Dict, Optional

from minerwatch.network.sockets import TCP_ESTABLISHED, diag_messages

INET_DIAG_INFO = 2
_MSG_LEN = 72  # inet_diag_msg
_INODE = struct.Struct("=I")  # at offset 68 of inet_diag_msg (after uid)
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


def _parse_info(raw: bytes, at: int) -> TcpCounters:
    acked, received = struct.unpack_from("=QQ", raw, at + 120)
    data_in, data_out = struct.unpack_from("=II", raw, at + 152)
    return TcpCounters(acked, received, data_out, data_in)


def _info(data: bytes, attr: int, end: int) -> Optional[TcpCounters]:
    """The counters in the INET_DIAG_INFO attribute among a message's attributes, if any."""
    while attr + _RTA.size <= end:
        rta_len, rta_type = _RTA.unpack_from(data, attr)
        if rta_len < _RTA.size:
            return None
        if rta_type == INET_DIAG_INFO and rta_len - _RTA.size >= _INFO_MIN:
            return _parse_info(data, attr + _RTA.size)
        attr += (rta_len + 3) & ~3
    return None


def dump_family(family: int, wanted: Optional[Collection[int]] = None) -> Dict[int, TcpCounters]:
    """Counters of the established TCP sockets of one family (only the `wanted` inodes if given)."""
    out: Dict[int, TcpCounters] = {}
    for data, msg, end, _, _ in diag_messages(family, 1 << TCP_ESTABLISHED, 1 << (INET_DIAG_INFO - 1)):
        inode = _INODE.unpack_from(data, msg + 68)[0]
        if wanted is None or inode in wanted:
            counters = _info(data, msg + _MSG_LEN, end)
            if counters is not None:
                out[inode] = counters
    return out


def dump(wanted: Optional[Collection[int]] = None) -> Dict[int, TcpCounters]:
    """Counters of established TCP sockets, IPv4 and IPv6 (only the `wanted` inodes if given; none
    asked for, no dump); raises OSError where refused."""
    if wanted is not None and not wanted:
        return {}
    counters = dump_family(socket.AF_INET, wanted)
    counters.update(dump_family(socket.AF_INET6, wanted))
    return counters
