/*
 * upy_server.c - the Server type and its I/O loop.
 *
 * Python binds the listening sockets and hands their fds to Server(); each
 * call of Server.serve_forever() runs one loop (its own poller and
 * connections) in the calling thread, so a worker may run several loops on
 * the same listeners, one per thread.  The GIL is held while parsing and
 * while the app runs, and released while waiting for readiness
 * (upy_poll.c: epoll on Linux, poll(2) elsewhere).
 *
 * A connection reads its request head (HTTP or uwsgi packet), then its body
 * into memory or, past post-buffering, into an unlinked temporary file; only
 * then is the app called, so a slow client never holds the loop and
 * wsgi.input never blocks.
 */
#include "upy_core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0  /* Python ignores SIGPIPE: EPIPE is returned anyway */
#endif

#define UPY_INITIAL_BUF 8192
#define UPY_BODY_READ 65536     /* read size while receiving a body */
#define UPY_MAX_EVENTS 64
#define UPY_ACCEPT_BATCH 16     /* accepts per wake-up: leave some for peers */
#define UPY_LINGER_SECONDS 2.0  /* drain time after an error response */
#define UPY_FREE_CONNS 64       /* closed connections kept for reuse */
#define UPY_SPARE_BUFS 32       /* read buffers kept for reuse per loop */
#define UPY_UWSGI_EXTRA_VARS 64 /* vars beyond limit-request-fields */
#define UPY_DRAIN_MAX 65536     /* final stop: most backlog accepts */
#define UPY_ACCEPT_BACKOFF_MIN 0.05 /* out of fds: first pause, seconds */
#define UPY_ACCEPT_BACKOFF_MAX 1.0
#define UPY_ACCEPT_LOG_EVERY 10.0   /* out of fds: one log line per this */

/* ------------------------------------------------------------------ */
/* Logging                                                             */
/* ------------------------------------------------------------------ */

void
upy_log(upy_server *srv, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    PyObject *exc_type, *exc_value, *exc_tb, *r;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Logging must not clobber an exception being handled. */
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    r = PyObject_CallFunction(srv->logger, "isO", level, msg, Py_None);
    if (r == NULL) {
        PyErr_WriteUnraisable(srv->logger);
    }
    Py_XDECREF(r);
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

void
upy_log_exception(upy_server *srv, const char *what)
{
    PyObject *exc_type, *exc_value, *exc_tb, *r;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyErr_NormalizeException(&exc_type, &exc_value, &exc_tb);
    if (exc_value != NULL && exc_tb != NULL) {
        PyException_SetTraceback(exc_value, exc_tb);
    }
    r = PyObject_CallFunction(srv->logger, "isO", 40, what,
                              exc_value ? exc_value : Py_None);
    if (r == NULL) {
        PyErr_WriteUnraisable(srv->logger);
    }
    Py_XDECREF(r);
    Py_XDECREF(exc_type);
    Py_XDECREF(exc_value);
    Py_XDECREF(exc_tb);
}

/* ------------------------------------------------------------------ */
/* Writing                                                             */
/* ------------------------------------------------------------------ */

int
upy_send_all(upy_server *srv, int fd, struct iovec *iov, int iovcnt)
{
    struct msghdr msg;
    while (iovcnt > 0) {
        ssize_t n;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)iovcnt;
        n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd = {fd, POLLOUT, 0};
                int pr;
                int timeout_ms = (int)(srv->socket_timeout * 1000.0);
                Py_BEGIN_ALLOW_THREADS
                pr = poll(&pfd, 1, timeout_ms);
                Py_END_ALLOW_THREADS
                if (pr < 0 && errno == EINTR) {
                    continue;
                }
                if (pr <= 0 || (pfd.revents & (POLLERR | POLLHUP))) {
                    return -1;  /* stalled past socket-timeout, or gone */
                }
                continue;
            }
            return -1;
        }
        /* Advance past what was written. */
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

