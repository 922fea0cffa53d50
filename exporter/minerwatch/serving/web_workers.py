"""The threads that answer requests: started when work waits, ended when idle, never more than a cap.

Only a connection with a whole request head is handed to this pool (web_loop waits for the
rest), so its threads do work rather than wait on clients. Most requests take a millisecond; a
scrape waits for the collectors (at most --collector.timeout each), and a wrong password may
wait its turn for bcrypt (web_auth). So the pool starts up to `core` threads at once, which
covers --web.max-requests scrapes and a few cheap requests beside them, and grows past `core`
(up to `most`) only for jobs that have waited STALL_SECONDS: a burst of cheap requests never
starts more threads than `core`, while a pool blocked by slow work still answers the next
scrape soon. Threads beyond the first end after IDLE_SECONDS without work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable, Deque, Optional, Tuple

log = logging.getLogger("minerwatch.web")

STALL_SECONDS = 0.1  # a job waiting this long means every thread is busy with slow work
IDLE_SECONDS = 30.0  # a thread without work this long ends: a burst's threads go, steady scrapes keep one


class WorkerPool:
    def __init__(self, core: int, most: Optional[int], name: str = "http-worker",
                 idle_seconds: float = IDLE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.core = core if most is None else min(core, most)
        self.most = most
        self.name = name
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._cond = threading.Condition()
        self._jobs: Deque[Tuple[float, Callable[[], None]]] = deque()
        self._threads = 0
        self._waiting = 0  # threads waiting for a job
        self._closed = False
        self._refused = False  # the last thread start failed: said once in the log, not per job

    @property
    def threads(self) -> int:
        return self._threads

    @property
    def backlog(self) -> int:
        """Jobs waiting for a thread."""
        return len(self._jobs)

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue `job`; False if no thread is there to run it and none could be started."""
        with self._cond:
            self._jobs.append((self._clock(), job))
            if len(self._jobs) <= self._waiting:
                self._cond.notify()
                return True
            if self._threads < self.core and self._start():
                return True
            if self._threads:
                return True
            self._jobs.pop()
            return False

    def tick(self) -> Optional[float]:
        """Start a thread for each job that has waited STALL_SECONDS (up to `most`); the clock
        time of the next check, None if nothing waits. The connection loop calls this."""
        with self._cond:
            if not self._jobs:
                return None
            now = self._clock()
            stalled = sum(1 for queued, _ in self._jobs if now - queued >= STALL_SECONDS) - self._waiting
            while stalled > 0 and (self.most is None or self._threads < self.most) and self._start():
                stalled -= 1
            for queued, _ in self._jobs:
                if now - queued < STALL_SECONDS:
                    return queued + STALL_SECONDS
            return now + STALL_SECONDS

    def close(self) -> None:
        """Threads end once the jobs queued are done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _start(self) -> bool:
        """One more thread (the condition held); False when the system refuses one (TasksMax)."""
        try:
            threading.Thread(target=self._run, name=self.name, daemon=True).start()
        except RuntimeError as exc:
            if not self._refused:
                log.warning("cannot start a web worker thread (%d running): %s", self._threads, exc)
            self._refused = True
            return False
        self._refused = False
        self._threads += 1
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    if self._closed:
                        self._threads -= 1
                        return
                    self._waiting += 1
                    notified = self._cond.wait(self._idle_seconds)
                    self._waiting -= 1
                    if not notified and not self._jobs and self._threads > 1:
                        self._threads -= 1
                        return
                _, job = self._jobs.popleft()
            try:
                job()
            except Exception:  # the job answers its own errors: this is a bug, not a client
                log.exception("web worker job failed")
