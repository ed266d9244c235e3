/*
 * libFuzzer harness for the pure-C WebSocket codec (upy_ws.c).
 *
 * Every input goes through every function (the first byte picks the
 * parameters: require_mask, max_payload, the unmask offset, a split point).
 * Each runs on an exact heap copy, so ASan catches one byte of over-read.
 * Invariant: never crashes and never reads past size;
 *  - upy_ws_parse_header returns incomplete, an error with close code 1002
 *    or 1009, or a header length 2..14 <= size; a parsed header rebuilt by
 *    upy_ws_build_header (plus the mask bit and key) gives back the same
 *    bytes (RSV 0, minimal length, known opcode); no prefix decides
 *    otherwise than the whole (a prefix is incomplete, or the same error);
 *  - upy_ws_unmask equals the bytewise rule of RFC 6455 §5.3, also in two
 *    pieces, and twice is the identity;
 *  - upy_utf8_feed gives the same verdict whole, bytewise and in two
 *    pieces, fails at the first bad byte (the bytes before it are a valid
 *    prefix) and agrees with upy_ws_check_close on a reason;
 *  - upy_ws_check_close: 0 with a wire-valid code or 1005, else -1 with
 *    1002 or 1007;
 *  - upy_ws_accept_key: 0 only for 24 bytes (22 base64 + "=="), and then
 *    28 base64 characters ending in '=';
 *  - upy_ws_next_element: non-empty slices inside the input, no ',', no
 *    OWS at either end, each found again by upy_ws_has_token.
 */
#include "upy_ws.h"

#include <stdlib.h>
#include <string.h>

static uint8_t *dup(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    if (d != NULL && n)
        memcpy(d, p, n);
    return d;
}

static void fuzz_header(const uint8_t *buf, size_t n, int require_mask, uint64_t max)
{
    upy_ws_frame f, g;
    int code, code2;
    ssize_t rc = upy_ws_parse_header(buf, n, require_mask, max, &f, &code);

    if (rc == UPY_WS_ERROR) {
        if (code != 1002 && code != 1009)
            abort();
    } else if (rc == UPY_WS_INCOMPLETE) {
        if (n >= UPY_WS_MAX_HEADER)
            abort();
    } else {
        uint8_t re[UPY_WS_MAX_HEADER];
        size_t hl;
        if (rc < 2 || rc > UPY_WS_MAX_HEADER || (size_t)rc > n || f.header_len != (size_t)rc)
            abort();
        if (f.rsv != 0 || f.masked != (unsigned)require_mask || (max && f.payload_len > max))
            abort();
        if ((f.opcode & 8) && (!f.fin || f.payload_len > 125))
            abort();
        hl = upy_ws_build_header(re, (int)f.fin, (int)f.opcode, f.payload_len);
        if (f.masked) {
            re[1] |= 0x80;
            memcpy(re + hl, f.mask, 4);
            hl += 4;
        }
        if (hl != (size_t)rc || memcmp(re, buf, hl) != 0)
            abort();
    }
    /* every shorter prefix (of the header, when there is one): incomplete,
       or the same error */
    for (size_t k = 0; k < (rc > 0 ? (size_t)rc : n) && k <= UPY_WS_MAX_HEADER; k++) {
        uint8_t *p = dup(buf, k);
        ssize_t r2;
        if (p == NULL)
            return;
        r2 = upy_ws_parse_header(p, k, require_mask, max, &g, &code2);
        free(p);
        if (r2 == UPY_WS_INCOMPLETE)
            continue;
        if (r2 != UPY_WS_ERROR || rc != UPY_WS_ERROR || code2 != code)
            abort();
    }
}

static void fuzz_unmask(const uint8_t *buf, size_t n, uint64_t offset, size_t cut)
{
    static const uint8_t mask[4] = {0x9d, 0x01, 0x7e, 0xc4};
    uint8_t *a = dup(buf, n), *b = dup(buf, n);
    if (a != NULL && b != NULL) {
        upy_ws_unmask(a, n, mask, offset);
        for (size_t i = 0; i < n; i++)
            if (a[i] != (uint8_t)(buf[i] ^ mask[(offset + i) & 3]))
                abort();
        if (cut > n)
            cut = n;
        upy_ws_unmask(b, cut, mask, offset);
        upy_ws_unmask(b + cut, n - cut, mask, offset + cut);
        if (n && memcmp(a, b, n) != 0)
            abort();
        upy_ws_unmask(a, n, mask, offset);
        if (n && memcmp(a, buf, n) != 0)
            abort();
    }
    free(a);
    free(b);
}

