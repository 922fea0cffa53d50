"""Cost per desk at fleet scale, before and after: a simulated fleet (fleetsim.py) scraped by a
real Prometheus with the site config of a git revision (--before, default HEAD) and with the
working tree's, at 1,000, 5,000 and 10,000 desks, printed side by side.

"Site config" is what deploy/prometheus/prometheus.yml of that tree sets for the minerwatch job
(scrape and rule intervals, metric_relabel_configs) and the rules of its rules/ (the files that
prometheus.yml names, minerwatch.rules.yml and minerwatch.alerts.yml, their groups and intervals
as written); the revision's files come from `git archive` into a temporary folder, removed at the
end. Each side's simulated desks copy the output of that side's own exporter (a real `minerwatch
serve` of the revision's exporter/, and of this checkout's, each scraped once), so a change that
exports fewer series counts too; the process model is the same for both.

The rules are not the pre-generated files but each tree's rules regenerated into a temporary
folder by that tree's own rules/generate.py, with the office calendar of the simulated site
(site="sim") pinned by `--hours` (--set officeHours.sites.sim=...): otherwise
instance:minerwatch_off_hours:bool follows the wall clock and the figures the time of day (off
hours, the busy desks fire per-desk off-hours warnings whose alert state and templates cost rule
time). `--hours office` (default): office time every day, all day: start 00:00, end 23:59 (the
generator takes no 24:00, so one minute a day stays off hours), every day, no holidays, and a UTC
offset chosen at the start so that the site's local midnight has just passed: that minute is
23 h 58 min away. `--hours off`: no office day (days []), off hours all the time. Each run checks
that the recorded instance:minerwatch_off_hours:bool of the simulated desks stayed 0 (office) or 1
(off) over the warm-up and the window, and stops otherwise.

Run it through fleet.sh. Everything listens on and talks to 127.0.0.1 only; every process started
here is stopped by its PID on the way out. It prints, per fleet size and side: active series per
idle and per busy desk (and of them Prometheus' own per-target up and scrape_*, recorded, with a
pid label, carried to the global view), series created per desk per day, rule evaluation per
group (median of prometheus_rule_group_last_duration_seconds over the window) and in all per
15 s round (each group weighted by how often it runs), and Prometheus' resident memory, measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import fleetsim  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
KINDS = ("idle", "busy")
HOURS = ("office", "off")
SIM_SITE = "sim"  # the `site` label of every simulated desk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rfind(b")") + 2:].split()
    return sum(int(x) for x in fields[11:13]) / TICK


def _top(counts: Dict[str, int], n: int = 4) -> str:
    """The alerts that created the most series, for the table: "Name 12, Other 3"."""
    return ", ".join(f"{name} {count}" for name, count in list(counts.items())[:n]) or "-"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclasses.dataclass
class Site:
    """What a tree's site config sets for the minerwatch job and its rules."""
    label: str
    rule_files: List[str]
    scrape_interval: str
    evaluation_interval: str
    relabel: list


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(number) * units[unit]
    return total


def hours_calendar(hours: str, now: datetime.datetime = None) -> dict:
    """The office calendar that pins site "sim" to office time (`office`) or off hours (`off`)
    whatever the clock, as rules/generate.py reads officeHours.sites.<site> (SITE_KEYS).

    generate.py takes "HH:MM" up to 23:59 and end > start, so a day's window is at most
    00:00-23:59: the minute 23:59 local stays off hours. For `office` the UTC offset (a fraction of
    an hour works) is chosen so that the local time at `now` is 00:01: that minute is then
    23 h 58 min away, longer than any run. `off`: no office day at all (days [] is vector(0))."""
    if hours == "off":
        return {"utcOffsetHours": 0, "start": "00:00", "end": "23:59", "days": [], "holidays": []}
    now = now or datetime.datetime.now(datetime.timezone.utc)
    utc_minute = now.hour * 60 + now.minute
    offset = (1 - utc_minute) % 1440  # minutes to add to UTC for local 00:01
    if offset > 14 * 60:  # generate.py takes -12..14 hours
        offset -= 1440
    return {"utcOffsetHours": round(offset / 60, 6), "start": "00:00", "end": "23:59",
            "days": [0, 1, 2, 3, 4, 5, 6], "holidays": []}


def hours_setting(calendar: dict) -> str:
    """The --set of rules/generate.py for `calendar` (JSON is YAML; the whole mapping replaces any
    calendar the config has for the site, every key given so that nothing is inherited)."""
    return f"officeHours.sites.{SIM_SITE}={json.dumps(calendar)}"


