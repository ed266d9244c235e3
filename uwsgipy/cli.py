"""The ``uwsgipy`` command: argv -> config -> listeners -> app -> serve.

Exit codes (named, so a supervisor can tell a broken deploy from a crash):
``EXIT_OK`` 0, ``EXIT_CONFIG`` 2 (bad option, file or value),
``EXIT_BIND`` 3 (a listener could not be bound), ``EXIT_APP_LOAD`` 4 (the
app could not be imported: the master stops instead of respawning).

``uwsgipy --help-option NAME`` prints one option's reference entry (the
text of docs/configuration.md, which a pip install does not ship);
``--help-option all`` prints the whole reference.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from typing import List, Optional, Sequence

from . import config as _config
from . import privileges
from .app import (AppLoadError, Mounts, activate_virtualenv, check_virtualenv, load_app, prepare_path,
                  pyimport)
from .log import compile_log_format, setup_logging
from .sockets import (Listener, bind_listener, close_listeners, configured_addresses,
                      listener_options)

__all__ = ["main", "EXIT_OK", "EXIT_CONFIG", "EXIT_BIND", "EXIT_APP_LOAD"]

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_BIND = 3
EXIT_APP_LOAD = 4

log = logging.getLogger("uwsgipy")


def bind_all(cfg: _config.Config) -> List[Listener]:
    """Bind every socket / http-socket / http, logging one line per listener.
    Raises OSError or ValueError (already closing what was bound)."""
    listeners: List[Listener] = []
    try:
        for kind, address in configured_addresses(cfg):
            listeners.append(bind_listener(kind, address, **listener_options(cfg)))
    except BaseException:
        close_listeners(listeners, vacuum=False)
        raise
    for lst in listeners:
        log.info("listening on %s %s (fd %d)%s", lst.kind, lst.bound, lst.sock.fileno(),
                 lst.proto_note(cfg))
    return listeners


def apply_env(cfg: _config.Config) -> None:
    """uWSGI's ``env``: KEY=VALUE pairs set before the app is loaded."""
    for item in cfg.env:
        key, _, value = item.partition("=")
        os.environ[key] = value


def load_configured_app(cfg: _config.Config):
    """chdir, pythonpath, the pyimport modules, then the app (uWSGI's
    order).  A pyimport that fails is logged with its traceback and
    skipped, as uWSGI does.  Then whether the app is served as ASGI
    (uwsgipy.asgi.check_app: its conflicts raise AppLoadError too).
    Raises AppLoadError."""
    prepare_path(cfg.chdir, cfg.pythonpath)
    for name in cfg.pyimport:
        try:
            pyimport(name)
        except AppLoadError as exc:
            report_app_error(exc, what="pyimport failed, going on as uWSGI does")
    app = None
    if cfg.wsgi_file or cfg.module or not cfg.mount:
        app = load_app(wsgi_file=cfg.wsgi_file, module=cfg.module, callable_name=cfg.callable)
    if cfg.mount:
        from .app import load_mounts
        app = load_mounts(cfg.mount, app, callable_name=cfg.callable,
                          no_default_app=cfg.no_default_app)
        for prefix, _ in app.mounts:
            if prefix:
                log.info("mounted %s on %s", _mount_target(cfg, prefix), prefix)
    from .asgi import check_app
    if check_app(cfg, app):
        pass  # an ASGI app: uwsgipy's WSGI wrappers do not apply (check_app refused routes)
    elif isinstance(app, Mounts):
        app = app.map(lambda a: _wrap(cfg, a))
    else:
        app = _wrap(cfg, app)
    static_config(cfg)  # after chdir: relative targets are the workers' (uWSGI's rule)
    return app


def _mount_target(cfg: _config.Config, prefix: str) -> str:
    for value in cfg.mount:
        p, _, target = value.partition("=")
        if p.strip().rstrip("/") == prefix:
            return target.strip()
    return "?"


def _wrap(cfg: _config.Config, app):
    """The per-app wrappers: wsgi-disable-file-wrapper, then route break actions."""
    if cfg.wsgi_disable_file_wrapper:
        app = _without_file_wrapper(app)
    if cfg.route or cfg.route_uri:
        from .routes import wrap_app
        app = wrap_app(app, cfg.route, cfg.route_uri)  # break: answers before the app
    return app


def static_config(cfg: _config.Config):
    """The ``static`` dict for the C core (uwsgipy.static.build_static), built once per
    process from the current directory (chdir applied) and kept on cfg; its warnings (a
    missing target, an unreadable mimefile) are logged when it is built.  None without
    static-map, static-map2 or check-static."""
    if getattr(cfg, "_static_built", False):
        return cfg._static  # type: ignore[attr-defined]
    from .static import build_static, describe
    notes: List[str] = []
    static = build_static(cfg, notes=notes)
    cfg._static, cfg._static_built = static, True  # type: ignore[attr-defined]
    for line in describe(static):
        log.info("%s", line)
    for line in notes:
        log.warning("%s", line)
    return static


