/*
 * upy_static_http.c - the pure-C request-side rules of static file
 * serving: path cleaning, HTTP dates, entity-tags, Range, Accept-Encoding.
 * No Python.h, no allocation, no I/O (upy_static.h says the contract).
 */
#include "upy_static.h"

#include <string.h>

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static unsigned char
lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static int
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

size_t
upy_percent_decode(const char *p, size_t n, char *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        if (p[i] == '%' && n - i >= 3) {
            int hi = hexval((unsigned char)p[i + 1]);
            int lo = hexval((unsigned char)p[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out[o++] = (char)(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out[o++] = p[i++];
    }
    return o;
}

/* ------------------------------------------------------------------ */
/* Path                                                                */
/* ------------------------------------------------------------------ */

ssize_t
upy_static_clean(const char *p, size_t n, char *out, size_t cap,
                 int *trailing_slash)
{
    size_t o = 0, i = 0;
    /* "a/." and "a/.." end in a directory too (RFC 3986 §5.2.4 leaves a
       trailing '/') */
    *trailing_slash = (n > 0 && p[n - 1] == '/') ||
                      (n >= 2 && p[n - 1] == '.' && p[n - 2] == '/') ||
                      (n == 1 && p[0] == '.') ||
                      (n >= 3 && p[n - 1] == '.' && p[n - 2] == '.' &&
                       p[n - 3] == '/') ||
                      (n == 2 && p[0] == '.' && p[1] == '.');
    if (cap == 0) {
        return UPY_STATIC_TOOLONG;
    }
    if (memchr(p, '\0', n) != NULL) {
        return UPY_STATIC_NUL;
    }
    while (i < n) {
        size_t start, len;
        while (i < n && p[i] == '/')
            i++;
        start = i;
        while (i < n && p[i] != '/')
            i++;
        len = i - start;
        if (len == 0 || (len == 1 && p[start] == '.')) {
            continue;
        }
        if (len == 2 && p[start] == '.' && p[start + 1] == '.') {
            /* drop the last segment of out */
            if (o == 0) {
                return UPY_STATIC_ESCAPE;
            }
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* the '/' before it */
            continue;
        }
        /* room for an optional '/', the segment and the final NUL */
        if (len + (o > 0) >= cap - o) {
            return UPY_STATIC_TOOLONG;
        }
        if (o > 0)
            out[o++] = '/';
        memcpy(out + o, p + start, len);
        o += len;
    }
    out[o] = '\0';
    return (ssize_t)o;
}

/* ------------------------------------------------------------------ */
/* HTTP dates (RFC 9110 §5.6.7)                                        */
/* ------------------------------------------------------------------ */

static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri",
                                 "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const long_wdays[7] = {"Sunday", "Monday", "Tuesday",
                                          "Wednesday", "Thursday", "Friday",
                                          "Saturday"};

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; m 1..12). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

size_t
upy_http_date_format(int64_t t, char *out)
{
    int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t secs = t - days * 86400;
    /* civil_from_days */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    int wd = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
    int hh = (int)(secs / 3600), mi = (int)(secs / 60 % 60),
        ss = (int)(secs % 60);
    char *o = out;
    y += m <= 2;
    if (y < 0)
        y = 0;
    if (y > 9999)
        y = 9999;
    memcpy(o, wdays[wd], 3);
    o += 3;
    *o++ = ',';
    *o++ = ' ';
    *o++ = (char)('0' + d / 10);
    *o++ = (char)('0' + d % 10);
    *o++ = ' ';
    memcpy(o, months[m - 1], 3);
    o += 3;
    *o++ = ' ';
    *o++ = (char)('0' + y / 1000);
    *o++ = (char)('0' + y / 100 % 10);
    *o++ = (char)('0' + y / 10 % 10);
    *o++ = (char)('0' + y % 10);
    *o++ = ' ';
    *o++ = (char)('0' + hh / 10);
    *o++ = (char)('0' + hh % 10);
    *o++ = ':';
    *o++ = (char)('0' + mi / 10);
    *o++ = (char)('0' + mi % 10);
    *o++ = ':';
    *o++ = (char)('0' + ss / 10);
    *o++ = (char)('0' + ss % 10);
    memcpy(o, " GMT", 4);
    o += 4;
    *o = '\0';
    return UPY_HTTP_DATE_LEN;
}

/* k decimal digits at s (k <= 4), or -1. */
static int
digits(const char *s, int k)
{
    int v = 0;
    for (int i = 0; i < k; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int
month_of(const char *s)
{
    for (int i = 0; i < 12; i++) {
        if (memcmp(s, months[i], 3) == 0)
            return i + 1;
    }
    return 0;
}

/* "HH:MM:SS" at s (8 bytes) -> seconds of the day, or -1. */
static int
time_of_day(const char *s)
{
    int h = digits(s, 2), m = digits(s + 3, 2), sec = digits(s + 6, 2);
    if (h < 0 || m < 0 || sec < 0 || s[2] != ':' || s[5] != ':' || h > 23 ||
        m > 59 || sec > 60)
        return -1;
    return h * 3600 + m * 60 + (sec == 60 ? 59 : sec);
}

static int
valid_day(int64_t y, int m, int d)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m < 1 || m > 12 || d < 1)
        return 0;
    if (m == 2 && !leap)
        return d <= 28;
    return d <= mdays[m - 1];
}

int
upy_http_date_parse(const char *s, size_t n, int64_t *t)
{
    int y, m, d, tod, wd = -1;
    while (n > 0 && is_ows(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_ows(s[n - 1]))
        n--;
    if (n == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' &&
        s[11] == ' ' && s[16] == ' ' && memcmp(s + 25, " GMT", 4) == 0) {
        /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        d = digits(s + 5, 2);
        m = month_of(s + 8);
        y = digits(s + 12, 4);
        tod = time_of_day(s + 17);
        for (int i = 0; i < 7; i++) {
            if (memcmp(s, wdays[i], 3) == 0)
                wd = i;
        }
    }
    else if (n == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' &&
             s[19] == ' ') {
        /* asctime: Sun Nov  6 08:49:37 1994 */
        char dd[2] = {s[8] == ' ' ? '0' : s[8], s[9]};
        d = digits(dd, 2);
        m = month_of(s + 4);
        tod = time_of_day(s + 11);
        y = digits(s + 20, 4);
        for (int i = 0; i < 7; i++) {
            if (memcmp(s, wdays[i], 3) == 0)
                wd = i;
        }
    }
    else {
        /* rfc850-date: Sunday, 06-Nov-94 08:49:37 GMT */
        const char *comma = memchr(s, ',', n < 10 ? n : 10);
        size_t wl, rest;
        if (comma == NULL)
            return -1;
        wl = (size_t)(comma - s);
        rest = n - wl;
        if (rest != 24 || comma[1] != ' ' || comma[4] != '-' ||
            comma[8] != '-' || comma[11] != ' ' ||
            memcmp(comma + 20, " GMT", 4) != 0)
            return -1;
        for (int i = 0; i < 7; i++) {
            if (strlen(long_wdays[i]) == wl && memcmp(s, long_wdays[i], wl) == 0)
                wd = i;
        }
        d = digits(comma + 2, 2);
        m = month_of(comma + 5);
        y = digits(comma + 9, 2);
        tod = time_of_day(comma + 12);
        /* RFC 9110 §5.6.7: a two-digit year more than 50 years in the
           future is in the past century; read as 1970-2069. */
        if (y >= 0)
            y += y < 70 ? 2000 : 1900;
    }
    if (wd < 0 || d < 0 || m == 0 || y < 0 || tod < 0 || !valid_day(y, m, d))
        return -1;
    *t = days_from_civil(y, (unsigned)m, (unsigned)d) * 86400 + tod;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Entity-tags (RFC 9110 §8.8.3)                                       */
/* ------------------------------------------------------------------ */

size_t
upy_etag_format(int64_t mtime, uint64_t size, char *out)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[20];
    size_t o = 0;
    int k;
    uint64_t v = (uint64_t)(mtime < 0 ? 0 : mtime);
    out[o++] = '"';
    for (int part = 0; part < 2; part++) {
        k = 0;
        do {
            tmp[k++] = hex[v & 15];
            v >>= 4;
        } while (v != 0);
        while (k > 0)
            out[o++] = tmp[--k];
        if (part == 0)
            out[o++] = '-';
        v = size;
    }
    out[o++] = '"';
    out[o] = '\0';
    return o;
}

int
upy_etag_match(const char *v, size_t n, const char *etag, size_t elen,
               int strong)
{
    size_t i = 0;
    while (i < n && (is_ows(v[i]) || v[i] == ','))
        i++;
    if (i < n && v[i] == '*') {
        size_t j = i + 1;
        while (j < n && is_ows(v[j]))
            j++;
        return j == n;
    }
    while (i < n) {
        int weak = 0;
        size_t start;
        if (n - i >= 2 && v[i] == 'W' && v[i + 1] == '/') {
            weak = 1;
            i += 2;
        }
        if (i >= n || v[i] != '"')
            return 0;
        start = i;
        i++;
        while (i < n && v[i] != '"') {
            unsigned char c = (unsigned char)v[i];
            /* etagc = %x21 / %x23-7E / obs-text */
            if (c < 0x21 || c == 0x7f)
                return 0;
            i++;
        }
        if (i >= n)
            return 0;
        i++; /* closing quote */
        if ((!strong || !weak) && i - start == elen &&
            memcmp(v + start, etag, elen) == 0)
            return 1;
        while (i < n && is_ows(v[i]))
            i++;
        if (i < n && v[i] != ',')
            return 0;
        while (i < n && (is_ows(v[i]) || v[i] == ','))
            i++;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Range (RFC 9110 §14.1.2)                                            */
/* ------------------------------------------------------------------ */

/* 1*DIGIT at v[*i..n) into *out, saturating at UINT64_MAX (any such
   position is past the end of any file); 0 digits: -1. */
static int
read_pos(const char *v, size_t n, size_t *i, uint64_t *out)
{
    uint64_t x = 0;
    size_t start = *i;
    while (*i < n && v[*i] >= '0' && v[*i] <= '9') {
        unsigned dgt = (unsigned)(v[*i] - '0');
        x = x > (UINT64_MAX - dgt) / 10 ? UINT64_MAX : x * 10 + dgt;
        (*i)++;
    }
    if (*i == start)
        return -1;
    *out = x;
    return 0;
}

int
upy_range_parse(const char *v, size_t n, uint64_t size, uint64_t *first,
                uint64_t *last)
{
    size_t i = 0;
    uint64_t a = 0, b = 0;
    int suffix = 0, open_end = 0;
    while (i < n && is_ows(v[i]))
        i++;
    if (n - i < 6 || lower((unsigned char)v[i]) != 'b' ||
        lower((unsigned char)v[i + 1]) != 'y' ||
        lower((unsigned char)v[i + 2]) != 't' ||
        lower((unsigned char)v[i + 3]) != 'e' ||
        lower((unsigned char)v[i + 4]) != 's' || v[i + 5] != '=')
        return UPY_RANGE_NONE;
    i += 6;
    while (i < n && is_ows(v[i]))
        i++;
    if (i < n && v[i] == '-') {
        i++;
        suffix = 1;
        if (read_pos(v, n, &i, &b) < 0)
            return UPY_RANGE_NONE;
    }
    else {
        if (read_pos(v, n, &i, &a) < 0 || i >= n || v[i] != '-')
            return UPY_RANGE_NONE;
        i++;
        if (i < n && v[i] >= '0' && v[i] <= '9') {
            if (read_pos(v, n, &i, &b) < 0)
                return UPY_RANGE_NONE;
            if (b < a)
                return UPY_RANGE_UNSATISFIABLE; /* invalid (§14.1.1): nginx's 416 */
        }
        else {
            open_end = 1;
        }
    }
    while (i < n && is_ows(v[i]))
        i++;
    if (i != n)
        return UPY_RANGE_NONE; /* another range, or trailing junk */
    if (suffix) {
        if (b == 0 || size == 0)
            return UPY_RANGE_UNSATISFIABLE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return UPY_RANGE_OK;
    }
    if (a >= size)
        return UPY_RANGE_UNSATISFIABLE;
    *first = a;
    *last = open_end || b >= size ? size - 1 : b;
    return UPY_RANGE_OK;
}

/* ------------------------------------------------------------------ */
/* Accept-Encoding (RFC 9110 §12.5.3, qvalues §12.4.2)                 */
/* ------------------------------------------------------------------ */

/* The qvalue after a coding's ";" parameters, as thousandths (1000 when
   absent); -1 when malformed. */
static int
qvalue(const char *v, size_t n, size_t *i)
{
    int q = 1000;
    while (*i < n && v[*i] != ',') {
        size_t j;
        while (*i < n && (is_ows(v[*i]) || v[*i] == ';'))
            (*i)++;
        j = *i;
        if (n - j >= 2 && lower((unsigned char)v[j]) == 'q' && v[j + 1] == '=') {
            j += 2;
            if (j < n && (v[j] == '0' || v[j] == '1')) {
                int whole = v[j] - '0', frac = 0, k = 0;
                j++;
                if (j < n && v[j] == '.') {
                    j++;
                    while (j < n && k < 3 && v[j] >= '0' && v[j] <= '9') {
                        frac = frac * 10 + (v[j] - '0');
                        j++;
                        k++;
                    }
                }
                while (k < 3) {
                    frac *= 10;
                    k++;
                }
                q = whole * 1000 + frac;
                if (q > 1000)
                    q = 1000;
            }
            else {
                return -1;
            }
        }
        while (j < n && v[j] != ',' && v[j] != ';')
            j++;
        *i = j;
    }
    return q;
}

int
upy_coding_accepted(const char *v, size_t n, const char *coding, size_t clen)
{
    size_t i = 0;
    int star = -1;
    while (i < n) {
        size_t start, len;
        int q;
        while (i < n && (is_ows(v[i]) || v[i] == ','))
            i++;
        start = i;
        while (i < n && v[i] != ',' && v[i] != ';' && !is_ows(v[i]))
            i++;
        len = i - start;
        q = qvalue(v, n, &i);
        if (len == 0)
            continue;
        if (len == clen) {
            size_t k = 0;
            while (k < len && lower((unsigned char)v[start + k]) == coding[k])
                k++;
            if (k == len)
                return q > 0;
        }
        if (len == 1 && v[start] == '*')
            star = q > 0;
    }
    return star == 1;
}
