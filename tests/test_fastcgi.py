"""FastCGI and SCGI (issue 12) with real front ends, raw clients, and real uWSGI.

- Front ends: nginx `fastcgi_pass` over TCP and over a unix socket, with `fastcgi_keep_conn` off
  and on (nginx-conf/fastcgi-tcp.conf, fastcgi-unix.conf, fastcgi-keepconn.conf, the last with
  `fastcgi_request_buffering off`), nginx `scgi_pass` (nginx-conf/scgi-tcp.conf), lighttpd
  mod_fastcgi and mod_scgi (lighttpd-conf/fastcgi.conf, scgi.conf), Apache httpd mod_proxy_fcgi
  (apache-conf/fastcgi.conf), each in front of the Flask and Django apps of test_frameworks.py
  and of routes_app.py.
- Parity: one request through `uwsgi_pass`, `fastcgi_pass` and `scgi_pass` (nginx's stock
  uwsgi_params, fastcgi_params, scgi_params, included as a user would) gives one environ, except
  for the vars the params files send differently (see test_environ_parity).
- Raw clients against the server alone: management records (FCGI_GET_VALUES, an unknown type),
  roles, FCGI_ABORT_REQUEST, FCGI_KEEP_CONN, malformed input (one log line naming the protocol,
  the connection closed, the same worker serving the next connection).
- One set of raw FastCGI exchanges with real uWSGI's --fastcgi-socket and with uwsgipy.

UWSGIPY_TEST_FASTCGI_PEER=uwsgi runs the front-end tests (not the raw ones) against real uWSGI
2.0 instead of uwsgipy: a check of the configs and of the tests themselves.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from helpers import (APPS, IO_TIMEOUT, REPO, Addr, Conn, NginxPool, ServerPool, free_port, multipart,
                     parse_addr, parse_response_bytes, pattern_sha256, real_uwsgi, sha256, uwsgi_binary,
                     uwsgi_vars, wait_until)
from test_frameworks import APP_ARGS, URLS

ROUTES = str(APPS / "routes_app.py")
PEER = os.environ.get("UWSGIPY_TEST_FASTCGI_PEER", "uwsgipy")

# ----------------------------------------------------------------------------------------------
# a FastCGI 1.0 client: records in and out (the FastCGI Specification, Open Market 1996)
# ----------------------------------------------------------------------------------------------

FCGI_BEGIN_REQUEST, FCGI_ABORT_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS = 1, 2, 3, 4
FCGI_STDIN, FCGI_STDOUT, FCGI_STDERR, FCGI_DATA = 5, 6, 7, 8
FCGI_GET_VALUES, FCGI_GET_VALUES_RESULT, FCGI_UNKNOWN_TYPE = 9, 10, 11
FCGI_RESPONDER, FCGI_AUTHORIZER, FCGI_FILTER = 1, 2, 3
FCGI_KEEP_CONN = 1
FCGI_REQUEST_COMPLETE, FCGI_CANT_MPX_CONN, FCGI_OVERLOADED, FCGI_UNKNOWN_ROLE = 0, 1, 2, 3


def fcgi_record(rtype: int, request_id: int, content: bytes = b"", padding: int = 0, version: int = 1,
                content_length: Optional[int] = None) -> bytes:
    """One record (§3.3); `content_length` lies about the content when given."""
    n = len(content) if content_length is None else content_length
    return struct.pack(">BBHHBx", version, rtype, request_id, n, padding) + content + b"\0" * padding


def fcgi_nv(name: bytes, value: bytes) -> bytes:
    """One name-value pair (§3.4): lengths below 128 in one byte, others in four (high bit set)."""
    def length(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return length(len(name)) + length(len(value)) + name + value


def fcgi_nvs(pairs) -> bytes:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return b"".join(fcgi_nv(k.encode("latin-1") if isinstance(k, str) else k,
                            v.encode("latin-1") if isinstance(v, str) else v) for k, v in items)


def fcgi_stream(rtype: int, request_id: int, data: bytes, size: int = 65535, pad: bool = True) -> bytes:
    """`data` as records of at most `size` bytes, then the empty record that ends the stream."""
    out = bytearray()
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += fcgi_record(rtype, request_id, piece, (8 - len(piece) % 8) % 8 if pad else 0)
    return bytes(out + fcgi_record(rtype, request_id))


def fcgi_begin(request_id: int = 1, role: int = FCGI_RESPONDER, keep_conn: bool = False) -> bytes:
    return fcgi_record(FCGI_BEGIN_REQUEST, request_id,
                       struct.pack(">HB5x", role, FCGI_KEEP_CONN if keep_conn else 0))


def fcgi_request(params, body: bytes = b"", request_id: int = 1, keep_conn: bool = False,
                 role: int = FCGI_RESPONDER, params_size: int = 65535, stdin_size: int = 65535) -> bytes:
    """A whole request as nginx sends one: BEGIN_REQUEST, PARAMS, empty PARAMS, STDIN, empty STDIN."""
    return (fcgi_begin(request_id, role, keep_conn)
            + fcgi_stream(FCGI_PARAMS, request_id, fcgi_nvs(params), params_size)
            + fcgi_stream(FCGI_STDIN, request_id, body, stdin_size))


def fcgi_vars(method: str = "GET", path: str = "/", query: str = "", body: bytes = b"", **kw) -> dict:
    """The CGI vars of a simple request (helpers.uwsgi_vars: what nginx's params files send)."""
    return uwsgi_vars(method, path, query, body, **kw)


class Record:
    def __init__(self, version: int, rtype: int, request_id: int, content: bytes, padding: int):
        self.version, self.type, self.request_id, self.content, self.padding = (version, rtype, request_id,
                                                                                 content, padding)

    def __repr__(self) -> str:
        return f"<Record type={self.type} id={self.request_id} len={len(self.content)} pad={self.padding}>"


def read_record(c: Conn) -> Record:
    version, rtype, rid, n, pad = struct.unpack(">BBHHBx", c.read_exact(8))
    content = c.read_exact(n)
    c.read_exact(pad)
    return Record(version, rtype, rid, content, pad)


class FcgiReply:
    """What the application sent for one request: its records, STDOUT and STDERR joined, and
    END_REQUEST's appStatus and protocolStatus."""

    def __init__(self, records: List[Record]):
        self.records = records
        self.stdout = b"".join(r.content for r in records if r.type == FCGI_STDOUT)
        self.stderr = b"".join(r.content for r in records if r.type == FCGI_STDERR)
        end = records[-1]
        assert end.type == FCGI_END_REQUEST and len(end.content) == 8, records
        self.app_status, self.protocol_status = struct.unpack(">IB3x", end.content)

    def response(self, method: str = "GET"):
        return cgi_response(self.stdout, method)


def read_reply(c: Conn, request_id: int = 1) -> FcgiReply:
    """Records up to END_REQUEST of request_id; every one is version 1, for that request, within
    the spec's limits; STDOUT ends with an empty record before END_REQUEST."""
    records = []
    while True:
        r = read_record(c)
        assert r.version == 1 and r.request_id == request_id, (r, records)
        records.append(r)
        if r.type == FCGI_END_REQUEST:
            break
        assert r.type in (FCGI_STDOUT, FCGI_STDERR), r
        assert len(records) < 100000
    out = [r for r in records if r.type == FCGI_STDOUT]
    if out:
        assert out[-1].content == b"" and all(r.content for r in out[:-1]), out[-3:]
    return FcgiReply(records)


def cgi_response(data: bytes, method: str = "GET"):
    """A CGI response ("Status: 200 OK" + headers + CRLF + body) as a helpers.Response (the body
    is what follows the head, whatever the headers say)."""
    i = data.find(b"\r\n\r\n")
    assert i >= 0, f"no response head in {data[:300]!r}"
    head, body = data[:i], data[i + 4:]
    lines = head.split(b"\r\n")
    status = 200
    reason = "OK"
    if lines[0].lower().startswith(b"status:"):
        m = re.match(rb"status:\s*(\d{3})\s*(.*)$", lines[0], re.I)
        assert m, lines[0]
        status, reason = int(m.group(1)), m.group(2).decode("latin-1")
        lines = lines[1:]
    resp = parse_response_bytes(b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("latin-1")) + b"\r\n".join(lines)
                                + b"\r\n\r\n", "HEAD")
    resp.version = "CGI"
    resp.body = body
    resp.raw_head = head + b"\r\n\r\n"
    assert not any(k.lower() == "status" for k, _ in resp.headers), head
    return resp


