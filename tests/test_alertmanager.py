"""Alertmanager: the shipped config, its routes, inhibition and notification text.

Real tools only: amtool 0.25 checks the config, tests routes and renders the templates on a
captured webhook payload (`--template.data`); a real Alertmanager on 127.0.0.1 receives
alerts through its API and delivers them to a local webhook (routing, inhibition) and to a
local SMTP sink (the e-mail text exactly as the shipped ticket receiver renders it).
"""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import socketserver
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from support.alertmanager_config import webhook_config
from support.processes import wait_for
from support.servers import Alertmanager, WebhookSink

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
TEMPLATES = ROOT / "deploy" / "alertmanager" / "templates"
PAYLOAD = ROOT / "tests" / "fixtures" / "alertmanager_webhook_payload.json"
RUNBOOKS = yaml.safe_load((ROOT / "rules" / "config" / "minerwatch.yml").read_text())["runbookUrlBase"]
NEVER_INHIBITED = ("MinerwatchExporterDown", "MinerwatchExporterDownHostUp", "MinerwatchExporterRestarted",
                   "MinerwatchFleetCoverageLow", "MinerwatchCollectorFailing", "MinerwatchAntivirusSourceUnreadable",
                   "MinerwatchWindowsServiceWeakened", "MinerwatchWindowsSourceUnreadable")


def _tool(*names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"{' or '.join(names)} not found: run tests/run.sh (it installs Debian's prometheus-alertmanager)")


@pytest.fixture(scope="session")
def amtool():
    return _tool("amtool")


@pytest.fixture(scope="session")
def alertmanager_bin():
    return _tool("prometheus-alertmanager", "alertmanager")


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60)


def render(amtool, text, data=None):
    args = [amtool, "template", "render", f"--template.glob={TEMPLATES}/*.tmpl", f"--template.text={text}"]
    if data:
        args.append(f"--template.data={data}")
    result = run(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


# --- static checks with amtool -------------------------------------------------------------


def test_check_config(amtool):
    result = run(amtool, "check-config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 inhibit rules" in result.stdout and "1 templates" in result.stdout


@pytest.mark.parametrize(
    "severity, receiver, wrong",
    [
        ("critical", "oncall-pager", "security-tickets"),
        ("warning", "security-tickets", "oncall-pager"),
        ("info", "null", "security-tickets"),
        (None, "security-tickets", "null"),  # no or unknown severity: still a ticket
    ],
)
def test_routes(amtool, severity, receiver, wrong):
    labels = ["alertname=MinerwatchMinerProcessRunning", "instance=ws-17:9123"]
    labels += [f"severity={severity}"] if severity else []
    base = [amtool, "config", "routes", "test", f"--config.file={CONFIG}"]
    match = run(*base, f"--verify.receivers={receiver}", *labels)
    assert match.returncode == 0, match.stdout + match.stderr
    mismatch = run(*base, f"--verify.receivers={wrong}", *labels)
    assert mismatch.returncode == 1, mismatch.stdout + mismatch.stderr


def test_inhibition_spares_exporter_health_alerts():
    rule, per_process = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    assert per_process["equal"] == ["instance", "pid"]  # never across processes or hosts
    assert not any(name in str(per_process["target_matchers"]) for name in NEVER_INHIBITED)
    assert rule["source_matchers"] == ['severity="critical"']
    assert 'severity="warning"' in rule["target_matchers"]
    assert rule["equal"] == ["instance"]
    excluded = [m for m in rule["target_matchers"] if m.startswith("alertname!~")]
    assert excluded and all(name in excluded[0] for name in NEVER_INHIBITED)


# --- templates on a captured payload ----------------------------------------------------------


def test_title_on_captured_payload(amtool):
    title = render(amtool, '{{ template "minerwatch.title" . }}', PAYLOAD)
    assert title == (
        "[FIRING:1] MinerwatchMinerProcessRunning on ws-17:9123 process=xmrig pid=4242 user=alice"
        f" pool=pool.example.org:3333 runbook: {RUNBOOKS}minerwatchminerprocessrunning.md"
    )


def test_body_on_captured_payload(amtool):
    body = render(amtool, '{{ template "minerwatch.text" . }}', PAYLOAD)
    for line in (
        "FIRING critical: A cryptocurrency miner is running.",
        "Host:        ws-17:9123 (site hq) (workstation)",
        "User:        alice",
        "Process:     xmrig (pid 4242)",
        "Executable:  /tmp/.cache/xmrig",
        "Signals:     exe_in_temp_dir,miner_cmdline,miner_name,pool_url",
        "Pool:        pool.example.org:3333",
        f"Runbook:     {RUNBOOKS}minerwatchminerprocessrunning.md",
    ):
        assert line in body, f"{line!r} not in:\n{body}"
    assert "<no value>" not in body


def test_templates_without_process_or_pool(amtool, tmp_path):
    """A host-level alert has no pid, user or pool: those parts are left out, not printed empty."""
    data = json.loads(PAYLOAD.read_text())
    alert = data["alerts"][0]
    alert["labels"] = {"alertname": "MinerwatchExporterDown", "instance": "ws-3:9123", "job": "minerwatch", "severity": "warning"}
    alert["annotations"] = {
        "summary": "The minerwatch exporter of a host cannot be scraped.",
        "description": "Prometheus has not scraped minerwatch on ws-3:9123.",
        "runbook_url": f"{RUNBOOKS}minerwatchexporterdown.md",
    }
    alert["status"] = data["status"] = "resolved"
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(data))
    title = render(amtool, '{{ template "minerwatch.title" . }}', path)
    assert title == f"[RESOLVED] MinerwatchExporterDown on ws-3:9123 runbook: {RUNBOOKS}minerwatchexporterdown.md"
    body = render(amtool, '{{ template "minerwatch.text" . }}', path)
    assert "Host:        ws-3:9123\n" in body
    for absent in ("User:", "Process:", "Pool:", "pool=", "<no value>"):
        assert absent not in body + title


def test_pool_from_annotation(amtool, tmp_path):
    data = json.loads(PAYLOAD.read_text())
    alert = data["alerts"][0]
    del alert["labels"]["pool"]
    alert["annotations"]["pool"] = "gulf.moneroocean.stream:10128"
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(data))
    assert " pool=gulf.moneroocean.stream:10128 " in render(amtool, '{{ template "minerwatch.title" . }}', path)


