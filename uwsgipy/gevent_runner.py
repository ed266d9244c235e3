"""The gevent runner (uWSGI's ``gevent = N``): gevent's hub drives the worker's loop.

The C loop (``_core.Server`` with ``runner="external"``) still owns the listeners and every
connection: it accepts, reads whole requests, keeps connections alive, enforces the timeouts
and writes what a socket did not take at once.  This module only makes gevent's hub drive it:

- the loop greenlet (the worker's main greenlet) waits with gevent on the loop's readiness fd
  (``server.fileno()``, an epoll fd, readable when the loop has work), so the hub runs the
  app's greenlets meanwhile, and calls ``server.run_once(0.0)`` when it is readable, and at
  least once a second (the loop sweeps its timeouts then);
- each complete request (a ``_core.Request``) runs in a greenlet as one of the N cores
  (scoreboard slots 0..N-1: harakiri and the stats server see each); while all N are busy
  requests wait in arrival order, and the greenlet that frees a core takes the next one;
- the imperative ``write()`` waits for a full socket through gevent (:func:`wait_write`), so
  it yields instead of blocking the hub.

Monkey patching is uWSGI's (plugins/gevent/gevent.c): ``gevent-monkey-patch`` calls
``gevent.monkey.patch_all()`` when the worker starts serving, after the app is loaded;
``gevent-early-monkey-patch`` calls it once before the app is loaded, in the master (uWSGI's
``preinit_apps`` hook) or the only process.  Whether gevent is installed is checked with the
configuration (:func:`check`), so a missing package is one line naming the option.
"""
from __future__ import annotations

import collections
import logging
import os
import sys
from typing import Any, Callable, Deque, Dict, List, Optional, Set

__all__ = ["check", "monkey_patch", "master_owns_sigchld", "worker_forked", "make_wait_write",
           "serve", "LOOP_SWEEP"]

log = logging.getLogger("uwsgipy")

# The loop must run at least this often (seconds) even when its fd stays quiet: it sweeps the
# connection timeouts (socket-timeout, header-timeout, http-keepalive) then.
LOOP_SWEEP = 1.0


def check(option: str, source: str) -> Optional[str]:
    """Why the gevent runner cannot run here (one line naming ``option`` and where it was
    set), or None: the gevent package must be importable by this Python, and the C core built
    with epoll (its fd is what the hub waits on)."""
    from . import _core
    try:
        import gevent  # noqa: F401  (importing patches nothing; a broken install shows here)
    except ImportError as exc:
        why = ("is not installed" if getattr(exc, "name", None) == "gevent"
               else f"cannot be imported ({exc})")
        return (f"{source}: option '{option}': the gevent package {why} for "
                f"{sys.executable} (pip install gevent)")
    if _core.POLLER != "epoll":
        return (f"{source}: option '{option}': this build of uwsgipy polls with poll(2), which "
                "has no readiness fd for gevent's hub to wait on; gevent needs the epoll "
                "build (Linux)")
    return None


def monkey_patch(option: str, *, master: bool = False) -> None:
    """``gevent.monkey.patch_all()``, as uWSGI calls it (no arguments), and one log line.

    ``master``: this process is the master (gevent-early-monkey-patch), which forks and reaps
    the workers.  uWSGI's master is C and patching does not touch it; ours is Python, and
    gevent's patched ``os.fork`` watches each child with libev, whose SIGCHLD handler then reaps
    *every* child: the statuses of those it does not watch (the old workers after a reload's
    re-exec, attached daemons) would be lost to the master.  So the master alone keeps the
    standard library's ``os.waitpid`` and ``signal.signal`` and forks with gevent's
    ``fork_gevent`` (the child's hub is reinitialised, no watcher); each worker gets patch_all's
    own functions back at once (:func:`worker_forked`), so the app sees exactly what
    patch_all() gives it.  :func:`master_owns_sigchld` takes SIGCHLD back from libev if the
    pre-app hooks or the app's import used gevent's subprocess."""
    from gevent import monkey
    monkey.patch_all()
    log.info("%s: gevent.monkey.patch_all() done (pid %d)", option, os.getpid())
    if master and monkey.is_module_patched("os"):
        import signal
        import gevent.os
        _patched.update(fork=os.fork, waitpid=os.waitpid, signal=signal.signal)
        os.fork = gevent.os.fork_gevent
        os.waitpid = monkey.get_original("os", "waitpid")
        signal.signal = monkey.get_original("signal", "signal")


