"""The DNS queries this host sent and still awaits: an answer is believed only if it answers one.

Without this, any datagram from port 53 would be an answer: an unsolicited "supportxmr.com is
10.0.0.7" (sent on loopback by a local user, or as a broadcast by anyone on the segment) would
make every connection to 10.0.0.7 a pool connection. A stub resolver trusts an answer only when
it comes from the server it asked, to the socket it asked from, with the id it chose and the
question it asked; the sniffer (sniffer.py) records every query it sees the host send and the
learner (dns.py) asks `answered()` the same. Names compare in lower case: resolvers may send
0x20 mixed case, and the name reader lowers every label.

Bounded: at most `max_entries` sockets' queries (the oldest goes first), each forgotten
`timeout` seconds after it was sent (the stub resolver's own timeout, RES_TIMEOUT), or when its
answer arrives: one query, one answer. Endpoints are any hashable value, the same kind for a query
and its answer: the sniffer passes (raw address bytes, port), tests pass sockets.Endpoint.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Hashable, List, Tuple

if TYPE_CHECKING:  # dns.py's learner holds this table: no import cycle at run time
    from minerwatch.network.dns import DnsQuery, DnsResponse

ANSWERED, UNSOLICITED, MISMATCHED = "answered", "unsolicited", "mismatched"
MAX_QUESTIONS = 4  # questions remembered per (client, server, id): A and AAAA, and a retry or two

Key = Tuple[Hashable, Hashable, int]  # (client socket, server, DNS id)


class PendingQueries:
    """Pure logic: `sent()` each query the host sends, `answered()` each answer it receives."""

    def __init__(self, max_entries: int = 1024, timeout: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.max_entries, self.timeout = max_entries, timeout
        self._clock = clock
        # key -> [(name, qtype, expires)]; ordered by last query sent (the timeout is the same for all)
        self._table: "OrderedDict[Key, List[Tuple[str, int, float]]]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def sent(self, client: Hashable, server: Hashable, query: DnsQuery) -> None:
        now = self._clock()
        self._expire(now)
        key = (client, server, query.ident)
        questions = self._table.pop(key, [])
        questions.append((query.name, query.qtype, now + self.timeout))
        self._table[key] = questions[-MAX_QUESTIONS:]
        while len(self._table) > self.max_entries:
            self._table.popitem(last=False)

    def answered(self, client: Hashable, server: Hashable, response: DnsResponse) -> str:
        """ANSWERED (the query is consumed), UNSOLICITED (no such query awaits) or MISMATCHED
        (one does, with this id, but it asked another question)."""
        key = (client, server, response.ident)
        questions = self._table.get(key)
        if questions is None:
            return UNSOLICITED
        now = self._clock()
        for i, (name, qtype, expires) in enumerate(questions):
            if expires > now and qtype == response.qtype and name == response.question:
                del questions[i]
                if not questions:
                    del self._table[key]
                return ANSWERED
        if all(expires <= now for _, _, expires in questions):
            del self._table[key]
            return UNSOLICITED
        return MISMATCHED

    def _expire(self, now: float) -> None:
        while self._table:
            key, questions = next(iter(self._table.items()))
            if questions[-1][2] > now:
                return
            del self._table[key]
