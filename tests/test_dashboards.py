"""The Grafana dashboards: generated from their source, the checks of Grafana's dashboard-linter
(and a few more) on the committed JSON, every query parsed by promtool, and end to end: a real
Prometheus scraping a real `minerwatch serve` while a miner stand-in runs, every panel's queries
run against it, the panels drawn into test-output/dashboards/<uid>.png.

MINERWATCH_SCREENSHOTS=1 makes the end-to-end test also refresh the README's screenshots in
docs/images/ (see dashboards/README.md).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
import yaml

from dashboard_render import render, table_rows
from support.exporter import Exporter
from support.processes import free_port, wait_for
from support.servers import Prometheus
from support.wallets import MONERO_WALLET
from test_e2e_alerting import generate_rules

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards").glob("minerwatch-*.json"))}
FLEET, HOST = DASHBOARDS["minerwatch-fleet"], DASHBOARDS["minerwatch-host"]
DS = {"type": "prometheus", "uid": "${datasource}"}
OUTPUT = ROOT / "test-output" / "dashboards"
RUNBOOK_BASE = yaml.safe_load((ROOT / "rules/config/minerwatch.yml").read_text())["runbookUrlBase"]


def panels(dashboard: dict) -> List[dict]:
    return dashboard["panels"]


def queries(dashboard: dict) -> Iterator[Tuple[str, str]]:
    """(where, PromQL) of every target and Prometheus annotation."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]


def variables(dashboard: dict) -> Dict[str, dict]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


params = pytest.mark.parametrize("dashboard", list(DASHBOARDS.values()), ids=list(DASHBOARDS))


# -- PromQL, read just enough to lint it ----------------------------------------------------------

AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
               "quantile"}
FUNCTIONS = AGGREGATORS | {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
    "floor", "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time", "minute", "month",
    "predict_linear", "present_over_time", "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort",
    "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "time", "timestamp", "vector",
    "year"}
