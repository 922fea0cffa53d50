"""minerwatch's own metric families and exposition (minerwatch.serving.metrics, .exposition,
.self_metrics) against client_python, the reference: the same objects, the same bytes, the same
negotiation; the exporter itself never imports prometheus_client (issue 17: its exposition module
pulls in ssl, http.server, urllib and wsgiref)."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import metrics_core as reference
from prometheus_client.exposition import choose_encoder as reference_choose_encoder
from prometheus_client.openmetrics import exposition as reference_openmetrics

from minerwatch.serving import exposition, metrics, self_metrics
from minerwatch.serving.exposition import choose_encoder, encode_openmetrics, encode_text
from support import golden
from support.processes import wait_for
from support.promtool import check_metrics
from support.servers import Prometheus

SCHEMES = ("underscores", "allow-utf-8", "dots", "values")

# What scrapers send. Prometheus 2.x (2.45 as 2.42), 3.x default, 3.x with native histograms
# (protobuf first), 3.x with metric_name_escaping_scheme set, curl, a browser.
PROMETHEUS_2 = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
PROMETHEUS_3 = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
                "text/plain;version=0.0.4;q=0.2,*/*;q=0.1")
PROMETHEUS_3_PROTO_FIRST = ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                            "encoding=delimited;q=0.6," + PROMETHEUS_3)
ACCEPT_HEADERS = [
    PROMETHEUS_2, PROMETHEUS_3, PROMETHEUS_3_PROTO_FIRST,
    PROMETHEUS_3.replace("allow-utf-8", "underscores"), PROMETHEUS_3.replace("allow-utf-8", "dots"),
    PROMETHEUS_3.replace("allow-utf-8", "values"), PROMETHEUS_3.replace("allow-utf-8", "nonsense"),
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2",
    "text/plain;version=0.0.4", "text/plain", "application/openmetrics-text",
    "application/openmetrics-text; version=0.0.1", "application/openmetrics-text; version=2.0.0",
    "application/openmetrics-text;version=0.0.1,text/plain;version=1.0.0;escaping=dots",
    "*/*", None, "", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ";;;,,,", "garbage", "text/plain;version=", "application/openmetrics-text;version",
    "application/openmetrics-text ; version = 1.0.0", " application/openmetrics-text;version=10",
]


class Families:
    """A registry that hands out a fixed list of families."""

    def __init__(self, families):
        self.families = list(families)

    def collect(self):
        return iter(self.families)


def assert_same_encodings(registry):
    """Every encoder and escaping scheme gives client_python's bytes for `registry`."""
    for scheme in SCHEMES:
        want = generate_latest(registry, escaping=scheme)
        assert encode_text(registry, escaping=scheme) == want, scheme
        want = reference_openmetrics.generate_latest(registry, escaping=scheme)
        assert encode_openmetrics(registry, escaping=scheme) == want, scheme
    assert encode_text(registry) == generate_latest(registry)
    assert encode_openmetrics(registry) == reference_openmetrics.generate_latest(registry)


# -- random and edge-case families --------------------------------------------------------------

AWKWARD = ['', '\\', '"', '\n', '\\n', '\\"', 'ü', 'Привет', '日本', '\t', '\r', ' ', '{}', '=', ',', '#',
           '\u2028', '\x00', '😀', 'a"b\\c\nd']
VALUES = [0, 1, -1, 0.0, -0.0, 1.5, 0.1, 1e-300, 5e-324, 1e300, 1.7976931348623157e308, 999999.9999999999,
          1e6, 1000000.5, 1234567.0, 12345678901.25, 9999999999999998.0, 1e16, 1.5e16, 123456789012345678.0,
          -1234567.0, -1e300, 2 ** 53, 2 ** 63, 10 ** 20, math.inf, -math.inf, math.nan, True, 7, 3.0]
TIMESTAMPS = [None, None, 0, 1.5, 1767225600, 1767225600.123, 1e-3, 12345678901.999]


def random_text(rng, length=12):
    pieces = [rng.choice(AWKWARD) if rng.random() < 0.3 else rng.choice("abcXYZ_09 .-:") for _ in range(length)]
    return "".join(pieces)


def random_name(rng):
    return rng.choice("abcxyz_") + "".join(rng.choice("abcdxyz_019:") for _ in range(rng.randint(0, 12)))


