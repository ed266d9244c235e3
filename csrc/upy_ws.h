/*
 * upy_ws.h - the pure-C WebSocket codec of uwsgipy (RFC 6455).
 *
 * No Python.h, no allocation, no I/O: bytes in, verdicts out, as
 * upy_parse.h.  The CPython glue (upy_asgi.c) owns the connection and the
 * message state; this file decodes and checks one frame header at a time,
 * unmasks payload bytes in place (in any number of pieces), validates UTF-8
 * incrementally, checks close payloads, computes Sec-WebSocket-Accept and
 * reads the handshake's token lists.
 *
 * Conventions: every input is a (pointer, length) slice that need not be
 * NUL-terminated and is never read past its length; outputs go into
 * caller-owned buffers whose sizes are stated per function.  Errors carry
 * the close code to send (RFC 6455 §7.4.1): 1002 protocol error, 1007
 * invalid payload data, 1009 message too big.
 *
 * Tested by tests/c/test_ws.c (table, guard page, sanitizers),
 * tests/test_ws_hypothesis.py (differential against wsproto) and fuzzed by
 * fuzz/fuzz_ws.c.
 */
#ifndef UPY_WS_H
#define UPY_WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define UPY_WS_INCOMPLETE (-2)
#define UPY_WS_ERROR (-1)

/* Close codes this codec produces (RFC 6455 §7.4.1). */
#define UPY_WS_CLOSE_NO_STATUS 1005      /* a close frame without a code */
#define UPY_WS_CLOSE_PROTOCOL_ERROR 1002
#define UPY_WS_CLOSE_INVALID_DATA 1007   /* text that is not UTF-8 */
#define UPY_WS_CLOSE_TOO_BIG 1009

/* The longest frame header: 2 + 8 (64-bit length) + 4 (masking key). */
#define UPY_WS_MAX_HEADER 14
/* The longest header upy_ws_build_header() writes (unmasked). */
#define UPY_WS_MAX_SERVER_HEADER 10
/* Control frames carry at most this many payload bytes (§5.5). */
#define UPY_WS_MAX_CONTROL_PAYLOAD 125

/* Opcodes (§5.2); the other values are reserved and refused. */
enum {
    UPY_WS_CONT = 0x0,
    UPY_WS_TEXT = 0x1,
    UPY_WS_BINARY = 0x2,
    UPY_WS_CLOSE = 0x8,
    UPY_WS_PING = 0x9,
    UPY_WS_PONG = 0xA
};

/* One decoded frame header. */
typedef struct {
    unsigned fin, rsv, opcode, masked; /* rsv: the 3 RSV bits as 0..7
                                          (RSV1 = 4, RSV2 = 2, RSV3 = 1) */
    uint64_t payload_len;
    uint8_t mask[4];                   /* the masking key when masked */
    size_t header_len;                 /* 2..14 */
} upy_ws_frame;

/*
 * Parse one frame header at buf[0..len) (RFC 6455 §5.2).  Returns the
 * header length (2..14) with *f filled, UPY_WS_INCOMPLETE (call again from
 * the same start with more bytes), or UPY_WS_ERROR with *close_code set.
 * *f and *close_code are reset on entry.
 *
 * Refused, in this order, each as soon as the bytes that show it are there
 * (so an error found on a prefix is the error the whole header gives):
 *   1002  an RSV bit set (no extension is negotiated, §5.2);
 *   1002  a reserved opcode (3-7, 0xB-0xF, §5.2);
 *   1002  a control frame (close, ping, pong) without FIN, or with a
 *         payload length over 125 (§5.5);
 *   1002  the mask bit != require_mask: a server passes 1 (a client MUST
 *         mask, §5.1), a client 0 (a server MUST NOT mask);
 *   1002  a 64-bit length with its most significant bit set (§5.2);
 *   1002  a length not in its minimal encoding (126..65535 in 16 bits,
 *         more in 64: §5.2 "the minimal number of bytes MUST be used").
 *         wsproto refuses these (frame_protocol.py,
 *         parse_extended_payload_length); the websockets library accepts
 *         them.  We follow wsproto and the RFC's MUST: it is our
 *         differential oracle, and no client sends them;
 *   1009  payload_len > max_payload (0: no limit).
 * Fragmentation order (a continuation with no message open, a new data
 * frame inside one) is message state: see upy_ws_check_order().
 */
ssize_t upy_ws_parse_header(const uint8_t *buf, size_t len, int require_mask,
                            uint64_t max_payload, upy_ws_frame *f,
                            int *close_code);

/*
 * The fragmentation rules of §5.4 for the frame f, with *in_message the
 * caller's state (0 at the start of a connection): a continuation frame
 * only inside a fragmented message, a text or binary frame only outside
 * one; control frames may come anywhere.  Returns 0 and updates
 * *in_message (1 after a data frame without FIN, 0 after one with FIN), or
 * UPY_WS_ERROR (close 1002) leaving it unchanged.
 */
int upy_ws_check_order(int *in_message, const upy_ws_frame *f);

