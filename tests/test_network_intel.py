"""Pool lists (shipped and IOC files), the resolver thread and the `network:` config section."""

from __future__ import annotations

import threading
import time

import pytest

from minerwatch import config as config_module
from minerwatch.config import ConfigError
from minerwatch.network.pools import (
    SHIPPED_POOLS,
    SHIPPED_PORTS,
    PoolList,
    PoolListLoader,
    PoolResolver,
    load_pool_list,
    parse_indicators,
    parse_ports,
    usable_address,
)
from minerwatch.detection.signatures import POOL_DOMAINS

IOCS = """\
# pools seen in incident 2024-17
evil-pool.example.net          # a domain: it and its subdomains
*.wild.example.org
198.51.100.7
203.0.113.0/24
2001:db8:77::/48
198.51.100.9:3333
[2001:db8::9]:14444
pool.example.com:5555
stratum+tcp://xmr.example.io:7777
stratum+ssl://198.51.100.10:443/
0.0.0.0 coin-hive.example.com miner.example.com   # hosts-file line, as CoinBlockerLists ships
127.0.0.1 localhost
!exchange.example.net
"""


def test_ioc_file_kinds():
    ind = parse_indicators(IOCS.splitlines(), "iocs.txt")
    assert ind.domains == {
        "evil-pool.example.net": "iocs.txt:2", "wild.example.org": "iocs.txt:3",
        "coin-hive.example.com": "iocs.txt:12", "miner.example.com": "iocs.txt:12",
    }
    assert ind.addresses == {"198.51.100.7": "iocs.txt:4"}
    assert [text for _, text, _ in ind.networks] == ["203.0.113.0/24", "2001:db8:77::/48"]
    assert ind.endpoints == {
        ("198.51.100.9", 3333): "iocs.txt:7", ("2001:db8::9", 14444): "iocs.txt:8",
        ("pool.example.com", 5555): "iocs.txt:9", ("xmr.example.io", 7777): "iocs.txt:10",
        ("198.51.100.10", 443): "iocs.txt:11",
    }
    assert ind.excluded == {"exchange.example.net": "iocs.txt:14"}
    assert ind.stratum == ["pool.example.com", "xmr.example.io"]  # named endpoints are resolved


@pytest.mark.parametrize(
    "text, message",
    [
        ("good.example.com\n# fine\nfoo bar\n", "iocs.txt:3: not a domain, IP, CIDR or host:port: 'foo bar'"),
        ("300.1.2.3\n", "iocs.txt:1: not a domain, IP, CIDR or host:port: '300.1.2.3'"),
        ("example.com:99999\n", "iocs.txt:1: not a domain, IP, CIDR or host:port: 'example.com:99999'"),
        ("10.0.0.0/33\n", "iocs.txt:1: not a domain, IP, CIDR or host:port: '10.0.0.0/33'"),
        ("\n\n0.0.0.0 ok.example.com bad_name!\n", "iocs.txt:3: not a domain in a hosts-file line: 'bad_name!'"),
        ("198.51.100.7 stratum\n", "iocs.txt:1: not a domain in a hosts-file line: 'stratum'"),
        ("localhost\n", "iocs.txt:1: not a domain, IP, CIDR or host:port: 'localhost'"),
    ],
)
def test_bad_ioc_lines_name_file_and_line(text, message):
    with pytest.raises(ConfigError) as err:
        parse_indicators(text.splitlines(), "iocs.txt")
    assert str(err.value) == message


def test_domain_match_is_by_suffix_and_the_longest_entry_decides():
    ind = parse_indicators(["example-pool.com", "!www.example-pool.com", "!exchange.example",
                            "pool.exchange.example"], "t")
    pools = PoolList(ind)
    assert pools.match_domain("example-pool.com") == "example-pool.com"
    assert pools.match_domain("Eu1.Example-Pool.com.") == "example-pool.com"
    assert pools.match_domain("www.example-pool.com") is None
    assert pools.match_domain("notexample-pool.com") is None
    assert pools.match_domain("exchange.example") is None
    assert pools.match_domain("eu.pool.exchange.example") == "pool.exchange.example"


def test_address_match():
    pools = PoolList(parse_indicators(IOCS.splitlines(), "iocs.txt"))
    assert pools.match_address("198.51.100.7", 1) == ("198.51.100.7", "iocs.txt:4")
    assert pools.match_address("203.0.113.200", 80) == ("203.0.113.0/24", "iocs.txt:5")
    assert pools.match_address("2001:db8:77::5", 80) == ("2001:db8:77::/48", "iocs.txt:6")
    assert pools.match_address("198.51.100.9", 3333) == ("198.51.100.9:3333", "iocs.txt:7")
    assert pools.match_address("198.51.100.9", 3334) is None
    assert pools.match_address("2001:db8::9", 14444) == ("[2001:db8::9]:14444", "iocs.txt:8")
    assert pools.name_ports == {"pool.example.com": {5555}, "xmr.example.io": {7777}}


