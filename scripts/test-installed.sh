#!/usr/bin/env bash
# The test suite against uwsgipy as a user installs it: `./scripts/test.sh --installed`, which CI
# runs (.ci/run).  scripts/test.sh has installed the apt packages first; steps:
#
#  1. scripts/build-wheel.sh: the sdist and the manylinux_2_28 x86_64 wheels, in dist/.
#  2. a fresh virtualenv .venv-installed (UWSGIPY_INSTALLED_VENV): the test dependencies from
#     pyproject.toml and real uWSGI (the differential tests), while a compiler is reachable;
#  3. the compiler hidden (PATH from scripts/nocc-path.sh, CC=false, CXX=false): building the
#     sdist must fail (so nothing could have compiled), and the wheel installs, --no-index
#     --only-binary :all:, with no build step;
#  4. the whole suite, compiler still hidden, against the installed package
#     (UWSGIPY_TEST_INSTALLED=1 PYTHONSAFEPATH=1); extra arguments go to pytest.  Tests that need
#     a compiler skip and are listed (tests/conftest.py writes their ids), then
#  5. run again with the compiler back: the C tables, fuzz smoke, the portable build;
#  6. the sdist, compiled and installed into .venv-sdist; each other CPython's wheel (3.10-3.13,
#     where such a Python is here) into its own virtualenv: the smoke subset against each
#     (scripts/smoke_installed.py).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${UWSGIPY_INSTALLED_VENV:-.venv-installed}"
DIST="${UWSGIPY_DIST:-dist}"
export UWSGIPY_DIST="$DIST"
say() { echo "test-installed.sh: $*" >&2; }
PIP=(-m pip install -q --disable-pip-version-check)
. scripts/pythons.sh

# -- 1. build ----------------------------------------------------------------------------------
./scripts/build-wheel.sh
VERSION="$(package_version "$PYTHON")"
TAG="$("$PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
WHEEL="$DIST/uwsgipy-$VERSION-$TAG-$TAG-manylinux_2_28_x86_64.whl"
SDIST="$DIST/uwsgipy-$VERSION.tar.gz"
[ -f "$WHEEL" ] || { say "no $WHEEL: was $PYTHON among the CPythons built for?"; exit 1; }

# -- 2. a fresh virtualenv with the test dependencies ------------------------------------------
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
mapfile -t DEPS < <("$VENV/bin/python" -c 'import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))')
say "test dependencies: ${DEPS[*]}"
"$VENV/bin/python" "${PIP[@]}" "${DEPS[@]}"
"$VENV/bin/python" "${PIP[@]}" "uwsgi>=2.0,<2.1" \
    || say "could not install uwsgi: the differential config tests will be skipped"

# -- 3. no compiler: the sdist cannot build, the wheel installs ---------------------------------
NOCC_PATH="$(./scripts/nocc-path.sh)"
nocc() { env PATH="$NOCC_PATH" CC=false CXX=false LDSHARED=false "$@"; }
if nocc "$VENV/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
        -w "${TMPDIR:-/tmp}/uwsgipy-nocc-probe" "$SDIST" >/dev/null 2>&1; then
    say "the sdist built with the compiler hidden: the no-compiler check proves nothing"
    exit 1
fi
say "no compiler reachable (building the sdist fails); installing $(basename "$WHEEL")"
nocc "$VENV/bin/python" "${PIP[@]}" --no-index --no-deps --only-binary :all: "$WHEEL"

# -- 4. the suite, against the installed package, without a compiler ---------------------------
SKIPPED="$(mktemp "${TMPDIR:-/tmp}/uwsgipy-needs-compiler.XXXXXX")"
trap 'rm -f "$SKIPPED"' EXIT
say "the suite against the installed package, no compiler reachable"
nocc PYTHONSAFEPATH=1 UWSGIPY_TEST_INSTALLED=1 UWSGIPY_NEEDS_COMPILER_FILE="$SKIPPED" \
    "$VENV/bin/python" -m pytest "$@"

# -- 5. the tests that need a compiler, with it back -------------------------------------------
mapfile -t AGAIN < <(sort -u "$SKIPPED")
if [ "${#AGAIN[@]}" -gt 0 ]; then
    say "${#AGAIN[@]} tests skipped for want of a compiler: again, with the compiler"
    PYTHONSAFEPATH=1 UWSGIPY_TEST_INSTALLED=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${AGAIN[@]}"
fi

# -- 6. the sdist, and the other CPythons' wheels ----------------------------------------------
smoke() {  # smoke VENV: the smoke subset against what VENV has installed
    "$1/bin/python" "${PIP[@]}" "pytest>=7" "requests>=2.28"
    "$1/bin/python" scripts/smoke_installed.py .
}
say "the sdist: compiled and installed into .venv-sdist"
rm -rf .venv-sdist
"$PYTHON" -m venv .venv-sdist
.venv-sdist/bin/python "${PIP[@]}" "$SDIST"
.venv-sdist/bin/uwsgipy --version
smoke .venv-sdist
for v in $WHEEL_PYTHON_VERSIONS; do
    tag="cp${v/./}"
    [ "$tag" = "$TAG" ] && continue
    py="$(find_python "$v")" || { say "no python$v here: its wheel is not tested"; continue; }
    venv=".venv-installed-$tag"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" "${PIP[@]}" "setproctitle>=1.3"
    nocc "$venv/bin/python" "${PIP[@]}" --no-index --no-deps --only-binary :all: \
        "$DIST/uwsgipy-$VERSION-$tag-$tag-manylinux_2_28_x86_64.whl"
    say "$tag: the smoke subset against its wheel"
    smoke "$venv"
done
say "done: $(basename "$WHEEL") and the sdist pass; wheels in $DIST"
