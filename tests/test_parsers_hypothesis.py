"""Property tests of the pure-C parsers, through ctypes (tests/_parsers_ctypes.py).

(a) HTTP: differential against h11 on generated and mutated requests.
(b) uwsgi: round trip against tests/uwsgi_codec.py, and agreement of the C
    and Python decoders on random and mutated blobs.
(c) chunked: random bodies, chunked randomly, fed in random splits.

Known, deliberate differences from h11 (see also the header of
csrc/upy_http.c).  Each is tested explicitly in test_known_differences and
is the only excuse the differential test accepts for a disagreement:

  we reject, h11 accepts
    bare_lf     LF-only line endings (h11 accepts "\\n" as a line end)
    obs_fold    obs-fold continuation lines (h11 unfolds them)
    ctl         CTL bytes other than HTAB in field values (h11 rejects only
                NUL and whitespace CTLs)
    cl_list     Content-Length as a list "5, 5" (h11 folds equal members)
    cl_te       Content-Length together with Transfer-Encoding (h11: TE wins)
    te_http10   Transfer-Encoding on an HTTP/1.0 request (h11 accepts)
    version     HTTP versions other than 1.0/1.1 (h11 accepts any d.d; we 505)
    chunk_ext   chunk extensions outside the RFC 9112 §7.1.1 grammar (h11
                accepts ";" followed by anything)
    chunk_size_ws  whitespace before the CRLF of a chunk size line, "5 \\r\\n"
                (RFC 9112 §7.1: BWS only before ';'; h11's regex allows OWS)
    target_form a request-target that is not origin-form, absolute-form,
                "OPTIONS *" or (for CONNECT, and only for it) authority-form,
                or that holds a '#' (RFC 9112 §3.2; h11 takes any visible
                ASCII with any method)
    singleton_repeat  a field RFC 9110 defines as a singleton (Content-Type,
                User-Agent, Authorization, ...) sent twice (RFC 9110 §5.3;
                h11 keeps both)
    trailer_forbidden  a trailer field RFC 9110 §6.5.1 rules out (framing,
                routing, request modifiers, authentication, content format;
                h11 keeps it as a trailer)
  we accept, h11 rejects
    leading_crlf  empty lines before the request line (RFC 9112 §2.2 SHOULD
                  ignore; h11 refuses them)
    chunk_ext     BWS before ";" in a chunk size line (RFC 9112 grammar
                  allows it; h11's regex does not)
    te_empty_elements  empty list elements in Transfer-Encoding, ",chunked"
                  (RFC 9110 §5.6.1: ignored; h11 answers 501)
  not differences in acceptance, adjusted when comparing
    - header names containing "_" are dropped by us (not stored, not an
      error); h11 keeps them: they are filtered from h11's list;
    - a repeated identical Content-Length is kept twice by us, once by h11;
    - h11 lowercases the Transfer-Encoding value, we keep it as sent.
  limits (414 / 431 for long lines) are not compared: the generated
  requests stay far below limit-request-line and limit-request-field-size.
"""
from __future__ import annotations

import re
import struct
from typing import List, Optional, Tuple

import pytest

h11 = pytest.importorskip("h11")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import uwsgi_codec  # noqa: E402
from _parsers_ctypes import CParsers, build  # noqa: E402

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="session")
def cparsers(tmp_path_factory: pytest.TempPathFactory) -> CParsers:
    import shutil
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    return build(tmp_path_factory.mktemp("cparsers"))


# ---------------------------------------------------------------------------
# HTTP: the two implementations, reduced to comparable outcomes
# ---------------------------------------------------------------------------

Outcome = Tuple  # ("ok", method, target, version, headers, body) | ("reject",) | ("incomplete",)


