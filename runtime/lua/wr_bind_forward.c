/* core.forward{...}: a listener whose connections each become a stream, through the current
 * session, to a fixed target on the far side. A client's -L is one (the target is host:port on
 * the relay's side); so is a relay's outer port of a reverse tunnel (the session is the
 * registering client's, the target names its service and carries the user's address). Bytes go
 * socket <-> stream in C (wr_relay); Lua hears about a connection only if it asked (on_connect,
 * on_close). Users over max_users are refused while the port stays bound. */
#include "wr_access_log.h"
#include "wr_addr.h"
#include "wr_addr_count.h"
#include "wr_bind.h"
#include "wr_bind_tunnel.h"
#include "wr_host.h"
#include "wr_io.h"
#include "wr_log.h"
#include "wr_tcp_endpoint.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORWARD_MT "warren.forward"

typedef struct wr_lforward {
    wr_closable link;
    lua_State *L;
    wr_listener_t *listener; /* NULL once closed */
    int anchor_ref;          /* a listening forward runs without a Lua reference */
    wr_session_slot session; /* the session streams go through */
    int on_close_ref;
    int on_connect_ref;
    int tap_ref;   /* opt-in: fn(direction, bytes, peer) sees the first tap_bytes each way */
    int send_peer; /* append " PEER" to the target (reverse tunnels tell the client who came) */
    uint32_t active, max_users, max_per_address;
    wr_addr_count_t *per_address; /* users per address, made when a limit is first set */
    uint64_t max_total;
    wr_relay_opts_t ropts;
    uint64_t accepted, refused, refused_busy, refused_total, refused_address, denied, failed_opens,
        bytes_up, bytes_down;
    uint64_t refused_address_log_ms; /* when the last refusal for an address's share was logged */
    int refs;                        /* the listener, the handle and each live connection */
    struct forward_conn *conns;
    size_t target_len;
    char target[WR_HOST_MAX + 16];
    char name[WR_ACCESS_NAME_MAX]; /* the tunnel's name in access records; "" = the target */
} wr_lforward;

typedef struct forward_conn forward_conn;

struct forward_conn {
    wr_lforward *fwd;
    wr_relay_t *relay;
    forward_conn *prev, *next; /* in fwd->conns while not yet cut */
    int counted;               /* in fwd->per_address under addr */
    struct sockaddr_storage addr;
    char peer[64];
    char failed[16]; /* the class of the relay's refusal, for the access log */
};

static void conn_unlink(forward_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (c->fwd->conns == c)
        c->fwd->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Gives back the connection's place in the per-address count (once). */
static void uncount(forward_conn *c)
{
    if (c->counted) wr_addr_count_remove(c->fwd->per_address, (struct sockaddr *)&c->addr);
    c->counted = 0;
}

/* Frees a connection record, giving back its place in the per-address count. */
static void conn_free(forward_conn *c)
{
    conn_unlink(c);
    uncount(c);
    free(c);
}

/* A user who has finished sending is leaving: its address's share is free for the next one at
 * once, not after the target has answered the EOF. A pool that reconnects (redis-benchmark's 50
 * clients between tests) otherwise met the limit while its old connections still closed. */
static void user_eof(wr_relay_t *r, int side, void *data)
{
    (void)r;
    if (side == 0) uncount(data);
}

static void forward_unref(wr_lforward *fwd)
{
    if (--fwd->refs > 0) return;
    luaL_unref(fwd->L, LUA_REGISTRYINDEX, fwd->on_close_ref);
    luaL_unref(fwd->L, LUA_REGISTRYINDEX, fwd->on_connect_ref);
    luaL_unref(fwd->L, LUA_REGISTRYINDEX, fwd->tap_ref);
    luaL_unref(fwd->L, LUA_REGISTRYINDEX, fwd->session.ref);
    wr_addr_count_free(fwd->per_address);
    free(fwd);
}

static void stream_opened(wr_stream_t *st, int status, const char *reason)
{
    forward_conn *c = wr_stream_data(st);
    if (status == 0) return;
    c->fwd->failed_opens++;
    wr_access_open_reason(reason, c->failed, sizeof c->failed);
    wr_debug("forward to %s refused by the relay: %s", c->fwd->target, reason ? reason : "");
    wr_relay_close(c->relay);
}

static void conn_closed(wr_relay_t *r, const wr_relay_result_t *res, void *data)
{
    forward_conn *c = data;
    wr_lforward *fwd = c->fwd;
    fwd->bytes_up += res->bytes_ab;
    fwd->bytes_down += res->bytes_ba;
    fwd->active--;
    wr_call_close_hook(fwd->L, fwd->on_close_ref, fwd->target, c->peer[0] ? c->peer : NULL,
                       res->bytes_ab, res->bytes_ba, res);
    if (wr_access_log_on()) {
        wr_access_record rec = {
            .tunnel = fwd->name[0] ? fwd->name : fwd->target,
            .user = wr_access_user(fwd->send_peer ? wr_lsession_get(fwd->session.session) : NULL),
            .peer = c->peer,
            .target = fwd->target,
            .bytes_up = res->bytes_ab,
            .bytes_down = res->bytes_ba,
            .duration_ms = res->duration_ms,
            .reason = c->failed[0] ? c->failed : wr_access_relay_reason(res, 1),
        };
        wr_access_log_write(&rec);
    }
    conn_free(c);
    forward_unref(fwd);
}

static void tap_data(wr_relay_t *r, int dir, const char *base, size_t len, void *data)
{
    forward_conn *c = data;
    lua_State *L = c->fwd->L;
    (void)r;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->fwd->tap_ref);
    lua_pushstring(L, dir == 0 ? "up" : "down");
    lua_pushlstring(L, base, len);
    lua_pushstring(L, c->peer);
    if (wr_lua_pcall(L, 3, 0) != 0) wr_lua_report(L, "tap hook");
}

