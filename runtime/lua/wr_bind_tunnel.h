/* Pieces shared by the tunnel bindings (sessions, relays, forwards). */
#ifndef WR_BIND_TUNNEL_H
#define WR_BIND_TUNNEL_H

#include "wr_kcp.h"
#include "wr_relay.h"
#include "wr_session.h"

#include <lua.h>

#define SESSION_MT "warren.session"
/* Streams per session unless a script says otherwise: one session carries every connection of
 * a client, so the mux default (sized for one application) is too small here. */
#define WR_TUNNEL_MAX_STREAMS 8192

typedef struct wr_lsession wr_lsession;
/* The TLS context of a core.tls_server / core.tls_client handle at idx (raises otherwise). */
struct wr_tls_ctx;
struct wr_tls_ctx *wr_tls_ctx_check(lua_State *L, int idx);
/* The live, ready session behind a handle, or NULL. */
wr_session_t *wr_lsession_get(wr_lsession *ls);
/* The session a listener's connections go through: the handle and the registry reference that
 * keeps it alive (LUA_NOREF when none). Forwards and proxies swap it on each reconnect. */
typedef struct wr_session_slot {
    wr_lsession *session;
    int ref;
} wr_session_slot;
/* Sets the slot to the session handle at idx (nil/none empties it); raises on another type. */
void wr_session_slot_set(lua_State *L, wr_session_slot *slot, int idx);

/* Relay side: pushes the handle of a relay's session, creating it into *slot the first time (it
 * stays anchored until wr_lsession_ended). The relay keeps owning the session. */
void wr_lsession_wrap(lua_State *L, wr_lsession **slot, wr_session_t *s, const char *peer);
/* Relay side: the wrapped session ended (runs the on_closed callbacks, drops the anchor). */
void wr_lsession_ended(wr_lsession *ls, const char *reason);

/* Takes a ready stream endpoint and pushes a channel handle on it (wr_bind_channel.c). 0 or
 * UV_ENOMEM (the endpoint is then still the caller's). */
int wr_channel_push(lua_State *L, wr_endpoint_t *ep);
/* Control values (wr_bind_ctl.c): pushes the framed encoding of the value at idx (raises on
 * values that cannot be encoded); pushes the value decoded from buf, or returns why not
 * (pushing nothing). */
void wr_ctl_push_encoded(lua_State *L, int idx);
const char *wr_ctl_push_value(lua_State *L, const uint8_t *buf, size_t len);
/* A TCP endpoint's peer as wr_addr_format writes it ("?" when unknown). */
void wr_format_peer(wr_endpoint_t *ep, char *out, size_t size);

/* Option readers for a table argument at idx. */
const char *wr_opt_string(lua_State *L, int idx, const char *name, const char *def);
lua_Integer wr_opt_integer(lua_State *L, int idx, const char *name, lua_Integer def);
int wr_opt_boolean(lua_State *L, int idx, const char *name); /* absent = false */
/* A registry ref to an optional function field, or LUA_NOREF. */
int wr_opt_function_ref(lua_State *L, int idx, const char *name);
void wr_relay_opts_from(lua_State *L, int idx, wr_relay_opts_t *out);
void wr_set_number(lua_State *L, const char *name, double value);
/* KCP options: kcp_mode= ("normal", "fast", "fast2", "fast3"; default "fast"), kcp_mtu=,
 * kcp_sndwnd=, kcp_rcvwnd= (segments). Raises on a bad value. */
void wr_kcp_opts_from(lua_State *L, int idx, wr_kcp_config *out);
/* Sets the KCP counters as fields of the table on top. */
void wr_set_kcp_stats(lua_State *L, const wr_kcp_stats *st);

/* Calls the on_close hook fn_ref(info) with {target, peer (when given), bytes_up, bytes_down,
 * duration_ms, reason, error}: up is from the local side towards the far side. */
void wr_call_close_hook(lua_State *L, int fn_ref, const char *target, const char *peer, uint64_t up,
                        uint64_t down, const wr_relay_result_t *res);

#endif
