#include "wr_host.h"

#include "wr_bind.h"
#include "wr_buf.h"
#include "wr_crypto.h"
#include "wr_log.h"
#include "wr_task.h"

#include <lauxlib.h>
#include <lualib.h>
#include <luv/luv.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static char host_key;        /* registry key of the host pointer */
static char exit_sentinel;   /* error value of os.exit() */
static char log_handler_key; /* registry key of the Lua log handler */
static char teardown_key;    /* registry key of the Lua teardown function */

wr_host *wr_host_get(lua_State *L)
{
    wr_host *h;
    lua_pushlightuserdata(L, &host_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

uv_loop_t *wr_host_loop(lua_State *L)
{
    return &wr_host_get(L)->loop;
}

void wr_host_track(wr_host *h, wr_closable *c)
{
    c->next = h->closables.next;
    c->prev = &h->closables;
    h->closables.next->prev = c;
    h->closables.next = c;
}

void wr_host_untrack(wr_closable *c)
{
    if (!c->next) return;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

int wr_lua_is_exit(lua_State *L, int idx)
{
    return lua_touserdata(L, idx) == &exit_sentinel;
}

int wr_lua_raise_exit(lua_State *L)
{
    lua_pushlightuserdata(L, &exit_sentinel);
    return lua_error(L);
}

static int traceback_handler(lua_State *L)
{
    if (wr_lua_is_exit(L, 1)) return 1;
    if (!lua_isstring(L, 1)) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1)) {
            lua_replace(L, 1);
        } else {
            lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
            lua_replace(L, 1);
        }
    }
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

int wr_lua_pcall(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs;
    int status;

    lua_pushcfunction(L, traceback_handler);
    lua_insert(L, base);
    status = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (status != 0 && wr_lua_is_exit(L, -1)) {
        lua_pop(L, 1);
        return 0; /* teardown was started by os.exit itself */
    }
    return status;
}

void wr_lua_report(lua_State *L, const char *what)
{
    wr_host *h = wr_host_get(L);
    const char *msg = lua_tostring(L, -1);
    if (h) h->lua_errors++;
    wr_error("%s: %s", what, msg ? msg : "(no message)");
    lua_pop(L, 1);
}

/* luv calls this for every callback: protected, traced, logged, never exits. */
static int luv_callback_runner(lua_State *L, int nargs, int nresults, int flags)
{
    int top = lua_gettop(L) - nargs - 1;
    int status = wr_lua_pcall(L, nargs, nresults);
    if (status != 0) {
        wr_lua_report(L, "error in luv callback");
        return -status;
    }
    return lua_gettop(L) - top;
}

/* Routes C log records to the Lua logger (warren.log) when one is installed. */
static void host_log_sink(enum wr_log_level level, const char *msg, void *ud)
{
    wr_host *h = ud;
    lua_State *T = h->callback_thread;

    if (!h->L || h->in_log_sink) goto plain;
    lua_pushlightuserdata(T, &log_handler_key);
    lua_rawget(T, LUA_REGISTRYINDEX);
    if (!lua_isfunction(T, -1)) {
        lua_pop(T, 1);
        goto plain;
    }
    h->in_log_sink = 1;
    lua_pushstring(T, wr_log_level_name(level));
    lua_pushstring(T, msg);
    if (lua_pcall(T, 2, 0, 0) != 0) {
        fprintf(stderr, "warren: log handler failed: %s\n", lua_tostring(T, -1));
        lua_pop(T, 1);
        h->in_log_sink = 0;
        goto plain;
    }
    h->in_log_sink = 0;
    return;
plain:
    fprintf(stderr, "warren %s: %s\n", wr_log_level_name(level), msg);
}

static int l_set_log_handler(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushlightuserdata(L, &log_handler_key);
    lua_pushvalue(L, 1);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return 0;
}

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace", NULL};

static int l_set_log_level(lua_State *L)
{
    wr_log_set_level((enum wr_log_level)luaL_checkoption(L, 1, NULL, level_names));
    return 0;
}

static int l_log(lua_State *L)
{
    enum wr_log_level level = (enum wr_log_level)luaL_checkoption(L, 1, NULL, level_names);
    wr_log(level, "%s", luaL_checkstring(L, 2));
    return 0;
}

static int l_set_teardown(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushlightuserdata(L, &teardown_key);
    lua_pushvalue(L, 1);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return 0;
}

static int l_exit(lua_State *L)
{
    wr_host_teardown(wr_host_get(L), (int)luaL_optinteger(L, 1, 0));
    return 0;
}

/* os.exit(code) stops the running code too: it tears down and unwinds with a sentinel that the
 * task runner and wr_lua_pcall swallow. */
static int l_os_exit(lua_State *L)
{
    int code = lua_isboolean(L, 1) ? (lua_toboolean(L, 1) ? 0 : 1) : (int)luaL_optinteger(L, 1, 0);
    wr_host_teardown(wr_host_get(L), code);
    return wr_lua_raise_exit(L);
}

static int l_set_exit_code(lua_State *L)
{
    wr_host *h = wr_host_get(L);
    if (!h->torn_down) h->exit_code = (int)luaL_checkinteger(L, 1);
    return 0;
}

static int l_exiting(lua_State *L)
{
    lua_pushboolean(L, wr_host_get(L)->torn_down);
    return 1;
}

static int l_errors(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)wr_host_get(L)->lua_errors);
    return 1;
}