def run_ours(lib: CParsers, data: bytes) -> Outcome:
    head = lib.parse_http(data)
    if head == "incomplete":
        return ("incomplete",)
    if isinstance(head, tuple):
        assert head[1] in (400, 413, 414, 431, 501, 505), head
        return ("reject", head[1])
    rest = data[head["consumed"]:]
    if head["chunked"]:
        res = lib.decode_chunked(rest)
        if res[0] == "error":
            return ("reject", res[1])
        if res[0] == "incomplete":
            return ("incomplete",)
        body = res[1]
    elif head["content_length"] >= 0:
        if len(rest) < head["content_length"]:
            return ("incomplete",)
        body = rest[:head["content_length"]]
    else:
        body = b""
    headers = []
    seen_cl = False
    for name, value in head["fields"]:
        lname = name.lower()
        if lname == b"content-length":
            if seen_cl:
                continue  # h11 keeps one of identical repeats
            seen_cl = True
        if lname == b"transfer-encoding":
            value = value.lower()  # h11 stores it lowercased
        headers.append((name, value))
    version = b"1.%d" % head["minor_version"]
    return ("ok", head["method"], head["target"], version, headers, body)


def run_h11(data: bytes) -> Outcome:
    conn = h11.Connection(our_role=h11.SERVER)
    conn.receive_data(data)
    req = None
    body = bytearray()
    try:
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                return ("incomplete",)
            if isinstance(ev, h11.Request):
                req = ev
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
    except h11.RemoteProtocolError as e:
        return ("reject", e.error_status_hint)
    assert req is not None
    headers = [(n, v) for n, v in req.headers.raw_items() if b"_" not in n]
    return ("ok", req.method, req.target, req.http_version, headers, bytes(body))


_HEADER_NAME = re.compile(rb"\r?\n([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*:([^\r\n]*)")

# RFC 9110 singletons (csrc/upy_http.c singleton_fields; Content-Length apart)
SINGLETONS = {b"host", b"authorization", b"proxy-authorization", b"content-type",
              b"content-location", b"content-range", b"date", b"from", b"if-modified-since",
              b"if-unmodified-since", b"if-range", b"max-forwards", b"range", b"referer",
              b"user-agent"}
# RFC 9110 §6.5.1 (csrc/upy_http.c forbidden_trailers)
FORBIDDEN_TRAILERS = {b"content-length", b"transfer-encoding", b"trailer", b"host", b"connection",
                      b"max-forwards", b"upgrade", b"expect", b"te", b"if-match", b"if-none-match",
                      b"if-modified-since", b"if-unmodified-since", b"if-range", b"range",
                      b"cache-control", b"pragma", b"authorization", b"proxy-authorization",
                      b"cookie", b"content-type", b"content-encoding", b"content-range"}
_AUTHORITY = re.compile(rb"(?:\[[^\[\]/?#@]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+):[0-9]{1,5}")


def known_differences(data: bytes) -> Tuple[set, set]:
    """(we_stricter, we_lenient) flags that apply to data; see the module doc."""
    stricter, lenient = set(), set()
    if re.search(rb"(?<!\r)\n", data):
        stricter.add("bare_lf")
    if re.search(rb"\n[ \t]", data):
        stricter.add("obs_fold")
    if re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", data):
        stricter.add("ctl")
    m = re.match(rb"[^\r\n]*? HTTP/(\d)\.(\d)\r?\n", data)
    if m and (m.group(1), m.group(2)) not in ((b"1", b"0"), (b"1", b"1")):
        stricter.add("version")
    end = data.find(b"\r\n\r\n")
    head, after = (data, b"") if end < 0 else (data[:end + 2], data[end + 2:])
    names = {}
    for nm, val in _HEADER_NAME.findall(head):
        names.setdefault(nm.lower(), []).append(val)
    if any(b"," in v for v in names.get(b"content-length", [])):
        stricter.add("cl_list")
    if b"content-length" in names and b"transfer-encoding" in names:
        stricter.add("cl_te")
    if b"transfer-encoding" in names and m and m.group(2) == b"0":
        stricter.add("te_http10")
    if any(b"," in v for v in names.get(b"transfer-encoding", [])):
        lenient.add("te_empty_elements")
    if any(len(names.get(n, ())) > 1 for n in SINGLETONS):
        stricter.add("singleton_repeat")
    if any(nm.lower() in FORBIDDEN_TRAILERS for nm, _ in _HEADER_NAME.findall(after)):
        stricter.add("trailer_forbidden")
    if re.search(rb"(?:^|\n)[0-9A-Fa-f]+[^:\r\n]*[ \t]\r?\n", after):
        stricter.add("chunk_size_ws")
    if b";" in data:
        stricter.add("chunk_ext")
        lenient.add("chunk_ext")
    if data[:1] in (b"\r", b"\n"):
        lenient.add("leading_crlf")
    line = re.match(rb"[\r\n]*([^ \r\n]*) ([^ \r\n]*) ", data)
    if line:
        method, target = line.group(1), line.group(2)
        if method == b"CONNECT":
            if not _AUTHORITY.fullmatch(target):
                stricter.add("target_form")
        elif b"#" in target or not (
                target.startswith(b"/") or (target == b"*" and method == b"OPTIONS")
                or re.match(rb"(?i)https?://.", target)):
            stricter.add("target_form")
    return stricter, lenient


