"""RandomX in a process's memory: a resident mapping of its dataset or cache size, librandomx.

RandomX (Monero and its forks) hashes out of a 2080 MiB dataset (fast mode: RANDOMX_DATASET_BASE_SIZE
2 GiB + RANDOMX_DATASET_EXTRA_SIZE 32 MiB - 64 bytes) or a 256 MiB cache (light mode:
RANDOMX_ARGON_MEMORY 262144 KiB), sources: tevador/RandomX src/configuration.h and its
specification. Each is one allocation, so one anonymous mapping (or hugetlb mapping,
`/anon_hugepage`), fully touched. What is compared is the mapping's own resident size (smaps
`Rss` plus hugetlb pages), not its virtual size nor the process's total: the kernel may merge a
neighbour (a thread stack, 8 MiB) into the mapping, whose resident part is small, hence the
window of `SLACK` above each size. A 6000x6000 float64 matrix (275 MiB) is outside it.

Cost, per probe of a busy process: /proc/PID/maps, at most MAPS_BYTES, for candidates (anonymous
mappings of at least the cache's size) and for a mapped file named librandomx*. Only when a
candidate exists and the process already looks like a miner otherwise (behaviour.py decides)
is /proc/PID/smaps read, the kernel's costly walk of every page table: at most SMAPS_BYTES, and
no further than the last candidate.

On Windows (probe_readers.PsutilSampler) no reader gives one private allocation's size: the
process's committed private bytes are compared instead (`private_randomx_kind`). A miner's process
holds the dataset and, beside it, the cache it was built from (XMRig: "2080+256 MB"), a 2 MiB
scratchpad per hashing thread and its own code and heap, so the window above each size is
the cache (for the dataset), `SCRATCHPAD` per thread and `PRIVATE_SLACK`: wider than the
mapping's window, so the rest of the check (behaviour.py) carries more of the precision there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

MiB = 1 << 20
DATASET_BYTES = 2147483648 + 33554368  # RandomX dataset: base + extra size
CACHE_BYTES = 262144 * 1024  # RandomX cache: Argon2 memory, 256 MiB
GIB_PAGES_DATASET = 3 << 30  # the dataset on 1 GiB pages: three of them
SLACK = 12 * MiB  # an adjacent thread stack merged in (8 MiB), malloc headers, alignment pages
MAX_CANDIDATE_BYTES = 4 << 30
SCRATCHPAD = 2 * MiB  # RandomX scratchpad (RANDOMX_SCRATCHPAD_L3), one per hashing thread
PRIVATE_SLACK = 64 * MiB  # a miner's own code, heap and thread stacks beside RandomX's memory
MAX_SCRATCHPADS = 256  # threads counted for scratchpads, whatever the process holds
MAPS_BYTES = 4 * MiB
SMAPS_BYTES = 4 * MiB
_CHUNK = 64 * 1024
_HEX = frozenset(bytes([c]) for c in b"0123456789abcdef")


@dataclass(frozen=True)
class MapsView:
    candidates: Tuple[Tuple[int, int], ...]  # (start, end) of anonymous mappings of RandomX size or more
    librandomx: str  # the basename of a mapped librandomx*, "" if none
    threads: int = 0  # Windows: the process's threads, for the private-bytes window


def randomx_kind(resident: int) -> str:
    """'dataset', 'cache' or '' for a mapping's resident bytes."""
    if DATASET_BYTES <= resident <= DATASET_BYTES + SLACK or resident == GIB_PAGES_DATASET:
        return "dataset"
    if CACHE_BYTES <= resident <= CACHE_BYTES + SLACK:
        return "cache"
    return ""


def private_randomx_kind(private: int, threads: int) -> str:
    """'dataset', 'cache' or '' for a whole process's committed private bytes (Windows)."""
    extra = SCRATCHPAD * min(max(threads, 1), MAX_SCRATCHPADS) + PRIVATE_SLACK
    if DATASET_BYTES <= private <= DATASET_BYTES + CACHE_BYTES + extra:
        return "dataset"
    if CACHE_BYTES <= private <= CACHE_BYTES + extra:
        return "cache"
    return ""


def _read_bounded(path: str, limit: int) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def read_maps(base: str) -> MapsView:
    """Candidate mappings and librandomx, from /proc/PID/maps (at most MAPS_BYTES of it)."""
    raw = _read_bounded(f"{base}/maps", MAPS_BYTES)
    candidates = []
    librandomx = ""
    if raw:
        for line in raw.splitlines():
            fields = line.split(None, 5)
            if len(fields) < 5:
                continue  # the line cut by the bound
            path = fields[5].strip() if len(fields) > 5 else b""
            if path and not path.startswith((b"/anon_hugepage", b"/dev/hugepages", b"[heap]")):
                if not librandomx:
                    name = path.rsplit(b"/", 1)[-1]
                    if name.startswith(b"librandomx"):
                        librandomx = name[:64].decode("ascii", "replace")
                continue
            start, _, end = fields[0].partition(b"-")
            try:
                low, high = int(start, 16), int(end, 16)
            except ValueError:
                continue
            if CACHE_BYTES <= high - low <= MAX_CANDIDATE_BYTES:
                candidates.append((low, high))
    return MapsView(tuple(candidates), librandomx)


def resident_randomx(base: str, candidates: Tuple[Tuple[int, int], ...]) -> Tuple[str, int]:
    """(kind, resident bytes) of the first candidate whose resident size is RandomX's, from
    /proc/PID/smaps read no further than the last candidate; ("", 0) if none."""
    if not candidates:
        return "", 0
    wanted = {start for start, _ in candidates}
    last = max(wanted)
    try:
        f = open(f"{base}/smaps", "rb")
    except OSError:
        return "", 0
    with f:
        pending = b""
        read = 0
        current: Optional[int] = None
        resident = 0
        while read < SMAPS_BYTES:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            read += len(chunk)
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                if line[:1] in _HEX:  # a mapping's header line (its fields start with a capital)
                    if current is not None:
                        kind = randomx_kind(resident)
                        if kind:
                            return kind, resident
                        if current == last:
                            return "", 0
                    start = line.split(b"-", 1)[0]
                    try:
                        address = int(start, 16)
                    except ValueError:
                        address = -1
                    current = address if address in wanted else None
                    resident = 0
                elif current is not None and line.startswith((b"Rss:", b"Private_Hugetlb:", b"Shared_Hugetlb:")):
                    resident += int(line.split()[1]) * 1024
        if current is not None:
            kind = randomx_kind(resident)
            if kind:
                return kind, resident
    return "", 0
