/* core.relay_server{...}: binds the relay's front door and server (wr_front, wr_server, in the
 * core) to a TCP listener and to Lua. The front door classifies each connection; the server
 * admits sessions and dials stream targets; this file only turns the server's callbacks into
 * hook calls: the destination policy (on_open), the end of a dialled stream (on_close) and
 * control channels (on_channel, for the reverse-tunnel registry). */
#include "wr_addr.h"
#include "wr_bind.h"
#include "wr_bind_tunnel.h"
#include "wr_carrier.h"
#include "wr_front.h"
#include "wr_hc_server.h"
#include "wr_host.h"
#include "wr_io.h"
#include "wr_kcp_endpoint.h"
#include "wr_log.h"
#include "wr_server.h"
#include "wr_site.h"
#include "wr_site_proxy.h"
#include "wr_tcp_endpoint.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define RELAY_MT "warren.relay"
/* Per address by default; the total is the server's default. */
#define MAX_UNAUTHENTICATED_PER_ADDRESS 64
/* Failed handshakes one address may cause per minute before its unauthenticated connections are
 * the first to go at the caps (never refused: a real client may share the address). */
#define MAX_FAILED_HANDSHAKES_DEFAULT 32

typedef struct wr_lrelay {
    wr_closable link;
    lua_State *L;
    wr_listener_t *listener; /* NULL once closed */
    wr_server_t *server;
    wr_front_t *front;               /* NULL once closed */
    wr_site_t *site;                 /* the fallback site, or NULL */
    wr_site_proxy_t *site_proxy;     /* or the pass-through to a real one */
    wr_hc_server_t *hc;              /* the HTTP carrier's sessions */
    wr_kcp_listener_t *kcp;          /* the UDP port for KCP, or NULL */
    int kcp_on;                      /* kcp = true was asked for */
    wr_kcp_listener_stats kcp_final; /* its counters once it is closed */
    char congestion[32];             /* TCP_CONGESTION for accepted connections, or "" */
    int anchor_ref;
    int tls_ref; /* the TLS context's handle (the front door uses its context) */
    int on_open_ref, on_close_ref, on_channel_ref;
    int refs; /* listener, handle */
} wr_lrelay;

static void relay_unref(wr_lrelay *r)
{
    if (--r->refs > 0) return;
    luaL_unref(r->L, LUA_REGISTRYINDEX, r->on_open_ref);
    luaL_unref(r->L, LUA_REGISTRYINDEX, r->on_close_ref);
    luaL_unref(r->L, LUA_REGISTRYINDEX, r->on_channel_ref);
    luaL_unref(r->L, LUA_REGISTRYINDEX, r->tls_ref);
    wr_server_free(r->server);
    free(r);
}

/* Pushes the Lua handle of a server session (made on first use; nil once the session ended
 * before Lua ever needed it). */
static void push_session(lua_State *L, wr_server_conn_t *conn)
{
    wr_lsession *handle = wr_server_conn_data(conn);
    wr_session_t *s = wr_server_conn_session(conn);
    if (!handle && !s) {
        lua_pushnil(L);
        return;
    }
    wr_lsession_wrap(L, &handle, s, wr_server_conn_peer(conn));
    wr_server_conn_set_data(conn, handle);
}

/* The destination policy: on_open(host, port, info) with info = {addresses = {...}, peer =
 * "client address", user = "the session's user", session = handle}; true, or false/nil plus a
 * reason. Errors deny. The whole call runs under lua_cpcall (which makes even its closure inside
 * the protection), so an allocation error while the arguments are built denies like any hook error.
 */
typedef struct policy_call {
    wr_lrelay *r;
    const wr_server_stream_info *info;
    const struct sockaddr_storage *addrs;
    int naddrs;
    int allowed;
    char *reason;
    size_t size;
} policy_call;