def assert_agree(lib: CParsers, data: bytes) -> None:
    ours = run_ours(lib, data)
    theirs = run_h11(data)
    if ours[0] == "ok" and theirs[0] == "ok":
        assert ours == theirs, (data, ours, theirs)
        return
    if (ours[0] == "ok") == (theirs[0] == "ok"):
        return  # neither accepts (reject vs incomplete may differ: h11 peeks early)
    stricter, lenient = known_differences(data)
    if theirs[0] == "ok":
        assert stricter, f"we refuse what h11 accepts: {data!r} -> {ours}"
        if ours[0] == "reject":
            assert ours[1] == 400 or (ours[1] == 505 and "version" in stricter), ours
    else:
        assert lenient, f"we accept what h11 refuses: {data!r} -> {theirs}"


# ---------------------------------------------------------------------------
# HTTP: generators
# ---------------------------------------------------------------------------

TCHARS = "!#$%&'*+-.^`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# ';' is kept out of generated values so that its presence flags a mutation
# into chunk-extension territory (see known_differences).
VALUE_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != ";")
TARGET_CHARS = "".join(chr(c) for c in range(0x21, 0x7F))
BODY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

methods = st.one_of(st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS",
                                     "PATCH"]),
                    st.text(TCHARS, min_size=1, max_size=8))
targets = st.one_of(
    st.just("*"),
    st.builds(lambda p, q: "/" + p + (("?" + q) if q is not None else ""),
              st.text(TARGET_CHARS, max_size=20),
              st.none() | st.text(TARGET_CHARS, max_size=10)),
)
field_names = st.one_of(
    st.sampled_from(["Accept", "User-Agent", "X-Foo", "Cookie", "Content-Type", "Expect",
                     "Connection", "X_Under_Score", "x-lower", "X-UPPER"]),
    st.text(TCHARS + "_", min_size=1, max_size=12),
).filter(lambda n: n.lower() not in ("host", "content-length", "transfer-encoding"))
trailer_names = field_names.filter(lambda n: n.lower().encode() not in FORBIDDEN_TRAILERS)
field_values = st.builds(
    lambda lead, core, trail: lead + core + trail,
    st.sampled_from(["", " ", "\t", "  "]),
    st.text(VALUE_CHARS + " \t", max_size=20).map(lambda s: s.strip(" \t")),
    st.sampled_from(["", " ", "\t"]),
)


@st.composite
def chunk_ext(draw) -> str:
    """A chunk-ext per RFC 9112 §7.1.1, without BWS before ';' (h11 refuses it)."""
    out = ""
    for _ in range(draw(st.integers(0, 2))):
        out += ";" + draw(st.text(TCHARS, min_size=1, max_size=6))
        if draw(st.booleans()):
            if draw(st.booleans()):
                out += "=" + draw(st.text(TCHARS, min_size=1, max_size=6))
            else:
                q = draw(st.text("".join(chr(c) for c in range(0x20, 0x7F)) + "\t", max_size=6))
                out += '="' + q.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return out


