"""Antivirus collector: the exclusions of Defender, Defender for Endpoint and ClamAV, and changes.

Processes under an exclusion are flagged by the process table (signal `av_excluded`), through
the watcher this collector adds to the table's signal sources; the process collector exports them.
A product that is not installed exports nothing; a source that cannot be read says source_up 0
and its last good exclusions are still counted.

Sample output:
    minerwatch_antivirus_exclusions{kind="path",product="defender"} 3
    minerwatch_antivirus_exclusion_changes_total{product="defender"} 1
    minerwatch_antivirus_exclusion_last_change_timestamp_seconds{product="defender"} 1.7e+09
    minerwatch_antivirus_source_up{product="defender",source="HKLM\\SOFTWARE\\...\\Exclusions"} 0
    minerwatch_antivirus_local_exclusions_merged{product="mdatp",source="/etc/opt/.../mdatp_managed.json"} 1
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable, Iterable, Mapping, Optional

from minerwatch.antivirus.sources import FORMATS, build_sources, registry_module
from minerwatch.antivirus.watcher import ExclusionWatcher
from minerwatch.collectors.base import Collector, Context, register
from minerwatch.serving.metrics import CounterMetricFamily, GaugeMetricFamily, Metric

_AUTO = object()
# product -> every kind it can hold, so a kind that drops to none reads 0 rather than vanishing
PRODUCT_KINDS = {product: kinds for product, kinds, _ in FORMATS.values()}


@register
class AntivirusCollector(Collector):
    name = "antivirus"
    help = "Antivirus exclusions (Defender, Defender for Endpoint, ClamAV); flags processes under one."

    def __init__(
        self,
        context: Context,
        root: Optional[str] = None,
        winreg=_AUTO,
        environ: Optional[Mapping[str, str]] = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        super().__init__(context)
        settings = context.config.antivirus
        if winreg is _AUTO:
            winreg = registry_module()
        # The well-known files are read under --path.rootfs; paths the config names, as written.
        sources = build_sources(settings, root=context.rootfs if root is None else root, winreg=winreg)
        self.watcher = ExclusionWatcher(sources, settings.interval, environ, clock, wall_clock)
        if context.processes is not None:  # one classification: the process table asks the watcher
            context.processes.add_signal_source(self.watcher)

    def collect(self) -> Iterable[Metric]:
        self.watcher.refresh()  # at most once per interval, whoever asks first
        status = self.watcher.status()

        exclusions = GaugeMetricFamily(
            "minerwatch_antivirus_exclusions",
            "Antivirus exclusions in force (last good read of each source), by product and kind.",
            labels=["product", "kind"],
        )
        per_product = {}
        for state in status.sources:
            if state.present:
                per_product.setdefault(state.product, set()).update(state.reading.exclusions)
        for product in sorted(per_product):
            counts = Counter(e.kind for e in per_product[product])
            for kind in PRODUCT_KINDS[product]:
                exclusions.add_metric([product, kind], counts.get(kind, 0))
        yield exclusions

        changes = CounterMetricFamily(
            "minerwatch_antivirus_exclusion_changes",
            "Times the exclusion set of a product changed since the exporter started (the first read is no change).",
            labels=["product"],
        )
        last_change = GaugeMetricFamily(
            "minerwatch_antivirus_exclusion_last_change_timestamp_seconds",
            "When the exporter last saw the exclusion set of a product change; 0 if not since it started.",
            labels=["product"],
        )
        for product in sorted(status.seen_products):
            changes.add_metric([product], status.changes.get(product, 0))
            last_change.add_metric([product], status.last_change.get(product, 0.0))
        yield changes
        yield last_change

        up = GaugeMetricFamily(
            "minerwatch_antivirus_source_up",
            "1 if an exclusion source was read, 0 if it is there but unreadable or malformed (see the log).",
            labels=["product", "source"],
        )
        merged = GaugeMetricFamily(
            "minerwatch_antivirus_local_exclusions_merged",
            "1 if exclusions added locally (not in the managed file, so not counted here) also apply.",
            labels=["product", "source"],
        )
        for state in status.sources:
            if state.present:
                up.add_metric([state.product, state.name], 1 if state.ok else 0)
                if state.reading.local_merged is not None:
                    merged.add_metric([state.product, state.name], 1 if state.reading.local_merged else 0)
        yield up
        yield merged
