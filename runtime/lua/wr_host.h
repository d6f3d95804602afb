/* The process host: owns the uv loop and the LuaJIT state, wires luv onto that loop, and runs
 * every call from C into Lua under a traceback handler. */
#ifndef WR_HOST_H
#define WR_HOST_H

#include <lua.h>
#include <uv.h>

/* A C-owned resource that must be closed on shutdown (timers, listeners, sessions...). */
typedef struct wr_closable {
    struct wr_closable *next, *prev;
    void (*close)(struct wr_closable *self);
} wr_closable;

typedef struct wr_host {
    uv_loop_t loop;
    lua_State *L;
    lua_State *callback_thread; /* runs C->Lua calls made while another coroutine is running */
    int callback_thread_ref;
    wr_closable closables;  /* list head */
    uv_check_t late_closer; /* after teardown: closes what Lua still creates */
    uv_timer_t trimmer;     /* gives buffer memory back after a backlog; watches descriptors */
    int fd_limit_reported;  /* the low descriptor limit was logged */
    uint64_t fd_warned_ms;  /* when running out of descriptors was last logged */
    int exit_code;
    int torn_down;
    int in_log_sink;
    uint64_t lua_errors; /* errors caught in callbacks and tasks, for stats */
} wr_host;

int wr_host_init(wr_host *h);
/* Runs lua/warren/cli.lua's main(argv) as a task, then the loop until nothing is left. */
int wr_host_run(wr_host *h, int argc, char **argv);
/* Closes every handle, drains the loop, closes Lua. Returns the process exit code. */
int wr_host_close(wr_host *h);

wr_host *wr_host_get(lua_State *L);
uv_loop_t *wr_host_loop(lua_State *L);

void wr_host_track(wr_host *h, wr_closable *c);
void wr_host_untrack(wr_closable *c);

/* Closes every tracked resource (Lua-side handles first), cancels all tasks; the loop then drains
 * by itself. Idempotent. */
void wr_host_teardown(wr_host *h, int exit_code);

/* lua_pcall with a traceback handler. On error the message (with traceback) is left on the stack
 * and the status returned. An os.exit() unwinding through here is reported as LUA_OK after
 * starting the teardown, with nothing left on the stack. */
int wr_lua_pcall(lua_State *L, int nargs, int nresults);
/* Logs the error at the top of the stack as coming from `what`, pops it, counts it. */
void wr_lua_report(lua_State *L, const char *what);

/* The error value os.exit() raises to unwind the running Lua code. */
int wr_lua_is_exit(lua_State *L, int idx);
int wr_lua_raise_exit(lua_State *L);

#endif
