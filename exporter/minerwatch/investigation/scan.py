"""`minerwatch scan`: the suspects of one pass, as a table for on-call staff or as JSON.

Names, paths and command lines were made safe where they were read (proc_reader); the table
passes every host-derived cell through `host_text` once more, because a raw newline or terminal
escape here would forge a row on the screen of the person investigating.

Executables are scanned in the background (exe_worker.py), as in `serve`; a person waits for the
result, so after its two passes `scan` waits for the files they queued (at full speed, at most
DRAIN_SECONDS) and makes a third pass that merges what landed: the report is as complete as the
time allows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import List

from minerwatch.antivirus import describe_exclusions
from minerwatch.detection.process_table import ProcessView
from minerwatch.collectors.base import Context
from minerwatch.text import host_text as _safe

DRAIN_SECONDS = 60.0  # a 500 MiB file takes about 2 s: this is for many files on a slow disk


@dataclass
class Report:
    processes: int
    suspects: List[ProcessView]
    top: List[ProcessView]
    exclusions: List[str] = field(default_factory=list)  # antivirus exclusions covering suspects


def run(context: Context, interval: float) -> Report:
    table = context.processes
    table.scan()
    if interval:
        time.sleep(interval)  # a second pass turns lifetime CPU averages into recent use
    table.scan()
    table.exe_scans.drain(DRAIN_SECONDS)
    snapshot = table.scan()  # merges the scans that landed (and decides allowlist verdicts they settle)
    for view in snapshot.suspects:
        table.exe_sha256(view.facts)  # evidence: hash what runs now, before it is gone
    for view in snapshot.suspects + snapshot.top:
        table.cmdline(view.facts)
    return Report(len(snapshot.processes), snapshot.suspects, snapshot.top, describe_exclusions(context))


def _record(view: ProcessView) -> dict:
    return {
        "pid": view.pid,
        "user": view.user,
        "name": view.name,
        "exe": view.facts.exe,
        "exe_sha256": view.facts.exe_sha256 or "",
        "cmdline": view.facts.cmdline,
        "cpu_cores": round(view.cpu_cores, 3),
        "start_time": view.stat.start_time,
        "suspect": view.suspect,
        "allowlisted": view.allowlisted,
        "signals": dict(sorted(view.signals.items())),
    }


def render_json(report: Report) -> str:
    return json.dumps(
        {
            "processes": report.processes,
            "suspects": [_record(v) for v in report.suspects],
            "top_cpu": [_record(v) for v in report.top],
            "antivirus_exclusions": report.exclusions,
        },
        indent=2,
    )


def render_table(report: Report) -> str:
    lines = []
    if not report.suspects:
        lines.append(f"No suspect process among {report.processes}.")
    else:
        lines.append(f"{len(report.suspects)} suspect process(es) among {report.processes}:")
        lines.append("")
        lines.append(f"{'PID':>7}  {'USER':<12} {'NAME':<16} {'CPU':>6}  SIGNALS")
        for view in report.suspects:
            lines.append(
                f"{view.pid:>7}  {_safe(view.user)[:12]:<12} {_safe(view.name)[:16]:<16} {view.cpu_cores:>6.2f}  "
                + ",".join(sorted(view.signals))
            )
            lines.append(f"         exe: {_safe(view.facts.exe) or '?'}  sha256: {view.facts.exe_sha256 or '?'}")
            lines.append(f"         cmdline: {_safe(view.facts.cmdline)}")
            for signal, reason in sorted(view.signals.items()):
                lines.append(f"         why: {signal}: {_safe(reason)}")
    if report.exclusions:
        lines.append("")
        lines.append("Antivirus exclusions covering suspects:")
        lines.extend(f"  {_safe(line)}" for line in report.exclusions)
    if report.top:
        lines.append("")
        lines.append("Busiest processes (CPU in cores):")
        for view in report.top:
            mark = " (suspect)" if view.suspect else " (allowlisted)" if view.allowlisted else ""
            lines.append(f"{view.pid:>7}  {_safe(view.user)[:12]:<12} {_safe(view.name)[:16]:<16} {view.cpu_cores:>6.2f}{mark}")
    return "\n".join(lines)
