#include "wr_front.h"

#include "wr_addr.h"
#include "wr_admit.h"
#include "wr_log.h"
#include "wr_prefix_endpoint.h"
#include "wr_sniff.h"

#include <stdlib.h>
#include <string.h>

#define SNIFF_TIMEOUT_DEFAULT_MS 5000
#define MAX_PENDING_DEFAULT      1024
#define HEAD_MAX                 16384 /* an HTTP request head larger than this gets 400 */
#define ANSWER_LINGER_MS         5000  /* after answering, how long the peer has to close */

struct wr_front {
    uv_loop_t *loop;
    wr_server_t *server;
    wr_tls_ctx_t *tls;
    wr_fallback_t site;
    uint32_t sniff_timeout_ms;
    wr_admit_t *admit;
    struct front_conn *conns;
    wr_front_stats st;
    int freeing;
};

enum phase { SNIFFING, TLS_HANDSHAKE, HTTP_HEAD, ANSWERED };

typedef struct front_conn {
    wr_admit_entry admit; /* first: wr_admit hands it back for eviction */
    wr_front_t *front;
    wr_endpoint_t *ep; /* NULL once handed on or closing */
    struct sockaddr_storage peer;
    uv_timer_t timer;
    enum phase phase;
    int in_tls; /* classifying what came inside TLS: no TLS again */
    char *buf;  /* what was read so far: WR_SNIFF_MAX bytes inline, HEAD_MAX once HTTP */
    size_t len, cap;
    char sniff[WR_SNIFF_MAX];
    struct front_conn *next, **prev;
} front_conn;

static const char not_found[] = "HTTP/1.1 404 Not Found\r\n"
                                "Content-Type: text/html\r\n"
                                "Content-Length: 146\r\n"
                                "Connection: close\r\n"
                                "\r\n"
                                "<html>\r\n"
                                "<head><title>404 Not Found</title></head>\r\n"
                                "<body>\r\n"
                                "<center><h1>404 Not Found</h1></center>\r\n"
                                "<hr><center>nginx</center>\r\n"
                                "</body>\r\n"
                                "</html>\r\n";

static const char bad_request[] = "HTTP/1.1 400 Bad Request\r\n"
                                  "Content-Type: text/html\r\n"
                                  "Content-Length: 0\r\n"
                                  "Connection: close\r\n"
                                  "\r\n";

static void maybe_free_front(wr_front_t *f)
{
    if (!f->freeing || f->conns) return;
    wr_admit_free(f->admit);
    free(f);
}

static void timer_closed(uv_handle_t *h)
{
    front_conn *c = h->data;
    wr_front_t *f = c->front;
    *c->prev = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->buf != c->sniff) free(c->buf);
    free(c);
    maybe_free_front(f);
}

/* Ends our part: the endpoint was handed on (ep NULL) or is closed here. */
static void conn_finish(front_conn *c, int close_mode)
{
    wr_admit_remove(c->front->admit, &c->admit);
    if (c->ep) {
        wr_endpoint_close(c->ep, close_mode);
        c->ep = NULL;
    }
    if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_close((uv_handle_t *)&c->timer, timer_closed);
}

static const wr_endpoint_cbs_t detached_cbs;
static const wr_endpoint_cbs_t conn_cbs;
static void timeout_cb(uv_timer_t *t);

/* Everything read so far plus the rest of the current read, as one block (malloc'd). */
static char *first_bytes(const front_conn *c, const char *rest, size_t rest_len, size_t *len)
{
    char *all = malloc(c->len + rest_len ? c->len + rest_len : 1);
    if (!all) return NULL;
    memcpy(all, c->buf, c->len);
    if (rest_len) memcpy(all + c->len, rest, rest_len);
    *len = c->len + rest_len;
    return all;
}

static void hand_to_server(front_conn *c, const char *rest, size_t rest_len)
{
    wr_front_t *f = c->front;
    wr_endpoint_t *ep = c->ep, *wrapped;
    size_t len;
    char *first = first_bytes(c, rest, rest_len, &len);
    if (!first) {
        conn_finish(c, WR_CLOSE_RESET);
        return;
    }
    wr_endpoint_read_stop(ep);
    wr_endpoint_set_callbacks(ep, &detached_cbs, NULL);
    wrapped = wr_prefix_endpoint_new(f->loop, ep, first, len);
    free(first);
    if (!wrapped) {
        conn_finish(c, WR_CLOSE_RESET);
        return;
    }
    c->ep = NULL;
    f->st.raw++;
    wr_server_take(f->server, wrapped, (struct sockaddr *)&c->peer);
    conn_finish(c, WR_CLOSE_RESET);
}