static int call_policy(lua_State *L)
{
    policy_call *a = lua_touserdata(L, 1);
    wr_hostport_t hp;
    const char *perr;
    char ip[64];
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->r->on_open_ref);
    wr_parse_hostport(a->info->target, 0, &hp, &perr); /* parsed once already: cannot fail */
    if (hp.host[0] == '\0') snprintf(hp.host, sizeof hp.host, "127.0.0.1");
    lua_pushstring(L, hp.host);
    lua_pushinteger(L, hp.port);
    lua_createtable(L, 0, 3);
    lua_createtable(L, a->naddrs, 0);
    for (int i = 0; i < a->naddrs; i++) {
        wr_addr_format((const struct sockaddr *)&a->addrs[i], 0, ip, sizeof ip);
        lua_pushstring(L, ip);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "addresses");
    lua_pushstring(L, a->info->peer);
    lua_setfield(L, -2, "peer");
    lua_pushstring(L, a->info->user);
    lua_setfield(L, -2, "user");
    push_session(L, a->info->conn);
    lua_setfield(L, -2, "session");
    if (wr_lua_pcall(L, 3, 2) != 0) {
        wr_lua_report(L, "relay on_open hook (denied)");
        return 0;
    }
    a->allowed = lua_toboolean(L, -2);
    if (!a->allowed && lua_isstring(L, -1)) snprintf(a->reason, a->size, "%s", lua_tostring(L, -1));
    return 0;
}

static int policy(wr_server_t *srv, const wr_server_stream_info *info,
                  const struct sockaddr_storage *addrs, int naddrs, char *reason, size_t size)
{
    wr_lrelay *r = wr_server_data(srv);
    policy_call call = {r, info, addrs, naddrs, 0, reason, size};
    if (lua_cpcall(r->L, call_policy, &call) != 0) {
        wr_lua_report(r->L, "relay on_open hook arguments (denied)");
        return -1;
    }
    return !call.allowed;
}

static void stream_done(wr_server_t *srv, const wr_server_stream_info *info, int dial_status,
                        const wr_relay_result_t *res)
{
    wr_lrelay *r = wr_server_data(srv);
    if (dial_status == 0)
        wr_call_close_hook(r->L, r->on_close_ref, info->target, info->peer, res->bytes_ab,
                           res->bytes_ba, res);
}

static void open_channel(wr_server_t *srv, wr_server_conn_t *conn, wr_stream_t *st)
{
    wr_lrelay *r = wr_server_data(srv);
    lua_State *L = r->L;
    if (r->on_channel_ref == LUA_NOREF) {
        wr_stream_reject(st, "denied: this relay takes no registrations");
        return;
    }
    if (wr_stream_accept(st) != 0 || wr_channel_push(L, wr_stream_endpoint(st)) != 0) {
        wr_endpoint_close(wr_stream_endpoint(st), WR_CLOSE_RESET);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->on_channel_ref);
    lua_insert(L, -2);
    push_session(L, conn);
    if (wr_lua_pcall(L, 2, 0) != 0) wr_lua_report(L, "relay on_channel hook");
}

static void conn_closed(wr_server_t *srv, wr_server_conn_t *conn, const char *why)
{
    wr_lsession_ended(wr_server_conn_data(conn), why);
}

static const wr_server_cbs relay_cbs = {.on_channel = open_channel,
                                        .policy = policy,
                                        .on_stream_done = stream_done,
                                        .on_conn_closed = conn_closed};

static void accepted(wr_listener_t *l, int status)
{
    wr_lrelay *r = wr_listener_data(l);
    struct sockaddr_storage peer;
    int len = sizeof peer;
    wr_endpoint_t *carrier;
    uv_tcp_t *tcp;

    if (status < 0) {
        wr_warn("relay accept failed: %s", uv_strerror(status));
        return;
    }
    if (wr_listener_accept(l, &tcp) != 0) return;
    if (r->congestion[0] && (status = wr_tcp_set_congestion(tcp, r->congestion)) != 0)
        wr_warn("relay: congestion control %s refused on a connection: %s", r->congestion,
                uv_strerror(status));
    memset(&peer, 0, sizeof peer);
    uv_tcp_getpeername(tcp, (struct sockaddr *)&peer, &len);
    carrier = wr_tcp_endpoint_new(tcp);
    if (!carrier) {
        wr_tcp_close_free(tcp);
        return;
    }
    wr_front_take(r->front, carrier, (struct sockaddr *)&peer);
}

