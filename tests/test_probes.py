"""Liveness and readiness probes answered by the C core (liveness-path, readiness-path,
readiness-max-queue, readiness-drain; csrc/upy_probe.c): over HTTP and uwsgi, with the app busy,
not logged, and through a graceful stop that fails readiness before the listeners close, in a
single process and under a master."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from helpers import (ServerProcess, http_request, uwsgi_request, uwsgi_vars, wait_until)

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello.py"
HELLO_BODY = b"Hello from uwsgipy!\n"

BLOCKING_APP = '''
import os, time
FLAG = os.environ["UPY_PROBE_FLAG"]
def application(environ, start_response):
    if environ["PATH_INFO"] == "/block":
        deadline = time.monotonic() + 15
        while not os.path.exists(FLAG) and time.monotonic() < deadline:
            time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app:" + environ["PATH_INFO"].encode()]
'''


def _probe_args(*extra):
    return ["--liveness-path", "/healthz", "--readiness-path", "/readyz", *extra]


def test_probes_over_http_and_uwsgi(server_factory):
    srv = server_factory("--http-socket", "127.0.0.1:0", "--socket", "127.0.0.1:0",
                         "--wsgi-file", str(HELLO), *_probe_args())
    for path in ("/healthz", "/readyz", "/readyz?verbose=1"):
        r = http_request(srv.http_addr, "GET", path)
        assert r.status == 200 and r.body == b"ok\n", (path, r)
        assert r.header("Cache-Control") == "no-store" and r.header("Content-Length") == "3"
    r = http_request(srv.http_addr, "HEAD", "/healthz")
    assert r.status == 200 and r.body == b"" and r.header("Content-Length") == "3"
    # exactly the path: anything else is the app's, and so are other methods
    for method, path in (("GET", "/healthz/"), ("GET", "/healthzx"), ("GET", "/%68ealthz"),
                         ("POST", "/healthz")):
        r = http_request(srv.http_addr, method, path)
        assert r.status == 200 and r.body == HELLO_BODY, (method, path, r)
    r = uwsgi_request(srv.uwsgi_addr, uwsgi_vars("GET", "/readyz"))
    assert r.status == 200 and r.body == b"ok\n", r
    r = uwsgi_request(srv.uwsgi_addr, uwsgi_vars("GET", "/"))
    assert r.status == 200 and r.body == HELLO_BODY


def test_probes_keep_alive_and_are_not_logged(server_factory):
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", str(HELLO), *_probe_args())
    with socket.create_connection(srv.http_addr, timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n" * 3 +
                  b"GET /readyz HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n"
                  b"Connection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 5 and data.count(b"\r\n\r\nok\n") == 4, data
    assert data.endswith(HELLO_BODY)
    wait_until(lambda: srv.find("/after"), 5, what="the app request's access-log line")
    assert not srv.find("/healthz") and not srv.find("/readyz"), srv.output()


def test_probes_answer_while_the_app_is_busy(server_factory, tmp_path):
    """Both app threads blocked (threads = 2: the loop has a thread of its own; with one thread
    the app runs on the loop's): the loop still answers the probes at once."""
    app = tmp_path / "block.py"
    app.write_text(BLOCKING_APP)
    flag = tmp_path / "release"
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", str(app), "--threads", "2",
                         *_probe_args(), env={"UPY_PROBE_FLAG": str(flag)})
    blocked = []
    try:
        for _ in range(2):
            s = socket.create_connection(srv.http_addr, timeout=10)
            s.sendall(b"GET /block HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            blocked.append(s)
        t0 = time.monotonic()
        for path in ("/healthz", "/readyz"):
            r = http_request(srv.http_addr, "GET", path, timeout=5)
            assert r.status == 200 and r.body == b"ok\n", r
        assert time.monotonic() - t0 < 2.0
        assert not srv.find("GET /block"), "the app was not blocked during the probes"
    finally:
        flag.write_text("go")
        for s in blocked:
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            s.close()


def test_readiness_fails_while_requests_wait_for_the_app(server_factory, tmp_path):
    """readiness-max-queue 3, two app threads blocked, five more requests waiting for them: 503
    "overloaded"; liveness stays 200; once released and served, readiness is 200 again."""
    app = tmp_path / "block.py"
    app.write_text(BLOCKING_APP)
    flag = tmp_path / "release"
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", str(app), "--threads", "2",
                         *_probe_args("--readiness-max-queue", "3"), env={"UPY_PROBE_FLAG": str(flag)})
    assert http_request(srv.http_addr, "GET", "/readyz").body == b"ok\n"
    blocked = []
    try:
        for _ in range(7):
            s = socket.create_connection(srv.http_addr, timeout=15)
            s.sendall(b"GET /block HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            blocked.append(s)
        wait_until(lambda: http_request(srv.http_addr, "GET", "/readyz").status == 503, 5,
                   what="readiness 503 with 5 requests waiting")
        r = http_request(srv.http_addr, "GET", "/readyz")
        assert r.status == 503 and r.body == b"overloaded\n", r
        assert http_request(srv.http_addr, "GET", "/healthz").status == 200
    finally:
        flag.write_text("go")
        for s in blocked:
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            s.close()
    r = http_request(srv.http_addr, "GET", "/readyz")
    assert r.status == 200 and r.body == b"ok\n", r


def _drain_check(srv: ServerProcess, signal_pid: int, drain: float) -> None:
    assert http_request(srv.http_addr, "GET", "/readyz").body == b"ok\n"
    t0 = time.monotonic()
    os.kill(signal_pid, signal.SIGTERM)
    # readiness fails first, while the listeners still accept and the app still serves
    wait_until(lambda: http_request(srv.http_addr, "GET", "/readyz").status == 503, 5,
               what="readiness 503 after SIGTERM")
    r = http_request(srv.http_addr, "GET", "/readyz")
    assert r.status == 503 and r.body == b"draining\n", r
    assert http_request(srv.http_addr, "GET", "/healthz").status == 200
    assert http_request(srv.http_addr, "GET", "/").body == HELLO_BODY
    assert time.monotonic() - t0 < drain, "the drain ended before the checks: raise readiness-drain"
    rc = srv.wait_exit(drain + 15)
    took = time.monotonic() - t0
    assert rc == 0, srv.output()
    assert took >= drain - 0.2, f"stopped after {took:.2f}s, before the {drain}s drain"
    with pytest.raises(OSError):
        socket.create_connection(srv.http_addr, timeout=2).close()


def test_graceful_stop_fails_readiness_before_the_listeners_close(server_factory):
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", str(HELLO),
                         *_probe_args("--readiness-drain", "2"))
    _drain_check(srv, srv.pid, 2.0)
    assert srv.find("readiness-path now answers 503")


