#include "wr_ws_endpoint.h"

#include "wr_crypto.h"
#include "wr_ws_frame.h"
#include "wr_ws_upgrade.h"

#include <stdlib.h>
#include <string.h>

enum ws_state {
    WS_REQUEST,   /* client: the upgrade goes out with the first write */
    WS_AWAIT_101, /* client: request sent, writes wait */
    WS_OPEN,
    WS_FAILED,
};

typedef struct pending_write {
    struct pending_write *next;
    wr_buf_t *b;
    const char *base;
    size_t len;
} pending_write;

typedef struct ws_ep {
    wr_endpoint_t base;
    wr_endpoint_t *inner;
    uv_idle_t idle; /* delivers parked bytes from the loop, never inside read_start */
    int pending_closes;
    int is_client;
    enum ws_state state;
    wr_ws_decoder dec;
    wr_buf_t *cur;  /* the chunk being decoded */
    wr_buf_t *park; /* bytes read while the owner stopped reading */
    const char *park_base;
    size_t park_len;
    /* client */
    char *host, *path, *extra;
    char key[WR_WS_KEY_LEN + 1];
    char *resp; /* the relay's answer so far */
    size_t resp_len;
    pending_write *pend, **pend_tail;
    size_t pend_bytes;
    int shut_wanted;
    uint8_t masks[256]; /* fresh mask keys, four bytes each */
    size_t mask_off;
    int close_received;
    char why[256];
} ws_ep;

static const wr_endpoint_cbs_t no_cbs;

static void sync_from_inner(ws_ep *w)
{
    w->base.queued = w->inner->queued + w->pend_bytes;
    w->base.bytes_written = w->inner->bytes_written;
}

static int next_mask(ws_ep *w, uint8_t key[4])
{
    if (w->mask_off == 0 || w->mask_off == sizeof w->masks) {
        if (wr_random(w->masks, sizeof w->masks) != 0) return UV_EIO;
        w->mask_off = 0;
    }
    memcpy(key, w->masks + w->mask_off, 4);
    w->mask_off += 4;
    return 0;
}

/* One final frame of base[0..len) (inside b, or NULL for bytes of our own) on the inner
 * endpoint: in place when the writer left headroom and holds the only reference. */
static int frame_write(ws_ep *w, enum wr_ws_opcode op, wr_buf_t *b, const char *base, size_t len)
{
    uint8_t hdr[WR_WS_HEADER_MAX], key[4];
    size_t hl;
    wr_buf_t *o;
    int rc;
    if (w->is_client && next_mask(w, key) != 0) return UV_EIO;
    hl = wr_ws_header(hdr, op, len, w->is_client ? key : NULL);
    wr_endpoint_set_watermarks(w->inner, w->base.low_water, w->base.high_water);
    if (b && b->refs == 1 && (size_t)(base - b->data) >= hl) {
        char *start = (char *)base - hl;
        memcpy(start, hdr, hl);
        if (w->is_client) wr_ws_mask((uint8_t *)start + hl, len, key, 0);
        return wr_endpoint_write(w->inner, b, start, hl + len);
    }
    o = hl + len <= WR_BUF_SIZE ? wr_buf_get() : wr_buf_new(hl + len);
    if (!o) return UV_ENOMEM;
    memcpy(o->data, hdr, hl);
    if (len) memcpy(o->data + hl, base, len);
    if (w->is_client) wr_ws_mask((uint8_t *)o->data + hl, len, key, 0);
    rc = wr_endpoint_write(w->inner, o, o->data, hl + len);
    wr_buf_release(o);
    return rc;
}

static int send_close(ws_ep *w, int status)
{
    char payload[2] = {(char)(status >> 8), (char)status};
    return frame_write(w, WR_WS_CLOSE, NULL, payload, sizeof payload);
}

static int do_shutdown(ws_ep *w)
{
    int rc = send_close(w, WR_WS_NORMAL);
    if (rc == 0) rc = wr_endpoint_shutdown(w->inner);
    sync_from_inner(w);
    return rc;
}

/* ---- reading ---- */

static int on_data(void *ctx, uint8_t *p, size_t len)
{
    ws_ep *w = ctx;
    w->base.bytes_read += len;
    if (w->base.cbs->on_read) w->base.cbs->on_read(&w->base, w->cur, (const char *)p, len);
    return !(w->base.flags & WR_EP_READING) || (w->base.flags & WR_EP_CLOSING);
}

