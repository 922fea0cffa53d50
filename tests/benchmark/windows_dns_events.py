"""Benchmark: the cost of the DNS client's log on a Windows desk, measured here on the pywin32
fake (so it times minerwatch's side, parsing and learning, plus the fake's own XPath filtering of
the whole channel on each query; not the Event Log's EvtNext/EvtRender).

Prints microseconds per 3008 event read and learned, for ordinary names and for pool names, and
the time of one scan at the reader's cap. Run: .venv/bin/python tests/benchmark/windows_dns_events.py
"""

from __future__ import annotations

import os
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "..", "exporter")]

from support.fakes.win32 import FakeWindows, dns_event_xml, modules  # noqa: E402
from minerwatch.network.dns_client import DnsClientAnswers  # noqa: E402
from minerwatch.windows.dns_events import CHANNEL, DnsEventReader  # noqa: E402


def run(names, label: str) -> None:
    machine = FakeWindows()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
    machine.channels[CHANNEL] = [
        dns_event_xml(i + 1, name, f"type:  5 edge.{name};::ffff:198.51.100.{i % 250};", pid=1000 + i, time=stamp)
        for i, name in enumerate(names)
    ]
    win32 = types.SimpleNamespace(**modules(machine))
    reader = DnsEventReader(win32.win32evtlog)
    answers = DnsClientAnswers(lambda n: "pool.example" if n.endswith("pool.example") else None,
                               lambda n: n.endswith("pool.example"))
    start = time.perf_counter()
    read = 0
    while True:
        events = reader.read()
        if not events:
            break
        answers.feed(events)
        read += len(events)
    took = time.perf_counter() - start
    print(f"{label}: {read} events, {took * 1e6 / max(read, 1):.1f} us/event, "
          f"one scan at the cap ({reader.most}): {took / max(read, 1) * reader.most * 1000:.0f} ms")


if __name__ == "__main__":
    run([f"host{i}.ministry.example" for i in range(10_000)], "ordinary names")
    run([f"n{i}.xmr.pool.example" for i in range(10_000)], "pool names")
