/* The fallback site as a pass-through to a real web server (`-P http://HOST:PORT[/prefix]`):
 * every connection the front door decides is not ours is joined to a connection of its own to
 * the site, and bytes go both ways untouched, as a plain TCP forwarder would pass them. Whoever
 * lacks the key gets exactly what the site gives: pages, errors, resets, timeouts.
 *
 * HTTP is followed request by request (wr_http_framer): each head is collected whole before it
 * goes on, bodies (Content-Length or chunked) pass as they come and are never buffered or
 * changed, pipelined requests and keep-alive pass as sent. With a prefix, "/x" in the request
 * line of an origin-form target becomes "/prefix/x"; nothing else in a request is changed. Bytes
 * that are not HTTP (or stop being framable) pass raw to the end of the connection.
 *
 * The seam for carriers that ride HTTP requests (WebSocket, HTTP): a front such as nginx or a CDN
 * may carry several users' requests on one connection, so each complete request head is shown to
 * is_ours before any of it goes to the site. A request is_ours claims is kept back, together with
 * everything after it; once the site has answered every earlier request (its responses are
 * followed with http-parser), the connection to the site is closed and the visitor's connection
 * goes to take, with the claimed request as its first bytes. If the site's responses cannot be
 * followed (or it ends first), the claimed request goes to the site like any other. Heads are
 * shown until the framer gives up on the connection (an Upgrade request is shown, then the rest
 * is raw). The relay sets no is_ours yet: the WebSocket and HTTP carriers are to claim their
 * requests here.
 *
 * Connections end as a plain forwarder (socat) ends them: an EOF is passed on as a half-close once
 * the queued bytes are out. When one side fails (a reset), what it sent is passed on and the other
 * side is closed after it: a FIN, or the kernel's reset when that side sent bytes nobody will read
 * (an abortive close would throw away the site's last answer, which a forwarder delivers). When
 * the site cannot be reached, the visitor's connection is closed without a word: with a reset if
 * it had sent bytes (which a forwarder would not have read, and the kernel resets a socket closed
 * with unread bytes), else with a FIN. A 502 page would tell a prober there is a proxy in front. */
#ifndef WR_SITE_PROXY_H
#define WR_SITE_PROXY_H

#include "wr_endpoint.h"
#include "wr_http_head.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define WR_SITE_PROXY_PREFIX_MAX      1024
#define WR_SITE_PROXY_DIAL_TIMEOUT_MS 10000
/* From the first byte of a request head to its end: a head slower than this is not kept back
 * any longer but passed on as it comes (raw), so that the site's own timeouts apply to it. */
#define WR_SITE_PROXY_HEAD_WAIT_MS 5000
#define WR_SITE_PROXY_HIGH_WATER   (1024 * 1024)
#define WR_SITE_PROXY_LOW_WATER    (256 * 1024)

typedef struct wr_site_proxy wr_site_proxy_t;

typedef struct wr_site_proxy_config {
    const char *url; /* http://HOST:PORT[/prefix] */
    /* Whether a complete request head (head[0..len), parsed as req) is a carrier's, not the
     * site's. NULL: never. */
    int (*is_ours)(void *data, const wr_http_head_t *req, const char *head, size_t len);
    /* Takes a visitor's connection from a claimed request on: ep (not reading, callbacks to be
     * set by the taker, owned by it from here on) and already[0..len), the claimed request's
     * bytes and whatever the visitor sent after it (copied by the taker if it keeps them). */
    void (*take)(void *data, wr_endpoint_t *ep, const char *already, size_t len);
    void *data;
    uint64_t dial_timeout_ms; /* 0 = WR_SITE_PROXY_DIAL_TIMEOUT_MS */
    uint64_t head_wait_ms;    /* 0 = WR_SITE_PROXY_HEAD_WAIT_MS */
} wr_site_proxy_config;

typedef struct wr_site_proxy_stats {
    uint64_t connections; /* visitors taken */
    uint64_t dial_failed; /* of them, the site could not be reached */
    uint64_t requests;    /* request heads passed to the site */
    uint64_t raw;         /* connections passed raw from some point on */
    uint64_t claimed;     /* requests handed to take */
    uint32_t active;
} wr_site_proxy_stats;

/* Splits http://HOST:PORT[/prefix] (pure). prefix gets "" or "/p..." without a trailing slash.
 * 0, or UV_EINVAL with *err set to a static reason. */
int wr_site_proxy_parse_url(const char *url, char *host, size_t host_size, uint16_t *port,
                            char *prefix, size_t prefix_size, const char **err);

/* NULL on a bad URL (with *err, if not NULL, a malloc'd message for the caller to free) or when
 * out of memory. The site's name is resolved for each connection. */
wr_site_proxy_t *wr_site_proxy_new(uv_loop_t *loop, const wr_site_proxy_config *cfg, char **err);
/* Closes every connection (with a reset); the memory goes once the last of them is gone. */
void wr_site_proxy_free(wr_site_proxy_t *p);

/* Same contract as wr_site_take: the proxy owns ep from here on (also when this fails), which
 * must not be reading; already[0..len) are the bytes read from it so far, copied. 0, or
 * UV_ECANCELED after wr_site_proxy_free, UV_ENOMEM. */
int wr_site_proxy_take(wr_site_proxy_t *p, wr_endpoint_t *ep, const char *already, size_t len);

void wr_site_proxy_get_stats(const wr_site_proxy_t *p, wr_site_proxy_stats *out);

#endif
