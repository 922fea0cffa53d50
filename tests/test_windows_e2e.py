"""The Windows path end to end, on this Linux machine: the real `minerwatch serve` on the fixture
Windows desks of tests/support/windows_host.py (the faithful psutil, pywin32 and winreg fakes).

1. The miner desk's and the clean desk's whole /metrics are golden files
   (tests/fixtures/e2e-windows-miner-output.txt, e2e-windows-clean-output.txt), normalised as the
   Linux golden run's; after a deliberate change regenerate them with

       MINERWATCH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_windows_e2e.py

2. A real Prometheus with the shipped rules (generated from the shipped config with a 1 s
   evaluation interval and every `for` at 5 s) scrapes both desks: the miner desk's expected
   alerts fire and the clean desk raises none, firing or pending.

Collectors run: those a Windows desk's signals go through (process, antivirus, windows, tuning).
host, network, gpu, energy and evidence would read this Linux machine, not the fixture desk.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Optional

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from support import golden
from support.exporter import Exporter
from support.processes import wait_for
from support.promtool import check_metrics
from support.repo import FIXTURES, ROOT
from support.servers import Prometheus
from support.windows_host import fixture_config
from test_e2e_alerting import generate_rules as e2e_generate_rules
from test_golden import NOT_ON_FIXTURE, readme_rows

COLLECTORS = ("process", "antivirus", "windows", "tuning")
DESKS = ("miner", "clean")
FOR = "5s"  # every alert's `for` in the Prometheus run

# Alerts the miner desk must raise.
EXPECTED_MINER_ALERTS = {
    "MinerwatchAntivirusExclusionAdded",  # the Defender path exclusion added while the desk runs
    "MinerwatchExcludedProcessBusy",  # 4 cores busy under that exclusion
    "MinerwatchMinerProcessRunning",  # miner_config: config.json beside the executable
    "MinerwatchWindowsMsrDriverLoaded",  # WinRing0_1_2_0 running
    "MinerwatchWindowsLockMemoryGranted",  # SeLockMemoryPrivilege granted to BUILTIN\Users and bob
}
# The desk's Defender stays on and the service keeps its recovery: these must not fire on it
# (nor on the clean desk); MinerwatchWindowsDefenderProtectionOffSite needs a whole site.
NOT_IN_SCENARIO = {"MinerwatchWindowsDefenderProtectionOff", "MinerwatchWindowsDefenderProtectionOffSite",
                   "MinerwatchWindowsServiceWeakened"}


def golden_file(desk: str) -> Path:
    return FIXTURES / f"e2e-windows-{desk}-output.txt"


def desk_args() -> list:
    return [f"--config.file={fixture_config()}", "--process.reader=psutil", "--collector.disable-defaults",
            *(f"--collector.{name}" for name in COLLECTORS),
            "--path.procfs=/nonexistent", "--path.sysfs=/nonexistent", "--path.rootfs=/nonexistent"]


def serve(desk: str, clock: str, trigger: Optional[Path] = None) -> Exporter:
    env = dict(os.environ, MINERWATCH_FIXTURE_DESK=desk, MINERWATCH_FIXTURE_CLOCK=clock,
               MINERWATCH_FIXTURE_TRIGGER=str(trigger or ""),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])))
    return Exporter(desk_args(), env=env, module="support.windows_host")


def scrape(desk: str) -> str:
    exporter = serve(desk, "fixed")
    try:
        text = exporter.text()
    finally:
        exporter.stop()
    # no Linux fixture owner here: every user label is a Windows account
    return golden.normalise(text, owner="\0")


# -- 1. the golden files ------------------------------------------------------------------------------
@pytest.mark.parametrize("desk", DESKS)
def test_metrics_of_the_fixture_windows_desk_are_the_golden_file(desk):
    got = scrape(desk)
    path = golden_file(desk)
    if os.environ.get("MINERWATCH_UPDATE_GOLDEN") == "1":
        path.write_text(got)
        pytest.skip(f"wrote {path.relative_to(ROOT)}: review it with git diff")
    want = path.read_text()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                            str(path.relative_to(ROOT)), "this run"))
        pytest.fail(f"/metrics on the fixture Windows {desk} desk differs from the golden file; if the change "
                    "is meant, regenerate it (MINERWATCH_UPDATE_GOLDEN=1) and review the diff:\n" + diff)


@pytest.mark.parametrize("desk", DESKS)
def test_windows_golden_files_pass_promtool_and_every_collector_succeeds(desk, promtool):
    text = golden_file(desk).read_text()
    check_metrics(promtool, text)
    for name in COLLECTORS:  # a golden file regenerated from a broken run would bless the breakage
        assert f'minerwatch_scrape_collector_success{{collector="{name}"}} 1.0\n' in text, name


def test_the_miner_desk_golden_file_shows_the_windows_signals():
    """What the file must keep whatever else changes: each planted fact reached /metrics."""
    text = golden_file("miner").read_text()
    for line in (
        'minerwatch_antivirus_exclusions{kind="path",product="defender"} 1.0',
        'minerwatch_tuning_msr_driver_services{driver="winring0",state="running"} 1.0',
        'minerwatch_tuning_lock_memory_privilege_holders{kind="broad_group"} 1.0',
        'minerwatch_tuning_lock_memory_privilege_holders{kind="user"} 1.0',
        'minerwatch_windows_defender_tamper_protection_enabled 1.0',
    ):
        assert line + "\n" in text, line
    assert re.search(r'^minerwatch_windows_defender_exclusion_event_timestamp_seconds\{action="added",'
                     r'exclusion="C:\\\\Users\\\\bob\\\\AppData\\\\Roaming\\\\Microsoft",kind="path"', text, re.M)
    miner = re.search(r'^minerwatch_process_cpu_seconds_total\{name="svchost.exe",pid="7312",'
                      r'user="MINISTRY\\\\bob"\} (\S+)$', text, re.M)
    assert miner and float(miner.group(1)) == pytest.approx(4 * (4 * 3600 - 180))  # 4 cores since it started
    for signal in ("av_excluded", "exe_in_temp_dir", "miner_config", "name_mismatch"):
        assert re.search(rf'^minerwatch_process_signal\{{name="svchost.exe",pid="7312",signal="{signal}"', text, re.M), signal
    clean = golden_file("clean").read_text()
    assert 'pid="7312"' not in clean and "winring0\",state=\"running\"} 0.0" in clean
    assert 'minerwatch_antivirus_exclusions{kind="path",product="defender"} 0.0\n' in clean


def windows_families() -> dict:
    """Family name (counters with _total) -> (type, label names of its samples) over both desks'
    golden files; VARYING families (no samples there) have labels None."""
    out: dict = {}
    for desk in DESKS:
        text = golden_file(desk).read_text()
        for name, kind in golden.families(text).items():
            out.setdefault(name, (kind, None))
        for family in text_string_to_metric_families(text):
            name = family.name + "_total" if family.type == "counter" else family.name
            for sample in family.samples:
                kind, labels = out[name]
                out[name] = (kind, (labels or set()) | set(sample.labels))
    return {name: value for name, value in out.items() if name.startswith("minerwatch_")}


def test_readme_metrics_tables_cover_the_windows_desks():
    """Every family the Windows desks expose has its README row, with its type and labels, and
    every row marked "Windows only" is seen on them (tests/test_golden.py does the Linux side)."""
    rows, families = readme_rows(), windows_families()
    assert not sorted(set(families) - set(rows)), "families of the Windows desks without a README row"
    wrong = []
    for name, (kind, labels) in families.items():
        cells = rows[name]
        written = {label.strip(" `") for label in cells[2].split(",") if label.strip(" `")}
        if cells[1] != kind or (labels is not None and written != labels):
            wrong.append(f"{name}: README says {cells[1]} {sorted(written)}, the Windows desks {kind} {sorted(labels)}")
    assert not wrong, "\n".join(wrong)
    # the network collector does not run on these desks: tests/test_windows_dns.py checks its rows
    unseen = [name for name, cells in rows.items() if NOT_ON_FIXTURE.search(cells[-1]) and name not in families
              and not name.startswith("minerwatch_network_")]
    assert not unseen, f"README rows marked Windows only that neither Windows desk exposes: {unseen}"


# -- 2. a real Prometheus with the shipped rules --------------------------------------------------------
def generate_rules(tmp: Path) -> Path:
    """The shipped rules from the shipped config, evaluated every second, every `for` at FOR."""
    return e2e_generate_rules(tmp, every_for=FOR)


def alert_names(rules: Path) -> set:
    groups = yaml.safe_load((rules / "minerwatch.alerts.yml").read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def alerts(prometheus: Prometheus, instance: str, state: str = "") -> set:
    selector = f'instance="{instance}"' + (f', alertstate="{state}"' if state else "")
    return {r["metric"]["alertname"] for r in prometheus.query(f"ALERTS{{{selector}}}")}


def test_shipped_rules_fire_the_expected_alerts_on_the_miner_desk_and_none_on_the_clean_one(tmp_path, stack):
    rules = generate_rules(tmp_path)
    shipped = alert_names(rules)
    required = EXPECTED_MINER_ALERTS
    assert required | NOT_IN_SCENARIO <= shipped, sorted((required | NOT_IN_SCENARIO) - shipped)
    trigger = tmp_path / "add-exclusion"
    miner, clean = serve("miner", "live", trigger), serve("clean", "live")
    stack += [miner, clean]
    targets = {"miner": f"127.0.0.1:{miner.port}", "clean": f"127.0.0.1:{clean.port}"}
    prometheus = Prometheus({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules / "minerwatch.rules.yml"), str(rules / "minerwatch.alerts.yml")],
        "scrape_configs": [{"job_name": "minerwatch",
                            "static_configs": [{"targets": sorted(targets.values())}]}],
    }, tmp_path / "prometheus")
    stack.append(prometheus)
    wait_for(lambda: len(prometheus.query('up{job="minerwatch"} == 1')) == 2, timeout=30, what="both desks scraped")
    # bob adds the Defender exclusion for the miner's folder once Prometheus has seen the desk without it
    wait_for(lambda: prometheus.query(f'count_over_time(minerwatch_antivirus_exclusions{{instance="{targets["miner"]}", '
                                      f'kind="path"}}[1m]) >= 2'), timeout=30, what="two scrapes before the exclusion")
    trigger.touch()

    try:
        wait_for(lambda: alerts(prometheus, targets["miner"], "firing") >= required, timeout=90,
                 what=f"the miner desk's alerts {sorted(required)}")
    except AssertionError as exc:
        firing = alerts(prometheus, targets["miner"], "firing")
        raise AssertionError(f"{exc}; firing: {sorted(firing)}, pending: "
                             f"{sorted(alerts(prometheus, targets['miner'], 'pending'))}") from None
    fired = alerts(prometheus, targets["miner"], "firing")
    assert not fired & NOT_IN_SCENARIO, fired
    # The clean desk scraped and evaluated well past every `for` and the first rate() samples.
    wait_for(lambda: prometheus.query(f'count_over_time(up{{instance="{targets["clean"]}"}}[1m]) >= 15'),
             timeout=30, what="15 scrapes of the clean desk")
    assert alerts(prometheus, targets["clean"]) == set()
    print(f"miner desk: {sorted(fired)}")
