"""The master (arbiter): pre-fork process management.

The master binds every listener, loads the app (unless ``lazy-apps``),
forks ``processes`` workers that inherit the listeners, and then only
manages them: ``reap_workers`` (waitpid, log how each died),
``manage_workers`` (respawn at once, with back-off when workers die at
start-up in a loop), ``murder_workers`` (harakiri, mercy deadlines),
recycling (``max-worker-lifetime``; workers stop themselves for
``max-requests`` and ``reload-on-rss``), ``touch-reload``.

Signal handlers only queue the signal; the loop dispatches to
``handle_<name>``.  Signals (uWSGI's names, modern semantics):

=========  ==============================================================
SIGTERM    graceful stop: workers finish in-flight requests within
           ``reload-mercy`` s, then SIGKILL; exit 0
SIGINT     quick stop (SIGQUIT too): workers stop at once; exit 0
SIGHUP     graceful reload: the master re-executes itself (fresh code and
           config, same pid, listeners inherited so no connection is
           refused), forks new workers, and only once they serve tells the
           old ones to finish their requests and exit
SIGTTIN    one more worker;  SIGTTOU: one fewer
SIGUSR1    reopen the ``logto`` file (master and workers)
=========  ==============================================================
"""
from __future__ import annotations

import errno
import json
import logging
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set

from . import systemd
from .app import AppLoadError
from .log import reopen as reopen_logs, set_role
from .scoreboard import Scoreboard
from .sockets import Listener, bind_listener, close_listeners, listener_from_fd, same_address

__all__ = ["Arbiter", "WorkerInfo"]

log = logging.getLogger("uwsgipy")

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_BIND = 3
EXIT_APP_LOAD = 4

# Environment carried across the re-execution of a graceful reload.
ENV_LISTENERS = "UWSGIPY_LISTENERS"   # JSON [{"fd", "kind", "address"}]
ENV_OLD_WORKERS = "UWSGIPY_OLD_WORKERS"  # "pid,pid,..."
ENV_REEXEC = "UWSGIPY_REEXEC"          # "1": not a fresh start

