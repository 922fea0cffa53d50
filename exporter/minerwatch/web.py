"""The HTTP server: listen address, timeouts and limits, the landing page and the telemetry path.

A small HTTP/1.1 server on socketserver rather than http.server: http.server pulls in
http.client, email and ssl (with libssl and libcrypto) on every desk, though most desks never
serve TLS. ssl is loaded only when the web config asks for TLS (web_config).

A user of the host may want the exporter blind, so the server holds up against clients that
misbehave on purpose:
- a listen backlog of 4096 (node_exporter's), so a burst of connections is queued, not dropped;
- a header timeout (TLS handshake, request line and headers each must arrive within it, however
  slowly the bytes trickle) and an idle timeout between keep-alive requests;
- hard limits on what it reads: request line and each header line 8 KiB (414, 431), 100 header
  lines and 64 KiB of headers in all (431); a request body is never read, so a request that has
  one ends its connection;
- every request gets a real status line: garbage 400, HTTP/0.9 400, HTTP/2 or /9.9 505; what
  request smuggling and header injection rely on (obs-fold, NUL or bare CR, a second Host or
  Authorization) is 400;
- at most `max_requests` scrapes at once (503 beyond, as node_exporter's --web.max-requests),
  and scrapes that arrive together share one collection (web_scrape).
TLS, basic auth and extra headers come from --web.config.file (web_config, web_auth).
"""

from __future__ import annotations

import base64
import gzip
import io
import logging
import re
import socket
import socketserver
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Dict, Optional, Set, Tuple

from minerwatch.exposition import choose_encoder

from minerwatch.text import host_text
from minerwatch.web_config import WebConfig, load_web_config  # noqa: F401  (the public interface)
from minerwatch.web_scrape import SharedScrape

if TYPE_CHECKING:
    from minerwatch.metrics import Registry

log = logging.getLogger("minerwatch.web")

LISTEN_BACKLOG = 4096  # node_exporter's (Go asks for somaxconn, 4096 on current kernels)
HEADER_TIMEOUT = 10.0  # TLS handshake, then request line and headers
IDLE_TIMEOUT = 120.0  # between keep-alive requests: longer than a 1-minute scrape interval
WRITE_TIMEOUT = 60.0  # each write of a response

MAX_LINE = 8192  # bytes of the request line, and of each header line, line end included
MAX_HEADERS = 100
MAX_HEADER_BYTES = 65536  # all header lines together
LINGER_SECONDS = 0.5  # after an error answer, how long unread input is drained before closing
LINGER_BYTES = 65536


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

REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    414: "URI Too Long", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}
SERVED_METHODS = ("GET", "HEAD")
# Methods of RFC 9110 a client may fairly try on a metrics path: 405 with Allow. Others: 501.
REFUSED_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# A request carrying two of these is ambiguous (which host, whose credentials): 400.
SINGLE_HEADERS = frozenset({"host", "authorization", "content-length"})
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: methods, header names
HTTP_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
LATER_VERSION = re.compile(rb"HTTP/[2-9](\.[0-9])?")


