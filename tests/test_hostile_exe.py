"""A user who wants the exporter blind relaunches busy programs from fresh, huge executables.

Each copy of a small busy program padded to 500 MiB (sparse: it costs its user nothing) is a new
file for the executable scan: 64 MiB searched and 500 MiB hashed, about 1.5 s of CPU, plus the
same hash again for an allowlist `sha256` rule that names its folder. Done inside the scrape,
two such decoys relaunched every few seconds made scrapes take 3-5 s, the process collector
missed its deadline and the real miner's series dropped out, restarting every alert's `for:`.

Here a real `minerwatch serve` watches a real miner stand-in (the native one: no arguments, its
config.json beside it, a pool on 127.0.0.1) while two decoys are relaunched from fresh sparse
copies. Over the run every scrape must answer quickly with the process collector's success,
the miner's series must be in every scrape, its content signal and hash must still land (the
decoys cannot starve its scan), and the background scan's own series must show the work done
and the decoys' files over budget, at a bounded CPU cost.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from support.exporter import Exporter, find
from support.fakeminer import build_native
from support.processes import stop_pid, wait_for
from support.wallets import MONERO_WALLET

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs, gcc and sparse files")

DECOY_BYTES = 500 << 20
BUSY_SOURCE = "int main(void) { volatile unsigned long x = 0; for (;;) x++; }\n"
ATTACK_SECONDS = 25.0
LAST_SECONDS = 40.0
# Without a file scan in it the process collector takes milliseconds here, tenths of a second on
# a heavily loaded machine; each decoy scanned inside it cost 1-2 s of CPU, 3-5 s of wall time.
SCRAPE_BOUND_SECONDS = 2.5
# The process collector, and energy (it looks processes up in the same table); the others only
# add load to a shared test machine.
QUIET = ["--no-collector.network", "--no-collector.gpu", "--no-collector.antivirus"]


class Decoys:
    """`slots` busy processes, each relaunched every `every` seconds from a fresh sparse copy."""

    def __init__(self, program: str, folder: str, slots: int = 2, every: float = 4.0):
        self.program, self.folder, self.slots, self.every = program, folder, slots, every
        self.started = 0
        self._running: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decoys", daemon=True)

    def __enter__(self) -> "Decoys":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for proc, path in self._running:
            stop_pid(proc)
            os.unlink(path)

    def _launch(self) -> None:
        path = os.path.join(self.folder, f"helper-{self.started}")
        shutil.copy(self.program, path)
        os.truncate(path, DECOY_BYTES)  # a hole: no disk used, every byte still read and hashed
        self._running.append((subprocess.Popen([path]), path))
        self.started += 1

    def _run(self) -> None:
        for _ in range(self.slots):
            self._launch()
            self._stop.wait(self.every / self.slots)  # staggered: a fresh copy every every/slots s
        while not self._stop.wait(self.every / self.slots):
            proc, path = self._running.pop(0)
            stop_pid(proc)
            os.unlink(path)
            self._launch()


@pytest.fixture
def folders():
    """Outside the temp folders (those are a signal of their own), as a user's home would be."""
    made = [tempfile.mkdtemp(prefix=f"minerwatch-test-{name}-", dir=os.path.expanduser("~"))
            for name in ("libexec", "decoys")]
    yield made
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def _busy_program(folder: str) -> str:
    source, program = os.path.join(folder, "busy.c"), os.path.join(folder, "busy")
    with open(source, "w") as f:
        f.write(BUSY_SOURCE)
    subprocess.run(["gcc", "-O1", "-o", program, source], check=True, capture_output=True, timeout=120)
    os.unlink(source)
    return program


def _scanned(samples, pid: int) -> bool:
    """The process's content signal and hash are in this scrape."""
    return any("miner_exe_content" in labels["signals"].split(",") and labels["exe_sha256"]
               for labels, _ in find(samples, "minerwatch_process_suspect_info", pid=pid))


def _value(samples, name, **labels) -> float:
    found = find(samples, name, **labels)
    assert found, f"{name} {labels} missing"
    return found[0][1]


