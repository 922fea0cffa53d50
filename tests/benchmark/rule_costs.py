"""What each rule group and rule costs Prometheus per round on a simulated fleet.

One fleet (fleetsim.py, the shape learnt by fleet.py from a real `minerwatch serve`) is scraped by
a real Prometheus once per rule directory given, back to back under the same load; each
Prometheus loads that directory's minerwatch.*.yml. For each it prints, per group: interval,
rules, the median and max of the group's evaluation time, and that cost per scrape interval
(a group run every 1 m costs a quarter of its time per 15 s round); then the slowest rules by the
median of their evaluationTime (/api/v1/rules). Everything listens on 127.0.0.1 only; every
process started here is stopped by its PID.

Usage: .venv/bin/python tests/benchmark/rule_costs.py [--hosts 1000] [--window 120] [RULES_DIR ...]
(default RULES_DIR: rules/; e.g. an old checkout's rules/ first, then rules/, to compare).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fleet  # noqa: E402
import fleetsim  # noqa: E402


class Prometheus(fleet.Prometheus):
    """fleet.py's Prometheus with the rule files of another directory."""

    def __init__(self, workdir: Path, targets: Path, interval: int, rules: Path):
        self.port = fleet.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": f"{interval}s", "evaluation_interval": f"{interval}s",
                       "scrape_timeout": f"{interval}s"},
            "rule_files": [str(p) for p in sorted(rules.glob("minerwatch.*.yml"))],
            "scrape_configs": [{"job_name": "minerwatch", "file_sd_configs": [{"files": [str(targets)]}]}],
        }
        path = workdir / "prometheus.yml"
        path.write_text(json.dumps(config))
        self.log = open(workdir / "prometheus.log", "w")
        self.proc = subprocess.Popen([shutil.which("prometheus"), f"--config.file={path}",
                                      f"--storage.tsdb.path={workdir / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)


def measure(rules: Path, hosts: int, port: int, args, workdir: Path) -> dict:
    workdir.mkdir()
    targets = workdir / "targets.json"
    targets.write_text(json.dumps([
        {"targets": [f"127.0.0.1:{port}"], "labels": {
            "__metrics_path__": f"/host/{i}/metrics", "instance": f"pc-{i:05d}.sim:9789", "site": "sim",
            "role": "workstation", "kind": fleetsim.host_kind(i, args.busy_share)}} for i in range(hosts)]))
    prometheus = Prometheus(workdir, targets, args.interval, rules)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if prometheus.query("count(up == 1) >= %d" % hosts):
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            raise SystemExit(f"rule_costs: {hosts} targets not all up within 120 s ({workdir}/prometheus.log)")
        time.sleep(args.warmup)
        groups: Dict[str, dict] = {}
        rule_times: Dict[str, List[float]] = {}
        seen = set()
        end = time.time() + args.window
        while time.time() < end:
            time.sleep(args.interval / 3)
            for g in prometheus.get("/api/v1/rules")["data"]["groups"]:
                key = (g["name"], g["lastEvaluation"])
                if key in seen or g["lastEvaluation"].startswith("0001"):
                    continue
                seen.add(key)
                entry = groups.setdefault(g["name"], {"interval": g["interval"], "rules": len(g["rules"]), "times": []})
                entry["times"].append(g["evaluationTime"])
                for i, r in enumerate(g["rules"]):
                    rule_times.setdefault(f"{r['name']} [{g['name']}#{i}]", []).append(
                        r["evaluationTime"] * args.interval / g["interval"])
        missed = sum(fleet.pick(prometheus.own(), "prometheus_rule_group_iterations_missed_total"))
        return {"groups": groups, "rules": {k: median(v) for k, v in rule_times.items()}, "missed": missed,
                "rss": fleet.pick(prometheus.own(), "process_resident_memory_bytes")[0]}
    finally:
        prometheus.stop()


def report(label: str, result: dict, interval: int, top: int) -> None:
    print(f"\n{label}")
    print("| group | interval | rules | evaluation ms (median / max) | ms per %d s round |" % interval)
    print("|---|---|---|---|---|")
    total = 0.0
    for name, g in result["groups"].items():
        per_round = median(g["times"]) * interval / g["interval"]
        total += per_round
        print(f"| {name} | {g['interval']:g} s | {g['rules']} | {median(g['times']) * 1000:.0f} / "
              f"{max(g['times']) * 1000:.0f} | {per_round * 1000:.0f} |")
    print(f"| all groups | | {sum(g['rules'] for g in result['groups'].values())} | | {total * 1000:.0f} |")
    print(f"rule iterations missed: {result['missed']:.0f}; Prometheus RSS {result['rss'] / 2**20:.0f} MiB")
    print(f"slowest {top} rules (median ms per {interval} s round):")
    for name, t in sorted(result["rules"].items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {t * 1000:7.1f}  {name}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rules", nargs="*", type=Path, default=[fleet.ROOT / "rules"],
                        help="directories of minerwatch.*.yml rule files, measured in turn")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=15, help="scrape and default rule interval, s")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--window", type=int, default=120, help="measured seconds per rule directory")
    parser.add_argument("--busy-share", type=float, default=0.3)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args(argv)
    if not shutil.which("prometheus"):
        print("rule_costs: prometheus not found (Debian package prometheus)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="minerwatch-rule-costs-") as tmp:
        shape = fleet.learn(Path(tmp))
        port = fleet.free_port()
        sim = subprocess.Popen([sys.executable, str(HERE / "fleetsim.py"), f"--shape={shape}", f"--hosts={args.hosts}",
                                f"--port={port}", f"--busy-share={args.busy_share}",
                                f"--model={json.dumps(dataclasses.asdict(fleetsim.Model()))}"],
                               stdout=subprocess.PIPE, text=True)
        try:
            assert sim.stdout.readline().strip() == "ready", "fleetsim did not start"
            for n, rules in enumerate(args.rules):
                print(f"{args.hosts} hosts, rules of {rules}", flush=True)
                result = measure(rules.resolve(), args.hosts, port, args, Path(tmp) / f"run-{n}")
                report(f"{args.hosts} hosts, rules of {rules}", result, args.interval, args.top)
        finally:
            fleet.stop(sim)
    return 0


if __name__ == "__main__":
    sys.exit(main())