static int
send_text(upy_server *srv, int fd, const char *text)
{
    struct iovec iov = {(void *)text, strlen(text)};
    return upy_send_all(srv, fd, &iov, 1);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

static void
body_reset(upy_conn *c)
{
    free(c->body_mem);
    c->body_mem = NULL;
    c->body_cap = 0;
    c->body_len = 0;
    if (c->body_fd >= 0) {
        close(c->body_fd);
        c->body_fd = -1;
    }
}

/* An empty connection gives its read buffer back to the loop: an idle
   keep-alive connection then costs its struct only (issue: 4.7 KB RSS per
   idle connection before).  Buffers grown past UPY_INITIAL_BUF are freed. */
static void
buf_release(upy_loop *loop, upy_conn *c)
{
    if (c->buf == NULL || c->len != 0) {
        return;
    }
    if (c->cap == UPY_INITIAL_BUF && loop->nspare < UPY_SPARE_BUFS) {
        *(void **)c->buf = loop->spare_bufs;
        loop->spare_bufs = c->buf;
        loop->nspare++;
    }
    else {
        free(c->buf);
    }
    c->buf = NULL;
    c->cap = 0;
}

static void
conn_close(upy_loop *loop, upy_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    loop->nconns--;
    if (c->resp.active) {
        upy_response_abort(loop, c);
    }
    if (c->registered) {
        upy_poller_forget(&loop->poller, c->fd);
    }
    close(c->fd);
    body_reset(c);
    Py_CLEAR(c->remote_addr);
    Py_CLEAR(c->remote_port);
    upy_pending_free(&c->pend);
    c->len = 0;
    buf_release(loop, c);
    if (loop->accept_paused) {
        loop->accept_resume_at = 0;  /* an fd is free: accept again */
    }
    if (loop->nfree < UPY_FREE_CONNS) {
        /* Keep the struct for the next connection. */
        c->next = loop->free_conns;
        loop->free_conns = c;
        loop->nfree++;
        return;
    }
    free(c);
}

/* A zeroed connection, from the free list when possible; no buffer yet. */
static upy_conn *
conn_new(upy_loop *loop)
{
    upy_conn *c = loop->free_conns;
    if (c != NULL) {
        loop->free_conns = c->next;
        loop->nfree--;
        memset(c, 0, sizeof *c);
        return c;
    }
    return calloc(1, sizeof *c);
}

/* After an error response: stop writing, drain what the client still sends
   for a moment so the kernel does not answer it with a RST that destroys
   the response in flight (RFC 9112 §9.6). */
static void
conn_linger(upy_loop *loop, upy_conn *c)
{
    shutdown(c->fd, SHUT_WR);
    c->state = UPY_CONN_LINGER;
    c->len = 0;
    buf_release(loop, c);
    c->deadline = upy_now() + UPY_LINGER_SECONDS;
}

static const char *
status_line(int status)
{
    switch (status) {
    case 400: return "400 Bad Request";
    case 408: return "408 Request Timeout";
    case 411: return "411 Length Required";
    case 413: return "413 Content Too Large";
    case 414: return "414 URI Too Long";
    case 431: return "431 Request Header Fields Too Large";
    case 500: return "500 Internal Server Error";
    case 501: return "501 Not Implemented";
    case 503: return "503 Service Unavailable";
    case 505: return "505 HTTP Version Not Supported";
    default: return "400 Bad Request";
    }
}

const char *
upy_status_text(int status)
{
    return status_line(status);
}

void
upy_send_error(upy_server *srv, upy_conn *c, int status, const char *reason)
{
    char head[256], body[256];
    int blen = snprintf(body, sizeof body, "%s: %s\n", status_line(status),
                        reason ? reason : "bad request");
    int hlen;
    struct iovec iov[2];
    if (blen < 0 || (size_t)blen >= sizeof body) {
        blen = (int)sizeof body - 1;
    }
    hlen = snprintf(head, sizeof head,
                    "HTTP/1.1 %s\r\nContent-Type: text/plain\r\n"
                    "Content-Length: %d\r\nConnection: close\r\n\r\n",
                    status_line(status), blen);
    iov[0].iov_base = head;
    iov[0].iov_len = (size_t)hlen;
    iov[1].iov_base = body;
    iov[1].iov_len = (size_t)blen;
    (void)upy_send_all(srv, c->fd, iov, 2);
}

/* Reject the request on c with status and reason, log it, and linger. */
static void
conn_reject(upy_loop *loop, upy_conn *c, int status, const char *reason)
{
    upy_server *srv = loop->srv;
    upy_log(srv, 30, "%s from %s on %s: %s", status_line(status),
            c->addr_text, c->lst->name_c, reason);
    upy_send_error(srv, c, status, reason);
    conn_linger(loop, c);
}

static int
buf_reserve(upy_loop *loop, upy_conn *c, size_t need)
{
    size_t cap;
    char *nb;
    if (c->cap - c->len >= need) {
        return 0;
    }
    if (c->buf == NULL && loop->spare_bufs != NULL &&
        need <= UPY_INITIAL_BUF) {
        c->buf = loop->spare_bufs;
        loop->spare_bufs = *(void **)c->buf;
        loop->nspare--;
        c->cap = UPY_INITIAL_BUF;
        return 0;
    }
    cap = c->cap ? c->cap : UPY_INITIAL_BUF;
    while (cap - c->len < need) {
        cap *= 2;
    }
    nb = realloc(c->buf, cap);
    if (nb == NULL) {
        return -1;
    }
    c->buf = nb;
    c->cap = cap;
    return 0;
}

/* An unlinked temporary file for a body over post-buffering. */
static int
open_spill_file(upy_server *srv)
{
    const char *dir = NULL;
    int fd;
    if (srv->tmpdir != Py_None) {
        dir = PyUnicode_AsUTF8(srv->tmpdir);
    }
    if (dir == NULL) {
        PyErr_Clear();
        dir = getenv("TMPDIR");
        if (dir == NULL || *dir == '\0')
            dir = "/tmp";
    }
#ifdef O_TMPFILE
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) {
        return fd;
    }
#endif
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/uwsgipy-body-XXXXXX", dir);
        fd = mkstemp(path);
        if (fd >= 0) {
            unlink(path);
            (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
    }
    return fd;
}

static int
write_full(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Append n body bytes; spills to a temporary file past post-buffering. */
static int
body_sink(upy_loop *loop, upy_conn *c, const char *p, size_t n)
{
    upy_server *srv = loop->srv;
    if (n == 0) {
        return 0;
    }
    if (c->body_fd < 0 && c->body_len + n > srv->post_buffering) {
        c->body_fd = open_spill_file(srv);
        if (c->body_fd < 0 ||
            write_full(c->body_fd, c->body_mem, (size_t)c->body_len) < 0) {
            upy_log(srv, 40, "cannot spill a request body to a temporary "
                    "file: %s (post-buffering is %llu bytes)", strerror(errno),
                    (unsigned long long)srv->post_buffering);
            return -1;
        }
        free(c->body_mem);
        c->body_mem = NULL;
        c->body_cap = 0;
    }
    if (c->body_fd >= 0) {
        if (write_full(c->body_fd, p, n) < 0) {
            upy_log(srv, 40, "cannot write a request body to its temporary "
                    "file: %s", strerror(errno));
            return -1;
        }
    }
    else {
        if (c->body_cap - c->body_len < n) {
            size_t cap = c->body_cap ? c->body_cap : 4096;
            char *nb;
            if (c->content_length > 0 &&
                (uint64_t)c->content_length <= srv->post_buffering) {
                cap = (size_t)c->content_length;
            }
            while (cap - c->body_len < n)
                cap *= 2;
            nb = realloc(c->body_mem, cap);
            if (nb == NULL)
                return -1;
            c->body_mem = nb;
            c->body_cap = cap;
        }
        memcpy(c->body_mem + c->body_len, p, n);
    }
    c->body_len += n;
    return 0;
}

/* New reference: the wsgi.input object for the body received on c. */
static PyObject *
make_input(upy_loop *loop, upy_conn *c)
{
    upy_state *st = loop->st;
    if (c->body_fd >= 0) {
        PyObject *f;
        if (lseek(c->body_fd, 0, SEEK_SET) < 0) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        f = PyObject_CallFunction(st->io_open, "isi", c->body_fd, "rb",
                                  1 << 16);
        if (f != NULL) {
            c->body_fd = -1;  /* the file object owns it now */
        }
        return f;
    }
    if (c->body_len == 0) {
        return Py_NewRef(st->empty_input);
    }
    {
        PyObject *b = PyBytes_FromStringAndSize(c->body_mem,
                                                (Py_ssize_t)c->body_len);
        PyObject *f;
        if (b == NULL)
            return NULL;
        f = PyObject_CallOneArg(st->io_BytesIO, b);
        Py_DECREF(b);
        return f;
    }
}

/* Parse the head at c->buf[0..len).  Returns the head length, INCOMPLETE,
   or ERROR (after rejecting the request). */
static ssize_t
parse_head(upy_loop *loop, upy_conn *c, upy_request *req, size_t len)
{
    upy_server *srv = loop->srv;
    memset(req, 0, sizeof *req);
    req->fields = loop->fields;
    req->fields_cap = loop->fields_cap;
    if (c->lst->proto == UPY_PROTO_HTTP) {
        ssize_t rc = upy_http_parse_request(c->buf, len, c->last_len, req,
                                            &srv->limits);
        if (rc == UPY_PARSE_INCOMPLETE) {
            c->last_len = len;
        }
        else if (rc == UPY_PARSE_ERROR) {
            conn_reject(loop, c, req->error_status, req->error_reason);
        }
        return rc;
    }
    else {
        upy_uwsgi_header h;
        if (len >= 4 && upy_uwsgi_looks_like_http(c->buf, len)) {
            conn_reject(loop, c, 400,
                        "this looks like an HTTP request on a uwsgi socket; "
                        "point HTTP clients and proxy_pass at an http-socket, "
                        "and nginx's uwsgi_pass at a socket");
            return UPY_PARSE_ERROR;
        }
        if (upy_uwsgi_parse_header((const unsigned char *)c->buf, len, &h) !=
            UPY_UWSGI_HEADER_SIZE) {
            return UPY_PARSE_INCOMPLETE;
        }
        if (h.modifier1 != 0) {
            upy_log(srv, 30, "uwsgi packet with modifier1 %u from %s on %s: "
                    "only modifier1 0 (WSGI) is served; closing",
                    (unsigned)h.modifier1, c->addr_text,
                    c->lst->name_c);
            conn_linger(loop, c);
            return UPY_PARSE_ERROR;
        }
        if (h.datasize == 0) {
            conn_reject(loop, c, 400, "uwsgi packet with datasize 0");
            return UPY_PARSE_ERROR;
        }
        if (h.datasize > srv->limits.max_head) {
            char reason[160];
            snprintf(reason, sizeof reason,
                     "uwsgi packet vars of %u bytes exceed buffer-size %zu; "
                     "raise buffer-size (at most 65535)",
                     (unsigned)h.datasize, srv->limits.max_head);
            conn_reject(loop, c, 431, reason);
            return UPY_PARSE_ERROR;
        }
        if (len < (size_t)UPY_UWSGI_HEADER_SIZE + h.datasize) {
            return UPY_PARSE_INCOMPLETE;
        }
        if (upy_uwsgi_parse_vars(c->buf + UPY_UWSGI_HEADER_SIZE, h.datasize,
                                 req, &srv->uwsgi_limits) != 0) {
            conn_reject(loop, c, req->error_status ? req->error_status : 400,
                        req->error_reason ? req->error_reason
                                          : "invalid uwsgi vars");
            return UPY_PARSE_ERROR;
        }
        if (req->method.len == 0) {
            conn_reject(loop, c, 400, "uwsgi packet without REQUEST_METHOD");
            return UPY_PARSE_ERROR;
        }
        return (ssize_t)(UPY_UWSGI_HEADER_SIZE + h.datasize);
    }
}

static void
self_stop(upy_server *srv, const char *reason)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    srv->stop_deadline = upy_now() + srv->stop_mercy;
    srv->stop_reason = reason;
    upy_wake_signal(srv->wake_wfd);
}

/* Resident set size in bytes from /proc/self/statm, or 0 if unknown. */
static uint64_t
current_rss(void)
{
    static __thread int fd = -1;
    char text[128];
    ssize_t n;
    unsigned long long size, resident;
    if (fd < 0) {
        fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return 0;
    }
    n = pread(fd, text, sizeof text - 1, 0);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    if (sscanf(text, "%llu %llu", &size, &resident) != 2)
        return 0;
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* max-requests and reload-on-rss: checked after each request (now: its
   end), never acted on for a worker younger than min-worker-lifetime
   (uWSGI's core/utils.c). */
static void
check_limits(upy_server *srv, double now)
{
    const char *why = NULL;
    if (srv->max_requests && srv->requests >= srv->max_requests) {
        why = "max-requests reached";
    }
    else if (srv->reload_on_rss && current_rss() > srv->reload_on_rss) {
        why = "reload-on-rss exceeded";
    }
    if (why != NULL && now - srv->created >= srv->min_lifetime) {
        self_stop(srv, why);
    }
}

static int conn_process(upy_loop *loop, upy_conn *c);

/* The deadline of a connection reading a request: socket-timeout after
   the last read, but never past the whole-head (header-timeout) or the
   whole-body (body-timeout + 1 s per body-min-rate bytes) deadline.
   A connection with no byte of its next head keeps the deadline it has
   (socket-timeout after accept, http-keepalive when kept alive). */
static void
conn_read_deadline(upy_loop *loop, upy_conn *c)
{
    upy_server *srv = loop->srv;
    double d = c->last_io + c->lst->socket_timeout, whole = 0;
    if (c->state == UPY_CONN_HEAD) {
        if (c->len == 0) {
            return;
        }
        if (c->head_started == 0) {
            c->head_started = c->last_io;
        }
        if (srv->header_timeout > 0) {
            whole = c->head_started + srv->header_timeout;
        }
    }
    else if (c->state == UPY_CONN_BODY) {
        if (srv->body_timeout > 0) {
            whole = c->body_started + srv->body_timeout;
            if (srv->body_min_rate > 0) {
                whole += (double)c->body_len / srv->body_min_rate;
            }
        }
    }
    else {
        return;
    }
    c->deadline = whole > 0 && whole < d ? whole : d;
}

/* After a response: account for it, then keep the connection for the
   next request or close it.  Returns 0, or -1 when c was closed. */
static int
request_done(upy_loop *loop, upy_conn *c, int rc, double started)
{
    upy_server *srv = loop->srv;
    double now = upy_now();
    body_reset(c);
    srv->requests++;
    c->requests++;
    if (loop->slot != NULL) {
        double us = (now - started) * 1e6;
        upy_slot *sl = loop->slot;
        sl->requests++;
        sl->avg_rt = sl->requests == 1 ? us : sl->avg_rt * 0.9 + us * 0.1;
        sl->running_us += (uint64_t)us;
        sl->request_started = 0;
    }
    check_limits(srv, now);
    if (rc != UPY_RESP_KEEP || !c->keep_alive || srv->stopping) {
        conn_close(loop, c);
        return -1;
    }
    /* Keep-alive: the next (maybe pipelined) request starts at head_len. */
    memmove(c->buf, c->buf + c->head_len, c->len - c->head_len);
    c->len -= c->head_len;
    c->head_len = 0;
    c->last_len = 0;
    c->state = UPY_CONN_HEAD;
    c->last_io = now;
    if (c->len) {
        c->head_started = now;  /* pipelined: the next head is here */
        conn_read_deadline(loop, c);
    }
    else {
        c->head_started = 0;    /* the head clock starts with its first byte */
        c->deadline = now + c->lst->keepalive_timeout;
        buf_release(loop, c);
    }
    return 0;
}

static int
set_events(upy_loop *loop, upy_conn *c, uint32_t events)
{
    if (!c->registered) {
        /* still in accept_ready's first read: it registers with the state
           this leaves */
        return 0;
    }
    return upy_poller_mod(&loop->poller, c->fd, events, c);
}

/* Call the app for the request on c.  Returns 0 to keep the connection
   (also while its response waits for the socket: state WRITE), -1 when it
   was closed (c is freed). */
static int
dispatch(upy_loop *loop, upy_conn *c, upy_request *req)
{
    upy_server *srv = loop->srv;
    PyObject *input = NULL, *environ = NULL;
    double started = upy_now();
    int rc = UPY_RESP_CLOSE;

    if (loop->slot != NULL) {
        upy_slot *sl = loop->slot;
        size_t ml = req->method.len < sizeof sl->method - 1
                        ? req->method.len : sizeof sl->method - 1;
        size_t ul = req->target.len < sizeof sl->uri - 1
                        ? req->target.len : sizeof sl->uri - 1;
        memcpy(sl->method, req->method.p, ml);
        sl->method[ml] = '\0';
        memcpy(sl->uri, req->target.p, ul);
        sl->uri[ul] = '\0';
        sl->request_started = started;
    }
    input = make_input(loop, c);
    if (input == NULL) {
        upy_log_exception(srv, "cannot create wsgi.input");
        upy_send_error(srv, c, 500, "internal error");
        goto done;
    }
    environ = upy_build_environ(loop, c, req, input);
    if (environ == NULL) {
        upy_log_exception(srv, "cannot build the environ");
        upy_send_error(srv, c, 500, "internal error");
        goto done;
    }
    rc = upy_response_start(loop, c, req, environ, input, started);
done:
    Py_XDECREF(environ);
    Py_XDECREF(input);
    if (rc == UPY_RESP_BLOCKED) {
        /* Wait for room in the socket; no reading meanwhile. */
        if (set_events(loop, c, UPY_POLL_OUT) < 0) {
            conn_close(loop, c);
            return -1;
        }
        c->state = UPY_CONN_WRITE;
        c->deadline = upy_now() + c->lst->socket_timeout;
        return 0;
    }
    return request_done(loop, c, rc, started);
}

/* Writable: a connection whose response was blocked. */
static void
conn_writable(upy_loop *loop, upy_conn *c)
{
    int rc = upy_response_resume(loop, c);
    if (rc == UPY_RESP_BLOCKED) {
        c->deadline = upy_now() + c->lst->socket_timeout;
        return;
    }
    if (request_done(loop, c, rc, c->resp.started) < 0) {
        return;
    }
    if (set_events(loop, c, UPY_POLL_IN) < 0) {
        conn_close(loop, c);
        return;
    }
    (void)conn_process(loop, c); /* pipelined requests already read */
}

/* Consume body bytes sitting after the head.  Returns 1 when the body is
   complete, 0 when more is needed, -1 when the connection was rejected. */
static int
consume_body(upy_loop *loop, upy_conn *c)
{
    upy_server *srv = loop->srv;
    char *p = c->buf + c->head_len;
    size_t avail = c->len - c->head_len;

    if (!c->chunked) {
        uint64_t want = (uint64_t)c->content_length - c->body_len;
        size_t take = avail < want ? avail : (size_t)want;
        if (body_sink(loop, c, p, take) < 0) {
            conn_reject(loop, c, 500, "cannot store the request body");
            return -1;
        }
        memmove(p, p + take, avail - take);
        c->len -= take;
        return c->body_len == (uint64_t)c->content_length;
    }
    else {
        size_t dlen = avail;
        ssize_t rc = upy_chunked_decode(&c->chunk, p, &dlen,
                                        srv->limits.limit_post);
        if (rc == UPY_PARSE_ERROR) {
            conn_reject(loop, c, c->chunk.error_status ? c->chunk.error_status
                                                       : 400,
                        c->chunk.error_reason ? c->chunk.error_reason
                                              : "bad chunked body");
            return -1;
        }
        if (body_sink(loop, c, p, dlen) < 0) {
            conn_reject(loop, c, 500, "cannot store the request body");
            return -1;
        }
        if (rc >= 0) {
            memmove(p, p + dlen, (size_t)rc);
            c->len = c->head_len + (size_t)rc;
            return 1;
        }
        c->len = c->head_len;
        return 0;
    }
}

/* The PROXY header on a listener with proxy protocol: the client's real
   address replaces the connection's.  Returns 1 when it is dealt with (or
   there is none), 0 when more bytes are needed, -1 when c was closed (a
   malformed header: the connection is not HTTP, so no response). */
static int
conn_proxy_header(upy_loop *loop, upy_conn *c)
{
    upy_server *srv = loop->srv;
    upy_proxy_info info;
    ssize_t rc = upy_proxy_parse(c->buf, c->len, &info);
    if (rc == UPY_PARSE_INCOMPLETE) {
        return 0;
    }
    if (rc == UPY_PARSE_ERROR) {
        upy_log(srv, 30, "malformed PROXY protocol header from %s on %s: "
                "%s; closing", c->addr_text, c->lst->name_c,
                info.error);
        conn_close(loop, c);
        return -1;
    }
    c->proxy_pending = 0;
    if (rc == 0) {
        return 1;
    }
    if (info.family != 0) {
        PyObject *addr = PyUnicode_FromString(info.src_addr);
        PyObject *port = addr ? PyUnicode_FromFormat("%u",
                                                     (unsigned)info.src_port)
                              : NULL;
        if (port == NULL) {
            Py_XDECREF(addr);
            upy_log_exception(srv, "cannot store the PROXY header's address");
            conn_close(loop, c);
            return -1;
        }
        Py_XSETREF(c->remote_addr, addr);
        Py_XSETREF(c->remote_port, port);
        snprintf(c->addr_text, sizeof c->addr_text,
                 info.family == 6 ? "[%s]:%u" : "%s:%u", info.src_addr,
                 (unsigned)info.src_port);
    }
    memmove(c->buf, c->buf + rc, c->len - (size_t)rc);
    c->len -= (size_t)rc;
    return 1;
}

/* Drive c's state machine over the bytes in its buffer.
   Returns 0, or -1 when c was closed and freed. */
static int
conn_process(upy_loop *loop, upy_conn *c)
{
    upy_server *srv = loop->srv;
    upy_request req;

    for (;;) {
        if (c->state == UPY_CONN_HEAD) {
            ssize_t rc;
            if (c->proxy_pending && c->len > 0) {
                int pr = conn_proxy_header(loop, c);
                if (pr <= 0) {
                    return pr;
                }
            }
            if (c->len == 0) {
                return 0;
            }
            rc = parse_head(loop, c, &req, c->len);
            if (rc == UPY_PARSE_INCOMPLETE) {
                if (c->len > srv->limits.max_head + UPY_UWSGI_HEADER_SIZE) {
                    conn_reject(loop, c, 431, "request head too large "
                                "(buffer-size)");
                }
                return 0;
            }
            if (rc == UPY_PARSE_ERROR) {
                return 0;  /* rejected: lingering */
            }
            c->head_len = (size_t)rc;
            c->chunked = req.chunked;
            c->content_length = req.chunked ? -1
                                : req.content_length < 0 ? 0
                                : req.content_length;
            c->keep_alive = req.keep_alive && c->lst->keepalive_timeout > 0;
            c->is_head = req.is_head;
            c->body_len = 0;
            if (!c->chunked && c->content_length == 0) {
                if (dispatch(loop, c, &req) < 0) {
                    return -1;
                }
                continue;
            }
            if (c->chunked) {
                upy_chunked_init(&c->chunk);
            }
            if (req.expect_continue && c->len == c->head_len &&
                send_text(srv, c->fd, "HTTP/1.1 100 Continue\r\n\r\n") < 0) {
                conn_close(loop, c);
                return -1;
            }
            c->state = UPY_CONN_BODY;
            c->body_started = upy_now();
        }
        if (c->state == UPY_CONN_BODY) {
            int done = consume_body(loop, c);
            ssize_t rc;
            if (done <= 0) {
                return 0;
            }
            /* The head is still intact at buf[0..head_len): parse it again
               for the field slices. */
            c->last_len = 0;
            rc = parse_head(loop, c, &req, c->head_len);
            if (rc < 0) {
                return 0;
            }
            if (dispatch(loop, c, &req) < 0) {
                return -1;
            }
            continue;
        }
        return 0; /* LINGER */
    }
}

/* Read what c's client sent and act on it.  Returns 0, or -1 when c was
   closed (and freed). */
static int
conn_readable(upy_loop *loop, upy_conn *c)
{
    upy_server *srv = loop->srv;
    size_t want = c->state == UPY_CONN_BODY ? UPY_BODY_READ : 4096;
    ssize_t n;

    if (c->state == UPY_CONN_LINGER) {
        char sink[4096];
        n = read(c->fd, sink, sizeof sink);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(loop, c);
            return -1;
        }
        return 0;
    }
    if (buf_reserve(loop, c, want) < 0) {
        upy_log(srv, 40, "out of memory reading from %s", c->addr_text);
        conn_close(loop, c);
        return -1;
    }
    n = read(c->fd, c->buf + c->len, c->cap - c->len);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            conn_close(loop, c);
            return -1;
        }
        buf_release(loop, c);  /* a wake-up without data: stay small */
        return 0;
    }
    if (n == 0) {
        if (c->state == UPY_CONN_BODY) {
            upy_log(srv, 30, "client %s closed the connection before "
                    "sending the whole body (%llu bytes received)",
                    c->addr_text, (unsigned long long)c->body_len);
        }
        conn_close(loop, c);
        return -1;
    }
    c->len += (size_t)n;
    c->last_io = upy_now();
    if (conn_process(loop, c) < 0) {
        return -1;
    }
    conn_read_deadline(loop, c);
    return 0;
}

