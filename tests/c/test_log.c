/*
 * test_log.c - table tests for csrc/upy_log.c: JSON string escaping and
 * request ids.
 *
 * Every input is placed at the very end of a readable region followed by a
 * PROT_NONE guard page (table.h), so one byte of over-read faults; the
 * output buffer is exactly UPY_JSON_ESCAPE_MAX(n) bytes and also ends at a
 * guard page, so one byte of over-write faults.  Prints "N passed, M
 * failed".  Built and run plain and with ASan+UBSan by tests/test_log_c.py.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "upy_log.h"

#include "table.h"   /* guard_init, place, check, passed, failed */

#include <sys/wait.h>

/* An output region ending at a guard page of its own. */
#define OUTREGION (128 * 1024)
static char *outregion;

static void out_init(void)
{
    long page = sysconf(_SC_PAGESIZE);
    char *base = mmap(NULL, OUTREGION + (size_t)page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED ||
        mprotect(base + OUTREGION, (size_t)page, PROT_NONE)) {
        perror("mmap/mprotect");
        exit(2);
    }
    outregion = base;
}

typedef struct {
    const char *in;
    size_t len;          /* 0: strlen(in) */
    const char *out;
} esc_case;

#define FFFD "\xef\xbf\xbd"
static const esc_case esc_cases[] = {
    {"", 0, ""},
    {"plain text", 0, "plain text"},
    {"a\"b", 0, "a\\\"b"},
    {"back\\slash", 0, "back\\\\slash"},
    {"\"\\\"", 0, "\\\"\\\\\\\""},
    {"/path", 0, "/path"},                 /* '/' is not escaped */
    {"tab\there", 0, "tab\\there"},
    {"nl\ncr\r", 0, "nl\\ncr\\r"},
    {"\b\f", 0, "\\b\\f"},
    {"\0", 1, "\\u0000"},
    {"a\0b", 3, "a\\u0000b"},
    {"\x01\x1f", 0, "\\u0001\\u001f"},
    {"\x0b", 0, "\\u000b"},
    {"\x7f", 0, "\\u007f"},
    {" ~", 0, " ~"},
    /* valid UTF-8 is copied */
    {"\xc3\xa9", 0, "\xc3\xa9"},
    {"\xe2\x82\xac", 0, "\xe2\x82\xac"},
    {"\xf0\x9f\x98\x80", 0, "\xf0\x9f\x98\x80"},
    {"\xed\x9f\xbf", 0, "\xed\x9f\xbf"},               /* U+D7FF */
    {"\xee\x80\x80", 0, "\xee\x80\x80"},               /* U+E000 */
    {"\xf4\x8f\xbf\xbf", 0, "\xf4\x8f\xbf\xbf"},       /* U+10FFFF */
    {"\xef\xbf\xbd", 0, FFFD},
    /* invalid: one U+FFFD per maximal subpart (Python's "replace") */
    {"\x80", 0, FFFD},
    {"\xbf\x80", 0, FFFD FFFD},
    {"\xc0\xaf", 0, FFFD FFFD},                        /* overlong '/' */
    {"\xc1\xbf", 0, FFFD FFFD},
    {"\xc3", 0, FFFD},                                 /* truncated */
    {"\xc3(", 0, FFFD "("},
    {"\xe2\x82", 0, FFFD},
    {"\xe2\x82(", 0, FFFD "("},
    {"\xe0\x80\x80", 0, FFFD FFFD FFFD},               /* overlong */
    {"\xe0\xa0", 0, FFFD},
    {"\xed\xa0\x80", 0, FFFD FFFD FFFD},               /* surrogate */
    {"\xf0\x80\x80\x80", 0, FFFD FFFD FFFD FFFD},      /* overlong */
    {"\xf0\x9f\x98", 0, FFFD},
    {"\xf0\x9f\x98(", 0, FFFD "("},
    {"\xf4\x90\x80\x80", 0, FFFD FFFD FFFD FFFD},      /* > U+10FFFF */
    {"\xf5\x80", 0, FFFD FFFD},
    {"\xff\xfe", 0, FFFD FFFD},
    {"a\xe9z", 0, "a" FFFD "z"},                       /* latin-1 e-acute */
    {"\xc3\xa9\"\x80\n", 0, "\xc3\xa9\\\"" FFFD "\\n"},
};

static void test_escape(void)
{
    for (size_t i = 0; i < sizeof esc_cases / sizeof esc_cases[0]; i++) {
        const esc_case *t = &esc_cases[i];
        size_t len = t->len ? t->len : strlen(t->in);
        size_t want = strlen(t->out);
        size_t cap = UPY_JSON_ESCAPE_MAX(len);
        /* whole */
        const char *in = place(t->in, len);
        char *out = outregion + OUTREGION - cap;
        size_t n = upy_json_escape(out, in, len);
        check(n == want && memcmp(out, t->out, n) == 0, t->in, "whole",
              "case %zu: got %zu bytes '%.*s', expected '%s'", i, n, (int)n,
              out, t->out);
        check(n <= cap, t->in, "bound", "case %zu: %zu > %zu", i, n, cap);
        /* with trailing bytes: the length is the bound, not a NUL */
        {
            char buf[64];
            memcpy(buf, t->in, len);
            memcpy(buf + len, "\xe2\"\0", 3);
            in = place(buf, len + 3);
            n = upy_json_escape(out, in, len);
            check(n == want && memcmp(out, t->out, n) == 0, t->in,
                  "trailing", "case %zu", i);
        }
    }
}

