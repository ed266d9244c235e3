/*
 * wsload: a WebSocket echo load generator for bench/run.py (wrk cannot do WebSocket).
 *
 * N connections to HOST:PORT; each does the HTTP/1.1 upgrade handshake (RFC 6455 §4.1),
 * then, in a closed loop, sends one small masked text message (§5.2, §5.3: a client masks
 * every frame) and waits for the server to send it back before the next one.  Warm-up for
 * W seconds (not counted), then D seconds measured.  Prints completed messages per second
 * and the round-trip latency percentiles, one "key: value" line each (run.py parses them).
 *
 * One thread, non-blocking sockets, epoll: per message one write(2) and one read(2), so a
 * single CPU drives well over 100k messages/s and the figure is the server's, not ours.
 * No dependencies: gcc -O2 -o wsload wsload.c
 *
 * The handshake uses the sample key of RFC 6455 §1.3 on every connection and checks the
 * server's Sec-WebSocket-Accept against the value given there (no SHA-1 needed here; a
 * server must not and does not care that keys repeat across connections).  Every echo is
 * checked byte for byte; a ping is answered with a pong; a close or a wrong echo counts as
 * an error and ends that connection.
 *
 *   usage: wsload [-c CONNS] [-d SECONDS] [-w WARMUP] [-s BYTES] [-p PATH] HOST PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WSL_KEY "dGhlIHNhbXBsZSBub25jZQ=="    /* RFC 6455 §1.3 */
#define WSL_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* its Sec-WebSocket-Accept */
#define WSL_MAX_PAYLOAD 65535 /* 16-bit extended length at most: "small messages" */
#define WSL_INBUF 131072      /* per connection; an echo is at most 65539 bytes */
#define WSL_HEAD_MAX 8192     /* handshake response head */
#define WSL_HANDSHAKE_TIMEOUT_S 10.0

enum wsl_state { WSL_CONNECTING, WSL_HANDSHAKE, WSL_OPEN, WSL_DONE };

struct wsl_conn {
    int fd;
    enum wsl_state state;
    uint64_t sent_ns;    /* when the message now in flight was sent */
    int in_flight;       /* a message was sent and its echo not yet read */
    size_t echoed;       /* payload bytes of the current echo checked so far */
    unsigned char *in;   /* read buffer */
    size_t in_len;
    unsigned char *out;  /* bytes still to write (partial write) */
    size_t out_len, out_off;
    uint32_t rng;        /* mask source (xorshift32) */
};

static size_t g_size = 16;
static unsigned char *g_payload;
static uint64_t g_errors, g_closed_by_server, g_pings;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t xorshift32(uint32_t *s) {
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* Latencies of the measured window, in ns, grown as needed. */
static uint64_t *g_lat;
static size_t g_lat_len, g_lat_cap;

static void lat_add(uint64_t ns) {
    if (g_lat_len == g_lat_cap) {
        size_t cap = g_lat_cap ? g_lat_cap * 2 : 1u << 20;
        uint64_t *p = realloc(g_lat, cap * sizeof *p);
        if (!p) {
            perror("realloc");
            exit(2);
        }
        g_lat = p;
        g_lat_cap = cap;
    }
    g_lat[g_lat_len++] = ns;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void conn_fail(struct wsl_conn *c, int epfd, const char *why) {
    if (why)
        fprintf(stderr, "wsload: connection %d: %s\n", c->fd, why);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = WSL_DONE;
    c->in_flight = 0;
}

/* Queue `len` bytes on the connection and write what the socket takes now. */
static int conn_write(struct wsl_conn *c, int epfd, const unsigned char *buf, size_t len) {
    if (c->out_len == c->out_off) {
        ssize_t n = write(c->fd, buf, len);
        if (n == (ssize_t)len)
            return 0;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (n < 0)
            n = 0;
        buf += n;
        len -= (size_t)n;
        c->out_len = c->out_off = 0;
    }
    unsigned char *p = realloc(c->out, c->out_len + len);
    if (!p)
        return -1;
    c->out = p;
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static int conn_flush(struct wsl_conn *c, int epfd) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        c->out_off += (size_t)n;
    }
    c->out_len = c->out_off = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* A client frame (§5.2): FIN + opcode, MASK bit + length, masking key, masked payload. */
static size_t build_frame(struct wsl_conn *c, unsigned char *f, int opcode,
                          const unsigned char *payload, size_t len) {
    size_t i = 0;
    f[i++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        f[i++] = (unsigned char)(0x80 | len);
    } else {
        f[i++] = 0x80 | 126;
        f[i++] = (unsigned char)(len >> 8);
        f[i++] = (unsigned char)(len & 0xff);
    }
    uint32_t m = xorshift32(&c->rng);
    unsigned char mask[4] = {(unsigned char)m, (unsigned char)(m >> 8),
                             (unsigned char)(m >> 16), (unsigned char)(m >> 24)};
    memcpy(f + i, mask, 4);
    i += 4;
    for (size_t k = 0; k < len; k++)
        f[i + k] = payload[k] ^ mask[k & 3];
    return i + len;
}

static int send_message(struct wsl_conn *c, int epfd) {
    unsigned char frame[WSL_MAX_PAYLOAD + 8];
    size_t n = build_frame(c, frame, 0x1, g_payload, g_size);
    c->sent_ns = now_ns();
    c->in_flight = 1;
    c->echoed = 0;
    return conn_write(c, epfd, frame, n);
}

static int start_handshake(struct wsl_conn *c, int epfd, const char *host, int port,
                           const char *path) {
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: " WSL_KEY "\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, host, port);
    c->state = WSL_HANDSHAKE;
    return conn_write(c, epfd, (const unsigned char *)req, (size_t)n);
}

/* The 101 response head is complete in c->in: check it, keep any bytes after it. */
static int finish_handshake(struct wsl_conn *c) {
    unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end)
        return c->in_len > WSL_HEAD_MAX ? -1 : 1; /* 1: incomplete */
    size_t head_len = (size_t)(end - c->in) + 4;
    char head[WSL_HEAD_MAX + 1];
    size_t hl = head_len < WSL_HEAD_MAX ? head_len : WSL_HEAD_MAX;
    memcpy(head, c->in, hl);
    head[hl] = 0;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0 || !strcasestr(head, WSL_ACCEPT)) {
        fprintf(stderr, "wsload: handshake refused:\n%s\n", head);
        return -1;
    }
    memmove(c->in, c->in + head_len, c->in_len - head_len);
    c->in_len -= head_len;
    c->state = WSL_OPEN;
    return 0;
}