/* Register (on) or unregister the listeners with this loop's poller. */
static void
loop_listen(upy_loop *loop, int on)
{
    upy_server *srv = loop->srv;
    if (on == loop->listening) {
        return;
    }
    for (Py_ssize_t i = 0; i < srv->nlisteners; i++) {
        upy_listener *l = &srv->listeners[i];
        if (on && !l->shut) {
            (void)upy_poller_add(&loop->poller, l->fd, UPY_POLL_IN, l, 1);
        }
        else if (!on) {
            (void)upy_poller_del(&loop->poller, l->fd);
        }
    }
    loop->listening = on;
}

/* accept() failed for want of a file descriptor or memory.  Polling the
   listener again at once would wake the loop at once (the connection is
   still queued): a 100 % CPU loop and a log line per wake-up.  Instead,
   as nginx does, stop accepting for a moment (or until one of this loop's
   connections closes), keep serving the open connections, and log one
   line per UPY_ACCEPT_LOG_EVERY seconds with a count. */
static void
accept_pause(upy_loop *loop, upy_listener *lst, int err)
{
    upy_server *srv = loop->srv;
    double now = upy_now();
    loop->accept_backoff = loop->accept_backoff <= 0
                               ? UPY_ACCEPT_BACKOFF_MIN
                               : loop->accept_backoff * 2;
    if (loop->accept_backoff > UPY_ACCEPT_BACKOFF_MAX) {
        loop->accept_backoff = UPY_ACCEPT_BACKOFF_MAX;
    }
    loop->accept_paused = 1;
    loop->accept_resume_at = now + loop->accept_backoff;
    loop_listen(loop, 0);
    loop->accept_failures++;
    if (loop->accept_logged_at == 0 ||
        now - loop->accept_logged_at >= UPY_ACCEPT_LOG_EVERY) {
        if (loop->accept_logged_at == 0 || loop->accept_failures == 1) {
            upy_log(srv, 40, "accept() on %s: %s, with %zu connections open "
                    "in this loop: new connections wait in the backlog until "
                    "one closes (raise the open-files limit: ulimit -n, "
                    "LimitNOFILE= in the systemd unit)",
                    lst->name_c, strerror(err), loop->nconns);
        }
        else {
            upy_log(srv, 40, "accept() on %s: %s, %llu times in the last "
                    "%.0fs (%zu connections open in this loop)",
                    lst->name_c, strerror(err),
                    (unsigned long long)loop->accept_failures,
                    now - loop->accept_logged_at, loop->nconns);
        }
        loop->accept_logged_at = now;
        loop->accept_failures = 0;
    }
}

