"""Process plumbing for the master tests (tests/test_master.py).

A real ``python -m uwsgipy --master`` child on 127.0.0.1, its output collected by
background threads, its workers found in the process tree, and a load generator of a few
client threads.  Readiness is polled (never slept for), every loop has a deadline, and only
the master we started and the workers we saw as its children are ever signalled.
"""
from __future__ import annotations

import glob
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from helpers import child_env

__all__ = [
    "REPO", "APPS", "OpsServer", "Reply", "Load", "children_of", "http_get", "poll",
    "record_figure", "FIGURES_PATH", "sd_activate_launcher", "alive",
]

REPO = Path(__file__).resolve().parent.parent
APPS = REPO / "tests" / "apps"
FIGURES_PATH = REPO / "bench" / "results" / "ops-figures.json"

READY_TIMEOUT = 10.0   # "uwsgipy: ready" after start
STOP_TIMEOUT = 10.0    # SIGTERM -> exit before the harness uses SIGKILL
CLIENT_TIMEOUT = 10.0  # per request of the test clients

LISTEN_RE = re.compile(r"uwsgipy: listening on (http-socket|socket|http) (\S+) \(fd (\d+)\)")
READY_RE = re.compile(r"uwsgipy: ready \(pid (\d+)\)")


def poll(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.01):
    """Call pred() until it returns something truthy, and return that; AssertionError naming
    `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ----------------------------------------------------------------------------------------------
# the process tree
# ----------------------------------------------------------------------------------------------

def children_of(pid: int) -> Set[int]:
    """Direct children of pid: /proc/PID/task/*/children (CONFIG_PROC_CHILDREN), or a scan of
    /proc/*/stat for the parent pid when that file does not exist."""
    files = glob.glob(f"/proc/{pid}/task/*/children")
    if files:
        kids: Set[int] = set()
        for name in files:
            try:
                with open(name) as f:
                    kids.update(int(p) for p in f.read().split())
            except (FileNotFoundError, ProcessLookupError):
                pass
        return kids
    kids = set()
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                text = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # the comm field may hold spaces and parentheses: split after the last ')'
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            kids.add(int(text.split(" ", 1)[0]))
    return kids


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return text[text.rfind(")") + 2:].split()[0] != "Z"


def is_uwsgipy(pid: int) -> bool:
    """Guard against pid reuse before signalling a pid we saw earlier."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"uwsgipy" in f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False


# ----------------------------------------------------------------------------------------------
# the server
# ----------------------------------------------------------------------------------------------

