"""`minerwatch evidence`: one bundle per suspect process, for investigators, and its verification.

A bundle is a directory holding `evidence.json` (the host, the process, its executable, network
connections, GPU use, antivirus exclusions, the signals it matched), optionally a copy of the
executable and of the miner configuration files it has open or in its working directory, and
`MANIFEST.json`: the sha256 of every file and a hash of the manifest itself. `verify` recomputes
them, so a change after collection is detectable (a deliberate one too, if the manifest's hash
printed at collection is kept elsewhere, e.g. in the case ticket).

Collection only reads: /proc files, readlinks, the executable through /proc/PID/exe. It never
signals, traces or stops the process. Every string from the host goes through `host_text`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import socket
import stat as stat_module
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import click

from minerwatch import __version__
from minerwatch.files import read_regular
from minerwatch.text import host_text

FORMAT = "minerwatch-evidence/1"
DOCUMENT = "evidence.json"
MANIFEST = "MANIFEST.json"
EXECUTABLE = "executable"
FILES_DIR = "files"
MAX_CONFIG_BYTES = 1 << 20  # a miner config is a few KiB; bigger files are not copied
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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _reason(exc: OSError) -> str:
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
            with open(self.path("environ"), "rb") as f:
                raw = f.read()
            names = {item.partition(b"=")[0] for item in raw.split(b"\0") if b"=" in item}
            return sorted(host_text(n, 256) for n in names)

        return self.attempt("environ", read)

    def open_files(self) -> Optional[List[Dict[str, str]]]:
        def read():
            out = []
            fds = sorted(os.listdir(self.path("fd")), key=lambda n: int(n) if n.isdigit() else -1)
            for fd in fds[:MAX_OPEN_FILES]:
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
        data = f.read()
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
    from minerwatch.redact import redact_cmdline

    return redact_cmdline(argv, max_length=1 << 20)


def host_identity(procfs: str, rootfs: str) -> dict:
    out = {"hostname": host_text(socket.gethostname(), 255), "os": platform.system(),
           "kernel": host_text(platform.release(), 128)}
    for name in ("etc/machine-id", "var/lib/dbus/machine-id"):
        try:
            with open(os.path.join(rootfs, name), "rb") as f:
                out["machine_id"] = host_text(f.read().strip(), 64)
                break
        except OSError:
            continue
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
class Collected:
    """A bundle before it is written: the document and the files to copy (bundle name -> source)."""

    pid: int
    document: dict
    copies: Dict[str, str]


def collect(context, view, collectors, copy_exe: bool, rootfs: str = "/") -> Collected:
    procfs = context.procfs
    table = context.processes
    facts, st, pid = view.facts, view.stat, view.pid
    reads = Reads(procfs, pid)
    copies: Dict[str, str] = {}

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
        copies[EXECUTABLE] = exe_path
        executable["copy"] = EXECUTABLE

    configs = []
    for n, (source, shown) in enumerate(find_configs(reads, facts.cwd, exe_path)):
        name = f"{FILES_DIR}/{n + 1:02d}-{_SAFE_NAME.sub('_', os.path.basename(shown))[:80] or 'file'}"
        copies[name] = source
        configs.append({"path": shown, "copy": name})

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
    return Collected(pid, document, copies)


def find_configs(reads: Reads, cwd: str, exe_path: str) -> List[Tuple[str, str]]:
    """(path to read through procfs, path as the process sees it) of miner configs it holds open
    or keeps in its working directory; read through /proc so a deleted one is found too."""
    candidates: List[Tuple[str, str]] = []
    for item in reads.open_files() or []:
        target = item["target"]
        if target.startswith("/") and not target.startswith(("/proc/", "/sys/", "/dev/")):
            candidates.append((reads.path("fd", item["fd"]), target.removesuffix(" (deleted)")))
    if cwd:
        try:
            names = sorted(os.listdir(reads.path("cwd")))[:MAX_CWD_ENTRIES]
        except OSError as exc:
            reads.unreadable.setdefault("cwd_listing", _reason(exc))
            names = []
        for name in names:
            candidates.append((reads.path("cwd", name), os.path.join(cwd, host_text(name, 255))))
    found, seen = [], set()
    exe_id = _file_id(exe_path)
    for source, shown in candidates:
        ident = _file_id(source)
        if ident is None or ident in seen or ident == exe_id:
            continue
        seen.add(ident)
        head = read_regular(source, MAX_CONFIG_BYTES + 1)
        if head is None:
            continue
        if len(head) <= MAX_CONFIG_BYTES and CONFIG_MARKERS.search(head):
            found.append((source, shown))
    return found


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
    from minerwatch.antivirus.watcher import find_watcher

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


def _file_chunks(source: str):
    with open(source, "rb") as f:
        yield from iter(lambda: f.read(1 << 20), b"")


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without its own hash field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def write_bundle(out_dir: str, collected: Collected) -> Tuple[str, str]:
    """Write one bundle under `out_dir`; returns (bundle path, sha256 of MANIFEST.json).

    The bundle is assembled in a hidden temporary directory and renamed into place when
    complete, so a bundle under its final name is always whole."""
    os.makedirs(out_dir, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    final = os.path.join(out_dir, f"{stamp}-pid{collected.pid}")
    work = tempfile.mkdtemp(prefix=".partial-", dir=out_dir)
    try:
        files = []
        document = collected.document
        for name, source in collected.copies.items():
            target = os.path.join(work, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                digest, size = _write_atomic(target, _file_chunks(source))
            except OSError as exc:  # the process exited, or the file went, between find and copy
                document["unreadable"][f"copy:{name}"] = _reason(exc)
                continue
            files.append({"path": name, "sha256": digest, "size_bytes": size})
        if EXECUTABLE in collected.copies:
            copied = next((f for f in files if f["path"] == EXECUTABLE), None)
            document["executable"]["copy_sha256_matches"] = bool(copied) and copied["sha256"] == document[
                "executable"]["sha256"]
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
        _remove_tree(work)
        raise
    return final, manifest_file_sha


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def verify(bundle: str, manifest_sha256: Optional[str] = None) -> List[str]:
    """Problems found in a bundle, one line each naming the file; [] when it is intact."""
    manifest_path = os.path.join(bundle, MANIFEST)
    try:
        with open(manifest_path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        return [f"{manifest_path}: cannot read: {exc.strerror}"]
    problems = []
    if manifest_sha256 and sha256_bytes(raw) != manifest_sha256.lower():
        problems.append(f"{manifest_path}: sha256 {sha256_bytes(raw)} is not the one recorded at collection")
    try:
        manifest = json.loads(raw)
        listed = {entry["path"]: entry["sha256"] for entry in manifest["files"]}
    except (ValueError, KeyError, TypeError):
        return problems + [f"{manifest_path}: not a minerwatch evidence manifest"]
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        problems.append(f"{manifest_path}: its own hash does not match its contents (the manifest was edited)")
    for name, expected in sorted(listed.items()):
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or "" in parts:
            problems.append(f"{manifest_path}: lists a path outside the bundle: {host_text(name, 256)}")
            continue
        path = os.path.join(bundle, *parts)
        try:
            actual = sha256_file(path)
        except OSError as exc:
            problems.append(f"{path}: missing or unreadable ({exc.strerror})")
            continue
        if actual != expected:
            problems.append(f"{path}: sha256 {actual} differs from the manifest's {expected}")
    for root, dirs, names in os.walk(bundle):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), bundle).replace(os.sep, "/")
            if rel != MANIFEST and rel not in listed:
                problems.append(f"{os.path.join(root, host_text(name, 255))}: not in the manifest (added later)")
    return problems


# -- command line ----------------------------------------------------------------------------------


def _build(procfs: str, sysfs: str, config_file: Optional[str], reader: str):
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
@click.option("--interval", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Seconds between the two passes that measure recent CPU use.")
@click.option("--config.file", "config_file", type=click.Path(dir_okay=False),
              help="YAML configuration, as for `serve` (signatures, allowlist, network, antivirus).")
@click.option("--path.procfs", "procfs", default="/proc", show_default=True, help="procfs mountpoint.")
@click.option("--path.sysfs", "sysfs", default="/sys", show_default=True, help="sysfs mountpoint.")
@click.option("--path.rootfs", "rootfs", default="/", show_default=True,
              help="Root of the host's filesystem (for /etc/machine-id).")
@click.option("--process.reader", "reader", type=click.Choice(["auto", "procfs", "psutil"]), default="auto",
              show_default=True, help="How processes are read: /proc directly (Linux) or psutil (any OS).")
@click.pass_context
def evidence(ctx, pids, all_suspects, out_dir, copy_exe, interval, config_file, procfs, sysfs, rootfs, reader):
    """Write an evidence bundle per process (read only: no kill); `evidence verify DIR` checks one."""
    if ctx.invoked_subcommand is not None:
        if pids or all_suspects or out_dir:
            raise click.UsageError("--pid, --all-suspects and --out belong to `evidence`, not its subcommands")
        return
    if not pids and not all_suspects:
        raise click.UsageError("give --pid N or --all-suspects")
    if not out_dir:
        raise click.UsageError("Missing option '--out'.")
    from minerwatch import scan as scan_module

    context, collectors = _build(procfs, sysfs, config_file, reader)
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
            return
        for view in views:
            bundle, digest = write_bundle(out_dir, collect(context, view, collectors, copy_exe, rootfs))
            click.echo(f"pid {view.pid} ({host_text(view.name, 64)}): {bundle}  manifest sha256 {digest}")
    finally:
        for collector in collectors.values():
            collector.close()


@evidence.command("verify")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--manifest-sha256", help="sha256 of MANIFEST.json printed at collection, kept off the host.")
@click.pass_context
def verify_command(ctx, bundle, manifest_sha256):
    """Check a bundle against its manifest: exit 0 intact, 1 changed (naming the file)."""
    if manifest_sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", manifest_sha256):
        raise click.BadParameter("must be 64 hexadecimal digits", param_hint="'--manifest-sha256'")
    problems = verify(bundle, manifest_sha256)
    if problems:
        for line in problems:
            click.echo(f"FAILED {line}")
        ctx.exit(1)
    with open(os.path.join(bundle, MANIFEST), "rb") as f:
        digest = sha256_bytes(f.read())
    click.echo(f"OK {bundle}: every file matches {MANIFEST} (sha256 {digest})")