def describe_hours(hours: str, calendar: dict) -> str:
    if hours == "off":
        return f'hours off (site {SIM_SITE}: no office day, off hours all the time)'
    minutes = round(calendar["utcOffsetHours"] * 60)
    return (f"hours office (site {SIM_SITE}: office every day 00:00-23:59 at UTC{'-' if minutes < 0 else '+'}"
            f"{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}, local midnight just passed, no holidays)")


def regenerate(rules_dir: Path, out: Path, setting: str, who: str) -> Path:
    """`rules_dir`'s rules generated by its own generate.py into `out`, with --set `setting`."""
    out.mkdir(parents=True)
    done = subprocess.run([sys.executable, str(rules_dir / "generate.py"), "--out", str(out), "--set", setting],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{who}: {rules_dir}/generate.py --set {setting!r} failed (a revision older than "
                         f"per-site calendars?):\n{done.stderr.strip()}")
    return out


def site_of(tree: Path, label: str, rules_dir: Path = None) -> Site:
    """The site config of a checkout (or an archive of one) at `tree`: the shipped
    deploy/prometheus/prometheus.yml, its rule files taken from `rules_dir` (default the tree's
    rules/)."""
    import yaml

    rules_dir = rules_dir or tree / "rules"
    config = yaml.safe_load((tree / "deploy/prometheus/prometheus.yml").read_text())
    glob = config.get("global", {})
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "minerwatch")
    rules = [str(rules_dir / Path(f).name) for f in config.get("rule_files", [])]
    missing = [f for f in rules if not Path(f).is_file()]
    if missing:
        raise SystemExit(f"fleet: {label}: deploy/prometheus/prometheus.yml names rule files not in {rules_dir}: {missing}")
    interval = job.get("scrape_interval", glob.get("scrape_interval", "1m"))
    return Site(label, rules, interval, glob.get("evaluation_interval", "1m"), job.get("metric_relabel_configs") or [])


