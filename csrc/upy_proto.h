/*
 * upy_proto.h - the protocol table: one entry per wire protocol a
 * listener speaks (HTTP/1.1, uwsgi, FastCGI, SCGI), each defined in its own
 * file (upy_proto_http.c, upy_proto_uwsgi.c, upy_proto_fastcgi.c,
 * upy_proto_scgi.c).  The loop (upy_server.c), the environ builder
 * (upy_environ.c) and the response path (upy_response.c, upy_static.c)
 * call the entry of the connection's listener and never test which
 * protocol it is.
 *
 * An entry has four parts:
 *   - its decoder: the pure-C parser (upy_parse.h) behind parse_head and
 *     reparse, and, for bodies framed by the protocol, body_begin and
 *     body_decode (HTTP chunked, FastCGI STDIN records);
 *   - its environ source: environ_from (HTTP header fields, or CGI vars);
 *   - its response framing: the status form, whether a body of unknown
 *     length may be chunked, and for FastCGI the STDOUT records (frame)
 *     and the end of a response (end);
 *   - its connection rules: keep-alive (per request, from the decoder),
 *     whether the client writes at once after connecting (read_at_accept,
 *     one accept per wake-up), how an error is answered (send_error).
 */
#ifndef UPY_PROTO_H
#define UPY_PROTO_H

#include "upy_core.h"

struct upy_loop;

typedef struct upy_protocol {
    const char *name;          /* "http", "uwsgi", "fastcgi", "scgi": logs */

    /* -- decoder ----------------------------------------------------- */
    /* Decode the head at c->buf[0..len) into req (fields: the loop's
       array).  Returns the head length, UPY_PARSE_INCOMPLETE, or
       UPY_PARSE_ERROR once the request was refused (answered or closed,
       logged: the caller only stops).  May consume records before the head
       that ask for no app (FastCGI management records), updating c->len. */
    ssize_t (*parse_head)(struct upy_loop *loop, upy_conn *c,
                          upy_request *req, size_t len);
    /* Decode c->buf[0..c->head_len) again (another thread, or after the
       body): 0, or -1.  It was valid when parse_head read it. */
    int (*reparse)(upy_server *srv, upy_conn *c, upy_request *req);
    /* Bytes a head may take in the buffer beyond buffer-size (framing)
       before it is refused as too large (431). */
    size_t head_slack;
    /* A body the protocol frames (req->chunked): start, then decode
       buf[0..*len) in place with upy_chunked_decode's contract; on error
       *status (0: close without an answer) and *reason. */
    void (*body_begin)(upy_conn *c, const upy_request *req);
    ssize_t (*body_decode)(upy_conn *c, char *buf, size_t *len,
                           uint64_t max_body, int *status,
                           const char **reason);

    /* -- environ source ----------------------------------------------- */
    unsigned vars : 1;         /* the fields are CGI vars (REQUEST_METHOD,
                                  HTTP_HOST, ...), not header fields */
    int (*environ_from)(upy_core *core, upy_conn *c, const upy_request *req,
                        PyObject *env);

    /* -- response framing --------------------------------------------- */
    const char *status_prefix; /* "HTTP/1.1 " or "Status: " (CGI, RFC 3875
                                  §6.3.3), before "200 OK\r\n" */
    size_t status_prefix_len;
    unsigned status_version : 1; /* the status line's version follows the
                                  request's SERVER_PROTOCOL ("HTTP/1.0 " for
                                  1.0 or none), as uWSGI's nph sockets do */
    unsigned chunked_out : 1;  /* a body of unknown length is chunked on
                                  HTTP/1.1 (else the connection closes) */
    unsigned ends_itself : 1;  /* the protocol marks the response's end
                                  (FastCGI END_REQUEST): a body of unknown
                                  length keeps the connection */
    unsigned connection_header : 1; /* send Connection: close/keep-alive */
    /* Wrap the response bytes iov[0..cnt) in the protocol's records and
       send them, queueing what the socket does not take in c->pend (by
       reference to `hold` for the iovecs inside data[0..data_len)).  With
       `last` (these are the response's last bytes) the end of the response
       goes in the same write (a client that hangs up once it has the body
       must not find the end missing), and c->resp.end_sent is set.  NULL:
       the bytes go as they are.  Returns 0, or -1 (broken). */
    int (*frame)(upy_conn *c, struct iovec *iov, int cnt, PyObject *hold,
                 const char *data, size_t data_len, int last);
    /* The bytes that end a response (FastCGI: an empty STDOUT record and
       END_REQUEST), written into out (at least 32 bytes): their length,
       0 for none. */
    size_t (*end)(upy_conn *c, char *out);

    /* -- connection rules ---------------------------------------------- */
    double kept_idle;          /* seconds a connection the client asked to
                                  keep (FastCGI KEEP_CONN) stays idle when
                                  the listener has no keep-alive timeout;
                                  0: the listener's rule only */
    unsigned probes : 1;       /* the loop's canned probe answers (HTTP
                                  status line, no framing) may be sent */
    unsigned read_at_accept : 1; /* the client writes at once (nginx): read
                                  right after accept, one accept per
                                  wake-up */
    /* Answer a refused request (status 4xx/5xx, reason for the body) on
       c and nothing else (the caller logs and closes or lingers). */
    void (*send_error)(upy_server *srv, upy_conn *c, int status,
                       const char *reason);
} upy_protocol;