/* Parse the server frames now in c->in (§5.2: a server never masks).  Returns -1 on an
 * error (the connection is ended), else 0; *completed is set when the echo of the
 * message in flight is complete and checked. */
static int parse_frames(struct wsl_conn *c, int epfd, int *completed) {
    size_t off = 0;
    *completed = 0;
    while (c->in_len - off >= 2) {
        const unsigned char *p = c->in + off;
        size_t avail = c->in_len - off, hdr = 2;
        int fin = p[0] & 0x80, opcode = p[0] & 0x0f;
        uint64_t len = p[1] & 0x7f;
        if (p[1] & 0x80)
            return -1; /* masked server frame */
        if (len == 126) {
            if (avail < 4)
                break;
            len = ((uint64_t)p[2] << 8) | p[3];
            hdr = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | p[2 + i];
            hdr = 10;
        }
        if (len > WSL_INBUF - 16)
            return -1;
        if (avail - hdr < len)
            break;
        const unsigned char *pl = p + hdr;
        if (opcode == 0x1 || opcode == 0x2 || opcode == 0x0) {
            if (!c->in_flight || c->echoed + len > g_size ||
                memcmp(pl, g_payload + c->echoed, (size_t)len) != 0) {
                fprintf(stderr, "wsload: unexpected or wrong echo (%llu bytes)\n",
                        (unsigned long long)len);
                return -1;
            }
            c->echoed += (size_t)len;
            if (fin) {
                if (c->echoed != g_size)
                    return -1;
                c->in_flight = 0;
                *completed = 1;
            }
        } else if (opcode == 0x9) { /* ping: answer with a pong, same payload (§5.5.2) */
            unsigned char frame[256];
            if (len > 125)
                return -1;
            g_pings++;
            if (conn_write(c, epfd, frame, build_frame(c, frame, 0xA, pl, (size_t)len)) < 0)
                return -1;
        } else if (opcode == 0x8) {
            g_closed_by_server++;
            return -1;
        } else if (opcode != 0xA) {
            return -1;
        }
        off += hdr + (size_t)len;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: wsload [-c CONNS] [-d SECONDS] [-w WARMUP] [-s BYTES] [-p PATH] "
                    "HOST PORT\n");
    exit(2);
}

