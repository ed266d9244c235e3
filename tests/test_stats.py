"""The stats server (uwsgipy/stats.py): the uWSGI-format document built from a fake arbiter
over a real scoreboard, the socket server on TCP / unix / abstract addresses in raw and HTTP
mode, and a real master (2 workers) read over the stats socket and watched by `uwsgitop`, the
tool the format exists for, run in a pseudo-terminal."""
from __future__ import annotations

import fcntl
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence

import pytest

from helpers import (IO_TIMEOUT, connect, http_request, parse_addr, process_tree, short_tmpdir,
                     wait_until)

from uwsgipy import __version__
from uwsgipy.arbiter import WorkerInfo
from uwsgipy.scoreboard import Scoreboard
from uwsgipy.sockets import bind_listener
from uwsgipy.stats import listen_queue, snapshot, start_stats_server

STATS_RE = re.compile(r"uwsgipy: stats server on (\S+)")

# Keys and JSON types uWSGI 2.0 emits (core/master_utils.c) that the consumers read:
# uwsgitop, Telegraf inputs.uwsgi, Metricbeat, and timonwong/uwsgi_exporter (which also reads
# each worker's apps).
TOP_KEYS = {"version": str, "listen_queue": int, "listen_queue_errors": int, "signal_queue": int,
            "load": int, "pid": int, "uid": int, "gid": int, "cwd": str, "locks": list,
            "sockets": list, "workers": list}
SOCKET_KEYS = {"name": str, "proto": str, "queue": int, "max_queue": int, "shared": int,
               "can_offload": int}
WORKER_KEYS = {"id": int, "pid": int, "accepting": int, "requests": int, "delta_requests": int,
               "exceptions": int, "harakiri_count": int, "signals": int, "signal_queue": int,
               "status": str, "rss": int, "vsz": int, "running_time": int, "last_spawn": int,
               "respawn_count": int, "tx": int, "avg_rt": int, "apps": list, "cores": list}
APP_KEYS = {"id": int, "modifier1": int, "mountpoint": str, "startup_time": int, "requests": int,
            "exceptions": int, "chdir": str}
CORE_KEYS = {"id": int, "requests": int, "static_requests": int, "routed_requests": int,
             "offloaded_requests": int, "write_errors": int, "read_errors": int,
             "in_request": int, "vars": list, "req_info": dict}


def check_shape(doc: Dict[str, Any]) -> None:
    """Every key uWSGI has, with uWSGI's JSON type (ints stay ints: uwsgitop formats with %d)."""
    def keys(obj: Dict[str, Any], spec: Dict[str, type], where: str) -> None:
        for k, t in spec.items():
            assert k in obj, f"{where}: missing {k!r}"
            assert type(obj[k]) is t, f"{where}.{k} is {type(obj[k]).__name__}, not {t.__name__}"
    keys(doc, TOP_KEYS, "doc")
    for s in doc["sockets"]:
        keys(s, SOCKET_KEYS, "socket")
        assert s["proto"] in ("uwsgi", "http")
    for w in doc["workers"]:
        keys(w, WORKER_KEYS, f"worker {w.get('id')}")
        assert w["status"] in ("idle", "busy", "cheap")
        for a in w["apps"]:
            keys(a, APP_KEYS, f"worker {w['id']} app")
        for c in w["cores"]:
            keys(c, CORE_KEYS, f"worker {w['id']} core")
            assert c["in_request"] in (0, 1)
    assert json.loads(json.dumps(doc)) == doc


# ----------------------------------------------------------------------------------------------
# snapshot() against a fake arbiter
# ----------------------------------------------------------------------------------------------

def fake_arbiter(workers: Sequence[WorkerInfo] = (), listeners=(), num_workers: int = 2,
                 threads: int = 2,
                 respawn_counts: Optional[Dict[int, int]] = None) -> SimpleNamespace:
    return SimpleNamespace(
        cfg=SimpleNamespace(listen=100, chdir=None),
        pid=os.getpid(), num_workers=num_workers, listeners=list(listeners),
        workers={w.pid: w for w in workers}, scoreboard=Scoreboard(num_workers + 2, threads),
        respawn_counts=respawn_counts or {})


def worker_info(wid: int, pid: int, respawns: int = 0, stopping: bool = False) -> WorkerInfo:
    return WorkerInfo(wid=wid, pid=pid, spawned=time.monotonic(), spawned_wall=time.time() - 60,
                      respawns=respawns, stopping=stopping, slot=wid)


