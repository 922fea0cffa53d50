"""Load benchmark of the HTTP side: minerwatch and node_exporter under wrk, same load, same run.

Run it through load.sh (it installs wrk and node_exporter). Both exporters listen on free
127.0.0.1 ports and read the same exporter-toolkit web config; wrk hammers /metrics with 1, 8
and 64 keep-alive connections, in three modes: plain HTTP, basic auth, TLS + basic auth. A
fourth mode, idle, holds 1,000 and 10,000 idle connections against each exporter and measures
its threads, memory and a scrape on a fresh connection meanwhile. Every process started here
is stopped by its PID on the way out. See README.md ("Load benchmark").
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import bcrypt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402  (bench.py sits beside this file)
    MINERWATCH_CONFIG, NODE_COLLECTORS, Exporter, count_fds, cpu_seconds, find_binary, load_average,
    memory_bytes, minerwatch_argv, version_of,
)
from support.idle_clients import IdleClients, status_field  # noqa: E402  (bench.py put tests/ on the path)

MIB = 1024 * 1024
USER, PASSWORD = "prometheus", "load-benchmark"
BCRYPT_COST = 10  # what `htpasswd -nBC 10` gives, the cost exporter-toolkit's docs show
WRK_MODES = ("plain", "auth", "tls+auth")
MODES = WRK_MODES + ("idle",)
RSS_GROWTH_LIMIT = 1 * MIB  # "RSS flat": VmRSS growth over the last repeated run
AUTH_CPU_RATIO_LIMIT = 1.2  # CPU per authenticated scrape at most 20% above a plain one
IDLE_THREADS_LIMIT = 64  # threads of minerwatch while idle connections are held (one per connection before)
IDLE_SCRAPE_LIMIT_MS = 1000.0  # a scrape on a fresh connection while they are held


def web_config_text(mode: str, workdir: str) -> str:
    text = ""
    if "tls" in mode:
        text += (f"tls_server_config:\n  cert_file: {workdir}/cert.pem\n  key_file: {workdir}/key.pem\n")
    if "auth" in mode:
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
        text += f"basic_auth_users:\n  {USER}: '{hashed}'\n"
    return text


def make_certificate(workdir: str) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", f"{workdir}/key.pem",
                    "-out", f"{workdir}/cert.pem"], check=True, capture_output=True)


# -- wrk -------------------------------------------------------------------------------------------

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(out: str) -> Dict[str, float]:
    """requests, scrapes answered 2xx/3xx, ok/s, p50/p99 in ms, timeouts, errors (socket + non-2xx/3xx)."""
    def number(pattern: str, default: Optional[float] = None) -> float:
        match = re.search(pattern, out, re.MULTILINE)
        if match is None:
            if default is None:
                raise RuntimeError(f"wrk output has no {pattern!r}:\n{out}")
            return default
        return float(match.group(1))

    def latency(q: str) -> float:
        match = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        return float(match.group(1)) * UNIT[match.group(2)] if match else float("nan")

    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    connect, read, write, timeouts = (int(x) for x in sockets.groups()) if sockets else (0, 0, 0, 0)
    requests = number(r"^\s+(\d+) requests in")
    rejected = number(r"Non-2xx or 3xx responses: (\d+)", 0)
    seconds = number(r"requests in ([\d.]+)s")
    return {
        "requests": requests,
        "ok": requests - rejected,
        "ok_per_s": (requests - rejected) / seconds,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "timeouts": timeouts,
        "errors": connect + read + write + rejected,
    }


def run_wrk(wrk: str, url: str, connections: int, seconds: float, timeout: float, auth: bool) -> Dict[str, float]:
    argv = [wrk, f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds:g}s", f"--timeout={timeout:g}s",
            "--latency", "-H", "Accept-Encoding: gzip"]
    if auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        argv += ["-H", f"Authorization: Basic {token}"]
    result = subprocess.run(argv + [url], capture_output=True, text=True, timeout=seconds + timeout + 30)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
    return parse_wrk(result.stdout)


# -- one mode, both exporters ----------------------------------------------------------------------


def exporter_argvs(workdir: str, node_exporter: str, flags: List[str]) -> Dict[str, List[str]]:
    return {
        "minerwatch": minerwatch_argv(os.path.join(workdir, "minerwatch.yml")) + flags,
        "node_exporter": [node_exporter, "--web.listen-address=127.0.0.1:{port}", *flags,
                          "--collector.disable-defaults"] + [f"--collector.{c}" for c in NODE_COLLECTORS],
    }


def measure_mode(args, mode: str, workdir: str, wrk: str, node_exporter: str) -> List[Dict[str, object]]:
    flags = []
    if mode != "plain":
        web_config = os.path.join(workdir, f"web-{mode.replace('+', '-')}.yml")
        with open(web_config, "w") as f:
            f.write(web_config_text(mode, workdir))
        flags = [f"--web.config.file={web_config}"]
    rows = []
    for name, argv in exporter_argvs(workdir, node_exporter, flags).items():
        if name not in args.exporters:
            continue
        exporter = Exporter(f"{name}-{mode.replace('+', '-')}", argv, workdir)
        try:
            scheme = "https" if "tls" in mode else "http"
            url = f"{scheme}://127.0.0.1:{exporter.port}/metrics"
            run_wrk(wrk, url, 1, min(2.0, args.seconds), args.timeout, "auth" in mode)  # warm-up
            # The last count runs again `--repeats` times: RSS after the last two shows whether
            # memory keeps growing once the allocator has settled.
            for run, connections in enumerate(args.connections + args.connections[-1:] * args.repeats):
                rss_before = memory_bytes(exporter.pid, "VmRSS")
                cpu_before = cpu_seconds(exporter.pid)
                figures = run_wrk(wrk, url, connections, args.seconds, args.timeout, "auth" in mode)
                cpu = cpu_seconds(exporter.pid) - cpu_before
                time.sleep(1.0)  # let the server close its side of wrk's connections
                rows.append({
                    "exporter": name, "mode": mode, "connections": connections,
                    "repeat": run >= len(args.connections), **figures,
                    "cpu_ms_per_scrape": 1000 * cpu / max(figures["ok"], 1),
                    "rss_before_mib": rss_before / MIB, "rss_after_mib": memory_bytes(exporter.pid, "VmRSS") / MIB,
                })
                print(format_row(rows[-1]), flush=True)
        finally:
            exporter.stop()
    return rows


# -- idle connections ------------------------------------------------------------------------------


def fresh_scrape(port: int, timeout: float) -> float:
    """Seconds for one GET /metrics on a new connection (Prometheus after its connection was
    closed); infinite if it timed out, failed or was not answered 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.perf_counter()
    try:
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        return float("inf")
    finally:
        conn.close()
    return time.perf_counter() - started if response.status == 200 else float("inf")