@st.composite
def chunked_body(draw, data_chars: str = BODY_CHARS, with_ext: bool = True) -> Tuple[str, str]:
    """(wire, decoded)"""
    body = draw(st.text(data_chars, max_size=60))
    wire, i = "", 0
    while i < len(body):
        n = draw(st.integers(1, max(1, len(body) - i)))
        size = draw(st.sampled_from(["%x", "%X", "0%x"])) % n
        wire += size + (draw(chunk_ext()) if with_ext else "") + "\r\n" + body[i:i + n] + "\r\n"
        i += n
    wire += "0" + (draw(chunk_ext()) if with_ext else "") + "\r\n"
    for _ in range(draw(st.integers(0, 2))):
        wire += draw(trailer_names) + ":" + draw(field_values) + "\r\n"
    wire += "\r\n"
    return wire, body


@st.composite
def requests(draw, with_ext: bool = True) -> bytes:
    version = draw(st.sampled_from(["1.1", "1.1", "1.1", "1.0"]))
    lines = [f"{draw(methods)} {draw(targets)} HTTP/{version}"]
    headers: List[str] = []
    nhost = draw(st.sampled_from([1, 1, 1, 1, 0, 2])) if version == "1.1" else \
        draw(st.sampled_from([0, 1]))
    for _ in range(nhost):
        headers.append("Host:" + draw(field_values))
    for _ in range(draw(st.integers(0, 4))):
        headers.append(draw(field_names) + ":" + draw(field_values))
    framing = draw(st.sampled_from(["none", "cl", "cl", "chunked", "chunked", "cl2",
                                    "cl_te", "cl_list"]))
    body_wire = ""
    te_name = draw(st.sampled_from(["Transfer-Encoding", "transfer-encoding"]))
    te_value = draw(st.sampled_from(["chunked", "Chunked", " chunked ", "CHUNKED"]))
    if framing in ("cl", "cl2", "cl_list"):
        body = draw(st.text(BODY_CHARS, max_size=40))
        cl = str(len(body))
        if framing == "cl_list":
            cl = cl + ", " + cl
        headers.append("Content-Length: " + cl)
        if framing == "cl2":
            headers.append("content-length:" + str(len(body)))
        body_wire = body
    elif framing in ("chunked", "cl_te"):
        wire, _ = draw(chunked_body(with_ext=with_ext))
        headers.append(te_name + ":" + te_value)
        if framing == "cl_te":
            headers.append("Content-Length: " + str(len(wire)))
        body_wire = wire
    headers = draw(st.permutations(headers))
    head = "\r\n".join(lines + list(headers)) + "\r\n\r\n"
    return (head + body_wire).encode("latin-1")


MUT_BYTES = [b"\r", b"\n", b" ", b"\t", b":", b"\x00", b"\x01", b"\x7f", b"_", b",",
             b";", b"a", b"0", b"\x80", b"\r\n", b"\r\n ", b"\n\n", b"\r\n\r\n", b"-"]


@st.composite
def mutated_requests(draw) -> bytes:
    data = bytearray(draw(requests(with_ext=False)))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "case"]))
        if op == "insert":
            data[pos:pos] = draw(st.sampled_from(MUT_BYTES))
        elif op == "delete" and pos < len(data):
            del data[pos]
        elif op == "replace" and pos < len(data):
            data[pos:pos + 1] = draw(st.sampled_from(MUT_BYTES))
        elif op == "case" and pos < len(data):
            data[pos:pos + 1] = bytes(data[pos:pos + 1]).swapcase()
    return bytes(data)


@SETTINGS
@given(data=requests())
def test_http_generated_agree_with_h11(cparsers: CParsers, data: bytes) -> None:
    assert_agree(cparsers, data)


@SETTINGS
@given(data=mutated_requests())
def test_http_mutated_agree_with_h11(cparsers: CParsers, data: bytes) -> None:
    assert_agree(cparsers, data)


