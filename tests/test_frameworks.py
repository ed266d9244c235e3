"""Flask and Django served by uwsgipy: directly over --http-socket, and behind real nginx
(uwsgi_pass over TCP and a unix socket, proxy_pass to --http-socket)."""
from __future__ import annotations

import http.client
import json
import os

import pytest

from helpers import APPS, IO_TIMEOUT, RUNNERS, NginxPool, ServerPool, multipart, pattern_sha256, sha256

# not importorskip: a CI without the test dependencies must fail, not pass quietly
import django  # noqa: E402,F401  (pip install django)
import flask  # noqa: E402,F401  (pip install flask)

# every site runs under threads = 1, threads = 4 and gevent = 8 (conftest.py)
pytestmark = pytest.mark.all_runners

DJANGO_DIR = APPS / "djangoproj"
APP_ARGS = {
    "flask": ["--pythonpath", "tests/apps", "--module", "flaskapp:app"],
    "django": ["--chdir", str(DJANGO_DIR), "--pythonpath", str(DJANGO_DIR), "--module", "djproj.wsgi:application"],
}
URLS = {
    "flask": dict(index="/", form="/form", upload="/upload", redirect="/redirect", target="/target",
                  setcookie="/setcookie", getcookie="/getcookie", download="/download", json="/json",
                  file="/sendfile", index_body=b"flask ok"),
    "django": dict(index="/", form="/form-exempt/", upload="/upload/", redirect="/redirect/", target="/target/",
                   setcookie="/setcookie/", getcookie="/getcookie/", download="/download/", json="/json/",
                   file="/fileresponse/", index_body=b"django ok"),
}
# transport -> (nginx conf or None, listener args)
TRANSPORTS = {
    "direct": (None, ["--http-socket", "127.0.0.1:0"]),
    "nginx-uwsgi-tcp": ("uwsgi-tcp.conf", ["--socket", "127.0.0.1:0"]),
    "nginx-uwsgi-unix": ("uwsgi-unix.conf", ["--socket", "{unix}"]),
    "nginx-http-proxy": ("http-proxy.conf", ["--http-socket", "127.0.0.1:0"]),
}


class Site:
    def __init__(self, app, transport, srv, addr):
        self.app = app
        self.transport = transport
        self.srv = srv
        self.addr = addr
        self.urls = URLS[app]

    def conn(self, timeout=IO_TIMEOUT):
        return http.client.HTTPConnection(*self.addr, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=IO_TIMEOUT):
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r, r.read()
        finally:
            c.close()


ALL_SITES = pytest.mark.parametrize("site", [(a, t) for a in APP_ARGS for t in TRANSPORTS], indirect=True,
                                    ids=[f"{a}-{t}" for a in APP_ARGS for t in TRANSPORTS])
DJANGO_SITES = pytest.mark.parametrize("site", [("django", t) for t in TRANSPORTS], indirect=True,
                                       ids=[f"django-{t}" for t in TRANSPORTS])


@pytest.fixture(scope="module")
def site(request, unix_dir, tmp_path_factory, runner):
    """One (app, transport) stack; its own pools so that pytest can tear it down and build the
    next one (indirect parametrization may revisit a param after another)."""
    app, transport = request.param
    conf, listen = TRANSPORTS[transport]
    listen = [a.format(unix=os.path.join(unix_dir, f"fw-{app}-{transport}.sock")) for a in listen]
    servers = ServerPool(RUNNERS[runner])
    nginxes = None
    try:
        srv = servers(*listen, *APP_ARGS[app])
        if conf is None:
            yield Site(app, transport, srv, srv.http_addr)
        else:
            nginxes = NginxPool(request.getfixturevalue("nginx_bin"), tmp_path_factory.mktemp("fwnginx"))
            upstream = srv.http_addr if listen[0] == "--http-socket" else srv.uwsgi_addr
            ngx = nginxes(conf, upstream)
            yield Site(app, transport, srv, ngx.addr)
    finally:
        problems = (nginxes.finish() if nginxes else []) + servers.finish()
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def file5(tmp_path_factory):
    p = tmp_path_factory.mktemp("fwfiles") / "f5.bin"
    data = os.urandom(5 * 1024 * 1024 + 3)
    p.write_bytes(data)
    return p, sha256(data)