/* Stops listening and ends every session (their streams end with them). */
static void relay_close(wr_lrelay *r)
{
    if (!r->listener) return;
    wr_host_untrack(&r->link);
    wr_listener_close(r->listener);
    r->listener = NULL;
    wr_front_free(r->front);
    r->front = NULL;
    /* The pass-through asks the HTTP carrier about requests: it goes first. */
    if (r->site_proxy) wr_site_proxy_free(r->site_proxy);
    r->site_proxy = NULL;
    wr_hc_server_free(r->hc);
    r->hc = NULL;
    if (r->kcp) {
        wr_kcp_listener_get_stats(r->kcp, &r->kcp_final);
        r->kcp_final.conversations = 0;
        wr_kcp_listener_close(r->kcp); /* its conversations end with the server's sessions */
        r->kcp = NULL;
    }
    if (r->site) wr_site_free(r->site);
    r->site = NULL;
    wr_server_close(r->server);
    luaL_unref(r->L, LUA_REGISTRYINDEX, r->anchor_ref);
    r->anchor_ref = LUA_NOREF;
    relay_unref(r);
}

/* The UDP port for KCP: the TCP listener's port number on the same address ("" and "*" are
 * every address, dual-stack where the host has IPv6). */
static int kcp_listen(wr_lrelay *r, uv_loop_t *loop, const char *host, const wr_kcp_config *cfg)
{
    struct sockaddr_storage ss;
    int port = wr_listener_port(r->listener), rc;
    if (host[0] == '\0' || strcmp(host, "*") == 0) {
        uv_ip6_addr("::", port, (struct sockaddr_in6 *)&ss);
        rc = wr_kcp_listen(loop, (struct sockaddr *)&ss, r->server, cfg, &r->kcp);
        if (rc != UV_EAFNOSUPPORT && rc != UV_EADDRNOTAVAIL) return rc;
        uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&ss);
    } else if (strcmp(host, "localhost") == 0) {
        uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)&ss);
    } else if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
               uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
        return UV_EINVAL;
    }
    return wr_kcp_listen(loop, (struct sockaddr *)&ss, r->server, cfg, &r->kcp);
}

static void relay_close_tracked(wr_closable *c)
{
    relay_close((wr_lrelay *)((char *)c - offsetof(wr_lrelay, link)));
}

static int take_site(void *ctx, wr_endpoint_t *ep, const char *already, size_t len)
{
    return wr_site_take(ctx, ep, already, len);
}

static int take_site_proxy(void *ctx, wr_endpoint_t *ep, const char *already, size_t len)
{
    return wr_site_proxy_take(ctx, ep, already, len);
}

static int hc_claims(void *data, const wr_http_head_t *req, const char *head, size_t len)
{
    (void)head;
    (void)len;
    return wr_hc_server_claims(data, req);
}

static void hc_take(void *data, wr_endpoint_t *ep, const char *already, size_t len)
{
    wr_hc_server_take(data, ep, NULL, already, len);
}

/* users = {{name = "alice", key = 32 bytes, max_sessions = N, max_streams = N (0 = no limit)}, ...}
 * at idx into an array kept by a userdata pushed on the stack (the strings stay in the table at
 * idx, which the caller keeps on the stack while it uses them). Raises on a malformed entry. */