def test_snapshot_sums_cores_and_reports_status():
    me = os.getpid()
    arb = fake_arbiter([worker_info(1, me, respawns=2)], respawn_counts={1: 3, 2: 4})
    c0, c1 = arb.scoreboard.cores(1)
    c0.pid = c1.pid = me
    c0.requests, c0.exceptions, c0.tx, c0.avg_rt, c0.running_us = 5, 1, 100, 200.0, 1100
    c1.requests, c1.tx, c1.avg_rt, c1.running_us = 3, 20, 1000.0, 2900
    c1.request_started = time.monotonic() - 2.0
    c1.method, c1.uri = b"POST", b"/slow?x=1"

    doc = snapshot(arb)
    check_shape(doc)
    assert doc["version"] == __version__ and doc["pid"] == me and doc["uid"] == os.getuid()
    assert [w["id"] for w in doc["workers"]] == [1, 2]
    w1, w2 = doc["workers"]
    assert (w1["pid"], w1["status"], w1["accepting"]) == (me, "busy", 1)
    assert (w1["requests"], w1["delta_requests"], w1["exceptions"], w1["tx"]) == (8, 8, 1, 120)
    assert w1["avg_rt"] == (5 * 200 + 3 * 1000) // 8 and w1["running_time"] == 1100 + 2900
    assert w1["respawn_count"] == 3 and abs(w1["last_spawn"] - (time.time() - 60)) < 2
    assert w1["rss"] > 1 << 20 and w1["vsz"] >= w1["rss"]
    assert w1["apps"][0]["requests"] == 8 and w1["apps"][0]["exceptions"] == 1
    idle, busy = w1["cores"]
    assert (idle["id"], idle["requests"], idle["in_request"], idle["vars"]) == (0, 5, 0, [])
    assert (busy["id"], busy["requests"], busy["in_request"]) == (1, 3, 1)
    assert busy["vars"] == ["REQUEST_METHOD=POST", "REQUEST_URI=/slow?x=1"]
    assert abs(busy["req_info"]["request_start"] - (time.time() - 2)) <= 1
    # A worker id with no process (dead, not yet respawned): uWSGI's "cheap" entry.
    assert (w2["pid"], w2["status"], w2["accepting"], w2["apps"]) == (0, "cheap", 0, [])
    assert w2["respawn_count"] == 4 and len(w2["cores"]) == 2


def test_snapshot_one_entry_per_worker_id():
    """A worker being recycled and its replacement share the id: the replacement is shown;
    a worker above `processes` (after SIGTTOU, still finishing) keeps its own entry."""
    me = os.getpid()
    old = worker_info(1, 999_999_01, stopping=True)
    new = worker_info(1, me, respawns=1)
    extra = worker_info(3, me + 1, stopping=True)
    arb = fake_arbiter([old, new, worker_info(2, me + 2), extra], num_workers=2, threads=1)
    next(arb.scoreboard.cores(1)).pid = me
    next(arb.scoreboard.cores(2)).pid = me + 2
    doc = snapshot(arb)
    check_shape(doc)
    assert [(w["id"], w["pid"]) for w in doc["workers"]] == [(1, me), (2, me + 2), (3, me + 1)]
    assert [w["accepting"] for w in doc["workers"]] == [1, 1, 0]
    assert all(w["status"] == "idle" for w in doc["workers"])


def test_snapshot_idle_worker_not_yet_serving_is_not_accepting():
    arb = fake_arbiter([worker_info(1, os.getpid())], num_workers=1, threads=1)
    (w,) = snapshot(arb)["workers"]
    assert (w["status"], w["accepting"], w["requests"], w["avg_rt"]) == ("idle", 0, 0, 0)


def test_snapshot_sockets_and_listen_queue():
    tcp = bind_listener("http-socket", "127.0.0.1:0", backlog=7)
    d = short_tmpdir()
    unix = bind_listener("socket", os.path.join(d, "app.sock"), backlog=7)
    clients: List[socket.socket] = []
    try:
        clients = [connect(parse_addr(tcp.bound)) for _ in range(3)]
        arb = fake_arbiter(listeners=[tcp, unix])
        doc = wait_until(lambda: (lambda d: d["listen_queue"] == 3 and d)(snapshot(arb)), 5,
                         what="3 connections in the accept queue")
        check_shape(doc)
        s_tcp, s_unix = doc["sockets"]
        assert s_tcp == {"name": tcp.bound, "proto": "http", "queue": 3, "max_queue": 7,
                         "shared": 0, "can_offload": 0}
        # Unix sockets through sock_diag: nobody connected, the backlog as bound.
        assert (s_unix["name"], s_unix["proto"], s_unix["queue"], s_unix["max_queue"]) == \
            (unix.bound, "uwsgi", 0, 7)
        assert doc["load"] == doc["listen_queue"] == 3
    finally:
        for c in clients:
            c.close()
        for lst in (tcp, unix):
            lst.sock.close()
        os.unlink(os.path.join(d, "app.sock"))
        os.rmdir(d)


