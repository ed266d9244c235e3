"""The pure-C rules of static files (csrc/upy_static_http.c: path cleaning, HTTP dates,
entity-tags, Range, Accept-Encoding) as a C table (tests/c/test_static.c), built plain
(-Werror) and with ASan+UBSan, each input against a guard page."""
import pytest

from ctable import BUILDS, needs_gcc, run_table


@needs_gcc
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_c_static_table(build, tmp_path):
    run_table("test_static.c", ["upy_static_http.c"], build, tmp_path, min_passed=150,
              timeout=60)
