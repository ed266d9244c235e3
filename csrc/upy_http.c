/*
 * upy_http.c - HTTP/1.1 request-head parser and chunked decoder.
 *
 * Pure C: no Python.h, no allocation, no I/O.  Shape after picohttpparser
 * (caller-owned buffer, slices out, consumed / -1 / -2); strictness after
 * h11 and RFC 9110/9112.  Deliberately stricter than h11 in these points
 * (the differential test in tests/test_parsers_hypothesis.py lists the same
 * set):
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
 *   - a repeated singleton field (Content-Type, Authorization, User-Agent,
 *     ... the table below) is an error (h11 keeps both);
 *   - the request-target form must match the method: authority-form for
 *     CONNECT and only for it, "*" for OPTIONS only (h11 takes any visible
 *     ASCII);
 *   - chunk extensions must follow the RFC 9112 §7.1.1 grammar (h11 accepts
 *     ";" followed by anything), and whitespace before the CRLF of a chunk
 *     size line is an error (h11 accepts "5 \r\n");
 *   - trailer fields RFC 9110 §6.5.1 rules out (framing, routing, request
 *     modifiers, authentication, content format) are an error (h11 keeps
 *     them as trailers).
 * And more lenient in these: empty lines (CRLF) before the request line are
 * skipped, as RFC 9112 §2.2 recommends (h11 rejects them); empty list
 * elements in Transfer-Encoding (",chunked") are ignored as RFC 9110 §5.6.1
 * requires (h11 answers 501); BWS before ';' in a chunk size line is
 * accepted as the §7.1.1 grammar allows (h11's regex does not).
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

upy_str
upy_origin_path(upy_str path)
{
    size_t skip = 0;
    if (path.len >= 7 && UPY_LOWER_EQ(path.p, 7, "http://"))
        skip = 7;
    else if (path.len >= 8 && UPY_LOWER_EQ(path.p, 8, "https://"))
        skip = 8;
    if (skip) {
        const char *slash = memchr(path.p + skip, '/', path.len - skip);
        if (slash == NULL) {
            path.p = "/";
            path.len = 1;
        }
        else {
            path.len -= (size_t)(slash - path.p);
            path.p = slash;
        }
    }
    return path;
}

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

/* The next element of a #list (RFC 9110 §5.6.1) in [*p, end): empty
   elements and OWS around elements are skipped.  Returns 1 with the element
   at [*s, *e), or 0 when the list is done. */
static int list_next(const char **p, const char *end, const char **s,
                     const char **e)
{
    const char *q = *p, *t;
    while (q != end && (IS_OWS(*q) || *q == ','))
        q++;
    if (q == end) {
        *p = q;
        return 0;
    }
    *s = q;
    while (q != end && *q != ',')
        q++;
    t = q;
    while (t != *s && IS_OWS(t[-1]))
        t--;
    *e = t;
    *p = q;
    return 1;
}

/*
 * Connection: a comma list of tokens (RFC 9110 §7.6.1); empty list
 * elements are allowed (§5.6.1).  Sets *close / *keep when seen.
 */
static void scan_connection(const char *v, size_t n, int *close, int *keep)
{
    const char *p = v, *end = v + n, *s, *e;

    while (list_next(&p, end, &s, &e)) {
        if (LOWER_EQ(s, (size_t)(e - s), "close"))
            *close = 1;
        else if (LOWER_EQ(s, (size_t)(e - s), "keep-alive"))
            *keep = 1;
    }
}

/*
 * Transfer-Encoding = #transfer-coding (RFC 9112 §6.1).  1 when the list
 * v[0..n) holds exactly one non-empty element and it is "chunked" (any
 * case); empty elements (",chunked", "chunked, ,") are ignored as RFC 9110
 * §5.6.1 requires.
 */
static int te_is_chunked(const char *v, size_t n)
{
    const char *p = v, *end = v + n, *s, *e;
    int elements = 0, chunked = 0;

    while (list_next(&p, end, &s, &e)) {
        elements++;
        chunked = LOWER_EQ(s, (size_t)(e - s), "chunked");
    }
    return elements == 1 && chunked;
}

/*
 * Fields RFC 9110 defines with a singular (non-list) value: a sender MUST
 * NOT send them more than once (§5.3), and joining two with ", " would make
 * a value that means something else, so a repeat is an error.  Request
 * fields only (a request carrying a response field such as ETag twice
 * harms nothing).  Content-Length (§8.6) is handled on its own: identical
 * repeats are one value (RFC 9112 §6.3).  At most 32 entries (a bit mask).
 */
