"""Strict HTTP/1.1 request parsing, end to end: a real uwsgipy --http-socket process, raw sockets.

Issue 7, item 7: request line and field line limits (414 / 431, found before the line ends),
repeated singleton fields, trailer fields RFC 9110 §6.5.1 rules out, empty list elements in
Transfer-Encoding, whitespace in chunk size lines, CONNECT's authority-form.  Every refusal is
a 4xx with the connection closed, and the worker serves the next client.  The C table tests
(tests/c/test_parsers.c) hold the byte-level cases; these check what a client sees.
"""
from __future__ import annotations

import time

import pytest

from helpers import APPS, Conn, build_request, chunked, http_request

ROUTES = str(APPS / "routes_app.py")
LIMIT = 8190  # limit-request-line and limit-request-field-size defaults (gunicorn's)


@pytest.fixture(scope="module")
def srv(module_server_factory):
    return module_server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES)


@pytest.fixture(scope="module")
def small_srv(module_server_factory):
    """Small limits, to see each option act."""
    return module_server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES,
                                 "--limit-request-line", "100", "--limit-request-field-size", "50",
                                 "--limit-request-fields", "10")


def env_of(resp) -> dict:
    assert resp.status == 200, resp
    return {k: v["value"] for k, v in resp.json().items() if not k.startswith("__")}


def assert_serving(addr) -> None:
    r = http_request(addr, "GET", "/hello")
    assert r.status == 200 and r.body == b"Hello, world!", r


def refused(addr, raw: bytes, status: int, reason: str = "", timeout: float = 10.0):
    """Send raw, expect `status` (and its reason phrase), the connection closed after it, and
    the server still serving."""
    with Conn(addr, timeout) as c:
        c.send(raw, ignore_errors=True)
        r = c.read_response()
        assert r.status == status, r
        if reason:
            assert r.reason == reason, r
        assert c.wait_closed(5), "the connection must be closed after an error response"
    assert_serving(addr)
    return r


def post_chunked(wire: bytes, target: str = "/env") -> bytes:
    return build_request("POST", target, [("Transfer-Encoding", "chunked"), ("Connection", "close")]) + wire


# ------------------------------------------------------------------------------------------
# limits: limit-request-line (414), limit-request-field-size and limit-request-fields (431)
# ------------------------------------------------------------------------------------------

def test_request_line_over_limit_is_414(srv):
    """RFC 9112 §3: a server that receives a request-target longer than it wishes to parse
    MUST respond with 414 (URI Too Long, RFC 9110 §15.5.15).  The request line without its CRLF
    may be limit-request-line (8190) bytes; one more is 414, well inside buffer-size."""
    fixed = len("GET / HTTP/1.1") - 1
    ok = http_request(srv.http_addr, "GET", "/" + "a" * (LIMIT - fixed - 1))
    assert ok.status == 200, ok  # exactly at the limit: an ordinary request (environ dump)
    mark = srv.mark()
    r = refused(srv.http_addr, build_request("GET", "/" + "a" * (LIMIT - fixed)), 414, "URI Too Long")
    assert b"request line too long" in r.body
    srv.wait_for(lambda l: "414 URI Too Long" in l and "limit-request-line" in l, start=mark)


def test_request_line_streamed_without_crlf_is_414_at_once(srv):
    """RFC 9112 §3 / RFC 9110 §15.5.15: the 414 is sent as soon as limit-request-line + 1 bytes
    of the request line are in, without waiting for its CRLF: a client streaming a huge line
    cannot hold the connection until buffer-size or a timeout."""
    with Conn(srv.http_addr, timeout=5) as c:
        t0 = time.monotonic()
        c.send(b"GET /" + b"a" * (LIMIT + 100))  # no CRLF, ever
        r = c.read_response()
        assert r.status == 414 and r.reason == "URI Too Long", r
        assert time.monotonic() - t0 < 3
        assert c.wait_closed(5)
    assert_serving(srv.http_addr)


