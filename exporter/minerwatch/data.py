"""The one place that reads the files shipped inside the package (minerwatch/data/).

    data/pools.txt       mining-pool domains (`!domain`: never a pool; `domain stratum`: resolvable)
    data/pool_ports.txt  usual Stratum ports and port ranges
    data/exe_patterns.txt byte patterns of miner executables, by family (exe_content.py)
    data/vendor_exclusions.txt antivirus exclusions vendors recommend for their own programs (antivirus/vendors.py)
    data/windows_names.txt Windows programs and the folders they really install to (detection/windows_places.py)

Each file is read once per process, on first use, and its lines kept: `signatures` reads the
pool domains when it is imported, the network collector when it starts and whenever an IOC file
reloads. What the lines mean is parsed where they are used (network/pools.py); here only the
shipped pool list's plain domain form is read, which is all the signatures need.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import FrozenSet, Tuple

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
POOLS = "pools.txt"
POOL_PORTS = "pool_ports.txt"
EXE_PATTERNS = "exe_patterns.txt"
VENDOR_EXCLUSIONS = "vendor_exclusions.txt"
WINDOWS_NAMES = "windows_names.txt"


@functools.lru_cache(maxsize=None)
def shipped_lines(name: str) -> Tuple[str, ...]:
    """The lines of a shipped data file (a missing one is a broken install: it raises)."""
    with open(os.path.join(DATA_DIR, name), encoding="utf-8") as f:
        return tuple(f)


@dataclass(frozen=True)
class ShippedPoolNames:
    domains: FrozenSet[str]  # pools, matched with every name under them
    never: FrozenSet[str]  # `!domain`: never a pool, even under a listed one


def shipped_pool_names() -> ShippedPoolNames:
    """The domains of data/pools.txt. The file holds only `domain`, `domain stratum` and
    `!domain` lines; anything else is a packaging mistake and raises at import."""
    domains, never = set(), set()
    for number, raw in enumerate(shipped_lines(POOLS), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1] != "stratum"):
            raise ValueError(f"{POOLS}:{number}: not a shipped pool line: {raw.strip()!r}")
        name = words[0].lower()
        (never if name.startswith("!") else domains).add(name.lstrip("!"))
    return ShippedPoolNames(frozenset(domains), frozenset(never))
