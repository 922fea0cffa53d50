"""Fleet overview: what the security team watches across thousands of hosts and many sites."""

from __future__ import annotations

from .common import FIRING, FLEET_UID, HOST_UID, Knobs, host_link
from .grafana import (Selector, dashboard, dashboard_link, datasource_variable, field_link, query_variable, row,
                      stat, steps, table, tagged_dashboards_link, target, text, timeseries)

F = Selector('job=~"$job"', 'site=~"$site"', 'instance=~"$instance"')
ALERTS = Selector(FIRING, *F.matchers)("ALERTS")
CRITICAL = Selector(FIRING, *F.matchers)("ALERTS", 'severity="critical"')
WARNING = Selector(FIRING, *F.matchers)("ALERTS", 'severity="warning"')
HOST = ("instance", "Host", None)
SITE = ("site", "Site", None)
JOB = ("job", "Job", None)
TO_HOST = [field_link("Host", [host_link()])]
RED_FROM_1 = steps(("green", None), ("red", 1))


def _by_site(expr: str) -> str:
    """Hosts without a site label are shown as such, not as an empty legend."""
    return f'label_replace({expr}, "site", "(no site label)", "site", "")'


def _off_hours(expr: str) -> str:
    """The samples of `expr` taken while its host was off hours (instance:minerwatch_off_hours:bool)."""
    return f'({expr} and on (instance, job) {F("instance:minerwatch_off_hours:bool")} == 1)'


def _not_reporting(knobs: Knobs) -> str:
    """Targets down, or gone from service discovery within the lookback (as MinerwatchExporterDown)."""
    up = F("up")
    return f"{up} == 0 or (last_over_time({up}[{knobs.missing_lookback}]) unless on (instance, job) {up})"


def _now(knobs: Knobs) -> list:
    suspects = F("minerwatch_process_suspects")
    return [
        row("Now"),
        stat("Hosts with suspects", "Hosts where at least one process is suspect now.",
             [target(f"count({suspects} > 0) or vector(0)", "hosts", instant=True)],
             thresholds=RED_FROM_1, links=[knobs.runbook("MinerwatchMinerProcessRunning")]),
        stat("Suspect processes", "Suspect processes across the selected hosts now.",
             [target(f"sum({suspects}) or vector(0)", "processes", instant=True)], thresholds=RED_FROM_1),
        stat("Alerts firing", "Minerwatch alerts firing now, by severity (critical pages the on-call).",
             [target(f"count({CRITICAL}) or vector(0)", "critical", instant=True),
              target(f"count({WARNING}) or vector(0)", "warning", instant=True)],
             thresholds=RED_FROM_1, text_mode="value_and_name", links=[knobs.runbooks()]),
        stat("Hosts expected", "Targets Prometheus is configured to scrape (count of up).",
             [target(f"count({F('up')}) or vector(0)", "hosts", instant=True)]),
        stat("Hosts reporting", "Targets whose last scrape succeeded (up == 1).",
             [target(f"count({F('up')} == 1) or vector(0)", "hosts", instant=True)]),
        stat("Hosts not reporting", f"""A hole in coverage is a finding: targets down, or gone from service
             discovery in the last {knobs.missing_lookback}, are hosts nobody watches for miners.""",
             [target(f"count({_not_reporting(knobs)}) or vector(0)", "hosts", instant=True)],
             thresholds=RED_FROM_1, links=[knobs.runbook("MinerwatchExporterDown")]),
    ]


def _alerts(knobs: Knobs) -> list:
    columns = [("alertname", "Alert", None), ("severity", "Severity", None), HOST, SITE,
               ("name", "Process", None), ("pid", "PID", None), ("user", "User", None),
               ("collector", "Collector", None), ("tuning", "Tuning", None), JOB]  # signals: the suspect table
    return [
        row("Alerts and suspects"),
        table("Firing Minerwatch alerts", """Every Minerwatch alert firing now (from the ALERTS series). Click a
              host for its drill-down; the panel links open the runbooks.""",
              [target(ALERTS, table=True)], columns, h=7, sort=("Severity", False),
              links=[knobs.runbooks(), knobs.evidence()], overrides=TO_HOST),
        table("Suspect processes across the fleet", """Every suspect process now, with the evidence the
              exporter keeps: signals, executable, its sha256 and the command line (secrets redacted). Here
              before an alert's `for` has passed, and after the process is gone from the host's own view only
              as long as the data source keeps it.""",
              [target(F("minerwatch_process_suspect_info"), table=True)],
              [HOST, SITE, ("name", "Process", None), ("pid", "PID", None), ("user", "User", None),
               ("signals", "Signals", None), ("exe", "Executable", None), ("exe_sha256", "SHA-256", None),
               ("cmdline", "Command line", None), JOB],
              h=7, sort=("Host", False), overrides=TO_HOST,
              links=[knobs.evidence(), knobs.runbook("MinerwatchMinerProcessRunning"),
                     knobs.runbook("MinerwatchSuspectProcess")]),
    ]


