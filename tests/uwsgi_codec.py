"""A small pure-Python uwsgi packet encoder/decoder.

The uwsgi protocol (as nginx's ngx_http_uwsgi_module and uWSGI speak it):

    packet  = modifier1:u8  datasize:u16le  modifier2:u8  vars  [body]
    vars    = *( keylen:u16le key vallen:u16le value )   exactly datasize bytes

Used two ways: as the test oracle for csrc/upy_uwsgi.c, and by the
integration tests as a client that talks to a uwsgipy uwsgi socket the way
nginx does.  The decoder applies the framing rules of upy_uwsgi_parse_vars
(datasize 0, zero-length key, lengths past the block, key without a value
length) but not its semantic checks (CONTENT_LENGTH, var count limits).
"""
from __future__ import annotations

import struct
from typing import List, Mapping, Sequence, Tuple, Union

__all__ = ["encode_packet", "decode_packet", "IncompletePacket", "MAX_DATASIZE"]

MAX_DATASIZE = 0xFFFF  # datasize is a u16

Pair = Tuple[bytes, bytes]
VarsIn = Union[Mapping[str, str], Sequence[Tuple[Union[str, bytes], Union[str, bytes]]]]


class IncompletePacket(Exception):
    """decode_packet needs more bytes (header or vars block not complete)."""


def _b(s: Union[str, bytes]) -> bytes:
    # str is sent as UTF-8, which is what nginx forwards for a UTF-8 URL or
    # header; pass bytes for exact control over the wire.
    return s if isinstance(s, bytes) else s.encode("utf-8")


def encode_packet(vars: VarsIn, body: bytes = b"", modifier1: int = 0,
                  modifier2: int = 0) -> bytes:
    """Encode vars (a dict of str, or a list of (key, value) str/bytes pairs
    in wire order, duplicates allowed) and append body."""
    items = vars.items() if isinstance(vars, Mapping) else vars
    block = bytearray()
    for k, v in items:
        kb, vb = _b(k), _b(v)
        if len(kb) > 0xFFFF or len(vb) > 0xFFFF:
            raise ValueError("uwsgi key or value longer than 65535 bytes")
        block += struct.pack("<H", len(kb)) + kb + struct.pack("<H", len(vb)) + vb
    if len(block) > MAX_DATASIZE:
        raise ValueError(f"uwsgi vars block of {len(block)} bytes exceeds 65535")
    if not (0 <= modifier1 <= 255 and 0 <= modifier2 <= 255):
        raise ValueError("modifiers are u8")
    return struct.pack("<BHB", modifier1, len(block), modifier2) + bytes(block) + body


def decode_packet(data: bytes) -> Tuple[int, int, List[Pair], bytes]:
    """Decode one packet: (modifier1, modifier2, [(key, value)], rest).

    rest is everything after the vars block (the body and beyond).
    Raises IncompletePacket when data is shorter than the header plus
    datasize, ValueError when the vars block is malformed.
    """
    if len(data) < 4:
        raise IncompletePacket("need the 4-byte header")
    modifier1, datasize, modifier2 = struct.unpack_from("<BHB", data, 0)
    if len(data) < 4 + datasize:
        raise IncompletePacket(f"need {4 + datasize} bytes, have {len(data)}")
    if datasize == 0:
        raise ValueError("datasize 0")
    block = data[4:4 + datasize]
    out: List[Pair] = []
    pos = 0
    while pos < datasize:
        if datasize - pos < 2:
            raise ValueError("truncated key length")
        (klen,) = struct.unpack_from("<H", block, pos)
        pos += 2
        if klen == 0:
            raise ValueError("empty key")
        if klen > datasize - pos:
            raise ValueError("key runs past the block")
        key = block[pos:pos + klen]
        pos += klen
        if datasize - pos < 2:
            raise ValueError("key without a value length")
        (vlen,) = struct.unpack_from("<H", block, pos)
        pos += 2
        if vlen > datasize - pos:
            raise ValueError("value runs past the block")
        out.append((key, block[pos:pos + vlen]))
        pos += vlen
    return modifier1, modifier2, out, data[4 + datasize:]