CLAUSES = {"by", "without", "on", "ignoring", "group_left", "group_right"}  # followed by a label list
KEYWORDS = CLAUSES | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
RATES = {"rate", "irate", "increase"}
TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{?\w+(?::\w+)?\}?)
  | (?P<number>(?:\d+(?:ms|[smhdwy]))+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<range>\[[^\]]*\])
  | (?P<other>.)""", re.X | re.S)
MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


class Selector:
    def __init__(self, name: str, matchers: List[Tuple[str, str, str]], call: str):
        self.name, self.matchers, self.call = name, matchers, call  # call: innermost enclosing function

    def has(self, label: str, op: str, value: str) -> bool:
        return (label, op, value) in self.matchers


def walk(expr: str) -> Tuple[List[Selector], List[Tuple[str, str]]]:
    """The metric selectors of an expression, and its range brackets with their enclosing call.

    Function names, aggregations, keywords and the label lists of by/without/on/ignoring/
    group_left/group_right are not selectors; strings, numbers and $variables are skipped."""
    tokens = [(m.lastgroup, m.group()) for m in TOKEN.finditer(expr) if m.lastgroup != "space"]
    selectors, ranges, calls = [], [], []  # calls: the stack of open parentheses (function or None)
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        after = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        call = next((c for c in reversed(calls) if c is not None), "") if calls else ""
        if kind == "ident" and text in CLAUSES and after == "(":
            i = _close(tokens, i + 1)
        elif kind == "ident" and after == "(" and text not in KEYWORDS:
            assert text in FUNCTIONS, f"unknown function {text}() in {expr}"
            calls.append(text)
            i += 1
        elif kind == "ident" and (text in KEYWORDS or text in AGGREGATORS):
            pass
        elif kind == "ident" or (kind == "other" and text == "{"):
            name = text if kind == "ident" else ""
            matchers = []
            if kind == "other" or after == "{":
                end = _close(tokens, i if kind == "other" else i + 1, "{", "}")
                body = "".join(t for _, t in tokens[i + (0 if kind == "other" else 1): end + 1])
                matchers = MATCHER.findall(body)
                i = end
            selectors.append(Selector(name, matchers, call))
        elif kind == "range":
            ranges.append((text[1:-1], call if tokens[i - 1][1] != ")" else "subquery"))
        elif text == "(":
            calls.append(None)
        elif text == ")":
            calls.pop()
        i += 1
    return selectors, ranges


def _close(tokens, start: int, opening: str = "(", closing: str = ")") -> int:
    """Index of the token closing the bracket opened at tokens[start]."""
    depth = 0
    for j in range(start, len(tokens)):
        depth += tokens[j][1] == opening
        depth -= tokens[j][1] == closing
        if depth == 0:
            return j
    raise AssertionError(f"unbalanced {opening}")


def test_walk_finds_selectors_and_skips_functions_clauses_and_strings():
    selectors, ranges = walk(
        'topk(5, sum by (instance, job) (rate(a_total{job=~"$job", x="}"}[$__rate_interval]))) '
        '* on (instance) group_left (site) b:c:d{job="j"} / scalar(c) + count_values("v", d) '
        '- label_replace(e, "dst", "$1", "src", "(.*)") > bool 1e3 and f'
        ' or max_over_time((g and on (job) h == 1)[$__range:$__interval]) * $__interval_ms')
    assert [s.name for s in selectors] == ["a_total", "b:c:d", "c", "d", "e", "f", "g", "h"]
    assert selectors[0].matchers == [("job", "=~", "$job"), ("x", "=", "}")] and selectors[0].call == "rate"
    assert selectors[2].call == "scalar" and selectors[5].call == ""
    assert ranges == [("$__rate_interval", "rate"), ("$__range:$__interval", "subquery")]
    assert [s.name for s in walk('{__name__="up", job="x"}')[0]] == [""]
    with pytest.raises(AssertionError, match="unknown function"):
        walk("sumx(a)")


# -- generated ------------------------------------------------------------------------------------


def test_committed_json_is_what_the_source_generates():
    result = subprocess.run([sys.executable, str(ROOT / "dashboards/generate.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the dashboard-linter's checks, and a few more ------------------------------------------------


@params
def test_dashboard_conventions(dashboard):
    assert len(dashboard["uid"]) <= 40 and re.fullmatch(r"[a-z0-9-]+", dashboard["uid"])
    assert "minerwatch" in dashboard["tags"]
    assert dashboard["schemaVersion"] == 39 and dashboard["timezone"] == "browser"
    assert dashboard["id"] is None  # importable into any Grafana
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)


@params
def test_variables_datasource_job_and_instance(dashboard):
    found = variables(dashboard)
    assert list(found)[0] == "datasource"
    assert found["datasource"]["type"] == "datasource" and found["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        variable = found[name]
        assert variable["type"] == "query" and variable["datasource"] == DS
        assert re.fullmatch(rf"label_values\((.*), {name}\)", variable["query"]), variable["query"]
        assert variable["refresh"] == 2, f"{name} must reload on time-range change"
    assert '"$job"' in found["instance"]["query"], "instance depends on job"
    earlier = []  # each variable's values are filtered by the variables before it
    for variable in found.values():
        if variable["type"] == "query":
            [selector] = walk(re.fullmatch(r"label_values\((.*), \w+\)", variable["query"]).group(1))[0]
            assert all(selector.has(n, "=~", f"${n}") for n in earlier), variable["query"]
            earlier.append(variable["name"])


@params
def test_every_panel_and_target_uses_the_datasource_variable(dashboard):
    for panel in panels(dashboard):
        assert panel["datasource"] == DS, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == DS, (panel["title"], target["refId"])
    for annotation in dashboard["annotations"]["list"]:
        assert annotation["datasource"] == DS, annotation["name"]


def required_matchers(dashboard: dict, metric: str) -> List[Tuple[str, str, str]]:
    """Every selector filters by every variable of the dashboard except the datasource, unless
    the series cannot carry the label: a recording rule whose level (`job_site_role:`) has no
    instance keeps only the labels its level names."""
    names = [n for n in variables(dashboard) if n != "datasource"]
    level = metric.split(":")[0].split("_") if metric.count(":") == 2 else None
    if level is not None and "instance" not in level:
        names = [n for n in names if n in level]
    return [(n, "=~", f"${n}") for n in names]


@params
def test_every_selector_has_the_job_and_instance_matchers(dashboard):
    assert {"job", "instance"} <= set(variables(dashboard))
    count = 0
    for where, expr in queries(dashboard):
        selectors, _ = walk(expr)
        assert selectors, f"{where}: no metric selector"
        for selector in selectors:
            missing = [m for m in required_matchers(dashboard, selector.name) if not selector.has(*m)]
            assert not missing, f"{where}: {selector.name} lacks {missing} in {expr}"
            count += 1
    assert count > 20


@params
def test_rates_use_rate_interval_and_counters_are_rated(dashboard):
    for where, expr in queries(dashboard):
        selectors, ranges = walk(expr)
        for window, call in ranges:
            if call in RATES:
                assert window == "$__rate_interval", f"{where}: {call}() over [{window}] in {expr}"
        for selector in selectors:
            if selector.name.endswith("_total"):
                assert selector.call in RATES, f"{where}: counter {selector.name} outside rate/increase in {expr}"


@params
def test_panel_ids_titles_and_grid(dashboard):
    ids = [p["id"] for p in panels(dashboard)]
    assert len(set(ids)) == len(ids)
    titles = [p["title"] for p in panels(dashboard) if p["type"] != "row"]
    assert len(set(titles)) == len(titles), "titles name panels in the tests and the README"
    cells = {}
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["w"] >= 1 and pos["h"] >= 1 and pos["x"] >= 0 and pos["y"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


@params
def test_panels_describe_themselves_and_have_units(dashboard):
    for panel in panels(dashboard):
        if panel.get("targets"):
            assert len(panel["description"]) > 20, panel["title"]
            assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
            assert panel["type"] in {"timeseries", "stat", "table"}, panel["title"]
            instant = panel["type"] != "timeseries"
            for target in panel["targets"]:
                assert target["instant"] is instant and target["range"] is not instant, (panel["title"], target)


@functools.lru_cache()
def runbook_pages() -> frozenset:
    """Pages panel links may open: each alert's runbook_url (test_rules checks the pages exist), the index."""
    groups = yaml.safe_load((ROOT / "rules/minerwatch.alerts.yml").read_text())["groups"]
    return frozenset({r["annotations"]["runbook_url"] for g in groups for r in g["rules"] if "alert" in r} | {
        RUNBOOK_BASE + "README.md"})


