"""One route per server behaviour the integration tests exercise.

Unknown paths fall through to an environ dump that reads the body with env_app.read_body.  State such as close() calls lives in module globals: the server runs one
process, so a follow-up request sees it.
"""
import hashlib
import io
import json
import os
import sys
import time
from urllib.parse import parse_qs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from env_app import read_body  # noqa: E402  (the same body digest as env_app)

CLOSED = {}  # token -> number of close() calls on response iterables / file-likes


def qs(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def pattern_block(i):
    """64 KiB block i of the deterministic download pattern (tests/helpers.py has the twin)."""
    return hashlib.sha256(str(i).encode()).digest() * 2048


def text(start_response, body, status="200 OK", extra=()):
    if isinstance(body, str):
        body = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))] + list(extra))
    return [body]


def as_json(start_response, doc, status="200 OK"):
    body = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Tracked:
    """A response iterable with close(), recording close() calls under its token."""

    def __init__(self, token, items):
        self.token = token
        self.items = iter(items)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.items)

    def close(self):
        if self.token:
            CLOSED[self.token] = CLOSED.get(self.token, 0) + 1


class TrackedBytesIO(io.BytesIO):
    def __init__(self, data, token):
        super().__init__(data)
        self.token = token

    def close(self):
        if self.token:
            CLOSED[self.token] = CLOSED.get(self.token, 0) + 1
        super().close()


class NoFileno:
    """A file-like with read() and close() but no fileno(): the wrapper must fall back to read()."""

    def __init__(self, data, token):
        self._b = io.BytesIO(data)
        self.token = token

    def read(self, n=-1):
        return self._b.read(n)

    def close(self):
        if self.token:
            CLOSED[self.token] = CLOSED.get(self.token, 0) + 1


# ---------------------------------------------------------------------------------------------

def r_hello(environ, start_response):
    return text(start_response, b"Hello, world!")


def r_echo(environ, start_response):
    body = environ["wsgi.input"].read()
    return text(start_response, body, extra=[
        ("X-Env-Content-Length", environ.get("CONTENT_LENGTH", "<absent>")),
        ("X-Input-Terminated", repr(environ.get("wsgi.input_terminated"))),
    ])


def r_upload_sha(environ, start_response):
    inp = environ["wsgi.input"]
    h = hashlib.sha256()
    n = 0
    reads = 0
    while True:
        chunk = inp.read(65536)
        if not chunk:
            break
        assert len(chunk) <= 65536, len(chunk)
        h.update(chunk)
        n += len(chunk)
        reads += 1
    extra_eof = inp.read(65536)  # must be b"" again, immediately
    return as_json(start_response, {"len": n, "sha256": h.hexdigest(), "reads": reads,
                                    "eof_again": extra_eof == b""})


def r_input(environ, start_response):
    """wsgi.input semantics; results as latin-1 strings."""
    q = qs(environ)
    op = q.get("op", "read")
    n = int(q.get("n", "4"))
    inp = environ["wsgi.input"]
    L = lambda b: b.decode("latin-1")  # noqa: E731
    if op == "read":
        res = [L(inp.read()), L(inp.read())]
    elif op == "read_n":
        res = []
        while True:
            c = inp.read(n)
            res.append(L(c))
            if not c:
                break
        res.append(L(inp.read(n)))
    elif op == "readline":
        res = []
        while True:
            c = inp.readline()
            res.append(L(c))
            if not c:
                break
    elif op == "readline_n":
        res = []
        while True:
            c = inp.readline(n)
            res.append(L(c))
            if not c:
                break
    elif op == "readlines":
        res = [L(x) for x in inp.readlines()]
    elif op == "iter":
        res = [L(x) for x in inp]
    elif op == "read_big":
        res = [L(inp.read(10 ** 6)), L(inp.read(10 ** 6))]
    elif op == "mixed":
        res = [L(inp.readline()), L(inp.read(3)), [L(x) for x in inp.readlines()], L(inp.read())]
    elif op == "read_neg":
        res = [L(inp.read(-1)), L(inp.read(-1))]
    elif op == "read_none":
        res = [L(inp.read(None)), L(inp.read(None))]
    elif op == "none":
        res = []  # the app reads nothing: the server must discard the body itself
    else:
        res = ["unknown op"]
    return as_json(start_response, {"op": op, "result": res})