/* Accept up to `batch` connections from lst.  Returns 1 when the backlog
   was found empty, 0 when the batch ended first, -1 when accepting must
   stop (out of fds, or the listener is shut). */
static int
accept_ready(upy_loop *loop, upy_listener *lst, int batch)
{
    upy_server *srv = loop->srv;
    for (int i = 0; i < batch; i++) {
        struct sockaddr_storage ss;
        socklen_t slen = sizeof ss;
        upy_conn *c;
        unsigned alen = (unsigned)slen;
        int fd = upy_accept(lst->fd, (struct sockaddr *)&ss, &alen);
        if (fd < 0) {
            int err = errno;
            if (err == EINTR || err == ECONNABORTED)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK)
                return 1;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
                err == ENOMEM) {
                accept_pause(loop, lst, err);
                return -1;
            }
            if (err == EINVAL) {
                /* Not listening any more: a final stop (another process's,
                   or another loop's) shut it.  Stop polling it in this
                   loop, or it stays readable. */
                lst->shut = 1;
                (void)upy_poller_del(&loop->poller, lst->fd);
                return -1;
            }
            upy_log(srv, 40, "accept() on %s: %s", lst->name_c, strerror(err));
            return -1;
        }
        loop->accept_backoff = 0;
        c = conn_new(loop);
        if (c == NULL) {
            close(fd);
            return -1;
        }
        c->ev = UPY_EV_CONN;
        c->fd = fd;
        c->lst = lst;
        c->body_fd = -1;
        c->state = UPY_CONN_HEAD;
        c->proxy_pending = lst->proxy_protocol;
        c->last_io = c->head_started = upy_now();
        c->deadline = c->last_io + lst->socket_timeout;
        if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
            char host[INET6_ADDRSTRLEN] = "";
            unsigned port;
