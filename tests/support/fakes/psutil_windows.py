"""A fake of psutil as it behaves on Windows, over processes described in Python.

psutil's Windows backend does not import on Linux (it needs its C extension). `FakeWindowsHost`
is the machine (processes, boot time, which files the service account sees) and
`host.module()` is a stand-in for the `psutil` module: `pids()`, `pid_exists()`, `boot_time()`,
`Process` with psutil's method names and parameters (tests/test_windows_processes.py checks them
against the installed psutil), and psutil's OWN exception classes (`AccessDenied`,
`NoSuchProcess`, `ZombieProcess`, `Error`), so code that catches them here catches them there.

What each call answers follows psutil 7.2.2's `_pswindows.py` and `arch/windows/*.c`:
- pid 0 is listed; `name()` "System Idle Process", `exe()` AccessDenied, its CPU times are the
  idle time of every CPU, its create time 0.0.
- pid 4 "System": `exe()` "", `cmdline()` [], `environ()` {}, `cwd()` AccessDenied, `username()`
  "NT AUTHORITY\\SYSTEM".
- minimal processes (Registry, MemCompression, Secure System, vmmem): `exe()` is a bare name,
  `name()` the same; nothing with a user-mode memory to read.
- OpenProcess decides the rest (`access`): "all" for ordinary processes (the service runs as
  LocalSystem and psutil enables SeDebugPrivilege), "limited" for protected processes
  (PROCESS_QUERY_LIMITED_INFORMATION only: times, memory, command line through
  NtQueryInformationProcess, user; the PEB, so environment and working directory, refused),
  "none" when even that is refused.
- where OpenProcess is refused, `cpu_times()`, `create_time()`, `memory_info()` fall back to
  NtQuerySystemInformation (`_proc_info`, counted in `host.calls`), which any account may call,
  as psutil does; `num_threads()` always reads it.
- times are FILETIME counts of 100 ns, converted with psutil's own arithmetic (`HI_T`, `LO_T`).
- a pid no longer running answers NoSuchProcess; environment keys come upper-cased.

The deeper reads the busy probe makes (`_pswindows.py` again):
- `io_counters()`: GetProcessIoCounters (read, write, other: counts and bytes; file, device and
  network I/O together), else the NtQuerySystemInformation fallback: any process.
- `num_ctx_switches()`: always NtQuerySystemInformation, the sum of its threads' switches as
  `voluntary` (Windows does not tell them apart), `involuntary` 0.
- `threads()`: OpenThread(THREAD_QUERY_INFORMATION) on each thread: refused for pid 0 and
  protected processes (AccessDenied).
- `net_connections(kind)`: the system's TCP tables filtered by pid, no OpenProcess: any running
  process; `fd` is -1; `connections()` is psutil's deprecated alias (DeprecationWarning).
- `memory_maps()`: VirtualQueryEx and GetMappedFileName: mapped files only (an anonymous
  VirtualAlloc, large pages or not, is not listed), refused unless "all".
- `memory_info().private`: committed private bytes (`private`, the working set when not given).
- `open_files()`: the handles' paths (PROCESS_DUP_HANDLE, refused unless "all"), only those the
  service sees as regular files; one it may not stat makes the whole call AccessDenied.

`WinProcess.fail` injects what this backend does not do on its own (the AccessDenied macOS
answers from `cpu_times()` for other users' processes, or a future psutil without fallback):
method name -> psutil exception class, raised as psutil's wrappers raise it.
"""

from __future__ import annotations

import contextlib
import errno
import ntpath
import socket
import types
import warnings
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

import psutil

HI_T, LO_T = 429.4967296, 1e-7  # psutil's C constants: 2**32 and 1 in 100 ns units, in seconds
UNIX_EPOCH_FILETIME = 116444736000000000  # 1970-01-01 in 100 ns units since 1601-01-01
SYSTEM_ACCOUNT = "NT AUTHORITY\\SYSTEM"

# psutil's Windows named tuples (psutil/_ntuples.py): the Linux ones have other fields.
pcputimes = namedtuple("pcputimes", ("user", "system", "children_user", "children_system"))
popenfile = namedtuple("popenfile", ("path", "fd"))  # fd is -1 on Windows
pmem = namedtuple("pmem", ("rss", "vms", "num_page_faults", "peak_wset", "wset", "peak_paged_pool",
                           "paged_pool", "peak_nonpaged_pool", "nonpaged_pool", "pagefile",
                           "peak_pagefile", "private"))
