"""Static files served by the C core (issue 9): static-map, static-map2, check-static and their
options, on real server processes over real sockets.

- The conditional / range table is compared with real nginx serving the SAME directory (started
  here with its own config): same status, same entity headers, same body bytes; the cases where
  we differ from nginx on purpose are listed in STATUS_DIFFERENCES / HEADER_DIFFERENCES with the
  reason.
- The traversal table (hostile encodings, symlinks in and out of the root, a FIFO, directories)
  runs over HTTP (http-socket), over raw uwsgi packets, and over uwsgi through nginx: a secret
  file outside the root must never show up in any response.
- Behaviour: methods, fall-through to the app, the mapping rules, index, skip-ext, expires,
  precompressed siblings, a 10 MiB file to a slow reader while the loop serves others,
  keep-alive, the access log and the stats counters.
- A Django project run standalone: collectstatic, the admin's CSS/JS, /media uploads.

Every server test runs under threads = 1, threads = 4 and gevent = 8 (conftest.py).
"""
from __future__ import annotations

import email.utils
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

import pytest
import requests

from helpers import (ACCESS_RE, APPS, FALLBACK_UWSGI_PARAMS, IO_TIMEOUT, NGINX_WRAPPER, Conn, NginxProcess,
                     ServerProcess, build_request, connect, encode_packet, http_request, parse_addr,
                     parse_response_bytes, uwsgi_exchange, wait_until)

pytestmark = pytest.mark.all_runners

STATIC_APP = str(APPS / "static_app.py")
DJSITE_DIR = APPS / "djsite"

MTIME = 1700000000  # the table files' mtime: Tue, 14 Nov 2023 22:13:20 GMT
OLD_MTIME = 1577836800  # exp/old.txt: Wed, 01 Jan 2020 00:00:00 GMT (the -mtime expires rule)
# The bytes of the files outside the root: never in any response, whatever the path.
SECRET = b"TOPSECRET-" + os.urandom(6).hex().encode() + b"-do-not-serve"
PASSWD_MARK = b"root:x:0:0"  # /etc/passwd's first line on Linux
TEXT = b"hello static world\n" * 50  # a.txt: 950 bytes
BIG_SIZE = 10 * 1024 * 1024


def httpdate(t: float) -> str:
    """RFC 9110 §5.6.7 IMF-fixdate."""
    return email.utils.formatdate(t, usegmt=True)


def etag_of(st: os.stat_result) -> str:
    """nginx's ETag form, which ours follows (brief item 6): "<mtime hex>-<size hex>"."""
    return '"%x-%x"' % (int(st.st_mtime), st.st_size)


# ----------------------------------------------------------------------------------------------
# the directory tree
# ----------------------------------------------------------------------------------------------

class Tree:
    """base/
         secret.txt, outside/secret2.txt      SECRET: outside every root
         safe/ok.txt                           outside the root, under static-safe
         root/  (static-map /static)           the files the tests serve
         root2/ (a second /static map)         only2.txt, and an a.txt the first map hides
         m2root/m2/x.txt (static-map2 /m2)     the prefix kept in the file name
         docroot/robots.txt (check-static)
         fav.ico (static-map /favicon.ico=<file>)
    """

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        self.files: Dict[str, bytes] = {}

    def put(self, rel: str, data: bytes, mtime: Optional[int] = MTIME) -> Path:
        p = self.base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if mtime is not None:
            os.utime(p, (mtime, mtime))
        self.files[rel] = data
        return p

    def data(self, rel: str) -> bytes:
        return self.files[rel]

    def build(self) -> "Tree":
        b, r = self.base, self.root
        # world-readable, so the unprivileged server (uid drop test) can read them
        os.chmod(b, 0o755)
        self.put("secret.txt", SECRET + b"\n")
        self.put("outside/secret2.txt", SECRET + b" two\n")
        self.put("safe/ok.txt", b"safe file ok\n")
        self.put("root/a.txt", TEXT)
        self.put("root/b.bin", os.urandom(5000))
        self.put("root/style.css", b"body { color: #123456; }\n")
        self.put("root/app.js", b"console.log('static js');\n")
        self.put("root/noext", b"no extension here\n")
        self.put("root/empty.txt", b"")
        self.put("root/UPPER.TXT", b"upper case extension\n")
        self.put("root/sub/inner.txt", b"inner file\n")
        self.put("root/sub/index.html", b"<html>sub index</html>\n")
        self.put("root/noindex/x.txt", b"x in a dir without index\n")
        self.put("root/both/default.html", b"<p>default.html comes first</p>\n")
        self.put("root/both/index.html", b"<p>index.html</p>\n")
        self.put("root/types/x.cust", b"custom type\n")
        self.put("root/types/y.webmanifest", b"{}\n")
        self.put("root/back\\slash.txt", b"a backslash is a file name byte\n")
        self.put("root/%41.txt", b"a literal percent in the name\n")
        self.put("root/caf\u00e9.txt", "caf\u00e9 file\n".encode())
        self.put("root/skip.php", b"<?php echo 'source must not leak'; ?>\n")
        self.put("root/exp/a.css", b".exp { }\n")
        self.put("root/exp/b.csv", b"a,b\n1,2\n")
        self.put("root/exp/u.js", b"var u = 1;\n")
        self.put("root/exp/old.txt", b"old file\n", mtime=OLD_MTIME)
        self.put("root/exp/none.txt", b"no expires rule\n")
        css = b"/* page */ .a { color: red; }\n" * 40
        self.put("root/gz/page.css", css)
        self.put("root/gz/page.css.gz", gzip.compress(css, mtime=0))
        self.put("root/gz/page.css.br", b"BROTLI-STAND-IN:" + hashlib.sha256(css).digest())
        js = b"function f() { return 42; }\n" * 30
        self.put("root/gz/onlygz.js", js)
        self.put("root/gz/onlygz.js.gz", gzip.compress(js, mtime=0))
        self.put("root/gz/plain.txt", b"no precompressed sibling\n")
        self.put("root/gzext/x.css", css)
        self.put("root/gzext/x.css.gz", gzip.compress(css, mtime=0))
        self.put("root/gzext/y.js", js)
        self.put("root/gzext/y.js.gz", gzip.compress(js, mtime=0))
        self.put("root2/only2.txt", b"from the second map\n")
        self.put("root2/a.txt", b"the first map's a.txt wins\n")
        self.put("m2root/m2/x.txt", b"static-map2 keeps the prefix\n")
        self.put("docroot/robots.txt", b"User-agent: *\nDisallow:\n")
        self.put("fav.ico", b"\x00\x00\x01\x00fake icon")
        big = bytearray()
        for i in range(BIG_SIZE // 65536):
            big += hashlib.sha256(str(i).encode()).digest() * 2048
        self.put("root/big.bin", bytes(big))
        # symlinks: inside -> inside (relative and absolute), inside -> outside, under static-safe
        os.symlink("a.txt", r / "link_in")
        os.symlink(str(r / "a.txt"), r / "link_abs_in")
        os.symlink("sub", r / "linkdir_in")
        os.symlink("../secret.txt", r / "link_out")
        os.symlink(str(b / "secret.txt"), r / "link_abs_out")
        os.symlink("../outside", r / "linkdir_out")
        os.symlink("../safe/ok.txt", r / "link_safe")
        os.symlink("../safe", r / "linkdir_safe")
        os.symlink("/etc/passwd", r / "link_passwd")
        os.symlink("../root/a.txt", r / "link_roundtrip")  # leaves the root and comes back in
        os.symlink("loop_b", r / "loop_a")  # ELOOP
        os.symlink("loop_a", r / "loop_b")
        os.mkfifo(r / "fifo")
        us = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a socket file: not served
        us.bind(str(r / "sock"))
        us.close()
        self.put("root/unreadable.txt", b"nobody may read this\n")
        os.chmod(r / "unreadable.txt", 0)
        for d, _dirs, _files in os.walk(b):
            os.chmod(d, 0o755)
        return self


@pytest.fixture(scope="module")
def tree() -> Tree:
    base = Path(tempfile.mkdtemp(prefix="upystatic-", dir="/tmp"))
    t = Tree(base).build()
    yield t
    shutil.rmtree(base, ignore_errors=True)


def main_ini(t: Tree, extra: str = "") -> str:
    """Server A: every mapping rule and option at once."""
    b = t.base
    return f"""[uwsgi]
http-socket = 127.0.0.1:0
socket = 127.0.0.1:0
wsgi-file = {STATIC_APP}
static-map = /static={b}/root
static-map = /static={b}/root2
static-map2 = /m2={b}/m2root
static-map = /favicon.ico={b}/fav.ico
check-static = {b}/docroot
static-index = default.html
static-index = index.html
static-skip-ext = .php
static-safe = {b}/safe
static-expires = /exp/a\\.css$ 3600
static-expires-mtime = /exp/old\\.txt$ 86400
static-expires-uri = ^/static/exp/u\\.js$ 1800
static-expires-type = text/csv=7200
{extra}"""


@pytest.fixture(scope="module")
def srv(module_server_factory, tree, tmp_path_factory):
    ini = tmp_path_factory.mktemp("static_ini") / "main.ini"
    ini.write_text(main_ini(tree))
    return module_server_factory(str(ini))


@pytest.fixture(scope="module")
def srv_gz(module_server_factory, tree):
    """Server B: static-gzip-all, no static-index."""
    return module_server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP,
                                 "--static-map", f"/static={tree.root}", "--static-gzip-all")


# ----------------------------------------------------------------------------------------------
# nginx with our own config
# ----------------------------------------------------------------------------------------------

class ConfNginx(NginxProcess):
    """nginx running a server block written by the test ({port} is replaced by the listen port,
    {dir} by nginx's working directory, which holds uwsgi_params)."""

    def __init__(self, binary: str, server_conf: str, workdir):
        super().__init__(binary, "<test>", "", workdir)
        self.server_conf = server_conf

    def _write_conf(self) -> None:
        params = Path("/etc/nginx/uwsgi_params")
        (self.dir / "uwsgi_params").write_text(params.read_text() if params.exists() else FALLBACK_UWSGI_PARAMS)
        (self.dir / "server.conf").write_text(self.server_conf.replace("{port}", str(self.port))
                                              .replace("{dir}", str(self.dir)))
        user = "user root;\n" if os.geteuid() == 0 else ""
        (self.dir / "nginx.conf").write_text(NGINX_WRAPPER.format(user=user, tmp=self.dir))


@pytest.fixture(scope="module")
def conf_nginx(nginx_bin, tmp_path_factory):
    started: List[ConfNginx] = []

    def start(server_conf: str) -> ConfNginx:
        n = ConfNginx(nginx_bin, server_conf, tmp_path_factory.mktemp("confnginx"))
        started.append(n)
        return n.start()

    yield start
    for n in started:
        n.stop()


