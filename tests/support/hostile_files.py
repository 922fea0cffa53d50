"""A process that plays tricks with a file while minerwatch reads it, as a miner's owner would.

`Trickster(mode, path)` runs it as a process (`python -m support.hostile_files MODE PATH` in
tests/), stopped by PID. It writes an XMRig config at PATH, then plays MODE until stopped:

    swap          swaps PATH between the config and a FIFO (both by rename) every 2 ms
    swap-on-read  turns PATH into a FIFO as soon as someone has read it (inotify), back to the
                  config half a second later: a reader that opens the path again finds the FIFO
    grow-on-read  grows PATH in place to --size bytes (sparse) as soon as someone has read it

`config_text()` is the config it writes, for tests to compare copies with. Linux only (inotify).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

from support.processes import stop_pid, wait_for
from support.repo import ROOT
from support.wallets import MONERO_WALLET

IN_CLOSE_NOWRITE = 0x10
SWAP_SECONDS = 0.002
_EVENT = struct.Struct("iIII")


def config_text(port: int = 3333) -> bytes:
    return json.dumps({"donate-level": 1, "pools": [
        {"url": f"stratum+tcp://127.0.0.1:{port}", "user": MONERO_WALLET, "pass": "x"}]}).encode()


def _beside(path: Path, suffix: str) -> Path:
    """A temporary name on the same filesystem, outside the directory being searched."""
    return path.parent.parent / f".{path.name}.{os.getpid()}.{suffix}"


def put_config(path: Path, data: bytes) -> None:
    """The config at `path` by rename: never a moment without a file there."""
    tmp = _beside(path, "tmp")
    tmp.write_bytes(data)
    os.rename(tmp, path)


def put_fifo(path: Path) -> None:
    tmp = _beside(path, "fifo")
    os.mkfifo(tmp)
    os.rename(tmp, path)


def _watch(directory: Path) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(directory), IN_CLOSE_NOWRITE) < 0:
        raise OSError(ctypes.get_errno(), "inotify")
    return fd


def _wait_read(fd: int, name: str) -> None:
    """Until someone closes `name` after reading it."""
    while True:
        data, offset = os.read(fd, 65536), 0
        while offset < len(data):
            _, mask, _, length = _EVENT.unpack_from(data, offset)
            event_name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
            if mask & IN_CLOSE_NOWRITE and event_name == os.fsencode(name):
                return
            offset += _EVENT.size + length


def _drain(fd: int) -> None:
    while select.select([fd], [], [], 0)[0]:
        os.read(fd, 65536)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["swap", "swap-on-read", "grow-on-read"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--ready", type=Path)
    parser.add_argument("--size", type=int, default=4 << 30)
    args = parser.parse_args(argv)
    path, data = args.path, config_text()
    put_config(path, data)
    watch = _watch(path.parent) if args.mode != "swap" else -1
    if args.ready:
        args.ready.touch()
    if args.mode == "swap":
        while True:  # each state long enough to be checked, short enough to change before the copy
            put_config(path, data)
            time.sleep(SWAP_SECONDS)
            put_fifo(path)
            time.sleep(SWAP_SECONDS)
    while True:
        _wait_read(watch, path.name)
        if args.mode == "grow-on-read":
            os.truncate(path, args.size)
            continue
        put_fifo(path)
        time.sleep(0.5)
        put_config(path, data)
        _drain(watch)  # reads of the FIFO's moment are past


class Trickster:
    """The tricks above played on `path` by a process of their own, stopped by PID."""

    def __init__(self, mode: str, path: Path, *args: str):
        ready = _beside(path, "ready")
        self.proc = subprocess.Popen([sys.executable, "-m", "support.hostile_files", mode, str(path),
                                      f"--ready={ready}", *args], cwd=ROOT / "tests")
        wait_for(lambda: ready.exists() or self.proc.poll() is not None, what=f"{mode} on {path}")
        assert self.proc.poll() is None, f"hostile_files {mode} exited {self.proc.returncode}"

    def stop(self) -> None:
        stop_pid(self.proc)


if __name__ == "__main__":
    main()
