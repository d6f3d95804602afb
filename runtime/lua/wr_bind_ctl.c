/* Control messages from Lua (the encoding is in wr_ctl.h):
 *
 *   core.ctl_encode(value)        -> framed message (length prefix + value); raises on values it
 *                                    cannot encode
 *   core.ctl_decode(message)      -> value | nil, err       one framed message
 *
 * Channels (wr_bind_channel.c) use the same two conversions through wr_ctl_push_encoded and
 * wr_ctl_push_value, so a channel sends and receives Lua values.
 *
 * Lua to wire: nil, booleans and strings as themselves; an integer-valued number within ±2^53
 * as an integer, any other number as a double (NaN raises); a table that is a non-empty
 * sequence 1..n with no other keys as an array, a table with only string keys (or none) as a
 * map. Anything else raises: functions, userdata, cdata, threads, other keys, keys over 255
 * bytes, cycles, nesting deeper than 16.
 *
 * Wire to Lua: arrays and maps become tables (a nil inside one leaves a hole), integers
 * numbers. Refused as well as what the codec refuses: integers beyond ±2^53, which a Lua number
 * could not hold exactly, and a map that repeats a key. */
#include "wr_bind.h"
#include "wr_ctl.h"

#include <lauxlib.h>
#include <math.h>
#include <string.h>

#define EXACT_INT 9007199254740992.0 /* 2^53 */

/* ---- encoding ---- */

/* Stack slots of the protected encoder. */
#define ARG_VALUE  1
#define ARG_WRITER 2
#define ARG_PATH   3 /* tables being encoded, from the top down: meeting one again is a cycle */

static void check(lua_State *L, int rc)
{
    if (rc) luaL_error(L, "ctl_encode: %s", wr_ctl_strerror(rc));
}

static void encode(lua_State *L, wr_ctl_writer *w, int idx);

/* A table's shape: an array of n, a map of n, or an error. */
static int table_shape(lua_State *L, int t, uint32_t *n)
{
    size_t count = 0, seq = 0, strings = 0;
    double max = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) == LUA_TSTRING) {
            strings++;
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
            double k = lua_tonumber(L, -1);
            if (k >= 1 && k == floor(k)) {
                seq++;
                if (k > max) max = k;
            }
        }
    }
    if (count > UINT32_MAX) luaL_error(L, "ctl_encode: %s", wr_ctl_strerror(WR_CTL_ETOOBIG));
    *n = (uint32_t)count;
    if (count > 0 && seq == count && max == (double)count) return 0;
    if (strings == count) return 1;
    return luaL_error(L, "ctl_encode: a table must be a sequence 1..n or have only string keys");
}

static void encode_table(lua_State *L, wr_ctl_writer *w, int t)
{
    uint32_t n;
    int is_map;

    luaL_checkstack(L, 4, "ctl_encode: nested too deep");
    lua_pushvalue(L, t);
    lua_rawget(L, ARG_PATH);
    if (lua_toboolean(L, -1)) luaL_error(L, "ctl_encode: a table contains itself");
    lua_pop(L, 1);
    is_map = table_shape(L, t, &n);
    check(L, is_map ? wr_ctl_put_map(w, n) : wr_ctl_put_array(w, n));

    lua_pushvalue(L, t);
    lua_pushboolean(L, 1);
    lua_rawset(L, ARG_PATH);
    if (is_map) {
        lua_pushnil(L);
        while (lua_next(L, t)) {
            size_t len;
            const char *k = lua_tolstring(L, -2, &len); /* a string: no conversion */
            check(L, wr_ctl_put_key(w, k, len));
            encode(L, w, lua_gettop(L));
            lua_pop(L, 1);
        }
    } else {
        for (uint32_t i = 1; i <= n; i++) {
            lua_rawgeti(L, t, (int)i);
            encode(L, w, lua_gettop(L));
            lua_pop(L, 1);
        }
    }
    lua_pushvalue(L, t);
    lua_pushnil(L);
    lua_rawset(L, ARG_PATH);
}

static void encode(lua_State *L, wr_ctl_writer *w, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        check(L, wr_ctl_put_nil(w));
        break;
    case LUA_TBOOLEAN:
        check(L, wr_ctl_put_bool(w, lua_toboolean(L, idx)));
        break;
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, idx);
        if (d == floor(d) && fabs(d) <= EXACT_INT)
            check(L, wr_ctl_put_int(w, (int64_t)d));
        else
            check(L, wr_ctl_put_double(w, d));
        break;
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        check(L, wr_ctl_put_string(w, s, len));
        break;
    }
    case LUA_TTABLE:
        encode_table(L, w, idx);
        break;
    default:
        luaL_error(L, "ctl_encode: cannot encode a %s", luaL_typename(L, idx));
    }
}

static int encode_protected(lua_State *L)
{
    wr_ctl_writer *w = lua_touserdata(L, ARG_WRITER);
    const uint8_t *msg;
    size_t len;
    lua_settop(L, ARG_WRITER);
    lua_newtable(L); /* ARG_PATH */
    encode(L, w, ARG_VALUE);
    check(L, wr_ctl_writer_finish(w, &msg, &len));
    lua_pushlstring(L, (const char *)msg, len);
    return 1;
}

/* The writer's buffer is C memory, so the walk runs protected and the buffer is freed before
 * any error goes on. */
