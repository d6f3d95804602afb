#include "wr_tls_pipe.h"

#include <stdlib.h>
#include <string.h>

enum {
    ST_HS_DONE = 1u << 0,
    ST_HS_FAILED = 1u << 1,
    ST_INNER_READING = 1u << 2,
    ST_INNER_EOF = 1u << 3,
    ST_NOTIFY_SENT = 1u << 4, /* close_notify written and inner shut down */
    ST_ERR_PENDING = 1u << 5, /* a failure waits for the tick to be reported */
    ST_PEER_CLOSED = 1u << 6, /* the peer's close_notify came (an engine may say so only once) */
};

static const wr_endpoint_cbs_t no_cbs;
static const wr_endpoint_ops_t tls_ops;

static void tick_cb(uv_idle_t *h);

static void schedule(wr_tls_pipe_t *p)
{
    if (!(p->base.flags & WR_EP_CLOSING)) uv_idle_start(&p->tick, tick_cb);
}

/* Records a failure (text malloc'd or NULL) for the tick to report: the handshake's, or on_error
 * once. Ops may fail, so nothing is reported from here. */
static void fail(wr_tls_pipe_t *p, int err, char *text)
{
    wr_endpoint_t *ep = &p->base;
    if ((ep->flags & (WR_EP_ERRORED | WR_EP_CLOSING)) || (p->state & ST_HS_FAILED)) {
        free(text);
        return;
    }
    ep->flags |= WR_EP_ERRORED;
    if (!(p->state & ST_HS_DONE)) p->state |= ST_HS_FAILED;
    free(p->err);
    p->err = text;
    p->pending_err = err;
    p->state |= ST_ERR_PENDING;
    schedule(p);
}

static void flush_out(wr_tls_pipe_t *p)
{
    wr_buf_t *b = p->out;
    if (b == NULL) return;
    p->out = NULL;
    if (p->out_len > 0 && !(p->inner->flags & WR_EP_CLOSING)) {
        int rc = wr_endpoint_write(p->inner, b, b->data, p->out_len);
        if (rc < 0) fail(p, rc, wr_tls__errf("cannot send: %s", uv_strerror(rc)));
    }
    wr_buf_release(b);
}

/* ---- the engine's I/O ---- */

int wr_tls__pipe_put(wr_tls_pipe_t *p, const char *data, size_t len)
{
    size_t left = len;
    while (left > 0) {
        if (p->out == NULL) {
            p->out = wr_buf_get();
            if (p->out == NULL) return -1;
            p->out_len = 0;
        }
        size_t n = p->out->size - p->out_len;
        if (n > left) n = left;
        memcpy(p->out->data + p->out_len, data, n);
        p->out_len += n;
        data += n;
        left -= n;
        if (p->out_len == p->out->size) flush_out(p);
    }
    if (p->out_len > 0) schedule(p);
    return 0;
}

static size_t take(char **dst, size_t *want, const char **src, size_t *have)
{
    size_t n = *want < *have ? *want : *have;
    memcpy(*dst, *src, n);
    *dst += n;
    *want -= n;
    *src += n;
    *have -= n;
    return n;
}

size_t wr_tls__pipe_take(wr_tls_pipe_t *p, char *buf, size_t len)
{
    size_t n = 0;
    if (p->held_len > 0) {
        n += take(&buf, &len, &p->held_base, &p->held_len);
        if (p->held_len == 0) {
            wr_buf_release(p->held);
            p->held = NULL;
        }
    }
    if (len > 0 && p->cur_len > 0) n += take(&buf, &len, &p->cur_base, &p->cur_len);
    return n;
}

/* ---- moving bytes ---- */

static void sync_inner_reading(wr_tls_pipe_t *p)
{
    wr_endpoint_t *ep = &p->base;
    int want = !(ep->flags & (WR_EP_CLOSING | WR_EP_ERRORED | WR_EP_EOF)) &&
               !(p->state & ST_INNER_EOF) && p->held_len == 0 &&
               (!(p->state & ST_HS_DONE) || (ep->flags & WR_EP_READING));
    if (want && !(p->state & ST_INNER_READING)) {
        int rc = wr_endpoint_read_start(p->inner);
        if (rc < 0)
            fail(p, rc, wr_tls__errf("cannot read: %s", uv_strerror(rc)));
        else
            p->state |= ST_INNER_READING;
    } else if (!want && (p->state & ST_INNER_READING)) {
        wr_endpoint_read_stop(p->inner);
        p->state &= ~ST_INNER_READING;
    }
}

static int no_more_input(const wr_tls_pipe_t *p)
{
    return (p->state & ST_INNER_EOF) && p->held_len == 0 && p->cur_len == 0;
}

