"""End to end with the real servers: a miner stand-in starts, the shipped rules fire in a real
Prometheus scraping a real `minerwatch serve`, a real Alertmanager routes the page to a webhook
here, and the resolved notification arrives when the miner stops. A benign CPU burner in the
same run raises no miner alert.

Only timings change, never rule text: Prometheus scrapes and evaluates every second (server
config), the rules are generated from the shipped config with a 1 s evaluation interval (the
rules' config), and Alertmanager groups with 1 s / 2 s timers.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from support.alertmanager_config import webhook_config
from support.exporter import Exporter
from support.processes import stop_pid, wait_for
from support.servers import Alertmanager, Prometheus, WebhookSink, binary
from support.wallets import MONERO_WALLET

ROOT = Path(__file__).resolve().parent.parent


def generate_rules(tmp: Path, every_for: str = "") -> Path:
    """The shipped rules, generated from the shipped config with a 1 s evaluation interval (and
    every alert's `for`, KeepFiringFor aside, at `every_for` when given)."""
    config = yaml.safe_load((ROOT / "rules/config/minerwatch.yml").read_text())
    config["evaluationInterval"] = config["slowEvaluationInterval"] = "1s"
    if every_for:
        config.update({key: every_for for key in config if key.endswith("For") and not key.endswith("KeepFiringFor")})
    (tmp / "config.yml").write_text(yaml.safe_dump(config))
    out = tmp / "rules"
    out.mkdir()
    subprocess.run([sys.executable, str(ROOT / "rules/generate.py"), "--config", str(tmp / "config.yml"),
                    "--out", str(out)], check=True)
    return out


def notifications(sink, alertname, status):
    return [(p, a) for p in sink.payloads for a in p["alerts"]
            if a["labels"]["alertname"] == alertname and a["status"] == status]


def test_miner_pages_on_call_and_resolves(tmp_path, spawn, pool, stack):
    sink = WebhookSink()
    stack.append(sink)
    am_config = webhook_config(sink.url, group_wait="1s", group_interval="2s")
    am = Alertmanager(binary("prometheus-alertmanager", "alertmanager"), am_config, tmp_path / "am")
    stack.append(am)
    exporter = Exporter([])
    stack.append(exporter)
    rules = generate_rules(tmp_path)
    prometheus = Prometheus({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules / "minerwatch.rules.yml"), str(rules / "minerwatch.alerts.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am.url.split("//")[1]]}]}]},
        "scrape_configs": [{"job_name": "minerwatch",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}],
    }, tmp_path / "prometheus")
    stack.append(prometheus)
    wait_for(lambda: prometheus.query('up{job="minerwatch"} == 1'), timeout=30, what="the first scrape")

    benign = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        started = time.monotonic()
        miner = spawn.start("xmrig", ["-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET,
                                      "-p", "hunter2", "--donate-level", "1", "--duration", "300"])
        wait_for(lambda: notifications(sink, "MinerwatchMinerProcessRunning", "firing"), timeout=90,
                 what="the page for the miner")
        fired_after = time.monotonic() - started
        payload, alert = notifications(sink, "MinerwatchMinerProcessRunning", "firing")[0]
        labels = alert["labels"]
        assert payload["receiver"] == "oncall-pager"
        assert labels["severity"] == "critical"
        assert labels["instance"] == f"127.0.0.1:{exporter.port}"
        assert (labels["pid"], labels["name"]) == (str(miner.pid), "xmrig")
        assert labels["user"]
        # signals and exe are annotations (labels that change would restart the alert's `for`)
        assert "signals" not in labels and "exe_sha256" not in labels
        assert "pool_url" in alert["annotations"]["signals"] and "hunter2" not in str(payload)
        assert alert["annotations"]["runbook_url"].endswith("docs/runbooks/minerwatchminerprocessrunning.md")
        assert f"pid {miner.pid}" in alert["annotations"]["description"]
        assert "login" in pool.methods()  # the stand-in really spoke Stratum to the pool
        assert fired_after < 75, f"the page took {fired_after:.0f} s"

        # The benign burner is busy in the same run but is no miner.
        assert not prometheus.query(f'ALERTS{{alertname=~"MinerwatchMiner.*|MinerwatchSuspect.*", '
                                    f'pid="{benign.pid}"}}')
    finally:
        stop_pid(benign)

    stop_pid(miner)
    wait_for(lambda: notifications(sink, "MinerwatchMinerProcessRunning", "resolved"), timeout=60,
             what="the resolved notification")
    _, resolved = notifications(sink, "MinerwatchMinerProcessRunning", "resolved")[0]
    assert resolved["labels"]["pid"] == str(miner.pid)
    print(f"page after {fired_after:.1f} s; resolved after {time.monotonic() - started:.1f} s")
