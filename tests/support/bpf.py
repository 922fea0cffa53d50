"""A classic-BPF interpreter for the opcodes the sniffer's kernel filter uses, run as the kernel
runs it on a packet: the tests check the filter's verdicts without a socket."""

from __future__ import annotations

import struct

_SIZES = {0x20: "!I", 0x28: "!H", 0x40: "!I", 0x48: "!H"}


def run_filter(program, packet: bytes, protocol: int = 0x0800) -> int:
    """The filter's verdict (bytes kept, 0 dropped); a load past the end drops the packet, as in
    the kernel. `protocol` is what the ancillary SKF_AD_PROTOCOL load answers."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    try:
        while True:
            code, jt, jf, k = program[pc]
            pc += 1
            if code in (0x20, 0x28, 0x30) and k >= 0xFFFFF000:
                a = {0xFFFFF000: protocol, 0xFFFFF004: 0, 0xFFFFF008: 2}[k]
            elif code in (0x20, 0x28, 0x40, 0x48):
                a = struct.unpack_from(_SIZES[code], packet, k + (x if code >= 0x40 else 0))[0]
            elif code in (0x30, 0x50):
                a = packet[k + (x if code == 0x50 else 0)]
            elif code == 0xB1:
                x = (packet[k] & 0x0F) * 4
            elif code == 0x60:
                a = mem[k]
            elif code == 0x02:
                mem[k] = a
            elif code in (0x04, 0x0C, 0x1C, 0x54, 0x74, 0x07, 0x87):
                a, x = {0x04: ((a + k) & 0xFFFFFFFF, x), 0x0C: ((a + x) & 0xFFFFFFFF, x),
                        0x1C: ((a - x) & 0xFFFFFFFF, x), 0x54: (a & k, x), 0x74: (a >> k, x),
                        0x07: (a, a), 0x87: (x, x)}[code]
            elif code == 0x15:
                pc += jt if a == k else jf
            elif code == 0x45:
                pc += jt if a & k else jf
            elif code == 0x06:
                return k
            else:
                raise AssertionError(f"opcode {code:#x} not interpreted")
    except (IndexError, struct.error):
        return 0
