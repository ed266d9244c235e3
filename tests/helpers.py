"""Integration-test plumbing: a real uwsgipy process, raw HTTP and uwsgi clients, real nginx.

Everything here talks to real processes over real sockets on 127.0.0.1 (or unix sockets in a
temporary directory).  Readiness is polled, never slept for; every loop is bounded by a deadline;
only pids started here are signalled.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
APPS = TESTS / "apps"
NGINX_CONF_DIR = REPO / "nginx-conf"

# UWSGIPY_TEST_INSTALLED=1: test the uwsgipy installed in this Python (a wheel in a virtualenv,
# issue 13), never ./uwsgipy.  conftest.py checks at session start that the import agrees.
INSTALLED = os.environ.get("UWSGIPY_TEST_INSTALLED", "") not in ("", "0")

READY_TIMEOUT = 10.0  # seconds for "uwsgipy: ready" to appear
IO_TIMEOUT = 10.0  # per-socket-operation timeout of the test clients
STOP_TIMEOUT = 10.0  # SIGTERM -> exit, before SIGKILL

# the longer kinds first, so that no alternative is a prefix of one after it
LISTEN_RE = re.compile(r"uwsgipy: listening on (http-socket|socket|http|fastcgi-nph-socket|"
                       r"fastcgi-socket|scgi-nph-socket|scgi-socket) (\S+) \(fd (\d+)\)")
READY_RE = re.compile(r"uwsgipy: ready \(pid (\d+)\)")
# 127.0.0.1 "GET /path?q=1 HTTP/1.1" 200 13 0.12ms
ACCESS_RE = re.compile(
    r'(?P<addr>\S+) "(?P<method>\S+) (?P<uri>\S+) (?P<proto>[^"\s]+)" '
    r"(?P<status>\d{3}) (?P<bytes>\d+) (?P<ms>\d+(?:\.\d+)?)ms"
)

Addr = Union[Tuple[str, int], str]  # (host, port) or a unix socket path

# The app runners of one worker (issue 8) and the arguments that select each.  The HTTP, uwsgi,
# nginx and framework suites run every test under each (conftest.py's `runner` fixture appends
# these to the command line of every server those suites start); test ids end with the name.
RUNNERS = {
    "threads1": (),  # the default: the loop thread calls the app inline
    "threads4": ("--threads", "4"),  # the loop hands requests to a pool of 4 app threads
    "gevent8": ("--gevent", "8"),  # the loop driven by gevent's hub, up to 8 greenlets
}
# PEP 3333's wsgi.multithread under each runner (a greenlet is a thread of execution too: uWSGI
# and gunicorn's gevent worker both say True)
RUNNER_MULTITHREAD = {"threads1": False, "threads4": True, "gevent8": True}


# ----------------------------------------------------------------------------------------------
# deterministic payloads
# ----------------------------------------------------------------------------------------------

def pattern_block(i: int) -> bytes:
    """64 KiB block number i of the deterministic download pattern (the apps use the same)."""
    return hashlib.sha256(str(i).encode()).digest() * 2048


def pattern_sha256(nblocks: int) -> str:
    h = hashlib.sha256()
    for i in range(nblocks):
        h.update(pattern_block(i))
    return h.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll pred() until it is truthy; return its value.  Bounded by timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A port that was free a moment ago (for nginx, which cannot report a port-0 bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_tmpdir(prefix: str = "upy") -> str:
    """A short directory for unix sockets (sun_path is limited to 108 bytes)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


# ----------------------------------------------------------------------------------------------
# the environment of a child that imports uwsgipy
# ----------------------------------------------------------------------------------------------

def _is_repo(entry: str) -> bool:
    try:
        return Path(entry).resolve() == REPO
    except OSError:
        return False


def child_env(env: Optional[dict] = None) -> dict:
    """The environment for every child that runs uwsgipy or a Python importing it: os.environ,
    updated with `env`, then PYTHONPATH made to say which uwsgipy the child gets.

    Source mode (the default): the repository first on PYTHONPATH (before what the caller or
    os.environ put there), so the source tree is imported even when the child's cwd or --chdir is
    elsewhere.  Installed mode (UWSGIPY_TEST_INSTALLED=1): the repository is taken off
    PYTHONPATH, and PYTHONSAFEPATH=1 keeps `python -m uwsgipy` and `python -c` from putting the
    cwd (often the repository) first on sys.path (Python >= 3.11); uwsgipy itself adds the cwd for
    the app once it has been imported (uwsgipy/app.py prepare_path), so `--module tests.apps.x`
    still loads."""
    out = dict(os.environ)
    if env:
        out.update(env)
    path = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and not _is_repo(p)]
    if INSTALLED:
        out["PYTHONSAFEPATH"] = "1"
    else:
        path.insert(0, str(REPO))
    if path:
        out["PYTHONPATH"] = os.pathsep.join(path)
    else:
        out.pop("PYTHONPATH", None)
    return out


