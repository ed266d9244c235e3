/*
 * upy_proto_fastcgi.c - the FastCGI entry of the protocol table
 * (upy_proto.h): the FastCGI 1.0 responder role (the decoder is
 * upy_fastcgi.c).
 *
 *   decoder      BEGIN_REQUEST + PARAMS (+ an empty STDIN) is the head;
 *                management records before it are answered here
 *                (GET_VALUES §4.1, UNKNOWN_TYPE §4.2), other roles get
 *                END_REQUEST with UNKNOWN_ROLE (§5.1); the body is the
 *                STDIN stream, decoded in place like a chunked one.
 *   environ      the PARAMS are CGI vars, as uwsgi's.
 *   framing      a CGI response ("Status: 200 OK", as uWSGI's
 *                fastcgi-socket answers) in STDOUT records of at most
 *                65535 bytes, padded to 8 (§3.3), then an empty STDOUT and
 *                END_REQUEST (appStatus 0, REQUEST_COMPLETE; §5.5).
 *   connection   FCGI_KEEP_CONN keeps it for the next request (nginx's
 *                fastcgi_keep_conn on); without it, it is closed after
 *                END_REQUEST.  One request at a time: FCGI_MPXS_CONNS 0.
 * Bad input: one log line naming FastCGI and the problem; the connection
 * is closed (after a framed error answer when the request is known).
 */
#include "upy_proto.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#define REC UPY_FCGI_HEADER_LEN

static const char zeros[8];

/* Send one record of `type` with content[0..n) at once (small answers:
   management records, END_REQUEST of a refused role). */
static int
send_record(upy_conn *c, unsigned type, unsigned id, const void *content,
            size_t n)
{
    unsigned char hdr[REC];
    unsigned pad = UPY_FCGI_PADDING(n);
    struct iovec iov[3] = {{hdr, REC}, {(void *)content, n},
                           {(void *)zeros, pad}};
    upy_fcgi_put_record(hdr, type, id, n, pad);
    return upy_send_small(c->fd, iov, 3);
}

static void
end_request_body(unsigned char *b, unsigned app_status, unsigned proto_status)
{
    b[0] = (unsigned char)(app_status >> 24);
    b[1] = (unsigned char)(app_status >> 16);
    b[2] = (unsigned char)(app_status >> 8);
    b[3] = (unsigned char)app_status;
    b[4] = (unsigned char)proto_status;
    b[5] = b[6] = b[7] = 0;
}

/* Refuse what the decoder found wrong: a framed answer when the request is
   known (nginx then passes a real status on), else the connection is
   closed with the log line only. */
static void
refuse(upy_loop *loop, upy_conn *c, const upy_request *req, unsigned id)
{
    int status = req->error_status ? req->error_status : 400;
    const char *reason = req->error_reason ? req->error_reason
                                           : "bad FastCGI request";
    c->fcgi.id = (uint16_t)id;
    c->fcgi.keep = 0;
    upy_conn_reject(loop, c, status, reason);
}

static ssize_t
fcgi_parse_head(upy_loop *loop, upy_conn *c, upy_request *req, size_t len)
{
    upy_server *srv = loop->srv;
    if (len >= 4 && upy_uwsgi_looks_like_http(c->buf, len)) {
        upy_conn_reject(loop, c, 400,
                        "this looks like an HTTP request on a FastCGI "
                        "socket; point HTTP clients at an http-socket and "
                        "nginx's fastcgi_pass at a fastcgi-socket");
        return UPY_PARSE_ERROR;
    }
    for (;;) {
        upy_fcgi_head h;
        ssize_t rc = upy_fcgi_parse_head(c->buf, len, req, &srv->uwsgi_limits,
                                         &h);
        if (rc == UPY_PARSE_INCOMPLETE) {
            return rc;
        }
        if (rc == UPY_PARSE_ERROR) {
            refuse(loop, c, req, h.action == UPY_FCGI_DO_HEAD ? h.request_id
                                                              : 0);
            return rc;
        }
        switch (h.action) {
        case UPY_FCGI_DO_HEAD:
            c->fcgi.id = h.request_id;
            c->fcgi.keep = h.keep_conn;
            c->fcgi.params_off = h.params_off;
            c->fcgi.params_len = h.params_len;
            if (req->method.len == 0) {
                req->error_status = 400;
                req->error_reason = "FastCGI request without REQUEST_METHOD";
                refuse(loop, c, req, h.request_id);
                return UPY_PARSE_ERROR;
            }
            return rc;
        case UPY_FCGI_DO_GET_VALUES: {
            /* connections: what this process may open; requests: one
               per app thread (core) at a time */
            char out[REC + 128];
            struct rlimit rl;
            unsigned long conns = getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
                                          rl.rlim_cur != RLIM_INFINITY
                                      ? (unsigned long)rl.rlim_cur
                                      : 1024;
            ssize_t n = upy_fcgi_get_values_result(
                h.content, h.content_len, conns,
                (unsigned long)(srv->ncores > 0 ? srv->ncores : 1), out,
                sizeof out);
            struct iovec iov = {out, n > 0 ? (size_t)n : 0};
            if (n < 0) {
                upy_log(srv, 30, "FastCGI: malformed GET_VALUES from %s on "
                        "%s; closing", c->addr_text, c->lst->name_c);
                upy_conn_linger(loop, c);
                return UPY_PARSE_ERROR;
            }
            if (upy_send_small(c->fd, &iov, 1) != 0) {
                upy_conn_linger(loop, c);
                return UPY_PARSE_ERROR;
            }
            break;
        }
        case UPY_FCGI_DO_UNKNOWN: {
            unsigned char body[8] = {h.type, 0, 0, 0, 0, 0, 0, 0};
            if (send_record(c, UPY_FCGI_UNKNOWN_TYPE, 0, body, 8) != 0) {
                upy_conn_linger(loop, c);
                return UPY_PARSE_ERROR;
            }
            break;
        }
        case UPY_FCGI_DO_BAD_ROLE: {
            unsigned char body[8];
            upy_log(srv, 30, "FastCGI: request %u from %s on %s asks for "
                    "role %u; only the responder role (1) is served",
                    (unsigned)h.request_id, c->addr_text, c->lst->name_c,
                    (unsigned)h.role);
            end_request_body(body, 0, UPY_FCGI_UNKNOWN_ROLE);
            if (send_record(c, UPY_FCGI_END_REQUEST, h.request_id, body, 8)
                != 0) {
                upy_conn_linger(loop, c);
                return UPY_PARSE_ERROR;
            }
            break;
        }
        case UPY_FCGI_DO_SKIP:
        default:
            break;
        }
        /* the record is dealt with: drop it and look at what follows */
        memmove(c->buf, c->buf + rc, len - (size_t)rc);
        len -= (size_t)rc;
        c->len = len;
        if (len == 0) {
            return UPY_PARSE_INCOMPLETE;
        }
    }
}

