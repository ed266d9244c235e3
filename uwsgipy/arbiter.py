"""The master (arbiter): pre-fork process management.

The master binds every listener, drops privileges (``uid``/``gid``, see
privileges.py), loads the app (unless ``lazy-apps``), forks ``processes``
workers that inherit the listeners, and then only manages them:
``reap_workers`` (waitpid, log how each died), ``manage_workers`` (respawn
at once, with back-off when workers die before they are ready, in a loop),
``murder_workers`` (harakiri, mercy deadlines), recycling
(``max-worker-lifetime``; workers stop themselves for ``max-requests`` and
``reload-on-rss``), ``touch-reload``.

A worker is *ready* once its C loop serves (it writes its pid into its
scoreboard slots: one per core, i.e. per app thread or gevent greenlet;
harakiri, cheaper and the stats server read them per core).  Exit code 4 before that means the app cannot be loaded
(the master stops with 4, or a reload fails); after it, exit code 4 is a
crash like any other and the worker is respawned at once.

Signal handlers only queue the signal; the loop dispatches to
``handle_<name>``.  Signals sent to the master (uWSGI's names, modern
semantics; SIGINT and SIGQUIT as in uWSGI and gunicorn):

=========  ==============================================================
SIGTERM    graceful stop: workers serve the requests already received
           (in flight and queued in the listen backlog) within
           ``reload-mercy`` s, then SIGKILL; exit 0
SIGINT     quick stop (SIGQUIT too): workers exit at once, requests in
           flight are dropped; one log line; exit 0
SIGHUP     graceful reload: the master re-executes itself (fresh code and
           config, same pid, listeners inherited so no connection is
           refused), forks new workers, and only once they serve tells the
           old ones to finish their requests and exit.  New code that
           fails to import: "reload failed: <why>", the old workers go on
SIGTTIN    one more worker;  SIGTTOU: one fewer
SIGUSR1    reopen the ``logto`` file (master and workers)
=========  ==============================================================

What the master sends a worker: SIGTERM for a *final* stop (the server is
stopping: serve the backlog, then shut the listeners so later connects are
refused at once); SIGHUP to *retire* it while others go on serving the same
listeners (old generation after a reload, SIGTTOU, max-worker-lifetime):
finish in-flight requests and exit, listeners untouched; SIGINT for a quick
stop.  Listeners from systemd socket activation are never shut.  A worker
treats SIGTERM as final only when the master's shared flag says so or the
master is gone; a SIGTERM sent to one worker by hand retires it.
"""
from __future__ import annotations

import json
import logging
import mmap
import os
import select
import signal
import subprocess  # hook-pre-app; imported before dropping privileges
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set

from . import privileges, systemd
from .app import AppLoadError
from .log import reopen as reopen_logs, set_role
from .metrics import Tally
from .scoreboard import Scoreboard
from .sockets import (Listener, bind_listener, close_listeners, configured_addresses,
                      listener_from_fd, listener_options, same_address)
from .worker import runner_for

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

BACKOFF_AFTER = 3      # workers dying before ready this many times in a row: respawns delayed
BACKOFF_MAX = 30.0
TICK = 0.25            # master loop wake-up, seconds: harakiri precision


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_status(status: int, ready: bool = True) -> str:
    """Human text for a waitpid status, with the likely cause.  ready: the
    worker had reported ready (exit code 4 means "the app failed to load"
    only before that; after it, it is the app's own exit)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        text = f"killed by {_signal_name(sig)}"
        if sig == signal.SIGKILL:
            text += " (harakiri, mercy timeout, or out of memory?)"
        elif sig == signal.SIGSEGV:
            text += " (a crash in C code)"
        return text
    code = os.WEXITSTATUS(status)
    if code == EXIT_APP_LOAD and not ready:
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


def process_title(cfg: Any, role: str, wid: int = 0) -> str:
    """The title of the master (role "master") or of worker ``wid``, as
    uWSGI names them: procname-master (master only), else procname, else
    "uWSGI master" / "uWSGI worker N" when auto-procname (or procname,
    procname-master) is set, after procname-prefix(-spaced).  Without
    those, uwsgipy's own "uwsgipy master" / "uwsgipy worker N"."""
    if cfg.procname_prefix_spaced:
        prefix = cfg.procname_prefix_spaced + " "
    else:
        prefix = cfg.procname_prefix or ""
    if role == "master" and cfg.procname_master:
        name = cfg.procname_master
    elif cfg.procname:
        name = cfg.procname
    elif cfg.auto_procname or cfg.procname_master:
        name = "uWSGI master" if role == "master" else f"uWSGI worker {wid}"
    else:
        name = "uwsgipy master" if role == "master" else f"uwsgipy worker {wid}"
    return prefix + name