def test_decoy_executables_never_slow_a_scrape_nor_hide_the_miner(pool, folders, tmp_path):
    libexec, decoy_folder = folders
    miner_exe = build_native(libexec, "fwupd-refresh")
    with open(miner_exe, "rb") as f:
        miner_sha256 = hashlib.sha256(f.read()).hexdigest()
    busy = _busy_program(libexec)
    work = tmp_path / "var-lib-fwupd"
    work.mkdir()
    (work / "config.json").write_text(json.dumps({
        "cpu": {"enabled": True, "threads": 1},
        "pools": [{"url": f"127.0.0.1:{pool.port}", "user": MONERO_WALLET, "pass": "x", "tls": False}],
    }))
    config = tmp_path / "minerwatch.yml"
    config.write_text(
        "network:\n  resolve_max_names: 0\n"
        "process:\n  suspect_busy_cores: 0.1\n"
        # a rule that needs the decoys' hash (it never matches them): the allowlist hashes too
        f"allowlist:\n  - {{exe: '{decoy_folder}/*', sha256: '{'0' * 64}'}}\n")

    served = time.monotonic()
    exp = Exporter([f"--config.file={config}", *QUIET])
    miner = None
    try:
        exp.scrape()  # the first sight of every process on the host: not what is measured here
        with Decoys(busy, decoy_folder) as decoys:
            time.sleep(3.0)  # the attack runs before the miner starts: its scan must queue behind
            miner = subprocess.Popen([miner_exe], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wait_for(lambda: "login" in pool.methods(), timeout=20, what="the miner stand-in to log in")
            scrapes, started = [], time.monotonic()
            # ATTACK_SECONDS of scrapes, and more (to LAST_SECONDS) while the miner's scan has not
            # landed: on a loaded machine the decoys asked before it may take a while each
            while time.monotonic() - started < ATTACK_SECONDS or (
                    not _scanned(scrapes[-1][0], miner.pid) and time.monotonic() - started < LAST_SECONDS):
                begun = time.monotonic()
                samples = exp.scrape()
                scrapes.append((samples, time.monotonic() - begun))
                time.sleep(max(0.0, 1.0 - (time.monotonic() - begun)))
            lifetime = time.monotonic() - served
            relaunched = decoys.started
    finally:
        if miner is not None:
            stop_pid(miner)
        log = exp.stop()

    # The attack ran: fresh big copies kept coming while the scrapes went on.
    assert relaunched >= 6, relaunched
    assert len(scrapes) >= 10, len(scrapes)

    # Every scrape: the process collector succeeded, quickly, and the miner was in it.
    slow = [(n, _value(s, "minerwatch_scrape_collector_duration_seconds", collector="process"), round(took, 2))
            for n, (s, took) in enumerate(scrapes)
            if _value(s, "minerwatch_scrape_collector_duration_seconds", collector="process") >= SCRAPE_BOUND_SECONDS]
    failed = [n for n, (s, _) in enumerate(scrapes)
              if _value(s, "minerwatch_scrape_collector_success", collector="process") != 1]
    assert not failed and not slow, f"failed scrapes {failed}; slow (scrape, process collector s, scrape s) {slow}"
    seen = [bool(find(s, "minerwatch_process_cpu_seconds_total", pid=miner.pid)) for s, _ in scrapes]
    # suspect at its first probe (its config), once busy: at once, or a few scrapes on a loaded machine
    assert any(seen[:10]), "the miner was not found"
    first = seen.index(True)
    assert all(seen[first:]), f"the miner's series dropped out of scrapes {[n for n, s in enumerate(seen) if not s]}"

    # Its executable was still scanned and hashed behind the decoys: its content and hash landed.
    last = scrapes[-1][0]
    (labels, _), = find(last, "minerwatch_process_suspect_info", pid=miner.pid)
    assert "miner_exe_content" in labels["signals"].split(","), labels["signals"]
    assert labels["exe_sha256"] == miner_sha256

    # The scans happened in the background, decoys included, within the scan's CPU budget.
    before, after = scrapes[0][0], last
    scanned = (_value(after, "minerwatch_process_exe_scanned_files_total")
               - _value(before, "minerwatch_process_exe_scanned_files_total"))
    assert scanned >= 2, scanned  # the miner, and at least one decoy
    assert _value(after, "minerwatch_process_exe_scan_partial_files_total") >= 1  # a decoy: over budget
    assert _value(after, "minerwatch_process_exe_scanned_bytes_total") >= 64 << 20
    cpu = _value(after, "minerwatch_process_exe_scan_cpu_seconds_total")
    assert 0 < cpu <= 0.25 * lifetime + 1.0 + 0.5, (cpu, lifetime)  # its share of a core, its burst, slack
    queued = [_value(s, "minerwatch_process_exe_scan_queued_files") for s, _ in scrapes]
    assert max(queued) >= 1, queued  # the files waited for the worker, not the scrape
    waiting = [_value(s, "minerwatch_process_exe_unscanned_processes", check="allowlist") for s, _ in scrapes]
    assert max(waiting) >= 1, waiting  # busy decoys under a sha256 rule: the verdict waited for the hash
    assert "Traceback" not in log, log[-2000:]
