"""Read processes from the host: a Linux fast path over /proc and a portable psutil path.

Both readers return the same two shapes: `ProcStat` (what changes every scrape, read every scrape)
and `ProcFacts` (what does not change during a process's life, read once per (pid, start time)).

Every string in them (comm, exe, cwd, argv, user, environment) is made safe here, where it is
read, with `host_text`: a process that names itself with bytes that are not UTF-8 or puts
newlines and terminal escapes in its command line reaches the matchers, the labels and `scan` as
visible escapes (`bad\\xffdir`), never as text that fails to encode or forges a table row.

Memory: one `ProcStat` and one `ProcFacts` live per process for its whole life, so both keep
their fields in slots (no per-object dict: about 100 bytes each saved on Python 3.10+), and the
strings most processes share (comm, executable, working directory, common arguments) are kept
once, so 1,000 `sleep 3600` hold one copy of each. That table is the exporter's own and bounded:
`sys.intern` would let processes with ever new arguments grow it for good (interned strings are
immortal on CPython 3.12.0-3.12.5).
"""

from __future__ import annotations

import errno
import math
import ntpath
import os
import sys
import time
import weakref
from array import array
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set

from minerwatch.text import host_text, host_text_items

_SHARED: Dict[str, str] = {}
_SHARED_MAX = 65536  # distinct strings kept once; past it the table starts again


ARGV_KEPT_CHARS = 64 * 1024  # of a command line, kept for the process's life after matching


def bounded_argv(argv: List[str]) -> List[str]:
    """The arguments up to ARGV_KEPT_CHARS in all (the last one cut): what stays in memory for a
    process's life once the whole command line has been matched."""
    total = 0
    for i, arg in enumerate(argv):
        total += len(arg) + 1
        if total > ARGV_KEPT_CHARS:
            return argv[:i] + [arg[: max(ARGV_KEPT_CHARS - total + len(arg), 0)]]
    return argv


def _share(text: str) -> str:
    """One copy of a string many processes hold (see the module docstring)."""
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    return _SHARED.setdefault(text, text)

try:
    import pwd
except ImportError:  # Windows
    pwd = None


# Slots where the language has them for dataclasses (3.10+); 3.9 keeps working, with dicts.
_SLOTS = {"slots": True} if sys.version_info >= (3, 10) else {}


@dataclass(**_SLOTS)
class ProcStat:
    pid: int
    start_time: float  # seconds since the epoch; with pid, the identity of a process
    comm: str
    cpu_seconds: float  # user + system
    threads: int
    rss_bytes: int
    # hash of the raw /proc/PID/stat line (procfs reader only): equal means nothing changed
    fingerprint: int = field(default=0, compare=False, repr=False)


@dataclass(**_SLOTS)
class ProcFacts:
    pid: int
    start_time: float
    comm: str
    exe: str = ""  # "" when unreadable or a kernel thread
    exe_deleted: bool = False
    argv: List[str] = field(default_factory=list)
    cwd: str = ""
    uid: Optional[int] = None
    user: str = ""
    environ: Optional[Dict[str, str]] = None  # None when unreadable
    errors: Sequence[str] = ()  # reasons of reads that failed (shared empty tuple when none)
    exe_sha256: Optional[str] = None  # hashed when first needed; "" when unreadable
    cmdline: Optional[str] = None  # argv redacted and truncated, made when first exported


class ReadError(Exception):
    """The process could not be read; `reason` is a metric label value."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission"
    if exc.errno in (errno.ENOENT, errno.ESRCH):
        return "vanished"
    return "io"


_user_names: Dict[int, str] = {}


def user_name(uid: Optional[int]) -> str:
    if uid is None:
        return ""
    name = _user_names.get(uid)
    if name is None:
        try:
            name = host_text(pwd.getpwuid(uid).pw_name) if pwd else str(uid)
        except KeyError:
            name = str(uid)
        _user_names[uid] = name
    return name


FULL_LISTING_EVERY = 10.0  # seconds


def _own_namespace(procfs: str) -> bool:
    """True when `procfs` shows this process's pid namespace (its `self` is our pid)."""
    try:
        return os.readlink(os.path.join(procfs, "self")) == str(os.getpid())
    except OSError:
        return False