static void handshake_step(wr_tls_pipe_t *p)
{
    char *err = NULL;
    int r = p->engine->handshake(p, &err);
    if (r < 0) {
        fail(p, r, err);
    } else if (r == 0) {
        if (no_more_input(p))
            fail(p, UV_EOF, wr_tls__errf("the connection was closed during the TLS handshake"));
    } else {
        p->state |= ST_HS_DONE;
        if (p->on_handshake) p->on_handshake(&p->base, 0, NULL, p->hs_data);
    }
}

static void send_close_notify(wr_tls_pipe_t *p)
{
    p->state |= ST_NOTIFY_SENT;
    p->engine->close_notify(p);
    flush_out(p);
    int rc = wr_endpoint_shutdown(p->inner);
    if (rc < 0) wr_endpoint__report_shutdown(&p->base, rc);
}

static int encrypt(wr_tls_pipe_t *p, const char *base, size_t len)
{
    char *err = NULL;
    int rc = p->engine->encrypt(p, base, len, &err);
    if (rc < 0) fail(p, rc, err);
    return rc;
}

static void pump_write(wr_tls_pipe_t *p)
{
    wr_endpoint_t *ep = &p->base;
    while (p->wq_head && !(ep->flags & (WR_EP_CLOSING | WR_EP_ERRORED)) &&
           !wr_endpoint_over_high_water(p->inner)) {
        wr_tls_pending *w = p->wq_head;
        p->wq_head = w->next;
        if (p->wq_head == NULL) p->wq_tail = &p->wq_head;
        int rc = encrypt(p, w->base, w->len);
        size_t len = w->len;
        wr_buf_release(w->buf);
        free(w);
        wr_endpoint__queue_done(ep, len, rc == 0); /* may run on_drain, which may write */
    }
    if (p->wq_head == NULL &&
        (ep->flags & (WR_EP_SHUT | WR_EP_CLOSING | WR_EP_ERRORED)) == WR_EP_SHUT &&
        !(p->state & ST_NOTIFY_SENT))
        send_close_notify(p);
}

static void deliver_eof(wr_tls_pipe_t *p)
{
    p->base.flags |= WR_EP_EOF;
    if (p->base.cbs->on_eof) p->base.cbs->on_eof(&p->base);
}

/* Inner EOF with every byte consumed: the peer's close_notify never came. A half record is a
 * truncation; otherwise the end is taken as an end (the session above authenticates its own). */
static void input_ended(wr_tls_pipe_t *p)
{
    if (p->engine->cut_short(p))
        fail(p, UV_EPROTO, wr_tls__errf("the connection ended in the middle of a TLS record"));
    else
        deliver_eof(p);
}

static void pump_read(wr_tls_pipe_t *p)
{
    wr_endpoint_t *ep = &p->base;
    while ((ep->flags & (WR_EP_READING | WR_EP_CLOSING | WR_EP_EOF | WR_EP_ERRORED)) ==
           WR_EP_READING) {
        if (p->state & ST_PEER_CLOSED) {
            deliver_eof(p);
            return;
        }
        wr_buf_t *b = wr_buf_get();
        if (b == NULL) {
            fail(p, UV_ENOMEM, wr_tls__errf("out of memory"));
            return;
        }
        /* Records decrypt one at a time; gather them into one chunk, one on_read. */
        size_t n = 0;
        long r = 0;
        char *err = NULL;
        while (n < b->size) {
            r = p->engine->decrypt(p, b->data + n, b->size - n, &err);
            if (r <= 0) break;
            n += (size_t)r;
        }
        if (r == WR_TLS_PEER_CLOSED) p->state |= ST_PEER_CLOSED;
        if (n > 0) {
            ep->bytes_read += n;
            if (ep->cbs->on_read) ep->cbs->on_read(ep, b, b->data, n);
        }
        wr_buf_release(b);
        if (r > 0) continue;
        if (ep->flags & WR_EP_CLOSING) {
            free(err);
            return;
        }
        if (r < 0 && r != WR_TLS_PEER_CLOSED) {
            fail(p, UV_EPROTO, err);
        } else if (!(ep->flags & WR_EP_READING)) {
            /* Paused in on_read: the end, if it came, is still there when reading resumes. */
        } else if (p->state & ST_PEER_CLOSED) {
            deliver_eof(p);
        } else if (no_more_input(p)) {
            input_ended(p);
        }
        return;
    }
}

/* Everything that can move: called from the loop only (the tick and the inner callbacks). */
static void progress(wr_tls_pipe_t *p)
{
    wr_endpoint_t *ep = &p->base;
    if (!(p->state & (ST_HS_DONE | ST_HS_FAILED))) handshake_step(p);
    if ((p->state & ST_HS_DONE) && !(ep->flags & WR_EP_CLOSING)) pump_write(p);
    if ((p->state & ST_HS_DONE) && !(ep->flags & WR_EP_CLOSING)) pump_read(p);
}

