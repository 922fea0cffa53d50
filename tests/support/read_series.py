"""The metric names something on the server reads: every query of the dashboards (panels,
annotations, variables), every expression of the generated rules, the investigation report's
series, and what the shipped global view (federation.yml, remote-write.yml) carries.

    from support.read_series import read_names, shipped_drop
    names, patterns = read_names()   # exact names; regexes of __name__=~ matchers

Used to check that the site Prometheus' shipped metric_relabel_configs never drop a series that
is read, and by the fleet benchmark to say which exporter families nothing reads.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import List, Set, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "exporter"))
NAME = re.compile(r"[A-Za-z_:][\w:]*")


def strip_comments(expr: str) -> str:
    """The expression without its # comments (a # inside a string stays)."""
    out, quote, i = [], None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < len(expr):
                out.append(expr[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
            out.append(c)
        elif c == "#":
            while i < len(expr) and expr[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def expressions() -> List[Tuple[str, str]]:
    """(where, PromQL) of everything the server evaluates or shows."""
    from test_dashboards import DASHBOARDS, queries, variables

    found = []
    for uid, dashboard in DASHBOARDS.items():
        found += [(f"{uid} {where}", expr) for where, expr in queries(dashboard)]
        for name, variable in variables(dashboard).items():
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            if variable.get("type") == "query" and isinstance(query, str):
                inner = re.fullmatch(r"label_values\((.*), *\w+\)", query)
                found.append((f"{uid} variable ${name}", inner.group(1) if inner else query))
    for path in sorted((ROOT / "rules").glob("minerwatch.*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((f"{path.name} {rule.get('record') or rule.get('alert')}", rule["expr"]))
    federation = yaml.safe_load((ROOT / "deploy/prometheus/federation.yml").read_text())
    for job in federation["scrape_configs"]:
        found += [("federation.yml match[]", m) for m in job.get("params", {}).get("match[]", [])]
    return found


def read_names() -> Tuple[Set[str], List[str]]:
    """Exact metric names read, and the regexes of __name__=~ matchers (anchored, as Prometheus)."""
    from test_dashboards import walk
    from minerwatch.investigation import report

    names, patterns = set(), []
    for where, expr in expressions():
        for selector in walk(strip_comments(expr))[0]:
            if selector.name:
                names.add(selector.name)
            for label, op, value in selector.matchers:
                if label == "__name__" and op == "=":
                    names.add(value)
                elif label == "__name__" and op == "=~":
                    if re.fullmatch(r"[\w:]+(\|[\w:]+)*", value):
                        names |= set(value.split("|"))
                    else:
                        patterns.append(value)
    names |= set(report.QUERIES.values()) | {report.SITE_TARIFF, report.FLEET_TARIFF}
    remote = yaml.safe_load((ROOT / "deploy/prometheus/remote-write.yml").read_text())
    for rule in remote["remote_write"][0]["write_relabel_configs"]:
        if rule.get("source_labels") == ["__name__"] and rule.get("action") == "keep":
            names |= set(NAME.findall(rule["regex"]))
    return names, patterns


def site_job() -> dict:
    """The minerwatch scrape job of the shipped site Prometheus config."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    return next(job for job in config["scrape_configs"] if job["job_name"] == "minerwatch")


def shipped_drop() -> List[dict]:
    """The shipped metric_relabel_configs of the minerwatch job (JSON-safe copies)."""
    return json.loads(json.dumps(site_job().get("metric_relabel_configs") or []))
