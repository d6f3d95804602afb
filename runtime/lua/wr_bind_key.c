/* Keys from Lua: core.keygen(), core.key_from_text(text, force_password),
 * core.key_from_file(path). Keys cross into Lua as 32-byte strings; they are only handed back
 * to C to start sessions. */
#include "wr_bind.h"
#include "wr_key.h"

#include <lauxlib.h>

static int push_key_result(lua_State *L, int rc, const uint8_t *key, enum wr_key_source src)
{
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, wr_key_strerror(rc));
        return 2;
    }
    lua_pushlstring(L, (const char *)key, WR_KEY_LEN);
    lua_pushstring(L, src == WR_KEY_SRC_PASSWORD ? "password" : "key");
    return 2;
}

/* core.keygen() -> printable key (43 characters of base64url) */
static int l_keygen(lua_State *L)
{
    uint8_t key[WR_KEY_LEN];
    char text[WR_KEY_B64_LEN + 1];
    int rc = wr_key_generate(key);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, wr_key_strerror(rc));
        return 2;
    }
    wr_key_encode(key, text);
    lua_pushstring(L, text);
    return 1;
}

/* core.key_from_text(text, force_password) -> key, "key"|"password" | nil, err */
static int l_key_from_text(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    uint8_t key[WR_KEY_LEN];
    enum wr_key_source src = WR_KEY_SRC_KEY;
    int rc = wr_key_from_text(text, len, lua_toboolean(L, 2), key, &src);
    return push_key_result(L, rc, key, src);
}

/* core.key_from_file(path) -> key, "key"|"password" | nil, err */
static int l_key_from_file(lua_State *L)
{
    uint8_t key[WR_KEY_LEN];
    enum wr_key_source src = WR_KEY_SRC_KEY;
    int rc = wr_key_from_file(luaL_checkstring(L, 1), key, &src);
    return push_key_result(L, rc, key, src);
}

/* core.key_encode(key) -> printable form of a 32-byte key */
static int l_key_encode(lua_State *L)
{
    size_t len;
    const char *key = luaL_checklstring(L, 1, &len);
    char text[WR_KEY_B64_LEN + 1];
    luaL_argcheck(L, len == WR_KEY_LEN, 1, "a key is 32 bytes");
    wr_key_encode((const uint8_t *)key, text);
    lua_pushstring(L, text);
    return 1;
}

static const luaL_Reg key_funcs[] = {
    {"keygen", l_keygen},
    {"key_from_text", l_key_from_text},
    {"key_from_file", l_key_from_file},
    {"key_encode", l_key_encode},
    {NULL, NULL},
};

void wr_bind_key(lua_State *L)
{
    luaL_register(L, NULL, key_funcs);
}
