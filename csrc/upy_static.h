/*
 * upy_static.h - the pure-C part of static file serving (static-map).
 *
 * No Python.h, no allocation, no I/O: the request-side rules a static file
 * server applies, each a function of bytes in, a verdict out, so they are
 * table-tested (tests/c/test_static.c) and fuzzed (fuzz/fuzz_static.c)
 * apart from the file system.  The CPython-side glue that opens and sends
 * files is upy_static.c.
 *
 * Conventions: inputs are (pointer, length) slices that need not be
 * NUL-terminated; outputs go into caller-owned buffers whose sizes are
 * stated per function; nothing reads past the given length.
 */
#ifndef UPY_STATIC_H
#define UPY_STATIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Percent-decode p[0..n) into out (room for n bytes): "%XX" with two hex
   digits becomes one byte, anything else is copied (a lone '%' stays).
   Returns the decoded length (<= n).  RFC 3986 §2.1. */
size_t upy_percent_decode(const char *p, size_t n, char *out);

/* Results of upy_static_clean() besides a length. */
#define UPY_STATIC_NUL (-1)      /* a NUL byte: 400 */
#define UPY_STATIC_ESCAPE (-2)   /* ".." climbs above the root: 400 */
#define UPY_STATIC_TOOLONG (-3)  /* the clean path does not fit in cap */

/*
 * Turn a decoded URL path remainder p[0..n) (the part below a map's
 * prefix; may start with '/') into a path relative to the map's root,
 * resolved lexically as RFC 3986 §5.2.4 does for dot-segments: empty and
 * "." segments are dropped, ".." removes the segment before it.  The
 * result in out[0..len) has no leading or trailing '/', segments joined by
 * one '/', and is NUL-terminated (cap must leave room for the NUL); len 0
 * is the root itself.  '\\' is an ordinary byte (POSIX file names), never
 * a separator.  Returns the length, or UPY_STATIC_NUL, UPY_STATIC_ESCAPE,
 * UPY_STATIC_TOOLONG.  *trailing_slash is set when p ends in '/', "/."
 * or "/.." (it names a directory).
 */
ssize_t upy_static_clean(const char *p, size_t n, char *out, size_t cap,
                         int *trailing_slash);

/* The length of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"). */
#define UPY_HTTP_DATE_LEN 29

/* Format t (seconds since the epoch, UTC) as an IMF-fixdate (RFC 9110
   §5.6.7) into out, which has room for UPY_HTTP_DATE_LEN + 1 bytes
   (NUL-terminated).  Returns UPY_HTTP_DATE_LEN. */
size_t upy_http_date_format(int64_t t, char *out);

/* Parse an HTTP-date (RFC 9110 §5.6.7: IMF-fixdate, and the obsolete
   RFC 850 and asctime forms a recipient must accept) from s[0..n), with
   optional surrounding whitespace.  Returns 0 and *t (seconds since the
   epoch), or -1 when it is not a valid date (the caller ignores the
   field, §13.1.3). */
int upy_http_date_parse(const char *s, size_t n, int64_t *t);

/* "<mtime hex>-<size hex>" in double quotes, nginx's entity-tag form, into
   out (room for 40 bytes, NUL-terminated).  Returns its length. */
size_t upy_etag_format(int64_t mtime, uint64_t size, char *out);

/*
 * 1 when the field value v[0..n) (If-Match / If-None-Match: "*" or a
 * comma list of entity-tags, RFC 9110 §8.8.3) holds a tag equal to etag
 * (a quoted strong tag as upy_etag_format() makes), else 0.  strong: the
 * strong comparison (§8.8.3.2: a weak tag W/"..." never matches; for
 * If-Match), else the weak one (W/ ignored; for If-None-Match).  A
 * malformed list matches nothing from the bad element on.
 */
int upy_etag_match(const char *v, size_t n, const char *etag, size_t elen,
                   int strong);

/* upy_range_parse() results. */
#define UPY_RANGE_NONE 0     /* no usable single range: send it all (200) */
#define UPY_RANGE_OK 1       /* *first..*last (inclusive): 206 */
#define UPY_RANGE_UNSATISFIABLE 2  /* 416 with Content-Range: bytes * /size */

/*
 * A Range field value v[0..n) for a representation of `size` bytes (RFC
 * 9110 §14.1.2, §14.2): "bytes=" (unit case-insensitive) and one
 * int-range "a-b" / "a-" or suffix-range "-n".  last is clipped to
 * size - 1, a suffix longer than the file means all of it.  A range whose
 * first byte is at or past size, a suffix of 0, or last < first (invalid,
 * §14.1.1; nginx answers 416 too) is unsatisfiable.
 * Anything malformed, another unit, or more than one range gives
 * UPY_RANGE_NONE (a server may ignore Range, §14.2; multipart/byteranges
 * is not implemented).
 */
int upy_range_parse(const char *v, size_t n, uint64_t size, uint64_t *first,
                    uint64_t *last);

/*
 * 1 when the Accept-Encoding value v[0..n) (RFC 9110 §12.5.3) accepts the
 * content coding coding[0..clen) (lowercase): listed with a qvalue above
 * 0, or not listed and "*" is, with a qvalue above 0.  Case-insensitive.
 */
int upy_coding_accepted(const char *v, size_t n, const char *coding,
                        size_t clen);

#endif /* UPY_STATIC_H */
