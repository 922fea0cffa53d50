"""Byte-pattern files for executables: data/exe_patterns.txt and the user's
`signatures.exe_pattern_files`, one `family pattern` per line (`#` comments, `\\xNN` escapes).

Read here, apart from the scan (exe_content.py), so the configuration can load and check them
(signatures.py) without the scanner, and the scanner can take signatures' Match: imports run one
way, signatures -> exe_patterns <- exe_content -> signatures.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Tuple

from minerwatch.data import EXE_PATTERNS, shipped_lines
from minerwatch.text import host_text

_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|\\)")


class PatternError(ValueError):
    """A bad pattern line; the message starts with `file:line:`."""


def parse_patterns(lines: Iterable[str], name: str) -> List[Tuple[str, bytes]]:
    """(family, pattern bytes) of a pattern file: `family pattern`, `#` comments, `\\xNN` escapes."""
    out = []
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            raise PatternError(f"{name}:{number}: expected `family pattern`, got {host_text(line.strip(), 80)!r}")
        family, text = parts
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", family):
            raise PatternError(f"{name}:{number}: family must be lowercase letters, digits and _: {host_text(family, 40)!r}")
        try:
            pattern = _ESCAPE.sub(lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1)[1:], 16)]),
                                  text.encode("utf-8"))
        except UnicodeEncodeError:
            raise PatternError(f"{name}:{number}: pattern is not valid text") from None
        if len(pattern) < 4:
            raise PatternError(f"{name}:{number}: pattern shorter than 4 bytes would match everywhere")
        if len(pattern) > 256:
            raise PatternError(f"{name}:{number}: pattern longer than 256 bytes")
        out.append((family, pattern))
    return out


def load_pattern_file(path: str) -> List[Tuple[str, bytes]]:
    """A user's pattern file; raises PatternError naming file:line (or the file when unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read(1 << 20).splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PatternError(f"{path}: cannot read pattern file: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_patterns(lines, path)


def shipped_patterns() -> List[Tuple[str, bytes]]:
    return parse_patterns(shipped_lines(EXE_PATTERNS), EXE_PATTERNS)
