"""ASGI requests over one HTTP/1.1 keep-alive connection (the guard rails for reusing a
connection's asyncio Task for its next request): what an app sees must not depend on whether
its request is the first on a connection or the hundredth, whether the previous app on the
connection is still running (post-response work), was cancelled inside, or raised.

What must hold, under loop = asyncio and loop = uvloop:
- each request runs in its own contextvars context, a copy of the worker's base context: a
  ContextVar set by one request is not seen by the next on the same connection, and a
  post-response app keeps its own context while the next request runs;
- asyncio.current_task() is a live asyncio.Task, the same across awaits, in all_tasks(), whose
  stack and repr name the app, with no cancellation pending;
- 200 requests in a row on one connection (raw ASGI, Starlette, httpx's pool) are all answered,
  over that one connection;
- work after the response (asyncio.sleep, Starlette BackgroundTasks) does not hold the next
  request on the same connection, and both complete;
- pipelined requests are answered in order; a request that cancels its own work, a large body,
  an app that raises: the connection (or a new one) goes on serving;
- at stop, idle keep-alive connections (and post-response work) end cleanly: exit 0, no
  "Task was destroyed", no traceback; connections the client closed leave no task behind (the
  loop's task count and the server's asgi_tasks return to where they were);
- the lifespan state is in every request's scope, a fresh copy each time.

The apps: the /ka/ routes and `keepalive_starlette` at the end of tests/apps/asgi_raw.py.
Real servers on 127.0.0.1 port 0, real sockets; readiness and state are polled, loops bounded.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import struct
import sys
import time

import pytest

from helpers import (Conn, IncompleteResponse, asgi_core_problem, build_request,
                     expect_raise_after_start, http_request,
                     pattern_sha256, sha256, wait_until)

_PROBLEM = asgi_core_problem()
if _PROBLEM:
    pytest.skip(_PROBLEM, allow_module_level=True)

# not importorskip: a CI without the test dependencies must fail, not pass quietly
import httpx  # noqa: E402
import starlette  # noqa: E402,F401

try:
    import uvloop  # noqa: F401
    _NO_UVLOOP = ""
except ImportError as exc:  # pragma: no cover - uvloop is a test dependency
    _NO_UVLOOP = f"uvloop is not importable: {exc}"

RAW = ["--pythonpath", "tests/apps", "--module", "asgi_raw:application"]
STARLETTE = ["--pythonpath", "tests/apps", "--module", "asgi_raw:keepalive_starlette"]
LOOPS = [pytest.param("asyncio", id="asyncio"),
         pytest.param("uvloop", id="uvloop", marks=pytest.mark.skipif(bool(_NO_UVLOOP), reason=_NO_UVLOOP))]
BAD_OUTPUT = ("Task was destroyed but it is pending", "Traceback", "never retrieved",
              "coroutine ignored GeneratorExit", "was never awaited", "ERROR")


# ----------------------------------------------------------------------------------------------
# servers and helpers
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=LOOPS)
def loop(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def srv(module_server_factory, loop):
    """uwsgipy --http-socket, asgi_raw, --loop LOOP."""
    return on_loop(module_server_factory("--http-socket", "127.0.0.1:0", *RAW, "--loop", loop), loop)


@pytest.fixture(scope="module")
def ssrv(module_server_factory, loop):
    """uwsgipy --http-socket, asgi_raw:keepalive_starlette (Starlette), --loop LOOP."""
    return on_loop(module_server_factory("--http-socket", "127.0.0.1:0", *STARLETTE, "--loop", loop), loop)


def on_loop(s, loop: str):
    """s, once its start-up line says it runs the `loop` event loop."""
    assert s.find(f"{loop} event loop") is not None, f"not on the {loop} loop:\n{s.output()}"
    return s


def get(c: Conn, target: str, method: str = "GET", body: bytes = b"", headers=()):
    """One request on the kept connection c, its response read whole."""
    c.send(build_request(method, target, headers, body))
    return c.read_response(method)


def get_json(c: Conn, target: str) -> dict:
    r = get(c, target)
    assert r.status == 200, r
    return json.loads(r.body)


def check_task_doc(doc: dict) -> None:
    """What /ka/task reports about asyncio.current_task() (as r_task: tests/test_asgi_http.py)."""
    assert doc == {"is_task": True, "same_after_await": True, "same_after_sleep": True,
                   "seen_var": None, "stack_names_app": True, "repr_names_app": True,
                   "all_tasks_has_it": True, "done": False, "cancelling": 0}, doc


def task_counts(srv) -> dict:
    """The loop's pending tasks and the server's asgi_tasks, seen from a request of its own on a
    fresh connection (Connection: close), which counts itself in both."""
    doc = http_request(srv.http_addr, "GET", "/ka/tasks").json()
    assert doc["asgi_tasks"] is not None, "the app could not find the server's asgi_tasks"
    return doc


def wait_counts(srv, want: dict, what: str, timeout: float = 10.0) -> None:
    last: dict = {}

    def back():
        last.clear()
        last.update(task_counts(srv))
        return last["all_tasks"] <= want["all_tasks"] and last["asgi_tasks"] <= want["asgi_tasks"]
    try:
        wait_until(back, timeout, interval=0.05, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: tasks now {last}, before {want}") from None


def bad_lines(text: str):
    return [l for l in text.splitlines() if any(b in l for b in BAD_OUTPUT)]


def access_addrs(srv, start: int, uri_prefix: str):
    return [m.group("addr") for m in srv.access_lines(start) if m.group("uri").startswith(uri_prefix)]


# ----------------------------------------------------------------------------------------------
# 0. the kept Task itself: one per keep-alive connection, not one per request
# ----------------------------------------------------------------------------------------------

def which(c: Conn) -> int:
    r = get(c, "/ka/which")
    assert r.status == 200 and r.body.startswith(b"task "), r
    return int(r.body.split()[1])


def test_one_task_serves_a_keepalive_connection(srv):
    """Sequential requests on one connection run in the same asyncio Task (kept for the next
    request once the app returned); another connection has a Task of its own."""
    with Conn(srv.http_addr) as c, Conn(srv.http_addr) as d:
        seen = [which(c) for _ in range(5)]
        assert len(set(seen)) == 1, f"a Task per request, not one per connection: {seen}"
        other = [which(d) for _ in range(3)]
        assert len(set(other)) == 1 and other[0] != seen[0], (seen, other)
        assert which(c) == seen[0]


def test_no_kept_task_behind_post_response_work(srv):
    """The next request comes while the app of the previous one still works after its response:
    it gets a Task of its own (the busy one is not waited for), and that new Task is then kept."""
    with Conn(srv.http_addr) as c:
        first = which(c)
        c.send(build_request("GET", "/ka/after?token=kt&s=0.5") + build_request("GET", "/ka/which"))
        assert c.read_response().body == b"after kt"
        second = int(c.read_response().body.split()[1])
        assert second != first, "the request waited for (or shared) the busy Task"
        assert which(c) == second


@pytest.mark.parametrize("how,kept", [("wait_for", sys.version_info < (3, 12)), ("child", False),
                                      ("timeout", False), ("self", False)])
def test_a_task_that_was_cancelled_is_not_kept(srv, how, kept):
    """A CancelledError thrown into the request's Task (asyncio.timeout, Task.cancel() of itself,
    awaiting a cancelled child) may leave its cancelling() count and state to the app: that Task
    is not kept, the next request gets a new one.  wait_for's timeout cancels its inner task
    only before 3.12 (the request's Task is kept), the request's Task itself from 3.12 (it is
    asyncio.timeout there)."""
    with Conn(srv.http_addr) as c:
        before = which(c)
        doc = get_json(c, f"/ka/cancel?how={how}")
        assert doc["cancelling"] == 0, doc
        after = which(c)
        assert (after == before) is kept, (how, before, after)


@pytest.mark.parametrize("second", ["/raise_before", "/raise_after", "close", "/ka/child_cancel"])
def test_a_kept_task_ends_cleanly_when_its_next_request_ends_it(srv, second):
    """The second request on a kept connection ends the kept Task in its first step (its app
    raises before or after the response, or the request says Connection: close, or it is
    cancelled): the Task is told (no "Task was destroyed but it is pending", no error of the
    server's own), the request is answered as on a fresh connection, and a new connection is
    served."""
    m = srv.mark()
    with Conn(srv.http_addr) as c:
        assert get(c, "/ka/n?i=1").body == b"ka 1"
        assert get(c, "/ka/n?i=2").body == b"ka 2"
        if second == "close":
            r = get(c, "/ka/which", headers=[("Connection", "close")])
            assert r.status == 200 and r.body.startswith(b"task "), r
        elif second == "/ka/child_cancel":
            doc = get_json(c, second)
            assert doc["seen"] in ("got child-result", "parent cancelled"), doc
        else:
            c.send(build_request("GET", second))
            assert c.wait_closed(5), f"{second}: the connection stayed open"
    with Conn(srv.http_addr) as d:
        assert get(d, "/ka/n?i=3").body == b"ka 3"
    srv.wait_for(lambda l: "GET /ka/n?i=3 " in l, 5, start=m)  # its access line: all before it is out
    out = "\n".join(srv.output().splitlines()[m:])
    for bad in ("Task was destroyed but it is pending", "cannot run a kept task",
                "without its callback", "never retrieved", "cannot reuse"):
        assert bad not in out, f"{second}: {bad!r} in\n{out}"


def test_cancellation_goes_to_the_awaited_child_first_on_a_kept_task(srv):
    """Task.cancel() in a request's first step, then the app awaits a child: on a kept
    connection's later request the app sees what it sees on a fresh connection's first (the
    cancellation is given to the child, asyncio's rule)."""
    with Conn(srv.http_addr) as c:
        first = get_json(c, "/ka/child_cancel")
    with Conn(srv.http_addr) as c:
        assert get(c, "/ka/n?i=1").body == b"ka 1"
        later = get_json(c, "/ka/child_cancel")
    assert later == first, (first, later)
    if sys.version_info >= (3, 12):  # the eager child was waiting in its try: it caught it
        assert first["seen"] == "got child-result", first


def test_systemexit_from_a_kept_tasks_request_stops_the_worker(server_factory):
    """SystemExit raised by the app of the second request on a kept connection stops the worker,
    as it does on a fresh connection's first request (not a 500 and serving on)."""
    s = server_factory("--http-socket", "127.0.0.1:0", *RAW, expect_rc=None)
    with Conn(s.http_addr) as c:
        assert get(c, "/ka/n?i=1").body == b"ka 1"
        c.send(build_request("GET", "/ka/exit"))
        c.wait_closed(10)
    rc = s.wait_exit(15)
    assert rc is not None, f"the worker went on serving after SystemExit:\n{s.output()}"
    assert "ka-exit raising SystemExit" in s.output()


# ----------------------------------------------------------------------------------------------
# 1. contextvars: one context per request, on one connection
# ----------------------------------------------------------------------------------------------

def test_context_is_fresh_for_each_request_on_a_kept_connection(srv):
    """Request 1 sets a ContextVar (and changes one the worker's base context set at import);
    request 2 on the same connection sees neither change, keeps its own value across a sleep;
    request 3 (after the sleep of request 2) sees none of it either."""
    with Conn(srv.http_addr) as c:
        docs = [get_json(c, "/ka/ctx?token=one"),
                get_json(c, "/ka/ctx?token=two&sleep=0.05"),
                get_json(c, "/ka/ctx?token=three")]
        for _ in range(3):  # and a few more, for a connection that has been reused a while
            docs.append(get_json(c, "/ka/ctx?token=more&sleep=0.001"))
    for i, doc in enumerate(docs):
        assert doc["seen"] is None, f"request {i + 1} saw the ContextVar of an earlier request: {doc}"
        assert doc["base"] == "set-at-import", f"request {i + 1}: not a copy of the base context: {doc}"
    assert [d["after_sleep"] for d in docs[:3]] == ["one", "two", "three"], docs
    assert all(d["base_after_sleep"].startswith("changed-by-") for d in docs), docs


def test_context_of_post_response_work_is_its_own(srv):
    """The next request on the connection runs while the previous app is still at work after
    its response: neither sees the other's ContextVar, and the earlier app still has its own
    value when it ends (logged as var=...)."""
    m = srv.mark()
    with Conn(srv.http_addr) as c:
        assert get(c, "/ka/after?token=ctxa&s=0.3").body == b"after ctxa"
        doc = get_json(c, "/ka/ctx?token=during&sleep=0.01")
        assert doc["seen"] is None and doc["base"] == "set-at-import", doc
        assert doc["after_sleep"] == "during", doc
        line = srv.wait_for("asgi_raw: ka-after done ctxa", 5, start=m)
        assert line.endswith("var=ctxa"), f"the post-response app lost its context: {line}"
        doc = get_json(c, "/ka/ctx?token=later")
        assert doc["seen"] is None and doc["base"] == "set-at-import", doc


# ----------------------------------------------------------------------------------------------
# 2. asyncio.current_task() on a kept connection
# ----------------------------------------------------------------------------------------------

def test_current_task_on_a_kept_connection(srv):
    """On the 1st, 2nd, ... 10th request of a connection, after post-response work and after
    a request that cancelled something: a live Task, the same across awaits, in all_tasks(),
    naming the app, with cancelling() == 0."""
    with Conn(srv.http_addr) as c:
        for i in range(10):
            check_task_doc(get_json(c, f"/ka/task?token=t{i}"))
        assert get(c, "/ka/after?token=taska&s=0.2").status == 200
        check_task_doc(get_json(c, "/ka/task?token=while-after"))
        assert get_json(c, "/ka/cancel?how=self")["outcome"] == "self cancelled"
        check_task_doc(get_json(c, "/ka/task?token=after-cancel"))
        check_task_doc(get_json(c, "/ka/task?token=after-cancel-2"))


# ----------------------------------------------------------------------------------------------
# 3. many requests on one connection
# ----------------------------------------------------------------------------------------------

N_SEQ = 200


def test_200_sequential_requests_raw(srv):
    m = srv.mark()
    with Conn(srv.http_addr) as c:
        local = "%s:%d" % c.sock.getsockname()[:2]
        for i in range(N_SEQ):
            r = get(c, f"/ka/n?i={i}")
            assert r.status == 200 and r.body == b"ka %d" % i, (i, r)
        # a POST with a body now and then, on the same connection
        r = get(c, "/echo", "POST", b"x" * 1000)
        assert r.body == b"x" * 1000, r
    addrs = wait_until(lambda: (a := access_addrs(srv, m, "/ka/n?i=")) and len(a) >= N_SEQ and a, 5,
                       what="the access log lines")
    assert set(addrs) == {local}, f"not all over one connection: {set(addrs)}"


def test_200_sequential_requests_starlette(ssrv):
    m = ssrv.mark()
    with Conn(ssrv.http_addr) as c:
        local = "%s:%d" % c.sock.getsockname()[:2]
        for i in range(N_SEQ):
            r = get(c, f"/n?i={i}")
            assert r.status == 200 and r.body == b"sl %d" % i, (i, r)
    addrs = wait_until(lambda: (a := access_addrs(ssrv, m, "/n?i=")) and len(a) >= N_SEQ and a, 5,
                       what="the access log lines")
    assert set(addrs) == {local}, f"not all over one connection: {set(addrs)}"


@pytest.mark.parametrize("which", ["raw", "starlette"])
def test_200_requests_with_an_httpx_pool(srv, ssrv, which):
    s, path, prefix = (srv, "/ka/n", b"ka") if which == "raw" else (ssrv, "/n", b"sl")
    m = s.mark()
    with httpx.Client(base_url=f"http://{s.http_addr[0]}:{s.http_addr[1]}", timeout=10) as client:
        for i in range(N_SEQ):
            r = client.get(path, params={"i": i})
            assert r.status_code == 200 and r.content == prefix + b" %d" % i, (i, r, r.content)
    addrs = wait_until(lambda: (a := access_addrs(s, m, path + "?i=")) and len(a) >= N_SEQ and a, 5,
                       what="the access log lines")
    assert len(set(addrs)) == 1, f"httpx's pool used {len(set(addrs))} connections, not one kept one"


# ----------------------------------------------------------------------------------------------
# 4. post-response work does not hold the next request
# ----------------------------------------------------------------------------------------------

def test_post_response_work_does_not_delay_the_next_request_raw(srv):
    """/ka/after answers, then sleeps 1 s before returning; the next requests on the same
    connection (one more /ka/after among them) are answered at once, and both apps end."""
    m = srv.mark()
    with Conn(srv.http_addr) as c:
        assert get(c, "/ka/after?token=pa1&s=1.0").body == b"after pa1"
        t0 = time.monotonic()
        r = get(c, "/ka/n?i=1")
        took = time.monotonic() - t0
        assert r.body == b"ka 1", r
        assert took < 0.5, f"the next request waited {took:.2f}s for the previous app's post-response work"
        t0 = time.monotonic()
        assert get(c, "/ka/after?token=pa2&s=1.0").body == b"after pa2"
        assert get(c, "/ka/n?i=2").body == b"ka 2"
        assert time.monotonic() - t0 < 0.5, "a second post-response app held the connection"
        assert srv.find("asgi_raw: ka-after done pa1", m) is None, "the first app's work ended early?"
        srv.wait_for("asgi_raw: ka-after done pa1", 5, start=m)
        srv.wait_for("asgi_raw: ka-after done pa2", 5, start=m)
        assert get(c, "/ka/n?i=3").body == b"ka 3", "the connection serves after both apps ended"


def test_post_response_work_does_not_delay_the_next_request_starlette(ssrv):
    m = ssrv.mark()
    with Conn(ssrv.http_addr) as c:
        assert get(c, "/bg?token=sbg1&s=1.0").body == b"bg sbg1"
        t0 = time.monotonic()
        r = get(c, "/n?i=1")
        took = time.monotonic() - t0
        assert r.body == b"sl 1", r
        assert took < 0.5, f"the next request waited {took:.2f}s for the BackgroundTask"
        assert ssrv.find("asgi_raw: ka-bg done sbg1", m) is None
        ssrv.wait_for("asgi_raw: ka-bg done sbg1", 5, start=m)
        assert get(c, "/n?i=2").body == b"sl 2"


# ----------------------------------------------------------------------------------------------
# 5. pipelining
# ----------------------------------------------------------------------------------------------

def test_pipelined_requests_answered_in_order(srv):
    """Three requests in one send to an app that awaits between http.response.start and the
    body (the first the longest): the responses come back in order, then a fourth request."""
    reqs = [build_request("GET", "/ka/slow?token=a&delay=0.2"),
            build_request("POST", "/ka/slow?token=b&delay=0", body=b"xyz"),
            build_request("GET", "/ka/slow?token=c&delay=0.05")]
    with Conn(srv.http_addr) as c:
        c.send(b"".join(reqs))
        bodies = [c.read_response().body for _ in range(3)]
        assert bodies == [b"slow a ", b"slow b xyz", b"slow c "], bodies
        assert get(c, "/ka/n?i=4").body == b"ka 4"


def test_pipelined_behind_post_response_work(srv):
    """A pipelined request behind one whose app works 1 s after its response is answered at
    once, and the one after it too."""
    m = srv.mark()
    with Conn(srv.http_addr) as c:
        t0 = time.monotonic()
        c.send(build_request("GET", "/ka/after?token=pp1&s=1.0") + build_request("GET", "/ka/n?i=5")
               + build_request("GET", "/ka/task?token=pp"))
        assert c.read_response().body == b"after pp1"
        assert c.read_response().body == b"ka 5"
        check_task_doc(json.loads(c.read_response().body))
        took = time.monotonic() - t0
        assert took < 0.5, f"the pipelined requests waited {took:.2f}s for post-response work"
    srv.wait_for("asgi_raw: ka-after done pp1", 5, start=m)


# ----------------------------------------------------------------------------------------------
# 6. cancellation inside a request
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["wait_for", "timeout", "child", "self"])
def test_cancellation_inside_a_request_then_the_connection_serves(srv, how):
    with Conn(srv.http_addr) as c:
        check_task_doc(get_json(c, "/ka/task?token=before"))
        doc = get_json(c, f"/ka/cancel?how={how}")
        want = {"wait_for": "timed out", "timeout": "timed out", "child": "child cancelled",
                "self": "self cancelled"}[how]
        assert doc == {"how": how, "outcome": want, "cancelling": 0}, doc
        for i in range(2):
            check_task_doc(get_json(c, f"/ka/task?token=after{i}"))
            assert get(c, f"/ka/n?i={i}").body == b"ka %d" % i
        doc = get_json(c, f"/ka/cancel?how={how}")  # and again on the same connection
        assert doc["outcome"] == want and doc["cancelling"] == 0, doc
        assert get(c, "/ka/n?i=9").body == b"ka 9"


def test_anyio_move_on_after_in_starlette_then_the_connection_serves(ssrv):
    with Conn(ssrv.http_addr) as c:
        assert get(c, "/n?i=0").body == b"sl 0"
        for round_ in range(2):
            doc = get_json(c, "/move_on")
            assert doc == {"cancelled_caught": True, "cancelling": 0}, doc
            for i in range(2):
                r = get(c, f"/n?i={round_}{i}")
                assert r.status == 200 and r.body == b"sl %d%d" % (round_, i), r


# ----------------------------------------------------------------------------------------------
# 7. an app that raises
# ----------------------------------------------------------------------------------------------

def test_raise_after_start_on_a_kept_connection(srv):
    """A connection that served requests, then an app raising after http.response.start: the
    connection is closed (the response cannot be completed); a new connection is served, kept
    alive."""
    m = srv.mark()
    with Conn(srv.http_addr) as c:
        assert get(c, "/ka/n?i=1").body == b"ka 1"
        check_task_doc(get_json(c, "/ka/task?token=pre-raise"))
        expect_raise_after_start(srv, c, m)
    with Conn(srv.http_addr) as c:
        for i in range(3):
            check_task_doc(get_json(c, f"/ka/task?token=new{i}"))
            assert get(c, f"/ka/n?i={i}").body == b"ka %d" % i


def test_raise_before_start_on_a_kept_connection(srv):
    """A kept connection, then an app raising before http.response.start: a 500; then the
    connection either closes (without further bytes) or serves the next request; a new
    connection is served, kept alive."""
    m = srv.mark()
    with Conn(srv.http_addr) as c:
        assert get(c, "/ka/n?i=1").body == b"ka 1"
        r = get(c, "/raise_before")
        assert r.status == 500, r
        c.send(build_request("GET", "/ka/n?i=2"), ignore_errors=True)
        try:
            r2 = c.read_response()
        except IncompleteResponse as e:  # closed after the 500, as today
            assert e.partial == b"", e.partial[:200]
        else:
            assert r2.body == b"ka 2", r2
    srv.wait_for("asgi boom before start zzq", 5, start=m)
    with Conn(srv.http_addr) as c:
        for i in range(3):
            check_task_doc(get_json(c, f"/ka/task?token=new{i}"))
            doc = get_json(c, f"/ka/ctx?token=r{i}")
            assert doc["seen"] is None and doc["base"] == "set-at-import", doc


# ----------------------------------------------------------------------------------------------
# 8. a large response
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reader", ["normal", "slow"])
def test_large_response_then_the_next_request(srv, reader):
    """4 MiB in one http.response.body message, read at once or slowly by a client with a small
    receive buffer (the server's send waits); then more requests on the same connection."""
    want = pattern_sha256(64)
    with Conn(srv.http_addr, timeout=20, rcvbuf=65536 if reader == "slow" else None) as c:
        for round_ in range(2):
            c.send(build_request("GET", "/ka/big?mb=4"))
            if reader == "slow":
                head = c.read_until(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                body = bytearray(c.buf)
                c.buf.clear()
                while len(body) < n:
                    piece = c.sock.recv(min(16384, n - len(body)))
                    assert piece, f"EOF after {len(body)} of {n} body bytes"
                    body += piece
                    time.sleep(0.0005)  # a slow reader (pacing, not waiting for readiness)
                body = bytes(body)
            else:
                r = c.read_response()
                assert r.status == 200 and r.header("Content-Length") == str(4 * 1024 * 1024), r
                body = r.body
            assert len(body) == 4 * 1024 * 1024 and sha256(body) == want
            check_task_doc(get_json(c, f"/ka/task?token=big{round_}"))
            assert get(c, "/ka/n?i=8").body == b"ka 8"


# ----------------------------------------------------------------------------------------------
# 9. idle keep-alive connections at stop
# ----------------------------------------------------------------------------------------------

STOPS = {
    # id: (extra arguments, signal)
    "sigterm": ((), signal.SIGTERM),  # the graceful stop (what the fixtures send)
    "sigint": ((), signal.SIGINT),  # the quick stop
    "master-sigterm": (("--master", "--processes", "2"), signal.SIGTERM),
}


@pytest.mark.parametrize("stop", list(STOPS))
@pytest.mark.parametrize("loop_name", LOOPS)
def test_stop_with_idle_keepalive_connections(server_factory, loop_name, stop):
    """20 keep-alive connections, one request each, left open; SIGTERM (or SIGINT, or SIGTERM to
    a master of 2 workers): the worker closes them and exits 0 soon, with nothing about
    destroyed tasks, tracebacks or unretrieved exceptions."""
    extra, sig = STOPS[stop]
    s = on_loop(server_factory("--http-socket", "127.0.0.1:0", *RAW, "--loop", loop_name, *extra), loop_name)
    conns = [Conn(s.http_addr) for _ in range(20)]
    try:
        for i, c in enumerate(conns):
            assert get(c, f"/ka/n?i={i}" if i % 2 else f"/ka/task?token=idle{i}").status == 200
        t0 = time.monotonic()
        s.signal(sig)
        rc = s.wait_exit(10)
        took = time.monotonic() - t0
        assert rc == 0, f"exit {rc}:\n{s.output()}"
        assert took < 5, f"the stop took {took:.1f}s with idle keep-alive connections"
        for c in conns:
            assert c.wait_closed(5), "an idle keep-alive connection was not closed at the stop"
    finally:
        for c in conns:
            c.close()
    out = s.output()
    assert bad_lines(out) == [], out
    if extra:
        exits = re.findall(r"worker \d+ \(pid \d+\) exited with code (\d+)", out)
        assert exits and set(exits) == {"0"}, out
    if sig == signal.SIGTERM:
        assert "asgi_raw: lifespan shutdown" in out, out


@pytest.mark.parametrize("loop_name", LOOPS)
def test_stop_with_post_response_work_and_idle_connections(server_factory, loop_name):
    """As above, and 3 of the connections' apps still at work after their response (30 s of
    sleep) when SIGTERM comes: the stop does not wait for them, exits 0, cleanly."""
    s = on_loop(server_factory("--http-socket", "127.0.0.1:0", *RAW, "--loop", loop_name), loop_name)
    conns = [Conn(s.http_addr) for _ in range(10)]
    try:
        m = s.mark()
        for i, c in enumerate(conns):
            if i < 3:
                assert get(c, f"/ka/after?token=stop{i}&s=30").status == 200
                s.wait_for(f"asgi_raw: ka-after sent stop{i}", 5, start=m)
            else:
                assert get(c, f"/ka/n?i={i}").status == 200
        t0 = time.monotonic()
        rc = s.stop()
        took = time.monotonic() - t0
        assert rc == 0, f"exit {rc}:\n{s.output()}"
        assert took < 8, f"the stop took {took:.1f}s"
        for c in conns:
            assert c.wait_closed(5)
    finally:
        for c in conns:
            c.close()
    out = s.output()
    assert bad_lines(out) == [], out
    assert "ka-after done stop" not in out, "post-response work ran to its end at the stop?"


# ----------------------------------------------------------------------------------------------
# 10. connections the client closes leave nothing behind
# ----------------------------------------------------------------------------------------------

def test_closed_idle_connections_leave_no_tasks(srv):
    """300 times: a fresh connection, one request (keep-alive), the client closes it (a FIN, or
    every third a reset); then 20 connections closed while their app works after the response.
    The loop's task count and the server's asgi_tasks come back to where they were; no errors."""
    m = srv.mark()
    before = task_counts(srv)
    for i in range(300):
        c = Conn(srv.http_addr)
        try:
            path = f"/ka/n?i={i}" if i % 2 else f"/ka/task?token=cl{i}"
            r = get(c, path)
            assert r.status == 200, r
            if i % 3 == 0:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            c.close()
    for i in range(20):
        with Conn(srv.http_addr) as c:
            assert get(c, f"/ka/after?token=cw{i}&s=0.2").status == 200
    for i in range(20):
        srv.wait_for(f"asgi_raw: ka-after done cw{i} ", 10, start=m)
    wait_counts(srv, before, "the tasks of closed connections to end")
    assert bad_lines("\n".join(srv.lines[m:])) == []
    with Conn(srv.http_addr) as c:
        check_task_doc(get_json(c, "/ka/task?token=after-300"))


def test_idle_kept_connections_hold_no_app(srv):
    """While 10 connections sit idle after a request each, the server counts no app running for
    them (asgi_tasks is only the request asking); once closed, the loop's tasks are back."""
    before = task_counts(srv)
    conns = [Conn(srv.http_addr) for _ in range(10)]
    try:
        for i, c in enumerate(conns):
            assert get(c, f"/ka/n?i={i}").status == 200
        during = task_counts(srv)
        assert during["asgi_tasks"] <= before["asgi_tasks"], \
            f"idle connections count as running apps: {during} vs {before}"
    finally:
        for c in conns:
            c.close()
    wait_counts(srv, before, "the tasks of the closed idle connections to end")


# ----------------------------------------------------------------------------------------------
# 11. lifespan state on a kept connection
# ----------------------------------------------------------------------------------------------

def test_lifespan_state_in_every_request_on_a_kept_connection(srv):
    with Conn(srv.http_addr) as c:
        docs = [get_json(c, "/state") for _ in range(10)]
        check_task_doc(get_json(c, "/ka/task?token=st"))
        assert get(c, "/ka/after?token=st&s=0.05").status == 200
        docs.append(get_json(c, "/state"))  # while the previous app still works
    for i, doc in enumerate(docs):
        assert doc["state"] is not None and doc["state"]["db"] == "connected", (i, doc)
        assert doc["state"]["pid"] == srv.pid, (i, doc)
        assert doc["leaked"] is None, f"request {i + 1}: a key an earlier request set leaked in: {doc}"
    lens = [d["shared_list_len"] for d in docs]
    assert lens == list(range(lens[0], lens[0] + len(docs))), f"not one shallow copy per request: {lens}"


def test_lifespan_state_in_every_request_on_a_kept_connection_starlette(ssrv):
    with Conn(ssrv.http_addr) as c:
        for i in range(5):
            assert get_json(c, "/state") == {"started": "ka-starlette"}
            assert get(c, f"/n?i={i}").body == b"sl %d" % i