int main(int argc, char **argv) {
    int nconn = 32;
    double duration = 10.0, warmup = 0.0;
    const char *path = "/";
    int opt;
    while ((opt = getopt(argc, argv, "c:d:w:s:p:")) != -1) {
        switch (opt) {
        case 'c': nconn = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 's': g_size = (size_t)atol(optarg); break;
        case 'p': path = optarg; break;
        default: usage();
        }
    }
    if (argc - optind != 2 || nconn < 1 || duration <= 0 || warmup < 0 ||
        g_size > WSL_MAX_PAYLOAD)
        usage();
    const char *host = argv[optind];
    int port = atoi(argv[optind + 1]);

    /* Printable ASCII: valid UTF-8 for a text message. */
    g_payload = malloc(g_size ? g_size : 1);
    for (size_t i = 0; i < g_size; i++)
        g_payload[i] = (unsigned char)('a' + (i % 26));

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "wsload: HOST must be an IPv4 address\n");
        return 2;
    }
    int epfd = epoll_create1(0);
    struct wsl_conn *conns = calloc((size_t)nconn, sizeof *conns);
    for (int i = 0; i < nconn; i++) {
        struct wsl_conn *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->in = malloc(WSL_INBUF);
        c->rng = 2463534242u + (uint32_t)i * 2654435761u;
        c->state = WSL_CONNECTING;
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
            perror("wsload: connect");
            return 1;
        }
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    }

    uint64_t t_begin = now_ns(), t_start = 0, t_end = 0;
    uint64_t messages = 0, warm_messages = 0;
    int ready = 0, phase = 0; /* 0 handshakes, 1 warm-up, 2 measuring, 3 draining */
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (phase == 0 && (double)(t - t_begin) / 1e9 > WSL_HANDSHAKE_TIMEOUT_S) {
            fprintf(stderr, "wsload: %d of %d connections open after %.0f s\n", ready, nconn,
                    WSL_HANDSHAKE_TIMEOUT_S);
            return 1;
        }
        if (phase == 1 && (double)(t - t_begin) / 1e9 >= warmup) {
            phase = 2;
            t_start = t;
        }
        if (phase == 2 && (double)(t - t_start) / 1e9 >= duration) {
            phase = 3;
            t_end = t;
            break;
        }
        int n = epoll_wait(epfd, evs, 256, 10);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("wsload: epoll_wait");
            return 1;
        }
        for (int e = 0; e < n; e++) {
            struct wsl_conn *c = evs[e].data.ptr;
            if (c->state == WSL_DONE)
                continue;
            if (c->state == WSL_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    fprintf(stderr, "wsload: connect: %s\n", strerror(err));
                    return 1;
                }
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                if (start_handshake(c, epfd, host, port, path) < 0) {
                    conn_fail(c, epfd, "handshake write failed");
                    return 1;
                }
                continue;
            }
            if ((evs[e].events & EPOLLOUT) && conn_flush(c, epfd) < 0) {
                g_errors++;
                conn_fail(c, epfd, "write failed");
                continue;
            }
            if (!(evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                continue;
            ssize_t r = read(c->fd, c->in + c->in_len, WSL_INBUF - c->in_len);
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                continue;
            if (r <= 0) {
                g_errors++;
                conn_fail(c, epfd, r == 0 ? "closed by the server" : strerror(errno));
                if (phase == 0)
                    return 1;
                continue;
            }
            c->in_len += (size_t)r;
            if (c->state == WSL_HANDSHAKE) {
                int h = finish_handshake(c);
                if (h < 0)
                    return 1;
                if (h > 0)
                    continue;
                if (++ready == nconn) {
                    phase = warmup > 0 ? 1 : 2;
                    t_begin = t_start = now_ns();
                    for (int i = 0; i < nconn; i++)
                        if (send_message(&conns[i], epfd) < 0) {
                            g_errors++;
                            conn_fail(&conns[i], epfd, "write failed");
                        }
                }
                if (c->in_len == 0)
                    continue;
            }
            int done = 0;
            if (parse_frames(c, epfd, &done) < 0) {
                g_errors++;
                conn_fail(c, epfd, NULL);
                continue;
            }
            if (done) {
                uint64_t t1 = now_ns();
                if (phase == 2) {
                    messages++;
                    lat_add(t1 - c->sent_ns);
                } else {
                    warm_messages++;
                }
                if (send_message(c, epfd) < 0) {
                    g_errors++;
                    conn_fail(c, epfd, "write failed");
                }
            }
        }
    }

    /* A close frame (1000, §7.4.1) on every open connection, then close. */
    int still_open = 0;
    for (int i = 0; i < nconn; i++) {
        struct wsl_conn *c = &conns[i];
        if (c->state != WSL_OPEN)
            continue;
        still_open++;
        unsigned char frame[16];
        const unsigned char code[2] = {0x03, 0xe8};
        ssize_t w = write(c->fd, frame, build_frame(c, frame, 0x8, code, 2));
        (void)w;
        close(c->fd);
    }
    double secs = (double)(t_end - t_start) / 1e9;
    qsort(g_lat, g_lat_len, sizeof *g_lat, cmp_u64);
    printf("connections: %d\n", nconn);
    printf("message_bytes: %zu\n", g_size);
    printf("warmup_messages: %llu\n", (unsigned long long)warm_messages);
    printf("messages: %llu\n", (unsigned long long)messages);
    printf("elapsed_s: %.3f\n", secs);
    printf("Messages/sec: %.2f\n", secs > 0 ? (double)messages / secs : 0.0);
    static const double pcts[] = {50, 75, 90, 99, 99.9};
    static const char *names[] = {"p50", "p75", "p90", "p99", "p99.9"};
    for (int i = 0; i < 5; i++) {
        double us = 0;
        if (g_lat_len) {
            size_t k = (size_t)(pcts[i] / 100.0 * (double)(g_lat_len - 1) + 0.5);
            us = (double)g_lat[k] / 1e3;
        }
        printf("latency_%s_us: %.1f\n", names[i], us);
    }
    printf("latency_max_us: %.1f\n", g_lat_len ? (double)g_lat[g_lat_len - 1] / 1e3 : 0.0);
    printf("errors: %llu\n", (unsigned long long)g_errors);
    printf("closed_by_server: %llu\n", (unsigned long long)g_closed_by_server);
    printf("pings_answered: %llu\n", (unsigned long long)g_pings);
    printf("open_at_end: %d\n", still_open);
    return (g_errors || still_open != nconn) ? 1 : 0;
}