class ProcfsReader:
    """Linux: reads /proc directly.

    The one read every process gets on every scrape, /proc/PID/stat, goes through a descriptor
    kept open for the process's life and re-read with pread (5.4 µs, against 10.7 µs for
    open+read+close, at 4,000 processes). Once the process exits, its descriptor answers ESRCH,
    even if the pid is reused, so a kept descriptor never reads another process.

    `stat(pid, last)` returns `last` itself (what it returned last time for that pid, which the
    caller keeps) when the line is byte for byte the same (an idle process: same CPU time, memory, threads, start time), so
    the caller can tell "nothing changed" with `is` and skip all further work. The test is a
    hash of the line: siphash under the interpreter's random key, which a process cannot aim a
    collision at; a chance one (2^-64) would hide one change for one scrape.
    """

    name = "procfs"

    def __init__(self, procfs: str = "/proc", max_open: Optional[int] = None):
        self.procfs = procfs
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._boot_time = self._read_boot_time()
        self._fds: Dict[int, int] = {}  # pid -> open /proc/PID/stat
        self._max_open = descriptor_budget() if max_open is None else max_open
        # Listing /proc costs about 1.5 µs a process. /proc/loadavg's last field is the last pid the
        # kernel handed out: while it has not moved, no process (or thread) started, and the pids
        # of the last listing, less those that ended since, are all there are. Only where /proc is
        # this process's own pid namespace (its /proc/self is our pid): another's (a host /proc
        # in a container) would answer for the wrong namespace. Listed again at least every
        # FULL_LISTING_EVERY seconds whatever it says.
        self._loadavg = os.path.join(procfs, "loadavg") if _own_namespace(procfs) else None
        self._listed = array("i")  # 4 bytes a process, no int objects kept
        self._listed_last_pid: Optional[int] = None
        self._listed_at = float("-inf")
        self._ended: Set[int] = set()  # pids of the last listing that ended since
        self.listings_total = 0
        # A reader dropped without close() (a reload builds a new one) must not leak thousands of
        # descriptors: they close when it is collected.
        self._finalizer = weakref.finalize(self, _close_all, self._fds)

    def close(self) -> None:
        """Close the kept descriptors; the reader still works (it opens them again as it reads)."""
        _close_all(self._fds)

    def _read_boot_time(self) -> float:
        with open(os.path.join(self.procfs, "stat"), "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
        raise ReadError("io")

    def _last_pid(self) -> Optional[int]:
        if self._loadavg is None:
            return None
        try:
            with open(self._loadavg, "rb") as f:
                return int(f.read(256).split()[4])
        except (OSError, ValueError, IndexError):
            return None

    def pids(self) -> Sequence[int]:
        """The pids now; the caller must not change the sequence."""
        last_pid = self._last_pid()  # before listing: a process started after it moves it
        now = time.monotonic()
        if last_pid is not None and last_pid == self._listed_last_pid and now - self._listed_at < FULL_LISTING_EVERY:
            if self._ended:
                self._listed = array("i", [pid for pid in self._listed if pid not in self._ended])
                self._ended.clear()
            return self._listed
        pids = [int(d) for d in os.listdir(self.procfs) if d.isdigit()]
        self._listed, self._listed_last_pid, self._listed_at = array("i", pids), last_pid, now
        self._ended.clear()
        self.listings_total += 1
        if self._fds:
            # Close the descriptors of processes that ended (a set difference, in C).
            alive = set(pids)
            for pid in self._fds.keys() - alive:
                os.close(self._fds.pop(pid))
        return pids

    def _open_stat(self, pid: int) -> bytes:
        """Open /proc/PID/stat, read it, and keep the descriptor while the budget allows."""
        try:
            fd = os.open(f"{self.procfs}/{pid}/stat", os.O_RDONLY)
        except OSError as exc:
            raise ReadError(_reason(exc)) from None
        try:
            data = os.read(fd, 4096)
        except OSError as exc:
            os.close(fd)
            raise ReadError(_reason(exc)) from None
        if data and len(self._fds) < self._max_open:
            self._fds[pid] = fd
        else:
            os.close(fd)
        return data

    def stat(self, pid: int, last: Optional[ProcStat] = None) -> ProcStat:
        """The process's stat line; `last` itself when the line is the one `last` was read from
        (the caller keeps what it got, so the reader keeps no table of its own)."""
        data = b""
        fd = self._fds.get(pid)
        if fd is not None:  # the usual case, inline: a pread on the kept descriptor
            try:
                data = os.pread(fd, 4096, 0)
            except OSError:
                pass  # ESRCH: that process is gone; the pid may be another's now
            if not data:
                os.close(self._fds.pop(pid))
        if not data:
            try:
                data = self._open_stat(pid)
            except ReadError as exc:
                if exc.reason == "vanished":
                    self._ended.add(pid)
                raise
            if not data:
                self._ended.add(pid)
                raise ReadError("vanished")
        fingerprint = hash(data)
        if last is not None and last.fingerprint == fingerprint and last.pid == pid:
            return last  # the same line: nothing to parse, nothing new to keep
        # comm may contain spaces and parentheses: it ends at the last ')'.
        close = data.rfind(b")")
        comm = _share(host_text(data[data.find(b"(") + 1 : close]))
        fields = data[close + 2 :].split()
        # fields[0] is field 3 (state) of proc(5)
        start_time = self._boot_time + int(fields[19]) / self._ticks
        if last is not None and last.start_time == start_time:
            start_time = last.start_time  # one float object per process life, not one per change
        stat = ProcStat(
            pid=pid,
            start_time=start_time,
            comm=comm,
            cpu_seconds=(int(fields[11]) + int(fields[12])) / self._ticks or 0.0,  # one shared 0.0 (24 bytes a process)
            threads=int(fields[17]),
            rss_bytes=int(fields[21]) * self._page,
            fingerprint=fingerprint,
        )
        return stat

    def facts(self, stat: ProcStat) -> ProcFacts:
        base = f"{self.procfs}/{stat.pid}"
        facts = ProcFacts(pid=stat.pid, start_time=stat.start_time, comm=stat.comm, errors=[])
        try:
            facts.uid = os.stat(base).st_uid
            facts.user = user_name(facts.uid)
        except OSError as exc:
            raise ReadError(_reason(exc)) from None
        try:
            with open(base + "/cmdline", "rb") as f:
                raw = f.read()
            facts.argv = [_share(a) for a in host_text_items(raw.rstrip(b"\0"))] if raw else []
        except OSError as exc:
            facts.errors.append(_reason(exc))
        if facts.argv or stat.pid == 1:  # kernel threads have no cmdline, exe or environ
            try:
                # Read as bytes: a path need not be UTF-8, and host_text shows what is not.
                exe = os.readlink(os.fsencode(base + "/exe"))
                if exe.endswith(b" (deleted)"):
                    facts.exe, facts.exe_deleted = _share(host_text(exe[: -len(b" (deleted)")])), True
                else:
                    facts.exe = _share(host_text(exe))
            except OSError as exc:
                facts.errors.append(_reason(exc))
            try:
                facts.cwd = _share(host_text(os.readlink(os.fsencode(base + "/cwd"))))
            except OSError as exc:
                facts.errors.append(_reason(exc))
            try:
                with open(base + "/environ", "rb") as f:
                    facts.environ = _parse_environ(f.read())
            except OSError as exc:
                facts.errors.append(_reason(exc))
        facts.errors = facts.errors or ()  # the usual case shares one empty tuple
        return facts

    def exe_path(self, pid: int) -> str:
        """A path that opens the running executable, even when it was deleted from disk."""
        return f"{self.procfs}/{pid}/exe"


def _close_all(fds: Dict[int, int]) -> None:
    while fds:
        try:
            os.close(fds.popitem()[1])
        except OSError:
            pass


def descriptor_budget(reserve: int = 256, most: int = 16384) -> int:
    """How many /proc/PID/stat descriptors to keep open: the soft RLIMIT_NOFILE, raised to the
    hard limit as Go programs such as node_exporter do, less a reserve for sockets and files."""
    try:
        import resource
    except ImportError:  # not on Linux; the psutil reader keeps nothing open
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = most + reserve if hard == resource.RLIM_INFINITY else min(hard, most + reserve)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    limit = most + reserve if soft == resource.RLIM_INFINITY else soft
    return max(0, min(most, limit - reserve))


def _parse_environ(raw: bytes) -> Dict[str, str]:
    env = {}
    for item in host_text_items(raw):
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    return env


class _Life:
    """What the psutil reader remembers of one process life (keyed by pid)."""

    __slots__ = ("create_time", "comm", "start_time", "last", "denied")

    def __init__(self, create_time: float, comm: str, start_time: float):
        self.create_time = create_time  # as psutil answered it
        self.comm = comm
        self.start_time = start_time  # what ProcStat carries: unique per life, see _life()
        self.last: Optional[ProcStat] = None
        self.denied = False  # a stat read was refused: counted once, in facts()


class PsutilReader:
    """Portable path (Windows, macOS, BSD) through psutil; also runs on Linux so it is tested there.

    `psutil_module` and `platform` default to the real ones; tests pass a fake of psutil's
    Windows backend and "win32" (tests/support/fakes/psutil_windows.py). `file_stat` is the
    exporter's own view of the disk, for the deleted-executable check.

    Windows specifics (docs/windows.md, "Processes on Windows"):
    - pid 0, System Idle Process, is not listed: its CPU times are every CPU's idle time.
    - kernel processes, pid 4 System and the minimal processes psutil names by a bare image name
      (Registry, MemCompression, Secure System, vmmem), have no user-mode memory: nothing more is
      read, nothing counts as an error, and `exe` is "" as for a Linux kernel thread.
    - an executable counts as deleted only when its path is on a drive this account sees and
      the file is not found there; a path psutil could not map to a drive letter (a drive mapped
      in the user's session, a network share) or a file this account may not see says nothing.
    - a read of CPU, threads or memory that is refused (psutil falls back to an unprivileged
      system call on Windows; macOS refuses other users' processes) degrades the stat to the last
      values read, counted once per process life as `permission`, instead of failing every scan.
    - two lives of one pid with the same create time (Windows reuses pids at once and stamps
      create times with the system clock) are told apart by name: see `_life`.
    """

    name = "psutil"

    def __init__(self, psutil_module=None, platform: str = sys.platform, file_stat=os.stat):
        if psutil_module is None:
            import psutil as psutil_module  # the portable path only: the Linux one does without
        self._ps = psutil_module
        self.windows = platform.startswith("win")
        self._file_stat = file_stat
        self._lives: Dict[int, _Life] = {}

    def pids(self) -> List[int]:
        pids = self._ps.pids()
        if self.windows:
            pids = [pid for pid in pids if pid != 0]  # System Idle Process: idle time, not work
        if self._lives:
            for pid in self._lives.keys() - set(pids):
                del self._lives[pid]
        return pids

    def _process(self, pid: int):
        try:
            return self._ps.Process(pid)
        except self._ps.NoSuchProcess:
            raise ReadError("vanished") from None

    @property
    def psutil(self):
        """The psutil module read through (its exception classes, for the busy probe's reads)."""
        return self._ps

    def process(self, pid: int):
        """The psutil Process of `pid`, for the busy probe's deeper looks; ReadError if it ended."""
        return self._process(pid)

    def stat(self, pid: int, last: Optional[ProcStat] = None) -> ProcStat:
        ps = self._ps
        proc = self._process(pid)
        denied = False
        try:
            with proc.oneshot():
                create_time = proc.create_time()
                comm = host_text(proc.name())
                try:
                    times = proc.cpu_times()
                    cpu, threads, rss = times.user + times.system, proc.num_threads(), proc.memory_info().rss
                except ps.AccessDenied:
                    denied = True
        except ps.NoSuchProcess:  # ZombieProcess too (a subclass): a zombie runs nothing
            raise ReadError("vanished") from None
        except ps.AccessDenied:
            raise ReadError("permission") from None
        life = self._life(pid, create_time, comm)
        if denied:
            life.denied = True
            last = life.last
            cpu, threads, rss = (last.cpu_seconds, last.threads, last.rss_bytes) if last else (0.0, 0, 0)
        life.last = ProcStat(pid=pid, start_time=life.start_time, comm=comm, cpu_seconds=cpu,
                             threads=threads, rss_bytes=rss)
        return life.last

    def _life(self, pid: int, create_time: float, comm: str) -> _Life:
        """The process life this read belongs to.

        The table keys processes by (pid, start time). Windows hands a freed pid to the next
        process at once, and psutil's create time is a double (steps of 2**-22 s, 238 ns, at
        today's Unix times) stamped from the system clock: two lives of one pid can share it.
        There a process's name is its image's file name, fixed for its life, so a different name
        means a different life, whose start time moves one float step later so the table reads
        its facts afresh. Same pid, create time and name stays one life: nothing psutil gives
        cheaply tells those apart. (Elsewhere a process may rename itself at will: the name is
        not asked, as the /proc reader does not ask it.)
        """
        life = self._lives.get(pid)
        if life is not None and life.create_time == create_time:
            if life.comm == comm or not self.windows:
                life.comm = comm
                return life
            start_time = math.nextafter(life.start_time, math.inf)
        else:
            start_time = create_time
        life = self._lives[pid] = _Life(create_time, comm, start_time)
        return life

    def _is_kernel(self, pid: int, exe: str) -> bool:
        """pid 4, or a minimal process: psutil gives a bare name where others have a path."""
        return pid == 4 or (exe != "" and not any(c in exe for c in "\\/:"))

    def _exe_missing(self, exe: str) -> bool:
        if self.windows and len(ntpath.splitdrive(exe)[0]) != 2:
            return False  # an NT path (\Device\...) or a share: not a drive this account sees
        try:
            self._file_stat(exe)
        except FileNotFoundError:
            return True
        except OSError:
            return False  # there, but not for this account (or not a file we can judge)
        return False

    def facts(self, stat: ProcStat) -> ProcFacts:
        ps = self._ps
        proc = self._process(stat.pid)
        facts = ProcFacts(pid=stat.pid, start_time=stat.start_time, comm=stat.comm, errors=[])

        def read(getter, default, count=True):
            try:
                return getter()
            except ps.ZombieProcess:
                return default  # nothing left to read; not a failure
            except ps.NoSuchProcess:
                raise ReadError("vanished") from None
            except ps.AccessDenied:
                if count:
                    facts.errors.append("permission")
            except OSError as exc:
                if count:
                    facts.errors.append(_reason(exc))
            return default

        exe = read(proc.exe, "", count=not (self.windows and stat.pid == 4))
        if self.windows and self._is_kernel(stat.pid, exe):
            facts.user = host_text(read(proc.username, "", count=False))
            facts.errors = ()
            return facts
        # psutil decodes with the file-system encoding (surrogateescape on POSIX): the raw path
        # is kept for the existence check, the rest of the code sees only host_text.
        facts.argv = [host_text(a) for a in read(proc.cmdline, [])]
        if exe.endswith(" (deleted)"):
            exe, facts.exe_deleted = exe[: -len(" (deleted)")], True
        elif exe:
            facts.exe_deleted = self._exe_missing(exe)
        facts.exe = host_text(exe)
        facts.cwd = host_text(read(proc.cwd, ""))
        uids = read(proc.uids, None) if hasattr(proc, "uids") else None
        facts.uid = uids.effective if uids else None
        facts.user = host_text(read(proc.username, "")) or user_name(facts.uid)
        environ = read(proc.environ, None)
        facts.environ = None if environ is None else {host_text(k): host_text(v) for k, v in environ.items()}
        life = self._lives.get(stat.pid)
        if life is not None and life.denied and life.start_time == stat.start_time:
            facts.errors.append("permission")  # the stat reads refused: once per life
        facts.errors = facts.errors or ()
        return facts

    def exe_path(self, pid: int) -> str:
        """The executable's path to hash or copy; "" for kernel processes (no file)."""
        try:
            exe = self._ps.Process(pid).exe()
        except (self._ps.Error, OSError):
            return ""
        if self.windows and (self._is_kernel(pid, exe) or len(ntpath.splitdrive(exe)[0]) == 0):
            return ""
        return exe

    def close(self) -> None:
        """Nothing kept open (the same call as the /proc reader's)."""


def default_reader(procfs: str = "/proc"):
    """The /proc fast path where /proc exists, psutil everywhere else."""
    if os.path.isfile(os.path.join(procfs, "stat")):
        return ProcfsReader(procfs)
    return PsutilReader()
