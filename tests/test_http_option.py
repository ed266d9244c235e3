"""uWSGI's `http = ADDR`: HTTP served on ADDR by the workers themselves.

uWSGI starts a router process that proxies to the workers; uwsgipy's workers accept on ADDR
directly, with the router's options applied to those listeners: http-timeout (stall timeout),
http-keepalive (uWSGI's meaning: 0 off, 1 on, N seconds), http-enable-proxy-protocol.
"""
from __future__ import annotations

import json
import socket
import time

import pytest

from helpers import REPO, Conn, http_request

ENV_APP = str(REPO / "tests" / "apps" / "env_app.py")


def http_listener(srv):
    return srv._addr("http")


def write_ini(tmp_path, body: str):
    p = tmp_path / "app.ini"
    p.write_text("[uwsgi]\n" + body)
    return str(p)


def test_http_in_an_ini_with_master_and_a_socket(server_factory, tmp_path):
    ini = write_ini(tmp_path, f"master = true\nprocesses = 2\nhttp = 127.0.0.1:0\n"
                              f"socket = 127.0.0.1:0\nwsgi-file = {ENV_APP}\n")
    srv = server_factory(ini)
    srv.wait_for("listening on http 127.0.0.1:", 5)
    r = http_request(http_listener(srv), "GET", "/a?b=1")
    assert r.status == 200
    env = r.json()
    assert env["PATH_INFO"]["value"] == "/a" and env["QUERY_STRING"]["value"] == "b=1"
    assert env["REMOTE_ADDR"]["value"] == "127.0.0.1"
    assert env["wsgi.url_scheme"]["value"] == "http"
    # the uwsgi socket is served as well, by the same workers
    assert srv.uwsgi_addr


def test_http_keepalive_default_is_on(server_factory):
    srv = server_factory("--http", "127.0.0.1:0", "--wsgi-file", ENV_APP)
    with Conn(http_listener(srv), 5) as c:
        for _ in range(3):
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
            assert r.status == 200 and not r.has_header("Connection")


def test_http_keepalive_zero_closes(server_factory):
    srv = server_factory("--http", "127.0.0.1:0", "--wsgi-file", ENV_APP, "--http-keepalive", "0")
    with Conn(http_listener(srv), 5) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.header("Connection") == "close"
        assert c.wait_closed(5)


def test_bare_http_keepalive_means_on_with_http_timeout_idle(server_factory, tmp_path):
    """uWSGI's `http-keepalive` (bare, i.e. 1): on, idle up to http-timeout."""
    ini = write_ini(tmp_path, f"http = 127.0.0.1:0\nhttp-keepalive\nhttp-timeout = 3\n"
                              f"wsgi-file = {ENV_APP}\n")
    srv = server_factory(ini)
    with Conn(http_listener(srv), 10) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.wait_closed(10)
        idle = time.monotonic() - t0
    assert 2 <= idle <= 6, idle


def test_http_timeout_is_the_stall_timeout_of_http_listeners(server_factory):
    srv = server_factory("--http", "127.0.0.1:0", "--http-socket", "127.0.0.1:0",
                         "--wsgi-file", ENV_APP, "--http-timeout", "2", "--socket-timeout", "30")
    with Conn(http_listener(srv), 10) as c:
        c.send(b"GET / HTTP/1.1\r\nHo")
        t0 = time.monotonic()
        raw = c.read_to_eof()
        waited = time.monotonic() - t0
    assert raw.startswith(b"HTTP/1.1 408 "), raw[:80]
    assert 1.5 <= waited <= 5, waited
    # the http-socket listener keeps socket-timeout 30: still open after 3 s
    with Conn(srv.http_addr, 10) as c:
        c.send(b"GET / HTTP/1.1\r\nHo")
        c.sock.settimeout(3)
        with pytest.raises(socket.timeout):
            c.sock.recv(1)


def test_http_enable_proxy_protocol_applies_to_http_only(server_factory):
    srv = server_factory("--http", "127.0.0.1:0", "--http-socket", "127.0.0.1:0",
                         "--wsgi-file", ENV_APP, "--http-enable-proxy-protocol")
    hdr = b"PROXY TCP4 203.0.113.7 10.0.0.2 40001 80\r\n"
    req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with Conn(http_listener(srv), 5) as c:
        c.send(hdr + req)
        env = json.loads(c.read_to_eof().split(b"\r\n\r\n", 1)[1])
    assert (env["REMOTE_ADDR"]["value"], env["REMOTE_PORT"]["value"]) == ("203.0.113.7", "40001")
    with Conn(srv.http_addr, 5) as c:
        c.send(hdr + req)
        assert c.read_to_eof().startswith(b"HTTP/1.1 400 ")


def test_http_to_is_refused_in_one_line(server_factory, tmp_path):
    ini = write_ini(tmp_path, f"http = 127.0.0.1:0\nhttp-to = 127.0.0.1:3031\nwsgi-file = {ENV_APP}\n")
    srv = server_factory(ini, expect_rc=2, ready=False)
    assert srv.wait_exit(10) == 2
    assert "http-to" in srv.output() and "Traceback" not in srv.output()


def test_add_header_on_every_response(server_factory, tmp_path):
    """uWSGI's add-header: appended to what the app sends, on both protocols' responses."""
    ini = write_ini(tmp_path, f"http-socket = 127.0.0.1:0\nwsgi-file = {ENV_APP}\n"
                              "add-header = X-Frame-Options: DENY\n"
                              "add-header = Strict-Transport-Security: max-age=63072000\n")
    srv = server_factory(ini)
    r = http_request(srv.http_addr, "GET", "/")
    assert r.status == 200
    assert r.header("X-Frame-Options") == "DENY"
    assert r.header("Strict-Transport-Security") == "max-age=63072000"


@pytest.mark.parametrize("bad", ["X-Bad", "X Bad: 1", "X(Bad): 1"])
def test_add_header_must_be_a_header(server_factory, tmp_path, bad):
    ini = write_ini(tmp_path, f"http-socket = 127.0.0.1:0\nwsgi-file = {ENV_APP}\nadd-header = {bad}\n")
    srv = server_factory(ini, expect_rc=2, ready=False)
    assert srv.wait_exit(10) == 2
    assert "add-header" in srv.output() and "Traceback" not in srv.output()


def test_add_header_refuses_cr_lf_from_the_environment():
    """A value with CR or LF would split the response head (header injection)."""
    from uwsgipy.config import ConfigError, load
    for bad in ("X-A: a\rb", "X-A: a\nSet-Cookie: x=1"):
        with pytest.raises(ConfigError, match="add-header"):
            load(["--http-socket", ":0", "--wsgi-file", ENV_APP], {"UWSGI_ADD_HEADER": bad})
