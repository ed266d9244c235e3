/*
 * upy_uwsgi.c - uwsgi packet decoder (the uWSGI protocol as nginx's
 * ngx_http_uwsgi_module speaks it: modifier1, datasize, modifier2, vars).
 *
 * Pure C: no Python.h, no allocation, no I/O.  A var is
 *   u16-LE key length, key, u16-LE value length, value
 * and the vars fill exactly datasize bytes.  Lengths are read bytewise
 * (no unaligned loads, no host byte order assumptions).
 */
#include "upy_parse.h"

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

static int key_is(const upy_str *k, const char *lit, size_t litlen)
{
    return k->len == litlen && memcmp(k->p, lit, litlen) == 0;
}

#define KEY_IS(k, lit) key_is((k), lit, sizeof(lit) - 1)

#define VALUE_IS(v, lit) UPY_LOWER_EQ((v)->p, (v)->len, lit)

int upy_uwsgi_parse_vars(const char *vars, size_t datasize, upy_request *req,
                         const upy_limits *lim)
{
    static const upy_str empty = {"", 0};
    const unsigned char *p = (const unsigned char *)vars;
    const unsigned char *const end = p + datasize;
    upy_str proto = empty, clen = empty, https = empty, scheme = empty;
    int have_clen = 0;
    size_t cap;

    upy_request_reset(req, UPY_PROTO_UWSGI);

    if (datasize == 0)
        return fail(req, 400, "uwsgi packet with datasize 0");
    if (datasize > lim->max_head)
        return fail(req, 431, "uwsgi datasize above buffer-size");

    cap = lim->max_fields < req->fields_cap ? lim->max_fields : req->fields_cap;
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
        v.p = n ? (const char *)p : "";
        v.len = n;
        p += n;

        if (req->num_fields >= cap)
            return fail(req, 431, "too many uwsgi vars");
        req->fields[req->num_fields].name = k;
        req->fields[req->num_fields].value = v;
        req->num_fields++;

        /* A repeated var: the last one wins, as it would in the environ
         * dict built from the fields in order. */
        switch (k.len) {
        case 5:
            if (KEY_IS(&k, "HTTPS"))
                https = v;
            break;
        case 9:
            if (KEY_IS(&k, "PATH_INFO"))
                req->path = v;
            break;
        case 11:
            if (KEY_IS(&k, "REQUEST_URI"))
                req->target = v;
            break;
        case 12:
            if (KEY_IS(&k, "QUERY_STRING"))
                req->query = v;
            else if (KEY_IS(&k, "UWSGI_SCHEME"))
                scheme = v;
            break;
        case 14:
            if (KEY_IS(&k, "REQUEST_METHOD"))
                req->method = v;
            else if (KEY_IS(&k, "CONTENT_LENGTH")) {
                clen = v;
                have_clen = 1;
            }
            break;
        case 15:
            if (KEY_IS(&k, "SERVER_PROTOCOL"))
                proto = v;
            break;
        default:
            break;
        }
    }

    /* nginx's stock uwsgi_params sends "CONTENT_LENGTH $content_length",
     * which is the empty string for requests without a body: empty means
     * absent.  Otherwise 1*DIGIT, at most INT64_MAX. */
    if (have_clen && clen.len != 0) {
        uint64_t val = 0;
        size_t i;
        for (i = 0; i < clen.len; i++) {
            unsigned char c = (unsigned char)clen.p[i];
            if (c < '0' || c > '9')
                return fail(req, 400, "bad CONTENT_LENGTH");
            if (val > ((uint64_t)INT64_MAX - (c - '0')) / 10)
                return fail(req, 400, "bad CONTENT_LENGTH");
            val = val * 10 + (uint64_t)(c - '0');
        }
        if (lim->limit_post != 0 && val > lim->limit_post)
            return fail(req, 413, "request body too large");
        req->content_length = (int64_t)val;
    }

    req->minor_version =
        (proto.len == 8 && memcmp(proto.p, "HTTP/1.0", 8) == 0) ? 0 : 1;
    req->is_head = req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
    req->https = VALUE_IS(&https, "on") || VALUE_IS(&https, "1") ||
                 VALUE_IS(&scheme, "https");
    return 0;
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
