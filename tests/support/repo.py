"""Where things are in the repository, and the offline config every exporter run gets."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
# Used by every test that runs minerwatch without a config of its own: no DNS lookups.
OFFLINE_CONFIG = FIXTURES / "offline.yml"


def offline(args):
    """`args` for `minerwatch serve|scan`, with the offline config unless they name a config."""
    args = [str(a) for a in args]
    if not any(a.startswith("--config.file") for a in args):
        args.append(f"--config.file={OFFLINE_CONFIG}")
    return args
