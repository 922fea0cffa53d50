"""A hostile (or broken) Prometheus stand-in on 127.0.0.1, for `minerwatch report`.

Run as a process (`python -m support.hostile_prometheus --mode M --port-file F` from tests/): it
writes its port to F and answers every request of the HTTP API as the mode says, until killed;
tests stop it by its PID (`HostilePrometheus` starts and stops it). Modes:

    huge        200, a JSON prefix, then --huge-mib MiB of filler streamed in 1 MiB pieces and
                never held in memory, with no Content-Length (the client cannot know the size)
    huge-error  the same body behind a 500 status
    list        200, a JSON list at the top level
    deep        200, arrays nested 200,000 deep
    nan         a valid answer (one suspect, pid 4242, on instance pc-0417:9789, a sample every
                60 s) whose CPU, energy and GPU series hold NaN, +Inf and -Inf samples among
                finite ones; NAN_SERIES says how many of each series are not finite
    trickle     200 and its headers, then the body one byte every --interval seconds
    bad-metric  a valid envelope whose series' `metric` is a list
    bad-sample  a valid envelope whose samples are not [time, "value"] pairs
    bad-pid     the `nan` answer with "²" as the pid label (a digit to str.isdigit(), not to int())
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.processes import stop_pid, wait_for
from support.repo import ROOT

INSTANCE = "pc-0417:9789"
PID = "4242"
STEP = 60
# Not-finite samples the `nan` mode puts in each series, by series: (NaN, +Inf, -Inf).
NAN_SERIES = {
    "minerwatch_process_cpu_seconds_total": (2, 1, 1),
    "minerwatch_process_energy_joules_total": (1, 1, 0),
    "minerwatch_gpu_process_utilization_ratio": (0, 1, 0),
}
MIB = 1 << 20


def _matrix(query: str, at: float, pid_label: str = PID) -> list:
    """The `nan` mode's answer to an instant query of a range selector `name{...}[Ns]` at `at`."""
    m = re.fullmatch(r"(\w+)\{.*\}\[(\d+)s\]", query)
    if not m:
        return []
    name, window = m.group(1), int(m.group(2))
    labels = {"__name__": name, "instance": INSTANCE, "job": "minerwatch", "pid": pid_label, "name": "xmrig",
              "user": "alice"}
    times = [t for t in range(int(at) - int(at) % STEP, int(at - window), -STEP) if at - window < t <= at][::-1]
    if name == "minerwatch_process_suspect_info":
        values = [[t, "1"] for t in times]
        labels.update(exe="/tmp/.x/xmrig", signals="miner_name")
    elif name in NAN_SERIES:
        # A counter growing 1 a second (a gauge at 0.5) with the not-finite samples at the start.
        nan, inf, minus = NAN_SERIES[name]
        bad = ["NaN"] * nan + ["+Inf"] * inf + ["-Inf"] * minus
        values = [[t, bad[i] if i < len(bad) else ("0.5" if "ratio" in name else str(float(t - 1_000_000_000)))]
                  for i, t in enumerate(times)]
        if "gpu" in name:
            labels.update(gpu="0", uuid="GPU-1")
    else:
        return []
    return [{"metric": labels, "values": values}] if values else []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes: no length needed
    server: "Server"

    def log_message(self, *args) -> None:  # quiet: the test reads the report's output
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query))
        mode = self.server.mode
        try:
            if mode in ("huge", "huge-error"):
                self._start(200 if mode == "huge" else 500)
                self.wfile.write(b'{"status":"success","data":["')
                piece = b"x" * MIB
                for _ in range(self.server.huge_mib):
                    self.wfile.write(piece)
                self.wfile.write(b'"]}')
            elif mode == "trickle":
                self._start(200)
                for byte in b'{"status":"success","data":[]}':
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(self.server.interval)
            elif mode == "list":
                self._send([1, 2, 3])
            elif mode == "deep":
                self._start(200)
                self.wfile.write(b"[" * 200_000 + b"]" * 200_000)
            else:
                self._send(self._answer(url.path, params, mode))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def _answer(self, path: str, params: dict, mode: str) -> dict:
        if path == "/api/v1/series":
            return {"status": "success", "data": [{"__name__": "minerwatch_up", "instance": INSTANCE}]}
        if path == "/api/v1/label/instance/values":
            return {"status": "success", "data": [INSTANCE]}
        result = _matrix(params.get("query", ""), float(params.get("time", "0")),
                         "\u00b2" if mode == "bad-pid" else PID)
        if mode == "bad-metric":
            result = [{"metric": ["pid", PID], "values": [[1, "1"]]}]
        elif mode == "bad-sample":
            result = [dict(r, values=[{"t": v[0]} for v in r["values"]]) for r in result]
        return {"status": "success", "data": {"resultType": "matrix", "result": result}}

    def _start(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()

    def _send(self, document) -> None:
        self._start(200)
        self.wfile.write(json.dumps(document).encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str, huge_mib: int, interval: float):
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode, self.huge_mib, self.interval = mode, huge_mib, interval


class HostilePrometheus:
    """The stand-in as a process of the test: its URL, stopped by PID."""

    def __init__(self, tmp: Path, mode: str, huge_mib: int = 320, interval: float = 2.0):
        port_file = tmp / f"hostile-{mode}.port"
        self.log = open(tmp / f"hostile-{mode}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "support.hostile_prometheus", "--mode", mode, "--port-file", str(port_file),
             "--huge-mib", str(huge_mib), "--interval", str(interval)],
            cwd=ROOT / "tests", stdout=self.log, stderr=subprocess.STDOUT)
        try:
            port = int(wait_for(lambda: port_file.exists() and port_file.read_text(), what="Prometheus stand-in"))
        except AssertionError:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        stop_pid(self.proc)
        self.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", required=True, choices=["huge", "huge-error", "list", "deep", "nan", "trickle",
                                                          "bad-metric", "bad-sample", "bad-pid"])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--huge-mib", type=int, default=320)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    server = Server(args.mode, args.huge_mib, args.interval)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)  # readers never see a half-written port
    server.serve_forever()


if __name__ == "__main__":
    main()