@SETTINGS
@given(data=requests(), cut=st.integers(0, 10_000))
def test_http_prefix_and_pipelining(cparsers: CParsers, data: bytes, cut: int) -> None:
    """Any prefix of a head is incomplete or the same error; a complete head
    followed by more bytes parses the same."""
    whole = cparsers.parse_http(data)
    if isinstance(whole, dict):
        n = whole["consumed"]
        assert cparsers.parse_http(data[:cut % (n + 1)]) in ("incomplete", whole) or \
            cut % (n + 1) == n
        assert cparsers.parse_http(data + b"GET / HTTP/1.1\r\n") == whole
    elif isinstance(whole, tuple):
        p = cparsers.parse_http(data[:cut % (len(data) + 1)])
        assert p == "incomplete" or p == whole or p[0] == "error"


KNOWN = [
    # (flag, request, our status)
    ("bare_lf", b"GET / HTTP/1.1\nHost: h\n\n", 400),
    ("obs_fold", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400),
    ("ctl", b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", 400),
    ("cl_list", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\nx", 400),
    ("cl_te", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_http10", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("version", b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505),
    ("target_form", b"GET env HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ("target_form", b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ("target_form", b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ("target_form", b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ("target_form", b"GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    ("chunk_ext", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"1;\r\nx\r\n0\r\n\r\n", 400),
    ("chunk_size_ws", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"1 \r\nx\r\n0\r\n\r\n", 400),
    ("singleton_repeat", b"GET / HTTP/1.1\r\nHost: h\r\nContent-Type: a/b\r\n"
                         b"content-type: a/b\r\n\r\n", 400),
    ("singleton_repeat", b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: a\r\nUser-Agent: b\r\n\r\n", 400),
    ("trailer_forbidden", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"0\r\nContent-Length: 5\r\n\r\n", 400),
    ("trailer_forbidden", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"1\r\nx\r\n0\r\nAuthorization: x\r\n\r\n", 400),
]
KNOWN_LENIENT = [
    ("leading_crlf", b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("chunk_ext", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"1 ;a=b\r\nx\r\n0\r\n\r\n"),
    ("te_empty_elements", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\n\r\n"
                          b"1\r\nx\r\n0\r\n\r\n"),
]
# Where our new strictness could be suspected but both accept the same way.
KNOWN_SAME = [
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1\r\nx\r\n0\r\nExpires: 0\r\nX-Checksum: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\n\r\n",
]


@pytest.mark.parametrize("data", KNOWN_SAME)
def test_known_same(cparsers: CParsers, data: bytes) -> None:
    ours, theirs = run_ours(cparsers, data), run_h11(data)
    assert ours[0] == "ok" and ours == theirs, (ours, theirs)
    assert not any(known_differences(data))


@pytest.mark.parametrize("flag,data,status", KNOWN, ids=[k[0] for k in KNOWN])
def test_known_differences_stricter(cparsers: CParsers, flag: str, data: bytes,
                                    status: int) -> None:
    assert run_h11(data)[0] == "ok"
    assert run_ours(cparsers, data) == ("reject", status)
    assert flag in known_differences(data)[0]


@pytest.mark.parametrize("flag,data", KNOWN_LENIENT, ids=[k[0] for k in KNOWN_LENIENT])
def test_known_differences_lenient(cparsers: CParsers, flag: str, data: bytes) -> None:
    assert run_h11(data)[0] == "reject"
    assert run_ours(cparsers, data)[0] == "ok"
    assert flag in known_differences(data)[1]


# ---------------------------------------------------------------------------
# uwsgi
# ---------------------------------------------------------------------------

var_bytes = st.binary(max_size=40)
var_pairs = st.lists(st.tuples(st.binary(min_size=1, max_size=20), var_bytes),
                     min_size=1, max_size=20)


def c_should_reject_content_length(pairs: List[Tuple[bytes, bytes]]) -> bool:
    """The one semantic rule of upy_uwsgi_parse_vars the framing decoder
    does not apply: CONTENT_LENGTH (the last one) empty or 1*DIGIT <= INT64_MAX."""
    cls = [v for k, v in pairs if k == b"CONTENT_LENGTH"]
    if not cls or cls[-1] == b"":
        return False
    v = cls[-1]
    return not (v.isdigit() and all(0x30 <= c <= 0x39 for c in v) and int(v) < 2**63)


@SETTINGS
@given(pairs=var_pairs, body=st.binary(max_size=20), m1=st.integers(0, 255),
       m2=st.integers(0, 255))
def test_uwsgi_round_trip(cparsers: CParsers, pairs, body: bytes, m1: int, m2: int) -> None:
    packet = uwsgi_codec.encode_packet(pairs, body, m1, m2)
    assert uwsgi_codec.decode_packet(packet) == (m1, m2, pairs, body)
    res = cparsers.parse_uwsgi(packet)
    if c_should_reject_content_length(pairs):
        assert res == ("error", 400)
        return
    assert isinstance(res, dict), res
    assert (res["modifier1"], res["modifier2"], res["vars"], res["rest"]) == (m1, m2, pairs, body)


@st.composite
def nginx_like_vars(draw):
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT"]))
    path = "/" + draw(st.text(BODY_CHARS + "/%", max_size=10))
    query = draw(st.text(BODY_CHARS + "=&", max_size=10))
    proto = draw(st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"]))
    cl = draw(st.sampled_from(["", "0", "17"]))
    https = draw(st.sampled_from([None, "on", "ON", "1", "off", ""]))
    scheme = draw(st.sampled_from([None, "http", "https", "HTTPS"]))
    v = {"QUERY_STRING": query, "REQUEST_METHOD": method, "CONTENT_TYPE": "",
         "CONTENT_LENGTH": cl, "REQUEST_URI": path + ("?" + query if query else ""),
         "PATH_INFO": path, "DOCUMENT_ROOT": "/srv", "SERVER_PROTOCOL": proto,
         "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5555", "SERVER_PORT": "80",
         "SERVER_NAME": "example.com", "HTTP_HOST": "example.com"}
    if https is not None:
        v["HTTPS"] = https
    if scheme is not None:
        v["UWSGI_SCHEME"] = scheme
    return v


@SETTINGS
@given(v=nginx_like_vars())
def test_uwsgi_request_fields(cparsers: CParsers, v: dict) -> None:
    res = cparsers.parse_uwsgi(uwsgi_codec.encode_packet(v))
    assert isinstance(res, dict), res
    assert res["method"] == v["REQUEST_METHOD"].encode()
    assert res["target"] == v["REQUEST_URI"].encode()
    assert res["path"] == v["PATH_INFO"].encode()
    assert res["query"] == v["QUERY_STRING"].encode()
    assert res["minor_version"] == (0 if v["SERVER_PROTOCOL"] == "HTTP/1.0" else 1)
    assert res["content_length"] == (int(v["CONTENT_LENGTH"]) if v["CONTENT_LENGTH"] else -1)
    assert res["is_head"] == (v["REQUEST_METHOD"] == "HEAD")
    assert res["https"] == (v.get("HTTPS", "").lower() in ("on", "1")
                            or v.get("UWSGI_SCHEME", "").lower() == "https")
    assert res["keep_alive"] is False and res["chunked"] is False


def py_outcome(blob: bytes):
    try:
        m1, m2, pairs, rest = uwsgi_codec.decode_packet(blob)
    except uwsgi_codec.IncompletePacket:
        return "incomplete"
    except ValueError:
        return "reject"
    if c_should_reject_content_length(pairs):
        return "reject"
    return (m1, m2, pairs, rest)


def c_outcome(lib: CParsers, blob: bytes):
    res = lib.parse_uwsgi(blob)
    if res == "incomplete":
        return res
    if isinstance(res, tuple):
        assert res[1] == 400, res
        return "reject"
    return (res["modifier1"], res["modifier2"], res["vars"], res["rest"])


@st.composite
def uwsgi_blobs(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "framed", "mutated"]))
    if kind == "random":
        return draw(st.binary(max_size=64))
    if kind == "framed":
        block = draw(st.binary(max_size=60))
        return struct.pack("<BHB", 0, len(block), 0) + block + draw(st.binary(max_size=4))
    data = bytearray(uwsgi_codec.encode_packet(draw(var_pairs)))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.sampled_from([0, 1, 2, 0xFF, data[pos] ^ 1, data[pos] + 1 & 0xFF]))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data) - 1)):]
    return bytes(data)


