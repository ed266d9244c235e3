/*
 * upy_ws.c - the pure-C WebSocket codec (RFC 6455): frame headers,
 * unmasking, incremental UTF-8, close payloads, the handshake's accept key
 * (SHA-1 and base64, written here from RFC 3174 and RFC 4648) and token
 * lists.  The API and its rules are in upy_ws.h.  No Python.h, no
 * allocation; every read is bounded by the remaining length.
 */
#include "upy_ws.h"

#include <string.h>

/* ------------------------------------------------------------------ */
/* Frame header (§5.2)                                                 */
/* ------------------------------------------------------------------ */

/* Length forms of the 7-bit payload length field (§5.2). */
#define LEN7_16BIT 126 /* the next 2 bytes hold the length */
#define LEN7_64BIT 127 /* the next 8 bytes hold it */

static int opcode_known(unsigned op)
{
    return op <= UPY_WS_BINARY || (op >= UPY_WS_CLOSE && op <= UPY_WS_PONG);
}

static int opcode_is_control(unsigned op)
{
    return (op & 0x8) != 0; /* §5.5: opcodes with the high bit set */
}

static ssize_t header_error(int *close_code, int code)
{
    *close_code = code;
    return UPY_WS_ERROR;
}

ssize_t upy_ws_parse_header(const uint8_t *buf, size_t len, int require_mask,
                            uint64_t max_payload, upy_ws_frame *f,
                            int *close_code)
{
    size_t need = 2;
    unsigned len7;
    uint64_t plen;

    memset(f, 0, sizeof *f);
    *close_code = 0;
    if (len < need)
        return UPY_WS_INCOMPLETE;

    /* Everything decided by the first two bytes, in the documented order. */
    f->fin = buf[0] >> 7;
    f->rsv = (buf[0] >> 4) & 0x7;
    f->opcode = buf[0] & 0xF;
    f->masked = buf[1] >> 7;
    len7 = buf[1] & 0x7F;
    if (f->rsv != 0)
        return header_error(close_code, UPY_WS_CLOSE_PROTOCOL_ERROR);
    if (!opcode_known(f->opcode))
        return header_error(close_code, UPY_WS_CLOSE_PROTOCOL_ERROR);
    if (opcode_is_control(f->opcode) &&
        (!f->fin || len7 > UPY_WS_MAX_CONTROL_PAYLOAD))
        return header_error(close_code, UPY_WS_CLOSE_PROTOCOL_ERROR);
    if (f->masked != (require_mask ? 1u : 0u))
        return header_error(close_code, UPY_WS_CLOSE_PROTOCOL_ERROR);

    /* The extended length, big-endian, read bytewise. */
    if (len7 == LEN7_16BIT) {
        need += 2;
        if (len < need)
            return UPY_WS_INCOMPLETE;
        plen = ((uint64_t)buf[2] << 8) | buf[3];
        if (plen <= UPY_WS_MAX_CONTROL_PAYLOAD) /* fits in 7 bits */
            return header_error(close_code, UPY_WS_CLOSE_PROTOCOL_ERROR);
    } else if (len7 == LEN7_64BIT) {
        need += 8;
        if (len < need)
            return UPY_WS_INCOMPLETE;
        plen = 0;
        for (size_t i = 2; i < 10; i++)
            plen = (plen << 8) | buf[i];
        if (plen >> 63) /* §5.2: the most significant bit MUST be 0 */
            return header_error(close_code, UPY_WS_CLOSE_PROTOCOL_ERROR);
        if (plen <= 0xFFFF) /* fits in 16 bits */
            return header_error(close_code, UPY_WS_CLOSE_PROTOCOL_ERROR);
    } else {
        plen = len7;
    }
    if (max_payload != 0 && plen > max_payload)
        return header_error(close_code, UPY_WS_CLOSE_TOO_BIG);

    if (f->masked) {
        need += 4;
        if (len < need)
            return UPY_WS_INCOMPLETE;
        memcpy(f->mask, buf + need - 4, 4);
    }
    f->payload_len = plen;
    f->header_len = need;
    return (ssize_t)need;
}

