"""Fixtures for the integration suite: real uwsgipy processes, real nginx.

Server processes are started through `server_factory` (one test) or `module_server_factory`
(shared by a module).  At teardown each is sent SIGTERM, waited for, SIGKILLed only if it hangs,
and must have exited 0 unless the test said otherwise.  When a test fails, the output of every
server it used is attached to the report.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import LIVE_SERVERS as _LIVE, NginxPool, ServerPool, nginx_binary, short_tmpdir  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed and rep.when in ("call", "setup"):
        marks = getattr(item, "_uwsgipy_marks", {})
        for srv in list(_LIVE):
            start = marks.get(id(srv), 0)
            text = "\n".join(srv.lines[start:])[-20000:]
            rep.sections.append((f"uwsgipy pid {srv.proc.pid if srv.proc else '?'} output "
                                 f"({' '.join(srv.args)[:120]})", text))


@pytest.fixture(autouse=True)
def _mark_server_output(request):
    request.node._uwsgipy_marks = {id(s): s.mark() for s in _LIVE}
    yield


def _finish(pool) -> None:
    """Stop what a pool started; fail the test with what went wrong."""
    problems = pool.finish()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def server_factory(request):
    pool = ServerPool()
    yield pool
    _finish(pool)


@pytest.fixture(scope="module")
def module_server_factory():
    pool = ServerPool()
    yield pool
    _finish(pool)


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    b = nginx_binary()
    if b is None:
        pytest.skip("nginx binary not found (apt-get install -y nginx)")
    return b


@pytest.fixture(scope="module")
def module_nginx_factory(nginx_bin, tmp_path_factory):
    pool = NginxPool(nginx_bin, tmp_path_factory.mktemp("nginx"))
    yield pool
    _finish(pool)


@pytest.fixture(scope="module")
def unix_dir():
    """A short directory for unix sockets (pytest's tmp paths can exceed sun_path)."""
    d = short_tmpdir()
    yield d
    for name in os.listdir(d):
        try:
            os.unlink(os.path.join(d, name))
        except OSError:
            pass
    try:
        os.rmdir(d)
    except OSError:
        pass