def random_label_name(rng):
    return rng.choice("abcxyz") + "".join(rng.choice("abcxyz_019") for _ in range(rng.randint(0, 8)))


def build_pair(rng):
    """The same random family built with client_python's class and with minerwatch's."""
    kind = rng.choice(["gauge", "counter"])
    name = random_name(rng)
    if kind == "counter" and rng.random() < 0.5:
        name += "_total"
    documentation = random_text(rng, rng.randint(0, 30))
    unit = rng.choice(["", "", "bytes", "seconds"])
    labels = sorted({random_label_name(rng) for _ in range(rng.randint(0, 4))})
    rng.shuffle(labels)  # the encoders sort them
    made = []
    state = rng.getstate()
    for module in (reference, metrics):
        rng.setstate(state)  # both families get the same samples
        if kind == "gauge":
            if not labels and rng.random() < 0.3:
                family = module.GaugeMetricFamily(name, documentation, value=rng.choice(VALUES), unit=unit)
            else:
                family = module.GaugeMetricFamily(name, documentation, labels=labels, unit=unit)
                for _ in range(rng.randint(0, 4)):
                    family.add_metric([random_text(rng) for _ in labels], rng.choice(VALUES),
                                      timestamp=rng.choice(TIMESTAMPS))
        else:
            created = rng.choice([None, None, 1767225600.25, 0])
            if not labels and rng.random() < 0.3:
                family = module.CounterMetricFamily(name, documentation, value=rng.choice(VALUES), created=created,
                                                    unit=unit)
            else:
                family = module.CounterMetricFamily(name, documentation, labels=labels, unit=unit)
                for _ in range(rng.randint(0, 4)):
                    family.add_metric([random_text(rng) for _ in labels], rng.choice(VALUES),
                                      created=rng.choice([None, created]), timestamp=rng.choice(TIMESTAMPS))
        made.append(family)
    return made


def shape(family):
    """Every field client_python's encoders and registries read."""
    return (family.name, family.documentation, family.type, family.unit,
            [tuple(sample) for sample in family.samples], [sample._fields for sample in family.samples])


def test_random_families_have_client_python_shape_and_bytes():
    rng = random.Random(17)
    for _ in range(300):
        pairs = [build_pair(rng) for _ in range(rng.randint(0, 6))]  # sometimes none: an empty exposition
        theirs, ours = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
        assert [repr(shape(f)) for f in ours] == [repr(shape(f)) for f in theirs]  # repr: NaN != NaN
        assert_same_encodings(Families(ours))
        # client_python's encoders take minerwatch's families too (the tests' registries do)
        for scheme in SCHEMES:
            assert generate_latest(Families(ours), escaping=scheme) == encode_text(Families(theirs), escaping=scheme)


def test_edge_cases_of_help_labels_values_and_counters():
    families = [
        metrics.GaugeMetricFamily("empty_family", "No samples at all."),
        metrics.GaugeMetricFamily("no_help", ""),
        metrics.GaugeMetricFamily("help_escapes", 'back\\slash "quoted" new\nline ü 日本 \\n'),
        metrics.CounterMetricFamily("with_total_total", "Given with _total.", value=3),
        metrics.CounterMetricFamily("plain_events", "Given without.", value=2.5, created=1767225600.5),
        metrics.CounterMetricFamily("energy", "A unit.", labels=["method"], unit="joules"),
        metrics.GaugeMetricFamily("already_unit_bytes", "Unit already in the name.", value=1, unit="bytes"),
    ]
    families[5].add_metric(['rapl"\\\n'], 1e6, created=0.0, timestamp=1767225600.001)
    values = metrics.GaugeMetricFamily("values", "Every awkward value.", labels=["i", "v"])
    for i, value in enumerate(VALUES):
        values.add_metric([str(i), "".join(AWKWARD[i % len(AWKWARD):])], value)
    families.append(values)
    assert families[3].name == "with_total" and families[3].samples[0].name == "with_total_total"
    assert [s.name for s in families[4].samples] == ["plain_events_total", "plain_events_created"]
    assert families[5].name == "energy_joules"
    assert families[6].name == "already_unit_bytes"
    assert_same_encodings(Families(families))


