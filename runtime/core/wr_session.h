/* The warren/1 secure session: one carrier endpoint (TCP today; TLS, WebSocket, HTTP or KCP later,
 * all through wr_endpoint), the handshake on it, then many multiplexed streams with per-stream
 * credit windows, keepalive, half-close, graceful goaway and an explicit end of session.
 *
 * Each stream is itself a wr_endpoint_t, so wr_relay joins a socket to a stream unchanged. Bytes
 * never pass through Lua: the owner only sees the callbacks below. runtime/PROTOCOL.md ("Mux and
 * session") describes the wire behaviour.
 *
 * Ownership:
 *  - The session owns the carrier from wr_session_new on and closes it.
 *  - on_closed fires once; the owner must not call session functions after it. The session's
 *    memory lives on until its last stream is closed by its owner, so stream handles stay safe.
 *  - A stream endpoint belongs to its owner from wr_session_open_stream (or from
 *    wr_stream_accept) on and must be closed with wr_endpoint_close in every case; on_closed of the
 *    endpoint then frees it. A stream handed to on_stream_open is owned until the owner calls
 *    wr_stream_accept (it then owns the endpoint) or wr_stream_reject (which frees it).
 *  - No callback runs inside an API call: they are deferred to the loop (a per-session uv_check).
 */
#ifndef WR_SESSION_H
#define WR_SESSION_H

#include "wr_endpoint.h"
#include "wr_handshake.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct wr_session wr_session_t;
typedef struct wr_stream wr_stream_t; /* begins with a wr_endpoint_t */

#define WR_SESSION_WINDOW_DEFAULT      (256 * 1024)
#define WR_SESSION_WINDOW_MIN          (64 * 1024) /* also the credit a new stream starts with */
#define WR_SESSION_WINDOW_MAX_DEFAULT  (4 * 1024 * 1024)
#define WR_SESSION_RX_BUDGET_DEFAULT   (16 * 1024 * 1024)
#define WR_SESSION_RX_LIMIT_DEFAULT    (64 * 1024 * 1024)
#define WR_SESSION_MAX_STREAMS_DEFAULT 1024
#define WR_SESSION_KEEPALIVE_DEFAULT   5000
#define WR_SESSION_HS_TIMEOUT_DEFAULT  10000
/* Frames of 60 KiB: with bulk reads (WR_BUF_BULK_SIZE) a quarter of the system calls per byte of
 * 16 KiB frames on a bulk stream, for a frame's worth of head-of-line delay between streams that
 * stays in the tens of microseconds. A 64 KiB frame moved less: it no longer fits a 64 KiB read. */
#define WR_SESSION_FRAME_SEND_DEFAULT (60 * 1024)
#define WR_SESSION_TARGET_MAX         1024 /* bytes of an OPEN target */
#define WR_SESSION_REASON_MAX         128  /* bytes of an OPEN_FAIL reason */
#define WR_SESSION_PROBE_MIN_DEFAULT  60000
#define WR_SESSION_PROBE_MAX_DEFAULT  180000
/* OPEN target of the control channel; real targets always have a ":port", so no host collides. */
#define WR_CONTROL_TARGET "@control"

/* Users: a relay may hold several keys, one per user, each with a name. A single key is the
 * user WR_USER_DEFAULT. */
#define WR_USER_NAME_MAX 64 /* bytes of a user's name, its NUL included */
#define WR_USER_DEFAULT  "default"

typedef struct wr_session_key {
    const char *name;   /* 1 to WR_USER_NAME_MAX - 1 bytes */
    const uint8_t *psk; /* 32 bytes */
} wr_session_key;

/* Why a server's handshakes failed, in the few kinds an operator can act on (metrics). */
enum wr_hs_failure {
    WR_HSF_KEY,       /* no user's key authenticates it: a wrong key or a probe */
    WR_HSF_REPLAY,    /* a first message seen before, or older than this relay */
    WR_HSF_CLOCK,     /* the client's clock is outside the window */
    WR_HSF_MALFORMED, /* authenticated but malformed, trailing bytes, or a bad confirmation */
    WR_HSF_CIPHER,    /* no frame cipher in common (--cipher) */
    WR_HSF_TIMEOUT,   /* not done within the handshake timeout */
    WR_HSF_CLOSED,    /* the peer closed or reset before the end */
    WR_HSF_INTERNAL,  /* memory, thread pool or crypto failure on this side */
    WR_HSF_KINDS
};
/* "key", "replay", "clock", "malformed", "cipher", "timeout", "closed", "internal". */
const char *wr_hs_failure_name(int kind);

