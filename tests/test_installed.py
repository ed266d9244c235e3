"""The uwsgipy under test is the one the run says it is (issue 13): with UWSGIPY_TEST_INSTALLED=1
the package installed from the wheel into this Python's site-packages, never ./uwsgipy; without
it, the source tree.

In both modes: `python -m uwsgipy --version`, the `uwsgipy` console script, the option reference
(`--help-option all`, which ships in the package) and real servers started with the repository as
their cwd (where `python -m` would put ./uwsgipy first on sys.path) serving examples/hello.py over
HTTP and over the uwsgi protocol, each server's C core read from /proc/PID/maps.  In installed
mode only: the distribution's metadata and RECORD, and no file of it naming the build machine.
"""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import uwsgipy
import uwsgipy._core
from helpers import (INSTALLED, LIVE_SERVERS, REPO, ServerProcess, child_env, http_request,
                     process_tree, uwsgi_request, uwsgi_vars, wait_until)
from uwsgipy import config

HELLO = REPO / "examples" / "hello.py"
HELLO_BODY = b"Hello from uwsgipy!\n"
installed_only = pytest.mark.skipif(not INSTALLED, reason="installed mode only (UWSGIPY_TEST_INSTALLED=1)")


def _under_repo(path: Path) -> bool:
    """Is path in the source package ./uwsgipy (a virtualenv inside the repository, as
    scripts/test-installed.sh makes, is not the source tree)?"""
    return REPO / "uwsgipy" in Path(path).resolve().parents


def _site_dirs() -> set:
    """This Python's site-packages (purelib and platlib of sys.prefix), resolved."""
    paths = sysconfig.get_paths()
    return {Path(paths[k]).resolve() for k in ("purelib", "platlib")}


def _package_dir() -> Path:
    return Path(uwsgipy.__file__).resolve().parent


def _distribution() -> importlib.metadata.Distribution:
    """The uwsgipy distribution beside the imported package (not one that some test's sys.path
    change, such as the cwd a loaded app adds, would find first)."""
    found = list(importlib.metadata.distributions(name="uwsgipy", path=[str(_package_dir().parent)]))
    if not found and not INSTALLED:
        pytest.skip("source tree without metadata (no `pip install -e .`: no uwsgipy.egg-info)")
    assert len(found) == 1, f"{len(found)} uwsgipy distributions in {_package_dir().parent}"
    return found[0]


def _script() -> Path:
    return Path(sys.executable).parent / "uwsgipy"


