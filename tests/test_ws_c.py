"""The pure-C WebSocket codec (csrc/upy_ws.c: frame headers, unmasking, incremental UTF-8, close
payloads, SHA-1 and Sec-WebSocket-Accept, token lists) as a C table (tests/c/test_ws.c), built
plain (-Werror) and with ASan+UBSan, each input against a guard page."""
import pytest

from ctable import BUILDS, needs_gcc, run_table


@needs_gcc
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_c_ws_table(build, tmp_path):
    run_table("test_ws.c", ["upy_ws.c"], build, tmp_path, min_passed=1000)
