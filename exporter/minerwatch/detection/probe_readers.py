"""What one probe of a busy process reads for the behaviour and memory-shape checks, per platform.

behaviour.py judges; the samplers here only read, into the same `Sample`, so both platforms go
through one decision with the same thresholds. `ProcfsSampler` reads Linux /proc and the
kernel's tcp_info; `PsutilSampler` reads psutil's Windows API (the busy probe uses it only
with the psutil reader on Windows: other platforms' psutil has other fields).

    what the check needs      Linux (/proc)                    Windows (psutil)
    I/O of every kind         io rchar + wchar                 io_counters(): read + write +
                                                               other bytes (files, devices and
                                                               network I/O together)
    voluntary switches        task/*/status, summed            num_ctx_switches(): every switch
                                                               (Windows does not tell voluntary
                                                               ones apart: a preempted thread
                                                               counts too, so a miner on a
                                                               contended desk may look too busy
                                                               switching: quieter, not noisier)
    per-thread CPU            task/*/stat                      threads(): user + system times
    connections               fd socket inodes + tcp_info      net_connections("tcp"): the
                              counters, per connection         ESTABLISHED ones with a remote
                                                               end; no per-connection counters
    connection traffic and    per connection: bytes acked /    the process's own read and write
    pool rhythm               received, data segments out/in   transfers (bytes, operations)
                                                               standing for all its connections
                                                               at once: one "session" per set of
                                                               connections (see below)
    RandomX memory            one anonymous mapping's own      committed private bytes of the
                              resident size (smaps), tight     whole process (memory_info()
                              window                           .private), wider window
                                                               (memory_shape.private_randomx_kind)
    librandomx                maps: a mapped librandomx*       memory_maps(): a mapped
                                                               librandomx*.dll

On Windows the traffic and rhythm are those of the process's whole I/O: every byte it reads or
writes, to files as well, counts as connection traffic, and a file read between two samples
looks like a message pushed in. That is stricter for the trickle (an upper bound of the network
traffic), and a process whose file I/O breaks the rhythm is judged not to have it: signals are
lost, none gained. The rhythm needs Winsock's receives and sends to land in the read and write
transfer counts; where they land in "other" instead, no client interval is ever seen and
`miner_behaviour` stays quiet for a connected miner. RandomX's dataset on Windows is one
VirtualAlloc, on large pages where SeLockMemoryPrivilege is held: private memory, not a mapped
file, and large pages are not in the working set, so committed private bytes are what is read.

Anything refused (AccessDenied for a protected process, a process that ended) makes that part of
the sample None: the check cannot say, and gives no signal.
"""

from __future__ import annotations

import ntpath
import os
import zlib
from typing import Callable, Dict, Optional, Tuple

from minerwatch.detection.behaviour import MAX_THREADS, NO_MAPS, Sample
from minerwatch.detection.memory_shape import MapsView, private_randomx_kind, read_maps, resident_randomx

MAX_SOCKETS = 64  # a process holding more is no miner's session: its sockets are not sampled
MAX_MAPPED_FILES = 4096  # memory_maps() rows looked at for librandomx


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def read_io(base: str) -> Optional[int]:
    raw = _read(f"{base}/io")
    if raw is None:
        return None
    total = 0
    for line in raw.splitlines():
        if line.startswith((b"rchar:", b"wchar:")):
            total += int(line.split()[1])
    return total