def measure_idle(args, workdir: str, node_exporter: str) -> List[Dict[str, object]]:
    """For each count, each exporter started afresh: threads and RSS, then `count` idle
    connections held (a third each: nothing sent, half a request head, one request answered and
    kept alive), and meanwhile scrapes on fresh connections; then they close, and one more."""
    rows = []
    for count in args.idle:
        for name, argv in exporter_argvs(workdir, node_exporter, []).items():
            if name not in args.exporters:
                continue
            exporter = Exporter(f"{name}-idle-{count}", argv, workdir)
            clients = None
            try:
                for _ in range(3):  # warm-up
                    fresh_scrape(exporter.port, args.timeout)
                before = status_field(exporter.pid, "Threads"), status_field(exporter.pid, "VmRSS")
                clients = IdleClients(("127.0.0.1", exporter.port), count)
                time.sleep(1.0)  # let the exporter take in what was sent
                held = (status_field(exporter.pid, "Threads"), status_field(exporter.pid, "VmRSS"),
                        count_fds(exporter.pid))
                latencies = sorted(fresh_scrape(exporter.port, args.timeout) for _ in range(args.idle_scrapes))
                clients.close()
                after_close = fresh_scrape(exporter.port, args.timeout)
                time.sleep(1.0)
                after = status_field(exporter.pid, "Threads"), status_field(exporter.pid, "VmRSS")
            finally:
                if clients is not None:
                    clients.close()
                exporter.stop()
            rows.append({
                "exporter": name, "idle": count, "threads": (before[0], held[0], after[0]),
                "rss_mib": (before[1] / MIB, held[1] / MIB, after[1] / MIB), "fds": held[2],
                "p50_ms": 1000 * latencies[len(latencies) // 2], "max_ms": 1000 * latencies[-1],
                "after_close_ms": 1000 * after_close,
            })
            print(format_idle_row(rows[-1]), flush=True)
    return rows


IDLE_HEADER = (f"{'exporter':<14}{'idle':>7}{'threads before/held/after':>27}{'RSS MiB before/held/after':>28}"
               f"{'fds':>7}{'fresh p50 ms':>14}{'max ms':>9}{'after close ms':>16}")


def format_idle_row(row: Dict[str, object]) -> str:
    threads = " / ".join(str(t) for t in row["threads"])
    rss = " / ".join(f"{r:.1f}" for r in row["rss_mib"])
    return (f"{row['exporter']:<14}{row['idle']:>7}{threads:>27}{rss:>28}{row['fds']:>7}{row['p50_ms']:>14.1f}"
            f"{row['max_ms']:>9.1f}{row['after_close_ms']:>16.1f}")


def idle_targets(rows: List[Dict[str, object]]) -> List[str]:
    lines = []
    for row in rows:
        if row["exporter"] != "minerwatch":
            continue
        threads, worst = row["threads"][1], max(row["max_ms"], row["after_close_ms"])
        lines.append(f"{'PASS' if threads <= IDLE_THREADS_LIMIT else 'FAIL'}  threads with {row['idle']} idle "
                     f"connections held: {threads} (limit {IDLE_THREADS_LIMIT})")
        lines.append(f"{'PASS' if worst <= IDLE_SCRAPE_LIMIT_MS else 'FAIL'}  scrape on a fresh connection with "
                     f"{row['idle']} idle connections held and right after they closed: at most {worst:.0f} ms "
                     f"(limit {IDLE_SCRAPE_LIMIT_MS:.0f})")
    return lines


# -- report ----------------------------------------------------------------------------------------

HEADER = (f"{'exporter':<14}{'mode':<10}{'conns':>6}{'ok/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'timeouts':>9}"
          f"{'errors':>8}{'CPU ms/scr':>11}{'RSS before':>11}{'RSS after':>10}")


def format_row(row: Dict[str, object]) -> str:
    conns = f"{row['connections']}{'*' if row['repeat'] else ''}"
    return (f"{row['exporter']:<14}{row['mode']:<10}{conns:>6}{row['ok_per_s']:>9.1f}{row['p50_ms']:>9.1f}"
            f"{row['p99_ms']:>9.1f}{row['timeouts']:>9.0f}{row['errors']:>8.0f}{row['cpu_ms_per_scrape']:>11.2f}"
            f"{row['rss_before_mib']:>10.1f}M{row['rss_after_mib']:>9.1f}M")


def targets(rows: List[Dict[str, object]]) -> List[str]:
    mine = [r for r in rows if r["exporter"] == "minerwatch"]
    lines: List[str] = []
    if not mine:
        return lines
    most = max(r["connections"] for r in mine)
    timeouts = sum(r["timeouts"] for r in mine if r["connections"] == most)
    lines.append(f"{'PASS' if timeouts == 0 else 'FAIL'}  no timeouts at {most} connections: {timeouts:.0f}")
    for mode in WRK_MODES:
        runs = [r for r in mine if r["mode"] == mode and r["connections"] == most]
        if len(runs) >= 2:
            growth = (runs[-1]["rss_after_mib"] - runs[-2]["rss_after_mib"]) * MIB
            lines.append(f"{'PASS' if growth <= RSS_GROWTH_LIMIT else 'FAIL'}  RSS flat ({mode}): "
                         f"{' -> '.join(format(r['rss_after_mib'], '.1f') for r in runs)} MiB after each "
                         f"{most}-connection run; last step {growth / MIB:+.1f} (limit +{RSS_GROWTH_LIMIT / MIB:.0f} MiB)")
    for mode in ("auth", "tls+auth"):
        for connections in sorted({r["connections"] for r in mine}):
            plain = [r for r in mine if r["mode"] == "plain" and r["connections"] == connections and not r["repeat"]]
            other = [r for r in mine if r["mode"] == mode and r["connections"] == connections and not r["repeat"]]
            if plain and other:
                ratio = other[0]["cpu_ms_per_scrape"] / plain[0]["cpu_ms_per_scrape"]
                verdict = "PASS" if ratio <= AUTH_CPU_RATIO_LIMIT else "FAIL"
                if mode == "tls+auth":
                    verdict = "info"  # TLS adds its own cost per byte; shown, not a target
                lines.append(f"{verdict:<4}  CPU per scrape, {mode} / plain, {connections} connections: {ratio:.2f} "
                             f"(target <= {AUTH_CPU_RATIO_LIMIT:.2f} for auth)")
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run (default 10)")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64],
                        help="connection counts, each one wrk run (default 1 8 64)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="wrk's request timeout in s (default 10, Prometheus' default scrape_timeout)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeats", type=int, default=2,
                        help="extra runs at the highest connection count, for RSS growth (default 2)")
    parser.add_argument("--idle", type=int, nargs="+", default=[1000, 10000],
                        help="idle connections held in the idle mode, each count one run (default 1000 10000)")
    parser.add_argument("--idle-scrapes", type=int, default=5,
                        help="scrapes on fresh connections while they are held (default 5)")
    parser.add_argument("--exporters", nargs="+", choices=("minerwatch", "node_exporter"),
                        default=["minerwatch", "node_exporter"])
    parser.add_argument("--quick", action="store_true", help="3 s per run: a smoke test, not figures")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.seconds = 3.0
    wrk_modes = [m for m in args.modes if m in WRK_MODES]
    wrk = find_binary("wrk") if wrk_modes else ""
    node_exporter = find_binary("prometheus-node-exporter", "node_exporter")
    print(f"# {os.cpu_count()} CPUs, load average {load_average():.2f}; {version_of([node_exporter, '--version'])}")
    if wrk_modes:
        print(f"# wrk {args.seconds:g} s per run, timeout {args.timeout:g} s, Accept-Encoding: gzip; "
              f"bcrypt cost {BCRYPT_COST}; TLS: RSA-2048 self-signed")
    rows: List[Dict[str, object]] = []
    idle_rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="minerwatch-load-") as workdir:
        make_certificate(workdir)
        with open(os.path.join(workdir, "minerwatch.yml"), "w") as f:
            f.write(MINERWATCH_CONFIG)
        if wrk_modes:
            print(HEADER)
        for mode in wrk_modes:
            rows += measure_mode(args, mode, workdir, wrk, node_exporter)
        if "idle" in args.modes:
            print(IDLE_HEADER)
            idle_rows = measure_idle(args, workdir, node_exporter)
    print()
    if rows:
        print(HEADER + "   (* the same run again)")
        for row in sorted(rows, key=lambda r: (r["exporter"] != "minerwatch", MODES.index(r["mode"]))):
            print(format_row(row))
        print()
    if idle_rows:
        print(IDLE_HEADER)
        for row in sorted(idle_rows, key=lambda r: (r["exporter"] != "minerwatch", r["idle"])):
            print(format_idle_row(row))
        print()
    for line in targets(rows) + idle_targets(idle_rows):
        print(line)
    print(f"# load average at the end {load_average():.2f}: above {os.cpu_count() / 2:g} the figures are noisy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
