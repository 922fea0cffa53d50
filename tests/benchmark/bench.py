"""Performance benchmark: minerwatch against node_exporter and process-exporter on a loaded host.

Run it through run.sh (it installs the other exporters and the virtualenv). Everything listens
on and talks to 127.0.0.1 only; every process started here is stopped by its PID on the way out.
See README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gzip
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

MIB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")
# What Prometheus 2.x sends: the exporter picks its encoding as it would for a real scrape.
ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
# minerwatch's only setting here: the network collector must not resolve the shipped pool names
# (DNS would leave 127.0.0.1). Every default collector still runs, the sniffer included.
MINERWATCH_CONFIG = "network:\n  resolve_max_names: 0\n"
PROCESS_EXPORTER_CONFIG = "process_names:\n  - name: \"{{.Comm}}\"\n    cmdline: ['.+']\n"
NODE_COLLECTORS = ["cpu", "meminfo", "netstat", "sockstat", "processes"]
COLLECTOR_DURATION = re.compile(
    rb'^minerwatch_scrape_collector_duration_seconds\{collector="([^"]+)"\} (\S+)', re.MULTILINE
)


# -- the host, read from /proc ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of a process (all its threads and waited-for children)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rfind(b")") + 2 :].split()  # fields[0] is field 3 (state) of proc(5)
    return sum(int(x) for x in fields[11:15]) / TICK


def memory_bytes(pid: int, key: str) -> int:
    """VmRSS or VmHWM of a process."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def count_processes() -> int:
    return sum(1 for d in os.listdir("/proc") if d.isdigit())


def count_established() -> int:
    """Established TCP sockets of this network namespace (each loopback connection counts twice)."""
    total = 0
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{name}") as f:
                total += sum(1 for line in f.readlines()[1:] if line.split()[3:4] == ["01"])
        except OSError:
            pass
    return total


def machine() -> Dict[str, object]:
    model = platform.machine()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg": load_average(),
    }


def load_average() -> float:
    """1-minute load average: other work on the host inflates latencies (CPU figures less)."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- processes started here -----------------------------------------------------------------------


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 5 s; always by the process's own PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Idlers:
    """Idle `sleep 3600` processes, grown or shrunk to a count."""

    def __init__(self) -> None:
        self.procs: List[subprocess.Popen] = []

    def resize(self, count: int) -> None:
        while len(self.procs) < count:
            self.procs.append(subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        victims, self.procs = self.procs[count:], self.procs[:count]
        for proc in victims:
            proc.kill()
        for proc in victims:
            proc.wait()

    def reach_total(self, total: int) -> None:
        """Start or stop idlers so the host has about `total` processes."""
        self.resize(max(len(self.procs) + total - count_processes(), 0))

    def stop(self) -> None:
        self.resize(0)


def hold_connections(count: int) -> None:
    """Helper process: `count` established loopback connections until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent cleans up, no traceback here
    need = 2 * count + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))  # root may raise hard
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    held = [server]
    for _ in range(count):
        held.append(socket.create_connection(server.getsockname()))
        held.append(server.accept()[0])
    print("ready", flush=True)
    sys.stdin.read()


class Connections:
    def __init__(self, count: int):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--hold-connections", str(count)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            stop_process(self.proc)
            raise RuntimeError("the connection helper failed (see above)")

    def stop(self) -> None:
        self.proc.stdin.close()  # the helper exits on EOF
        stop_process(self.proc)


class Exporter:
    """One exporter process on a free 127.0.0.1 port, scraped over one keep-alive connection."""

    def __init__(self, name: str, argv: List[str], workdir: str):
        self.name = name
        self.port = free_port()
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([a.format(port=self.port) for a in argv], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
        self.pid = self.proc.pid
        self.scrapes = 0
        self.rss_checkpoints: Dict[int, int] = {}  # scrape number -> VmRSS after it, when asked
        self.conn: Optional[http.client.HTTPConnection] = None
        self._wait_listening()

    def _wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not listening after {timeout:.0f} s: {self.log_tail()}")
                time.sleep(0.05)

    def log_tail(self) -> str:
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def scrape(self) -> Tuple[float, bytes]:
        """Wall time of one full GET of /metrics, and the (uncompressed) body."""
        for attempt in (1, 2):  # a keep-alive connection the server closed is reopened once
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            start = time.perf_counter()
            try:
                self.conn.request("GET", "/metrics", headers={"Accept": ACCEPT, "Accept-Encoding": "gzip"})
                response = self.conn.getresponse()
                body = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status}: {body[:200]!r}")
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.scrapes += 1
        if self.scrapes in self.rss_checkpoints:
            self.rss_checkpoints[self.scrapes] = memory_bytes(self.pid, "VmRSS")
        return elapsed, body

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        stop_process(self.proc)
        self.log.close()


