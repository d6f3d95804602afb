/* The client's carrier factory: dials the relay and builds, layer on layer, the carrier the relay
 * address asks for (raw TCP; TLS over TCP; WebSocket or HTTP requests over either; through an
 * HTTP proxy's CONNECT, or in absolute form for plain HTTP requests; or KCP over UDP, never
 * proxied), then hands over the finished
 * endpoint, ready for the secure session, which never knows which carrier it rides. */
#ifndef WR_CARRIER_H
#define WR_CARRIER_H

#include "wr_endpoint.h"
#include "wr_kcp.h"
#include "wr_tls_endpoint.h"

#include <stdint.h>
#include <uv.h>

enum wr_carrier_kind {
    WR_CARRIER_TCP = 0,
    WR_CARRIER_TLS,
    WR_CARRIER_WS,    /* WebSocket over TCP */
    WR_CARRIER_WSS,   /* WebSocket over TLS */
    WR_CARRIER_HTTP,  /* ordinary HTTP requests (wr_hc_client) */
    WR_CARRIER_HTTPS, /* the same over TLS */
    WR_CARRIER_KCP,   /* KCP over UDP */
};

typedef struct wr_carrier_spec {
    enum wr_carrier_kind kind;
    const char *host; /* copied */
    uint16_t port;
    uint64_t timeout_ms;     /* the dial and every handshake layer, in all (0 = 10 s) */
    wr_tls_ctx_t *tls;       /* TLS: a client context (its reference is the caller's) */
    const char *tls_name;    /* TLS: SNI and the name verified (NULL = host) */
    const char *host_header; /* WebSocket, HTTP: the Host field (NULL = host, with the port if
                                not the scheme's default) */
    const char *path;        /* WebSocket, HTTP: the request path (NULL = "/") */
    const char *headers;     /* WebSocket, HTTP: the user's own header lines, "Name: value\r\n"
                                each, in every request (checked by the caller), or NULL */
    const uint8_t *psk;      /* HTTP: the key (32 bytes) its requests are signed with */
    /* An HTTP proxy, or NULL: asked with CONNECT for the tunnel, except by the HTTP carrier
     * without TLS, which sends it its requests in absolute form (proxies that refuse CONNECT). */
    const char *proxy_host;
    uint16_t proxy_port;
    const char *proxy_auth; /* "USER:PASS" (Basic), or NULL */
    wr_kcp_config kcp;      /* KCP: windows, MTU, preset values (zeros are KCP's defaults) */
    const char *congestion; /* TCP carriers: the congestion control of the socket (TCP_CONGESTION,
                               "bbr", "cubic"...), or NULL for the system's default */
} wr_carrier_spec;

typedef struct wr_carrier_dial wr_carrier_dial_t;

/* Once: status 0 and the carrier (now the callee's), or a libuv code and words for the user. */
typedef void (*wr_carrier_cb)(int status, const char *err, wr_endpoint_t *carrier, void *data);

/* Starts; cb runs from the loop, never inside this call. 0, or a libuv code (cb will not run). */
int wr_carrier_dial(uv_loop_t *loop, const wr_carrier_spec *spec, wr_carrier_cb cb, void *data,
                    wr_carrier_dial_t **out);
/* Stops a dial in progress: cb will not run, and whatever was built is closed. */
void wr_carrier_cancel(wr_carrier_dial_t *d);
const char *wr_carrier_kind_name(enum wr_carrier_kind kind);
/* Sets a TCP socket's congestion control: 0, or a libuv code (UV_ENOENT: the kernel has no such
 * algorithm; UV_EPERM: it is not in net.ipv4.tcp_allowed_congestion_control). */
int wr_tcp_set_congestion(uv_tcp_t *tcp, const char *name);
/* Checks that this process may use the congestion control name, on a socket of its own. */
int wr_tcp_check_congestion(const char *name);

#endif