# ----------------------------------------------------------------------------------------------
# C compilers, for the tests that build C (they skip, with the reason, where there is none)
# ----------------------------------------------------------------------------------------------

_CC_PROBE = "int upy_probe(int x) { return x + 1; }\n"


@functools.lru_cache(maxsize=None)
def compiler_problem(cc: str) -> str:
    """Why the C compiler command `cc` (a name such as "gcc", or a command line such as
    sysconfig's "gcc -pthread" or a $CC of "false") cannot compile here, or "" when it can: it
    must be found and must actually compile a small file (a $CC that names a failing program is
    found, and compiles nothing)."""
    words = shlex.split(cc)
    if not words:
        return "no C compiler configured (CC is empty)"
    if shutil.which(words[0]) is None:
        return f"C compiler {words[0]!r} not found on PATH"
    with tempfile.TemporaryDirectory(prefix="upycc") as d:
        src = os.path.join(d, "probe.c")
        with open(src, "w") as f:
            f.write(_CC_PROBE)
        try:
            res = subprocess.run([*words, "-c", src, "-o", os.path.join(d, "probe.o")],
                                 capture_output=True, text=True, timeout=60)
        except OSError as exc:
            return f"C compiler {cc!r} cannot be run: {exc.strerror}"
        if res.returncode != 0 or not os.path.exists(os.path.join(d, "probe.o")):
            last = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
            return f"C compiler {cc!r} does not compile: {last}"
    return ""


def extension_compiler_problem() -> str:
    """Why `setup.py build_ext` cannot compile the C core here, or "": the compiler it would use
    is $CC, else the one this Python was built with (sysconfig's CC)."""
    import sysconfig
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return compiler_problem(cc)


# ----------------------------------------------------------------------------------------------
# the server process
# ----------------------------------------------------------------------------------------------

