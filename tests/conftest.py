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

from helpers import (INSTALLED, LIVE_SERVERS as _LIVE, REPO, RUNNERS, NginxPool, ServerPool,  # noqa: E402
                     nginx_binary, short_tmpdir)


def pytest_addoption(parser):
    parser.addoption("--runners", default=",".join(RUNNERS),
                     help="comma-separated app runners (of %s) the modules marked all_runners "
                          "run under; default: all" % ", ".join(RUNNERS))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "all_runners: run the module's server tests under every app runner in "
                   "helpers.RUNNERS (threads = 1, threads = 4, gevent = 8); ids end with the runner")
    if INSTALLED:
        problem = installed_mode_problem()
        if problem:
            raise pytest.UsageError(f"UWSGIPY_TEST_INSTALLED=1: {problem}")


def installed_mode_problem() -> str:
    """Why this run cannot test the installed package, or "" when it can: uwsgipy and its C core
    must be imported from outside the repository, and the children must be able to keep the cwd
    off sys.path (PYTHONSAFEPATH, Python >= 3.11; helpers.child_env sets it)."""
    if sys.version_info < (3, 11) and (REPO / "uwsgipy").is_dir():
        # (a copy of the tests without uwsgipy/, as scripts/smoke_installed.py makes, is fine)
        return (f"Python {sys.version.split()[0]} has no PYTHONSAFEPATH (3.11+): `python -m uwsgipy` "
                "in the repository would import ./uwsgipy")
    try:
        import uwsgipy
        import uwsgipy._core
    except ImportError as exc:
        return f"uwsgipy is not importable in {sys.executable}: {exc} (install the wheel first)"
    for mod in (uwsgipy, uwsgipy._core):
        where = Path(mod.__file__).resolve()
        if where.parent == REPO / "uwsgipy":  # (a virtualenv inside the repository is fine)
            return (f"{mod.__name__} is imported from the source tree ({where}), not from the installed "
                    f"package: run `PYTHONSAFEPATH=1 {sys.executable} -m pytest` (without it, `-m` puts "
                    "the cwd first on sys.path) and do not install uwsgipy editable (pip install -e)")
    return ""


def pytest_generate_tests(metafunc):
    """In a module marked `all_runners`, every test that starts a server through the factories
    (or asks for `runner`) runs once per runner, with module scope: the module's shared servers
    are built once per runner, and pytest groups the tests by it."""
    if "runner" in metafunc.fixturenames and metafunc.definition.get_closest_marker("all_runners"):
        names = [n.strip() for n in metafunc.config.getoption("runners").split(",") if n.strip()]
        unknown = [n for n in names if n not in RUNNERS]
        if unknown or not names:
            raise pytest.UsageError(f"--runners: unknown runner(s) {unknown}; choose from {list(RUNNERS)}")
        metafunc.parametrize("runner", names, indirect=True, scope="module")


@pytest.fixture(scope="module")
def runner(request) -> str:
    """The app runner (a key of helpers.RUNNERS) the servers of this test run under:
    "threads1", the default, unless the module is marked `all_runners`."""
    return getattr(request, "param", "threads1")


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
def server_factory(request, runner):
    pool = ServerPool(RUNNERS[runner])
    yield pool
    _finish(pool)


@pytest.fixture(scope="module")
def module_server_factory(runner):
    pool = ServerPool(RUNNERS[runner])
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


_COMPILER_SKIP = ("compiler", "gcc", "clang", "libfuzzer")


def pytest_runtest_logreport(report):
    """With UWSGIPY_NEEDS_COMPILER_FILE set (scripts/test-installed.sh runs the suite with no
    compiler reachable), the id of each test skipped for want of a compiler goes into that file,
    one per line, so the script can run them again once the compiler is back."""
    path = os.environ.get("UWSGIPY_NEEDS_COMPILER_FILE")
    if not path or not report.skipped or not isinstance(report.longrepr, tuple):
        return
    reason = str(report.longrepr[2]).lower()
    if any(word in reason for word in _COMPILER_SKIP):
        with open(path, "a", encoding="utf-8") as f:
            f.write(report.nodeid + "\n")
