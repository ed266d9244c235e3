/*
 * upy_scgi.c - SCGI request decoder (the SCGI protocol specification,
 * Neil Schemenauer, 2008): a netstring of NUL-terminated header pairs,
 * CONTENT_LENGTH first, SCGI = "1" among them, then the body.
 *
 * Pure C: no Python.h, no allocation, no I/O.
 */
#include "upy_cgivars.h"

#include <string.h>

static int fail(upy_request *req, int status, const char *reason)
{
    req->error_status = status;
    req->error_reason = reason;
    return UPY_PARSE_ERROR;
}

ssize_t upy_scgi_parse_head(const char *buf, size_t len, upy_request *req,
                            const upy_limits *lim)
{
    size_t i = 0, n = 0, start;
    const char *p, *end;
    upy_vars_state st;
    int scgi = 0, first = 1;

    upy_vars_begin(req, UPY_PROTO_SCGI, lim, &st);
    /* netstring length: 1*DIGIT, no leading zero, then ':' */
    for (;;) {
        unsigned char c;
        if (i == len)
            return UPY_PARSE_INCOMPLETE;
        c = (unsigned char)buf[i];
        if (c == ':')
            break;
        if (c < '0' || c > '9')
            return fail(req, 400, "SCGI request does not start with a "
                        "netstring length");
        if (i == 1 && buf[0] == '0')
            return fail(req, 400, "SCGI netstring length with a leading 0");
        n = n * 10 + (size_t)(c - '0');
        if (++i > 7 || n > lim->max_head)
            return fail(req, 431, "SCGI headers above buffer-size");
    }
    if (i == 0)
        return fail(req, 400, "SCGI netstring without a length");
    start = i + 1;
    if (len - start < n + 1)
        return UPY_PARSE_INCOMPLETE;
    if (buf[start + n] != ',')
        return fail(req, 400, "SCGI netstring without its ','");
    if (n == 0 || buf[start + n - 1] != '\0')
        return fail(req, 400, "SCGI headers not NUL-terminated");

    p = buf + start;
    end = p + n;
    while (p != end) {
        upy_str k, v;
        const char *z = memchr(p, '\0', (size_t)(end - p));
        k.p = p;
        k.len = (size_t)(z - p);
        if (k.len == 0)
            return fail(req, 400, "SCGI header with an empty name");
        p = z + 1;
        z = p == end ? NULL : memchr(p, '\0', (size_t)(end - p));
        if (z == NULL)
            return fail(req, 400, "SCGI header without a value");
        v.p = p;
        v.len = (size_t)(z - p);
        p = z + 1;
        if (first) {
            size_t j;
            if (k.len != 14 || memcmp(k.p, "CONTENT_LENGTH", 14) != 0)
                return fail(req, 400, "SCGI headers do not start with "
                            "CONTENT_LENGTH");
            if (v.len == 0)
                return fail(req, 400, "bad CONTENT_LENGTH");
            for (j = 0; j < v.len; j++)
                if (v.p[j] < '0' || v.p[j] > '9')
                    return fail(req, 400, "bad CONTENT_LENGTH");
            first = 0;
        }
        else if (k.len == 14 && memcmp(k.p, "CONTENT_LENGTH", 14) == 0) {
            /* "Duplicate names are not allowed": the body's length must be
               the first header's (other names may repeat: nginx sends a
               repeated request header as two vars) */
            return fail(req, 400, "SCGI headers repeat CONTENT_LENGTH");
        }
        if (k.len == 4 && memcmp(k.p, "SCGI", 4) == 0) {
            if (v.len != 1 || v.p[0] != '1')
                return fail(req, 400, "SCGI header SCGI is not 1");
            if (scgi)
                return fail(req, 400, "SCGI headers repeat SCGI");
            scgi = 1;
        }
        if (upy_vars_add(req, &st, k, v) != 0)
            return UPY_PARSE_ERROR;
    }
    if (!scgi)
        return fail(req, 400, "SCGI headers without SCGI 1");
    if (upy_vars_end(req, &st, lim) != 0)
        return UPY_PARSE_ERROR;
    req->keep_alive = 0;
    return (ssize_t)(start + n + 1);
}
