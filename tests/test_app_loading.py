"""App loading as uWSGI 2.0 does it: wsgi-file of any name, wsgi-file with module (module wins,
the file is never run), callable with both, pyimport / python-import, wsgi-disable-file-wrapper,
py-call-osafterfork.

Real uwsgipy processes serve real requests; where real uWSGI is installed the precedence cases
are also served by it and must give the same body.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import ServerProcess, free_port, http_request, real_uwsgi

MODAPP = '''\
import sys
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    names = sorted(n for n in sys.modules if n.startswith(("side", "sub_side")))
    return [("module-app " + ",".join(names)).encode()]
def other(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"module-other"]
def make():
    return other
'''

FILEAPP = '''\
#!/usr/bin/python
# a pbr-style script without a suffix (keystone's /usr/local/bin/keystone-wsgi-public)
import os
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "file-was-run"), "w").close()
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"file-app " + str("wsgi.file_wrapper" in environ).encode()]
def other(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"file-other"]
'''


@pytest.fixture
def appdir(tmp_path) -> Path:
    (tmp_path / "modapp.py").write_text(MODAPP)
    (tmp_path / "fileapp").write_text(FILEAPP)
    (tmp_path / "side.py").write_text("import os\nPID = os.getpid()\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "side.py").write_text("X = 1\n")
    (tmp_path / "bad.py").write_text("raise RuntimeError('bad import on purpose')\n")
    return tmp_path


def _serve(args, cwd) -> tuple:
    srv = ServerProcess(["--http-socket", "127.0.0.1:0", "--chdir", cwd, *args], cwd=cwd).start()
    try:
        resp = http_request(srv.http_addr, "GET", "/")
        assert resp.status == 200, resp.body
        return resp.body.decode(), srv
    finally:
        assert srv.stop() == 0


def _real_uwsgi(args, cwd) -> str:
    """The body real uWSGI serves for the same options."""
    with real_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--chdir", cwd, *args],
                    cwd=cwd) as (addr, _):
        return http_request(addr, "GET", "/").body.decode()


def test_wsgi_file_without_suffix_and_dot_wsgi(appdir):
    body, _ = _serve(["--wsgi-file", appdir / "fileapp"], appdir)
    assert body == "file-app True"
    shutil.copy(appdir / "fileapp", appdir / "indico.wsgi")
    body, _ = _serve(["--wsgi-file", "indico.wsgi"], appdir)
    assert body == "file-app True"


@pytest.mark.parametrize("args", [
    ["--module", "modapp", "--wsgi-file", "fileapp"],
    ["--wsgi-file", "fileapp", "--module", "modapp"],
    ["--wsgi-file", "fileapp", "--module", "modapp", "--callable", "other"],
    ["--wsgi-file", "fileapp", "--module", "modapp:other"],
    ["--wsgi-file", "fileapp", "--callable", "other"],
    ["--module", "modapp:make()"],  # uWSGI's call of a factory (Django's get_wsgi_application())
    ["--module", "modapp", "--callable", "make()"],
])
def test_wsgi_file_with_module_same_as_real_uwsgi(appdir, args):
    body, srv = _serve(args, appdir)
    if "--module" in args:
        assert body.startswith("module-")
        assert not (appdir / "file-was-run").exists()  # uWSGI never runs the file either
    if "--module" in args and "--wsgi-file" in args:
        warnings = [l for l in srv.output().splitlines() if "is not loaded: module" in l]
        assert len(warnings) == 1, srv.output()
    expected = _real_uwsgi(args, appdir)
    assert body == expected


def test_module_that_cannot_load_falls_back_to_the_wsgi_file_as_uwsgi(appdir):
    """uWSGI tries the module first; when it cannot be imported it logs that and serves the
    wsgi-file (CKAN's published ini relies on it)."""
    args = ["--wsgi-file", "fileapp", "--module", "no_such_module:application"]
    body, srv = _serve(args, appdir)
    assert body.startswith("file-"), body
    assert srv.find(lambda l: "module no_such_module:application cannot be loaded" in l)
    assert body == _real_uwsgi(args, appdir)


def test_factory_call_with_wsgi_file_is_one_line(appdir):
    srv = ServerProcess(["--http-socket", "127.0.0.1:0", "--chdir", appdir, "--wsgi-file",
                         "fileapp", "--callable", "other()"], cwd=appdir).start(wait_ready=False)
    assert srv.wait_exit(30) == 4
    assert srv.find(lambda l: "callable: 'other()' (a call) works with module only" in l)
    assert "Traceback" not in srv.output()


def test_wsgi_file_with_module_in_an_ini_master_mode(appdir):
    ini = appdir / "app.ini"
    ini.write_text("[uwsgi]\nmaster = true\nprocesses = 2\nhttp-socket = 127.0.0.1:0\n"
                   f"chdir = {appdir}\nwsgi-file = fileapp\nmodule = modapp\ncallable = other\n")
    srv = ServerProcess([ini], cwd=appdir).start()
    try:
        for _ in range(4):
            assert http_request(srv.http_addr, "GET", "/").body == b"module-other"
        line = srv.find("is not loaded: module")
        assert line and f"{ini}:7" in line
    finally:
        assert srv.stop() == 0


def test_pyimport_runs_before_the_app_and_a_failure_is_logged_not_fatal(appdir):
    body, srv = _serve(["--pyimport", "side", "--python-import", "sub/side.py",
                        "--pyimport", "bad", "--module", "modapp"], appdir)
    assert body == "module-app side,sub_side"
    out = srv.output()
    assert "RuntimeError: bad import on purpose" in out
    assert "pyimport failed, going on as uWSGI does: pyimport: importing 'bad' raised " \
        "RuntimeError" in out
    # the traceback starts at the module's own frame
    frames = out.split("Traceback (most recent call last):\n", 1)[1].splitlines()
    assert frames[0].startswith('  File "') and frames[0].endswith('bad.py", line 1, in <module>')


def test_pyimport_same_as_real_uwsgi(appdir):
    args = ["--pyimport", "side", "--pyimport", "sub/side.py", "--pyimport", "bad",
            "--module", "modapp"]
    assert _real_uwsgi(args, appdir) == "module-app side,sub_side"


def test_pyimport_missing_module_is_one_line(appdir):
    body, srv = _serve(["--pyimport", "no_such_mod", "--module", "modapp"], appdir)
    assert body.startswith("module-app")
    assert srv.find("pyimport: no module named 'no_such_mod'")
    assert "Traceback" not in srv.output()


def test_wsgi_disable_file_wrapper(appdir):
    body, _ = _serve(["--wsgi-file", "fileapp", "--wsgi-disable-file-wrapper"], appdir)
    assert body == "file-app False"
    assert _real_uwsgi(["--wsgi-file", "fileapp", "--wsgi-disable-file-wrapper"], appdir) \
        == "file-app False"


def test_py_call_osafterfork_is_accepted_quietly(appdir):
    ini = appdir / "app.ini"
    ini.write_text("[uwsgi]\nmaster = true\nprocesses = 1\nhttp-socket = 127.0.0.1:0\n"
                   f"module = modapp\nchdir = {appdir}\npy-call-osafterfork = true\n")
    srv = ServerProcess([ini], cwd=appdir).start()
    try:
        assert http_request(srv.http_addr, "GET", "/").body.startswith(b"module-app")
        assert not srv.find(lambda l: "osafterfork" in l or "WARNING" in l), srv.output()
    finally:
        assert srv.stop() == 0
