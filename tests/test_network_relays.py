"""Issue 23: pool evidence on the wire, precise for pool web sites and complete through relays.

Real processes, loopback only, the real network collector with its sniffer:
- a browser (curl, its real TLS ClientHello) opening a pool's web site on port 443, directly,
  through a web proxy's CONNECT and through a SOCKS5 relay, gets weak evidence `site` and no
  signal, while a Stratum endpoint named on 443 (XMRig's donate.ssl.xmrig.com) stays `sni`;
- a miner (fakeminer.py) speaking Stratum through a SOCKS5 or SOCKS4a relay on 127.0.0.1
  (support/socks_relay.py, stopped by its PID) that names a listed pool gets `connect` and the
  pool_connection signal; the relay, speaking Stratum upstream, is caught by the Stratum itself.
The TLS stand-ins listen on port 443 of an address of their own in 127.0.0.0/8 (the web-site
rule depends on the port); no name is ever resolved (`--resolve`, `--socks5-hostname`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from minerwatch.app import Options, build_context
from minerwatch.collectors.network import NetworkCollector
from support.nettest import QuietServer, SilentHandler, can_sniff
from support.processes import stop_pid, wait_for
from support.wallets import MONERO_WALLET

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sniffer is Linux only"),
    pytest.mark.skipif(not can_sniff(), reason="the sniffer needs CAP_NET_RAW"),
]
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")

SUPPORT = Path(__file__).resolve().parent / "support"


class Net:
    def __init__(self, tmp_path: Path):
        config = tmp_path / "minerwatch.yml"
        config.write_text("network:\n  sniffer: on\n  extra_ports: []\n")
        self.context = build_context(Options(config_file=str(config)))
        self.collector = NetworkCollector(self.context, resolve=lambda name: [])
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def info(self, pid: int):
        self.collector.monitor._last = float("-inf")
        text = generate_latest(self.registry).decode()
        return [s.labels for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "minerwatch_network_pool_connection_info" and s.labels["pid"] == str(pid)]

    def signals(self, pid: int):
        view = self.context.processes.scan().by_pid().get(pid)
        return view.signals if view else {}

    def signal(self, pid: int):
        match = self.collector.monitor.match(type("Facts", (), {"pid": pid})())
        return match.reason if match else None


@pytest.fixture
def net(tmp_path):
    made = Net(tmp_path)
    yield made
    made.collector.close()


@pytest.fixture
def https_443():
    """A TLS server stand-in on port 443 of an address of this test run (accepts, never answers)."""
    host = f"127.43.{os.getpid() % 250 + 1}.1"
    server = QuietServer((host, 443), SilentHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield host
    server.shutdown()
    server.server_close()


@pytest.fixture
def relay(tmp_path):
    """start(target) -> port of a relay process (SOCKS5, SOCKS4a, CONNECT) joining clients to target."""
    procs = []

    def start(target: str) -> int:
        port_file = tmp_path / f"relay-{len(procs)}.port"
        proc = subprocess.Popen([sys.executable, str(SUPPORT / "socks_relay.py"), str(port_file), target],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        return int(wait_for(lambda: port_file.exists() and port_file.read_text(), what="the relay stand-in"))

    yield start
    for proc in procs:
        stop_pid(proc)


def curl(tmp_path: Path, name: str, *args: str) -> subprocess.Popen:
    exe = tmp_path / name
    if not exe.exists():
        exe.symlink_to(shutil.which("curl"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}  # no *_proxy variables
    return subprocess.Popen([str(exe), "-sS", "-o", "/dev/null", "--max-time", "60", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def series_of(net: Net, proc: subprocess.Popen, what: str):
    def found():
        assert proc.poll() is None, f"{what}: the process exited"
        return net.info(proc.pid)

    return wait_for(found, timeout=20, what=what)


@needs_curl
def test_a_browser_on_a_pools_web_site_is_weak_and_an_endpoint_on_443_is_not(tmp_path, net, https_443):
    browser = curl(tmp_path, "firefox", "--noproxy", "*", "--resolve", f"www.nicehash.com:443:{https_443}",
                   "https://www.nicehash.com/")
    donate = curl(tmp_path, "updater", "--noproxy", "*", "--resolve", f"donate.ssl.xmrig.com:443:{https_443}",
                  "https://donate.ssl.xmrig.com/")
    try:
        [site] = series_of(net, browser, "the browser's ClientHello")
        assert (site["evidence"], site["pool"], site["remote"]) == ("site", "nicehash.com", f"{https_443}:443")
        [endpoint] = series_of(net, donate, "the donate endpoint's ClientHello")
        assert (endpoint["evidence"], endpoint["pool"]) == ("sni", "donate.ssl.xmrig.com")
        assert net.signal(donate.pid) == f"connection to {https_443}:443 (sni: donate.ssl.xmrig.com)"
        assert "pool_connection" in net.signals(donate.pid)
        # the browser: exported for the hunt, no signal, so no alert above info (rules tests)
        assert net.signal(browser.pid) is None
        assert "pool_connection" not in net.signals(browser.pid)
    finally:
        stop_pid(browser)
        stop_pid(donate)


@needs_curl
def test_a_browser_through_a_proxy_or_a_socks_relay_to_a_pools_web_site_is_weak(tmp_path, net, https_443, relay):
    relay_port = relay(f"{https_443}:443")
    proxied = curl(tmp_path, "chrome", "-x", f"http://127.0.0.1:{relay_port}",
                   "https://www.f2pool.com/")  # the relay's 200, then the ClientHello through the tunnel
    socks = curl(tmp_path, "torbrowser", "--socks5-hostname", f"127.0.0.1:{relay_port}", "https://f2pool.com/")
    try:
        [connect] = series_of(net, proxied, "the CONNECT to the web site")
        assert (connect["evidence"], connect["pool"], connect["remote"]) == ("site", "f2pool.com",
                                                                             f"127.0.0.1:{relay_port}")
        [through] = series_of(net, socks, "the SOCKS5 request for the web site")
        assert (through["evidence"], through["pool"], through["remote"]) == ("site", "f2pool.com",
                                                                             f"127.0.0.1:{relay_port}")
        for proc in (proxied, socks):
            assert net.signal(proc.pid) is None
            assert "pool_connection" not in net.signals(proc.pid)
        hits = net.collector.monitor.sniffer_state.hits.values()
        assert {h.detail for h in hits if h.evidence == "site" and h.server.port == relay_port} == {
            "CONNECT www.f2pool.com:443", "SOCKS5 CONNECT f2pool.com:443"}
        # the ClientHellos through the tunnels went on to port 443: still the web site, no `sni`
        assert not [h for h in hits if h.evidence == "sni" and h.pool == "f2pool.com"]
    finally:
        stop_pid(proxied)
        stop_pid(socks)


@pytest.mark.parametrize("kind", ["socks5", "socks4a"])
def test_a_miner_through_a_socks_relay_naming_a_pool_gets_connect(tmp_path, net, pool, spawn, relay, kind):
    relay_port = relay(str(pool.port))
    proxy = f"127.0.0.1:{relay_port}" if kind == "socks5" else f"socks4a://127.0.0.1:{relay_port}"
    miner = spawn.start("updater", ["-o", "stratum+tcp://pool.supportxmr.com:3333", "-u", MONERO_WALLET, "-p", "x",
                                    "-x", proxy, "--threads", "0"])
    [labels] = series_of(net, miner, "the SOCKS request")
    assert labels == {"pid": str(miner.pid), "name": "updater", "user": "root", "remote": f"127.0.0.1:{relay_port}",
                      "evidence": "connect", "pool": "pool.supportxmr.com"}
    verb = "SOCKS5" if kind == "socks5" else "SOCKS4a"
    reason = f"connection to 127.0.0.1:{relay_port} (connect: {verb} CONNECT pool.supportxmr.com:3333)"
    assert net.signal(miner.pid) == reason
    assert net.signals(miner.pid)["pool_connection"] == reason
    # a relay on this host speaks the miner's Stratum upstream: caught by the Stratum itself
    relay_hits = wait_for(lambda: [h for h in net.collector.monitor.update(force=True)
                                   if h.conn.remote.port == pool.port and "stratum" in h.kinds], timeout=20,
                          what="the relay's Stratum upstream")
    assert relay_hits[0].evidence[0][2] == "cryptonote login"


def test_tls_with_no_server_name_through_a_socks_relay_is_caught_by_its_request(tmp_path, net, spawn, relay):
    # Nothing inside the tunnel names the pool (TLS, no SNI): only the SOCKS5 request does.
    silent = QuietServer(("127.0.0.1", 0), SilentHandler)
    threading.Thread(target=silent.serve_forever, daemon=True).start()
    try:
        relay_port = relay(str(silent.server_address[1]))
        client = spawn.start("svchost", [relay_port, "pool.supportxmr.com", 443], script=SUPPORT / "relay_client.py")
        [labels] = series_of(net, client, "the SOCKS5 request")
        assert (labels["evidence"], labels["pool"], labels["remote"]) == (
            "connect", "pool.supportxmr.com", f"127.0.0.1:{relay_port}")  # an endpoint: strong on 443 too
        assert net.signal(client.pid) == (f"connection to 127.0.0.1:{relay_port} "
                                          "(connect: SOCKS5 CONNECT pool.supportxmr.com:443)")
    finally:
        silent.shutdown()
        silent.server_close()