class ServerProcess:
    """One `python -m uwsgipy ...` child: stderr (and stdout, and --logto file) collected by
    background threads into `lines`; listener addresses parsed from the startup lines."""

    def __init__(self, args: Sequence[str], cwd: Union[str, Path] = REPO, env: Optional[dict] = None,
                 logto: Optional[Union[str, Path]] = None, on_line: Optional[Callable[[str], None]] = None):
        self.args = [str(a) for a in args]
        self.on_line = on_line  # called from the reader thread for each line, before it is stored
        self.cmd = [sys.executable, "-m", "uwsgipy", *self.args]
        self.cwd = str(cwd)
        # the server finds the uwsgipy under test (the source tree, or the installed package)
        # wherever cwd or --chdir puts it
        self.env = child_env({"PYTHONUNBUFFERED": "1", **(env or {})})
        self.logto = str(logto) if logto else None
        self.lines: List[str] = []
        self.cond = threading.Condition()
        self.proc: Optional[subprocess.Popen] = None
        self.listeners: List[Tuple[str, str]] = []  # (kind, address text)
        self.ready_pid: Optional[int] = None
        self._threads: List[threading.Thread] = []
        self._eof = 0
        self._stop_tail = threading.Event()
        self.returncode: Optional[int] = None

    # -- output collection ---------------------------------------------------------------------
    def _add_line(self, line: str) -> None:
        if self.on_line is not None:
            self.on_line(line)
        with self.cond:
            self.lines.append(line)
            self.cond.notify_all()

    def _pump(self, stream) -> None:
        try:
            for raw in iter(stream.readline, b""):
                self._add_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
        finally:
            with self.cond:
                self._eof += 1
                self.cond.notify_all()

    def _tail(self, path: str) -> None:
        pos = 0
        partial = b""
        while True:
            stopping = self._stop_tail.is_set()
            try:
                with open(path, "rb") as f:
                    f.seek(pos)
                    data = f.read()
                    pos += len(data)
            except FileNotFoundError:
                data = b""
            if data:
                partial += data
                *complete, partial = partial.split(b"\n")
                for raw in complete:
                    self._add_line(raw.decode("utf-8", "replace").rstrip("\r"))
            if stopping:
                return
            self._stop_tail.wait(0.02)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, wait_ready: bool = True) -> "ServerProcess":
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for stream in (self.proc.stdout, self.proc.stderr):
            t = threading.Thread(target=self._pump, args=(stream,), daemon=True)
            t.start()
            self._threads.append(t)
        if self.logto:
            t = threading.Thread(target=self._tail, args=(self.logto,), daemon=True)
            t.start()
            self._threads.append(t)
        if wait_ready:
            self.wait_ready()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = None
                for line in self.lines:
                    m = READY_RE.search(line)
                    if m:
                        break
                if m:
                    self.ready_pid = int(m.group(1))
                    break
                if self.proc.poll() is not None and self._eof >= 2:
                    raise AssertionError(
                        f"uwsgipy exited with {self.proc.returncode} before ready:\n{self.output()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"uwsgipy not ready within {timeout}s:\n{self.output()}")
                self.cond.wait(min(left, 0.1))
            self.listeners = []
            for line in self.lines:
                m = LISTEN_RE.search(line)
                if m:
                    self.listeners.append((m.group(1), m.group(2)))
        if not self.listeners:
            raise AssertionError(f"no 'listening on' line in the output:\n{self.output()}")

    def wait_exit(self, timeout: float) -> Optional[int]:
        """Wait for the process to exit (and its output to be collected); None on timeout."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._finish_output()
        self.returncode = rc
        return rc

    def _finish_output(self) -> None:
        for t in self._threads[:2]:
            t.join(timeout=5)
        if self.logto:
            self._stop_tail.set()
            for t in self._threads[2:]:
                t.join(timeout=5)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, then SIGKILL.  Returns the exit code (negative for a signal)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.wait_exit(timeout)
            if rc is None:
                self._add_line(f"[test harness] no exit within {timeout}s of SIGTERM; sending SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout=10)
                self._finish_output()
                self.returncode = self.proc.returncode
                return -9 if self.returncode is None else self.returncode
            return rc
        self._finish_output()
        self.returncode = self.proc.returncode
        return self.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- addresses -------------------------------------------------------------------------------
    def _addr(self, kind: str) -> Addr:
        for k, a in self.listeners:
            if k == kind:
                return parse_addr(a)
        raise AssertionError(f"no {kind} listener in {self.listeners}")

    @property
    def http_addr(self) -> Tuple[str, int]:
        a = self._addr("http-socket")
        assert isinstance(a, tuple)
        return a

    @property
    def uwsgi_addr(self) -> Addr:
        return self._addr("socket")

    # -- output inspection -----------------------------------------------------------------------
    def output(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def mark(self) -> int:
        """Index to pass as `start` so that only lines printed after now are searched."""
        with self.cond:
            return len(self.lines)

    def find(self, pattern: Union[str, re.Pattern, Callable[[str], bool]], start: int = 0) -> Optional[str]:
        pred = _line_pred(pattern)
        with self.cond:
            for line in self.lines[start:]:
                if pred(line):
                    return line
        return None

    def wait_for(self, pattern, timeout: float = IO_TIMEOUT, start: int = 0) -> str:
        pred = _line_pred(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    if pred(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self._eof >= 2 and self.proc.poll() is not None):
                    raise AssertionError(
                        f"no output line matching {pattern!r} within {timeout}s; output:\n"
                        + "\n".join(self.lines))
                self.cond.wait(min(left, 0.1))

    def access_lines(self, start: int = 0) -> List[re.Match]:
        with self.cond:
            return [m for m in (ACCESS_RE.search(l) for l in self.lines[start:]) if m]


def _line_pred(pattern) -> Callable[[str], bool]:
    if callable(pattern) and not isinstance(pattern, re.Pattern):
        return pattern
    if isinstance(pattern, str):
        pattern = re.compile(pattern)
    return lambda line: pattern.search(line) is not None


def parse_addr(text: str) -> Addr:
    if text.startswith("/") or text.startswith("@") or text.startswith("unix:"):
        return text[5:] if text.startswith("unix:") else text
    host, _, port = text.rpartition(":")
    return (host.strip("[]"), int(port))


# ----------------------------------------------------------------------------------------------
# raw sockets and HTTP responses
# ----------------------------------------------------------------------------------------------

def connect(addr: Addr, timeout: float = IO_TIMEOUT, rcvbuf: Optional[int] = None) -> socket.socket:
    """A connected client socket; `rcvbuf` (bytes) sets SO_RCVBUF before connecting, so a client
    that stops reading makes the server's writes block soon (the kernel buffers little)."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    try:
        s.connect(addr)
    except BaseException:
        s.close()
        raise
    return s


class IncompleteResponse(AssertionError):
    def __init__(self, msg: str, partial: bytes = b""):
        super().__init__(msg)
        self.partial = partial


class Response:
    def __init__(self, version: str, status: int, reason: str, headers: List[Tuple[str, str]],
                 body: bytes, framing: str, raw_head: bytes, chunk_sizes: Optional[List[int]] = None):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.framing = framing  # "length", "chunked", "close" or "none"
        self.raw_head = raw_head
        self.chunk_sizes = chunk_sizes or []

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def header_all(self, name: str) -> List[str]:
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def has_header(self, name: str) -> bool:
        return self.header(name) is not None

    def json(self):
        import json
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self) -> str:
        return (f"<Response {self.version} {self.status} {self.reason!r} framing={self.framing} "
                f"headers={self.headers!r} body[:200]={self.body[:200]!r} len={len(self.body)}>")


