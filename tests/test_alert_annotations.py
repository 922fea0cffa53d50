"""Per-process alerts carry exe and signals as annotations (so that their labels, and with them
the alert's `for`, stay put while the exporter learns more); the notifications still show them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "deploy" / "alertmanager" / "templates"
ALERTS = {r["alert"]: r for g in yaml.safe_load((ROOT / "rules" / "minerwatch.alerts.yml").read_text())["groups"]
          for r in g["rules"] if "alert" in r}
PER_PROCESS = ("MinerwatchMinerProcessRunning", "MinerwatchMinerBehaviour", "MinerwatchSuspectProcess")


@pytest.mark.parametrize("name", PER_PROCESS)
def test_volatile_labels_are_aggregated_away_and_read_back(name):
    rule = ALERTS[name]
    assert "\nmax without (exe, exe_sha256, cmdline, signals) (\n" in rule["expr"]
    for key in ("signals", "exe", "cmdline"):
        assert f".Labels.{key} " in rule["annotations"][key] and "| query" in rule["annotations"][key]
        assert "$labels." + key not in rule["annotations"]["description"]


def test_notification_shows_exe_and_signals_from_annotations(tmp_path):
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool (Debian prometheus-alertmanager) not installed")
    alert = {
        "status": "firing", "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "labels": {"alertname": "MinerwatchMinerProcessRunning", "severity": "critical", "instance": "ws-5:9123",
                   "job": "minerwatch", "pid": "4242", "name": "xmrig", "user": "alice"},
        "annotations": {"summary": "A cryptocurrency miner is running.", "description": "d",
                        "signals": "miner_name,pool_connection", "exe": "/tmp/.x/xmrig", "cmdline": "xmrig"},
        "generatorURL": "http://prometheus:9090/graph",
    }
    data = tmp_path / "payload.json"
    data.write_text(json.dumps({"receiver": "r", "status": "firing", "alerts": [alert], "groupLabels": {},
                                "commonLabels": alert["labels"], "commonAnnotations": {},
                                "externalURL": "http://am:9093", "version": "4", "groupKey": "{}:{}"}))
    result = subprocess.run(
        [amtool, "template", "render", f"--template.glob={TEMPLATES}/*.tmpl",
         '--template.text={{ template "minerwatch.text" . }}', f"--template.data={data}"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Executable:  /tmp/.x/xmrig" in result.stdout, result.stdout
    assert "Signals:     miner_name,pool_connection" in result.stdout, result.stdout
