#!/bin/sh
# Builds minerwatch_<version>_<arch>.deb from this checkout:
#   sh deploy/debian/build.sh [--version V] [--out DIR]
# The package holds a private virtualenv at /opt/minerwatch/venv on Debian's own python3, with
# Debian's psutil, click, PyYAML and bcrypt (system site packages) and, inside it, only what
# Debian 12 does not package: minerwatch, google-re2 and nvidia-ml-py. Also the systemd unit,
# /usr/bin/minerwatch, and the conffiles /etc/minerwatch/minerwatch.yml and /etc/default/minerwatch.
# Needs on the build machine: Debian's python3, python3-psutil, python3-click, python3-yaml,
# python3-bcrypt, dpkg-deb, and a Python with pip (PIP_PYTHON, default ./.venv/bin/python) that
# can reach PyPI or its cache.
set -eu
cd "$(dirname "$0")/../.."
repo=$(pwd)
version=""
out="$repo/build"
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "build.sh: unknown argument $1 (use --version V, --out DIR)" >&2; exit 2 ;;
    esac
done

python=/usr/bin/python3   # Debian's interpreter: the one the package depends on
pip_python=${PIP_PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || { echo "build.sh: $python missing (apt-get install python3)" >&2; exit 1; }
[ -x "$pip_python" ] || { echo "build.sh: no Python with pip at $pip_python (set PIP_PYTHON)" >&2; exit 1; }
for module in psutil click yaml bcrypt; do
    "$python" -c "import $module" 2>/dev/null || {
        echo "build.sh: Debian's python3-$module is missing (apt-get install python3-psutil python3-click python3-yaml python3-bcrypt)" >&2
        exit 1
    }
done
[ -n "$version" ] || version=$("$python" -c "import ast,sys; t=ast.parse(open('exporter/minerwatch/__init__.py').read()); print(next(n.value.value for n in t.body if isinstance(n, ast.Assign) and n.targets[0].id == '__version__'))")
arch=$(dpkg --print-architecture)
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pymax=$("$python" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage="$work/stage"
venv="$stage/opt/minerwatch/venv"
mkdir -p "$stage/DEBIAN" "$out"

# The virtualenv is made at the staging path, then its absolute paths are rewritten to
# /opt/minerwatch/venv: shebangs and pyvenv.cfg are the only places that name it.
"$python" -m venv --without-pip --system-site-packages "$venv"
"$pip_python" -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/wheel" "$repo"
# Dependencies Debian provides at a version the pins accept are taken from Debian (not installed
# here); anything else pip would put into the venv is listed below and refused.
"$pip_python" -m pip --python "$venv/bin/python" install -q --disable-pip-version-check --no-compile \
    "$work"/wheel/minerwatch-*.whl
extra=$("$venv/bin/python" - <<'PY'
import importlib.metadata as md, sys
own = {d.metadata["Name"].lower() for d in md.distributions(path=[p for p in sys.path if p.startswith(sys.prefix)])}
print(" ".join(sorted(own - {"minerwatch", "google-re2", "nvidia-ml-py"})))
PY
)
if [ -n "$extra" ]; then
    echo "build.sh: the venv would carry $extra: a pin in pyproject.toml excludes Debian's package" >&2
    exit 1
fi
rm -f "$venv"/bin/activate* "$venv"/bin/Activate.ps1
for f in "$venv"/bin/*; do
    [ -L "$f" ] || sed -i "1s|^#!.*python.*|#!/opt/minerwatch/venv/bin/python|" "$f"
done
sed -i "s|$stage||g" "$venv/pyvenv.cfg"
# Byte-compiled here, with the installed paths in them: the service cannot write under /opt.
"$python" -m compileall -q -s "$stage" -p / "$venv/lib" >/dev/null
if grep -rqs --binary-files=text "$stage" "$venv"; then
    echo "build.sh: the staging path is still named in $(grep -rls --binary-files=text "$stage" "$venv" | head -3)" >&2
    exit 1
fi

mkdir -p "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/minerwatch" "$stage/etc/default" \
    "$stage/usr/share/doc/minerwatch"
ln -s /opt/minerwatch/venv/bin/minerwatch "$stage/usr/bin/minerwatch"
install -m 0644 deploy/systemd/minerwatch.service "$stage/lib/systemd/system/minerwatch.service"
install -m 0640 deploy/debian/minerwatch.yml "$stage/etc/minerwatch/minerwatch.yml"
install -m 0644 deploy/debian/default "$stage/etc/default/minerwatch"
printf 'minerwatch\nLicense: Apache-2.0\n' > "$stage/usr/share/doc/minerwatch/copyright"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$stage/DEBIAN/"
printf '/etc/minerwatch/minerwatch.yml\n/etc/default/minerwatch\n' > "$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@PYMIN@/$pyver/" -e "s/@PYMAX@/$pymax/" \
    -e "s/@SIZE@/$size/" deploy/debian/control.in > "$stage/DEBIAN/control"
(cd "$stage" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum) \
    > "$stage/DEBIAN/md5sums"
deb="$out/minerwatch_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