# The types and charsets nginx is given are the ones our mime table produces for these files
# (system mime.types, "; charset=utf-8" added to text types).
NGINX_STATIC_CONF = """
server {
    listen 127.0.0.1:{port};
    server_tokens off;
    etag on;
    # nginx's default ("exact") answers 304 only for a date equal to Last-Modified; ours is
    # RFC 9110 §13.1.3's "has not been modified since": 304 for a date >= Last-Modified.
    if_modified_since before;
    charset utf-8;
    charset_types text/plain text/css text/html text/javascript;
    types {
        text/plain txt;
        text/css css;
        text/html html;
        text/javascript js;
    }
    default_type application/octet-stream;
    location /static/ {
        alias ROOT/;
    }
}
"""


@pytest.fixture(scope="module")
def nginx_static(conf_nginx, tree):
    return conf_nginx(NGINX_STATIC_CONF.replace("ROOT", str(tree.root)))


@pytest.fixture(scope="module")
def nginx_uwsgi(conf_nginx, srv):
    host, port = srv.uwsgi_addr
    return conf_nginx("""
server {
    listen 127.0.0.1:{port};
    server_tokens off;
    merge_slashes off;   # let '//' reach the server as sent (nginx merges them by default)
    location / {
        include {dir}/uwsgi_params;
        uwsgi_pass %s:%d;
    }
}
""" % (host, port))


# ----------------------------------------------------------------------------------------------
# small clients
# ----------------------------------------------------------------------------------------------

def get(addr, target: str, headers=(), method: str = "GET", body: bytes = b"", timeout: float = IO_TIMEOUT):
    return http_request(addr, method, target, headers=list(headers), body=body, timeout=timeout)


def raw_get(addr, target: bytes, timeout: float = 5.0) -> Tuple[Optional[object], bytes]:
    """A request whose target is sent byte for byte; returns (parsed response or None, raw)."""
    req = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with Conn(addr, timeout) as c:
        c.send(req, ignore_errors=True)
        c.wait_closed(timeout)
        raw = bytes(c.buf)
    try:
        resp = parse_response_bytes(raw) if raw.startswith(b"HTTP/") else None
    except (AssertionError, ValueError):
        resp = None
    return resp, raw


def is_app(resp) -> bool:
    return resp is not None and resp.status == 200 and resp.header("X-App") == "fallback"


def assert_no_leak(raw: bytes, what: str) -> None:
    assert SECRET not in raw, f"{what}: the secret file outside the root was served: {raw[:300]!r}"
    assert PASSWD_MARK not in raw, f"{what}: /etc/passwd was served: {raw[:300]!r}"


# ----------------------------------------------------------------------------------------------
# 1. conditional and range requests, compared with nginx serving the same directory
# ----------------------------------------------------------------------------------------------

def _cases(st: os.stat_result) -> List[Tuple[str, str, List[Tuple[str, str]], int]]:
    """(id, method, request headers, the status RFC 9110 / our spec gives) for a file."""
    lm = httpdate(st.st_mtime)
    earlier, later = httpdate(st.st_mtime - 3600), httpdate(st.st_mtime + 3600)
    rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(st.st_mtime))
    asctime = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(st.st_mtime))
    et = etag_of(st)
    size = st.st_size
    huge = "9" * 25  # past 2**64: must not wrap around
    cases = [
        ("get", "GET", [], 200),
        ("head", "HEAD", [], 200),
        ("inm-match", "GET", [("If-None-Match", et)], 304),
        ("inm-nomatch", "GET", [("If-None-Match", '"nope"')], 200),
        ("inm-weak", "GET", [("If-None-Match", "W/" + et)], 304),  # §13.1.2: weak comparison
        ("inm-list", "GET", [("If-None-Match", f'"a", {et}, "b"')], 304),
        ("inm-star", "GET", [("If-None-Match", "*")], 304),
        ("inm-list-nospace", "GET", [("If-None-Match", f'"a",{et}')], 304),
        ("inm-unquoted", "GET", [("If-None-Match", et.strip('"'))], 200),
        ("inm-match-head", "HEAD", [("If-None-Match", et)], 304),
        ("ims-equal", "GET", [("If-Modified-Since", lm)], 304),
        ("ims-later", "GET", [("If-Modified-Since", later)], 304),
        ("ims-earlier", "GET", [("If-Modified-Since", earlier)], 200),
        ("ims-garbage", "GET", [("If-Modified-Since", "not a date")], 200),
        ("ims-rfc850", "GET", [("If-Modified-Since", rfc850)], 304),  # §5.6.7 obsolete formats
        ("ims-asctime", "GET", [("If-Modified-Since", asctime)], 304),
        ("ims-far-future", "GET", [("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")], 304),
        ("ims-epoch", "GET", [("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")], 200),
        ("inm-nomatch+ims-equal", "GET", [("If-None-Match", '"nope"'), ("If-Modified-Since", lm)], 200),
        ("inm-match+ims-earlier", "GET", [("If-None-Match", et), ("If-Modified-Since", earlier)], 304),
        ("im-match", "GET", [("If-Match", et)], 200),
        ("im-nomatch", "GET", [("If-Match", '"nope"')], 412),
        ("im-star", "GET", [("If-Match", "*")], 200),
        ("im-weak", "GET", [("If-Match", "W/" + et)], 412),  # §13.1.1: strong comparison
        ("im-list", "GET", [("If-Match", f'"x", {et}')], 200),
        ("ius-equal", "GET", [("If-Unmodified-Since", lm)], 200),
        ("ius-later", "GET", [("If-Unmodified-Since", later)], 200),
        ("ius-earlier", "GET", [("If-Unmodified-Since", earlier)], 412),
        ("ius-garbage", "GET", [("If-Unmodified-Since", "garbage")], 200),
        ("im-match+ius-earlier", "GET", [("If-Match", et), ("If-Unmodified-Since", earlier)], 200),
        ("im-nomatch+inm-match", "GET", [("If-Match", '"nope"'), ("If-None-Match", et)], 412),
        ("range-a-b", "GET", [("Range", "bytes=0-9")], 206),
        ("range-mid", "GET", [("Range", f"bytes={size // 4}-{size // 2}")], 206),
        ("range-a-", "GET", [("Range", f"bytes={size // 2}-")], 206),
        ("range-suffix", "GET", [("Range", "bytes=-20")], 206),
        ("range-suffix-big", "GET", [("Range", f"bytes=-{size * 5}")], 206),
        ("range-b-past-end", "GET", [("Range", f"bytes={size - 5}-{size * 5}")], 206),
        ("range-whole", "GET", [("Range", f"bytes=0-{size - 1}")], 206),
        ("range-last-byte", "GET", [("Range", f"bytes={size - 1}-")], 206),
        ("range-a-at-end", "GET", [("Range", f"bytes={size}-")], 416),
        ("range-a-past-end", "GET", [("Range", f"bytes={size * 5}-{size * 6}")], 416),
        ("range-zero-suffix", "GET", [("Range", "bytes=-0")], 416),
        ("range-first-byte", "GET", [("Range", "bytes=0-0")], 206),
        ("range-leading-zeros", "GET", [("Range", "bytes=000-009")], 206),
        ("range-huge-last", "GET", [("Range", f"bytes=0-{huge}")], 206),
        ("range-huge-first", "GET", [("Range", f"bytes={huge}-")], 416),
        ("range-huge-suffix", "GET", [("Range", f"bytes=-{huge}")], 206),
        ("range-malformed", "GET", [("Range", "bytes=abc")], 200),
        ("range-negative", "GET", [("Range", "bytes=-5-9")], 200),
        ("range-empty-set", "GET", [("Range", "bytes=")], 200),
        ("range-other-unit", "GET", [("Range", "items=0-5")], 200),
        ("range-last-before-first", "GET", [("Range", "bytes=5-2")], 416),  # as nginx
        ("range-two", "GET", [("Range", "bytes=0-1,5-6")], 200),
        ("range-head", "HEAD", [("Range", "bytes=0-9")], 200),
        ("range+inm-match", "GET", [("Range", "bytes=0-9"), ("If-None-Match", et)], 304),
        ("if-range-etag", "GET", [("Range", "bytes=0-9"), ("If-Range", et)], 206),
        ("if-range-stale-etag", "GET", [("Range", "bytes=0-9"), ("If-Range", '"stale"')], 200),
        ("if-range-weak-etag", "GET", [("Range", "bytes=0-9"), ("If-Range", "W/" + et)], 200),
        ("if-range-date", "GET", [("Range", "bytes=0-9"), ("If-Range", lm)], 206),
        ("if-range-other-date", "GET", [("Range", "bytes=0-9"), ("If-Range", earlier)], 200),
    ]
    if size == 0:  # an empty file: nginx ignores Range on it (200); see test_empty_file_range
        cases = [(c, m, h, want) for c, m, h, want in cases if not any(k == "Range" for k, _ in h)]
    return cases


# Deliberate status differences from nginx 1.22: case id -> (nginx's status, why we differ).
STATUS_DIFFERENCES = {
    "inm-match+ims-earlier": (200, "RFC 9110 §13.1.3: If-Modified-Since is ignored when the request "
                                   "has If-None-Match; nginx evaluates both and needs both to pass"),
    "ius-garbage": (412, "RFC 9110 §13.1.4: a recipient MUST ignore an If-Unmodified-Since that is "
                         "not a valid HTTP-date; nginx answers 412"),
    "im-match+ius-earlier": (412, "RFC 9110 §13.2.2 step 2: If-Unmodified-Since is evaluated only "
                                  "without If-Match; nginx evaluates both"),
    "range-malformed": (416, "RFC 9110 §14.2: a Range field that does not parse is ignored (200); "
                             "nginx answers 416 to 'bytes=abc'"),
    "range-huge-last": (416, "RFC 9110 §14.1.2: a last-pos past the end is clipped to the size (206); "
                             "nginx answers 416 when the number overflows its off_t"),
    "range-huge-suffix": (416, "RFC 9110 §14.1.2: a suffix longer than the file selects the whole file "
                               "(206); nginx answers 416 when the number overflows"),
    "range-negative": (416, "'bytes=-5-9' does not parse as a range-set, so Range is ignored (200); "
                            "nginx answers 416"),
    "range-two": (206, "several ranges: multipart/byteranges is not implemented (the issue makes it "
                       "optional), the whole file is sent with 200; nginx sends a multipart 206"),
    "range-head": (206, "RFC 9110 §14.2: range handling is defined for GET only and a server MUST "
                        "ignore Range on other methods; nginx sends the 206 head to HEAD"),
}

