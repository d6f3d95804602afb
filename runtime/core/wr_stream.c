/* A multiplexed stream: the wr_endpoint the owner sees, its send queue and receive buffer, the
 * per-stream credit window, and the handling of the frames addressed to it. The session
 * (wr_session.c) owns the carrier, seals what streams emit and runs their deferred callbacks. */
#include "wr_session_int.h"
#include "wr_freelist.h"

#include <stdlib.h>
#include <string.h>

static const wr_endpoint_cbs_t no_cbs;

/* ---- slices ---- */

/* Copied slices go into chunks of at least this size, so the small slices after them coalesce. */
#define COPY_CHUNK 4096

static _Thread_local wr_freelist_t seg_cache = WR_FREELIST_INIT(wr_seg_t, next, 256);

static wr_seg_t *seg_get(void)
{
    wr_seg_t *g = wr_freelist_pop(&seg_cache);
    return g ? g : malloc(sizeof(*g));
}

static void seg_put(wr_seg_t *g)
{
    wr_freelist_push(&seg_cache, g);
}

void wr_seg_cache_trim(void)
{
    wr_freelist_trim(&seg_cache);
}

/* Appends base[0..len) (inside b, or anywhere when b is NULL: then always copied). */
static int segq_push(wr_segq_t *q, wr_buf_t *b, const char *base, size_t len)
{
    wr_seg_t *t = q->tail;
    int copy = b == NULL || wr_buf_slice_pins_much(b, len); /* small copies coalesce below */
    if (copy && t && t->owned) {
        size_t fill = (size_t)(t->base - t->buf->data) + t->len;
        if (t->buf->size - fill >= len) {
            memcpy(t->buf->data + fill, base, len);
            t->len += (uint32_t)len;
            q->bytes += len;
            return 0;
        }
    }
    wr_seg_t *g = seg_get();
    if (g == NULL) return UV_ENOMEM;
    if (copy) {
        wr_buf_t *c = wr_buf_new(len < COPY_CHUNK ? COPY_CHUNK : len);
        if (c == NULL) {
            seg_put(g);
            return UV_ENOMEM;
        }
        memcpy(c->data, base, len);
        g->buf = c;
        g->base = c->data;
        g->owned = 1;
    } else {
        g->buf = wr_buf_retain(b);
        g->base = (char *)base;
        g->owned = 0;
    }
    g->len = (uint32_t)len;
    g->next = NULL;
    if (t)
        t->next = g;
    else
        q->head = g;
    q->tail = g;
    q->bytes += len;
    return 0;
}

/* Detaches the head slice (the caller releases it). */
static wr_seg_t *segq_pop(wr_segq_t *q)
{
    wr_seg_t *g = q->head;
    if (g == NULL) return NULL;
    q->head = g->next;
    if (q->head == NULL) q->tail = NULL;
    q->bytes -= g->len;
    return g;
}

/* Drops n bytes from the head slice (n <= its length). */
static void segq_advance(wr_segq_t *q, size_t n)
{
    wr_seg_t *g = q->head;
    g->base += n;
    g->len -= (uint32_t)n;
    q->bytes -= n;
    if (g->len == 0) {
        segq_pop(q);
        wr_buf_release(g->buf);
        seg_put(g);
    }
}

void wr_segq_clear(wr_segq_t *q)
{
    wr_seg_t *g;
    while ((g = segq_pop(q))) {
        wr_buf_release(g->buf);
        seg_put(g);
    }
}

/* ---- the session's receive total ---- */

/* Bytes waiting in receive queues count toward the session's total (rx_limit). Over it, WINDOW
 * updates are held back, so peers wait instead of the buffers growing; they go out once the
 * total falls to 3/4. */
