"""promtool, Debian's `prometheus` package's checker, as the tests call it."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def promtool_path() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: run the test command from the README (it installs Debian's prometheus)")
    return path


def check_metrics(promtool: str, text: str) -> None:
    """`promtool check metrics` on an exposition; fails the test with promtool's words."""
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
