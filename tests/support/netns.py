"""A network namespace joined to this host by a veth pair, for tests that need a real interface.

Loopback hides two things a workstation has: packets leaving through an interface (the
sniffer sees them as outgoing) and sockets in another namespace (a container's, which the
host's socket table does not list). This builds the smallest such setup:

    host  mwv<id>a 198.18.<n>.1/30  <-- veth -->  mwv<id>b 198.18.<n>.2/30  namespace mwns<id>

198.18.0.0/15 is reserved for benchmarking (RFC 2544), so it reaches nothing real; the pair is
refused when the host already routes any of it. Everything is removed by `close()`; servers
started inside are processes stopped by their PID. Needs root and `ip` (iproute2).

`use_resolver(ip)` gives the namespace its own name-service files, which `ip netns exec`
bind-mounts over /etc: a resolv.conf naming only the test's DNS server, an nsswitch.conf that
asks /etc/hosts then DNS (never a machine daemon such as systemd-resolved), and a hosts file
with only localhost and this machine's own name. A look-up inside then never reaches the
machine's resolver.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List

SUPPORT = Path(__file__).resolve().parent
TEST_NET = ipaddress.ip_network("198.18.0.0/15")

# A Stratum pool stand-in bound to one address (the shipped one binds 127.0.0.1 only).
SERVER = """
import os, socketserver, sys
sys.path.insert(0, {support!r})
from pool import StratumHandler
class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
server = Server(({host!r}, 0), StratumHandler)
with open({port_file!r} + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.replace({port_file!r} + ".tmp", {port_file!r})
server.serve_forever()
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def available() -> str:
    """'' when a namespace can be made here, else why not."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs Linux and root"
    if not shutil.which("ip"):
        return "needs iproute2's ip"
    routes = _ip("-4", "route", "show", "table", "all", check=False).stdout.split()
    for word in routes:
        try:
            if ipaddress.ip_network(word, strict=False).overlaps(TEST_NET):
                return f"this host already routes {word}, which overlaps {TEST_NET}"
        except ValueError:
            continue
    return ""


class Namespace:
    def __init__(self, tmp: Path):
        ident = os.getpid() % 10000
        self.name = f"mwns{ident}"
        self.host_if, self.ns_if = f"mwv{ident}a", f"mwv{ident}b"
        third = ident % 250 + 1
        self.host_ip, self.ns_ip = f"198.18.{third}.1", f"198.18.{third}.2"
        self.tmp = tmp
        self.procs: List[subprocess.Popen] = []
        self.close(quiet=True)  # leftovers of a killed run
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        self.run("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        self.run("ip", "link", "set", self.ns_if, "up")
        self.run("ip", "link", "set", "lo", "up")

    @property
    def etc(self) -> Path:
        return Path("/etc/netns") / self.name

    def use_resolver(self, nameserver: str) -> None:
        """Processes started in the namespace from now on resolve names through `nameserver` only."""
        if ipaddress.ip_address(nameserver) not in TEST_NET:
            raise ValueError(f"{nameserver} is not a test-namespace address")
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "resolv.conf").write_text(f"nameserver {nameserver}\noptions timeout:1 attempts:1\n")
        (self.etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
        # a desk resolves its own name from its hosts file, as Debian's installer writes it
        (self.etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {socket.gethostname()}\n"
                                        "::1 localhost ip6-localhost\n")

    def run(self, *argv: str) -> None:
        _ip("netns", "exec", self.name, *argv)

    def popen(self, argv, **kwargs) -> subprocess.Popen:
        """A process inside the namespace (stopped by PID in close())."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *map(str, argv)], **kwargs)
        self.procs.append(proc)
        return proc

    def start_pool(self, host: str) -> int:
        """A Stratum stand-in on host:<free port> inside the namespace; returns the port."""
        port_file = self.tmp / f"nspool-{len(self.procs)}.port"
        code = SERVER.format(support=str(SUPPORT), host=host, port_file=str(port_file))
        self.popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if port_file.exists():
                return int(port_file.read_text())
            time.sleep(0.05)
        raise RuntimeError("the namespace's pool stand-in did not start")

    def close(self, quiet: bool = False) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()  # `ip netns exec` execs the command: this PID is the server's
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs = []
        _ip("link", "del", self.host_if, check=False)  # removes its peer too
        _ip("netns", "del", self.name, check=False)
        shutil.rmtree(self.etc, ignore_errors=True)