def fcgi_exchange(addr: Addr, data: bytes, request_id: int = 1, timeout: float = IO_TIMEOUT) -> FcgiReply:
    with Conn(addr, timeout) as c:
        c.send(data)
        return read_reply(c, request_id)


# ----------------------------------------------------------------------------------------------
# an SCGI client (the SCGI protocol, Neil Schemenauer)
# ----------------------------------------------------------------------------------------------

def scgi_request(params, body: bytes = b"") -> bytes:
    """CONTENT_LENGTH first, SCGI=1, then the rest: a netstring of NUL-terminated pairs, the body."""
    items = [(k, v) for k, v in (params.items() if isinstance(params, dict) else params)
             if k not in ("CONTENT_LENGTH", "SCGI")]
    pairs = [("CONTENT_LENGTH", str(len(body))), ("SCGI", "1"), *items]
    head = b"".join(k.encode("latin-1") + b"\0" + v.encode("latin-1") + b"\0" for k, v in pairs)
    return str(len(head)).encode() + b":" + head + b"," + body


def scgi_exchange(addr: Addr, data: bytes, timeout: float = IO_TIMEOUT):
    """Send, read until the server closes; (CGI response or None, raw bytes)."""
    with Conn(addr, timeout) as c:
        c.send(data, ignore_errors=True)
        assert c.wait_closed(timeout), f"SCGI server did not close within {timeout}s: {bytes(c.buf)[:300]!r}"
        raw = bytes(c.buf)
    return (cgi_response(raw) if raw else None), raw


# ----------------------------------------------------------------------------------------------
# the backends: one server per app with every listener the front ends use
# ----------------------------------------------------------------------------------------------

# listener name -> the uwsgipy option (listeners of one kind are logged in the order given)
LISTENERS = [("fastcgi", "--fastcgi-socket", "127.0.0.1:0"),
             ("fastcgi-keep", "--fastcgi-socket", "127.0.0.1:0"),  # its own port: connections counted
             ("fastcgi-unix", "--fastcgi-socket", "{unix}"),
             ("scgi", "--scgi-socket", "127.0.0.1:0"),
             ("uwsgi", "--socket", "127.0.0.1:0")]
APPS_ARGS = dict(APP_ARGS, routes=["--wsgi-file", ROUTES])


class Backend:
    """One uwsgipy (or, with UWSGIPY_TEST_FASTCGI_PEER=uwsgi, real uWSGI) serving one app on the
    listeners of LISTENERS; `addrs` maps their names to addresses."""

    def __init__(self, addrs: Dict[str, Addr], srv=None, proc=None):
        self.addrs = addrs
        self.srv = srv  # ServerProcess (uwsgipy)
        self.proc = proc  # Popen (uWSGI)

    def mark(self) -> int:
        return self.srv.mark() if self.srv else 0

    def wait_for(self, pattern, timeout: float = 5, start: int = 0):
        if self.srv:
            return self.srv.wait_for(pattern, timeout, start)
        return None


def start_uwsgipy(servers: ServerPool, app: str, unix: str) -> Backend:
    args = []
    for _name, opt, value in LISTENERS:
        args += [opt, value.format(unix=unix)]
    srv = servers(*args, *APPS_ARGS[app])
    by_kind: Dict[str, List[Addr]] = {}
    for kind, text in srv.listeners:
        by_kind.setdefault(kind, []).append(parse_addr(text))
    addrs = {}
    for name, opt, _value in LISTENERS:
        kind = opt[2:]
        assert by_kind.get(kind), f"no {kind} listener logged: {srv.listeners}"
        addrs[name] = by_kind[kind].pop(0)
    return Backend(addrs, srv=srv)


