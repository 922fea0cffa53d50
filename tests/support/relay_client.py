"""A client that hides what it says inside TLS with no server name, through a SOCKS5 relay.

    python relay_client.py RELAY_PORT HOST PORT

It asks the relay on 127.0.0.1:RELAY_PORT for HOST:PORT by name (never resolved here), then
starts TLS through the tunnel without SNI, as a miner configured for a pool's TLS port does
when told not to send the name: only the SOCKS request names the pool. It waits until stopped
by its PID.
"""

from __future__ import annotations

import socket
import ssl
import sys
import time

from fakeminer import through_relay


def main(argv) -> None:
    relay_port, host, port = int(argv[0]), argv[1], int(argv[2])
    sock = through_relay(f"127.0.0.1:{relay_port}", host, port)
    sock.settimeout(None)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:  # the ClientHello goes out here, with no server name; a silent server keeps it waiting
        context.wrap_socket(sock)
    except (OSError, ssl.SSLError):
        pass
    time.sleep(600)


if __name__ == "__main__":
    main(sys.argv[1:])
