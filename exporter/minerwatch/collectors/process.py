"""Process collector: suspect processes and the busiest ones, classified by the process table.

Sample output:
    minerwatch_process_suspects 1
    minerwatch_process_cpu_seconds_total{name="xmrig",pid="4242",user="alice"} 1234.5
    minerwatch_process_signal{name="xmrig",pid="4242",signal="pool_url",user="alice"} 1
    minerwatch_process_suspect_info{cmdline="xmrig -o stratum+tcp://... -p <redacted>",exe="/tmp/xmrig",exe_sha256="9f2c...",...} 1
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from minerwatch.collectors.base import Collector, register

LABELS = ["pid", "name", "user"]


@register
class ProcessCollector(Collector):
    name = "process"
    help = "Suspect processes (miner names, command lines, disguise) and the top-K by CPU."

    def collect(self) -> Iterable[Metric]:
        table = self.context.processes
        max_suspects = self.context.config.process.max_suspects
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
            "minerwatch_process_cpu_seconds", "CPU time of a suspect or top-K process.", labels=LABELS
        )
        threads = GaugeMetricFamily("minerwatch_process_threads", "Threads of a watched process.", labels=LABELS)
        rss = GaugeMetricFamily(
            "minerwatch_process_resident_memory_bytes", "Resident memory of a watched process.", labels=LABELS
        )
        start = GaugeMetricFamily(
            "minerwatch_process_start_time_seconds", "Start time of a watched process.", labels=LABELS
        )
        signal = GaugeMetricFamily(
            "minerwatch_process_signal", "1 for each signal a watched process matched.", labels=LABELS + ["signal"]
        )
        allowlisted = GaugeMetricFamily(
            "minerwatch_process_allowlisted", "1 if the allowlist covers a watched process.", labels=LABELS
        )
        info = GaugeMetricFamily(
            "minerwatch_process_suspect_info",
            "A suspect process: executable and its sha256, redacted command line, the signals it matched.",
            labels=LABELS + ["exe", "exe_sha256", "cmdline", "signals"],
        )

        for view in snapshot.watched(max_suspects):
            labels = [str(view.pid), view.name, view.user]
            cpu.add_metric(labels, view.stat.cpu_seconds)
            threads.add_metric(labels, view.stat.threads)
            rss.add_metric(labels, view.stat.rss_bytes)
            start.add_metric(labels, view.stat.start_time)
            for name in sorted(view.signals):
                signal.add_metric(labels + [name], 1)
            if view.allowlisted:
                allowlisted.add_metric(labels, 1)
            if view.suspect:
                cmdline = table.cmdline(view.facts)
                sha256 = table.exe_sha256(view.facts)  # once per process life: evidence that outlives it
                info.add_metric(labels + [view.facts.exe, sha256, cmdline, ",".join(sorted(view.signals))], 1)

        yield from (cpu, threads, rss, start, signal, allowlisted, info)

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
        yield CounterMetricFamily(
            "minerwatch_process_exe_scanned_bytes",
            "Bytes of executables and scripts the busy probe read to look for miner strings (once per file).",
            value=probe.scanner.bytes_scanned_total if probe is not None else 0,
        )
        yield CounterMetricFamily(
            "minerwatch_process_skipped",
            "Processes a scan left out because reading or classifying them failed unexpectedly (see the log).",
            value=table.skipped_total,
        )

