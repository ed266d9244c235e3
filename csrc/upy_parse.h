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
/* Protocol the request arrived in: an index into the protocol table
   (upy_proto.h, one entry per protocol file). */
typedef enum {
    UPY_PROTO_HTTP = 0,
    UPY_PROTO_UWSGI = 1,
    UPY_PROTO_FASTCGI = 2,
    UPY_PROTO_SCGI = 3,
    UPY_PROTO_FASTCGI_NPH = 4, /* as FASTCGI and SCGI, the response with an */
    UPY_PROTO_SCGI_NPH = 5     /* HTTP status line (uWSGI's nph sockets) */
} upy_proto;
#define UPY_NPROTO 6

/*
 * The decoded request.  The caller sets `fields` (an array it owns) and
 * `fields_cap` before the call; the parser sets everything else.
 *
 * HTTP:  method/target/path/query/minor_version come from the request line;
 *        fields are the header fields in arrival order, names as sent
 *        (case preserved), values with leading/trailing OWS removed.  Header
 *        names containing '_' are dropped (not stored, not an error) since
 *        they would collide with '-' in HTTP_* environ keys.
 * uwsgi, FastCGI, SCGI: fields are the CGI vars in the order sent; method/target/path/query are
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
    unsigned chunked : 1;      /* the body is framed by the protocol and
                                  ends where the framing says: HTTP
                                  Transfer-Encoding: chunked; FastCGI STDIN
                                  records after a head that did not end the
                                  stream (content_length then holds
                                  CONTENT_LENGTH, -1 when absent) */
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

/* ------------------------------------------------------------------ */
/* CGI vars (uwsgi, FastCGI, SCGI): one reading of the vars for all three */
/* ------------------------------------------------------------------ */

/* Private state of one vars block being read. */
typedef struct {
    upy_str proto, clen, https, scheme;
    int have_clen;
    size_t cap;
} upy_vars_state;

/* Begin reading vars into req (reset for proto). */
void upy_vars_begin(upy_request *req, upy_proto proto, const upy_limits *lim,
                    upy_vars_state *st);
/* Storing one var: upy_vars_add() in upy_cgivars.h (inline). */
/* After the last var: method/target/path/query/minor_version/https/is_head
   from REQUEST_METHOD, REQUEST_URI, PATH_INFO, QUERY_STRING,
   SERVER_PROTOCOL, HTTPS/UWSGI_SCHEME; content_length from CONTENT_LENGTH
   (empty = absent; not 1*DIGIT: 400; above lim->limit_post: 413).
   Returns 0 or UPY_PARSE_ERROR. */
int upy_vars_end(upy_request *req, upy_vars_state *st, const upy_limits *lim);

/* ------------------------------------------------------------------ */
/* FastCGI 1.0 responder (the FastCGI Specification, Open Market 1996)  */
/* ------------------------------------------------------------------ */

#define UPY_FCGI_HEADER_LEN 8
#define UPY_FCGI_VERSION_1 1
#define UPY_FCGI_MAX_CONTENT 65535

/* Record types (spec §8). */
#define UPY_FCGI_BEGIN_REQUEST 1
#define UPY_FCGI_ABORT_REQUEST 2
#define UPY_FCGI_END_REQUEST 3
#define UPY_FCGI_PARAMS 4
#define UPY_FCGI_STDIN 5
#define UPY_FCGI_STDOUT 6
#define UPY_FCGI_STDERR 7
#define UPY_FCGI_DATA 8
#define UPY_FCGI_GET_VALUES 9
#define UPY_FCGI_GET_VALUES_RESULT 10
#define UPY_FCGI_UNKNOWN_TYPE 11
/* Roles (§5.1), the BEGIN_REQUEST flag, protocolStatus values (§5.5). */
#define UPY_FCGI_RESPONDER 1
#define UPY_FCGI_AUTHORIZER 2
#define UPY_FCGI_FILTER 3
#define UPY_FCGI_KEEP_CONN 1
#define UPY_FCGI_REQUEST_COMPLETE 0
#define UPY_FCGI_CANT_MPX_CONN 1
#define UPY_FCGI_OVERLOADED 2
#define UPY_FCGI_UNKNOWN_ROLE 3

/* A record header (§3.3): big-endian on the wire. */
typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t request_id;
    uint16_t content_length;
    uint8_t padding_length;
} upy_fcgi_record;

/* Read the record header at buf[0..len): UPY_FCGI_HEADER_LEN, or
   UPY_PARSE_INCOMPLETE when len < 8.  Never fails: the caller judges. */
