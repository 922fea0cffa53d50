#!/bin/sh
# The performance benchmark in one command (see README.md): installs Debian's node_exporter and
# process-exporter and the virtualenv when missing, then runs bench.py with the virtualenv's
# Python. Extra arguments go to bench.py (--quick, --sizes P:C,..., --scrapes N, --json FILE, --profile, ...).
# Debian's postinst may start its own node_exporter service on :9100; the benchmark neither uses
# nor touches it: it starts its own instances on free 127.0.0.1 ports.
set -eu
cd "$(dirname "$0")/../.."

missing=""
command -v prometheus-node-exporter >/dev/null 2>&1 || missing="$missing prometheus-node-exporter"
command -v prometheus-process-exporter >/dev/null 2>&1 || missing="$missing prometheus-process-exporter"
[ -x .venv/bin/python ] || python3 -c 'import ensurepip' 2>/dev/null || missing="$missing python3-venv"
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
fi
exec .venv/bin/python tests/benchmark/bench.py "$@"