def _run(cmd) -> subprocess.CompletedProcess:
    """cmd in the repository (the cwd that would shadow an installed package)."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=str(REPO),
                          env=child_env())


# `python -m uwsgipy`, and the console script beside sys.executable (in source mode the editable
# install's, when there is one)
LAUNCHERS = ["python-m", "script"]


def _command(launcher: str) -> list:
    if launcher == "python-m":
        return [sys.executable, "-m", "uwsgipy"]
    if not _script().exists():
        if INSTALLED:
            pytest.fail(f"no console script {_script()}: the wheel's entry point was not installed")
        pytest.skip(f"no console script {_script()} in source mode (pip install -e . makes one)")
    return [str(_script())]


# ----------------------------------------------------------------------------------------------
# where the package comes from
# ----------------------------------------------------------------------------------------------

def test_the_imported_package_is_the_one_under_test():
    for mod in (uwsgipy, uwsgipy._core):
        where = Path(mod.__file__).resolve()
        if INSTALLED:
            assert not _under_repo(where), f"{mod.__name__} imported from the source tree: {where}"
            assert where.parent.parent in _site_dirs(), \
                f"{mod.__name__} is at {where}, not in {sys.prefix}'s site-packages {_site_dirs()}"
        else:
            assert where.parent == REPO / "uwsgipy", f"{mod.__name__} is at {where}, not in the source tree"
    assert Path(uwsgipy._core.__file__).parent.resolve() == _package_dir()


def test_distribution_version_is_the_package_version():
    dist = _distribution()
    assert dist.version == uwsgipy.__version__
    assert dist.metadata["Name"] == "uwsgipy"
    if INSTALLED:
        scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
        assert scripts == {"uwsgipy": "uwsgipy.cli:main"}, scripts


@installed_only
def test_record_lists_the_c_core_and_the_package_files():
    dist = _distribution()
    files = [str(f) for f in dist.files or ()]
    cores = [f for f in files if f.startswith("uwsgipy/_core") and f.endswith(".so")]
    assert len(cores) == 1, files
    assert Path(dist.locate_file(cores[0])).resolve() == Path(uwsgipy._core.__file__).resolve()
    for name in ("uwsgipy/__init__.py", "uwsgipy/cli.py", "uwsgipy/config.py", "uwsgipy/_core.pyi",
                 "uwsgipy/py.typed"):
        assert name in files, f"{name} not in RECORD"
    # every file RECORD names is there
    missing = [f for f in dist.files if not Path(dist.locate_file(f)).exists()]
    assert not missing, missing


@installed_only
def test_no_installed_file_names_the_build_machine():
    """The wheel was built in the repository: no text file of the installed package (nor of its
    dist-info) may name the repository or /work/ (a path baked in at build time).  Not checked:
    what pip writes at install time, naming this machine on purpose (direct_url.json: where the
    wheel came from; the console script's #! line: this virtualenv, which may be in the repo)."""
    dist = _distribution()
    words = {"/work/", str(REPO)}
    bad = []
    checked = 0
    for f in dist.files or ():
        path = Path(dist.locate_file(f))
        if path.suffix in (".pyc", ".so") or not path.is_file() or str(f).startswith("..") \
                or path.name in ("direct_url.json", "INSTALLER", "REQUESTED"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        checked += 1
        bad += [f"{f}: {w!r}" for w in words if w in text]
    assert checked > 10, checked
    assert not bad, bad


def test_package_sources_do_not_name_the_build_machine():
    """Both modes: the package's .py files name no machine path (a repository path in them would
    be wrong on every machine the wheel is installed on)."""
    bad = []
    sources = sorted(_package_dir().glob("*.py"))
    assert len(sources) > 10, sources
    for path in sources:
        text = path.read_text(encoding="utf-8")
        bad += [f"{path.name}: {w!r}" for w in ("/work/", str(REPO), "/root/") if w in text]
    assert not bad, bad


# ----------------------------------------------------------------------------------------------
# the commands a user types
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_version(launcher):
    res = _run([*_command(launcher), "--version"])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines and lines[0].split()[:2] == ["uwsgipy", uwsgipy.__version__], res.stdout
    if len(lines) > 1:
        assert "poller" in res.stdout, res.stdout  # how the C core was built
    assert "Traceback" not in res.stdout + res.stderr


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_help_option_all_from_the_package(launcher):
    res = _run([*_command(launcher), "--help-option", "all"])
    assert res.returncode == 0, res.stderr
    assert res.stdout == config.render_docs()  # the reference of the package under test
    for name in ("static-map", "harakiri", "http-socket", "processes"):
        assert f"### `{name}`" in res.stdout, name
    res = _run([*_command(launcher), "--help-option", "harakiri"])
    assert res.returncode == 0 and res.stdout.splitlines()[0] == "harakiri", res.stdout + res.stderr


def test_child_env_points_children_at_the_package_under_test():
    """A bare `python -c` child in the repository imports the same uwsgipy as this process."""
    res = _run([sys.executable, "-c", "import uwsgipy, uwsgipy._core; print(uwsgipy.__file__); "
                                      "print(uwsgipy._core.__file__)"])
    assert res.returncode == 0, res.stderr
    assert [str(Path(p).resolve()) for p in res.stdout.split()] == \
        [str(Path(uwsgipy.__file__).resolve()), str(Path(uwsgipy._core.__file__).resolve())]
    env = child_env({"PYTHONPATH": "/nonexistent-upy"})
    entries = env["PYTHONPATH"].split(os.pathsep)
    assert "/nonexistent-upy" in entries
    assert (str(REPO) in entries) is not INSTALLED
    if INSTALLED:
        assert env["PYTHONSAFEPATH"] == "1"


# ----------------------------------------------------------------------------------------------
# real servers
# ----------------------------------------------------------------------------------------------

def _mapped_core(pid: int) -> set:
    """The uwsgipy C core(s) mapped into process pid."""
    with open(f"/proc/{pid}/maps") as f:
        return {Path(line.split(None, 5)[5].strip()).resolve() for line in f
                if len(line.split(None, 5)) == 6 and "/_core" in line and line.rstrip().endswith(".so")}


HAVE_PROC = os.path.isdir("/proc/self")  # Linux; the smoke run on macOS (cibuildwheel) has none


def _check_core(pid: int) -> None:
    if not HAVE_PROC:
        return  # test_the_imported_package_is_the_one_under_test still holds for this process
    assert _mapped_core(pid) == {Path(uwsgipy._core.__file__).resolve()}, \
        f"server {pid} maps {_mapped_core(pid)}, the package under test is {_package_dir()}"


def test_server_serves_hello_over_http_and_uwsgi(server_factory):
    """`python -m uwsgipy` started in the repository (the cwd that would shadow an installed
    package) with both listeners."""
    srv = server_factory("--http-socket", "127.0.0.1:0", "--socket", "127.0.0.1:0",
                         "--wsgi-file", str(HELLO), cwd=REPO)
    r = http_request(srv.http_addr, "GET", "/")
    assert r.status == 200 and r.body == HELLO_BODY, r
    r = uwsgi_request(srv.uwsgi_addr, uwsgi_vars("GET", "/hi"))
    assert r.status == 200 and r.body == HELLO_BODY, r
    _check_core(srv.ready_pid)


def test_console_script_serves_hello_with_a_master(tmp_path):
    """The README's command, `.venv/bin/uwsgipy --http-socket ... --wsgi-file examples/hello.py`,
    with a master and two workers: each worker runs the C core under test."""
    cmd = _command("script")
    srv = ServerProcess(["--master", "--processes", "2", "--http-socket", "127.0.0.1:0",
                         "--wsgi-file", "examples/hello.py"], cwd=REPO)
    srv.cmd = [*cmd, *srv.args]
    LIVE_SERVERS.append(srv)
    try:
        srv.start()
        for _ in range(10):
            r = http_request(srv.http_addr, "GET", "/", headers=[("Connection", "close")])
            assert r.status == 200 and r.body == HELLO_BODY, r
        if not HAVE_PROC:
            return
        workers = wait_until(lambda: (w := set(process_tree(srv.pid)) - {srv.pid}) and len(w) == 2 and w,
                             10, what="2 workers")
        for pid in workers | {srv.pid}:
            _check_core(pid)
    finally:
        LIVE_SERVERS.remove(srv)
        assert srv.stop() == 0, srv.output()[-3000:]