int upy_fcgi_parse_record(const unsigned char *buf, size_t len,
                          upy_fcgi_record *r);

/* Write a record header into out[0..8): version 1, type, request_id,
   content_length (<= 65535), padding_length (<= 255). */
void upy_fcgi_put_record(unsigned char *out, unsigned type,
                         unsigned request_id, size_t content_length,
                         unsigned padding_length);

/* The padding that brings content_length to a multiple of 8 (§3.3: "we
   recommend"), 0..7. */
#define UPY_FCGI_PADDING(n) ((unsigned)((8 - ((n) & 7)) & 7))

/* What the record(s) at the start of the buffer ask of the application. */
typedef enum {
    UPY_FCGI_DO_HEAD = 0,       /* a request head (see upy_fcgi_parse_head) */
    UPY_FCGI_DO_SKIP = 1,       /* one record that asks nothing: any record
                                with request_id != 0 that is not a
                                BEGIN_REQUEST (a record of a request that is
                                over or was refused: ABORT, PARAMS, STDIN,
                                DATA; or one a web server should not send) */
    UPY_FCGI_DO_GET_VALUES = 2, /* one FCGI_GET_VALUES record (request_id 0):
                                answer with upy_fcgi_get_values_result */
    UPY_FCGI_DO_UNKNOWN = 3,    /* one record with request_id 0 (a management
                                record) of any type but GET_VALUES: answer
                                FCGI_UNKNOWN_TYPE naming h->type (§4.2) */
    UPY_FCGI_DO_BAD_ROLE = 4    /* a BEGIN_REQUEST for a role other than
                                responder: answer END_REQUEST with
                                FCGI_UNKNOWN_ROLE for h->request_id (§5.1);
                                its later records come back as DO_SKIP */
} upy_fcgi_action;

typedef struct {
    upy_fcgi_action action;
    uint8_t type;              /* the record's type (UNKNOWN) */
    uint16_t request_id;       /* HEAD, BAD_ROLE */
    uint16_t role;             /* HEAD (1), BAD_ROLE */
    unsigned keep_conn : 1;    /* HEAD: FCGI_KEEP_CONN was set */
    unsigned stdin_ended : 1;  /* HEAD: the empty STDIN record is part of
                                  the head (no body follows) */
    unsigned compacted : 1;    /* HEAD: the PARAMS content was moved
                                  together in place (several records) */
    size_t params_off;         /* HEAD: the PARAMS content is
                                  buf[params_off .. +params_len) */
    size_t params_len;
    const char *content;       /* GET_VALUES: the record's content */
    size_t content_len;
} upy_fcgi_head;

/*
 * Decode what starts at buf[0..len) (bytes from a FastCGI web server).
 * Returns the bytes consumed, UPY_PARSE_INCOMPLETE, or UPY_PARSE_ERROR
 * (req->error_status 400/413/431, req->error_reason static).  h->action
 * says what was decoded:
 *  - UPY_FCGI_DO_HEAD: BEGIN_REQUEST (responder), the PARAMS records through
 *    the empty one (with padding), and, when the record after that is an
 *    empty STDIN, that record too (h->stdin_ended; then CONTENT_LENGTH must
 *    be absent, empty or 0: else 400).  When the record after the empty
 *    PARAMS is a STDIN with content, the head ends before it, req->chunked
 *    is set and the body is read with upy_fcgi_stdin_decode.  Until the
 *    header of the record after the empty PARAMS is there: INCOMPLETE.
 *    req is filled as for uwsgi vars (proto UPY_PROTO_FASTCGI,
 *    keep_alive = FCGI_KEEP_CONN).  Name-value pairs have 1-byte (< 128)
 *    or 4-byte (high bit set) lengths (§3.4).  The PARAMS stream is the
 *    concatenation of the records' content, so a pair may span records:
 *    when there are several, the decoder moves the content together in
 *    place (buf is written; h->compacted) and the head's bytes no longer
 *    decode as records.  To decode the head again (another thread, after the body),
 *    call upy_fcgi_parse_params on buf[h->params_off .. +h->params_len),
 *    which is valid in both cases.
 *  - any other action: exactly one record, with its padding.
 * Errors: version != 1; BEGIN_REQUEST with request_id 0 or content length
 * != 8; inside a head, a record that is not PARAMS of the same request
 * (ABORT_REQUEST: 400 "aborted"); a name of length 0; a pair running past
 * the PARAMS stream; PARAMS content above lim->max_head (431, reported as
 * soon as the running total passes it); more vars than the cap (431);
 * CONTENT_LENGTH as for uwsgi (400, 413).
 */