/* The site answers whatever came, exactly as it would any visitor. */
static void hand_to_site(front_conn *c, const char *rest, size_t rest_len)
{
    wr_front_t *f = c->front;
    wr_endpoint_t *ep = c->ep;
    size_t len;
    char *first = first_bytes(c, rest, rest_len, &len);
    if (!first) {
        conn_finish(c, WR_CLOSE_RESET);
        return;
    }
    wr_endpoint_read_stop(ep);
    c->ep = NULL;
    f->st.site++;
    f->site.take(f->site.ctx, ep, first, len); /* owns ep from here, also on failure */
    free(first);
    conn_finish(c, WR_CLOSE_RESET);
}

/* Bytes that are neither TLS nor HTTP, or none in time: outside TLS on a port with a site, the
 * site shows them what it shows anyone; otherwise the session decides (silence and the sink for
 * anything but a client). */
static void hand_on(front_conn *c, const char *rest, size_t rest_len)
{
    if (c->front->site.take && !c->in_tls)
        hand_to_site(c, rest, rest_len);
    else
        hand_to_server(c, rest, rest_len);
}

static void answer(front_conn *c, const char *text, size_t len)
{
    wr_buf_t *b = wr_buf_new(len);
    c->phase = ANSWERED;
    if (!b) {
        conn_finish(c, WR_CLOSE_RESET);
        return;
    }
    memcpy(b->data, text, len);
    if (wr_endpoint_write(c->ep, b, b->data, len) < 0 || wr_endpoint_shutdown(c->ep) < 0) {
        wr_buf_release(b);
        conn_finish(c, WR_CLOSE_RESET);
        return;
    }
    wr_buf_release(b);
    /* Keep reading (and dropping) until the peer closes, or the linger runs out. */
    uv_timer_start(&c->timer, timeout_cb, ANSWER_LINGER_MS, 0);
}

/* TLS is up: classify what comes inside it, from scratch. */
static void tls_done(wr_endpoint_t *ep, int status, const char *err, void *data)
{
    front_conn *c = data;
    if (status != 0) {
        c->front->st.tls_failed++;
        wr_debug("front door: TLS handshake failed: %s", err ? err : uv_strerror(status));
        conn_finish(c, WR_CLOSE_RESET);
        return;
    }
    c->front->st.tls++;
    c->phase = SNIFFING;
    c->in_tls = 1;
    if (c->buf != c->sniff) free(c->buf);
    c->buf = c->sniff;
    c->cap = sizeof c->sniff;
    c->len = 0;
    wr_endpoint_set_callbacks(ep, &conn_cbs, c);
    uv_timer_start(&c->timer, timeout_cb, c->front->sniff_timeout_ms, 0);
    if (wr_endpoint_read_start(ep) < 0) conn_finish(c, WR_CLOSE_RESET);
}

static void start_tls(front_conn *c, const char *rest, size_t rest_len)
{
    wr_front_t *f = c->front;
    size_t len;
    char *hello = first_bytes(c, rest, rest_len, &len);
    wr_endpoint_t *tls;
    if (!hello) {
        conn_finish(c, WR_CLOSE_RESET);
        return;
    }
    wr_endpoint_read_stop(c->ep);
    wr_endpoint_set_callbacks(c->ep, &detached_cbs, NULL);
    tls = wr_tls_endpoint_new(f->loop, f->tls, c->ep, NULL, hello, len, tls_done, c);
    free(hello);
    if (!tls) {
        conn_finish(c, WR_CLOSE_RESET);
        return;
    }
    c->ep = tls; /* it owns the TCP endpoint now */
    c->phase = TLS_HANDSHAKE;
}

static int head_complete(const front_conn *c)
{
    for (size_t i = 3; i < c->len; i++)
        if (memcmp(c->buf + i - 3, "\r\n\r\n", 4) == 0) return 1;
    return 0;
}

static void on_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    front_conn *c = ep->data;
    size_t take;
    (void)b;
    if (c->phase == ANSWERED) return;
    take = c->cap - c->len < len ? c->cap - c->len : len;
    memcpy(c->buf + c->len, base, take);
    c->len += take;
    if (c->phase == SNIFFING) {
        switch (wr_sniff((const uint8_t *)c->buf, c->len)) {
        case WR_SNIFF_NEED_MORE:
            /* The start of a TLS record where no TLS is taken: nothing to wait for. */
            if ((uint8_t)c->buf[0] == 0x16 && (!c->front->tls || c->in_tls))
                hand_on(c, base + take, len - take);
            return;
        case WR_SNIFF_HTTP: {
            char *head;
            if (c->front->site.take) {
                c->front->st.http++;
                hand_to_site(c, base + take, len - take);
                return;
            }
            head = malloc(HEAD_MAX);
            if (!head) {
                conn_finish(c, WR_CLOSE_RESET);
                return;
            }
            memcpy(head, c->buf, c->len);
            c->buf = head;
            c->cap = HEAD_MAX;
            c->phase = HTTP_HEAD;
            c->front->st.http++;
            /* Bytes past the sniff buffer were not kept yet. */
            if (take < len) {
                size_t more = len - take < HEAD_MAX - c->len ? len - take : HEAD_MAX - c->len;
                memcpy(c->buf + c->len, base + take, more);
                c->len += more;
            }
            break;
        }
        case WR_SNIFF_TLS:
            if (c->front->tls && !c->in_tls) {
                start_tls(c, base + take, len - take);
                return;
            }
            /* fall through - no TLS here: like any other unrecognised bytes */
        case WR_SNIFF_RAW:
            hand_on(c, base + take, len - take);
            return;
        }
    }
    if (head_complete(c))
        answer(c, not_found, sizeof not_found - 1);
    else if (c->len == c->cap)
        answer(c, bad_request, sizeof bad_request - 1);
}

