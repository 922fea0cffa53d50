"""The golden end-to-end output (node_exporter's end-to-end-test.sh): the real `minerwatch serve`
on the fixture host tests/fixtures/e2e (fake /proc, /sys and /etc, two fake GPUs, fixed clocks),
its whole /metrics compared with tests/fixtures/e2e-output.txt. Any change of a metric, a label
or a value on that host shows as one diff to review; after a deliberate one, regenerate with

    MINERWATCH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

The README's "## Metrics" tables are checked against the same file, both ways.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Dict, Set

import pytest
from prometheus_client.parser import text_string_to_metric_families

from minerwatch.collectors import available
from support import golden
from support.promtool import check_metrics
from support.repo import ROOT

README = ROOT / "README.md"
# A README row for a family the fixture host cannot show says why in its meaning cell.
NOT_ON_FIXTURE = re.compile(r"\bWindows only\b")


def test_metrics_of_the_fixture_host_are_the_golden_file():
    got = golden.normalise(golden.scrape(), golden.fixture_owner())
    if os.environ.get("MINERWATCH_UPDATE_GOLDEN") == "1":
        golden.GOLDEN.write_text(got)
        pytest.skip(f"wrote {golden.GOLDEN.relative_to(ROOT)}: review it with git diff")
    want = golden.GOLDEN.read_text()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                            "tests/fixtures/e2e-output.txt", "this run"))
        pytest.fail("/metrics on the fixture host differs from the golden file; if the change is meant, "
                    "regenerate it (MINERWATCH_UPDATE_GOLDEN=1) and review the diff:\n" + diff)


def test_golden_file_passes_promtool_check_metrics(promtool):
    check_metrics(promtool, golden.GOLDEN.read_text())


def test_every_collector_succeeds_in_the_golden_file():
    """A golden file regenerated from a broken run would bless the breakage."""
    text = golden.GOLDEN.read_text()
    for name, cls in available().items():
        line = f'minerwatch_scrape_collector_success{{collector="{name}"}} 1.0\n'
        # one that cannot run on this OS (windows off Windows) is not reported at all
        assert (line in text) == cls.applies() and (f'collector="{name}"' in text) == cls.applies(), name


# -- the README's metrics tables ---------------------------------------------------------------
def readme_rows() -> Dict[str, list]:
    """Family name -> cells of its row, from every table of the README's "## Metrics" section."""
    text = README.read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `(minerwatch_[a-z0-9_]+)` \|", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} has two rows in the README"
            rows[m.group(1)] = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return rows


def golden_families():
    """Family name (counters with _total, as exposed) -> (type, label names of its samples; None
    for a family whose samples the golden file leaves out)."""
    text = golden.GOLDEN.read_text()
    types = golden.families(text)
    labels: Dict[str, Set[str]] = {name: set() for name in types}
    seen: Set[str] = set()  # families with samples (VARYING ones have none in the file)
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        for sample in family.samples:
            labels[name].update(sample.labels)
            seen.add(name)
    return {name: (kind, labels[name] if name in seen else None)
            for name, kind in types.items() if name.startswith("minerwatch_")}


def test_readme_metrics_tables_name_every_family_of_the_golden_file():
    missing = sorted(set(golden_families()) - set(readme_rows()))
    assert not missing, f"families exposed on the fixture host but not in the README's Metrics tables: {missing}"


def test_every_family_in_the_readme_tables_is_in_the_golden_file_or_says_why_not():
    families = golden_families()
    absent = [name for name, cells in readme_rows().items()
              if name not in families and not NOT_ON_FIXTURE.search(cells[-1])]
    assert not absent, (f"README rows for families the golden file lacks, without a reason such as "
                        f"'Windows only' in their meaning: {absent}")


def test_readme_tables_give_each_family_its_type_and_labels():
    families = golden_families()
    wrong = []
    for name, cells in readme_rows().items():
        if name not in families:
            continue
        kind, labels = families[name]
        written = {label.strip(" `") for label in cells[2].split(",") if label.strip(" `")}
        if cells[1] != kind or (labels is not None and written != labels):
            wrong.append(f"{name}: README says {cells[1]} {sorted(written)}, the exporter {kind} {sorted(labels)}")
    assert not wrong, "\n".join(wrong)