FAST_DEATH = 2.0       # a worker dying this soon after spawning...
BACKOFF_AFTER = 3      # ...this many times in a row gets respawns delayed
BACKOFF_MAX = 30.0
TICK = 0.25            # master loop wake-up, seconds: harakiri precision


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_status(status: int) -> str:
    """Human text for a waitpid status, with the likely cause."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        text = f"killed by {_signal_name(sig)}"
        if sig == signal.SIGKILL:
            text += " (harakiri, mercy timeout, or out of memory?)"
        elif sig == signal.SIGSEGV:
            text += " (a crash in C code)"
        return text
    code = os.WEXITSTATUS(status)
    if code == EXIT_APP_LOAD:
        return f"exited with code {code} (the app failed to load)"
    return f"exited with code {code}"


def set_proctitle(title: str) -> None:
    """Process title for ps/top: setproctitle when installed, else the
    kernel's comm name (15 bytes, /proc/PID/comm)."""
    try:
        import setproctitle  # type: ignore[import-not-found]
        setproctitle.setproctitle(title)
        return
    except ImportError:
        pass
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_NAME = 15
        libc.prctl(PR_SET_NAME, title.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _die_with_parent(master_pid: int) -> None:
    """Linux: the worker gets SIGTERM (a graceful stop) if the master dies,
    instead of serving on as an orphan nobody manages."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != master_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class WorkerInfo:
    """The master's record of one worker process."""
    wid: int                  # 1..processes, reused by its replacements
    pid: int
    spawned: float            # time.monotonic()
    spawned_wall: float       # time.time(), for the stats
    respawns: int = 0         # times this wid was forked before
    stopping: bool = False    # told to stop (recycle, reload, TTOU)
    kill_at: float = 0.0      # monotonic deadline for SIGKILL, 0 none
    ready: bool = False       # its loop is serving (scoreboard pid set)
    slot: int = 0             # its scoreboard block


@dataclass
class Arbiter:
    """The master process.  ``run()`` returns the exit code.
    argv: the command line, for re-execution on reload."""
    cfg: Any
    argv: List[str] = field(default_factory=list)
    app: Optional[Callable] = None
    listeners: List[Listener] = field(default_factory=list)
    workers: Dict[int, WorkerInfo] = field(default_factory=dict)  # by pid
    old_pids: Set[int] = field(default_factory=set)  # previous generation
    num_workers: int = 1
    scoreboard: Optional[Scoreboard] = None
    started: float = field(default_factory=time.time)
    respawn_counts: Dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.num_workers = self.cfg.processes
        self.pid = os.getpid()
        self.stopping = False
        self.reload_failed = False
        self._queue: List[int] = []
        self._fast_deaths = 0
        self._next_spawn = 0.0
        self._exit_code = EXIT_OK
        self._touch_mtimes: Dict[str, float] = {}
        self._rfd = self._wfd = -1
        self._old_kill_at = 0.0  # set once the old generation was told to stop
        self._quick = False
        self._activated_fds: Set[int] = set()  # systemd's sockets: kept on reload, never vacuumed
        self.stats_server: Any = None

    # ------------------------------------------------------------------
    # start-up
    # ------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.cfg
        reexec = os.environ.pop(ENV_REEXEC, "") == "1"
        if cfg.daemonize and not reexec:
            self._daemonize(cfg.daemonize)
            self.pid = os.getpid()
        prefix = cfg.procname_prefix or ""
        set_proctitle(f"{prefix}uwsgipy master")
        try:
            self._open_listeners()
        except (OSError, ValueError) as exc:
            log.error("%s", exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
            return EXIT_BIND
        try:
            return self._run_bound(reexec)
        finally:
            if not self._reexecuting:
                close_listeners(self.listeners, vacuum=cfg.vacuum)
                if cfg.pidfile and cfg.vacuum:
                    try:
                        os.unlink(cfg.pidfile)
                    except FileNotFoundError:
                        pass

    _reexecuting = False

    def _run_bound(self, reexec: bool) -> int:
        cfg = self.cfg
        if cfg.pidfile:
            with open(cfg.pidfile, "w") as f:
                f.write(f"{self.pid}\n")
        self._drop_privileges()
        old = os.environ.pop(ENV_OLD_WORKERS, "")
        self.old_pids = {int(p) for p in old.split(",") if p}
        if not cfg.lazy_apps:
            from .cli import load_configured_app, report_app_error
            try:
                self.app = load_configured_app(cfg)
            except AppLoadError as exc:
                report_app_error(exc)
                if self.old_pids:
                    log.error("reload failed: the %d old workers go on serving the old code; "
                              "fix the app and send SIGHUP again", len(self.old_pids))
                    self.reload_failed = True
                else:
                    return EXIT_APP_LOAD
        else:
            from .cli import prepare_path
            prepare_path(cfg.chdir, cfg.pythonpath)
        self._worker_cap = self._max_workers()
        # Twice the blocks: a recycled worker finishing its requests and its
        # replacement each have their own.
        self.scoreboard = Scoreboard(2 * self._worker_cap, cfg.threads)
        self._install_signals()
        if cfg.stats:
            from .stats import start_stats_server
            try:
                self.stats_server = start_stats_server(cfg.stats, self, http=cfg.stats_http)
            except OSError as exc:
                log.error("stats %s: %s", cfg.stats, exc)
                return EXIT_BIND
        for path in cfg.touch_reload:
            self._touch_mtimes[path] = self._mtime(path)
        log.info("master %d: %s%d worker(s) x %d thread(s)%s", self.pid,
                 "reloaded, " if reexec else "", self.num_workers, cfg.threads,
                 ", lazy-apps" if cfg.lazy_apps else "")
        if not self.reload_failed:
            self.manage_workers()
        if not reexec:
            log.info("ready (pid %d)", self.pid)
        systemd.notify(f"READY=1\nMAINPID={self.pid}\nSTATUS=serving")
        try:
            self._loop()
        finally:
            systemd.notify("STOPPING=1")
            if self.stats_server is not None:
                self.stats_server.shutdown()
                self.stats_server.server_close()
        return self._exit_code

    def _max_workers(self) -> int:
        # TTIN may add workers: leave room in the shared scoreboard.
        return max(self.num_workers * 2, self.num_workers + 8)

    def _open_listeners(self) -> None:
        cfg = self.cfg
        wanted = [("socket", a) for a in cfg.socket] + [("http-socket", a) for a in cfg.http_socket]
        inherited: List[Listener] = []
        carried = os.environ.pop(ENV_LISTENERS, "")
        activated = self._activated_fds
        if carried:
            for item in json.loads(carried):
                inherited.append(listener_from_fd(item["fd"], item["kind"], item["address"]))
                if item.get("activated"):
                    activated.add(item["fd"])
        for fd in systemd.listen_fds():
            inherited.append(listener_from_fd(fd, "socket", f"fd {fd}"))
            activated.add(fd)
        for lst in inherited:
            if lst.sock.fileno() in activated:
                lst.unix_path = None  # systemd owns the file: never vacuumed nor chowned
        for kind, address in wanted:
            match = None
            for lst in inherited:
                if carried and lst.kind == kind and lst.address == address:
                    match = lst
                    break
                if not carried and same_address(lst.sock.getsockname(), lst.sock.family, address):
                    match = lst
                    match.kind = kind
                    match.address = address
                    break
            if match is not None:
                inherited.remove(match)
                self.listeners.append(match)
            else:
                self.listeners.append(bind_listener(kind, address, backlog=cfg.listen,
                                                    chmod=cfg.chmod_socket))
        for lst in inherited:
            if carried and lst.sock.fileno() not in activated:
                lst.sock.close()  # an address no longer configured
            else:
                log.info("socket activation: fd %d (%s) serves the uwsgi protocol",
                         lst.sock.fileno(), lst.bound)
                self.listeners.append(lst)
        if not self.listeners:
            raise ValueError("no listener configured")
        for lst in self.listeners:
            if cfg.chown_socket and lst.unix_path:
                self._chown(lst.unix_path, cfg.chown_socket)
            log.info("listening on %s %s (fd %d)", lst.kind, lst.bound, lst.sock.fileno())

    @staticmethod
    def _chown(path: str, spec: str) -> None:
        import grp
        import pwd
        user, _, group = spec.partition(":")
        uid = pwd.getpwnam(user).pw_uid if not user.isdigit() else int(user)
        gid = -1
        if group:
            gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
        os.chown(path, uid, gid)

    def _drop_privileges(self) -> None:
        """uWSGI's uid/gid: after binding (privileged ports), before the app."""
        import grp
        import pwd
        cfg = self.cfg
        if cfg.gid:
            gid = int(cfg.gid) if cfg.gid.isdigit() else grp.getgrnam(cfg.gid).gr_gid
            os.setgroups([gid])
            os.setgid(gid)
        if cfg.uid:
            uid = int(cfg.uid) if cfg.uid.isdigit() else pwd.getpwnam(cfg.uid).pw_uid
            os.setuid(uid)

    @staticmethod
    def _daemonize(logfile: str) -> None:
        """uWSGI's daemonize: detach and log to ``logfile``."""
        if os.fork():
            os._exit(0)
        os.setsid()
        if os.fork():
            os._exit(0)
        fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)

    # ------------------------------------------------------------------
    # signals: handlers only queue
    # ------------------------------------------------------------------

    SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
               signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGCHLD)

    def _install_signals(self) -> None:
        self._rfd, self._wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wfd, warn_on_full_buffer=False)
        for sig in self.SIGNALS:
            signal.signal(sig, self._queue_signal)

    def _queue_signal(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGCHLD and len(self._queue) < 16:
            self._queue.append(signum)

    def _wait(self, timeout: float) -> None:
        try:
            ready, _, _ = select.select([self._rfd], [], [], timeout)
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(self._rfd, 256):
                    pass
            except BlockingIOError:
                pass

    # ------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            while self._queue:
                signum = self._queue.pop(0)
                handler = getattr(self, "handle_" + _signal_name(signum)[3:].lower(), None)
                if handler is not None:
                    handler()
            self.reap_workers()
            if self.stopping:
                if not self.workers and not self.old_pids:
                    return
                self.murder_workers()
                self._wait(TICK)
                continue
            self.murder_workers()
            self.recycle_workers()
            self.retire_old_generation()
            self.check_touch_reload()
            if self.reload_failed and not self.workers and not self.old_pids:
                log.error("no worker left after a failed reload: stopping")
                self._exit_code = EXIT_APP_LOAD
                return
            if not self.reload_failed:
                self.manage_workers()
            if self.stopping:
                continue
            self._wait(TICK)

    # ------------------------------------------------------------------
    # workers
    # ------------------------------------------------------------------

    def _active(self) -> List[WorkerInfo]:
        return [w for w in self.workers.values() if not w.stopping]

    def manage_workers(self) -> None:
        """Fork workers up to num_workers (respecting the back-off);
        stop the extra ones after SIGTTOU."""
        active = sorted(self._active(), key=lambda w: w.wid)
        while len(active) > self.num_workers:
            w = active.pop()
            log.info("worker %d (pid %d): stopping (fewer workers asked)", w.wid, w.pid)
            self._stop_worker(w, graceful=True)
        if len(active) >= self.num_workers:
            return
        now = time.monotonic()
        if now < self._next_spawn:
            return
        used = {w.wid for w in active}
        for wid in range(1, self.num_workers + 1):
            if wid not in used and len(self._active()) < self.num_workers:
                self.spawn_worker(wid)

    def spawn_worker(self, wid: int) -> None:
        assert self.scoreboard is not None
        used = {w.slot for w in self.workers.values()}
        slot = next((b for b in range(1, self.scoreboard.workers + 1) if b not in used), 0)
        if not slot:
            # every block belongs to a live worker (many still finishing
            # after a recycle): try again on the next tick
            return
        self.scoreboard.reset(slot)
        respawns = self.respawn_counts.get(wid, 0)
        self.respawn_counts[wid] = respawns + 1
        # Signals stay blocked across fork until the worker has its own
        # handlers: one sent in between is delivered then, never lost to the
        # master's queue or to the default action.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self.workers[pid] = WorkerInfo(wid=wid, pid=pid, spawned=time.monotonic(),
                                           spawned_wall=time.time(), respawns=respawns,
                                           slot=slot)
            return
        # --- in the worker ---
        code = 1
        try:
            code = self._worker_main(wid, slot, mask)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker %d failed", wid)
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _worker_main(self, wid: int, slot: int, mask: Any) -> int:
        """The worker's life (signals blocked on entry); returns its exit
        code."""
        cfg = self.cfg
        _die_with_parent(self.pid)
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTTIN, signal.SIG_IGN)
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, lambda s, f: reopen_logs())
        signal.set_wakeup_fd(-1)
        os.close(self._rfd)
        os.close(self._wfd)
        if self.stats_server is not None:
            self.stats_server.socket.close()
        set_proctitle(f"{cfg.procname_prefix or ''}uwsgipy worker {wid}")
        set_role(f"worker {wid}")
        app = self.app
        if app is None:
            from .cli import load_configured_app, report_app_error
            try:
                app = load_configured_app(cfg)
            except AppLoadError as exc:
                report_app_error(exc)
                return EXIT_APP_LOAD
        assert self.scoreboard is not None
        from .worker import make_server, serve
        max_requests = cfg.max_requests + (wid * cfg.max_requests_delta if cfg.max_requests else 0)
        server = make_server(app, self.listeners, cfg, multiprocess=True,
                             scoreboard=self.scoreboard.worker_view(slot),
                             max_requests=max_requests, worker_id=wid)
        if cfg.py_autoreload and wid == 1:
            from .reloader import start_autoreloader
            start_autoreloader(cfg.py_autoreload, self.pid)
        serve(server, cfg.threads, mercy=float(cfg.worker_reload_mercy),
              quick_signals=(signal.SIGINT, signal.SIGQUIT),
              on_ready=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, mask))
        if server.stop_reason:
            log.info("worker %d (pid %d): %s after %d requests: recycling", wid, os.getpid(),
                     server.stop_reason, server.requests)
        return EXIT_OK

    def _stop_worker(self, w: WorkerInfo, *, graceful: bool, mercy: Optional[float] = None) -> None:
        if mercy is None:
            mercy = float(self.cfg.worker_reload_mercy)
        w.stopping = True
        w.kill_at = time.monotonic() + (mercy if graceful else 5.0)
        try:
            os.kill(w.pid, signal.SIGTERM if graceful else signal.SIGINT)
        except ProcessLookupError:
            pass

    def reap_workers(self) -> None:
        """waitpid every exited child; log how it died."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.old_pids:
                self.old_pids.discard(pid)
                log.info("old worker (pid %d) %s", pid, describe_status(status))
                continue
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            lived = time.monotonic() - w.spawned
            how = describe_status(status)
            expected = w.stopping or self.stopping
            clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            if expected or clean:
                log.info("worker %d (pid %d) %s", w.wid, pid, how)
            else:
                log.error("worker %d (pid %d) %s after %.1fs: respawning", w.wid, pid, how, lived)
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_APP_LOAD and not self.stopping:
                if self.old_pids or self.reload_failed:
                    log.error("reload failed: the new workers cannot load the app; "
                              "the old workers go on serving")
                    self.reload_failed = True
                else:
                    log.error("the app failed to load in worker %d: stopping", w.wid)
                    self._exit_code = EXIT_APP_LOAD
                    self.handle_int()
                continue
            if not clean and not expected and lived < FAST_DEATH:
                self._fast_deaths += 1
                if self._fast_deaths >= BACKOFF_AFTER:
                    delay = min(BACKOFF_MAX, 2.0 ** (self._fast_deaths - BACKOFF_AFTER))
                    self._next_spawn = time.monotonic() + delay
                    log.error("workers die at start-up (%d in a row): next respawn in %.0fs",
                              self._fast_deaths, delay)
            elif lived >= FAST_DEATH:
                self._fast_deaths = 0

    def murder_workers(self) -> None:
        """harakiri, and SIGKILL for workers past their mercy deadline."""
        now = time.monotonic()
        harakiri = self.cfg.harakiri
        if self._old_kill_at and now > self._old_kill_at and self.old_pids:
            log.error("old workers %s did not finish within worker-reload-mercy: SIGKILL",
                      sorted(self.old_pids))
            for pid in self.old_pids:
                self._kill(pid, signal.SIGKILL)
            self._old_kill_at = now + 3600.0
        for w in list(self.workers.values()):
            if w.kill_at and now > w.kill_at:
                log.error("worker %d (pid %d) did not stop within its mercy: SIGKILL", w.wid, w.pid)
                w.kill_at = 0.0
                self._kill(w.pid, signal.SIGKILL)
                continue
            if self.scoreboard is None:
                continue
            for core in self.scoreboard.cores(w.slot):
                if core.pid == w.pid:
                    w.ready = True
                started = core.request_started
                if harakiri and started and now - started > harakiri and core.pid == w.pid:
                    log.error("harakiri: worker %d (pid %d) killed after %.1fs on %s %s "
                              "(harakiri %ds)", w.wid, w.pid, now - started,
                              core.method.decode("latin-1"), core.uri.decode("latin-1"), harakiri)
                    core.request_started = 0.0
                    w.stopping = True  # replaced at once; reaped later
                    self._kill(w.pid, signal.SIGKILL)
                    break

    def recycle_workers(self) -> None:
        """max-worker-lifetime: replace old workers gracefully (the
        replacement is forked before the old one finishes)."""
        lifetime = self.cfg.max_worker_lifetime
        if not lifetime:
            return
        now = time.monotonic()
        for w in self._active():
            if now - w.spawned > lifetime:
                log.info("worker %d (pid %d): max-worker-lifetime %ds reached: recycling",
                         w.wid, w.pid, lifetime)
                self._stop_worker(w, graceful=True)

    def retire_old_generation(self) -> None:
        """After a reload: once every new worker serves, the old ones are
        told to finish their requests and exit."""
        if not self.old_pids or self.reload_failed or self._old_kill_at:
            return
        active = self._active()
        if len(active) < self.num_workers or not all(w.ready for w in active):
            return
        for pid in list(self.old_pids):
            if not self._kill(pid, signal.SIGTERM):
                self.old_pids.discard(pid)
        log.info("reload: new workers serving; %d old worker(s) finishing their requests",
                 len(self.old_pids))
        self._old_kill_at = time.monotonic() + float(self.cfg.worker_reload_mercy)

    def _kill(self, pid: int, sig: int) -> bool:
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    @staticmethod
    def _mtime(path: str) -> float:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return 0.0

    def check_touch_reload(self) -> None:
        for path, seen in self._touch_mtimes.items():
            now = self._mtime(path)
            if now != seen:
                self._touch_mtimes[path] = now
                log.info("touch-reload: %s changed", path)
                self.handle_hup()
                return

    # ------------------------------------------------------------------
    # signal handlers (called from the loop, never from signal context)
    # ------------------------------------------------------------------

    def handle_term(self) -> None:
        if self.stopping:
            return
        mercy = float(self.cfg.reload_mercy)
        log.info("SIGTERM: graceful stop (workers finish in-flight requests, at most %.0fs)", mercy)
        self.stopping = True
        for w in self.workers.values():
            self._stop_worker(w, graceful=True, mercy=mercy)
        for pid in self.old_pids:
            self._kill(pid, signal.SIGTERM)

    def handle_int(self) -> None:
        if self._quick:
            return
        log.info("quick stop")
        self._quick = True
        self.stopping = True
        for w in self.workers.values():
            self._stop_worker(w, graceful=False)
        for pid in self.old_pids:
            self._kill(pid, signal.SIGINT)

    handle_quit = handle_int

    def handle_hup(self) -> None:
        """Graceful reload by re-executing the master with the listeners
        and the current workers' pids in the environment."""
        if self.stopping:
            return
        log.info("graceful reload: re-executing the master (pid %d stays)", self.pid)
        systemd.notify("RELOADING=1")
        pids = [w.pid for w in self.workers.values()] + sorted(self.old_pids)
        os.environ[ENV_LISTENERS] = json.dumps(
            [{"fd": lst.sock.fileno(), "kind": lst.kind, "address": lst.address,
              "activated": lst.sock.fileno() in self._activated_fds}
             for lst in self.listeners])
        os.environ[ENV_OLD_WORKERS] = ",".join(str(p) for p in pids)
        os.environ[ENV_REEXEC] = "1"
        for lst in self.listeners:
            lst.sock.set_inheritable(True)
        if self.stats_server is not None:
            self.stats_server.shutdown()
            self.stats_server.server_close()
        signal.set_wakeup_fd(-1)
        sys.stdout.flush()
        sys.stderr.flush()
        self._reexecuting = True
        argv = [sys.executable, "-m", "uwsgipy"] + list(self.argv)
        try:
            os.execv(sys.executable, argv)
        except OSError as exc:
            self._reexecuting = False
            log.error("reload: cannot re-execute %s: %s", sys.executable, exc.strerror)

    def handle_ttin(self) -> None:
        assert self.scoreboard is not None
        if self.num_workers >= self._worker_cap:
            log.warning("SIGTTIN: already at the most workers this master can hold (%d)",
                        self._worker_cap)
            return
        self.num_workers += 1
        log.info("SIGTTIN: %d workers", self.num_workers)

    def handle_ttou(self) -> None:
        if self.num_workers <= 1:
            log.warning("SIGTTOU: keeping the last worker")
            return
        self.num_workers -= 1
        log.info("SIGTTOU: %d workers", self.num_workers)

    def handle_usr1(self) -> None:
        reopen_logs()
        log.info("SIGUSR1: log files reopened")
        for w in self.workers.values():
            self._kill(w.pid, signal.SIGUSR1)
