"""Cost per host at fleet scale: a simulated fleet (fleetsim.py) scraped by a real Prometheus with
the shipped rules, at 1,000 and 5,000 hosts, extrapolated to 10,000 per site.

Run it through fleet.sh. Everything listens on and talks to 127.0.0.1 only; every process started
here is stopped by its PID on the way out. It prints, per fleet size: active series per idle and
per busy desktop (scraped, recorded, with a pid label, and what the global view carries), series
created per host per day (and how many of them carry a pid label), rule evaluation time, and
Prometheus' resident memory and CPU; then the figures extrapolated to 10,000 hosts.
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
from typing import Dict, List

from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import fleetsim  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
KINDS = ("idle", "busy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rfind(b")") + 2:].split()
    return sum(int(x) for x in fields[11:13]) / TICK


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Prometheus:
    def __init__(self, workdir: Path, targets: Path, interval: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": f"{interval}s", "evaluation_interval": f"{interval}s",
                       "scrape_timeout": f"{interval}s"},
            "rule_files": [str(ROOT / "rules/minerwatch.rules.yml"), str(ROOT / "rules/minerwatch.alerts.yml")],
            "scrape_configs": [{"job_name": "minerwatch", "file_sd_configs": [{"files": [str(targets)]}]}],
        }
        path = workdir / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        self.log = open(workdir / "prometheus.log", "w")
        self.proc = subprocess.Popen([shutil.which("prometheus"), f"--config.file={path}",
                                      f"--storage.tsdb.path={workdir / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path: str, **query) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=120) as response:
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


def run_size(hosts: int, args, shape: Path, workdir: Path) -> Dict[str, object]:
    workdir.mkdir()
    port = free_port()
    targets = workdir / "targets.json"
    sim = subprocess.Popen([sys.executable, str(HERE / "fleetsim.py"), f"--shape={shape}", f"--hosts={hosts}",
                            f"--port={port}", f"--busy-share={args.busy_share}",
                            f"--model={json.dumps(dataclasses.asdict(args.model))}"],
                           stdout=subprocess.PIPE, text=True)
    prometheus = None
    try:
        assert sim.stdout.readline().strip() == "ready", "fleetsim did not start"
        kinds = {i: fleetsim.host_kind(i, args.busy_share) for i in range(hosts)}
        targets.write_text(json.dumps([
            {"targets": [f"127.0.0.1:{port}"], "labels": {
                "__metrics_path__": f"/host/{i}/metrics", "instance": f"pc-{i:05d}.sim:9789", "site": "sim",
                "role": "workstation", "kind": kinds[i]}} for i in range(hosts)]))
        prometheus = Prometheus(workdir, targets, args.interval)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if prometheus.query("count(up == 1) >= %d" % hosts):
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            raise SystemExit(f"fleet: {hosts} targets not all up within 120 s (see {workdir}/prometheus.log)")
        t0 = time.time() - 10
        print(f"  {hosts} hosts up; warming up {args.warmup} s", flush=True)
        time.sleep(args.warmup)
        before, t1 = prometheus.own(), time.time()
        sim_cpu1, prom_cpu1 = cpu_seconds(sim.pid), cpu_seconds(prometheus.proc.pid)
        rule_times: Dict[str, List[float]] = {"rules": [], "alerts": []}
        while time.time() < t1 + args.window:
            time.sleep(args.interval)
            now = prometheus.own()
            for group in rule_times:
                rule_times[group] += pick(now, "prometheus_rule_group_last_duration_seconds",
                                          rule_group=f";minerwatch.{group}")
        after, t2 = prometheus.own(), time.time()
        slowest = sorted(((r["evaluationTime"], r["name"]) for g in prometheus.get("/api/v1/rules")["data"]["groups"]
                          for r in g["rules"]), reverse=True)[:5]
        window = t2 - t1
        sim_cpu = (cpu_seconds(sim.pid) - sim_cpu1) / window
        prom_cpu = (cpu_seconds(prometheus.proc.pid) - prom_cpu1) / window
        count = prometheus.by_kind("count by (kind) (up)")
        active = prometheus.by_kind('count by (kind) ({kind!=""})')
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
        alerts_created = len(prometheus.seen('{__name__=~"ALERTS|ALERTS_FOR_STATE"}', t1, t2)
                             - prometheus.seen('{__name__=~"ALERTS|ALERTS_FOR_STATE"}', t0, t1))
        down = prometheus.query("count(up == 0)")
        missed = sum(pick(after, "prometheus_rule_group_iterations_missed_total")) - sum(
            pick(before, "prometheus_rule_group_iterations_missed_total"))
        tsdb_created = (pick(after, "prometheus_tsdb_head_series_created_total")[0]
                        - pick(before, "prometheus_tsdb_head_series_created_total")[0])
        per_day = 86400 / window
        result = {
            "hosts": hosts, "window_s": round(window, 1),
            "hosts_by_kind": count,
            "series_per_host": {k: active.get(k, 0) / count[k] for k in count},
            "recorded_per_host": {k: recorded.get(k, 0) / count[k] for k in count},
            "pid_series_per_host": {k: with_pid.get(k, 0) / count[k] for k in count},
            "global_view_per_host": {k: carried.get(k, 0) / count[k] for k in count},
            "created_pid_per_host_day": {k: created_pid.get(k, 0) / count[k] * per_day for k in count},
            "tsdb_created_in_window": tsdb_created, "alert_series_created_in_window": alerts_created,
            "tsdb_created_per_host_day": (tsdb_created - alerts_created) / hosts * per_day,
            "head_series": pick(after, "prometheus_tsdb_head_series")[0],
            "rule_seconds": {g: (sorted(v)[len(v) // 2] if v else None, max(v) if v else None)
                             for g, v in rule_times.items()},
            "slowest_rules": [(name, round(seconds * 1000)) for seconds, name in slowest],
            "rss_bytes": pick(after, "process_resident_memory_bytes")[0],
            "prometheus_cores": prom_cpu, "fleetsim_cores": sim_cpu,
            "targets_down": float(down[0]["value"][1]) if down else 0.0,
            "rule_iterations_missed": missed,
        }
        return result
    finally:
        if prometheus:
            prometheus.stop()
        stop(sim)


def learn(workdir: Path) -> Path:
    static, per_process = fleetsim.learn_shape(free_port())
    path = workdir / "shape.json"
    path.write_text(json.dumps({"static": [dataclasses.asdict(f) for f in static], "per_process": per_process}))
    series = sum(len(f.samples) for f in static)
    print(f"shape from a real minerwatch serve: {series} series per host without a pid label "
          f"({len(static)} families); per top-K process: {', '.join(per_process)}", flush=True)
    return path


def extrapolate(small: dict, large: dict, hosts: int, key) -> float:
    a, b = key(small), key(large)
    return b + (b - a) * (hosts - large["hosts"]) / (large["hosts"] - small["hosts"])


def report(results: List[dict], args) -> None:
    mib = 1024 * 1024
    print()
    print("| hosts | kind | hosts of kind | active series/host | of them recorded | with a pid label "
          "| carried to the global view/host | pid series created/host/day |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        for k in KINDS:
            if k in r["hosts_by_kind"]:
                print(f"| {r['hosts']} | {k} | {r['hosts_by_kind'][k]:.0f} | {r['series_per_host'][k]:.1f} "
                      f"| {r['recorded_per_host'][k]:.1f} | {r['pid_series_per_host'][k]:.1f} "
                      f"| {r['global_view_per_host'][k]:.1f} | {r['created_pid_per_host_day'][k]:.0f} |")
    print()
    print("| hosts | head series | series created/host/day (TSDB, alerts apart) | of them with a pid (series API) "
          "| alert series created | rule group ms (median / max): rules, alerts | Prometheus RSS MiB "
          "| Prometheus cores | fleetsim cores | targets down | rule runs missed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        rules = r["rule_seconds"]
        pid = sum(r["created_pid_per_host_day"][k] * r["hosts_by_kind"][k] for k in r["hosts_by_kind"]) / r["hosts"]
        ms = ", ".join(f"{v[0] * 1000:.0f} / {v[1] * 1000:.0f}" if v[0] is not None else "-" for v in rules.values())
        print(f"| {r['hosts']} | {r['head_series']:.0f} | {r['tsdb_created_per_host_day']:.0f} | {pid:.0f} "
              f"| {r['alert_series_created_in_window']} | {ms} "
              f"| {r['rss_bytes'] / mib:.0f} | {r['prometheus_cores']:.2f} | {r['fleetsim_cores']:.2f} "
              f"| {r['targets_down']:.0f} | {r['rule_iterations_missed']:.0f} |")
    for r in results:
        print(f"slowest rules at {r['hosts']} hosts (ms, last evaluation): "
              + ", ".join(f"{name} {ms}" for name, ms in r["slowest_rules"]))
    if len(results) >= 2:
        small, large = results[0], results[-1]
        n = args.extrapolate
        head = extrapolate(small, large, n, lambda r: r["head_series"])
        rss = extrapolate(small, large, n, lambda r: r["rss_bytes"])
        rules = extrapolate(small, large, n, lambda r: sum(v[0] for v in r["rule_seconds"].values()))
        per_day = large["tsdb_created_per_host_day"]
        print()
        print(f"Extrapolated linearly to {n} hosts per site: {head:.0f} active head series, rule evaluation "
              f"{rules * 1000:.0f} ms per {args.interval} s round (both groups, medians), RSS {rss / mib:.0f} MiB "
              f"after {large['window_s'] + args.warmup:.0f} s of data. Series created: {per_day * n / 24:.0f} "
              "per hour; "
              f"the head keeps a series up to about 3 h after its last sample, so up to "
              f"{head + per_day * n / 24 * 3:.0f} head series in steady state, before the samples of 2 h that "
              "steady state also holds in memory.")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1000,5000", help="fleet sizes, comma-separated (default 1000,5000)")
    parser.add_argument("--interval", type=int, default=15, help="scrape and rule interval, seconds (default 15)")
    parser.add_argument("--warmup", type=int, default=40, help="seconds of scrapes before measuring (default 40)")
    parser.add_argument("--window", type=int, default=90, help="measured seconds per fleet size (default 90)")
    parser.add_argument("--busy-share", type=float, default=0.3, help="share of busy desktops (default 0.3)")
    parser.add_argument("--extrapolate", type=int, default=10000, help="hosts per site to extrapolate to")
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
    print(f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, {platform.platform()}, {version}; "
          f"load average {os.getloadavg()[0]:.1f}; scrape and rule interval {args.interval} s, busy share "
          f"{args.busy_share}, model {dataclasses.asdict(args.model)}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="minerwatch-fleet-") as tmp:
        shape = learn(Path(tmp))
        for hosts in (int(h) for h in args.hosts.split(",")):
            print(f"fleet of {hosts} hosts:", flush=True)
            results.append(run_size(hosts, args, shape, Path(tmp) / f"hosts-{hosts}"))
    report(results, args)
    print(f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "model"},
                                               "model": dataclasses.asdict(args.model), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
