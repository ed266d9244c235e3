"""Build one C table test (tests/c/test_*.c) against the pure-C sources it tests, run it, and
check its "N passed, M failed" line.

Each table is built twice, and both builds must pass: plain -O2 with -Werror, and ASan+UBSan
aborting on the first finding (picohttpparser's practice: sanitizers always on for parser
tests).  The tables place their inputs against a guard page (tests/c/table.h) themselves.

    @needs_gcc
    @pytest.mark.parametrize("build", sorted(BUILDS))
    def test_c_ws_table(build, tmp_path):
        run_table("test_ws.c", ["upy_ws.c"], build, tmp_path, min_passed=1000)
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import pytest

__all__ = ["BUILDS", "CSRC", "needs_gcc", "run_table"]

REPO = Path(__file__).resolve().parent.parent
CSRC = REPO / "csrc"
TABLES = REPO / "tests" / "c"

BASE = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers",
        "-D_GNU_SOURCE", f"-I{CSRC}"]
BUILDS = {
    "plain": ["-O2"],
    "asan-ubsan": ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer"],
}
RESULT = re.compile(r"^(\d+) passed, (\d+) failed$", re.M)

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


def run_table(table: str, sources: Sequence[str], build: str, tmp_path: Path, min_passed: int,
              libs: Sequence[str] = (), timeout: float = 120) -> int:
    """Compile tests/c/<table> with csrc/<sources> in `build` (a key of BUILDS), run it, and
    assert that it exits 0 with more than min_passed checks passed and none failed.  Returns
    the number passed."""
    exe = tmp_path / f"{Path(table).stem}_{build}"
    cmd = ["gcc", *BASE, *BUILDS[build], "-o", str(exe), *(str(CSRC / s) for s in sources),
           str(TABLES / table), *libs]
    cc = subprocess.run(cmd, capture_output=True, text=True)
    assert cc.returncode == 0, f"compile failed:\n{' '.join(cmd)}\n{cc.stderr}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout)
    out = run.stdout + run.stderr
    m = RESULT.search(run.stdout)
    assert run.returncode == 0 and m is not None, out
    assert int(m.group(1)) > min_passed and m.group(2) == "0", out
    return int(m.group(1))
