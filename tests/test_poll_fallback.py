"""The portable poll(2) loop (csrc/upy_poll.c), used where epoll is not:
built here with UWSGIPY_FORCE_POLL into a copy of the package and smoke
tested as a real server (keep-alive, pipelining, bodies, a client that
stops reading, threads, graceful stop).  The whole suite passes against
this build too: `UWSGIPY_FORCE_POLL=1 pip install -e .` then pytest.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

APP = '''
def application(environ, start_response):
    body = environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"x" * 65536 for _ in range(400))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok:", body]
'''


@pytest.fixture(scope="module")
def fallback_tree(tmp_path_factory):
    tree = tmp_path_factory.mktemp("pollbuild")
    for name in ("csrc", "uwsgipy"):
        shutil.copytree(REPO / name, tree / name,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    env = dict(os.environ, UWSGIPY_FORCE_POLL="1")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, env=env,
                   check=True, capture_output=True, timeout=300)
    (tree / "app.py").write_text(APP)
    out = subprocess.run([sys.executable, "-c", "import uwsgipy._core as c; print(c.POLLER)"],
                         cwd=tree, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "poll"
    return tree


def _start(tree: Path, *args: str):
    proc = subprocess.Popen([sys.executable, "-m", "uwsgipy", "--http-socket", "127.0.0.1:0",
                             "--wsgi-file", "app.py", "--disable-logging", *args],
                            cwd=tree, stderr=subprocess.PIPE, text=True)
    port = None
    deadline = time.monotonic() + 20
    for line in proc.stderr:
        if "listening on http-socket" in line:
            port = int(line.split()[4].rsplit(":", 1)[1])
        if "ready" in line:
            break
        assert time.monotonic() < deadline
    assert port is not None
    return proc, ("127.0.0.1", port)


def _read_responses(sock: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(b"HTTP/1.1 200") < count or not data.endswith(b"ok:" if count < 3 else b"ok:abc"):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


@pytest.mark.parametrize("threads", ["1", "4"])
def test_poll_fallback_serves(fallback_tree, threads):
    proc, addr = _start(fallback_tree, "--threads", threads)
    try:
        with socket.create_connection(addr, timeout=5) as s:  # keep-alive + pipelining + a body
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * 2 +
                      b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
            data = _read_responses(s, 3)
            assert data.count(b"HTTP/1.1 200") == 3
        lazy = socket.create_connection(addr, timeout=5)  # stops reading a 25 MiB response
        lazy.sendall(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
        lazy.recv(1024)
        for _ in range(3):
            t0 = time.monotonic()
            with socket.create_connection(addr, timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                assert b"200 OK" in s.recv(65536)
            assert time.monotonic() - t0 < 1.0
        lazy.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave it behind
            proc.wait(5)
            raise AssertionError("no exit within 15 s of SIGTERM:\n" + proc.stderr.read()[-5000:])
        assert rc == 0