/* Server-side state shared by every session of one listener: the users' derived handshake keys,
 * the replay set and handshake counters. Loop thread only: a session copies its user's config
 * as soon as its first message authenticates, so the worker threads never read this and the keys
 * may be replaced while handshakes run. */
typedef struct wr_session_server {
    wr_hs_config *keys;              /* one per user, tried in this order */
    char (*names)[WR_USER_NAME_MAX]; /* names[i] is the user of keys[i] */
    size_t nkeys;
    uint64_t not_before;
    int cipher; /* frame cipher accepted: WR_HS_CIPHER_AUTO or one wr_aead_alg */
    wr_replay *replay;
    uint32_t dh_inflight;       /* respond steps queued on the threadpool right now */
    uint64_t handshakes_ok;     /* key confirmed */
    uint64_t handshakes_failed; /* sent to the probe sink */
    uint64_t handshakes_failed_by[WR_HSF_KINDS];
} wr_session_server_t;

/* One key, the user WR_USER_DEFAULT. not_before: refuse handshakes timestamped before this (Unix
 * milliseconds; 0 = now, i.e. process or listener start, which closes the replay gap a restart
 * would open). 0 or a negative code. */
int wr_session_server_new(const uint8_t psk[32], uint64_t not_before, wr_session_server_t **out);
/* Replaces the users (at least one; names unique). Sessions keep the user they authenticated as.
 * 0, or UV_EINVAL (bad name, duplicate, no key) / UV_ENOMEM with the old users kept. */
int wr_session_server_set_keys(wr_session_server_t *srv, const wr_session_key *keys, size_t n);
/* The frame cipher the server accepts (WR_HS_CIPHER_AUTO or one wr_aead_alg), for every user. */
void wr_session_server_set_cipher(wr_session_server_t *srv, int cipher);
/* Only once no session uses it. */
void wr_session_server_free(wr_session_server_t *srv);

typedef struct wr_session_config {
    const uint8_t *psk; /* 32 bytes (wr_key); the client needs it, a server uses hs_server */
    int is_server;
    uint32_t window; /* per-stream receive window; default 256 KiB, at least 64 KiB */
    /* Window auto-tuning: a stream whose sender runs out of credit while its consumer keeps up
     * gets its window doubled, up to window_max (default 4 MiB), as long as the extra granted
     * to all streams of the session stays within rx_budget (default 16 MiB). A stalled stream
     * never grows. window_max = window turns tuning off. */
    uint32_t window_max;
    uint32_t rx_budget;
    /* Receive total: once this many bytes wait in the session's receive queues (streams whose
     * consumer does not read), WINDOW updates are held back until it falls to 3/4, so peers
     * wait instead of memory growing (default 64 MiB). */
    size_t rx_limit;
    uint32_t max_streams;  /* concurrent streams per session (both ways); default 1024 */
    uint32_t max_payload;  /* largest frame payload sent (default WR_SESSION_FRAME_SEND_DEFAULT),
                              never more than the peer said it accepts: every end accepts
                              WR_FRAME_MAX_LIMIT and says so in the handshake; a peer that says
                              nothing gets WR_FRAME_MAX_DEFAULT */
    uint32_t keepalive_ms; /* PING after this long without receiving; dead after 3x */
    uint32_t handshake_timeout_ms; /* default 10000 */
    int cipher; /* frame cipher: WR_HS_CIPHER_AUTO or a wr_aead_alg the client offers alone (a
                   server's is wr_session_server_set_cipher's) */
    size_t stream_high_water; /* per-stream send queue watermark; default WR_EP_HIGH_WATER_DEFAULT
                                 (wr_relay replaces it with its write_cap) */
    wr_session_server_t *hs_server; /* server only */
    /* Probe sink (server, any failure before or at the frame layer): read and discard, then close
     * with RST after a uniform random delay in [min, max] ms. 0 = 60 s / 180 s. Tests shorten it.
     */
    uint32_t probe_close_min_ms;
    uint32_t probe_close_max_ms;
} wr_session_config;