# The entity headers compared, and when each is compared.
ENTITY = ("Content-Length", "Content-Range", "ETag", "Last-Modified", "Content-Type", "Accept-Ranges")
# Deliberate header differences: (status, header) -> why we differ from nginx.  412 and 416 are
# error pages: nginx's body is its own HTML page (text/html, its own length); ours is our own
# error body, so only Content-Range (416) is compared there.
HEADER_DIFFERENCES = {
    (412, "Content-Length"): "error body: nginx's HTML page",
    (412, "Content-Type"): "error body: nginx's HTML page",
    (416, "Content-Length"): "error body: nginx's HTML page",
    (416, "Content-Type"): "error body: nginx's HTML page",
    # RFC 9110 §14.3: a server MAY send Accept-Ranges in any response; we send it on 206 too,
    # nginx only on 200
    (206, "Accept-Ranges"): "we also send Accept-Ranges: bytes on a 206",
}

TABLE_FILES = ["a.txt", "b.bin", "style.css", "noext", "empty.txt"]
CONTENT_TYPES = {"a.txt": "text/plain; charset=utf-8", "b.bin": "application/octet-stream",
                 "empty.txt": "text/plain; charset=utf-8",
                 "style.css": "text/css; charset=utf-8", "noext": "application/octet-stream"}


def _exchange(addr, method: str, target: str, headers) -> "object":
    with Conn(addr, 5.0) as c:
        c.send(build_request(method, target, [*headers, ("Connection", "close")]))
        return c.read_response(method)


def _expected_body(data: bytes, resp) -> Optional[bytes]:
    """What the body must be given the status (independently of nginx)."""
    if resp.status == 200:
        return data
    if resp.status == 206:
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", resp.header("Content-Range") or "")
        assert m, f"206 without a valid Content-Range: {resp!r}"
        a, b, size = map(int, m.groups())
        assert size == len(data) and 0 <= a <= b < size
        return data[a:b + 1]
    return None


@pytest.mark.parametrize("name", TABLE_FILES)
def test_conditional_and_range_table_against_nginx(srv, nginx_static, tree, name):
    data = tree.data(f"root/{name}")
    st = os.stat(tree.root / name)
    failures = []
    for case, method, headers, want in _cases(st):
        ours = _exchange(srv.http_addr, method, f"/static/{name}", headers)
        ngx = _exchange(nginx_static.addr, method, f"/static/{name}", headers)
        where = f"{name} [{case}] {method} {headers}"
        if case in STATUS_DIFFERENCES:
            ngx_want, _why = STATUS_DIFFERENCES[case]
            if ngx.status != ngx_want:
                failures.append(f"{where}: nginx answered {ngx.status}, the table says {ngx_want}")
        else:
            ngx_want = want
            if ngx.status != want:
                failures.append(f"{where}: nginx answered {ngx.status}, expected {want}: fix the table")
        if ours.status != want:
            failures.append(f"{where}: status {ours.status}, expected {want} (nginx {ngx.status})\n  {ours!r}")
            continue
        if ours.header("Date") is None:
            failures.append(f"{where}: no Date")
        if ours.status == ngx.status:
            for h in ENTITY:
                if (ours.status, h) in HEADER_DIFFERENCES:
                    continue
                if ours.header(h) != ngx.header(h):
                    failures.append(f"{where}: {h}: ours {ours.header(h)!r}, nginx {ngx.header(h)!r}")
        # independent of nginx: the values the file's stat gives
        if ours.status in (200, 206, 304):
            if ours.header("ETag") != etag_of(st):
                failures.append(f"{where}: ETag {ours.header('ETag')!r}, expected {etag_of(st)!r}")
            if ours.header("Last-Modified") != httpdate(st.st_mtime):
                failures.append(f"{where}: Last-Modified {ours.header('Last-Modified')!r}")
        if ours.status in (200, 206) and ours.header("Content-Type") != CONTENT_TYPES[name]:
            failures.append(f"{where}: Content-Type {ours.header('Content-Type')!r}, expected {CONTENT_TYPES[name]!r}")
        if ours.status == 416 and ours.header("Content-Range") != f"bytes */{st.st_size}":
            failures.append(f"{where}: 416 Content-Range {ours.header('Content-Range')!r}")
        if method == "HEAD" or ours.status == 304:
            if ours.status == 200 and ours.header("Content-Length") != str(len(data)):
                failures.append(f"{where}: HEAD Content-Length {ours.header('Content-Length')!r}")
            continue
        body = _expected_body(data, ours)
        if body is not None:
            if ours.body != body:
                failures.append(f"{where}: body of {len(ours.body)} bytes differs from the file's")
            if ours.status == ngx.status and ours.body != ngx.body:
                failures.append(f"{where}: body differs from nginx's")
            if ours.header("Content-Length") != str(len(body)):
                failures.append(f"{where}: Content-Length {ours.header('Content-Length')!r} for {len(body)} bytes")
    assert not failures, "\n".join(failures)


def test_304_and_206_heads(srv, tree):
    """What a 304 and a 206 carry beyond the table (RFC 9110 §15.4.5, §15.3.7): no body; the
    304 keeps the validators."""
    st = os.stat(tree.root / "a.txt")
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/static/a.txt", [("If-None-Match", etag_of(st))]))
        r = c.read_response()
        assert r.status == 304 and r.body == b""
        assert r.header("ETag") == etag_of(st) and r.header("Last-Modified") == httpdate(st.st_mtime)
        # the connection is still usable: nothing was sent after the 304 head
        c.send(build_request("GET", "/static/a.txt", [("Range", "bytes=-5")]))
        r = c.read_response()
        assert (r.status, r.body, r.header("Content-Range")) == (206, TEXT[-5:], "bytes 945-949/950")


def test_empty_file_range(srv):
    """A zero-length file has no satisfiable byte range but a suffix (RFC 9110 §14.1.1): 416, or
    Range ignored (200, what nginx does); never a 206 with a bogus Content-Range."""
    for rng in ("bytes=0-", "bytes=0-9", "bytes=-5"):
        r = get(srv.http_addr, "/static/empty.txt", [("Range", rng)])
        assert r.status in (200, 416), (rng, r)
        if r.status == 200:
            assert r.body == b"" and r.header("Content-Length") == "0"
        else:
            assert r.header("Content-Range") == "bytes */0"


# ----------------------------------------------------------------------------------------------
# 2. traversal: hostile paths over HTTP, raw uwsgi, and uwsgi through nginx
# ----------------------------------------------------------------------------------------------

FILE, APP, REFUSED, BAD, ANY_SAFE = "file", "app", "refused", "bad", "any"

# (request target as sent, expectation, file (relative to base) for FILE).  The rule (LEAD's
# notes, ARCHITECTURE.md): the decoded path loses its dot-segments first (RFC 3986 §5.2.4, as
# nginx does before matching a location), so "/static/../x" is "/x" and goes wherever "/x"
# goes (here: no map has it, the app answers, PATH_INFO untouched).
# REFUSED: 403 (a symlink whose target leaves the root and every static-safe dir).
# BAD: 400 (a decoded NUL, or a ".." that climbs above "/", in a path under a map: with
# check-static, every path).  APP: the app answers (the file does not exist as named: a
# backslash, an overlong UTF-8 sequence are name bytes on Linux, never separators).
# ANY_SAFE: any answer that serves nothing from outside (the path is not ours to judge).
TRAVERSAL: List[Tuple[bytes, str, Optional[str]]] = [
    (b"/static/a.txt", FILE, "root/a.txt"),
    (b"/static/../secret.txt", APP, None),  # is "/secret.txt": no map has it
    (b"/static/..", APP, None),  # is "/": a directory without index
    (b"/static/sub/../a.txt", FILE, "root/a.txt"),
    (b"/static/sub/../../secret.txt", APP, None),
    (b"/static/%2e%2e/secret.txt", APP, None),
    (b"/static/%2E%2e/secret.txt", APP, None),
    (b"/static/%2E%2e%2fsecret.txt", APP, None),
    (b"/static/..%2fsecret.txt", APP, None),
    (b"/static/..%2Foutside/secret2.txt", APP, None),  # "/outside/...": no map
    (b"/static/sub/%2e%2e/%2e%2e/secret.txt", APP, None),
    (b"/static/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", BAD, None),  # above "/"
    (b"/static/" + b"../" * 1000 + b"secret.txt", BAD, None),
    (b"/static/sub%2finner.txt", FILE, "root/sub/inner.txt"),
    (b"/static//a.txt", FILE, "root/a.txt"),
    (b"/static///sub//inner.txt", FILE, "root/sub/inner.txt"),
    (b"/static/./a.txt", FILE, "root/a.txt"),
    (b"/static/sub/./inner.txt", FILE, "root/sub/inner.txt"),
    (b"/static/%2e/a.txt", FILE, "root/a.txt"),
    (b"/static/%2fetc%2fpasswd", APP, None),  # "//etc/passwd" beneath the root: no such file
    (b"/static//etc/passwd", APP, None),
    (b"/static/..\\secret.txt", APP, None),
    (b"/static/..%5csecret.txt", APP, None),
    (b"/static/..%5c..%5csecret.txt", APP, None),
    (b"/static/back\\slash.txt", FILE, "root/back\\slash.txt"),
    (b"/static/back%5cslash.txt", FILE, "root/back\\slash.txt"),
    (b"/static/back%5Cslash.txt", FILE, "root/back\\slash.txt"),
    (b"/static/a.txt%00", BAD, None),
    (b"/static/a.txt%00.php", BAD, None),
    (b"/static/%00/../secret.txt", BAD, None),
    (b"/static/%c0%ae%c0%ae/secret.txt", APP, None),
    (b"/static/%c0%ae%c0%ae%c0%afsecret.txt", APP, None),
    (b"/static/%e0%80%ae%e0%80%ae/secret.txt", APP, None),
    (b"/static/%25%32%65%25%32%65/secret.txt", APP, None),  # double encoding: "%2e%2e" literally
    (b"/static/%2541.txt", FILE, "root/%41.txt"),
    (b"/static/caf%C3%A9.txt", FILE, "root/caf\u00e9.txt"),
    (b"/static/a.txt?../../secret.txt", FILE, "root/a.txt"),
    (b"/static%2Fa.txt", FILE, "root/a.txt"),  # the decoded path is "/static/a.txt"
    (b"/static/%zz", ANY_SAFE, None),  # not a percent-encoding: 400 or the app
    (b"/static/a.txt%", ANY_SAFE, None),
    (b"/static/a.txt%2", ANY_SAFE, None),
    (b"/static/" + b"x" * 300, APP, None),  # a component over NAME_MAX
    (b"/static/" + b"d/" * 2100 + b"x", ANY_SAFE, None),  # over PATH_MAX: the app, or 414
    (b"/staticx/a.txt", APP, None),  # a prefix matches at a segment boundary only
    (b"/static../secret.txt", ANY_SAFE, None),
    (b"/static", APP, None),  # the root itself: a directory without index.html
    (b"/static/", APP, None),
    (b"/static/link_in", FILE, "root/a.txt"),
    (b"/static/link_abs_in", FILE, "root/a.txt"),
    (b"/static/linkdir_in/inner.txt", FILE, "root/sub/inner.txt"),
    (b"/static/link_out", REFUSED, None),
    (b"/static/link_abs_out", REFUSED, None),
    (b"/static/linkdir_out/secret2.txt", REFUSED, None),
    (b"/static/link_passwd", REFUSED, None),
    (b"/static/link_roundtrip", FILE, "root/a.txt"),  # resolves inside: served (as uWSGI's realpath check)
    (b"/static/link_safe", FILE, "safe/ok.txt"),  # outside, but under static-safe
    (b"/static/linkdir_safe/ok.txt", FILE, "safe/ok.txt"),
    (b"/static/fifo", APP, None),  # only regular files; never a blocking open
    (b"/static/sock", APP, None),
    (b"/static/loop_a", ANY_SAFE, None),
    (b"/static/sub/", FILE, "root/sub/index.html"),
    (b"/static/sub", FILE, "root/sub/index.html"),
    (b"/static/noindex/", APP, None),
    (b"/static/noindex/x.txt", FILE, "root/noindex/x.txt"),
    (b"/static/a.txt/", APP, None),  # ENOTDIR: not a file
    (b"/static/a.txt/.", APP, None),
    (b"/static/sub/inner.txt/..", FILE, "root/sub/index.html"),  # is "/static/sub/"
    (b"/static/only2.txt", FILE, "root2/only2.txt"),  # a missing file tries the next map
    (b"/m2/x.txt", FILE, "m2root/m2/x.txt"),
    (b"/m2/../secret.txt", ANY_SAFE, None),
    (b"/m2/%2e%2e/%2e%2e/secret.txt", BAD, None),
    (b"/robots.txt", FILE, "docroot/robots.txt"),
    (b"/../secret.txt", BAD, None),  # with check-static every path is under a map
    (b"/%2e%2e/secret.txt", BAD, None),
    (b"/%2e%2e/outside/secret2.txt", BAD, None),
    (b"/favicon.ico", FILE, "fav.ico"),
    (b"/favicon.ico/../secret.txt", ANY_SAFE, None),
]
if os.geteuid() != 0:  # root reads anything (CAP_DAC_OVERRIDE): checked separately, as nobody
    TRAVERSAL.append((b"/static/unreadable.txt", REFUSED, None))