def start_real_uwsgi(app: str, unix: str) -> Backend:
    exe = uwsgi_binary()
    if exe is None:
        pytest.skip("UWSGIPY_TEST_FASTCGI_PEER=uwsgi: real uWSGI is not installed")
    addrs: Dict[str, Addr] = {}
    args = [exe, "--buffer-size", "65535", "--die-on-term", "--need-app"]
    for name, opt, value in LISTENERS:
        addrs[name] = unix if value == "{unix}" else ("127.0.0.1", free_port())
        args += [opt, addrs[name] if isinstance(addrs[name], str) else "%s:%d" % addrs[name]]
    proc = subprocess.Popen(args + APPS_ARGS[app], cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    tcp = addrs["uwsgi"]

    def up():
        try:
            socket.create_connection(tcp, timeout=1).close()
            return True
        except OSError:
            return proc.poll() is not None
    wait_until(up, 15, what="uwsgi listening")
    assert proc.poll() is None, f"uwsgi exited with {proc.returncode}"
    return Backend(addrs, proc=proc)


# ----------------------------------------------------------------------------------------------
# lighttpd and Apache httpd: the shipped snippet, included from a wrapper with the test's paths
# ----------------------------------------------------------------------------------------------

LIGHTTPD_CONF_DIR = REPO / "lighttpd-conf"
APACHE_CONF_DIR = REPO / "apache-conf"
APACHE_MODULES = "/usr/lib/apache2/modules"  # Debian's apache2-bin


def _binary(name: str, *places: str) -> Optional[str]:
    import shutil
    return shutil.which(name) or next((p for p in places if os.path.exists(p)), None)


class FrontProcess:
    """A web server in front of the backend: `conf_name` (a shipped snippet, its backend address
    replaced by render()) is included by WRAPPER, which holds the port and the test's paths."""

    WRAPPER = ""
    CONF_DIR = REPO
    name = "front end"

    def __init__(self, binary: str, conf_name: str, upstream: Tuple[str, int], workdir: Path):
        self.binary, self.conf_name, self.upstream = binary, conf_name, upstream
        self.dir = Path(workdir)
        for sub in ("htdocs", "upload"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None

    def render(self, text: str) -> str:
        raise NotImplementedError

    def argv(self) -> List[str]:
        raise NotImplementedError

    def start(self, timeout: float = 10.0) -> "FrontProcess":
        last = ""
        for _attempt in range(5):  # the free port can be taken between probe and bind
            self.port = free_port()
            (self.dir / "site.conf").write_text(self.render((self.CONF_DIR / self.conf_name).read_text()))
            (self.dir / "front.conf").write_text(self.WRAPPER.format(tmp=self.dir, port=self.port,
                                                                     modules=APACHE_MODULES))
            log = open(self.dir / "stderr.log", "ab")
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         cwd=str(self.dir))
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            last = self.logs()
            if self.proc.poll() is None:
                self.stop()
                raise AssertionError(f"{self.name} not accepting on {self.port} within {timeout}s:\n{last}")
            if "in use" not in last:
                break
        raise AssertionError(f"{self.name} failed to start (exit {self.proc.returncode}):\n{last}")

    def logs(self) -> str:
        out = []
        for name in ("stderr.log", "error.log"):
            p = self.dir / name
            if p.exists():
                out.append(f"--- {self.name} {name} ---\n" + p.read_text(errors="replace")[-20000:])
        return "\n".join(out)

    @property
    def addr(self) -> Tuple[str, int]:
        return ("127.0.0.1", self.port)

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


class LighttpdProcess(FrontProcess):
    name = "lighttpd"
    CONF_DIR = LIGHTTPD_CONF_DIR
    WRAPPER = """\
server.document-root = "{tmp}/htdocs"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{tmp}/error.log"
server.upload-dirs = ( "{tmp}/upload" )
server.max-request-size = 102400
include "{tmp}/site.conf"
"""

    @staticmethod
    def binary_path() -> Optional[str]:
        return _binary("lighttpd", "/usr/sbin/lighttpd", "/usr/local/sbin/lighttpd")

    def render(self, text: str) -> str:
        """The backend's "host" and "port" replaced (nothing else)."""
        text, n_host = re.subn(r'"host"\s*=>\s*"[^"]*"', f'"host" => "{self.upstream[0]}"', text)
        text, n_port = re.subn(r'"port"\s*=>\s*\d+', f'"port" => {self.upstream[1]}', text)
        assert n_host == 1 and n_port == 1, f"{self.conf_name}: expected one \"host\" and one \"port\""
        return text

    def argv(self) -> List[str]:
        return [self.binary, "-D", "-f", str(self.dir / "front.conf")]


class ApacheProcess(FrontProcess):
    """Apache httpd 2.4 (Debian's apache2-bin: the binary and the modules, no /etc/apache2
    needed).  httpd will not serve as root: its children run as nobody."""

    name = "apache"
    CONF_DIR = APACHE_CONF_DIR
    WRAPPER = """\
ServerRoot "{tmp}"
ServerName localhost
Listen 127.0.0.1:{port}
PidFile "{tmp}/httpd.pid"
ErrorLog "{tmp}/error.log"
LogLevel info
DocumentRoot "{tmp}/htdocs"
DefaultRuntimeDir "{tmp}"
User nobody
Group nogroup
LimitRequestBody 104857600
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_fcgi_module {modules}/mod_proxy_fcgi.so
Include "{tmp}/site.conf"
"""

    @staticmethod
    def binary_path() -> Optional[str]:
        exe = _binary("apache2", "/usr/sbin/apache2") or _binary("httpd", "/usr/sbin/httpd")
        ok = exe and all(os.path.exists(f"{APACHE_MODULES}/{m}.so")
                         for m in ("mod_mpm_event", "mod_authz_core", "mod_proxy", "mod_proxy_fcgi"))
        return exe if ok else None

    def render(self, text: str) -> str:
        """The host and port of the fcgi:// URL replaced (nothing else)."""
        text, n = re.subn(r'"fcgi://[^/"]+/"', f'"fcgi://{self.upstream[0]}:{self.upstream[1]}/"', text)
        assert n == 1, f"{self.conf_name}: expected one fcgi:// URL"
        return text

    def argv(self) -> List[str]:
        return [self.binary, "-f", str(self.dir / "front.conf"), "-DFOREGROUND"]


FRONT_CLASSES = {"lighttpd": LighttpdProcess, "apache": ApacheProcess}


# ----------------------------------------------------------------------------------------------
# the stacks: (app, front end) -> a front end in front of that app's backend
# ----------------------------------------------------------------------------------------------

# front end -> (kind, config file, backend listener)
FRONTS = {
    "nginx-fastcgi-tcp": ("nginx", "fastcgi-tcp.conf", "fastcgi"),
    "nginx-fastcgi-unix": ("nginx", "fastcgi-unix.conf", "fastcgi-unix"),
    "nginx-fastcgi-keepconn": ("nginx", "fastcgi-keepconn.conf", "fastcgi-keep"),
    "nginx-scgi-tcp": ("nginx", "scgi-tcp.conf", "scgi"),
    "lighttpd-fastcgi": ("lighttpd", "fastcgi.conf", "fastcgi"),
    "lighttpd-scgi": ("lighttpd", "scgi.conf", "scgi"),
    "apache-fastcgi": ("apache", "fastcgi.conf", "fastcgi"),
}
# for the parity test only: the same app behind uwsgi_pass
PARITY_FRONTS = {"nginx-uwsgi-tcp": ("nginx", "uwsgi-tcp.conf", "uwsgi"),
                 "nginx-fastcgi-tcp": FRONTS["nginx-fastcgi-tcp"],
                 "nginx-scgi-tcp": FRONTS["nginx-scgi-tcp"]}


class Site:
    def __init__(self, app: str, front: str, backend: Backend, frontend):
        self.app, self.front, self.backend, self.frontend = app, front, backend, frontend
        self.urls = URLS.get(app, {})
        self.upstream = backend.addrs[(FRONTS.get(front) or PARITY_FRONTS[front])[2]]

    @property
    def addr(self) -> Tuple[str, int]:
        return self.frontend.addr

    def conn(self, timeout: float = IO_TIMEOUT) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(*self.addr, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=IO_TIMEOUT, **kw):
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {}, **kw)
            r = c.getresponse()
            return r, r.read()
        finally:
            c.close()

    def why(self, msg="") -> str:
        return f"{self.app} behind {self.front}: {msg}\n{self.frontend.logs()}"


class Stacks:
    """Backends and front ends started on first use, stopped at the end of the module."""

    def __init__(self, request, tmp_path_factory, unix_dir: str):
        self.request = request
        self.tmp = tmp_path_factory
        self.unix_dir = unix_dir
        self.servers = ServerPool()
        self.nginxes: Optional[NginxPool] = None
        self.fronts: List[FrontProcess] = []
        self.backends: Dict[str, Backend] = {}
        self.sites: Dict[Tuple[str, str], Site] = {}

    def backend(self, app: str) -> Backend:
        if app not in self.backends:
            unix = os.path.join(self.unix_dir, f"fcgi-{app}.sock")
            self.backends[app] = (start_real_uwsgi(app, unix) if PEER == "uwsgi"
                                  else start_uwsgipy(self.servers, app, unix))
        return self.backends[app]

    def site(self, app: str, front: str) -> Site:
        key = (app, front)
        if key not in self.sites:
            kind, conf, listener = FRONTS.get(front) or PARITY_FRONTS[front]
            be = self.backend(app)
            upstream = be.addrs[listener]
            if kind == "nginx":
                if self.nginxes is None:
                    self.nginxes = NginxPool(self.request.getfixturevalue("nginx_bin"), self.tmp.mktemp("fcginginx"))
                fe = self.nginxes(conf, upstream)
            else:
                cls = FRONT_CLASSES[kind]
                binary = cls.binary_path()
                if binary is None:
                    pytest.skip(f"{kind} not found (apt-get install -y {'apache2-bin' if kind == 'apache' else kind})")
                fe = cls(binary, conf, upstream, self.tmp.mktemp(kind))
                self.fronts.append(fe)
                fe.start()
            self.sites[key] = Site(app, front, be, fe)
        return self.sites[key]

    def finish(self) -> List[str]:
        problems = self.nginxes.finish() if self.nginxes else []
        for fe in self.fronts:
            rc = fe.stop()
            if rc not in (0, None, -15):
                problems.append(f"{fe.name} exited {rc}:\n{fe.logs()}")
        for be in self.backends.values():
            if be.proc is not None:
                be.proc.terminate()
                try:
                    be.proc.wait(10)
                except subprocess.TimeoutExpired:
                    be.proc.kill()
                    be.proc.wait(10)
        return problems + self.servers.finish()


