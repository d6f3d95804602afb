/* The KCP carrier: a byte stream over UDP, as an endpoint (wr_endpoint.h).
 *
 * Client: wr_kcp_client_new connects a UDP socket to the relay and returns the endpoint at once
 * (UDP has no handshake of its own); the session's first write, msg1, leaves as the first
 * datagram, one PUSH segment alone.
 *
 * Relay: wr_kcp_listen binds a UDP socket and demultiplexes datagrams by conversation. A
 * datagram of an unknown conversation is a session's start only if it is exactly one PUSH
 * segment (sn 0, una 0) holding a msg1 that wr_server_check accepts; anything else is dropped
 * unanswered, before any KCP state exists. Until the client proves it receives the relay's
 * answers (it sends data past msg1, which it can only build from msg2), the relay sends an address
 * no more bytes than it received from it, acknowledging msg1 only through msg2's una.
 *
 * A conversation follows its client to a new address (NAT rebinding) only on a datagram that
 * parses entirely, belongs to a conversation past its handshake, and advances it: a PUSH whose sn
 * is new and inside the receive window, or an una/ACK for data in flight. A replayed datagram
 * advances nothing, and a blind sender must guess the 32-bit conversation and a sequence number
 * inside the window. (KCP itself is not authenticated: an on-path observer can redirect a
 * conversation, though not read or forge the session inside it.) */
#ifndef WR_KCP_ENDPOINT_H
#define WR_KCP_ENDPOINT_H

#include "wr_endpoint.h"
#include "wr_kcp.h"
#include "wr_server.h"

#include <sys/socket.h>
#include <uv.h>

/* The MTU below which msg1 (up to 1120 bytes) no longer fits one segment. */
#define WR_KCP_CARRIER_MTU_MIN 1200

/* Counters of one conversation, shared between its endpoint and whoever asked for them (a
 * session handle): they outlive whichever goes first. */
typedef struct wr_kcp_counters {
    int refs;
    wr_kcp_stats st;
} wr_kcp_counters;

void wr_kcp_counters_release(wr_kcp_counters *c);

/* 0 and the endpoint, or a libuv code. The config is copied; its MTU must be at least
 * WR_KCP_CARRIER_MTU_MIN. */
int wr_kcp_client_new(uv_loop_t *loop, const struct sockaddr *relay, const wr_kcp_config *cfg,
                      wr_endpoint_t **out);
/* The conversation's counters (a new reference), or NULL if ep is not a KCP endpoint. */
wr_kcp_counters *wr_kcp_endpoint_counters(wr_endpoint_t *ep);

typedef struct wr_kcp_listener wr_kcp_listener_t;

typedef struct wr_kcp_listener_stats {
    uint32_t conversations;     /* live */
    uint64_t sessions;          /* conversations started */
    uint64_t refused;           /* datagrams of unknown conversations dropped unanswered */
    uint64_t amplification_cap; /* datagrams withheld by the anti-amplification cap */
    uint64_t rebinds;           /* conversations moved to a new client address */
    uint64_t send_errors;       /* datagrams the socket would not take */
    wr_kcp_stats kcp;           /* summed over all conversations, live and ended (srtt_ms, rto_ms,
                                   cwnd... are the live ones' averages; in_flight and pacing_rate
                                   the live ones' sums) */
} wr_kcp_listener_stats;

/* Binds addr and hands sessions to srv. 0, or a libuv code. */
int wr_kcp_listen(uv_loop_t *loop, const struct sockaddr *addr, wr_server_t *srv,
                  const wr_kcp_config *cfg, wr_kcp_listener_t **out);
int wr_kcp_listener_port(const wr_kcp_listener_t *l);
/* Stops taking datagrams for new conversations; the socket closes after the last conversation
 * (the server's close ends them). The listener's memory is gone after that. */
void wr_kcp_listener_close(wr_kcp_listener_t *l);
void wr_kcp_listener_get_stats(const wr_kcp_listener_t *l, wr_kcp_listener_stats *out);

#endif
