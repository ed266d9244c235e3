"""uwsgipy --socket (TCP and unix) driven by raw uwsgi packets, the way nginx's uwsgi_pass
talks to it: environ from vars, bodies, close-delimited responses, malformed packets."""
from __future__ import annotations

import os
import signal
import socket
import stat
import struct
import time

import pytest

from helpers import (APPS, RUNNER_MULTITHREAD, Conn, encode_packet, parse_uwsgi_response, pattern_sha256, sha256,
                     uwsgi_exchange, uwsgi_request, uwsgi_vars, wait_until)

# every server test runs under threads = 1, threads = 4 and gevent = 8 (conftest.py)
pytestmark = pytest.mark.all_runners

ROUTES = str(APPS / "routes_app.py")
SMALL_BUFFER = 4096
SMALL_LIMIT_POST = 1000


@pytest.fixture(scope="module")
def usrv(module_server_factory, unix_dir):
    return module_server_factory("--socket", "127.0.0.1:0", "--socket", os.path.join(unix_dir, "u.sock"),
                                 "--wsgi-file", ROUTES)


@pytest.fixture(scope="module", params=["tcp", "unix"])
def uaddr(request, usrv):
    want_unix = request.param == "unix"
    for kind, a in usrv.listeners:
        if kind == "socket" and a.startswith("/") == want_unix:
            if want_unix:
                return a
            host, port = a.rsplit(":", 1)
            return (host, int(port))
    raise AssertionError(f"no {request.param} listener in {usrv.listeners}")


@pytest.fixture(scope="module")
def small_srv(module_server_factory):
    return module_server_factory("--socket", "127.0.0.1:0", "--wsgi-file", ROUTES,
                                 "--buffer-size", str(SMALL_BUFFER), "--limit-post", str(SMALL_LIMIT_POST))


@pytest.fixture(scope="module")
def bigfile(tmp_path_factory):
    p = tmp_path_factory.mktemp("files") / "big.bin"
    data = os.urandom(50 * 1024 * 1024)
    p.write_bytes(data)
    return p, sha256(data)


def env_of(resp):
    assert resp is not None and resp.status == 200, resp
    return resp.json()


def val(env, key):
    return env[key]["value"]


def assert_serving(addr):
    r = uwsgi_request(addr, uwsgi_vars(path="/hello"))
    assert r.status == 200 and r.body == b"Hello, world!", r


def closed_or_status(raw, statuses=(400,)):
    """A malformed packet gets either the connection closed without a response, or an error
    status; never a 2xx."""
    if not raw:
        return
    assert raw.startswith(b"HTTP/"), raw[:200]
    status = int(raw.split(b" ", 2)[1])
    assert status in statuses, raw[:300]


# ------------------------------------------------------------------------------------------
# environ from vars
# ------------------------------------------------------------------------------------------

def test_every_var_appears_as_str(uaddr, runner):
    sent = uwsgi_vars("GET", "/env/x", "a=1&b=2", extra={
        "UWSGI_FOO": "bar",
        "HTTP_X_CUSTOM": "custom value",
        "HTTP_COOKIE": "a=1; b=2",
        "DOCUMENT_ROOT": "/srv/www",
        "REQUEST_SCHEME": "http",
        "HTTP_X_EMPTY": "",
        "SOMETHING_ELSE": "x" * 3000,
    })
    env = env_of(uwsgi_request(uaddr, sent))
    for k, v in sent.items():
        assert k in env, f"var {k} missing from environ"
        assert env[k]["type"] == "str" and env[k]["key_type"] == "str", (k, env[k])
        assert env[k]["value"] == v, (k, env[k]["value"], v)
    assert val(env, "SCRIPT_NAME") == ""
    assert env["wsgi.version"]["value"] == "(1, 0)" and env["wsgi.version"]["type"] == "tuple"
    assert val(env, "wsgi.url_scheme") == "http"
    expect = {"wsgi.multithread": str(RUNNER_MULTITHREAD[runner]), "wsgi.multiprocess": "False",
              "wsgi.run_once": "False"}
    for k, v in expect.items():
        assert env[k] == {"type": "bool", "key_type": "str", "value": v}, (runner, k, env[k])
    assert env["wsgi.input_terminated"]["value"] == "True"
    for k in ("wsgi.input", "wsgi.errors", "wsgi.file_wrapper"):
        assert k in env
    for k, v in env.items():
        if not k.startswith("__") and "." not in k:
            assert v["type"] == "str", (k, v)
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env


