"""`minerwatch evidence`: one bundle per suspect process, for investigators.

A bundle is a directory holding `evidence.json` (the host, the process, its executable, network
connections, GPU use, antivirus exclusions, the signals it matched), `SUMMARY.txt` (the same in
words, in Kazakh, Russian or English: `--lang`), optionally a copy of the executable and of the
miner configuration files it has open or in its working directory (a file counts as one only if
`miner_config.classify`, the detector's own test, says so), and `MANIFEST.json`: the sha256 of
every file and a hash of the manifest itself (bundles.py writes it). The sha256 of MANIFEST.json
is printed and appended to the host's record file (custody.py), which the exporter passes on to
Prometheus; `evidence verify` (verification.py) checks a bundle or a directory of them, against
that hash when given it.

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
import os
import platform
import re
import socket
import stat as stat_module
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import click

from minerwatch import __version__
from minerwatch.detection.allowlist import MAX_HASHED_BYTES
from minerwatch.detection.miner_config import classify
from minerwatch.options import FiniteFloatRange, state_dir_option
from minerwatch.host.files import BoundedRead, open_regular, read_regular  # noqa: F401 - read_regular: tests
from minerwatch.investigation import custody
from minerwatch.investigation.bundles import (  # noqa: F401 - the names report.py and tests use here
    EXECUTABLE, FORMAT, MANIFEST, failure_reason as _reason, manifest_digest, sha256_file, sweep_partials,
    write_atomic as _write_atomic, write_bundle)
from minerwatch.investigation.interrupts import Stopped, TimedOut, deadline, end_by, stop_signals_raise
from minerwatch.investigation.verification import check, verify, verify_command  # noqa: F401
from minerwatch.text import host_text

FILES_DIR = "files"
SUMMARY = "SUMMARY.txt"  # the collected facts in words, for people (evidence_summary.py)
MAX_CONFIG_BYTES = 1 << 20  # a miner config is a few KiB; a bigger file is copied this far
MAX_CONFIG_FILES = 16  # configs copied per process: decoys must not fill the disk
MAX_EXECUTABLE_BYTES = MAX_HASHED_BYTES  # only a hashed executable is copied; one that grew is cut
MAX_ENVIRON_BYTES = 8 << 20  # the kernel caps argv and environment together at 6 MiB
MAX_CWD_ENTRIES = 512  # a working directory with more is not searched further
MAX_CHAIN = 64  # ppid chain steps; a loop is impossible in procfs, a bound is cheap
MAX_OPEN_FILES = 4096
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
DEFAULT_TIMEOUT = 120.0


class EvidenceError(Exception):
    """The process cannot be collected at all (gone, no such pid)."""


# -- time -------------------------------------------------------------------------------------------


def utc(epoch: Optional[float]) -> Optional[str]:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


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
    why: str = ""  # for a configuration: what made it one (miner_config.classify)

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
                        "copied_bytes": len(source.data), "truncated": source.truncated,
                        "why": host_text(source.why, 512)})

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
        why = classify(data.decode("utf-8", "replace"))  # the detector's own test, and only it
        if why:
            found.append((HostFile(source, MAX_CONFIG_BYTES, data=data, size_seen=reader.size_seen,
                                   truncated=reader.truncated, why=why), shown))
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
@click.option("--lang", type=click.Choice(["kk", "ru", "en"]),
              help=f"Language of the bundle's {SUMMARY} for people (default: from LC_ALL/LC_MESSAGES/LANG, else en).")
@state_dir_option
@click.pass_context
def evidence(ctx, pids, all_suspects, out_dir, copy_exe, interval, timeout, config_file, procfs, sysfs, rootfs,
             reader, lang, state_dir):
    """Write an evidence bundle per process (read only: no kill); `evidence verify DIR` checks one, or all
    under DIR."""
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
                                  (procfs, sysfs, config_file, reader), rootfs,
                                  Recording(state_dir or custody.default_state_dir(rootfs), summariser(lang)))
        except Stopped as exc:
            click.echo(f"minerwatch: error: stopped by {exc.name}: no bundle left half written", err=True)
            end_by(exc)
    if failed:
        ctx.exit(1)


@dataclass
class Recording:
    """What is done with each bundle beyond writing it: its summary for people (None: none),
    and its record in the state directory."""

    state_dir: str
    summarise: Optional[Callable[[dict], Optional[Tuple[str, bytes]]]] = None
    recorded_in: str = ""
    problem: str = ""

    def record(self, pid: int, bundle: str, digest: str, collected_at: Optional[str]) -> None:
        when = dt.datetime.fromisoformat(collected_at.replace("Z", "+00:00")).timestamp() if collected_at else \
            dt.datetime.now(dt.timezone.utc).timestamp()
        try:
            self.recorded_in = custody.append(self.state_dir, custody.Record(when, pid, os.path.abspath(bundle),
                                                                             digest))
        except OSError as exc:  # not root, a read-only disk: the bundle stands, the record is said missing
            self.problem = host_text(str(exc), 1024)
            click.echo(f"minerwatch: warning: {bundle}: not recorded in {custody.records_path(self.state_dir)}: "
                       f"{self.problem}", err=True)


def summariser(lang: Optional[str]):
    """The summary for people written into each bundle, in `lang`; None where the summary module
    is not installed (the bundle is whole without it)."""
    try:
        from minerwatch.investigation import evidence_summary, i18n  # here: `verify` never needs them
    except ImportError:
        return None
    chosen = i18n.resolve_lang(lang)

    def summarise(document: dict) -> Tuple[str, bytes]:
        return SUMMARY, evidence_summary.render(document, chosen).encode("utf-8")

    return summarise


def _collect_all(pids, all_suspects, out_dir, copy_exe, interval, timeout, build_args, rootfs,
                 recording: Recording) -> int:
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
                    bundle, digest = write_bundle(out_dir, collected, recording.summarise)
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
            recording.record(view.pid, bundle, digest, collected.document.get("collected_at"))
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
        if recording.recorded_in and not recording.problem:
            click.echo(f"Recorded in {recording.recorded_in}: the exporter passes the sha256 to Prometheus "
                       "(minerwatch_evidence_bundle_info), which keeps it off this host.")
    return failed


evidence.add_command(verify_command)  # verification.py: one bundle, or every bundle under a directory