class Conn:
    """A client connection with its own read buffer: send raw bytes, read responses in order."""

    def __init__(self, addr: Addr, timeout: float = IO_TIMEOUT, rcvbuf: Optional[int] = None):
        self.addr = addr
        self.sock = connect(addr, timeout, rcvbuf)
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes, ignore_errors: bool = False) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            if ignore_errors:
                return False
            raise

    def send_slowly(self, data: bytes, piece: int = 1) -> None:
        for i in range(0, len(data), piece):
            self.sock.sendall(data[i:i + piece])

    def _fill(self, n: int = 262144) -> bool:
        """Read more into buf; False on EOF (or reset)."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(n)
        except ConnectionResetError:
            self.reset = True
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, delim: bytes, limit: int = 1 << 20) -> bytes:
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            start = max(0, len(self.buf) - len(delim) + 1)
            if len(self.buf) > limit:
                raise AssertionError(f"no {delim!r} within {limit} bytes")
            if not self._fill():
                raise IncompleteResponse(f"EOF before {delim!r}; got {bytes(self.buf)[:500]!r}",
                                         bytes(self.buf))

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill(max(262144, n - len(self.buf))):
                raise IncompleteResponse(f"EOF after {len(self.buf)} of {n} bytes", bytes(self.buf))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self, limit: int = 1 << 31) -> bytes:
        while self._fill():
            if len(self.buf) > limit:
                raise AssertionError("response larger than limit")
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def wait_closed(self, timeout: float = IO_TIMEOUT) -> bool:
        """True if the peer closes (EOF or RST) within timeout, with no further data than what
        is already buffered plus anything it sends before closing (kept in buf)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                self._fill()
            except socket.timeout:
                return False
        return True

    def read_response(self, method: str = "GET", body_limit: int = 1 << 31) -> Response:
        head = self.read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", status_line)
        if not m:
            raise AssertionError(f"bad status line {status_line!r} in {head!r}")
        version, status, reason = m.group(1), int(m.group(2)), m.group(3) or ""
        headers = []
        for raw in lines[1:]:
            name, sep, value = raw.partition(b":")
            if not sep:
                raise AssertionError(f"bad response header line {raw!r}")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        resp = Response(version, status, reason, headers, b"", "none", head)
        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            return resp
        if te is not None:
            assert te.lower() == "chunked", f"unexpected Transfer-Encoding {te!r}"
            assert cl is None, f"both Content-Length and Transfer-Encoding in {head!r}"
            body = bytearray()
            while True:
                size_line = self.read_until(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                resp.chunk_sizes.append(size)
                if size == 0:
                    while self.read_until(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                body += self.read_exact(size)
                if self.read_exact(2) != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF")
                if len(body) > body_limit:
                    raise AssertionError("body larger than limit")
            resp.body = bytes(body)
            resp.framing = "chunked"
        elif cl is not None:
            assert len(resp.header_all("Content-Length")) == 1, f"repeated Content-Length in {head!r}"
            resp.body = self.read_exact(int(cl))
            resp.framing = "length"
        else:
            resp.body = self.read_to_eof(body_limit)
            resp.framing = "close"
        return resp


def build_request(method: str = "GET", target: str = "/", headers: Iterable[Tuple[str, str]] = (),
                  body: bytes = b"", version: str = "HTTP/1.1", host: Optional[str] = "127.0.0.1",
                  content_length: Optional[bool] = None) -> bytes:
    """A request as raw bytes.  Host is added (unless host=None); Content-Length is added when
    there is a body (unless content_length=False) or content_length=True."""
    lines = [f"{method} {target} {version}".encode("latin-1")]
    hdrs = list(headers)
    names = {k.lower() for k, _ in hdrs}
    if host is not None and "host" not in names:
        lines.append(b"Host: " + host.encode("latin-1"))
    for k, v in hdrs:
        lines.append(k.encode("latin-1") + b": " + (v if isinstance(v, bytes) else v.encode("latin-1")))
    if content_length or (content_length is None and body and "content-length" not in names
                          and "transfer-encoding" not in names):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(body: bytes, size: int = 65536, ext: str = "", trailers: Sequence[Tuple[str, str]] = ()) -> bytes:
    out = bytearray()
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += f"{len(piece):x}{ext}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n"
    for k, v in trailers:
        out += f"{k}: {v}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def http_request(addr: Addr, method: str = "GET", target: str = "/", headers=(), body: bytes = b"",
                 version: str = "HTTP/1.1", timeout: float = IO_TIMEOUT, **kw) -> Response:
    """One request on a fresh connection (Connection: close on HTTP/1.1)."""
    hdrs = list(headers)
    if version == "HTTP/1.1" and not any(k.lower() == "connection" for k, _ in hdrs):
        hdrs.append(("Connection", "close"))
    with Conn(addr, timeout) as c:
        c.send(build_request(method, target, hdrs, body, version, **kw))
        return c.read_response(method)


def raw_exchange(addr: Addr, data: bytes, timeout: float = IO_TIMEOUT, shut_wr: bool = False) -> Tuple[Optional[Response], bytes]:
    """Send raw bytes (tolerating the peer hanging up mid-send) and parse whatever response
    comes back.  Returns (response or None, all bytes received)."""
    with Conn(addr, timeout) as c:
        c.send(data, ignore_errors=True)
        if shut_wr:
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        try:
            c.wait_closed(timeout)
        except OSError:
            pass
        raw = bytes(c.buf)
    resp = None
    if raw.startswith(b"HTTP/"):
        c2 = _BytesConn(raw)
        try:
            resp = c2.read_response()
        except (IncompleteResponse, AssertionError, ValueError):
            resp = None
    return resp, raw


class _BytesConn(Conn):
    """Conn over an in-memory byte string (to parse a response that has already been read)."""

    def __init__(self, data: bytes):  # noqa: super().__init__ intentionally not called
        self.buf = bytearray(data)
        self.eof = False
        self.reset = False

    def _fill(self, n: int = 0) -> bool:
        self.eof = True
        return False

    def close(self) -> None:
        pass


def parse_response_bytes(data: bytes, method: str = "GET") -> Response:
    return _BytesConn(data).read_response(method)


# ----------------------------------------------------------------------------------------------
# uwsgi protocol client
# ----------------------------------------------------------------------------------------------

def _codec():
    try:
        import uwsgi_codec  # tests/uwsgi_codec.py, written by the codec helper
    except ImportError as e:  # pragma: no cover - only while the codec is being written
        raise AssertionError(f"tests/uwsgi_codec.py is not importable: {e}")
    return uwsgi_codec


def encode_packet(vars, body: bytes = b"", modifier1: int = 0, modifier2: int = 0) -> bytes:
    return _codec().encode_packet(vars, body=body, modifier1=modifier1, modifier2=modifier2)


def uwsgi_vars(method: str = "GET", path: str = "/", query: str = "", body: bytes = b"",
               extra: Optional[dict] = None, content_type: Optional[str] = None,
               server_port: str = "80") -> dict:
    """The vars nginx's uwsgi_params would send for a simple request."""
    v = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": path + ("?" + query if query else ""),
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": server_port,
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "54321",
        "HTTP_HOST": "localhost",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "CONTENT_TYPE": content_type or "",
    }
    if not body:
        del v["CONTENT_LENGTH"]
    if content_type is None:
        del v["CONTENT_TYPE"]
    if extra:
        v.update(extra)
    return v


