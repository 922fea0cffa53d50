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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: support
from support.loopback import loopback_connections  # noqa: E402

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
    held = loopback_connections(count)
    print("ready", flush=True)
    sys.stdin.read()  # held open until the parent closes stdin
    for sock in held:
        sock.close()


class Connections:
    def __init__(self, count: int):
        self.count = count
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


def count_fds(pid: int) -> int:
    """Open descriptors of a process (the /proc reader keeps one per process it reads)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def one_size(args, argvs: Dict[str, List[str]], workdir: str, size: int) -> Dict[str, Dict[str, object]]:
    """The three exporters, started fresh at this host size, scraped in turns."""
    with contextlib.ExitStack() as stack:
        exporters = []
        for name, argv in argvs.items():
            exporters.append(Exporter(name, argv, workdir))
            stack.callback(exporters[-1].stop)
        durations: Dict[str, List[float]] = {}

        def per_collector(name: str, body: bytes) -> None:
            if name == "minerwatch":
                for collector, value in COLLECTOR_DURATION.findall(body):
                    durations.setdefault(collector.decode(), []).append(float(value) * 1000)

        results = measure(exporters, args.warmup, args.scrapes, args.interval, per_collector)
        for exp in exporters:
            results[exp.name]["rss_mib"] = memory_bytes(exp.pid, "VmRSS") / MIB
            results[exp.name]["fds"] = count_fds(exp.pid)
            results[exp.name]["size"] = size
        results["minerwatch"]["collector_median_ms"] = {n: percentile(v, 0.5) for n, v in sorted(durations.items())}
        return results


def steady_state(args, argv: List[str], workdir: str) -> Dict[str, float]:
    """minerwatch alone: VmRSS after scrape 100 and after args.rss_scrapes, then CPU while idle."""
    exp = Exporter("minerwatch", argv, workdir)
    try:
        exp.rss_checkpoints = {100: 0, args.rss_scrapes: 0}
        while exp.scrapes < args.rss_scrapes:
            exp.scrape()
        cpu0 = cpu_seconds(exp.pid)
        time.sleep(args.idle)
        return {"rss_at_100_mib": exp.rss_checkpoints[100] / MIB,
                "rss_at_end_mib": exp.rss_checkpoints[args.rss_scrapes] / MIB,
                "rss_scrapes": exp.scrapes, "idle_cpu_s": cpu_seconds(exp.pid) - cpu0, "processes": count_processes()}
    finally:
        exp.stop()


def _in_process_registry(config: str):
    from minerwatch.app import Options, build_collectors, build_context, enabled_collectors

    context = build_context(Options(config_file=config))
    return context, build_collectors(context, enabled_collectors(Options(config_file=config)))


class _Families:
    """What the encoder needs of a registry: the families one scrape gathered."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def profile_minerwatch(args, config: str) -> List[Dict[str, object]]:
    """cProfile of one scrape's work in-process: every collector's collect() in this thread (the
    exporter runs each in a thread of its own, which cProfile would not see), then the encoder
    and gzip as web.py runs them."""
    import cProfile
    import pstats

    from minerwatch.serving.exposition import choose_encoder

    from minerwatch.app import close_collectors

    context, collectors = _in_process_registry(config)
    encoder, _ = choose_encoder(ACCEPT)

    def scrape() -> None:
        families = [family for collector in collectors for family in collector.collect()]
        gzip.compress(encoder(_Families(families)), compresslevel=1)

    profiler = cProfile.Profile()
    try:
        for _ in range(args.warmup):
            scrape()
            time.sleep(args.interval)
        for _ in range(args.profile_scrapes):
            time.sleep(args.interval)
            profiler.enable()
            scrape()
            profiler.disable()
    finally:
        close_collectors(collectors)
        getattr(context.processes.reader, "close", lambda: None)()  # one kept descriptor per process
    rows = []
    for (path, line, func), (_, calls, own, total, _) in pstats.Stats(profiler).stats.items():
        rows.append({"function": f"{short_path(path)}:{line}({func})", "calls": calls / args.profile_scrapes,
                     "own_ms": own / args.profile_scrapes * 1000, "total_ms": total / args.profile_scrapes * 1000})
    return rows


