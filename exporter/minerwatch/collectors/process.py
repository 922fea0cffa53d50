"""Process collector: suspect processes and the busiest ones, classified by the process table.

Suspects are exported per pid (the pid is evidence; capped by max_suspects). The other top-K
processes are exported by (name, user) group (top_groups.py): a pid label on every busy browser
tab or compiler run would make most of the series a desktop creates in a day. Allowlisted top-K
processes also keep `minerwatch_process_allowlisted` per pid, which the GPU rule joins on.

Executables are scanned and hashed in the background (exe_worker.py): a suspect's `exe_sha256` is
empty until the worker has hashed its file, and the `exe_scan` series say how much is still
waiting, so a dashboard can tell "clean" from "not looked at yet".

Sample output:
    minerwatch_process_suspects 1
    minerwatch_process_cpu_seconds_total{name="xmrig",pid="4242",user="alice"} 1234.5
    minerwatch_process_top_cpu_seconds_total{allowlisted="false",name="cc1plus",user="dev"} 812.3
    minerwatch_process_top_processes{allowlisted="false",name="cc1plus",user="dev"} 2
    minerwatch_process_signal{name="xmrig",pid="4242",signal="pool_url",user="alice"} 1
    minerwatch_process_suspect_info{cmdline="xmrig -o stratum+tcp://... -p <redacted>",exe="/tmp/xmrig",exe_sha256="9f2c...",...} 1
    minerwatch_process_exe_scan_queued_files 0
    minerwatch_process_exe_unscanned_processes{check="content"} 0
"""

from __future__ import annotations

from typing import Iterable, Optional

from minerwatch.collectors.base import Collector, register
from minerwatch.serving.metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from minerwatch.detection.top_groups import TopGroups

LABELS = ["pid", "name", "user"]
GROUP_LABELS = ["name", "user", "allowlisted"]


@register
class ProcessCollector(Collector):
    name = "process"
    help = "Suspect processes (miner names, command lines, disguise) and the top-K by CPU."

    top_groups: Optional[TopGroups] = None

    def close(self) -> None:
        if self.context.processes is not None:
            self.context.processes.close()  # its background scan thread

    def collect(self) -> Iterable[Metric]:
        table = self.context.processes
        max_suspects = self.context.config.process.max_suspects
        if self.top_groups is None:
            # twice the top-K: a group that drops out of the top for a scan or two while another
            # enters keeps its counter instead of ending and restarting (a new series)
            self.top_groups = TopGroups(max_groups=2 * self.context.config.process.top_k)
        snapshot = table.scan()

        yield GaugeMetricFamily(
            "minerwatch_process_processes", "Processes seen in the last scan.", value=len(snapshot.processes)
        )
        yield GaugeMetricFamily(
            "minerwatch_process_suspects",
            "Processes that match a miner signal now (the per-process series below are capped).",
            value=len(snapshot.suspects),
        )

        cpu = CounterMetricFamily(
            "minerwatch_process_cpu_seconds", "CPU time of a suspect process.", labels=LABELS
        )
        threads = GaugeMetricFamily("minerwatch_process_threads", "Threads of a suspect process.", labels=LABELS)
        rss = GaugeMetricFamily(
            "minerwatch_process_resident_memory_bytes", "Resident memory of a suspect process.", labels=LABELS
        )
        start = GaugeMetricFamily(
            "minerwatch_process_start_time_seconds", "Start time of a suspect process.", labels=LABELS
        )
        signal = GaugeMetricFamily(
            "minerwatch_process_signal", "1 for each signal a suspect process matched.", labels=LABELS + ["signal"]
        )
        allowlisted = GaugeMetricFamily(
            "minerwatch_process_allowlisted",
            "1 for each process in the top-K that allowlist entries explain whole: its signals, busy CPU and GPU "
            "(never suspect).", labels=LABELS
        )
        info = GaugeMetricFamily(
            "minerwatch_process_suspect_info",
            "A suspect process: executable and its sha256, redacted command line, the signals it matched.",
            labels=LABELS + ["exe", "exe_sha256", "cmdline", "signals"],
        )

        for view in snapshot.watched(max_suspects):
            labels = [str(view.pid), view.name, view.user]
            if view.allowlisted:  # the allowlist keeps a process from being suspect
                allowlisted.add_metric(labels, 1)
            if not view.suspect:
                continue  # counted in its top group below
            cpu.add_metric(labels, view.stat.cpu_seconds)
            threads.add_metric(labels, view.stat.threads)
            rss.add_metric(labels, view.stat.rss_bytes)
            start.add_metric(labels, view.stat.start_time)
            for name in sorted(view.signals):
                signal.add_metric(labels + [name], 1)
            cmdline = table.cmdline(view.facts)
            # asked of the background worker, never hashed here: "" until it has hashed the file
            sha256 = table.known_exe_sha256(view.facts) or ""
            info.add_metric(labels + [view.facts.exe, sha256, cmdline, ",".join(sorted(view.signals))], 1)

        yield from (cpu, threads, rss, start, signal, allowlisted, info)

        top_cpu = CounterMetricFamily(
            "minerwatch_process_top_cpu_seconds",
            "CPU time of the top-K processes that are not suspect, by name and user, while in the top-K "
            "(a group out of the top for 15 minutes ends; back, it starts from 0).",
            labels=GROUP_LABELS,
        )
        top_processes = GaugeMetricFamily(
            "minerwatch_process_top_processes",
            "Processes of the group in the top-K now (0 while the group rests out of the top).",
            labels=GROUP_LABELS,
        )
        for group in self.top_groups.update(v for v in snapshot.top if not v.suspect):
            labels = [group.name, group.user, "true" if group.allowlisted else "false"]
            top_cpu.add_metric(labels, group.cpu_seconds)
            top_processes.add_metric(labels, group.members)
        yield from (top_cpu, top_processes)

        errors = CounterMetricFamily(
            "minerwatch_process_read_errors",
            "Process reads that failed, by reason (permission: run with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH).",
            labels=["reason"],
        )
        for reason in ("permission", "io"):
            errors.add_metric([reason], table.read_errors_total.get(reason, 0))
        yield errors
        # the busy probe's own cost: 0 when it is off (process.busy_probe_interval_seconds: 0)
        probe = getattr(table, "busy_probe", None)
        yield CounterMetricFamily(
            "minerwatch_process_busy_probes",
            "Deeper looks the busy probe took at processes at or above the busy threshold.",
            value=probe.probes_total if probe is not None else 0,
        )
        yield CounterMetricFamily(
            "minerwatch_process_busy_probe_failures",
            "Busy probes whose checks failed unexpectedly (the first is logged); the process stays watched.",
            value=probe.failures_total if probe is not None else 0,
        )
        yield from _exe_scan_families(table)
        yield CounterMetricFamily(
            "minerwatch_process_skipped",
            "Processes a scan left out because reading or classifying them failed unexpectedly (see the log).",
            value=table.skipped_total,
        )