static wr_server_user *check_users(lua_State *L, int idx, size_t *n)
{
    wr_server_user *users;
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = lua_objlen(L, idx);
    if (*n == 0) luaL_error(L, "relay users: at least one user");
    users = lua_newuserdata(L, *n * sizeof *users);
    for (size_t i = 0; i < *n; i++) {
        size_t len = 0;
        lua_Integer max;
        lua_rawgeti(L, idx, (int)i + 1);
        if (!lua_istable(L, -1)) luaL_error(L, "relay users: entry %d is not a table", (int)i + 1);
        lua_getfield(L, -1, "name");
        users[i].name = lua_tolstring(L, -1, &len);
        if (!users[i].name || len == 0 || len >= WR_USER_NAME_MAX)
            luaL_error(L, "relay users: entry %d: name must be 1-%d bytes", (int)i + 1,
                       WR_USER_NAME_MAX - 1);
        lua_getfield(L, -2, "key");
        users[i].psk = (const uint8_t *)lua_tolstring(L, -1, &len);
        if (!users[i].psk || len != 32)
            luaL_error(L, "relay users: user %s: key must be 32 bytes", users[i].name);
        lua_getfield(L, -3, "max_sessions");
        max = lua_isnil(L, -1) ? 0 : luaL_checkinteger(L, -1);
        if (max < 0 || max > UINT32_MAX)
            luaL_error(L, "relay users: user %s: bad max_sessions", users[i].name);
        users[i].max_sessions = (uint32_t)max;
        lua_getfield(L, -4, "max_streams");
        max = lua_isnil(L, -1) ? 0 : luaL_checkinteger(L, -1);
        if (max < 0 || max > UINT32_MAX)
            luaL_error(L, "relay users: user %s: bad max_streams", users[i].name);
        users[i].max_streams = (uint32_t)max;
        lua_pop(L, 5); /* the strings stay referenced by the entry, in the table at idx */
    }
    return users;
}

/* The HTTP carrier tags requests with a key of its own derived from each user's. */
static int hc_set_users(wr_lrelay *r, const wr_server_user *users, size_t n)
{
    const uint8_t **psks;
    int rc;
    if (!r->hc) return 0;
    psks = malloc(n * sizeof *psks);
    if (!psks) return UV_ENOMEM;
    for (size_t i = 0; i < n; i++)
        psks[i] = users[i].psk;
    rc = wr_hc_server_set_keys(r->hc, psks, n);
    free(psks);
    return rc;
}

/* core.relay_server{host=, port=, key= (the one user "default") or users= (check_users),
 * on_open=fn(host, port, info), on_close=fn(info), on_channel=fn(channel, session), window=,
 * session_buffer=, keepalive_ms=, write_cap=, idle_timeout_ms=, probe_close_ms=,
 * tls=core.tls_server{...} (TLS on the same port), site=DIR (the fallback web site: HTTP that is
 * not ours, and raw bytes outside TLS), or site_url= http://HOST:PORT[/prefix] (the same, passed to
 * a real web site), max_unauthenticated=, max_unauthenticated_per_address= (0 = only the total),
 * max_failed_handshakes= (per address per minute before its connections go first; 0 = no tally),
 * trusted_fronts={"ADDR[/BITS]", ...} (whose X-Forwarded-For / Forwarded name the user),
 * cipher="auto"|"aes-256-gcm"|"chacha20-poly1305" (the frame cipher clients may use),
 * kcp=true (KCP on the UDP port with the TCP port's number; kcp_mode=, kcp_mtu=, kcp_sndwnd=,
 * kcp_rcvwnd= tune it), congestion="bbr"|"cubic"|... (TCP_CONGESTION of accepted connections)}
 * -> relay | nil, err */
