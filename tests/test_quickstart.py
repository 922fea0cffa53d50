"""deploy/quickstart.sh, the README's first command: it listens on loopback unless told otherwise.

Run in a copy of the script's folder layout with a stand-in virtualenv (its `pip` does nothing,
its `minerwatch` prints the arguments it got), so the test neither installs nor serves."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from support.repo import ROOT


def run_quickstart(tmp_path: Path, *args: str) -> list:
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "quickstart.sh", tmp_path / "deploy" / "quickstart.sh")
    bindir = tmp_path / ".venv" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "minerwatch").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    for f in bindir.iterdir():
        f.chmod(0o755)
    result = subprocess.run(["sh", str(tmp_path / "deploy" / "quickstart.sh"), *args],
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.splitlines()


def test_listens_on_loopback_by_default(tmp_path):
    assert run_quickstart(tmp_path) == ["serve", "--web.listen-address=127.0.0.1:9789"]


def test_a_listen_address_given_wins(tmp_path):
    args = run_quickstart(tmp_path, "--web.listen-address=:9789", "--web.config.file=web.yml")
    assert args == ["serve", "--web.listen-address=:9789", "--web.config.file=web.yml"]
    assert not any("127.0.0.1" in a for a in args)


def test_other_flags_pass_through(tmp_path):
    assert run_quickstart(tmp_path, "--log.level=debug") == [
        "serve", "--web.listen-address=127.0.0.1:9789", "--log.level=debug"]
