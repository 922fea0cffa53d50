"""Miner configuration files: `miner_config`, read once per busy process life.

A miner started without arguments reads its pool and wallet from a file: XMRig `config.json`
(from its working directory or beside its executable, or `-c/--config FILE`), xmr-stak
`pools.txt`, SRBMiner and others JSON with pool and wallet keys. The file is small and decisive,
so reading it is the cheapest strong evidence against a silent miner. Candidates, in order: the
file named by `-c`/`--config`/`--config-file`, `config.json`, `pools.txt` and `config.txt` in the
working directory and beside the executable, then regular files with a config-like extension the
process holds open. Paths go through /proc/PID/cwd and /proc/PID/exe links, so a directory that
was renamed or deleted still opens.

What counts (any one): a JSON `"pools": [...]` list whose entries have a `url` and a `user`
(XMRig, xmrig-proxy, xmrig-mo); `pool_address` with `wallet_address` (xmr-stak); a Stratum URL
together with a user or wallet key. A file of a program that merely mentions pools (a Kubernetes
node-pool list, a database connection pool) has no Stratum URL, no `url`+`user` pool entries.
Only the pool's host and port reach the reason, never the user, wallet or password.
"""

from __future__ import annotations

import os
import re
from typing import Iterable, List, Optional, Sequence

from minerwatch.host.files import read_regular
from minerwatch.detection.redact import redact_text
from minerwatch.detection.signatures import POOL_URL_RE, Match
from minerwatch.text import host_text

MAX_BYTES = 1 << 20  # a miner config is a few KiB; bigger files are read only this far
NAMES = ("config.json", "pools.txt", "config.txt")
OPEN_SUFFIXES = (".json", ".txt", ".conf", ".cfg", ".ini", ".yaml", ".yml")
MAX_FDS = 256  # a process with more open files is no quiet miner; its fds are not listed
_CONFIG_FLAGS = ("-c", "--config", "--config-file")

_POOLS_LIST = re.compile(r'"pools"\s*:\s*\[')
_URL = re.compile(r'"url"\s*:\s*"([^"]{1,300})"')
_USER = re.compile(r'"(?:user|wallet|login)"\s*:\s*"[^"]{1,400}"')
_XMRSTAK = re.compile(r'"pool_address"\s*:\s*"([^"]{1,300})"')
_WALLET = re.compile(r'"wallet_address"\s*:\s*"[^"]{1,400}"')
_USER_KEY = re.compile(r'["\s](?:user|wallet|login|wallet_address|username)["\s]*[:=]')


def _shown_pool(url: str) -> str:
    """host:port of a pool URL, nothing else (no user, password or path)."""
    text = url.split("://", 1)[-1]
    text = text.rsplit("@", 1)[-1].split("/", 1)[0]
    return host_text(redact_text(text), 80)


def classify(text: str) -> Optional[str]:
    """What makes `text` a miner configuration, or None."""
    if _POOLS_LIST.search(text):
        url = _URL.search(text)
        if url and _USER.search(text):
            return f"pools with url {_shown_pool(url.group(1))} and a user"
    address = _XMRSTAK.search(text)
    if address and _WALLET.search(text):
        return f"pool_address {_shown_pool(address.group(1))} with wallet_address"
    stratum = POOL_URL_RE.search(text)
    if stratum and _USER_KEY.search(text):
        return f"Stratum URL {_shown_pool(stratum.group(0))} with a user key"
    return None


def config_argument(argv: Sequence[str]) -> str:
    for i, word in enumerate(argv):
        for flag in _CONFIG_FLAGS:
            if word == flag and i + 1 < len(argv):
                return argv[i + 1]
            if word.startswith(flag + "="):
                return word.split("=", 1)[1]
    return ""


def candidates(procfs: str, pid: int, argv: Sequence[str]) -> Iterable[tuple]:
    """(path to open, where it is shown as) for each file worth a look, cheapest first."""
    base = f"{procfs}/{pid}"
    named = config_argument(argv)
    if named:
        yield (named if named.startswith("/") else f"{base}/cwd/{named}"), f"-c {named}"
    for name in NAMES:
        yield f"{base}/cwd/{name}", f"{name} in the working directory"
    try:
        exe_dir = os.path.dirname(os.readlink(f"{base}/exe"))
    except OSError:
        exe_dir = ""
    if exe_dir.startswith("/") and not exe_dir.endswith(" (deleted)"):
        for name in NAMES:
            yield os.path.join(exe_dir, name), f"{name} beside the executable"


def open_files(procfs: str, pid: int) -> List[str]:
    """Paths of config-like files the process holds open (not for processes with many fds)."""
    fd_dir = f"{procfs}/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return []
    if len(fds) > MAX_FDS:
        return []
    out = []
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("/") and target.lower().endswith(OPEN_SUFFIXES):
            out.append(f"{fd_dir}/{fd}")
    return out


def _read(path: str) -> Optional[str]:
    data = read_regular(path, MAX_BYTES)  # a FIFO or device named config.json must not hang us
    return None if data is None else data.decode("utf-8", "replace")


def find(procfs: str, pid: int, argv: Sequence[str]) -> Optional[Match]:
    """miner_config for the process, or None. Reads a handful of small files."""
    seen = set()
    for path, shown in candidates(procfs, pid, argv):
        text = _read(path)
        if text is None:
            continue
        try:
            identity = os.stat(path)[1:3]
        except OSError:
            identity = path
        seen.add(identity)
        why = classify(text)
        if why:
            return Match("miner_config", f"{host_text(shown, 96)}: {why}")
    for path in open_files(procfs, pid):
        try:
            identity = os.stat(path)[1:3]
            target = os.readlink(path)
        except OSError:
            continue
        if identity in seen:
            continue
        text = _read(path)
        why = classify(text) if text else None
        if why:
            return Match("miner_config", f"open file {host_text(target, 96)}: {why}")
    return None
