#!/bin/sh
# The whole test suite, from a fresh Debian machine: installs Debian's prometheus and
# prometheus-alertmanager (promtool, amtool and the real servers the tests start), openssl and
# iproute2 when missing, Debian's python3 libraries the .deb depends on, a virtualenv
# with minerwatch and its test dependencies, then runs pytest. Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."

missing=""
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v amtool >/dev/null 2>&1 || missing="$missing prometheus-alertmanager"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"      # test certificates
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"          # test network namespaces
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"    # renders the report as a person sees it
command -v pdftotext >/dev/null 2>&1 || missing="$missing poppler-utils"  # reads the report's PDF back
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$missing fonts-dejavu-core"  # Kazakh letters in the PDF
command -v msgfmt >/dev/null 2>&1 || missing="$missing gettext"      # the catalogues compile as msgfmt does
ldconfig -p 2>/dev/null | grep -q "librandomx\.so" || missing="$missing librandomx0"  # a real RandomX library for the solo-miner test
command -v makensis >/dev/null 2>&1 || missing="$missing nsis"        # compiles the Windows installer script
command -v wixl >/dev/null 2>&1 || missing="$missing wixl"            # builds the MSI...
command -v msiinfo >/dev/null 2>&1 || missing="$missing msitools"     # ...and reads its tables back
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || missing="$missing prometheus-blackbox-exporter"  # ping probe
# the silent-miner stand-in is a small C program speaking TLS; xz and gcc are benign heavy loads
command -v gcc >/dev/null 2>&1 || missing="$missing gcc"
[ -f /usr/include/openssl/ssl.h ] || missing="$missing libssl-dev"
command -v xz >/dev/null 2>&1 || missing="$missing xz-utils"
python3 -c 'import ensurepip' 2>/dev/null || missing="$missing python3-venv"
# the .deb test builds and installs the package, which runs on Debian's python3 and its libraries
/usr/bin/python3 -c 'import psutil, click, yaml, bcrypt, ensurepip' 2>/dev/null ||
    missing="$missing python3 python3-venv python3-psutil python3-click python3-yaml python3-bcrypt"
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest "$@"
