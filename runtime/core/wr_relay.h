/* Moves bytes between two endpoints without copying: a chunk read from one side is written to
 * the other by reference. Each direction's queued bytes are capped (reading the source stops at
 * the cap and resumes at the low-water mark), EOF is carried across as a half-close, an idle
 * timer ends silent relays, and the owner learns bytes, duration and why it ended. */
#ifndef WR_RELAY_H
#define WR_RELAY_H

#include "wr_endpoint.h"

#include <stdint.h>
#include <uv.h>

typedef struct wr_relay wr_relay_t;

enum wr_relay_reason {
    WR_RELAY_EOF = 0, /* both directions ended with EOF and flushed */
    WR_RELAY_IDLE,    /* no bytes either way for idle_timeout_ms */
    WR_RELAY_ERROR,   /* an endpoint failed; err holds the libuv code */
    WR_RELAY_RESET,   /* an endpoint's peer reset the connection (err = UV_ECONNRESET) */
    WR_RELAY_CLOSED,  /* wr_relay_close by the owner */
};

#define WR_RELAY_WRITE_CAP_DEFAULT (1024 * 1024)
/* Process-wide (per loop thread) budget for bytes held in buffers (wr_buf_live_bytes). */
#define WR_RELAY_BUDGET_DEFAULT (256u * 1024 * 1024)

typedef struct wr_relay_opts {
    size_t write_cap;         /* per-direction queued-bytes cap (high-water); 0 = default */
    size_t low_water;         /* resume reading at or below this; 0 = write_cap / 4 */
    uint64_t idle_timeout_ms; /* 0 = no idle timeout */
    /* Opt-in data tap: shown the first tap_limit bytes of each direction as they pass (dir 0 is
     * A to B), before they are written on. It only looks; the bytes go on unchanged. */
    void (*tap)(wr_relay_t *r, int dir, const char *base, size_t len, void *data);
    size_t tap_limit;
    /* Told once when a side has finished sending (side 0 is A), before its EOF is carried over;
     * for accounting only: it must not close the relay or its endpoints. */
    void (*on_eof)(wr_relay_t *r, int side, void *data);
} wr_relay_opts_t;

typedef struct wr_relay_result {
    uint64_t bytes_ab; /* delivered from A to B */
    uint64_t bytes_ba;
    uint64_t duration_ms;
    enum wr_relay_reason reason;
    int err;      /* libuv error for ERROR/RESET, else 0 */
    int err_side; /* 0 = A, 1 = B, -1 = none */
} wr_relay_result_t;

typedef struct wr_relay_stats {
    uint64_t bytes_ab, bytes_ba;
    size_t buffered_ab, buffered_ba;           /* queued toward B / toward A right now */
    size_t peak_buffered_ab, peak_buffered_ba; /* highest seen */
    int paused_a, paused_b;                    /* reading from A / B stopped by backpressure */
    uint32_t pauses;                           /* times either side was paused */
    int eof_a, eof_b;                          /* A / B finished sending */
} wr_relay_stats_t;

/* Called once, after both endpoints and the timer are closed; r is freed when it returns. */
typedef void (*wr_relay_close_cb)(wr_relay_t *r, const wr_relay_result_t *res, void *data);

/* Takes ownership of a and b (connected, not yet reading) and starts relaying. opts may be
 * NULL. Returns NULL only when out of memory, in which case the caller still owns a and b.
 * Failures after that (e.g. read_start) end the relay through close_cb. */
wr_relay_t *wr_relay_start(uv_loop_t *loop, wr_endpoint_t *a, wr_endpoint_t *b,
                           const wr_relay_opts_t *opts, wr_relay_close_cb cb, void *data);

/* Ends the relay now (graceful close of both sides, queued bytes dropped); reason CLOSED.
 * No-op if it is already ending. */
void wr_relay_close(wr_relay_t *r);

void wr_relay_get_stats(const wr_relay_t *r, wr_relay_stats_t *out);

/* While buffers hold budget bytes or more, every relay stops reading new data (it waits, polling
 * every 20 ms, until they fall to 3/4): memory stays bounded however many streams stall, at the
 * price of slowing all of them. 0 = no budget. This thread's relays only. */
void wr_relay_set_budget(size_t bytes);
size_t wr_relay_get_budget(void);
void *wr_relay_data(const wr_relay_t *r);
const char *wr_relay_reason_name(enum wr_relay_reason reason);

#endif
