"""`minerwatch evidence`: one bundle per suspect process, for investigators, and its verification.

A bundle is a directory holding `evidence.json` (the host, the process, its executable, network
connections, GPU use, antivirus exclusions, the signals it matched), optionally a copy of the
executable and of the miner configuration files it has open or in its working directory, and
`MANIFEST.json`: the sha256 of every file and a hash of the manifest itself. `verify` recomputes
them, so a change after collection is detectable; a deliberate one, files and manifest rewritten
together, only against the manifest's hash printed at collection and kept elsewhere (the case
ticket), and `verify` says which of the two it checked.

Collection only reads: /proc files, readlinks, the executable through /proc/PID/exe. It never
signals, traces or stops the process. Every string from the host goes through `host_text`. The
host's files are the process owner's to swap or grow while they are read: each is opened once,
without blocking, as a regular file only (`open_regular`), and copied from that descriptor at most
a bound (`BoundedRead`); a copy cut at the bound says so in the manifest, with the size seen. A
bundle is written into a locked `.partial-*` directory and renamed when whole; stop signals and
the per-process deadline remove it (`interrupts`), and a run removes those of runs that were
killed outright.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import platform
import re
import secrets
import socket
import stat as stat_module
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import click

from minerwatch import __version__
from minerwatch.detection.allowlist import MAX_HASHED_BYTES
from minerwatch.options import FiniteFloatRange
from minerwatch.host.files import BoundedRead, NotRegularFile, open_regular, read_regular
from minerwatch.investigation.interrupts import Stopped, TimedOut, deadline, end_by, shielded, stop_signals_raise
from minerwatch.text import host_text

try:
    import fcntl
except ImportError:  # Windows: bundles being written are not locked, nor swept after a kill
    fcntl = None

FORMAT = "minerwatch-evidence/1"
DOCUMENT = "evidence.json"
MANIFEST = "MANIFEST.json"
EXECUTABLE = "executable"
FILES_DIR = "files"
MAX_CONFIG_BYTES = 1 << 20  # a miner config is a few KiB; a bigger file is copied this far
MAX_CONFIG_FILES = 16  # configs copied per process: decoys must not fill the disk
MAX_EXECUTABLE_BYTES = MAX_HASHED_BYTES  # only a hashed executable is copied; one that grew is cut
MAX_ENVIRON_BYTES = 8 << 20  # the kernel caps argv and environment together at 6 MiB
MAX_MANIFEST_BYTES = 64 << 20
MAX_CWD_ENTRIES = 512  # a working directory with more is not searched further
MAX_CHAIN = 64  # ppid chain steps; a loop is impossible in procfs, a bound is cheap
MAX_OPEN_FILES = 4096
# What makes a file a miner's configuration: XMRig's JSON ("pools", "donate-level", "algo"),
# Stratum URLs in any format, the common wallet/coin keys of other miners' configs.
CONFIG_MARKERS = re.compile(
    rb'stratum\d?\+(?:tcp|ssl|tls|udp)://|"pools"\s*:|donate[-_]level|"(?:algo|coin|wallet|rig-id)"\s*:'
    rb"|\bnicehash\b|\bpool[_-]?(?:url|address)\b",
    re.IGNORECASE,
)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
PARTIAL = ".partial-"  # a bundle being written; renamed when whole
DEFAULT_TIMEOUT = 120.0


class EvidenceError(Exception):
    """The process cannot be collected at all (gone, no such pid)."""


# -- time and hashes -------------------------------------------------------------------------------


def utc(epoch: Optional[float]) -> Optional[str]:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    """sha256 of a file in a bundle: a regular file, not a link (a bundle holds neither)."""
    h = hashlib.sha256()
    with open_regular(path, follow=False) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _reason(exc: OSError) -> str:
    if isinstance(exc, NotRegularFile):
        return "not_regular_file"
    return {13: "permission", 1: "permission", 2: "vanished", 3: "vanished"}.get(exc.errno or 0, "io")


# -- reading what the process table does not keep --------------------------------------------------


@dataclass
class Reads:
    """Reads of one process through the procfs root; failures are noted, never raised."""

    procfs: str
    pid: int
    unreadable: Dict[str, str] = field(default_factory=dict)  # what -> reason

    def path(self, *parts: str) -> str:
        return os.path.join(self.procfs, str(self.pid), *parts)

    def attempt(self, what: str, fn, default=None):
        try:
            return fn()
        except OSError as exc:
            self.unreadable[what] = _reason(exc)
            return default

    def environ_names(self) -> Optional[List[str]]:
        """Names only: values hold other people's secrets and are not evidence of mining."""

        def read():
            with open_regular(self.path("environ")) as f:
                reader = BoundedRead(f, MAX_ENVIRON_BYTES)
                raw = reader.read()
            if reader.truncated:
                self.unreadable["environ"] = "truncated"
            names = {item.partition(b"=")[0] for item in raw.split(b"\0") if b"=" in item}
            return sorted(host_text(n, 256) for n in names)

        return self.attempt("environ", read)

    def open_files(self) -> Optional[List[Dict[str, str]]]:
        def read():
            out = []
            # /proc lists descriptors in ascending order: the first MAX_OPEN_FILES are the lowest.
            fds = sorted(_names(self.path("fd"), MAX_OPEN_FILES), key=lambda n: int(n) if n.isdigit() else -1)
            for fd in fds:
                try:
                    target = os.readlink(self.path("fd", fd))
                except OSError:
                    continue  # closed meanwhile
                out.append({"fd": fd, "target": host_text(target, 4096)})
            return out

        return self.attempt("open_files", read)