/* Why a session ended (on_closed's reason). */
enum wr_session_reason {
    WR_SESSION_CLOSED_LOCALLY = 0, /* wr_session_close */
    WR_SESSION_PEER_ENDED,         /* SESSION_END received: clean end */
    WR_SESSION_GOAWAY_DRAINED,     /* goaway (either side) and the last stream ended */
    WR_SESSION_HANDSHAKE_FAILED,   /* server: msg1 or first frame rejected (after the probe sink);
                                      client: answer malformed or cut short */
    WR_SESSION_HANDSHAKE_TIMEOUT,  /* no complete handshake within handshake_timeout_ms */
    WR_SESSION_AUTH_FAILED,        /* client: no valid answer (wrong key, not a warren relay) */
    WR_SESSION_UNANSWERED,         /* client: the carrier closed before any answer (a relay dropping
                                      connections without the key under a flood): worth a retry */
    WR_SESSION_PEER_DEAD,          /* nothing received for 3 x keepalive_ms */
    WR_SESSION_TRUNCATED,          /* carrier ended without SESSION_END */
    WR_SESSION_CARRIER_ERROR,      /* carrier read/write error */
    WR_SESSION_PROTOCOL_ERROR,     /* authenticated peer broke the mux rules */
    WR_SESSION_NOMEM,
};
const char *wr_session_reason_name(int reason);

typedef struct wr_session_cbs {
    /* client: handshake done; server: key confirmed (first client frame decrypted) */
    void (*on_ready)(wr_session_t *s);
    /* peer opened a stream; answer with wr_stream_accept / wr_stream_reject, possibly later */
    void (*on_stream_open)(wr_session_t *s, wr_stream_t *st, const uint8_t *target, size_t len);
    /* once; detail is a static or session-owned string valid during the call */
    void (*on_closed)(wr_session_t *s, int reason, const char *detail);
    /* server, optional: the handshake was refused and the connection went to the probe sink
     * (on_closed follows 60-180 s later); for per-address limits */
    void (*on_rejected)(wr_session_t *s);
    /* server, optional: the client's first message authenticated under the key and is no
     * replay, so the peer holds the key; the key exchange runs next (on_ready once the client
     * confirms). A relay stops counting it among the connections a flood may push out. */
    void (*on_verified)(wr_session_t *s);
} wr_session_cbs;

/* Takes the carrier (connected, not reading). The client sends msg1 at once. cfg and cbs are
 * copied. NULL only on bad arguments or no memory (the carrier is then still the caller's). */
wr_session_t *wr_session_new(uv_loop_t *loop, wr_endpoint_t *carrier, const wr_session_config *cfg,
                             const wr_session_cbs *cbs, void *data);
/* A front door that must decide before any session exists (a WebSocket upgrade is answered 101
 * only when it authenticates) checks the first handshake message here: 0 when it authenticates,
 * is no replay and is whole (its salt is then recorded), else -1. */
int wr_session_server_check(wr_session_server_t *srv, const uint8_t *msg1, size_t len,
                            wr_hs_server *out);
/* Server: like wr_session_new for a carrier whose first message wr_session_server_check passed
 * (the carrier does not deliver it again): the key exchange starts at once. */
wr_session_t *wr_session_new_checked(uv_loop_t *loop, wr_endpoint_t *carrier,
                                     const wr_session_config *cfg, const wr_session_cbs *cbs,
                                     void *data, const wr_hs_server *checked);
void *wr_session_data(wr_session_t *s);
/* Server: the name of the user whose key the client's first message authenticated under ("" before
 * that, and on a client). Lives as long as the session. */
const char *wr_session_user(const wr_session_t *s);
void wr_session_set_data(wr_session_t *s, void *data);
int wr_session_is_server(const wr_session_t *s);
/* 1 once on_ready fired and until the session ends. */
int wr_session_is_ready(const wr_session_t *s);

