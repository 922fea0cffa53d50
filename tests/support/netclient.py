"""A client process for the network tests: speaks one protocol to 127.0.0.1 and holds the line.

    python netclient.py MODE HOST PORT [SERVER_NAME]

Its command line is clean on purpose (no stratum+tcp://, no miner flags): what gives it away
must be the traffic. Modes:
- `cryptonote`: XMRig's login (with an agent), then keepalived every second;
- `stratum1`: mining.subscribe and mining.authorize, then waits;
- `tls`: a TLS ClientHello with SERVER_NAME (the handshake may never finish; it waits);
- `http`: GET / (keep-alive), then waits;
- `idle`: connects and sends nothing.
With NETCLIENT_USER=name in its environment (and started as root), it first becomes that
user, as a process that user started would be. Talks only to loopback (127.0.0.0/8, ::1) and to
the network namespaces tests create (198.18.0.0/15, see netns.py); stopped by its PID.

HOST may be a name only inside a test namespace set up by `Namespace.use_resolver`: it is
looked up (through the C library, as any program would) only when /etc/resolv.conf names test
servers alone and nsswitch asks nothing but files and DNS, so the machine's resolver is never asked.
"""

from __future__ import annotations

import ctypes
import encodings.idna  # noqa: F401  (loaded before a user switch can make it unreadable)
import ipaddress
import json
import os
import pwd
import socket
import ssl
import sys
import time


def become(user: str) -> None:
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    # A uid change makes the process non-dumpable, which shows /proc/PID as root's; a process
    # the user started directly is dumpable (PR_SET_DUMPABLE = 4).
    ctypes.CDLL(None, use_errno=True).prctl(4, 1, 0, 0, 0)


TEST_NET = ipaddress.ip_network("198.18.0.0/15")


def lookup_in_test_namespace(name: str) -> str:
    """The first IPv4 address of `name`, refusing to look up anything outside a test namespace."""
    with open("/etc/resolv.conf") as f:
        servers = [line.split()[1] for line in f if line.startswith("nameserver") and len(line.split()) > 1]
    with open("/etc/nsswitch.conf") as f:
        hosts = next((line.split()[1:] for line in f if line.startswith("hosts:")), [])
    if not servers or any(ipaddress.ip_address(s) not in TEST_NET for s in servers) or hosts != ["files", "dns"]:
        raise SystemExit("netclient looks names up only in a test namespace with its own resolv.conf")
    return socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]


def main(argv) -> None:
    if os.environ.get("NETCLIENT_USER"):
        become(os.environ["NETCLIENT_USER"])
    mode, host, port = argv[0], argv[1], int(argv[2])
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = lookup_in_test_namespace(host)
    address = ipaddress.ip_address(host)
    if not (address.is_loopback or address in ipaddress.ip_network("198.18.0.0/15")):
        raise SystemExit("netclient talks only to loopback and test namespaces")
    sock = socket.create_connection((host, port), timeout=30)
    if mode == "cryptonote":
        login = {"id": 1, "jsonrpc": "2.0", "method": "login",
                 "params": {"login": "4" + "A" * 94, "pass": "x", "agent": "XMRig/6.21.0 (Linux x86_64) libuv/1.44"}}
        sock.sendall(json.dumps(login).encode() + b"\n")
    elif mode == "stratum1":
        sock.sendall(b'{"id": 1, "method": "mining.subscribe", "params": ["cgminer/4.10.0"]}\n')
        sock.recv(4096)
        sock.sendall(b'{"id": 2, "method": "mining.authorize", "params": ["worker1", "x"]}\n')
    elif mode == "http":
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n\r\n".encode())
    elif mode == "tls":
        sock.settimeout(None)
        context = ssl.create_default_context()
        try:  # the ClientHello goes out here; a silent server keeps it waiting
            context.wrap_socket(sock, server_hostname=argv[3])
        except (OSError, ssl.SSLError):
            pass
        time.sleep(600)
        return
    sock.settimeout(1.0)
    for i in range(600):
        try:
            if sock.recv(65536) == b"":
                break  # the server hung up
        except socket.timeout:
            pass
        if mode == "cryptonote":
            sock.sendall(json.dumps({"id": i + 2, "jsonrpc": "2.0", "method": "keepalived",
                                     "params": {"id": "standin"}}).encode() + b"\n")
    time.sleep(600)


if __name__ == "__main__":
    main(sys.argv[1:])
