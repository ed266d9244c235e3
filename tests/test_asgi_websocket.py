"""WebSocket (RFC 6455) for ASGI apps (issue 10), end to end: uwsgipy serving
tests/apps/asgi_raw.py's WebSocket routes and tests/apps/asgi_fastapi.py's chat, with the
`websockets` library as the client and a raw-socket client where a bad client is needed.

Each exchange runs over three transports: uwsgipy's --http-socket directly, real nginx
proxy_pass with Upgrade headers (nginx-conf/http-websocket.conf) and real nginx uwsgi_pass
(nginx-conf/uwsgi-websocket.conf: nginx tunnels the connection after uwsgipy's 101).

What must hold (RFC 6455; asgiref's WebSocket 2.4 spec; /tmp/team/DESIGN-asgi.md): echo of text
and bytes, a message up to websockets-max-size and a close with 1009 above it, 1007 for invalid
UTF-8, 1002 for protocol errors (unmasked frame, RSV bits, unknown opcodes, bad control frames,
bad continuation, bad close payloads), fragmented messages with a ping between the fragments,
the close handshake with code and reason both ways, subprotocol negotiation and accept headers,
denial (403 for a close before accept, the websocket.http.response extension), server pings
(a client that never answers is closed), and the FastAPI chat with three clients.

Differential: the same exchanges driven by two independent client codecs (websockets' sans-I/O
ClientProtocol and wsproto) must get byte-identical answers from the server, which both codecs
and a strict decoder here (server frames unmasked, RSV 0, minimal length) accept.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import socket
import struct
import time
from typing import List, Optional, Tuple

import pytest

from helpers import IO_TIMEOUT, Conn, asgi_core_problem, build_request

_PROBLEM = asgi_core_problem()
if _PROBLEM:
    pytest.skip(_PROBLEM, allow_module_level=True)

# the test extra; not importorskip: a CI without websockets must fail
from websockets.asyncio.client import connect as ws_connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

RAW = ["--pythonpath", "tests/apps", "--module", "asgi_raw:application"]
MAX_KIB = 256  # --websockets-max-size of the module's servers (KiB)
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3

TRANSPORTS = ["direct", "nginx-proxy", "nginx-uwsgi"]


# ----------------------------------------------------------------------------------------------
# servers
# ----------------------------------------------------------------------------------------------

class Stack:
    def __init__(self, transport, srv, addr):
        self.transport = transport
        self.srv = srv
        self.addr = addr

    def url(self, path: str) -> str:
        return f"ws://{self.addr[0]}:{self.addr[1]}{path}"


@pytest.fixture(scope="module")
def http_srv(module_server_factory):
    return module_server_factory("--http-socket", "127.0.0.1:0", *RAW, "--websockets-max-size", str(MAX_KIB))


@pytest.fixture(scope="module")
def uwsgi_srv(module_server_factory):
    return module_server_factory("--socket", "127.0.0.1:0", *RAW, "--websockets-max-size", str(MAX_KIB))


@pytest.fixture(scope="module", params=TRANSPORTS)
def stack(request, module_nginx_factory_ws):
    if request.param == "direct":
        srv = request.getfixturevalue("http_srv")
        return Stack("direct", srv, srv.http_addr)
    if request.param == "nginx-proxy":
        srv = request.getfixturevalue("http_srv")
        return Stack("nginx-proxy", srv, module_nginx_factory_ws("http-websocket.conf", srv.http_addr).addr)
    srv = request.getfixturevalue("uwsgi_srv")
    return Stack("nginx-uwsgi", srv, module_nginx_factory_ws("uwsgi-websocket.conf", srv.uwsgi_addr).addr)


@pytest.fixture(scope="module")
def module_nginx_factory_ws(request):
    """module_nginx_factory, only asked for when a transport needs nginx (so the direct cases
    run where nginx is not installed)."""
    cache = {}

    def make(conf, upstream):
        key = (conf, str(upstream))
        if key not in cache:
            cache[key] = request.getfixturevalue("module_nginx_factory")(conf, upstream)
        return cache[key]
    return make


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def connect(stack_or_url, path: str = "/ws/echo", **kw):
    url = stack_or_url.url(path) if isinstance(stack_or_url, Stack) else stack_or_url
    kw.setdefault("open_timeout", IO_TIMEOUT)
    kw.setdefault("close_timeout", IO_TIMEOUT)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", 4 * 1024 * 1024)
    kw.setdefault("compression", None)  # uwsgipy negotiates no extension; sizes are the wire's
    return ws_connect(url, **kw)


# ----------------------------------------------------------------------------------------------
# a raw client: frames by hand, for what a well-behaved library never sends
# ----------------------------------------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes = b"", fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def decode_server_frame(buf: bytes) -> Optional[Tuple[Tuple[bool, int, int, bytes], int]]:
    """((fin, rsv, opcode, payload), bytes used) of the first frame in buf, or None when
    incomplete; asserts what RFC 6455 requires of a server's frame (5.1 no mask; 5.2 the minimal
    length encoding)."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    assert not b1 & 0x80, "RFC 6455 5.1: a server must not mask its frames"
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack("!H", buf[2:4])[0]
        assert n >= 126, "RFC 6455 5.2: the minimal number of bytes must encode the length"
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack("!Q", buf[2:10])[0]
        assert n >= 65536 and not n >> 63, "RFC 6455 5.2: minimal length, MSB 0"
        pos = 10
    if len(buf) < pos + n:
        return None
    return (bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, bytes(buf[pos:pos + n])), pos + n


