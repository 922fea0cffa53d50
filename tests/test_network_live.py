"""The network collector on real sockets and processes, loopback only (127.0.0.0/8).

Every server is a thread of this process (shut down here) or a process stopped by its PID;
every resolver is injected, so no test ever asks real DNS about a real pool. The host may be
shared with other test runs (their miners and pools on loopback are seen too), so assertions
look at this test's processes and ports.
"""

from __future__ import annotations

import http.server
import os
import pwd
import resource
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from support.processes import stop_pid, wait_for
from support.promtool import check_metrics
from support.wallets import MONERO_WALLET
from minerwatch.app import Options, build_context
from minerwatch.collectors.network import NetworkCollector
from minerwatch.config import ConfigError
from minerwatch.network.sockets import PsutilSockets
from support import netns
from support.nettest import QuietServer, SilentHandler, can_sniff
from support.pool import PoolServer, StratumHandler

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sockets and /proc")

NETCLIENT = Path(__file__).resolve().parent / "support" / "netclient.py"


needs_raw = pytest.mark.skipif(not can_sniff(), reason="the sniffer needs CAP_NET_RAW")
needs_netns = pytest.mark.skipif(bool(netns.available()), reason=f"no test namespace: {netns.available()}")


def no_dns(name):
    """The injected resolver of most tests: knows nothing, asks nobody."""
    raise OSError(f"no DNS in tests: {name}")


class Net:
    """A config file, the real context (process table) and the network collector over them."""

    def __init__(self, tmp_path: Path, config: str, resolve=no_dns, **kwargs):
        self.config_file = tmp_path / "minerwatch.yml"
        self.config_file.write_text(config)
        self.context = build_context(Options(config_file=str(self.config_file)))
        self.collector = NetworkCollector(self.context, resolve=resolve, **kwargs)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def scrape(self) -> str:
        self.collector.monitor._last = float("-inf")  # no 1-second reuse between test steps
        return generate_latest(self.registry).decode()

    def samples(self, name: str):
        text = self.scrape()
        return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]

    def info(self):
        return [s.labels for s in self.samples("minerwatch_network_pool_connection_info")]

    def value(self, name: str, **labels) -> float:
        return next(s.value for s in self.samples(name) if all(s.labels.get(k) == v for k, v in labels.items()))

    def signals(self, pid: int):
        view = self.context.processes.scan().by_pid().get(pid)
        return view.signals if view else {}

    def close(self):
        self.collector.close()


@pytest.fixture
def nets(tmp_path):
    made = []

    def make(config: str, **kwargs) -> Net:
        net = Net(tmp_path, config, **kwargs)
        made.append(net)
        return net

    yield make
    for net in made:
        net.close()


def ioc_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "iocs.txt"
    path.write_text(text)
    return str(path)


class ThreadServer:
    """A socketserver in a thread of this process, shut down by the test."""

    def __init__(self, server: socketserver.BaseServer):
        self.server = server
        self.port = server.server_address[1]
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class QuietPoolServer(PoolServer):
    def handle_error(self, request, client_address):
        pass


class ThreadingServer6(QuietServer):
    address_family = socket.AF_INET6


class OkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def bind(make, preferred: int):
    """A server on 127.0.0.1:preferred, or on a free port when that one is taken."""
    try:
        return make(preferred)
    except OSError:
        return make(0)


@pytest.fixture
def servers():
    started = []

    def start(server) -> ThreadServer:
        handle = ThreadServer(server)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.close()


def wait_series(net: Net, pid: int, what: str):
    return wait_for(lambda: [s for s in net.info() if s["pid"] == str(pid)], timeout=15, what=what)


# -- lists ----------------------------------------------------------------------------------------