def test_minimal_vars_get_script_name_and_query_string(uaddr):
    env = env_of(uwsgi_request(uaddr, {"REQUEST_METHOD": "GET", "PATH_INFO": "/env",
                                       "SERVER_NAME": "localhost", "SERVER_PORT": "80"}))
    assert val(env, "SCRIPT_NAME") == ""
    assert val(env, "QUERY_STRING") == ""
    assert val(env, "PATH_INFO") == "/env"


def test_var_bytes_decoded_as_latin1(uaddr):
    vars_ = [(k.encode(), v.encode()) for k, v in uwsgi_vars("GET", "/x").items() if k != "PATH_INFO"]
    vars_ += [(b"PATH_INFO", b"/caf\xc3\xa9"), (b"HTTP_X_BIN", b"\xff\xfe-\x80")]
    env = env_of(uwsgi_request(uaddr, vars_))
    assert val(env, "PATH_INFO") == "/caf\xc3\xa9"
    assert val(env, "HTTP_X_BIN") == "\xff\xfe-\x80"


def test_path_info_taken_as_sent(uaddr):
    """nginx already decoded $document_uri; the server must not decode it a second time."""
    env = env_of(uwsgi_request(uaddr, uwsgi_vars("GET", "/a%2541")))
    assert val(env, "PATH_INFO") == "/a%2541"


@pytest.mark.parametrize("extra, scheme", [
    ({"HTTPS": "on"}, "https"),
    ({"HTTPS": "ON"}, "https"),
    ({"HTTPS": "1"}, "https"),
    ({"UWSGI_SCHEME": "https"}, "https"),
    ({"HTTPS": "off"}, "http"),
    ({"HTTPS": ""}, "http"),
    ({}, "http"),
])
def test_url_scheme(uaddr, extra, scheme):
    env = env_of(uwsgi_request(uaddr, uwsgi_vars("GET", "/env", extra=extra)))
    assert val(env, "wsgi.url_scheme") == scheme


def test_content_vars_and_body(uaddr):
    body = b"name=value&x=1"
    env = env_of(uwsgi_request(uaddr, uwsgi_vars("POST", "/env", body=body,
                                                 content_type="application/x-www-form-urlencoded"), body))
    assert val(env, "CONTENT_LENGTH") == str(len(body))
    assert val(env, "CONTENT_TYPE") == "application/x-www-form-urlencoded"
    assert env["__body__"]["head"] == body.decode()


# ------------------------------------------------------------------------------------------
# bodies and wsgi.input
# ------------------------------------------------------------------------------------------

def test_large_body_in_pieces(uaddr):
    data = os.urandom(8 * 1024 * 1024)
    pkt = encode_packet(uwsgi_vars("POST", "/upload_sha", body=data))
    pieces = [data[i:i + 300000] for i in range(0, len(data), 300000)]
    resp, _ = uwsgi_exchange(uaddr, pkt, timeout=30, body_chunks=pieces)
    doc = resp.json()
    assert doc["len"] == len(data) and doc["sha256"] == sha256(data) and doc["eof_again"]


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


@pytest.mark.parametrize("op", sorted(INPUT_EXPECT))
def test_wsgi_input_semantics(uaddr, op):
    """Reading past CONTENT_LENGTH returns b"" at once, although the client keeps its side of
    the connection open (as nginx does)."""
    n = 3 if op == "readline_n" else 4
    resp, _ = uwsgi_exchange(uaddr, encode_packet(uwsgi_vars("POST", "/input", f"op={op}&n={n}", body=INPUT_BODY),
                                                  INPUT_BODY), timeout=5)
    assert resp.status == 200
    assert resp.json() == {"op": op, "result": INPUT_EXPECT[op]}


def test_no_content_length_means_empty_body(uaddr):
    resp, _ = uwsgi_exchange(uaddr, encode_packet(uwsgi_vars("POST", "/input", "op=read")), timeout=5)
    assert resp.json()["result"] == ["", ""]


def test_empty_content_vars_as_nginx_sends_them(uaddr):
    """nginx's uwsgi_params send CONTENT_LENGTH and CONTENT_TYPE with empty values on a GET."""
    vars_ = uwsgi_vars("GET", "/input", "op=read", extra={"CONTENT_LENGTH": "", "CONTENT_TYPE": ""})
    resp, _ = uwsgi_exchange(uaddr, encode_packet(vars_), timeout=5)
    assert resp is not None and resp.status == 200, resp
    assert resp.json()["result"] == ["", ""]
    env = env_of(uwsgi_request(uaddr, uwsgi_vars("GET", "/env", extra={"CONTENT_LENGTH": "", "CONTENT_TYPE": ""})))
    assert env["__body__"]["len"] == 0