int upy_ws_check_order(int *in_message, const upy_ws_frame *f)
{
    if (opcode_is_control(f->opcode))
        return 0; /* §5.4: control frames may be injected mid-message */
    if (f->opcode == UPY_WS_CONT ? !*in_message : *in_message)
        return UPY_WS_ERROR;
    *in_message = !f->fin;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Masking (§5.3)                                                      */
/* ------------------------------------------------------------------ */

void upy_ws_unmask(uint8_t *data, size_t n, const uint8_t mask[4],
                   uint64_t offset)
{
    /* key[i] masks payload byte offset + i (j = i MOD 4, §5.3), so eight
       key bytes XOR eight data bytes at once; memcpy keeps every access
       well-defined at any alignment and compiles to plain loads/stores. */
    uint8_t key[8];
    uint64_t kw, w;
    size_t i = 0;
    unsigned rot = (unsigned)(offset & 3);

    for (unsigned k = 0; k < 8; k++)
        key[k] = mask[(rot + k) & 3];
    memcpy(&kw, key, sizeof kw);
    for (; n - i >= 8; i += 8) {
        memcpy(&w, data + i, sizeof w);
        w ^= kw;
        memcpy(data + i, &w, sizeof w);
    }
    for (; i < n; i++)
        data[i] ^= key[i & 7]; /* i is a multiple of 8 plus (i & 7) */
}

/* ------------------------------------------------------------------ */
/* UTF-8 (RFC 3629 §4; RFC 6455 §8.1)                                  */
/* ------------------------------------------------------------------ */

/*
 * The state packs what the next byte may be: bits 0-1 the continuation
 * bytes still needed (0-3), bits 8-15 and 16-23 the lowest and highest
 * value the next continuation byte may take.  RFC 3629 §4's table narrows
 * only the first continuation byte (E0: A0-BF no overlongs; ED: 80-9F no
 * surrogates; F0: 90-BF no overlongs; F4: 80-8F nothing above U+10FFFF);
 * the later ones are always 80-BF.  UTF8_FAILED is sticky.
 */
#define UTF8_FAILED 0x80000000u
#define UTF8_STATE(need, lo, hi) ((uint32_t)(need) | ((uint32_t)(lo) << 8) | ((uint32_t)(hi) << 16))

static uint32_t utf8_lead(uint8_t b)
{
    if (b >= 0xC2 && b <= 0xDF)
        return UTF8_STATE(1, 0x80, 0xBF);
    if (b == 0xE0)
        return UTF8_STATE(2, 0xA0, 0xBF);
    if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF)
        return UTF8_STATE(2, 0x80, 0xBF);
    if (b == 0xED)
        return UTF8_STATE(2, 0x80, 0x9F);
    if (b == 0xF0)
        return UTF8_STATE(3, 0x90, 0xBF);
    if (b >= 0xF1 && b <= 0xF3)
        return UTF8_STATE(3, 0x80, 0xBF);
    if (b == 0xF4)
        return UTF8_STATE(3, 0x80, 0x8F);
    /* 0x80-0xC1 (a continuation, or a 2-byte overlong lead), 0xF5-0xFF */
    return UTF8_FAILED;
}

int upy_utf8_feed(upy_utf8 *v, const uint8_t *p, size_t n)
{
    uint32_t s = v->state;
    size_t i = 0;

    if (s & UTF8_FAILED)
        return -1;
    while (i < n) {
        if (s == 0) {
            /* at a boundary: skip ASCII eight bytes at a time */
            uint64_t w;
            while (n - i >= 8) {
                memcpy(&w, p + i, sizeof w);
                if (w & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            if (i == n)
                break;
            if (p[i] < 0x80) {
                i++;
                continue;
            }
            s = utf8_lead(p[i++]);
            if (s & UTF8_FAILED)
                break;
        } else {
            uint8_t b = p[i++], lo = (uint8_t)(s >> 8), hi = (uint8_t)(s >> 16);
            unsigned need = s & 3;
            if (b < lo || b > hi) {
                s = UTF8_FAILED;
                break;
            }
            s = need == 1 ? 0 : UTF8_STATE(need - 1, 0x80, 0xBF);
        }
    }
    v->state = s;
    return (s & UTF8_FAILED) ? -1 : 0;
}

int upy_utf8_complete(const upy_utf8 *v)
{
    return v->state == 0;
}

/* ------------------------------------------------------------------ */
/* Server frames (§5.2)                                                */
/* ------------------------------------------------------------------ */

size_t upy_ws_build_header(uint8_t *out, int fin, int opcode,
                           uint64_t payload_len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0xF));
    if (payload_len <= UPY_WS_MAX_CONTROL_PAYLOAD) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len <= 0xFFFF) {
        out[1] = LEN7_16BIT;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        return 4;
    }
    out[1] = LEN7_64BIT;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    return 10;
}

