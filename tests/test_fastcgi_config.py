"""FastCGI and SCGI wiring (issue 12), the Python side: the settings (fastcgi-socket,
fastcgi-nph-socket, scgi-socket, scgi-nph-socket, protocol) from the command line, ini files
and UWSGI_* variables, their errors, the listener protocols handed to the C core, the ASGI
refusal, and one raw request to a real server on each protocol.

What uWSGI 2.0.31 does, checked by hand (`uwsgi --fastcgi-socket`, `--socket --protocol
fastcgi`, `--uwsgi-socket --protocol fastcgi`, `--http-socket --protocol fastcgi`, `--stats`):
``protocol`` applies to --socket only; the nph variants answer "HTTP/1.1 200 OK" instead of
"Status: 200 OK" (inside the FCGI_STDOUT records on FastCGI, raw on SCGI); the stats name the
protocols uwsgi, http, fastcgi, fastcgi-nph, scgi, scgi-nph (a --socket made FastCGI by
--protocol stays uwsgi there; uwsgipy's stats name what it serves).

The nginx and lighttpd integration (fastcgi_pass, keep_conn, scgi_pass, mod_fastcgi,
mod_scgi) and the C decoders' edge cases are tests/test_fastcgi.py's and the C tables'.
"""
from __future__ import annotations

import json
import os
import re
import stat
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from helpers import APPS, IO_TIMEOUT, REPO, child_env, connect, free_port
from uwsgipy import asgi, sockets
from uwsgipy.app import AppLoadError
from uwsgipy.config import ConfigError, load

ENV_APP = str(APPS / "env_app.py")


def error_of(argv, environ=None) -> str:
    with pytest.raises(ConfigError) as info:
        load(argv, environ or {})
    return str(info.value)


def write_ini(tmp_path: Path, text: str, name: str = "app.ini") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# Settings: command line, ini, environment
# --------------------------------------------------------------------------

SOCKET_OPTIONS = ("fastcgi-socket", "fastcgi-nph-socket", "scgi-socket", "scgi-nph-socket")


@pytest.mark.parametrize("option", SOCKET_OPTIONS)
def test_socket_options_from_every_source(tmp_path, option):
    attr = option.replace("-", "_")
    cfg = load([f"--{option}", "127.0.0.1:9000", f"--{option}=/run/app.sock"], {})
    assert getattr(cfg, attr) == ["127.0.0.1:9000", "/run/app.sock"]
    assert cfg.sources[option] == "command line"

    ini = write_ini(tmp_path, f"""
        [uwsgi]
        {option} = :9000
        {option} = [::1]:9001
        """)
    cfg = load([str(ini)], {})
    assert getattr(cfg, attr) == [":9000", "[::1]:9001"]
    assert cfg.sources[option] == f"{ini}:2, {ini}:3"

    env = "UWSGI_" + option.upper().replace("-", "_")
    cfg = load([], {env: "@abstract"})
    assert getattr(cfg, attr) == ["@abstract"]
    assert cfg.sources[option] == f"env {env}"

    # the command line replaces the ini file's list, as for socket
    cfg = load([str(ini), f"--{option}", ":7000"], {})
    assert getattr(cfg, attr) == [":7000"]


def test_defaults_listen_on_nothing_new():
    cfg = load([], {})
    assert (cfg.fastcgi_socket, cfg.fastcgi_nph_socket, cfg.scgi_socket,
            cfg.scgi_nph_socket) == ([], [], [], [])
    assert cfg.protocol == "uwsgi"


@pytest.mark.parametrize("value", ["uwsgi", "http", "http11", "fastcgi", "fastcgi-nph",
                                   "scgi", "scgi-nph"])
def test_protocol_values(tmp_path, value):
    assert load(["--protocol", value], {}).protocol == value
    assert load([], {"UWSGI_SOCKET_PROTOCOL": value}).protocol == value
    ini = write_ini(tmp_path, f"[uwsgi]\nsocket-protocol = {value}\n")
    assert load([str(ini)], {}).protocol == value


