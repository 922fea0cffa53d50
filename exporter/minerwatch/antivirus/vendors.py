"""Exclusions a software vendor recommends for its own programs (data/vendor_exclusions.txt).

1C:Enterprise, SQL Server and Veeam tell administrators to exclude their folders and processes
from antivirus scanning; their servers and backups then run busy at night under an exclusion,
which is what a hidden miner looks like too. An exclusion counts as the vendor's only for a
process whose own executable path (not its name) is one of that vendor's programs, and only if
the exclusion is one the vendor recommends: the same folder exclusion still flags any other
program put in that folder, a recommended process name still flags a program of that name
anywhere else, and a broader exclusion (C:\\Program Files) flags the vendor's program too.
"""

from __future__ import annotations

import ntpath
import posixpath
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from minerwatch.antivirus.model import GLOB, PATH, PREFIX, PROCESS, REGEX, Exclusion, expand_windows_vars
from minerwatch.data import VENDOR_EXCLUSIONS, shipped_lines

SHIPPED = VENDOR_EXCLUSIONS
KINDS = ("program", "folder", "process")

# What %VAR% means when the exporter's environment lacks it (Windows' own defaults).
WINDOWS_DEFAULTS = {
    "ProgramFiles": "C:\\Program Files",
    "ProgramFiles(x86)": "C:\\Program Files (x86)",
    "CommonProgramFiles": "C:\\Program Files\\Common Files",
    "CommonProgramFiles(x86)": "C:\\Program Files (x86)\\Common Files",
    "ProgramData": "C:\\ProgramData",
    "windir": "C:\\Windows",
    "SystemRoot": "C:\\Windows",
    "SystemDrive": "C:",
}


class VendorListError(ValueError):
    """A line of a vendor list that is not VENDOR WHAT VALUE; str() names file:line."""


@dataclass(frozen=True)
class VendorEntry:
    vendor: str
    what: str  # program | folder | process
    value: str

    @property
    def windows(self) -> bool:
        if self.what == "process" and self.value.casefold().endswith(".exe"):
            return True  # a bare Windows program name
        return _is_windows(self.value)


def _is_windows(value: str) -> bool:
    return "\\" in value or value.startswith("%") or bool(re.match(r"[A-Za-z]:", value))


def parse_vendor_list(lines: Iterable[str], where: str) -> List[VendorEntry]:
    entries = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split(None, 2)
        if len(words) != 3 or words[1] not in KINDS:
            raise VendorListError(f"{where}:{number}: expected VENDOR program|folder|process VALUE, got {line[:80]!r}")
        entries.append(VendorEntry(words[0], words[1], words[2]))
    return entries


def _norm(path: str, windows: bool) -> str:
    if windows:
        return ntpath.normpath(path.replace("/", "\\")).casefold().rstrip("\\")
    return posixpath.normpath(path).rstrip("/") if path else path


def _pattern(pattern: str, windows: bool, subtree: bool) -> re.Pattern:
    """`*` (one folder name or part of it), `**` (any folders); the path itself, or with
    `subtree` anything under it too."""
    sep = "\\" if windows else "/"
    not_sep = "[^\\\\]" if windows else "[^/]"
    norm, out, i = _norm(pattern, windows), [], 0
    while i < len(norm):
        if norm.startswith("**" + sep, i):
            out.append("(?:.*" + re.escape(sep) + ")?")
            i += 3
        elif norm.startswith("**", i):
            out.append(".*")
            i += 2
        elif norm[i] == "*":
            out.append(not_sep + "*")
            i += 1
        elif norm[i] == "?":
            out.append(not_sep)
            i += 1
        else:
            out.append(re.escape(norm[i]))
            i += 1
    tail = "(?:" + re.escape(sep) + ".*)?" if subtree else ""
    return re.compile("".join(out) + tail + "\\Z", re.DOTALL)


# A ClamAV ExcludePath regex that is only an anchored literal path (^/opt/1cv8/), as a path.
_LITERAL_REGEX = re.compile(r"\^((?:[^\\.^$*+?()\[\]{}|]|\\.)+?)(?:/|/\.\*|\$)?\Z")


def _regex_as_path(value: str) -> Optional[str]:
    m = _LITERAL_REGEX.match(value)
    return re.sub(r"\\(.)", r"\1", m.group(1)) if m else None


@dataclass
class _Vendor:
    programs: List[re.Pattern]
    folders: List[re.Pattern]
    names: frozenset  # recommended process exclusions by name (casefolded on Windows)


class VendorExclusions:
    """The vendors' lists, compiled; `vendor_of()` says whether an exclusion is the vendor's own
    recommendation for the program a process runs."""

    def __init__(self, entries: Iterable[VendorEntry], environ: Optional[Mapping[str, str]] = None):
        env = dict(WINDOWS_DEFAULTS)
        env.update(environ or {})
        self.environ = env
        # (vendor, windows) -> compiled lists: a Windows exclusion is only compared with Windows values
        self._vendors: Dict[Tuple[str, bool], _Vendor] = {}
        for e in entries:
            windows = e.windows
            value = expand_windows_vars(e.value, env) if windows else e.value
            v = self._vendors.setdefault((e.vendor, windows), _Vendor([], [], frozenset()))
            if e.what == "program":
                v.programs.append(_pattern(value, windows, subtree=False))
            elif e.what == "folder":
                v.folders.append(_pattern(value, windows, subtree=True))
            else:
                v.names = v.names | {value.casefold() if windows else value}

    def __bool__(self) -> bool:
        return bool(self._vendors)

    def vendor_of(self, exclusion: Exclusion, exe: str) -> str:
        """The vendor whose recommended exclusion this is and whose program `exe` is; "" if none."""
        if not exe:
            return ""  # the name alone (comm) never makes an exclusion the vendor's
        return _vendor_of(self, exclusion, exe)

    def _check(self, exclusion: Exclusion, exe: str) -> str:
        windows = exclusion.windows
        program = _norm(exe, windows)
        for (vendor, flavour), lists in self._vendors.items():
            if flavour != windows or not any(p.match(program) for p in lists.programs):
                continue
            if self._recommended(exclusion, lists, program):
                return vendor
        return ""

    def _recommended(self, exclusion: Exclusion, lists: _Vendor, program: str) -> bool:
        windows = exclusion.windows
        value = expand_windows_vars(exclusion.value, self.environ) if windows else exclusion.value
        if exclusion.kind == PATH:
            if exclusion.syntax == REGEX:
                value = _regex_as_path(value)
                if value is None:
                    return False  # a pattern broader than a folder: not one the vendor wrote
            elif exclusion.syntax not in (GLOB, PREFIX):
                return False
            path = _norm(value, windows)
            return path == program or any(f.match(path) for f in lists.folders)
        if exclusion.kind == PROCESS:
            if "/" in value or (windows and "\\" in value):
                return _norm(value, windows) == program  # that very program, by its full path
            name = value.casefold() if windows else value
            base = ntpath.basename(program) if windows else posixpath.basename(program)
            return name in lists.names and name == base
        return False  # extensions and the rest: never a vendor's recommendation for a program


@lru_cache(maxsize=4096)  # a scan asks again for every process under the same exclusion
def _vendor_of(vendors: VendorExclusions, exclusion: Exclusion, exe: str) -> str:
    return vendors._check(exclusion, exe)


def shipped_vendors(environ: Optional[Mapping[str, str]] = None) -> VendorExclusions:
    """The shipped list (a broken one is a packaging mistake: it raises)."""
    return VendorExclusions(parse_vendor_list(shipped_lines(SHIPPED), SHIPPED), environ)