/* Asks on_connect(peer): true, or false/nil plus a reason. Errors deny (fail closed). */
static int connect_allowed(wr_lforward *fwd, const char *peer)
{
    lua_State *L = fwd->L;
    int allowed;
    if (fwd->on_connect_ref == LUA_NOREF) return 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, fwd->on_connect_ref);
    lua_pushstring(L, peer);
    if (wr_lua_pcall(L, 1, 2) != 0) {
        wr_lua_report(L, "on_connect hook (denied)");
        return 0;
    }
    allowed = lua_toboolean(L, -2);
    if (!allowed) wr_debug("%s: user %s denied: %s", fwd->target, peer, luaL_optstring(L, -1, ""));
    lua_pop(L, 2);
    return allowed;
}

static void accepted(wr_listener_t *l, int status)
{
    wr_lforward *fwd = wr_listener_data(l);
    wr_session_t *s;
    uv_tcp_t *tcp;
    wr_endpoint_t *ep;
    wr_stream_t *st;
    forward_conn *c;
    char target[sizeof fwd->target + 80];
    size_t target_len = fwd->target_len;

    if (status < 0) {
        wr_warn("forward accept failed: %s", uv_strerror(status));
        return;
    }
    if (wr_listener_accept(l, &tcp) != 0) return;
    s = wr_lsession_get(fwd->session.session);
    if (!s) { /* no session right now (reconnecting): refuse rather than hold the caller */
        fwd->refused++;
        wr_tcp_close_free(tcp);
        return;
    }
    if (fwd->max_users && fwd->active >= fwd->max_users) {
        fwd->refused_busy++;
        wr_tcp_close_free(tcp);
        return;
    }
    if (fwd->max_total && fwd->accepted >= fwd->max_total) {
        fwd->refused_total++;
        wr_tcp_close_free(tcp);
        return;
    }
    c = calloc(1, sizeof *c);
    ep = c ? wr_tcp_endpoint_new(tcp) : NULL;
    if (!ep) {
        free(c);
        wr_tcp_close_free(tcp);
        return;
    }
    c->fwd = fwd;
    if (fwd->max_per_address && fwd->per_address) {
        int len = sizeof c->addr;
        uv_tcp_getpeername(tcp, (struct sockaddr *)&c->addr, &len);
        wr_addr_normalize(&c->addr);
        if (wr_addr_count_add(fwd->per_address, (struct sockaddr *)&c->addr,
                              fwd->max_per_address) != 0) {
            /* One address holds its share: its newcomers wait, others still get in. Said once
             * per interval: a pool of connections that reconnects meets this, and should know. */
            uint64_t now = uv_now(tcp->loop);
            fwd->refused_address++;
            if (fwd->refused_address_log_ms == 0 || now - fwd->refused_address_log_ms >= 10000) {
                char who[64], *port;
                wr_format_peer(ep, who, sizeof who);
                if ((port = strrchr(who, ':')) != NULL && port > who && port[-1] != ':') *port = 0;
                wr_warn("port %d: %s holds its %u users already (max_users_per_address): a new "
                        "one is refused (%llu refused in all)",
                        wr_listener_port(l), who, (unsigned)fwd->max_per_address,
                        (unsigned long long)fwd->refused_address);
                fwd->refused_address_log_ms = now;
            }
            wr_endpoint_close(ep, WR_CLOSE_GRACEFUL);
            free(c);
            return;
        }
        c->counted = 1;
    }
    memcpy(target, fwd->target, target_len);
    if (fwd->send_peer || fwd->on_connect_ref != LUA_NOREF || fwd->on_close_ref != LUA_NOREF ||
        fwd->tap_ref != LUA_NOREF || wr_access_log_on()) {
        wr_format_peer(ep, c->peer, sizeof c->peer);
        if (!connect_allowed(fwd, c->peer)) {
            fwd->denied++;
            wr_endpoint_close(ep, WR_CLOSE_GRACEFUL);
            conn_free(c);
            return;
        }
        if (fwd->send_peer)
            target_len +=
                (size_t)snprintf(target + target_len, sizeof target - target_len, " %s", c->peer);
    }
    st = wr_session_open_stream(s, (const uint8_t *)target, target_len, stream_opened, c);
    if (!st) {
        wr_endpoint_close(ep, WR_CLOSE_RESET);
        conn_free(c);
        return;
    }
    c->relay = wr_relay_start(tcp->loop, ep, wr_stream_endpoint(st), &fwd->ropts, conn_closed, c);
    if (!c->relay) {
        wr_endpoint_close(ep, WR_CLOSE_RESET);
        wr_endpoint_close(wr_stream_endpoint(st), WR_CLOSE_RESET);
        conn_free(c);
        return;
    }
    c->next = fwd->conns;
    if (fwd->conns) fwd->conns->prev = c;
    fwd->conns = c;
    fwd->accepted++;
    fwd->active++;
    fwd->refs++;
    /* A client that speaks first has often sent already: its bytes join the OPEN. */
    wr_tcp_endpoint_read_now(ep);
}