def test_listen_queue_unknown_is_zero():
    s = socket.socket()
    s.close()
    assert listen_queue(s) == (0, 0)
    a, b = socket.socketpair()
    with a, b:
        assert listen_queue(a) == (0, 0)


# ----------------------------------------------------------------------------------------------
# the socket server (raw and HTTP) on a fake arbiter
# ----------------------------------------------------------------------------------------------

def read_raw(addr) -> bytes:
    with connect(addr) as s:
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


@pytest.fixture
def stats_dir():
    d = short_tmpdir()
    yield d
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


def test_server_raw_unix_socket_replaces_stale_file_and_vacuums(stats_dir):
    path = os.path.join(stats_dir, "stats.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # a socket file nobody listens on any more
    stale.close()
    srv = start_stats_server(path, fake_arbiter([worker_info(1, os.getpid())]), http=False)
    try:
        for _ in range(3):  # every connection gets a whole document, then EOF
            doc = json.loads(read_raw(path))
            check_shape(doc)
            assert [w["id"] for w in doc["workers"]] == [1, 2]
    finally:
        srv.shutdown()
        srv.server_close()
    assert not os.path.exists(path)


def test_server_raw_abstract_socket():
    name = f"@uwsgipy-stats-test-{os.getpid()}"
    srv = start_stats_server(name, fake_arbiter(), http=False)
    try:
        check_shape(json.loads(read_raw("\0" + name[1:])))
    finally:
        srv.shutdown()
        srv.server_close()


def test_server_http_mode():
    srv = start_stats_server("127.0.0.1:0", fake_arbiter(), http=True)
    try:
        host, port = srv.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=IO_TIMEOUT)
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert (resp.status, resp.version) == (200, 10)
        assert resp.getheader("Content-Type") == "application/json"
        assert int(resp.getheader("Content-Length")) == len(body)
        check_shape(json.loads(body))
        r = http_request((host, port), "GET", "/any/path", version="HTTP/1.0")
        assert r.status == 200 and r.raw_head.startswith(b"HTTP/1.0 200 OK\r\n")
        check_shape(r.json())
        assert http_request((host, port), "DELETE", "/").status == 501
    finally:
        srv.shutdown()
        srv.server_close()


def test_server_bind_error_names_the_address():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        addr = "127.0.0.1:%d" % busy.getsockname()[1]
        with pytest.raises(OSError, match=re.escape(addr)):
            start_stats_server(addr, fake_arbiter(), http=False)


def test_server_survives_a_client_that_hangs_up():
    srv = start_stats_server("127.0.0.1:0", fake_arbiter(), http=False)
    try:
        addr = srv.server_address[:2]
        for _ in range(20):
            s = socket.create_connection(addr)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST before the document is read
        check_shape(json.loads(read_raw(addr)))
    finally:
        srv.shutdown()
        srv.server_close()


# ----------------------------------------------------------------------------------------------
# a real master, and uwsgitop
# ----------------------------------------------------------------------------------------------

APP = textwrap.dedent("""
    import os, time

    def application(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/boom":
            raise RuntimeError("boom (expected by test_stats)")
        if path == "/slow":
            flag = environ["QUERY_STRING"]
            deadline = time.monotonic() + 10
            while not os.path.exists(flag) and time.monotonic() < deadline:
                time.sleep(0.01)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]
""")


