"""ASGI 3.0 over HTTP (issue 10): the scope, receive(), send() and the error paths of raw ASGI
callables (tests/apps/asgi_raw.py) served by uwsgipy over --http-socket, over the uwsgi
protocol (raw packets from tests/uwsgi_codec.py) and behind real nginx uwsgi_pass.

What must hold (asgiref's ASGI spec, HTTP 2.4, and the shared design /tmp/team/DESIGN-asgi.md):
- every HTTP scope key with the spec's types: path percent-decoded (UTF-8, U+FFFD for bad
  bytes, %2F decoded) and including root_path; raw_path and query_string as sent; headers
  lower-cased, in order, repeated ones kept; client, server, scheme, http_version, state;
- receive(): the body in several http.request messages as it arrives (more_body), not read
  whole first; the server stops reading while the app does not take a chunk; http.disconnect
  when the client goes away and once the response is complete;
- send(): Content-Length from the app, a server Content-Length for one body, chunked for a
  stream on HTTP/1.1, close-delimited on HTTP/1.0 and uwsgi; HEAD; keep-alive; pipelining;
  trailers when the request said TE: trailers; pathsend; send() after the client left raises
  OSError; a client that does not read holds the app in send() and the RSS stays bounded;
- errors: 500 and a traceback before http.response.start, the connection closed after it, an
  app returning without a response;
- the access log, the stats counters and max-requests recycling with a master, as for WSGI.

Real servers on 127.0.0.1 port 0, real sockets, real nginx; readiness and state are polled,
every loop is bounded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import struct
import threading
import time

import pytest

from helpers import (ACCESS_RE, Conn, IncompleteResponse, RssSampler, asgi_core_problem,
                     build_request, expect_raise_after_start, chunked, connect, encode_packet, http_request, parse_addr,
                     pattern_sha256, sha256, uwsgi_exchange, uwsgi_request, uwsgi_vars, vm_rss_kib,
                     wait_until)

_PROBLEM = asgi_core_problem()
if _PROBLEM:
    pytest.skip(_PROBLEM, allow_module_level=True)

RAW = ["--pythonpath", "tests/apps", "--module", "asgi_raw:application"]
STATS_RE = re.compile(r"uwsgipy: stats server on (\S+)")
MIB = 1024 * 1024


# ----------------------------------------------------------------------------------------------
# servers and helpers
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def srv(module_server_factory):
    """uwsgipy --http-socket with asgi_raw (ASGI chosen automatically: an async def callable)."""
    return module_server_factory("--http-socket", "127.0.0.1:0", *RAW)


@pytest.fixture(scope="module")
def usrv(module_server_factory):
    """uwsgipy --socket (the uwsgi protocol) with asgi_raw."""
    return module_server_factory("--socket", "127.0.0.1:0", *RAW)


@pytest.fixture(scope="module")
def ngx(usrv, module_nginx_factory):
    """Real nginx, the shipped uwsgi-tcp.conf, uwsgi_pass to usrv."""
    return module_nginx_factory("uwsgi-tcp.conf", usrv.uwsgi_addr)


def unjson(v):
    """Undo asgi_raw.jsonable: {"bytes": ...} -> bytes, {"tuple": [...]} -> tuple."""
    if isinstance(v, dict):
        if set(v) == {"bytes"}:
            return v["bytes"].encode("latin-1")
        if set(v) == {"tuple"}:
            return tuple(unjson(x) for x in v["tuple"])
        return {k: unjson(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unjson(x) for x in v]
    return v


def scope_of(resp) -> dict:
    assert resp.status == 200, resp
    return unjson(json.loads(resp.body))


def check_scope_types(scope: dict) -> None:
    """The types asgiref's spec gives every HTTP scope key (HTTP 2.4, "HTTP Connection Scope")."""
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0", scope["asgi"]
    assert scope["asgi"].get("spec_version") == "2.4", scope["asgi"]
    assert scope["http_version"] in ("1.0", "1.1"), scope["http_version"]
    assert isinstance(scope["method"], str) and scope["method"] == scope["method"].upper()
    assert scope["scheme"] in ("http", "https")
    assert isinstance(scope["path"], str)
    assert isinstance(scope["raw_path"], bytes)
    assert isinstance(scope["query_string"], bytes)
    assert isinstance(scope["root_path"], str)
    assert isinstance(scope["headers"], list) or isinstance(scope["headers"], tuple)
    for h in scope["headers"]:
        assert len(h) == 2 and isinstance(h[0], bytes) and isinstance(h[1], bytes), h
        assert h[0] == h[0].lower(), f"header name not lower-cased: {h[0]!r}"
    client = scope["client"]
    assert client is None or (len(client) == 2 and isinstance(client[0], str) and isinstance(client[1], int)), client
    server = scope["server"]
    assert server is None or (len(server) == 2 and isinstance(server[0], str)
                              and (server[1] is None or isinstance(server[1], int))), server
    ext = scope.get("extensions") or {}
    assert "http.response.trailers" in ext and "http.response.pathsend" in ext, ext
    assert scope["__state_type"] == "dict" and scope["__state"]["db"] == "connected", \
        "the lifespan state reaches every scope (a copy)"


def headers_list(scope):
    return [tuple(h) for h in scope["headers"]]


