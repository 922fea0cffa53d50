"""One antivirus exclusion, and whether it covers a process; shared by every product's reader.

Matching mirrors the products' own rules:
- Defender (Windows) paths are case-insensitive, `\\`-separated, may hold `%VAR%` machine
  variables, and `*`/`?` stand for characters inside one folder name; a folder covers its subtree.
- Defender for Endpoint on Linux uses the same wildcards on case-sensitive `/` paths.
- ClamAV's ExcludePath is a POSIX extended regular expression searched anywhere in the path;
  OnAccessExcludePath is a directory and its subtree.
Process exclusions name a program (`xmrig.exe`) or its full path; extension exclusions match the
executable's extension. IP and user exclusions are counted but never matched: clamonacc's own
documentation tells everyone to exclude root and the clamav user, so matching them would make
every root process a suspect.
"""

from __future__ import annotations

import ntpath
import posixpath
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, List, Mapping, Optional

from minerwatch.text import host_text

PATH, PROCESS, EXTENSION, IP, USER = "path", "process", "extension", "ip", "user"

# How `value` is read: Defender/MDATP wildcards, ClamAV regex or directory, a plain word.
GLOB, REGEX, PREFIX, LITERAL = "glob", "regex", "prefix", "literal"


class SourceError(Exception):
    """A source that is there but cannot be read or parsed; str() is one line for the log.

    The message often quotes the file (a bad line, a name): made safe here, once for every reader.
    """

    def __init__(self, message: str) -> None:
        super().__init__(host_text(message, 1024))


@dataclass(frozen=True)
class Exclusion:
    product: str  # defender | mdatp | clamav
    kind: str  # path | process | extension | ip | user
    value: str  # as the product stores it, shown to people unchanged
    syntax: str = GLOB
    windows: bool = False  # case-insensitive, backslash paths
    where: str = field(default="", compare=False)  # file:line or registry key; moving a line is no change

    def __post_init__(self) -> None:
        # Exclusion values are file and program names a local administrator (or a miner's
        # installer) wrote: safe text from here on, in the same escaped form as process paths,
        # so that an exclusion of a path with a bad byte still matches that path.
        object.__setattr__(self, "value", host_text(self.value))
        object.__setattr__(self, "where", host_text(self.where))

    def describe(self) -> str:
        return f"{self.product} {self.kind} exclusion {self.value}"


@dataclass
class Reading:
    """What one read of a source found."""

    exclusions: List[Exclusion] = field(default_factory=list)
    # mdatp exclusionsMergePolicy: True when exclusions added locally (`mdatp exclusion ... add`,
    # not in the managed file) apply as well; None where the source does not say.
    local_merged: Optional[bool] = None


