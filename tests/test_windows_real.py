"""The Windows readers against the real pywin32 on a real Windows (the Windows CI workflow runs
these as an administrator); skipped everywhere else. They read and change nothing on the host
except one Application-log event."""

from __future__ import annotations

import logging
import os

import pytest

pytestmark = pytest.mark.skipif(os.name != "nt", reason="needs Windows and pywin32 (see .github/workflows/windows.yml)")


def test_real_readers_answer_without_error():
    from minerwatch import windows
    from minerwatch.windows.defender_events import ExclusionEventReader
    from minerwatch.windows.drivers import MsrDriverReader
    from minerwatch.windows.privileges import LockMemoryReader

    win32 = windows.load()
    assert win32 is not None
    assert isinstance(MsrDriverReader(win32.win32service).read(), list)
    assert isinstance(LockMemoryReader(win32.win32security).read(), list)
    events = ExclusionEventReader(win32.win32evtlog).read()
    assert events is None or isinstance(events, list)


def test_real_event_log_takes_a_record():
    import win32evtlog

    from minerwatch.windows.eventlog import EventLogHandler

    handler = EventLogHandler(win32evtlog)
    try:
        handler.emit(logging.LogRecord("minerwatch", logging.WARNING, __file__, 1, "minerwatch CI test event", None, None))
    finally:
        handler.close()


def test_collectors_expose_on_windows():
    from prometheus_client import CollectorRegistry, generate_latest

    from minerwatch.collectors.tuning import TuningCollector
    from minerwatch.collectors.windows import WindowsCollector
    from minerwatch.config import Config
    from minerwatch.collectors.base import Context

    registry = CollectorRegistry(auto_describe=False)
    registry.register(TuningCollector(Context(config=Config())))
    registry.register(WindowsCollector(Context(config=Config())))
    text = generate_latest(registry).decode()
    assert "minerwatch_tuning_source_up" in text and "minerwatch_windows_source_up" in text