static int
fcgi_reparse(upy_server *srv, upy_conn *c, upy_request *req)
{
    if (c->fcgi.params_off + c->fcgi.params_len > c->head_len) {
        return -1;
    }
    if (upy_fcgi_parse_params(c->buf + c->fcgi.params_off,
                              c->fcgi.params_len, req,
                              &srv->uwsgi_limits) != 0) {
        return -1;
    }
    req->keep_alive = c->fcgi.keep;
    return 0;
}

static void
fcgi_body_begin(upy_conn *c, const upy_request *req)
{
    upy_fcgi_stdin_init(&c->fcgi.in, c->fcgi.id, req->content_length);
}

static ssize_t
fcgi_body_decode(upy_conn *c, char *buf, size_t *len, uint64_t max_body,
                 int *status, const char **reason)
{
    ssize_t rc = upy_fcgi_stdin_decode(&c->fcgi.in, buf, len, max_body);
    if (rc == UPY_PARSE_ERROR) {
        *status = c->fcgi.in.error_status;
        *reason = c->fcgi.in.error_reason;
    }
    return rc;
}

/* The STDOUT records around iov[0..cnt): zero-copy for what fits in one
   record and two iovecs (a head and a body item), else copied into
   c->fcgi.out in records of 65528 bytes (a multiple of 8: no padding but
   the last's). */
static size_t fcgi_end(upy_conn *c, char *out);

