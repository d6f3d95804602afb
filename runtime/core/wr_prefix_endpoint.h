/* An endpoint that gives back bytes already read: the front door reads the first bytes of a
 * connection to decide what it is, then hands the connection on wrapped in this, so whoever takes
 * it (the session, TLS, the web site) reads those bytes first, exactly as if it had read them
 * itself. Everything else passes through to the inner endpoint. */
#ifndef WR_PREFIX_ENDPOINT_H
#define WR_PREFIX_ENDPOINT_H

#include "wr_endpoint.h"

#include <uv.h>

/* Takes inner (not reading, callbacks unset) and a copy of prefix[0..len). NULL when out of
 * memory: inner is then still the caller's. With len 0 it still wraps (no special case). */
wr_endpoint_t *wr_prefix_endpoint_new(uv_loop_t *loop, wr_endpoint_t *inner, const char *prefix,
                                      size_t len);
/* The wrapped endpoint (for socket options and addresses); NULL if ep is not a prefix endpoint. */
wr_endpoint_t *wr_prefix_endpoint_inner(wr_endpoint_t *ep);

#endif
