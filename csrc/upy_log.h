/*
 * upy_log.h - the pure-C pieces of the access log: JSON string escaping
 * (log-req-encoder = json) and request ids (request-id).
 *
 * No Python.h, no allocation, no I/O, callable without the GIL: the
 * static-file path writes its JSON line from the request's own bytes.
 * Table-tested in tests/c/test_log.c (tests/test_log_c.py, plain and
 * ASan+UBSan, each input against a guard page).
 */
#ifndef UPY_LOG_H
#define UPY_LOG_H

#include <stddef.h>
#include <stdint.h>

/* Worst case of upy_json_escape(): a control byte becomes "\u00XX" (6
   bytes); nothing else grows more.  Guard n * 6 against overflow before
   using it (the callers cap n far below SIZE_MAX / 6). */
#define UPY_JSON_ESCAPE_MAX(n) ((n) * 6)

/*
 * Escape s[0..n) as the inside of a JSON string (RFC 8259 §7) into out,
 * which has room for UPY_JSON_ESCAPE_MAX(n) bytes; no quotes are added and
 * out is not NUL-terminated.  Returns the bytes written.
 *   - '"' and '\\' are backslash-escaped; \b \f \n \r \t as such; the other
 *     bytes below 0x20 and DEL (0x7f) as \u00XX (so NUL is \u0000 and a
 *     line never holds a raw control character);
 *   - valid UTF-8 is copied as it is (no \u escapes for non-ASCII);
 *   - invalid UTF-8 becomes U+FFFD (written as its 3 UTF-8 bytes), one per
 *     maximal subpart of an ill-formed sequence (Unicode §3.9, the WHATWG
 *     decoder, Python's bytes.decode("utf-8", "replace")): overlong forms,
 *     surrogates (ED A0..BF) and code points above U+10FFFF are invalid.
 */
size_t upy_json_escape(char *out, const char *s, size_t n);

/* The longest X-Request-ID taken from a request; a longer one is replaced
   by a generated id (room for a UUID with a prefix, small enough for
   every log line). */
#define UPY_REQUEST_ID_MAX 128
/* Generated ids: 128 random bits as 32 lowercase hex digits (nginx's
   $request_id form). */
#define UPY_REQUEST_ID_LEN 32

/* 1 when s[0..n) is a request id to keep: 1..UPY_REQUEST_ID_MAX bytes,
   each visible ASCII (0x21..0x7e: no space, control byte or non-ASCII, so
   it is safe in a header, a plain log line and a JSON string alike). */
int upy_request_id_ok(const char *s, size_t n);

/* Write a new id (UPY_REQUEST_ID_LEN hex digits, no NUL) into out: a
   per-thread xoshiro256** seeded once per thread (getrandom(2), else the
   clock, pid and thread address), so no system call per request.  Not
   for secrets: ids only need to be unique. */
void upy_request_id_new(char *out);

/* Seed this thread's generator from s (tests: a known sequence). */
void upy_request_id_seed(uint64_t s);

#endif /* UPY_LOG_H */
