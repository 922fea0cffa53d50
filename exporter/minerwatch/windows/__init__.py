"""Windows: the service, the Event Log writer and the readers of Windows-only signals.

Every reader takes the pywin32 modules it calls as arguments, so the tests drive it on Linux with
fakes shaped like pywin32 (tests/support/fakes/win32.py); `load()` gives the real ones on Windows.
"""

from __future__ import annotations

import importlib
import types
from typing import Optional

MODULES = ("win32service", "win32security", "win32evtlog", "winerror", "pywintypes")


def load() -> Optional[types.SimpleNamespace]:
    """The pywin32 modules the readers use, or None where pywin32 is not installed (not Windows)."""
    try:
        return types.SimpleNamespace(**{name: importlib.import_module(name) for name in MODULES})
    except ImportError:
        return None


def winerror_of(exc: BaseException) -> int:
    """The Windows error code of a pywintypes.error (or OSError), 0 if it has none."""
    code = getattr(exc, "winerror", None)
    if code is None and getattr(exc, "args", None):
        code = exc.args[0]
    return code if isinstance(code, int) else 0


class ReadFailed(Exception):
    """A Windows source is there but could not be read; str() is one line for the log."""


class SourceReads:
    """Reads through the Windows readers for one collector: a failing source is logged once per
    distinct problem (not on every scrape), and once more when it reads again."""

    def __init__(self, log) -> None:
        self._log = log
        self._errors: dict = {}

    def read(self, source: str, reader):
        """(True, reader.read()), or (False, None) when it failed."""
        try:
            value = reader.read()
        except ReadFailed as exc:
            if self._errors.get(source) != str(exc):
                self._log.error("cannot read %s: %s", source, exc)
            self._errors[source] = str(exc)
            return False, None
        if self._errors.pop(source, None):
            self._log.info("%s readable again", source)
        return True, value


def describe(exc: BaseException) -> str:
    """'FuncName: text (code N)' for a pywintypes.error, as the log line says it."""
    func = getattr(exc, "funcname", "") or ""
    text = getattr(exc, "strerror", "") or str(exc)
    code = winerror_of(exc)
    return f"{func + ': ' if func else ''}{text}{f' (code {code})' if code else ''}"
