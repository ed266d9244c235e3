/*
 * libFuzzer harness for the pure-C static-file rules (upy_static_http.c).
 *
 * The first byte picks the function, the rest is the field value.
 * Invariant: never crashes and never reads past size (the input is an exact
 * heap copy); upy_static_clean's result has no "." or ".." segment, no
 * empty segment, no leading or trailing '/', fits its buffer and is
 * NUL-terminated; a parsed date formats back to a date that parses to the
 * same second; a range is inside the file and first <= last; the match
 * functions return 0 or 1.
 */
#include "upy_static.h"

#include <stdlib.h>
#include <string.h>

static void check_clean(const char *out, ssize_t n)
{
    const char *p = out, *end = out + n;
    if ((size_t)n != strlen(out))
        abort();
    if (n == 0)
        return;
    if (out[0] == '/' || out[n - 1] == '/')
        abort();
    while (p < end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        size_t len = slash ? (size_t)(slash - p) : (size_t)(end - p);
        if (len == 0 || (len == 1 && p[0] == '.') ||
            (len == 2 && p[0] == '.' && p[1] == '.'))
            abort();
        p += len + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf, out[256];
    size_t n;
    if (size < 1)
        return 0;
    n = size - 1;
    buf = malloc(n ? n : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, n);
    switch (data[0] % 6) {
    case 0: {
        int tr;
        ssize_t rc = upy_static_clean(buf, n, out, sizeof out, &tr);
        if (rc >= 0)
            check_clean(out, rc);
        else if (rc != UPY_STATIC_NUL && rc != UPY_STATIC_ESCAPE &&
                 rc != UPY_STATIC_TOOLONG)
            abort();
        break;
    }
    case 1: {
        int64_t t, back;
        char d[UPY_HTTP_DATE_LEN + 1];
        if (upy_http_date_parse(buf, n, &t) == 0) {
            upy_http_date_format(t, d);
            if (t >= 0 && t < 253402300800LL &&
                (upy_http_date_parse(d, UPY_HTTP_DATE_LEN, &back) != 0 || back != t))
                abort();
        }
        break;
    }
    case 2: {
        uint64_t a, b, sz = n ? (uint64_t)data[1] * 977 : 0;
        int rc = upy_range_parse(buf, n, sz, &a, &b);
        if (rc == UPY_RANGE_OK && (a > b || b >= sz))
            abort();
        if (rc != UPY_RANGE_OK && rc != UPY_RANGE_NONE && rc != UPY_RANGE_UNSATISFIABLE)
            abort();
        break;
    }
    case 3: {
        char e[48];
        size_t el = upy_etag_format(0x5f2b7c1a, 0x400, e);
        int w = upy_etag_match(buf, n, e, el, 0), s = upy_etag_match(buf, n, e, el, 1);
        if ((w | s) > 1 || (s && !w))
            abort(); /* a strong match is a weak match too */
        break;
    }
    case 4: {
        int g = upy_coding_accepted(buf, n, "gzip", 4);
        if (g != 0 && g != 1)
            abort();
        break;
    }
    default: {
        char *o = malloc(n ? n : 1);
        if (o != NULL && upy_percent_decode(buf, n, o) > n)
            abort();
        free(o);
    }
    }
    free(buf);
    return 0;
}