/* Opens a stream (client ids odd, server ids even); target (<= WR_SESSION_TARGET_MAX bytes) is
 * opaque to the mux. Allowed before on_ready (sent once keys exist) and on both sides. Data may be
 * written at once (0-RTT, up to WR_SESSION_WINDOW_MIN before OPEN_ACK). on_open reports
 * OPEN_ACK (status 0), OPEN_FAIL (UV_ECONNREFUSED + the peer's reason), or a session end / RST /
 * limit before the answer (negative libuv code + reason); while the open is pending, failures come
 * only through on_open, never through the endpoint's on_error. Whatever the status, the caller
 * closes the endpoint. NULL only on bad arguments (target too long) or no memory. */
wr_stream_t *wr_session_open_stream(wr_session_t *s, const uint8_t *target, size_t len,
                                    void (*on_open)(wr_stream_t *st, int status,
                                                    const char *reason),
                                    void *data);
/* Sends OPEN_ACK; early data is delivered once the owner starts reading. If the stream died
 * meanwhile the endpoint reports on_error. 0, or UV_EINVAL if already answered. */
int wr_stream_accept(wr_stream_t *st);
/* OPEN_FAIL with a short reason (cut to WR_SESSION_REASON_MAX); frees the stream. */
void wr_stream_reject(wr_stream_t *st, const char *reason);
wr_endpoint_t *wr_stream_endpoint(wr_stream_t *st);
wr_stream_t *wr_stream_from_endpoint(wr_endpoint_t *ep); /* NULL if ep is not a stream */
uint32_t wr_stream_id(const wr_stream_t *st);
wr_session_t *wr_stream_session(const wr_stream_t *st);
void *wr_stream_data(const wr_stream_t *st); /* the open_stream data (not the endpoint's) */
void wr_stream_set_data(wr_stream_t *st, void *data);

typedef struct wr_stream_stats {
    size_t rx_buffered; /* received, not yet delivered (always <= the receive window) */
    size_t rx_peak;     /* highest rx_buffered seen */
    size_t tx_queued;   /* written, not yet sealed (waiting for credit or the carrier) */
    uint32_t tx_credit; /* bytes the peer will still accept */
    uint32_t rx_window; /* current receive window (auto-tuned, <= window_max) */
    uint32_t rx_credit; /* bytes the peer may still send */
} wr_stream_stats;
void wr_stream_get_stats(const wr_stream_t *st, wr_stream_stats *out);

/* No new streams either way; the session ends (GOAWAY_DRAINED) when the last stream ends. */
void wr_session_goaway(wr_session_t *s);
/* Server, before the key is proved (handshake or probe sink): reset the connection now, the same
 * way the probe sink ends; on_closed follows from the loop. A ready session is closed instead. */
void wr_session_drop(wr_session_t *s);
/* SESSION_END then close the carrier; streams get on_error (UV_ECONNABORTED) or, while opening,
 * on_open. on_closed follows from the loop. Safe to call more than once. */
void wr_session_close(wr_session_t *s);
/* wr_session_close telling the peer why: SESSION_END carries the text (cut to
 * WR_SESSION_REASON_MAX bytes), and the peer's reason reads "peer ended the session: WHY". */
void wr_session_close_because(wr_session_t *s, const char *why);

typedef struct wr_session_stats {
    uint64_t bytes_in, bytes_out; /* carrier bytes */
    uint64_t frames_in, frames_out;
    uint64_t streams_opened, streams_active, rtt_us_last;
    uint64_t carrier_writes; /* carrier write calls (batching: frames_out / carrier_writes) */
    size_t rx_buffered;      /* all streams */
    int cipher;              /* the frames' wr_aead_alg once keyed, else 0 */
} wr_session_stats;
void wr_session_get_stats(const wr_session_t *s, wr_session_stats *out);

/* Frees this thread's cache of idle queue nodes (at exit, so leak checkers stay quiet; like
 * wr_buf_cache_trim). */
void wr_session_cache_trim(void);

#endif
