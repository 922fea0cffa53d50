"""Host text made safe once, where it is read: names, paths and lines a hostile user controls.

A process can name its executable with bytes that are not UTF-8, put newlines or terminal escapes
in its command line, or make a name megabytes long. Every string that comes from the host (a
/proc file, a readlink, a registry value, an IOC or config line, a packet) goes through `host_text`
before anything else sees it, so that a label, a log line or a table row can never fail to encode
and never carries control characters.

Undecodable bytes and control characters become visible escapes (`\\xff`, `\\n`), not U+FFFD:
an investigator can still tell `bad\\xffdir` from `bad\\xfedir`.
"""

from __future__ import annotations

import re
from typing import List, Optional, Union

# C0 controls, DEL, C1 controls, lone surrogates (from os.fsdecode / surrogateescape), the
# Unicode line and paragraph separators that terminals and log viewers treat as newlines, the
# bidirectional overrides that make a table row read differently from what it holds, and the
# characters that render as nothing (zero-width space and joiners, direction marks, word joiner,
# BOM, soft hyphen): `xmr\u200dig` must not look like `xmrig` to the person reading it.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069"
    "\ufeff\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: "re.Match[str]") -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte surrogateescape could not decode
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def host_text(value: Union[str, bytes, None], limit: Optional[int] = None) -> str:
    """`value` as printable, encodable text; at most `limit` characters (with a trailing '…')."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    if limit is not None and len(value) > limit * 4:
        value = value[: limit * 4]  # bound the work before escaping expands it
    if _UNSAFE.search(value):
        value = _UNSAFE.sub(_escape, value)
    if limit is not None and len(value) > limit:
        value = value[: max(limit - 1, 0)] + "…"
    return value


def host_text_items(data: bytes, separator: str = "\0") -> List[str]:
    """`data` split on `separator` (NUL-separated /proc files: environ, cmdline), each item as
    `host_text` makes it; one decode and one scan for the common case where all is clean."""
    text = data.decode("utf-8", "surrogateescape")
    items = text.split(separator)
    if _UNSAFE.search(text.replace(separator, "")) is None:
        return items
    return [host_text(item) for item in items]