/* ------------------------------------------------------------------ */
/* Close frames (§5.5.1, §7.4)                                         */
/* ------------------------------------------------------------------ */

int upy_ws_close_code_valid(int code)
{
    if (code >= 1000 && code <= 1003)
        return 1;
    if (code >= 1007 && code <= 1014) /* 1012-1014: IANA registry */
        return 1;
    return code >= 3000 && code <= 4999;
}

int upy_ws_check_close(const uint8_t *payload, size_t len, int *code)
{
    upy_utf8 v = {0};
    int c;

    if (len == 0) {
        *code = UPY_WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (len < 2) { /* §5.5.1: a body starts with a 2-byte code */
        *code = UPY_WS_CLOSE_PROTOCOL_ERROR;
        return -1;
    }
    c = (payload[0] << 8) | payload[1];
    if (!upy_ws_close_code_valid(c)) {
        *code = UPY_WS_CLOSE_PROTOCOL_ERROR;
        return -1;
    }
    if (upy_utf8_feed(&v, payload + 2, len - 2) != 0 || !upy_utf8_complete(&v)) {
        *code = UPY_WS_CLOSE_INVALID_DATA;
        return -1;
    }
    *code = c;
    return 0;
}

/* ------------------------------------------------------------------ */
/* SHA-1 (RFC 3174 §5-§6 / FIPS 180-4 §6.1), for the accept key only    */
/* ------------------------------------------------------------------ */

typedef struct {
    uint32_t h[5];
    uint8_t block[64];
    size_t used;     /* bytes in block */
    uint64_t total;  /* message bytes so far */
} sha1_ctx;

static uint32_t rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n)); /* n is 1, 5 or 30 */
}

static void sha1_init(sha1_ctx *c)
{
    c->h[0] = 0x67452301u;
    c->h[1] = 0xEFCDAB89u;
    c->h[2] = 0x98BADCFEu;
    c->h[3] = 0x10325476u;
    c->h[4] = 0xC3D2E1F0u;
    c->used = 0;
    c->total = 0;
}