@SETTINGS
@given(blob=uwsgi_blobs())
def test_uwsgi_c_and_python_agree(cparsers: CParsers, blob: bytes) -> None:
    assert c_outcome(cparsers, blob) == py_outcome(blob)


def test_uwsgi_limits(cparsers: CParsers) -> None:
    pkt = uwsgi_codec.encode_packet([("A", "1"), ("B", "2"), ("C", "3")])
    assert isinstance(cparsers.parse_uwsgi(pkt, max_fields=3), dict)
    assert cparsers.parse_uwsgi(pkt, max_fields=2) == ("error", 431)
    pkt = uwsgi_codec.encode_packet({"CONTENT_LENGTH": "101"})
    assert cparsers.parse_uwsgi(pkt, limit_post=100) == ("error", 413)
    assert cparsers.parse_uwsgi(pkt, limit_post=101)["content_length"] == 101
    assert cparsers.parse_uwsgi(b"\x00\x00\x00\x00") == ("error", 400)
    with pytest.raises(ValueError):
        uwsgi_codec.decode_packet(b"\x00\x00\x00\x00")
    assert cparsers.looks_like_http(b"GET / HTTP/1.1\r\n")
    assert not cparsers.looks_like_http(uwsgi_codec.encode_packet({"A": "b"}))


