"""Real nginx in front of uwsgipy, using the shipped nginx-conf/*.conf server blocks:
uwsgi_pass over TCP, uwsgi_pass over a unix socket, and proxy_pass to --http-socket."""
from __future__ import annotations

import http.client
import json
import os
import threading

import pytest

from helpers import APPS, IO_TIMEOUT, Conn, build_request, chunked, pattern_sha256, sha256

ROUTES = str(APPS / "routes_app.py")

# every test runs under threads = 1, threads = 4 and gevent = 8 (conftest.py)
pytestmark = pytest.mark.all_runners

MODES = {
    "uwsgi-tcp": ("uwsgi-tcp.conf", ["--socket", "127.0.0.1:0"]),
    "uwsgi-unix": ("uwsgi-unix.conf", ["--socket", "{unix}"]),
    "http-proxy": ("http-proxy.conf", ["--http-socket", "127.0.0.1:0"]),
}


class Stack:
    def __init__(self, mode, srv, ngx):
        self.mode = mode
        self.srv = srv
        self.ngx = ngx

    @property
    def addr(self):
        return self.ngx.addr

    def conn(self, timeout=IO_TIMEOUT):
        return http.client.HTTPConnection(*self.ngx.addr, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=IO_TIMEOUT, **kw):
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {}, **kw)
            r = c.getresponse()
            return r.status, r, r.read()
        finally:
            c.close()


@pytest.fixture(scope="module", params=list(MODES))
def stack(request, module_server_factory, module_nginx_factory, unix_dir):
    conf, args = MODES[request.param]
    args = [a.format(unix=os.path.join(unix_dir, f"ngx-{request.param}.sock")) for a in args]
    srv = module_server_factory(*args, "--wsgi-file", ROUTES)
    upstream = srv.http_addr if request.param == "http-proxy" else srv.uwsgi_addr
    ngx = module_nginx_factory(conf, upstream)
    return Stack(request.param, srv, ngx)


@pytest.fixture(scope="module")
def file20(tmp_path_factory):
    p = tmp_path_factory.mktemp("nginxfiles") / "f20.bin"
    data = os.urandom(20 * 1024 * 1024)
    p.write_bytes(data)
    return p, sha256(data)


def _fail_with_logs(stack, msg):
    return f"{msg}\n{stack.ngx.logs()}"


def test_environ_through_nginx(stack):
    status, r, body = stack.request("GET", "/caf%C3%A9/p?x=1&y=%41", headers={"X-Custom": "custom-v",
                                                                           "Cookie": "a=1; b=2"})
    assert status == 200, _fail_with_logs(stack, body[:500])
    env = json.loads(body)
    v = lambda k: env[k]["value"]  # noqa: E731
    assert v("REQUEST_METHOD") == "GET"
    assert v("PATH_INFO") == "/caf\xc3\xa9/p"
    assert v("QUERY_STRING") == "x=1&y=%41"
    assert v("REQUEST_URI") == "/caf%C3%A9/p?x=1&y=%41"
    assert v("HTTP_X_CUSTOM") == "custom-v"
    assert v("HTTP_COOKIE") == "a=1; b=2"
    assert v("REMOTE_ADDR") == "127.0.0.1"
    assert v("SCRIPT_NAME") == ""
    assert v("wsgi.url_scheme") == "http"
    assert env["wsgi.version"]["value"] == "(1, 0)"
    assert v("HTTP_HOST").startswith("127.0.0.1")
    for k, d in env.items():
        if not k.startswith("__") and "." not in k:
            assert d["type"] == "str", (k, d)
    if stack.mode.startswith("uwsgi"):
        assert v("DOCUMENT_ROOT")  # a var only nginx's uwsgi_params sends
        assert v("SERVER_PORT") == str(stack.ngx.port)
    else:
        assert v("HTTP_X_FORWARDED_PROTO") == "http"


def test_post_body(stack):
    data = os.urandom(8 * 1024 * 1024)
    status, r, body = stack.request("POST", "/upload_sha", body=data, timeout=30)
    assert status == 200, _fail_with_logs(stack, body[:500])
    doc = json.loads(body)
    assert doc["len"] == len(data) and doc["sha256"] == sha256(data)


