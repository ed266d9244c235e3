"""Starlette hello world for the starlette-hello scenario: one route, `/`, answering the
13-byte body as PlainTextResponse (Starlette adds `content-type: text/plain;
charset=utf-8` and `content-length`).  The same app object for every server.

Serve with: --module starlette_hello:app (pythonpath bench/apps), or the file itself.
"""
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request):
    return PlainTextResponse("Hello, World!")


app = Starlette(routes=[Route("/", hello)])
application = app
