"""The pure-C WebSocket codec (csrc/upy_ws.c: frame headers, unmasking, incremental UTF-8, close
payloads, SHA-1 and Sec-WebSocket-Accept, token lists) as a C table (tests/c/test_ws.c), built
plain (-Werror) and with ASan+UBSan, each input against a guard page."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CSRC = REPO / "csrc"

BUILDS = {
    "plain": ["-O2"],
    "asan-ubsan": ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer"],
}


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_c_ws_table(build, tmp_path):
    exe = tmp_path / f"test_ws_{build}"
    cmd = ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers",
           "-D_GNU_SOURCE", f"-I{CSRC}", *BUILDS[build], "-o", str(exe),
           str(CSRC / "upy_ws.c"), str(REPO / "tests" / "c" / "test_ws.c")]
    cc = subprocess.run(cmd, capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    m = re.search(r"^(\d+) passed, (\d+) failed$", run.stdout, re.M)
    assert run.returncode == 0 and m and int(m.group(1)) > 1000 and m.group(2) == "0", \
        run.stdout + run.stderr