@params
def test_links_lead_to_runbooks_and_to_the_host_view(dashboard):
    runbooks = 0
    for panel in panels(dashboard):
        for link in panel.get("links", []):
            assert link["url"].split("#")[0] in runbook_pages(), (panel["title"], link)
            runbooks += 1
    assert runbooks >= 5
    assert "## Keeping the evidence of a miner" in (ROOT / "docs/runbooks/README.md").read_text()
    if dashboard is FLEET:
        for panel in panels(dashboard):
            columns = panel.get("transformations", [{}] * 2)[-2].get("options", {}).get("include", {}).get("names", [])
            if "instance" in columns:  # every table of hosts leads to the host drill-down of that row's host
                [override] = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Host"]
                url = override["properties"][0]["value"][0]["url"]
                assert url.startswith(f"/d/{HOST['uid']}/"), url
                assert "var-instance=${__data.fields.instance}" in url and "var-job=${__data.fields.job}" in url
                assert "job" in columns, panel["title"]


@params
def test_header_links_to_the_other_dashboard_survive_a_grafana_sub_path(dashboard):
    """Grafana served under a sub-path (root_url .../grafana/) breaks a hand-written `/d/...` header
    link; a `dashboards` link by tag is built by Grafana with the sub-path in it."""
    others = []
    for link in dashboard["links"]:
        if link["type"] == "link":
            assert not link["url"].startswith("/"), link  # only absolute URLs outside Grafana
            continue
        assert link["type"] == "dashboards", link
        others += [d["uid"] for d in DASHBOARDS.values() if set(link["tags"]) <= set(d["tags"])]
    assert others == [uid for uid in DASHBOARDS if uid != dashboard["uid"]]


