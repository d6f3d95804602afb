#include "wr_tcp_endpoint.h"
#include "wr_freelist.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct tcp_ep {
    wr_endpoint_t base;
    uv_tcp_t *tcp;
    uv_shutdown_t sreq;
    int bulk; /* the last read brought WR_BUF_SIZE or more: more is likely waiting, read in bulk */
} tcp_ep_t;

/* A queued write: holds a chunk reference until libuv is done with the bytes. */
typedef struct wreq {
    uv_write_t req;
    wr_buf_t *buf;
    size_t len;
    struct wreq *next;
} wreq_t;

/* Queued writes happen only when a socket is backlogged; recycle their requests anyway. */
static _Thread_local wr_freelist_t wreq_cache = WR_FREELIST_INIT(wreq_t, next, 64);

static const wr_endpoint_cbs_t no_cbs;

static wreq_t *wreq_get(void)
{
    wreq_t *w = wr_freelist_pop(&wreq_cache);
    return w ? w : malloc(sizeof(*w));
}

static void wreq_put(wreq_t *w)
{
    wr_freelist_push(&wreq_cache, w);
}

void wr_tcp_endpoint_cache_trim(void)
{
    wr_freelist_trim(&wreq_cache);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    tcp_ep_t *t = h->data;
    wr_buf_t *b = t->bulk ? wr_buf_get_bulk() : wr_buf_get();
    /* A NULL base makes libuv report UV_ENOBUFS to read_cb. */
    *out = b ? uv_buf_init(b->data, b->size) : uv_buf_init(NULL, 0);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tcp_ep_t *t = s->data;
    wr_endpoint_t *ep = &t->base;
    wr_buf_t *b = buf->base ? wr_buf_of(buf->base) : NULL;

    t->bulk = nread >= WR_BUF_SIZE;
    if (nread > 0) {
        ep->bytes_read += (uint64_t)nread;
        if (!(ep->flags & WR_EP_CLOSING) && ep->cbs->on_read)
            ep->cbs->on_read(ep, b, buf->base, (size_t)nread);
    }
    /* Dropping our reference right away is what keeps an idle socket from pinning a chunk:
     * EAGAIN (nread == 0) hands the chunk straight back to the cache. */
    if (b) wr_buf_release(b);
    if (nread >= 0 || (ep->flags & WR_EP_CLOSING)) return;

    uv_read_stop(s);
    ep->flags &= ~WR_EP_READING;
    if (nread == UV_EOF) {
        ep->flags |= WR_EP_EOF;
        if (ep->cbs->on_eof) ep->cbs->on_eof(ep);
    } else {
        wr_endpoint__report_error(ep, (int)nread);
    }
}

static int tcp_read_start(wr_endpoint_t *ep)
{
    tcp_ep_t *t = (tcp_ep_t *)ep;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_EOF)) return UV_EINVAL;
    if (ep->flags & WR_EP_READING) return 0;
    int rc = uv_read_start((uv_stream_t *)t->tcp, alloc_cb, read_cb);
    if (rc == 0) ep->flags |= WR_EP_READING;
    return rc;
}

static int tcp_read_stop(wr_endpoint_t *ep)
{
    tcp_ep_t *t = (tcp_ep_t *)ep;
    if (!(ep->flags & WR_EP_READING)) return 0;
    ep->flags &= ~WR_EP_READING;
    return uv_read_stop((uv_stream_t *)t->tcp);
}

static void write_cb(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    tcp_ep_t *t = req->handle->data;
    size_t len = w->len;
    wr_buf_release(w->buf);
    wreq_put(w);
    if (status < 0 && status != UV_ECANCELED) wr_endpoint__report_error(&t->base, status);
    wr_endpoint__queue_done(&t->base, len, status == 0);
}