# ---------------------------------------------------------------------------
# chunked
# ---------------------------------------------------------------------------

@st.composite
def chunked_wire(draw) -> Tuple[bytes, bytes]:
    body = draw(st.binary(max_size=300))
    wire, i = bytearray(), 0
    while i < len(body):
        n = draw(st.integers(1, len(body) - i))
        ext = draw(chunk_ext())
        if ext and draw(st.integers(0, 4)) == 0:
            ext = " " * draw(st.integers(1, 2)) + ext  # BWS before ';' (never before CRLF)
        wire += (draw(st.sampled_from(["%x", "%X", "00%x"])) % n + ext + "\r\n").encode()
        wire += body[i:i + n] + b"\r\n"
        i += n
    wire += ("0" + draw(chunk_ext()) + "\r\n").encode()
    for _ in range(draw(st.integers(0, 3))):
        wire += (draw(trailer_names) + ":" + draw(field_values) + "\r\n").encode()
        if draw(st.booleans()):
            wire += b"X-Bin: \x80\xff\t\r\n"
    wire += b"\r\n"
    return bytes(wire), body


@SETTINGS
@given(wb=chunked_wire(), trailing=st.binary(max_size=20),
       splits=st.lists(st.integers(0, 40), max_size=30))
def test_chunked_random_splits(cparsers: CParsers, wb, trailing: bytes, splits) -> None:
    wire, body = wb
    assert cparsers.decode_chunked(wire + trailing, splits) == ("ok", body, trailing)


@SETTINGS
@given(wb=chunked_wire(), cut=st.integers(0, 10_000))
def test_chunked_prefix_is_incomplete(cparsers: CParsers, wb, cut: int) -> None:
    wire, body = wb
    cut %= len(wire)
    res = cparsers.decode_chunked(wire[:cut], [1])
    assert res[0] == "incomplete" and body.startswith(res[1])


@SETTINGS
@given(wb=chunked_wire(), max_body=st.integers(1, 400))
def test_chunked_max_body(cparsers: CParsers, wb, max_body: int) -> None:
    wire, body = wb
    res = cparsers.decode_chunked(wire, [7], max_body=max_body)
    if len(body) <= max_body:
        assert res == ("ok", body, b"")
    else:
        assert res[0] == "error" and res[1] == 413 and len(res[2]) <= max_body


def _h11_chunked(wire: bytes) -> Optional[bytes]:
    data = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + wire)
    out = run_h11(data)
    return out[5] if out[0] == "ok" else None


@SETTINGS
@given(wb=chunked_body(data_chars=BODY_CHARS + "\r\n \t"))
def test_chunked_agrees_with_h11(cparsers: CParsers, wb) -> None:
    wire, body = wb
    assert _h11_chunked(wire.encode()) == body.encode()
    assert cparsers.decode_chunked(wire.encode(), [3]) == ("ok", body.encode(), b"")
