"""What a scientific compute job talks to: a license server or an RPC master, on 127.0.0.1.

    --mode answer  a license server (FlexNet, RLM): answers each line the client sends, at once
                   (the client heartbeats; the server never speaks first)
    --mode rpc     a parallel job's master (MATLAB, R, ANSYS): sends a task, waits for the
                   worker's result, pauses `--pause` seconds, sends the next one

Run as a process (`python -m tests.support.license_server --port-file F --mode answer`): it
writes its port to F and serves until killed; tests stop it by its PID. Logs one line per
message received.
"""

from __future__ import annotations

import argparse
import os
import socketserver
import sys
import time


class Handler(socketserver.StreamRequestHandler):
    mode = "answer"
    pause = 3.0

    def handle(self):
        if self.mode == "answer":
            for line in self.rfile:
                print("heartbeat", len(line), flush=True)
                self.wfile.write(b'{"status":"granted","expires":3600}\n')
                self.wfile.flush()
            return
        task = 0
        while True:
            task += 1
            self.wfile.write(b'{"task":%d,"rows":[0,500]}\n' % task)
            self.wfile.flush()
            line = self.rfile.readline()
            if not line:
                return
            print("result", task, flush=True)
            time.sleep(self.pause)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--mode", choices=["answer", "rpc"], default="answer")
    parser.add_argument("--pause", type=float, default=3.0)
    args = parser.parse_args()
    Handler.mode, Handler.pause = args.mode, args.pause
    server = Server(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
