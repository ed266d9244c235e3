/*
 * upy_fastcgi.c - FastCGI 1.0 responder decoder (the FastCGI Specification,
 * Open Market, 1996): record headers (§3.3), name-value pairs (§3.4),
 * BEGIN_REQUEST (§5.1), PARAMS and STDIN streams (§5.2, §5.3),
 * GET_VALUES (§4.1) and UNKNOWN_TYPE (§4.2).
 *
 * Pure C: no Python.h, no allocation, no I/O.  Integers are read bytewise
 * (big-endian on the wire, no unaligned loads).  The only write is the
 * documented in-place compaction of a PARAMS stream sent in several
 * records, and the in-place STDIN decoding.
 */
#include "upy_cgivars.h"

#include <string.h>

#define REC UPY_FCGI_HEADER_LEN

static int fail(upy_request *req, int status, const char *reason)
{
    req->error_status = status;
    req->error_reason = reason;
    return UPY_PARSE_ERROR;
}

int upy_fcgi_parse_record(const unsigned char *buf, size_t len,
                          upy_fcgi_record *r)
{
    memset(r, 0, sizeof *r);
    if (len < REC)
        return UPY_PARSE_INCOMPLETE;
    r->version = buf[0];
    r->type = buf[1];
    r->request_id = (uint16_t)((buf[2] << 8) | buf[3]);
    r->content_length = (uint16_t)((buf[4] << 8) | buf[5]);
    r->padding_length = buf[6];
    return REC;
}

void upy_fcgi_put_record(unsigned char *out, unsigned type,
                         unsigned request_id, size_t content_length,
                         unsigned padding_length)
{
    out[0] = UPY_FCGI_VERSION_1;
    out[1] = (unsigned char)type;
    out[2] = (unsigned char)(request_id >> 8);
    out[3] = (unsigned char)request_id;
    out[4] = (unsigned char)(content_length >> 8);
    out[5] = (unsigned char)content_length;
    out[6] = (unsigned char)padding_length;
    out[7] = 0;
}

static size_t rec_len(const upy_fcgi_record *r)
{
    return REC + (size_t)r->content_length + r->padding_length;
}

/* One name or value length at p[0..end): 1 byte below 128, else 4 bytes
   with the high bit set (§3.4).  Returns the bytes read, 0 when cut. */
