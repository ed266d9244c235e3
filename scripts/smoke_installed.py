"""Run the smoke subset of uwsgipy's tests against the *installed* package.

Usage: python scripts/smoke_installed.py PROJECT_DIR [PYTEST ARGS...]

The tests (tests/, with examples/, nginx-conf/ and pyproject.toml beside them) are copied into a
temporary directory that has no ``uwsgipy/``, so nothing can import the source tree whatever the
Python version, and pytest runs there with ``UWSGIPY_TEST_INSTALLED=1`` (tests/conftest.py then
refuses to run if uwsgipy would still come from a source tree).  The subset is
tests/test_installed.py unless PYTEST ARGS name others (paths relative to the copy).

Used as cibuildwheel's test-command (pyproject.toml [tool.cibuildwheel]) and by
``scripts/test.sh --installed`` for the CPythons other than the one the whole suite runs on.
Exit status: pytest's.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COPIED = ("tests", "examples", "nginx-conf")


def main(argv: list) -> int:
    if len(argv) < 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    project = Path(argv[1]).resolve()
    args = argv[2:] or ["tests/test_installed.py"]
    with tempfile.TemporaryDirectory(prefix="uwsgipy-smoke-") as tmp:
        root = Path(tmp)
        for name in COPIED:
            if (project / name).is_dir():
                shutil.copytree(project / name, root / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.o"))
        shutil.copy(project / "pyproject.toml", root / "pyproject.toml")
        env = dict(os.environ, UWSGIPY_TEST_INSTALLED="1", PYTHONSAFEPATH="1")
        env.pop("PYTHONPATH", None)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
        print(f"smoke_installed.py: {' '.join(cmd)} (in a copy of the tests, {root})", file=sys.stderr)
        return subprocess.run(cmd, cwd=root, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
