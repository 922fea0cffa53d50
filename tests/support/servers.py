"""Real servers for tests, on 127.0.0.1 with free ports and temporary data, stopped by PID:
Debian's Prometheus and Alertmanager, and a webhook sink that keeps what Alertmanager sends."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from support.processes import free_port, stop_pid, wait_for


def binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"{' or '.join(names)} not found: run tests/run.sh (it installs Debian's packages)")


class WebhookSink(ThreadingHTTPServer):
    """Collects the JSON payloads POSTed to it."""

    def __init__(self):
        self.payloads = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler):  # noqa: N805
                body = handler.rfile.read(int(handler.headers["Content-Length"]))
                self.payloads.append(json.loads(body))
                handler.send_response(200)
                handler.end_headers()

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hook"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


class _Server:
    """A server process with a YAML config in `tmp`, on a free port; ready when /-/ready answers."""

    name = ""

    def __init__(self, config: dict, tmp: Path, argv, timeout: float = 30):
        tmp.mkdir()
        self.config_path = tmp / f"{self.name.lower()}.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log_path = tmp / f"{self.name.lower()}.log"
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(argv(self.config_path, self.port, self.url),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout=timeout, what=f"{self.name} on {self.url} (log: {log_path})")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"{self.name} exited; see its log"
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self):
        stop_pid(self.proc)
        self.log.close()


class Alertmanager(_Server):
    name = "Alertmanager"

    def __init__(self, binary, config, tmp):
        super().__init__(config, tmp, lambda path, port, url: [
            binary, f"--config.file={path}", f"--storage.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", f"--web.external-url={url}",
        ], timeout=20)

    def post(self, alerts):
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def alerts(self):
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:
            return json.load(response)


class Prometheus(_Server):
    """A real Prometheus server with the given config (a dict)."""

    name = "Prometheus"

    def __init__(self, config: dict, tmp: Path):
        super().__init__(config, tmp, lambda path, port, url: [
            binary("prometheus"), f"--config.file={path}", f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}",
        ])

    def query(self, promql: str) -> list:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]
