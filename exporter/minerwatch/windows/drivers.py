"""Kernel driver services that give user space model-specific registers (WinRing0 and kin).

XMRig on Windows writes MSRs for RandomX through WinRing0: it drops WinRing0x64.sys and creates
and starts a kernel driver service (named WinRing0_1_2_0) while it mines. Hardware monitors ship
the same driver, so a driver service is tuning evidence, not a verdict. The Service Control
Manager is asked for every driver service (one call) and the image path of each new name is
looked up once and cached: a driver service's path does not change under the same name.
"""

from __future__ import annotations

import ntpath
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from minerwatch.text import host_text
from minerwatch.windows import ReadFailed, describe, winerror_of

# driver family -> image file names (lower case) that give ring-0 MSR access to any program
FAMILIES: Dict[str, Tuple[str, ...]] = {
    "winring0": ("winring0x64.sys", "winring0.sys", "winring0x32.sys"),
    "rwdrv": ("rwdrv.sys",),  # RWEverything
    "cpuz": (),  # CPU-Z drivers carry their version in the name: cpuz141_x64.sys
}
_CPUZ = re.compile(r"cpuz\d+(_x64)?\.sys\Z")
# Service names XMRig and the monitors that embed WinRing0 use, when the path is unreadable.
_NAMES = {"winring0_1_2_0": "winring0", "winring0_1_2_0_x64": "winring0"}


@dataclass(frozen=True)
class DriverService:
    name: str  # the service name, made safe
    family: str  # a key of FAMILIES
    path: str  # the image path as the SCM stores it, made safe
    running: bool


def family_of(service_name: str, image_path: str) -> Optional[str]:
    base = ntpath.basename(image_path.strip().strip('"')).casefold()
    for family, files in FAMILIES.items():
        if base in files:
            return family
    if _CPUZ.match(base):
        return "cpuz"
    return _NAMES.get(service_name.casefold())


class MsrDriverReader:
    """Driver services of the MSR families, through win32service (the SCM)."""

    def __init__(self, win32service):
        self.w = win32service
        self._paths: Dict[str, str] = {}  # service name -> image path, looked up once

    def read(self) -> List[DriverService]:
        w = self.w
        try:
            scm = w.OpenSCManager(None, None, w.SC_MANAGER_CONNECT | w.SC_MANAGER_ENUMERATE_SERVICE)
        except Exception as exc:
            raise ReadFailed(f"service control manager: {describe(exc)}") from None
        try:
            statuses = w.EnumServicesStatus(scm, w.SERVICE_DRIVER, w.SERVICE_STATE_ALL)
            found = []
            names = set()
            for name, _display, status in statuses:
                names.add(name)
                path = self._path(scm, name)
                family = family_of(name, path)
                if family:
                    found.append(DriverService(host_text(name, 256), family, host_text(path, 512),
                                               status[1] == w.SERVICE_RUNNING))
            for gone in set(self._paths) - names:  # removed services: forget them
                del self._paths[gone]
            return sorted(found, key=lambda d: d.name)
        except ReadFailed:
            raise
        except Exception as exc:
            raise ReadFailed(f"driver services: {describe(exc)}") from None
        finally:
            w.CloseServiceHandle(scm)

    def _path(self, scm, name: str) -> str:
        if name in self._paths:
            return self._paths[name]
        w = self.w
        try:
            handle = w.OpenService(scm, name, w.SERVICE_QUERY_CONFIG)
        except Exception as exc:
            if winerror_of(exc) == 1060:  # ERROR_SERVICE_DOES_NOT_EXIST: removed between two calls
                return ""
            raise
        try:
            path = w.QueryServiceConfig(handle)[3] or ""
        finally:
            w.CloseServiceHandle(handle)
        self._paths[name] = path
        return path
