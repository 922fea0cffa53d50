"""Host drill-down: what on-call staff look at on one alerted host."""

from __future__ import annotations

from .common import FIRING, FLEET_UID, HOST_UID, Knobs
from .grafana import (DS, Selector, dashboard, dashboard_link, datasource_variable, mapping, query_variable, row,
                      stat, steps, table, tagged_dashboards_link, target, timeseries)

H = Selector('job=~"$job"', 'instance=~"$instance"')
JOB_ONLY = Selector('job=~"$job"')  # for job-level recording rules, which have no instance label
ALERTS = Selector(FIRING, *H.matchers)("ALERTS")
PROCESS_CPU = f"sum by (pid, name, user) (rate({H('minerwatch_process_cpu_seconds_total')}[$__rate_interval]))"
# the busiest processes that are not suspect, by name and user (the exporter gives them no pid)
GROUP_CPU = ("sum by (name, user, allowlisted) "
             f"(rate({H('minerwatch_process_top_cpu_seconds_total')}[$__rate_interval]))")
PROCESS = [("pid", "PID", None), ("name", "Process", None), ("user", "User", None)]
YES_NO = mapping({"1": ("yes", "red"), "0": ("no", "green")})


def _verdict(knobs: Knobs) -> list:
    return [
        row("Verdict"),
        stat("Exporter", "Whether Prometheus scraped this host's exporter in its last attempt.",
             [target(H("up"), "up", instant=True)],
             mappings=mapping({"1": ("UP", "green"), "0": ("DOWN", "red")}),
             links=[knobs.runbook("MinerwatchExporterDown")]),
        stat("Suspects now", "Processes on this host that are suspect now.",
             [target(H("minerwatch_process_suspects"), "suspects", instant=True)],
             thresholds=steps(("green", None), ("red", 1))),
        stat("Firing alerts", "Minerwatch alerts firing now for this host.",
             [target(f"count({ALERTS}) or vector(0)", "alerts", instant=True)],
             thresholds=steps(("green", None), ("red", 1)), links=[knobs.runbooks()]),
        stat("Host CPU busy", "Share of all CPUs busy over the last 5 minutes (recording rule).",
             [target(H("instance:minerwatch_host_cpu_busy:ratio_rate5m"), "busy", instant=True)],
             unit="percentunit", thresholds=steps(("green", None), ("orange", knobs.peers_min))),
        stat("Office hours", "Whether it is office hours for this host now (rules/config/minerwatch.yml officeHours).",
             [target(H("instance:minerwatch_off_hours:bool"), "off hours", instant=True)],
             mappings=mapping({"1": ("off hours", "orange"), "0": ("office hours", "green")})),
        stat("Exporter version", "minerwatch version running on the host.",
             [target(H("minerwatch_build_info"), "{{version}}", instant=True)], text_mode="name"),
    ]


def _suspects(knobs: Knobs) -> list:
    strength = f"{H('minerwatch_process_signal')} == 1"
    for name, signals in (("weak", [""]), ("disguise", knobs.disguise_signals), ("strong", knobs.strong_signals)):
        source = "signal" if signals != [""] else ""
        strength = f'label_replace({strength}, "strength", "{name}", "{source}", "{"|".join(signals)}")'
    return [
        row("Alerts and suspects"),
        table("Firing alerts on this host", """Minerwatch alerts firing now for this host; the panel links open
              the runbooks.""",
              [target(ALERTS, table=True)],
              [("alertname", "Alert", None), ("severity", "Severity", None), *PROCESS,
               ("collector", "Collector", None), ("tuning", "Tuning", None)],  # signals: the suspect table
              h=5, sort=("Severity", False), links=[knobs.runbooks(), knobs.evidence()]),
        table("Suspect processes", """Each suspect process now: the signals it matched, its executable and its
              command line (passwords and tokens redacted by the exporter). Keep the evidence before killing it.""",
              [target(H("minerwatch_process_suspect_info"), table=True)],
              [*PROCESS, ("signals", "Signals", None), ("exe", "Executable", None), ("cmdline", "Command line", None)],
              h=6, sort=("PID", False),
              links=[knobs.evidence(), knobs.runbook("MinerwatchMinerProcessRunning"),
                     knobs.runbook("MinerwatchSuspectProcess")]),
        table("Signals matched, per process", """One row per signal a watched process matched. Strong: one is
              enough to make a process suspect; disguise and weak: suspect only while busy.""",
              [target(strength, table=True)],
              [*PROCESS, ("signal", "Signal", None), ("strength", "Strength", None)],
              w=8, h=9, sort=("PID", False), links=[knobs.runbook("MinerwatchMinerProcessRunning")]),
        timeseries("CPU of suspect processes", f"""CPU cores each suspect process uses. The dashed line is
                   the {knobs.process_cpu_high:g}-core threshold of MinerwatchProcessCpuSustained (off hours or
                   from a disguised executable).""",
                   [target(f"{PROCESS_CPU} and on (pid) {H('minerwatch_process_suspect_info')}",
                           "{{name}} pid {{pid}} ({{user}})")],
                   w=16, h=9, axis="CPU cores", threshold=knobs.process_cpu_high,
                   links=[knobs.runbook("MinerwatchProcessCpuSustained")]),
    ]


