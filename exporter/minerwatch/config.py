"""The --config.file YAML: loading with line numbers, and the sections the process side reads.

Every error is one line naming the file, the line and the key, e.g.
    config.yml:7: allowlist[0].sha256: must be 64 hexadecimal characters
Other areas (network, antivirus) read their own section with the same `Node` helpers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import yaml

from minerwatch.allowlist import ALLOWLIST_KEYS, AllowRule


class ConfigError(Exception):
    """A bad configuration; str() is the one-line message for the user."""


class Node:
    """A YAML node that knows where it came from, so every error can say file, line and key."""

    def __init__(self, node: yaml.Node, file: str, key: str):
        self.node, self.file, self.key = node, file, key

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}:{self.line}: {self.key}: {problem}")

    def mapping(self, allowed) -> Dict[str, "Node"]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error("must be a mapping")
        out: Dict[str, Node] = {}
        for key_node, value_node in self.node.value:
            key = key_node.value
            child = Node(value_node, self.file, f"{self.key}.{key}" if self.key else key)
            if allowed is not None and key not in allowed:
                known = ", ".join(sorted(allowed))
                raise Node(key_node, self.file, child.key).error(f"unknown key (known: {known})")
            if key in out:
                raise Node(key_node, self.file, child.key).error("given twice")
            out[key] = child
        return out

    def items(self) -> List["Node"]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error("must be a list")
        return [Node(n, self.file, f"{self.key}[{i}]") for i, n in enumerate(self.node.value)]

    def _scalar(self) -> Any:
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.error("must be a single value")
        return yaml.SafeLoader("").construct_object(self.node)

    def string(self) -> str:
        value = self._scalar()
        if not isinstance(value, str) or not value:
            raise self.error("must be a non-empty string")
        return value

    def strings(self) -> List[str]:
        return [item.string() for item in self.items()]

    def integer(self, minimum: int = 0) -> int:
        value = self._scalar()
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"must be an integer >= {minimum}")
        return value

    def number(self, minimum: float = 0.0) -> float:
        value = self._scalar()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise self.error(f"must be a number >= {minimum:g}")
        return float(value)

    def boolean(self) -> bool:
        value = self._scalar()
        if not isinstance(value, bool):
            raise self.error("must be true or false")
        return value


# Top-level sections and the module that reads each; an unknown section is an error.
SECTIONS = ("process", "signatures", "allowlist", "network", "antivirus", "gpu")


@dataclass
class Config:
    file: str = ""
    sections: Dict[str, Node] = field(default_factory=dict)
    # process side, read here
    top_k: Optional[int] = None
    max_suspects: Optional[int] = None
    top_min_cpu_cores: Optional[float] = None
    suspect_busy_cores: Optional[float] = None
    cmdline_max_length: Optional[int] = None
    extra_names: List[str] = field(default_factory=list)
    extra_patterns: List[str] = field(default_factory=list)
    allowlist: List[AllowRule] = field(default_factory=list)

    def section(self, name: str) -> Optional[Node]:
        return self.sections.get(name)


def load_yaml(path: str) -> Optional[Node]:
    """The document's root node (None for an empty file); ConfigError names file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            root = yaml.compose(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return None if root is None else Node(root, path, "")


def load(path: Optional[str]) -> Config:
    if not path:
        return Config()
    root = load_yaml(path)
    config = Config(file=path)
    if root is None:
        return config
    config.sections = root.mapping(SECTIONS)
    _read_process(config)
    _read_signatures(config)
    _read_allowlist(config)
    return config


def _read_process(config: Config) -> None:
    node = config.section("process")
    if node is None:
        return
    for key, child in node.mapping(
        ("top_k", "max_suspects", "top_min_cpu_cores", "suspect_busy_cores", "cmdline_max_length")
    ).items():
        if key in ("top_min_cpu_cores", "suspect_busy_cores"):
            setattr(config, key, child.number())
        else:
            setattr(config, key, child.integer(minimum=16 if key == "cmdline_max_length" else 0))


def _read_signatures(config: Config) -> None:
    node = config.section("signatures")
    if node is None:
        return
    fields = node.mapping(("extra_names", "extra_patterns"))
    if "extra_names" in fields:
        config.extra_names = fields["extra_names"].strings()
    if "extra_patterns" in fields:
        for item in fields["extra_patterns"].items():
            pattern = item.string()
            try:
                re.compile(pattern)
            except re.error as exc:
                raise item.error(f"invalid regular expression: {exc}") from None
            config.extra_patterns.append(pattern)


_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def _read_allowlist(config: Config) -> None:
    node = config.section("allowlist")
    if node is None:
        return
    for item in node.items():
        fields = {key: child for key, child in item.mapping(ALLOWLIST_KEYS).items()}
        if not fields:
            raise item.error(f"an allowlist entry needs at least one of {', '.join(ALLOWLIST_KEYS)}")
        values = {key: child.string() for key, child in fields.items()}
        if "sha256" in values and not _SHA256.match(values["sha256"]):
            raise fields["sha256"].error("must be 64 hexadecimal characters")
        config.allowlist.append(AllowRule(where=f"{item.file}:{item.line}", **values))