def test_listed_pool_connection_is_attributed_to_pid_and_user(nets, tmp_path, pool, spawn):
    iocs = ioc_file(tmp_path, f"127.0.0.1:{pool.port}\n")
    net = nets(f"network:\n  ioc_files: [{iocs}]\n  sniffer: off\n")
    miner = spawn.start("xmrig", ["-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET, "-p", "x"])
    wait_for(lambda: "login" in pool.methods(), what="the miner's login")

    [series] = wait_series(net, miner.pid, "the miner's connection")
    assert series == {
        "pid": str(miner.pid), "name": "xmrig", "user": "root", "remote": f"127.0.0.1:{pool.port}",
        "evidence": "list", "pool": f"127.0.0.1:{pool.port}",
    }
    assert not [s for s in net.info() if s["pid"] == str(pool.pid)]  # the pool's side accepted, not flagged
    assert net.value("minerwatch_network_pool_connections") == 1
    reason = net.signals(miner.pid)["pool_connection"]
    assert reason == f"connection to 127.0.0.1:{pool.port} (list: 127.0.0.1:{pool.port} listed at {iocs}:1)"
    assert "pool_connection" not in net.signals(pool.pid)


def start_as(user: str, *args) -> subprocess.Popen:
    """netclient as `user`, returned once its connection is open (so it is that user's by then)."""
    proc = subprocess.Popen([sys.executable, str(NETCLIENT), *map(str, args)], env={**os.environ, "NETCLIENT_USER": user},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uid = pwd.getpwnam(user).pw_uid
    wait_for(lambda: proc.poll() is not None or (os.stat(f"/proc/{proc.pid}").st_uid == uid
                                                 and any(os.readlink(f"/proc/{proc.pid}/fd/{fd}").startswith("socket:")
                                                         for fd in os.listdir(f"/proc/{proc.pid}/fd"))),
             what=f"netclient as {user}")
    assert proc.poll() is None, "netclient exited"
    return proc


def test_attribution_names_another_users_process(nets, tmp_path, servers):
    # a loopback address of its own, so that only this test's connection is in the network
    address = f"127.{os.getpid() % 200 + 50}.{os.getpid() % 250 + 1}.9"
    pool = servers(QuietServer((address, 0), StratumHandler))
    iocs = ioc_file(tmp_path, f"{address.rsplit('.', 1)[0]}.0/24\n")
    proc = start_as("nobody", "idle", address, pool.port)
    try:
        net = nets(f"network:\n  ioc_files: [{iocs}]\n  sniffer: off\n")
        [series] = wait_series(net, proc.pid, "nobody's connection")
        assert (series["user"], series["evidence"]) == ("nobody", "list")
        assert series["pool"] == f"{address.rsplit('.', 1)[0]}.0/24"
    finally:
        stop_pid(proc)


def test_a_usual_stratum_port_alone_is_weak(nets, pool, spawn):
    net = nets(f"network:\n  extra_ports: [{pool.port}]\n  sniffer: off\n")
    client = spawn.start("helper", ["idle", "127.0.0.1", pool.port], script=NETCLIENT)
    [series] = wait_series(net, client.pid, "the port-only connection")
    assert (series["evidence"], series["pool"]) == ("port", "")
    assert net.value("minerwatch_network_pool_connections") == 0  # no strong evidence anywhere
    assert net.value("minerwatch_network_pool_port_connections") >= 1
    assert "pool_connection" not in net.signals(client.pid)


def test_resolved_pool_name_gives_dns_evidence(nets, servers, spawn):
    # 127.0.0.1 is a sinkhole answer (ignored); a pool "living" on another loopback address is not
    address = f"127.{os.getpid() % 200 + 50}.{os.getpid() % 250 + 1}.2"
    pool = servers(QuietServer((address, 0), StratumHandler))
    answers = {"pool.supportxmr.com": [address], "gulf.moneroocean.stream": ["127.0.0.1", "0.0.0.0"]}

    def resolve(name):
        if name in answers:
            return answers[name]
        raise OSError("unknown")

    net = nets("network:\n  sniffer: off\n  resolve_max_names: 256\n", resolve=resolve)  # opt-in: default 0
    assert net.collector.resolver.last_refresh == 0  # nothing is resolved before the first scrape
    net.scrape()
    wait_for(lambda: net.collector.resolver.last_refresh > 0, what="the first resolver round")
    assert net.collector.resolver.address_count == 1
    client = spawn.start("helper", ["idle", address, pool.port], script=NETCLIENT)
    [series] = wait_series(net, client.pid, "the connection to a resolved pool address")
    assert (series["evidence"], series["pool"]) == ("dns", "pool.supportxmr.com")
    assert "an address of pool.supportxmr.com" in net.signals(client.pid)["pool_connection"]
    assert net.value("minerwatch_network_pool_addresses", source="dns") == 1
    assert net.value("minerwatch_network_pool_resolve_failures_total") == len(net.collector.resolver.names) - 2
    assert net.value("minerwatch_network_pool_list_refresh_timestamp_seconds") > 1.6e9


def test_a_hanging_resolver_never_slows_a_scrape(nets):
    release = threading.Event()
    net = nets("network:\n  sniffer: off\n  resolve_max_names: 256\n  resolve_timeout_seconds: 30\n",
               resolve=lambda name: release.wait(60) and [])
    try:
        start = time.monotonic()
        net.scrape()
        assert time.monotonic() - start < 2.0
        assert net.value("minerwatch_network_pool_list_refresh_timestamp_seconds") == 0
    finally:
        release.set()


# -- cost -----------------------------------------------------------------------------------------


def test_idle_connections_cost_no_attribution_and_a_match_costs_little(nets, tmp_path, pool):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    idle = []
    try:
        for _ in range(300):
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
            idle += [client, server]
        iocs = ioc_file(tmp_path, f"127.0.0.1:{pool.port}\n")
        net = nets(f"network:\n  ioc_files: [{iocs}]\n  sniffer: off\n")
        net.collector.pools.ports = frozenset()  # port evidence would count other test runs' sockets
        owners = net.collector.monitor.sockets.owners

        net.scrape()
        assert net.value("minerwatch_network_sockets") >= 300  # the 300 client ends; accepted ones not counted
        assert (owners.fd_dirs_total, owners.fd_reads_total) == (0, 0)  # nothing matched: no /proc/PID/fd

        miner = start_as("nobody", "idle", "127.0.0.1", pool.port)
        try:
            wait_series(net, miner.pid, "the miner's connection")
            # processes of the socket's owner (nobody) are looked at first, the newest first; this
            # test process (root, 600 sockets) is never looked at
            assert owners.fd_dirs_total <= 5, owners.fd_dirs_total
            assert owners.fd_reads_total < 100, owners.fd_reads_total
            reads = owners.fd_reads_total
            net.scrape()  # the cached inode -> (pid, fd) is checked with one readlink
            assert owners.fd_reads_total == reads + 1
            assert net.value("minerwatch_network_attribution_fd_reads_total") == owners.fd_reads_total
        finally:
            stop_pid(miner)
    finally:
        for s in idle:
            s.close()
        listener.close()


def test_psutil_path_attributes_the_same_connection(nets, tmp_path, pool, spawn):
    iocs = ioc_file(tmp_path, f"127.0.0.1:{pool.port}\n")
    net = nets(f"network:\n  ioc_files: [{iocs}]\n  sniffer: off\n", sockets=PsutilSockets())
    miner = spawn.start("xmrig", ["-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET])
    [series] = wait_series(net, miner.pid, "the miner's connection through psutil")
    assert (series["name"], series["evidence"]) == ("xmrig", "list")
    assert "pool_connection" in net.signals(miner.pid)


# -- sniffer --------------------------------------------------------------------------------------


@needs_raw
@pytest.mark.parametrize("dialect", ["cryptonote", "stratum1"])
def test_renamed_process_speaking_stratum_on_an_unlisted_port(nets, servers, spawn, dialect):
    pool = servers(bind(QuietPoolServer, 18080))
    net = nets("network:\n  sniffer: on\n")
    assert pool.port not in net.collector.pools.ports
    client = spawn.start("backup-agent", [dialect, "127.0.0.1", pool.port], script=NETCLIENT)
    [series] = wait_series(net, client.pid, "the Stratum flow")
    assert series["evidence"] == "stratum" and series["name"] == "backup-agent"
    assert series["remote"] == f"127.0.0.1:{pool.port}"
    counted = "cryptonote" if dialect == "cryptonote" else "stratum_v1"
    assert net.value("minerwatch_network_stratum_flows_total", dialect=counted) >= 1
    assert net.value("minerwatch_network_sniffer_up") == 1
    reason = net.signals(client.pid)["pool_connection"]
    assert reason.startswith(f"connection to 127.0.0.1:{pool.port} (stratum: ")


@needs_raw
def test_stratum_over_ipv6(nets, servers, spawn):
    pool = servers(ThreadingServer6(("::1", 0), StratumHandler))
    net = nets("network:\n  sniffer: on\n")
    client = spawn.start("backup-agent", ["stratum1", "::1", pool.port], script=NETCLIENT)
    [series] = wait_series(net, client.pid, "the Stratum flow over IPv6")
    assert (series["evidence"], series["remote"]) == ("stratum", f"[::1]:{pool.port}")


@pytest.fixture
def namespace(tmp_path):
    made = netns.Namespace(tmp_path)
    yield made
    made.close()


@needs_raw
@needs_netns
def test_stratum_leaving_through_an_interface_is_seen(nets, spawn, namespace):
    port = namespace.start_pool(namespace.ns_ip)
    net = nets("network:\n  sniffer: on\n")
    client = spawn.start("svchost", ["cryptonote", namespace.ns_ip, port], script=NETCLIENT)
    [series] = wait_series(net, client.pid, "the Stratum flow through the veth")
    assert (series["evidence"], series["remote"]) == ("stratum", f"{namespace.ns_ip}:{port}")
    # the login left (outgoing) and the job came in (incoming): one connection, recorded once
    hits = [h for h in net.collector.sniffer.snapshot().hits.values() if h.server.port == port]
    assert len(hits) == 1 and hits[0].client.ip == namespace.host_ip


@needs_raw
@needs_netns
def test_a_miner_in_another_namespace_is_reported_without_a_pid(nets, servers, namespace):
    pool = servers(QuietServer((namespace.host_ip, 0), StratumHandler))
    net = nets("network:\n  sniffer: on\n")
    namespace.popen([sys.executable, NETCLIENT, "cryptonote", namespace.host_ip, pool.port],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    remote = f"{namespace.host_ip}:{pool.port}"
    [series] = wait_for(lambda: [s for s in net.info() if s["remote"] == remote], timeout=15,
                        what="the namespace's Stratum flow")
    # its socket is not in this namespace's table: no process to name, still reported
    assert (series["pid"], series["name"], series["evidence"]) == ("", "", "stratum")


@needs_raw
def test_tls_client_hello_naming_a_pool_is_caught_by_sni(nets, servers, spawn):
    silent = servers(QuietServer(("127.0.0.1", 0), SilentHandler))
    net = nets("network:\n  sniffer: on\n")
    client = spawn.start("updater", ["tls", "127.0.0.1", silent.port, "pool.supportxmr.com"], script=NETCLIENT)
    [series] = wait_series(net, client.pid, "the ClientHello")
    assert (series["evidence"], series["pool"]) == ("sni", "pool.supportxmr.com")
    assert net.value("minerwatch_network_sni_matches_total") >= 1
    assert "sni: pool.supportxmr.com" in net.signals(client.pid)["pool_connection"]


@needs_raw
def test_ordinary_http_and_tls_raise_nothing(nets, servers, spawn):
    web = servers(bind(lambda port: http.server.ThreadingHTTPServer(("127.0.0.1", port), OkHandler), 8080))
    silent = servers(QuietServer(("127.0.0.1", 0), SilentHandler))
    net = nets("network:\n  sniffer: on\n  extra_ports: []\n")
    before = net.value("minerwatch_network_sniffer_packets_total")
    browser = spawn.start("firefox", ["http", "127.0.0.1", web.port], script=NETCLIENT)
    tls = spawn.start("curl", ["tls", "127.0.0.1", silent.port, "www.example.org"], script=NETCLIENT)
    # the ClientHello went through the filter: the sniffer saw it, and let it be
    wait_for(lambda: net.value("minerwatch_network_sniffer_packets_total") > before, what="the ClientHello")
    time.sleep(0.5)
    ours = {str(browser.pid), str(tls.pid)}
    ports = {f"127.0.0.1:{web.port}", f"127.0.0.1:{silent.port}"}
    assert [s for s in net.info() if s["pid"] in ours or s["remote"] in ports] == []
    for proc in (browser, tls):
        assert "pool_connection" not in net.signals(proc.pid)


def drop_cap_net_raw():
    """In the child, before exec: take CAP_NET_RAW out of the bounding set (even root loses it)."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(24, 13, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_NET_RAW
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@needs_raw
def test_sniffer_sheds_load_instead_of_keeping_up():
    from minerwatch.network.sniffer import Sniffer

    # UDP datagrams from port 53 (what the filter passes as DNS answers): one send is one packet,
    # where TCP autocorking would merge small segments into a number of packets nobody can tell
    address = f"127.{os.getpid() % 200 + 50}.{os.getpid() % 250 + 1}.53"
    source = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        source.bind((address, 53))
    except OSError as exc:
        source.close()
        sink.close()
        pytest.skip(f"cannot bind {address}:53: {exc}")
    sink.bind((address, 0))  # never read: the sink's own buffer overflows too, which does not matter
    sniffer = Sniffer(lambda name: None, max_pps=50, max_flows=16)
    assert sniffer.start()
    try:
        start = time.monotonic()
        for i in range(20000):
            source.sendto(b"\x12\x34\x81\x80" + bytes(60), sink.getsockname())
        sent_in = time.monotonic() - start
        time.sleep(1.5)
        state = sniffer.snapshot()
        elapsed = time.monotonic() - start
        assert state.packets_total <= 50 * (elapsed + 1) + 50  # the budget held
        assert state.dropped_total > 0  # the rest was dropped by the kernel, and counted
        assert state.dns_responses["malformed"] == state.packets_total  # each was looked at, none trusted
        assert sent_in < 30  # the sender never waited for the sniffer (generous: shared, loaded CI hosts)
    finally:
        sniffer.stop()
        source.close()
        sink.close()


def test_sniffer_without_cap_net_raw_is_quietly_down(tmp_path):
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from minerwatch.network.sniffer import Sniffer\n"
        "s = Sniffer(lambda name: None)\n"
        "print(s.start(), s.up, s.error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], preexec_fn=drop_cap_net_raw, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False Operation not permitted"
    assert result.stderr == ""


def test_sniffer_on_without_a_packet_socket_is_a_start_up_error(tmp_path, monkeypatch):
    import minerwatch.network.sniffer as sniffer

    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(sniffer, "open_packet_socket", refuse)
    config = tmp_path / "minerwatch.yml"
    config.write_text("network:\n  resolve_max_names: 0\n  sniffer: on\n")
    context = build_context(Options(config_file=str(config)))
    with pytest.raises(ConfigError) as err:
        NetworkCollector(context, resolve=no_dns)
    assert str(err.value) == (
        f"{config}:3: network.sniffer: on, but no packet socket could be opened (Operation not permitted): "
        "it needs Linux and CAP_NET_RAW"
    )
    config.write_text("network:\n  resolve_max_names: 0\n")
    collector = NetworkCollector(build_context(Options(config_file=str(config))), resolve=no_dns)
    try:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        assert registry.get_sample_value("minerwatch_network_sniffer_up") == 0
    finally:
        collector.close()


def test_bad_ioc_file_stops_start_up_with_file_and_line(tmp_path):
    (tmp_path / "iocs.txt").write_text("198.51.100.7\n# ok\nfoo bar\n")
    config = tmp_path / "minerwatch.yml"
    config.write_text("network:\n  ioc_files: [iocs.txt]\n")
    context = build_context(Options(config_file=str(config)))
    with pytest.raises(ConfigError) as err:
        NetworkCollector(context, resolve=no_dns)
    assert str(err.value) == "iocs.txt:3: not a domain, IP, CIDR or host:port: 'foo bar'"


def test_a_changed_ioc_file_is_reloaded_and_a_bad_one_keeps_the_last_good_list(nets, tmp_path, pool, spawn):
    iocs = tmp_path / "iocs.txt"
    iocs.write_text(f"127.0.0.1:{pool.port}\n")
    net = nets(f"network:\n  ioc_files: [{iocs}]\n  sniffer: off\n")
    miner = spawn.start("helper", ["idle", "127.0.0.1", pool.port], script=NETCLIENT)
    [series] = wait_series(net, miner.pid, "the listed connection")
    assert series["evidence"] == "list"
    assert net.value("minerwatch_network_ioc_load_success") == 1
    # a copy from the file share arrives broken (a bad byte): the last good list stays in use
    iocs.write_bytes(f"127.0.0.1:{pool.port}\npool.ex\xffample.com\n".encode("latin-1"))
    [series] = wait_series(net, miner.pid, "the listed connection, still")
    assert series["evidence"] == "list"
    assert net.value("minerwatch_network_ioc_load_success") == 0
    assert net.value("minerwatch_network_ioc_load_failures_total") == 1
    assert net.collector.lists.error == f"{iocs}:2: not a domain, IP, CIDR or host:port: 'pool.ex\\xffample.com'"
    # the next good copy (renamed into place, as resolve-pools writes it) is the list in use
    fixed = tmp_path / "iocs.new"
    fixed.write_text("203.0.113.0/24\n")
    os.replace(fixed, iocs)
    wait_for(lambda: not [s for s in net.info() if s["pid"] == str(miner.pid) and s["evidence"] != "port"],
             what="the connection no longer listed")
    assert net.value("minerwatch_network_ioc_load_success") == 1
    assert net.value("minerwatch_network_pool_addresses", source="list") == 1


# -- exposition -----------------------------------------------------------------------------------


def test_exposition_passes_promtool(nets, tmp_path, pool, spawn, promtool):
    iocs = ioc_file(tmp_path, f"127.0.0.1:{pool.port}\n")
    net = nets(f"network:\n  ioc_files: [{iocs}]\n  sniffer: auto\n")
    miner = spawn.start("xmrig", ["-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET])
    wait_series(net, miner.pid, "the miner's connection")
    text = net.scrape()
    check_metrics(promtool, text)
    for name in (
        "minerwatch_network_pool_connections", "minerwatch_network_stratum_flows_total",
        "minerwatch_network_sni_matches_total", "minerwatch_network_pool_domains",
        "minerwatch_network_pool_addresses", "minerwatch_network_pool_list_refresh_timestamp_seconds",
        "minerwatch_network_pool_resolve_failures_total", "minerwatch_network_sniffer_up",
        "minerwatch_network_sniffer_packets_total", "minerwatch_network_sniffer_dropped_total",
        "minerwatch_network_dns_responses_total", "minerwatch_network_ioc_load_success",
        "minerwatch_network_ioc_load_failures_total", "minerwatch_network_ioc_load_timestamp_seconds",
    ):
        assert f"\n{name}" in text, name


def test_nothing_matching_is_an_explicit_zero(nets, promtool):
    net = nets("network:\n  sniffer: off\n  resolve_max_names: 0\n")
    text = net.scrape()
    assert "\nminerwatch_network_pool_connections 0.0\n" in text
    assert 'minerwatch_network_stratum_flows_total{dialect="cryptonote"} 0.0' in text
    assert "\nminerwatch_network_sniffer_up 0.0\n" in text
    check_metrics(promtool, text)
