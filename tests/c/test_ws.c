/*
 * test_ws.c - table tests for csrc/upy_ws.c, the pure-C RFC 6455 codec:
 * frame headers (every length form and boundary, each error with its close
 * code, every prefix incomplete, trailing bytes ignored), fragmentation
 * order, unmasking at every offset and alignment against a bytewise
 * reference, incremental UTF-8 (valid, overlong, surrogates, above
 * U+10FFFF, truncated, split at every byte, exhaustive 1-3 byte
 * sequences against a decode-then-check reference), close payloads and
 * codes, SHA-1 (RFC 3174 / FIPS vectors) and Sec-WebSocket-Accept (RFC
 * 6455 §1.3), server headers, token lists.
 *
 * Every input is placed at the very end of a readable region followed by a
 * PROT_NONE guard page (table.h), so one byte of over-read faults.  Prints
 * "N passed, M failed".  Built and run plain and with ASan+UBSan by
 * tests/test_ws_c.py.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "upy_ws.h"

#include "table.h" /* guard_init, place, check, passed, failed */

#define ERR UPY_WS_ERROR
#define INC UPY_WS_INCOMPLETE
#define S(lit) lit, sizeof(lit) - 1

static const uint8_t *placeb(const void *in, size_t len)
{
    return (const uint8_t *)place((const char *)in, len);
}

/* ---- upy_ws_parse_header -------------------------------------------- */

typedef struct {
    const char *name;
    const char *in;
    size_t len;
    int require_mask;
    uint64_t max_payload;
    ssize_t rc;        /* the header length, or ERR */
    size_t at;         /* with ERR: the prefix length at which it is found */
    int close_code;    /* with ERR */
    unsigned fin, opcode;
    uint64_t payload_len;
    const char *mask;  /* 4 bytes when the frame is masked */
} header_case;

#define OK(name, in, rm, mx, hl, fin, op, plen, mask) \
    {name, S(in), rm, mx, hl, 0, 0, fin, op, plen, mask}
#define BAD(name, in, rm, mx, at, code) \
    {name, S(in), rm, mx, ERR, at, code, 0, 0, 0, NULL}

