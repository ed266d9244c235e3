"""The operations tests' app (tests/test_master.py).

Every response body is one JSON object naming the code version and the
serving process, so a test can tell which worker (and which generation of
the code, after a reload) answered.  The tests copy this file to a
temporary directory and edit ``VERSION`` there before a reload.

Endpoints (query parameters in brackets):
  /            {"version", "pid"}
  /sleep[?s=]  sleeps s seconds (default 0.05), then as /
  /slow[?s=]   logs "ops_app: slow start" to wsgi.errors, sleeps s (default 1.5)
  /alloc[?mb=] allocates mb MiB (default 60), touches every page, keeps it
  /env         wsgi.multithread, wsgi.multiprocess, thread name
"""
import json
import os
import threading
import time
from urllib.parse import parse_qs

VERSION = "v1"

_kept = []  # /alloc keeps its memory here, so the worker's RSS stays up


def _body(environ, **extra):
    doc = {"version": VERSION, "pid": os.getpid()}
    doc.update(extra)
    return (json.dumps(doc) + "\n").encode()


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""))

    def number(name, default):
        return float(query.get(name, [default])[0])

    extra = {}
    if path == "/sleep":
        time.sleep(number("s", 0.05))
    elif path == "/slow":
        errors = environ["wsgi.errors"]
        errors.write("ops_app: slow start pid %d\n" % os.getpid())
        errors.flush()
        time.sleep(number("s", 1.5))
    elif path == "/alloc":
        size = int(number("mb", 60)) << 20
        _kept.append(b"\x01" * size)  # written, so every page is resident
        extra["kept_mb"] = sum(len(b) for b in _kept) >> 20
    elif path == "/env":
        extra = {"multithread": environ["wsgi.multithread"],
                 "multiprocess": environ["wsgi.multiprocess"],
                 "thread": threading.current_thread().name}
    elif path != "/":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    body = _body(environ, **extra)
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