extern const upy_protocol upy_proto_http, upy_proto_uwsgi, upy_proto_fastcgi,
    upy_proto_scgi, upy_proto_fastcgi_nph, upy_proto_scgi_nph;
/* Indexed by upy_proto. */
extern const upy_protocol *const upy_protocols[UPY_NPROTO];

#define UPY_CONN_PROTO(c) (upy_protocols[(c)->lst->proto])

/* The bytes before "200 OK" in a response of protocol pr to a request of
   HTTP minor version `minor`; *len their length. */
static inline const char *
upy_status_prefix(const upy_protocol *pr, int minor, size_t *len)
{
    *len = pr->status_prefix_len;
    if (pr->status_version && minor == 0)
        return "HTTP/1.0 ";
    return pr->status_prefix;
}

/* -- what the protocol files use from the rest of the core ------------- */

/* upy_server.c: log "<status text> from <client> on <listener>: reason",
   answer with the protocol's send_error, and linger (or close, for
   protocols without an answer). */
void upy_conn_reject(struct upy_loop *loop, upy_conn *c, int status,
                     const char *reason);
/* upy_server.c: sendmsg the whole of iov without blocking (small
   answers): 0, or -1 when it did not all go. */
int upy_send_small(int fd, struct iovec *iov, int iovcnt);
/* upy_server.c: the HTTP form of an error answer ("HTTP/1.1 400 Bad
   Request", text body, Connection: close); `status_prefix` replaces
   "HTTP/1.1 " (SCGI's "Status: "). */
void upy_send_error_text(upy_conn *c, const char *status_prefix, int status,
                         const char *reason);
/* upy_proto_http.c: send_error of the entries answering in HTTP form (http,
   uwsgi: nginx reads an HTTP status line from a uwsgi upstream). */
void upy_send_error_http(upy_server *srv, upy_conn *c, int status,
                         const char *reason);
/* upy_response.c: send iov now, queue the rest in c->pend (the iovecs in
   data[0..data_len) by reference to hold, the others copied); nothing may
   be pending on entry.  0, or -1 (broken). */
int upy_send_or_queue(upy_conn *c, struct iovec *iov, int cnt,
                      PyObject *hold, const char *data, size_t data_len);
/* upy_response.c: send the response bytes iov[0..cnt) through the
   connection's protocol framing (frame, else upy_send_or_queue); `last`:
   see frame. */
int upy_out_send(upy_conn *c, struct iovec *iov, int cnt, PyObject *hold,
                 const char *data, size_t data_len, int last);
/* upy_environ.c: the two environ sources. */
int upy_environ_from_http(upy_core *core, upy_conn *c, const upy_request *req,
                          PyObject *env);
int upy_environ_from_vars(upy_core *core, upy_conn *c, const upy_request *req,
                          PyObject *env);

#endif /* UPY_PROTO_H */
