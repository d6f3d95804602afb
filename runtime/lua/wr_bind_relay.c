/* core.relay_server{...}: accepts sessions on a listener and serves their streams: each OPEN
 * names a target, C resolves it, the on_open hook (if any) decides on the resolved addresses, C
 * dials and relays stream <-> socket. An OPEN of the control target instead becomes a channel
 * handed to on_channel, with the session's handle, for the reverse-tunnel registry in Lua. */
#include "wr_addr.h"
#include "wr_addr_limit.h"
#include "wr_admit.h"
#include "wr_bind.h"
#include "wr_bind_tunnel.h"
#include "wr_host.h"
#include "wr_io.h"
#include "wr_log.h"
#include "wr_stream_dial.h"
#include "wr_tcp_endpoint.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define RELAY_MT        "warren.relay"
#define DIAL_TIMEOUT_MS 10000
/* Connections that have not proved the key yet (the probe sink holds failed ones for 60-180 s,
 * so without a cap a prober could use up the descriptors). At a cap the oldest go (wr_admit). */
#define MAX_UNAUTHENTICATED_DEFAULT     1024
#define MAX_UNAUTHENTICATED_PER_ADDRESS 64
/* Failed handshakes one address may cause per window before its unauthenticated connections are
 * the first to go at the caps (never refused: a real client may share the address). */
#define MAX_FAILED_HANDSHAKES_DEFAULT 32
#define FAILED_HANDSHAKE_WINDOW_MS    60000
#define FAILED_HANDSHAKE_SLOTS        4096
/* Dropped connections are logged at most this often, as one summary line. */
#define DROP_LOG_INTERVAL_MS 10000

typedef struct relay_session relay_session;

typedef struct wr_lrelay {
    wr_closable link;
    lua_State *L;
    uv_loop_t *loop;
    wr_listener_t *listener; /* NULL once closed */
    wr_session_server_t *server;
    wr_addr_limit_t *failures; /* NULL = no per-address failure tally */
    wr_admit_t *admit;
    wr_session_config cfg;
    wr_relay_opts_t ropts;
    int anchor_ref;
    int on_open_ref, on_close_ref, on_channel_ref;
    relay_session *sessions; /* live ones */
    uint64_t sessions_total, streams_total, streams_denied, dials_failed, bytes_up, bytes_down;
    uint64_t drops_logged, drop_log_ms; /* drops covered by the last summary line, and when */
    uint32_t sessions_active, streams_active;
    int refs; /* listener, handle, each live session, each open stream */
} wr_lrelay;

struct relay_session {
    wr_admit_entry admit; /* first: wr_admit hands it back for eviction */
    wr_lrelay *relay;
    wr_session_t *session;
    wr_lsession *handle; /* made the first time Lua needs it */
    char peer[64];
    struct sockaddr_storage addr;
    relay_session *next, **prev;
};

/* Lives as long as the stream's relay: kept small (the target is sized to fit). */
typedef struct relay_stream {
    wr_lrelay *relay;
    int session_ref; /* the session's handle, for the on_open hook */
    char peer[64];
    char target[]; /* "host:port" as the client sent it */
} relay_stream;

/* Parses an OPEN target; an empty host means the relay's own localhost. */
static int parse_target(const char *text, wr_hostport_t *hp, const char **err)
{
    if (wr_parse_hostport(text, 0, hp, err) != 0) return -1;
    if (hp->host[0] == '\0') snprintf(hp->host, sizeof hp->host, "127.0.0.1");
    return 0;
}

static void relay_unref(wr_lrelay *r)
{
    if (--r->refs > 0) return;
    luaL_unref(r->L, LUA_REGISTRYINDEX, r->on_open_ref);
    luaL_unref(r->L, LUA_REGISTRYINDEX, r->on_close_ref);
    luaL_unref(r->L, LUA_REGISTRYINDEX, r->on_channel_ref);
    wr_session_server_free(r->server);
    wr_addr_limit_free(r->failures);
    wr_admit_free(r->admit);
    free(r);
}