def test_templates_on_amtool_example_data(amtool):
    """amtool's own example data (two alerts, labels we cannot choose): renders, no gaps."""
    title = render(amtool, '{{ template "minerwatch.title" . }}')
    assert title.endswith(" on foo.bar:1234, unknown host (2 alerts)"), title
    html = render(amtool, '{{ template "minerwatch.html" . }}')
    assert html.startswith("<pre>") and "<no value>" not in html


def outbreak_payload(tmp_path, hosts, site="hq"):
    """The captured payload turned into one notification of `hosts` miners at one site."""
    data = json.loads(PAYLOAD.read_text())
    first = data["alerts"][0]
    data["alerts"] = []
    for i in range(hosts):
        alert = json.loads(json.dumps(first))
        alert["labels"].update(instance=f"ws-{i:03d}:9789", pid=str(1000 + i), site=site)
        data["alerts"].append(alert)
    data["groupLabels"] = {"alertname": "MinerwatchMinerProcessRunning", "site": site}
    data["externalURL"] = "http://alertmanager.soc.local:9093"
    path = tmp_path / "outbreak.json"
    path.write_text(json.dumps(data))
    return path


def test_group_title_names_site_hosts_and_count(amtool, tmp_path):
    title = render(amtool, '{{ template "minerwatch.title" . }}', outbreak_payload(tmp_path, 500))
    assert title == (
        "[FIRING:500] MinerwatchMinerProcessRunning at site hq on ws-000:9789, ws-001:9789, ws-002:9789, ..."
        f" (500 alerts) runbook: {RUNBOOKS}minerwatchminerprocessrunning.md"
    )


def test_group_text_lists_every_host_after_a_link_to_all(amtool, tmp_path):
    """500 hosts in one notification: a link to the whole group first (survives truncation),
    then one line per alert, then full details of the first 10 only (bounded size)."""
    body = render(amtool, '{{ template "minerwatch.text" . }}', outbreak_payload(tmp_path, 500))
    lines = body.splitlines()
    assert lines[0] == "500 alerts (500 firing, 0 resolved) of MinerwatchMinerProcessRunning at site hq."
    assert lines[1] == ("All of them in Alertmanager: http://alertmanager.soc.local:9093/#/alerts?filter="
                        "%7Balertname%3D%22MinerwatchMinerProcessRunning%22%2Csite%3D%22hq%22%7D")
    for i in range(500):
        line = f"  FIRING ws-{i:03d}:9789 process=xmrig pid={1000 + i} user=alice pool=pool.example.org:3333"
        assert line in lines, line
    assert body.count("Details:     ") == 10 and "Details of the first 10:" in body
    assert "<no value>" not in body and len(body) < 100_000


# --- a real Alertmanager ------------------------------------------------------------------------

