"""`minerwatch report`: what a miner on one host cost over a period, from Prometheus's history.

Reads raw samples through Prometheus's HTTP API (instant queries of range selectors, one time
chunk at a time, so long periods show progress and no query grows too big), totals them here
where every step is visible, and writes report.json and a self-contained report.html
(report_html.py). Totals from samples, not PromQL's increase(): no extrapolation, so the figures
are exactly what the exporter recorded.

What is measured and what is estimated:
- CPU core-seconds: measured, the growth of minerwatch_process_cpu_seconds_total between its
  first and last sample in the period (CPU used before minerwatch first saw the process, or
  after the last scrape, is not counted: the figure errs low).
- GPU-hours: measured, minerwatch_gpu_process_utilization_ratio held from each sample to the
  next (gaps longer than MAX_HOLD_SECONDS count as no use).
- energy: the exporter's minerwatch_process_energy_joules_total / minerwatch_gpu_process_
  energy_joules_total where present (the exporter says by which method); otherwise estimated
  here: CPU core-seconds times watts per core, GPU share times the board's measured power.
- cost: energy times a tariff (an option; the default is one region's published tariff).

Prometheus is read through report_prometheus.py, which bounds what a broken or hostile server
can make the report do; samples that are not finite numbers (NaN, Inf) or not possible for the
series are left out of every total, and the report lists them (`left_out`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import click

from minerwatch import __version__
from minerwatch.options import FiniteFloatRange
from minerwatch.investigation.i18n import LANGS, resolve_lang
from minerwatch.investigation.report_prometheus import (DEFAULT_TIMEOUT_SECONDS, MAX_SAMPLE_VALUE, Labels, Prometheus,
                                          ReportError, Samples, chunks, selector)
from minerwatch.text import host_text

FORMAT = "minerwatch-report/1"
MAX_HOLD_SECONDS = 300.0  # a gauge sample stands for at most this long
# 65 W processor base power of a typical office desktop CPU (Intel Core i5-12400, 6 cores, per
# Intel's specification) / 6 cores = 10.8 W a busy core, rounded down so the estimate errs low.
# The same figure as the exporter's energy collector (energy.cpu_watts_per_core).
DEFAULT_WATTS_PER_CORE = 10.0
# Tenge per kWh with VAT for organisations financed from the state budget (a ministry's tariff
# class), Kostanay region, in force from 1 January 2025, as published by the regional supplier
# (epk-forfait.kz/tarify: 67.34 without VAT, 75.42 with VAT; other legal entities there 32.64).
# Read from the supplier's page, not from the regulator: tariffs differ by region and change
# yearly, so set --energy.tariff to the ministry's contract price.
DEFAULT_TARIFF_KZT_PER_KWH = 75.42
TARIFF_SOURCE = ("budget-financed organisations, Kostanay region, from 2025-01-01, with VAT "
                 "(regional supplier's published price; not verified against the regulator)")
MAX_TARIFF = 100000.0  # tenge per kWh: over a thousand times any published tariff
JOULES_PER_KWH = 3.6e6
LAST_TIME = 4102444800.0  # 2100-01-01T00:00:00Z: later (or inf, from now-1e400d) is a typing error
LEFT_OUT_LISTED = 100  # series named in the report's list of left-out samples; the rest counted


# -- time ----------------------------------------------------------------------------------------


def parse_time(text: str, now: float, utc_offset_hours: float) -> float:
    """Epoch seconds from `now`, `now-14d`, epoch seconds, RFC 3339, or a date (office midnight)."""
    epoch = _parse_time(text.strip(), now, utc_offset_hours)
    if not 0 <= epoch <= LAST_TIME:
        raise ValueError("must lie between 1970 and 2100")
    return epoch


def _parse_time(text: str, now: float, utc_offset_hours: float) -> float:
    m = re.fullmatch(r"now(?:-(\d+(?:\.\d+)?)([smhdw]))?", text)
    if m:
        if not m.group(1):
            return now
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - float(m.group(1)) * unit
    if re.fullmatch(r"\d{9,11}(?:\.\d+)?", text):
        return float(text)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = dt.datetime.fromisoformat(text)
            return day.replace(tzinfo=dt.timezone(dt.timedelta(hours=utc_offset_hours))).timestamp()
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError("not a time: use RFC 3339 (2026-11-01T09:00:00+05:00), a date, epoch seconds or now-14d")
    if moment.tzinfo is None:
        raise ValueError("give a time zone (Z or +05:00)")
    return moment.timestamp()


def iso(epoch: Optional[float], offset_hours: float = 0.0) -> Optional[str]:
    if epoch is None:
        return None
    zone = dt.timezone(dt.timedelta(hours=offset_hours))
    text = dt.datetime.fromtimestamp(epoch, zone).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


@dataclass
class OfficeHours:
    """Office hours in local time at one fixed UTC offset, as rules/config/minerwatch.yml defines them."""

    utc_offset_hours: float = 5.0
    start_seconds: int = 9 * 3600
    end_seconds: int = 18 * 3600
    days: Tuple[int, ...] = (1, 2, 3, 4, 5)  # day_of_week(): 0 = Sunday

    def office_seconds(self, t0: float, t1: float) -> float:
        """Seconds of [t0, t1) that fall in office hours."""
        offset = self.utc_offset_hours * 3600
        local0, local1 = t0 + offset, t1 + offset
        total = 0.0
        day = int(local0 // 86400)
        while day * 86400 < local1:
            if (day + 4) % 7 in self.days:  # 1970-01-01 was a Thursday (4)
                lo = max(local0, day * 86400 + self.start_seconds)
                hi = min(local1, day * 86400 + self.end_seconds)
                if hi > lo:
                    total += hi - lo
            day += 1
        return total

    def describe(self) -> str:
        names = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        sign = "+" if self.utc_offset_hours >= 0 else "-"
        return (f"{_hhmm(self.start_seconds)}-{_hhmm(self.end_seconds)} "
                f"{','.join(names[d] for d in sorted(self.days))}, UTC{sign}{abs(self.utc_offset_hours):g} "
                "(public holidays count as office days)")


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def parse_office_hours(text: str) -> Tuple[int, int]:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", text.strip())
    if not m:
        raise ValueError("must be HH:MM-HH:MM, for example 09:00-18:00")
    start = int(m.group(1)) * 3600 + int(m.group(2)) * 60
    end = int(m.group(3)) * 3600 + int(m.group(4)) * 60
    if not 0 <= start < end <= 86400:
        raise ValueError("start must come before end, both within one day")
    return start, end


# -- totals --------------------------------------------------------------------------------------


@dataclass
class Split:
    """An amount over time, split by office hours, with per-bucket values for a chart."""

    total: float = 0.0
    office: float = 0.0
    buckets: Dict[int, float] = field(default_factory=dict)  # bucket start -> amount

    @property
    def off_hours(self) -> float:
        return self.total - self.office

    def add(self, t0: float, t1: float, amount: float, office: OfficeHours, bucket: int) -> None:
        """`amount` spread evenly over [t0, t1)."""
        if amount == 0:
            return
        self.total += amount
        length = t1 - t0
        if length <= 0:
            return
        self.office += amount * office.office_seconds(t0, t1) / length
        key = int((t0 + t1) / 2 // bucket * bucket)
        self.buckets[key] = self.buckets.get(key, 0.0) + amount

    def merge(self, other: "Split") -> None:
        self.total += other.total
        self.office += other.office
        for key, value in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0.0) + value


def counter_growth(samples: Samples, office: OfficeHours, bucket: int) -> Split:
    """Growth of a counter between consecutive samples; a drop is a reset (counted from zero)."""
    out = Split()
    for (t0, v0), (t1, v1) in zip(samples, samples[1:]):
        out.add(t0, t1, v1 - v0 if v1 >= v0 else v1, office, bucket)
    return out


def gauge_integral(samples: Samples, office: OfficeHours, bucket: int, scale: Optional[Callable] = None) -> Split:
    """Sum of value x seconds, each sample held until the next (at most MAX_HOLD_SECONDS)."""
    out = Split()
    for (t0, v0), (t1, _) in zip(samples, samples[1:]):
        if t1 - t0 <= MAX_HOLD_SECONDS:
            value = v0 * (scale(t0) if scale else 1.0)
            out.add(t0, t1, value * (t1 - t0), office, bucket)
    return out


def value_at(samples: Samples, t: float) -> float:
    """The last sample at or before t (for the board power at a moment), 0 if none."""
    best = 0.0
    for ts, value in samples:
        if ts > t:
            break
        best = value
    return best


def bucket_seconds(span: float) -> int:
    for size in (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400):
        if span / size <= 720:
            return size
    return 86400


WALLET_FLAGS = re.compile(r"(?:^|\s)(?:-u|--user|-O|--userpass|--wallet|-w)(?:=|\s+)(\S+)")
POOL_FLAGS = re.compile(r"(?:^|\s)(?:-o|--url|--pool|-P)(?:=|\s+)(\S+)")


def _flag_values(pattern: "re.Pattern[str]", cmdline: str) -> List[str]:
    return sorted({m.group(1).split(":")[0] if pattern is WALLET_FLAGS else m.group(1)
                   for m in pattern.finditer(cmdline)})


# -- the report ----------------------------------------------------------------------------------


@dataclass
class Settings:
    prometheus: str
    instance: str
    start: float
    end: float
    pid: Optional[int] = None
    office: OfficeHours = field(default_factory=OfficeHours)
    watts_per_core: float = DEFAULT_WATTS_PER_CORE
    tariff: Optional[float] = None  # None: the host's site's tariff in Prometheus, else the fleet's, else built in


QUERIES = {
    "info": "minerwatch_process_suspect_info",
    "cpu": "minerwatch_process_cpu_seconds_total",
    "energy": "minerwatch_process_energy_joules_total",
    "gpu": "minerwatch_gpu_process_utilization_ratio",
    "gpu_energy": "minerwatch_gpu_process_energy_joules_total",
    "gpu_power": "minerwatch_gpu_power_watts",
    "pools": "minerwatch_network_pool_connection_info",
    "bundles": "minerwatch_evidence_bundle_info",
    "bundle_times": "minerwatch_evidence_bundle_timestamp_seconds",
    "alerts": "ALERTS",
}
# The tariff when --energy.tariff is not given: the host's site's (its targets' `site` label),
# else the fleet's, as the rules record them (rules/src/energy.yml), else DEFAULT_TARIFF_KZT_PER_KWH.
SITE_TARIFF = "site:minerwatch_energy_tariff_tenge_per_kwh:config"
FLEET_TARIFF = "fleet:minerwatch_energy_tariff_tenge_per_kwh:config"


def tariff_queries(settings: Settings) -> int:
    """Series kinds read for the tariff: none when given, else the site's (if known) and the fleet's."""
    return 0 if settings.tariff is not None else 2


def fetch(settings: Settings, client: Prometheus, progress_bar=None) -> Dict[str, Dict[Labels, Samples]]:
    """Raw samples of every series the report needs, for the host (and pid)."""
    start, end = settings.start, settings.end
    known = client.series('{__name__=~"minerwatch_.+",' + selector("", instance=settings.instance)[1:], start, end)
    if not known:
        others = [host_text(i, 128) for i in client.instances(start, end)[:5]]
        hint = f" (instances with minerwatch series then: {', '.join(others)})" if others else ""
        raise ReportError(f"--instance: no minerwatch series for instance=\"{host_text(settings.instance, 128)}\" "
                          f"between {iso(start)} and {iso(end)}{hint}")
    step = progress_bar.update if progress_bar is not None else (lambda n: None)
    out = {"site": sorted({s["site"] for s in known if isinstance(s, dict) and isinstance(s.get("site"), str)
                           and s["site"]})}
    for key, name in QUERIES.items():
        labels = {"instance": settings.instance}
        if key == "alerts":
            labels["alertstate"] = "firing"
        elif settings.pid is not None and key != "gpu_power":
            labels["pid"] = str(settings.pid)
        out[key] = client.raw(selector(name, **labels), start, end, progress=lambda: step(1))
    if settings.pid is not None:
        out["alerts"] = {k: v for k, v in out["alerts"].items() if dict(k).get("pid") in (None, str(settings.pid))}
        if not out["cpu"] and not out["info"]:
            raise ReportError(f"--pid: no series for pid {settings.pid} on {host_text(settings.instance, 128)} "
                              f"between {iso(start)} and {iso(end)}")
    if settings.tariff is None:
        site = out["site"][0] if len(out["site"]) == 1 else None  # a host in two sites names none
        out["site_tariff"] = {}
        if site is not None:
            out["site_tariff"] = client.raw(selector(SITE_TARIFF, site=site), start, end, progress=lambda: step(1))
        else:
            step(chunks(start, end))
        out["fleet_tariff"] = client.raw(selector(FLEET_TARIFF), start, end, progress=lambda: step(1))
    return out


def choose_tariff(settings: Settings, data: dict) -> dict:
    """The tariff the costs are counted at, and where it came from: --energy.tariff, the host's
    site's recorded tariff, the fleet's, or the built-in one. Of recorded tariffs, the series
    sampled last in the period (a tariff that changed within it: the one in force at its end)."""
    site = data.get("site") or []
    base = {"site": host_text(site[0], 128) if len(site) == 1 else None, "source": None, "valid_from": None}
    if settings.tariff is not None:
        return {**base, "tenge_per_kwh": settings.tariff, "from": "option"}
    for key, origin in (("site_tariff", "site"), ("fleet_tariff", "fleet")):
        # what --energy.tariff would accept; another figure is no tariff (a broken rule or server)
        series = {k: v for k, v in (data.get(key) or {}).items() if 0 < v[-1][1] <= MAX_TARIFF}
        if series:
            labels, samples = max(series.items(), key=lambda kv: (kv[1][-1][0], dict(kv[0]).get("valid_from", "")))
            d = dict(labels)
            return {**base, "tenge_per_kwh": samples[-1][1], "from": origin,
                    "source": host_text(d["source"], 512) if d.get("source") else None,
                    "valid_from": host_text(d["valid_from"], 64) if d.get("valid_from") else None}
    return {**base, "tenge_per_kwh": DEFAULT_TARIFF_KZT_PER_KWH, "from": "built-in", "source": TARIFF_SOURCE,
            "valid_from": "2025-01-01"}


def evidence_bundles(data: dict) -> List[dict]:
    """Evidence bundles the exporter recorded for the host (and pid) in the period: each by the
    hash of its manifest, with its collection time (the timestamp series' last value)."""
    found: Dict[Tuple[str, str], dict] = {}
    for key in ("bundles", "bundle_times"):
        for labels, samples in (data.get(key) or {}).items():
            d = dict(labels)
            sha = host_text(d.get("manifest_sha256", ""), 64)
            pid = host_text(d.get("pid", ""), 16)
            entry = found.setdefault((pid, sha), {"pid": pid, "manifest_sha256": sha, "collected_at": None,
                                                  "recorded_from": iso(samples[0][0]),
                                                  "recorded_to": iso(samples[-1][0])})
            entry["recorded_from"] = min(entry["recorded_from"], iso(samples[0][0]))
            entry["recorded_to"] = max(entry["recorded_to"], iso(samples[-1][0]))
            if key == "bundle_times" and samples[-1][1] <= LAST_TIME:
                entry["collected_at"] = iso(samples[-1][1])
    return sorted(found.values(), key=lambda b: (b["collected_at"] or b["recorded_from"], b["pid"],
                                                 b["manifest_sha256"]))


def build(settings: Settings, data: Dict[str, Dict[Labels, Samples]], generated: float,
          left_out: Optional[Dict[Tuple[str, Labels], List[int]]] = None) -> dict:
    """The report's document; `left_out` is Prometheus.left_out: samples no total includes."""
    office, bucket = settings.office, bucket_seconds(settings.end - settings.start)
    tariff = choose_tariff(settings, data)
    settings = dataclasses.replace(settings, tariff=tariff["tenge_per_kwh"])
    processes: Dict[str, dict] = {}

    def proc(labels: Labels) -> dict:
        d = dict(labels)
        pid = d.get("pid", "")
        entry = processes.setdefault(pid, {
            # str.isdigit() takes "²" too, which int() refuses: only ASCII digits are a pid
            "pid": int(pid) if re.fullmatch(r"[0-9]{1,10}", pid) else host_text(pid, 32),
            "names": set(), "users": set(), "exes": {}, "cmdlines": set(), "signals": set(), "pools": set(), "wallets": set(), "seen": [],
            "cpu": Split(), "gpu": Split(), "cpu_energy": Split(), "gpu_energy": Split(),
            "cpu_energy_methods": set(), "gpu_energy_measured": False,
        })
        for key, into in (("name", "names"), ("user", "users")):
            if d.get(key):
                entry[into].add(host_text(d[key], 256))
        return entry

    for labels, samples in data["info"].items():
        entry, d = proc(labels), dict(labels)
        entry["suspect"] = True
        entry["seen"] += [samples[0][0], samples[-1][0]]
        if d.get("exe"):
            # The hash is computed in the background: a process's first series may carry none, and
            # the order of series is not their order in time, so a known hash is never overwritten.
            exe, sha = host_text(d["exe"], 4096), host_text(d.get("exe_sha256", ""), 64)
            if sha or exe not in entry["exes"]:
                entry["exes"][exe] = sha
        if d.get("cmdline"):
            cmdline = host_text(d["cmdline"], 4096)
            entry["cmdlines"].add(cmdline)
            entry["wallets"].update(_flag_values(WALLET_FLAGS, cmdline))
            entry["pools"].update(v for v in _flag_values(POOL_FLAGS, cmdline) if "://" in v or ":" in v)
        entry["signals"].update(host_text(s, 64) for s in d.get("signals", "").split(",") if s)
    for labels, samples in data["cpu"].items():
        entry = proc(labels)
        entry["seen"] += [samples[0][0], samples[-1][0]]
        entry["cpu"].merge(counter_growth(samples, office, bucket))
    for labels, samples in data["energy"].items():
        entry = proc(labels)
        entry["cpu_energy"].merge(counter_growth(samples, office, bucket))
        entry["cpu_energy_methods"].add(host_text(dict(labels).get("method", "exporter"), 32))
    power = {(dict(k).get("gpu"), dict(k).get("uuid")): v for k, v in data["gpu_power"].items()}
    for labels, samples in data["gpu"].items():
        entry, d = proc(labels), dict(labels)
        entry["gpu"].merge(gauge_integral(samples, office, bucket))
        board = power.get((d.get("gpu"), d.get("uuid")), [])
        if board:  # the process's share of the board's measured power
            entry.setdefault("gpu_estimate", Split()).merge(
                gauge_integral(samples, office, bucket, scale=lambda t, b=board: value_at(b, t)))
    for labels, samples in data["gpu_energy"].items():
        entry = proc(labels)
        entry["gpu_energy"].merge(counter_growth(samples, office, bucket))
        entry["gpu_energy_measured"] = True
    for labels, samples in data["pools"].items():
        entry, d = proc(labels), dict(labels)
        entry["pools"].add(host_text(d.get("pool") or d.get("remote", ""), 256))
        entry["suspect"] = True

    alerts = []
    for labels, samples in sorted(data["alerts"].items()):
        d = dict(labels)
        alerts.append({"alertname": host_text(d.get("alertname", ""), 128),
                       "severity": host_text(d.get("severity", ""), 32),
                       "pid": host_text(d.get("pid", ""), 16),
                       "firing": [{"from": iso(a), "to": iso(b)} for a, b in intervals([t for t, _ in samples])]})
    alerts.sort(key=lambda a: (a["firing"][0]["from"] if a["firing"] else "", a["alertname"]))

    rows, totals = [], {"cpu": Split(), "gpu": Split(), "kwh": 0.0, "kwh_office": 0.0}
    for pid, e in sorted(processes.items(), key=lambda kv: str(kv[0])):
        if settings.pid is None and not e.get("suspect"):
            continue  # a busy top-K process that was never suspect is not the report's business
        row = _process_row(e, settings)
        rows.append(row)
        totals["cpu"].merge(e["cpu"])
        totals["gpu"].merge(e["gpu"])
        totals["kwh"] += row["energy"]["kwh"]
        totals["kwh_office"] += row["energy"]["kwh_office_hours"]

    return {
        "format": FORMAT,
        "minerwatch_version": __version__,
        "generated_at": iso(generated),
        "prometheus": host_text(settings.prometheus, 256),
        "instance": host_text(settings.instance, 256),
        "pid": settings.pid,
        "from": iso(settings.start),
        "to": iso(settings.end),
        "office_hours": office.describe(),
        "bucket_seconds": bucket,
        "processes": rows,
        "alerts": alerts,
        "evidence_bundles": evidence_bundles(data),
        "tariff": tariff,
        "totals": {
            "cpu_core_hours": totals["cpu"].total / 3600,
            "cpu_core_hours_office": totals["cpu"].office / 3600,
            "cpu_core_hours_off_hours": totals["cpu"].off_hours / 3600,
            "gpu_hours": totals["gpu"].total / 3600,
            "gpu_hours_office": totals["gpu"].office / 3600,
            "gpu_hours_off_hours": totals["gpu"].off_hours / 3600,
            "kwh": totals["kwh"],
            "kwh_office_hours": totals["kwh_office"],
            "kwh_off_hours": totals["kwh"] - totals["kwh_office"],
            "tenge": totals["kwh"] * settings.tariff,
        },
        "charts": {
            "cpu_cores": _series(totals["cpu"], bucket),
            "gpu_share": _series(totals["gpu"], bucket),
        },
        "method": method_text(settings, tariff),
        "left_out": left_out_section(left_out or {}),
    }


def left_out_section(left_out: Dict[Tuple[str, Labels], List[int]]) -> dict:
    """Which series had samples left out of the totals, and how many (the most first)."""
    listed = sorted(left_out.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    not_finite = sum(n for n, _ in left_out.values())
    out_of_range = sum(n for _, n in left_out.values())
    parts = []
    if not_finite:
        parts.append(f"{not_finite} sample{'s' if not_finite != 1 else ''} not finite (NaN, +Inf or -Inf)")
    if out_of_range:
        parts.append(f"{out_of_range} sample{'s' if out_of_range != 1 else ''} negative or above "
                     f"{MAX_SAMPLE_VALUE:g}, which these series cannot hold")
    statement = (f"{' and '.join(parts)}, in {len(left_out)} series, were left out of every total."
                 if parts else "No sample was left out.")
    return {
        "samples": not_finite + out_of_range,
        "not_finite": not_finite,
        "out_of_range": out_of_range,
        "series_count": len(left_out),
        "series": [{"metric": metric, "labels": dict(labels), "not_finite": counts[0], "out_of_range": counts[1]}
                   for (metric, labels), counts in listed[:LEFT_OUT_LISTED]],
        "statement": statement,
    }


def _series(split: Split, bucket: int) -> List[Tuple[float, float]]:
    return [(t, v / bucket) for t, v in sorted(split.buckets.items())]


def _process_row(e: dict, settings: Settings) -> dict:
    cpu, gpu = e["cpu"], e["gpu"]
    if e["cpu_energy"].total:
        cpu_joules, cpu_office = e["cpu_energy"].total, e["cpu_energy"].office
        cpu_method = "exporter's minerwatch_process_energy_joules_total (method " + \
            ",".join(sorted(e["cpu_energy_methods"])) + ")"
        cpu_kind = "exporter"
    else:
        cpu_joules, cpu_office = cpu.total * settings.watts_per_core, cpu.office * settings.watts_per_core
        cpu_method = f"estimated: CPU core-seconds x {settings.watts_per_core:g} W per core"
        cpu_kind = "estimated"
    if e["gpu_energy_measured"]:
        gpu_joules, gpu_office = e["gpu_energy"].total, e["gpu_energy"].office
        gpu_method = "exporter's minerwatch_gpu_process_energy_joules_total (NVML energy counter)"
        gpu_kind = "exporter"
    elif "gpu_estimate" in e:
        gpu_joules, gpu_office = e["gpu_estimate"].total, e["gpu_estimate"].office
        gpu_method = "estimated: the process's share of GPU time x the board's measured power"
        gpu_kind = "estimated"
    else:
        gpu_joules = gpu_office = 0.0
        gpu_method = "no GPU use recorded" if not gpu.total else "GPU use without board power: not counted"
        gpu_kind = "none" if not gpu.total else "no_power"
    kwh = (cpu_joules + gpu_joules) / JOULES_PER_KWH
    kwh_office = (cpu_office + gpu_office) / JOULES_PER_KWH
    seen = e["seen"]
    return {
        "pid": e["pid"],
        "names": sorted(e["names"]),
        "users": sorted(e["users"]),
        "first_seen": iso(min(seen)) if seen else None,
        "last_seen": iso(max(seen)) if seen else None,
        "executables": [{"path": p, "sha256": s} for p, s in sorted(e["exes"].items())],
        "cmdlines": sorted(e["cmdlines"]),
        "signals": sorted(e["signals"]),
        "pools": sorted(p for p in e["pools"] if p),
        "wallets": sorted(e["wallets"]),
        "cpu": {"core_seconds": cpu.total, "core_hours": cpu.total / 3600,
                "core_hours_office": cpu.office / 3600, "core_hours_off_hours": cpu.off_hours / 3600},
        "gpu": {"gpu_hours": gpu.total / 3600, "gpu_hours_office": gpu.office / 3600,
                "gpu_hours_off_hours": gpu.off_hours / 3600},
        "energy": {"kwh": kwh, "kwh_office_hours": kwh_office, "kwh_off_hours": kwh - kwh_office,
                   "cpu_method": cpu_method, "gpu_method": gpu_method,
                   # the same as kinds, for pages in other languages (report_html.py)
                   "cpu_method_kind": cpu_kind, "cpu_energy_methods": sorted(e["cpu_energy_methods"]),
                   "gpu_method_kind": gpu_kind,
                   "tenge": kwh * settings.tariff},
    }


def intervals(times: Iterable[float], gap: float = MAX_HOLD_SECONDS) -> List[Tuple[float, float]]:
    """Runs of sample times no more than `gap` apart: when an alert was firing."""
    out: List[List[float]] = []
    for t in sorted(times):
        if out and t - out[-1][1] <= gap:
            out[-1][1] = t
        else:
            out.append([t, t])
    return [(a, b) for a, b in out]


def tariff_text(tariff: dict) -> str:
    origin = {"option": "given with --energy.tariff", "site": f"the tariff of site {tariff['site']} in Prometheus",
              "fleet": "the fleet's tariff in Prometheus", "built-in": "built-in default"}[tariff["from"]]
    details = [x for x in (tariff.get("source"), tariff.get("valid_from") and f"valid from {tariff['valid_from']}")
               if x]
    return origin + (": " + ", ".join(details) if details else "")


def method_text(settings: Settings, tariff: dict) -> dict:
    return {
        "measured": [
            "CPU time: growth of minerwatch_process_cpu_seconds_total between consecutive samples "
            "(a drop is a counter reset). CPU used before the first or after the last sample in "
            "the period is not counted, so the figure errs low.",
            "GPU time: minerwatch_gpu_process_utilization_ratio (share of the GPU's SM time), each "
            f"sample held until the next, at most {MAX_HOLD_SECONDS:g} s.",
            "Office and off hours: each interval between samples is split by the share of it "
            f"inside office hours ({settings.office.describe()}).",
            "Samples that are not finite numbers (NaN, +Inf, -Inf) or that these series cannot hold "
            f"(negative, above {MAX_SAMPLE_VALUE:g}) are left out of every total; the report lists "
            "them by series.",
        ],
        "estimated": [
            f"CPU energy, where the exporter has no energy counter: core-seconds x "
            f"{settings.watts_per_core:g} W per busy core (default: a 65 W office desktop CPU such "
            "as the Core i5-12400 has 6 cores, 10.8 W each, rounded down).",
            "GPU energy, where the exporter has no per-process energy counter: the process's share "
            "of GPU time x the board power the GPU reported (minerwatch_gpu_power_watts).",
            f"Cost: kWh x {settings.tariff:g} tenge per kWh ({tariff_text(tariff)}).",
        ],
        "watts_per_core": settings.watts_per_core,
        "tariff_kzt_per_kwh": settings.tariff,
    }


# -- command line --------------------------------------------------------------------------------


def _days(text: str) -> Tuple[int, ...]:
    try:
        days = tuple(sorted({int(d) for d in text.split(",") if d.strip()}))
    except ValueError:
        days = ()
    if not days or not all(0 <= d <= 6 for d in days):
        raise click.BadParameter("must be day numbers 0-6 (0 = Sunday), comma-separated", param_hint="'--office.days'")
    return days


@click.command()
@click.option("--prometheus", "prometheus_url", required=True, help="Prometheus base URL, e.g. http://prom:9090.")
@click.option("--instance", required=True, help="The host: its `instance` label, e.g. pc-0417:9789.")
@click.option("--pid", type=click.IntRange(min=1), help="Only this process (default: every suspect).")
@click.option("--from", "start", required=True, help="Start: RFC 3339, a date (office midnight), epoch, now-14d.")
@click.option("--to", "end", default="now", show_default=True, help="End, in the same forms.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for report.html and report.json (created if missing).")
# Ranges keep every total finite: the exporter's own energy.cpu_watts_per_core range, and a
# tariff over a thousand times any published one.
@click.option("--energy.watts-per-core", "watts", type=FiniteFloatRange(0, 1000), default=DEFAULT_WATTS_PER_CORE,
              show_default=True, help="Watts one busy CPU core draws, for the CPU energy estimate.")
@click.option("--energy.tariff", "tariff", type=FiniteFloatRange(0, MAX_TARIFF), default=None,
              help="Tenge per kWh. Default: the tariff of the host's site as the rules record it in Prometheus "
              f"({SITE_TARIFF}), else the fleet's ({FLEET_TARIFF}), else {DEFAULT_TARIFF_KZT_PER_KWH:g}.")
@click.option("--timeout", "timeout", type=FiniteFloatRange(1, 86400), default=DEFAULT_TIMEOUT_SECONDS,
              show_default=True, help="Seconds all the queries to Prometheus may take together; then the "
              "report gives up (raise it for periods of months).")
@click.option("--office.utc-offset-hours", "offset", type=FiniteFloatRange(-12, 14), default=5.0, show_default=True,
              help="Office time zone as hours from UTC (rules/config/minerwatch.yml officeHours.utcOffsetHours).")
@click.option("--office.hours", "hours", default="09:00-18:00", show_default=True, help="Office hours, local time.")
@click.option("--office.days", "days", default="1,2,3,4,5", show_default=True,
              help="Office days, 0 = Sunday ... 6 = Saturday.")
@click.option("--lang", type=click.Choice(LANGS), default=None,
              help="Language of the page: kk (Kazakh), ru (Russian) or en. Default: the locale "
              "(LC_ALL, LC_MESSAGES, LANG starting kk or ru), else en. report.json stays in English.")
@click.option("--pdf", is_flag=True, help="Also write report.pdf (headless Chromium's print), with page numbers, "
              "report.html's sha256 and the generation time on every page.")
def report(prometheus_url, instance, pid, start, end, out_dir, watts, tariff, timeout, offset, hours, days, lang,
           pdf):
    """Write an HTML report (and its JSON) of what a miner on one host cost, from Prometheus."""
    from minerwatch.investigation import report_html  # here: `--help` never loads the page

    lang = resolve_lang(lang)
    chromium = None
    if pdf:
        if os.name == "nt":
            raise click.ClickException("--pdf runs on Linux; on Windows print report.html from a browser")
        from minerwatch.investigation import report_pdf

        chromium = report_pdf.find_chromium()
        if chromium is None:
            raise click.ClickException("--pdf needs Chromium (Debian: apt-get install chromium)")

    try:
        import matplotlib  # noqa: F401  (the charts; not needed by the exporter on every desk)
    except ImportError:
        raise click.ClickException("the report's charts need matplotlib: pip install 'minerwatch[report]'")

    try:
        office_start, office_end = parse_office_hours(hours)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--office.hours'")
    office = OfficeHours(offset, office_start, office_end, _days(days))
    now = time.time()
    times = {}
    for flag, text in (("--from", start), ("--to", end)):
        try:
            times[flag] = parse_time(text, now, offset)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=f"'{flag}'")
    if times["--from"] >= times["--to"]:
        raise click.BadParameter(f"empty range: {iso(times['--from'])} is not before {iso(times['--to'])}",
                                 param_hint="'--from'/'--to'")
    settings = Settings(prometheus_url, instance, times["--from"], times["--to"], pid, office, watts, tariff)
    try:
        client = Prometheus(prometheus_url, timeout)
        total = chunks(settings.start, settings.end) * (len(QUERIES) + tariff_queries(settings))
        if sys.stderr.isatty():  # progress for a person; nothing in logs or pipes
            with click.progressbar(length=total, label="querying Prometheus", file=sys.stderr) as bar:
                data = fetch(settings, client, bar)
        else:
            data = fetch(settings, client)
    except ReportError as exc:
        raise click.UsageError(str(exc))
    document = build(settings, data, now, client.left_out)
    os.makedirs(out_dir, exist_ok=True)
    from minerwatch.investigation.evidence import _write_atomic  # here: only once there is a report

    # allow_nan=False: every figure is finite (report_prometheus.py leaves out what is not), so
    # this never fails, and a reader other than Python's never meets NaN.
    data_bytes = json.dumps(document, indent=2, allow_nan=False).encode() + b"\n"
    _write_atomic(os.path.join(out_dir, "report.json"), [data_bytes])
    # The page names report.json's hash; the PDF names the page's: one chain a court can check
    # with sha256sum.
    page = report_html.render(document, office, lang, json_sha256=hashlib.sha256(data_bytes).hexdigest()).encode()
    page_sha256 = hashlib.sha256(page).hexdigest()
    html_path = os.path.join(out_dir, "report.html")
    _write_atomic(html_path, [page])
    t = document["totals"]
    click.echo(f"{html_path}: {len(document['processes'])} process(es), "
               f"{t['cpu_core_hours']:.2f} CPU core-hours, {t['gpu_hours']:.2f} GPU-hours, "
               f"{t['kwh']:.2f} kWh, {t['tenge']:.0f} tenge; sha256 {page_sha256}")
    if chromium is not None:
        pdf_path = os.path.join(out_dir, "report.pdf")
        try:
            pdf_bytes = report_pdf.print_pdf(chromium, html_path, report_pdf.footer(lang, page_sha256, now))
        except report_pdf.PdfError as exc:
            raise click.ClickException(f"--pdf: {exc}")
        _write_atomic(pdf_path, [pdf_bytes])
        click.echo(f"{pdf_path}: {len(pdf_bytes)} bytes, printed from report.html (sha256 {page_sha256})")