/* RFC 3174 §6.1 method 1 on one 64-byte block. */
static void sha1_block(sha1_ctx *c, const uint8_t *blk)
{
    uint32_t w[80], a, b, d, e, cc, t;

    for (int i = 0; i < 16; i++)
        w[i] = ((uint32_t)blk[4 * i] << 24) | ((uint32_t)blk[4 * i + 1] << 16) |
               ((uint32_t)blk[4 * i + 2] << 8) | blk[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = c->h[0];
    b = c->h[1];
    cc = c->h[2];
    d = c->h[3];
    e = c->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t fn, k;
        if (i < 20) {
            fn = (b & cc) | (~b & d);
            k = 0x5A827999u;
        } else if (i < 40) {
            fn = b ^ cc ^ d;
            k = 0x6ED9EBA1u;
        } else if (i < 60) {
            fn = (b & cc) | (b & d) | (cc & d);
            k = 0x8F1BBCDCu;
        } else {
            fn = b ^ cc ^ d;
            k = 0xCA62C1D6u;
        }
        t = rol32(a, 5) + fn + e + w[i] + k;
        e = d;
        d = cc;
        cc = rol32(b, 30);
        b = a;
        a = t;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
}

static void sha1_update(sha1_ctx *c, const uint8_t *p, size_t n)
{
    c->total += n;
    while (n > 0) {
        size_t take = sizeof c->block - c->used;
        if (take > n)
            take = n;
        memcpy(c->block + c->used, p, take);
        c->used += take;
        p += take;
        n -= take;
        if (c->used == sizeof c->block) {
            sha1_block(c, c->block);
            c->used = 0;
        }
    }
}

/* RFC 3174 §4 padding: 0x80, zeros, the bit length as 64-bit big-endian. */
static void sha1_final(sha1_ctx *c, uint8_t out[20])
{
    uint64_t bits = c->total * 8;
    uint8_t len_be[8];
    static const uint8_t pad[64] = {0x80};

    for (int i = 0; i < 8; i++)
        len_be[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_update(c, pad, c->used < 56 ? 56 - c->used : 120 - c->used);
    sha1_update(c, len_be, 8);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

void upy_ws_sha1(const uint8_t *p, size_t n, uint8_t out[20])
{
    sha1_ctx c;
    sha1_init(&c);
    sha1_update(&c, p, n);
    sha1_final(&c, out);
}

/* ------------------------------------------------------------------ */
/* The handshake's accept key (§4.2.2) and base64 (RFC 4648 §4)        */
/* ------------------------------------------------------------------ */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_is_alpha(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
           (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
}

/* The §1.3 / §4.2.2 GUID appended to the key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Length of a Sec-WebSocket-Key: 16 bytes in base64 (§4.1 item 7). */
#define WS_KEY_LEN 24

int upy_ws_accept_key(const char *key, size_t len, char out[28])
{
    sha1_ctx c;
    uint8_t digest[20];
    size_t o = 0;

    if (len != WS_KEY_LEN || key[22] != '=' || key[23] != '=')
        return -1;
    for (size_t i = 0; i < 22; i++)
        if (!b64_is_alpha(key[i]))
            return -1;
    sha1_init(&c);
    sha1_update(&c, (const uint8_t *)key, len);
    sha1_update(&c, (const uint8_t *)ws_guid, sizeof ws_guid - 1);
    sha1_final(&c, digest);
    /* 20 bytes: six 3-byte groups, then 2 bytes and one '=' (28 chars) */
    for (size_t i = 0; i < 18; i += 3) {
        uint32_t g = ((uint32_t)digest[i] << 16) | ((uint32_t)digest[i + 1] << 8) |
                     digest[i + 2];
        out[o++] = b64_alphabet[(g >> 18) & 63];
        out[o++] = b64_alphabet[(g >> 12) & 63];
        out[o++] = b64_alphabet[(g >> 6) & 63];
        out[o++] = b64_alphabet[g & 63];
    }
    {
        uint32_t g = ((uint32_t)digest[18] << 16) | ((uint32_t)digest[19] << 8);
        out[o++] = b64_alphabet[(g >> 18) & 63];
        out[o++] = b64_alphabet[(g >> 12) & 63];
        out[o++] = b64_alphabet[(g >> 6) & 63];
        out[o++] = '=';
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Token lists (RFC 9110 §5.6.1)                                       */
/* ------------------------------------------------------------------ */

static int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

static char ascii_lower(char ch)
{
    return (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
}

int upy_ws_next_element(const char *v, size_t n, size_t *pos,
                        const char **out, size_t *out_len)
{
    size_t i = *pos;

    while (i < n) {
        size_t start, end;
        while (i < n && (is_ows(v[i]) || v[i] == ','))
            i++;
        if (i >= n)
            break;
        start = i;
        while (i < n && v[i] != ',')
            i++;
        end = i;
        while (end > start && is_ows(v[end - 1]))
            end--;
        /* end > start: v[start] is neither OWS nor ',' */
        *out = v + start;
        *out_len = end - start;
        *pos = i;
        return 1;
    }
    *pos = n;
    *out = NULL;
    *out_len = 0;
    return 0;
}

int upy_ws_has_token(const char *v, size_t n, const char *token)
{
    size_t pos = 0, elen, tlen = strlen(token);
    const char *e;

    while (upy_ws_next_element(v, n, &pos, &e, &elen)) {
        size_t i = 0;
        if (elen != tlen)
            continue;
        while (i < elen && ascii_lower(e[i]) == ascii_lower(token[i]))
            i++;
        if (i == elen)
            return 1;
    }
    return 0;
}
