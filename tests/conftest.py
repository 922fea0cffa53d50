"""Fixtures only: real processes (miner stand-ins, a pool stand-in), servers a test starts,
promtool. Helpers live in the `support` package (support/__init__.py lists them)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support.processes import PoolHandle, Spawner, stop_pid, wait_for
from support.promtool import promtool_path
from support.repo import ROOT

# The fixture hosts' /proc trees hold symlinks (exe, cwd, fd) to paths of the host they describe:
# pytest must not follow them looking for tests.
collect_ignore = ["fixtures"]

# `minerwatch report` and `evidence` take their language from the locale: the tests that want
# Kazakh or Russian ask for it, the others must not get it from the machine that runs them.
for _name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
    os.environ.pop(_name, None)
os.environ["LANG"] = "C.UTF-8"


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


@pytest.fixture(scope="session")
def promtool():
    return promtool_path()
