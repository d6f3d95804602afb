/* core.dynamic{...}: a local SOCKS5 / SOCKS4(a) / HTTP proxy listener (ssh -D). Each
 * connection's first bytes name a target (wr_proxy_req); that becomes a stream through the
 * current session, answered to the client once the relay has dialled, then relayed in C exactly
 * like a forward's connections. Lua only hears about a connection's end, and only if it asked. */
#include "wr_bind.h"
#include "wr_bind_tunnel.h"
#include "wr_host.h"
#include "wr_io.h"
#include "wr_log.h"
#include "wr_proxy_req.h"
#include "wr_tcp_endpoint.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define DYNAMIC_MT              "warren.dynamic"
#define REQUEST_TIMEOUT_DEFAULT 10000
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

typedef struct wr_ldynamic {
    wr_closable link;
    lua_State *L;
    uv_loop_t *loop;
    wr_listener_t *listener; /* NULL once closed */
    uv_timer_t timer;
    conn_queue waiting;   /* PH_REQUEST and PH_OPENING: request_timeout_ms */
    conn_queue lingering; /* PH_LINGER: LINGER_MS */
    int anchor_ref;       /* a listening proxy runs without a Lua reference */
    wr_session_slot session;
    int on_close_ref;
    wr_relay_opts_t ropts;
    uint64_t request_timeout_ms;
    uint64_t accepted, refused, failed_opens, bad_requests, bytes_up, bytes_down;
    uint32_t active;
    int refs; /* the listener, the timer, the handle and each live connection */
    char *user, *password;
} wr_ldynamic;

struct dyn_conn {
    wr_ldynamic *dyn;
    wr_endpoint_t *sock;
    wr_stream_t *st;   /* PH_OPENING */
    wr_proxy_req *req; /* PH_REQUEST (large: freed as soon as the request is read) */
    conn_queue *queue; /* the queue it is on, or NULL */
    dyn_conn *prev, *next;
    uint64_t deadline;
    enum conn_phase phase;
    int closing, shut_done, peer_eof;
    enum wr_proxy_kind kind;
    int gated;            /* a plain HTTP request: only its body may follow it upstream */
    uint64_t body_left;   /* gated: body bytes not yet passed upstream */
    uint64_t reply_bytes; /* our own bytes sent to the client, not the target's */
    char target[WR_PROXY_TARGET_MAX];
    char peer[64]; /* the client's address, kept only for on_close */
};

static void dynamic_unref(wr_ldynamic *dyn)
{
    if (--dyn->refs > 0) return;
    luaL_unref(dyn->L, LUA_REGISTRYINDEX, dyn->on_close_ref);
    luaL_unref(dyn->L, LUA_REGISTRYINDEX, dyn->session.ref);
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

static void arm(wr_ldynamic *dyn)
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
    wr_ldynamic *dyn = c->dyn;
    dyn->active--;
    free(c->req);
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
    wr_ldynamic *dyn = c->dyn;
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

/* ---- the body gate ----
 *
 * What the relay sees of a plain HTTP client instead of its socket: the same socket, except that
 * reads pass upstream only the rest of the request's body and drop whatever follows, so a
 * pipelined second request (with its Proxy-Authorization) never reaches the origin. Reading goes
 * on after the body so that the client's EOF still ends the relay. */
typedef struct body_gate {
    wr_endpoint_t ep;    /* the relay's side */
    wr_endpoint_t *sock; /* the client's socket, whose callbacks come here */
    dyn_conn *c;
    int dropping; /* logged once */
} body_gate;

static body_gate *gate_of(wr_endpoint_t *ep)
{
    return (body_gate *)ep;
}

/* The relay reads the counters and queue of its endpoint: keep them the socket's. */
static void gate_sync(body_gate *g)
{
    g->ep.bytes_read = g->sock->bytes_read;
    g->ep.bytes_written = g->sock->bytes_written;
    g->ep.queued = g->sock->queued;
}

static int gate_read_start(wr_endpoint_t *ep)
{
    return wr_endpoint_read_start(gate_of(ep)->sock);
}

static int gate_read_stop(wr_endpoint_t *ep)
{
    return wr_endpoint_read_stop(gate_of(ep)->sock);
}

static int gate_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    body_gate *g = gate_of(ep);
    int rc;
    wr_endpoint_set_watermarks(g->sock, ep->low_water, ep->high_water);
    rc = wr_endpoint_write(g->sock, b, base, len);
    gate_sync(g);
    return rc;
}

