"""Host files opened without letting the host hang or flood the exporter.

A busy process chooses what the exporter reads about it: its argv names a "script", its working
directory holds a "config.json", its descriptors point at "*.json". Any of these can be a FIFO
(an open that never returns), /dev/zero (a read that never ends) or a huge sparse file. Every
read of a file a process points at goes through `open_regular`: regular files only, opened
without blocking, checked again after the open (the path may be swapped in between).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO, Optional

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)


def open_regular(path: str) -> BinaryIO:
    """The file opened for binary reading; OSError when it is not a regular file or cannot be
    opened. A /proc/PID/exe or /proc/PID/fd/N link opens its target, a deleted one too."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{path}: not a regular file")
    fd = os.open(path, _FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str, limit: int) -> Optional[bytes]:
    """At most `limit` bytes of a regular file; None when it is not one or cannot be read."""
    try:
        with open_regular(path) as f:
            return f.read(limit)
    except OSError:
        return None