def test_field_line_over_limit_is_431(srv):
    """RFC 6585 §5: 431 when a single header field is too large.  A field line (name, ':',
    value, without CRLF; RFC 9112 §5) may be limit-request-field-size (8190) bytes."""
    name = "X-Long"
    ok = http_request(srv.http_addr, "GET", "/env", [(name, "v" * (LIMIT - len(name) - 2))])
    assert env_of(ok)["HTTP_X_LONG"] == "v" * (LIMIT - len(name) - 2)
    r = refused(srv.http_addr, build_request("GET", "/env", [(name, "v" * (LIMIT - len(name) - 1))]),
                431, "Request Header Fields Too Large")
    assert b"header field line too long" in r.body


def test_field_line_streamed_without_crlf_is_431_at_once(srv):
    """RFC 6585 §5 / RFC 9112 §5: an over-long field line is refused once limit + 1 bytes of it
    are in, before its CRLF (and long before buffer-size, 65535)."""
    with Conn(srv.http_addr, timeout=5) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"v" * (LIMIT + 10))
        r = c.read_response()
        assert r.status == 431, r
        assert c.wait_closed(5)
    assert_serving(srv.http_addr)


def test_zero_limits_leave_buffer_size_as_the_bound(server_factory):
    """limit-request-line 0 and limit-request-field-size 0 turn the line limits off (as in
    gunicorn); buffer-size still bounds the whole head (RFC 6585 §5: 431)."""
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ROUTES,
                       "--limit-request-line", "0", "--limit-request-field-size", "0")
    target = "/env?" + "q" * 50000
    env = env_of(http_request(s.http_addr, "GET", target, [("X-Big", "v" * 10000)]))
    assert env["REQUEST_URI"] == target and env["HTTP_X_BIG"] == "v" * 10000
    refused(s.http_addr, build_request("GET", "/" + "a" * 70000), 431)


def test_limit_options(small_srv):
    """limit-request-line 100, limit-request-field-size 50, limit-request-fields 10: each
    bound holds exactly (RFC 9112 §3 -> 414, RFC 6585 §5 -> 431)."""
    addr = small_srv.http_addr
    fixed = len("GET / HTTP/1.1") - 1
    assert http_request(addr, "GET", "/" + "a" * (100 - fixed - 1)).status == 200
    refused(addr, build_request("GET", "/" + "a" * (100 - fixed)), 414)
    assert http_request(addr, "GET", "/env", [("X-F", "v" * 45)]).status == 200  # 50 bytes
    refused(addr, build_request("GET", "/env", [("X-F", "v" * 46)]), 431)
    # Host + Connection (added by http_request) + 8 = 10 fields
    assert http_request(addr, "GET", "/env", [(f"X-{i}", "v") for i in range(8)]).status == 200
    refused(addr, build_request("GET", "/env", [(f"X-{i}", "v") for i in range(10)]), 431)


# ------------------------------------------------------------------------------------------
# singleton fields repeated
# ------------------------------------------------------------------------------------------

SINGLETONS = [  # (field, RFC 9110 section defining it without a list)
    ("Content-Type", "8.3"), ("Authorization", "11.6.2"), ("Proxy-Authorization", "11.7.2"),
    ("Content-Location", "8.7"), ("Content-Range", "14.4"), ("Date", "6.6.1"), ("From", "10.1.2"),
    ("If-Modified-Since", "13.1.3"), ("If-Unmodified-Since", "13.1.4"), ("If-Range", "13.1.5"),
    ("Max-Forwards", "7.6.2"), ("Range", "14.2"), ("Referer", "10.1.3"), ("User-Agent", "10.1.5"),
]


