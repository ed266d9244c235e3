"""The ASGI runner: an asyncio event loop drives the worker's C loop, apps run as tasks.

The C loop (``_core.Server`` with ``runner="asgi"``) still owns the listeners and every
connection: it accepts, parses request heads, reads bodies, frames responses, runs the
WebSocket protocol and enforces the timeouts.  For each complete request head it starts an
asyncio Task that runs ``app(scope, receive, send)`` itself (csrc/upy_asgi.c: AsgiRun; on
3.12+ the task starts eagerly, inside run_once()).  This module:

- decides whether the loaded callable is an ASGI app (:func:`is_asgi_app`, the ``asgi``
  setting: :func:`wants_asgi`) and what conflicts with that (:func:`check`,
  :func:`check_app`);
- makes the event loop (:func:`new_loop`: ``loop = auto|asyncio|uvloop``);
- runs the lifespan protocol (:class:`Lifespan`; asgiref's ASGI spec, "Lifespan Protocol",
  spec_version 2.0) once per worker, before it serves and after its last request;
- drives the C loop from the event loop (:func:`serve`): ``server.fileno()`` (the C
  poller's fd) is watched with ``loop.add_reader`` and each wake-up calls
  ``server.run_once(0.0)``, plus a tick every :data:`LOOP_SWEEP` seconds (the C loop sweeps
  its timeouts then), until ``run_once`` says the loop has ended (None).

The shape follows uWSGI's external-loop plugins and our gevent runner
(uwsgipy.gevent_runner): the C core owns the sockets, another loop owns the clock.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional

from .app import AppLoadError, Mounts

__all__ = ["is_asgi_app", "wants_asgi", "resolve_loop", "check", "check_app",
           "cgi_listener_conflict", "new_loop",
           "Lifespan", "LifespanFailed", "serve", "LOOP_SWEEP", "LIFESPAN_SCOPE"]

log = logging.getLogger("uwsgipy")

# The C loop must run at least this often (seconds) even when its fd stays quiet: it sweeps
# the connection timeouts (socket-timeout, header-timeout, http-keepalive) and the WebSocket
# ping/pong deadlines then (as uwsgipy.gevent_runner.LOOP_SWEEP).
LOOP_SWEEP = 1.0

# asgiref spec, "Lifespan Protocol": the scope's asgi dict (spec_version 2.0 has "state").
LIFESPAN_SCOPE = {"version": "3.0", "spec_version": "2.0"}

# How long the tasks still running when the C loop has ended (a graceful stop's mercy ran
# out, a quick stop, the app's own background tasks) get to finish after cancel(), seconds:
# the same bound gevent_runner gives its greenlets after GreenletExit.
CANCEL_WAIT = 5.0


# --------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------

def _is_coroutine_function(obj: Any) -> bool:
    """``async def`` (a function, a bound method, or a functools.partial of either), or a
    callable marked as one (inspect.markcoroutinefunction, 3.12; asgiref's marker)."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    # asgiref.sync.markcoroutinefunction / asyncio.coroutines._is_coroutine before 3.12
    marker = getattr(obj, "_is_coroutine", None)
    return marker is not None and marker is getattr(asyncio.coroutines, "_is_coroutine", object())


def is_asgi_app(app: Any) -> bool:
    """Is ``app`` an ASGI 3 application, by its shape?

    True for an ``async def`` function, a functools.partial of one, and an object (not a
    class) whose ``__call__`` is ``async def`` (FastAPI, Starlette, Django's ASGIHandler
    from get_asgi_application()).  False for a class (an ASGI 2 "double callable" is not
    served), for a sync function or object (WSGI: Flask, Django's WSGIHandler), and for
    anything not callable.  uvicorn's rule (uvicorn/config.py, ``interface = auto``); a
    sync ``__call__`` that returns a coroutine needs ``asgi = true``."""
    if isinstance(app, type) or not callable(app):
        return False
    if isinstance(app, functools.partial) or inspect.isfunction(app) or inspect.ismethod(app):
        return _is_coroutine_function(app)
    call = getattr(type(app), "__call__", None)
    if call is None:
        return False
    return _is_coroutine_function(getattr(app, "__call__", call))


def _apps(app: Any) -> List[Any]:
    if isinstance(app, Mounts):
        return ([app.default] if app.default is not None else []) + [a for _, a in app.mounts]
    return [app]


def _unwrapped(app: Any) -> Any:
    """The app under uwsgipy's own WSGI wrappers (wsgi-disable-file-wrapper, route break),
    which set ``__wrapped__``; the app's own wrappers are left alone."""
    while getattr(app, "__module__", "") in ("uwsgipy.cli", "uwsgipy.routes") and \
            hasattr(app, "__wrapped__"):
        app = app.__wrapped__
    return app


def wants_asgi(cfg: Any, app: Any = None) -> bool:
    """Does this worker serve ASGI?  ``asgi = true``: yes; ``false``: no; ``auto``: when
    ``app`` (the loaded app, or a Mounts) is an ASGI app (:func:`is_asgi_app`).  With
    ``app`` None (a master with lazy-apps, before any worker loaded it) ``auto`` says no:
    the worker decides again once it has the app."""
    mode = getattr(cfg, "asgi", "false")
    if mode == "true":
        return True
    if mode != "auto" or app is None:
        return False
    return any(is_asgi_app(_unwrapped(a)) for a in _apps(app))


def resolve_loop(cfg: Any) -> str:
    """``loop`` as the worker will run it: "uvloop" or "asyncio" (auto: uvloop when it can
    be imported)."""
    name = getattr(cfg, "loop", "auto")
    if name != "auto":
        return name
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def check(cfg: Any) -> Optional[str]:
    """What the settings alone say is wrong with the ASGI options (one line naming the
    option and where it was set), or None; checked before the app is loaded:

    - ``loop = uvloop`` without the uvloop package (as gevent_runner.check words it);
    - ``asgi = true`` with ``gevent = N``: one worker runs either gevent's hub or an
      asyncio loop;
    - ``asgi = true`` with a FastCGI or SCGI listener (:func:`cgi_listener_conflict`)."""
    src = cfg.sources
    if getattr(cfg, "loop", "auto") == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError as exc:
            why = ("is not installed" if getattr(exc, "name", None) == "uvloop"
                   else f"cannot be imported ({exc})")
            return (f"{src.get('loop', '?')}: option 'loop = uvloop': the uvloop package {why} "
                    f"for {sys.executable} (pip install uvloop, or loop = asyncio)")
    if getattr(cfg, "asgi", "auto") == "true" and cfg.gevent:
        return _gevent_conflict(cfg, "asgi = true")
    if getattr(cfg, "asgi", "auto") == "true":
        return cgi_listener_conflict(cfg)
    return None


_CGI_PROTOCOLS = {"fastcgi": "FastCGI", "fastcgi-nph": "FastCGI", "scgi": "SCGI",
                  "scgi-nph": "SCGI"}


def cgi_listener_conflict(cfg: Any) -> Optional[str]:
    """One line naming the first FastCGI or SCGI listener (fastcgi-socket, scgi-socket, their
    nph forms, or socket with protocol = fastcgi|scgi) and where it was set, or None.  The
    asgi runner reads HTTP and uwsgi requests only (csrc/upy_asgi.c builds the scope from
    those two): an ASGI app there is refused at start-up rather than failing per request."""
    from .sockets import configured_addresses, protocol_name
    src = cfg.sources
    for kind, address in configured_addresses(cfg):
        proto = protocol_name(kind, cfg)
        if proto not in _CGI_PROTOCOLS:
            continue
        where = f"{kind} {address} ({src.get(kind, '?')})"
        if kind == "socket":
            where += f" with protocol = {cfg.protocol} ({src.get('protocol', '?')})"
        return (f"{where}: an ASGI app cannot be served over "
                f"{_CGI_PROTOCOLS[proto]}: ASGI is served over http-socket, http or socket "
                "(uwsgi protocol) only (or wrap the app as WSGI: a2wsgi.ASGIMiddleware)")
    return None


def _gevent_conflict(cfg: Any, why: str) -> str:
    src = cfg.sources
    return (f"{src.get('gevent', '?')}: option 'gevent' cannot serve an ASGI app ({why}): "
            "gevent's hub and the asyncio event loop would both drive the worker; remove "
            "gevent (an ASGI app runs its requests concurrently as asyncio tasks)")


def check_app(cfg: Any, app: Any) -> bool:
    """Once the app is loaded (in the process that loads it: the master, or each worker with
    lazy-apps): decide ASGI for this app and check what depends on that.  Returns
    :func:`wants_asgi`.  Raises AppLoadError with one line for gevent with an ASGI app,
    ``mount`` with ASGI apps (mixed with WSGI apps, or at all: mount inside the app, e.g.
    Starlette's Mount), ``route`` break actions (they answer before a WSGI app) and
    FastCGI or SCGI listeners (:func:`cgi_listener_conflict`);
    logs one warning line for ``threads`` > 1 (the app runs on the worker's event loop)
    and for ``asgi = false`` with an async app."""
    src = cfg.sources
    apps = _apps(app)
    kinds = [is_asgi_app(_unwrapped(a)) for a in apps]
    asgi = wants_asgi(cfg, app)
    if isinstance(app, Mounts) and (asgi or any(kinds)):
        if any(kinds) and not all(kinds):
            raise AppLoadError(f"mount ({src.get('mount', '?')}): the apps mix WSGI and ASGI; "
                               "one worker serves one kind: run a uwsgipy for each, or serve "
                               "the WSGI app from the ASGI one (a2wsgi, Starlette's WSGIMiddleware)")
        raise AppLoadError(f"mount ({src.get('mount', '?')}): mounting ASGI apps is not "
                           "supported yet: serve one ASGI app and mount the others inside it "
                           "(Starlette's Mount, FastAPI's app.mount)")
    if not asgi:
        if getattr(cfg, "asgi", "auto") == "false" and any(kinds):
            log.warning("%s: asgi = false, but the app is an async callable (ASGI): it is "
                        "served as WSGI, so every request will fail", src.get("asgi", "?"))
        return False
    if cfg.gevent:
        raise AppLoadError(_gevent_conflict(cfg, "the app is an async callable" if
                                            cfg.asgi == "auto" else "asgi = true"))
    problem = cgi_listener_conflict(cfg)
    if problem:
        raise AppLoadError(problem)
    from . import _core
    if _core.POLLER != "epoll":
        raise AppLoadError("this build of uwsgipy polls with poll(2), which has no readiness fd "
                           "for the asyncio event loop to wait on: ASGI apps need the epoll "
                           "build (Linux)")
    from .routes import parse_route
    for option in ("route", "route-uri"):
        for value in getattr(cfg, option.replace("-", "_")):
            if parse_route(value)[1] == "break":
                raise AppLoadError(f"{option} ({src.get(option, '?')}): {value!r}: a break "
                                   "action answers before a WSGI app and cannot wrap the ASGI "
                                   "app; answer in the app instead")
    if cfg.threads > 1:
        log.warning("%s: threads = %d has no effect on an ASGI app: it runs on each worker's "
                    "event loop, its requests as asyncio tasks (blocking code belongs in "
                    "loop.run_in_executor / asyncio.to_thread)", src.get("threads", "?"),
                    cfg.threads)
    return True


def new_loop(cfg: Any) -> asyncio.AbstractEventLoop:
    """A new event loop for this worker: ``uvloop.new_event_loop()`` or
    ``asyncio.new_event_loop()`` (:func:`resolve_loop`).  Raises ImportError only when
    uvloop vanished since :func:`check`."""
    if resolve_loop(cfg) == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


# --------------------------------------------------------------------------
# Lifespan (asgiref spec, "Lifespan Protocol", spec_version 2.0)
# --------------------------------------------------------------------------

class LifespanFailed(AppLoadError):
    """The app's lifespan startup failed: ``lifespan.startup.failed`` (its ``message`` is
    ``detail``), an exception after it received ``lifespan.startup`` (``__cause__``), or,
    with ``lifespan = on``, no lifespan support.  Reported like an app that fails to import
    (uwsgipy.cli.report_app_error; exit code 4)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class Lifespan:
    """One lifespan scope for ``app``, run on the current event loop.

    ``mode`` is the ``lifespan`` setting ("auto", "on" or "off"), ``source`` where it was
    set (for messages).  :meth:`startup` returns the ``state`` dict for the request scopes
    (None when the app does not support lifespan, or with "off"); :meth:`shutdown` sends
    lifespan.shutdown and waits for the answer.

    The spec's rules: the app gets ``{"type": "lifespan", "asgi": {...}, "state": {}}``;
    receive() gives ``lifespan.startup`` and then, at shutdown, ``lifespan.shutdown``;
    send() takes ``lifespan.startup.complete`` / ``.failed`` (``message``) and
    ``lifespan.shutdown.complete`` / ``.failed``.  "If an exception is raised when calling
    the application callable with a lifespan.startup message or a scope with type lifespan,
    the server must continue but not send any lifespan events": an app that raises before
    it called receive() does not support the protocol (uvicorn's "lifespan unsupported");
    one that raises after is a failed startup."""

    def __init__(self, app: Any, mode: str = "auto", source: str = "default") -> None:
        self.app = app
        self.mode = mode
        self.source = source
        self.state: Optional[Dict[str, Any]] = None
        self.supported = mode != "off"
        self._task: Optional["asyncio.Task[None]"] = None
        self._inbox: Optional["asyncio.Queue[Dict[str, Any]]"] = None
        self._startup: Optional["asyncio.Future[Any]"] = None
        self._shutdown: Optional["asyncio.Future[Any]"] = None
        self._received = False
        self._shutdown_sent = False

    # -- the app's side -----------------------------------------------------
    async def _receive(self) -> Dict[str, Any]:
        self._received = True
        assert self._inbox is not None
        return await self._inbox.get()

    async def _send(self, message: Dict[str, Any]) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        assert self._startup is not None and self._shutdown is not None
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            if self._startup.done():
                raise RuntimeError(f"lifespan: {kind} sent after the startup was answered")
            self._startup.set_result((kind, str(message.get("message", "") or "")))
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if not self._startup.done() or self._shutdown.done():
                raise RuntimeError(f"lifespan: {kind} sent out of order")
            self._shutdown.set_result((kind, str(message.get("message", "") or "")))
        else:
            raise RuntimeError(f"lifespan: unexpected message {kind!r} (the lifespan scope "
                               "takes lifespan.startup.* and lifespan.shutdown.*)")

    async def _main(self, scope: Dict[str, Any]) -> None:
        assert self._startup is not None and self._shutdown is not None
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the app's error, reported by the side that waits
            outcome = ("raised", exc, self._received)
            if not self._startup.done():
                self._startup.set_result(outcome)
            elif not self._shutdown.done() and self._shutdown_sent:
                self._shutdown.set_result(outcome)
            elif self._startup.result()[0] == "lifespan.startup.complete":
                # while the worker serves (or after its shutdown answer): nobody waits for it
                log.error("lifespan: the app's lifespan task raised %s %s", type(exc).__name__,
                          "after its shutdown" if self._shutdown.done() else
                          "while the worker serves (no lifespan.shutdown will be sent)",
                          exc_info=(type(exc), exc, exc.__traceback__))
                if not self._shutdown.done():
                    self._shutdown.set_result(("gone", exc, self._received))
        else:
            if not self._startup.done():
                self._startup.set_result(("returned", None, self._received))
            if not self._shutdown.done():
                self._shutdown.set_result(("returned", None, self._received))

    # -- the server's side ----------------------------------------------------
    async def startup(self) -> Optional[Dict[str, Any]]:
        """Run the app's startup; returns the state dict (None without lifespan).  Raises
        LifespanFailed (with the app's message, or its exception as ``__cause__``)."""
        if self.mode == "off":
            return None
        loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self._startup = loop.create_future()
        self._shutdown = loop.create_future()
        state: Dict[str, Any] = {}
        scope = {"type": "lifespan", "asgi": dict(LIFESPAN_SCOPE), "state": state}
        self._inbox.put_nowait({"type": "lifespan.startup"})
        self._task = loop.create_task(self._main(scope), name="uwsgipy-lifespan")
        outcome = await self._startup
        kind = outcome[0]
        if kind == "lifespan.startup.complete":
            self.state = state
            log.info("lifespan: startup complete%s",
                     f" (state: {', '.join(sorted(map(str, state)))})" if state else "")
            return state
        if kind == "lifespan.startup.failed":
            message = outcome[1]
            await self._settle()  # Starlette raises again right after sending failed
            self.supported = False
            last = next((ln.strip() for ln in reversed(message.splitlines()) if ln.strip()),
                        "")
            raise LifespanFailed("lifespan.startup.failed" + (f": {last}" if last else
                                                              " (the app gave no message)"),
                                 detail=message if "\n" in message.strip() else "")
        exc, received = outcome[1], outcome[2]
        self.supported = False
        if kind == "returned":
            log.info("lifespan: the app returned on the lifespan scope without answering "
                     "lifespan.startup: serving without startup and shutdown events")
            return None
        if received:
            raise LifespanFailed(f"lifespan: the app raised {type(exc).__name__} during "
                                 f"startup: {exc}") from exc
        if self.mode == "on":
            raise LifespanFailed(f"lifespan = on ({self.source}): the app does not support "
                                 f"the lifespan protocol (it raised {type(exc).__name__} on "
                                 f"the lifespan scope: {exc})") from exc
        log.info("lifespan: unsupported by the app (it raised %s on the lifespan scope "
                 "before receiving: %s); serving without startup and shutdown events "
                 "(lifespan = off skips the attempt)", type(exc).__name__, exc)
        return None

    async def _settle(self, timeout: float = 1.0) -> None:
        """Let the lifespan task end (a framework raises after lifespan.startup.failed)."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=timeout)

    async def shutdown(self, timeout: Optional[float] = None) -> None:
        """Send lifespan.shutdown and wait (at most ``timeout`` seconds) for the app's
        answer; a failed shutdown or an exception is logged (the worker exits anyway).
        Nothing when startup did not complete."""
        if self.state is None or self._task is None:
            return
        assert self._inbox is not None and self._shutdown is not None
        task = self._task
        if not task.done():
            self._shutdown_sent = True
            self._inbox.put_nowait({"type": "lifespan.shutdown"})
        done, _ = await asyncio.wait({self._shutdown}, timeout=timeout)
        if not done:
            log.warning("lifespan: the app's shutdown did not answer within %gs: cancelled",
                        timeout)
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_WAIT)
            return
        kind, value, _ = (self._shutdown.result() + (None,))[:3]
        if kind == "lifespan.shutdown.complete":
            log.info("lifespan: shutdown complete")
        elif kind == "lifespan.shutdown.failed":
            log.error("lifespan: lifespan.shutdown.failed%s", f": {value}" if value else "")
        elif kind == "gone":
            pass  # logged when it ended
        elif kind == "raised":
            log.error("lifespan: the app raised %s during shutdown", type(value).__name__,
                      exc_info=(type(value), value, value.__traceback__))
        await self._settle()


# --------------------------------------------------------------------------
# The serve loop
# --------------------------------------------------------------------------

def _exception_handler(loop: asyncio.AbstractEventLoop, context: Dict[str, Any]) -> None:
    """Errors asyncio reports (a task's exception never retrieved, a callback that raised)
    go to uwsgipy's log, with the traceback."""
    exc = context.get("exception")
    message = context.get("message", "unhandled error in the event loop")
    if exc is not None:
        log.error("asyncio: %s", message, exc_info=(type(exc), exc, exc.__traceback__))
    else:
        log.error("asyncio: %s", message)


def _cancel_tasks(loop: asyncio.AbstractEventLoop, keep: Any, timeout: float) -> int:
    """Cancel every task of ``loop`` but ``keep``, and let them finish within ``timeout``
    seconds.  Returns how many were cancelled."""
    tasks = [t for t in asyncio.all_tasks(loop) if t is not keep and not t.done()]
    if not tasks:
        return 0
    for t in tasks:
        t.cancel()
    loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            exc = t.exception()
            log.error("asyncio: a task raised %s while being cancelled at the worker's end",
                      type(exc).__name__, exc_info=(type(exc), exc, exc.__traceback__))
    return len(tasks)


def serve(server: Any, app: Any, cfg: Any, wakeup_fd: int = -1, *, mercy: float = 60.0,
          on_ready: Optional[Callable[[], None]] = None) -> None:
    """Serve ``app`` (an ASGI 3 callable) with ``server`` (``_core.Server(...,
    runner="asgi")``) until its loop ends; the worker's signal handlers (worker.serve) only
    call server.stop, which ends it.  In order:

    1. a new event loop (:func:`new_loop`), the current one for this thread;
    2. lifespan startup (:class:`Lifespan`); a failure raises LifespanFailed before the
       C loop opens, so the worker never reports ready (the master stops, exit code 4);
    3. ``on_ready()``, ``server.asgi_setup(loop, state)``, ``server.run_once(0.0,
       wakeup_fd)`` (opens the C loop: fileno() exists from here);
    4. ``loop.add_reader(server.fileno(), step)`` and a ``call_later`` tick every
       :data:`LOOP_SWEEP` s, each calling ``server.run_once(0.0)``; ``loop.run_forever()``
       until run_once returns None (the stop completed);
    5. the tasks still running are cancelled (:data:`CANCEL_WAIT` s to finish), lifespan
       shutdown (at most ``mercy`` s), async generators closed, the loop closed.

    An error raised by run_once (a bug in the C glue) stops the loop and is raised again
    after the clean-up."""
    loop = new_loop(cfg)
    loop.set_exception_handler(_exception_handler)
    asyncio.set_event_loop(loop)
    errors: List[BaseException] = []
    lifespan = Lifespan(app, getattr(cfg, "lifespan", "auto"),
                        cfg.sources.get("lifespan", "default"))
    try:
        state = loop.run_until_complete(lifespan.startup())
        if on_ready is not None:
            on_ready()
        server.asgi_setup(loop, state)
        if server.run_once(0.0, wakeup_fd) is not None:
            _run(loop, server, errors)
        _cancel_tasks(loop, lifespan._task, CANCEL_WAIT)
        loop.run_until_complete(lifespan.shutdown(timeout=mercy))
    finally:
        try:
            _cancel_tasks(loop, None, CANCEL_WAIT)
            loop.run_until_complete(loop.shutdown_asyncgens())
            shutdown_executor = getattr(loop, "shutdown_default_executor", None)
            if shutdown_executor is not None:
                loop.run_until_complete(shutdown_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    if errors:
        raise errors[0]


# How often run_once() runs during a stop (seconds): see _run().
STOP_SWEEP = 0.05


def _run(loop: asyncio.AbstractEventLoop, server: Any, errors: List[BaseException]) -> None:
    """Steps 4 of serve(): the C loop's fd and the sweep tick drive run_once()."""
    fd = server.fileno()
    ended = False
    tick: List[Any] = []
    stopping: List[bool] = []  # the stop began: the tick runs every STOP_SWEEP s

    def step() -> None:
        nonlocal ended
        if ended:
            return
        try:
            more = server.run_once(0.0)
        except (KeyboardInterrupt, SystemExit):
            # an app's, from the first step of its task, which runs inside run_once()
            # (eager start, 3.12+): it stops the loop as from any other step
            raise
        except BaseException as exc:  # a bug in the glue: stop everything, raise it later
            errors.append(exc)
            log.error("asgi: server.run_once() failed: %s", exc,
                      exc_info=(type(exc), exc, exc.__traceback__))
            try:
                server.stop(graceful=False)
            except BaseException:
                pass
            more = None
        if more is None:
            ended = True
            loop.stop()
        elif server.stopping and not stopping:
            # while stopping, the last request often ends inside an app's send(), not in
            # run_once(): look again soon, so the stop ends when that is done
            stopping.append(True)
            for handle in tick:
                handle.cancel()
            tick[:] = [loop.call_later(STOP_SWEEP, sweep)]

    def sweep() -> None:
        step()
        if not ended:
            tick[:] = [loop.call_later(STOP_SWEEP if stopping else LOOP_SWEEP, sweep)]

    loop.add_reader(fd, step)
    tick.append(loop.call_later(LOOP_SWEEP, sweep))
    try:
        loop.run_forever()
    finally:
        loop.remove_reader(fd)
        for handle in tick:
            handle.cancel()