static size_t nv_len(const unsigned char *p, const unsigned char *end,
                     uint32_t *out)
{
    if (p >= end)
        return 0;
    if (p[0] < 0x80) {
        *out = p[0];
        return 1;
    }
    if ((size_t)(end - p) < 4)
        return 0;
    *out = ((uint32_t)(p[0] & 0x7f) << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
    return 4;
}

int upy_fcgi_parse_params(const char *block, size_t n, upy_request *req,
                          const upy_limits *lim)
{
    const unsigned char *p = (const unsigned char *)block;
    const unsigned char *const end = p + n;
    upy_vars_state st;

    upy_vars_begin(req, UPY_PROTO_FASTCGI, lim, &st);
    while (p != end) {
        uint32_t nl, vl;
        size_t k;
        upy_str name, value;
        if ((k = nv_len(p, end, &nl)) == 0)
            return fail(req, 400, "FastCGI name length runs past the params");
        p += k;
        if ((k = nv_len(p, end, &vl)) == 0)
            return fail(req, 400, "FastCGI value length runs past the params");
        p += k;
        if (nl == 0)
            return fail(req, 400, "FastCGI param with an empty name");
        if (nl > (size_t)(end - p) || vl > (size_t)(end - p) - nl)
            return fail(req, 400, "FastCGI param runs past the params");
        name.p = (const char *)p;
        name.len = nl;
        value.p = (const char *)p + nl;
        value.len = vl;
        p += (size_t)nl + vl;
        if (upy_vars_add(req, &st, name, value) != 0)
            return UPY_PARSE_ERROR;
    }
    return upy_vars_end(req, &st, lim);
}

ssize_t upy_fcgi_parse_head(char *cbuf, size_t len, upy_request *req,
                            const upy_limits *lim, upy_fcgi_head *h)
{
    unsigned char *buf = (unsigned char *)cbuf;
    upy_fcgi_record r, q;
    size_t off, first, total = 0, records = 0;
    int64_t clen;

    memset(h, 0, sizeof *h);
    upy_request_reset(req, UPY_PROTO_FASTCGI);
    if (upy_fcgi_parse_record(buf, len, &r) != REC)
        return UPY_PARSE_INCOMPLETE;
    if (r.version != UPY_FCGI_VERSION_1)
        return fail(req, 400, "FastCGI record version is not 1");

    if (r.type != UPY_FCGI_BEGIN_REQUEST) {
        if (len < rec_len(&r))
            return UPY_PARSE_INCOMPLETE;
        h->type = r.type;
        h->request_id = r.request_id;
        if (r.request_id != 0) {
            h->action = UPY_FCGI_DO_SKIP;
        }
        else if (r.type == UPY_FCGI_GET_VALUES) {
            h->action = UPY_FCGI_DO_GET_VALUES;
            h->content = cbuf + REC;
            h->content_len = r.content_length;
        }
        else {
            h->action = UPY_FCGI_DO_UNKNOWN;
        }
        return (ssize_t)rec_len(&r);
    }

    if (r.request_id == 0)
        return fail(req, 400, "FastCGI BEGIN_REQUEST with request id 0");
    if (r.content_length != 8)
        return fail(req, 400, "FastCGI BEGIN_REQUEST body is not 8 bytes");
    if (len < rec_len(&r))
        return UPY_PARSE_INCOMPLETE;
    h->request_id = r.request_id;
    h->role = (uint16_t)((buf[REC] << 8) | buf[REC + 1]);
    h->keep_conn = (buf[REC + 2] & UPY_FCGI_KEEP_CONN) != 0;
    if (h->role != UPY_FCGI_RESPONDER) {
        h->action = UPY_FCGI_DO_BAD_ROLE;
        return (ssize_t)rec_len(&r);
    }

    /* The PARAMS records through the empty one. */
    off = first = rec_len(&r);
    for (;;) {
        if (upy_fcgi_parse_record(buf + off, len - off, &q) != REC)
            return UPY_PARSE_INCOMPLETE;
        if (q.version != UPY_FCGI_VERSION_1)
            return fail(req, 400, "FastCGI record version is not 1");
        if (q.request_id != r.request_id || q.type != UPY_FCGI_PARAMS) {
            if (q.type == UPY_FCGI_ABORT_REQUEST &&
                q.request_id == r.request_id)
                return fail(req, 400, "aborted by the web server "
                            "(ABORT_REQUEST) during the params");
            return fail(req, 400, "FastCGI record other than PARAMS of "
                        "the request before the end of its params");
        }
        total += q.content_length;
        if (total > lim->max_head)
            return fail(req, 431, "FastCGI params above buffer-size");
        if (len - off < rec_len(&q))
            return UPY_PARSE_INCOMPLETE;
        off += rec_len(&q);
        if (q.content_length == 0)
            break;
        records++;
    }

    /* The record after the params: an empty STDIN ends the head. */
    if (upy_fcgi_parse_record(buf + off, len - off, &q) != REC)
        return UPY_PARSE_INCOMPLETE;
    if (q.version == UPY_FCGI_VERSION_1 && q.type == UPY_FCGI_STDIN &&
        q.request_id == r.request_id && q.content_length == 0) {
        if (len - off < rec_len(&q))
            return UPY_PARSE_INCOMPLETE;
        h->stdin_ended = 1;
    }

    /* The params as one block: in place in the common case of one record
       (nginx, lighttpd), moved together when there are several (a pair may
       span them; Apache splits its params at 8 KiB). */
    h->params_len = total;
    h->params_off = first + REC;
    if (records > 1) {
        size_t src = first, dst = first + REC;
        for (;;) {
            upy_fcgi_record p;
            (void)upy_fcgi_parse_record(buf + src, REC, &p);
            if (p.content_length == 0)
                break;
            memmove(buf + dst, buf + src + REC, p.content_length);
            dst += p.content_length;
            src += rec_len(&p);
        }
        h->compacted = 1;
    }
    if (upy_fcgi_parse_params(cbuf + h->params_off, h->params_len, req,
                              lim) != 0)
        return UPY_PARSE_ERROR;
    clen = req->content_length;
    if (h->stdin_ended) {
        if (clen > 0)
            return fail(req, 400, "FastCGI STDIN ended before CONTENT_LENGTH");
        off += rec_len(&q);
    }
    else {
        req->chunked = 1;
    }
    req->keep_alive = h->keep_conn;
    h->action = UPY_FCGI_DO_HEAD;
    return (ssize_t)off;
}

/* Append the pair name (value empty) = decimal v to out at *o. */
static int put_value(char *out, size_t cap, size_t *o, const char *name,
                     size_t nl, unsigned long v)
{
    char digits[24];
    size_t dl = 0, i;
    do {
        digits[dl++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (nl > 127 || cap - *o < 2 + nl + dl)
        return -1;
    out[(*o)++] = (char)nl;
    out[(*o)++] = (char)dl;
    memcpy(out + *o, name, nl);
    *o += nl;
    for (i = 0; i < dl; i++)
        out[(*o)++] = digits[dl - 1 - i];
    return 0;
}

ssize_t upy_fcgi_get_values_result(const char *content, size_t content_len,
                                   unsigned long max_conns,
                                   unsigned long max_reqs, char *out,
                                   size_t out_cap)
{
    const unsigned char *p = (const unsigned char *)content;
    const unsigned char *const end = p + content_len;
    size_t o = REC, clen;
    unsigned pad;

    if (out_cap < REC)
        return -1;
    while (p != end) {
        uint32_t nl, vl;
        size_t k;
        const char *name;
        if ((k = nv_len(p, end, &nl)) == 0)
            return -1;
        p += k;
        if ((k = nv_len(p, end, &vl)) == 0)
            return -1;
        p += k;
        if (nl > (size_t)(end - p) || vl > (size_t)(end - p) - nl)
            return -1;
        name = (const char *)p;
        p += (size_t)nl + vl;
        if (nl == 14 && memcmp(name, "FCGI_MAX_CONNS", 14) == 0) {
            if (put_value(out, out_cap, &o, name, nl, max_conns) < 0)
                return -1;
        }
        else if (nl == 13 && memcmp(name, "FCGI_MAX_REQS", 13) == 0) {
            if (put_value(out, out_cap, &o, name, nl, max_reqs) < 0)
                return -1;
        }
        else if (nl == 15 && memcmp(name, "FCGI_MPXS_CONNS", 15) == 0) {
            if (put_value(out, out_cap, &o, name, nl, 0) < 0)
                return -1;
        }
    }
    clen = o - REC;
    pad = UPY_FCGI_PADDING(clen);
    if (clen > UPY_FCGI_MAX_CONTENT || out_cap - o < pad)
        return -1;
    memset(out + o, 0, pad);
    upy_fcgi_put_record((unsigned char *)out, UPY_FCGI_GET_VALUES_RESULT, 0,
                        clen, pad);
    return (ssize_t)(o + pad);
}

/* ------------------------------------------------------------------ */
/* The STDIN stream                                                     */
/* ------------------------------------------------------------------ */

enum { SI_HEADER = 0, SI_CONTENT, SI_PADDING, SI_END_PADDING, SI_DONE,
       SI_FAILED };

void upy_fcgi_stdin_init(upy_fcgi_stdin_decoder *d, unsigned request_id,
                         int64_t expected)
{
    memset(d, 0, sizeof *d);
    d->state = SI_HEADER;
    d->request_id = (uint16_t)request_id;
    d->expected = expected;
}

#define SI_FAIL(st, why)                                                     \
    do {                                                                     \
        d->state = SI_FAILED;                                                \
        d->error_status = (st);                                              \
        d->error_reason = (why);                                             \
        *len = out;                                                          \
        return UPY_PARSE_ERROR;                                              \
    } while (0)

ssize_t upy_fcgi_stdin_decode(upy_fcgi_stdin_decoder *d, char *buf,
                              size_t *len, uint64_t max_body)
{
    size_t in = 0, out = 0, n = *len;

    if (d->state == SI_FAILED)
        SI_FAIL(d->error_status, d->error_reason);
    while (in < n) {
        switch (d->state) {
        case SI_HEADER: {
            upy_fcgi_record r;
            size_t take = REC - d->hdr_have;
            if (take > n - in)
                take = n - in;
            memcpy(d->hdr + d->hdr_have, buf + in, take);
            d->hdr_have += take;
            in += take;
            if (d->hdr_have < REC)
                break;
            d->hdr_have = 0;
            (void)upy_fcgi_parse_record(d->hdr, REC, &r);
            if (r.version != UPY_FCGI_VERSION_1)
                SI_FAIL(400, "FastCGI record version is not 1");
            if (r.request_id == d->request_id &&
                r.type == UPY_FCGI_ABORT_REQUEST)
                SI_FAIL(0, "aborted by the web server (ABORT_REQUEST)");
            if (r.request_id != d->request_id || r.type != UPY_FCGI_STDIN)
                SI_FAIL(400, "FastCGI record other than STDIN of the "
                        "request inside its body");
            d->content_left = r.content_length;
            d->pad_left = r.padding_length;
            if (r.content_length == 0) {
                if (d->expected >= 0 && d->total != (uint64_t)d->expected)
                    SI_FAIL(400, "FastCGI STDIN ended before CONTENT_LENGTH");
                d->state = d->pad_left ? SI_END_PADDING : SI_DONE;
                if (d->state == SI_DONE)
                    goto done;
                break;
            }
            if (d->expected >= 0 &&
                d->total + r.content_length > (uint64_t)d->expected)
                SI_FAIL(400, "FastCGI STDIN longer than CONTENT_LENGTH");
            if (max_body != 0 && d->total + r.content_length > max_body)
                SI_FAIL(413, "request body too large");
            d->state = SI_CONTENT;
            break;
        }
        case SI_CONTENT: {
            size_t take = d->content_left < n - in ? d->content_left : n - in;
            if (out != in)
                memmove(buf + out, buf + in, take);
            out += take;
            in += take;
            d->content_left -= take;
            d->total += take;
            if (d->content_left == 0)
                d->state = d->pad_left ? SI_PADDING : SI_HEADER;
            break;
        }
        case SI_PADDING:
        case SI_END_PADDING: {
            size_t take = d->pad_left < n - in ? d->pad_left : n - in;
            in += take;
            d->pad_left -= take;
            if (d->pad_left == 0) {
                if (d->state == SI_END_PADDING) {
                    d->state = SI_DONE;
                    goto done;
                }
                d->state = SI_HEADER;
            }
            break;
        }
        default:
            goto done;
        }
    }
    if (d->state != SI_DONE) {
        *len = out;
        return UPY_PARSE_INCOMPLETE;
    }
done:
    memmove(buf + out, buf + in, n - in);
    *len = out;
    return (ssize_t)(n - in);
}