def parent_and_session(procfs: str, pid: int) -> Tuple[int, int, str]:
    """(ppid, session id, comm) from /proc/PID/stat."""
    with open(os.path.join(procfs, str(pid), "stat"), "rb") as f:
        data = f.read(4096)  # one line of numbers and a 16-byte name
    close = data.rfind(b")")
    comm = data[data.find(b"(") + 1 : close]
    fields = data[close + 2 :].split()
    return int(fields[1]), int(fields[3]), host_text(comm, 64)


def ppid_chain(procfs: str, pid: int, table) -> List[dict]:
    """Ancestors from the parent up to the session leader (or init): who started the process."""
    chain: List[dict] = []
    try:
        current, session, _ = parent_and_session(procfs, pid)
    except (OSError, ValueError, IndexError):
        return _psutil_chain(pid)
    while current > 0 and len(chain) < MAX_CHAIN:
        try:
            parent, _, comm = parent_and_session(procfs, current)
        except (OSError, ValueError, IndexError):
            chain.append({"pid": current, "unreadable": "vanished"})
            break
        entry = {"pid": current, "name": comm}
        view = table.lookup(current) if table is not None else None
        if view is not None:
            entry.update(
                user=host_text(view.user, 64),
                start_time=utc(view.stat.start_time),
                cmdline=host_text(full_cmdline(view.facts.argv), 65536),
            )
        chain.append(entry)
        if current == session or current == 1:
            break
        current = parent
    return chain


def _psutil_chain(pid: int) -> List[dict]:
    """Windows and other systems without /proc: parents as psutil sees them (no sessions)."""
    import psutil

    try:
        parents = psutil.Process(pid).parents()
    except psutil.Error:
        return []
    out = []
    for proc in parents[:MAX_CHAIN]:
        try:
            out.append({"pid": proc.pid, "name": host_text(proc.name(), 64)})
        except psutil.Error:
            out.append({"pid": proc.pid, "unreadable": "vanished"})
    return out


def full_cmdline(argv: List[str]) -> str:
    """The whole command line with credentials redacted, not truncated as in labels."""
    from minerwatch.detection.redact import redact_cmdline  # here: `verify` never needs it

    return redact_cmdline(argv, max_length=1 << 20)