#ifndef __linux__
            /* Linux: accepted sockets inherit TCP_NODELAY from the
               listener (sockets.py sets it there). */
            int one = 1;
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#endif
            if (ss.ss_family == AF_INET) {
                struct sockaddr_in *a = (struct sockaddr_in *)&ss;
                inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
                port = ntohs(a->sin_port);
            }
            else {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
                inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
                port = ntohs(a->sin6_port);
            }
            snprintf(c->addr_text, sizeof c->addr_text, "%s:%u", host, port);
            if (lst->proto == UPY_PROTO_HTTP) {
                c->remote_addr = PyUnicode_FromString(host);
                c->remote_port = PyUnicode_FromFormat("%u", port);
            }
        }
        else {
            snprintf(c->addr_text, sizeof c->addr_text, "unix socket");
            if (lst->proto == UPY_PROTO_HTTP) {
                c->remote_addr = Py_NewRef(loop->st->s_empty);
                c->remote_port = Py_NewRef(loop->st->s_empty);
            }
        }
        if (lst->proto == UPY_PROTO_HTTP &&
            (c->remote_addr == NULL || c->remote_port == NULL)) {
            PyErr_Clear();
            Py_XDECREF(c->remote_addr);
            Py_XDECREF(c->remote_port);
            close(fd);
            free(c);
            continue;
        }
        c->next = loop->conns;
        if (loop->conns)
            loop->conns->prev = c;
        loop->conns = c;
        loop->nconns++;
        if (lst->proto == UPY_PROTO_UWSGI) {
            /* nginx writes the packet right after connecting (and uwsgi
               listeners use TCP_DEFER_ACCEPT): read at once; most such
               connections are answered and closed without ever being
               registered with the poller. */
            if (conn_readable(loop, c) < 0) {
                continue;
            }
        }
        if (!c->registered &&
            upy_poller_add(&loop->poller, fd,
                           c->state == UPY_CONN_WRITE ? UPY_POLL_OUT
                                                      : UPY_POLL_IN,
                           c, 0) < 0) {
            conn_close(loop, c);
            continue;
        }
        c->registered = 1;
    }
    return 0;
}

/* A listener is readable.  With several loops on one listener (threads,
   workers), take one connection per wake-up so the others get theirs: a
   keep-alive connection stays with the loop that accepted it.  uwsgi
   clients (nginx) connect per request: one accept per wake-up spares the
   accept() that would find the queue empty. */
static void
listener_ready(upy_loop *loop, upy_listener *lst)
{
    upy_server *srv = loop->srv;
    (void)accept_ready(loop, lst,
                       srv->shared_listeners || lst->proto == UPY_PROTO_UWSGI
                           ? 1 : UPY_ACCEPT_BATCH);
}

/* A final stop: accept what is already queued on each listener this
   process owns (those clients sent their request and wait for it), then
   shut the listener, so later connects are refused at once and clients
   fail over instead of waiting in a backlog nobody serves and getting a
   reset at exit.  systemd's sockets (close_on_stop 0) and the listeners
   of a reload stay open.  Shutting a listener is seen by every process
   holding it: the other workers' accept() fails with EINVAL. */
static void
drain_and_shut(upy_loop *loop)
{
    upy_server *srv = loop->srv;
    for (Py_ssize_t i = 0; i < srv->nlisteners; i++) {
        upy_listener *l = &srv->listeners[i];
        int rc;
        if (!l->close_on_stop || l->shut) {
            continue;
        }
        rc = accept_ready(loop, l, UPY_DRAIN_MAX);
        if (rc < 0 && l->shut) {
            continue;  /* another process shut it meanwhile */
        }
        if (rc <= 0) {
            upy_log(srv, 30, "final stop: could not accept every queued "
                    "connection on %s; the rest are reset",
                    l->name_c);
        }
        /* SHUT_RDWR: a TCP listener leaves the listen state (connects are
           refused, accept fails with EINVAL); a unix one refuses connects
           and reports POLLHUP (it would stay readable with SHUT_RD alone),
           so every loop of every process notices and stops polling it. */
        (void)shutdown(l->fd, SHUT_RDWR);
        l->shut = 1;
    }
}

static void
sweep_timeouts(upy_loop *loop, double now)
{
    upy_conn *c = loop->conns, *next;
    for (; c != NULL; c = next) {
        next = c->next;
        if (c->deadline <= 0 || now < c->deadline) {
            continue;
        }
        if (c->state == UPY_CONN_WRITE) {
            upy_log(loop->srv, 30, "client %s stopped reading the response "
                    "for socket-timeout %.0fs: closing", c->addr_text,
                    c->lst->socket_timeout);
            conn_close(loop, c);
            continue;
        }
        if (c->state == UPY_CONN_BODY ||
            (c->state == UPY_CONN_HEAD && c->len > 0)) {
            upy_server *srv = loop->srv;
            char reason[160];
            if (now - c->last_io >= c->lst->socket_timeout) {
                snprintf(reason, sizeof reason, "client stalled sending the "
                         "request for socket-timeout %.0fs",
                         c->lst->socket_timeout);
            }
            else if (c->state == UPY_CONN_HEAD) {
                snprintf(reason, sizeof reason, "request head not complete "
                         "within header-timeout %.0fs", srv->header_timeout);
            }
            else {
                snprintf(reason, sizeof reason, "request body too slow: "
                         "%llu bytes in %.0fs (body-timeout %.0fs, "
                         "body-min-rate %.0f bytes/s)",
                         (unsigned long long)c->body_len,
                         now - c->body_started, srv->body_timeout,
                         srv->body_min_rate);
            }
            conn_reject(loop, c, 408, reason);
            continue;
        }
        conn_close(loop, c);
    }
}