pio = namedtuple("pio", ("read_count", "write_count", "read_bytes", "write_bytes", "other_count", "other_bytes"))
pctxsw = namedtuple("pctxsw", ("voluntary", "involuntary"))
pthread = namedtuple("pthread", ("id", "user_time", "system_time"))
pconn = namedtuple("pconn", ("fd", "family", "type", "laddr", "raddr", "status"))
addr = namedtuple("addr", ("ip", "port"))
pmmap_grouped = namedtuple("pmmap_grouped", ("path", "rss"))
pmmap_ext = namedtuple("pmmap_ext", ("addr", "perms", "path", "rss"))
# psutil's connection kinds (_common.conn_tmap) that hold TCP sockets; the other kinds list none here
_TCP_KINDS = {"all", "tcp", "tcp4", "tcp6", "inet", "inet4", "inet6"}
_KINDS = _TCP_KINDS | {"udp", "udp4", "udp6"}


def filetime(unix_seconds: float) -> int:
    """A Unix time as a FILETIME count (100 ns units since 1601)."""
    return UNIX_EPOCH_FILETIME + round(unix_seconds * 10_000_000)


def _seconds(count: int) -> float:
    """A 100 ns count as psutil's C code makes it a double: high and low DWORDs apart."""
    return (count >> 32) * HI_T + (count & 0xFFFFFFFF) * LO_T


def _unix_time(count: int) -> float:
    """psutil's `_to_unix_time`: FILETIME minus the epoch, divided by 10**7."""
    return (count - UNIX_EPOCH_FILETIME) / 10_000_000


@dataclass
class WinProcess:
    pid: int
    exe: str  # the image path as psutil gives it ("C:\\..."), "" for pid 4, a bare name for minimal processes
    created: int = 0  # FILETIME (see `filetime`)
    user_time: int = 0  # 100 ns units
    kernel_time: int = 0  # 100 ns units
    threads: int = 1
    wset: int = 4 << 20  # working set bytes: psutil's rss on Windows
    cmdline: List[str] = field(default_factory=list)
    environ: Dict[str, str] = field(default_factory=dict)
    cwd: str = "C:\\Windows\\system32\\"  # the native call ends it with a backslash
    account: Tuple[str, str] = ("NT AUTHORITY", "SYSTEM")
    access: str = "all"  # what OpenProcess grants: "all", "limited" (protected), "none"
    fail: Dict[str, type] = field(default_factory=dict)  # injected: method name -> psutil exception class
    # the deeper reads (see the module's docstring)
    io: Tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)  # pio's fields, in its order
    ctx_switches: int = 0
    thread_times: Dict[int, Tuple[int, int]] = field(default_factory=dict)  # tid -> (user, kernel) 100 ns
    # (local (ip, port), remote (ip, port) or (), status as psutil names it, family)
    connections: List[Tuple[Any, ...]] = field(default_factory=list)
    private: Optional[int] = None  # committed private bytes; None: the working set
    mapped_files: List[Tuple[str, int]] = field(default_factory=list)  # (path, resident bytes) per region
    open_files: List[str] = field(default_factory=list)  # files it holds open ("C:\\..."), see `open_files()`


def system_processes(boot: float) -> List[WinProcess]:
    """What every Windows 10/11 PC runs before anyone logs on, as psutil sees it."""
    created = filetime(boot)
    return [
        WinProcess(0, "", created=0, user_time=0, kernel_time=8 * 3600 * 10_000_000 * 4, threads=4),
        WinProcess(4, "", created=created, kernel_time=90 * 10_000_000, threads=250, access="limited"),
        WinProcess(140, "Secure System", created=created, threads=3, access="none"),
        WinProcess(188, "Registry", created=created, kernel_time=2 * 10_000_000, threads=4, access="none"),
        WinProcess(2400, "MemCompression", created=created, kernel_time=30 * 10_000_000, threads=58,
                   access="none"),
        WinProcess(620, "C:\\Windows\\System32\\csrss.exe", created=created + 5_000_000, access="limited",
                   cmdline=["%SystemRoot%\\system32\\csrss.exe", "ObjectDirectory=\\Windows"]),
        WinProcess(880, "C:\\Windows\\System32\\lsass.exe", created=created + 9_000_000, access="limited",
                   cmdline=["C:\\Windows\\system32\\lsass.exe"]),
        WinProcess(3120, "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0\\MsMpEng.exe",
                   created=created + 80_000_000, access="limited", user_time=600 * 10_000_000,
                   cmdline=["C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0\\MsMpEng.exe"]),
    ]


