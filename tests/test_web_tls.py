"""TLS and http_server_config from the web config (issue 11, item 6): every key honoured or
refused, and a failed handshake is one debug line, not a traceback."""

import http.client
import logging
import socket
import ssl
import subprocess
import time

import pytest

from minerwatch.serving import web
from minerwatch.config import ConfigError
from test_web import certs  # noqa: F401  (fixture)
from support.processes import wait_for
from test_web_http import serving, stop


def tls_config(tmp_path, certs, extra="", top=""):  # noqa: F811
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"tls_server_config:\n  cert_file: {certs / 'cert.pem'}\n  key_file: {certs / 'key.pem'}\n"
                   + extra + top)
    return cfg


def handshake(server, context):
    """(TLS version, cipher) the server agrees to with this client context."""
    with socket.create_connection(server.server_address[:2], timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version(), tls.cipher()[0]


def client(certs, **settings):  # noqa: F811
    context = ssl.create_default_context(cafile=str(certs / "cert.pem"))
    for key, value in settings.items():
        if key == "ciphers":
            context.set_ciphers(value)
        else:
            setattr(context, key, value)
    return context


def test_max_version_is_honoured(tmp_path, certs):  # noqa: F811
    server = serving(web.load_web_config(str(tls_config(tmp_path, certs, "  max_version: TLS12\n"))))
    try:
        assert handshake(server, client(certs))[0] == "TLSv1.2"
        with pytest.raises(ssl.SSLError):
            handshake(server, client(certs, minimum_version=ssl.TLSVersion.TLSv1_3))
    finally:
        stop(server)


def test_cipher_suites_are_honoured(tmp_path, certs):  # noqa: F811
    extra = "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"
    server = serving(web.load_web_config(str(tls_config(tmp_path, certs, extra))))
    try:
        # The client prefers AES-256 (OpenSSL's default order); the server's list decides.
        assert handshake(server, client(certs)) == ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")
        with pytest.raises(ssl.SSLError):
            handshake(server, client(certs, ciphers="ECDHE-RSA-AES256-GCM-SHA384"))
    finally:
        stop(server)


def s_client(server, group):
    """openssl's own client offering a single key-exchange group; its exit status and output."""
    port = server.server_address[1]
    result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-groups", group, "-brief"],
                            input=b"", capture_output=True, timeout=20)
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")


def test_curve_preferences_are_honoured(tmp_path, certs):  # noqa: F811
    server = serving(web.load_web_config(str(tls_config(tmp_path, certs, "  curve_preferences: [CurveP384]\n"))))
    try:
        rc, out = s_client(server, "P-384")
        assert rc == 0 and "CONNECTION ESTABLISHED" in out, out
        rc, out = s_client(server, "X25519")
        assert rc != 0 and "CONNECTION ESTABLISHED" not in out, out
    finally:
        stop(server)


def test_headers_are_sent_on_every_response(tmp_path, certs):  # noqa: F811
    cfg = tmp_path / "web.yml"
    cfg.write_text("http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
                   "    Content-Security-Policy: default-src 'none'\n")
    server = serving(web.load_web_config(str(cfg)))
    try:
        for path in ("/metrics", "/", "/nothing"):
            conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            conn.close()
            assert resp.getheader("X-Frame-Options") == "deny", path
            assert resp.getheader("Content-Security-Policy") == "default-src 'none'", path
    finally:
        stop(server)


def test_relative_files_are_read_from_the_config_directory(tmp_path, certs):  # noqa: F811
    (tmp_path / "cert.pem").write_bytes((certs / "cert.pem").read_bytes())
    (tmp_path / "key.pem").write_bytes((certs / "key.pem").read_bytes())
    cfg = tmp_path / "web.yml"
    cfg.write_text("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n")
    assert web.load_web_config(str(cfg)).tls is not None