/* Graceful stop: stop accepting (a final stop serves the backlogs
   first), close idle connections. */
static void
loop_stop_listening(upy_loop *loop)
{
    upy_server *srv = loop->srv;
    upy_conn *c, *next;
    if (srv->close_listeners && srv->stopping == 1 && !loop->drained) {
        loop->drained = 1;
        drain_and_shut(loop);
    }
    loop_listen(loop, 0);
    loop->accept_paused = 0;
    if (loop->wake_watched) {
        /* The wake fd stays readable for the other loops: stop watching
           it, or the wait would return at once until the end. */
        upy_poller_del(&loop->poller, srv->wake_rfd);
        loop->wake_watched = 0;
    }
    for (c = loop->conns; c != NULL; c = next) {
        next = c->next;
        /* Only idle keep-alive connections: a connection accepted but
           not read yet holds a request the client already sent (closing
           it would reset the client), and bytes queued on a kept-alive
           one are its next request. */
        if (c->state == UPY_CONN_HEAD && c->len == 0 && c->requests > 0) {
            char byte;
            if (recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
                continue;
            }
            conn_close(loop, c);
        }
    }
}

static void
loop_free(upy_loop *loop)
{
    while (loop->conns != NULL) {
        conn_close(loop, loop->conns);
    }
    while (loop->free_conns != NULL) {
        upy_conn *c = loop->free_conns;
        loop->free_conns = c->next;
        free(c);
    }
    while (loop->spare_bufs != NULL) {
        void *b = loop->spare_bufs;
        loop->spare_bufs = *(void **)b;
        free(b);
    }
    upy_poller_free(&loop->poller);
    free(loop->fields);
    free(loop->scratch);
    free(loop->out);
}

/* ------------------------------------------------------------------ */
/* Server type                                                         */
/* ------------------------------------------------------------------ */

PyDoc_STRVAR(server_doc,
"Server(app, listeners, *, logger, buffer_size=65535, max_fields=100,\n"
"       limit_post=0, post_buffering=1048576, socket_timeout=4.0,\n"
"       keepalive_timeout=5.0, access_log_fd=-1, multithread=False,\n"
"       multiprocess=False, errors=None, tmpdir=None, max_requests=0,\n"
"       reload_on_rss=0, stop_mercy=60.0, scoreboard=None,\n"
"       log_format=None, log_filter=0, log_xff=False, worker_id=0,\n"
"       write_exception=True, limit_request_line=8190,\n"
"       limit_request_field_size=8190, header_timeout=30.0,\n"
"       body_timeout=30.0, body_min_rate=1024.0, add_headers=b'',\n"
"       min_lifetime=0.0)\n"
"--\n\n"
"The request path of one worker.\n\n"
"app: the WSGI callable (PEP 3333).\n"
"listeners: sequence of (fd, proto, server_name, server_port, name[,\n"
"  close_on_stop[, proxy_protocol[, socket_timeout, keepalive_timeout]]]):\n"
"  an already bound and listening\n"
"  socket fd (the Server does not own it), PROTO_HTTP or PROTO_UWSGI, the\n"
"  SERVER_NAME/SERVER_PORT strings for the environ, a name for logs,\n"
"  whether a final stop (stop(close_listeners=True)) shuts it (default\n"
"  True; False for systemd's sockets), whether HTTP connections may\n"
"  start with a PROXY protocol v1/v2 header (default False), and this\n"
"  listener's socket_timeout and keepalive_timeout (default: the\n"
"  server's; the http option's http-timeout and http-keepalive).\n"
"logger: callable(level: int, message: str, exc: BaseException | None)\n"
"  with logging's level numbers; access log lines are written to\n"
"  access_log_fd directly (-1: off, uWSGI's disable-logging).\n"
"buffer_size: largest HTTP head / uwsgi vars block, bytes (buffer-size).\n"
"max_fields, limit_request_line, limit_request_field_size: HTTP header\n"
"  fields (431), request-line bytes (414), field-line bytes (431); 0: only\n"
"  buffer_size bounds a line (limit-request-fields, -line, -field-size).\n"
"  uwsgi vars: max_fields + 64 (nginx's own vars beside the headers).\n"
"header_timeout: seconds for a whole request head from its first byte;\n"
"body_timeout: seconds for a body, plus one per body_min_rate bytes\n"
"  received: 408 past either; 0 disables (header-timeout, body-timeout,\n"
"  body-min-rate).\n"
"limit_post: largest request body, bytes, 0 unlimited (limit-post): 413.\n"
"post_buffering: bodies above this many bytes spill to a temporary file.\n"
"socket_timeout: seconds a client may stall sending or receiving.\n"
"keepalive_timeout: seconds an idle keep-alive connection is kept.\n"
"errors: the wsgi.errors stream (default sys.stderr).\n"
"max_requests / reload_on_rss (bytes): stop gracefully (within stop_mercy\n"
"  seconds) after that many requests / above that RSS; stop_reason says;\n"
"  not before min_lifetime seconds (min-worker-lifetime).\n"
"scoreboard: a writable buffer of SLOT_SIZE-byte slots (shared memory);\n"
"  serve_forever(core=i) writes slot i.\n"
"log_format: uwsgipy.log.compile_log_format()'s tuple (uWSGI log-format);\n"
"log_filter: LOG_4XX | LOG_5XX to log only those (log-4xx, log-5xx).\n"
"add_headers: bytes of 'Name: value\\r\\n' lines added to every response\n"
"  head the app makes (uWSGI add-header; validated by the caller).\n"
"write_exception: write() raises OSError once the client is gone (False:\n"
"  uWSGI's disable-write-exception).");