static const struct {
    const char *name; /* lowercase */
    size_t len;
    const char *reason;
} singleton_fields[] = {
#define SF(name, ref) {name, sizeof(name) - 1, "repeated " ref}
    SF("host", "Host (RFC 9110 §7.2, RFC 9112 §3.2)"),
    SF("authorization", "Authorization (RFC 9110 §11.6.2)"),
    SF("proxy-authorization", "Proxy-Authorization (RFC 9110 §11.7.2)"),
    SF("content-type", "Content-Type (RFC 9110 §8.3)"),
    SF("content-location", "Content-Location (RFC 9110 §8.7)"),
    SF("content-range", "Content-Range (RFC 9110 §14.4)"),
    SF("date", "Date (RFC 9110 §6.6.1)"),
    SF("from", "From (RFC 9110 §10.1.2)"),
    SF("if-modified-since", "If-Modified-Since (RFC 9110 §13.1.3)"),
    SF("if-unmodified-since", "If-Unmodified-Since (RFC 9110 §13.1.4)"),
    SF("if-range", "If-Range (RFC 9110 §13.1.5)"),
    SF("max-forwards", "Max-Forwards (RFC 9110 §7.6.2)"),
    SF("range", "Range (RFC 9110 §14.2)"),
    SF("referer", "Referer (RFC 9110 §10.1.3)"),
    SF("user-agent", "User-Agent (RFC 9110 §10.1.5)"),
#undef SF
};

/* Index of name in singleton_fields, or -1. */
static int singleton_index(const char *name, size_t n)
{
    size_t i;

    for (i = 0; i < sizeof(singleton_fields) / sizeof(singleton_fields[0]); i++)
        if (singleton_fields[i].len == n &&
            upy_lower_eq(name, n, singleton_fields[i].name, n))
            return (int)i;
    return -1;
}

/*
 * Framing scan of the head in buf[start..scan_len), resuming at the start
 * of the line that holds offset `from`.  Walks line by line and stops at
 * the first of these, in the order of the byte that reveals it:
 *   - a bare LF; a CR followed by anything but LF: 400;
 *   - a line longer than its limit: the request line (the first line, at
 *     `start`) over lim->max_request_line: 414; a field line over
 *     lim->max_field_size: 431 - known once limit + 1 bytes of the line are
 *     there without a CR, so a client cannot make us wait for a huge line;
 *   - the empty line that ends the head.
 * Returns the head length (through that empty line), 0 when more bytes are
 * needed, or UPY_PARSE_ERROR.  Because it stops at the first such byte, a
 * prefix of the input fails exactly as the whole input does.
 */
static ssize_t scan_head(const char *buf, size_t start, size_t scan_len,
                         size_t from, upy_request *req, const upy_limits *lim)
{
    size_t line = from;
    int request_line;

    while (line > start && buf[line - 1] != '\n')
        line--;
    request_line = line == start;
    for (;;) {
        const size_t limit =
            request_line ? lim->max_request_line : lim->max_field_size;
        const size_t avail = scan_len - line;
        /* bytes that decide this line: one past the limit is enough */
        const size_t look = (limit != 0 && limit < avail) ? limit + 1 : avail;
        const char *lf = memchr(buf + line, '\n', look);
        const char *cr = memchr(buf + line, '\r',
                                lf != NULL ? (size_t)(lf - (buf + line)) : look);
        const char *eol = cr != NULL ? cr : lf;
        size_t at;

        if (eol == NULL) {
            if (limit != 0 && avail > limit)
                return request_line
                           ? fail(req, 414, "request line too long "
                                            "(limit-request-line)")
                           : fail(req, 431, "header field line too long "
                                            "(limit-request-field-size)");
            return 0;
        }
        if (*eol == '\n')
            return fail(req, 400, "bare LF in request head");
        at = (size_t)(eol - buf);
        if (1 >= scan_len - at)
            return 0; /* the byte after the CR is not here yet */
        if (buf[at + 1] != '\n')
            return fail(req, 400, "bare CR in request head");
        if (at == line && !request_line)
            return (ssize_t)(at + 2);
        line = at + 2;
        request_line = 0;
    }
}

/* "http://" or "https://", case-insensitive, followed by something. */
static int
has_http_scheme(const char *t, size_t len)
{
    return (len > 7 && UPY_LOWER_EQ(t, 7, "http://")) ||
           (len > 8 && UPY_LOWER_EQ(t, 8, "https://"));
}