TRAVERSAL_IDS = [t[0].decode("latin-1")[:60] for t in TRAVERSAL]


def _check_traversal(resp, raw: bytes, target: bytes, expect: str, rel: Optional[str], tree: Tree,
                     via: str) -> Optional[str]:
    what = f"{via} {target[:120]!r}"
    try:
        assert_no_leak(raw, what)
    except AssertionError as e:
        return str(e)
    if resp is None:
        return f"{what}: no parsable response: {raw[:200]!r}"
    if resp.status >= 500:
        return f"{what}: {resp.status}: {resp!r}"
    if expect == FILE:
        if resp.status != 200 or resp.body != tree.data(rel) or resp.header("X-App"):
            return f"{what}: expected the bytes of {rel}, got {resp!r}"
    elif expect == APP:
        if not is_app(resp):
            return f"{what}: expected the app to answer, got {resp!r}"
    elif expect == REFUSED:
        if resp.status != 403:
            return f"{what}: expected 403, got {resp!r}"
    elif expect == BAD:
        if resp.status != 400:
            return f"{what}: expected 400, got {resp!r}"
    return None


def test_traversal_over_http(srv, tree):
    failures = []
    for target, expect, rel in TRAVERSAL:
        resp, raw = raw_get(srv.http_addr, target)
        err = _check_traversal(resp, raw, target, expect, rel, tree, "http")
        if err:
            failures.append(err)
    assert not failures, "\n".join(failures)
    assert srv.running


def _uwsgi_vars(path_info: bytes, uri: bytes) -> dict:
    return {"REQUEST_METHOD": "GET", "REQUEST_URI": uri, "PATH_INFO": path_info, "QUERY_STRING": b"",
            "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "HTTP_HOST": "localhost"}


def test_traversal_over_raw_uwsgi(srv, tree):
    """PATH_INFO as nginx sends it (percent-decoded) but not normalised: what a careless or
    hostile front end could send."""
    failures = []
    for target, expect, rel in TRAVERSAL:
        path = target.split(b"?", 1)[0]
        if len(path) > 60000:
            continue
        pinfo = unquote_to_bytes(path)
        resp, raw = uwsgi_exchange(srv.uwsgi_addr, encode_packet(_uwsgi_vars(pinfo, target)), timeout=5)
        err = _check_traversal(resp, raw, target, expect, rel, tree, "uwsgi")
        if err:
            failures.append(err)
    assert not failures, "\n".join(failures)


# What nginx does to the target before uwsgi_pass: it decodes and normalises (dot segments,
# not '//' here: merge_slashes off), answers some itself (400 for a path that climbs above
# '/', or a NUL).  So through nginx a REFUSED path may become a request for another path (the
# app answers it) or nginx's 400: either is fine as long as nothing outside the roots is sent.
def test_traversal_through_nginx_uwsgi(srv, nginx_uwsgi, tree):
    failures = []
    for target, expect, rel in TRAVERSAL:
        resp, raw = raw_get(nginx_uwsgi.addr, target)
        if expect in (REFUSED, BAD):
            expect = ANY_SAFE
        err = _check_traversal(resp, raw, target, expect, rel, tree, "nginx-uwsgi")
        if err and resp is not None and resp.status in (400, 414) and expect != FILE:
            err = None
        if err:
            failures.append(err)
    assert not failures, "\n".join(failures)


# Pieces of hostile paths, combined at random (seeded: the same 150 paths every run).
_PIECES = ["..", ".", "%2e%2e", "%2E%2E", ".%2e", "%2e", "%2f", "%2F", "", "sub", "a.txt", "link_out", "linkdir_out",
           "link_safe", "outside", "secret.txt", "safe", "%5c", "\\", "%c0%ae", "%00", "fifo", "noindex", "m2",
           "static", "root", "%25", "x" * 40]


def _random_targets(n: int, seed: int = 9) -> List[bytes]:
    import random
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        head = rnd.choice(["/static/", "/m2/", "/", "/favicon.ico/", "/static/sub/"])
        parts = [rnd.choice(_PIECES) for _ in range(rnd.randint(1, 7))]
        out.append((head + "/".join(parts)).encode("latin-1"))
    return out


def test_random_hostile_paths(srv, tree):
    """150 random combinations over HTTP and raw uwsgi: whatever the answer, no byte from
    outside the roots (every 200 that is not the app's is one of the files under a root or
    static-safe), never a 5xx, and the server lives on."""
    allowed = {data for rel, data in tree.files.items()
               if rel.split("/")[0] in ("root", "root2", "m2root", "docroot", "safe") or rel == "fav.ico"}
    failures = []
    for target in _random_targets(150):
        for via in ("http", "uwsgi"):
            if via == "http":
                resp, raw = raw_get(srv.http_addr, target)
            else:
                pinfo = unquote_to_bytes(target)
                resp, raw = uwsgi_exchange(srv.uwsgi_addr, encode_packet(_uwsgi_vars(pinfo, target)), timeout=5)
            what = f"{via} {target!r}"
            if SECRET in raw or PASSWD_MARK in raw:
                failures.append(f"{what}: LEAK {raw[:200]!r}")
            elif resp is None:
                failures.append(f"{what}: no response {raw[:100]!r}")
            elif resp.status >= 500:
                failures.append(f"{what}: {resp.status}")
            elif resp.status == 200 and not is_app(resp) and resp.body not in allowed:
                failures.append(f"{what}: 200 with bytes that are no file under a root: {resp.body[:80]!r}")
    assert not failures, "\n".join(failures[:40])
    assert get(srv.http_addr, "/static/a.txt").body == TEXT


def test_static_through_nginx_uwsgi(srv, nginx_uwsgi, tree):
    """Files served over the uwsgi protocol behind nginx: the big file intact, a Range, a 304,
    HEAD, and 405 (nginx passes them all through)."""
    base = "http://%s:%d" % nginx_uwsgi.addr
    st = os.stat(tree.root / "a.txt")
    with requests.Session() as s:
        r = s.get(base + "/static/big.bin", timeout=30)
        assert r.status_code == 200 and hashlib.sha256(r.content).digest() == \
            hashlib.sha256(tree.data("root/big.bin")).digest()
        r = s.get(base + "/static/a.txt", headers={"Range": "bytes=5-9"}, timeout=10)
        assert r.status_code == 206 and r.content == TEXT[5:10] and r.headers["Content-Range"] == "bytes 5-9/950"
        r = s.get(base + "/static/a.txt", headers={"If-None-Match": etag_of(st)}, timeout=10)
        assert r.status_code == 304 and r.headers["ETag"] == etag_of(st)
        r = s.head(base + "/static/a.txt", timeout=10)
        assert r.status_code == 200 and r.headers["Content-Length"] == "950"
        r = s.post(base + "/static/a.txt", data=b"x", timeout=10)
        assert r.status_code == 405 and r.headers["Allow"].replace(" ", "") == "GET,HEAD"
        r = s.get(base + "/static/missing.css", timeout=10)
        assert r.status_code == 200 and r.headers.get("X-App") == "fallback"


def test_stop_is_prompt_after_a_static_400_over_uwsgi(server_factory, tree):
    """A 400 for a static path (a NUL, a '..' above '/') closes the connection; once the client
    has closed too, nothing is left to wait for: SIGTERM ends the server at once (a lingering
    close must end when the peer closes, not only on its 2 s timer)."""
    s = server_factory("--socket", "127.0.0.1:0", "--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP,
                       "--static-map", f"/static={tree.root}")
    for pinfo in (b"/static/a.txt\x00", b"/static/../../secret.txt"):
        resp, raw = uwsgi_exchange(s.uwsgi_addr, encode_packet(_uwsgi_vars(pinfo, pinfo)), timeout=5)
        assert resp is not None and resp.status == 400, raw[:200]
    t0 = time.monotonic()
    assert s.stop() == 0
    assert time.monotonic() - t0 < 1.0, f"the stop took {time.monotonic() - t0:.2f} s"


def test_symlinks_and_the_400_scope_without_static_safe(server_factory, tree):
    """Without static-safe (the main fixture has one, which sends every symlink through the
    realpath check): an absolute symlink to a file inside the root is served (openat2's
    RESOLVE_BENEATH refuses every absolute link, so realpath must decide, as in uWSGI); one
    that leaves the root, or points into what would be a static-safe dir, is 403.  The 400 for
    '..' above '/' applies under a map's prefix at a segment boundary: /staticx/... is the app's."""
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP,
                       "--static-map", f"/static={tree.root}")
    for target, status, body in ((b"/static/link_abs_in", 200, TEXT), (b"/static/link_in", 200, TEXT),
                                 (b"/static/link_roundtrip", 200, TEXT),
                                 (b"/static/link_abs_out", 403, None), (b"/static/link_out", 403, None),
                                 (b"/static/link_safe", 403, None), (b"/static/link_passwd", 403, None)):
        resp, raw = raw_get(s.http_addr, target)
        assert resp is not None and resp.status == status and not is_app(resp), (target, raw[:300])
        assert_no_leak(raw, target)
        if body is not None:
            assert resp.body == body, target
    for target in (b"/staticx/%2e%2e/%2e%2e/secret.txt", b"/other/%2e%2e/%2e%2e/secret.txt"):
        resp, raw = raw_get(s.http_addr, target)
        assert resp is not None and resp.status == 200 and is_app(resp), (target, raw[:300])
    resp, raw = raw_get(s.http_addr, b"/static/%2e%2e/%2e%2e/secret.txt")
    assert resp is not None and resp.status == 400, raw[:300]


