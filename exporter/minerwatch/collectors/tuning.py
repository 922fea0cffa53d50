"""Tuning collector: the state of what miners tune, hugepages and MSR writes (Linux and Windows).

XMRig reserves 2 MiB and 1 GiB hugepages for RandomX and writes model-specific registers through
the `msr` module to disable prefetchers; a desktop seldom has either. On Windows the same tuning
is a WinRing0-style driver service (MSR writes) and SeLockMemoryPrivilege (large pages) held by
an account that is no database service (see minerwatch/windows/drivers.py and privileges.py).

Sample output (Linux):
    minerwatch_tuning_hugepages_reserved_pages{page_size_bytes="2097152"} 1280
    minerwatch_tuning_hugepages_reserved_bytes 2.68435456e+09
    minerwatch_tuning_msr_module_loaded 1
    minerwatch_tuning_msr_writes_allowed 1
Sample output (Windows):
    minerwatch_tuning_msr_driver_services{driver="winring0",state="running"} 1
    minerwatch_tuning_msr_driver_service_info{driver="winring0",path="\\??\\C:\\Users\\bob\\WinRing0x64.sys",service="WinRing0_1_2_0",state="running"} 1
    minerwatch_tuning_lock_memory_privilege_holders{kind="user"} 1
    minerwatch_tuning_lock_memory_privilege_holder_info{account="MINISTRY\\bob",kind="user",sid="S-1-5-21-...-1107"} 1
    minerwatch_tuning_source_up{source="msr_drivers"} 1
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from typing import Dict, Iterable, Optional

from minerwatch import windows
from minerwatch.collectors.base import Collector, Context, register
from minerwatch.serving.metrics import GaugeMetricFamily, Metric
from minerwatch.windows.drivers import FAMILIES, MsrDriverReader
from minerwatch.windows.privileges import KINDS as HOLDER_KINDS, LockMemoryReader

log = logging.getLogger("minerwatch.tuning")
_AUTO = object()
MAX_INFO = 10  # per-service and per-account series: evidence, capped whatever the host holds
# most suspect first, so the cap keeps what an investigator needs
_HOLDER_ORDER = {kind: i for i, kind in enumerate(("user", "broad_group", "group", "unknown", "administrators",
                                                   "service", "system"))}

_HUGEPAGE_DIR = re.compile(r"^hugepages-(\d+)kB$")


def read_hugepages(sysfs: str) -> Optional[Dict[int, int]]:
    """Reserved hugepages by page size in bytes; None where the kernel has no hugepages."""
    base = os.path.join(sysfs, "kernel/mm/hugepages")
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return None
    pages = {}
    for name in names:
        m = _HUGEPAGE_DIR.match(name)
        if m:
            with open(os.path.join(base, name, "nr_hugepages")) as f:
                pages[int(m.group(1)) * 1024] = int(f.read().strip())
    return pages


def read_msr(sysfs: str) -> Optional[tuple]:
    """(module loaded, writes allowed); None off Linux."""
    if not os.path.isdir(os.path.join(sysfs, "module")):
        return None
    module = os.path.join(sysfs, "module/msr")
    if not os.path.isdir(module):
        return (0, 0)
    try:
        with open(os.path.join(module, "parameters/allow_writes")) as f:
            mode = f.read().strip()
    except FileNotFoundError:
        return (1, 1)  # kernels before 5.9 have no switch: writes are allowed
    # "default" still allows writes (the kernel only logs them); only "off" refuses.
    return (1, 0 if mode == "off" else 1)


@register
class TuningCollector(Collector):
    name = "tuning"
    help = "Hugepages, MSR access and large-page rights, the tuning XMRig applies (Linux sysfs, Windows SCM and LSA)."

    def __init__(self, context: Context, win32=_AUTO):
        super().__init__(context)
        if win32 is _AUTO:
            win32 = windows.load()
        self.drivers = MsrDriverReader(win32.win32service) if win32 else None
        self.lock_memory = LockMemoryReader(win32.win32security) if win32 else None
        self._reads = windows.SourceReads(log)

    def collect(self) -> Iterable[Metric]:
        yield from self._linux()
        if self.drivers is not None:
            yield from self._windows()

    def _read(self, source: str, reader):
        """reader.read(), or None when it failed (logged once per distinct problem)."""
        return self._reads.read(source, reader)[1]

    def _windows(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("minerwatch_tuning_source_up",
                               "1 if a Windows source of tuning facts was read, 0 if it failed (see the log).",
                               labels=["source"])
        drivers = self._read("msr_drivers", self.drivers)
        up.add_metric(["msr_drivers"], 0 if drivers is None else 1)
        if drivers is not None:
            counts = Counter((d.family, "running" if d.running else "stopped") for d in drivers)
            services = GaugeMetricFamily(
                "minerwatch_tuning_msr_driver_services",
                "Kernel driver services that let programs write model-specific registers, by driver and state.",
                labels=["driver", "state"],
            )
            for family in FAMILIES:
                for state in ("running", "stopped"):
                    services.add_metric([family, state], counts.get((family, state), 0))
            yield services
            info = GaugeMetricFamily(
                "minerwatch_tuning_msr_driver_service_info",
                f"One such driver service: its name and image path (running ones first, at most {MAX_INFO}).",
                labels=["service", "driver", "path", "state"],
            )
            for d in sorted(drivers, key=lambda d: (not d.running, d.name))[:MAX_INFO]:
                info.add_metric([d.name, d.family, d.path, "running" if d.running else "stopped"], 1)
            yield info

        holders = self._read("lock_memory_privilege", self.lock_memory)
        up.add_metric(["lock_memory_privilege"], 0 if holders is None else 1)
        if holders is not None:
            counts = Counter(h.kind for h in holders)
            per_kind = GaugeMetricFamily(
                "minerwatch_tuning_lock_memory_privilege_holders",
                "Accounts and groups holding SeLockMemoryPrivilege (large pages), by kind of holder.",
                labels=["kind"],
            )
            for kind in HOLDER_KINDS:
                per_kind.add_metric([kind], counts.get(kind, 0))
            yield per_kind
            info = GaugeMetricFamily(
                "minerwatch_tuning_lock_memory_privilege_holder_info",
                f"One holder of SeLockMemoryPrivilege (users and broad groups first, at most {MAX_INFO}).",
                labels=["account", "sid", "kind"],
            )
            for h in sorted(holders, key=lambda h: (_HOLDER_ORDER[h.kind], h.account, h.sid))[:MAX_INFO]:
                info.add_metric([h.account, h.sid, h.kind], 1)
            yield info
        yield up

    def _linux(self) -> Iterable[Metric]:
        sysfs = self.context.sysfs
        pages = read_hugepages(sysfs)
        if pages is not None:
            per_size = GaugeMetricFamily(
                "minerwatch_tuning_hugepages_reserved_pages",
                "Hugepages reserved, by page size.",
                labels=["page_size_bytes"],
            )
            for size, count in sorted(pages.items()):
                per_size.add_metric([str(size)], count)
            yield per_size
            yield GaugeMetricFamily(
                "minerwatch_tuning_hugepages_reserved_bytes",
                "Memory reserved as hugepages, all sizes together.",
                value=sum(size * count for size, count in pages.items()),
            )
        msr = read_msr(sysfs)
        if msr is not None:
            yield GaugeMetricFamily(
                "minerwatch_tuning_msr_module_loaded", "1 if the msr kernel module is loaded.", value=msr[0]
            )
            yield GaugeMetricFamily(
                "minerwatch_tuning_msr_writes_allowed",
                "1 if the msr module lets user space write model-specific registers.",
                value=msr[1],
            )
