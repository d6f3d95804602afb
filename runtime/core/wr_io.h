/* TCP listen and dial on libuv, plus the host:port parser the CLI and scripts use.
 * Every socket gets TCP_NODELAY: the relay forwards whatever it read at once, so Nagle would only
 * add latency. Errors are libuv codes (uv_strerror/uv_err_name). libuv writes with write(2), so
 * the process must ignore SIGPIPE (the host does) or a reset peer kills it. */
#ifndef WR_IO_H
#define WR_IO_H

#include <stdint.h>
#include <uv.h>

/* ---- address parsing ---- */

#define WR_HOST_MAX 253 /* longest DNS name */

typedef struct wr_hostport {
    char host[WR_HOST_MAX + 1]; /* without brackets; "" means "any" (listen) */
    uint16_t port;
    int ipv6; /* host was a bracketed IPv6 literal */
} wr_hostport_t;

enum {
    WR_ADDR_PORT_ZERO_OK = 1u << 0, /* accept port 0 (listen on an ephemeral port) */
    WR_ADDR_HOST_REQUIRED = 1u << 1 /* reject ":port" and bare "port" (dial targets) */
};

/* Parses "host:port", "[v6]:port", ":port" and bare "port". Returns 0, or UV_EINVAL with *err
 * set to a static human-readable reason. Hosts are checked for DNS-name characters and label
 * lengths, bracketed ones with inet_pton (an optional %zone is allowed). */
int wr_parse_hostport(const char *s, unsigned flags, wr_hostport_t *out, const char **err);

/* ---- listen ---- */

typedef struct wr_listener wr_listener_t;
/* status < 0 reports an accept failure (e.g. UV_EMFILE); the listener keeps listening. */
typedef void (*wr_connection_cb)(wr_listener_t *l, int status);

#define WR_LISTEN_BACKLOG_DEFAULT 511

/* host: numeric IPv4/IPv6, "localhost" (127.0.0.1), or "" / "*" for all addresses (IPv6
 * dual-stack when available, else 0.0.0.0). No DNS: a listen must never block the loop.
 * backlog <= 0 means the default. SO_REUSEADDR is set (libuv does it on bind). */
int wr_listen(uv_loop_t *loop, const char *host, uint16_t port, int backlog, wr_connection_cb cb,
              void *data, wr_listener_t **out);
int wr_listen_addr(uv_loop_t *loop, const struct sockaddr *addr, int backlog, wr_connection_cb cb,
                   void *data, wr_listener_t **out);
/* Accepts one pending connection into a malloc'd, TCP_NODELAY handle (give it to
 * wr_tcp_endpoint_new, or close it with wr_tcp_close_free). */
int wr_listener_accept(wr_listener_t *l, uv_tcp_t **out);
void *wr_listener_data(const wr_listener_t *l);
/* Bound port (useful after listening on port 0), or a negative libuv error. */
int wr_listener_port(const wr_listener_t *l);
uv_tcp_t *wr_listener_handle(wr_listener_t *l);
/* Stops listening; memory is freed in the close callback. */
void wr_listener_close(wr_listener_t *l);

/* ---- dial ---- */

typedef struct wr_dial wr_dial_t;
/* Called exactly once. On status 0, tcp is a connected, malloc'd, TCP_NODELAY handle that the
 * callee now owns; otherwise tcp is NULL. d is gone once the callback returns. */
typedef void (*wr_dial_cb)(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data);

#define WR_DIAL_MAX_ADDRS 16

/* Resolves host asynchronously (numeric hosts skip the resolver), then tries each address in
 * turn. timeout_ms (0 = none) bounds the resolution and each connect attempt separately;
 * expiry gives UV_ETIMEDOUT. When every address fails, the last error is reported. */
int wr_dial(uv_loop_t *loop, const char *host, uint16_t port, uint64_t timeout_ms, wr_dial_cb cb,
            void *data, wr_dial_t **out);
/* Same, over a list of already resolved addresses (at most WR_DIAL_MAX_ADDRS are used). */
int wr_dial_addrs(uv_loop_t *loop, const struct sockaddr *const *addrs, int naddrs,
                  uint64_t timeout_ms, wr_dial_cb cb, void *data, wr_dial_t **out);
/* Runs once the addresses are known, before the first connect; a non-zero libuv code ends the
 * dial with that status. A destination policy checks the addresses that will really be dialled
 * here, so a name cannot resolve one way for the check and another way for the connect. */
typedef int (*wr_dial_check_cb)(wr_dial_t *d, const struct sockaddr_storage *addrs, int naddrs,
                                void *data);
/* Set right after wr_dial / wr_dial_addrs (their callbacks never run inside the call). */
void wr_dial_set_check(wr_dial_t *d, wr_dial_check_cb check);
/* Aborts a dial in progress: its callback runs with UV_ECANCELED before this returns. */
void wr_dial_cancel(wr_dial_t *d);

/* uv_close + free for handles from wr_listener_accept / wr_dial that were not adopted. */
void wr_tcp_close_free(uv_tcp_t *tcp);

#endif
