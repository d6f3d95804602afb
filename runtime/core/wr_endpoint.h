/* One side of a relayed connection. Today a TCP socket (wr_tcp_endpoint); later a stream inside
 * a multiplexed encrypted session. The relay only talks to this interface, so any transport that
 * can read into chunks, queue chunk writes, half-close and close can be relayed.
 *
 * Contract for implementations:
 *  - on_read hands a borrowed chunk slice; a consumer that keeps it takes a reference.
 *  - write() takes its own reference on the chunk if it cannot send at once, and accounts the
 *    not-yet-sent bytes in `queued` through wr_endpoint__queue_add/__queue_done, which fire
 *    on_drain once `queued` falls to low_water after having reached high_water.
 *  - shutdown() half-closes the write side after queued writes flush, then on_shutdown.
 *  - close() may be called at any time, once; queued writes are dropped. After it no callback
 *    fires except on_closed, and the endpoint's memory is gone when on_closed returns.
 *  - No callback is invoked from inside an ops call (they come from the loop), so callers may
 *    hold state across ops calls without re-entrancy surprises. */
#ifndef WR_ENDPOINT_H
#define WR_ENDPOINT_H

#include "wr_buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct wr_endpoint wr_endpoint_t;

enum wr_close_mode {
    WR_CLOSE_GRACEFUL = 0, /* orderly end (TCP: FIN) */
    WR_CLOSE_RESET = 1,    /* abortive end (TCP: RST), so the peer sees a truncation as one */
};

typedef struct wr_endpoint_ops {
    const char *kind;
    int (*read_start)(wr_endpoint_t *ep);
    int (*read_stop)(wr_endpoint_t *ep);
    /* Sends base[0..len) (inside chunk b). 0 or a libuv error (UV_EPIPE after shutdown/close). */
    int (*write)(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len);
    int (*shutdown)(wr_endpoint_t *ep);
    void (*close)(wr_endpoint_t *ep, enum wr_close_mode mode);
    /* Optional: words for the user when the carrier itself refused the connection (a WebSocket
     * upgrade answered with an HTTP error...), or NULL. */
    const char *(*why)(wr_endpoint_t *ep);
} wr_endpoint_ops_t;

typedef struct wr_endpoint_cbs {
    void (*on_read)(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len);
    void (*on_eof)(wr_endpoint_t *ep);                  /* peer finished sending */
    void (*on_error)(wr_endpoint_t *ep, int err);       /* libuv code; reported once */
    void (*on_drain)(wr_endpoint_t *ep);                /* queued fell to low_water */
    void (*on_shutdown)(wr_endpoint_t *ep, int status); /* our write side is closed */
    void (*on_closed)(wr_endpoint_t *ep);
} wr_endpoint_cbs_t;

enum {
    WR_EP_READING = 1u << 0,
    WR_EP_EOF = 1u << 1,  /* read side ended */
    WR_EP_SHUT = 1u << 2, /* shutdown requested */
    WR_EP_CLOSING = 1u << 3,
    WR_EP_ERRORED = 1u << 4,
    WR_EP_DRAIN_ARMED = 1u << 5,
};

/* Defaults for the write-queue watermarks (the relay overrides them with its own cap). */
#define WR_EP_HIGH_WATER_DEFAULT (1024 * 1024)
#define WR_EP_LOW_WATER_DEFAULT  (256 * 1024)

struct wr_endpoint {
    const wr_endpoint_ops_t *ops;
    const wr_endpoint_cbs_t *cbs;
    void *data;             /* owner's pointer */
    uint64_t bytes_read;    /* payload bytes received from the peer */
    uint64_t bytes_written; /* payload bytes handed to the transport (sent) */
    size_t queued;          /* accepted by write() but not yet sent */
    size_t high_water;
    size_t low_water;
    /* Bytes a framing carrier would like free in front of written data: a writer that leaves
     * them and hands over the chunk's only reference lets it frame in place, without a copy (it
     * then gives up the bytes from base - headroom on). */
    size_t headroom;
    /* A carrier whose every message costs a request asks the session to ping it no more often
     * than this (0: the session's own setting). */
    uint32_t keepalive_min_ms;
    unsigned flags;
};

