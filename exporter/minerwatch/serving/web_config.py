"""--web.config.file: the exporter-toolkit format, each key honoured or refused with file:line.

The same file works for node_exporter and minerwatch:
    tls_server_config: {cert_file or cert, key_file or key, client_auth_type, client_ca_file or
                        client_ca, client_allowed_sans, min_version, max_version, cipher_suites,
                        prefer_server_cipher_suites, curve_preferences}
    http_server_config: {http2, headers: {...}}
    rate_limit: {interval, burst}
    basic_auth_users: {user: bcrypt hash}
Relative file names are read from the config file's directory, as exporter-toolkit reads them.
As exporter-toolkit does, certificate, key and client CA files are read again when they change
on disk (checked at most once a second, on a new connection), so a renewed certificate is served
without a reload; a renewal that cannot be loaded keeps the last good one, logs it and counts it
(`reload_failures`). `http2: true`, exporter-toolkit's default, is accepted with a warning: the
exporter speaks HTTP/1.1, which Prometheus uses anyway. What Python's ssl module cannot do the way
Go's crypto/tls does (TLS 1.3 suite choice, more than one curve, a client certificate required but
not verified) is refused with a one-line error rather than silently ignored.

ssl is imported only when a file asks for TLS: loading it maps libssl and libcrypto into every
exporter, and most desks serve plain HTTP.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from minerwatch.text import host_text
from minerwatch.yaml_file import ConfigError, Node, load_yaml
from minerwatch.serving.web_auth import BasicAuth, bcrypt_cost

if TYPE_CHECKING:
    import ssl

log = logging.getLogger("minerwatch.web")
RECHECK_SECONDS = 1.0  # how often, at most, the certificate files are looked at for a change

# Names of ssl's constants, looked up once TLS is asked for.
CLIENT_AUTH = {
    "NoClientCert": "CERT_NONE",
    "RequestClientCert": "CERT_OPTIONAL",
    "VerifyClientCertIfGiven": "CERT_OPTIONAL",
    "RequireAndVerifyClientCert": "CERT_REQUIRED",
}
TLS_VERSIONS = {"TLS12": "TLSv1_2", "TLS13": "TLSv1_3"}
OBSOLETE_TLS = ("TLS10", "TLS11")
# Go's names (crypto/tls CipherSuites) for TLS 1.2 suites, and OpenSSL's name for each.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
# exporter-toolkit's list: the headers a web config may set, and the values allowed (None: any).
HEADERS = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}


class TlsSource:
    """The TLS context, built again when a file it was built from changes on disk.

    `build()` makes a context from the settings read at load time and raises ConfigError or
    OSError; `files` are the paths it reads (certificate, key, client CA)."""

    def __init__(self, build: Callable[[], "ssl.SSLContext"], files: Sequence[str],
                 clock: Callable[[], float] = time.monotonic):
        self._build, self.files, self._clock = build, tuple(files), clock
        self._lock = threading.Lock()
        self._stamps = self._stat()
        self.context = build()
        self._checked = clock()
        self.reload_failures = 0

    def _stat(self) -> Tuple:
        out = []
        for path in self.files:
            try:
                st = os.stat(path)
                out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append(None)
        return tuple(out)

    def current(self) -> "ssl.SSLContext":
        now = self._clock()
        if now - self._checked < RECHECK_SECONDS or not self._lock.acquire(blocking=False):
            return self.context
        try:
            self._checked = now
            stamps = self._stat()
            if stamps != self._stamps:
                self._stamps = stamps  # a broken renewal is tried again only when it changes again
                try:
                    self.context = self._build()
                    log.info("TLS certificate files changed: reloaded")
                except (ConfigError, OSError) as exc:
                    self.reload_failures += 1
                    log.error("TLS certificate files changed but cannot be loaded, keeping the last good "
                              "ones: %s", host_text(str(exc), 300))
        finally:
            self._lock.release()
        return self.context


class RateLimit:
    """exporter-toolkit's `rate_limit`: a token bucket of `burst` requests, one more every
    `interval` seconds, shared by every client; a request without a token gets 429."""

    def __init__(self, interval: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.interval, self.burst, self._clock = interval, burst, clock
        self._tokens, self._when = float(burst), clock()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._when) / self.interval)
            self._when = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


class WebConfig:
    """What the server needs from the file: TLS, basic-auth users, extra headers, a rate limit."""

    def __init__(self, tls: Optional[TlsSource] = None, users: Optional[Dict[str, bytes]] = None,
                 headers: Optional[Dict[str, str]] = None, rate_limit: Optional[RateLimit] = None,
                 allowed_sans: Optional[Sequence[str]] = None):
        self.tls_source = tls
        self.users = users or {}
        self.auth = BasicAuth(self.users) if self.users else None
        self.headers = headers or {}
        self.rate_limit = rate_limit
        self.allowed_sans = frozenset(allowed_sans) if allowed_sans else None

    @property
    def tls(self) -> Optional["ssl.SSLContext"]:
        """The context a new connection is wrapped with (None: plain HTTP)."""
        return self.tls_source.current() if self.tls_source is not None else None

    @property
    def tls_reload_failures(self) -> int:
        return self.tls_source.reload_failures if self.tls_source is not None else 0

    def client_allowed(self, peer_cert: Optional[dict]) -> bool:
        """Whether a client's verified certificate (ssl's getpeercert()) names an allowed SAN:
        a DNS name, e-mail address, IP address or URI, compared as exporter-toolkit compares them."""
        if self.allowed_sans is None:
            return True
        names = [value for kind, value in (peer_cert or {}).get("subjectAltName", ())
                 if kind in ("DNS", "email", "IP Address", "URI")]
        return any(name.strip() in self.allowed_sans for name in names)


def load_web_config(path: Optional[str]) -> WebConfig:
    if not path:
        return WebConfig()
    root = load_yaml(path)
    if root is None:
        return WebConfig()
    top = root.mapping(("tls_server_config", "basic_auth_users", "http_server_config", "rate_limit"))
    tls, sans = (_tls_source(top["tls_server_config"], os.path.dirname(path)) if "tls_server_config" in top
                 else (None, None))
    users = _users(top["basic_auth_users"]) if "basic_auth_users" in top else {}
    headers = _http_server_config(top["http_server_config"]) if "http_server_config" in top else {}
    rate_limit = _rate_limit(top["rate_limit"]) if "rate_limit" in top else None
    return WebConfig(tls, users, headers, rate_limit, sans)


_DURATION = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m(?!s))?(?:([0-9]+)s)?(?:([0-9]+)ms)?")


def _rate_limit(node: Node) -> Optional[RateLimit]:
    fields = node.mapping(("interval", "burst"))
    if "interval" not in fields:
        return None  # exporter-toolkit: no interval, no limit
    text = fields["interval"].string()
    match = _DURATION.fullmatch(text)
    if not match or not any(match.groups()):
        raise fields["interval"].error("must be a duration such as 1s, 500ms or 1m")
    hours, minutes, seconds, millis = (int(g or 0) for g in match.groups())
    interval = hours * 3600 + minutes * 60 + seconds + millis / 1000
    if interval <= 0:
        return None
    if "burst" not in fields:
        raise node.error("burst is required with interval (requests allowed at once)")
    # burst 0 would refuse every request, the scrapes too: a mistake, not a policy
    return RateLimit(interval, fields["burst"].integer(1, 1_000_000))


def _users(node: Node) -> Dict[str, bytes]:
    users: Dict[str, bytes] = {}
    first_cost = None
    for user, child in node.mapping(None).items():
        try:
            cost = bcrypt_cost(child.string())
        except ValueError as exc:
            raise child.error(str(exc)) from None
        if first_cost is None:
            first_cost = (user, cost)
        elif cost != first_cost[1]:
            raise child.error(f"cost {cost:02d} differs from {first_cost[0]}'s cost {first_cost[1]:02d}: give "
                              "every user the same cost, or response times tell which user names exist")
        users[user] = child.string().encode()
    return users


def _http_server_config(node: Node) -> Dict[str, str]:
    fields = node.mapping(("http2", "headers"))
    if "http2" in fields and fields["http2"].boolean():
        # exporter-toolkit's default, in many node_exporter web configs: the same file must work
        log.warning("%s:%d: http_server_config.http2: true is ignored: minerwatch serves HTTP/1.1, "
                    "which Prometheus scrapes with anyway", host_text(node.file, 200), fields["http2"].line)
    headers: Dict[str, str] = {}
    if "headers" in fields:
        for name, child in fields["headers"].mapping(HEADERS).items():
            value = child.string()
            allowed = HEADERS[name]
            if allowed is not None and value not in allowed:
                raise child.error(f"must be one of {', '.join(allowed)}")
            if any(c in value for c in "\r\n\0"):
                raise child.error("must be one line")
            headers[name] = value
    return headers


def _tls_version(node: Node) -> "ssl.TLSVersion":
    import ssl

    name = node.string()
    if name in OBSOLETE_TLS:
        raise node.error(f"{name} is obsolete (RFC 8996) and not offered; use TLS12 or TLS13")
    if name not in TLS_VERSIONS:
        raise node.error(f"must be one of {', '.join(TLS_VERSIONS)}")
    return ssl.TLSVersion[TLS_VERSIONS[name]]


def _tls_source(node: Node, directory: str) -> Tuple[TlsSource, Optional[List[str]]]:
    """The TLS settings read once; the context built now (errors name file:line) and again
    whenever the certificate, key or client CA file changes."""
    import ssl  # here only: a web config without TLS never loads it

    fields = node.mapping(("cert_file", "key_file", "cert", "key", "client_auth_type", "client_ca_file",
                           "client_ca", "client_allowed_sans", "min_version", "max_version", "cipher_suites",
                           "curve_preferences", "prefer_server_cipher_suites"))

    def one_of(file_key: str, text_key: str, required: bool) -> Tuple[Optional[str], Optional[str]]:
        """(path, inline PEM) of a setting given as a file or inline, never both."""
        if file_key in fields and text_key in fields:
            raise fields[text_key].error(f"give {file_key} or {text_key}, not both")
        if file_key in fields:
            return os.path.join(directory, fields[file_key].string()), None
        if text_key in fields:
            return None, fields[text_key].string()
        if required:
            raise node.error(f"{file_key} (or {text_key}) is required for TLS")
        return None, None

    cert_path, cert_text = one_of("cert_file", "cert", True)
    key_path, key_text = one_of("key_file", "key", True)
    ca_path, ca_text = one_of("client_ca_file", "client_ca", False)
    minimum = _tls_version(fields["min_version"]) if "min_version" in fields else ssl.TLSVersion.TLSv1_2
    maximum = _tls_version(fields["max_version"]) if "max_version" in fields else ssl.TLSVersion.TLSv1_3
    if minimum > maximum:
        raise fields["max_version"].error("is lower than min_version")
    ciphers = _ciphers(fields["cipher_suites"]) if "cipher_suites" in fields else None
    prefer_server = fields["prefer_server_cipher_suites"].boolean() if "prefer_server_cipher_suites" in fields else True
    curve = _curve(fields["curve_preferences"]) if "curve_preferences" in fields else None
    auth = fields["client_auth_type"].string() if "client_auth_type" in fields else "NoClientCert"
    if auth not in CLIENT_AUTH:
        raise fields["client_auth_type"].error(f"must be one of {', '.join(CLIENT_AUTH)}")
    if auth != "NoClientCert" and ca_path is None and ca_text is None:
        raise node.error("client_ca_file (or client_ca) is required when client_auth_type verifies clients")
    if auth == "NoClientCert" and (ca_path or ca_text):
        key = "client_ca_file" if ca_path else "client_ca"
        raise fields[key].error("is set but client_auth_type is NoClientCert: choose a client_auth_type")
    sans = None
    if "client_allowed_sans" in fields:
        sans = fields["client_allowed_sans"].strings()
        if auth not in ("RequireAndVerifyClientCert", "VerifyClientCertIfGiven"):
            raise fields["client_allowed_sans"].error(
                "needs a client_auth_type that verifies client certificates (RequireAndVerifyClientCert)")

    def build() -> "ssl.SSLContext":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            _load_chain(context, cert_path, cert_text, key_path, key_text)
        except (OSError, ssl.SSLError) as exc:
            where = fields["cert_file"] if "cert_file" in fields else fields["cert"]
            raise where.error(f"cannot load certificate and key: {exc}") from None
        context.minimum_version, context.maximum_version = minimum, maximum
        if ciphers:
            try:
                context.set_ciphers(ciphers)
            except ssl.SSLError as exc:
                raise fields["cipher_suites"].error(f"OpenSSL refuses these suites: {exc}") from None
        if prefer_server:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        if curve:
            context.set_ecdh_curve(curve)
        context.verify_mode = getattr(ssl, CLIENT_AUTH[auth])
        if auth != "NoClientCert":
            try:
                if ca_path:
                    context.load_verify_locations(ca_path)
                else:
                    context.load_verify_locations(cadata=ca_text)
            except (OSError, ssl.SSLError, ValueError) as exc:
                key = "client_ca_file" if ca_path else "client_ca"
                raise fields[key].error(f"cannot load CA: {exc}") from None
        return context

    files = [p for p in (cert_path, key_path, ca_path) if p]
    return TlsSource(build, files), sans


def _load_chain(context: "ssl.SSLContext", cert_path: Optional[str], cert_text: Optional[str],
                key_path: Optional[str], key_text: Optional[str]) -> None:
    """ssl loads a certificate and key from files only: inline PEM goes through a private
    temporary directory (0700) that is removed at once, key included."""
    if cert_text is None and key_text is None:
        context.load_cert_chain(cert_path, key_path)
        return
    with tempfile.TemporaryDirectory(prefix="minerwatch-tls-") as scratch:
        if cert_text is not None:
            cert_path = os.path.join(scratch, "cert.pem")
            _write_private(cert_path, cert_text)
        if key_text is not None:
            key_path = os.path.join(scratch, "key.pem")
            _write_private(key_path, key_text)
        context.load_cert_chain(cert_path, key_path)


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _ciphers(node: Node) -> str:
    """OpenSSL's cipher string for the TLS 1.2 suites listed by their Go names."""
    names = []
    for item in node.items():
        name = item.string()
        if name in TLS13_SUITES:
            raise item.error("TLS 1.3 suites cannot be chosen (nor can they in Go); list TLS 1.2 suites only")
        if name not in CIPHER_SUITES:
            raise item.error(f"unknown cipher suite (known: {', '.join(CIPHER_SUITES)})")
        names.append(CIPHER_SUITES[name])
    if not names:
        raise node.error("must list at least one cipher suite")
    return ":".join(names)


def _curve(node: Node) -> str:
    items = node.items()
    if len(items) != 1:
        raise node.error("minerwatch honours exactly one curve (Python's ssl sets a single group); "
                         "keep the one you want")
    name = items[0].string()
    if name not in CURVES:
        raise items[0].error(f"unknown curve (known: {', '.join(CURVES)})")
    return CURVES[name]
