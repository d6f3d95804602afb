/* The relay's server: carriers hand it connections (raw TCP today; TLS, WebSocket, HTTP and KCP
 * endpoints as they come), and it does the rest for all of them alike: admission of connections
 * that have not proved the key (wr_admit, with the per-address failure tally), one secure session
 * on each, the list of sessions and their counters, and stream dispatch. An OPEN of the control
 * target goes to the owner (on_channel); any other target is resolved, shown to the owner's
 * policy with the addresses that will be dialled, dialled and relayed (wr_stream_dial).
 *
 * The owner (the Lua binding) decides policy and keeps its own per-session data; it never sees
 * bytes. A session's record stays valid while a stream it opened is being dialled, so a policy
 * call can still name its session after the session ended. */
#ifndef WR_SERVER_H
#define WR_SERVER_H

#include "wr_endpoint.h"
#include "wr_relay.h"
#include "wr_session.h"

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct wr_server wr_server_t;
typedef struct wr_server_conn wr_server_conn_t; /* one carrier connection and its session */

typedef struct wr_server_stream_info {
    wr_server_conn_t *conn;
    const char *user;   /* the session's user (wr_server_conn_user) */
    const char *target; /* "host:port" as the client sent it */
    const char *peer;   /* the client's address, "ip:port" ("[ip6]:port") */
} wr_server_stream_info;

typedef struct wr_server_cbs {
    /* A session opened the control target; the owner answers the stream (wr_stream_accept or
     * wr_stream_reject). NULL: refused ("this relay takes no registrations"). */
    void (*on_channel)(wr_server_t *srv, wr_server_conn_t *conn, wr_stream_t *st);
    /* Destination policy, on the resolved addresses, before any connect: 0 dials; non-zero
     * refuses with "denied: " + reason. NULL: dial anywhere. */
    int (*policy)(wr_server_t *srv, const wr_server_stream_info *info,
                  const struct sockaddr_storage *addrs, int naddrs, char *reason, size_t size);
    /* A dialled stream ended: dial_status 0 and res when a relay ran, else the dial's error. */
    void (*on_stream_done)(wr_server_t *srv, const wr_server_stream_info *info, int dial_status,
                           const wr_relay_result_t *res);
    /* A session ended (authenticated or not); its record lives on while streams need it. */
    void (*on_conn_closed)(wr_server_t *srv, wr_server_conn_t *conn, const char *why);
} wr_server_cbs;

/* One user of the relay: a key and what the server itself enforces for it. */
typedef struct wr_server_user {
    const char *name;      /* 1 to WR_USER_NAME_MAX - 1 bytes, unique */
    const uint8_t *psk;    /* 32 bytes */
    uint32_t max_sessions; /* sessions at once; 0 = no limit */
    uint32_t max_streams;  /* dialled streams at once, over all its sessions; 0 = no limit */
} wr_server_user;

typedef struct wr_server_config {
    const uint8_t *psk;          /* 32 bytes: the one user WR_USER_DEFAULT, when nusers is 0 */
    const wr_server_user *users; /* or several users, one key each */
    size_t nusers;
    wr_session_config session;    /* window, keepalive...: is_server and hs_server are set here */
    wr_relay_opts_t relay;        /* for dialled streams */
    uint64_t dial_timeout_ms;     /* 0 = 10 s */
    uint32_t max_unauthenticated; /* 0 = 1024 */
    uint32_t max_unauthenticated_per_address; /* 0 = only the total */
    uint32_t max_failed_handshakes;           /* per address per minute; 0 = no tally */
} wr_server_config;

#define WR_SERVER_MAX_UNAUTHENTICATED_DEFAULT 1024
#define WR_SERVER_FAILURE_WINDOW_MS           60000

typedef struct wr_server_stats {
    uint64_t sessions_total, streams_total, streams_denied, dials_failed, bytes_up, bytes_down;
    uint32_t sessions_active, streams_active;
    uint32_t unauthenticated, unauthenticated_failed;
    uint64_t dropped_unauthenticated, dropped_per_address;
    uint64_t handshakes_ok, handshakes_failed;
    uint64_t handshakes_failed_by[WR_HSF_KINDS]; /* by enum wr_hs_failure */
} wr_server_stats;

/* NULL when out of memory or the handshake state cannot be set up. cfg and cbs are copied. */
wr_server_t *wr_server_new(uv_loop_t *loop, const wr_server_config *cfg, const wr_server_cbs *cbs,
                           void *data);
void *wr_server_data(const wr_server_t *srv);
/* Runs a session on a connected carrier (taken in every case) from peer. 0, or UV_ENOMEM (the
 * carrier is then reset) or UV_ECANCELED after wr_server_close. */
int wr_server_take(wr_server_t *srv, wr_endpoint_t *carrier, const struct sockaddr *peer);
/* For carriers that must decide before handing a connection over (a WebSocket upgrade carries
 * the first handshake message): 0 when msg1 authenticates, is no replay and is whole (its salt
 * is then recorded; hand the carrier to wr_server_take_checked at once), else -1. */
int wr_server_check(wr_server_t *srv, const uint8_t *msg1, size_t len, wr_hs_server *out);
/* Like wr_server_take for a carrier whose msg1 wr_server_check passed (not delivered again). */
int wr_server_take_checked(wr_server_t *srv, wr_endpoint_t *carrier, const struct sockaddr *peer,
                           const wr_hs_server *checked);
/* Replaces the users (see wr_server_config). A session whose user is gone, or whose user's key
 * changed, ends (logged); the others are untouched. Returns how many sessions ended, or a negative
 * libuv code (UV_EINVAL for no user, a bad or repeated name) with the users unchanged. */
int wr_server_set_users(wr_server_t *srv, const wr_server_user *users, size_t n);
/* Ends every session and takes no more; the server is freed once the last session and stream
 * are gone (wr_server_free only drops the owner's hold). */
void wr_server_close(wr_server_t *srv);
/* Drops the owner's hold (after wr_server_close); no callback fires after it. */
void wr_server_free(wr_server_t *srv);
void wr_server_get_stats(const wr_server_t *srv, wr_server_stats *out);

wr_session_t *wr_server_conn_session(const wr_server_conn_t *conn); /* NULL once ended */
const char *wr_server_conn_peer(const wr_server_conn_t *conn);
/* The name of the user whose key the session showed ("" until its first message authenticated);
 * kept in the record, so it is still there when a stream ends after its session. */
const char *wr_server_conn_user(const wr_server_conn_t *conn);
/* Calls fn for each live session, in no particular order; fn must not end sessions. */
void wr_server_each_conn(wr_server_t *srv, void (*fn)(wr_server_conn_t *conn, void *data),
                         void *data);
void *wr_server_conn_data(const wr_server_conn_t *conn);
void wr_server_conn_set_data(wr_server_conn_t *conn, void *data);

#endif
