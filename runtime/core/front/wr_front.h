/* The front door of the relay's port: every accepted connection comes here first. It reads the
 * first bytes, decides what they are (wr_sniff) and hands the connection, those bytes included
 * (wr_prefix_endpoint), to whoever serves that kind:
 *   - warren's raw handshake, or anything unrecognised: the server (wr_server), whose session
 *     answers a non-client with silence and the probe sink;
 *   - a TLS ClientHello, when the relay has a certificate: TLS (wr_tls_endpoint), and once its
 *     handshake is done the same decision again on what comes inside;
 *   - an HTTP request: once its head is whole, a WebSocket upgrade that authenticates (the
 *     first handshake message rides in it) goes to the server as a WebSocket carrier, a request
 *     of the HTTP carrier to its server (wr_hc_server); any other request, exactly as it came,
 *     to the fallback site (-P DIR or URL), else a plain 404 page, as an ordinary web server
 *     without that page would.
 * Connections still being classified are bounded like unauthenticated ones (wr_admit): at a cap
 * the oldest goes, never the newcomer. */
#ifndef WR_FRONT_H
#define WR_FRONT_H

#include "wr_endpoint.h"
#include "wr_fallback.h"
#include "wr_forwarded.h"
#include "wr_server.h"
#include "wr_tls_endpoint.h"

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct wr_front wr_front_t;

typedef struct wr_front_config {
    wr_server_t *server; /* takes raw connections; the owner keeps it alive */
    wr_tls_ctx_t *tls;   /* a server context, or NULL: no TLS on this port */
    /* The fallback site (-P DIR or URL), or take NULL. With one, every HTTP request that is not
     * ours goes to it, and so does everything else outside TLS: the raw carrier is off on such a
     * port, so that any byte a prober sends gets exactly what the site gives (clients use TLS,
     * WebSocket or HTTP requests there). */
    wr_fallback_t site;
    /* The HTTP carrier's server (wr_hc_server), or NULL: takes the requests it claims. */
    struct wr_hc_server *hc;
    /* Fronts whose X-Forwarded-For / Forwarded name the user (wr_forwarded.h); copied. */
    const wr_trusted_t *trusted;
    size_t ntrusted;
    uint32_t sniff_timeout_ms;     /* no decision after this long: raw (0 = 5 s) */
    uint32_t max_pending;          /* connections being classified (0 = 1024) */
    uint32_t max_pending_per_addr; /* (0 = only the total applies) */
} wr_front_config;

typedef struct wr_front_stats {
    uint64_t raw, http, timeouts; /* connections handed on, by kind; undecided at the timeout */
    uint64_t site;                /* connections handed to the fallback site */
    uint64_t websocket;           /* WebSocket upgrades that authenticated */
    uint64_t forwarded;           /* of those, from a trusted front naming the user */
    uint64_t http_carrier;        /* connections the HTTP carrier took */
    uint64_t tls, tls_failed;     /* TLS handshakes done and failed */
    uint64_t dropped;             /* dropped at the caps while being classified */
    uint32_t pending;
} wr_front_stats;

wr_front_t *wr_front_new(uv_loop_t *loop, const wr_front_config *cfg);
/* Takes a connected endpoint (not reading) from peer. */
void wr_front_take(wr_front_t *f, wr_endpoint_t *ep, const struct sockaddr *peer);
/* Closes every connection still being classified and frees the front door once they are gone. */
void wr_front_free(wr_front_t *f);
void wr_front_get_stats(const wr_front_t *f, wr_front_stats *out);

#endif