def _cpu(knobs: Knobs) -> list:
    own = H("instance:minerwatch_host_cpu_busy:ratio_rate5m")
    peers = f"{JOB_ONLY('job_site_role:minerwatch_host_cpu_busy:median_ratio_rate5m')} and on (job, site, role) {own}"
    factor = f"{knobs.peers_factor:g}"
    return [
        row("CPU"),
        timeseries("CPU of watched processes", """CPU cores used by every suspect (by pid) and by the busiest
                   other processes (top-K), by name and user: those have no pid in the metrics, `minerwatch
                   scan` on the host lists them. The exporter exports no other processes.""",
                   [target(PROCESS_CPU, "{{name}} pid {{pid}} ({{user}})"),
                    target(GROUP_CPU, "{{name}} ({{user}}, allowlisted {{allowlisted}})")], axis="CPU cores"),
        timeseries("Host CPU busy vs peers", f"""This host's busy share of all CPUs against the median of its
                   peers (same job, site, role). MinerwatchHostCpuAbovePeers fires off hours above
                   {factor}x the median and above the dashed {knobs.peers_min:g} line.""",
                   [target(own, "this host"), target(peers, "peers' median"),
                    target(f"{factor} * ({peers})", f"alert level ({factor}x median)"),
                    target(H("instance:minerwatch_off_hours:bool"), "off hours (1 = yes)")],
                   unit="percentunit", maximum=1, threshold=knobs.peers_min,
                   links=[knobs.runbook("MinerwatchHostCpuAbovePeers")]),
    ]


def _gpu(knobs: Knobs) -> list:
    gpu = "GPU {{gpu}}"
    on_gpu = "{{name}} pid {{pid}} on GPU {{gpu}}"
    return [
        row("GPU"),
        [stat("GPU driver", "Whether NVML (the NVIDIA driver library) answers; no GPU or driver reads 'none'.",
              [target(H("minerwatch_gpu_up"), "NVML", instant=True)],
              mappings=mapping({"1": ("up", "green"), "0": ("none", "text")})),
         stat("GPUs", "NVIDIA GPUs the driver reports.", [target(H("minerwatch_gpu_devices"), "GPUs", instant=True)])],
        timeseries("GPU utilization", """SM and memory-controller busy share, and the spread of SM use since
                   the last scrape: a miner sits flat at 100% (spread near 0), games and training dip.""",
                   [target(H("minerwatch_gpu_utilization_ratio"), f"{gpu} SM"),
                    target(H("minerwatch_gpu_memory_utilization_ratio"), f"{gpu} memory controller"),
                    target(H("minerwatch_gpu_utilization_spread_ratio"), f"{gpu} SM spread")],
                   unit="percentunit", w=7, maximum=1, links=[knobs.runbook("MinerwatchGpuMiningLoad")]),
        timeseries("GPU power vs limit", "Board power against the enforced power limit: miners sit at the cap.",
                   [target(H("minerwatch_gpu_power_watts"), f"{gpu} power"),
                    target(H("minerwatch_gpu_power_limit_watts"), f"{gpu} limit")],
                   unit="watt", w=7, links=[knobs.runbook("MinerwatchGpuMiningLoad")]),
        timeseries("GPU use by process", "Share of SM time each process on a GPU used since the last scrape.",
                   [target(H("minerwatch_gpu_process_utilization_ratio"), on_gpu)], unit="percentunit", w=6,
                   maximum=1),
        table("Processes on the GPU", "Processes holding a GPU context, whether minerwatch calls them suspect, "
              "and the GPU memory they hold.",
              [target(f"max by (gpu, pid, name, user) ({H('minerwatch_gpu_process_suspect')})", table=True),
               target(f"sum by (gpu, pid, name, user) ({H('minerwatch_gpu_process_memory_used_bytes')})", table=True)],
              [("gpu", "GPU", None), *PROCESS, ("#A", "Suspect", None), ("#B", "GPU memory", "bytes")],
              h=5, sort=("Suspect", True), links=[knobs.runbook("MinerwatchGpuMiningLoad")],
              overrides=[{"matcher": {"id": "byName", "options": "Suspect"},
                          "properties": [{"id": "mappings", "value": YES_NO}]}]),
    ]


