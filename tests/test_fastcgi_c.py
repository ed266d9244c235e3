"""The pure-C FastCGI and SCGI decoders (csrc/upy_fastcgi.c, csrc/upy_scgi.c, over the CGI-vars
reading of csrc/upy_cgivars.c) as a C table (tests/c/test_cgi.c), built plain (-Werror) and with
ASan+UBSan: every row whole, in every prefix and grown in place, with trailing bytes, each input
against a guard page; the STDIN decoder whole, bytewise and split at every offset."""
import pytest

from ctable import BUILDS, needs_gcc, run_table

SOURCES = ["upy_fastcgi.c", "upy_scgi.c", "upy_cgivars.c", "upy_http.c"]


@needs_gcc
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_c_cgi_table(build, tmp_path):
    run_table("test_cgi.c", SOURCES, build, tmp_path, min_passed=1000)