class SMTPSink(socketserver.ThreadingTCPServer):
    """Just enough SMTP to take mail from Alertmanager; keeps the raw messages."""

    daemon_threads = True

    def __init__(self):
        self.messages = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.wfile.write(b"220 127.0.0.1 test sink\r\n")
                data = None
                for line in self.rfile:
                    if data is not None:
                        if line.rstrip(b"\r\n") == b".":
                            sink.messages.append(b"".join(data))
                            data = None
                            self.wfile.write(b"250 queued\r\n")
                        else:
                            data.append(line[1:] if line.startswith(b".") else line)
                        continue
                    verb = line[:4].upper()
                    if verb == b"DATA":
                        data = []
                        self.wfile.write(b"354 end with .\r\n")
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:  # EHLO (no extensions: no STARTTLS, no AUTH), MAIL, RCPT, RSET, NOOP
                        self.wfile.write(b"250 ok\r\n")

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def start_alertmanager(tmp_path, alertmanager_bin):
    started = []

    def start(config):
        am = Alertmanager(alertmanager_bin, config, tmp_path / f"am{len(started)}")
        started.append(am)
        return am

    yield start
    for am in started:
        am.stop()


def alert(alertname, severity, instance="ws-17:9123", **labels):
    return {
        "labels": {"alertname": alertname, "severity": severity, "instance": instance, "job": "minerwatch", **labels},
        "annotations": {
            "summary": f"{alertname} test alert.",
            "description": f"{alertname} on {instance}.",
            "runbook_url": f"{RUNBOOKS}{alertname.lower()}.md",
        },
        "generatorURL": "http://prometheus.example.org:9090/graph",
    }


MINER = alert(
    "MinerwatchMinerProcessRunning", "critical", pid="4242", name="xmrig", user="alice",
    pool="pool.example.org:3333", signals="miner_name",
)


SITE_COVERAGE = alert("MinerwatchFleetCoverageLow", "warning", site="hq")
del SITE_COVERAGE["labels"]["instance"]  # about a site, not a host


def test_live_routing_and_inhibition(start_alertmanager, amtool, tmp_path):
    sink = WebhookSink()
    try:
        am = start_alertmanager(webhook_config(sink.url))
        am.post([
            MINER,
            alert("MinerwatchProcessCpuSustained", "warning", pid="4242", name="xmrig", user="alice"),
            # the same miner: its busy-CPU page is folded into the miner page, its pool page is not
            alert("MinerwatchPoolConnectionCpuSustained", "critical", pid="4242", name="xmrig", user="alice",
                  pool="pool.example.org", remote="203.0.113.5:3333"),
            alert("MinerwatchPoolConnection", "critical", pid="4242", name="xmrig", user="alice",
                  pool="pool.example.org", remote="203.0.113.5:3333"),
            # another process on the same host still pages on its own
            alert("MinerwatchExcludedProcessBusy", "critical", pid="5151", name="svc", user="bob", resource="cpu"),
            alert("MinerwatchExporterDown", "warning"),
            alert("MinerwatchExporterDownHostUp", "critical"),
            alert("MinerwatchExporterRestarted", "warning"),
            SITE_COVERAGE,
            alert("MinerwatchCollectorFailing", "warning", collector="process"),
            alert("MinerwatchAntivirusSourceUnreadable", "warning", product="defender"),
            alert("MinerwatchWindowsServiceWeakened", "warning", setting="restart_on_failure"),
            alert("MinerwatchWindowsSourceUnreadable", "warning", collector="windows", source="defender_events"),
            alert("MinerwatchSuspectProcess", "warning", instance="ws-99:9123", pid="7", name="x", user="bob"),
            alert("MinerwatchDashboardNote", "info"),
        ])
        expected = {
            ("oncall-pager", "MinerwatchMinerProcessRunning", "ws-17:9123"),
            ("oncall-pager", "MinerwatchPoolConnection", "ws-17:9123"),
            ("oncall-pager", "MinerwatchExcludedProcessBusy", "ws-17:9123"),
            ("security-tickets", "MinerwatchExporterDown", "ws-17:9123"),
            ("oncall-pager", "MinerwatchExporterDownHostUp", "ws-17:9123"),
            ("security-tickets", "MinerwatchExporterRestarted", "ws-17:9123"),
            ("security-tickets", "MinerwatchFleetCoverageLow", ""),
            ("security-tickets", "MinerwatchCollectorFailing", "ws-17:9123"),
            ("security-tickets", "MinerwatchAntivirusSourceUnreadable", "ws-17:9123"),
            ("security-tickets", "MinerwatchWindowsServiceWeakened", "ws-17:9123"),
            ("security-tickets", "MinerwatchWindowsSourceUnreadable", "ws-17:9123"),
            ("security-tickets", "MinerwatchSuspectProcess", "ws-99:9123"),
            ("null", "MinerwatchDashboardNote", "ws-17:9123"),
        }

        def delivered():
            return {(p["receiver"], a["labels"]["alertname"], a["labels"].get("instance", ""))
                    for p in sink.payloads for a in p["alerts"]}

        wait_for(lambda: expected <= delivered(), timeout=20, what=f"notifications {expected}")
        states = {a["labels"]["alertname"]: a["status"] for a in am.alerts()}
        assert states["MinerwatchProcessCpuSustained"]["state"] == "suppressed"
        assert states["MinerwatchProcessCpuSustained"]["inhibitedBy"]
        assert states["MinerwatchPoolConnectionCpuSustained"]["state"] == "suppressed"
        for name in NEVER_INHIBITED + ("MinerwatchSuspectProcess", "MinerwatchPoolConnection",
                                       "MinerwatchExcludedProcessBusy"):
            assert states[name]["state"] == "active", (name, states[name])
        assert delivered() == expected  # the inhibited warning was never sent

        # The captured payload renders like the fixture the template tests use.
        page = next(p for p in sink.payloads if p["receiver"] == "oncall-pager"
                    and p["groupLabels"]["alertname"] == "MinerwatchMinerProcessRunning")
        path = tmp_path / "page.json"
        path.write_text(json.dumps(page))
        assert render(amtool, '{{ template "minerwatch.title" . }}', path) == (
            "[FIRING:1] MinerwatchMinerProcessRunning on ws-17:9123 process=xmrig pid=4242 user=alice"
            f" pool=pool.example.org:3333 runbook: {RUNBOOKS}minerwatchminerprocessrunning.md"
        )
    finally:
        sink.shutdown()


