"""Tuning collector: the state of what miners tune, hugepages and MSR writes (Linux).

XMRig reserves 2 MiB and 1 GiB hugepages for RandomX and writes model-specific registers through
the `msr` module to disable prefetchers; a desktop seldom has either.

Sample output:
    minerwatch_tuning_hugepages_reserved_pages{page_size_bytes="2097152"} 1280
    minerwatch_tuning_hugepages_reserved_bytes 2.68435456e+09
    minerwatch_tuning_msr_module_loaded 1
    minerwatch_tuning_msr_writes_allowed 1
"""

from __future__ import annotations

import os
import re
from typing import Dict, Iterable, Optional

from prometheus_client.core import GaugeMetricFamily, Metric

from minerwatch.registry import Collector, register

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
    help = "Reserved hugepages and MSR write access, the tuning XMRig applies."

    def collect(self) -> Iterable[Metric]:
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