void wr_ctl_push_encoded(lua_State *L, int idx)
{
    wr_ctl_writer w;
    int rc;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    wr_ctl_writer_init(&w);
    lua_pushcfunction(L, encode_protected);
    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, &w);
    rc = lua_pcall(L, 2, 1, 0);
    wr_ctl_writer_free(&w);
    if (rc) lua_error(L);
}

/* core.ctl_encode(value) -> framed message */
static int l_ctl_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    wr_ctl_push_encoded(L, 1);
    return 1;
}

/* ---- decoding ---- */

struct lua_dec {
    lua_State *L;
    const char *err; /* why a callback stopped the walk */
    int depth;
    int is_map[WR_CTL_MAX_DEPTH];
    int next[WR_CTL_MAX_DEPTH]; /* last array index stored */
};

/* The value on top of the stack is complete: store it in its container (table, [key,] value). */
static int attach(struct lua_dec *d)
{
    if (d->depth == 0) return 0;
    if (d->is_map[d->depth - 1])
        lua_rawset(d->L, -3);
    else
        lua_rawseti(d->L, -2, ++d->next[d->depth - 1]);
    return 0;
}

static int v_nil(void *ud)
{
    struct lua_dec *d = ud;
    lua_pushnil(d->L);
    return attach(d);
}

static int v_bool(void *ud, int value)
{
    struct lua_dec *d = ud;
    lua_pushboolean(d->L, value);
    return attach(d);
}

static int v_int(void *ud, int64_t value)
{
    struct lua_dec *d = ud;
    if (value > (int64_t)EXACT_INT || value < -(int64_t)EXACT_INT) {
        d->err = "integer beyond 2^53, not exact as a Lua number";
        return 1;
    }
    lua_pushnumber(d->L, (lua_Number)value);
    return attach(d);
}

static int v_num(void *ud, double value)
{
    struct lua_dec *d = ud;
    lua_pushnumber(d->L, value);
    return attach(d);
}

static int v_str(void *ud, const uint8_t *s, size_t len)
{
    struct lua_dec *d = ud;
    lua_pushlstring(d->L, (const char *)s, len);
    return attach(d);
}

/* n was checked against the message size, so pre-sizing is bounded by it. */
static int begin(struct lua_dec *d, int is_map, uint32_t n)
{
    if (!lua_checkstack(d->L, 4)) {
        d->err = "Lua stack exhausted";
        return 1;
    }
    lua_createtable(d->L, is_map ? 0 : (int)n, is_map ? (int)n : 0);
    d->is_map[d->depth] = is_map;
    d->next[d->depth] = 0;
    d->depth++;
    return 0;
}

static int v_array(void *ud, uint32_t n)
{
    return begin(ud, 0, n);
}

static int v_map(void *ud, uint32_t n)
{
    return begin(ud, 1, n);
}

static int v_key(void *ud, const uint8_t *s, size_t len)
{
    struct lua_dec *d = ud;
    int dup;
    lua_pushlstring(d->L, (const char *)s, len);
    lua_pushvalue(d->L, -1);
    lua_rawget(d->L, -3);
    dup = !lua_isnil(d->L, -1);
    lua_pop(d->L, 1);
    if (dup) {
        d->err = "map key repeated";
        return 1;
    }
    return 0;
}

static int v_end(void *ud)
{
    struct lua_dec *d = ud;
    d->depth--;
    return attach(d);
}

static const wr_ctl_visitor lua_visitor = {v_nil,   v_bool, v_int, v_num, v_str,
                                           v_array, v_map,  v_key, v_end};

const char *wr_ctl_push_value(lua_State *L, const uint8_t *buf, size_t len)
{
    struct lua_dec d = {L, NULL, 0, {0}, {0}};
    int top = lua_gettop(L);
    const char *err;
    int rc = wr_ctl_decode(buf, len, &lua_visitor, &d, &err);
    if (rc == WR_CTL_OK) return NULL;
    lua_settop(L, top);
    return rc == WR_CTL_EABORT ? d.err : err;
}

static int push_decoded(lua_State *L, const uint8_t *buf, size_t len)
{
    const char *err = wr_ctl_push_value(L, buf, len);
    if (!err) return 1;
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* core.ctl_decode(message) -> value | nil, err */
static int l_ctl_decode(lua_State *L)
{
    size_t len, n;
    const uint8_t *s = (const uint8_t *)luaL_checklstring(L, 1, &len);
    int rc = WR_CTL_OK;
    if (len < WR_CTL_PREFIX_LEN) {
        rc = WR_CTL_ETRUNC;
    } else {
        n = (size_t)s[0] << 24 | (size_t)s[1] << 16 | (size_t)s[2] << 8 | s[3];
        if (n == 0)
            rc = WR_CTL_EEMPTY;
        else if (n > WR_CTL_MAX_MESSAGE)
            rc = WR_CTL_ETOOBIG;
        else if (n > len - WR_CTL_PREFIX_LEN)
            rc = WR_CTL_ETRUNC;
        else if (n < len - WR_CTL_PREFIX_LEN)
            rc = WR_CTL_ETRAILING;
    }
    if (rc) {
        lua_pushnil(L);
        lua_pushstring(L, wr_ctl_strerror(rc));
        return 2;
    }
    return push_decoded(L, s + WR_CTL_PREFIX_LEN, len - WR_CTL_PREFIX_LEN);
}

static const luaL_Reg ctl_funcs[] = {
    {"ctl_encode", l_ctl_encode},
    {"ctl_decode", l_ctl_decode},
    {NULL, NULL},
};

void wr_bind_ctl(lua_State *L)
{
    luaL_register(L, NULL, ctl_funcs);
}
