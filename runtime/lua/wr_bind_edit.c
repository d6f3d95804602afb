/* core.editline(): line editing on the terminal without blocking the loop. libedit's callback
 * interface is fed one character at a time from a uv_poll on stdin, so timers and tunnels keep
 * running while the prompt waits. libedit's readline layer is process-global: one editor. */
#include "wr_bind.h"
#include "wr_host.h"
#include "wr_task.h"

#include <editline/readline.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EDIT_MT "warren.editline"

typedef struct wr_editline {
    uv_poll_t poll;
    wr_closable link;
    void **box;
    char *history_path;
    wr_await *reader; /* the pending ed:read() */
    char *line;       /* completed line, handed over after libedit returns */
    int line_ready;   /* 1: line (NULL line = end of input) */
    int installed;    /* the libedit handler is installed */
} wr_editline;

static wr_editline *editor; /* the one editor, or NULL */

static void on_line(char *line)
{
    editor->line = line;
    editor->line_ready = 1;
}

static void editor_uninstall(wr_editline *ed)
{
    if (!ed->installed) return;
    uv_poll_stop(&ed->poll);
    rl_callback_handler_remove();
    ed->installed = 0;
}

static void deliver(wr_editline *ed, const char *line, const char *err)
{
    wr_await *aw = ed->reader;
    lua_State *co;
    ed->reader = NULL;
    if (!aw) return;
    co = wr_await_settle(aw);
    if (co) {
        if (line) {
            lua_pushstring(co, line);
            wr_await_resume(aw, 1);
        } else if (err) {
            lua_pushnil(co);
            lua_pushstring(co, err);
            wr_await_resume(aw, 2);
        } else {
            lua_pushnil(co);
            wr_await_resume(aw, 1);
        }
    }
    wr_await_release(aw);
}

static void stdin_readable(uv_poll_t *poll, int status, int events)
{
    wr_editline *ed = poll->data;
    char *line;

    rl_callback_read_char();
    if (!ed->line_ready) return;
    /* Stop editing while the line runs, so its output is not mixed with a live prompt. */
    editor_uninstall(ed);
    line = ed->line;
    ed->line = NULL;
    ed->line_ready = 0;
    if (line && *line) add_history(line);
    deliver(ed, line, NULL);
    free(line);
}

static void read_aborted(wr_await *aw)
{
    if (editor && editor->reader == aw) {
        editor->reader = NULL;
        editor_uninstall(editor);
        wr_await_release(aw);
    }
}

static void editor_closed(uv_handle_t *h)
{
    free(h->data);
}

static void editor_close(wr_editline *ed)
{
    wr_host_untrack(&ed->link);
    wr_box_detach(&ed->box);
    editor_uninstall(ed);
    deliver(ed, NULL, "closed");
    if (ed->history_path) {
        write_history(ed->history_path);
        free(ed->history_path);
    }
    editor = NULL;
    uv_close((uv_handle_t *)&ed->poll, editor_closed);
}

static void editor_close_tracked(wr_closable *c)
{
    editor_close((wr_editline *)((char *)c - offsetof(wr_editline, link)));
}

/* core.editline([history_path]) -> editor | nil, err */
static int l_editline(lua_State *L)
{
    const char *history = luaL_optstring(L, 1, NULL);
    wr_editline *ed;
    int rc;

    if (editor) return luaL_error(L, "core.editline: an editor is already open");
    if (!isatty(0)) {
        lua_pushnil(L);
        lua_pushliteral(L, "stdin is not a terminal");
        return 2;
    }
    ed = calloc(1, sizeof *ed);
    if (!ed) return luaL_error(L, "core.editline: out of memory");
    rc = uv_poll_init(wr_host_loop(L), &ed->poll, 0);
    if (rc != 0) {
        free(ed);
        return wr_push_uv_error(L, rc);
    }
    ed->poll.data = ed;
    rl_catch_signals = 0; /* signals are the loop's, not libedit's */
    rl_initialize();
    using_history();
    stifle_history(1000);
    if (history) {
        ed->history_path = strdup(history);
        read_history(history);
    }
    ed->link.close = editor_close_tracked;
    wr_host_track(wr_host_get(L), &ed->link);
    editor = ed;
    ed->box = wr_box_new(L, ed, EDIT_MT);
    return 1;
}

/* ed:read(prompt) -> line | nil (end of input) | nil, "interrupted" */
static int l_edit_read(lua_State *L)
{
    wr_editline *ed = wr_box_get(L, 1, EDIT_MT);
    const char *prompt = luaL_optstring(L, 2, "> ");
    wr_await *aw;

    if (!ed) return wr_push_closed(L);
    if (ed->reader) return luaL_error(L, "ed:read: a read is already pending");
    aw = wr_await_begin(L, "ed:read");
    aw->abort = read_aborted;
    aw->refs++;
    ed->reader = aw;
    rl_callback_handler_install(prompt, (rl_vcpfunc_t *)on_line);
    ed->installed = 1;
    uv_poll_start(&ed->poll, UV_READABLE, stdin_readable);
    return wr_await_yield(L, aw);
}

/* ed:interrupt(): Ctrl-C at the prompt; the pending read returns nil, "interrupted" and the
 * partial line is dropped. */
static int l_edit_interrupt(lua_State *L)
{
    wr_editline *ed = wr_box_get(L, 1, EDIT_MT);
    if (!ed) return wr_push_closed(L);
    if (ed->installed) {
        editor_uninstall(ed);
        fputs("^C\n", stdout);
        fflush(stdout);
    }
    deliver(ed, NULL, "interrupted");
    lua_pushboolean(L, 1);
    return 1;
}

static int l_edit_close(lua_State *L)
{
    wr_editline *ed = wr_box_get(L, 1, EDIT_MT);
    if (!ed) return wr_push_closed(L);
    editor_close(ed);
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg edit_methods[] = {
    {"read", l_edit_read},
    {"interrupt", l_edit_interrupt},
    {"close", l_edit_close},
    {NULL, NULL},
};

void wr_bind_edit(lua_State *L)
{
    wr_bind_class(L, EDIT_MT, edit_methods, l_edit_close, "editline", l_editline);
}
