/* A local SOCKS5 / SOCKS4(a) / HTTP proxy listener (ssh -D). Each connection's first bytes name
 * a target (wr_proxy_req); that becomes a stream through the owner's current session, answered
 * to the client once the relay has dialled, then relayed (wr_relay) like a forward's connections.
 * Requests have a deadline; error replies are followed by a bounded wait for the client to go, so
 * that our close cannot destroy the reply.
 *
 * The owner (the Lua binding) names the session to use and hears about each relayed
 * connection's end; it never sees bytes. */
#ifndef WR_DYNAMIC_H
#define WR_DYNAMIC_H

#include "wr_relay.h"
#include "wr_session.h"

#include <stdint.h>
#include <uv.h>

typedef struct wr_dynamic wr_dynamic_t;

#define WR_DYNAMIC_REQUEST_TIMEOUT_DEFAULT 10000

typedef struct wr_dynamic_close_info {
    const char *target; /* "host:port" as the client asked for it */
    const char *peer;   /* the client's address (wr_addr_format), or NULL when unknown */
    /* The target's bytes: up from the client, down to it (our own replies are not counted). */
    uint64_t bytes_up, bytes_down;
    const wr_relay_result_t *res; /* duration, reason, error */
} wr_dynamic_close_info;

typedef struct wr_dynamic_cbs {
    /* The ready session to open a connection's stream on, asked once per complete request; NULL
     * refuses the client at once ("no session to the relay right now"). Pulled rather than set
     * because the session may end at any moment without the proxy knowing. */
    wr_session_t *(*session)(wr_dynamic_t *d);
    /* A relayed connection ended. NULL: nobody asks (the client's address is then not even
     * looked up). Still called for relays that outlive wr_dynamic_close. */
    void (*on_close)(wr_dynamic_t *d, const wr_dynamic_close_info *info);
    /* The proxy is gone (after wr_dynamic_release, once its last connection ended). */
    void (*on_freed)(wr_dynamic_t *d);
} wr_dynamic_cbs;

typedef struct wr_dynamic_config {
    const char *host; /* NULL = 127.0.0.1 */
    uint16_t port;    /* 0 = any */
    /* Both or neither (copied): clients must then authenticate (SOCKS5 user/password, HTTP
     * Basic); SOCKS4 is refused. Each 1 to 255 bytes. */
    const char *user, *password;
    uint64_t request_timeout_ms; /* to send a request and have its stream answered; 0 = default */
    wr_relay_opts_t relay;
    const char *name; /* the tunnel's name in access records (copied); NULL = "-" */
} wr_dynamic_config;

typedef struct wr_dynamic_stats {
    uint64_t accepted, refused, failed_opens, bad_requests, bytes_up, bytes_down;
    uint32_t active; /* connections not yet closed, in any phase */
} wr_dynamic_stats;

/* Listens: 0 and *out, or a libuv error (UV_EINVAL for bad credentials, UV_ENOMEM, the listen
 * error). cfg and cbs are copied. */
int wr_dynamic_new(uv_loop_t *loop, const wr_dynamic_config *cfg, const wr_dynamic_cbs *cbs,
                   void *data, wr_dynamic_t **out);
void *wr_dynamic_data(const wr_dynamic_t *d);
/* The listening port; 0 once closed. */
int wr_dynamic_port(const wr_dynamic_t *d);
int wr_dynamic_is_closed(const wr_dynamic_t *d);
/* Stops listening and drops the connections still negotiating; relayed ones finish on their own.
 * Idempotent. */
void wr_dynamic_close(wr_dynamic_t *d);
/* Closes every relayed connection (a reload's grace for a removed proxy is over); returns how
 * many. Their on_close calls follow from the loop. */
uint32_t wr_dynamic_cut(wr_dynamic_t *d);
/* Drops the owner's hold (closing first if needed); on_freed follows once the last relayed
 * connection ended, which may be at once. */
void wr_dynamic_release(wr_dynamic_t *d);
void wr_dynamic_get_stats(const wr_dynamic_t *d, wr_dynamic_stats *out);

#endif