def test_fleet_energy_row_is_filled_and_host_has_the_alert_annotation():
    titles = [p["title"] for p in panels(FLEET)]
    row = titles.index("Estimated energy of suspect processes")
    assert titles[row + 1:row + 8] == ["Energy taken", "Cost", "CPU core-hours taken", "GPU-hours taken",
                                       "Power of suspect processes, by site", "Top hosts by suspect energy",
                                       "Top processes by energy"]
    assert not [p for p in panels(FLEET) if p["type"] == "text"]  # no placeholder left
    assert [a["expr"] for a in HOST["annotations"]["list"]] == [
        'ALERTS{alertname=~"Minerwatch.*", alertstate="firing", job=~"$job", instance=~"$instance"}']


# -- every query parses ---------------------------------------------------------------------------


def substitute(expr: str, values: Dict[str, str]) -> str:
    """Grafana's variables replaced by values (longest names first: $__interval_ms before $__interval)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


OFFLINE = {"job": "minerwatch", "instance": "127.0.0.1:9789", "site": ".*", "__rate_interval": "1m",
           "__range": "1h", "__interval": "15s", "__interval_ms": "15000"}


def test_every_query_parses_with_promtool(tmp_path, promtool):
    rules = [{"record": f"dashboard:query_{i}:expr", "expr": substitute(expr, OFFLINE)}
             for i, (_, expr) in enumerate(q for d in DASHBOARDS.values() for q in queries(d))]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_renderer_draws_every_panel_without_data():
    for uid, dashboard in DASHBOARDS.items():
        path = render(dashboard, {}, OUTPUT / f"{uid}-no-data.png", "no data: every panel says so")
        assert path.stat().st_size > 10_000


# -- end to end -----------------------------------------------------------------------------------

# Panels allowed to stay empty in the end-to-end scenario: (dashboard, panel title) -> why, and a
# query that returns something whenever that reason holds. A panel listed here whose reason does
# not hold must have data like any other.
NO_GPU = ("no NVIDIA GPU or driver on the test machine", "minerwatch_gpu_up == 0")
OFFICE_HOURS = ("office hours now: these tables count off-hours time only", "instance:minerwatch_off_hours:bool == 0")
EXPECTED_EMPTY = {
    ("minerwatch-host", "GPU utilization"): NO_GPU,
    ("minerwatch-host", "GPU power vs limit"): NO_GPU,
    ("minerwatch-host", "GPU use by process"): NO_GPU,
    ("minerwatch-host", "Processes on the GPU"): NO_GPU,
    ("minerwatch-fleet", "Top hosts by off-hours GPU energy"): NO_GPU,
    ("minerwatch-fleet", "Top hosts by off-hours CPU"): OFFICE_HOURS,
    ("minerwatch-fleet", "Top processes by off-hours CPU"): OFFICE_HOURS,
    ("minerwatch-fleet", "Hosts with failing collectors"): (
        "every collector succeeds in this scenario", "absent(minerwatch_scrape_collector_success == 0)"),
}


def test_expected_empty_panels_exist():
    titles = {(uid, p["title"]) for uid, d in DASHBOARDS.items() for p in panels(d)}
    assert set(EXPECTED_EMPTY) <= titles, set(EXPECTED_EMPTY) - titles


def api(url: str, path: str, **query) -> list:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(query, doseq=True)}", timeout=20) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"] if isinstance(body["data"], dict) else body["data"]


class Scenario:
    """A real Prometheus (1 s scrape and rule evaluation, the shipped rules) scraping a real
    `minerwatch serve` on this machine (site astana) and a host whose exporter is down (site
    almaty), while an XMRig stand-in mines at a pool stand-in (listed in an IOC file) and ClamAV's
    configuration gains an exclusion."""

    def __init__(self, tmp: Path, spawn, pool, stack, site: dict = None, then=None):
        """`site`: more of the Prometheus config (external_labels, remote_write; the exporter's
        target then has no site label of its own); `then(self)` runs once Prometheus is ready,
        before the waits (to start servers that read from it from the start)."""
        self.pool = f"127.0.0.1:{pool.port}"
        (tmp / "pools.txt").write_text(self.pool + "\n")
        self.clamd = tmp / "clamd.conf"
        self.clamd.write_text(f"ExcludePath ^{tmp}/bin-\n")
        (tmp / "minerwatch.yml").write_text(yaml.safe_dump({
            "antivirus": {"interval": 1, "defaults": False, "sources": [{"format": "clamd", "path": str(self.clamd)}]},
            "network": {"ioc_files": [str(tmp / "pools.txt")], "resolve_max_names": 0},  # no DNS: 127.0.0.1 only
        }))
        self.miner = spawn.start("xmrig", ["-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET,
                                           "-p", "x", "--donate-level", "1", "--duration", "300"])
        self.exporter = Exporter([f"--config.file={tmp / 'minerwatch.yml'}"])
        stack.append(self.exporter)
        self.instance, self.down = f"127.0.0.1:{self.exporter.port}", f"127.0.0.1:{free_port()}"
        rules = generate_rules(tmp)
        here = {"role": "workstation"} if site else {"site": "astana", "role": "workstation"}
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules / "minerwatch.rules.yml"), str(rules / "minerwatch.alerts.yml")],
            "scrape_configs": [{"job_name": "minerwatch", "static_configs": [
                {"targets": [self.instance], "labels": here},
                {"targets": [self.down], "labels": {"site": "almaty", "role": "workstation"}}]}],
        }
        for key, value in (site or {}).items():
            config[key] = dict(config[key], **value) if isinstance(value, dict) else value
        self.prometheus = Prometheus(config, tmp / "prometheus")
        stack.append(self.prometheus)
        self.start = time.time()
        if then:
            then(self)
        wait_for(lambda: self.query(f'up{{instance="{self.instance}"}} == 1'), timeout=30, what="the first scrape")
        wait_for(lambda: self.query("minerwatch_antivirus_exclusions > 0"), timeout=20, what="the ClamAV exclusion")
        with self.clamd.open("a") as conf:  # what a miner's installer does
            conf.write("OnAccessExcludeUname miner\n")
        alert = f'ALERTS{{alertname="MinerwatchMinerProcessRunning", alertstate="firing", pid="{self.miner.pid}"}}'
        try:
            wait_for(lambda: self.query(alert), timeout=75, interval=0.5, what="MinerwatchMinerProcessRunning to fire")
        except AssertionError as error:  # a scrape slower than its 1 s timeout restarts the alert's `for`
            failed = self.query(f'count_over_time((up{{instance="{self.instance}"}} == 0)[2m:1s])')
            slowest = self.query(f'max_over_time(scrape_duration_seconds{{instance="{self.instance}"}}[2m])')
            raise AssertionError(f"{error}; failed scrapes: {failed}, slowest scrape: {slowest} (machine load: "
                                 f"{os.getloadavg()[0]:.1f})") from None
        time.sleep(3)  # a few more steps: the firing alert shows in the time series too
        self.end = time.time()

    def query(self, promql: str, at: float = None) -> list:
        return api(self.prometheus.url, "/api/v1/query", query=promql, **({"time": at} if at else {}))

    def values(self, dashboard: dict) -> Dict[str, str]:
        """What Grafana would put in for the variables: All for the fleet, this host for the host view."""
        fleet = dashboard is FLEET
        seconds = int(self.end - self.start) + 1
        return {"job": "minerwatch", "site": ".*", "instance": ".*" if fleet else self.instance,
                "__rate_interval": "1m", "__range": f"{seconds}s", "__interval": "2s", "__interval_ms": "2000"}

    def run(self, dashboard: dict) -> Dict[Tuple[int, str], list]:
        """Every target's query as Grafana would send it: instant at the end, or a range over the run."""
        results = {}
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                expr = substitute(target["expr"], self.values(dashboard))
                if target["instant"]:
                    results[(panel["id"], target["refId"])] = self.query(expr, self.end)
                else:
                    results[(panel["id"], target["refId"])] = api(
                        self.prometheus.url, "/api/v1/query_range", query=expr, start=self.start, end=self.end,
                        step=2)
        return results

    def label_values(self, dashboard: dict, name: str) -> list:
        query = variables(dashboard)[name]["query"]
        selector, label = re.fullmatch(r"label_values\((.*), (\w+)\)", query).groups()
        values = dict(self.values(dashboard), job="minerwatch")
        return api(self.prometheus.url, f"/api/v1/label/{label}/values", **{"match[]": substitute(selector, values)})