def read_chunked_with_trailers(c: Conn):
    """Read a chunked response whole: (head bytes, body, [(trailer name, value)])."""
    head = c.read_until(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), head
    body = bytearray()
    while True:
        size = int(c.read_until(b"\r\n").split(b";")[0], 16)
        if size == 0:
            break
        body += c.read_exact(size)
        assert c.read_exact(2) == b"\r\n"
    trailers = []
    while True:
        line = c.read_until(b"\r\n")
        if line == b"\r\n":
            break
        k, _, v = line[:-2].partition(b":")
        trailers.append((k.strip().decode().lower(), v.strip().decode()))
    return head, bytes(body), trailers


def in_thread(fn, *args):
    holder: dict = {}

    def run():
        try:
            holder["result"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            holder["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, holder


def result_of(t, holder, timeout: float):
    t.join(timeout)
    assert not t.is_alive(), f"client thread still running after {timeout}s"
    if "error" in holder:
        raise holder["error"]
    return holder.get("result")


def settled(read, what: str, quiet: float = 0.5, timeout: float = 10.0):
    """Poll read() until its value has not changed for `quiet` seconds; bounded by timeout."""
    deadline = time.monotonic() + timeout
    last = read()
    since = time.monotonic()
    while True:
        time.sleep(0.05)
        v = read()
        now = time.monotonic()
        if v != last:
            last, since = v, now
        elif now - since >= quiet:
            return v
        if now >= deadline:
            raise AssertionError(f"{what} still changing after {timeout}s (last {last!r})")


def served_quickly(addr, n: int = 5, bound: float = 1.0) -> None:
    """n fresh requests to /hello, each answered within `bound` seconds."""
    for i in range(n):
        t0 = time.monotonic()
        r = http_request(addr, "GET", f"/hello?meanwhile={i}")
        took = time.monotonic() - t0
        assert r.status == 200 and r.body == b"Hello, ASGI!", r
        assert took < bound, f"request {i} took {took:.2f}s while another was stalled"


# ----------------------------------------------------------------------------------------------
# the HTTP scope
# ----------------------------------------------------------------------------------------------

SENT_HEADERS = [("X-Custom", "custom-v"), ("X-Multi", "1"), ("X-MiXeD-Case", "Keep Case Value"),
                ("X-Multi", "2"), ("Cookie", "a=1; b=2")]


def test_scope_over_http_socket(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/scope/caf%C3%A9/a%2Fb?x=1&y=%41&z=caf%C3%A9",
                             [*SENT_HEADERS, ("Connection", "close")]))
        local = c.sock.getsockname()
        scope = scope_of(c.read_response())
    check_scope_types(scope)
    assert scope["method"] == "GET"
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/caf\u00e9/a/b", "path: percent-decoded, UTF-8, %2F decoded"
    assert scope["raw_path"] == b"/scope/caf%C3%A9/a%2Fb", "raw_path: as sent, without the query"
    assert scope["query_string"] == b"x=1&y=%41&z=caf%C3%A9", "query_string: as sent, without '?'"
    assert scope["root_path"] == ""
    assert headers_list(scope) == [(b"host", b"127.0.0.1"), (b"x-custom", b"custom-v"), (b"x-multi", b"1"),
                                   (b"x-mixed-case", b"Keep Case Value"), (b"x-multi", b"2"),
                                   (b"cookie", b"a=1; b=2"), (b"connection", b"close")]
    assert tuple(scope["client"]) == (local[0], local[1])
    assert tuple(scope["server"]) == tuple(srv.http_addr)


def test_scope_post_body_and_headers(srv):
    r = http_request(srv.http_addr, "POST", "/scope", [("Content-Type", "application/json")], body=b'{"a": 1}')
    scope = scope_of(r)
    assert scope["method"] == "POST" and scope["__body_len"] == 8
    hs = headers_list(scope)
    assert (b"content-type", b"application/json") in hs and (b"content-length", b"8") in hs


def test_scope_path_invalid_utf8_and_odd_bytes(srv):
    scope = scope_of(http_request(srv.http_addr, "GET", "/scope/%FF%FEx/%2e/%20sp"))
    assert scope["path"] == "/scope/\ufffd\ufffdx/./ sp", "bad UTF-8 becomes U+FFFD"
    assert scope["raw_path"] == b"/scope/%FF%FEx/%2e/%20sp"
    scope = scope_of(http_request(srv.http_addr, "GET", "/scope"))
    assert scope["query_string"] == b"" and scope["path"] == "/scope"
    scope = scope_of(http_request(srv.http_addr, "GET", "/scope?"))
    assert scope["query_string"] == b""


def test_scope_http_10(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/scope?v=10", version="HTTP/1.0"))
        r = c.read_response()
        assert c.wait_closed(5), "HTTP/1.0 without keep-alive: the server closes"
    scope = scope_of(r)
    assert scope["http_version"] == "1.0"
    assert r.version in ("HTTP/1.0", "HTTP/1.1")


def test_scope_methods(srv):
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        scope = scope_of(http_request(srv.http_addr, method, "/scope", body=b"x" if method == "PUT" else b""))
        assert scope["method"] == method


def test_scope_over_raw_uwsgi(usrv):
    """From uwsgi vars (what nginx's uwsgi_params sends): SCRIPT_NAME is root_path and path
    includes it, REQUEST_URI gives raw_path, HTTPS=on gives scheme https, SERVER_PROTOCOL gives
    http_version, REMOTE_ADDR/PORT the client, SERVER_NAME/PORT the server, HTTP_* and
    CONTENT_TYPE/CONTENT_LENGTH the headers."""
    body = b"hello"
    pairs = [("REQUEST_METHOD", "POST"), ("REQUEST_URI", "/mnt/scope/caf%C3%A9/a%2Fb?x=1&y=%41"),
             ("PATH_INFO", "/scope/caf\u00e9/a/b"), ("SCRIPT_NAME", "/mnt"), ("QUERY_STRING", "x=1&y=%41"),
             ("SERVER_PROTOCOL", "HTTP/1.0"), ("SERVER_NAME", "example.test"), ("SERVER_PORT", "8443"),
             ("REMOTE_ADDR", "10.1.2.3"), ("REMOTE_PORT", "40000"), ("HTTPS", "on"),
             ("HTTP_HOST", "example.test:8443"), ("HTTP_X_CUSTOM", "custom-v"), ("HTTP_X_MULTI", "1"),
             ("HTTP_X_MULTI", "2"), ("CONTENT_TYPE", "text/plain"), ("CONTENT_LENGTH", "5")]
    r, raw = uwsgi_exchange(usrv.uwsgi_addr, encode_packet(pairs, body=body))
    assert r is not None, raw
    scope = scope_of(r)
    check_scope_types(scope)
    assert scope["method"] == "POST" and scope["__body_len"] == 5
    assert scope["http_version"] == "1.0"
    assert scope["scheme"] == "https"
    assert scope["root_path"] == "/mnt"
    assert scope["path"] == "/mnt/scope/caf\u00e9/a/b", "path includes root_path (uvicorn >= 0.26, Starlette)"
    assert scope["raw_path"] == b"/mnt/scope/caf%C3%A9/a%2Fb"
    assert scope["query_string"] == b"x=1&y=%41"
    assert tuple(scope["client"]) == ("10.1.2.3", 40000)
    assert tuple(scope["server"]) == ("example.test", 8443)
    hs = headers_list(scope)
    assert [h for h in hs if not h[0].startswith(b"content-")] == \
        [(b"host", b"example.test:8443"), (b"x-custom", b"custom-v"), (b"x-multi", b"1"), (b"x-multi", b"2")]
    assert (b"content-type", b"text/plain") in hs and (b"content-length", b"5") in hs


def test_scope_over_raw_uwsgi_http_scheme(usrv):
    v = uwsgi_vars("GET", "/scope/x", query="q=1")
    scope = scope_of(uwsgi_request(usrv.uwsgi_addr, v))
    assert scope["scheme"] == "http" and scope["root_path"] == "" and scope["path"] == "/scope/x"
    assert scope["raw_path"] == b"/scope/x" and scope["query_string"] == b"q=1"
    assert scope["http_version"] == "1.1"


def test_scope_through_nginx_uwsgi_pass(ngx):
    with Conn(ngx.addr) as c:
        c.send(build_request("GET", "/scope/caf%C3%A9/a%2Fb?x=1&y=%41", [*SENT_HEADERS, ("Connection", "close")]))
        scope = scope_of(c.read_response())
    check_scope_types(scope)
    assert scope["http_version"] == "1.1" and scope["scheme"] == "http"
    assert scope["path"] == "/scope/caf\u00e9/a/b"
    assert scope["raw_path"] == b"/scope/caf%C3%A9/a%2Fb"
    assert scope["query_string"] == b"x=1&y=%41"
    assert scope["root_path"] == ""
    hs = headers_list(scope)
    for h in [(b"x-custom", b"custom-v"), (b"x-mixed-case", b"Keep Case Value"), (b"cookie", b"a=1; b=2")]:
        assert h in hs, (h, hs)
    assert [v for k, v in hs if k == b"x-multi"] == [b"1", b"2"], hs
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"][1] == ngx.port


def test_post_headers_through_nginx_uwsgi_pass(ngx):
    """nginx sends CONTENT_TYPE/CONTENT_LENGTH (uwsgi_params) and, like every request header,
    HTTP_CONTENT_TYPE/HTTP_CONTENT_LENGTH too: the scope must carry each header once (Django
    joins repeated ones: int("5,5") fails)."""
    r = http_request(ngx.addr, "POST", "/scope", [("Content-Type", "text/plain")], body=b"hello")
    scope = scope_of(r)
    hs = headers_list(scope)
    assert [v for k, v in hs if k == b"content-length"] == [b"5"], hs
    assert [v for k, v in hs if k == b"content-type"] == [b"text/plain"], hs
    assert scope["__body_len"] == 5


# ----------------------------------------------------------------------------------------------
# receive()
# ----------------------------------------------------------------------------------------------

def test_empty_body_is_one_message(srv):
    doc = http_request(srv.http_addr, "GET", "/body_info").json()
    assert doc == {"len": 0, "sha256": sha256(b""), "messages": 1, "max_message": 0,
                   "more_body_last": False, "more_body_before": True}


def test_large_body_fast(srv):
    data = os.urandom(8 * MIB)
    doc = http_request(srv.http_addr, "POST", "/body_info", body=data, timeout=30).json()
    assert doc["len"] == len(data) and doc["sha256"] == sha256(data)
    assert doc["more_body_last"] is False and doc["more_body_before"] is True
    assert doc["messages"] > 1, "an 8 MiB body in one http.request message: read whole first"


def test_body_chunks_arrive_before_the_body_is_complete(srv):
    """Content-Length 4 MiB, 1 MiB sent: the app already has its first http.request message
    (more_body True) before the client sends the rest."""
    data = os.urandom(4 * MIB)
    m = srv.mark()
    with Conn(srv.http_addr, timeout=30) as c:
        c.send(build_request("POST", "/body_info?token=cl1", [("Content-Length", str(len(data)))],
                             content_length=False) + data[:MIB])
        srv.wait_for("asgi_raw: body_info first-message cl1", 10, start=m)
        c.send(data[MIB:])
        doc = c.read_response().json()
    assert doc["len"] == len(data) and doc["sha256"] == sha256(data)
    assert doc["messages"] >= 2 and doc["more_body_before"] and not doc["more_body_last"]


def test_chunked_upload_chunks_arrive_as_sent(srv):
    data = os.urandom(3 * MIB + 17)
    body = chunked(data, 65536)
    split = body.index(b"\r\n", len(body) // 3) + 2  # somewhere inside the first third
    m = srv.mark()
    with Conn(srv.http_addr, timeout=30) as c:
        c.send(build_request("POST", "/body_info?token=ch1", [("Transfer-Encoding", "chunked")]) + body[:split])
        srv.wait_for("asgi_raw: body_info first-message ch1", 10, start=m)
        c.send(body[split:])
        doc = c.read_response().json()
    assert doc["len"] == len(data) and doc["sha256"] == sha256(data)
    assert doc["messages"] >= 2 and doc["more_body_before"] and not doc["more_body_last"]


def test_body_over_uwsgi_arrives_in_chunks(usrv):
    data = os.urandom(2 * MIB)
    v = uwsgi_vars("POST", "/body_info", query="token=uw1", body=data)
    m = usrv.mark()
    with Conn(usrv.uwsgi_addr, timeout=30) as c:
        c.send(encode_packet(v, body=data[:256 * 1024]))
        usrv.wait_for("asgi_raw: body_info first-message uw1", 10, start=m)
        c.send(data[256 * 1024:])
        assert c.wait_closed(30)
        raw = bytes(c.buf)
    doc = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert doc["len"] == len(data) and doc["sha256"] == sha256(data) and doc["messages"] >= 2


def test_large_body_through_nginx(ngx):
    data = os.urandom(8 * MIB)
    r = http_request(ngx.addr, "POST", "/body_info", body=data, timeout=30)
    assert r.status == 200 and r.json()["sha256"] == sha256(data)


def test_http_disconnect_when_client_goes_away(srv):
    """receive() gives http.disconnect once the client closed; a send() after that raises
    OSError (the design: send() after the client left raises OSError)."""
    m = srv.mark()
    c = Conn(srv.http_addr)
    c.send(build_request("GET", "/wait_disconnect?token=d1"))
    srv.wait_for("asgi_raw: waiting d1", 5, start=m)
    c.close()
    srv.wait_for("asgi_raw: disconnect d1", 5, start=m)
    line = srv.wait_for(re.compile(r"asgi_raw: send-after-disconnect \S+ d1"), 5, start=m)
    assert "OSError" in line, line
    assert http_request(srv.http_addr, "GET", "/hello").body == b"Hello, ASGI!"


def test_http_disconnect_once_the_response_is_complete(srv):
    """With the client still connected (keep-alive), receive() after a complete response
    gives http.disconnect rather than blocking."""
    m = srv.mark()
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/disconnect_after_response?token=d2"))
        assert c.read_response().body == b"done"
        line = srv.wait_for("asgi_raw: after-response d2", 5, start=m)
        assert line.endswith("http.disconnect"), line
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, ASGI!"


# ----------------------------------------------------------------------------------------------
# send(): framing
# ----------------------------------------------------------------------------------------------

def test_app_content_length(srv):
    r = http_request(srv.http_addr, "GET", "/with_length")
    assert r.framing == "length" and r.header("Content-Length") == "10" and r.body == b"0123456789"


def test_one_body_gets_content_length(srv):
    r = http_request(srv.http_addr, "GET", "/one")
    assert r.framing == "length" and r.header("Content-Length") == "11" and r.body == b"hello asgi!", r
    assert not r.has_header("Transfer-Encoding")


def test_stream_is_chunked_on_11(srv):
    r = http_request(srv.http_addr, "GET", "/stream?n=5&size=10")
    assert r.framing == "chunked", r
    assert r.body == b"".join((b"%d" % i) * 10 for i in range(5))
    assert len(r.chunk_sizes) >= 2, "the chunks were sent as they came"


def test_stream_is_close_delimited_on_10(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/stream?n=4&size=3", version="HTTP/1.0"))
        r = c.read_response()
    assert r.framing == "close" and not r.has_header("Transfer-Encoding"), r
    assert r.body == b"000111222333"


def test_stream_over_uwsgi_is_close_delimited(usrv):
    r = uwsgi_request(usrv.uwsgi_addr, uwsgi_vars("GET", "/stream", query="n=3&size=4"))
    assert r.status == 200 and not r.has_header("Transfer-Encoding"), r
    assert r.body == b"000011112222"
    r = uwsgi_request(usrv.uwsgi_addr, uwsgi_vars("GET", "/with_length"))
    assert r.body == b"0123456789" and r.header("Content-Length") == "10"


def test_response_headers_in_order(srv):
    r = http_request(srv.http_addr, "GET", "/headers_out")
    assert [(k.lower(), v) for k, v in r.headers if k.lower() in ("x-multi", "set-cookie")] == \
        [("x-multi", "one"), ("set-cookie", "a=1"), ("set-cookie", "b=2"), ("x-multi", "two")]
    assert r.body == b"hdrs"


def test_204_has_no_body_and_keeps_the_connection(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/headers_out?status=204"))
        r = c.read_response()
        assert r.status == 204 and not r.has_header("Transfer-Encoding")
        assert not r.has_header("Content-Length"), "RFC 9110 8.6: no Content-Length on a 204"
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, ASGI!"


def test_head(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("HEAD", "/one"))
        r = c.read_response("HEAD")
        assert r.status == 200 and r.header("Content-Length") == "11"
        c.send(build_request("GET", "/hello"))
        r2 = c.read_response()
        assert r2.body == b"Hello, ASGI!", "a HEAD response carried body bytes"
        c.send(build_request("HEAD", "/stream?n=3&size=5"))
        r = c.read_response("HEAD")
        assert r.status == 200
        c.send(build_request("GET", "/hello"), ignore_errors=True)
        try:
            r3 = c.read_response()
        except IncompleteResponse as e:  # closing after a HEAD of unknown length is fine
            assert e.partial == b"", f"bytes after the HEAD response: {e.partial[:200]!r}"
        else:
            assert r3.body == b"Hello, ASGI!", "a HEAD response carried body bytes"


def test_keepalive(srv):
    with Conn(srv.http_addr) as c:
        port = c.sock.getsockname()[1]
        for i in range(20):
            c.send(build_request("GET", f"/scope?i={i}"))
            scope = scope_of(c.read_response())
            assert scope["query_string"] == f"i={i}".encode() and scope["client"][1] == port


def test_pipelining(srv):
    reqs = [build_request("GET", "/one"), build_request("POST", "/echo", body=b"abc"),
            build_request("GET", "/stream?n=3&size=2"), build_request("GET", "/with_length"),
            build_request("GET", "/scope?pipe=5")]
    with Conn(srv.http_addr) as c:
        c.send(b"".join(reqs))
        bodies = [c.read_response().body for _ in range(4)]
        last = scope_of(c.read_response())
    assert bodies == [b"hello asgi!", b"abc", b"001122", b"0123456789"]
    assert last["query_string"] == b"pipe=5"


def test_trailers_when_the_client_accepts_them(srv):
    """http.response.trailers: sent as chunked trailer fields when the request said TE: trailers."""
    expected = hashlib.sha256(b"part-one;part-two;part-three;").hexdigest()
    with Conn(srv.http_addr) as c:
        c.send(build_request("POST", "/trailers", [("TE", "trailers")], body=b"x"))
        head, body, trailers = read_chunked_with_trailers(c)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == b"part-one;part-two;part-three;"
    assert trailers == [("x-checksum", expected), ("x-count", "3")], trailers


def test_trailers_without_te_still_complete_the_body(srv):
    with Conn(srv.http_addr) as c:
        c.send(build_request("POST", "/trailers", body=b"x"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"part-one;part-two;part-three;"
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, ASGI!"


@pytest.fixture(scope="module")
def file3(tmp_path_factory):
    """20 MiB + 5: more than the socket takes at once, so sendfile must resume on EPOLLOUT."""
    p = tmp_path_factory.mktemp("asgifiles") / "f20.bin"
    data = os.urandom(20 * MIB + 5)
    p.write_bytes(data)
    return p, sha256(data)


def test_pathsend_http(srv, file3):
    path, digest = file3
    with Conn(srv.http_addr, timeout=10, rcvbuf=65536) as c:
        c.send(build_request("GET", f"/pathsend?path={path}"))
        r = c.read_response()
        assert r.status == 200 and r.header("Content-Length") == str(20 * MIB + 5)
        assert sha256(r.body) == digest
        c.send(build_request("GET", "/hello"))
        assert c.read_response().body == b"Hello, ASGI!"


def test_pathsend_uwsgi(usrv, file3):
    path, digest = file3
    r = uwsgi_request(usrv.uwsgi_addr, uwsgi_vars("GET", "/pathsend", query=f"path={path}"), timeout=10)
    assert r.status == 200 and sha256(r.body) == digest


def test_streams_through_nginx(ngx):
    r = http_request(ngx.addr, "GET", "/big_stream?blocks=160", timeout=30)
    assert r.status == 200 and sha256(r.body) == pattern_sha256(160)
    r = http_request(ngx.addr, "GET", "/one")
    assert r.body == b"hello asgi!"


def test_pathsend_through_nginx(ngx, file3):
    path, digest = file3
    r = http_request(ngx.addr, "GET", f"/pathsend?path={path}", timeout=10)
    assert r.status == 200 and sha256(r.body) == digest


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------

def test_exception_before_start_is_500_with_traceback(srv):
    m = srv.mark()
    r = http_request(srv.http_addr, "GET", "/raise_before")
    assert r.status == 500, r
    srv.wait_for("asgi boom before start zzq", 5, start=m)
    out = "\n".join(srv.lines[m:])
    assert "Traceback (most recent call last)" in out and "r_raise_before" in out, out
    assert http_request(srv.http_addr, "GET", "/hello").body == b"Hello, ASGI!"


def test_exception_before_start_over_uwsgi(usrv):
    r = uwsgi_request(usrv.uwsgi_addr, uwsgi_vars("GET", "/raise_before"))
    assert r.status == 500


def test_exception_after_start_closes_the_connection(srv):
    m = srv.mark()
    with Conn(srv.http_addr) as c:
        expect_raise_after_start(srv, c, m)
    assert http_request(srv.http_addr, "GET", "/hello").body == b"Hello, ASGI!"


def test_app_returns_without_a_response(srv):
    """No http.response.start at all: a 500 (or the connection closed with nothing sent)."""
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/no_response"))
        try:
            r = c.read_response()
        except IncompleteResponse as e:
            assert e.partial == b""
        else:
            assert r.status == 500, r
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/start_only"))
        # a head and no end: the connection is closed, not left hanging
        assert c.wait_closed(5), "the connection was left open after an unfinished response"
        raw = bytes(c.buf)
    assert not raw.endswith(b"0\r\n\r\n"), f"an unfinished response must not look complete: {raw!r}"
    assert http_request(srv.http_addr, "GET", "/hello").body == b"Hello, ASGI!"


# ----------------------------------------------------------------------------------------------
# backpressure
# ----------------------------------------------------------------------------------------------

def progress(addr, token: str) -> int:
    return http_request(addr, "GET", f"/progress?token={token}").json()["blocks"]


def test_client_that_does_not_read_a_50mb_stream(srv):
    """A client that stops reading a 50 MiB streamed response: the app's send() stops returning
    (backpressure), the worker's RSS stays within 32 MiB of where it was, other clients are
    served meanwhile, and once the client reads, every byte arrives."""
    blocks = 800  # 50 MiB of 64 KiB pattern blocks
    m = srv.mark()
    base = vm_rss_kib(srv.pid)
    c = Conn(srv.http_addr, timeout=60, rcvbuf=65536)
    try:
        with RssSampler(srv.pid) as rss:
            c.send(build_request("GET", f"/big_stream?blocks={blocks}&token=bp1"))
            srv.wait_for("asgi_raw: big_stream start bp1", 5, start=m)
            stalled_at = settled(lambda: progress(srv.http_addr, "bp1"), "the stream's progress")
            assert stalled_at < blocks // 2, \
                f"send() returned for {stalled_at} of {blocks} blocks while the client read nothing"
            assert srv.find("asgi_raw: big_stream done bp1", m) is None
            served_quickly(srv.http_addr)
            stalled_peak = rss.peak_kib
            r = c.read_response()
        assert sha256(r.body) == pattern_sha256(blocks)
    finally:
        c.close()
    srv.wait_for("asgi_raw: big_stream done bp1", 5, start=m)
    assert stalled_peak - base < 32 * 1024, f"RSS grew {(stalled_peak - base) // 1024} MiB while stalled"
    assert rss.peak_kib - base < 64 * 1024, f"RSS grew {(rss.peak_kib - base) // 1024} MiB"


def test_upload_the_app_reads_slowly(srv):
    """A 48 MiB upload to an app that takes one http.request message and then stops calling
    receive(): the server stops reading the socket (the client's send blocks well before the
    end), its RSS stays bounded, others are served; after the app resumes, all bytes arrive."""
    block = os.urandom(65536)
    total = 768 * len(block)  # 48 MiB
    digest = hashlib.sha256(block * 768).hexdigest()
    base = vm_rss_kib(srv.pid)
    m = srv.mark()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock.settimeout(60)
    sock.connect(srv.http_addr)
    sent = [0]

    def upload():
        sock.sendall(build_request("POST", "/gate_read?token=g1", [("Content-Length", str(total))],
                                   content_length=False))
        for _ in range(768):
            sock.sendall(block)
            sent[0] += len(block)
    try:
        with RssSampler(srv.pid) as rss:
            t, holder = in_thread(upload)
            srv.wait_for("asgi_raw: gate_read first g1", 10, start=m)
            stuck = settled(lambda: sent[0], "the client's upload")
            assert stuck < 20 * MIB, f"the server took {stuck // MIB} MiB of the body the app did not read"
            served_quickly(srv.http_addr)
            stalled_peak = rss.peak_kib
            assert http_request(srv.http_addr, "GET", "/release?token=g1").body == b"released"
            result_of(t, holder, 60)
            c = Conn.__new__(Conn)
            c.addr, c.sock, c.buf, c.eof, c.reset = srv.http_addr, sock, bytearray(), False, False
            doc = c.read_response().json()
        assert doc == {"len": total, "sha256": digest}
    finally:
        sock.close()
    assert stalled_peak - base < 24 * 1024, f"RSS grew {(stalled_peak - base) // 1024} MiB while the app waited"


def test_slow_request_does_not_hold_the_worker(srv):
    """asyncio.sleep in one request; the worker's loop answers others at once."""
    m = srv.mark()
    t, holder = in_thread(lambda: http_request(srv.http_addr, "GET", "/sleep?s=1.5&token=sl1"))
    srv.wait_for("asgi_raw: sleep-start sl1", 5, start=m)
    served_quickly(srv.http_addr, n=5, bound=0.5)
    assert result_of(t, holder, 10).body == b"slept"


# ----------------------------------------------------------------------------------------------
# logs, stats, recycling, lifespan, app detection
# ----------------------------------------------------------------------------------------------

def test_access_log_lines(srv):
    m = srv.mark()
    http_request(srv.http_addr, "GET", "/hello?al=1")
    http_request(srv.http_addr, "GET", "/stream?n=3&size=10&al=2")
    http_request(srv.http_addr, "GET", "/raise_before?al=3")
    want = {"/hello?al=1": ("200", "12"), "/stream?n=3&size=10&al=2": ("200", "30"),
            "/raise_before?al=3": ("500", None)}
    for uri, (status, nbytes) in want.items():
        line = srv.wait_for(lambda l, u=uri: (mm := ACCESS_RE.search(l)) is not None and mm.group("uri") == u,
                            5, start=m)
        mm = ACCESS_RE.search(line)
        assert (mm.group("method"), mm.group("proto"), mm.group("status")) == ("GET", "HTTP/1.1", status), line
        if nbytes is not None:
            assert mm.group("bytes") == nbytes, f"bytes are body bytes: {line}"


def stats_of(addr) -> dict:
    with connect(addr) as sock:
        data = bytearray()
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    return json.loads(bytes(data))


def test_stats_count_asgi_requests(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", *RAW, "--master", "--processes", "1",
                       "--stats", "127.0.0.1:0")
    stats = parse_addr(STATS_RE.search(s.wait_for(STATS_RE)).group(1))
    wait_until(lambda: (d := stats_of(stats))["workers"] and d["workers"][0].get("accepting"), 5,
               what="the worker accepting")
    for i in range(7):
        assert http_request(s.http_addr, "GET", f"/hello?n={i}").status == 200
    doc = wait_until(lambda: (d := stats_of(stats))["workers"][0]["requests"] >= 7 and d, 5,
                     what="7 requests in the stats")
    w = doc["workers"][0]
    assert w["requests"] == 7, w
    assert isinstance(w.get("avg_rt"), (int, float)) and w["avg_rt"] >= 0, w


def test_max_requests_recycles_an_asgi_worker(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", *RAW, "--master", "--processes", "1",
                       "--max-requests", "3", "--min-worker-lifetime", "0")
    pids = []
    for i in range(10):
        r = http_request(s.http_addr, "GET", "/pid", timeout=15)
        assert r.status == 200, r
        pids.append(int(r.body))
    per_pid = {p: pids.count(p) for p in pids}
    assert all(n <= 3 for n in per_pid.values()) and len(per_pid) >= 4, per_pid
    s.wait_for(r"max-requests reached after 3 requests", 5)
    startups = [l for l in s.lines if "asgi_raw: lifespan startup" in l]
    assert len(startups) >= len(per_pid), "lifespan runs once per worker, each new worker too"


def test_lifespan_state_is_a_copy_per_request(srv):
    a = http_request(srv.http_addr, "GET", "/state").json()
    b = http_request(srv.http_addr, "GET", "/state").json()
    assert a["state"]["db"] == "connected" and a["state"]["startups"] == 1
    assert a["state"]["pid"] == srv.pid
    assert b["leaked"] is None, "a key one request set leaked into the next request's state"
    assert b["shared_list_len"] == a["shared_list_len"] + 1, "a shallow copy: the values are shared"


def test_lifespan_shutdown_runs_at_stop(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", *RAW)
    s.wait_for("asgi_raw: lifespan startup", 5)
    assert http_request(s.http_addr, "GET", "/hello").status == 200
    assert s.stop() == 0
    assert s.find("asgi_raw: lifespan shutdown") is not None, s.output()


def test_lifespan_unsupported_app_still_serves(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--pythonpath", "tests/apps", "--module",
                       "asgi_raw:no_lifespan")
    assert s.find(re.compile(r"(?i)lifespan.*unsupported")), s.output()
    r = http_request(s.http_addr, "GET", "/scope")
    assert r.status == 200 and "state" not in json.loads(r.body)["__keys"] or \
        json.loads(r.body)["__state"] in (None, {}), r


def test_lifespan_startup_failed_stops_the_worker(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--pythonpath", "tests/apps", "--module",
                       "asgi_raw:failing_startup", expect_rc=None, ready=False)
    rc = s.wait_exit(15)
    assert rc == 4, f"exit {rc}:\n{s.output()}"
    assert "startup failed on purpose zzq" in s.output()


def test_class_instance_and_forced_asgi(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", "--pythonpath", "tests/apps", "--module",
                       "asgi_raw:class_app")
    assert http_request(s.http_addr, "GET", "/one").body == b"hello asgi!"
    s2 = server_factory("--http-socket", "127.0.0.1:0", "--pythonpath", "tests/apps", "--module",
                        "asgi_raw:application", "--asgi", "true")
    assert http_request(s2.http_addr, "GET", "/one").body == b"hello asgi!"
    s3 = server_factory("--http-socket", "127.0.0.1:0", "--pythonpath", "tests/apps", "--module",
                        "asgi_raw:sync_app")
    assert http_request(s3.http_addr, "GET", "/").body == b"wsgi here", "a plain function stays WSGI"


def test_each_request_runs_in_its_own_task(srv):
    """asyncio.current_task() is the request's Task while the app runs (before and after it
    suspends), its stack and repr name the app's coroutine, and each request has its own context."""
    for token in ("one", "two"):
        r = http_request(srv.http_addr, "GET", f"/task?token={token}")
        assert r.status == 200, r
        doc = json.loads(r.body)
        assert doc == {"is_task": True, "same_after_await": True, "same_after_sleep": True,
                       "seen_var": None, "stack_names_app": True, "repr_names_app": True,
                       "all_tasks_has_it": True, "done": False}, doc


def test_sync_callable_returning_an_awaitable(server_factory):
    """asgi = true with a sync callable that returns an awaitable (not a coroutine): awaited like
    `await app(...)`; what the callable did before returning stays in that request's context."""
    s = server_factory("--http-socket", "127.0.0.1:0", "--pythonpath", "tests/apps", "--module",
                       "asgi_raw:sync_returning_awaitable", "--asgi", "true")
    assert http_request(s.http_addr, "GET", "/one").body == b"hello asgi!"
    doc = json.loads(http_request(s.http_addr, "GET", "/task?token=x").body)
    assert doc["is_task"] and doc["same_after_sleep"], doc
    assert doc["seen_var"] == "set-by-the-sync-part", doc


def test_harakiri_bounds_an_asgi_request_that_never_answers(server_factory):
    """A task that never responds is bounded by harakiri: scoreboard slot 0 carries the oldest
    request in flight, so the master kills the worker for it (and names it), although the
    worker's loop went on serving other requests meanwhile; a new worker serves."""
    s = server_factory("--http-socket", "127.0.0.1:0", *RAW, "--master", "--processes", "1",
                       "--harakiri", "2")
    old = int(http_request(s.http_addr, "GET", "/pid").body)
    stuck = {}

    def hang():
        try:
            stuck["r"] = http_request(s.http_addr, "GET", "/sleep?s=60&token=hk", timeout=20)
        except Exception as exc:  # the worker dies under it: no response
            stuck["exc"] = exc

    t = threading.Thread(target=hang, daemon=True)
    t.start()
    s.wait_for("sleep-start hk", 5)
    # the stuck task does not hold the loop: other requests are answered meanwhile
    for i in range(5):
        assert http_request(s.http_addr, "GET", f"/hello?n={i}").status == 200
    m = s.wait_for(re.compile(r"harakiri: worker 1 \(pid (\d+)\) killed after ([\d.]+)s on GET "
                              r"(/sleep\S*)"), 8)
    mm = re.search(r"harakiri: worker 1 \(pid (\d+)\) killed after ([\d.]+)s on GET (/sleep\S*)", m)
    assert int(mm.group(1)) == old and mm.group(3).startswith("/sleep?s=60"), m
    assert 2.0 <= float(mm.group(2)) < 4.5, m
    t.join(20)
    assert "r" not in stuck or stuck["r"].status != 200, stuck

    def new_pid():
        try:
            p = int(http_request(s.http_addr, "GET", "/pid", timeout=5).body)
        except (OSError, IncompleteResponse):  # the listener's backlog while respawning
            return None
        return p if p != old else None

    assert wait_until(new_pid, 10, what="a replacement worker serving")


def test_read_ahead_is_bounded_while_the_app_waits_for_the_disconnect(srv):
    """Starlette's listen_for_disconnect pattern: the body is in, receive() waits for
    http.disconnect; bytes the client pipelines meanwhile are read ahead only up to a bound
    (the loop stops reading), not into memory without end."""
    s = socket.create_connection(srv.http_addr, timeout=10)
    try:
        s.sendall(build_request("GET", "/wait_disconnect?token=ra"))
        srv.wait_for("asgi_raw: waiting ra", 5)
        s.setblocking(False)
        junk = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
        sent, deadline = 0, time.monotonic() + 3
        while time.monotonic() < deadline and sent < 200 * 1024 * 1024:
            try:
                sent += s.send(junk)
            except BlockingIOError:
                time.sleep(0.01)
        assert sent < 64 * 1024 * 1024, f"{sent} bytes were read ahead"
        assert http_request(srv.http_addr, "GET", "/hello").status == 200, "others are served"
    finally:
        # a reset (a FIN would wait behind the bytes nobody reads): the server, no longer
        # reading, still sees the hang-up and the app its http.disconnect
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    srv.wait_for("asgi_raw: disconnect ra", 10)


def test_a_400_for_a_bad_chunked_body_is_read_whole_not_reset(srv):
    """RFC 9112 §9.6: after an error response with request bytes unread, the server shuts its
    write side and drains, so the client reads the 400 and an EOF, never a reset."""
    with Conn(srv.http_addr) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"zz\r\n" + b"x" * 300000)
        r = c.read_response()
        assert r.status == 400, r
