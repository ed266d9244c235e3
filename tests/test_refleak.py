"""Refleak smoke test of the C core (STYLE.md, "C"): the Server runs in this
very process (in a thread), serves thousands of requests of every kind, and
the number of live Python allocations must not grow with the request count.

A leaked reference per request (environ, start_response, a header string,
the input object...) shows as thousands of blocks; the threshold leaves room
for caches that fill once (interned keys, free lists).
"""
from __future__ import annotations

import gc
import logging
import socket
import sys
import threading

import pytest

from uwsgipy import _core

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import uwsgi_codec  # noqa: E402


def app(environ, start_response):
    path = environ["PATH_INFO"]
    body = environ["wsgi.input"].read()
    if path == "/gen":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"x" * n for n in (1, 10, 100))
    if path == "/raise":
        raise RuntimeError("boom")
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written")
        return []
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Len", str(len(body)))])
    return [b"hello ", body]


REQUESTS = [
    b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\nX-Y: z\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET /gen HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /write HTTP/1.1\r\nHost: h\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
]


def _drain(sock: socket.socket, responses: int) -> None:
    """Read until `responses` status lines and the final body arrived."""
    data = b""
    while data.count(b"HTTP/1.1 ") < responses or not data.endswith((b"\r\n\r\n", b"hello ", b"hello hello",
                                                                    b"hello abc", b"0\r\n\r\n", b"written")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk


def _round(http_addr, uwsgi_addr) -> None:
    with socket.create_connection(http_addr, timeout=5) as s:
        s.sendall(b"".join(REQUESTS) + b"GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass
    with socket.create_connection(http_addr, timeout=5) as s:  # a 500 and a 400
        s.sendall(b"GET /raise HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass
    with socket.create_connection(http_addr, timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        while s.recv(65536):
            pass
    with socket.create_connection(uwsgi_addr, timeout=5) as s:
        s.sendall(uwsgi_codec.encode_packet({"REQUEST_METHOD": "POST", "PATH_INFO": "/u",
                                             "REQUEST_URI": "/u", "CONTENT_LENGTH": "3",
                                             "HTTP_HOST": "h"}, b"abc"))
        while s.recv(65536):
            pass


@pytest.mark.skipif(not hasattr(sys, "getallocatedblocks"), reason="CPython only")
def test_no_reference_leak_per_request():
    logging.getLogger("uwsgipy").addHandler(logging.NullHandler())
    logging.getLogger("uwsgipy").propagate = False
    http = socket.socket()
    http.bind(("127.0.0.1", 0))
    http.listen(64)
    http.setblocking(False)
    uw = socket.socket()
    uw.bind(("127.0.0.1", 0))
    uw.listen(64)
    uw.setblocking(False)
    server = _core.Server(app, [(http.fileno(), _core.PROTO_HTTP, "h", "80", "http"),
                                (uw.fileno(), _core.PROTO_UWSGI, "h", "80", "uwsgi")],
                          logger=lambda level, msg, exc: None, access_log_fd=-1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        addrs = (http.getsockname(), uw.getsockname())
        for _ in range(200):  # warm up: caches, free lists, interned keys
            _round(*addrs)
        gc.collect()
        before = sys.getallocatedblocks()
        rounds = 1000  # x 11 requests
        for _ in range(rounds):
            _round(*addrs)
        gc.collect()
        grown = sys.getallocatedblocks() - before
        assert server.requests >= 1200 * 9
        assert grown < rounds // 2, f"{grown} blocks more after {rounds} rounds: a leak per request"
    finally:
        server.stop(graceful=False)
        thread.join(5)
        http.close()
        uw.close()