@pytest.fixture(scope="module")
def stacks(request, tmp_path_factory, unix_dir):
    s = Stacks(request, tmp_path_factory, unix_dir)
    yield s
    problems = s.finish()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def site(stacks, request):
    return stacks.site(*request.param)


def sites(apps: Sequence[str], fronts: Sequence[str] = tuple(FRONTS)):
    pairs = [(a, f) for a in apps for f in fronts]
    return pytest.mark.parametrize("site", pairs, indirect=True, ids=[f"{a}-{f}" for a, f in pairs])


FRAMEWORK_SITES = sites(["flask", "django"])
ROUTES_SITES = sites(["routes"])
TCP_FRONTS = [f for f, (_k, _c, listener) in FRONTS.items() if listener != "fastcgi-unix"]
NGINX_FRONTS = [f for f, (kind, _c, _l) in FRONTS.items() if kind == "nginx"]


TCP_ESTABLISHED = "01"  # the st column of /proc/net/tcp (include/net/tcp_states.h)


def tcp_connections(port: int) -> Dict[int, str]:
    """The TCP connections of 127.0.0.1:port seen from /proc/net/tcp, in any state but LISTEN
    (TIME_WAIT too): {the other end's port: state}."""
    out: Dict[int, str] = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, remote, state = parts[1], parts[2], parts[3]
            lport, rport = int(local.split(":")[1], 16), int(remote.split(":")[1], 16)
            if state == "0A":  # LISTEN
                continue
            if lport == port:
                out[rport] = state
            elif rport == port:
                out.setdefault(lport, state)
    return out


# ----------------------------------------------------------------------------------------------
# the framework suite behind each front end (test_frameworks.py's apps and requests)
# ----------------------------------------------------------------------------------------------

@FRAMEWORK_SITES
def test_framework_index_redirect_keepalive(site):
    c = site.conn()
    try:
        for _ in range(5):
            c.request("GET", site.urls["index"])
            r = c.getresponse()
            assert r.status == 200 and r.read() == site.urls["index_body"], site.why()
        c.request("GET", site.urls["redirect"])
        r = c.getresponse()
        r.read()
        assert r.status == 302 and r.getheader("Location", "").endswith(site.urls["target"]), site.why()
        c.request("GET", site.urls["target"])  # followed on the same connection
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"target reached"
    finally:
        c.close()