def test_chunked_upload_through_nginx(stack):
    data = os.urandom(3 * 1024 * 1024 + 17)
    status, r, body = stack.request("POST", "/upload_sha", body=iter([data[i:i + 65536] for i in
                                                                       range(0, len(data), 65536)]),
                                    encode_chunked=True, headers={"Transfer-Encoding": "chunked"}, timeout=30)
    assert status == 200, _fail_with_logs(stack, body[:500])
    doc = json.loads(body)
    assert doc["len"] == len(data) and doc["sha256"] == sha256(data)


def test_raw_chunked_with_trailers_through_nginx(stack):
    with Conn(stack.addr) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked"), ("Connection", "close")],
                             chunked(b"hello nginx world", 4, ext=";e=1", trailers=[("X-T", "1")])))
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello nginx world", r


def test_file_wrapper_download(stack, file20):
    path, digest = file20
    status, r, body = stack.request("GET", f"/file?path={path}", timeout=60)
    assert status == 200 and len(body) == 20 * 1024 * 1024
    assert sha256(body) == digest


def test_generator_download(stack):
    status, r, body = stack.request("GET", "/big?blocks=160", timeout=60)
    assert status == 200 and sha256(body) == pattern_sha256(160)


def test_write_and_list_bodies(stack):
    assert stack.request("GET", "/write")[2] == b"written-1;written-2;returned"
    assert stack.request("GET", "/gen?n=3")[2] == b"chunk0;chunk1;chunk2;"
    status, r, body = stack.request("GET", "/list_one")
    assert body == b"hello" and r.getheader("Content-Length") == "5"


def test_head_and_204(stack):
    status, r, body = stack.request("HEAD", "/hello")
    assert status == 200 and body == b"" and r.getheader("Content-Length") == "13"
    status, r, body = stack.request("GET", "/status?code=204")
    assert status == 204 and body == b""


def test_app_error_is_500(stack):
    m = stack.srv.mark()
    status, r, body = stack.request("GET", "/raise_before")
    assert status == 500
    stack.srv.wait_for("boom before start_response zzq", 5, start=m)
    assert stack.request("GET", "/hello")[2] == b"Hello, world!"


def test_client_keepalive_to_nginx(stack):
    c = stack.conn()
    try:
        for i in range(30):
            c.request("GET", f"/env?i={i}")
            r = c.getresponse()
            env = json.loads(r.read())
            assert r.status == 200 and env["QUERY_STRING"]["value"] == f"i={i}"
    finally:
        c.close()


def test_upstream_connections(stack):
    """uwsgi: one upstream connection per request (close-delimited responses).
    proxy_pass with `keepalive`: nginx reuses connections to the server."""
    ports = []
    c = stack.conn()
    try:
        for i in range(10):
            c.request("GET", "/env")
            r = c.getresponse()
            env = json.loads(r.read())
            if stack.mode == "http-proxy":
                ports.append(env["REMOTE_PORT"]["value"])
    finally:
        c.close()
    if stack.mode == "http-proxy":
        assert len(set(ports)) < len(ports), f"nginx never reused an upstream connection: {ports}"


def test_concurrent_clients(stack):
    errors = []

    def worker(n):
        try:
            c = stack.conn()
            for i in range(5):
                body = f"{n}-{i}".encode() * 100
                c.request("POST", "/echo", body=body)
                r = c.getresponse()
                got = r.read()
                if r.status != 200 or got != body:
                    errors.append((n, i, r.status, got[:50]))
            c.close()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append((n, repr(e)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def test_large_header_through_nginx(stack):
    status, r, body = stack.request("GET", "/env", headers={"X-Large": "L" * 4000})
    assert status == 200 and json.loads(body)["HTTP_X_LARGE"]["value"] == "L" * 4000


def test_slow_backend_request_does_not_break_others(stack):
    """A 1 s request in flight; nginx's next request waits for it (one process) but succeeds."""
    results = {}

    def slow():
        results["slow"] = stack.request("GET", "/sleep?s=1&token=ngx")[2]

    m = stack.srv.mark()
    t = threading.Thread(target=slow)
    t.start()
    stack.srv.wait_for("sleep-start ngx", 5, start=m)
    assert stack.request("GET", "/hello", timeout=10)[2] == b"Hello, world!"
    t.join(timeout=10)
    assert results.get("slow") == b"slept"