static void tick_cb(uv_idle_t *h)
{
    wr_tls_pipe_t *p = h->data;
    wr_endpoint_t *ep = &p->base;
    uv_idle_stop(h);
    progress(p);
    if (ep->flags & WR_EP_CLOSING) return;
    flush_out(p);
    sync_inner_reading(p);
    if (p->state & ST_ERR_PENDING) {
        p->state &= ~ST_ERR_PENDING;
        if (!(p->state & ST_HS_DONE) && p->on_handshake)
            p->on_handshake(ep, p->pending_err, p->err, p->hs_data);
        else if (ep->cbs->on_error)
            ep->cbs->on_error(ep, p->pending_err);
    }
}

/* Keeps what the engine did not read of the inner chunk b (the reader paused). */
static void hold_rest(wr_tls_pipe_t *p, wr_buf_t *b)
{
    if (p->held == NULL && !wr_buf_slice_pins_much(b, p->cur_len)) {
        p->held = wr_buf_retain(b);
        p->held_base = p->cur_base;
        p->held_len = p->cur_len;
    } else {
        wr_buf_t *n = wr_buf_new(p->held_len + p->cur_len);
        if (n == NULL) {
            fail(p, UV_ENOMEM, wr_tls__errf("out of memory"));
            return;
        }
        if (p->held_len) memcpy(n->data, p->held_base, p->held_len);
        memcpy(n->data + p->held_len, p->cur_base, p->cur_len);
        if (p->held) wr_buf_release(p->held);
        p->held = n;
        p->held_base = n->data;
        p->held_len += p->cur_len;
    }
    p->cur_len = 0;
}

/* ---- the inner endpoint's callbacks ---- */

static void in_read(wr_endpoint_t *in, wr_buf_t *b, const char *base, size_t len)
{
    wr_tls_pipe_t *p = in->data;
    if (p->base.flags & WR_EP_CLOSING) return;
    p->cur_base = base;
    p->cur_len = len;
    progress(p);
    if (p->cur_len > 0 && !(p->base.flags & (WR_EP_CLOSING | WR_EP_ERRORED))) hold_rest(p, b);
    p->cur_len = 0;
    if (!(p->base.flags & WR_EP_CLOSING)) sync_inner_reading(p);
}

static void in_eof(wr_endpoint_t *in)
{
    wr_tls_pipe_t *p = in->data;
    p->state = (p->state | ST_INNER_EOF) & ~ST_INNER_READING;
    progress(p);
}

static void in_error(wr_endpoint_t *in, int err)
{
    wr_tls_pipe_t *p = in->data;
    p->state &= ~ST_INNER_READING;
    fail(p, err,
         wr_tls__errf(p->state & ST_HS_DONE ? "connection failed: %s"
                                            : "connection failed during the TLS handshake: %s",
                      uv_strerror(err)));
}

static void in_drain(wr_endpoint_t *in)
{
    progress(in->data);
}

static void in_shutdown(wr_endpoint_t *in, int status)
{
    wr_tls_pipe_t *p = in->data;
    wr_endpoint__report_shutdown(&p->base, status);
}

static void maybe_free(wr_tls_pipe_t *p)
{
    if (--p->closes > 0) return;
    if (p->base.cbs->on_closed) p->base.cbs->on_closed(&p->base);
    wr_tls__pipe_unhold(p);
    if (p->out) wr_buf_release(p->out);
    free(p->err);
    p->engine->destroy(p);
}

static void in_closed(wr_endpoint_t *in)
{
    maybe_free(in->data);
}

static void tick_closed(uv_handle_t *h)
{
    maybe_free(h->data);
}

static const wr_endpoint_cbs_t inner_cbs = {
    .on_read = in_read,
    .on_eof = in_eof,
    .on_error = in_error,
    .on_drain = in_drain,
    .on_shutdown = in_shutdown,
    .on_closed = in_closed,
};

/* ---- the endpoint's operations ---- */

static int tls_read_start(wr_endpoint_t *ep)
{
    if (ep->flags & (WR_EP_CLOSING | WR_EP_EOF)) return UV_EINVAL;
    ep->flags |= WR_EP_READING;
    schedule((wr_tls_pipe_t *)ep); /* held bytes and decrypted records go out from the loop */
    return 0;
}

static int tls_read_stop(wr_endpoint_t *ep)
{
    wr_tls_pipe_t *p = (wr_tls_pipe_t *)ep;
    ep->flags &= ~WR_EP_READING;
    if (!(ep->flags & WR_EP_CLOSING)) sync_inner_reading(p);
    return 0;
}

