"""A pool stand-in that pushes jobs, as every real pool does: pool.py's answers, plus a `job`
notification sent unasked to each connection every `--job-seconds` (XMRig's dialect: method
"job"; Monero pools push one per block, every 120 s on average, Bitcoin-style pools every
10-30 s). TLS with `--tls-cert`/`--tls-key`, like pool.py.

Run as a process (`python -m tests.support.rhythm_pool --port-file F --job-seconds 2`): it
writes its port to F and serves until killed; tests stop it by its PID. Requests are logged
to stdout as pool.py logs them, and each push as {"peer": P, "pushed": "job"}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading

from tests.support.pool import JOB, PoolServer, StratumHandler, reply


class PushingHandler(StratumHandler):
    job_seconds = 2.0

    def handle(self):
        lock = threading.Lock()
        done = threading.Event()

        def push():
            while not done.wait(self.job_seconds):
                with lock:
                    try:
                        job = {"jsonrpc": "2.0", "method": "job", "params": JOB}
                        self.wfile.write(json.dumps(job).encode() + b"\n")
                        self.wfile.flush()
                    except (OSError, ValueError):
                        return
                print(json.dumps({"peer": self.client_address[1], "pushed": "job"}), flush=True)

        threading.Thread(target=push, daemon=True).start()
        try:
            for line in self.rfile:
                try:
                    request = json.loads(line)
                except ValueError:
                    request = {}  # an opaque line: answered all the same (the stand-ins send some)
                print(json.dumps({"peer": self.client_address[1], "method": request.get("method")}), flush=True)
                with lock:
                    for message in reply(request if isinstance(request, dict) else {}):
                        self.wfile.write(json.dumps(message).encode() + b"\n")
                    self.wfile.flush()
        finally:
            done.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--job-seconds", type=float, default=2.0)
    parser.add_argument("--tls-cert", default="")
    parser.add_argument("--tls-key", default="")
    args = parser.parse_args()
    PushingHandler.job_seconds = args.job_seconds
    server = PoolServer(0, args.tls_cert, args.tls_key)
    server.RequestHandlerClass = PushingHandler
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.port))
    os.replace(tmp, args.port_file)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