def decode_text(data: bytes, where: str) -> str:
    """UTF-8 (with or without BOM), or UTF-16 with its BOM as Windows tools write it."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceError(f"{where}:{line}: not UTF-8 or UTF-16 text") from None


# -- Windows machine variables --------------------------------------------------------------------
_VAR = re.compile(r"%([^%\\/]+)%")


def expand_windows_vars(value: str, environ: Mapping[str, str]) -> str:
    """Expand %VAR% from the exporter's environment; unknown ones stay as written.

    Defender itself only expands machine variables and those of NT AUTHORITY\\SYSTEM; the exporter
    runs as a service, so its environment is the one Defender uses.
    """
    folded = {k.upper(): v for k, v in environ.items()}
    return _VAR.sub(lambda m: folded.get(m.group(1).upper(), m.group(0)), value)


# -- path helpers ---------------------------------------------------------------------------------
@lru_cache(maxsize=4096)  # every exclusion normalizes the same exe and cwd again
def _normalize(path: str, windows: bool) -> str:
    if windows:
        return ntpath.normpath(path.replace("/", "\\")).casefold()
    return posixpath.normpath(path) if path else path


def _glob_regex(pattern: str, windows: bool) -> re.Pattern:
    """A Defender-style path pattern as a regex covering the path and everything under it."""
    sep = "\\" if windows else "/"
    norm = _normalize(pattern, windows).rstrip(sep)
    not_sep = "[^\\\\]" if windows else "[^/]"
    out = []
    for ch in norm:
        out.append(not_sep + "*" if ch == "*" else not_sep if ch == "?" else re.escape(ch))
    return re.compile("".join(out) + "(?:" + re.escape(sep) + ".*)?\\Z", re.DOTALL)


def _name_regex(pattern: str, windows: bool) -> re.Pattern:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body + "\\Z", re.DOTALL | (re.IGNORECASE if windows else 0))


_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v", "blank": " \\t", "punct": "!-/:-@\\[-`{-~", "xdigit": "0-9A-Fa-f",
    "cntrl": "\\x00-\\x1f\\x7f", "print": " -~", "graph": "!-~",
}


def compile_posix_ere(pattern: str) -> re.Pattern:
    """ClamAV compiles ExcludePath as a POSIX ERE; Python's re reads the same text except for
    bracket classes such as [[:digit:]], which are translated here. Raises re.error."""
    translated = re.sub(r"\[:(\w+):\]", lambda m: _POSIX_CLASSES.get(m.group(1), m.group(0)), pattern)
    return re.compile(translated)


def _basename(path: str, windows: bool) -> str:
    return ntpath.basename(path) if windows else posixpath.basename(path)


def _extension(path: str, windows: bool) -> str:
    name = _basename(path, windows)
    return name.rpartition(".")[2] if "." in name.lstrip(".") else ""


# -- matching -------------------------------------------------------------------------------------
# A checker gets (exe, cwd, comm) and answers what it covers: "executable", "working directory",
# "name", "extension", or "" when it covers nothing.
Checker = Callable[[str, str, str], str]


class Compiled:
    """An exclusion ready to test against processes (compiled once per change of the set)."""

    def __init__(self, exclusion: Exclusion, environ: Mapping[str, str]):
        self.exclusion = exclusion
        self.check: Optional[Checker] = _compile(exclusion, environ)

    def covers(self, exe: str, cwd: str, comm: str) -> str:
        return self.check(exe, cwd, comm) if self.check else ""


def _compile(exc: Exclusion, environ: Mapping[str, str]) -> Optional[Checker]:
    windows = exc.windows
    value = expand_windows_vars(exc.value, environ) if windows else exc.value
    norm = lambda p: _normalize(p, windows)  # noqa: E731

    if exc.kind == PATH and exc.syntax == REGEX:
        regex = compile_posix_ere(value)

        def check_regex(exe, cwd, comm):
            if exe and regex.search(exe):
                return "executable"
            # A directory pattern such as ^/opt/miner/ names the directory with its slash.
            if cwd and (regex.search(cwd) or regex.search(cwd.rstrip("/") + "/")):
                return "working directory"
            return ""

        return check_regex

    if exc.kind == PATH:  # GLOB or PREFIX: a directory (or file) and everything under it
        # PREFIX (ClamAV's directory) reads a rare literal * or ? as a wildcard: the broader side.
        regex = _glob_regex(value, windows)

        def check_path(exe, cwd, comm):
            if exe and regex.match(norm(exe)):
                return "executable"
            if cwd and regex.match(norm(cwd)):
                return "working directory"
            return ""

        return check_path

    if exc.kind == PROCESS:
        if "/" in value or (windows and "\\" in value):  # a full path: that program (or folder)
            regex = _glob_regex(value, windows)
            return lambda exe, cwd, comm: "executable" if exe and regex.match(norm(exe)) else ""
        regex = _name_regex(value, windows)

        def check_name(exe, cwd, comm):
            if exe and regex.match(_basename(exe, windows)):
                return "name"
            # Linux cuts comm to 15 characters; it is only the fallback when exe is unreadable.
            if not exe and comm and (regex.match(comm) or (len(comm) == 15 and value.startswith(comm))):
                return "name"
            return ""

        return check_name

    if exc.kind == EXTENSION:
        wanted = value.lstrip("*").lstrip(".")
        if not wanted:
            return None
        regex = _name_regex(wanted, windows)
        return lambda exe, cwd, comm: "extension" if exe and regex.match(_extension(exe, windows)) else ""

    return None  # ip, user: counted, not matched (see the module docstring)