def test_fifo_does_not_block_the_loop(srv):
    """A FIFO in the root is opened O_NONBLOCK and refused: the app answers at once, and the
    server keeps serving (a blocking open would hang the loop until a writer appears)."""
    t0 = time.monotonic()
    r = get(srv.http_addr, "/static/fifo", timeout=5)
    assert is_app(r) and json.loads(r.body)["path_info"] == "/static/fifo", r
    assert time.monotonic() - t0 < 3
    r = get(srv.http_addr, "/static/a.txt", timeout=5)
    assert r.status == 200 and r.body == TEXT


def test_dot_segments_above_the_root_without_check_static(srv_gz):
    """Without check-static, a ".." above "/" is 400 only in a path under a map's prefix;
    elsewhere the app gets the request as it came (LEAD's rule, ARCHITECTURE.md)."""
    for target in (b"/static/../../secret.txt", b"/static/%2e%2e/%2e%2e/secret.txt", b"/static/a.txt%00"):
        resp, raw = raw_get(srv_gz.http_addr, target)
        assert_no_leak(raw, repr(target))
        assert resp is not None and resp.status == 400, (target, raw[:300])
    for target in (b"/../secret.txt", b"/x/%2e%2e/%2e%2e/secret.txt"):
        resp, raw = raw_get(srv_gz.http_addr, target)
        assert_no_leak(raw, repr(target))
        assert is_app(resp), (target, raw[:300])
    resp, raw = raw_get(srv_gz.http_addr, b"/static/x/../a.txt")
    assert resp.status == 200 and resp.body == TEXT


def test_directory_without_static_index_goes_to_the_app(srv_gz):
    for target in ("/static/sub/", "/static/sub", "/static/"):
        r = get(srv_gz.http_addr, target)
        assert is_app(r), (target, r)


