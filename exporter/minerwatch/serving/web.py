"""The HTTP server: listen address, limits, the landing page and the telemetry path.

A small HTTP/1.1 server of minerwatch's own rather than http.server: http.server pulls in
http.client, email and ssl (with libssl and libcrypto) on every desk, though most desks never
serve TLS. ssl is loaded only when the web config asks for TLS (web_config).

A user of the host may want the exporter blind, so the server holds up against clients that
misbehave on purpose:
- one thread waits on every connection (web_loop): idle, half-sent and TLS-handshaking
  connections hold no thread; a connection goes to a worker thread (web_workers) only once its
  whole request head has arrived;
- at most `max_connections` open (--web.max-connections): a newcomer at the cap takes the place
  of the connection that has waited longest for a request, so a scrape still gets in while
  someone holds the cap with idle connections; if every open one is being answered, 503;
- a listen backlog of 4096 (node_exporter's), so a burst of connections is queued, not dropped;
- a header timeout (TLS handshake, then request line and headers, however slowly the bytes
  trickle), an idle timeout between keep-alive requests, a write timeout for each answer;
- hard limits on what it reads (web_http): request line and each header line 8 KiB (414, 431),
  100 header lines and 64 KiB of headers in all (431); a request body is never read, so a
  request that has one ends its connection;
- every request gets a real status line: garbage 400, HTTP/0.9 400, HTTP/2 or /9.9 505; what
  request smuggling and header injection rely on (obs-fold, NUL or bare CR, a second Host or
  Authorization) is 400;
- at most `max_requests` scrapes at once (503 beyond, as node_exporter's --web.max-requests),
  each holding its slot until its answer is sent, and scrapes that arrive together share one
  collection (web_scrape).
Metrics are gzipped when Accept-Encoding takes gzip (RFC 9110: `gzip;q=0` refuses it, coding
names in any case, `*`), with `Vary: Accept-Encoding`. `/-/healthy` answers 200 without collecting.
TLS, basic auth and extra headers come from --web.config.file (web_config, web_auth).
"""

from __future__ import annotations

import base64
import gzip
import logging
import socket
import threading
from typing import TYPE_CHECKING, Dict, Iterable, Optional, Tuple

from minerwatch.serving.exposition import choose_encoder
from minerwatch.serving.metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from minerwatch.text import host_text
from minerwatch.serving.web_config import WebConfig, load_web_config  # noqa: F401  (the public interface)
from minerwatch.serving.web_conn import Connection
from minerwatch.serving.web_http import HttpError, Request, accepts_gzip, response
from minerwatch.serving.web_loop import HEADER_TIMEOUT, IDLE_TIMEOUT, WRITE_TIMEOUT, LoopServer
from minerwatch.serving.web_scrape import SharedScrape
from minerwatch.serving.web_workers import WorkerPool

if TYPE_CHECKING:
    from minerwatch.serving.metrics import Registry

log = logging.getLogger("minerwatch.web")