static const luaL_Reg host_funcs[] = {
    {"set_log_handler", l_set_log_handler},
    {"set_log_level", l_set_log_level},
    {"log", l_log},
    {"set_teardown", l_set_teardown},
    {"exit", l_exit},
    {"set_exit_code", l_set_exit_code},
    {"exiting", l_exiting},
    {"lua_errors", l_errors},
    {NULL, NULL},
};

void wr_bind_host(lua_State *L)
{
    luaL_register(L, NULL, host_funcs);
}

static int file_exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* The Lua library sits at <exe dir>/../share/warren/lua once installed, and in the source tree
 * for a binary run from its build directory. WARREN_LUA_DIR overrides both. */
static void find_lua_dir(char *out, size_t size)
{
    char exe[4096], probe[4200];
    size_t len = sizeof exe;
    const char *env = getenv("WARREN_LUA_DIR");

    if (env && *env) {
        snprintf(out, size, "%s", env);
        return;
    }
    if (uv_exepath(exe, &len) == 0) {
        char *slash = strrchr(exe, '/');
        int n;
        if (slash) *slash = '\0';
        n = snprintf(out, size, "%s/%s", exe, WR_LUA_RELATIVE_DIR);
        if (n > 0 && (size_t)n < size &&
            snprintf(probe, sizeof probe, "%s/warren/cli.lua", out) < (int)sizeof probe &&
            file_exists(probe))
            return;
    }
    snprintf(out, size, "%s", WR_LUA_SOURCE_DIR);
}

static void set_package_path(lua_State *L)
{
    char dir[4096];
    find_lua_dir(dir, sizeof dir);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_pushstring(L, dir);
    lua_setfield(L, -2, "warren_dir"); /* package.warren_dir: where the library was found */
    lua_pop(L, 1);
}

static void open_luv(lua_State *L, uv_loop_t *loop)
{
    luv_set_loop(L, loop);
    luv_set_callback(L, luv_callback_runner);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    luaopen_luv(L);
    lua_setfield(L, -2, "luv");
    lua_pop(L, 2);
}

/* A backlog (stalled streams, a burst) leaves freed chunks that malloc keeps; once at least this
 * much is gone, it goes back to the system. The same timer watches the descriptor limit. */
#define TRIM_MIN_FREED (1024u * 1024) /* a soak of 5,000 small streams frees a few MiB */
#define TRIM_EVERY_MS  2000
#define FD_LOW_LIMIT   1024  /* below this many descriptors, say so once */
#define FD_WARN_MS     30000 /* at most one warning about running out this often */

/* Descriptors are the first thing a flood or a crowd uses up, and libuv then drops new
 * connections at accept without telling anyone: the operator must learn it from the log. The
 * lowest free descriptor number says, at the cost of one fcntl, whether nearly all are taken. */
