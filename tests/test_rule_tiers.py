"""Rule groups by tier: what pages runs every evaluationInterval, what is slow by nature runs in
groups of its own every slowEvaluationInterval, and nothing fast waits for a slow group."""

import importlib.util
import re
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
CONFIG = yaml.safe_load((RULES / "config/minerwatch.yml").read_text())


_spec = importlib.util.spec_from_file_location("minerwatch_rules_generate_tiers", RULES / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)


def _groups(name):
    return yaml.safe_load((RULES / name).read_text())["groups"]


def _seconds(duration):
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


def test_each_file_has_a_fast_and_a_slow_group():
    for name, base in (("minerwatch.rules.yml", "minerwatch.rules"), ("minerwatch.alerts.yml", "minerwatch.alerts")):
        groups = {g["name"]: g["interval"] for g in _groups(name)}
        assert groups == {base: CONFIG["evaluationInterval"], base + ".slow": CONFIG["slowEvaluationInterval"]}, name


def test_slow_series_stay_within_the_lookback():
    # alerts and dashboards read recorded series with the default 5m look-back
    assert _seconds(CONFIG["evaluationInterval"]) < _seconds(CONFIG["slowEvaluationInterval"]) <= 120


def test_pages_and_what_they_read_stay_fast():
    slow_records = {r["record"] for g in _groups("minerwatch.rules.yml") if g["name"].endswith(".slow")
                    for r in g["rules"]}
    fast = [r for name in ("minerwatch.rules.yml", "minerwatch.alerts.yml") for g in _groups(name)
            if not g["name"].endswith(".slow") for r in g["rules"]]
    for group in _groups("minerwatch.alerts.yml"):
        for rule in group["rules"]:
            if rule["labels"]["severity"] == "critical":
                assert not group["name"].endswith(".slow"), rule["alert"]
    for rule in fast:
        read = {n for n in slow_records if re.search(rf"(?<![\w:]){re.escape(n)}(?![\w:])", rule["expr"])}
        assert not read, (rule.get("alert") or rule.get("record"), read)
    slow_alerts = {r["alert"] for g in _groups("minerwatch.alerts.yml") if g["name"].endswith(".slow")
                   for r in g["rules"]}
    assert {"MinerwatchHostCpuAbovePeers", "MinerwatchConfigDrift", "MinerwatchDeskUnreachable",
            "MinerwatchProcessRareOnPeers", "MinerwatchFleetCoverageLow"} <= slow_alerts


def test_unit_tests_evaluate_every_group_in_order():
    # promtool evaluates groups missing from group_eval_order in no fixed order
    order = [g["name"] for name in ("minerwatch.rules.yml", "minerwatch.alerts.yml") for g in _groups(name)]
    assert order == ["minerwatch.rules", "minerwatch.rules.slow", "minerwatch.alerts", "minerwatch.alerts.slow"]
    for path in sorted((RULES / "tests").glob("*.test.yml")):
        test = yaml.safe_load(path.read_text())
        if "group_eval_order" in test and len(test["rule_files"]) > 1:
            assert test["group_eval_order"] == order, path.name


def _src(tmp_path, text):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(RULES / "src/host.yml", src)
    (src / "extra.yml").write_text(text)
    return src


def test_a_fast_rule_reading_a_slow_series_is_refused(tmp_path):
    src = _src(tmp_path, """
tier: slow
recording:
  - record: job:minerwatch_slow_thing:count
    expr: count by (job) (up)
alerting:
  - alert: MinerwatchFastOnSlow
    tier: fast
    expr: job:minerwatch_slow_thing:count > 1
    labels: {severity: critical}
    annotations: {summary: Reads a slow series., description: x}
""")
    with pytest.raises(generate.ConfigError, match="MinerwatchFastOnSlow .*job:minerwatch_slow_thing:count"):
        generate.render(RULES / "config/minerwatch.yml", src)


def test_an_unknown_tier_names_its_source(tmp_path):
    src = _src(tmp_path, "tier: sometimes\nrecording:\n  - record: job:minerwatch_x:count\n    expr: count(up)\n")
    with pytest.raises(generate.ConfigError, match=r"src/extra.yml: tier 'sometimes'"):
        generate.render(RULES / "config/minerwatch.yml", src)


def test_slow_rules_follow_what_they_read_within_their_group(tmp_path):
    src = _src(tmp_path, """
tier: slow
recording:
  - record: job:minerwatch_b:count
    expr: job:minerwatch_a:count + 1
  - record: job:minerwatch_a:count
    expr: count by (job) (instance:minerwatch_off_hours:bool)
""")
    files = generate.render(RULES / "config/minerwatch.yml", src)
    groups = {g["name"]: [r["record"] for r in g["rules"]] for g in yaml.safe_load(files["minerwatch.rules.yml"])["groups"]}
    slow = groups["minerwatch.rules.slow"]
    assert slow.index("job:minerwatch_a:count") < slow.index("job:minerwatch_b:count")
    assert "instance:minerwatch_off_hours:bool" in groups["minerwatch.rules"]
