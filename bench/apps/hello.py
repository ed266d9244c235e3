"""WSGI hello world used by every benchmark scenario (PEP 3333).

The body and headers are built once at import so that the measurement is the
server's per-request cost, not the app's.
"""

BODY = b"Hello, World!"
HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(BODY))),
]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
