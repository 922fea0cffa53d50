"""Performance at scale (issue 17), the fixed memory and the busy probe's dump: what `serve`
does not need is not imported, and the probe's tcp_info dump keeps only the probed sockets.

The figures (RSS after 100 scrapes, CPU a scrape) are in tests/benchmark/run.sh and
tests/benchmark/dumps.py, not here: these tests check the mechanisms, not the sizes.
"""

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys

import pytest

from minerwatch.detection import tcp_flows
from support.loopback import loopback_connections

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _nvml_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")  # where pynvml loads it from on Linux
        return True
    except OSError:
        return False


SERVE_MODULES = r"""
import json, sys
from minerwatch import cli  # what `minerwatch serve` imports
from minerwatch.serving import web
from minerwatch.app import Options, build_collectors, build_context, close_collectors, enabled_collectors

options = Options()
context = build_context(options)
collectors = build_collectors(context, enabled_collectors(options))
try:
    for collector in collectors:
        if collector.name == "gpu":
            list(collector.collect())  # the first scrape tries NVML
finally:
    close_collectors(collectors)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                        ("pynvml", "re2", "bcrypt", "minerwatch"))))
"""


def test_serve_without_gpu_user_patterns_or_users_leaves_their_libraries_unloaded():
    if _nvml_present():
        pytest.skip("an NVML library is installed here: pynvml is rightly imported")
    out = subprocess.run([sys.executable, "-c", SERVE_MODULES], env=ENV, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert "minerwatch.collectors.gpu" in loaded  # the gpu collector was built and scraped
    unwanted = {"pynvml", "re2", "bcrypt", "minerwatch.investigation.evidence", "minerwatch.investigation.report", "minerwatch.network.resolve"}
    assert loaded & unwanted == set()


LOADER = r"""
import json, logging, sys
from minerwatch.host.gpu_reader import NvmlReader, PynvmlLoader

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
now = [0.0]
loader = PynvmlLoader(names=[sys.argv[1]])
reader = NvmlReader(loader, clock=lambda: now[0], retry_seconds=60)
first = reader.read().up
imported_before = "pynvml" in sys.modules
loader.names = [sys.argv[2]]  # "a driver is installed": a library that loads
now[0] = 30.0
reader.read()
imported_early = "pynvml" in sys.modules  # within the retry interval: not tried
now[0] = 61.0
reader.read()  # tries: imports pynvml, whose own nvmlInit then decides
print(json.dumps([first, imported_before, imported_early, "pynvml" in sys.modules]))
"""


def test_pynvml_is_imported_only_when_a_library_loads_and_retried_like_nvmlinit(tmp_path):
    libc = ctypes.util.find_library("c") or "libc.so.6"
    out = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path / "libnvidia-ml.so.1"), libc],
                         env=ENV, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert json.loads(lines[-1]) == [False, False, False, True]
    # the reason logged is nvmlInit's own, once, as before
    assert lines[0] == "NVIDIA GPUs not readable: nvmlInit: NVML Shared Library Not Found"


def test_probe_dump_keeps_only_the_wanted_sockets_with_their_counters():
    held = loopback_connections(3)
    try:
        client = held[1]
        client.sendall(b"x" * 1000)
        assert held[2].recv(2000)
        inode = os.fstat(client.fileno()).st_ino
        everything = tcp_flows.dump()
        assert {os.fstat(s.fileno()).st_ino for s in held[1:]} <= set(everything)
        wanted = tcp_flows.dump({inode})
        assert set(wanted) == {inode}
        assert wanted[inode].bytes_acked == 1000 + 1 and wanted[inode].data_segs_out >= 1
        assert wanted[inode] == everything[inode]  # bytes_acked counts the SYN: +1
    finally:
        for s in held:
            s.close()


def test_no_wanted_sockets_no_dump(monkeypatch):
    def refused(*args):
        raise AssertionError("dumped")

    monkeypatch.setattr(tcp_flows, "diag_messages", refused)
    assert tcp_flows.dump(set()) == {}
