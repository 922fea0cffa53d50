"""`minerwatch serve` over plain HTTP (with basic auth) loads neither ssl nor http.server,
http.client or email (issue 17): ssl maps libssl and libcrypto into every exporter, though
most desks never serve TLS. TLS itself still works (test_web.py::test_tls, test_web_tls.py).

The real `serve` runs in a subprocess and answers one authenticated scrape; the subprocess
records every import statement that names one of those modules, and who ran it."""

import base64
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import bcrypt
import pytest

from support.processes import free_port
from support.repo import OFFLINE_CONFIG

import minerwatch

SOURCES = str(Path(minerwatch.__file__).resolve().parents[1])  # the minerwatch under test

SERVE_AND_REPORT = textwrap.dedent("""\
    import builtins, json, signal, socket, sys, threading, time

    WATCHED = ("ssl", "http.server", "http.client", "email")
    imports = []  # (importing module, imported module) for each watched one
    real_import = builtins.__import__

    def watched(name):
        return any(name == w or name.startswith(w + ".") for w in WATCHED)

    def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0:
            names = [name] + [f"{name}.{f}" for f in (fromlist or ()) if isinstance(f, str)]
            for full in names:
                if watched(full):
                    imports.append(((globals or {}).get("__name__", "?"), full))
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = recording_import

    from minerwatch import cli

    class Stop:  # the Windows service's kind of signal source: serve runs in a thread
        def __init__(self):
            self.event = threading.Event()

        def wait(self, timeout=None):
            return signal.SIGTERM if self.event.wait(timeout) else None

    port, config, web_config, token = sys.argv[1:5]
    stop, errors = Stop(), []

    def body():
        try:
            cli.serve_argv([f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
                            "--collector.host", f"--config.file={config}", f"--web.config.file={web_config}"],
                           stop)
        except BaseException as exc:
            errors.append(repr(exc))

    thread = threading.Thread(target=body)
    thread.start()
    status_line, deadline = b"", time.monotonic() + 60
    while not status_line and time.monotonic() < deadline and thread.is_alive():
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Basic " + token.encode()
                             + b"\\r\\nAccept-Encoding: gzip\\r\\nConnection: close\\r\\n\\r\\n")
                reply = b""
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
                status_line = reply.split(b"\\r\\n", 1)[0]
        except OSError:
            time.sleep(0.1)
    stop.event.set()
    thread.join(30)
    mapped = sorted({line.split()[-1].rsplit("/", 1)[-1] for line in open("/proc/self/maps")
                     if "libssl" in line or "_ssl." in line})
    print(json.dumps({
        "status_line": status_line.decode("latin-1"),
        "errors": errors,
        "loaded": sorted(m for m in sys.modules if watched(m)),
        "imports": sorted(set(imports)),
        "mapped": mapped,
    }))
""")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("imports")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web_config = d / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    script = d / "serve_and_report.py"
    script.write_text(SERVE_AND_REPORT)
    token = base64.b64encode(b"prometheus:s3cret").decode()
    out = subprocess.run([sys.executable, str(script), str(free_port()), str(OFFLINE_CONFIG), str(web_config), token],
                         capture_output=True, text=True, timeout=120, env={"PYTHONPATH": SOURCES})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["status_line"] == "HTTP/1.1 200 OK" and result["errors"] == [], (result, out.stderr)
    return result


def test_no_minerwatch_module_imports_ssl_or_the_http_and_email_packages(report):
    ours = [pair for pair in report["imports"] if pair[0].startswith("minerwatch")]
    assert ours == []


def test_serving_plain_http_loads_none_of_them(report):
    assert report["loaded"] == [], report["imports"]
    assert report["mapped"] == []  # and neither libssl nor the _ssl extension is mapped