DEFAULT_MAX_REQUESTS = 40  # node_exporter's --web.max-requests
# --web.max-connections: a desk is scraped by one or two Prometheus servers on one keep-alive
# connection each, and now and then a person or a probe; 256 is far above that (and above the
# load benchmark's 64), costs about 1 MiB when all are idle, and stays under the 512 sockets
# select() can watch on Windows.
DEFAULT_MAX_CONNECTIONS = 256
WINDOWS_MAX_CONNECTIONS = 500  # select()'s 512 on Windows, less the listener and the wake-up socket
SPARE_WORKERS = 8  # threads beside the scrapes, for the landing page, 401s and 503s


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
<ul><li><a href="{path}">Metrics</a></li><li><a href="/-/healthy">Health</a></li></ul>
</body></html>
"""
HEALTH_PATH = "/-/healthy"  # Prometheus's own path: 200 while the server serves

SERVED_METHODS = ("GET", "HEAD")
# Methods of RFC 9110 a client may fairly try on a metrics path: 405 with Allow. Others: 501.
REFUSED_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class ExporterServer(LoopServer):
    def __init__(self, address, registry: "Registry", telemetry_path: str, web_config: WebConfig,
                 version: str, max_requests: int = DEFAULT_MAX_REQUESTS, *,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, header_timeout: float = HEADER_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, write_timeout: float = WRITE_TIMEOUT):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        if address[0] == "":
            # ':PORT' means every address; prefer a dual-stack IPv6 socket where the host has one.
            if socket.has_ipv6:
                self.address_family = socket.AF_INET6
                address = ("::", address[1])
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.version = version
        self.landing_page = LANDING_PAGE.format(version=version, path=telemetry_path).encode()
        self.max_requests = max_requests
        self.scrape = SharedScrape(registry)
        self._scrape_slots = threading.BoundedSemaphore(max_requests) if max_requests > 0 else None
        # Scrapes beyond --web.max-requests are answered 503 at once, so that many threads and a
        # few spare answer everything; more start only while slow work holds them all (web_workers).
        pool = WorkerPool((max_requests or DEFAULT_MAX_REQUESTS) + SPARE_WORKERS, max_connections or None)
        super().__init__(address, web_config, pool, max_connections=max_connections,
                         header_timeout=header_timeout, idle_timeout=idle_timeout, write_timeout=write_timeout)
        self.rate_limited = 0  # requests refused by the web config's rate_limit (429)
        self._tls_failures_before = 0  # certificate reload failures of web configs replaced since
        registry.register(ConnectionMetrics(self))

    def set_web_config(self, web_config: WebConfig) -> None:
        self._tls_failures_before += self.web.tls_reload_failures  # counters survive a SIGHUP
        super().set_web_config(web_config)

    @property
    def tls_reload_failures(self) -> int:
        return self._tls_failures_before + self.web.tls_reload_failures

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    # -- answers (LoopServer's hooks) -----------------------------------------------------------

    def answer(self, conn: Connection, request: Request) -> bytes:
        """Run by a worker: the whole answer to one request."""
        conn.close_after = not request.keep_alive or self.draining
        conn.linger = request.has_body
        if request.method in SERVED_METHODS:
            return self._get(conn, request)
        if request.method in REFUSED_METHODS:
            return self._send(conn, request, 405, b"Method Not Allowed\n", "text/plain", {"Allow": "GET, HEAD"})
        conn.close_after = True
        return self._send(conn, request, 501, b"501 Unsupported method\n", "text/plain; charset=utf-8")

    def error_answer(self, conn: Connection, error: HttpError) -> bytes:
        return self._send(conn, None, error.status, f"{error.status} {error.message}\n".encode(),
                          "text/plain; charset=utf-8")

    def refusal(self, reason: str) -> bytes:
        return response(503, reason.encode(), "text/plain", self.web.headers.items(), close=True)

    def _send(self, conn: Connection, request: Optional[Request], code: int, body: bytes, content_type: str,
              headers: Optional[Dict[str, str]] = None) -> bytes:
        extra: Iterable[Tuple[str, str]] = conn.web.headers.items()
        if headers:
            extra = [*headers.items(), *extra]
        if log.isEnabledFor(logging.DEBUG):  # access log, in our format
            what = f"{request.method} {request.target}" if request is not None else "-"
            log.debug("%s \"%s\" %d %d", conn.peer, host_text(what, 500), code, len(body))
        return response(code, body, content_type, extra, conn.close_after, request)

    def _authorized(self, conn: Connection, request: Request) -> Optional[bytes]:
        """None when the request may go on, else the answer that refuses it."""
        auth = conn.web.auth
        if auth is None:
            return None
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
                    return self._send(conn, request, 503, b"Too many authentication attempts, try again later.\n",
                                      "text/plain")
                if ok:
                    return None
        return self._send(conn, request, 401, b"Unauthorized\n", "text/plain",
                          {"WWW-Authenticate": 'Basic realm="minerwatch"'})

    def _get(self, conn: Connection, request: Request) -> bytes:
        limit = conn.web.rate_limit  # exporter-toolkit's rate_limit, before authentication as there
        if limit is not None and not limit.allow():
            self.rate_limited += 1
            return self._send(conn, request, 429, b"Too Many Requests\n", "text/plain")
        refused = self._authorized(conn, request)
        if refused is not None:
            return refused
        path = request.path
        if path == self.telemetry_path:
            return self._metrics(conn, request)
        if path == "/":
            return self._send(conn, request, 200, self.landing_page, "text/html; charset=utf-8")
        if path == HEALTH_PATH:  # serving: for a liveness probe or a load balancer; collects nothing
            return self._send(conn, request, 200, b"Healthy\n", "text/plain; charset=utf-8")
        return self._send(conn, request, 404, b"Not Found\n", "text/plain")

    def _metrics(self, conn: Connection, request: Request) -> bytes:
        slots = self._scrape_slots
        if slots is not None and not slots.acquire(blocking=False):
            message = f"Limit of concurrent requests reached ({self.max_requests}), try again later.\n"
            return self._send(conn, request, 503, message.encode(), "text/plain")
        # The slot stays taken until the body is sent (the loop releases it): clients that read
        # slowly cannot make the exporter hold more than --web.max-requests bodies.
        conn.slot = slots
        encoder, content_type = choose_encoder(request.headers.get("accept"))
        try:
            body = self.scrape.body(encoder, content_type)
        except Exception as exc:
            log.error("scrape failed: %s: %s", type(exc).__name__, host_text(str(exc), 200),
                      exc_info=log.isEnabledFor(logging.DEBUG))
            return self._send(conn, request, 500, b"scrape failed, see the exporter's log\n", "text/plain")
        headers = {"Vary": "Accept-Encoding"}  # a cache between must not hand gzip to others
        if accepts_gzip(request.headers.get("accept-encoding", "")):
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return self._send(conn, request, 200, body, content_type, headers)


class ConnectionMetrics:
    """minerwatch_web_connections, how often the connection cap or the rate limit turned someone
    away, and failed reloads of renewed TLS certificates."""

    def __init__(self, server: LoopServer):
        self.server = server

    def collect(self) -> Iterable[Metric]:
        server = self.server
        yield GaugeMetricFamily(
            "minerwatch_web_connections",
            "HTTP connections open, this scrape's included (at most --web.max-connections).",
            value=server.open_connections)
        yield CounterMetricFamily(
            "minerwatch_web_connections_evicted_total",
            "Connections waiting for a request that were closed to make room for a new one at "
            "--web.max-connections, the longest waiting first.",
            value=server.evicted)
        refused = CounterMetricFamily(
            "minerwatch_web_connections_refused_total",
            "Connections turned away: limit, --web.max-connections open and all being answered (503); "
            "accept_error, accept() failed for want of descriptors or memory.",
            labels=["reason"])
        refused.add_metric(["limit"], server.refused)
        refused.add_metric(["accept_error"], server.accept_errors)
        yield refused
        yield CounterMetricFamily(
            "minerwatch_web_requests_rate_limited_total",
            "Requests answered 429 by the web config's rate_limit.",
            value=server.rate_limited)
        yield CounterMetricFamily(
            "minerwatch_web_tls_certificate_reload_failures_total",
            "Times the TLS certificate, key or client CA files changed on disk but could not be loaded "
            "(the last good ones stay in use).",
            value=server.tls_reload_failures)

    def describe(self) -> Iterable[Metric]:
        return self.collect()