static void on_end(wr_endpoint_t *ep)
{
    front_conn *c = ep->data;
    if (c->phase == SNIFFING && c->len) {
        hand_on(c, NULL, 0); /* a cut-short request or handshake: theirs to answer */
        return;
    }
    conn_finish(c, c->phase == ANSWERED ? WR_CLOSE_GRACEFUL : WR_CLOSE_RESET);
}

static void on_error(wr_endpoint_t *ep, int err)
{
    (void)err;
    conn_finish(ep->data, WR_CLOSE_RESET);
}

static void on_shutdown(wr_endpoint_t *ep, int status)
{
    /* Answer flushed; wait for the peer's close (bounded by the timer). */
    if (status < 0) conn_finish(ep->data, WR_CLOSE_RESET);
}

static const wr_endpoint_cbs_t conn_cbs = {
    .on_read = on_read,
    .on_eof = on_end,
    .on_error = on_error,
    .on_shutdown = on_shutdown,
};

static void timeout_cb(uv_timer_t *t)
{
    front_conn *c = t->data;
    if (c->phase == SNIFFING) {
        /* Nothing decisive in time: a silent raw prober or a stalled client. The site, or else
         * the session's handshake timeout and probe sink, treat it as they always have. */
        c->front->st.timeouts++;
        hand_on(c, NULL, 0);
        return;
    }
    conn_finish(c, c->phase == ANSWERED ? WR_CLOSE_GRACEFUL : WR_CLOSE_RESET);
}

static void evicted(wr_admit_entry *e, void *data)
{
    front_conn *c = (front_conn *)e;
    wr_front_t *f = data;
    f->st.dropped++;
    conn_finish(c, WR_CLOSE_RESET);
}

wr_front_t *wr_front_new(uv_loop_t *loop, const wr_front_config *cfg)
{
    wr_front_t *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->loop = loop;
    f->server = cfg->server;
    f->tls = cfg->tls;
    f->site = cfg->site;
    f->sniff_timeout_ms = cfg->sniff_timeout_ms ? cfg->sniff_timeout_ms : SNIFF_TIMEOUT_DEFAULT_MS;
    f->admit = wr_admit_new(cfg->max_pending ? cfg->max_pending : MAX_PENDING_DEFAULT,
                            cfg->max_pending_per_addr, evicted, f);
    if (!f->admit) {
        free(f);
        return NULL;
    }
    return f;
}

void wr_front_take(wr_front_t *f, wr_endpoint_t *ep, const struct sockaddr *peer)
{
    front_conn *c = f->freeing ? NULL : calloc(1, sizeof *c);
    if (!c) {
        wr_endpoint_close(ep, WR_CLOSE_RESET);
        return;
    }
    c->front = f;
    c->ep = ep;
    c->buf = c->sniff;
    c->cap = sizeof c->sniff;
    if (peer && (peer->sa_family == AF_INET || peer->sa_family == AF_INET6))
        memcpy(&c->peer, peer,
               peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in));
    wr_addr_normalize(&c->peer);
    uv_timer_init(f->loop, &c->timer);
    c->timer.data = c;
    c->next = f->conns;
    c->prev = &f->conns;
    if (f->conns) f->conns->prev = &c->next;
    f->conns = c;
    wr_endpoint_set_callbacks(ep, &conn_cbs, c);
    if (wr_endpoint_read_start(ep) < 0) {
        conn_finish(c, WR_CLOSE_RESET);
        return;
    }
    uv_timer_start(&c->timer, timeout_cb, f->sniff_timeout_ms, 0);
    /* Last: making room may drop other connections (never this one). */
    wr_admit_add(f->admit, &c->admit, (struct sockaddr *)&c->peer, 0);
}

void wr_front_free(wr_front_t *f)
{
    f->freeing = 1;
    for (front_conn *c = f->conns; c; c = c->next)
        conn_finish(c, WR_CLOSE_RESET);
    maybe_free_front(f);
}

void wr_front_get_stats(const wr_front_t *f, wr_front_stats *out)
{
    wr_admit_stats adm;
    wr_admit_get_stats(f->admit, &adm);
    *out = f->st;
    out->pending = adm.pending + adm.doomed;
}
