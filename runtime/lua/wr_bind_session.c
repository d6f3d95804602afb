/* Session handles. core.session_connect{...} dials a relay, runs the handshake and awaits the
 * session; a relay wraps its own authenticated sessions in the same handle type (wr_lsession_wrap)
 * so Lua can bind reverse-tunnel listeners to them. The handle stays valid after the session ends
 * (methods then report it closed), so a forward may keep a reference across reconnects.
 *
 * Reverse tunnels, client side: the relay opens a stream "@svc/ID USER" for each user of an outer
 * port; the client dials the inner address it exposed under ID (session:expose) and relays. Only
 * exposed services are dialled: a relay cannot steer the client anywhere else. */
#include "wr_access_log.h"
#include "wr_bind.h"
#include "wr_bind_tunnel.h"
#include "wr_carrier.h"
#include "wr_kcp_endpoint.h"
#include "wr_crypto.h"
#include "wr_host.h"
#include "wr_io.h"
#include "wr_log.h"
#include "wr_stream_dial.h"
#include "wr_task.h"
#include "wr_tcp_endpoint.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An inner service the relay may reach through this session. */
typedef struct exposure {
    uint32_t id;
    uint16_t port;
    char host[WR_HOST_MAX + 1];
    char name[WR_ACCESS_NAME_MAX]; /* the service's name in access records */
} exposure;

/* One user's connection to an inner service, for the stats, the access log and a cut. */
typedef struct reverse_conn {
    wr_lsession *ls;
    struct reverse_conn *prev, *next; /* the session's list */
    wr_stream_dial_t *dial;
    uint32_t service; /* the exposure's id */
    int cut;
    char name[WR_ACCESS_NAME_MAX];
    char target[WR_HOST_MAX + 8];
    char peer[64];
} reverse_conn;

struct wr_lsession {
    wr_closable link;
    lua_State *L;
    wr_session_t *session; /* NULL before the dial completes and after the session ended */
    wr_carrier_dial_t *dial;
    int tls_ref;          /* the TLS context's handle, while the carrier is being built */
    wr_kcp_counters *kcp; /* the KCP carrier's counters, or NULL */
    wr_await *connecting;
    int anchor_ref;    /* the handle, while connecting or open */
    int on_closed_ref; /* Lua callbacks waiting for the end */
    int box_alive;
    int ended;
    int wrapped; /* a relay's session: the relay owns it and reports its end */
    int refs;    /* reverse connections still running (they count into the stats below) */
    struct reverse_conn *conns;
    char reason[192];
    const char *code; /* why in one word for scripts: a session reason name or a libuv error name */
    char peer[64];
    char user[WR_USER_NAME_MAX]; /* a relay's session: whose key it showed */
    uint8_t key[32];
    wr_session_config cfg;
    wr_relay_opts_t ropts; /* for reverse connections */
    exposure *exposed;
    size_t nexposed, exposed_cap;
    uint64_t reverse_total, reverse_failed;
    uint32_t reverse_active;
};

wr_session_t *wr_lsession_get(wr_lsession *ls)
{
    return (ls && !ls->ended && ls->session && wr_session_is_ready(ls->session)) ? ls->session
                                                                                 : NULL;
}

static void lsession_maybe_free(wr_lsession *ls)
{
    if (ls->ended && !ls->box_alive && ls->refs == 0) {
        wr_zeroize(ls->key, sizeof ls->key);
        wr_kcp_counters_release(ls->kcp);
        free(ls->exposed);
        free(ls);
    }
}

/* Settles a pending connect: the session handle, or nil, err, code (ls->code). */
static void finish_connect(wr_lsession *ls, const char *err)
{
    wr_await *aw = ls->connecting;
    lua_State *co;
    ls->connecting = NULL;
    if (!aw) return;
    co = wr_await_settle(aw);
    if (co) {
        if (err) {
            lua_pushnil(co);
            lua_pushstring(co, err);
            lua_pushstring(co, ls->code ? ls->code : "failed");
            wr_await_resume(aw, 3);
        } else {
            lua_rawgeti(co, LUA_REGISTRYINDEX, ls->anchor_ref);
            wr_await_resume(aw, 1);
        }
    }
    wr_await_release(aw);
}

