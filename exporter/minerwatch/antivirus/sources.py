"""Where exclusions are read: the well-known places, plus the `antivirus` config section.

    antivirus:
      interval: 60            # seconds between re-reads; a file is only parsed when it changed
      defaults: true          # the well-known places (registry on Windows, mdatp, clamd.conf)
      sources:
        - {format: clamd, path: /opt/clamav/etc/clamd.conf}
        - {format: mdatp_json, path: /srv/mdatp/mdatp_managed.json}
        - {format: defender_reg, path: /var/lib/minerwatch/defender.reg}   # a `reg export`
        - {format: defender_registry}                                      # the live registry
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from minerwatch.antivirus import clamav, defender_windows, mdatp_linux
from minerwatch.antivirus.model import Reading, SourceError
from minerwatch.yaml_file import Node, section_fields

# format -> (product, the kinds it can hold, parser of a file's bytes; None: the live registry)
FORMATS = {
    "clamd": (clamav.PRODUCT, clamav.KINDS, clamav.parse_clamd),
    "mdatp_json": (mdatp_linux.PRODUCT, mdatp_linux.KINDS, mdatp_linux.parse_mdatp),
    "defender_reg": (defender_windows.PRODUCT, defender_windows.KINDS, defender_windows.parse_reg_export),
    "defender_registry": (defender_windows.PRODUCT, defender_windows.KINDS, None),
}
DEFAULT_INTERVAL = 60.0


class FileSource:
    """A configuration file, read through an injectable root; missing means not installed."""

    def __init__(self, fmt: str, path: str, root: str = "/"):
        self.product, self.kinds, self.parser = FORMATS[fmt]
        self.format = fmt
        self.name = path  # as configured: the `source` label
        self.real = os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path

    def probe(self) -> Optional[Tuple]:
        try:
            st = os.stat(self.real)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SourceError(f"{self.name}: cannot read: {exc.strerror}") from None
        return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)

    def read(self) -> Optional[Reading]:
        try:
            with open(self.real, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None  # removed since probe()
        except OSError as exc:
            raise SourceError(f"{self.name}: cannot read: {exc.strerror}") from None
        return self.parser(data, self.name)


@dataclass(frozen=True)
class SourceSpec:
    format: str
    path: Optional[str] = None
    builtin: bool = False  # a well-known place: read under the root; configured paths are taken as written


@dataclass(frozen=True)
class AntivirusSettings:
    interval: float = DEFAULT_INTERVAL
    defaults: bool = True
    sources: Tuple[SourceSpec, ...] = ()


def read_settings(node: Optional[Node]) -> AntivirusSettings:
    """The `antivirus:` section; raises ConfigError naming file:line: key."""
    fields = section_fields(node, ("interval", "defaults", "sources"))
    values: dict = {}
    if "interval" in fields:
        values["interval"] = fields["interval"].number()
    if "defaults" in fields:
        values["defaults"] = fields["defaults"].boolean()
    if "sources" in fields:
        values["sources"] = tuple(_read_source(item) for item in fields["sources"].items())
    return AntivirusSettings(**values)


def _read_source(item: Node) -> SourceSpec:
    known = ", ".join(sorted(FORMATS))
    keys = item.mapping(("format", "path"))
    if "format" not in keys:
        raise item.error(f"needs a format (one of: {known})")
    fmt = keys["format"].string()
    if fmt not in FORMATS:
        raise keys["format"].error(f"unknown format {fmt!r} (known: {known})")
    path = None
    if FORMATS[fmt][2] is None:
        if "path" in keys:
            raise keys["path"].error(f"format {fmt} reads the live registry and takes no path")
    else:
        if "path" not in keys:
            raise item.error(f"format {fmt} needs a path")
        path = keys["path"].string()
        if not os.path.isabs(path):
            raise keys["path"].error("must be an absolute path")
    return SourceSpec(fmt, path)


def default_specs(windows: bool) -> List[SourceSpec]:
    specs = [SourceSpec("defender_registry", builtin=True)]  # skipped quietly where there is no registry
    if not windows:
        specs.append(SourceSpec("mdatp_json", mdatp_linux.DEFAULT_PATH, builtin=True))
        specs += [SourceSpec("clamd", path, builtin=True) for path in clamav.DEFAULT_PATHS]
    return specs


def build_sources(settings: AntivirusSettings, root: str = "/", winreg=None, windows: Optional[bool] = None) -> List:
    """The sources to watch; `winreg` is the registry module, None where there is none.

    A source whose product is absent (no registry on Linux, no file) is not an error: one config
    file can serve a mixed fleet.
    """
    if windows is None:
        windows = os.name == "nt"
    specs = (default_specs(windows) if settings.defaults else []) + list(settings.sources)
    sources, seen = [], set()
    for spec in specs:
        if (spec.format, spec.path) in seen:
            continue
        seen.add((spec.format, spec.path))
        if spec.format == "defender_registry":
            if winreg is not None:
                for key in (defender_windows.PREFERENCES_KEY, defender_windows.POLICIES_KEY):
                    sources.append(defender_windows.RegistrySource(winreg, key))
        else:
            sources.append(FileSource(spec.format, spec.path, root if spec.builtin else "/"))
    return sources


def registry_module():
    """`winreg` where it exists (Windows), else None."""
    try:
        import winreg  # type: ignore
    except ImportError:
        return None
    return winreg
