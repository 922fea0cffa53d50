"""Busy processes whose settings live in a file: miners configured the quiet ways, and ordinary
services whose files and options look a little like a miner's.

Each is this Python under an ordinary name (support.processes.Spawner) running BUSY_SCRIPT, a
small loop that keeps a fraction of a core busy, so that the busy probe reads its configuration.
With `-c FILE` it opens FILE and keeps it open (a miner that holds its config, later deleted).
The script is written to the test's temp folder, which makes it a weak signal of its own
(exe_in_temp_dir): every one of these processes is a suspect while busy, so /metrics lists its
signals, and a test can see that the probe looked at the ordinary ones and found nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from support.wallets import MONERO_WALLET

BUSY_SCRIPT = r'''
import sys, time
held = None
if "-c" in sys.argv[1:-1]:
    try:
        held = open(sys.argv[sys.argv.index("-c") + 1], "rb")  # kept open, as a miner may
    except OSError:
        pass
duty = 0.2
x = 0
while True:
    end = time.monotonic() + 0.1 * duty
    while time.monotonic() < end:
        for _ in range(2000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    time.sleep(0.1 * (1 - duty))
'''


def busy_script(folder: Path) -> Path:
    path = folder / "service_main.py"
    path.write_text(BUSY_SCRIPT)
    return path


def connection_pool_config() -> str:
    """A report service's database connection pools: url and user, but no miner's."""
    return json.dumps({
        "service": "reports",
        "pools": [
            {"url": "postgresql://db.internal:5432/reports", "user": "app", "max": 10},
            {"url": "db-replica.internal:5432", "user": "app", "max": 4},
            {"url": "redis://cache.internal:6379/0", "user": "default"},
            {"url": "https://api.internal:8443/v1", "user": "svc"},
        ],
        "cpu": {"threads": 4},
    }, indent=2)


def xmrig_config(url: str, user: bool = False) -> dict:
    """What XMRig writes, trimmed; no `user` unless asked (XMRig defaults it)."""
    pool = {"url": url, "keepalive": True, "tls": False}
    if user:
        pool["user"] = MONERO_WALLET
    return {"autosave": True, "cpu": {"enabled": True, "huge-pages": True}, "pools": [pool]}


def no_user_config() -> str:
    """Only an address and port, no user, no XMRig options: the usual port is what is left."""
    return json.dumps({"pools": [{"url": "10.20.30.40:3333"}]})


def padded_config(padding: int = 2 << 20) -> str:
    """Valid JSON with `padding` bytes of white space and a long string before the pools."""
    body = json.dumps({"pools": [{"url": "stratum+tcp://10.20.30.40:7000"}]})
    return "{" + " " * (padding // 2) + '"notes": "' + "x" * (padding // 2) + '", ' + body[1:]


def escaped_config() -> str:
    """Every letter of the keys escaped (`\\u0070ools`): the same JSON to any parser."""
    def escape(key: str) -> str:
        return "".join(f"\\u{ord(c):04x}" for c in key)
    return ('{"' + escape("pools") + '": [{"' + escape("url") + '": "10.20.30.40:14444", "'
            + escape("pass") + '": "x"}]}')