static int gate_shutdown(wr_endpoint_t *ep)
{
    return wr_endpoint_shutdown(gate_of(ep)->sock);
}

static void gate_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    ep->flags |= WR_EP_CLOSING;
    wr_endpoint_close(gate_of(ep)->sock, mode);
}

static const wr_endpoint_ops_t gate_ops = {
    .kind = "http-body-gate",
    .read_start = gate_read_start,
    .read_stop = gate_read_stop,
    .write = gate_write,
    .shutdown = gate_shutdown,
    .close = gate_close,
};

static void gate_read(wr_endpoint_t *sock, wr_buf_t *b, const char *base, size_t len)
{
    body_gate *g = sock->data;
    dyn_conn *c = g->c;
    size_t n = len < c->body_left ? len : (size_t)c->body_left;
    c->body_left -= n;
    gate_sync(g);
    if (n < len && !g->dropping) {
        g->dropping = 1;
        wr_debug("dynamic: dropping what the client sent after its request for %s", c->target);
    }
    if (n) g->ep.cbs->on_read(&g->ep, b, base, n);
}

static void gate_eof(wr_endpoint_t *sock)
{
    body_gate *g = sock->data;
    g->ep.cbs->on_eof(&g->ep);
}

static void gate_error(wr_endpoint_t *sock, int err)
{
    body_gate *g = sock->data;
    g->ep.cbs->on_error(&g->ep, err);
}

static void gate_drain(wr_endpoint_t *sock)
{
    body_gate *g = sock->data;
    gate_sync(g);
    if (g->ep.cbs->on_drain) g->ep.cbs->on_drain(&g->ep);
}

static void gate_shutdown_done(wr_endpoint_t *sock, int status)
{
    body_gate *g = sock->data;
    gate_sync(g);
    g->ep.cbs->on_shutdown(&g->ep, status);
}

static void gate_closed(wr_endpoint_t *sock)
{
    body_gate *g = sock->data;
    gate_sync(g);
    g->ep.cbs->on_closed(&g->ep);
    free(g);
}

static const wr_endpoint_cbs_t gate_cbs = {
    .on_read = gate_read,
    .on_eof = gate_eof,
    .on_error = gate_error,
    .on_drain = gate_drain,
    .on_shutdown = gate_shutdown_done,
    .on_closed = gate_closed,
};

/* The endpoint to relay for c: its socket, or a gate around it. NULL when out of memory. */
static wr_endpoint_t *client_side(dyn_conn *c)
{
    body_gate *g;
    if (!c->gated) return c->sock;
    g = calloc(1, sizeof *g);
    if (!g) return NULL;
    wr_endpoint__init(&g->ep, &gate_ops, NULL);
    g->sock = c->sock;
    g->c = c;
    gate_sync(g);
    wr_endpoint_set_callbacks(c->sock, &gate_cbs, g);
    return &g->ep;
}

static void relay_done(wr_relay_t *r, const wr_relay_result_t *res, void *data)
{
    dyn_conn *c = data;
    wr_ldynamic *dyn = c->dyn;
    uint64_t down = res->bytes_ba > c->reply_bytes ? res->bytes_ba - c->reply_bytes : 0;
    dyn->bytes_up += res->bytes_ab;
    dyn->bytes_down += down;
    wr_call_close_hook(dyn->L, dyn->on_close_ref, c->target, c->peer[0] ? c->peer : NULL,
                       res->bytes_ab, down, res);
    conn_free(c);
}

