/*
 * upy_proxy.h - the PROXY protocol header (HAProxy's "PROXY protocol",
 * versions 1 and 2), pure C: no Python.h, no allocation, no I/O.
 *
 * A load balancer (HAProxy `send-proxy` / `send-proxy-v2`, AWS NLB, nginx's
 * stream module with `proxy_protocol on`) writes this header first on each
 * connection to say who the client really is.  uwsgipy reads it on HTTP
 * listeners where it is enabled (uWSGI's enable-proxy-protocol for
 * http-socket, http-enable-proxy-protocol for http).
 *
 * As in uWSGI, the header is optional on such a listener: a connection that
 * starts with neither "PROXY " nor the version 2 signature is plain HTTP
 * (health checks made straight to the port).  Unlike uWSGI, a header that
 * starts like one and is malformed is an error (uWSGI serves the request
 * with the socket's address), and version 2 is read (uWSGI 2.0 reads only
 * version 1 on http-socket).
 */
#ifndef UPY_PROXY_H
#define UPY_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "upy_parse.h"

/* Version 1 lines are at most 107 bytes with their CRLF (spec §2.1). */
#define UPY_PROXY_V1_MAX 107
/* Version 2: the 16-byte fixed part, then `len` bytes of addresses and
   TLVs.  We accept at most this much in all (TLVs are skipped). */
#define UPY_PROXY_V2_MAX 4096

/* The text form of the largest address, INET6_ADDRSTRLEN. */
#define UPY_PROXY_ADDR_MAX 46

typedef struct {
    int version;        /* 1 or 2 */
    int family;         /* 4 (TCP over IPv4), 6 (IPv6), or 0: keep the
                           connection's own address (v1 UNKNOWN, v2 LOCAL,
                           UNSPEC or a unix address) */
    char src_addr[UPY_PROXY_ADDR_MAX];  /* NUL-terminated text, canonical
                                           (inet_ntop) form */
    char dst_addr[UPY_PROXY_ADDR_MAX];
    uint16_t src_port, dst_port;
    const char *error;  /* on UPY_PARSE_ERROR: a static reason */
} upy_proxy_info;

/*
 * Look for a PROXY header at buf[0..len).  Returns:
 *   > 0                   the header's length in bytes; *info is filled;
 *   0                     buf does not start with a PROXY header (plain
 *                         HTTP follows): decided as soon as one byte
 *                         differs from both signatures;
 *   UPY_PARSE_INCOMPLETE  buf is a prefix of a possible header;
 *   UPY_PARSE_ERROR       malformed (info->error says how).
 * Version 1 (spec §2.1): "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP
 * sport SP dport CRLF, addresses as inet_pton accepts them for the family
 * (IPv4 dotted quad; IPv6 text), ports 0-65535 in decimal without leading
 * zeros; or "PROXY UNKNOWN" followed by anything up to the CRLF.  At most
 * 107 bytes.  Version 2 (§2.2): the 12-byte signature, version 2, command
 * LOCAL (address ignored) or PROXY, family UNSPEC / INET / INET6 / UNIX
 * over STREAM, an address block as long as its family needs, TLVs skipped,
 * at most UPY_PROXY_V2_MAX bytes in all.
 */
ssize_t upy_proxy_parse(const char *buf, size_t len, upy_proxy_info *info);

#endif /* UPY_PROXY_H */
