/*
 * upy_poll.h - the readiness poller under the server loop: epoll on Linux,
 * poll(2) elsewhere (or with -DUPY_FORCE_POLL, which the tests use to run
 * the fallback on Linux too).  No Python.h.
 *
 * One poller per loop.  Registrations carry a user pointer returned with
 * each event.  upy_poller_forget() must be called before close(fd) of a
 * registered fd: the poll(2) table does not drop closed fds, and epoll
 * keeps an fd whose open file a forked child still shares.
 */
#ifndef UPY_POLL_H
#define UPY_POLL_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* UPY_PORTABLE (setup.py: UWSGIPY_PORTABLE=1) builds the code other
   platforms run, on Linux, so the tests cover it: poll(2), no sendfile(2),
   no openat2(2).  UPY_FORCE_POLL swaps the poller only. */
#if defined(__linux__) && !defined(UPY_FORCE_POLL) && !defined(UPY_PORTABLE)
#define UPY_HAVE_EPOLL 1
#else
#define UPY_HAVE_EPOLL 0
#endif

#define UPY_POLL_IN 1u
#define UPY_POLL_OUT 2u
#define UPY_POLL_ERR 4u          /* error or hang-up (out only) */

typedef struct {
    void *ptr;
    uint32_t events;             /* UPY_POLL_* */
} upy_event;

typedef struct {
#if UPY_HAVE_EPOLL
    int epfd;
#else
    struct pollfd *fds;          /* malloc'd, cap entries */
    void **ptrs;                 /* parallel to fds */
    size_t n, cap;
    size_t next;                 /* round-robin start of the next scan */
#endif
} upy_poller;

/* 0, or -1 with errno. */
int upy_poller_init(upy_poller *p);
void upy_poller_free(upy_poller *p);
/* exclusive: only one of the pollers watching fd wakes for an event
   (EPOLLEXCLUSIVE; ignored by the poll(2) fallback, where accept() simply
   fails with EAGAIN in the losers). */
int upy_poller_add(upy_poller *p, int fd, uint32_t events, void *ptr,
                   int exclusive);
int upy_poller_mod(upy_poller *p, int fd, uint32_t events, void *ptr);
/* Stop watching fd (a listener on a graceful stop). */
int upy_poller_del(upy_poller *p, int fd);
/* fd is about to be closed. */
void upy_poller_forget(upy_poller *p, int fd);
/* Wait up to timeout_ms; fills out[0..max).  Returns the count, 0 on
   timeout or EINTR, -1 with errno on failure. */
int upy_poller_wait(upy_poller *p, upy_event *out, int max, int timeout_ms);

/* An fd that becomes readable when upy_wake_signal() is called, from any
   thread (eventfd on Linux, a pipe elsewhere).  rfd == wfd for eventfd. */
int upy_wake_open(int *rfd, int *wfd);
void upy_wake_signal(int wfd);
/* Reset a wake fd after it was readable (non-blocking). */
void upy_wake_drain(int rfd);
void upy_wake_close(int rfd, int wfd);

/* accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) or its emulation. */
struct sockaddr;
int upy_accept(int lfd, struct sockaddr *addr, unsigned *addrlen);

#endif /* UPY_POLL_H */
