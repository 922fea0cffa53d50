"""What the global view carries: federation (deploy/prometheus/federation.yml) and remote write
(deploy/prometheus/remote-write.yml) carry exactly the series the fleet dashboard and the fleet
rules read, no more, no less.

The set is derived, not listed: every selector of the fleet dashboard's queries and variables,
every selector and result of the fleet rules (rules/src/fleet.yml and coverage.yml), and the
ALERTS series of every shipped alert. Real Prometheus servers decide what is carried: a site Prometheus scrapes
one sample of every needed series and of many that are not needed (every other minerwatch metric
and rule the project names, other jobs, pending and foreign alerts), a central one federates it
with the shipped match[], and a third receives its remote write through the shipped
write_relabel_configs.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

import yaml

from support.processes import wait_for
from support.servers import Prometheus, _Server, binary
from test_dashboards import FLEET, queries, variables, walk

ROOT = Path(__file__).resolve().parent.parent
FEDERATION = ROOT / "deploy/prometheus/federation.yml"
REMOTE_WRITE = ROOT / "deploy/prometheus/remote-write.yml"
CONFIG = yaml.safe_load((ROOT / "rules/config/minerwatch.yml").read_text())
ALERT_NAMES = sorted({r["alert"] for g in yaml.safe_load((ROOT / "rules/minerwatch.alerts.yml").read_text())["groups"]
                      for r in g["rules"] if "alert" in r})
RECORDED = sorted({r["record"] for g in yaml.safe_load((ROOT / "rules/minerwatch.rules.yml").read_text())["groups"]
                   for r in g["rules"] if "record" in r})
# The label the rules select the exporters by (rules/config/minerwatch.yml `selector`, e.g. job="minerwatch").
SELECTOR_LABEL, SELECTOR_VALUE = re.fullmatch(r'(\w+)="([^"]*)"', CONFIG["selector"]).groups()
CENTRAL_JOB = "federate-minerwatch"
# The fleet rules: they compare a host with its peers and a site with itself, so a central view may
# evaluate or explain them; the global view carries what they read and what they write.
FLEET_RULES = ("fleet.yml", "coverage.yml")

Series = Tuple[Tuple[str, str], ...]  # sorted (label, value) pairs, __name__ included


def series(name: str, **labels: str) -> Series:
    return tuple(sorted(dict(labels, __name__=name).items()))


def fleet_rules() -> Dict[str, list]:
    """The rules generated from the fleet sources alone (FLEET_RULES) with the shipped config, by
    kind ("recording", "alerting")."""
    spec = importlib.util.spec_from_file_location("minerwatch_rules_generate", ROOT / "rules/generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    with tempfile.TemporaryDirectory() as src:
        for name in FLEET_RULES:
            (Path(src) / name).write_text((ROOT / "rules/src" / name).read_text())
        files = generate.render(ROOT / "rules/config/minerwatch.yml", src)
    return {kind: [r for g in yaml.safe_load(files[name])["groups"] for r in g["rules"]]
            for kind, (name, _) in generate.GROUPS.items()}


def _wanted(expr: str, where: str) -> Iterable[Series]:
    """The series a query selects, as one representative each: its name, the exporter job, and
    the labels it fixes (alertname regexes expanded over the shipped alerts)."""
    for selector in walk(expr)[0]:
        fixed = {label: value for label, op, value in selector.matchers if op == "=" and "$" not in value}
        name = selector.name or fixed.pop("__name__")
        assert name, f"{where}: a selector without a metric name in {expr}"
        alertnames = [fixed.pop("alertname")] if "alertname" in fixed else [None]
        for label, op, value in selector.matchers:
            if label == "alertname" and op == "=~":
                alertnames = [a for a in ALERT_NAMES if re.fullmatch(value, a)]
                assert alertnames, f"{where}: alertname=~{value!r} matches no shipped alert"
        for alertname in alertnames:
            extra = {"alertname": alertname} if alertname else {}
            yield series(name, **{SELECTOR_LABEL: SELECTOR_VALUE, **fixed, **extra})


def needed() -> Dict[Series, List[str]]:
    """Every series the global view must carry -> who reads it."""
    readers: Dict[Series, List[str]] = {}
    found = [(f"fleet dashboard {where}", expr) for where, expr in queries(FLEET)]
    found += [(f"fleet dashboard variable ${name}", re.fullmatch(r"label_values\((.*), \w+\)", v["query"]).group(1))
              for name, v in variables(FLEET).items() if v["type"] == "query"]
    rules = fleet_rules()
    for rule in rules["recording"] + rules["alerting"]:
        found.append((f"fleet rule {rule.get('record') or rule['alert']}", rule["expr"]))
    for where, expr in found:
        for wanted in _wanted(expr, where):
            readers.setdefault(wanted, []).append(where)
    job = {SELECTOR_LABEL: SELECTOR_VALUE}
    for rule in rules["recording"]:  # what the fleet rules write, read by whoever looks at them centrally
        readers.setdefault(series(rule["record"], **job), []).append(f"fleet rule {rule['record']} (its result)")
    for rule in rules["alerting"]:
        readers.setdefault(series("ALERTS", **job, alertname=rule["alert"], alertstate="firing"), []).append(
            f"fleet rule {rule['alert']} (its alerts)")
    return readers


def decoys(needs: Set[Series]) -> Set[Series]:
    """Series a site Prometheus holds that the global view does not need: every other minerwatch
    metric or rule the project names, other jobs' series, pending and foreign alerts."""
    names = set(RECORDED)
    for path in [ROOT / "README.md", ROOT / "dashboards/minerwatch-host.json", ROOT / "rules/minerwatch.alerts.yml",
                 *sorted((ROOT / "docs").glob("*.md"))]:
        names |= set(re.findall(r"\bminerwatch_[a-z0-9_]*[a-z0-9]\b", path.read_text()))
    job = {SELECTOR_LABEL: SELECTOR_VALUE}
    out = {series(n, **job) for n in names}
    out |= {series(n, job="node") for n in ("up", "scrape_duration_seconds", "node_cpu_seconds_total")}
    out |= {series("ALERTS", **job, alertname=a, alertstate="pending") for a in ALERT_NAMES}
    out |= {series("ALERTS_FOR_STATE", **job, alertname=a) for a in ALERT_NAMES}
    out |= {series("ALERTS", job="node", alertname="Watchdog", alertstate="firing")}
    return out - needs


