"""The HTTP server: listen address, timeouts and limits, the landing page and the telemetry path.

A user of the host may want the exporter blind, so the server holds up against clients that
misbehave on purpose:
- a listen backlog of 4096 (node_exporter's), so a burst of connections is queued, not dropped;
- a header timeout (TLS handshake, request line and headers each must arrive within it, however
  slowly the bytes trickle) and an idle timeout between keep-alive requests;
- at most `max_requests` scrapes at once (503 beyond, as node_exporter's --web.max-requests),
  and scrapes that arrive together share one collection (web_scrape);
- every request gets a real status line: garbage 400, HTTP/0.9 400, HTTP/2 or /9.9 505; a
  request body is never read, so a request that has one ends its connection.
TLS, basic auth and extra headers come from --web.config.file (web_config, web_auth).
"""

from __future__ import annotations

import base64
import gzip
import io
import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional, Set, Tuple

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from minerwatch.text import host_text
from minerwatch.web_config import WebConfig, load_web_config  # noqa: F401  (the public interface)
from minerwatch.web_scrape import SharedScrape

log = logging.getLogger("minerwatch.web")

LISTEN_BACKLOG = 4096  # node_exporter's (Go asks for somaxconn, 4096 on current kernels)
HEADER_TIMEOUT = 10.0  # TLS handshake, then request line and headers
IDLE_TIMEOUT = 120.0  # between keep-alive requests: longer than a 1-minute scrape interval
WRITE_TIMEOUT = 60.0  # each write of a response


def parse_listen_address(value: str) -> Tuple[str, int]:
    """node_exporter's form: ':9789', '127.0.0.1:9789', '[::1]:9789'."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT (for example :9789 or 127.0.0.1:9789)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


LANDING_PAGE = """<!DOCTYPE html>
<html><head><title>minerwatch</title></head>
<body><h1>minerwatch {version}</h1>
<p>Prometheus exporter that catches cryptocurrency miners on this host.</p>
<ul><li><a href="{path}">Metrics</a></li></ul>
</body></html>
"""


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address, registry: CollectorRegistry, telemetry_path: str, web_config: WebConfig,
                 version: str, max_requests: int = 40, *, header_timeout: float = HEADER_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, write_timeout: float = WRITE_TIMEOUT):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        if address[0] == "":
            # ':PORT' means every address; prefer a dual-stack IPv6 socket where the host has one.
            if socket.has_ipv6:
                self.address_family = socket.AF_INET6
                address = ("::", address[1])
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.web = web_config
        self.version = version
        self.max_requests = max_requests
        self.header_timeout, self.idle_timeout, self.write_timeout = header_timeout, idle_timeout, write_timeout
        self.scrape = SharedScrape(registry)
        self._scrape_slots = threading.BoundedSemaphore(max_requests) if max_requests > 0 else None
        # Connection state, under one condition: who waits for a request, how many are in flight.
        self._state = threading.Condition()
        self._idle: Set["Handler"] = set()
        self._in_flight = 0
        self._draining = False
        self._web_of: "weakref.WeakKeyDictionary[socket.socket, WebConfig]" = weakref.WeakKeyDictionary()
        super().__init__(address, Handler)

    # -- what other parts of minerwatch call ----------------------------------------------------

    def set_web_config(self, web_config: WebConfig) -> None:
        """TLS, auth and headers for connections accepted from now on (one attribute swap)."""
        self.web = web_config

    def drain(self, timeout: float) -> bool:
        """Close idle connections and wait for requests in flight; False if `timeout` passed first.

        Call shutdown() first so nothing new is accepted; connections already open end after
        their current request."""
        deadline = time.monotonic() + timeout
        with self._state:
            self._draining = True
            for handler in self._idle:
                handler.abort()
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.wait(remaining)
        return True

    @property
    def requests_in_flight(self) -> int:
        return self._in_flight

    # -- socketserver hooks ---------------------------------------------------------------------

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # HTTPServer.server_bind would also call socket.getfqdn(), a DNS look-up of this host's
        # name at every start: on ten thousand desks that is needless resolver traffic.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, addr = super().get_request()
        web = self.web  # read once: TLS and auth of one connection come from the same config
        if web.tls is not None:
            sock = web.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self._web_of[sock] = web
        return sock, addr

    def handle_error(self, request, client_address):
        """One line per broken connection: a hostile client must not be able to flood the log."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # resets, timeouts, TLS errors: the client's doing
            log.debug("connection from %s ended: %s", client_address[0], host_text(str(exc), 200))
        else:
            log.error("connection from %s failed: %s: %s", client_address[0], type(exc).__name__,
                      host_text(str(exc), 200), exc_info=log.isEnabledFor(logging.DEBUG))