static int on_control(void *ctx, enum wr_ws_opcode op, const uint8_t *p, size_t len)
{
    ws_ep *w = ctx;
    int rc;
    switch (op) {
    case WR_WS_PING:
        if (w->base.flags & WR_EP_SHUT) return 0; /* our CLOSE went out: no more frames */
        rc = frame_write(w, WR_WS_PONG, NULL, (const char *)p, len);
        sync_from_inner(w);
        if (rc < 0) wr_endpoint__report_error(&w->base, rc);
        return rc < 0;
    case WR_WS_CLOSE:
        /* The peer sends no more: an end of data, like a FIN. Ours follows at shutdown. */
        w->close_received = 1;
        w->base.flags |= WR_EP_EOF;
        w->base.flags &= ~WR_EP_READING;
        wr_endpoint_read_stop(w->inner);
        if (w->base.cbs->on_eof) w->base.cbs->on_eof(&w->base);
        return 1;
    default:
        return 0; /* PONG: nothing asked for it; harmless */
    }
}

static const wr_ws_decoder_cbs decoder_cbs = {.on_data = on_data, .on_control = on_control};

static void park(ws_ep *w, wr_buf_t *b, const char *base, size_t len)
{
    w->park = wr_buf_retain(b);
    w->park_base = base;
    w->park_len = len;
    wr_endpoint_read_stop(w->inner);
}

static void decode(ws_ep *w, wr_buf_t *b, const char *base, size_t len)
{
    size_t used;
    int rc;
    if (!(w->base.flags & WR_EP_READING)) {
        if (len) park(w, b, base, len);
        return;
    }
    w->cur = b;
    rc = wr_ws_decode(&w->dec, (uint8_t *)base, len, &decoder_cbs, w, &used);
    w->cur = NULL;
    if (rc == 1) {
        if (!(w->base.flags & (WR_EP_CLOSING | WR_EP_EOF | WR_EP_ERRORED)) && used < len)
            park(w, b, base + used, len - used);
    } else if (rc > 1) {
        /* RFC 6455 7.1.7: fail the connection, saying why once. */
        if (!(w->base.flags & WR_EP_SHUT)) {
            w->base.flags |= WR_EP_SHUT;
            send_close(w, rc);
        }
        wr_endpoint__report_error(&w->base, UV_EPROTO);
    }
}

/* Client: the relay's answer to the upgrade; then whatever follows it is frames. */
static void read_answer(ws_ep *w, wr_buf_t *b, const char *base, size_t len)
{
    size_t old = w->resp_len,
           take = WR_WS_RESPONSE_MAX - old < len ? WR_WS_RESPONSE_MAX - old : len;
    size_t rest;
    int rc;
    if (!w->resp && !(w->resp = malloc(WR_WS_RESPONSE_MAX))) {
        wr_endpoint__report_error(&w->base, UV_ENOMEM);
        return;
    }
    memcpy(w->resp + old, base, take);
    w->resp_len += take;
    rc = wr_ws_response_check(w->resp, w->resp_len, w->key, w->why, sizeof w->why);
    if (rc == 0) return;
    if (rc < 0) {
        w->state = WS_FAILED;
        wr_endpoint__report_error(&w->base, UV_EPROTO);
        return;
    }
    rest = (size_t)rc - old; /* where the frames start in this read */
    free(w->resp);
    w->resp = NULL;
    w->state = WS_OPEN;
    while (w->pend) {
        pending_write *pw = w->pend;
        w->pend = pw->next;
        w->pend_bytes -= pw->len;
        rc = frame_write(w, WR_WS_BINARY, pw->b, pw->base, pw->len);
        wr_buf_release(pw->b);
        free(pw);
        if (rc < 0) {
            wr_endpoint__report_error(&w->base, rc);
            return;
        }
    }
    w->pend_tail = &w->pend;
    if (w->shut_wanted && do_shutdown(w) < 0) {
        wr_endpoint__report_error(&w->base, UV_EPIPE);
        return;
    }
    sync_from_inner(w);
    decode(w, b, base + rest, len - rest);
}

