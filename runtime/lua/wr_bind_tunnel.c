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

#define KCP_WND_DEFAULT 1024

void wr_kcp_opts_from(lua_State *L, int idx, wr_kcp_config *out)
{
    const char *mode = wr_opt_string(L, idx, "kcp_mode", "fast2");
    lua_Integer mtu = wr_opt_integer(L, idx, "kcp_mtu", WR_KCP_MTU_DEFAULT);
    lua_Integer snd = wr_opt_integer(L, idx, "kcp_sndwnd", KCP_WND_DEFAULT);
    lua_Integer rcv = wr_opt_integer(L, idx, "kcp_rcvwnd", KCP_WND_DEFAULT);
    memset(out, 0, sizeof *out);
    if (wr_kcp_preset(mode, out) != 0)
        luaL_error(L, "kcp_mode must be normal, fast, fast2 or fast3 (not %s)", mode);
    if (mtu < 1200 || mtu > 9000) luaL_error(L, "kcp_mtu must be 1200..9000");
    if (snd < 16 || snd > WR_KCP_WND_MAX || rcv < 16 || rcv > WR_KCP_WND_MAX)
        luaL_error(L, "kcp windows must be 16..%d segments", WR_KCP_WND_MAX);
    out->mtu = (uint32_t)mtu;
    out->snd_wnd = (uint32_t)snd;
    out->rcv_wnd = (uint32_t)rcv;
}

void wr_set_kcp_stats(lua_State *L, const wr_kcp_stats *st)
{
    wr_set_number(L, "kcp_retransmits", (double)st->retransmits);
    wr_set_number(L, "kcp_fast_retransmits", (double)st->fast_retransmits);
    wr_set_number(L, "kcp_lost_segments", (double)st->lost_segments);
    wr_set_number(L, "kcp_duplicates", (double)st->duplicates);
    wr_set_number(L, "kcp_segments_sent", (double)st->segs_sent);
    wr_set_number(L, "kcp_segments_received", (double)st->segs_received);
    wr_set_number(L, "kcp_rtt_ms", st->srtt_ms);
    wr_set_number(L, "kcp_rto_ms", st->rto_ms);
    wr_set_number(L, "kcp_cwnd", st->cwnd);
    wr_set_number(L, "kcp_snd_wnd", st->snd_wnd);
    wr_set_number(L, "kcp_rcv_wnd", st->rcv_wnd);
    wr_set_number(L, "kcp_remote_wnd", st->rmt_wnd);
    wr_set_number(L, "kcp_in_flight", st->in_flight);
    wr_set_number(L, "kcp_pacing_rate", (double)st->pacing_rate);
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
