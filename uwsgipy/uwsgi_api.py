"""The ``uwsgi`` module (and ``uwsgidecorators``) that apps written for uWSGI import.

uWSGI builds a module named ``uwsgi`` into the interpreter it embeds
(plugins/python/uwsgi_pymodule.c), so ``import uwsgi`` works only inside a
uWSGI process and fails anywhere else; code uses that to tell whether it
runs under uWSGI.  uwsgipy does the same: :func:`install` puts both modules
in ``sys.modules`` only in a process that serves (the master before it loads
the app and forks, or the single process), never on import of uwsgipy.

What is provided is what public code calls most (measured by searching it):
``opt``, ``worker_id()``, ``numproc``, ``masterpid()``, ``mule_id()``,
``started_on``, ``version`` / ``version_info``, ``hostname``,
``buffer_size``, ``cores``, ``has_threads``, ``reload()``, ``log()``,
``set_logvar()`` / ``get_logvar()``, ``i_am_the_spooler()``, the
``SPOOL_*`` constants and ``post_fork_hook``; in ``uwsgidecorators``:
``postfork`` (also ``@postfork(WID)``) and ``thread``.  Any other uWSGI
function is an AttributeError (or, for the decorators, NotImplementedError)
whose message names it: ``uwsgipy does not provide uwsgi.cache_get``.

Values are real: ``worker_id()`` is the worker's number (1..processes; 0 in
the master; 1 in single-process mode, as uWSGI), ``numproc`` the configured
``processes``, ``masterpid()`` the master's pid (0 without a master, as
uWSGI), ``opt`` the resolved options as uWSGI exports them (``str`` keys,
``bytes`` values, ``True`` for a flag, a repeated option's last value, as
uWSGI 2.0 gives under Python 3).

Post-fork hooks (``uwsgi.post_fork_hook``, which uwsgidecorators' postfork
chain sets) run in each worker right after the master forks it, and in
single-process mode once the app is loaded, before serving: uWSGI's order.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import types
from typing import Any, Callable, Dict, List, Optional

__all__ = ["install", "installed", "worker_forked", "run_postfork", "UWSGI_VERSION"]

log = logging.getLogger("uwsgipy")

UWSGI_VERSION = (2, 0, 31)  # the uWSGI whose behaviour uwsgipy follows

# uWSGI functions and values apps may probe for that uwsgipy does not
# provide: named in the error (any other name is a plain AttributeError).
_NOT_PROVIDED = frozenset("""
    accepting add_cron add_file_monitor add_rb_timer add_timer add_var alarm applications
    async_connect async_sleep cache_clear cache_dec cache_del cache_div cache_exists
    cache_get cache_inc cache_keys cache_mul cache_num cache_set cache_update call
    chunked_read chunked_read_nb cl close connect connection_fd disconnect embedded_data
    env extract farm_get_msg farm_msg green_schedule i_am_the_lord in_farm is_a_reload
    is_connected is_locked listen_queue lock log_this_request logsize loop lord_scroll
    magic_table mem metric_dec metric_div metric_get metric_inc metric_mul metric_set
    metric_set_max metric_set_min micros mule_get_msg mule_msg offload parsefile ready
    ready_fd recv register_rpc register_signal request_id rpc rpc_list scrolls send
    sendfile set_user_harakiri set_warning_message setprocname signal signal_received
    signal_registered signal_wait sockets spool spooler start_response stop suspend
    total_requests unbit unlock wait_fd_read wait_fd_write websocket_handshake
    websocket_recv websocket_recv_nb websocket_send websocket_send_binary workers
