/* The client's way through an HTTP proxy: on a connection to the proxy, asks it with CONNECT for a
 * tunnel to the relay (Basic authentication when given) and hands the connection back once the
 * proxy says 2xx, so the carrier's layers (TLS, WebSocket) run through it unchanged. */
#ifndef WR_CONNECT_PROXY_H
#define WR_CONNECT_PROXY_H

#include "wr_endpoint.h"

#include <stdint.h>
#include <uv.h>

#define WR_CONNECT_ANSWER_MAX 16384 /* a proxy answer head longer than this is refused */

typedef struct wr_connect_proxy wr_connect_proxy_t;

/* Once, from the loop: status 0 and the endpoint (the caller's again; not reading, callbacks
 * unset), or a libuv code and words for the user (ep is then closed). */
typedef void (*wr_connect_proxy_cb)(int status, const char *why, wr_endpoint_t *ep, void *data);

/* Takes ep (connected to the proxy, not reading, callbacks unset) and asks for host:port; auth is
 * "USER:PASS" or NULL. NULL when out of memory (ep is then still the caller's). */
wr_connect_proxy_t *wr_connect_proxy_start(wr_endpoint_t *ep, const char *host, uint16_t port,
                                           const char *auth, wr_connect_proxy_cb cb, void *data);
/* Gives up: cb will not run, and the endpoint is closed. */
void wr_connect_proxy_cancel(wr_connect_proxy_t *p);

/* The CONNECT request into out (NUL-terminated): its length, or 0 when out is too small. Pure. */
size_t wr_connect_request(char *out, size_t cap, const char *host, uint16_t port, const char *auth);
/* Checks the proxy's answer so far, buf[0..len): the head's length (> 0) once it is whole and
 * 2xx, 0 while more is needed, or UV_EPROTO with why filled in. Pure. */
int wr_connect_answer_check(const char *buf, size_t len, char *why, size_t why_cap);

#endif
