"""The HTTP side: landing page, telemetry path, methods, gzip, TLS and basic auth from --web.config.file."""

import base64
import gzip
import http.client
import ssl
import subprocess
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter

from minerwatch.serving import web
from minerwatch.config import ConfigError
from support.web_auth_config import basic_auth_config


def start(web_config=None, path="/metrics"):
    registry = CollectorRegistry()
    Counter("minerwatch_test_events", "Test events.", registry=registry).inc()
    server = web.ExporterServer(("127.0.0.1", 0), registry, path, web_config or web.WebConfig(), "9.9.9")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def server():
    s = start()
    yield s
    s.shutdown()
    s.server_close()


def request(server, method="GET", path="/metrics", headers=None, context=None):
    host, port = server.server_address[:2]
    if context:
        conn = http.client.HTTPSConnection(host, port, context=context, timeout=5)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def test_metrics_landing_404_405(server):
    resp, body = request(server)
    assert resp.status == 200 and b"minerwatch_test_events_total 1.0" in body
    assert resp.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    resp, body = request(server, path="/")
    assert resp.status == 200 and b'<a href="/metrics">' in body and b"9.9.9" in body
    assert request(server, path="/nothing")[0].status == 404
    resp, _ = request(server, method="POST")
    assert resp.status == 405 and resp.getheader("Allow") == "GET, HEAD"


def test_openmetrics_and_gzip(server):
    resp, body = request(server, headers={"Accept": "application/openmetrics-text; version=1.0.0",
                                          "Accept-Encoding": "gzip"})
    assert resp.getheader("Content-Encoding") == "gzip"
    text = gzip.decompress(body).decode()
    assert resp.getheader("Content-Type").startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")


@pytest.mark.parametrize("accept_encoding, gzipped", [
    ("gzip", True),
    ("GZIP", True),  # coding names are case-insensitive
    ("deflate, gzip;q=0.5", True),
    ("x-gzip", True),
    ("*", True),
    ("gzip;q=0", False),  # q=0: not acceptable
    ("gzip; q=0.000, identity", False),
    ("*;q=0", False),
    ("gzip;q=0, *", False),  # named beats the wildcard
    ("gzip;q=nonsense", False),
    ("deflate, br", False),
    ("", False),
])
def test_gzip_follows_accept_encoding(server, accept_encoding, gzipped):
    resp, body = request(server, headers={"Accept-Encoding": accept_encoding})
    assert resp.status == 200
    assert resp.getheader("Vary") == "Accept-Encoding"  # a cache between keeps both forms apart
    assert resp.getheader("Content-Encoding") == ("gzip" if gzipped else None)
    text = (gzip.decompress(body) if gzipped else body).decode()
    assert "minerwatch_test_events_total 1.0" in text


def test_healthy_answers_without_collecting():
    class Broken:
        def collect(self):
            raise RuntimeError("collection fails")

    registry = CollectorRegistry()
    registry.register(Broken())
    server = web.ExporterServer(("127.0.0.1", 0), registry, "/metrics", web.WebConfig(), "9.9.9")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert request(server)[0].status == 500  # the scrape collects, and fails
        resp, body = request(server, path="/-/healthy")
        assert resp.status == 200 and body == b"Healthy\n"
        assert resp.getheader("Content-Type").startswith("text/plain")
        resp, body = request(server, method="HEAD", path="/-/healthy")
        assert resp.status == 200 and body == b""
    finally:
        server.shutdown()
        server.server_close()


