"""Microsoft Defender (Windows): exclusions from the registry, live or as a `reg export` file.

Each exclusion is a value under one of
    HKLM\\SOFTWARE\\Microsoft\\Windows Defender\\Exclusions\\{Paths,Processes,Extensions,IpAddresses}
    HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows Defender\\Exclusions\\{...}   (Group Policy, Intune)
whose name is the exclusion and whose data is 0 (REG_DWORD). On recent Windows only SYSTEM and
administrators may read the first key: run the exporter as a service, or have a SYSTEM task
`reg export` it to a file that a `defender_reg` source reads.
"""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

from minerwatch.antivirus.model import EXTENSION, GLOB, IP, LITERAL, PATH, PROCESS, Exclusion, Reading, SourceError
from minerwatch.antivirus.model import decode_text

PRODUCT = "defender"
KINDS = (PATH, PROCESS, EXTENSION, IP)
PREFERENCES_KEY = r"SOFTWARE\Microsoft\Windows Defender\Exclusions"
POLICIES_KEY = r"SOFTWARE\Policies\Microsoft\Windows Defender\Exclusions"
SUBKEYS = {"Paths": PATH, "Processes": PROCESS, "Extensions": EXTENSION, "IpAddresses": IP}


def _exclusion(kind: str, name: str, where: str) -> Exclusion:
    return Exclusion(PRODUCT, kind, name, GLOB if kind in (PATH, PROCESS) else LITERAL, windows=True, where=where)


class RegistrySource:
    """One Exclusions key of the live registry, read through a `winreg`-like module."""

    product = PRODUCT
    kinds = KINDS

    def __init__(self, winreg, key: str = PREFERENCES_KEY):
        self.winreg = winreg
        self.key = key
        self.name = "HKLM\\" + key

    def _open(self, sub_key: str):
        reg = self.winreg
        # The 64-bit view: a 32-bit Python would otherwise read WOW6432Node.
        return reg.OpenKey(reg.HKEY_LOCAL_MACHINE, sub_key, 0, reg.KEY_READ | reg.KEY_WOW64_64KEY)

    def _fail(self, exc: OSError, sub: str = "") -> SourceError:
        name = self.name + ("\\" + sub if sub else "")
        if isinstance(exc, PermissionError):
            return SourceError(f"{name}: access denied: only SYSTEM and administrators may read it")
        return SourceError(f"{name}: {exc.strerror or exc}")

    def probe(self) -> Optional[Tuple]:
        """A cheap stamp (value counts and last-write times), None when the key is absent."""
        try:
            with self._open(self.key) as key:
                stamp = [self.winreg.QueryInfoKey(key)]
        except FileNotFoundError:
            return None  # Defender not installed, or no such policy: quietly nothing
        except OSError as exc:
            raise self._fail(exc) from None
        for sub in SUBKEYS:
            try:
                with self._open(f"{self.key}\\{sub}") as key:
                    stamp.append(self.winreg.QueryInfoKey(key))
            except FileNotFoundError:
                stamp.append(None)
            except OSError as exc:
                raise self._fail(exc, sub) from None
        return tuple(stamp)

    def read(self) -> Optional[Reading]:
        out: List[Exclusion] = []
        for sub, kind in SUBKEYS.items():
            where = f"{self.name}\\{sub}"
            try:
                with self._open(f"{self.key}\\{sub}") as key:
                    index = 0
                    while True:
                        try:
                            name, _data, _type = self.winreg.EnumValue(key, index)
                        except OSError:  # ERROR_NO_MORE_ITEMS: past the last value
                            break
                        index += 1
                        if name:  # the unnamed default value is no exclusion
                            out.append(_exclusion(kind, name, where))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._fail(exc, sub) from None
        return Reading(out)


# -- `reg export` files ---------------------------------------------------------------------------
_SECTION = re.compile(r"\\Windows Defender\\Exclusions\\(Paths|Processes|Extensions|IpAddresses)\Z", re.IGNORECASE)
_VALUE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*=\s*(.*)\Z')
_HEADERS = ("Windows Registry Editor Version 5.00", "REGEDIT4")
_KINDS_BY_SUBKEY = {sub.lower(): kind for sub, kind in SUBKEYS.items()}


def parse_reg_export(data: bytes, where: str) -> Reading:
    """A .reg file as `reg export` writes it (UTF-16 with BOM, or UTF-8); both keys may be in it."""
    lines = decode_text(data, where).splitlines()
    out: List[Exclusion] = []
    kind: Optional[str] = None
    header_seen = False
    number, pending, start = 0, "", 0
    for number, raw in enumerate(lines, 1):
        line = pending + raw.strip()
        if line.endswith("\\") and not line.startswith("["):  # hex data continues on the next line
            pending, start = line[:-1], start or number
            continue
        at = f"{where}:{start or number}"
        pending, start = "", 0
        if not line or line.startswith(";"):
            continue
        if not header_seen:
            if line not in _HEADERS:
                raise SourceError(f"{at}: not a registry export (expected '{_HEADERS[0]}')")
            header_seen = True
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise SourceError(f"{at}: unclosed key name")
            section = _SECTION.search(line[1:-1])
            kind = _KINDS_BY_SUBKEY[section.group(1).lower()] if section and not line.startswith("[-") else None
            continue
        if kind is None or line.startswith("@="):
            continue  # values of other keys, and the default value
        value = _VALUE.match(line)
        if not value:
            raise SourceError(f'{at}: expected "name"=data')
        if value.group(2) == "-":
            continue  # a deletion
        name = re.sub(r"\\(.)", r"\1", value.group(1))
        out.append(_exclusion(kind, name, at))
    if not header_seen:
        raise SourceError(f"{where}: empty registry export")
    return Reading(out)
