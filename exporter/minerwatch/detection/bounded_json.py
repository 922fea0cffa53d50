"""JSON a host user wrote, parsed as a miner reads it, at a bounded cost.

Miners read their configuration with lenient parsers: XMRig's rapidjson accepts `//` and `/* */`
comments and trailing commas, xmr-stak's pools.txt and config.txt are a list of `"key" : value,`
pairs without the outer braces. `parse` accepts the same, so that a comment or a trailing comma
does not hide a config that the miner itself reads happily.

Cost: the caller bounds the text (a few MiB). What the parsed document costs in memory is about
the number of values it holds (a list of a million `{}` is 90 MB in Python), so a text with more
than `max_values` commas, colons and brackets (inside strings too: counting them is one pass in C)
is not parsed (`TOO_BIG`), and the caller searches it as text instead. Padding with white space
or a long string costs its own size only, so it is parsed. Nesting is bounded by the json
module's recursion check (RecursionError is caught). The lenient pass (comments, trailing commas)
runs only on texts up to `LENIENT_BYTES`: on a few MiB of `/*` it costs about a second, and a
miner's commented config is a few KiB.
"""

from __future__ import annotations

import json
import re
from typing import Any

NOT_JSON = object()  # no reading of the text as JSON (or as pairs without braces)
TOO_BIG = object()  # JSON with more values than the bound: not parsed

# A JSON string (the unrolled form: linear, also where the closing quote is missing).
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
# What rapidjson tolerates and the json module does not: comments and trailing commas. Strings
# are matched first and kept, so `"//"` and `"/*"` inside them stay. An unclosed block comment
# runs to the end (as it would for the miner), which keeps the scan linear.
_LENIENT_RE = re.compile(rf"(?P<s>{_STRING})|//[^\n]*|/\*[\s\S]*?(?:\*/|\Z)|,(?=\s*[\]}}])")
_STRUCTURE = (",", ":", "[", "{")
LENIENT_BYTES = 256 << 10


def _structure_count(text: str) -> int:
    """An upper bound on the values the document holds: its commas, colons and brackets."""
    return sum(text.count(c) for c in _STRUCTURE)


def parse(text: str, max_values: int = 100_000) -> Any:
    """The document, or NOT_JSON, or TOO_BIG. Accepts comments, trailing commas, a UTF-8 BOM and
    `"key" : value,` pairs without braces (xmr-stak's files)."""
    text = text.lstrip("\ufeff")
    if _structure_count(text) > max_values:
        return TOO_BIG
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    if len(text) > LENIENT_BYTES:
        return NOT_JSON
    lenient = _LENIENT_RE.sub(r"\g<s>", text).strip()
    if not lenient.startswith(("{", "[")):
        lenient = "{" + lenient.rstrip(",") + "}"
    try:
        return json.loads(lenient)
    except (ValueError, RecursionError):
        return NOT_JSON