/* RFC 3986 §2.2-2.3: unreserved and sub-delims, the bytes of a reg-name
 * besides pct-encoded; with ':' the bytes of an IP-literal's inside. */
static int uri_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c != '\0' && strchr("-._~!$&'()*+,;=", c) != NULL);
}

/*
 * authority-form = uri-host ":" port (RFC 9112 §3.2.3), the target CONNECT
 * takes.  uri-host is a non-empty reg-name (pct-encoded allowed) or an
 * IP-literal "[...]"; port is 1-65535 in at most 5 digits (RFC 9110 §9.3.6:
 * reject an empty or invalid port).  No userinfo, path, query or fragment.
 */
static int is_authority_form(const char *t, size_t n)
{
    size_t i = 0, digits;
    unsigned long port = 0;

    if (n == 0)
        return 0;
    if (t[0] == '[') {
        for (i = 1; i < n && t[i] != ']'; i++)
            if (!uri_host_char((unsigned char)t[i]) && t[i] != ':')
                return 0;
        if (i == n || i == 1)
            return 0;
        i++; /* past ']' */
    } else {
        while (i < n && t[i] != ':') {
            if (t[i] == '%') {
                if (2 >= n - i || hexval[(unsigned char)t[i + 1]] < 0 ||
                    hexval[(unsigned char)t[i + 2]] < 0)
                    return 0;
                i += 3;
            } else if (uri_host_char((unsigned char)t[i])) {
                i++;
            } else {
                return 0;
            }
        }
        if (i == 0)
            return 0;
    }
    if (i == n || t[i] != ':')
        return 0;
    i++;
    digits = n - i;
    if (digits == 0 || digits > 5)
        return 0;
    for (; i < n; i++) {
        if (t[i] < '0' || t[i] > '9')
            return 0;
        port = port * 10 + (unsigned long)(t[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

ssize_t upy_http_parse_request(const char *buf, size_t len, size_t last_len,
                               upy_request *req, const upy_limits *lim)
{
    const char *p, *end, *s;
    size_t start = 0, scan_len, from, head_len, cap;
    ssize_t found;
    int conn_close = 0, conn_keep = 0, host_count = 0, te_seen = 0;
    int te_ok = 1, cl_seen = 0, is_connect;
    uint32_t singletons_seen = 0;
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
     * anyway.  Resume on the line where the previous call stopped. */
    scan_len = len < lim->max_head ? len : lim->max_head;
    if (scan_len < start)
        return fail(req, 431, "request head too large");
    from = last_len;
    if (from < start)
        from = start;
    if (from > scan_len)
        from = scan_len;
    found = scan_head(buf, start, scan_len, from, req, lim);
    if (found < 0)
        return found;
    if (found == 0) {
        if (len > lim->max_head)
            return fail(req, 431, "request head too large (buffer-size)");
        return UPY_PARSE_INCOMPLETE;
    }
    head_len = (size_t)found;

    /* Parse the head once.  The parse relies on nothing the scan found
     * except that buf[start..head_len) ends in an empty line: every byte is
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
    /* methods are case-sensitive (RFC 9110 §9.1) */
    is_connect = req->method.len == 7 && memcmp(req->method.p, "CONNECT", 7) == 0;

    s = p;
    while (p != end && vchar[(unsigned char)*p])
        p++;
    if (p == s || p == end || *p != ' ')
        return fail(req, 400, "bad request-target");
    req->target.p = s;
    req->target.len = (size_t)(p - s);
    p++;
    /* RFC 9112 §3.2: origin-form ("/..."), absolute-form ("http://..."),
       asterisk-form ("*", OPTIONS only), authority-form ("host:port",
       CONNECT only, §3.2.3).  A fragment is never sent. */
    if (memchr(req->target.p, '#', req->target.len) != NULL)
        return fail(req, 400, "fragment in request-target");
    if (is_connect) {
        if (!is_authority_form(req->target.p, req->target.len))
            return fail(req, 400, "CONNECT needs an authority-form "
                                  "request-target (host:port, RFC 9112 "
                                  "§3.2.3)");
    } else if (req->target.p[0] != '/') {
        int star = req->target.len == 1 && req->target.p[0] == '*' &&
                   req->method.len == 7 &&
                   memcmp(req->method.p, "OPTIONS", 7) == 0;
        if (!star && !has_http_scheme(req->target.p, req->target.len)) {
            if (is_authority_form(req->target.p, req->target.len))
                return fail(req, 400, "authority-form request-target "
                                      "(host:port) is for CONNECT only "
                                      "(RFC 9112 §3.2.3)");
            return fail(req, 400, "request-target is not origin-form "
                                  "(/path), absolute-form or OPTIONS *");
        }
    }

    /* "HTTP/" DIGIT "." DIGIT CRLF: 10 bytes */
    if (10 > (size_t)(end - p) || memcmp(p, "HTTP/", 5) != 0 ||
        p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' ||
        p[7] > '9' || p[8] != '\r' || p[9] != '\n')
        return fail(req, 400, "bad HTTP version");
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return fail(req, 505, "HTTP version not supported");
    req->minor_version = p[7] - '0';
    p += 8;
    /* the scan checked this already, unless last_len was wrong */
    if (lim->max_request_line != 0 &&
        (size_t)(p - (buf + start)) > lim->max_request_line)
        return fail(req, 414, "request line too long (limit-request-line)");
    p += 2;

    /* path / query split at the first '?'; authority-form has neither */
    req->path.p = req->target.p;
    if (is_connect) {
        req->path.len = 0;
        req->query.p = req->target.p;
    } else {
        const char *q = memchr(req->target.p, '?', req->target.len);
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
        int si;

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
        if (lim->max_field_size != 0 &&
            (size_t)(p - name) > lim->max_field_size) /* as in the scan */
            return fail(req, 431, "header field line too long "
                                  "(limit-request-field-size)");
        vend = p;
        while (vend != val && IS_OWS(vend[-1]))
            vend--;
        vlen = (size_t)(vend - val);
        p += 2;

        if (++nfields > lim->max_fields)
            return fail(req, 431, "too many header fields "
                                  "(limit-request-fields)");
        if (memchr(name, '_', nlen) != NULL)
            continue; /* would collide with '-' in HTTP_* keys: drop */
        if (req->num_fields >= cap)
            return fail(req, 431, "too many header fields");
        si = singleton_index(name, nlen);
        if (si >= 0) {
            if (singletons_seen & (UINT32_C(1) << si))
                return fail(req, 400, singleton_fields[si].reason);
            singletons_seen |= UINT32_C(1) << si;
        }
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
                /* exactly one field whose list is the single coding
                 * "chunked"; a second TE field makes a list of two */
                if (te_seen || !te_is_chunked(val, vlen))
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
    /* RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host (a second
     * Host was refused above, on any version). */
    if (req->minor_version == 1 && host_count == 0)
        return fail(req, 400, "missing Host (RFC 9112 §3.2)");
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
    /* RFC 9112 §9.3; after CONNECT the connection would be a tunnel
     * (RFC 9110 §9.3.6), which a WSGI server does not serve: close. */
    req->keep_alive = is_connect ? 0
                      : req->minor_version == 1 ? !conn_close
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

/*
 * Fields that must not arrive as trailers.  RFC 9110 §6.5.1: fields whose
 * evaluation is needed before the content - message framing, routing,
 * request modifiers, authentication, content format - cannot be processed
 * after it, and a sender MUST NOT send one as a trailer unless its
 * definition allows that; none of these does.  A hop that merged them into
 * the header section would see a different request than we do, so they
 * are refused, not dropped.  Expires, Date and the like are response
 * control data with no meaning in a request: allowed (and discarded).
 * Names lowercase, at most UPY_TRAILER_NAME_MAX bytes.
 */
static const struct {
    const char *name;
    size_t len;
} forbidden_trailers[] = {
#define FT(name) {name, sizeof(name) - 1}
    /* framing: RFC 9112 §6.1, §6.2; RFC 9110 §6.6.2 */
    FT("content-length"), FT("transfer-encoding"), FT("trailer"),
    /* routing and connection: RFC 9110 §7.2, §7.6.1, §7.6.2, §7.8 */
    FT("host"), FT("connection"), FT("max-forwards"), FT("upgrade"),
    /* request modifiers: RFC 9110 §10.1.1, §10.1.4, §13.1, §14.2;
       RFC 9111 §5.2, §5.4 */
    FT("expect"), FT("te"), FT("if-match"), FT("if-none-match"),
    FT("if-modified-since"), FT("if-unmodified-since"), FT("if-range"),
    FT("range"), FT("cache-control"), FT("pragma"),
    /* authentication: RFC 9110 §11.6.2, §11.7.2; RFC 6265 §5.4 */
    FT("authorization"), FT("proxy-authorization"), FT("cookie"),
    /* content format: RFC 9110 §8.3, §8.4, §14.4 */
    FT("content-type"), FT("content-encoding"), FT("content-range"),
#undef FT
};

static int trailer_forbidden(const upy_chunked_decoder *d)
{
    size_t i;

    if (d->name_len > UPY_TRAILER_NAME_MAX)
        return 0;
    for (i = 0; i < sizeof(forbidden_trailers) / sizeof(forbidden_trailers[0]); i++)
        if (forbidden_trailers[i].len == d->name_len &&
            memcmp(forbidden_trailers[i].name, d->name, d->name_len) == 0)
            return 1;
    return 0;
}

enum {
    CK_SIZE_FIRST = 0, /* expecting the first hex digit (init state) */
    CK_SIZE,           /* in hex digits */
    CK_SIZE_WS,        /* BWS after the size or an ext value: needs ';' */
    CK_EXT_PRE_NAME,   /* after ';', BWS before the name */
    CK_EXT_NAME,       /* in ext-name */
    CK_EXT_PRE_EQ,     /* BWS after the name: '=' or ';' */
    CK_EXT_PRE_VAL,    /* after '=', BWS before the value */
    CK_EXT_TOKEN,      /* in a token value */
    CK_EXT_QUOTED,     /* in a quoted-string */
    CK_EXT_QUOTED_ESC, /* after '\\' in a quoted-string */
    CK_EXT_END,        /* after a quoted-string: BWS, ';' or CR */
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
            goto after_value;
        case CK_SIZE_WS:
            /* chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
             * (RFC 9112 §7.1.1): whitespace here must lead to a ';' */
            if (IS_OWS(c))
                break;
            if (c == ';')
                d->state = CK_EXT_PRE_NAME;
            else if (c == '\r')
                CK_FAIL(400, "whitespace before the CRLF of a chunk size "
                             "line (RFC 9112 §7.1)");
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
            if (c == '=')
                d->state = CK_EXT_PRE_VAL;
            else if (c == '\r')
                d->state = CK_SIZE_LF;
            else if (c == ';')
                d->state = CK_EXT_PRE_NAME;
            else if (IS_OWS(c))
                d->state = CK_EXT_PRE_EQ;
            else
                CK_FAIL(400, "bad chunk extension");
            break;
        case CK_EXT_PRE_EQ:
            if (IS_OWS(c))
                break;
            if (c == '=')
                d->state = CK_EXT_PRE_VAL;
            else if (c == ';')
                d->state = CK_EXT_PRE_NAME;
            else if (c == '\r')
                CK_FAIL(400, "whitespace before the CRLF of a chunk size "
                             "line (RFC 9112 §7.1)");
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
            goto after_value;
        case CK_EXT_QUOTED:
            if (c == '"')
                d->state = CK_EXT_END;
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
        case CK_EXT_END:
        after_value:
            /* after the size or an ext value: CR, ';' or BWS before ';' */
            if (c == '\r')
                d->state = CK_SIZE_LF;
            else if (c == ';')
                d->state = CK_EXT_PRE_NAME;
            else if (IS_OWS(c))
                d->state = CK_SIZE_WS;
            else
                CK_FAIL(400, d->state == CK_SIZE ? "bad chunk size"
                                                 : "bad chunk extension");
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
            if (c == '\r') {
                d->state = CK_END_LF;
            } else if (tchar[c]) {
                d->state = CK_TRAILER_NAME;
                d->name_len = 0;
                goto trailer_name_byte;
            } else {
                CK_FAIL(400, "bad trailer field");
            }
            break;
        case CK_TRAILER_NAME:
            if (c == ':') {
                if (trailer_forbidden(d))
                    CK_FAIL(400, "field not allowed in a trailer section "
                                 "(RFC 9110 §6.5.1)");
                d->state = CK_TRAILER_VALUE;
                break;
            }
            if (!tchar[c])
                CK_FAIL(400, "bad trailer field name");
        trailer_name_byte:
            /* keep the name, lowercased, as far as a listed name goes */
            if (d->name_len < UPY_TRAILER_NAME_MAX)
                d->name[d->name_len] =
                    (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
            if (d->name_len <= UPY_TRAILER_NAME_MAX)
                d->name_len++;
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
