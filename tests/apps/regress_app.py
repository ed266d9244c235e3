"""Apps behind the regression tests of tests/test_regressions.py: each route
provokes one response-path bug found in review."""
import os
import sys
import time

_late = {}


class LateWriter:
    """A result whose close() calls write() after the response ended."""

    def __init__(self, write):
        self.write = write

    def __iter__(self):
        yield b"body"

    def close(self):
        try:
            self.write(b"late")
            _late["outcome"] = "sent"
        except RuntimeError as exc:
            _late["outcome"] = f"raised {exc}"


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/write-big":
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        try:
            write(b"A" * (4 << 20))
        except OSError:
            pass
        return []
    if path == "/mutate":
        headers = [("Content-Type", "text/plain")]
        start_response("200 OK", headers)
        headers.append(("X-Injected", "a\r\nSet-Cookie: evil=1"))
        headers.append(("Broken",))
        headers.append("not a tuple")
        return [b"mutated"]
    if path == "/304":
        start_response("304 Not Modified", [("ETag", '"abc"')])
        return []
    if path == "/empty":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return []
    if path == "/late":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        return LateWriter(write)
    if path == "/late-outcome":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [_late.get("outcome", "none").encode()]
    if path == "/bad-exc-info":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        try:
            start_response("500 Oops", [("Content-Length", "x")],
                           (ValueError, ValueError("v"), None))
        except ValueError:
            pass
        return [b"first"]
    if path == "/fork":
        if os.fork() == 0:
            time.sleep(1)
            os._exit(0)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok " + path.encode()]