@pytest.mark.parametrize("size", [0, 1, 8191, 8192, 8193, 2 * 1024 * 1024])
def test_post_buffering_over_uwsgi(server_factory, size):
    s = server_factory("--socket", "127.0.0.1:0", "--wsgi-file", ROUTES, "--post-buffering", "8192")
    data = os.urandom(size)
    doc = uwsgi_request(s.uwsgi_addr, uwsgi_vars("POST", "/upload_sha", body=data), data, timeout=20).json()
    assert doc["len"] == size and doc["sha256"] == sha256(data)


# ------------------------------------------------------------------------------------------
# responses
# ------------------------------------------------------------------------------------------

def test_generator_response_is_close_delimited(uaddr):
    r = uwsgi_request(uaddr, uwsgi_vars("GET", "/gen", "n=4"))
    assert r.status == 200
    assert r.header("Transfer-Encoding") is None, "no chunked coding over uwsgi"
    assert r.body == b"chunk0;chunk1;chunk2;chunk3;"


def test_list_of_one_gets_content_length(uaddr):
    r = uwsgi_request(uaddr, uwsgi_vars("GET", "/list_one"))
    assert r.header("Content-Length") == "5" and r.body == b"hello"


def test_status_line_and_headers(uaddr):
    r = uwsgi_request(uaddr, uwsgi_vars("GET", "/status", "code=418"))
    assert r.status == 418 and r.reason == "I'm a teapot"
    assert r.header("X-Status-Route") == "418"
    assert r.body == b""


def test_head_over_uwsgi(uaddr):
    r = uwsgi_request(uaddr, uwsgi_vars("HEAD", "/hello"))
    assert r.status == 200 and r.header("Content-Length") == "13"
    assert r.body == b""


def test_write_callable(uaddr):
    assert uwsgi_request(uaddr, uwsgi_vars("GET", "/write")).body == b"written-1;written-2;returned"


def test_close_called(uaddr):
    token = f"u-close-{uaddr if isinstance(uaddr, str) else uaddr[1]}"
    uwsgi_request(uaddr, uwsgi_vars("GET", "/gen", f"n=2&token={token}"))
    wait_until(lambda: uwsgi_request(uaddr, uwsgi_vars("GET", "/closed", f"token={token}")).json()["closed"] == 1,
               5, what="close()")


def test_close_called_when_client_disconnects(uaddr):
    token = f"u-disc-{uaddr if isinstance(uaddr, str) else uaddr[1]}"
    with Conn(uaddr) as c:
        c.send(encode_packet(uwsgi_vars("GET", "/stream", f"mb=500&token={token}")))
        c.read_until(b"\r\n\r\n")
        c.read_exact(1 << 20)
        if not isinstance(uaddr, str):
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_until(lambda: uwsgi_request(uaddr, uwsgi_vars("GET", "/closed", f"token={token}")).json()["closed"] == 1,
               10, what="close() after the client went away")


def test_exc_info_and_errors(uaddr, usrv):
    r = uwsgi_request(uaddr, uwsgi_vars("GET", "/exc_replace"))
    assert r.status == 500 and r.header("X-Second") == "1" and r.header("X-First") is None
    m = usrv.mark()
    r = uwsgi_request(uaddr, uwsgi_vars("GET", "/raise_before"))
    assert r.status == 500
    usrv.wait_for("boom before start_response zzq", 5, start=m)
    assert_serving(uaddr)


def test_file_wrapper_50mb(uaddr, bigfile):
    path, digest = bigfile
    r = uwsgi_request(uaddr, uwsgi_vars("GET", "/file", f"path={path}"), timeout=30)
    assert r.status == 200 and r.header("Content-Length") == str(50 << 20)
    assert sha256(r.body) == digest


def test_file_wrapper_offset_and_length(uaddr, bigfile):
    path, _ = bigfile
    with open(path, "rb") as f:
        f.seek(1000)
        want = f.read(5000)
    r = uwsgi_request(uaddr, uwsgi_vars("GET", "/file_offset", f"path={path}&seek=1000&length=5000"))
    assert r.body == want


def test_file_wrapper_bytesio(uaddr):
    r = uwsgi_request(uaddr, uwsgi_vars("GET", "/bytesio", "size=100000&cl=0&kind=nofileno"))
    assert r.body == (b"0123456789abcdef" * 6251)[:100000]


def test_big_generator(uaddr):
    r = uwsgi_request(uaddr, uwsgi_vars("GET", "/big", "blocks=160"), timeout=30)
    assert sha256(r.body) == pattern_sha256(160)


