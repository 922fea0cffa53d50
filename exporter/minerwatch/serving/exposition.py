"""The /metrics body: Prometheus text 0.0.4 or OpenMetrics 1.0.0, as the scraper's Accept asks.

`choose_encoder(accept)` negotiates as client_python 0.26 does and returns (encoder, content
type); an encoder takes anything with `collect()` (minerwatch.serving.metrics.Registry, or a
prometheus_client registry: only the families' fields are read) and returns bytes identical to
client_python's for the same families. tests/test_exposition.py holds the two side by side.

An encoder runs on every scrape, so what repeats between scrapes is worked out once: the HELP
and TYPE lines of a family, and the escaped forms of metric and label names.

Name escaping (`escaping=` in Accept, Prometheus 3) only changes names outside the classic
character set; minerwatch's never are, but the schemes are followed as client_python does.
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import Callable, Dict, List, Tuple

TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
TEXT_1_0_0 = "text/plain; version=1.0.0; charset=utf-8"
OPENMETRICS_1_0_0 = "application/openmetrics-text; version=1.0.0; charset=utf-8"

ALLOW_UTF8, UNDERSCORES, DOTS, VALUES = "allow-utf-8", "underscores", "dots", "values"
_SCHEMES = (ALLOW_UTF8, UNDERSCORES, DOTS, VALUES)

# `$` (not `\Z`) as client_python writes them: a name ending in a newline counts as classic there.
_CLASSIC_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
_CLASSIC_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*$")
_CACHE_LIMIT = 20_000  # entries per cache; cleared when full (a collector with unbounded names)

Encoder = Callable[[object], bytes]


# -- negotiation --------------------------------------------------------------------------------

def _parameter(parts: List[str], key: str) -> str:
    """The value of `key=` among a media range's parameters; '' when absent."""
    for part in parts:
        name, sep, value = part.strip().partition("=")
        if sep and name == key:
            return value
    return ""


_VERSION = re.compile(r"[0-9A-Za-z.+-]+\Z")


def _compare_version(version: str, other: Tuple[int, ...]):
    """-1, 0 or 1 comparing a version string with `other` (numeric parts as numbers, as
    client_python compares them); None for one that does not compare (`1.x`, `abc`), where
    client_python raises TypeError in the middle of a request."""
    if not _VERSION.match(version):
        return None
    parts = []
    for piece in version.split("."):
        try:
            parts.append(int(piece))
        except ValueError:
            parts.append(piece)
    try:
        return (tuple(parts) > other) - (tuple(parts) < other)
    except TypeError:
        return None


def _version_at_least_1(version: str) -> bool:
    order = _compare_version(version, (1, 0, 0))
    return order is not None and order >= 0


def choose_encoder(accept_header) -> Tuple[Encoder, str]:
    """The encoder and Content-Type for an Accept header (None or '' means text 0.0.4).

    OpenMetrics when an `application/openmetrics-text` range comes first with no version or a
    version >= 1.0.0; text 1.0.0 for `text/plain;version>=1.0.0`; otherwise text 0.0.4 (what
    curl's `*/*`, browsers and anything unknown get). q-values are not weighed, as in client_python."""
    for media_range in (accept_header or "").split(","):
        parts = media_range.split(";")
        kind = parts[0].strip()
        if kind not in ("application/openmetrics-text", "text/plain"):
            continue
        version = _parameter(parts, "version")
        escaping = _parameter(parts, "escaping")
        if escaping not in _SCHEMES:
            escaping = UNDERSCORES
        if kind == "application/openmetrics-text":
            if not version:
                return partial(encode_openmetrics, escaping=UNDERSCORES, version="1.0.0"), OPENMETRICS_1_0_0
            if _version_at_least_1(version):
                return (partial(encode_openmetrics, escaping=escaping, version=version),
                        f"application/openmetrics-text; version={version}; charset=utf-8; escaping={escaping}")
        elif version and _version_at_least_1(version):
            return partial(encode_text, escaping=escaping), f"{TEXT_1_0_0}; escaping={escaping}"
    return encode_text, TEXT_0_0_4


# -- values -------------------------------------------------------------------------------------

def format_value(value) -> str:
    """A sample value as client_python writes it: Python's shortest repr, +Inf/-Inf/NaN, and
    from 1e6 up to 1e16 (where repr is still positional) the exponent form Go would use."""
    number = float(value)
    if 0 <= number < 1e6 or -math.inf < number < 0:
        return repr(number)
    if number == math.inf:
        return "+Inf"
    if number == -math.inf:
        return "-Inf"
    if number != number:
        return "NaN"
    text = repr(number)
    point = text.find(".")
    if point <= 6:  # 1e16 and up: repr has its own exponent already
        return text
    digits = (text[1:point] + text[point + 1:]).rstrip("0")
    mantissa = f"{text[0]}.{digits}" if digits else text[0]
    return f"{mantissa}e+{point - 1:02d}"


