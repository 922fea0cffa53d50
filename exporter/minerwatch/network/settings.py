"""The `network:` section of the config file (docs/network.md describes each key)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Tuple

import yaml

from minerwatch.network.pools import normalize_domain
from minerwatch.yaml_file import Node, section_fields

KEYS = (
    "ioc_files", "exclude_domains", "extra_ports", "resolve_interval_seconds",
    "resolve_timeout_seconds", "resolve_max_names", "sniffer",
)


@dataclass(frozen=True)
class NetworkSettings:
    ioc_files: Tuple[Tuple[str, str], ...] = ()  # (path to open, as written)
    exclude_domains: Tuple[str, ...] = ()
    extra_ports: Tuple[int, ...] = ()
    resolve_interval_seconds: float = 600.0
    resolve_timeout_seconds: float = 2.0
    resolve_max_names: int = 0  # no look-ups from the desk: resolve centrally (resolve-pools) or learn passively
    sniffer: str = "auto"  # auto | on | off
    # where `sniffer: on` was said, for the start-up error when no packet socket opens
    sniffer_node: Optional[Node] = field(default=None, compare=False)


def read_settings(node: Optional[Node]) -> NetworkSettings:
    """The `network:` section; raises ConfigError naming file:line: key. IOC file paths are
    taken from the config file's directory."""
    fields = section_fields(node, KEYS)
    if not fields:
        return NetworkSettings()
    base = os.path.dirname(os.path.abspath(node.file))
    values: dict = {}
    ioc_files, exclude_domains, extra_ports = [], [], []
    for item in fields["ioc_files"].items() if "ioc_files" in fields else []:
        path = item.string()
        real = path if os.path.isabs(path) else os.path.join(base, path)
        if not os.access(real, os.R_OK) or os.path.isdir(real):
            raise item.error(f"cannot read IOC file {path}")
        ioc_files.append((real, path))
    for item in fields["exclude_domains"].items() if "exclude_domains" in fields else []:
        domain = normalize_domain(item.string())
        if domain is None:
            raise item.error("must be a domain such as example.com")
        exclude_domains.append(domain)
    for item in fields["extra_ports"].items() if "extra_ports" in fields else []:
        port = item.integer(minimum=1)
        if port > 65535:
            raise item.error("must be a port number from 1 to 65535")
        extra_ports.append(port)
    if "resolve_interval_seconds" in fields:
        values["resolve_interval_seconds"] = fields["resolve_interval_seconds"].number(minimum=10)
    if "resolve_timeout_seconds" in fields:
        values["resolve_timeout_seconds"] = fields["resolve_timeout_seconds"].number(minimum=0.1)
    if "resolve_max_names" in fields:
        values["resolve_max_names"] = fields["resolve_max_names"].integer(minimum=0)
    if "sniffer" in fields:
        child = fields["sniffer"]
        value = child.node.value if isinstance(child.node, yaml.ScalarNode) else None
        value = {"true": "on", "yes": "on", "false": "off", "no": "off"}.get(str(value).lower(), value)
        if value not in ("auto", "on", "off"):
            raise child.error("must be auto, on or off")
        values["sniffer"], values["sniffer_node"] = value, child
    return NetworkSettings(tuple(ioc_files), tuple(exclude_domains), tuple(extra_ports), **values)
