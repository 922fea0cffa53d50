"""The messages the report and the evidence summary ask the catalogues for, found in their source
(gettext calls with literal strings), plus those they look up by a value (weekdays, months,
severities, evidence.py's own sentences, the built-in tariff's source)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional, Set, Tuple

from support.repo import ROOT

INVESTIGATION = ROOT / "exporter" / "minerwatch" / "investigation"
SOURCES = ("report_html.py", "report_pdf.py", "evidence_summary.py", "i18n.py")

Message = Tuple[Optional[str], str, Optional[str]]  # context, msgid, msgid_plural


def in_source(path: Path) -> Set[Message]:
    found: Set[Message] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else \
            node.func.attr if isinstance(node.func, ast.Attribute) else None
        args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args]
        if name == "_" and args and args[0] is not None:
            found.add((None, args[0], None))
        elif name == "gettext" and args and args[0] is not None:
            found.add((None, args[0], None))
        elif name in ("n", "ngettext") and len(args) >= 2 and args[0] is not None and args[1] is not None:
            found.add((None, args[0], args[1]))
        elif name == "pgettext" and len(args) == 2 and args[0] is not None and args[1] is not None:
            found.add((args[0], args[1], None))
    return found


def looked_up() -> Set[Message]:
    from minerwatch.investigation import evidence_summary, i18n, report, report_html

    out: Set[Message] = {("weekday", d, None) for d in report_html.DAY_NAMES}
    out |= {("date: month after a day", m, None) for m in i18n.MONTHS}
    out |= {("severity", s, None) for s in ("critical", "warning", "info")}
    out |= {(None, s, None) for s in evidence_summary.KNOWN_SENTENCES}
    out.add((None, report.TARIFF_SOURCE, None))
    return out


def used() -> Set[Message]:
    out = looked_up()
    for name in SOURCES:
        out |= in_source(INVESTIGATION / name)
    return out
