/* Shared by the session tests: a loop with a watchdog, a deterministic pattern chunk, a carrier
 * "tap" endpoint (records, flips a bit, truncates or freezes what the client sends), a client /
 * server session pair over real loopback TCP, and test streams that send the pattern, hash what
 * they receive with SHA-256, echo, stall, and close when both directions ended. */
#ifndef SESSION_HARNESS_H
#define SESSION_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <mbedtls/sha256.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wr_buf.h"
#include "wr_crypto.h"
#include "wr_io.h"
#include "wr_session.h"
#include "wr_session_int.h"
#include "wr_tcp_endpoint.h"
#include "loop_fixture.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static inline int never(void *arg)
{
    return 0;
}

/* Runs the loop for ms regardless (for "nothing happens" checks). */
static void run_for(uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    timed_out = 0;
    uv_timer_start(&t, watchdog_cb, ms, 0);
    while (!timed_out)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    timed_out = 0;
}

/* ---- pattern: 1 MiB of deterministic bytes, repeated for 64 KiB so any offset has a 64 KiB
 * contiguous slice; streams write slices of this one chunk (zero copy). ---- */

#define PAT_LEN (1u * MiB)
static wr_buf_t *pat;

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void pat_init(void)
{
    if (pat) return;
    pat = wr_buf_new(PAT_LEN + WR_BUF_SIZE);
    assert_non_null(pat);
    for (size_t i = 0; i < PAT_LEN; i += 8) {
        uint64_t w = splitmix(i);
        memcpy(pat->data + i, &w, 8);
    }
    memcpy(pat->data + PAT_LEN, pat->data, WR_BUF_SIZE);
}

/* ---- tap: a carrier endpoint wrapping the client's TCP endpoint ---- */

typedef struct tap_cfg {
    int64_t flip_first_at; /* bit flip inside the first write (msg1); -1 = none */
    int64_t flip_at;       /* bit flip at this offset after the first write; -1 = none */
    int flip_bit;
    int64_t cut_at; /* forward only this many bytes after the first write, then FIN; -1 = none */
    uint8_t *rec;   /* record everything written (up to rec_cap) */
    size_t rec_cap, *rec_len;
    size_t *first_len; /* length of the first write (msg1) */
    /* A slow path toward the client: what it reads arrives delay_ms late, at most pace bytes
     * per ms (pace 0: at once). */
    uint32_t delay_ms, pace;
} tap_cfg;

/* Bytes read from the carrier, waiting on the delay line. */
typedef struct held {
    struct held *next;
    wr_buf_t *b;
    const char *base;
    size_t len;
    uint64_t due_ms;
} held_t;

typedef struct tap {
    wr_endpoint_t base;
    wr_endpoint_t *in;
    tap_cfg cfg;
    size_t writes;
    uint64_t after;
    int cut;
    int frozen;
    uv_timer_t *line; /* the delay line's clock (NULL without one) */
    held_t *head, *tail;
    int eof_held;
    uint64_t budget, last_ms;
} tap_t;

static void tap_deliver(tap_t *t, wr_buf_t *b, const char *base, size_t len)
{
    t->base.bytes_read += len;
    if (t->base.cbs->on_read) t->base.cbs->on_read(&t->base, b, base, len);
}

/* Once a millisecond: what is due leaves, within the pace. */
static void tap_line_tick(uv_timer_t *timer)
{
    tap_t *t = timer->data;
    uint64_t now = now_ms();
    t->budget += (now - t->last_ms) * t->cfg.pace;
    if (t->budget > 2ull * t->cfg.pace) t->budget = 2ull * t->cfg.pace;
    t->last_ms = now;
    while (t->head && t->head->due_ms <= now && t->budget > 0 && !(t->base.flags & WR_EP_CLOSING)) {
        held_t *h = t->head;
        size_t n = h->len < t->budget ? h->len : (size_t)t->budget;
        const char *at = h->base;
        t->budget -= n;
        h->base += n;
        h->len -= n;
        tap_deliver(t, h->b, at, n);
        if (h->len) break;
        t->head = h->next;
        if (!t->head) t->tail = NULL;
        wr_buf_release(h->b);
        free(h);
    }
    if (!t->head && t->eof_held && !(t->base.flags & WR_EP_CLOSING)) {
        t->eof_held = 0;
        if (t->base.cbs->on_eof) t->base.cbs->on_eof(&t->base);
    }
}

