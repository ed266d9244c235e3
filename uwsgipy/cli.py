"""The ``uwsgipy`` command: argv -> config -> listeners -> app -> serve.

Exit codes (named, so a supervisor can tell a broken deploy from a crash):
``EXIT_OK`` 0, ``EXIT_CONFIG`` 2 (bad option, file or value),
``EXIT_BIND`` 3 (a listener could not be bound), ``EXIT_APP_LOAD`` 4 (the
app could not be imported: the master stops instead of respawning).
"""
from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import List, Optional, Sequence

from . import config as _config
from .app import AppLoadError, load_app, prepare_path
from .log import compile_log_format, setup_logging
from .sockets import Listener, bind_listener, close_listeners

__all__ = ["main", "EXIT_OK", "EXIT_CONFIG", "EXIT_BIND", "EXIT_APP_LOAD"]

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_BIND = 3
EXIT_APP_LOAD = 4

log = logging.getLogger("uwsgipy")


def bind_all(cfg: _config.Config) -> List[Listener]:
    """Bind every socket / http-socket, logging one line per listener.
    Raises OSError or ValueError (already closing what was bound)."""
    listeners: List[Listener] = []
    try:
        for kind, addresses in (("socket", cfg.socket), ("http-socket", cfg.http_socket)):
            for address in addresses:
                listeners.append(bind_listener(kind, address, backlog=cfg.listen,
                                               chmod=cfg.chmod_socket))
    except BaseException:
        close_listeners(listeners, vacuum=False)
        raise
    for lst in listeners:
        log.info("listening on %s %s (fd %d)", lst.kind, lst.bound, lst.sock.fileno())
    return listeners


def apply_env(cfg: _config.Config) -> None:
    """uWSGI's ``env``: KEY=VALUE pairs set before the app is loaded."""
    for item in cfg.env:
        key, _, value = item.partition("=")
        os.environ[key] = value


def load_configured_app(cfg: _config.Config):
    """chdir, pythonpath, then the app.  Raises AppLoadError."""
    prepare_path(cfg.chdir, cfg.pythonpath)
    return load_app(wsgi_file=cfg.wsgi_file, module=cfg.module, callable_name=cfg.callable)


def report_app_error(exc: AppLoadError) -> None:
    """Print the app's own traceback, then our one-line summary."""
    cause = exc.__cause__
    if cause is not None:
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
    log.error("cannot load the application: %s", exc)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``uwsgipy`` and ``python -m uwsgipy``; returns the
    exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = _config.load(argv, os.environ)
    except _config.ConfigError as exc:
        print(f"uwsgipy: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        setup_logging(cfg.logto)
    except OSError as exc:
        print(f"uwsgipy: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    if not cfg.socket and not cfg.http_socket:
        log.error("no listener configured: give --http-socket ADDR (HTTP) or "
                  "--socket ADDR (uwsgi protocol, for nginx uwsgi_pass)")
        return EXIT_CONFIG
    if not cfg.wsgi_file and not cfg.module:
        log.error("no application configured: give --wsgi-file FILE or --module pkg.mod:callable")
        return EXIT_CONFIG
    if cfg.log_format:
        try:
            compile_log_format(cfg.log_format)
        except ValueError as exc:
            log.error("%s (%s)", exc, cfg.sources.get("log-format", "?"))
            return EXIT_CONFIG
    apply_env(cfg)

    if cfg.master or cfg.processes > 1:
        from .arbiter import Arbiter
        return Arbiter(cfg, argv=argv).run()
    for option in ("touch-reload", "py-autoreload", "harakiri", "max-requests",
                   "reload-on-rss", "max-worker-lifetime", "stats"):
        if getattr(cfg, option.replace("-", "_")):
            log.warning("%s needs master mode (--master): ignored", option)

    try:
        listeners = bind_all(cfg)
    except (OSError, ValueError) as exc:
        log.error("%s", exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
        return EXIT_BIND
    try:
        try:
            app = load_configured_app(cfg)
        except AppLoadError as exc:
            report_app_error(exc)
            return EXIT_APP_LOAD
        from .worker import make_server, serve
        server = make_server(app, listeners, cfg, multiprocess=False)
        serve(server, cfg.threads, mercy=float(cfg.reload_mercy),
              on_ready=lambda: log.info("ready (pid %d)", os.getpid()))
        log.info("stopped after %d requests", server.requests)
        return EXIT_OK
    finally:
        close_listeners(listeners, vacuum=cfg.vacuum)
