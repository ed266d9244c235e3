/*
 * upy_server.c - the Server type: one I/O loop per worker and the app
 * runners it hands complete requests to.
 *
 * Python binds the listening sockets and hands their fds to Server().  The
 * loop (upy_loop, one per Server) owns the listeners and every connection:
 * it accepts, reads request heads (HTTP or uwsgi packet) and bodies (into
 * memory or, past post-buffering, an unlinked temporary file), keeps
 * connections alive, enforces the timeouts and writes output a response
 * parked on a full socket.  A request whose head and body are complete goes
 * to an app runner, so a slow client never holds an app and a slow app
 * never holds another connection:
 *
 *   inline    the loop thread calls the app itself (threads = 1): no
 *             hand-off at all.  The GIL is held except while waiting.
 *   threads   a job queue feeds a pool of app threads (threads = N), each
 *             calling app_thread(core).  The loop thread runs without the
 *             GIL; it takes it only to log, and to run signal handlers.
 *   external  another event loop (gevent) drives the loop: fileno() is
 *             pollable, run_once() is one non-blocking step returning the
 *             Request objects to run, each in its own greenlet.
 *
 * A runner calls the app and sends what the socket takes (upy_response.c),
 * then gives the connection back on the done queue (signalling done_fd):
 * the loop then parks the rest of the output, or goes on to the next
 * request.  The poller (upy_poll.c: epoll on Linux, poll(2) elsewhere) is
 * only ever touched by the loop thread.
 */
#include "upy_core.h"
#include "upy_proto.h"

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

    PyGILState_STATE gil;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The loop of the threads runner logs without holding the GIL. */
    gil = PyGILState_Ensure();
    /* Logging must not clobber an exception being handled. */
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    r = PyObject_CallFunction(srv->logger, "isO", level, msg, Py_None);
    if (r == NULL) {
        PyErr_WriteUnraisable(srv->logger);
    }
    Py_XDECREF(r);
    PyErr_Restore(exc_type, exc_value, exc_tb);
    PyGILState_Release(gil);
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

/* Send the loop's own small responses (errors, 100 Continue) without
   ever waiting: the loop must not stall for one client that stopped
   reading.  Returns 0 when all was sent, 1 when nothing was (the socket
   is full: a pipelined request right after a large response), -1 when
   part was, or the connection is broken. */
int
upy_send_small(int fd, struct iovec *iov, int iovcnt)
{
    struct msghdr msg;
    size_t want = 0;
    ssize_t n;
    for (int i = 0; i < iovcnt; i++) {
        want += iov[i].iov_len;
    }
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)iovcnt;
    do {
        n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -1;
    }
    return (size_t)n == want ? 0 : -1;
}

#define send_small upy_send_small

static int
send_text(int fd, const char *text)
{
    struct iovec iov = {(void *)text, strlen(text)};
    return send_small(fd, &iov, 1);
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
    if (c->asgi != NULL) {
        upy_asgi_detach(c);  /* logs from the head still in c->buf */
    }
    if (c->asgi_park != NULL) {
        upy_asgi_unpark(c);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    loop->nconns--;
    if (c->resp.is_static) {
        upy_static_abort(UPY_LOOP_CORE(loop->srv), c); /* no Python */
    }
    if (c->resp.active || c->pend.hold != NULL) {
        /* Only at the loop's end, or with the inline runner: otherwise a
           runner finishes a response (upy_response_abort() runs the app's
           close() and the access log). */
        PyGILState_STATE gil = PyGILState_Ensure();
        if (c->resp.active) {
            upy_response_abort(&loop->srv->cores[0], c);
        }
        upy_pending_free(&c->pend);
        PyGILState_Release(gil);
    }
    if (c->registered) {
        upy_poller_forget(&loop->poller, c->fd);
    }
    close(c->fd);
    body_reset(c);
    upy_pending_free(&c->pend);
    free(c->fcgi.out);
    c->fcgi.out = NULL;
    c->fcgi.out_cap = 0;
    c->len = 0;
    buf_release(loop, c);
    if (loop->accept_paused) {
        loop->accept_resume_at = 0;  /* an fd is free: accept again */
    }
    /* Later events of this turn may still point at c (taking the done
       queue closes connections other than the event's own): it is
       reused or freed only at the end of the turn (loop_reap()). */
    c->state = UPY_CONN_CLOSED;
    c->next = loop->closed;
    loop->closed = c;
}

/* The end of a turn: the connections closed in it become reusable. */
static void
loop_reap(upy_loop *loop)
{
    while (loop->closed != NULL) {
        upy_conn *c = loop->closed;
        loop->closed = c->next;
        if (loop->nfree < UPY_FREE_CONNS) {
            /* Keep the struct for the next connection. */
            c->next = loop->free_conns;
            loop->free_conns = c;
            loop->nfree++;
        }
        else {
            free(c);
        }
    }
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
upy_send_error_text(upy_conn *c, const char *status_prefix, int status,
                    const char *reason)
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
                    "%s%s\r\nContent-Type: text/plain\r\n"
                    "Content-Length: %d\r\nConnection: close\r\n\r\n",
                    status_prefix, status_line(status), blen);
    iov[0].iov_base = head;
    iov[0].iov_len = (size_t)hlen;
    iov[1].iov_base = body;
    iov[1].iov_len = (size_t)blen;
    (void)send_small(c->fd, iov, 2);
}

/* The error answer in the form of c's protocol. */
void
upy_send_error(upy_server *srv, upy_conn *c, int status, const char *reason)
{
    UPY_CONN_PROTO(c)->send_error(srv, c, status, reason);
}

/* Reject the request on c with status and reason, log it (naming the
   protocol when it is not HTTP), answer it, and linger. */
