"""Keep the exporter's memory flat under many connections.

The HTTP server answers each connection in a thread of its own, and glibc gives threads their own
malloc arenas (up to 8 per core): after bursts of 64 connections the exporter kept 15-20 MiB more
than before, growing with each burst (tests/benchmark/load.py). Two arenas are enough for an
exporter that allocates little per request; with them the resident size stays flat.

A scan of 10,000 processes also builds a few big short-lived blocks (lists and dicts of hundreds
of KiB). glibc raises its mmap threshold to the biggest block freed so far, after which such
blocks come from the heap and leave it fragmented: about 2 MiB more at 10,000 processes than at
4,000. A fixed threshold keeps them in mappings of their own, given back when freed.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt parameter numbers (glibc's malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's default start value, kept fixed


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (a no-op elsewhere); True when glibc took it. Call it before
    threads start: arenas already made stay."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = _libc_function("mallopt")
    if mallopt is None:  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, arenas) == 1


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Blocks of `threshold` bytes and more get mappings of their own, whatever was freed before
    (glibc otherwise raises the threshold as big blocks are freed); True when glibc took it."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1


def release_free_memory() -> bool:
    """Give the heap's free pages back to the system (glibc's malloc_trim); True if any went.

    Start-up (the config's YAML, compiled patterns, the data files) leaves about 1 MiB of freed
    heap that glibc keeps otherwise: called once the collectors are built, and after a reload."""
    if not sys.platform.startswith("linux"):
        return False
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim(0) == 1


def _libc_function(name: str):
    """A function of the C library the interpreter runs on, or None. The interpreter's own symbols
    include it: no ctypes.util.find_library, which runs ldconfig in a subprocess."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
