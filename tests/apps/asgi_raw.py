"""Raw ASGI 3.0 callables for tests/test_asgi_http.py and tests/test_asgi_websocket.py: no
framework, so every message the server sends and receives is the test's own.

`application` routes on scope["path"] (and scope["type"]); the routes are listed in ROUTES and
WS_ROUTES below.  Lifespan: startup puts a state dict in scope["state"] (the spec's lifespan
state, §"Lifespan state") and prints `asgi_raw: lifespan startup`; shutdown prints
`asgi_raw: lifespan shutdown`.  Lines the tests wait for start with `asgi_raw:` and go to
stderr, unbuffered, so the server's log carries them in order.

Serve with: --pythonpath tests/apps --module asgi_raw:application
"""
from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import os
import sys
from urllib.parse import parse_qs

STARTUPS = 0  # lifespan startups in this process (once per worker)
REQUEST_VAR: contextvars.ContextVar = contextvars.ContextVar("asgi_raw_request", default=None)
GATES: dict = {}  # token -> asyncio.Event: /gate_read waits on it, /release sets it
PROGRESS: dict = {}  # token -> blocks /big_stream has handed to send() so far


def log(msg: str) -> None:
    print(f"asgi_raw: {msg}", file=sys.stderr, flush=True)


def pattern_block(i: int) -> bytes:
    """64 KiB block i of the deterministic download pattern (tests/helpers.py has the same)."""
    return hashlib.sha256(str(i).encode()).digest() * 2048


def jsonable(v):
    """The scope as JSON: bytes as {"bytes": latin-1 text}, tuples as {"tuple": [...]}, so the
    tests can check the types the spec requires, not only the values."""
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": bytes(v).decode("latin-1")}
    if isinstance(v, tuple):
        return {"tuple": [jsonable(x) for x in v]}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return {"repr": repr(v)}


def query(scope) -> dict:
    return {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


async def respond(send, status: int, body: bytes, headers=(), content_type=b"text/plain") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), *headers]})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send, doc, status: int = 200, headers=()) -> None:
    await respond(send, status, json.dumps(doc).encode(), headers, b"application/json")


async def read_body(receive):
    """The whole request body and what each http.request message looked like."""
    chunks = []
    sizes = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None, sizes
        assert msg["type"] == "http.request", msg
        body = msg.get("body", b"")
        chunks.append(body)
        sizes.append(len(body))
        if not msg.get("more_body", False):
            return b"".join(chunks), sizes


# ------------------------------------------------------------------------------------------------
# HTTP routes
# ------------------------------------------------------------------------------------------------

async def r_scope(scope, receive, send):
    """The scope as JSON (any path under /scope); the request body is read and its length added."""
    body, sizes = await read_body(receive)
    doc = {k: jsonable(v) for k, v in scope.items() if k != "state"}
    doc["__state"] = jsonable(dict(scope["state"])) if "state" in scope else None
    doc["__state_type"] = type(scope["state"]).__name__ if "state" in scope else None
    doc["__body_len"] = None if body is None else len(body)
    doc["__keys"] = sorted(scope)
    await respond_json(send, doc)


async def r_echo(scope, receive, send):
    body, sizes = await read_body(receive)
    await respond(send, 200, body or b"", [(b"x-chunks", str(len(sizes)).encode())],
                  content_type=b"application/octet-stream")


async def r_body_info(scope, receive, send):
    """Length, SHA-256 and the http.request messages' sizes: the tests check that a body sent
    slowly arrives in more than one message (not buffered whole first)."""
    h = hashlib.sha256()
    sizes = []
    more_flags = []
    total = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            log(f"body_info got {msg['type']}")
            return
        b = msg.get("body", b"")
        h.update(b)
        total += len(b)
        if not sizes:
            log(f"body_info first-message {query(scope).get('token', '')} {len(b)}")
        sizes.append(len(b))
        more_flags.append(bool(msg.get("more_body", False)))
        if not msg.get("more_body", False):
            break
    await respond_json(send, {"len": total, "sha256": h.hexdigest(), "messages": len(sizes),
                              "max_message": max(sizes) if sizes else 0,
                              "more_body_last": more_flags[-1], "more_body_before": all(more_flags[:-1])})