def _network(knobs: Knobs) -> list:
    flows = f"sum by (dialect) (rate({H('minerwatch_network_stratum_flows_total')}[$__rate_interval]))"
    sni = f"sum(rate({H('minerwatch_network_sni_matches_total')}[$__rate_interval]))"
    return [
        row("Network"),
        [stat("Pool connections now", "Connections to mining pools now (more than port evidence).",
              [target(H("minerwatch_network_pool_connections"), "connections", instant=True)],
              thresholds=steps(("green", None), ("red", 1)), links=[knobs.runbook("MinerwatchPoolConnection")]),
         stat("Stratum sniffer", "Whether the Stratum/TLS sniffer runs (it needs CAP_NET_RAW on Linux).",
              [target(H("minerwatch_network_sniffer_up"), "sniffer", instant=True)],
              mappings=mapping({"1": ("running", "green"), "0": ("off", "orange")}))],
        timeseries("Pool connections over time", """Connections to mining pools (strong evidence), and
                   connections to usual Stratum ports only (weak, not a signal alone).""",
                   [target(H("minerwatch_network_pool_connections"), "pool connections"),
                    target(H("minerwatch_network_pool_port_connections"), "pool port only (weak)")],
                   w=10, axis="connections"),
        timeseries("Stratum flows and pool TLS names", """New connections whose first bytes were Stratum, by
                   dialect, and TLS handshakes naming a listed pool, per second.""",
                   [target(flows, "Stratum {{dialect}}"), target(sni, "TLS name of a pool")],
                   w=10, axis="per second"),
        table("Connections to pools", """Each connection to a mining pool: owner process, remote end, the pool it
              matched and the evidence (stratum, sni, connect, list, dns; dns_answer and port alone are weak).""",
              [target(H("minerwatch_network_pool_connection_info"), table=True)],
              [*PROCESS, ("remote", "Remote", None), ("pool", "Pool", None), ("evidence", "Evidence", None)],
              h=5, sort=("PID", False),
              links=[knobs.runbook("MinerwatchPoolConnection"), knobs.runbook("MinerwatchPoolPortConnection")]),
    ]