static void tap_i_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    tap_t *t = ep->data;
    if (t->frozen) return;
    if (!t->line) {
        tap_deliver(t, b, base, len);
        return;
    }
    held_t *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    h->b = wr_buf_retain(b);
    h->base = base;
    h->len = len;
    h->due_ms = now_ms() + t->cfg.delay_ms;
    if (t->tail)
        t->tail->next = h;
    else
        t->head = h;
    t->tail = h;
}
static void tap_i_eof(wr_endpoint_t *ep)
{
    tap_t *t = ep->data;
    if (t->head) {
        t->eof_held = 1;
        return;
    }
    if (t->base.cbs->on_eof) t->base.cbs->on_eof(&t->base);
}
static void tap_i_error(wr_endpoint_t *ep, int err)
{
    tap_t *t = ep->data;
    if (t->base.cbs->on_error) t->base.cbs->on_error(&t->base, err);
}
static void tap_i_drain(wr_endpoint_t *ep) {}
static void tap_i_shutdown(wr_endpoint_t *ep, int status)
{
    tap_t *t = ep->data;
    if (!t->cut && t->base.cbs->on_shutdown) t->base.cbs->on_shutdown(&t->base, status);
}
static void tap_line_closed(uv_handle_t *h)
{
    free(h);
}
static void tap_i_closed(wr_endpoint_t *ep)
{
    tap_t *t = ep->data;
    if (t->line) uv_close((uv_handle_t *)t->line, tap_line_closed);
    while (t->head) {
        held_t *h = t->head;
        t->head = h->next;
        wr_buf_release(h->b);
        free(h);
    }
    if (t->base.cbs->on_closed) t->base.cbs->on_closed(&t->base);
    free(t);
}
static const wr_endpoint_cbs_t tap_inner_cbs = {
    .on_read = tap_i_read,
    .on_eof = tap_i_eof,
    .on_error = tap_i_error,
    .on_drain = tap_i_drain,
    .on_shutdown = tap_i_shutdown,
    .on_closed = tap_i_closed,
};

static int tap_read_start(wr_endpoint_t *ep)
{
    tap_t *t = (tap_t *)ep;
    return wr_endpoint_read_start(t->in);
}
static int tap_read_stop(wr_endpoint_t *ep)
{
    tap_t *t = (tap_t *)ep;
    return wr_endpoint_read_stop(t->in);
}
static int tap_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    tap_t *t = (tap_t *)ep;
    if (t->frozen || t->cut) return 0;
    if (t->cfg.rec && *t->cfg.rec_len + len <= t->cfg.rec_cap) {
        memcpy(t->cfg.rec + *t->cfg.rec_len, base, len);
        *t->cfg.rec_len += len;
    }
    int64_t flip = -1;
    size_t n = len;
    int cut_now = 0;
    if (t->writes++ == 0) {
        if (t->cfg.first_len) *t->cfg.first_len = len;
        if (t->cfg.flip_first_at >= 0 && (size_t)t->cfg.flip_first_at < len)
            flip = t->cfg.flip_first_at;
    } else {
        if (t->cfg.flip_at >= 0 && (uint64_t)t->cfg.flip_at >= t->after &&
            (uint64_t)t->cfg.flip_at < t->after + len)
            flip = (int64_t)((uint64_t)t->cfg.flip_at - t->after);
        if (t->cfg.cut_at >= 0 && t->after + len >= (uint64_t)t->cfg.cut_at) {
            n = (size_t)((uint64_t)t->cfg.cut_at - t->after);
            cut_now = 1;
        }
        t->after += len;
    }
    int rc = 0;
    if (flip >= 0 && (size_t)flip < n) {
        wr_buf_t *c = wr_buf_new(n);
        memcpy(c->data, base, n);
        c->data[flip] ^= (char)(1u << t->cfg.flip_bit);
        rc = wr_endpoint_write(t->in, c, c->data, n);
        wr_buf_release(c);
    } else if (n) {
        rc = wr_endpoint_write(t->in, b, base, n);
    }
    if (cut_now) {
        t->cut = 1;
        wr_endpoint_shutdown(t->in);
    }
    return rc;
}
static int tap_shutdown(wr_endpoint_t *ep)
{
    tap_t *t = (tap_t *)ep;
    if (t->cut) return 0;
    return wr_endpoint_shutdown(t->in);
}
static void tap_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    tap_t *t = (tap_t *)ep;
    if (ep->flags & WR_EP_CLOSING) return;
    ep->flags |= WR_EP_CLOSING;
    wr_endpoint_close(t->in, mode);
}
static const wr_endpoint_ops_t tap_ops = {
    .kind = "tap",
    .read_start = tap_read_start,
    .read_stop = tap_read_stop,
    .write = tap_write,
    .shutdown = tap_shutdown,
    .close = tap_close,
};
static const wr_endpoint_cbs_t no_ep_cbs;

