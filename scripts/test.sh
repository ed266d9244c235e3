#!/usr/bin/env bash
# Run the whole uwsgipy test suite on a fresh Debian machine:
# installs nginx (Debian package) when missing, the package with its test
# dependencies (pip), then runs pytest.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "test.sh: installing nginx (apt-get)" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install -q -e ".[test]"
exec "$PYTHON" -m pytest "$@"