static void forward_close(wr_lforward *fwd)
{
    if (!fwd->listener) return;
    wr_host_untrack(&fwd->link);
    wr_listener_close(fwd->listener);
    fwd->listener = NULL;
    luaL_unref(fwd->L, LUA_REGISTRYINDEX, fwd->anchor_ref);
    fwd->anchor_ref = LUA_NOREF;
    forward_unref(fwd);
}

static void forward_close_tracked(wr_closable *c)
{
    forward_close((wr_lforward *)((char *)c - offsetof(wr_lforward, link)));
}

static void read_limits(lua_State *L, int idx, wr_lforward *fwd)
{
    fwd->max_users = (uint32_t)wr_opt_integer(L, idx, "max_users", fwd->max_users);
    fwd->max_total = (uint64_t)wr_opt_integer(L, idx, "max_total", (lua_Integer)fwd->max_total);
    fwd->max_per_address =
        (uint32_t)wr_opt_integer(L, idx, "max_users_per_address", fwd->max_per_address);
    if (fwd->max_per_address && !fwd->per_address) fwd->per_address = wr_addr_count_new();
}

/* core.forward{host=, port=, target="host:port", session=, write_cap=, idle_timeout_ms=,
 * name= (the tunnel's, in access records), max_users=, max_users_per_address=,
 * max_total= (0 = no limit), send_peer=bool,
 * on_connect=fn(peer) -> ok, reason, on_close=fn(info), tap=fn(direction, bytes, peer), tap_bytes=
 * (default 4096)}
 * -> forward | nil, err. The tap sees the first tap_bytes of each direction of each connection:
 * a bounded look at payload for hooks that need it, at the price of a Lua call per chunk. */
static int l_forward(lua_State *L)
{
    const char *host, *target;
    lua_Integer port;
    wr_lforward *fwd;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    host = wr_opt_string(L, 1, "host", "127.0.0.1");
    port = wr_opt_integer(L, 1, "port", 0);
    target = wr_opt_string(L, 1, "target", NULL);
    if (port > 65535) return luaL_error(L, "forward: bad port");
    if (!target || strlen(target) >= sizeof fwd->target)
        return luaL_error(L, "forward: bad target");
    fwd = calloc(1, sizeof *fwd);
    if (!fwd) return luaL_error(L, "forward: out of memory");
    fwd->L = wr_host_get(L)->L;
    fwd->session.ref = LUA_NOREF;
    fwd->anchor_ref = LUA_NOREF;
    fwd->on_close_ref = fwd->on_connect_ref = fwd->tap_ref = LUA_NOREF;
    fwd->target_len = strlen(target);
    memcpy(fwd->target, target, fwd->target_len + 1);
    snprintf(fwd->name, sizeof fwd->name, "%s", wr_opt_string(L, 1, "name", ""));
    wr_relay_opts_from(L, 1, &fwd->ropts);
    fwd->ropts.on_eof = user_eof;
    lua_getfield(L, 1, "session");
    wr_session_slot_set(L, &fwd->session, lua_gettop(L));
    lua_pop(L, 1);
    rc = wr_listen(wr_host_loop(L), host, (uint16_t)port, 0, accepted, fwd, &fwd->listener);
    if (rc != 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, fwd->session.ref);
        free(fwd);
        return wr_push_uv_error(L, rc);
    }
    fwd->on_close_ref = wr_opt_function_ref(L, 1, "on_close");
    fwd->on_connect_ref = wr_opt_function_ref(L, 1, "on_connect");
    fwd->tap_ref = wr_opt_function_ref(L, 1, "tap");
    if (fwd->tap_ref != LUA_NOREF) {
        fwd->ropts.tap = tap_data;
        fwd->ropts.tap_limit = (size_t)wr_opt_integer(L, 1, "tap_bytes", 4096);
    }
    fwd->send_peer = wr_opt_boolean(L, 1, "send_peer");
    read_limits(L, 1, fwd);
    fwd->refs = 2; /* listener + handle */
    fwd->link.close = forward_close_tracked;
    wr_host_track(wr_host_get(L), &fwd->link);
    wr_box_new(L, fwd, FORWARD_MT);
    lua_pushvalue(L, -1);
    fwd->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static wr_lforward *check_forward(lua_State *L)
{
    return *(wr_lforward **)luaL_checkudata(L, 1, FORWARD_MT);
}

