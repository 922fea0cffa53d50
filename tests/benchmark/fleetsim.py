"""A simulated fleet of minerwatch exporters: one process, one port on 127.0.0.1, one path per host
(/host/<n>/metrics), each answering what a real `minerwatch serve` would on that kind of host.

The shape comes from a real exporter: `learn_shape()` scrapes a real `minerwatch serve` once and
keeps every family without a pid label as the per-host part (values varied per host and over
time: counters grow, host CPU follows the host's load). The per-process part is a model, every
number of it a flag of fleet.py and printed with the results:

- idle desktop: background jobs (antivirus scan, update, indexer) arrive at random, a few an
  hour, busy for a few minutes each at 0.2-1 cores, each a new pid;
- busy desktop: two long-lived busy programs (office, a meeting client) and a steady number of
  browser renderer processes above the exporter's 0.1-core floor, each living minutes (a new pid
  at every tab opened or reloaded);
- a few hosts run a miner: one suspect process at 3.9 cores with its signals, suspect_info and a
  pool connection.

Each host exports its top-K busiest processes (K = 5 by default, as the exporter) the way the
real exporter does: suspects per pid (the per-pid families learnt from it), the others by
(name, user) group through the exporter's own `minerwatch.detection.top_groups.TopGroups` (a CPU counter
per group that ends after resting out of the top). `--top-by-pid` models the exporter before
that change, every top-K process with the per-pid families: that is where pids churned.
"""

from __future__ import annotations

import asyncio
import os
import heapq
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Tuple

from minerwatch.detection.top_groups import TopGroups

ROOT = Path(__file__).resolve().parents[2]
TOP_K_LABELS = {"pid", "name", "user"}
GROUP_FAMILIES = ("minerwatch_process_top_cpu_seconds", "minerwatch_process_top_processes")  # modelled below


@dataclass
class Family:
    name: str
    kind: str          # counter, gauge, untyped (as the exporter declared it)
    help: str
    samples: List[Tuple[str, Dict[str, str], float]]  # (sample name, labels, value)


def learn_shape(port: int, exporter: Optional[Path] = None) -> Tuple[List[Family], List[str]]:
    """A real `minerwatch serve` (offline config, on 127.0.0.1:port) scraped once: the families
    without a pid label, and the names of the per-process families a top-K process gets.
    `exporter`: the exporter/ folder of another checkout to run instead of the installed one."""
    from prometheus_client.parser import text_string_to_metric_families

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "minerwatch.yml"
        config.write_text("network:\n  resolve_max_names: 0\n")  # no DNS: 127.0.0.1 only
        log = open(Path(tmp) / "minerwatch.log", "w+")
        env = dict(os.environ, PYTHONPATH=str(exporter)) if exporter else None
        proc = subprocess.Popen([sys.executable, "-m", "minerwatch", "serve", f"--web.listen-address=127.0.0.1:{port}",
                                 f"--config.file={config}"], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            text = None
            for _ in range(600):  # up to a minute on a loaded machine
                if proc.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"fleetsim: minerwatch serve exited {proc.returncode}: {log.read()[-2000:]}")
                try:
                    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
                    break
                except OSError:
                    time.sleep(0.1)
            if text is None:
                raise SystemExit("fleetsim: the real minerwatch serve did not answer")
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
    static, per_process = [], []
    for family in text_string_to_metric_families(text):
        samples = [(s.name, dict(s.labels), s.value) for s in family.samples]
        if family.name in GROUP_FAMILIES:
            continue
        if any("pid" in labels for _, labels, _ in samples):
            if all(set(labels) == TOP_K_LABELS for _, labels, _ in samples):
                per_process.append(family.name + ("_total" if family.type == "counter" else ""))
            continue  # suspects' families are modelled below
        static.append(Family(family.name, family.type, family.documentation, samples))
    if not per_process:  # a machine with nothing busy: the families the README lists for top-K processes
        per_process = ["minerwatch_process_cpu_seconds_total", "minerwatch_process_threads",
                       "minerwatch_process_resident_memory_bytes", "minerwatch_process_start_time_seconds"]
    return static, per_process


@dataclass
class Process:
    pid: int
    name: str
    user: str
    cores: float
    started: float
    ends: float
    cpu: float = 0.0
    suspect: bool = False


@dataclass
class Model:
    top_k: int = 5
    idle_jobs_per_hour: float = 2.0
    idle_job_minutes: float = 3.0
    busy_long_lived: int = 2
    busy_renderers: int = 3
    renderer_minutes: float = 10.0
    miner_every: int = 1000  # one host in this many runs a miner
    top_by_pid: bool = False  # the exporter before top groups: every top-K process per pid


@dataclass
class Host:
    index: int
    kind: str  # idle or busy
    rng: random.Random
    cpus: int
    born: float
    miner: bool
    next_pid: int
    processes: List[Process] = field(default_factory=list)
    events: List[Tuple[float, int]] = field(default_factory=list)  # (time, kind 0 = idle job arrival)
    last: float = 0.0
    cpu_modes: Dict[str, float] = field(default_factory=dict)
    scrapes: int = 0
    groups: Optional[TopGroups] = None  # the exporter's own grouping of the non-suspect top-K