def test_client_python_metric_objects_encode_the_same():
    """web.py's tests hand the server prometheus_client registries: every metric type of theirs,
    and names only UTF-8 escaping can carry, go through minerwatch's encoders unchanged."""
    registry = CollectorRegistry()
    counter = prometheus_client.Counter("requests", "Requests.", ["path"], registry=registry)
    counter.labels("/a").inc(3)
    counter.labels('/"b"\\').inc()
    prometheus_client.Gauge("temperature", "Now.", unit="celsius", registry=registry).set(-2.5)
    histogram = prometheus_client.Histogram("latency_seconds", "Latency.", registry=registry)
    histogram.observe(0.3)
    histogram.observe(7)
    prometheus_client.Summary("sizes", "Sizes.", registry=registry).observe(12)
    prometheus_client.Info("build", "Build.", registry=registry).info({"version": "1.2", "commit": "ü"})
    prometheus_client.Enum("state", "State.", states=["on", "off"], registry=registry).state("off")
    odd = reference.GaugeMetricFamily("my.dotted:name ü", "A UTF-8 name.", labels=["label.with.dots", "ok"])
    odd.add_metric(["1", "2"], 1)
    digit = reference.GaugeMetricFamily("9lives", "Starts with a digit.", labels=["0x", "__reserved"])
    digit.add_metric(["a", "b"], 2)
    gauge_histogram = reference.GaugeHistogramMetricFamily("queue", "Queue.", buckets=[("1", 2), ("+Inf", 5)],
                                                           gsum_value=7)
    untyped = reference.UnknownMetricFamily("legacy", "Untyped.", value=4)
    registry.register(Families([odd, digit, gauge_histogram, untyped]))
    assert_same_encodings(registry)


def test_bad_names_raise_value_error():
    for bad in ["", "1abc", "a-b", "a b", "ü", "a.b"]:
        with pytest.raises(ValueError):
            metrics.GaugeMetricFamily(bad, "help")
    for bad in [["a-b"], ["__reserved"], ["1a"], ["a:b"], ["x", "x"], [""]]:
        with pytest.raises(ValueError):
            metrics.GaugeMetricFamily("fine", "help", labels=bad)
    with pytest.raises(ValueError):
        metrics.CounterMetricFamily("fine", "help", value=1, labels=["a"])
    with pytest.raises(ValueError):
        metrics.Metric("fine", "help", "nonsense")
    assert metrics.Metric("fine", "help", "untyped").type == "unknown"


def test_format_value_is_client_pythons():
    from prometheus_client.utils import floatToGoString

    rng = random.Random(6)
    numbers = VALUES + [rng.uniform(-1e20, 1e20) for _ in range(2000)]
    numbers += [10 ** rng.uniform(-10, 20) for _ in range(2000)]
    numbers += [float(rng.randint(0, 10 ** 17)) for _ in range(2000)]
    assert [exposition.format_value(n) for n in numbers] == [floatToGoString(n) for n in numbers]


# -- negotiation --------------------------------------------------------------------------------

@pytest.mark.parametrize("accept", ACCEPT_HEADERS)
def test_choose_encoder_negotiates_as_client_python(accept):
    registry = CollectorRegistry()
    prometheus_client.Counter("requests", "Requests.", registry=registry).inc()
    family = reference.GaugeMetricFamily("odd.name", "UTF-8 name.", labels=["l"])
    family.add_metric(["v"], 1)
    registry.register(Families([family]))
    want_encoder, want_type = reference_choose_encoder(accept)
    encoder, content_type = choose_encoder(accept)
    assert content_type == want_type
    assert encoder(registry) == want_encoder(registry)


def test_choose_encoder_answers_text_where_client_python_raises():
    """A version that does not compare with 1.0.0 (`1.x`, `abc`) raises TypeError in
    client_python, in the middle of a request; a hostile client must get plain text instead.
    A version with characters a header should not echo is not echoed."""
    for accept in ["text/plain;version=abc", "application/openmetrics-text;version=1.x",
                   "application/openmetrics-text;version=1.0.0\x0bX"]:
        if "\x0b" not in accept:
            with pytest.raises(TypeError):
                reference_choose_encoder(accept)
        encoder, content_type = choose_encoder(accept)
        assert (encoder, content_type) == (encode_text, "text/plain; version=0.0.4; charset=utf-8")


class AcceptRecorder(ThreadingHTTPServer):
    """Answers every GET with minerwatch's encoding of `registry`, as negotiated, and keeps the
    Accept headers it was sent."""

    def __init__(self, registry):
        self.accepts = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N805
                accept = handler.headers.get("Accept")
                self.accepts.append(accept)
                encoder, content_type = choose_encoder(accept)
                body = encoder(registry)
                handler.send_response(200)
                handler.send_header("Content-Type", content_type)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