async def r_slow_read(scope, receive, send):
    """Reads the body one message at a time with a pause between receive() calls (a slow
    consumer: the server must stop reading the socket instead of buffering the upload)."""
    q = query(scope)
    delay = float(q.get("delay", "0.01"))
    h = hashlib.sha256()
    total = 0
    messages = 0
    log(f"slow_read start {q.get('token', '')}")
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            log(f"slow_read got {msg['type']}")
            return
        h.update(msg.get("body", b""))
        total += len(msg.get("body", b""))
        messages += 1
        if not msg.get("more_body", False):
            break
        await asyncio.sleep(delay)
    await respond_json(send, {"len": total, "sha256": h.hexdigest(), "messages": messages})


async def r_stream(scope, receive, send):
    """n chunks of `size` bytes with more_body, then an empty last body: no Content-Length."""
    q = query(scope)
    n, size = int(q.get("n", "5")), int(q.get("size", "10"))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(n):
        await send({"type": "http.response.body", "body": (b"%d" % (i % 10)) * size, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def r_big_stream(scope, receive, send):
    """`blocks` 64 KiB pattern blocks, streamed (each send awaits the socket: backpressure)."""
    q = query(scope)
    blocks = int(q.get("blocks", "160"))
    log(f"big_stream start {q.get('token', '')}")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    token = q.get("token", "")
    for i in range(blocks):
        await send({"type": "http.response.body", "body": pattern_block(i), "more_body": True})
        PROGRESS[token] = i + 1
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    log(f"big_stream done {token}")


async def r_progress(scope, receive, send):
    """How many blocks /big_stream?token=T has sent (each send() returned)."""
    await respond_json(send, {"blocks": PROGRESS.get(query(scope).get("token", ""), 0)})


def gate(token: str) -> asyncio.Event:
    if token not in GATES:
        GATES[token] = asyncio.Event()
    return GATES[token]


async def r_gate_read(scope, receive, send):
    """Takes the first http.request message, logs `gate_read first TOKEN`, then stops calling
    receive() until /release?token=TOKEN: the server must stop reading the socket meanwhile
    (backpressure), not buffer the upload.  Then reads the rest."""
    token = query(scope).get("token", "")
    h = hashlib.sha256()
    msg = await receive()
    h.update(msg.get("body", b""))
    total = len(msg.get("body", b""))
    more = msg.get("more_body", False)
    log(f"gate_read first {token}")
    await gate(token).wait()
    while more:
        msg = await receive()
        if msg["type"] != "http.request":
            log(f"gate_read got {msg['type']}")
            return
        h.update(msg.get("body", b""))
        total += len(msg.get("body", b""))
        more = msg.get("more_body", False)
    await respond_json(send, {"len": total, "sha256": h.hexdigest()})


async def r_release(scope, receive, send):
    gate(query(scope).get("token", "")).set()
    await respond(send, 200, b"released")


async def r_pid(scope, receive, send):
    await respond(send, 200, str(os.getpid()).encode())


async def r_one(scope, receive, send):
    """One body with more_body False and no Content-Length: the server adds Content-Length."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello asgi!"})


async def r_with_length(scope, receive, send):
    """The app gives Content-Length and sends the body in two messages."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"10")]})
    await send({"type": "http.response.body", "body": b"01234", "more_body": True})
    await send({"type": "http.response.body", "body": b"56789", "more_body": False})


async def r_headers_out(scope, receive, send):
    """Repeated and mixed-case response headers, in order, and a status with no body."""
    q = query(scope)
    status = int(q.get("status", "200"))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"X-Multi", b"one"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
                            (b"x-multi", b"two")]})
    await send({"type": "http.response.body", "body": b"" if status in (204, 304) else b"hdrs"})