static int l_forward_set_session(lua_State *L)
{
    wr_lforward *fwd = check_forward(L);
    if (!fwd->listener) return wr_push_closed(L);
    wr_session_slot_set(L, &fwd->session, 2);
    lua_pushboolean(L, 1);
    return 1;
}

/* forward:update{target=, max_users=, max_total=}: for new connections; live ones go on. */
static int l_forward_update(lua_State *L)
{
    wr_lforward *fwd = check_forward(L);
    const char *target;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!fwd->listener) return wr_push_closed(L);
    target = wr_opt_string(L, 2, "target", NULL);
    if (target) {
        size_t len = strlen(target);
        if (len >= sizeof fwd->target) return luaL_error(L, "forward:update: bad target");
        memcpy(fwd->target, target, len + 1);
        fwd->target_len = len;
    }
    read_limits(L, 2, fwd);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_forward_port(lua_State *L)
{
    wr_lforward *fwd = check_forward(L);
    if (!fwd->listener) return wr_push_closed(L);
    lua_pushinteger(L, wr_listener_port(fwd->listener));
    return 1;
}

static int l_forward_stats(lua_State *L)
{
    wr_lforward *fwd = check_forward(L);
    lua_createtable(L, 0, 10);
    wr_set_number(L, "accepted", (double)fwd->accepted);
    wr_set_number(L, "refused", (double)fwd->refused);
    wr_set_number(L, "refused_busy", (double)fwd->refused_busy);
    wr_set_number(L, "refused_address", (double)fwd->refused_address);
    wr_set_number(L, "refused_total", (double)fwd->refused_total);
    wr_set_number(L, "denied", (double)fwd->denied);
    wr_set_number(L, "failed_opens", (double)fwd->failed_opens);
    wr_set_number(L, "active", fwd->active);
    wr_set_number(L, "bytes_up", (double)fwd->bytes_up);
    wr_set_number(L, "bytes_down", (double)fwd->bytes_down);
    return 1;
}

static int l_forward_close(lua_State *L)
{
    wr_lforward *fwd = check_forward(L);
    if (!fwd->listener) return wr_push_closed(L);
    forward_close(fwd); /* live connections finish on their own */
    lua_pushboolean(L, 1);
    return 1;
}

/* forward:cut() -> n: closes every live connection (a reload's grace is over); returns how many.
 * Their on_close hooks follow from the loop. */
static int l_forward_cut(lua_State *L)
{
    wr_lforward *fwd = check_forward(L);
    lua_Integer n = 0;
    while (fwd->conns) {
        forward_conn *c = fwd->conns;
        conn_unlink(c);
        wr_relay_close(c->relay);
        n++;
    }
    lua_pushinteger(L, n);
    return 1;
}

static int l_forward_gc(lua_State *L)
{
    wr_lforward *fwd = check_forward(L);
    forward_unref(fwd); /* only collected once closed: an open forward is anchored */
    return 0;
}

static const luaL_Reg forward_methods[] = {
    {"set_session", l_forward_set_session},
    {"update", l_forward_update},
    {"port", l_forward_port},
    {"stats", l_forward_stats},
    {"close", l_forward_close},
    {"cut", l_forward_cut},
    {NULL, NULL},
};

void wr_bind_forward(lua_State *L)
{
    wr_bind_class(L, FORWARD_MT, forward_methods, l_forward_gc, "forward", l_forward);
}