def early_monkey_patch(cfg: _config.Config, *, master: bool = False) -> None:
    """``gevent-early-monkey-patch``: gevent.monkey.patch_all() before the pre-app hooks,
    pyimport and the app, once, in the process that loads them first (the master, or the only
    process), as uWSGI's gevent plugin does in its preinit_apps hook."""
    if cfg.gevent_early_monkey_patch:
        from .gevent_runner import monkey_patch
        monkey_patch("gevent-early-monkey-patch", master=master)


def _without_file_wrapper(app):
    """wsgi-disable-file-wrapper: the app's environ has no
    ``wsgi.file_wrapper`` (uWSGI leaves the key out)."""
    def application(environ, start_response):
        environ.pop("wsgi.file_wrapper", None)
        return app(environ, start_response)
    application.__wrapped__ = app  # type: ignore[attr-defined]
    return application


def startup_notes(cfg: _config.Config) -> None:
    """One line for what uWSGI's own loading rules make of the options
    (logged once, by the process that starts)."""
    if cfg.wsgi_file and cfg.module:
        log.warning("wsgi-file %s is not loaded: module %s is given too (%s) and is the app, "
                    "as in uWSGI (the file's mountpoint is already taken; the file is served "
                    "only if the module cannot be loaded)",
                    cfg.wsgi_file, cfg.module, cfg.sources.get("module", "?"))


def _ours(filename: str) -> bool:
    """A frame of uwsgipy's loader or of importlib, not of the app."""
    return filename.startswith("<frozen importlib") or \
        os.path.dirname(os.path.abspath(filename)) in (_PACKAGE_DIR, _IMPORTLIB_DIR)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_IMPORTLIB_DIR = os.path.dirname(os.path.abspath(importlib.__file__))


def report_app_error(exc: AppLoadError, what: str = "cannot load the application") -> None:
    """Print the app's own traceback (from its first frame: uwsgipy's and
    importlib's frames above it are left out, as Python's own import does),
    then our one-line summary (``what: exc``)."""
    detail = getattr(exc, "detail", "")  # a lifespan.startup.failed message (a traceback)
    if detail:
        sys.stderr.write(detail if detail.endswith("\n") else detail + "\n")
    cause = exc.__cause__
    if cause is not None:
        tb = cause.__traceback__
        while tb is not None and _ours(tb.tb_frame.f_code.co_filename):
            tb = tb.tb_next
        traceback.print_exception(type(cause), cause, tb or cause.__traceback__, file=sys.stderr)
    log.error("%s: %s", what, exc)


# --------------------------------------------------------------------------
# uwsgipy --help-option NAME: the option reference, from the installed package
# --------------------------------------------------------------------------

HELP_OPTION = "--help-option"


def _plain(markdown_lines: Sequence[str]) -> str:
    """docs/configuration.md's entry as terminal text: no heading marks or
    backticks, wrapped at 79 columns."""
    import textwrap
    out = []
    for line in markdown_lines:
        if line.startswith("### "):
            line = line[4:]
        line = line.replace("`", "")
        indent = "  " if line.startswith("- ") else ""
        out.append(textwrap.fill(line, 79, subsequent_indent=indent,
                                 break_on_hyphens=False) if line else "")
    return "\n".join(out).rstrip() + "\n"


def help_option(name: str, out=None, err=None) -> int:
    """Print the reference entry of one option (any spelling: ``harakiri``,
    ``--http-socket``, ``http_socket``, ``-p``, ``UWSGI_PROCESSES``), or
    the whole reference for ``all``.  Returns EXIT_OK, or EXIT_CONFIG with
    one line (and the closest names) for an unknown option."""
    import difflib
    out = out or sys.stdout
    err = err or sys.stderr
    if name in ("all", "ALL"):
        out.write(_config.render_docs())
        return EXIT_OK
    spelled = name
    by_name = _config._BY_NAME
    shorts = {s.short: s for s in _config.SETTINGS if s.short}
    if name in shorts:
        setting = shorts[name]
    else:
        key = name
        if key.startswith("UWSGI_"):
            key = key[len("UWSGI_"):]
        key = key.lstrip("-").lower().replace("_", "-")
        setting = by_name.get(key)
        if setting is None:
            # implemented options first: they are what a user means
            known = [n for n, st in by_name.items() if st.implemented]
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6) or \
                difflib.get_close_matches(key, list(by_name), n=3, cutoff=0.6)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            err.write(f"uwsgipy: {HELP_OPTION}: unknown option {spelled!r}{hint}; "
                      f"'uwsgipy {HELP_OPTION} all' lists every option\n")
            return EXIT_CONFIG
    if not setting.implemented:
        out.write(f"{setting.name}: a uWSGI option that uwsgipy does not support yet: "
                  f"{setting.help}\n")
        return EXIT_OK
    out.write(_plain(_config._render_setting(setting)))
    return EXIT_OK


