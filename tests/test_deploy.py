"""Deployment files: checked by the real tools (promtool, systemd-analyze), not by eye."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def test_site_prometheus_config_with_shipped_rules(tmp_path, promtool):
    shutil.copy(DEPLOY / "prometheus/prometheus.yml", tmp_path)
    (tmp_path / "minerwatch").mkdir()
    for rules in ("minerwatch.rules.yml", "minerwatch.alerts.yml"):
        shutil.copy(ROOT / "rules" / rules, tmp_path / "minerwatch")
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "minerwatch.alerts.yml" in result.stdout


def test_federation_config(promtool):
    result = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus/federation.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_file_sd_targets_point_at_the_default_port():
    groups = yaml.safe_load((DEPLOY / "prometheus/targets/minerwatch-example.yml").read_text())
    assert all(t.endswith(":9789") for g in groups for t in g["targets"])
    assert {g["labels"]["role"] for g in groups} == {"workstation", "server"}


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_is_valid_and_hardened():
    unit = str(DEPLOY / "systemd/minerwatch.service")
    result = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
    # verify exits 0 even on unknown keys, so any complaint counts, except the install path
    # that does not exist on the test machine.
    complaints = [l for l in result.stderr.splitlines() if "is not executable" not in l]
    assert complaints == []
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", unit], capture_output=True, text=True)
    score = float(result.stdout.split("Overall exposure level for minerwatch.service:")[1].split()[0])
    assert score <= 3.0, result.stdout  # Debian's node_exporter unit scores 9.2


def test_daemonset_reads_the_host():
    ds = yaml.safe_load((DEPLOY / "kubernetes/daemonset.yaml").read_text())
    spec = ds["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert spec["hostPID"] is True
    assert "--path.procfs=/host/proc" in container["args"]
    assert set(container["securityContext"]["capabilities"]["add"]) == {"SYS_PTRACE", "DAC_READ_SEARCH", "NET_RAW"}


def test_remote_write_keeps_every_series_the_rules_and_dashboards_read():
    import re

    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    (relabel,) = config["remote_write"][0]["write_relabel_configs"]
    keep = re.compile(f"^(?:{relabel['regex']})$")  # Prometheus anchors relabel regexes
    names = {r.get("record") for f in ("minerwatch.rules.yml",)
             for g in yaml.safe_load((ROOT / "rules" / f).read_text())["groups"] for r in g["rules"]}
    names |= {"minerwatch_process_suspect_info", "up", "ALERTS", "scrape_duration_seconds"}
    assert names and all(keep.match(n) for n in names), [n for n in names if not keep.match(n)]