# -- measuring -----------------------------------------------------------------------------------


def measure(exporters: List[Exporter], warmup: int, scrapes: int, interval: float,
            on_body: Optional[Callable[[str, bytes], None]] = None) -> Dict[str, Dict[str, float]]:
    """Warm-up, then `scrapes` rounds, each scraping every exporter in turn (never two at once).

    Rounds start at most one per `interval` seconds. Taking turns, rather than one exporter after
    the other, gives all of them the same background load even when it drifts during the run.
    """
    for exp in exporters:
        for _ in range(warmup):
            exp.scrape()
    latencies: Dict[str, List[float]] = {exp.name: [] for exp in exporters}
    bodies: Dict[str, bytes] = {}
    cpu0 = {exp.name: cpu_seconds(exp.pid) for exp in exporters}
    next_start = time.monotonic()
    for _ in range(scrapes):
        delay = next_start - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        next_start = time.monotonic() + interval
        for exp in exporters:
            elapsed, bodies[exp.name] = exp.scrape()
            latencies[exp.name].append(elapsed)
            if on_body is not None:
                on_body(exp.name, bodies[exp.name])
    processes, established = count_processes(), count_established()
    results = {}
    for exp in exporters:
        body, times = bodies[exp.name], latencies[exp.name]
        results[exp.name] = {
            "median_ms": percentile(times, 0.5) * 1000,
            "p90_ms": percentile(times, 0.9) * 1000,
            "cpu_ms": (cpu_seconds(exp.pid) - cpu0[exp.name]) / scrapes * 1000,
            "peak_rss_mib": memory_bytes(exp.pid, "VmHWM") / MIB,
            "body_kib": len(body) / 1024,
            "samples": sum(1 for line in body.splitlines() if line and not line.startswith(b"#")),
            "processes": processes,
            "established": established,
        }
    return results


def minerwatch_argv(config: str) -> List[str]:
    return [sys.executable, "-m", "minerwatch", "serve", f"--config.file={config}",
            "--web.listen-address=127.0.0.1:{port}"]


def side_by_side(args, argvs: Dict[str, List[str]], workdir: str) -> Dict[str, Dict[str, object]]:
    """The three exporters in turns, then minerwatch alone up to args.rss_scrapes and idle."""
    with contextlib.ExitStack() as stack:
        exporters = []
        for name, argv in argvs.items():
            exporters.append(Exporter(name, argv, workdir))
            stack.callback(exporters[-1].stop)
        mw = exporters[0]
        mw.rss_checkpoints = {100: 0, args.rss_scrapes: 0}
        durations: Dict[str, List[float]] = {}

        def per_collector(name: str, body: bytes) -> None:
            if name == "minerwatch":
                for collector, value in COLLECTOR_DURATION.findall(body):
                    durations.setdefault(collector.decode(), []).append(float(value) * 1000)

        results = measure(exporters, args.warmup, args.scrapes, args.interval, per_collector)
        for exp in exporters[1:]:
            exp.stop()
        r = results["minerwatch"]
        r["collector_median_ms"] = {n: percentile(v, 0.5) for n, v in sorted(durations.items())}
        while mw.scrapes < args.rss_scrapes:
            mw.scrape()
        r["rss_at_100_mib"] = mw.rss_checkpoints[100] / MIB
        r["rss_at_end_mib"] = mw.rss_checkpoints[args.rss_scrapes] / MIB
        r["rss_scrapes"] = mw.scrapes
        cpu0 = cpu_seconds(mw.pid)
        time.sleep(args.idle)
        r["idle_cpu_s"] = cpu_seconds(mw.pid) - cpu0
        return results