def test_bad_address_names_the_option_and_the_line(tmp_path):
    ini = write_ini(tmp_path, """
        [uwsgi]
        http-socket = :8080
        fastcgi-socket = 127.0.0.1:http
        """)
    assert error_of([str(ini)]) == (
        f"{ini}:3: option 'fastcgi-socket': invalid address '127.0.0.1:http': port must be a "
        "number from 0 to 65535 (use HOST:PORT, :PORT for all interfaces, or a unix socket path)")
    assert error_of(["--scgi-socket", "[::1:4000"]) == (
        "command line: option 'scgi-socket': invalid address '[::1:4000' (IPv6 hosts are "
        "written [::1]:PORT)")
    assert error_of([], {"UWSGI_SCGI_NPH_SOCKET": "host:70000"}).startswith(
        "env UWSGI_SCGI_NPH_SOCKET: option 'scgi-nph-socket': invalid address 'host:70000'")


def test_a_socket_option_needs_a_value(tmp_path):
    ini = write_ini(tmp_path, "[uwsgi]\nscgi-socket\n")
    assert error_of([str(ini)]) == (
        f"{ini}:2: option 'scgi-socket' needs a value (scgi-socket = ...)")


def test_bad_protocol_names_the_option_and_the_line(tmp_path):
    ini = write_ini(tmp_path, "[uwsgi]\nsocket = :3031\nprotocol = fcgi\n")
    assert error_of([str(ini)]) == (
        f"{ini}:3: option 'protocol': must be one of uwsgi, http, http11, fastcgi, "
        "fastcgi-nph, scgi, scgi-nph, not 'fcgi'")
    # uWSGI's other protocols are named and refused with the reason
    assert error_of(["--protocol", "raw"]) == (
        "command line: option 'protocol': protocol 'raw' is not supported by uwsgipy: raw "
        "sockets are not served")
    assert "uwsgipy has no TLS" in error_of([], {"UWSGI_PROTOCOL": "suwsgi"})
    assert error_of([], {"UWSGI_PROTOCOL": "puwsgi"}).startswith(
        "env UWSGI_PROTOCOL: option 'protocol': protocol 'puwsgi' is not supported")


def test_nph_forms_are_served_without_a_warning(tmp_path):
    # uWSGI's nph sockets are served as uWSGI serves them (the HTTP status line): nothing to warn
    ini = write_ini(tmp_path, """
        [uwsgi]
        fastcgi-nph-socket = :9000
        fastcgi-nph-socket = :9001
        scgi-nph-socket = :4000
        socket = :3031
        protocol = scgi-nph
        """)
    cfg = load([str(ini)], {})
    assert cfg.warnings == []
    assert [sockets.protocol_name(kind, cfg) for kind, _ in sockets.configured_addresses(cfg)] \
        == ["scgi-nph", "fastcgi-nph", "fastcgi-nph", "scgi-nph"]


# --------------------------------------------------------------------------
# Listeners: kinds, protocols, what the C core is given
# --------------------------------------------------------------------------

def test_configured_addresses_cover_every_kind_in_order():
    cfg = load(["--scgi-nph-socket", ":6", "--scgi-socket", ":5", "--fastcgi-nph-socket", ":4",
                "--fastcgi-socket", ":3", "--http", ":2", "--http-socket", ":1",
                "--socket", ":0"], {})
    assert sockets.configured_addresses(cfg) == [
        ("socket", ":0"), ("http-socket", ":1"), ("http", ":2"), ("fastcgi-socket", ":3"),
        ("fastcgi-nph-socket", ":4"), ("scgi-socket", ":5"), ("scgi-nph-socket", ":6")]


def test_protocol_applies_to_socket_listeners_only():
    # uWSGI's "default sockets": --protocol changes --socket, not --http-socket (checked with
    # uWSGI 2.0.31, which serves HTTP there whatever --protocol says)
    cfg = load(["--protocol", "fastcgi"], {})
    names = {kind: sockets.protocol_name(kind, cfg) for kind in sockets.KINDS}
    assert names == {"socket": "fastcgi", "http-socket": "http", "http": "http",
                     "fastcgi-socket": "fastcgi", "fastcgi-nph-socket": "fastcgi-nph",
                     "scgi-socket": "scgi", "scgi-nph-socket": "scgi-nph"}
    assert sockets.protocol_name("socket", load([], {})) == "uwsgi"
    assert sockets.protocol_name("socket", load(["--protocol", "http11"], {})) == "http"