static tap_t *tap_wrap(wr_endpoint_t *in, const tap_cfg *cfg)
{
    tap_t *t = calloc(1, sizeof(*t));
    wr_endpoint__init(&t->base, &tap_ops, &no_ep_cbs);
    t->in = in;
    t->cfg = *cfg;
    if (cfg->pace) {
        t->line = malloc(sizeof(*t->line));
        assert_non_null(t->line);
        uv_timer_init(&loop, t->line);
        t->line->data = t;
        t->last_ms = now_ms();
        uv_timer_start(t->line, tap_line_tick, 1, 1);
    }
    wr_endpoint_set_callbacks(in, &tap_inner_cbs, t);
    return t;
}

static tap_cfg tap_none(void)
{
    tap_cfg c;
    memset(&c, 0, sizeof(c));
    c.flip_first_at = c.flip_at = c.cut_at = -1;
    return c;
}

/* ---- test streams ---- */

typedef struct tstream {
    uint32_t id;
    wr_stream_t *st;
    wr_endpoint_t *ep;
    /* sending */
    uint64_t seed, to_send, sent;
    int shut_when_sent, shut_asked, shut_done;
    /* receiving */
    int hash;
    uint64_t received;
    mbedtls_sha256_context rx, tx;
    uint8_t rx_sum[32], tx_sum[32];
    int got_eof, err, closed, attached;
    int echo, stall, close_when_done;
    /* opening */
    int opened, open_status;
    char open_reason[160];
    uint64_t t_start_ns, t_done_ns;
} tstream_t;

static void ts_maybe_close(tstream_t *t)
{
    if (t->close_when_done && t->got_eof && t->shut_done && !(t->ep->flags & WR_EP_CLOSING))
        wr_endpoint_close(t->ep, WR_CLOSE_GRACEFUL);
}

static void ts_pump(tstream_t *t)
{
    if (t->ep->flags & WR_EP_CLOSING) return;
    while (t->sent < t->to_send && !wr_endpoint_over_high_water(t->ep)) {
        size_t off = (size_t)((t->seed * 4099 + t->sent) % PAT_LEN);
        size_t n =
            t->to_send - t->sent < WR_BUF_SIZE ? (size_t)(t->to_send - t->sent) : WR_BUF_SIZE;
        if (wr_endpoint_write(t->ep, pat, pat->data + off, n) < 0) return;
        if (t->hash) mbedtls_sha256_update_ret(&t->tx, (const uint8_t *)pat->data + off, n);
        t->sent += n;
    }
    if (t->sent == t->to_send && t->shut_when_sent && !t->shut_asked) {
        t->shut_asked = 1;
        if (t->hash) mbedtls_sha256_finish_ret(&t->tx, t->tx_sum);
        wr_endpoint_shutdown(t->ep);
    }
}

