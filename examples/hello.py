"""The smallest WSGI app (PEP 3333), for trying uwsgipy (README, "Try it"):

    python3 -m venv .venv && .venv/bin/pip install . && \
        .venv/bin/uwsgipy --http-socket 127.0.0.1:8000 --wsgi-file examples/hello.py

Ctrl-C is the quick stop; SIGTERM (kill PID) the graceful one.
"""


def application(environ, start_response):
    body = b"Hello from uwsgipy!\n"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
