"""Several apps in one server (issue 9): `mount = /prefix=app` and `manage-script-name`.

Two Flask apps and a Django app mounted under prefixes, plus plain WSGI apps: each must see
SCRIPT_NAME = its mount point and PATH_INFO = the rest (PEP 3333, CGI RFC 3875 §4.1.13), so
Flask's url_for and Django's reverse build prefixed URLs; the longest prefix wins; a prefix
matches at a segment boundary ("/ab" is not under "/a"); unmatched paths go to the default app.
A mounted app that fails to import stops the server with its traceback.  Behind nginx without
manage-script-name, the app is chosen by the SCRIPT_NAME nginx sends.

Every server test runs under threads = 1, threads = 4 and gevent = 8 (conftest.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from helpers import APPS, READY_RE, ServerProcess, uwsgi_request, uwsgi_vars

import django  # noqa: E402,F401  (a test extra: pip install django)
import flask  # noqa: E402,F401

from test_static import ConfNginx  # nginx with a server block written by the test

pytestmark = pytest.mark.all_runners

DJSITE = APPS / "djsite"
FLASK_A = APPS / "mount_flask_a.py"
ENV_APP = APPS / "env_app.py"
DEFAULT_APP = APPS / "static_app.py"  # answers anything with X-App: fallback


def mount_ini(tmp: Path, default: bool = True, manage_script_name: bool = True, extra: str = "") -> Path:
    ini = tmp / ("mount-%d-%d.ini" % (default, manage_script_name))
    ini.write_text(f"""[uwsgi]
