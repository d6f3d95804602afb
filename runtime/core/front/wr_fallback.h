/* The fallback site as the front door sees it: whatever serves the connections that are not
 * ours, the static site (wr_site_take) or the pass-through to a real one (wr_site_proxy_take).
 * take owns ep from the call on, also when it fails; already[0..len) are the bytes read from it
 * so far (copied). */
#ifndef WR_FALLBACK_H
#define WR_FALLBACK_H

#include "wr_endpoint.h"

#include <stddef.h>

typedef struct wr_fallback {
    int (*take)(void *ctx, wr_endpoint_t *ep, const char *already, size_t len); /* NULL: none */
    void *ctx;
} wr_fallback_t;

#endif
