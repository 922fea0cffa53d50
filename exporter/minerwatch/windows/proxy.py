"""The web proxies a Windows host is configured to use, for telling connections to them apart.

Read from:
    wininet      each loaded user profile's `Internet Settings` under HKEY_USERS\\<SID>
                 (ProxyEnable 1 and ProxyServer: `host:port`, or `http=host:port;https=...`),
                 what browsers and most applications use; at most MAX_USERS profiles
    winhttp      WinHTTP's machine default (`netsh winhttp set proxy`), through
                 win32inet.WinHttpGetDefaultProxyConfiguration, which parses the binary
                 `Connections\\WinHttpSettings` value itself (services and updaters use it)
    environment  the exporter's own HTTP(S)_PROXY / ALL_PROXY variables

Without a packet driver nothing sees what a client asks its proxy for (the CONNECT target):
a connection to a configured proxy says only that the process uses the proxy. Only proxies
written as IP addresses are matched against connections (a name would need a DNS query from the
desk); the others are still exported. Credentials in a proxy setting (`user:pass@host`) are
dropped where the setting is read. All values are host text: bounded, never raised on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from minerwatch.network.pools import _ip, canonical_ip
from minerwatch.text import host_text
from minerwatch.windows import ReadFailed, describe

HKEY_USERS = 0x80000003  # winreg.HKEY_USERS
SETTINGS = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings"
MAX_USERS = 64  # profiles read under HKEY_USERS (loaded ones: logged-on users and services)
MAX_TEXT = 1024  # characters of a ProxyServer value read
MAX_ITEMS = 8  # proxies taken from one value
SOURCES = ("wininet", "winhttp", "environment")
_USER_SID = re.compile(r"S-1-5-21-[0-9-]{1,80}\Z")  # an account's profile, not its _Classes key
_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@dataclass(frozen=True)
class Proxy:
    source: str  # wininet | winhttp | environment
    host: str  # an address (canonical) or a name, made safe
    port: int

    @property
    def address(self) -> Optional[str]:
        """The host where it is an IP address (what connections can be matched against)."""
        return self.host if _ip(self.host) is not None else None

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_proxy(text: str, default_port: int = 80) -> Optional[Tuple[str, int]]:
    """(host, port) of one proxy: `host:port`, `[v6]:port`, `http://user:pass@host:port/`."""
    text = text.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].rsplit("@", 1)[-1]  # the path, then any credentials, dropped
    if not text:
        return None
    port = default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port_text = rest[1:]
        elif rest:
            return None
        else:
            port_text = ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    host = host.strip().lower().rstrip(".")
    if not host or len(host) > 253 or not re.fullmatch(r"[0-9a-z._:%-]+", host):
        return None
    return (canonical_ip(host) if _ip(host) is not None else host), port


def parse_proxy_server(text: str) -> List[Tuple[str, int]]:
    """The proxies of a ProxyServer value or WinHTTP proxy list: `host:port`, or
    `http=host:port;https=host:port;socks=host:port` (also space-separated), bounded."""
    out: List[Tuple[str, int]] = []
    for item in re.split(r"[;\s]+", text[:MAX_TEXT])[: MAX_ITEMS * 2]:
        if not item:
            continue
        scheme, sep, value = item.partition("=")
        if not sep:
            scheme, value = "", item
        parsed = parse_proxy(value, 1080 if scheme.lower() == "socks" else 80)
        if parsed is not None and parsed not in out:
            out.append(parsed)
        if len(out) >= MAX_ITEMS:
            break
    return out


class ProxySettingsReader:
    """`read()` -> (proxies, errors: source -> one line); a source that fails is in `errors`
    and whatever the others gave is still returned."""

    def __init__(self, winreg=None, win32inet=None, environ: Mapping[str, str] = os.environ):
        self.winreg, self.win32inet, self.environ = winreg, win32inet, environ
        self._partial = ""  # the error of a source read in part

    @property
    def sources(self) -> Tuple[str, ...]:
        return tuple(s for s, there in zip(SOURCES, (self.winreg, self.win32inet, True)) if there is not None)

    def read(self) -> Tuple[List[Proxy], Dict[str, str]]:
        proxies: List[Proxy] = []
        errors: Dict[str, str] = {}
        for source, reader in (("wininet", self._wininet), ("winhttp", self._winhttp),
                               ("environment", self._environment)):
            if source not in self.sources:
                continue
            self._partial = ""
            try:
                found = reader()
            except ReadFailed as exc:
                errors[source] = str(exc)
                continue
            except Exception as exc:  # a registry or WinHTTP answer of an unexpected shape
                errors[source] = f"{source}: {describe(exc)}"
                continue
            if self._partial:  # some profiles unreadable: the others still count
                errors[source] = self._partial
            for host, port in found:
                proxy = Proxy(source, host_text(host, 253), port)
                if proxy not in proxies:
                    proxies.append(proxy)
        return proxies, errors

    def _wininet(self) -> List[Tuple[str, int]]:
        reg = self.winreg
        root = getattr(reg, "HKEY_USERS", HKEY_USERS)
        sids: List[str] = []
        try:
            with reg.OpenKey(root, "") as users:
                for index in range(4 * MAX_USERS):
                    try:
                        name = reg.EnumKey(users, index)
                    except OSError as exc:
                        if getattr(exc, "winerror", None) == 259:  # ERROR_NO_MORE_ITEMS
                            break
                        raise
                    if isinstance(name, str) and _USER_SID.match(name):
                        sids.append(name)
                        if len(sids) >= MAX_USERS:
                            break
        except OSError as exc:
            raise ReadFailed(f"HKEY_USERS: {describe(exc)}") from None
        out: List[Tuple[str, int]] = []
        denied = []
        for sid in sids:
            try:
                with reg.OpenKey(root, f"{sid}\\{SETTINGS}") as key:
                    enable = _value(reg, key, "ProxyEnable")
                    server = _value(reg, key, "ProxyServer")
            except FileNotFoundError:
                continue
            except OSError as exc:
                denied.append(f"HKEY_USERS\\{sid}\\{SETTINGS}: {describe(exc)}")
                continue
            if isinstance(enable, int) and enable == 1 and isinstance(server, str):
                out.extend(p for p in parse_proxy_server(server) if p not in out)
        if denied:
            self._partial = f"{denied[0]}{f' (and {len(denied) - 1} more)' if len(denied) > 1 else ''}"
        return out

    def _winhttp(self) -> List[Tuple[str, int]]:
        try:
            config = self.win32inet.WinHttpGetDefaultProxyConfiguration()
        except Exception as exc:
            raise ReadFailed(f"WinHTTP proxy: {describe(exc)}") from None
        # (dwAccessType, lpszProxy, lpszProxyBypass); 3: WINHTTP_ACCESS_TYPE_NAMED_PROXY
        if not isinstance(config, tuple) or len(config) != 3:
            raise ReadFailed("WinHTTP proxy: an unexpected answer") from None
        access, proxy, _bypass = config
        if access != 3 or not isinstance(proxy, str):
            return []
        return parse_proxy_server(proxy)

    def _environment(self) -> List[Tuple[str, int]]:
        out: List[Tuple[str, int]] = []
        for name in _ENV:
            value = self.environ.get(name)
            if value:
                parsed = parse_proxy(value[:MAX_TEXT])
                if parsed is not None and parsed not in out:
                    out.append(parsed)
        return out


def _value(reg, key, name: str):
    """A registry value's data, None if it is not there."""
    try:
        data, _type = reg.QueryValueEx(key, name)
    except FileNotFoundError:
        return None
    if isinstance(data, str):
        return data[:MAX_TEXT]
    return data
