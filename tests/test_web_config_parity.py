"""A node_exporter web config works unchanged: exporter-toolkit's keys that minerwatch used to
refuse (http2: true, client_allowed_sans, inline cert/key/client_ca, rate_limit) are honoured,
and a certificate renewed on disk is served without a reload, as exporter-toolkit does."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minerwatch.serving import web
from support.processes import free_port, stop_pid, wait_for
from support.repo import offline
from test_web_http import serving, stop


def openssl(*args) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def signed(d: Path, name: str, san: str, ca: str = "ca") -> None:
    """d/name.pem and d/name.key, signed by d/ca.pem, with one subjectAltName."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", d / f"{name}.key",
            "-out", d / f"{name}.csr")
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / f"{ca}.pem", "-CAkey", d / f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", d / f"{name}.ext", "-out", d / f"{name}.pem")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=site CA",
            "-keyout", d / "ca.key", "-out", d / "ca.pem")
    signed(d, "server", "IP:127.0.0.1")
    signed(d, "server2", "IP:127.0.0.1")  # the renewal
    signed(d, "prometheus", "DNS:prometheus.astana.ministry.local")
    signed(d, "intruder", "DNS:ws-0417.astana.ministry.local")
    return d


def client(pki: Path, who: str = "") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if who:
        context.load_cert_chain(pki / f"{who}.pem", pki / f"{who}.key")
    return context


def get(port: int, context: ssl.SSLContext, path: str = "/metrics"):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def served_certificate(port: int, pki: Path) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client(pki).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True)


def pem_der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


NODE_EXPORTER_CONFIG = """\
# as written for node_exporter: exporter-toolkit's keys, relative paths
tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  client_allowed_sans:
    - prometheus.astana.ministry.local
http_server_config:
  http2: true
  headers:
    X-Content-Type-Options: nosniff
"""


def test_a_node_exporter_web_config_works_unchanged(pki, tmp_path):
    """The real `minerwatch serve` starts on the file, warns about http2 once, and only the
    Prometheus certificate with an allowed SAN gets in."""
    for name in ("ca.pem", "server.pem", "server.key"):
        shutil.copy(pki / name, tmp_path / name)
    config = tmp_path / "web.yml"
    config.write_text(NODE_EXPORTER_CONFIG)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "minerwatch", "serve", f"--web.listen-address=127.0.0.1:{port}",
                             f"--web.config.file={config}", "--collector.disable-defaults", "--collector.host",
                             *offline([])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def answers():
            assert proc.poll() is None, proc.stdout.read()
            try:
                return get(port, client(pki, "prometheus"))[0]
            except OSError:
                return None

        assert wait_for(answers, timeout=30, what="serve with the node_exporter web config") == 200
        status, body = get(port, client(pki, "prometheus"))
        assert status == 200 and b"minerwatch_host_cpus" in body
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            get(port, client(pki, "intruder"))  # the site's CA signed it, but its SAN is not allowed
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            get(port, client(pki))  # no client certificate
        assert get(port, client(pki, "prometheus"))[0] == 200  # and the server still serves
    finally:
        stop_pid(proc)
    log = proc.stdout.read()
    warnings = [line for line in log.splitlines() if "http2" in line]
    assert len(warnings) == 1 and "level=warn" in warnings[0] and f"{config}:10" in warnings[0], log


def test_inline_cert_key_and_client_ca(pki, tmp_path):
    def block(path: Path) -> str:
        return "|\n" + "".join(f"    {line}\n" for line in path.read_text().splitlines())

    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n"
                      f"  cert: {block(pki / 'server.pem')}"
                      f"  key: {block(pki / 'server.key')}"
                      "  client_auth_type: RequireAndVerifyClientCert\n"
                      f"  client_ca: {block(pki / 'ca.pem')}")
    before = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))
    server = serving(web.load_web_config(str(config)))
    try:
        port = server.server_address[1]
        assert get(port, client(pki, "prometheus"))[0] == 200
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            context = client(pki, "prometheus")
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.getpeercert(binary_form=True) == pem_der(pki / "server.pem")  # the inline one
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            get(port, client(pki))  # the inline CA verifies clients: none, no entry
    finally:
        stop(server)
    left = {n for n in set(os.listdir(os.environ.get("TMPDIR", "/tmp"))) - before if n.startswith("minerwatch-tls-")}
    assert not left  # the key written for ssl to load is gone


def test_a_renewed_certificate_is_served_without_a_reload(pki, tmp_path):
    for name in ("server.pem", "server.key"):
        shutil.copy(pki / name, tmp_path / name)
    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n")
    server = serving(web.load_web_config(str(config)))
    try:
        port = server.server_address[1]
        assert served_certificate(port, pki) == pem_der(pki / "server.pem")
        # renewal as certbot or an ACME client does it: new files put in place
        for name, new in (("server.key", "server2.key"), ("server.pem", "server2.pem")):
            shutil.copy(pki / new, tmp_path / (name + ".new"))
            os.replace(tmp_path / (name + ".new"), tmp_path / name)
        wait_for(lambda: served_certificate(port, pki) == pem_der(pki / "server2.pem"), timeout=10,
                 interval=0.3, what="the renewed certificate to be served")
        assert b"minerwatch_web_tls_certificate_reload_failures_total 0.0" in get(port, client(pki))[1]

        # a broken renewal keeps the last good certificate, and is counted
        (tmp_path / "server.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
        time.sleep(1.2)
        assert served_certificate(port, pki) == pem_der(pki / "server2.pem")
        wait_for(lambda: b"minerwatch_web_tls_certificate_reload_failures_total 1.0" in get(port, client(pki))[1],
                 timeout=10, what="the failed reload to be counted")
    finally:
        stop(server)


def test_rate_limit_answers_429_beyond_the_burst(tmp_path):
    config = tmp_path / "web.yml"
    config.write_text("rate_limit:\n  interval: 1m\n  burst: 3\n")
    server = serving(web.load_web_config(str(config)))
    try:
        statuses = []
        for _ in range(5):
            conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
            conn.request("GET", "/-/healthy")
            statuses.append(conn.getresponse().status)
            conn.close()
        assert statuses == [200, 200, 200, 429, 429]
        assert server.rate_limited == 2
    finally:
        stop(server)
