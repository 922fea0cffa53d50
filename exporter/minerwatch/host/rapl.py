"""RAPL package energy from sysfs (/sys/class/powercap/intel-rapl:N), with counter wrap.

Intel CPUs since Sandy Bridge and AMD Zen CPUs (Linux 5.8 and later) expose one powercap zone
per package, `intel-rapl:N` with `name` "package-N", whose `energy_uj` counts microjoules and wraps
at `max_energy_range_uj`. Sub-zones (`intel-rapl:N:M`: cores, uncore, dram) are parts of the
package and are not added again. Since Linux 5.10 `energy_uj` is readable by root only (the
PLATYPUS side channel): an exporter without it falls back to the CPU-time model.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

_PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")


@dataclass
class Zone:
    name: str  # "package-0"
    energy_uj: int
    max_energy_range_uj: Optional[int]


class RaplUnavailable(Exception):
    """No package zone, or none readable; str() says why (for one log line)."""


def read_zones(sysfs: str) -> List[Zone]:
    """Every package zone's counter now; RaplUnavailable when there is none to read."""
    base = os.path.join(sysfs, "class", "powercap")
    try:
        names = sorted(n for n in os.listdir(base) if _PACKAGE_ZONE.match(n))
    except OSError:
        names = []
    if not names:
        raise RaplUnavailable(f"no RAPL package zone under {base}")
    zones = []
    for name in names:
        path = os.path.join(base, name)
        try:
            energy = _read_int(os.path.join(path, "energy_uj"))
        except (OSError, ValueError) as exc:
            raise RaplUnavailable(f"{path}/energy_uj: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            limit: Optional[int] = _read_int(os.path.join(path, "max_energy_range_uj"))
        except (OSError, ValueError):
            limit = None
        try:
            with open(os.path.join(path, "name")) as f:
                label = f.read(64).strip() or name
        except OSError:
            label = name
        zones.append(Zone(label, energy, limit))
    return zones


def _read_int(path: str) -> int:
    with open(path, "rb") as f:
        return int(f.read(32))


class EnergyCounter:
    """Joules used since the first reading, across every package, with wraps unrolled.

    A counter that went down wrapped once at `max_energy_range_uj` (commonly 262,143,328,850 uJ:
    about 44 minutes at 100 W, so one wrap between two scrapes at most). Without a known range a
    decrease is taken as a reset and adds nothing.
    """

    def __init__(self) -> None:
        self._last: Dict[str, int] = {}
        self.joules = 0.0

    def update(self, zones: List[Zone]) -> float:
        """Add the energy since the last update; return that increment in joules."""
        added_uj = 0
        for zone in zones:
            last = self._last.get(zone.name)
            self._last[zone.name] = zone.energy_uj
            if last is None:
                continue
            delta = zone.energy_uj - last
            if delta < 0:
                delta = delta + zone.max_energy_range_uj if zone.max_energy_range_uj else 0
            added_uj += max(delta, 0)
        joules = added_uj / 1e6
        self.joules += joules
        return joules
