#!/usr/bin/env python3
"""Write minerwatch's Grafana dashboards from their one source, dashboards/src/.

The source reads rules/config/minerwatch.yml (runbook base URL, signal lists, thresholds) and the alert
names of rules/minerwatch.alerts.yml, so panels, thresholds and runbook links follow the rules.
Writes dashboards/minerwatch-fleet.json, dashboards/minerwatch-host.json and the panel table of
dashboards/README.md. `--check` writes nothing and exits 1 if any of them differs (the tests run it).

Usage: python dashboards/generate.py [--check]
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "minerwatch_dashboards"


def load_source():
    """dashboards/src/ as the package `minerwatch_dashboards` (it is not installed)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, HERE / "src" / "__init__.py",
                                                      submodule_search_locations=[str(HERE / "src")])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{PACKAGE}.build")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a written file differs; write nothing")
    args = parser.parse_args(argv)
    build = load_source()
    files = build.outputs((HERE / build.README).read_text())
    stale = []
    for name, content in files.items():
        path = HERE / name
        current = path.read_text() if path.exists() else ""
        if current == content:
            continue
        stale.append(name)
        if args.check:
            diff = difflib.unified_diff(current.splitlines(True), content.splitlines(True),
                                        f"dashboards/{name} (committed)", f"dashboards/{name} (generated)", n=1)
            sys.stdout.writelines(list(diff)[:40])
        else:
            path.write_text(content)
            print(f"wrote dashboards/{name}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run `python dashboards/generate.py` and commit the result",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