def r_gen(environ, start_response):
    """A generator-style body without Content-Length, including empty items in the middle."""
    q = qs(environ)
    n = int(q.get("n", "5"))
    items = []
    for i in range(n):
        items.append(("chunk%d;" % i).encode())
        items.append(b"")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Tracked(q.get("token"), items)


def r_list_one(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def r_list_many(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"a", b"bc", b"", b"def"]


def r_status(environ, start_response):
    code = qs(environ).get("code", "204")
    reasons = {"204": "No Content", "304": "Not Modified", "404": "Not Found", "418": "I'm a teapot"}
    start_response("%s %s" % (code, reasons.get(code, "Whatever")), [("X-Status-Route", code)])
    return []


def r_write(environ, start_response):
    q = qs(environ)
    headers = [("Content-Type", "text/plain")]
    if q.get("cl"):
        headers.append(("Content-Length", str(len(b"written-1;written-2;returned"))))
    write = start_response("200 OK", headers)
    write(b"written-1;")
    write(b"written-2;")
    return [b"returned"]


def r_closed(environ, start_response):
    return as_json(start_response, {"closed": CLOSED.get(qs(environ).get("token"), 0)})


def r_stream(environ, start_response):
    """Many MiB in 1 MiB items; for the client-disconnect test."""
    q = qs(environ)
    mb = int(q.get("mb", "200"))
    block = b"x" * (1 << 20)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(mb << 20))])
    return Tracked(q.get("token"), (block for _ in range(mb)))


def r_big(environ, start_response):
    """The deterministic pattern, `blocks` 64 KiB blocks, streamed by a generator (no CL)."""
    q = qs(environ)
    blocks = int(q.get("blocks", "16"))
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl"):
        headers.append(("Content-Length", str(blocks * 65536)))
    start_response("200 OK", headers)
    return (pattern_block(i) for i in range(blocks))


def r_exc_replace(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
    try:
        raise ValueError("replaced before sending")
    except ValueError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("X-Second", "1")],
                       sys.exc_info())
    return [b"replaced"]


def r_exc_after_write(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial-body;")
    try:
        raise ValueError("late failure qqq")
    except ValueError:
        # headers are already sent: start_response must re-raise
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"NOT REACHED"]


def r_raise_before(environ, start_response):
    raise RuntimeError("boom before start_response zzq")


def r_raise_in_iter(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"first;"
        raise RuntimeError("boom in iteration kkq")

    return gen()


def r_bad_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["a str, not bytes"]


def r_file(environ, start_response):
    q = qs(environ)
    path = q["path"]
    blksize = int(q.get("blksize", "65536"))
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl", "1") == "1":
        headers.append(("Content-Length", str(os.path.getsize(path))))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](open(path, "rb"), blksize)


def r_file_offset(environ, start_response):
    """file_wrapper over a file already positioned at `seek`, sending `length` bytes (the
    Content-Length) - a server using sendfile must start at the current position and stop
    at Content-Length."""
    q = qs(environ)
    f = open(q["path"], "rb")
    f.seek(int(q.get("seek", "0")))
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("length"):
        headers.append(("Content-Length", q["length"]))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 65536)