async def r_trailers(scope, receive, send):
    """A streamed body with trailers (http.response.trailers extension)."""
    body, _ = await read_body(receive)
    h = hashlib.sha256()
    await send({"type": "http.response.start", "status": 200, "trailers": True,
                "headers": [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum, x-count")]})
    for piece in (b"part-one;", b"part-two;", b"part-three;"):
        h.update(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    await send({"type": "http.response.trailers", "more_trailers": True,
                "headers": [(b"x-checksum", h.hexdigest().encode())]})
    await send({"type": "http.response.trailers", "more_trailers": False, "headers": [(b"x-count", b"3")]})


async def r_pathsend(scope, receive, send):
    """http.response.pathsend: the file is sent by the server (sendfile from C)."""
    path = query(scope)["path"]
    size = os.stat(path).st_size
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(size).encode())]})
    await send({"type": "http.response.pathsend", "path": path})


async def r_raise_before(scope, receive, send):
    raise RuntimeError("asgi boom before start zzq")


async def r_raise_after(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("asgi boom after start zzq")


async def r_no_response(scope, receive, send):
    return None


async def r_start_only(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})


async def r_sleep(scope, receive, send):
    """asyncio.sleep(s) then a short answer; the worker's loop serves others meanwhile."""
    q = query(scope)
    log(f"sleep-start {q.get('token', '')}")
    await asyncio.sleep(float(q.get("s", "1")))
    await respond(send, 200, b"slept")


async def r_wait_disconnect(scope, receive, send):
    """Reads the body, then waits for http.disconnect without answering (the client goes away):
    logs `asgi_raw: disconnect TOKEN` when it comes."""
    token = query(scope).get("token", "")
    body, _ = await read_body(receive)
    log(f"waiting {token}")
    while True:
        msg = await asyncio.wait_for(receive(), 30)
        if msg["type"] == "http.disconnect":
            log(f"disconnect {token}")
            break
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"too late"})
        log(f"send-after-disconnect ok {token}")
    except OSError as exc:
        log(f"send-after-disconnect OSError {token} {type(exc).__name__}")


async def r_disconnect_after_response(scope, receive, send):
    """After a complete response, receive() gives http.disconnect (spec: once the response is
    complete)."""
    token = query(scope).get("token", "")
    await read_body(receive)
    await respond(send, 200, b"done")
    msg = await asyncio.wait_for(receive(), 10)
    log(f"after-response {token} {msg['type']}")


async def r_state(scope, receive, send):
    """The lifespan state, and proof that each request gets its own shallow copy: a key set here
    must not show up in the next request's state."""
    st = scope.get("state")
    doc = {"state": None if st is None else {k: v for k, v in st.items() if k != "shared_list"},
           "leaked": None if st is None else st.get("per_request"),
           "shared_list_len": None if st is None else len(st["shared_list"])}
    if st is not None:
        st["per_request"] = "set by a request"
        st["shared_list"].append(1)  # shallow copy: the list itself is shared
    await respond_json(send, doc)


async def r_hello(scope, receive, send):
    await respond(send, 200, b"Hello, ASGI!")


async def task_report(scope):
    """What asyncio.current_task() looks like while the app runs, suspending twice: whether it
    is a Task, the same one after each await, whose stack and repr show the app's coroutine
    (`application`), in all_tasks(), not done; and the REQUEST_VAR the request found (then set
    to ?token=).  Returns the task and that report (a dict)."""
    task = asyncio.current_task()
    seen = REQUEST_VAR.get()
    REQUEST_VAR.set(query(scope).get("token", ""))
    await asyncio.sleep(0)
    same = asyncio.current_task() is task
    await asyncio.sleep(0.001)
    return task, {
        "is_task": isinstance(task, asyncio.Task), "same_after_await": same,
        "same_after_sleep": asyncio.current_task() is task, "seen_var": seen,
        "stack_names_app": any(f.f_code.co_name == "application" for f in task.get_stack()),
        "repr_names_app": "application()" in repr(task), "all_tasks_has_it": task in asyncio.all_tasks(),
        "done": task.done()}


async def r_task(scope, receive, send):
    """The app runs in an asyncio Task: asyncio.current_task() is a Task (anyio and Starlette
    need one), the same one after an await that suspends, whose stack and repr show the app's
    coroutine (`application`, as for a task that runs it directly); a ContextVar set here is not
    seen by the next request (each request has its own copy of the context)."""
    await respond_json(send, (await task_report(scope))[1])

