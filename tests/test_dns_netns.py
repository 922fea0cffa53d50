"""Issue 13: a desk's exporter sends no DNS query of its own, and still sees a pool the desk looked up.

The "desk" is a network namespace whose resolv.conf names only a DNS responder this test runs
on the host end of the veth (198.18.x.1:53); the exporter runs there as a real `minerwatch
serve` with no configuration at all. Every query the responder gets is logged, so the count of
the exporter's queries is exact. The machine's own resolver is never involved.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from support.processes import wait_for
from support import netns
from support.dnsserver import DnsServer
from support.nettest import QuietServer, SilentHandler, answering, can_sniff, scrape

NETCLIENT = Path(__file__).resolve().parent / "support" / "netclient.py"
PORT = 9789  # the exporter's default: the namespace is fresh, nothing else listens there


pytestmark = [
    pytest.mark.skipif(bool(netns.available()), reason=f"no test namespace: {netns.available()}"),
    pytest.mark.skipif(not can_sniff(), reason="the sniffer needs CAP_NET_RAW"),
]


@pytest.fixture
def namespace(tmp_path):
    made = netns.Namespace(tmp_path)
    yield made
    made.close()


def test_default_exporter_sends_no_dns_and_attributes_the_hosts_own_pool_lookup(tmp_path, namespace):
    try:
        dns = DnsServer((namespace.host_ip, 53), {"pool.supportxmr.com": [("A", namespace.host_ip, 30)]}).start()
    except OSError as exc:
        pytest.skip(f"cannot serve DNS on {namespace.host_ip}:53: {exc}")
    pool = QuietServer((namespace.host_ip, 0), SilentHandler)
    threading.Thread(target=pool.serve_forever, daemon=True).start()
    log = open(tmp_path / "exporter.log", "w")
    try:
        namespace.use_resolver(namespace.host_ip)
        exporter = namespace.popen([sys.executable, "-m", "minerwatch", "serve"], stdout=log,
                                   stderr=subprocess.STDOUT)
        wait_for(lambda: exporter.poll() is not None or answering(namespace.ns_ip, PORT), timeout=30,
                 what="the exporter in the namespace")
        assert exporter.poll() is None, (tmp_path / "exporter.log").read_text()

        # scrapes start every collector's work (the old resolver started with the first one)
        for _ in range(3):
            samples = scrape(namespace.ns_ip, PORT)
            time.sleep(1)
        assert dns.queries == [], "the exporter asked DNS itself"
        assert samples["minerwatch_network_pool_resolve_names"] == [({}, 0.0)]
        assert samples["minerwatch_network_sniffer_up"] == [({}, 1.0)]

        # a program on the desk looks the pool up and connects to the answer
        exe = tmp_path / "bin" / "updater"
        exe.parent.mkdir()
        exe.symlink_to(sys.executable)
        client = namespace.popen([exe, NETCLIENT, "idle", "pool.supportxmr.com", pool.server_address[1]],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        remote = f"{namespace.host_ip}:{pool.server_address[1]}"

        def series():
            found = [labels for labels, _ in scrape(namespace.ns_ip, PORT).get("minerwatch_network_pool_connection_info", [])
                     if labels["remote"] == remote]
            assert client.poll() is None, "the client exited"
            return found

        [labels] = wait_for(series, timeout=20, what="the connection to the looked-up pool")
        assert labels == {"pid": str(client.pid), "name": "updater", "user": "root", "remote": remote,
                          "evidence": "dns_answer", "pool": "pool.supportxmr.com"}
        # the only query the DNS server ever got is the client's own look-up
        assert dns.queries == [(namespace.ns_ip, "pool.supportxmr.com", "A")]
        samples = scrape(namespace.ns_ip, PORT)
        assert samples["minerwatch_network_pool_addresses"][2] == ({"source": "dns_answers"}, 1.0)
        assert ({"result": "pool"}, 1.0) in samples["minerwatch_network_dns_responses_total"]
        signals = [labels for labels, _ in samples.get("minerwatch_process_signal", [])
                   if labels.get("pid") == str(client.pid)]
        # weak evidence: anyone who answers the desk's queries chooses it, so it is no signal alone
        assert "pool_connection" not in {s["signal"] for s in signals}
    finally:
        namespace.close()
        pool.shutdown()
        pool.server_close()
        dns.close()
        log.close()