static void release_windows(wr_session_t *s)
{
    if (!s->windows_held || s->rx_queued > s->rx_limit / 4 * 3 || !wr_session__alive(s)) return;
    s->windows_held = 0;
    for (uint32_t i = 0; s->tab && i <= s->tab_mask; i++)
        for (wr_stream_t *st = s->tab[i]; st; st = st->hnext)
            if (st->flags & WR_ST_WINDOW_HELD) {
                st->flags &= ~WR_ST_WINDOW_HELD;
                st->pend |= WR_SP_WINDOW;
                wr_session__tx(st);
            }
}

static void rxq_clear(wr_stream_t *st)
{
    st->s->rx_queued -= st->rxq.bytes;
    wr_segq_clear(&st->rxq);
    release_windows(st->s);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- lifecycle helpers ---- */

/* Gives the window grown by auto-tuning back to the session budget (the stream ended). */
void wr_stream__release_window(wr_stream_t *st)
{
    uint32_t base = st->s->window;
    if (st->rx_window > base) {
        st->s->rx_grown -= st->rx_window - base;
        st->rx_window = base;
    }
}

static int has(const wr_stream_t *st, uint32_t f)
{
    return (st->flags & f) != 0;
}

/* Established enough to carry DATA from us. */
static int tx_open(const wr_stream_t *st)
{
    return has(st, WR_ST_LOCAL) ? has(st, WR_ST_OPEN_SENT) : has(st, WR_ST_ACKED);
}

int wr_stream__sendable(const wr_stream_t *st)
{
    if (st->pend) return 1;
    if (has(st, WR_ST_DEAD | WR_ST_CLOSED) || !tx_open(st)) return 0;
    if (st->txq.bytes) return st->tx_credit > 0;
    return has(st, WR_ST_TX_EOF) && !has(st, WR_ST_TX_EOF_SENT);
}

/* Drops queued writes without callbacks (close, reset, session end). */
static void drop_tx(wr_stream_t *st)
{
    wr_segq_clear(&st->txq);
    st->ep.queued = 0;
    st->ep.flags &= ~WR_EP_DRAIN_ARMED;
}

/* Both directions ended: the id stops counting against the limit. */
static void check_done(wr_stream_t *st)
{
    if (has(st, WR_ST_IN_TABLE) && has(st, WR_ST_TX_EOF_SENT) && has(st, WR_ST_RX_EOF))
        wr_session__remove(st);
}

void wr_stream__kill(wr_stream_t *st, int err, const char *why)
{
    if (has(st, WR_ST_DEAD)) return;
    if (st->s->dl_st == st) wr_stream__deliver_flush(st->s, 1);
    st->flags |= WR_ST_DEAD;
    st->err = err;
    st->why = why;
    if (has(st, WR_ST_IN_TABLE)) wr_session__remove(st);
    drop_tx(st);
    rxq_clear(st);
    st->pend = 0;
    if (has(st, WR_ST_CLOSED)) return;
    if (has(st, WR_ST_LOCAL) && !has(st, WR_ST_ACKED)) {
        st->flags |= WR_ST_REPORTED;
        wr_session__ev(st, WR_SE_OPEN);
    } else if (has(st, WR_ST_ACKED)) {
        st->flags |= WR_ST_REPORTED;
        wr_session__ev(st, WR_SE_ERROR);
    }
    /* An unanswered peer-opened stream learns it at accept. */
}

/* The consumer took n bytes: credit them back in batches of half a window (fewer tiny frames
 * and carrier writes on the reverse path; the sender still has half a window in flight). */
static void consumed(wr_stream_t *st, size_t n)
{
    st->rx_unacked += (uint32_t)n;
    if (st->rx_unacked >= st->rx_window / 2 && !has(st, WR_ST_RX_EOF)) {
        st->pend |= WR_SP_WINDOW;
        wr_session__tx(st);
    }
}

static void deliver(wr_stream_t *st)
{
    wr_endpoint_t *ep = &st->ep;
    while ((ep->flags & WR_EP_READING) && !has(st, WR_ST_CLOSED) && st->rxq.head) {
        wr_seg_t *g = segq_pop(&st->rxq);
        st->s->rx_queued -= g->len;
        consumed(st, g->len);
        if (ep->cbs->on_read) ep->cbs->on_read(ep, g->buf, g->base, g->len);
        wr_buf_release(g->buf);
        seg_put(g);
    }
    release_windows(st->s);
    if ((ep->flags & WR_EP_READING) && !has(st, WR_ST_CLOSED) && st->rxq.head == NULL &&
        has(st, WR_ST_RX_EOF) && !has(st, WR_ST_RX_EOF_DONE)) {
        st->flags |= WR_ST_RX_EOF_DONE;
        ep->flags |= WR_EP_EOF;
        ep->flags &= ~WR_EP_READING;
        if (ep->cbs->on_eof) ep->cbs->on_eof(ep);
    }
}

void wr_stream__run_events(wr_stream_t *st)
{
    wr_endpoint_t *ep = &st->ep;
    unsigned ev = st->ev;
    st->ev = 0;
    if (ev & WR_SE_CLOSED) {
        if (ep->cbs->on_closed) ep->cbs->on_closed(ep);
        ep->cbs = &no_cbs;
        if (st->pend && wr_session__alive(st->s)) {
            st->flags |= WR_ST_FREE_AFTER;
            wr_session__tx(st);
        } else {
            wr_stream__free(st);
        }
        return;
    }
    if (has(st, WR_ST_CLOSED)) return;
    if ((ev & WR_SE_OPEN) && st->on_open) {
        if (has(st, WR_ST_DEAD))
            st->on_open(st, st->err, st->why ? st->why : "stream failed");
        else
            st->on_open(st, 0, NULL);
        if (has(st, WR_ST_CLOSED)) return;
    }
    if ((ev & WR_SE_ERROR) && !(ep->flags & WR_EP_ERRORED)) {
        ep->flags |= WR_EP_ERRORED;
        if (ep->cbs->on_error) ep->cbs->on_error(ep, st->err);
        if (has(st, WR_ST_CLOSED)) return;
    }
    if (ev & WR_SE_SHUTDOWN) {
        if (ep->cbs->on_shutdown) ep->cbs->on_shutdown(ep, 0);
        if (has(st, WR_ST_CLOSED)) return;
    }
    if (ev & WR_SE_DELIVER) deliver(st);
}

/* ---- emitting ---- */

int wr_stream__emit(wr_stream_t *st)
{
    wr_session_t *s = st->s;
    uint8_t w[4 + WR_SESSION_TARGET_MAX];

    if (st->pend & WR_SP_OPEN) {
        st->pend &= ~WR_SP_OPEN;
        put32(w, s->window);
        if (st->note_len) memcpy(w + 4, st->note, st->note_len);
        if (wr_session__emit(s, WR_FT_OPEN, st->id, w, 4u + st->note_len)) return 0;
        st->flags |= WR_ST_OPEN_SENT;
        free(st->note);
        st->note = NULL;
        st->note_len = 0;
    }
    if (st->pend & WR_SP_ACK) {
        st->pend &= ~WR_SP_ACK;
        put32(w, s->window);
        if (wr_session__emit(s, WR_FT_OPEN_ACK, st->id, w, 4)) return 0;
    }
    if (st->pend & WR_SP_FAIL) {
        st->pend &= ~WR_SP_FAIL;
        const char *why = st->why ? st->why : "refused";
        if (wr_session__emit(s, WR_FT_OPEN_FAIL, st->id, why, strlen(why))) return 0;
    }
    if (st->pend & WR_SP_RST) {
        st->pend &= ~WR_SP_RST;
        if (wr_session__emit(s, WR_FT_RST, st->id, NULL, 0)) return 0;
    }
    if (st->pend & WR_SP_WINDOW) {
        st->pend &= ~WR_SP_WINDOW;
        if (st->rx_unacked && s->rx_queued >= s->rx_limit) {
            st->flags |= WR_ST_WINDOW_HELD;
            s->windows_held = 1;
        } else if (st->rx_unacked && !has(st, WR_ST_RX_EOF | WR_ST_DEAD | WR_ST_CLOSED)) {
            uint32_t grow = 0;
            uint64_t now = uv_hrtime() / 1000;
            /* The window, not the reader, is the limit when our consumer kept up and either the
             * sender used over 3/4 of its window before half came back (a burst) or half a
             * window went by within two round trips (a paced link whose delay the window does
             * not cover). Double it then (within budget). */
            int window_bound = st->rx_left < st->rx_window / 4 ||
                               (s->st.rtt_us_last && now - st->rx_epoch_us < 2 * s->st.rtt_us_last);
            if (window_bound && st->rx_window < s->window_max && s->rx_grown < s->rx_budget) {
                grow = st->rx_window;
                if (grow > s->window_max - st->rx_window) grow = s->window_max - st->rx_window;
                if (grow > s->rx_budget - s->rx_grown) grow = s->rx_budget - s->rx_grown;
            }
            put32(w, st->rx_unacked + grow);
            if (wr_session__emit(s, WR_FT_WINDOW, st->id, w, 4)) return 0;
            st->rx_left += st->rx_unacked + grow;
            st->rx_unacked = 0;
            st->rx_window += grow;
            s->rx_grown += grow;
            st->rx_epoch_us = now;
        }
    }
    if (has(st, WR_ST_DEAD | WR_ST_CLOSED) || !tx_open(st)) return wr_stream__sendable(st);
    if (st->txq.bytes && st->tx_credit) {
        wr_seg_t *g = st->txq.head;
        size_t n = g->len;
        if (n > st->tx_credit) n = st->tx_credit;
        if (n > s->max_payload) n = s->max_payload;
        if (wr_session__emit(s, WR_FT_DATA, st->id, g->base, n)) return 0;
        segq_advance(&st->txq, n);
        st->tx_credit -= (uint32_t)n;
        st->tx_sent += n;
        /* May fire on_drain: the owner can act on the stream from there, so re-check after. */
        wr_endpoint__queue_done(&st->ep, n, 1);
        if (has(st, WR_ST_DEAD | WR_ST_CLOSED) || !wr_session__alive(s)) return st->pend != 0;
    }
    if (st->txq.bytes == 0 && has(st, WR_ST_TX_EOF) && !has(st, WR_ST_TX_EOF_SENT)) {
        if (wr_session__emit(s, WR_FT_EOF, st->id, NULL, 0)) return 0;
        st->flags |= WR_ST_TX_EOF_SENT;
        wr_session__ev(st, WR_SE_SHUTDOWN);
        check_done(st);
    }
    return wr_stream__sendable(st);
}

/* ---- frames from the peer ---- */

static int proto(wr_session_t *s, const char *detail)
{
    return wr_session__protocol_error(s, detail);
}

static int on_open_frame(wr_session_t *s, const wr_frame *f)
{
    uint32_t id = f->stream_id;
    const char *refuse = NULL;
    if ((id & 1) == (s->is_server ? 0u : 1u)) return proto(s, "OPEN with our id parity");
    if (id <= s->peer_last_id) return proto(s, "OPEN id not increasing");
    if (f->len < 4 || f->len > 4 + WR_SESSION_TARGET_MAX) return proto(s, "malformed OPEN");
    uint32_t pw = get32(f->payload);
    if (pw == 0) return proto(s, "OPEN with a zero window");
    s->peer_last_id = id;
    if (s->ending || s->goaway_sent || s->goaway_recv)
        refuse = "going away";
    else if (s->nstreams >= s->max_streams)
        refuse = "too many streams";
    else if (s->cbs.on_stream_open == NULL)
        refuse = "not accepting streams";
    if (refuse) {
        if (s->nrejects >= s->max_streams) return proto(s, "too many refused opens pending");
        wr_stream_t *st = wr_stream__new(s, id,
                                         WR_ST_PENDING | WR_ST_ANSWERED | WR_ST_CLOSED |
                                             WR_ST_REFUSED | WR_ST_FREE_AFTER);
        if (st == NULL) return proto(s, "out of memory");
        st->ep.flags |= WR_EP_CLOSING;
        st->why = refuse;
        st->pend = WR_SP_FAIL;
        s->nrejects++;
        wr_session__tx(st);
        return 0;
    }
    wr_stream_t *st = wr_stream__new(s, id, WR_ST_PENDING);
    if (st == NULL || wr_session__insert(s, st)) {
        if (st) wr_stream__free(st);
        return proto(s, "out of memory");
    }
    st->peer_window = pw;
    st->rx_left = WR_SESSION_WINDOW_MIN;
    st->rx_window = WR_SESSION_WINDOW_MIN;
    s->st.streams_opened++;
    s->cbs.on_stream_open(s, st, f->payload + 4, f->len - 4);
    return 0;
}

static int on_data(wr_stream_t *st, const wr_frame *f, wr_buf_t *b)
{
    wr_session_t *s = st->s;
    wr_endpoint_t *ep = &st->ep;
    size_t len = f->len;
    if (len == 0) return proto(s, "empty DATA");
    if (has(st, WR_ST_LOCAL) && !has(st, WR_ST_ACKED)) return proto(s, "DATA before OPEN_ACK");
    if (has(st, WR_ST_RX_EOF)) return proto(s, "DATA after EOF");
    if (len > st->rx_left) return proto(s, "DATA beyond the credit window");
    st->rx_left -= (uint32_t)len;
    st->rx_total += len;
    ep->bytes_read += len;
    if ((ep->flags & WR_EP_READING) && st->rxq.head == NULL) {
        /* Fast path: straight from the decrypted carrier chunk to the consumer, compacted with
         * the stream's previous payloads of this read (one on_read per read, not per frame). */
        if (s->dl_st == st) {
            size_t room = s->dl_buf->size - (size_t)(s->dl_base - s->dl_buf->data) - s->dl_len;
            int same = b != NULL && b == s->dl_buf;
            if ((same || (s->dl_own && room >= len)) && s->dl_len + len <= UINT32_MAX) {
                memmove(s->dl_base + s->dl_len, f->payload, len);
                s->dl_len += len;
                return 0;
            }
        }
        wr_stream__deliver_flush(s, 0);
    }
    /* The flush ran the consumer, which may have stopped reading (a full socket) or ended: then
     * this payload waits in the queue, or goes with the stream. */
    if (has(st, WR_ST_DEAD | WR_ST_CLOSED)) return 0;
    if ((ep->flags & WR_EP_READING) && st->rxq.head == NULL) {
        if (b == NULL) {
            /* A payload that was split across reads sits in the opener: copy it out, into a
             * chunk with room for the payloads that follow. */
            b = len <= WR_BUF_SIZE ? wr_buf_get() : wr_buf_new(len);
            if (b == NULL) return proto(s, "out of memory");
            memcpy(b->data, f->payload, len);
            s->dl_buf = b;
            s->dl_base = b->data;
            s->dl_own = 1;
        } else {
            s->dl_buf = wr_buf_retain(b);
            s->dl_base = (char *)f->payload;
            s->dl_own = 0;
        }
        s->dl_st = st;
        s->dl_len = len;
        return 0;
    }
    wr_stream__deliver_flush(s, 0);
    if (has(st, WR_ST_DEAD | WR_ST_CLOSED)) return 0;
    if (segq_push(&st->rxq, b, (const char *)f->payload, len)) return proto(s, "out of memory");
    s->rx_queued += len;
    if (st->rxq.bytes > st->rx_peak) st->rx_peak = (uint32_t)st->rxq.bytes;
    return 0;
}

void wr_stream__deliver_flush(wr_session_t *s, int drop)
{
    wr_stream_t *st = s->dl_st;
    if (st == NULL) return;
    wr_buf_t *b = s->dl_buf;
    char *base = s->dl_base;
    size_t len = s->dl_len;
    s->dl_st = NULL;
    s->dl_buf = NULL;
    s->dl_base = NULL;
    s->dl_len = 0;
    wr_endpoint_t *ep = &st->ep;
    /* Nothing ran between the frames and here but our own code: still the state checked then,
     * unless the stream was killed (reset, session end) meanwhile. */
    if (!drop && !has(st, WR_ST_DEAD | WR_ST_CLOSED) && (ep->flags & WR_EP_READING)) {
        consumed(st, len);
        if (ep->cbs->on_read) ep->cbs->on_read(ep, b, base, len);
    }
    wr_buf_release(b);
}

int wr_stream__frame(wr_session_t *s, const wr_frame *f, wr_buf_t *b)
{
    uint32_t id = f->stream_id;
    int ours = (id & 1) == (s->is_server ? 0u : 1u);
    if (f->type != WR_FT_DATA) wr_stream__deliver_flush(s, 0);
    if (f->flags) return proto(s, "reserved frame flags set");
    if (f->type == WR_FT_OPEN) return on_open_frame(s, f);
    if (f->type < WR_FT_DATA || f->type > WR_FT_RST) return proto(s, "unexpected frame type");
    wr_stream_t *st = wr_session__find(s, id);
    if (st == NULL) {
        /* Frames racing a reset or a finished stream are dropped; ids never opened are not. */
        int old = ours ? id < s->next_id : id <= s->peer_last_id;
        return old ? 0 : proto(s, "frame for a stream never opened");
    }
    switch (f->type) {
    case WR_FT_DATA:
        return on_data(st, f, b);
    case WR_FT_WINDOW: {
        if (f->len != 4) return proto(s, "malformed WINDOW");
        if (!has(st, WR_ST_ACKED)) return proto(s, "WINDOW before OPEN_ACK");
        uint32_t inc = get32(f->payload);
        if (inc == 0 || (uint64_t)st->tx_credit + inc > (1u << 30))
            return proto(s, "bad WINDOW increment");
        st->tx_credit += inc;
        if (wr_stream__sendable(st)) wr_session__tx(st);
        return 0;
    }
    case WR_FT_EOF:
        if (f->len) return proto(s, "malformed EOF");
        if (has(st, WR_ST_LOCAL) && !has(st, WR_ST_ACKED)) return proto(s, "EOF before OPEN_ACK");
        if (has(st, WR_ST_RX_EOF)) return proto(s, "duplicate EOF");
        st->flags |= WR_ST_RX_EOF;
        st->pend &= ~WR_SP_WINDOW;
        if (st->ep.flags & WR_EP_READING) wr_session__ev(st, WR_SE_DELIVER);
        check_done(st);
        return 0;
    case WR_FT_RST:
        if (f->len) return proto(s, "malformed RST");
        wr_stream__kill(st, UV_ECONNRESET, "stream reset by peer");
        return 0;
    case WR_FT_OPEN_ACK: {
        if (!has(st, WR_ST_LOCAL) || has(st, WR_ST_ACKED)) return proto(s, "unexpected OPEN_ACK");
        if (f->len != 4) return proto(s, "malformed OPEN_ACK");
        uint32_t w = get32(f->payload);
        if (w < WR_SESSION_WINDOW_MIN || w > (1u << 30))
            return proto(s, "OPEN_ACK window out of range");
        st->tx_credit = (uint32_t)(w - st->tx_sent);
        st->flags |= WR_ST_ACKED;
        wr_session__ev(st, WR_SE_OPEN);
        if (wr_stream__sendable(st)) wr_session__tx(st);
        return 0;
    }
    case WR_FT_OPEN_FAIL: {
        if (!has(st, WR_ST_LOCAL) || has(st, WR_ST_ACKED)) return proto(s, "unexpected OPEN_FAIL");
        if (f->len > WR_SESSION_REASON_MAX) return proto(s, "OPEN_FAIL reason too long");
        char *r = malloc(f->len + 1);
        if (r == NULL) return proto(s, "out of memory");
        wr_session__printable(r, f->payload, f->len); /* it reaches logs and Lua */
        free(st->note);
        st->note = r;
        st->note_len = 0;
        wr_stream__kill(st, UV_ECONNREFUSED, r);
        return 0;
    }
    default:
        return proto(s, "unexpected frame type");
    }
}

/* ---- the endpoint ---- */

static int st_read_start(wr_endpoint_t *ep)
{
    wr_stream_t *st = (wr_stream_t *)ep;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_EOF)) return UV_EINVAL;
    if (has(st, WR_ST_PENDING) && !has(st, WR_ST_ANSWERED)) return UV_ENOTCONN;
    if (ep->flags & WR_EP_READING) return 0;
    ep->flags |= WR_EP_READING;
    if (st->rxq.head || has(st, WR_ST_RX_EOF)) wr_session__ev(st, WR_SE_DELIVER);
    return 0;
}

