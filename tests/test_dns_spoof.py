"""Forged DNS answers: only an answer to a query this host sent is learned, and only as weak evidence.

Against one real `minerwatch serve` with its sniffer (root / CAP_NET_RAW). Forged answers come
from sockets bound to port 53 on loopback addresses of this test (127.A.B.x) or from a test
network namespace (198.18.0.0/15, support/netns.py); each says "a pool name is 127.A.B.n", where
a silent TCP server of this test listens, and a real client process (support/netclient.py)
connects there. That port is an `extra_ports` entry, so the connection is always exported
(evidence `port`) and its evidence says whether the forged answer was believed. Every process
is stopped by its PID; the machine's resolver is never asked anything.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support import netns
from support.dnsforge import forged_answer, query, send_from_53
from support.dnsserver import DnsServer
from support.exporter import Exporter
from support.nettest import QuietServer, SilentHandler, can_sniff
from support.processes import Spawner, free_port, wait_for

SUPPORT = Path(__file__).resolve().parent / "support"
NETCLIENT = SUPPORT / "netclient.py"
DNSFORGE = SUPPORT / "dnsforge.py"
BASE = f"127.{os.getpid() % 199 + 30}.{os.getpid() // 199 % 250 + 1}"  # this run's loopback /24
SERVER_IP = f"{BASE}.53"  # the DNS server the host asks

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux packet sockets"),
    pytest.mark.skipif(not can_sniff(), reason="the sniffer needs CAP_NET_RAW"),
]


class Watched:
    """The exporter, the port its pools listen on, and what the tests read from it."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        config = tmp / "minerwatch.yml"
        config.write_text(f"network:\n  resolve_max_names: 0\n  sniffer: on\n  extra_ports: [{self.port}]\n")
        self.exporter = Exporter([f"--config.file={config}", "--collector.disable-defaults",
                                  "--collector.network", "--collector.process"])
        self.servers = []

    def pool(self, address: str) -> str:
        """A silent server on address:port; returns its remote endpoint as the exporter writes it."""
        server = QuietServer((address, self.port), SilentHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return f"{address}:{self.port}"

    def responses(self) -> dict:
        samples = self.exporter.scrape().get("minerwatch_network_dns_responses_total", [])
        return {labels["result"]: value for labels, value in samples}

    def read(self, before: dict, count: int = 1) -> dict:
        """Waits until the sniffer has read `count` more answers than `before`, whatever it made of
        them (learned or refused: the wait does not depend on the verdict); returns the counts."""
        def counted():
            now = self.responses()
            return now if sum(now.values()) - sum(before.values()) >= count else None
        return wait_for(counted, timeout=30, what=f"the sniffer to read {count} answer(s)")

    def connection(self, remote: str, pid: int) -> dict:
        def found():
            samples = self.exporter.scrape()
            return [labels for labels, _ in samples.get("minerwatch_network_pool_connection_info", [])
                    if labels["remote"] == remote and labels["pid"] == str(pid)]
        return wait_for(found, timeout=30, what=f"the connection to {remote}")[0]

    def signals(self, pid: int) -> set:
        samples = self.exporter.scrape().get("minerwatch_process_signal", [])
        return {labels["signal"] for labels, _ in samples if labels["pid"] == str(pid)}

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        self.exporter.stop()


@pytest.fixture(scope="module")
def mw(tmp_path_factory):
    watched = Watched(tmp_path_factory.mktemp("dns-spoof"))
    try:
        yield watched
    finally:
        watched.close()


@pytest.fixture
def spawn(tmp_path):
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.stop_all()


def delta(after: dict, before: dict, result: str) -> float:
    return after.get(result, 0) - before.get(result, 0)


def connect(spawn: Spawner, remote: str):
    host, port = remote.rsplit(":", 1)
    return spawn.start("updater", ["idle", host, port], script=NETCLIENT)


def test_an_unsolicited_answer_on_loopback_is_refused(mw, spawn):
    remote = mw.pool(f"{BASE}.5")
    before = mw.responses()
    # nobody asked: a local user writes "supportxmr.com is 127.A.B.5" to some loopback port
    try:
        send_from_53(SERVER_IP, ("127.0.0.1", free_port()), forged_answer(0x1234, "supportxmr.com", f"{BASE}.5"))
    except PermissionError as exc:
        pytest.skip(f"binding port 53 needs root: {exc}")
    after = mw.read(before)
    client = connect(spawn, remote)
    labels = mw.connection(remote, client.pid)
    assert (labels["evidence"], labels["pool"]) == ("port", ""), "the forged answer was believed"
    assert delta(after, before, "unsolicited") >= 1  # counted, for the dashboard
    assert "pool_connection" not in mw.signals(client.pid)


@pytest.mark.skipif(bool(netns.available()), reason=f"no test namespace: {netns.available()}")
@pytest.mark.parametrize("how", ["broadcast", "unicast"])
def test_a_forged_answer_from_another_host_on_the_segment_is_refused(mw, spawn, tmp_path, how):
    address = f"{BASE}.{6 if how == 'broadcast' else 7}"
    remote = mw.pool(address)
    namespace = netns.Namespace(tmp_path)
    try:
        before = mw.responses()
        # another machine on the segment (the namespace) sends "supportxmr.com is 127.A.B.n" to
        # everyone, or to this host, from port 53
        target = "255.255.255.255" if how == "broadcast" else namespace.host_ip
        args = [namespace.ns_ip, target, 40000, "supportxmr.com", address]
        sender = namespace.popen([sys.executable, DNSFORGE, *args, *([namespace.ns_if] if how == "broadcast" else [])],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = sender.communicate(timeout=30)[0]
        assert sender.returncode == 0, output
        after = mw.read(before)
        client = connect(spawn, remote)
        labels = mw.connection(remote, client.pid)
        assert (labels["evidence"], labels["pool"]) == ("port", ""), f"the {how} answer was believed"
        assert delta(after, before, "unsolicited") >= 1  # counted, for the dashboard
        assert "pool_connection" not in mw.signals(client.pid)
    finally:
        namespace.close()


def test_a_genuine_lookup_is_learned_as_weak_evidence(mw, spawn):
    address = f"{BASE}.8"
    remote = mw.pool(address)
    try:
        dns = DnsServer((SERVER_IP, 53), {"pool.supportxmr.com": [("A", address, 120)]}).start()
    except OSError as exc:
        pytest.skip(f"cannot serve DNS on {SERVER_IP}:53: {exc}")
    try:
        before = mw.responses()
        # the host looks the pool up (in 0x20 mixed case, as some resolvers do) and connects to it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.bind(("127.0.0.1", 0))
            sock.sendto(query("PoOl.SupportXMR.com", 0x0D05), dns.address)
            assert socket.inet_aton(address) in sock.recv(512)
        after = mw.read(before)
        assert delta(after, before, "pool") >= 1
        client = connect(spawn, remote)
        labels = mw.connection(remote, client.pid)
        assert (labels["evidence"], labels["pool"]) == ("dns_answer,port", "pool.supportxmr.com")
        addresses = mw.exporter.scrape()["minerwatch_network_pool_addresses"]
        assert [v for labels, v in addresses if labels["source"] == "dns_answers"][0] >= 1
        assert "pool_connection" not in mw.signals(client.pid)  # weak: never a signal alone
    finally:
        dns.close()


def test_answers_with_the_wrong_id_port_server_or_question_are_refused(mw, spawn):
    name, ident = "pool.supportxmr.com", 0x4242
    addresses = {case: f"{BASE}.{n}" for n, case in enumerate(["genuine", "id", "port", "server", "question"], 20)}
    remotes = {case: mw.pool(address) for case, address in addresses.items()}
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        try:
            server.bind((SERVER_IP, 53))
        except OSError as exc:
            pytest.skip(f"cannot bind {SERVER_IP}:53: {exc}")
        client.bind(("127.0.0.1", 0))
        server.settimeout(10)
        before = mw.responses()
        # the host asks, and the answers come: three forgeries, one for another question, the real one
        client.sendto(query(name, ident), (SERVER_IP, 53))
        assert server.recvfrom(512)[1] == client.getsockname()
        elsewhere = ("127.0.0.1", free_port())
        server.sendto(forged_answer(ident ^ 0x0100, name, addresses["id"]), client.getsockname())
        server.sendto(forged_answer(ident, name, addresses["port"]), elsewhere)
        send_from_53(f"{BASE}.54", client.getsockname(), forged_answer(ident, name, addresses["server"]))
        server.sendto(forged_answer(ident, "other.supportxmr.com", addresses["question"]), client.getsockname())
        server.sendto(forged_answer(ident, name, addresses["genuine"]), client.getsockname())
        after = mw.read(before, 5)
        clients = {case: connect(spawn, remote) for case, remote in remotes.items()}
        believed = {case: mw.connection(remote, clients[case].pid)["evidence"] for case, remote in remotes.items()}
        assert believed == {"genuine": "dns_answer,port", "id": "port", "port": "port", "server": "port",
                            "question": "port"}
        # other tests' DNS traffic on this machine may add to the counters, never take away
        assert delta(after, before, "unsolicited") >= 3 and delta(after, before, "mismatched") >= 1
        assert delta(after, before, "pool") >= 1
        assert "pool_connection" not in mw.signals(clients["genuine"].pid)
    finally:
        server.close()
        client.close()