def host_identity(procfs: str, rootfs: str) -> dict:
    out = {"hostname": host_text(socket.gethostname(), 255), "os": platform.system(),
           "kernel": host_text(platform.release(), 128)}
    for name in ("etc/machine-id", "var/lib/dbus/machine-id"):
        data = read_regular(os.path.join(rootfs, name), 256)
        if data is not None:
            out["machine_id"] = host_text(data.strip(), 64)
            break
    else:
        out["machine_id"] = _windows_machine_guid()
    boot = None
    try:
        with open(os.path.join(procfs, "stat"), "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    boot = float(line.split()[1])
    except OSError:
        import psutil

        boot = psutil.boot_time()
    out["boot_time"] = utc(boot)
    return out


def _windows_machine_guid() -> str:
    try:
        import winreg  # type: ignore

        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography") as key:
            return host_text(winreg.QueryValueEx(key, "MachineGuid")[0], 64)
    except Exception:  # not Windows, or not readable
        return ""


# -- one process -----------------------------------------------------------------------------------


@dataclass
class HostFile:
    """A host file to copy into the bundle, never more than `limit` bytes of it. A configuration
    is read once, when it is recognised (`data`), so the copy is what was checked; the executable
    is streamed from one descriptor opened at copy time. `size_seen` and `truncated` are known
    once the bytes are."""

    path: str  # where it is read: through procfs, or the executable's path
    limit: int
    follow: bool = True  # False: a symbolic link at `path` is refused
    data: Optional[bytes] = None
    size_seen: int = 0
    truncated: bool = False

    def chunks(self):
        if self.data is not None:
            yield self.data
            return
        with open_regular(self.path, follow=self.follow) as f:
            reader = BoundedRead(f, self.limit)
            yield from reader.chunks()
            self.size_seen, self.truncated = reader.size_seen, reader.truncated


@dataclass
class Collected:
    """A bundle before it is written: the document and the files to copy (bundle name -> source)."""

    pid: int
    document: dict
    copies: Dict[str, HostFile]


def collect(context, view, collectors, copy_exe: bool, rootfs: str = "/") -> Collected:
    procfs = context.procfs
    table = context.processes
    facts, st, pid = view.facts, view.stat, view.pid
    reads = Reads(procfs, pid)
    copies: Dict[str, HostFile] = {}

    process = {
        "pid": pid,
        "name": host_text(view.name, 64),
        "user": host_text(view.user, 64),
        "uid": facts.uid,
        "start_time": utc(st.start_time),
        "start_time_seconds": st.start_time,
        "cpu_seconds": round(st.cpu_seconds, 3),
        "threads": st.threads,
        "resident_memory_bytes": st.rss_bytes,
        "cmdline": host_text(full_cmdline(facts.argv), 65536),
        "environment_names": reads.environ_names(),
        "cwd": host_text(facts.cwd, 4096),
        "parents": ppid_chain(procfs, pid, table),
        "open_files": reads.open_files(),
        "suspect": view.suspect,
        "allowlisted": view.allowlisted,
    }

    exe_path = table.reader.exe_path(pid)
    executable = {"path": host_text(facts.exe, 4096), "deleted": facts.exe_deleted,
                  "sha256": table.exe_sha256(facts) or None}
    info = reads.attempt("executable", lambda: os.stat(exe_path)) if exe_path else None
    if info is not None:
        executable.update(size_bytes=info.st_size, mtime=utc(info.st_mtime))
    if copy_exe and executable["sha256"]:
        # /proc/PID/exe is a link to follow; a plain path (the psutil reader's) is not: a link put
        # there would copy whatever file it names.
        magic = os.path.normpath(exe_path) == os.path.normpath(reads.path("exe"))
        copies[EXECUTABLE] = HostFile(exe_path, MAX_EXECUTABLE_BYTES, follow=magic)
        executable["copy"] = EXECUTABLE

    configs = []
    found, stopped = find_configs(reads, facts.cwd, exe_path)
    for n, (source, shown) in enumerate(found):
        name = f"{FILES_DIR}/{n + 1:02d}-{_SAFE_NAME.sub('_', os.path.basename(shown))[:80] or 'file'}"
        copies[name] = source
        configs.append({"path": shown, "copy": name, "size_bytes": source.size_seen,
                        "copied_bytes": len(source.data), "truncated": source.truncated})

    document = {
        "format": FORMAT,
        "minerwatch_version": __version__,
        "collected_at": utc(dt.datetime.now(dt.timezone.utc).timestamp()),
        "host": host_identity(procfs, rootfs),
        "process": process,
        "executable": executable,
        "miner_config_files": configs,
        "signals": {host_text(k, 64): host_text(v, 1024) for k, v in sorted(view.signals.items())},
        "network": network_evidence(collectors.get("network"), pid, process["open_files"]),
        "gpu": gpu_evidence(collectors.get("gpu"), pid),
        "antivirus_exclusions": antivirus_evidence(context, facts),
        "unreadable": reads.unreadable,
        "collection": {"reads_only": True,
                       "note": "read from procfs and the executable; the process was not signalled or traced"},
    }
    if stopped:
        document["miner_config_search"] = f"stopped after {MAX_CONFIG_FILES} files"
    return Collected(pid, document, copies)


def find_configs(reads: Reads, cwd: str, exe_path: str) -> Tuple[List[Tuple[HostFile, str]], bool]:
    """Miner configs the process holds open or keeps in its working directory, each read once
    (through /proc, so a deleted one is found too) with the path as the process sees it; and
    whether the search stopped at MAX_CONFIG_FILES. A file longer than MAX_CONFIG_BYTES counts by
    its first MAX_CONFIG_BYTES: padding must not hide a config."""
    candidates: List[Tuple[str, str]] = []
    for item in reads.open_files() or []:
        target = item["target"]
        if target.startswith("/") and not target.startswith(("/proc/", "/sys/", "/dev/")):
            candidates.append((reads.path("fd", item["fd"]), target.removesuffix(" (deleted)")))
    if cwd:
        try:
            names = _names(reads.path("cwd"), MAX_CWD_ENTRIES)
        except OSError as exc:
            reads.unreadable.setdefault("cwd_listing", _reason(exc))
            names = []
        for name in sorted(names):
            candidates.append((reads.path("cwd", name), os.path.join(cwd, host_text(name, 255))))
    found: List[Tuple[HostFile, str]] = []
    seen = {_file_id(exe_path)}
    for source, shown in candidates:
        if len(found) == MAX_CONFIG_FILES:
            return found, True
        try:
            with open_regular(source) as f:
                info = os.fstat(f.fileno())
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
                reader = BoundedRead(f, MAX_CONFIG_BYTES)
                data = reader.read()
        except OSError:  # gone, unreadable, or not a regular file (a FIFO, a device) now
            continue
        if CONFIG_MARKERS.search(data):
            found.append((HostFile(source, MAX_CONFIG_BYTES, data=data, size_seen=reader.size_seen,
                                   truncated=reader.truncated), shown))
    return found, False


def _names(directory: str, most: int) -> List[str]:
    """At most `most` names of a directory, in its own order: a host directory can hold millions."""
    with os.scandir(directory) as entries:
        return [entry.name for _, entry in zip(range(most), entries)]


def _file_id(path: str) -> Optional[Tuple[int, int]]:
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat_module.S_ISREG(info.st_mode):
        return None
    return (info.st_dev, info.st_ino)


def network_evidence(collector, pid: int, open_files) -> dict:
    """Every TCP connection of the process, with the pool evidence that matched it."""
    if collector is None:
        return {"available": False, "connections": []}
    monitor = collector.monitor
    matches = monitor.update(force=True)
    evidence = {(m.conn.local, m.conn.remote): m for m in matches}
    inodes = set()
    for item in open_files or []:
        target = item["target"]
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(int(target[8:-1]))
    out = []
    for conn in monitor.sockets.connections():
        match = evidence.get((conn.local, conn.remote))
        owner = match.conn.pid if match is not None and match.conn.pid is not None else conn.pid
        if not ((conn.inode and conn.inode in inodes) or owner == pid):
            continue
        record = {"local": str(conn.local), "remote": str(conn.remote), "state": conn.state,
                  "pool_evidence": []}
        if match is not None:
            record["pool_evidence"] = [
                {"kind": kind, "pool": host_text(pool, 255), "detail": host_text(detail, 1024)}
                for kind, pool, detail in match.evidence
            ]
        out.append(record)
    return {"available": True, "connections": out}


def gpu_evidence(collector, pid: int) -> dict:
    if collector is None:
        return {"available": False, "reason": "gpu collector off", "use": []}
    reading = collector.reader.read()
    if not reading.up:
        return {"available": False, "reason": "NVML not available (no NVIDIA driver or GPU)", "use": []}
    use = []
    for gpu in reading.gpus:
        contexts = [p for p in (gpu.processes or []) if p.pid == pid]
        if not gpu.up or not contexts:
            continue
        sample = (gpu.process_utilization or {}).get(pid)
        use.append({
            "gpu": gpu.index, "uuid": host_text(gpu.uuid, 128), "model": host_text(gpu.model, 128),
            "memory_used_bytes": sum(p.used_memory_bytes or 0 for p in contexts),
            "context_types": sorted({p.type for p in contexts}),
            "sm_utilization_ratio": sample.sm_ratio if sample else None,
            "memory_utilization_ratio": sample.memory_ratio if sample else None,
            "power_watts": gpu.values.get("power_watts"),
        })
    return {"available": True, "use": use}


def antivirus_evidence(context, facts) -> List[dict]:
    from minerwatch.antivirus.watcher import find_watcher  # here: `verify` never needs it

    watcher = find_watcher(context.processes)
    if watcher is None:
        return []
    return [
        {"product": e.product, "kind": e.kind, "value": host_text(e.value, 1024), "covers": what,
         "where": host_text(e.where, 1024)}
        for e, what in watcher.matches(facts)
    ]


# -- writing and verifying -------------------------------------------------------------------------


def _write_atomic(path: str, chunks) -> Tuple[str, int]:
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


def write_bundle(out_dir: str, collected: Collected) -> Tuple[str, str]:
    """Write one bundle under `out_dir`; returns (bundle path, sha256 of MANIFEST.json).

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
                digest, size = _write_atomic(target, source.chunks())
            except OSError as exc:  # the process exited, or the file went, between find and copy
                document["unreadable"][f"copy:{name}"] = _reason(exc)
                continue
            files.append({"path": name, "sha256": digest, "size_bytes": size,
                          "source_size_bytes": source.size_seen, "truncated": source.truncated})
        if EXECUTABLE in collected.copies:
            copied = next((f for f in files if f["path"] == EXECUTABLE), None)
            document["executable"]["copy_sha256_matches"] = bool(copied) and copied["sha256"] == document[
                "executable"]["sha256"]
            document["executable"]["copy_truncated"] = bool(copied) and copied["truncated"]
        text = json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False).encode() + b"\n"
        digest, size = _write_atomic(os.path.join(work, DOCUMENT), [text])
        files.insert(0, {"path": DOCUMENT, "sha256": digest, "size_bytes": size})
        manifest = {"format": FORMAT, "created": document["collected_at"], "files": files}
        manifest["manifest_sha256"] = manifest_digest(manifest)
        body = json.dumps(manifest, indent=2).encode() + b"\n"
        manifest_file_sha, _ = _write_atomic(os.path.join(work, MANIFEST), [body])
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


def _read_manifest(path: str) -> bytes:
    with open_regular(path, follow=False) as f:
        reader = BoundedRead(f, MAX_MANIFEST_BYTES)
        raw = reader.read()
    if reader.truncated:
        raise OSError(errno.EFBIG, f"larger than {MAX_MANIFEST_BYTES} bytes, which no manifest is", path)
    return raw


@dataclass
class Verdict:
    """What `check` found: problems (one line each, naming the file; none when intact), the
    sha256 of MANIFEST.json as read, and notes on copies cut at collection."""

    problems: List[str]
    manifest_sha256: str = ""
    notes: List[str] = field(default_factory=list)


def verify(bundle: str, manifest_sha256: Optional[str] = None) -> List[str]:
    """Problems found in a bundle, one line each naming the file; [] when it is intact."""
    return check(bundle, manifest_sha256).problems


def check(bundle: str, manifest_sha256: Optional[str] = None) -> Verdict:
    """Every file against the manifest, the manifest against its own hash and, when given, against
    `manifest_sha256`, the hash recorded at collection. Names from the bundle are escaped: a
    bundle can be tampered with."""
    manifest_path = os.path.join(bundle, MANIFEST)
    try:
        raw = _read_manifest(manifest_path)
    except OSError as exc:
        return Verdict([f"{manifest_path}: cannot read: {exc.strerror}"])
    verdict = Verdict([], sha256_bytes(raw))
    problems = verdict.problems
    if manifest_sha256 and verdict.manifest_sha256 != manifest_sha256.lower():
        problems.append(f"{manifest_path}: sha256 {verdict.manifest_sha256} is not the one recorded at collection")
    try:
        manifest = json.loads(raw)
        entries = list(manifest["files"])
        listed = {entry["path"]: entry["sha256"] for entry in entries}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in listed.items()):
            raise TypeError("paths and hashes are strings")
    except (ValueError, KeyError, TypeError, RecursionError):
        problems.append(f"{manifest_path}: not a minerwatch evidence manifest")
        return verdict
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        problems.append(f"{manifest_path}: its own hash does not match its contents (the manifest was edited)")
    for name, expected in sorted(listed.items()):
        parts = name.split("/")
        shown = os.path.join(bundle, host_text(name, 256))
        if name.startswith("/") or ".." in parts or "" in parts:
            problems.append(f"{manifest_path}: lists a path outside the bundle: {host_text(name, 256)}")
            continue
        try:
            actual = sha256_file(os.path.join(bundle, *parts))
        except OSError as exc:
            problems.append(f"{shown}: missing or unreadable ({exc.strerror})")
            continue
        if actual != expected:
            problems.append(f"{shown}: sha256 {actual} differs from the manifest's {host_text(expected, 64)}")
    for root, dirs, names in os.walk(bundle):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), bundle).replace(os.sep, "/")
            if rel != MANIFEST and rel not in listed:
                problems.append(f"{os.path.join(bundle, host_text(rel, 512))}: not in the manifest (added later)")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("truncated") is True:
            verdict.notes.append(
                f"{os.path.join(bundle, host_text(entry['path'], 256))}: holds the first "
                f"{host_text(str(entry.get('size_bytes')), 32)} bytes only; the file held "
                f"{host_text(str(entry.get('source_size_bytes')), 32)} at collection")
    return verdict


# -- command line ----------------------------------------------------------------------------------


def _build(procfs: str, sysfs: str, config_file: Optional[str], reader: str):
    # here: the collectors are built for a collection only, never for `verify`
    from minerwatch.app import Options, build_collectors, build_context
    from minerwatch.collectors import available

    context = build_context(Options(config_file=config_file, procfs=procfs, sysfs=sysfs, reader=reader))
    wanted = [name for name in ("network", "antivirus", "gpu") if name in available()]
    collectors = {c.name: c for c in build_collectors(context, wanted)}
    return context, collectors


@click.group(invoke_without_command=True)
@click.option("--pid", "pids", type=click.IntRange(min=1), multiple=True,
              help="Process to collect (repeatable).")
@click.option("--all-suspects", is_flag=True, help="Collect every process `minerwatch scan` calls suspect.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Directory to write bundles into (created if missing).")
@click.option("--copy-exe", is_flag=True, help="Copy the running executable into the bundle.")
@click.option("--interval", type=FiniteFloatRange(min=0, max=3600), default=2.0, show_default=True,
              help="Seconds between the two passes that measure recent CPU use.")
@click.option("--timeout", type=FiniteFloatRange(min=0, max=86400), default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds one process's bundle may take; past them it is dropped and the next process "
                   "collected (0: no limit; not enforced on Windows).")
@click.option("--config.file", "config_file", type=click.Path(dir_okay=False),
              help="YAML configuration, as for `serve` (signatures, allowlist, network, antivirus).")
@click.option("--path.procfs", "procfs", default="/proc", show_default=True, help="procfs mountpoint.")
@click.option("--path.sysfs", "sysfs", default="/sys", show_default=True, help="sysfs mountpoint.")
@click.option("--path.rootfs", "rootfs", default="/", show_default=True,
              help="Root of the host's filesystem (for /etc/machine-id).")
@click.option("--process.reader", "reader", type=click.Choice(["auto", "procfs", "psutil"]), default="auto",
              show_default=True, help="How processes are read: /proc directly (Linux) or psutil (any OS).")
@click.pass_context
def evidence(ctx, pids, all_suspects, out_dir, copy_exe, interval, timeout, config_file, procfs, sysfs, rootfs,
             reader):
    """Write an evidence bundle per process (read only: no kill); `evidence verify DIR` checks one."""
    if ctx.invoked_subcommand is not None:
        if pids or all_suspects or out_dir:
            raise click.UsageError("--pid, --all-suspects and --out belong to `evidence`, not its subcommands")
        return
    if not pids and not all_suspects:
        raise click.UsageError("give --pid N or --all-suspects")
    if not out_dir:
        raise click.UsageError("Missing option '--out'.")
    with stop_signals_raise():
        try:
            failed = _collect_all(pids, all_suspects, out_dir, copy_exe, interval, timeout,
                                  (procfs, sysfs, config_file, reader), rootfs)
        except Stopped as exc:
            click.echo(f"minerwatch: error: stopped by {exc.name}: no bundle left half written", err=True)
            end_by(exc)
    if failed:
        ctx.exit(1)


def _collect_all(pids, all_suspects, out_dir, copy_exe, interval, timeout, build_args, rootfs) -> int:
    """Write the bundles; how many processes got none (an error or the deadline, said on stderr)."""
    from minerwatch.investigation import scan as scan_module  # here: as in _build

    context, collectors = _build(*build_args)
    failed = written = 0
    try:
        report = scan_module.run(context, interval)
        table = context.processes
        views = list(report.suspects) if all_suspects else []
        for pid in pids:
            view = table.lookup(pid)
            if view is None:
                raise click.BadParameter(f"no process {pid} (or it cannot be read)", param_hint="'--pid'")
            if view not in views:
                views.append(view)
        if not views:
            click.echo("No suspect process: no bundle written.")
            return 0
        for view in views:
            who = f"pid {view.pid} ({host_text(view.name, 64)})"
            try:
                with deadline(timeout):
                    collected = collect(context, view, collectors, copy_exe, rootfs)
                    bundle, digest = write_bundle(out_dir, collected)
            except TimedOut:
                click.echo(f"minerwatch: error: {who}: no bundle: collecting took longer than {timeout:g} s "
                           "(--timeout)", err=True)
                failed += 1
                continue
            except OSError as exc:
                click.echo(f"minerwatch: error: {who}: no bundle: {host_text(str(exc), 1024)}", err=True)
                failed += 1
                continue
            written += 1
            click.echo(f"{who}: {bundle}  manifest sha256 {digest}")
            for name, source in collected.copies.items():
                if source.truncated:
                    click.echo(f"  {name}: only the first {source.limit} bytes copied; the file held {source.size_seen}")
    finally:
        for collector in collectors.values():
            collector.close()
    if written:
        click.echo("Keep each manifest sha256 off this host (the case ticket): only `minerwatch evidence verify "
                   "BUNDLE --manifest-sha256 SHA256` shows a bundle unchanged since collection.")
    return failed


@evidence.command("verify")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--manifest-sha256", help="sha256 of MANIFEST.json printed at collection, kept off the host.")
@click.pass_context
def verify_command(ctx, bundle, manifest_sha256):
    """Check a bundle against its manifest: exit 0 every file matches, 1 one did not (named).
    Without --manifest-sha256 (printed at collection) only internal consistency is checked: files
    and manifest rewritten together pass."""
    if manifest_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", manifest_sha256):
        raise click.BadParameter("must be 64 hexadecimal digits", param_hint="'--manifest-sha256'")
    verdict = check(bundle, manifest_sha256)
    if verdict.problems:
        for line in verdict.problems:
            click.echo(f"FAILED {line}")
        ctx.exit(1)
    digest = verdict.manifest_sha256
    if manifest_sha256:
        click.echo(f"OK {bundle}: every file matches {MANIFEST}, whose sha256 {digest} is the one recorded "
                   "at collection")
    else:
        click.echo(f"OK {bundle}: every file matches {MANIFEST} (sha256 {digest}): internal consistency only")
        click.echo(f"NOT CHECKED {MANIFEST} against the sha256 recorded at collection: files and manifest "
                   f"rewritten together pass the check above. Compare {digest} with the sha256 printed at "
                   "collection, or run again with --manifest-sha256 <that sha256>")
    for note in verdict.notes:
        click.echo(f"NOTE {note}")