class RawWS:
    def __init__(self, addr, path: str = "/ws/echo", headers=(), timeout: float = IO_TIMEOUT):
        self.c = Conn(addr, timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.c.send(build_request("GET", path, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"),
                                                *headers]))
        self.head = self.c.read_until(b"\r\n\r\n")
        assert self.head.startswith(b"HTTP/1.1 101"), self.head
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest())
        assert b"sec-websocket-accept: " + accept.lower() in self.head.lower(), self.head

    def send(self, data: bytes) -> None:
        self.c.send(data, ignore_errors=True)

    def recv_frame(self):
        """The next frame, or None on EOF."""
        while True:
            got = decode_server_frame(bytes(self.c.buf))
            if got is not None:
                f, used = got
                del self.c.buf[:used]
                return f
            if not self.c._fill():
                return None

    def expect_close(self, code: int) -> bytes:
        """Frames until the server's close: its code must be `code`; then the server closes TCP."""
        while True:
            f = self.recv_frame()
            assert f is not None, f"EOF without a close frame (expected close {code})"
            fin, rsv, op, payload = f
            if op == OP_CLOSE:
                got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                assert got == code, f"close code {got} {payload[2:]!r}, expected {code}"
                self.send(frame(OP_CLOSE, payload[:2]))
                assert self.c.wait_closed(IO_TIMEOUT), "the server did not close TCP after the close handshake"
                return payload[2:]

    def close(self) -> None:
        self.c.close()


# ----------------------------------------------------------------------------------------------
# echo, sizes, fragments
# ----------------------------------------------------------------------------------------------

def test_echo_text_and_bytes(stack):
    async def go():
        async with connect(stack) as ws:
            for msg in ["hello", "", "caf\u00e9 \u2603 \U0001d11e", "x" * 1000]:
                await ws.send(msg)
                assert await ws.recv() == msg
            for msg in [b"\x00\xffbinary", b"", os.urandom(70000)]:
                await ws.send(msg)
                got = await ws.recv()
                assert isinstance(got, bytes) and got == msg
    run(go())


def test_message_up_to_the_limit(stack):
    async def go():
        async with connect(stack) as ws:
            big = os.urandom(MAX_KIB * 1024)
            await ws.send(big)
            assert await ws.recv() == big
            text = "\u00e9" * (MAX_KIB * 512)  # exactly MAX_KIB KiB of UTF-8
            await ws.send(text)
            assert await ws.recv() == text
    run(go())


def test_message_over_the_limit_closes_1009(stack):
    async def go():
        async with connect(stack) as ws:
            await ws.send(b"y" * (MAX_KIB * 1024 + 1))
            with pytest.raises(ConnectionClosed) as ei:
                await ws.recv()
            assert ei.value.rcvd is not None and ei.value.rcvd.code == 1009, ei.value
    run(go())


