/*
 * upy_http.c - HTTP/1.1 request-head parser and chunked decoder.
 *
 * Pure C: no Python.h, no allocation, no I/O.  Shape after picohttpparser
 * (caller-owned buffer, slices out, consumed / -1 / -2); strictness after
 * h11 and RFC 9112.  Deliberately stricter than h11 in these points (the
 * differential test in tests/test_parsers_hypothesis.py lists the same set):
 *   - a bare LF ends no line: it is an error, like a bare CR (h11 accepts
 *     LF-only line endings);  RFC 9112 §2.2 allows a server to accept bare
 *     LF, we do not, to rule out any front-end/back-end framing mismatch;
 *   - CTL bytes (other than HTAB) in a field value are an error (h11 only
 *     rejects NUL and whitespace CTLs);
 *   - Content-Length is exactly 1*DIGIT: no "5, 5" lists (h11 folds them);
 *   - Content-Length together with Transfer-Encoding is an error (RFC 9112
 *     §6.3 allows either rejecting or letting TE win; h11 lets TE win);
 *   - Transfer-Encoding on an HTTP/1.0 request is an error (§6.1: a server
 *     MUST treat such framing as faulty ... we simply refuse it);
 *   - more than one Host field is an error on HTTP/1.0 too (§3.2, as h11);
 *   - chunk extensions must follow the RFC 9112 §7.1.1 grammar (h11 accepts
 *     ";" followed by anything).
 * And more lenient in one: empty lines (CRLF) before the request line are
 * skipped, as RFC 9112 §2.2 recommends (h11 rejects them).
 */
#include "upy_parse.h"

#include <string.h>

/* ------------------------------------------------------------------ */
/* Character classes                                                   */
/* ------------------------------------------------------------------ */

/* tchar (RFC 9110 §5.6.2): "!#$%&'*+-.^_`|~" DIGIT ALPHA */
static const unsigned char tchar[256] = {
    /* 0x00-0x1F: CTL */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /*  SP !  "  #  $  %  &  '  (  )  *  +  ,  -  .  / */
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0,
    /*  0-9                           :  ;  <  =  >  ? */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    /*  @  A-O */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /*  P-Z                           [  \  ]  ^  _ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
    /*  `  a-o */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /*  p-z                           {  |  }  ~  DEL */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
    /* 0x80-0xFF: not in tokens */
};

/* VCHAR (0x21-0x7E): the request-target alphabet. */
static const unsigned char vchar[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
};

/* field-value bytes (RFC 9110 §5.5): VCHAR, obs-text, SP, HTAB.
 * No NUL, no other CTL, no DEL. */
