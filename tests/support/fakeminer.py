"""A miner stand-in: burns CPU and speaks XMRig's Stratum dialect to a pool on 127.0.0.1.

Started by tests as a real process under a miner-like name, with XMRig's arguments:
    xmrig fakeminer.py -o stratum+tcp://127.0.0.1:PORT -u 4<wallet> -p x --donate-level 1
It parses only what it needs (-o, -u, -p, --threads, --dialect) and ignores the rest, as the
point is what the command line and the traffic look like. Without -o it only burns CPU.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time


def burn(stop_after: float) -> None:
    end = time.monotonic() + stop_after
    x = 0
    while time.monotonic() < end:
        for _ in range(10000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def arg(argv, names, default=None):
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return default


def talk(url: str, user: str, password: str, dialect: str, duration: float) -> None:
    host_port = url.split("://", 1)[-1]
    host, port = host_port.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit("fakeminer talks only to 127.0.0.1")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        f = sock.makefile("rwb")

        def call(i, method, params):
            f.write(json.dumps({"id": i, "jsonrpc": "2.0", "method": method, "params": params}).encode() + b"\n")
            f.flush()
            f.readline()

        if dialect == "stratum1":
            call(1, "mining.subscribe", ["fakeminer/1.0"])
            call(2, "mining.authorize", [user, password])
            f.readline()  # mining.notify
        else:
            call(1, "login", {"login": user, "pass": password, "agent": "XMRig/6.21.0 (Linux x86_64)",
                              "algo": ["rx/0"]})
        end, i = time.monotonic() + duration, 3
        while time.monotonic() < end:
            time.sleep(1.0)
            if dialect == "stratum1":
                call(i, "mining.submit", [user, "bf", "00000000", "504e86b9", "00000000"])
            else:
                call(i, "submit", {"id": "standin", "job_id": "1", "nonce": "deadbeef", "result": "0" * 64})
            i += 1


def main(argv) -> None:
    duration = float(arg(argv, ["--duration"], "600"))
    threads = int(arg(argv, ["-t", "--threads"], "1"))
    for _ in range(threads):
        threading.Thread(target=burn, args=(duration,), daemon=True).start()
    url = arg(argv, ["-o", "--url"])
    if url:
        talk(url, arg(argv, ["-u", "--user"], "x"), arg(argv, ["-p", "--pass"], "x"),
             arg(argv, ["--dialect"], "xmrig"), duration)
    else:
        time.sleep(duration)


if __name__ == "__main__":
    main(sys.argv[1:])
