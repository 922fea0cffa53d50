"""The exporter's own HTTP/1.1 request reading (issue 17): hard limits on the request line and
headers, keep-alive as RFC 9112 has it, and 400 for what request smuggling and header injection
rely on. Each case is one request through a real socket to a server started on 127.0.0.1."""

import base64
import gzip
import socket
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter

from minerwatch.serving import web
from support.web_auth_config import basic_auth_config
from test_web_http import stop

MAX_LINE = 8192  # the documented limits, spelled out here so a change to web.py shows
MAX_HEADERS = 100
MAX_HEADER_BYTES = 65536


@pytest.fixture
def server():
    s = start()
    yield s
    stop(s)


def start(web_config=None):
    registry = CollectorRegistry()
    Counter("minerwatch_test_events", "Test events.", registry=registry).inc()
    s = web.ExporterServer(("127.0.0.1", 0), registry, "/metrics", web_config or web.WebConfig(), "9.9.9")
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


class Client:
    """One raw connection: send bytes, read answers one by one."""

    def __init__(self, server):
        self.sock = socket.create_connection(server.server_address[:2], timeout=5)
        self.file = self.sock.makefile("rb")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()
        self.sock.close()

    def send(self, data: bytes) -> "Client":
        self.sock.sendall(data)
        return self

    def response(self, head_only=False):
        """(status, {lower-case header: value}, body); body empty for a HEAD answer."""
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers = {}
        while True:
            line = self.file.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            assert name.lower() not in headers, f"{name} sent twice"
            headers[name.lower()] = value.strip()
        length = int(headers["content-length"])
        body = b"" if head_only else self.file.read(length)
        return int(status_line.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        """True if the server closed: a further request gets no answer (not just a slow one)."""
        try:
            self.sock.sendall(request("/"))
            return self.file.read(1) == b""
        except ConnectionError:  # reset or broken pipe: closed too
            return True


def request(target="/metrics", method="GET", version="HTTP/1.1", headers=(("Host", "x"),)) -> bytes:
    lines = [f"{method} {target} {version}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def one(server, data: bytes):
    """The single answer to `data`, and whether the server closed the connection after it."""
    with Client(server) as client:
        status, headers, body = client.send(data).response()
        return status, headers, body, client.closed_by_server()


def test_request_line_longer_than_8_kib_is_414_and_one_at_the_limit_is_served(server):
    padding = "a" * (MAX_LINE - len("GET /metrics?x= HTTP/1.1\r\n"))
    assert len(f"GET /metrics?x={padding} HTTP/1.1\r\n") == MAX_LINE
    status, _, body, _ = one(server, request(f"/metrics?x={padding}"))
    assert status == 200 and b"minerwatch_test_events_total" in body
    status, headers, body, closed = one(server, request(f"/metrics?x={padding}a"))
    assert status == 414 and closed and headers["connection"] == "close"
    assert body == b"414 The request line is longer than 8192 bytes\n"


def test_header_line_longer_than_8_kib_is_431(server):
    value = "v" * (MAX_LINE - len("X-Long: \r\n"))
    assert one(server, request(headers=[("Host", "x"), ("X-Long", value)]))[0] == 200
    status, _, body, closed = one(server, request(headers=[("Host", "x"), ("X-Long", value + "v")]))
    assert status == 431 and closed and body == b"431 A header line is longer than 8192 bytes\n"


def test_more_than_100_header_lines_is_431(server):
    many = [("Host", "x")] + [(f"X-N{i}", "1") for i in range(MAX_HEADERS - 1)]
    assert one(server, request(headers=many))[0] == 200
    status, _, body, closed = one(server, request(headers=many + [("X-One-More", "1")]))
    assert status == 431 and closed and body == b"431 More than 100 header lines\n"


def test_headers_over_64_kib_in_all_are_431_though_each_line_is_short(server):
    line = "v" * 4000
    fits = [("Host", "x")] + [(f"X-B{i:02d}", line) for i in range(16)]  # about 64 000 bytes
    assert one(server, request(headers=fits))[0] == 200
    status, _, body, closed = one(server, request(headers=fits + [("X-B16", line)]))
    assert status == 431 and closed and body == b"431 Headers longer than 65536 bytes in all\n"


@pytest.mark.parametrize("headers", [
    [("Host", "x"), ("host", "y")],
    [("Host", "x"), ("Authorization", "Basic YTpi"), ("AUTHORIZATION", "Basic YzpK")],
    [("Host", "x"), ("Content-Length", "0"), ("Content-Length", "5")],
], ids=["host", "authorization", "content-length"])
def test_a_second_host_or_authorization_header_is_400(server, headers):
    status, _, body, closed = one(server, request(headers=headers))
    assert status == 400 and closed and body.startswith(b"400 More than one ")


def test_folded_header_line_is_400(server):
    status, _, body, closed = one(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  continued\r\n\r\n")
    assert status == 400 and closed and body == b"400 Folded header lines (obs-fold) are not accepted\n"


@pytest.mark.parametrize("data", [
    b"GET /metrics\0 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics\r HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/1.1\rX: y\r\nHost: x\r\n\r\n",
], ids=["nul", "bare-cr", "bare-cr-before-version-end"])
def test_nul_or_bare_cr_in_the_request_line_is_400(server, data):
    status, _, body, closed = one(server, data)
    assert status == 400 and closed and body == b"400 NUL or bare CR in the request line\n"


def test_bare_cr_in_a_header_value_is_400(server):
    status, _, body, closed = one(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: 1\rX-B: 2\r\n\r\n")
    assert status == 400 and closed and body == b"400 NUL or bare CR in a header value\n"


def test_header_names_are_case_insensitive(tmp_path):
    server = start(web.load_web_config(basic_auth_config(tmp_path, "prom", b"pw")))
    try:
        token = base64.b64encode(b"prom:pw").decode()
        status, headers, body, _ = one(server, request(headers=[("HOST", "x"), ("aUtHoRiZaTiOn", f"Basic {token}"),
                                                                 ("ACCEPT-ENCODING", "gzip")]))
        assert status == 200 and headers["content-encoding"] == "gzip"
        assert b"minerwatch_test_events_total" in gzip.decompress(body)
    finally:
        stop(server)


def test_http11_keeps_the_connection_until_connection_close(server):
    with Client(server) as client:
        for _ in range(3):
            status, headers, body = client.send(request()).response()
            assert status == 200 and "connection" not in headers and len(body) == int(headers["content-length"])
        status, headers, _ = client.send(request(headers=[("Host", "x"), ("Connection", "Close")])).response()
        assert status == 200 and headers["connection"] == "close" and client.closed_by_server()


def test_http10_closes_unless_keep_alive_is_asked_for(server):
    status, headers, _, closed = one(server, request(version="HTTP/1.0", headers=()))
    assert status == 200 and closed and headers["connection"] == "close"
    with Client(server) as client:
        for _ in range(2):
            keep = request(version="HTTP/1.0", headers=[("Connection", "keep-alive")])
            status, headers, _ = client.send(keep).response()
            assert status == 200 and headers["connection"] == "keep-alive"


def test_head_answers_the_get_headers_without_a_body(server):
    with Client(server) as client:
        _, get_headers, get_body = client.send(request("/")).response()
        status, head_headers, _ = client.send(request("/", method="HEAD")).response(head_only=True)
        assert status == 200 and head_headers["content-length"] == get_headers["content-length"] == str(len(get_body))
        # Nothing followed the HEAD answer: the next bytes are the next answer's status line.
        assert client.send(request("/nothing")).response()[0] == 404


def test_every_answer_has_date_server_and_content_length(server):
    status, headers, body, _ = one(server, request())
    assert status == 200 and headers["server"] == "minerwatch" and headers["content-length"] == str(len(body))
    assert headers["date"].endswith(" GMT") and len(headers["date"]) == len("Mon, 01 Jan 2024 00:00:00 GMT")


def test_unknown_method_is_501_and_closes(server):
    status, _, body, closed = one(server, request(method="BREW"))
    assert status == 501 and closed and body == b"501 Unsupported method\n"


def test_a_request_cut_off_inside_its_headers_is_400(server):
    with socket.create_connection(server.server_address[:2], timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x")
        sock.shutdown(socket.SHUT_WR)
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 400 ")
