"""Runs a real `minerwatch serve` process on 127.0.0.1 for tests and scrapes it over HTTP."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from typing import Dict, List, Optional, Tuple

from prometheus_client.parser import text_string_to_metric_families

from support.processes import free_port, stop_pid, wait_for
from support.repo import offline

Sample = Tuple[Dict[str, str], float]


class Exporter:
    def __init__(self, args: List[str], prefix: Optional[List[str]] = None, env=None, module: str = "minerwatch"):
        """`module`: what `python -m` runs with `serve ARGS` (support.e2e_serve for the golden run)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        cmd = (prefix or []) + [sys.executable, "-m", module, "serve",
                                f"--web.listen-address=127.0.0.1:{self.port}", *offline(args)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        wait_for(self._up, timeout=20, what="minerwatch serve to answer")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"minerwatch serve exited {self.proc.returncode}: {self.proc.stdout.read()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2).read()
            return True
        except OSError:
            return False

    def text(self) -> str:
        return urllib.request.urlopen(self.url, timeout=20).read().decode()

    def scrape(self) -> Dict[str, List[Sample]]:
        """Samples by name (counters keep their _total), labels and value."""
        out: Dict[str, List[Sample]] = {}
        for family in text_string_to_metric_families(self.text()):
            for s in family.samples:
                out.setdefault(s.name, []).append((s.labels, s.value))
        return out

    def stop(self) -> str:
        stop_pid(self.proc)
        return self.proc.stdout.read()


def find(samples: Dict[str, List[Sample]], metric: str, **labels) -> List[Sample]:
    return [(l, v) for l, v in samples.get(metric, []) if all(l.get(k) == str(v2) for k, v2 in labels.items())]
