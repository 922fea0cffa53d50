"""The exporter's run loop: serve until SIGTERM or SIGINT, reload on SIGHUP, drain, exit 0.

Signals reach the main thread through a socket it waits on (`signal.set_wakeup_fd`), not
through a Python handler alone: the kernel may deliver a process-directed signal to any thread
(an HTTP thread, a collector's), and a Python handler runs only when the main thread next runs
bytecode, which it never does while blocked in `Event.wait`. The C-level handler writes the
signal number to the socket from whichever thread took it, and that wakes the main thread.
"""

from __future__ import annotations

import logging
import select
import signal
import socket
import time
from typing import Callable, Iterable, Optional

from minerwatch import memory
from minerwatch.app import Options, build_collectors, build_context, enabled_collectors
from minerwatch.collectors.base import CollectorRunner
from minerwatch.serving.metrics import GaugeMetricFamily, Metric
from minerwatch.text import host_text

log = logging.getLogger("minerwatch")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNAL: Optional[int] = getattr(signal, "SIGHUP", None)  # not on Windows


class SignalSource:
    """Where the run loop takes its signals from: `wait(timeout)` returns the next signal number,
    or None after `timeout` seconds. SignalQueue is the OS's; `cli.serve_argv` takes any such
    object (the Windows service answers SIGTERM when the service manager says stop)."""

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Give back what `wait` used."""


class SignalQueue(SignalSource):
    """The signals the exporter acts on, as a queue the main thread can block on safely."""

    def __init__(self, signums: Iterable[int]):
        self._recv, self._send = socket.socketpair()
        self._recv.setblocking(False)
        self._send.setblocking(False)
        self._signums = [s for s in signums if s is not None]
        for signum in self._signums:
            signal.signal(signum, _noted)
        signal.set_wakeup_fd(self._send.fileno(), warn_on_full_buffer=False)

    @classmethod
    def install(cls) -> "SignalQueue":
        """Take over SIGTERM, SIGINT and SIGHUP; call first in the main thread, before any
        other thread starts, so no signal that arrives during start-up kills the process."""
        return cls(STOP_SIGNALS + (RELOAD_SIGNAL,))

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """The next signal received, or None after `timeout` seconds."""
        readable, _, _ = select.select([self._recv], [], [], timeout)
        if not readable:
            return None
        try:
            data = self._recv.recv(1)
        except BlockingIOError:
            return None
        return data[0] if data else None

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for signum in self._signums:
            signal.signal(signum, signal.SIG_DFL)
        self._recv.close()
        self._send.close()


def _noted(signum, frame) -> None:
    """The Python-level handler: nothing to do, the wakeup socket already carries the signal."""


class ReloadStatus:
    """`minerwatch_config_last_reload_*`, as Prometheus and Alertmanager expose theirs."""

    def __init__(self, wall_clock: Callable[[], float] = time.time):
        self._wall = wall_clock
        self.successful = True  # the configuration loaded at start-up counts as a success
        self.success_time = wall_clock()

    def record(self, ok: bool) -> None:
        self.successful = ok
        if ok:
            self.success_time = self._wall()

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "minerwatch_config_last_reload_successful",
            "1 if the last configuration reload (SIGHUP) succeeded, 0 if the old one was kept.",
            value=1.0 if self.successful else 0.0,
        )
        yield GaugeMetricFamily(
            "minerwatch_config_last_reload_success_timestamp_seconds",
            "Time of the last successful configuration load, in seconds since the epoch.",
            value=self.success_time,
        )

    def describe(self) -> Iterable[Metric]:
        return self.collect()


class Service:
    """A started exporter: the HTTP server, the collector runner, and how to rebuild them."""

    def __init__(self, server, runner: CollectorRunner, options: Options, web_config_file: Optional[str],
                 status: ReloadStatus, load_web_config: Callable[[Optional[str]], object]):
        self.server = server
        self.runner = runner
        self.options = options
        self.web_config_file = web_config_file
        self.status = status
        self._load_web_config = load_web_config

    def run(self, signals: SignalSource) -> None:
        """Serve until SIGTERM or SIGINT; SIGHUP reloads. Returns once drained and closed."""
        import threading

        thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)
        thread.start()
        while True:
            signum = signals.wait()
            if signum is None:
                continue
            if signum == RELOAD_SIGNAL:
                self.reload()
                continue
            if signum in STOP_SIGNALS:
                log.info("received %s, stopping after the requests in flight", signal.Signals(signum).name)
                break
        self.stop()

    def drain_seconds(self) -> float:
        # The longest a scrape can take: every collector at its time limit, one after another.
        return self.runner.timeout * max(len(self.runner.collectors), 1) + 1.0

    def stop(self) -> None:
        self.server.shutdown()  # no new connections
        if not self.server.drain(self.drain_seconds()):
            log.warning("requests still in flight after %.0fs; stopping anyway", self.drain_seconds())
        self.server.server_close()
        self.runner.close()
        log.info("stopped")

    def reload(self) -> bool:
        """Rebuild everything the config files drive with the same flags; swap it in only when
        all of it built, else keep what runs (one error line, the reload metric at 0)."""
        collectors = []
        try:
            web_config = self._load_web_config(self.web_config_file)
            context = build_context(self.options)
            collectors = build_collectors(context, enabled_collectors(self.options))
        except Exception as exc:  # ConfigError, or a collector that cannot start (OSError...)
            self.status.record(False)
            log.error("reload failed, still running the previous configuration: %s", host_text(str(exc)))
            return False
        old = self.runner.replace(collectors, context)
        self.server.set_web_config(web_config)
        self.status.record(True)
        idle = old.idle(self.runner.timeout)
        if not idle:
            log.warning("a collector of the previous configuration is still running; closing it anyway")
        old.close()  # the old collectors and their worker threads
        # The old process table's reader keeps a descriptor per process: release them now rather
        # than when the garbage collector gets to it (10,000 processes, two reloads: EMFILE) -
        # unless a scan still runs on them (then the reader's finalizer closes them later).
        if idle:
            for table in {id(c.context.processes): c.context.processes for c in old.collectors
                          if c.context.processes is not None}.values():
                table.reader.close()
        memory.release_free_memory()  # the old configuration's objects are gone: give their pages back
        log.info("configuration reloaded (collectors: %s)", ",".join(c.name for c in collectors))
        return True