ssize_t upy_fcgi_parse_head(char *buf, size_t len, upy_request *req,
                            const upy_limits *lim, upy_fcgi_head *h);

/*
 * Decode a contiguous PARAMS stream block[0..n) (the content of the PARAMS
 * records of one request, concatenated) into req as CGI vars (proto
 * UPY_PROTO_FASTCGI; keep_alive and chunked are the caller's to set).
 * Returns 0 or UPY_PARSE_ERROR (400: an empty name, a length or pair
 * running past the block; 431: more vars than the cap; CONTENT_LENGTH as
 * for uwsgi).
 */
int upy_fcgi_parse_params(const char *block, size_t n, upy_request *req,
                          const upy_limits *lim);

/*
 * The FCGI_GET_VALUES_RESULT record (header, content, padding) answering
 * the names in content[0..content_len) (a GET_VALUES record's name-value
 * pairs, values empty): FCGI_MAX_CONNS = max_conns, FCGI_MAX_REQS =
 * max_reqs, FCGI_MPXS_CONNS = 0; other names are left out (§4.1).
 * Writes at most out_cap bytes; returns the record length, or -1 when the
 * content is malformed or out_cap is too small.
 */
ssize_t upy_fcgi_get_values_result(const char *content, size_t content_len,
                                   unsigned long max_conns,
                                   unsigned long max_reqs, char *out,
                                   size_t out_cap);

/* The STDIN stream of one request (the body), decoded in place. */
typedef struct {
    int state;               /* private */
    uint16_t request_id;     /* private */
    unsigned char hdr[UPY_FCGI_HEADER_LEN]; /* private: a split header */
    size_t hdr_have;         /* private */
    size_t content_left;     /* private: content bytes left in the record */
    size_t pad_left;         /* private: padding bytes left */
    uint64_t total;          /* out: body bytes so far */
    int64_t expected;        /* CONTENT_LENGTH, -1 when absent */
    int error_status;        /* out, on error: 400 (413 over max_body);
                                0 for ABORT_REQUEST (close, no answer) */
    const char *error_reason;
} upy_fcgi_stdin_decoder;

/* Start decoding the STDIN of request_id; expected = CONTENT_LENGTH or -1. */
void upy_fcgi_stdin_init(upy_fcgi_stdin_decoder *d, unsigned request_id,
                         int64_t expected);

/*
 * Decode buf[0..*len) in place, with upy_chunked_decode's contract: on
 * return buf[0..*len) holds the body bytes this call produced; >= 0: the
 * stream ended (the empty STDIN record) and that many bytes that follow it
 * are at buf + *len; UPY_PARSE_INCOMPLETE: need more; UPY_PARSE_ERROR:
 * d->error_status/error_reason.  Errors: a record of another type or
 * request (ABORT_REQUEST of this request: error_status 0, "aborted"), a
 * version != 1, more body than `expected` or the stream ending before it
 * (400), more than max_body when max_body != 0 (413).
 */
ssize_t upy_fcgi_stdin_decode(upy_fcgi_stdin_decoder *d, char *buf,
                              size_t *len, uint64_t max_body);

/* ------------------------------------------------------------------ */
/* SCGI (the SCGI protocol, Neil Schemenauer, 2008)                    */
/* ------------------------------------------------------------------ */

/*
 * Parse the request head at buf[0..len): a netstring "LEN:" + headers +
 * ","  where LEN is 1*DIGIT without leading zeros and the headers are
 * NUL-terminated name, value pairs, the first CONTENT_LENGTH (1*DIGIT)
 * and one of them SCGI with value "1"; neither may repeat (other names
 * may: nginx sends a repeated request header as two vars).  Returns the head length (through
 * the ','), UPY_PARSE_INCOMPLETE, or UPY_PARSE_ERROR (400: not a netstring,
 * no ',', CONTENT_LENGTH not first or not digits, no SCGI=1, an empty name,
 * an odd NUL count; 431: LEN above lim->max_head or more vars than the cap;
 * 413 above limit_post).  req is filled as for uwsgi vars (proto
 * UPY_PROTO_SCGI, keep_alive 0: the response ends when the connection
 * closes); the body is the CONTENT_LENGTH bytes after the head.
 */
ssize_t upy_scgi_parse_head(const char *buf, size_t len, upy_request *req,
                            const upy_limits *lim);

#endif /* UPY_PARSE_H */