static int st_read_stop(wr_endpoint_t *ep)
{
    ep->flags &= ~WR_EP_READING;
    return 0;
}

static int st_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    wr_stream_t *st = (wr_stream_t *)ep;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_SHUT | WR_EP_ERRORED)) return UV_EPIPE;
    if (has(st, WR_ST_DEAD)) return UV_EPIPE;
    if (has(st, WR_ST_PENDING) && !has(st, WR_ST_ACKED)) return UV_ENOTCONN;
    if (len == 0) return 0;
    int rc = segq_push(&st->txq, b, base, len);
    if (rc) return rc;
    wr_endpoint__queue_add(ep, len);
    if (wr_stream__sendable(st)) wr_session__tx(st);
    return 0;
}

static int st_shutdown(wr_endpoint_t *ep)
{
    wr_stream_t *st = (wr_stream_t *)ep;
    if (ep->flags & WR_EP_CLOSING) return UV_EPIPE;
    if (ep->flags & WR_EP_SHUT) return UV_EALREADY;
    if (has(st, WR_ST_DEAD)) return UV_EPIPE;
    if (has(st, WR_ST_PENDING) && !has(st, WR_ST_ACKED)) return UV_ENOTCONN;
    ep->flags |= WR_EP_SHUT;
    st->flags |= WR_ST_TX_EOF;
    if (wr_stream__sendable(st)) wr_session__tx(st);
    return 0;
}

