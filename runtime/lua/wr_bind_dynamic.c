/* core.dynamic{...}: the Lua face of wr_dynamic, a local SOCKS5 / SOCKS4(a) / HTTP proxy
 * listener (ssh -D). The binding converts options, keeps the session handle the proxy's streams go
 * through, and calls the on_close hook; Lua only hears about a connection's end, and only if it
 * asked. */
#include "wr_bind.h"
#include "wr_bind_tunnel.h"
#include "wr_dynamic.h"
#include "wr_host.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define DYNAMIC_MT "warren.dynamic"

typedef struct wr_ldynamic {
    wr_closable link;
    lua_State *L;
    wr_dynamic_t *dyn;
    int anchor_ref; /* a listening proxy runs without a Lua reference */
    wr_session_slot session;
    int on_close_ref;
} wr_ldynamic;

static wr_session_t *current_session(wr_dynamic_t *dyn)
{
    wr_ldynamic *ld = wr_dynamic_data(dyn);
    return wr_lsession_get(ld->session.session);
}

static void call_on_close(wr_dynamic_t *dyn, const wr_dynamic_close_info *info)
{
    wr_ldynamic *ld = wr_dynamic_data(dyn);
    wr_call_close_hook(ld->L, ld->on_close_ref, info->target, info->peer, info->bytes_up,
                       info->bytes_down, info->res);
}

/* The proxy outlives its handle while relayed connections finish: their hooks need the refs. */
static void dynamic_freed(wr_dynamic_t *dyn)
{
    wr_ldynamic *ld = wr_dynamic_data(dyn);
    luaL_unref(ld->L, LUA_REGISTRYINDEX, ld->on_close_ref);
    luaL_unref(ld->L, LUA_REGISTRYINDEX, ld->session.ref);
    free(ld);
}

static const wr_dynamic_cbs dynamic_cbs = {
    .session = current_session,
    .on_close = call_on_close,
    .on_freed = dynamic_freed,
};

/* Hooks are optional: without one the proxy need not look up peers. */
static const wr_dynamic_cbs dynamic_cbs_quiet = {
    .session = current_session,
    .on_freed = dynamic_freed,
};

/* Stops listening and drops the connections still negotiating; relayed ones finish on their
 * own, as a forward's do. */
static void dynamic_close(wr_ldynamic *ld)
{
    if (wr_dynamic_is_closed(ld->dyn)) return;
    wr_host_untrack(&ld->link);
    wr_dynamic_close(ld->dyn);
    luaL_unref(ld->L, LUA_REGISTRYINDEX, ld->anchor_ref);
    ld->anchor_ref = LUA_NOREF;
}

static void dynamic_close_tracked(wr_closable *c)
{
    dynamic_close((wr_ldynamic *)((char *)c - offsetof(wr_ldynamic, link)));
}

/* core.dynamic{host=, port=, session=, user=, password=, write_cap=, idle_timeout_ms=,
 * request_timeout_ms=, on_close=fn, name= (the tunnel's, in access records)}
 * -> dynamic | nil, err */