ROUTES = {
    "/echo": r_echo,
    "/body_info": r_body_info,
    "/slow_read": r_slow_read,
    "/stream": r_stream,
    "/big_stream": r_big_stream,
    "/one": r_one,
    "/with_length": r_with_length,
    "/headers_out": r_headers_out,
    "/trailers": r_trailers,
    "/pathsend": r_pathsend,
    "/raise_before": r_raise_before,
    "/raise_after": r_raise_after,
    "/no_response": r_no_response,
    "/start_only": r_start_only,
    "/sleep": r_sleep,
    "/wait_disconnect": r_wait_disconnect,
    "/disconnect_after_response": r_disconnect_after_response,
    "/state": r_state,
    "/hello": r_hello,
    "/task": r_task,
    "/progress": r_progress,
    "/gate_read": r_gate_read,
    "/release": r_release,
    "/pid": r_pid,
}


# ------------------------------------------------------------------------------------------------
# WebSocket routes
# ------------------------------------------------------------------------------------------------

async def ws_slow_accept(scope, receive, send):
    """Makes the client wait 4 s before the 101, then closes (what it sent meanwhile is
    bounded by the server's read-ahead)."""
    await receive()
    await asyncio.sleep(4)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1000})


async def ws_echo(scope, receive, send):
    """Echo text as text and bytes as bytes.  A text message "close CODE REASON" makes the
    server close with that code and reason; "scope" answers the scope as JSON; "big N" answers
    N bytes.  The disconnect is logged as `asgi_raw: ws-disconnect CODE REASON`."""
    msg = await receive()
    assert msg["type"] == "websocket.connect", msg
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            log(f"ws-disconnect {msg.get('code')} {msg.get('reason', '')}")
            return
        text = msg.get("text")
        if text is not None:
            if text.startswith("close "):
                _, code, reason = (text.split(" ", 2) + [""])[:3]
                await send({"type": "websocket.close", "code": int(code), "reason": reason})
                msg = await receive()
                log(f"ws-after-close {msg['type']} {msg.get('code')}")
                return
            if text == "scope":
                await send({"type": "websocket.send",
                            "text": json.dumps({k: jsonable(v) for k, v in scope.items() if k != "state"})})
                continue
            if text.startswith("big "):
                await send({"type": "websocket.send", "bytes": b"B" * int(text[4:])})
                continue
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": msg.get("bytes") or b""})


async def ws_subprotocol(scope, receive, send):
    """Accept with the first offered subprotocol of ("chat.v2", "chat.v1") and two extra
    headers, then send the scope as JSON."""
    await receive()
    chosen = next((p for p in ("chat.v2", "chat.v1") if p in scope.get("subprotocols", [])), None)
    await send({"type": "websocket.accept", "subprotocol": chosen,
                "headers": [(b"x-ws-accepted", b"yes"), (b"set-cookie", b"ws=1")]})
    doc = {k: jsonable(v) for k, v in scope.items() if k != "state"}
    doc["__state"] = jsonable(dict(scope["state"])) if "state" in scope else None
    await send({"type": "websocket.send", "text": json.dumps(doc)})
    msg = await receive()
    log(f"ws-subprotocol end {msg['type']}")


async def ws_reject(scope, receive, send):
    """websocket.close before websocket.accept: the server answers 403."""
    await receive()
    await send({"type": "websocket.close", "code": 1000})


