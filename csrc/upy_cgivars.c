/*
 * upy_cgivars.c - one reading of CGI vars (RFC 3875 §4.1) for the three
 * protocols whose front end sends them: uwsgi, FastCGI and SCGI.
 *
 * Pure C: no Python.h, no allocation, no I/O.  The decoders split their own
 * framing into name/value slices and hand each one to upy_vars_add()
 * (upy_cgivars.h, inline), which stores it in req->fields and picks out the
 * vars the server itself needs; upy_vars_end() reads those.
 */
#include "upy_cgivars.h"

#include <string.h>

static int fail(upy_request *req, int status, const char *reason)
{
    req->error_status = status;
    req->error_reason = reason;
    return UPY_PARSE_ERROR;
}

#define VALUE_IS(v, lit) UPY_LOWER_EQ((v)->p, (v)->len, lit)

void upy_vars_begin(upy_request *req, upy_proto proto, const upy_limits *lim,
                    upy_vars_state *st)
{
    static const upy_str empty = {"", 0};
    upy_request_reset(req, proto);
    st->proto = st->clen = st->https = st->scheme = empty;
    st->have_clen = 0;
    st->cap = lim->max_fields < req->fields_cap ? lim->max_fields
                                                : req->fields_cap;
}

int upy_vars_end(upy_request *req, upy_vars_state *st, const upy_limits *lim)
{
    /* nginx's stock uwsgi_params, fastcgi_params and scgi_params send
     * "CONTENT_LENGTH $content_length", the empty string for requests
     * without a body: empty means absent.  Otherwise 1*DIGIT, at most
     * INT64_MAX. */
    if (st->have_clen && st->clen.len != 0) {
        uint64_t val = 0;
        size_t i;
        for (i = 0; i < st->clen.len; i++) {
            unsigned char c = (unsigned char)st->clen.p[i];
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
    req->minor_version = (st->proto.len == 8 &&
                          memcmp(st->proto.p, "HTTP/1.0", 8) == 0) ? 0 : 1;
    req->is_head = req->method.len == 4 &&
                   memcmp(req->method.p, "HEAD", 4) == 0;
    req->https = VALUE_IS(&st->https, "on") || VALUE_IS(&st->https, "1") ||
                 VALUE_IS(&st->scheme, "https");
    return 0;
}