def test_shipped_lists_load_and_cover_the_signature_catalogue():
    pools = load_pool_list()
    assert pools.match_domain("eu.supportxmr.com") == "supportxmr.com"
    assert pools.match_domain("pool.supportxmr.com") == "pool.supportxmr.com"  # the longest entry
    assert pools.match_domain("donate.v2.xmrig.com") == "donate.v2.xmrig.com"
    assert pools.match_domain("www.binance.com") is None  # an exchange, never a pool
    assert pools.match_domain("xmrig.com") is None  # the project's site, not its donation pool
    # the command-line signatures read the same list: one catalogue of pool domains
    assert set(POOL_DOMAINS) == set(pools.indicators.domains)
    assert {3333, 14444, 45700}.issubset(pools.ports)
    assert not {80, 443, 8080, 8888}.intersection(pools.ports)  # every browser would match
    # only Stratum endpoints are resolved, never the pools' web sites
    names = pools.resolve_names(1000)
    assert "pool.supportxmr.com" in names and "supportxmr.com" not in names
    assert 10 < len(names) < 100


def test_shipped_files_parse_strictly():
    with open(SHIPPED_POOLS) as f:
        parse_indicators(f, "pools.txt")
    with open(SHIPPED_PORTS) as f:
        parse_ports(f, "pool_ports.txt")


def test_bad_bytes_and_control_characters_in_a_list_are_shown_escaped(tmp_path):
    path = tmp_path / "iocs.txt"
    path.write_bytes(b"# caf\xe9 comments may hold anything\ngood.example.com\npool.ex\xffample.com\n")
    with pytest.raises(ConfigError) as err:
        load_pool_list([(str(path), "iocs.txt")])
    assert str(err.value) == "iocs.txt:3: not a domain, IP, CIDR or host:port: 'pool.ex\\xffample.com'"
    path.write_bytes(b"0.0.0.0 ok.example.com evil\x1b[2J\xe2\x80\xae.example.com\n")
    with pytest.raises(ConfigError) as err:
        load_pool_list([(str(path), "iocs.txt")])
    assert str(err.value) == "iocs.txt:1: not a domain in a hosts-file line: 'evil\\x1b[2J\\u202e.example.com'"
    path.write_bytes(b"x" * 100000 + b" y\n")
    with pytest.raises(ConfigError) as err:
        load_pool_list([(str(path), "iocs.txt")])
    assert len(str(err.value)) < 200  # a megabyte line is not a megabyte message


def test_the_loader_reloads_changed_files_and_keeps_the_last_good_list(tmp_path):
    path = tmp_path / "iocs.txt"
    path.write_text("198.51.100.7\n")
    loader = PoolListLoader([(str(path), "iocs.txt")], clock=lambda: 42.0)
    first = loader.pools
    assert loader.refresh() is False and loader.pools is first  # unchanged: nothing read
    path.write_text("198.51.100.7\n198.51.100.8\n")
    assert loader.refresh() is True
    assert loader.pools.match_address("198.51.100.8", 1) == ("198.51.100.8", "iocs.txt:2")
    good = loader.pools
    path.write_text("198.51.100.7\nnot a line\n")
    assert loader.refresh() is False and loader.pools is good
    assert (loader.success, loader.failures_total) == (False, 1)
    assert loader.error == "iocs.txt:2: not a domain, IP, CIDR or host:port: 'not a line'"
    assert loader.refresh() is False and loader.failures_total == 1  # the same bad file: not counted again
    path.unlink()  # the share is gone for a moment
    assert loader.refresh() is False and loader.failures_total == 2 and loader.pools is good
    path.write_text("203.0.113.9\n")
    assert loader.refresh() is True and loader.success
    assert loader.pools.match_address("203.0.113.9", 1) and not loader.pools.match_address("198.51.100.7", 1)


def test_port_list_errors():
    assert parse_ports(["3333-3335", "# c", "14444  # x"], "p") == {3333, 3334, 3335, 14444}
    for bad in ("0", "70000", "5-3", "http"):
        with pytest.raises(ConfigError, match=rf"^p:1: not a port or port range: '{bad}'$"):
            parse_ports([bad], "p")


