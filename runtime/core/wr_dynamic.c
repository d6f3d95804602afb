#include "wr_dynamic.h"

#include "wr_access_log.h"
#include "wr_addr.h"
#include "wr_io.h"
#include "wr_log.h"
#include "wr_prefix_endpoint.h"
#include "wr_proxy_req.h"
#include "wr_tcp_endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* After an error reply: how long to wait for the client to close, so that unread bytes of its
 * request do not turn our close into a reset that could destroy the reply in flight. */
#define LINGER_MS 2000

enum conn_phase {
    PH_REQUEST, /* reading the proxy request */
    PH_OPENING, /* stream opened, waiting for the relay's answer */
    PH_LINGER,  /* error reply sent, waiting for the client to go */
    PH_RELAY,   /* the relay owns the socket and the stream */
};

typedef struct dyn_conn dyn_conn;

/* Connections by deadline: with one timeout per queue, appending keeps each queue sorted, so
 * one timer (armed for the earliest head) serves every connection. */
typedef struct conn_queue {
    dyn_conn *head, *tail;
} conn_queue;

struct wr_dynamic {
    uv_loop_t *loop;
    wr_dynamic_cbs cbs;
    void *data;
    wr_listener_t *listener; /* NULL once closed */
    uv_timer_t timer;
    conn_queue waiting;   /* PH_REQUEST and PH_OPENING: request_timeout_ms */
    conn_queue lingering; /* PH_LINGER: LINGER_MS */
    conn_queue relaying;  /* PH_RELAY (no deadline), until cut or ended */
    wr_relay_opts_t ropts;
    uint64_t request_timeout_ms;
    uint64_t accepted, refused, failed_opens, bad_requests, bytes_up, bytes_down;
    uint32_t active;
    int refs; /* the listener (dropped when its timer closed), the owner, each connection */
    char *user, *password;
    char name[WR_ACCESS_NAME_MAX]; /* in access records */
};

struct dyn_conn {
    wr_dynamic_t *dyn;
    wr_endpoint_t *sock;
    wr_stream_t *st;   /* PH_OPENING */
    wr_relay_t *relay; /* PH_RELAY */
    wr_proxy_req *req; /* PH_REQUEST (large: freed as soon as the request is read) */
    conn_queue *queue; /* the queue it is on, or NULL */
    dyn_conn *prev, *next;
    uint64_t deadline;
    enum conn_phase phase;
    int closing, shut_done, peer_eof;
    enum wr_proxy_kind kind;
    int gated;            /* a plain HTTP request: only its body may follow it upstream */
    uint64_t body_left;   /* gated: body bytes not yet passed upstream */
    char *drop_note;      /* gated: what the debug log says when the rest is dropped */
    uint64_t reply_bytes; /* our own bytes sent to the client, not the target's */
    char target[WR_PROXY_TARGET_MAX];
    char peer[64]; /* the client's address, kept for on_close and the access log */
};

static void dynamic_unref(wr_dynamic_t *dyn)
{
    if (--dyn->refs > 0) return;
    if (dyn->cbs.on_freed) dyn->cbs.on_freed(dyn);
    free(dyn->user);
    free(dyn->password);
    free(dyn);
}

/* ---- deadlines ---- */

static void q_push(conn_queue *q, dyn_conn *c, uint64_t deadline)
{
    c->deadline = deadline;
    c->queue = q;
    c->next = NULL;
    c->prev = q->tail;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
}

static void q_remove(dyn_conn *c)
{
    conn_queue *q = c->queue;
    if (!q) return;
    if (c->prev)
        c->prev->next = c->next;
    else
        q->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        q->tail = c->prev;
    c->queue = NULL;
    c->prev = c->next = NULL;
}

static void on_timer(uv_timer_t *t);
static const wr_endpoint_cbs_t conn_cbs;

static void arm(wr_dynamic_t *dyn)
{
    uint64_t next = UINT64_MAX, now;
    if (!dyn->listener) return;
    if (dyn->waiting.head) next = dyn->waiting.head->deadline;
    if (dyn->lingering.head && dyn->lingering.head->deadline < next)
        next = dyn->lingering.head->deadline;
    if (next == UINT64_MAX) {
        uv_timer_stop(&dyn->timer);
        return;
    }
    now = uv_now(dyn->loop);
    uv_timer_start(&dyn->timer, on_timer, next > now ? next - now : 0, 0);
}