def table_memory(config: str, top: int = 12) -> Dict[str, object]:
    """What the process table keeps, in-process: tracemalloc over building it and three scans
    (the first reads every process's facts), by allocation site; bytes per process listed."""
    import gc
    import tracemalloc

    from minerwatch.app import Options, build_context

    gc.collect()
    tracemalloc.start()
    try:
        table = build_context(Options(config_file=config)).processes
        for _ in range(3):
            table.scan()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        stats = tracemalloc.take_snapshot().statistics("lineno")
    finally:
        tracemalloc.stop()
        getattr(table.reader, "close", lambda: None)()  # one kept descriptor per process
    processes = len(table.last.processes)
    sites = [{"site": f"{short_path(st.traceback[0].filename)}:{st.traceback[0].lineno}",
              "bytes_per_process": st.size / processes, "objects_per_process": st.count / processes}
             for st in stats[:top]]
    del table
    gc.collect()
    return {"processes": processes, "held_bytes": held, "sites": sites}


def short_path(path: str) -> str:
    for marker in ("/minerwatch/", "/site-packages/", "/lib/python3."):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return ("minerwatch/" + tail) if marker == "/minerwatch/" else tail.split("/", 1)[-1]
    return path


# -- report --------------------------------------------------------------------------------------


def print_table(results: Dict[str, Dict[str, float]]) -> None:
    print(f"{'exporter':<18}{'median ms':>10}{'p90 ms':>9}{'CPU ms/scrape':>15}{'RSS MiB':>9}{'peak RSS':>10}"
          f"{'fds':>7}{'body KiB':>10}{'samples':>9}{'processes':>11}")
    for name, r in results.items():
        print(f"{name:<18}{r['median_ms']:>10.2f}{r['p90_ms']:>9.2f}{r['cpu_ms']:>15.2f}{r['rss_mib']:>9.1f}"
              f"{r['peak_rss_mib']:>10.1f}{r['fds']:>7}{r['body_kib']:>10.1f}{r['samples']:>9}{r['processes']:>11}")


def print_ratios(results: Dict[str, Dict[str, float]]) -> None:
    mw = results["minerwatch"]
    print(f"{'x minerwatch':<18}{'median':>10}{'p90':>9}{'CPU':>15}{'RSS':>9}")
    for name, r in results.items():
        if name != "minerwatch":
            ratios = [r[k] / mw[k] if mw[k] else float("inf") for k in ("median_ms", "p90_ms", "cpu_ms", "rss_mib")]
            print(f"{name:<18}{ratios[0]:>9.2f}x{ratios[1]:>8.2f}x{ratios[2]:>14.2f}x{ratios[3]:>8.2f}x")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def targets(sizes: List[Dict[str, Dict[str, float]]], steady: Dict[str, float], args) -> List[Dict[str, object]]:
    checks = []
    for results in sizes:
        mw, ne, pe = results["minerwatch"], results["node_exporter"], results["process-exporter"]
        at = f"at {mw['processes']} processes"
        checks += [
            (f"latency <= 1/2 node_exporter (processes set) {at}", mw["median_ms"] * 2 <= ne["median_ms"],
             f"median {mw['median_ms']:.2f} ms vs {ne['median_ms']:.2f} ms ({ratio(ne['median_ms'], mw['median_ms']):.2f}x)"),
            (f"CPU/scrape <= 1/2 node_exporter (processes set) {at}", mw["cpu_ms"] * 2 <= ne["cpu_ms"],
             f"{mw['cpu_ms']:.2f} ms vs {ne['cpu_ms']:.2f} ms ({ratio(ne['cpu_ms'], mw['cpu_ms']):.2f}x)"),
            (f"latency and CPU/scrape >= 20x less than process-exporter {at}",
             mw["cpu_ms"] * 20 <= pe["cpu_ms"] and mw["median_ms"] * 20 <= pe["median_ms"],
             f"CPU {ratio(pe['cpu_ms'], mw['cpu_ms']):.1f}x, latency {ratio(pe['median_ms'], mw['median_ms']):.1f}x"),
        ]
    first = sizes[0]["minerwatch"]
    checks.append((f"RSS <= 30 MiB at {first['processes']} processes", first["rss_mib"] <= 30,
                   f"VmRSS {first['rss_mib']:.1f} MiB after {args.warmup + args.scrapes} scrapes"))
    pair = growth_pair(sizes, args)
    if pair:
        a, b = pair
        per = (b["rss_mib"] - a["rss_mib"]) * MIB / (b["processes"] - a["processes"])
        checks.append((f"RSS grows < 1 KiB per extra process ({a['processes']} -> {b['processes']} processes, "
                       f"same connections)", per < 1024,
                       f"VmRSS {a['rss_mib']:.1f} -> {b['rss_mib']:.1f} MiB: {per:.0f} B/process"))
    if steady:
        growth = steady["rss_at_end_mib"] - steady["rss_at_100_mib"]
        idle_limit = max(0.02, 0.002 * args.idle)  # two clock ticks for 10 s: ~0, at tick resolution
        checks += [
            (f"no RSS growth scrape 100 -> {steady['rss_scrapes']} (1 MiB tolerance)", growth <= 1.0,
             f"VmRSS {steady['rss_at_100_mib']:.1f} -> {steady['rss_at_end_mib']:.1f} MiB ({growth:+.2f})"),
            (f"no CPU between scrapes ({args.idle:g} s idle)", steady["idle_cpu_s"] <= idle_limit,
             f"{steady['idle_cpu_s']:.2f} CPU s (limit {idle_limit:.2f}, tick {1 / TICK:.2f} s)"),
        ]
    return [{"target": t, "pass": bool(ok), "figures": detail} for t, ok, detail in checks]