/* The session is over (or never started): tell the waiters, drop the anchor. */
static void lsession_end(wr_lsession *ls, const char *reason, const char *code)
{
    lua_State *L = ls->L;
    if (ls->ended) return;
    ls->ended = 1;
    ls->code = code;
    ls->session = NULL;
    snprintf(ls->reason, sizeof ls->reason, "%s", reason);
    if (!ls->wrapped) wr_host_untrack(&ls->link);
    finish_connect(ls, reason);
    if (ls->on_closed_ref != LUA_NOREF) {
        int i, n;
        lua_rawgeti(L, LUA_REGISTRYINDEX, ls->on_closed_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, ls->on_closed_ref);
        ls->on_closed_ref = LUA_NOREF;
        n = (int)lua_objlen(L, -1);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            lua_pushstring(L, reason);
            if (wr_lua_pcall(L, 1, 0) != 0) wr_lua_report(L, "session on_closed");
        }
        lua_pop(L, 1);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, ls->anchor_ref);
    ls->anchor_ref = LUA_NOREF;
    lsession_maybe_free(ls);
}

static void on_ready(wr_session_t *s)
{
    wr_lsession *ls = wr_session_data(s);
    if (ls) finish_connect(ls, NULL);
}

static void reverse_done(void *data, int dial_status, const wr_relay_result_t *res)
{
    reverse_conn *rc = data;
    wr_lsession *ls = rc->ls;
    if (wr_access_log_on()) {
        wr_access_record rec = {
            .tunnel = rc->name,
            .peer = rc->peer,
            .target = rc->target,
            .bytes_up = res ? res->bytes_ab : 0, /* a = the stream: from the user */
            .bytes_down = res ? res->bytes_ba : 0,
            .duration_ms = res ? res->duration_ms : 0,
            .reason = res ? wr_access_relay_reason(res, 0) : wr_access_dial_reason(dial_status),
        };
        wr_access_log_write(&rec);
    }
    if (rc->prev)
        rc->prev->next = rc->next;
    else
        ls->conns = rc->next;
    if (rc->next) rc->next->prev = rc->prev;
    free(rc);
    if (dial_status != 0) ls->reverse_failed++;
    ls->reverse_active--;
    ls->refs--;
    lsession_maybe_free(ls);
}

static const exposure *find_exposure(const wr_lsession *ls, uint32_t id)
{
    for (size_t i = 0; i < ls->nexposed; i++)
        if (ls->exposed[i].id == id) return &ls->exposed[i];
    return NULL;
}

/* The relay opens "@svc/ID USER" for each user of one of our outer ports. */
static void on_stream_open(wr_session_t *s, wr_stream_t *st, const uint8_t *target, size_t len)
{
    wr_lsession *ls = wr_session_data(s);
    const exposure *e;
    reverse_conn *rc;
    char text[64];
    unsigned long id;
    char *end;

    if (!ls || len < 6 || len >= sizeof text || memcmp(target, "@svc/", 5) != 0) {
        wr_stream_reject(st, "bad target: this client serves only its registered services");
        return;
    }
    memcpy(text, target, len);
    text[len] = '\0';
    id = strtoul(text + 5, &end, 10);
    e = (*end == ' ' || *end == '\0') && end != text + 5 ? find_exposure(ls, (uint32_t)id) : NULL;
    if (!e) {
        wr_stream_reject(st, "denied: no such service on this client");
        return;
    }
    ls->reverse_total++;
    rc = malloc(sizeof *rc);
    if (!rc) {
        wr_stream_reject(st, "failed: out of memory");
        ls->reverse_failed++;
        return;
    }
    rc->ls = ls;
    rc->service = e->id;
    rc->cut = 0;
    memcpy(rc->name, e->name, sizeof rc->name);
    snprintf(rc->target, sizeof rc->target, strchr(e->host, ':') ? "[%s]:%u" : "%s:%u", e->host,
             (unsigned)e->port);
    snprintf(rc->peer, sizeof rc->peer, "%s", *end == ' ' ? end + 1 : "");
    if (wr_stream_dial(wr_host_loop(ls->L), st, e->host, e->port, 10000, &ls->ropts, NULL,
                       reverse_done, rc, &rc->dial) != 0) {
        free(rc);
        ls->reverse_failed++;
        return;
    }
    rc->prev = NULL;
    rc->next = ls->conns;
    if (ls->conns) ls->conns->prev = rc;
    ls->conns = rc;
    ls->reverse_active++;
    ls->refs++;
}