def host_kind(index: int, busy_share: float, seed: int = 1) -> str:
    """Whether host `index` is a busy or an idle desktop (fleet.py labels its target with it)."""
    return "busy" if random.Random(seed * 7_919 + index).random() < busy_share else "idle"


class Fleet:
    """The hosts and what each of them exports now."""

    def __init__(self, hosts: int, busy_share: float, model: Model, static: List[Family], per_process: List[str],
                 seed: int = 1):
        self.model, self.static, self.per_process = model, static, per_process
        self._lines = None
        now = time.time()
        self.hosts = []
        for i in range(hosts):
            rng = random.Random(seed * 1_000_003 + i)
            kind = host_kind(i, busy_share, seed)
            host = Host(i, kind, rng, rng.choice([2, 4, 4, 8]), now, i % model.miner_every == model.miner_every // 2,
                        rng.randint(1000, 40000))
            host.cpu_modes = {m: rng.uniform(1e4, 1e6) for m in ("user", "system", "idle", "iowait", "irq", "softirq",
                                                                 "nice", "steal")}
            host.last = now
            host.groups = TopGroups(2 * model.top_k, clock=lambda host=host: host.last)  # as the exporter
            self._populate(host, now)
            self.hosts.append(host)

    # -- the process model -------------------------------------------------------------------

    def _spawn(self, host: Host, name: str, user: str, cores: float, lifetime_s: float, now: float,
               suspect: bool = False) -> Process:
        host.next_pid += host.rng.randint(1, 40)  # other, idle processes start between busy ones
        proc = Process(host.next_pid, name, user, cores, now, now + lifetime_s, host.rng.uniform(0, 50), suspect)
        host.processes.append(proc)
        return proc

    def _populate(self, host: Host, now: float) -> None:
        m, rng = self.model, host.rng
        if host.kind == "busy":
            for name in ("WINWORD.EXE", "Teams.exe")[:m.busy_long_lived]:
                self._spawn(host, name, "user", rng.uniform(0.12, 0.5), rng.expovariate(1 / (4 * 3600)), now)
            for _ in range(m.busy_renderers):
                self._renderer(host, now)
        else:
            heapq.heappush(host.events, (now + rng.expovariate(m.idle_jobs_per_hour / 3600), 0))
        if host.miner:
            self._spawn(host, "xmrig", "user", 3.9, 10 * 86400, now, suspect=True)

    def _renderer(self, host: Host, now: float) -> None:
        rng = host.rng
        self._spawn(host, "chrome.exe", "user", rng.uniform(0.1, 0.8),
                    rng.expovariate(1 / (self.model.renderer_minutes * 60)), now)

    def advance(self, host: Host, now: float) -> None:
        """Runs the host's processes up to `now`: CPU time accrues, processes end, new ones start."""
        m, rng, dt = self.model, host.rng, max(0.0, now - host.last)
        while host.events and host.events[0][0] <= now:
            at, _ = heapq.heappop(host.events)
            self._spawn(host, rng.choice(["MsMpEng.exe", "TiWorker.exe", "SearchIndexer.exe", "OneDrive.exe"]),
                        "SYSTEM", rng.uniform(0.2, 1.0), rng.expovariate(1 / (m.idle_job_minutes * 60)), at)
            heapq.heappush(host.events, (at + rng.expovariate(m.idle_jobs_per_hour / 3600), 0))
        busy, alive, replaced = 0.0, [], 0
        for proc in host.processes:
            ran = max(0.0, min(now, proc.ends) - max(host.last, proc.started))
            proc.cpu += proc.cores * ran
            busy += proc.cores * ran
            if proc.ends > now:
                alive.append(proc)
            elif host.kind == "busy" and proc.name == "chrome.exe":
                replaced += 1  # the user opens another tab
        host.processes = alive
        for _ in range(replaced):
            self._renderer(host, now)
        background = 0.03 * host.cpus * dt
        busy = min(busy + background, host.cpus * dt)
        host.cpu_modes["user"] += busy * 0.7
        host.cpu_modes["system"] += busy * 0.3
        host.cpu_modes["idle"] += host.cpus * dt - busy
        host.last = now

    # -- the exposition ----------------------------------------------------------------------

    def render(self, index: int) -> bytes:
        host = self.hosts[index]
        now = time.time()
        self.advance(host, now)
        host.scrapes += 1
        age = now - host.born
        out: List[str] = []
        if self._lines is None:  # the same names and labels on every host: formatted once
            self._lines = [(f"# HELP {family.name} {family.help}\n# TYPE {family.name} {family.kind}\n",
                            [(name, labels, value, f"{name}{_labels(labels)} ", family.kind) for name, labels, value
                             in family.samples]) for family in self.static]
        for header, samples in self._lines:
            out.append(header)
            for name, labels, value, prefix, kind in samples:
                if name == "minerwatch_host_cpu_seconds_total":
                    value = host.cpu_modes.get(labels.get("mode"), 0.0)
                elif name == "minerwatch_host_cpus":
                    value = host.cpus
                elif name.endswith("_total") and kind == "counter":
                    value = value + age * (1 + index % 7) * 0.01
                elif "duration_seconds" in name:
                    value = 0.001 + (host.scrapes * 7919 + index) % 97 / 1000
                out.append(f"{prefix}{value:g}\n")
        suspects = [p for p in host.processes if p.suspect]
        others = [p for p in host.processes if not p.suspect]
        busy_others = sorted((p for p in others if p.cores >= 0.1), key=lambda p: -p.cores)[:self.model.top_k]
        rows = [(f'name="{p.name}",pid="{p.pid}",user="{p.user}"', p.cpu, p.started, p.pid)
                for p in suspects + (busy_others if self.model.top_by_pid else [])]
        for family in self.per_process:
            for labels, cpu, started, pid in rows:
                value = {"minerwatch_process_cpu_seconds_total": cpu,
                         "minerwatch_process_start_time_seconds": started,
                         "minerwatch_process_threads": 8 + pid % 24,
                         "minerwatch_process_resident_memory_bytes": 50e6 + pid % 1000 * 1e6}.get(family, 1.0)
                out.append(f"{family}{{{labels}}} {value:g}\n")
        if not self.model.top_by_pid:
            views = [SimpleNamespace(pid=p.pid, name=p.name, user=p.user, allowlisted=False,
                                     stat=SimpleNamespace(cpu_seconds=p.cpu, start_time=p.started))
                     for p in busy_others]
            groups = host.groups.update(views)
            for family, value in (("minerwatch_process_top_cpu_seconds_total", lambda g: g.cpu_seconds),
                                  ("minerwatch_process_top_processes", lambda g: g.members)):
                for g in groups:
                    out.append(f'{family}{{allowlisted="false",name="{g.name}",user="{g.user}"}} {value(g):g}\n')
        out.append(f"minerwatch_process_suspects {len(suspects)}\n")
        for proc in suspects:
            ids = f'name="{proc.name}",pid="{proc.pid}",user="{proc.user}"'
            for signal in ("miner_name", "pool_url", "wallet_address", "pool_connection"):
                out.append(f'minerwatch_process_signal{{{ids},signal="{signal}"}} 1\n')
            out.append(f'minerwatch_process_suspect_info{{{ids},exe="C:\\\\Users\\\\user\\\\AppData\\\\xmrig.exe",'
                       f'exe_sha256="{"ab" * 32}",cmdline="xmrig -o stratum+tcp://pool.example:3333 -u <redacted>",'
                       f'signals="miner_name,pool_url,wallet_address,pool_connection"}} 1\n')
            out.append(f'minerwatch_network_pool_connection_info{{{ids},remote="192.0.2.7:3333",evidence="stratum",'
                       f'pool="pool.example"}} 1\n')
        return "".join(out).encode()