def _tuning_and_antivirus(knobs: Knobs) -> list:
    changes = f"sum by (product) (increase({H('minerwatch_antivirus_exclusion_changes_total')}[$__rate_interval]))"
    return [
        row("Tuning and antivirus"),
        [stat("Huge pages reserved", "Memory reserved as huge pages: XMRig's RandomX wants them; desktops do not.",
              [target(H("minerwatch_tuning_hugepages_reserved_bytes"), "reserved", instant=True)], unit="bytes",
              thresholds=steps(("green", None), ("red", knobs.hugepages_threshold + 1)),
              links=[knobs.runbook("MinerwatchMinerTuningOnWorkstation")]),
         stat("MSR access", "The msr kernel module, and whether user space may write CPU model-specific "
              "registers (XMRig rewrites prefetchers for RandomX).",
              [target(H("minerwatch_tuning_msr_module_loaded"), "module loaded", instant=True),
               target(H("minerwatch_tuning_msr_writes_allowed"), "writes allowed", instant=True)],
              mappings=YES_NO, text_mode="value_and_name",
              links=[knobs.runbook("MinerwatchMinerTuningOnWorkstation")])],
        timeseries("Huge pages reserved, by page size", "Reserved huge pages of each size.",
                   [target(H("minerwatch_tuning_hugepages_reserved_pages"), "{{page_size_bytes}}-byte pages")],
                   w=6, axis="pages"),
        table("Antivirus exclusions", """Exclusions in force per antivirus product and kind. Miners add
              exclusions for themselves; a process under one gets the av_excluded signal.""",
              [target(H("minerwatch_antivirus_exclusions"), table=True)],
              [("product", "Product", None), ("kind", "Kind", None), ("#A", "Exclusions", None)],
              w=7, sort=("Exclusions", True),
              links=[knobs.runbook("MinerwatchAntivirusExclusionAdded"),
                     knobs.runbook("MinerwatchExcludedProcessBusy")]),
        timeseries("Antivirus exclusion changes", "Changes of each product's exclusion set seen by the exporter.",
                   [target(changes, "{{product}}")], w=7, bars=True, axis="changes",
                   links=[knobs.runbook("MinerwatchAntivirusExclusionAdded")]),
    ]


def _health(knobs: Knobs) -> list:
    errors = f"sum by (reason) (rate({H('minerwatch_process_read_errors_total')}[$__rate_interval]))"
    return [
        row("Exporter health"),
        stat("Collectors", "Whether each collector succeeded in the last scrape; a failing one sees nothing.",
             [target(H("minerwatch_scrape_collector_success"), "{{collector}}", instant=True)],
             mappings=mapping({"1": ("OK", "green"), "0": ("FAILED", "red")}), text_mode="value_and_name",
             w=8, h=8, links=[knobs.runbook("MinerwatchCollectorFailing")]),
        timeseries("Scrape duration", "Time each collector took per scrape, and the whole scrape as Prometheus saw it.",
                   [target(H("minerwatch_scrape_collector_duration_seconds"), "{{collector}}"),
                    target(H("scrape_duration_seconds"), "whole scrape")], unit="s", w=8),
        timeseries("Process read errors", """Reads of /proc the exporter was refused, per second: permission
                   errors mean it runs without CAP_SYS_PTRACE and misses executables and environments.""",
                   [target(errors, "{{reason}}")], w=8, axis="per second"),
    ]


def host(knobs: Knobs) -> dict:
    variables = [
        datasource_variable(),
        query_variable("job", "Job", "label_values(minerwatch_build_info, job)"),
        query_variable("instance", "Host", 'label_values(up{job=~"$job"}, instance)'),
    ]
    panels = (_verdict(knobs) + _suspects(knobs) + _cpu(knobs) + _gpu(knobs) + _network(knobs)
              + _tuning_and_antivirus(knobs) + _health(knobs))
    links = [
        tagged_dashboards_link("Fleet overview", FLEET_UID, "All hosts"),
        dashboard_link("Runbooks", knobs.runbooks()["url"], "What each alert means and what to do", "doc",
                       keep_time=False),
        dashboard_link("Keeping the evidence", knobs.evidence()["url"], "Before touching a suspect process", "doc",
                       keep_time=False),
    ]
    annotations = [{
        "name": "Minerwatch alerts", "datasource": DS, "enable": True, "hide": False, "iconColor": "red",
        "expr": ALERTS, "step": "1m", "titleFormat": "{{alertname}}",
        "textFormat": "{{severity}}: {{name}} pid {{pid}}", "tagKeys": "severity", "useValueForTime": False,
    }]
    return dashboard(
        HOST_UID, "Minerwatch / Host drill-down",
        "One host: suspect processes and their signals, CPU, GPU, pool connections, tuning, antivirus, health.",
        variables, panels, links, annotations,
    )
