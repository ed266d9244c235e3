"""JSON access logs (issue 11): ``log-req-encoder = json`` writes one JSON object per request
line from the C core (csrc/upy_response.c, escaping in csrc/upy_log.c), ``log-encoder = json``
one per uwsgipy line.  Hostile values (quotes, backslashes, newlines, NUL, invalid UTF-8, 8 KiB)
come back from json.loads exactly: the bytes received, decoded as UTF-8 with U+FFFD for what is
not (Python's "replace", the documented rule)."""
import json
import os
import time

import pytest

from helpers import ServerProcess, encode_packet, http_request, uwsgi_exchange, uwsgi_vars

APP = '''
def application(environ, start_response):
    body = b"hello"
    if environ["PATH_INFO"] == "/slow":
        import time
        time.sleep(0.05)
    if environ["PATH_INFO"] == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"nope"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


@pytest.fixture
def app(tmp_path):
    p = tmp_path / "app.py"
    p.write_text(APP)
    return p


def json_lines(srv, start=0, n=1, timeout=10.0):
    """The first n JSON request lines (they hold "status")."""
    deadline = time.monotonic() + timeout
    while True:
        found = [json.loads(l) for l in srv.lines[start:] if l.startswith("{") and '"status":' in l]
        if len(found) >= n or time.monotonic() > deadline:
            assert len(found) >= n, "\n".join(srv.lines)
            return found[:n]
        time.sleep(0.02)


def start(server_factory, app, *args, socket="--http-socket"):
    return server_factory(socket, "127.0.0.1:0", "--wsgi-file", app, "--log-req-encoder", "json",
                          *args)


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def test_default_fields_are_typed(server_factory, app):
    srv = start(server_factory, app, "--request-id")
    mark = srv.mark()
    r = http_request(srv.http_addr, target="/slow?a=1",
                     headers=[("User-Agent", "curl/8"), ("Referer", "http://x/")])
    assert r.status == 200
    (line,) = json_lines(srv, mark)
    assert set(line) == {"time", "addr", "method", "uri", "proto", "status", "size", "msecs",
                         "micros", "worker", "pid", "request_id", "host", "uagent", "referer"}
    assert line["method"] == "GET" and line["uri"] == "/slow?a=1" and line["proto"] == "HTTP/1.1"
    assert line["addr"] == "127.0.0.1" and line["host"] == "127.0.0.1"
    assert line["uagent"] == "curl/8" and line["referer"] == "http://x/"
    assert line["status"] == 200 and isinstance(line["status"], int)
    assert line["size"] == 5   # body bytes, as the plain line
    assert isinstance(line["msecs"], float) and line["msecs"] >= 50.0
    assert isinstance(line["micros"], int) and line["micros"] >= 50000
    assert line["worker"] == 1 and isinstance(line["pid"], int)
    assert line["request_id"] == r.header("X-Request-ID")
    assert abs(time.mktime(time.strptime(line["time"][:19], "%Y-%m-%dT%H:%M:%S"))
               - time.timezone - time.time()) < 30
    assert line["time"].endswith("Z") and len(line["time"]) == 24


def test_absent_headers_are_left_out_and_no_request_id_when_off(server_factory, app):
    srv = start(server_factory, app)
    mark = srv.mark()
    http_request(srv.http_addr, target="/missing", host=None, version="HTTP/1.0")
    (line,) = json_lines(srv, mark)
    assert line["status"] == 404 and line["proto"] == "HTTP/1.0"
    assert not {"uagent", "referer", "host", "request_id"} & set(line)


HOSTILE = {
    "HTTP_USER_AGENT": b'Mozilla "quoted" \\ back\\slash',
    "HTTP_REFERER": b"line1\nline2\r\n\tend",
    "HTTP_X_NUL": b"before\0after",
    "HTTP_X_BAD_UTF8": b"caf\xc3\xa9 \xff\xfe \xe2\x82 \xed\xa0\x80 ok",
    "HTTP_X_CONTROL": bytes(range(32)) + b"\x7f",
    "HTTP_X_BIG": (b'"\\\n\0\xc3\xa9\xff' + b"x" * 57) * 128,     # 8 KiB
}


def hostile_packet(uri=b"/p?q=\"1\"&\\"):
    v = uwsgi_vars(path="/p", query='q="1"&\\')
    v = {k.encode(): val.encode() for k, val in v.items()}
    v[b"REQUEST_URI"] = uri
    for k, val in HOSTILE.items():
        v[k.encode()] = val
    return encode_packet(v)


@pytest.mark.parametrize("fmt", [None, "%(addr) %(uri) %(uagent) %(referer) %(var.HTTP_X_NUL) "
                                       "%(var.HTTP_X_BAD_UTF8) %(var.HTTP_X_CONTROL) "
                                       "%(var.HTTP_X_BIG) %(status)"])
def test_hostile_values_over_uwsgi_parse_exactly(server_factory, app, fmt):
    srv = start(server_factory, app, *(["--log-format", fmt] if fmt else []), socket="--socket")
    mark = srv.mark()
    resp, _ = uwsgi_exchange(srv.uwsgi_addr, hostile_packet())
    assert resp.status == 200
    (line,) = json_lines(srv, mark)
    assert line["uri"] == '/p?q="1"&\\'
    assert line["uagent"] == text(HOSTILE["HTTP_USER_AGENT"])
    assert line["referer"] == text(HOSTILE["HTTP_REFERER"])
    if fmt:
        assert list(line) == ["addr", "uri", "uagent", "referer", "var.HTTP_X_NUL",
                              "var.HTTP_X_BAD_UTF8", "var.HTTP_X_CONTROL", "var.HTTP_X_BIG",
                              "status"]
        for key in ("HTTP_X_NUL", "HTTP_X_BAD_UTF8", "HTTP_X_CONTROL", "HTTP_X_BIG"):
            assert line["var." + key] == text(HOSTILE[key]), key
        assert line["var.HTTP_X_BAD_UTF8"] == "café \ufffd\ufffd \ufffd \ufffd\ufffd\ufffd ok"
        assert line["status"] == 200
    # one physical line, no raw control character in it
    raw = next(l for l in srv.lines[mark:] if l.startswith("{"))
    assert not any(ord(c) < 0x20 for c in raw)


def test_hostile_values_over_http(server_factory, app):
    srv = start(server_factory, app, "--log-format", "%(uagent) %(var.HTTP_X_BIG) %(uri) %(status)",
                "--limit-request-field-size", "20000")
    mark = srv.mark()
    big = ('"\\' + "é" + "y" * 60) * 128
    r = http_request(srv.http_addr, target="/a%22b?x=%C3%A9",
                     headers=[("User-Agent", b'a "b" \\c \xc3\xa9 \xff'),
                              ("X-Big", big.encode("utf-8"))])
    assert r.status == 200
    (line,) = json_lines(srv, mark)
    assert line == {"uagent": 'a "b" \\c é \ufffd', "var.HTTP_X_BIG": big,
                    "uri": "/a%22b?x=%C3%A9", "status": 200}


def test_log_format_fields_are_typed(server_factory, app):
    srv = start(server_factory, app, "--log-format",
                "[%(ltime)] %(method) %(uri) => %(status) %(size) %(msecs) %(micros) %(secs) "
                "%(pid) %(wid) %(cl) %(epoch) %(time) %(ctime) %(request_id) %(user) %(status)")
    mark = srv.mark()
    http_request(srv.http_addr, method="POST", target="/x", body=b"abc")
    (line,) = json_lines(srv, mark)
    assert list(line) == ["ltime", "method", "uri", "status", "size", "msecs", "micros", "secs",
                          "pid", "wid", "cl", "epoch", "time", "ctime", "request_id", "user"]
    for k in ("status", "size", "msecs", "micros", "pid", "wid", "cl", "epoch", "time"):
        assert isinstance(line[k], int), k
    assert isinstance(line["secs"], float)
    assert line["cl"] == 3 and line["method"] == "POST" and line["wid"] == 1
    assert line["request_id"] is None and line["user"] == ""
    assert abs(line["epoch"] - time.time()) < 30


def test_extra_fields(server_factory, app):
    srv = start(server_factory, app, "--log-json-field", "service=shop",
                "--log-json-field", 'env=a "quoted" \\ value', "--log-json-field", "service=cart")
    mark = srv.mark()
    http_request(srv.http_addr, target="/")
    (line,) = json_lines(srv, mark)
    assert line["service"] == "cart" and line["env"] == 'a "quoted" \\ value'
    assert list(line)[-2:] == ["service", "env"]


def test_nl_encoder_is_accepted_and_filters_still_apply(server_factory, app):
    srv = start(server_factory, app, "--log-req-encoder", "nl", "--disable-logging",
                "--log-4xx")
    mark = srv.mark()
    http_request(srv.http_addr, target="/ok")
    http_request(srv.http_addr, target="/missing")
    (line,) = json_lines(srv, mark)
    assert line["uri"] == "/missing" and line["status"] == 404
    assert not [l for l in srv.lines if "not applied" in l]


def test_static_files_log_json_without_the_environ(server_factory, app, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"static!")
    srv = start(server_factory, app, "--static-map", f"/s={root}", "--request-id")
    mark = srv.mark()
    r = http_request(srv.http_addr, target="/s/a.txt",
                     headers=[("User-Agent", 'x"y'), ("X-Request-ID", "static-1")])
    assert r.status == 200 and r.body == b"static!"
    (line,) = json_lines(srv, mark)
    assert line["uri"] == "/s/a.txt" and line["status"] == 200 and line["uagent"] == 'x"y'
    assert line["request_id"] == "static-1" and line["size"] == 7


def test_unsupported_encoders_warn(server_factory, app):
    srv = start(server_factory, app, "--log-req-encoder", "gzip",
                "--log-req-encoder", 'json {"m": "${msg}"}')   # not with the bare json
    warned = [l for l in srv.lines if "log-req-encoder" in l and "not applied" in l]
    assert len(warned) == 2


def test_uwsgi_request_templates(server_factory, app):
    # the uWSGI idiom: a hand-made JSON log-format inside a format template, and the json
    # template that escapes the whole line
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", app,
                         "--log-format", '"method": "%(method)", "status": %(status)',
                         "--log-req-encoder",
                         'format {"t": ${unix}, "ms": ${millis}, "y": "${strftime:%Y}", ${msg}}',
                         "--log-req-encoder", "nl")
    mark = srv.mark()
    http_request(srv.http_addr, target="/f")
    line = json.loads(srv.wait_for(lambda l: l.startswith('{"t":'), start=mark))
    assert line["method"] == "GET" and line["status"] == 200 and line["y"] == time.strftime("%Y")
    assert abs(line["t"] - time.time()) < 30 and abs(line["ms"] / 1000 - line["t"]) < 2
    assert not [l for l in srv.lines if "not applied" in l]

    srv = server_factory("--socket", "127.0.0.1:0", "--wsgi-file", app,
                         "--log-req-encoder", 'json {"source": "req", "message": "${msg}"}')
    mark = srv.mark()
    uwsgi_exchange(srv.uwsgi_addr, hostile_packet())
    line = json.loads(srv.wait_for(lambda l: l.startswith('{"source"'), start=mark))
    assert line["message"].startswith('127.0.0.1 "GET /p?q="1"&\\ HTTP/1.1" 200 5 ')


def test_unknown_encoder_is_a_config_error(tmp_path, app):
    import subprocess
    import sys
    from helpers import child_env
    r = subprocess.run([sys.executable, "-m", "uwsgipy", "--http-socket", "127.0.0.1:0",
                        "--wsgi-file", str(app), "--log-encoder", "xml"],
                       capture_output=True, text=True, timeout=30, env=child_env())
    assert r.returncode != 0 and "unknown log encoder 'xml'" in r.stderr


def test_log_encoder_json_server_lines(app):
    srv = ServerProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", app, "--log-encoder",
                         "json", "--log-json-field", "service=shop"])
    srv.start(wait_ready=False)
    try:
        line = srv.wait_for(lambda l: '"msg": "ready (pid' in l)
    finally:
        srv.proc.terminate()
        srv.wait_exit(15)
    obj = json.loads(line)
    assert obj["level"] == "info" and obj["role"] == "master" and obj["service"] == "shop"
    assert obj["pid"] == srv.proc.pid
    assert all(json.loads(l) for l in srv.lines if l.startswith('{"time"'))


def test_log_encoder_templates(app):
    srv = ServerProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", app, "--log-encoder",
                         'json {"t": ${unix}, "m": "${msg}", "d": "${strftime:%Y}"}',
                         "--log-encoder", "nl"])
    srv.start()
    srv.stop()
    obj = json.loads(next(l for l in srv.lines if "ready (pid" in l))
    assert obj["m"].startswith("uwsgipy: ready (pid ") and abs(obj["t"] - time.time()) < 60
    assert obj["d"] == time.strftime("%Y")