async def ws_deny(scope, receive, send):
    """The websocket.http.response extension: a full HTTP response instead of the handshake."""
    await receive()
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
    await send({"type": "websocket.http.response.body", "body": b"denied ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"zzq"})


async def ws_idle(scope, receive, send):
    """Accept and wait: a server ping/pong check (the app sends nothing)."""
    await receive()
    await send({"type": "websocket.accept"})
    msg = await receive()
    log(f"ws-idle end {msg['type']} {msg.get('code')}")


async def ws_raise(scope, receive, send):
    """An exception after accept: the server closes with 1011."""
    await receive()
    await send({"type": "websocket.accept"})
    await receive()
    raise RuntimeError("asgi ws boom zzq")


WS_ROUTES = {
    "/ws/echo": ws_echo,
    "/ws/slow_accept": ws_slow_accept,
    "/ws/subprotocol": ws_subprotocol,
    "/ws/reject": ws_reject,
    "/ws/deny": ws_deny,
    "/ws/idle": ws_idle,
    "/ws/raise": ws_raise,
}


# ------------------------------------------------------------------------------------------------
# lifespan and the entry point
# ------------------------------------------------------------------------------------------------

async def lifespan(scope, receive, send):
    global STARTUPS
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            STARTUPS += 1
            if "state" in scope:
                scope["state"]["db"] = "connected"
                scope["state"]["startups"] = STARTUPS
                scope["state"]["pid"] = os.getpid()
                scope["state"]["shared_list"] = []
            log(f"lifespan startup {os.getpid()}")
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            log(f"lifespan shutdown {os.getpid()}")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        return await lifespan(scope, receive, send)
    path = scope["path"]
    if kind == "websocket":
        handler = WS_ROUTES.get(path)
        if handler is None:
            await receive()
            await send({"type": "websocket.close", "code": 1000})
            return
        return await handler(scope, receive, send)
    if path.startswith("/scope") or path.startswith("/mnt/scope"):
        return await r_scope(scope, receive, send)
    handler = ROUTES.get(path)
    if handler is None:
        await read_body(receive)
        await respond(send, 404, b"no route " + path.encode("utf-8", "replace"))
        return
    await handler(scope, receive, send)


app = application


class ClassApp:
    """An instance whose __call__ is `async def`: detected as ASGI like a function (asgi = auto)."""

    async def __call__(self, scope, receive, send):
        await application(scope, receive, send)


class_app = ClassApp()


async def no_lifespan(scope, receive, send):
    """An app that raises at once on the lifespan scope (lifespan unsupported, as many raw apps):
    with lifespan = auto the server goes on serving."""
    if scope["type"] == "lifespan":
        raise ValueError("no lifespan here")
    await application(scope, receive, send)


async def failing_startup(scope, receive, send):
    """lifespan.startup.failed: the worker must stop with the message, exit code 4."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "startup failed on purpose zzq"})
        return
    await application(scope, receive, send)


class AwaitableResult:
    """Not a coroutine: an object whose __await__ drives one (what `await` accepts)."""

    def __init__(self, coro):
        self.coro = coro

    def __await__(self):
        return self.coro.__await__()


def sync_returning_awaitable(scope, receive, send):
    """A sync callable that returns an awaitable (served with asgi = true); what it does before
    returning runs inside the request's task: REQUEST_VAR set here stays in that request."""
    if scope["type"] != "lifespan":
        REQUEST_VAR.set("set-by-the-sync-part")
    return AwaitableResult(application(scope, receive, send))


def sync_app(environ, start_response):  # a WSGI callable in the same module (asgi = auto picks WSGI)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi here"]




# ------------------------------------------------------------------------------------------------
# keep-alive task reuse (test_asgi_keepalive.py)
# ------------------------------------------------------------------------------------------------
# Routes under /ka/ for tests/test_asgi_keepalive.py: what an app sees when several requests come
# over one HTTP/1.1 keep-alive connection (each request its own context and a live Task, work
# after the response, cancellation inside a request, large bodies), and `keepalive_starlette`, a
# Starlette app (built on first call, so this module does not need Starlette) with
# BackgroundTasks and anyio.move_on_after.  Lines the tests wait for start with `asgi_raw: ka-`.

KA_VAR: contextvars.ContextVar = contextvars.ContextVar("asgi_raw_ka", default=None)
KA_BASE_VAR: contextvars.ContextVar = contextvars.ContextVar("asgi_raw_ka_base", default=None)
KA_BASE_VAR.set("set-at-import")  # in the worker's base context: every request must see it


def _ka_server():
    """The worker's _core.Server (the `server` local of uwsgipy.asgi's serve loop, found up the
    stack of the current frame), or None."""
    f = sys._getframe(1)
    while f is not None:
        srv = f.f_locals.get("server") if f.f_code.co_filename.endswith("asgi.py") else None
        if srv is not None and hasattr(srv, "asgi_tasks"):
            return srv
        f = f.f_back
    return None


async def ka_n(scope, receive, send):
    """The request's number back (?i=N): `ka N`."""
    await read_body(receive)
    await respond(send, 200, b"ka " + query(scope).get("i", "").encode())


async def ka_ctx(scope, receive, send):
    """What the request's context holds: KA_VAR as the request found it (None unless a previous
    request leaked it), then set to ?token=, still set after ?sleep= seconds; KA_BASE_VAR set
    at import; a var set inside a copied context does not reach this one."""
    q = query(scope)
    token = q.get("token", "")
    seen = KA_VAR.get()
    base = KA_BASE_VAR.get()
    KA_VAR.set(token)
    KA_BASE_VAR.set("changed-by-" + token)  # must not reach the next request either
    contextvars.copy_context().run(KA_VAR.set, "inner-" + token)
    await asyncio.sleep(float(q.get("sleep", "0")))
    await respond_json(send, {"seen": seen, "base": base, "after_sleep": KA_VAR.get(),
                              "base_after_sleep": KA_BASE_VAR.get()})


async def ka_task(scope, receive, send):
    """r_task's report, plus the Task's cancelling() count (0: no cancellation pending, even on
    a connection whose earlier request cancelled something)."""
    task, doc = await task_report(scope)
    doc["cancelling"] = task.cancelling() if hasattr(task, "cancelling") else 0
    await respond_json(send, doc)


async def ka_after(scope, receive, send):
    """The whole response, then ?s= seconds of work (asyncio.sleep) before the app returns;
    logs `ka-after sent TOKEN` and `ka-after done TOKEN var=V`, V being KA_VAR, which it set to
    TOKEN before responding (its context stays its own while other requests run)."""
    q = query(scope)
    token = q.get("token", "")
    KA_VAR.set(token)
    await read_body(receive)
    await respond(send, 200, b"after " + token.encode())
    log(f"ka-after sent {token}")
    await asyncio.sleep(float(q.get("s", "1.0")))
    log(f"ka-after done {token} var={KA_VAR.get()}")


async def ka_slow(scope, receive, send):
    """http.response.start, ?delay= seconds, then the body `slow TOKEN` (for pipelining)."""
    q = query(scope)
    token = q.get("token", "")
    body, _ = await read_body(receive)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await asyncio.sleep(float(q.get("delay", "0.05")))
    await send({"type": "http.response.body", "body": b"slow " + token.encode() + b" " + (body or b"")})


async def ka_cancel(scope, receive, send):
    """The app cancels its own work and answers: ?how=wait_for (asyncio.wait_for times out an
    inner sleep), timeout (asyncio.timeout, 3.11+: cancels this very Task, then uncancels it),
    child (cancels a child task and awaits it), self (the Task cancels itself and catches the
    CancelledError, then uncancels)."""
    how = query(scope).get("how", "wait_for")
    task = asyncio.current_task()
    outcome = "none"
    if how == "wait_for":
        try:
            await asyncio.wait_for(asyncio.sleep(10), 0.01)
        except asyncio.TimeoutError:
            outcome = "timed out"
    elif how == "timeout" and hasattr(asyncio, "timeout"):
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        except TimeoutError:
            outcome = "timed out"
    elif how == "child":
        child = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        child.cancel()
        try:
            await child
        except asyncio.CancelledError:
            outcome = "child cancelled"
    elif how == "self":
        task.cancel()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            outcome = "self cancelled"
            if hasattr(task, "uncancel"):
                task.uncancel()
    cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
    await respond_json(send, {"how": how, "outcome": outcome, "cancelling": cancelling})


async def ka_big(scope, receive, send):
    """?mb= MiB of pattern blocks in ONE http.response.body message (Content-Length from the app)."""
    blocks = int(float(query(scope).get("mb", "4")) * 16)
    body = b"".join(pattern_block(i) for i in range(blocks))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def ka_tasks(scope, receive, send):
    """How many asyncio tasks the worker's loop has (this request's included) and how many ASGI
    apps the server counts as running (its asgi_tasks; None when the server is not found)."""
    await read_body(receive)
    srv = _ka_server()
    pending = [t for t in asyncio.all_tasks() if not t.done()]
    await respond_json(send, {"all_tasks": len(pending),
                              "asgi_tasks": None if srv is None else srv.asgi_tasks,
                              "pid": os.getpid()})


KA_TASKS: list = []  # the Tasks /ka/which saw, kept alive so identities are not recycled


async def ka_which(scope, receive, send):
    """`task N`: N numbers the asyncio Task this request runs in (the same N: the same Task),
    in the order /ka/which first saw them (at most 1,000 kept)."""
    await read_body(receive)
    task = asyncio.current_task()
    n = next((i for i, t in enumerate(KA_TASKS) if t is task), None)
    if n is None:
        if len(KA_TASKS) >= 1000:
            KA_TASKS.clear()
        KA_TASKS.append(task)
        n = len(KA_TASKS) - 1
    await respond(send, 200, b"task %d" % n)


async def ka_exit(scope, receive, send):
    """raise SystemExit(3) before any response: the worker stops, as for its first request."""
    await read_body(receive)
    log("ka-exit raising SystemExit")
    raise SystemExit(3)


async def ka_child_cancel(scope, receive, send):
    """In the request's first step: start a child task (eagerly on 3.12+, so it is already
    waiting inside its try), cancel this request's own Task, then await the child.  As asyncio
    does for any task, the cancellation goes to the awaited child first: the child catches it
    and returns `child-result`, which the app gets (the app's own CancelledError comes only if
    the child could not be cancelled).  Answers what the app saw and the Task's cancelling()."""
    async def child():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "child-result"
        return "child-finished"

    task = asyncio.current_task()
    if sys.version_info >= (3, 12):
        kid = asyncio.Task(child(), loop=asyncio.get_running_loop(), eager_start=True)
    else:
        kid = asyncio.ensure_future(child())
    task.cancel()
    try:
        got = await kid
        seen = f"got {got}"
    except asyncio.CancelledError:
        seen = "parent cancelled"
        if hasattr(task, "uncancel"):
            task.uncancel()
    await respond_json(send, {"seen": seen, "child_done": kid.done(),
                              "cancelling": task.cancelling() if hasattr(task, "cancelling") else 0})


ROUTES.update({
    "/ka/n": ka_n,
    "/ka/exit": ka_exit,
    "/ka/child_cancel": ka_child_cancel,
    "/ka/which": ka_which,
    "/ka/ctx": ka_ctx,
    "/ka/task": ka_task,
    "/ka/after": ka_after,
    "/ka/slow": ka_slow,
    "/ka/cancel": ka_cancel,
    "/ka/big": ka_big,
    "/ka/tasks": ka_tasks,
})


def _build_keepalive_starlette():
    import contextlib

    import anyio
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def n(request):
        return PlainTextResponse("sl " + request.query_params.get("i", ""))

    async def bg_work(token, seconds):
        await asyncio.sleep(seconds)
        log(f"ka-bg done {token}")

    async def bg(request):
        token = request.query_params.get("token", "")
        seconds = float(request.query_params.get("s", "1.0"))
        return PlainTextResponse("bg " + token, background=BackgroundTask(bg_work, token, seconds))

    async def move_on(request):
        with anyio.move_on_after(0.01) as scope:
            await anyio.sleep(10)
        task = asyncio.current_task()
        return JSONResponse({"cancelled_caught": scope.cancelled_caught,
                             "cancelling": task.cancelling() if hasattr(task, "cancelling") else 0})

    async def state(request):
        return JSONResponse({"started": request.state.started})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield {"started": "ka-starlette"}

    return Starlette(lifespan=lifespan, routes=[Route("/n", n), Route("/bg", bg),
                                                Route("/move_on", move_on), Route("/state", state)])


_KA_STARLETTE = None


async def keepalive_starlette(scope, receive, send):
    """A Starlette app (plain text, BackgroundTasks, anyio.move_on_after, lifespan state)."""
    global _KA_STARLETTE
    if _KA_STARLETTE is None:
        _KA_STARLETTE = _build_keepalive_starlette()
    await _KA_STARLETTE(scope, receive, send)
