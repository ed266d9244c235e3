/*
 * test_static.c - table tests for csrc/upy_static_http.c: the pure-C
 * request-side rules of static files (path cleaning, HTTP dates,
 * entity-tags, Range, Accept-Encoding).
 *
 * Every input is placed at the very end of a readable region followed by a
 * PROT_NONE guard page (table.h), so one byte of over-read faults.  Prints
 * "N passed, M failed".  Built and run plain and with ASan+UBSan by
 * tests/test_static_c.py.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "upy_static.h"

#include "table.h"   /* guard_init, place, check, passed, failed */

/* ---- upy_static_clean ------------------------------------------------ */

typedef struct {
    const char *in;
    size_t len;          /* 0: strlen(in) */
    ssize_t rc;          /* >= 0: the expected clean path's length */
    const char *out;     /* with rc >= 0 */
    int trailing;
} clean_case;

#define ESC UPY_STATIC_ESCAPE
static const clean_case clean_cases[] = {
    {"", 0, 0, "", 0},
    {"/", 0, 0, "", 1},
    {"/a", 0, 1, "a", 0},
    {"a", 0, 1, "a", 0},
    {"/a/b/c.css", 0, 9, "a/b/c.css", 0},
    {"//a///b//", 0, 3, "a/b", 1},
    {"/./a/./b/.", 0, 3, "a/b", 1},
    {"/a/b/..", 0, 1, "a", 1},
    {"/a.txt/.", 0, 5, "a.txt", 1},
    {"/a/../b", 0, 1, "b", 0},
    {"/a/b/../../c", 0, 1, "c", 0},
    {"/a/..", 0, 0, "", 1},
    {"/..", 0, ESC, NULL, 0},
    {"/../etc/passwd", 0, ESC, NULL, 0},
    {"/a/../../etc", 0, ESC, NULL, 0},
    {"..", 0, ESC, NULL, 0},
    {"/./../x", 0, ESC, NULL, 0},
    {"/...", 0, 3, "...", 0},
    {"/..a", 0, 3, "..a", 0},
    {"/a..", 0, 3, "a..", 0},
    {"/.hidden", 0, 7, ".hidden", 0},
    {"/..\\..\\etc", 0, 9, "..\\..\\etc", 0},   /* '\\' is a file name byte */
    {"/a\\b", 0, 3, "a\\b", 0},
    {"/\xc0\xae\xc0\xae/x", 0, 6, "\xc0\xae\xc0\xae/x", 0}, /* overlong: bytes */
    {"/a\0b", 4, UPY_STATIC_NUL, NULL, 0},
    {"\0", 1, UPY_STATIC_NUL, NULL, 0},
    {"/x/%2e%2e", 0, 8, "x/%2e%2e", 0},  /* not decoded here */
};

static void test_clean(void)
{
    char out[64];
    for (size_t i = 0; i < sizeof clean_cases / sizeof clean_cases[0]; i++) {
        const clean_case *t = &clean_cases[i];
        size_t len = t->len ? t->len : strlen(t->in);
        char *in = place(t->in, len);
        int trailing = -1;
        ssize_t rc = upy_static_clean(in, len, out, sizeof out, &trailing);
        check(rc == t->rc, t->in, "clean", "rc %zd, expected %zd", rc, t->rc);
        if (t->rc >= 0 && rc == t->rc) {
            check(strcmp(out, t->out) == 0, t->in, "clean", "got '%s', expected '%s'",
                  out, t->out);
            check(trailing == t->trailing, t->in, "clean", "trailing %d", trailing);
        }
    }
    /* the output bound: exactly fitting, one byte short */
    {
        char small[4];
        int tr;
        char *in = place("/abc", 4);
        check(upy_static_clean(in, 4, small, sizeof small, &tr) == 3 &&
                  strcmp(small, "abc") == 0, "/abc", "cap", "fits with its NUL");
        in = place("/abcd", 5);
        check(upy_static_clean(in, 5, small, sizeof small, &tr) == UPY_STATIC_TOOLONG,
              "/abcd", "cap", "one byte too long");
        in = place("/ab/c", 5);
        check(upy_static_clean(in, 5, small, sizeof small, &tr) == UPY_STATIC_TOOLONG,
              "/ab/c", "cap", "the separator counts");
        check(upy_static_clean(in, 5, small, 0, &tr) == UPY_STATIC_TOOLONG,
              "/ab/c", "cap", "cap 0");
    }
}

