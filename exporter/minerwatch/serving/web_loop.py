"""The web server's connections: one thread waits on all of them, workers answer whole requests.

A thread per connection lets anyone who can reach the port take the exporter's threads and
memory by opening connections and sending nothing (10,000 idle connections were 10,000
threads and 317 MB). Here one loop thread, with one selector, accepts connections, runs TLS
handshakes, reads request heads as their bytes come and writes answers as the client takes
them; only a connection whose whole head has arrived goes to a worker (web_workers), and comes
back with its answer. Idle and half-sent connections cost a socket and a small object each.

At most `max_connections` are open (0: no cap). One more that arrives at the cap takes the
place of the connection that has waited longest for its next request (keep-alive idle, or a
head still coming), so a scrape on a new connection is answered even while someone holds the
cap with idle connections; when every open connection is being answered, the newcomer gets a
503 (plain HTTP) and is closed at once. Running out of descriptors before the cap (a low
RLIMIT_NOFILE) is met the same way: the longest waiting connection makes room.

Each waiting state keeps its connections in the order they entered it, and every connection in
it has the same time limit, so the next deadline and the longest waiter are both the first
entry: no scan over thousands of connections.

Time limits: the TLS handshake, then the request head, each within `header_timeout` (the head
of a keep-alive request from its first byte); `idle_timeout` between keep-alive requests;
`write_timeout` for a whole answer; LINGER_SECONDS to read what a client still sends after an
error answer (closing on unread input makes the kernel send a reset, which can destroy the
answer before the client reads it).
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import socketserver
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Deque, Dict, Optional, Set

from minerwatch.text import host_text
from minerwatch.serving.web_conn import (
    BUSY, CLOSED, HANDSHAKE, IDLE, LINGER, READ, READING, WRITING, Connection,
)
from minerwatch.serving.web_http import HttpError, Request
from minerwatch.serving.web_workers import WorkerPool

if TYPE_CHECKING:
    from minerwatch.serving.web_config import WebConfig

log = logging.getLogger("minerwatch.web")

LISTEN_BACKLOG = 4096  # node_exporter's (Go asks for somaxconn, 4096 on current kernels)
HEADER_TIMEOUT = 10.0  # TLS handshake, then request line and headers
IDLE_TIMEOUT = 120.0  # between keep-alive requests: longer than a 1-minute scrape interval
WRITE_TIMEOUT = 60.0  # a whole answer
LINGER_SECONDS = 0.5  # after an error answer, how long unread input is drained before closing
LINGER_BYTES = 65536
KEEPALIVE_GRACE = 0.002  # how long a worker waits for the next request on its connection
ACCEPT_BATCH = 64  # connections accepted per wake-up, so a flood cannot starve the others
ACCEPT_PAUSE = 0.1  # after accept() failed for want of descriptors or memory
PRESSURE_LOG_SECONDS = 60.0  # at most one log line this often about the cap, or about a bug

_LISTENER, _WAKE = object(), object()
# Descriptors or memory ran out: accept() fails for every pending connection alike, so waiting
# a moment beats spinning on a listener that stays readable.
_ACCEPT_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM,
                     *(getattr(errno, name) for name in ("WSAEMFILE", "WSAENOBUFS") if hasattr(errno, name))}


class LoopServer(socketserver.TCPServer):
    """The listener (socketserver's bind and listen), the connection loop and the worker pool.
    A subclass says what to answer: `answer` (run by a worker), `error_answer`, `refusal`.
    `web` is the web config (TLS, auth, headers) a connection gets when it is accepted."""

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address, web_config: "WebConfig", pool: WorkerPool, *, max_connections: int = 0,
                 header_timeout: float = HEADER_TIMEOUT, idle_timeout: float = IDLE_TIMEOUT,
                 write_timeout: float = WRITE_TIMEOUT):
        self.web = web_config
        self.pool = pool
        self.max_connections = max_connections
        self.header_timeout, self.idle_timeout, self.write_timeout = header_timeout, idle_timeout, write_timeout
        # Each waiting state's time limit; a TLS handshake waits among READING.
        self.limits = {READING: header_timeout, IDLE: idle_timeout, WRITING: write_timeout, LINGER: LINGER_SECONDS}
        # The loop thread alone touches these (connections, their states, the selector).
        self._conns: Set[Connection] = set()
        self._waits: Dict[str, "OrderedDict[Connection, None]"] = {
            READING: OrderedDict(), IDLE: OrderedDict(), WRITING: OrderedDict(), LINGER: OrderedDict()}
        self._selector: Optional[selectors.BaseSelector] = None
        self._listening = False
        self._accept_paused_until = 0.0
        self._pressure = (0.0, 0, 0)  # (last log time, evicted, refused) as of that line
        # Workers give connections back through this deque and a byte on the wake-up socket.
        self._returned: Deque[Connection] = deque()
        self._wake_recv, self._wake_send = socket.socketpair()
        self._wake_recv.setblocking(False)
        self._wake_send.setblocking(False)
        self._wake_pending = False
        # What other threads ask of the loop and wait for, under one condition.
        self._state = threading.Condition()
        self._in_flight = 0
        self._accepting = True
        self._draining = False
        self._closing = False
        self._loop_alive = False
        self._stopped_accepting = threading.Event()
        self._loop_done = threading.Event()
        self.evicted = self.refused = self.accept_errors = 0  # counters, for the metrics
        self._bugs, self._bug_logged = 0, 0.0
        super().__init__(address, None)

    # -- what the exporter calls ----------------------------------------------------------------

    @property
    def requests_in_flight(self) -> int:
        """Requests being answered: with a worker, or their answer being sent."""
        return self._in_flight

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    @property
    def draining(self) -> bool:
        return self._draining

    def set_web_config(self, web_config: "WebConfig") -> None:
        """TLS, auth and headers for connections accepted from now on (one attribute swap)."""
        self.web = web_config

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """The connection loop; returns after server_close()."""
        with self._state:
            if self._closing or self._loop_alive:
                return
            self._loop_alive = True
        self.socket.setblocking(False)
        selector = self._selector = selectors.DefaultSelector()
        selector.register(self._wake_recv, READ, _WAKE)
        try:
            while not self._closing:
                self._apply_requests()
                for key, mask in selector.select(self._timeout()):
                    if key.data is _LISTENER:
                        self._accept()
                    elif key.data is _WAKE:
                        self._drain_wakeups()
                    else:
                        self._ready(key.data)
                self._take_returned()
                self._expire(time.monotonic())
        finally:
            with self._state:
                returned, self._returned = list(self._returned), deque()
            for conn in returned:
                conn.close()
            for conn in list(self._conns):
                if conn.state != BUSY:
                    self._close(conn)
            selector.close()
            self._stopped_accepting.set()
            self._loop_done.set()

    def shutdown(self) -> None:
        """Stop accepting connections; the loop goes on with those open (see drain)."""
        with self._state:
            self._accepting = False
            alive = self._loop_alive
        if alive:
            self._wake()
            self._stopped_accepting.wait(5)

    def drain(self, timeout: float) -> bool:
        """Close connections waiting for a request and wait for the requests in flight; False if
        `timeout` passed first. Call shutdown() first so nothing new is accepted; connections
        being answered close once their answer is out."""
        deadline = time.monotonic() + timeout
        with self._state:
            self._draining = True
        self._wake()
        with self._state:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.wait(remaining)
        return True

    def server_close(self) -> None:
        """Stop the loop, close every connection and the listener."""
        with self._state:
            self._closing = True
            alive = self._loop_alive
        if alive:
            self._wake()
            self._loop_done.wait(5)
        super().server_close()
        self.pool.close()
        if not alive or self._loop_done.is_set():
            self._wake_recv.close()
            self._wake_send.close()

    # -- what a subclass says -------------------------------------------------------------------

    def answer(self, conn: Connection, request: Request) -> bytes:  # pragma: no cover - interface
        """The whole answer to `request`, run by a worker; sets conn.close_after, conn.linger."""
        raise NotImplementedError

    def error_answer(self, conn: Connection, error: HttpError) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def refusal(self, reason: str) -> bytes:  # pragma: no cover - interface
        """The answer to a plain-HTTP connection turned away (`reason` says why)."""
        raise NotImplementedError

    # -- socketserver hooks ---------------------------------------------------------------------

    def server_bind(self):
        super().server_bind()  # no socket.getfqdn(): no DNS look-up of this host's name at start
        self.server_name, self.server_port = self.server_address[:2]

    # -- the loop -------------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._wake_pending:  # a byte is on its way already: one wakes the loop for all
            return
        self._wake_pending = True
        try:
            self._wake_send.send(b"\0")
        except (BlockingIOError, OSError):  # full: the loop is awake anyway; closed: it is gone
            pass

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_recv.recv(4096):
                pass
        except BlockingIOError:
            pass
        # After reading: a wake-up asked before this line either left a byte (read above, or
        # a spare wake-up later) or found one on its way, and what it asked for is looked at
        # before the loop sleeps again (returned connections, then shutdown and drain).
        self._wake_pending = False

    def _apply_requests(self) -> None:
        """What shutdown(), drain() and an accept pause ask of the loop."""
        selector = self._selector
        want = self._accepting and time.monotonic() >= self._accept_paused_until
        if want and not self._listening:
            selector.register(self.socket, READ, _LISTENER)
            self._listening = True
        elif not want and self._listening:
            selector.unregister(self.socket)
            self._listening = False
        if not self._accepting:
            self._stopped_accepting.set()
        if self._draining:
            for state in (READING, IDLE, LINGER):
                for conn in list(self._waits[state]):
                    self._close(conn)

    def _timeout(self) -> Optional[float]:
        """Seconds until the next deadline: the first connection of each waiting state, the
        pool's next look at stalled jobs, the end of an accept pause. None: nothing due."""
        due = [next(iter(waits)).since + self.limits[state] for state, waits in self._waits.items() if waits]
        tick = self.pool.tick()
        if tick is not None:
            due.append(tick)
        if self._accepting and not self._listening:
            due.append(self._accept_paused_until)
        if not due:
            return None
        return max(0.0, min(due) - time.monotonic())

    def _expire(self, now: float) -> None:
        for state, waits in self._waits.items():
            limit = self.limits[state]
            while waits:
                conn = next(iter(waits))
                if conn.since + limit > now:
                    break
                if state == LINGER:
                    self._close(conn)
                    continue
                if conn.state == HANDSHAKE:
                    log.debug("TLS handshake with %s failed: timed out", conn.peer)
                else:
                    log.debug("connection from %s ended: %s timed out", conn.peer, conn.state)
                if not conn.tls and conn.state != WRITING:
                    try:  # what it sent last would be unread input: the close would be a reset
                        conn.discard(LINGER_BYTES)
                    except OSError:
                        pass
                self._close(conn)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_EXHAUSTED:
                    # Out of descriptors before the cap (a low RLIMIT_NOFILE): the connection
                    # that has waited longest gives its descriptor to the newcomer, as at the cap.
                    victim = self._longest_waiting()
                    if victim is not None:
                        self._evict(victim)
                        continue
                    self.accept_errors += 1
                    if self.accept_errors == 1 or self.accept_errors % 1000 == 0:
                        log.warning("cannot accept connections (%d times so far): %s", self.accept_errors,
                                    host_text(str(exc), 200))
                    self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                    self._apply_requests()
                    return
                continue  # the client gave up before we took it (ECONNABORTED): next one
            self._admit(sock, address[0])

    def _admit(self, sock: socket.socket, peer: str) -> None:
        if self.max_connections and len(self._conns) >= self.max_connections:
            victim = self._longest_waiting()
            if victim is None:
                self._refuse(sock, peer)
                return
            self._evict(victim)
        try:
            conn = Connection(sock, peer, self.web)  # read once: TLS and auth from the same config
        except OSError as exc:  # the client reset it already
            log.debug("connection from %s ended: %s", peer, host_text(str(exc), 200))
            sock.close()
            return
        self._conns.add(conn)
        self._enter(conn, conn.state)
        self._watch(conn, READ)
        if conn.state == HANDSHAKE:
            self._ready(conn)  # a ClientHello that came with the connection

    def _longest_waiting(self) -> Optional[Connection]:
        """The connection to close for a newcomer at the cap: one lingering after an error
        answer, else the one that has waited longest for a request (idle keep-alive, or a head
        or TLS handshake still coming). Connections being answered are never taken."""
        if self._waits[LINGER]:
            return next(iter(self._waits[LINGER]))
        heads = [next(iter(self._waits[s])) for s in (READING, IDLE) if self._waits[s]]
        return min(heads, key=lambda c: c.since) if heads else None

    def _evict(self, victim: Connection) -> None:
        self.evicted += 1
        log.debug("closing the connection from %s, %s for %.1fs, to make room", victim.peer, victim.state,
                  time.monotonic() - victim.since)
        self._close(victim)
        self._note_pressure()

    def _refuse(self, sock: socket.socket, peer: str) -> None:
        self.refused += 1
        log.debug("refused a connection from %s: %d connections open, all busy", peer, len(self._conns))
        self._note_pressure()
        try:
            if self.web.tls is None:
                sock.setblocking(False)
                sock.send(self.refusal(f"Too many open connections ({self.max_connections}), try again later.\n"))
        except OSError:
            pass
        sock.close()

    def _note_pressure(self) -> None:
        """One warning a minute at most while the cap is being hit: a client that holds it must
        not be able to flood the log, but on-call should hear of it."""
        now = time.monotonic()
        last, evicted, refused = self._pressure
        if now - last >= PRESSURE_LOG_SECONDS or not last:
            log.warning("%d HTTP connections open (--web.max-connections %d, or out of descriptors): %d waiting "
                        "connections closed early, %d refused since the last such line", len(self._conns),
                        self.max_connections, self.evicted - evicted, self.refused - refused)
            self._pressure = (now, self.evicted, self.refused)

    # -- one connection -------------------------------------------------------------------------

    def _enter(self, conn: Connection, state: str) -> None:
        """Moves `conn` to `state` as of now: last in that state's order, in-flight count kept."""
        old = conn.state
        waits = self._waits.get(READING if old == HANDSHAKE else old)
        if waits is not None:
            waits.pop(conn, None)
        was_busy, busy = old in (BUSY, WRITING), state in (BUSY, WRITING)
        conn.state = state
        conn.since = time.monotonic()
        waits = self._waits.get(READING if state == HANDSHAKE else state)
        if waits is not None:
            waits[conn] = None
        if busy != was_busy:
            self._in_flight += 1 if busy else -1  # this thread alone writes it
            if not self._in_flight and self._draining:
                with self._state:
                    self._state.notify_all()

    def _watch(self, conn: Connection, events: int) -> None:
        if conn.events == events:
            return
        if conn.events:
            self._selector.modify(conn.sock, events, conn)
        else:
            self._selector.register(conn.sock, events, conn)
        conn.events = events

    def _unwatch(self, conn: Connection) -> None:
        if conn.events:
            self._selector.unregister(conn.sock)
            conn.events = 0

    def _close(self, conn: Connection) -> None:
        if conn.state == CLOSED:
            return
        self._unwatch(conn)
        self._enter(conn, CLOSED)
        self._conns.discard(conn)
        conn.close()

    def _ready(self, conn: Connection) -> None:
        """The selector says `conn` can move on."""
        if conn.state == HANDSHAKE:
            self._guarded(conn, self._handshake)
        elif conn.state in (READING, IDLE):
            self._guarded(conn, self._read)
        elif conn.state == WRITING:
            self._guarded(conn, self._write)
        elif conn.state == LINGER:
            self._guarded(conn, self._linger)

    def _guarded(self, conn: Connection, step) -> None:
        try:
            step(conn)
        except OSError as exc:  # resets, broken pipes, TLS errors: the client's doing
            log.debug("connection from %s ended: %s", conn.peer, host_text(str(exc), 200))
            self._close(conn)
        except Exception:  # a bug: it ends this connection, never the loop that serves the rest
            self._bugs += 1
            now = time.monotonic()
            if now - self._bug_logged >= PRESSURE_LOG_SECONDS or self._bugs == 1:
                self._bug_logged = now
                log.exception("connection from %s failed (%d such failures so far)", conn.peer, self._bugs)
            self._close(conn)

    def _linger(self, conn: Connection) -> None:
        if conn.discard(conn.left):
            self._close(conn)

    def _handshake(self, conn: Connection) -> None:
        try:
            events = conn.handshake()
        except OSError as exc:  # ssl.SSLError, resets
            log.debug("TLS handshake with %s failed: %s", conn.peer, host_text(str(exc), 200))
            self._close(conn)
            return
        if events:
            self._watch(conn, events)
            return
        self._enter(conn, READING)  # the request head has its own header_timeout
        self._watch(conn, READ)
        if conn.buffered():
            self._read(conn)

    def _read(self, conn: Connection) -> None:
        data = conn.read()
        if data is None:
            self._watch(conn, READ)
            return
        try:
            if not data:  # the client stopped sending
                conn.parser.end()
                self._close(conn)
                return
            request = conn.parser.feed(data)
        except HttpError as exc:
            self._send_error(conn, exc)
            return
        if request is not None:
            self._dispatch(conn, request)
        elif conn.state == IDLE:
            self._enter(conn, READING)  # a keep-alive request began: header_timeout from now

    def _send_error(self, conn: Connection, error: HttpError) -> None:
        conn.close_after = conn.linger = True
        conn.queue(self.error_answer(conn, error))
        self._unwatch(conn)
        self._enter(conn, WRITING)
        self._write(conn)

    def _dispatch(self, conn: Connection, request: Request) -> None:
        self._unwatch(conn)
        self._enter(conn, BUSY)
        if not self.pool.submit(lambda: self._work(conn, request)):
            conn.close_after = True
            conn.queue(self.refusal("No thread free to answer, try again later.\n"))
            self._enter(conn, WRITING)
            self._write(conn)

    def _work(self, conn: Connection, request: Optional[Request]) -> None:
        """In a worker: the answer, and as much of it sent as the socket takes now. While the
        client sends its next request right behind the answer (a benchmark, a pipelining
        client) and no other connection waits for a worker, that one too: the trip through the
        loop costs more than answering it."""
        try:
            while request is not None:
                conn.queue(self.answer(conn, request))
                conn.events = conn.write()  # what the loop must wait for, if anything is left
                if conn.events or conn.close_after or self._draining:
                    break
                conn.release_slot()
                request = conn.parser.feed()
                if request is None and not self.pool.backlog:
                    data = conn.read_within(KEEPALIVE_GRACE)
                    if data:  # None: nothing came; b"": the client stopped, which the loop sees too
                        request = conn.parser.feed(data)
        except HttpError as exc:
            conn.error = exc
        except OSError as exc:
            conn.failed = exc
        except Exception as exc:  # a bug: the connection must still go back to be closed
            log.exception("answering %s failed", conn.peer)
            conn.failed = exc
        with self._state:
            closing = self._closing
            if not closing:
                self._returned.append(conn)
        if closing:
            conn.close()
        else:
            self._wake()

    def _take_returned(self) -> None:
        while self._returned:
            conn = self._returned.popleft()
            self._guarded(conn, self._back_from_worker)

    def _back_from_worker(self, conn: Connection) -> None:
        events, conn.events = conn.events, 0  # not registered while the worker had it
        if conn.failed is not None:
            log.debug("connection from %s ended: %s", conn.peer, host_text(str(conn.failed), 200))
            self._close(conn)
        elif conn.error is not None:
            self._send_error(conn, conn.error)
        elif events:
            self._enter(conn, WRITING)
            self._watch(conn, events)
        else:
            self._finished(conn)

    def _write(self, conn: Connection) -> None:
        events = conn.write()
        if events:
            self._watch(conn, events)
        else:
            self._finished(conn)

    def _finished(self, conn: Connection) -> None:
        """The answer is out: close, linger, or wait for the next request."""
        conn.release_slot()
        if conn.close_after or self._draining:
            if conn.linger and not conn.tls:
                conn.sock.shutdown(socket.SHUT_WR)
                conn.left = LINGER_BYTES
                self._enter(conn, LINGER)
                self._watch(conn, READ)
            else:
                self._close(conn)
            return
        try:
            request = conn.parser.feed()  # what came after the last request (queue() kept it)
        except HttpError as exc:
            self._send_error(conn, exc)
            return
        if request is not None:
            self._dispatch(conn, request)
            return
        self._enter(conn, READING if conn.parser.started else IDLE)
        self._watch(conn, READ)
        if conn.buffered():
            self._read(conn)
