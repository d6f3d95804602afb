/* Pieces shared by the tunnel bindings (sessions, relays, forwards). */
#ifndef WR_BIND_TUNNEL_H
#define WR_BIND_TUNNEL_H

#include "wr_relay.h"
#include "wr_session.h"

#include <lua.h>

#define SESSION_MT "warren.session"
/* Streams per session unless a script says otherwise: one session carries every connection of
 * a client, so the mux default (sized for one application) is too small here. */
#define WR_TUNNEL_MAX_STREAMS 8192

typedef struct wr_lsession wr_lsession;
/* The live, ready session behind a handle, or NULL. */
wr_session_t *wr_lsession_get(wr_lsession *ls);

/* Option readers for a table argument at idx. */
const char *wr_opt_string(lua_State *L, int idx, const char *name, const char *def);
lua_Integer wr_opt_integer(lua_State *L, int idx, const char *name, lua_Integer def);
/* A registry ref to an optional function field, or LUA_NOREF. */
int wr_opt_function_ref(lua_State *L, int idx, const char *name);
void wr_relay_opts_from(lua_State *L, int idx, wr_relay_opts_t *out);
void wr_set_number(lua_State *L, const char *name, double value);

/* Calls the on_close hook fn_ref(info) with {target, bytes_up, bytes_down, duration_ms, reason,
 * error}: up is from the local side towards the far side. */
void wr_call_close_hook(lua_State *L, int fn_ref, const char *target, uint64_t up, uint64_t down,
                        const wr_relay_result_t *res);

#endif