def growth_pair(sizes: List[Dict[str, Dict[str, float]]], args):
    """minerwatch at the two sizes furthest apart in processes with the same connection count
    (connections cost memory too); None when no two sizes share one."""
    best = None
    for i, (pi, ci) in enumerate(args.sizes):
        for j, (pj, cj) in enumerate(args.sizes):
            if ci == cj and pj > pi and (best is None or pj - pi > best[1] - best[0]):
                best = (pi, pj, i, j)
    if best is None:
        return None
    return sizes[best[2]]["minerwatch"], sizes[best[3]]["minerwatch"]


def preflight(sizes: List[Tuple[int, int]]) -> None:
    """Say before starting anything if the host cannot hold the largest size."""
    most = max(size for size, _ in sizes) + 64
    limits = {"kernel.pid_max": "/proc/sys/kernel/pid_max", "kernel.threads-max": "/proc/sys/kernel/threads-max"}
    for name, path in limits.items():
        with open(path) as f:
            value = int(f.read())
        if value < most:
            raise RuntimeError(f"{name} is {value}, below the {most} processes asked for (sysctl -w {name}=...)")
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if os.getuid() != 0 and soft != resource.RLIM_INFINITY and soft < most:
        raise RuntimeError(f"ulimit -u is {soft}, below the {most} processes asked for")


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

    preflight(args.sizes)
    report: Dict[str, object] = {"machine": machine(), "settings": {
        k: getattr(args, k) for k in ("sizes", "warmup", "scrapes", "interval", "rss_scrapes", "idle")}}
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
    print("sizes: " + ", ".join(f"{p} processes + {c} connections" for p, c in args.sizes)
          + f"; per size {args.warmup} warm-up + {args.scrapes} timed scrapes per exporter, taking turns one "
          f"scrape at a time, a round at most every {args.interval:g} s; keep-alive, gzip, Prometheus' Accept header")

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
        held: List[Connections] = []

        def hold(count: int) -> None:
            if held and held[0].count == count:
                return
            while held:
                held.pop().stop()
            if count:
                held.append(Connections(count))

        stack.callback(lambda: hold(0))
        sizes, memory = [], []
        for size, connections in args.sizes:
            hold(connections)
            idlers.reach_total(size - len(exporters))  # the exporters are processes too
            print(f"\n== {size} processes + {connections} connections (host {count_processes()} processes, "
                  f"{count_established()} established sockets before the exporters start)")
            results = one_size(args, exporters, workdir, size)
            sizes.append(results)
            print_table(results)
            print()
            print_ratios(results)
            mw = results["minerwatch"]
            print("minerwatch per collector, median ms: "
                  + ", ".join(f"{n} {v:.2f}" for n, v in mw["collector_median_ms"].items()))
            if args.table_memory:
                mem = table_memory(mw_config)
                memory.append(mem)
                print(f"process table in-process (tracemalloc): {mem['held_bytes'] / 1024:.0f} KiB at "
                      f"{mem['processes']} processes, {mem['held_bytes'] / mem['processes']:.0f} B/process with fixed costs")
        report["sizes"] = sizes
        m["load_during"] = load_average()

        if memory:
            report["table_memory"] = memory
            if len(memory) > 1:
                a, b = memory[0], memory[-1]
                per = (b["held_bytes"] - a["held_bytes"]) / max(b["processes"] - a["processes"], 1)
                print(f"\nprocess table, marginal bytes per process {a['processes']} -> {b['processes']}: {per:.0f}")
            print(f"largest allocation sites at {memory[-1]['processes']} processes (bytes / objects per process):")
            for site in memory[-1]["sites"]:
                print(f"{site['bytes_per_process']:>8.0f}{site['objects_per_process']:>7.2f}  {site['site']}")

        if args.profile:
            print(f"\nprofile at {count_processes()} processes ({args.profile_scrapes} in-process scrapes, every "
                  f"collector in this thread; cProfile about doubles the times: read the proportions)")
            rows = profile_minerwatch(args, mw_config)
            report["profile"] = sorted(rows, key=lambda r: -r["own_ms"])[:40]
            for key, title in (("own_ms", "own time"), ("total_ms", "cumulative")):
                print(f"\nby {title}, per scrape:")
                print(f"{'own ms':>8}{'cum ms':>8}{'calls':>8}  function")
                for r in sorted(rows, key=lambda r: -r[key])[: args.profile_top]:
                    print(f"{r['own_ms']:>8.2f}{r['total_ms']:>8.2f}{r['calls']:>8.0f}  {r['function']}")

        steady: Dict[str, float] = {}
        if args.rss_scrapes:
            size, connections = args.sizes[0]
            hold(connections)
            idlers.reach_total(size - 1)
            steady = steady_state(args, exporters["minerwatch"], workdir)
            report["steady"] = steady
            print(f"\nminerwatch alone at {steady['processes']} processes: VmRSS after scrape 100 "
                  f"{steady['rss_at_100_mib']:.1f} MiB, after scrape {steady['rss_scrapes']} "
                  f"{steady['rss_at_end_mib']:.1f} MiB; CPU over {args.idle:g} s idle: {steady['idle_cpu_s']:.2f} s")

        m["loadavg_end"] = load_average()
        print(f"\nload average at the end: {m['loadavg_end']:.2f}")
        report["targets"] = targets(sizes, steady, args)
        print("\ntargets (same run):")
        for t in report["targets"]:
            print(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['figures']}")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nfigures written to {args.json}")
    return 0


