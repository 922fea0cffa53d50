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


def test_icmp_probe_joins_the_minerwatch_targets_on_instance(tmp_path, promtool):
    """The probe job reads the same target files and keeps their instance (host:port), so that
    probe_success{job="minerwatch-icmp"} and up{job="minerwatch"} join on instance, as the rules
    (config probeSelector) expect; the probe itself goes to the host without the port."""
    import re

    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    probe, minerwatch = jobs["minerwatch-icmp"], jobs["minerwatch"]
    rules_config = yaml.safe_load((ROOT / "rules/config/minerwatch.yml").read_text())
    assert rules_config["probeSelector"] == f'job="{probe["job_name"]}"'
    assert probe["file_sd_configs"][0]["files"] == minerwatch["file_sd_configs"][0]["files"]
    assert probe["params"] == {"module": ["icmp"]} and probe["metrics_path"] == "/probe"
    target = "pc-0417.astana.ministry.local:9789"
    labels = {"__address__": target}
    for step in probe["relabel_configs"]:  # the three steps, as Prometheus applies them
        value = ";".join(labels.get(l, "") for l in step.get("source_labels", []))
        match = re.fullmatch(step.get("regex", "(.*)"), value)
        if match:
            labels[step["target_label"]] = match.expand(step.get("replacement", r"\1").replace("$1", r"\1"))
    assert labels["instance"] == target
    assert labels["__param_target"] == "pc-0417.astana.ministry.local"
    assert labels["__address__"].startswith("127.0.0.1:")


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
    assert score <= 2.5, result.stdout  # Debian's node_exporter unit scores 9.2


def test_systemd_unit_lets_nvml_reach_the_gpus():
    """PrivateDevices=yes hides /dev/nvidia*: NVML fails and minerwatch_gpu_up stays 0. The unit
    keeps /dev but lets the device cgroup allow only the NVIDIA control and GPU devices."""
    lines = [l.strip() for l in (DEPLOY / "systemd/minerwatch.service").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert "PrivateDevices=yes" not in lines and "PrivateDevices=no" in lines
    assert "DevicePolicy=closed" in lines
    allowed = {l.split("=", 1)[1] for l in lines if l.startswith("DeviceAllow=")}
    assert allowed == {"/dev/nvidiactl rw", "char-nvidia-frontend rw"}


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_gpu_access_is_what_the_score_pays_for(tmp_path):
    """The unit with PrivateDevices=yes scores better; without DevicePolicy/DeviceAllow it
    scores worse: the NVIDIA exception costs only what it must."""
    def score(text):
        unit = tmp_path / "minerwatch.service"
        unit.write_text(text)
        out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                             capture_output=True, text=True).stdout
        return float(out.split("Overall exposure level for minerwatch.service:")[1].split()[0])

    shipped = (DEPLOY / "systemd/minerwatch.service").read_text()
    open_devices = "\n".join(l for l in shipped.splitlines() if not l.startswith(("DevicePolicy=", "DeviceAllow=")))
    assert score(open_devices) > score(shipped) <= 2.5


def test_daemonset_reads_the_host():
    ds = yaml.safe_load((DEPLOY / "kubernetes/daemonset.yaml").read_text())
    spec = ds["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert spec["hostPID"] is True
    assert "--path.procfs=/host/proc" in container["args"]
    assert set(container["securityContext"]["capabilities"]["add"]) == {"SYS_PTRACE", "DAC_READ_SEARCH", "NET_RAW"}


def test_container_and_daemonset_ask_the_nvidia_runtime_for_nvml_only():
    """NVML comes from the host driver through the NVIDIA container runtime: every GPU, the
    utility capability only, and no nvidia.com/gpu request (that would reserve a GPU)."""
    containerfile = (DEPLOY / "container/Containerfile").read_text()
    assert "ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=utility" in containerfile
    ds = yaml.safe_load((DEPLOY / "kubernetes/daemonset.yaml").read_text())
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "utility"}
    assert "nvidia.com/gpu" not in str(container["resources"])


def test_remote_write_keeps_every_series_the_rules_and_dashboards_read():
    import re

    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    (relabel,) = config["remote_write"][0]["write_relabel_configs"]
    keep = re.compile(f"^(?:{relabel['regex']})$")  # Prometheus anchors relabel regexes
    names = {r.get("record") for f in ("minerwatch.rules.yml",)
             for g in yaml.safe_load((ROOT / "rules" / f).read_text())["groups"] for r in g["rules"]}
    names |= {"minerwatch_process_suspect_info", "up", "ALERTS", "scrape_duration_seconds",
              "probe_success", "process_start_time_seconds"}  # liveness rules read them
    assert names and all(keep.match(n) for n in names), [n for n in names if not keep.match(n)]


def test_systemd_reload_is_sighup_and_stop_waits_for_the_drain():
    from minerwatch.collectors import available
    from minerwatch.collectors.base import DEFAULT_TIMEOUT

    settings = {}
    for line in (DEPLOY / "systemd/minerwatch.service").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key.strip(), value.strip())
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"  # the exporter reloads on SIGHUP
    # SIGTERM lets every collector finish its scrape (at most --collector.timeout each) before exit:
    # systemd must not SIGKILL it sooner.
    assert int(settings["TimeoutStopSec"]) >= DEFAULT_TIMEOUT * len(available()) + 1
