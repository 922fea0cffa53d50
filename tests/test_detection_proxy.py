"""Issue 14: a program reaching a pool through a web proxy names the pool in its CONNECT request.

A real curl talks to a proxy stand-in on 127.0.0.1 (a thread of this test that reads the
request and never answers, as a proxy still checking its policy would), and the real network
collector, sniffer included, watches loopback. curl sends only the pool's name to the proxy;
`--resolve` pins the name to 127.0.0.1 all the same, so nothing could ever ask DNS about it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from support.processes import stop_pid, wait_for
from minerwatch.app import Options, build_context
from minerwatch.collectors.network import NetworkCollector
from support.nettest import QuietServer, SilentHandler, can_sniff


pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sniffer is Linux only"),
    pytest.mark.skipif(not can_sniff(), reason="the sniffer needs CAP_NET_RAW"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl"),
]


@pytest.fixture
def proxy():
    server = QuietServer(("127.0.0.1", 0), SilentHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def collector(tmp_path):
    config = tmp_path / "minerwatch.yml"
    config.write_text("network:\n  sniffer: on\n  extra_ports: []\n")
    made = NetworkCollector(build_context(Options(config_file=str(config))), resolve=lambda name: [])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(made)
    made.registry = registry
    yield made
    made.close()


def samples(collector, name):
    collector.monitor._last = float("-inf")
    text = generate_latest(collector.registry).decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def curl_through(tmp_path, proxy_port: int, url: str, name: str = "curl") -> subprocess.Popen:
    exe = tmp_path / name
    if not exe.exists():
        exe.symlink_to(shutil.which("curl"))
    host = url.split("/")[2].split(":")[0]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}  # no *_proxy variables
    return subprocess.Popen([str(exe), "-sS", "-o", "/dev/null", "--max-time", "60", "-x", f"http://127.0.0.1:{proxy_port}",
                             "--resolve", f"{host}:443:127.0.0.1", "--resolve", f"{host}:3333:127.0.0.1", url],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_connect_to_a_pool_through_a_proxy_is_attributed_to_the_process(tmp_path, proxy, collector):
    client = curl_through(tmp_path, proxy, "https://pool.supportxmr.com:3333/", name="updater")
    try:
        def series():
            assert client.poll() is None, "curl exited"
            return [s.labels for s in samples(collector, "minerwatch_network_pool_connection_info")
                    if s.labels["pid"] == str(client.pid)]

        [labels] = wait_for(series, timeout=20, what="the CONNECT through the proxy")
        assert labels == {"pid": str(client.pid), "name": "updater", "user": "root",
                          "remote": f"127.0.0.1:{proxy}", "evidence": "connect", "pool": "pool.supportxmr.com"}
        [matches] = samples(collector, "minerwatch_network_connect_matches_total")
        assert matches.value >= 1
        reason = collector.monitor.match(type("Facts", (), {"pid": client.pid})()).reason
        assert reason == f"connection to 127.0.0.1:{proxy} (connect: CONNECT pool.supportxmr.com:3333)"
    finally:
        stop_pid(client)


def test_an_ordinary_connect_through_the_proxy_is_nothing(tmp_path, proxy, collector):
    before = samples(collector, "minerwatch_network_sniffer_packets_total")[0].value
    client = curl_through(tmp_path, proxy, "https://www.example.org/")
    try:
        # the CONNECT went through the kernel filter: the sniffer read it, and let it be
        wait_for(lambda: samples(collector, "minerwatch_network_sniffer_packets_total")[0].value > before
                 or client.poll() is not None, timeout=20, what="the CONNECT read by the sniffer")
        assert client.poll() is None, "curl exited"
        assert [s for s in samples(collector, "minerwatch_network_pool_connection_info")
                if s.labels["pid"] == str(client.pid) or s.labels["remote"] == f"127.0.0.1:{proxy}"] == []
        assert collector.monitor.match(type("Facts", (), {"pid": client.pid})()) is None
    finally:
        stop_pid(client)