def _labels(labels: Dict[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


async def _serve_client(fleet: Fleet, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            parts = path.strip("/").split("/")
            if len(parts) == 3 and parts[0] == "host" and parts[2] == "metrics" and parts[1].isdigit() \
                    and int(parts[1]) < len(fleet.hosts):
                body, status = fleet.render(int(parts[1])), b"200 OK"
            else:
                body, status = b"not found\n", b"404 Not Found"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def serve(fleet: Fleet, port: int, ready: Optional[callable] = None) -> None:
    """Serves `fleet` on 127.0.0.1:port until the process is stopped."""
    async def main():
        server = await asyncio.start_server(lambda r, w: _serve_client(fleet, r, w), "127.0.0.1", port, backlog=4096)
        if ready:
            ready()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def main(argv=None) -> int:
    """Run as a process of its own (fleet.py does): serve the fleet a shape file describes."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Serve a simulated minerwatch fleet on 127.0.0.1.")
    parser.add_argument("--shape", required=True, help="JSON written by fleet.py from a real exporter")
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--busy-share", type=float, default=0.3)
    parser.add_argument("--model", default="{}", help="JSON of Model fields")
    args = parser.parse_args(argv)
    import resource

    # One keep-alive connection per simulated desk, and more while Prometheus reconnects after a
    # slow round: at 10,000 desks more than a usual 20,000 descriptors at times.
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 17, 1 << 17))
    except (ValueError, OSError):
        pass  # not allowed to raise it: the limit stays
    shape = json.loads(Path(args.shape).read_text())
    static = [Family(f["name"], f["kind"], f["help"], [tuple(s) for s in f["samples"]]) for f in shape["static"]]
    fleet = Fleet(args.hosts, args.busy_share, Model(**json.loads(args.model)), static, shape["per_process"])
    serve(fleet, args.port, ready=lambda: print("ready", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