static int
fcgi_frame(upy_conn *c, struct iovec *iov, int cnt, PyObject *hold,
           const char *data, size_t data_len, int last)
{
    size_t total = 0, need, o = 0;
    for (int i = 0; i < cnt; i++)
        total += iov[i].iov_len;
    if (total == 0 && !last) {
        return 0;
    }
    if (total <= UPY_FCGI_MAX_CONTENT && cnt <= 2) {
        /* [header][head][body item][padding + the end]: at most the four
           iovecs c->pend keeps */
        unsigned char hdr[REC];
        char tail[8 + 3 * REC];
        unsigned pad = UPY_FCGI_PADDING(total);
        size_t tl = pad;
        struct iovec v[4];
        int n = 0;
        if (total > 0) {
            upy_fcgi_put_record(hdr, UPY_FCGI_STDOUT, c->fcgi.id, total, pad);
            v[n].iov_base = hdr;
            v[n++].iov_len = REC;
            for (int i = 0; i < cnt; i++) {
                if (iov[i].iov_len > 0)
                    v[n++] = iov[i];
            }
        }
        memset(tail, 0, pad);
        if (last) {
            tl += fcgi_end(c, tail + pad);
            c->resp.end_sent = 1;
        }
        if (tl > 0) {
            v[n].iov_base = tail;
            v[n++].iov_len = tl;
        }
        return upy_send_or_queue(c, v, n, hold, data, data_len);
    }
    {
        const size_t piece = UPY_FCGI_MAX_CONTENT - 7; /* 65528 */
        size_t records = total / piece + 1, left = total;
        int i = 0;
        size_t in_off = 0;
        need = total + records * (REC + 8) + 3 * REC;
        if (c->fcgi.out_cap < need) {
            char *nb = realloc(c->fcgi.out, need);
            if (nb == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            c->fcgi.out = nb;
            c->fcgi.out_cap = need;
        }
        while (left > 0) {
            size_t n = left < piece ? left : piece, got = 0;
            unsigned pad = UPY_FCGI_PADDING(n);
            upy_fcgi_put_record((unsigned char *)c->fcgi.out + o,
                                UPY_FCGI_STDOUT, c->fcgi.id, n, pad);
            o += REC;
            while (got < n) {
                size_t take = iov[i].iov_len - in_off;
                if (take > n - got)
                    take = n - got;
                memcpy(c->fcgi.out + o, (char *)iov[i].iov_base + in_off,
                       take);
                o += take;
                got += take;
                in_off += take;
                if (in_off == iov[i].iov_len) {
                    i++;
                    in_off = 0;
                }
            }
            memset(c->fcgi.out + o, 0, pad);
            o += pad;
            left -= n;
        }
        if (last) {
            o += fcgi_end(c, c->fcgi.out + o);
            c->resp.end_sent = 1;
        }
        {
            struct iovec v = {c->fcgi.out, o};
            return upy_send_or_queue(c, &v, 1, NULL, c->fcgi.out, o);
        }
    }
}

static size_t
fcgi_end(upy_conn *c, char *out)
{
    unsigned char *b = (unsigned char *)out;
    upy_fcgi_put_record(b, UPY_FCGI_STDOUT, c->fcgi.id, 0, 0);
    upy_fcgi_put_record(b + REC, UPY_FCGI_END_REQUEST, c->fcgi.id, 8, 0);
    end_request_body(b + 2 * REC, 0, UPY_FCGI_REQUEST_COMPLETE);
    c->fcgi.id = 0;
    return 3 * REC;
}

/* A CGI error answer in STDOUT records, then END_REQUEST: nginx passes the
   status on.  Nothing when no request is known (the log says why). */
static void
fcgi_send_error(upy_server *srv, upy_conn *c, int status, const char *reason)
{
    char head[320], body[256], endb[3 * REC];
    unsigned char hdr[REC];
    int blen, hlen;
    size_t total;
    unsigned pad;
    struct iovec iov[5];
    (void)srv;
    if (c->fcgi.id == 0) {
        return;
    }
    blen = snprintf(body, sizeof body, "%s: %s\n", upy_status_text(status),
                    reason ? reason : "bad request");
    if (blen < 0 || (size_t)blen >= sizeof body)
        blen = (int)sizeof body - 1;
    hlen = snprintf(head, sizeof head,
                    "Status: %s\r\nContent-Type: text/plain\r\n"
                    "Content-Length: %d\r\n\r\n",
                    upy_status_text(status), blen);
    total = (size_t)hlen + (size_t)blen;
    pad = UPY_FCGI_PADDING(total);
    upy_fcgi_put_record(hdr, UPY_FCGI_STDOUT, c->fcgi.id, total, pad);
    iov[0].iov_base = hdr;
    iov[0].iov_len = REC;
    iov[1].iov_base = head;
    iov[1].iov_len = (size_t)hlen;
    iov[2].iov_base = body;
    iov[2].iov_len = (size_t)blen;
    iov[3].iov_base = (void *)zeros;
    iov[3].iov_len = pad;
    iov[4].iov_base = endb;
    iov[4].iov_len = fcgi_end(c, endb);
    (void)upy_send_small(c->fd, iov, 5);
}

/* The fields both fastcgi entries share (the nph one differs in its name and
   status line).  head_slack: record headers and padding around the params,
   and a whole stray record before the head.  kept_idle: no need to stay
   below nginx's keepalive_timeout (60 s): nginx retries a request whose
   kept connection was closed. */
#define FASTCGI_ENTRY \
    .parse_head = fcgi_parse_head, \
    .reparse = fcgi_reparse, \
    .head_slack = 2 * (REC + UPY_FCGI_MAX_CONTENT + 255), \
    .body_begin = fcgi_body_begin, \
    .body_decode = fcgi_body_decode, \
    .vars = 1, \
    .environ_from = upy_environ_from_vars, \
    .chunked_out = 0, \
    .ends_itself = 1, \
    .connection_header = 0, \
    .frame = fcgi_frame, \
    .end = fcgi_end, \
    .kept_idle = 60.0, \
    .probes = 0, \
    .read_at_accept = 1, \
    .send_error = fcgi_send_error,

const upy_protocol upy_proto_fastcgi = {
    .name = "fastcgi",
    .status_prefix = "Status: ",
    .status_prefix_len = 8,
    FASTCGI_ENTRY
};

/* fastcgi-nph-socket: the same, with the response's HTTP status line
   ("HTTP/1.x 200 OK", the request's version), as uWSGI's nph mode. */
const upy_protocol upy_proto_fastcgi_nph = {
    .name = "fastcgi-nph",
    .status_prefix = "HTTP/1.1 ",
    .status_prefix_len = 9,
    .status_version = 1,
    FASTCGI_ENTRY
};