def test_graceful_stop_drain_under_a_master(server_factory):
    srv = server_factory("--master", "--processes", "2", "--http-socket", "127.0.0.1:0",
                         "--wsgi-file", str(HELLO), *_probe_args("--readiness-drain", "2"))
    _drain_check(srv, srv.pid, 2.0)
    assert len([ln for ln in srv.output().splitlines() if "readiness-path now answers 503" in ln]) == 2


def test_without_drain_readiness_fails_at_the_stop(server_factory):
    """No readiness-drain: the stop starts at once (the probe is 503 for what is left of it)."""
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", str(HELLO), *_probe_args())
    t0 = time.monotonic()
    os.kill(srv.pid, signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("option, value, needle", [
    ("--readiness-path", "readyz", "readiness-path"),
    ("--liveness-path", "/a?b", "liveness-path"),
    ("--liveness-path", "/" + "x" * 200, "liveness-path"),
    ("--readiness-drain", "-1", "readiness-drain"),
])
def test_bad_probe_options_are_one_line(option, value, needle):
    srv = ServerProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", str(HELLO), option, value])
    srv.start(wait_ready=False)
    try:
        rc = srv.wait_exit(10)
    finally:
        srv.stop()
    out = srv.output()
    assert rc not in (0, None) and needle in out and "Traceback" not in out, out