def test_bind_applies_chmod_socket_to_fastcgi_and_scgi_unix_sockets(unix_dir):
    cfg = load(["--fastcgi-socket", f"{unix_dir}/f.sock", "--scgi-socket",
                f"{unix_dir}/s.sock", "--chmod-socket", "640", "--listen", "7"], {})
    bound = [sockets.bind_listener(kind, address, **sockets.listener_options(cfg))
             for kind, address in sockets.configured_addresses(cfg)]
    try:
        for lst in bound:
            assert stat.S_IMODE(os.stat(lst.unix_path).st_mode) == 0o640, lst
        assert [lst.proto_name(cfg) for lst in bound] == ["fastcgi", "scgi"]
    finally:
        sockets.close_listeners(bound, vacuum=True)
    assert not {"f.sock", "s.sock"} & set(os.listdir(unix_dir))


def _core():
    from uwsgipy import _core
    return _core


needs_fastcgi_core = pytest.mark.skipif(
    not hasattr(_core(), "PROTO_FASTCGI"),
    reason="the C core has no FastCGI/SCGI listeners yet (_core.PROTO_FASTCGI)")


@needs_fastcgi_core
@pytest.mark.parametrize("protocol", ["scgi", "fastcgi-nph"])
def test_core_spec_protocols(protocol):
    core = _core()
    assert (core.PROTO_HTTP, core.PROTO_UWSGI, core.PROTO_FASTCGI, core.PROTO_SCGI,
            core.PROTO_FASTCGI_NPH, core.PROTO_SCGI_NPH) == (0, 1, 2, 3, 4, 5)
    cfg = load(["--protocol", protocol], {})
    want = {"socket": sockets.protocol_code(protocol), "http-socket": core.PROTO_HTTP,
            "http": core.PROTO_HTTP, "fastcgi-socket": core.PROTO_FASTCGI,
            "fastcgi-nph-socket": core.PROTO_FASTCGI_NPH, "scgi-socket": core.PROTO_SCGI,
            "scgi-nph-socket": core.PROTO_SCGI_NPH}
    for kind, proto in want.items():
        lst = sockets.bind_listener(kind, "127.0.0.1:0")
        try:
            spec = lst.core_spec(cfg)
            assert spec[1] == proto, kind
            # the log names add the protocol where the kind does not say it
            note = f" ({protocol})" if kind == "socket" else ""
            assert lst.proto_note(cfg) == note
            assert spec[4] == f"{kind} {lst.bound}{note}"
            assert spec[6] is False  # the PROXY header is for HTTP listeners only
        finally:
            lst.sock.close()
    lst = sockets.bind_listener("socket", "127.0.0.1:0")
    try:
        assert lst.proto_note(load([], {})) == lst.proto_note() == ""  # uwsgi: nothing to add
    finally:
        lst.sock.close()


# --------------------------------------------------------------------------
# ASGI apps are refused on FastCGI and SCGI listeners
# --------------------------------------------------------------------------

async def raw_asgi_app(scope, receive, send):  # pragma: no cover - never called
    pass


def sync_app(environ, start_response):  # pragma: no cover - never called
    return []


def test_asgi_refused_on_fastcgi_and_scgi_listeners(tmp_path):
    ini = write_ini(tmp_path, "[uwsgi]\nhttp-socket = :8080\nfastcgi-socket = :9000\n")
    cfg = load([str(ini)], {})
    with pytest.raises(AppLoadError) as info:
        asgi.check_app(cfg, raw_asgi_app)
    assert str(info.value) == (
        f"fastcgi-socket :9000 ({ini}:3): an ASGI app cannot be served over FastCGI: ASGI is "
        "served over http-socket, http or socket (uwsgi protocol) only (or wrap the app as "
        "WSGI: a2wsgi.ASGIMiddleware)")
    assert asgi.check_app(cfg, sync_app) is False  # a WSGI app is served there

    cfg = load(["--scgi-nph-socket", "/run/a.sock"], {})
    with pytest.raises(AppLoadError, match=r"^scgi-nph-socket /run/a.sock \(command line\): "
                                           r"an ASGI app cannot be served over SCGI: "):
        asgi.check_app(cfg, raw_asgi_app)

    cfg = load(["--socket", ":3031", "--protocol", "fastcgi"], {"UWSGI_ASGI": "true"})
    # asgi = true: refused before the app is loaded
    assert asgi.check(cfg) == (
        "socket :3031 (command line) with protocol = fastcgi (command line): an ASGI app "
        "cannot be served over FastCGI: ASGI is served over http-socket, http or socket "
        "(uwsgi protocol) only (or wrap the app as WSGI: a2wsgi.ASGIMiddleware)")
    assert asgi.check(load(["--socket", ":3031", "--protocol", "http", "--asgi"], {})) is None
    assert asgi.check_app(load(["--socket", ":3031", "--http-socket", ":8080"], {}),
                          raw_asgi_app) is True