def value_checks(live: Scenario) -> Dict[Tuple[str, str], callable]:
    """What some panels must show, beyond having data, checked on the rows Grafana would draw (an empty
    label is no label in Prometheus: a row may lack a column)."""
    miner = str(live.miner.pid)
    return {
        ("minerwatch-host", "Suspect processes"): lambda rows: any(
            r.get("PID") == miner and r.get("Process") == "xmrig" and "stratum+tcp://" in r.get("Command line", "")
            and "pool_url" in r.get("Signals", "") for r in rows),
        ("minerwatch-host", "Firing alerts on this host"): lambda rows: any(
            r.get("Alert") == "MinerwatchMinerProcessRunning" and r.get("PID") == miner for r in rows),
        ("minerwatch-host", "Signals matched, per process"): lambda rows: {"miner_name", "wallet_address"} <= {
            r.get("Signal") for r in rows if r.get("PID") == miner and r.get("Strength") == "strong"},
        ("minerwatch-host", "Antivirus exclusions"): lambda rows: sum(r.get("Exclusions", 0) for r in rows) == 2,
        ("minerwatch-host", "Connections to pools"): lambda rows: any(
            r.get("PID") == miner and r.get("Pool") == live.pool and "list" in r.get("Evidence", "") for r in rows),
        ("minerwatch-fleet", "Suspect processes across the fleet"): lambda rows: any(
            r.get("Host") == live.instance and r.get("PID") == miner and "pool_url" in r.get("Signals", "")
            and "stratum+tcp://" in r.get("Command line", "") and re.fullmatch(r"[0-9a-f]{64}", r.get("SHA-256", ""))
            for r in rows),
        ("minerwatch-fleet", "Pool connections across the fleet"): lambda rows: any(
            r.get("Host") == live.instance and r.get("PID") == miner for r in rows),
        ("minerwatch-fleet", "Firing Minerwatch alerts"): lambda rows: any(
            r.get("Alert") == "MinerwatchMinerProcessRunning" and r.get("Host") == live.instance
            and r.get("Site") == "astana" for r in rows),
        ("minerwatch-fleet", "Top hosts by suspicion"): lambda rows: [
            (r.get("Host"), r.get("Suspects now", 0) >= 1, r.get("Firing alerts", 0) >= 1) for r in rows
        ] == [(live.instance, True, True)],
        ("minerwatch-fleet", "Hosts down or gone"): lambda rows: [(r.get("Host"), r.get("Site")) for r in rows] == [
            (live.down, "almaty")],
    }