static int l_relay_server(lua_State *L)
{
    const char *host, *key;
    size_t keylen, nusers = 0;
    wr_server_user *users = NULL;
    lua_Integer port, probe_ms, max_unauth, max_unauth_addr, max_failed;
    wr_server_config cfg;
    wr_front_config front_cfg;
    wr_trusted_t trusted[64];
    size_t ntrusted = 0;
    const char *site_dir, *site_url;
    wr_server_cbs cbs;
    wr_kcp_config kcp_cfg;
    int kcp_on;
    const char *congestion;
    wr_lrelay *r;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    host = wr_opt_string(L, 1, "host", "");
    port = wr_opt_integer(L, 1, "port", 0);
    lua_getfield(L, 1, "key");
    key = lua_tolstring(L, -1, &keylen);
    lua_pop(L, 1);
    if (port < 0 || port > 65535) return luaL_error(L, "relay_server: bad port");
    lua_getfield(L, 1, "users"); /* stays on the stack: users points into it */
    if (!lua_isnil(L, -1)) {
        if (key) return luaL_error(L, "relay_server: give key or users, not both");
        users = check_users(L, lua_gettop(L), &nusers);
        key = (const char *)users[0].psk; /* the HTTP carrier's */
        keylen = 32;
    }
    if (!key || keylen != 32) return luaL_error(L, "relay_server: key must be 32 bytes");
    max_unauth = wr_opt_integer(L, 1, "max_unauthenticated", WR_SERVER_MAX_UNAUTHENTICATED_DEFAULT);
    max_unauth_addr =
        wr_opt_integer(L, 1, "max_unauthenticated_per_address", MAX_UNAUTHENTICATED_PER_ADDRESS);
    max_failed = wr_opt_integer(L, 1, "max_failed_handshakes", MAX_FAILED_HANDSHAKES_DEFAULT);
    if (max_unauth < 1 || max_unauth > 1000000 || max_unauth_addr < 0 || max_failed < 0)
        return luaL_error(L, "relay_server: bad unauthenticated-connection limits");
    lua_getfield(L, 1, "trusted_fronts");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        for (int i = 1;; i++) {
            const char *text;
            lua_rawgeti(L, -1, i);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                break;
            }
            text = lua_tostring(L, -1);
            if (ntrusted == sizeof trusted / sizeof trusted[0])
                return luaL_error(L, "relay_server: at most 64 trusted fronts");
            if (!text || wr_trusted_parse(text, &trusted[ntrusted]) != 0) {
                lua_pushnil(L);
                lua_pushfstring(L, "trusted front %s: not an address or ADDR/BITS",
                                text ? text : "(not a string)");
                return 2;
            }
            ntrusted++;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    kcp_on = wr_opt_boolean(L, 1, "kcp");
    congestion = wr_opt_string(L, 1, "congestion", NULL);
    rc = !congestion                ? 0
         : strlen(congestion) >= 32 ? UV_ENAMETOOLONG
                                    : wr_tcp_check_congestion(congestion);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "congestion control %s: the kernel refused it (%s)", congestion,
                        uv_strerror(rc));
        return 2;
    }
    if (kcp_on) wr_kcp_opts_from(L, 1, &kcp_cfg);

    memset(&cfg, 0, sizeof cfg);
    memset(&front_cfg, 0, sizeof front_cfg);
    front_cfg.max_pending = cfg.max_unauthenticated = (uint32_t)max_unauth;
    front_cfg.max_pending_per_addr = (uint32_t)max_unauth_addr;
    front_cfg.trusted = trusted;
    front_cfg.ntrusted = ntrusted;
    cfg.psk = users ? NULL : (const uint8_t *)key;
    cfg.users = users;
    cfg.nusers = nusers;
    cfg.session.window = (uint32_t)wr_opt_integer(L, 1, "window", 0);
    cfg.session.rx_limit = (size_t)wr_opt_integer(L, 1, "session_buffer", 0);
    cfg.session.keepalive_ms = (uint32_t)wr_opt_integer(L, 1, "keepalive_ms", 0);
    cfg.session.max_streams = (uint32_t)wr_opt_integer(L, 1, "max_streams", WR_TUNNEL_MAX_STREAMS);
    cfg.session.stream_high_water = (size_t)wr_opt_integer(L, 1, "write_cap", 0);
    cfg.session.cipher = wr_hs_cipher_from_name(wr_opt_string(L, 1, "cipher", "auto"));
    if (cfg.session.cipher < 0)
        return luaL_error(L, "relay_server: cipher must be auto, aes-256-gcm or chacha20-poly1305");
    probe_ms = wr_opt_integer(L, 1, "probe_close_ms", 0);
    cfg.session.probe_close_min_ms = cfg.session.probe_close_max_ms = (uint32_t)probe_ms;
    wr_relay_opts_from(L, 1, &cfg.relay);
    cfg.max_unauthenticated_per_address = (uint32_t)max_unauth_addr;
    cfg.max_failed_handshakes = (uint32_t)max_failed;

    r = calloc(1, sizeof *r);
    if (!r) return luaL_error(L, "relay_server: out of memory");
    r->L = wr_host_get(L)->L;
    r->anchor_ref = r->on_open_ref = r->on_close_ref = r->on_channel_ref = LUA_NOREF;
    r->tls_ref = LUA_NOREF;
    cbs = relay_cbs;
    lua_getfield(L, 1, "on_open");
    if (lua_isnil(L, -1)) cbs.policy = NULL; /* no hook: no Lua on the dial path at all */
    lua_pop(L, 1);
    r->server = wr_server_new(wr_host_loop(L), &cfg, &cbs, r);
    if (!r->server) {
        free(r);
        return luaL_error(L, "relay_server: cannot set up the server");
    }
    front_cfg.server = r->server;
    lua_getfield(L, 1, "tls");
    if (!lua_isnil(L, -1)) front_cfg.tls = wr_tls_ctx_check(L, -1);
    lua_pop(L, 1);
    site_dir = wr_opt_string(L, 1, "site", NULL);
    if (site_dir) {
        char *err = NULL;
        r->site = wr_site_new(wr_host_loop(L), site_dir, &err);
        if (!r->site) {
            lua_pushnil(L);
            lua_pushfstring(L, "fallback site %s: %s", site_dir, err ? err : "cannot serve it");
            free(err);
            wr_server_free(r->server);
            free(r);
            return 2;
        }
        front_cfg.site.take = take_site;
        front_cfg.site.ctx = r->site;
    }
    {
        wr_hc_server_config hc_cfg = {
            .server = r->server,
            .psk = (const uint8_t *)key,
            .site = front_cfg.site,
            .down_max = (size_t)wr_opt_integer(L, 1, "write_cap", 0),
        };
        r->hc = wr_hc_server_new(wr_host_loop(L), &hc_cfg);
        if (r->hc && users && hc_set_users(r, users, nusers) != 0) {
            wr_hc_server_free(r->hc);
            r->hc = NULL; /* reported below, as out of memory */
        }
        front_cfg.hc = r->hc;
    }
    site_url = site_dir ? NULL : wr_opt_string(L, 1, "site_url", NULL);
    if (site_url && r->hc) {
        char *err = NULL;
        /* Requests of the HTTP carrier may follow a visitor's on one connection (a CDN's). */
        wr_site_proxy_config pcfg = {
            .url = site_url, .is_ours = hc_claims, .take = hc_take, .data = r->hc};
        r->site_proxy = wr_site_proxy_new(wr_host_loop(L), &pcfg, &err);
        if (!r->site_proxy) {
            lua_pushnil(L);
            lua_pushfstring(L, "fallback site %s: %s", site_url, err ? err : "out of memory");
            free(err);
            wr_hc_server_free(r->hc);
            wr_server_free(r->server);
            free(r);
            return 2;
        }
        front_cfg.site.take = take_site_proxy;
        front_cfg.site.ctx = r->site_proxy;
        wr_hc_server_set_site(r->hc, front_cfg.site);
    }
    r->front = r->hc ? wr_front_new(wr_host_loop(L), &front_cfg) : NULL;
    rc = r->front ? wr_listen(wr_host_loop(L), host, (uint16_t)port, 0, accepted, r, &r->listener)
                  : UV_ENOMEM;
    if (rc == 0 && kcp_on && (rc = kcp_listen(r, wr_host_loop(L), host, &kcp_cfg)) != 0) {
        wr_listener_close(r->listener);
        r->listener = NULL;
    }
    r->kcp_on = kcp_on;
    if (congestion) snprintf(r->congestion, sizeof r->congestion, "%s", congestion);
    if (rc != 0) {
        if (r->front) wr_front_free(r->front);
        if (r->site_proxy) wr_site_proxy_free(r->site_proxy);
        if (r->hc) wr_hc_server_free(r->hc);
        if (r->site) wr_site_free(r->site);
        wr_server_free(r->server);
        free(r);
        return wr_push_uv_error(L, rc);
    }
    if (front_cfg.tls) {
        lua_getfield(L, 1, "tls");
        r->tls_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    r->on_open_ref = wr_opt_function_ref(L, 1, "on_open");
    r->on_close_ref = wr_opt_function_ref(L, 1, "on_close");
    r->on_channel_ref = wr_opt_function_ref(L, 1, "on_channel");
    r->refs = 2; /* listener + handle */
    r->link.close = relay_close_tracked;
    wr_host_track(wr_host_get(L), &r->link);
    wr_box_new(L, r, RELAY_MT);
    lua_pushvalue(L, -1);
    r->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static wr_lrelay *check_relay(lua_State *L)
{
    return *(wr_lrelay **)luaL_checkudata(L, 1, RELAY_MT);
}

static int l_relay_port(lua_State *L)
{
    wr_lrelay *r = check_relay(L);
    if (!r->listener) return wr_push_closed(L);
    lua_pushinteger(L, wr_listener_port(r->listener));
    return 1;
}

static int l_relay_stats(lua_State *L)
{
    wr_lrelay *r = check_relay(L);
    wr_server_stats st;
    wr_front_stats fst = {0};
    wr_server_get_stats(r->server, &st);
    if (r->front) wr_front_get_stats(r->front, &fst);
    lua_createtable(L, 0, 22);
    wr_set_number(L, "sessions_active", st.sessions_active);
    wr_set_number(L, "sessions_total", (double)st.sessions_total);
    wr_set_number(L, "streams_active", st.streams_active);
    wr_set_number(L, "streams_total", (double)st.streams_total);
    wr_set_number(L, "streams_denied", (double)st.streams_denied);
    wr_set_number(L, "dials_failed", (double)st.dials_failed);
    wr_set_number(L, "bytes_up", (double)st.bytes_up);
    wr_set_number(L, "bytes_down", (double)st.bytes_down);
    wr_set_number(L, "unauthenticated", st.unauthenticated);
    wr_set_number(L, "unauthenticated_failed", st.unauthenticated_failed);
    wr_set_number(L, "dropped_unauthenticated", (double)st.dropped_unauthenticated);
    wr_set_number(L, "dropped_per_address", (double)st.dropped_per_address);
    wr_set_number(L, "handshakes_ok", (double)st.handshakes_ok);
    wr_set_number(L, "handshakes_failed", (double)st.handshakes_failed);
    lua_createtable(L, 0, WR_HSF_KINDS); /* handshake_failures = {key = N, replay = N, ...} */
    for (int i = 0; i < WR_HSF_KINDS; i++) {
        lua_pushnumber(L, (double)st.handshakes_failed_by[i]);
        lua_setfield(L, -2, wr_hs_failure_name(i));
    }
    lua_setfield(L, -2, "handshake_failures");
    wr_set_number(L, "front_pending", fst.pending);
    wr_set_number(L, "front_http", (double)fst.http);
    wr_set_number(L, "front_timeouts", (double)fst.timeouts);
    wr_set_number(L, "front_dropped", (double)fst.dropped);
    wr_set_number(L, "front_tls", (double)fst.tls);
    wr_set_number(L, "front_tls_failed", (double)fst.tls_failed);
    wr_set_number(L, "front_site", (double)fst.site);
    wr_set_number(L, "front_websocket", (double)fst.websocket);
    wr_set_number(L, "front_forwarded", (double)fst.forwarded);
    wr_set_number(L, "front_http_carrier", (double)fst.http_carrier);
    if (r->hc) {
        wr_hc_server_stats hst;
        wr_hc_server_get_stats(r->hc, &hst);
        wr_set_number(L, "http_sessions", (double)hst.sessions);
        wr_set_number(L, "http_sessions_active", (double)hst.active);
        wr_set_number(L, "http_requests", (double)hst.requests);
        wr_set_number(L, "http_polls", (double)hst.polls);
        wr_set_number(L, "http_streams", (double)hst.streams);
        wr_set_number(L, "http_duplicates", (double)hst.duplicates);
        wr_set_number(L, "http_up_bytes", (double)hst.up_bytes);
        wr_set_number(L, "http_down_bytes", (double)hst.down_bytes);
    }
    if (r->site_proxy) {
        wr_site_proxy_stats pst;
        wr_site_proxy_get_stats(r->site_proxy, &pst);
        wr_set_number(L, "site_requests", (double)pst.requests);
        wr_set_number(L, "site_dial_failed", (double)pst.dial_failed);
    }
    if (r->kcp_on) {
        wr_kcp_listener_stats kst = r->kcp_final;
        if (r->kcp) wr_kcp_listener_get_stats(r->kcp, &kst);
        wr_set_number(L, "kcp_conversations", kst.conversations);
        wr_set_number(L, "kcp_sessions", (double)kst.sessions);
        wr_set_number(L, "kcp_refused", (double)kst.refused);
        wr_set_number(L, "kcp_amplification_cap", (double)kst.amplification_cap);
        wr_set_number(L, "kcp_rebinds", (double)kst.rebinds);
        wr_set_number(L, "kcp_send_errors", (double)kst.send_errors);
        wr_set_kcp_stats(L, &kst.kcp);
    }
    return 1;
}

/* relay:set_users(users) (as in relay_server): sessions of users removed or given another key
 * end. -> the number of sessions ended | nil, err */
static int l_relay_set_users(lua_State *L)
{
    wr_lrelay *r = check_relay(L);
    size_t n;
    wr_server_user *users = check_users(L, 2, &n);
    int rc;
    if (!r->listener) return wr_push_closed(L);
    rc = wr_server_set_users(r->server, users, n);
    if (rc >= 0 && hc_set_users(r, users, n) != 0)
        wr_warn("relay: the HTTP carrier keeps its former users' keys (out of memory)");
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, rc == UV_EINVAL ? "users: a name is repeated" : uv_strerror(rc));
        return 2;
    }
    lua_pushinteger(L, rc);
    return 1;
}

