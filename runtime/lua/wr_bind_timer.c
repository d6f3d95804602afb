/* core.timer(): a libuv timer owned by C. The box is anchored while the timer is running, so a
 * started timer fires even if the script dropped its handle; a stopped, unreferenced timer is
 * closed by __gc. */
#include "wr_bind.h"
#include "wr_host.h"

#include <lauxlib.h>
#include <stdlib.h>

#define TIMER_MT "warren.timer"

typedef struct wr_timer {
    uv_timer_t handle;
    wr_closable link;
    lua_State *L;
    void **box;
    int anchor_ref; /* the box, held only while the timer runs */
    int cb_ref;
} wr_timer;

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void timer_close(wr_timer *t)
{
    lua_State *L = t->L;
    wr_host_untrack(&t->link);
    wr_box_detach(&t->box);
    luaL_unref(L, LUA_REGISTRYINDEX, t->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->anchor_ref);
    t->cb_ref = t->anchor_ref = LUA_NOREF;
    uv_close((uv_handle_t *)&t->handle, timer_closed);
}

static void timer_close_tracked(wr_closable *c)
{
    timer_close((wr_timer *)((char *)c - offsetof(wr_timer, link)));
}

static void timer_fired(uv_timer_t *h)
{
    wr_timer *t = h->data;
    lua_State *L = t->L;

    /* A one-shot timer is no longer running, so no longer anchored; the box stays on the stack
     * during the call. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->anchor_ref);
    if (!uv_timer_get_repeat(h)) {
        luaL_unref(L, LUA_REGISTRYINDEX, t->anchor_ref);
        t->anchor_ref = LUA_NOREF;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->cb_ref);
    if (wr_lua_pcall(L, 0, 0) != 0) wr_lua_report(L, "timer callback");
    lua_pop(L, 1);
}

static int l_timer_new(lua_State *L)
{
    wr_timer *t = malloc(sizeof *t);
    if (!t) return luaL_error(L, "core.timer: out of memory");
    uv_timer_init(wr_host_loop(L), &t->handle);
    t->handle.data = t;
    t->L = wr_host_get(L)->L;
    t->anchor_ref = LUA_NOREF;
    t->cb_ref = LUA_NOREF;
    t->link.close = timer_close_tracked;
    wr_host_track(wr_host_get(L), &t->link);
    t->box = wr_box_new(L, t, TIMER_MT);
    return 1;
}

/* timer:start(timeout_ms, repeat_ms, callback) */
static int l_timer_start(lua_State *L)
{
    wr_timer *t = wr_box_get(L, 1, TIMER_MT);
    lua_Number timeout = luaL_checknumber(L, 2);
    lua_Number repeat = luaL_checknumber(L, 3);

    luaL_checktype(L, 4, LUA_TFUNCTION);
    if (!t) return wr_push_closed(L);
    luaL_argcheck(L, timeout >= 0, 2, "must be >= 0");
    luaL_argcheck(L, repeat >= 0, 3, "must be >= 0");
    luaL_unref(L, LUA_REGISTRYINDEX, t->cb_ref);
    lua_pushvalue(L, 4);
    t->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (t->anchor_ref == LUA_NOREF) {
        lua_pushvalue(L, 1);
        t->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    uv_update_time(t->handle.loop); /* the cached loop time is stale after long Lua runs */
    uv_timer_start(&t->handle, timer_fired, (uint64_t)timeout, (uint64_t)repeat);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_timer_stop(lua_State *L)
{
    wr_timer *t = wr_box_get(L, 1, TIMER_MT);
    if (!t) return wr_push_closed(L);
    uv_timer_stop(&t->handle);
    luaL_unref(L, LUA_REGISTRYINDEX, t->anchor_ref);
    t->anchor_ref = LUA_NOREF;
    lua_pushboolean(L, 1);
    return 1;
}

static int l_timer_is_active(lua_State *L)
{
    wr_timer *t = wr_box_get(L, 1, TIMER_MT);
    lua_pushboolean(L, t && uv_is_active((uv_handle_t *)&t->handle));
    return 1;
}

/* An unreferenced timer does not keep the loop alive (a grace-period timer, say). */
static int l_timer_unref(lua_State *L)
{
    wr_timer *t = wr_box_get(L, 1, TIMER_MT);
    if (!t) return wr_push_closed(L);
    uv_unref((uv_handle_t *)&t->handle);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_timer_close(lua_State *L)
{
    wr_timer *t = wr_box_get(L, 1, TIMER_MT);
    if (!t) return wr_push_closed(L);
    timer_close(t);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_timer_gc(lua_State *L)
{
    void **box = luaL_checkudata(L, 1, TIMER_MT);
    wr_timer *t = *box;
    if (t) timer_close(t); /* collected, so stopped and unreferenced */
    return 0;
}

static const luaL_Reg timer_methods[] = {
    {"start", l_timer_start}, {"stop", l_timer_stop},   {"is_active", l_timer_is_active},
    {"unref", l_timer_unref}, {"close", l_timer_close}, {NULL, NULL},
};

void wr_bind_timer(lua_State *L)
{
    wr_bind_class(L, TIMER_MT, timer_methods, l_timer_gc, "timer", l_timer_new);
}