static void st_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    wr_stream_t *st = (wr_stream_t *)ep;
    if (ep->flags & WR_EP_CLOSING) return;
    ep->flags |= WR_EP_CLOSING;
    ep->flags &= ~WR_EP_READING;
    st->flags |= WR_ST_CLOSED;
    drop_tx(st);
    rxq_clear(st);
    /* Whatever the mode, a stream still live for the peer is aborted: its queued bytes were
     * dropped, so a clean EOF would lie about completeness. */
    st->pend = 0;
    if (has(st, WR_ST_IN_TABLE)) {
        int announced = !has(st, WR_ST_LOCAL) || has(st, WR_ST_OPEN_SENT);
        wr_session__remove(st);
        if (announced && !has(st, WR_ST_DEAD) && wr_session__alive(st->s)) st->pend = WR_SP_RST;
    }
    wr_session__ev(st, WR_SE_CLOSED);
}

static const wr_endpoint_ops_t stream_ops = {
    .kind = "stream",
    .read_start = st_read_start,
    .read_stop = st_read_stop,
    .write = st_write,
    .shutdown = st_shutdown,
    .close = st_close,
};

wr_stream_t *wr_stream__new(wr_session_t *s, uint32_t id, uint32_t flags)
{
    wr_stream_t *st = calloc(1, sizeof(*st));
    if (st == NULL) return NULL;
    wr_endpoint__init(&st->ep, &stream_ops, &no_cbs);
    wr_endpoint_set_watermarks(&st->ep, s->stream_high_water / 4, s->stream_high_water);
    st->s = s;
    st->id = id;
    st->flags = flags;
    st->rx_epoch_us = uv_hrtime() / 1000;
    s->nstructs++;
    return st;
}

