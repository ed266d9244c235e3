"""home / virtualenv / venv / pyhome / -H: the app runs with a virtualenv's packages.

A real virtualenv (python -m venv, no pip) holds a package that exists nowhere else, written
straight into its site-packages; a real uwsgipy (single process and with a master and two
workers) serves an app that imports it and reports sys.path, sys.prefix, VIRTUAL_ENV and PATH.
A virtualenv of another Python version, or a directory that is none, stops start-up with one
line (exit 2) naming the versions, the option's file:line and the fix.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ServerProcess, http_request

OURS = f"{sys.version_info[0]}.{sys.version_info[1]}"

APP = '''\
import json, os, shutil, sys
import venvonly_pkg
import pth_added_mod

def application(environ, start_response):
    site = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    body = json.dumps({
        "pkg": venvonly_pkg.__file__, "marker": venvonly_pkg.MARKER,
        "pth": pth_added_mod.__file__, "site": site, "prefix": sys.prefix,
        "virtual_env": os.environ.get("VIRTUAL_ENV"),
        "path0": os.environ.get("PATH", "").split(os.pathsep)[0],
        "which_python": shutil.which("python"), "pid": os.getpid(),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   timeout=120)
    site = root / "lib" / f"python{OURS}" / "site-packages"
    assert site.is_dir()
    pkg = site / "venvonly_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("MARKER = 'from-the-venv'\n")
    extra = root / "extra"
    extra.mkdir()
    (extra / "pth_added_mod.py").write_text("X = 1\n")
    (site / "extra.pth").write_text(str(extra) + "\n")
    return root


@pytest.fixture
def app_file(tmp_path) -> Path:
    path = tmp_path / "venvapp.py"
    path.write_text(APP)
    return path


def _report(srv: ServerProcess) -> dict:
    resp = http_request(srv.http_addr, "GET", "/")
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


def _check(report: dict, venv: Path) -> None:
    site = str(venv / "lib" / f"python{OURS}" / "site-packages")
    assert report["marker"] == "from-the-venv"
    assert report["pkg"].startswith(site + "/")
    assert report["pth"] == str(venv / "extra" / "pth_added_mod.py")
    assert report["site"][0] == site, report["site"]  # before this Python's own site-packages
    assert report["prefix"] == str(venv)
    assert report["virtual_env"] == str(venv)
    assert report["path0"] == str(venv / "bin")
    assert report["which_python"] == str(venv / "bin" / "python")


def test_package_only_in_the_venv_imports_single_process(venv, app_file):
    # the package is nowhere on this Python's own path
    probe = subprocess.run([sys.executable, "-c", "import venvonly_pkg"], capture_output=True,
                           timeout=60)
    assert probe.returncode != 0
    srv = ServerProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", app_file,
                         "--virtualenv", venv]).start()
    try:
        _check(_report(srv), venv)
        assert srv.find(f"virtualenv {venv}")
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize("spelling", ["home", "venv", "pyhome", "virtualenv"])
def test_ini_spellings_with_master_and_workers(venv, app_file, tmp_path, spelling):
    ini = tmp_path / "app.ini"
    ini.write_text(f"[uwsgi]\nmaster = true\nprocesses = 2\nhttp-socket = 127.0.0.1:0\n"
                   f"wsgi-file = {app_file}\n{spelling} = {venv}\n")
    srv = ServerProcess([ini]).start()
    try:
        seen = set()
        for _ in range(20):
            report = _report(srv)
            _check(report, venv)
            seen.add(report["pid"])
        assert srv.ready_pid not in seen  # served by the forked workers
    finally:
        assert srv.stop() == 0


def test_short_flag(venv, app_file):
    srv = ServerProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", app_file,
                         "-H", venv]).start()
    try:
        _check(_report(srv), venv)
    finally:
        assert srv.stop() == 0


def _start_fails(args) -> ServerProcess:
    srv = ServerProcess(args).start(wait_ready=False)
    rc = srv.wait_exit(30)
    assert rc == 2, srv.output()
    return srv


def test_venv_of_another_python_version_stops_with_one_line(tmp_path, app_file):
    other = f"{sys.version_info[0]}.{sys.version_info[1] + 1}"
    fake = tmp_path / "oldenv"
    (fake / "lib" / f"python{other}" / "site-packages").mkdir(parents=True)
    (fake / "bin").mkdir()
    (fake / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = false\n"
                                     f"version = {other}.4\n")
    ini = tmp_path / "app.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {app_file}\n"
                   f"home = {fake}\n")
    srv = _start_fails([ini])
    lines = [l for l in srv.output().splitlines() if l.strip()]
    assert len(lines) == 1, srv.output()
    line = lines[0]
    assert f"Python {other}" in line and f"Python {OURS}" in line
    assert f"run the uwsgipy installed in that virtualenv ({fake}/bin/uwsgipy)" in line
    assert f"{ini}:4" in line
    assert "Traceback" not in srv.output()


def test_lib_dir_of_another_version_without_pyvenv_cfg(tmp_path, app_file):
    other = f"{sys.version_info[0]}.{sys.version_info[1] - 1}"
    fake = tmp_path / "virtualenv-style"
    (fake / "lib" / f"python{other}" / "site-packages").mkdir(parents=True)
    srv = _start_fails(["--http-socket", "127.0.0.1:0", "--wsgi-file", app_file,
                        "--virtualenv", fake])
    lines = [l for l in srv.output().splitlines() if l.strip()]
    assert len(lines) == 1, srv.output()
    assert f"Python {other}" in lines[0] and f"Python {OURS}" in lines[0]
    assert "command line" in lines[0]


def test_not_a_venv_and_missing_dir(tmp_path, app_file):
    empty = tmp_path / "not-a-venv"
    empty.mkdir()
    srv = _start_fails(["--http-socket", "127.0.0.1:0", "--wsgi-file", app_file, "--home", empty])
    lines = [l for l in srv.output().splitlines() if l.strip()]
    assert len(lines) == 1, srv.output()
    assert f"not a Python {OURS} virtualenv" in lines[0]
    assert "run the uwsgipy installed in that virtualenv" in lines[0]
    srv = _start_fails(["--http-socket", "127.0.0.1:0", "--wsgi-file", app_file,
                        "--home", tmp_path / "missing"])
    assert "is not a directory" in srv.output()
