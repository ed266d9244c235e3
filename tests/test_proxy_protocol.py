"""The PROXY protocol (HAProxy's spec, versions 1 and 2) on HTTP listeners.

- the pure-C reader (csrc/upy_proxy.c): table tests against a guard page, a plain -Werror
  build and an ASan+UBSan build (tests/c/test_proxy.c);
- a real server: REMOTE_ADDR / REMOTE_PORT from the header only where it is enabled
  (enable-proxy-protocol for http-socket and for socket with protocol = http,
  http-enable-proxy-protocol for http), a connection without one served as plain HTTP (as in
  uWSGI), a malformed one closed with nothing sent;
- real HAProxy (send-proxy, send-proxy-v2) in front, when it is installed.
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from helpers import REPO, Conn, free_port, wait_until

CSRC = REPO / "csrc"
ENV_APP = str(REPO / "tests" / "apps" / "env_app.py")
REQ = b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"

BUILDS = {
    "plain": ["-O2"],
    "asan-ubsan": ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer"],
}


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_c_proxy_table(build, tmp_path):
    exe = tmp_path / f"test_proxy_{build}"
    cmd = ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers",
           "-D_GNU_SOURCE", f"-I{CSRC}", *BUILDS[build], "-o", str(exe),
           str(CSRC / "upy_proxy.c"), str(REPO / "tests" / "c" / "test_proxy.c")]
    cc = subprocess.run(cmd, capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    m = re.search(r"^(\d+) passed, (\d+) failed$", run.stdout, re.M)
    assert run.returncode == 0 and m and int(m.group(1)) > 100 and m.group(2) == "0", \
        run.stdout + run.stderr


def v2_header(src: str, sport: int, dst: str = "", dport: int = 80, cmd: int = 1) -> bytes:
    dst = dst or ("2001:db8::2" if ":" in src else "10.0.0.2")
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    if ":" in src:
        addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
        fam = 0x21
    else:
        addrs = socket.inet_aton(src) + socket.inet_aton(dst)
        fam = 0x11
    block = addrs + struct.pack("!HH", sport, dport)
    return sig + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(block)) + block


def exchange(addr, data: bytes, timeout: float = 5) -> bytes:
    with Conn(addr, timeout) as c:
        c.send(data)
        return c.read_to_eof()


def remote(raw: bytes):
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]
    env = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    return env["REMOTE_ADDR"]["value"], env["REMOTE_PORT"]["value"]


@pytest.fixture(scope="module")
def proxied(module_server_factory):
    return module_server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ENV_APP,
                                 "--enable-proxy-protocol")


def test_v1_sets_remote_addr_and_port(proxied):
    raw = exchange(proxied.http_addr, b"PROXY TCP4 203.0.113.7 10.0.0.2 40001 80\r\n" + REQ)
    assert remote(raw) == ("203.0.113.7", "40001")


def test_v1_ipv6(proxied):
    raw = exchange(proxied.http_addr, b"PROXY TCP6 2001:db8::7 ::1 40002 80\r\n" + REQ)
    assert remote(raw) == ("2001:db8::7", "40002")


def test_v2_sets_remote_addr_and_port(proxied):
    raw = exchange(proxied.http_addr, v2_header("198.51.100.9", 50003) + REQ)
    assert remote(raw) == ("198.51.100.9", "50003")


def test_v2_in_pieces(proxied):
    data = v2_header("2001:db8::9", 50004) + REQ
    with Conn(proxied.http_addr, 5) as c:
        for i in range(0, len(data), 7):
            c.send(data[i:i + 7])
            time.sleep(0.002)  # pacing the pieces apart, not a readiness wait
        raw = c.read_to_eof()
    assert remote(raw) == ("2001:db8::9", "50004")


def test_v2_local_and_v1_unknown_keep_the_socket_address(proxied):
    for header in (v2_header("1.1.1.1", 1, cmd=0), b"PROXY UNKNOWN\r\n"):
        addr, port = remote(exchange(proxied.http_addr, header + REQ))
        assert addr == "127.0.0.1" and port != "1"


def test_no_header_is_plain_http(proxied):
    """As in uWSGI: health checks straight to the port are served."""
    addr, _ = remote(exchange(proxied.http_addr, REQ))
    assert addr == "127.0.0.1"


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.7 10.0.0.2 40001\r\n",
    b"PROXY TCP4 300.0.113.7 10.0.0.2 40001 80\r\n",
    b"PROXY TCP4 203.0.113.7 10.0.0.2 40001 80\n",
    b"PROXY HTTP/1.1\r\n",
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c" + bytes(12),
])
def test_malformed_header_closes_with_nothing_sent(proxied, header):
    m = proxied.mark()
    assert exchange(proxied.http_addr, header + REQ) == b""
    proxied.wait_for("malformed PROXY protocol header", 5, start=m)
    assert remote(exchange(proxied.http_addr, REQ))[0] == "127.0.0.1"


def test_header_only_once_per_connection(proxied):
    """A second PROXY line on a kept-alive connection is request data, not a header."""
    keep = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    with Conn(proxied.http_addr, 5) as c:
        c.send(b"PROXY TCP4 203.0.113.7 10.0.0.2 40001 80\r\n" + keep)
        r = c.read_response()
        assert r.json()["REMOTE_ADDR"]["value"] == "203.0.113.7"
        c.send(b"PROXY TCP4 203.0.113.8 10.0.0.2 40001 80\r\n" + REQ)
        r2 = c.read_response()
    assert r2.status == 400


def test_not_enabled_means_not_read(server_factory):
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ENV_APP)
    raw = exchange(srv.http_addr, b"PROXY TCP4 203.0.113.7 10.0.0.2 40001 80\r\n" + REQ)
    assert raw.startswith(b"HTTP/1.1 400 "), raw[:100]


def test_socket_with_protocol_http(server_factory):
    srv = server_factory("--socket", "127.0.0.1:0", "--protocol", "http", "--wsgi-file", ENV_APP,
                         "--enable-proxy-protocol")
    raw = exchange(srv.uwsgi_addr, b"PROXY TCP4 203.0.113.5 10.0.0.2 40005 80\r\n" + REQ)
    assert remote(raw) == ("203.0.113.5", "40005")


# ------------------------------------------------------------------------------------------
# real HAProxy in front
# ------------------------------------------------------------------------------------------

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


@pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed (apt-get install haproxy)")
@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_behind_real_haproxy(server_factory, tmp_path, send):
    srv = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", ENV_APP,
                         "--enable-proxy-protocol")
    host, port = srv.http_addr
    front = free_port()
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(f"""
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend f
    bind 127.0.0.1:{front}
    default_backend b
backend b
    server app {host}:{port} {send}
""")
    proc = subprocess.Popen([HAPROXY, "-f", str(conf), "-db"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        def ask():
            try:
                s = socket.create_connection(("127.0.0.1", front), timeout=5)
            except OSError:
                return None
            with s:
                s.sendall(REQ)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                return (s.getsockname()[1], data) if data else None
        client_port, raw = wait_until(ask, 10, what="haproxy forwarding")
        assert remote(raw) == ("127.0.0.1", str(client_port))
    finally:
        proc.terminate()
        proc.wait(10)