static void on_closed(wr_session_t *s, int reason, const char *detail)
{
    wr_lsession *ls = wr_session_data(s);
    char msg[192];
    const char *name = wr_session_reason_name(reason);
    if (!ls) return; /* closed by its owner, who already moved on */
    if (detail && *detail && strncmp(detail, name, strlen(name)) != 0)
        snprintf(msg, sizeof msg, "%s: %s", name, detail);
    else /* the detail may say more after the name (a SESSION_END's reason) */
        snprintf(msg, sizeof msg, "%s", detail && *detail ? detail : name);
    wr_debug("session closed: %s", msg);
    lsession_end(ls, msg, name);
}

static const wr_session_cbs session_cbs = {
    .on_ready = on_ready, .on_stream_open = on_stream_open, .on_closed = on_closed};

static void drop_tls_ref(wr_lsession *ls)
{
    luaL_unref(ls->L, LUA_REGISTRYINDEX, ls->tls_ref);
    ls->tls_ref = LUA_NOREF;
}

static void carrier_ready(int status, const char *err, wr_endpoint_t *carrier, void *data)
{
    wr_lsession *ls = data;
    ls->dial = NULL;
    drop_tls_ref(ls);
    if (status != 0) {
        lsession_end(ls, err, uv_err_name(status));
        return;
    }
    ls->kcp = wr_kcp_endpoint_counters(carrier);
    ls->session = wr_session_new(wr_host_loop(ls->L), carrier, &ls->cfg, &session_cbs, ls);
    if (!ls->session) {
        wr_endpoint_close(carrier, WR_CLOSE_RESET);
        lsession_end(ls, "out of memory", uv_err_name(UV_ENOMEM));
    }
}

static void lsession_close(wr_lsession *ls, const char *why)
{
    if (ls->ended) return;
    if (ls->wrapped) { /* the relay hears the end and calls wr_lsession_ended */
        wr_session_close(ls->session);
        return;
    }
    if (ls->dial) {
        wr_carrier_cancel(ls->dial); /* closes what was built; carrier_ready will not run */
        ls->dial = NULL;
        drop_tls_ref(ls);
    }
    if (ls->session) {
        wr_session_t *s = ls->session;
        wr_session_close(s);
        wr_session_set_data(s, NULL);
    }
    lsession_end(ls, why, uv_err_name(UV_ECANCELED));
}

static void lsession_close_tracked(wr_closable *c)
{
    lsession_close((wr_lsession *)((char *)c - offsetof(wr_lsession, link)), "shutting down");
}

static void connect_aborted(wr_await *aw)
{
    wr_lsession *ls = aw->data;
    if (ls->connecting == aw) {
        ls->connecting = NULL;
        wr_await_release(aw);
    }
    lsession_close(ls, "connect timed out or was cancelled");
}

/* core.session_connect{host=, port=, key=, carrier="tcp"|"tls"|"ws"|"wss"|"http"|"https"|"kcp",
 * tls=core.tls_client{...}, tls_name=, host_header=, path=, proxy_host=, proxy_port=,
 * headers={"Name: value", ...} (WebSocket, HTTP: sent in every request; the caller refuses the
 * fields the carrier sets, this refuses a line that would end the head early),
 * kcp_mode=, kcp_mtu=, kcp_sndwnd=, kcp_rcvwnd= (KCP, see wr_kcp_opts_from),
 * congestion="bbr"|"cubic"|... (the TCP carriers' TCP_CONGESTION),
 * proxy_auth="USER:PASS", window=, session_buffer=, keepalive_ms=, timeout_ms=,
 * cipher="auto"|"aes-256-gcm"|"chacha20-poly1305"} -> session | nil, err, code (code: the
 * session's end as wr_session_reason_name says it, "no answer" for a relay that closed without
 * answering, or a libuv error name such as "ECONNREFUSED" when the carrier failed) */
