"""--web.config.file: the exporter-toolkit format, each key honoured or refused with file:line.

The same file works for node_exporter and minerwatch:
    tls_server_config: {cert_file, key_file, client_auth_type, client_ca_file, min_version,
                        max_version, cipher_suites, prefer_server_cipher_suites, curve_preferences}
    http_server_config: {http2: false, headers: {...}}
    basic_auth_users: {user: bcrypt hash}
Relative file names are read from the config file's directory, as exporter-toolkit reads them.
What Python's ssl module cannot do the way Go's crypto/tls does (HTTP/2, TLS 1.3 suite choice,
more than one curve) is refused with a one-line error rather than silently ignored.

ssl is imported only when a file asks for TLS: loading it maps libssl and libcrypto into every
exporter, and most desks serve plain HTTP.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, Optional

from minerwatch.yaml_file import Node, load_yaml
from minerwatch.web_auth import BasicAuth, bcrypt_cost

if TYPE_CHECKING:
    import ssl

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


class WebConfig:
    """What the server needs from the file: a TLS context, basic-auth users, extra headers."""

    def __init__(self, tls: Optional["ssl.SSLContext"] = None, users: Optional[Dict[str, bytes]] = None,
                 headers: Optional[Dict[str, str]] = None):
        self.tls = tls
        self.users = users or {}
        self.auth = BasicAuth(self.users) if self.users else None
        self.headers = headers or {}


def load_web_config(path: Optional[str]) -> WebConfig:
    if not path:
        return WebConfig()
    root = load_yaml(path)
    if root is None:
        return WebConfig()
    top = root.mapping(("tls_server_config", "basic_auth_users", "http_server_config"))
    tls = _tls_context(top["tls_server_config"], os.path.dirname(path)) if "tls_server_config" in top else None
    users = _users(top["basic_auth_users"]) if "basic_auth_users" in top else {}
    headers = _http_server_config(top["http_server_config"]) if "http_server_config" in top else {}
    return WebConfig(tls, users, headers)


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
        raise fields["http2"].error("minerwatch serves HTTP/1.1 only; set http2: false or remove the key")
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


def _tls_context(node: Node, directory: str) -> "ssl.SSLContext":
    import ssl  # here only: a web config without TLS never loads it

    fields = node.mapping(("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
                           "max_version", "cipher_suites", "curve_preferences", "prefer_server_cipher_suites"))
    for required in ("cert_file", "key_file"):
        if required not in fields:
            raise node.error(f"{required} is required for TLS")

    def file(key: str) -> str:
        return os.path.join(directory, fields[key].string())

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(file("cert_file"), file("key_file"))
    except (OSError, ssl.SSLError) as exc:
        raise fields["cert_file"].error(f"cannot load certificate and key: {exc}") from None
    context.minimum_version = _tls_version(fields["min_version"]) if "min_version" in fields else ssl.TLSVersion.TLSv1_2
    context.maximum_version = _tls_version(fields["max_version"]) if "max_version" in fields else ssl.TLSVersion.TLSv1_3
    if context.minimum_version > context.maximum_version:
        raise fields["max_version"].error("is lower than min_version")
    if "cipher_suites" in fields:
        _set_ciphers(context, fields["cipher_suites"])
    prefer_server = True
    if "prefer_server_cipher_suites" in fields:
        prefer_server = fields["prefer_server_cipher_suites"].boolean()
    if prefer_server:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if "curve_preferences" in fields:
        _set_curve(context, fields["curve_preferences"])

    auth = fields["client_auth_type"].string() if "client_auth_type" in fields else "NoClientCert"
    if auth not in CLIENT_AUTH:
        raise fields["client_auth_type"].error(f"must be one of {', '.join(CLIENT_AUTH)}")
    context.verify_mode = getattr(ssl, CLIENT_AUTH[auth])
    if auth != "NoClientCert":
        if "client_ca_file" not in fields:
            raise node.error("client_ca_file is required when client_auth_type verifies clients")
        try:
            context.load_verify_locations(file("client_ca_file"))
        except (OSError, ssl.SSLError) as exc:
            raise fields["client_ca_file"].error(f"cannot load CA file: {exc}") from None
    elif "client_ca_file" in fields:
        raise fields["client_ca_file"].error("is set but client_auth_type is NoClientCert: choose a client_auth_type")
    return context


def _set_ciphers(context: "ssl.SSLContext", node: Node) -> None:
    import ssl

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
    try:
        context.set_ciphers(":".join(names))
    except ssl.SSLError as exc:
        raise node.error(f"OpenSSL refuses these suites: {exc}") from None


def _set_curve(context: "ssl.SSLContext", node: Node) -> None:
    items = node.items()
    if len(items) != 1:
        raise node.error("minerwatch honours exactly one curve (Python's ssl sets a single group); "
                         "keep the one you want")
    name = items[0].string()
    if name not in CURVES:
        raise items[0].error(f"unknown curve (known: {', '.join(CURVES)})")
    context.set_ecdh_curve(CURVES[name])