static int tcp_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    tcp_ep_t *t = (tcp_ep_t *)ep;
    uv_stream_t *s = (uv_stream_t *)t->tcp;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_SHUT | WR_EP_ERRORED)) return UV_EPIPE;
    if (len == 0) return 0;

    /* Common case: the socket has room, so the bytes go out now with no request and no ref. */
    if (ep->queued == 0 && s->write_queue_size == 0) {
        uv_buf_t ub = uv_buf_init((char *)base, (unsigned)len);
        int n = uv_try_write(s, &ub, 1);
        if (n > 0) {
            ep->bytes_written += (uint64_t)n;
            base += n;
            len -= (size_t)n;
            if (len == 0) return 0;
        } else if (n != UV_EAGAIN) {
            return n;
        }
    }

    wreq_t *w = wreq_get();
    if (w == NULL) return UV_ENOMEM;
    if (wr_buf_slice_pins_much(b, len)) {
        wr_buf_t *copy = wr_buf_new(len);
        if (copy == NULL) {
            wreq_put(w);
            return UV_ENOMEM;
        }
        memcpy(copy->data, base, len);
        w->buf = copy;
        base = copy->data;
    } else {
        w->buf = wr_buf_retain(b);
    }
    w->len = len;
    uv_buf_t ub = uv_buf_init((char *)base, (unsigned)len);
    int rc = uv_write(&w->req, s, &ub, 1, write_cb);
    if (rc < 0) {
        wr_buf_release(w->buf);
        wreq_put(w);
        return rc;
    }
    wr_endpoint__queue_add(ep, len);
    return 0;
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    tcp_ep_t *t = req->handle->data;
    wr_endpoint__report_shutdown(&t->base, status);
}

static int tcp_shutdown(wr_endpoint_t *ep)
{
    tcp_ep_t *t = (tcp_ep_t *)ep;
    if (ep->flags & WR_EP_CLOSING) return UV_EPIPE;
    if (ep->flags & WR_EP_SHUT) return UV_EALREADY;
    /* libuv runs the shutdown after every queued write, which is the flush we want. */
    int rc = uv_shutdown(&t->sreq, (uv_stream_t *)t->tcp, shutdown_cb);
    if (rc == 0) ep->flags |= WR_EP_SHUT;
    return rc;
}

static void close_cb(uv_handle_t *h)
{
    tcp_ep_t *t = h->data;
    if (t->base.cbs->on_closed) t->base.cbs->on_closed(&t->base);
    free(t->tcp);
    free(t);
}

static void tcp_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    tcp_ep_t *t = (tcp_ep_t *)ep;
    if (ep->flags & WR_EP_CLOSING) return;
    ep->flags |= WR_EP_CLOSING;
    ep->flags &= ~WR_EP_READING;
    if (mode == WR_CLOSE_RESET) {
        /* Linger 0 turns close() into an RST. Done by hand because uv_tcp_close_reset refuses
         * a handle that already has a shutdown queued. */
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)t->tcp, &fd) == 0) {
            struct linger l = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        }
    }
    uv_close((uv_handle_t *)t->tcp, close_cb);
}

static const wr_endpoint_ops_t tcp_ops = {
    .kind = "tcp",
    .read_start = tcp_read_start,
    .read_stop = tcp_read_stop,
    .write = tcp_write,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};

wr_endpoint_t *wr_tcp_endpoint_new(uv_tcp_t *tcp)
{
    tcp_ep_t *t = malloc(sizeof(*t));
    if (t == NULL) return NULL;
    wr_endpoint__init(&t->base, &tcp_ops, &no_cbs);
    t->tcp = tcp;
    t->bulk = 0;
    tcp->data = t;
    return &t->base;
}

uv_tcp_t *wr_tcp_endpoint_handle(wr_endpoint_t *ep)
{
    return ep->ops == &tcp_ops ? ((tcp_ep_t *)ep)->tcp : NULL;
}

size_t wr_tcp_endpoint_read_now(wr_endpoint_t *ep)
{
    tcp_ep_t *t = (tcp_ep_t *)ep;
    uv_os_fd_t fd;
    wr_buf_t *b;
    ssize_t n;
    if (ep->ops != &tcp_ops || (ep->flags & WR_EP_CLOSING) || !(ep->flags & WR_EP_READING) ||
        uv_fileno((uv_handle_t *)t->tcp, &fd) != 0)
        return 0;
    if (!(b = wr_buf_get())) return 0;
    n = recv(fd, b->data, b->size, MSG_DONTWAIT);
    if (n > 0) {
        ep->bytes_read += (uint64_t)n;
        if (ep->cbs->on_read) ep->cbs->on_read(ep, b, b->data, (size_t)n);
    }
    wr_buf_release(b);
    return n > 0 ? (size_t)n : 0;
}
