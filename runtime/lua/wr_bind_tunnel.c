/* Helpers shared by the session, relay and forward bindings. */
#include "wr_bind_tunnel.h"
#include "wr_addr.h"

#include "wr_host.h"
#include "wr_tcp_endpoint.h"

#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

const char *wr_opt_string(lua_State *L, int idx, const char *name, const char *def)
{
    const char *v;
    lua_getfield(L, idx, name);
    v = lua_isnil(L, -1) ? def : luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the string stays alive: the option table holds it */
    return v;
}

lua_Integer wr_opt_integer(lua_State *L, int idx, const char *name, lua_Integer def)
{
    lua_Integer v;
    lua_getfield(L, idx, name);
    if (lua_isnil(L, -1)) {
        v = def;
    } else {
        if (!lua_isnumber(L, -1)) luaL_error(L, "option %s must be a number", name);
        v = lua_tointeger(L, -1);
        if (v < 0) luaL_error(L, "option %s must be >= 0", name);
    }
    lua_pop(L, 1);
    return v;
}

int wr_opt_boolean(lua_State *L, int idx, const char *name)
{
    int v;
    lua_getfield(L, idx, name);
    v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

int wr_opt_function_ref(lua_State *L, int idx, const char *name)
{
    lua_getfield(L, idx, name);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    if (!lua_isfunction(L, -1)) luaL_error(L, "option %s must be a function", name);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

void wr_relay_opts_from(lua_State *L, int idx, wr_relay_opts_t *out)
{
    memset(out, 0, sizeof *out);
    out->write_cap = (size_t)wr_opt_integer(L, idx, "write_cap", 0);
    out->low_water = 0;
    out->idle_timeout_ms = (uint64_t)wr_opt_integer(L, idx, "idle_timeout_ms", 0);
}

void wr_set_number(lua_State *L, const char *name, double value)
{
    lua_pushnumber(L, value);
    lua_setfield(L, -2, name);
}

void wr_format_peer(wr_endpoint_t *ep, char *out, size_t size)
{
    uv_tcp_t *tcp = wr_tcp_endpoint_handle(ep);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    snprintf(out, size, "?");
    if (tcp && uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0)
        wr_addr_format((const struct sockaddr *)&ss, 1, out, size);
}

typedef struct close_args {
    int fn_ref;
    const char *target, *peer;
    uint64_t up, down;
    const wr_relay_result_t *res;
} close_args;

/* Runs under lua_cpcall, which makes even this function's closure inside the protection: an
 * allocation error while the arguments are built is reported like a hook error. */
static int call_close_hook(lua_State *L)
{
    const close_args *a = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->fn_ref);
    lua_createtable(L, 0, 7);
    lua_pushstring(L, a->target);
    lua_setfield(L, -2, "target");
    if (a->peer) {
        lua_pushstring(L, a->peer);
        lua_setfield(L, -2, "peer");
    }
    wr_set_number(L, "bytes_up", (double)a->up);
    wr_set_number(L, "bytes_down", (double)a->down);
    wr_set_number(L, "duration_ms", (double)a->res->duration_ms);
    lua_pushstring(L, wr_relay_reason_name(a->res->reason));
    lua_setfield(L, -2, "reason");
    if (a->res->err) {
        lua_pushstring(L, uv_strerror(a->res->err));
        lua_setfield(L, -2, "error");
    }
    if (wr_lua_pcall(L, 1, 0) != 0) wr_lua_report(L, "on_close hook");
    return 0;
}

void wr_call_close_hook(lua_State *L, int fn_ref, const char *target, const char *peer, uint64_t up,
                        uint64_t down, const wr_relay_result_t *res)
{
    close_args args = {fn_ref, target, peer, up, down, res};
    if (fn_ref == LUA_NOREF) return; /* no hook: no Lua at all */
    if (lua_cpcall(L, call_close_hook, &args) != 0) wr_lua_report(L, "on_close hook arguments");
}

void wr_session_slot_set(lua_State *L, wr_session_slot *slot, int idx)
{
    luaL_unref(L, LUA_REGISTRYINDEX, slot->ref);
    slot->ref = LUA_NOREF;
    slot->session = NULL;
    if (lua_isnoneornil(L, idx)) return;
    slot->session = *(wr_lsession **)luaL_checkudata(L, idx, SESSION_MT);
    lua_pushvalue(L, idx);
    slot->ref = luaL_ref(L, LUA_REGISTRYINDEX);
}
