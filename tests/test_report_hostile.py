"""`minerwatch report` against a hostile or broken Prometheus (support/hostile_prometheus.py, a
process on 127.0.0.1): a huge body, JSON that is not Prometheus's, nesting 200,000 deep, NaN and
Inf samples, a server that trickles one byte at a time. The report must end in bounded time and
memory with one line naming the server and what was wrong, or, for samples that are merely not
finite, leave them out of the totals, say so, and still write valid JSON."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from support.hostile_prometheus import INSTANCE, NAN_SERIES, PID, STEP, HostilePrometheus
from support.repo import ROOT


# `minerwatch report` run in a Python that writes its own peak RSS when it exits. Not wait4()'s
# ru_maxrss: Linux carries the parent's RSS at fork over the child's exec into it, so under a
# long test session (a big pytest process) every child would report at least that.
PEAK_RSS_WRAPPER = """\
import atexit, sys

def peak():
    with open("/proc/self/status") as status:  # VmHWM: this process's own high-water mark
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(sys.argv[1], "w") as out:
        out.write(kib)

atexit.register(peak)
from minerwatch.cli import main
main(sys.argv[2:])
"""


def run_report(url: str, out, *extra: str, limit: float = 120.0):
    """The real `minerwatch report` as a child; (exit status, stdout, stderr, its own peak RSS in
    bytes, seconds it ran)."""
    stdout, stderr = out.parent / f"{out.name}.stdout", out.parent / f"{out.name}.stderr"
    peak = out.parent / f"{out.name}.peak"
    with open(stdout, "wb") as o, open(stderr, "wb") as e:
        proc = subprocess.Popen([sys.executable, "-c", PEAK_RSS_WRAPPER, str(peak), "report", f"--prometheus={url}",
                                 f"--instance={INSTANCE}", "--from=now-2h", "--to=now", f"--out={out}", *extra],
                                stdout=o, stderr=e, cwd=ROOT)
    start = time.monotonic()
    try:
        proc.wait(limit)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"minerwatch report still running after {limit:.0f} s")
    elapsed = time.monotonic() - start
    return proc.returncode, stdout.read_text(), stderr.read_text(), int(peak.read_text()) * 1024, elapsed


@pytest.fixture
def hostile(tmp_path):
    started = []

    def start(mode: str, **kwargs) -> HostilePrometheus:
        server = HostilePrometheus(tmp_path, mode, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def assert_one_line_error(code: int, stderr: str, url: str, what: str) -> None:
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr, stderr
    message = stderr.split(" (see 'minerwatch report --help')")[0].rstrip("\n")
    assert re.search(rf"^minerwatch: error: Prometheus at {re.escape(url)}\b.*{what}", message), stderr


@pytest.mark.parametrize("mode, what", [("huge", r"answered more than 32 MiB"),
                                        ("huge-error", r"answered 500: Internal Server Error$")])
def test_a_huge_answer_is_refused_in_bounded_memory(hostile, tmp_path, mode, what):
    server = hostile(mode, huge_mib=320)
    code, _, stderr, peak, _ = run_report(server.url, tmp_path / "r")
    # Read whole, 320 MiB of body took more than 1 GB; refused at the bound (an error's body cut
    # at 64 KiB), the report stays near its own size (Python, click and matplotlib imported:
    # about 60-90 MB) plus 32 MiB.
    assert peak < 256 * 1024 * 1024, f"peak RSS {peak / 2**20:.0f} MiB; {stderr}"
    assert_one_line_error(code, stderr, server.url, what)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("mode, what", [
    ("list", r"not a JSON object"),
    ("deep", r"nested deeper than"),
    ("bad-metric", r"series labels are not an object"),
    ("bad-sample", r"a sample is not a \[time, value\] pair"),
])
def test_an_answer_that_is_not_prometheus_s_is_one_line(hostile, tmp_path, mode, what):
    server = hostile(mode)
    code, _, stderr, _, _ = run_report(server.url, tmp_path / "r")
    assert_one_line_error(code, stderr, server.url, what)
    assert not (tmp_path / "r" / "report.json").exists()


def test_a_trickling_server_is_given_up_at_the_deadline(hostile, tmp_path):
    # One byte every 2 s: each read succeeds long before any per-read timeout, so only a deadline
    # for the whole report ends it.
    server = hostile("trickle", interval=2.0)
    code, _, stderr, _, elapsed = run_report(server.url, tmp_path / "r", "--timeout=5")
    assert_one_line_error(code, stderr, server.url, r"no complete answer within --timeout=5 s")
    # 5 s, plus starting Python and importing matplotlib on a loaded 2-core machine.
    assert elapsed < 5 + 25, elapsed


@pytest.mark.parametrize("flag", ["--timeout=0", "--timeout=nan", "--timeout=inf", "--energy.tariff=nan",
                                  "--energy.tariff=inf", "--energy.watts-per-core=nan"])
def test_timeout_tariff_and_watts_out_of_range_are_one_line_exit_2(hostile, tmp_path, flag):
    server = hostile("nan")
    code, _, stderr, _, _ = run_report(server.url, tmp_path / "r", flag)
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert re.search(rf"^minerwatch: error: Invalid value for '{flag.split('=')[0]}'", stderr), stderr


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as every JSON reader but Python's does."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_not_finite_samples_are_left_out_counted_and_named(hostile, tmp_path):
    server = hostile("nan")
    out = tmp_path / "r"
    code, stdout, stderr, _, _ = run_report(server.url, out)
    assert code == 0, stderr
    doc = strict_json((out / "report.json").read_text())
    page = (out / "report.html").read_text()

    # Every figure is a finite number: NaN and Inf never reached a total.
    def numbers(node):
        if isinstance(node, dict):
            for value in node.values():
                yield from numbers(value)
        elif isinstance(node, list):
            for value in node:
                yield from numbers(value)
        elif isinstance(node, float):
            yield node

    assert all(math.isfinite(x) for x in numbers(doc))
    assert "nan" not in stdout.lower() and "inf " not in stdout.lower(), stdout

    # The totals are those of the finite samples: the counter grows 1 a second, so its growth
    # is the time between its first and last finite sample.
    [row] = doc["processes"]
    assert row["pid"] == int(PID)
    cpu_bad = sum(NAN_SERIES["minerwatch_process_cpu_seconds_total"])
    finite_cpu = 120 - cpu_bad  # a sample a minute for two hours, give or take one at the edges
    assert (finite_cpu - 2) * STEP <= row["cpu"]["core_seconds"] <= (finite_cpu + 1) * STEP, row["cpu"]

    left = {entry["metric"]: entry for entry in doc["left_out"]["series"]}
    assert set(left) == set(NAN_SERIES)
    for name, (nan, inf, minus) in NAN_SERIES.items():
        assert left[name]["not_finite"] == nan + inf + minus, left[name]
        assert left[name]["labels"]["pid"] == PID and left[name]["labels"]["instance"] == INSTANCE
    total = sum(map(sum, NAN_SERIES.values()))
    assert doc["left_out"]["samples"] == total
    assert re.search(rf"{total} samples? .*not finite.*left out", page), page[:3000]
    for name in NAN_SERIES:
        assert name in page


def test_a_pid_label_that_is_not_a_number_is_text(hostile, tmp_path):
    # "²" is a digit to str.isdigit() and not a number to int(): it must not crash the report.
    server = hostile("bad-pid")
    out = tmp_path / "r"
    code, _, stderr, _, _ = run_report(server.url, out)
    assert code == 0, stderr
    doc = strict_json((out / "report.json").read_text())
    assert [row["pid"] for row in doc["processes"]] == ["\u00b2"]
