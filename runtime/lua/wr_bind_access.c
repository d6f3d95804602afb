/* core.access_log{...} and core.access_log_stats(): the process's access log (wr_access_log). */
#include "wr_access_log.h"
#include "wr_bind.h"
#include "wr_bind_tunnel.h"
#include "wr_host.h"

#include <string.h>

/* core.access_log{path = FILE | "-", format = "text" | "json", buffer = bytes} -> true | nil,
 * err; core.access_log(false) stops it. Records then come from every tunnel of the process. */
static int l_access_log(lua_State *L)
{
    const char *path, *format;
    enum wr_access_format fmt;
    lua_Integer buffer;
    int rc;
    if (lua_isboolean(L, 1) && !lua_toboolean(L, 1)) {
        wr_access_log_close();
        lua_pushboolean(L, 1);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    path = wr_opt_string(L, 1, "path", NULL);
    format = wr_opt_string(L, 1, "format", "text");
    buffer = wr_opt_integer(L, 1, "buffer", 0);
    if (!path || !*path) return luaL_error(L, "access_log: path is required (a file, or \"-\")");
    if (strcmp(format, "text") == 0)
        fmt = WR_ACCESS_TEXT;
    else if (strcmp(format, "json") == 0)
        fmt = WR_ACCESS_JSON;
    else
        return luaL_error(L, "access_log: format must be \"text\" or \"json\", not %s", format);
    if (buffer < 0 || buffer > (lua_Integer)1 << 30)
        return luaL_error(L, "access_log: bad buffer size");
    rc = wr_access_log_open(wr_host_loop(L), path, fmt, (size_t)buffer);
    if (rc != 0) return wr_push_uv_error(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.access_log_stats() -> {on, records, dropped, write_errors, bytes} */
static int l_access_log_stats(lua_State *L)
{
    wr_access_stats st;
    wr_access_log_get_stats(&st);
    lua_createtable(L, 0, 5);
    lua_pushboolean(L, wr_access_log_on());
    lua_setfield(L, -2, "on");
    wr_set_number(L, "records", (double)st.records);
    wr_set_number(L, "dropped", (double)st.dropped);
    wr_set_number(L, "write_errors", (double)st.write_errors);
    wr_set_number(L, "bytes", (double)st.bytes);
    return 1;
}

void wr_bind_access(lua_State *L)
{
    lua_pushcfunction(L, l_access_log);
    lua_setfield(L, -2, "access_log");
    lua_pushcfunction(L, l_access_log_stats);
    lua_setfield(L, -2, "access_log_stats");
}
