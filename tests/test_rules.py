"""Prometheus rules: generated from config, valid, conventional, and unit-tested with promtool."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
GENERATED = [RULES / "minerwatch.rules.yml", RULES / "minerwatch.alerts.yml"]
UNIT_TESTS = sorted((RULES / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks"
CONFIG = yaml.safe_load((RULES / "config" / "minerwatch.yml").read_text())

spec = importlib.util.spec_from_file_location("minerwatch_rules_generate", RULES / "generate.py")
generate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate)


def rules_of(path, kind):
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if kind in r]


ALERTS = rules_of(RULES / "minerwatch.alerts.yml", "alert")
RECORDS = rules_of(RULES / "minerwatch.rules.yml", "record")
ALERT_NAMES = sorted({a["alert"] for a in ALERTS})
# Alerts about a whole site, not one host: no instance label, the fleet dashboard.
SITE_ALERTS = {"MinerwatchFleetCoverageLow", "MinerwatchWindowsDefenderProtectionOffSite"}
HOST_UID = json.loads((ROOT / "dashboards" / "minerwatch-host.json").read_text())["uid"]
FLEET_UID = json.loads((ROOT / "dashboards" / "minerwatch-fleet.json").read_text())["uid"]


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


def as_typed(promtool, command: str) -> subprocess.CompletedProcess:
    """`command` as a user types it in the repository's root (the shell expands its glob)."""
    return subprocess.run(["sh", "-c", command.replace("promtool", shlex.quote(str(promtool)), 1)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)


def test_promtool_check_rules_as_typed(promtool):
    """Only rule files match rules/*.yml (the generator's config is in rules/config/), and
    promtool's linter finds no duplicate rule."""
    result = as_typed(promtool, "promtool check rules rules/*.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "lint" not in result.stdout + result.stderr, result.stdout
    assert sorted(p.name for p in RULES.glob("*.yml")) == sorted(p.name for p in GENERATED)


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
    where = "$labels.site" if name in SITE_ALERTS else "{{ $labels.instance }}"
    assert where in annotations["description"]
    assert "humanize " not in annotations["description"] and "humanize }}" not in annotations["description"]
    assert annotations["runbook_url"] == f"{CONFIG['runbookUrlBase']}{name.lower()}.md"
    assert (RUNBOOKS / f"{name.lower()}.md").is_file()
    uid, var = (FLEET_UID, "var-site={{ $labels.site | urlquery }}") if name in SITE_ALERTS else (
        HOST_UID, "var-instance={{ $labels.instance | urlquery }}")
    assert annotations["dashboard_url"].startswith(f"{CONFIG['grafanaUrlBase']}d/{uid}/"), annotations["dashboard_url"]
    assert var in annotations["dashboard_url"] and "var-job={{ $labels.job | urlquery }}" in annotations["dashboard_url"]


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
    used_by_generator = {"runbookUrlBase", "grafanaUrlBase", "evaluationInterval", "slowEvaluationInterval", "officeHours"}
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


def test_promtool_unit_tests_as_typed(promtool):
    """Every unit test file passes on the shipped rules and calendar, run the way users and CI
    systems run it (office-hours cases start on Monday 5 January: 1-2 January are holidays)."""
    result = as_typed(promtool, "promtool test rules rules/tests/*.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS), result.stdout


def test_unit_tests_use_the_shipped_rules():
    for path in UNIT_TESTS:
        text = path.read_text()
        assert not re.search(r"^# generate:", text, re.M), path.name  # no variant of the rules
        assert set(yaml.safe_load(text)["rule_files"]) <= {"../minerwatch.rules.yml", "../minerwatch.alerts.yml"}, path.name


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
    # No holidays: these dates (January 1970) hold New Year; holidays are tested on their own.
    config = dict(CONFIG, officeHours=dict(CONFIG["officeHours"], utcOffsetHours=offset, holidays=[]))
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


def off_hours_unit_test(promtool, tmp_path, generate_args, series, checks, interval="1h"):
    """Generate rules with `generate_args`, then check instance:minerwatch_off_hours:bool of each
    `up` series (its label text) at each (eval time, {series: flag})."""
    assert generate.main(generate_args + ["--out", str(tmp_path)]) == 0
    unit = {
        "rule_files": ["minerwatch.rules.yml"],
        "evaluation_interval": interval,
        "tests": [{
            "interval": interval,
            "input_series": [{"series": f"up{{{labels}}}", "values": "1x300"} for labels in series],
            "promql_expr_test": [
                {"expr": "instance:minerwatch_off_hours:bool", "eval_time": at,
                 "exp_samples": [{"labels": f"instance:minerwatch_off_hours:bool{{{labels}}}", "value": flags[labels]}
                                 for labels in series]}
                for at, flags in checks
            ],
        }],
    }
    (tmp_path / "calendar.test.yml").write_text(yaml.safe_dump(unit))
    result = run(promtool, "test", "rules", tmp_path / "calendar.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_site_calendars(promtool, tmp_path):
    """A site with its own UTC offset, one without holidays; other sites (and a name the regex of
    a dotted site name must not catch) keep the default calendar (UTC+5, holidays)."""
    far, free, dotted, near, plain = (
        'instance="a:1",job="minerwatch",site="embassy-west"',
        'instance="b:1",job="minerwatch",site="no.holidays"',
        'instance="c:1",job="minerwatch",site="noxholidays"',
        'instance="d:1",job="minerwatch",site="hq"',
        'instance="e:1",job="minerwatch"',
    )
    sites = '{embassy-west: {utcOffsetHours: -5}, no.holidays: {holidays: []}}'
    checks = [
        # Thu 1 Jan 05:00 UTC: 10:00 in UTC+5 on New Year (off); 00:00 in UTC-5 (off)
        ("5h", {far: 1, free: 0, dotted: 1, near: 1, plain: 1}),
        # Mon 5 Jan 04:00 UTC: 09:00 in UTC+5 (office), Sun 23:00 in UTC-5 (off)
        ("4d4h", {far: 1, free: 0, dotted: 0, near: 0, plain: 0}),
        # Mon 5 Jan 15:00 UTC: 20:00 in UTC+5 (off), 10:00 in UTC-5 (office)
        ("4d15h", {far: 0, free: 1, dotted: 1, near: 1, plain: 1}),
        # Fri 2 Jan 16:00 UTC: 11:00 in UTC-5, the New Year holiday there too
        ("1d16h", {far: 1, free: 1, dotted: 1, near: 1, plain: 1}),
    ]
    off_hours_unit_test(promtool, tmp_path, ["--set", f"officeHours.sites={sites}"],
                        [far, free, dotted, near, plain], checks)


def test_one_year_holidays(promtool, tmp_path):
    """"YYYY-MM-DD" is off that year only (a moveable holiday, a day off moved by decree)."""
    host = 'instance="a:1",job="minerwatch"'
    checks = [("4d5h", {host: 1}), ("5d5h", {host: 0}), ("6d5h", {host: 1})]  # Mon 5, Tue 6, Wed 7 Jan
    off_hours_unit_test(promtool, tmp_path, ["--set", 'officeHours.holidays=["1970-01-05", "1971-01-06", "01-07"]'],
                        [host], checks)


@pytest.mark.parametrize("holidays", ['["13-01"]', '["1970-02-30"]', '["Jan 1"]', "[0101]"])
def test_bad_holidays_are_reported(tmp_path, holidays):
    result = run(sys.executable, RULES / "generate.py", "--set", f"officeHours.holidays={holidays}", "--out", tmp_path)
    assert result.returncode == 2
    assert "officeHours.holidays entries must be" in result.stderr, result.stderr


def test_unknown_site_key_is_reported(tmp_path):
    result = run(sys.executable, RULES / "generate.py", "--set", "officeHours.sites={lab: {offset: 6}}", "--out", tmp_path)
    assert result.returncode == 2 and "officeHours.sites.lab may set" in result.stderr, result.stderr


def test_runbook_and_grafana_urls_are_overridable(tmp_path):
    """An internal runbook host and Grafana without editing the config: every alert follows."""
    result = run(sys.executable, RULES / "generate.py", "--out", tmp_path,
                 "--set", "runbookUrlBase=https://wiki.ministry.local/minerwatch/runbooks/",
                 "--set", "grafanaUrlBase=http://grafana.astana.local:3000/")
    assert result.returncode == 0, result.stderr
    alerts = rules_of(tmp_path / "minerwatch.alerts.yml", "alert")
    assert alerts
    for rule in alerts:
        annotations = rule["annotations"]
        assert annotations["runbook_url"] == f"https://wiki.ministry.local/minerwatch/runbooks/{rule['alert'].lower()}.md"
        assert annotations["dashboard_url"].startswith("http://grafana.astana.local:3000/d/")
    assert "github.com" not in (tmp_path / "minerwatch.alerts.yml").read_text()


@pytest.mark.parametrize("value", ["wiki.local/runbooks/", "https://wiki.local/runbooks", "''"])
def test_bad_url_base_is_reported(tmp_path, value):
    result = run(sys.executable, RULES / "generate.py", "--set", f"runbookUrlBase={value}", "--out", tmp_path)
    assert result.returncode == 2 and "runbookUrlBase must" in result.stderr, result.stderr


def test_bad_set_is_reported(tmp_path):
    result = run(sys.executable, RULES / "generate.py", "--set", "runbookUrlBase", "--out", tmp_path)
    assert result.returncode == 2 and "expected KEY=VALUE" in result.stderr, result.stderr


def test_dashboard_url_renders_for_a_host(promtool, tmp_path):
    """The dashboard_url template, rendered by Prometheus' own template engine (promtool), opens
    the host dashboard with the alert's job and instance, escaped for a query string."""
    (tmp_path / "tests").mkdir()
    shutil.copy(RULES / "minerwatch.rules.yml", tmp_path)
    shutil.copy(RULES / "minerwatch.alerts.yml", tmp_path)
    instance = "[fe80::1]:9789"
    unit = {
        "rule_files": ["../minerwatch.rules.yml", "../minerwatch.alerts.yml"],
        "evaluation_interval": "15s",
        "group_eval_order": ["minerwatch.rules", "minerwatch.rules.slow", "minerwatch.alerts", "minerwatch.alerts.slow"],
        "tests": [{
            "interval": "15s",
            "input_series": [{"series": f'minerwatch_tuning_msr_writes_allowed{{instance="{instance}",job="minerwatch"}}',
                              "values": "1x100"}],
            "alert_rule_test": [],
        }],
    }
    rule = next(a for a in ALERTS if a["alert"] == "MinerwatchMinerTuningOnWorkstation")
    url = (f"{CONFIG['grafanaUrlBase']}d/{HOST_UID}/{HOST_UID}?var-job={urllib.parse.quote_plus('minerwatch')}"
           f"&var-instance={urllib.parse.quote_plus(instance)}")
    unit["tests"][0]["alert_rule_test"].append({
        "eval_time": "16m", "alertname": rule["alert"],
        "exp_alerts": [{
            "exp_labels": {"severity": "warning", "instance": instance, "job": "minerwatch", "tuning": "msr_writes"},
            "exp_annotations": {
                "summary": rule["annotations"]["summary"],
                "description": f"{instance}: the msr module allows writes to CPU model-specific registers (tuning=msr_writes). "
                               "Workstations need neither; CPU miners (XMRig/RandomX) use both.",
                "runbook_url": rule["annotations"]["runbook_url"],
                "dashboard_url": url,
            },
        }],
    })
    (tmp_path / "tests" / "url.test.yml").write_text(yaml.safe_dump(unit))
    result = run(promtool, "test", "rules", tmp_path / "tests" / "url.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
