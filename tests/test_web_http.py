"""The HTTP server under load and abuse: backlog, timeouts, the request cap, shared collection,
drain, config swap, and a real status line for every malformed request (issue 11, items 4 and 7)."""

import http.client
import select
import socket
import threading
import time

import bcrypt
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from support.processes import wait_for
from minerwatch.serving import web


class BlockingCollector:
    """Counts collect() calls and holds each one until the test releases it."""

    def __init__(self):
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def collect(self):
        self.calls += 1
        self.entered.set()
        self.release.wait(10)
        yield GaugeMetricFamily("minerwatch_test_collect_calls", "Collect calls so far.", value=self.calls)


def serving(web_config=None, collector=None, **kwargs):
    registry = CollectorRegistry()
    if collector is not None:
        registry.register(collector)
    server = web.ExporterServer(("127.0.0.1", 0), registry, "/metrics", web_config or web.WebConfig(), "9.9.9",
                                **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server):
    server.shutdown()
    server.server_close()


def get(server, path="/metrics", headers=None):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def in_threads(count, target):
    results = [None] * count

    def run(i):
        results[i] = target()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    return threads, results


def keepalive(server) -> http.client.HTTPConnection:
    """A connection that has served one request and stays open."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
    conn.request("GET", "/")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() and not resp.will_close
    return conn


def raw_exchange(server, data: bytes, timeout=5.0) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection(server.server_address[:2], timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_listen_backlog_queues_a_burst_of_connections():
    # Nothing accepts: every connection must still complete its handshake into the backlog.
    server = web.ExporterServer(("127.0.0.1", 0), CollectorRegistry(), "/metrics", web.WebConfig(), "9.9.9")
    socks = []
    try:
        pending = []
        for _ in range(64):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(server.server_address[:2])
            socks.append(s)
            pending.append(s)
        connected = 0
        deadline = time.monotonic() + 0.8  # below Linux's 1 s SYN retransmit: a dropped SYN shows
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], pending, [], 0.1)
            for s in writable:
                pending.remove(s)
                connected += s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        assert connected == 64
    finally:
        for s in socks:
            s.close()
        server.server_close()


def test_idle_keepalive_connection_is_closed():
    server = serving(idle_timeout=0.5)
    try:
        conn = keepalive(server)
        started = time.monotonic()
        assert conn.sock.recv(100) == b""  # closed by the server, not by our 5 s timeout
        assert time.monotonic() - started < 3
        conn.close()
    finally:
        stop(server)


def test_headers_trickled_slowly_are_cut_off_at_the_header_timeout():
    server = serving(header_timeout=1.0)
    try:
        with socket.create_connection(server.server_address[:2], timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            closed = False
            while time.monotonic() - started < 4:
                try:
                    sock.sendall(b"X-Slow: y\r\n")  # a byte well within any per-read timeout
                except OSError:
                    closed = True
                    break
                if select.select([sock], [], [], 0.3)[0]:
                    closed = sock.recv(100) == b""
                    break
            assert closed and time.monotonic() - started < 3
    finally:
        stop(server)


def test_concurrent_scrapes_share_one_collection():
    collector = BlockingCollector()
    server = serving(collector=collector)
    try:
        threads, results = in_threads(1, lambda: get(server))
        assert collector.entered.wait(5)
        more, more_results = in_threads(7, lambda: get(server))
        wait_for(lambda: server.requests_in_flight == 8, what="8 scrapes in flight")
        collector.release.set()
        for t in threads + more:
            t.join(10)
        bodies = {body for status, body in results + more_results if status == 200}
        assert len(results + more_results) == 8 and all(r[0] == 200 for r in results + more_results)
        assert collector.calls == 1 and len(bodies) == 1
        assert get(server)[0] == 200 and collector.calls == 2  # a later scrape collects afresh
    finally:
        collector.release.set()
        stop(server)


def test_scrapes_beyond_max_requests_get_503():
    collector = BlockingCollector()
    server = serving(collector=collector, max_requests=2)
    try:
        threads, results = in_threads(2, lambda: get(server))
        wait_for(lambda: server.requests_in_flight == 2, what="2 scrapes in flight")
        status, body = get(server)
        assert status == 503 and body == b"Limit of concurrent requests reached (2), try again later.\n"
        assert get(server, path="/")[0] == 200  # the cap is on scrapes, not on the landing page
        collector.release.set()
        for t in threads:
            t.join(10)
        assert [r[0] for r in results] == [200, 200]
    finally:
        collector.release.set()
        stop(server)


def test_max_requests_zero_means_no_limit():
    collector = BlockingCollector()
    server = serving(collector=collector, max_requests=0)
    try:
        threads, results = in_threads(45, lambda: get(server))
        wait_for(lambda: server.requests_in_flight == 45, what="45 scrapes in flight")
        collector.release.set()
        for t in threads:
            t.join(10)
        assert [r[0] for r in results] == [200] * 45
    finally:
        collector.release.set()
        stop(server)


@pytest.mark.parametrize("data, status", [
    (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", b"400"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"505"),
    (b"GET /metrics HTTP/9.9\r\n\r\n", b"505"),
    (b"GET /metrics\r\n", b"400"),  # HTTP/0.9: no metrics without a status line
    (b"GET /metrics HTTP/1.x\r\n\r\n", b"400"),
])
def test_malformed_requests_get_a_status_line_and_close(data, status):
    server = serving()
    try:
        reply = raw_exchange(server, data)
        assert reply.startswith(b"HTTP/1.1 " + status + b" ")
        head, _, body = reply.partition(b"\r\n\r\n")
        assert b"Connection: close" in head and b"Content-Type: text/plain" in head
        assert body.startswith(status + b" ") and b"minerwatch_" not in body and b"<" not in body
        assert get(server)[0] == 200
    finally:
        stop(server)


def test_unread_post_body_is_not_taken_for_the_next_request():
    server = serving()
    try:
        smuggled = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        reply = raw_exchange(server, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(smuggled), smuggled))
        assert reply.startswith(b"HTTP/1.1 405 ") and reply.count(b"HTTP/1.1 ") == 1
    finally:
        stop(server)


def test_drain_waits_for_requests_in_flight_and_closes_idle_connections():
    collector = BlockingCollector()
    server = serving(collector=collector)
    idle = keepalive(server)
    try:
        threads, results = in_threads(1, lambda: get(server))
        assert collector.entered.wait(5)
        server.shutdown()
        assert server.drain(0.3) is False  # the scrape is still collecting
        assert idle.sock.recv(100) == b""  # the idle keep-alive connection was closed at once
        collector.release.set()
        assert server.drain(5) is True
        threads[0].join(5)
        assert results[0][0] == 200
    finally:
        idle.close()
        collector.release.set()
        server.server_close()


def test_set_web_config_applies_to_new_connections(tmp_path):
    server = serving()
    try:
        old = keepalive(server)
        hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4))
        server.set_web_config(web.WebConfig(users={"prom": hashed}))
        assert get(server)[0] == 401
        old.request("GET", "/")  # a connection accepted before the swap keeps its config
        assert old.getresponse().status == 200
        old.close()
    finally:
        stop(server)


def test_starting_the_server_makes_no_dns_lookup_of_the_host_name(monkeypatch):
    # http.server's own bind asks socket.getfqdn(): a resolver query at every start on every desk.
    def no_lookup(*args):
        raise AssertionError(f"DNS look-up at start-up: getfqdn{args}")

    monkeypatch.setattr(socket, "getfqdn", no_lookup)
    server = serving()
    try:
        assert get(server, "/")[0] == 200
    finally:
        stop(server)


def test_malloc_arenas_are_capped_on_glibc():
    # Requests are answered by worker threads; without the cap glibc gives threads arenas of their
    # own and the RSS grows with every burst of requests (tests/benchmark/load.py "RSS flat").
    import platform

    from minerwatch.memory import limit_malloc_arenas

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert limit_malloc_arenas(2) is True
