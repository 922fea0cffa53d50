"""Chain of custody: the record of every bundle `minerwatch evidence` wrote, kept on the host for
the exporter to pass on to Prometheus, so the manifest's hash is kept where the people watched
cannot rewrite it.

`evidence` appends one JSON line per bundle to `<state dir>/evidence-records.jsonl`:

    {"time": "2026-12-07T17:01:57Z", "time_seconds": 1796662917.0, "pid": 4242,
     "bundle": "/srv/case-17/20261207T170157.123456Z-pid4242", "manifest_sha256": "9f2c..."}

The file is written by root (the investigator) in a directory the watched users cannot write;
it is bounded (past MAX_FILE_BYTES it is renamed to `.1`, replacing the one before, so at most
two files). The exporter's `evidence` collector exposes the recent records
(`minerwatch_evidence_bundle_info{pid, manifest_sha256}`): once Prometheus has scraped them, a
bundle rewritten on the host, manifest and all, no longer matches what Prometheus keeps.

The file is still the host's: it is read bounded (its last MAX_READ_BYTES), a line that is not a
valid record is skipped and counted, and nothing here raises on its content.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

from minerwatch.host.files import BoundedRead, open_regular

RECORDS = "evidence-records.jsonl"
MAX_FILE_BYTES = 256 << 10  # about 1,000 records; past it the file is rotated to `.1`
MAX_READ_BYTES = 2 * MAX_FILE_BYTES  # the exporter reads at most this much, from the end
MAX_LINE_BYTES = 8 << 10  # a record is about 300 bytes; a longer line is not one
RECENT_COUNT = 16  # bundles the exporter exposes
RECENT_SECONDS = 7 * 86400  # and none older than this
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

try:
    import fcntl
except ImportError:  # Windows: appends of one small line are not interleaved there either
    fcntl = None


def default_state_dir(rootfs: str = "/") -> str:
    """Where the records are kept unless --state.dir says otherwise: the host's
    /var/lib/minerwatch (systemd's StateDirectory=minerwatch; under --path.rootfs in a container),
    %ProgramData%\\minerwatch on Windows (beside the configuration the installer writes there)."""
    if sys.platform == "win32":
        return os.path.join(os.environ.get("ProgramData", r"C:\ProgramData"), "minerwatch")
    return os.path.join(rootfs, "var", "lib", "minerwatch")


def records_path(state_dir: str) -> str:
    return os.path.join(state_dir, RECORDS)


@dataclass(frozen=True)
class Record:
    """One bundle as recorded at collection."""

    time_seconds: float
    pid: int
    bundle: str
    manifest_sha256: str

    def line(self) -> bytes:
        when = dt.datetime.fromtimestamp(self.time_seconds, dt.timezone.utc)
        body = {"time": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "time_seconds": round(self.time_seconds, 3), "pid": self.pid, "bundle": self.bundle,
                "manifest_sha256": self.manifest_sha256}
        return json.dumps(body, ensure_ascii=True).encode() + b"\n"


def append(state_dir: str, record: Record) -> str:
    """Append `record` to the state directory's record file (created 0644, the directory 0755 if
    missing); returns the file's path. OSError when it cannot be written (not root, read-only)."""
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    path = records_path(state_dir)
    line = record.line()
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # two collections at once: one rotates, the other waits
                try:
                    current = os.stat(path, follow_symlinks=False).st_ino
                except FileNotFoundError:
                    current = None
                if os.fstat(fd).st_ino != current:
                    continue  # rotated while this run waited: append to the new file instead
            size = os.fstat(fd).st_size
            if size and size + len(line) > MAX_FILE_BYTES:
                os.replace(path, path + ".1")  # the older half kept; the one before that goes
                continue
            os.write(fd, line)
            os.fsync(fd)
            return path
        finally:
            os.close(fd)


def parse(data: bytes, whole: bool) -> Tuple[List[Record], int]:
    """Records in `data` and the number of lines that are not records. Unless `whole`, the first
    line is taken to be cut by a read from the middle of the file and is skipped uncounted."""
    lines = data.split(b"\n")
    if not whole and lines:
        lines = lines[1:]
    records, invalid = [], 0
    for raw in lines:
        if not raw.strip():
            continue
        record = _record(raw)
        if record is None:
            invalid += 1
        else:
            records.append(record)
    return records, invalid


def _record(raw: bytes) -> Optional[Record]:
    if len(raw) > MAX_LINE_BYTES:
        return None
    try:
        body = json.loads(raw)
        pid, when, bundle, digest = body["pid"], body["time_seconds"], body["bundle"], body["manifest_sha256"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 1 << 32:
        return None
    if isinstance(when, bool) or not isinstance(when, (int, float)) or not 0 <= when < 1e11:
        return None
    if not isinstance(bundle, str) or not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        return None
    return Record(float(when), pid, bundle, digest)


def read(path: str, limit: int = MAX_READ_BYTES) -> Tuple[List[Record], int]:
    """The records of a record file, from its last `limit` bytes, and how many lines were not
    records. OSError when it cannot be opened (absent, not a regular file)."""
    with open_regular(path, follow=False) as f:
        size = os.fstat(f.fileno()).st_size
        start = max(size - limit, 0)
        f.seek(start)
        data = b""
        while len(data) < limit:  # the file may grow meanwhile: never past the bound
            chunk = f.read(limit - len(data))
            if not chunk:
                break
            data += chunk
    return parse(data, whole=start == 0)


def recent(records: List[Record], now: float, count: int = RECENT_COUNT,
           max_age: float = RECENT_SECONDS) -> List[Record]:
    """The last `count` distinct bundles (by manifest hash) collected within `max_age` of `now`."""
    out, seen = [], set()
    for record in sorted(records, key=lambda r: r.time_seconds, reverse=True):
        if now - record.time_seconds > max_age or record.time_seconds > now + 86400:
            continue  # too old, or dated a day ahead: a clock set wrong, not a record to trust
        key = (record.pid, record.manifest_sha256)
        if key in seen:
            continue
        seen.add(key)
        out.append(record)
        if len(out) == count:
            break
    return out


def read_all(path: str, limit: int) -> List[Record]:
    """Every record of a record file (for `evidence verify --records`); OSError when it cannot be
    read or is larger than `limit`."""
    with open_regular(path) as f:
        reader = BoundedRead(f, limit)
        data = reader.read()
    if reader.truncated:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes, which no record file is", path)
    return parse(data, whole=True)[0]
