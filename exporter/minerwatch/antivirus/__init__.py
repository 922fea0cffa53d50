"""Antivirus exclusions: Defender (Windows registry), Defender for Endpoint (Linux), ClamAV.

A miner's owner who can touch the antivirus adds the miner to its exclusions so it is not
blocked; an exclusion that appears, and a busy process under one, are strong signals. One module
per product parses its format into `Exclusion`s (model.py); sources.py says where to read;
watcher.py keeps the set fresh and is the process table's `av_excluded` signal source;
vendors.py knows the exclusions 1C, SQL Server and Veeam recommend for their own programs
(data/vendor_exclusions.txt), which flag nothing for those programs.
"""

from __future__ import annotations

from typing import List

from minerwatch.antivirus.model import Exclusion, Reading, SourceError
from minerwatch.antivirus.watcher import SIGNAL, ExclusionWatcher, find_watcher

__all__ = ["Exclusion", "ExclusionWatcher", "Reading", "SIGNAL", "SourceError", "describe_exclusions"]


def describe_exclusions(context) -> List[str]:
    """For `minerwatch scan`: the exclusions that cover each suspect of the last process scan,
    and the exclusion sources that could not be read (so "none" is not mistaken for "unknown")."""
    table = context.processes
    watcher = find_watcher(table)
    if watcher is None:
        return []
    lines = []
    snapshot = table.last or table.scan()
    for view in snapshot.suspects:
        for exclusion, what in watcher.matches(view.facts):
            where = f" [{exclusion.where}]" if exclusion.where else ""
            vendor = watcher.vendor_of(exclusion, view.facts)
            own = f" (recommended by {vendor} for this program of theirs: no signal)" if vendor else ""
            lines.append(f"pid {view.pid} ({view.name}): {exclusion.describe()} covers its {what}{where}{own}")
    for state in watcher.status().sources:
        if not state.ok:
            lines.append(f"could not read {state.product} exclusions: {state.error}")
    return lines