@pytest.mark.parametrize("name", [n for n, _ in SINGLETONS])
def test_repeated_singleton_field_is_400(srv, name):
    """RFC 9110 §5.3: a sender MUST NOT generate multiple field lines with the same name unless
    the field's definition allows a comma-separated list; the fields here are defined as single
    values (their sections in SINGLETONS).  Joined with ", " they would reach the app as a value
    that means something else, so the request is refused with 400, even in another case."""
    once = http_request(srv.http_addr, "GET", "/env", [(name, "a")])
    key = "CONTENT_TYPE" if name == "Content-Type" else "HTTP_" + name.upper().replace("-", "_")
    assert env_of(once)[key] == "a"
    r = refused(srv.http_addr, build_request("GET", "/env", [(name, "a"), ("X-Other", "b"),
                                                              (name.upper(), "a")]), 400)
    assert name.encode() in r.body  # the reason names the field


def test_list_fields_may_repeat(srv):
    """RFC 9110 §5.3: list-based fields may be split over several lines; the app sees them
    joined with ", " (Accept, §12.5.1) - the singleton rule does not touch them."""
    r = http_request(srv.http_addr, "GET", "/env", [("Accept", "a/b"), ("Accept", "c/d")])
    assert env_of(r)["HTTP_ACCEPT"] == "a/b, c/d"


def test_identical_content_length_repeat_is_one_value(srv):
    """RFC 9110 §8.6 / RFC 9112 §6.3: Content-Length repeated with the same value may be
    processed as that one value (kept, as h11 does); a different value is 400."""
    r = http_request(srv.http_addr, "POST", "/echo", [("Content-Length", "5"), ("Content-Length", "5")],
                     b"hello", content_length=False)
    assert r.status == 200 and r.body == b"hello"
    refused(srv.http_addr, build_request("POST", "/echo", [("Content-Length", "5"), ("Content-Length", "6")],
                                         b"hello!", content_length=False), 400)


# ------------------------------------------------------------------------------------------
# trailer fields
# ------------------------------------------------------------------------------------------

FORBIDDEN_TRAILERS = [  # RFC 9110 §6.5.1 categories
    "Content-Length", "Transfer-Encoding", "Trailer",                    # framing
    "Host", "Connection", "Max-Forwards", "Upgrade",                      # routing
    "Expect", "TE", "If-Match", "If-None-Match", "If-Modified-Since",     # request modifiers
    "If-Unmodified-Since", "If-Range", "Range", "Cache-Control", "Pragma",
    "Authorization", "Proxy-Authorization", "Cookie",                     # authentication
    "Content-Type", "Content-Encoding", "Content-Range",                  # content format
]


@pytest.mark.parametrize("name", FORBIDDEN_TRAILERS)
def test_forbidden_trailer_field_is_400(srv, name):
    """RFC 9110 §6.5.1: fields needed before the content - framing, routing, request modifiers,
    authentication, content format - cannot be processed as trailers, and a sender MUST NOT
    send them there; a hop that merged one into the header section would see another request
    than we do.  Such a trailer (RFC 9112 §7.1.2) is refused with 400."""
    r = refused(srv.http_addr, post_chunked(chunked(b"hello", 2, trailers=[("X-Fine", "1"), (name, "5")])),
                400)
    assert b"trailer" in r.body


def test_allowed_trailers_never_reach_the_environ(srv):
    """RFC 9110 §6.5.2 / RFC 9112 §7.1.2: a recipient MUST NOT merge a trailer field into the
    header section unless its definition says how; allowed trailers (Expires, a checksum) are
    discarded: the app sees the header section only, and the whole body."""
    r = http_request(srv.http_addr, "POST", "/env",
                     [("Transfer-Encoding", "chunked"), ("X-Head", "h")],
                     chunked(b"0123456789" * 100, 300, trailers=[("X-Checksum", "abc"), ("Expires", "0"),
                                                                 ("X-Head", "from-trailer")]))
    env = env_of(r)
    assert env["HTTP_X_HEAD"] == "h"
    assert "HTTP_X_CHECKSUM" not in env and "HTTP_EXPIRES" not in env
    assert not any("from-trailer" in v or v == "abc" for v in env.values() if isinstance(v, str))
    assert r.json()["__body__"]["len"] == 1000


