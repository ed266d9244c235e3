"""Attached daemons: commands the master runs and supervises (uWSGI's
``attach-daemon`` family; containers use it to run Celery beside the web
workers).

=======================  ==================================================
attach-daemon = CMD      run CMD (``/bin/sh -c CMD``); it must stay in the
                         foreground.  Respawned when it exits; stopped
                         with the master and around a graceful reload.
attach-control-daemon    as attach-daemon; when it exits the master stops
                         gracefully (uWSGI's "control" daemon).
smart-attach-daemon =    CMD daemonizes itself and writes PIDFILE; the
  PIDFILE[,FREQ] CMD     master adopts a live pid found there at start-up,
                         checks it every second and respawns when the pid
                         is gone.  Left running when the master stops or
                         reloads, as in uWSGI (that is what the pidfile is
                         for).
smart-attach-daemon2     as smart-attach-daemon for a CMD that stays in the
                         foreground: the master daemonizes it and writes
                         PIDFILE itself.
attach-daemon2 =         uWSGI's key=value form: ``cmd``/``command``/
  key=value,...          ``exec`` (required), ``freq``, ``pidfile``,
                         ``daemonize``, ``control``, ``stopsignal``,
                         ``reloadsignal``, ``touch`` (files, ``;``
                         separated), ``uid``, ``gid``, ``chdir``,
                         ``stdin``, ``max_throttle``, ``notifypid``.
=======================  ==================================================

Every daemon runs in its own session (setsid), so signals go to its whole
process group, as uWSGI sends them; stdin is /dev/null (unless ``stdin``);
stdout and stderr are the master's, i.e. uwsgipy's log.  A daemon without a
pidfile gets SIGKILL when the master dies (PR_SET_PDEATHSIG), as in uWSGI.

Respawn back-off (uWSGI's throttle): a daemon that exits within 3 s of its
start waits (respawns so far - seconds it lived) s, at least 1, at most
``max_throttle`` (default 300) before the next start.

Stopping: ``stopsignal`` (default SIGTERM) to the process group, again
every second, and SIGKILL after ``reload-mercy`` s (3 s when it is 0), as
uWSGI's uwsgi_detach_daemons; around a reload ``reloadsignal`` is used
when given.  ``touch``: a file's modification time changing sends
``stopsignal`` (the daemon is respawned when it exits), as in uWSGI.
"""
from __future__ import annotations

import grp
import logging
import os
import pwd
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

__all__ = ["DaemonSpec", "parse_daemon", "Supervisor"]

log = logging.getLogger("uwsgipy")

_KEYS = {"command": "command", "cmd": "command", "exec": "command", "freq": "freq",
         "pidfile": "pidfile", "control": "control", "daemonize": "daemonize",
         "daemon": "daemonize", "touch": "touch", "stopsignal": "stopsignal",
         "stop_signal": "stopsignal", "reloadsignal": "reloadsignal",
         "reload_signal": "reloadsignal", "stdin": "stdin", "uid": "uid", "gid": "gid",
         "chdir": "chdir", "max_throttle": "max_throttle", "notifypid": "notifypid"}
_UNSUPPORTED_KEYS = ("legion", "ns_pid")


@dataclass
class DaemonSpec:
    """One configured daemon (see the module docstring)."""
    command: str
    option: str = "attach-daemon"
    pidfile: Optional[str] = None
    freq: int = 10
    daemonize: bool = False      # the master daemonizes it and writes pidfile
    control: bool = False
    stopsignal: int = signal.SIGTERM
    reloadsignal: int = 0
    touch: List[str] = field(default_factory=list)
    uid: Optional[int] = None
    gid: Optional[int] = None
    chdir: Optional[str] = None
    stdin: bool = False
    max_throttle: int = 0
    notifypid: bool = False


def _signal_number(value: str, key: str) -> int:
    text = value.strip().upper()
    if text.isdigit():
        num = int(text)
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        try:
            num = int(signal.Signals[name])
        except KeyError:
            raise ValueError(f"{key}={value!r} is not a signal (a number such as 15, or a "
                             "name such as TERM)") from None
    if not 1 <= num < signal.NSIG:
        raise ValueError(f"{key}={value!r} is not a signal number")
    return num