/* ---- upy_percent_decode ---------------------------------------------- */

static void test_decode(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"/a%20b", "/a b"}, {"%2e%2E", ".."}, {"%2f", "/"}, {"%", "%"},
        {"%4", "%4"}, {"%zz", "%zz"}, {"a%", "a%"}, {"%41%42", "AB"},
        {"%c0%ae", "\xc0\xae"}, {"", ""}, {"%%41", "%A"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        char *in = place(cases[i].in, len);
        size_t n = upy_percent_decode(in, len, out);
        check(n == strlen(cases[i].out) && memcmp(out, cases[i].out, n) == 0,
              cases[i].in, "decode", "got '%.*s'", (int)n, out);
    }
    {
        char *in = place("%00", 3);
        size_t n = upy_percent_decode(in, 3, out);
        check(n == 1 && out[0] == '\0', "%00", "decode", "a NUL byte");
    }
}

/* ---- HTTP dates ------------------------------------------------------- */

static void test_dates(void)
{
    static const struct {
        const char *in;
        int ok;
        int64_t t;
    } cases[] = {
        {"Sun, 06 Nov 1994 08:49:37 GMT", 1, 784111777},    /* RFC 9110 §5.6.7 */
        {"Sunday, 06-Nov-94 08:49:37 GMT", 1, 784111777},   /* rfc850 */
        {"Sun Nov  6 08:49:37 1994", 1, 784111777},         /* asctime */
        {"  Sun, 06 Nov 1994 08:49:37 GMT ", 1, 784111777},
        {"Thu, 01 Jan 1970 00:00:00 GMT", 1, 0},
        {"Tue, 29 Feb 2000 12:00:00 GMT", 1, 951825600},
        {"Wed, 02 Dec 2026 03:43:23 GMT", 1, 1796183003},
        {"Thursday, 01-Jan-70 00:00:00 GMT", 1, 0},
        {"Tuesday, 01-Jan-30 00:00:00 GMT", 1, 1893456000},  /* 2-digit: 2030 */
        {"Sun, 06 Nov 1994 08:49:37 UTC", 0, 0},
        {"Sun, 6 Nov 1994 08:49:37 GMT", 0, 0},
        {"Sun, 06 Nov 1994 8:49:37 GMT", 0, 0},
        {"Sun, 31 Feb 1994 08:49:37 GMT", 0, 0},
        {"Sun, 29 Feb 2001 08:49:37 GMT", 0, 0},
        {"Sun, 06 Foo 1994 08:49:37 GMT", 0, 0},
        {"Xyz, 06 Nov 1994 08:49:37 GMT", 0, 0},
        {"Sun, 06 Nov 1994 25:49:37 GMT", 0, 0},
        {"Sun, 06 Nov 1994 08:61:37 GMT", 0, 0},
        {"garbage", 0, 0},
        {"", 0, 0},
        {"Someday, 06-Nov-94 08:49:37 GMT", 0, 0},
        {"1994-11-06T08:49:37Z", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        char *in = place(cases[i].in, len);
        int64_t t = -12345;
        int rc = upy_http_date_parse(in, len, &t);
        check((rc == 0) == cases[i].ok && (!cases[i].ok || t == cases[i].t),
              cases[i].in, "date", "rc %d t %lld", rc, (long long)t);
    }
    /* format: known values, and format -> parse round trips */
    {
        char out[UPY_HTTP_DATE_LEN + 1];
        static const int64_t ts[] = {0, 784111777, 951825600, 1796183003,
                                     253402300799LL /* 9999-12-31 */, 86399,
                                     1709208000 /* 2024-02-29 12:00 */};
        upy_http_date_format(784111777, out);
        check(strcmp(out, "Sun, 06 Nov 1994 08:49:37 GMT") == 0, "784111777",
              "format", "got '%s'", out);
        upy_http_date_format(1709208000, out);
        check(strcmp(out, "Thu, 29 Feb 2024 12:00:00 GMT") == 0, "leap",
              "format", "got '%s'", out);
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
            int64_t back = -1;
            size_t n = upy_http_date_format(ts[i], out);
            check(n == UPY_HTTP_DATE_LEN && strlen(out) == n &&
                      upy_http_date_parse(place(out, n), n, &back) == 0 &&
                      back == ts[i],
                  out, "roundtrip", "back %lld", (long long)back);
        }
        /* every day for 60 years round-trips (calendar arithmetic) */
        {
            int bad = 0;
            for (int64_t t = 0; t < 60LL * 366 * 86400; t += 86400 + 3607) {
                int64_t back = -1;
                upy_http_date_format(t, out);
                if (upy_http_date_parse(out, UPY_HTTP_DATE_LEN, &back) != 0 || back != t)
                    bad++;
            }
            check(bad == 0, "60 years", "roundtrip", "%d days failed", bad);
        }
    }
}

