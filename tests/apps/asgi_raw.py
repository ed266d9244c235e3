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


async def r_task(scope, receive, send):
    """The app runs in an asyncio Task of its own: asyncio.current_task() is a Task (anyio and
    Starlette need one), the same one after an await that suspends, whose stack and repr show
    the app's coroutine (`application`, as for a task that runs it directly); a ContextVar set
    here is not seen by the next request (each task has its own copy of the context)."""
    task = asyncio.current_task()
    seen = REQUEST_VAR.get()
    REQUEST_VAR.set(query(scope).get("token", ""))
    await asyncio.sleep(0)
    same = asyncio.current_task() is task
    await asyncio.sleep(0.001)
    await respond_json(send, {
        "is_task": isinstance(task, asyncio.Task), "same_after_await": same,
        "same_after_sleep": asyncio.current_task() is task, "seen_var": seen,
        "stack_names_app": any(f.f_code.co_name == "application" for f in task.get_stack()),
        "repr_names_app": "application()" in repr(task), "all_tasks_has_it": task in asyncio.all_tasks(),
        "done": task.done()})


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