def test_unreadable_file_is_403(tree, tmp_path):
    """EACCES -> 403.  Root reads anything, so when the tests run as root the server drops to
    nobody first (uid / gid options) and the file is mode 000 either way."""
    args = ["--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP, "--static-map", f"/static={tree.root}"]
    if os.geteuid() == 0:
        import grp
        import pwd
        try:
            nobody = pwd.getpwnam("nobody")
            group = grp.getgrgid(nobody.pw_gid).gr_name
        except KeyError:
            pytest.skip("running as root and there is no 'nobody' user to drop to")
        args += ["--uid", "nobody", "--gid", group]
    s = ServerProcess(args).start(wait_ready=False)
    try:
        s.wait_ready()
    except AssertionError:
        s.stop()
        if os.geteuid() == 0 and "Permission denied" in s.output():
            pytest.skip("the server cannot run as nobody here (Python installed where nobody "
                        f"cannot read?):\n{s.output()[-2000:]}")
        raise
    try:
        r = get(s.http_addr, "/static/unreadable.txt")
        assert r.status == 403 and b"nobody may read this" not in r.raw_head + r.body, r
        r = get(s.http_addr, "/static/a.txt")
        assert r.status == 200 and r.body == TEXT
    finally:
        assert s.stop() == 0, s.output()


# ----------------------------------------------------------------------------------------------
# 3. behaviour
# ----------------------------------------------------------------------------------------------

def test_get_and_head(srv, tree):
    st = os.stat(tree.root / "a.txt")
    r = get(srv.http_addr, "/static/a.txt")
    assert r.status == 200 and r.body == TEXT and r.framing == "length"
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert r.header("Accept-Ranges") == "bytes" and r.header("ETag") == etag_of(st)
    assert r.header("X-App") is None
    h = get(srv.http_addr, "/static/a.txt", method="HEAD")
    assert h.status == 200 and h.body == b""
    for name in ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Accept-Ranges"):
        assert h.header(name) == r.header(name), name
    # an absolute-form target (RFC 9112 §3.2.2) names the same file
    with Conn(srv.http_addr) as c:
        c.send(b"GET http://127.0.0.1/static/a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert c.read_response().body == TEXT
    # Content-Type by the lowercased extension (brief item 6)
    assert get(srv.http_addr, "/static/UPPER.TXT").header("Content-Type") == "text/plain; charset=utf-8"
    assert get(srv.http_addr, "/static/app.js").header("Content-Type").split(";")[0] in (
        "text/javascript", "application/javascript")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_on_a_file_are_405(srv, method):
    body = b"x=1" if method in ("POST", "PUT", "PATCH") else b""
    with Conn(srv.http_addr) as c:
        c.send(build_request(method, "/static/a.txt", body=body, content_length=True))
        r = c.read_response(method)
        assert r.status == 405, r
        assert [v.replace(" ", "") for v in r.header_all("Allow")] == ["GET,HEAD"], r
        assert r.header("X-App") is None
        # the connection survives (keep-alive, as for app responses)
        c.send(build_request("GET", "/static/style.css"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"body { color: #123456; }\n"
    # a method on a path that is not a file goes to the app
    r = get(srv.http_addr, "/static/missing.txt", method=method, body=body)
    assert is_app(r) and json.loads(r.body)["method"] == method


def test_missing_file_falls_through_to_the_app(srv):
    r = get(srv.http_addr, "/static/no/such/file.css?q=1")
    assert is_app(r)
    doc = json.loads(r.body)
    assert doc["path_info"] == "/static/no/such/file.css" and doc["request_uri"] == "/static/no/such/file.css?q=1"
    assert doc["script_name"] == ""


def test_mapping_rules(srv, tree):
    # two maps on one prefix: the first whose file exists serves
    assert get(srv.http_addr, "/static/a.txt").body == TEXT
    assert get(srv.http_addr, "/static/only2.txt").body == tree.data("root2/only2.txt")
    # static-map2 keeps the prefix: /m2/x.txt is <m2root>/m2/x.txt
    assert get(srv.http_addr, "/m2/x.txt").body == tree.data("m2root/m2/x.txt")
    assert is_app(get(srv.http_addr, "/m2/m2/x.txt"))
    # check-static: docroot + the whole path
    r = get(srv.http_addr, "/robots.txt")
    assert r.status == 200 and r.body == tree.data("docroot/robots.txt")
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    # a map to a file serves it for exactly the prefix
    r = get(srv.http_addr, "/favicon.ico")
    assert r.status == 200 and r.body == tree.data("fav.ico") and r.header("Content-Type") in (
        "image/vnd.microsoft.icon", "image/x-icon")
    assert is_app(get(srv.http_addr, "/favicon.icox"))
    assert is_app(get(srv.http_addr, "/favicon.ico/x"))
    assert is_app(get(srv.http_addr, "/favicon.ico/"))
    r = get(srv.http_addr, "/favicon.ico?v=3", [("If-None-Match", etag_of(os.stat(tree.base / "fav.ico")))])
    assert r.status == 304
    # a prefix matches at a segment boundary: "/static" is not "/staticx"
    assert is_app(get(srv.http_addr, "/staticx/a.txt"))


def test_static_index(srv, tree):
    for target in ("/static/sub/", "/static/sub"):
        r = get(srv.http_addr, target)
        assert r.status == 200 and r.body == tree.data("root/sub/index.html"), (target, r)
        assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert is_app(get(srv.http_addr, "/static/noindex/"))
    # several static-index names: the first that exists, in order
    r = get(srv.http_addr, "/static/both/")
    assert r.body == tree.data("root/both/default.html")


def test_mimefile(server_factory, tree, tmp_path):
    """mimefile replaces the default table file (/etc/mime.types); extensions it does not name
    come from Python's mimetypes table (WIRING9.md); an unknown extension gets default_type."""
    types = tmp_path / "my.types"
    types.write_text("# a comment\napplication/x-uwsgipy-custom   cust\ntext/x-plain-override  txt\n")
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP, "--static-map", f"/static={tree.root}",
                       "--mimefile", str(types))
    assert get(s.http_addr, "/static/types/x.cust").header("Content-Type") == "application/x-uwsgipy-custom"
    assert get(s.http_addr, "/static/a.txt").header("Content-Type") == "text/x-plain-override; charset=utf-8"
    assert get(s.http_addr, "/static/style.css").header("Content-Type") == "text/css; charset=utf-8"
    assert get(s.http_addr, "/static/noext").header("Content-Type") == "application/octet-stream"


def test_static_skip_ext(srv):
    r = get(srv.http_addr, "/static/skip.php")
    assert is_app(r) and b"source must not leak" not in r.body


def _expires_of(r) -> float:
    e = r.header("Expires")
    assert e, r
    return email.utils.parsedate_to_datetime(e).timestamp()


def _max_age(r) -> int:
    cc = r.header("Cache-Control") or ""
    m = re.search(r"max-age=(\d+)", cc)
    assert m, f"no max-age in Cache-Control {cc!r}"
    return int(m.group(1))


def test_static_expires(srv, tree):
    now = time.time()
    r = get(srv.http_addr, "/static/exp/a.css")  # static-expires: regexp on the file name
    assert r.status == 200 and abs(_expires_of(r) - (now + 3600)) < 5 and _max_age(r) == 3600
    r = get(srv.http_addr, "/static/exp/u.js")  # static-expires-uri
    assert abs(_expires_of(r) - (now + 1800)) < 5 and _max_age(r) == 1800
    r = get(srv.http_addr, "/static/exp/b.csv")  # static-expires-type
    assert r.header("Content-Type").split(";")[0] == "text/csv"
    assert abs(_expires_of(r) - (now + 7200)) < 5 and _max_age(r) == 7200
    r = get(srv.http_addr, "/static/exp/old.txt")  # static-expires-mtime: mtime + 86400
    assert r.header("Expires") == httpdate(OLD_MTIME + 86400), r
    assert r.header("Cache-Control") is not None
    r = get(srv.http_addr, "/static/exp/none.txt")
    assert r.header("Expires") is None and r.header("Cache-Control") is None
    # a 304 keeps Expires and Cache-Control (RFC 9110 §15.4.5)
    st = os.stat(tree.root / "exp/a.css")
    r = get(srv.http_addr, "/static/exp/a.css", [("If-None-Match", etag_of(st))])
    assert r.status == 304 and r.header("Expires") and _max_age(r) == 3600


GZ_CASES = [
    # (file, Accept-Encoding or None, served sibling suffix, Content-Encoding)
    ("page.css", "gzip", ".gz", "gzip"),
    ("page.css", "br", ".br", "br"),
    ("page.css", "gzip, deflate, br", ".br", "br"),
    ("page.css", "br;q=0, gzip", ".gz", "gzip"),
    ("page.css", "gzip;q=0", "", None),
    ("page.css", "gzip;q=0, br;q=0", "", None),
    ("page.css", "identity", "", None),
    ("page.css", None, "", None),
    ("page.css", "GZIP", ".gz", "gzip"),  # content-codings are case-insensitive (§8.4.1)
    ("onlygz.js", "br", "", None),
    ("onlygz.js", "br, gzip", ".gz", "gzip"),
    ("plain.txt", "gzip, br", "", None),
    ("page.css", "gzip; q=0", "", None),  # OWS around ';' (§5.6.6)
    ("page.css", "br;q=0.0, gzip;q=0.000", "", None),
    ("page.css", "br;q=0.001", ".br", "br"),
    ("page.css", "xgzip, brotli", "", None),  # tokens, not substrings
    ("page.css", "deflate", "", None),
    ("page.css.gz", "gzip, br", "", None),  # the sibling asked for by name: itself, no coding
]


@pytest.mark.parametrize("name, ae, suffix, coding", GZ_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in GZ_CASES])
def test_static_gzip_all_precompressed_siblings(srv_gz, tree, name, ae, suffix, coding):
    headers = [("Accept-Encoding", ae)] if ae is not None else []
    r = get(srv_gz.http_addr, f"/static/gz/{name}", headers)
    assert r.status == 200, r
    rel = f"root/gz/{name}{suffix}"
    assert r.body == tree.data(rel), f"expected the bytes of {rel}"
    assert r.header("Content-Encoding") == coding
    assert r.header("Content-Length") == str(len(tree.data(rel)))
    assert "accept-encoding" in (r.header("Vary") or "").lower(), r
    base_ct = {"page.css": "text/css", "onlygz.js": None, "plain.txt": "text/plain",
               "page.css.gz": "application/gzip"}[name]
    ct = r.header("Content-Type").split(";")[0]
    assert ct == base_ct if base_ct else ct in ("text/javascript", "application/javascript")
    st = os.stat(tree.base / rel)
    assert r.header("ETag") == etag_of(st)
    # a 304 for the sibling's validator keeps Vary
    r2 = get(srv_gz.http_addr, f"/static/gz/{name}", headers + [("If-None-Match", etag_of(st))])
    assert r2.status == 304 and "accept-encoding" in (r2.header("Vary") or "").lower(), r2


def test_range_on_a_precompressed_sibling(srv_gz, tree):
    """Range applies to the bytes sent, the sibling's (as nginx's gzip_static); its length
    and validators are the sibling's."""
    gz = tree.data("root/gz/page.css.gz")
    r = get(srv_gz.http_addr, "/static/gz/page.css", [("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")])
    assert r.status == 206 and r.body == gz[:10] and r.header("Content-Encoding") == "gzip"
    assert r.header("Content-Range") == f"bytes 0-9/{len(gz)}"
    r = get(srv_gz.http_addr, "/static/gz/page.css", [("Range", "bytes=0-9")])  # identity
    assert r.status == 206 and r.body == tree.data("root/gz/page.css")[:10] and r.header("Content-Encoding") is None


def test_static_gzip_ext_and_dir(server_factory, tree):
    """static-gzip-ext (a name suffix) and static-gzip-dir (a prefix of the resolved file name)
    choose the files precompressed siblings are looked for."""
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP, "--static-map", f"/static={tree.root}",
                       "--static-gzip-ext", ".css", "--static-gzip-dir", f"{tree.root}/gz/")
    ae = [("Accept-Encoding", "gzip")]
    r = get(s.http_addr, "/static/gzext/x.css", ae)  # by its extension
    assert r.header("Content-Encoding") == "gzip" and r.body == tree.data("root/gzext/x.css.gz")
    assert "accept-encoding" in r.header("Vary", "").lower()
    r = get(s.http_addr, "/static/gzext/y.js", ae)  # neither: the plain file, no Vary
    assert r.header("Content-Encoding") is None and r.body == tree.data("root/gzext/y.js")
    assert r.header("Vary") is None
    r = get(s.http_addr, "/static/gz/onlygz.js", ae)  # by its directory
    assert r.header("Content-Encoding") == "gzip" and r.body == tree.data("root/gz/onlygz.js.gz")


def test_bad_static_options_are_one_line(tmp_path, tree):
    """A bad value: one line naming the option and the ini line, exit non-zero, no traceback."""
    for line, needle in [("static-expires = ([ 60", "static-expires"),
                         ("static-expires = (?<=x)y 60", "static-expires"),
                         ("static-map = no-equals-sign", "static-map"),
                         ("static-expires-type = text/css", "static-expires-type")]:
        ini = tmp_path / "bad.ini"
        ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {STATIC_APP}\n{line}\n")
        s = ServerProcess([str(ini)]).start(wait_ready=False)
        try:
            rc = s.wait_exit(10)
        finally:
            s.stop()
        out = s.output()
        assert rc not in (0, None), (line, out)
        assert "Traceback" not in out, (line, out)
        assert needle in out and f"{ini}:4" in out, (line, out)


def test_no_vary_without_gzip(srv, tree):
    r = get(srv.http_addr, "/static/a.txt", [("Accept-Encoding", "gzip, br")])
    assert r.header("Content-Encoding") is None and r.header("Vary") is None
    r = get(srv.http_addr, "/static/gz/page.css", [("Accept-Encoding", "gzip")])
    assert r.body == tree.data("root/gz/page.css")
    assert r.header("Content-Encoding") is None


def test_big_file_to_a_slow_reader_while_others_are_served(srv, tree):
    """10 MiB to a client that reads in 16 KiB pieces with pauses: the bytes arrive intact, and
    meanwhile other connections (a static file, the app) are answered promptly: the parked
    sendfile does not hold the loop or a core."""
    want = hashlib.sha256(tree.data("root/big.bin")).hexdigest()
    h = hashlib.sha256()
    got = 0
    with Conn(srv.http_addr, timeout=10, rcvbuf=32768) as c:
        c.send(build_request("GET", "/static/big.bin"))
        head = c.read_until(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0] and b"Content-Length: %d" % BIG_SIZE in head, head
        body_pre = bytes(c.buf)
        c.buf.clear()
        h.update(body_pre)
        got += len(body_pre)
        pieces = 0
        others = 0
        while got < BIG_SIZE:
            chunk = c.sock.recv(min(16384, BIG_SIZE - got))
            assert chunk, f"EOF after {got} bytes"
            h.update(chunk)
            got += len(chunk)
            pieces += 1
            if pieces % 64 == 0:
                time.sleep(0.01)  # the slow reader's pause (pacing, not waiting for readiness)
            if pieces in (8, 200):  # mid-transfer: the server answers others now
                t0 = time.monotonic()
                r = get(srv.http_addr, "/static/style.css", timeout=3)
                assert r.status == 200
                r = get(srv.http_addr, "/not-static", timeout=3)
                assert is_app(r)
                assert time.monotonic() - t0 < 2
                others += 1
        assert others == 2
        # keep-alive: the same connection serves the next request after the big one
        c.send(build_request("GET", "/static/a.txt"))
        r = c.read_response()
        assert r.status == 200 and r.body == TEXT
    assert got == BIG_SIZE and h.hexdigest() == want


def test_clients_that_stop_reading(srv, tree):
    """Twenty clients ask for the big file and never read: their responses park on full
    sockets, and the loop goes on answering everybody else at once."""
    stalled = []
    try:
        for _ in range(20):
            c = Conn(srv.http_addr, timeout=5, rcvbuf=8192)
            c.send(build_request("GET", "/static/big.bin"))
            stalled.append(c)
        for i in range(5):
            t0 = time.monotonic()
            r = get(srv.http_addr, f"/static/a.txt?while-stalled={i}", timeout=3)
            assert r.status == 200 and r.body == TEXT
            assert is_app(get(srv.http_addr, "/app-while-stalled", timeout=3))
            assert time.monotonic() - t0 < 1.5
    finally:
        for c in stalled:
            c.close()
    assert get(srv.http_addr, "/static/a.txt").body == TEXT


def test_stalled_static_client_is_dropped_after_socket_timeout(server_factory, tree):
    """A client that stops reading a parked static response is dropped once socket-timeout
    passes without progress (as for app responses), and the server serves on."""
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP, "--static-map", f"/static={tree.root}",
                       "--socket-timeout", "1")
    with Conn(s.http_addr, timeout=10, rcvbuf=8192) as c:
        c.send(build_request("GET", "/static/big.bin"))
        c.read_until(b"\r\n\r\n")
        t0 = time.monotonic()
        # stall: read nothing for 2.5 s (over the 1 s timeout), polling the server meanwhile
        while time.monotonic() - t0 < 2.5:
            assert get(s.http_addr, "/static/a.txt", timeout=3).body == TEXT
            time.sleep(0.25)
        got = len(c.buf) + len(c.read_to_eof())
        assert got < BIG_SIZE, "the stalled client got the whole file: it was not dropped"
    assert get(s.http_addr, "/static/a.txt").body == TEXT


