#include "wr_task.h"

#include "wr_host.h"
#include "wr_log.h"

#include <lauxlib.h>
#include <stdlib.h>

#define TASK_MT "warren.task"

enum task_state { TASK_NEW, TASK_RUNNING, TASK_WAITING, TASK_DONE, TASK_FAILED, TASK_CANCELLED };
static const char *const state_names[] = {"new",  "running", "waiting",
                                          "done", "failed",  "cancelled"};

struct wr_task {
    lua_State *co;
    int co_ref;     /* anchors the coroutine while the task is unfinished */
    int self_ref;   /* anchors the handle while the task is unfinished */
    int result_ref; /* results table {n=...} or the error message */
    enum task_state state;
    wr_await *await;   /* what the task is suspended on */
    wr_await *joiners; /* awaits of tasks joining this one */
    int exit_on_error, exit_code;
    wr_task *next, *prev; /* live tasks, for teardown */
};

static char task_list_key;  /* registry: lightuserdata head of the live list */
static char task_index_key; /* registry: weak table thread -> task handle */

static wr_task *live_tasks(lua_State *L)
{
    wr_task *head;
    lua_pushlightuserdata(L, &task_list_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    head = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return head;
}

static wr_task *current_task(lua_State *L)
{
    wr_task *t;
    lua_pushlightuserdata(L, &task_index_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    lua_pushthread(L);
    lua_rawget(L, -2);
    t = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return (t && t->co == L) ? t : NULL;
}

static void await_unref(wr_await *aw)
{
    if (--aw->refs == 0) free(aw);
}

static void await_timer_closed(uv_handle_t *h)
{
    await_unref(h->data);
}

static int push_timeout(lua_State *co, wr_await *aw)
{
    lua_pushnil(co);
    lua_pushliteral(co, "timeout");
    return 2;
}

static void task_run(wr_task *t, int nargs);

static void await_timer_fired(uv_timer_t *timer)
{
    wr_await *aw = timer->data;
    lua_State *co = wr_await_settle(aw);
    if (!co) return;
    if (aw->abort) aw->abort(aw);
    wr_await_resume(aw, aw->on_timeout(co, aw));
}

wr_await *wr_await_begin(lua_State *L, const char *what)
{
    wr_task *t = current_task(L);
    wr_await *aw;

    if (!t) luaL_error(L, "%s: not in a task (use warren.spawn)", what);
    if (t->await) luaL_error(L, "%s: the task is already awaiting", what);
    if (wr_host_get(L)->torn_down) wr_lua_raise_exit(L);
    aw = calloc(1, sizeof *aw);
    if (!aw) luaL_error(L, "%s: out of memory", what);
    aw->task = t;
    aw->refs = 1; /* released once settled and delivered */
    aw->on_timeout = push_timeout;
    aw->timer.data = NULL;
    t->await = aw;
    return aw;
}

void wr_await_timeout(wr_await *aw, uint64_t timeout_ms)
{
    uv_loop_t *loop = wr_host_loop(aw->task->co);
    uv_timer_init(loop, &aw->timer);
    aw->timer.data = aw;
    aw->refs++;
    uv_update_time(loop); /* the loop's cached time is stale after a long run of Lua code */
    uv_timer_start(&aw->timer, await_timer_fired, timeout_ms, 0);
}

static void await_stop_timer(wr_await *aw)
{
    if (aw->timer.data && !uv_is_closing((uv_handle_t *)&aw->timer))
        uv_close((uv_handle_t *)&aw->timer, await_timer_closed);
}

lua_State *wr_await_settle(wr_await *aw)
{
    if (aw->settled) return NULL;
    aw->settled = 1;
    await_stop_timer(aw);
    return aw->task->co;
}

void wr_await_resume(wr_await *aw, int nresults)
{
    wr_task *t = aw->task;
    if (!aw->yielded) {
        aw->nresults = nresults; /* completed before the yield: wr_await_yield returns them */
        return;
    }
    t->await = NULL;
    await_unref(aw);
    task_run(t, nresults);
}

void wr_await_abandon(wr_await *aw)
{
    aw->settled = 1;
    await_stop_timer(aw);
    aw->task->await = NULL;
    await_unref(aw);
}

void wr_await_release(wr_await *aw)
{
    await_unref(aw);
}

int wr_await_yield(lua_State *L, wr_await *aw)
{
    if (aw->settled) {
        int n = aw->nresults;
        aw->task->await = NULL;
        await_unref(aw);
        return n;
    }
    aw->yielded = 1;
    aw->task->state = TASK_WAITING;
    return lua_yield(L, 0);
}

/* ---- tasks ---- */

static void task_unlink(wr_task *t)
{
    if (!t->next) return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->next = t->prev = NULL;
}

/* Drops the anchors of a finished task; the handle stays valid while Lua references it. */
static void task_release(wr_task *t)
{
    lua_State *co = t->co;
    task_unlink(t);
    luaL_unref(co, LUA_REGISTRYINDEX, t->self_ref);
    t->self_ref = LUA_NOREF;
    luaL_unref(co, LUA_REGISTRYINDEX, t->co_ref);
    t->co_ref = LUA_NOREF;
}

/* Replaces the top n values with one table {n = n, ...}. */
static void pack_values(lua_State *L, int n)
{
    int i;
    lua_createtable(L, n, 1);
    lua_insert(L, -n - 1);
    for (i = n; i > 0; i--)
        lua_rawseti(L, -i - 1, i);
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
}

/* The reverse: replaces the table at the top with its n values; returns n. */
static int unpack_values(lua_State *L)
{
    int i, n;
    lua_getfield(L, -1, "n");
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many results");
    for (i = 1; i <= n; i++)
        lua_rawgeti(L, -i, i);
    lua_remove(L, -n - 1);
    return n;
}

/* Pushes a join's results on co: true, results... or nil, error. */
static int push_outcome(wr_task *t, lua_State *co)
{
    if (t->state == TASK_CANCELLED) {
        lua_pushnil(co);
        lua_pushliteral(co, "cancelled");
        return 2;
    }
    lua_rawgeti(co, LUA_REGISTRYINDEX, t->result_ref);
    if (t->state == TASK_FAILED) {
        lua_pushnil(co);
        lua_insert(co, -2);
        return 2;
    }
    lua_pushboolean(co, 1);
    lua_insert(co, -2);
    return 1 + unpack_values(co);
}

static void wake_joiners(wr_task *t)
{
    while (t->joiners) {
        wr_await *aw = t->joiners;
        lua_State *co;
        t->joiners = aw->next_waiter;
        aw->data = NULL;
        co = wr_await_settle(aw);
        if (co) wr_await_resume(aw, push_outcome(t, co));
    }
}

/* The anchors go last: a woken joiner runs Lua, which may collect the handle, and the handle
 * is this task's memory. */
static void task_finish(wr_task *t, enum task_state state)
{
    t->state = state;
    task_unlink(t);
    wake_joiners(t);
    task_release(t);
}

static void task_failed(wr_task *t)
{
    lua_State *co = t->co;
    int joined = t->joiners != NULL;

    if (wr_lua_is_exit(co, -1)) { /* os.exit() unwound the task */
        lua_pop(co, 1);
        task_finish(t, TASK_CANCELLED);
        return;
    }
    if (!lua_isstring(co, -1)) {
        lua_pushfstring(co, "(error object is a %s value)", luaL_typename(co, -1));
        lua_remove(co, -2);
    }
    luaL_traceback(co, co, lua_tostring(co, -1), 0);
    lua_remove(co, -2);
    t->result_ref = luaL_ref(co, LUA_REGISTRYINDEX);
    if (!joined) {
        lua_rawgeti(co, LUA_REGISTRYINDEX, t->result_ref);
        wr_lua_report(co, "task failed");
    }
    if (t->exit_on_error) wr_host_teardown(wr_host_get(co), t->exit_code);
    task_finish(t, TASK_FAILED);
}

static void task_run(wr_task *t, int nargs)
{
    lua_State *co = t->co;
    int status, n;

    t->state = TASK_RUNNING;
    status = lua_resume(co, nargs);
    if (status == LUA_YIELD) {
        if (t->await) return; /* suspended on an await */
        lua_settop(co, 0);
        lua_pushliteral(co, "coroutine.yield() in a task outside an await (use warren.sleep)");
        task_failed(t);
        return;
    }
    if (status != 0) {
        task_failed(t);
        return;
    }
    n = lua_gettop(co);
    pack_values(co, n);
    t->result_ref = luaL_ref(co, LUA_REGISTRYINDEX);
    task_finish(t, TASK_DONE);
}

wr_task *wr_task_new(lua_State *L, int nargs)
{
    wr_task *t, *head = live_tasks(L);
    lua_State *co;

    luaL_checktype(L, -nargs - 1, LUA_TFUNCTION);
    co = lua_newthread(L);
    lua_insert(L, -nargs - 2);
    lua_xmove(L, co, nargs + 1); /* function and arguments */
    t = lua_newuserdata(L, sizeof *t);
    t->co = co;
    t->state = TASK_NEW;
    t->await = NULL;
    t->joiners = NULL;
    t->exit_on_error = 0;
    t->exit_code = 0;
    t->result_ref = LUA_NOREF;
    luaL_getmetatable(L, TASK_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -2);
    t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_pushlightuserdata(L, &task_index_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3); /* index[thread] = handle */
    lua_pop(L, 1);
    lua_remove(L, -2); /* the thread: leave only the handle */

    t->next = head->next;
    t->prev = head;
    head->next->prev = t;
    head->next = t;
    return t;
}

void wr_task_start(wr_task *t)
{
    task_run(t, lua_gettop(t->co) - 1);
}

void wr_task_exit_on_error(wr_task *t, int code)
{
    t->exit_on_error = 1;
    t->exit_code = code;
}

/* Cancels a suspended task: its await is aborted and the coroutine is never resumed. */
static int task_cancel(wr_task *t)
{
    wr_await *aw = t->await;
    if (t->state != TASK_WAITING || !aw) return 0;
    if (wr_await_settle(aw)) {
        if (aw->abort) aw->abort(aw);
        t->await = NULL;
        await_unref(aw);
    }
    task_finish(t, TASK_CANCELLED);
    return 1;
}

void wr_task_cancel_all(lua_State *L)
{
    wr_task *head = live_tasks(L), *t = head->next;
    while (t != head) {
        wr_task *next = t->next;
        task_cancel(t);
        t = next;
    }
}

/* ---- Lua API ---- */

static wr_task *check_task(lua_State *L)
{
    return luaL_checkudata(L, 1, TASK_MT);
}

static int l_spawn(lua_State *L)
{
    wr_task *t;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (wr_host_get(L)->torn_down) return luaL_error(L, "warren.spawn: shutting down");
    t = wr_task_new(L, lua_gettop(L) - 1);
    wr_task_start(t);
    return 1;
}

static int sleep_done(lua_State *co, wr_await *aw)
{
    lua_pushboolean(co, 1);
    return 1;
}

static int l_sleep(lua_State *L)
{
    lua_Number ms = luaL_checknumber(L, 1);
    wr_await *aw;
    luaL_argcheck(L, ms >= 0, 1, "must be >= 0");
    aw = wr_await_begin(L, "warren.sleep");
    aw->on_timeout = sleep_done;
    wr_await_timeout(aw, (uint64_t)ms);
    return wr_await_yield(L, aw);
}

/* warren.await(starter, timeout_ms): bridges callback APIs (luv) into tasks. starter(resolve) is
 * called at once; the first resolve(...) call's arguments become await's results. */
struct await_cell {
    wr_await *aw;
    int sync_ref; /* results of a resolve() made before the yield */
};

static void cell_abort(wr_await *aw)
{
    struct await_cell *cell = aw->data;
    cell->aw = NULL;
}

static int l_resolve(lua_State *L)
{
    struct await_cell *cell = lua_touserdata(L, lua_upvalueindex(1));
    wr_await *aw = cell->aw;
    lua_State *co;
    int n = lua_gettop(L);

    if (!aw) return 0; /* late: the await already timed out or was cancelled */
    cell->aw = NULL;
    co = wr_await_settle(aw);
    if (co == L) { /* still inside starter, on the same stack: hand over through a table */
        pack_values(L, n);
        cell->sync_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return 0;
    }
    luaL_checkstack(co, n, "too many results");
    lua_xmove(L, co, n);
    wr_await_resume(aw, n);
    return 0;
}

static int l_await(lua_State *L)
{
    lua_Number timeout = luaL_optnumber(L, 2, 0);
    struct await_cell *cell;
    wr_await *aw;

    luaL_checktype(L, 1, LUA_TFUNCTION);
    cell = lua_newuserdata(L, sizeof *cell);
    cell->sync_ref = LUA_NOREF;
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, l_resolve, 1);
    aw = wr_await_begin(L, "warren.await");
    cell->aw = aw;
    aw->data = cell;
    aw->abort = cell_abort;
    if (lua_pcall(L, 1, 0, 0) != 0) {
        if (cell->aw) wr_await_abandon(aw);
        return lua_error(L);
    }
    if (cell->sync_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, cell->sync_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, cell->sync_ref);
        wr_await_resume(aw, unpack_values(L));
        return wr_await_yield(L, aw);
    }
    if (timeout > 0) wr_await_timeout(aw, (uint64_t)timeout);
    return wr_await_yield(L, aw);
}