/* ---- one connection ---- */

static void conn_close(dyn_conn *c, enum wr_close_mode mode)
{
    if (c->closing) return;
    c->closing = 1;
    q_remove(c);
    if (c->st) { /* still unanswered: on_open will not run once the stream is closed */
        wr_endpoint_close(wr_stream_endpoint(c->st), WR_CLOSE_RESET);
        c->st = NULL;
    }
    wr_endpoint_close(c->sock, mode); /* the socket's on_closed frees c */
}

static void conn_free(dyn_conn *c)
{
    wr_dynamic_t *dyn = c->dyn;
    dyn->active--;
    free(c->req);
    free(c->drop_note);
    free(c);
    dynamic_unref(dyn);
}

static int send_bytes(dyn_conn *c, const uint8_t *bytes, size_t n)
{
    wr_buf_t *b = wr_buf_new(n);
    int rc;
    if (!b) return UV_ENOMEM;
    memcpy(b->data, bytes, n);
    rc = wr_endpoint_write(c->sock, b, b->data, n);
    wr_buf_release(b);
    c->reply_bytes += n;
    return rc;
}

/* Sends an error reply, half-closes, and waits (bounded) for the client to close. */
static void conn_fail_bytes(dyn_conn *c, const uint8_t *bytes, size_t n)
{
    wr_dynamic_t *dyn = c->dyn;
    q_remove(c);
    if ((n && send_bytes(c, bytes, n) != 0) || wr_endpoint_shutdown(c->sock) != 0) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    free(c->req); /* bytes may have been its reply: only now */
    c->req = NULL;
    c->phase = PH_LINGER;
    if (wr_endpoint_read_start(c->sock) != 0) c->peer_eof = 1;
    q_push(&dyn->lingering, c, uv_now(dyn->loop) + LINGER_MS);
    arm(dyn);
}

static void conn_fail(dyn_conn *c, enum wr_proxy_fail fail, const char *detail)
{
    uint8_t reply[WR_PROXY_REPLY_MAX];
    size_t n = wr_proxy_reply(c->kind, fail, detail, reply, sizeof reply);
    wr_debug("dynamic: %s request for %s failed (%s): %s", wr_proxy_kind_name(c->kind), c->target,
             wr_proxy_fail_name(fail), detail);
    conn_fail_bytes(c, reply, n);
}

/* The endpoint to relay for c: its socket, or for a plain HTTP request a view of it that passes
 * upstream only the rest of the request's body and drops whatever follows, so a pipelined second
 * request (with its Proxy-Authorization) never reaches the origin. Reading goes on after the body
 * so that the client's EOF still ends the relay. NULL when out of memory. */
static wr_endpoint_t *client_side(dyn_conn *c)
{
    static const char drop[] = "dynamic: dropping what the client sent after its request for ";
    size_t n = sizeof drop + strlen(c->target);
    wr_endpoint_t *gate;
    if (!c->gated) return c->sock;
    if (!(c->drop_note = malloc(n))) return NULL;
    snprintf(c->drop_note, n, "%s%s", drop, c->target);
    gate = wr_prefix_endpoint_new(c->dyn->loop, c->sock, NULL, 0);
    if (gate) wr_prefix_endpoint_limit(gate, c->body_left, c->drop_note);
    return gate;
}

static void access_record(dyn_conn *c, uint64_t up, uint64_t down, uint64_t ms, const char *why)
{
    wr_access_record rec = {.tunnel = c->dyn->name,
                            .peer = c->peer,
                            .target = c->target,
                            .bytes_up = up,
                            .bytes_down = down,
                            .duration_ms = ms,
                            .reason = why};
    wr_access_log_write(&rec);
}

static void relay_done(wr_relay_t *r, const wr_relay_result_t *res, void *data)
{
    dyn_conn *c = data;
    wr_dynamic_t *dyn = c->dyn;
    uint64_t down = res->bytes_ba > c->reply_bytes ? res->bytes_ba - c->reply_bytes : 0;
    q_remove(c);
    dyn->bytes_up += res->bytes_ab;
    dyn->bytes_down += down;
    if (dyn->cbs.on_close) {
        wr_dynamic_close_info info = {
            .target = c->target,
            .peer = c->peer[0] ? c->peer : NULL,
            .bytes_up = res->bytes_ab,
            .bytes_down = down,
            .res = res,
        };
        dyn->cbs.on_close(dyn, &info);
    }
    if (wr_access_log_on())
        access_record(c, res->bytes_ab, down, res->duration_ms, wr_access_relay_reason(res, 1));
    conn_free(c);
}