def test_big_file_with_requests(srv, tree):
    r = requests.get(f"http://{srv.http_addr[0]}:{srv.http_addr[1]}/static/big.bin", timeout=30)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == \
        hashlib.sha256(tree.data("root/big.bin")).hexdigest()
    # a range in the middle of the big file
    for rng, sl in (("bytes=5000000-5999999", slice(5000000, 6000000)), ("bytes=-1", slice(BIG_SIZE - 1, None)),
                    (f"bytes={BIG_SIZE - 70000}-", slice(BIG_SIZE - 70000, None))):
        r = requests.get(f"http://{srv.http_addr[0]}:{srv.http_addr[1]}/static/big.bin",
                         headers={"Range": rng}, timeout=30)
        assert r.status_code == 206 and r.content == tree.data("root/big.bin")[sl], rng


def test_keepalive_across_static_requests(srv, tree):
    st = os.stat(tree.root / "a.txt")
    with Conn(srv.http_addr) as c:
        seq = [
            ("GET", "/static/a.txt", [], 200),
            ("HEAD", "/static/b.bin", [], 200),
            ("GET", "/static/a.txt", [("If-None-Match", etag_of(st))], 304),
            ("GET", "/static/a.txt", [("Range", "bytes=0-4")], 206),
            ("GET", "/static/a.txt", [("Range", "bytes=99999-")], 416),
            ("GET", "/static/missing", [], 200),  # the app, in between
            ("GET", "/static/b.bin", [], 200),
            ("GET", "/static/a.txt", [("If-Match", '"nope"')], 412),
            ("GET", "/static/sub/", [], 200),
        ]
        for method, target, headers, want in seq:
            c.send(build_request(method, target, headers))
            r = c.read_response(method)
            assert r.status == want, (target, headers, r)
            assert (r.header("Connection") or "").lower() != "close", r
        # pipelined: three requests in one write, three responses in order
        c.send(build_request("GET", "/static/a.txt") + build_request("GET", "/static/style.css")
               + build_request("GET", "/static/b.bin"))
        assert c.read_response().body == TEXT
        assert c.read_response().body == tree.data("root/style.css")
        assert c.read_response().body == tree.data("root/b.bin")
        c.send(build_request("GET", "/static/a.txt", [("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200 and c.wait_closed(5)
    # HTTP/1.0: closed after the response unless asked to keep it
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/static/a.txt", version="HTTP/1.0", host=None))
        r = c.read_response()
        assert r.status == 200 and r.body == TEXT and c.wait_closed(5)
    with Conn(srv.http_addr) as c:
        for _ in range(2):
            c.send(build_request("GET", "/static/a.txt", [("Connection", "keep-alive")], version="HTTP/1.0"))
            r = c.read_response()
            assert r.status == 200 and r.body == TEXT and (r.header("Connection") or "").lower() == "keep-alive"


def test_request_body_on_a_static_get_is_consumed(srv):
    """A GET with a body (Content-Length or chunked) served from a file: the body is read and
    dropped, so the next request on the connection parses from the right byte."""
    with Conn(srv.http_addr) as c:
        c.send(build_request("GET", "/static/a.txt", body=b"GET /static/b.bin HTTP/1.1\r\n\r\n"))
        r = c.read_response()
        assert r.status == 200 and r.body == TEXT
        c.send(build_request("GET", "/static/style.css", [("Transfer-Encoding", "chunked")],
                             body=b"5\r\nhello\r\n0\r\n\r\n"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"body { color: #123456; }\n"
        c.send(build_request("GET", "/static/noext"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"no extension here\n"


def test_405_with_a_large_body(srv):
    """A 2 MiB POST to a file: 405 arrives, and the connection either goes on (the body was
    read) or closes cleanly; the server serves the next connection either way."""
    body = os.urandom(2 * 1024 * 1024)
    with Conn(srv.http_addr, timeout=10) as c:
        c.send(build_request("POST", "/static/a.txt", body=body), ignore_errors=True)
        r = c.read_response()
        assert r.status == 405 and r.header("Allow").replace(" ", "") == "GET,HEAD"
        if (r.header("Connection") or "").lower() != "close":
            c.send(build_request("GET", "/static/a.txt"))
            assert c.read_response().body == TEXT
    assert get(srv.http_addr, "/static/a.txt").body == TEXT


def test_expect_100_continue_on_a_file(srv):
    """POST with `Expect: 100-continue` to a file: either 100 then (body sent) 405, or 405 at
    once; RFC 9110 §10.1.1: the body a client may still send must not be read as a request."""
    body = b"GET /static/b.bin HTTP/1.1\r\nHost: x\r\n\r\n" + b"z" * 2000  # a request in disguise
    with Conn(srv.http_addr) as c:
        c.send(build_request("POST", "/static/a.txt", [("Expect", "100-continue"),
                                                       ("Content-Length", str(len(body)))]))
        r = c.read_response()
        if r.status == 100:
            c.send(body)
            r = c.read_response()
            assert r.status == 405, r
        else:
            assert r.status == 405, r
            if (r.header("Connection") or "").lower() == "close":
                return
            c.send(body)
        c.send(build_request("GET", "/static/style.css"))
        r = c.read_response()
        assert r.body == b"body { color: #123456; }\n", f"the body was parsed as a request: {r!r}"


def test_pipelined_request_after_a_big_file(srv, tree):
    """The big file's sendfile is parked on a full socket; the pipelined request behind it is
    answered after it, in order, on the same connection."""
    with Conn(srv.http_addr, timeout=10, rcvbuf=65536) as c:
        c.send(build_request("GET", "/static/big.bin") + build_request("GET", "/static/a.txt", [("Range", "bytes=0-4")])
               + build_request("GET", "/static/missing-after-big"))
        r = c.read_response()
        assert r.status == 200 and len(r.body) == BIG_SIZE and r.body == tree.data("root/big.bin")
        r = c.read_response()
        assert (r.status, r.body) == (206, TEXT[:5])
        assert is_app(c.read_response())
        # HEAD of the big file then a GET, pipelined: the HEAD sends no body
        c.send(build_request("HEAD", "/static/big.bin") + build_request("GET", "/static/a.txt"))
        r = c.read_response("HEAD")
        assert r.status == 200 and r.header("Content-Length") == str(BIG_SIZE)
        assert c.read_response().body == TEXT


def test_files_changing_between_requests(server_factory, tmp_path):
    """Nothing is cached across requests: a file replaced (rename over it), rewritten in place
    with another size, deleted, or created after start-up is served as it is now."""
    root = tmp_path / "live"
    root.mkdir()
    f = root / "f.txt"
    f.write_bytes(b"version one\n")
    os.utime(f, (MTIME, MTIME))
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP, "--static-map", f"/l={root}")
    with Conn(s.http_addr) as c:
        c.send(build_request("GET", "/l/f.txt"))
        r1 = c.read_response()
        assert r1.body == b"version one\n"
        tmp = root / ".f.txt.new"
        tmp.write_bytes(b"version two, longer\n")
        os.utime(tmp, (MTIME + 10, MTIME + 10))
        os.rename(tmp, f)
        c.send(build_request("GET", "/l/f.txt", [("If-None-Match", r1.header("ETag"))]))
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == b"version two, longer\n", r2
        assert r2.header("ETag") != r1.header("ETag") and r2.header("Content-Length") == "20"
        with open(f, "wb") as fh:  # in place, shorter
            fh.write(b"3\n")
        c.send(build_request("GET", "/l/f.txt"))
        assert c.read_response().body == b"3\n"
        f.unlink()
        c.send(build_request("GET", "/l/f.txt"))
        assert is_app(c.read_response())
        (root / "newdir").mkdir()
        (root / "newdir" / "n.txt").write_bytes(b"new\n")
        c.send(build_request("GET", "/l/newdir/n.txt"))
        assert c.read_response().body == b"new\n"


def test_client_gone_mid_transfer(srv):
    """Clients that hang up in the middle of the big file (close, or reset) cost the server
    nothing: it goes on serving."""
    for reset in (False, True):
        c = Conn(srv.http_addr, timeout=10, rcvbuf=32768)
        c.send(build_request("GET", "/static/big.bin"))
        c.read_until(b"\r\n\r\n")
        c.read_exact(100000)
        if reset:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
    for _ in range(3):
        r = get(srv.http_addr, "/static/a.txt", timeout=5)
        assert r.status == 200 and r.body == TEXT
    assert srv.running


def test_file_truncated_during_transfer(server_factory, tree, tmp_path):
    """The file shrinks while it is being sent (a log rotated, a deploy): the promised
    Content-Length cannot be met, so the connection closes soon (not after socket-timeout, not
    a spinning loop) and the server goes on serving."""
    root = tmp_path / "trunc"
    root.mkdir()
    victim = root / "v.bin"
    victim.write_bytes(tree.data("root/big.bin"))
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP, "--static-map", f"/t={root}")
    with Conn(s.http_addr, timeout=10, rcvbuf=32768) as c:
        c.send(build_request("GET", "/t/v.bin"))
        c.read_until(b"\r\n\r\n")
        c.read_exact(200000)
        with open(victim, "r+b") as f:
            f.truncate(1024 * 1024)
        t0 = time.monotonic()
        got = len(c.buf)
        c.buf.clear()
        while True:
            try:
                chunk = c.sock.recv(1 << 20)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            got += len(chunk)
            assert got < BIG_SIZE, "more bytes than the truncated file has"
            r_time = time.monotonic() - t0
            assert r_time < 5, "the connection stays open after the file shrank"
        assert time.monotonic() - t0 < 3.5, "closed only by socket-timeout"
    r = get(s.http_addr, "/t/v.bin", timeout=5)
    assert r.status == 200 and len(r.body) == 1024 * 1024


def test_graceful_stop_finishes_a_static_download(server_factory, tree):
    """SIGTERM while a slow client is in the middle of the big file: the download completes
    (a graceful stop finishes responses in flight), then the server exits 0."""
    s = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP, "--static-map", f"/static={tree.root}")
    h = hashlib.sha256()
    with Conn(s.http_addr, timeout=10, rcvbuf=32768) as c:
        c.send(build_request("GET", "/static/big.bin"))
        c.read_until(b"\r\n\r\n")
        first = c.read_exact(300000)
        h.update(first)
        s.signal(signal.SIGTERM)
        rest = c.read_exact(BIG_SIZE - len(first))
        h.update(rest)
    assert h.hexdigest() == hashlib.sha256(tree.data("root/big.bin")).hexdigest()
    assert s.wait_exit(10) == 0, s.output()


def test_concurrent_downloads(srv, tree):
    """Twelve clients fetch the big file and small files at once; every byte is right."""
    want = hashlib.sha256(tree.data("root/big.bin")).hexdigest()
    errors: List[str] = []
    base = "http://%s:%d" % srv.http_addr

    def client(i: int) -> None:
        try:
            with requests.Session() as sess:
                if i % 3 == 0:
                    r = sess.get(base + "/static/big.bin", timeout=30)
                    if hashlib.sha256(r.content).hexdigest() != want:
                        errors.append(f"{i}: big.bin digest differs ({len(r.content)} bytes)")
                else:
                    for _ in range(20):
                        r = sess.get(base + "/static/a.txt", timeout=10)
                        if r.content != TEXT:
                            errors.append(f"{i}: a.txt differs")
                            return
        except Exception as e:  # noqa: BLE001 - collected
            errors.append(f"{i}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def test_other_listener_types(server_factory, tree, unix_dir):
    """`http` (uWSGI's router address, served by the workers here) and a unix socket."""
    sock = os.path.join(unix_dir, "static-http.sock")
    s = server_factory("--http", "127.0.0.1:0", "--http-socket", sock, "--wsgi-file", STATIC_APP,
                       "--static-map", f"/static={tree.root}", "--add-header", "X-Static-Test: yes")
    for addr in (s._addr("http"), sock):
        r = http_request(addr, "GET", "/static/a.txt")
        assert r.status == 200 and r.body == TEXT, (addr, r)
        assert r.header("X-Static-Test") == "yes", "add-header lines go on static responses too"
        r = http_request(addr, "GET", "/static/a.txt", headers=[("Range", "bytes=10-19")])
        assert r.status == 206 and r.body == TEXT[10:20]
        assert is_app(http_request(addr, "GET", "/static/none"))


def test_access_log_line_for_static(srv):
    m = srv.mark()
    get(srv.http_addr, "/static/a.txt?alog=1")
    line = srv.wait_for(lambda l: (mm := ACCESS_RE.search(l)) is not None and mm.group("uri") == "/static/a.txt?alog=1",
                        5, start=m)
    mm = ACCESS_RE.search(line)
    assert (mm.group("method"), mm.group("status"), mm.group("bytes")) == ("GET", "200", "950"), line
    m = srv.mark()
    get(srv.http_addr, "/static/a.txt?alog=2", [("Range", "bytes=0-9")])
    line = srv.wait_for(lambda l: "/static/a.txt?alog=2" in l and ACCESS_RE.search(l), 5, start=m)
    assert ACCESS_RE.search(line).group("status") == "206"
    assert ACCESS_RE.search(line).group("bytes") == "10"


def test_log_format_routes_and_disable_logging_for_static(server_factory, tree, tmp_path):
    """log-format variables, route donotlog:, and disable-logging + log-4xx apply to static
    responses as to the app's."""
    fmt = "SLF method=%(method) uri=%(uri) status=%(status) size=%(size) ua=%(uagent) rid=[%(var.HTTP_X_REQUEST_ID)]"
    ini = tmp_path / "log.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {STATIC_APP}\nstatic-map = /static={tree.root}\n"
                   f"log-format = {fmt}\nroute = ^/static/style\\.css donotlog:\n")
    s = server_factory(str(ini))
    get(s.http_addr, "/static/a.txt?lf=1", [("User-Agent", "probe/2"), ("X-Request-Id", "r-42")])
    line = s.wait_for(lambda l: l.startswith("SLF ") and "lf=1" in l, 5)
    assert line == "SLF method=GET uri=/static/a.txt?lf=1 status=200 size=950 ua=probe/2 rid=[r-42]", line
    get(s.http_addr, "/static/style.css?quiet=1")
    get(s.http_addr, "/static/a.txt?lf=2", [("Range", "bytes=0-1")])
    line = s.wait_for(lambda l: l.startswith("SLF ") and "lf=2" in l, 5)
    assert "status=206 size=2" in line, line
    assert not s.find(lambda l: "quiet=1" in l), "route donotlog: was not applied to a static request"

    s2 = server_factory("--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP, "--static-map", f"/static={tree.root}",
                        "--disable-logging", "--log-4xx")
    m = s2.mark()
    get(s2.http_addr, "/static/a.txt?dl=200")
    get(s2.http_addr, "/static/a.txt?dl=405", method="DELETE")
    line = s2.wait_for(lambda l: "dl=405" in l, 5, start=m)
    assert ACCESS_RE.search(line).group("status") == "405"
    assert not s2.find(lambda l: "dl=200" in l, start=m), "disable-logging did not apply to a static 200"


STATS_RE = re.compile(r"uwsgipy: stats server on (\S+)")


def _stats(addr) -> dict:
    with connect(addr) as s:
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return json.loads(data)
            data += chunk


def test_stats_count_static_requests(server_factory, tree):
    srv = server_factory("--master", "--processes", "1", "--http-socket", "127.0.0.1:0", "--wsgi-file",
                         STATIC_APP, "--static-map", f"/static={tree.root}", "--stats", "127.0.0.1:0")
    stats = parse_addr(STATS_RE.search(srv.wait_for(STATS_RE)).group(1))
    wait_until(lambda: all(w["accepting"] for w in _stats(stats)["workers"]), 5, what="worker accepting")
    for _ in range(3):
        assert get(srv.http_addr, "/static/a.txt").status == 200
    assert get(srv.http_addr, "/static/b.bin").status == 200
    assert is_app(get(srv.http_addr, "/app"))

    def counted():
        d = _stats(stats)
        w = d["workers"][0]
        return w["requests"] == 5 and d
    doc = wait_until(counted, 5, what="5 requests counted")
    w = doc["workers"][0]
    assert sum(c["static_requests"] for c in w["cores"]) == 4, w
    assert w["tx"] >= 3 * len(TEXT) + 5000, w


def test_max_requests_counts_static_requests(server_factory, tree):
    """Static requests count towards max-requests (they are requests): the worker recycles
    after 5 of them, and no request fails across the recycling."""
    srv = server_factory("--master", "--processes", "1", "--http-socket", "127.0.0.1:0", "--wsgi-file", STATIC_APP,
                         "--static-map", f"/static={tree.root}", "--max-requests", "5", "--min-worker-lifetime", "0")
    for i in range(16):
        r = get(srv.http_addr, f"/static/a.txt?i={i}")
        assert r.status == 200 and r.body == TEXT, (i, r)
    srv.wait_for(r"worker 1 \(pid \d+\): max-requests reached after 5 requests", 5)


# ----------------------------------------------------------------------------------------------
# 4. Django standalone: collectstatic, the admin's CSS and JS, /media uploads
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def django_dirs(tmp_path_factory):
    """STATIC_ROOT filled by a real `manage.py collectstatic`, an empty MEDIA_ROOT."""
    base = tmp_path_factory.mktemp("djsite")
    env = dict(os.environ, DJSITE_STATIC_ROOT=str(base / "static"), DJSITE_MEDIA_ROOT=str(base / "media"),
               PYTHONPATH=str(DJSITE_DIR))
    (base / "media").mkdir()
    p = subprocess.run([sys.executable, str(DJSITE_DIR / "manage.py"), "collectstatic", "--noinput"],
                       cwd=str(DJSITE_DIR), env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (base / "static" / "admin" / "css" / "base.css").is_file(), p.stdout
    return base


@pytest.fixture(scope="module")
def django_srv(module_server_factory, django_dirs):
    env = {"DJSITE_STATIC_ROOT": str(django_dirs / "static"), "DJSITE_MEDIA_ROOT": str(django_dirs / "media")}
    return module_server_factory("--http-socket", "127.0.0.1:0", "--chdir", str(DJSITE_DIR),
                                 "--pythonpath", str(DJSITE_DIR), "--module", "djsite.wsgi:application",
                                 "--static-map", f"/static={django_dirs / 'static'}",
                                 "--static-map", f"/media={django_dirs / 'media'}", env=env)


def test_django_admin_css_and_js_from_collectstatic(django_srv, django_dirs):
    base = "http://%s:%d" % django_srv.http_addr
    r = requests.get(base + "/admin/login/", timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"], r.text[:500]
    refs = set(re.findall(r'(?:href|src)="(/static/[^"]+)"', r.text))
    css = sorted(u for u in refs if u.endswith(".css"))
    js = sorted(u for u in refs if u.endswith(".js"))
    assert css and js, f"the login page references no CSS or no JS: {sorted(refs)}"
    assert "/static/admin/css/base.css" in css
    with requests.Session() as s:  # one keep-alive connection for all of them
        for url in css + js:
            got = s.get(base + url, timeout=10)
            f = django_dirs / "static" / url[len("/static/"):]
            assert got.status_code == 200, (url, got.status_code, got.text[:200])
            assert got.content == f.read_bytes(), url
            assert got.headers.get("X-App") is None
            ctype = got.headers["Content-Type"].split(";")[0].strip()
            if url.endswith(".css"):
                assert ctype == "text/css", (url, got.headers["Content-Type"])
            else:
                assert ctype in ("application/javascript", "text/javascript"), (url, got.headers["Content-Type"])
            assert "charset=utf-8" in got.headers["Content-Type"].replace(" ", "").lower()
            assert got.headers["ETag"] == etag_of(f.stat())
            again = s.get(base + url, headers={"If-None-Match": got.headers["ETag"]}, timeout=10)
            assert again.status_code == 304 and again.content == b""
    # a file collectstatic did not produce goes to Django (its 404)
    assert requests.get(base + "/static/admin/css/nope.css", timeout=10).status_code == 404


def test_django_media_upload_served_back(django_srv, django_dirs):
    base = "http://%s:%d" % django_srv.http_addr
    for size in (300 * 1024, 2 * 1024 * 1024 + 7):  # in memory, and a temporary file in Django
        data = os.urandom(size)
        r = requests.post(base + "/upload/", files={"file": (f"photo-{size}.bin", data)}, timeout=30)
        assert r.status_code == 200, r.text[:500]
        doc = r.json()
        url = doc["url"]
        assert url.startswith("/media/uploads/") and doc["size"] == size
        assert (django_dirs / "media" / url[len("/media/"):]).read_bytes() == data
        got = requests.get(base + url, timeout=30)
        assert got.status_code == 200 and got.content == data
        assert got.headers.get("X-App") is None and got.headers["Content-Length"] == str(size)
        assert got.headers["Content-Type"].split(";")[0] == "application/octet-stream"
    # an uploaded text file gets a text type
    r = requests.post(base + "/upload/", files={"file": ("notes.txt", b"plain notes\n")}, timeout=30)
    got = requests.get(base + r.json()["url"], timeout=10)
    assert got.content == b"plain notes\n" and got.headers["Content-Type"] == "text/plain; charset=utf-8"