def uwsgi_exchange(addr: Addr, packet: bytes, timeout: float = IO_TIMEOUT, body_chunks: Iterable[bytes] = (),
                   shut_wr: bool = False) -> Tuple[Optional[Response], bytes]:
    """Send a raw uwsgi packet (and optional further body pieces), read until the server closes.
    Returns (parsed response or None, raw bytes)."""
    with Conn(addr, timeout) as c:
        c.send(packet, ignore_errors=True)
        for piece in body_chunks:
            if not c.send(piece, ignore_errors=True):
                break
        if shut_wr:
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if not c.wait_closed(timeout):
            raise AssertionError(f"uwsgi peer did not close within {timeout}s; got {bytes(c.buf)[:300]!r}")
        raw = bytes(c.buf)
    if not raw:
        return None, raw
    return parse_uwsgi_response(raw), raw


def parse_uwsgi_response(raw: bytes) -> Response:
    """A uwsgi response is an HTTP response head and a body delimited by the connection close
    (a Content-Length, when present, must agree)."""
    i = raw.find(b"\r\n\r\n")
    assert i >= 0, f"no response head in {raw[:300]!r}"
    head = raw[:i + 4]
    resp = _BytesConn(head).read_response("HEAD")
    resp.body = raw[i + 4:]
    resp.framing = "close"
    return resp


def uwsgi_request(addr: Addr, vars, body: bytes = b"", timeout: float = IO_TIMEOUT,
                  modifier1: int = 0, modifier2: int = 0) -> Response:
    resp, raw = uwsgi_exchange(addr, encode_packet(vars, body=body, modifier1=modifier1, modifier2=modifier2),
                               timeout)
    assert resp is not None, "uwsgi server closed the connection without a response"
    return resp


