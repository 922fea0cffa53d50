"""The site Prometheus' shipped metric_relabel_configs (deploy/prometheus/prometheus.yml, job
minerwatch) drop what nothing on the server reads and never a series that is read.

What is read is derived, not listed (support/read_series.py): the dashboards' queries and
variables, the generated rules, the report's series, the global view. A real Prometheus with the
shipped job's relabelling scrapes a page holding the Linux fixture host's real /metrics
(tests/fixtures/e2e-output.txt) and one sample of every read name the fixture lacks (Windows,
GPU and suspect families); what it keeps is compared with what is read.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.processes import wait_for
from support.read_series import read_names, shipped_drop, site_job
from support.servers import Prometheus
from test_global_view_series import Page

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/e2e-output.txt"
# Prometheus' own series of a scrape: added after relabelling, never scraped from the exporter.
SERVER_SIDE = re.compile(r"up|scrape_.*|ALERTS(_FOR_STATE)?|probe_.*|.*:.*")
# Families nothing reads that the server keeps all the same: they exist only on a desk with a
# suspect or a GPU (not on every desk), and they are the evidence an investigator queries by hand.
KEPT_UNREAD = re.compile(
    r"minerwatch_process_(threads|resident_memory_bytes|start_time_seconds)"  # per suspect pid
    r"|minerwatch_gpu_.*")                                                    # per GPU


def fixture_names() -> set:
    return {s.name for f in text_string_to_metric_families(FIXTURE.read_text()) for s in f.samples}


def is_read(name: str, names: set, patterns: list) -> bool:
    return name in names or any(re.fullmatch(p, name) for p in patterns)


def kept_by_a_site(tmp_path, stack, names: set) -> set:
    """The names a real Prometheus keeps, with the shipped job's metric_relabel_configs, of a page
    exposing the fixture host's /metrics and one sample of each of `names` the fixture lacks."""
    have = fixture_names()
    extra = "".join(f'{n}{{pid="1",name="x",user="u"}} 1\n' for n in sorted(names - have)
                    if not SERVER_SIDE.fullmatch(n))
    page = Page(FIXTURE.read_bytes() + b"\n" + extra.encode())
    stack.append(page)
    prometheus = Prometheus({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "minerwatch", "static_configs": [{"targets": [page.target]}],
                            "metric_relabel_configs": shipped_drop()}],
    }, tmp_path / "site")
    stack.append(prometheus)

    def names_now():
        query = urllib.parse.urlencode({"match[]": '{job="minerwatch"}', "start": time.time() - 600})
        with urllib.request.urlopen(f"{prometheus.url}/api/v1/series?{query}", timeout=10) as response:
            return {s["__name__"] for s in json.load(response)["data"]}

    got = wait_for(lambda: (lambda n: n if "scrape_series_added" in n and len(n) > 5 else None)(names_now()),
                   timeout=30, what="the first scrape")
    time.sleep(1.5)  # a second scrape: nothing more appears
    return names_now() | got


def test_shipped_relabelling_keeps_every_read_series_and_drops_the_unread(tmp_path, stack):
    assert site_job().get("metric_relabel_configs"), "the site config drops nothing"
    names, patterns = read_names()
    assert {"minerwatch_host_cpu_seconds_total",             # the rules
            "minerwatch_scrape_collector_duration_seconds",  # the host dashboard only
            "minerwatch_evidence_bundle_timestamp_seconds",  # the report only
            "minerwatch_host_energy_joules_total"} <= names  # a __name__=~ alternation
    kept = kept_by_a_site(tmp_path, stack, names)
    exporter = fixture_names() | {n for n in names if not SERVER_SIDE.fullmatch(n)}
    dropped_but_read = sorted(n for n in exporter - kept if is_read(n, names, patterns))
    assert not dropped_but_read, (
        f"deploy/prometheus/prometheus.yml's metric_relabel_configs drop series that are read: {dropped_but_read}")
    kept_unread = sorted(n for n in kept & exporter if not is_read(n, names, patterns)
                         and not KEPT_UNREAD.fullmatch(n))
    assert not kept_unread, (
        "series nothing on the server reads (no dashboard, rule or report): drop them in "
        f"deploy/prometheus/prometheus.yml's metric_relabel_configs, or read them: {kept_unread}")


@pytest.mark.parametrize("name", ["minerwatch_process_top_processes", "minerwatch_network_dns_queries_total",
                                  "minerwatch_web_connections", "process_resident_memory_bytes"])
def test_examples_of_what_is_dropped(name):
    """Families the relabelling drops and nothing reads (a change to either shows here first)."""
    names, patterns = read_names()
    assert not is_read(name, names, patterns)
    [rule] = [r for r in shipped_drop() if r.get("action") == "drop"]
    assert re.fullmatch(rule["regex"], name), name
