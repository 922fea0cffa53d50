"""The HTTP side: listen address parsing, --web.config.file (TLS, basic auth) and the server.

The web config follows the Prometheus exporter-toolkit format, so the same file works for
node_exporter and minerwatch:
    tls_server_config: {cert_file, key_file, client_auth_type, client_ca_file, min_version}
    basic_auth_users: {user: bcrypt hash}
"""

from __future__ import annotations

import base64
import binascii
import gzip
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional, Tuple

import bcrypt
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from minerwatch.config import Node, load_yaml

log = logging.getLogger("minerwatch.web")

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


def parse_listen_address(value: str) -> Tuple[str, int]:
    """node_exporter's form: ':9789', '127.0.0.1:9789', '[::1]:9789'."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT (for example :9789 or 127.0.0.1:9789)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class WebConfig:
    def __init__(self, tls: Optional[ssl.SSLContext] = None, users: Optional[Dict[str, bytes]] = None):
        self.tls = tls
        self.users = users or {}


def load_web_config(path: Optional[str]) -> WebConfig:
    if not path:
        return WebConfig()
    root = load_yaml(path)
    if root is None:
        return WebConfig()
    top = root.mapping(("tls_server_config", "basic_auth_users", "http_server_config"))
    config = WebConfig()
    if "tls_server_config" in top:
        config.tls = _tls_context(top["tls_server_config"])
    if "basic_auth_users" in top:
        for user, node in top["basic_auth_users"].mapping(None).items():
            hashed = node.string().encode()
            if not hashed.startswith((b"$2a$", b"$2b$", b"$2y$")):
                raise node.error("must be a bcrypt hash (htpasswd -nBC 10 '' | tr -d ':')")
            config.users[user] = hashed
    return config


def _tls_context(node: Node) -> ssl.SSLContext:
    fields = node.mapping(("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
                           "max_version", "cipher_suites", "curve_preferences", "prefer_server_cipher_suites"))
    for required in ("cert_file", "key_file"):
        if required not in fields:
            raise node.error(f"{required} is required for TLS")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(fields["cert_file"].string(), fields["key_file"].string())
    except (OSError, ssl.SSLError) as exc:
        raise fields["cert_file"].error(f"cannot load certificate and key: {exc}") from None
    if "min_version" in fields:
        name = fields["min_version"].string()
        if name not in TLS_VERSIONS:
            raise fields["min_version"].error(f"must be one of {', '.join(TLS_VERSIONS)}")
        context.minimum_version = TLS_VERSIONS[name]
    auth = fields["client_auth_type"].string() if "client_auth_type" in fields else "NoClientCert"
    if auth not in CLIENT_AUTH:
        raise fields["client_auth_type"].error(f"must be one of {', '.join(CLIENT_AUTH)}")
    context.verify_mode = CLIENT_AUTH[auth]
    if auth != "NoClientCert":
        if "client_ca_file" not in fields:
            raise node.error("client_ca_file is required when client_auth_type verifies clients")
        try:
            context.load_verify_locations(fields["client_ca_file"].string())
        except (OSError, ssl.SSLError) as exc:
            raise fields["client_ca_file"].error(f"cannot load CA file: {exc}") from None
    return context


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

    def __init__(self, address, registry: CollectorRegistry, telemetry_path: str, web: WebConfig, version: str):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        if address[0] == "":
            # ':PORT' means every address; prefer a dual-stack IPv6 socket where the host has one.
            if socket.has_ipv6:
                self.address_family = socket.AF_INET6
                address = ("::", address[1])
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.web = web
        self.version = version
        super().__init__(address, Handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def get_request(self):
        sock, addr = super().get_request()
        if self.web.tls is not None:
            sock.settimeout(10)  # a client that never finishes its handshake must not hold a thread
            sock = self.web.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


class Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    server_version = "minerwatch"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, a keep-alive scrape waits
    # for the client's delayed ACK (40 ms) before the body leaves.
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", self.client_address[0], exc)
                self.close_connection = True
                raise

    def handle(self):
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError, TimeoutError):
            pass

    def log_message(self, fmt, *args):  # access logs at debug level, in our format
        log.debug("%s %s", self.client_address[0], fmt % args)

    def _authorized(self) -> bool:
        users = self.server.web.users
        if not users:
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            hashed = users.get(user)
            # Always run one bcrypt check so a wrong user name costs as much as a wrong password.
            ok = bcrypt.checkpw(password.encode(), hashed or _dummy_hash())
            if hashed is not None and ok:
                return True
        self._send(401, b"Unauthorized\n", "text/plain", {"WWW-Authenticate": 'Basic realm="minerwatch"'})
        return False

    def _send(self, code: int, body: bytes, content_type: str, headers: Optional[Dict[str, str]] = None):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0]
        if path == self.server.telemetry_path:
            encoder, content_type = choose_encoder(self.headers.get("Accept"))
            try:
                body = encoder(self.server.registry)
            except Exception:
                log.exception("scrape failed")
                self._send(500, b"scrape failed, see the exporter's log\n", "text/plain")
                return
            headers = {}
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
            self._send(200, body, content_type, headers)
        elif path == "/":
            page = LANDING_PAGE.format(version=self.server.version, path=self.server.telemetry_path)
            self._send(200, page.encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"Not Found\n", "text/plain")

    do_HEAD = do_GET

    def _not_allowed(self):
        self._send(405, b"Method Not Allowed\n", "text/plain", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed


_DUMMY = []


def _dummy_hash() -> bytes:
    if not _DUMMY:
        _DUMMY.append(bcrypt.hashpw(b"minerwatch", bcrypt.gensalt(rounds=10)))
    return _DUMMY[0]


def serve(server: ExporterServer, stop: threading.Event) -> None:
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
    server.server_close()
