"""Regular expressions that users add (signatures.extra_patterns) run in linear time.

Python's `re` backtracks: a pattern such as `(a+)+$` against a long argument of `a`s takes
exponential time and would hang every scrape. User patterns are compiled with RE2 (google-re2),
whose matching time is linear in the input. Patterns RE2 does
not support (backreferences, look-around) are refused at start-up with the reason.
"""

from __future__ import annotations

import re


class UserPattern:
    """A compiled user pattern with `search(text)`, as `re.Pattern` offers it."""

    def __init__(self, pattern: str) -> None:
        import re2  # here, not at the top: about 2.5 MiB of RSS that hosts without user patterns keep

        options = re2.Options()
        options.log_errors = False
        options.max_mem = 8 << 20  # a pattern whose automaton is larger is refused, not built
        try:
            self._compiled = re2.compile(pattern, options)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise ValueError(f"not supported by the linear-time matcher (RE2): {reason}") from None
        self.pattern = pattern

    def search(self, text: str):
        # The whole text: RE2 is linear in it, and cutting it would let `$` match at the cut.
        return self._compiled.search(text)


def compile_user_pattern(pattern: str) -> UserPattern:
    """The compiled pattern; ValueError with a one-line reason when it cannot be used."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return UserPattern(pattern)