def test_fragmented_message_over_the_limit_closes_1009(stack):
    async def go():
        async with connect(stack) as ws:
            piece = b"z" * (64 * 1024)
            await ws.send([piece] * (MAX_KIB // 64 + 1))
            with pytest.raises(ConnectionClosed) as ei:
                await ws.recv()
            assert ei.value.rcvd is not None and ei.value.rcvd.code == 1009, ei.value
    run(go())


def test_fragmented_messages(stack):
    async def go():
        async with connect(stack) as ws:
            await ws.send(["frag1-", "frag2-\u00e9", "frag3"])
            assert await ws.recv() == "frag1-frag2-\u00e9frag3"
            await ws.send([b"a" * 10, b"b" * 70000, b"c"])
            assert await ws.recv() == b"a" * 10 + b"b" * 70000 + b"c"
    run(go())


def test_ping_between_fragments_and_a_utf8_char_split_across_them(stack):
    ws = RawWS(stack.addr)
    try:
        snowman = "\u2603".encode()
        ws.send(frame(OP_TEXT, b"one " + snowman[:1], fin=False))
        ws.send(frame(OP_PING, b"p-1"))
        ws.send(frame(OP_CONT, snowman[1:] + b" two", fin=False))
        ws.send(frame(OP_CONT, b" three", fin=True))
        f = ws.recv_frame()
        assert f == (True, 0, OP_PONG, b"p-1"), f"the ping between fragments got {f}"
        f = ws.recv_frame()
        assert f is not None and f[2] == OP_TEXT and f[0]
        data = f[3]
        assert data == "one \u2603 two three".encode()
        ws.send(frame(OP_PING, b""))
        assert ws.recv_frame() == (True, 0, OP_PONG, b"")
        ws.send(frame(OP_PONG, b"unsolicited"))  # RFC 6455 5.5.3: ignored
        ws.send(frame(OP_TEXT, b"after"))
        assert ws.recv_frame() == (True, 0, OP_TEXT, b"after")
        ws.send(frame(OP_CLOSE, close_payload(1000)))
        assert ws.expect_close(1000) == b""
    finally:
        ws.close()


def test_frames_sent_one_byte_at_a_time(stack):
    ws = RawWS(stack.addr)
    try:
        ws.c.send_slowly(frame(OP_TEXT, "byte by byte \u00e9".encode()) + frame(OP_BIN, b"\x01" * 200), 1)
        assert ws.recv_frame() == (True, 0, OP_TEXT, "byte by byte \u00e9".encode())
        assert ws.recv_frame() == (True, 0, OP_BIN, b"\x01" * 200)
    finally:
        ws.close()


def test_websockets_ping_pong(stack):
    async def go():
        async with connect(stack) as ws:
            latency = await asyncio.wait_for(await ws.ping(b"lib-ping"), 5)
            assert latency >= 0
            await ws.send("still here")
            assert await ws.recv() == "still here"
    run(go())


# ----------------------------------------------------------------------------------------------
# protocol errors: the close code
# ----------------------------------------------------------------------------------------------

BAD = {
    "unmasked-frame": ([frame(OP_TEXT, b"no mask", mask=False)], 1002),
    "rsv1-without-extension": ([frame(OP_TEXT, b"x", rsv=4)], 1002),
    "rsv3": ([frame(OP_BIN, b"x", rsv=1)], 1002),
    "reserved-data-opcode": ([frame(0x3, b"x")], 1002),
    "reserved-control-opcode": ([frame(0xB, b"x")], 1002),
    "control-frame-over-125": ([frame(OP_PING, b"p" * 126)], 1002),
    "fragmented-control-frame": ([frame(OP_PING, b"p", fin=False)], 1002),
    "continuation-without-start": ([frame(OP_CONT, b"x")], 1002),
    "new-message-inside-fragmented": ([frame(OP_TEXT, b"a", fin=False), frame(OP_TEXT, b"b")], 1002),
    "close-payload-of-one-byte": ([frame(OP_CLOSE, b"\x03")], 1002),
    "close-code-1005-on-the-wire": ([frame(OP_CLOSE, close_payload(1005))], 1002),
    "close-code-999": ([frame(OP_CLOSE, close_payload(999))], 1002),
    "invalid-utf8-text": ([frame(OP_TEXT, b"ok \xff\xfe")], 1007),
    "invalid-utf8-across-fragments": ([frame(OP_TEXT, b"\xe2\x98", fin=False), frame(OP_CONT, b"\x41")], 1007),
    "truncated-utf8-at-message-end": ([frame(OP_TEXT, b"abc\xe2\x98")], 1007),
    "surrogate-in-text": ([frame(OP_TEXT, b"\xed\xa0\x80")], 1007),
}


@pytest.mark.parametrize("case", list(BAD))
def test_protocol_errors(stack, case):
    frames, code = BAD[case]
    m = stack.srv.mark()
    ws = RawWS(stack.addr)
    try:
        ws.send(frame(OP_TEXT, b"before"))
        assert ws.recv_frame() == (True, 0, OP_TEXT, b"before")
        for f in frames:
            ws.send(f)
        ws.expect_close(code)
    finally:
        ws.close()
    stack.srv.wait_for(re.compile(r"asgi_raw: ws-disconnect \d+"), 5, start=m)


def test_close_without_code(stack):
    """A close frame with no payload: the app's websocket.disconnect carries 1005."""
    m = stack.srv.mark()
    ws = RawWS(stack.addr)
    try:
        ws.send(frame(OP_CLOSE, b""))
        while True:
            f = ws.recv_frame()
            assert f is not None, "EOF without a close frame"
            if f[2] == OP_CLOSE:
                assert f[3] in (b"", close_payload(1000)), f
                break
        assert ws.c.wait_closed(IO_TIMEOUT)
    finally:
        ws.close()
    # this connection's disconnect: the first after its 101 (an earlier test's app may log its
    # own disconnect after the mark)
    hs = stack.srv.wait_for(lambda l: "GET /ws/echo" in l and '" 101 ' in l, 5, start=m)
    after = m + stack.srv.output().splitlines()[m:].index(hs) + 1
    line = stack.srv.wait_for(re.compile(r"asgi_raw: ws-disconnect \d+"), 5, start=after)
    assert "ws-disconnect 1005" in line, line


# ----------------------------------------------------------------------------------------------
# the close handshake
# ----------------------------------------------------------------------------------------------

def test_client_closes_with_code_and_reason(stack):
    m = stack.srv.mark()

    async def go():
        async with connect(stack) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            await ws.close(4001, "client bye \u00e9")
            return ws.close_code, ws.close_reason
    code, reason = run(go())
    assert code == 4001, "the server echoes the client's close code (RFC 6455 5.5.1)"
    line = stack.srv.wait_for(re.compile(r"asgi_raw: ws-disconnect 4001"), 5, start=m)
    assert line.endswith("client bye \u00e9"), line


def test_server_closes_with_code_and_reason(stack):
    m = stack.srv.mark()

    async def go():
        async with connect(stack) as ws:
            await ws.send("close 4002 server bye")
            with pytest.raises(ConnectionClosed) as ei:
                await ws.recv()
            return ei.value
    exc = run(go())
    assert exc.rcvd is not None and (exc.rcvd.code, exc.rcvd.reason) == (4002, "server bye"), exc
    line = stack.srv.wait_for("asgi_raw: ws-after-close", 5, start=m)
    assert "websocket.disconnect" in line, line


def test_app_exception_closes_1011(stack):
    async def go():
        async with connect(stack, "/ws/raise") as ws:
            await ws.send("boom")
            with pytest.raises(ConnectionClosed) as ei:
                await ws.recv()
            return ei.value
    exc = run(go())
    # closed, not left hanging; with a close frame, RFC 6455's 1011 (internal error)
    assert exc.rcvd is None or exc.rcvd.code == 1011, exc
    stack.srv.wait_for("asgi ws boom zzq", 5)


# ----------------------------------------------------------------------------------------------
# handshake: subprotocols, headers, scope, denial
# ----------------------------------------------------------------------------------------------

def unjson(v):
    if isinstance(v, dict):
        if set(v) == {"bytes"}:
            return v["bytes"].encode("latin-1")
        if set(v) == {"tuple"}:
            return tuple(unjson(x) for x in v["tuple"])
        return {k: unjson(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unjson(x) for x in v]
    return v


def test_subprotocol_accept_headers_and_scope(stack):
    async def go():
        async with connect(stack, "/ws/subprotocol?a=1&b=caf%C3%A9", subprotocols=["chat.v1", "chat.v2"],
                           additional_headers={"X-Custom": "ws-custom"}) as ws:
            assert ws.subprotocol == "chat.v2"
            assert ws.response.headers.get("x-ws-accepted") == "yes"
            assert ws.response.headers.get("set-cookie") == "ws=1"
            return unjson(json.loads(await ws.recv()))
    scope = run(go())
    assert scope["type"] == "websocket"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["scheme"] == "ws"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/ws/subprotocol" and scope["raw_path"] == b"/ws/subprotocol"
    assert scope["query_string"] == b"a=1&b=caf%C3%A9"
    assert scope["root_path"] == ""
    assert list(scope["subprotocols"]) == ["chat.v1", "chat.v2"]
    hs = [tuple(h) for h in scope["headers"]]
    assert all(k == k.lower() for k, _ in hs)
    assert (b"x-custom", b"ws-custom") in hs
    assert (b"sec-websocket-protocol", b"chat.v1, chat.v2") in hs
    assert (b"sec-websocket-version", b"13") in hs
    assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
    assert "websocket.http.response" in (scope.get("extensions") or {}), scope.get("extensions")
    assert scope["__state"]["db"] == "connected"


def test_no_subprotocol_offered(stack):
    async def go():
        async with connect(stack, "/ws/subprotocol") as ws:
            assert ws.subprotocol is None
            assert "sec-websocket-protocol" not in ws.response.headers
            return unjson(json.loads(await ws.recv()))
    assert list(run(go())["subprotocols"]) == []


def test_close_before_accept_is_403(stack):
    async def go():
        with pytest.raises(InvalidStatus) as ei:
            async with connect(stack, "/ws/reject"):
                pass
        return ei.value.response
    resp = run(go())
    assert resp.status_code == 403, resp


def test_websocket_http_response_denial(stack):
    async def go():
        with pytest.raises(InvalidStatus) as ei:
            async with connect(stack, "/ws/deny"):
                pass
        return ei.value.response
    resp = run(go())
    assert resp.status_code == 401, resp
    assert resp.headers.get("www-authenticate") == "Bearer"
    assert resp.body == b"denied zzq", resp.body


def test_plain_http_still_served_beside_websockets(stack):
    c = Conn(stack.addr)
    try:
        c.send(build_request("GET", "/hello", [("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, ASGI!"
    finally:
        c.close()


# ----------------------------------------------------------------------------------------------
# differential: two client codecs, one server
# ----------------------------------------------------------------------------------------------

DIFF_MESSAGES = ([("text", "t" * n) for n in (0, 1, 125, 126, 127)]
                 + [("bytes", bytes([n % 256]) * n) for n in (0, 125, 126, 65535, 65536, 70001)]
                 + [("text", "\u00e9\u2603\U0001d11e" * 1000), ("text", "ping-me")])


def _exchange_websockets(addr, path="/ws/echo") -> Tuple[bytes, List]:
    """Drive the echo with websockets' sans-I/O ClientProtocol; (server bytes after the
    handshake, the messages ClientProtocol decoded)."""
    from websockets.client import ClientProtocol
    from websockets.frames import Opcode
    from websockets.http11 import Response
    from websockets.uri import parse_uri
    proto = ClientProtocol(parse_uri(f"ws://{addr[0]}:{addr[1]}{path}"), max_size=None)
    sock = socket.create_connection(addr, timeout=IO_TIMEOUT)
    try:
        proto.send_request(proto.connect())
        sock.sendall(b"".join(proto.data_to_send()))
        raw = bytearray()
        msgs: List = []
        handshake_done = False
        deadline = time.monotonic() + 20
        while len(msgs) < len(DIFF_MESSAGES):
            assert time.monotonic() < deadline, "websockets exchange timed out"
            data = sock.recv(262144)
            assert data, f"EOF after {len(msgs)} messages"
            if handshake_done:
                raw += data
            else:
                i = data.find(b"\r\n\r\n")
                if i >= 0:
                    raw += data[i + 4:]
            proto.receive_data(data)
            for ev in proto.events_received():
                if isinstance(ev, Response):
                    assert ev.status_code == 101, ev
                    handshake_done = True
                    for kind, payload in DIFF_MESSAGES:
                        if kind == "text":
                            proto.send_text(payload.encode())
                        else:
                            proto.send_binary(payload)
                    sock.sendall(b"".join(proto.data_to_send()))
                elif ev.opcode == Opcode.TEXT:
                    msgs.append(("text", ev.data.decode()))
                elif ev.opcode == Opcode.BINARY:
                    msgs.append(("bytes", bytes(ev.data)))
            assert proto.handshake_exc is None, proto.handshake_exc
            assert proto.parser_exc is None, proto.parser_exc
        return bytes(raw), msgs
    finally:
        sock.close()


def _exchange_wsproto(addr, path="/ws/echo") -> Tuple[bytes, List]:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage
    conn = WSConnection(ConnectionType.CLIENT)
    sock = socket.create_connection(addr, timeout=IO_TIMEOUT)
    try:
        sock.sendall(conn.send(Request(host=f"{addr[0]}:{addr[1]}", target=path)))
        raw = bytearray()
        msgs: List = []
        accepted = False
        text_parts, bin_parts = [], []
        deadline = time.monotonic() + 20
        while len(msgs) < len(DIFF_MESSAGES):
            assert time.monotonic() < deadline, "wsproto exchange timed out"
            data = sock.recv(262144)
            assert data, f"EOF after {len(msgs)} messages"
            if accepted:
                raw += data
            else:
                i = data.find(b"\r\n\r\n")
                if i >= 0:
                    raw += data[i + 4:]
            conn.receive_data(data)
            for ev in conn.events():
                if isinstance(ev, AcceptConnection):
                    accepted = True
                    out = b""
                    for kind, payload in DIFF_MESSAGES:
                        out += conn.send(TextMessage(payload) if kind == "text" else BytesMessage(payload))
                    sock.sendall(out)
                elif isinstance(ev, TextMessage):
                    text_parts.append(ev.data)
                    if ev.message_finished:
                        msgs.append(("text", "".join(text_parts)))
                        text_parts = []
                elif isinstance(ev, BytesMessage):
                    bin_parts.append(ev.data)
                    if ev.message_finished:
                        msgs.append(("bytes", b"".join(bin_parts)))
                        bin_parts = []
                else:
                    raise AssertionError(f"unexpected wsproto event {ev!r}")
        return bytes(raw), msgs
    finally:
        sock.close()


def _strict_decode(raw: bytes) -> List:
    msgs = []
    pos = 0
    while pos < len(raw):
        got = decode_server_frame(raw[pos:])
        assert got is not None, f"a truncated frame at {pos} of {len(raw)}"
        (fin, rsv, op, payload), used = got
        assert rsv == 0 and fin and op in (OP_TEXT, OP_BIN), (fin, rsv, op)
        msgs.append(("text", payload.decode()) if op == OP_TEXT else ("bytes", payload))
        pos += used
    return msgs


def test_differential_two_client_codecs(stack):
    raw_a, msgs_a = _exchange_websockets(stack.addr)
    raw_b, msgs_b = _exchange_wsproto(stack.addr)
    assert msgs_a == DIFF_MESSAGES, "websockets' ClientProtocol decoded other messages than were sent"
    assert msgs_b == DIFF_MESSAGES, "wsproto decoded other messages than were sent"
    assert _strict_decode(raw_a) == DIFF_MESSAGES
    assert raw_a == raw_b, "the same messages from two client codecs got different server bytes"


# ----------------------------------------------------------------------------------------------
# server pings (direct only: its own server with a 1 s ping)
# ----------------------------------------------------------------------------------------------

def test_server_ping_and_a_client_that_never_pongs(server_factory):
    s = server_factory("--http-socket", "127.0.0.1:0", *RAW, "--websockets-ping-freq", "1",
                       "--websockets-pong-tolerance", "1")
    m = s.mark()
    # a client that answers: two pings, two pongs, and the connection still works
    good = RawWS(s.http_addr, "/ws/echo")
    bad = RawWS(s.http_addr, "/ws/idle")
    try:
        t0 = time.monotonic()
        for i in range(2):
            f = good.recv_frame()
            assert f is not None and f[2] == OP_PING, f
            good.send(frame(OP_PONG, f[3]))
        assert time.monotonic() - t0 < 4, "two pings at a 1 s ping frequency took too long"
        good.send(frame(OP_TEXT, b"alive"))
        while True:
            f = good.recv_frame()
            assert f is not None
            if f[2] == OP_PING:
                good.send(frame(OP_PONG, f[3]))
                continue
            assert f == (True, 0, OP_TEXT, b"alive")
            break
        # the client that never answers: pinged, then closed within ping + tolerance (+ slack)
        f = bad.recv_frame()
        assert f is not None and f[2] == OP_PING, f
        deadline = time.monotonic() + 5
        while True:
            f = bad.recv_frame()
            if f is None or f[2] == OP_CLOSE:
                break
            assert f[2] == OP_PING, f
            assert time.monotonic() < deadline, "a client that never pongs was not closed"
        assert bad.c.wait_closed(5)
        s.wait_for(re.compile(r"asgi_raw: ws-idle end websocket.disconnect"), 5, start=m)
    finally:
        good.close()
        bad.close()


# ----------------------------------------------------------------------------------------------
# the FastAPI chat, three clients
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fastapi_srv(module_server_factory):
    return module_server_factory("--http-socket", "127.0.0.1:0", "--pythonpath", "tests/apps",
                                 "--module", "asgi_fastapi:app")


async def recv_until(ws, text: str, limit: int = 20) -> List[str]:
    seen = []
    for _ in range(limit):
        msg = await asyncio.wait_for(ws.recv(), 10)
        seen.append(msg)
        if msg == text:
            return seen
    raise AssertionError(f"no {text!r} in {seen}")


def test_fastapi_chat_three_clients(fastapi_srv):
    base = f"ws://{fastapi_srv.http_addr[0]}:{fastapi_srv.http_addr[1]}/chat"

    async def go():
        alice = await connect(f"{base}/alice")
        assert await alice.recv() == "welcome alice (1 here)"
        await recv_until(alice, "alice joined")
        bob = await connect(f"{base}/bob")
        assert await bob.recv() == "welcome bob (2 here)"
        await recv_until(bob, "bob joined")
        await recv_until(alice, "bob joined")
        carol = await connect(f"{base}/carol")
        assert await carol.recv() == "welcome carol (3 here)"
        for ws in (alice, bob, carol):
            await recv_until(ws, "carol joined")
        await alice.send("hi all")
        for ws in (alice, bob, carol):
            assert await asyncio.wait_for(ws.recv(), 10) == "alice: hi all"
        await carol.send("\u00e9t\u00e9 \u2603")
        for ws in (alice, bob, carol):
            assert await asyncio.wait_for(ws.recv(), 10) == "carol: \u00e9t\u00e9 \u2603"
        await bob.close()
        for ws in (alice, carol):
            assert await asyncio.wait_for(ws.recv(), 10) == "bob left"
        await alice.close()
        assert await asyncio.wait_for(carol.recv(), 10) == "alice left"
        await carol.close()
    run(go())


def test_a_long_close_reason_is_cut_at_a_character_boundary(http_srv):
    """RFC 6455 §5.5.1: the reason is UTF-8 and the close payload at most 125 bytes; a reason
    the app gives longer is cut, never inside a character (100 × "é" is 200 bytes)."""
    async def go():
        async with connect(f"ws://{http_srv.http_addr[0]}:{http_srv.http_addr[1]}/ws/echo") as ws:
            await ws.send("close 4003 " + "é" * 100)
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code, ws.close_reason

    code, reason = run(go())
    assert code == 4003, (code, reason)
    assert reason == "é" * 61, (len(reason.encode()), reason[:5])


def test_bytes_sent_before_accept_are_bounded(http_srv):
    """A client that floods before the app accepted: the server reads ahead a bounded amount
    (UPY_ASGI_PIPELINE_MAX), so its memory stays flat while the app makes it wait."""
    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.create_connection(http_srv.http_addr, timeout=IO_TIMEOUT)
    try:
        s.sendall((f"GET /ws/slow_accept HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        s.setblocking(False)
        chunk = frame(OP_BIN, b"\0" * 65000)
        sent, deadline = 0, time.monotonic() + 3
        while time.monotonic() < deadline and sent < 200 * 1024 * 1024:
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        s.close()
    assert sent < 64 * 1024 * 1024, f"{sent} bytes were taken before the 101"