def _escape_text(text: str) -> str:
    """Label values (both formats) and OpenMetrics HELP: backslash, newline, double quote."""
    if "\\" in text or "\n" in text or '"' in text:
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return text


def _escape_help_text(text: str) -> str:
    """Text 0.0.4 HELP: backslash and newline only."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


# -- names --------------------------------------------------------------------------------------

def _classic_char(char: str, index: int, colon: bool) -> bool:
    return ("a" <= char <= "z" or "A" <= char <= "Z" or char == "_" or ("0" <= char <= "9" and index > 0)
            or (colon and char == ":"))


def _rewrite(name: str, escaping: str, colon: bool) -> str:
    """A name rewritten into the classic character set by an escaping scheme (Prometheus 3's
    underscores, dots, values); allow-utf-8 only backslash-escapes."""
    if escaping == ALLOW_UTF8:
        return _escape_text(name)
    out = ["U__"] if escaping == VALUES else []
    for index, char in enumerate(name):
        if escaping == UNDERSCORES:
            out.append(char if _classic_char(char, index, colon) else "_")
        elif char == "_":
            out.append("__")
        elif escaping == DOTS:
            out.append("_dot_" if char == "." else char if _classic_char(char, index, colon) else "__")
        elif _classic_char(char, index, colon):
            out.append(char)
        elif 0xD800 <= ord(char) <= 0xDFFF:  # a lone surrogate: not a character UTF-8 can carry
            out.append("_FFFD_")
        else:
            out.append(f"_{ord(char):x}_")
    return "".join(out)


def _escaped_name(name: str, escaping: str, metric: bool) -> str:
    """A metric name (HELP/TYPE/UNIT lines and text samples) or a label name: quoted under
    allow-utf-8 when outside the classic set, left alone when inside it except under dots."""
    if not name:
        return name
    if metric:
        classic = _CLASSIC_METRIC.match(name) is not None
    else:
        classic = _CLASSIC_LABEL.match(name) is not None and not name.startswith("__")
    if escaping == ALLOW_UTF8:
        return _rewrite(name, escaping, metric) if classic else f'"{_rewrite(name, escaping, metric)}"'
    if classic and escaping != DOTS:
        return name
    return _rewrite(name, escaping, metric)


def _sample_name_uncached(name: str, escaping: str) -> str:
    """OpenMetrics sample lines rewrite the name with the label-name alphabet (no colon) under
    every scheme but allow-utf-8, as client_python does."""
    return _rewrite(name, escaping, False)


class _Names:
    """Escaped names of one kind under one scheme, kept between scrapes (bounded)."""

    def __init__(self, escape: Callable[[str, str], str], escaping: str):
        self._escape, self._escaping = escape, escaping
        self.known: Dict[str, str] = {}

    def add(self, name: str) -> str:
        if len(self.known) >= _CACHE_LIMIT:
            self.known.clear()
        shown = self.known[name] = self._escape(name, self._escaping)
        return shown


_FAMILY_NAMES = {scheme: _Names(partial(_escaped_name, metric=True), scheme) for scheme in _SCHEMES}
_LABEL_NAMES = {scheme: _Names(partial(_escaped_name, metric=False), scheme) for scheme in _SCHEMES}
_SAMPLE_NAMES = {scheme: _Names(_sample_name_uncached, scheme) for scheme in _SCHEMES}


def _shown_family_name(name: str, escaping: str) -> str:
    names = _FAMILY_NAMES[escaping]
    shown = names.known.get(name)
    return names.add(name) if shown is None else shown


def _labels(labels: Dict[str, str], names: _Names) -> str:
    """`k="v",k2="v2"` sorted by name, without braces."""
    known = names.known
    parts = []
    for key, value in sorted(labels.items()):
        shown = known.get(key)
        if shown is None:
            shown = names.add(key)
        if "\\" in value or "\n" in value or '"' in value:
            value = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        parts.append(f'{shown}="{value}"')
    return ",".join(parts)


# -- text 0.0.4 / 1.0.0 -------------------------------------------------------------------------

# Family types as the text format names them (it has no info, stateset, gaugehistogram, unknown).
_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
# OpenMetrics-only samples, moved into gauges of their own after the family in the text format.
_TEXT_MOVED = ("_created", "_gsum", "_gcount")
_headers: Dict[tuple, str] = {}


def _text_header(name: str, documentation: str, kind: str, escaping: str) -> str:
    key = ("text", name, documentation, kind, escaping)
    found = _headers.get(key)
    if found is None:
        if len(_headers) >= _CACHE_LIMIT:
            _headers.clear()
        shown = _shown_family_name(name, escaping)
        found = _headers[key] = f"# HELP {shown} {_escape_help_text(documentation)}\n# TYPE {shown} {kind}\n"
    return found


def encode_text(registry, escaping: str = UNDERSCORES) -> bytes:
    """Prometheus text format (0.0.4; with an escaping scheme, 1.0.0) of every family."""
    family_names, label_names = _FAMILY_NAMES[escaping], _LABEL_NAMES[escaping]
    shown_names = family_names.known
    classic = _CLASSIC_METRIC.match
    quote_odd_names = escaping == ALLOW_UTF8
    out: List[str] = []
    append = out.append
    for family in registry.collect():
        name = family.name
        kind = family.type
        shown_name = name
        if kind == "counter":
            shown_name = name + "_total"
        elif kind == "info":
            shown_name = name + "_info"
        append(_text_header(shown_name, family.documentation, _TEXT_TYPES.get(kind, kind), escaping))
        moved: Dict[str, List[str]] = {}
        for sample in family.samples:
            sample_name, labels, value, timestamp = sample.name, sample.labels, sample.value, sample.timestamp
            if sample_name != name and sample_name.startswith(name) and sample_name[len(name):] in _TEXT_MOVED:
                lines = moved.setdefault(sample_name[len(name):], [])
            else:
                lines = out
            labelstr = _labels(labels, label_names) if labels else ""
            value = format_value(value)
            if timestamp is not None:
                value = f"{value} {int(float(timestamp) * 1000):d}"
            shown = shown_names.get(sample_name)
            if shown is None:
                shown = family_names.add(sample_name)
            if quote_odd_names and not classic(sample_name):
                lines.append(f"{{{shown},{labelstr}}} {value}\n" if labelstr else f"{{{shown}}} {value}\n")
            elif labelstr:
                lines.append(f"{shown}{{{labelstr}}} {value}\n")
            else:
                lines.append(f"{shown} {value}\n")
        for tail, moved_lines in sorted(moved.items()):
            append(_text_header(name + tail, family.documentation, "gauge", escaping))
            out.extend(moved_lines)
    return "".join(out).encode("utf-8")


# -- OpenMetrics 1.0.0 --------------------------------------------------------------------------

def _openmetrics_header(family, escaping: str) -> str:
    name, documentation, kind, unit = family.name, family.documentation, family.type, family.unit
    key = ("om", name, documentation, kind, unit, escaping)
    found = _headers.get(key)
    if found is None:
        if len(_headers) >= _CACHE_LIMIT:
            _headers.clear()
        shown = _shown_family_name(name, escaping)
        found = f"# HELP {shown} {_escape_text(documentation)}\n# TYPE {shown} {kind}\n"
        if unit:
            found += f"# UNIT {shown} {unit}\n"
        _headers[key] = found
    return found


def _exemplar(family, sample) -> str:
    """` # {labels} value [timestamp]` after a counter's _total or a histogram bucket."""
    name, kind = sample.name, family.type
    allowed = ((kind == "counter" and name.endswith("_total"))
               or (kind == "gaugehistogram" and name.endswith("_bucket"))
               or (kind == "histogram" and (name.endswith("_bucket") or name == family.name)))
    if not allowed:
        raise ValueError(f"Metric {family.name} has exemplars, but is not a histogram bucket or counter")
    exemplar = sample.exemplar
    labels = ",".join(f'{k}="{_escape_text(v)}"' for k, v in sorted(exemplar.labels.items()))
    text = f" # {{{labels}}} {format_value(exemplar.value)}"
    if exemplar.timestamp is not None:
        text += f" {exemplar.timestamp}"
    return text


