"""Windows programs out of their folders, and executables in folders any user can write.

A miner on a Windows desk takes the name of a system process or of a program every desk runs
(`svchost.exe`, `MsMpEng.exe`, `chrome.exe`) and lives where the user may write: AppData,
ProgramData, %TEMP%, C:\\Users\\Public. The shipped table data/windows_names.txt (its header
describes the format) says where each such name really runs from, and which folders under the
user-writable ones are real programs' own (per-user Chrome, Teams, Zoom, OneDrive...).

`out_of_place(exe)`: a listed name runs from another folder (`name_mismatch`).
`in_user_folder(exe)`: the executable lies under AppData or ProgramData, outside every folder of
the table (`exe_in_temp_dir`, as /tmp on Linux; %TEMP%, Downloads and Users\\Public are matched
by signatures' own temp folder patterns already).

Only Windows paths with a drive letter or a UNC share are judged: POSIX paths never match, so
nothing changes on Linux. The table is read once, on first use; a line it cannot parse is a
broken install and raises, naming the file and line.
"""

from __future__ import annotations

import functools
import ntpath
import re
from typing import Dict, Iterable, List, Optional, Tuple

from minerwatch.data import WINDOWS_NAMES, shipped_lines

SHIPPED = WINDOWS_NAMES
ANY = "*"  # a table line for every executable in its folder

# Placeholders of the table, as regexes over the lower-cased folder (any drive).
_DRIVE = r"[a-z]:"
_PLACEHOLDERS = {
    "%systemroot%": _DRIVE + r"\\windows",
    "%programfiles%": _DRIVE + r"\\program files(?: \((?:x86|arm)\))?",
    "%programdata%": _DRIVE + r"\\programdata",
    "%userprofile%": _DRIVE + r"\\users\\[^\\]+",
    "%appdata%": _DRIVE + r"\\users\\[^\\]+\\appdata\\roaming",
    "%localappdata%": _DRIVE + r"\\users\\[^\\]+\\appdata\\local",
}
_PLACEHOLDER_RE = re.compile("|".join(re.escape(k) for k in _PLACEHOLDERS))

# Folders any user may write, beyond signatures.TEMP_DIR_PATTERNS: the profile's AppData (Local,
# LocalLow, Roaming) and ProgramData, where users may create folders and files.
_USER_WRITABLE_RE = re.compile(r"^[a-z]:\\(?:users\\[^\\]+\\appdata|programdata)\\")
_WINDOWS_PATH_RE = re.compile(r"^(?:[a-z]:\\|\\\\)", re.IGNORECASE)
MAX_PATH_CHARS = 1024  # longer is no installed program's path; the regexes stay bounded


class WindowsNamesError(ValueError):
    """A line of the table that is not NAME FOLDER; str() names file:line."""


def _folder_regex(folder: str, where: str) -> str:
    """A table FOLDER as a regex over a lower-cased, normalised folder path."""
    text = folder.strip().lower().replace("/", "\\").rstrip("\\")
    out, i = [], 0
    while i < len(text):
        m = _PLACEHOLDER_RE.match(text, i)
        if m:
            out.append(_PLACEHOLDERS[m.group(0)])
            i = m.end()
        elif text.startswith("\\**", i):
            out.append(r"(?:\\.*)?")
            i += 3
        elif text[i] == "*":
            out.append(r"[^\\]*")
            i += 1
        elif text[i] == "%":
            raise WindowsNamesError(f"{where}: unknown placeholder in {folder.strip()!r}")
        else:
            out.append(re.escape(text[i]))
            i += 1
    regex = "".join(out)
    if not regex.startswith(_DRIVE):
        raise WindowsNamesError(f"{where}: a folder starts with a placeholder, got {folder.strip()!r}")
    return regex


def parse(lines: Iterable[str], name: str = SHIPPED) -> Tuple[Dict[str, "re.Pattern[str]"], "re.Pattern[str]"]:
    """(name -> regex of its folders, regex of every table folder with the executable's name
    before it) from the table's lines."""
    folders: Dict[str, List[str]] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split(None, 1)
        if len(words) != 2:
            raise WindowsNamesError(f"{name}:{number}: expected NAME FOLDER, got {line[:80]!r}")
        exe_name = words[0].lower()
        if exe_name != ANY and ("\\" in exe_name or "/" in exe_name or "*" in exe_name):
            raise WindowsNamesError(f"{name}:{number}: NAME is a file name or *, got {words[0][:80]!r}")
        folders.setdefault(exe_name, []).append(_folder_regex(words[1], f"{name}:{number}"))
    by_name = {
        exe_name: re.compile("(?:" + "|".join(regexes) + r")\Z")
        for exe_name, regexes in folders.items() if exe_name != ANY
    }
    # "name|folder": one search for "is this executable where a program of the table lives"
    places = [
        ("[^|]*" if exe_name == ANY else re.escape(exe_name)) + r"\|(?:" + "|".join(regexes) + ")"
        for exe_name, regexes in folders.items()
    ]
    return by_name, re.compile("(?:" + "|".join(places) + r")\Z")


@functools.lru_cache(maxsize=1)
def _table() -> Tuple[Dict[str, "re.Pattern[str]"], "re.Pattern[str]"]:
    return parse(shipped_lines(SHIPPED))


def _split(exe: str) -> Optional[Tuple[str, str]]:
    """(folder, file name), lower-cased and normalised, of a Windows path; None otherwise."""
    if exe.startswith("\\\\?\\"):  # the long-path prefix names the same file
        exe = exe[4:]
    if not exe or len(exe) > MAX_PATH_CHARS or not _WINDOWS_PATH_RE.match(exe):
        return None
    path = ntpath.normpath(exe).lower()
    folder, name = ntpath.split(path)
    return (folder.rstrip("\\"), name) if name else None


def out_of_place(exe: str) -> bool:
    """Whether `exe` carries the name of a Windows program of the table outside its folders
    (False too for a name not listed, or a path that is not a Windows one)."""
    split = _split(exe)
    if split is None:
        return False
    folder, name = split
    regex = _table()[0].get(name)
    return regex is not None and regex.match(folder) is None


def in_user_folder(exe: str) -> bool:
    """Whether `exe` lies under AppData or ProgramData and outside every folder of the table."""
    split = _split(exe)
    if split is None:
        return False
    folder, name = split
    if not _USER_WRITABLE_RE.match(folder + "\\"):
        return False
    return _table()[1].match(f"{name}|{folder}") is None