def run_server(args: List[str], timeout: float = 30) -> Tuple[int, str]:
    """uwsgipy in a child until it exits by itself; returns (code, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "uwsgipy", *args], cwd=str(REPO),
                          env=child_env({"PYTHONUNBUFFERED": "1"}), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


def test_a_real_server_refuses_an_asgi_app_on_fastcgi_in_one_line():
    app = str(APPS / "asgi_raw.py")
    code, err = run_server(["--fastcgi-socket", "127.0.0.1:0", "--wsgi-file", app])
    assert code == 4, err
    lines = [line for line in err.splitlines() if "cannot be served over FastCGI" in line]
    assert len(lines) == 1, err
    assert "fastcgi-socket 127.0.0.1:0 (command line): an ASGI app cannot be served over " \
           "FastCGI: ASGI is served over http-socket, http or socket (uwsgi protocol) only" \
           in lines[0]
    assert "Traceback" not in err and "ready (pid" not in err
    code, err = run_server(["--scgi-socket", "127.0.0.1:0", "--wsgi-file", app, "--asgi",
                            "true", "--master"])
    assert code == 2, err
    assert "scgi-socket 127.0.0.1:0 (command line): an ASGI app cannot be served over SCGI" \
           in err, err
    assert "Traceback" not in err


# --------------------------------------------------------------------------
# A real server: one raw request per protocol (tiny encoders: FastCGI 1.0 §3, §5; SCGI)
# --------------------------------------------------------------------------

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6
FCGI_RESPONDER, FCGI_KEEP_CONN = 1, 1


def fcgi_record(rtype: int, request_id: int, content: bytes) -> bytes:
    return struct.pack(">BBHHBx", 1, rtype, request_id, len(content), 0) + content


def fcgi_pair(name: bytes, value: bytes) -> bytes:
    def length(b: bytes) -> bytes:
        return bytes([len(b)]) if len(b) < 128 else struct.pack(">I", len(b) | 0x80000000)
    return length(name) + length(value) + name + value


def cgi_vars(method: str, path: str, body: bytes, host: str, port: int) -> Dict[str, str]:
    """What nginx's fastcgi_params / scgi_params send."""
    return {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "a=1",
            "REQUEST_URI": path + "?a=1", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "example",
            "SERVER_PORT": "80", "REMOTE_ADDR": "203.0.113.9", "REMOTE_PORT": "40000",
            "CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "example",
            "SERVER_ADDR": host, "GATEWAY_INTERFACE": "CGI/1.1", "HTTP_X_TEST": str(port)}


def fcgi_request(request_id: int, params: Dict[str, str], body: bytes, keep_conn: bool) -> bytes:
    encoded = b"".join(fcgi_pair(k.encode(), v.encode()) for k, v in params.items())
    out = fcgi_record(FCGI_BEGIN_REQUEST, request_id,
                      struct.pack(">HB5x", FCGI_RESPONDER, FCGI_KEEP_CONN if keep_conn else 0))
    out += fcgi_record(FCGI_PARAMS, request_id, encoded) + fcgi_record(FCGI_PARAMS, request_id, b"")
    if body:
        out += fcgi_record(FCGI_STDIN, request_id, body)
    return out + fcgi_record(FCGI_STDIN, request_id, b"")


def fcgi_read_response(sock) -> Tuple[bytes, List[Tuple[int, int, int, int]], bytes]:
    """Read records up to FCGI_END_REQUEST: (stdout bytes, [(type, id, length, padding)],
    END_REQUEST's body)."""
    buf, records, stdout = b"", [], b""
    while True:
        while len(buf) >= 8:
            version, rtype, rid, length, padding = struct.unpack(">BBHHB", buf[:7])
            if len(buf) < 8 + length + padding:
                break
            assert version == 1
            content = buf[8:8 + length]
            buf = buf[8 + length + padding:]
            records.append((rtype, rid, length, padding))
            if rtype == FCGI_STDOUT:
                stdout += content
            elif rtype == FCGI_END_REQUEST:
                assert buf == b"", buf  # nothing after the end of the only request
                return stdout, records, content
        data = sock.recv(65536)
        assert data, f"EOF before FCGI_END_REQUEST; records so far: {records}"
        buf += data


