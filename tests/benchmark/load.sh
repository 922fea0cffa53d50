#!/bin/sh
# The HTTP load benchmark in one command (see README.md, "Load benchmark"): installs Debian's wrk
# and node_exporter and the virtualenv when missing, then runs load.py with the virtualenv's
# Python. Extra arguments go to load.py (--quick, --seconds N, --connections 1 8 64, --modes ...,
# --idle 1000 10000).
# Debian's postinst may start its own node_exporter service on :9100; the benchmark neither uses
# nor touches it: it starts its own instances on free 127.0.0.1 ports.
set -eu
cd "$(dirname "$0")/../.."

# wrk drives every mode but idle: `--modes idle` alone does without it.
need_wrk=yes
in_modes=""
for arg in "$@"; do
    case "$arg" in
        --modes) in_modes=yes; need_wrk=no ;;
        --*) in_modes="" ;;
        *) if [ -n "$in_modes" ] && [ "$arg" != idle ]; then need_wrk=yes; fi ;;
    esac
done

missing=""
[ "$need_wrk" = no ] || command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v prometheus-node-exporter >/dev/null 2>&1 || missing="$missing prometheus-node-exporter"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
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
exec .venv/bin/python tests/benchmark/load.py "$@"