static int
server_init(upy_server *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"app", "listeners", "logger", "buffer_size",
                             "max_fields", "limit_post", "post_buffering",
                             "socket_timeout", "keepalive_timeout",
                             "access_log_fd", "multithread", "multiprocess",
                             "errors", "tmpdir", "max_requests",
                             "reload_on_rss", "stop_mercy", "scoreboard",
                             "log_format", "log_filter", "log_xff",
                             "worker_id", "write_exception",
                             "limit_request_line", "limit_request_field_size",
                             "header_timeout", "body_timeout",
                             "body_min_rate", "add_headers", "min_lifetime",
                             NULL};
    PyObject *app, *listeners, *logger = NULL, *errors = Py_None, *tmpdir = Py_None;
    PyObject *seq = NULL, *scoreboard = Py_None, *log_format = Py_None;
    PyObject *add_headers = NULL;
    int log_filter = 0, log_xff = 0, worker_id = 0, write_exception = 1;
    unsigned long long max_requests = 0, reload_on_rss = 0;
    double stop_mercy = 60.0;
    Py_ssize_t buffer_size = 65535, max_fields = 100;
    Py_ssize_t limit_request_line = 8190, limit_request_field_size = 8190;
    double header_timeout = 30.0, body_timeout = 30.0, body_min_rate = 1024.0;
    double min_lifetime = 0;
    unsigned long long limit_post = 0, post_buffering = 1 << 20;
    double socket_timeout = 4.0, keepalive_timeout = 5.0;
    int access_log_fd = -1, multithread = 0, multiprocess = 0;
    upy_state *st;

    if (self->listeners != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Server already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$OnnKKddippOOKKdOOipipnndddSd",
                                     kwlist,
                                     &app, &listeners, &logger, &buffer_size,
                                     &max_fields, &limit_post, &post_buffering,
                                     &socket_timeout, &keepalive_timeout,
                                     &access_log_fd, &multithread,
                                     &multiprocess, &errors, &tmpdir,
                                     &max_requests, &reload_on_rss,
                                     &stop_mercy, &scoreboard, &log_format,
                                     &log_filter, &log_xff, &worker_id,
                                     &write_exception, &limit_request_line,
                                     &limit_request_field_size,
                                     &header_timeout, &body_timeout,
                                     &body_min_rate, &add_headers,
                                     &min_lifetime)) {
        return -1;
    }
    if (!PyCallable_Check(app) || logger == NULL || !PyCallable_Check(logger)) {
        PyErr_SetString(PyExc_TypeError, "app and logger must be callable");
        return -1;
    }
    if (buffer_size < 64 || buffer_size > 1 << 24 || max_fields < 1 ||
        max_fields > 65535 || socket_timeout <= 0 || keepalive_timeout < 0 ||
        limit_request_line < 0 || limit_request_field_size < 0 ||
        header_timeout < 0 || body_timeout < 0 || body_min_rate < 0) {
        PyErr_SetString(PyExc_ValueError, "limit out of range");
        return -1;
    }
    st = upy_get_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return -1;
    }
    if (errors == Py_None) {
        errors = PySys_GetObject("stderr"); /* borrowed */
        if (errors == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "no sys.stderr");
            return -1;
        }
    }
    self->st = st;
    self->app = Py_NewRef(app);
    self->logger = Py_NewRef(logger);
    self->tmpdir = Py_NewRef(tmpdir);
    self->limits.max_head = (size_t)buffer_size;
    self->limits.max_fields = (size_t)max_fields;
    self->limits.limit_post = limit_post;
    self->limits.max_request_line = (size_t)limit_request_line;
    self->limits.max_field_size = (size_t)limit_request_field_size;
    /* uwsgi vars: nginx sends each header field as a var plus its own CGI
       vars (uwsgi_params has 15; room for 64), so a request nginx passes
       with limit-request-fields headers is not refused behind it either. */
    self->uwsgi_limits = self->limits;
    self->uwsgi_limits.max_fields = (size_t)max_fields + UPY_UWSGI_EXTRA_VARS;
    if (add_headers != NULL && PyBytes_GET_SIZE(add_headers) > 0) {
        self->add_headers = Py_NewRef(add_headers);
    }
    self->min_lifetime = min_lifetime;
    self->created = upy_now();
    self->header_timeout = header_timeout;
    self->body_timeout = body_timeout;
    self->body_min_rate = body_min_rate;
    self->post_buffering = post_buffering;
    self->socket_timeout = socket_timeout;
    self->keepalive_timeout = keepalive_timeout;
    self->access_log_fd = access_log_fd;
    self->shared_listeners = multithread || multiprocess;
    self->max_requests = max_requests;
    self->log_filter = log_filter;
    self->log_xff = log_xff;
    self->worker_id = worker_id;
    self->write_exception = write_exception;
    if (log_format != Py_None) {
        if (!PyTuple_Check(log_format)) {
            PyErr_SetString(PyExc_TypeError,
                            "log_format must be a tuple of str and int");
            return -1;
        }
        self->log_format = Py_NewRef(log_format);
    }
    self->reload_on_rss = reload_on_rss;
    self->stop_mercy = stop_mercy;
    if (scoreboard != Py_None &&
        PyObject_GetBuffer(scoreboard, &self->scoreboard, PyBUF_WRITABLE) < 0) {
        return -1;
    }
    self->var_keys = PyMem_Calloc(UPY_KEY_CACHE_SIZE, sizeof(upy_key_entry));
    self->hdr_keys = PyMem_Calloc(UPY_KEY_CACHE_SIZE, sizeof(upy_key_entry));
    if (self->var_keys == NULL || self->hdr_keys == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (upy_wake_open(&self->wake_rfd, &self->wake_wfd) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }

    seq = PySequence_Fast(listeners, "listeners must be a sequence");
    if (seq == NULL) {
        return -1;
    }
    self->nlisteners = PySequence_Fast_GET_SIZE(seq);
    self->listeners = PyMem_Calloc((size_t)self->nlisteners + 1,
                                   sizeof(upy_listener));
    if (self->listeners == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->nlisteners; i++) {
        upy_listener *l = &self->listeners[i];
        int fd, proto, close_on_stop = 1, proxy_protocol = 0;
        double lst_socket_timeout = -1, lst_keepalive_timeout = -1;
        const char *sname, *sport;
        PyObject *name;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iissU|ppdd",
                              &fd, &proto, &sname, &sport, &name,
                              &close_on_stop, &proxy_protocol,
                              &lst_socket_timeout, &lst_keepalive_timeout)) {
            Py_DECREF(seq);
            return -1;
        }
        l->ev = UPY_EV_LISTENER;
        l->fd = fd;
        l->proto = proto == UPY_PROTO_UWSGI ? UPY_PROTO_UWSGI : UPY_PROTO_HTTP;
        l->name = Py_NewRef(name);
        /* For C log lines: valid UTF-8 always (a unix path that is not
           UTF-8 arrives with lone surrogates, which PyUnicode_AsUTF8
           refuses, leaving an exception that would end the loop). */
        l->name_bytes = PyUnicode_AsEncodedString(name, "utf-8",
                                                  "backslashreplace");
        if (l->name_bytes == NULL) {
            Py_DECREF(seq);
            return -1;
        }
        l->name_c = PyBytes_AS_STRING(l->name_bytes);
        l->close_on_stop = close_on_stop;
        l->socket_timeout = lst_socket_timeout > 0 ? lst_socket_timeout
                                                   : socket_timeout;
        l->keepalive_timeout = lst_keepalive_timeout >= 0
                                   ? lst_keepalive_timeout
                                   : keepalive_timeout;
        l->proxy_protocol = proxy_protocol && l->proto == UPY_PROTO_HTTP;
        l->base_environ = upy_build_base_environ(st, l, sname, sport,
                                                 multithread, multiprocess,
                                                 errors);
        if (l->base_environ == NULL) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

PyDoc_STRVAR(serve_forever_doc,
"serve_forever(wakeup_fd=-1)\n--\n\n"
"Run one I/O loop in the calling thread until stop() is called (or a\n"
"signal handler raises).  wakeup_fd: the read end of the pipe given to\n"
"signal.set_wakeup_fd(), so signals interrupt the wait at once.\n"
"Returns None after a graceful stop, once in-flight requests are done.");