def _help_option_arg(argv: Sequence[str]) -> Optional[List[str]]:
    """The NAMEs after --help-option (``--help-option NAME`` or
    ``--help-option=NAME``), or None when it is not on the command line."""
    for i, arg in enumerate(argv):
        if arg == HELP_OPTION:
            return list(argv[i + 1:i + 2])
        if arg.startswith(HELP_OPTION + "="):
            return [arg.split("=", 1)[1]]
    return None


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def check_config(cfg: _config.Config) -> privileges.Identity:
    """What the settings table cannot check alone: a listener and an app
    are configured, log-format compiles, uid/gid/chown-socket name real
    users and groups.  Returns the Identity to switch to; raises
    ConfigError with one line.  Also the master's check of a new config
    before a reload re-executes it."""
    if not configured_addresses(cfg):
        raise _config.ConfigError("no listener configured: give --http-socket ADDR (HTTP) or "
                                  "--socket ADDR (uwsgi protocol, for nginx uwsgi_pass)")
    if not cfg.wsgi_file and not cfg.module and not cfg.mount:
        raise _config.ConfigError("no application configured: give --wsgi-file FILE or "
                                  "--module pkg.mod:callable (or mount = /PREFIX=APP)")
    problem = _check_mounts(cfg)
    if problem:
        raise _config.ConfigError(problem)
    if cfg.virtualenv:
        try:
            check_virtualenv(cfg.virtualenv)
        except AppLoadError as exc:
            raise _config.ConfigError(f"{exc} ({cfg.sources.get('virtualenv', '?')})") from None
    from .worker import check_runner
    problem = check_runner(cfg)  # threads with gevent; gevent installed; monkey patch options
    if problem:
        raise _config.ConfigError(problem)
    if cfg.log_format:
        try:
            compile_log_format(cfg.log_format)
        except ValueError as exc:
            raise _config.ConfigError(f"{exc} ({cfg.sources.get('log-format', '?')})") from None
    try:
        return privileges.resolve(cfg)
    except privileges.PrivilegeError as exc:
        raise _config.ConfigError(str(exc)) from None