""".split())

_state: Dict[str, Any] = {"installed": False, "master_pid": 0, "worker_id": 0,
                          "forked_pid": 0, "warned_logvar": False}
_logvars = threading.local()


class _UwsgiModule(types.ModuleType):
    """``uwsgi``: a module whose missing uWSGI names say so."""

    def __getattr__(self, name: str) -> Any:
        if name in _NOT_PROVIDED:
            raise AttributeError(f"uwsgipy does not provide uwsgi.{name}")
        raise AttributeError(f"module 'uwsgi' has no attribute {name!r}")


def _opt(exported) -> Dict[str, Any]:
    """uWSGI's ``uwsgi.opt`` from the exported options: a flag is True, a
    value bytes.  An option given several times keeps its last value: under
    Python 3 uWSGI 2.0 means to build a list (python_plugin.c) but looks the
    key up as bytes in a dict of str keys, never finds it, and overwrites;
    apps see that, so uwsgipy does the same (checked against uWSGI 2.0.31)."""
    opt: Dict[str, Any] = {}
    for key, value in exported:
        opt[key] = True if value is None else value.encode("utf-8", "surrogateescape")
    return opt


def worker_id() -> int:
    """The worker's number: 1..processes in a worker, 0 in the master, 1 in
    single-process mode (uWSGI's uwsgi.worker_id())."""
    return _state["worker_id"]


def masterpid() -> int:
    """The master's pid, 0 without a master (uWSGI's uwsgi.masterpid())."""
    return _state["master_pid"]


def mule_id() -> int:
    """0: uwsgipy has no mules, so no code runs in one."""
    return 0


def i_am_the_spooler() -> bool:
    """False: uwsgipy has no spooler."""
    return False


def reload() -> bool:
    """Ask the master for a graceful reload (SIGHUP to it, as uWSGI's
    uwsgi.reload() does through the master); True when asked.  Without a
    master there is nothing to reload: one warning, False."""
    pid = _state["master_pid"]
    if not pid:
        log.warning("uwsgi.reload(): no master process (run with --master): ignored")
        return False
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        log.warning("uwsgi.reload(): cannot signal the master (pid %d): %s", pid, exc.strerror)
        return False
    return True


def log_message(message: Any) -> bool:
    """uwsgi.log(MESSAGE): one line in uwsgipy's log."""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    log.info("%s", message)
    return True


def set_logvar(key: Any, value: Any) -> None:
    """uwsgi.set_logvar(KEY, VALUE): kept for get_logvar() in this thread.
    uwsgipy's access log has no app-set variables (log-format's %(KEY)), so
    the first call logs one warning saying the value is not logged."""
    if not _state["warned_logvar"]:
        _state["warned_logvar"] = True
        log.warning("uwsgi.set_logvar(): uwsgipy's access log does not show variables set "
                    "by the app; they are kept for uwsgi.get_logvar() only")
    store = getattr(_logvars, "values", None)
    if store is None:
        store = _logvars.values = {}
    store[str(key)] = str(value).encode("utf-8", "surrogateescape")


def get_logvar(key: Any) -> Optional[bytes]:
    """The value set_logvar() gave KEY in this thread (bytes, as uWSGI's),
    or None."""
    return getattr(_logvars, "values", {}).get(str(key))


def _build_uwsgi(cfg: Any) -> types.ModuleType:
    mod = _UwsgiModule("uwsgi", "uWSGI's API as uwsgipy provides it (uwsgipy.uwsgi_api).")
    major, minor, micro = UWSGI_VERSION
    mod.__dict__.update(
        opt=_opt(getattr(cfg, "exported", ()) or ()),
        numproc=int(cfg.processes),
        started_on=int(time.time()),
        version=f"{major}.{minor}.{micro}".encode(),
        version_info=(major, minor, micro, 0, "uwsgipy"),
        hostname=socket.gethostname().encode(),
        buffer_size=int(cfg.buffer_size),
        # uWSGI: threads, or the async cores of --gevent N
        cores=int(getattr(cfg, "gevent", 0) or cfg.threads),
        has_threads=True,
        SPOOL_OK=-2, SPOOL_RETRY=-1, SPOOL_IGNORE=0,
        worker_id=worker_id, masterpid=masterpid, mule_id=mule_id, reload=reload,
        log=log_message, set_logvar=set_logvar, get_logvar=get_logvar,
        i_am_the_spooler=i_am_the_spooler,
    )
    return mod


# --------------------------------------------------------------------------
# uwsgidecorators
# --------------------------------------------------------------------------

class _DecoratorsModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name not in _NOT_DECORATORS:
            raise AttributeError(f"module 'uwsgidecorators' has no attribute {name!r}")

        def refused(*args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError(f"uwsgipy does not provide uwsgidecorators.{name}")
        refused.__name__ = name
        return refused


class postfork:
    """``@postfork``: run the function in each worker right after it is
    forked (and in single-process mode before serving); ``@postfork(WID)``:
    only in worker WID.  uWSGI's uwsgidecorators.postfork."""

    def __init__(self, f: Any) -> None:
        if callable(f):
            self.wid = 0
            self.f: Optional[Callable[[], Any]] = f
        else:
            self.f = None
            self.wid = int(f)
        _postfork_chain.append(self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.f is None:  # @postfork(WID) decorating its function
            self.f = args[0]
            return self
        if self.wid > 0 and self.wid != worker_id():
            return None
        return self.f()


class thread:
    """``@thread``: each call runs the function in a new daemon thread
    (uWSGI's uwsgidecorators.thread)."""

    def __init__(self, f: Callable[..., Any]) -> None:
        self.fn = f

    def __call__(self, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        t = threading.Thread(target=self.fn, args=args, kwargs=kwargs, daemon=True)
        t.start()
        return self.fn


_postfork_chain: List[postfork] = []


def _postfork_chain_hook() -> None:
    for f in list(_postfork_chain):
        f()


_NOT_DECORATORS = ("spool", "spoolraw", "spoolforever", "mulefunc", "rpc", "farm_loop", "farm",
                   "mule_brain", "mule_brainloop", "mule", "muleloop", "mulemsg_loop",
                   "mulemsg", "signal", "timer", "cron", "rbtimer", "filemon", "erlang",
                   "lock", "harakiri", "get_free_signal")


def _build_decorators(uwsgi_mod: types.ModuleType) -> types.ModuleType:
    mod = _DecoratorsModule("uwsgidecorators",
                            "uWSGI's decorators as uwsgipy provides them (uwsgipy.uwsgi_api).")
    mod.__dict__.update(postfork=postfork, thread=thread, postfork_chain=_postfork_chain,
                        postfork_chain_hook=_postfork_chain_hook, uwsgi=uwsgi_mod)
    uwsgi_mod.post_fork_hook = _postfork_chain_hook
    return mod


# --------------------------------------------------------------------------
# life cycle
# --------------------------------------------------------------------------

def installed() -> bool:
    return bool(_state["installed"])


def install(cfg: Any, *, master: bool) -> None:
    """Make ``import uwsgi`` and ``import uwsgidecorators`` work in this
    process: the master (``master=True``; its workers inherit them through
    fork) or the single serving process.  Call before the app is loaded."""
    _state.update(installed=True, master_pid=os.getpid() if master else 0,
                  worker_id=0 if master else 1)
    uwsgi_mod = _build_uwsgi(cfg)
    sys.modules["uwsgi"] = uwsgi_mod
    sys.modules["uwsgidecorators"] = _build_decorators(uwsgi_mod)
    if master and not _state.get("at_fork"):
        _state["at_fork"] = True
        os.register_at_fork(after_in_child=_after_fork)


def _spawning_wid() -> Optional[int]:
    """The worker number when this fork is the master's spawn of a worker:
    the ``wid`` of Arbiter.spawn_worker, the frame that called os.fork()."""
    frame = sys._getframe(1)
    for _ in range(4):
        if frame is None:
            return None
        if frame.f_code.co_name == "spawn_worker" and \
                frame.f_globals.get("__name__") == "uwsgipy.arbiter":
            wid = frame.f_locals.get("wid")
            return wid if isinstance(wid, int) else None
        frame = frame.f_back
    return None


def _after_fork() -> None:
    """os.register_at_fork's child hook: in a worker the master just forked
    (not in any other child, such as one the app forks), run the post-fork
    hooks."""
    if _state["forked_pid"] == os.getpid():
        return
    wid = _spawning_wid()
    if wid is not None:
        worker_forked(wid)


def worker_forked(wid: int) -> None:
    """In a worker just forked: worker_id() is ``wid``; run the post-fork
    hooks (once per process)."""
    if _state["forked_pid"] == os.getpid():
        return
    _state["forked_pid"] = os.getpid()
    _state["worker_id"] = wid
    run_postfork()


def run_postfork() -> None:
    """Call ``uwsgi.post_fork_hook`` if the app set one (uwsgidecorators
    does); an exception is logged with its traceback and serving goes on,
    as in uWSGI."""
    mod = sys.modules.get("uwsgi")
    hook = getattr(mod, "__dict__", {}).get("post_fork_hook") if mod is not None else None
    if hook is None or not callable(hook):
        return
    try:
        hook()
    except Exception:
        log.exception("uwsgi.post_fork_hook raised (serving goes on, as in uWSGI)")