static PyObject *
server_serve_forever(upy_server *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"wakeup_fd", "core", NULL};
    int wakeup_fd = -1, core = 0;
    upy_loop loop;
    upy_ev_kind wake_tag = UPY_EV_WAKE;
    upy_event events[UPY_MAX_EVENTS];
    double last_sweep;
    PyObject *result = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|ii", kwlist, &wakeup_fd,
                                     &core)) {
        return NULL;
    }
    if (self->listeners == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Server not initialised");
        return NULL;
    }
    memset(&loop, 0, sizeof loop);
    if (self->scoreboard.buf != NULL) {
        if (core < 0 || (size_t)(core + 1) * sizeof(upy_slot) >
                            (size_t)self->scoreboard.len) {
            PyErr_Format(PyExc_ValueError,
                         "core %d is outside the scoreboard", core);
            return NULL;
        }
        loop.slot = (upy_slot *)self->scoreboard.buf + core;
        loop.slot->pid = (uint64_t)getpid();
    }
    loop.srv = self;
    loop.st = self->st;
    if (upy_poller_init(&loop.poller) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    loop.fields_cap = self->uwsgi_limits.max_fields > self->limits.max_fields
                          ? self->uwsgi_limits.max_fields
                          : self->limits.max_fields;
    loop.fields = calloc(loop.fields_cap, sizeof(upy_field));
    loop.scratch_cap = self->limits.max_head + 16;
    loop.scratch = malloc(loop.scratch_cap);
    loop.out_cap = 4096;
    loop.out = malloc(loop.out_cap);
    if (loop.fields == NULL || loop.scratch == NULL || loop.out == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < self->nlisteners; i++) {
        if (upy_poller_add(&loop.poller, self->listeners[i].fd, UPY_POLL_IN,
                           &self->listeners[i], 1) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto error;
        }
    }
    loop.listening = 1;
    loop.wake_watched = 1;
    if (upy_poller_add(&loop.poller, self->wake_rfd, UPY_POLL_IN, &wake_tag,
                       0) < 0 ||
        (wakeup_fd >= 0 &&
         upy_poller_add(&loop.poller, wakeup_fd, UPY_POLL_IN, &wake_tag,
                        0) < 0)) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto error;
    }
    self->active_loops++;
    last_sweep = upy_now();

    for (;;) {
        int n, timeout_ms = 1000;
        double now;
        if (self->stopping) {
            loop_stop_listening(&loop);
            if (loop.nconns == 0 || self->stopping > 1 ||
                upy_now() > self->stop_deadline) {
                break;
            }
            timeout_ms = 100;
        }
        else if (loop.accept_paused) {
            double wait = loop.accept_resume_at - upy_now();
            if (wait <= 0) {
                loop.accept_paused = 0;
                loop_listen(&loop, 1);
            }
            else if (wait * 1000 < timeout_ms) {
                timeout_ms = (int)(wait * 1000) + 1;
            }
        }
        Py_BEGIN_ALLOW_THREADS
        n = upy_poller_wait(&loop.poller, events, UPY_MAX_EVENTS, timeout_ms);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto loop_error;
        }
        for (int i = 0; i < n; i++) {
            upy_ev_kind kind = *(upy_ev_kind *)events[i].ptr;
            if (kind == UPY_EV_CONN) {
                upy_conn *c = (upy_conn *)events[i].ptr;
                if (c->state == UPY_CONN_WRITE)
                    conn_writable(&loop, c);
                else
                    (void)conn_readable(&loop, c);
            }
            else if (kind == UPY_EV_LISTENER) {
                upy_listener *l = (upy_listener *)events[i].ptr;
                if (events[i].events & UPY_POLL_ERR) {
                    /* a listener hangs up only once shut (POLLNVAL: closed) */
                    l->shut = 1;
                    (void)upy_poller_del(&loop.poller, l->fd);
                }
                else if (!self->stopping && loop.listening)
                    listener_ready(&loop, l);
            }
            else {
                char drain[64];
                if (wakeup_fd >= 0)
                    while (read(wakeup_fd, drain, sizeof drain) > 0) {
                    }
                /* the wake fd stays readable while stopping: every
                   loop must see it */
            }
            if (PyErr_Occurred()) {
                /* A bug in the glue: never swallow it. */
                goto loop_error;
            }
        }
        if (PyErr_CheckSignals() < 0) {
            goto loop_error;
        }
        now = upy_now();
        if (now - last_sweep >= 1.0) {
            sweep_timeouts(&loop, now);
            last_sweep = now;
        }
    }
    result = Py_NewRef(Py_None);
loop_error:
    self->active_loops--;
error:
    {
        /* Closing connections runs Python (the close() of responses in
           flight, the logger): keep the exception this call raises. */
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        loop_free(&loop);
        PyErr_Restore(et, ev, etb);
    }
    return result;
}

PyDoc_STRVAR(stop_doc,
"stop(graceful=True, timeout=60.0, close_listeners=False)\n--\n\n"
"Ask every loop to stop; safe from signal handlers and other threads.\n"
"Graceful: stop accepting, close idle connections, finish requests in\n"
"flight for at most timeout seconds.  Otherwise stop at once.\n"
"close_listeners (a final stop, not a reload): first accept and serve the\n"
"connections already queued on the listeners, then shut them (those\n"
"given close_on_stop) so later connects are refused at once.");

static PyObject *
server_stop(upy_server *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"graceful", "timeout", "close_listeners", NULL};
    int graceful = 1, close_listeners = 0;
    double timeout = 60.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pdp", kwlist, &graceful,
                                     &timeout, &close_listeners)) {
        return NULL;
    }
    if (close_listeners) {
        self->close_listeners = 1;
    }
    if (graceful) {
        if (self->stopping == 0) {
            self->stopping = 1;
            self->stop_deadline = upy_now() + timeout;
        }
    }
    else {
        self->stopping = 2;
    }
    if (self->wake_wfd >= 0) {
        upy_wake_signal(self->wake_wfd);
    }
    Py_RETURN_NONE;
}

static PyObject *
server_get_requests(upy_server *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->requests);
}

static PyObject *
server_get_stop_reason(upy_server *self, void *closure)
{
    if (self->stop_reason == NULL)
        Py_RETURN_NONE;
    return PyUnicode_FromString(self->stop_reason);
}

static PyObject *
server_get_stopping(upy_server *self, void *closure)
{
    return PyBool_FromLong(self->stopping != 0);
}

static int
server_traverse(upy_server *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->app);
    Py_VISIT(self->logger);
    Py_VISIT(self->tmpdir);
    Py_VISIT(self->log_format);
    Py_VISIT(self->add_headers);
    if (self->listeners != NULL) {
        for (Py_ssize_t i = 0; i < self->nlisteners; i++) {
            Py_VISIT(self->listeners[i].base_environ);
        }
    }
    return 0;
}

static int
server_clear(upy_server *self)
{
    Py_CLEAR(self->app);
    Py_CLEAR(self->logger);
    return 0;
}

static void
server_dealloc(upy_server *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    server_clear(self);
    Py_CLEAR(self->tmpdir);
    Py_CLEAR(self->log_format);
    Py_CLEAR(self->add_headers);
    upy_key_cache_free(self->var_keys);
    upy_key_cache_free(self->hdr_keys);
    if (self->scoreboard.buf != NULL) {
        PyBuffer_Release(&self->scoreboard);
    }
    if (self->listeners != NULL) {
        for (Py_ssize_t i = 0; i < self->nlisteners; i++) {
            Py_CLEAR(self->listeners[i].base_environ);
            Py_CLEAR(self->listeners[i].name);
            Py_CLEAR(self->listeners[i].name_bytes);
        }
        PyMem_Free(self->listeners);
    }
    upy_wake_close(self->wake_rfd, self->wake_wfd);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
server_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    upy_server *self = (upy_server *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->wake_rfd = self->wake_wfd = -1;
        self->access_log_fd = -1;
    }
    return (PyObject *)self;
}

static PyMethodDef server_methods[] = {
    {"serve_forever", (PyCFunction)(void (*)(void))server_serve_forever,
     METH_VARARGS | METH_KEYWORDS, serve_forever_doc},
    {"stop", (PyCFunction)(void (*)(void))server_stop,
     METH_VARARGS | METH_KEYWORDS, stop_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef server_getset[] = {
    {"requests", (getter)server_get_requests, NULL,
     "Requests served by all loops of this server (int).", NULL},
    {"stop_reason", (getter)server_get_stop_reason, NULL,
     "Why the server stopped itself (max-requests, reload-on-rss), or None.",
     NULL},
    {"stopping", (getter)server_get_stopping, NULL,
     "True once stop() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot server_slots[] = {
    {Py_tp_doc, (void *)server_doc},
    {Py_tp_new, server_new},
    {Py_tp_init, server_init},
    {Py_tp_dealloc, server_dealloc},
    {Py_tp_traverse, server_traverse},
    {Py_tp_clear, server_clear},
    {Py_tp_methods, server_methods},
    {Py_tp_getset, server_getset},
    {0, NULL},
};

PyType_Spec upy_server_spec = {
    .name = "uwsgipy._core.Server",
    .basicsize = sizeof(upy_server),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = server_slots,
};