class HttpError(Exception):
    """A request the server answers with `status` and a fixed message, then closes."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """What the server uses of one request; header names are lower case."""

    __slots__ = ("method", "target", "minor", "headers", "keep_alive", "has_body")

    def __init__(self, method: str, target: str, minor: int, headers: Dict[str, str]):
        self.method, self.target, self.minor, self.headers = method, target, minor, headers
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless asked to keep it.
        self.keep_alive = "close" not in tokens if minor >= 1 else "keep-alive" in tokens
        self.has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        if self.has_body:
            self.keep_alive = False  # the body is never read: it must not become the next request

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


def _line(raw: bytes) -> bytes:
    """A line without its CRLF (or bare LF, which RFC 9112 lets a server accept)."""
    return raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]


def parse_request_line(raw: bytes) -> Tuple[str, str, int]:
    """(method, target, minor version) of `raw`, a request line with its line end."""
    line = _line(raw)
    if b"\0" in line or b"\r" in line:
        raise HttpError(400, "NUL or bare CR in the request line")
    parts = line.split(b" ")
    if len(parts) == 2:
        raise HttpError(400, "HTTP/0.9 is not served; send HTTP/1.0 or HTTP/1.1")
    if len(parts) != 3 or not parts[1] or not TOKEN.fullmatch(parts[0]):
        raise HttpError(400, "Bad request syntax: METHOD TARGET HTTP/1.1 expected")
    method, target, version = parts
    match = HTTP_VERSION.fullmatch(version)
    if match is None:
        if LATER_VERSION.fullmatch(version):
            raise HttpError(505, "Only HTTP/1.0 and HTTP/1.1 are served")
        raise HttpError(400, "Bad request version: HTTP/1.1 expected")
    if match.group(1) != b"1":
        raise HttpError(505, "Only HTTP/1.0 and HTTP/1.1 are served")
    return method.decode("ascii"), target.decode("iso-8859-1"), int(match.group(2))


def read_headers(readline) -> Dict[str, str]:
    """Header lines up to the empty line, from `readline(limit)`, within the limits above."""
    headers: Dict[str, str] = {}
    count = total = 0
    while True:
        raw = readline(MAX_LINE + 1)
        if raw == b"\r\n" or raw == b"\n":
            return headers
        if len(raw) > MAX_LINE:
            raise HttpError(431, f"A header line is longer than {MAX_LINE} bytes")
        if not raw.endswith(b"\n"):
            raise HttpError(400, "The request ended inside its headers")
        count += 1
        total += len(raw)
        if count > MAX_HEADERS:
            raise HttpError(431, f"More than {MAX_HEADERS} header lines")
        if total > MAX_HEADER_BYTES:
            raise HttpError(431, f"Headers longer than {MAX_HEADER_BYTES} bytes in all")
        if raw[0] in b" \t":
            raise HttpError(400, "Folded header lines (obs-fold) are not accepted")
        name, sep, value = _line(raw).partition(b":")
        if not sep or not TOKEN.fullmatch(name):
            raise HttpError(400, "Bad header line: NAME: VALUE expected")
        value = value.strip(b" \t")
        if b"\0" in value or b"\r" in value:
            raise HttpError(400, "NUL or bare CR in a header value")
        key = name.decode("ascii").lower()
        text = value.decode("iso-8859-1")
        if key in headers:
            if key in SINGLE_HEADERS:
                raise HttpError(400, f"More than one {name.decode('ascii')} header")
            headers[key] += ", " + text  # RFC 9110 5.3: repeated fields are one comma-separated list
        else:
            headers[key] = text


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_date_cache: Tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header's value (RFC 9110 IMF-fixdate), computed once a second, locale-free."""
    global _date_cache
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        t = time.gmtime(now)
        text = (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
        _date_cache = (now, text)  # one tuple: threads see an old pair or a new one, never half
    return text


class ExporterServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address, registry: "Registry", telemetry_path: str, web_config: WebConfig,
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
        self.landing_page = LANDING_PAGE.format(version=version, path=telemetry_path).encode()
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
        super().server_bind()  # no socket.getfqdn(): no DNS look-up of this host's name at start
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


class Handler(socketserver.BaseRequestHandler):
    """One connection: requests one after another until close, error, idle timeout or drain."""

    server: ExporterServer

    def setup(self):
        self.connection = self.request
        self.web: WebConfig = self.server._web_of.pop(self.connection, self.server.web)
        self.requests_served = 0
        self.close_connection = False
        self.linger = False  # an error answer: drain what the client still sends before closing
        self.reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader, 65536)
        # Small answers leave in one write; with Nagle on, a second write of a large one would
        # wait for the client's delayed ACK (40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.handshake_failed = False
        if self.web.tls is not None:
            try:
                self.connection.settimeout(self.server.header_timeout)
                self.connection.do_handshake()
            except OSError as exc:  # ssl.SSLError and timeouts are OSErrors
                log.debug("TLS handshake with %s failed: %s", self.client_address[0], host_text(str(exc), 200))
                self.handshake_failed = True

    def handle(self):
        if self.handshake_failed:
            return
        try:
            while not self.close_connection:
                self.handle_one_request()
            if self.linger and self.web.tls is None:
                self._linger()
        except OSError as exc:
            log.debug("connection from %s ended: %s", self.client_address[0], host_text(str(exc), 200))

    def finish(self):
        self.rfile.close()

    def abort(self) -> None:
        """Close this connection from another thread (drain): the waiting read returns at once."""
        try:
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)  # the fd, not TLS state
        except OSError:
            pass

    def _linger(self) -> None:
        """Closing with unread input makes the kernel send a reset, which can destroy the error
        answer before the client reads it: stop writing, then read briefly what is left."""
        self.connection.shutdown(socket.SHUT_WR)
        self.reader.deadline = time.monotonic() + LINGER_SECONDS
        left = LINGER_BYTES
        while left > 0:
            chunk = self.rfile.read1(left)
            if not chunk:
                return
            left -= len(chunk)

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
            if not self.rfile.peek(1):
                self.close_connection = True
                return
            self.reader.deadline = time.monotonic() + server.header_timeout
            with server._state:
                server._idle.discard(self)
                server._in_flight += 1
                started = True
            self._serve_one()
            self.requests_served += 1
        finally:
            with server._state:
                server._idle.discard(self)
                if started:
                    server._in_flight -= 1
                    server._state.notify_all()
                if server._draining:
                    self.close_connection = True

    def _serve_one(self) -> None:
        try:
            request = self._read_request()
        except HttpError as exc:
            self.close_connection = self.linger = True
            self._send(None, exc.status, f"{exc.status} {exc.message}\n".encode(), "text/plain; charset=utf-8")
            return
        if request is None:  # the client closed in the middle of the request line
            self.close_connection = True
            return
        self.close_connection = not request.keep_alive
        self.linger = request.has_body
        if request.method in SERVED_METHODS:
            self._get(request)
        elif request.method in REFUSED_METHODS:
            self._send(request, 405, b"Method Not Allowed\n", "text/plain", {"Allow": "GET, HEAD"})
        else:
            self.close_connection = True
            self._send(request, 501, b"501 Unsupported method\n", "text/plain; charset=utf-8")

    def _read_request(self) -> Optional[Request]:
        raw = self.rfile.readline(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            raise HttpError(414, f"The request line is longer than {MAX_LINE} bytes")
        if not raw.endswith(b"\n"):
            return None
        method, target, minor = parse_request_line(raw)
        return Request(method, target, minor, read_headers(self.rfile.readline))

    def _send(self, request: Optional[Request], code: int, body: bytes, content_type: str,
              headers: Optional[Dict[str, str]] = None) -> None:
        lines = [f"HTTP/1.1 {code} {REASONS[code]}", "Server: minerwatch", "Date: " + http_date(),
                 "Content-Type: " + content_type, f"Content-Length: {len(body)}"]
        if headers:
            lines.extend(f"{key}: {value}" for key, value in headers.items())
        lines.extend(f"{key}: {value}" for key, value in self.web.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        elif request is not None and request.minor == 0:
            lines.append("Connection: keep-alive")  # an HTTP/1.0 client asked for it
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if request is not None and request.method == "HEAD":
            body = b""
        self.connection.settimeout(self.server.write_timeout)
        if len(body) <= 65536:
            self.connection.sendall(head + body)  # one write: one packet for a small answer
        else:
            self.connection.sendall(head)
            self.connection.sendall(body)  # no copy of a large body to glue it to its head
        if log.isEnabledFor(logging.DEBUG):  # access log, in our format
            what = f"{request.method} {request.target}" if request is not None else "-"
            log.debug("%s \"%s\" %d %d", self.client_address[0], host_text(what, 500), code, len(body))

    def _authorized(self, request: Request) -> bool:
        auth = self.web.auth
        if auth is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(token.strip(), validate=True)
            except ValueError:  # binascii.Error, or a token that is not ASCII
                decoded = b""
            if b":" in decoded:
                user, _, password = decoded.partition(b":")
                ok = auth.check(user.decode("utf-8", "surrogateescape"), password)
                if ok is None:
                    self._send(request, 503, b"Too many authentication attempts, try again later.\n", "text/plain")
                    return False
                if ok:
                    return True
        self._send(request, 401, b"Unauthorized\n", "text/plain", {"WWW-Authenticate": 'Basic realm="minerwatch"'})
        return False

    def _get(self, request: Request) -> None:
        if not self._authorized(request):
            return
        path = request.path
        if path == self.server.telemetry_path:
            self._metrics(request)
        elif path == "/":
            self._send(request, 200, self.server.landing_page, "text/html; charset=utf-8")
        else:
            self._send(request, 404, b"Not Found\n", "text/plain")

    def _metrics(self, request: Request) -> None:
        slots = self.server._scrape_slots
        if slots is not None and not slots.acquire(blocking=False):
            message = f"Limit of concurrent requests reached ({self.server.max_requests}), try again later.\n"
            self._send(request, 503, message.encode(), "text/plain")
            return
        try:
            encoder, content_type = choose_encoder(request.headers.get("accept"))
            try:
                body = self.server.scrape.body(encoder, content_type)
            except Exception as exc:
                log.error("scrape failed: %s: %s", type(exc).__name__, host_text(str(exc), 200),
                          exc_info=log.isEnabledFor(logging.DEBUG))
                self._send(request, 500, b"scrape failed, see the exporter's log\n", "text/plain")
                return
        finally:
            if slots is not None:
                slots.release()
        headers = {}
        if "gzip" in request.headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        self._send(request, 200, body, content_type, headers)
