"""ctypes access to the pure-C parsers (csrc/upy_http.c, csrc/upy_uwsgi.c, csrc/upy_fastcgi.c,
csrc/upy_scgi.c, and the CGI-vars reading they share, csrc/upy_cgivars.c).

Test-only: compiles the sources into a shared library with gcc and wraps
the upy_parse.h API in plain-Python results, so Hypothesis can drive the C
code directly (no server, no extension module build).

    lib = build(out_dir)            # once per session (see the fixture)
    lib.parse_http(b"GET / ...")    # dict | ("error", status) | "incomplete"
    lib.decode_chunked(data, [3, 1, 7])
    lib.parse_uwsgi(packet)
    lib.parse_fcgi(records)         # dict | ("error", status, reason) | "incomplete"
    lib.decode_fcgi_stdin(records, request_id, expected, [3, 1, 7])
    lib.parse_scgi(netstring)

The struct layouts below mirror upy_parse.h and must be kept in step with it.
"""
from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

__all__ = ["CParsers", "build", "SOURCES"]

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCES = (CSRC / "upy_http.c", CSRC / "upy_uwsgi.c", CSRC / "upy_cgivars.c",
           CSRC / "upy_fastcgi.c", CSRC / "upy_scgi.c")

UPY_PARSE_ERROR = -1
UPY_PARSE_INCOMPLETE = -2
UPY_TRAILER_NAME_MAX = 19
LIMIT_REQUEST_LINE = 8190  # the server's defaults (limit-request-line, ...-field-size)
LIMIT_REQUEST_FIELD_SIZE = 8190

HttpResult = Union[dict, tuple, str]