void wr_stream__free(wr_stream_t *st)
{
    wr_session_t *s = st->s;
    wr_stream__release_window(st);
    if (has(st, WR_ST_IN_TABLE)) wr_session__remove(st);
    if (has(st, WR_ST_IN_TXL)) wr_session__tx_remove(st);
    if (has(st, WR_ST_IN_EVL)) {
        /* Not expected (frees happen after the event ran), but never leave a dangling link. */
        wr_stream_t **pp = &s->ev_head, *prev = NULL;
        while (*pp && *pp != st)
            prev = *pp, pp = &(*pp)->ev_next;
        if (*pp) {
            *pp = st->ev_next;
            if (s->ev_tail == st) s->ev_tail = prev;
        }
    }
    if (has(st, WR_ST_REFUSED)) s->nrejects--;
    wr_segq_clear(&st->txq);
    rxq_clear(st);
    free(st->note);
    free(st);
    wr_session__struct_gone(s);
}

/* ---- public stream API ---- */

int wr_stream_accept(wr_stream_t *st)
{
    wr_session_t *s = st->s;
    if (!has(st, WR_ST_PENDING) || has(st, WR_ST_ANSWERED)) return UV_EINVAL;
    st->flags |= WR_ST_ANSWERED | WR_ST_ACKED;
    if (has(st, WR_ST_DEAD)) {
        st->flags |= WR_ST_REPORTED;
        wr_session__ev(st, WR_SE_ERROR);
        return 0;
    }
    st->tx_credit = st->peer_window;
    st->rx_left = (uint32_t)(s->window - st->rx_total);
    st->rx_window = s->window;
    st->pend |= WR_SP_ACK;
    wr_session__tx(st);
    return 0;
}