# ------------------------------------------------------------------------------------------
# Transfer-Encoding lists, chunk size lines
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [",chunked", "chunked,", ", chunked", " , chunked , ,"])
def test_te_empty_list_elements_are_ignored(srv, value):
    """RFC 9110 §5.6.1: a recipient MUST accept and ignore empty list elements, so
    "Transfer-Encoding: ,chunked" is the list (chunked) and frames the body (RFC 9112 §6.1)."""
    r = http_request(srv.http_addr, "POST", "/echo", [("Transfer-Encoding", value)], chunked(b"hello world", 4))
    assert r.status == 200 and r.body == b"hello world", r


def test_te_of_empty_elements_only_is_501(srv):
    """RFC 9112 §6.1: a Transfer-Encoding that does not end in chunked is not one we
    understand: 501, as for gzip; a list of empty elements names no coding at all."""
    refused(srv.http_addr, build_request("POST", "/echo", [("Transfer-Encoding", " , ,")]) + b"0\r\n\r\n", 501)


@pytest.mark.parametrize("size_line", [b"5 ", b"5\t", b"5;ext=1 ", b'5;ext="v"\t'])
def test_whitespace_before_chunk_size_crlf_is_400(srv, size_line):
    """RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF, and §7.1.1 allows
    BWS only before ';' and around '=': whitespace right before the CRLF is malformed (a peer
    reading "5 " as 5 and one refusing it would frame the body differently)."""
    refused(srv.http_addr, post_chunked(size_line + b"\r\nhello\r\n0\r\n\r\n", "/echo"), 400)


def test_bws_before_chunk_ext_is_fine(srv):
    """RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )."""
    with Conn(srv.http_addr) as c:
        c.send(post_chunked(b"5 ;a = b\r\nhello\r\n0\t; c\r\n\r\n", "/echo"))
        r = c.read_response()
    assert r.status == 200 and r.body == b"hello", r


# ------------------------------------------------------------------------------------------
# CONNECT and authority-form
# ------------------------------------------------------------------------------------------

def test_connect_authority_form_reaches_the_app(srv):
    """RFC 9112 §3.2.3: CONNECT's request-target is authority-form, uri-host ":" port.  The app
    gets REQUEST_METHOD CONNECT and REQUEST_URI the authority (as gunicorn's RAW_URI), with
    PATH_INFO and QUERY_STRING empty (the form has no path; PEP 3333 allows an empty
    PATH_INFO).  RFC 9110 §9.3.6: after a 2xx the connection would be a tunnel, which a WSGI
    server does not serve, so it is closed after the response."""
    with Conn(srv.http_addr) as c:
        c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        r = c.read_response()
        env = env_of(r)
        assert c.wait_closed(5), "no keep-alive after CONNECT"
    assert env["REQUEST_METHOD"] == "CONNECT"
    assert env["REQUEST_URI"] == "example.com:443"
    assert env["PATH_INFO"] == "" and env["QUERY_STRING"] == ""
    assert env["HTTP_HOST"] == "example.com:443"
    assert_serving(srv.http_addr)


@pytest.mark.parametrize("line", [b"CONNECT example.com HTTP/1.1", b"CONNECT example.com:0 HTTP/1.1",
                                  b"CONNECT example.com:99999 HTTP/1.1", b"CONNECT / HTTP/1.1",
                                  b"CONNECT user@example.com:443 HTTP/1.1"])
def test_connect_needs_a_valid_authority(srv, line):
    """RFC 9112 §3.2.3: a client sending CONNECT MUST send the authority-form; RFC 9110 §9.3.6:
    a recipient MUST reject a CONNECT with an empty or invalid port (400)."""
    refused(srv.http_addr, line + b"\r\nHost: example.com\r\n\r\n", 400)


@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS"])
def test_authority_form_with_another_method_is_400(srv, method):
    """RFC 9112 §3.2.3: the authority-form is only used for CONNECT requests."""
    r = refused(srv.http_addr, f"{method} example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n".encode(), 400)
    assert b"CONNECT" in r.body
