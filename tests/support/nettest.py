"""What the live network tests share: whether the sniffer can run here, a silent TCP server (a
pool or proxy that accepts and never answers), and a scrape of an exporter by address."""

import http.client
import socketserver

from prometheus_client.parser import text_string_to_metric_families

from minerwatch.network.sniffer import open_packet_socket


def can_sniff() -> bool:
    """True when a packet socket can be opened (Linux, CAP_NET_RAW)."""
    try:
        open_packet_socket().close()
        return True
    except (OSError, AttributeError):  # AttributeError: no AF_PACKET off Linux
        return False


class SilentHandler(socketserver.BaseRequestHandler):
    """Accepts and never answers: the connection stays open, a TLS client waits in its handshake."""

    def handle(self):
        self.request.settimeout(60)
        try:
            while self.request.recv(4096):
                pass
        except OSError:
            pass


class QuietServer(socketserver.ThreadingTCPServer):
    """A threading TCP server whose clients the test stops (their resets are not news)."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass


def scrape(host: str, port: int) -> dict:
    """Samples of one GET /metrics as {name: [(labels, value), ...]}; no proxy, whatever the
    environment says."""
    conn = http.client.HTTPConnection(host, port, timeout=20)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def answering(host: str, port: int) -> bool:
    try:
        scrape(host, port)
        return True
    except OSError:
        return False
