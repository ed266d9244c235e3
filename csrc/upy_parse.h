/*
 * upy_parse.h - the pure-C protocol layer of uwsgipy.
 *
 * No Python.h, no allocation, no I/O: bytes in, slices out.  Every slice
 * points into the caller's buffer, which the caller keeps alive and
 * unchanged for as long as it uses the result.  Both decoders (HTTP/1.1 and
 * the uwsgi packet) fill one struct, upy_request, so the CPython glue builds
 * the WSGI environ from one shape in one place (upy_environ.c).
 *
 * Return-code convention (the picohttpparser shape):
 *   >= 0                 bytes consumed (or the documented count)
 *   UPY_PARSE_ERROR      malformed input; req->error_status holds the HTTP
 *                        status to answer with, req->error_reason a static
 *                        human-readable reason for the log
 *   UPY_PARSE_INCOMPLETE more bytes are needed; call again with the same
 *                        buffer start and a longer length
 * Output parameters are reset on entry.
 */
#ifndef UPY_PARSE_H
#define UPY_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define UPY_PARSE_ERROR (-1)
#define UPY_PARSE_INCOMPLETE (-2)

/* A borrowed slice of the caller's buffer. */
typedef struct {
    const char *p;
    size_t len;
} upy_str;

/* One HTTP header field or one uwsgi var. */
typedef struct {
    upy_str name;
    upy_str value;
} upy_field;

/* Limits.  0 means "no limit" only where said so. */
typedef struct {
    size_t max_head;     /* HTTP: request line + headers + final CRLF, bytes.
                            uwsgi: the largest datasize accepted.
                            Exceeding it: 431 (HTTP) / refused (uwsgi).
                            uwsgipy option: buffer-size, default 65535. */
    size_t max_fields;   /* HTTP: at most this many header field lines
                            (uwsgipy option limit-request-fields, 100).
                            uwsgi: at most this many vars (the server passes
                            limit-request-fields plus room for the CGI vars
                            nginx's uwsgi_params adds).  Exceeding: 431.
                            Only min(max_fields, req->fields_cap) are stored. */
    uint64_t limit_post; /* Content-Length above this: 413. 0 = unlimited.
                            uwsgipy option: limit-post. */
    size_t max_request_line; /* HTTP: request line without its CRLF, bytes;
                            longer: 414.  0 = only max_head bounds it.
                            uwsgipy option: limit-request-line, 8190. */
    size_t max_field_size;   /* HTTP: one field line (name, ':', value)
                            without its CRLF, bytes; longer: 431.  0 = only
                            max_head bounds it.  uwsgipy option:
                            limit-request-field-size, 8190. */
} upy_limits;

/* Protocol the request arrived in. */
typedef enum {
    UPY_PROTO_HTTP = 0,
    UPY_PROTO_UWSGI = 1
} upy_proto;

/*
 * The decoded request.  The caller sets `fields` (an array it owns) and
 * `fields_cap` before the call; the parser sets everything else.
 *
 * HTTP:  method/target/path/query/minor_version come from the request line;
 *        fields are the header fields in arrival order, names as sent
 *        (case preserved), values with leading/trailing OWS removed.  Header
 *        names containing '_' are dropped (not stored, not an error) since
 *        they would collide with '-' in HTTP_* environ keys.
 * uwsgi: fields are the vars in packet order; method/target/path/query are
 *        filled from REQUEST_METHOD, REQUEST_URI, PATH_INFO, QUERY_STRING when
 *        present (len 0 otherwise), minor_version from SERVER_PROTOCOL
 *        ("HTTP/1.0" -> 0, anything else -> 1).
 */
typedef struct {
    upy_proto proto;
    upy_str method;
    upy_str target;        /* raw request-target: REQUEST_URI */
    upy_str path;          /* target up to '?', NOT percent-decoded; len 0
                              for CONNECT's authority-form (no path) */
    upy_str query;         /* after the first '?', without it; len 0 if none */
    int minor_version;     /* HTTP/1.<minor_version>: 0 or 1 */

    upy_field *fields;     /* caller-owned array (in) */
    size_t fields_cap;     /* its capacity (in) */
    size_t num_fields;     /* fields used (out) */

    int64_t content_length;    /* -1 when no Content-Length / CONTENT_LENGTH */
    unsigned chunked : 1;      /* Transfer-Encoding: chunked (HTTP only) */
    unsigned keep_alive : 1;   /* RFC 9112 §9.3 persistence after this
                                  request (HTTP only; 0 for uwsgi; 0 for
                                  CONNECT, whose connection would become a
                                  tunnel, RFC 9110 §9.3.6) */
    unsigned expect_continue : 1; /* Expect: 100-continue (HTTP/1.1 only) */
    unsigned is_head : 1;      /* method is exactly "HEAD" */
    unsigned https : 1;        /* uwsgi: var HTTPS is "on"/"1" (any case) or
                                  UWSGI_SCHEME is "https" */

    int error_status;          /* on UPY_PARSE_ERROR: 400, 413, 414, 431,
                                  501, 505 */
    const char *error_reason;  /* on UPY_PARSE_ERROR: static string */
} upy_request;