static void fuzz_utf8(const uint8_t *buf, size_t n, size_t cut)
{
    upy_utf8 whole = {0}, bytes = {0}, two = {0};
    int w = upy_utf8_feed(&whole, buf, n), bw = 0, t;
    size_t at = n;

    for (size_t i = 0; i < n; i++)
        if (upy_utf8_feed(&bytes, buf + i, 1) != 0) {
            bw = -1;
            at = i;
            break;
        }
    if (cut > n)
        cut = n;
    t = upy_utf8_feed(&two, buf, cut);
    if (t == 0)
        t = upy_utf8_feed(&two, buf + cut, n - cut);
    if (w != bw || w != t)
        abort();
    if (w == 0 && (upy_utf8_complete(&whole) != upy_utf8_complete(&bytes) ||
                   upy_utf8_complete(&whole) != upy_utf8_complete(&two)))
        abort();
    if (w != 0) {
        /* fail fast: the bytes before the bad one are fine */
        upy_utf8 pre = {0};
        if (upy_utf8_feed(&pre, buf, at) != 0 || upy_utf8_complete(&whole))
            abort();
    }
    /* a close payload with this reason */
    if (n <= 123) {
        uint8_t *p = malloc(n + 2);
        int code;
        if (p != NULL) {
            p[0] = 0x03, p[1] = 0xe8; /* 1000 */
            memcpy(p + 2, buf, n);
            int ok = upy_ws_check_close(p, n + 2, &code) == 0;
            if (ok != (w == 0 && upy_utf8_complete(&whole)) || (ok ? code != 1000 : code != 1007))
                abort();
        }
        free(p);
    }
}

static void fuzz_close(const uint8_t *buf, size_t n)
{
    int code = 0, rc = upy_ws_check_close(buf, n, &code);
    if (rc == 0) {
        if (n == 0 ? code != 1005 : !upy_ws_close_code_valid(code))
            abort();
        if (n && code != ((buf[0] << 8) | buf[1]))
            abort();
    } else if (rc != -1 || (code != 1002 && code != 1007)) {
        abort();
    }
}

static int b64char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

static void fuzz_accept(const uint8_t *buf, size_t n)
{
    char out[28];
    size_t len = n < 26 ? n : 26;
    char *k = (char *)dup(buf, len);
    if (k == NULL)
        return;
    if (upy_ws_accept_key(k, len, out) == 0) {
        if (len != 24 || k[22] != '=' || k[23] != '=')
            abort();
        for (size_t i = 0; i < 22; i++)
            if (!b64char(k[i]))
                abort();
        for (size_t i = 0; i < 27; i++)
            if (!b64char(out[i]))
                abort();
        if (out[27] != '=')
            abort();
    }
    free(k);
}

static void fuzz_tokens(const uint8_t *buf, size_t n)
{
    const char *v = (const char *)buf, *e;
    size_t pos = 0, elen, count = 0;
    char tok[64];

    if (upy_ws_has_token(v, n, "websocket") > 1)
        abort();
    while (upy_ws_next_element(v, n, &pos, &e, &elen)) {
        if (elen == 0 || e < v || elen > n || (size_t)(e - v) > n - elen || pos > n)
            abort();
        if (memchr(e, ',', elen) || e[0] == ' ' || e[0] == '\t' || e[elen - 1] == ' ' ||
            e[elen - 1] == '\t')
            abort();
        if (elen < sizeof tok && !memchr(e, '\0', elen)) {
            memcpy(tok, e, elen);
            tok[elen] = '\0';
            if (upy_ws_has_token(v, n, tok) != 1)
                abort();
        }
        if (++count > n)
            abort();
    }
    if (pos != n)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t maxes[4] = {0, 125, 65536, 1048576};
    uint8_t *buf;
    size_t n;
    unsigned sel;

    if (size < 1)
        return 0;
    sel = data[0];
    n = size - 1;
    buf = dup(data + 1, n);
    if (buf == NULL)
        return 0;
    fuzz_header(buf, n, (int)(sel & 1), maxes[(sel >> 1) & 3]);
    fuzz_unmask(buf, n, (sel >> 3) & 7, (size_t)(sel >> 3));
    fuzz_utf8(buf, n, (size_t)(sel >> 2));
    fuzz_close(buf, n);
    fuzz_accept(buf, n);
    fuzz_tokens(buf, n);
    free(buf);
    return 0;
}
