/*
 * test_proxy.c - table tests for csrc/upy_proxy.c (PROXY protocol v1, v2).
 *
 * Every input is placed at the very end of a readable region followed by a
 * PROT_NONE guard page, so one byte of over-read faults.  Each case runs
 *   (a) whole,
 *   (b) byte by byte with a growing length: INCOMPLETE until the end (an
 *       invalid input may fail, or be found not to be a header, early), and
 *   (c) followed by an HTTP request: same result, same consumed count.
 * Prints "N passed, M failed".  Build: tests/test_proxy_protocol.py.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "upy_proxy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "table.h"   /* guard_init, place, check, passed, failed */

#define OK 1     /* a header: rc == its length */
#define NONE 0   /* not a header */
#define ERR (-1) /* malformed */

typedef struct {
    const char *name;
    const char *in;
    size_t len;      /* 0: strlen(in) */
    int expect;      /* OK, NONE, ERR */
    int family;      /* with OK */
    const char *src;
    unsigned sport;
    const char *dst;
    unsigned dport;
} proxy_case;

#define V2SIG "\r\n\r\n\0\r\nQUIT\n"
#define V2(cmd, fam, hi, lo) V2SIG cmd fam hi lo

static const proxy_case cases[] = {
    /* version 1 (HAProxy PROXY protocol spec §2.1) */
    {"v1 tcp4", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", 0, OK,
     4, "192.168.0.1", 56324, "192.168.0.11", 443},
    {"v1 tcp6", "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n", 0, OK, 6,
     "2001:db8::1", 1, "::1", 65535},
    {"v1 tcp6 canonical", "PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 0 80\r\n", 0,
     OK, 6, "2001:db8::1", 0, "::1", 80},
    {"v1 unknown", "PROXY UNKNOWN\r\n", 0, OK, 0, "", 0, "", 0},
    {"v1 unknown with addresses", "PROXY UNKNOWN ffff::1 ::1 1 2\r\n", 0, OK,
     0, "", 0, "", 0},
    {"v1 longest (107 bytes)",
     "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
     0, OK, 6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535},
    {"v1 tcp4 with an ipv6 address", "PROXY TCP4 ::1 ::1 1 2\r\n", 0, ERR},
    {"v1 tcp6 with an ipv4 address", "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n", 0,
     ERR},
    {"v1 bad octet", "PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n", 0, ERR},
    {"v1 port over 65535", "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", 0, ERR},
    {"v1 port leading zero", "PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n", 0, ERR},
    {"v1 port sign", "PROXY TCP4 1.2.3.4 1.2.3.4 +80 2\r\n", 0, ERR},
    {"v1 three fields", "PROXY TCP4 1.2.3.4 1.2.3.4 80\r\n", 0, ERR},
    {"v1 five fields", "PROXY TCP4 1.2.3.4 1.2.3.4 80 81 82\r\n", 0, ERR},
    {"v1 trailing space", "PROXY TCP4 1.2.3.4 1.2.3.4 80 81 \r\n", 0, ERR},
    {"v1 double space", "PROXY TCP4  1.2.3.4 1.2.3.4 80 81\r\n", 0, ERR},
    {"v1 no addresses", "PROXY TCP4\r\n", 0, ERR},
    {"v1 lowercase protocol", "PROXY tcp4 1.2.3.4 1.2.3.4 80 81\r\n", 0, ERR},
    {"v1 udp", "PROXY UDP4 1.2.3.4 1.2.3.4 80 81\r\n", 0, ERR},
    {"v1 bare LF", "PROXY TCP4 1.2.3.4 1.2.3.4 80 81\n", 0, ERR},
    {"v1 bare LF before a CR (fuzz)", "PROXY TBP4 1926..\nH\xff./2.1\r", 0, ERR},
    {"v1 CR without LF", "PROXY TCP4 1.2.3.4 1.2.3.4 80 81\rX", 0, ERR},
    {"v1 over 107 bytes",
     "PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
     0, ERR},
    {"v1 no CRLF within 107 bytes",
     "PROXY UNKNOWN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
     0, ERR},
    /* not a header: plain HTTP */
    {"http get", "GET / HTTP/1.1\r\n", 0, NONE},
    {"http with leading CRLF", "\r\nGET / HTTP/1.1\r\n", 0, NONE},
    {"PROXYX is not PROXY", "PROXYX TCP4\r\n", 0, NONE},
    {"POST", "POST / HTTP/1.1\r\n", 0, NONE},
    /* version 2 (§2.2): 0x21 = v2 PROXY, 0x11 = INET STREAM */
    {"v2 inet", V2("\x21", "\x11", "\x00", "\x0c") "\x01\x02\x03\x04"
                "\x05\x06\x07\x08" "\x04\x57" "\x00\x50",
     28, OK, 4, "1.2.3.4", 1111, "5.6.7.8", 80},
    {"v2 inet with a TLV", V2("\x21", "\x11", "\x00", "\x11") "\x01\x02\x03\x04"
                "\x05\x06\x07\x08" "\x04\x57" "\x00\x50" "\x04\x00\x02" "ab",
     33, OK, 4, "1.2.3.4", 1111, "5.6.7.8", 80},
    {"v2 inet6", V2("\x21", "\x21", "\x00", "\x24")
                 "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
                 "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01" "\xff\xff" "\x01\xbb",
     52, OK, 6, "2001:db8::1", 65535, "::1", 443},
    {"v2 local", V2("\x20", "\x00", "\x00", "\x00"), 16, OK, 0, "", 0, "", 0},
    {"v2 local with an address", V2("\x20", "\x11", "\x00", "\x0c")
                 "\x01\x02\x03\x04" "\x05\x06\x07\x08" "\x04\x57" "\x00\x50",
     28, OK, 0, "", 0, "", 0},
    {"v2 unspec", V2("\x21", "\x00", "\x00", "\x00"), 16, OK, 0, "", 0, "", 0},
    {"v2 version 1", V2("\x11", "\x11", "\x00", "\x0c") "\x01\x02\x03\x04"
                "\x05\x06\x07\x08" "\x04\x57" "\x00\x50", 28, ERR},
    {"v2 command 2", V2("\x22", "\x11", "\x00", "\x0c") "\x01\x02\x03\x04"
                "\x05\x06\x07\x08" "\x04\x57" "\x00\x50", 28, ERR},
    {"v2 dgram", V2("\x21", "\x12", "\x00", "\x0c") "\x01\x02\x03\x04"
                "\x05\x06\x07\x08" "\x04\x57" "\x00\x50", 28, ERR},
    {"v2 inet block too short", V2("\x21", "\x11", "\x00", "\x08")
                "\x01\x02\x03\x04" "\x05\x06\x07\x08", 24, ERR},
    {"v2 inet6 block too short", V2("\x21", "\x21", "\x00", "\x0c")
                "\x01\x02\x03\x04" "\x05\x06\x07\x08" "\x04\x57" "\x00\x50",
     28, ERR},
    {"v2 unknown family", V2("\x21", "\x41", "\x00", "\x00"), 16, ERR},
    {"v2 over 4096 bytes", V2("\x21", "\x11", "\x10", "\x00"), 16, ERR},
};