static void stream_opened(wr_stream_t *st, int status, const char *reason)
{
    dyn_conn *c = wr_stream_data(st);
    wr_dynamic_t *dyn = c->dyn;
    wr_endpoint_t *sep = wr_stream_endpoint(st), *client;
    uint8_t reply[WR_PROXY_REPLY_MAX];
    size_t n;

    c->st = NULL; /* closed below or handed to the relay */
    if (status != 0) {
        /* OPEN_FAIL carries the relay's reason; anything else is a session problem */
        enum wr_proxy_fail fail =
            status == UV_ECONNREFUSED ? wr_proxy_fail_classify(reason) : WR_PROXY_FAIL_GENERAL;
        dyn->failed_opens++;
        if (wr_access_log_on()) {
            char why[16];
            access_record(c, 0, 0, 0,
                          status == UV_ECONNREFUSED ? wr_access_open_reason(reason, why, sizeof why)
                                                    : wr_access_dial_reason(status));
        }
        wr_endpoint_close(sep, WR_CLOSE_RESET);
        conn_fail(c, fail, reason);
        return;
    }
    q_remove(c);
    arm(dyn);
    n = wr_proxy_reply(c->kind, WR_PROXY_OK, NULL, reply, sizeof reply);
    client = n && send_bytes(c, reply, n) != 0 ? NULL : client_side(c);
    if (!client ||
        !(c->relay = wr_relay_start(dyn->loop, client, sep, &dyn->ropts, relay_done, c))) {
        if (client) { /* ours again: closing it (and the socket inside) frees c */
            c->sock = client;
            wr_endpoint_set_callbacks(client, &conn_cbs, c);
        }
        wr_endpoint_close(sep, WR_CLOSE_RESET);
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    c->phase = PH_RELAY;
    q_push(&dyn->relaying, c, 0);
}

static void write_stream(wr_endpoint_t *sep, const uint8_t *bytes, size_t n)
{
    wr_buf_t *b = wr_buf_new(n);
    if (!b) return; /* the open then fails or the relay sees a short stream: no worse than OOM */
    memcpy(b->data, bytes, n);
    wr_endpoint_write(sep, b, b->data, n);
    wr_buf_release(b);
}

/* The request is complete: open the stream and send what the target must see first (the
 * rewritten HTTP head, bytes the client sent after its request) without waiting for the answer. */
static void start_open(dyn_conn *c, wr_buf_t *b, const char *rest, size_t rest_len)
{
    wr_dynamic_t *dyn = c->dyn;
    wr_proxy_req *r = c->req;
    wr_session_t *s = dyn->cbs.session ? dyn->cbs.session(dyn) : NULL;
    wr_endpoint_t *sep;

    c->kind = r->kind;
    c->gated = r->kind == WR_PROXY_HTTP && !r->upgrade;
    c->body_left = r->body_len;
    wr_proxy_req_target(r, c->target, sizeof c->target);
    wr_endpoint_read_stop(c->sock);
    if (!s) { /* reconnecting: tell the client now rather than hold it */
        dyn->refused++;
        conn_fail(c, WR_PROXY_FAIL_UNAVAILABLE, "no session to the relay right now");
        return;
    }
    c->st =
        wr_session_open_stream(s, (const uint8_t *)c->target, strlen(c->target), stream_opened, c);
    if (!c->st) {
        conn_fail(c, WR_PROXY_FAIL_GENERAL, "cannot open a stream");
        return;
    }
    c->phase = PH_OPENING;
    sep = wr_stream_endpoint(c->st);
    /* Write failures here (a stream already dead) are reported through stream_opened. */
    if (r->head_len) write_stream(sep, r->head, r->head_len);
    if (c->gated && rest_len > c->body_left) rest_len = (size_t)c->body_left;
    if (c->gated) c->body_left -= rest_len;
    if (rest_len) wr_endpoint_write(sep, b, rest, rest_len);
    free(c->req);
    c->req = NULL;
    wr_debug("dynamic: %s request for %s", wr_proxy_kind_name(c->kind), c->target);
}

static void conn_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    dyn_conn *c = ep->data;
    size_t off = 0, used;

    if (c->phase != PH_REQUEST) return; /* lingering: discard */
    for (;;) {
        enum wr_proxy_status st =
            wr_proxy_req_feed(c->req, (const uint8_t *)base + off, len - off, &used);
        off += used;
        switch (st) {
        case WR_PROXY_NEED_MORE:
            return;
        case WR_PROXY_SEND:
            if (send_bytes(c, c->req->reply, c->req->reply_len) != 0) {
                conn_close(c, WR_CLOSE_RESET);
                return;
            }
            break;
        case WR_PROXY_ERROR:
            c->dyn->bad_requests++;
            c->kind = c->req->kind;
            wr_debug("dynamic: bad %s request: %s", wr_proxy_kind_name(c->kind), c->req->reason);
            conn_fail_bytes(c, c->req->reply, c->req->reply_len);
            return;
        case WR_PROXY_DONE:
            start_open(c, b, base + off, len - off);
            return;
        }
    }
}