static void push_conn_row(wr_server_conn_t *conn, void *data)
{
    lua_State *L = data;
    wr_session_t *s = wr_server_conn_session(conn);
    wr_session_stats st;
    lua_createtable(L, 0, 6);
    lua_pushstring(L, wr_server_conn_peer(conn));
    lua_setfield(L, -2, "peer");
    if (wr_server_conn_user(conn)[0]) {
        lua_pushstring(L, wr_server_conn_user(conn));
        lua_setfield(L, -2, "user");
    }
    lua_pushboolean(L, s && wr_session_is_ready(s));
    lua_setfield(L, -2, "ready");
    if (s) {
        wr_session_get_stats(s, &st);
        wr_set_number(L, "streams", (double)st.streams_active);
        wr_set_number(L, "bytes_in", (double)st.bytes_in);
        wr_set_number(L, "bytes_out", (double)st.bytes_out);
    }
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
}

/* relay:sessions() -> {{peer =, user =, ready =, streams =, bytes_in =, bytes_out =}, ...}: the
 * live sessions, those still in their handshake included (no user until msg1 authenticated). */
static int l_relay_sessions(lua_State *L)
{
    wr_lrelay *r = check_relay(L);
    lua_newtable(L);
    if (r->listener) wr_server_each_conn(r->server, push_conn_row, L);
    return 1;
}

static int l_relay_close(lua_State *L)
{
    wr_lrelay *r = check_relay(L);
    if (!r->listener) return wr_push_closed(L);
    relay_close(r);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_relay_gc(lua_State *L)
{
    relay_unref(check_relay(L)); /* an open relay is anchored: this runs once it is closed */
    return 0;
}

static const luaL_Reg relay_methods[] = {
    {"port", l_relay_port},         {"stats", l_relay_stats}, {"set_users", l_relay_set_users},
    {"sessions", l_relay_sessions}, {"close", l_relay_close}, {NULL, NULL},
};

void wr_bind_relay(lua_State *L)
{
    wr_bind_class(L, RELAY_MT, relay_methods, l_relay_gc, "relay_server", l_relay_server);
}