static inline void wr_endpoint__init(wr_endpoint_t *ep, const wr_endpoint_ops_t *ops,
                                     const wr_endpoint_cbs_t *cbs)
{
    ep->ops = ops;
    ep->cbs = cbs;
    ep->data = NULL;
    ep->bytes_read = 0;
    ep->bytes_written = 0;
    ep->queued = 0;
    ep->high_water = WR_EP_HIGH_WATER_DEFAULT;
    ep->low_water = WR_EP_LOW_WATER_DEFAULT;
    ep->headroom = 0;
    ep->keepalive_min_ms = 0;
    ep->flags = 0;
}

/* Implementations: n more bytes wait in the transport's queue. */
static inline void wr_endpoint__queue_add(wr_endpoint_t *ep, size_t n)
{
    ep->queued += n;
    if (ep->queued >= ep->high_water) ep->flags |= WR_EP_DRAIN_ARMED;
}

/* Implementations: n queued bytes left the queue (sent = 1 when they reached the transport). */
static inline void wr_endpoint__queue_done(wr_endpoint_t *ep, size_t n, int sent)
{
    ep->queued -= n;
    if (sent) ep->bytes_written += n;
    if ((ep->flags & (WR_EP_DRAIN_ARMED | WR_EP_CLOSING)) == WR_EP_DRAIN_ARMED &&
        ep->queued <= ep->low_water) {
        ep->flags &= ~WR_EP_DRAIN_ARMED;
        if (ep->cbs->on_drain) ep->cbs->on_drain(ep);
    }
}

/* Implementations: tells the owner of a failure, once, and never after close(). */
static inline void wr_endpoint__report_error(wr_endpoint_t *ep, int err)
{
    if (ep->flags & (WR_EP_ERRORED | WR_EP_CLOSING)) return;
    ep->flags |= WR_EP_ERRORED;
    if (ep->cbs->on_error) ep->cbs->on_error(ep, err);
}

/* Implementations: tells the owner that the write side closed, unless it has closed us. */
static inline void wr_endpoint__report_shutdown(wr_endpoint_t *ep, int status)
{
    if (!(ep->flags & WR_EP_CLOSING) && ep->cbs->on_shutdown) ep->cbs->on_shutdown(ep, status);
}

static inline void wr_endpoint_set_callbacks(wr_endpoint_t *ep, const wr_endpoint_cbs_t *cbs,
                                             void *data)
{
    ep->cbs = cbs;
    ep->data = data;
}

static inline void wr_endpoint_set_watermarks(wr_endpoint_t *ep, size_t low, size_t high)
{
    ep->low_water = low < high ? low : high;
    ep->high_water = high;
}

static inline int wr_endpoint_read_start(wr_endpoint_t *ep)
{
    return ep->ops->read_start(ep);
}

static inline int wr_endpoint_read_stop(wr_endpoint_t *ep)
{
    return ep->ops->read_stop(ep);
}

static inline int wr_endpoint_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    return ep->ops->write(ep, b, base, len);
}

static inline int wr_endpoint_shutdown(wr_endpoint_t *ep)
{
    return ep->ops->shutdown(ep);
}

static inline void wr_endpoint_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    ep->ops->close(ep, mode);
}

static inline const char *wr_endpoint_why(wr_endpoint_t *ep)
{
    return ep->ops->why ? ep->ops->why(ep) : NULL;
}

static inline int wr_endpoint_is_closing(const wr_endpoint_t *ep)
{
    return (ep->flags & WR_EP_CLOSING) != 0;
}

/* True when the writer should stop feeding this endpoint until on_drain. */
static inline int wr_endpoint_over_high_water(const wr_endpoint_t *ep)
{
    return ep->queued >= ep->high_water;
}

#endif
