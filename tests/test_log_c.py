"""The pure-C pieces of the access log (csrc/upy_log.c: JSON string escaping, request
ids) as a C table (tests/c/test_log.c), built plain (-Werror) and with ASan+UBSan, each
input against a guard page; and the escaping differentially against Python's own UTF-8
decoder ("replace": one U+FFFD per maximal ill-formed subpart) and json.loads."""
import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

REPO = Path(__file__).resolve().parent.parent
CSRC = REPO / "csrc"

BUILDS = {
    "plain": ["-O2"],
    "asan-ubsan": ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer"],
}
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


@needs_gcc
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_c_log_table(build, tmp_path):
    exe = tmp_path / f"test_log_{build}"
    cmd = ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers",
           "-D_GNU_SOURCE", f"-I{CSRC}", *BUILDS[build], "-o", str(exe),
           str(CSRC / "upy_log.c"), str(REPO / "tests" / "c" / "test_log.c"), "-lpthread"]
    cc = subprocess.run(cmd, capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    m = re.search(r"^(\d+) passed, (\d+) failed$", run.stdout, re.M)
    assert run.returncode == 0 and m and int(m.group(1)) > 500 and m.group(2) == "0", \
        run.stdout + run.stderr


@pytest.fixture(scope="module")
def liblog(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    so = tmp_path_factory.mktemp("liblog") / "liblog.so"
    cc = subprocess.run(["gcc", "-std=c11", "-O1", "-shared", "-fPIC", "-D_GNU_SOURCE",
                         f"-I{CSRC}", "-o", str(so), str(CSRC / "upy_log.c"), "-lpthread"],
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    lib = ctypes.CDLL(str(so))
    lib.upy_json_escape.restype = ctypes.c_size_t
    lib.upy_json_escape.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    return lib


def escape(lib, raw: bytes) -> bytes:
    out = ctypes.create_string_buffer(len(raw) * 6 + 1)
    n = lib.upy_json_escape(out, raw, len(raw))
    return out.raw[:n]


@settings(max_examples=3000, deadline=None)
@given(raw=st.binary(max_size=64)
       | st.lists(st.sampled_from([b"\xc3", b"\xa9", b"\xe2\x82", b"\xac", b"\xf0\x9f",
                                   b"\x98\x80", b"\xed\xa0", b"\x80", b"\xff", b'"', b"\\",
                                   b"\x00", b"\n", b"a", b"\x7f", b"\xf4\x90"]),
                  max_size=24).map(b"".join))
def test_escape_matches_python(liblog, raw):
    out = escape(liblog, raw)
    assert not any(b < 0x20 for b in out)
    assert json.loads(b'"' + out + b'"') == raw.decode("utf-8", "replace")


def test_escape_8k_value(liblog):
    raw = bytes(range(256)) * 32
    assert json.loads(b'"' + escape(liblog, raw) + b'"') == raw.decode("utf-8", "replace")
