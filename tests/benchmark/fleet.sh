#!/bin/sh
# Cost per desk at fleet scale in one command (see README.md, "Fleet cost"): a simulated fleet
# scraped by Debian's Prometheus with the site config and rules of a git revision (--before,
# default HEAD) and of the working tree, side by side, at 1,000, 5,000 and 10,000 desks on
# 127.0.0.1. Extra arguments go to fleet.py (--hosts 1000 --window 60 --before REV --json FILE ...).
# About 40 minutes and 5 GiB of memory at the default sizes; --hosts 1000 about 5 minutes.
set -eu
cd "$(dirname "$0")/../.."
command -v prometheus >/dev/null 2>&1 || { echo "fleet.sh: install Debian's prometheus (sh tests/run.sh does)" >&2; exit 2; }
[ -x .venv/bin/python ] || { echo "fleet.sh: no .venv: run sh tests/run.sh first" >&2; exit 2; }
exec .venv/bin/python tests/benchmark/fleet.py "$@"