# patch_all()'s os.fork, os.waitpid and signal.signal, while the master uses its own
# (monkey_patch(master=True)); given back to each worker by worker_forked().
_patched: Dict[str, Callable[..., Any]] = {}


def master_owns_sigchld() -> None:
    """In a monkey-patched master, before it installs its SIGCHLD handler: remove libev's
    (gevent's subprocess installs it for its child watchers), so the master's waitpid sees
    every child's status."""
    if _patched:
        import gevent
        gevent.get_hub().loop.reset_sigchld()


def worker_forked() -> None:
    """First thing in a worker forked by a monkey-patched master: patch_all()'s os.fork,
    os.waitpid and signal.signal again (the hub was reinitialised by fork_gevent)."""
    if _patched:
        import signal
        os.fork = _patched["fork"]
        os.waitpid = _patched["waitpid"]
        signal.signal = _patched["signal"]
        _patched.clear()


class _WriteTimeout(Exception):
    """Raised by gevent's wait_write on its timeout (and caught at once)."""


def make_wait_write() -> Callable[[int, float], bool]:
    """The ``wait_write`` callable for ``_core.Server``: waits in the calling greenlet until
    ``fd`` is writable (True) or ``timeout`` seconds have passed (False), letting the hub run
    the other greenlets meanwhile."""
    from gevent.socket import wait_write as gevent_wait_write
    timed_out = _WriteTimeout()

    def wait_write(fd: int, timeout: float) -> bool:
        try:
            gevent_wait_write(fd, timeout=timeout, timeout_exc=timed_out)
        except _WriteTimeout:
            return False
        return True

    return wait_write


def serve(server: Any, cores: int, wakeup_fd: int = -1) -> None:
    """Drive ``server``'s loop from gevent's hub until a stop completes, running up to
    ``cores`` requests at once in greenlets.  Called in the worker's main greenlet; returns
    once ``run_once()`` says the loop has ended.  Greenlets still running an app then (a
    graceful stop's mercy is over, or a quick stop) are killed (GreenletExit at their next
    switch), requests still waiting for a core are dropped (their connections close).

    A request greenlet that fails outside the app (a bug: the C core reports app errors
    itself) is logged and stops the server at once, as a failing app thread does; the error
    is raised again here."""
    import gevent
    from gevent.socket import wait as gevent_wait

    hub = gevent.get_hub()
    free: List[int] = list(range(cores - 1, -1, -1))  # pop() hands out core 0 first
    waiting: Deque[Any] = collections.deque()
    running: Set[Any] = set()
    errors: List[BaseException] = []

    def run(req: Any, core: int) -> None:
        me = gevent.getcurrent()
        try:
            while True:
                req.run(core)
                req = None
                if not waiting:
                    return
                req = waiting.popleft()  # this core goes on with the oldest waiting request
        except gevent.GreenletExit:
            raise
        except BaseException as exc:  # a bug in the runner: stop everything
            errors.append(exc)
            log.exception("a gevent request greenlet failed (core %d)", core)
            server.stop(graceful=False)
        finally:
            running.discard(me)
            free.append(core)

    ready = server.run_once(0.0, wakeup_fd)  # opens the loop: fileno() exists from here
    if ready is None:
        return  # stopped already (a signal between the handlers and here)
    watcher = hub.loop.io(server.fileno(), 1)
    try:
        while ready is not None:
            for req in ready:
                if free:
                    running.add(gevent.spawn(run, req, free.pop()))
                else:
                    waiting.append(req)
            ready = None
            # The hub runs the request greenlets while this one waits for the loop's fd;
            # on the sweep timeout the wait just returns.
            gevent_wait(watcher, LOOP_SWEEP, False)
            ready = server.run_once(0.0)
    finally:
        watcher.close()
        waiting.clear()
        if running:
            log.info("gevent: the loop has stopped; interrupting the %d greenlet(s) still "
                     "running a request (GreenletExit)", len(running))
            gevent.killall(list(running), block=True, timeout=5.0)
    if errors:
        raise errors[0]
