"""Evidence collector: the bundles `minerwatch evidence` recorded on this host lately, so that
Prometheus keeps each manifest's hash off the host (investigation/custody.py writes the records).

Sample output:
    minerwatch_evidence_bundle_info{manifest_sha256="9f2c...",pid="4242"} 1
    minerwatch_evidence_bundle_timestamp_seconds{manifest_sha256="9f2c...",pid="4242"} 1.796662917e+09
    minerwatch_evidence_records_invalid 0

At most custody.RECENT_COUNT bundles, none older than custody.RECENT_SECONDS: the series end a
week after collection, when Prometheus has long stored them. The record file is the host's: read
bounded, bad lines skipped and counted, and no file at all is the usual quiet case (no samples).
"""

from __future__ import annotations

import os
import time
from typing import Dict, Iterable, List, Tuple

from minerwatch.collectors.base import Collector, register
from minerwatch.investigation import custody
from minerwatch.serving.metrics import GaugeMetricFamily, Metric


@register
class EvidenceCollector(Collector):
    name = "evidence"
    help = "Evidence bundles recently collected on this host, with their manifest sha256 (from --state.dir)."

    def __init__(self, context):
        super().__init__(context)
        self.path = custody.records_path(getattr(context, "state_dir", "") or custody.default_state_dir(context.rootfs))
        # Parsed records per file, kept while the file is unchanged (identity, size, mtime).
        self._cache: Dict[str, Tuple[tuple, List[custody.Record], int]] = {}

    def _read(self, path: str) -> Tuple[List[custody.Record], int]:
        try:
            info = os.lstat(path)
        except OSError:
            self._cache.pop(path, None)
            return [], 0
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        try:
            records, invalid = custody.read(path)
        except OSError:  # not a regular file, or gone in between: nothing recorded to show
            records, invalid = [], 0
        self._cache[path] = (key, records, invalid)
        return records, invalid

    def collect(self) -> Iterable[Metric]:
        records, invalid = [], 0
        for path in (self.path + ".1", self.path):  # the rotated half first
            got, bad = self._read(path)
            records += got
            invalid += bad
        now = time.time()
        info = GaugeMetricFamily(
            "minerwatch_evidence_bundle_info",
            "1 for each evidence bundle recently collected on this host, labelled by the sha256 of its "
            "MANIFEST.json as recorded at collection.",
            labels=["pid", "manifest_sha256"],
        )
        stamp = GaugeMetricFamily(
            "minerwatch_evidence_bundle_timestamp_seconds",
            "When each evidence bundle recently collected on this host was collected.",
            labels=["pid", "manifest_sha256"],
        )
        for record in custody.recent(records, now):
            labels = [str(record.pid), record.manifest_sha256]
            info.add_metric(labels, 1)
            stamp.add_metric(labels, record.time_seconds)
        yield info
        yield stamp
        yield GaugeMetricFamily(
            "minerwatch_evidence_records_invalid",
            "Lines of the evidence record file (and its rotated half) that are not valid records, skipped.",
            value=invalid,
        )