def test_one_request_per_connection(uaddr):
    """uwsgi responses are close-delimited: the server closes after each response."""
    with Conn(uaddr) as c:
        c.send(encode_packet(uwsgi_vars("GET", "/hello")))
        assert c.wait_closed(5)
        r = parse_uwsgi_response(bytes(c.buf))
        assert r.body == b"Hello, world!"


# ------------------------------------------------------------------------------------------
# malformed packets
# ------------------------------------------------------------------------------------------

def _var(k: bytes, v: bytes) -> bytes:
    return struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v


GOOD_VARS = b"".join(_var(k.encode(), v.encode()) for k, v in uwsgi_vars("GET", "/hello").items())


def _pkt(block: bytes, modifier1: int = 0, datasize=None) -> bytes:
    return struct.pack("<BHB", modifier1, len(block) if datasize is None else datasize, 0) + block


BAD_PACKETS = {
    "datasize_zero": _pkt(b""),
    "value_runs_past_block": _pkt(GOOD_VARS + struct.pack("<H", 4) + b"ABCD" + struct.pack("<H", 50) + b"xy"),
    "key_runs_past_block": _pkt(GOOD_VARS + struct.pack("<H", 40) + b"ABCD"),
    "key_without_value_length": _pkt(GOOD_VARS + struct.pack("<H", 4) + b"ABCD"),
    "zero_length_key": _pkt(GOOD_VARS + _var(b"", b"value")),
    "odd_trailing_byte": _pkt(GOOD_VARS + b"\x01"),
    "content_length_not_digits": _pkt(GOOD_VARS + _var(b"CONTENT_LENGTH", b"12x")),
}


@pytest.mark.parametrize("name", sorted(BAD_PACKETS))
def test_malformed_packet(uaddr, name):
    resp, raw = uwsgi_exchange(uaddr, BAD_PACKETS[name], timeout=5)
    closed_or_status(raw)
    assert_serving(uaddr)