static void stream_opened(wr_stream_t *st, int status, const char *reason)
{
    dyn_conn *c = wr_stream_data(st);
    wr_ldynamic *dyn = c->dyn;
    wr_endpoint_t *sep = wr_stream_endpoint(st), *client;
    uint8_t reply[WR_PROXY_REPLY_MAX];
    size_t n;

    c->st = NULL; /* closed below or handed to the relay */
    if (status != 0) {
        /* OPEN_FAIL carries the relay's reason; anything else is a session problem */
        enum wr_proxy_fail fail =
            status == UV_ECONNREFUSED ? wr_proxy_fail_classify(reason) : WR_PROXY_FAIL_GENERAL;
        dyn->failed_opens++;
        wr_endpoint_close(sep, WR_CLOSE_RESET);
        conn_fail(c, fail, reason);
        return;
    }
    q_remove(c);
    arm(dyn);
    n = wr_proxy_reply(c->kind, WR_PROXY_OK, NULL, reply, sizeof reply);
    client = n && send_bytes(c, reply, n) != 0 ? NULL : client_side(c);
    if (!client || !wr_relay_start(dyn->loop, client, sep, &dyn->ropts, relay_done, c)) {
        if (client && client != c->sock) { /* the socket is ours again */
            wr_endpoint_set_callbacks(c->sock, &conn_cbs, c);
            free(client);
        }
        wr_endpoint_close(sep, WR_CLOSE_RESET);
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    c->phase = PH_RELAY;
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
    wr_ldynamic *dyn = c->dyn;
    wr_proxy_req *r = c->req;
    wr_session_t *s = wr_lsession_get(dyn->session.session);
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
    wr_ldynamic *dyn = t->data;
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

static void accepted(wr_listener_t *l, int status)
{
    wr_ldynamic *dyn = wr_listener_data(l);
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
    if (dyn->on_close_ref != LUA_NOREF) wr_format_peer(c->sock, c->peer, sizeof c->peer);
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

/* ---- the handle ---- */

static void timer_closed(uv_handle_t *h)
{
    dynamic_unref(h->data);
}

/* Stops listening and drops the connections still negotiating; relayed ones finish on their
 * own, as a forward's do. */
static void dynamic_close(wr_ldynamic *dyn)
{
    if (!dyn->listener) return;
    wr_host_untrack(&dyn->link);
    wr_listener_close(dyn->listener);
    dyn->listener = NULL;
    while (dyn->waiting.head)
        conn_close(dyn->waiting.head, WR_CLOSE_GRACEFUL);
    while (dyn->lingering.head)
        conn_close(dyn->lingering.head, WR_CLOSE_GRACEFUL);
    uv_close((uv_handle_t *)&dyn->timer, timer_closed);
    luaL_unref(dyn->L, LUA_REGISTRYINDEX, dyn->anchor_ref);
    dyn->anchor_ref = LUA_NOREF;
    dynamic_unref(dyn);
}

static void dynamic_close_tracked(wr_closable *c)
{
    dynamic_close((wr_ldynamic *)((char *)c - offsetof(wr_ldynamic, link)));
}

/* core.dynamic{host=, port=, session=, user=, password=, write_cap=, idle_timeout_ms=,
 * request_timeout_ms=, on_close=fn} -> dynamic | nil, err */
static int l_dynamic(lua_State *L)
{
    const char *host, *user, *password;
    lua_Integer port, timeout;
    wr_relay_opts_t ropts;
    wr_ldynamic *dyn;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    host = wr_opt_string(L, 1, "host", "127.0.0.1");
    port = wr_opt_integer(L, 1, "port", 0);
    timeout = wr_opt_integer(L, 1, "request_timeout_ms", REQUEST_TIMEOUT_DEFAULT);
    user = wr_opt_string(L, 1, "user", NULL);
    password = wr_opt_string(L, 1, "password", NULL);
    /* everything that may raise, before anything is allocated */
    wr_relay_opts_from(L, 1, &ropts);
    lua_getfield(L, 1, "session");
    if (!lua_isnil(L, -1)) luaL_checkudata(L, -1, SESSION_MT);
    lua_getfield(L, 1, "on_close");
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
        return luaL_error(L, "option on_close must be a function");
    lua_pop(L, 2);
    if (port > 65535) return luaL_error(L, "dynamic: bad port");
    if (timeout == 0) return luaL_error(L, "dynamic: request_timeout_ms must be > 0");
    if (!user != !password) return luaL_error(L, "dynamic: user and password go together");
    /* SOCKS5 carries each in one length byte */
    if (user && (!*user || !*password || strlen(user) > 255 || strlen(password) > 255))
        return luaL_error(L, "dynamic: user and password must be 1 to 255 bytes");
    dyn = calloc(1, sizeof *dyn);
    if (!dyn) return luaL_error(L, "dynamic: out of memory");
    if (user && (!(dyn->user = strdup(user)) || !(dyn->password = strdup(password)))) {
        free(dyn->user);
        free(dyn);
        return luaL_error(L, "dynamic: out of memory");
    }
    dyn->L = wr_host_get(L)->L;
    dyn->loop = wr_host_loop(L);
    dyn->session.ref = dyn->anchor_ref = dyn->on_close_ref = LUA_NOREF;
    dyn->request_timeout_ms = (uint64_t)timeout;
    dyn->ropts = ropts;
    rc = wr_listen(dyn->loop, host, (uint16_t)port, 0, accepted, dyn, &dyn->listener);
    if (rc != 0) {
        free(dyn->user);
        free(dyn->password);
        free(dyn);
        return wr_push_uv_error(L, rc);
    }
    uv_timer_init(dyn->loop, &dyn->timer);
    dyn->timer.data = dyn;
    lua_getfield(L, 1, "session");
    wr_session_slot_set(L, &dyn->session, lua_gettop(L));
    lua_pop(L, 1);
    dyn->on_close_ref = wr_opt_function_ref(L, 1, "on_close");
    dyn->refs = 3; /* listener + timer + handle */
    dyn->link.close = dynamic_close_tracked;
    wr_host_track(wr_host_get(L), &dyn->link);
    wr_box_new(L, dyn, DYNAMIC_MT);
    lua_pushvalue(L, -1);
    dyn->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static wr_ldynamic *check_dynamic(lua_State *L)
{
    return *(wr_ldynamic **)luaL_checkudata(L, 1, DYNAMIC_MT);
}

static int l_dynamic_set_session(lua_State *L)
{
    wr_ldynamic *dyn = check_dynamic(L);
    if (!dyn->listener) return wr_push_closed(L);
    wr_session_slot_set(L, &dyn->session, 2);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_dynamic_port(lua_State *L)
{
    wr_ldynamic *dyn = check_dynamic(L);
    if (!dyn->listener) return wr_push_closed(L);
    lua_pushinteger(L, wr_listener_port(dyn->listener));
    return 1;
}

static int l_dynamic_stats(lua_State *L)
{
    wr_ldynamic *dyn = check_dynamic(L);
    lua_createtable(L, 0, 7);
    wr_set_number(L, "accepted", (double)dyn->accepted);
    wr_set_number(L, "refused", (double)dyn->refused);
    wr_set_number(L, "failed_opens", (double)dyn->failed_opens);
    wr_set_number(L, "bad_requests", (double)dyn->bad_requests);
    wr_set_number(L, "active", dyn->active);
    wr_set_number(L, "bytes_up", (double)dyn->bytes_up);
    wr_set_number(L, "bytes_down", (double)dyn->bytes_down);
    return 1;
}

static int l_dynamic_close(lua_State *L)
{
    wr_ldynamic *dyn = check_dynamic(L);
    if (!dyn->listener) return wr_push_closed(L);
    dynamic_close(dyn);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_dynamic_gc(lua_State *L)
{
    dynamic_unref(check_dynamic(L)); /* only collected once closed: an open proxy is anchored */
    return 0;
}

static const luaL_Reg dynamic_methods[] = {
    {"set_session", l_dynamic_set_session},
    {"port", l_dynamic_port},
    {"stats", l_dynamic_stats},
    {"close", l_dynamic_close},
    {NULL, NULL},
};

void wr_bind_dynamic(lua_State *L)
{
    wr_bind_class(L, DYNAMIC_MT, dynamic_methods, l_dynamic_gc, "dynamic", l_dynamic);
}