def read_threads(base: str, ticks: float) -> Tuple[Dict[int, float], Optional[int]]:
    """Per-thread CPU seconds and the voluntary context switches of all threads."""
    try:
        tids = os.listdir(f"{base}/task")
    except OSError:
        return {}, None
    if len(tids) > MAX_THREADS:
        return {}, None
    cpu: Dict[int, float] = {}
    switches = 0
    for tid in tids:
        stat = _read(f"{base}/task/{tid}/stat")
        status = _read(f"{base}/task/{tid}/status")
        if stat is None or status is None:
            continue  # a thread that just ended
        fields = stat[stat.rfind(b")") + 2 :].split()
        cpu[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
        at = status.find(b"voluntary_ctxt_switches:")
        if at >= 0:
            switches += int(status[at:].split(None, 2)[1])
    return cpu, switches


def socket_inodes(base: str, limit: int = MAX_SOCKETS) -> Optional[list]:
    """Socket inodes the process holds; None when unreadable or more than `limit` fds."""
    try:
        fds = os.listdir(f"{base}/fd")
    except OSError:
        return None
    if len(fds) > 1024:
        return None
    out = []
    for fd in fds:
        try:
            link = os.readlink(f"{base}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.append(int(link[8:-1]))
            if len(out) > limit:
                return None
    return out


class ProcfsSampler:
    """Linux: /proc/PID files and one tcp_info dump per probe round."""

    name = "procfs"

    def __init__(self, procfs: str = "/proc", tcp_dump: Optional[Callable[[], Dict]] = None):
        self.procfs = procfs
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        if tcp_dump is None:
            from minerwatch.detection.tcp_flows import dump as tcp_dump  # here: netlink only where used
        self._tcp_dump = tcp_dump
        self._tcp: Optional[Dict] = None
        self._tcp_round = None
        self.tcp_errors_total = 0

    def _connections(self, round_id) -> Optional[Dict]:
        """One dump per probe round, shared by the processes probed in it."""
        if self._tcp_round != round_id:
            self._tcp_round = round_id
            try:
                self._tcp = self._tcp_dump()
            except OSError:
                self.tcp_errors_total += 1
                self._tcp = None
        return self._tcp

    def sample(self, pid: int, cpu_seconds: float, now: float, round_id,
               device_share: Optional[float] = None) -> Sample:
        base = f"{self.procfs}/{pid}"
        threads, switches = read_threads(base, self._ticks)
        inodes = socket_inodes(base)
        sockets = None
        if inodes is not None:
            table = self._connections(round_id)
            if table is not None:
                sockets = {}
                for inode in inodes:
                    c = table.get(inode)
                    if c is not None:
                        sockets[inode] = (c.bytes_acked, c.bytes_received, c.data_segs_out, c.data_segs_in)
        maps = read_maps(base) if device_share is None else NO_MAPS  # RandomX is a CPU algorithm
        return Sample(now, cpu_seconds, read_io(base), switches, threads, sockets, maps, device_share)

    def randomx(self, pid: int, sample: Sample) -> Tuple[str, int, str]:
        """(RandomX kind, bytes, what was measured): smaps, the costly read."""
        kind, resident = resident_randomx(f"{self.procfs}/{pid}", sample.maps.candidates)
        return kind, resident, "resident anonymous mapping"


class PsutilSampler:
    """Windows: `process_for(pid)` gives the psutil Process, `psutil_module` is the module (for
    its exception classes)."""

    name = "psutil"

    def __init__(self, process_for: Callable[[int], object], psutil_module):
        self._process_for = process_for
        self._ps = psutil_module

    def _call(self, getter, default=None):
        try:
            return getter()
        except (self._ps.Error, OSError):  # AccessDenied, NoSuchProcess: cannot say
            return default

    def sample(self, pid: int, cpu_seconds: float, now: float, round_id,
               device_share: Optional[float] = None) -> Sample:
        try:
            proc = self._process_for(pid)
        except Exception:  # noqa: BLE001 - the process ended: an unreadable sample, as on Linux
            return Sample(now, cpu_seconds, None, None, {}, None, NO_MAPS, device_share)
        io = self._call(proc.io_counters)
        io_bytes = None if io is None else io.read_bytes + io.write_bytes + io.other_bytes
        switches = self._call(proc.num_ctx_switches)
        threads: Dict[int, float] = {}
        count = self._call(proc.num_threads, 0)
        if count <= MAX_THREADS:
            for t in self._call(proc.threads, ()) or ():
                threads[t.id] = t.user_time + t.system_time
        sockets, connections = self._sockets(proc, io)
        maps = self._maps(proc, len(threads) or count) if device_share is None else NO_MAPS  # a CPU algorithm
        return Sample(now, cpu_seconds, io_bytes, None if switches is None else switches.voluntary,
                      threads, sockets, maps, device_share, connections)

    def _sockets(self, proc, io) -> Tuple[Optional[Dict[int, Tuple[int, int, int, int]]], Optional[int]]:
        """The process's I/O counters as one aggregate session keyed by its set of established
        connections (a new set starts a new session, as a new socket does on Linux)."""
        conns = self._call(lambda: proc.net_connections(kind="tcp"))
        if conns is None or io is None or len(conns) > MAX_SOCKETS:
            return None, None
        ends = sorted((tuple(c.laddr), tuple(c.raddr)) for c in conns if c.status == "ESTABLISHED" and c.raddr)
        if not ends:
            return {}, 0
        key = zlib.crc32(repr(ends).encode())
        return {key: (io.write_bytes, io.read_bytes, io.write_count, io.read_count)}, len(ends)

    def _maps(self, proc, threads: int) -> MapsView:
        """The whole process's private bytes as the one candidate when they are RandomX's; the
        mapped files (the costly walk) only then, for librandomx."""
        mem = self._call(proc.memory_info)
        if mem is None or not private_randomx_kind(mem.private, threads):
            return NO_MAPS
        librandomx = ""
        files = self._call(proc.memory_maps, ()) or ()
        for row in files[:MAX_MAPPED_FILES]:
            name = ntpath.basename(row.path)
            if name.lower().startswith("librandomx"):
                librandomx = name[:64].encode("ascii", "replace").decode("ascii")
                break
        return MapsView(((0, mem.private),), librandomx, threads)

    def randomx(self, pid: int, sample: Sample) -> Tuple[str, int, str]:
        if not sample.maps.candidates:
            return "", 0, ""
        private = sample.maps.candidates[0][1]
        return private_randomx_kind(private, sample.maps.threads), private, "committed private memory"