# ----------------------------------------------------------------------------------------------
# multipart
# ----------------------------------------------------------------------------------------------

def multipart(fields: Sequence[Tuple[str, str]] = (), files: Sequence[Tuple[str, str, bytes, str]] = (),
              boundary: str = "----uwsgipytestboundary7MA4YWxkTrZu0gW") -> Tuple[bytes, str]:
    """(body, content_type) for multipart/form-data; files are (field, filename, data, ctype)."""
    out = bytearray()
    for name, value in fields:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").encode()
        out += value.encode() + b"\r\n"
    for name, filename, data, ctype in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                f"Content-Type: {ctype}\r\n\r\n").encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


# ----------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------

def vm_rss_kib(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def process_tree(pid: int) -> List[int]:
    """pid and all its descendants (a master and its workers), from /proc."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat_ = f.read()
        except OSError:
            continue
        ppid = int(stat_.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_rss_kib(pid: int) -> int:
    return sum(vm_rss_kib(p) or 0 for p in process_tree(pid))


class RssSampler:
    """Samples the summed VmRSS of a process tree in a background thread; peak_kib after exit."""

    def __init__(self, pid: int, interval: float = 0.005):
        self.pid = pid
        self.interval = interval
        self.pids = process_tree(pid)
        self.peak_kib = self._sample()
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        return sum(vm_rss_kib(p) or 0 for p in self.pids)

    def _run(self) -> None:
        while not self._stop.is_set():
            v = self._sample()
            if v:
                self.peak_kib = max(self.peak_kib, v)
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(timeout=5)


# ----------------------------------------------------------------------------------------------
# nginx
# ----------------------------------------------------------------------------------------------

NGINX_WRAPPER = """\
{user}daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body_temp;
    proxy_temp_path {tmp}/proxy_temp;
    fastcgi_temp_path {tmp}/fastcgi_temp;
    uwsgi_temp_path {tmp}/uwsgi_temp;
    scgi_temp_path {tmp}/scgi_temp;
    include {tmp}/server.conf;
}}
"""

# What Debian ships as /etc/nginx/uwsgi_params (minus comments), for hosts without one.
FALLBACK_UWSGI_PARAMS = """\
uwsgi_param  QUERY_STRING       $query_string;
uwsgi_param  REQUEST_METHOD     $request_method;
uwsgi_param  CONTENT_TYPE       $content_type;
uwsgi_param  CONTENT_LENGTH     $content_length;
uwsgi_param  REQUEST_URI        $request_uri;
uwsgi_param  PATH_INFO          $document_uri;
uwsgi_param  DOCUMENT_ROOT      $document_root;
uwsgi_param  SERVER_PROTOCOL    $server_protocol;
uwsgi_param  REQUEST_SCHEME     $scheme;
uwsgi_param  HTTPS              $https if_not_empty;
uwsgi_param  REMOTE_ADDR        $remote_addr;
uwsgi_param  REMOTE_PORT        $remote_port;
uwsgi_param  SERVER_PORT        $server_port;
uwsgi_param  SERVER_NAME        $server_name;
"""

# What nginx ships as conf/fastcgi_params and conf/scgi_params (minus comments), for hosts
# without /etc/nginx.
FALLBACK_FASTCGI_PARAMS = """\
fastcgi_param  QUERY_STRING       $query_string;
fastcgi_param  REQUEST_METHOD     $request_method;
fastcgi_param  CONTENT_TYPE       $content_type;
fastcgi_param  CONTENT_LENGTH     $content_length;
fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
fastcgi_param  REQUEST_URI        $request_uri;
fastcgi_param  DOCUMENT_URI       $document_uri;
fastcgi_param  DOCUMENT_ROOT      $document_root;
fastcgi_param  SERVER_PROTOCOL    $server_protocol;
fastcgi_param  REQUEST_SCHEME     $scheme;
fastcgi_param  HTTPS              $https if_not_empty;
fastcgi_param  GATEWAY_INTERFACE  CGI/1.1;
fastcgi_param  SERVER_SOFTWARE    nginx/$nginx_version;
fastcgi_param  REMOTE_ADDR        $remote_addr;
fastcgi_param  REMOTE_PORT        $remote_port;
fastcgi_param  SERVER_ADDR        $server_addr;
fastcgi_param  SERVER_PORT        $server_port;
fastcgi_param  SERVER_NAME        $server_name;
fastcgi_param  REDIRECT_STATUS    200;
"""
FALLBACK_SCGI_PARAMS = """\
scgi_param  REQUEST_METHOD     $request_method;
scgi_param  REQUEST_URI        $request_uri;
scgi_param  QUERY_STRING       $query_string;
scgi_param  CONTENT_TYPE       $content_type;
scgi_param  DOCUMENT_URI       $document_uri;
scgi_param  DOCUMENT_ROOT      $document_root;
scgi_param  SCGI               1;
scgi_param  SERVER_PROTOCOL    $server_protocol;
scgi_param  REQUEST_SCHEME     $scheme;
scgi_param  HTTPS              $https if_not_empty;
scgi_param  REMOTE_ADDR        $remote_addr;
scgi_param  REMOTE_PORT        $remote_port;
scgi_param  SERVER_PORT        $server_port;
scgi_param  SERVER_NAME        $server_name;
"""
# the params files a server block may `include` (found beside nginx.conf, as in /etc/nginx)
NGINX_PARAMS = {"uwsgi_params": FALLBACK_UWSGI_PARAMS, "fastcgi_params": FALLBACK_FASTCGI_PARAMS,
                "scgi_params": FALLBACK_SCGI_PARAMS}

_LISTEN_RE = re.compile(r"^(\s*)listen\s+[^;]+;", re.M)
_UPSTREAM_SERVER_RE = re.compile(r"^(\s*)server\s+([^\s{;][^;{]*);", re.M)


def nginx_binary() -> Optional[str]:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx",
                                                       "/usr/local/nginx/sbin/nginx") if os.path.exists(p)), None)


def render_nginx_conf(conf_name: str, listen_port: int, upstream: Addr) -> str:
    """The shipped server block with its `listen` and upstream `server` addresses replaced.
    The shipped files stay copy-paste-ready; the test only swaps the two addresses."""
    text = (NGINX_CONF_DIR / conf_name).read_text()
    text, n_listen = _LISTEN_RE.subn(lambda m: f"{m.group(1)}listen 127.0.0.1:{listen_port};", text)
    up = f"unix:{upstream}" if isinstance(upstream, str) else f"{upstream[0]}:{upstream[1]}"
    text, n_up = _UPSTREAM_SERVER_RE.subn(lambda m: f"{m.group(1)}server {up};", text)
    assert n_listen == 1, f"{conf_name}: expected exactly one 'listen' directive, found {n_listen}"
    assert n_up == 1, f"{conf_name}: expected exactly one upstream 'server ADDR;' directive, found {n_up}"
    return text


class NginxProcess:
    def __init__(self, binary: str, conf_name: str, upstream: Addr, workdir: Union[str, Path]):
        self.binary = binary
        self.conf_name = conf_name
        self.upstream = upstream
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None

    def _write_conf(self) -> None:
        for name, fallback in NGINX_PARAMS.items():
            params = Path("/etc/nginx") / name
            (self.dir / name).write_text(params.read_text() if params.exists() else fallback)
        (self.dir / "server.conf").write_text(render_nginx_conf(self.conf_name, self.port, self.upstream))
        # nginx's master runs as root here; its worker must reach sockets and temp dirs that
        # only root can read, so keep the worker as root too (tests only, never in production)
        user = "user root;\n" if os.geteuid() == 0 else ""
        (self.dir / "nginx.conf").write_text(NGINX_WRAPPER.format(user=user, tmp=self.dir))

    def start(self, timeout: float = READY_TIMEOUT) -> "NginxProcess":
        last = ""
        for _attempt in range(5):  # the free port can be taken between probe and bind
            self.port = free_port()
            self._write_conf()
            log = open(self.dir / "stderr.log", "ab")
            self.proc = subprocess.Popen(
                [self.binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e",
                 str(self.dir / "error.log")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(self.dir))
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            last = self.logs()
            if self.proc.poll() is None:
                self.stop()
                raise AssertionError(f"nginx not accepting on {self.port} within {timeout}s:\n{last}")
            if "Address already in use" not in last:
                break
        raise AssertionError(f"nginx failed to start (exit {self.proc.returncode}):\n{last}")

    def logs(self) -> str:
        out = []
        for name in ("stderr.log", "error.log"):
            p = self.dir / name
            if p.exists():
                out.append(f"--- nginx {name} ---\n" + p.read_text(errors="replace")[-20000:])
        return "\n".join(out)

    @property
    def addr(self) -> Tuple[str, int]:
        return ("127.0.0.1", self.port)

    def stop(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


# ----------------------------------------------------------------------------------------------
# pools: start many, stop all, report bad exits (used by the fixtures in conftest.py)
# ----------------------------------------------------------------------------------------------

LIVE_SERVERS: List[ServerProcess] = []  # for attaching output to failed test reports


class ServerPool:
    """Starts servers and, at finish(), stops them (SIGTERM, wait, SIGKILL) and checks their
    exit codes (expect_rc=None: any).  `runner_args` (one of RUNNERS' values) are appended to
    every server's arguments."""

    def __init__(self, runner_args: Sequence[str] = ()) -> None:
        self.entries: List[tuple] = []
        self.runner_args = list(runner_args)

    def __call__(self, *args, expect_rc: Optional[int] = 0, ready: bool = True, cwd=REPO, env=None,
                 logto=None) -> ServerProcess:
        srv = ServerProcess([*args, *self.runner_args], cwd=cwd, env=env, logto=logto)
        self.entries.append((srv, expect_rc))
        LIVE_SERVERS.append(srv)
        srv.start(wait_ready=ready)
        return srv

    def finish(self) -> List[str]:
        problems = []
        for srv, expect_rc in self.entries:
            rc = srv.stop()
            if srv in LIVE_SERVERS:
                LIVE_SERVERS.remove(srv)
            if expect_rc is not None and rc != expect_rc:
                problems.append(f"uwsgipy {' '.join(srv.args)} exited {rc}, expected {expect_rc}; output:\n"
                                + srv.output()[-20000:])
        self.entries = []
        return problems


class NginxPool:
    def __init__(self, binary: str, base: Path) -> None:
        self.binary = binary
        self.base = Path(base)
        self.procs: List[NginxProcess] = []
        self.count = 0

    def __call__(self, conf_name: str, upstream: Addr) -> NginxProcess:
        self.count += 1
        ngx = NginxProcess(self.binary, conf_name, upstream, self.base / f"nginx{self.count}")
        self.procs.append(ngx)
        ngx.start()
        return ngx

    def finish(self) -> List[str]:
        problems = []
        for ngx in self.procs:
            rc = ngx.stop()
            if rc not in (0, None):
                problems.append(f"nginx exited {rc}:\n{ngx.logs()}")
        self.procs = []
        return problems


# ----------------------------------------------------------------------------------------------
# the real uWSGI, for differential tests
# ----------------------------------------------------------------------------------------------

def uwsgi_binary() -> Optional[str]:
    """The real uWSGI's binary: the one installed beside this Python first (scripts/test.sh puts
    it in .venv), then PATH; None when there is none."""
    return shutil.which("uwsgi", path=os.path.dirname(sys.executable)) or shutil.which("uwsgi")


@contextlib.contextmanager
def real_uwsgi(args: Sequence[str], cwd: Optional[Union[str, Path]] = None):
    """Real uWSGI running ``args`` (which include an ``--http-socket 127.0.0.1:PORT``), polled
    until PORT accepts; yields (address, pid), kills it at the end.  Skips the test when uWSGI is
    not installed."""
    import pytest
    exe = uwsgi_binary()
    if exe is None:
        pytest.skip("real uWSGI is not installed")
    args = [str(a) for a in args]
    port = int(args[args.index("--http-socket") + 1].rsplit(":", 1)[1])
    proc = subprocess.Popen([exe, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return proc.poll() is not None
        wait_until(up, 15, what="uwsgi listening")
        assert proc.poll() is None, f"uwsgi exited with {proc.returncode}"
        yield ("127.0.0.1", port), proc.pid
    finally:
        proc.kill()
        proc.wait(10)


# ----------------------------------------------------------------------------------------------
# ASGI (issue 10)
# ----------------------------------------------------------------------------------------------

def expect_raise_after_start(srv, c, start: int) -> None:
    """asgi_raw's /raise_after on the open connection c (a Conn): the app raises after
    http.response.start and one body chunk, so the server closes c; what came is the partial
    response, not made to look complete, and the app's traceback is logged after `start`."""
    c.send(build_request("GET", "/raise_after"))
    assert c.wait_closed(5), "the connection was left open after the app failed mid-response"
    raw = bytes(c.buf)
    assert raw.startswith(b"HTTP/1.1 200") and b"partial" in raw, raw[:300]
    assert not raw.endswith(b"0\r\n\r\n"), f"an aborted stream must not look complete: {raw[-100:]!r}"
    srv.wait_for("asgi boom after start zzq", 5, start=start)


def asgi_core_problem() -> str:
    """Why the uwsgipy under test cannot serve ASGI apps yet, or "" when it can: its C core's
    Server must have asgi_setup (the entry point the ASGI serve loop calls, issue 10).  The ASGI
    test modules skip on a non-empty answer, so main stays green while the core is written."""
    try:
        from uwsgipy import _core
    except ImportError as exc:
        return f"uwsgipy._core is not importable: {exc}"
    if not hasattr(_core.Server, "asgi_setup"):
        return "the ASGI core has not landed: uwsgipy._core.Server has no asgi_setup"
    return ""