static void check_descriptors(wr_host *h)
{
    struct rlimit rl;
    uint64_t now = uv_now(&h->loop);
    int fd;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return;
    if (!h->fd_limit_reported && rl.rlim_cur < FD_LOW_LIMIT) {
        h->fd_limit_reported = 1;
        wr_warn("only %llu file descriptors allowed (ulimit -n): each tunnelled connection takes "
                "one or two, so this process serves about %llu at once at most",
                (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_cur / 2);
    }
    if (h->fd_warned_ms && now - h->fd_warned_ms < FD_WARN_MS) return;
    fd = fcntl(uv_backend_fd(&h->loop), F_DUPFD_CLOEXEC, 0);
    if (fd < 0 && errno != EMFILE) return;
    if (fd >= 0) {
        close(fd);
        if ((rlim_t)fd < rl.rlim_cur / 10 * 9) return;
    }
    h->fd_warned_ms = now;
    wr_warn("too many open files: %s of the %llu file descriptors allowed (ulimit -n) are in use; "
            "new connections are dropped at accept until some close",
            fd < 0 ? "all" : "nearly all", (unsigned long long)rl.rlim_cur);
}

static void trim_cb(uv_timer_t *t)
{
    wr_buf_release_memory(TRIM_MIN_FREED);
    check_descriptors(t->data);
}

/* Servers need descriptors: take the hard limit when the soft one is lower, as nginx and Go do. */
static void raise_descriptor_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* math.random starts from the same seed in every process, so every client of a restarted relay
 * drew the same reconnect jitter and they all came back at once. */
static void seed_math_random(lua_State *L)
{
    uint64_t seed = 0;
    wr_random(&seed, sizeof seed);
    lua_getglobal(L, "math");
    lua_getfield(L, -1, "randomseed");
    lua_pushnumber(L, (lua_Number)(seed >> 11)); /* 53 bits: exact in a double */
    lua_call(L, 1, 0);
    lua_pop(L, 1);
}

int wr_host_init(wr_host *h)
{
    lua_State *L;

    memset(h, 0, sizeof *h);
    h->closables.next = h->closables.prev = &h->closables;
    if (uv_loop_init(&h->loop) != 0) return -1;
    uv_check_init(&h->loop, &h->late_closer);
    h->late_closer.data = h;
    uv_unref((uv_handle_t *)&h->late_closer);
    raise_descriptor_limit();
    uv_timer_init(&h->loop, &h->trimmer);
    h->trimmer.data = h;
    uv_timer_start(&h->trimmer, trim_cb, TRIM_EVERY_MS, TRIM_EVERY_MS);
    uv_unref((uv_handle_t *)&h->trimmer);
    L = luaL_newstate();
    if (!L) return -1;
    h->L = L;
    luaL_openlibs(L);
    seed_math_random(L);

    lua_pushlightuserdata(L, &host_key);
    lua_pushlightuserdata(L, h);
    lua_rawset(L, LUA_REGISTRYINDEX);
    h->callback_thread = lua_newthread(L);
    h->callback_thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    wr_log_set_sink(host_log_sink, h);

    lua_getglobal(L, "os");
    lua_pushcfunction(L, l_os_exit);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);

    wr_task_init(L);
    open_luv(L, &h->loop);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, wr_luaopen_core);
    lua_setfield(L, -2, "warren.core");
    lua_pop(L, 2);
    set_package_path(L);
    return 0;
}

/* The first task: the command line, in Lua. Its number result is the exit code. */
static const char bootstrap[] = "local code = require('warren.cli').main(...)\n"
                                "if type(code) == 'number' then\n"
                                "  require('warren.core').set_exit_code(code)\n"
                                "end\n";

int wr_host_run(wr_host *h, int argc, char **argv)
{
    lua_State *L = h->L;
    wr_task *task;
    int i;

    if (luaL_loadbuffer(L, bootstrap, sizeof bootstrap - 1, "=warren") != 0) {
        wr_lua_report(L, "bootstrap");
        return h->exit_code = 1;
    }
    for (i = 1; i < argc; i++)
        lua_pushstring(L, argv[i]);
    task = wr_task_new(L, argc - 1);
    lua_pop(L, 1); /* the task's handle */
    wr_task_exit_on_error(task, 1);
    wr_task_start(task);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    return h->exit_code;
}

static void close_tracked(wr_host *h)
{
    while (h->closables.next != &h->closables) {
        wr_closable *c = h->closables.next;
        wr_host_untrack(c);
        c->close(c);
    }
}

/* Code still running when the teardown starts (the rest of a chunk that called exit, a
 * shutdown handler) may create handles; each loop turn closes them, once they are built. */
static void close_late(uv_check_t *check)
{
    close_tracked(check->data);
}

void wr_host_teardown(wr_host *h, int exit_code)
{
    lua_State *T = h->callback_thread;

    if (h->torn_down) return;
    h->torn_down = 1;
    h->exit_code = exit_code;

    /* Lua-side handles (luv) first: their callbacks may still reference C objects. */
    lua_pushlightuserdata(T, &teardown_key);
    lua_rawget(T, LUA_REGISTRYINDEX);
    if (lua_isfunction(T, -1)) {
        if (wr_lua_pcall(T, 0, 0) != 0) wr_lua_report(T, "teardown");
    } else {
        lua_pop(T, 1);
    }
    close_tracked(h);
    uv_check_start(&h->late_closer, close_late);
    wr_task_cancel_all(h->L);
}

static void close_stray(uv_handle_t *handle, void *arg)
{
    int *count = arg;
    if (!uv_is_closing(handle)) {
        (*count)++;
        uv_close(handle, NULL);
    }
}

int wr_host_close(wr_host *h)
{
    int stray = 0;

    wr_host_teardown(h, h->exit_code);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    close_tracked(h);
    uv_close((uv_handle_t *)&h->late_closer, NULL);
    uv_close((uv_handle_t *)&h->trimmer, NULL);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    uv_walk(&h->loop, close_stray, &stray);
    if (stray) wr_warn("%d handle(s) were still open at exit", stray);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    wr_log_set_sink(NULL, NULL);
    lua_close(h->L);
    h->L = NULL;
    uv_run(&h->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&h->loop) != 0) fprintf(stderr, "warren: loop still busy at exit\n");
    return h->exit_code;
}
