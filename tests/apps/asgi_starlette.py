"""A Starlette app for tests/test_asgi_frameworks.py: plain text, JSON, the request body,
StreamingResponse, a redirect, a mounted sub-application (root_path), a WebSocket echo route
and the lifespan state.

Serve with: --pythonpath tests/apps --module asgi_starlette:app
"""
from __future__ import annotations

import hashlib
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


def pattern_block(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * 2048


async def index(request):
    return PlainTextResponse("starlette ok")


async def json_echo(request):
    doc = await request.json()
    return JSONResponse({"received": doc, "method": request.method})


async def body(request):
    data = await request.body()
    return JSONResponse({"len": len(data), "sha256": hashlib.sha256(data).hexdigest()})


async def stream(request):
    blocks = int(request.query_params.get("blocks", "160"))

    async def gen():
        for i in range(blocks):
            yield pattern_block(i)
    return StreamingResponse(gen(), media_type="application/octet-stream")


async def headers(request):
    return JSONResponse({"headers": [[k, v] for k, v in request.headers.items()],
                         "client": list(request.client) if request.client else None,
                         "url": str(request.url)})


async def go(request):
    return RedirectResponse(request.url_for("index"), status_code=302)


async def state(request):
    return JSONResponse({"started": request.state.started})


async def sub_where(request):
    return JSONResponse({"root_path": request.scope.get("root_path"), "path": request.scope["path"],
                         "url_for": str(request.url_for("sub_where"))})


async def ws_echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") is not None:
                await websocket.send_text("echo " + msg["text"])
            else:
                await websocket.send_bytes(msg.get("bytes") or b"")
    except WebSocketDisconnect:
        return


@asynccontextmanager
async def lifespan(app):
    yield {"started": "starlette-lifespan"}


sub = Starlette(routes=[Route("/where", sub_where, name="sub_where")])

app = Starlette(lifespan=lifespan, routes=[
    Route("/", index, name="index"),
    Route("/json", json_echo, methods=["POST"]),
    Route("/body", body, methods=["POST", "PUT"]),
    Route("/stream", stream),
    Route("/headers", headers),
    Route("/redirect", go),
    Route("/state", state),
    WebSocketRoute("/ws", ws_echo),
    Mount("/sub", app=sub),
])