/* ---- entity-tags ------------------------------------------------------ */

static void test_etags(void)
{
    char etag[48];
    size_t n = upy_etag_format(0x5f2b7c1a, 0x400, etag);
    static const struct {
        const char *in;
        int weak_match, strong_match;
    } cases[] = {
        {"\"5f2b7c1a-400\"", 1, 1},
        {"W/\"5f2b7c1a-400\"", 1, 0},
        {"*", 1, 1},
        {" * ", 1, 1},
        {"\"x\", \"5f2b7c1a-400\"", 1, 1},
        {"\"x\",W/\"5f2b7c1a-400\"", 1, 0},
        {"\"x\" , , \"5f2b7c1a-400\" ", 1, 1},
        {"\"5f2b7c1a-401\"", 0, 0},
        {"\"5f2b7c1a-400", 0, 0},            /* unterminated */
        {"5f2b7c1a-400", 0, 0},              /* unquoted */
        {"\"a\" junk \"5f2b7c1a-400\"", 0, 0}, /* malformed from "junk" on */
        {"", 0, 0},
        {"*, \"x\"", 0, 0},                   /* "*" only alone */
        {"w/\"5f2b7c1a-400\"", 0, 0},         /* W/ is case-sensitive */
        {"\"5F2B7C1A-400\"", 0, 0},           /* octets, case-sensitive */
    };
    check(n == 14 && strcmp(etag, "\"5f2b7c1a-400\"") == 0, "format", "etag",
          "got %s", etag);
    n = upy_etag_format(0, 0, etag);
    check(strcmp(etag, "\"0-0\"") == 0 && n == 5, "zero", "etag", "got %s", etag);
    n = upy_etag_format(0x5f2b7c1a, 0x400, etag);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        char *in = place(cases[i].in, len);
        check(upy_etag_match(in, len, etag, n, 0) == cases[i].weak_match,
              cases[i].in, "weak", "expected %d", cases[i].weak_match);
        check(upy_etag_match(in, len, etag, n, 1) == cases[i].strong_match,
              cases[i].in, "strong", "expected %d", cases[i].strong_match);
    }
}

/* ---- Range ------------------------------------------------------------ */

#define RG_NONE UPY_RANGE_NONE
#define RG_OK UPY_RANGE_OK
#define RG_416 UPY_RANGE_UNSATISFIABLE

