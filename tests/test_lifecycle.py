"""The exporter's life under signals (issue 11, items 2 and 3), with the real `minerwatch serve`
in its own process group, as systemd runs it: SIGTERM always stops it cleanly after the scrape
in flight, SIGHUP reloads both config files or keeps the old ones, a stuck collector neither
hangs the scrape nor the shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

import bcrypt
import pytest

from support.processes import free_port, stop_pid, wait_for
from support.procfs import FakeProcess, build
from support.repo import OFFLINE_CONFIG, ROOT

# `minerwatch serve` with one more collector, "slow", that takes SLOW_SECONDS and then waits
# while the file SLOW_GATE exists: a real collector that is slow or hangs on demand.
SLOW_MAIN = textwrap.dedent("""\
    import os, sys, time
    from prometheus_client.core import GaugeMetricFamily
    from minerwatch.collectors.base import Collector, register

    RUNS = [0]

    @register
    class Slow(Collector):
        name, help, default_enabled = "slow", "Test collector: slow or stuck on demand.", False

        def collect(self):
            RUNS[0] += 1
            with open(os.environ["SLOW_STARTED"], "a") as f:
                f.write("started\\n")
            time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
            while os.path.exists(os.environ["SLOW_GATE"]):
                time.sleep(0.05)
            yield GaugeMetricFamily("minerwatch_test_slow_runs", "Runs started.", value=RUNS[0])

    from minerwatch.cli import main
    main(sys.argv[1:])
