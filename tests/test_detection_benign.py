"""Issue 14: real heavy programs an office or a server runs stay quiet under the busy probe.

Each load runs for a few seconds, long enough for the probe to sample it over a full window;
the test checks that the probe did look (a judged window, and the condition that broke, as
docs/signatures.md tells it) and that none of the probe's signals came up for any process of
the load.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from support.processes import stop_pid
from minerwatch.host.proc_reader import ProcfsReader
from minerwatch.detection.process_table import ProcessSettings, ProcessTable
from minerwatch.detection.signatures import Signatures

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs and sock_diag are Linux")

PROBE_SIGNALS = {"miner_exe_content", "miner_config", "miner_behaviour", "randomx_memory", "packed_exe"}

NUMPY_TRAINING = """
import numpy as np
rng = np.random.default_rng(1)
x = rng.normal(size=(4000, 256)); y = (x @ rng.normal(size=256) > 0).astype(float); w = np.zeros(256)
while True:
    p = 1 / (1 + np.exp(-(x @ w)))
    w -= 0.1 * x.T @ (p - y) / len(y)
"""


def _c_source(functions: int = 2500) -> str:
    body = []
    for i in range(functions):
        body.append(f"double f{i}(double *a, int n) {{ double s = {i}; for (int k = 0; k < n; k++) "
                    f"{{ s += a[k] * {i + 1}.5 / (k + 1); if (s > {i * 3}) s -= a[(k * {i + 7}) % n]; }} return s; }}")
    return "\n".join(body) + "\n"


def _loads(tmp_path):
    source = tmp_path / "module.c"
    source.write_text(_c_source())
    return {
        "openssl speed": ["openssl", "speed", "-seconds", "10", "-evp", "aes-256-gcm"],
        "gcc -O2 compile": ["gcc", "-O2", "-c", str(source), "-o", str(tmp_path / "module.o")],
        "tar | xz backup": ["sh", "-c", "while :; do tar cf - /usr/bin 2>/dev/null; done | xz -6 -T1 > /dev/null"],
        "tar | gzip backup": ["sh", "-c", "while :; do tar cf - /usr/share 2>/dev/null; done | gzip -6 > /dev/null"],
        "numpy training": [sys.executable, "-c", NUMPY_TRAINING],
    }


def _tree(pid):
    try:
        root = psutil.Process(pid)
        return {pid} | {c.pid for c in root.children(recursive=True)}
    except psutil.NoSuchProcess:
        return {pid}


@pytest.mark.parametrize("load", ["openssl speed", "gcc -O2 compile", "tar | xz backup", "tar | gzip backup",
                                  "numpy training"])
def test_benign_heavy_load_stays_quiet(load, tmp_path):
    argv = _loads(tmp_path)[load]
    settings = ProcessSettings(busy_probe_interval_seconds=1.0, busy_probe_window_seconds=5.0)
    table = ProcessTable(ProcfsReader("/proc"), Signatures(), settings=settings)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"})
    judged, seen = {}, {}
    try:
        end = time.monotonic() + 45  # the machine may be loaded: until a full window was judged
        while time.monotonic() < end and not judged:
            snapshot = table.scan()
            by_pid = snapshot.by_pid()
            for pid in _tree(proc.pid):
                view = by_pid.get(pid)
                if view is None:
                    continue
                seen[pid] = (view.name, dict(view.signals))
                state = table.busy_probe._states.get((pid, view.stat.start_time))
                if state is not None and state.track.broken:
                    judged[pid] = (view.name, state.track.broken)
            time.sleep(1.0)
    finally:
        for pid in sorted(_tree(proc.pid), reverse=True):
            if pid != proc.pid:
                try:
                    psutil.Process(pid).kill()
                except psutil.NoSuchProcess:
                    pass
        stop_pid(proc)
    flagged = {name: set(signals) & PROBE_SIGNALS for name, signals in seen.values() if set(signals) & PROBE_SIGNALS}
    assert not flagged, flagged
    assert judged, f"the probe never judged a full window of {load}: {seen}"
    print(load, "->", sorted(set(judged.values())))