static int l_dynamic(lua_State *L)
{
    wr_dynamic_config cfg = {0};
    lua_Integer port, timeout;
    wr_ldynamic *ld;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    cfg.host = wr_opt_string(L, 1, "host", "127.0.0.1");
    port = wr_opt_integer(L, 1, "port", 0);
    timeout = wr_opt_integer(L, 1, "request_timeout_ms", WR_DYNAMIC_REQUEST_TIMEOUT_DEFAULT);
    cfg.user = wr_opt_string(L, 1, "user", NULL);
    cfg.password = wr_opt_string(L, 1, "password", NULL);
    cfg.name = wr_opt_string(L, 1, "name", NULL);
    /* everything that may raise, before anything is allocated */
    wr_relay_opts_from(L, 1, &cfg.relay);
    lua_getfield(L, 1, "session");
    if (!lua_isnil(L, -1)) luaL_checkudata(L, -1, SESSION_MT);
    lua_getfield(L, 1, "on_close");
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
        return luaL_error(L, "option on_close must be a function");
    lua_pop(L, 2);
    if (port > 65535) return luaL_error(L, "dynamic: bad port");
    if (timeout == 0) return luaL_error(L, "dynamic: request_timeout_ms must be > 0");
    if (!cfg.user != !cfg.password) return luaL_error(L, "dynamic: user and password go together");
    /* SOCKS5 carries each in one length byte */
    if (cfg.user &&
        (!*cfg.user || !*cfg.password || strlen(cfg.user) > 255 || strlen(cfg.password) > 255))
        return luaL_error(L, "dynamic: user and password must be 1 to 255 bytes");
    cfg.port = (uint16_t)port;
    cfg.request_timeout_ms = (uint64_t)timeout;
    ld = calloc(1, sizeof *ld);
    if (!ld) return luaL_error(L, "dynamic: out of memory");
    ld->L = wr_host_get(L)->L;
    ld->session.ref = ld->anchor_ref = ld->on_close_ref = LUA_NOREF;
    lua_getfield(L, 1, "on_close");
    rc = wr_dynamic_new(wr_host_loop(L), &cfg, lua_isnil(L, -1) ? &dynamic_cbs_quiet : &dynamic_cbs,
                        ld, &ld->dyn);
    lua_pop(L, 1);
    if (rc != 0) {
        free(ld);
        return wr_push_uv_error(L, rc);
    }
    lua_getfield(L, 1, "session");
    wr_session_slot_set(L, &ld->session, lua_gettop(L));
    lua_pop(L, 1);
    ld->on_close_ref = wr_opt_function_ref(L, 1, "on_close");
    ld->link.close = dynamic_close_tracked;
    wr_host_track(wr_host_get(L), &ld->link);
    wr_box_new(L, ld, DYNAMIC_MT);
    lua_pushvalue(L, -1);
    ld->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static wr_ldynamic *check_dynamic(lua_State *L)
{
    return *(wr_ldynamic **)luaL_checkudata(L, 1, DYNAMIC_MT);
}

static int l_dynamic_set_session(lua_State *L)
{
    wr_ldynamic *ld = check_dynamic(L);
    if (wr_dynamic_is_closed(ld->dyn)) return wr_push_closed(L);
    wr_session_slot_set(L, &ld->session, 2);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_dynamic_port(lua_State *L)
{
    wr_ldynamic *ld = check_dynamic(L);
    if (wr_dynamic_is_closed(ld->dyn)) return wr_push_closed(L);
    lua_pushinteger(L, wr_dynamic_port(ld->dyn));
    return 1;
}

static int l_dynamic_stats(lua_State *L)
{
    wr_dynamic_stats st;
    wr_dynamic_get_stats(check_dynamic(L)->dyn, &st);
    lua_createtable(L, 0, 7);
    wr_set_number(L, "accepted", (double)st.accepted);
    wr_set_number(L, "refused", (double)st.refused);
    wr_set_number(L, "failed_opens", (double)st.failed_opens);
    wr_set_number(L, "bad_requests", (double)st.bad_requests);
    wr_set_number(L, "active", st.active);
    wr_set_number(L, "bytes_up", (double)st.bytes_up);
    wr_set_number(L, "bytes_down", (double)st.bytes_down);
    return 1;
}

/* dynamic:cut() -> n: closes every relayed connection; returns how many. */
static int l_dynamic_cut(lua_State *L)
{
    lua_pushinteger(L, wr_dynamic_cut(check_dynamic(L)->dyn));
    return 1;
}

static int l_dynamic_close(lua_State *L)
{
    wr_ldynamic *ld = check_dynamic(L);
    if (wr_dynamic_is_closed(ld->dyn)) return wr_push_closed(L);
    dynamic_close(ld);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_dynamic_gc(lua_State *L)
{
    /* only collected once closed: an open proxy is anchored */
    wr_dynamic_release(check_dynamic(L)->dyn);
    return 0;
}

static const luaL_Reg dynamic_methods[] = {
    {"set_session", l_dynamic_set_session},
    {"port", l_dynamic_port},
    {"stats", l_dynamic_stats},
    {"close", l_dynamic_close},
    {"cut", l_dynamic_cut},
    {NULL, NULL},
};

void wr_bind_dynamic(lua_State *L)
{
    wr_bind_class(L, DYNAMIC_MT, dynamic_methods, l_dynamic_gc, "dynamic", l_dynamic);
}