@pytest.fixture(scope="module")
def app_file(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("stats_app") / "app.py"
    p.write_text(APP)
    return str(p)


def start_master(server_factory, app_file: str, stats: str, *extra: str):
    srv = server_factory("--master", "--processes", "2", "--http-socket", "127.0.0.1:0",
                         "--wsgi-file", app_file, "--stats", stats, *extra)
    stats_addr = STATS_RE.search(srv.wait_for(STATS_RE)).group(1)
    return srv, stats_addr


def stats_of(addr) -> Dict[str, Any]:
    return json.loads(read_raw(addr))


def http_stats_of(addr) -> Dict[str, Any]:
    return http_request(addr, "GET", "/").json()


def wait_serving(fetch, addr, requests: int = 0) -> Dict[str, Any]:
    """Poll the stats until both workers are accepting (their loops run: the master says ready
    before that) and `requests` are counted (a worker counts a request just after sending the
    response)."""
    def check():
        d = fetch(addr)
        return (len(d["workers"]) == 2 and all(w["accepting"] for w in d["workers"])
                and sum(w["requests"] for w in d["workers"]) == requests and d)
    return wait_until(check, 5, what=f"both workers accepting, {requests} requests counted")


def uwsgitop_path() -> str:
    # the one installed beside this Python first (.venv/bin): a uwsgitop found on PATH may be
    # another environment's, or a pyenv shim (a shell script, not Python)
    path = os.path.join(os.path.dirname(sys.executable), "uwsgitop")
    if not os.path.exists(path):
        path = shutil.which("uwsgitop") or path
    if not os.path.exists(path):
        pytest.skip("uwsgitop not installed (pip install uwsgitop)")
    return path


ANSI_RE = re.compile(rb"\x1b(\[[0-9;?]*[A-Za-z]|[()][A-Z0-9]|[>=])")


class Uwsgitop:
    """uwsgitop in a pseudo-terminal (it is curses only): a screen of 50x200, TERM=xterm."""

    def __init__(self, address: str) -> None:
        self.master_fd, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        env = dict(os.environ, TERM="xterm", LINES="50", COLUMNS="200")
        self.proc = subprocess.Popen([sys.executable, uwsgitop_path(), "--frequency", "1", address],
                                     stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.raw = b""

    def _read(self, timeout: float) -> None:
        r, _, _ = select.select([self.master_fd], [], [], timeout)
        if r:
            try:
                self.raw += os.read(self.master_fd, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                pass

    def text(self, start: int = 0) -> str:
        return ANSI_RE.sub(b" ", self.raw[start:]).decode("utf-8", "replace")

    def wait_for(self, pattern: str, start: int = 0, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text(start)):
            if self.proc.poll() is not None:
                self._read(0.1)
                raise AssertionError(f"uwsgitop exited {self.proc.returncode}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"uwsgitop never showed {pattern!r}:\n{self.text(start)[-4000:]}")
            self._read(0.1)

    def key(self, ch: bytes) -> int:
        mark = len(self.raw)
        os.write(self.master_fd, ch)
        return mark

    def quit(self) -> int:
        self.key(b"q")
        try:
            rc = self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._read(0.1)
            os.close(self.master_fd)
        return rc


def watch_with_uwsgitop(address: str, doc: Dict[str, Any]) -> str:
    """Run uwsgitop on `address`: its worker rows must show every worker pid, in all three of
    its display modes ('a' cycles: workers; workers merged with their cores; cores under
    workers).  Returns the screen text."""
    top = Uwsgitop(address)
    try:
        header = rf"uwsgi-{re.escape(__version__)} - .* - req: \d+ - RPS: \d+ - lq: \d+"
        top.wait_for(header)
        top.wait_for(rf"masterpid: {doc['pid']}")
        for w in doc["workers"]:
            # " WID  %  PID  REQ ..." rows: the pid after the worker id and its share
            top.wait_for(rf"\b{w['id']}\s+\d+\.\d\s+{w['pid']}\s+\d+\s")
        busiest = max(doc["workers"], key=lambda w: w["requests"])
        mark = top.key(b"a")  # merged: one row per core that served requests, id "wid:core"
        top.wait_for(rf"\b{busiest['id']}:0\s+\d+\.\d\s+{busiest['pid']}\s", start=mark)
        mark = top.key(b"a")  # cores listed under their worker as "  :core"
        top.wait_for(rf"\b{busiest['pid']}\s.*?:0\s+\d+\.\d\s+-\s+\d+", start=mark)
    except BaseException:
        top.proc.kill()
        raise
    rc = top.quit()
    text = top.text()
    assert rc == 0, text
    assert "Traceback" not in text and "unable to get uWSGI statistics" not in text, text
    return text


def test_master_stats_raw_and_uwsgitop(server_factory, app_file, tmp_path):
    srv, stats = start_master(server_factory, app_file, "127.0.0.1:0")
    stats_addr = parse_addr(stats)
    http_addr = srv.http_addr
    for _ in range(6):
        r = http_request(http_addr, "GET", "/")
        assert r.status == 200 and r.body == b"hello"
    assert http_request(http_addr, "GET", "/boom").status == 500
    doc = wait_serving(stats_of, stats_addr, requests=7)
    check_shape(doc)
    assert doc["pid"] == srv.ready_pid == srv.pid
    children = set(process_tree(srv.pid)) - {srv.pid}
    assert [w["id"] for w in doc["workers"]] == [1, 2]
    assert {w["pid"] for w in doc["workers"]} == children and len(children) == 2
    assert sum(w["exceptions"] for w in doc["workers"]) == 1
    assert sum(w["tx"] for w in doc["workers"]) >= 6 * len(b"hello")
    for w in doc["workers"]:
        assert (w["status"], w["accepting"], w["respawn_count"]) == ("idle", 1, 1)
        assert w["requests"] == sum(c["requests"] for c in w["cores"]) == w["apps"][0]["requests"]
        assert w["rss"] > 0 and abs(w["last_spawn"] - time.time()) < 60
        if w["requests"]:
            assert w["avg_rt"] > 0 and w["running_time"] > 0
    assert doc["sockets"] == [{"name": "%s:%d" % http_addr, "proto": "http", "queue": 0,
                               "max_queue": 100, "shared": 0, "can_offload": 0}]

    # A request in progress: its worker is busy and its core shows the request.
    flag = tmp_path / "release"
    result: Dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(
        r=http_request(http_addr, "GET", f"/slow?{flag}", timeout=15)), daemon=True)
    t.start()
    try:
        doc = wait_until(lambda: (lambda d: any(w["status"] == "busy" for w in d["workers"]) and d)(
            stats_of(stats_addr)), 5, what="a busy worker")
        (busy,) = [w for w in doc["workers"] if w["status"] == "busy"]
        (core,) = [c for c in busy["cores"] if c["in_request"]]
        assert core["vars"] == ["REQUEST_METHOD=GET", f"REQUEST_URI=/slow?{flag}"]
        assert abs(core["req_info"]["request_start"] - time.time()) < 10
        check_shape(doc)
    finally:
        flag.write_text("go")
        t.join(15)
    assert result["r"].status == 200
    wait_until(lambda: all(w["status"] == "idle" for w in stats_of(stats_addr)["workers"]), 5,
               what="all workers idle again")

    watch_with_uwsgitop(stats, stats_of(stats_addr))
    assert srv.stop() == 0


def test_master_stats_http_and_uwsgitop(server_factory, app_file):
    srv, stats = start_master(server_factory, app_file, "127.0.0.1:0", "--stats-http")
    host, port = parse_addr(stats)
    for _ in range(3):
        assert http_request(srv.http_addr, "GET", "/").status == 200
    conn = http.client.HTTPConnection(host, port, timeout=IO_TIMEOUT)
    conn.request("GET", "/")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200 and resp.version == 10
    assert resp.getheader("Content-Type") == "application/json"
    doc = json.loads(body)
    check_shape(doc)
    assert doc["pid"] == srv.pid
    assert {w["pid"] for w in doc["workers"]} == set(process_tree(srv.pid)) - {srv.pid}
    doc = wait_serving(http_stats_of, (host, port), requests=3)
    watch_with_uwsgitop(f"http://{host}:{port}", doc)
    assert srv.stop() == 0


def test_master_stats_unix_socket_removed_at_exit(server_factory, app_file, stats_dir):
    path = os.path.join(stats_dir, "stats.sock")
    srv, stats = start_master(server_factory, app_file, path)
    assert stats == path
    check_shape(wait_serving(stats_of, path))
    assert srv.stop() == 0
    assert not os.path.exists(path)


def test_master_reload_serves_stats_again(server_factory, app_file):
    """SIGHUP re-executes the master: the stats server is closed before and bound again after,
    and then shows the same master with the new workers."""
    srv, stats = start_master(server_factory, app_file, "127.0.0.1:0")
    before = wait_serving(stats_of, parse_addr(stats))
    mark = srv.mark()
    srv.signal(signal.SIGHUP)
    srv.wait_for("reloaded", start=mark)
    # port 0 was asked for, so the re-executed master reports where it bound this time
    stats = STATS_RE.search(srv.wait_for(STATS_RE, start=mark)).group(1)
    after = wait_serving(stats_of, parse_addr(stats))
    assert after["pid"] == before["pid"] == srv.pid
    assert not {w["pid"] for w in after["workers"]} & {w["pid"] for w in before["workers"]}
    assert srv.stop() == 0
