"""Builds a small fake /proc tree (node_exporter's fixture idea) for reader and table tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

BOOT_TIME = 1_700_000_000
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class FakeProcess:
    pid: int
    comm: str
    argv: List[str]
    exe: str = ""  # symlink target text; may end with " (deleted)"
    cwd: str = "/"
    environ: Dict[str, str] = field(default_factory=dict)
    utime: int = 0  # ticks
    stime: int = 0
    threads: int = 1
    start_ticks: int = 100
    rss_pages: int = 10


def stat_line(p: FakeProcess) -> str:
    # proc(5) fields 3..24: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss
    rest = ["R", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", str(p.utime), str(p.stime), "0", "0",
            "20", "0", str(p.threads), "0", str(p.start_ticks), "1000000", str(p.rss_pages)]
    return f"{p.pid} ({p.comm}) " + " ".join(rest) + " 0 0 0\n"


def build(root: Path, processes: List[FakeProcess], cpu_line: str = "cpu  100 2 30 400 5 0 1 0 0 0") -> Path:
    proc = root / "proc"
    proc.mkdir(parents=True, exist_ok=True)
    (proc / "stat").write_text(f"{cpu_line}\ncpu0 50 1 15 200 2 0 0 0 0 0\ncpu1 50 1 15 200 3 0 1 0 0 0\n"
                               f"intr 0\nbtime {BOOT_TIME}\n")
    for p in processes:
        d = proc / str(p.pid)
        d.mkdir()
        (d / "stat").write_text(stat_line(p))
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in p.argv) + (b"\0" if p.argv else b""))
        (d / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in p.environ.items()))
        if p.exe:
            os.symlink(p.exe, d / "exe")
        os.symlink(p.cwd, d / "cwd")
    return proc
