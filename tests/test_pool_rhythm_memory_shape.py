"""Issue 23: the pure parts of the behaviour check, on counters and /proc text written here.

The pool rhythm (pool_rhythm.py) on counter sequences shaped like a pool session, a license
heartbeat, an RPC worker and a heartbeat answer that straddles a sample; the memory shape
(memory_shape.py) on maps and smaps text: a RandomX cache, a 6000x6000 float64 matrix, a
mapping merged with a thread stack, librandomx, and a hostile, huge maps file.
"""

from __future__ import annotations

from minerwatch.detection.memory_shape import CACHE_BYTES, MAPS_BYTES, read_maps, resident_randomx
from minerwatch.detection.pool_rhythm import PoolRhythm

MiB = 1 << 20


def _feed(intervals, interval=5.0):
    """A PoolRhythm fed one socket's counters: `intervals` lists (segs out, segs in) per interval."""
    rhythm = PoolRhythm()
    acked = received = out = got = 0
    rhythm.add(0.0, {7: (acked, received, out, got)}, 600.0)
    for i, (d_out, d_in) in enumerate(intervals, 1):
        out, got = out + d_out, got + d_in
        acked, received = acked + 100 * d_out, received + 200 * d_in
        rhythm.add(i * interval, {7: (acked, received, out, got)}, 600.0)
    return rhythm.counts(len(intervals) * interval, 120.0, 600.0)[7]


def test_a_pool_session_has_the_rhythm_and_the_look_alikes_do_not():
    # shares answered at once every 15 s, a job pushed unasked every 40 s
    pool = [(1, 1) if i % 3 == 0 else (0, 1) if i % 8 == 4 else (0, 0) for i in range(48)]
    pushes, client = _feed(pool)
    assert pushes >= 2 and client >= 2
    # a license heartbeat every 30 s: asked and answered in one interval
    assert _feed([(1, 1) if i % 6 == 0 else (0, 0) for i in range(48)])[0] == 0
    # the answer straddling a sample: an unanswered interval, then an unasked one, cancelled
    assert _feed([(1, 0), (0, 1), (0, 0)] * 16)[0] == 0
    # an RPC worker: a task arrives, compute, the result leaves
    assert _feed([(0, 1), (0, 0), (0, 0), (1, 0)] * 12)[0] == 0
    # a server's own heartbeat answered at once by the client
    assert _feed([(1, 1), (0, 0)] * 24)[0] == 0


def test_rhythm_forgets_what_is_older_than_its_memory_and_closed_connections():
    rhythm = PoolRhythm()
    rhythm.add(0.0, {1: (0, 0, 0, 0), 2: (0, 0, 0, 0)}, 30.0)
    for t in range(1, 40):
        rhythm.add(float(t), {1: (t, t, t, 2 * t), 2: (0, 0, 0, t)}, 30.0)
    assert rhythm.counts(39.0, 120.0, 30.0)[2] == (31, 0)  # pushes of the last 30 s only (9 to 39)
    rhythm.add(40.0, {1: (40, 40, 40, 80)}, 30.0)
    assert set(rhythm.sessions) == {1}
    rhythm.add(41.0, None, 30.0)  # unreadable: the chain breaks
    assert not rhythm.sessions


def _smaps_entry(start, size, rss, path=""):
    return (f"{start:x}-{start + size:x} rw-p 00000000 00:00 0 {path}\n"
            f"Size: {size // 1024} kB\nKernelPageSize: 4 kB\nRss: {rss // 1024} kB\nPss: {rss // 1024} kB\n"
            f"Private_Hugetlb: 0 kB\nVmFlags: rd wr mr mw me ac\n")


def _process(tmp_path, mappings, lib="/usr/lib/x86_64-linux-gnu/libm.so.6"):
    base = tmp_path / "proc" / "42"
    base.mkdir(parents=True)
    maps, smaps = [], []
    start = 0x7F0000000000
    maps.append(f"{0x7EFF00000000:x}-{0x7EFF00010000:x} r-xp 00000000 fe:00 1234 {lib}\n")
    for size, rss in mappings:
        maps.append(f"{start:x}-{start + size:x} rw-p 00000000 00:00 0 \n")
        smaps.append(_smaps_entry(start, size, rss))
        start += size + 0x1000
    (base / "maps").write_text("".join(maps))
    (base / "smaps").write_text("".join(smaps))
    return str(base)


def test_the_mappings_own_resident_size_decides(tmp_path):
    cache = CACHE_BYTES + 4096  # posix_memalign's header page
    matrix = 6000 * 6000 * 8 + 4096
    base = _process(tmp_path, [(matrix, matrix), (cache, cache)])
    view = read_maps(base)
    assert len(view.candidates) == 2 and view.librandomx == ""
    assert resident_randomx(base, view.candidates) == ("cache", cache)
    only_matrix = _process(tmp_path / "m", [(matrix, matrix)])
    assert resident_randomx(only_matrix, read_maps(only_matrix).candidates) == ("", 0)  # 275 MiB: not RandomX
    # a cache merged with a thread stack: 264 MiB of addresses, the cache and a little resident
    merged = _process(tmp_path / "s", [(CACHE_BYTES + 8 * MiB, CACHE_BYTES + 64 * 1024)])
    assert resident_randomx(merged, read_maps(merged).candidates)[0] == "cache"
    # a cache-sized region only half touched (reserved, not used): not resident RandomX memory
    untouched = _process(tmp_path / "u", [(CACHE_BYTES, CACHE_BYTES // 2)])
    assert resident_randomx(untouched, read_maps(untouched).candidates) == ("", 0)


def test_librandomx_is_seen_by_its_file_name(tmp_path):
    base = _process(tmp_path, [], lib="/usr/lib/x86_64-linux-gnu/librandomx.so.0.0.0")
    assert read_maps(base).librandomx == "librandomx.so.0.0.0"


def test_a_huge_maps_file_is_read_only_to_its_bound(tmp_path):
    base = tmp_path / "proc" / "43"
    base.mkdir(parents=True)
    line = f"{0x7F0000000000:x}-{0x7F0000001000:x} rw-p 00000000 00:00 0 \n"
    (base / "maps").write_text(line * (2 * MAPS_BYTES // len(line)))
    (base / "smaps").write_text("")
    view = read_maps(str(base))
    assert view.candidates == () and view.librandomx == ""
    assert resident_randomx(str(base), ((1, 2),)) == ("", 0)