def test_needs_come_from_the_dashboard_and_the_fleet_rules():
    readers = needed()
    names = {dict(s)["__name__"] for s in readers}
    assert "minerwatch_build_info" in names, "the job variable reads it"
    assert any(r.startswith("fleet rule") for rs in readers.values() for r in rs)
    alerts = {dict(s)["alertname"] for s in readers if dict(s)["__name__"] == "ALERTS"}
    assert alerts == set(ALERT_NAMES), "the fleet dashboard lists every firing Minerwatch alert"
    assert all(dict(s).get("alertstate") == "firing" for s in readers if dict(s)["__name__"] == "ALERTS")
    assert len(decoys(set(readers))) > 50


def test_remote_write_example_is_a_valid_config(promtool):
    result = subprocess.run([promtool, "check", "config", str(REMOTE_WRITE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_federation_reads_the_job_of_the_rules():
    """job="minerwatch" in federation.yml and remote-write.yml is the rules' selector."""
    params = yaml.safe_load(FEDERATION.read_text())["scrape_configs"][0]["params"]["match[]"]
    for selector in params:
        matchers = dict(((l, op), v) for l, op, v in walk(selector)[0][0].matchers)
        if ("alertname", "=~") not in matchers:
            assert matchers.get((SELECTOR_LABEL, "=")) == SELECTOR_VALUE, selector
    relabels = yaml.safe_load(REMOTE_WRITE.read_text())["remote_write"][0]["write_relabel_configs"]
    assert any(f";{SELECTOR_VALUE};" in r["regex"] for r in relabels if SELECTOR_LABEL in r["source_labels"])


# -- real servers decide what is carried -----------------------------------------------------------


def exposition(samples: Iterable[Series]) -> bytes:
    lines = []
    for s in sorted(samples):
        labels = dict(s)
        name = labels.pop("__name__")
        body = ",".join(f'{k}="{v}"' for k, v in sorted(dict(labels, instance="pc-0001:9789").items()))
        lines.append(f"{name}{{{body}}} 1\n")
    return "".join(lines).encode()


class Page(ThreadingHTTPServer):
    """Serves one fixed exposition on 127.0.0.1, as an exporter would (honor_labels keeps its job)."""

    def __init__(self, body: bytes):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N805
                handler.send_response(200)
                handler.send_header("Content-Type", "text/plain; version=0.0.4")
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


class Receiver(_Server):
    """A real Prometheus that accepts remote write: the central store."""

    name = "Receiver"

    def __init__(self, tmp: Path):
        super().__init__({"global": {}}, tmp, lambda path, port, url: [
            binary("prometheus"), f"--config.file={path}", f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}",
            "--web.enable-remote-write-receiver",
        ])
        self.write_url = f"{self.url}/api/v1/write"


def shipped_remote_write(receiver: Receiver) -> List[dict]:
    """remote-write.yml's remote_write, sent to `receiver`, batches flushed every second."""
    [endpoint] = yaml.safe_load(REMOTE_WRITE.read_text())["remote_write"]
    endpoint = dict(endpoint, url=receiver.write_url)
    endpoint["queue_config"] = dict(endpoint.get("queue_config", {}), batch_send_deadline="1s")
    return [endpoint]


def central_config(site: Prometheus) -> dict:
    """federation.yml, federating `site` every second."""
    config = yaml.safe_load(FEDERATION.read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == CENTRAL_JOB and job["honor_labels"] is True
    job["static_configs"] = [{"targets": [site.url.split("//")[1]]}]
    config["global"] = dict(config["global"], scrape_interval="1s", scrape_timeout="1s")
    return config


def stored(server, match: str = '{__name__=~".+"}') -> List[Dict[str, str]]:
    """Every series `server` holds (from the last 10 minutes), as label dicts."""
    query = urllib.parse.urlencode({"match[]": match, "start": time.time() - 600})
    with urllib.request.urlopen(f"{server.url}/api/v1/series?{query}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def received(server) -> Set[Series]:
    """What reached `server` from the site: the series of the synthetic page (not the server's own
    scrape series), without the labels the page and the site added (instance, site)."""
    return {tuple(sorted((k, v) for k, v in s.items() if k not in ("instance", "site"))) for s in stored(server)
            if s.get("instance") == "pc-0001:9789"}


def test_federation_and_remote_write_carry_exactly_what_is_needed(tmp_path, stack):
    needs = set(needed())
    page = Page(exposition(needs | decoys(needs)))
    stack.append(page)
    receiver = Receiver(tmp_path / "store")
    stack.append(receiver)
    site = Prometheus({
        "global": {"scrape_interval": "1s", "external_labels": {"site": "astana"}},
        "scrape_configs": [{"job_name": "node", "honor_labels": True, "static_configs": [{"targets": [page.target]}]}],
        "remote_write": shipped_remote_write(receiver),
    }, tmp_path / "site")
    stack.append(site)
    central = Prometheus(central_config(site), tmp_path / "central")
    stack.append(central)
    wait_for(lambda: received(site) == needs | decoys(needs), timeout=30,
             what="the site Prometheus to hold every sample of the page")
    for server, path in ((central, "federation"), (receiver, "remote write")):
        try:
            wait_for(lambda: received(server) >= needs, timeout=30, interval=0.5, what=path)
        except AssertionError:
            pass  # the comparison below says what is missing
        time.sleep(2)  # anything more would have arrived by now
        got = received(server)
        missing = sorted(dict(s)["__name__"] + str(dict(s)) for s in needs - got)
        extra = sorted(str(dict(s)) for s in got - needs)
        assert not missing and not extra, f"{path}: missing {missing}; not needed but carried {extra}"
        assert {s.get("site") for s in stored(server) if s.get("instance") == "pc-0001:9789"} == {"astana"}


def test_each_federation_selector_is_needed():
    """No match[] line that carries nothing: each selects at least one needed series."""
    params = yaml.safe_load(FEDERATION.read_text())["scrape_configs"][0]["params"]["match[]"]
    needs = needed()
    for selector in params:
        [parsed] = walk(selector)[0]
        matched = [s for s in needs if _matches(parsed.matchers, dict(s))]
        assert matched, f"federation.yml: {selector} selects nothing the global view needs"


def _matches(matchers, labels: Dict[str, str]) -> bool:
    for label, op, value in matchers:
        have = labels.get(label, "")
        ok = {"=": have == value, "!=": have != value, "=~": re.fullmatch(value, have) is not None,
              "!~": re.fullmatch(value, have) is None}[op]
        if not ok:
            return False
    return True
