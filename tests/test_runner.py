"""The collector runner bounds each collector's time per scrape (issue 11, item 2), with real
threads and a collector that really hangs."""

import threading
import time

from prometheus_client.core import GaugeMetricFamily

from minerwatch.collectors.base import Collector, CollectorRunner


class Hanging(Collector):
    """Blocks in collect() until released, as a read from a hung file system would."""

    name = "hanging"

    def __init__(self):
        super().__init__(context=None)
        self.release = threading.Event()
        self.starts = 0
        self.closed = False

    def collect(self):
        self.starts += 1
        self.release.wait()
        yield GaugeMetricFamily("minerwatch_test_hanging_starts", "Runs started.", value=self.starts)

    def close(self):
        self.closed = True


class Quick(Collector):
    name = "quick"

    def __init__(self, value=1.0, fail=False):
        super().__init__(context=None)
        self.value, self.fail = value, fail

    def collect(self):
        if self.fail:
            raise OSError("cannot read")
        yield GaugeMetricFamily("minerwatch_test_quick", "A value.", value=self.value)


def scrape(runner):
    """(sample values by (name, collector label or None), seconds the scrape took)"""
    start = time.monotonic()
    out = {}
    for family in runner.collect():
        for s in family.samples:
            out[(s.name, s.labels.get("collector"))] = s.value
    return out, time.monotonic() - start


def test_a_hanging_collector_fails_its_scrape_and_the_others_go_on():
    hanging, quick = Hanging(), Quick()
    runner = CollectorRunner([hanging, quick], timeout=0.3)
    try:
        first, took = scrape(runner)
        assert took < 1.5
        assert first[("minerwatch_scrape_collector_success", "hanging")] == 0
        assert first[("minerwatch_scrape_collector_success", "quick")] == 1
        assert first[("minerwatch_test_quick", None)] == 1
        assert 0.3 <= first[("minerwatch_scrape_collector_duration_seconds", "hanging")] < 1.5

        # Still stuck: reported failed at once, not started a second time beside itself.
        second, took = scrape(runner)
        assert second[("minerwatch_scrape_collector_success", "hanging")] == 0
        assert second[("minerwatch_scrape_collector_duration_seconds", "hanging")] < 0.2
        assert hanging.starts == 1

        hanging.release.set()  # the host answers again: the old run ends, the lock is free
        assert runner.idle(5)
        third, _ = scrape(runner)
        assert third[("minerwatch_scrape_collector_success", "hanging")] == 1
        assert third[("minerwatch_test_hanging_starts", None)] == 2
    finally:
        hanging.release.set()


def test_a_collector_that_raises_is_reported_failed():
    runner = CollectorRunner([Quick(fail=True)], timeout=5)
    samples, _ = scrape(runner)
    assert samples[("minerwatch_scrape_collector_success", "quick")] == 0
    assert ("minerwatch_test_quick", None) not in samples


def test_concurrent_scrapes_take_turns_on_a_slow_collector():
    class Slow(Quick):
        def collect(self):
            time.sleep(0.3)
            yield from super().collect()

    runner = CollectorRunner([Slow()], timeout=2)
    results = []
    threads = [threading.Thread(target=lambda: results.append(scrape(runner)[0])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[("minerwatch_scrape_collector_success", "quick")] for r in results] == [1, 1, 1]


def test_replace_swaps_collectors_and_hands_back_the_old_ones():
    old, new = Quick(1.0), Quick(2.0)
    runner = CollectorRunner([old], timeout=1)
    retired = runner.replace([new])
    assert retired.collectors == [old] and runner.collectors == [new]
    assert retired.idle(1)
    samples, _ = scrape(runner)
    assert samples[("minerwatch_test_quick", None)] == 2


def test_no_thread_for_a_collector_fails_that_scrape_only(monkeypatch):
    """At the task limit (thousands of open connections) Thread.start raises: the scrape still
    answers, the collector is reported failed, and it runs again once threads can start."""
    quick = Quick()
    runner = CollectorRunner([quick], timeout=1.0)
    real_start = threading.Thread.start

    def refuse(thread):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    first, _ = scrape(runner)
    assert first[("minerwatch_scrape_collector_success", "quick")] == 0
    monkeypatch.setattr(threading.Thread, "start", real_start)
    second, _ = scrape(runner)
    assert second[("minerwatch_scrape_collector_success", "quick")] == 1
    assert second[("minerwatch_test_quick", None)] == 1


class Recorder(Collector):
    """Records the thread each run happened in."""

    def __init__(self, name):
        super().__init__(context=None)
        self.name = name
        self.threads = []

    def collect(self):
        self.threads.append(threading.get_ident())
        yield GaugeMetricFamily(f"minerwatch_test_{self.name}", "A value.", value=1)


def test_each_collector_keeps_one_worker_thread_across_scrapes():
    """A thread per collector per scrape cost a thread start (and a new pid, which makes the
    process reader list /proc again) every time: the worker now lives across scrapes."""
    first, second = Recorder("first"), Recorder("second")
    runner = CollectorRunner([first, second], timeout=5)
    try:
        for _ in range(4):
            samples, _ = scrape(runner)
            assert samples[("minerwatch_scrape_collector_success", "first")] == 1
        assert len(set(first.threads)) == 1 and len(set(second.threads)) == 1
        assert first.threads[0] != second.threads[0] != threading.get_ident()
    finally:
        runner.close()
    deadline = time.monotonic() + 5
    while any(t.name.startswith("collector-first") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "close() did not end the worker"
        time.sleep(0.01)


class Handshake(Collector):
    """Waits until the other collector of the pair has started: only possible if both run at once."""

    def __init__(self, name, mine, theirs):
        super().__init__(context=None)
        self.name, self.mine, self.theirs = name, mine, theirs

    def collect(self):
        self.mine.set()
        ok = self.theirs.wait(3)
        yield GaugeMetricFamily(f"minerwatch_test_{self.name}", "Saw the other run.", value=1 if ok else 0)


def test_collectors_of_one_scrape_run_at_the_same_time():
    """Most of a collector's time is the kernel answering reads: the collectors of a scrape run
    together, and their families still come out in collector order."""
    a_started, b_started = threading.Event(), threading.Event()
    runner = CollectorRunner([Handshake("a", a_started, b_started), Handshake("b", b_started, a_started)],
                             timeout=5)
    try:
        families = list(runner.collect())
        assert [family.name for family in families][:2] == ["minerwatch_test_a", "minerwatch_test_b"]
        assert [family.samples[0].value for family in families[:2]] == [1, 1]  # each saw the other start
    finally:
        runner.close()
