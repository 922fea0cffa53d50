"""Reading a YAML file a user gives: bounded, and every error one line naming file, line and key.

    config.yml:7: allowlist[0].sha256: must be 64 hexadecimal characters

`load_yaml` reads only regular files (a FIFO or a device would block start-up), at most MAX_BYTES
of UTF-8 text, and bounds nesting and alias expansion, so a bad file is a one-line error, never a
hang, a traceback or gigabytes of memory. `Node` keeps where each value came from; the areas that
read a section (config.py lists them) and the web config use it.
"""

from __future__ import annotations

import math
import os
import stat
from typing import Any, Dict, List, Optional

import yaml

from minerwatch.text import host_text

# Real config files are a few KiB; the limit keeps parsing (pure-Python YAML) under a few seconds.
MAX_BYTES = 1 << 20
MAX_DEPTH = 32  # no section nests deeper than 4; deep nesting only exhausts the parser's stack
MAX_NODES = 1_000_000  # after alias expansion ("billion laughs"); more than 1 MiB can hold without aliases


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
        # Keys and values come from the file: escaped so the error stays one printable line.
        return ConfigError(host_text(f"{self.file}:{self.line}: {self.key}: {problem}"))

    def mapping(self, allowed) -> Dict[str, "Node"]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error("must be a mapping")
        out: Dict[str, Node] = {}
        for key_node, value_node in self.node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise Node(key_node, self.file, self.key or "(top level)").error("keys must be plain strings")
            key = key_node.value
            child = Node(value_node, self.file, f"{self.key}.{key}" if self.key else key)
            if allowed is not None and key not in allowed:
                known = ", ".join(sorted(allowed))
                raise Node(key_node, self.file, child.key).error(f"unknown key (known: {known})")
            if key in out:
                raise Node(key_node, self.file, child.key).error("given twice")
            out[key] = child
        return out

    @property
    def empty(self) -> bool:
        """`key:` with nothing after it (or `~`, `null`): a section given empty."""
        return isinstance(self.node, yaml.ScalarNode) and self.node.tag == _NULL_TAG

    def items(self) -> List["Node"]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error("must be a list")
        return [Node(n, self.file, f"{self.key}[{i}]") for i, n in enumerate(self.node.value)]

    def _scalar(self) -> Any:
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.error("must be a single value")
        try:
            return yaml.SafeLoader("").construct_object(self.node)
        except yaml.YAMLError as exc:  # an unknown tag, bad !!binary
            raise self.error(f"cannot read the value: {getattr(exc, 'problem', None) or exc}") from None
        except (ValueError, OverflowError) as exc:  # a date such as 2024-13-45, an int of 5000 digits
            raise self.error(f"cannot read the value: {exc}") from None

    def string(self) -> str:
        value = self._scalar()
        if not isinstance(value, str) or not value:
            raise self.error("must be a non-empty string")
        return value

    def strings(self) -> List[str]:
        return [item.string() for item in self.items()]

    def integer(self, minimum: int = 0, maximum: Optional[int] = None) -> int:
        value = self._scalar()
        if isinstance(value, bool) or not isinstance(value, int) or not _in_range(value, minimum, maximum):
            raise self.error(f"must be an integer {_range_text(minimum, maximum)}")
        return value

    def number(self, minimum: float = 0.0, maximum: Optional[float] = None) -> float:
        """A finite number: .nan would make every comparison false and silently turn a check off."""
        value = self._scalar()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"must be a number {_range_text(minimum, maximum)}")
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            value = math.inf
        if not math.isfinite(value):
            raise self.error(f"must be a finite number {_range_text(minimum, maximum)}, not {self.node.value}")
        if not _in_range(value, minimum, maximum):
            raise self.error(f"must be a number {_range_text(minimum, maximum)}")
        return value

    def boolean(self) -> bool:
        value = self._scalar()
        if not isinstance(value, bool):
            raise self.error("must be true or false")
        return value


_NULL_TAG = "tag:yaml.org,2002:null"


def section_fields(node: Optional[Node], allowed) -> Dict[str, Node]:
    """The keys of a config section; an absent or empty section has none (all defaults)."""
    if node is None or node.empty:
        return {}
    return node.mapping(allowed)


def section_items(node: Optional[Node]) -> List[Node]:
    """The entries of a list section; an absent or empty one has none."""
    if node is None or node.empty:
        return []
    return node.items()


def _in_range(value, minimum, maximum) -> bool:
    return value >= minimum and (maximum is None or value <= maximum)


def _range_text(minimum, maximum) -> str:
    def show(x) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    return f">= {show(minimum)}" if maximum is None else f"from {show(minimum)} to {show(maximum)}"


class _BoundedLoader(yaml.SafeLoader):
    """Composes nodes like SafeLoader, refusing deep nesting, self-containing aliases and alias
    bombs: a small file whose aliases expand to billions of nodes."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0  # nodes composed so far, counting each alias as its whole subtree
        self._sizes: Dict[int, int] = {}  # id(node) -> its expanded size, for aliases to it
        self._open_anchors: set = set()

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{event.anchor} refers to a node that contains it", event.start_mark)
            node = super().compose_node(parent, index)
            self._count(self._sizes.get(id(node), 1), event.start_mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        if event.anchor is not None:
            self._open_anchors.add(event.anchor)
        before = self._expanded
        node = super().compose_node(parent, index)
        self._open_anchors.discard(event.anchor)
        self._depth -= 1
        self._count(1, event.start_mark)
        if isinstance(node, yaml.CollectionNode):
            self._sizes[id(node)] = self._expanded - before
        return node

    def _count(self, nodes: int, mark) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_NODES} nodes once aliases are expanded", mark)


def _read_regular_file(path: str) -> bytes:
    """At most MAX_BYTES of a regular file, without ever blocking on a FIFO, socket or device."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(f"{path}: not a regular file")
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # replaced between stat and open
                raise ConfigError(f"{path}: not a regular file")
            if info.st_size > MAX_BYTES:
                raise ConfigError(f"{path}: larger than the limit of {MAX_BYTES // 1024} KiB")
            chunks, size = [], 0
            while size <= MAX_BYTES:  # the size may grow after fstat: read no more than the limit
                chunk = os.read(fd, MAX_BYTES + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if size > MAX_BYTES:
        raise ConfigError(f"{path}: larger than the limit of {MAX_BYTES // 1024} KiB")
    return b"".join(chunks)


def _decode(path: str, data: bytes) -> str:
    """UTF-8 text (a leading byte-order mark allowed) with only characters YAML accepts."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None
    text = text[1:] if text.startswith("\ufeff") else text
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise ConfigError(f"{path}:{line}: not a text file: control character {host_text(bad.group())}")
    return text


def load_yaml(path: str) -> Optional[Node]:
    """The document's root node (None for an empty file); ConfigError names file and line."""
    text = _decode(path, _read_regular_file(path))
    try:
        loader = _BoundedLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        problem = getattr(exc, "problem", None) or exc
        context = getattr(exc, "context", None)
        if context and str(problem).startswith("but "):  # "expected a single document ..., but found ..."
            problem = f"{context}, {problem}"
        raise ConfigError(host_text(f"{where}: invalid YAML: {problem}")) from None
    return None if root is None else Node(root, path, "")

