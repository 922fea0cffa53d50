"""Alertmanager under an outbreak: thousands of desks across a few sites start a miner at once.

A real Alertmanager with the shipped deploy/alertmanager config (its routes, grouping, inhibit
rules and templates; every receiver rewired to one webhook sink on 127.0.0.1, as the tests do)
receives what the site Prometheus servers would send: every infected desk raises
MinerwatchMinerProcessRunning and MinerwatchPoolConnection (critical) and
MinerwatchSuspectProcess (warning), with the severities of rules/minerwatch.alerts.yml; the
desks join over --spread seconds and every alert is re-sent each --resend seconds, as Prometheus
does while it fires. It prints the notifications per site and receiver (and the alerts in them),
the time to the first page and to the page that names every desk of a site, and Alertmanager's
resident memory (now and peak).

Time is scaled as in tests/test_fleet_alert_outbreak.py: --scale N (default 5) divides the shipped
timers (critical: group_wait 10 s, group_interval 5 m), the spread, the re-sends and the watch by
N, which changes when notifications go out, not how they are grouped; the times printed are
multiplied back (--scale 1 runs at the shipped timers, about 7 minutes).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support.alertmanager_config import SHIPPED_CONFIG, TIMERS, webhook_config  # noqa: E402
from support.servers import Alertmanager, WebhookSink, binary  # noqa: E402
from test_fleet_alert_outbreak import miner  # noqa: E402

ALERTS = ROOT / "rules" / "minerwatch.alerts.yml"
RAISED = ("MinerwatchMinerProcessRunning", "MinerwatchPoolConnection", "MinerwatchSuspectProcess")


def severities() -> dict:
    """The shipped severity of each raised alert (the first rule of that name)."""
    out = {}
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in RAISED:
                out.setdefault(rule["alert"], rule["labels"]["severity"])
    return out


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit) and duration[:-len(unit)].replace(".", "").isdigit():
            return float(duration[:-len(unit)]) * units[unit]
    raise ValueError(duration)


def shipped_timers() -> dict:
    """The timers of the shipped critical route (where pages go), falling back to the root's."""
    route = yaml.safe_load(SHIPPED_CONFIG.read_text())["route"]
    critical = next((r for r in route.get("routes", []) if 'severity="critical"' in r.get("matchers", [])), {})
    return {t: seconds(critical.get(t, route[t])) for t in TIMERS}


def alerts_of(host: str, site: str, pid: int, severity: dict) -> list:
    base = miner(host, site, pid)
    out = []
    for name in RAISED:
        alert = {**base, "labels": dict(base["labels"], alertname=name, severity=severity[name])}
        if name == "MinerwatchPoolConnection":
            alert["labels"].update(pool="pool.example", remote="192.0.2.7:3333")
        out.append(alert)
    return out