static const header_case header_cases[] = {
    /* RFC 6455 §5.7's examples */
    OK("unmasked Hello", "\x81\x05", 0, 0, 2, 1, UPY_WS_TEXT, 5, NULL),
    OK("masked Hello", "\x81\x85\x37\xfa\x21\x3d", 1, 0, 6, 1, UPY_WS_TEXT, 5, "\x37\xfa\x21\x3d"),
    OK("fragment Hel", "\x01\x03", 0, 0, 2, 0, UPY_WS_TEXT, 3, NULL),
    OK("continuation lo", "\x80\x02", 0, 0, 2, 1, UPY_WS_CONT, 2, NULL),
    OK("ping", "\x89\x05", 0, 0, 2, 1, UPY_WS_PING, 5, NULL),
    OK("masked pong", "\x8a\x85\x37\xfa\x21\x3d", 1, 0, 6, 1, UPY_WS_PONG, 5, "\x37\xfa\x21\x3d"),
    OK("binary 256", "\x82\x7e\x01\x00", 0, 0, 4, 1, UPY_WS_BINARY, 256, NULL),
    OK("binary 64KiB", "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 0, 0, 10, 1, UPY_WS_BINARY,
       65536, NULL),
    /* every length form at its boundaries, masked and not */
    OK("len 0", "\x82\x00", 0, 0, 2, 1, UPY_WS_BINARY, 0, NULL),
    OK("len 0 masked", "\x82\x80\x01\x02\x03\x04", 1, 0, 6, 1, UPY_WS_BINARY, 0, "\x01\x02\x03\x04"),
    OK("len 125", "\x82\x7d", 0, 0, 2, 1, UPY_WS_BINARY, 125, NULL),
    OK("len 125 masked", "\x82\xfd\xff\x00\xff\x00", 1, 0, 6, 1, UPY_WS_BINARY, 125,
       "\xff\x00\xff\x00"),
    OK("len 126", "\x82\x7e\x00\x7e", 0, 0, 4, 1, UPY_WS_BINARY, 126, NULL),
    OK("len 126 masked", "\x82\xfe\x00\x7e\xa1\xb2\xc3\xd4", 1, 0, 8, 1, UPY_WS_BINARY, 126,
       "\xa1\xb2\xc3\xd4"),
    OK("len 65535", "\x82\x7e\xff\xff", 0, 0, 4, 1, UPY_WS_BINARY, 65535, NULL),
    OK("len 65535 masked", "\x82\xfe\xff\xff\x00\x00\x00\x00", 1, 0, 8, 1, UPY_WS_BINARY, 65535,
       "\x00\x00\x00\x00"),
    OK("len 65536", "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 0, 0, 10, 1, UPY_WS_BINARY, 65536,
       NULL),
    OK("len 65536 masked", "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00\x01\x01\x01\x01", 1, 0, 14,
       1, UPY_WS_BINARY, 65536, "\x01\x01\x01\x01"),
    OK("len 2^32", "\x02\x7f\x00\x00\x00\x01\x00\x00\x00\x00", 0, 0, 10, 0, UPY_WS_BINARY,
       UINT64_C(0x100000000), NULL),
    OK("len 2^63-1", "\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", 0, 0, 10, 1, UPY_WS_BINARY,
       UINT64_C(0x7fffffffffffffff), NULL),
    OK("control len 125", "\x88\x7d", 0, 0, 2, 1, UPY_WS_CLOSE, 125, NULL),
    OK("close masked", "\x88\x82\x00\x00\x00\x00", 1, 0, 6, 1, UPY_WS_CLOSE, 2, "\x00\x00\x00\x00"),
    OK("text, no FIN", "\x01\x7e\x01\x00", 0, 0, 4, 0, UPY_WS_TEXT, 256, NULL),
    /* max_payload: equal is fine */
    OK("max 125 at 125", "\x82\x7d", 0, 125, 2, 1, UPY_WS_BINARY, 125, NULL),
    OK("max 65536 at 65536", "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 0, 65536, 10, 1,
       UPY_WS_BINARY, 65536, NULL),
    OK("max 1 at 0", "\x81\x80\x00\x00\x00\x00", 1, 1, 6, 1, UPY_WS_TEXT, 0, "\x00\x00\x00\x00"),

    /* RSV bits (no extension negotiated) */
    BAD("rsv1", "\xc1\x05", 0, 0, 2, 1002),
    BAD("rsv2", "\xa1\x05", 0, 0, 2, 1002),
    BAD("rsv3", "\x91\x05", 0, 0, 2, 1002),
    BAD("rsv all", "\xf2\x85\x00\x00\x00\x00", 1, 0, 2, 1002),
    BAD("rsv1 on a ping", "\xc9\x00", 0, 0, 2, 1002),
    /* reserved opcodes */
    BAD("opcode 3", "\x83\x00", 0, 0, 2, 1002),
    BAD("opcode 4", "\x84\x00", 0, 0, 2, 1002),
    BAD("opcode 5", "\x85\x00", 0, 0, 2, 1002),
    BAD("opcode 6", "\x86\x00", 0, 0, 2, 1002),
    BAD("opcode 7", "\x87\x00", 0, 0, 2, 1002),
    BAD("opcode B", "\x8b\x00", 0, 0, 2, 1002),
    BAD("opcode C", "\x8c\x00", 0, 0, 2, 1002),
    BAD("opcode D", "\x8d\x00", 0, 0, 2, 1002),
    BAD("opcode E", "\x8e\x00", 0, 0, 2, 1002),
    BAD("opcode F", "\x8f\x00", 0, 0, 2, 1002),
    BAD("opcode 3 masked", "\x83\x80\x00\x00\x00\x00", 1, 0, 2, 1002),
    /* control frames: FIN, <= 125 */
    BAD("ping no FIN", "\x09\x00", 0, 0, 2, 1002),
    BAD("close no FIN", "\x08\x80\x00\x00\x00\x00", 1, 0, 2, 1002),
    BAD("pong no FIN", "\x0a\x00", 0, 0, 2, 1002),
    BAD("close len 126", "\x88\x7e\x00\x7e", 0, 0, 2, 1002),
    BAD("ping len 127", "\x89\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 0, 0, 2, 1002),
    BAD("pong 16-bit 125", "\x8a\x7e\x00\x7d", 0, 0, 2, 1002),
    /* masking */
    BAD("server gets unmasked", "\x81\x05", 1, 0, 2, 1002),
    BAD("client gets masked", "\x81\x85\x37\xfa\x21\x3d", 0, 0, 2, 1002),
    BAD("unmasked 64-bit", "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 1, 0, 2, 1002),
    /* non-minimal lengths (as wsproto) */
    BAD("16-bit 0", "\x82\x7e\x00\x00", 0, 0, 4, 1002),
    BAD("16-bit 125", "\x82\xfe\x00\x7d\x00\x00\x00\x00", 1, 0, 4, 1002),
    BAD("64-bit 0", "\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x00", 0, 0, 10, 1002),
    BAD("64-bit 125", "\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x7d", 0, 0, 10, 1002),
    BAD("64-bit 126", "\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x7e", 0, 0, 10, 1002),
    BAD("64-bit 65535", "\x82\xff\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00\x00\x00", 1, 0, 10,
        1002),
    /* the 64-bit length's MSB */
    BAD("64-bit MSB", "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 0, 0, 10, 1002),
    BAD("64-bit all ones", "\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00", 1, 0, 10,
        1002),
    /* max_payload: 1009, found before the masking key */
    BAD("max 5, 7-bit 6", "\x82\x86\x00\x00\x00\x00", 1, 5, 2, 1009),
    BAD("max 125, 126", "\x82\x7e\x00\x7e", 0, 125, 4, 1009),
    BAD("max 125, 126 masked", "\x82\xfe\x00\x7e\x00\x00\x00\x00", 1, 125, 4, 1009),
    BAD("max 65535, 65536", "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 0, 65535, 10, 1009),
    BAD("max 1MiB, 2^63-1", "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00", 1,
        1048576, 10, 1009),
    BAD("max on continuation", "\x80\x7e\x10\x00", 0, 4095, 4, 1009),
    /* order: protocol errors win over 1009 */
    BAD("max 10, control 126", "\x88\x7e\x00\x7e", 0, 10, 2, 1002),
    BAD("max 10, non-minimal", "\x82\x7e\x00\x7d", 0, 10, 4, 1002),
    BAD("max 10, MSB", "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 0, 10, 10, 1002),
    BAD("max 10, rsv", "\xc2\x7e\x00\x7e", 0, 10, 2, 1002),
};

static void run_header(const header_case *t, size_t len, size_t extra, const char *mode)
{
    /* the input, then `extra` bytes that are not part of the header */
    char buf[64];
    upy_ws_frame f;
    int code = -7;
    ssize_t want;
    const uint8_t *in;
    ssize_t rc;

    memcpy(buf, t->in, len);
    memset(buf + len, 0xEE, extra);
    in = placeb(buf, len + extra);
    rc = upy_ws_parse_header(in, len + extra, t->require_mask, t->max_payload, &f, &code);
    if (t->rc == ERR)
        want = len + extra >= t->at ? ERR : INC;
    else
        want = len + extra >= (size_t)t->rc ? t->rc : INC;
    check(rc == want, t->name, mode, "len %zu+%zu: rc %zd, expected %zd", len, extra, rc, want);
    if (rc != want)
        return;
    if (rc == ERR) {
        check(code == t->close_code, t->name, mode, "close code %d, expected %d", code,
              t->close_code);
    } else if (rc > 0) {
        check(f.fin == t->fin && f.opcode == t->opcode && f.rsv == 0 &&
                  f.payload_len == t->payload_len && f.header_len == (size_t)rc &&
                  f.masked == (t->mask != NULL),
              t->name, mode, "fin %u opcode %u rsv %u len %llu header_len %zu masked %u", f.fin,
              f.opcode, f.rsv, (unsigned long long)f.payload_len, f.header_len, f.masked);
        if (t->mask)
            check(memcmp(f.mask, t->mask, 4) == 0, t->name, mode, "mask");
        else
            check(memcmp(f.mask, "\0\0\0\0", 4) == 0, t->name, mode, "mask not zeroed");
        check(code == 0, t->name, mode, "close code %d on success", code);
    }
}

static void test_headers(void)
{
    for (size_t i = 0; i < sizeof header_cases / sizeof header_cases[0]; i++) {
        const header_case *t = &header_cases[i];
        run_header(t, t->len, 0, "whole");
        run_header(t, t->len, 3, "trailing");
        for (size_t k = 0; k < t->len; k++)
            run_header(t, k, 0, "prefix");
    }
    /* the output parameters are reset on entry, also when incomplete */
    {
        upy_ws_frame f;
        int code = 99;
        memset(&f, 0x5A, sizeof f);
        check(upy_ws_parse_header(placeb("\x81", 1), 1, 1, 0, &f, &code) == INC &&
                  f.payload_len == 0 && f.header_len == 0 && code == 0,
              "reset", "incomplete", "outputs not reset");
        check(upy_ws_parse_header(placeb("", 0), 0, 1, 0, &f, &code) == INC, "empty",
              "incomplete", "len 0");
    }
    /* every first byte x every mask/length byte form, against the rules */
    {
        int bad = 0;
        for (unsigned b0 = 0; b0 < 256; b0++)
            for (unsigned b1 = 0; b1 < 256; b1++) {
                uint8_t in[14] = {(uint8_t)b0, (uint8_t)b1, 0, 0xFF, 0, 0, 0, 0, 0, 0xFF, 1, 2, 3, 4};
                unsigned op = b0 & 15, len7 = b1 & 127, ctl = (op & 8) != 0;
                int known = op <= 2 || (op >= 8 && op <= 10);
                for (int rm = 0; rm <= 1; rm++) {
                    upy_ws_frame f;
                    int code;
                    ssize_t rc = upy_ws_parse_header(placeb(in, 14), 14, rm, 0, &f, &code);
                    int ok = (b0 & 0x70) == 0 && known && (!ctl || ((b0 & 0x80) && len7 <= 125)) &&
                             (b1 >> 7) == (unsigned)rm;
                    if (ok != (rc > 0) || (!ok && (rc != ERR || code != 1002)))
                        bad++;
                }
            }
        check(bad == 0, "all first two bytes", "rules", "%d disagreements", bad);
    }
}

/* ---- upy_ws_check_order ---------------------------------------------- */

static void test_order(void)
{
    static const struct {
        const char *name;
        const char *ops; /* per frame: T/B/C = text/binary/continuation, upper = FIN,
                            lower = no FIN; P = ping; X = close */
        int fail_at;     /* index of the frame refused, -1 none */
    } cases[] = {
        {"one text", "T", -1},
        {"one binary", "B", -1},
        {"fragmented", "tcC", -1},
        {"fragmented, ping inside", "tPcXC", -1},
        {"two messages", "TbCB", -1},
        {"continuation first", "C", 0},
        {"continuation after a whole one", "TC", 1},
        {"text inside a message", "tT", 1},
        {"binary inside a message", "bcB", 2},
        {"ping anywhere", "PtPPC", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int in_message = 0, got = -1;
        for (int k = 0; cases[i].ops[k]; k++) {
            char c = cases[i].ops[k];
            upy_ws_frame f = {0};
            f.fin = !(c >= 'a' && c <= 'z');
            switch (c | 0x20) {
            case 't': f.opcode = UPY_WS_TEXT; break;
            case 'b': f.opcode = UPY_WS_BINARY; break;
            case 'c': f.opcode = UPY_WS_CONT; break;
            case 'p': f.opcode = UPY_WS_PING; break;
            default: f.opcode = UPY_WS_CLOSE; break;
            }
            int before = in_message;
            if (upy_ws_check_order(&in_message, &f) != 0) {
                check(in_message == before, cases[i].name, "order", "state changed on error");
                got = k;
                break;
            }
        }
        check(got == cases[i].fail_at, cases[i].name, "order", "refused frame %d, expected %d",
              got, cases[i].fail_at);
    }
}

/* ---- upy_ws_unmask --------------------------------------------------- */

static void test_unmask(void)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t src[80], ref[80], work[96];
    int bad = 0;

    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 131 + 7);
    /* §5.7: the masked "Hello" */
    {
        uint8_t hello[5] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
        upy_ws_unmask(hello, 5, mask, 0);
        check(memcmp(hello, "Hello", 5) == 0, "Hello", "unmask", "RFC 6455 §5.7 example");
    }
    /* every length x start alignment x offset, against the bytewise rule
       (j = i MOD 4, §5.3) */
    {
        static const uint64_t offsets[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 13,
                                           UINT64_C(0x10000000003), UINT64_C(0xfffffffffffffffe)};
        for (size_t n = 0; n <= 72; n++)
            for (size_t align = 0; align < 16; align++)
                for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
                    uint64_t off = offsets[o];
                    for (size_t i = 0; i < n; i++)
                        ref[i] = src[i] ^ mask[(off + i) % 4];
                    memcpy(work + align, src, n);
                    upy_ws_unmask(work + align, n, mask, off);
                    if (memcmp(work + align, ref, n) != 0)
                        bad++;
                }
        check(bad == 0, "every alignment", "unmask", "%d mismatches", bad);
    }
    /* against the guard page: the last byte unmasked is the last readable one */
    bad = 0;
    for (size_t n = 0; n <= 72; n++) {
        uint8_t *p = (uint8_t *)place((const char *)src, n);
        for (size_t i = 0; i < n; i++)
            ref[i] = src[i] ^ mask[(3 + i) % 4];
        upy_ws_unmask(p, n, mask, 3);
        if (memcmp(p, ref, n) != 0)
            bad++;
    }
    check(bad == 0, "guard page", "unmask", "%d mismatches", bad);
    /* in pieces split at every point (and three pieces) = whole */
    bad = 0;
    for (size_t n = 0; n <= 40; n++) {
        for (size_t i = 0; i < n; i++)
            ref[i] = src[i] ^ mask[i % 4];
        for (size_t a = 0; a <= n; a++)
            for (size_t b = a; b <= n; b++) {
                memcpy(work, src, n);
                upy_ws_unmask(work, a, mask, 0);
                upy_ws_unmask(work + a, b - a, mask, a);
                upy_ws_unmask(work + b, n - b, mask, b);
                if (memcmp(work, ref, n) != 0)
                    bad++;
            }
    }
    check(bad == 0, "pieces", "unmask", "%d mismatches", bad);
    /* masking twice is the identity */
    memcpy(work, src, 80);
    upy_ws_unmask(work, 80, mask, 5);
    upy_ws_unmask(work, 80, mask, 5);
    check(memcmp(work, src, 80) == 0, "twice", "unmask", "not the identity");
}

/* ---- UTF-8 ------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *in;
    size_t len;
    int fail_at;  /* index of the byte where validation fails, -1 never */
    int complete; /* with fail_at -1: ends at a code point boundary */
} utf8_case;

#define U_OK(name, in) {name, S(in), -1, 1}
#define U_TRUNC(name, in) {name, S(in), -1, 0}
#define U_BAD(name, in, at) {name, S(in), at, 0}

static const utf8_case utf8_cases[] = {
    U_OK("empty", ""),
    U_OK("ascii", "Hello, world"),
    U_OK("kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
    U_OK("U+0000", "\x00"),
    U_OK("U+007F", "\x7f"),
    U_OK("U+0080", "\xc2\x80"),
    U_OK("U+07FF", "\xdf\xbf"),
    U_OK("U+0800", "\xe0\xa0\x80"),
    U_OK("U+D7FF", "\xed\x9f\xbf"),
    U_OK("U+E000", "\xee\x80\x80"),
    U_OK("U+FFFD", "\xef\xbf\xbd"),
    U_OK("U+FFFF", "\xef\xbf\xbf"),
    U_OK("U+10000", "\xf0\x90\x80\x80"),
    U_OK("U+FFFFF", "\xf3\xbf\xbf\xbf"),
    U_OK("U+100000", "\xf4\x80\x80\x80"),
    U_OK("U+10FFFF", "\xf4\x8f\xbf\xbf"),
    U_OK("ascii run then multibyte", "abcdefghijklmnopq\xc3\xa9xyzxyzxy\xf0\x9f\x98\x80"),
    U_OK("multibyte across 8", "abcdef\xe2\x82\xac" "abcdefgh"),
    /* overlong forms */
    U_BAD("overlong / C0 AF", "\xc0\xaf", 0),
    U_BAD("overlong NUL C0 80", "\xc0\x80", 0),
    U_BAD("overlong C1 BF", "\xc1\xbf", 0),
    U_BAD("overlong E0 80 AF", "\xe0\x80\xaf", 1),
    U_BAD("overlong E0 9F BF", "\xe0\x9f\xbf", 1),
    U_BAD("overlong F0 80 80 AF", "\xf0\x80\x80\xaf", 1),
    U_BAD("overlong F0 8F BF BF", "\xf0\x8f\xbf\xbf", 1),
    U_BAD("overlong 5-byte F8", "\xf8\x80\x80\x80\xaf", 0),
    U_BAD("overlong 6-byte FC", "\xfc\x80\x80\x80\x80\xaf", 0),
    /* surrogates */
    U_BAD("U+D800", "\xed\xa0\x80", 1),
    U_BAD("U+DBFF", "\xed\xaf\xbf", 1),
    U_BAD("U+DC00", "\xed\xb0\x80", 1),
    U_BAD("U+DFFF", "\xed\xbf\xbf", 1),
    U_BAD("surrogate pair", "\xed\xa0\x80\xed\xb0\x80", 1),
    U_BAD("surrogate after text", "ok\xed\xa0\x80", 3),
    /* above U+10FFFF */
    U_BAD("U+110000", "\xf4\x90\x80\x80", 1),
    U_BAD("F4 BF", "\xf4\xbf\xbf\xbf", 1),
    U_BAD("F5", "\xf5\x80\x80\x80", 0),
    U_BAD("F7", "\xf7\xbf\xbf\xbf", 0),
    U_BAD("FE", "\xfe", 0),
    U_BAD("FF", "\xff", 0),
    /* lone and misplaced continuation bytes */
    U_BAD("lone 80", "\x80", 0),
    U_BAD("lone BF", "\xbf", 0),
    U_BAD("continuation after a complete", "\xc3\xa9\x80", 2),
    U_BAD("ascii run then 80", "aaaaaaaaaaaaaaaa\x80", 16),
    U_BAD("ascii 7 then 80", "aaaaaaa\x80", 7),
    /* a lead followed by a non-continuation */
    U_BAD("C3 28", "\xc3\x28", 1),
    U_BAD("E2 28 A1", "\xe2\x28\xa1", 1),
    U_BAD("E2 82 28", "\xe2\x82\x28", 2),
    U_BAD("F0 28 8C BC", "\xf0\x28\x8c\xbc", 1),
    U_BAD("F0 90 28 BC", "\xf0\x90\x28\xbc", 2),
    U_BAD("F0 90 8C 28", "\xf0\x90\x8c\x28", 3),
    U_BAD("lead then lead", "\xc3\xc3\xa9", 1),
    U_BAD("valid then bad", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", 12),
    /* truncated: valid so far, not complete */
    U_TRUNC("C3", "\xc3"),
    U_TRUNC("E2 82", "\xe2\x82"),
    U_TRUNC("E2", "\xe2"),
    U_TRUNC("F0 9F 98", "\xf0\x9f\x98"),
    U_TRUNC("F4 8F", "\xf4\x8f"),
    U_TRUNC("ascii then ED", "aaaaaaaaaaaaaaa\xed"),
};

/* Feed in[0..len) in pieces at the cut points cuts[0..ncuts); returns the
   index of the first byte of the piece that failed (-1 none) and sets
   *complete. */
static int feed_cuts(const char *in, size_t len, const size_t *cuts, size_t ncuts,
                     int *complete)
{
    upy_utf8 v = {0};
    size_t start = 0;
    int failed_piece = -1;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        const uint8_t *p = placeb(in + start, end - start);
        if (upy_utf8_feed(&v, p, end - start) != 0) {
            failed_piece = (int)start;
            break;
        }
        start = end;
    }
    *complete = upy_utf8_complete(&v);
    return failed_piece;
}

static void test_utf8(void)
{
    for (size_t i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
        const utf8_case *t = &utf8_cases[i];
        int complete;
        /* whole */
        int got = feed_cuts(t->in, t->len, NULL, 0, &complete);
        check((got >= 0) == (t->fail_at >= 0) && complete == (t->fail_at < 0 && t->complete),
              t->name, "whole", "failed %d complete %d", got, complete);
        /* byte by byte: fails exactly at the byte (fail fast) */
        {
            upy_utf8 v = {0};
            int at = -1;
            for (size_t k = 0; k < t->len; k++)
                if (upy_utf8_feed(&v, placeb(t->in + k, 1), 1) != 0) {
                    at = (int)k;
                    break;
                }
            check(at == t->fail_at, t->name, "bytewise", "failed at %d, expected %d", at,
                  t->fail_at);
            if (at >= 0) {
                check(upy_utf8_feed(&v, placeb("a", 1), 1) == -1 && !upy_utf8_complete(&v),
                      t->name, "sticky", "recovered after a failure");
                check(upy_utf8_feed(&v, placeb("", 0), 0) == -1, t->name, "sticky", "empty feed");
            } else {
                check(upy_utf8_complete(&v) == t->complete, t->name, "bytewise", "complete");
            }
        }
        /* two pieces split at every point */
        for (size_t cut = 0; cut <= t->len; cut++) {
            int got2 = feed_cuts(t->in, t->len, &cut, 1, &complete);
            check((got2 >= 0) == (t->fail_at >= 0) &&
                      (t->fail_at < 0 ? complete == t->complete
                                      : (size_t)t->fail_at < cut ? got2 == 0 : got2 == (int)cut),
                  t->name, "split", "cut %zu: failed %d complete %d", cut, got2, complete);
        }
    }
}

/* The reference for the exhaustive check: decode each sequence by its
   lead's bit pattern, then check RFC 3629's rules on the value. */
static int utf8_reference_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t k;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            k = 1, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            k = 2, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            k = 3, cp = b & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i - 1 < k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static void test_utf8_exhaustive(void)
{
    int bad = 0;
    uint8_t s[4];
    /* every string of 1, 2 and 3 bytes */
    for (uint32_t x = 0; x < (1u << 24); x++) {
        for (size_t n = 1; n <= 3; n++) {
            upy_utf8 v = {0};
            int ok;
            if (n < 3 && (x >> (8 * n)) != 0)
                continue;
            for (size_t j = 0; j < n; j++)
                s[j] = (uint8_t)(x >> (8 * (n - 1 - j)));
            ok = upy_utf8_feed(&v, s, n) == 0 && upy_utf8_complete(&v);
            if (ok != utf8_reference_valid(s, n))
                bad++;
        }
    }
    check(bad == 0, "all 1-3 byte strings", "utf8", "%d disagreements", bad);
    /* 4-byte strings: every lead F0-FF x boundary continuation values */
    {
        static const uint8_t c[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
                                    0xa0, 0xbf, 0xc0, 0xc2, 0xed, 0xf4, 0xff};
        const size_t nc = sizeof c;
        bad = 0;
        for (unsigned lead = 0xE0; lead <= 0xFF; lead++)
            for (size_t a = 0; a < nc; a++)
                for (size_t b = 0; b < nc; b++)
                    for (size_t d = 0; d < nc; d++) {
                        upy_utf8 v = {0};
                        uint8_t q[4] = {(uint8_t)lead, c[a], c[b], c[d]};
                        int ok = upy_utf8_feed(&v, q, 4) == 0 && upy_utf8_complete(&v);
                        if (ok != utf8_reference_valid(q, 4))
                            bad++;
                    }
        check(bad == 0, "4-byte strings", "utf8", "%d disagreements", bad);
    }
    /* every code point encoded: valid except the surrogates */
    bad = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        size_t n;
        upy_utf8 v = {0};
        if (cp < 0x80)
            s[0] = (uint8_t)cp, n = 1;
        else if (cp < 0x800)
            s[0] = (uint8_t)(0xC0 | (cp >> 6)), s[1] = (uint8_t)(0x80 | (cp & 63)), n = 2;
        else if (cp < 0x10000)
            s[0] = (uint8_t)(0xE0 | (cp >> 12)), s[1] = (uint8_t)(0x80 | ((cp >> 6) & 63)),
            s[2] = (uint8_t)(0x80 | (cp & 63)), n = 3;
        else
            s[0] = (uint8_t)(0xF0 | (cp >> 18)), s[1] = (uint8_t)(0x80 | ((cp >> 12) & 63)),
            s[2] = (uint8_t)(0x80 | ((cp >> 6) & 63)), s[3] = (uint8_t)(0x80 | (cp & 63)), n = 4;
        int ok = upy_utf8_feed(&v, s, n) == 0 && upy_utf8_complete(&v);
        if (ok != !(cp >= 0xD800 && cp <= 0xDFFF))
            bad++;
    }
    check(bad == 0, "every code point", "utf8", "%d wrong", bad);
}

/* ---- close payloads and codes ------------------------------------------ */

static void test_close(void)
{
    static const struct {
        const char *name;
        const char *in;
        size_t len;
        int rc, code;
    } cases[] = {
        {"empty", S(""), 0, 1005},
        {"one byte", S("\x03"), -1, 1002},
        {"1000", S("\x03\xe8"), 0, 1000},
        {"1000 with reason", S("\x03\xe8" "bye"), 0, 1000},
        {"1001 utf-8 reason", S("\x03\xe9" "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), 0, 1001},
        {"1002", S("\x03\xea"), 0, 1002},
        {"1003", S("\x03\xeb"), 0, 1003},
        {"1004", S("\x03\xec"), -1, 1002},
        {"1005", S("\x03\xed"), -1, 1002},
        {"1006", S("\x03\xee"), -1, 1002},
        {"1007", S("\x03\xef"), 0, 1007},
        {"1011", S("\x03\xf3"), 0, 1011},
        {"1012", S("\x03\xf4"), 0, 1012},
        {"1013", S("\x03\xf5"), 0, 1013},
        {"1014", S("\x03\xf6"), 0, 1014},
        {"1015", S("\x03\xf7"), -1, 1002},
        {"1016", S("\x03\xf8"), -1, 1002},
        {"0", S("\x00\x00"), -1, 1002},
        {"999", S("\x03\xe7"), -1, 1002},
        {"2999", S("\x0b\xb7"), -1, 1002},
        {"3000", S("\x0b\xb8"), 0, 3000},
        {"4999", S("\x13\x87" "x"), 0, 4999},
        {"5000", S("\x13\x88"), -1, 1002},
        {"65535", S("\xff\xff"), -1, 1002},
        {"bad utf-8 reason", S("\x03\xe8\xff"), -1, 1007},
        {"truncated utf-8 reason", S("\x03\xe8" "ab\xc3"), -1, 1007},
        {"surrogate reason", S("\x03\xe8\xed\xa0\x80"), -1, 1007},
        {"bad code and bad utf-8", S("\x03\xec\xff"), -1, 1002},
        {"NUL in reason", S("\x03\xe8" "a\x00" "b"), 0, 1000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int code = -7;
        int rc = upy_ws_check_close(placeb(cases[i].in, cases[i].len), cases[i].len, &code);
        check(rc == cases[i].rc && code == cases[i].code, cases[i].name, "close",
              "rc %d code %d, expected %d %d", rc, code, cases[i].rc, cases[i].code);
    }
    /* a 125-byte payload (the control frame maximum) */
    {
        char p[125];
        int code;
        p[0] = 0x03, p[1] = (char)0xe8;
        memset(p + 2, 'r', sizeof p - 2);
        check(upy_ws_check_close(placeb(p, sizeof p), sizeof p, &code) == 0 && code == 1000,
              "125 bytes", "close", "code %d", code);
    }
    /* every code: the allowed set */
    {
        int bad = 0;
        for (int c = -2; c <= 70000; c++) {
            int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
                       (c >= 3000 && c < 5000);
            if (upy_ws_close_code_valid(c) != want)
                bad++;
        }
        check(bad == 0, "every code", "close_code_valid", "%d wrong", bad);
    }
}

/* ---- SHA-1 and the accept key ----------------------------------------- */

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_sha1(void)
{
    static const struct {
        const char *name, *in, *digest;
        size_t repeat;
    } vectors[] = {
        /* RFC 3174 §7.3 TEST1-TEST4 (FIPS 180 appendix A, B, C) */
        {"TEST1 abc", "abc", "a9993e364706816aba3e25717850c26c9cd0d89d", 1},
        {"TEST2", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "84983e441c3bd26ebaae4aa1f95129e5e54670f1", 1},
        {"TEST3 a x 1000000", "a", "34aa973cd4c4daa4f61eeb2bdbad27316534016f", 1000000},
        {"TEST4", "0123456701234567012345670123456701234567012345670123456701234567",
         "dea356a2cddd90c7a7ecedc5ebb563934f460452", 10},
        {"empty", "", "da39a3ee5e6b4b0d3255bfef95601890afd80709", 1},
    };
    /* the padding boundaries: bytes (i * 7 + 3) & 0xff, digests from
       Python's hashlib */
    static const struct {
        size_t n;
        const char *digest;
    } lengths[] = {
        {0, "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {1, "9842926af7ca0a8cca12604f945414f07b01e13d"},
        {55, "ddf57317ef34bfee3b6df83d359098930eb278bc"},
        {56, "a0d492bb0fc889d0eca3bc137066ab6f4f74f369"},
        {57, "11a02dcf95859677a62e75024067c22b165d890f"},
        {63, "c55856749bef509bdfe6bfebfc7bf4e793e82132"},
        {64, "bede92be29c3874e1b54ddc77988d606fc857a8e"},
        {65, "b05a80522b053d6dc7e0a517d0e70212c7dad11f"},
        {119, "504e27376a6e0f0dba8295b85cb25dc4dfa17d23"},
        {120, "82134b02fb3f702491be9bed581eeab59334acb2"},
        {127, "34d5e582029e9b9b85b2febe31da3db7cdabaaea"},
        {128, "a09133e6730ffe899efb70204cb5646cd5dc24ee"},
    };
    uint8_t d[20];
    char h[41];
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        size_t one = strlen(vectors[i].in), n = one * vectors[i].repeat;
        char *buf = malloc(n ? n : 1);
        if (buf == NULL)
            exit(2);
        for (size_t r = 0; r < vectors[i].repeat; r++)
            memcpy(buf + r * one, vectors[i].in, one);
        upy_ws_sha1((const uint8_t *)(n <= REGION ? place(buf, n) : buf), n, d);
        hex(d, 20, h);
        check(strcmp(h, vectors[i].digest) == 0, vectors[i].name, "sha1", "got %s", h);
        free(buf);
    }
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        uint8_t buf[128];
        for (size_t k = 0; k < lengths[i].n; k++)
            buf[k] = (uint8_t)((k * 7 + 3) & 0xff);
        upy_ws_sha1(placeb(buf, lengths[i].n), lengths[i].n, d);
        hex(d, 20, h);
        check(strcmp(h, lengths[i].digest) == 0, "length", "sha1", "n %zu: got %s",
              lengths[i].n, h);
    }
}

static void test_accept(void)
{
    static const struct {
        const char *key, *accept; /* accept NULL: refused */
    } cases[] = {
        {"dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, /* RFC 6455 §1.3 */
        {"AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI="},
        {"x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="},
        {"////////////////////+/==", "ILw+qiVYXPsiR9NaXQndvc+LVr8="},
        /* unused low bits set: accepted, as b64decode(validate=True) */
        {"AQIDBAUGBwgJCgsMDQ4PEC==", "OfS0wDaT5NoxF2gqm7Zj2YtetzM="},
        {"", NULL},
        {"dGhlIHNhbXBsZSBub25jZQ=", NULL},    /* 23 */
        {"dGhlIHNhbXBsZSBub25jZQ===", NULL},  /* 25 */
        {"dGhlIHNhbXBsZSBub25jZQAA", NULL},   /* no padding: 18 bytes */
        {"dGhlIHNhbXBsZSBub25jZQA=", NULL},   /* 17 bytes */
        {"dGhlIHNhbXBsZSBub25jZ===", NULL},
        {"dGhlIHNhbXBs=SBub25jZQ==", NULL},   /* '=' inside */
        {"dGhlIHNhbXBsZSBub25jZ-_=", NULL},
        {"dGhlIHNhbXBsZSBub25jZ-==", NULL},   /* base64url */
        {"dGhlIHNhbXBsZSBub25jZ_==", NULL},
        {"dGhlIHNhbXBsZSBub25j ZQ=", NULL},   /* a space */
        {" dGhlIHNhbXBsZSBub25jZQ==", NULL},  /* not trimmed */
        {"dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[28];
        size_t len = strlen(cases[i].key);
        int rc = upy_ws_accept_key(place(cases[i].key, len), len, out);
        if (cases[i].accept)
            check(rc == 0 && memcmp(out, cases[i].accept, 28) == 0, cases[i].key, "accept",
                  "rc %d got %.28s", rc, out);
        else
            check(rc == -1, cases[i].key, "accept", "rc %d, expected -1", rc);
    }
    {
        char out[28];
        int rc = upy_ws_accept_key(place("dGhlIHNhbXBsZSBub25j\0Q==", 24), 24, out);
        check(rc == -1, "NUL in key", "accept", "rc %d", rc);
    }
}

/* ---- upy_ws_build_header ------------------------------------------------ */

static void test_build(void)
{
    static const struct {
        int fin, opcode;
        uint64_t len;
        const char *out;
        size_t out_len;
    } cases[] = {
        {1, UPY_WS_TEXT, 5, S("\x81\x05")},
        {0, UPY_WS_TEXT, 3, S("\x01\x03")},
        {1, UPY_WS_CONT, 2, S("\x80\x02")},
        {1, UPY_WS_BINARY, 0, S("\x82\x00")},
        {1, UPY_WS_BINARY, 125, S("\x82\x7d")},
        {1, UPY_WS_BINARY, 126, S("\x82\x7e\x00\x7e")},
        {1, UPY_WS_BINARY, 256, S("\x82\x7e\x01\x00")},
        {1, UPY_WS_BINARY, 65535, S("\x82\x7e\xff\xff")},
        {1, UPY_WS_BINARY, 65536, S("\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00")},
        {0, UPY_WS_BINARY, UINT64_C(0x7fffffffffffffff),
         S("\x02\x7f\x7f\xff\xff\xff\xff\xff\xff\xff")},
        {1, UPY_WS_CLOSE, 2, S("\x88\x02")},
        {1, UPY_WS_PING, 0, S("\x89\x00")},
        {1, UPY_WS_PONG, 125, S("\x8a\x7d")},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t out[UPY_WS_MAX_SERVER_HEADER + 4];
        upy_ws_frame f;
        int code;
        memset(out, 0xEE, sizeof out);
        size_t n = upy_ws_build_header(out, cases[i].fin, cases[i].opcode, cases[i].len);
        check(n == cases[i].out_len && memcmp(out, cases[i].out, n) == 0 && out[n] == 0xEE,
              cases[i].out, "build", "len %llu: %zu bytes", (unsigned long long)cases[i].len, n);
        /* and a client parses it back */
        check(upy_ws_parse_header(placeb(out, n), n, 0, 0, &f, &code) == (ssize_t)n &&
                  f.fin == (unsigned)cases[i].fin && f.opcode == (unsigned)cases[i].opcode &&
                  f.payload_len == cases[i].len && !f.masked,
              cases[i].out, "build+parse", "round trip");
    }
    /* every length near the form boundaries round-trips */
    {
        int bad = 0;
        for (uint64_t len = 0; len < 70000; len++) {
            uint8_t out[UPY_WS_MAX_SERVER_HEADER];
            upy_ws_frame f;
            int code;
            size_t n = upy_ws_build_header(out, 1, UPY_WS_BINARY, len);
            size_t want = len <= 125 ? 2 : len <= 65535 ? 4 : 10;
            if (n != want || upy_ws_parse_header(out, n, 0, 0, &f, &code) != (ssize_t)n ||
                f.payload_len != len)
                bad++;
        }
        check(bad == 0, "0..70000", "build+parse", "%d wrong", bad);
    }
}

/* ---- token lists ---------------------------------------------------------- */

static void test_tokens(void)
{
    static const struct {
        const char *v, *token;
        int want;
    } has[] = {
        {"Upgrade", "upgrade", 1},
        {"upgrade", "Upgrade", 1},
        {"UPGRADE", "upgrade", 1},
        {"keep-alive, Upgrade", "upgrade", 1},
        {"Upgrade, keep-alive", "upgrade", 1},
        {" , ,Upgrade ,", "upgrade", 1},
        {"\tUpgrade\t", "upgrade", 1},
        {"keep-alive,Upgrade", "upgrade", 1},
        {"keep-alive", "upgrade", 0},
        {"Upgrade2", "upgrade", 0},
        {"Upgrad", "upgrade", 0},
        {"xUpgrade", "upgrade", 0},
        {"Up grade", "upgrade", 0},
        {"", "upgrade", 0},
        {",,,", "upgrade", 0},
        {"websocket", "websocket", 1},
        {"WebSocket", "websocket", 1},
        {"h2c, websocket", "websocket", 1},
        {"websocket/13", "websocket", 0},
        {"web socket", "websocket", 0},
    };
    for (size_t i = 0; i < sizeof has / sizeof has[0]; i++) {
        size_t n = strlen(has[i].v);
        check(upy_ws_has_token(place(has[i].v, n), n, has[i].token) == has[i].want, has[i].v,
              "has_token", "token %s: expected %d", has[i].token, has[i].want);
    }
    static const struct {
        const char *v;
        const char *elems[4];
    } lists[] = {
        {"chat, superchat", {"chat", "superchat"}},
        {"chat", {"chat"}},
        {"", {NULL}},
        {" ", {NULL}},
        {",, ,\t,", {NULL}},
        {" , a ,, b c ,\t", {"a", "b c"}},
        {"graphql-ws,graphql-transport-ws", {"graphql-ws", "graphql-transport-ws"}},
        {"x,", {"x"}},
        {",x", {"x"}},
        {"a\t,\tb\t,\tc", {"a", "b", "c"}},
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        size_t n = strlen(lists[i].v), pos = 0, k = 0, elen;
        const char *v = place(lists[i].v, n), *e;
        int ok = 1;
        while (upy_ws_next_element(v, n, &pos, &e, &elen)) {
            if (k >= 4 || lists[i].elems[k] == NULL || strlen(lists[i].elems[k]) != elen ||
                memcmp(e, lists[i].elems[k], elen) != 0 || e < v || e + elen > v + n ||
                pos > n) {
                ok = 0;
                break;
            }
            k++;
        }
        check(ok && (k == 4 || lists[i].elems[k] == NULL) && pos == n, lists[i].v,
              "next_element", "element %zu", k);
        /* at the end it stays at the end */
        check(upy_ws_next_element(v, n, &pos, &e, &elen) == 0, lists[i].v, "next_element",
              "not at the end");
    }
    {
        size_t pos = 99, elen = 1;
        const char *e;
        check(upy_ws_next_element(place("a,b", 3), 3, &pos, &e, &elen) == 0 && elen == 0,
              "pos past n", "next_element", "returned an element");
    }
}

int main(void)
{
    guard_init();
    test_headers();
    test_order();
    test_unmask();
    test_utf8();
    test_utf8_exhaustive();
    test_close();
    test_sha1();
    test_accept();
    test_build();
    test_tokens();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