/* headers={...} of the table at 1 as one string of "Name: value\r\n" lines, left on the stack
 * (NULL when absent). */
static const char *opt_header_lines(lua_State *L)
{
    int n;
    lua_getfield(L, 1, "headers");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    luaL_checktype(L, -1, LUA_TTABLE);
    n = (int)lua_objlen(L, -1);
    luaL_checkstack(L, 2 * n + 2, "session_connect: headers");
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *line;
        lua_rawgeti(L, -1 - 2 * (i - 1), i);
        line = lua_tolstring(L, -1, &len);
        if (!line || strcspn(line, "\r\n") != len || !memchr(line, ':', len))
            luaL_error(L, "session_connect: headers[%d] must be one \"Name: value\" line", i);
        lua_pushliteral(L, "\r\n");
    }
    lua_concat(L, 2 * n);
    lua_remove(L, -2);
    return lua_tostring(L, -1);
}

static int l_session_connect(lua_State *L)
{
    wr_lsession *ls;
    wr_await *aw;
    size_t keylen;
    const char *host, *key, *carrier;
    lua_Integer port;
    wr_carrier_spec spec;
    int rc, cipher;

    luaL_checktype(L, 1, LUA_TTABLE);
    host = wr_opt_string(L, 1, "host", NULL);
    port = wr_opt_integer(L, 1, "port", 0);
    lua_getfield(L, 1, "key");
    key = lua_tolstring(L, -1, &keylen);
    lua_pop(L, 1);
    if (!host || port <= 0 || port > 65535)
        return luaL_error(L, "session_connect: host and port required");
    if (!key || keylen != 32) return luaL_error(L, "session_connect: key must be 32 bytes");
    cipher = wr_hs_cipher_from_name(wr_opt_string(L, 1, "cipher", "auto"));
    if (cipher < 0)
        return luaL_error(L,
                          "session_connect: cipher must be auto, aes-256-gcm or chacha20-poly1305");
    memset(&spec, 0, sizeof spec);
    spec.host = host;
    spec.port = (uint16_t)port;
    spec.psk = (const uint8_t *)key;
    spec.timeout_ms = (uint64_t)wr_opt_integer(L, 1, "timeout_ms", 10000);
    spec.tls_name = wr_opt_string(L, 1, "tls_name", NULL);
    spec.proxy_host = wr_opt_string(L, 1, "proxy_host", NULL);
    spec.proxy_port = (uint16_t)wr_opt_integer(L, 1, "proxy_port", 0);
    spec.proxy_auth = wr_opt_string(L, 1, "proxy_auth", NULL);
    if (spec.proxy_host && spec.proxy_port == 0)
        return luaL_error(L, "session_connect: proxy_port required with proxy_host");
    spec.host_header = wr_opt_string(L, 1, "host_header", NULL);
    spec.path = wr_opt_string(L, 1, "path", NULL);
    spec.congestion = wr_opt_string(L, 1, "congestion", NULL);
    spec.headers = opt_header_lines(L);
    carrier = wr_opt_string(L, 1, "carrier", "tcp");
    if (strcmp(carrier, "tcp") == 0) {
        spec.kind = WR_CARRIER_TCP;
    } else if (strcmp(carrier, "ws") == 0) {
        spec.kind = WR_CARRIER_WS;
    } else if (strcmp(carrier, "http") == 0) {
        spec.kind = WR_CARRIER_HTTP;
    } else if (strcmp(carrier, "kcp") == 0) {
        spec.kind = WR_CARRIER_KCP;
        if (spec.proxy_host)
            return luaL_error(L, "session_connect: KCP is UDP and cannot go through an HTTP proxy");
        wr_kcp_opts_from(L, 1, &spec.kcp);
    } else if (strcmp(carrier, "tls") == 0 || strcmp(carrier, "wss") == 0 ||
               strcmp(carrier, "https") == 0) {
        spec.kind = carrier[0] == 't'   ? WR_CARRIER_TLS
                    : carrier[0] == 'w' ? WR_CARRIER_WSS
                                        : WR_CARRIER_HTTPS;
        lua_getfield(L, 1, "tls");
        spec.tls = wr_tls_ctx_check(L, -1);
        lua_pop(L, 1);
    } else {
        return luaL_error(L, "session_connect: unknown carrier %s", carrier);
    }
    if (spec.path && spec.path[0] != '/')
        return luaL_error(L, "session_connect: path must start with /");

    ls = calloc(1, sizeof *ls);
    if (!ls) return luaL_error(L, "session_connect: out of memory");
    ls->L = wr_host_get(L)->L;
    ls->anchor_ref = LUA_NOREF;
    ls->on_closed_ref = LUA_NOREF;
    memcpy(ls->key, key, 32);
    ls->cfg.psk = ls->key;
    ls->cfg.window = (uint32_t)wr_opt_integer(L, 1, "window", 0);
    ls->cfg.rx_limit = (size_t)wr_opt_integer(L, 1, "session_buffer", 0);
    ls->cfg.keepalive_ms = (uint32_t)wr_opt_integer(L, 1, "keepalive_ms", 0);
    ls->cfg.max_streams = (uint32_t)wr_opt_integer(L, 1, "max_streams", WR_TUNNEL_MAX_STREAMS);
    ls->cfg.handshake_timeout_ms = (uint32_t)spec.timeout_ms;
    ls->cfg.cipher = cipher;
    ls->tls_ref = LUA_NOREF;
    ls->cfg.stream_high_water = (size_t)wr_opt_integer(L, 1, "write_cap", 0);
    wr_relay_opts_from(L, 1, &ls->ropts);

    rc = wr_carrier_dial(wr_host_loop(L), &spec, carrier_ready, ls, &ls->dial);
    if (rc != 0) {
        free(ls);
        return wr_push_uv_error(L, rc);
    }
    if (spec.tls) { /* the context lives while the carrier is built */
        lua_getfield(L, 1, "tls");
        ls->tls_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    ls->link.close = lsession_close_tracked;
    wr_host_track(wr_host_get(L), &ls->link);
    wr_box_new(L, ls, SESSION_MT);
    ls->box_alive = 1;
    ls->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    aw = wr_await_begin(L, "session_connect");
    aw->data = ls;
    aw->abort = connect_aborted;
    aw->refs++;
    ls->connecting = aw;
    wr_await_timeout(aw, spec.timeout_ms + 1000); /* the dial and handshake time out first */
    return wr_await_yield(L, aw);
}

static wr_lsession *check_lsession(lua_State *L)
{
    return *(wr_lsession **)luaL_checkudata(L, 1, SESSION_MT);
}

/* session:on_closed(fn): fn(reason) when the session ends (at once if it already has). */
static int l_session_on_closed(lua_State *L)
{
    wr_lsession *ls = check_lsession(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (ls->ended) {
        lua_pushvalue(L, 2);
        lua_pushstring(L, ls->reason);
        lua_call(L, 1, 0);
        return 0;
    }
    if (ls->on_closed_ref == LUA_NOREF) {
        lua_newtable(L);
        ls->on_closed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->on_closed_ref);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    return 0;
}

static int l_session_is_open(lua_State *L)
{
    lua_pushboolean(L, wr_lsession_get(check_lsession(L)) != NULL);
    return 1;
}

static int l_session_close(lua_State *L)
{
    wr_lsession *ls = check_lsession(L);
    if (ls->ended) return wr_push_closed(L);
    lsession_close(ls, "closed locally");
    lua_pushboolean(L, 1);
    return 1;
}

static int l_session_stats(lua_State *L)
{
    wr_lsession *ls = check_lsession(L);
    wr_session_stats st;
    if (!wr_lsession_get(ls)) return wr_push_closed(L);
    wr_session_get_stats(ls->session, &st);
    lua_createtable(L, 0, 11);
    wr_set_number(L, "bytes_in", (double)st.bytes_in);
    wr_set_number(L, "bytes_out", (double)st.bytes_out);
    wr_set_number(L, "frames_in", (double)st.frames_in);
    wr_set_number(L, "frames_out", (double)st.frames_out);
    wr_set_number(L, "streams_opened", (double)st.streams_opened);
    wr_set_number(L, "streams_active", (double)st.streams_active);
    wr_set_number(L, "rtt_ms", (double)st.rtt_us_last / 1000.0);
    wr_set_number(L, "carrier_writes", (double)st.carrier_writes);
    wr_set_number(L, "reverse_active", ls->reverse_active);
    wr_set_number(L, "reverse_total", (double)ls->reverse_total);
    wr_set_number(L, "reverse_failed", (double)ls->reverse_failed);
    if (st.cipher) {
        lua_pushstring(L, wr_aead_alg_name((enum wr_aead_alg)st.cipher));
        lua_setfield(L, -2, "cipher");
    }
    if (ls->kcp) wr_set_kcp_stats(L, &ls->kcp->st);
    return 1;
}

/* session:expose(id, host, port[, name]): the relay may now open "@svc/ID ..." streams, which this
 * client answers by dialing host:port (name: the service's, in access records). Replaces an
 * earlier exposure of the same id. */
static int l_session_expose(lua_State *L)
{
    wr_lsession *ls = check_lsession(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    size_t hlen;
    const char *host = luaL_checklstring(L, 3, &hlen);
    lua_Integer port = luaL_checkinteger(L, 4);
    const char *name = luaL_optstring(L, 5, "");
    exposure *e;
    luaL_argcheck(L, id >= 0 && id <= UINT32_MAX, 2, "bad id");
    luaL_argcheck(L, hlen <= WR_HOST_MAX, 3, "host too long");
    luaL_argcheck(L, port > 0 && port <= 65535, 4, "bad port");
    if (ls->ended) return wr_push_closed(L);
    e = (exposure *)find_exposure(ls, (uint32_t)id);
    if (!e) {
        if (ls->nexposed == ls->exposed_cap) {
            size_t cap = ls->exposed_cap ? ls->exposed_cap * 2 : 8;
            exposure *grown = realloc(ls->exposed, cap * sizeof *grown);
            if (!grown) return luaL_error(L, "session:expose: out of memory");
            ls->exposed = grown;
            ls->exposed_cap = cap;
        }
        e = &ls->exposed[ls->nexposed++];
        e->id = (uint32_t)id;
    }
    memcpy(e->host, host, hlen + 1);
    e->port = (uint16_t)port;
    snprintf(e->name, sizeof e->name, "%s", name);
    lua_pushboolean(L, 1);
    return 1;
}

/* session:unexpose(id): new users of that service are refused (live ones keep going). */
static int l_session_unexpose(lua_State *L)
{
    wr_lsession *ls = check_lsession(L);
    const exposure *e = find_exposure(ls, (uint32_t)luaL_checkinteger(L, 2));
    if (e) ls->exposed[e - ls->exposed] = ls->exposed[--ls->nexposed];
    lua_pushboolean(L, e != NULL);
    return 1;
}

/* session:service_users(id): connections to that service's inner address still running. */
static int l_session_service_users(lua_State *L)
{
    wr_lsession *ls = check_lsession(L);
    uint32_t id = (uint32_t)luaL_checkinteger(L, 2);
    lua_Integer n = 0;
    for (const reverse_conn *rc = ls->conns; rc; rc = rc->next)
        n += rc->service == id && !rc->cut;
    lua_pushinteger(L, n);
    return 1;
}

/* session:cut_service(id): ends that service's connections now (their users see the outer
 * connection close); returns how many. */
static int l_session_cut_service(lua_State *L)
{
    wr_lsession *ls = check_lsession(L);
    uint32_t id = (uint32_t)luaL_checkinteger(L, 2);
    lua_Integer n = 0;
    reverse_conn *rc = ls->conns, *next;
    for (; rc; rc = next) {
        next = rc->next; /* a cancelled dial frees rc before wr_stream_dial_cut returns */
        if (rc->service != id || rc->cut) continue;
        rc->cut = 1;
        n++;
        wr_stream_dial_cut(rc->dial);
    }
    lua_pushinteger(L, n);
    return 1;
}

static void channel_opened(wr_stream_t *st, int status, const char *reason)
{
    wr_await *aw = wr_stream_data(st);
    lua_State *co = wr_await_settle(aw);
    if (co && status == 0 && wr_channel_push(co, wr_stream_endpoint(st)) == 0) {
        wr_await_resume(aw, 1);
    } else {
        wr_endpoint_close(wr_stream_endpoint(st), WR_CLOSE_RESET);
        if (co) {
            lua_pushnil(co);
            lua_pushstring(co, status == 0 ? "out of memory" : reason ? reason : "refused");
            wr_await_resume(aw, 2);
        }
    }
    wr_await_release(aw);
}

/* session:open_channel([timeout_ms]) -> channel | nil, err: the control channel to the relay. */
static int l_session_open_channel(lua_State *L)
{
    wr_lsession *ls = check_lsession(L);
    lua_Integer timeout = luaL_optinteger(L, 2, 10000);
    wr_session_t *s = wr_lsession_get(ls);
    wr_stream_t *st;
    wr_await *aw;
    if (!s) return wr_push_closed(L);
    aw = wr_await_begin(L, "session:open_channel");
    st = wr_session_open_stream(s, (const uint8_t *)WR_CONTROL_TARGET, sizeof WR_CONTROL_TARGET - 1,
                                channel_opened, aw);
    if (!st) {
        wr_await_abandon(aw);
        return luaL_error(L, "session:open_channel: out of memory");
    }
    aw->refs++;
    if (timeout > 0) wr_await_timeout(aw, (uint64_t)timeout);
    return wr_await_yield(L, aw);
}

/* session:peer() -> "address:port" of the far end (relay side), or nil for a client's session. */
static int l_session_peer(lua_State *L)
{
    wr_lsession *ls = check_lsession(L);
    if (!ls->peer[0]) return 0;
    lua_pushstring(L, ls->peer);
    return 1;
}

/* session:user(): on a relay, the name of the user whose key the client holds; nil on a client. */
static int l_session_user(lua_State *L)
{
    wr_lsession *ls = check_lsession(L);
    if (!ls->user[0]) return 0;
    lua_pushstring(L, ls->user);
    return 1;
}

void wr_lsession_wrap(lua_State *L, wr_lsession **slot, wr_session_t *s, const char *peer)
{
    wr_lsession *ls = *slot;
    if (!ls) {
        ls = calloc(1, sizeof *ls);
        if (!ls) luaL_error(L, "out of memory");
        ls->L = wr_host_get(L)->L;
        ls->wrapped = 1;
        ls->tls_ref = LUA_NOREF;
        ls->session = s;
        ls->on_closed_ref = LUA_NOREF;
        snprintf(ls->peer, sizeof ls->peer, "%s", peer);
        if (s) snprintf(ls->user, sizeof ls->user, "%s", wr_session_user(s));
        wr_box_new(L, ls, SESSION_MT);
        ls->box_alive = 1;
        lua_pushvalue(L, -1);
        ls->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        *slot = ls;
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->anchor_ref);
}

void wr_lsession_ended(wr_lsession *ls, const char *reason)
{
    if (ls) lsession_end(ls, reason, NULL);
}

static int l_session_gc(lua_State *L)
{
    wr_lsession *ls = check_lsession(L);
    ls->box_alive = 0;
    lsession_maybe_free(ls); /* an open session is anchored, so this only runs once it ended */
    return 0;
}

static const luaL_Reg session_methods[] = {
    {"on_closed", l_session_on_closed},
    {"is_open", l_session_is_open},
    {"close", l_session_close},
    {"stats", l_session_stats},
    {"expose", l_session_expose},
    {"unexpose", l_session_unexpose},
    {"service_users", l_session_service_users},
    {"cut_service", l_session_cut_service},
    {"open_channel", l_session_open_channel},
    {"peer", l_session_peer},
    {"user", l_session_user},
    {NULL, NULL},
};

void wr_bind_session(lua_State *L)
{
    wr_bind_class(L, SESSION_MT, session_methods, l_session_gc, "session_connect",
                  l_session_connect);
}