class OpsServer:
    """One `python -m uwsgipy` process.  Output lines are kept with their arrival time
    (time.monotonic()) so tests can ask "did X get logged after moment T"."""

    def __init__(self, args: Sequence[str], cwd: Optional[Path] = None, env: Optional[dict] = None,
                 launcher: Optional[Sequence[str]] = None, pass_fds: Sequence[int] = ()):
        self.args = [str(a) for a in args]
        # launcher: a command that ends by exec'ing `python -m uwsgipy ARGS` (socket activation)
        self.cmd = [*(launcher or [sys.executable, "-m", "uwsgipy"]), *self.args]
        self.pass_fds = tuple(pass_fds)
        self.cwd = str(cwd or REPO)
        # the uwsgipy under test: the source tree, or the installed package (helpers.child_env)
        self.env = child_env({"PYTHONUNBUFFERED": "1", **(env or {})})
        self.lines: List[Tuple[float, str]] = []
        self.cond = threading.Condition()
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.listeners: List[Tuple[str, str]] = []
        self.seen_workers: Set[int] = set()
        self._pumps: List[threading.Thread] = []
        self._eof = 0

    # -- output ----------------------------------------------------------------------------------
    def _pump(self, stream) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self.cond:
                    self.lines.append((time.monotonic(), line))
                    self.cond.notify_all()
        finally:
            with self.cond:
                self._eof += 1
                self.cond.notify_all()

    def output(self) -> str:
        with self.cond:
            return "\n".join(line for _, line in self.lines)

    def mark(self) -> int:
        """An index into the output; pass it as `since` to look only at later lines."""
        with self.cond:
            return len(self.lines)

    def find(self, pattern: str, since: int = 0) -> List[re.Match]:
        rx = re.compile(pattern)
        with self.cond:
            return [m for _, line in self.lines[since:] for m in [rx.search(line)] if m]

    def wait_line(self, pattern: str, timeout: float, since: int = 0) -> re.Match:
        """The first line at index >= since matching the regex; polls the output until timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for _, line in self.lines[since:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self._eof >= 2 and self.proc is not None and self.proc.poll() is not None):
                    raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output:\n"
                                         + "\n".join(l for _, l in self.lines[-80:]))
                self.cond.wait(min(left, 0.1))

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, wait_ready: bool = True) -> "OpsServer":
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     pass_fds=self.pass_fds)
        for stream in (self.proc.stdout, self.proc.stderr):
            t = threading.Thread(target=self._pump, args=(stream,), daemon=True)
            t.start()
            self._pumps.append(t)
        if wait_ready:
            m = self.wait_line(READY_RE.pattern, READY_TIMEOUT)
            assert int(m.group(1)) == self.pid, "the ready line names another pid than the master's"
            self.listeners = [(m.group(1), m.group(2)) for m in self.find(LISTEN_RE.pattern)]
            for kind, addr in self.listeners:
                if kind == "http-socket" and ":" in addr and not self.port:
                    self.port = int(addr.rsplit(":", 1)[1])
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def workers(self) -> Set[int]:
        """The master's children right now (its workers; after a reload also the old ones
        still finishing)."""
        kids = {p for p in children_of(self.pid) if alive(p)}
        self.seen_workers |= kids
        return kids

    def wait_workers(self, pred: Callable[[Set[int]], bool], timeout: float, what: str) -> Set[int]:
        def check():
            kids = self.workers()
            return kids if pred(kids) else None
        return poll(check, timeout, what)

    def signal(self, sig: int) -> None:
        assert self.proc is not None and self.proc.poll() is None, "the master is not running"
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> Optional[int]:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for t in self._pumps:
            t.join(timeout=5)
        return rc

    def stop(self) -> Optional[int]:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; then SIGKILL for any worker we saw that
        outlived its master.  Returns the master's exit code."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.workers()
            self.proc.send_signal(signal.SIGTERM)
            rc = self.wait_exit(STOP_TIMEOUT)
            if rc is None:
                self.proc.kill()
                rc = self.proc.wait(timeout=10)
        for pid in sorted(self.seen_workers):
            if alive(pid) and is_uwsgipy(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for t in self._pumps:
            t.join(timeout=5)
        return rc


# What systemd does for socket activation, for a test: the fds named on the command line are
# moved to 3, 4, ... (SD_LISTEN_FDS_START), LISTEN_FDS/LISTEN_PID are set for this very process,
# and it execs `python -m uwsgipy` (exec keeps the pid, so LISTEN_PID stays right).
SD_ACTIVATE = r"""
import fcntl, os, sys
fds = [int(x) for x in sys.argv[1].split(",")]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # out of the way of 3, 4, ... first
for fd in fds:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)                      # dup2 makes the copy inheritable
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "uwsgipy", *sys.argv[2:]])
"""


def sd_activate_launcher(fds: Sequence[int]) -> List[str]:
    """The launcher argument of OpsServer for socket activation of `fds` (also pass them in
    pass_fds)."""
    return [sys.executable, "-c", SD_ACTIVATE, ",".join(str(fd) for fd in fds)]


# ----------------------------------------------------------------------------------------------
# clients
# ----------------------------------------------------------------------------------------------

@dataclass
class Reply:
    started: float            # time.monotonic() before connecting
    ended: float
    status: int = 0           # 0: the request failed (see error)
    doc: Optional[dict] = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def pid(self) -> Optional[int]:
        return self.doc.get("pid") if self.doc else None

    @property
    def version(self) -> Optional[str]:
        return self.doc.get("version") if self.doc else None


def http_get(port: int, path: str = "/", timeout: float = CLIENT_TIMEOUT) -> Reply:
    """One request on a new connection (Connection: close), never raising: a failure is a
    Reply with status 0 and the error's text."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        data = resp.read()
        doc = None
        if resp.getheader("Content-Type", "").startswith("application/json"):
            doc = json.loads(data)
        return Reply(t0, time.monotonic(), resp.status, doc)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Reply(t0, time.monotonic(), 0, None, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


class Load:
    """`clients` threads each sending GET `path` in a loop (one connection per request) until
    stop() or `max_seconds`, recording every Reply.  Use as a context manager."""

    def __init__(self, port: int, clients: int = 4, path: str = "/", max_seconds: float = 30.0):
        self.port = port
        self.path = path
        self.max_seconds = max_seconds
        self.replies: List[Reply] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"load-{i}")
                         for i in range(clients)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            r = http_get(self.port, self.path)
            with self._lock:
                self.replies.append(r)

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=CLIENT_TIMEOUT + 5)

    def snapshot(self) -> List[Reply]:
        with self._lock:
            return list(self.replies)

    def failures(self) -> List[Reply]:
        return [r for r in self.snapshot() if not r.ok]

    def wait_for(self, pred: Callable[[Reply], bool], timeout: float, what: str) -> Reply:
        """The first reply (in arrival order) satisfying pred, polling until timeout."""
        def check():
            for r in self.snapshot():
                if pred(r):
                    return r
            return None
        return poll(check, timeout, what)

    def count_ok(self) -> int:
        return sum(1 for r in self.snapshot() if r.ok)


# ----------------------------------------------------------------------------------------------
# figures for the docs and the lead
# ----------------------------------------------------------------------------------------------

_figures_lock = threading.Lock()


def record_figure(name: str, value, unit: str = "", note: str = "") -> None:
    """Print a measured figure and merge it into bench/results/ops-figures.json."""
    print(f"\n[ops figure] {name} = {value}{(' ' + unit) if unit else ''}{('  (' + note + ')') if note else ''}")
    with _figures_lock:
        FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
        try:
            data: Dict = json.loads(FIGURES_PATH.read_text())
        except (FileNotFoundError, ValueError):
            data = {}
        data.setdefault("figures", {})[name] = {"value": value, "unit": unit, "note": note,
                                                "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
        data["source"] = "python -m pytest tests/test_master.py -q -s"
        data["host"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
        tmp = FIGURES_PATH.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, FIGURES_PATH)


def stop_and_report(request, started) -> None:
    """Teardown of an OpsServer factory fixture: stop each server (SIGTERM, then SIGKILL) and,
    when the test failed, print its output."""
    for srv in started:
        srv.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for srv in started:
            print(f"\n----- output of {' '.join(srv.args)} -----\n{srv.output()[-20000:]}")
