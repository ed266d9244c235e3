"""Raw ASGI 3.0 hello world and WebSocket echo for the ASGI scenarios (asgiref spec:
HTTP 2.4, WebSocket 2.4, Lifespan 2.0).

- http: the same 13-byte body and headers as bench/apps/hello.py, built once at import, so
  the measurement is the server's per-request cost, not the app's;
- websocket: accept, then send every message back as it came (text as text, bytes as bytes)
  until the client disconnects (the ws-echo scenario);
- lifespan: startup and shutdown complete at once, so every server runs the same start-up.

Serve with: --module asgi_hello:app (pythonpath bench/apps), or the file itself.
"""

BODY = b"Hello, World!"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
BODY_MSG = {"type": "http.response.body", "body": BODY}
ACCEPT = {"type": "websocket.accept"}


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        await send(START)
        await send(BODY_MSG)
    elif kind == "websocket":
        msg = await receive()  # websocket.connect
        if msg["type"] != "websocket.connect":
            return
        await send(ACCEPT)
        while True:
            msg = await receive()
            if msg["type"] != "websocket.receive":
                return  # websocket.disconnect
            text = msg.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": msg.get("bytes") or b""})
    elif kind == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


application = app
