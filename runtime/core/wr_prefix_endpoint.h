/* A pass-through endpoint that filters what its owner reads of the inner one. It gives back
 * bytes already read: the front door reads the first bytes of a connection to decide what it is,
 * then hands the connection on wrapped in this, so whoever takes it (the session, TLS, the web
 * site) reads those bytes first, exactly as if it had read them itself. It can also cap what is
 * read: the -D proxy relays a plain HTTP request's body and nothing after it. Writes, shutdown
 * and close pass through to the inner endpoint. */
#ifndef WR_PREFIX_ENDPOINT_H
#define WR_PREFIX_ENDPOINT_H

#include "wr_endpoint.h"

#include <stdint.h>
#include <uv.h>

/* Takes inner (not reading, callbacks unset) and a copy of prefix[0..len). NULL when out of
 * memory: inner is then still the caller's. With len 0 it still wraps (no special case). */
wr_endpoint_t *wr_prefix_endpoint_new(uv_loop_t *loop, wr_endpoint_t *inner, const char *prefix,
                                      size_t len);
/* From now on, passes on at most n more bytes read from the inner endpoint (after the prefix)
 * and drops the rest; it goes on reading, so the peer's EOF still arrives. note (borrowed, kept
 * while ep lives; NULL = none) is logged at debug level the first time bytes are dropped. */
void wr_prefix_endpoint_limit(wr_endpoint_t *ep, uint64_t n, const char *note);
/* The wrapped endpoint (for socket options and addresses); NULL if ep is not a prefix endpoint. */
wr_endpoint_t *wr_prefix_endpoint_inner(wr_endpoint_t *ep);

#endif
