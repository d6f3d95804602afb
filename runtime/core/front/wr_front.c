#include "wr_front.h"

#include "wr_addr.h"
#include "wr_admit.h"
#include "wr_hc_server.h"
#include "wr_http_head.h"
#include "wr_log.h"
#include "wr_prefix_endpoint.h"
#include "wr_sniff.h"
#include "wr_ws_endpoint.h"
#include "wr_ws_upgrade.h"

#include <stdlib.h>
#include <string.h>

#define SNIFF_TIMEOUT_DEFAULT_MS 5000
#define MAX_PENDING_DEFAULT      1024
#define HEAD_MAX                 WR_HTTP_HEAD_MAX /* a longer request head gets 400 */
#define ANSWER_LINGER_MS         5000 /* after answering, how long the peer has to close */

struct wr_front {
    uv_loop_t *loop;
    wr_server_t *server;
    wr_tls_ctx_t *tls;
    wr_fallback_t site;
    wr_hc_server_t *hc;
    wr_trusted_t *trusted;
    size_t ntrusted;
    uint32_t sniff_timeout_ms;
    wr_admit_t *admit;
    struct front_conn *conns;
    wr_front_stats st;
    int freeing;
};

enum phase { SNIFFING, TLS_HANDSHAKE, READING_HEAD, ANSWERED };

/* An HTTP request head being read: whether it is a WebSocket upgrade that authenticates. */
typedef struct http_state {
    wr_http_head_t head;
    char buf[HEAD_MAX];
} http_state;

typedef struct front_conn {
    wr_admit_entry admit; /* first: wr_admit hands it back for eviction */
    wr_front_t *front;
    wr_endpoint_t *ep; /* NULL once handed on or closing */
    struct sockaddr_storage peer;
    uv_timer_t timer;
    enum phase phase;
    int in_tls; /* classifying what came inside TLS: no TLS again */
    char *buf;  /* what was read so far: sniff[], or http->buf once HTTP */
    size_t len, cap;
    char sniff[WR_SNIFF_MAX];
    http_state *http;
    struct front_conn *next, **prev;
} front_conn;

static const char bad_request[] = "HTTP/1.1 400 Bad Request\r\n"
                                  "Content-Type: text/html\r\n"
                                  "Content-Length: 0\r\n"
                                  "Connection: close\r\n"
                                  "\r\n";

static void maybe_free_front(wr_front_t *f)
{
    if (!f->freeing || f->conns) return;
    wr_admit_free(f->admit);
    free(f->trusted);
    free(f);
}

static void timer_closed(uv_handle_t *h)
{
    front_conn *c = h->data;
    wr_front_t *f = c->front;
    *c->prev = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->http);
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
    free(c->http);
    c->http = NULL;
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

/* The user of a request: the peer, or whom a trusted front names for it (logged at debug). */
static void user_of(front_conn *c, struct sockaddr_storage *user, const char *what)
{
    wr_front_t *f = c->front;
    *user = c->peer;
    if (f->ntrusted && wr_trusted_match(f->trusted, f->ntrusted, (struct sockaddr *)&c->peer) &&
        wr_forwarded_client(&c->http->head, f->trusted, f->ntrusted, user) == 0) {
        wr_addr_normalize(user);
        f->st.forwarded++;
    }
    if (wr_log_enabled(WR_LOG_DEBUG)) {
        char who[64], via[64] = "";
        wr_addr_format((struct sockaddr *)user, 1, who, sizeof who);
        if (memcmp(user, &c->peer, sizeof *user) != 0) {
            memcpy(via, " via ", 5);
            wr_addr_format((struct sockaddr *)&c->peer, 1, via + 5, sizeof via - 5);
        }
        wr_debug("front door: %s from %s%s%s", what, who, via, c->in_tls ? " (over TLS)" : "");
    }
}

/* A request of the HTTP carrier: its server takes the connection from this request on. */
static void hand_to_hc(front_conn *c, const char *rest, size_t rest_len)
{
    wr_front_t *f = c->front;
    wr_endpoint_t *ep = c->ep;
    struct sockaddr_storage user;
    size_t len;
    char *first = first_bytes(c, rest, rest_len, &len);
    if (!first) {
        conn_finish(c, WR_CLOSE_RESET);
        return;
    }
    user_of(c, &user, "HTTP carrier request");
    wr_endpoint_read_stop(ep);
    wr_endpoint_set_callbacks(ep, &detached_cbs, NULL);
    c->ep = NULL;
    f->st.http_carrier++;
    wr_hc_server_take(f->hc, ep, (struct sockaddr *)&user, first, len);
    free(first);
    conn_finish(c, WR_CLOSE_RESET);
}

/* A WebSocket upgrade whose bearer token is a first handshake message that authenticates: 101,
 * and the connection goes on as a WebSocket carrier to the server. 0 when it is not ours (the
 * request is then answered like any other). */