class upy_str(ctypes.Structure):
    _fields_ = [("p", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class upy_field(ctypes.Structure):
    _fields_ = [("name", upy_str), ("value", upy_str)]


class upy_limits(ctypes.Structure):
    _fields_ = [
        ("max_head", ctypes.c_size_t),
        ("max_fields", ctypes.c_size_t),
        ("limit_post", ctypes.c_uint64),
        ("max_request_line", ctypes.c_size_t),
        ("max_field_size", ctypes.c_size_t),
    ]


class upy_request(ctypes.Structure):
    _fields_ = [
        ("proto", ctypes.c_int),
        ("method", upy_str),
        ("target", upy_str),
        ("path", upy_str),
        ("query", upy_str),
        ("minor_version", ctypes.c_int),
        ("fields", ctypes.POINTER(upy_field)),
        ("fields_cap", ctypes.c_size_t),
        ("num_fields", ctypes.c_size_t),
        ("content_length", ctypes.c_int64),
        ("chunked", ctypes.c_uint, 1),
        ("keep_alive", ctypes.c_uint, 1),
        ("expect_continue", ctypes.c_uint, 1),
        ("is_head", ctypes.c_uint, 1),
        ("https", ctypes.c_uint, 1),
        ("error_status", ctypes.c_int),
        ("error_reason", ctypes.c_char_p),
    ]


class upy_chunked_decoder(ctypes.Structure):
    _fields_ = [
        ("state", ctypes.c_int),
        ("remaining", ctypes.c_uint64),
        ("line_len", ctypes.c_size_t),
        ("trailer_len", ctypes.c_size_t),
        ("total", ctypes.c_uint64),
        ("error_status", ctypes.c_int),
        ("error_reason", ctypes.c_char_p),
        ("name_len", ctypes.c_ubyte),
        ("name", ctypes.c_char * UPY_TRAILER_NAME_MAX),
    ]


class upy_uwsgi_header(ctypes.Structure):
    _fields_ = [
        ("modifier1", ctypes.c_uint8),
        ("datasize", ctypes.c_uint16),
        ("modifier2", ctypes.c_uint8),
    ]


class upy_fcgi_record(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint8),
        ("type", ctypes.c_uint8),
        ("request_id", ctypes.c_uint16),
        ("content_length", ctypes.c_uint16),
        ("padding_length", ctypes.c_uint8),
    ]


class upy_fcgi_head(ctypes.Structure):
    # keep_conn, stdin_ended, compacted are C bit-fields: read through
    # upy_test_fcgi_flags, not through this mirror (_bits only holds their room)
    _fields_ = [
        ("action", ctypes.c_int),
        ("type", ctypes.c_uint8),
        ("request_id", ctypes.c_uint16),
        ("role", ctypes.c_uint16),
        ("_bits", ctypes.c_uint16),
        ("params_off", ctypes.c_size_t),
        ("params_len", ctypes.c_size_t),
        ("content", ctypes.c_void_p),
        ("content_len", ctypes.c_size_t),
    ]


class upy_fcgi_stdin_decoder(ctypes.Structure):
    _fields_ = [
        ("state", ctypes.c_int),
        ("request_id", ctypes.c_uint16),
        ("hdr", ctypes.c_ubyte * 8),
        ("hdr_have", ctypes.c_size_t),
        ("content_left", ctypes.c_size_t),
        ("pad_left", ctypes.c_size_t),
        ("total", ctypes.c_uint64),
        ("expected", ctypes.c_int64),
        ("error_status", ctypes.c_int),
        ("error_reason", ctypes.c_char_p),
    ]


FCGI_ACTIONS = ("head", "skip", "get_values", "unknown", "bad_role")

# sizeof of each mirrored struct (and the offsets after bit-fields), compiled
# in with the parsers, so a layout that drifts from upy_parse.h fails loudly
# instead of corrupting memory.
_SIZES_C = """
#include <stddef.h>
#include "upy_parse.h"
size_t upy_test_sizeof(int which)
{
    switch (which) {
    case 0: return sizeof(upy_limits);
    case 1: return sizeof(upy_request);
    case 2: return sizeof(upy_chunked_decoder);
    case 3: return sizeof(upy_uwsgi_header);
    case 4: return sizeof(upy_fcgi_record);
    case 5: return sizeof(upy_fcgi_head);
    case 6: return sizeof(upy_fcgi_stdin_decoder);
    case 100: return offsetof(upy_fcgi_head, params_off);
    case 101: return offsetof(upy_fcgi_head, content);
    case 102: return offsetof(upy_request, error_status);
    case 103: return offsetof(upy_fcgi_stdin_decoder, error_status);
    default: return 0;
    }
}
/* keep_conn | stdin_ended << 1 | compacted << 2 */
unsigned upy_test_fcgi_flags(const upy_fcgi_head *h)
{
    return h->keep_conn | h->stdin_ended << 1 | h->compacted << 2;
}
"""


def build(out_dir: Path, cc: str = "gcc") -> "CParsers":
    """Compile the parsers into out_dir/libupyparse.so and load it."""
    out = Path(out_dir) / "libupyparse.so"
    sizes = Path(out_dir) / "upy_test_sizes.c"
    sizes.write_text(_SIZES_C)
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-g", "-D_GNU_SOURCE",
           "-shared", "-fPIC", f"-I{CSRC}", "-o", str(out), *map(str, SOURCES), str(sizes)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"building {out} failed:\n{' '.join(cmd)}\n{res.stderr}")
    return CParsers(out)