static int tls_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    wr_tls_pipe_t *p = (wr_tls_pipe_t *)ep;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_SHUT | WR_EP_ERRORED)) return UV_EPIPE;
    if (len == 0) return 0;
    if ((p->state & ST_HS_DONE) && p->wq_head == NULL && !wr_endpoint_over_high_water(p->inner)) {
        int rc = encrypt(p, base, len);
        if (rc == 0) ep->bytes_written += len;
        return rc;
    }
    wr_tls_pending *w = malloc(sizeof(*w));
    if (w == NULL) return UV_ENOMEM;
    if (wr_buf_slice_pins_much(b, len)) {
        w->buf = wr_buf_new(len);
        if (w->buf == NULL) {
            free(w);
            return UV_ENOMEM;
        }
        memcpy(w->buf->data, base, len);
        base = w->buf->data;
    } else {
        w->buf = wr_buf_retain(b);
    }
    w->base = base;
    w->len = len;
    w->next = NULL;
    *p->wq_tail = w;
    p->wq_tail = &w->next;
    wr_endpoint__queue_add(ep, len);
    return 0;
}

static int tls_shutdown(wr_endpoint_t *ep)
{
    wr_tls_pipe_t *p = (wr_tls_pipe_t *)ep;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_ERRORED)) return UV_EPIPE;
    if (ep->flags & WR_EP_SHUT) return UV_EALREADY;
    ep->flags |= WR_EP_SHUT;
    schedule(p); /* close_notify follows the queued writes */
    return 0;
}

static void tls_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    wr_tls_pipe_t *p = (wr_tls_pipe_t *)ep;
    if (ep->flags & WR_EP_CLOSING) return;
    ep->flags |= WR_EP_CLOSING;
    ep->flags &= ~WR_EP_READING;
    if (mode == WR_CLOSE_GRACEFUL) {
        if ((p->state & (ST_HS_DONE | ST_NOTIFY_SENT)) == ST_HS_DONE &&
            !(ep->flags & WR_EP_ERRORED))
            p->engine->close_notify(p);
        flush_out(p); /* close_notify, or the alert of a failed handshake */
    }
    while (p->wq_head) {
        wr_tls_pending *w = p->wq_head;
        p->wq_head = w->next;
        wr_buf_release(w->buf);
        free(w);
    }
    p->wq_tail = &p->wq_head;
    ep->queued = 0;
    uv_idle_stop(&p->tick);
    uv_close((uv_handle_t *)&p->tick, tick_closed);
    wr_endpoint_close(p->inner, mode);
}

static const wr_endpoint_ops_t tls_ops = {
    .kind = "tls",
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .close = tls_close,
};

/* ---- setting up, and what the backends' public functions ask ---- */

int wr_tls__pipe_hold(wr_tls_pipe_t *p, const char *already, size_t len)
{
    if (len == 0) return 0;
    p->held = wr_buf_new(len);
    if (p->held == NULL) return -1;
    memcpy(p->held->data, already, len);
    p->held_base = p->held->data;
    p->held_len = len;
    return 0;
}

void wr_tls__pipe_unhold(wr_tls_pipe_t *p)
{
    if (p->held) wr_buf_release(p->held);
    p->held = NULL;
    p->held_len = 0;
}

void wr_tls__pipe_start(wr_tls_pipe_t *p, uv_loop_t *loop, const wr_tls_engine *engine,
                        wr_endpoint_t *inner, wr_tls_handshake_cb on_handshake, void *data)
{
    wr_endpoint__init(&p->base, &tls_ops, &no_cbs);
    p->base.data = data;
    p->engine = engine;
    p->inner = inner;
    p->on_handshake = on_handshake;
    p->hs_data = data;
    p->wq_tail = &p->wq_head;
    p->closes = 2;
    uv_idle_init(loop, &p->tick);
    p->tick.data = p;
    wr_endpoint_set_callbacks(inner, &inner_cbs, p);
    schedule(p); /* the first flight (client) or the already read bytes (server) */
}

wr_tls_pipe_t *wr_tls__pipe_ready(wr_endpoint_t *ep)
{
    wr_tls_pipe_t *p = (wr_tls_pipe_t *)ep;
    return ep->ops == &tls_ops && (p->state & ST_HS_DONE) ? p : NULL;
}

const char *wr_tls_endpoint_error(wr_endpoint_t *ep)
{
    return ep->ops == &tls_ops ? ((wr_tls_pipe_t *)ep)->err : NULL;
}

wr_endpoint_t *wr_tls_endpoint_inner(wr_endpoint_t *ep)
{
    return ep->ops == &tls_ops ? ((wr_tls_pipe_t *)ep)->inner : NULL;
}
