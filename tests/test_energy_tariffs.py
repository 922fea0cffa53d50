"""Per-site electricity tariffs (rules/config/minerwatch.yml `energyTariffs`): rules generated with
two sites at tariffs of their own, run through promtool. The same 100 W costs each site at its own
rate, a site without one at the default; each tariff says where it comes from (labels source,
valid_from). A wrong entry stops generation with a line naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

RULES = Path(__file__).resolve().parent.parent / "rules"
SITES = ('{hq: {tengePerKwh: 30, source: "Supplier A, legal entities, VAT included", validFrom: "2025-07-01"}, '
         'branch: {tengePerKwh: 60.5, source: "Supplier B", validFrom: 2026-01-01}}')
DEFAULT_SOURCE = "EPK-Forfait, budget-financed organisations, Kostanay region, VAT included"


def generate(tmp_path, *sets):
    args = [sys.executable, str(RULES / "generate.py"), "--out", str(tmp_path)]
    for value in sets:
        args += ["--set", value]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def host(instance, site, watts):
    """A suspect process of `watts` on `instance` of `site` (None: a target without a site label)."""
    labels = f'instance="{instance}",job="minerwatch"' + (f',site="{site}"' if site else "")
    return labels, [
        {"series": f'minerwatch_process_energy_joules_total{{{labels},pid="1",name="xmrig",user="u",method="rapl"}}',
         "values": f"0+{watts * 15}x60"},
        {"series": f"up{{{labels}}}", "values": "1x60"},
    ]


def test_two_sites_with_their_own_tariffs_cost_differently(promtool, tmp_path):
    result = generate(tmp_path, f"energyTariffs={SITES}")
    assert result.returncode == 0, result.stderr
    hq, hq_series = host("ws-1:9789", "hq", 100)
    branch, branch_series = host("ws-2:9789", "branch", 100)
    remote, remote_series = host("ws-3:9789", "remote", 100)
    bare, bare_series = host("ws-4:9789", None, 100)
    costs = {hq: 3000, branch: 6050, remote: 7542, bare: 7542}  # tenge per hour, in thousandths
    unit = {
        "rule_files": ["minerwatch.rules.yml"],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": hq_series + branch_series + remote_series + bare_series,
            "promql_expr_test": [
                {"expr": "round(instance:minerwatch_suspect_energy_cost_tenge_per_hour:rate5m * 1000)",
                 "eval_time": "10m",
                 "exp_samples": [{"labels": f"{{{labels}}}", "value": cost} for labels, cost in costs.items()]},
                {"expr": "round(instance_pid:minerwatch_suspect_energy_cost_tenge_per_hour:rate5m * 1000)",
                 "eval_time": "10m",
                 "exp_samples": [{"labels": f'{{{labels},pid="1",name="xmrig",user="u"}}', "value": cost}
                                 for labels, cost in costs.items()]},
                {"expr": "round(site:minerwatch_suspect_energy_cost_tenge_per_hour:rate5m * 1000)",
                 "eval_time": "10m",
                 "exp_samples": [{"labels": '{job="minerwatch",site="hq"}', "value": 3000},
                                 {"labels": '{job="minerwatch",site="branch"}', "value": 6050},
                                 {"labels": '{job="minerwatch",site="remote"}', "value": 7542},
                                 {"labels": '{job="minerwatch"}', "value": 7542}]},
                {"expr": "site:minerwatch_energy_tariff_tenge_per_kwh:config",
                 "eval_time": "10m",
                 "exp_samples": [
                     {"labels": 'site:minerwatch_energy_tariff_tenge_per_kwh:config{site="hq",'
                                'source="Supplier A, legal entities, VAT included",valid_from="2025-07-01"}',
                      "value": 30},
                     {"labels": 'site:minerwatch_energy_tariff_tenge_per_kwh:config{site="branch",'
                                'source="Supplier B",valid_from="2026-01-01"}', "value": 60.5},
                     {"labels": 'site:minerwatch_energy_tariff_tenge_per_kwh:config{site="remote",'
                                f'source="{DEFAULT_SOURCE}",valid_from="2025-01-01"}}', "value": 75.42},
                     {"labels": 'site:minerwatch_energy_tariff_tenge_per_kwh:config{'
                                f'source="{DEFAULT_SOURCE}",valid_from="2025-01-01"}}', "value": 75.42},
                 ]},
            ],
        }],
    }
    (tmp_path / "tariffs.test.yml").write_text(yaml.safe_dump(unit, width=1 << 16))
    check = subprocess.run([promtool, "test", "rules", str(tmp_path / "tariffs.test.yml")], capture_output=True,
                           text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("setting, message", [
    ("energyTariffs={hq: {tengePerKwh: -1, source: x, validFrom: 2025-01-01}}",
     "config: energyTariffs.hq: tengePerKwh must be a positive number, got -1"),
    ("energyTariffs={hq: {tengePerKwh: 30, validFrom: 2025-01-01}}",
     "config: energyTariffs.hq must set exactly tengePerKwh, source, validFrom"),
    ('energyTariffs={hq: {tengePerKwh: 30, source: "say \\"hi\\"", validFrom: 2025-01-01}}',
     "config: energyTariffs.hq: source must be set, without"),
    ('energyTariffs={hq: {tengePerKwh: 30, source: x, validFrom: "2025-13-01"}}',
     "config: energyTariffs.hq: validFrom must be a \"YYYY-MM-DD\" date, got '2025-13-01'"),
    ("energyTariffs=[hq]", "config: energyTariffs must map site names"),
    ("energyTariffSource=", "config: energyTariffTengePerKwh, energyTariffSource, energyTariffValidFrom: source must"),
])
def test_a_wrong_tariff_is_reported(tmp_path, setting, message):
    result = generate(tmp_path, setting)
    assert result.returncode == 2 and f"generate.py: {message}" in result.stderr, result.stderr
