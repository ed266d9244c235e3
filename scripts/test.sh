#!/usr/bin/env bash
# Run the whole uwsgipy test suite, on a fresh Debian 12 / Ubuntu 24.04 machine too.
#
#  1. apt packages that are missing (as root, or through sudo): python3-venv (Debian's
#     Python has no ensurepip without it), python3-dev (Python.h for the C core), gcc,
#     nginx, lighttpd and apache2-bin (the integration tests run them as real front ends),
#     clang + libFuzzer, haproxy.
#  2. A virtualenv, .venv in the repository (git-ignored; UWSGIPY_VENV=DIR for another),
#     made once with $PYTHON (default python3): Debian's and Ubuntu's own Python refuses
#     `pip install` outside one (PEP 668, "externally-managed-environment").  The package
#     and its test dependencies go into it (pip install -e ".[test]", which also rebuilds
#     the C extension after a change in csrc/).
#  3. pytest, from the virtualenv; extra arguments are passed on.
#
# ./scripts/test.sh --installed [PYTEST ARGS] tests what a user installs instead, as CI does:
#  2'. scripts/build-wheel.sh builds the sdist and the manylinux_2_28 wheels (dist/); a fresh
#      virtualenv .venv-installed gets the test dependencies, then, with no C compiler reachable
#      (scripts/nocc-path.sh; CC=false), the wheel (--no-index --only-binary).  A build from the
#      sdist is tried in that state and must fail: proof that no compiler was reachable.
#  3'. the whole suite against the installed package (UWSGIPY_TEST_INSTALLED=1, PYTHONSAFEPATH=1:
#      nothing imports ./uwsgipy), still without a compiler; then, with the compiler back, the
#      tests that skipped for want of one (the C tables, fuzz smoke, the portable build).
#  4'. the sdist installed (compiled) into .venv-sdist, and each other CPython's wheel into its
#      own virtualenv: scripts/smoke_installed.py (tests/test_installed.py) against each.
set -euo pipefail
cd "$(dirname "$0")/.."

INSTALLED=0
if [ "${1:-}" = "--installed" ]; then
    INSTALLED=1
    shift
fi

PYTHON="${PYTHON:-python3}"
VENV="${UWSGIPY_VENV:-.venv}"
export PATH="$PATH:/usr/sbin:/sbin"

# -- 1. apt packages ---------------------------------------------------------------------
# One list: add a package with `need PACKAGE` after a check that it is missing.
APT=()
need() { APT+=("$@"); }

command -v nginx >/dev/null 2>&1 || need nginx
# lighttpd: mod_fastcgi and mod_scgi in front of uwsgipy (tests/test_fastcgi.py); /usr/sbin on Debian
command -v lighttpd >/dev/null 2>&1 || need lighttpd
# Apache httpd's binary and modules (mod_proxy_fcgi in front of uwsgipy, tests/test_fastcgi.py)
command -v apache2 >/dev/null 2>&1 || need apache2-bin
command -v gcc >/dev/null 2>&1 || need gcc
"$PYTHON" - <<'EOF' || need python3-dev
import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))
EOF
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || need python3-venv
fi
# clang with libFuzzer for tests/test_fuzz_smoke.py (the runtime is its own package,
# libclang-rt-N-dev, installed below once clang says its version); haproxy, a real PROXY
# protocol sender for tests/test_proxy_protocol.py.
command -v clang >/dev/null 2>&1 || need clang
command -v haproxy >/dev/null 2>&1 || need haproxy

if [ "${#APT[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "test.sh: needs ${APT[*]}: run as root or install sudo" >&2
            exit 1
        fi
        SUDO="sudo"
    fi
    echo "test.sh: installing ${APT[*]} (apt-get)" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${APT[@]}" >/dev/null
fi
if command -v clang >/dev/null 2>&1 && ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' \
        | clang -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1; then
    RT="libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
    echo "test.sh: installing $RT (libFuzzer, apt-get)" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$RT" >/dev/null \
        || { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
             $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$RT" >/dev/null; } \
        || echo "test.sh: no $RT: the libFuzzer smoke test will be skipped" >&2
fi

if [ "$INSTALLED" = 1 ]; then
    exec ./scripts/test-installed.sh "$@"
fi

# -- 2. the virtualenv -------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    echo "test.sh: creating the virtualenv $VENV ($("$PYTHON" -c 'import sys; print(sys.executable)'))" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
# The real uWSGI, for tests/test_ini_differential.py (its C core compiles in 1-2 min, once;
# pip caches the wheel); the differential tests skip without it.
"$VENV/bin/python" -c 'import shutil, sys, os; sys.exit(not os.path.exists(os.path.join(os.path.dirname(sys.executable), "uwsgi")))' \
    || "$VENV/bin/python" -m pip install -q --disable-pip-version-check "uwsgi>=2.0,<2.1" \
    || echo "test.sh: could not install uwsgi: the differential config tests will be skipped" >&2

# -- 3. the tests ------------------------------------------------------------------------
exec "$VENV/bin/python" -m pytest "$@"