@ALL_SITES
def test_index(site):
    r, body = site.request("GET", site.urls["index"])
    assert r.status == 200 and body == site.urls["index_body"]


@ALL_SITES
def test_form_post(site):
    r, body = site.request("POST", site.urls["form"], body="a=1&a=2&b=x+y&c=%C3%A9",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200, body[:2000]
    assert json.loads(body) == {"a": ["1", "2"], "b": ["x y"], "c": ["\u00e9"]}


@ALL_SITES
def test_multipart_upload(site):
    data = os.urandom(5 * 1024 * 1024)
    body, ctype = multipart([("note", "hello upload")], [("file", "blob.bin", data, "application/octet-stream")])
    r, got = site.request("POST", site.urls["upload"], body=body, headers={"Content-Type": ctype}, timeout=30)
    assert r.status == 200, got[:2000]
    assert json.loads(got) == {"filename": "blob.bin", "size": len(data), "sha256": sha256(data),
                               "note": "hello upload"}


@ALL_SITES
def test_redirect(site):
    c = site.conn()
    try:
        c.request("GET", site.urls["redirect"])
        r = c.getresponse()
        r.read()
        assert r.status == 302
        loc = r.getheader("Location")
        assert loc and loc.endswith(site.urls["target"]), loc
        c.request("GET", site.urls["target"])  # follow it on the same connection
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"target reached"
    finally:
        c.close()


@ALL_SITES
def test_cookies(site):
    r, body = site.request("GET", site.urls["setcookie"])
    assert r.status == 200
    cookies = r.headers.get_all("Set-Cookie")
    assert len(cookies) == 2, cookies
    pairs = sorted(c.split(";", 1)[0] for c in cookies)
    assert pairs == ["flavour=chocolate", "second=two"]
    r, body = site.request("GET", site.urls["getcookie"], headers={"Cookie": "; ".join(pairs)})
    assert r.status == 200 and json.loads(body) == {"flavour": "chocolate", "second": "two"}


@ALL_SITES
def test_streamed_download_10mb(site):
    r, body = site.request("GET", site.urls["download"], timeout=30)
    assert r.status == 200
    assert len(body) == 160 * 65536 and sha256(body) == pattern_sha256(160)


@ALL_SITES
def test_file_response_uses_file_wrapper(site, file5):
    path, digest = file5
    r, body = site.request("GET", f"{site.urls['file']}?path={path}", timeout=30)
    assert r.status == 200 and sha256(body) == digest
    assert r.getheader("Content-Length") == str(5 * 1024 * 1024 + 3)


@ALL_SITES
def test_json(site):
    doc = {"items": [1, 2, 3], "name": "caf\u00e9", "nested": {"k": None}}
    r, body = site.request("POST", site.urls["json"], body=json.dumps(doc).encode(),
                           headers={"Content-Type": "application/json"})
    assert r.status == 200, body[:2000]
    assert json.loads(body) == {"received": doc, "count": 3}


@ALL_SITES
def test_keepalive_many(site):
    c = site.conn()
    try:
        for i in range(20):
            c.request("GET", site.urls["index"])
            r = c.getresponse()
            assert r.status == 200 and r.read() == site.urls["index_body"]
    finally:
        c.close()


@DJANGO_SITES
def test_django_csrf_flow(site):
    r, body = site.request("GET", "/csrf/")
    assert r.status == 200
    token = json.loads(body)["token"]
    cookie = next(c for c in r.headers.get_all("Set-Cookie") if c.startswith("csrftoken="))
    cookie_token = cookie.split(";", 1)[0].split("=", 1)[1]
    # without the token: rejected
    r, body = site.request("POST", "/form/", body="a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 403
    # with the cookie and the header: accepted
    r, body = site.request("POST", "/form/", body="a=1", headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={cookie_token}", "X-CSRFToken": token})
    assert r.status == 200, body[:2000]
    assert json.loads(body) == {"a": ["1"]}
    # with the token as a form field
    r, body = site.request("POST", "/form/", body=f"a=2&csrfmiddlewaretoken={token}", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={cookie_token}"})
    assert r.status == 200 and json.loads(body)["a"] == ["2"]


@ALL_SITES
def test_not_found(site):
    r, body = site.request("GET", "/definitely/not/here")
    assert r.status == 404
