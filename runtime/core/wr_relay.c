#include "wr_relay.h"

#include "wr_buf.h"

#include <stdlib.h>

/* While the process is over its buffer budget, a paused relay looks again this often. */
#define BUDGET_POLL_MS 20

static _Thread_local size_t budget = WR_RELAY_BUDGET_DEFAULT;

/* Direction i carries bytes read from ep[i] into ep[1 - i]. */
struct dir {
    unsigned eof : 1;     /* source sent EOF */
    unsigned done : 1;    /* sink's write side shut down after flushing */
    unsigned paused : 1;  /* source reading stopped for backpressure */
    unsigned waiting : 1; /* ... because the process is over its buffer budget */
    size_t peak;
};

struct wr_relay {
    uv_loop_t *loop;
    wr_endpoint_t *ep[2];
    uv_timer_t idle;
    wr_relay_close_cb cb;
    void *data;
    uint64_t idle_ms;
    uint64_t last_active; /* uv_now at the last read or drain */
    uint64_t start_ns;
    uint64_t end_ns;
    struct dir dir[2];
    uint32_t pauses;
    void (*tap)(wr_relay_t *r, int dir, const char *base, size_t len, void *data);
    size_t tap_left[2];
    void (*on_eof)(wr_relay_t *r, int side, void *data);
    int pending_closes;
    int ending;
    wr_relay_result_t res;
};

static int side_of(const wr_relay_t *r, const wr_endpoint_t *ep)
{
    return ep == r->ep[1];
}

static void maybe_done(wr_relay_t *r)
{
    if (--r->pending_closes > 0) return;
    r->cb(r, &r->res, r->data);
    free(r);
}

static void ep_closed(wr_endpoint_t *ep)
{
    wr_relay_t *r = ep->data;
    /* Capture counters before the endpoint's memory goes away. */
    int i = side_of(r, ep);
    if (i == 1)
        r->res.bytes_ab = ep->bytes_written;
    else
        r->res.bytes_ba = ep->bytes_written;
    r->ep[i] = NULL;
    maybe_done(r);
}

static void timer_closed(uv_handle_t *h)
{
    maybe_done(h->data);
}

static void relay_end(wr_relay_t *r, enum wr_relay_reason reason, int err, int side)
{
    if (r->ending) return;
    r->ending = 1;
    r->end_ns = uv_hrtime();
    r->res.reason = reason;
    r->res.err = err;
    r->res.err_side = side;
    r->res.duration_ms = (r->end_ns - r->start_ns) / 1000000u;
    /* Carry a failure as a reset so the other peer sees truncation, never a clean EOF. */
    enum wr_close_mode mode =
        (reason == WR_RELAY_ERROR || reason == WR_RELAY_RESET) ? WR_CLOSE_RESET : WR_CLOSE_GRACEFUL;
    r->pending_closes = 3;
    uv_close((uv_handle_t *)&r->idle, timer_closed);
    wr_endpoint_close(r->ep[0], mode);
    wr_endpoint_close(r->ep[1], mode);
}

static void relay_fail(wr_relay_t *r, int err, int side)
{
    relay_end(r, err == UV_ECONNRESET ? WR_RELAY_RESET : WR_RELAY_ERROR, err, side);
}

static void timer_cb(uv_timer_t *t);

static void on_read(wr_endpoint_t *src, wr_buf_t *b, const char *base, size_t len)
{
    wr_relay_t *r = src->data;
    int i = side_of(r, src);
    wr_endpoint_t *sink = r->ep[1 - i];
    r->last_active = uv_now(r->loop);
    if (r->tap_left[i]) {
        size_t n = len < r->tap_left[i] ? len : r->tap_left[i];
        r->tap_left[i] -= n;
        r->tap(r, i, base, n, r->data);
    }
    int rc = wr_endpoint_write(sink, b, base, len);
    if (rc < 0) {
        relay_fail(r, rc, 1 - i);
        return;
    }
    if (sink->queued > r->dir[i].peak) r->dir[i].peak = sink->queued;
    if (wr_endpoint_over_high_water(sink)) {
        /* The sink's on_drain (at low water) restarts us. */
        wr_endpoint_read_stop(src);
        r->dir[i].paused = 1;
        r->pauses++;
    } else if (budget && wr_buf_live_bytes() >= budget) {
        /* New data waits instead of growing memory; the timer looks again. */
        wr_endpoint_read_stop(src);
        r->dir[i].paused = r->dir[i].waiting = 1;
        r->pauses++;
        uv_timer_start(&r->idle, timer_cb, BUDGET_POLL_MS, 0);
    }
}

static void on_drain(wr_endpoint_t *sink)
{
    wr_relay_t *r = sink->data;
    int i = 1 - side_of(r, sink);
    r->last_active = uv_now(r->loop);
    if (!r->dir[i].paused || r->dir[i].waiting || r->dir[i].eof || r->ending) return;
    r->dir[i].paused = 0;
    int rc = wr_endpoint_read_start(r->ep[i]);
    if (rc < 0) relay_fail(r, rc, i);
}

static void on_eof(wr_endpoint_t *src)
{
    wr_relay_t *r = src->data;
    int i = side_of(r, src);
    r->dir[i].eof = 1;
    if (r->on_eof) r->on_eof(r, i, r->data);
    /* Half-close: the sink's write side closes once what we queued has flushed. */
    int rc = wr_endpoint_shutdown(r->ep[1 - i]);
    if (rc < 0) relay_fail(r, rc, 1 - i);
}

