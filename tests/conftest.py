"""Shared fixtures: real processes (miner stand-ins, a pool stand-in), free ports, promtool."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = Path(__file__).resolve().parent / "support"
# Used by every test that runs minerwatch without a config of its own: no DNS lookups.
OFFLINE_CONFIG = Path(__file__).resolve().parent / "fixtures" / "offline.yml"


def offline(args):
    """`args` for `minerwatch serve|scan`, with the offline config unless they name a config."""
    args = [str(a) for a in args]
    if not any(a.startswith("--config.file") for a in args):
        args.append(f"--config.file={OFFLINE_CONFIG}")
    return args
MONERO_WALLET = (
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
)


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


@pytest.fixture
def spawn(tmp_path):
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.stop_all()


@pytest.fixture
def stack():
    """Servers a test starts (anything with stop()); stopped in reverse order, by PID."""
    started = []
    yield started
    for server in reversed(started):
        server.stop()


@pytest.fixture
def pool(tmp_path):
    """A pool stand-in process on 127.0.0.1; yields its port; stopped by PID."""
    port_file = tmp_path / "pool.port"
    log = open(tmp_path / "pool.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.pool", "--port-file", str(port_file)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        port = int(wait_for(lambda: port_file.exists() and port_file.read_text(), what="pool stand-in"))
        yield PoolHandle(port, tmp_path / "pool.log", proc.pid)
    finally:
        stop_pid(proc)
        log.close()


class PoolHandle:
    def __init__(self, port: int, log: Path, pid: int):
        self.port, self.log, self.pid = port, log, pid

    def methods(self):
        import json

        return [json.loads(line)["method"] for line in self.log.read_text().splitlines() if line.startswith("{")]


@pytest.fixture(scope="session")
def promtool():
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: run the test command from the README (it installs Debian's prometheus)")
    return path


def check_metrics(promtool: str, text: str) -> None:
    """`promtool check metrics` on an exposition; fails the test with promtool's words."""
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