def _exe_scan_families(table) -> Iterable[Metric]:
    """The background executable scan (exe_worker.py): its work, and what still waits for it."""
    worker = table.exe_scans
    scanner = worker.scanner
    yield CounterMetricFamily(
        "minerwatch_process_exe_scanned_bytes",
        "Bytes of executables and scripts read in the background to look for miner strings and hash them (once per file).",
        value=scanner.bytes_scanned_total,
    )
    yield CounterMetricFamily(
        "minerwatch_process_exe_scanned_files",
        "Executables and scripts scanned in the background (once per distinct file).",
        value=scanner.files_scanned_total,
    )
    yield CounterMetricFamily(
        "minerwatch_process_exe_scan_partial_files",
        "Files bigger than the per-file scan budget: only their first 64 MiB searched for miner strings, "
        "and files over 512 MiB not hashed.",
        value=scanner.partial_files_total,
    )
    yield CounterMetricFamily(
        "minerwatch_process_exe_scan_dropped",
        "Requests to scan a file refused or dropped because the queue was full (older requests go first; "
        "the process asks again at its next look).",
        value=worker.dropped_total,
    )
    yield CounterMetricFamily(
        "minerwatch_process_exe_scan_cpu_seconds",
        "CPU time the background executable scan used (held to a quarter of one core on average).",
        value=worker.cpu_seconds_total,
    )
    yield GaugeMetricFamily(
        "minerwatch_process_exe_scan_queued_files",
        "Files waiting for the background executable scan, with the one being scanned.",
        value=worker.queued(),
    )
    unscanned = GaugeMetricFamily(
        "minerwatch_process_exe_unscanned_processes",
        "Processes waiting for the background scan: busy ones whose executable content is not known yet "
        "(check=content: not clean, not looked at), and those whose allowlist sha256 rule waits for the hash "
        "(check=allowlist: not allowlisted meanwhile).",
        labels=["check"],
    )
    for check, count in sorted(table.exe_unscanned().items()):
        unscanned.add_metric([check], count)
    yield unscanned