def test_user_lists_resolve_up_to_the_cap_shipped_stratum_names_first(tmp_path):
    iocs = tmp_path / "big.txt"
    iocs.write_text("".join(f"0.0.0.0 host{i}.coinlist.example\n" for i in range(5000)))
    pools = load_pool_list([(str(iocs), "big.txt")])
    assert pools.domain_count > 5000
    names = pools.resolve_names(100)
    assert len(names) == 100 and names[0] == "pool.supportxmr.com"


# -- resolver -------------------------------------------------------------------------------------


class FakeDNS:
    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, name):
        self.calls.append(name)
        answer = self.answers[name]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_resolver_maps_addresses_to_names_and_drops_sinkholes_and_cdns():
    dns = FakeDNS({
        "pool.example.com": ["198.51.100.7", "2001:db8::7"],
        "blocked.example.com": ["0.0.0.0", "127.0.0.1", "::"],
        "cdn.example.com": ["104.16.1.1", "2606:4700::1"],
        "gone.example.com": OSError("Name or service not known"),
    })
    resolver = PoolResolver(list(dns.answers), dns, clock=lambda: 1234.0)
    resolver.refresh()
    assert resolver.names_for("198.51.100.7") == ("pool.example.com",)
    assert resolver.names_for("2001:db8::7") == ("pool.example.com",)
    assert resolver.address_count == 2
    assert resolver.failures_total == 1 and resolver.shared_ignored == 5
    assert resolver.last_refresh == 1234.0 and resolver.generation == 1
    resolver.refresh()
    assert resolver.generation == 1  # nothing changed
    assert usable_address("::ffff:198.51.100.7") == "198.51.100.7"


def test_a_name_that_fails_keeps_its_last_addresses():
    dns = FakeDNS({"pool.example.com": ["198.51.100.7"]})
    resolver = PoolResolver(["pool.example.com"], dns)
    resolver.refresh()
    dns.answers["pool.example.com"] = OSError("temporary failure")
    resolver.refresh()
    assert resolver.names_for("198.51.100.7") == ("pool.example.com",)
    assert resolver.failures_total == 1


def test_a_hanging_resolver_is_bounded_by_the_timeout():
    release = threading.Event()

    def hang(name):
        if name.startswith("slow"):
            release.wait(30)
            return ["198.51.100.1"]
        return ["198.51.100.2"]

    before = threading.active_count()
    # fewer hanging names than workers: the others still resolve
    resolver = PoolResolver(["slow1.example.com", "fast.example.com", "slow2.example.com"], hang,
                            timeout=0.2, workers=4)
    resolver.refresh()
    assert resolver.failures_total == 2
    assert resolver.names_for("198.51.100.2") == ("fast.example.com",)
    # every worker hung: each name costs at most the timeout, and no thread more is started
    names = [f"slow{i}.example.com" for i in range(20)]
    resolver = PoolResolver(names, hang, timeout=0.05, workers=2)
    start = time.monotonic()
    resolver.refresh()
    took = time.monotonic() - start
    assert threading.active_count() <= before + 4 + 2
    release.set()
    resolver.stop()
    assert took < 20 * 0.05 + 1.0
    assert resolver.failures_total == 20


