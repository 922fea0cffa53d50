"""Real processes for tests: free ports on 127.0.0.1, waiting, stopping by PID, and processes
started under a chosen name (a symlink to this Python) running a stand-in script."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SUPPORT = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_pid(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Stop a process we started, by its PID: TERM, then KILL."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Spawner:
    """Starts real processes under a chosen name (a symlink to this Python) and stops them all."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs = []

    def start(self, name: str, args, cwd=None, env=None, script=SUPPORT / "fakeminer.py") -> subprocess.Popen:
        bindir = self.tmp / f"bin-{len(self.procs)}"
        bindir.mkdir()
        exe = bindir / name
        exe.symlink_to(sys.executable)
        proc = subprocess.Popen(
            [str(exe), str(script), *map(str, args)],
            cwd=cwd or self.tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_pid(proc)


class PoolHandle:
    """The pool stand-in process of the `pool` fixture: its port, its log of requests, its pid."""

    def __init__(self, port: int, log: Path, pid: int):
        self.port, self.log, self.pid = port, log, pid

    def methods(self):
        import json

        return [json.loads(line)["method"] for line in self.log.read_text().splitlines() if line.startswith("{")]
