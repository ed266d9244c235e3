"""Regression tests for response-path bugs found in review of the C glue
(each failed, or crashed the worker, before its fix)."""
from __future__ import annotations

import socket
import time

import pytest

from helpers import APPS, Conn, http_request

APP = str(APPS / "regress_app.py")


@pytest.fixture(scope="module")
def srv(module_server_factory):
    return module_server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", APP,
                                 "--socket-timeout", "1")


def _raw(addr, data: bytes, wait: float = 5.0) -> bytes:
    with socket.create_connection(addr, timeout=wait) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
    return out


def test_stalled_write_never_sends_freed_memory(srv):
    """write() of 4 MiB to a client that stops reading until socket-timeout:
    what arrives afterwards is only the app's bytes (a parked pointer into a
    freed bytes object used to send other memory)."""
    s = socket.create_connection(srv.http_addr, timeout=1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /write-big HTTP/1.1\r\nHost: h\r\n\r\n")
    time.sleep(2.5)  # past --socket-timeout 1: the server gives up on us
    data = b""
    deadline = time.monotonic() + 3  # what the kernel still delivers: a bounded look
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    s.close()
    body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    body = body.replace(b"\r\n", b"")  # chunk framing lines hold hex digits only
    assert set(body) <= set(b"A0123456789abcdef"), "bytes that are not the app's reached the client"
    assert http_request(srv.http_addr, "GET", "/ok").status == 200


def test_headers_list_changed_after_start_response(srv):
    """The server sends the headers as validated: later changes to the list
    neither crash the worker nor inject header lines."""
    r = http_request(srv.http_addr, "GET", "/mutate")
    assert r.status == 200 and r.body == b"mutated"
    names = [k.lower() for k, _ in r.headers]
    assert "set-cookie" not in names and "x-injected" not in names and "broken" not in names
    assert http_request(srv.http_addr, "GET", "/ok").status == 200


def test_304_and_empty_head_get_no_content_length(srv):
    with Conn(srv.http_addr) as c:
        c.send(b"GET /304 HTTP/1.1\r\nHost: h\r\n\r\n")
        r = c.read_response()
        assert r.status == 304
        assert "content-length" not in [k.lower() for k, _ in r.headers]  # RFC 9110 §8.6
    head = _raw(srv.http_addr, b"HEAD /empty HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length" not in head.lower()


def test_write_from_close_after_the_response(srv):
    with Conn(srv.http_addr) as c:
        c.send(b"GET /late HTTP/1.1\r\nHost: h\r\n\r\n")
        r = c.read_response()
        assert r.body == b"body"
        c.send(b"GET /late-outcome HTTP/1.1\r\nHost: h\r\n\r\n")
        r = c.read_response()  # the connection is still well framed
        assert r.body.startswith(b"raised"), r.body


def test_rejected_exc_info_call_leaves_the_response_alone(srv):
    with Conn(srv.http_addr) as c:
        c.send(b"GET /bad-exc-info HTTP/1.1\r\nHost: h\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"first"
        assert [k.lower() for k, _ in r.headers].count("content-length") == 1


def test_app_that_forks_does_not_confuse_the_loop(srv):
    """A child process keeps copies of the loop's sockets: closed connections
    must still leave the poller (epoll keeps an fd another process shares)."""
    assert _raw(srv.http_addr, b"GET /fork HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n") \
        .endswith(b"ok /fork")
    for i in range(20):
        with Conn(srv.http_addr) as c:
            c.send(f"GET /n{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            assert c.read_response().body == f"ok /n{i}".encode()
