"""Issue 14: a process that keeps asking DNS for a pool endpoint is named, even though it never connects.

The "desk" is a test network namespace (support/netns.py) whose resolv.conf names only a DNS
responder on the host end of the veth. The responder plays a DNS filter that blocks pools: it
answers a pool name with the sinkhole 0.0.0.0, about 50 ms later (a filtering service in the
cloud), so the miner has nothing to connect to. The exporter is a real `minerwatch serve` inside
the namespace; the askers are real processes resolving through the C library. The machine's own
resolver is never involved.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from support import netns
from support.dnsserver import DnsServer
from support.nettest import answering, can_sniff, scrape
from support.processes import wait_for

PORT = 9789  # the exporter's default: the namespace is fresh, nothing else listens there

# Looks a name up through the C library, `times` times a second apart, then waits to be stopped.
ASKER = """
import ipaddress, socket, sys, time
servers = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")]
assert servers and all(ipaddress.ip_address(s) in ipaddress.ip_network("198.18.0.0/15") for s in servers)
name, times = sys.argv[1], int(sys.argv[2])
for _ in range(times):
    try:
        socket.getaddrinfo(name, 3333, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        pass
    time.sleep(1)
time.sleep(600)
"""


pytestmark = [
    pytest.mark.skipif(bool(netns.available()), reason=f"no test namespace: {netns.available()}"),
    pytest.mark.skipif(not can_sniff(), reason="the sniffer needs CAP_NET_RAW"),
]


class FilteringDns(DnsServer):
    """The test responder, answering each query 50 ms after it came (a resolver across a WAN)."""

    def log(self, *args, **kwargs) -> None:
        super().log(*args, **kwargs)
        time.sleep(0.05)


def test_repeated_pool_lookups_name_the_process_and_ordinary_ones_do_not(tmp_path):
    namespace = netns.Namespace(tmp_path)
    dns = None
    log = open(tmp_path / "exporter.log", "w")
    try:
        try:
            dns = FilteringDns((namespace.host_ip, 53), {
                "pool.supportxmr.com": [("A", "0.0.0.0", 30)],  # blocked by the DNS filter
                "www.example.org": [("A", namespace.host_ip, 30)],
            }).start()
        except OSError as exc:
            pytest.skip(f"cannot serve DNS on {namespace.host_ip}:53: {exc}")
        namespace.use_resolver(namespace.host_ip)
        exporter = namespace.popen([sys.executable, "-m", "minerwatch", "serve"], stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: exporter.poll() is not None or answering(namespace.ns_ip, PORT), timeout=30,
                 what="the exporter in the namespace")
        assert exporter.poll() is None, (tmp_path / "exporter.log").read_text()

        def asker(name: str, host: str, times: int) -> subprocess.Popen:
            exe = tmp_path / name
            exe.symlink_to(sys.executable)
            return namespace.popen([exe, "-c", ASKER, host, times], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)

        miner = asker("svchost", "pool.supportxmr.com", 600)  # a miner retrying its blocked pool
        once = asker("nslookup", "pool.supportxmr.com", 1)  # an administrator checking the name
        browser = asker("firefox", "www.example.org", 600)
        askers = {str(p.pid): p for p in (miner, once, browser)}

        def series():
            found = {labels["pid"]: labels for labels, _ in
                     scrape(namespace.ns_ip, PORT).get("minerwatch_network_pool_connection_info", [])
                     if labels["pid"] in askers}
            assert all(p.poll() is None for p in askers.values()), "an asker exited"
            return found if found.get(str(miner.pid), {}).get("evidence") == "dns_query" else None

        found = wait_for(series, timeout=40, interval=0.5, what="the miner's repeated look-ups")
        assert found[str(miner.pid)] == {"pid": str(miner.pid), "name": "svchost", "user": "root",
                                         "remote": f"{namespace.host_ip}:53", "evidence": "dns_query",
                                         "pool": "pool.supportxmr.com"}
        # one look-up is one race against the stub resolver closing its socket: when it was won,
        # the process is shown, as weak evidence
        if str(once.pid) in found:
            assert (found[str(once.pid)]["name"], found[str(once.pid)]["evidence"]) == ("nslookup", "lookup")
        assert str(browser.pid) not in found  # an ordinary name is nothing

        samples = scrape(namespace.ns_ip, PORT)
        signals = {(labels["pid"], labels["signal"]) for labels, _ in samples.get("minerwatch_process_signal", [])}
        assert (str(miner.pid), "pool_connection") in signals
        assert (str(once.pid), "pool_connection") not in signals  # a single look-up is weak
        queries = dict((labels["result"], value) for labels, value in samples["minerwatch_network_dns_queries_total"])
        assert queries["pool"] >= 3 and queries["other"] >= 1
        owners = dict((labels["result"], value) for labels, value in samples["minerwatch_network_dns_query_owners_total"])
        assert owners["found"] >= 2
        print("owner searches:", owners)
        assert samples["minerwatch_network_pool_resolve_names"] == [({}, 0.0)]  # the exporter itself asked nothing
        assert {name for _, name, _ in dns.queries} == {"pool.supportxmr.com", "www.example.org"}
    finally:
        namespace.close()
        if dns is not None:
            dns.close()
        log.close()
