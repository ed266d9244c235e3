"""fuzz/run.sh, briefly: every libFuzzer target builds with ASan + UBSan, runs on its seed corpus,
executes inputs and finds nothing; and the script reports a crashing target as a finding.

Skipped, with the reason, when clang or its libFuzzer runtime is missing (Debian 12:
apt-get install -y clang libclang-rt-14-dev).  The long runs are `nice -n 19 fuzz/run.sh 20`
(fuzz/README.md).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"
RUN = FUZZ / "run.sh"
TARGETS = sorted(p.stem[len("fuzz_"):] for p in FUZZ.glob("fuzz_*.c"))
LINE = re.compile(r"^fuzz_(\S+)\s+(\d+) executions in (\d+)s: (.*)$", re.M)


def _libfuzzer_missing(tmp: Path) -> str:
    """Why libFuzzer cannot be used here, or "" when it can."""
    if shutil.which("clang") is None:
        return "clang not installed (apt-get install -y clang libclang-rt-14-dev)"
    src = tmp / "probe.c"
    src.write_text("#include <stddef.h>\n#include <stdint.h>\n"
                   "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
    res = subprocess.run(["clang", "-fsanitize=fuzzer,address,undefined", "-o", str(tmp / "probe"), str(src)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"
        return f"clang has no libFuzzer runtime (Debian 12: apt-get install -y libclang-rt-14-dev): {last}"
    return ""


@pytest.fixture(scope="module")
def libfuzzer(tmp_path_factory) -> None:
    why = _libfuzzer_missing(tmp_path_factory.mktemp("probe"))
    if why:
        pytest.skip(why)


def run(args, tmp: Path, seconds: int, cwd: Path = ROOT, script: Path = RUN) -> subprocess.CompletedProcess:
    env = dict(os.environ, FUZZ_SECONDS=str(seconds))
    return subprocess.run([str(script), "-j", "2", "-o", str(tmp / "out"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_every_target_runs_and_finds_nothing(libfuzzer, tmp_path):
    assert TARGETS and {"http", "chunked", "uwsgi", "ws", "fastcgi", "scgi"} <= set(TARGETS), TARGETS
    res = run([], tmp_path, 2)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    lines = {m.group(1): m for m in LINE.finditer(res.stdout)}
    assert sorted(lines) == TARGETS, out
    for name, m in lines.items():
        assert int(m.group(2)) > 0, f"fuzz_{name} executed nothing:\n{out}"
        assert m.group(4) == "nothing found", out
        # it started from the seed corpus, which is still where it was
        seeds = list((FUZZ / "corpus" / name).iterdir())
        assert seeds and (tmp_path / "out" / name / "corpus").is_dir()
        assert len(list((tmp_path / "out" / name / "corpus").iterdir())) >= len(seeds)


def test_a_crash_is_reported_and_kept(libfuzzer, tmp_path):
    """A copy of fuzz/ with one more target that aborts on an input starting "Hi": run.sh exits
    1, says FOUND, and keeps the crashing input."""
    fuzz = tmp_path / "tree" / "fuzz"
    (fuzz / "corpus" / "boom").mkdir(parents=True)
    shutil.copy(RUN, fuzz / "run.sh")
    (tmp_path / "tree" / "csrc").symlink_to(ROOT / "csrc")
    (fuzz / "fuzz_boom.c").write_text(
        "#include <stddef.h>\n#include <stdint.h>\n#include <stdlib.h>\n"
        "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)\n"
        "{ if (n >= 2 && d[0] == 'H' && d[1] == 'i') abort(); return 0; }\n")
    (fuzz / "corpus" / "boom" / "seed").write_bytes(b"Ha")
    res = run([], tmp_path, 30, cwd=tmp_path, script=fuzz / "run.sh")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "fuzz_boom" in res.stdout and "FOUND 1 input(s)" in res.stdout, res.stdout
    crashes = list((tmp_path / "out" / "boom" / "artifacts").glob("crash-*"))
    assert len(crashes) == 1 and crashes[0].read_bytes().startswith(b"Hi")


def test_usage_errors(tmp_path):
    for args, env in ([[], {}], [["abc"], {}], [["-j", "0", "1"], {}], [["-t", "nope", "1"], {}],
                      [[], {"FUZZ_SECONDS": "1.5"}]):
        res = subprocess.run([str(RUN), *args], env=dict(os.environ, CC="true", **env), capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 2, (args, env, res.stderr)
        assert res.stderr.strip(), (args, env)
