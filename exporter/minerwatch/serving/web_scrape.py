"""One collection shared by concurrent scrapes of the same format.

Two Prometheus servers (or a retry) scraping at once must not run every collector twice: a scrape
that arrives while another of the same format is being collected waits for that one and answers
with its body. Scrapes that arrive after it finished start a fresh collection.
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, Optional

from minerwatch.serving.metrics import Registry


class _Flight:
    def __init__(self):
        self.done = threading.Event()
        self.body: Optional[bytes] = None
        self.error: Optional[BaseException] = None


class SharedScrape:
    def __init__(self, registry: Registry):
        self.registry = registry
        self._lock = threading.Lock()
        self._flights: Dict[str, _Flight] = {}

    def body(self, encoder: Callable[[Registry], bytes], content_type: str) -> bytes:
        """The exposition in `content_type`, from the collection in progress if there is one."""
        with self._lock:
            flight = self._flights.get(content_type)
            leader = flight is None
            if leader:
                flight = self._flights[content_type] = _Flight()
        if leader:
            try:
                flight.body = encoder(self.registry)
            except BaseException as exc:  # every waiter gets the same failure
                flight.error = exc
            finally:
                with self._lock:
                    del self._flights[content_type]
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.body