def _over_time() -> list:
    return [
        row("Suspicion over time"),
        timeseries("Hosts with suspects, by site", "Hosts with at least one suspect process, per site (city).",
                   [target(_by_site(f"count by (site) ({F('minerwatch_process_suspects')} > 0)"), "{{site}}")],
                   axis="hosts"),
        timeseries("Firing alerts, by alert", "Minerwatch alerts firing, counted per alert name.",
                   [target(f"count by (alertname) ({ALERTS})", "{{alertname}}")], axis="alerts"),
    ]


def _top(knobs: Knobs) -> list:
    suspects = F("minerwatch_process_suspects")
    busy = _off_hours(F("instance:minerwatch_host_cpu_busy:ratio_rate5m"))
    suspect_cpu = _off_hours(F("instance_pid:minerwatch_process_cpu_seconds:rate5m"))
    group_cpu = _off_hours(f"rate({F('minerwatch_process_top_cpu_seconds_total')}[$__rate_interval])")
    gpu_energy = _off_hours(f"rate({F('minerwatch_gpu_energy_joules_total')}[$__rate_interval])")
    window = "[$__range:$__interval]"
    return [
        row("Top hosts"),
        table("Top hosts by suspicion", """Hosts with suspect processes now or at any time in the dashboard's
              range, and their firing alerts.""",
              [target(f"topk(20, max by (instance, job, site) ({suspects}) > 0)", table=True),
               target(f"topk(20, max by (instance, job, site) (max_over_time({suspects}[$__range])) > 0)", table=True),
               target(f"count by (instance, job, site) ({ALERTS})", table=True)],
              [HOST, SITE, ("#A", "Suspects now", None), ("#B", "Most suspects in range", None),
               ("#C", "Firing alerts", None), JOB],
              w=12, h=9, sort=("Most suspects in range", True), overrides=TO_HOST,
              links=[knobs.runbook("MinerwatchMinerProcessRunning"), knobs.runbook("MinerwatchSuspectProcess")]),
        table("Top hosts by off-hours CPU", """Share of the host's CPU time spent busy outside office hours
              (rules/config/minerwatch.yml officeHours), averaged and at its peak over the off-hours part of the range.
              Empty when the range holds no off-hours time.""",
              [target(f"topk(20, avg by (instance, job, site) (avg_over_time({busy}{window})))", table=True),
               target(f"topk(20, max by (instance, job, site) (max_over_time({busy}{window})))", table=True)],
              [HOST, SITE, ("#A", "Busy off hours (avg)", "percentunit"),
               ("#B", "Busy off hours (peak)", "percentunit"), JOB],
              w=12, h=9, sort=("Busy off hours (avg)", True), overrides=TO_HOST,
              links=[knobs.runbook("MinerwatchHostCpuAbovePeers")]),
        table("Top processes by off-hours CPU", """The processes that used the most CPU cores outside office
              hours: suspects one by one (with their PID), the other busiest processes of each host by name
              and user (no PID: run `minerwatch scan` on the host for it). The exporter exports no others.""",
              [target(f"topk(20, avg_over_time({suspect_cpu}{window}) or avg_over_time({group_cpu}{window}))",
                      table=True)],
              [HOST, ("name", "Process", None), ("pid", "PID", None), ("user", "User", None),
               ("allowlisted", "Allowlisted", None), ("#A", "CPU cores off hours (avg)", "short"), SITE, JOB],
              w=12, h=9, sort=("CPU cores off hours (avg)", True), overrides=TO_HOST,
              links=[knobs.runbook("MinerwatchProcessCpuSustained"), knobs.runbook("MinerwatchProcessGroupCpuSustained")]),
        table("Top hosts by off-hours GPU energy", """Energy the hosts' NVIDIA GPUs used outside office hours in
              the dashboard's range: the GPU energy counter's rate, summed over the off-hours steps. A GPU
              miner holds the GPU at its power cap all night.""",
              [target(f"topk(20, sum by (instance, job, site) (sum_over_time({gpu_energy}{window}))"
                      " * $__interval_ms / 1000 / 3600)", table=True)],
              [HOST, SITE, ("#A", "GPU energy off hours", "watth"), JOB],
              w=12, h=9, sort=("GPU energy off hours", True), overrides=TO_HOST,
              links=[knobs.runbook("MinerwatchGpuMiningLoad")]),
    ]


