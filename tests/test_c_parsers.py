"""Build and run the C table tests for the pure-C parsers (tests/c/test_parsers.c).

Two builds, both must pass: a plain -O2 -Werror build, and an ASan+UBSan build
that aborts on the first finding (the picohttpparser practice: sanitizers
always on for parser tests).  Skipped only when gcc is missing.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCES = [CSRC / "upy_http.c", CSRC / "upy_uwsgi.c", CSRC / "upy_cgivars.c", ROOT / "tests" / "c" / "test_parsers.c"]
BASE = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", f"-I{CSRC}"]
BUILDS = {
    "plain": ["-O2"],
    "asan-ubsan": ["-O1", "-g", "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"],
}

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_c_parser_tables(build: str, tmp_path: Path) -> None:
    exe = tmp_path / f"test_parsers_{build}"
    cmd = ["gcc", *BASE, *BUILDS[build], "-o", str(exe), *map(str, SOURCES)]
    cc = subprocess.run(cmd, capture_output=True, text=True)
    assert cc.returncode == 0, f"compile failed:\n{' '.join(cmd)}\n{cc.stderr}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    m = re.search(r"^(\d+) passed, (\d+) failed$", run.stdout, re.M)
    assert m is not None, out
    assert int(m.group(1)) > 0 and int(m.group(2)) == 0, out