def test_the_installed_prometheus_gets_openmetrics_and_stores_it(tmp_path):
    """The real Prometheus: what it sends is negotiated to OpenMetrics as client_python would,
    and it ingests the body (a counter with an awkward label value reads back)."""
    registry = metrics.Registry()
    family = metrics.CounterMetricFamily("minerwatch_test_events", "Events.", labels=["kind"])
    family.add_metric(['a "quoted" \\ value'], 42)
    registry.register(Families([family]))
    recorder = AcceptRecorder(registry)
    prometheus = None
    try:
        target = f"127.0.0.1:{recorder.server_address[1]}"
        prometheus = Prometheus({"global": {"scrape_interval": "1s"},
                                 "scrape_configs": [{"job_name": "expo", "static_configs": [{"targets": [target]}]}]},
                                tmp_path / "prometheus")
        wait_for(lambda: prometheus.query("minerwatch_test_events_total"), timeout=30,
                 what="Prometheus to store the scraped counter")
        result = prometheus.query("minerwatch_test_events_total")
    finally:
        if prometheus:
            prometheus.stop()
        recorder.stop()
    assert result[0]["metric"]["kind"] == 'a "quoted" \\ value' and result[0]["value"][1] == "42"
    accept = recorder.accepts[0]
    assert "application/openmetrics-text" in accept
    assert choose_encoder(accept)[1] == reference_choose_encoder(accept)[1]
    assert choose_encoder(accept)[1].startswith("application/openmetrics-text; version=1.0.0")


# -- a real scrape ------------------------------------------------------------------------------

def golden_families(monkeypatch):
    """One scrape's families of the exporter built as `serve` builds it, on the golden fixture
    host (fake NVML, fixed clocks)."""
    from support import e2e_serve
    from support.fakes.nvml import FakeNvml

    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(e2e_serve.gpus(), driver_version="550.54.15",
                                                         process_names={99999: "/usr/bin/python3"}))
    from minerwatch import service
    from minerwatch.serving import web
    from minerwatch.app import (Clocks, Options, build_collectors, build_context, build_registry, close_collectors,
                                enabled_collectors)
    from minerwatch.collectors.base import CollectorRunner

    e2e = golden.E2E
    options = Options(procfs=str(e2e / "proc"), sysfs=str(e2e / "sys"), rootfs=str(e2e / "root"),
                      config_file=str(e2e / "minerwatch.yml"),
                      clocks=Clocks(monotonic=lambda: e2e_serve.MONOTONIC, wall=lambda: e2e_serve.NOW))
    context = build_context(options)
    collectors = build_collectors(context, enabled_collectors(options))
    runner = CollectorRunner(collectors)
    try:
        registry = build_registry(runner)
        registry.register(service.ReloadStatus())
        # the HTTP server registers its own families (connections, rate limit, TLS reloads)
        server = web.ExporterServer(("127.0.0.1", 0), registry, "/metrics", web.WebConfig(), "0.0.0")
        try:
            return list(registry.collect())
        finally:
            server.server_close()
    finally:
        close_collectors(collectors)
        getattr(context.processes.reader, "close", lambda: None)()


def test_a_real_scrape_encodes_as_client_python_and_passes_promtool(monkeypatch, promtool):
    families = golden_families(monkeypatch)
    exposed = {family.name + ("_total" if family.type == "counter" else "") for family in families}
    assert set(golden.families(golden.GOLDEN.read_text())) <= exposed  # every family of the golden run
    assert {"process_open_fds", "process_cpu_seconds_total", "python_info"} <= exposed
    assert_same_encodings(Families(families))
    for accept in (PROMETHEUS_2, PROMETHEUS_3, "*/*", None):
        encoder, _ = choose_encoder(accept)
        assert encoder(Families(families)) == reference_choose_encoder(accept)[0](Families(families))
    check_metrics(promtool, encode_text(Families(families)).decode())


# -- the exporter's own process metrics ---------------------------------------------------------