def archive(rev: str, into: Path) -> Path:
    """The deploy/, rules/, exporter/ and dashboards/ of git revision `rev` (what rules/generate.py
    reads: rules/config/, rules/src/ and the dashboards' uids in dashboards/*.json; the exporter
    whose output the simulated desks of that side copy), extracted into `into` (nothing else is
    touched); dashboards/ only where the revision has one."""
    into.mkdir()
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", rev, "--", "dashboards"],
                            capture_output=True, text=True).stdout.split()
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "deploy", "rules", "exporter", *listed],
                         capture_output=True)
    if tar.returncode:
        raise SystemExit(f"fleet: --before {rev}: {tar.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar.stdout, check=True)
    return into


class Prometheus:
    def __init__(self, workdir: Path, targets: Path, site: Site):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            # The scrape timeout is the interval, not the site's: one simulator process serves every
            # desk, and a slow round on a loaded machine is the simulator's, not the site's.
            "global": {"scrape_interval": site.scrape_interval, "evaluation_interval": site.evaluation_interval,
                       "scrape_timeout": site.scrape_interval},
            "rule_files": site.rule_files,
            "scrape_configs": [{"job_name": "minerwatch", "file_sd_configs": [{"files": [str(targets)]}],
                                "metric_relabel_configs": site.relabel}],
        }
        path = workdir / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        self.log = open(workdir / "prometheus.log", "w")
        self.proc = subprocess.Popen([shutil.which("prometheus"), f"--config.file={path}",
                                      f"--storage.tsdb.path={workdir / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}", "--query.timeout=10m"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path: str, **query) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=600) as response:  # counting 1.3M series on 2 busy cores
            return json.load(response)

    def query(self, promql: str) -> List[dict]:
        body = self.get("/api/v1/query", query=promql)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def by_kind(self, promql: str) -> Dict[str, float]:
        return {r["metric"].get("kind", ""): float(r["value"][1]) for r in self.query(promql)}

    def seen(self, match: str, start: float, end: float) -> set:
        """The series with samples between start and end: (kind, their labels)."""
        body = self.get("/api/v1/series", **{"match[]": match, "start": start, "end": end})
        return {(s.get("kind", ""), tuple(sorted(s.items()))) for s in body["data"]}

    def own(self) -> Dict[str, float]:
        """Prometheus' own metrics now, by sample name and labels."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=30) as response:
            text = response.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
        return out

    def stop(self):
        stop(self.proc)
        self.log.close()


def pick(metrics: Dict[str, float], name: str, **contains: str) -> List[float]:
    """Values of the samples called `name` whose label values contain the given strings."""
    return [value for key, value in metrics.items() if key.startswith(name + "{")
            and all(re.search(f'"{label}": "[^"]*{re.escape(part)}', key) for label, part in contains.items())]


def federation_selectors() -> List[str]:
    import yaml

    config = yaml.safe_load((ROOT / "deploy/prometheus/federation.yml").read_text())
    return config["scrape_configs"][0]["params"]["match[]"]


def by_label(metrics: Dict[str, float], name: str, label: str) -> Dict[str, float]:
    """The samples called `name`, by the value of `label`."""
    out = {}
    for key, value in metrics.items():
        if key.startswith(name + "{"):
            out[json.loads(key[len(name):]).get(label, "")] = value
    return out


def rss_kib(pid: int) -> Dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}


def run_size(hosts: int, args, shape: Path, workdir: Path, site: Site) -> Dict[str, object]:
    workdir.mkdir()
    port = free_port()
    targets = workdir / "targets.json"
    sim = subprocess.Popen([sys.executable, str(HERE / "fleetsim.py"), f"--shape={shape}", f"--hosts={hosts}",
                            f"--port={port}", f"--busy-share={args.busy_share}",
                            f"--model={json.dumps(dataclasses.asdict(args.model))}"],
                           stdout=subprocess.PIPE, text=True)
    prometheus = None
    interval = seconds(site.scrape_interval)
    try:
        assert sim.stdout.readline().strip() == "ready", "fleetsim did not start"
        kinds = {i: fleetsim.host_kind(i, args.busy_share) for i in range(hosts)}
        targets.write_text(json.dumps([
            {"targets": [f"127.0.0.1:{port}"], "labels": {
                "__metrics_path__": f"/host/{i}/metrics", "instance": f"pc-{i:05d}.sim:9789", "site": "sim",
                "role": "workstation", "kind": kinds[i]}} for i in range(hosts)]))
        prometheus = Prometheus(workdir, targets, site)
        up_within = 120 + hosts // 20  # the first rounds of 10,000 desks swamp the simulator for minutes
        deadline = time.monotonic() + up_within
        while time.monotonic() < deadline:
            try:
                if prometheus.query("count(up == 1) >= %d" % (hosts * 0.995)):  # the rest: "targets down"
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            raise SystemExit(f"fleet: {hosts} targets not all up within {up_within} s (see {workdir}/prometheus.log)")
        t0 = time.time() - 10
        print(f"  {site.label}: {hosts} hosts up; warming up {args.warmup} s", flush=True)
        time.sleep(args.warmup)
        # Every group has run twice before measuring (a group run every minute may not have yet):
        # a rule's first results are series created once, not churn.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            runs = by_label(prometheus.own(), "prometheus_rule_group_iterations_total", "rule_group")
            if runs and min(runs.values()) >= 2:
                break
            time.sleep(interval / 3)
        before, t1 = prometheus.own(), time.time()
        sim_cpu1, prom_cpu1 = cpu_seconds(sim.pid), cpu_seconds(prometheus.proc.pid)
        rule_times: Dict[str, List[float]] = {}
        while time.time() < t1 + args.window:
            time.sleep(interval)
            now = prometheus.own()
            for group, value in by_label(now, "prometheus_rule_group_last_duration_seconds", "rule_group").items():
                rule_times.setdefault(group.rsplit(";", 1)[-1], []).append(value)
        after, t2 = prometheus.own(), time.time()
        # The pinned calendar held: every simulated desk's off-hours flag was constant since start.
        flag = f'instance:minerwatch_off_hours:bool{{site="{SIM_SITE}"}}'
        span = f"{int(t2 - t0) + 10}s"
        low = prometheus.query(f"min(min_over_time({flag}[{span}]))")
        high = prometheus.query(f"max(max_over_time({flag}[{span}]))")
        off_hours = [float(r[0]["value"][1]) if r else None for r in (low, high)]
        expected = float(args.hours == "off")
        if off_hours not in ([expected, expected], [None, None]):  # None: a tree without the flag
            raise SystemExit(f"fleet: {site.label}: --hours {args.hours}, but instance:minerwatch_off_hours:bool "
                             f"of site {SIM_SITE} went from {off_hours[0]} to {off_hours[1]}, not {expected:g} only")
        group_interval = {g.rsplit(";", 1)[-1]: v for g, v in
                          by_label(after, "prometheus_rule_group_interval_seconds", "rule_group").items()}
        slowest = sorted(((r["evaluationTime"], r["name"]) for g in prometheus.get("/api/v1/rules")["data"]["groups"]
                          for r in g["rules"]), reverse=True)[:5]
        window = t2 - t1
        sim_cpu = (cpu_seconds(sim.pid) - sim_cpu1) / window
        prom_cpu = (cpu_seconds(prometheus.proc.pid) - prom_cpu1) / window
        memory = rss_kib(prometheus.proc.pid)
        count = prometheus.by_kind("count by (kind) (up)")
        active = prometheus.by_kind('count by (kind) ({kind!=""})')
        own = prometheus.by_kind('count by (kind) ({kind!="", __name__=~"up|scrape_.+"})')
        recorded = prometheus.by_kind('count by (kind) ({kind!="", __name__=~".+:.+"})')
        with_pid = prometheus.by_kind('count by (kind) ({kind!="", pid!=""})')
        carried: Dict[str, float] = {}
        for selector in federation_selectors():
            for kind, n in prometheus.by_kind(f'count by (kind) ({selector[:-1]}, kind!=""}})').items():
                carried[kind] = carried.get(kind, 0) + n
        pid_before = prometheus.seen('{kind!="", pid!=""}', t0, t1)
        pid_created = prometheus.seen('{kind!="", pid!=""}', t1, t2) - pid_before
        created_pid = {k: sum(1 for s in pid_created if s[0] == k) for k in count}
        # Alert series (ALERTS, ALERTS_FOR_STATE) are created once per alert episode, not per day:
        # counted apart, not extrapolated.
        new_alerts = (prometheus.seen('{__name__=~"ALERTS|ALERTS_FOR_STATE"}', t1, t2)
                      - prometheus.seen('{__name__=~"ALERTS|ALERTS_FOR_STATE"}', t0, t1))
        alerts_created = len(new_alerts)
        by_alert: Dict[str, int] = {}
        for _, labels in new_alerts:
            name = dict(labels).get("alertname", "")
            by_alert[name] = by_alert.get(name, 0) + 1
        down = prometheus.query("count(up == 0)")
        missed = sum(pick(after, "prometheus_rule_group_iterations_missed_total")) - sum(
            pick(before, "prometheus_rule_group_iterations_missed_total"))
        tsdb_created = (pick(after, "prometheus_tsdb_head_series_created_total")[0]
                        - pick(before, "prometheus_tsdb_head_series_created_total")[0])
        per_day = 86400 / window
        medians = {g: sorted(v)[len(v) // 2] for g, v in rule_times.items() if v}
        result = {
            "side": site.label, "hosts": hosts, "window_s": round(window, 1), "hours": args.hours,
            "off_hours_min_max": off_hours,
            "hosts_by_kind": count,
            "series_per_host": {k: active.get(k, 0) / count[k] for k in count},
            "own_per_host": {k: own.get(k, 0) / count[k] for k in count},
            "recorded_per_host": {k: recorded.get(k, 0) / count[k] for k in count},
            "pid_series_per_host": {k: with_pid.get(k, 0) / count[k] for k in count},
            "global_view_per_host": {k: carried.get(k, 0) / count[k] for k in count},
            "created_pid_per_host_day": {k: created_pid.get(k, 0) / count[k] * per_day for k in count},
            "tsdb_created_in_window": tsdb_created, "alert_series_created_in_window": alerts_created,
            "alert_series_created_by_alert": dict(sorted(by_alert.items(), key=lambda kv: -kv[1])),
            "tsdb_created_per_host_day": (tsdb_created - alerts_created) / hosts * per_day,
            "head_series": pick(after, "prometheus_tsdb_head_series")[0],
            "rule_group_median_s": medians,
            "rule_group_max_s": {g: max(v) for g, v in rule_times.items() if v},
            "rule_group_interval_s": group_interval,
            # Each group's median cost spread over a 15 s round: a group run every 1 m costs a quarter.
            "rule_s_per_15s_round": sum(m * 15 / group_interval.get(g, 15) for g, m in medians.items()),
            "slowest_rules": [(name, round(seconds * 1000)) for seconds, name in slowest],
            "rss_bytes": memory["VmRSS"] * 1024, "rss_peak_bytes": memory["VmHWM"] * 1024,
            "prometheus_cores": prom_cpu, "fleetsim_cores": sim_cpu,
            "targets_down": float(down[0]["value"][1]) if down else 0.0,
            "rule_iterations_missed": missed, "load_average": os.getloadavg()[0],
        }
        mib = 1024 * 1024
        print(f"  {site.label}: series per idle / busy desk {result['series_per_host'].get('idle', 0):.1f} / "
              f"{result['series_per_host'].get('busy', 0):.1f}, created per desk per day "
              f"{result['tsdb_created_per_host_day']:.0f}, rules {result['rule_s_per_15s_round'] * 1000:.0f} ms "
              f"per 15 s round, RSS {memory['VmRSS'] * 1024 / mib:.0f} MiB; "
              + (f"off-hours flag of every desk {expected:g} throughout" if off_hours[0] is not None
                 else "no instance:minerwatch_off_hours:bool recorded"), flush=True)
        return result
    finally:
        if prometheus:
            prometheus.stop()
        stop(sim)


def learn(workdir: Path, exporter: Optional[Path] = None, label: str = "") -> Path:
    """The shape of a real `minerwatch serve` (of `exporter`, another checkout's exporter/, or
    the installed one), written to workdir for fleetsim.py."""
    static, per_process = fleetsim.learn_shape(free_port(), exporter)
    path = workdir / f"shape{'-' + label if label else ''}.json"
    path.write_text(json.dumps({"static": [dataclasses.asdict(f) for f in static], "per_process": per_process}))
    series = sum(len(f.samples) for f in static)
    print(f"{label + ': ' if label else ''}shape from a real minerwatch serve: {series} series per host without a pid label "
          f"({len(static)} families); per top-K process: {', '.join(per_process)}", flush=True)
    return path


def rows(b: dict, a: dict) -> List[tuple]:
    """(figure, before, after) of one fleet size."""
    mib = 1024 * 1024
    out = []
    for k in KINDS:
        if k in a["hosts_by_kind"]:
            def pair(key, fmt="{:.1f}"):
                return tuple(fmt.format(r[key].get(k, 0)) for r in (b, a))
            out.append((f"active series per {k} desk", *pair("series_per_host")))
            out.append(("  of them Prometheus' own (up, scrape_*)", *pair("own_per_host")))
            out.append(("  of them recorded by rules", *pair("recorded_per_host")))
            out.append(("  of them with a pid label", *pair("pid_series_per_host")))
            out.append(("  carried to the global view", *pair("global_view_per_host")))
    out.append(("series created per desk per day (TSDB, alerts apart)",
                f"{b['tsdb_created_per_host_day']:.0f}", f"{a['tsdb_created_per_host_day']:.0f}"))
    out.append(("alert series created in the window", str(b["alert_series_created_in_window"]),
                str(a["alert_series_created_in_window"])))
    out.append(("  by alert", _top(b.get("alert_series_created_by_alert", {})),
                _top(a.get("alert_series_created_by_alert", {}))))
    out.append(("head series", f"{b['head_series']:.0f}", f"{a['head_series']:.0f}"))
    out.append(("rule evaluation per 15 s round, all groups (ms)", f"{b['rule_s_per_15s_round'] * 1000:.0f}",
                f"{a['rule_s_per_15s_round'] * 1000:.0f}"))
    for g in sorted(set(b["rule_group_median_s"]) | set(a["rule_group_median_s"])):
        def cell(r):
            if g not in r["rule_group_median_s"]:
                return "-"
            return (f"{r['rule_group_median_s'][g] * 1000:.0f} / {r['rule_group_max_s'][g] * 1000:.0f} "
                    f"every {r['rule_group_interval_s'].get(g, 0):g} s")
        out.append((f"  group {g}: median / max ms", cell(b), cell(a)))
    out.append(("rule runs missed", f"{b['rule_iterations_missed']:.0f}", f"{a['rule_iterations_missed']:.0f}"))
    out.append(("Prometheus RSS MiB (now / peak)", f"{b['rss_bytes'] / mib:.0f} / {b['rss_peak_bytes'] / mib:.0f}",
                f"{a['rss_bytes'] / mib:.0f} / {a['rss_peak_bytes'] / mib:.0f}"))
    out.append(("Prometheus cores", f"{b['prometheus_cores']:.2f}", f"{a['prometheus_cores']:.2f}"))
    out.append(("fleetsim cores", f"{b['fleetsim_cores']:.2f}", f"{a['fleetsim_cores']:.2f}"))
    out.append(("targets down", f"{b['targets_down']:.0f}", f"{a['targets_down']:.0f}"))
    out.append(("load average after the run", f"{b['load_average']:.1f}", f"{a['load_average']:.1f}"))
    return out


def report(pairs: List[tuple], args) -> None:
    print()
    print(f"--hours {args.hours}: {describe_hours(args.hours, args.hours_calendar)}")
    print(f"| hosts | figure | before ({args.before}) | after (working tree) |")
    print("|---|---|---|---|")
    for b, a in pairs:
        for figure, before, after in rows(b, a):
            print(f"| {a['hosts']} | {figure} | {before} | {after} |")
    for b, a in pairs:
        for r in (b, a):
            print(f"slowest rules at {r['hosts']} hosts, {r['side']} (ms, last evaluation): "
                  + ", ".join(f"{name} {ms}" for name, ms in r["slowest_rules"]))
    print(f"Measured with {pairs[-1][1]['window_s'] + args.warmup:.0f} s of data per run; the head keeps a series "
          "up to about 3 h after its last sample, so a long-running site also holds the series created in the "
          "last 3 h (created per desk per day / 8 per desk).")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1000,5000,10000",
                        help="fleet sizes, comma-separated (default 1000,5000,10000)")
    parser.add_argument("--before", default="HEAD",
                        help="git revision whose site config and rules are 'before' (default HEAD)")
    parser.add_argument("--warmup", type=int, default=40, help="seconds of scrapes before measuring (default 40)")
    parser.add_argument("--window", type=int, default=90, help="measured seconds per fleet size (default 90)")
    parser.add_argument("--busy-share", type=float, default=0.3, help="share of busy desktops (default 0.3)")
    parser.add_argument("--hours", choices=HOURS, default="office",
                        help="pin the simulated site's office calendar on both sides: office (default: office "
                             "time all day, every day) or off (off hours all the time), whatever the clock")
    parser.add_argument("--json", help="write every figure to this file")
    defaults = fleetsim.Model()
    for f in dataclasses.fields(fleetsim.Model):
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help="process model: " + f.name.replace("_", " "))
        else:
            parser.add_argument(flag, type=type(default), default=default, help=f"process model (default {default})")
    args = parser.parse_args(argv)
    args.model = fleetsim.Model(**{f.name: getattr(args, f.name) for f in dataclasses.fields(fleetsim.Model)})
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if not shutil.which("prometheus"):
        print("fleet: prometheus not found (Debian package prometheus)", file=sys.stderr)
        return 2
    version = subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    results, pairs = [], []
    args.hours_calendar = hours_calendar(args.hours)
    setting = hours_setting(args.hours_calendar)
    with tempfile.TemporaryDirectory(prefix="minerwatch-fleet-") as tmp:
        before = archive(args.before, Path(tmp) / "before")
        sides = [site_of(tree, label, regenerate(tree / "rules", Path(tmp) / f"{label}-rules", setting, "fleet"))
                 for tree, label in ((before, "before"), (ROOT, "after"))]
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.before],
                             capture_output=True, text=True).stdout.strip()
        print(f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, {platform.platform()}, "
              f"{version}; load average {os.getloadavg()[0]:.1f}; busy share {args.busy_share}, model "
              f"{dataclasses.asdict(args.model)}; {describe_hours(args.hours, args.hours_calendar)}; "
              f"before = {args.before} ({rev}), after = the working tree", flush=True)
        for site in sides:
            print(f"{site.label}: scrape every {site.scrape_interval}, rules every {site.evaluation_interval} "
                  f"(groups may set their own), {len(site.relabel)} metric_relabel_configs; rules regenerated "
                  f"by its rules/generate.py --set {setting!r}", flush=True)
        # Each side's desks answer what its own exporter would: a change that exports fewer series
        # shows as before and after too.
        shapes = {"before": learn(Path(tmp), before / "exporter", "before"), "after": learn(Path(tmp), None, "after")}
        for hosts in (int(h) for h in args.hosts.split(",")):
            print(f"fleet of {hosts} hosts:", flush=True)
            pair = tuple(run_size(hosts, args, shapes[site.label], Path(tmp) / f"{site.label}-{hosts}", site)
                         for site in sides)
            pairs.append(pair)
            results += pair
    report(pairs, args)
    print(f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "model"},
                                               "model": dataclasses.asdict(args.model), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