static void in_read(wr_endpoint_t *in, wr_buf_t *b, const char *base, size_t len)
{
    ws_ep *w = in->data;
    switch (w->state) {
    case WS_OPEN:
        decode(w, b, base, len);
        return;
    case WS_AWAIT_101:
        read_answer(w, b, base, len);
        return;
    case WS_REQUEST: /* the relay spoke first: not one of ours */
        snprintf(w->why, sizeof w->why, "the relay spoke before the WebSocket upgrade");
        w->state = WS_FAILED;
        wr_endpoint__report_error(&w->base, UV_EPROTO);
        return;
    case WS_FAILED:
        return;
    }
}

static void in_eof(wr_endpoint_t *in)
{
    ws_ep *w = in->data;
    if (w->base.flags & WR_EP_EOF) return; /* a CLOSE came first */
    w->base.flags |= WR_EP_EOF;
    w->base.flags &= ~WR_EP_READING;
    if (w->base.cbs->on_eof) w->base.cbs->on_eof(&w->base);
}

static void in_error(wr_endpoint_t *in, int err)
{
    ws_ep *w = in->data;
    wr_endpoint__report_error(&w->base, err);
}

static void in_drain(wr_endpoint_t *in)
{
    ws_ep *w = in->data;
    sync_from_inner(w);
    w->base.flags &= ~WR_EP_DRAIN_ARMED;
    if (w->base.cbs->on_drain) w->base.cbs->on_drain(&w->base);
}

static void in_shutdown(wr_endpoint_t *in, int status)
{
    ws_ep *w = in->data;
    wr_endpoint__report_shutdown(&w->base, status);
}

static void maybe_free(ws_ep *w)
{
    if (--w->pending_closes > 0) return;
    while (w->pend) {
        pending_write *pw = w->pend;
        w->pend = pw->next;
        wr_buf_release(pw->b);
        free(pw);
    }
    if (w->park) wr_buf_release(w->park);
    free(w->resp);
    free(w->host);
    free(w->path);
    free(w->extra);
    if (w->base.cbs->on_closed) w->base.cbs->on_closed(&w->base);
    free(w);
}

static void in_closed(wr_endpoint_t *in)
{
    ws_ep *w = in->data;
    w->base.bytes_written = in->bytes_written;
    w->base.queued = 0;
    maybe_free(w);
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
    ws_ep *w = h->data;
    wr_buf_t *b = w->park;
    uv_idle_stop(h);
    if (!(w->base.flags & WR_EP_READING) || (w->base.flags & WR_EP_CLOSING) || !b) return;
    w->park = NULL;
    decode(w, b, w->park_base, w->park_len);
    wr_buf_release(b);
    if ((w->base.flags & WR_EP_READING) && !w->park && !(w->base.flags & WR_EP_CLOSING)) {
        int rc = wr_endpoint_read_start(w->inner);
        if (rc < 0) wr_endpoint__report_error(&w->base, rc);
    }
}

/* ---- ops ---- */

static int ws_read_start(wr_endpoint_t *ep)
{
    ws_ep *w = (ws_ep *)ep;
    int rc;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_EOF)) return UV_EINVAL;
    if (ep->flags & WR_EP_READING) return 0;
    ep->flags |= WR_EP_READING;
    if (w->park) return uv_idle_start(&w->idle, deliver_cb);
    rc = wr_endpoint_read_start(w->inner);
    if (rc < 0) ep->flags &= ~WR_EP_READING;
    return rc;
}

static int ws_read_stop(wr_endpoint_t *ep)
{
    ws_ep *w = (ws_ep *)ep;
    if (!(ep->flags & WR_EP_READING)) return 0;
    ep->flags &= ~WR_EP_READING;
    uv_idle_stop(&w->idle);
    return wr_endpoint_read_stop(w->inner);
}

static int send_request(ws_ep *w, const char *msg1, size_t len)
{
    size_t cap = 4096 + strlen(w->host) + strlen(w->path) + strlen(w->extra), n;
    wr_buf_t *o = wr_buf_new(cap);
    int rc;
    if (!o) return UV_ENOMEM;
    n = wr_ws_request(o->data, cap, w->host, w->path, w->extra, w->key, (const uint8_t *)msg1, len);
    if (n == 0) {
        wr_buf_release(o);
        return UV_EINVAL;
    }
    rc = wr_endpoint_write(w->inner, o, o->data, n);
    wr_buf_release(o);
    w->state = WS_AWAIT_101;
    return rc;
}

