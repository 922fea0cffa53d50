"""`minerwatch` run for real, as a process of its own started from the repository root."""

from __future__ import annotations

import subprocess
import sys

from support.repo import ROOT


def minerwatch(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `minerwatch ARGS` to its end (killed and TimeoutExpired past `timeout`): exit status,
    stdout and stderr as text."""
    return subprocess.run([sys.executable, "-m", "minerwatch", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def start_minerwatch(*args) -> subprocess.Popen:
    """`minerwatch ARGS` started and left running; stop it with `support.processes.stop_pid`."""
    return subprocess.Popen([sys.executable, "-m", "minerwatch", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
