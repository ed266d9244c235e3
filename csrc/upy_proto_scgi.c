/*
 * upy_proto_scgi.c - the SCGI entry of the protocol table (upy_proto.h):
 * the netstring head (upy_scgi.c), the environ from its vars, a CGI
 * response ("Status: 200 OK", as uWSGI's scgi-socket answers), the
 * connection closed at the end of each response (SCGI has no keep-alive).
 */
#include "upy_proto.h"

static ssize_t
scgi_parse_head(upy_loop *loop, upy_conn *c, upy_request *req, size_t len)
{
    ssize_t rc;
    if (len >= 4 && upy_uwsgi_looks_like_http(c->buf, len)) {
        upy_conn_reject(loop, c, 400,
                        "this looks like an HTTP request on an SCGI socket; "
                        "point HTTP clients at an http-socket and nginx's "
                        "scgi_pass at an scgi-socket");
        return UPY_PARSE_ERROR;
    }
    rc = upy_scgi_parse_head(c->buf, len, req, &loop->srv->uwsgi_limits);
    if (rc == UPY_PARSE_ERROR) {
        upy_conn_reject(loop, c, req->error_status ? req->error_status : 400,
                        req->error_reason);
        return rc;
    }
    if (rc >= 0 && req->method.len == 0) {
        upy_conn_reject(loop, c, 400, "SCGI request without REQUEST_METHOD");
        return UPY_PARSE_ERROR;
    }
    return rc;
}

static int
scgi_reparse(upy_server *srv, upy_conn *c, upy_request *req)
{
    return upy_scgi_parse_head(c->buf, c->head_len, req, &srv->uwsgi_limits)
                   == (ssize_t)c->head_len ? 0 : -1;
}

static void
scgi_send_error(upy_server *srv, upy_conn *c, int status, const char *reason)
{
    (void)srv;
    upy_send_error_text(c, "Status: ", status, reason);
}

/* The fields both scgi entries share (the nph one differs in its name and
   status line).  head_slack: "65535:" and ",". */
#define SCGI_ENTRY \
    .parse_head = scgi_parse_head, \
    .reparse = scgi_reparse, \
    .head_slack = 8, \
    .body_begin = NULL, \
    .body_decode = NULL, \
    .vars = 1, \
    .environ_from = upy_environ_from_vars, \
    .chunked_out = 0, \
    .ends_itself = 0, \
    .connection_header = 0, \
    .frame = NULL, \
    .end = NULL, \
    .probes = 0, \
    .read_at_accept = 1, \
    .send_error = scgi_send_error,

const upy_protocol upy_proto_scgi = {
    .name = "scgi",
    .status_prefix = "Status: ",
    .status_prefix_len = 8,
    SCGI_ENTRY
};

/* scgi-nph-socket: the same, with the response's HTTP status line
   ("HTTP/1.x 200 OK", the request's version), as uWSGI's nph mode. */
const upy_protocol upy_proto_scgi_nph = {
    .name = "scgi-nph",
    .status_prefix = "HTTP/1.1 ",
    .status_prefix_len = 9,
    .status_version = 1,
    SCGI_ENTRY
};
