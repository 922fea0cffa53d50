"""Microsoft Defender for Endpoint on Linux: exclusions in its managed configuration JSON.

Schema (Microsoft's "Set preferences for Defender for Endpoint on Linux"):
    {"antivirusEngine": {
        "exclusionsMergePolicy": "merge" | "admin_only",
        "exclusions": [
            {"$type": "excludedPath", "path": "/opt/x", "isDirectory": true},
            {"$type": "excludedFileExtension", "extension": ".bin"},
            {"$type": "excludedFileName", "name": "xmrig"}]},     # a process: name or full path
     "exclusionSettings": {"exclusions": [... same items, with "scopes" ...]}}   # 101.23092+
Exclusions added locally with `mdatp exclusion ... add` are not in this file; with the merge
policy `merge` (the default) they apply too, which `local_merged` reports.
"""

from __future__ import annotations

import json
from typing import Any, List, Optional

from minerwatch.antivirus.model import EXTENSION, GLOB, LITERAL, PATH, PROCESS, Exclusion, Reading, SourceError
from minerwatch.antivirus.model import decode_text

PRODUCT = "mdatp"
KINDS = (PATH, PROCESS, EXTENSION)
DEFAULT_PATH = "/etc/opt/microsoft/mdatp/managed/mdatp_managed.json"

# $type -> (kind, the field holding the value, syntax)
_TYPES = {
    "excludedPath": (PATH, "path", GLOB),
    "excludedFileExtension": (EXTENSION, "extension", LITERAL),
    "excludedFileName": (PROCESS, "name", GLOB),
}


def parse_mdatp(data: bytes, where: str) -> Reading:
    text = decode_text(data, where)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{where}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise SourceError(f"{where}: the top level must be a JSON object")

    out: List[Exclusion] = []
    engine = _object(doc, "antivirusEngine", where) or {}
    policy = engine.get("exclusionsMergePolicy", "merge")
    if policy not in ("merge", "admin_only"):
        raise SourceError(f"{where}: antivirusEngine.exclusionsMergePolicy: must be merge or admin_only")
    out += _items(engine, "antivirusEngine", where)
    settings = _object(doc, "exclusionSettings", where)
    if settings is not None:
        out += _items(settings, "exclusionSettings", where)
    return Reading(out, local_merged=policy == "merge")


def _object(doc: dict, key: str, where: str) -> Optional[dict]:
    value = doc.get(key)
    if value is not None and not isinstance(value, dict):
        raise SourceError(f"{where}: {key}: must be a JSON object")
    return value


def _items(section: dict, name: str, where: str) -> List[Exclusion]:
    items = section.get("exclusions", [])
    if not isinstance(items, list):
        raise SourceError(f"{where}: {name}.exclusions: must be a list")
    out = []
    for i, item in enumerate(items):
        key = f"{name}.exclusions[{i}]"
        if not isinstance(item, dict):
            raise SourceError(f"{where}: {key}: must be a JSON object")
        kind_type = item.get("$type")
        if kind_type not in _TYPES:
            if not isinstance(kind_type, str):
                raise SourceError(f"{where}: {key}.$type: missing")
            continue  # a newer exclusion type: leave it to the product
        kind, field, syntax = _TYPES[kind_type]
        value = item.get(field)
        if not isinstance(value, str) or not value:
            raise SourceError(f"{where}: {key}.{field}: must be a non-empty string")
        _flag(item, "isDirectory", key, where)
        out.append(Exclusion(PRODUCT, kind, value, syntax, where=f"{where} {key}"))
    return out


def _flag(item: dict, field: str, key: str, where: str) -> Any:
    # isDirectory only tells mdatp how to read the path; a directory and a file are both covered
    # by the same match (the path itself or anything under it), so it is only checked here.
    value = item.get(field, False)
    if not isinstance(value, bool):
        raise SourceError(f"{where}: {key}.{field}: must be true or false")
    return value