def profile_minerwatch(args, config: str) -> List[Dict[str, object]]:
    """cProfile of the scrape path in-process, built as `minerwatch serve` builds it."""
    import cProfile
    import pstats

    from prometheus_client.exposition import choose_encoder

    from minerwatch.app import Options, build_collectors, build_context, build_registry, enabled_collectors
    from minerwatch.collectors.base import CollectorRunner

    options = Options(config_file=config)
    runner = CollectorRunner(build_collectors(build_context(options), enabled_collectors(options)))
    registry = build_registry(runner)
    encoder, _ = choose_encoder(ACCEPT)
    profiler = cProfile.Profile()
    try:
        for _ in range(args.warmup):
            encoder(registry)
        for _ in range(args.profile_scrapes):
            time.sleep(args.interval)
            profiler.enable()
            gzip.compress(encoder(registry), compresslevel=1)  # what web.py does for a scrape
            profiler.disable()
    finally:
        runner.close()
    rows = []
    for (path, line, func), (_, calls, own, total, _) in pstats.Stats(profiler).stats.items():
        rows.append({"function": f"{short_path(path)}:{line}({func})", "calls": calls / args.profile_scrapes,
                     "own_ms": own / args.profile_scrapes * 1000, "total_ms": total / args.profile_scrapes * 1000})
    return rows


def short_path(path: str) -> str:
    for marker in ("/minerwatch/", "/site-packages/", "/lib/python3."):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return ("minerwatch/" + tail) if marker == "/minerwatch/" else tail.split("/", 1)[-1]
    return path


# -- report --------------------------------------------------------------------------------------


def print_table(results: Dict[str, Dict[str, float]]) -> None:
    print(f"{'exporter':<18}{'median ms':>10}{'p90 ms':>9}{'CPU ms/scrape':>15}{'peak RSS MiB':>14}"
          f"{'body KiB':>10}{'samples':>9}{'processes':>11}")
    for name, r in results.items():
        print(f"{name:<18}{r['median_ms']:>10.2f}{r['p90_ms']:>9.2f}{r['cpu_ms']:>15.2f}{r['peak_rss_mib']:>14.1f}"
              f"{r['body_kib']:>10.1f}{r['samples']:>9}{r['processes']:>11}")


def print_ratios(results: Dict[str, Dict[str, float]]) -> None:
    mw = results["minerwatch"]
    print(f"{'x minerwatch':<18}{'median':>10}{'p90':>9}{'CPU':>15}{'peak RSS':>14}")
    for name, r in results.items():
        if name != "minerwatch":
            ratios = [r[k] / mw[k] if mw[k] else float("inf") for k in ("median_ms", "p90_ms", "cpu_ms", "peak_rss_mib")]
            print(f"{name:<18}{ratios[0]:>9.2f}x{ratios[1]:>8.2f}x{ratios[2]:>14.2f}x{ratios[3]:>13.2f}x")


def targets(results: Dict[str, Dict[str, float]], args) -> List[Dict[str, object]]:
    mw, ne, pe = results["minerwatch"], results["node_exporter"], results["process-exporter"]
    idle_limit = max(0.02, 0.002 * args.idle)  # two clock ticks for 10 s: ~0, at tick resolution
    growth = mw["rss_at_end_mib"] - mw["rss_at_100_mib"]
    checks = [
        ("latency <= node_exporter (processes set)", mw["median_ms"] <= ne["median_ms"],
         f"median {mw['median_ms']:.2f} ms vs {ne['median_ms']:.2f} ms"),
        ("CPU/scrape <= node_exporter (processes set)", mw["cpu_ms"] <= ne["cpu_ms"],
         f"{mw['cpu_ms']:.2f} ms vs {ne['cpu_ms']:.2f} ms"),
        ("CPU/scrape >= 10x less than process-exporter", mw["cpu_ms"] * 10 <= pe["cpu_ms"],
         f"{mw['cpu_ms']:.2f} ms vs {pe['cpu_ms']:.2f} ms ({pe['cpu_ms'] / mw['cpu_ms'] if mw['cpu_ms'] else float('inf'):.1f}x)"),
        (f"RSS <= 40 MiB after {mw['rss_scrapes']} scrapes", mw["rss_at_end_mib"] <= 40,
         f"VmRSS {mw['rss_at_end_mib']:.1f} MiB"),
        (f"no RSS growth scrape 100 -> {mw['rss_scrapes']} (1 MiB tolerance)", growth <= 1.0,
         f"VmRSS {mw['rss_at_100_mib']:.1f} -> {mw['rss_at_end_mib']:.1f} MiB ({growth:+.2f})"),
        (f"no CPU between scrapes ({args.idle:g} s idle)", mw["idle_cpu_s"] <= idle_limit,
         f"{mw['idle_cpu_s']:.2f} CPU s (limit {idle_limit:.2f}, tick {1 / TICK:.2f} s)"),
    ]
    return [{"target": t, "pass": bool(ok), "figures": detail} for t, ok, detail in checks]