http-socket = 127.0.0.1:0
socket = 127.0.0.1:0
pythonpath = {APPS}
pythonpath = {DJSITE}
{"manage-script-name = true" if manage_script_name else ""}
mount = /a={FLASK_A}
mount = /b=mount_flask_b:app
mount = /a/deep={ENV_APP}
mount = /dj=djsite.wsgi:application
{f"wsgi-file = {DEFAULT_APP}" if default else ""}
{extra}""")
    return ini


ASSET = b"/* an asset under a mounted app's prefix */\n"


@pytest.fixture(scope="module")
def msrv(module_server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mount")
    (tmp / "assets").mkdir()
    (tmp / "assets" / "app.css").write_bytes(ASSET)
    ini = mount_ini(tmp, extra=f"static-map = /a/assets={tmp / 'assets'}\n")
    return module_server_factory(str(ini), env={"DJSITE_STATIC_ROOT": "/nonexistent"})


def url(srv, path: str) -> str:
    return "http://%s:%d%s" % (*srv.http_addr, path)


def fetch(srv, path: str, **kw):
    return requests.get(url(srv, path), timeout=10, allow_redirects=False, **kw)


def test_flask_apps_see_their_prefix(msrv):
    host, port = msrv.http_addr
    for name in ("a", "b"):
        r = fetch(msrv, f"/{name}/where?x=1")
        assert r.status_code == 200 and r.headers["X-Flask-App"] == name, r.text[:300]
        doc = r.json()
        assert (doc["app"], doc["script_name"], doc["path_info"], doc["path"]) == (name, f"/{name}", "/where", "/where")
        assert doc["url_for"] == f"/{name}/where" and doc["url_for_index"] == f"/{name}/"
        assert doc["url_for_external"] == f"http://{host}:{port}/{name}/where"
        assert doc["query"] == "x=1" and doc["request_uri"] == f"/{name}/where?x=1"
        # a redirect built with url_for points under the prefix
        r = fetch(msrv, f"/{name}/go")
        assert r.status_code == 302 and r.headers["Location"] in (f"/{name}/where",
                                                                   f"http://{host}:{port}/{name}/where")
        r = fetch(msrv, f"/{name}/")
        assert r.status_code == 200 and r.json()["view"] == "index" and r.json()["path_info"] == "/"


def test_the_prefix_itself(msrv):
    """PEP 3333: SCRIPT_NAME "/a" and PATH_INFO "" for the mount point without its slash."""
    r = fetch(msrv, "/a/deep")
    env = r.json()
    assert (env["SCRIPT_NAME"]["value"], env["PATH_INFO"]["value"]) == ("/a/deep", "")
    r = fetch(msrv, "/a")
    assert r.headers.get("X-Flask-App") == "a", (r.status_code, r.headers)


def test_django_sees_its_prefix_and_reverse_is_prefixed(msrv):
    host, port = msrv.http_addr
    r = fetch(msrv, "/dj/where/")
    assert r.status_code == 200, r.text[:500]
    doc = r.json()
    assert doc["app"] == "django"
    assert (doc["script_name"], doc["path_info"], doc["path"]) == ("/dj", "/where/", "/dj/where/")
    assert doc["reverse"] == "/dj/where/" and doc["reverse_word"] == "/dj/where/w/"
    assert doc["absolute"] == f"http://{host}:{port}/dj/where/"
    r = fetch(msrv, "/dj/where/hello/")
    assert r.json()["word"] == "hello" and r.json()["path_info"] == "/where/hello/"
    # CommonMiddleware's APPEND_SLASH redirect keeps the prefix
    r = fetch(msrv, "/dj/where")
    assert r.status_code == 301 and r.headers["Location"].endswith("/dj/where/"), r.headers


def test_longest_prefix_wins_at_segment_boundaries(msrv):
    env = fetch(msrv, "/a/deep/x?q=1").json()  # /a/deep, not /a
    assert (env["SCRIPT_NAME"]["value"], env["PATH_INFO"]["value"]) == ("/a/deep", "/x")
    assert env["REQUEST_URI"]["value"] == "/a/deep/x?q=1" and env["QUERY_STRING"]["value"] == "q=1"
    # percent-decoded PATH_INFO, bytes as latin-1 (PEP 3333)
    env = fetch(msrv, "/a/deep/caf%C3%A9").json()
    assert env["PATH_INFO"]["value"] == "/caf\xc3\xa9" and env["SCRIPT_NAME"]["value"] == "/a/deep"
    # /a/deeper is under /a, not /a/deep
    r = fetch(msrv, "/a/deeper")
    assert r.headers.get("X-Flask-App") == "a" and r.status_code == 404
    # /ab is not under /a; /bb not under /b; /djx not under /dj
    for path in ("/ab", "/ab/where", "/bb/where", "/djx/where/"):
        r = fetch(msrv, path)
        assert r.headers.get("X-App") == "fallback", (path, r.status_code, r.headers)
        doc = r.json()
        assert (doc["script_name"], doc["path_info"]) == ("", path), path


def test_non_ascii_mount_point(server_factory, tmp_path):
    """A mount point with non-ASCII characters (UTF-8 in the ini) matches the percent-decoded
    path, and SCRIPT_NAME carries the same bytes as PATH_INFO would: UTF-8 decoded as latin-1
    (PEP 3333's native strings)."""
    ini = tmp_path / "u.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nmanage-script-name = true\nwsgi-file = {DEFAULT_APP}\n"
                   f"mount = /caf\u00e9={ENV_APP}\n", encoding="utf-8")
    srv = server_factory(str(ini))
    r = fetch(srv, "/caf%C3%A9/x")
    assert r.headers.get("X-App") is None, (r.status_code, r.text[:200])
    env = r.json()
    assert (env["SCRIPT_NAME"]["value"], env["PATH_INFO"]["value"]) == ("/caf\xc3\xa9", "/x")
    assert fetch(srv, "/cafe/x").headers.get("X-App") == "fallback"


def test_unmatched_paths_go_to_the_default_app(msrv):
    for path in ("/", "/other", "/static/x", "/A/where", "/B/where"):  # case-sensitive
        r = fetch(msrv, path)
        assert r.headers.get("X-App") == "fallback", (path, r.status_code)
        assert (r.json()["script_name"], r.json()["path_info"]) == ("", path)


def test_no_main_app_the_first_mount_is_the_default(server_factory, tmp_path):
    """uWSGI's rule (WIRING9.md, measured): without wsgi-file/module the first mount loaded is
    the default app; unmatched paths reach it unsplit."""
    ini = mount_ini(tmp_path, default=False)
    srv = server_factory(str(ini), env={"DJSITE_STATIC_ROOT": "/nonexistent"})
    r = fetch(srv, "/where")
    assert r.status_code == 200 and r.headers.get("X-Flask-App") == "a", (r.status_code, r.text[:200])
    doc = r.json()
    assert (doc["script_name"], doc["path_info"], doc["url_for"]) == ("", "/where", "/where")
    assert fetch(srv, "/a/where").json()["script_name"] == "/a"
    assert fetch(srv, "/b/where").json()["app"] == "b"
    assert fetch(srv, "/dj/where/").json()["reverse"] == "/dj/where/"


def test_no_default_app_unmatched_is_404(server_factory, tmp_path):
    """`no-default-app` and no main app: a path no mount takes is 404 (uWSGI: 500 "no python
    application found": a deliberate difference)."""
    ini = mount_ini(tmp_path, default=False, extra="no-default-app = true\n")
    srv = server_factory(str(ini), env={"DJSITE_STATIC_ROOT": "/nonexistent"})
    for path in ("/nowhere", "/", "/ab"):
        r = fetch(srv, path)
        assert r.status_code == 404, (path, r.status_code, r.headers, r.text[:200])
        assert r.headers.get("X-Flask-App") is None
    assert fetch(srv, "/a/where").json()["script_name"] == "/a"
    assert fetch(srv, "/dj/where/").json()["reverse"] == "/dj/where/"


def test_uwsgi_listener_with_manage_script_name(msrv):
    """The same split for requests arriving over the uwsgi protocol (PATH_INFO sent whole);
    manage-script-name replaces a SCRIPT_NAME nginx sent, as uWSGI (WIRING9.md's table)."""
    r = uwsgi_request(msrv.uwsgi_addr, uwsgi_vars("GET", "/b/where", query="k=v"))
    assert r.status == 200 and r.header("X-Flask-App") == "b"
    doc = json.loads(r.body)
    assert (doc["script_name"], doc["path_info"], doc["url_for"]) == ("/b", "/where", "/b/where")
    # nginx split it already: SN=/a PI=/where -> PI matches no mount, the exact SN chooses /a
    r = uwsgi_request(msrv.uwsgi_addr, uwsgi_vars("GET", "/where", extra={"SCRIPT_NAME": "/a"}))
    doc = json.loads(r.body)
    assert (r.header("X-Flask-App"), doc["script_name"], doc["path_info"]) == ("a", "/a", "/where")
    # nginx sent SN=/a with the whole path: manage-script-name splits the path again
    r = uwsgi_request(msrv.uwsgi_addr, uwsgi_vars("GET", "/a/where", extra={"SCRIPT_NAME": "/a"}))
    doc = json.loads(r.body)
    assert (r.header("X-Flask-App"), doc["script_name"], doc["path_info"]) == ("a", "/a", "/where")
    # longest prefix over uwsgi too
    r = uwsgi_request(msrv.uwsgi_addr, uwsgi_vars("GET", "/a/deep/z"))
    env = json.loads(r.body)
    assert (env["SCRIPT_NAME"]["value"], env["PATH_INFO"]["value"]) == ("/a/deep", "/z")


def test_static_map_under_a_mount_prefix(msrv):
    """A static-map inside a mounted app's prefix serves files before the app is chosen."""
    r = fetch(msrv, "/a/assets/app.css")
    assert r.status_code == 200 and r.content == ASSET and r.headers.get("X-Flask-App") is None
    assert r.headers["Content-Type"].startswith("text/css")
    r = fetch(msrv, "/a/assets/missing.css")  # falls through to the mounted app, split as usual
    assert r.headers.get("X-Flask-App") == "a" and r.status_code == 404


def test_mounts_with_master_and_lazy_apps(server_factory, tmp_path):
    """Two workers that each load every app themselves (lazy-apps)."""
    ini = mount_ini(tmp_path, extra="master = true\nprocesses = 2\nlazy-apps = true\n")
    srv = server_factory(str(ini), env={"DJSITE_STATIC_ROOT": "/nonexistent"})
    for _ in range(4):
        assert fetch(srv, "/a/where").json()["url_for"] == "/a/where"
        assert fetch(srv, "/dj/where/").json()["reverse"] == "/dj/where/"
        assert fetch(srv, "/zz").headers.get("X-App") == "fallback"


@pytest.mark.parametrize("lines, needle", [
    (["mount = /a"], "mount"),  # no '='
    (["mount = a=x.py"], "mount"),  # a prefix starts with '/'
    ([f"mount = /a={FLASK_A}", f"mount = /a={ENV_APP}"], "/a"),  # the same prefix twice
], ids=["no-equals", "relative-prefix", "duplicate-prefix"])
def test_bad_mount_values_are_one_line(tmp_path, lines, needle):
    ini = tmp_path / "bad.ini"
    ini.write_text("[uwsgi]\nhttp-socket = 127.0.0.1:0\nmanage-script-name = true\n" + "\n".join(lines) + "\n")
    srv = ServerProcess([str(ini)]).start(wait_ready=False)
    try:
        rc = srv.wait_exit(15)
    finally:
        srv.stop()
    out = srv.output()
    assert rc not in (0, None), out
    assert "Traceback" not in out and needle in out and str(ini) in out, out


@pytest.mark.parametrize("target, needles", [
    ("/x=tests/apps/broken_import.py", ["Traceback", "intentional import failure xyzzy"]),
    ("/x=tests/apps/missing_dep.py", ["Traceback", "definitely_missing_dependency_qq"]),
    ("/x=no_such_module_qq:app", ["no_such_module_qq"]),
    ("/x=tests/apps/does_not_exist_qq.py", ["does_not_exist_qq.py"]),
], ids=["raises", "missing-dependency", "missing-module", "missing-file"])
@pytest.mark.parametrize("mode", [(), ("--master", "--processes", "2"),
                                  ("--master", "--processes", "2", "--lazy-apps")],
                         ids=["single", "master", "lazy-apps"])
def test_mounted_app_that_fails_to_import_stops_the_server(target, needles, mode):
    """Exit status 4, as a main app that fails to load (the master's named code for "the app
    cannot load": no respawn loop, also when each worker loads the apps itself with
    lazy-apps), with the app's own traceback.  Not per runner: loading happens before any
    runner starts."""
    srv = ServerProcess([*mode,
                         "--http-socket", "127.0.0.1:0", "--wsgi-file", str(DEFAULT_APP),
                         "--manage-script-name", "--mount", f"/ok={ENV_APP}", "--mount", target])
    srv.start(wait_ready=False)
    try:
        rc = srv.wait_exit(20)
    finally:
        srv.stop()
    out = srv.output()
    assert rc is not None, f"server still running 20 s after a mount failed to load:\n{out}"
    assert rc == 4, out
    for n in needles:
        assert n in out, f"{n!r} not in the output:\n{out}"
    if "--lazy-apps" not in mode:
        # with lazy-apps the master is ready before any worker loads an app (as the main app)
        assert not srv.find(READY_RE), "a server whose mounted app failed to load must not report ready"
    assert out.count("cannot load the application") <= 2, f"a respawn loop:\n{out}"
    assert "/x" in out, f"the error should name the mount point:\n{out}"


# --- behind nginx, without manage-script-name: nginx says which app by SCRIPT_NAME -----------

# nginx splits the path itself: a regex location captures the rest, SCRIPT_NAME is the prefix.
# uwsgi_params sends PATH_INFO $document_uri first; the later uwsgi_param PATH_INFO replaces it
# (a repeated uwsgi var: the last one wins, as in uWSGI).  /b/ sends SCRIPT_NAME only: without
# manage-script-name the app is chosen by SCRIPT_NAME and PATH_INFO is passed as sent (uWSGI).
NGINX_MOUNT_CONF = """
server {
    listen 127.0.0.1:{port};
    server_tokens off;
    location ~ ^/a(?<a_rest>/.*)$ {
        include {dir}/uwsgi_params;
        uwsgi_param SCRIPT_NAME /a;
        uwsgi_param PATH_INFO $a_rest;
        uwsgi_pass UPSTREAM;
    }
    location ~ ^/dj(?<dj_rest>/.*)$ {
        include {dir}/uwsgi_params;
        uwsgi_param SCRIPT_NAME /dj;
        uwsgi_param PATH_INFO $dj_rest;
        uwsgi_pass UPSTREAM;
    }
    location /b/ {
        include {dir}/uwsgi_params;
        uwsgi_param SCRIPT_NAME /b;
        uwsgi_pass UPSTREAM;
    }
    location /zzz/ {
        include {dir}/uwsgi_params;
        uwsgi_param SCRIPT_NAME /zzz;
        uwsgi_pass UPSTREAM;
    }
    location / {
        include {dir}/uwsgi_params;
        uwsgi_pass UPSTREAM;
    }
}
"""


@pytest.fixture(scope="module")
def nginx_msrv(module_server_factory, tmp_path_factory, nginx_bin):
    tmp = tmp_path_factory.mktemp("mount_nginx")
    srv = module_server_factory(str(mount_ini(tmp, manage_script_name=False)),
                                env={"DJSITE_STATIC_ROOT": "/nonexistent"})
    host, port = srv.uwsgi_addr
    ngx = ConfNginx(nginx_bin, NGINX_MOUNT_CONF.replace("UPSTREAM", f"{host}:{port}"), tmp / "nginx").start()
    yield srv, ngx
    ngx.stop()


def test_mount_through_nginx_script_name(nginx_msrv):
    srv, ngx = nginx_msrv
    host, port = ngx.addr
    base = f"http://{host}:{port}"

    def get(path):
        return requests.get(base + path, timeout=10, allow_redirects=False)

    r = get("/a/where?x=2")
    assert r.status_code == 200 and r.headers.get("X-Flask-App") == "a", (r.status_code, r.text[:300])
    doc = r.json()
    assert (doc["script_name"], doc["path_info"], doc["url_for"]) == ("/a", "/where", "/a/where")
    # Debian's uwsgi_params sends HTTP_HOST as $host (no port: its "security workaround")
    assert doc["url_for_external"] in (f"http://{host}:{port}/a/where", f"http://{host}/a/where")
    assert doc["query"] == "x=2"
    r = get("/dj/where/")
    assert r.status_code == 200, r.text[:300]
    doc = r.json()
    assert (doc["script_name"], doc["path_info"], doc["reverse"]) == ("/dj", "/where/", "/dj/where/")
    # SCRIPT_NAME chooses the app; without manage-script-name PATH_INFO is not re-split
    r = get("/b/where")
    assert r.headers.get("X-Flask-App") == "b" and r.status_code == 404, (r.status_code, r.headers)
    # a SCRIPT_NAME no mount has: the default app, SCRIPT_NAME as sent
    r = get("/zzz/q")
    assert r.headers.get("X-App") == "fallback", (r.status_code, r.headers)
    assert (r.json()["script_name"], r.json()["path_info"]) == ("/zzz", "/zzz/q")
    # no SCRIPT_NAME from nginx: the default app, the path untouched (no manage-script-name)
    r = get("/other/where")
    assert r.headers.get("X-App") == "fallback"
    assert (r.json()["script_name"], r.json()["path_info"]) == ("", "/other/where")
