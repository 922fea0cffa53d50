"""Metric families for minerwatch's collectors, and the registry that gathers them on a scrape.

The objects have the shape of client_python's (prometheus_client.metrics_core): a family has
`name`, `documentation`, `type`, `unit` and `samples`, each sample is a `Sample` with the same
six fields. So prometheus_client's registries and encoders (which the tests use as the
reference) accept these families, and minerwatch.serving.exposition encodes theirs. minerwatch does not
import prometheus_client when it runs: its exposition module pulls in ssl, http.server, urllib
and wsgiref, several MiB of a process that should stay small.

Names are checked against Prometheus's classic character set: a bad metric or label name is a
bug in a collector, and raises ValueError where the family is made.
"""

from __future__ import annotations

import re
import threading
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence

METRIC_TYPES = frozenset(("counter", "gauge", "summary", "histogram", "gaugehistogram", "unknown", "info",
                          "stateset"))
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class Sample(NamedTuple):
    """One time series value; the fields and their order are client_python's."""

    name: str
    labels: Dict[str, str]
    value: float
    timestamp: Optional[float] = None
    exemplar: Optional[object] = None
    native_histogram: Optional[object] = None


def check_metric_name(name: str) -> str:
    if not _METRIC_NAME.match(name):
        raise ValueError(f"invalid metric name {name!r}")
    return name


# Label name tuples already checked: families are made afresh on every scrape, with the same labels.
_checked_labels: set = set()


def check_label_names(names: Sequence[str]) -> tuple:
    names = tuple(names)
    if names not in _checked_labels:
        for label in names:
            if not isinstance(label, str) or not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"label names repeated: {names}")
        if len(_checked_labels) < 10_000:
            _checked_labels.add(names)
    return names


class Metric:
    """A metric family: name, help text, type, unit and its samples."""

    def __init__(self, name: str, documentation: str, typ: str, unit: str = ""):
        if unit and not name.endswith("_" + unit):
            name += "_" + unit
        self.name = check_metric_name(name)
        self.documentation = documentation
        self.unit = unit
        if typ == "untyped":
            typ = "unknown"
        if typ not in METRIC_TYPES:
            raise ValueError(f"invalid metric type {typ!r}")
        self.type = typ
        self.samples: List[Sample] = []

    def add_sample(self, name: str, labels: Dict[str, str], value: float, timestamp: Optional[float] = None,
                   exemplar=None, native_histogram=None) -> None:
        self.samples.append(Sample(name, labels, value, timestamp, exemplar, native_histogram))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Metric) and self.name == other.name and self.documentation == other.documentation
                and self.type == other.type and self.unit == other.unit and self.samples == other.samples)

    def __repr__(self) -> str:
        return f"Metric({self.name}, {self.documentation}, {self.type}, {self.unit}, {self.samples})"


class _LabelledFamily(Metric):
    """A family built either with one unlabelled value or with label names and add_metric()."""

    def __init__(self, name: str, documentation: str, typ: str, value, labels, unit: str):
        super().__init__(name, documentation, typ, unit)
        if labels is not None and value is not None:
            raise ValueError("give a value or label names, not both")
        self._labelnames = check_label_names(labels or ())


class GaugeMetricFamily(_LabelledFamily):
    def __init__(self, name: str, documentation: str, value: Optional[float] = None,
                 labels: Optional[Sequence[str]] = None, unit: str = ""):
        super().__init__(name, documentation, "gauge", value, labels, unit)
        if value is not None:
            self.add_metric((), value)

    def add_metric(self, labels: Sequence[str], value: float, timestamp: Optional[float] = None) -> None:
        self.samples.append(Sample(self.name, dict(zip(self._labelnames, labels)), value, timestamp))


class CounterMetricFamily(_LabelledFamily):
    """A counter: the family is named without `_total` (given with or without it), its samples
    with it; `created` adds a `_created` sample (when the counter started from zero)."""

    def __init__(self, name: str, documentation: str, value: Optional[float] = None,
                 labels: Optional[Sequence[str]] = None, created: Optional[float] = None, unit: str = "",
                 exemplar=None):
        if name.endswith("_total"):
            name = name[:-6]
        super().__init__(name, documentation, "counter", value, labels, unit)
        if value is not None:
            self.add_metric((), value, created, exemplar=exemplar)

    def add_metric(self, labels: Sequence[str], value: float, created: Optional[float] = None,
                   timestamp: Optional[float] = None, exemplar=None) -> None:
        labelled = dict(zip(self._labelnames, labels))
        self.samples.append(Sample(self.name + "_total", labelled, value, timestamp, exemplar))
        if created is not None:
            self.samples.append(Sample(self.name + "_created", dict(labelled), created, timestamp))


class Registry:
    """The collectors a scrape asks, in the order they were registered.

    A collector is anything with `collect()` yielding families. One with `describe()` is checked
    at registration for names another collector already exposes (two collectors writing one
    family is a bug); `describe()` must not do a scrape's work."""

    _SUFFIXES = {"counter": ("_total", "_created"), "info": ("_info",),
                 "summary": ("_sum", "_count", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                 "gaugehistogram": ("_bucket", "_gsum", "_gcount")}

    def __init__(self):
        self._lock = threading.Lock()
        self._names: Dict[object, List[str]] = {}  # collector -> the names it described

    def register(self, collector) -> None:
        names = self._described(collector)
        with self._lock:
            if collector in self._names:
                raise ValueError(f"collector registered twice: {collector!r}")
            taken = {name for known in self._names.values() for name in known}.intersection(names)
            if taken:
                raise ValueError(f"metric names exposed twice: {sorted(taken)}")
            self._names[collector] = names

    def unregister(self, collector) -> None:
        with self._lock:
            del self._names[collector]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            collectors = list(self._names)
        for collector in collectors:
            yield from collector.collect()

    def _described(self, collector) -> List[str]:
        describe = getattr(collector, "describe", None)
        if describe is None:
            return []
        names = []
        for family in describe():
            names.append(family.name)
            names.extend(family.name + suffix for suffix in self._SUFFIXES.get(family.type, ()))
        return names
