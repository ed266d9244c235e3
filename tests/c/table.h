/*
 * table.h - what the C table tests share (after picohttpparser's test.c):
 * a guard page, so that an input placed with place() ends at the last
 * readable byte and one byte of over-read faults, and check() counting
 * passes and failures for the final "N passed, M failed" line.
 * Header-only (static functions): each test program includes it once.
 */
#ifndef UPY_TEST_TABLE_H
#define UPY_TEST_TABLE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define REGION (256 * 1024)

static char *region;
static int passed, failed;

static void guard_init(void)
{
    long page = sysconf(_SC_PAGESIZE);
    char *base = mmap(NULL, REGION + (size_t)page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || mprotect(base + REGION, (size_t)page, PROT_NONE)) {
        perror("mmap/mprotect");
        exit(2);
    }
    region = base;
}

/* Copy in[0..len) so that its last byte is the last readable byte. */
static char *place(const char *in, size_t len)
{
    char *dst = region + REGION - len;
    if (len > REGION) {
        fprintf(stderr, "input too large for the guard region\n");
        exit(2);
    }
    memmove(dst, in, len);
    return dst;
}

static void check(int ok, const char *name, const char *mode, const char *fmt, ...)
{
    va_list ap;

    if (ok) {
        passed++;
        return;
    }
    failed++;
    fprintf(stderr, "FAIL %s [%s]: ", name, mode);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#endif /* UPY_TEST_TABLE_H */
