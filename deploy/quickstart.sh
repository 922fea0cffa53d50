#!/bin/sh
# Installs minerwatch into ./.venv and runs the exporter on :9789 (extra arguments go to
# `minerwatch serve`). For a real installation see deploy/README.md.
set -eu
cd "$(dirname "$0")/.."

if ! python3 -c 'import ensurepip' 2>/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check .
exec .venv/bin/minerwatch serve "$@"