def find_binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(f"bench.py: none of {', '.join(names)} found; run tests/benchmark/run.sh to install it")


def version_of(argv: List[str]) -> str:
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    return (out.strip().splitlines() or ["?"])[0]


def run(args) -> int:
    node_exporter = find_binary("prometheus-node-exporter", "node_exporter")
    process_exporter = find_binary("prometheus-process-exporter", "process-exporter")
    import minerwatch

    report: Dict[str, object] = {"machine": machine(), "settings": {
        k: getattr(args, k) for k in ("processes", "connections", "warmup", "scrapes", "interval", "rss_scrapes",
                                      "idle", "growth", "growth_scrapes")}}
    report["machine"]["versions"] = {
        "minerwatch": minerwatch.__version__,
        "node_exporter": version_of([node_exporter, "--version"]),
        "process-exporter": version_of([process_exporter, "-version"]),
    }
    m = report["machine"]
    print(f"machine: {m['nproc']} CPUs, {m['cpu']}, kernel {m['kernel']}, Python {m['python']}, {m['date']}, "
          f"load average {m['loadavg']:.2f}")
    if m["loadavg"] > m["nproc"] / 2:
        print("warning: the host is busy with other work; latencies will be inflated")
    print("versions: " + "; ".join(f"{k} {v}" for k, v in m["versions"].items()))

    with tempfile.TemporaryDirectory(prefix="minerwatch-bench-") as workdir, contextlib.ExitStack() as stack:
        pe_config = os.path.join(workdir, "process-exporter.yml")
        with open(pe_config, "w") as f:
            f.write(PROCESS_EXPORTER_CONFIG)
        mw_config = os.path.join(workdir, "minerwatch.yml")
        with open(mw_config, "w") as f:
            f.write(MINERWATCH_CONFIG)
        exporters = {
            "minerwatch": minerwatch_argv(mw_config),
            "node_exporter": [node_exporter, "--collector.disable-defaults",
                              *[f"--collector.{c}" for c in NODE_COLLECTORS], "--web.listen-address=127.0.0.1:{port}"],
            "process-exporter": [process_exporter, f"-config.path={pe_config}", "-web.listen-address=127.0.0.1:{port}"],
        }

        idlers = Idlers()
        stack.callback(idlers.stop)
        if args.connections:
            stack.callback(Connections(args.connections).stop)
        before = count_processes()
        idlers.resize(args.processes)
        print(f"load: {args.processes} idle processes (host {before} -> {count_processes()}), "
              f"{args.connections} loopback TCP connections ({count_established()} established sockets)")
        print(f"scrapes: {args.warmup} warm-up + {args.scrapes} timed per exporter, taking turns one scrape at a "
              f"time, a round at most every {args.interval:g} s; keep-alive, gzip, Prometheus' Accept header\n")

        results = side_by_side(args, exporters, workdir)
        report["exporters"] = results
        mw = results["minerwatch"]
        m.update(processes=mw["processes"], established=mw["established"])
        print(f"during the run: {mw['processes']} processes, {mw['established']} established TCP sockets\n")
        print_table(results)
        print()
        print_ratios(results)
        print("\nminerwatch per collector, median ms: "
              + ", ".join(f"{n} {v:.2f}" for n, v in mw["collector_median_ms"].items()))
        print(f"minerwatch VmRSS after scrape 100: {mw['rss_at_100_mib']:.1f} MiB, after scrape "
              f"{mw['rss_scrapes']}: {mw['rss_at_end_mib']:.1f} MiB; CPU over {args.idle:g} s idle: "
              f"{mw['idle_cpu_s']:.2f} s")

        if args.profile:
            rows = profile_minerwatch(args, mw_config)
            report["profile"] = sorted(rows, key=lambda r: -r["own_ms"])[:40]
            for key, title in (("own_ms", "own time"), ("total_ms", "cumulative")):
                print(f"\nprofile ({args.profile_scrapes} in-process scrapes, by {title}), per scrape:")
                print(f"{'own ms':>8}{'cum ms':>8}{'calls':>8}  function")
                for r in sorted(rows, key=lambda r: -r[key])[: args.profile_top]:
                    print(f"{r['own_ms']:>8.2f}{r['total_ms']:>8.2f}{r['calls']:>8.0f}  {r['function']}")

        growth = []
        print(f"\nminerwatch by processes on the host ({args.growth_scrapes} timed scrapes each, "
              f"{args.connections} connections):")
        print(f"{'processes':>10}{'median ms':>10}{'p90 ms':>9}{'CPU ms/scrape':>15}{'peak RSS MiB':>14}")
        for total in args.growth:
            idlers.reach_total(total - 1)  # the exporter is one more
            exp = Exporter("minerwatch", exporters["minerwatch"], workdir)
            try:
                r = measure([exp], args.warmup, args.growth_scrapes, args.interval)["minerwatch"]
            finally:
                exp.stop()
            r["target"] = total
            growth.append(r)
            print(f"{r['processes']:>10}{r['median_ms']:>10.2f}{r['p90_ms']:>9.2f}{r['cpu_ms']:>15.2f}"
                  f"{r['peak_rss_mib']:>14.1f}")
        report["growth"] = growth

        m["loadavg_end"] = load_average()
        print(f"\nload average at the end: {m['loadavg_end']:.2f}")
        report["targets"] = targets(results, args)
        print(f"\ntargets ({args.processes} extra processes + {args.connections} connections, same run):")
        for t in report["targets"]:
            print(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['figures']}")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nfigures written to {args.json}")
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scrapes", type=int, help="timed scrapes per exporter (default 100; --quick 20)")
    p.add_argument("--warmup", type=int, help="scrapes before timing (default 10; --quick 3)")
    p.add_argument("--interval", type=float,
                   help="seconds between the starts of timed scrapes, above minerwatch's 1 s caches "
                        "(default 1.05; --quick 0)")
    p.add_argument("--processes", type=int, default=1000, help="extra idle processes (default 1000)")
    p.add_argument("--connections", type=int, default=1000, help="loopback TCP connections (default 1000)")
    p.add_argument("--quick", action="store_true", help="smaller numbers for a smoke run (about a minute)")
    p.add_argument("--json", metavar="FILE", help="write the figures to FILE")
    p.add_argument("--profile", action="store_true", help="also cProfile minerwatch's scrape path in-process")
    p.add_argument("--hold-connections", type=int, help=argparse.SUPPRESS)  # the connection helper
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"scrapes": 20 if quick else 100, "warmup": 3 if quick else 10, "interval": 0.0 if quick else 1.05}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.rss_scrapes = max(200 if quick else 1000, 101)
    args.idle = 3.0 if quick else 10.0
    args.growth = [100, 1000] if quick else [100, 1000, 3000]
    args.growth_scrapes = 10 if quick else 30
    args.profile_scrapes = 10 if quick else 20
    args.profile_top = 15
    if args.scrapes < 1 or args.warmup < 0 or args.interval < 0 or args.processes < 0 or args.connections < 0:
        p.error("counts and the interval must not be negative, and --scrapes at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.hold_connections is not None:
        hold_connections(args.hold_connections)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when piped to a file
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, RuntimeError) as exc:
        print(f"bench.py: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
