"""Host files opened without letting the host hang or flood the exporter.

A busy process chooses what the exporter reads about it: its argv names a "script", its working
directory holds a "config.json", its descriptors point at "*.json". Any of these can be a FIFO
(an open that never returns), /dev/zero (a read that never ends) or a huge sparse file. Every
read of a file a process points at goes through `open_regular`: regular files only, opened
without blocking, checked again after the open (the path may be swapped in between). What is read
from the descriptor it returns is bounded by the reader (`BoundedRead`): a file can grow while it
is read.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO, Iterator, Optional

# O_NONBLOCK: opening a FIFO returns at once, and a file under another process's write lease
# fails instead of waiting for the lease to break.
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CHUNK = 1 << 20


class NotRegularFile(OSError):
    """A FIFO, a device, a directory, or a symbolic link where none is followed."""


def open_regular(path: str, follow: bool = True) -> BinaryIO:
    """The file opened for binary reading; OSError when it is not a regular file or cannot be
    opened. A /proc/PID/exe or /proc/PID/fd/N link opens its target, a deleted one too; with
    `follow=False` a symbolic link at `path` itself is refused (magic /proc links need `follow`)."""
    info = os.stat(path) if follow else os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFile(errno.EINVAL, "not a regular file", path)
    fd = os.open(path, _FLAGS if follow else _FLAGS | _NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", path)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str, limit: int) -> Optional[bytes]:
    """At most `limit` bytes of a regular file; None when it is not one or cannot be read."""
    try:
        with open_regular(path) as f:
            return BoundedRead(f, limit).read()
    except OSError:
        return None


class BoundedRead:
    """At most `limit` bytes of an open file, in chunks. Once they are read, `truncated` says
    whether the file held more and `size_seen` how much it held (its size after the read, or at
    least one byte past the bound for a file that grows or reports no size, as /proc files do)."""

    def __init__(self, f: BinaryIO, limit: int):
        self.f, self.limit = f, limit
        self.copied = 0
        self.truncated = False
        self.size_seen = 0

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        while self.copied < self.limit:
            chunk = self.f.read(min(size, self.limit - self.copied))
            if not chunk:  # end of file (or None: nothing to read without waiting)
                break
            self.copied += len(chunk)
            yield chunk
        self.truncated = self.copied >= self.limit and bool(self.f.read(1))
        self.size_seen = max(self.copied + self.truncated, os.fstat(self.f.fileno()).st_size)

    def read(self) -> bytes:
        return b"".join(self.chunks())