@pytest.mark.parametrize("extra, message", [
    ("  min_version: TLS11\n", "{f}:4: tls_server_config.min_version: TLS11 is obsolete (RFC 8996) and not offered; "
                               "use TLS12 or TLS13"),
    ("  min_version: TLS13\n  max_version: TLS12\n", "{f}:5: tls_server_config.max_version: is lower than min_version"),
    ("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
     "{f}:4: tls_server_config.cipher_suites[0]: TLS 1.3 suites cannot be chosen (nor can they in Go); "
     "list TLS 1.2 suites only"),
    ("  cipher_suites: [RC4]\n", "{f}:4: tls_server_config.cipher_suites[0]: unknown cipher suite (known: "),
    ("  curve_preferences: [X25519, CurveP256]\n",
     "{f}:4: tls_server_config.curve_preferences: minerwatch honours exactly one curve (Python's ssl sets a "
     "single group); keep the one you want"),
    ("  curve_preferences: [CurveP224]\n", "{f}:4: tls_server_config.curve_preferences[0]: unknown curve (known: "
                                           "CurveP256, CurveP384, CurveP521, X25519)"),
    ("  prefer_server_cipher_suites: maybe\n",
     "{f}:4: tls_server_config.prefer_server_cipher_suites: must be true or false"),
    ("  client_ca_file: ca.pem\n", "{f}:4: tls_server_config.client_ca_file: is set but client_auth_type is "
                                   "NoClientCert: choose a client_auth_type"),
    ("  client_allowed_sans: [x]\n", "{f}:4: tls_server_config.client_allowed_sans: needs a client_auth_type that "
                                      "verifies client certificates (RequireAndVerifyClientCert)"),
    ("  cert: inline\n", "{f}:4: tls_server_config.cert: give cert_file or cert, not both"),
])
def test_bad_tls_config(tmp_path, certs, extra, message):  # noqa: F811
    cfg = tls_config(tmp_path, certs, extra)
    with pytest.raises(ConfigError) as err:
        web.load_web_config(str(cfg))
    assert str(err.value).startswith(message.replace("{f}", str(cfg)))
    assert "\n" not in str(err.value)


def test_failed_handshakes_are_one_debug_line_each(tmp_path, certs, caplog, capfd):  # noqa: F811
    server = serving(web.load_web_config(str(tls_config(tmp_path, certs))))
    try:
        with caplog.at_level(logging.DEBUG, logger="minerwatch.web"):
            for data in (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello", b""):
                with socket.create_connection(server.server_address[:2], timeout=5) as sock:
                    sock.sendall(data)
                    try:
                        sock.shutdown(socket.SHUT_WR)
                        while sock.recv(4096):
                            pass
                    except OSError:  # the server may close first: that is the point
                        pass
            assert get_tls(server, certs) == 200  # and the server still serves

            def handshake_records():
                return [r for r in caplog.records if r.name == "minerwatch.web" and "handshake" in r.getMessage()]

            wait_for(lambda: len(handshake_records()) >= 3, timeout=5, what="three handshake log lines")
        records = handshake_records()
        assert len(records) == 3
        assert all(r.levelno == logging.DEBUG and r.exc_info is None and "\n" not in r.getMessage()
                   for r in records)
        assert "Traceback" not in capfd.readouterr().err
    finally:
        stop(server)


def get_tls(server, certs):  # noqa: F811
    conn = http.client.HTTPSConnection(*server.server_address[:2], context=client(certs), timeout=5)
    conn.request("GET", "/metrics")
    status = conn.getresponse().status
    conn.close()
    return status


def test_a_client_that_never_starts_its_handshake_is_dropped(tmp_path, certs):  # noqa: F811
    server = serving(web.load_web_config(str(tls_config(tmp_path, certs))), header_timeout=0.5)
    try:
        with socket.create_connection(server.server_address[:2], timeout=5) as sock:
            started = time.monotonic()
            assert sock.recv(100) == b""
            assert time.monotonic() - started < 3
    finally:
        stop(server)