def _id(value: str, key: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return pwd.getpwnam(value).pw_uid if key == "uid" else grp.getgrnam(value).gr_gid
    except KeyError:
        raise ValueError(f"{key}={value!r}: no such {'user' if key == 'uid' else 'group'}") \
            from None


def _int(value: str, key: str) -> int:
    if not value.strip().isdigit():
        raise ValueError(f"{key}={value!r} is not a number")
    return int(value)


def parse_daemon(option: str, value: str) -> DaemonSpec:
    """The DaemonSpec of one ``option = value`` line; ValueError with the
    reason when it is malformed (the config loader adds file and line)."""
    value = value.strip()
    if not value:
        raise ValueError("needs a command")
    if option in ("attach-daemon", "attach-control-daemon"):
        return DaemonSpec(command=value, option=option, control=option == "attach-control-daemon")
    if option in ("smart-attach-daemon", "smart-attach-daemon2"):
        pidfile, _, command = value.partition(" ")
        if not command.strip():
            raise ValueError("expected 'PIDFILE COMMAND' (PIDFILE[,FREQ] then the command)")
        pidfile, _, freq = pidfile.partition(",")
        return DaemonSpec(command=command.strip(), option=option, pidfile=pidfile,
                          freq=_int(freq, "freq") if freq else 10,
                          daemonize=option == "smart-attach-daemon2")
    # attach-daemon2: uWSGI's key=value list, comma separated
    spec: Dict[str, str] = {}
    for item in value.split(","):
        key, eq, val = item.partition("=")
        key = key.strip()
        if key in _UNSUPPORTED_KEYS:
            raise ValueError(f"key {key!r} is not supported by uwsgipy")
        if not eq or key not in _KEYS:
            raise ValueError(f"invalid key=value item {item.strip()!r} (keys: "
                             f"{', '.join(sorted(set(_KEYS)))})")
        spec[_KEYS[key]] = val
    if not spec.get("command", "").strip():
        raise ValueError("needs a 'cmd' (or 'command', 'exec') key")
    d = DaemonSpec(command=spec["command"].strip(), option=option)
    d.pidfile = spec.get("pidfile") or None
    d.freq = _int(spec["freq"], "freq") if "freq" in spec else 10
    d.daemonize = "daemonize" in spec
    d.control = "control" in spec
    d.stdin = "stdin" in spec
    d.notifypid = "notifypid" in spec
    if "stopsignal" in spec:
        d.stopsignal = _signal_number(spec["stopsignal"], "stopsignal")
    if "reloadsignal" in spec:
        d.reloadsignal = _signal_number(spec["reloadsignal"], "reloadsignal")
    d.touch = [t for t in spec.get("touch", "").split(";") if t]
    if "uid" in spec:
        d.uid = _id(spec["uid"], "uid")
    if "gid" in spec:
        d.gid = _id(spec["gid"], "gid")
    d.chdir = spec.get("chdir") or None
    if "max_throttle" in spec:
        d.max_throttle = _int(spec["max_throttle"], "max_throttle")
    if d.daemonize and not d.pidfile:
        raise ValueError("daemonize needs a pidfile")
    return d


def _pidfile_pid(path: str) -> int:
    """The live pid in a pidfile, or 0."""
    try:
        with open(path) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    if pid <= 0:
        return 0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return 0
    except PermissionError:
        pass
    return pid


class _Daemon:
    def __init__(self, spec: DaemonSpec) -> None:
        self.spec = spec
        self.pid = 0               # the process we forked (or adopted from the pidfile)
        self.status = 0            # 0 never started, 1 just started, 2 monitored (pidfile)
        self.respawns = 0
        self.last_spawn = 0.0      # monotonic
        self.next_start = 0.0      # monotonic: back-off
        self.pidfile_checks = 0
        self.has_daemonized = False
        self.touch_mtimes = {p: _mtime(p) for p in spec.touch}

    @property
    def name(self) -> str:
        return self.spec.command


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


class Supervisor:
    """The master's daemons.  ``start_all`` once the master serves,
    ``check`` every loop turn, ``reaped(pid, status)`` from the master's
    waitpid loop (True when the pid was a daemon's), ``stop_all`` when the
    master stops or before it re-executes itself."""

    def __init__(self, specs: List[DaemonSpec], block_signals: tuple = (),
                 on_control_exit: Optional[Callable[[], None]] = None) -> None:
        self.daemons = [_Daemon(s) for s in specs]
        self.block_signals = block_signals
        self.on_control_exit = on_control_exit
        self._checked = 0.0
        self.stopping = False

    def __bool__(self) -> bool:
        return bool(self.daemons)

    # -- start ----------------------------------------------------------------------------
    def start_all(self) -> None:
        for d in self.daemons:
            if d.spec.pidfile:
                pid = _pidfile_pid(d.spec.pidfile)
                if pid:
                    d.pid, d.status = pid, 2
                    log.info("daemon \"%s\": found running with pid %d (%s)", d.name, pid,
                             d.spec.pidfile)
                    continue
            self._spawn(d)

    def _throttle(self, d: _Daemon, now: float) -> float:
        """uWSGI's back-off for a daemon that dies within 3 s of its start."""
        lived = now - d.last_spawn
        if d.respawns == 0 or lived > 3:
            return 0.0
        delay = max(1.0, d.respawns - lived)
        return min(delay, float(d.spec.max_throttle or 300))

    def _spawn(self, d: _Daemon) -> None:
        spec = d.spec
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.block_signals) \
            if self.block_signals else None
        try:
            pid = os.fork()
        except OSError as exc:
            if mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            log.error("daemon \"%s\": cannot fork: %s", d.name, exc.strerror)
            d.next_start = time.monotonic() + 1.0
            return
        if pid == 0:  # pragma: no cover - the child execs
            code = 1
            try:
                self._child(spec)
            except BaseException as exc:  # noqa: BLE001 - report and exit
                try:
                    os.write(2, f"uwsgipy: daemon \"{spec.command}\": {exc}\n".encode())
                except OSError:
                    pass
            finally:
                os._exit(code)
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        d.pid, d.status, d.pidfile_checks, d.has_daemonized = pid, 1, 0, False
        log.info("daemon \"%s\": %sstarted (pid %d)", d.name, "re" if d.respawns else "", pid)
        d.respawns += 1
        d.last_spawn = time.monotonic()

    @staticmethod
    def _child(spec: DaemonSpec) -> None:  # pragma: no cover - runs in the child
        signal.set_wakeup_fd(-1)
        for sig in range(1, signal.NSIG):
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if spec.chdir:
            os.chdir(spec.chdir)
        if spec.gid is not None:
            os.setgid(spec.gid)
            try:
                os.setgroups([])
            except PermissionError:
                pass
        if spec.uid is not None:
            os.setuid(spec.uid)
        if spec.daemonize:
            if os.fork():
                os._exit(0)
            with open(spec.pidfile or "", "w") as f:
                f.write(f"{os.getpid()}\n")
        if not spec.stdin:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        os.setsid()
        if not spec.pidfile:
            try:
                import ctypes
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
            except (OSError, AttributeError):
                pass
        for fd in (0, 1, 2):
            os.set_inheritable(fd, True)
        os.closerange(3, 65536)
        os.execvp("/bin/sh", ["/bin/sh", "-c", spec.command])

    # -- the master's loop ----------------------------------------------------------------
    def reaped(self, pid: int, status: int) -> bool:
        for d in self.daemons:
            if d.pid != pid:
                continue
            from .arbiter import describe_status
            if d.spec.pidfile and d.status == 1 and not d.has_daemonized:
                d.has_daemonized = True  # the launcher exited: the daemon lives on
                return True
            d.pid = 0
            if self.stopping:
                log.info("daemon \"%s\" (pid %d) %s", d.name, pid, describe_status(status))
                return True
            if d.spec.control:
                log.error("control daemon \"%s\" (pid %d) %s: stopping", d.name, pid,
                          describe_status(status))
                if self.on_control_exit is not None:
                    self.on_control_exit()
                return True
            if d.spec.pidfile:
                log.info("daemon \"%s\" (pid %d) %s", d.name, pid, describe_status(status))
                return True  # the pidfile check decides
            now = time.monotonic()
            delay = self._throttle(d, now)
            d.next_start = now + delay
            log.error("daemon \"%s\" (pid %d) %s: respawning%s", d.name, pid,
                      describe_status(status), f" in {delay:.0f}s" if delay else "")
            return True
        return False

    def check(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        for d in self.daemons:
            if not d.spec.pidfile and d.pid == 0 and now >= d.next_start and d.respawns:
                self._spawn(d)
        if now - self._checked < 1.0:
            return
        self._checked = now
        for d in self.daemons:
            for path, seen in d.touch_mtimes.items():
                mtime = _mtime(path)
                if mtime != seen:
                    d.touch_mtimes[path] = mtime
                    if d.pid:
                        log.info("daemon \"%s\" (pid %d): %s touched: restarting", d.name,
                                 d.pid, path)
                        self._signal(d, d.spec.stopsignal)
            if d.spec.pidfile:
                self._check_pidfile(d, now)

    def _check_pidfile(self, d: _Daemon, now: float) -> None:
        pid = _pidfile_pid(d.spec.pidfile or "")
        if pid:
            if pid != d.pid and d.status == 2:
                log.info("daemon \"%s\": pid %d in %s (was %d)", d.name, pid, d.spec.pidfile,
                         d.pid)
            d.pid, d.status = pid, 2
            return
        if now < d.next_start:
            return
        if d.status == 2:
            log.error("daemon \"%s\": no live pid in %s: respawning", d.name, d.spec.pidfile)
            d.next_start = now + self._throttle(d, now)
            if d.next_start <= now:
                self._spawn(d)
            return
        d.pidfile_checks += 1
        if d.pidfile_checks >= d.spec.freq:
            log.error("daemon \"%s\": no live pid in %s after %d checks: respawning", d.name,
                      d.spec.pidfile, d.pidfile_checks)
            self._spawn(d)

    def _signal(self, d: _Daemon, sig: int) -> None:
        try:
            os.killpg(d.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(d.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    # -- stop -----------------------------------------------------------------------------
    def stop_all(self, mercy: float, reloading: bool = False) -> None:
        """Stop the daemons without a pidfile (stopsignal, or reloadsignal
        around a reload, every second; SIGKILL after ``mercy`` s), and
        signal the pidfile ones with notifypid; blocks until they are
        gone, as uWSGI's master does."""
        self.stopping = True
        live = []
        for d in self.daemons:
            if d.spec.pidfile:
                if d.spec.notifypid and d.pid:
                    self._signal(d, (d.spec.reloadsignal or signal.SIGHUP) if reloading
                                 else d.spec.stopsignal)
                continue
            if d.pid:
                log.info("daemon \"%s\" (pid %d): stopping", d.name, d.pid)
                live.append(d)
        deadline = time.monotonic() + (mercy or 3.0)
        next_signal = 0.0
        while live:
            now = time.monotonic()
            if now >= next_signal:
                for d in live:
                    sig = d.spec.reloadsignal if reloading and d.spec.reloadsignal \
                        else d.spec.stopsignal
                    self._signal(d, sig)
                next_signal = now + 1.0
            for d in list(live):
                try:
                    pid, status = os.waitpid(d.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = d.pid, 0
                if pid:
                    from .arbiter import describe_status
                    log.info("daemon \"%s\" (pid %d) %s", d.name, d.pid,
                             describe_status(status))
                    d.pid = 0
                    live.remove(d)
            if live and time.monotonic() >= deadline:
                for d in live:
                    log.error("daemon \"%s\" (pid %d) did not stop in %.0fs: SIGKILL", d.name,
                              d.pid, mercy or 3.0)
                    self._signal(d, signal.SIGKILL)
                    try:
                        os.waitpid(d.pid, 0)
                    except ChildProcessError:
                        pass
                    d.pid = 0
                break
            time.sleep(0.05)