def r_file_pipe(environ, start_response):
    """file_wrapper over the read end of a pipe: it has a fileno() but sendfile cannot use it."""
    import threading
    size = int(qs(environ).get("size", "1000000"))
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as wf:
            for i in range(0, size, 65536):
                wf.write(pattern_block(i // 65536)[: min(65536, size - i)])

    threading.Thread(target=feed, daemon=True).start()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](os.fdopen(r, "rb"), 65536)


def r_bytesio(environ, start_response):
    q = qs(environ)
    size = int(q.get("size", "100000"))
    data = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl", "1") == "1":
        headers.append(("Content-Length", str(size)))
    start_response("200 OK", headers)
    cls = NoFileno if q.get("kind") == "nofileno" else TrackedBytesIO
    return environ["wsgi.file_wrapper"](cls(data, q.get("token")), 8192)


def r_sleep(environ, start_response):
    s = float(qs(environ).get("s", "1"))
    sys.stderr.write("sleep-start %s\n" % qs(environ).get("token", ""))
    sys.stderr.flush()
    time.sleep(s)
    return text(start_response, b"slept")


def r_cwd(environ, start_response):
    return text(start_response, os.getcwd())


def r_errors(environ, start_response):
    err = environ["wsgi.errors"]
    err.write("wsgi.errors line %s\n" % qs(environ).get("msg", ""))
    err.writelines(["writelines-a\n", "writelines-b\n"])
    err.flush()
    return text(start_response, b"logged")


def r_pid(environ, start_response):
    return text(start_response, str(os.getpid()))


def r_bad_header(environ, start_response):
    kind = qs(environ).get("kind", "crlf")
    value = {"crlf": "a\r\nX-Injected: 1", "lf": "a\nX-Injected: 1", "nonlatin1": "euro \u20ac",
             "latin1": "caf\xe9", "badname": None}[kind]
    if kind == "badname":
        headers = [("Bad Name", "v")]
    else:
        headers = [("X-Value", value)]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")] + headers)
    return [b"ok"]


def r_short_cl(environ, start_response):
    """Promises 100 bytes, delivers 10: the server cannot keep this connection."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
    return [b"0123456789"]


def r_long_cl(environ, start_response):
    """Promises 5 bytes, returns 20: nothing past the 5th byte may reach the client as if it
    were the next response."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"HELLO", b"HTTP/1.1 200 OK\r\n\r\n"]


def r_no_start_response(environ, start_response):
    return [b"body without start_response"]


def r_head_write(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"from write")
    return []


def r_many_headers(environ, start_response):
    q = qs(environ)
    n, size = int(q.get("n", "200")), int(q.get("size", "500"))
    headers = [("X-H%d" % i, ("%d-" % i) + "v" * size) for i in range(n)]
    return text(start_response, b"many headers", extra=headers)


def r_env(environ, start_response):
    return env_application(environ, start_response)


ROUTES = {
    "/hello": r_hello,
    "/echo": r_echo,
    "/upload_sha": r_upload_sha,
    "/input": r_input,
    "/gen": r_gen,
    "/list_one": r_list_one,
    "/list_many": r_list_many,
    "/status": r_status,
    "/write": r_write,
    "/closed": r_closed,
    "/stream": r_stream,
    "/big": r_big,
    "/exc_replace": r_exc_replace,
    "/exc_after_write": r_exc_after_write,
    "/raise_before": r_raise_before,
    "/raise_in_iter": r_raise_in_iter,
    "/bad_body": r_bad_body,
    "/file": r_file,
    "/bytesio": r_bytesio,
    "/file_offset": r_file_offset,
    "/file_pipe": r_file_pipe,
    "/sleep": r_sleep,
    "/cwd": r_cwd,
    "/errors": r_errors,
    "/pid": r_pid,
    "/env": r_env,
    "/bad_header": r_bad_header,
    "/short_cl": r_short_cl,
    "/long_cl": r_long_cl,
    "/no_start_response": r_no_start_response,
    "/head_write": r_head_write,
    "/many_headers": r_many_headers,
}


# --- environ dump (same as env_app.py) ---------------------------------------------------------

def env_application(environ, start_response):
    doc = {k: {"type": type(v).__name__, "key_type": type(k).__name__,
               "value": v if isinstance(v, str) else repr(v)} for k, v in environ.items()}
    doc["__body__"] = read_body(environ["wsgi.input"])
    body = json.dumps(doc).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    return ROUTES.get(environ["PATH_INFO"], env_application)(environ, start_response)
