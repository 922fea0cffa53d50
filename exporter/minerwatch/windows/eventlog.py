"""Log records to the Windows Event Log (Application log, source "minerwatch") and to a file.

Written with win32evtlog's RegisterEventSource / ReportEvent. Event IDs say the level (1 info,
2 warning, 3 error) so Event Viewer filters and forwarded-event subscriptions can pick errors.
The installer registers the source with EventCreate.exe as its message file, whose messages
print the text as given; without that registration Event Viewer still shows the text, under a
"description cannot be found" preamble.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from typing import Optional

from minerwatch.logs import LogfmtFormatter

SOURCE = "minerwatch"
EVENT_IDS = {logging.INFO: 1, logging.WARNING: 2, logging.ERROR: 3}
MAX_STRING = 31839  # ReportEvent's limit on one insertion string, in characters


class EventLogHandler(logging.Handler):
    def __init__(self, win32evtlog, source: str = SOURCE, level: int = logging.INFO):
        super().__init__(level)
        self.e = win32evtlog
        self.source = win32evtlog.RegisterEventSource(None, source)  # not `handle`: Handler.handle() is a method
        self.setFormatter(LogfmtFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if len(text) > MAX_STRING:
                text = text[: MAX_STRING - 1] + "…"
            if record.levelno >= logging.ERROR:
                kind, event_id = self.e.EVENTLOG_ERROR_TYPE, EVENT_IDS[logging.ERROR]
            elif record.levelno >= logging.WARNING:
                kind, event_id = self.e.EVENTLOG_WARNING_TYPE, EVENT_IDS[logging.WARNING]
            else:
                kind, event_id = self.e.EVENTLOG_INFORMATION_TYPE, EVENT_IDS[logging.INFO]
            self.e.ReportEvent(self.source, kind, 0, event_id, None, [text], None)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self.source is not None:
            try:
                self.e.DeregisterEventSource(self.source)
            finally:
                self.source = None
        super().close()


def file_handler(path: str, max_bytes: int = 10 * 1024 * 1024, backups: int = 3) -> logging.Handler:
    """A size-rotated logfmt file: C:\\ProgramData\\minerwatch\\minerwatch.log under the service."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(LogfmtFormatter())
    return handler


def attach(win32evtlog, log_file: Optional[str], logger_name: str = "minerwatch") -> list:
    """Add the Event Log and file handlers to the `minerwatch` logger, beside whatever
    logs.setup() puts on the root logger (which it replaces on every call); returns them."""
    handlers = []
    if win32evtlog is not None:
        handlers.append(EventLogHandler(win32evtlog))
    if log_file:
        handlers.append(file_handler(log_file))
    logger = logging.getLogger(logger_name)
    for handler in handlers:
        logger.addHandler(handler)
    return handlers


def detach(handlers, logger_name: str = "minerwatch") -> None:
    logger = logging.getLogger(logger_name)
    for handler in handlers:
        logger.removeHandler(handler)
        handler.close()
