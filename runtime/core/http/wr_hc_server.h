/* The relay side of the HTTP carrier (wr_hc_proto.h): the front door hands it a connection whose
 * request carries a good tag, and from then on it reads that connection's requests one by one
 * (keep-alive), each for the carrier session its SID names:
 *   - the first upstream of a session (offset 0, its body the session's first handshake message,
 *     checked with wr_server_check) makes the session, whose carrier is an endpoint of this object;
 *   - an upstream's body goes into the session in order of its offset; bytes already had are
 *     dropped, those ahead wait in a bounded reorder buffer (503 past it, 413 for a body too big);
 *   - a downstream answer streams the relay's bytes from the client's offset (chunked, prelude
 *     first, padding as keepalive, ended after a while so the client acknowledges by asking again),
 *     or answers one long poll;
 *   - anything else (a bad tag, a nonce seen before, a session it does not hold, a first message
 *     that fails) goes to the fallback site exactly as it came, or gets a plain 404.
 * The relay keeps what it sent until the client's next request shows it arrived (at most the
 * write cap, then the session waits), and ends a session no request has named for a minute. */
#ifndef WR_HC_SERVER_H
#define WR_HC_SERVER_H

#include "wr_endpoint.h"
#include "wr_fallback.h"
#include "wr_http_head.h"
#include "wr_server.h"

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct wr_hc_server wr_hc_server_t;

typedef struct wr_hc_server_config {
    wr_server_t *server;  /* takes the sessions; the owner keeps it alive */
    const uint8_t *psk;   /* 32 bytes: the one key, until wr_hc_server_set_keys */
    wr_fallback_t site;   /* take NULL: a plain 404 */
    size_t down_max;      /* relay bytes kept for a client not yet collecting (0 = 4 MiB) */
    uint32_t reap_ms;     /* a session no request names this long ends (0 = 60 s) */
    uint32_t poll_max_ms; /* a long poll with nothing to say is answered empty after (0 = 25 s) */
} wr_hc_server_config;

typedef struct wr_hc_server_stats {
    uint64_t sessions, requests, up_bytes, down_bytes, polls, streams, duplicates, refused;
    uint32_t active;
} wr_hc_server_stats;

wr_hc_server_t *wr_hc_server_new(uv_loop_t *loop, const wr_hc_server_config *cfg);
/* A relay with one key per user: the first request of a new session may be tagged with any of
 * them (each is tried); the session's later requests, and the answers' proofs, use that one.
 * Sessions already running keep theirs. 0, or UV_ENOMEM / UV_EINVAL (n = 0) with the keys kept. */
int wr_hc_server_set_keys(wr_hc_server_t *hs, const uint8_t *const *psks, size_t n);
/* The fallback, when it can only be made after this server (a pass-through that asks this server
 * which requests are the carrier's). */
void wr_hc_server_set_site(wr_hc_server_t *hs, wr_fallback_t site);
/* Whether the request is the carrier's: a good tag, for a session held or a first upstream. */
int wr_hc_server_claims(wr_hc_server_t *hs, const wr_http_head_t *req);
/* Takes a connection from a claimed request on: ep (not reading, callbacks unset) and
 * already[0..len), that request's bytes and whatever followed (copied). */
void wr_hc_server_take(wr_hc_server_t *hs, wr_endpoint_t *ep, const struct sockaddr *peer,
                       const char *already, size_t len);
/* Ends every connection and session; the memory goes once they are gone. */
void wr_hc_server_free(wr_hc_server_t *hs);
void wr_hc_server_get_stats(const wr_hc_server_t *hs, wr_hc_server_stats *out);

#endif