/*
 * XOR-unmask data[0..n) in place with the masking key (§5.3); offset is
 * the position of data[0] within the frame's payload, so a payload can be
 * unmasked in pieces as it arrives.  Eight bytes at a time through memcpy
 * (any alignment, no aliasing UB), the tail bytewise.  Masking is its own
 * inverse, so this also masks.
 */
void upy_ws_unmask(uint8_t *data, size_t n, const uint8_t mask[4],
                   uint64_t offset);

/*
 * Incremental UTF-8 validation (RFC 3629 §4: no overlong forms, no
 * surrogates U+D800..U+DFFF, nothing above U+10FFFF), fed a message's
 * bytes in pieces split anywhere.  Zero-initialise for a new message.
 */
typedef struct {
    uint32_t state; /* private; 0 = at a code point boundary */
} upy_utf8;

/* Feed p[0..n).  0: valid so far; -1: invalid (close 1007), detected at
   the first byte that no valid text can continue with (§8.1 asks to fail
   fast), and sticky: every later call returns -1 too. */
int upy_utf8_feed(upy_utf8 *v, const uint8_t *p, size_t n);

/* 1 when the bytes fed so far end at a code point boundary and were valid:
   a text message is complete only then (else 1007). */
int upy_utf8_complete(const upy_utf8 *v);

/*
 * Write a server frame header (FIN as given, RSV 0, no mask: §5.1 a server
 * MUST NOT mask) for opcode and payload_len in the minimal length encoding
 * into out, which has room for UPY_WS_MAX_SERVER_HEADER (10) bytes.
 * Returns its length (2, 4 or 10).  payload_len must be < 2^63 (§5.2);
 * the caller keeps control payloads <= 125.
 */
size_t upy_ws_build_header(uint8_t *out, int fin, int opcode,
                           uint64_t payload_len);

/*
 * Check a received close frame's payload[0..len) (§5.5.1, §7.4).  Returns
 * 0 when valid: len 0 (*code = 1005, "no status"), or len >= 2 with a code
 * that upy_ws_close_code_valid() allows (*code = it) and a reason
 * payload[2..len) that is valid UTF-8.  Returns -1 otherwise, *code = the
 * close code to answer with: 1002 for len 1 or a code not allowed on the
 * wire, 1007 for a reason that is not UTF-8.
 */
int upy_ws_check_close(const uint8_t *payload, size_t len, int *code);

/*
 * 1 when a close code may be sent and received in a close frame, else 0
 * (§7.4.1, §7.4.2, and the IANA WebSocket Close Code registry):
 * 1000-1003; 1007-1011; 1012 (service restart), 1013 (try again later),
 * 1014 (bad gateway), registered after RFC 6455 and accepted by the
 * websockets library (EXTERNAL_CLOSE_CODES) - wsproto accepts 1012 and
 * 1013 but refuses 1014, which it does not list; 3000-4999 (libraries,
 * applications).  Never: 1004 (reserved), 1005, 1006, 1015 (local only),
 * 1016-2999 (reserved for the protocol), < 1000, >= 5000.
 */
int upy_ws_close_code_valid(int code);

/*
 * Sec-WebSocket-Accept (§4.2.2 item 5.4, §1.3): base64(SHA-1(key +
 * "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) into out[0..28) (not
 * NUL-terminated).  key[0..len) is the Sec-WebSocket-Key value, already
 * trimmed of OWS.  Returns 0, or -1 when the key is not 24 characters of
 * the base64 alphabet (RFC 4648 §4) decoding to 16 bytes, i.e. 22
 * alphabet characters and "==" (§4.1 item 7; the handshake then answers
 * 400).  As the websockets library (base64.b64decode(validate=True), then
 * a length check), the unused low bits of the last character are not
 * checked.
 */
int upy_ws_accept_key(const char *key, size_t len, char out[28]);

/* SHA-1 (RFC 3174, FIPS 180-4 §6.1) of p[0..n) into out[0..20): the
   handshake's hash, exported for its test vectors. */
void upy_ws_sha1(const uint8_t *p, size_t n, uint8_t out[20]);

/*
 * 1 when the token (NUL-terminated) is an element of the list field value
 * v[0..n) (Connection, Upgrade: RFC 9110 §5.6.1 #token lists), compared
 * ignoring ASCII case; elements are trimmed of OWS (SP, HTAB), empty
 * elements are ignored.  Else 0.
 */
int upy_ws_has_token(const char *v, size_t n, const char *token);

/*
 * Iterate the elements of a comma-separated list v[0..n)
 * (Sec-WebSocket-Protocol, Sec-WebSocket-Extensions).  Start with
 * *pos = 0; each call stores the next non-empty element, trimmed of OWS,
 * in *out and *out_len (a slice of v), advances *pos past it and returns 1;
 * returns 0 at the end (also when *pos >= n).
 */
int upy_ws_next_element(const char *v, size_t n, size_t *pos,
                        const char **out, size_t *out_len);

#endif /* UPY_WS_H */
