"""Stop signals and a deadline raised as exceptions, so that output half written is removed.

A command that writes a directory under a temporary name and renames it when whole (`minerwatch
evidence`) must not leave the temporary one behind when it is stopped. SIGTERM (systemd,
`timeout`), SIGINT (Ctrl-C) and SIGHUP (a closed terminal) would end the process at once; within
`stop_signals_raise()` they raise `Stopped` in the main thread instead, so `except` and `finally`
blocks run, and `end_by` then ends the process by that signal, as its sender expects. Within
`deadline(seconds)` SIGALRM raises `TimedOut` the same way: a step that blocks where nothing
should is cut short. Clean-up runs `shielded()`: a signal or the deadline arriving meanwhile waits
until it is done. Both are BaseExceptions: `except Exception` in a collector must not swallow
them. Windows has no SIGHUP and no SIGALRM: there the deadline is not enforced.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Iterator, Optional

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


class Stopped(BaseException):
    """A stop signal arrived; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class TimedOut(BaseException):
    """The deadline passed."""


class _Shield:
    depth = 0
    pending: Optional[BaseException] = None


def _raise_or_hold(exc: BaseException) -> None:
    if _Shield.depth:
        if _Shield.pending is None or isinstance(exc, Stopped):  # stopping outranks a deadline
            _Shield.pending = exc
        return
    raise exc


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Clean-up that a stop signal or the deadline must not cut short: they are raised after it
    (a deadline only when no other exception is on its way out already)."""
    _Shield.depth += 1
    try:
        yield
    finally:
        _Shield.depth -= 1
        pending, _Shield.pending = (_Shield.pending, None) if _Shield.depth == 0 else (None, _Shield.pending)
        if isinstance(pending, Stopped) or (pending is not None and sys.exc_info()[1] is None):
            raise pending


def _on_stop(signum, frame) -> None:
    for other in STOP_SIGNALS:  # the first one counts; more while cleaning up change nothing
        signal.signal(other, signal.SIG_IGN)
    _raise_or_hold(Stopped(signum))


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within: SIGTERM, SIGINT and SIGHUP raise `Stopped` in the main thread."""
    previous = {signum: signal.signal(signum, _on_stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def end_by(exc: Stopped) -> None:
    """End the process by the signal that stopped it, now that it has cleaned up."""
    signal.signal(exc.signum, signal.SIG_DFL)
    if os.name == "posix":
        os.kill(os.getpid(), exc.signum)
    raise SystemExit(128 + exc.signum)  # where a signal cannot end the process (Windows)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within: `TimedOut` raised in the main thread once `seconds` have passed (0: never)."""
    if not seconds or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum, frame) -> None:
        _raise_or_hold(TimedOut(seconds))

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