static void stream_done(void *data, int dial_status, const wr_relay_result_t *res)
{
    relay_stream *rs = data;
    wr_lrelay *r = rs->relay;
    r->streams_active--;
    luaL_unref(r->L, LUA_REGISTRYINDEX, rs->session_ref);
    if (dial_status != 0) {
        r->dials_failed++;
        wr_info("relay: %s from %s failed: %s", rs->target, rs->peer, uv_strerror(dial_status));
    } else {
        r->bytes_up += res->bytes_ab; /* a = the stream: bytes from the client to the target */
        r->bytes_down += res->bytes_ba;
        wr_call_close_hook(r->L, r->on_close_ref, rs->target, rs->peer, res->bytes_ab,
                           res->bytes_ba, res);
    }
    free(rs);
    relay_unref(r);
}

static void push_address(lua_State *L, const struct sockaddr_storage *ss)
{
    char ip[64];
    wr_addr_format((const struct sockaddr *)ss, 0, ip, sizeof ip);
    lua_pushstring(L, ip);
}

/* The destination policy: on_open(host, port, info) with info = {addresses = {...}, peer =
 * "client address", session = handle}; true, or false/nil plus a reason. Errors deny. */
static int policy_check(void *data, const struct sockaddr_storage *addrs, int naddrs, char *reason,
                        size_t size)
{
    relay_stream *rs = data;
    wr_lrelay *r = rs->relay;
    lua_State *L = r->L;
    wr_hostport_t hp;
    const char *perr;
    int allowed;
    if (!r->listener) {
        snprintf(reason, size, "relay closing");
        return -1;
    }
    parse_target(rs->target, &hp, &perr); /* parsed once already: cannot fail */
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->on_open_ref);
    lua_pushstring(L, hp.host);
    lua_pushinteger(L, hp.port);
    lua_createtable(L, 0, 3);
    lua_createtable(L, naddrs, 0);
    for (int i = 0; i < naddrs; i++) {
        push_address(L, &addrs[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "addresses");
    lua_pushstring(L, rs->peer);
    lua_setfield(L, -2, "peer");
    lua_rawgeti(L, LUA_REGISTRYINDEX, rs->session_ref);
    lua_setfield(L, -2, "session");
    if (wr_lua_pcall(L, 3, 2) != 0) {
        wr_lua_report(L, "relay on_open hook (denied)");
        return -1;
    }
    allowed = lua_toboolean(L, -2);
    if (!allowed && lua_isstring(L, -1)) snprintf(reason, size, "%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    if (!allowed) {
        r->streams_denied++;
        wr_debug("relay: open %s denied: %s", rs->target, reason[0] ? reason : "by policy");
    }
    return !allowed;
}

/* Pushes the handle of a relay session (made on first use). */
static void push_session(lua_State *L, relay_session *rsess)
{
    wr_lsession_wrap(L, &rsess->handle, rsess->session, rsess->peer);
}

static void open_channel(relay_session *rsess, wr_stream_t *st)
{
    wr_lrelay *r = rsess->relay;
    lua_State *L = r->L;
    if (r->on_channel_ref == LUA_NOREF) {
        wr_stream_reject(st, "denied: this relay takes no registrations");
        return;
    }
    if (wr_stream_accept(st) != 0 || wr_channel_push(L, wr_stream_endpoint(st)) != 0) {
        wr_endpoint_close(wr_stream_endpoint(st), WR_CLOSE_RESET);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->on_channel_ref);
    lua_insert(L, -2);
    push_session(L, rsess);
    if (wr_lua_pcall(L, 2, 0) != 0) wr_lua_report(L, "relay on_channel hook");
}

static void on_stream_open(wr_session_t *s, wr_stream_t *st, const uint8_t *target, size_t len)
{
    relay_session *rsess = wr_session_data(s);
    wr_lrelay *r = rsess->relay;
    relay_stream *rs;
    wr_hostport_t hp;
    const char *perr;
    char text[WR_HOST_MAX + 16], reason[WR_SESSION_REASON_MAX];

    r->streams_total++;
    if (len >= sizeof text) {
        wr_stream_reject(st, "bad target: too long");
        return;
    }
    memcpy(text, target, len);
    text[len] = '\0';
    if (strcmp(text, WR_CONTROL_TARGET) == 0) {
        open_channel(rsess, st);
        return;
    }
    if (parse_target(text, &hp, &perr) != 0) {
        snprintf(reason, sizeof reason, "bad target: %s", perr);
        wr_stream_reject(st, reason);
        return;
    }
    rs = calloc(1, sizeof *rs + len + 1);
    if (!rs) {
        wr_stream_reject(st, "failed: out of memory");
        return;
    }
    rs->relay = r;
    rs->session_ref = LUA_NOREF;
    memcpy(rs->peer, rsess->peer, sizeof rs->peer);
    memcpy(rs->target, text, len + 1);
    if (r->on_open_ref != LUA_NOREF) {
        push_session(r->L, rsess);
        rs->session_ref = luaL_ref(r->L, LUA_REGISTRYINDEX);
    }
    if (wr_stream_dial(r->loop, st, hp.host, hp.port, DIAL_TIMEOUT_MS, &r->ropts,
                       r->on_open_ref != LUA_NOREF ? policy_check : NULL, stream_done, rs) != 0) {
        r->dials_failed++;
        luaL_unref(r->L, LUA_REGISTRYINDEX, rs->session_ref);
        free(rs);
        return;
    }
    r->streams_active++;
    r->refs++;
}

static void on_ready(wr_session_t *s)
{
    relay_session *rsess = wr_session_data(s);
    wr_admit_remove(rsess->relay->admit, &rsess->admit);
    wr_debug("relay: session from %s authenticated", rsess->peer);
}

static void on_closed(wr_session_t *s, int reason, const char *detail)
{
    relay_session *rsess = wr_session_data(s);
    wr_lrelay *r = rsess->relay;
    const char *why = detail && *detail ? detail : wr_session_reason_name(reason);
    wr_debug("relay: session from %s closed: %s", rsess->peer, why);
    wr_lsession_ended(rsess->handle, why);
    *rsess->prev = rsess->next;
    if (rsess->next) rsess->next->prev = rsess->prev;
    r->sessions_active--;
    wr_admit_remove(r->admit, &rsess->admit);
    free(rsess);
    relay_unref(r);
}

static void on_rejected(wr_session_t *s)
{
    relay_session *rsess = wr_session_data(s);
    wr_lrelay *r = rsess->relay;
    wr_admit_doom(r->admit, &rsess->admit);
    if (wr_addr_limit_fail(r->failures, (struct sockaddr *)&rsess->addr, uv_now(r->loop))) {
        char ip[64];
        wr_addr_format((struct sockaddr *)&rsess->addr, 0, ip, sizeof ip);
        wr_warn(
            "relay: failed handshakes from %s reached the limit within %d s: its unauthenticated "
            "connections go first when the relay must drop some",
            ip, FAILED_HANDSHAKE_WINDOW_MS / 1000);
    }
}

/* Closes a connection wr_admit dropped to make room, and says so now and then. */
static void evicted(wr_admit_entry *e, void *data)
{
    wr_lrelay *r = data;
    relay_session *victim = (relay_session *)e;
    uint64_t now = uv_now(r->loop);
    wr_admit_stats st;
    wr_session_drop(victim->session);
    wr_admit_get_stats(r->admit, &st);
    if (r->drop_log_ms == 0 || now - r->drop_log_ms >= DROP_LOG_INTERVAL_MS) {
        uint64_t dropped = st.evicted_per_addr + st.evicted_total;
        wr_warn("relay: too many connections without the key: dropped %llu of the oldest since the "
                "last report (%llu for one address's budget; latest from %s)",
                (unsigned long long)(dropped - r->drops_logged),
                (unsigned long long)st.evicted_per_addr, victim->peer);
        r->drops_logged = dropped;
        r->drop_log_ms = now;
    }
}

static const wr_session_cbs relay_session_cbs = {.on_ready = on_ready,
                                                 .on_stream_open = on_stream_open,
                                                 .on_closed = on_closed,
                                                 .on_rejected = on_rejected};

static void accepted(wr_listener_t *l, int status)
{
    wr_lrelay *r = wr_listener_data(l);
    relay_session *rsess;
    wr_endpoint_t *carrier;
    uv_tcp_t *tcp;

    if (status < 0) {
        wr_warn("relay accept failed: %s", uv_strerror(status));
        return;
    }
    if (wr_listener_accept(l, &tcp) != 0) return;
    rsess = calloc(1, sizeof *rsess);
    if (rsess) {
        int len = sizeof rsess->addr;
        uv_tcp_getpeername(tcp, (struct sockaddr *)&rsess->addr, &len);
        wr_addr_normalize(&rsess->addr);
    }
    carrier = rsess ? wr_tcp_endpoint_new(tcp) : NULL;
    if (!carrier) {
        free(rsess);
        wr_tcp_close_free(tcp);
        return;
    }
    rsess->relay = r;
    wr_addr_format((struct sockaddr *)&rsess->addr, 1, rsess->peer, sizeof rsess->peer);
    rsess->session = wr_session_new(tcp->loop, carrier, &r->cfg, &relay_session_cbs, rsess);
    if (!rsess->session) {
        wr_endpoint_close(carrier, WR_CLOSE_RESET);
        free(rsess);
        return;
    }
    rsess->next = r->sessions;
    rsess->prev = &r->sessions;
    if (r->sessions) r->sessions->prev = &rsess->next;
    r->sessions = rsess;
    r->sessions_total++;
    r->sessions_active++;
    r->refs++;
    /* Last: making room may drop other sessions (never this one). */
    wr_admit_add(r->admit, &rsess->admit, (struct sockaddr *)&rsess->addr,
                 wr_addr_limit_over(r->failures, (struct sockaddr *)&rsess->addr, uv_now(r->loop)));
}

/* Stops listening and ends every session (their streams end with them). */
static void relay_close(wr_lrelay *r)
{
    relay_session *rsess;
    if (!r->listener) return;
    wr_host_untrack(&r->link);
    wr_listener_close(r->listener);
    r->listener = NULL;
    for (rsess = r->sessions; rsess; rsess = rsess->next)
        wr_session_close(rsess->session);
    luaL_unref(r->L, LUA_REGISTRYINDEX, r->anchor_ref);
    r->anchor_ref = LUA_NOREF;
    relay_unref(r);
}

static void relay_close_tracked(wr_closable *c)
{
    relay_close((wr_lrelay *)((char *)c - offsetof(wr_lrelay, link)));
}

/* core.relay_server{host=, port=, key=, on_open=fn(host, port, info), on_close=fn(info),
 * on_channel=fn(channel, session), window=, session_buffer=, keepalive_ms=, write_cap=,
 * idle_timeout_ms=, probe_close_ms=, max_unauthenticated=, max_unauthenticated_per_address= (0 =
 * only the total),
 * max_failed_handshakes= (per address per minute before its connections go first; 0 = no tally)}
 * -> relay | nil, err */
static int l_relay_server(lua_State *L)
{
    const char *host, *key;
    size_t keylen;
    lua_Integer port, probe_ms, max_unauth, max_unauth_addr;
    wr_lrelay *r;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    host = wr_opt_string(L, 1, "host", "");
    port = wr_opt_integer(L, 1, "port", 0);
    lua_getfield(L, 1, "key");
    key = lua_tolstring(L, -1, &keylen);
    lua_pop(L, 1);
    if (port > 65535) return luaL_error(L, "relay_server: bad port");
    if (!key || keylen != 32) return luaL_error(L, "relay_server: key must be 32 bytes");
    max_unauth = wr_opt_integer(L, 1, "max_unauthenticated", MAX_UNAUTHENTICATED_DEFAULT);
    max_unauth_addr =
        wr_opt_integer(L, 1, "max_unauthenticated_per_address", MAX_UNAUTHENTICATED_PER_ADDRESS);
    if (max_unauth < 1 || max_unauth > 1000000 || max_unauth_addr < 0)
        return luaL_error(L, "relay_server: bad unauthenticated-connection limits");
    r = calloc(1, sizeof *r);
    if (!r) return luaL_error(L, "relay_server: out of memory");
    r->L = wr_host_get(L)->L;
    r->loop = wr_host_loop(L);
    r->anchor_ref = r->on_open_ref = r->on_close_ref = r->on_channel_ref = LUA_NOREF;
    if (wr_session_server_new((const uint8_t *)key, 0, &r->server) != 0) {
        free(r);
        return luaL_error(L, "relay_server: cannot set up the handshake state");
    }
    r->cfg.is_server = 1;
    r->cfg.hs_server = r->server;
    r->cfg.window = (uint32_t)wr_opt_integer(L, 1, "window", 0);
    r->cfg.rx_limit = (size_t)wr_opt_integer(L, 1, "session_buffer", 0);
    r->cfg.keepalive_ms = (uint32_t)wr_opt_integer(L, 1, "keepalive_ms", 0);
    r->cfg.max_streams = (uint32_t)wr_opt_integer(L, 1, "max_streams", WR_TUNNEL_MAX_STREAMS);
    r->cfg.stream_high_water = (size_t)wr_opt_integer(L, 1, "write_cap", 0);
    probe_ms = wr_opt_integer(L, 1, "probe_close_ms", 0);
    r->admit = wr_admit_new((uint32_t)max_unauth, (uint32_t)max_unauth_addr, evicted, r);
    r->failures = wr_addr_limit_new(
        (uint32_t)wr_opt_integer(L, 1, "max_failed_handshakes", MAX_FAILED_HANDSHAKES_DEFAULT),
        FAILED_HANDSHAKE_WINDOW_MS, FAILED_HANDSHAKE_SLOTS);
    r->cfg.probe_close_min_ms = r->cfg.probe_close_max_ms = (uint32_t)probe_ms;
    wr_relay_opts_from(L, 1, &r->ropts);
    rc = r->admit ? wr_listen(wr_host_loop(L), host, (uint16_t)port, 0, accepted, r, &r->listener)
                  : UV_ENOMEM;
    if (rc != 0) {
        wr_session_server_free(r->server);
        wr_addr_limit_free(r->failures);
        wr_admit_free(r->admit);
        free(r);
        return wr_push_uv_error(L, rc);
    }
    r->on_open_ref = wr_opt_function_ref(L, 1, "on_open");
    r->on_close_ref = wr_opt_function_ref(L, 1, "on_close");
    r->on_channel_ref = wr_opt_function_ref(L, 1, "on_channel");
    r->refs = 2; /* listener + handle */
    r->link.close = relay_close_tracked;
    wr_host_track(wr_host_get(L), &r->link);
    wr_box_new(L, r, RELAY_MT);
    lua_pushvalue(L, -1);
    r->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static wr_lrelay *check_relay(lua_State *L)
{
    return *(wr_lrelay **)luaL_checkudata(L, 1, RELAY_MT);
}

static int l_relay_port(lua_State *L)
{
    wr_lrelay *r = check_relay(L);
    if (!r->listener) return wr_push_closed(L);
    lua_pushinteger(L, wr_listener_port(r->listener));
    return 1;
}

static int l_relay_stats(lua_State *L)
{
    wr_lrelay *r = check_relay(L);
    wr_admit_stats adm;
    wr_admit_get_stats(r->admit, &adm);
    lua_createtable(L, 0, 14);
    wr_set_number(L, "sessions_active", r->sessions_active);
    wr_set_number(L, "sessions_total", (double)r->sessions_total);
    wr_set_number(L, "streams_active", r->streams_active);
    wr_set_number(L, "streams_total", (double)r->streams_total);
    wr_set_number(L, "streams_denied", (double)r->streams_denied);
    wr_set_number(L, "dials_failed", (double)r->dials_failed);
    wr_set_number(L, "bytes_up", (double)r->bytes_up);
    wr_set_number(L, "bytes_down", (double)r->bytes_down);
    wr_set_number(L, "unauthenticated", adm.pending + adm.doomed);
    wr_set_number(L, "unauthenticated_failed", adm.doomed);
    wr_set_number(L, "dropped_unauthenticated", (double)adm.evicted_total);
    wr_set_number(L, "dropped_per_address", (double)adm.evicted_per_addr);
    wr_set_number(L, "handshakes_ok", (double)r->server->handshakes_ok);
    wr_set_number(L, "handshakes_failed", (double)r->server->handshakes_failed);
    return 1;
}

static int l_relay_close(lua_State *L)
{
    wr_lrelay *r = check_relay(L);
    if (!r->listener) return wr_push_closed(L);
    relay_close(r);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_relay_gc(lua_State *L)
{
    relay_unref(check_relay(L)); /* an open relay is anchored: this runs once it is closed */
    return 0;
}

static const luaL_Reg relay_methods[] = {
    {"port", l_relay_port},
    {"stats", l_relay_stats},
    {"close", l_relay_close},
    {NULL, NULL},
};

void wr_bind_relay(lua_State *L)
{
    wr_bind_class(L, RELAY_MT, relay_methods, l_relay_gc, "relay_server", l_relay_server);
}