static void conn_eof(wr_endpoint_t *ep)
{
    dyn_conn *c = ep->data;
    if (c->phase == PH_LINGER) {
        c->peer_eof = 1;
        if (c->shut_done) conn_close(c, WR_CLOSE_GRACEFUL);
        return;
    }
    c->dyn->bad_requests++; /* gone before finishing its request */
    conn_close(c, WR_CLOSE_GRACEFUL);
}

static void conn_error(wr_endpoint_t *ep, int err)
{
    conn_close(ep->data, WR_CLOSE_RESET);
}

static void conn_shutdown(wr_endpoint_t *ep, int status)
{
    dyn_conn *c = ep->data;
    c->shut_done = 1;
    if (status < 0 || c->peer_eof) conn_close(c, WR_CLOSE_GRACEFUL);
}

static void conn_closed(wr_endpoint_t *ep)
{
    conn_free(ep->data);
}

static const wr_endpoint_cbs_t conn_cbs = {
    .on_read = conn_read,
    .on_eof = conn_eof,
    .on_error = conn_error,
    .on_shutdown = conn_shutdown,
    .on_closed = conn_closed,
};

static void on_timer(uv_timer_t *t)
{
    wr_dynamic_t *dyn = t->data;
    uint64_t now = uv_now(dyn->loop);
    dyn_conn *c;

    while ((c = dyn->waiting.head) && c->deadline <= now) {
        if (c->phase == PH_OPENING) {
            wr_endpoint_close(wr_stream_endpoint(c->st), WR_CLOSE_RESET);
            c->st = NULL;
            dyn->failed_opens++;
            conn_fail(c, WR_PROXY_FAIL_TIMEOUT, "no answer from the relay in time");
        } else {
            dyn->bad_requests++; /* too slow to send its request */
            conn_close(c, WR_CLOSE_GRACEFUL);
        }
    }
    while ((c = dyn->lingering.head) && c->deadline <= now)
        conn_close(c, WR_CLOSE_GRACEFUL);
    arm(dyn);
}

static void format_peer(uv_tcp_t *tcp, char *out, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    snprintf(out, size, "?");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0)
        wr_addr_format((const struct sockaddr *)&ss, 1, out, size);
}

static void accepted(wr_listener_t *l, int status)
{
    wr_dynamic_t *dyn = wr_listener_data(l);
    uv_tcp_t *tcp;
    dyn_conn *c;

    if (status < 0) {
        wr_warn("dynamic accept failed: %s", uv_strerror(status));
        return;
    }
    if (wr_listener_accept(l, &tcp) != 0) return;
    c = calloc(1, sizeof *c);
    if (c) c->req = malloc(sizeof *c->req);
    if (c && c->req) c->sock = wr_tcp_endpoint_new(tcp);
    if (!c || !c->sock) {
        if (c) free(c->req);
        free(c);
        wr_tcp_close_free(tcp);
        return;
    }
    wr_proxy_req_init(c->req, dyn->user, dyn->password);
    c->dyn = dyn;
    c->phase = PH_REQUEST;
    snprintf(c->target, sizeof c->target, "?");
    if (dyn->cbs.on_close || wr_access_log_on()) format_peer(tcp, c->peer, sizeof c->peer);
    wr_endpoint_set_callbacks(c->sock, &conn_cbs, c);
    dyn->accepted++;
    dyn->active++;
    dyn->refs++;
    q_push(&dyn->waiting, c, uv_now(dyn->loop) + dyn->request_timeout_ms);
    if (wr_endpoint_read_start(c->sock) != 0) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    if (dyn->waiting.head == c) arm(dyn);
}