def stat_values(panel: dict, results) -> List[float]:
    return [float(s["value"][1]) for t in panel["targets"] for s in results[(panel["id"], t["refId"])]]


def check_panels(live: Scenario, uid: str, results) -> Tuple[Dict[str, str], List[str]]:
    """Each panel with queries: data, or empty for a reason that holds; and the value checks."""
    outcome, failures = panel_outcomes(live, uid, results)
    return outcome, failures + value_failures(live, uid, results)


def panel_outcomes(live: Scenario, uid: str, results) -> Tuple[Dict[str, str], List[str]]:
    """Each panel with queries: "data", or "empty: <reason>" for a listed reason that holds."""
    outcome, failures = {}, []
    for panel in panels(DASHBOARDS[uid]):
        if not panel.get("targets"):
            continue
        reason = EXPECTED_EMPTY.get((uid, panel["title"]))
        if any(results[(panel["id"], t["refId"])] for t in panel["targets"]):
            outcome[panel["title"]] = "data"
        elif reason and live.query(reason[1]):
            outcome[panel["title"]] = f"empty: {reason[0]}"
        else:
            failures.append(f"{uid}: {panel['title']!r} has no data" + (f" though {reason[1]} is false" if reason
                                                                         else ""))
    return outcome, failures


def value_failures(live: Scenario, uid: str, results) -> List[str]:
    """The value checks of `uid`'s panels that fail, with what the panel shows."""
    failures = []
    for (check_uid, title), check in value_checks(live).items():
        if check_uid == uid:
            [panel] = [p for p in panels(DASHBOARDS[uid]) if p["title"] == title]
            rows = table_rows(panel, results)[1]
            if not check(rows):
                failures.append(f"{uid}: {title!r} shows {rows}")
    return failures