def _check_mounts(cfg: _config.Config) -> Optional[str]:
    """A mount point given twice, or `mount = /=APP` beside wsgi-file / module: one line
    naming the ini line (uWSGI skips the second app: 'mountpoint already configured')."""
    from .app import parse_mount
    source = cfg.sources.get("mount", "?")
    origins = source.split(", ")
    seen: dict = {}
    for i, value in enumerate(cfg.mount):
        where = origins[i] if len(origins) == len(cfg.mount) else source
        prefix = parse_mount(value)[0]
        if prefix in seen:
            return (f"{where}: option 'mount': the mount point {prefix or '/'} is already taken "
                    f"by mount = {seen[prefix][0]} ({seen[prefix][1]})")
        seen[prefix] = (value, where)
        if prefix == "" and (cfg.wsgi_file or cfg.module):
            return (f"{where}: option 'mount': '/' is the main app's (wsgi-file or module); "
                    "mount the other app under a prefix")
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``uwsgipy`` and ``python -m uwsgipy``; returns the
    exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = _help_option_arg(argv)
    if names is not None:
        if not names:
            print(f"uwsgipy: {HELP_OPTION} needs an option name (or 'all'), e.g. "
                  f"uwsgipy {HELP_OPTION} harakiri", file=sys.stderr)
            return EXIT_CONFIG
        return help_option(names[0])
    try:
        cfg = _config.load(argv, os.environ)
    except _config.ConfigError as exc:
        print(f"uwsgipy: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        setup_logging(cfg.logto, cfg)
    except OSError as exc:
        print(f"uwsgipy: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    _config.report_config(cfg, log)  # config warnings, one line each; show-config
    try:
        identity = check_config(cfg)
    except _config.ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    apply_env(cfg)
    startup_notes(cfg)
    if cfg.virtualenv:
        site_dir = activate_virtualenv(cfg.virtualenv)
        log.info("virtualenv %s: %s first on sys.path, VIRTUAL_ENV set, its bin first on PATH",
                 cfg.virtualenv, site_dir)

    from . import uwsgi_api
    multi = bool(cfg.master or cfg.processes > 1)
    implying = [name for name in IMPLIES_MASTER
                if cfg.sources.get(name, "default") != "default"
                and getattr(cfg, name.replace("-", "_"))]
    if implying and not multi:
        # uWSGI's UWSGI_OPT_MASTER: these options switch the master on by themselves
        log.info("master mode on: %s implies it, as in uWSGI (%s)", implying[0],
                 cfg.sources[implying[0]])
        multi = True
    uwsgi_api.install(cfg, master=multi)  # `import uwsgi` works from here on, as in uWSGI
    if multi:
        from .arbiter import Arbiter
        return Arbiter(cfg, argv=argv, identity=identity).run()
    for option in ("harakiri", "max-requests", "reload-on-rss", "max-worker-lifetime"):
        if getattr(cfg, option.replace("-", "_")):
            log.warning("%s needs master mode (--master): ignored", option)
    return _single_process(cfg, identity)


# Options that need the master and, in uWSGI, turn it on by themselves (their
# UWSGI_OPT_MASTER flag in core/uwsgi.c); the ones uwsgipy implements.
IMPLIES_MASTER = (
    "touch-reload", "touch-workers-reload", "touch-chain-reload", "evil-reload-on-rss",
    "stats", "stats-http", "metrics-socket", "master-fifo", "logger", "log-master", "log-maxsize",
    "log-encoder", "log-req-encoder", "log-route", "cheaper", "cheaper-initial",
    "cheaper-algo", "cheaper-step", "cheaper-overload", "idle", "cron", "unique-cron",
    "attach-daemon", "attach-control-daemon", "smart-attach-daemon", "smart-attach-daemon2",
    "attach-daemon2", "py-autoreload",
)


def _single_process(cfg: _config.Config, identity: privileges.Identity) -> int:
    """No master: this process binds, drops privileges and serves.  The
    order is the master's: daemonize, bind, chown the unix sockets, pidfile,
    uid/gid, then load the app."""
    if cfg.daemonize:
        try:
            privileges.daemonize(cfg.daemonize)
        except OSError as exc:
            log.error("%s", exc.strerror)
            return EXIT_CONFIG
    privileges.apply_process_limits(cfg)  # umask, max-fd, limit-as: before binding
    try:
        listeners = bind_all(cfg)
    except (OSError, ValueError) as exc:
        log.error("%s", exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
        return EXIT_BIND
    pidfile_written = False
    try:
        try:
            if cfg.chown_socket:
                for lst in listeners:
                    if lst.unix_path:
                        privileges.chown_socket(lst.unix_path, cfg.chown_socket)
            if cfg.pidfile:
                privileges.write_pidfile(cfg.pidfile, os.getpid())
                pidfile_written = True
        except OSError as exc:
            log.error("%s", exc.strerror)
            return EXIT_CONFIG
        # imported before the uid/gid switch: after it only the app's own
        # files need to be readable by the new user
        from .worker import make_server, runner_for, serve
        from .arbiter import run_pre_app_hooks  # imports subprocess before the switch
        from . import static  # noqa: F401 (and mimetypes: static-map is set up after chdir)
        privileges.drop(identity)
        early_monkey_patch(cfg)
        try:
            run_pre_app_hooks(cfg)
            app = load_configured_app(cfg)
        except AppLoadError as exc:
            report_app_error(exc)
            return EXIT_APP_LOAD
        server = make_server(app, listeners, cfg, multiprocess=False)
        runner = runner_for(cfg, app)
        log.info("single process (no master): %s", runner.describe())
        from .uwsgi_api import run_postfork
        run_postfork()  # uWSGI runs the post-fork hooks in its only worker too
        # SIGTERM is the graceful stop; SIGINT (Ctrl-C) and SIGQUIT the quick
        # stop, as with --master, uWSGI and gunicorn (worker.serve()).
        try:
            serve(server, runner, mercy=float(cfg.reload_mercy),
                  on_ready=lambda: log.info("ready (pid %d)", os.getpid()),
                  drain=float(cfg.readiness_drain) if cfg.readiness_path else 0.0,
                  app=app, cfg=cfg)
        except AppLoadError as exc:  # an ASGI app's lifespan startup failed
            report_app_error(exc, what="the app's lifespan startup failed")
            return EXIT_APP_LOAD
        log.info("stopped after %d requests", server.requests)
        return EXIT_OK
    finally:
        close_listeners(listeners, vacuum=cfg.vacuum)
        if pidfile_written and cfg.vacuum:
            privileges.remove_pidfile(cfg.pidfile)