/* 1 when s[0..n) equals the lowercase ASCII literal lit[0..litlen) ignoring
   ASCII case (field names, tokens, schemes).  UPY_LOWER_EQ takes a string
   literal. */
int upy_lower_eq(const char *s, size_t n, const char *lit, size_t litlen);
#define UPY_LOWER_EQ(s, n, lit) upy_lower_eq((s), (n), (lit), sizeof(lit) - 1)

/* The path of a request-target: an absolute-form target's path follows its
   authority, "/" when there is none (RFC 9112 §3.2.2); any other target is
   returned as it is.  A slice of path (or a static "/"). */
upy_str upy_origin_path(upy_str path);

/* Reset every output field of req (not fields/fields_cap) for proto. */
void upy_request_reset(upy_request *req, upy_proto proto);

/* ------------------------------------------------------------------ */
/* HTTP/1.1 request head (RFC 9112 §2-§7)                              */
/* ------------------------------------------------------------------ */

/*
 * Parse one request head at buf[0..len).  Returns the head length in bytes
 * (through the blank line), UPY_PARSE_INCOMPLETE, or UPY_PARSE_ERROR.
 * Incomplete with len > lim->max_head is reported as error 431.
 * Stateless: call again from the same start with more bytes.  `last_len`
 * is the len of the previous incomplete call on this buffer (0 the first
 * time); it only lets the parser skip rescanning the lines already seen.
 * The outcome does not depend on how the head is split into calls: an
 * error found on a prefix is the error the whole head gives.
 *
 * Empty lines before the request line are skipped (RFC 9112 §2.2) and
 * counted in the returned length.  An absolute-form target is returned as
 * is (the environ builder takes the path from it).
 *
 * Strictness (each gives 400 unless noted).  Found on a prefix, before the
 * head is complete, in byte order:
 *   - lines end in CRLF; a bare CR or bare LF anywhere in the head;
 *   - a request line over lim->max_request_line bytes: 414, and a field
 *     line over lim->max_field_size bytes: 431, as soon as that many bytes
 *     arrived without a line end; a head over lim->max_head: 431.
 * Found on the complete head, in line order:
 *   - method is a token; request-target is 1+ bytes of visible ASCII
 *     (0x21-0x7E) without '#', in origin-form ("/..."), absolute-form
 *     ("http(s)://..."), asterisk-form ("*", OPTIONS only) or, for CONNECT
 *     and only for it, authority-form (uri-host ":" port, port 1-65535;
 *     RFC 9112 §3.2.3, RFC 9110 §9.3.6); version is exactly "HTTP/1.0" or
 *     "HTTP/1.1" (other "HTTP/x.y": 505);
 *   - field name a token, no whitespace before ':'; obs-fold (line starting
 *     with SP/HTAB); NUL or CTL other than HTAB in a value;
 *   - more than lim->max_fields field lines: 431;
 *   - a singleton field (one whose RFC 9110 definition is not a list:
 *     Host, Authorization, Proxy-Authorization, Content-Type,
 *     Content-Location, Content-Range, Date, From, If-Modified-Since,
 *     If-Unmodified-Since, If-Range, Max-Forwards, Range, Referer,
 *     User-Agent; the table in upy_http.c gives each section) repeated;
 *   - Content-Length not 1*DIGIT, overflowing, or repeated with a value
 *     that is not byte-identical (identical repeats are one value,
 *     RFC 9110 §8.6, RFC 9112 §6.3); Content-Length with Transfer-Encoding
 *     (RFC 9112 §6.3);
 *   - HTTP/1.1 without a Host field (RFC 9112 §3.2);
 *   - Transfer-Encoding on HTTP/1.0; Transfer-Encoding other than one
 *     field whose list holds the single coding "chunked" (case-insensitive;
 *     empty list elements such as ",chunked" are ignored, RFC 9110
 *     §5.6.1): 501;
 *   - Content-Length > lim->limit_post (when limit_post != 0): 413.
 * keep_alive: 1.1 unless "Connection: close"; 1.0 only with
 * "Connection: keep-alive" (tokens in a comma list, case-insensitive);
 * never after CONNECT.
 */
ssize_t upy_http_parse_request(const char *buf, size_t len, size_t last_len,
                               upy_request *req, const upy_limits *lim);