""")


class Served:
    """A `minerwatch serve` process of its own session (own process group); stderr to a file."""

    def __init__(self, tmp_path, *args, slow_seconds=0.0):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"serve-{self.port}.log"
        self.started_path = tmp_path / "slow.started"
        self.gate = tmp_path / "slow.gate"
        script = tmp_path / "serve_with_slow.py"
        script.write_text(SLOW_MAIN)
        env = dict(os.environ, SLOW_STARTED=str(self.started_path), SLOW_GATE=str(self.gate),
                   SLOW_SECONDS=str(slow_seconds), PYTHONPATH=str(ROOT / "exporter"))
        args = [str(a) for a in args]
        if not any(a.startswith("--config.file") for a in args):
            args.append(f"--config.file={OFFLINE_CONFIG}")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), "serve", f"--web.listen-address=127.0.0.1:{self.port}", *args],
                stdout=log, stderr=log, env=env, start_new_session=True)
        wait_for(self._up, timeout=20, what="minerwatch serve to answer")

    def _up(self):
        assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.log()}"
        try:
            urllib.request.urlopen(self.base + "/", timeout=2).read()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def get(self, path="/metrics", timeout=20, auth=None):
        request = urllib.request.Request(self.base + path)
        if auth:
            import base64

            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode()

    def samples(self, text=None):
        from prometheus_client.parser import text_string_to_metric_families

        out = {}
        for family in text_string_to_metric_families(text if text is not None else self.get()):
            for s in family.samples:
                out[(s.name, s.labels.get("collector"))] = s.value
        return out

    def log(self):
        return self.log_path.read_text()

    def signal(self, signum):
        os.kill(self.proc.pid, signum)

    def stop(self):
        stop_pid(self.proc)


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(*args, **kw):
        served = Served(tmp_path, *args, **kw)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def _exit_code_within(served, seconds):
    start = time.monotonic()
    try:
        code = served.proc.wait(seconds)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {seconds}s after the signal; log:\n{served.log()}")
    return code, time.monotonic() - start


def test_sigterm_stops_it_every_time(serve):
    for attempt in range(15):
        served = serve("--collector.disable-defaults", "--collector.host", "--collector.process")
        if attempt % 2:
            served.get()  # with HTTP threads around too
        served.signal(signal.SIGTERM)
        code, took = _exit_code_within(served, 5)
        log = served.log().splitlines()
        assert code == 0 and took < 2, (attempt, code, took, log)
        assert "received SIGTERM" in log[-2] and log[-1].endswith("msg=stopped"), log


def test_sigint_stops_it_too(serve):
    served = serve("--collector.disable-defaults", "--collector.host")
    served.signal(signal.SIGINT)
    assert _exit_code_within(served, 5)[0] == 0
    assert "received SIGINT" in served.log()


def test_sigterm_lets_the_scrape_in_flight_finish(serve):
    served = serve("--collector.disable-defaults", "--collector.host", "--collector.slow",
                   "--collector.timeout=10", slow_seconds=1.5)
    answer = {}
    scrape = threading.Thread(target=lambda: answer.setdefault("text", served.get()))
    scrape.start()
    wait_for(served.started_path.exists, what="the slow collector to start")
    served.signal(signal.SIGTERM)
    scrape.join(10)
    code, took = _exit_code_within(served, 10)
    samples = served.samples(answer["text"])  # a whole answer, not a reset connection
    assert samples[("minerwatch_scrape_collector_success", "slow")] == 1
    assert samples[("minerwatch_test_slow_runs", None)] == 1
    assert code == 0 and took < 4, served.log()


def test_a_stuck_collector_fails_alone_and_does_not_block_shutdown(serve):
    served = serve("--collector.disable-defaults", "--collector.host", "--collector.slow", "--collector.timeout=1")
    served.gate.touch()  # the slow collector now hangs
    start = time.monotonic()
    first = served.samples()
    assert time.monotonic() - start < 3
    assert first[("minerwatch_scrape_collector_success", "slow")] == 0
    assert first[("minerwatch_scrape_collector_success", "host")] == 1
    assert "collector slow: no answer within 1s: reported failed, left running" in served.log()

    second = served.samples()  # still stuck: failed at once, not started again beside itself
    assert second[("minerwatch_scrape_collector_success", "slow")] == 0
    assert second[("minerwatch_scrape_collector_duration_seconds", "slow")] < 0.5

    served.gate.unlink()  # unstuck: the old run ends, the next scrape runs it a second time only
    wait_for(lambda: "the run that ran out of time ended" in served.log(), what="the stuck run to end")
    third = served.samples()
    assert third[("minerwatch_scrape_collector_success", "slow")] == 1
    assert third[("minerwatch_test_slow_runs", None)] == 2

    served.gate.touch()
    assert served.samples()[("minerwatch_scrape_collector_success", "slow")] == 0
    served.signal(signal.SIGTERM)  # a collector thread stuck for good does not hold the exit
    assert _exit_code_within(served, 5)[0] == 0


def test_sighup_reloads_both_files_and_keeps_them_when_bad(serve, tmp_path):
    proc = build(tmp_path, [FakeProcess(pid=100, comm="ourminer", argv=["ourminer", "--fast"], utime=500)])
    config = tmp_path / "minerwatch.yml"
    config.write_text("network: {resolve_max_names: 0}\n")
    web = tmp_path / "web.yml"
    web.write_text("")
    served = serve("--collector.disable-defaults", "--collector.process", f"--path.procfs={proc}",
                   f"--config.file={config}", f"--web.config.file={web}")
    before = served.samples()
    assert before[("minerwatch_process_suspects", None)] == 0
    assert before[("minerwatch_config_last_reload_successful", None)] == 1
    loaded_at = before[("minerwatch_config_last_reload_success_timestamp_seconds", None)]

    # A good change: the new miner name makes the process suspect; basic auth comes on.
    config.write_text("network: {resolve_max_names: 0}\nsignatures: {extra_names: [ourminer]}\n")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    served.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in served.log(), what="the reload")
    with pytest.raises(urllib.error.HTTPError) as denied:
        served.get()
    assert denied.value.code == 401
    after = served.samples(served.get(auth="prometheus:s3cret"))
    assert after[("minerwatch_process_suspects", None)] == 1
    assert after[("minerwatch_config_last_reload_successful", None)] == 1
    assert after[("minerwatch_config_last_reload_success_timestamp_seconds", None)] > loaded_at

    # A bad change: one error line, the metric at 0, the running configuration kept.
    config.write_text("process:\n  suspect_busy_cores: .nan\n")
    served.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in served.log(), what="the failed reload")
    errors = [line for line in served.log().splitlines() if "level=error" in line]
    assert errors == [f'ts={errors[0][3:27]} level=error logger=minerwatch msg="reload failed, still running the '
                      f'previous configuration: {config}:2: process.suspect_busy_cores: must be a finite number '
                      f'from 0 to 1024, not .nan"']
    kept = served.samples(served.get(auth="prometheus:s3cret"))
    assert kept[("minerwatch_process_suspects", None)] == 1
    assert kept[("minerwatch_config_last_reload_successful", None)] == 0
    assert kept[("minerwatch_config_last_reload_success_timestamp_seconds", None)] == \
        after[("minerwatch_config_last_reload_success_timestamp_seconds", None)]

    served.signal(signal.SIGTERM)
    assert _exit_code_within(served, 5)[0] == 0


def test_web_max_requests_reaches_the_server(serve):
    served = serve("--collector.disable-defaults", "--collector.slow", "--web.max-requests=1", slow_seconds=1.5)
    codes = []

    def scrape():
        try:
            served.get()
            codes.append(200)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)

    first = threading.Thread(target=scrape)
    first.start()
    wait_for(served.started_path.exists, what="the first scrape to start")
    scrape()  # a second scrape while the first runs: over the limit of 1
    first.join(10)
    assert sorted(codes) == [200, 503]


SERVE_IN_A_THREAD = textwrap.dedent("""\
    import signal, sys, threading, urllib.request
    from minerwatch import cli

    class Stop:  # what the Windows service hands over: wait(timeout) -> a signal number or None
        def __init__(self):
            self.event = threading.Event()

        def wait(self, timeout=None):
            return signal.SIGTERM if self.event.wait(timeout) else None

    stop, errors, port = Stop(), [], sys.argv[1]

    def body():  # not the main thread: installing signal handlers here would raise
        try:
            cli.serve_argv([f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
                            "--collector.host", f"--config.file={sys.argv[2]}"], stop)
        except BaseException as exc:
            errors.append(repr(exc))

    thread = threading.Thread(target=body)
    thread.start()
    for _ in range(300):
        try:
            body_text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            break
        except OSError:
            if not thread.is_alive():
                break
            thread.join(0.1)
    else:
        body_text = ""
    print("served" if "minerwatch_host_cpus" in body_text else "not served")
    stop.event.set()
    thread.join(30)
    print("stopped" if not thread.is_alive() else "still running", errors)
    print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
""")


def test_serve_argv_runs_serve_in_the_calling_thread_with_a_given_signal_source(tmp_path):
    """The Windows service's entry: `serve` in a thread that cannot install signal handlers,
    stopped through the object it was given; the process's own signal handling is left alone."""
    script = tmp_path / "serve_in_thread.py"
    script.write_text(SERVE_IN_A_THREAD)
    out = subprocess.run([sys.executable, str(script), str(free_port()), str(OFFLINE_CONFIG)],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.splitlines() == ["served", "stopped []", "True"], out.stderr
