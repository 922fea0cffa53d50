"""Writing an evidence bundle whole or not at all, and the hashes that make it checkable.

A bundle is a directory: `evidence.json`, the copies, an optional summary for people,
`SHA256SUMS` (the same hashes for `sha256sum -c`), and `MANIFEST.json` listing the sha256 of
every file plus a hash of the manifest itself. It is
assembled in a locked `.partial-*` directory and renamed into place when whole; every file in it
is written to a temporary name, fsynced and renamed (`write_atomic`).
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import secrets
import tempfile
from typing import Callable, Optional, Tuple

from minerwatch.host.files import NotRegularFile, open_regular
from minerwatch.investigation.interrupts import shielded

try:
    import fcntl
except ImportError:  # Windows: bundles being written are not locked, nor swept after a kill
    fcntl = None

FORMAT = "minerwatch-evidence/1"
DOCUMENT = "evidence.json"
MANIFEST = "MANIFEST.json"
EXECUTABLE = "executable"
# The same hashes as MANIFEST.json in coreutils' format: `sha256sum -c SHA256SUMS` in the bundle
# checks it with no minerwatch at hand (an expert witness's own tools). Bundles of minerwatch
# before it have none; `verify` does not need it.
SHA256SUMS = "SHA256SUMS"
PARTIAL = ".partial-"  # a bundle being written; renamed when whole


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    """sha256 of a file in a bundle: a regular file, not a link (a bundle holds neither)."""
    h = hashlib.sha256()
    with open_regular(path, follow=False) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def failure_reason(exc: OSError) -> str:
    if isinstance(exc, NotRegularFile):
        return "not_regular_file"
    return {13: "permission", 1: "permission", 2: "vanished", 3: "vanished"}.get(exc.errno or 0, "io")


def write_atomic(path: str, chunks) -> Tuple[str, int]:
    """Write to a temporary file beside `path`, fsync, rename: never a half-written file."""
    h, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return h.hexdigest(), size


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without its own hash field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


Summarise = Callable[[dict], Optional[Tuple[str, bytes]]]  # the final document -> (file name, bytes)


def write_bundle(out_dir: str, collected, summarise: Optional[Summarise] = None) -> Tuple[str, str]:
    """Write one bundle (`evidence.Collected`) under `out_dir`; returns (bundle path, sha256 of
    MANIFEST.json). `summarise`, given the final document, makes the summary for people, which
    the manifest covers like every other file.

    The bundle is assembled in a locked `.partial-*` directory and renamed into place when
    complete, so a bundle under its final name is always whole; whatever stops the writing (an
    error, a stop signal, the deadline) removes the `.partial-*` directory on its way out."""
    os.makedirs(out_dir, exist_ok=True)
    sweep_partials(out_dir)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    final = os.path.join(out_dir, f"{stamp}-pid{collected.pid}")
    work = os.path.join(out_dir, PARTIAL + secrets.token_hex(8))  # named first: removable from the start
    lock = None
    try:
        lock = _claim(work)
        files = []
        document = collected.document
        for name, source in collected.copies.items():
            target = os.path.join(work, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                digest, size = write_atomic(target, source.chunks())
            except OSError as exc:  # the process exited, or the file went, between find and copy
                document["unreadable"][f"copy:{name}"] = failure_reason(exc)
                continue
            files.append({"path": name, "sha256": digest, "size_bytes": size,
                          "source_size_bytes": source.size_seen, "truncated": source.truncated})
        if EXECUTABLE in collected.copies:
            copied = next((f for f in files if f["path"] == EXECUTABLE), None)
            document["executable"]["copy_sha256_matches"] = bool(copied) and copied["sha256"] == document[
                "executable"]["sha256"]
            document["executable"]["copy_truncated"] = bool(copied) and copied["truncated"]
        text = json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False).encode() + b"\n"
        digest, size = write_atomic(os.path.join(work, DOCUMENT), [text])
        files.insert(0, {"path": DOCUMENT, "sha256": digest, "size_bytes": size})
        summary = summarise(document) if summarise is not None else None
        if summary is not None:
            name, data = summary
            digest, size = write_atomic(os.path.join(work, name), [data])
            files.insert(1, {"path": name, "sha256": digest, "size_bytes": size})
        # Names in a bundle are ours ([A-Za-z0-9._/-]), so each is one plain line for sha256sum.
        sums = "".join(f"{entry['sha256']}  {entry['path']}\n" for entry in files).encode()
        digest, size = write_atomic(os.path.join(work, SHA256SUMS), [sums])
        files.append({"path": SHA256SUMS, "sha256": digest, "size_bytes": size})
        manifest = {"format": FORMAT, "created": document["collected_at"], "files": files}
        manifest["manifest_sha256"] = manifest_digest(manifest)
        body = json.dumps(manifest, indent=2).encode() + b"\n"
        manifest_file_sha, _ = write_atomic(os.path.join(work, MANIFEST), [body])
        os.chmod(work, 0o755)
        os.rename(work, final)
    except BaseException:
        with shielded():
            _remove_tree(work)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    return final, manifest_file_sha


def _claim(work: str) -> Optional[int]:
    """Create the `.partial-*` directory and hold an flock on it while the bundle is written, so
    that another run's `sweep_partials` leaves it alone; the descriptor holding the lock."""
    os.mkdir(work, 0o700)
    if fcntl is None:
        return None
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another run's sweep took it in the instant between mkdir and flock
        os.close(fd)
        raise OSError(errno.EBUSY, "removed by another run as it was created", work)
    except OSError:  # no locks on this filesystem (some network ones): no sweep removes it either
        pass
    if os.fstat(fd).st_nlink == 0:
        os.close(fd)
        raise OSError(errno.EBUSY, "removed by another run as it was created", work)
    return fd


def sweep_partials(out_dir: str) -> None:
    """Remove the `.partial-*` directories that runs killed outright (SIGKILL, a power cut) left
    in `out_dir`: those no running collection holds locked. Without flock (Windows), none."""
    if fcntl is None:
        return
    try:
        with os.scandir(out_dir) as entries:
            left = [e.path for e in entries if e.name.startswith(PARTIAL) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for path in left:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a collection running now holds it, or this filesystem has no locks
            continue
        else:
            _remove_tree(path)
        finally:
            os.close(fd)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
