#!/bin/sh
# Cost per host at fleet scale in one command (see README.md, "Fleet cost"): a simulated fleet
# scraped by Debian's Prometheus with the shipped rules, at 1,000 and 5,000 hosts, on 127.0.0.1.
# Extra arguments go to fleet.py (--hosts 1000,5000 --window 90 --json FILE ...). About 5 minutes.
set -eu
cd "$(dirname "$0")/../.."
command -v prometheus >/dev/null 2>&1 || { echo "fleet.sh: install Debian's prometheus (sh tests/run.sh does)" >&2; exit 2; }
[ -x .venv/bin/python ] || { echo "fleet.sh: no .venv: run sh tests/run.sh first" >&2; exit 2; }
exec .venv/bin/python tests/benchmark/fleet.py "$@"