class CParsers:
    """The C API with Python values in and out."""

    MAX_FIELDS = 16384  # a 64 KiB uwsgi block holds at most 65535 // 4 vars

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        lib.upy_http_parse_request.restype = ctypes.c_ssize_t
        lib.upy_http_parse_request.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
            ctypes.POINTER(upy_request), ctypes.POINTER(upy_limits)]
        lib.upy_chunked_init.restype = None
        lib.upy_chunked_init.argtypes = [ctypes.POINTER(upy_chunked_decoder)]
        lib.upy_chunked_decode.restype = ctypes.c_ssize_t
        lib.upy_chunked_decode.argtypes = [
            ctypes.POINTER(upy_chunked_decoder), ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t), ctypes.c_uint64]
        lib.upy_uwsgi_parse_header.restype = ctypes.c_int
        lib.upy_uwsgi_parse_header.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(upy_uwsgi_header)]
        lib.upy_uwsgi_parse_vars.restype = ctypes.c_int
        lib.upy_uwsgi_parse_vars.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(upy_request),
            ctypes.POINTER(upy_limits)]
        lib.upy_uwsgi_looks_like_http.restype = ctypes.c_int
        lib.upy_uwsgi_looks_like_http.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.upy_fcgi_parse_head.restype = ctypes.c_ssize_t
        lib.upy_fcgi_parse_head.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(upy_request),
            ctypes.POINTER(upy_limits), ctypes.POINTER(upy_fcgi_head)]
        lib.upy_fcgi_parse_params.restype = ctypes.c_int
        lib.upy_fcgi_parse_params.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(upy_request),
            ctypes.POINTER(upy_limits)]
        lib.upy_fcgi_parse_record.restype = ctypes.c_int
        lib.upy_fcgi_parse_record.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(upy_fcgi_record)]
        lib.upy_fcgi_get_values_result.restype = ctypes.c_ssize_t
        lib.upy_fcgi_get_values_result.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_ulong, ctypes.c_ulong,
            ctypes.c_void_p, ctypes.c_size_t]
        lib.upy_fcgi_stdin_init.restype = None
        lib.upy_fcgi_stdin_init.argtypes = [
            ctypes.POINTER(upy_fcgi_stdin_decoder), ctypes.c_uint, ctypes.c_int64]
        lib.upy_fcgi_stdin_decode.restype = ctypes.c_ssize_t
        lib.upy_fcgi_stdin_decode.argtypes = [
            ctypes.POINTER(upy_fcgi_stdin_decoder), ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t), ctypes.c_uint64]
        lib.upy_scgi_parse_head.restype = ctypes.c_ssize_t
        lib.upy_scgi_parse_head.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(upy_request),
            ctypes.POINTER(upy_limits)]
        lib.upy_test_fcgi_flags.restype = ctypes.c_uint
        lib.upy_test_fcgi_flags.argtypes = [ctypes.POINTER(upy_fcgi_head)]
        lib.upy_test_sizeof.restype = ctypes.c_size_t
        lib.upy_test_sizeof.argtypes = [ctypes.c_int]
        for i, t in enumerate((upy_limits, upy_request, upy_chunked_decoder, upy_uwsgi_header,
                               upy_fcgi_record, upy_fcgi_head, upy_fcgi_stdin_decoder)):
            if lib.upy_test_sizeof(i) != ctypes.sizeof(t):
                raise RuntimeError(f"{t.__name__}: ctypes mirror is {ctypes.sizeof(t)} bytes, "
                                   f"upy_parse.h says {lib.upy_test_sizeof(i)}: update "
                                   "tests/_parsers_ctypes.py")
        for i, (t, field) in enumerate(((upy_fcgi_head, "params_off"), (upy_fcgi_head, "content"),
                                        (upy_request, "error_status"),
                                        (upy_fcgi_stdin_decoder, "error_status"))):
            if lib.upy_test_sizeof(100 + i) != getattr(t, field).offset:
                raise RuntimeError(f"{t.__name__}.{field}: ctypes mirror at "
                                   f"{getattr(t, field).offset}, upy_parse.h says "
                                   f"{lib.upy_test_sizeof(100 + i)}: update tests/_parsers_ctypes.py")
        self.lib = lib
        self._fields = (upy_field * self.MAX_FIELDS)()

    # -- helpers ---------------------------------------------------------
    @staticmethod
    def _slice(data: bytes, base: int, s: upy_str) -> bytes:
        if s.len == 0:
            return b""
        off = s.p - base
        assert 0 <= off and off + s.len <= len(data), "slice outside the input"
        return data[off:off + s.len]

    def _request_dict(self, data: bytes, base: int, req: upy_request) -> dict:
        assert req.num_fields <= self.MAX_FIELDS
        fields = [(self._slice(data, base, self._fields[i].name),
                   self._slice(data, base, self._fields[i].value))
                  for i in range(req.num_fields)]
        return {
            "method": self._slice(data, base, req.method),
            "target": self._slice(data, base, req.target),
            "path": self._slice(data, base, req.path),
            "query": self._slice(data, base, req.query),
            "minor_version": req.minor_version,
            "fields": fields,
            "content_length": req.content_length,
            "chunked": bool(req.chunked),
            "keep_alive": bool(req.keep_alive),
            "expect_continue": bool(req.expect_continue),
            "is_head": bool(req.is_head),
            "https": bool(req.https),
        }

    def _new_request(self) -> upy_request:
        req = upy_request()
        req.fields = ctypes.cast(self._fields, ctypes.POINTER(upy_field))
        req.fields_cap = self.MAX_FIELDS
        return req

    # -- HTTP --------------------------------------------------------------
    def parse_http(self, data: bytes, max_head: int = 65535, max_fields: int = 100,
                   limit_post: int = 0, last_len: int = 0,
                   max_request_line: int = LIMIT_REQUEST_LINE,
                   max_field_size: int = LIMIT_REQUEST_FIELD_SIZE) -> HttpResult:
        """One call of upy_http_parse_request on data (limits as in upy_limits;
        0 = none for the two line limits).

        Returns "incomplete", ("error", status), or a dict of the request with
        "consumed" (the head length).
        """
        buf = ctypes.create_string_buffer(data, len(data))
        base = ctypes.addressof(buf)
        req = self._new_request()
        lim = upy_limits(max_head, min(max_fields, self.MAX_FIELDS), limit_post,
                         max_request_line, max_field_size)
        n = self.lib.upy_http_parse_request(base, len(data), last_len,
                                            ctypes.byref(req), ctypes.byref(lim))
        if n == UPY_PARSE_INCOMPLETE:
            return "incomplete"
        if n == UPY_PARSE_ERROR:
            assert req.error_reason, "error without a reason"
            return ("error", req.error_status)
        assert 0 < n <= len(data)
        out = self._request_dict(data, base, req)
        out["consumed"] = n
        return out

    # -- chunked -----------------------------------------------------------
    def decode_chunked(self, data: bytes, feed_sizes: Iterable[int] = (),
                       max_body: int = 0) -> tuple:
        """Feed data to one decoder in pieces of feed_sizes (cycled; the
        rest in one piece when feed_sizes is empty or all zero).

        Returns ("ok", body, trailing) with trailing = the bytes after the
        chunked body, ("incomplete", body_so_far), or ("error", status, body_so_far).
        """
        d = upy_chunked_decoder()
        self.lib.upy_chunked_init(ctypes.byref(d))
        sizes: Sequence[int] = [s for s in feed_sizes if s >= 0]
        body = bytearray()
        pos, k = 0, 0
        while True:
            if sizes and any(sizes):
                size = sizes[k % len(sizes)]
                k += 1
            else:
                size = len(data) - pos
            piece = data[pos:pos + size]
            pos += len(piece)
            buf = ctypes.create_string_buffer(piece, len(piece))
            ln = ctypes.c_size_t(len(piece))
            r = self.lib.upy_chunked_decode(ctypes.byref(d), buf, ctypes.byref(ln), max_body)
            assert ln.value <= len(piece)
            body += buf.raw[:ln.value]
            if r == UPY_PARSE_ERROR:
                assert d.error_reason
                return ("error", d.error_status, bytes(body))
            if r >= 0:
                assert ln.value + r <= len(piece)
                trailing = buf.raw[ln.value:ln.value + r] + data[pos:]
                assert d.total == len(body)
                return ("ok", bytes(body), trailing)
            assert r == UPY_PARSE_INCOMPLETE
            if pos >= len(data):
                return ("incomplete", bytes(body))

    # -- uwsgi -------------------------------------------------------------
    def parse_uwsgi(self, packet: bytes, max_fields: int = MAX_FIELDS,
                    limit_post: int = 0, max_head: int = 65535) -> Any:
        """Header + vars of a whole packet.

        Returns "incomplete" (fewer than 4 + datasize bytes), ("error", status),
        or a dict with modifier1, modifier2, vars (list of (key, value)),
        the request fields as parse_http, and rest (bytes after the vars).
        """
        buf = ctypes.create_string_buffer(packet, len(packet))
        base = ctypes.addressof(buf)
        h = upy_uwsgi_header()
        r = self.lib.upy_uwsgi_parse_header(base, len(packet), ctypes.byref(h))
        if r == UPY_PARSE_INCOMPLETE:
            return "incomplete"
        assert r == 4
        if len(packet) < 4 + h.datasize:
            return "incomplete"
        req = self._new_request()
        lim = upy_limits(max_head, min(max_fields, self.MAX_FIELDS), limit_post)
        r = self.lib.upy_uwsgi_parse_vars(base + 4, h.datasize, ctypes.byref(req),
                                          ctypes.byref(lim))
        if r == UPY_PARSE_ERROR:
            assert req.error_reason
            return ("error", req.error_status)
        assert r == 0 and req.proto == 1
        out = self._request_dict(packet, base, req)
        out["vars"] = out.pop("fields")
        out["modifier1"] = h.modifier1
        out["modifier2"] = h.modifier2
        out["rest"] = packet[4 + h.datasize:]
        return out

    def looks_like_http(self, data: bytes) -> bool:
        buf = ctypes.create_string_buffer(data, len(data))
        return bool(self.lib.upy_uwsgi_looks_like_http(buf, len(data)))

    # -- FastCGI -------------------------------------------------------------
    def parse_fcgi(self, data: bytes, max_head: int = 65535, max_fields: int = MAX_FIELDS,
                   limit_post: int = 0) -> Any:
        """One call of upy_fcgi_parse_head on a copy of data (the decoder may
        compact it in place).

        Returns "incomplete", ("error", status, reason), or a dict: consumed,
        action (a name of FCGI_ACTIONS), type, request_id, role, keep_conn,
        stdin_ended, compacted, params (the PARAMS block bytes), content
        (GET_VALUES), vars, the request fields as parse_http, and buffer
        (the bytes after the call).
        """
        buf = ctypes.create_string_buffer(data, len(data))
        base = ctypes.addressof(buf)
        req = self._new_request()
        lim = upy_limits(max_head, min(max_fields, self.MAX_FIELDS), limit_post)
        h = upy_fcgi_head()
        n = self.lib.upy_fcgi_parse_head(base, len(data), ctypes.byref(req), ctypes.byref(lim),
                                         ctypes.byref(h))
        if n == UPY_PARSE_INCOMPLETE:
            return "incomplete"
        if n == UPY_PARSE_ERROR:
            assert req.error_reason and req.error_status in (400, 413, 431)
            return ("error", req.error_status, req.error_reason.decode())
        assert 0 < n <= len(data), n
        after = buf.raw[:len(data)]
        flags = self.lib.upy_test_fcgi_flags(ctypes.byref(h))
        out = {"consumed": n, "action": FCGI_ACTIONS[h.action], "type": h.type,
               "request_id": h.request_id, "role": h.role, "keep_conn": bool(flags & 1),
               "stdin_ended": bool(flags & 2), "compacted": bool(flags & 4), "buffer": after}
        if h.action == 0:
            assert h.params_off + h.params_len <= n
            assert req.proto == 2
            out.update(self._request_dict(after, base, req))
            out["vars"] = out.pop("fields")
            out["params"] = after[h.params_off:h.params_off + h.params_len]
        elif h.action == 2:
            off = (h.content or base) - base
            assert 0 <= off and off + h.content_len <= n
            out["content"] = after[off:off + h.content_len]
        return out

    def parse_fcgi_params(self, block: bytes, max_fields: int = MAX_FIELDS,
                          limit_post: int = 0) -> Any:
        """upy_fcgi_parse_params: ("error", status) or the request dict with vars."""
        buf = ctypes.create_string_buffer(block, len(block))
        base = ctypes.addressof(buf)
        req = self._new_request()
        lim = upy_limits(65535, min(max_fields, self.MAX_FIELDS), limit_post)
        r = self.lib.upy_fcgi_parse_params(base, len(block), ctypes.byref(req), ctypes.byref(lim))
        if r == UPY_PARSE_ERROR:
            assert req.error_reason
            return ("error", req.error_status)
        assert r == 0
        out = self._request_dict(block, base, req)
        out["vars"] = out.pop("fields")
        return out

    def fcgi_get_values_result(self, content: bytes, max_conns: int, max_reqs: int,
                               out_cap: int = 1 << 17) -> Optional[bytes]:
        """The GET_VALUES_RESULT record for content, or None when the call fails."""
        src = ctypes.create_string_buffer(content, len(content))
        out = ctypes.create_string_buffer(max(out_cap, 1))
        n = self.lib.upy_fcgi_get_values_result(src, len(content), max_conns, max_reqs, out,
                                                out_cap)
        if n < 0:
            assert n == -1
            return None
        assert 8 <= n <= out_cap
        return out.raw[:n]

    def decode_fcgi_stdin(self, data: bytes, request_id: int, expected: int = -1,
                          feed_sizes: Iterable[int] = (), max_body: int = 0) -> tuple:
        """The STDIN decoder of request_id fed data in pieces of feed_sizes
        (as decode_chunked).  Returns ("ok", body, trailing),
        ("incomplete", body_so_far) or ("error", status, body_so_far)."""
        d = upy_fcgi_stdin_decoder()
        self.lib.upy_fcgi_stdin_init(ctypes.byref(d), request_id, expected)
        sizes: Sequence[int] = [s for s in feed_sizes if s >= 0]
        body = bytearray()
        pos, k = 0, 0
        while True:
            if sizes and any(sizes):
                size = sizes[k % len(sizes)]
                k += 1
            else:
                size = len(data) - pos
            piece = data[pos:pos + size]
            pos += len(piece)
            buf = ctypes.create_string_buffer(piece, len(piece))
            ln = ctypes.c_size_t(len(piece))
            r = self.lib.upy_fcgi_stdin_decode(ctypes.byref(d), buf, ctypes.byref(ln), max_body)
            assert ln.value <= len(piece)
            body += buf.raw[:ln.value]
            if r == UPY_PARSE_ERROR:
                assert d.error_reason and d.error_status in (0, 400, 413)
                return ("error", d.error_status, bytes(body))
            if r >= 0:
                assert ln.value + r <= len(piece)
                assert d.total == len(body)
                return ("ok", bytes(body), buf.raw[ln.value:ln.value + r] + data[pos:])
            assert r == UPY_PARSE_INCOMPLETE
            if pos >= len(data):
                return ("incomplete", bytes(body))

    # -- SCGI ----------------------------------------------------------------
    def parse_scgi(self, data: bytes, max_head: int = 65535, max_fields: int = MAX_FIELDS,
                   limit_post: int = 0) -> Any:
        """upy_scgi_parse_head: "incomplete", ("error", status), or the request
        dict with vars and consumed."""
        buf = ctypes.create_string_buffer(data, len(data))
        base = ctypes.addressof(buf)
        req = self._new_request()
        lim = upy_limits(max_head, min(max_fields, self.MAX_FIELDS), limit_post)
        n = self.lib.upy_scgi_parse_head(base, len(data), ctypes.byref(req), ctypes.byref(lim))
        if n == UPY_PARSE_INCOMPLETE:
            return "incomplete"
        if n == UPY_PARSE_ERROR:
            assert req.error_reason and req.error_status in (400, 413, 431)
            return ("error", req.error_status)
        assert 0 < n <= len(data) and req.proto == 3 and not req.keep_alive
        out = self._request_dict(data, base, req)
        out["vars"] = out.pop("fields")
        out["consumed"] = n
        return out