void wr_stream_reject(wr_stream_t *st, const char *reason)
{
    if (!has(st, WR_ST_PENDING) || has(st, WR_ST_ANSWERED)) return;
    st->flags |= WR_ST_ANSWERED | WR_ST_CLOSED;
    st->ep.cbs = &no_cbs;
    st->ep.flags |= WR_EP_CLOSING;
    rxq_clear(st);
    if (!has(st, WR_ST_DEAD) && wr_session__alive(st->s)) {
        size_t n = reason ? strlen(reason) : 0;
        if (n > WR_SESSION_REASON_MAX) n = WR_SESSION_REASON_MAX;
        char *r = malloc(n + 1);
        if (r) {
            if (n) memcpy(r, reason, n);
            r[n] = 0;
            free(st->note);
            st->note = r;
            st->why = n ? r : "refused";
        } else {
            st->why = "refused";
        }
        st->note_len = 0;
        if (has(st, WR_ST_IN_TABLE)) wr_session__remove(st);
        st->pend = WR_SP_FAIL;
    }
    wr_session__ev(st, WR_SE_CLOSED);
}

wr_endpoint_t *wr_stream_endpoint(wr_stream_t *st)
{
    return &st->ep;
}

wr_stream_t *wr_stream_from_endpoint(wr_endpoint_t *ep)
{
    return ep && ep->ops == &stream_ops ? (wr_stream_t *)ep : NULL;
}

uint32_t wr_stream_id(const wr_stream_t *st)
{
    return st->id;
}

wr_session_t *wr_stream_session(const wr_stream_t *st)
{
    return st->s;
}

void *wr_stream_data(const wr_stream_t *st)
{
    return st->data;
}

void wr_stream_set_data(wr_stream_t *st, void *data)
{
    st->data = data;
}

void wr_stream_get_stats(const wr_stream_t *st, wr_stream_stats *out)
{
    out->rx_buffered = st->rxq.bytes;
    out->rx_peak = st->rx_peak;
    out->tx_queued = st->txq.bytes;
    out->tx_credit = st->tx_credit;
    out->rx_window = st->rx_window;
    out->rx_credit = st->rx_left;
}
