/* The WebSocket carrier (RFC 6455): an endpoint that carries the session's bytes as binary
 * frames over another endpoint (TCP, or TLS for wss).
 *
 * Client: the first write (the session's first handshake message) goes out inside the upgrade
 * request (wr_ws_upgrade.h); later writes wait for the relay's 101. An answer other than a valid
 * 101 fails the endpoint with UV_EPROTO, and wr_endpoint_why says what came back.
 * Relay: the front door checked the upgrade and wrote the 101; this frames what follows.
 *
 * Each write is one final binary frame; client frames are masked with a fresh key. With the
 * writer's headroom (WR_WS_HEADROOM) and its only reference, the header goes in front of the
 * data in the same chunk and masking runs in place: one write on the inner endpoint, no copy.
 * A PING is answered with a PONG; a CLOSE reads as the end of the peer's data; shutdown sends a
 * CLOSE and then half-closes the inner endpoint. */
#ifndef WR_WS_ENDPOINT_H
#define WR_WS_ENDPOINT_H

#include "wr_endpoint.h"

#include <uv.h>

#define WR_WS_HEADROOM 16 /* at least WR_WS_HEADER_MAX */

/* Takes inner (connected, not reading, callbacks unset). host is the Host field, path the
 * request target, extra the user's header lines for the upgrade (see wr_ws_request) or NULL; all
 * copied. NULL when out of memory (inner is then still the caller's). */
wr_endpoint_t *wr_ws_client_new(uv_loop_t *loop, wr_endpoint_t *inner, const char *host,
                                const char *path, const char *extra);
/* Takes inner (not reading, callbacks unset), the 101 already queued on it. NULL when out of
 * memory (inner is then still the caller's). */
wr_endpoint_t *wr_ws_server_new(uv_loop_t *loop, wr_endpoint_t *inner);

#endif
