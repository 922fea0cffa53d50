"""The executable scan, off the scrape: one background thread reads the files that busy and
suspect processes run; a scrape only asks for them and looks up what has landed.

A scan reads a whole executable (exe_content.py: 64 MiB searched, up to 512 MiB hashed), about
1.5 s of CPU for a 500 MiB sparse copy of a small program. Done inside the scrape, a user who
relaunched fresh big copies of a busy program made scrapes take seconds, the process collector
missed its deadline and the real miner's series dropped out. Now:

    ask(path)   the scrape: one stat of the file for its identity (device, inode, size, mtime),
                then the cached result, or None ("not looked at yet": the file is queued)
    the thread  scans queued files one at a time and stores each result in the scanner's
                bounded LRUs, where every process running the same file finds it

Bounds: one thread, started when a file is queued and gone after IDLE_EXIT_SECONDS without work;
at most MAX_QUEUED files wait; a file costs at most its budget (exe_content.py); the thread uses
at most CPU_SHARE of one core on average (its own CPU time, charged after every 64 KiB chunk,
with BURST_SECONDS in hand so that a miner's 10 MiB build is scanned at once), so relaunching
fresh big copies cannot keep a core busy.

Scans of the process table come first (`hold()`): the thread shares the interpreter lock with
them, and a scan that reads a thousand /proc files hands the lock over at every read, waiting
each time for the thread's next release; between chunks the thread waits for the scan to end.
A hold defers it by at most YIELD_SECONDS, then it runs STRETCH_SECONDS whatever scans run, so
a flood of scrapes cannot stop the scan of files.

Fairness: files are scanned in the order they were first asked for, and that time is remembered
(for the REMEMBERED files asked most recently) even when the request was refused because the
queue was full. A full queue gives way to an older request: the youngest queued file is dropped.
So copies started after the real miner cannot keep its file waiting: it goes before all of them,
behind only the file being scanned and older requests. Refused and dropped requests are counted
(`dropped_total`); their processes ask again at their next look.

A queued file that can no longer be opened (its process ended, or the pid now runs another file)
is not cached, and its first-asked time is forgotten: whoever still runs it asks again, at the
back of the queue, so a file that always fails cannot hold the front.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional, Tuple

from minerwatch.detection.exe_content import ContentResult, ExeScanner
from minerwatch.host.files import open_regular
from minerwatch.text import host_text

log = logging.getLogger("minerwatch.process")

Identity = Tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns

# No file to scan (gone, not a regular file, no access): nothing found and no hash, for good.
UNREADABLE = ContentResult("", {})

MAX_QUEUED = 32
REMEMBERED = 1024  # first-asked times kept, for requests the full queue refused
CPU_SHARE = 0.25  # of one core, on average
BURST_SECONDS = 1.0  # CPU seconds the thread may spend at once after a rest
IDLE_EXIT_SECONDS = 60.0
YIELD_SECONDS = 0.25  # the longest a table scan holds the thread off at a time...
STRETCH_SECONDS = 0.05  # ...after which it runs this long whatever scans run


class _Closed(Exception):
    """The worker was closed in the middle of a file."""


class ScanWorker:
    """Scans files in one background thread for whoever asks; see the module docstring."""

    def __init__(self, scanner: ExeScanner, max_queued: int = MAX_QUEUED, cpu_share: float = CPU_SHARE,
                 burst_seconds: float = BURST_SECONDS, idle_exit: float = IDLE_EXIT_SECONDS,
                 clock: Callable[[], float] = time.monotonic, cpu_clock: Callable[[], float] = time.thread_time):
        self.scanner = scanner
        self.max_queued = max_queued
        self.cpu_share = cpu_share
        self.burst_seconds = burst_seconds
        self.idle_exit = idle_exit
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a file queued or done, a waiter, close()
        self._queued: Dict[Identity, Tuple[str, float]] = {}  # -> (path to open, first asked)
        self._first: "OrderedDict[Identity, float]" = OrderedDict()  # least recently asked first
        self._current: Optional[Identity] = None
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._hurry = 0  # callers of drain(): no pacing while a person waits
        self._holds = 0  # table scans running now: the thread waits for them between chunks
        self._stretch_end = 0.0  # until then the thread runs whatever scans run
        self._credit = burst_seconds  # CPU seconds the thread may spend now
        self._credit_time = clock()
        self._cpu_mark = 0.0
        self._logged = False
        self.completed = 0  # files taken off the queue, scanned or not: "something landed"
        self.dropped_total = 0
        self.cpu_seconds_total = 0.0

    # -- the scrape's side: never reads a file, never waits for the thread ----------------------
    def ask(self, path: str) -> Optional[ContentResult]:
        """The result for the file at `path` (a /proc/PID/exe link names the running executable,
        a deleted one too); UNREADABLE when there is no file to scan; None while it is not
        scanned yet (queued now, or refused: ask again later)."""
        try:
            info = os.stat(path) if path else None
        except (OSError, ValueError):
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            return UNREADABLE
        identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        result = self.scanner.cached(identity)
        if result is not None:
            return result
        with self._lock:
            result = self.scanner.cached(identity)  # it may have landed since
            if result is not None or self._closed:
                return result
            first = self._first.pop(identity, None)
            self._first[identity] = first = self._clock() if first is None else first
            if len(self._first) > REMEMBERED:
                self._first.popitem(last=False)
            if identity == self._current:
                return None
            if identity in self._queued:
                self._queued[identity] = (path, first)  # the newest asker's path: the likeliest to open
                return None
            if len(self._queued) >= self.max_queued:
                self.dropped_total += 1
                youngest = max(self._queued, key=lambda key: self._queued[key][1])
                if self._queued[youngest][1] <= first:
                    return None  # older requests fill the queue
                del self._queued[youngest]
            self._queued[identity] = (path, first)
            self._start()
            self._changed.notify_all()
        return None

    def queued(self) -> int:
        """Files waiting, and the one being scanned."""
        with self._lock:
            return len(self._queued) + (self._current is not None)

    def drain(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds for every queued file to be scanned, scanning at full
        speed meanwhile: for `minerwatch scan`, which a person waits for; never for a scrape."""
        with self._lock:
            self._hurry += 1
            if self._queued:
                self._start()  # in case an earlier start failed
            self._changed.notify_all()
            try:
                return self._changed.wait_for(
                    lambda: self._closed or (not self._queued and self._current is None), timeout)
            finally:
                self._hurry -= 1

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Around a scan of the process table: the thread pauses between chunks meanwhile."""
        with self._lock:
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                if not self._holds:
                    self._changed.notify_all()

    def close(self) -> None:
        """Forget the queue and end the thread (at its next chunk at the latest)."""
        with self._lock:
            self._closed = True
            self._queued.clear()
            self._changed.notify_all()

    # -- the thread ------------------------------------------------------------------------------
    def _start(self) -> None:
        """Start the thread if none runs (the lock is held)."""
        if self._thread is not None:
            return
        thread = threading.Thread(target=self._run, name="minerwatch-exe-scan", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # no thread can start now: the files wait, the next ask tries again
            self._log_once(f"cannot start the executable scan thread: {exc}")
            return
        self._thread = thread

    def _run(self) -> None:
        self._cpu_mark = self._cpu_clock()
        while True:
            with self._lock:
                while not self._queued and not self._closed:
                    if not self._changed.wait(self.idle_exit) and not self._queued:
                        self._thread = None
                        return
                if self._closed:
                    self._thread = None
                    return
                identity = min(self._queued, key=lambda key: self._queued[key][1])  # the oldest request
                path, _ = self._queued.pop(identity)
                self._current = identity
            try:
                self._scan(path, identity)
            except _Closed:
                pass
            except Exception as exc:  # noqa: BLE001 - a bug must not end the thread: the file is skipped
                self._log_once(f"executable scan failed: {type(exc).__name__}: {exc}")
            finally:
                self._charge()
                with self._lock:
                    self._current = None
                    self._first.pop(identity, None)  # scanned, or failed: a new ask starts at the back
                    self.completed += 1
                    self._changed.notify_all()

    def _scan(self, path: str, identity: Identity) -> None:
        try:
            with open_regular(path) as f:
                info = os.fstat(f.fileno())
                if (info.st_dev, info.st_ino) != identity[:2]:
                    return  # the path names another file now (the pid was reused): not its result
                result = self.scanner.scan_open(f, self._pace)
        except OSError:
            return  # its process ended before its turn: not cached, a live one asks again
        self.scanner.store(identity, result)

    def _charge(self) -> None:
        """Count the CPU this thread used since the last charge against its credit."""
        cpu = self._cpu_clock()
        used, self._cpu_mark = max(cpu - self._cpu_mark, 0.0), cpu
        now = self._clock()
        self.cpu_seconds_total += used
        self._credit = min(self.burst_seconds, self._credit + (now - self._credit_time) * self.cpu_share) - used
        self._credit_time = now

    def _pace(self) -> None:
        """After each chunk: let a table scan finish, then sleep until the thread is back within
        its share of a core."""
        self._charge()
        if self._closed:
            raise _Closed
        if self._holds and not self._hurry and self._clock() >= self._stretch_end:
            with self._lock:
                if not self._changed.wait_for(lambda: not self._holds or self._closed or self._hurry > 0,
                                              YIELD_SECONDS):
                    self._stretch_end = self._clock() + STRETCH_SECONDS  # held too long: run a while
            self._charge()  # credit accrued while held
        if self._credit >= 0:
            return
        with self._lock:
            self._changed.wait_for(lambda: self._closed or self._hurry > 0, -self._credit / self.cpu_share)
        if self._closed:
            raise _Closed

    def _log_once(self, message: str) -> None:
        if not self._logged:
            self._logged = True
            log.error("%s", host_text(message, 512))
