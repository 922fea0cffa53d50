"""The golden end-to-end run: `minerwatch serve` on tests/fixtures/e2e, its /metrics made
comparable with tests/fixtures/e2e-output.txt (node_exporter's end-to-end-test.sh, in Python).

What changes from run to run is taken out, and only that:
- client_python's own families (`process_*`, `python_*`): the exporter's PID, memory, CPU and
  the Python build differ on every run and machine;
- the samples of `VARYING` families (their HELP and TYPE stay, so the family is still checked);
- the `pythonversion` label of `minerwatch_build_info`;
- the owner of the fixture's /proc/PID directories (whoever checked the tree out), written as
  `fixture-owner` in `user` labels.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List

from minerwatch.host.proc_reader import user_name

from support.exporter import Exporter
from support.repo import FIXTURES, ROOT

E2E = FIXTURES / "e2e"
GOLDEN = FIXTURES / "e2e-output.txt"
OWNER_LABEL = "fixture-owner"

VARYING: Dict[str, str] = {
    "minerwatch_scrape_collector_duration_seconds": "how long each collector took",
    "minerwatch_network_ioc_load_timestamp_seconds": "when the exporter read the IOC files: its start",
    "minerwatch_config_last_reload_success_timestamp_seconds": "when the exporter loaded its config: its start",
    "minerwatch_web_connections": "the scrape's own connection, and any whose close the server has not seen yet",
    "minerwatch_config_hash_info": "hashes of settings that hold the checkout's paths (--path.procfs, IOC files)",
}
FOREIGN = re.compile(r"(process|python)_")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def args() -> List[str]:
    return [f"--path.procfs={E2E / 'proc'}", f"--path.sysfs={E2E / 'sys'}", f"--path.rootfs={E2E / 'root'}",
            f"--config.file={E2E / 'minerwatch.yml'}"]


def scrape() -> str:
    """One scrape of the real exporter on the fixture tree (fake NVML, fixed clocks)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "tests"),
                                                                    os.environ.get("PYTHONPATH")])))
    exporter = Exporter(args(), env=env, module="support.e2e_serve")
    try:
        return exporter.text()
    finally:
        log = exporter.stop()
        if os.environ.get("MINERWATCH_GOLDEN_LOG"):
            print(log)


def fixture_owner() -> str:
    """The user name the exporter gives the fixture's processes (the owner of proc/PID)."""
    return user_name(os.stat(E2E / "proc" / "1").st_uid)


def normalise(text: str, owner: str) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            name = line.split(" ", 3)[2]
            if FOREIGN.match(name):
                continue
        else:
            name = _NAME.match(line).group(0)
            if FOREIGN.match(name) or name in VARYING:
                continue
            if name == "minerwatch_build_info":
                line = re.sub(r'pythonversion="[^"]*"', 'pythonversion="any"', line)
            line = line.replace(f'user="{owner}"', f'user="{OWNER_LABEL}"')
        out.append(line)
    return "\n".join(out) + "\n"


def families(text: str) -> Dict[str, str]:
    """Metric family name (as the exposition writes it: counters with _total) -> type."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M)}