def _proc_memory(pid: int) -> "tuple[int, int]":
    """(address space, resident) of a process in bytes, from
    /proc/PID/statm; (0, 0) when it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            size, resident = f.read().split()[:2]
    except (OSError, ValueError):
        return 0, 0
    page = os.sysconf("SC_PAGE_SIZE")
    return int(size) * page, int(resident) * page


def _kernel_activity(pid: int) -> str:
    """harakiri-verbose: the worker's current system call and wait
    channel (/proc/PID/syscall, /proc/PID/wchan), as uWSGI logs them."""
    parts = []
    for name in ("syscall", "wchan"):
        try:
            with open(f"/proc/{pid}/{name}") as f:
                parts.append(f"{name} {f.read().strip() or '?'}")
        except OSError as exc:
            parts.append(f"{name} unreadable ({exc.strerror})")
    return "; ".join(parts)


def run_pre_app_hooks(cfg: Any) -> None:
    """``hook-pre-app = exec:CMD`` / ``safeexec:CMD`` and ``exec-pre-app =
    CMD``, run with /bin/sh -c in ``chdir`` before the app is loaded (in
    the master, or in each worker with lazy-apps), as uWSGI's
    uwsgi_init_all_apps: an ``exec`` that exits non-zero means the app
    cannot start (AppLoadError); ``safeexec`` only logs it."""
    hooks = [tuple(h.split(":", 1)) for h in cfg.hook_pre_app] + \
        [("exec", cmd) for cmd in cfg.exec_pre_app]
    for action, cmd in hooks:
        log.info("running \"%s\" (pre app)", cmd)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            code = subprocess.run(["/bin/sh", "-c", cmd], cwd=cfg.chdir or None).returncode
        except OSError as exc:
            raise AppLoadError(f"pre-app command {cmd!r}: {exc.strerror}") from None
        if code != 0:
            if action == "safeexec":
                log.warning("pre-app command \"%s\" exited with code %d", cmd, code)
                continue
            raise AppLoadError(f"pre-app command {cmd!r} exited with code {code}")


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
    cause: str = ""           # why the master stops it, for /metrics (metrics.RESPAWN_CAUSES)


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
    identity: privileges.Identity = field(default_factory=privileges.Identity)  # uid/gid

    def __post_init__(self) -> None:
        self.num_workers = self.cfg.processes
        self.pid = os.getpid()
        self.stopping = False
        self.reload_failed = False
        self._reload_error = ""
        self._queue: List[int] = []
        self._fast_deaths = 0
        self._next_spawn = 0.0
        self._exit_code = EXIT_OK
        self._touch_mtimes: Dict[str, float] = {}
        self._touch_workers: Dict[str, float] = {}  # touch-workers-reload
        self._touch_chain: Dict[str, float] = {}    # touch-chain-reload
        self._chain: List[int] = []  # pids still to replace in a chain reload
        self._rfd = self._wfd = -1
        self._old_kill_at = 0.0  # set once the old generation was told to stop
        self._quick = False
        # What a worker is sent to stop (worker.serve() installs the handlers):
        # SIGHUP retires it (uWSGI's master also uses SIGHUP to make a worker
        # finish gracefully), SIGTERM is a final stop, SIGINT a quick one.
        self._stop_signals = {"retire": signal.SIGHUP, "final": signal.SIGTERM,
                              "quick": signal.SIGINT}
        self._activated_fds: Set[int] = set()  # systemd's sockets: kept on reload, never vacuumed
        self._bound_here: List[Listener] = []   # bound by this exec (not inherited): to chown
        self._final_flag: Optional[mmap.mmap] = None
        self.stats_server: Any = None
        self.metrics_server: Any = None  # metrics-socket (uwsgipy/metrics.py)
        self.queue_sampler: Any = None   # listen_queue_errors (stats.QueueSampler)
        self.tally = Tally()             # harakiri, respawn causes, ended workers' counts
        self.runner = runner_for(self.cfg)  # what runs the app in each worker; its cores

    # ------------------------------------------------------------------
    # start-up
    # ------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.cfg
        reexec = os.environ.pop(ENV_REEXEC, "") == "1"
        if cfg.daemonize and not reexec:
            try:
                privileges.daemonize(cfg.daemonize)
            except OSError as exc:
                log.error("%s", exc.strerror)
                return EXIT_CONFIG
            self.pid = os.getpid()
        set_proctitle(process_title(cfg, "master"))
        problem = self._check_process_options()
        if problem:
            log.error("%s", problem)
            return EXIT_CONFIG
        privileges.apply_process_limits(cfg)  # umask before any socket is bound
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
                    privileges.remove_pidfile(cfg.pidfile)

    _reexecuting = False

    def _check_process_options(self) -> str:
        """What uWSGI refuses at start-up among the master's options ("" when
        fine); also the start-up warnings of options accepted without effect."""
        cfg = self.cfg
        from .log import atoi
        self._cheaper_count = atoi(cfg.cheaper)
        if cfg.cheaper is not None and not cfg.cheaper.strip().lstrip("+-").isdigit():
            log.warning("%s: cheaper = %r is not a number of workers: uWSGI reads it as %d "
                        "(atoi), so does uwsgipy%s", cfg.sources.get("cheaper", "?"),
                        cfg.cheaper, self._cheaper_count,
                        "" if self._cheaper_count else " (adaptive workers off)")
        if self._cheaper_count < 0:
            return f"cheaper ({cfg.cheaper}, {cfg.sources.get('cheaper')}) must be at least 0"
        if self._cheaper_count and self._cheaper_count >= cfg.processes:
            return (f"cheaper ({self._cheaper_count}, {cfg.sources.get('cheaper')}) must be "
                    f"lower than processes ({cfg.processes}): cheaper is the fewest workers, "
                    "processes the most")
        if cfg.max_worker_lifetime and cfg.sources.get("min-worker-lifetime", "default") \
                != "default" and cfg.min_worker_lifetime >= cfg.max_worker_lifetime:
            return (f"min-worker-lifetime ({cfg.min_worker_lifetime}) must be lower than "
                    f"max-worker-lifetime ({cfg.max_worker_lifetime}) "
                    f"({cfg.sources.get('min-worker-lifetime')})")
        if cfg.memory_report:
            log.warning("memory-report (%s): accepted, but the per-request memory line is not "
                        "written", cfg.sources.get("memory-report", "?"))
        return ""

    def _run_bound(self, reexec: bool) -> int:
        cfg = self.cfg
        try:
            for lst in self._bound_here:
                if cfg.chown_socket and lst.unix_path:
                    privileges.chown_socket(lst.unix_path, cfg.chown_socket)
            if cfg.pidfile and not reexec:
                # a reload keeps the pid (and has dropped root: the pidfile's
                # directory may not be writable any more)
                privileges.write_pidfile(cfg.pidfile, self.pid)
        except OSError as exc:
            log.error("%s", exc.strerror)
            return EXIT_CONFIG
        # uwsgipy's own modules are imported before the switch: after it,
        # only the app's files need to be readable by the new user.
        if cfg.gevent:
            from . import gevent_runner  # noqa: F401
        if cfg.stats or cfg.metrics_socket:
            from . import metrics, stats  # noqa: F401
        if cfg.py_autoreload:
            from . import reloader  # noqa: F401
        from . import cheaper, daemons, fifo, static  # noqa: F401 (static: mimetypes too)
        privileges.drop(self.identity)
        from .cli import early_monkey_patch
        early_monkey_patch(cfg, master=True)  # before any app code, as uWSGI's preinit_apps
        old = os.environ.pop(ENV_OLD_WORKERS, "")
        self.old_pids = {int(p) for p in old.split(",") if p}
        if not cfg.lazy_apps:
            from .cli import load_configured_app, report_app_error
            try:
                run_pre_app_hooks(cfg)
                self.app = load_configured_app(cfg)
            except AppLoadError as exc:
                report_app_error(exc)
                if self.old_pids:
                    log.error("reload failed: %s; the %d old worker(s) go on serving the old "
                              "code: fix the app and send SIGHUP again", exc, len(self.old_pids))
                    self.reload_failed = True
                    self._reload_error = str(exc)
                else:
                    return EXIT_APP_LOAD
            # ASGI or WSGI is known now: the runner's cores size the scoreboard
            self.runner = runner_for(cfg, self.app)
        else:
            from .cli import prepare_path
            prepare_path(cfg.chdir, cfg.pythonpath)
        self._worker_cap = self._max_workers()
        self._setup_cheaper()
        # Twice the blocks: a recycled worker finishing its requests and its
        # replacement each have their own.
        self.scoreboard = Scoreboard(2 * self._worker_cap, self.runner.cores)
        # One shared byte, set when the master orders a final stop: lets a
        # worker tell the master's SIGTERM from anyone else's (_final_stop_ordered).
        self._final_flag = mmap.mmap(-1, 1, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self._install_signals()
        if cfg.master_fifo:
            from .fifo import MasterFifo
            self.fifo = MasterFifo(cfg.master_fifo)
            try:
                self.fifo.open()
            except OSError as exc:
                log.error("%s", exc.strerror)
                return EXIT_CONFIG
        if cfg.stats:
            from .stats import start_stats_server
            try:
                self.stats_server = start_stats_server(cfg.stats, self, http=cfg.stats_http)
            except OSError as exc:
                log.error("stats %s: %s", cfg.stats, exc)
                return EXIT_BIND
        if cfg.metrics_socket:
            from .stats import start_metrics_server
            try:
                self.metrics_server = start_metrics_server(cfg.metrics_socket, self)
            except OSError as exc:
                log.error("metrics-socket %s: %s", cfg.metrics_socket, exc)
                return EXIT_BIND
        for path in cfg.touch_reload:
            self._touch_mtimes[path] = self._mtime(path)
        for path in cfg.touch_workers_reload:
            self._touch_workers[path] = self._mtime(path)
        for path in cfg.touch_chain_reload:
            self._touch_chain[path] = self._mtime(path)
        if self.reload_failed:
            log.info("master %d: not reloaded; serving on with the %d old worker(s)", self.pid,
                     len(self.old_pids))
        else:
            # With lazy-apps the new code is only loaded by the new workers;
            # retire_old_generation logs "reload: new workers serving" once
            # they do, _reap "reload failed" if they cannot load it.
            done = "re-executed (the new workers load the app), " if cfg.lazy_apps else "reloaded, "
            log.info("master %d: %s%d worker(s) x %s%s", self.pid,
                     done if reexec else "", self.num_workers, self.runner.describe(),
                     ", lazy-apps" if cfg.lazy_apps else "")
            self.manage_workers()
        self._start_daemons()
        if not reexec:
            log.info("ready (pid %d)", self.pid)
        status = f"reload failed: {self._reload_error}" if self.reload_failed else "serving"
        systemd.notify(f"READY=1\nMAINPID={self.pid}\nSTATUS={status}")
        try:
            self._loop()
        finally:
            systemd.notify("STOPPING=1")
            if self.daemons:
                self.daemons.stop_all(float(cfg.reload_mercy))
            if self.fifo is not None and not self._reexecuting:
                self.fifo.close(unlink=cfg.vacuum)
            self._stop_stats_servers()
        return self._exit_code

    def _stop_stats_servers(self) -> None:
        for server in (self.stats_server, self.metrics_server):
            if server is not None:
                server.shutdown()
                server.server_close()
        if self.queue_sampler is not None:
            self.queue_sampler.stop()

    daemons: Any = None
    _cheaper_count = 0         # cheaper, read with atoi as uWSGI
    fifo: Any = None           # master-fifo (uwsgipy/fifo.py)
    _cheap_mode = False        # the fifo's 'C': no worker until a connection arrives
    _cheap_saved = 0
    _fifo_checked = 0.0

    def _start_daemons(self) -> None:
        """attach-daemon and its family (uwsgipy/daemons.py), started once
        the workers are forked, after the privileges are dropped (as in
        uWSGI)."""
        from .daemons import Supervisor, parse_daemon
        cfg = self.cfg
        specs = [parse_daemon(option, value)
                 for option in ("attach-daemon", "attach-control-daemon", "smart-attach-daemon",
                                "smart-attach-daemon2", "attach-daemon2")
                 for value in getattr(cfg, option.replace("-", "_"))]
        self.daemons = Supervisor(specs, block_signals=self.SIGNALS,
                                  on_control_exit=self.handle_term)
        if self.daemons:
            self.daemons.start_all()

    def _setup_cheaper(self) -> None:
        """cheaper: start cheaper-initial workers and let the algorithm
        (uwsgipy/cheaper.py) move the count within [cheaper, processes]."""
        cfg = self.cfg
        self._cheaper: Any = None
        count = self._cheaper_count
        if not count:
            return
        from . import cheaper as _cheaper
        initial = cfg.cheaper_initial or count
        if initial < count:
            log.warning("cheaper-initial %d is lower than cheaper %d: starting %d workers",
                        initial, count, count)
            initial = count
        elif initial > cfg.processes:
            log.warning("cheaper-initial %d is higher than processes %d: starting %d workers",
                        initial, cfg.processes, cfg.processes)
            initial = cfg.processes
        name = cfg.cheaper_algo
        if name not in _cheaper.ALGORITHMS:
            log.warning("cheaper-algo %r (%s) is not known: falling back to spare (uWSGI does "
                        "the same); known: %s", name, cfg.sources.get("cheaper-algo", "?"),
                        ", ".join(sorted(_cheaper.ALGORITHMS)))
            name = "spare"
        params = _cheaper.Params(
            cheaper=count, processes=cfg.processes, initial=initial,
            step=cfg.cheaper_step, overload=cfg.cheaper_overload,
            busyness_max=cfg.cheaper_busyness_max, busyness_min=cfg.cheaper_busyness_min,
            busyness_multiplier=cfg.cheaper_busyness_multiplier,
            busyness_penalty=cfg.cheaper_busyness_penalty,
            backlog_alert=cfg.cheaper_busyness_backlog_alert,
            backlog_multiplier=cfg.cheaper_busyness_backlog_multiplier,
            backlog_step=cfg.cheaper_busyness_backlog_step,
            backlog_nonzero=cfg.cheaper_busyness_backlog_nonzero,
            verbose=cfg.cheaper_busyness_verbose)
        self._cheaper = _cheaper.make_algorithm(name, params)
        self._cheaper_checked = time.monotonic()
        self.num_workers = initial
        log.info("cheaper (%s): %d worker(s) to start, between %d and %d", name, initial,
                 count, cfg.processes)

    def adapt_workers(self) -> None:
        """Once a second (uWSGI's master cycle), the cheaper algorithm's
        decision from the scoreboard: more workers (forked by
        manage_workers), or retire the oldest idle one gracefully (SIGHUP:
        it finishes its requests).  Not while a reload or a chain reload
        is going on."""
        algo = self._cheaper
        if algo is None or self.stopping or self.old_pids or self.reload_failed or self._chain \
                or self._cheap_mode:
            return
        now = time.monotonic()
        if now - self._cheaper_checked < 1.0:
            return
        self._cheaper_checked = now
        from .cheaper import Sample, WorkerSample, listen_queue
        active = sorted(self._active(), key=lambda w: w.spawned)
        assert self.scoreboard is not None
        samples = []
        for w in active:
            cores = list(self.scoreboard.cores(w.slot))
            busy = any(c.request_started and c.pid == w.pid for c in cores)
            samples.append(WorkerSample(w.pid, busy, sum(c.running_us for c in cores)))
        sample = Sample(now, samples, sum(listen_queue(lst.sock) for lst in self.listeners))
        decision = algo.decide(sample)
        if algo.p.verbose:
            for note in algo.notes:
                log.info("cheaper (%s): %s", algo.name, note)
        algo.notes.clear()
        if decision > 0:
            wanted = min(self.cfg.processes, len(active) + decision)
            if wanted > self.num_workers:
                log.info("cheaper (%s): busy %d of %d worker(s), backlog %d: %d worker(s)",
                         algo.name, sample.busy, sample.active, sample.backlog, wanted)
                self.num_workers = wanted
        elif decision < 0:
            by_pid = {w.pid: w for w in active}
            idle = [by_pid[ws.key] for ws in samples if not ws.busy and self._ready(by_pid[ws.key])]
            if idle:
                w = idle[0]  # the oldest idle worker, as uWSGI
                self.num_workers = len(active) - 1
                log.info("worker %d (pid %d) cheaped: busy %d of %d worker(s), backlog %d: %d "
                         "worker(s)", w.wid, w.pid, sample.busy, sample.active, sample.backlog,
                         self.num_workers)
                self._stop_worker(w, "retire")

    def _max_workers(self) -> int:
        # TTIN may add workers: leave room in the shared scoreboard.
        return max(self.num_workers * 2, self.num_workers + 8)

    def _open_listeners(self) -> None:
        cfg = self.cfg
        wanted = configured_addresses(cfg)
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
                lst = bind_listener(kind, address, **listener_options(cfg))
                self.listeners.append(lst)
                self._bound_here.append(lst)
        for lst in inherited:
            if carried and lst.sock.fileno() not in activated:
                lst.sock.close()  # an address no longer configured
            else:
                log.info("socket activation: fd %d (%s) serves the %s protocol",
                         lst.sock.fileno(), lst.bound, lst.proto_name(cfg))
                self.listeners.append(lst)
        if not self.listeners:
            raise ValueError("no listener configured")
        for lst in self.listeners:
            if lst.sock.fileno() in activated:
                # systemd owns these: a final stop never shuts them (item 6),
                # so connections queue in them while uwsgipy restarts
                lst.systemd = True  # type: ignore[attr-defined]
            log.info("listening on %s %s (fd %d)%s", lst.kind, lst.bound, lst.sock.fileno(),
                     lst.proto_note(cfg))

    # ------------------------------------------------------------------
    # signals: handlers only queue
    # ------------------------------------------------------------------

    SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
               signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGCHLD)

    def _install_signals(self) -> None:
        if self.cfg.gevent_early_monkey_patch:
            from .gevent_runner import master_owns_sigchld
            master_owns_sigchld()
        self._rfd, self._wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wfd, warn_on_full_buffer=False)
        for sig in self.SIGNALS:
            signal.signal(sig, self._queue_signal)

    def _queue_signal(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGCHLD and len(self._queue) < 16:
            self._queue.append(signum)

    def _wait(self, timeout: float) -> None:
        fds = [self._rfd]
        if self.fifo is not None and self.fifo.fileno() >= 0:
            fds.append(self.fifo.fileno())
        if self._cheap_mode:
            fds.extend(lst.sock.fileno() for lst in self.listeners)
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        if self._rfd in ready:
            try:
                while os.read(self._rfd, 256):
                    pass
            except BlockingIOError:
                pass
        if self.fifo is not None and self.fifo.fileno() in ready:
            for ch in self.fifo.read():
                if len(self._queue) < 64:
                    self._queue.append(ch)  # type: ignore[arg-type]
        if self._cheap_mode and any(lst.sock.fileno() in ready for lst in self.listeners):
            self._cheap_mode = False
            self.num_workers = self._cheap_saved
            log.info("a connection is waiting: leaving cheap mode, %d worker(s)",
                     self.num_workers)

    # ------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            while self._queue:
                signum = self._queue.pop(0)
                if isinstance(signum, str):
                    self.handle_fifo(signum)
                    continue
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
            self.advance_chain()
            if self.daemons:
                self.daemons.check()
            self.check_idle()
            if self.fifo is not None and time.monotonic() - self._fifo_checked >= 1.0:
                self._fifo_checked = time.monotonic()
                self.fifo.check()
            if self.reload_failed and not self.workers and not self.old_pids:
                log.error("no worker left after a failed reload: stopping")
                self._exit_code = EXIT_APP_LOAD
                return
            if not self.reload_failed and not self.stopping:  # check_idle may stop
                self.adapt_workers()
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
            self._stop_worker(w, "retire")
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
        if cfg.gevent_early_monkey_patch:
            from .gevent_runner import worker_forked
            worker_forked()  # patch_all()'s os.fork, waitpid and signal.signal again
        _die_with_parent(self.pid)
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGTTIN, signal.SIG_IGN)
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, lambda s, f: reopen_logs())
        signal.set_wakeup_fd(-1)
        os.close(self._rfd)
        os.close(self._wfd)
        if self.fifo is not None:
            self.fifo.close_fds()
        for server in (self.stats_server, self.metrics_server):
            if server is not None:
                server.socket.close()
        set_proctitle(process_title(cfg, "worker", wid))
        set_role(f"worker {wid}")
        from . import uwsgi_api
        uwsgi_api.worker_forked(wid)  # worker_id() and the postfork hooks, once per process
        app = self.app
        runner = self.runner
        from .cli import load_configured_app, report_app_error
        if app is None:
            try:
                run_pre_app_hooks(cfg)
                app = load_configured_app(cfg)
            except AppLoadError as exc:
                report_app_error(exc)
                return EXIT_APP_LOAD
            runner = runner_for(cfg, app)  # lazy-apps: ASGI is decided by the loaded app
            if runner != self.runner:  # the master's line could not know (lazy-apps)
                log.info("%s (the app loaded here is ASGI)", runner.describe())
        assert self.scoreboard is not None
        from .worker import make_server, serve
        max_requests = cfg.max_requests + (wid * cfg.max_requests_delta if cfg.max_requests else 0)
        server = make_server(app, self.listeners, cfg, multiprocess=True,
                             scoreboard=self.scoreboard.worker_view(slot),
                             max_requests=max_requests, worker_id=wid)
        if cfg.py_autoreload and wid == 1:
            from .reloader import start_autoreloader
            start_autoreloader(cfg.py_autoreload, self.pid)
        # SIGTERM: final stop; SIGHUP: retire (the master's reload, TTOU,
        # recycling); SIGINT/SIGQUIT: quick stop.  Blocked until serve() has
        # its handlers, so a stop sent during start-up is never lost.
        try:
            serve(server, runner, mercy=float(cfg.worker_reload_mercy),
                  quick_signals=(signal.SIGINT, signal.SIGQUIT),
                  retire_signals=(self._stop_signals["retire"],),
                  final_stop=self._final_stop_ordered,
                  on_ready=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, mask),
                  drain=float(cfg.readiness_drain) if cfg.readiness_path else 0.0,
                  app=app, cfg=cfg)
        except AppLoadError as exc:
            # an ASGI app's lifespan startup failed: before the C loop opened, so the worker
            # never reported ready and exit code 4 stops the master, as a failed import
            report_app_error(exc, what=f"worker {wid}: the app's lifespan startup failed")
            return EXIT_APP_LOAD
        if server.stop_reason:
            log.info("worker %d (pid %d): %s after %d requests: recycling", wid, os.getpid(),
                     server.stop_reason, server.requests)
        return EXIT_OK

    def _final_stop_ordered(self) -> bool:
        """In a worker, on SIGTERM: is it a final stop (shut the listeners)?
        Only when the master asked for one (its flag in shared memory, set
        before it signals) or is gone (PR_SET_PDEATHSIG); a SIGTERM from
        anyone else retires the worker (worker.serve's final_stop)."""
        flag = self._final_flag
        return bool(flag is not None and flag[0]) or os.getppid() != self.pid

    def _stop_worker(self, w: WorkerInfo, how: str, mercy: Optional[float] = None) -> None:
        """Tell a worker to stop.  how: "retire" (finish in-flight requests
        and exit; the listeners stay open for the workers that go on),
        "final" (also serve the listen backlog, then shut the listeners:
        the whole server is stopping) or "quick" (exit at once)."""
        if mercy is None:
            mercy = float(self.cfg.worker_reload_mercy)
        w.stopping = True
        w.kill_at = time.monotonic() + (5.0 if how == "quick" else mercy)
        self._kill(w.pid, self._stop_signals[how])

    def reap_workers(self) -> None:
        """waitpid every exited child; log how it died."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if self.daemons and self.daemons.reaped(pid, status):
                continue
            if pid in self.old_pids:
                self.old_pids.discard(pid)
                log.info("old worker (pid %d) %s", pid, describe_status(status))
                continue
            # one step for a scrape (metrics.render holds the same lock): the worker leaves
            # the table as its counts join the totals, so no scrape sees them in neither
            with self.tally.lock:
                w = self.workers.pop(pid, None)
                if w is not None:
                    self.tally.worker_ended(self, w, status, w.cause)
            if w is None:
                continue
            self._reap(w, status)
        self._forget_lost_old_workers()

    def _forget_lost_old_workers(self) -> None:
        """An old worker whose exit this master can no longer wait for (its status was taken
        by another waitpid in this process, e.g. by gevent's child watcher in a monkey-patched
        master) is gone: forget it, or a final stop would wait for it forever."""
        for pid in list(self.old_pids):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)  # (0, 0) while it runs
            except ChildProcessError:
                self.old_pids.discard(pid)
                log.warning("old worker (pid %d) is gone; its exit status was not seen", pid)
                continue
            if done:  # it exited since the waitpid(-1) loop
                self.old_pids.discard(pid)
                log.info("old worker (pid %d) %s", pid, describe_status(status))

    def _ready(self, w: WorkerInfo) -> bool:
        """Has the worker reported ready?  Its C loop writes its pid into its
        scoreboard slots when it starts serving, after the app is loaded
        (lazy-apps) and the listeners are set up."""
        if not w.ready and self.scoreboard is not None:
            w.ready = any(core.pid == w.pid for core in self.scoreboard.cores(w.slot))
        return w.ready

    def _reap(self, w: WorkerInfo, status: int) -> None:
        """Log how a worker ended and decide what follows.

        Exit code 4 (EXIT_APP_LOAD) before the worker reported ready means
        the app cannot be loaded: stop (or, during a reload, keep the old
        workers).  After ready it is a crash like any other (an app calling
        os._exit(4) in a request): respawn at once.  The start-up back-off
        counts only deaths before ready, so crashing requests never leave
        the service without a worker."""
        lived = time.monotonic() - w.spawned
        ready = self._ready(w)
        how = describe_status(status, ready)
        expected = w.stopping or self.stopping
        clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if not ready and os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_APP_LOAD \
                and not self.stopping:
            log.error("worker %d (pid %d) %s", w.wid, w.pid, how)
            if self.old_pids or self.reload_failed:
                if not self.reload_failed:
                    log.error("reload failed: the new workers cannot load the app (their error "
                              "is above); the old workers go on serving the old code: fix the "
                              "app and send SIGHUP again")
                self.reload_failed = True
                self._reload_error = "the new workers cannot load the app"
            else:
                log.error("the app failed to load in worker %d: stopping", w.wid)
                self._exit_code = EXIT_APP_LOAD
                self._quick_stop("the app failed to load")
            return
        if expected or clean:
            log.info("worker %d (pid %d) %s", w.wid, w.pid, how)
        elif ready:
            log.error("worker %d (pid %d) %s after %.1fs: respawning", w.wid, w.pid, how, lived)
        else:
            self._fast_deaths += 1
            if self._fast_deaths < BACKOFF_AFTER:
                log.error("worker %d (pid %d) %s before it was ready (%.1fs): respawning",
                          w.wid, w.pid, how, lived)
            else:
                delay = min(BACKOFF_MAX, 2.0 ** (self._fast_deaths - BACKOFF_AFTER))
                self._next_spawn = time.monotonic() + delay
                log.error("worker %d (pid %d) %s before it was ready (%.1fs)", w.wid, w.pid,
                          how, lived)
                log.error("workers die at start-up (%d in a row): next respawn in %.0fs",
                          self._fast_deaths, delay)
        if ready:
            # it got past start-up: whatever ended it, the next one starts now
            self._fast_deaths = 0
            self._next_spawn = 0.0

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
            self._ready(w)
            cores = list(self.scoreboard.cores(w.slot))
            for index, core in enumerate(cores):
                started = core.request_started
                if harakiri and started and now - started > harakiri and core.pid == w.pid:
                    # uWSGI's harakiri kills the whole worker, whichever core is stuck: a
                    # thread (or a greenlet that stopped yielding) cannot be killed alone.
                    log.error("harakiri: worker %d (pid %d) killed after %.1fs on %s %s "
                              "(harakiri %ds); core %d of %d", w.wid, w.pid, now - started,
                              core.method.decode("latin-1"), core.uri.decode("latin-1"), harakiri,
                              index, len(cores))
                    if self.cfg.harakiri_verbose:
                        log.error("harakiri: worker %d (pid %d): %s", w.wid, w.pid,
                                  _kernel_activity(w.pid))
                    core.request_started = 0.0
                    w.stopping = True  # replaced at once; reaped later
                    w.cause = "harakiri"
                    self.tally.harakiri_kill(w.wid)
                    self._kill(w.pid, signal.SIGKILL)
                    break

    def recycle_workers(self) -> None:
        """max-worker-lifetime: replace old workers gracefully (the
        replacement is forked before the old one finishes)."""
        self.check_worker_memory()
        lifetime = self.cfg.max_worker_lifetime
        if not lifetime:
            return
        now = time.monotonic()
        for w in self._active():
            allowed = lifetime + (w.wid - 1) * self.cfg.max_worker_lifetime_delta
            if now - w.spawned > allowed:
                log.info("worker %d (pid %d): max-worker-lifetime %ds reached: recycling",
                         w.wid, w.pid, allowed)
                w.cause = "max-worker-lifetime"
                self._stop_worker(w, "retire")

    _memory_checked = 0.0

    def check_worker_memory(self) -> None:
        """reload-on-as (retire gracefully, once the worker is older than
        min-worker-lifetime) and evil-reload-on-rss (SIGKILL), from
        /proc/PID/statm, once a second (uWSGI's master cycle)."""
        cfg = self.cfg
        if not cfg.reload_on_as and not cfg.evil_reload_on_rss:
            return
        now = time.monotonic()
        if now - self._memory_checked < 1.0:
            return
        self._memory_checked = now
        for w in self._active():
            vsz, rss = _proc_memory(w.pid)
            if cfg.evil_reload_on_rss and rss >= cfg.evil_reload_on_rss << 20:
                log.error("worker %d (pid %d): resident memory %d MB >= evil-reload-on-rss %d "
                          "MB: SIGKILL", w.wid, w.pid, rss >> 20, cfg.evil_reload_on_rss)
                w.stopping = True  # replaced at once; reaped later
                w.cause = "evil-reload-on-rss"
                self._kill(w.pid, signal.SIGKILL)
            elif cfg.reload_on_as and vsz >= cfg.reload_on_as << 20 \
                    and now - w.spawned >= cfg.min_worker_lifetime:
                log.info("worker %d (pid %d): address space %d MB >= reload-on-as %d MB: "
                         "recycling", w.wid, w.pid, vsz >> 20, cfg.reload_on_as)
                w.cause = "reload-on-as"
                self._stop_worker(w, "retire")

    def retire_old_generation(self) -> None:
        """After a reload: once every new worker serves, the old ones are
        told to finish their requests and exit."""
        if not self.old_pids or self.reload_failed or self._old_kill_at:
            return
        active = self._active()
        if len(active) < self.num_workers or not all(w.ready for w in active):
            return
        for pid in list(self.old_pids):
            if not self._kill(pid, self._stop_signals["retire"]):
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
        for option, files, action in (("touch-reload", self._touch_mtimes, self.handle_hup),
                                      ("touch-workers-reload", self._touch_workers,
                                       self.reload_workers),
                                      ("touch-chain-reload", self._touch_chain,
                                       self.chain_reload)):
            for path, seen in files.items():
                now = self._mtime(path)
                if now != seen:
                    files[path] = now
                    log.info("%s: %s changed", option, path)
                    action()
                    return

    def reload_workers(self) -> None:
        """Replace every worker, the master staying (touch-workers-reload,
        the fifo's 'w'): each old worker finishes its requests while its
        replacement, forked at once, serves."""
        if self.stopping:
            return
        active = self._active()
        log.info("reloading the %d worker(s) (the master stays)", len(active))
        self._chain = []
        for w in active:
            self._stop_worker(w, "retire")

    def chain_reload(self) -> None:
        """Replace the workers one at a time (touch-chain-reload, the
        fifo's 'c'): the next is retired once the previous replacement
        serves (advance_chain)."""
        if self.stopping:
            return
        self._chain = [w.pid for w in sorted(self._active(), key=lambda w: w.wid)]
        log.info("chain reload: replacing %d worker(s) one at a time", len(self._chain))

    def advance_chain(self) -> None:
        if not self._chain:
            return
        active = self._active()
        if len(active) < self.num_workers or not all(self._ready(w) for w in active):
            return  # the last replacement is not serving yet
        while self._chain:
            w = self.workers.get(self._chain.pop(0))
            if w is not None and not w.stopping:
                log.info("chain reload: worker %d (pid %d) retiring", w.wid, w.pid)
                self._stop_worker(w, "retire")
                return
        log.info("chain reload: done")

    # ------------------------------------------------------------------
    # signal handlers (called from the loop, never from signal context)
    # ------------------------------------------------------------------

    def handle_term(self) -> None:
        if self.stopping:
            return
        mercy = float(self.cfg.reload_mercy)
        log.info("SIGTERM: graceful stop (workers serve the requests already received, "
                 "at most %.0fs)", mercy)
        self.stopping = True
        if self._final_flag is not None:
            self._final_flag[0] = 1  # before the signals: workers read it in their handler
        for w in self.workers.values():
            if w.stopping:
                # already retiring (SIGTTOU, recycling): it finishes its
                # requests; the others serve the backlog and shut the listeners
                deadline = time.monotonic() + mercy
                w.kill_at = min(w.kill_at, deadline) if w.kill_at else deadline
                continue
            self._stop_worker(w, "final", mercy=mercy)
        for pid in self.old_pids:
            # the previous generation, already retiring after a reload
            self._kill(pid, self._stop_signals["final"])

    def handle_int(self) -> None:
        self._quick_stop("SIGINT")

    def handle_quit(self) -> None:
        self._quick_stop("SIGQUIT")

    def _quick_stop(self, why: str) -> None:
        """SIGINT, SIGQUIT (as uWSGI and gunicorn), or an app that cannot
        load: every worker exits at once, requests in flight are dropped."""
        if self._quick:
            return
        log.info("%s: quick stop (workers exit at once; requests in flight are dropped)", why)
        self._quick = True
        self.stopping = True
        for w in self.workers.values():
            self._stop_worker(w, "quick")
        for pid in self.old_pids:
            self._kill(pid, self._stop_signals["quick"])

    def handle_hup(self, brutal: bool = False) -> None:
        """Graceful reload by re-executing the master with the listeners
        and the current workers' pids in the environment.  brutal (the
        fifo's 'R'): the workers are told to stop at once first."""
        if self.stopping:
            return
        problem = self._check_new_config()
        if problem:
            log.error("reload failed: %s; nothing changed, the workers go on serving: fix the "
                      "configuration and send SIGHUP again", problem)
            systemd.notify(f"STATUS=reload failed: {problem}")
            return
        log.info("%s reload: re-executing the master (pid %d stays)",
                 "brutal" if brutal else "graceful", self.pid)
        if brutal:
            for w in self.workers.values():
                self._stop_worker(w, "quick")
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
        self._stop_stats_servers()
        if self.daemons:
            self.daemons.stop_all(float(self.cfg.reload_mercy), reloading=True)
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
            signal.set_wakeup_fd(self._wfd, warn_on_full_buffer=False)
            if self.daemons:
                self.daemons.stopping = False  # respawned by the next check

    def _check_new_config(self) -> str:
        """Read the configuration the re-executed master would read (ini
        files fresh from disk) and check it; "" when fine, else the one-line
        error.  A broken config must not end the master: its exit would take
        the workers (and the listeners) with it."""
        from . import config as _config
        from .cli import check_config
        try:
            check_config(_config.load(self.argv, os.environ, out=lambda _: None))
        except _config.ConfigError as exc:
            return str(exc)
        except SystemExit:  # argparse: the command line itself is unchanged, so not expected
            return "the command line does not parse any more"
        return ""

    FIFO_COMMANDS = {
        "r": "graceful reload", "R": "brutal reload", "q": "graceful stop",
        "Q": "quick stop", "w": "graceful reload of the workers",
        "W": "brutal reload of the workers", "c": "chain reload", "C": "go cheap",
        "+": "one more worker", "-": "one fewer worker", "l": "reopen the logs",
        "L": "rotate the logs", "s": "status", "f": "re-execute the master",
        "P": "write the pidfile"}

    def handle_fifo(self, ch: str) -> None:
        """One master-fifo command (uwsgipy/fifo.py has the table)."""
        if ch.isspace():
            return
        if ch.isdigit():
            self.fifo.switch(int(ch))
            return
        what = self.FIFO_COMMANDS.get(ch)
        if what is None:
            log.warning("master-fifo: command %r is not supported (known: %s)", ch,
                        "".join(self.FIFO_COMMANDS) + "0-9")
            return
        log.info("master-fifo: '%s' (%s)", ch, what)
        if ch in "rf":
            self.handle_hup()
        elif ch == "R":
            self.handle_hup(brutal=True)
        elif ch == "q":
            self.handle_term()
        elif ch == "Q":
            self._quick_stop("master-fifo Q")
        elif ch == "w":
            self.reload_workers()
        elif ch == "W":
            for w in self._active():
                self._stop_worker(w, "quick")
        elif ch == "c":
            self.chain_reload()
        elif ch == "C":
            self.go_cheap()
        elif ch == "+":
            self.handle_ttin()
        elif ch == "-":
            self.handle_ttou()
        elif ch == "l":
            self.handle_usr1()
        elif ch == "L":
            log.warning("master-fifo L: uwsgipy rotates with log-maxsize or logrotate; the log "
                        "files are reopened")
            self.handle_usr1()
        elif ch == "s":
            self.log_status()
        elif ch == "P":
            if self.cfg.pidfile:
                try:
                    privileges.write_pidfile(self.cfg.pidfile, self.pid)
                except OSError as exc:
                    log.error("master-fifo P: %s", exc.strerror)
            else:
                log.warning("master-fifo P: no pidfile configured")

    _idle_since = 0.0
    _idle_seen: Any = None

    def check_idle(self) -> None:
        """``idle = N``: after N s with no request started or finished (no
        worker busy, the request counters unchanged), go cheap (every worker
        stops; the next connection brings them back) or, with
        ``die-on-idle``, stop, as uWSGI's uwsgi_master_check_idle."""
        idle = self.cfg.idle
        if not idle or self._cheap_mode or self.stopping or self.scoreboard is None:
            return
        now = time.monotonic()
        seen = []
        for w in self.workers.values():
            for c in self.scoreboard.cores(w.slot):
                if c.request_started and c.pid == w.pid:
                    self._idle_since = now
                    return
                seen.append((w.pid, c.requests))
        seen.sort()
        if seen != self._idle_seen or not self._idle_since:
            self._idle_seen = seen
            self._idle_since = now
            return
        if now - self._idle_since > idle:
            log.info("workers have been inactive for more than %d seconds", idle)
            self._idle_since = 0.0
            if self.cfg.die_on_idle:
                self._quick_stop("die-on-idle")
            else:
                self.go_cheap()

    def go_cheap(self) -> None:
        """The fifo's 'C' (uWSGI's uwsgi_go_cheap): stop every worker at
        once; the master forks them again when a connection waits on a
        listener (in the kernel's queue meanwhile)."""
        if self._cheap_mode or self.stopping:
            return
        self._cheap_saved = self.num_workers
        for w in self._active():
            self._stop_worker(w, "quick")
        self.num_workers = 0
        self._cheap_mode = True
        log.info("cheap mode: no worker until a connection arrives")

    def log_status(self) -> None:
        """The fifo's 's': one line for the master, one per worker."""
        log.info("status: master %d, %d worker(s) wanted, %d running, %d old, up %.0fs",
                 self.pid, self.num_workers, len(self.workers), len(self.old_pids),
                 time.time() - self.started)
        now = time.monotonic()
        for w in sorted(self.workers.values(), key=lambda w: w.wid):
            cores = list(self.scoreboard.cores(w.slot)) if self.scoreboard is not None else []
            busy = sum(1 for c in cores if c.request_started and c.pid == w.pid)
            log.info("status: worker %d (pid %d) %s, %d request(s), busy %d of %d core(s), "
                     "up %.0fs", w.wid, w.pid, "stopping" if w.stopping else "serving"
                     if w.ready else "starting", sum(c.requests for c in cores), busy,
                     len(cores), now - w.spawned)

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
