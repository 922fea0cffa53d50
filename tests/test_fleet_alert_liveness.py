"""Liveness with the real servers: Debian's blackbox exporter pings, a real Prometheus scrapes
with the shipped minerwatch and minerwatch-icmp jobs of deploy/prometheus/prometheus.yml and
evaluates the shipped rules, real `minerwatch serve` processes are the targets.

- a host that answers ping while its exporter is gone is MinerwatchExporterDownHostUp (pending
  here: its `for` is 15 minutes), joined on the instance label the probe job keeps;
- a running exporter raises nothing;
- an exporter killed and started again under the same running host is MinerwatchExporterRestarted.

Only timings change (1 s scrapes and evaluation); job names, relabelling and rule text are the
shipped ones. Everything is on 127.0.0.1; skipped where prometheus-blackbox-exporter is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from support.processes import free_port, stop_pid, wait_for
from support.repo import offline
from support.servers import Prometheus
from test_e2e_alerting import generate_rules

ROOT = Path(__file__).resolve().parent.parent
BLACKBOX = shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")
pytestmark = pytest.mark.skipif(not BLACKBOX, reason="prometheus-blackbox-exporter not installed (apt-get install it)")


class Process:
    """A server process on 127.0.0.1:port, ready when `ready_path` answers; stopped by PID."""

    def __init__(self, argv, port, ready_path="/"):
        self.port = port
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: self._ready(ready_path), timeout=20, what=f"{argv[0]} on port {port}")

    def _ready(self, path):
        assert self.proc.poll() is None, "exited"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=1).read()
            return True
        except OSError:
            return False

    def stop(self):
        stop_pid(self.proc)


def minerwatch(port):
    return Process([sys.executable, "-m", "minerwatch", "serve", f"--web.listen-address=127.0.0.1:{port}",
                    *offline(["--no-collector.network", "--no-collector.gpu"])], port)


def site_prometheus_config(tmp: Path, blackbox_port: int, targets: list, rules: Path) -> dict:
    """The shipped site config with test timings, local targets and no outside addresses."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules / "minerwatch.rules.yml"), str(rules / "minerwatch.alerts.yml")]
    del config["alerting"], config["remote_write"]
    (tmp / "targets").mkdir()
    (tmp / "targets" / "minerwatch-test.yml").write_text(
        yaml.safe_dump([{"targets": targets, "labels": {"site": "test", "role": "workstation"}}]))
    for job in config["scrape_configs"]:
        job["scrape_interval"] = "1s"
        job["scrape_timeout"] = "1s"
        job["file_sd_configs"] = [{"files": [str(tmp / "targets" / "minerwatch-*.yml")], "refresh_interval": "1s"}]
        for step in job.get("relabel_configs", []):
            if step.get("target_label") == "__address__":
                step["replacement"] = f"127.0.0.1:{blackbox_port}"
    return config


def test_probe_tells_a_stopped_exporter_from_a_running_one_and_restarts_are_seen(tmp_path, stack):
    blackbox_port = free_port()
    stack.append(Process([BLACKBOX, "--config.file=/etc/prometheus/blackbox.yml",
                          f"--web.listen-address=127.0.0.1:{blackbox_port}"], blackbox_port, "/-/healthy"))
    live_port, dead_port = free_port(), free_port()
    exporter = minerwatch(live_port)
    live, dead = f"127.0.0.1:{live_port}", f"127.0.0.1:{dead_port}"
    try:
        config = site_prometheus_config(tmp_path, blackbox_port, [live, dead], generate_rules(tmp_path))
        prometheus = Prometheus(config, tmp_path / "prometheus")
        stack.append(prometheus)

        def values(query):
            return {r["metric"].get("instance"): r["value"][1] for r in prometheus.query(query)}

        wait_for(lambda: values('probe_success{job="minerwatch-icmp"}') == {live: "1", dead: "1"}, timeout=30,
                 what="both hosts answering the ICMP probe, under the minerwatch targets' instance")
        wait_for(lambda: values('up{job="minerwatch"}') == {live: "1", dead: "0"}, timeout=30, what="the scrapes")
        pending = 'ALERTS{alertname="MinerwatchExporterDownHostUp", alertstate="pending"}'
        wait_for(lambda: set(values(pending)) == {dead}, timeout=30, what="the alert pending for the dead exporter only")
        alert = prometheus.query(pending)[0]["metric"]
        assert (alert["severity"], alert["site"], alert["job"]) == ("critical", "test", "minerwatch")

        # Kill the running exporter and start it again on the same port: the host runs on.
        wait_for(lambda: prometheus.query(f'count_over_time(process_start_time_seconds{{instance="{live}"}}[1m]) > 2'),
                 timeout=30, what="a few scrapes before the restart")
        assert not prometheus.query('ALERTS{alertname="MinerwatchExporterRestarted"}')
        exporter.stop()
        exporter = minerwatch(live_port)
        firing = 'ALERTS{alertname="MinerwatchExporterRestarted", alertstate="firing"}'
        wait_for(lambda: set(values(firing)) == {live}, timeout=30, what="MinerwatchExporterRestarted for the restart")
    finally:
        exporter.stop()
