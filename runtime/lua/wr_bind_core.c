/* The `warren.core` module: the C bindings, and the small helpers they share. */
#include "wr_bind.h"

#include "wr_buf.h"
#include "wr_host.h"
#include "wr_relay.h"
#include "wr_task.h"
#include "wr_tls_endpoint.h"

#include <lauxlib.h>
#include <luajit.h>
#include <mbedtls/version.h>
#include <uv.h>

void **wr_box_new(lua_State *L, void *object, const char *metatable)
{
    void **box = lua_newuserdata(L, sizeof *box);
    *box = object;
    luaL_getmetatable(L, metatable);
    lua_setmetatable(L, -2);
    return box;
}

/* Returns the object, or NULL when it was closed (the box stays valid). */
void *wr_box_get(lua_State *L, int idx, const char *metatable)
{
    void **box = luaL_checkudata(L, idx, metatable);
    return *box;
}

/* Called by an object that closes: its box (if still alive) now reads as closed. */
void wr_box_detach(void ***backref)
{
    if (*backref) **backref = NULL;
    *backref = NULL;
}

void wr_bind_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                   const char *ctor_name, lua_CFunction ctor)
{
    luaL_newmetatable(L, name);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    luaL_register(L, NULL, methods);
    if (gc) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (!ctor) return; /* made only from C (e.g. channels) */
    lua_pushcfunction(L, ctor);
    lua_setfield(L, -2, ctor_name);
}

int wr_push_closed(lua_State *L)
{
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
}

int wr_push_uv_error(lua_State *L, int err)
{
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(err));
    lua_pushstring(L, uv_err_name(err));
    return 3;
}

void wr_bind_versions(lua_State *L)
{
    lua_newtable(L);
    lua_pushliteral(L, WR_VERSION);
    lua_setfield(L, -2, "warren");
    lua_pushliteral(L, LUAJIT_VERSION);
    lua_setfield(L, -2, "luajit");
    lua_pushstring(L, uv_version_string());
    lua_setfield(L, -2, "libuv");
    lua_pushliteral(L, WR_LUV_VERSION);
    lua_setfield(L, -2, "luv");
    lua_pushliteral(L, MBEDTLS_VERSION_STRING);
    lua_setfield(L, -2, "mbedtls");
    lua_pushstring(L, wr_tls_backend()); /* the TLS carrier's library: OpenSSL or mbed TLS */
    lua_setfield(L, -2, "tls");
    lua_setfield(L, -2, "versions");
}

/* core.buffers([budget]) -> {budget = bytes, held = bytes}: sets the process's buffer budget
 * when given (bytes; 0 = none; see wr_relay_set_budget), and tells what buffers hold now. */
static int l_buffers(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) {
        lua_Number n = luaL_checknumber(L, 1);
        if (n < 0) return luaL_argerror(L, 1, "budget must be 0 or more bytes");
        wr_relay_set_budget((size_t)n);
    }
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, (lua_Number)wr_relay_get_budget());
    lua_setfield(L, -2, "budget");
    lua_pushnumber(L, (lua_Number)wr_buf_live_bytes());
    lua_setfield(L, -2, "held");
    return 1;
}

int wr_luaopen_core(lua_State *L)
{
    lua_newtable(L);
    wr_bind_host(L);
    wr_bind_task(L);
    wr_bind_timer(L);
    wr_bind_edit(L);
    wr_bind_versions(L);
    wr_bind_key(L);
    wr_bind_session(L);
    wr_bind_forward(L);
    wr_bind_dynamic(L);
    wr_bind_relay(L);
    wr_bind_ctl(L);
    wr_bind_channel(L);
    wr_bind_tls(L);
    wr_bind_unix(L);
    wr_bind_access(L);
    lua_pushcfunction(L, l_buffers);
    lua_setfield(L, -2, "buffers");
    return 1;
}
