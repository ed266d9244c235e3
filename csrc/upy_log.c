/*
 * upy_log.c - JSON string escaping and request ids (see upy_log.h).
 * Pure C: no Python.h, no allocation.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "upy_log.h"

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/random.h>
#endif

static const char hexdigits[] = "0123456789abcdef";

/* The escape of each byte below 0x80: 0 copy, 'u' as \u00XX, else the
   letter after the backslash. */
static const unsigned char json_esc[128] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    'u', 'u', 'u', 'u', 0, 0, '"', ['\\'] = '\\', [0x7f] = 'u',
};

/* The length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 with
   *bad the length of its maximal ill-formed subpart (1..3). */
static size_t
utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned char c = s[0];
    size_t need, i;
    unsigned char lo = 0x80, hi = 0xbf;   /* the second byte's range */
    if (c >= 0xc2 && c <= 0xdf)
        need = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0)
            lo = 0xa0;        /* overlong */
        else if (c == 0xed)
            hi = 0x9f;        /* surrogates */
    }
    else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0)
            lo = 0x90;        /* overlong */
        else if (c == 0xf4)
            hi = 0x8f;        /* above U+10FFFF */
    }
    else {
        *bad = 1;             /* 80..C1, F5..FF: never a lead byte */
        return 0;
    }
    for (i = 1; i < need; i++) {
        unsigned char b;
        if (i >= n) {
            *bad = i;         /* truncated at the end */
            return 0;
        }
        b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xbf)) {
            *bad = i;
            return 0;
        }
    }
    return need;
}

size_t
upy_json_escape(char *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    char *o = out;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            unsigned char e = json_esc[c];
            if (e == 0) {
                *o++ = (char)c;
            }
            else if (e == 'u') {
                memcpy(o, "\\u00", 4);
                o[4] = hexdigits[c >> 4];
                o[5] = hexdigits[c & 15];
                o += 6;
            }
            else {
                o[0] = '\\';
                o[1] = (char)e;
                o += 2;
            }
            i++;
            continue;
        }
        {
            size_t bad = 0;
            size_t len = utf8_seq(p + i, n - i, &bad);
            if (len) {
                memcpy(o, p + i, len);
                o += len;
                i += len;
            }
            else {
                memcpy(o, "\xef\xbf\xbd", 3);   /* U+FFFD */
                o += 3;
                i += bad;
            }
        }
    }
    return (size_t)(o - out);
}

int
upy_request_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > UPY_REQUEST_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e)
            return 0;
    }
    return 1;
}

/* xoshiro256** (Blackman and Vigna), one state per thread. */
static _Thread_local uint64_t rid_state[4];
static _Thread_local int rid_seeded;

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t
rid_next(void)
{
    uint64_t *s = rid_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* splitmix64: spreads one seed word over the state (never all zero). */
static uint64_t
splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void
upy_request_id_seed(uint64_t s)
{
    for (int i = 0; i < 4; i++)
        rid_state[i] = splitmix(&s);
    rid_seeded = 1;
}

static void
rid_seed_once(void)
{
    uint64_t seed[4] = {0, 0, 0, 0};
    ssize_t got = -1;
#if defined(__linux__)
    got = getrandom(seed, sizeof seed, GRND_NONBLOCK);
#endif
    if (got != (ssize_t)sizeof seed) {
        struct timespec ts;
        uint64_t x;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
        x ^= (uint64_t)getpid() << 32;
        x ^= (uint64_t)(uintptr_t)&rid_state;
        upy_request_id_seed(x);
        return;
    }
    memcpy(rid_state, seed, sizeof seed);
    if (!(seed[0] | seed[1] | seed[2] | seed[3]))
        upy_request_id_seed(1);
    rid_seeded = 1;
}

/* A forked child (the master forks workers) would repeat its parent's
   sequence: the forking thread, the child's only one, seeds again. */
static void
rid_after_fork(void)
{
    rid_seeded = 0;
}

static pthread_once_t rid_atfork_once = PTHREAD_ONCE_INIT;

static void
rid_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, rid_after_fork);
}

void
upy_request_id_new(char *out)
{
    uint64_t w[2];
    if (!rid_seeded) {
        (void)pthread_once(&rid_atfork_once, rid_atfork);
        rid_seed_once();
    }
    w[0] = rid_next();
    w[1] = rid_next();
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 16; j++)
            out[i * 16 + j] = hexdigits[(w[i] >> (60 - 4 * j)) & 15];
}
