"""What a default `minerwatch serve` maps into memory on Linux (issue 17: RSS at 1,000 processes).

OpenSSL's libcrypto alone was 3.5 MiB of the exporter's resident memory, loaded by ssl (through
http.server and prometheus_client) and hashlib, though a desk serves plain HTTP and hashes nothing
until a busy or suspect process asks for it. The real exporter, all default collectors, two
scrapes: no libcrypto or libssl in its maps. With a TLS web config they are there (the test sees
them when they are)."""

import subprocess
import sys
import time

import pytest

from support.processes import free_port, stop_pid
from support.repo import OFFLINE_CONFIG

LIBS = ("libcrypto", "libssl", "_ssl.", "_hashlib.")


def _mapped(pid):
    with open(f"/proc/{pid}/maps") as f:
        return sorted({line.split()[-1].rsplit("/", 1)[-1] for line in f if any(lib in line for lib in LIBS)})


def _serve_and_map(tmp_path, *extra, scheme="http"):
    import ssl as client_ssl
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "minerwatch", "serve", f"--web.listen-address=127.0.0.1:{port}",
                             f"--config.file={OFFLINE_CONFIG}", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        context = client_ssl._create_unverified_context() if scheme == "https" else None
        deadline, scrapes = time.monotonic() + 60, 0
        while scrapes < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/metrics", timeout=30, context=context) as r:
                    assert r.status == 200 and b"minerwatch_build_info" in r.read()
                    scrapes += 1
            except OSError:
                assert time.monotonic() < deadline, "the exporter did not answer"
                time.sleep(0.1)
        return _mapped(proc.pid)
    finally:
        stop_pid(proc)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_a_default_serve_maps_no_openssl(tmp_path):
    assert _serve_and_map(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_a_tls_serve_maps_openssl(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    mapped = _serve_and_map(tmp_path, f"--web.config.file={web}", scheme="https")
    assert any(m.startswith("libssl") for m in mapped) and any(m.startswith("libcrypto") for m in mapped)
