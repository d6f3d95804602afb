/* Answers a stream the peer opened by dialing a TCP target: OPEN_ACK once connected, then the
 * stream and the socket are relayed (wr_relay); OPEN_FAIL with a classified reason if the dial
 * fails. The relay uses it for OPEN targets, a reverse-tunnel client for its inner services.
 *
 * OPEN_FAIL reasons start with a class the far end can map to its own error codes (SOCKS and
 * HTTP replies): "refused: ...", "unreachable: ...", "timeout: ...", "denied: ...",
 * "bad target: ...", anything else is a general failure. */
#ifndef WR_STREAM_DIAL_H
#define WR_STREAM_DIAL_H

#include "wr_relay.h"
#include "wr_session.h"

#include <uv.h>

/* Once per wr_stream_dial: dial_status 0 and res when a relay ran, else the dial's libuv error
 * and res NULL. */
typedef void (*wr_stream_dial_cb)(void *data, int dial_status, const wr_relay_result_t *res);

/* A destination policy, run on the resolved addresses before any connect: 0 dials; non-zero
 * rejects the stream with "denied: " + the reason written into reason[size]. */
typedef int (*wr_stream_dial_check)(void *data, const struct sockaddr_storage *addrs, int naddrs,
                                    char *reason, size_t size);

typedef struct wr_stream_dial wr_stream_dial_t;

/* Dials host:port (resolved asynchronously). check may be NULL. On a non-zero return the stream
 * has been rejected and cb will not run. out (may be NULL) gets a handle for wr_stream_dial_cut,
 * valid until cb runs. */
int wr_stream_dial(uv_loop_t *loop, wr_stream_t *st, const char *host, uint16_t port,
                   uint64_t timeout_ms, const wr_relay_opts_t *ropts, wr_stream_dial_check check,
                   wr_stream_dial_cb cb, void *data, wr_stream_dial_t **out);
/* Ends it now: a dial still running is cancelled (cb runs with UV_ECANCELED before this
 * returns), a relay is closed (cb follows from the loop). */
void wr_stream_dial_cut(wr_stream_dial_t *sd);

/* Rejects st with the class of a libuv error ("refused: connection refused"...). */
void wr_stream_reject_uv(wr_stream_t *st, int err);
/* A dial's failure in one word: refused, timeout, unreachable or failed. */
const char *wr_dial_failure_class(int err);

#endif