@FRAMEWORK_SITES
def test_framework_form_post(site):
    r, body = site.request("POST", site.urls["form"], body="a=1&a=2&b=x+y&c=%C3%A9",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200, site.why(body[:2000])
    assert json.loads(body) == {"a": ["1", "2"], "b": ["x y"], "c": ["\u00e9"]}


@FRAMEWORK_SITES
@pytest.mark.parametrize("size", ["small", "2mb"])
def test_framework_json(site, size):
    doc = {"items": [1, 2, 3], "name": "caf\u00e9", "nested": {"k": None}}
    if size == "2mb":  # STDIN in ~32 records, the response as large
        doc["items"] = list(range(300000))
    r, body = site.request("POST", site.urls["json"], body=json.dumps(doc).encode(),
                           headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status == 200, site.why(body[:2000])
    assert json.loads(body) == {"received": doc, "count": len(doc["items"])}


@FRAMEWORK_SITES
def test_framework_multipart_upload(site):
    data = os.urandom(3 * 1024 * 1024 + 5)
    body, ctype = multipart([("note", "hello upload")], [("file", "blob.bin", data, "application/octet-stream")])
    r, got = site.request("POST", site.urls["upload"], body=body, headers={"Content-Type": ctype}, timeout=30)
    assert r.status == 200, site.why(got[:2000])
    assert json.loads(got) == {"filename": "blob.bin", "size": len(data), "sha256": sha256(data),
                               "note": "hello upload"}


@FRAMEWORK_SITES
def test_framework_cookies(site):
    """Two Set-Cookie headers (a repeated response header) come through as two."""
    r, body = site.request("GET", site.urls["setcookie"])
    assert r.status == 200, site.why(body[:500])
    cookies = r.headers.get_all("Set-Cookie")
    assert len(cookies) == 2, cookies
    pairs = sorted(c.split(";", 1)[0] for c in cookies)
    assert pairs == ["flavour=chocolate", "second=two"]
    r, body = site.request("GET", site.urls["getcookie"], headers={"Cookie": "; ".join(pairs)})
    assert r.status == 200 and json.loads(body) == {"flavour": "chocolate", "second": "two"}


@FRAMEWORK_SITES
def test_framework_streamed_download(site):
    r, body = site.request("GET", site.urls["download"] + "?blocks=48", timeout=30)
    assert r.status == 200, site.why()
    assert len(body) == 48 * 65536 and sha256(body) == pattern_sha256(48)


@FRAMEWORK_SITES
def test_framework_not_found(site):
    r, body = site.request("GET", "/definitely/not/here")
    assert r.status == 404, site.why(body[:500])


# ----------------------------------------------------------------------------------------------
# routes_app.py behind each front end: the server's own behaviours
# ----------------------------------------------------------------------------------------------

def env_of(body: bytes) -> Dict[str, str]:
    return {k: d["value"] for k, d in json.loads(body).items() if not k.startswith("__")}


@ROUTES_SITES
def test_get_with_query_environ(site):
    r, body = site.request("GET", "/caf%C3%A9/p?x=1&y=%26", headers={"X-Custom": "custom-v", "Cookie": "a=1; b=2"})
    assert r.status == 200, site.why(body[:500])
    env = env_of(body)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/caf\xc3\xa9/p"  # decoded by the front end, latin-1 in the environ
    assert env["QUERY_STRING"] == "x=1&y=%26"
    assert env["REQUEST_URI"] == "/caf%C3%A9/p?x=1&y=%26"
    assert env.get("SCRIPT_NAME", "") == ""
    assert env["HTTP_X_CUSTOM"] == "custom-v" and env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert json.loads(body)["__body__"]["len"] == 0


@ROUTES_SITES
def test_post_large_body(site):
    """6 MiB: nginx and lighttpd send it as ~100 STDIN records (or one SCGI body)."""
    data = os.urandom(6 * 1024 * 1024 + 3)
    r, body = site.request("POST", "/upload_sha", body=data, timeout=30)
    assert r.status == 200, site.why(body[:500])
    doc = json.loads(body)
    assert doc["len"] == len(data) and doc["sha256"] == sha256(data) and doc["eof_again"]


@ROUTES_SITES
def test_chunked_upload(site):
    """A chunked request body: buffered by the front end (which then sends CONTENT_LENGTH), or,
    with fastcgi_request_buffering off (and from Apache's mod_proxy_fcgi), streamed as STDIN
    records with no CONTENT_LENGTH, the body ending at the empty STDIN record."""
    data = os.urandom(2 * 1024 * 1024 + 11)
    pieces = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    m = mark_logs(site)
    r, body = site.request("POST", "/env", body=iter(pieces), encode_chunked=True,
                           headers={"Transfer-Encoding": "chunked"}, timeout=30)
    assert r.status == 200, site.why(body[:500])
    doc = json.loads(body)
    if PEER == "uwsgi" and doc["__body__"]["len"] == 0 and site.front in STREAMING_FRONTS:
        pytest.xfail("uWSGI 2.0 reads no FastCGI body without CONTENT_LENGTH")
    assert doc["__body__"]["len"] == len(data) and doc["__body__"]["sha256"] == sha256(data), site.why()
    if site.front in STREAMING_FRONTS:
        # the front end passed the body on as it came (it had not read it all when it sent the
        # params): no CONTENT_LENGTH (nginx: and no temporary file).  A small body that arrives
        # with the head may be read whole first, and then has a CONTENT_LENGTH.
        assert doc.get("CONTENT_LENGTH", {}).get("value", "") == "", doc.get("CONTENT_LENGTH")
        assert "buffered to a temporary file" not in nginx_error_log(site)[m:], site.why()
    else:
        assert doc["CONTENT_LENGTH"]["value"] == str(len(data)), doc.get("CONTENT_LENGTH")
    r, body = site.request("POST", "/echo", body=iter([b"abc", b"defg"]), encode_chunked=True,
                           headers={"Transfer-Encoding": "chunked"})
    assert r.status == 200 and body == b"abcdefg", site.why(body[:500])


# front ends that send a chunked request body on as STDIN records while it arrives
STREAMING_FRONTS = {"nginx-fastcgi-keepconn", "apache-fastcgi"}


def mark_logs(site) -> int:
    return len(nginx_error_log(site)) if site.front.startswith("nginx") else 0


def nginx_error_log(site) -> str:
    p = site.frontend.dir / "error.log"
    return p.read_text(errors="replace") if p.exists() else ""


@sites(["routes"], NGINX_FRONTS)
def test_buffered_fronts_spool_large_bodies(site):
    """The counterpart of the observable above: with request buffering on, nginx spools a large
    body to a temporary file before it sends the request."""
    m = mark_logs(site)
    r, body = site.request("POST", "/upload_sha", body=b"z" * (1 << 20), timeout=30)
    assert r.status == 200
    spooled = "buffered to a temporary file" in nginx_error_log(site)[m:]
    assert spooled == (site.front != "nginx-fastcgi-keepconn"), site.why()


@ROUTES_SITES
def test_streaming_responses(site):
    r, body = site.request("GET", "/gen?n=40")
    assert r.status == 200 and body == b"".join(b"chunk%d;" % i for i in range(40)), site.why(body[:200])
    r, body = site.request("GET", "/write")
    assert body == b"written-1;written-2;returned"
    r, body = site.request("GET", "/list_many")
    assert body == b"abcdef"


@ROUTES_SITES
def test_large_response(site):
    """6 MiB from a generator: ~100 STDOUT records of at most 65535 bytes."""
    r, body = site.request("GET", "/big?blocks=96", timeout=30)
    assert r.status == 200, site.why()
    assert len(body) == 96 * 65536 and sha256(body) == pattern_sha256(96)


@ROUTES_SITES
def test_head(site):
    r, body = site.request("HEAD", "/hello")
    assert r.status == 200 and body == b"", site.why()
    if site.front != "apache-fastcgi":  # httpd drops a HEAD response's Content-Length (uWSGI's too)
        assert r.getheader("Content-Length") == "13"


@ROUTES_SITES
def test_status_codes(site):
    r, body = site.request("GET", "/status?code=404")
    assert r.status == 404 and r.getheader("X-Status-Route") == "404", site.why(body[:300])
    r, body = site.request("GET", "/status?code=418")
    assert r.status == 418, site.why(body[:300])


@ROUTES_SITES
def test_app_error_is_500(site):
    m = site.backend.mark()
    r, body = site.request("GET", "/raise_before")
    if PEER == "uwsgi" and r.status != 500:
        pytest.xfail("uWSGI 2.0 closes a FastCGI/SCGI connection with no response when the app raises")
    assert r.status == 500, site.why(body[:300])
    site.backend.wait_for("boom before start_response zzq", 5, start=m)
    r, body = site.request("GET", "/hello")
    assert body == b"Hello, world!"


@ROUTES_SITES
def test_many_response_headers(site):
    r, body = site.request("GET", "/many_headers?n=30&size=50")
    assert r.status == 200 and body == b"many headers", site.why(body[:300])
    assert [r.getheader(f"X-H{i}") for i in range(30)] == [f"{i}-" + "v" * 50 for i in range(30)]


@ROUTES_SITES
def test_client_keepalive(site):
    c = site.conn()
    try:
        for i in range(20):
            c.request("GET", f"/env?i={i}")
            r = c.getresponse()
            assert r.status == 200 and env_of(r.read())["QUERY_STRING"] == f"i={i}", site.why()
    finally:
        c.close()


@ROUTES_SITES
def test_concurrent_clients(site):
    errors = []

    def worker(n):
        try:
            c = site.conn()
            for i in range(4):
                body = f"{n}-{i}".encode() * 500
                c.request("POST", "/echo", body=body)
                r = c.getresponse()
                got = r.read()
                if r.status != 200 or got != body:
                    errors.append((n, i, r.status, got[:50]))
            c.close()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append((n, repr(e)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, site.why(repr(errors))


@sites(["routes"], TCP_FRONTS)
def test_upstream_connections(site):
    """fastcgi_keep_conn on (FCGI_KEEP_CONN, upstream keepalive): ten requests in a row open no
    connection to the server and close none (the ones nginx keeps stay ESTABLISHED throughout);
    without it (and over SCGI, from lighttpd, from Apache) the server closes each request's
    connection after the response.  Seen on the server's port in /proc/net/tcp, which the app
    cannot influence.  One client connection: a client that hangs up at once can make nginx drop
    an upstream connection whose END_REQUEST it has not read yet."""
    port = site.upstream[1]
    before = tcp_connections(port)

    def established() -> set:
        return {p for p, s in tcp_connections(port).items() if s == TCP_ESTABLISHED}

    keep = site.front == "nginx-fastcgi-keepconn"
    if keep and PEER == "uwsgi":
        pytest.xfail("uWSGI 2.0 closes a FastCGI connection after each request (FCGI_KEEP_CONN ignored)")
    snapshots = []
    c = site.conn()
    try:
        for i in range(10):
            c.request("GET", f"/hello?i={i}")
            r = c.getresponse()
            assert r.read() == b"Hello, world!", site.why()
            if keep:
                snapshots.append(established())
            else:  # the server closes its end after the response: nothing of ours stays open
                wait_until(lambda: not (established() - {p for p, s in before.items() if s == TCP_ESTABLISHED}),
                           5, what=f"the server to close the connection of request {i}")
        closed = {p for p, s in tcp_connections(port).items() if s != TCP_ESTABLISHED and before.get(p) != s}
    finally:
        c.close()
    if keep:
        assert snapshots[0] and all(s == snapshots[0] for s in snapshots), (
            f"expected the same open upstream connections throughout, got {snapshots}")
        assert len(snapshots[0]) <= 8, snapshots[0]  # upstream { keepalive 8; }
        assert not closed, f"upstream connections were closed: {closed}"


# ----------------------------------------------------------------------------------------------
# parity: uwsgi_pass, fastcgi_pass and scgi_pass give one environ
# ----------------------------------------------------------------------------------------------

# Vars whose values differ by the stack and not by the protocol: each nginx has its own listen
# port and prefix (html/ under it is $document_root), and each request its own client port.
PER_STACK = {"SERVER_PORT", "DOCUMENT_ROOT", "REMOTE_PORT"}


def params_sent(site) -> Dict[str, str]:
    """The vars a front end's config sets ({name: value expression}): its params file, as
    included, and its own *_param lines."""
    text = (site.frontend.dir / "server.conf").read_text()
    out: Dict[str, str] = {}
    for inc in re.findall(r"^\s*include\s+(\w+_params);", text, re.M):
        text = (site.frontend.dir / inc).read_text() + text
    for name, value in re.findall(r'^\s*(?:uwsgi|fastcgi|scgi)_param\s+(\S+)\s+("[^"]*"|[^\s;]+)', text, re.M):
        out[name] = value
    return out


def test_environ_parity(stacks):
    """The same request (method, path, query, a body with its type, a repeated header, cookies)
    through uwsgi_pass, fastcgi_pass and scgi_pass: the environs are equal but for

    - vars only some of the params files send (fastcgi_params: GATEWAY_INTERFACE,
      SERVER_SOFTWARE, SERVER_ADDR, REDIRECT_STATUS, REMOTE_USER, DOCUMENT_URI; scgi_params:
      SCGI, DOCUMENT_URI; the confs add PATH_INFO for fastcgi and scgi, and SCRIPT_NAME "" for
      fastcgi, which uwsgi_params leaves to the server, ""): computed from the files, so a
      host's own params files are taken as they are;
    - PER_STACK: SERVER_PORT, DOCUMENT_ROOT, REMOTE_PORT;
    - on a bodiless request, CONTENT_LENGTH: nginx's scgi module always sends it ("0", SCGI
      requires it), uwsgi_params and fastcgi_params send $content_length, "" then.

    The repeated request header is compared too: nginx 1.22 sends it as two vars (1.23+ joins
    them), and the environ is the same whichever protocol carried them.

    Non-string values (wsgi.input, wsgi.errors, ...) are compared by type."""
    fronts = list(PARITY_FRONTS)
    got = {}
    for front in fronts:
        site = stacks.site("routes", front)
        envs = []
        for method, body in (("POST", b'{"k": "v"}'), ("GET", None)):
            headers = {"X-Rep": "one", "Cookie": "a=1; b=2", "X-Custom": "c"}
            if body:
                headers["Content-Type"] = "application/json"
            c = site.conn()
            try:
                c.putrequest(method, "/par/ity?q=1&r=%41", skip_accept_encoding=True)
                for k, v in headers.items():
                    c.putheader(k, v)
                c.putheader("X-Rep", "two")  # a repeated request header
                if body:
                    c.putheader("Content-Length", str(len(body)))
                c.endheaders(body)
                r = c.getresponse()
                raw = r.read()
            finally:
                c.close()
            assert r.status == 200, site.why(raw[:300])
            doc = json.loads(raw)
            assert doc["__body__"]["len"] == len(body or b"")
            envs.append({k: (d["value"] if d["type"] == "str" else d["type"])
                         for k, d in doc.items() if not k.startswith("__")})
        got[front] = (site, envs)
    base_front = fronts[0]
    base_site, base_envs = got[base_front]
    base_params = params_sent(base_site)
    for front in fronts[1:]:
        site, envs = got[front]
        params = params_sent(site)
        only_some = set(params) ^ set(base_params)
        for which, (a, b) in enumerate(zip(base_envs, envs)):
            bodiless = which == 1
            differ = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
            allowed = only_some | PER_STACK | ({"CONTENT_LENGTH"} if bodiless else set())
            unexpected = {k: (a.get(k), b.get(k)) for k in differ - allowed}
            assert not unexpected, (f"{base_front} vs {front} ({'GET' if bodiless else 'POST'}): vars that "
                                    f"differ and are not protocol-specific: {unexpected}")
            for k in only_some & (set(a) | set(b)):  # what the params do send arrives as sent
                if k in params and k in b and "$" not in params[k]:
                    assert b[k] == params[k].strip('"'), (front, k, b[k], params[k])
            for k in ("PATH_INFO", "QUERY_STRING", "REQUEST_URI", "REQUEST_METHOD", "HTTP_COOKIE",
                      "HTTP_X_CUSTOM", "HTTP_X_REP", "wsgi.url_scheme"):
                assert k in b and a.get(k) == b[k], (front, k, a.get(k), b.get(k))
            # (uWSGI leaves SCRIPT_NAME out for the default app; uwsgipy always sets it)
            assert a.get("SCRIPT_NAME", "") == b.get("SCRIPT_NAME", "") == "", front
            if bodiless:
                assert (a.get("CONTENT_LENGTH", ""), b.get("CONTENT_LENGTH", "")) in (
                    ("", ""), ("", "0"), ("0", ""), ("0", "0")), (front, a.get("CONTENT_LENGTH"),
                                                                  b.get("CONTENT_LENGTH"))


# ----------------------------------------------------------------------------------------------
# raw clients against the server alone
# ----------------------------------------------------------------------------------------------

RAW_BUFFER_SIZE = 8192  # --buffer-size of the raw server: the largest PARAMS block / SCGI head


@pytest.fixture(scope="module")
def raw(module_server_factory):
    if PEER != "uwsgipy":
        pytest.skip("the raw tests check uwsgipy itself")
    srv = module_server_factory("--fastcgi-socket", "127.0.0.1:0", "--scgi-socket", "127.0.0.1:0",
                                "--buffer-size", str(RAW_BUFFER_SIZE), "--wsgi-file", ROUTES)
    kinds = dict(srv.listeners)
    srv.fcgi = parse_addr(kinds["fastcgi-socket"])
    srv.scgi = parse_addr(kinds["scgi-socket"])
    return srv


def fcgi_get(addr, path="/hello", query="", keep_conn=False, request_id=1) -> FcgiReply:
    return fcgi_exchange(addr, fcgi_request(fcgi_vars("GET", path, query), request_id=request_id,
                                            keep_conn=keep_conn), request_id)


def worker_pid(raw) -> int:
    reply = fcgi_get(raw.fcgi, "/pid")
    resp = reply.response()
    assert resp.status == 200, resp
    return int(resp.body)


def test_raw_fastcgi_request(raw):
    """The response: CGI form (Status: first), STDOUT records of at most 65535 bytes padded to a
    multiple of 8, an empty STDOUT, END_REQUEST (0, FCGI_REQUEST_COMPLETE); the connection
    closed after it (no FCGI_KEEP_CONN)."""
    body = b"hello fastcgi body " * 100
    with Conn(raw.fcgi) as c:
        c.send(fcgi_request(fcgi_vars("POST", "/echo", body=body, content_type="text/plain"), body,
                            request_id=7, stdin_size=333))
        reply = read_reply(c, 7)
        assert c.wait_closed(5), "the connection stays open without FCGI_KEEP_CONN"
        assert not c.buf
    assert (reply.app_status, reply.protocol_status) == (0, FCGI_REQUEST_COMPLETE)
    assert reply.stdout.startswith(b"Status: 200 OK\r\n"), reply.stdout[:100]
    resp = reply.response()
    assert resp.body == body and resp.header("Content-Type") == "text/plain"
    assert resp.header("X-Env-Content-Length") == str(len(body))
    for r in reply.records:
        assert len(r.content) <= 65535 and (len(r.content) + r.padding) % 8 == 0, r


@pytest.mark.parametrize("proto", ["fastcgi", "scgi"])
def test_raw_request_in_small_pieces(raw, proto):
    """The head and the body arriving a few bytes at a time (every record header split)."""
    body = bytes(range(256)) * 12
    v = fcgi_vars("POST", "/echo", body=body, content_type="application/octet-stream")
    if proto == "fastcgi":
        data, addr = fcgi_request(v, body, params_size=100, stdin_size=1000), raw.fcgi
    else:
        data, addr = scgi_request(v, body), raw.scgi
    with Conn(addr) as c:
        c.send_slowly(data, 13)
        if proto == "fastcgi":
            resp = read_reply(c).response()
        else:
            assert c.wait_closed(IO_TIMEOUT)
            resp = cgi_response(bytes(c.buf))
    assert resp.status == 200 and resp.body == body, resp


def test_raw_fastcgi_large_response_records(raw):
    reply = fcgi_get(raw.fcgi, "/big", "blocks=40")
    resp = reply.response()
    assert resp.status == 200 and sha256(resp.body) == pattern_sha256(40)
    out = [r for r in reply.records if r.type == FCGI_STDOUT]
    assert len(out) >= 40 and all(len(r.content) <= 65535 and (len(r.content) + r.padding) % 8 == 0 for r in out)


def test_raw_fastcgi_head_and_params_forms(raw):
    """HEAD: no body; params split across PARAMS records at every few bytes (a pair spanning
    records), a value above 127 bytes (4-byte length)."""
    long_value = "L" * 300
    v = fcgi_vars("HEAD", "/env", extra={"HTTP_X_LONG": long_value})
    reply = fcgi_exchange(raw.fcgi, fcgi_request(v, params_size=7))
    resp = reply.response("HEAD")
    assert resp.status == 200 and resp.body == b"", resp
    v = fcgi_vars("GET", "/env", "a=1", extra={"HTTP_X_LONG": long_value})
    reply = fcgi_exchange(raw.fcgi, fcgi_request(v, params_size=5))
    env = env_of(reply.response().body)
    assert env["HTTP_X_LONG"] == long_value and env["QUERY_STRING"] == "a=1"


def test_raw_fastcgi_keep_conn(raw):
    """FCGI_KEEP_CONN: several requests on one connection, request ids reused or not; the
    connection is closed by the server after the first request without the flag."""
    with Conn(raw.fcgi) as c:
        for rid in (1, 2, 1, 300):
            c.send(fcgi_request(fcgi_vars("GET", "/env", f"rid={rid}"), request_id=rid, keep_conn=True))
            reply = read_reply(c, rid)
            assert env_of(reply.response().body)["QUERY_STRING"] == f"rid={rid}"
        # two requests sent at once (pipelined): answered in order
        c.send(fcgi_request(fcgi_vars("GET", "/hello"), request_id=5, keep_conn=True)
               + fcgi_request(fcgi_vars("GET", "/env", "last=1"), request_id=6, keep_conn=False))
        assert read_reply(c, 5).response().body == b"Hello, world!"
        assert env_of(read_reply(c, 6).response().body)["QUERY_STRING"] == "last=1"
        assert c.wait_closed(5), "the connection stays open after a request without FCGI_KEEP_CONN"


def test_raw_fastcgi_get_values(raw):
    with Conn(raw.fcgi) as c:
        c.send(fcgi_record(FCGI_GET_VALUES, 0, fcgi_nvs([("FCGI_MAX_CONNS", ""), ("FCGI_MAX_REQS", ""),
                                                         ("FCGI_MPXS_CONNS", ""), ("FCGI_NOT_A_NAME", "")])))
        r = read_record(c)
    assert (r.type, r.request_id) == (FCGI_GET_VALUES_RESULT, 0), r
    values = decode_nvs(r.content)
    assert set(values) == {"FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"}, values
    assert values["FCGI_MPXS_CONNS"] == "0"
    assert values["FCGI_MAX_CONNS"].isdigit() and int(values["FCGI_MAX_CONNS"]) >= 1
    assert values["FCGI_MAX_REQS"].isdigit() and int(values["FCGI_MAX_REQS"]) >= 1


def decode_nvs(data: bytes) -> Dict[str, str]:
    out, i = {}, 0

    def length():
        nonlocal i
        if data[i] < 128:
            i += 1
            return data[i - 1]
        i += 4
        return struct.unpack(">I", data[i - 4:i])[0] & 0x7FFFFFFF
    while i < len(data):
        n, m = length(), length()
        out[data[i:i + n].decode("latin-1")] = data[i + n:i + n + m].decode("latin-1")
        i += n + m
    return out


def test_raw_fastcgi_unknown_management_type(raw):
    with Conn(raw.fcgi) as c:
        c.send(fcgi_record(42, 0, b"whatever", 0))
        r = read_record(c)
        assert (r.type, r.request_id) == (FCGI_UNKNOWN_TYPE, 0), r
        assert r.content == bytes([42]) + b"\0" * 7
        # the connection goes on: a request after it is served
        c.send(fcgi_request(fcgi_vars("GET", "/hello")))
        assert read_reply(c).response().body == b"Hello, world!"


@pytest.mark.parametrize("role", [FCGI_AUTHORIZER, FCGI_FILTER])
def test_raw_fastcgi_other_roles(raw, role):
    pid = worker_pid(raw)
    with Conn(raw.fcgi) as c:
        c.send(fcgi_request(fcgi_vars("GET", "/hello"), request_id=3, role=role))
        r = read_record(c)
        assert (r.type, r.request_id) == (FCGI_END_REQUEST, 3), r
        assert struct.unpack(">IB3x", r.content)[1] == FCGI_UNKNOWN_ROLE
    assert worker_pid(raw) == pid


def test_raw_fastcgi_abort_during_body(raw):
    """FCGI_ABORT_REQUEST while the body comes: the request is closed (no response from the app,
    which is never called), and the worker serves the next connection."""
    pid = worker_pid(raw)
    m = raw.mark()
    body = b"b" * 100000
    with Conn(raw.fcgi) as c:
        c.send(fcgi_begin(1) + fcgi_stream(FCGI_PARAMS, 1, fcgi_nvs(fcgi_vars("POST", "/echo", body=body)))
               + fcgi_record(FCGI_STDIN, 1, body[:30000]) + fcgi_record(FCGI_ABORT_REQUEST, 1))
        assert c.wait_closed(5), "the connection stays open after ABORT_REQUEST"
        assert FCGI_STDOUT not in [rec.type for rec in records_in(bytes(c.buf))], c.buf[:200]
    assert worker_pid(raw) == pid
    assert not [a for a in raw.access_lines(m) if a.group("uri").startswith("/echo")]


def records_in(data: bytes) -> List[Record]:
    out, i = [], 0
    while i + 8 <= len(data):
        version, rtype, rid, n, pad = struct.unpack(">BBHHBx", data[i:i + 8])
        out.append(Record(version, rtype, rid, data[i + 8:i + 8 + n], pad))
        i += 8 + n + pad
    return out


BEGIN_GET = fcgi_begin(1)
PARAMS_GET = fcgi_stream(FCGI_PARAMS, 1, fcgi_nvs(fcgi_vars("GET", "/hello")))
BIG_PARAMS = fcgi_nvs(fcgi_vars("GET", "/hello", extra={"HTTP_X_BIG": "x" * (RAW_BUFFER_SIZE + 100)}))

# id -> (bytes, a word the log line must contain besides the protocol name)
FCGI_BAD = {
    "version-2": (fcgi_record(FCGI_BEGIN_REQUEST, 1, struct.pack(">HB5x", 1, 0), version=2) + PARAMS_GET
                  + fcgi_stream(FCGI_STDIN, 1, b""), "version"),
    "begin-length-lies": (fcgi_record(FCGI_BEGIN_REQUEST, 1, struct.pack(">HB5x", 1, 0) + b"\0" * 8)
                          + PARAMS_GET + fcgi_stream(FCGI_STDIN, 1, b""), "begin"),
    "begin-request-id-0": (fcgi_record(FCGI_BEGIN_REQUEST, 0, struct.pack(">HB5x", 1, 0)) + PARAMS_GET,
                           "request"),
    "pair-past-params": (BEGIN_GET + fcgi_record(FCGI_PARAMS, 1, b"\x05\x7fSHORTvalue") + fcgi_record(FCGI_PARAMS, 1)
                         + fcgi_stream(FCGI_STDIN, 1, b""), "param"),
    "stdin-before-params-end": (BEGIN_GET + fcgi_record(FCGI_PARAMS, 1, fcgi_nvs({"A": "b"}))
                                + fcgi_stream(FCGI_STDIN, 1, b"x"), "params"),
    "body-longer-than-content-length": (
        BEGIN_GET + fcgi_stream(FCGI_PARAMS, 1, fcgi_nvs(fcgi_vars("POST", "/echo", body=b"12345")))
        + fcgi_stream(FCGI_STDIN, 1, b"1234567890"), "length"),
    "body-shorter-than-content-length": (
        BEGIN_GET + fcgi_stream(FCGI_PARAMS, 1, fcgi_nvs(fcgi_vars("POST", "/echo", body=b"1234567890")))
        + fcgi_stream(FCGI_STDIN, 1, b"12345"), "length"),
    "params-past-buffer-size": (BEGIN_GET + fcgi_stream(FCGI_PARAMS, 1, BIG_PARAMS, 1000)
                                + fcgi_stream(FCGI_STDIN, 1, b""), "buffer-size"),
    "stdin-other-request": (
        BEGIN_GET + fcgi_stream(FCGI_PARAMS, 1, fcgi_nvs(fcgi_vars("POST", "/echo", body=b"12345")))
        + fcgi_record(FCGI_STDIN, 2, b"12345") + fcgi_record(FCGI_STDIN, 2), "stdin"),
}


@pytest.mark.parametrize("case", list(FCGI_BAD))
def test_raw_fastcgi_malformed(raw, case):
    """One log line naming FastCGI and the problem, the connection closed (no 200), the same
    worker serving the next connection."""
    data, word = FCGI_BAD[case]
    check_bad_input(raw, raw.fcgi, data, "fastcgi", word)


def check_bad_input(raw, addr, data: bytes, proto: str, word: str) -> None:
    pid = worker_pid(raw)
    m = raw.mark()
    with Conn(addr) as c:
        c.send(data, ignore_errors=True)
        closed = c.wait_closed(5)
        got = bytes(c.buf)
    assert closed, f"the connection stays open after bad {proto} input; got {got[:200]!r}"
    assert b"200 OK" not in got, got[:300]
    line = raw.wait_for(lambda ln: proto in ln.lower() and not ACCESS_LINE.search(ln), 5, start=m)
    assert word.lower() in line.lower(), f"the log line does not say what was wrong ({word!r}): {line!r}"
    others = [ln for ln in raw.lines[m:] if proto in ln.lower() and not ACCESS_LINE.search(ln)]
    assert len(others) == 1, f"expected one log line, got {others}"
    assert worker_pid(raw) == pid


ACCESS_LINE = re.compile(r'"\S+ \S+ [^"\s]+" \d{3} ')

SCGI_OK = scgi_request(fcgi_vars("GET", "/hello"))
SCGI_HEAD = SCGI_OK[SCGI_OK.index(b":") + 1:-1]  # the pairs, without the netstring framing


def netstring(pairs: bytes) -> bytes:
    return str(len(pairs)).encode() + b":" + pairs + b","


# id -> (bytes, a word the log line must contain besides the protocol name)
SCGI_BAD = {
    "leading-zero": (b"0" + SCGI_OK, "leading"),
    "no-comma": (netstring(SCGI_HEAD)[:-1] + b";", "netstring"),
    "content-length-not-first": (netstring(b"SCGI\x001\x00CONTENT_LENGTH\x000\x00REQUEST_METHOD\x00GET\x00"),
                                 "content_length"),
    "no-scgi-1": (netstring(b"CONTENT_LENGTH\x000\x00REQUEST_METHOD\x00GET\x00PATH_INFO\x00/hello\x00"), "scgi 1"),
    "odd-nuls": (netstring(b"CONTENT_LENGTH\x000\x00SCGI\x001\x00REQUEST_METHOD\x00"), "value"),
    "not-a-netstring": (b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", "http request"),
    "head-past-buffer-size": (scgi_request(fcgi_vars("GET", "/hello",
                                                     extra={"HTTP_X_BIG": "x" * (RAW_BUFFER_SIZE + 100)})),
                              "buffer-size"),
}


def test_raw_scgi_request(raw):
    body = b"scgi body " * 1000
    resp, raw_bytes = scgi_exchange(raw.scgi, scgi_request(fcgi_vars("POST", "/echo", body=body,
                                                                     content_type="text/plain"), body))
    assert raw_bytes.startswith(b"Status: 200 OK\r\n"), raw_bytes[:100]
    assert resp.status == 200 and resp.body == body
    assert resp.header("X-Env-Content-Length") == str(len(body))
    resp, _ = scgi_exchange(raw.scgi, scgi_request(fcgi_vars("GET", "/status", "code=404")))
    assert resp.status == 404


@pytest.mark.parametrize("case", list(SCGI_BAD))
def test_raw_scgi_malformed(raw, case):
    data, word = SCGI_BAD[case]
    check_bad_input(raw, raw.scgi, data, "scgi", word)


# ----------------------------------------------------------------------------------------------
# real uWSGI: the same raw FastCGI requests, the same answers
# ----------------------------------------------------------------------------------------------

DIFF_REQUESTS = [
    ("GET", "/hello", "", b""),
    ("GET", "/gen", "n=3", b""),
    ("GET", "/status", "code=404", b""),
    ("GET", "/many_headers", "n=5&size=10", b""),
    ("POST", "/echo", "", b"posted body " * 50),
    ("HEAD", "/hello", "", b""),
]
SERVER_ADDED = {"content-length", "date"}
# routes_app's /echo reports wsgi.input_terminated: uwsgipy sets it (the body ends where the STDIN
# stream ends), uWSGI 2.0 does not
ENVIRON_ECHOES = {"x-input-terminated"}


def test_same_answers_as_real_uwsgi(raw):
    uport = free_port()
    fport = free_port()
    with real_uwsgi(["--http-socket", f"127.0.0.1:{uport}", "--fastcgi-socket", f"127.0.0.1:{fport}",
                     "--wsgi-file", ROUTES, "--buffer-size", "65535"], cwd=REPO):
        for method, path, query, body in DIFF_REQUESTS:
            data = fcgi_request(fcgi_vars(method, path, query, body=body,
                                          content_type="text/plain" if body else None), body)
            theirs = fcgi_exchange(("127.0.0.1", fport), data)
            ours = fcgi_exchange(raw.fcgi, data)
            assert (ours.app_status, ours.protocol_status) == (theirs.app_status, theirs.protocol_status)
            a, b = theirs.response(method), ours.response(method)
            what = f"{method} {path}?{query}"
            assert b.status == a.status and b.reason == a.reason, (what, a, b)
            strip = lambda r: [(k.lower(), v) for k, v in r.headers  # noqa: E731
                               if k.lower() not in SERVER_ADDED | ENVIRON_ECHOES]
            assert strip(b) == strip(a), (what, a.headers, b.headers)
            if method == "HEAD":  # uWSGI sends the body anyway (the web server drops it)
                assert b.body == b"", (what, b.body[:200])
            else:
                assert b.body == a.body, (what, a.body[:200], b.body[:200])
