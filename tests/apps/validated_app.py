"""Apps wrapped in wsgiref.validate.validator: any PEP 3333 violation by the server shows up as
an AssertionError (or a "garbage collected without being closed" warning) on its stderr."""
import hashlib
import json
import os
from urllib.parse import parse_qs
from wsgiref.validate import validator


def _inner(environ, start_response):
    path = environ["PATH_INFO"]
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/post":
        inp = environ["wsgi.input"]
        h = hashlib.sha256()
        n = 0
        while True:
            c = inp.read(8192)  # the validator insists on read(n)
            if not c:
                break
            h.update(c)
            n += len(c)
        body = json.dumps({"len": n, "sha256": h.hexdigest()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/lines":
        lines = list(environ["wsgi.input"])
        body = json.dumps([l.decode("latin-1") for l in lines]).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"via-write;")
        return [b"via-iter"]
    if path == "/gen":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part%d;" % i for i in range(5))
    if path == "/file":
        path_ = q["path"]
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(os.path.getsize(path_)))])
        return environ["wsgi.file_wrapper"](open(path_, "rb"), 65536)
    if path == "/errors":
        environ["wsgi.errors"].write("validated errors write\n")
        environ["wsgi.errors"].flush()
    if path == "/nocontent":
        start_response("204 No Content", [])
        return []
    body = b"validated ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = validator(_inner)
