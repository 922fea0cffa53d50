"""Hashes of the configuration in effect, so that a desk whose configuration was changed, or
differs from its peers', shows on the server (rules/src/tamper.yml).

    minerwatch_config_hash_info{kind="settings",sha256="5f0c..."} 1
    minerwatch_config_hash_info{kind="patterns",sha256="e3b0..."} 1
    minerwatch_config_hash_info{kind="ioc_files",sha256="e3b0..."} 1
    minerwatch_config_hash_info{kind="shipped_data",sha256="9a41..."} 1

Kinds, each changing for one reason:
    settings      every setting after defaults and flags: the config file's sections but
                  `signatures` (thresholds, the allowlist, network, antivirus...), the collectors
                  enabled, the host paths and the process reader; canonical JSON
    patterns      the `signatures` section: extra names and patterns, exe pattern files' content
                  as loaded
    ioc_files     the IOC files' content now (each re-hashed only when its size, mtime or inode
                  changes: one stat per file a scrape); a missing or unreadable file counts as such
    shipped_data  the package's data files (pools, ports, exe patterns) as loaded

Only hashes leave the host: nothing of the configuration itself (it may name internal hosts).
Always on: no collector flag turns it off.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Tuple

from minerwatch import data
from minerwatch.host.digests import file_hasher, small_sha256
from minerwatch.host.files import BoundedRead, open_regular
from minerwatch.serving.metrics import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from minerwatch.collectors.base import CollectorRunner, Context

KINDS = ("settings", "patterns", "ioc_files", "shipped_data")
MAX_IOC_BYTES = 256 << 20  # past this an IOC file is hashed by its first bytes and its size
_NOT_SETTINGS = ("file", "where")  # where the config was read from, not what it says
_SHIPPED = (data.POOLS, data.POOL_PORTS, data.EXE_PATTERNS, data.VENDOR_EXCLUSIONS, data.WINDOWS_NAMES)


def canonical(value) -> object:
    """`value` (settings dataclasses, tuples, frozensets, bytes, numbers) as plain JSON data in
    one order, so that the same settings always give the same text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name not in _NOT_SETTINGS}
    if isinstance(value, (frozenset, set)):
        return sorted((canonical(v) for v in value), key=_json)
    if isinstance(value, (tuple, list)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return type(value).__name__  # an object with no settings of its own (a compiled pattern)


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_of(value) -> str:
    return small_sha256(_json(canonical(value)).encode()).hex()


def settings_hashes(context: "Context", collectors: Iterable[str]) -> Dict[str, str]:
    """The `settings` and `patterns` hashes of a context (computed once per configuration)."""
    config = context.config
    reader = type(context.processes.reader).__name__ if context.processes is not None else ""
    settings = {
        "config": {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                   if f.name not in ("file", "signatures")},
        "collectors": sorted(collectors),
        "paths": [context.procfs, context.sysfs, context.rootfs],
        "reader": reader,
    }
    return {"settings": sha256_of(settings), "patterns": sha256_of(config.signatures)}


def shipped_data_hash() -> str:
    return sha256_of([[name, list(data.shipped_lines(name))] for name in _SHIPPED])


class FileHashes:
    """sha256 of files, kept while each file's (device, inode, size, mtime) stays the same."""

    def __init__(self):
        self._known: Dict[str, Tuple[Tuple[int, ...], str]] = {}

    def hash_of(self, path: str) -> str:
        try:
            info = os.stat(path)
        except OSError as exc:
            return f"unreadable:{exc.errno}"
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        known = self._known.get(path)
        if known is not None and known[0] == key:
            return known[1]
        digest = _file_sha256(path)
        self._known[path] = (key, digest)
        return digest


def _file_sha256(path: str) -> str:
    h = file_hasher()  # OpenSSL's, loaded only where IOC files are configured
    try:
        with open_regular(path) as f:
            read = BoundedRead(f, MAX_IOC_BYTES)
            for chunk in read.chunks():
                h.update(chunk)
            if read.truncated:
                h.update(f"truncated:{read.size_seen}".encode())
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return h.hexdigest()


class ConfigHashes:
    """Registered beside the collector runner: the hashes of the configuration it runs now
    (`runner.context`, replaced on reload)."""

    def __init__(self, runner: "CollectorRunner", shipped: Callable[[], str] = shipped_data_hash):
        self.runner = runner
        self._shipped = shipped
        self._lock = threading.Lock()  # scrapes may run at the same time
        self._for: Optional[Tuple[object, Tuple[str, ...]]] = None
        self._settings: Dict[str, str] = {}
        self._files = FileHashes()

    def hashes(self) -> Dict[str, str]:
        context = self.runner.context
        if context is None:
            return {}
        names = tuple(c.name for c in self.runner.collectors)
        with self._lock:
            if self._for is None or self._for[0] is not context or self._for[1] != names:
                self._settings = {**settings_hashes(context, names), "shipped_data": self._shipped()}
                self._for = (context, names)
            ioc = [[shown, self._files.hash_of(path)] for path, shown in context.config.network.ioc_files]
            return {**self._settings, "ioc_files": sha256_of(ioc)}

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "minerwatch_config_hash_info",
            "sha256 of the configuration in effect, by kind: settings (after defaults and flags, the "
            "allowlist and enabled collectors included), patterns (the signatures section), ioc_files "
            "(their content now), shipped_data (the package's data files).",
            labels=["kind", "sha256"],
        )

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        hashes = self.hashes()
        for kind in KINDS:
            if kind in hashes:
                family.add_metric([kind, hashes[kind]], 1)
        yield family

    def describe(self) -> List[Metric]:
        return [self._family()]  # registering must not hash files