def test_self_metrics_are_client_pythons_families():
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector

    def described(families):
        return [(f.name, f.type, f.documentation, f.unit, [(s.name, sorted(s.labels)) for s in f.samples])
                for f in families]

    theirs = list(ProcessCollector(registry=None).collect()) + list(PlatformCollector(registry=None).collect())
    ours = list(self_metrics.ProcessMetrics().collect()) + list(self_metrics.PythonInfo().collect())
    assert described(ours) == described(theirs)
    assert len(ours) == 7
    assert [s.labels for s in ours[-1].samples] == [s.labels for s in theirs[-1].samples]
    by_name = {f.name: f.samples[0].value for f in ours}
    assert by_name["process_start_time_seconds"] == pytest.approx(
        {f.name: f.samples[0].value for f in theirs}["process_start_time_seconds"])
    assert 0 < by_name["process_resident_memory_bytes"] < by_name["process_virtual_memory_bytes"]


@pytest.mark.parametrize("use_size", [True, False], ids=["size-of-fd-dir", "listing"])
def test_open_fds_count_every_descriptor(use_size):
    """After opening 100 more descriptors; the listing's own descriptor is not counted."""
    before = self_metrics.open_fd_count(use_size=use_size)
    opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(100)]
    try:
        counted = self_metrics.open_fd_count(use_size=use_size)
        listed = len(os.listdir(self_metrics.FD_DIR)) - 1
        reported = {f.name: f.samples[0].value for f in self_metrics.ProcessMetrics().collect()}["process_open_fds"]
    finally:
        for fd in opened:
            os.close(fd)
    assert counted == listed == reported == before + 100


# -- the registry -------------------------------------------------------------------------------

class Describing:
    def __init__(self, *names):
        self.families = [metrics.GaugeMetricFamily(name, "help", value=1) for name in names]

    def describe(self):
        return self.families

    def collect(self):
        return self.families


def test_registry_collects_in_order_and_refuses_a_name_twice():
    registry = metrics.Registry()
    first, second = Describing("a", "b"), Describing("c")
    registry.register(first)
    registry.register(second)
    with pytest.raises(ValueError):
        registry.register(Describing("b"))
    with pytest.raises(ValueError):
        registry.register(first)
    assert [f.name for f in registry.collect()] == ["a", "b", "c"]
    registry.unregister(first)
    registry.register(Describing("b"))
    assert [f.name for f in registry.collect()] == ["c", "b"]
    # client_python's registry takes minerwatch's collectors as before
    theirs = CollectorRegistry(auto_describe=False)
    theirs.register(second)
    assert theirs.get_sample_value("c") == 1


# -- what the exporter imports when it runs -----------------------------------------------------

SERVE_WITHOUT_CLIENT_PYTHON = r"""
import json, sys
from minerwatch import cli, service  # what `minerwatch serve` imports
from minerwatch.serving import web
from minerwatch.app import (Options, build_collectors, build_context, build_registry, close_collectors,
                            enabled_collectors)
from minerwatch.collectors.base import CollectorRunner
from minerwatch.serving.exposition import choose_encoder

e2e = sys.argv[1]
options = Options(procfs=e2e + "/proc", sysfs=e2e + "/sys", rootfs=e2e + "/root", config_file=e2e + "/minerwatch.yml")
context = build_context(options)
collectors = build_collectors(context, enabled_collectors(options))
try:
    registry = build_registry(CollectorRunner(collectors))
    registry.register(service.ReloadStatus())
    encoder, content_type = choose_encoder(sys.argv[2])
    body = encoder(registry)
finally:
    close_collectors(collectors)
print(json.dumps({"content_type": content_type, "build_info": b"minerwatch_build_info{" in body,
                  "loaded": sorted(m for m in sys.modules if m.startswith("prometheus_client"))}))
"""

SCAN_WITHOUT_CLIENT_PYTHON = r"""
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(m for m in sys.modules if m.startswith("prometheus_client")))))
from minerwatch import cli
cli.main(sys.argv[1:])
"""


def test_serve_and_scan_run_without_client_python():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_CLIENT_PYTHON, str(golden.E2E), PROMETHEUS_3],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["build_info"] and result["content_type"].startswith("application/openmetrics-text")
    assert result["loaded"] == []
    out = subprocess.run([sys.executable, "-c", SCAN_WITHOUT_CLIENT_PYTHON, "scan", "--interval=0", *golden.args()],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 1), out.stderr  # 1: the fixture host has suspects
    assert "t-rex" in out.stdout or "xmrig" in out.stdout
    assert json.loads(out.stdout.splitlines()[-1]) == []