class _DeadlineReader(io.RawIOBase):
    """Socket reads that all end by one deadline, so a client cannot trickle bytes forever."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.deadline = 0.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


class _SocketWriter(io.RawIOBase):
    """Unbuffered socket writes, each bounded by the write timeout."""

    def __init__(self, sock: socket.socket, timeout: float):
        self.sock, self.timeout = sock, timeout

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)
        return len(data)


class Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    server_version = "minerwatch"
    protocol_version = "HTTP/1.1"
    # Errors found before the version is read (garbage, HTTP/2, HTTP/9.9) still get a status line.
    default_request_version = "HTTP/1.0"
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    def setup(self):
        self.connection = self.request
        self.web: WebConfig = self.server._web_of.pop(self.connection, self.server.web)
        self.requests_served = 0
        self.reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader, 65536)
        self.wfile = _SocketWriter(self.connection, self.server.write_timeout)
        # Headers and body go out in separate writes: with Nagle on, a keep-alive scrape waits
        # for the client's delayed ACK (40 ms) before the body leaves.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.handshake_failed = False
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.settimeout(self.server.header_timeout)
                self.connection.do_handshake()
            except OSError as exc:  # ssl.SSLError and timeouts are OSErrors
                log.debug("TLS handshake with %s failed: %s", self.client_address[0], host_text(str(exc), 200))
                self.handshake_failed = True

    def handle(self):
        if self.handshake_failed:
            return
        self.close_connection = False
        try:
            while not self.close_connection:
                self.handle_one_request()
        except OSError as exc:
            log.debug("connection from %s ended: %s", self.client_address[0], host_text(str(exc), 200))

    def finish(self):
        self.rfile.close()
        self.wfile.close()

    def abort(self) -> None:
        """Close this connection from another thread (drain): the waiting read returns at once."""
        try:
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)  # the fd, not TLS state
        except OSError:
            pass

    def handle_one_request(self):
        server = self.server
        with server._state:
            if server._draining:
                self.close_connection = True
                return
            server._idle.add(self)
        started = False
        try:
            wait = server.header_timeout if self.requests_served == 0 else server.idle_timeout
            self.reader.deadline = time.monotonic() + wait
            ready = self.rfile.peek(1)
            if not ready:
                self.close_connection = True
                return
            self.reader.deadline = time.monotonic() + server.header_timeout
            with server._state:
                server._idle.discard(self)
                server._in_flight += 1
                started = True
            super().handle_one_request()
            self.requests_served += 1
        finally:
            with server._state:
                server._idle.discard(self)
                if started:
                    server._in_flight -= 1
                    server._state.notify_all()
                if server._draining:
                    self.close_connection = True

    def parse_request(self) -> bool:
        if len(self.raw_requestline.split()) == 2:  # HTTP/0.9 has no status line to answer with
            self.command, self.request_version = None, self.default_request_version
            self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
            self.send_error(400, "HTTP/0.9 is not served; send HTTP/1.0 or HTTP/1.1")
            return False
        if not super().parse_request():
            return False
        length = self.headers.get("Content-Length", "0").strip()
        if length != "0" or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # the body is never read: it must not become the next request
        return True

    def end_headers(self):
        for name, value in self.web.headers.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, fmt, *args):  # access logs at debug level, in our format
        log.debug("%s %s", self.client_address[0], host_text(fmt % args, 500))

    def _authorized(self) -> bool:
        auth = self.web.auth
        if auth is None:
            return True
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(token.strip(), validate=True)
            except ValueError:  # binascii.Error, or a token that is not ASCII
                decoded = b""
            if b":" in decoded:
                user, _, password = decoded.partition(b":")
                ok = auth.check(user.decode("utf-8", "surrogateescape"), password)
                if ok is None:
                    self._send(503, b"Too many authentication attempts, try again later.\n", "text/plain")
                    return False
                if ok:
                    return True
        self._send(401, b"Unauthorized\n", "text/plain", {"WWW-Authenticate": 'Basic realm="minerwatch"'})
        return False

    def _send(self, code: int, body: bytes, content_type: str, headers: Optional[Dict[str, str]] = None):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0]
        if path == self.server.telemetry_path:
            self._metrics()
        elif path == "/":
            page = LANDING_PAGE.format(version=self.server.version, path=self.server.telemetry_path)
            self._send(200, page.encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"Not Found\n", "text/plain")

    do_HEAD = do_GET

    def _metrics(self):
        slots = self.server._scrape_slots
        if slots is not None and not slots.acquire(blocking=False):
            message = f"Limit of concurrent requests reached ({self.server.max_requests}), try again later.\n"
            self._send(503, message.encode(), "text/plain")
            return
        try:
            encoder, content_type = choose_encoder(self.headers.get("Accept"))
            try:
                body = self.server.scrape.body(encoder, content_type)
            except Exception as exc:
                log.error("scrape failed: %s: %s", type(exc).__name__, host_text(str(exc), 200),
                          exc_info=log.isEnabledFor(logging.DEBUG))
                self._send(500, b"scrape failed, see the exporter's log\n", "text/plain")
                return
        finally:
            if slots is not None:
                slots.release()
        headers = {}
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        self._send(200, body, content_type, headers)

    def _not_allowed(self):
        self._send(405, b"Method Not Allowed\n", "text/plain", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed
