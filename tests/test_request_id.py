"""Request ids (issue 11, option request-id): the incoming X-Request-ID when sane (1-128 visible
ASCII bytes), else 32 new hex digits; in the environ (uwsgipy.request_id; HTTP_X_REQUEST_ID as
received), the access log (%(request_id), the JSON field) and the response header (unless the
app set one).  Over HTTP, uwsgi, and behind nginx's uwsgi_pass."""
import json
import re

import pytest

from helpers import Conn, build_request, encode_packet, http_request, uwsgi_exchange, uwsgi_vars

APP = '''
import json

def application(environ, start_response):
    headers = [("Content-Type", "application/json")]
    if environ["PATH_INFO"] == "/own":
        headers.append(("x-request-id", "app-chosen"))
    body = json.dumps({"id": environ.get("uwsgipy.request_id"),
                       "raw": environ.get("HTTP_X_REQUEST_ID"),
                       "corr": environ.get("HTTP_X_CORRELATION_ID")}).encode()
    start_response("200 OK", headers)
    return [body]
'''
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def app(tmp_path):
    p = tmp_path / "app.py"
    p.write_text(APP)
    return p


def rid_server(server_factory, app, *args):
    return server_factory("--http-socket", "127.0.0.1:0", "--socket", "127.0.0.1:0",
                          "--wsgi-file", app, "--request-id", "--log-format",
                          "%(method) %(uri) rid=%(request_id) %(status)", *args)


def log_rid(srv, uri, start=0):
    line = srv.wait_for(lambda l: f" {uri} rid=" in l, start=start)
    return line.split(" rid=")[1].split(" ")[0]


def test_incoming_id_round_trip_over_http(server_factory, app):
    srv = rid_server(server_factory, app)
    mark = srv.mark()
    r = http_request(srv.http_addr, target="/a", headers=[("X-Request-ID", "abc-123_x.y:z")])
    assert r.header("X-Request-ID") == "abc-123_x.y:z"
    assert r.json() == {"id": "abc-123_x.y:z", "raw": "abc-123_x.y:z", "corr": None}
    assert log_rid(srv, "/a", mark) == "abc-123_x.y:z"


def test_incoming_id_round_trip_over_uwsgi(server_factory, app):
    srv = rid_server(server_factory, app)
    mark = srv.mark()
    resp, _ = uwsgi_exchange(srv.uwsgi_addr, encode_packet(
        uwsgi_vars(path="/u", extra={"HTTP_X_REQUEST_ID": "nginx-0f8fad5b"})))
    assert resp.header("X-Request-ID") == "nginx-0f8fad5b"
    assert resp.json()["id"] == "nginx-0f8fad5b"
    assert log_rid(srv, "/u", mark) == "nginx-0f8fad5b"


def test_generated_ids_are_unique_hex(server_factory, app):
    srv = rid_server(server_factory, app, "--disable-logging")
    seen = set()
    with Conn(srv.http_addr) as c:
        for i in range(1000):
            c.send(build_request(target=f"/g{i}"))
            r = c.read_response()
            rid = r.header("X-Request-ID")
            assert HEX32.fullmatch(rid), rid
            assert r.json()["id"] == rid and r.json()["raw"] is None
            seen.add(rid)
    assert len(seen) == 1000


def test_ids_differ_across_workers(server_factory, app):
    srv = rid_server(server_factory, app, "--processes", "2", "--disable-logging")
    ids = {http_request(srv.http_addr, target="/w").header("X-Request-ID") for _ in range(200)}
    assert len(ids) == 200


@pytest.mark.parametrize("bad", [b"x" * 129, b"has space", b"tab\tin", b"caf\xc3\xa9",
                                 b"\xff\xfe", b""])
def test_insane_incoming_id_is_replaced(server_factory, app, bad):
    srv = rid_server(server_factory, app)
    r = http_request(srv.http_addr, target="/b", headers=[("X-Request-ID", bad)])
    assert r.status == 200
    rid = r.header("X-Request-ID")
    assert HEX32.fullmatch(rid)
    body = r.json()
    assert body["id"] == rid and body["raw"] == bad.decode("latin-1")   # kept as received


def test_insane_id_over_uwsgi_with_nul_and_newline(server_factory, app):
    srv = rid_server(server_factory, app)
    v = {k.encode(): val.encode() for k, val in uwsgi_vars(path="/n").items()}
    v[b"HTTP_X_REQUEST_ID"] = b"evil\r\nSet-Cookie: a=b\0"
    resp, raw = uwsgi_exchange(srv.uwsgi_addr, encode_packet(v))
    assert b"Set-Cookie" not in raw.split(b"\r\n\r\n")[0]
    assert HEX32.fullmatch(resp.header("X-Request-ID"))


def test_limit_is_128_bytes(server_factory, app):
    srv = rid_server(server_factory, app)
    ok = "k" * 128
    assert http_request(srv.http_addr, headers=[("X-Request-ID", ok)]).header("X-Request-ID") == ok


def test_app_header_wins_and_is_not_doubled(server_factory, app):
    srv = rid_server(server_factory, app)
    r = http_request(srv.http_addr, target="/own", headers=[("X-Request-ID", "client")])
    assert r.header_all("X-Request-ID") == ["app-chosen"]
    assert r.json()["id"] == "client"


def test_custom_header_name(server_factory, app):
    srv = rid_server(server_factory, app, "--request-id-header", "X-Correlation-ID")
    r = http_request(srv.http_addr, headers=[("X-Correlation-ID", "corr-1"),
                                             ("X-Request-ID", "other")])
    assert r.header("X-Correlation-ID") == "corr-1" and r.json()["id"] == "corr-1"
    assert r.header("X-Request-ID") is None


def test_off_by_default(server_factory, app):
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", app, "--log-format",
                         "%(method) %(uri) rid=%(request_id) %(status)")
    mark = srv.mark()
    r = http_request(srv.http_addr, target="/off", headers=[("X-Request-ID", "abc")])
    assert r.header("X-Request-ID") is None and r.json() == {"id": None, "raw": "abc",
                                                             "corr": None}
    assert log_rid(srv, "/off", mark) == "-"


def test_json_line_carries_the_id(server_factory, app):
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", app, "--request-id",
                         "--log-req-encoder", "json")
    mark = srv.mark()
    r = http_request(srv.http_addr, target="/j")
    line = json.loads(srv.wait_for(lambda l: l.startswith("{") and '"/j"' in l, start=mark))
    assert line["request_id"] == r.header("X-Request-ID")


def test_bad_header_name_is_a_config_error(tmp_path, app):
    import subprocess
    import sys
    from helpers import child_env
    r = subprocess.run([sys.executable, "-m", "uwsgipy", "--http-socket", "127.0.0.1:0",
                        "--wsgi-file", str(app), "--request-id-header", "X Bad"],
                       capture_output=True, text=True, timeout=30, env=child_env())
    assert r.returncode != 0 and "request-id-header" in r.stderr


def test_through_nginx_uwsgi_pass(server_factory, module_nginx_factory, app):
    srv = rid_server(server_factory, app)
    ngx = module_nginx_factory("uwsgi-tcp.conf", srv.uwsgi_addr)
    mark = srv.mark()
    r = http_request(ngx.addr, target="/ngx", headers=[("X-Request-ID", "from-client-1")])
    assert r.status == 200 and r.header("X-Request-ID") == "from-client-1"
    assert r.json()["id"] == "from-client-1"
    assert log_rid(srv, "/ngx", mark) == "from-client-1"
    r = http_request(ngx.addr, target="/ngx2")
    assert HEX32.fullmatch(r.header("X-Request-ID")) and r.json()["id"] == r.header("X-Request-ID")
