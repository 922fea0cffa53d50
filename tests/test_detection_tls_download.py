"""Issue 14: a big download over TLS, as a browser or an updater makes it, stays quiet under the busy probe.

A real curl downloads a 16 GiB file (sparse: it takes no disk) from `openssl s_server -WWW`, a
local HTTPS server on 127.0.0.1 with a throw-away self-signed certificate. curl is busy
decrypting and writing, holds one long-lived connection and does steady I/O: the probe must
judge it (a full window) and give it none of its signals.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import psutil
import pytest

from minerwatch.host.proc_reader import ProcfsReader
from minerwatch.detection.process_table import ProcessSettings, ProcessTable
from minerwatch.detection.signatures import Signatures
from support.processes import free_port, stop_pid, wait_for

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs is Linux"),
    pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")), reason="needs curl and openssl"),
]

PROBE_SIGNALS = {"miner_exe_content", "miner_config", "miner_behaviour", "randomx_memory", "packed_exe"}

def test_big_tls_download_stays_quiet(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with open(tmp_path / "update.iso", "wb") as f:
        f.truncate(16 << 30)
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert), "-key", str(key),
                               "-WWW", "-quiet"], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    client = None
    try:
        wait_for(lambda: any(c.laddr.port == port for c in psutil.Process(server.pid).net_connections()),
                 what="openssl s_server listening")
        settings = ProcessSettings(busy_probe_interval_seconds=1.0, busy_probe_window_seconds=5.0,
                                   suspect_busy_cores=0.1)  # probed even on a loaded machine
        table = ProcessTable(ProcfsReader("/proc"), Signatures(), settings=settings)
        client = subprocess.Popen(["curl", "-sS", "--cacert", str(cert), "-o", "/dev/null", "--noproxy", "*", "--resolve", f"localhost:{port}:127.0.0.1",
                                   f"https://localhost:{port}/update.iso"],
                                  env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        judged, seen = {}, {}
        end = time.monotonic() + 45  # the machine may be loaded: until a full window was judged
        while time.monotonic() < end and not judged:
            assert client.poll() is None, "the download stopped"
            by_pid = table.scan().by_pid()
            view = by_pid.get(client.pid)
            if view is not None:
                seen[client.pid] = (view.name, dict(view.signals))
                state = table.busy_probe._states.get((client.pid, view.stat.start_time))
                if state is not None and state.track.broken:
                    judged[client.pid] = state.track.broken
            time.sleep(1.0)
        cpu = psutil.Process(client.pid).cpu_times()
        print("curl cpu", cpu, seen)
    finally:
        if client is not None:
            stop_pid(client)
        stop_pid(server)
    flagged = {name: set(signals) & PROBE_SIGNALS for name, signals in seen.values() if set(signals) & PROBE_SIGNALS}
    assert not flagged, flagged
    assert judged, f"the probe never judged a full window of the download: {seen}"
    print("tls download ->", judged, "curl cpu", cpu)
