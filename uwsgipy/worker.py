"""One worker: the C core's Server on inherited listeners, and its app runner.

Used directly in single-process mode and by each worker the master forks.  A
worker has one event loop (in C) that owns the listeners and every connection;
the runner (:func:`runner_for`) decides what runs the app for the requests the
loop completes: the loop thread itself (``threads = 1``), a pool of app
threads (``threads = N``), gevent greenlets (``gevent = N``, see
uwsgipy.gevent_runner), or, for an ASGI app, asyncio tasks on an event loop
that drives the C loop (``asgi``, see uwsgipy.asgi).

Signals (see serve()): SIGTERM is the graceful stop (queued connections
are served, then in-flight requests finish within ``reload-mercy``
seconds); SIGINT and SIGQUIT are the quick stop.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import _core
from .log import access_log_options, set_access_log
from .sockets import Listener

__all__ = ["Runner", "runner_for", "check_runner", "make_server", "serve", "core_logger"]

log = logging.getLogger("uwsgipy")


@dataclass(frozen=True)
class Runner:
    """What runs the app in a worker, from ``threads`` and ``gevent``.

    name: the C core's ``runner=`` ("inline", "threads", "external" or "asgi");
    cores: requests run at once, one scoreboard slot each (uWSGI's cores; 1 for asgi,
    whose slot 0 carries the oldest request in flight);
    multithread: PEP 3333's ``wsgi.multithread``;
    gevent: the external runner is gevent (uwsgipy.gevent_runner);
    monkey_patch: ``gevent-monkey-patch``: patch_all() when the worker starts serving;
    loop: for asgi, the event loop ("asyncio" or "uvloop", uwsgipy.asgi.resolve_loop)."""
    name: str
    cores: int
    multithread: bool
    gevent: bool = False
    monkey_patch: bool = False
    loop: str = ""

    def describe(self) -> str:
        """For the start-up line: "1 thread", "4 app threads", "gevent (100 greenlets)",
        "uvloop event loop"."""
        if self.name == "asgi":
            return f"{self.loop} event loop"
        if self.gevent:
            return f"gevent ({self.cores} greenlets)"
        return "1 thread" if self.cores == 1 else f"{self.cores} app threads"


def runner_for(cfg: Any, app: Any = None) -> Runner:
    """threads = 1: the loop thread runs the app (inline, one core); threads = N > 1: a pool
    of N app threads; gevent = N: N greenlets driven by gevent's hub (wsgi.multithread is true
    for both: the app runs N times at once in one process).  check_runner() refuses both.
    An ASGI app (``app``, the loaded app, and the ``asgi`` setting: uwsgipy.asgi.wants_asgi)
    runs on an event loop ("asgi", one core) whatever ``threads`` says; without ``app``
    (the master with lazy-apps) only ``asgi = true`` says ASGI."""
    from .asgi import resolve_loop, wants_asgi
    if wants_asgi(cfg, app):
        return Runner("asgi", 1, False, loop=resolve_loop(cfg))
    if cfg.gevent:
        return Runner("external", cfg.gevent, True, gevent=True,
                      monkey_patch=cfg.gevent_monkey_patch)
    if cfg.threads > 1:
        return Runner("threads", cfg.threads, True)
    return Runner("inline", 1, False)


def check_runner(cfg: Any) -> Optional[str]:
    """What the settings table cannot check alone about the runner options: one line naming
    the option and where it was set, or None."""
    src = cfg.sources
    if cfg.gevent and cfg.threads > 1:
        # uWSGI 2.0 starts with both and crashes at the first request (its gevent loop
        # indexes async cores that threads sized): refuse instead.
        return (f"{src.get('gevent', '?')}: option 'gevent' cannot be used with threads = "
                f"{cfg.threads} ({src.get('threads', '?')}): a worker runs its app in either a "
                "pool of threads or gevent greenlets; remove one")
    for option in ("gevent-monkey-patch", "gevent-early-monkey-patch"):
        if getattr(cfg, option.replace("-", "_")) and not cfg.gevent:
            return (f"{src.get(option, '?')}: option '{option}' needs gevent = N: it prepares "
                    "the standard library for greenlets, and only the gevent runner runs them")
    from .asgi import check as check_asgi
    problem = check_asgi(cfg)  # loop = uvloop installed; asgi = true with gevent
    if problem:
        return problem
    if cfg.gevent:
        from .gevent_runner import check
        return check("gevent", src.get("gevent", "?"))
    return None


def core_logger(level: int, message: str, exc: Optional[BaseException]) -> None:
    """The logger callable the C core calls: (level, message, exception)."""
    if exc is not None:
        log.log(level, message, exc_info=(type(exc), exc, exc.__traceback__))
    else:
        log.log(level, message)


def make_server(app: Callable, listeners: Sequence[Listener], cfg: Any, *,
                multiprocess: bool, scoreboard: Optional[memoryview] = None,
                max_requests: int = 0, worker_id: int = 0) -> "_core.Server":
    """Build the C Server from the config's request-path options and its runner
    (runner_for(cfg)); scoreboard: at least that many cores' slots.
    max_requests and reload-on-rss make the server stop itself gracefully
    (worker recycling); the master then forks a fresh worker."""
    runner = runner_for(cfg, app)
    wait_write = None
    if runner.gevent:
        from .gevent_runner import make_wait_write
        wait_write = make_wait_write()
    apps = app_options(app, cfg)
    if runner.name == "asgi":
        # the WebSocket limits, in the C core's units: bytes and seconds
        apps.update(ws_max_size=cfg.websockets_max_size * 1024,
                    ws_ping=float(cfg.websockets_ping_freq),
                    ws_pong=float(cfg.websockets_pong_tolerance))
    server = _core.Server(
        apps.pop("app"),
        [lst.core_spec(cfg) for lst in listeners],
        logger=core_logger,
        buffer_size=cfg.buffer_size,
        limit_post=cfg.limit_post,
        post_buffering=cfg.post_buffering,
        socket_timeout=float(cfg.socket_timeout),
        keepalive_timeout=float(cfg.http_keepalive),
        multithread=runner.multithread,
        multiprocess=multiprocess,
        runner=runner.name,
        cores=runner.cores,
        wait_write=wait_write,
        errors=sys.stderr,
        max_requests=max_requests,
        min_lifetime=float(cfg.min_worker_lifetime) if multiprocess else 0.0,
        reload_on_rss=cfg.reload_on_rss * 1024 * 1024 if multiprocess else 0,
        stop_mercy=float(cfg.worker_reload_mercy if multiprocess else cfg.reload_mercy),
        scoreboard=scoreboard,
        worker_id=worker_id,
        write_exception=not cfg.disable_write_exception,
        max_fields=cfg.limit_request_fields,
        limit_request_line=cfg.limit_request_line,
        limit_request_field_size=cfg.limit_request_field_size,
        header_timeout=float(cfg.header_timeout),
        body_timeout=float(cfg.body_timeout),
        body_min_rate=float(cfg.body_min_rate),
        add_headers=b"".join(f"{h.partition(':')[0]}: {h.partition(':')[2].strip()}\r\n"
                             .encode("latin-1") for h in cfg.add_header),
        **access_log_options(cfg),
        **apps,
    )
    set_access_log(server, cfg)   # log-req-encoder = json, request-id
    if getattr(cfg, "liveness_path", None) or getattr(cfg, "readiness_path", None):
        # answered by the C core, before static files and the app (csrc/upy_probe.c)
        _core.set_probes(server, liveness=cfg.liveness_path, readiness=cfg.readiness_path,
                         max_queue=cfg.readiness_max_queue)
    return server


def app_options(app: Any, cfg: Any) -> Dict[str, Any]:
    """The Server's app keywords: ``app`` (the default app, or a 404 app when a Mounts has
    none), ``mounts`` ((prefix, app), prefixes as PEP 3333 native strings: UTF-8 bytes read
    as latin-1, as PATH_INFO is) with ``manage_script_name``, and ``static`` (the
    static-map dict, or None; uwsgipy.cli.static_config)."""
    from .app import Mounts, not_found
    from .cli import static_config
    out: Dict[str, Any] = {"app": app}
    if isinstance(app, Mounts):
        out["app"] = app.default if app.default is not None else not_found
        out["mounts"] = tuple((prefix.encode("utf-8").decode("latin-1"), a)
                              for prefix, a in app.mounts)
        out["manage_script_name"] = bool(cfg.manage_script_name)
    static = static_config(cfg) if hasattr(cfg, "static_map") else None
    if static is not None:
        out["static"] = static
    return out


def serve(server: "_core.Server", runner: Runner, *, mercy: float,
          install_signals: bool = True,
          quick_signals: Sequence[int] = (),
          retire_signals: Sequence[int] = (),
          final_stop: Optional[Callable[[], bool]] = None,
          on_ready: Optional[Callable[[], None]] = None,
          drain: float = 0.0,
          app: Any = None, cfg: Any = None) -> None:
    """Run the server's loop in this thread, and its runner, until a stop
    completes:

    - inline: the loop calls the app in this thread;
    - threads: ``runner.cores`` app threads (``uwsgipy-app-{i}``, each in
      server.app_thread(i)) run the apps, the loop runs here; they are
      joined after it ends.  An app thread that fails (a bug: app errors
      are the C core's to report) is logged and stops the server at once;
      its error is raised again here;
    - gevent: gevent's hub drives the loop from this (the main) greenlet,
      the apps run in greenlets (gevent_runner.serve); with
      ``runner.monkey_patch``, gevent.monkey.patch_all() first, as uWSGI's
      gevent loop does when it starts;
    - asgi: an asyncio event loop drives the loop from this thread, the
      ASGI ``app`` runs as tasks (uwsgipy.asgi.serve, with ``cfg``): the
      lifespan startup runs first, then ``on_ready``; a failed startup
      raises uwsgipy.asgi.LifespanFailed (an AppLoadError: exit code 4).

    The handlers installed only call server.stop (and log one line):

    - SIGTERM: graceful final stop: serve the connections already queued
      on the listeners, shut the listeners (later connects are refused at
      once, so clients fail over), finish requests in flight within
      ``mercy`` seconds.  A second SIGTERM stops at once.
    - ``retire_signals`` (a forked worker's SIGHUP, sent when the worker is
      replaced while others keep serving): graceful stop that leaves the
      listeners open for them.
    - ``final_stop`` (a forked worker's): called on SIGTERM; False means the
      signal did not come from the master's final stop (``kill`` of one
      worker), and the worker retires instead, leaving the listeners the
      other workers serve open.  With it, only the first stop signal counts
      (the master escalates with SIGKILL after the mercy).
    - SIGHUP, unless it is a retire signal: the same as SIGTERM (a single
      process has no master to reload it; uWSGI without one does the same).
    - SIGINT, SIGQUIT: quick stop, as in uWSGI and gunicorn.  In a forked
      worker (the ``quick_signals``) the process exits at once, dropping
      requests in flight (the master logs it).  In a single process the
      loop closes every connection at its next turn (a request an app
      thread is running in that moment finishes first: Python code cannot
      be interrupted safely; a greenlet gets GreenletExit at its next
      switch); the same signal again exits at once.
    """
    if runner.monkey_patch:
        from .gevent_runner import monkey_patch
        monkey_patch("gevent-monkey-patch")  # before the handlers: patch_all patches signal too
    rfd = wfd = -1
    if install_signals:
        def quick_exit(signum: int, frame: Any) -> None:
            # A forked worker's quick stop (the master's SIGINT/SIGQUIT) drops
            # requests in flight, as uWSGI does: the C loop can only stop
            # between requests, so an app busy for minutes would otherwise
            # hold the stop until the master's SIGKILL.
            server.stop(graceful=False)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

        def quick(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            if server.stopping and getattr(quick, "asked", False):
                log.warning("%s again: exiting now", name)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(1)
            quick.asked = True  # type: ignore[attr-defined]
            log.info("%s: quick stop (open connections are closed; "
                     "SIGTERM is the graceful stop)", name)
            server.stop(graceful=False)

        decided: List[str] = []  # with final_stop: the first stop signal decides
        draining: List[int] = []  # readiness-drain under way (the signal that began it)

        def graceful(signum: int, frame: Any) -> None:
            if final_stop is not None:
                if decided:
                    return
                if not final_stop():
                    log.info("%s from outside the master: retiring this worker (the "
                             "listeners stay open; the master forks a replacement)",
                             signal.Signals(signum).name)
                    retire(signum, frame)
                    return
                decided.append("final")
            if server.stopping:
                log.info("%s again: stopping now", signal.Signals(signum).name)
                server.stop(graceful=False)
            elif drain > 0 and not draining:
                # readiness-drain: the probe fails first, the listeners stay open; SIGALRM
                # (or another SIGTERM) starts the stop itself
                draining.append(signum)
                _core.set_probes(server, draining=True)
                log.info("%s: readiness-path now answers 503; graceful stop in %gs "
                         "(readiness-drain)", signal.Signals(signum).name, drain)
                signal.signal(signal.SIGALRM, lambda s, f: begin_stop(signum))
                signal.setitimer(signal.ITIMER_REAL, drain)
            else:
                if draining:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                begin_stop(signum)

        def begin_stop(signum: int) -> None:
            if not server.stopping:
                log.info("%s: graceful stop (serving queued connections, then finishing "
                         "requests in flight, at most %ss)", signal.Signals(signum).name, mercy)
                server.stop(graceful=True, timeout=mercy, close_listeners=True)

        def retire(signum: int, frame: Any) -> None:
            if final_stop is not None:
                if decided:
                    return
                decided.append("retire")
            if not server.stopping:
                server.stop(graceful=True, timeout=mercy)

        signal.signal(signal.SIGTERM, graceful)
        if signal.SIGHUP not in retire_signals:
            # A single process has nobody to reload it: SIGHUP stops it
            # gracefully, as uWSGI without a master does.
            signal.signal(signal.SIGHUP, graceful)
        for signum in (signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, quick_exit if signum in quick_signals else quick)
        for signum in retire_signals:
            signal.signal(signum, retire)
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    errors: List[BaseException] = []

    def app_thread(core: int) -> None:
        try:
            server.app_thread(core)
        except BaseException as exc:  # a bug in the runner: stop everything
            errors.append(exc)
            log.exception("app thread %d failed", core)
            server.stop(graceful=False)

    pool = []
    if runner.name == "threads":
        pool = [threading.Thread(target=app_thread, args=(i,), name=f"uwsgipy-app-{i}",
                                 daemon=True) for i in range(runner.cores)]
    for t in pool:
        t.start()
    if on_ready is not None and runner.name != "asgi":
        on_ready()  # after the handlers: a supervisor may signal at once
    try:
        if runner.name == "asgi":
            from .asgi import serve as serve_asgi
            serve_asgi(server, app, cfg, wakeup_fd=rfd, mercy=mercy, on_ready=on_ready)
        elif runner.gevent:
            from .gevent_runner import serve as serve_gevent
            serve_gevent(server, runner.cores, wakeup_fd=rfd)
        else:
            server.serve_forever(wakeup_fd=rfd)
    finally:
        server.stop(graceful=True, timeout=mercy)
        for t in pool:
            t.join(mercy + 5)  # prompt, unless an app call is still running
        if install_signals:
            signal.set_wakeup_fd(-1)
            os.close(rfd)
            os.close(wfd)
    if errors:
        raise errors[0]
