"""Pool names and proxies on Windows without a packet driver: the DNS client's log (event 3008)
and the configured web proxies, through the network collector.

The Event Log, the registry and WinHTTP are the pywin32 / winreg fakes (checked against
types-pywin32 by test_windows_api.py); the connections are real ones on 127.0.0.0/8, read with
the real psutil as the Windows path reads them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import types

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from minerwatch.app import Options, build_context
from minerwatch.collectors.network import NetworkCollector
from minerwatch.network.sockets import PsutilSockets
from minerwatch.windows.dns_events import CHANNEL, parse_event, parse_results
from minerwatch.windows.proxy import parse_proxy_server
from support.fakes.win32 import FakeWindows, dns_event_xml, modules
from support.fakes.winreg import FakeRegistry
from support.processes import stop_pid, wait_for

POOL = "xmr.pool-w3.example"
USER_SID = "S-1-5-21-1111-2222-3333-1107"
INET = USER_SID + r"\Software\Microsoft\Windows\CurrentVersion\Internet Settings"


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".1234567Z"


class Listener:
    """A TCP listener on a loopback address, accepting and holding connections; stopped by close()."""

    def __init__(self, host: str):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


class Client:
    """A separate process holding one connection to host:port (the desk's miner, or a browser)."""

    def __init__(self, host: str, port: int):
        code = ("import socket,sys,time;s=socket.create_connection((sys.argv[1],int(sys.argv[2])));"
                "print('up',flush=True);time.sleep(60)")
        self.proc = subprocess.Popen([sys.executable, "-c", code, host, str(port)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "up"
        self.pid = self.proc.pid

    def stop(self):
        stop_pid(self.proc)
        self.proc.stdout.close()


class Desk:
    def __init__(self, tmp_path, port: int = 3333):
        (tmp_path / "iocs.txt").write_text(f"{POOL}:{port}\nsupportxmr-w3.example\n")
        config = tmp_path / "minerwatch.yml"
        config.write_text("network:\n  sniffer: off\n  ioc_files: [iocs.txt]\n")
        self.context = build_context(Options(config_file=str(config)))
        self.machine = FakeWindows()
        self.machine.channels[CHANNEL] = []
        self.registry_module = FakeRegistry()
        self.registry_module.create_key("HKU")
        win32 = types.SimpleNamespace(**modules(self.machine))
        self.collector = NetworkCollector(self.context, resolve=lambda name: [], sockets=PsutilSockets(),
                                          win32=win32, winreg=self.registry_module)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def log(self, xml: str):
        self.machine.channels[CHANNEL].append(xml)

    def samples(self, name: str):
        self.collector.monitor._last = float("-inf")
        text = generate_latest(self.registry).decode()
        return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]

    def value(self, name: str, **labels):
        found = [s.value for s in self.samples(name) if all(s.labels.get(k) == v for k, v in labels.items())]
        return found[0] if found else None

    def pool_info(self, pid: int):
        return [s.labels for s in self.samples("minerwatch_network_pool_connection_info") if s.labels["pid"] == str(pid)]


@pytest.fixture
def held():
    things = []
    yield things
    for thing in reversed(things):
        (thing.stop if hasattr(thing, "stop") else thing.close)()


def test_a_pool_name_in_a_3008_event_makes_the_asking_process_connection_to_its_address_a_pool_connection(
        tmp_path, held):
    listener = Listener("127.0.0.2")
    held.append(listener)
    desk = Desk(tmp_path, listener.port)
    miner = Client("127.0.0.2", listener.port)
    held.append(miner)
    desk.log(dns_event_xml(1, POOL, f"type:  5 {POOL};::ffff:127.0.0.2;", pid=miner.pid, time=stamp(time.time())))
    info = wait_for(lambda: desk.pool_info(miner.pid), what="the miner's pool connection")
    assert info[0]["evidence"].split(",")[0] == "dns"
    assert info[0]["pool"] == POOL and info[0]["remote"] == f"127.0.0.2:{listener.port}"
    assert desk.value("minerwatch_network_pool_connections") >= 1
    assert desk.value("minerwatch_network_dns_client_events_total", result="pool") == 1
    assert desk.value("minerwatch_network_pool_addresses", source="dns_client_log") == 1
    assert desk.value("minerwatch_network_source_up", source="dns_client_events") == 1
    assert desk.value("minerwatch_network_dns_client_log_enabled") == 1
    view = desk.context.processes.scan().by_pid().get(miner.pid)
    assert view is not None and "pool_connection" in view.signals


def test_another_process_connecting_to_the_answered_address_is_only_weak(tmp_path, held):
    listener = Listener("127.0.0.2")
    held.append(listener)
    desk = Desk(tmp_path, listener.port)
    other = Client("127.0.0.2", listener.port)
    held.append(other)
    desk.log(dns_event_xml(1, POOL, "::ffff:127.0.0.2;", pid=other.pid + 100000, time=stamp(time.time())))
    info = wait_for(lambda: desk.pool_info(other.pid), what="the weak match")
    assert info[0]["evidence"].split(",")[0] == "dns_answer"
    view = desk.context.processes.scan().by_pid().get(other.pid)
    assert view is None or "pool_connection" not in view.signals


def test_an_ordinary_name_answered_with_the_same_address_is_nothing(tmp_path, held):
    listener = Listener("127.0.0.2")
    held.append(listener)
    desk = Desk(tmp_path, listener.port)
    browser = Client("127.0.0.2", listener.port)
    held.append(browser)
    desk.log(dns_event_xml(1, "www.example.org", "::ffff:127.0.0.2;", pid=browser.pid, time=stamp(time.time())))
    assert desk.pool_info(browser.pid) == []
    assert desk.value("minerwatch_network_dns_client_events_total", result="other") == 1
    assert desk.value("minerwatch_network_pool_addresses", source="dns_client_log") == 0


def test_a_blocked_pool_asked_again_and_again_is_dns_query(tmp_path, held):
    desk = Desk(tmp_path)
    miner = Client(*_listening(held))
    now = time.time()
    for i, t in enumerate((now - 30, now - 20, now - 10)):  # NXDOMAIN from a DNS filter, three times
        desk.log(dns_event_xml(i + 1, POOL, "", status=9003, pid=miner.pid, time=stamp(t)))
    held.append(miner)
    info = wait_for(lambda: desk.pool_info(miner.pid), what="the look-ups")
    assert info[0]["evidence"] == "dns_query" and info[0]["remote"] == "dns_client_log"
    assert desk.value("minerwatch_network_dns_client_events_total", result="failed") == 3


def _listening(held):
    listener = Listener("127.0.0.4")
    held.append(listener)
    return "127.0.0.4", listener.port


def test_malformed_and_huge_events_are_counted_and_the_next_good_one_is_read(tmp_path, held):
    listener = Listener("127.0.0.2")
    held.append(listener)
    desk = Desk(tmp_path, listener.port)
    miner = Client("127.0.0.2", listener.port)
    held.append(miner)
    good = dns_event_xml(9, POOL, "::ffff:127.0.0.2;", pid=miner.pid, time=stamp(time.time()))
    bad = [
        good.replace("<EventRecordID>9</EventRecordID>", "<EventRecordID>1</EventRecordID>").replace("</Event>", ""),
        dns_event_xml(2, POOL, "::ffff:127.0.0.2;" * 200_000, pid=miner.pid),  # megabytes of answers
        dns_event_xml(3, "x" * 100_000 + "." + POOL, "::ffff:127.0.0.2;", pid=miner.pid),
        dns_event_xml(4, POOL, "type:  5 ;;;;type:\u202e 5 " + "\x01" * 50, pid=99999999999999),
        dns_event_xml(5, "\ud800\x00" + POOL, "not-an-address;999.1.1.1;", pid=miner.pid),
        dns_event_xml(6, POOL, "", status="x"),  # type: ignore[arg-type]
        "<!DOCTYPE e [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
        "<Event><System><EventID>3008</EventID><EventRecordID>7</EventRecordID></System><Data>&b;</Data></Event>",
        dns_event_xml(8, POOL, "::ffff:127.0.0.2;", pid=miner.pid).replace("3008", "3006", 1),
    ]
    for xml in bad:
        desk.log(xml)
    desk.log(good)
    info = wait_for(lambda: desk.pool_info(miner.pid), what="the good event's match")
    assert info[0]["evidence"].split(",")[0] == "dns"
    malformed = desk.value("minerwatch_network_dns_client_events_total", result="malformed")
    assert malformed >= 4
    assert desk.value("minerwatch_network_source_up", source="dns_client_events") == 1
    for sample in desk.samples("minerwatch_network_pool_connection_info"):
        assert len(sample.labels["pool"]) <= 253 and "\x01" not in str(sample.labels)


def test_ten_thousand_events_are_read_in_bounded_scrapes(tmp_path):
    desk = Desk(tmp_path)
    now = stamp(time.time())
    for i in range(10_000):
        desk.log(dns_event_xml(i + 1, f"host{i}.ministry.example", "::ffff:10.1.2.3;", pid=4000 + i, time=now))
    first = desk.value("minerwatch_network_dns_client_events_total", result="other")
    assert 0 < first < 10_000  # a bounded share each scrape
    total = wait_for(lambda: (lambda v: v if v == 10_000 else None)(
        desk.value("minerwatch_network_dns_client_events_total", result="other")), what="all events read")
    assert total == 10_000


def test_a_disabled_channel_a_missing_one_and_a_denied_query_do_not_fail_the_scrape(tmp_path):
    desk = Desk(tmp_path)
    desk.machine.disabled_channels.add(CHANNEL)
    assert desk.value("minerwatch_network_dns_client_log_enabled") == 0
    desk.machine.denied.update({"EvtQuery", "EvtOpenChannelConfig"})
    assert desk.value("minerwatch_network_source_up", source="dns_client_events") == 0
    assert desk.value("minerwatch_network_source_up", source="dns_client_channel") == 0
    assert desk.value("minerwatch_network_pool_domains") >= 1  # the rest of the scrape is there
    desk.machine.denied.clear()
    del desk.machine.channels[CHANNEL]  # no DNS client log on this Windows
    assert desk.value("minerwatch_network_source_up", source="dns_client_events") == 1
    assert desk.value("minerwatch_network_dns_client_log_enabled") == 0


def test_a_connection_to_the_configured_proxy_is_reported_as_such(tmp_path, held):
    listener = Listener("127.0.0.3")
    held.append(listener)
    desk = Desk(tmp_path)
    desk.registry_module.set_value("HKU\\" + INET, "ProxyEnable", 1)
    desk.registry_module.set_value("HKU\\" + INET, "ProxyServer",
                                   f"http=carol:s3cret@127.0.0.3:{listener.port};https=127.0.0.3:{listener.port}",
                                   type=FakeRegistry.REG_SZ)
    desk.machine.winhttp_proxy = (3, "proxy.ministry.example:3128", "<local>")
    app = Client("127.0.0.3", listener.port)
    held.append(app)
    shown = f"127.0.0.3:{listener.port}"
    assert wait_for(lambda: desk.value("minerwatch_network_proxy_connections", proxy=shown), what="the count") == 1
    assert desk.value("minerwatch_network_proxy_processes", proxy=shown) == 1
    assert desk.value("minerwatch_network_proxy_info", source="wininet", proxy=shown) == 1
    assert desk.value("minerwatch_network_proxy_info", source="winhttp", proxy="proxy.ministry.example:3128") == 1
    text = generate_latest(desk.registry).decode()
    assert "s3cret" not in text and "carol" not in text
    assert desk.value("minerwatch_network_source_up", source="proxy_wininet") == 1
    readme_rows_match(text)


def readme_rows_match(text: str) -> None:
    """The README's rows of the network collector's Windows-only families name their type and
    labels as this desk exposes them (the Windows end-to-end desks run no network collector)."""
    from test_golden import readme_rows

    rows = readme_rows()
    seen = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = seen.setdefault(name, (family.type, set()))[1]
        for sample in family.samples:
            labels.update(sample.labels)
    windows_only = [n for n, cells in rows.items() if n.startswith("minerwatch_network_") and "Windows only" in cells[-1]]
    assert windows_only
    for name in windows_only:
        assert name in seen, f"{name}: a README row, not exposed on the Windows desk"
        kind, labels = seen[name]
        written = {label.strip(" `") for label in rows[name][2].split(",") if label.strip(" `")}
        assert (rows[name][1], written) == (kind, labels), name


def test_an_access_denied_profile_key_and_a_failing_winhttp_do_not_fail_the_scrape(tmp_path):
    desk = Desk(tmp_path)
    other = r"S-1-5-21-1111-2222-3333-1108\Software\Microsoft\Windows\CurrentVersion\Internet Settings"
    desk.registry_module.set_value("HKU\\" + INET, "ProxyEnable", 1)
    desk.registry_module.set_value("HKU\\" + INET, "ProxyServer", "10.20.30.40:8080", type=FakeRegistry.REG_SZ)
    desk.registry_module.set_value("HKU\\" + other, "ProxyEnable", 1)
    desk.registry_module.deny("HKU\\" + other)
    desk.machine.denied.add("WinHttpGetDefaultProxyConfiguration")
    assert desk.value("minerwatch_network_source_up", source="proxy_wininet") == 0
    assert desk.value("minerwatch_network_source_up", source="proxy_winhttp") == 0
    assert desk.value("minerwatch_network_proxy_info", source="wininet", proxy="10.20.30.40:8080") == 1
    desk.registry_module.deny("HKU")
    assert desk.value("minerwatch_network_source_up", source="proxy_wininet") == 0
    assert desk.value("minerwatch_network_pool_domains") >= 1


def test_parsers_take_hostile_text_without_raising():
    assert parse_results(f"type:  5 {POOL};::ffff:198.51.100.7;2001:db8::1;junk;") == (
        (POOL,), ("198.51.100.7", "2001:db8::1"))
    assert len(parse_results("1.2.3.4;" * 100_000)[1]) <= 32
    assert parse_event("") is None and parse_event("<a>") is None and parse_event(None) is None  # type: ignore
    assert parse_proxy_server("http=u:p@10.0.0.1:8080;https=[2001:db8::5]:443;socks=10.0.0.2") == [
        ("10.0.0.1", 8080), ("2001:db8::5", 443), ("10.0.0.2", 1080)]
    assert parse_proxy_server("x" * 10_000 + ":99999;" + ";" * 10_000) == []
    assert len(parse_proxy_server(";".join(f"10.0.0.{i}:80" for i in range(200)))) == 8