def test_panels_on_live_prometheus_with_a_miner(tmp_path, spawn, pool, stack):  # noqa: F811
    started = time.monotonic()
    live = Scenario(tmp_path, spawn, pool, stack)
    note = (f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(live.end))}: real minerwatch serve at "
            f"{live.instance} (site astana), a down host (almaty); xmrig stand-in pid {live.miner.pid}; "
            f"{int(live.end - live.start)} s of data, 1 s scrapes")
    everything, failures = {}, []
    for uid, dashboard in DASHBOARDS.items():
        results = everything[uid] = live.run(dashboard)
        render(dashboard, results, OUTPUT / f"{uid}.png", note)  # drawn before any assertion, to look at failures
        (OUTPUT / f"{uid}.results.json").write_text(json.dumps(  # to redraw without a rerun
            {"note": note, "results": {f"{k[0]}/{k[1]}": v for k, v in results.items()}}))
        outcome, problems = check_panels(live, uid, results)
        failures += problems
        for title, what in sorted(outcome.items()):
            print(f"{uid:17} {title:40} {what}")
    if os.environ.get("MINERWATCH_SCREENSHOTS"):
        (ROOT / "docs/images").mkdir(exist_ok=True)
        for uid, name in (("minerwatch-host", "host-dashboard.png"), ("minerwatch-fleet", "fleet-dashboard.png")):
            shutil.copyfile(OUTPUT / f"{uid}.png", ROOT / "docs/images" / name)
    print(f"scenario, queries and pictures took {time.monotonic() - started:.0f} s")
    assert not failures, "\n".join(failures)

    fleet_stats = {p["title"]: stat_values(p, everything["minerwatch-fleet"]) for p in panels(FLEET)
                   if p["type"] == "stat"}
    assert fleet_stats["Hosts expected"] == [2.0] and fleet_stats["Hosts reporting"] == [1.0]
    assert fleet_stats["Hosts not reporting"] == [1.0] and fleet_stats["Hosts with suspects"] == [1.0]
    assert fleet_stats["Alerts firing"][0] >= 1  # critical: the miner
    host_stats = {p["title"]: stat_values(p, everything["minerwatch-host"]) for p in panels(HOST)
                  if p["type"] == "stat"}
    assert host_stats["Exporter"] == [1.0]
    assert host_stats["Suspects now"][0] >= 1  # miner stand-ins of other tests on this machine count too

    [changes] = [p for p in panels(HOST) if p["title"] == "Antivirus exclusion changes"]
    [series] = everything["minerwatch-host"][(changes["id"], "A")]
    assert max(float(v) for _, v in series["values"]) > 0, "the clamd.conf edit shows as a change"

    assert "minerwatch" in live.label_values(HOST, "job")
    assert set(live.label_values(HOST, "instance")) == {live.instance, live.down}
    assert set(live.label_values(FLEET, "site")) == {"astana", "almaty"}
    [annotation] = HOST["annotations"]["list"]
    assert live.query(substitute(annotation["expr"], live.values(HOST)))