static void
expect_result(const proxy_case *t, const char *mode, ssize_t rc,
              const upy_proxy_info *info, size_t len)
{
    if (t->expect == NONE) {
        check(rc == 0, t->name, mode, "rc %zd, want 0 (not a header)", rc);
        return;
    }
    if (t->expect == ERR) {
        check(rc == UPY_PARSE_ERROR && info->error != NULL, t->name, mode,
              "rc %zd, want ERROR", rc);
        return;
    }
    check(rc == (ssize_t)len, t->name, mode, "rc %zd, want %zu (%s)", rc, len,
          info->error ? info->error : "");
    if (rc != (ssize_t)len)
        return;
    check(info->family == t->family, t->name, mode, "family %d, want %d",
          info->family, t->family);
    if (t->family != 0) {
        check(strcmp(info->src_addr, t->src) == 0 &&
                  strcmp(info->dst_addr, t->dst) == 0,
              t->name, mode, "addresses %s %s, want %s %s", info->src_addr,
              info->dst_addr, t->src, t->dst);
        check(info->src_port == t->sport && info->dst_port == t->dport,
              t->name, mode, "ports %u %u, want %u %u", info->src_port,
              info->dst_port, t->sport, t->dport);
    }
}

static void
run_case(const proxy_case *t)
{
    size_t len = t->len ? t->len : strlen(t->in);
    upy_proxy_info info;
    ssize_t rc;
    char joined[8192];
    static const char tail[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    /* (a) whole */
    rc = upy_proxy_parse(place(t->in, len), len, &info);
    expect_result(t, "whole", rc, &info, len);

    /* (b) byte by byte: INCOMPLETE before the end, unless the input is
       decided early (not a header, or malformed) */
    for (size_t n = 0; n < len; n++) {
        rc = upy_proxy_parse(place(t->in, n), n, &info);
        if (rc == UPY_PARSE_INCOMPLETE)
            continue;
        if (t->expect == ERR && rc == UPY_PARSE_ERROR)
            break;
        if (t->expect == NONE && rc == 0)
            break;
        check(0, t->name, "bytewise", "at %zu of %zu bytes: rc %zd", n, len,
              rc);
        break;
    }

    /* (c) followed by a request */
    if (len + sizeof tail > sizeof joined) {
        check(0, t->name, "trailing", "case too long");
        return;
    }
    memcpy(joined, t->in, len);
    memcpy(joined + len, tail, sizeof tail - 1);
    rc = upy_proxy_parse(place(joined, len + sizeof tail - 1),
                         len + sizeof tail - 1, &info);
    if (t->expect == ERR && (t->len == 0 && strstr(t->name, "CRLF within"))) {
        /* a line with no CRLF within 107 bytes stays an error */
        check(rc == UPY_PARSE_ERROR, t->name, "trailing", "rc %zd", rc);
        return;
    }
    expect_result(t, "trailing", rc, &info, len);
}

int
main(void)
{
    guard_init();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