static void ts_on_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    tstream_t *t = ep->data;
    t->received += len;
    if (t->hash) mbedtls_sha256_update_ret(&t->rx, (const uint8_t *)base, len);
    if (t->echo) {
        assert_int_equal(wr_endpoint_write(ep, b, base, len), 0);
        if (wr_endpoint_over_high_water(ep)) wr_endpoint_read_stop(ep);
    }
}
static void ts_on_eof(wr_endpoint_t *ep)
{
    tstream_t *t = ep->data;
    t->got_eof = 1;
    t->t_done_ns = uv_hrtime();
    if (t->hash) mbedtls_sha256_finish_ret(&t->rx, t->rx_sum);
    if (t->echo && !t->shut_asked) {
        t->shut_asked = 1;
        wr_endpoint_shutdown(ep);
    }
    ts_maybe_close(t);
}
static void ts_on_error(wr_endpoint_t *ep, int err)
{
    tstream_t *t = ep->data;
    t->err = err;
    wr_endpoint_close(ep, WR_CLOSE_RESET);
}
static void ts_on_drain(wr_endpoint_t *ep)
{
    tstream_t *t = ep->data;
    if (t->echo && !t->got_eof && !t->stall) wr_endpoint_read_start(ep);
    ts_pump(t);
}
static void ts_on_shutdown(wr_endpoint_t *ep, int status)
{
    tstream_t *t = ep->data;
    t->shut_done = 1;
    ts_maybe_close(t);
}
static void ts_on_closed(wr_endpoint_t *ep)
{
    tstream_t *t = ep->data;
    t->closed = 1;
    t->ep = NULL;
}
static const wr_endpoint_cbs_t ts_cbs = {
    .on_read = ts_on_read,
    .on_eof = ts_on_eof,
    .on_error = ts_on_error,
    .on_drain = ts_on_drain,
    .on_shutdown = ts_on_shutdown,
    .on_closed = ts_on_closed,
};

static void ts_init(tstream_t *t, uint64_t seed, uint64_t to_send, int hash)
{
    memset(t, 0, sizeof(*t));
    t->seed = seed;
    t->to_send = to_send;
    t->shut_when_sent = 1;
    t->close_when_done = 1;
    t->hash = hash;
    if (hash) {
        mbedtls_sha256_init(&t->rx);
        mbedtls_sha256_init(&t->tx);
        mbedtls_sha256_starts_ret(&t->rx, 0);
        mbedtls_sha256_starts_ret(&t->tx, 0);
    }
}

static void ts_attach(tstream_t *t, wr_stream_t *st)
{
    t->st = st;
    t->id = wr_stream_id(st);
    t->ep = wr_stream_endpoint(st);
    t->attached = 1;
    t->t_start_ns = uv_hrtime();
    wr_endpoint_set_callbacks(t->ep, &ts_cbs, t);
    if (!t->stall) assert_int_equal(wr_endpoint_read_start(t->ep), 0);
    ts_pump(t);
}

static void ts_opened(wr_stream_t *st, int status, const char *reason)
{
    tstream_t *t = wr_stream_data(st);
    t->opened = 1;
    t->open_status = status;
    snprintf(t->open_reason, sizeof(t->open_reason), "%s", reason ? reason : "");
    if (status < 0 && !(t->ep->flags & WR_EP_CLOSING)) wr_endpoint_close(t->ep, WR_CLOSE_RESET);
}

/* Opens a client-side stream that sends to_send bytes (0-RTT: at once). */
static void ts_open(tstream_t *t, wr_session_t *s, const char *target)
{
    wr_stream_t *st =
        wr_session_open_stream(s, (const uint8_t *)target, strlen(target), ts_opened, t);
    assert_non_null(st);
    ts_attach(t, st);
}

/* ---- a session pair over loopback TCP ---- */

typedef struct pair pair_t;

typedef struct side {
    pair_t *p;
    wr_session_t *s;
    int ready, closed, reason, opens;
    char detail[200];
    uint64_t closed_ms;
    wr_session_stats fin;
} side_t;

struct pair {
    side_t c, s;
    wr_listener_t *lis;
    wr_session_server_t *shared;
    wr_session_config ccfg, scfg;
    uint8_t ckey[32], skey[32];
    int use_tap;
    tap_cfg tapc;
    tap_t *tap;
    uint64_t t0_ms;
    /* what a side does with a stream the peer opened */
    void (*on_open)(side_t *sd, wr_stream_t *st, const uint8_t *target, size_t len);
    void *app;
};