static void join_abort(wr_await *aw)
{
    wr_task *target = aw->data;
    wr_await **p;
    if (!target) return;
    for (p = &target->joiners; *p; p = &(*p)->next_waiter) {
        if (*p == aw) {
            *p = aw->next_waiter;
            break;
        }
    }
}

static int l_task_join(lua_State *L)
{
    wr_task *t = check_task(L);
    lua_Number timeout = luaL_optnumber(L, 2, 0);
    wr_await *aw;

    if (t->state == TASK_DONE || t->state == TASK_FAILED || t->state == TASK_CANCELLED)
        return push_outcome(t, L);
    if (t->co == L) return luaL_error(L, "task:join: a task cannot join itself");
    aw = wr_await_begin(L, "task:join");
    aw->data = t;
    aw->abort = join_abort;
    aw->next_waiter = t->joiners;
    t->joiners = aw;
    if (timeout > 0) wr_await_timeout(aw, (uint64_t)timeout);
    return wr_await_yield(L, aw);
}

static int l_task_cancel(lua_State *L)
{
    wr_task *t = check_task(L);
    if (t->state == TASK_RUNNING) {
        lua_pushnil(L);
        lua_pushliteral(L, "task is running");
        return 2;
    }
    if (!task_cancel(t)) {
        lua_pushnil(L);
        lua_pushfstring(L, "task is %s", state_names[t->state]);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_task_status(lua_State *L)
{
    lua_pushstring(L, state_names[check_task(L)->state]);
    return 1;
}

static int l_task_tostring(lua_State *L)
{
    wr_task *t = check_task(L);
    lua_pushfstring(L, "warren.task (%s): %p", state_names[t->state], (void *)t);
    return 1;
}

static int l_task_gc(lua_State *L)
{
    wr_task *t = check_task(L);
    if (t->result_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, t->result_ref);
    t->result_ref = LUA_NOREF;
    return 0;
}

static int l_running(lua_State *L)
{
    wr_task *t = current_task(L);
    if (!t) return 0;
    lua_pushlightuserdata(L, &task_index_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushthread(L);
    lua_rawget(L, -2);
    return 1;
}

static int l_task_count(lua_State *L)
{
    wr_task *head = live_tasks(L), *t;
    int n = 0;
    for (t = head->next; t != head; t = t->next)
        n++;
    lua_pushinteger(L, n);
    return 1;
}

static const luaL_Reg task_methods[] = {
    {"join", l_task_join},
    {"cancel", l_task_cancel},
    {"status", l_task_status},
    {NULL, NULL},
};

static const luaL_Reg task_funcs[] = {
    {"spawn", l_spawn},     {"sleep", l_sleep},           {"await", l_await},
    {"running", l_running}, {"task_count", l_task_count}, {NULL, NULL},
};

static wr_task task_head; /* sentinel of the live list: one state per process */

void wr_task_init(lua_State *L)
{
    task_head.next = task_head.prev = &task_head;
    lua_pushlightuserdata(L, &task_list_key);
    lua_pushlightuserdata(L, &task_head);
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_pushlightuserdata(L, &task_index_key);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);

    luaL_newmetatable(L, TASK_MT);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    luaL_register(L, NULL, task_methods);
    lua_pushcfunction(L, l_task_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_task_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

void wr_bind_task(lua_State *L)
{
    luaL_register(L, NULL, task_funcs);
}