def cgi_response(raw: bytes) -> Tuple[str, Dict[str, str], bytes]:
    """(the first line: "Status: ..." or nph's "HTTP/1.1 ...", the other headers, body)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, raw[:200]
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], headers, body


def closed_by_peer(sock) -> bool:
    sock.settimeout(IO_TIMEOUT)
    return sock.recv(1) == b""


def listening_line(srv, kind: str) -> str:
    return srv.wait_for(lambda line: f"listening on {kind} " in line)


def read_to_eof(sock) -> bytes:
    raw = b""
    while True:  # SCGI: the response ends when the server closes
        data = sock.recv(65536)
        if not data:
            return raw
        raw += data


STATS_RE = re.compile(r"uwsgipy: stats server on (\S+)")


def stats_of(srv) -> dict:
    """The stats JSON of a server started with --stats 127.0.0.1:0."""
    host, _, port = STATS_RE.search(srv.wait_for(STATS_RE)).group(1).rpartition(":")
    with connect((host, int(port))) as s:
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return json.loads(data)
            data += chunk


@needs_fastcgi_core
@pytest.mark.parametrize("how", ["fastcgi-socket", "socket with protocol = fastcgi"])
def test_real_server_fastcgi_request(server_factory, how):
    port = free_port()
    address = f"127.0.0.1:{port}"
    args = (["--fastcgi-socket", address] if how == "fastcgi-socket"
            else ["--socket", address, "--protocol", "fastcgi"])
    # --stats: under the master, which logs the listeners itself
    srv = server_factory(*args, "--wsgi-file", ENV_APP, "--stats", "127.0.0.1:0")
    kind = args[0][2:]
    # the log names the listener's option, and the protocol where protocol = set it
    line = listening_line(srv, kind)
    assert line.endswith(") (fastcgi)" if kind == "socket" else ")"), line
    assert srv.listeners == [(kind, address)]
    # the stats name the protocol served (uWSGI's would say uwsgi for the socket)
    assert [(s["name"], s["proto"]) for s in stats_of(srv)["sockets"]] == [(address, "fastcgi")]
    body = b"hello fastcgi"
    params = cgi_vars("POST", "/path", body, "127.0.0.1", port)
    with connect(("127.0.0.1", port)) as s:
        for request_id in (1, 2):  # FCGI_KEEP_CONN: the same connection serves the next one
            s.sendall(fcgi_request(request_id, params, body, keep_conn=True))
            stdout, records, end = fcgi_read_response(s)
            status, headers, payload = cgi_response(stdout)
            assert status == "Status: 200 OK"
            assert headers["Content-Type"] == "application/json"
            environ = json.loads(payload)
            assert environ["REQUEST_METHOD"]["value"] == "POST"
            assert environ["PATH_INFO"]["value"] == "/path"
            assert environ["QUERY_STRING"]["value"] == "a=1"
            assert environ["REMOTE_ADDR"]["value"] == "203.0.113.9"
            assert environ["HTTP_X_TEST"]["value"] == str(port)
            assert environ["__body__"]["head"] == body.decode()
            assert {rid for _, rid, _, _ in records} == {request_id}
            # STDOUT records, each padded to a multiple of 8, then an empty one, then the end
            assert records[-2][:3] == (FCGI_STDOUT, request_id, 0)
            assert all((length + padding) % 8 == 0 for _, _, length, padding in records)
            assert end == struct.pack(">IB3x", 0, 0)  # appStatus 0, FCGI_REQUEST_COMPLETE
        # without FCGI_KEEP_CONN the server closes after the response
        s.sendall(fcgi_request(3, params, body, keep_conn=False))
        stdout, _, _ = fcgi_read_response(s)
        assert stdout.startswith(b"Status: 200 OK\r\n")
        assert closed_by_peer(s)


@needs_fastcgi_core
@pytest.mark.parametrize("how", ["scgi-socket", "socket with protocol = scgi"])
def test_real_server_scgi_request(server_factory, how):
    port = free_port()
    address = f"127.0.0.1:{port}"
    args = (["--scgi-socket", address] if how == "scgi-socket"
            else ["--socket", address, "--protocol", "scgi"])
    srv = server_factory(*args, "--wsgi-file", ENV_APP)  # no master: cli.bind_all logs
    line = listening_line(srv, args[0][2:])
    assert line.endswith(") (scgi)" if args[0] == "--socket" else ")"), line
    body = b"hello scgi"
    params = cgi_vars("PUT", "/s", body, "127.0.0.1", port)
    params = {"CONTENT_LENGTH": params.pop("CONTENT_LENGTH"), "SCGI": "1", **params}
    head = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items())
    with connect(("127.0.0.1", port)) as s:
        s.sendall(str(len(head)).encode() + b":" + head + b"," + body)
        raw = read_to_eof(s)
    status, headers, payload = cgi_response(raw)
    assert status == "Status: 200 OK"
    environ = json.loads(payload)
    assert environ["REQUEST_METHOD"]["value"] == "PUT"
    assert environ["PATH_INFO"]["value"] == "/s"
    assert environ["__body__"]["head"] == body.decode()
    assert "SCGI" in environ  # the vars reach the environ as they came, as over uwsgi


@needs_fastcgi_core
def test_real_server_fastcgi_on_a_unix_socket_with_chmod(server_factory, unix_dir):
    path = os.path.join(unix_dir, "app.sock")
    srv = server_factory("--fastcgi-socket", path, "--chmod-socket", "660", "--vacuum",
                         "--wsgi-file", ENV_APP)
    assert srv.listeners == [("fastcgi-socket", path)]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    with connect(path) as s:
        s.sendall(fcgi_request(1, cgi_vars("GET", "/u", b"", "", 0), b"", keep_conn=False))
        stdout, _, _ = fcgi_read_response(s)
    assert stdout.startswith(b"Status: 200 OK\r\n")


@needs_fastcgi_core
def test_real_server_nph_sockets_answer_with_the_http_status_line(server_factory):
    fport, sport = free_port(), free_port()
    srv = server_factory("--fastcgi-nph-socket", f"127.0.0.1:{fport}", "--scgi-nph-socket",
                         f"127.0.0.1:{sport}", "--wsgi-file", ENV_APP)
    assert srv.listeners == [("fastcgi-nph-socket", f"127.0.0.1:{fport}"),
                             ("scgi-nph-socket", f"127.0.0.1:{sport}")]
    assert not [line for line in srv.lines if "WARNING" in line], srv.output()
    # FastCGI: the HTTP status line, headers, body inside the STDOUT records, as uWSGI's
    with connect(("127.0.0.1", fport)) as s:
        s.sendall(fcgi_request(1, cgi_vars("GET", "/n", b"", "", 0), b"", keep_conn=False))
        stdout, records, end = fcgi_read_response(s)
        assert closed_by_peer(s)
    status, headers, payload = cgi_response(stdout)
    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"] == "application/json" and "Status" not in headers
    assert json.loads(payload)["PATH_INFO"]["value"] == "/n"
    assert {rtype for rtype, _, _, _ in records} == {FCGI_STDOUT, FCGI_END_REQUEST}
    assert end == struct.pack(">IB3x", 0, 0)
    # SCGI: the same, raw, then close (uWSGI's status line names SERVER_PROTOCOL)
    head = (b"CONTENT_LENGTH\x000\x00SCGI\x001\x00REQUEST_METHOD\x00GET\x00PATH_INFO\x00/n\x00"
            b"SERVER_PROTOCOL\x00HTTP/1.1\x00")
    with connect(("127.0.0.1", sport)) as s:
        s.sendall(str(len(head)).encode() + b":" + head + b",")
        raw = read_to_eof(s)
    status, headers, payload = cgi_response(raw)
    assert status == "HTTP/1.1 200 OK", raw[:200]
    assert headers["Content-Type"] == "application/json" and "Status" not in headers
    assert json.loads(payload)["PATH_INFO"]["value"] == "/n"


@needs_fastcgi_core
def test_real_server_socket_with_protocol_fastcgi_nph(server_factory):
    port = free_port()
    srv = server_factory("--socket", f"127.0.0.1:{port}", "--protocol", "fastcgi-nph",
                         "--wsgi-file", ENV_APP)
    assert listening_line(srv, "socket").endswith(") (fastcgi-nph)")
    with connect(("127.0.0.1", port)) as s:
        s.sendall(fcgi_request(1, cgi_vars("GET", "/p", b"", "", 0), b"", keep_conn=False))
        stdout, _, _ = fcgi_read_response(s)
    assert stdout.startswith(b"HTTP/1.1 200 OK\r\n"), stdout[:200]
