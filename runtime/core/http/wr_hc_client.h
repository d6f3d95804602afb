/* The client side of the HTTP carrier (wr_hc_proto.h): an endpoint for the session made of many
 * ordinary requests over a few keep-alive connections.
 *
 * Upstream, the session's bytes go out in POSTs (one at a time per connection, two connections),
 * each for a byte range, kept until its 2xx and sent again after a failure; a 413 halves the size
 * of later ones. Downstream, one GET at a time asks for the relay's bytes from what has arrived: it
 * streams while the path lets it, and when its first record (the relay's prelude) does not come
 * in time, a buffering proxy is in the way and later GETs are long polls, each answered whole.
 * Bytes that arrive twice are dropped by their offset. A request that meets the close of a
 * kept-alive connection before any answer goes again at once on a new one; a path that closes
 * every connection after its answer (a proxy that keeps none alive and drops the relay's
 * "Connection: close") gets a new connection per request. A failed request is retried with backoff;
 * once nothing has succeeded for a while the endpoint fails, with words for the user when the
 * relay answered the first request with something other than the carrier's 200. */
#ifndef WR_HC_CLIENT_H
#define WR_HC_CLIENT_H

#include "wr_endpoint.h"
#include "wr_tls_endpoint.h"

#include <stdint.h>
#include <uv.h>

typedef struct wr_hc_client_config {
    const char *host; /* the relay; copied */
    uint16_t port;
    wr_tls_ctx_t *tls;    /* https: a client context (a reference is taken), else NULL */
    const char *tls_name; /* SNI and the name verified (NULL = host) */
    const char *path;     /* request path (NULL = "/") */
    const char *host_header;
    const char *headers; /* the user's own header lines ("Name: value\r\n" each), or NULL */
    /* An HTTP proxy, or NULL; "USER:PASS" for Basic. proxy_absolute: it gets the requests in
     * absolute form (a proxy that refuses CONNECT; plain HTTP only); else CONNECT (https). */
    const char *proxy_host;
    uint16_t proxy_port;
    int proxy_absolute;
    const char *proxy_auth;
    const uint8_t *psk;        /* 32 bytes */
    uint32_t post_max;         /* largest upstream body (0 = 256 KiB; halved on 413) */
    uint32_t stream_detect_ms; /* the prelude must come this soon, else long polls (0 = 3 s) */
    uint32_t give_up_ms;       /* nothing succeeded this long: the carrier fails (0 = 30 s) */
} wr_hc_client_config;

/* An endpoint on first, a connection to the relay (or the proxy) the carrier factory made, which
 * carries the first request; more are made as needed. NULL when out of memory or cfg is bad
 * (first is then still the caller's). */
wr_endpoint_t *wr_hc_client_new(uv_loop_t *loop, const wr_hc_client_config *cfg,
                                wr_endpoint_t *first);

typedef struct wr_hc_client_stats {
    uint64_t requests, retries, polls, too_large;
    int streaming; /* downstream streams (1) or long-polls (0) */
} wr_hc_client_stats;
void wr_hc_client_get_stats(wr_endpoint_t *ep, wr_hc_client_stats *out);

#endif
