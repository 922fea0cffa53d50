"""Keep the exporter's memory flat under many connections.

The HTTP server answers each connection in a thread of its own, and glibc gives threads their own
malloc arenas (up to 8 per core): after bursts of 64 connections the exporter kept 15-20 MiB more
than before, growing with each burst (tests/benchmark/load.py). Two arenas are enough for an
exporter that allocates little per request; with them the resident size stays flat.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8  # mallopt parameter number (glibc's malloc.h)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (a no-op elsewhere); True when glibc took it. Call it before
    threads start: arenas already made stay."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, arenas) == 1
