"""One client connection of the web server: its socket, the request head being read, the answer
being written. Every operation is non-blocking and says what it waits for instead of waiting.

A connection belongs to one thread at a time: the connection loop (web_loop), or the worker it
handed a whole request to, who gives it back with the answer queued. Nothing here takes a lock.

TLS goes through the same calls: ssl's non-blocking handshake, reads and writes raise "want read"
or "want write" where a plain socket would block. A TLS write that could not finish must be
tried again with the same bytes, so answers leave TLS connections in fixed slices of one record.
"""

from __future__ import annotations

import selectors
import socket
from typing import TYPE_CHECKING, Optional, Tuple

from minerwatch.serving.web_http import HeadParser, HttpError

if TYPE_CHECKING:
    import threading

    from minerwatch.serving.web_config import WebConfig

READ_SIZE = 16384  # per read: a request head rarely needs two
TLS_SLICE = 16384  # one TLS record
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_PLAIN: Tuple[tuple, tuple] = ((), ())  # a plain socket has no TLS "want" errors to catch

# Where a connection is; the loop keeps each waiting state in arrival order (web_loop).
HANDSHAKE = "handshake"  # TLS handshake under way
READING = "reading"  # a request head has begun, or is awaited on a new connection
IDLE = "idle"  # keep-alive: waiting for the first byte of the next request
BUSY = "busy"  # a worker is answering it
WRITING = "writing"  # the answer is partly sent
LINGER = "linger"  # after an error answer: reading what the client still sends, then close
CLOSED = "closed"


def _tls_waits() -> Tuple[tuple, tuple]:
    import ssl  # loaded already: only TLS connections get here, and web_config loaded it for them

    return (ssl.SSLWantReadError,), (ssl.SSLWantWriteError,)


class Connection:
    __slots__ = ("sock", "peer", "web", "tls", "parser", "out", "sent", "close_after", "linger",
                 "state", "since", "slot", "events", "failed", "error", "left", "_want_read", "_want_write")

    def __init__(self, sock: socket.socket, peer: str, web: "WebConfig"):
        sock.setblocking(False)
        # Small answers leave in one write; with Nagle on, a second write of a large one would
        # wait for the client's delayed ACK (40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        context = web.tls  # the certificate in force now (web_config reloads a renewed one)
        self.tls = context is not None
        if self.tls:
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self._want_read, self._want_write = _tls_waits() if self.tls else _PLAIN
        self.sock = sock
        self.peer = peer
        self.web = web  # TLS, auth and headers of the config in force when it was accepted
        self.parser = HeadParser()
        self.out: Optional[memoryview] = None  # the answer being sent
        self.sent = 0
        self.close_after = False  # close once the answer is out
        self.linger = False  # and read what the client still sends first
        self.state = HANDSHAKE if self.tls else READING
        self.since = 0.0  # when it entered its state (the loop's clock)
        self.slot: Optional["threading.BoundedSemaphore"] = None  # a scrape slot, held until sent
        self.events = 0  # what the loop's selector watches it for
        self.failed: Optional[BaseException] = None  # what ended it in a worker
        self.error: Optional[HttpError] = None  # a malformed next request a worker read
        self.left = 0  # bytes still to read while lingering

    def handshake(self) -> int:
        """Moves the TLS handshake on: 0 once it is done, else the events it waits for.
        Raises OSError (ssl.SSLError) when it fails."""
        try:
            self.sock.do_handshake()
        except self._want_read:
            return READ
        except self._want_write:
            return WRITE
        if not self.web.client_allowed(self.sock.getpeercert()):  # client_allowed_sans
            raise ConnectionRefusedError("client certificate names no SAN of client_allowed_sans")
        return 0

    def read(self) -> Optional[bytes]:
        """What has arrived (b"" once the client stopped sending), None if nothing yet."""
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, *self._want_read, *self._want_write):
            return None
        if self.tls and data:
            # TLS decrypts whole records: what is left of one is in ssl, not in the socket, and
            # the selector would never say so.
            while len(data) < READ_SIZE and self.sock.pending():
                data += self.sock.recv(READ_SIZE - len(data))
        return data

    def read_within(self, seconds: float) -> Optional[bytes]:
        """Like read, but waits up to `seconds` for input: in a worker, never in the loop."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(READ_SIZE)
        except TimeoutError:  # socket.timeout, and ssl's "The read operation timed out"
            return None
        finally:
            self.sock.setblocking(False)
        if self.tls and data:
            while len(data) < READ_SIZE and self.sock.pending():
                data += self.sock.recv(READ_SIZE - len(data))
        return data

    def buffered(self) -> bool:
        """Whether ssl holds decrypted input the selector cannot see."""
        return self.tls and self.sock.pending() > 0

    def queue(self, answer: bytes) -> None:
        """The answer to the request just read; what came after that request's head is the
        start of the next one (pipelining), which `parser.feed()` goes on with."""
        self.out = memoryview(answer)
        self.sent = 0
        self.parser = HeadParser(self.parser.rest())

    def write(self) -> int:
        """Sends what it can of the queued answer: 0 once all of it is out, else the events
        it waits for."""
        out = self.out
        while self.sent < len(out):
            chunk = out[self.sent:self.sent + TLS_SLICE] if self.tls else out[self.sent:]
            try:
                self.sent += self.sock.send(chunk)
            except (BlockingIOError, *self._want_write):
                return WRITE
            except self._want_read:
                return READ
        self.out = None
        return 0

    def discard(self, most: int) -> bool:
        """Reads and drops up to `most` bytes that have arrived; True once the client stopped
        sending (or `most` is used up)."""
        while most > 0:
            data = self.read()
            if data is None:
                self.left = most
                return False
            if not data:
                return True
            most -= len(data)
        return True

    def release_slot(self) -> None:
        if self.slot is not None:
            self.slot.release()
            self.slot = None

    def close(self) -> None:
        self.state = CLOSED
        self.release_slot()
        try:
            self.sock.close()
        except OSError:
            pass