static void on_shutdown(wr_endpoint_t *sink, int status)
{
    wr_relay_t *r = sink->data;
    int s = side_of(r, sink);
    if (status < 0) {
        relay_fail(r, status, s);
        return;
    }
    r->dir[1 - s].done = 1;
    if (r->dir[0].done && r->dir[1].done) relay_end(r, WR_RELAY_EOF, 0, -1);
}

static void on_error(wr_endpoint_t *ep, int err)
{
    wr_relay_t *r = ep->data;
    relay_fail(r, err, side_of(r, ep));
}

static const wr_endpoint_cbs_t relay_cbs = {
    .on_read = on_read,
    .on_eof = on_eof,
    .on_error = on_error,
    .on_drain = on_drain,
    .on_shutdown = on_shutdown,
    .on_closed = ep_closed,
};

/* Directions waiting for the budget read again once buffers fell to 3/4 of it; 1 if any still
 * waits. Waiting is not idleness: it counts as activity. */
static int budget_wait(wr_relay_t *r)
{
    int still = 0;
    for (int i = 0; i < 2; i++) {
        if (!r->dir[i].waiting) continue;
        if (budget && wr_buf_live_bytes() > budget / 4 * 3) {
            still = 1;
            continue;
        }
        r->dir[i].waiting = r->dir[i].paused = 0;
        if (r->dir[i].eof) continue;
        int rc = wr_endpoint_read_start(r->ep[i]);
        if (rc < 0) {
            relay_fail(r, rc, i);
            return 0;
        }
    }
    if (still) r->last_active = uv_now(r->loop);
    return still;
}

/* The idle timeout and the budget poll share one timer. The idle part is re-armed lazily: reads
 * only stamp last_active, so the hot path never touches the timer heap. */
static void timer_cb(uv_timer_t *t)
{
    wr_relay_t *r = t->data;
    if (budget_wait(r)) {
        uv_timer_start(&r->idle, timer_cb, BUDGET_POLL_MS, 0);
        return;
    }
    if (r->ending || !r->idle_ms) return;
    uint64_t now = uv_now(r->loop);
    uint64_t quiet = now - r->last_active;
    if (quiet >= r->idle_ms) {
        relay_end(r, WR_RELAY_IDLE, 0, -1);
        return;
    }
    uv_timer_start(&r->idle, timer_cb, r->idle_ms - quiet, 0);
}

void wr_relay_set_budget(size_t bytes)
{
    budget = bytes;
}

size_t wr_relay_get_budget(void)
{
    return budget;
}

wr_relay_t *wr_relay_start(uv_loop_t *loop, wr_endpoint_t *a, wr_endpoint_t *b,
                           const wr_relay_opts_t *opts, wr_relay_close_cb cb, void *data)
{
    wr_relay_t *r = calloc(1, sizeof(*r));
    if (r == NULL) return NULL;
    size_t cap = opts && opts->write_cap ? opts->write_cap : WR_RELAY_WRITE_CAP_DEFAULT;
    size_t low = opts && opts->low_water ? opts->low_water : cap / 4;
    r->loop = loop;
    r->ep[0] = a;
    r->ep[1] = b;
    r->cb = cb;
    r->data = data;
    r->idle_ms = opts ? opts->idle_timeout_ms : 0;
    r->on_eof = opts ? opts->on_eof : NULL;
    if (opts && opts->tap) {
        r->tap = opts->tap;
        r->tap_left[0] = r->tap_left[1] = opts->tap_limit;
    }
    r->start_ns = uv_hrtime();
    r->last_active = uv_now(loop);
    r->res.err_side = -1;
    uv_timer_init(loop, &r->idle);
    r->idle.data = r;
    for (int i = 0; i < 2; i++) {
        wr_endpoint_set_callbacks(r->ep[i], &relay_cbs, r);
        wr_endpoint_set_watermarks(r->ep[i], low, cap);
    }
    if (r->idle_ms) uv_timer_start(&r->idle, timer_cb, r->idle_ms, 0);
    for (int i = 0; i < 2; i++) {
        int rc = wr_endpoint_read_start(r->ep[i]);
        if (rc < 0) {
            relay_fail(r, rc, i);
            break;
        }
    }
    return r;
}

void wr_relay_close(wr_relay_t *r)
{
    relay_end(r, WR_RELAY_CLOSED, 0, -1);
}

void wr_relay_get_stats(const wr_relay_t *r, wr_relay_stats_t *out)
{
    const wr_endpoint_t *a = r->ep[0], *b = r->ep[1];
    out->bytes_ab = b ? b->bytes_written : r->res.bytes_ab;
    out->bytes_ba = a ? a->bytes_written : r->res.bytes_ba;
    out->buffered_ab = b ? b->queued : 0;
    out->buffered_ba = a ? a->queued : 0;
    out->peak_buffered_ab = r->dir[0].peak;
    out->peak_buffered_ba = r->dir[1].peak;
    out->paused_a = r->dir[0].paused;
    out->paused_b = r->dir[1].paused;
    out->pauses = r->pauses;
    out->eof_a = r->dir[0].eof;
    out->eof_b = r->dir[1].eof;
}

void *wr_relay_data(const wr_relay_t *r)
{
    return r->data;
}

const char *wr_relay_reason_name(enum wr_relay_reason reason)
{
    switch (reason) {
    case WR_RELAY_EOF:
        return "eof";
    case WR_RELAY_IDLE:
        return "idle";
    case WR_RELAY_ERROR:
        return "error";
    case WR_RELAY_RESET:
        return "reset";
    case WR_RELAY_CLOSED:
        return "closed";
    }
    return "?";
}