def test_resolver_thread_runs_in_the_background_and_stops():
    dns = FakeDNS({"pool.example.com": ["198.51.100.7"]})
    resolver = PoolResolver(["pool.example.com"], dns, interval=0.05)
    resolver.start()
    deadline = time.monotonic() + 5
    while len(dns.calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    resolver.stop()
    assert len(dns.calls) >= 3
    assert not resolver._thread.is_alive()


# -- config section -------------------------------------------------------------------------------


def load(tmp_path, text):
    path = tmp_path / "minerwatch.yml"
    path.write_text(text)
    return config_module.load(str(path))


def test_config_section(tmp_path):
    (tmp_path / "iocs.txt").write_text("198.51.100.7\n")
    settings = load(tmp_path, """\
network:
  ioc_files: [iocs.txt]
  exclude_domains: [nicehash.com]
  extra_ports: [8080, 18080]
  resolve_interval_seconds: 300
  resolve_timeout_seconds: 1.5
  resolve_max_names: 50
  sniffer: off
""").network
    assert settings.ioc_files == ((str(tmp_path / "iocs.txt"), "iocs.txt"),)
    assert settings.exclude_domains == ("nicehash.com",)
    assert settings.extra_ports == (8080, 18080)
    assert (settings.resolve_interval_seconds, settings.resolve_timeout_seconds) == (300.0, 1.5)
    assert (settings.resolve_max_names, settings.sniffer) == (50, "off")
    assert load(tmp_path, "network:\n").network.sniffer == "auto"
    # issue 13: no desk looks pool names up unless told to (resolve centrally, or learn passively)
    assert load(tmp_path, "network:\n").network.resolve_max_names == 0
    assert load(tmp_path, "process: {top_k: 3}\n").network.resolve_max_names == 0
    assert load(tmp_path, "network:\n  sniffer: auto\n").network.sniffer == "auto"
    assert load(tmp_path, "network:\n  sniffer: on\n").network.sniffer == "on"


@pytest.mark.parametrize(
    "text, message",
    [
        ("network:\n  ioc_file: [a]\n", "minerwatch.yml:2: network.ioc_file: unknown key (known: "),
        ("network:\n  ioc_files: [missing.txt]\n",
         "minerwatch.yml:2: network.ioc_files[0]: cannot read IOC file missing.txt"),
        ("network:\n  extra_ports: [3333, 70000]\n",
         "minerwatch.yml:2: network.extra_ports[1]: must be a port number from 1 to 65535"),
        ("network:\n  extra_ports: [http]\n", "minerwatch.yml:2: network.extra_ports[0]: must be an integer >= 1"),
        ("network:\n\n  sniffer: sometimes\n", "minerwatch.yml:3: network.sniffer: must be auto, on or off"),
        ("network:\n  resolve_interval_seconds: 1\n",
         "minerwatch.yml:2: network.resolve_interval_seconds: must be a number >= 10"),
        ("network:\n  exclude_domains: ['not a domain']\n",
         "minerwatch.yml:2: network.exclude_domains[0]: must be a domain such as example.com"),
        ("network: [1]\n", "minerwatch.yml:1: network: must be a mapping"),
    ],
)
def test_config_errors_name_file_line_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert str(err.value).startswith(f"{tmp_path}/{message}")


def test_the_monitor_checks_each_remote_endpoint_against_the_list_once(tmp_path):
    """The same connections come back scrape after scrape: the list (a CIDR scan for networks) is
    asked once per remote endpoint while it is the same list, and again after a reload."""
    from minerwatch.network.monitor import PoolMonitor
    from minerwatch.network.sockets import Conn, Endpoint

    class Counting(PoolList):
        asked = 0

        def match_address(self, ip, port):
            Counting.asked += 1
            return super().match_address(ip, port)

    ioc = tmp_path / "iocs.txt"
    ioc.write_text(IOCS)
    base = load_pool_list([(str(ioc), "iocs.txt")])
    pools = Counting(base.indicators, base.ports, base.resolvable)
    conns = [Conn(Endpoint("10.0.0.2", 40000 + i), Endpoint("203.0.113.5" if i == 0 else f"192.0.2.{i}", 443),
                  "established") for i in range(20)]

    class Table:
        def connections(self):
            return list(conns)

        def attribute(self, matched):
            pass

    monitor = PoolMonitor(pools, PoolResolver([]), Table(), min_interval=0)
    for _ in range(3):
        matches = monitor.update(force=True)
        assert [m.conn.remote.ip for m in matches if m.strong] == ["203.0.113.5"]  # in 203.0.113.0/24
    assert Counting.asked == len(conns)
    monitor.pools = Counting(base.indicators, base.ports, base.resolvable)  # a reload: a new list
    monitor.update(force=True)
    assert Counting.asked == 2 * len(conns)


def test_the_static_evidence_shortcut_gives_what_the_full_check_gives(tmp_path):
    """With nothing sniffed, learned or resolved, a connection's evidence comes from a cache per
    remote endpoint: the same list as the full check, in the same order."""
    from minerwatch.network.monitor import PoolMonitor
    from minerwatch.network.sockets import Conn, Endpoint

    ioc = tmp_path / "iocs.txt"
    ioc.write_text(IOCS)
    pools = load_pool_list([(str(ioc), "iocs.txt")])
    monitor = PoolMonitor(pools, PoolResolver([]), None, min_interval=0)
    remotes = [("198.51.100.7", 3333), ("198.51.100.7", 443), ("203.0.113.9", 14444), ("192.0.2.1", 3333),
               ("192.0.2.1", 443), ("198.51.100.9", 3333), ("2001:db8:77::5", 5555), ("2001:db8::9", 14444)]
    checked = 0
    for ip, port in remotes:
        conn = Conn(Endpoint("10.0.0.2", 40000), Endpoint(ip, port), "established")
        full = monitor._evidence(conn, {}, {}, {})
        assert list(monitor._static_evidence(conn.remote)) == full, (ip, port)
        checked += bool(full)
    assert checked >= 5  # the cases above do carry evidence: list, port, or both
