/* Tasks: Lua coroutines driven by the loop. An awaitable C function starts a libuv operation,
 * then yields its task; the operation's callback pushes the results and resumes it.
 *
 *   static int l_op(lua_State *L) {
 *       wr_await *aw = wr_await_begin(L, "warren.op");
 *       wr_await_timeout(aw, timeout_ms);          // optional
 *       ... start the operation with aw as its context, aw->refs++ ...
 *       return wr_await_yield(L, aw);
 *   }
 *   static void op_cb(...) {
 *       lua_State *co = wr_await_settle(aw);   // NULL when a timeout or cancel came first
 *       if (co) { lua_pushinteger(co, n); wr_await_resume(aw, 1); }
 *       wr_await_release(aw);
 *   }
 *
 * A callback that fires before the yield (synchronous completion) is handled: its results are
 * returned directly by wr_await_yield. */
#ifndef WR_TASK_H
#define WR_TASK_H

#include <lua.h>
#include <uv.h>

typedef struct wr_task wr_task;
typedef struct wr_await wr_await;

struct wr_await {
    wr_task *task;
    uv_timer_t timer;
    int refs;     /* the await itself, its timer, and each operation holding it */
    int settled;  /* results delivered (or timed out / cancelled) */
    int yielded;  /* the task is suspended on this await */
    int nresults; /* results pushed before the yield */
    /* Called when a timeout or a cancel wins: abort the operation (close its handle...). */
    void (*abort)(wr_await *aw);
    /* Pushes the results of a timeout; the default pushes nil, "timeout". */
    int (*on_timeout)(lua_State *co, wr_await *aw);
    void *data;
    wr_await *next_waiter; /* for owners that keep lists of waiters */
};

/* Raises "<what>: not in a task (use warren.spawn)" outside a task. Nothing that can raise may
 * run between wr_await_begin and wr_await_yield; use wr_await_abandon on a failed start. */
wr_await *wr_await_begin(lua_State *L, const char *what);
void wr_await_timeout(wr_await *aw, uint64_t timeout_ms);
void wr_await_abandon(wr_await *aw);
int wr_await_yield(lua_State *L, wr_await *aw);
lua_State *wr_await_settle(wr_await *aw);
void wr_await_resume(wr_await *aw, int nresults);
void wr_await_release(wr_await *aw);

/* Creates a task from the function and nargs arguments on top of the stack (popped) and pushes
 * its handle. wr_task_start runs it until its first await. */
wr_task *wr_task_new(lua_State *L, int nargs);
void wr_task_start(wr_task *t);
/* The process exits with `code` if this task fails (the CLI's main task). */
void wr_task_exit_on_error(wr_task *t, int code);
void wr_task_cancel_all(lua_State *L);

void wr_task_init(lua_State *L);
void wr_bind_task(lua_State *L);

#endif