void
upy_conn_reject(upy_loop *loop, upy_conn *c, int status, const char *reason)
{
    upy_server *srv = loop->srv;
    const upy_protocol *pr = UPY_CONN_PROTO(c);
    upy_log(srv, 30, "%s%s%s from %s on %s: %s",
            pr == &upy_proto_http ? "" : pr->name,
            pr == &upy_proto_http ? "" : ": ", status_line(status),
            c->addr_text, c->lst->name_c, reason);
    pr->send_error(srv, c, status, reason);
    conn_linger(loop, c);
}
#define conn_reject upy_conn_reject

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
    if (need > SIZE_MAX / 4 - c->len) {
        return -1;  /* cap would overflow */
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
    const char *dir = srv->tmpdir_c;
    int fd;
    if (dir == NULL) {
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
make_input(upy_state *st, upy_conn *c)
{
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

/* Parse the head at c->buf[0..len) with the listener's protocol.  Returns
   the head length, INCOMPLETE, or ERROR (after rejecting the request). */
static ssize_t
parse_head(upy_loop *loop, upy_conn *c, upy_request *req, size_t len)
{
    memset(req, 0, sizeof *req);
    req->fields = loop->fields;
    req->fields_cap = loop->fields_cap;
    ssize_t rc = UPY_CONN_PROTO(c)->parse_head(loop, c, req, len);
    req->proto = c->lst->proto; /* the entry, not only the decoder (nph) */
    return rc;
}

static void
self_stop(upy_server *srv, const char *reason)
{
    /* The loop thread (static files, no GIL) and app threads may both get
       here: one wins; the deadline and reason are stored before stopping
       is published. */
    int expect = 0;
    if (srv->stopping ||
        !__atomic_compare_exchange_n(&srv->stop_claimed, &expect, 1, 0,
                                     __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return;
    srv->stop_deadline = upy_now() + srv->stop_mercy;
    srv->stop_reason = reason;
    __atomic_store_n(&srv->stopping, 1, __ATOMIC_RELEASE);
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

/* Watch c for events (UPY_POLL_IN or UPY_POLL_OUT), registering it if
   needed.  Returns 0, or -1 (the caller closes c). */
static int
conn_watch(upy_loop *loop, upy_conn *c, uint32_t events)
{
    if (!c->registered) {
        if (upy_poller_add(&loop->poller, c->fd, events, c, 0) < 0) {
            return -1;
        }
        c->registered = 1;
        c->events = events;
        return 0;
    }
    if (c->events == events) {
        return 0;
    }
    if (upy_poller_mod(&loop->poller, c->fd, events, c) < 0) {
        return -1;
    }
    c->events = events;
    return 0;
}

/* upy_core.h: for upy_asgi.c */
int
upy_conn_watch(upy_loop *loop, upy_conn *c, uint32_t events)
{
    /* events 0 keeps c registered: the poller still reports a hang-up or an
       error (a client that reset while nothing was being read) */
    return conn_watch(loop, c, events);
}

void
upy_conn_close(upy_loop *loop, upy_conn *c)
{
    if (c->state != UPY_CONN_CLOSED) {
        conn_close(loop, c);
    }
}

void
upy_conn_linger(upy_loop *loop, upy_conn *c)
{
    conn_linger(loop, c);
    if (conn_watch(loop, c, UPY_POLL_IN) < 0) {
        conn_close(loop, c);
    }
}

int
upy_conn_reserve(upy_loop *loop, upy_conn *c, size_t need)
{
    return buf_reserve(loop, c, need);
}

/* ------------------------------------------------------------------ */
/* App runners: the part of a request that runs Python (GIL held)       */
/* ------------------------------------------------------------------ */

/* The scoreboard: core co starts the request req (uWSGI's per-core
   request info: harakiri and the stats server read it). */
static void
slot_begin(upy_core *co, const upy_request *req, double started)
{
    upy_slot *sl = co->slot;
    size_t ml, ul;
    if (sl == NULL) {
        return;
    }
    ml = req->method.len < sizeof sl->method - 1 ? req->method.len
                                                 : sizeof sl->method - 1;
    ul = req->target.len < sizeof sl->uri - 1 ? req->target.len
                                              : sizeof sl->uri - 1;
    memcpy(sl->method, req->method.p, ml);
    sl->method[ml] = '\0';
    memcpy(sl->uri, req->target.p, ul);
    sl->uri[ul] = '\0';
    sl->request_started = started;
}

/* A runner's turn with c ended with rc: parked (UPY_RESP_BLOCKED), the core
   is free; finished, count it on core co and the server, then check
   max-requests and reload-on-rss. */
static void
run_end(upy_core *co, upy_conn *c, int rc, double started)
{
    upy_server *srv = co->srv;
    double now;
    if (rc == UPY_RESP_BLOCKED) {
        /* parked: the core is free until the socket takes more */
        if (co->slot != NULL)
            co->slot->request_started = 0;
        return;
    }
    now = upy_now();
    c->last_io = now; /* conn_returned() counts the keep-alive from it */
    /* atomic: the loop thread counts static files without the GIL */
    __atomic_fetch_add(&srv->requests, 1, __ATOMIC_RELAXED);
    c->requests++;
    if (co->slot != NULL) {
        double us = (now - started) * 1e6;
        upy_slot *sl = co->slot;
        __atomic_fetch_add(&sl->requests, 1, __ATOMIC_RELAXED);
        sl->avg_rt = sl->requests == 1 ? us : sl->avg_rt * 0.9 + us * 0.1;
        sl->running_us += (uint64_t)us;
        upy_slot_count(sl, c->resp.status_code, us);
        sl->request_started = 0;
    }
    check_limits(srv, now);
}

/* upy_core.h.  It was valid when the loop parsed it. */
/* Decode c->buf[0..head_len) again into req, its fields in fields[0..cap):
   0, or -1. */
static int
head_again(upy_server *srv, upy_conn *c, upy_request *req, upy_field *fields,
           size_t cap)
{
    int rc;
    memset(req, 0, sizeof *req);
    req->fields = fields;
    req->fields_cap = cap;
    rc = UPY_CONN_PROTO(c)->reparse(srv, c, req);
    req->proto = c->lst->proto; /* the entry, not only the decoder (nph) */
    return rc;
}

int
upy_reparse(upy_core *co, upy_conn *c, upy_request *req)
{
    return head_again(co->srv, c, req, co->fields, co->fields_cap);
}

/* Call the app for the request on c, on core co (GIL held).  req: the head
   as the loop parsed it (inline runner), or NULL to parse it again.
   Returns UPY_RESP_KEEP, UPY_RESP_CLOSE or UPY_RESP_BLOCKED (the rest of
   the response waits for the socket). */
static int
run_start(upy_core *co, upy_conn *c, const upy_request *req)
{
    upy_server *srv = co->srv;
    upy_request again;
    PyObject *input = NULL, *environ = NULL;
    double started = upy_now();
    int rc = UPY_RESP_CLOSE;

    if (req == NULL) {
        if (upy_reparse(co, c, &again) < 0) {
            upy_log(srv, 40, "the request head from %s changed after it "
                    "was parsed (a bug)", c->addr_text);
            upy_send_error(srv, c, 500, "internal error");
            return UPY_RESP_CLOSE;
        }
        req = &again;
    }
    slot_begin(co, req, started);
    input = make_input(co->st, c);
    if (input == NULL) {
        upy_log_exception(srv, "cannot create wsgi.input");
        upy_send_error(srv, c, 500, "internal error");
        goto done;
    }
    environ = upy_build_environ(co, c, req, input);
    if (environ == NULL) {
        upy_log_exception(srv, "cannot build the environ");
        upy_send_error(srv, c, 500, "internal error");
        goto done;
    }
    rc = upy_response_start(co, c, req, environ, input, started);
done:
    Py_XDECREF(environ);
    Py_XDECREF(input);
    run_end(co, c, rc, started);
    return rc;
}

/* Go on with the response parked on c, on core co (GIL held). */
static int
run_resume(upy_core *co, upy_conn *c)
{
    double started = c->resp.started;
    int rc;
    if (co->slot != NULL) {
        co->slot->method[0] = co->slot->uri[0] = '\0';
        co->slot->request_started = upy_now();
    }
    rc = upy_response_resume(co, c);
    run_end(co, c, rc, started);
    return rc;
}

/* A runner's turn with c: start its request, or go on with its response. */
static void
run_job(upy_core *co, upy_conn *c)
{
    co->busy = 1;
    c->job_rc = c->resp.active ? run_resume(co, c) : run_start(co, c, NULL);
    co->busy = 0;
}

/* A connection whose loop ended while a runner had it: the runner closes
   it (GIL held). */
static void
orphan_free(upy_core *co, upy_conn *c)
{
    if (c->resp.active) {
        upy_response_abort(co, c);
    }
    upy_pending_free(&c->pend);
    close(c->fd);
    body_reset(c);
    free(c->buf);
    free(c);
}

/* A runner is done with c (GIL held): back to the loop on the done queue,
   signalling done_fd once per batch the loop has not taken yet. */
static void
give_back(upy_loop *loop, upy_core *co, upy_conn *c)
{
    int wake = 0, orphan;
    pthread_mutex_lock(&loop->mu);
    orphan = loop->ended;
    if (!orphan) {
        c->qnext = NULL;
        if (loop->done_tail != NULL)
            loop->done_tail->qnext = c;
        else
            loop->done = c;
        loop->done_tail = c;
        if (!loop->done_signalled) {
            loop->done_signalled = 1;
            wake = 1;
        }
    }
    pthread_mutex_unlock(&loop->mu);
    if (wake) {
        upy_wake_signal(loop->done_wfd);
    }
    if (orphan) {
        orphan_free(co, c);
    }
}

/* ------------------------------------------------------------------ */
/* The hand-off, loop side                                             */
/* ------------------------------------------------------------------ */

static PyObject *request_obj_new(upy_server *srv, upy_conn *c);

/* Give c (state APP from now on) to the runner.  Returns 0, or -1 when
   it could not be queued (c was closed). */
static int
submit(upy_loop *loop, upy_conn *c)
{
    upy_server *srv = loop->srv;
    c->state = UPY_CONN_APP;
    if (srv->runner == UPY_RUN_THREADS) {
        pthread_mutex_lock(&loop->mu);
        c->qnext = NULL;
        if (loop->jobs_tail != NULL)
            loop->jobs_tail->qnext = c;
        else
            loop->jobs = c;
        loop->jobs_tail = c;
        if (loop->nidle > 0) {
            pthread_cond_signal(&loop->cv);
        }
        pthread_mutex_unlock(&loop->mu);
        return 0;
    }
    else {
        /* external: run_once() returns it (the GIL is held) */
        PyObject *r = request_obj_new(srv, c);
        if (r == NULL || (loop->ready == NULL &&
                          (loop->ready = PyList_New(0)) == NULL) ||
            PyList_Append(loop->ready, r) < 0) {
            upy_log_exception(srv, "cannot hand a request over");
            if (r != NULL) {
                ((upy_request_obj *)r)->conn = NULL;
                Py_DECREF(r);
            }
            c->state = UPY_CONN_HEAD;
            conn_close(loop, c);
            return -1;
        }
        Py_DECREF(r);
        return 0;
    }
}

/* A runner's turn with c ended with rc: park the response until the socket
   is writable, or end the request and keep the connection for the next
   one (pipelined bytes are parsed by the caller: conn_process()) or close
   it.  Returns 0, or -1 when c was closed. */
static int
conn_returned(upy_loop *loop, upy_conn *c, int rc)
{
    upy_server *srv = loop->srv;
    /* run_end() noted when the response ended */
    double now = rc == UPY_RESP_BLOCKED ? upy_now() : c->last_io;
    if (rc == UPY_RESP_BLOCKED) {
        c->state = UPY_CONN_WRITE;
        c->deadline = now + c->lst->socket_timeout;
        if (conn_watch(loop, c, UPY_POLL_OUT) < 0) {
            conn_close(loop, c);
            return -1;
        }
        return 0;
    }
    body_reset(c);
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
    if (conn_watch(loop, c, UPY_POLL_IN) < 0) {
        conn_close(loop, c);
        return -1;
    }
    return 0;
}

void
upy_count_request(upy_loop *loop, upy_conn *c, int status, double started)
{
    c->resp.status_code = status;
    run_end(&loop->srv->cores[0], c, UPY_RESP_KEEP, started);
}

void
upy_conn_finished(upy_loop *loop, upy_conn *c, int rc, double started)
{
    run_end(&loop->srv->cores[0], c, rc, started);
    c->state = UPY_CONN_HEAD;
    if (conn_returned(loop, c, rc) == 0 && c->state == UPY_CONN_HEAD) {
        (void)conn_process(loop, c); /* pipelined requests */
    }
}

/* A static response's turn ended with rc: count it when it is over (as
   run_end() does for the app's). */
static void
static_ended(upy_loop *loop, upy_conn *c, int rc)
{
    upy_server *srv = loop->srv;
    double now;
    if (rc == UPY_RESP_BLOCKED) {
        return;
    }
    now = upy_now();
    c->last_io = now;
    __atomic_fetch_add(&srv->requests, 1, __ATOMIC_RELAXED);
    c->requests++;
    check_limits(srv, now);
}

/* The request on c is complete: the inline runner calls the app now, the
   others get c queued.  Returns 0 (c is kept: state HEAD for the next
   request, WRITE, or APP), -1 when c was closed. */
static int
dispatch(upy_loop *loop, upy_conn *c, upy_request *req)
{
    upy_server *srv = loop->srv;
    if ((srv->probe_live_len > 0 || srv->probe_ready_len > 0) &&
        UPY_CONN_PROTO(c)->probes) {
        /* liveness / readiness probes: answered here, not logged or counted
           (in the HTTP form: on FastCGI and SCGI the app answers them) */
        upy_probe_reply pr;
        size_t waiting = 0;
        if (srv->ready_max_queue > 0 && srv->runner == UPY_RUN_THREADS &&
            upy_probe_is_readiness(srv, req)) {
            /* the requests queued for the app threads, up to the limit */
            pthread_mutex_lock(&loop->mu);
            for (upy_conn *q = loop->jobs; q != NULL && waiting < srv->ready_max_queue;
                 q = q->qnext)
                waiting++;
            pthread_mutex_unlock(&loop->mu);
        }
        if (upy_probe_answer(srv, req, waiting, &pr)) {
            struct iovec iov = {(void *)pr.text, req->is_head ? pr.head_len : pr.len};
            c->last_io = upy_now();
            if (send_small(c->fd, &iov, 1) != 0) {
                conn_close(loop, c);
                return -1;
            }
            return conn_returned(loop, c, UPY_RESP_KEEP);
        }
    }
    if (srv->static_cfg != NULL) {
        /* static-map: served here, on the loop thread, without Python */
        int rc = upy_static_serve(UPY_LOOP_CORE(srv), c, req);
        if (rc == UPY_STATIC_REJECT) {
            conn_reject(loop, c, 400, "a NUL byte or a '..' above the root "
                        "in the path of a static file");
            return 0;  /* lingering: kept until the client closes */
        }
        if (rc != UPY_STATIC_PASS) {
            static_ended(loop, c, rc);
            return conn_returned(loop, c, rc);
        }
    }
    if (srv->runner == UPY_RUN_ASGI) {
        return upy_asgi_start(loop, c, req);
    }
    if (srv->runner == UPY_RUN_INLINE) {
        int rc = run_start(&srv->cores[0], c, req);
        return conn_returned(loop, c, rc);
    }
    return submit(loop, c);
}

/* Writable: a connection whose response was parked.  The inline runner
   goes on at once; otherwise the loop sends what is pending (and a
   sendfile) without Python, and a runner gets c for the rest. */
static void
conn_writable(upy_loop *loop, upy_conn *c)
{
    upy_server *srv = loop->srv;
    int rc;
    if (c->resp.is_static) {
        rc = upy_static_resume(UPY_LOOP_CORE(srv), c);
        if (rc == UPY_RESP_BLOCKED) {
            c->deadline = upy_now() + c->lst->socket_timeout;
            return;
        }
        static_ended(loop, c, rc);
        if (conn_returned(loop, c, rc) < 0) {
            return;
        }
        (void)conn_process(loop, c);
        return;
    }
    if (srv->runner != UPY_RUN_INLINE) {
        if (upy_response_flush(c) == UPY_RESP_BLOCKED) {
            c->deadline = upy_now() + c->lst->socket_timeout;
            return;
        }
        /* Not watched while a runner has it (level-triggered: it would
           wake the loop until then). */
        upy_poller_forget(&loop->poller, c->fd);
        c->registered = 0;
        (void)submit(loop, c);
        return;
    }
    rc = run_resume(&srv->cores[0], c);
    if (rc == UPY_RESP_BLOCKED) {
        c->deadline = upy_now() + c->lst->socket_timeout;
        return;
    }
    if (conn_returned(loop, c, rc) < 0) {
        return;
    }
    (void)conn_process(loop, c); /* pipelined requests already read */
}

/* done_fd is readable: take the connections the runners gave back. */
static void
loop_take_done(upy_loop *loop)
{
    upy_conn *c, *next;
    upy_wake_drain(loop->done_rfd);
    pthread_mutex_lock(&loop->mu);
    c = loop->done;
    loop->done = loop->done_tail = NULL;
    loop->done_signalled = 0;
    pthread_mutex_unlock(&loop->mu);
    for (; c != NULL; c = next) {
        next = c->qnext;
        c->qnext = NULL;
        if (conn_returned(loop, c, c->job_rc) == 0 &&
            c->state == UPY_CONN_HEAD) {
            (void)conn_process(loop, c); /* pipelined requests */
        }
    }
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
        int status = 400;
        const char *reason = NULL;
        ssize_t rc = UPY_CONN_PROTO(c)->body_decode(
            c, p, &dlen, srv->limits.limit_post, &status, &reason);
        if (rc == UPY_PARSE_ERROR) {
            if (status == 0) {
                /* the client called it off (FastCGI ABORT_REQUEST) */
                upy_log(srv, 20, "%s from %s on %s: %s; closing",
                        UPY_CONN_PROTO(c)->name, c->addr_text,
                        c->lst->name_c, reason);
                conn_close(loop, c);
                return -1;
            }
            conn_reject(loop, c, status, reason ? reason : "bad body");
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

/* c's address for logs and REMOTE_ADDR/REMOTE_PORT: "host:port", an IPv6
   host in brackets when bracket is set. */
static void
conn_set_addr(upy_conn *c, const char *host, unsigned port, int bracket)
{
    size_t hl = strlen(host);
    int n = snprintf(c->addr_text, sizeof c->addr_text,
                     bracket ? "[%s]:%u" : "%s:%u", host, port);
    if (n < 0 || (size_t)n >= sizeof c->addr_text || hl > 200) {
        c->host_off = c->host_len = c->port_off = c->port_len = 0;
        return;
    }
    c->host_off = (uint8_t)(bracket ? 1 : 0);
    c->host_len = (uint8_t)hl;
    c->port_off = (uint8_t)(hl + (bracket ? 3 : 1));
    c->port_len = (uint8_t)((size_t)n - c->port_off);
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
        conn_set_addr(c, info.src_addr, (unsigned)info.src_port,
                      info.family == 6);
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
                if (c->len > srv->limits.max_head +
                                 UPY_CONN_PROTO(c)->head_slack) {
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
            if (srv->runner == UPY_RUN_ASGI) {
                /* the app gets the body as it arrives (receive()); static
                   files and probes only for bodiless requests */
                int rc2 = !c->chunked && c->content_length == 0
                              ? dispatch(loop, c, &req)
                              : upy_asgi_start(loop, c, &req);
                if (rc2 < 0) {
                    return -1;
                }
                if (c->state != UPY_CONN_HEAD) {
                    return 0;
                }
                continue;
            }
            if (!c->chunked && c->content_length == 0) {
                if (dispatch(loop, c, &req) < 0) {
                    return -1;
                }
                continue;
            }
            if (c->chunked) {
                UPY_CONN_PROTO(c)->body_begin(c, &req);
            }
            if (req.expect_continue && c->len == c->head_len &&
                send_text(c->fd, "HTTP/1.1 100 Continue\r\n\r\n") < 0) {
                /* part of it went out: the stream is broken.  Nothing
                   (a full socket) is fine: RFC 9110 §10.1.1 lets the
                   client send the content without the 100. */
                conn_close(loop, c);
                return -1;
            }
            c->state = UPY_CONN_BODY;
            c->body_started = upy_now();
        }
        if (c->state == UPY_CONN_BODY) {
            int done = consume_body(loop, c);
            if (done <= 0) {
                return 0;
            }
            if (srv->runner != UPY_RUN_INLINE && srv->static_cfg == NULL) {
                return submit(loop, c); /* the runner parses the head again */
            }
            /* The head is still at buf[0..head_len): decode it again for
               the field slices. */
            c->last_len = 0;
            if (head_again(srv, c, &req, loop->fields, loop->fields_cap) < 0) {
                conn_reject(loop, c, 400, "the request head changed");
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
            conn_set_addr(c, host, port, 0);
        }
        else {
            /* REMOTE_ADDR and REMOTE_PORT "" (host_len, port_len 0) */
            snprintf(c->addr_text, sizeof c->addr_text, "unix socket");
        }
        c->next = loop->conns;
        if (loop->conns)
            loop->conns->prev = c;
        loop->conns = c;
        loop->nconns++;
        if (upy_protocols[lst->proto]->read_at_accept) {
            /* nginx writes the packet right after connecting (and uwsgi
               listeners use TCP_DEFER_ACCEPT): read at once; most such
               connections are answered and closed without ever being
               registered with the poller. */
            if (conn_readable(loop, c) < 0) {
                continue;
            }
        }
        /* conn_returned() registered it if it was answered at once and
           kept; a runner has it now (state APP): it registers it when
           it comes back */
        if (!c->registered && c->state != UPY_CONN_APP &&
            c->state != UPY_CONN_ASGI && c->state != UPY_CONN_CLOSED &&
            conn_watch(loop, c, c->state == UPY_CONN_WRITE ? UPY_POLL_OUT
                                                           : UPY_POLL_IN) < 0) {
            conn_close(loop, c);
            continue;
        }
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
                       srv->shared_listeners ||
                               upy_protocols[lst->proto]->read_at_accept
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
        if (c->state == UPY_CONN_ASGI) {
            upy_asgi_sweep(loop, c, now);
            continue;
        }
        if (c->state == UPY_CONN_APP || c->deadline <= 0 ||
            now < c->deadline) {
            continue;
        }
        if (c->state == UPY_CONN_WRITE) {
            upy_log(loop->srv, 30, "client %s stopped reading the response "
                    "for socket-timeout %.0fs: closing", c->addr_text,
                    c->lst->socket_timeout);
            if (loop->srv->runner != UPY_RUN_INLINE && !c->resp.is_static) {
                /* a runner ends the response (the app's close(), the
                   access log), then the loop closes c; a static one
                   ends in conn_close(), without Python */
                c->resp.failed = 1;
                upy_poller_forget(&loop->poller, c->fd);
                c->registered = 0;
                (void)submit(loop, c);
                continue;
            }
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
        if (c->state == UPY_CONN_ASGI) {
            upy_asgi_going_away(loop, c);
            continue;
        }
        if (c->state == UPY_CONN_HEAD && c->len == 0 && c->requests > 0) {
            char byte;
            if (recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
                continue;
            }
            conn_close(loop, c);
        }
    }
}

/* The threads runner's loop thread takes the GIL back (a signal handler
   to run, an error to raise, the end). */
static void
loop_gil(upy_loop *loop)
{
    if (loop->tstate != NULL) {
        PyEval_RestoreThread(loop->tstate);
        loop->tstate = NULL;
    }
}

/* Set the loop up to serve (GIL held): the poller, the listeners, the wake
   fds.  Returns 0, or -1 with an exception set. */
static int
loop_open(upy_server *srv, int wakeup_fd)
{
    upy_loop *loop = srv->loop;
    if (srv->serving) {
        PyErr_SetString(PyExc_RuntimeError, "the Server's loop is running");
        return -1;
    }
    if (loop->ended) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the Server's loop has ended (one loop per Server)");
        return -1;
    }
    for (Py_ssize_t i = 0; i < srv->nlisteners; i++) {
        if (upy_poller_add(&loop->poller, srv->listeners[i].fd, UPY_POLL_IN,
                           &srv->listeners[i], 1) < 0) {
            goto error;
        }
    }
    loop->listening = 1;
    loop->wake_watched = 1;
    if (upy_poller_add(&loop->poller, srv->wake_rfd, UPY_POLL_IN,
                       &loop->wake_tag, 0) < 0 ||
        (loop->done_rfd >= 0 &&
         upy_poller_add(&loop->poller, loop->done_rfd, UPY_POLL_IN,
                        &loop->done_tag, 0) < 0) ||
        (wakeup_fd >= 0 &&
         upy_poller_add(&loop->poller, wakeup_fd, UPY_POLL_IN,
                        &loop->signal_tag, 0) < 0)) {
        goto error;
    }
    loop->wakeup_fd = wakeup_fd;
    for (int i = 0; i < srv->ncores; i++) {
        if (srv->cores[i].slot != NULL)
            srv->cores[i].slot->pid = (uint64_t)getpid();
    }
    loop->last_sweep = upy_now();
    loop->open = 1;
    srv->serving = 1;
    srv->active_loops++;
    return 0;
error:
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

/* One turn of the loop: wait up to timeout_ms (less while stopping or
   paused) and act on what is ready; sweep the deadlines once a second.
   Returns 1 to go on, 0 when the loop has finished (a stop completed),
   -1 with an exception set and the GIL held (the threads runner's loop
   runs without it otherwise). */
static int
loop_step(upy_loop *loop, int timeout_ms)
{
    upy_server *srv = loop->srv;
    upy_event events[UPY_MAX_EVENTS];
    int n, nogil = loop->tstate != NULL;
    double now;

    if (srv->stopping) {
        loop_stop_listening(loop);
        if (loop->nconns == 0 || srv->stopping > 1 ||
            upy_now() > srv->stop_deadline) {
            return 0;
        }
        if (timeout_ms > 100)
            timeout_ms = 100;
    }
    else if (loop->accept_paused) {
        double wait = loop->accept_resume_at - upy_now();
        if (wait <= 0) {
            loop->accept_paused = 0;
            loop_listen(loop, 1);
        }
        else if (wait * 1000 < timeout_ms) {
            timeout_ms = (int)(wait * 1000) + 1;
        }
    }
    if (nogil) {
        n = upy_poller_wait(&loop->poller, events, UPY_MAX_EVENTS,
                            timeout_ms);
    }
    else {
        Py_BEGIN_ALLOW_THREADS
        n = upy_poller_wait(&loop->poller, events, UPY_MAX_EVENTS,
                            timeout_ms);
        Py_END_ALLOW_THREADS
    }
    if (n < 0) {
        int err = errno;
        loop_gil(loop);
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    /* Connections given back first: a client that read its response
       has often sent the next request already, reported in this same
       turn, and its connection is then ready for it. */
    for (int i = 0; i < n; i++) {
        if (*(upy_ev_kind *)events[i].ptr == UPY_EV_DONE) {
            loop_take_done(loop);
            break;
        }
    }
    for (int i = 0; i < n; i++) {
        upy_ev_kind kind = *(upy_ev_kind *)events[i].ptr;
        if (kind == UPY_EV_CONN) {
            upy_conn *c = (upy_conn *)events[i].ptr;
            if (c->state == UPY_CONN_CLOSED) {
                continue; /* closed earlier in this turn */
            }
            if (c->state == UPY_CONN_APP) {
                /* pipelined bytes or a hang-up while a runner has it:
                   watched again when it comes back */
                upy_poller_forget(&loop->poller, c->fd);
                c->registered = 0;
            }
            else if (c->state == UPY_CONN_ASGI)
                upy_asgi_event(loop, c, events[i].events);
            else if (c->state == UPY_CONN_WRITE)
                conn_writable(loop, c);
            else
                (void)conn_readable(loop, c);
        }
        else if (kind == UPY_EV_LISTENER) {
            upy_listener *l = (upy_listener *)events[i].ptr;
            if (events[i].events & UPY_POLL_ERR) {
                /* a listener hangs up only once shut (POLLNVAL: closed) */
                l->shut = 1;
                (void)upy_poller_del(&loop->poller, l->fd);
            }
            else if (!srv->stopping && loop->listening)
                listener_ready(loop, l);
        }
        else if (kind == UPY_EV_SIGNAL) {
            /* a signal arrived: run its Python handler now */
            upy_wake_drain(loop->wakeup_fd);
            loop_gil(loop);
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            if (nogil)
                loop->tstate = PyEval_SaveThread();
        }
        /* UPY_EV_WAKE: stop() was called; the fd stays readable while
           stopping (loop_stop_listening() stops watching it) */
        if (!nogil && PyErr_Occurred()) {
            /* A bug in the glue: never swallow it. */
            return -1;
        }
    }
    if (!nogil && PyErr_CheckSignals() < 0) {
        return -1;
    }
    now = upy_now();
    if (now - loop->last_sweep >= 1.0) {
        sweep_timeouts(loop, now);
        loop->last_sweep = now;
        if (nogil && loop->wakeup_fd < 0) {
            /* no wakeup fd: run pending signal handlers once a second */
            loop_gil(loop);
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            loop->tstate = PyEval_SaveThread();
        }
    }
    if (srv->stopping) {
        /* the last request of a stop may have ended in this turn: end
           now rather than at the next turn (an external loop may wait up
           to a second for it) */
        loop_stop_listening(loop);
        if (loop->nconns == 0 || srv->stopping > 1) {
            loop_reap(loop);
            return 0;
        }
    }
    loop_reap(loop);
    return 1;
}

/* The loop has finished (GIL held): requests still queued are closed, the
   runners close what they hold (orphans) when they are done with it, and
   app threads return. */
static void
loop_close(upy_loop *loop)
{
    upy_server *srv = loop->srv;
    upy_conn *c, *next;
    PyObject *et, *ev, *etb;
    /* Closing runs Python (responses' close(), the logger): keep the
       exception the caller raises. */
    PyErr_Fetch(&et, &ev, &etb);
    pthread_mutex_lock(&loop->mu);
    loop->ended = 1;
    /* A runner has the connections in state APP, except those queued and
       never started or given back: those are the loop's to close. */
    for (c = loop->conns; c != NULL; c = c->next) {
        c->orphan = c->state == UPY_CONN_APP;
    }
    for (c = loop->jobs; c != NULL; c = c->qnext) {
        c->orphan = 0;
    }
    for (c = loop->done; c != NULL; c = c->qnext) {
        c->orphan = 0;
    }
    loop->jobs = loop->jobs_tail = loop->done = loop->done_tail = NULL;
    for (c = loop->conns; c != NULL; c = next) {
        next = c->next;
        if (c->orphan) {
            /* a runner has it: unlinked, freed by that runner */
            if (c->prev)
                c->prev->next = c->next;
            else
                loop->conns = c->next;
            if (c->next)
                c->next->prev = c->prev;
            loop->nconns--;
            if (c->registered)
                upy_poller_forget(&loop->poller, c->fd);
            c->registered = 0;
        }
    }
    pthread_cond_broadcast(&loop->cv);
    pthread_mutex_unlock(&loop->mu);
    while (loop->conns != NULL) {
        c = loop->conns;
        if (c->state == UPY_CONN_APP)
            c->state = UPY_CONN_HEAD;
        conn_close(loop, c);
    }
    /* Requests an external runner never took: their connections are
       orphans now, freed as the objects go. */
    Py_CLEAR(loop->ready);
    loop_reap(loop);
    while (loop->free_conns != NULL) {
        c = loop->free_conns;
        loop->free_conns = c->next;
        free(c);
    }
    loop->nfree = 0;
    while (loop->spare_bufs != NULL) {
        void *b = loop->spare_bufs;
        loop->spare_bufs = *(void **)b;
        free(b);
    }
    loop->nspare = 0;
    upy_poller_free(&loop->poller);
    loop->poller_ok = 0;
    loop->open = 0;
    srv->serving = 0;
    srv->active_loops--;
    PyErr_Restore(et, ev, etb);
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
"       min_lifetime=0.0, runner='inline', cores=1, wait_write=None)\n"
"--\n\n"
"The request path of one worker: one I/O loop owning the listeners and\n"
"every connection, and an app runner it hands complete requests to.\n\n"
"app: the WSGI callable (PEP 3333).\n"
"runner: 'inline' (serve_forever() calls the app in its own thread;\n"
"  cores must be 1), 'threads' (serve_forever() runs only the loop; cores\n"
"  threads each call app_thread(i) to run apps: uWSGI's threads), or\n"
"  'external' (another event loop drives the loop through fileno() and\n"
"  run_once(); Request.run(core) runs each app: uWSGI's gevent).\n"
"cores: requests run at once (app threads, greenlets); one scoreboard\n"
"  slot each.\n"
"wait_write: external runner: callable(fd: int, timeout: float) -> bool,\n"
"  waiting in that loop for a full socket to take the imperative write()'s\n"
"  data (True: writable, False: timed out).\n"
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
"scoreboard: a writable buffer of at least cores SLOT_SIZE-byte slots\n"
"  (shared memory); core i writes slot i.\n"
"log_format: uwsgipy.log.compile_log_format()'s tuple (uWSGI log-format);\n"
"log_filter: LOG_4XX | LOG_5XX to log only those (log-4xx, log-5xx).\n"
"add_headers: bytes of 'Name: value\\r\\n' lines added to every response\n"
"  head the app makes (uWSGI add-header; validated by the caller).\n"
"write_exception: write() raises OSError once the client is gone (False:\n"
"  uWSGI's disable-write-exception).");

/* The loop and the cores, with their buffers.  Returns 0, or -1 with an
   exception set (server_dealloc() frees what was made). */
static int
server_alloc_loop(upy_server *self, int ncores)
{
    upy_loop *loop;
    size_t fields_cap = self->uwsgi_limits.max_fields > self->limits.max_fields
                            ? self->uwsgi_limits.max_fields
                            : self->limits.max_fields;
    /* cores[ncores] is the loop's own: static files, no scoreboard slot */
    self->cores = PyMem_Calloc((size_t)ncores + 1, sizeof(upy_core));
    self->loop = loop = PyMem_Calloc(1, sizeof(upy_loop));
    if (self->cores == NULL || loop == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->ncores = ncores;
    for (int i = 0; i <= ncores; i++) {
        upy_core *co = &self->cores[i];
        co->srv = self;
        co->st = self->st;
        co->index = i;
        co->slot = self->scoreboard.buf != NULL && i < ncores
                       ? (upy_slot *)self->scoreboard.buf + i : NULL;
        co->fields_cap = fields_cap;
        co->fields = calloc(fields_cap, sizeof(upy_field));
        co->scratch_cap = self->limits.max_head + 16;
        co->scratch = malloc(co->scratch_cap);
        co->out_cap = 4096;
        co->out = malloc(co->out_cap);
        if (co->fields == NULL || co->scratch == NULL || co->out == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    loop->srv = self;
    loop->st = self->st;
    loop->wake_tag = UPY_EV_WAKE;
    loop->done_tag = UPY_EV_DONE;
    loop->signal_tag = UPY_EV_SIGNAL;
    loop->wakeup_fd = -1;
    loop->done_rfd = loop->done_wfd = -1;
    loop->fields_cap = fields_cap;
    loop->fields = calloc(fields_cap, sizeof(upy_field));
    if (loop->fields == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (pthread_mutex_init(&loop->mu, NULL) != 0 ||
        pthread_cond_init(&loop->cv, NULL) != 0) {
        PyErr_SetString(PyExc_OSError, "cannot create the loop's lock");
        return -1;
    }
    loop->sync_ok = 1;
    if (upy_poller_init(&loop->poller) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    loop->poller_ok = 1;
    if (self->runner != UPY_RUN_INLINE &&
        upy_wake_open(&loop->done_rfd, &loop->done_wfd) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static void
server_free_loop(upy_server *self)
{
    upy_loop *loop = self->loop;
    if (loop != NULL && loop->open) {
        loop_close(loop);  /* uses the cores */
    }
    if (self->cores != NULL) {
        for (int i = 0; i <= self->ncores; i++) {
            free(self->cores[i].fields);
            free(self->cores[i].scratch);
            free(self->cores[i].out);
        }
        PyMem_Free(self->cores);
        self->cores = NULL;
    }
    if (loop != NULL) {
        if (loop->poller_ok) {
            upy_poller_free(&loop->poller);
        }
        free(loop->fields);
        if (loop->done_rfd >= 0) {
            upy_wake_close(loop->done_rfd, loop->done_wfd);
        }
        if (loop->sync_ok) {
            pthread_mutex_destroy(&loop->mu);
            pthread_cond_destroy(&loop->cv);
        }
        PyMem_Free(loop);
        self->loop = NULL;
    }
}

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
                             "runner", "cores", "wait_write", "static",
                             "mounts", "manage_script_name", "ws_max_size",
                             "ws_ping", "ws_pong", NULL};
    PyObject *app, *listeners, *logger = NULL, *errors = Py_None, *tmpdir = Py_None;
    PyObject *seq = NULL, *scoreboard = Py_None, *log_format = Py_None;
    PyObject *add_headers = NULL, *wait_write = Py_None;
    PyObject *static_cfg = Py_None, *mounts = Py_None;
    int manage_script_name = 0;
    unsigned long long ws_max_size = 1 << 20;
    double ws_ping = 30.0, ws_pong = 3.0;
    const char *runner = "inline";
    int cores = 1;
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
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$OnnKKddippOOKKdOOipipnndddSdsiOOOpKdd",
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
                                     &min_lifetime, &runner, &cores,
                                     &wait_write, &static_cfg, &mounts,
                                     &manage_script_name, &ws_max_size,
                                     &ws_ping, &ws_pong)) {
        return -1;
    }
    if (strcmp(runner, "inline") == 0) {
        self->runner = UPY_RUN_INLINE;
    }
    else if (strcmp(runner, "threads") == 0) {
        self->runner = UPY_RUN_THREADS;
    }
    else if (strcmp(runner, "external") == 0) {
        self->runner = UPY_RUN_EXTERNAL;
    }
    else if (strcmp(runner, "asgi") == 0) {
        self->runner = UPY_RUN_ASGI;
    }
    else {
        PyErr_Format(PyExc_ValueError, "runner must be 'inline', 'threads', "
                     "'external' or 'asgi', not '%s'", runner);
        return -1;
    }
    if (cores < 1 || cores > 65536 ||
        ((self->runner == UPY_RUN_INLINE || self->runner == UPY_RUN_ASGI) &&
         cores != 1)) {
        PyErr_SetString(PyExc_ValueError, "cores must be 1 for the inline "
                        "runner, 1..65536 otherwise");
        return -1;
    }
    if (wait_write != Py_None) {
        if (!PyCallable_Check(wait_write)) {
            PyErr_SetString(PyExc_TypeError, "wait_write must be callable");
            return -1;
        }
        self->wait_write = Py_NewRef(wait_write);
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
    /* one loop per process: other processes' loops share the listeners */
    self->shared_listeners = multiprocess;
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
    if (self->scoreboard.buf != NULL &&
        (size_t)cores * sizeof(upy_slot) > (size_t)self->scoreboard.len) {
        PyErr_Format(PyExc_ValueError, "the scoreboard has room for %zd "
                     "cores, not %d", self->scoreboard.len /
                     (Py_ssize_t)sizeof(upy_slot), cores);
        return -1;
    }
    if (tmpdir != Py_None) {
        PyObject *b;
        if (!PyUnicode_FSConverter(tmpdir, &b)) {
            return -1;
        }
        self->tmpdir_c = PyMem_Malloc((size_t)PyBytes_GET_SIZE(b) + 1);
        if (self->tmpdir_c == NULL) {
            Py_DECREF(b);
            PyErr_NoMemory();
            return -1;
        }
        memcpy(self->tmpdir_c, PyBytes_AS_STRING(b),
               (size_t)PyBytes_GET_SIZE(b) + 1);
        Py_DECREF(b);
    }
    if (server_alloc_loop(self, cores) < 0) {
        return -1;
    }
    /* static-map and friends (upy_static.c) */
    if (static_cfg != Py_None &&
        (self->static_cfg = upy_static_new(self, static_cfg)) == NULL) {
        return -1;
    }
    /* mount / manage-script-name: the app is chosen per request */
    if (upy_mounts_init(self, mounts) < 0) {
        return -1;
    }
    self->manage_script_name = manage_script_name;
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
        if (proto < 0 || proto >= UPY_NPROTO) {
            PyErr_Format(PyExc_ValueError, "listener %zd: unknown protocol "
                         "%d", i, proto);
            Py_DECREF(seq);
            return -1;
        }
        l->proto = (upy_proto)proto;
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
        if (l->keepalive_timeout <= 0) {
            /* a protocol whose client asks for the connection to stay
               (FastCGI's KEEP_CONN) keeps it idle this long */
            l->keepalive_timeout = upy_protocols[l->proto]->kept_idle;
        }
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
    if (self->runner == UPY_RUN_ASGI &&
        upy_asgi_init(self, ws_max_size, ws_ping, ws_pong) < 0) {
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(serve_forever_doc,
"serve_forever(wakeup_fd=-1)\n--\n\n"
"Run the loop in the calling thread until a stop completes (or a signal\n"
"handler raises): runners 'inline' (calling the app here too) and\n"
"'threads' (app threads call app_thread()).  wakeup_fd: the read end of\n"
"the pipe given to signal.set_wakeup_fd(), so signals interrupt the wait\n"
"at once.  Returns None after a graceful stop, once in-flight requests\n"
"are done.  A Server's loop runs once.");

static PyObject *
server_serve_forever(upy_server *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"wakeup_fd", NULL};
    int wakeup_fd = -1, rc;
    upy_loop *loop = self->loop;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|i", kwlist, &wakeup_fd)) {
        return NULL;
    }
    if (self->listeners == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Server not initialised");
        return NULL;
    }
    if (self->runner == UPY_RUN_EXTERNAL) {
        PyErr_SetString(PyExc_RuntimeError, "the external runner's loop is "
                        "driven with run_once(), not serve_forever()");
        return NULL;
    }
    if (loop_open(self, wakeup_fd) < 0) {
        /* app threads waiting for jobs would wait forever */
        pthread_mutex_lock(&loop->mu);
        loop->ended = 1;
        pthread_cond_broadcast(&loop->cv);
        pthread_mutex_unlock(&loop->mu);
        return NULL;
    }
    if (self->runner == UPY_RUN_THREADS) {
        /* the loop runs no app code: the app threads get the GIL */
        loop->tstate = PyEval_SaveThread();
    }
    do {
        rc = loop_step(loop, 1000);
    } while (rc > 0);
    loop_gil(loop);
    loop_close(loop);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(app_thread_doc,
"app_thread(core)\n--\n\n"
"Runner 'threads': run the apps of the requests the loop hands over, in\n"
"the calling thread, as core `core` (0 <= core < cores; its scoreboard\n"
"slot), until the loop has ended.  One thread per core.  Returns None.");

static PyObject *
server_app_thread(upy_server *self, PyObject *args)
{
    int core;
    upy_loop *loop = self->loop;
    upy_core *co;
    upy_conn *c;
    PyThreadState *ts;

    if (!PyArg_ParseTuple(args, "i:app_thread", &core)) {
        return NULL;
    }
    if (self->runner != UPY_RUN_THREADS || loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "app_thread() is for the threads runner");
        return NULL;
    }
    if (core < 0 || core >= self->ncores) {
        PyErr_Format(PyExc_ValueError, "core %d is not in 0..%d", core,
                     self->ncores - 1);
        return NULL;
    }
    co = &self->cores[core];
    if (co->attached) {
        PyErr_Format(PyExc_RuntimeError, "core %d has a thread already",
                     core);
        return NULL;
    }
    co->attached = 1;
    ts = PyEval_SaveThread();
    pthread_mutex_lock(&loop->mu);
    for (;;) {
        while (loop->jobs == NULL && !loop->ended) {
            loop->nidle++;
            pthread_cond_wait(&loop->cv, &loop->mu);
            loop->nidle--;
        }
        if (loop->jobs == NULL) {
            break; /* ended */
        }
        c = loop->jobs;
        loop->jobs = c->qnext;
        if (loop->jobs == NULL)
            loop->jobs_tail = NULL;
        pthread_mutex_unlock(&loop->mu);
        PyEval_RestoreThread(ts);
        for (;;) {
            run_job(co, c);
            if (PyErr_Occurred()) {
                upy_log_exception(self, "error in an app thread (a bug)");
            }
            give_back(loop, co, c);
            /* Another job waiting: take it without giving the GIL up. */
            pthread_mutex_lock(&loop->mu);
            c = loop->jobs;
            if (c == NULL) {
                pthread_mutex_unlock(&loop->mu);
                break;
            }
            loop->jobs = c->qnext;
            if (loop->jobs == NULL)
                loop->jobs_tail = NULL;
            pthread_mutex_unlock(&loop->mu);
        }
        ts = PyEval_SaveThread();
        pthread_mutex_lock(&loop->mu);
    }
    pthread_mutex_unlock(&loop->mu);
    PyEval_RestoreThread(ts);
    co->attached = 0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(fileno_doc,
"fileno()\n--\n\n"
"Runner 'external': the loop's readiness fd (an epoll fd: readable when\n"
"run_once() has work).  OSError where the poll(2) fallback is built.");

static PyObject *
server_fileno(upy_server *self, PyObject *Py_UNUSED(ignored))
{
#if UPY_HAVE_EPOLL
    if (self->loop == NULL || !self->loop->poller_ok) {
        PyErr_SetString(PyExc_RuntimeError, "the loop has ended");
        return NULL;
    }
    return PyLong_FromLong(self->loop->poller.epfd);
#else
    PyErr_SetString(PyExc_OSError, "this build's poller (poll(2)) has no "
                    "readiness fd: the external runner needs epoll");
    return NULL;
#endif
}

PyDoc_STRVAR(run_once_doc,
"run_once(timeout=0.0, wakeup_fd=-1)\n--\n\n"
"Runner 'external': one step of the loop: wait at most timeout seconds\n"
"(GIL released), act on what is ready (accepts, reads, parked output,\n"
"connections given back, signals), sweep the deadlines once a second.\n"
"Returns a list of Request objects whose head and body are complete (run\n"
"each with Request.run(core)), or None once the loop has ended (a stop\n"
"completed; the loop is closed).  The first call opens the loop and\n"
"registers wakeup_fd (see serve_forever()).  Call it whenever fileno() is\n"
"readable and at least once a second.");

static PyObject *
server_run_once(upy_server *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"timeout", "wakeup_fd", NULL};
    double timeout = 0.0;
    int wakeup_fd = -1, rc;
    upy_loop *loop = self->loop;
    PyObject *out;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|di", kwlist, &timeout,
                                     &wakeup_fd)) {
        return NULL;
    }
    if ((self->runner != UPY_RUN_EXTERNAL && self->runner != UPY_RUN_ASGI) ||
        loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "run_once() is for the external and asgi runners");
        return NULL;
    }
    if (!loop->open) {
        if (loop->ended) {
            Py_RETURN_NONE;
        }
        if (loop_open(self, wakeup_fd) < 0) {
            return NULL;
        }
    }
    if (loop->stepping) {
        /* a logger or signal handler yielding to another greenlet that
           calls run_once() */
        PyErr_SetString(PyExc_RuntimeError, "run_once() re-entered");
        return NULL;
    }
    loop->stepping = 1;
    rc = loop_step(loop, timeout <= 0 ? 0
                         : timeout > 3600 ? 3600000
                         : (int)(timeout * 1000.0));
    if (self->runner == UPY_RUN_ASGI) {
        /* the apps of the requests just read, on their kept tasks; the
           loop's own error, if any, is the one raised */
        PyObject *et = NULL, *ev = NULL, *etb = NULL;
        int frc;
        if (rc < 0) {
            PyErr_Fetch(&et, &ev, &etb);
        }
        frc = upy_asgi_flush(self);
        if (rc < 0) {
            PyErr_Restore(et, ev, etb);
        }
        else if (frc < 0) {
            rc = -1;
        }
    }
    loop->stepping = 0;
    if (rc < 0) {
        return NULL;
    }
    if (rc == 0) {
        loop_close(loop);
        Py_RETURN_NONE;
    }
    if (self->runner == UPY_RUN_ASGI) {
        Py_RETURN_TRUE;
    }
    out = loop->ready;
    loop->ready = NULL;
    return out != NULL ? out : PyList_New(0);
}

/* ------------------------------------------------------------------ */
/* Request: a complete request for an external runner                  */
/* ------------------------------------------------------------------ */

static PyObject *
request_obj_new(upy_server *srv, upy_conn *c)
{
    upy_request_obj *r = PyObject_New(upy_request_obj, srv->st->Request_Type);
    if (r == NULL) {
        return NULL;
    }
    r->srv = (upy_server *)Py_NewRef(srv);
    r->conn = c;
    return (PyObject *)r;
}

PyDoc_STRVAR(request_run_doc,
"run(core)\n--\n\n"
"Run the app for this request (or go on with its parked response) in the\n"
"calling greenlet as core `core` (0 <= core < the Server's cores; one\n"
"request per core at a time), then give the connection back to the loop.\n"
"Runs once; later calls do nothing.  Returns None.");

static PyObject *
request_run(upy_request_obj *self, PyObject *arg)
{
    upy_server *srv = self->srv;
    upy_conn *c = self->conn;
    upy_core *co;
    long core = PyLong_AsLong(arg);
    if (core == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (core < 0 || core >= srv->ncores) {
        PyErr_Format(PyExc_ValueError, "core %ld is not in 0..%d", core,
                     srv->ncores - 1);
        return NULL;
    }
    co = &srv->cores[core];
    if (c == NULL) {
        Py_RETURN_NONE;
    }
    if (co->busy) {
        PyErr_Format(PyExc_RuntimeError, "core %ld is running a request",
                     core);
        return NULL;
    }
    self->conn = NULL;
    if (srv->loop->ended) {
        orphan_free(co, c);
        Py_RETURN_NONE;
    }
    run_job(co, c);
    if (PyErr_Occurred()) {
        upy_log_exception(srv, "error running a request (a bug)");
    }
    give_back(srv->loop, co, c);
    Py_RETURN_NONE;
}

static void
request_dealloc(upy_request_obj *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    upy_conn *c = self->conn;
    if (c != NULL) {
        /* never run: the connection closes (the client sees it close
           without a response, as when a worker dies) */
        self->conn = NULL;
        c->job_rc = UPY_RESP_CLOSE;
        c->keep_alive = 0;
        if (c->resp.active) {
            /* a parked response nobody resumed: end it (its close(), the
               access log) without claiming a core another greenlet may
               be using */
            upy_response_abort(&self->srv->cores[0], c);
        }
        give_back(self->srv->loop, &self->srv->cores[0], c);
    }
    Py_CLEAR(self->srv);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyMethodDef request_methods[] = {
    {"run", (PyCFunction)request_run, METH_O, request_run_doc},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot request_slots[] = {
    {Py_tp_doc, (void *)"A request whose head and body are complete, "
                        "waiting for an external runner (Server.run_once())."},
    {Py_tp_dealloc, request_dealloc},
    {Py_tp_methods, request_methods},
    {0, NULL},
};

PyType_Spec upy_request_spec = {
    .name = "uwsgipy._core.Request",
    .basicsize = sizeof(upy_request_obj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = request_slots,
};

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

PyDoc_STRVAR(asgi_setup_doc,
"asgi_setup(loop, state=None)\n--\n\n"
"Runner 'asgi', before the first run_once(): the asyncio event loop that\n"
"drives this Server from this thread (its create_task() runs each app,\n"
"its create_future() backs a receive() or send() that must wait), and the\n"
"lifespan state dict (asgiref 'Lifespan' 2.0: each scope gets a shallow\n"
"copy as scope['state']), or None.");

static PyObject *
server_asgi_setup(upy_server *self, PyObject *args, PyObject *kwds)
{
    return upy_asgi_setup(self, args, kwds);
}

static PyObject *
server_get_asgi_tasks(upy_server *self, void *closure)
{
    return PyLong_FromSsize_t(upy_asgi_tasks(self));
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
    Py_VISIT(self->wait_write);
    Py_VISIT(self->mounts);
    if (upy_asgi_traverse(self, visit, arg) < 0) {
        return -1;
    }
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
    Py_CLEAR(self->mounts);
    upy_asgi_clear(self);
    return 0;
}

static void
server_dealloc(upy_server *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    server_free_loop(self);
    server_clear(self);
    upy_asgi_free(self);
    Py_CLEAR(self->wait_write);
    PyMem_Free(self->tmpdir_c);
    Py_CLEAR(self->tmpdir);
    Py_CLEAR(self->log_format);
    Py_CLEAR(self->log_json_extra);
    Py_CLEAR(self->rid_key);
    Py_CLEAR(self->rid_env);
    Py_CLEAR(self->rid_header);
    Py_CLEAR(self->log_template);
    Py_CLEAR(self->add_headers);
    upy_static_free(self->static_cfg);
    self->static_cfg = NULL;
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
    {"app_thread", (PyCFunction)server_app_thread, METH_VARARGS,
     app_thread_doc},
    {"fileno", (PyCFunction)server_fileno, METH_NOARGS, fileno_doc},
    {"run_once", (PyCFunction)(void (*)(void))server_run_once,
     METH_VARARGS | METH_KEYWORDS, run_once_doc},
    {"asgi_setup", (PyCFunction)(void (*)(void))server_asgi_setup,
     METH_VARARGS | METH_KEYWORDS, asgi_setup_doc},
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
    {"asgi_tasks", (getter)server_get_asgi_tasks, NULL,
     "Runner 'asgi': ASGI apps running now (requests and WebSockets whose "
     "app has not returned), int.", NULL},
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