static const unsigned char fvchar[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* qdtext (RFC 9110 §5.6.4): HTAB, SP, 0x21, 0x23-0x5B, 0x5D-0x7E, obs-text.
 * That is fvchar without '"' and '\\'. */
static const unsigned char qdtext[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* hex digit value, or -1 */
static const signed char hexval[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
     0,  1,  2,  3,  4,  5,  6,  7,  8,  9, -1, -1, -1, -1, -1, -1,
    -1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

#define IS_OWS(c) ((c) == ' ' || (c) == '\t')

int upy_lower_eq(const char *s, size_t n, const char *lit, size_t litlen)
{
    size_t i;

    if (n != litlen)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + ('a' - 'A'));
        if (c != (unsigned char)lit[i])
            return 0;
    }
    return 1;
}

#define LOWER_EQ(s, n, lit) UPY_LOWER_EQ((s), (n), lit)

/* 1*DIGIT into an int64; 0 on success, -1 when empty, not digits, or
 * above INT64_MAX. */
static int parse_decimal(const char *s, size_t n, int64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (n == 0)
        return -1;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < '0' || c > '9')
            return -1;
        if (v > ((uint64_t)INT64_MAX - (c - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(c - '0');
    }
    *out = (int64_t)v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Request head                                                        */
/* ------------------------------------------------------------------ */

static ssize_t fail(upy_request *req, int status, const char *reason)
{
    req->error_status = status;
    req->error_reason = reason;
    return UPY_PARSE_ERROR;
}

void upy_request_reset(upy_request *req, upy_proto proto)
{
    static const upy_str empty = {"", 0};

    req->proto = proto;
    req->method = empty;
    req->target = empty;
    req->path = empty;
    req->query = empty;
    req->minor_version = proto == UPY_PROTO_UWSGI ? 1 : 0;
    req->num_fields = 0;
    req->content_length = -1;
    req->chunked = 0;
    req->keep_alive = 0;
    req->expect_continue = 0;
    req->is_head = 0;
    req->https = 0;
    req->error_status = 0;
    req->error_reason = NULL;
}

/*
 * Connection: a comma list of tokens (RFC 9110 §7.6.1); empty list
 * elements are allowed (§5.6.1).  Sets *close / *keep when seen.
 */
static void scan_connection(const char *v, size_t n, int *close, int *keep)
{
    const char *p = v, *end = v + n;

    while (p != end) {
        const char *s, *e;
        while (p != end && (IS_OWS(*p) || *p == ','))
            p++;
        s = p;
        while (p != end && *p != ',')
            p++;
        e = p;
        while (e != s && IS_OWS(e[-1]))
            e--;
        if (LOWER_EQ(s, (size_t)(e - s), "close"))
            *close = 1;
        else if (LOWER_EQ(s, (size_t)(e - s), "keep-alive"))
            *keep = 1;
    }
}

/*
 * Find the end of the head: returns the offset just past the first
 * CRLFCRLF at or after `from` in buf[0..len), 0 when none, -1 on a bare
 * LF (a LF not preceded by CR).  A bare CR is left for the full parse,
 * whose character tables refuse it.
 */
static ssize_t find_head_end(const char *buf, size_t len, size_t from)
{
    const char *p = buf + from, *end = buf + len;

    while (p != end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        size_t at;
        if (lf == NULL)
            return 0;
        at = (size_t)(lf - buf);
        if (at == 0 || buf[at - 1] != '\r')
            return -1;
        if (at >= 3 && buf[at - 2] == '\n' && buf[at - 3] == '\r')
            return (ssize_t)(at + 1);
        p = lf + 1;
    }
    return 0;
}

/* "http://" or "https://", case-insensitive, followed by something. */
static int
has_http_scheme(const char *t, size_t len)
{
    return (len > 7 && UPY_LOWER_EQ(t, 7, "http://")) ||
           (len > 8 && UPY_LOWER_EQ(t, 8, "https://"));
}

ssize_t upy_http_parse_request(const char *buf, size_t len, size_t last_len,
                               upy_request *req, const upy_limits *lim)
{
    const char *p, *end, *s;
    size_t start = 0, scan_len, from, head_len, cap;
    ssize_t found;
    int conn_close = 0, conn_keep = 0, host_count = 0, te_seen = 0;
    int te_ok = 1, cl_seen = 0;
    const char *cl_val = NULL;
    size_t cl_len = 0;
    size_t nfields = 0;

    upy_request_reset(req, UPY_PROTO_HTTP);

    /* RFC 9112 §2.2: a server SHOULD ignore at least one empty line
     * (CRLF) received prior to the request-line. */
    while (len - start >= 2 && buf[start] == '\r' && buf[start + 1] == '\n')
        start += 2;
    if (len - start == 1 && buf[start] == '\r')
        return len > lim->max_head ? fail(req, 431, "request head too large")
                                   : UPY_PARSE_INCOMPLETE;

    /* Scan only within max_head: a head ending beyond it is too large
     * anyway.  Resume 3 bytes before the previous end (a CRLFCRLF may
     * straddle it) and never before the first byte after the blank lines. */
    scan_len = len < lim->max_head ? len : lim->max_head;
    if (scan_len < start)
        return fail(req, 431, "request head too large");
    from = last_len > 3 ? last_len - 3 : 0;
    if (from < start)
        from = start;
    if (from > scan_len)
        from = scan_len;
    found = find_head_end(buf, scan_len, from);
    if (found < 0)
        return fail(req, 400, "bare LF in request head");
    if (found == 0) {
        if (len > lim->max_head)
            return fail(req, 431, "request head too large");
        return UPY_PARSE_INCOMPLETE;
    }
    head_len = (size_t)found;

    /* Parse the head once.  The parse relies on nothing the scan found
     * except that buf[start..head_len) ends in CRLFCRLF: every byte is
     * checked again here, so a wrong last_len cannot cause an over-read. */
    p = buf + start;
    end = buf + head_len;

    /* request-line = method SP request-target SP HTTP-version CRLF */
    s = p;
    while (p != end && tchar[(unsigned char)*p])
        p++;
    if (p == s || p == end || *p != ' ')
        return fail(req, 400, "bad method");
    req->method.p = s;
    req->method.len = (size_t)(p - s);
    p++;

    s = p;
    while (p != end && vchar[(unsigned char)*p])
        p++;
    if (p == s || p == end || *p != ' ')
        return fail(req, 400, "bad request-target");
    req->target.p = s;
    req->target.len = (size_t)(p - s);
    p++;
    /* RFC 9112 §3.2: origin-form ("/..."), absolute-form ("http://..."),
       or asterisk-form ("*", OPTIONS only).  authority-form is CONNECT's,
       which a WSGI server does not serve.  A fragment is never sent. */
    if (memchr(req->target.p, '#', req->target.len) != NULL)
        return fail(req, 400, "fragment in request-target");
    if (req->target.p[0] != '/') {
        int star = req->target.len == 1 && req->target.p[0] == '*' &&
                   req->method.len == 7 &&
                   memcmp(req->method.p, "OPTIONS", 7) == 0;
        if (!star && !has_http_scheme(req->target.p, req->target.len))
            return fail(req, 400, "request-target is not origin-form "
                                  "(/path), absolute-form or OPTIONS *");
    }

    /* "HTTP/" DIGIT "." DIGIT CRLF: 10 bytes */
    if (10 > (size_t)(end - p) || memcmp(p, "HTTP/", 5) != 0 ||
        p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' ||
        p[7] > '9' || p[8] != '\r' || p[9] != '\n')
        return fail(req, 400, "bad HTTP version");
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return fail(req, 505, "HTTP version not supported");
    req->minor_version = p[7] - '0';
    p += 10;

    /* path / query split at the first '?' */
    {
        const char *q = memchr(req->target.p, '?', req->target.len);
        req->path.p = req->target.p;
        if (q != NULL) {
            req->path.len = (size_t)(q - req->target.p);
            req->query.p = q + 1;
            req->query.len = req->target.len - req->path.len - 1;
        } else {
            req->path.len = req->target.len;
        }
    }
    req->is_head = req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0;

    /* field-line = field-name ":" OWS field-value OWS CRLF */
    cap = lim->max_fields < req->fields_cap ? lim->max_fields : req->fields_cap;
    for (;;) {
        const char *name, *val, *vend;
        size_t nlen, vlen;

        if (2 > (size_t)(end - p))
            return fail(req, 400, "malformed request head");
        if (p[0] == '\r') {
            if (p[1] != '\n')
                return fail(req, 400, "bare CR in request head");
            p += 2;
            break;
        }
        if (IS_OWS(*p)) /* RFC 9112 §5.2 */
            return fail(req, 400, "obsolete line folding in header");

        name = p;
        while (p != end && tchar[(unsigned char)*p])
            p++;
        if (p == name || p == end || *p != ':')
            return fail(req, 400, "bad header name");
        nlen = (size_t)(p - name);
        p++;
        while (p != end && IS_OWS(*p))
            p++;
        val = p;
        while (p != end && fvchar[(unsigned char)*p])
            p++;
        if (2 > (size_t)(end - p) || p[0] != '\r')
            return fail(req, 400, "bad character in header value");
        if (p[1] != '\n')
            return fail(req, 400, "bare CR in request head");
        vend = p;
        while (vend != val && IS_OWS(vend[-1]))
            vend--;
        vlen = (size_t)(vend - val);
        p += 2;

        if (++nfields > lim->max_fields)
            return fail(req, 431, "too many header fields");
        if (memchr(name, '_', nlen) != NULL)
            continue; /* would collide with '-' in HTTP_* keys: drop */
        if (req->num_fields >= cap)
            return fail(req, 431, "too many header fields");
        req->fields[req->num_fields].name.p = name;
        req->fields[req->num_fields].name.len = nlen;
        req->fields[req->num_fields].value.p = val;
        req->fields[req->num_fields].value.len = vlen;
        req->num_fields++;

        switch (nlen) {
        case 4:
            if (LOWER_EQ(name, nlen, "host"))
                host_count++;
            break;
        case 6:
            if (LOWER_EQ(name, nlen, "expect") &&
                LOWER_EQ(val, vlen, "100-continue"))
                req->expect_continue = 1;
            break;
        case 10:
            if (LOWER_EQ(name, nlen, "connection"))
                scan_connection(val, vlen, &conn_close, &conn_keep);
            break;
        case 14:
            if (LOWER_EQ(name, nlen, "content-length")) {
                int64_t v;
                if (parse_decimal(val, vlen, &v) != 0)
                    return fail(req, 400, "bad Content-Length");
                if (cl_seen && (vlen != cl_len || memcmp(val, cl_val, vlen) != 0))
                    return fail(req, 400, "conflicting Content-Length");
                cl_seen = 1;
                cl_val = val;
                cl_len = vlen;
                req->content_length = v;
            }
            break;
        case 17:
            if (LOWER_EQ(name, nlen, "transfer-encoding")) {
                /* exactly one field whose value is the single token
                 * "chunked"; a second TE field makes a list of two */
                if (te_seen || !LOWER_EQ(val, vlen, "chunked"))
                    te_ok = 0;
                te_seen = 1;
            }
            break;
        default:
            break;
        }
    }

    /* The first empty line ends the head.  With an honest last_len that
     * is buf + head_len already; count what was parsed regardless. */
    head_len = (size_t)(p - buf);
    if (head_len > lim->max_head)
        return fail(req, 431, "request head too large");
    /* RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any
     * request with more than one. */
    if (host_count > 1 || (req->minor_version == 1 && host_count == 0))
        return fail(req, 400, "missing or repeated Host");
    if (te_seen) {
        if (cl_seen) /* §6.3 item 3: may be smuggling; refuse */
            return fail(req, 400, "Content-Length with Transfer-Encoding");
        if (req->minor_version == 0)
            return fail(req, 400, "Transfer-Encoding in HTTP/1.0");
        if (!te_ok)
            return fail(req, 501, "unsupported Transfer-Encoding");
        req->chunked = 1;
    }
    if (lim->limit_post != 0 && req->content_length > 0 &&
        (uint64_t)req->content_length > lim->limit_post)
        return fail(req, 413, "request body too large");

    if (req->minor_version == 0) /* RFC 9110 §10.1.1: ignore on 1.0 */
        req->expect_continue = 0;
    /* RFC 9112 §9.3 */
    req->keep_alive = req->minor_version == 1 ? !conn_close
                                              : (conn_keep && !conn_close);
    return (ssize_t)head_len;
}

/* ------------------------------------------------------------------ */
/* Chunked transfer coding (RFC 9112 §7.1)                             */
/* ------------------------------------------------------------------ */

/* Limits, as in the header comment.  Size line: hex digits plus
 * extensions; nginx's and h11's own line limits are of the same order. */
#define UPY_CHUNK_LINE_MAX 4096
#define UPY_CHUNK_TRAILER_MAX 8192

enum {
    CK_SIZE_FIRST = 0, /* expecting the first hex digit (init state) */
    CK_SIZE,           /* in hex digits */
    CK_SIZE_WS,        /* BWS after the size or after an ext */
    CK_EXT_PRE_NAME,   /* after ';', BWS before the name */
    CK_EXT_NAME,       /* in ext-name */
    CK_EXT_PRE_EQ,     /* BWS after the name: '=' ';' or CR */
    CK_EXT_PRE_VAL,    /* after '=', BWS before the value */
    CK_EXT_TOKEN,      /* in a token value */
    CK_EXT_QUOTED,     /* in a quoted-string */
    CK_EXT_QUOTED_ESC, /* after '\\' in a quoted-string */
    CK_SIZE_LF,        /* size line CR seen */
    CK_DATA,           /* in chunk data */
    CK_DATA_CR,        /* expecting CR after data */
    CK_DATA_LF,        /* expecting LF after data */
    CK_TRAILER_START,  /* at the start of a trailer line (or final CRLF) */
    CK_TRAILER_NAME,   /* in a trailer field name */
    CK_TRAILER_VALUE,  /* in a trailer field value */
    CK_TRAILER_LF,     /* trailer line CR seen */
    CK_END_LF,         /* final CR seen */
    CK_DONE,
    CK_ERROR
};

void upy_chunked_init(upy_chunked_decoder *d)
{
    memset(d, 0, sizeof(*d));
    d->state = CK_SIZE_FIRST;
}

ssize_t upy_chunked_decode(upy_chunked_decoder *d, char *buf, size_t *len,
                           uint64_t max_body)
{
    const size_t n = *len;
    size_t r = 0, w = 0;

    if (d->state == CK_DONE) { /* all of it is trailing data */
        *len = 0;
        return (ssize_t)n;
    }
    if (d->state == CK_ERROR) {
        *len = 0;
        return UPY_PARSE_ERROR;
    }

#define CK_FAIL(status, reason)                                              \
    do {                                                                     \
        d->state = CK_ERROR;                                                 \
        d->error_status = (status);                                          \
        d->error_reason = (reason);                                          \
        *len = w;                                                            \
        return UPY_PARSE_ERROR;                                              \
    } while (0)

    while (r < n) {
        const unsigned char c = (unsigned char)buf[r];

        if (d->state == CK_DATA) {
            size_t take = n - r;
            if ((uint64_t)take > d->remaining)
                take = (size_t)d->remaining;
            if (w != r)
                memmove(buf + w, buf + r, take);
            w += take;
            r += take;
            d->remaining -= take;
            if (d->remaining == 0)
                d->state = CK_DATA_CR;
            continue;
        }

        r++;
        /* size line (and its extensions) is bounded */
        if (d->state <= CK_SIZE_LF && ++d->line_len > UPY_CHUNK_LINE_MAX)
            CK_FAIL(400, "chunk size line too long");
        if (d->state >= CK_TRAILER_START && d->state <= CK_END_LF &&
            ++d->trailer_len > UPY_CHUNK_TRAILER_MAX)
            CK_FAIL(400, "chunked trailer too large");

        switch (d->state) {
        case CK_SIZE_FIRST:
        case CK_SIZE:
            if (hexval[c] >= 0) {
                if (d->remaining > (UINT64_MAX >> 4))
                    CK_FAIL(400, "chunk size overflow");
                d->remaining = (d->remaining << 4) | (uint64_t)hexval[c];
                d->state = CK_SIZE;
                break;
            }
            if (d->state == CK_SIZE_FIRST)
                CK_FAIL(400, "bad chunk size");
            goto size_ws;
        case CK_SIZE_WS:
        size_ws:
            if (IS_OWS(c))
                d->state = CK_SIZE_WS;
            else if (c == ';')
                d->state = CK_EXT_PRE_NAME;
            else if (c == '\r')
                d->state = CK_SIZE_LF;
            else
                CK_FAIL(400, "bad chunk size line");
            break;
        case CK_EXT_PRE_NAME:
            if (IS_OWS(c))
                break;
            if (!tchar[c])
                CK_FAIL(400, "bad chunk extension");
            d->state = CK_EXT_NAME;
            break;
        case CK_EXT_NAME:
            if (tchar[c])
                break;
            /* fall through */
        case CK_EXT_PRE_EQ:
            if (IS_OWS(c))
                d->state = CK_EXT_PRE_EQ;
            else if (c == '=')
                d->state = CK_EXT_PRE_VAL;
            else if (c == ';')
                d->state = CK_EXT_PRE_NAME;
            else if (c == '\r')
                d->state = CK_SIZE_LF;
            else
                CK_FAIL(400, "bad chunk extension");
            break;
        case CK_EXT_PRE_VAL:
            if (IS_OWS(c))
                break;
            if (c == '"')
                d->state = CK_EXT_QUOTED;
            else if (tchar[c])
                d->state = CK_EXT_TOKEN;
            else
                CK_FAIL(400, "bad chunk extension");
            break;
        case CK_EXT_TOKEN:
            if (tchar[c])
                break;
            goto size_ws;
        case CK_EXT_QUOTED:
            if (c == '"')
                d->state = CK_SIZE_WS;
            else if (c == '\\')
                d->state = CK_EXT_QUOTED_ESC;
            else if (!qdtext[c])
                CK_FAIL(400, "bad chunk extension");
            break;
        case CK_EXT_QUOTED_ESC:
            /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
            if (!fvchar[c])
                CK_FAIL(400, "bad chunk extension");
            d->state = CK_EXT_QUOTED;
            break;
        case CK_SIZE_LF:
            if (c != '\n')
                CK_FAIL(400, "bare CR in chunk size line");
            d->line_len = 0;
            if (d->remaining == 0) {
                d->state = CK_TRAILER_START;
                break;
            }
            if (max_body != 0 &&
                (d->remaining > max_body || d->total > max_body - d->remaining))
                CK_FAIL(413, "request body too large");
            if (d->remaining > UINT64_MAX - d->total)
                CK_FAIL(400, "chunk size overflow");
            d->total += d->remaining;
            d->state = CK_DATA;
            break;
        case CK_DATA_CR:
            if (c != '\r')
                CK_FAIL(400, "missing CRLF after chunk data");
            d->state = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (c != '\n')
                CK_FAIL(400, "missing CRLF after chunk data");
            d->state = CK_SIZE_FIRST;
            break;
        case CK_TRAILER_START:
            if (c == '\r')
                d->state = CK_END_LF;
            else if (tchar[c])
                d->state = CK_TRAILER_NAME;
            else
                CK_FAIL(400, "bad trailer field");
            break;
        case CK_TRAILER_NAME:
            if (c == ':')
                d->state = CK_TRAILER_VALUE;
            else if (!tchar[c])
                CK_FAIL(400, "bad trailer field name");
            break;
        case CK_TRAILER_VALUE:
            if (c == '\r')
                d->state = CK_TRAILER_LF;
            else if (!fvchar[c])
                CK_FAIL(400, "bad trailer field value");
            break;
        case CK_TRAILER_LF:
            if (c != '\n')
                CK_FAIL(400, "bare CR in trailer");
            d->state = CK_TRAILER_START;
            break;
        case CK_END_LF:
            if (c != '\n')
                CK_FAIL(400, "bare CR after trailer");
            d->state = CK_DONE;
            /* the body is complete: hand back what follows it */
            if (w != r)
                memmove(buf + w, buf + r, n - r);
            *len = w;
            return (ssize_t)(n - r);
        default:
            CK_FAIL(400, "chunked decoder in a bad state");
        }
    }
#undef CK_FAIL

    *len = w;
    return UPY_PARSE_INCOMPLETE;
}
