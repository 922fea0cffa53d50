"""What a miner looks like when it says nothing: `miner_behaviour` and `randomx_memory`.

Evaluated only for busy processes (busy_probe.py: busy on the CPU, alone or with the same user's
or executable's other processes, or busy on a GPU), from samples taken at most every probe
interval. The process's shape is judged over `window_seconds` (20 s by default), its
connections' rhythm over longer (pool_rhythm.py). Defaults in BehaviourLimits.

The shape of a computation (CPU-busy processes), ALL of:
- almost no I/O: read and written bytes of every kind (/proc/PID/io rchar + wchar: files,
  pipes and sockets) under 64 KiB per CPU-second; compressors, compilers, backups and encoders
  move megabytes per CPU-second;
- very few voluntary context switches, summed over its threads (task/*/status): under 50 per
  CPU-second; a worker that waits on I/O, locks or a GUI switches hundreds to thousands of times;
- its busy threads (over 0.1 core each, or over a third of the busiest thread in a throttled
  process) equally busy: the busiest at most 1.5 times the least; encoders, browsers and builds
  have uneven threads.
A process busy on a GPU (its share of the device given by the probe) is judged instead on that
share, flat over the window (each sample within 25% of the mean), and I/O under 64 KiB per
second: a GPU miner's CPU thread waits on the driver, so switches and threads say nothing.

`miner_behaviour`: that shape, and
- one to four established TCP connections together carrying only a trickle over the window:
  under 2 KiB/s each way, in messages averaging under 1 KiB (tcp_info from the kernel,
  tcp_flows.py), data both ways in their life; and
- one of them with a pool session's rhythm (pool_rhythm.py): jobs pushed unasked by the server
  (at least `min_pushes` more unasked than unanswered intervals over `push_memory_seconds`,
  30 min) and client messages in at least `min_client_intervals` intervals of
  `rhythm_window_seconds` (120 s). A license-server heartbeat or an RPC master's
  request-compute-reply has no such rhythm; a download, a video call, a sync client move more.
- Or no connection at all, and `randomx_memory` with librandomx mapped (a solo miner).

`randomx_memory`: that shape with CPU flat (each interval within 25% of the window's mean), a
resident anonymous mapping of RandomX's dataset or cache size (memory_shape.py: the mapping's own
resident bytes, in a tight window), and either librandomx mapped or a connection with the pool
rhythm. smaps, the costly read, is read only when all the rest holds, at most once per
`window_seconds` per process.

The figures above are named as Linux reads them; the same decisions, with the same thresholds,
judge what Windows gives through psutil (probe_readers.py says what stands for what there, and
what that costs in precision). Unreadable figures (another user's /proc/PID/io without
CAP_SYS_PTRACE, a protected Windows process) mean "cannot say": the signal is then not given.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Tuple

from minerwatch.detection.memory_shape import MapsView
from minerwatch.detection.pool_rhythm import PoolRhythm

MiB = 1 << 20
MAX_THREADS = 512  # a process with more threads is sampled without its per-thread figures
NO_MAPS = MapsView((), "")


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
    # the pool session's rhythm (pool_rhythm.py)
    rhythm_window_seconds: float = 120.0
    push_memory_seconds: float = 1800.0  # Monero pools push about a job per block (120 s): many in 30 min
    min_pushes: int = 2
    min_client_intervals: int = 2


@dataclass
class Sample:
    time: float
    cpu_seconds: float
    io_bytes: Optional[int]  # rchar + wchar; None when unreadable
    voluntary_switches: Optional[int]
    thread_cpu: Dict[int, float]  # tid -> cpu seconds
    sockets: Optional[Dict[int, Tuple[int, int, int, int]]]  # inode -> (acked, received, segs out, segs in)
    maps: MapsView = NO_MAPS  # RandomX-sized anonymous mappings, librandomx
    device_share: Optional[float] = None  # share of a GPU when the process is busy on one
    # Windows: `sockets` is one entry, the process's whole I/O, standing for this many connections
    connections: Optional[int] = None


@dataclass
class Track:
    samples: Deque[Sample] = field(default_factory=lambda: deque(maxlen=64))
    broken: str = ""  # the behaviour condition the last judged window broke ("" when it held)
    rhythm: PoolRhythm = field(default_factory=PoolRhythm)
    fed: float = float("-inf")  # time of the last sample fed to `rhythm`
    smaps_time: float = float("-inf")  # when smaps was last read...
    smaps: Tuple[str, int, str] = ("", 0, "")  # ...and what it showed: (RandomX kind, bytes, what)


class BehaviourCheck:
    """Samples busy processes and judges their last window."""

    def __init__(self, sampler, limits: Optional[BehaviourLimits] = None):
        self.sampler = sampler  # probe_readers.py: ProcfsSampler (Linux) or PsutilSampler (Windows)
        self.limits = limits or BehaviourLimits()

    def sample(self, pid: int, cpu_seconds: float, rss_bytes: int, now: float, round_id,
               device_share: Optional[float] = None) -> Sample:
        return self.sampler.sample(pid, cpu_seconds, now, round_id, device_share)

    def judge(self, track: Track, pid: Optional[int] = None) -> Dict[str, str]:
        """Signals (name -> reason) from the samples of the last window (`pid`: where to read
        smaps when the memory shape needs it)."""
        s = track.samples
        if not s:
            return {}
        last = s[-1]
        if last.time > track.fed:
            track.fed = last.time
            track.rhythm.add(last.time, last.sockets, self.limits.push_memory_seconds)
        first = None
        for sample in s:
            if last.time - sample.time >= self.limits.window_seconds:
                first = sample
        if first is None:
            return {}
        window = [x for x in s if x.time >= first.time]
        behaviour, memory, track.broken = self._judge(first, last, window, track, pid)
        out = {}
        if behaviour:
            out["miner_behaviour"] = behaviour
        if memory:
            out["randomx_memory"] = memory
        return out

    def _judge(self, a: Sample, b: Sample, window: List[Sample], track: Track,
               pid: Optional[int]) -> Tuple[str, str, str]:
        """(miner_behaviour reason, randomx_memory reason, the first behaviour condition that
        broke or "")."""
        shape, broken = self._shape(a, b, window)
        if not shape:
            return "", "", broken
        librandomx = b.maps.librandomx
        if a.sockets is None or b.sockets is None:
            memory = self._randomx(window, track, pid, f"{librandomx} mapped") if librandomx else ""
            return "", memory, "unreadable_sockets"
        if not b.sockets:
            memory = self._randomx(window, track, pid, f"{librandomx} mapped") if librandomx else ""
            if memory:
                return f"{shape}, no connection, and {memory}", memory, ""
            return "", "", "no_connection"
        session, broken = self._session(a, b, track)
        if session:
            why = f"{librandomx} mapped" if librandomx else "beside a pool session"
            memory = self._randomx(window, track, pid, why)
            return f"{shape}, {session}", memory, ""
        memory = self._randomx(window, track, pid, f"{librandomx} mapped") if librandomx else ""
        return "", memory, broken

    def _shape(self, a: Sample, b: Sample, window: List[Sample]) -> Tuple[str, str]:
        """(what the computation looks like, "") when miner-like, else ("", what broke)."""
        lim = self.limits
        seconds = b.time - a.time
        if seconds <= 0:
            return "", "no_cpu"
        if a.io_bytes is None or b.io_bytes is None:
            return "", "unreadable"
        if b.device_share is not None and all(x.device_share is not None for x in window):
            shares = [x.device_share for x in window]
            mean = sum(shares) / len(shares)
            if mean <= 0 or any(abs(x - mean) > lim.flat_tolerance * mean for x in shares):
                return "", "device_not_flat"
            io_rate = (b.io_bytes - a.io_bytes) / seconds
            if io_rate >= lim.io_bytes_per_cpu_second:
                return "", "io"
            return f"{mean:.2f} of a GPU, flat, for {seconds:.0f}s, {io_rate / 1024:.1f} KiB/s I/O", ""
        cpu = b.cpu_seconds - a.cpu_seconds
        if cpu <= 0:
            return "", "no_cpu"
        if a.voluntary_switches is None or b.voluntary_switches is None:
            return "", "unreadable"
        io_rate = (b.io_bytes - a.io_bytes) / cpu
        if io_rate >= lim.io_bytes_per_cpu_second:
            return "", "io"
        switch_rate = (b.voluntary_switches - a.voluntary_switches) / cpu
        if switch_rate >= lim.voluntary_switches_per_cpu_second:
            return "", "context_switches"
        busy = [(b.thread_cpu[t] - a.thread_cpu[t]) / seconds for t in b.thread_cpu if t in a.thread_cpu]
        # busy: over thread_busy_cores, or over a third of the busiest in a throttled process
        floor = min(lim.thread_busy_cores, max(busy, default=0.0) / 3)
        busy = [x for x in busy if x >= floor and x > 0]
        if not busy or max(busy) > lim.thread_imbalance * min(busy):
            return "", "threads_unequal"
        return (f"{cpu / seconds:.2f} cores for {seconds:.0f}s, {io_rate / 1024:.1f} KiB I/O and "
                f"{switch_rate:.1f} voluntary switches per CPU-second, {len(busy)} equally busy threads"), ""

    def _session(self, a: Sample, b: Sample, track: Track) -> Tuple[str, str]:
        """(the pool session seen, "") or ("", what broke), from the connections."""
        lim = self.limits
        seconds = b.time - a.time
        count = len(b.sockets) if b.connections is None else b.connections
        if count > lim.max_connections:
            return "", "connection_count"
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
        counts = track.rhythm.counts(b.time, lim.rhythm_window_seconds, lim.push_memory_seconds)
        rhythmic = [counts[i] for i in b.sockets if i in counts and counts[i][0] >= lim.min_pushes
                    and counts[i][1] >= lim.min_client_intervals]
        if not rhythmic:
            return "", "no_pool_rhythm"
        pushes, client = max(rhythmic)
        return (f"{count} connection(s) carrying {sent / seconds:.0f} B/s out and "
                f"{received / seconds:.0f} B/s in, with a pool session's rhythm: {pushes} messages "
                f"pushed unasked in {lim.push_memory_seconds:.0f}s, client messages in {client} "
                f"intervals of {lim.rhythm_window_seconds:.0f}s"), ""

    def _randomx(self, window: List[Sample], track: Track, pid: Optional[int], why: str) -> str:
        """The memory-shape reason, or "": CPU flat and a RandomX-resident mapping (smaps)."""
        b = window[-1]
        if not b.maps.candidates or pid is None or b.device_share is not None:
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
        if b.time - track.smaps_time >= self.limits.window_seconds:
            track.smaps_time = b.time
            track.smaps = self.sampler.randomx(pid, b)
        kind, resident, what = track.smaps
        if not kind:
            return ""
        return (f"{what} of {resident / MiB:.0f} MiB (RandomX {kind}), CPU flat at "
                f"{mean:.2f} cores, {why}")
