"""uwsgipy --http-socket against raw sockets and http.client: PEP 3333 environ, HTTP/1.1
persistence and framing, wsgi.input / write / close / exc_info / file_wrapper semantics, bad
input, slow clients, logging, signals and app loading."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import stat
import struct
import time

import pytest

from helpers import (ACCESS_RE, RUNNER_MULTITHREAD, RUNNERS, ServerProcess, APPS, IO_TIMEOUT, READY_RE, Conn,
                     RssSampler, build_request, chunked, http_request, pattern_block, pattern_sha256, raw_exchange,
                     sha256, tree_rss_kib, process_tree, wait_until)

# every server test runs under threads = 1, threads = 4 and gevent = 8 (conftest.py)
pytestmark = pytest.mark.all_runners

ROUTES = str(APPS / "routes_app.py")
LIMIT_POST = 1000


@pytest.fixture(scope="module")
def srv(module_server_factory):
    return module_server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES)


@pytest.fixture(scope="module")
def limit_srv(module_server_factory):
    """Default buffer-size (65535), --limit-post 1000: the bad-input table runs against this."""
    return module_server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES,
                                 "--limit-post", str(LIMIT_POST))


@pytest.fixture(scope="module")
def bigfile(tmp_path_factory):
    p = tmp_path_factory.mktemp("files") / "big.bin"
    data = os.urandom(50 * 1024 * 1024)
    p.write_bytes(data)
    return p, sha256(data)


def env_of(resp):
    assert resp.status == 200, resp
    return resp.json()


def val(env, key):
    return env[key]["value"]


def assert_serving(addr):
    """A fresh connection still gets a normal response."""
    r = http_request(addr, "GET", "/hello")
    assert r.status == 200 and r.body == b"Hello, world!", r


def hc(addr):
    return http.client.HTTPConnection(addr[0], addr[1], timeout=IO_TIMEOUT)


# ------------------------------------------------------------------------------------------
# PEP 3333 environ
# ------------------------------------------------------------------------------------------

def test_environ_all_keys_over_http(srv, runner):
    host, port = srv.http_addr
    with Conn(srv.http_addr) as c:
        client_port = c.sock.getsockname()[1]
        c.send(build_request("GET", "/caf%C3%A9/x?a=1&b=%41", [
            ("Host", f"127.0.0.1:{port}"),
            ("X-Multi", "a"), ("X-Multi", "b"),
            ("Cookie", "a=1"), ("Cookie", "b=2"),
            ("X_Bad", "dropped"),
            ("x-lower", "v"),
            ("X-Under-Score-Free", "kept"),
            ("Connection", "close"),
        ], host=None))
        env = env_of(c.read_response())

    assert val(env, "REQUEST_METHOD") == "GET"
    assert val(env, "SCRIPT_NAME") == ""
    assert val(env, "PATH_INFO") == "/caf\xc3\xa9/x"
    assert val(env, "QUERY_STRING") == "a=1&b=%41"
    assert val(env, "REQUEST_URI") == "/caf%C3%A9/x?a=1&b=%41"
    assert val(env, "SERVER_PROTOCOL") == "HTTP/1.1"
    assert val(env, "SERVER_NAME") == "127.0.0.1"
    assert val(env, "SERVER_PORT") == str(port)
    assert val(env, "REMOTE_ADDR") == "127.0.0.1"
    assert val(env, "REMOTE_PORT") == str(client_port)
    assert val(env, "HTTP_HOST") == f"127.0.0.1:{port}"
    assert val(env, "HTTP_X_MULTI") == "a, b"
    assert val(env, "HTTP_COOKIE") == "a=1; b=2"
    assert val(env, "HTTP_X_LOWER") == "v"
    assert val(env, "HTTP_X_UNDER_SCORE_FREE") == "kept"
    assert "HTTP_X_BAD" not in env, "a header with '_' in its name must be dropped"
    assert not any(v["value"] == "dropped" for v in env.values() if isinstance(v.get("value"), str))
    assert "CONTENT_TYPE" not in env and "CONTENT_LENGTH" not in env

    assert env["wsgi.version"] == {"type": "tuple", "key_type": "str", "value": "(1, 0)"}
    assert val(env, "wsgi.url_scheme") == "http"
    expect = {"wsgi.multithread": str(RUNNER_MULTITHREAD[runner]), "wsgi.multiprocess": "False",
              "wsgi.run_once": "False"}
    for k, v in expect.items():
        assert env[k]["type"] == "bool" and env[k]["value"] == v, (runner, k, env[k])
    assert env["wsgi.input_terminated"]["value"] == "True"
    for k in ("wsgi.input", "wsgi.errors", "wsgi.file_wrapper"):
        assert k in env, k
    for k, v in env.items():
        if k.startswith("__"):
            continue
        assert v["key_type"] == "str", k
        if "." not in k:
            assert v["type"] == "str", f"{k} is {v['type']}, not a native str"


def test_header_values_trimmed_and_empty(srv):
    env = env_of(http_request(srv.http_addr, "GET", "/env", [("X-Spaces", "  v  w \t"), ("X-Empty", ""),
                                                             ("X-Tab", "\tt")]))
    assert val(env, "HTTP_X_SPACES") == "v  w"
    assert val(env, "HTTP_X_EMPTY") == ""
    assert val(env, "HTTP_X_TAB") == "t"


def test_latin1_header_value_bytes(srv):
    env = env_of(http_request(srv.http_addr, "GET", "/env", [("X-Bin", b"caf\xe9 \xff")]))
    assert val(env, "HTTP_X_BIN") == "caf\xe9 \xff"


def test_long_request_target(srv):
    # within limit-request-line (8190); longer targets: tests/test_http_strict.py
    target = "/env?" + "q" * 8000
    env = env_of(http_request(srv.http_addr, "GET", target))
    assert val(env, "REQUEST_URI") == target and val(env, "QUERY_STRING") == "q" * 8000


@pytest.mark.parametrize("target", ["/%zz", "/%", "/a%2", "/%00x"])
def test_odd_percent_escapes_do_not_break_the_server(srv, target):
    r, raw = raw_exchange(srv.http_addr, build_request("GET", target, [("Connection", "close")]))
    assert r is not None and r.status in (200, 400), raw[:300]
    if r.status == 200 and target != "/%00x":
        assert r.json()["PATH_INFO"]["value"] == target, "an invalid escape is kept as it was sent"
    assert_serving(srv.http_addr)


def test_environ_checks_from_env_app(server_factory):
    """env_app.py (the contract's example) run directly: stream methods and file_wrapper."""
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", "tests/apps/env_app.py")
    env = env_of(http_request(s.http_addr, "POST", "/x", [("Content-Type", "text/plain")], b"hello"))
    chk = env["__checks__"]
    assert chk["input_methods"] == ["read", "readline", "readlines", "__iter__"]
    assert set(chk["errors_methods"]) == {"write", "writelines", "flush"}
    assert chk["file_wrapper_callable"] is True
    assert chk["all_keys_str"] and chk["cgi_values_str"]
    assert env["__body__"]["head"] == "hello"


def test_environ_content_headers_only_when_sent(srv):
    env = env_of(http_request(srv.http_addr, "POST", "/env", [("Content-Type", "application/x-test")],
                              b"0123456789"))
    assert val(env, "CONTENT_TYPE") == "application/x-test"
    assert val(env, "CONTENT_LENGTH") == "10"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["__body__"]["len"] == 10 and env["__body__"]["head"] == "0123456789"

    env = env_of(http_request(srv.http_addr, "GET", "/env"))
    assert "CONTENT_TYPE" not in env and "CONTENT_LENGTH" not in env
    assert val(env, "QUERY_STRING") == ""
    assert val(env, "SCRIPT_NAME") == ""


def test_environ_empty_query_after_question_mark(srv):
    env = env_of(http_request(srv.http_addr, "GET", "/env?"))
    assert val(env, "QUERY_STRING") == ""
    assert val(env, "REQUEST_URI") == "/env?"
    assert val(env, "PATH_INFO") == "/env"


@pytest.mark.parametrize("target, path_info, query", [
    ("/caf%C3%A9", "/caf\xc3\xa9", ""),
    ("/a%20b", "/a b", ""),
    ("/%41%42c", "/ABc", ""),
    ("/a+b", "/a+b", ""),
    ("/p?x=%41+y", "/p", "x=%41+y"),
    ("/%E2%82%AC?q", "/\xe2\x82\xac", "q"),
])
def test_path_info_percent_decoded_latin1(srv, target, path_info, query):
    env = env_of(http_request(srv.http_addr, "GET", target))
    assert val(env, "PATH_INFO") == path_info
    assert val(env, "QUERY_STRING") == query
    assert val(env, "REQUEST_URI") == target


def test_environ_http10(srv):
    env = env_of(http_request(srv.http_addr, "GET", "/env?v=10", version="HTTP/1.0", host=None))
    assert val(env, "SERVER_PROTOCOL") == "HTTP/1.0"
    assert "HTTP_HOST" not in env
    assert val(env, "SERVER_NAME")  # falls back to the listener address


def test_environ_via_http_client(srv):
    c = hc(srv.http_addr)
    try:
        c.request("PUT", "/env/put?z=1", body=b"payload", headers={"Content-Type": "text/plain"})
        r = c.getresponse()
        env = json.loads(r.read())
        assert r.status == 200
        assert val(env, "REQUEST_METHOD") == "PUT"
        assert val(env, "CONTENT_LENGTH") == "7"
        assert val(env, "PATH_INFO") == "/env/put"
        assert val(env, "REMOTE_PORT") == str(c.sock.getsockname()[1])
        assert env["__body__"]["head"] == "payload"
    finally:
        c.close()


# ------------------------------------------------------------------------------------------
# persistence, pipelining
# ------------------------------------------------------------------------------------------

def test_keepalive_many_requests_raw(srv):
    with Conn(srv.http_addr) as c:
        ports = set()
        for i in range(50):
            c.send(build_request("GET", f"/env?i={i}"))
            env = env_of(c.read_response())
            assert val(env, "QUERY_STRING") == f"i={i}"
            ports.add(val(env, "REMOTE_PORT"))
        assert len(ports) == 1, "requests were not served on one connection"


def test_keepalive_http_client_mixed(srv):
    c = hc(srv.http_addr)
    try:
        for i in range(30):
            if i % 3 == 0:
                c.request("POST", "/echo", body=b"x" * i)
                r = c.getresponse()
                assert r.status == 200 and r.read() == b"x" * i
            elif i % 3 == 1:
                c.request("GET", "/gen?n=3")
                r = c.getresponse()
                assert r.read() == b"chunk0;chunk1;chunk2;"
            else:
                c.request("HEAD", "/hello")
                r = c.getresponse()
                assert r.status == 200 and r.read() == b""
    finally:
        c.close()


def test_pipelining_three_requests_one_write(srv):
    reqs = b"".join(build_request("GET", f"/env?n={i}") for i in range(3))
    reqs += build_request("GET", "/hello", [("Connection", "close")])
    with Conn(srv.http_addr) as c:
        c.send(reqs)
        for i in range(3):
            env = env_of(c.read_response())
            assert val(env, "QUERY_STRING") == f"n={i}"
        r = c.read_response()
        assert r.body == b"Hello, world!"
        assert c.wait_closed(5)


def test_pipelining_with_bodies_and_chunked(srv):
    reqs = (build_request("POST", "/echo", body=b"first-body")
            + build_request("POST", "/echo", [("Transfer-Encoding", "chunked")],
                            chunked(b"second-chunked-body", 5))
            + build_request("GET", "/hello")
            + build_request("POST", "/echo", body=b"fourth"))
    with Conn(srv.http_addr) as c:
        c.send(reqs)
        assert c.read_response().body == b"first-body"
        assert c.read_response().body == b"second-chunked-body"
        assert c.read_response().body == b"Hello, world!"
        assert c.read_response().body == b"fourth"


def test_pipelining_large_responses(srv):
    """Pipelined requests whose responses exceed the socket buffers: the server must not read
    ahead into trouble or drop responses while it waits to write."""
    reqs = b"".join(build_request("GET", f"/big?blocks=32&i={i}") for i in range(3))
    with Conn(srv.http_addr) as c:
        c.send(reqs)
        for _ in range(3):
            r = c.read_response()
            assert r.status == 200 and sha256(r.body) == pattern_sha256(32)


def test_http10_closes_by_default(srv):
    with Conn(srv.http_addr) as c:
        c.send(b"GET /hello HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, world!"
        assert c.wait_closed(5), "HTTP/1.0 without keep-alive must be closed after the response"


def test_http10_keepalive(srv):
    with Conn(srv.http_addr) as c:
        for i in range(3):
            c.send(f"GET /hello?i={i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            r = c.read_response()
            assert r.status == 200 and r.body == b"Hello, world!"
            assert (r.header("Connection") or "").lower() == "keep-alive", r
        # a generator body cannot be chunked on 1.0: it is close-delimited, ending the connection
        c.send(b"GET /gen?n=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        assert r.body == b"chunk0;chunk1;"
        assert r.framing == "close"


def test_pipelined_burst_of_200(srv):
    reqs = b"".join(build_request("GET", f"/hello?i={i}") for i in range(199))
    reqs += build_request("GET", "/env?last=1", [("Connection", "close")])
    with Conn(srv.http_addr) as c:
        c.send(reqs)
        for _ in range(199):
            assert c.read_response().body == b"Hello, world!"
        assert val(env_of(c.read_response()), "QUERY_STRING") == "last=1"
        assert c.wait_closed(5)


def test_pipelined_good_then_bad(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/hello") + b"GARBAGE\r\n\r\n" + build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, world!"
        assert c.read_response().status == 400
        assert c.wait_closed(5)
        assert not c.buf, "nothing may be answered after the bad request"


def test_keepalive_after_app_error(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/raise_before"))
        assert c.read_response().status == 500
        c.send(build_request("GET", "/hello"), ignore_errors=True)
        try:
            r = c.read_response()
        except AssertionError:
            return  # closing after a 500 is acceptable
        assert r.status == 200 and r.body == b"Hello, world!"


def test_large_response_head(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/many_headers?n=300&size=500"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"many headers"
        for i in (0, 150, 299):
            assert r.header(f"X-H{i}") == f"{i}-" + "v" * 500
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, world!"


def test_absolute_form_target(srv):
    """RFC 9112 3.2.2: a server MUST accept the absolute-form; PATH_INFO is its path."""
    env = env_of(http_request(srv.http_addr, "GET", "http://example.com/env/abs?x=1", host="example.com"))
    assert val(env, "PATH_INFO") == "/env/abs"
    assert val(env, "QUERY_STRING") == "x=1"


def test_client_half_close_still_gets_response(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("POST", "/echo", body=b"half-closed"))
        c.sock.shutdown(socket.SHUT_WR)
        r = c.read_response()
        assert r.status == 200 and r.body == b"half-closed"
        assert c.wait_closed(5)


def test_connection_close_http11(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/hello", [("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200
        assert (r.header("Connection") or "").lower() == "close"
        assert c.wait_closed(5)


def test_concurrent_mixed_load(srv):
    """16 keep-alive clients at once, each a bounded mix of request kinds; every response must
    be the right one for its request."""
    import random
    import threading

    errors = []
    big_sha = pattern_sha256(4)

    def client(seed):
        rnd = random.Random(seed)
        try:
            with Conn(srv.http_addr, timeout=20) as c:
                for i in range(30):
                    kind = rnd.choice(["hello", "echo", "gen", "big", "head", "chunked", "pipelined"])
                    if kind == "hello":
                        c.send(build_request("GET", "/hello"))
                        ok = c.read_response().body == b"Hello, world!"
                    elif kind == "echo":
                        body = rnd.randbytes(rnd.choice([0, 1, 1000, 70000, 200000]))
                        c.send(build_request("POST", "/echo", [("Content-Length", str(len(body)))], body,
                                             content_length=False))
                        ok = c.read_response().body == body
                    elif kind == "gen":
                        c.send(build_request("GET", "/gen?n=3"))
                        ok = c.read_response().body == b"chunk0;chunk1;chunk2;"
                    elif kind == "big":
                        c.send(build_request("GET", "/big?blocks=4"))
                        ok = sha256(c.read_response().body) == big_sha
                    elif kind == "head":
                        c.send(build_request("HEAD", "/hello"))
                        ok = c.read_response("HEAD").header("Content-Length") == "13"
                    elif kind == "chunked":
                        body = rnd.randbytes(rnd.choice([1, 5000, 100000]))
                        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")],
                                             chunked(body, rnd.choice([1000, 7, 65536]))))
                        ok = c.read_response().body == body
                    else:
                        c.send(build_request("GET", f"/env?s={seed}&i={i}") + build_request("GET", "/hello"))
                        ok = (env_of(c.read_response())["QUERY_STRING"]["value"] == f"s={seed}&i={i}"
                              and c.read_response().body == b"Hello, world!")
                    if not ok:
                        errors.append((seed, i, kind))
                        return
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append((seed, repr(e)))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "clients still running after 60 s"
    assert not errors, errors


# ------------------------------------------------------------------------------------------
# chunked request bodies
# ------------------------------------------------------------------------------------------

CHUNKED_BODIES = {
    "plain": b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "extensions": b"5;name=value\r\nhello\r\n6;a;b=\"q\"\r\n world\r\n0;last\r\n\r\n",
    "trailers": b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n",
    "uppercase_hex_and_zero_pad": b"005\r\nhello\r\n6\r\n world\r\n000\r\n\r\n",
    "one_byte_chunks": b"".join(b"1\r\n" + bytes([c]) + b"\r\n" for c in b"hello world") + b"0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(CHUNKED_BODIES))
@pytest.mark.parametrize("piece", [0, 1, 7])
def test_chunked_request_body(srv, name, piece):
    head = build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
    body = CHUNKED_BODIES[name]
    with Conn(srv.http_addr) as c:
        if piece:
            c.send(head)
            c.send_slowly(body, piece)
        else:
            c.send(head + body)
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello world", r
        assert r.header("X-Input-Terminated") == "True"
        # and the connection is still in sync
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, world!"


def test_chunked_request_uppercase_hex(srv):
    data = b"z" * 0xAB
    with Conn(srv.http_addr) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "Chunked")],
                             b"AB\r\n" + data + b"\r\n0\r\n\r\n"))
        assert c.read_response().body == data


def test_chunked_request_large_via_http_client(srv):
    data = os.urandom(5 * 1024 * 1024)
    c = hc(srv.http_addr)
    try:
        c.request("POST", "/upload_sha", body=iter([data[i:i + 100000] for i in range(0, len(data), 100000)]),
                  encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        r = c.getresponse()
        doc = json.loads(r.read())
        assert r.status == 200
        assert doc["len"] == len(data) and doc["sha256"] == sha256(data)
        assert doc["eof_again"] is True
    finally:
        c.close()


@pytest.mark.parametrize("bad", [
    b"zz\r\nhello\r\n0\r\n\r\n",          # not hex
    b"5\r\nhelloXX0\r\n\r\n",             # data not followed by CRLF
    b"-5\r\nhello\r\n0\r\n\r\n",          # sign
    b"ffffffffffffffffffff\r\n",          # size overflows 64 bits
])
def test_chunked_request_malformed(srv, bad):
    with Conn(srv.http_addr) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")]) + bad, ignore_errors=True)
        try:
            r = c.read_response()
        except AssertionError:
            r = None  # closed without a response is acceptable, a 2xx is not
        if r is not None:
            assert r.status == 400, r
        assert c.wait_closed(5)
    assert_serving(srv.http_addr)


# ------------------------------------------------------------------------------------------
# response framing
# ------------------------------------------------------------------------------------------

def test_chunked_response_from_generator(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/gen?n=5"))
        r = c.read_response()
        assert r.status == 200
        assert r.header("Transfer-Encoding", "").lower() == "chunked"
        assert r.header("Content-Length") is None
        assert r.framing == "chunked"
        assert r.body == b"".join(b"chunk%d;" % i for i in range(5))
        # an empty item from the app must not end the body early
        assert all(s > 0 for s in r.chunk_sizes[:-1]) and r.chunk_sizes[-1] == 0, r.chunk_sizes
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, world!"


def test_generator_response_http10_close_delimited(srv):
    with Conn(srv.http_addr) as c:
        c.send(b"GET /gen?n=4 HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.header("Transfer-Encoding") is None, "no chunked coding towards an HTTP/1.0 client"
        assert r.framing == "close"
        assert r.body == b"chunk0;chunk1;chunk2;chunk3;"


def test_list_of_one_gets_content_length(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/list_one"))
        r = c.read_response()
        assert r.header("Content-Length") == "5" and r.body == b"hello", r
        assert r.header("Transfer-Encoding") is None


def test_list_of_many_without_length(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/list_many"))
        r = c.read_response()
        assert r.body == b"abcdef"
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, world!"


def test_big_generator_response(srv):
    r = http_request(srv.http_addr, "GET", "/big?blocks=160")
    assert r.framing == "chunked" and sha256(r.body) == pattern_sha256(160)


# ------------------------------------------------------------------------------------------
# Expect: 100-continue
# ------------------------------------------------------------------------------------------

def test_expect_100_continue(srv):
    body = b"b" * 5000
    with Conn(srv.http_addr) as c:
        c.send(build_request("POST", "/echo", [("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        interim = c.read_response()
        assert interim.status == 100, interim
        assert interim.version == "HTTP/1.1"
        c.send(body)
        r = c.read_response()
        assert r.status == 200 and r.body == body


def test_expect_100_continue_ignored_on_http10(srv):
    with Conn(srv.http_addr) as c:
        c.send(b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody")
        r = c.read_response()
        assert r.status == 200 and r.body == b"body", "no 100 Continue towards an HTTP/1.0 client"


def test_expect_100_continue_app_ignores_body(srv):
    """The app never reads the body.  Either the server sends 100 (then the client sends the
    body and the connection goes on), or it answers at once, and must then read and discard the
    body or close; it must never treat the body as the next request."""
    body = b"GET /x HTTP/1.1\r\nH:12"  # 21 bytes that look like a request
    with Conn(srv.http_addr) as c:
        c.send(build_request("POST", "/hello", [("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        r = c.read_response()
        c.send(body, ignore_errors=True)
        if r.status == 100:
            r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, world!"
        c.send(build_request("GET", "/hello"), ignore_errors=True)
        try:
            r2 = c.read_response()
        except AssertionError:
            r2 = None  # closed: fine
        if r2 is not None:
            assert r2.status == 200 and r2.body == b"Hello, world!", r2


def test_expect_100_continue_over_limit_gets_413_without_continue(limit_srv):
    with Conn(limit_srv.http_addr) as c:
        c.send(build_request("POST", "/echo", [("Expect", "100-continue"),
                                               ("Content-Length", str(LIMIT_POST * 10))]))
        r = c.read_response()
        assert r.status == 413, r
    assert_serving(limit_srv.http_addr)


# ------------------------------------------------------------------------------------------
# HEAD, 204, 304
# ------------------------------------------------------------------------------------------

def test_head_has_headers_but_no_body(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("HEAD", "/hello"))
        r = c.read_response("HEAD")
        assert r.status == 200 and r.header("Content-Length") == "13"
        # if a body had been sent, this next response would be garbled
        c.send(build_request("GET", "/env?after=head"))
        env = env_of(c.read_response())
        assert val(env, "QUERY_STRING") == "after=head"


def test_head_on_generator_app(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("HEAD", "/gen?n=3"))
        r = c.read_response("HEAD")
        assert r.status == 200
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, world!"


@pytest.mark.parametrize("code", ["204", "304"])
def test_no_body_statuses(srv, code):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", f"/status?code={code}"))
        r = c.read_response()
        assert r.status == int(code)
        assert r.header("Transfer-Encoding") is None, r
        assert r.header("X-Status-Route") == code
        if code == "204":
            assert r.header("Content-Length") is None, "RFC 9110 8.6: no Content-Length in a 204"
        c.send(build_request("GET", "/hello"))
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == b"Hello, world!", r2


# ------------------------------------------------------------------------------------------
# write(), close(), exc_info
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cl", ["", "1"])
def test_write_callable(srv, cl):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", f"/write?cl={cl}"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"written-1;written-2;returned"
        if cl:
            assert r.framing == "length"
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, world!"


def test_write_callable_head(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("HEAD", "/head_write"))
        assert c.read_response("HEAD").status == 200
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, world!"


def closed_count(addr, token):
    return http_request(addr, "GET", f"/closed?token={token}").json()["closed"]


def test_generator_close_called(srv):
    r = http_request(srv.http_addr, "GET", "/gen?n=3&token=gen-close-1")
    assert r.body == b"chunk0;chunk1;chunk2;"
    wait_until(lambda: closed_count(srv.http_addr, "gen-close-1") == 1, 5, what="close() on the iterable")


def test_close_called_when_client_disconnects(srv):
    token = "disconnect-1"
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", f"/stream?mb=500&token={token}"))
        c.read_until(b"\r\n\r\n")
        c.read_exact(1 << 20)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    wait_until(lambda: closed_count(srv.http_addr, token) == 1, 10,
               what="close() after the client went away")
    assert_serving(srv.http_addr)


def test_exc_info_replaces_headers_before_sending(srv):
    r = http_request(srv.http_addr, "GET", "/exc_replace")
    assert r.status == 500, r
    assert r.header("X-Second") == "1" and r.header("X-First") is None
    assert r.body == b"replaced"


def test_exc_info_after_headers_sent_reraises(srv):
    m = srv.mark()
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/exc_after_write"))
        head = c.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        rest = c.read_to_eof()
        assert b"NOT REACHED" not in rest
        assert not rest.endswith(b"0\r\n\r\n"), "an aborted chunked body must not look complete"
    srv.wait_for("late failure qqq", 5, start=m)
    assert_serving(srv.http_addr)


def test_app_raises_before_start_response(srv):
    m = srv.mark()
    r = http_request(srv.http_addr, "GET", "/raise_before")
    assert r.status == 500
    srv.wait_for("Traceback", 5, start=m)
    srv.wait_for("boom before start_response zzq", 5, start=m)
    assert_serving(srv.http_addr)


def test_app_raises_during_iteration(srv):
    m = srv.mark()
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/raise_in_iter"))
        head = c.read_until(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0] or head.startswith(b"HTTP/1.1 500"), head
        rest = c.read_to_eof()
        assert not rest.endswith(b"0\r\n\r\n"), "an aborted chunked body must not look complete"
    srv.wait_for("boom in iteration kkq", 5, start=m)
    assert_serving(srv.http_addr)


def test_non_bytes_body_is_an_error(srv):
    m = srv.mark()
    r, raw = raw_exchange(srv.http_addr, build_request("GET", "/bad_body", [("Connection", "close")]))
    assert r is None or r.status == 500, r
    assert b"a str, not bytes" not in raw
    srv.wait_for(re.compile("bytes|TypeError"), 5, start=m)
    assert_serving(srv.http_addr)


@pytest.mark.parametrize("kind", ["crlf", "lf", "nonlatin1", "badname"])
def test_invalid_response_header_from_app(srv, kind):
    m = srv.mark()
    r, raw = raw_exchange(srv.http_addr, build_request("GET", f"/bad_header?kind={kind}", [("Connection", "close")]))
    assert b"X-Injected" not in raw, "header injection reached the client"
    assert r is None or r.status == 500, r
    assert srv.wait_for(lambda l: "Traceback" in l or "header" in l.lower(), 5, start=m)
    assert_serving(srv.http_addr)


def test_latin1_response_header_value(srv):
    r = http_request(srv.http_addr, "GET", "/bad_header?kind=latin1")
    assert r.status == 200 and r.header("X-Value") == "caf\xe9"


def test_app_not_calling_start_response(srv):
    r = http_request(srv.http_addr, "GET", "/no_start_response")
    assert r.status == 500, r
    assert_serving(srv.http_addr)


def test_short_content_length_closes_connection(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/short_cl"))
        with pytest.raises(AssertionError):
            c.read_response()  # 10 of 100 bytes, then EOF
        assert c.eof
    assert_serving(srv.http_addr)


def test_long_content_length_is_not_overrun(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/long_cl") + build_request("GET", "/hello"))
        r = c.read_response()
        assert r.body == b"HELLO"
        try:
            r2 = c.read_response()
        except AssertionError:
            r2 = None  # the server closed instead: acceptable
        if r2 is not None:
            assert r2.body == b"Hello, world!", "bytes beyond Content-Length were sent as a response"
    assert_serving(srv.http_addr)


# ------------------------------------------------------------------------------------------
# wsgi.file_wrapper
# ------------------------------------------------------------------------------------------

def test_file_wrapper_50mb(srv, bigfile):
    path, digest = bigfile
    r = http_request(srv.http_addr, "GET", f"/file?path={path}", timeout=30)
    assert r.status == 200
    assert r.header("Content-Length") == str(50 * 1024 * 1024)
    assert len(r.body) == 50 * 1024 * 1024 and sha256(r.body) == digest


def test_file_wrapper_keepalive_after(srv, bigfile):
    path, digest = bigfile
    with Conn(srv.http_addr, timeout=30) as c:
        c.send(build_request("GET", f"/file?path={path}"))
        assert sha256(c.read_response().body) == digest
        c.send(build_request("HEAD", f"/file?path={path}"))
        assert c.read_response("HEAD").header("Content-Length") == str(50 * 1024 * 1024)
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, world!"


def test_file_wrapper_without_content_length(srv, bigfile):
    path, digest = bigfile
    r = http_request(srv.http_addr, "GET", f"/file?path={path}&cl=0", timeout=30)
    assert r.status == 200 and sha256(r.body) == digest


def test_file_wrapper_starts_at_file_position_and_honours_content_length(srv, bigfile):
    path, digest = bigfile
    data = path.read_bytes()
    r = http_request(srv.http_addr, "GET", f"/file_offset?path={path}&seek=1000", timeout=30)
    assert r.status == 200 and len(r.body) == len(data) - 1000 and r.body == data[1000:]
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", f"/file_offset?path={path}&seek=1000&length=5000")
               + build_request("GET", f"/file_offset?path={path}&length=7000")
               + build_request("GET", "/hello"))
        assert c.read_response().body == data[1000:6000]
        assert c.read_response().body == data[:7000], "no more than Content-Length from the file"
        assert c.read_response().body == b"Hello, world!"


def test_file_wrapper_over_a_pipe(srv):
    """A file-like whose fileno() is a pipe: sendfile cannot be used, the server must read."""
    r = http_request(srv.http_addr, "GET", "/file_pipe?size=1000000", timeout=20)
    assert r.status == 200
    assert r.body == b"".join(pattern_block(i) for i in range(16))[:1000000]


@pytest.mark.parametrize("kind", ["bytesio", "nofileno"])
@pytest.mark.parametrize("cl", ["1", "0"])
def test_file_wrapper_filelike_without_fileno(srv, kind, cl):
    token = f"fw-{kind}-{cl}"
    size = 300001
    r = http_request(srv.http_addr, "GET", f"/bytesio?size={size}&kind={kind}&cl={cl}&token={token}")
    expect = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    assert r.status == 200 and r.body == expect
    wait_until(lambda: closed_count(srv.http_addr, token) == 1, 5, what="file_wrapper close()")


# ------------------------------------------------------------------------------------------
# wsgi.input
# ------------------------------------------------------------------------------------------

INPUT_BODY = b"alpha\nbeta\ngamma"
INPUT_EXPECT = {
    "read": ["alpha\nbeta\ngamma", ""],
    "read_n": ["alph", "a\nbe", "ta\ng", "amma", "", ""],
    "readline": ["alpha\n", "beta\n", "gamma", ""],
    "readline_n": ["alp", "ha\n", "bet", "a\n", "gam", "ma", ""],
    "readlines": ["alpha\n", "beta\n", "gamma"],
    "iter": ["alpha\n", "beta\n", "gamma"],
    "read_big": ["alpha\nbeta\ngamma", ""],
    "mixed": ["alpha\n", "bet", ["a\n", "gamma"], ""],
    "none": [],
    "read_neg": ["alpha\nbeta\ngamma", ""],   # io convention: -1 means "all"
    "read_none": ["alpha\nbeta\ngamma", ""],  # io convention: None means "all"
}


@pytest.mark.parametrize("framing", ["length", "chunked", "chunked1"])
@pytest.mark.parametrize("op", sorted(INPUT_EXPECT))
def test_wsgi_input_semantics(srv, op, framing):
    n = 3 if op == "readline_n" else 4
    if framing == "length":
        req = build_request("POST", f"/input?op={op}&n={n}", body=INPUT_BODY)
    else:
        req = build_request("POST", f"/input?op={op}&n={n}", [("Transfer-Encoding", "chunked")],
                            chunked(INPUT_BODY, 5 if framing == "chunked" else 1))
    with Conn(srv.http_addr, timeout=5) as c:
        # the follow-up request in the same write must not be read as body, and reading past
        # the end must return b"" at once rather than wait for more bytes
        c.send(req + build_request("GET", "/hello"))
        r = c.read_response()
        assert r.status == 200, r
        assert r.json() == {"op": op, "result": INPUT_EXPECT[op]}
        assert c.read_response().body == b"Hello, world!"


def test_wsgi_input_without_body_returns_empty(srv):
    with Conn(srv.http_addr, timeout=5) as c:
        c.send(build_request("GET", "/input?op=read"))
        assert c.read_response().json()["result"] == ["", ""]
        c.send(build_request("POST", "/input?op=readline", [("Content-Length", "0")]))
        assert c.read_response().json()["result"] == [""]


def test_unread_body_is_discarded_before_next_request(srv):
    big = b"q" * 300000
    with Conn(srv.http_addr) as c:
        c.send(build_request("POST", "/hello", body=big) + build_request("GET", "/env?next=1"))
        assert c.read_response().body == b"Hello, world!"
        env = env_of(c.read_response())
        assert val(env, "QUERY_STRING") == "next=1"


def test_upload_50mb_streamed_rss_bounded(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, "--post-buffering", "65536")
    pid = s.pid  # the process we started; its workers, if any, are summed in
    data = os.urandom(50 * 1024 * 1024)
    digest = sha256(data)
    # warm up (imports, first-request allocations) before taking the baseline
    assert http_request(s.http_addr, "POST", "/upload_sha", body=b"w" * 200000).status == 200
    base = tree_rss_kib(pid)
    assert base, f"cannot read VmRSS of pid {pid}"
    with RssSampler(pid) as sampler, Conn(s.http_addr, timeout=60) as c:
        c.send(build_request("POST", "/upload_sha", [("Content-Length", str(len(data)))], content_length=False))
        for i in range(0, len(data), 1 << 20):
            c.send(data[i:i + (1 << 20)])
        r = c.read_response()
    doc = r.json()
    assert doc["len"] == len(data) and doc["sha256"] == digest and doc["eof_again"]
    growth_mib = (sampler.peak_kib - base) / 1024
    assert sampler.samples > 3
    assert growth_mib < 25, f"server RSS grew by {growth_mib:.1f} MiB during a 50 MiB upload"


@pytest.fixture(scope="module")
def pb_srv(module_server_factory):
    return module_server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES,
                                 "--post-buffering", "8192")


@pytest.mark.parametrize("size", [0, 1, 8191, 8192, 8193, 100000, 3 * 1024 * 1024])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_post_buffering_boundaries(pb_srv, size, framing):
    data = os.urandom(size)
    if framing == "length":
        req = build_request("POST", "/upload_sha", [("Content-Length", str(size))], data, content_length=False)
    else:
        req = build_request("POST", "/upload_sha", [("Transfer-Encoding", "chunked")], chunked(data, 3000))
    with Conn(pb_srv.http_addr, timeout=20) as c:
        c.send(req + build_request("GET", "/hello"))
        doc = c.read_response().json()
        assert doc["len"] == size and doc["sha256"] == sha256(data) and doc["eof_again"]
        assert c.read_response().body == b"Hello, world!"


def test_post_buffering_input_semantics(pb_srv):
    body = b"".join(b"line %05d\n" % i for i in range(2000))  # 22000 bytes > 8192: spills
    with Conn(pb_srv.http_addr) as c:
        c.send(build_request("POST", "/input?op=readlines", body=body))
        res = c.read_response().json()["result"]
        assert res == [l.decode() for l in body.splitlines(keepends=True)]


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------

def _many_headers(n):
    return "".join(f"X-H{i}: v\r\n" for i in range(n)).encode()


BAD_REQUESTS = [
    ("garbage_request_line", b"GARBAGE\r\n\r\n", 400),
    ("missing_version", b"GET /\r\nHost: x\r\n\r\n", 400),
    ("extra_token", b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
    ("lowercase_version", b"GET / http/1.1\r\nHost: x\r\n\r\n", 400),
    ("space_in_target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bare_lf", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    ("bare_lf_in_headers", b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400),
    ("bare_cr", b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400),
    ("header_too_large", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    ("too_many_headers", b"GET / HTTP/1.1\r\nHost: x\r\n" + _many_headers(1000) + b"\r\n", 431),
    ("cl_and_te", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n", 400),
    ("two_different_cl", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
                         b"hello!", 400),
    ("cl_non_digit", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\nab", 400),
    ("cl_plus_sign", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("cl_negative", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    ("cl_overflow", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", (400, 413)),
    ("chunked_on_http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("unknown_te", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("te_gzip_chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("body_over_limit_post", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (LIMIT_POST + 1)
                             + b"x" * (LIMIT_POST + 1), 413),
    ("obs_fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("obs_fold_tab", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400),
    ("nul_in_value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("ctl_in_value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
    ("missing_host_http11", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("two_hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("non_ascii_target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("http_2_0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("space_before_colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("empty_header_name", b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", 400),
    ("non_token_method", b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
]


@pytest.mark.parametrize("raw, expected", [(r, e) for _, r, e in BAD_REQUESTS],
                         ids=[n for n, _, _ in BAD_REQUESTS])
def test_bad_request(limit_srv, raw, expected):
    with Conn(limit_srv.http_addr) as c:
        c.send(raw, ignore_errors=True)
        r = c.read_response()
        want = expected if isinstance(expected, tuple) else (expected,)
        assert r.status in want, f"expected {expected}, got {r!r}"
        assert c.wait_closed(5), "the connection must be closed after an error response"
    assert_serving(limit_srv.http_addr)


def test_same_content_length_twice_is_accepted(limit_srv):
    r = http_request(limit_srv.http_addr, "POST", "/echo",
                     [("Content-Length", "5"), ("Content-Length", "5")], b"hello", content_length=False)
    assert r.status == 200 and r.body == b"hello"


def test_http10_without_host_is_fine(limit_srv):
    r = http_request(limit_srv.http_addr, "GET", "/hello", version="HTTP/1.0", host=None)
    assert r.status == 200


def test_body_at_limit_post_is_accepted(limit_srv):
    r = http_request(limit_srv.http_addr, "POST", "/echo", body=b"y" * LIMIT_POST)
    assert r.status == 200 and len(r.body) == LIMIT_POST


def test_chunked_body_over_limit_post(limit_srv):
    with Conn(limit_srv.http_addr) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")],
                             chunked(b"z" * (LIMIT_POST * 3), 500)), ignore_errors=True)
        r = c.read_response()
        assert r.status == 413, r
    assert_serving(limit_srv.http_addr)


def test_buffer_size_bounds_the_head(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, "--buffer-size", "4096")
    ok = http_request(s.http_addr, "GET", "/env", [("X-Fits", "a" * 3000)])
    assert ok.status == 200 and val(ok.json(), "HTTP_X_FITS") == "a" * 3000
    with Conn(s.http_addr) as c:
        c.send(build_request("GET", "/env", [("X-Too-Big", "a" * 5000)]), ignore_errors=True)
        assert c.read_response().status == 431
    assert http_request(s.http_addr, "GET", "/hello").status == 200


def test_client_closes_mid_head_and_mid_body(srv):
    with Conn(srv.http_addr) as c:
        c.send(b"GET /hello HTTP/1.1\r\nHo")
    with Conn(srv.http_addr) as c:
        c.send(build_request("POST", "/echo", [("Content-Length", "1000")]) + b"only-part")
        c.sock.shutdown(socket.SHUT_WR)
        c.wait_closed(5)
    with Conn(srv.http_addr) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")]) + b"10\r\nabc")
    assert_serving(srv.http_addr)


# ------------------------------------------------------------------------------------------
# slow clients, timeouts
# ------------------------------------------------------------------------------------------

def test_slow_client_does_not_block_others(srv):
    with Conn(srv.http_addr) as slow:
        slow.send(b"GET /env?slow=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
        t0 = time.monotonic()
        r = http_request(srv.http_addr, "GET", "/hello", timeout=5)
        assert r.status == 200 and time.monotonic() - t0 < 5
        # and the stalled request completes once the rest arrives
        slow.send(b"done\r\n\r\n")
        env = env_of(slow.read_response())
        assert val(env, "HTTP_X_HALF") == "done"


@pytest.mark.parametrize("path", ["/stream?mb=50", "/big?blocks=800", "/file"])
def test_client_not_reading_does_not_block_others(srv, bigfile, path):
    """A client that stops reading a large response parks it (the loop
    waits for EPOLLOUT) instead of stalling every other connection."""
    if path == "/file":
        path = "/file?path=" + str(bigfile[0])
    with Conn(srv.http_addr) as lazy:
        lazy.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        lazy.sock.recv(1024)  # the response has started; now stop reading
        for _ in range(5):
            t0 = time.monotonic()
            r = http_request(srv.http_addr, "GET", "/hello", timeout=5)
            assert r.status == 200
            assert time.monotonic() - t0 < 1.0, "a non-reading client held up the loop"


def test_stalled_reader_dropped_after_socket_timeout(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES,
                       "--socket-timeout", "1")
    with Conn(s.http_addr) as lazy:
        lazy.send(b"GET /stream?mb=50 HTTP/1.1\r\nHost: x\r\n\r\n")
        lazy.sock.recv(1024)
        s.wait_for("stopped reading the response", timeout=10)
    assert_serving(s.http_addr)


def test_many_idle_connections_do_not_block(srv):
    conns = [Conn(srv.http_addr) for _ in range(50)]
    try:
        for i, c in enumerate(conns):
            if i % 2:
                c.send(b"GET / HTTP/1.1\r\n")
        r = http_request(srv.http_addr, "GET", "/hello", timeout=5)
        assert r.status == 200
    finally:
        for c in conns:
            c.close()
    assert_serving(srv.http_addr)


def test_socket_timeout_closes_stalled_connection(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, "--socket-timeout", "1")
    with Conn(s.http_addr) as c:
        t0 = time.monotonic()
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        assert c.wait_closed(8), "a stalled request head must be dropped after --socket-timeout"
        assert time.monotonic() - t0 >= 0.5
        if c.buf:
            assert c.buf.startswith(b"HTTP/1.1 408"), bytes(c.buf)
    assert http_request(s.http_addr, "GET", "/hello").status == 200


def test_http_keepalive_idle_timeout(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, "--http-keepalive", "1")
    with Conn(s.http_addr) as c:
        c.send(build_request("GET", "/hello"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.wait_closed(8), "an idle keep-alive connection must be closed after --http-keepalive"
        assert time.monotonic() - t0 >= 0.5
        assert not c.buf, bytes(c.buf)


# ------------------------------------------------------------------------------------------
# logging
# ------------------------------------------------------------------------------------------

def test_access_log_line(srv):
    m = srv.mark()
    http_request(srv.http_addr, "GET", "/hello?q=1")
    line = srv.wait_for(lambda l: (mm := ACCESS_RE.search(l)) is not None and mm.group("uri") == "/hello?q=1",
                        5, start=m)
    mm = ACCESS_RE.search(line)
    assert mm.group("addr") == "127.0.0.1"
    assert (mm.group("method"), mm.group("proto"), mm.group("status"), mm.group("bytes")) == \
        ("GET", "HTTP/1.1", "200", "13"), line
    assert float(mm.group("ms")) >= 0

    m = srv.mark()
    http_request(srv.http_addr, "HEAD", "/hello?head=1")
    http_request(srv.http_addr, "GET", "/status?code=418", version="HTTP/1.0", host=None)
    http_request(srv.http_addr, "GET", "/big?blocks=3")
    line = srv.wait_for(lambda l: "/hello?head=1" in l and ACCESS_RE.search(l), 5, start=m)
    assert ACCESS_RE.search(line).group("bytes") == "0" and '"HEAD ' in line
    line = srv.wait_for(lambda l: "/status?code=418" in l and ACCESS_RE.search(l), 5, start=m)
    mm = ACCESS_RE.search(line)
    assert mm.group("status") == "418" and mm.group("proto") == "HTTP/1.0"
    line = srv.wait_for(lambda l: "/big?blocks=3" in l and ACCESS_RE.search(l), 5, start=m)
    assert ACCESS_RE.search(line).group("bytes") == str(3 * 65536), "bytes are body bytes, not chunk framing"


def test_access_log_for_bad_request(limit_srv):
    m = limit_srv.mark()
    with Conn(limit_srv.http_addr) as c:
        c.send(b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n")
        assert c.read_response().status == 400
    http_request(limit_srv.http_addr, "GET", "/hello?after-bad")
    limit_srv.wait_for(lambda l: "/hello?after-bad" in l, 5, start=m)


def test_disable_logging(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, "--disable-logging", expect_rc=None)
    for i in range(3):
        assert http_request(s.http_addr, "GET", f"/hello?nolog={i}").status == 200
    assert s.stop() == 0
    assert not s.access_lines(), s.output()
    assert "nolog" not in s.output()


def test_log_format_variables(server_factory):
    """uWSGI's log-format: every variable uwsgipy knows, filled per request."""
    fmt = ("LF addr=%(addr) method=%(method) uri=%(uri) proto=%(proto) status=%(status) "
           "size=%(size) ms=%(msecs) us=%(micros) t=%(time) ua=%(uagent) ref=%(referer) "
           "host=%(host) pid=%(pid) wid=%(wid) ct=[%(ctime)]")
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, "--log-format", fmt)
    before = int(time.time())
    r = http_request(s.http_addr, "GET", "/hello?lf=1",
                     headers=[("User-Agent", "probe/1"), ("Referer", "http://r/")])
    assert r.status == 200
    line = s.wait_for(lambda l: l.startswith("LF ") and "lf=1" in l, 5)
    fields = dict(f.split("=", 1) for f in line.split(" ct=")[0].split()[1:])
    assert fields["addr"] == "127.0.0.1" and fields["method"] == "GET"
    assert fields["uri"] == "/hello?lf=1" and fields["proto"] == "HTTP/1.1"
    assert fields["status"] == "200" and fields["size"] == "13"
    assert int(fields["us"]) >= int(fields["ms"]) * 1000
    assert before <= int(fields["t"]) <= time.time() + 1
    assert fields["ua"] == "probe/1" and fields["ref"] == "http://r/"
    assert fields["host"].startswith("127.0.0.1") and fields["pid"] == str(s.pid)
    assert fields["wid"] == "0"
    assert re.search(r"ct=\[\w{3} \w{3} +\d+ [\d:]{8} \d{4}\]$", line), line


def test_log_format_more_uwsgi_variables(server_factory):
    """user, ltime, epoch, secs, cl and var.NAME, as uWSGI's core/logging.c fills them."""
    fmt = ("LG user=[%(user)] lt=[%(ltime)] ep=%(epoch) s=%(secs) cl=%(cl) "
           "rid=[%(var.HTTP_X_REQUEST_ID)] none=[%(var.HTTP_X_NONE)]")
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, "--log-format", fmt)
    before = int(time.time())
    r = http_request(s.http_addr, "POST", "/echo", headers=[("X-Request-Id", "abc-1")], body=b"12345")
    assert r.status == 200
    line = s.wait_for(lambda l: l.startswith("LG "), 5)
    assert "user=[]" in line and "rid=[abc-1]" in line and "none=[]" in line, line
    assert " cl=5 " in line, line
    assert re.search(r"lt=\[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]", line), line
    assert before <= int(re.search(r"ep=(\d+)", line).group(1)) <= time.time() + 1
    assert float(re.search(r" s=([\d.]+)", line).group(1)) < 5


def test_log_format_unknown_variable_is_a_config_error(tmp_path):
    p = ServerProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES,
                       "--log-format", "%(addr) %(nosuch)"]).start(wait_ready=False)
    assert p.wait_exit(10) == 2
    assert "%(nosuch)" in p.output() and "log-format" in p.output()


def test_log_4xx_5xx_with_disable_logging(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES,
                       "--disable-logging", "--log-4xx", "--log-5xx")
    for path in ("/hello?quiet=1", "/status?code=404&x=four", "/raise_before?x=five"):
        http_request(s.http_addr, "GET", path)
    s.wait_for(lambda l: "x=four" in l and ACCESS_RE.search(l), 5)
    s.wait_for(lambda l: "x=five" in l and ACCESS_RE.search(l), 5)
    assert "quiet=1" not in s.output()


def test_log_x_forwarded_for(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, "--log-x-forwarded-for")
    http_request(s.http_addr, "GET", "/hello?xff=1", headers=[("X-Forwarded-For", "203.0.113.7, 10.0.0.1")])
    line = s.wait_for(lambda l: "xff=1" in l and ACCESS_RE.search(l), 5)
    assert ACCESS_RE.search(line).group("addr") == "203.0.113.7", line


def test_logto_file(server_factory, tmp_path):
    log = tmp_path / "uwsgipy.log"
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, "--logto", str(log), logto=log)
    http_request(s.http_addr, "GET", "/hello?logto=1")
    wait_until(lambda: log.exists() and "/hello?logto=1" in log.read_text(), 5, what="access line in --logto file")
    line = [l for l in log.read_text().splitlines() if "/hello?logto=1" in l][0]
    assert ACCESS_RE.search(line), line


def test_wsgi_errors_reaches_the_log(srv):
    m = srv.mark()
    assert http_request(srv.http_addr, "GET", "/errors?msg=abc123").body == b"logged"
    srv.wait_for("wsgi.errors line abc123", 5, start=m)
    srv.wait_for("writelines-b", 5, start=m)


# ------------------------------------------------------------------------------------------
# signals
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_inflight_request(server_factory, sig):
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, expect_rc=None)
    with Conn(s.http_addr) as c:
        c.send(build_request("GET", "/sleep?s=1&token=inflight"))
        s.wait_for("sleep-start inflight", 5)
        t0 = time.monotonic()
        s.signal(sig)
        r = c.read_response()
        assert r.status == 200 and r.body == b"slept"
    rc = s.wait_exit(10)
    assert rc == 0, f"exit code {rc}\n{s.output()}"
    assert time.monotonic() - t0 < 8
    with pytest.raises(OSError):
        Conn(s.http_addr, timeout=2).close()


def test_sigterm_with_idle_keepalive_connection(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, expect_rc=None)
    with Conn(s.http_addr) as c:
        c.send(build_request("GET", "/hello"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        rc = s.wait_exit(8)
        assert rc == 0, f"exit code {rc} ({time.monotonic() - t0:.1f}s)\n{s.output()}"
        assert c.wait_closed(2)


def test_sigterm_right_after_ready(runner):
    """SIGTERM the instant "ready" is printed must be a graceful stop (exit 0): the handlers
    must be installed before the ready line.  The signal is sent from the output reader
    thread to make the race as tight as a supervisor's would be; repeated because it is one."""
    for i in range(10):
        holder = {}

        def on_line(line):
            if READY_RE.search(line):
                holder["srv"].signal(signal.SIGTERM)

        s = ServerProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES, *RUNNERS[runner]],
                          on_line=on_line)
        holder["srv"] = s
        try:
            s.start(wait_ready=False)
            rc = s.wait_exit(10)
        finally:
            s.stop()
        assert rc == 0, f"attempt {i}: exit code {rc} (-15: killed by SIGTERM's default action)\n{s.output()}"


# ------------------------------------------------------------------------------------------
# app loading
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["--wsgi-file", "tests/apps/broken_import.py"], ["Traceback", "intentional import failure xyzzy"]),
    (["--module", "no_such_module_qq:app"], ["no_such_module_qq"]),
    (["--wsgi-file", "tests/apps/env_app.py", "--callable", "nope_callable"], ["nope_callable"]),
    (["--pythonpath", "tests/apps", "--module", "pkgapp.wsgi:missing_name"], ["missing_name"]),
    (["--wsgi-file", "tests/apps/missing_dep.py"], ["Traceback", "definitely_missing_dependency_qq"]),
    (["--wsgi-file", "tests/apps/does_not_exist.py"], ["does_not_exist.py"]),
], ids=["raises_at_import", "missing_module", "missing_callable", "missing_callable_in_module",
        "missing_dependency", "missing_file"])
def test_app_load_failure_exits_nonzero(server_factory, args, needles):
    t0 = time.monotonic()
    s = server_factory("--http-socket", "127.0.0.1:0", *args, ready=False, expect_rc=None)
    rc = s.wait_exit(10)
    assert rc is not None, f"server still running 10 s after a failed app load:\n{s.output()}"
    assert rc != 0
    assert time.monotonic() - t0 < 10
    out = s.output()
    for n in needles:
        assert n in out, f"{n!r} not in output:\n{out}"
    assert not s.find(READY_RE), "a server whose app failed to load must not report ready"


def test_missing_dependency_not_reported_as_missing_app(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--pythonpath", "tests/apps", "--module", "missing_dep",
                       ready=False, expect_rc=None)
    assert s.wait_exit(10) not in (0, None)
    out = s.output()
    assert "definitely_missing_dependency_qq" in out
    assert "No module named 'missing_dep'" not in out, out


@pytest.mark.parametrize("args, expect", [
    (["--module", "pkgapp.wsgi:app"], b"callable=app"),
    (["--module", "pkgapp.wsgi"], b"callable=application"),
    (["--module", "pkgapp.wsgi", "--callable", "other"], b"callable=other"),
])
def test_module_and_callable(server_factory, args, expect):
    s = server_factory("--http-socket", "127.0.0.1:0", "--pythonpath", str(APPS), *args)
    assert http_request(s.http_addr, "GET", "/").body == expect


def test_relative_pythonpath(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--pythonpath", "tests/apps", "--module", "pkgapp.wsgi:app")
    assert http_request(s.http_addr, "GET", "/").body == b"callable=app"


def test_chdir(server_factory, tmp_path):
    s = server_factory("--http-socket", "127.0.0.1:0", "--chdir", str(tmp_path), "--wsgi-file", ROUTES)
    assert http_request(s.http_addr, "GET", "/cwd").body.decode() == str(tmp_path)


def test_wsgi_file_relative_to_chdir(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--chdir", str(APPS), "--wsgi-file", "routes_app.py")
    assert http_request(s.http_addr, "GET", "/hello").status == 200


def test_http_and_uwsgi_listeners_in_one_process(server_factory, unix_dir):
    from helpers import uwsgi_request, uwsgi_vars
    sock = os.path.join(unix_dir, "both.sock")
    s = server_factory("--http-socket", "127.0.0.1:0", "--socket", "127.0.0.1:0", "--socket", sock,
                       "--wsgi-file", ROUTES)
    kinds = sorted(k for k, _ in s.listeners)
    assert kinds == ["http-socket", "socket", "socket"], s.listeners
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    assert http_request(s.http_addr, "GET", "/hello").body == b"Hello, world!"
    tcp = [a for k, a in s.listeners if k == "socket" and not a.startswith("/")][0]
    host, port = tcp.rsplit(":", 1)
    assert uwsgi_request((host, int(port)), uwsgi_vars(path="/hello")).body == b"Hello, world!"
    assert uwsgi_request(sock, uwsgi_vars(path="/hello")).body == b"Hello, world!"
    pids = {http_request(s.http_addr, "GET", "/pid").body,
            uwsgi_request(sock, uwsgi_vars(path="/pid")).body}
    assert len(pids) == 1


def test_ready_line_pid_belongs_to_the_server(srv):
    serving = int(http_request(srv.http_addr, "GET", "/pid").body)
    tree = process_tree(srv.pid)
    assert serving in tree and srv.ready_pid in tree, (serving, srv.ready_pid, tree)


# ------------------------------------------------------------------------------------------
# wsgiref.validate
# ------------------------------------------------------------------------------------------

def test_validator_wrapped_app(server_factory, bigfile):
    path, digest = bigfile
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", "tests/apps/validated_app.py", expect_rc=None)
    a = s.http_addr
    assert http_request(a, "GET", "/").body == b"validated ok"
    body = os.urandom(200000)
    assert http_request(a, "POST", "/post", body=body).json() == {"len": len(body), "sha256": sha256(body)}
    r = http_request(a, "POST", "/post", [("Transfer-Encoding", "chunked")], chunked(body, 7000))
    assert r.json() == {"len": len(body), "sha256": sha256(body)}
    assert http_request(a, "POST", "/lines", body=b"a\nb\nc").json() == ["a\n", "b\n", "c"]
    assert http_request(a, "GET", "/write").body == b"via-write;via-iter"
    assert http_request(a, "GET", "/gen").body == b"part0;part1;part2;part3;part4;"
    assert http_request(a, "GET", "/gen", version="HTTP/1.0", host=None).body == b"part0;part1;part2;part3;part4;"
    assert http_request(a, "HEAD", "/").status == 200
    assert http_request(a, "GET", "/nocontent").status == 204
    assert http_request(a, "GET", "/errors").status == 200
    assert sha256(http_request(a, "GET", f"/file?path={path}", timeout=30).body) == digest
    with Conn(a) as c:
        for _ in range(5):
            c.send(build_request("GET", "/"))
            assert c.read_response().body == b"validated ok"
    assert s.stop() == 0
    out = s.output()
    assert "AssertionError" not in out, out
    assert "WSGIWarning" not in out, out
    assert "without being closed" not in out, out
    assert "Traceback" not in out, out
