"""The two sock_diag dumps of a scrape, timed: the network collector's socket table
(network/sockets.py) and the busy probe's tcp_info table (tcp_flows.py).

    PYTHONPATH=exporter python tests/benchmark/dumps.py [--connections 2000] [--rounds 50]

Holds that many established loopback connections itself (both ends: twice as many sockets), on
127.0.0.1 only, and closes them on exit. Prints the median and p90 wall time of each dump.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: support
from minerwatch.detection import tcp_flows  # noqa: E402
from minerwatch.network.sockets import ProcNetSockets  # noqa: E402
from support.loopback import loopback_connections  # noqa: E402


def timed(fn, rounds: int):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1000, times[int(0.9 * (len(times) - 1))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    held = loopback_connections(args.connections)
    try:
        sockets = ProcNetSockets("/proc", netlink=True)
        table = tcp_flows.dump()
        print(f"{len(table)} established TCP sockets with tcp_info")
        wanted = {os.fstat(s.fileno()).st_ino for s in held[1:3]}  # what the busy probe asks for
        assert set(tcp_flows.dump(wanted)) == wanted
        for name, fn in (("network socket table (sockets.py)", sockets.connections),
                         ("probe tcp_info table, every socket", tcp_flows.dump),
                         ("probe tcp_info table, one process's 2", lambda: tcp_flows.dump(wanted))):
            median, p90 = timed(fn, args.rounds)
            print(f"{name:40s} median {median:7.2f} ms  p90 {p90:7.2f} ms")
    finally:
        for s in held:
            s.close()


if __name__ == "__main__":
    main()