/* ---- the proxy ---- */

static void timer_closed(uv_handle_t *h)
{
    dynamic_unref(h->data);
}

void wr_dynamic_close(wr_dynamic_t *dyn)
{
    if (!dyn->listener) return;
    wr_listener_close(dyn->listener);
    dyn->listener = NULL;
    while (dyn->waiting.head)
        conn_close(dyn->waiting.head, WR_CLOSE_GRACEFUL);
    while (dyn->lingering.head)
        conn_close(dyn->lingering.head, WR_CLOSE_GRACEFUL);
    uv_close((uv_handle_t *)&dyn->timer, timer_closed);
}

uint32_t wr_dynamic_cut(wr_dynamic_t *dyn)
{
    uint32_t n = 0;
    while (dyn->relaying.head) {
        dyn_conn *c = dyn->relaying.head;
        q_remove(c);
        wr_relay_close(c->relay);
        n++;
    }
    return n;
}

void wr_dynamic_release(wr_dynamic_t *dyn)
{
    wr_dynamic_close(dyn);
    dynamic_unref(dyn);
}

static int credential_ok(const char *s)
{
    return s && *s && strlen(s) <= 255; /* SOCKS5 carries each in one length byte */
}

int wr_dynamic_new(uv_loop_t *loop, const wr_dynamic_config *cfg, const wr_dynamic_cbs *cbs,
                   void *data, wr_dynamic_t **out)
{
    wr_dynamic_t *dyn;
    int rc;

    *out = NULL;
    if ((cfg->user || cfg->password) && !(credential_ok(cfg->user) && credential_ok(cfg->password)))
        return UV_EINVAL;
    dyn = calloc(1, sizeof *dyn);
    if (!dyn) return UV_ENOMEM;
    if (cfg->user &&
        (!(dyn->user = strdup(cfg->user)) || !(dyn->password = strdup(cfg->password)))) {
        free(dyn->user);
        free(dyn);
        return UV_ENOMEM;
    }
    dyn->loop = loop;
    dyn->cbs = *cbs;
    dyn->data = data;
    dyn->request_timeout_ms =
        cfg->request_timeout_ms ? cfg->request_timeout_ms : WR_DYNAMIC_REQUEST_TIMEOUT_DEFAULT;
    dyn->ropts = cfg->relay;
    snprintf(dyn->name, sizeof dyn->name, "%s", cfg->name ? cfg->name : "");
    rc = wr_listen(loop, cfg->host ? cfg->host : "127.0.0.1", cfg->port, 0, accepted, dyn,
                   &dyn->listener);
    if (rc != 0) {
        free(dyn->user);
        free(dyn->password);
        free(dyn);
        return rc;
    }
    uv_timer_init(loop, &dyn->timer);
    dyn->timer.data = dyn;
    dyn->refs = 2; /* the listener with its timer, and the owner */
    *out = dyn;
    return 0;
}

void *wr_dynamic_data(const wr_dynamic_t *dyn)
{
    return dyn->data;
}

int wr_dynamic_port(const wr_dynamic_t *dyn)
{
    return dyn->listener ? wr_listener_port(dyn->listener) : 0;
}

int wr_dynamic_is_closed(const wr_dynamic_t *dyn)
{
    return dyn->listener == NULL;
}

void wr_dynamic_get_stats(const wr_dynamic_t *dyn, wr_dynamic_stats *out)
{
    out->accepted = dyn->accepted;
    out->refused = dyn->refused;
    out->failed_opens = dyn->failed_opens;
    out->bad_requests = dyn->bad_requests;
    out->bytes_up = dyn->bytes_up;
    out->bytes_down = dyn->bytes_down;
    out->active = dyn->active;
}