def test_malformed_request_gets_400_and_server_keeps_serving(server):
    import socket

    with socket.create_connection(server.server_address[:2], timeout=5) as sock:
        sock.sendall(b"GET /a b c HTTP/1.1\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    assert request(server)[0].status == 200


def test_basic_auth(tmp_path):
    s = start(web.load_web_config(basic_auth_config(tmp_path, "prometheus", b"s3cret")))
    try:
        def auth(user, password):
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            return request(s, headers={"Authorization": f"Basic {token}"})[0].status

        assert request(s)[0].status == 401
        assert request(s)[0].getheader("WWW-Authenticate") == 'Basic realm="minerwatch"'
        assert auth("prometheus", "wrong") == 401
        assert auth("nobody", "s3cret") == 401
        assert auth("prometheus", "s3cret") == 200
        assert request(s, headers={"Authorization": "Basic !!notbase64"})[0].status == 401
    finally:
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", d / "key.pem", "-out", d / "cert.pem"],
        check=True, capture_output=True,
    )
    return d


def test_tls(tmp_path, certs):
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"tls_server_config:\n  cert_file: {certs / 'cert.pem'}\n  key_file: {certs / 'key.pem'}\n"
                   "  min_version: TLS12\n")
    s = start(web.load_web_config(str(cfg)))
    try:
        context = ssl.create_default_context(cafile=str(certs / "cert.pem"))
        resp, body = request(s, context=context)
        assert resp.status == 200 and b"minerwatch_test_events_total" in body
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            request(s)  # plain HTTP to a TLS port is refused
        assert request(s, context=context)[0].status == 200  # and the server still serves
    finally:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize(
    "text, message",
    [
        ("tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.key\n",
         "{f}:2: tls_server_config.cert_file: cannot load certificate and key: [Errno 2] No such file or directory"),
        ("tls_server_config:\n  key_file: k\n", "{f}:2: tls_server_config: cert_file (or cert) is required for TLS"),
        ("basic_auth_users:\n  alice: plaintext\n",
         "{f}:2: basic_auth_users.alice: must be a bcrypt hash: $2a$, $2b$ or $2y$, a cost from 04 to 31, $, "
         "then 53 characters (htpasswd -nBC 10 '' | tr -d ':')"),
        ("basic_auth_users:\n  alice: $2b$10$short\n",
         "{f}:2: basic_auth_users.alice: must be a bcrypt hash: $2a$, $2b$ or $2y$, a cost from 04 to 31, $, "
         "then 53 characters (htpasswd -nBC 10 '' | tr -d ':')"),
        ("basic_auth_users:\n  alice: $2b$10$" + "a" * 53 + "\n  bob: $2y$12$" + "b" * 53 + "\n",
         "{f}:3: basic_auth_users.bob: cost 12 differs from alice's cost 10: give every user the same cost, "
         "or response times tell which user names exist"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
         "{f}:3: http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin"),
        ("http_server_config:\n  headers:\n    Server: x\n",
         "{f}:3: http_server_config.headers.Server: unknown key (known: Content-Security-Policy, "
         "Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection)"),
        ("basic_auth: {}\n",
         "{f}:1: basic_auth: unknown key (known: basic_auth_users, http_server_config, rate_limit, tls_server_config)"),
        ("rate_limit:\n  interval: 1s\n", "{f}:2: rate_limit: burst is required with interval (requests allowed at once)"),
        ("rate_limit:\n  interval: soon\n  burst: 1\n",
         "{f}:2: rate_limit.interval: must be a duration such as 1s, 500ms or 1m"),
        ("rate_limit:\n  interval: 1s\n  burst: 0\n", "{f}:3: rate_limit.burst: must be an integer from 1 to 1000000"),
    ],
)
def test_bad_web_config(tmp_path, text, message):
    cfg = tmp_path / "web.yml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        web.load_web_config(str(cfg))
    assert str(err.value) == message.replace("{f}", str(cfg))


@pytest.mark.parametrize("value, expected", [(":9789", ("", 9789)), ("127.0.0.1:1", ("127.0.0.1", 1)),
                                             ("[::1]:9789", ("::1", 9789))])
def test_listen_address(value, expected):
    assert web.parse_listen_address(value) == expected


@pytest.mark.parametrize("value", ["9789", "host:", ":99999", "localhost:http"])
def test_bad_listen_address(value):
    with pytest.raises(ValueError):
        web.parse_listen_address(value)
