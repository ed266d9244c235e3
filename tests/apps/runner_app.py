"""The app runners' test app (tests/test_runners.py): one route per thing a runner must get right.

Routes (query parameters in brackets):
  /hello              b"hello"
  /sleep[?s=&token=]  sleeps s seconds (default 1) with time.sleep (gevent's under
                      --gevent-monkey-patch); with a token, logs "runner_app: sleep-start TOKEN"
                      to wsgi.errors first
  /gsleep[?s=]        sleeps s seconds with gevent.sleep (the gevent runner's cooperative sleep)
  /hold?flag=PATH     cooperatively (gevent.sleep under the gevent runner, time.sleep otherwise)
                      waits until PATH exists, at most 15 s
  /env                JSON: wsgi.multithread, wsgi.multiprocess, wsgi.run_once, the thread's
                      name and id, whether a gevent greenlet runs it, which modules gevent patched
  /big[?blocks=]      the deterministic download pattern (helpers.pattern_block) from a generator
  /write_big[?blocks=] the same pattern through the imperative write()
  /fetch?url=&lib=    GETs url with `requests` (lib=requests) or urllib (lib=urllib) and returns
                      the body it got: the monkey-patched outbound client
"""
import hashlib
import json
import os
import sys
import threading
import time
import urllib.request
from urllib.parse import parse_qs


def qs(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def pattern_block(i):
    """64 KiB block i of the deterministic download pattern (tests/helpers.py has the twin)."""
    return hashlib.sha256(str(i).encode()).digest() * 2048


def cooperative_sleep(seconds):
    """gevent's sleep once the gevent runner has imported gevent, time.sleep otherwise: the same
    app then waits without holding the hub (gevent) or the GIL (threads)."""
    gevent = sys.modules.get("gevent")
    (gevent.sleep if gevent is not None else time.sleep)(seconds)


def text(start_response, body, status="200 OK"):
    if isinstance(body, str):
        body = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def r_hello(environ, start_response):
    return text(start_response, b"hello")


def r_sleep(environ, start_response):
    q = qs(environ)
    if "token" in q:
        err = environ["wsgi.errors"]
        err.write("runner_app: sleep-start %s\n" % q["token"])
        err.flush()
    time.sleep(float(q.get("s", "1")))
    return text(start_response, b"slept")


def r_gsleep(environ, start_response):
    import gevent
    gevent.sleep(float(qs(environ).get("s", "1")))
    return text(start_response, b"gslept")


def r_hold(environ, start_response):
    flag = qs(environ)["flag"]
    deadline = time.monotonic() + 15
    while not os.path.exists(flag) and time.monotonic() < deadline:
        cooperative_sleep(0.01)
    return text(start_response, b"released" if os.path.exists(flag) else b"timed out")


def r_env(environ, start_response):
    doc = {k: environ[k] for k in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once")}
    doc["thread"] = threading.current_thread().name
    doc["thread_ident"] = threading.get_ident()
    doc["pid"] = os.getpid()
    gevent = sys.modules.get("gevent")
    doc["greenlet"] = False
    doc["patched"] = []
    if gevent is not None:
        import gevent.monkey
        hub = gevent.get_hub()
        doc["greenlet"] = gevent.getcurrent() is not hub and gevent.getcurrent().parent is not None
        doc["patched"] = sorted(m for m in ("socket", "time", "thread", "ssl", "select")
                                if gevent.monkey.is_module_patched(m))
    body = json.dumps(doc).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def r_big(environ, start_response):
    blocks = int(qs(environ).get("blocks", "16"))
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(blocks * 65536))])
    return (pattern_block(i) for i in range(blocks))


def r_write_big(environ, start_response):
    blocks = int(qs(environ).get("blocks", "16"))
    write = start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", str(blocks * 65536))])
    for i in range(blocks):
        write(pattern_block(i))
    return []


def r_fetch(environ, start_response):
    q = qs(environ)
    url = q["url"]
    if q.get("lib", "requests") == "requests":
        import requests
        r = requests.get(url, timeout=10)
        status, body = r.status_code, r.content
    else:
        with urllib.request.urlopen(url, timeout=10) as r:
            status, body = r.status, r.read()
    return text(start_response, b"%d " % status + body)


ROUTES = {
    "/hello": r_hello,
    "/sleep": r_sleep,
    "/gsleep": r_gsleep,
    "/hold": r_hold,
    "/env": r_env,
    "/big": r_big,
    "/write_big": r_write_big,
    "/fetch": r_fetch,
}


def application(environ, start_response):
    route = ROUTES.get(environ["PATH_INFO"])
    if route is None:
        return text(start_response, b"not found", "404 Not Found")
    return route(environ, start_response)
