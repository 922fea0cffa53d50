"""Outbreaks page once: a real Alertmanager with the shipped routes, grouping and templates.

500 hosts of one site raise MinerwatchMinerProcessRunning within a short spread; on-call gets
a handful of notifications for that site (not 500), every host is in them, and the shipped
template names every host in the text it sends. A single infected host at another site still
pages on its own at once.

Time is scaled, not the routing: the shipped critical route waits group_wait 10s and
group_interval 5m; here 1s and 10s, with the 500 alerts arriving over 2s (about what "500 hosts
within a minute" is to 5 minutes). The counts do not depend on the scale.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from support.alertmanager_config import webhook_config
from support.processes import wait_for
from support.servers import Alertmanager, WebhookSink, binary

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
TEMPLATES = ROOT / "deploy" / "alertmanager" / "templates"
RUNBOOKS = yaml.safe_load((ROOT / "rules" / "config" / "minerwatch.yml").read_text())["runbookUrlBase"]
HOSTS = [f"pc-{i:04d}.astana.ministry.local:9789" for i in range(500)]


def miner(instance, site, pid):
    return {
        "labels": {"alertname": "MinerwatchMinerProcessRunning", "severity": "critical", "job": "minerwatch",
                   "instance": instance, "site": site, "pid": str(pid), "name": "xmrig", "user": "clerk",
                   "signals": "miner_name,pool_url"},
        "annotations": {"summary": "A cryptocurrency miner is running.",
                        "description": f"Process xmrig (pid {pid}, user clerk) on {instance} identifies itself as a miner.",
                        "runbook_url": f"{RUNBOOKS}minerwatchminerprocessrunning.md"},
        "generatorURL": "http://prometheus.astana.local:9090/graph",
    }


def render(payload, tmp_path, template):
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload))
    result = subprocess.run([shutil.which("amtool"), "template", "render", f"--template.glob={TEMPLATES}/*.tmpl",
                             f"--template.text={{{{ template \"{template}\" . }}}}", f"--template.data={path}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_shipped_grouping_is_per_alert_name_and_site():
    route = yaml.safe_load(SHIPPED.read_text())["route"]
    assert route["group_by"] == ["alertname", "site"]
    assert not any("group_by" in child for child in route["routes"])  # no route splits it per host again
    # No receiver caps the alerts of a notification (webhook max_alerts 0 = all).
    assert "max_alerts" not in SHIPPED.read_text()


def test_500_hosts_page_a_handful_of_times_naming_every_host(tmp_path):
    sink = WebhookSink()
    am = None
    try:
        am = Alertmanager(binary("prometheus-alertmanager", "alertmanager"),
                          webhook_config(sink.url, group_wait="1s", group_interval="10s", repeat_interval="1h"),
                          tmp_path / "am")
        started = time.monotonic()
        for batch in range(10):  # 500 hosts over 2 s
            am.post([miner(host, "astana", 4000 + i) for i, host in enumerate(HOSTS) if i % 10 == batch])
            time.sleep(0.2)
        lone_posted = time.monotonic()
        am.post([miner("pc-0001.almaty.ministry.local:9789", "almaty", 77)])

        def pages(site):
            return [p for p in sink.payloads if p["receiver"] == "oncall-pager" and p["groupLabels"].get("site") == site]

        wait_for(lambda: pages("almaty"), timeout=10, what="the page of the single infected host")
        lone_after = time.monotonic() - lone_posted
        wait_for(lambda: any(len(p["alerts"]) == 500 for p in pages("astana")), timeout=30,
                 what="a notification with all 500 hosts")
        time.sleep(3)  # anything else that was going to come
        outbreak = pages("astana")
        print(f"{len(outbreak)} notifications for 500 hosts in {time.monotonic() - started:.1f} s; "
              f"sizes {[len(p['alerts']) for p in outbreak]}; single host paged after {lone_after:.1f} s")

        assert 1 <= len(outbreak) <= 3, [len(p["alerts"]) for p in outbreak]
        assert all(p["groupLabels"] == {"alertname": "MinerwatchMinerProcessRunning", "site": "astana"} for p in outbreak)
        named = {a["labels"]["instance"] for p in outbreak for a in p["alerts"]}
        assert named == set(HOSTS)  # no host lost, none from the other site

        (lone,) = pages("almaty")
        assert [a["labels"]["instance"] for a in lone["alerts"]] == ["pc-0001.almaty.ministry.local:9789"]
        assert lone_after < 5, f"the single host waited {lone_after:.1f} s"

        # What on-call reads: the shipped templates on the last (full) notification.
        last = outbreak[-1]
        text = render(last, tmp_path, "minerwatch.text")
        for i, host in enumerate(HOSTS):
            assert f"  FIRING {host} process=xmrig pid={4000 + i} user=clerk" in text, host
        assert f"{am.url}/#/alerts?filter=%7Balertname%3D%22MinerwatchMinerProcessRunning%22%2Csite%3D%22astana%22%7D" in text
        title = render(last, tmp_path, "minerwatch.title")
        assert title.startswith("[FIRING:500] MinerwatchMinerProcessRunning at site astana on pc-0000.astana")
        assert "(500 alerts)" in title

        # The link really lists the group: Alertmanager's API with the same filter.
        assert sum(1 for a in am.alerts() if a["labels"].get("site") == "astana") == 500
    finally:
        if am:
            am.stop()
        sink.stop()