def _pools(knobs: Knobs) -> list:
    return [
        row("Pool connections"),
        timeseries("Pool connections, by site", """Connections to mining pools (Stratum on the wire, pool TLS
                   name, listed or resolved pool address) per site.""",
                   [target(_by_site(f"sum by (site) ({F('minerwatch_network_pool_connections')})"), "{{site}}")],
                   w=8, axis="connections"),
        table("Pool connections across the fleet", """Every connection to a mining pool now: host, process,
              remote end, the pool it matched (the remote end where no listed name matched) and the evidence
              (stratum, sni, connect, list, dns; dns_answer and port alone are weak).""",
              [target(F("instance_pid_remote:minerwatch_network_pool_connection:info"), table=True)],
              [HOST, SITE, ("name", "Process", None), ("pid", "PID", None), ("user", "User", None),
               ("remote", "Remote", None), ("pool", "Pool", None), ("evidence", "Evidence", None), JOB],
              w=16, sort=("Host", False), overrides=TO_HOST,
              links=[knobs.runbook("MinerwatchPoolConnection"), knobs.runbook("MinerwatchPoolConnectionCpuSustained")]),
    ]


def _coverage(knobs: Knobs) -> list:
    up = F("up")
    return [
        row("Exporter coverage"),
        timeseries("Hosts expected vs reporting, by site", """Targets configured and targets answering, per
                   site; the gap between the two lines is the hole in coverage.""",
                   [target(_by_site(f"count by (site) ({up})"), "{{site}} expected"),
                    target(_by_site(f"count by (site) ({up} == 1)"), "{{site}} reporting")],
                   axis="hosts"),
        table("Hosts down or gone", f"""Targets down now, or gone from service discovery in the last
              {knobs.missing_lookback}: nobody watches these hosts for miners.""",
              [target(_not_reporting(knobs), table=True)],
              [HOST, SITE, ("role", "Role", None), JOB],
              w=12, sort=("Host", False), overrides=TO_HOST, links=[knobs.runbook("MinerwatchExporterDown")]),
        table("Hosts with failing collectors", """Collectors whose last scrape failed: what they watch is not
              seen on that host.""",
              [target(f"{F('minerwatch_scrape_collector_success')} == 0", table=True)],
              [HOST, SITE, ("collector", "Collector", None), JOB],
              w=12, h=7, sort=("Host", False), overrides=TO_HOST, links=[knobs.runbook("MinerwatchCollectorFailing")]),
        table("Slowest scrapes", "The longest scrape of each host in the range (Prometheus' scrape_duration_seconds).",
              [target(f"topk(10, max by (instance, job) (max_over_time({F('scrape_duration_seconds')}[$__range])))",
                      table=True)],
              [HOST, ("#A", "Longest scrape", "s"), JOB], w=6, h=7, sort=("Longest scrape", True), overrides=TO_HOST),
        table("Exporter versions", "Hosts per minerwatch version (minerwatch_build_info).",
              [target(f"count by (version) ({F('minerwatch_build_info')})", table=True)],
              [("version", "Version", None), ("#A", "Hosts", None)], w=6, h=7, sort=("Hosts", True)),
    ]


def _integral(expr: str, per_hour: float = 1.0) -> str:
    """`expr` (a rate per hour, e.g. watts or tenge per hour) summed over the dashboard's range: one
    sample a step, each standing for the step's share of an hour, divided by `per_hour`."""
    return f"sum_over_time({expr}[$__range:$__interval]) * $__interval_ms / 3600000 / {per_hour:g}"


