"""Issue 14: the busy probe's own work is exported, so its cost is visible on every host."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from minerwatch.app import Options, build_context
from minerwatch.collectors.process import ProcessCollector
from support.processes import stop_pid, wait_for
from support.promtool import check_metrics

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the probe reads /proc")

BURN = "import time\nend = time.time() + 120\nwhile time.time() < end:\n    pass\n"


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """One context for the module: the process table keeps descriptors open per process."""
    config = tmp_path_factory.mktemp("probe") / "minerwatch.yml"
    config.write_text("process:\n  suspect_busy_cores: 0.3\n  busy_probe_interval_seconds: 0.5\n")
    context = build_context(Options(config_file=str(config)))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessCollector(context))
    return context, registry


def test_probes_failures_and_scanned_bytes_are_counted(tmp_path, promtool, scraped):
    _, registry = scraped
    exe = tmp_path / "worker"
    exe.symlink_to(sys.executable)
    burner = subprocess.Popen([str(exe), "-c", BURN])
    try:
        def probed():
            generate_latest(registry)  # a scrape scans the table, which probes the busy worker
            # the file is read in the background: its bytes are counted a scrape or more later
            return (registry.get_sample_value("minerwatch_process_busy_probes_total") >= 2
                    and registry.get_sample_value("minerwatch_process_exe_scanned_bytes_total")
                    >= exe.resolve().stat().st_size)
        wait_for(probed, timeout=30, interval=0.5, what="two probes of the busy worker, its executable read")
        text = generate_latest(registry).decode()
    finally:
        stop_pid(burner)
    # the worker's executable (this Python) was read once, whole
    assert registry.get_sample_value("minerwatch_process_exe_scanned_files_total") >= 1
    assert registry.get_sample_value("minerwatch_process_busy_probe_failures_total") == 0
    check_metrics(promtool, text)


def test_a_probe_that_is_off_reports_explicit_zeros(scraped):
    context, registry = scraped
    table = context.processes
    probe, table.busy_probe = table.busy_probe, None  # what busy_probe_interval_seconds: 0 builds
    try:
        generate_latest(registry)
        for name in ("minerwatch_process_busy_probes_total", "minerwatch_process_busy_probe_failures_total"):
            assert registry.get_sample_value(name) == 0, name
        assert registry.get_sample_value("minerwatch_process_exe_unscanned_processes", {"check": "content"}) == 0
        # the background scan stays: it still hashes suspects and allowlist candidates
        assert registry.get_sample_value("minerwatch_process_exe_scanned_bytes_total") is not None
    finally:
        table.busy_probe = probe
