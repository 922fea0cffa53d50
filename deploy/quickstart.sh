#!/bin/sh
# Installs minerwatch into ./.venv and runs the exporter on 127.0.0.1:9789 (extra arguments go to
# `minerwatch serve`). Only this host can scrape it: it exposes command lines and user names, so
# open it to your Prometheus only behind --web.config.file (TLS and basic auth), e.g.
#   sh deploy/quickstart.sh --web.listen-address=:9789 --web.config.file=web.yml
# For a real installation see the README ("Install for real") and deploy/README.md.
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
case " $* " in
    *" --web.listen-address"*) exec .venv/bin/minerwatch serve "$@" ;;
    *) exec .venv/bin/minerwatch serve --web.listen-address=127.0.0.1:9789 "$@" ;;
esac