static void test_ranges(void)
{
    static const struct {
        const char *in;
        uint64_t size;
        int rc;
        uint64_t first, last;
    } cases[] = {
        {"bytes=0-499", 1000, RG_OK, 0, 499},
        {"bytes=500-999", 1000, RG_OK, 500, 999},
        {"bytes=500-", 1000, RG_OK, 500, 999},
        {"bytes=-500", 1000, RG_OK, 500, 999},
        {"bytes=-5000", 1000, RG_OK, 0, 999},
        {"bytes=0-0", 1000, RG_OK, 0, 0},
        {"bytes=999-", 1000, RG_OK, 999, 999},
        {"bytes=0-99999", 1000, RG_OK, 0, 999},
        {"BYTES=1-2", 1000, RG_OK, 1, 2},
        {" bytes= 1-2 ", 1000, RG_OK, 1, 2},
        {"bytes=1000-", 1000, RG_416, 0, 0},
        {"bytes=1000-2000", 1000, RG_416, 0, 0},
        {"bytes=-0", 1000, RG_416, 0, 0},
        {"bytes=0-", 0, RG_416, 0, 0},
        {"bytes=-1", 0, RG_416, 0, 0},
        {"bytes=5-1", 1000, RG_416, 0, 0},   /* invalid: nginx 416s too */
        {"bytes=0-1,5-6", 1000, RG_NONE, 0, 0},  /* multipart: not done */
        {"bytes=", 1000, RG_NONE, 0, 0},
        {"bytes=-", 1000, RG_NONE, 0, 0},
        {"bytes=a-b", 1000, RG_NONE, 0, 0},
        {"bytes=1-2x", 1000, RG_NONE, 0, 0},
        {"items=0-1", 1000, RG_NONE, 0, 0},
        {"bytes 0-1", 1000, RG_NONE, 0, 0},
        {"bytes=99999999999999999999-", 1000, RG_416, 0, 0}, /* saturates: past the end */
        {"bytes=0-99999999999999999999999", 1000, RG_OK, 0, 999},
        {"bytes=-99999999999999999999999", 1000, RG_OK, 0, 999},
        {"bytes=18446744073709551615-", 1000, RG_416, 0, 0},
        {"", 1000, RG_NONE, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        char *in = place(cases[i].in, len);
        uint64_t a = 77, b = 77;
        int rc = upy_range_parse(in, len, cases[i].size, &a, &b);
        check(rc == cases[i].rc &&
                  (rc != RG_OK || (a == cases[i].first && b == cases[i].last)),
              cases[i].in, "range", "rc %d %llu-%llu", rc, (unsigned long long)a,
              (unsigned long long)b);
    }
}

/* ---- Accept-Encoding -------------------------------------------------- */

static void test_codings(void)
{
    static const struct {
        const char *in;
        int gzip, br;
    } cases[] = {
        {"gzip", 1, 0},
        {"gzip, deflate, br", 1, 1},
        {"GZIP", 1, 0},
        {"br;q=1.0, gzip;q=0.5", 1, 1},
        {"gzip;q=0", 0, 0},
        {"gzip;q=0.000", 0, 0},
        {"gzip;q=0.001", 1, 0},
        {"gzip; q=0 , br", 0, 1},
        {"*", 1, 1},
        {"*;q=0", 0, 0},
        {"*, gzip;q=0", 0, 1},
        {"identity", 0, 0},
        {"", 0, 0},
        {"x-gzip", 0, 0},
        {"gzipx", 0, 0},
        {"gzip;q=bad", 0, 0},
        {"deflate,,gzip", 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        char *in = place(cases[i].in, len);
        check(upy_coding_accepted(in, len, "gzip", 4) == cases[i].gzip, cases[i].in,
              "gzip", "expected %d", cases[i].gzip);
        check(upy_coding_accepted(in, len, "br", 2) == cases[i].br, cases[i].in,
              "br", "expected %d", cases[i].br);
    }
}

int main(void)
{
    guard_init();
    test_clean();
    test_decode();
    test_dates();
    test_etags();
    test_ranges();
    test_codings();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