static int take_websocket(front_conn *c, size_t head_len, const char *rest, size_t rest_len)
{
    wr_front_t *f = c->front;
    uint8_t token[WR_WS_TOKEN_MAX];
    char accept[WR_WS_ACCEPT_LEN + 1], answer_101[256];
    size_t token_len, n, extra = c->len - head_len;
    wr_hs_server checked;
    struct sockaddr_storage user;
    wr_endpoint_t *ep = c->ep, *inner = ep, *ws;
    wr_buf_t *b;
    if (wr_ws_upgrade_check(&c->http->head, token, sizeof token, &token_len, accept) != 0 ||
        wr_server_check(f->server, token, token_len, &checked) != 0)
        return 0;
    n = wr_ws_response(answer_101, sizeof answer_101, accept);
    b = n ? wr_buf_new(n) : NULL;
    if (!b) {
        conn_finish(c, WR_CLOSE_RESET);
        return 1;
    }
    memcpy(b->data, answer_101, n);
    wr_endpoint_read_stop(ep);
    wr_endpoint_set_callbacks(ep, &detached_cbs, NULL);
    if (wr_endpoint_write(ep, b, b->data, n) < 0) {
        wr_buf_release(b);
        conn_finish(c, WR_CLOSE_RESET);
        return 1;
    }
    wr_buf_release(b);
    /* A client sends nothing before the 101; whatever came anyway is frames. */
    if (extra || rest_len) {
        char *more = malloc(extra + rest_len);
        if (more) {
            memcpy(more, c->buf + head_len, extra);
            if (rest_len) memcpy(more + extra, rest, rest_len);
            inner = wr_prefix_endpoint_new(f->loop, ep, more, extra + rest_len);
            free(more);
        }
        if (!more || !inner) {
            conn_finish(c, WR_CLOSE_RESET);
            return 1;
        }
    }
    ws = wr_ws_server_new(f->loop, inner);
    if (!ws) {
        c->ep = inner;
        conn_finish(c, WR_CLOSE_RESET);
        return 1;
    }
    c->ep = NULL;
    f->st.websocket++;
    user_of(c, &user, "WebSocket upgrade");
    wr_server_take_checked(f->server, ws, (struct sockaddr *)&user, &checked);
    conn_finish(c, WR_CLOSE_RESET);
    return 1;
}

/* The bytes of an HTTP request head: once it is whole, ours (a WebSocket upgrade that
 * authenticates) or else the site's, exactly as it came; without a site, a plain 404 (400 for a
 * head that is not HTTP or too long). */
static void http_input(front_conn *c, const char *base, size_t len)
{
    size_t take = c->cap - c->len < len ? c->cap - c->len : len;
    int rc;
    memcpy(c->buf + c->len, base, take);
    c->len += take;
    rc = wr_http_head_parse(&c->http->head, c->buf, c->len);
    if (rc == 0 && c->len < c->cap) return;
    if (rc > 0 && take_websocket(c, (size_t)rc, base + take, len - take)) return;
    if (rc > 0 && c->front->hc && wr_hc_server_claims(c->front->hc, &c->http->head)) {
        hand_to_hc(c, base + take, len - take);
        return;
    }
    if (c->front->site.take) {
        hand_to_site(c, base + take, len - take);
        return;
    }
    if (rc > 0)
        answer(c, wr_http_not_found, wr_http_not_found_len);
    else
        answer(c, bad_request, sizeof bad_request - 1);
}

static void on_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    front_conn *c = ep->data;
    size_t take;
    (void)b;
    if (c->phase == ANSWERED) return;
    if (c->phase == READING_HEAD) {
        http_input(c, base, len);
        return;
    }
    take = c->cap - c->len < len ? c->cap - c->len : len;
    memcpy(c->buf + c->len, base, take);
    c->len += take;
    switch (wr_sniff((const uint8_t *)c->buf, c->len)) {
    case WR_SNIFF_NEED_MORE:
        /* The start of a TLS record where no TLS is taken: nothing to wait for. */
        if ((uint8_t)c->buf[0] == 0x16 && (!c->front->tls || c->in_tls))
            hand_on(c, base + take, len - take);
        return;
    case WR_SNIFF_HTTP:
        c->http = malloc(sizeof *c->http);
        if (!c->http) {
            conn_finish(c, WR_CLOSE_RESET);
            return;
        }
        wr_http_head_init(&c->http->head);
        memcpy(c->http->buf, c->buf, c->len);
        c->buf = c->http->buf;
        c->cap = sizeof c->http->buf;
        c->phase = READING_HEAD;
        c->front->st.http++;
        http_input(c, base + take, len - take);
        return;
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

static void on_end(wr_endpoint_t *ep)
{
    front_conn *c = ep->data;
    if (c->phase == SNIFFING && c->len) {
        hand_on(c, NULL, 0); /* a cut-short request or handshake: theirs to answer */
        return;
    }
    if (c->phase == READING_HEAD && c->front->site.take) {
        hand_to_site(c, NULL, 0); /* a cut-short head: the site answers it as it would */
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
    if (c->phase == READING_HEAD && c->front->site.take) {
        hand_to_site(c, NULL, 0); /* a slow head: the site's own timeout decides */
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
    f->hc = cfg->hc;
    if (cfg->ntrusted) {
        f->trusted = malloc(cfg->ntrusted * sizeof *f->trusted);
        if (!f->trusted) {
            free(f);
            return NULL;
        }
        memcpy(f->trusted, cfg->trusted, cfg->ntrusted * sizeof *f->trusted);
        f->ntrusted = cfg->ntrusted;
    }
    f->sniff_timeout_ms = cfg->sniff_timeout_ms ? cfg->sniff_timeout_ms : SNIFF_TIMEOUT_DEFAULT_MS;
    f->admit = wr_admit_new(cfg->max_pending ? cfg->max_pending : MAX_PENDING_DEFAULT,
                            cfg->max_pending_per_addr, evicted, f);
    if (!f->admit) {
        free(f->trusted);
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