def test_live_ticket_email(start_alertmanager):
    """The shipped ticket receiver's e-mail, sent by a real Alertmanager to a local SMTP sink."""
    smtp = SMTPSink()
    try:
        config = webhook_config("http://127.0.0.1:9/unused")
        shipped = {r["name"]: r for r in yaml.safe_load(CONFIG.read_text())["receivers"]}
        (mail,) = shipped["security-tickets"]["email_configs"]
        mail = {k: v for k, v in mail.items() if not k.startswith("auth_")}  # the sink has no AUTH
        mail.update(smarthost=f"127.0.0.1:{smtp.port}", require_tls=False)
        config["receivers"] = [
            {"name": "security-tickets", "email_configs": [mail]} if r["name"] == "security-tickets" else r
            for r in config["receivers"]
        ]
        am = start_alertmanager(config)
        am.post([alert("MinerwatchSuspectProcess", "warning", pid="5150", name="dbus-helper", user="bob",
                       signals="av_excluded", exe="/home/bob/.local/bin/dbus-helper")])
        wait_for(lambda: smtp.messages, timeout=20, what="an e-mail")
        message = email.message_from_bytes(smtp.messages[0], policy=email.policy.default)
        assert message["Subject"] == (
            "[FIRING:1] MinerwatchSuspectProcess on ws-17:9123 process=dbus-helper pid=5150 user=bob"
            f" runbook: {RUNBOOKS}minerwatchsuspectprocess.md"
        )
        assert message["To"] == "security-tickets@example.org"
        text = message.get_body(("plain",)).get_content()
        for line in (
            "FIRING warning: MinerwatchSuspectProcess test alert.",
            "Host:        ws-17:9123",
            "User:        bob",
            "Process:     dbus-helper (pid 5150)",
            "Signals:     av_excluded",
            f"Runbook:     {RUNBOOKS}minerwatchsuspectprocess.md",
        ):
            assert line in text, f"{line!r} not in:\n{text}"
        html = message.get_body(("html",)).get_content()
        assert "dbus-helper (pid 5150)" in html
    finally:
        smtp.shutdown()
        smtp.server_close()


def test_webhook_config_helper(amtool, tmp_path):
    """tests/support/alertmanager_config.py keeps routes, inhibition and templates; only webhooks."""
    shipped = yaml.safe_load(CONFIG.read_text())
    config = webhook_config("http://127.0.0.1:1/hook", group_wait="1s")
    assert [r["name"] for r in config["receivers"]] == [r["name"] for r in shipped["receivers"]]
    for receiver in config["receivers"]:
        assert receiver["webhook_configs"] == [{"url": "http://127.0.0.1:1/hook", "send_resolved": True}]
        assert set(receiver) == {"name", "webhook_configs"}
    assert config["inhibit_rules"] == shipped["inhibit_rules"]
    assert [(r["matchers"], r["receiver"]) for r in config["route"]["routes"]] == [
        (r["matchers"], r["receiver"]) for r in shipped["route"]["routes"]
    ]
    assert config["route"]["group_wait"] == "1s"
    assert not any("group_wait" in r or "repeat_interval" in r for r in config["route"]["routes"])
    path = tmp_path / "elsewhere" / "alertmanager.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(config))
    result = run(amtool, "check-config", path)
    assert result.returncode == 0 and "1 templates" in result.stdout, result.stdout + result.stderr
