"""minerwatch as a Windows service, on pywin32's service framework.

The service runs `minerwatch serve` in-process with the flags stored on its command line (the
service's ImagePath, as windows_exporter keeps its flags), so `sc.exe qc minerwatch` shows what
runs. The service manager's stop and shutdown controls end the run loop the way SIGTERM does
on Linux: no new scrapes, the ones in flight finish, collectors close, then STOPPED.

A run that fails (bad config, port taken) is logged to the Event Log and raised: pywin32's host
then reports the service stopped with an error, and the recovery actions the installer sets
(restart after 5 s, 5 s, 60 s; failure flag on, so an error exit counts) bring it back.

Entry: `minerwatch.exe service [serve flags...]` is what the service manager starts (see
deploy/windows/entry.py); it hands the process to the service control dispatcher.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable, List, Optional

import servicemanager
import win32service
import win32serviceutil

from minerwatch.windows import eventlog

NAME = "minerwatch"
DISPLAY_NAME = "minerwatch exporter"
DESCRIPTION = "Prometheus exporter that catches cryptocurrency miners on this PC (port 9789)."
LOG_FILE = os.path.join(os.environ.get("ProgramData", r"C:\ProgramData"), "minerwatch", "minerwatch.log")
STOP_WAIT_HINT_MS = 30_000  # the drain: scrapes in flight finish, each collector at most its timeout

log = logging.getLogger("minerwatch.windows.service")


class StopRequest:
    """The run loop's signal source here (minerwatch/service.py, `cli.serve_argv`): `wait()`
    answers SIGTERM once the service manager asked the service to stop."""

    def __init__(self):
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        return signal.SIGTERM if self._event.wait(timeout) else None

    def close(self) -> None:
        pass


def run_exporter(argv: List[str], stop: StopRequest) -> None:
    """`minerwatch serve ARGV` in this thread, stopped through `stop` instead of OS signals.

    The service manager runs a service's body in a thread of its own, where signal handlers
    cannot be installed; so the run loop is handed `stop` as its signal source.
    """
    from minerwatch import cli  # here: the service module must import without the CLI's imports

    cli.serve_argv(argv, stop)


class MinerwatchService(win32serviceutil.ServiceFramework):
    _svc_name_ = NAME
    _svc_display_name_ = DISPLAY_NAME
    _svc_description_ = DESCRIPTION

    argv: List[str] = []  # the serve flags, from the service's command line
    run: Callable[[List[str], StopRequest], None] = staticmethod(run_exporter)
    log_file: Optional[str] = LOG_FILE

    def __init__(self, args):
        super().__init__(args)
        self.stop_request = StopRequest()

    def SvcStop(self):
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_MS)
        self.stop_request.set()

    def SvcShutdown(self):  # Windows shutting down: the same clean stop
        self.SvcStop()

    def SvcDoRun(self):
        import win32evtlog

        from minerwatch import logs

        logs.setup("info", "logfmt")  # until `serve` applies --log.level: the start is logged
        handlers = eventlog.attach(win32evtlog, self.log_file)
        try:
            log.info("service starting: minerwatch serve %s", " ".join(self.argv))
            try:
                self.run(list(self.argv), self.stop_request)
            except SystemExit as exc:  # click's exit paths: 0 is a clean stop
                if exc.code not in (0, None):
                    log.error("service stopped: exit status %s", exc.code)
                    raise RuntimeError(f"minerwatch serve exited with status {exc.code}") from None
            except Exception as exc:  # click's errors name the flag in format_message()
                reason = exc.format_message() if hasattr(exc, "format_message") else str(exc)
                log.error("service failed, the service manager's recovery restarts it: %s", reason)
                raise
            log.info("service stopped")
        finally:
            eventlog.detach(handlers)


def main(argv: List[str]) -> None:
    """What the service manager starts: `minerwatch.exe service FLAGS...`."""
    MinerwatchService.argv = list(argv)
    servicemanager.Initialize(NAME, None)
    servicemanager.PrepareToHostSingle(MinerwatchService)
    servicemanager.StartServiceCtrlDispatcher()
