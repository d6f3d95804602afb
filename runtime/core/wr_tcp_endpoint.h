/* wr_endpoint over a connected libuv TCP handle. */
#ifndef WR_TCP_ENDPOINT_H
#define WR_TCP_ENDPOINT_H

#include "wr_endpoint.h"

#include <uv.h>

/* Adopts tcp, a connected handle allocated with malloc (as wr_listener_accept and wr_dial hand
 * out); the endpoint closes and frees it. NULL on allocation failure (tcp is then untouched). */
wr_endpoint_t *wr_tcp_endpoint_new(uv_tcp_t *tcp);

/* The underlying handle, for socket options and addresses; NULL for other endpoint kinds. */
uv_tcp_t *wr_tcp_endpoint_handle(wr_endpoint_t *ep);

/* Reads what the socket already holds, now, as one read callback: a caller that has just
 * accepted a connection and started reading gets the client's first bytes in this turn of the
 * loop, so they go out with whatever the connection starts (one carrier write, not two). Returns
 * the bytes delivered; 0 when none are there yet (libuv's poll reports them, an EOF or an error,
 * as usual) or the endpoint is not reading. */
size_t wr_tcp_endpoint_read_now(wr_endpoint_t *ep);

/* Idle write requests kept per thread; releases the rest (e.g. at exit). */
void wr_tcp_endpoint_cache_trim(void);

#endif
