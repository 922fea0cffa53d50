"""What a miner looks like when it says nothing: `miner_behaviour` and `randomx_memory`.

Evaluated only for busy processes (busy_probe.py), from samples taken at most every probe
interval, over a window (20 s by default). A process gets `miner_behaviour` when, over the whole
window, ALL of these hold (defaults in BehaviourLimits):

- it keeps at least `suspect_busy_cores` busy (the probe only looks at those);
- almost no I/O: read and written bytes of every kind (/proc/PID/io rchar + wchar: files,
  pipes and sockets) under 64 KiB per CPU-second; compressors, compilers, backups and encoders
  move megabytes per CPU-second;
- very few voluntary context switches, summed over its threads (task/*/status): under 50 per
  CPU-second; a worker that waits on I/O, locks or a GUI switches hundreds to thousands of times;
- its busy threads (over 0.1 core each) equally busy: the busiest at most 1.5 times the least;
  encoders, browsers and builds have uneven threads;
- it holds one to four established TCP connections, at least one present through the whole
  window, and all of them together carry only a trickle: under 2 KiB/s in each direction, in
  messages averaging under 1 KiB (tcp_info from the kernel, tcp_flows.py): Stratum submits and
  jobs, in TLS or not. A download, a video call, a sync client move far more; openssl speed,
  numpy training and compilers hold no connection at all.

`randomx_memory`: a resident anonymous mapping the size of RandomX's dataset (2080 MiB:
RANDOMX_DATASET_BASE_SIZE 2 GiB + RANDOMX_DATASET_EXTRA_SIZE 32 MiB - 64 bytes, rounded up to
pages, up to 3 GiB when backed by 1 GiB pages) or of its cache (256 MiB: RANDOMX_ARGON_MEMORY
262144 KiB; up to 40 MiB more, as the kernel merges adjacent
anonymous mappings such as an 8 MiB thread stack into it), sources: tevador/RandomX src/configuration.h and its
specification; resident means the process's RSS plus hugetlb pages cover at least 90% of it;
and CPU flat over the window (each interval within 25% of the window's mean). A busy JVM with a
heap of exactly 256 MiB is the known false positive; it is weak for that reason.

Linux only (procfs). Unreadable files (another user's /proc/PID/io without CAP_SYS_PTRACE)
mean "cannot say": the signal is then not given.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, Optional, Tuple


MiB = 1 << 20
DATASET_BYTES = 2147483648 + 33554368  # RandomX dataset: base + extra size
CACHE_BYTES = 262144 * 1024  # RandomX cache: Argon2 memory, 256 MiB
MAX_THREADS = 512  # a process with more threads is sampled without its per-thread figures


@dataclass(frozen=True)
class BehaviourLimits:
    window_seconds: float = 20.0
    io_bytes_per_cpu_second: float = 64 * 1024
    voluntary_switches_per_cpu_second: float = 50.0
    thread_busy_cores: float = 0.1
    thread_imbalance: float = 1.5
    max_connections: int = 4
    trickle_bytes_per_second: float = 2048.0
    trickle_message_bytes: float = 1024.0
    flat_tolerance: float = 0.25


@dataclass
class Sample:
    time: float
    cpu_seconds: float
    io_bytes: Optional[int]  # rchar + wchar; None when unreadable
    voluntary_switches: Optional[int]
    thread_cpu: Dict[int, float]  # tid -> cpu seconds
    sockets: Optional[Dict[int, Tuple[int, int, int, int]]]  # inode -> (acked, received, segs out, segs in)
    anon_sizes: Tuple[int, ...] = ()  # sizes of large anonymous mappings
    resident_bytes: int = 0


@dataclass
class Track:
    samples: Deque[Sample] = field(default_factory=lambda: deque(maxlen=64))
    broken: str = ""  # the behaviour condition the last judged window broke ("" when it held)


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


def socket_inodes(base: str, limit: int = 64) -> Optional[list]:
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


def read_memory(base: str) -> Tuple[Tuple[int, ...], int]:
    """Sizes of anonymous mappings of 128 MiB or more, and hugetlb bytes in use."""
    raw = _read(f"{base}/maps")
    sizes = []
    if raw:
        for line in raw.splitlines():
            fields = line.split(None, 5)
            path = fields[5].strip() if len(fields) > 5 else b""
            if path and not (path.startswith(b"/anon_hugepage") or path.startswith(b"/dev/hugepages")
                             or path == b"[heap]"):
                continue
            start, _, end = fields[0].partition(b"-")
            size = int(end, 16) - int(start, 16)
            if size >= 128 * MiB:
                sizes.append(size)
    hugetlb = 0
    status = _read(f"{base}/status")
    if status:
        at = status.find(b"HugetlbPages:")
        if at >= 0:
            hugetlb = int(status[at:].split(None, 2)[1]) * 1024
    return tuple(sizes), hugetlb


def randomx_size(size: int) -> str:
    """'dataset', 'cache' or '' for a mapping size."""
    if DATASET_BYTES <= size <= DATASET_BYTES + 64 * MiB or size == 3 << 30:
        return "dataset"
    if CACHE_BYTES <= size <= CACHE_BYTES + 40 * MiB:
        return "cache"
    return ""


class BehaviourCheck:
    """Samples busy processes and judges their last window."""

    def __init__(self, procfs: str = "/proc", limits: Optional[BehaviourLimits] = None,
                 tcp_dump: Optional[Callable[[], Dict]] = None):
        self.procfs = procfs
        self.limits = limits or BehaviourLimits()
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        if tcp_dump is None:
            from minerwatch.detection.tcp_flows import dump as tcp_dump  # here: netlink only where used
        self._tcp_dump = tcp_dump
        self._tcp: Optional[Dict] = None
        self._tcp_round: Optional[float] = None
        self.tcp_errors_total = 0

    def _connections(self, now: float) -> Optional[Dict]:
        """One dump per probe round, shared by the processes probed in it."""
        if self._tcp_round != now:
            self._tcp_round = now
            try:
                self._tcp = self._tcp_dump()
            except OSError:
                self.tcp_errors_total += 1
                self._tcp = None
        return self._tcp

    def sample(self, pid: int, cpu_seconds: float, rss_bytes: int, now: float, round_id: float) -> Sample:
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
        sizes, hugetlb = read_memory(base)
        return Sample(now, cpu_seconds, read_io(base), switches, threads, sockets, sizes, rss_bytes + hugetlb)

    def judge(self, track: Track) -> Dict[str, str]:
        """Signals (name -> reason) from the samples of the last window."""
        s = track.samples
        if len(s) < 2:
            return {}
        last = s[-1]
        first = None
        for sample in s:
            if last.time - sample.time >= self.limits.window_seconds:
                first = sample
        if first is None:
            return {}
        out = {}
        behaviour, track.broken = self._miner_like(first, last, [x for x in s if x.time >= first.time])
        if behaviour:
            out["miner_behaviour"] = behaviour
        memory = self._randomx(first, last, [x for x in s if x.time >= first.time])
        if memory:
            out["randomx_memory"] = memory
        return out

    def _miner_like(self, a: Sample, b: Sample, window) -> Tuple[str, str]:
        """(reason, "") when miner-like, else ("", the first condition that broke)."""
        lim = self.limits
        seconds = b.time - a.time
        cpu = b.cpu_seconds - a.cpu_seconds
        if seconds <= 0 or cpu <= 0:
            return "", "no_cpu"
        if a.io_bytes is None or b.io_bytes is None or a.voluntary_switches is None or b.voluntary_switches is None:
            return "", "unreadable"
        io_rate = (b.io_bytes - a.io_bytes) / cpu
        if io_rate >= lim.io_bytes_per_cpu_second:
            return "", "io"
        switch_rate = (b.voluntary_switches - a.voluntary_switches) / cpu
        if switch_rate >= lim.voluntary_switches_per_cpu_second:
            return "", "context_switches"
        busy = [(b.thread_cpu[t] - a.thread_cpu[t]) / seconds for t in b.thread_cpu if t in a.thread_cpu]
        busy = [x for x in busy if x >= lim.thread_busy_cores]
        if not busy or max(busy) > lim.thread_imbalance * min(busy):
            return "", "threads_unequal"
        if a.sockets is None or b.sockets is None:
            return "", "unreadable_sockets"
        if not 1 <= len(b.sockets) <= lim.max_connections:
            return "", "connection_count"
        if not any(all(x.sockets is not None and inode in x.sockets for x in window) for inode in b.sockets):
            return "", "no_long_lived_connection"  # no connection lasted the whole window
        sent = received = messages = 0
        for inode, (acked, got, segs_out, segs_in) in b.sockets.items():
            old = a.sockets.get(inode, (0, 0, 0, 0))
            sent += acked - old[0]
            received += got - old[1]
            messages += (segs_out - old[2]) + (segs_in - old[3])
        if sent / seconds >= lim.trickle_bytes_per_second or received / seconds >= lim.trickle_bytes_per_second:
            return "", "traffic"
        if messages and (sent + received) / messages >= lim.trickle_message_bytes:
            return "", "message_size"
        if not any(acked > 1 and got > 0 for acked, got, _, _ in b.sockets.values()):
            return "", "no_two_way_data"  # a connection that never carried data both ways is no pool session
        return (f"{cpu / seconds:.2f} cores for {seconds:.0f}s, {io_rate / 1024:.1f} KiB I/O and "
                f"{switch_rate:.1f} voluntary switches per CPU-second, {len(busy)} equally busy threads, "
                f"{len(b.sockets)} connection(s) carrying {sent / seconds:.0f} B/s out and "
                f"{received / seconds:.0f} B/s in"), ""

    def _randomx(self, a: Sample, b: Sample, window) -> str:
        kinds = [(randomx_size(size), size) for size in b.anon_sizes]
        kinds = [(kind, size) for kind, size in kinds if kind and b.resident_bytes >= 0.9 * size]
        if not kinds:
            return ""
        rates = []
        for x, y in zip(window, window[1:]):
            if y.time > x.time:
                rates.append((y.cpu_seconds - x.cpu_seconds) / (y.time - x.time))
        if not rates:
            return ""
        mean = sum(rates) / len(rates)
        if mean <= 0 or any(abs(r - mean) > self.limits.flat_tolerance * mean for r in rates):
            return ""
        kind, size = kinds[0]
        return (f"resident anonymous mapping of {size / MiB:.0f} MiB (RandomX {kind}) and CPU flat at "
                f"{mean:.2f} cores")