/* Every byte value alone, and every prefix of a long hostile string. */
static void test_escape_all(void)
{
    char big[4096];
    for (int c = 0; c < 256; c++) {
        char b = (char)c;
        const char *in = place(&b, 1);
        char *out = outregion + OUTREGION - 6;
        size_t n = upy_json_escape(out, in, 1);
        int ok;
        if (c == '"' || c == '\\')
            ok = n == 2 && out[0] == '\\' && out[1] == (char)c;
        else if (c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
            ok = n == 2 && out[0] == '\\';
        else if (c < 0x20 || c == 0x7f)
            ok = n == 6 && memcmp(out, "\\u00", 4) == 0;
        else if (c < 0x80)
            ok = n == 1 && out[0] == (char)c;
        else
            ok = n == 3 && memcmp(out, FFFD, 3) == 0;
        check(ok, "byte", "all", "byte 0x%02x: %zu bytes", c, n);
    }
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = "\"\\\n\0\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x80\xff a"[i % 17];
    for (size_t len = 0; len <= sizeof big; len += 7) {
        const char *in = place(big, len);
        char *out = outregion + OUTREGION - UPY_JSON_ESCAPE_MAX(len);
        size_t n = upy_json_escape(out, in, len);
        int raw_ctl = 0;
        for (size_t j = 0; j < n; j++)
            if ((unsigned char)out[j] < 0x20)
                raw_ctl = 1;
        check(n <= UPY_JSON_ESCAPE_MAX(len) && !raw_ctl, "big", "prefix",
              "len %zu: %zu bytes, raw control %d", len, n, raw_ctl);
    }
}

typedef struct {
    const char *in;
    size_t len;
    int ok;
} rid_case;

static void test_request_id_ok(void)
{
    char max[UPY_REQUEST_ID_MAX + 1];
    static const rid_case cases[] = {
        {"", 0, 0},
        {"a", 0, 1},
        {"0f8fad5b-d9cb-469f-a165-70867728950e", 0, 1},
        {"req_1/2+3=4:x.y~z", 0, 1},
        {"has space", 0, 0},
        {"tab\t", 0, 0},
        {"nl\n", 0, 0},
        {"nul\0x", 5, 0},
        {"\x7f", 0, 0},
        {"caf\xc3\xa9", 0, 0},
        {"\"quoted\"", 0, 1},     /* visible ASCII: escaped where needed */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        const char *in = place(cases[i].in, len);
        check(upy_request_id_ok(in, len) == cases[i].ok, cases[i].in, "rid_ok",
              "case %zu", i);
    }
    memset(max, 'x', sizeof max);
    check(upy_request_id_ok(place(max, UPY_REQUEST_ID_MAX), UPY_REQUEST_ID_MAX),
          "128 bytes", "rid_ok", "the maximum is kept");
    check(!upy_request_id_ok(place(max, sizeof max), sizeof max), "129 bytes",
          "rid_ok", "one more is replaced");
}

static int hex_ok(const char *s)
{
    for (int i = 0; i < UPY_REQUEST_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static void test_request_id_new(void)
{
    static char ids[4096][UPY_REQUEST_ID_LEN];
    int dup = 0, bad = 0;
    for (int i = 0; i < 4096; i++) {
        char *out = outregion + OUTREGION - UPY_REQUEST_ID_LEN;
        upy_request_id_new(out);
        memcpy(ids[i], out, UPY_REQUEST_ID_LEN);
        bad += !hex_ok(ids[i]);
    }
    for (int i = 0; i < 4096; i++)
        for (int j = i + 1; j < 4096; j++)
            dup += memcmp(ids[i], ids[j], UPY_REQUEST_ID_LEN) == 0;
    check(bad == 0 && dup == 0, "4096 ids", "rid_new", "%d bad, %d duplicates",
          bad, dup);
    {
        /* a known seed gives a known sequence */
        char a[UPY_REQUEST_ID_LEN], b[UPY_REQUEST_ID_LEN];
        upy_request_id_seed(42);
        upy_request_id_new(a);
        upy_request_id_seed(42);
        upy_request_id_new(b);
        check(memcmp(a, b, sizeof a) == 0, "seed", "rid_new", "not repeatable");
    }
    {
        /* a forked child does not repeat its parent's ids */
        int fds[2];
        char parent[UPY_REQUEST_ID_LEN], child[UPY_REQUEST_ID_LEN];
        pid_t pid;
        int st;
        if (pipe(fds) < 0)
            exit(2);
        pid = fork();
        if (pid == 0) {
            upy_request_id_new(child);
            (void)!write(fds[1], child, sizeof child);
            _exit(0);
        }
        upy_request_id_new(parent);
        check(read(fds[0], child, sizeof child) == (ssize_t)sizeof child &&
                  memcmp(parent, child, sizeof child) != 0,
              "fork", "rid_new", "the child repeated the parent's id");
        waitpid(pid, &st, 0);
        close(fds[0]);
        close(fds[1]);
    }
}

int main(void)
{
    guard_init();
    out_init();
    test_escape();
    test_escape_all();
    test_request_id_ok();
    test_request_id_new();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
