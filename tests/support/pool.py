"""A mining-pool stand-in on 127.0.0.1 that speaks both Stratum dialects.

- XMRig / CryptoNote: `login`, `submit`, `keepalived` (a job with blob, job_id, target, seed_hash).
- Stratum v1 (Bitcoin-style, also used by GPU miners): `mining.subscribe`, `mining.authorize`,
  `mining.submit`, plus Ethereum proxies' `eth_submitLogin` / `eth_getWork` / `eth_submitWork`.

Run as a process (`python -m tests.support.pool --port-file F`): it writes its port to F and
serves until killed; tests stop it by its PID. Every method it receives is logged to stdout as
one JSON line so tests can assert what a miner said.
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
import sys
import threading

JOB = {
    "blob": "0707d5efb9d005" + "0" * 138,
    "job_id": "1",
    "target": "b88d0600",
    "algo": "rx/0",
    "height": 3000000,
    "seed_hash": "a" * 64,
}


def reply(request: dict) -> list:
    """The pool's answers (and pushed notifications) to one request."""
    method, rid = request.get("method"), request.get("id")
    if method == "login":
        return [{"id": rid, "jsonrpc": "2.0", "error": None,
                 "result": {"id": "standin", "job": JOB, "status": "OK"}}]
    if method in ("submit", "keepalived"):
        status = "KEEPALIVED" if method == "keepalived" else "OK"
        return [{"id": rid, "jsonrpc": "2.0", "error": None, "result": {"status": status}}]
    if method == "mining.subscribe":
        return [{"id": rid, "error": None, "result": [[["mining.notify", "ae6812eb4cd7735a"]], "08000002", 4]}]
    if method == "mining.authorize":
        notify = {"id": None, "method": "mining.notify",
                  "params": ["bf", "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",
                             "01000000", "ffffffff", [], "00000002", "1c2ac4af", "504e86b9", False]}
        return [{"id": rid, "error": None, "result": True}, notify]
    if method in ("mining.submit", "eth_submitLogin", "eth_submitWork", "eth_submitHashrate"):
        return [{"id": rid, "jsonrpc": "2.0", "error": None, "result": True}]
    if method == "eth_getWork":
        return [{"id": rid, "jsonrpc": "2.0", "result": ["0x" + "1" * 64, "0x" + "2" * 64, "0x" + "3" * 64]}]
    return [{"id": rid, "error": {"code": -1, "message": "unknown method"}, "result": None}]


class StratumHandler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            try:
                request = json.loads(line)
            except ValueError:
                return  # not Stratum: hang up, as a pool does
            print(json.dumps({"peer": self.client_address[1], "method": request.get("method")}), flush=True)
            for message in reply(request):
                self.wfile.write(json.dumps(message).encode() + b"\n")


class PoolServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, tls_cert: str = "", tls_key: str = ""):
        """With a certificate and key, every connection is TLS (as pools serve on 443 and 14433)."""
        super().__init__(("127.0.0.1", port), StratumHandler)
        self._tls = None
        if tls_cert:
            import ssl

            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(tls_cert, tls_key)

    def get_request(self):
        sock, address = super().get_request()
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_side=True)
        return sock, address

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start_in_thread(self) -> "PoolServer":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--tls-cert", default="")
    parser.add_argument("--tls-key", default="")
    args = parser.parse_args()
    server = PoolServer(args.port, args.tls_cert, args.tls_key)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.port))
    os.replace(tmp, args.port_file)  # readers never see a half-written port
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
