"""ClamAV: the exclusions in clamd.conf, read the way clamd's own option parser reads them.

clamd.conf(5): one `Option Argument` per line, leading blanks ignored, a line starting with `#`
is a comment (a `#` later on a line belongs to the argument), an argument may be "quoted".
ExcludePath is a regular expression (clamdscan), OnAccessExcludePath a directory (clamonacc),
OnAccessExcludeUname / OnAccessExcludeUID / OnAccessExcludeRootUID exclude users.
"""

from __future__ import annotations

import re
from typing import List

from minerwatch.antivirus.model import PATH, PREFIX, REGEX, USER, LITERAL, Exclusion, Reading, SourceError
from minerwatch.antivirus.model import compile_posix_ere, decode_text

PRODUCT = "clamav"
KINDS = (PATH, USER)
DEFAULT_PATHS = ("/etc/clamav/clamd.conf", "/etc/clamd.d/scan.conf", "/usr/local/etc/clamd.conf")

_PATH_OPTIONS = {"ExcludePath": REGEX, "OnAccessExcludePath": PREFIX}
_BOOL = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


def parse_clamd(data: bytes, where: str) -> Reading:
    text = decode_text(data, where)
    out: List[Exclusion] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip(" \t\r")
        if len(line) <= 1 or line.startswith("#"):  # clamd skips lines this short too
            continue
        at = f"{where}:{number}"
        if line.startswith("Example"):
            # clamd refuses to start with its example file, so nothing in it is in force.
            return Reading([])
        split = re.search(r"[ \t]", line)
        if not split:
            raise SourceError(f"{at}: {line}: expected 'Option value'")
        option, arg = line[: split.start()], line[split.start():].strip(" \t")
        if arg.startswith('"'):
            end = arg.rfind('"')
            if end == 0:
                raise SourceError(f'{at}: {option}: missing closing "')
            arg = arg[1:end]
        if not arg:
            raise SourceError(f"{at}: {option}: empty value")

        if option in _PATH_OPTIONS:
            syntax = _PATH_OPTIONS[option]
            if syntax == REGEX:
                try:
                    compile_posix_ere(arg)
                except re.error as exc:
                    raise SourceError(f"{at}: {option}: invalid regular expression {arg!r}: {exc}") from None
            out.append(Exclusion(PRODUCT, PATH, arg, syntax, where=at))
        elif option == "OnAccessExcludeUname":
            out.append(Exclusion(PRODUCT, USER, arg, LITERAL, where=at))
        elif option == "OnAccessExcludeUID":
            if not arg.isdigit():
                raise SourceError(f"{at}: {option}: must be a number, not {arg!r}")
            out.append(Exclusion(PRODUCT, USER, f"uid {int(arg)}", LITERAL, where=at))
        elif option == "OnAccessExcludeRootUID":
            if arg.lower() not in _BOOL:
                raise SourceError(f"{at}: {option}: must be yes or no, not {arg!r}")
            if _BOOL[arg.lower()]:
                out.append(Exclusion(PRODUCT, USER, "uid 0", LITERAL, where=at))
        # Other options are clamd's business; it validates them itself.
    return Reading(out)

