"""A FastAPI app for tests/test_asgi_frameworks.py: path, query and body params validated by
pydantic, JSON, StreamingResponse, FileResponse, a WebSocket chat that broadcasts to every
connected client, and a dependency that reads the lifespan state (scope["state"]).

Serve with: --pythonpath tests/apps --module asgi_fastapi:app
"""
from __future__ import annotations

import asyncio
import hashlib
import os
from contextlib import asynccontextmanager
from typing import List, Optional

from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field


def pattern_block(i: int) -> bytes:
    """64 KiB block i of the deterministic download pattern (tests/helpers.py has the same)."""
    return hashlib.sha256(str(i).encode()).digest() * 2048


class FakeDB:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queries = 0

    def query(self) -> dict:
        self.queries += 1
        return {"pid": self.pid, "queries": self.queries}


@asynccontextmanager
async def lifespan(app: FastAPI):
    db = FakeDB()
    yield {"db": db, "started": "yes"}  # the lifespan state: each request's request.state


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)
    tags: List[str] = []


def get_db(request: Request) -> FakeDB:
    return request.state.db


@app.get("/")
async def index():
    return {"hello": "fastapi"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None):
    return {"item_id": item_id, "q": q}


@app.post("/items/{item_id}")
async def update_item(item_id: int, item: Item):
    return {"item_id": item_id, "name": item.name, "total": round(item.price * 1.2, 2), "tags": item.tags}


@app.post("/echo")
async def echo(request: Request):
    body = await request.body()
    return {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@app.get("/stream")
async def stream(blocks: int = 160):
    async def gen():
        for i in range(blocks):
            yield pattern_block(i)
            if i % 32 == 0:
                await asyncio.sleep(0)
    return StreamingResponse(gen(), media_type="application/octet-stream")


@app.get("/file")
async def file(path: str):
    return FileResponse(path, media_type="application/octet-stream", filename="download.bin")


@app.get("/db")
async def db_info(request: Request, db: FakeDB = Depends(get_db)):
    return {"db": db.query(), "started": request.state.started}


@app.get("/root_path")
async def root_path(request: Request):
    return {"root_path": request.scope.get("root_path"), "path": request.scope["path"],
            "url": str(request.url_for("root_path"))}


@app.get("/text", response_class=PlainTextResponse)
async def text():
    return "plain fastapi"


class Chat:
    """Every connected client gets every message (and the joins and leaves)."""

    def __init__(self) -> None:
        self.clients: List[WebSocket] = []

    async def broadcast(self, text: str) -> None:
        for ws in list(self.clients):
            try:
                await ws.send_text(text)
            except Exception:  # noqa: BLE001 - a client that left is dropped
                if ws in self.clients:
                    self.clients.remove(ws)


chat = Chat()


@app.websocket("/chat/{name}")
async def chat_endpoint(websocket: WebSocket, name: str):
    await websocket.accept()
    chat.clients.append(websocket)
    await websocket.send_text(f"welcome {name} ({len(chat.clients)} here)")
    await chat.broadcast(f"{name} joined")
    try:
        while True:
            text = await websocket.receive_text()
            await chat.broadcast(f"{name}: {text}")
    except WebSocketDisconnect:
        if websocket in chat.clients:
            chat.clients.remove(websocket)
        await chat.broadcast(f"{name} left")


@app.websocket("/ws/json")
async def ws_json(websocket: WebSocket):
    await websocket.accept()
    while True:
        try:
            doc = await websocket.receive_json()
        except WebSocketDisconnect:
            return
        await websocket.send_json({"got": doc, "state": websocket.state.started})