def _energy(knobs: Knobs) -> list:
    watts = F("instance:minerwatch_suspect_energy_watts:rate5m")
    cost = F("instance:minerwatch_suspect_energy_cost_tenge_per_hour:rate5m")
    cores = F("instance:minerwatch_suspect_cpu_cores:rate5m")
    gpus = F("instance:minerwatch_suspect_gpus:sum")
    process_watts = F("instance_pid:minerwatch_suspect_energy_watts:rate5m")
    process_cost = F("instance_pid:minerwatch_suspect_energy_cost_tenge_per_hour:rate5m")
    share = F("instance:minerwatch_suspect_energy_share:ratio_rate5m")
    method = """Estimated, not metered: each suspect's share of the CPU packages' RAPL energy (by its share of
the host's busy CPU time) or, without RAPL, its CPU seconds times `energy.cpu_watts_per_core`; GPUs: NVML
energy by SM share. Tenge at each site's `energyTariffTengePerKwh` (rules/config/minerwatch.yml)."""
    return [
        row("Estimated energy of suspect processes"),
        stat("Energy taken", f"kWh suspect processes used in the dashboard's range. {method}",
             [target(f"sum({_integral(watts, 1000)}) or vector(0)", "kWh", instant=True)], unit="kwatth"),
        stat("Cost", f"Tenge that energy cost in the dashboard's range. {method}",
             [target(f"sum({_integral(cost)}) or vector(0)", "tenge", instant=True)], unit="none"),
        stat("CPU core-hours taken", "CPU cores suspect processes kept busy, summed over the range.",
             [target(f"sum({_integral(cores)}) or vector(0)", "core-hours", instant=True)], unit="none"),
        stat("GPU-hours taken", "Whole GPUs' worth of SM time suspect processes used, summed over the range.",
             [target(f"sum({_integral(gpus)}) or vector(0)", "GPU-hours", instant=True)], unit="none"),
        timeseries("Power of suspect processes, by site", f"Estimated power suspect processes draw. {method}",
                   [target(_by_site(f"sum by (site) ({watts})"), "{{site}}")], unit="watt", w=8, axis="power"),
        table("Top hosts by suspect energy", f"""Hosts whose suspect processes used the most energy in the range,
              what it cost, and the share of the host's estimated power they took on average. {method}""",
              [target(f"topk(20, sum by (instance, job, site) ({_integral(watts, 1000)}))", table=True),
               target(f"topk(20, sum by (instance, job, site) ({_integral(cost)}))", table=True),
               target(f"avg by (instance, job, site) (avg_over_time({share}[$__range]))", table=True)],
              [HOST, SITE, ("#A", "Energy", "kwatth"), ("#B", "Tenge", "none"),
               ("#C", "Share of host power", "percentunit"), JOB],
              w=12, h=9, sort=("Energy", True), overrides=TO_HOST,
              links=[knobs.runbook("MinerwatchMinerProcessRunning")]),
        table("Top processes by energy", f"""The suspect processes that used the most energy in the range, and what
              it cost. {method}""",
              [target(f"topk(20, {_integral(process_watts, 1000)})", table=True),
               target(f"topk(20, {_integral(process_cost)})", table=True)],
              [HOST, ("name", "Process", None), ("pid", "PID", None), ("user", "User", None),
               ("#A", "Energy", "kwatth"), ("#B", "Tenge", "none"), SITE, JOB],
              w=12, h=9, sort=("Energy", True), overrides=TO_HOST),
    ]


def fleet(knobs: Knobs) -> dict:
    variables = [
        datasource_variable(),
        query_variable("job", "Job", "label_values(minerwatch_build_info, job)", multi=True),
        query_variable("site", "Site", 'label_values(up{job=~"$job"}, site)', multi=True, all_value=".*"),
        query_variable("instance", "Host", 'label_values(up{job=~"$job", site=~"$site"}, instance)', multi=True,
                       all_value=".*"),
    ]
    panels = _now(knobs) + _alerts(knobs) + _over_time() + _top(knobs) + _pools(knobs) + _coverage(knobs) + _energy(knobs)
    links = [
        tagged_dashboards_link("Host drill-down", HOST_UID, "One host: processes, signals, GPU, network, tuning"),
        dashboard_link("Runbooks", knobs.runbooks()["url"], "What each alert means and what to do", "doc",
                       keep_time=False),
    ]
    return dashboard(
        FLEET_UID, "Minerwatch / Fleet overview",
        "Cryptocurrency miners across the fleet: suspect hosts, firing alerts, pool connections, coverage.",
        variables, panels, links,
    )