/* ------------------------------------------------------------------ */
/* Chunked transfer coding (RFC 9112 §7.1), decoded in place           */
/* ------------------------------------------------------------------ */

/* The longest trailer field name the decoder must recognise
   ("if-unmodified-since", "proxy-authorization"). */
#define UPY_TRAILER_NAME_MAX 19

typedef struct {
    int state;             /* private */
    uint64_t remaining;    /* private: bytes left in the current chunk */
    size_t line_len;       /* private: bytes of the current size/trailer line */
    size_t trailer_len;    /* private: total trailer bytes seen */
    uint64_t total;        /* out: decoded body bytes so far */
    int error_status;      /* out, on error: 400 (or 413 over max_body) */
    const char *error_reason;
    unsigned char name_len; /* private: trailer name bytes seen, saturating
                               at UPY_TRAILER_NAME_MAX + 1 */
    char name[UPY_TRAILER_NAME_MAX]; /* private: the name, lowercased */
} upy_chunked_decoder;

/* Zero the decoder before the first call for a body. */
void upy_chunked_init(upy_chunked_decoder *d);

/*
 * Decode buf[0..*len) in place.  On return buf[0..*len) holds the decoded
 * data produced by this call (the caller consumes it before the next call).
 * Returns:
 *   >= 0  the body is complete; the value is the number of bytes that follow
 *         the end of the chunked body (pipelined data), which are located at
 *         buf + *len (moved there by the decoder);
 *   UPY_PARSE_INCOMPLETE  all input consumed, need more;
 *   UPY_PARSE_ERROR       malformed (d->error_status / error_reason).
 * A size line is chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1): BWS only
 * before ';' and around '=' of an extension, so whitespace before the CRLF
 * is an error ("5 \r\n"); extensions are validated and skipped (the line is
 * bounded at 4096 bytes).  Trailer fields are validated as field lines and
 * discarded, never merged into the header section (RFC 9110 §6.5.2; the
 * section is bounded at 8192 bytes); one that must not be a trailer
 * (RFC 9110 §6.5.1: framing, routing, request modifiers, authentication,
 * content format; the list is in upy_http.c) is an error.  max_body != 0
 * gives 413 when the decoded total would exceed it.
 */
ssize_t upy_chunked_decode(upy_chunked_decoder *d, char *buf, size_t *len,
                           uint64_t max_body);

/* ------------------------------------------------------------------ */
/* uwsgi packet (uWSGI protocol: header, vars)                         */
/* ------------------------------------------------------------------ */

#define UPY_UWSGI_HEADER_SIZE 4

typedef struct {
    uint8_t modifier1;
    uint16_t datasize;     /* little-endian on the wire */
    uint8_t modifier2;
} upy_uwsgi_header;

/*
 * Read the 4-byte packet header.  Returns 4, or UPY_PARSE_INCOMPLETE when
 * len < 4.  Never fails: the caller judges modifier1 (0 = WSGI), datasize
 * (0 is invalid; > buffer-size is refused).
 */
int upy_uwsgi_parse_header(const unsigned char *buf, size_t len,
                           upy_uwsgi_header *h);

/*
 * Decode the vars block vars[0..datasize) (the bytes after the header) into
 * req (proto = UPY_PROTO_UWSGI).  Each var is u16-LE key length, key,
 * u16-LE value length, value; the vars fill exactly datasize bytes.
 * Returns 0 or UPY_PARSE_ERROR (400) for: datasize 0, a zero-length key, a
 * length running past the block, a key with no room for its value length,
 * more than min(lim->max_fields, req->fields_cap) vars (431; behind nginx
 * the vars are one per header plus uwsgi_params' 15, so the server passes
 * limit-request-fields plus room for those; uWSGI's own bound is its
 * max-vars, 64 by default, which allows 128 vars), CONTENT_LENGTH not 1*DIGIT or above
 * lim->limit_post (413), datasize > lim->max_head (431).  Empty values are
 * valid; an empty CONTENT_LENGTH (nginx's uwsgi_params send one with every
 * bodiless request) counts as absent.
 */
int upy_uwsgi_parse_vars(const char *vars, size_t datasize, upy_request *req,
                         const upy_limits *lim);

/*
 * Heuristic for the log: 1 when buf[0..len) starts like an HTTP request line
 * ("GET /", "POST /", "HEAD /", "PUT /", "DELETE /", "OPTIONS ", "PATCH /",
 * "CONNECT ", "TRACE /", "PRI * ") - somebody pointed an HTTP client or
 * proxy_pass at a uwsgi socket.
 */
int upy_uwsgi_looks_like_http(const char *buf, size_t len);

#endif /* UPY_PARSE_H */
