"""Prometheus rules: generated from config, valid, conventional, and unit-tested with promtool."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
GENERATED = [RULES / "minerwatch.rules.yml", RULES / "minerwatch.alerts.yml"]
UNIT_TESTS = sorted((RULES / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks"
CONFIG = yaml.safe_load((RULES / "config.yml").read_text())

spec = importlib.util.spec_from_file_location("minerwatch_rules_generate", RULES / "generate.py")
generate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate)


def rules_of(path, kind):
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if kind in r]


ALERTS = rules_of(RULES / "minerwatch.alerts.yml", "alert")
RECORDS = rules_of(RULES / "minerwatch.rules.yml", "record")
ALERT_NAMES = sorted({a["alert"] for a in ALERTS})


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)


# --- generation ---------------------------------------------------------------------------------


def test_generated_files_are_up_to_date():
    result = run(sys.executable, RULES / "generate.py", "--check")
    assert result.returncode == 0, result.stderr


def test_check_fails_on_stale_files(tmp_path):
    assert run(sys.executable, RULES / "generate.py", "--out", tmp_path).returncode == 0
    assert run(sys.executable, RULES / "generate.py", "--check", "--out", tmp_path).returncode == 0
    stale = tmp_path / "minerwatch.alerts.yml"
    stale.write_text(stale.read_text().replace("for: 30s", "for: 5m"))
    result = run(sys.executable, RULES / "generate.py", "--check", "--out", tmp_path)
    assert result.returncode == 1 and "minerwatch.alerts.yml" in result.stderr


def test_unknown_placeholder_is_reported_with_file_and_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "gpu.yml").write_text("alerting:\n  - alert: MinerwatchGpuBusy\n    expr: up{[[selectr]]} == 0\n")
    result = run(sys.executable, RULES / "generate.py", "--src", src, "--out", tmp_path)
    assert result.returncode == 2
    assert "src/gpu.yml:3: unknown placeholder [[selectr]]" in result.stderr


def test_config_problems_are_reported_together(tmp_path):
    config = dict(CONFIG, officeHours={"utcOffsetHours": "+5", "start": "19:00", "end": "08:00", "days": [1, 9]})
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(generate.ConfigError) as error:
        generate.render(path)
    assert len(str(error.value).splitlines()) == 3, str(error.value)


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name)
def test_promtool_check_rules(promtool, path):
    result = run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- conventions --------------------------------------------------------------------------------


def test_recording_rule_names():
    assert RECORDS
    for rule in RECORDS:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_conventions(rule):
    name, labels, annotations = rule["alert"], rule["labels"], rule["annotations"]
    assert re.fullmatch(r"Minerwatch(?:[A-Z][a-z0-9]*)+", name)
    assert labels["severity"] in ("critical", "warning", "info")
    assert annotations["summary"].endswith(".") and "{{" not in annotations["summary"]
    assert "{{ $labels.instance }}" in annotations["description"]
    assert "humanize " not in annotations["description"] and "humanize }}" not in annotations["description"]
    assert annotations["runbook_url"] == f"{CONFIG['runbookUrlBase']}{name.lower()}.md"
    assert (RUNBOOKS / f"{name.lower()}.md").is_file()


def test_per_process_alerts_name_process_pid_user():
    per_process = [a for a in ALERTS if "process" in a["expr"] and "pid" in a["expr"]]
    assert {a["alert"] for a in per_process} >= {
        "MinerwatchMinerProcessRunning", "MinerwatchSuspectProcess", "MinerwatchProcessCpuSustained",
    }
    for rule in per_process:
        for label in ("name", "pid", "user"):
            assert f"$labels.{label} " in rule["annotations"]["description"], (rule["alert"], label)
        assert "Signals: " in rule["annotations"]["description"]


def test_runbook_index_lists_every_alert():
    index = (RUNBOOKS / "README.md").read_text()
    for name in ALERT_NAMES:
        assert f"({name.lower()}.md)" in index, name


def test_every_config_knob_is_used():
    """A knob no source reads is a silent no-op for whoever tunes it."""
    used_by_generator = {"runbookUrlBase", "evaluationInterval", "officeHours"}
    sources = "".join(p.read_text() for p in sorted((RULES / "src").glob("*.yml")))
    for key in CONFIG:
        if key not in used_by_generator:
            assert re.search(rf"\[\[\s*{re.escape(key)}(Regex)?[\s.\]]", sources), f"config {key} is used by no rule"


def test_pool_connection_alerts_name_the_pool():
    """Per-connection alerts say which pool or remote end (their `pool` label: the unit tests)."""
    per_connection = [a for a in ALERTS if "minerwatch_network_pool_connection:" in a["expr"]]
    assert per_connection
    for rule in per_connection:
        description = rule["annotations"]["description"]
        assert "$labels.pool" in description or "$labels.remote" in description, rule["alert"]


# --- promtool unit tests ------------------------------------------------------------------------


def test_every_alert_and_severity_has_a_firing_unit_test():
    tested = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test") or []:
                for exp in check.get("exp_alerts") or []:
                    assert exp.get("exp_annotations"), f"{path.name}: {check['alertname']} without exp_annotations"
                    tested.add((check["alertname"], exp["exp_labels"]["severity"]))
    assert {(a["alert"], a["labels"]["severity"]) for a in ALERTS} <= tested


@pytest.mark.parametrize("path", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(promtool, path):
    result = run(promtool, "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


# Office hours on another UTC day than the local one. promtool time 0 is Thursday 00:00 UTC;
# 3d = Sunday, 4d = Monday (UTC). Office hours 09:00-18:00 local, Monday to Friday.
WRAP_CASES = {
    10: [  # UTC+10: the local Monday starts on Sunday 14:00 UTC
        ("3d22h", 1),  # Sun 22:00 UTC = Mon 08:00 local
        ("3d23h", 0),  # Sun 23:00 UTC = Mon 09:00 local: office, although Sunday in UTC
        ("1d23h", 1),  # Fri 23:00 UTC = Sat 09:00 local: weekend, although Friday in UTC
        ("7h", 0),  # Thu 17:00 local
        ("8h", 1),  # Thu 18:00 local
    ],
    -8: [  # UTC-8: the local Friday ends on Saturday 02:00 UTC
        ("2d1h", 0),  # Sat 01:00 UTC = Fri 17:00 local: office, although Saturday in UTC
        ("2d2h", 1),  # Sat 02:00 UTC = Fri 18:00 local
        ("4d16h", 1),  # Mon 16:00 UTC = Mon 08:00 local
        ("4d17h", 0),  # Mon 17:00 UTC = Mon 09:00 local
    ],
    5.5: [  # UTC+05:30
        ("3h", 1),  # Thu 08:30 local
        ("3h30m", 0),  # Thu 09:00 local
    ],
}


@pytest.mark.parametrize("offset", sorted(WRAP_CASES))
def test_off_hours_flag_across_utc_days(promtool, tmp_path, offset):
    config = dict(CONFIG, officeHours=dict(CONFIG["officeHours"], utcOffsetHours=offset))
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    assert generate.main(["--config", str(tmp_path / "config.yml"), "--out", str(tmp_path)]) == 0
    series = 'instance:minerwatch_off_hours:bool{instance="ws-1:9123",job="minerwatch"}'
    unit = {
        "rule_files": ["minerwatch.rules.yml"],
        "evaluation_interval": "30m",
        "tests": [{
            "interval": "30m",
            "input_series": [{"series": 'up{instance="ws-1:9123",job="minerwatch"}', "values": "1x300"}],
            "promql_expr_test": [
                {"expr": "instance:minerwatch_off_hours:bool", "eval_time": at, "exp_samples": [{"labels": series, "value": flag}]}
                for at, flag in WRAP_CASES[offset]
            ],
        }],
    }
    (tmp_path / "wrap.test.yml").write_text(yaml.safe_dump(unit))
    result = run(promtool, "test", "rules", tmp_path / "wrap.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