def encode_openmetrics(registry, escaping: str = UNDERSCORES, version: str = "1.0.0") -> bytes:
    """OpenMetrics text of every family, ending in `# EOF`. Native histograms (an OpenMetrics
    2.0 draft) are left out below version 2 as client_python does; minerwatch has none."""
    label_names, sample_names = _LABEL_NAMES[escaping], _SAMPLE_NAMES[escaping]
    shown_names = sample_names.known
    classic = _CLASSIC_METRIC.match
    quote_odd_names = escaping == ALLOW_UTF8
    out: List[str] = []
    append = out.append
    for family in registry.collect():
        append(_openmetrics_header(family, escaping))
        for sample in family.samples:
            if sample.native_histogram:
                order = _compare_version(version, (2, 0, 0))
                if order is None or order < 0:
                    continue
                raise ValueError(f"{family.name}: native histograms are not supported")
            name, labels, value, timestamp = sample.name, sample.labels, sample.value, sample.timestamp
            value = "" if value is None else format_value(value)
            if timestamp is not None:
                value = f"{value} {timestamp}"
            if sample.exemplar:
                value += _exemplar(family, sample)
            if quote_odd_names and not classic(name):
                labelstr = _shown_family_name(name, escaping)
                if labels:
                    labelstr += "," + _labels(labels, label_names)
                append(f"{{{labelstr}}} {value}\n" if labelstr else f" {value}\n")
                continue
            shown = shown_names.get(name)
            if shown is None:
                shown = sample_names.add(name)
            if labels:
                append(f"{shown}{{{_labels(labels, label_names)}}} {value}\n")
            else:
                append(f"{shown} {value}\n")
    append("# EOF\n")
    return "".join(out).encode("utf-8")