static void side_ready(wr_session_t *s)
{
    side_t *sd = wr_session_data(s);
    sd->ready = 1;
}
static void side_stream_open(wr_session_t *s, wr_stream_t *st, const uint8_t *target, size_t len)
{
    side_t *sd = wr_session_data(s);
    sd->opens++;
    if (sd->p->on_open)
        sd->p->on_open(sd, st, target, len);
    else
        wr_stream_reject(st, "no handler");
}
static void side_closed(wr_session_t *s, int reason, const char *detail)
{
    side_t *sd = wr_session_data(s);
    assert_false(sd->closed); /* once */
    sd->closed = 1;
    sd->reason = reason;
    sd->closed_ms = now_ms();
    snprintf(sd->detail, sizeof(sd->detail), "%s", detail ? detail : "");
    wr_session_get_stats(s, &sd->fin);
}
static const wr_session_cbs side_cbs = {
    .on_ready = side_ready,
    .on_stream_open = side_stream_open,
    .on_closed = side_closed,
};

static void pair_accept(wr_listener_t *l, int status)
{
    pair_t *p = wr_listener_data(l);
    uv_tcp_t *tcp;
    assert_int_equal(status, 0);
    assert_int_equal(wr_listener_accept(l, &tcp), 0);
    wr_endpoint_t *ep = wr_tcp_endpoint_new(tcp);
    p->s.s = wr_session_new(&loop, ep, &p->scfg, &side_cbs, &p->s);
    assert_non_null(p->s.s);
    wr_listener_close(l);
    p->lis = NULL;
}

static void pair_dialed(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    pair_t *p = data;
    assert_int_equal(status, 0);
    wr_endpoint_t *ep = wr_tcp_endpoint_new(tcp);
    if (p->use_tap) {
        p->tap = tap_wrap(ep, &p->tapc);
        ep = &p->tap->base;
    }
    p->c.s = wr_session_new(&loop, ep, &p->ccfg, &side_cbs, &p->c);
    assert_non_null(p->c.s);
}

static void pair_init(pair_t *p)
{
    memset(p, 0, sizeof(*p));
    p->c.p = p->s.p = p;
    for (int i = 0; i < 32; i++)
        p->ckey[i] = p->skey[i] = (uint8_t)(i * 7 + 1);
    p->ccfg.psk = p->ckey;
    p->scfg.is_server = 1;
    p->scfg.probe_close_min_ms = 200;
    p->scfg.probe_close_max_ms = 300;
    p->tapc = tap_none();
}

static void pair_start(pair_t *p)
{
    int port;
    if (p->shared == NULL) assert_int_equal(wr_session_server_new(p->skey, 0, &p->shared), 0);
    p->scfg.hs_server = p->shared;
    assert_int_equal(wr_listen(&loop, "127.0.0.1", 0, 0, pair_accept, p, &p->lis), 0);
    port = wr_listener_port(p->lis);
    assert_true(port > 0);
    wr_dial_t *d;
    p->t0_ms = now_ms();
    assert_int_equal(wr_dial(&loop, "127.0.0.1", (uint16_t)port, 5000, pair_dialed, p, &d), 0);
}

static int pair_ready(void *arg)
{
    pair_t *p = arg;
    return p->c.ready && p->s.ready;
}
static int pair_closed(void *arg)
{
    pair_t *p = arg;
    return p->c.closed && p->s.closed;
}

/* Closes what is still open and waits for both on_closed. */
static void pair_finish(pair_t *p)
{
    if (p->c.s && !p->c.closed) wr_session_close(p->c.s);
    if (p->s.s && !p->s.closed) wr_session_close(p->s.s);
    if (p->lis) {
        wr_listener_close(p->lis);
        p->lis = NULL;
    }
    if (p->c.s || p->s.s) run_until(pair_closed, p, 10000);
}

/* Ends the pair, lets the last close callbacks run, then frees the server's shared state. */
static void pair_end(pair_t *p)
{
    pair_finish(p);
    run_for(20);
    wr_session_server_free(p->shared);
    p->shared = NULL;
}

/* ---- fixture ---- */

static int setup(void **state)
{
    loop_setup();
    pat_init();
    return 0;
}

static int teardown(void **state)
{
    wr_buf_release(pat);
    pat = NULL;
    loop_teardown();
    wr_seg_cache_trim();
    return 0;
}

#endif
