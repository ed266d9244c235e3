/*
 * upy_poll.c - epoll on Linux, poll(2) as the portable fallback.
 * See upy_poll.h.  No Python.h, no global state.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upy_poll.h"

#if UPY_HAVE_EPOLL
#include <sys/epoll.h>
#include <sys/eventfd.h>
#ifndef EPOLLEXCLUSIVE
#define EPOLLEXCLUSIVE 0
#endif

static uint32_t
to_epoll(uint32_t events)
{
    return ((events & UPY_POLL_IN) ? (EPOLLIN | EPOLLRDHUP) : 0u) |
           ((events & UPY_POLL_OUT) ? EPOLLOUT : 0u);
}

int
upy_poller_init(upy_poller *p)
{
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    return p->epfd < 0 ? -1 : 0;
}

void
upy_poller_free(upy_poller *p)
{
    if (p->epfd >= 0) {
        close(p->epfd);
        p->epfd = -1;
    }
}

int
upy_poller_add(upy_poller *p, int fd, uint32_t events, void *ptr,
               int exclusive)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = to_epoll(events) | (exclusive ? EPOLLEXCLUSIVE : 0u);
    if (exclusive)
        ev.events &= ~(uint32_t)EPOLLRDHUP; /* not allowed with EXCLUSIVE */
    ev.data.ptr = ptr;
    return epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int
upy_poller_mod(upy_poller *p, int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = to_epoll(events);
    ev.data.ptr = ptr;
    return epoll_ctl(p->epfd, EPOLL_CTL_MOD, fd, &ev);
}

int
upy_poller_del(upy_poller *p, int fd)
{
    return epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void
upy_poller_forget(upy_poller *p, int fd)
{
    /* close() removes the fd from the epoll set only when no other fd
       refers to the same open file (epoll(7), Q6): after an os.fork() of
       the app the child's copy keeps it registered, and its events would
       come with a pointer to a connection already freed. */
    (void)epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int
upy_poller_wait(upy_poller *p, upy_event *out, int max, int timeout_ms)
{
    struct epoll_event evs[64];
    int n;
    if (max > 64)
        max = 64;
    n = epoll_wait(p->epfd, evs, max, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
        out[i].ptr = evs[i].data.ptr;
        out[i].events = ((e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                             ? UPY_POLL_IN : 0u) |
                        ((e & EPOLLOUT) ? UPY_POLL_OUT : 0u) |
                        ((e & (EPOLLHUP | EPOLLERR)) ? UPY_POLL_ERR : 0u);
    }
    return n;
}

int
upy_wake_open(int *rfd, int *wfd)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    *rfd = *wfd = fd;
    return fd < 0 ? -1 : 0;
}

void
upy_wake_signal(int wfd)
{
    uint64_t one = 1;
    (void)!write(wfd, &one, sizeof one);
}

void
upy_wake_drain(int rfd)
{
    uint64_t v;
    (void)!read(rfd, &v, sizeof v);
}

void
upy_wake_close(int rfd, int wfd)
{
    (void)wfd;
    if (rfd >= 0)
        close(rfd);
}

int
upy_accept(int lfd, struct sockaddr *addr, unsigned *addrlen)
{
    socklen_t len = (socklen_t)*addrlen;
    int fd = accept4(lfd, addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    *addrlen = (unsigned)len;
    return fd;
}

#else /* poll(2) fallback */

static short
to_poll(uint32_t events)
{
    return (short)(((events & UPY_POLL_IN) ? POLLIN : 0) |
                   ((events & UPY_POLL_OUT) ? POLLOUT : 0));
}

int
upy_poller_init(upy_poller *p)
{
    memset(p, 0, sizeof *p);
    return 0;
}

void
upy_poller_free(upy_poller *p)
{
    free(p->fds);
    free(p->ptrs);
    memset(p, 0, sizeof *p);
}

static ssize_t
find(const upy_poller *p, int fd)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->fds[i].fd == fd)
            return (ssize_t)i;
    }
    return -1;
}

int
upy_poller_add(upy_poller *p, int fd, uint32_t events, void *ptr,
               int exclusive)
{
    (void)exclusive;
    if (find(p, fd) >= 0) {
        errno = EEXIST;
        return -1;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct pollfd *fds = realloc(p->fds, cap * sizeof *fds);
        void **ptrs;
        if (fds == NULL)
            return -1;
        p->fds = fds;
        ptrs = realloc(p->ptrs, cap * sizeof *ptrs);
        if (ptrs == NULL)
            return -1;
        p->ptrs = ptrs;
        p->cap = cap;
    }
    p->fds[p->n].fd = fd;
    p->fds[p->n].events = to_poll(events);
    p->fds[p->n].revents = 0;
    p->ptrs[p->n] = ptr;
    p->n++;
    return 0;
}

int
upy_poller_mod(upy_poller *p, int fd, uint32_t events, void *ptr)
{
    ssize_t i = find(p, fd);
    if (i < 0) {
        errno = ENOENT;
        return -1;
    }
    p->fds[i].events = to_poll(events);
    p->ptrs[i] = ptr;
    return 0;
}

int
upy_poller_del(upy_poller *p, int fd)
{
    ssize_t i = find(p, fd);
    if (i < 0) {
        errno = ENOENT;
        return -1;
    }
    p->n--;
    p->fds[i] = p->fds[p->n];
    p->ptrs[i] = p->ptrs[p->n];
    return 0;
}

void
upy_poller_forget(upy_poller *p, int fd)
{
    (void)upy_poller_del(p, fd);
}

int
upy_poller_wait(upy_poller *p, upy_event *out, int max, int timeout_ms)
{
    int n = poll(p->fds, (nfds_t)p->n, timeout_ms), got = 0;
    size_t start;
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    if (n == 0 || p->n == 0)
        return 0;
    /* Report from a rotating start so no fd starves when max < n. */
    start = p->next % p->n;
    for (size_t k = 0; k < p->n && got < max; k++) {
        size_t i = (start + k) % p->n;
        short re = p->fds[i].revents;
        if (re == 0)
            continue;
        out[got].ptr = p->ptrs[i];
        out[got].events = ((re & (POLLIN | POLLHUP | POLLERR)) ? UPY_POLL_IN
                                                                : 0u) |
                          ((re & POLLOUT) ? UPY_POLL_OUT : 0u) |
                          ((re & (POLLHUP | POLLERR | POLLNVAL))
                               ? UPY_POLL_ERR : 0u);
        got++;
    }
    p->next = start + 1;
    return got;
}

int
upy_wake_open(int *rfd, int *wfd)
{
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    *rfd = fds[0];
    *wfd = fds[1];
    return 0;
}

void
upy_wake_signal(int wfd)
{
    char one = 1;
    (void)!write(wfd, &one, 1);
}

void
upy_wake_drain(int rfd)
{
    char buf[64];
    while (read(rfd, buf, sizeof buf) > 0) {
    }
}

void
upy_wake_close(int rfd, int wfd)
{
    if (rfd >= 0)
        close(rfd);
    if (wfd >= 0 && wfd != rfd)
        close(wfd);
}

int
upy_accept(int lfd, struct sockaddr *addr, unsigned *addrlen)
{
    socklen_t len = (socklen_t)*addrlen;
    int fd = accept(lfd, addr, &len);
    *addrlen = (unsigned)len;
    if (fd >= 0) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    return fd;
}

#endif