def parse_sizes(text: str) -> List[Tuple[int, int]]:
    """`1000:1000,4000:2000` -> [(1000, 1000), (4000, 2000)]: processes on the host, connections."""
    sizes = []
    for item in text.split(","):
        processes, _, connections = item.partition(":")
        sizes.append((int(processes), int(connections or 0)))
    if not sizes or any(p < 10 or c < 0 for p, c in sizes):
        raise ValueError(text)
    return sizes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", metavar="P:C,...",
                   help="processes on the host and loopback TCP connections, per size "
                        "(default 1000:1000,4000:2000,10000:2000; --quick 300:200,1000:500)")
    p.add_argument("--scrapes", type=int, help="timed scrapes per exporter and size (default 30; --quick 5)")
    p.add_argument("--warmup", type=int, help="scrapes before timing (default 3; --quick 2)")
    p.add_argument("--interval", type=float,
                   help="seconds between the starts of timed scrapes, above minerwatch's 1 s caches "
                        "(default 1.05; --quick 0)")
    p.add_argument("--rss-scrapes", type=int,
                   help="minerwatch alone at the first size: VmRSS after scrape 100 and this one "
                        "(default 1000; --quick 200; 0 skips it and the idle check)")
    p.add_argument("--no-table-memory", dest="table_memory", action="store_false",
                   help="skip the in-process tracemalloc of the process table at each size")
    p.add_argument("--quick", action="store_true", help="smaller numbers for a smoke run (about two minutes)")
    p.add_argument("--json", metavar="FILE", help="write the figures to FILE")
    p.add_argument("--profile", action="store_true",
                   help="also cProfile minerwatch's scrape path in-process, at the last size")
    p.add_argument("--hold-connections", type=int, help=argparse.SUPPRESS)  # the connection helper
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"scrapes": 5 if quick else 30, "warmup": 2 if quick else 3, "interval": 0.0 if quick else 1.05,
                "rss_scrapes": 200 if quick else 1000,
                "sizes": "300:200,1000:500" if quick else "1000:1000,4000:2000,10000:2000"}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        args.sizes = parse_sizes(args.sizes)
    except ValueError:
        p.error(f"--sizes: {args.sizes!r} is not PROCESSES:CONNECTIONS,... with at least 10 processes each")
    if args.rss_scrapes:
        args.rss_scrapes = max(args.rss_scrapes, 101)
    args.idle = 3.0 if quick else 10.0
    args.profile_scrapes = 5 if quick else 10
    args.profile_top = 15
    if args.scrapes < 1 or args.warmup < 0 or args.interval < 0 or args.rss_scrapes < 0:
        p.error("counts and the interval must not be negative, and --scrapes at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.hold_connections is not None:
        hold_connections(args.hold_connections)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    # The exporters run in a scratch directory: a relative PYTHONPATH (`PYTHONPATH=exporter`)
    # would silently give them the installed minerwatch instead of this tree's.
    if os.environ.get("PYTHONPATH"):
        os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in os.environ["PYTHONPATH"].split(os.pathsep))
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