class FakeWindowsHost:
    """One Windows PC: its processes and the files its service account can see."""

    def __init__(self, processes: Iterable[WinProcess] = (), boot_time: float = 1_700_000_000.0,
                 files: Iterable[str] = (), denied_files: Iterable[str] = ()):
        self.boot = boot_time
        self.processes: Dict[int, WinProcess] = {}
        self.files = {f.lower() for f in files}  # paths that exist (NTFS: case-insensitive)
        self.denied_files = {f.lower() for f in denied_files}  # exist, but not for this account
        self.calls: List[Tuple[str, int]] = []  # (native call, pid) for the fallbacks
        for proc in processes:
            self.start(proc)

    # -- the machine changes --------------------------------------------------------------------
    def start(self, proc: WinProcess) -> WinProcess:
        """The process runs; its image file exists when it is on a drive."""
        self.processes[proc.pid] = proc
        if proc.exe[1:3] == ":\\":
            self.files.add(proc.exe.lower())
        return proc

    def exit(self, pid: int) -> None:
        del self.processes[pid]

    # -- the service account's view of the disk, as os.stat answers on Windows ----------------
    def stat(self, path: str):
        key = path.lower()
        if key in self.denied_files:
            raise PermissionError(errno.EACCES, "Access is denied", path)
        if key not in self.files:
            raise FileNotFoundError(errno.ENOENT, "The system cannot find the file specified", path)
        return types.SimpleNamespace(st_size=0)

    # -- the module ------------------------------------------------------------------------------
    def module(self) -> types.SimpleNamespace:
        host = self

        class Process(_Process):
            _host = host

        return types.SimpleNamespace(
            Process=Process,
            pids=lambda: sorted(host.processes),
            pid_exists=lambda pid: pid in host.processes,
            boot_time=lambda: host.boot,
            Error=psutil.Error,
            NoSuchProcess=psutil.NoSuchProcess,
            ZombieProcess=psutil.ZombieProcess,
            AccessDenied=psutil.AccessDenied,
            WINDOWS=True,
            LINUX=False,
            POSIX=False,
        )


