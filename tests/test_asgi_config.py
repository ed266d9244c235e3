"""ASGI wiring (issue 10): the settings, app detection, the lifespan protocol against real
Starlette / FastAPI / Django apps, the Python serve loop against a fake C server, and the
start-up paths of a real server (lifespan failure exits 4 in single-process and master mode,
loop = uvloop missing, gevent with an ASGI app refused).

The HTTP and WebSocket behaviour of a served app is tests/test_asgi_*.py's (the tests
engineer's); here only what uwsgipy/asgi.py, config.py, worker.py, cli.py and arbiter.py
decide."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from uwsgipy import asgi, config
from uwsgipy.app import AppLoadError, Mounts
from uwsgipy.config import ConfigError, load

from helpers import REPO, child_env

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _core_has_asgi() -> bool:
    try:
        from uwsgipy import _core
    except ImportError:
        return False
    return hasattr(_core.Server, "asgi_setup")


needs_asgi_core = pytest.mark.skipif(not _core_has_asgi(),
                                     reason="the C core has no ASGI runner yet (asgi_setup)")


def error_of(argv, environ=None) -> str:
    with pytest.raises(ConfigError) as info:
        load(argv, environ or {})
    return str(info.value)


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

def test_defaults_are_uwsgis_and_uvicorns():
    cfg = load([], {})
    assert (cfg.asgi, cfg.loop, cfg.lifespan) == ("auto", "auto", "auto")
    # uWSGI's core/websockets.c uwsgi_websockets_init(): 30 s, 3 s, 1024 KiB
    assert (cfg.websockets_ping_freq, cfg.websockets_pong_tolerance,
            cfg.websockets_max_size) == (30, 3, 1024)


def test_settings_from_ini_env_and_cli(tmp_path):
    ini = tmp_path / "app.ini"
    ini.write_text("[uwsgi]\nasgi = true\nloop = asyncio\nlifespan = on\n"
                   "websocket-max-size = 64\nwebsockets-ping-freq = 0\n")
    cfg = load([str(ini)], {"UWSGI_WEBSOCKETS_PONG_TOLERANCE": "7"})
    assert (cfg.asgi, cfg.loop, cfg.lifespan) == ("true", "asyncio", "on")
    assert cfg.websockets_max_size == 64 and cfg.websockets_ping_freq == 0
    assert cfg.websockets_pong_tolerance == 7
    assert cfg.sources["websockets-max-size"] == f"{ini}:5"
    assert cfg.sources["websockets-pong-tolerance"] == "env UWSGI_WEBSOCKETS_PONG_TOLERANCE"
    # bare --asgi is asgi = true; the command line wins over the ini file
    assert load(["--asgi"], {}).asgi == "true"
    assert load([str(ini), "--asgi", "false", "--loop", "uvloop"], {}).asgi == "false"
    assert load(["--lifespan=off"], {}).lifespan == "off"


@pytest.mark.parametrize("line, message", [
    ("asgi = maybe", "option 'asgi': must be one of auto, true, false, not 'maybe'"),
    ("loop = gevent", "option 'loop': must be one of auto, asyncio, uvloop, not 'gevent'"),
    ("lifespan = yes", "option 'lifespan': must be one of auto, on, off, not 'yes'"),
    ("websockets-max-size = 0", "option 'websockets-max-size': must be at least 1, got 0"),
    ("websockets-max-size = 1M", "option 'websockets-max-size': invalid int value '1M'"),
    ("websocket-ping-freq = -1", "option 'websocket-ping-freq': must be at least 0, got -1"),
    ("websockets-pong-tolerance = 0",
     "option 'websockets-pong-tolerance': must be at least 1, got 0"),
])
def test_bad_values_name_the_ini_line(tmp_path, line, message):
    ini = tmp_path / "app.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = :0\n{line}\n")
    assert error_of([str(ini)]) == f"{ini}:3: {message}"


def test_uwsgis_asyncio_option_is_refused_with_the_asgi_hint():
    msg = error_of(["--asyncio", "10"])
    assert msg.startswith("command line: option 'asyncio' is not supported by uwsgipy yet")
    assert "ASGI" in msg and "docs/asgi.md" in msg


def test_the_section_is_in_the_docs():
    docs = config.render_docs()
    assert "## ASGI and WebSockets" in docs
    for name in ("asgi", "loop", "lifespan", "websockets-max-size", "websockets-ping-freq",
                 "websockets-pong-tolerance"):
        assert f"### `{name}`" in docs
    assert "`--websocket-max-size KIB`" in docs


# --------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------

async def raw_app(scope, receive, send):
    pass


def sync_app(environ, start_response):
    return []


class AsyncCallable:
    async def __call__(self, scope, receive, send):
        pass


class SyncReturnsCoroutine:
    def __call__(self, scope, receive, send):
        return raw_app(scope, receive, send)


@pytest.fixture(scope="module")
def django_apps():
    import django
    from django.conf import settings
    if not settings.configured:
        settings.configure(DEBUG=False, SECRET_KEY="test", ALLOWED_HOSTS=["*"], ROOT_URLCONF=[],
                           INSTALLED_APPS=[], MIDDLEWARE=[])
        django.setup()
    from django.core.asgi import get_asgi_application
    from django.core.wsgi import get_wsgi_application
    return get_asgi_application(), get_wsgi_application()


def test_is_asgi_app_frameworks(django_apps):
    from fastapi import FastAPI
    from flask import Flask
    from starlette.applications import Starlette
    django_asgi, django_wsgi = django_apps
    assert asgi.is_asgi_app(FastAPI())
    assert asgi.is_asgi_app(Starlette())
    assert asgi.is_asgi_app(django_asgi)
    assert not asgi.is_asgi_app(django_wsgi)
    assert not asgi.is_asgi_app(Flask(__name__))
    assert not asgi.is_asgi_app(Flask(__name__).wsgi_app)


def test_is_asgi_app_shapes():
    assert asgi.is_asgi_app(raw_app)
    assert asgi.is_asgi_app(functools.partial(raw_app))
    assert asgi.is_asgi_app(functools.partial(functools.partial(raw_app)))
    assert asgi.is_asgi_app(AsyncCallable())
    assert asgi.is_asgi_app(AsyncCallable().__call__)
    assert not asgi.is_asgi_app(AsyncCallable)  # a class: ASGI 2's double callable
    assert not asgi.is_asgi_app(sync_app)
    assert not asgi.is_asgi_app(functools.partial(sync_app))
    assert not asgi.is_asgi_app(SyncReturnsCoroutine())  # needs asgi = true
    assert not asgi.is_asgi_app(object())
    assert not asgi.is_asgi_app(None)
    assert not asgi.is_asgi_app(lambda scope, receive, send: None)


def test_wants_asgi_follows_the_setting():
    assert asgi.wants_asgi(load([], {}), raw_app)
    assert not asgi.wants_asgi(load([], {}), sync_app)
    assert not asgi.wants_asgi(load([], {}), None)  # the master with lazy-apps: not known yet
    assert asgi.wants_asgi(load(["--asgi"], {}), SyncReturnsCoroutine())
    assert asgi.wants_asgi(load(["--asgi"], {}), None)
    assert not asgi.wants_asgi(load(["--asgi", "false"], {}), raw_app)


# --------------------------------------------------------------------------
# Checks and the runner
# --------------------------------------------------------------------------

def test_loop_uvloop_missing_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    cfg = load(["--loop", "uvloop"], {})
    assert asgi.check(cfg) == (
        f"command line: option 'loop = uvloop': the uvloop package is not installed for "
        f"{sys.executable} (pip install uvloop, or loop = asyncio)")
    assert asgi.resolve_loop(load([], {})) == "asyncio"  # auto falls back
    from uwsgipy.worker import check_runner
    assert check_runner(cfg) == asgi.check(cfg)


def test_loop_auto_takes_uvloop_when_installed():
    pytest.importorskip("uvloop")
    assert asgi.resolve_loop(load([], {})) == "uvloop"
    assert asgi.resolve_loop(load(["--loop", "asyncio"], {})) == "asyncio"
    loop = asgi.new_loop(load([], {}))
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
    loop = asgi.new_loop(load(["--loop", "asyncio"], {}))
    try:
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()


def test_asgi_true_with_gevent_is_refused_before_loading(tmp_path):
    ini = tmp_path / "app.ini"
    ini.write_text("[uwsgi]\ngevent = 100\nasgi = true\n")
    cfg = load([str(ini)], {})
    assert asgi.check(cfg) == (
        f"{ini}:2: option 'gevent' cannot serve an ASGI app (asgi = true): gevent's hub and "
        "the asyncio event loop would both drive the worker; remove gevent (an ASGI app runs "
        "its requests concurrently as asyncio tasks)")


def test_check_app_gevent_with_an_async_app():
    cfg = load(["--gevent", "8"], {})
    with pytest.raises(AppLoadError) as info:
        asgi.check_app(cfg, raw_app)
    assert str(info.value).startswith(
        "command line: option 'gevent' cannot serve an ASGI app (the app is an async callable)")
    assert asgi.check_app(cfg, sync_app) is False


def test_check_app_threads_warn_once(caplog):
    caplog.set_level(logging.INFO, logger="uwsgipy")
    assert asgi.check_app(load(["--threads", "4"], {}), raw_app) is True
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines == ["command line: threads = 4 has no effect on an ASGI app: it runs on each "
                     "worker's event loop, its requests as asyncio tasks (blocking code belongs "
                     "in loop.run_in_executor / asyncio.to_thread)"]
    caplog.clear()
    assert asgi.check_app(load(["--threads", "4"], {}), sync_app) is False
    assert not caplog.records


def test_check_app_asgi_false_with_an_async_app_warns(caplog):
    assert asgi.check_app(load(["--asgi", "false"], {}), raw_app) is False
    assert any("asgi = false, but the app is an async callable" in r.getMessage()
               for r in caplog.records)


def test_check_app_refuses_mounts_with_asgi_apps():
    mixed = Mounts(sync_app, [("/api", raw_app)])
    with pytest.raises(AppLoadError, match="the apps mix WSGI and ASGI"):
        asgi.check_app(load([], {}), mixed)
    with pytest.raises(AppLoadError, match="mounting ASGI apps is not supported yet"):
        asgi.check_app(load([], {}), Mounts(raw_app, [("/api", raw_app)]))
    assert asgi.check_app(load([], {}), Mounts(sync_app, [("/x", sync_app)])) is False


def test_check_app_refuses_route_break():
    cfg = load(["--route", "^/admin break:403 Forbidden", "--route", "^/x donotlog:"], {})
    with pytest.raises(AppLoadError) as info:
        asgi.check_app(cfg, raw_app)
    assert "'^/admin break:403 Forbidden': a break action answers before a WSGI app" in \
        str(info.value)
    assert asgi.check_app(load(["--route", "^/x donotlog:"], {}), raw_app) is True


def test_runner_for_an_asgi_app():
    from uwsgipy.worker import Runner, runner_for
    cfg = load(["--loop", "asyncio", "--threads", "4"], {})
    r = runner_for(cfg, raw_app)
    assert r == Runner("asgi", 1, False, loop="asyncio")
    assert r.describe() == "asyncio event loop"
    assert runner_for(cfg, sync_app).describe() == "4 app threads"
    assert runner_for(cfg).name == "threads"  # no app yet (lazy-apps master), asgi = auto
    assert runner_for(load(["--asgi", "--loop", "asyncio"], {})).name == "asgi"


def test_make_server_passes_the_asgi_runner_and_ws_sizes(monkeypatch):
    from uwsgipy import worker
    seen: Dict[str, Any] = {}

    class FakeServer:
        def __init__(self, app, listeners, **kw):
            seen.update(kw, app=app)

    monkeypatch.setattr(worker._core, "Server", FakeServer)
    monkeypatch.setattr(worker, "set_access_log", lambda server, cfg: None)
    cfg = load(["--websockets-max-size", "16", "--websockets-ping-freq", "20",
                "--websockets-pong-tolerance", "5"], {})
    worker.make_server(raw_app, [], cfg, multiprocess=False)
    assert seen["app"] is raw_app
    assert (seen["runner"], seen["cores"], seen["multithread"]) == ("asgi", 1, False)
    assert (seen["ws_max_size"], seen["ws_ping"], seen["ws_pong"]) == (16384, 20.0, 5.0)
    seen.clear()
    worker.make_server(sync_app, [], cfg, multiprocess=False)
    assert seen["runner"] == "inline" and "ws_max_size" not in seen


# --------------------------------------------------------------------------
# Lifespan against real frameworks
# --------------------------------------------------------------------------

def run(coro):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def starlette_app(events: List[str], fail: Optional[str] = None):
    from starlette.applications import Starlette

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        if fail:
            raise RuntimeError(fail)
        yield {"db": "connected"}
        events.append("shutdown")

    return Starlette(lifespan=lifespan)


def fastapi_app(events: List[str], fail: Optional[str] = None):
    from fastapi import FastAPI

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        if fail:
            raise RuntimeError(fail)
        yield {"pool": [1, 2]}
        events.append("shutdown")

    return FastAPI(lifespan=lifespan)


async def startup_and_shutdown(app, mode="auto"):
    life = asgi.Lifespan(app, mode, "app.ini:4")
    state = await life.startup()
    await life.shutdown(timeout=5)
    return life, state


@pytest.mark.parametrize("make, state", [(starlette_app, {"db": "connected"}),
                                         (fastapi_app, {"pool": [1, 2]})])
def test_lifespan_state_and_shutdown(make, state, caplog):
    caplog.set_level(logging.INFO, logger="uwsgipy")
    events: List[str] = []
    life, got = run(startup_and_shutdown(make(events)))
    assert got == state and events == ["startup", "shutdown"]
    messages = [r.getMessage() for r in caplog.records]
    assert "lifespan: shutdown complete" in messages
    assert any(m.startswith("lifespan: startup complete (state: ") for m in messages)


@pytest.mark.parametrize("make", [starlette_app, fastapi_app])
def test_lifespan_startup_failed_carries_the_apps_message(make):
    events: List[str] = []
    with pytest.raises(asgi.LifespanFailed) as info:
        run(startup_and_shutdown(make(events, fail="database unreachable")))
    assert str(info.value) == "lifespan.startup.failed: RuntimeError: database unreachable"
    # Starlette sends the traceback as the message: reported in full (cli.report_app_error)
    assert "Traceback (most recent call last)" in info.value.detail
    assert "database unreachable" in info.value.detail
    assert isinstance(info.value, AppLoadError)


def test_lifespan_unsupported_django(django_apps, caplog):
    caplog.set_level(logging.INFO, logger="uwsgipy")
    life, state = run(startup_and_shutdown(django_apps[0]))
    assert state is None and not life.supported
    assert any(r.getMessage().startswith("lifespan: unsupported by the app (it raised "
                                         "ValueError on the lifespan scope before receiving")
               for r in caplog.records)
    with pytest.raises(asgi.LifespanFailed) as info:
        run(startup_and_shutdown(django_apps[0], mode="on"))
    assert str(info.value).startswith("lifespan = on (app.ini:4): the app does not support "
                                      "the lifespan protocol (it raised ValueError")
    assert isinstance(info.value.__cause__, ValueError)


def test_lifespan_raw_apps():
    calls: List[Any] = []

    async def raises_after_receive(scope, receive, send):
        assert scope["type"] == "lifespan" and scope["state"] == {}
        assert scope["asgi"] == {"version": "3.0", "spec_version": "2.0"}
        await receive()
        raise KeyError("config")

    with pytest.raises(asgi.LifespanFailed) as info:
        run(startup_and_shutdown(raises_after_receive))
    assert str(info.value) == "lifespan: the app raised KeyError during startup: 'config'"
    assert isinstance(info.value.__cause__, KeyError)

    async def fails_with_message(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no license key"})

    with pytest.raises(asgi.LifespanFailed, match=r"^lifespan.startup.failed: no license key$"):
        run(startup_and_shutdown(fails_with_message))

    async def returns(scope, receive, send):
        calls.append(scope["type"])

    life, state = run(startup_and_shutdown(returns))
    assert state is None and calls == ["lifespan"]

    async def full(scope, receive, send):
        while True:
            message = await receive()
            calls.append(message["type"])
            if message["type"] == "lifespan.startup":
                scope["state"]["n"] = 1
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    calls.clear()
    life, state = run(startup_and_shutdown(full))
    assert state == {"n": 1} and calls == ["lifespan.startup", "lifespan.shutdown"]
    # off: the app is not called
    calls.clear()
    life, state = run(startup_and_shutdown(full, mode="off"))
    assert state is None and calls == []


def test_lifespan_shutdown_that_hangs_is_cancelled(caplog):
    async def hangs(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await asyncio.sleep(3600)

    async def go():
        life = asgi.Lifespan(hangs)
        await life.startup()
        await life.shutdown(timeout=0.05)
        return life

    life = run(go())
    assert life._task.cancelled()
    assert any("did not answer within 0.05s" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------
# The serve loop against a fake C server
# --------------------------------------------------------------------------

class FakeServer:
    """run_once/fileno/asgi_setup as DESIGN-asgi.md gives them: fileno() is an eventfd-like
    pipe made readable by the fake 'requests'; run_once returns True until `turns` calls,
    then None.  Each turn starts one app task, as the C core does with loop.create_task."""

    def __init__(self, app, turns: int = 3) -> None:
        self.app = app
        self.turns = turns
        self.calls: List[Any] = []
        self.rfd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.loop = None
        self.state = None
        self.stopped: List[bool] = []

    def asgi_setup(self, loop, state) -> None:
        self.calls.append("asgi_setup")
        self.loop, self.state = loop, state

    def fileno(self) -> int:
        return self.rfd

    def run_once(self, timeout: float = 0.0, wakeup_fd: int = -1):
        self.calls.append(("run_once", timeout, wakeup_fd))
        try:
            os.read(self.rfd, 64)
        except BlockingIOError:
            pass
        n = sum(1 for c in self.calls if isinstance(c, tuple))
        if n > self.turns:
            return None
        scope = {"type": "http", "state": dict(self.state or {})}
        self.loop.create_task(self.app(scope, None, None))
        os.write(self.wfd, b"x")  # more work: the reader fires again
        return True

    def stop(self, graceful: bool = True, **kw) -> None:
        self.stopped.append(graceful)

    def close(self) -> None:
        os.close(self.rfd)
        os.close(self.wfd)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_serve_drives_run_once_and_cleans_up(loop_name):
    if loop_name == "uvloop":
        pytest.importorskip("uvloop")
    seen: List[Any] = []
    hanging: List[asyncio.Task] = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                seen.append(m["type"])
                if m["type"] == "lifespan.startup":
                    scope["state"]["k"] = "v"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        seen.append(("http", scope["state"]))
        hanging.append(asyncio.current_task())
        await asyncio.sleep(3600)  # still running when the loop ends: cancelled

    server = FakeServer(app)
    ready: List[bool] = []
    try:
        asgi.serve(server, app, load(["--loop", loop_name], {}), wakeup_fd=42,
                   on_ready=lambda: ready.append(server.calls == []))
    finally:
        server.close()
    assert ready == [True]  # after the lifespan startup, before asgi_setup
    assert server.calls[0] == "asgi_setup" and server.calls[1] == ("run_once", 0.0, 42)
    assert all(c == ("run_once", 0.0, -1) for c in server.calls[2:])
    assert seen[0] == "lifespan.startup" and seen[-1] == "lifespan.shutdown"
    assert seen[1:-1] == [("http", {"k": "v"})] * 3
    assert len(hanging) == 3 and all(t.cancelled() for t in hanging)
    assert server.loop.is_closed()


def test_serve_stops_before_serving_on_a_failed_startup():
    events: List[str] = []
    app = starlette_app(events, fail="boom")
    server = FakeServer(app)
    try:
        with pytest.raises(asgi.LifespanFailed):
            asgi.serve(server, app, load(["--loop", "asyncio"], {}), on_ready=lambda: 1 / 0)
    finally:
        server.close()
    assert server.calls == []  # the C loop never opened: the worker never reported ready


def test_serve_run_once_error_is_raised_after_cleanup():
    async def app(scope, receive, send):
        raise ValueError("no lifespan here")

    class Broken(FakeServer):
        def run_once(self, timeout=0.0, wakeup_fd=-1):
            if wakeup_fd == -1:
                raise MemoryError("glue bug")
            os.write(self.wfd, b"x")  # the first step comes at once
            return True

    server = Broken(app)
    try:
        with pytest.raises(MemoryError):
            asgi.serve(server, app, load(["--loop", "asyncio"], {}), wakeup_fd=7)
    finally:
        server.close()
    assert server.stopped == [False]


def test_serve_ends_at_once_when_stopped_before_opening():
    async def app(scope, receive, send):
        raise ValueError("no lifespan here")

    class Stopped(FakeServer):
        def run_once(self, timeout=0.0, wakeup_fd=-1):
            self.calls.append("run_once")
            return None

    server = Stopped(app)
    try:
        asgi.serve(server, app, load(["--loop", "asyncio"], {}))
    finally:
        server.close()
    assert server.calls == ["asgi_setup", "run_once"]


# --------------------------------------------------------------------------
# Start-up paths of a real server
# --------------------------------------------------------------------------

APPS = textwrap.dedent('''
    import contextlib

    async def hello(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                if m["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello"})

    def database_check():
        raise ConnectionRefusedError("database at 127.0.0.1:1 refused the connection")

    async def failing(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            database_check()
''')


@pytest.fixture()
def app_dir(tmp_path):
    (tmp_path / "asgi_startup_apps.py").write_text(APPS)
    return tmp_path


def run_server(args, cwd, timeout=30, pre=""):
    """uwsgipy in a child until it exits by itself; returns (code, stderr)."""
    code = (f"import sys\n{pre}\nfrom uwsgipy.cli import main\n"
            f"sys.exit(main({list(map(str, args))!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(cwd), env=child_env(
        {"PYTHONUNBUFFERED": "1"}), stdin=subprocess.DEVNULL, capture_output=True,
        timeout=timeout)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


def test_loop_uvloop_missing_stops_startup(app_dir):
    code, err = run_server(["--http-socket", "127.0.0.1:0", "--module",
                            "asgi_startup_apps:hello", "--loop", "uvloop"], app_dir,
                           pre="sys.modules['uvloop'] = None")
    assert code == 2, err
    assert ("command line: option 'loop = uvloop': the uvloop package is not installed for "
            in err), err
    assert "Traceback" not in err


def test_gevent_with_an_asgi_app_is_refused(app_dir):
    pytest.importorskip("gevent")
    code, err = run_server(["--http-socket", "127.0.0.1:0", "--module",
                            "asgi_startup_apps:hello", "--gevent", "10"], app_dir)
    assert code == 4, err
    assert "option 'gevent' cannot serve an ASGI app (the app is an async callable)" in err
    assert "Traceback" not in err
    code, err = run_server(["--http-socket", "127.0.0.1:0", "--module",
                            "asgi_startup_apps:hello", "--gevent", "10", "--asgi"], app_dir)
    assert code == 2, err
    assert "option 'gevent' cannot serve an ASGI app (asgi = true)" in err


def _assert_lifespan_failure(err: str) -> None:
    assert "Traceback (most recent call last)" in err, err
    assert 'asgi_startup_apps.py", line' in err and "database_check()" in err, err
    assert "ConnectionRefusedError: database at 127.0.0.1:1 refused the connection" in err
    assert "the app's lifespan startup failed: lifespan: the app raised " \
           "ConnectionRefusedError during startup" in err, err
    assert "uwsgipy/asgi.py" not in err  # the app's frames only, as a failed import


@needs_asgi_core
def test_lifespan_failure_exits_4_single_process(app_dir):
    code, err = run_server(["--http-socket", "127.0.0.1:0", "--module",
                            "asgi_startup_apps:failing"], app_dir)
    assert code == 4, err
    _assert_lifespan_failure(err)
    assert "ready (pid" not in err


@needs_asgi_core
@pytest.mark.parametrize("lazy", [False, True])
def test_lifespan_failure_exits_4_master_no_respawn_loop(app_dir, lazy):
    code, err = run_server(["--http-socket", "127.0.0.1:0", "--module",
                            "asgi_startup_apps:failing", "--master", "--processes", "2"]
                           + (["--lazy-apps"] if lazy else []), app_dir)
    assert code == 4, err
    _assert_lifespan_failure(err)
    assert "(the app failed to load)" in err and "stopping" in err, err
    assert "respawning" not in err, err


@needs_asgi_core
def test_asgi_startup_line_names_the_loop(app_dir):
    import signal
    import time
    proc = subprocess.Popen([sys.executable, "-m", "uwsgipy", "--http-socket", "127.0.0.1:0",
                             "--module", "asgi_startup_apps:hello", "--loop", "asyncio"],
                            cwd=str(app_dir), env=child_env({"PYTHONUNBUFFERED": "1"}),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    lines: List[str] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stderr.readline().decode()
            if not line:
                break
            lines.append(line)
            if "ready (pid" in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=20)[1].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines) + rest
    assert "single process (no master): asyncio event loop" in err, err
    assert "lifespan: startup complete" in err and "lifespan: shutdown complete" in err, err
    assert proc.returncode == 0, err


def test_lifespan_task_that_dies_while_serving_is_logged_at_once(caplog):
    async def dies(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.complete"})
        raise OSError("watcher lost")

    async def go():
        life = asgi.Lifespan(dies)
        state = await life.startup()
        await asyncio.sleep(0.01)
        logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        await life.shutdown(timeout=1)
        return state, logged

    state, logged = run(go())
    assert state == {}
    assert logged == ["lifespan: the app's lifespan task raised OSError while the worker "
                      "serves (no lifespan.shutdown will be sent)"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == logged
