#include "wr_prefix_endpoint.h"

#include "wr_log.h"

#include <stdlib.h>
#include <string.h>

typedef struct prefix_ep {
    wr_endpoint_t base;
    wr_endpoint_t *inner;
    wr_buf_t *prefix; /* not yet delivered; NULL once it was */
    uv_idle_t idle;   /* delivers the prefix from the loop, never inside read_start */
    int pending_closes;
    int limited;
    uint64_t read_left;    /* limited: bytes of the inner endpoint's still passed on */
    const char *drop_note; /* logged once, then NULL */
} prefix_ep;

static const wr_endpoint_cbs_t no_cbs;

/* What the owner sees of the inner queue: the relay and the session watch these. */
static void sync_from_inner(prefix_ep *p)
{
    p->base.queued = p->inner->queued;
    p->base.bytes_written = p->inner->bytes_written;
}

static void maybe_free(prefix_ep *p)
{
    if (--p->pending_closes > 0) return;
    if (p->prefix) wr_buf_release(p->prefix);
    if (p->base.cbs->on_closed) p->base.cbs->on_closed(&p->base);
    free(p);
}

static void in_read(wr_endpoint_t *in, wr_buf_t *b, const char *base, size_t len)
{
    prefix_ep *p = in->data;
    if (p->limited) {
        if (len > p->read_left) {
            len = (size_t)p->read_left;
            if (p->drop_note) wr_debug("%s", p->drop_note);
            p->drop_note = NULL;
        }
        p->read_left -= len;
        if (!len) return;
    }
    p->base.bytes_read += len;
    if ((p->base.flags & WR_EP_READING) && p->base.cbs->on_read)
        p->base.cbs->on_read(&p->base, b, base, len);
}

static void in_eof(wr_endpoint_t *in)
{
    prefix_ep *p = in->data;
    p->base.flags |= WR_EP_EOF;
    p->base.flags &= ~WR_EP_READING;
    if (p->base.cbs->on_eof) p->base.cbs->on_eof(&p->base);
}

static void in_error(wr_endpoint_t *in, int err)
{
    prefix_ep *p = in->data;
    wr_endpoint__report_error(&p->base, err);
}

static void in_drain(wr_endpoint_t *in)
{
    prefix_ep *p = in->data;
    sync_from_inner(p);
    p->base.flags &= ~WR_EP_DRAIN_ARMED;
    if (p->base.cbs->on_drain) p->base.cbs->on_drain(&p->base);
}

static void in_shutdown(wr_endpoint_t *in, int status)
{
    prefix_ep *p = in->data;
    wr_endpoint__report_shutdown(&p->base, status);
}

static void in_closed(wr_endpoint_t *in)
{
    prefix_ep *p = in->data;
    sync_from_inner(p); /* the last look: the inner endpoint is gone after this */
    maybe_free(p);
}

static const wr_endpoint_cbs_t inner_cbs = {
    .on_read = in_read,
    .on_eof = in_eof,
    .on_error = in_error,
    .on_drain = in_drain,
    .on_shutdown = in_shutdown,
    .on_closed = in_closed,
};

static void deliver_cb(uv_idle_t *h)
{
    prefix_ep *p = h->data;
    wr_endpoint_t *ep = &p->base;
    wr_buf_t *b = p->prefix;
    uv_idle_stop(h);
    if (!(ep->flags & WR_EP_READING) || (ep->flags & WR_EP_CLOSING) || !b) return;
    p->prefix = NULL;
    ep->bytes_read += b->size;
    if (ep->cbs->on_read) ep->cbs->on_read(ep, b, b->data, b->size);
    wr_buf_release(b);
    if (!(ep->flags & WR_EP_READING) || (ep->flags & WR_EP_CLOSING)) return;
    int rc = wr_endpoint_read_start(p->inner);
    if (rc < 0) wr_endpoint__report_error(&p->base, rc);
}

static int px_read_start(wr_endpoint_t *ep)
{
    prefix_ep *p = (prefix_ep *)ep;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_EOF)) return UV_EINVAL;
    if (ep->flags & WR_EP_READING) return 0;
    ep->flags |= WR_EP_READING;
    if (p->prefix) return uv_idle_start(&p->idle, deliver_cb);
    int rc = wr_endpoint_read_start(p->inner);
    if (rc < 0) ep->flags &= ~WR_EP_READING;
    return rc;
}

static int px_read_stop(wr_endpoint_t *ep)
{
    prefix_ep *p = (prefix_ep *)ep;
    if (!(ep->flags & WR_EP_READING)) return 0;
    ep->flags &= ~WR_EP_READING;
    uv_idle_stop(&p->idle);
    return wr_endpoint_read_stop(p->inner);
}

static int px_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    prefix_ep *p = (prefix_ep *)ep;
    /* The inner endpoint fires on_drain by the owner's watermarks. */
    wr_endpoint_set_watermarks(p->inner, ep->low_water, ep->high_water);
    int rc = wr_endpoint_write(p->inner, b, base, len);
    sync_from_inner(p);
    return rc;
}

static int px_shutdown(wr_endpoint_t *ep)
{
    prefix_ep *p = (prefix_ep *)ep;
    int rc = wr_endpoint_shutdown(p->inner);
    if (rc == 0) ep->flags |= WR_EP_SHUT;
    return rc;
}

static void idle_closed(uv_handle_t *h)
{
    maybe_free(h->data);
}

static void px_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    prefix_ep *p = (prefix_ep *)ep;
    if (ep->flags & WR_EP_CLOSING) return;
    ep->flags |= WR_EP_CLOSING;
    ep->flags &= ~WR_EP_READING;
    uv_close((uv_handle_t *)&p->idle, idle_closed);
    wr_endpoint_close(p->inner, mode);
}

static const wr_endpoint_ops_t prefix_ops = {
    .kind = "prefix",
    .read_start = px_read_start,
    .read_stop = px_read_stop,
    .write = px_write,
    .shutdown = px_shutdown,
    .close = px_close,
};

wr_endpoint_t *wr_prefix_endpoint_new(uv_loop_t *loop, wr_endpoint_t *inner, const char *prefix,
                                      size_t len)
{
    prefix_ep *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (len) {
        p->prefix = wr_buf_new(len);
        if (!p->prefix) {
            free(p);
            return NULL;
        }
        memcpy(p->prefix->data, prefix, len);
    }
    wr_endpoint__init(&p->base, &prefix_ops, &no_cbs);
    p->inner = inner;
    p->pending_closes = 2; /* inner + idle */
    uv_idle_init(loop, &p->idle);
    p->idle.data = p;
    wr_endpoint_set_callbacks(inner, &inner_cbs, p);
    return &p->base;
}

void wr_prefix_endpoint_limit(wr_endpoint_t *ep, uint64_t n, const char *note)
{
    prefix_ep *p = (prefix_ep *)ep;
    p->limited = 1;
    p->read_left = n;
    p->drop_note = note;
}

wr_endpoint_t *wr_prefix_endpoint_inner(wr_endpoint_t *ep)
{
    return ep->ops == &prefix_ops ? ((prefix_ep *)ep)->inner : NULL;
}
