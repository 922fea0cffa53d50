"""`minerwatch resolve-pools`: one central resolver writing the IOC file every desk reads.

Every query goes to a DNS responder this test starts on 127.0.0.1 (`--nameserver`), never to
the machine's resolver; the command runs as a real process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from minerwatch.network.pools import load_pool_list
from support.dnsserver import DnsServer

ZONE = {
    "pool.supportxmr.com": [("A", "198.51.100.7", 60), ("AAAA", "2001:db8::7", 60)],
    "gulf.moneroocean.stream": [("CNAME", "lb.moneroocean.stream", 60)],
    "lb.moneroocean.stream": [("A", "198.51.100.9", 60), ("A", "104.16.5.5", 60)],  # one behind a CDN
    "xmrpool.eu": [("A", "0.0.0.0", 60)],  # sinkholed upstream
    "pool.example.com": [("A", "203.0.113.5", 60)],
    "evil-pool.example.net": [("A", "203.0.113.6", 60)],
}
IOCS = "pool.example.com:5555\nevil-pool.example.net\n"


@pytest.fixture
def dns():
    server = DnsServer(("127.0.0.1", 0), ZONE).start()
    yield server
    server.close()


def resolve(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minerwatch.network.resolve", *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_writes_the_ioc_file_the_exporters_read(tmp_path, dns):
    (tmp_path / "iocs.txt").write_text(IOCS)
    out = tmp_path / "share" / "pool-addresses.txt"
    out.parent.mkdir()
    result = resolve("--output", out, "--ioc-file", tmp_path / "iocs.txt", "--nameserver", dns.nameserver,
                     "--timeout", "1", "--attempts", "1")
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# Mining-pool addresses written by `minerwatch resolve-pools`")
    assert lines[2].startswith("# written: 20") and lines[2].endswith(f"from name servers {dns.nameserver}")
    entries = [line for line in lines if not line.startswith("#")]
    assert entries == [
        "198.51.100.7  # pool.supportxmr.com",
        "198.51.100.9  # gulf.moneroocean.stream",
        "203.0.113.5:5555  # pool.example.com",  # a named endpoint keeps its port
        "203.0.113.6  # evil-pool.example.net",
        "2001:db8::7  # pool.supportxmr.com",
    ]
    assert "sinkhole and CDN answers left out: 2" in lines[3]
    # every name the exporter would resolve was asked here, A and AAAA, and nothing else was
    shipped = load_pool_list().resolve_names(10_000)
    asked = {name for _, name, _ in dns.queries}
    assert asked == set(shipped) | {"pool.example.com", "evil-pool.example.net"}
    assert {kind for _, _, kind in dns.queries} == {"A", "AAAA"}
    # the exporters read it as an ordinary IOC file
    pools = load_pool_list([(str(out), "pool-addresses.txt")])
    assert pools.match_address("198.51.100.9", 3333) == ("198.51.100.9", "pool-addresses.txt:6")
    assert pools.match_address("203.0.113.5", 5555) is not None
    assert pools.match_address("203.0.113.5", 80) is None
    assert pools.match_address("104.16.5.5", 3333) is None
    assert sorted(os.listdir(out.parent)) == ["pool-addresses.txt"]  # no temporary file left
    assert result.stdout.startswith(f"resolve-pools: 5 of {len(asked)} names answered in ")
    assert result.stdout.endswith(f"5 addresses written to {out} (2 sinkhole or CDN answers left out)\n")
    assert len(result.stderr.splitlines()) == len(asked) - 5  # one line per failed name


def test_the_file_is_replaced_whole_and_kept_when_dns_is_down(tmp_path, dns):
    out = tmp_path / "pool-addresses.txt"
    assert resolve("-o", out, "--nameserver", dns.nameserver, "--attempts", "1").returncode == 0
    first = out.stat().st_ino
    assert resolve("-o", out, "--nameserver", dns.nameserver, "--attempts", "1").returncode == 0
    assert out.stat().st_ino != first  # renamed into place, never written in place
    before = out.read_bytes()
    # a name server that never answers: every name fails, the last good file stays
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        result = resolve("-o", out, "--nameserver", f"127.0.0.1:{silent.getsockname()[1]}", "--timeout", "0.1",
                         "--attempts", "1", "--concurrency", "64")
    finally:
        silent.close()
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("minerwatch: error: no pool name resolved in ")
    assert result.stderr.splitlines()[-1].endswith(f"{out} left as it was")
    assert out.read_bytes() == before


def test_a_truncated_answer_is_asked_again_over_tcp(tmp_path):
    server = DnsServer(("127.0.0.1", 0), ZONE, truncate=True).start()
    try:
        out = tmp_path / "pool-addresses.txt"
        result = resolve("-o", out, "--nameserver", server.nameserver, "--max-names", "1")
        assert result.returncode == 0, result.stderr
        assert [q for q in server.queries if q[1] == "pool.supportxmr.com"] == [
            ("127.0.0.1", "pool.supportxmr.com", "A"), ("127.0.0.1", "pool.supportxmr.com", "A/tcp"),
            ("127.0.0.1", "pool.supportxmr.com", "AAAA"), ("127.0.0.1", "pool.supportxmr.com", "AAAA/tcp"),
        ]
        assert "198.51.100.7  # pool.supportxmr.com" in out.read_text()
    finally:
        server.close()


def test_bad_input_is_one_line_and_exit_2(tmp_path, dns):
    (tmp_path / "iocs.txt").write_bytes(b"good.example.com\npool.ex\xffample.com\n")
    out = tmp_path / "out.txt"
    result = resolve("-o", out, "--ioc-file", "iocs.txt", "--nameserver", dns.nameserver, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2, "minerwatch: error: iocs.txt:2: not a domain, IP, CIDR or host:port: 'pool.ex\\xffample.com'\n")
    result = resolve("-o", out, "--nameserver", "dns.example.com")
    assert result.returncode == 2
    assert result.stderr.startswith("minerwatch: error: Invalid value for '--nameserver': not an IP")
    assert len(result.stderr.splitlines()) == 1
    assert not out.exists() and dns.queries == []
