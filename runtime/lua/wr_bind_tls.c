/* TLS contexts as Lua handles, for the TLS carrier: core.tls_server{...} for a relay's port,
 * core.tls_client{...} for a client's dial. A context is immutable once made; relays and
 * sessions take their own reference, so a handle may be dropped while they run. */
#include "wr_bind.h"
#include "wr_bind_tunnel.h"
#include "wr_tls_endpoint.h"

#include <lauxlib.h>
#include <stdlib.h>

#define TLS_MT "warren.tls"

static int push_ctx(lua_State *L, wr_tls_ctx_t *ctx, char *err)
{
    if (!ctx) {
        lua_pushnil(L);
        lua_pushstring(L, err ? err : "cannot set up TLS");
        free(err);
        return 2;
    }
    wr_box_new(L, ctx, TLS_MT);
    return 1;
}

/* core.tls_server{cert=, cert_key=, self_signed=FILE, name=, alpn=} -> ctx | nil, err */
static int l_tls_server(lua_State *L)
{
    wr_tls_server_opts o = {0};
    char *err = NULL;
    luaL_checktype(L, 1, LUA_TTABLE);
    o.cert_file = wr_opt_string(L, 1, "cert", NULL);
    o.key_file = wr_opt_string(L, 1, "cert_key", NULL);
    o.self_signed_file = wr_opt_string(L, 1, "self_signed", NULL);
    o.self_signed_name = wr_opt_string(L, 1, "name", NULL);
    o.alpn = wr_opt_string(L, 1, "alpn", NULL);
    return push_ctx(L, wr_tls_ctx_new_server(&o, &err), err);
}

/* core.tls_client{ca=, pin=, alpn=} -> ctx | nil, err */
static int l_tls_client(lua_State *L)
{
    wr_tls_client_opts o = {0};
    char *err = NULL;
    luaL_checktype(L, 1, LUA_TTABLE);
    o.ca_file = wr_opt_string(L, 1, "ca", NULL);
    o.pin = wr_opt_string(L, 1, "pin", NULL);
    o.alpn = wr_opt_string(L, 1, "alpn", NULL);
    return push_ctx(L, wr_tls_ctx_new_client(&o, &err), err);
}

wr_tls_ctx_t *wr_tls_ctx_check(lua_State *L, int idx)
{
    return *(wr_tls_ctx_t **)luaL_checkudata(L, idx, TLS_MT);
}

/* ctx:fingerprint() -> "sha256:..." of a server's certificate, or nil */
static int l_tls_fingerprint(lua_State *L)
{
    const char *fp = wr_tls_ctx_fingerprint(wr_tls_ctx_check(L, 1));
    if (fp)
        lua_pushstring(L, fp);
    else
        lua_pushnil(L);
    return 1;
}

static int l_tls_gc(lua_State *L)
{
    wr_tls_ctx_free(wr_tls_ctx_check(L, 1));
    return 0;
}

static const luaL_Reg tls_methods[] = {
    {"fingerprint", l_tls_fingerprint},
    {NULL, NULL},
};

void wr_bind_tls(lua_State *L)
{
    wr_bind_class(L, TLS_MT, tls_methods, l_tls_gc, "tls_server", l_tls_server);
    lua_pushcfunction(L, l_tls_client);
    lua_setfield(L, -2, "tls_client");
}
