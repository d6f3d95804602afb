/* Registration of the C bindings that make up the `warren.core` module. Each wr_bind_* adds its
 * functions to the module table at the top of the stack. */
#ifndef WR_BIND_H
#define WR_BIND_H

#include <lauxlib.h>
#include <lua.h>

int wr_luaopen_core(lua_State *L);

void wr_bind_host(lua_State *L);
void wr_bind_timer(lua_State *L);
void wr_bind_edit(lua_State *L);
void wr_bind_versions(lua_State *L);
void wr_bind_key(lua_State *L);
void wr_bind_session(lua_State *L);
void wr_bind_forward(lua_State *L);
void wr_bind_dynamic(lua_State *L);
void wr_bind_relay(lua_State *L);
void wr_bind_ctl(lua_State *L);
void wr_bind_channel(lua_State *L);
void wr_bind_tls(lua_State *L);
void wr_bind_unix(lua_State *L);
void wr_bind_access(lua_State *L);

/* Boxes: Lua holds a pointer to a C-owned object, and the object keeps a raw pointer back to
 * its box. Whichever goes first clears the other: closing the object empties the box (methods
 * then return nil, "closed"); collecting the box clears the object's back-pointer. */
void **wr_box_new(lua_State *L, void *object, const char *metatable);
void *wr_box_get(lua_State *L, int idx, const char *metatable);
void wr_box_detach(void ***backref);
int wr_push_closed(lua_State *L);
/* Registers a handle type: metatable `name` with `methods` as __index and `gc` as __gc (may be
 * NULL), and the module function `ctor_name` (module table at the top of the stack; no function
 * when ctor is NULL). */
void wr_bind_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                   const char *ctor_name, lua_CFunction ctor);
int wr_push_uv_error(lua_State *L, int err);

#endif
