"""A relay stand-in for the network tests: SOCKS5, SOCKS4a and HTTP CONNECT on 127.0.0.1.

    python socks_relay.py PORT_FILE TARGET        (TARGET: PORT, or HOST:PORT with HOST in 127.0.0.0/8)

It listens on 127.0.0.1 (a free port, written to PORT_FILE once it listens), answers each
client's SOCKS5 (no authentication), SOCKS4/4a or `CONNECT host:port HTTP/1.1` request with
success, and joins the client to TARGET (127.0.0.1 by default) whatever host the request names: it never
resolves a name and reaches nothing but loopback, as a miner's own relay on a VPS would reach
its pool. A test stops it by its PID.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import socketserver
import sys
import threading
from typing import Tuple


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client left")
        data += chunk
    return data


def _read_until(sock: socket.socket, end: bytes, limit: int = 1024) -> bytes:
    data = b""
    while not data.endswith(end):
        data += _read(sock, 1)
        if len(data) > limit:
            raise ConnectionError("request too long")
    return data


def handshake(sock: socket.socket) -> None:
    """Read one relay request and answer it with success; the bytes after it are the tunnel's."""
    first = _read(sock, 1)
    if first == b"\x05":  # SOCKS5: greeting, then the request
        _read(sock, _read(sock, 1)[0])
        sock.sendall(b"\x05\x00")
        _, command, _, kind = _read(sock, 4)
        if kind == 1:
            _read(sock, 4)
        elif kind == 4:
            _read(sock, 16)
        else:
            _read(sock, _read(sock, 1)[0])
        _read(sock, 2)
        sock.sendall(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
    elif first == b"\x04":  # SOCKS4 / 4a: command, port, address, user id, [name]
        head = _read(sock, 7)
        _read_until(sock, b"\x00")
        if head[3:6] == b"\x00\x00\x00" and head[6]:
            _read_until(sock, b"\x00")
        sock.sendall(b"\x00\x5a" + b"\x00" * 6)
    elif first == b"C":  # HTTP CONNECT
        _read_until(sock, b"\r\n\r\n", 4096)
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    else:
        raise ConnectionError("not a relay request")


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class RelayHandler(socketserver.BaseRequestHandler):
    def handle(self):
        client = self.request
        try:
            handshake(client)
            upstream = socket.create_connection(self.server.target, timeout=10)
        except OSError:
            return
        upstream.settimeout(None)
        client.settimeout(None)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)
        upstream.close()


class RelayServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: Tuple[str, int]):
        super().__init__(("127.0.0.1", 0), RelayHandler)
        self.target = target

    def handle_error(self, request, client_address):
        pass


def main(argv) -> None:
    port_file, target = argv[0], argv[1]
    host, _, port = target.rpartition(":")
    if not ipaddress.ip_address(host or "127.0.0.1").is_loopback:
        raise SystemExit("the relay stand-in reaches loopback only")
    server = RelayServer((host or "127.0.0.1", int(port)))
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
