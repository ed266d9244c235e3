/*
 * upy_uwsgi.c - uwsgi packet decoder (the uWSGI protocol as nginx's
 * ngx_http_uwsgi_module speaks it: modifier1, datasize, modifier2, vars).
 *
 * Pure C: no Python.h, no allocation, no I/O.  A var is
 *   u16-LE key length, key, u16-LE value length, value
 * and the vars fill exactly datasize bytes.  Lengths are read bytewise
 * (no unaligned loads, no host byte order assumptions).
 */
#include "upy_cgivars.h"

#include <string.h>

static uint16_t read_u16le(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

int upy_uwsgi_parse_header(const unsigned char *buf, size_t len,
                           upy_uwsgi_header *h)
{
    h->modifier1 = 0;
    h->datasize = 0;
    h->modifier2 = 0;
    if (len < UPY_UWSGI_HEADER_SIZE)
        return UPY_PARSE_INCOMPLETE;
    h->modifier1 = buf[0];
    h->datasize = read_u16le(buf + 1);
    h->modifier2 = buf[3];
    return UPY_UWSGI_HEADER_SIZE;
}

static int fail(upy_request *req, int status, const char *reason)
{
    req->error_status = status;
    req->error_reason = reason;
    return UPY_PARSE_ERROR;
}

int upy_uwsgi_parse_vars(const char *vars, size_t datasize, upy_request *req,
                         const upy_limits *lim)
{
    const unsigned char *p = (const unsigned char *)vars;
    const unsigned char *const end = p + datasize;
    upy_vars_state st;

    upy_vars_begin(req, UPY_PROTO_UWSGI, lim, &st);

    if (datasize == 0)
        return fail(req, 400, "uwsgi packet with datasize 0");
    if (datasize > lim->max_head)
        return fail(req, 431, "uwsgi datasize above buffer-size");

    while (p != end) {
        upy_str k, v;
        size_t n;

        if (2 > (size_t)(end - p))
            return fail(req, 400, "uwsgi var truncated (key length)");
        n = read_u16le(p);
        p += 2;
        if (n == 0)
            return fail(req, 400, "uwsgi var with an empty key");
        if (n > (size_t)(end - p))
            return fail(req, 400, "uwsgi key runs past the packet");
        k.p = (const char *)p;
        k.len = n;
        p += n;

        if (2 > (size_t)(end - p))
            return fail(req, 400, "uwsgi key without a value length");
        n = read_u16le(p);
        p += 2;
        if (n > (size_t)(end - p))
            return fail(req, 400, "uwsgi value runs past the packet");
        v.p = (const char *)p;
        v.len = n;
        p += n;

        if (upy_vars_add(req, &st, k, v) != 0)
            return UPY_PARSE_ERROR;
    }
    return upy_vars_end(req, &st, lim);
}

int upy_uwsgi_looks_like_http(const char *buf, size_t len)
{
    static const struct {
        const char *s;
        size_t n;
    } starts[] = {
#define S(lit) {lit, sizeof(lit) - 1}
        S("GET /"),  S("POST /"),   S("HEAD /"),    S("PUT /"),
        S("DELETE /"), S("OPTIONS "), S("PATCH /"), S("CONNECT "),
        S("TRACE /"), S("PRI * "),
#undef S
    };
    size_t i;

    /* At least the 4 bytes that were taken for a uwsgi header; a shorter
     * buffer than the whole prefix matches on what is there. */
    if (len < UPY_UWSGI_HEADER_SIZE)
        return 0;
    for (i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
        size_t n = starts[i].n < len ? starts[i].n : len;
        if (memcmp(buf, starts[i].s, n) == 0)
            return 1;
    }
    return 0;
}