static int ws_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    ws_ep *w = (ws_ep *)ep;
    int rc;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_SHUT)) return UV_EPIPE;
    switch (w->state) {
    case WS_REQUEST:
        rc = send_request(w, base, len);
        break;
    case WS_AWAIT_101: {
        pending_write *pw = malloc(sizeof *pw);
        if (!pw) return UV_ENOMEM;
        pw->next = NULL;
        pw->b = wr_buf_retain(b);
        pw->base = base;
        pw->len = len;
        *w->pend_tail = pw;
        w->pend_tail = &pw->next;
        w->pend_bytes += len;
        rc = 0;
        break;
    }
    case WS_OPEN:
        rc = frame_write(w, WR_WS_BINARY, b, base, len);
        break;
    default:
        return UV_EPROTO;
    }
    sync_from_inner(w);
    return rc;
}

static int ws_shutdown(wr_endpoint_t *ep)
{
    ws_ep *w = (ws_ep *)ep;
    if (ep->flags & WR_EP_CLOSING) return UV_EPIPE;
    if (ep->flags & WR_EP_SHUT) return 0;
    ep->flags |= WR_EP_SHUT;
    if (w->state != WS_OPEN) {
        w->shut_wanted = 1; /* after the 101 and the writes waiting for it */
        return 0;
    }
    return do_shutdown(w);
}

static void idle_closed(uv_handle_t *h)
{
    maybe_free(h->data);
}

static void ws_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    ws_ep *w = (ws_ep *)ep;
    if (ep->flags & WR_EP_CLOSING) return;
    /* RFC 6455 5.5.1: a CLOSE is answered, also when the owner ends before shutting down (a
     * session that fails its handshake); best effort, before the inner endpoint goes. */
    if (w->close_received && !(ep->flags & WR_EP_SHUT) && w->state == WS_OPEN) {
        ep->flags |= WR_EP_SHUT;
        send_close(w, WR_WS_NORMAL);
    }
    ep->flags |= WR_EP_CLOSING;
    ep->flags &= ~WR_EP_READING;
    uv_close((uv_handle_t *)&w->idle, idle_closed);
    wr_endpoint_close(w->inner, mode);
}

static const char *ws_why(wr_endpoint_t *ep)
{
    ws_ep *w = (ws_ep *)ep;
    return w->why[0] ? w->why : NULL;
}

static const wr_endpoint_ops_t ws_ops = {
    .kind = "websocket",
    .read_start = ws_read_start,
    .read_stop = ws_read_stop,
    .write = ws_write,
    .shutdown = ws_shutdown,
    .close = ws_close,
    .why = ws_why,
};

static ws_ep *ws_new(uv_loop_t *loop, wr_endpoint_t *inner, int is_client)
{
    ws_ep *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    wr_endpoint__init(&w->base, &ws_ops, &no_cbs);
    w->base.headroom = WR_WS_HEADROOM;
    w->inner = inner;
    w->is_client = is_client;
    w->pend_tail = &w->pend;
    w->pending_closes = 2; /* inner + idle */
    wr_ws_decoder_init(&w->dec, !is_client);
    uv_idle_init(loop, &w->idle);
    w->idle.data = w;
    wr_endpoint_set_callbacks(inner, &inner_cbs, w);
    return w;
}

wr_endpoint_t *wr_ws_client_new(uv_loop_t *loop, wr_endpoint_t *inner, const char *host,
                                const char *path, const char *extra)
{
    char *h = strdup(host), *p = strdup(path && *path ? path : "/");
    char *x = strdup(extra ? extra : "");
    char key[WR_WS_KEY_LEN + 1];
    ws_ep *w;
    if (!h || !p || !x || wr_ws_new_key(key) != 0 || !(w = ws_new(loop, inner, 1))) {
        free(h);
        free(p);
        free(x);
        return NULL;
    }
    w->host = h;
    w->path = p;
    w->extra = x;
    memcpy(w->key, key, sizeof key);
    w->state = WS_REQUEST;
    return &w->base;
}

wr_endpoint_t *wr_ws_server_new(uv_loop_t *loop, wr_endpoint_t *inner)
{
    ws_ep *w = ws_new(loop, inner, 0);
    if (!w) return NULL;
    w->state = WS_OPEN;
    return &w->base;
}