def post(am: Alertmanager, alerts: list) -> None:
    """As Prometheus sends them (Alertmanager.post's 5 s timeout is for a test's few alerts)."""
    request = urllib.request.Request(f"{am.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200


def held(am: Alertmanager) -> int:
    with urllib.request.urlopen(f"{am.url}/api/v2/alerts", timeout=60) as response:
        return len(json.load(response))


def rss_kib(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}


def run(args) -> dict:
    timers = shipped_timers()
    scaled = {t: f"{max(round(v * 1000 / args.scale), 100)}ms" for t, v in timers.items()}  # integers only
    spread, resend = args.spread / args.scale, args.resend / args.scale
    severity = severities()
    sites = [f"site-{i}" for i in range(args.sites)]
    hosts = [(f"pc-{i:05d}.{sites[i % len(sites)]}.ministry.local:9789", sites[i % len(sites)], 4000 + i)
             for i in range(args.hosts)]
    sink, am = WebhookSink(), None
    arrivals = []  # (monotonic time, payload) as the sink gets them
    sink.payloads = _Stamped(arrivals)  # the sink's list, timestamped
    try:
        with tempfile.TemporaryDirectory(prefix="minerwatch-outbreak-") as tmp:
            am = Alertmanager(binary("prometheus-alertmanager", "alertmanager"),
                              webhook_config(sink.url, **{t: scaled[t] for t in TIMERS}), Path(tmp) / "am")
            idle = rss_kib(am.proc.pid)["VmRSS"]
            start = time.monotonic()
            joined, next_resend, peak = 0, start, 0
            end = start + spread + args.observe / args.scale
            while time.monotonic() < end:
                now = time.monotonic()
                due = min(len(hosts), int(len(hosts) * (now - start) / spread) + 1) if spread else len(hosts)
                batch = [a for h in hosts[joined:due] for a in alerts_of(*h, severity)]
                if now >= next_resend:  # every firing alert again, as Prometheus re-sends them
                    batch = [a for h in hosts[:due] for a in alerts_of(*h, severity)]
                    next_resend = now + resend
                for i in range(0, len(batch), 500):  # Prometheus' max batch is 64; fewer round trips here
                    post(am, batch[i:i + 500])
                joined = due
                peak = max(peak, rss_kib(am.proc.pid)["VmRSS"])
                time.sleep(0.2)
            memory = rss_kib(am.proc.pid)
            stored = held(am)
    finally:
        if am:
            am.stop()
        sink.stop()
    per = collections.defaultdict(lambda: [0, 0])
    first_page = None
    complete = {}
    for at, p in arrivals:
        key = (p["groupLabels"].get("site", "-"), p["receiver"])
        per[key][0] += 1
        per[key][1] += len(p["alerts"])
        if p["receiver"] == "oncall-pager" and first_page is None:
            first_page = at - start
        if p["receiver"] == "oncall-pager":
            site = p["groupLabels"].get("site")
            want = sum(1 for h in hosts if h[1] == site)
            if len({a["labels"]["instance"] for a in p["alerts"]}) == want:
                complete.setdefault((site, p["groupLabels"].get("alertname")), at - start)
    return {"timers": timers, "scaled": scaled, "per": dict(per), "first_page_s": first_page,
            "complete_s": complete, "rss_idle_kib": idle, "rss_kib": memory["VmRSS"], "hwm_kib": memory["VmHWM"],
            "rss_peak_sampled_kib": peak, "alerts_stored": stored, "sent": len(hosts) * len(RAISED)}


class _Stamped(list):
    """The sink's payload list, keeping when each payload arrived."""

    def __init__(self, arrivals: list):
        super().__init__()
        self.arrivals = arrivals

    def append(self, payload):
        self.arrivals.append((time.monotonic(), payload))
        super().append(payload)


def report(r: dict, args) -> None:
    version = subprocess.run([binary("prometheus-alertmanager", "alertmanager"), "--version"],
                             capture_output=True, text=True).stdout.split("\n")[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} CPUs, {platform.platform()}, "
          f"{version}; load average {os.getloadavg()[0]:.1f}")
    print(f"{args.hosts} desks at {args.sites} sites, each raising {', '.join(RAISED)}: {r['sent']} alerts; "
          f"desks join over {args.spread} s, alerts re-sent every {args.resend} s; shipped critical route timers "
          f"{ {t: v for t, v in r['timers'].items()} } s, run with {r['scaled']} (scale 1/{args.scale:g})")
    print()
    print("| site | receiver | notifications | alerts in them |")
    print("|---|---|---|---|")
    for (site, receiver), (n, alerts) in sorted(r["per"].items()):
        print(f"| {site} | {receiver} | {n} | {alerts} |")
    total = sum(n for n, _ in r["per"].values())
    print(f"| all | all | {total} | {sum(a for _, a in r['per'].values())} |")
    print()
    first = f"{r['first_page_s'] * args.scale:.1f} s" if r["first_page_s"] is not None else "none"
    print(f"first page {first} after the first desk (at the shipped timers)")
    for (site, name), at in sorted(r["complete_s"].items()):
        print(f"  {name} at {site}: a page naming every desk of the site after {at * args.scale:.0f} s")
    print(f"Alertmanager RSS: {r['rss_idle_kib'] / 1024:.0f} MiB idle, {r['rss_kib'] / 1024:.0f} MiB at the end, "
          f"peak {r['hwm_kib'] / 1024:.0f} MiB (VmHWM); {r['alerts_stored']} alerts held")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2000, help="infected desks (default 2000)")
    parser.add_argument("--sites", type=int, default=4, help="sites they are spread over (default 4)")
    parser.add_argument("--spread", type=float, default=60, help="seconds over which the desks join (default 60)")
    parser.add_argument("--resend", type=float, default=60,
                        help="seconds between re-sends of every firing alert (Prometheus' 1m; default 60)")
    parser.add_argument("--observe", type=float, default=330,
                        help="seconds watched after the last desk joined (default 330: one group_interval and more)")
    parser.add_argument("--scale", type=float, default=5.0,
                        help="divide every timer, the spread and the watch by this (default 5: about 80 s)")
    args = parser.parse_args(argv)
    result = run(args)
    report(result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
