#!/bin/sh
# Builds the MSI on Linux with Debian's wixl (package wixl):
#   sh deploy/windows/build-msi.sh --version 1.2.3 --payload dist/minerwatch [--out FILE]
# PAYLOAD is PyInstaller's one-folder output (minerwatch.exe and its libraries; build.ps1 makes
# it on Windows). The MSI's version must be numeric (major.minor.build, each at most 255.255.65535).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
version="" payload="" out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="$2"; shift 2 ;;
        --payload) payload="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "build-msi.sh: unknown argument $1 (use --version V --payload DIR [--out FILE])" >&2; exit 2 ;;
    esac
done
echo "$version" | grep -Eq '^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,5}$' ||
    { echo "build-msi.sh: --version: expected major.minor.build, numbers only (got '$version')" >&2; exit 2; }
[ -n "$payload" ] && [ -f "$payload/minerwatch.exe" ] ||
    { echo "build-msi.sh: --payload: a folder holding minerwatch.exe (PyInstaller's dist/minerwatch)" >&2; exit 2; }
command -v wixl >/dev/null 2>&1 || { echo "build-msi.sh: wixl missing (apt-get install wixl)" >&2; exit 1; }
payload=$(cd "$payload" && pwd)
[ -n "$out" ] || out="$(pwd)/minerwatch-$version-x64.msi"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# wixl reads sources by paths relative to where it runs: the payload and the config template are
# linked into the work folder. Every payload file but minerwatch.exe (the service's own component)
# goes into the Payload group.
ln -s "$payload" "$work/payload"
ln -s "$here/minerwatch.yml" "$work/minerwatch.yml.default"
(cd "$payload" && find . -type f ! -path ./minerwatch.exe | sed 's|^\./|payload/|' | LC_ALL=C sort) |
    wixl-heat --prefix payload/ --directory-ref INSTALLDIR --component-group Payload \
        --var var.SourceDir --win64 > "$work/payload.wxs"
(cd "$work" && wixl --arch x64 -D Win64=yes -D "Version=$version" -D SourceDir=payload \
    -D ConfigSource=minerwatch.yml.default -o "$out.tmp" "$here/minerwatch.wxs" payload.wxs)
# wixl can exit 0 on a database error: the package counts only when msiinfo can read it back
msiinfo tables "$out.tmp" >/dev/null 2>&1 || { rm -f "$out.tmp"; echo "build-msi.sh: wixl wrote no readable MSI" >&2; exit 1; }
mv "$out.tmp" "$out"
echo "$out"
