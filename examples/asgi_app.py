"""A raw ASGI 3.0 app with no dependencies: "hello" over HTTP, a WebSocket echo, lifespan.

    uwsgipy --http-socket :8000 --wsgi-file examples/asgi_app.py --callable app

    curl http://127.0.0.1:8000/                     # hello from uwsgipy (ASGI)
    python -m websockets ws://127.0.0.1:8000/echo   # (pip install websockets) type, get it back

uwsgipy serves it as ASGI because ``app`` is an ``async def`` function (``asgi = auto``).
The scopes and events are those of asgiref's ASGI specification: "HTTP & WebSocket ASGI
Message Format" (spec_version 2.4) and "Lifespan Protocol" (2.0).
"""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    elif scope["type"] == "websocket":
        await echo(scope, receive, send)
    elif scope["type"] == "http":
        await hello(scope, receive, send)


async def lifespan(scope, receive, send):
    """Once per worker: what the app opens at startup goes in scope["state"], and every
    request's scope gets a shallow copy of it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["greeting"] = b"hello from uwsgipy (ASGI)\n"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello(scope, receive, send):
    # read the request body (http.request events until more_body is false)
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    body = scope.get("state", {}).get("greeting", b"hello\n")
    if scope["path"] == "/echo":
        body = b"GET /echo with Upgrade: websocket for the WebSocket echo\n"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def echo(scope, receive, send):
    """Each text or binary message back as it came; close 1000 on "bye"."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if scope["path"] != "/echo":
        await send({"type": "websocket.close", "code": 1008})  # before accept: 403
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "bye":
            await send({"type": "websocket.close", "code": 1000, "reason": "bye"})
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
