"""Connections that are opened and left idle cannot take the real `minerwatch serve`'s threads or
memory, nor keep a scrape out: idle, half-sent and TLS-handshaking connections hold no thread,
at most --web.max-connections are open, and a newcomer at the cap takes the place of the one
that has waited longest for a request (503 when every open one is being answered)."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import threading
import time
import urllib.error

import pytest

from support.exporter import Exporter, find
from support.idle_clients import IdleClients, status_field
from support.processes import wait_for
from test_lifecycle import Served
from test_web import certs  # noqa: F401  (fixture)

MIB = 1024 * 1024
# Threads the HTTP side may add to a serve with default flags: the loop, --web.max-requests (40)
# scrape workers and a few spare. One thread per connection would be thousands.
HTTP_THREADS = 1 + 40 + 8
RSS_LIMIT = 100 * MIB  # generous: a serve with default collectors runs at about 25 MiB


def scrape(port, context=None, timeout=20.0):
    """(status, body, seconds) of one GET /metrics on a new connection."""
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    started = time.monotonic()
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), time.monotonic() - started
    finally:
        conn.close()


def samples_of(body):
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_thousands_of_idle_connections_hold_no_threads_and_a_new_scrape_gets_in():
    exporter = Exporter([])
    clients = None
    try:
        pid = exporter.proc.pid
        assert scrape(exporter.port)[0] == 200
        baseline = status_field(pid, "Threads")
        # A third each: nothing sent, half a request head, one request then idle keep-alive.
        clients = IdleClients(("127.0.0.1", exporter.port), 3000)
        time.sleep(1.0)  # let the server take in what it was sent
        threads, rss = status_field(pid, "Threads"), status_field(pid, "VmRSS")
        status, body, _ = scrape(exporter.port)  # a new connection, while the cap is held
        assert status == 200 and "minerwatch_build_info" in body
        assert threads <= baseline + HTTP_THREADS, f"{threads} threads with 3000 idle connections"
        assert rss < RSS_LIMIT, f"RSS {rss / MIB:.0f} MiB with 3000 idle connections"
        samples = samples_of(body)
        assert find(samples, "minerwatch_web_connections")[0][1] == 256  # the default cap, held
        assert find(samples, "minerwatch_web_connections_evicted_total")[0][1] >= 3000 - 256
        assert status_field(pid, "Threads") <= baseline + HTTP_THREADS

        clients.close()
        closed = time.monotonic()
        landing = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=20)
        landing.request("GET", "/")
        assert landing.getresponse().status == 200
        landing.close()
        stall = time.monotonic() - closed  # the landing page: no collection, only the server
        assert stall < 5, f"the first answer took {stall:.1f}s after the idle connections closed"
        assert status_field(pid, "Threads") <= baseline + HTTP_THREADS

        def alone():  # the scrape's own connection, once the server has seen the others close
            samples = exporter.scrape()
            return find(samples, "minerwatch_web_connections")[0][1] == 1

        wait_for(alone, timeout=10, what="the open connections to fall back to one")
    finally:
        if clients is not None:
            clients.close()
        exporter.stop()


class TlsExporter(Exporter):
    """A real serve with TLS: up once it answers over TLS."""

    def __init__(self, args, context):
        self.context = context
        super().__init__(args)

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"minerwatch serve exited {self.proc.returncode}: {self.proc.stdout.read()}")
        try:
            return scrape(self.port, self.context, timeout=2)[0] == 200
        except OSError:
            return False


def test_tls_handshakes_that_never_finish_hold_no_threads(tmp_path, certs):  # noqa: F811
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"tls_server_config:\n  cert_file: {certs / 'cert.pem'}\n  key_file: {certs / 'key.pem'}\n")
    context = ssl.create_default_context(cafile=str(certs / "cert.pem"))
    exporter = TlsExporter(["--collector.disable-defaults", "--collector.host", f"--web.config.file={web_config}"],
                           context)
    clients = None
    try:
        pid = exporter.proc.pid
        assert scrape(exporter.port, context)[0] == 200
        baseline = status_field(pid, "Threads")
        clients = IdleClients(("127.0.0.1", exporter.port), 1000, kinds=("silent", "tls"))
        time.sleep(1.0)
        threads = status_field(pid, "Threads")
        status, body, _ = scrape(exporter.port, context)
        assert status == 200 and "minerwatch_build_info" in body
        assert threads <= baseline + HTTP_THREADS, f"{threads} threads with 1000 unfinished TLS handshakes"
        assert find(samples_of(body), "minerwatch_web_connections")[0][1] == 256  # the default cap, held
    finally:
        if clients is not None:
            clients.close()
        exporter.stop()


@pytest.mark.skipif(not shutil.which("prlimit"), reason="prlimit (util-linux) not installed")
def test_out_of_descriptors_below_the_cap_a_new_scrape_still_gets_in():
    # 200 descriptors in all, fewer than the 256 connections the cap allows: accept() fails.
    exporter = Exporter(["--collector.disable-defaults", "--collector.host"],
                        prefix=["prlimit", "--nofile=200:200", "--"])
    clients = None
    try:
        clients = IdleClients(("127.0.0.1", exporter.port), 400)
        time.sleep(1.0)
        status, body, took = scrape(exporter.port, timeout=5)
        assert status == 200 and "minerwatch_build_info" in body, took
        samples = samples_of(body)
        assert find(samples, "minerwatch_web_connections")[0][1] < 200
        assert find(samples, "minerwatch_web_connections_evicted_total")[0][1] > 200
        assert status_field(exporter.proc.pid, "Threads") < 1 + HTTP_THREADS + 20
    finally:
        if clients is not None:
            clients.close()
        exporter.stop()


def keepalive_get(port, path="/"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() and not resp.will_close
    return conn


def closed_by_server(conn) -> bool:
    conn.sock.settimeout(5)
    try:
        return conn.sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_at_the_cap_the_longest_idle_connection_makes_room():
    exporter = Exporter(["--collector.disable-defaults", "--collector.host", "--web.max-connections=3"])
    try:
        first = keepalive_get(exporter.port)
        second = keepalive_get(exporter.port)
        time.sleep(0.05)
        silent = socket.create_connection(("127.0.0.1", exporter.port), timeout=10)  # waits longest after 2
        time.sleep(0.05)
        second.request("GET", "/")  # the second one is busy again, then idle: it has waited least
        resp = second.getresponse()
        assert resp.status == 200 and resp.read()
        fourth = keepalive_get(exporter.port)  # the first one goes
        assert closed_by_server(first)
        status, body, _ = scrape(exporter.port)  # a fifth: then the silent one
        assert status == 200 and "minerwatch_build_info" in body
        silent.settimeout(5)
        assert silent.recv(1) == b""
        second.request("GET", "/")  # the one in use all along kept its place
        resp = second.getresponse()
        assert resp.status == 200 and resp.read()
        samples = samples_of(body)
        assert find(samples, "minerwatch_web_connections")[0][1] == 3  # second, fourth, fifth
        assert find(samples, "minerwatch_web_connections_evicted_total")[0][1] == 2
        assert find(samples, "minerwatch_web_connections_refused_total", reason="limit")[0][1] == 0
        for conn in (first, second, fourth):
            conn.close()
        silent.close()
    finally:
        exporter.stop()


def test_at_the_cap_with_every_connection_busy_a_newcomer_gets_503(tmp_path):
    served = Served(tmp_path, "--collector.disable-defaults", "--collector.slow", "--web.max-connections=3")
    try:
        served.gate.write_text("")  # the slow collector waits while the gate exists
        results = []

        def slow_scrape():
            results.append(scrape(served.port, timeout=30)[0])

        threads = [threading.Thread(target=slow_scrape) for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(served.started_path.exists, what="the scrapes to start")
        time.sleep(0.3)  # all three connections are in, waiting on the same collection
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            started = time.monotonic()
            reply = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), reply
        assert reply.endswith(b"\r\n\r\nToo many open connections (3), try again later.\n")
        assert time.monotonic() - started < 3  # turned away at once, not queued
        served.gate.unlink()
        for t in threads:
            t.join(30)
        assert results == [200, 200, 200]  # the connections being answered were never taken

        turned_away = []

        def metrics():  # once the server has seen those three connections close
            try:
                return served.get()
            except urllib.error.HTTPError as exc:
                assert exc.code == 503
                turned_away.append(exc)
                return None

        samples = samples_of(wait_for(metrics, timeout=5, what="a scrape below the cap"))
        refused = find(samples, "minerwatch_web_connections_refused_total", reason="limit")[0][1]
        assert refused == 1 + len(turned_away)
    finally:
        if served.gate.exists():
            served.gate.unlink()
        served.stop()


@pytest.mark.parametrize("value, message", [
    ("-1", "-1 is not in the range x>=0."),
    ("many", "'many' is not a valid integer range."),
])
def test_bad_max_connections_is_one_line_naming_the_flag(value, message):
    import subprocess
    import sys

    from support.repo import offline

    result = subprocess.run([sys.executable, "-m", "minerwatch", "serve", *offline([f"--web.max-connections={value}"])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (f"minerwatch: error: Invalid value for '--web.max-connections': {message} "
                             "(see 'minerwatch serve --help')\n")
