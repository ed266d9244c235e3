/*
 * upy_proxy.c - the PROXY protocol header, versions 1 and 2 (upy_proxy.h).
 *
 * Pure C: bytes in, a filled upy_proxy_info out; bounds are checked by
 * remaining length.  inet_pton/inet_ntop only read and write the buffers
 * given to them.
 */
#include "upy_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static const char v1_sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};
static const char v2_sig[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                '\n', 'Q',  'U',  'I',  'T',  '\n'};

static ssize_t
fail(upy_proxy_info *info, const char *why)
{
    info->error = why;
    return UPY_PARSE_ERROR;
}

/* 1 when a[0..n) is a prefix of (or equal to) sig[0..siglen). */
static int
prefix_of(const char *a, size_t n, const char *sig, size_t siglen)
{
    return memcmp(a, sig, n < siglen ? n : siglen) == 0;
}

/* A port: 1-5 decimal digits, no leading zero, at most 65535. */
static int
parse_port(const char *p, size_t n, uint16_t *out)
{
    uint32_t v = 0;
    if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint32_t)(p[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

/* An address of family af (AF_INET / AF_INET6) written as text p[0..n):
   checked with inet_pton, stored back in canonical form. */
static int
parse_addr(int af, const char *p, size_t n, char *out)
{
    char text[UPY_PROXY_ADDR_MAX];
    unsigned char bin[16];
    if (n == 0 || n >= sizeof text)
        return -1;
    memcpy(text, p, n);
    text[n] = '\0';
    if (inet_pton(af, text, bin) != 1)
        return -1;
    return inet_ntop(af, bin, out, UPY_PROXY_ADDR_MAX) != NULL ? 0 : -1;
}

/* Version 1: buf starts with "PROXY ". */
static ssize_t
parse_v1(const char *buf, size_t len, upy_proxy_info *info)
{
    const char *end, *p, *field[5];
    size_t flen[5], scan = len < UPY_PROXY_V1_MAX ? len : UPY_PROXY_V1_MAX;
    const char *cr = memchr(buf, '\r', scan);
    const char *lf = memchr(buf, '\n', scan);
    size_t line_len, nfields = 0;
    int af;

    if (lf != NULL && (cr == NULL || lf < cr))
        return fail(info, "PROXY v1 line ends in a bare LF");
    if (cr == NULL) {
        return len < UPY_PROXY_V1_MAX ? UPY_PARSE_INCOMPLETE
                                      : fail(info, "PROXY v1 line over 107 "
                                                   "bytes");
    }
    line_len = (size_t)(cr - buf);
    if (line_len + 2 > UPY_PROXY_V1_MAX)
        return fail(info, "PROXY v1 line over 107 bytes");
    if (line_len + 1 >= len)
        return UPY_PARSE_INCOMPLETE;     /* the LF is not here yet */
    if (cr[1] != '\n')
        return fail(info, "PROXY v1 line: CR without LF");
    info->version = 1;
    p = buf + sizeof v1_sig;
    end = cr;
    /* The protocol word. */
    {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        size_t n = sp ? (size_t)(sp - p) : (size_t)(end - p);
        if (n == 7 && memcmp(p, "UNKNOWN", 7) == 0) {
            info->family = 0;     /* §2.1: the rest of the line is ignored */
            return (ssize_t)(line_len + 2);
        }
        if (n == 4 && memcmp(p, "TCP4", 4) == 0)
            af = AF_INET, info->family = 4;
        else if (n == 4 && memcmp(p, "TCP6", 4) == 0)
            af = AF_INET6, info->family = 6;
        else
            return fail(info, "PROXY v1 protocol is not TCP4, TCP6 or "
                              "UNKNOWN");
        if (sp == NULL)
            return fail(info, "PROXY v1 line without addresses");
        p = sp + 1;
    }
    /* Four fields, each followed by one space except the last. */
    while (nfields < 5) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *fe = sp ? sp : end;
        field[nfields] = p;
        flen[nfields] = (size_t)(fe - p);
        nfields++;
        if (sp == NULL)
            break;
        p = sp + 1;
    }
    if (nfields != 4)
        return fail(info, "PROXY v1 line does not have 4 address fields");
    if (parse_addr(af, field[0], flen[0], info->src_addr) < 0 ||
        parse_addr(af, field[1], flen[1], info->dst_addr) < 0)
        return fail(info, "PROXY v1 address is not valid for its family");
    if (parse_port(field[2], flen[2], &info->src_port) < 0 ||
        parse_port(field[3], flen[3], &info->dst_port) < 0)
        return fail(info, "PROXY v1 port is not 0-65535 in decimal");
    return (ssize_t)(line_len + 2);
}

/* Version 2: buf starts with the 12-byte signature. */
static ssize_t
parse_v2(const unsigned char *buf, size_t len, upy_proxy_info *info)
{
    size_t total;
    unsigned ver_cmd, fam, block;
    const unsigned char *a;

    if (len < 16)
        return UPY_PARSE_INCOMPLETE;
    ver_cmd = buf[12];
    fam = buf[13];
    block = ((unsigned)buf[14] << 8) | buf[15];   /* network byte order */
    total = 16 + (size_t)block;
    info->version = 2;
    if ((ver_cmd >> 4) != 2)
        return fail(info, "PROXY v2 header with a version other than 2");
    if ((ver_cmd & 0xF) > 1)
        return fail(info, "PROXY v2 command is neither LOCAL nor PROXY");
    if (total > UPY_PROXY_V2_MAX)
        return fail(info, "PROXY v2 header over 4096 bytes");
    if (len < total)
        return UPY_PARSE_INCOMPLETE;
    if ((ver_cmd & 0xF) == 0) {
        info->family = 0;   /* LOCAL: the proxy's own connection (health
                               check): keep the socket's address */
        return (ssize_t)total;
    }
    if ((fam & 0xF) != 1 && (fam >> 4) != 0)
        return fail(info, "PROXY v2 transport is not STREAM");
    a = buf + 16;
    switch (fam >> 4) {
    case 0:                 /* UNSPEC */
    case 3:                 /* UNIX: no address the environ can carry */
        if ((fam >> 4) == 3 && block < 216)
            return fail(info, "PROXY v2 unix address block too short");
        info->family = 0;
        return (ssize_t)total;
    case 1:
        if (block < 12)
            return fail(info, "PROXY v2 IPv4 address block too short");
        if (inet_ntop(AF_INET, a, info->src_addr, UPY_PROXY_ADDR_MAX) ==
                NULL ||
            inet_ntop(AF_INET, a + 4, info->dst_addr, UPY_PROXY_ADDR_MAX) ==
                NULL)
            return fail(info, "PROXY v2 IPv4 address");
        info->src_port = (uint16_t)((a[8] << 8) | a[9]);
        info->dst_port = (uint16_t)((a[10] << 8) | a[11]);
        info->family = 4;
        return (ssize_t)total;
    case 2:
        if (block < 36)
            return fail(info, "PROXY v2 IPv6 address block too short");
        if (inet_ntop(AF_INET6, a, info->src_addr, UPY_PROXY_ADDR_MAX) ==
                NULL ||
            inet_ntop(AF_INET6, a + 16, info->dst_addr,
                      UPY_PROXY_ADDR_MAX) == NULL)
            return fail(info, "PROXY v2 IPv6 address");
        info->src_port = (uint16_t)((a[32] << 8) | a[33]);
        info->dst_port = (uint16_t)((a[34] << 8) | a[35]);
        info->family = 6;
        return (ssize_t)total;
    default:
        return fail(info, "PROXY v2 address family unknown");
    }
}

ssize_t
upy_proxy_parse(const char *buf, size_t len, upy_proxy_info *info)
{
    memset(info, 0, sizeof *info);
    if (len == 0)
        return UPY_PARSE_INCOMPLETE;
    if (prefix_of(buf, len, v1_sig, sizeof v1_sig)) {
        if (len < sizeof v1_sig)
            return UPY_PARSE_INCOMPLETE;
        return parse_v1(buf, len, info);
    }
    if (prefix_of(buf, len, v2_sig, sizeof v2_sig)) {
        if (len < sizeof v2_sig)
            return UPY_PARSE_INCOMPLETE;
        return parse_v2((const unsigned char *)buf, len, info);
    }
    return 0;
}
