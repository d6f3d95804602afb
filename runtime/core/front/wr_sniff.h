/* What the first bytes of a connection on the relay's port are: warren's raw handshake, a TLS
 * ClientHello, or an HTTP request. Pure and allocation-free, so it is fuzzed on its own.
 *
 * A raw handshake starts with 16 random bytes. The client draws again any salt that this
 * classifier would not call raw (about four in a million), so a real client is never mistaken for
 * TLS or HTTP, and the relay decides from the first read. */
#ifndef WR_SNIFF_H
#define WR_SNIFF_H

#include <stddef.h>
#include <stdint.h>

enum wr_sniff_kind {
    WR_SNIFF_NEED_MORE = 0, /* could still be TLS or HTTP: read more */
    WR_SNIFF_RAW,           /* anything else: a raw handshake, or garbage */
    WR_SNIFF_TLS,           /* a TLS handshake record carrying a ClientHello */
    WR_SNIFF_HTTP,          /* an HTTP/1.x request line: METHOD SP */
};

/* The longest prefix wr_sniff ever needs: past it the answer is never NEED_MORE. */
#define WR_SNIFF_MAX 16

enum wr_sniff_kind wr_sniff(const uint8_t *p, size_t len);
const char *wr_sniff_name(enum wr_sniff_kind kind);

#endif
