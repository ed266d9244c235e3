/*
 * upy_proto_http.c - the HTTP/1.1 entry of the protocol table
 * (upy_proto.h): RFC 9112 heads and chunked bodies (upy_http.c), the
 * environ from header fields, status lines, chunked responses, keep-alive
 * per request.
 */
#include "upy_proto.h"

static ssize_t
http_parse_head(upy_loop *loop, upy_conn *c, upy_request *req, size_t len)
{
    ssize_t rc = upy_http_parse_request(c->buf, len, c->last_len, req,
                                        &loop->srv->limits);
    if (rc == UPY_PARSE_INCOMPLETE) {
        c->last_len = len;
    }
    else if (rc == UPY_PARSE_ERROR) {
        upy_conn_reject(loop, c, req->error_status, req->error_reason);
    }
    return rc;
}

static int
http_reparse(upy_server *srv, upy_conn *c, upy_request *req)
{
    return upy_http_parse_request(c->buf, c->head_len, 0, req,
                                  &srv->limits) == (ssize_t)c->head_len
               ? 0 : -1;
}

static void
http_body_begin(upy_conn *c, const upy_request *req)
{
    (void)req;
    upy_chunked_init(&c->chunk);
}

static ssize_t
http_body_decode(upy_conn *c, char *buf, size_t *len, uint64_t max_body,
                 int *status, const char **reason)
{
    ssize_t rc = upy_chunked_decode(&c->chunk, buf, len, max_body);
    if (rc == UPY_PARSE_ERROR) {
        *status = c->chunk.error_status ? c->chunk.error_status : 400;
        *reason = c->chunk.error_reason ? c->chunk.error_reason
                                        : "bad chunked body";
    }
    return rc;
}

void
upy_send_error_http(upy_server *srv, upy_conn *c, int status,
                    const char *reason)
{
    (void)srv;
    upy_send_error_text(c, "HTTP/1.1 ", status, reason);
}

const upy_protocol upy_proto_http = {
    .name = "http",
    .parse_head = http_parse_head,
    .reparse = http_reparse,
    .head_slack = 0,
    .body_begin = http_body_begin,
    .body_decode = http_body_decode,
    .vars = 0,
    .environ_from = upy_environ_from_http,
    .status_prefix = "HTTP/1.1 ",
    .status_prefix_len = 9,
    .chunked_out = 1,
    .ends_itself = 0,
    .connection_header = 1,
    .frame = NULL,
    .end = NULL,
    .probes = 1,
    .read_at_accept = 0,
    .send_error = upy_send_error_http,
};

const upy_protocol *const upy_protocols[UPY_NPROTO] = {
    [UPY_PROTO_HTTP] = &upy_proto_http,
    [UPY_PROTO_UWSGI] = &upy_proto_uwsgi,
    [UPY_PROTO_FASTCGI] = &upy_proto_fastcgi,
    [UPY_PROTO_SCGI] = &upy_proto_scgi,
    [UPY_PROTO_FASTCGI_NPH] = &upy_proto_fastcgi_nph,
    [UPY_PROTO_SCGI_NPH] = &upy_proto_scgi_nph,
};