def test_truncated_packet_then_eof(uaddr):
    pkt = encode_packet(uwsgi_vars("GET", "/hello"))
    resp, raw = uwsgi_exchange(uaddr, pkt[:len(pkt) // 2], timeout=5, shut_wr=True)
    assert raw == b"", raw[:200]
    resp, raw = uwsgi_exchange(uaddr, pkt[:2], timeout=5, shut_wr=True)
    assert raw == b"", raw[:200]
    assert_serving(uaddr)


def test_body_shorter_than_content_length_then_eof(uaddr):
    vars_ = uwsgi_vars("POST", "/echo", body=b"x" * 1000)
    resp, raw = uwsgi_exchange(uaddr, encode_packet(vars_, b"x" * 10), timeout=5, shut_wr=True)
    assert b"200 OK" not in raw[:40] or len(raw) < 1000
    assert_serving(uaddr)


def test_packet_larger_than_buffer_size(small_srv):
    vars_ = uwsgi_vars("GET", "/hello", extra={"HTTP_X_BIG": "a" * 8000})
    pkt = encode_packet(vars_)
    datasize = struct.unpack_from("<H", pkt, 1)[0]
    assert datasize > SMALL_BUFFER
    m = small_srv.mark()
    resp, raw = uwsgi_exchange(small_srv.uwsgi_addr, pkt, timeout=5)
    closed_or_status(raw, (400, 413, 431))
    small_srv.wait_for(lambda l: "buffer-size" in l and str(datasize) in l, 5, start=m)
    # a packet that fits is fine
    ok = uwsgi_vars("GET", "/env", extra={"HTTP_X_FITS": "b" * 3000})
    assert val(env_of(uwsgi_request(small_srv.uwsgi_addr, ok)), "HTTP_X_FITS") == "b" * 3000


def test_content_length_over_limit_post(small_srv):
    body = b"p" * (SMALL_LIMIT_POST + 1)
    resp, raw = uwsgi_exchange(small_srv.uwsgi_addr, encode_packet(uwsgi_vars("POST", "/echo", body=body), body),
                               timeout=5)
    assert resp is not None and resp.status == 413, raw[:300]
    r = uwsgi_request(small_srv.uwsgi_addr, uwsgi_vars("POST", "/echo", body=b"q" * SMALL_LIMIT_POST),
                      b"q" * SMALL_LIMIT_POST)
    assert r.status == 200 and r.body == b"q" * SMALL_LIMIT_POST


def test_too_many_vars_default_buffer(uaddr):
    vars_ = list(uwsgi_vars("GET", "/hello").items()) + [(f"X{i}", "") for i in range(3000)]
    pkt = encode_packet(vars_)
    assert len(pkt) < 65535
    resp, raw = uwsgi_exchange(uaddr, pkt, timeout=5)
    closed_or_status(raw, (400, 431))
    assert_serving(uaddr)


def test_modifier1_not_zero(usrv, uaddr):
    m = usrv.mark()
    resp, raw = uwsgi_exchange(uaddr, encode_packet(uwsgi_vars("GET", "/hello"), modifier1=17), timeout=5)
    assert raw == b"" or not raw.startswith(b"HTTP/1.1 200"), raw[:200]
    usrv.wait_for(lambda l: "modifier1" in l and "17" in l, 5, start=m)
    assert_serving(uaddr)


def test_http_request_sent_to_uwsgi_socket(usrv, uaddr):
    m = usrv.mark()
    with Conn(uaddr, timeout=5) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", ignore_errors=True)
        assert c.wait_closed(5), "the server must close a connection that speaks HTTP to a uwsgi socket"
        closed_or_status(bytes(c.buf))
    usrv.wait_for(lambda l: "HTTP" in l and ("like" in l.lower() or "http-socket" in l.lower()), 5, start=m)
    assert_serving(uaddr)


def test_garbage_then_good(uaddr):
    resp, raw = uwsgi_exchange(uaddr, os.urandom(3), timeout=5, shut_wr=True)
    assert raw == b""
    assert_serving(uaddr)


# ------------------------------------------------------------------------------------------
# slow clients, logging, signals, unix socket
# ------------------------------------------------------------------------------------------

def test_slow_client_does_not_block_others(uaddr):
    pkt = encode_packet(uwsgi_vars("GET", "/env", "slow=1"))
    with Conn(uaddr) as slow:
        slow.send(pkt[:7])
        t0 = time.monotonic()
        assert_serving(uaddr)
        assert time.monotonic() - t0 < 5
        slow.send(pkt[7:])
        assert slow.wait_closed(5)
        assert val(env_of(parse_uwsgi_response(bytes(slow.buf))), "QUERY_STRING") == "slow=1"


def test_access_log_over_uwsgi(usrv, uaddr):
    m = usrv.mark()
    uwsgi_request(uaddr, uwsgi_vars("GET", "/hello", "via=uwsgi-log"))
    line = usrv.wait_for(lambda l: "/hello?via=uwsgi-log" in l, 5, start=m)
    assert '"GET /hello?via=uwsgi-log HTTP/1.1" 200 13 ' in line, line


def test_unix_socket_file(usrv):
    paths = [a for k, a in usrv.listeners if a.startswith("/")]
    assert paths and stat.S_ISSOCK(os.stat(paths[0]).st_mode)


def test_sigterm_finishes_inflight_request(server_factory, unix_dir):
    sock = os.path.join(unix_dir, "term.sock")
    s = server_factory("--socket", sock, "--wsgi-file", ROUTES, expect_rc=None)
    with Conn(sock) as c:
        c.send(encode_packet(uwsgi_vars("GET", "/sleep", "s=1&token=usleep")))
        s.wait_for("sleep-start usleep", 5)
        s.signal(signal.SIGTERM)
        assert c.wait_closed(10)
        r = parse_uwsgi_response(bytes(c.buf))
        assert r.status == 200 and r.body == b"slept"
    assert s.wait_exit(10) == 0, s.output()


def test_validator_wrapped_app_over_uwsgi(server_factory, bigfile):
    path, digest = bigfile
    s = server_factory("--socket", "127.0.0.1:0", "--wsgi-file", str(APPS / "validated_app.py"), expect_rc=None)
    a = s.uwsgi_addr
    assert uwsgi_request(a, uwsgi_vars("GET", "/")).body == b"validated ok"
    body = os.urandom(100000)
    assert uwsgi_request(a, uwsgi_vars("POST", "/post", body=body), body).json() == \
        {"len": len(body), "sha256": sha256(body)}
    assert uwsgi_request(a, uwsgi_vars("POST", "/lines", body=b"a\nb"), b"a\nb").json() == ["a\n", "b"]
    assert uwsgi_request(a, uwsgi_vars("GET", "/write")).body == b"via-write;via-iter"
    assert uwsgi_request(a, uwsgi_vars("GET", "/gen")).body == b"part0;part1;part2;part3;part4;"
    assert uwsgi_request(a, uwsgi_vars("GET", "/nocontent")).status == 204
    assert uwsgi_request(a, uwsgi_vars("GET", "/errors")).status == 200
    assert sha256(uwsgi_request(a, uwsgi_vars("GET", "/file", f"path={path}"), timeout=30).body) == digest
    assert s.stop() == 0
    out = s.output()
    for bad in ("AssertionError", "WSGIWarning", "without being closed", "Traceback"):
        assert bad not in out, out
