"""The global view works: the fleet dashboard on a central Prometheus that federates a site one
(deploy/prometheus/federation.yml as shipped), and on a central store the site remote-writes to
(deploy/prometheus/remote-write.yml as shipped), shows what it shows on the site itself.

Three real Prometheus servers: the site one of the dashboards' end-to-end scenario (the shipped
rules, a real `minerwatch serve`, an XMRig stand-in mining at a pool stand-in, a down host) with
the site's external label, a central one federating it from the start, and a remote-write
receiver. The site applies the shipped metric_relabel_configs of deploy/prometheus/prometheus.yml
(the slimmer series set). Every fleet-dashboard query runs on all three: each panel with data on the site has
data centrally and passes the same value checks; a panel empty on the site is empty for the
reason test_dashboards.EXPECTED_EMPTY states, proved on the site (where the raw series live).
"""

from __future__ import annotations

import copy
import json
import time

import test_dashboards
from dashboard_render import render
from support.processes import wait_for
from support.read_series import shipped_drop
from support.servers import Prometheus
from test_dashboards import (FLEET, OUTPUT, Scenario, panel_outcomes, panels, stat_values,
                             value_failures)
from test_global_view_series import Receiver, central_config, shipped_remote_write

UID = "minerwatch-fleet"


def elsewhere(live: Scenario, server) -> Scenario:
    """The same scenario, its queries sent to `server`."""
    view = copy.copy(live)
    view.prometheus = server
    return view


class RelabellingSite(Prometheus):
    """The site Prometheus with the shipped site config's metric_relabel_configs on its minerwatch job."""

    def __init__(self, config: dict, tmp):
        config = copy.deepcopy(config)
        for job in config["scrape_configs"]:
            if job["job_name"] == "minerwatch":
                job["metric_relabel_configs"] = shipped_drop()
        super().__init__(config, tmp)


def test_fleet_dashboard_on_the_global_view(tmp_path, spawn, pool, stack, monkeypatch):  # noqa: F811
    monkeypatch.setattr(test_dashboards, "Prometheus", RelabellingSite)  # the scenario's site Prometheus
    receiver = Receiver(tmp_path / "store")
    stack.append(receiver)
    central = {}

    def start_central(live):
        central["server"] = Prometheus(central_config(live.prometheus), tmp_path / "central")
        stack.append(central["server"])

    live = Scenario(tmp_path, spawn, pool, stack, then=start_central,
                    site={"global": {"external_labels": {"site": "astana"}},
                          "remote_write": shipped_remote_write(receiver)})
    views = {"federation": elsewhere(live, central["server"]), "remote write": elsewhere(live, receiver)}
    firing = f'ALERTS{{alertname="MinerwatchMinerProcessRunning", alertstate="firing", pid="{live.miner.pid}"}}'
    for path, view in views.items():
        wait_for(lambda: view.query(firing), timeout=20, interval=0.5, what=f"the firing alert to arrive by {path}")
    live.end = time.time()
    for view in views.values():
        view.end = live.end

    at_site = live.run(FLEET)
    site_outcome, failures = panel_outcomes(live, UID, at_site)
    assert not failures, "on the site itself: " + "\n".join(failures)
    failures = []
    for path, view in views.items():
        results = view.run(FLEET)
        for panel in panels(FLEET):
            if not panel.get("targets"):
                continue
            has_data = any(results[(panel["id"], t["refId"])] for t in panel["targets"])
            where = site_outcome[panel["title"]]
            print(f"{path:12} {panel['title']:40} {'data' if has_data else 'empty'} (site: {where})")
            if has_data != (where == "data"):
                failures.append(f"{path}: {panel['title']!r} {'has' if has_data else 'has no'} data; on the site: "
                                f"{where}")
        failures += [f"{path}: {problem}" for problem in value_failures(view, UID, results)]
        stats = {p["title"]: stat_values(p, results) for p in panels(FLEET) if p["type"] == "stat"}
        if [stats["Hosts expected"], stats["Hosts reporting"], stats["Hosts not reporting"],
                stats["Hosts with suspects"]] != [[2.0], [1.0], [1.0], [1.0]]:
            failures.append(f"{path}: the stats show {stats}")
        for name, want in (("job", ["minerwatch"]), ("site", ["almaty", "astana"]), ("instance", [live.down,
                                                                                                live.instance])):
            got = sorted(view.label_values(FLEET, name))
            if got != sorted(want):
                failures.append(f"{path}: variable ${name} offers {got}, not {sorted(want)}")
        if path == "federation":
            note = f"global view by federation of a site Prometheus: {int(live.end - live.start)} s of data"
            render(FLEET, results, OUTPUT / f"{UID}-global.png", note)
            (OUTPUT / f"{UID}-global.results.json").write_text(json.dumps(
                {"note": note, "results": {f"{k[0]}/{k[1]}": v for k, v in results.items()}}))
    assert not failures, "\n".join(failures)
    # The site really dropped what the shipped relabelling drops, and kept the rest.
    [drop] = [r["regex"] for r in shipped_drop() if r.get("action") == "drop"]
    assert not live.query(f'{{job="minerwatch", __name__=~"{drop}"}}')
    assert live.query('minerwatch_build_info{job="minerwatch"}')
    # The site's label comes from its external label: no series of this site lacks it centrally.
    for view in views.values():
        assert not view.query('up{job="minerwatch", site=""}')
