"""The code other platforms (macOS, the BSDs) run, built here on Linux with
UWSGIPY_PORTABLE=1 (csrc: UPY_PORTABLE) into a copy of the package: the
poll(2) loop (csrc/upy_poll.c) instead of epoll, file bodies by pread(2) +
send(2) instead of sendfile(2) (wsgi.file_wrapper and static-map), and
static files opened by the realpath check instead of openat2(2).  Smoke
tested as a real server: keep-alive, pipelining, bodies, a client that
stops reading, threads, static files large and small, a Range, a file
wrapper, graceful stop.  `UWSGIPY_FORCE_POLL=1` swaps only the poller.
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
BIG = bytes(range(256)) * 12289  # 3 MiB and a bit: many pread+send pieces, a full socket

APP = '''
import os
def application(environ, start_response):
    body = environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/fw":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        big = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files", "big.bin")
        return environ["wsgi.file_wrapper"](open(big, "rb"))
    if environ["PATH_INFO"] == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"x" * 65536 for _ in range(400))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok:", body]
'''


@pytest.fixture(scope="module")
def fallback_tree(tmp_path_factory):
    from helpers import extension_compiler_problem  # $CC, else sysconfig's CC, must compile
    if extension_compiler_problem():
        pytest.skip(f"setup.py build_ext needs a C compiler: {extension_compiler_problem()}")
    tree = tmp_path_factory.mktemp("pollbuild")
    for name in ("csrc", "uwsgipy"):
        shutil.copytree(REPO / name, tree / name,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    env = dict(os.environ, UWSGIPY_PORTABLE="1")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, env=env,
                   check=True, capture_output=True, timeout=300)
    (tree / "app.py").write_text(APP)
    (tree / "files").mkdir()
    (tree / "files" / "big.bin").write_bytes(BIG)
    (tree / "files" / "small.txt").write_bytes(b"small file\n" * 10)
    out = subprocess.run([sys.executable, "-c", "import uwsgipy._core as c; print(c.POLLER, c.BUILD)"],
                         cwd=tree, env=_copy_env(tree), capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "poll"
    assert "'sendfile': False" in out.stdout and "'openat2': False" in out.stdout, out.stdout
    return tree


def _copy_env(tree: Path) -> dict:
    """The children import the portable copy in tree, never the package under test (the source
    tree, or with UWSGIPY_TEST_INSTALLED the installed one, whose PYTHONSAFEPATH would hide the
    copy in the cwd)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("PYTHONSAFEPATH", None)
    return env


def _start(tree: Path, *args: str):
    proc = subprocess.Popen([sys.executable, "-m", "uwsgipy", "--http-socket", "127.0.0.1:0",
                             "--wsgi-file", "app.py", "--disable-logging", *args],
                            cwd=tree, env=_copy_env(tree), stderr=subprocess.PIPE, text=True)
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


def _get(addr, target: str, headers: str = "") -> tuple:
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: h\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(262144)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


@pytest.mark.parametrize("threads", ["1", "4"])
def test_portable_build_sends_files(fallback_tree, threads):
    """Without sendfile(2): a static-map file of 3 MiB (to a reader that pauses first), a Range of
    it, a small one with the head, and a wsgi.file_wrapper body all arrive whole; a symlink out of
    the root is refused by the realpath check (no openat2 in this build)."""
    files = fallback_tree / "files"
    link = files / "out.txt"
    if not link.is_symlink():
        os.symlink("/etc/passwd", link)
    proc, addr = _start(fallback_tree, "--threads", threads, "--static-map", f"/static={files}")
    try:
        slow = socket.create_connection(addr, timeout=10)
        slow.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        head, body = _get(addr, "/static/big.bin")
        assert head.startswith("HTTP/1.1 200") and body == BIG, head
        head, body = _get(addr, "/static/big.bin", "Range: bytes=1000000-1999999\r\n")
        assert head.startswith("HTTP/1.1 206") and body == BIG[1000000:2000000], head
        head, body = _get(addr, "/static/small.txt")
        assert head.startswith("HTTP/1.1 200") and body == b"small file\n" * 10, head
        head, body = _get(addr, "/fw")
        assert head.startswith("HTTP/1.1 200") and body == BIG, head
        head, body = _get(addr, "/static/out.txt")
        assert head.startswith("HTTP/1.1 403"), head
        data = b""  # the reader that paused gets every byte too
        while True:
            chunk = slow.recv(262144)
            if not chunk:
                break
            data += chunk
        slow.close()
        assert data.partition(b"\r\n\r\n")[2] == BIG
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise AssertionError("no exit within 15 s of SIGTERM:\n" + proc.stderr.read()[-5000:])
        assert rc == 0