class _Process:
    """psutil.Process on Windows: the public class and `_pswindows.Process` in one."""

    _host: FakeWindowsHost

    def __init__(self, pid=None):
        if pid is None or pid not in self._host.processes:
            raise psutil.NoSuchProcess(pid, msg="process PID not found")
        self._pid = pid
        self._proc = self._host.processes[pid]
        self._name = None
        self._cache: Optional[dict] = None
        try:  # psutil takes the identity with the fast call only, and lets AccessDenied pass
            self._create_time = self._times(fast_only=True)[2]
        except psutil.AccessDenied:
            self._create_time = None

    @property
    def pid(self):
        return self._pid

    # -- plumbing --------------------------------------------------------------------------------
    def _alive(self) -> WinProcess:
        proc = self._host.processes.get(self._pid)
        if proc is not self._proc:  # exited, or the pid now belongs to another process
            raise psutil.NoSuchProcess(self._pid, self._name)
        return proc

    def _check(self, method: str) -> WinProcess:
        proc = self._alive()
        if method in proc.fail:
            cls = proc.fail[method]
            raise cls(self._pid, self._name)
        return proc

    def _denied(self):
        return psutil.AccessDenied(self._pid, self._name)

    def _open(self, wanted: str) -> WinProcess:
        """OpenProcess: `wanted` is "limited" or "all"."""
        proc = self._alive()
        if self._pid == 0 or proc.access == "none" or (wanted == "all" and proc.access != "all"):
            raise self._denied()
        return proc

    def _proc_info(self) -> tuple:
        """NtQuerySystemInformation(SystemProcessInformation): any account, any process."""
        if self._cache is not None and "info" in self._cache:
            return self._cache["info"]
        self._host.calls.append(("proc_info", self._pid))
        proc = self._alive()
        created = 0.0 if self._pid in (0, 4) else _unix_time(proc.created)
        info = (_seconds(proc.user_time), _seconds(proc.kernel_time), created, proc.threads, proc.wset)
        if self._cache is not None:
            self._cache["info"] = info
        return info

    def _times(self, fast_only: bool = False) -> tuple:
        """GetProcessTimes, else (not for the identity) the NtQuerySystemInformation fallback."""
        try:
            proc = self._open("limited")
        except psutil.AccessDenied:
            if fast_only:
                raise
            user, system, created, _, _ = self._proc_info()
            return user, system, created
        return _seconds(proc.user_time), _seconds(proc.kernel_time), _unix_time(proc.created)

    # -- psutil.Process ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def oneshot(self):
        if self._cache is not None:
            yield
            return
        self._cache = {}
        try:
            yield
        finally:
            self._cache = None

    def name(self):
        if self._name is not None:
            return self._name
        if self._pid == 0:
            name = "System Idle Process"
        elif self._pid == 4:
            name = "System"
        else:
            name = ntpath.basename(self.exe())
        self._name = name
        return name

    def exe(self):
        proc = self._check("exe")
        if self._pid == 0:
            raise psutil.AccessDenied(0, self._name, msg="automatically set for PID 0")
        return proc.exe

    def cmdline(self):
        proc = self._check("cmdline")
        if self._pid in (0, 4):
            return []
        self._open("limited")  # the PEB needs more; NtQueryInformationProcess only this
        return list(proc.cmdline)

    def environ(self):
        proc = self._check("environ")
        if self._pid in (0, 4):
            return {}
        self._open("all")
        return {k.upper(): v for k, v in proc.environ.items()}

    def cwd(self):
        proc = self._check("cwd")
        if self._pid in (0, 4):
            raise self._denied()
        self._open("all")
        return ntpath.normpath(proc.cwd)

    def username(self):
        proc = self._check("username")
        if self._pid in (0, 4):
            return SYSTEM_ACCOUNT
        self._open("limited")
        domain, user = proc.account
        return f"{domain}\\{user}"

    def create_time(self):
        self._check("create_time")
        if self._create_time is None:
            self._create_time = self._times()[2]
        return self._create_time

    def cpu_times(self):
        self._check("cpu_times")
        user, system, _ = self._times()
        return pcputimes(user, system, 0.0, 0.0)

    def num_threads(self):
        self._check("num_threads")
        return self._proc_info()[3]

    def memory_info(self):
        proc = self._check("memory_info")
        try:
            wset = self._open("limited").wset
        except psutil.AccessDenied:
            wset = self._proc_info()[4]
        private = wset if proc.private is None else proc.private
        # psutil: rss is the working set, vms the pagefile (commit) usage
        return pmem(wset, private, 0, wset, wset, 0, 0, 0, 0, private, private, private)

    def io_counters(self):
        proc = self._check("io_counters")
        try:
            self._open("limited")
        except psutil.AccessDenied:
            self._proc_info()  # the fallback: same counters, any process
        return pio(*proc.io)

    def num_ctx_switches(self):
        proc = self._check("num_ctx_switches")
        self._proc_info()
        return pctxsw(proc.ctx_switches, 0)

    def threads(self):
        proc = self._check("threads")
        if self._pid == 0:
            raise psutil.AccessDenied(0, self._name, msg="forced for PID 0")
        self._open("all")  # OpenThread(THREAD_QUERY_INFORMATION) on each: refused when protected
        times = proc.thread_times or {self._pid + 4 * i: ((proc.user_time, proc.kernel_time) if i == 0 else (0, 0))
                                      for i in range(proc.threads)}
        return [pthread(tid, _seconds(user), _seconds(kernel)) for tid, (user, kernel) in times.items()]

    def net_connections(self, kind='inet'):
        if kind not in _KINDS:
            raise ValueError(f"invalid kind argument {kind!r}; valid ones are: {sorted(_KINDS)}")
        proc = self._check("net_connections")
        if kind not in _TCP_KINDS:
            return []
        out = []
        for conn in proc.connections:
            local, remote, status = conn[:3]
            family = conn[3] if len(conn) > 3 else socket.AF_INET
            if (kind.endswith("4") and family != socket.AF_INET) or (kind.endswith("6") and family != socket.AF_INET6):
                continue
            out.append(pconn(-1, family, socket.SOCK_STREAM, addr(*local), addr(*remote) if remote else (), status))
        return out

    def connections(self, kind="inet"):
        warnings.warn("connections() is deprecated and will be removed; use net_connections() instead",
                      category=DeprecationWarning, stacklevel=2)
        return self.net_connections(kind=kind)

    def memory_maps(self, grouped=True):
        proc = self._check("memory_maps")
        self._open("all")  # PROCESS_QUERY_INFORMATION | PROCESS_VM_READ
        if not grouped:
            return [pmmap_ext(hex(0x7FF000000000 + (i << 20)), "r-x", path, rss)
                    for i, (path, rss) in enumerate(proc.mapped_files)]
        summed: Dict[str, int] = {}
        for path, rss in proc.mapped_files:
            summed[path] = summed.get(path, 0) + rss
        return [pmmap_grouped(path, rss) for path, rss in summed.items()]

    def open_files(self):
        """Handles read with PROCESS_DUP_HANDLE | PROCESS_QUERY_INFORMATION; psutil keeps only
        paths that are regular files (`isfile_strict`: os.stat as the service sees them), and a
        PermissionError there becomes AccessDenied for the whole call (`wrap_exceptions`)."""
        proc = self._check("open_files")
        if self._pid in (0, 4):
            return []
        self._open("all")
        out = []
        for path in proc.open_files:
            try:
                self._host.stat(path)
            except PermissionError:
                raise self._denied() from None
            except OSError:
                continue
            out.append(popenfile(path, -1))
        return out

    def is_running(self):
        return self._host.processes.get(self._pid) is self._proc
