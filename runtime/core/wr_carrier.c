#include "wr_carrier.h"

#include "wr_connect_proxy.h"
#include "wr_crypto.h"
#include "wr_hc_client.h"
#include "wr_io.h"
#include "wr_kcp_endpoint.h"
#include "wr_tcp_endpoint.h"
#include "wr_ws_endpoint.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_DEFAULT_MS 10000

struct wr_carrier_dial {
    uv_loop_t *loop;
    enum wr_carrier_kind kind;
    wr_tls_ctx_t *tls;
    char host[WR_HOST_MAX + 1];
    char tls_name[WR_HOST_MAX + 1];
    uint16_t port;
    char *host_header, *path, *headers; /* WebSocket and HTTP */
    char *proxy_auth;                   /* "USER:PASS" for the proxy, or NULL */
    char *congestion;                   /* TCP_CONGESTION for the socket, or NULL */
    int via_proxy;
    int proxy_absolute; /* HTTP without TLS: the proxy gets our requests, no CONNECT */
    uint8_t psk[32];    /* HTTP */
    char *proxy_host;   /* HTTP: for the carrier's later connections */
    uint16_t proxy_port;
    char proxy_name[WR_HOST_MAX + 8]; /* host:port, for messages */
    wr_connect_proxy_t *proxy;        /* while the proxy's CONNECT runs */
    char why[320];
    wr_carrier_cb cb;
    void *data;
    wr_dial_t *dial;      /* while the TCP dial runs */
    wr_endpoint_t *ep;    /* the layers built so far */
    uv_timer_t timer;     /* the deadline of the layers above TCP */
    int finished;         /* cb ran, or the dial was cancelled */
    wr_kcp_config kcp;    /* KCP */
    uv_getaddrinfo_t gai; /* KCP: the relay's name, while it resolves */
    int resolving;
};

static void finish(wr_carrier_dial_t *d, int status, const char *err);

static void timer_closed(uv_handle_t *h)
{
    wr_carrier_dial_t *d = h->data;
    free(d->host_header);
    free(d->path);
    free(d->headers);
    free(d->proxy_auth);
    free(d->proxy_host);
    free(d->congestion);
    wr_zeroize(d->psk, sizeof d->psk);
    free(d);
}

/* The carrier is connected (TCP or TLS): WebSocket, when asked for, goes on top. Its upgrade
 * goes out with the session's first message, so the endpoint is handed over at once. */
static void connected(wr_carrier_dial_t *d)
{
    if (d->kind == WR_CARRIER_HTTP || d->kind == WR_CARRIER_HTTPS) {
        wr_hc_client_config cfg = {
            .host = d->host,
            .port = d->port,
            .tls = d->tls,
            .tls_name = d->tls_name,
            .path = d->path,
            .host_header = d->host_header,
            .headers = d->headers,
            .proxy_host = d->proxy_host,
            .proxy_port = d->proxy_port,
            .proxy_absolute = d->proxy_absolute,
            .proxy_auth = d->proxy_auth,
            .psk = d->psk,
        };
        wr_endpoint_t *hc = wr_hc_client_new(d->loop, &cfg, d->ep);
        if (!hc) {
            finish(d, UV_ENOMEM, NULL);
            return;
        }
        d->ep = hc;
        finish(d, 0, NULL);
        return;
    }
    if (d->kind == WR_CARRIER_WS || d->kind == WR_CARRIER_WSS) {
        wr_endpoint_t *ws = wr_ws_client_new(d->loop, d->ep, d->host_header, d->path, d->headers);
        if (!ws) {
            finish(d, UV_ENOMEM, NULL);
            return;
        }
        d->ep = ws;
    }
    finish(d, 0, NULL);
}

/* Reports once, then frees the dial (the endpoint, if any, belongs to cb or is closed). */
static void finish(wr_carrier_dial_t *d, int status, const char *err)
{
    wr_endpoint_t *ep = d->ep;
    d->ep = NULL;
    if (!d->finished) {
        d->finished = 1;
        if (status != 0 && ep) {
            wr_endpoint_close(ep, WR_CLOSE_RESET);
            ep = NULL;
        }
        d->cb(status, err ? err : (status ? uv_strerror(status) : NULL), ep, d->data);
    } else if (ep) {
        wr_endpoint_close(ep, WR_CLOSE_RESET);
    }
    if (d->resolving) { /* resolved() frees the dial once the resolver is done */
        uv_cancel((uv_req_t *)&d->gai);
        return;
    }
    uv_close((uv_handle_t *)&d->timer, timer_closed);
}

/* KCP: the relay's name resolved; the carrier is ready at once (UDP has no handshake). */
static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    wr_carrier_dial_t *d = req->data;
    wr_endpoint_t *ep = NULL;
    d->resolving = 0;
    if (d->finished) { /* cancelled, or out of time */
        uv_freeaddrinfo(res);
        uv_close((uv_handle_t *)&d->timer, timer_closed);
        return;
    }
    uv_timer_stop(&d->timer);
    if (status == 0) status = wr_kcp_client_new(d->loop, res->ai_addr, &d->kcp, &ep);
    uv_freeaddrinfo(res);
    if (status != 0) {
        snprintf(d->why, sizeof d->why, "cannot reach the relay %s over KCP: %s", d->host,
                 uv_strerror(status));
        finish(d, status, d->why);
        return;
    }
    d->ep = ep;
    finish(d, 0, NULL);
}

static void tls_done(wr_endpoint_t *ep, int status, const char *err, void *data)
{
    wr_carrier_dial_t *d = data;
    (void)ep;
    uv_timer_stop(&d->timer);
    if (status != 0)
        finish(d, status, err);
    else
        connected(d);
}

static void deadline(uv_timer_t *t)
{
    wr_carrier_dial_t *d = t->data;
    if (d->resolving) {
        finish(d, UV_ETIMEDOUT, "the relay's name did not resolve in time");
        return;
    }
    if (d->proxy) {
        wr_connect_proxy_cancel(d->proxy);
        d->proxy = NULL;
        finish(d, UV_ETIMEDOUT, "the proxy did not answer CONNECT in time");
        return;
    }
    finish(d, UV_ETIMEDOUT, "the relay did not complete the TLS handshake in time");
}

/* A connection to the relay (direct, or through the proxy): TLS, when asked for, goes on it. */
static void layers(wr_carrier_dial_t *d)
{
    if (d->kind == WR_CARRIER_TCP || d->kind == WR_CARRIER_WS || d->kind == WR_CARRIER_HTTP) {
        connected(d);
        return;
    }
    wr_endpoint_t *tls =
        wr_tls_endpoint_new(d->loop, d->tls, d->ep, d->tls_name, NULL, 0, tls_done, d);
    if (!tls) {
        finish(d, UV_ENOMEM, "cannot start TLS (out of memory, or no libssl in this build)");
        return;
    }
    d->ep = tls; /* it owns the TCP endpoint now */
}

static void proxied(int status, const char *why, wr_endpoint_t *ep, void *data)
{
    wr_carrier_dial_t *d = data;
    d->proxy = NULL;
    if (status != 0) {
        finish(d, status, why);
        return;
    }
    d->ep = ep;
    layers(d);
}

static void dialed(wr_dial_t *dial, int status, uv_tcp_t *tcp, void *data)
{
    wr_carrier_dial_t *d = data;
    d->dial = NULL;
    if (d->finished) { /* cancelled */
        if (tcp) wr_tcp_close_free(tcp);
        uv_close((uv_handle_t *)&d->timer, timer_closed);
        return;
    }
    if (status != 0) {
        if (d->via_proxy)
            snprintf(d->why, sizeof d->why, "cannot reach the proxy %s: %s", d->proxy_name,
                     uv_strerror(status));
        finish(d, status, d->via_proxy ? d->why : NULL);
        return;
    }
    if (d->congestion && (status = wr_tcp_set_congestion(tcp, d->congestion)) != 0) {
        wr_tcp_close_free(tcp);
        snprintf(d->why, sizeof d->why, "the kernel refused the congestion control %s: %s",
                 d->congestion, uv_strerror(status));
        finish(d, status, d->why);
        return;
    }
    d->ep = wr_tcp_endpoint_new(tcp);
    if (!d->ep) {
        wr_tcp_close_free(tcp);
        finish(d, UV_ENOMEM, NULL);
        return;
    }
    if (!d->via_proxy || d->proxy_absolute) {
        layers(d);
        return;
    }
    d->proxy = wr_connect_proxy_start(d->ep, d->host, d->port, d->proxy_auth, proxied, d);
    if (!d->proxy) {
        finish(d, UV_ENOMEM, NULL);
        return;
    }
    d->ep = NULL; /* the CONNECT step owns it until proxied() */
}

int wr_carrier_dial(uv_loop_t *loop, const wr_carrier_spec *spec, wr_carrier_cb cb, void *data,
                    wr_carrier_dial_t **out)
{
    uint64_t timeout = spec->timeout_ms ? spec->timeout_ms : TIMEOUT_DEFAULT_MS;
    wr_carrier_dial_t *d;
    int rc;
    if (!spec->host || strlen(spec->host) > WR_HOST_MAX || !spec->port) return UV_EINVAL;
    if ((spec->kind == WR_CARRIER_TLS || spec->kind == WR_CARRIER_WSS ||
         spec->kind == WR_CARRIER_HTTPS) &&
        !spec->tls)
        return UV_EINVAL;
    if ((spec->kind == WR_CARRIER_HTTP || spec->kind == WR_CARRIER_HTTPS) && !spec->psk)
        return UV_EINVAL;
    if (spec->kind == WR_CARRIER_KCP && spec->proxy_host) return UV_EINVAL; /* UDP: no CONNECT */
    d = calloc(1, sizeof *d);
    if (!d) return UV_ENOMEM;
    d->loop = loop;
    d->kind = spec->kind;
    d->tls = spec->tls;
    d->cb = cb;
    d->data = data;
    snprintf(d->host, sizeof d->host, "%s", spec->host);
    snprintf(d->tls_name, sizeof d->tls_name, "%s", spec->tls_name ? spec->tls_name : spec->host);
    d->port = spec->port;
    d->via_proxy = spec->proxy_host != NULL;
    d->proxy_absolute = d->via_proxy && spec->kind == WR_CARRIER_HTTP;
    if (spec->psk) memcpy(d->psk, spec->psk, sizeof d->psk);
    d->proxy_port = spec->proxy_port;
    if (spec->proxy_host && !(d->proxy_host = strdup(spec->proxy_host))) {
        free(d);
        return UV_ENOMEM;
    }
    if (d->via_proxy)
        snprintf(d->proxy_name, sizeof d->proxy_name,
                 strchr(spec->proxy_host, ':') ? "[%s]:%u" : "%s:%u", spec->proxy_host,
                 (unsigned)spec->proxy_port);
    if ((spec->proxy_auth && !(d->proxy_auth = strdup(spec->proxy_auth))) ||
        (spec->congestion && !(d->congestion = strdup(spec->congestion)))) {
        free(d->proxy_host);
        free(d->proxy_auth);
        free(d);
        return UV_ENOMEM;
    }
    /* WebSocket and HTTP: the Host field and the path (KCP has neither). */
    if (spec->kind >= WR_CARRIER_WS && spec->kind != WR_CARRIER_KCP) {
        char host[WR_HOST_MAX + 16];
        int v6 = strchr(spec->host, ':') != NULL;
        int tls = spec->kind == WR_CARRIER_WSS || spec->kind == WR_CARRIER_HTTPS;
        int default_port = spec->port == (tls ? 443 : 80);
        if (default_port)
            snprintf(host, sizeof host, v6 ? "[%s]" : "%s", spec->host);
        else
            snprintf(host, sizeof host, v6 ? "[%s]:%u" : "%s:%u", spec->host, (unsigned)spec->port);
        d->host_header = strdup(spec->host_header ? spec->host_header : host);
        d->path = strdup(spec->path ? spec->path : "/");
        d->headers = strdup(spec->headers ? spec->headers : "");
        if (!d->host_header || !d->path || !d->headers) {
            free(d->host_header);
            free(d->path);
            free(d->headers);
            free(d->proxy_auth);
            free(d->proxy_host);
            free(d->congestion);
            free(d);
            return UV_ENOMEM;
        }
    }
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    if (spec->kind == WR_CARRIER_KCP) {
        struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_protocol = IPPROTO_UDP};
        char port[8];
        snprintf(port, sizeof port, "%u", (unsigned)spec->port);
        d->kcp = spec->kcp;
        d->gai.data = d;
        rc = uv_getaddrinfo(loop, &d->gai, resolved, d->host, port, &hints);
        if (rc != 0) {
            uv_close((uv_handle_t *)&d->timer, timer_closed);
            return rc;
        }
        d->resolving = 1;
        uv_timer_start(&d->timer, deadline, timeout, 0);
        *out = d;
        return 0;
    }
    if (d->via_proxy)
        rc = wr_dial(loop, spec->proxy_host, spec->proxy_port, timeout, dialed, d, &d->dial);
    else
        rc = wr_dial(loop, d->host, spec->port, timeout, dialed, d, &d->dial);
    if (rc != 0) {
        uv_close((uv_handle_t *)&d->timer, timer_closed);
        return rc;
    }
    /* The dial has its own timeout; the layers above it share one deadline. */
    if (spec->kind != WR_CARRIER_TCP || d->via_proxy)
        uv_timer_start(&d->timer, deadline, timeout, 0);
    *out = d;
    return 0;
}

void wr_carrier_cancel(wr_carrier_dial_t *d)
{
    if (d->finished) return;
    d->finished = 1;
    uv_timer_stop(&d->timer);
    if (d->dial) {
        wr_dial_cancel(d->dial); /* dialed() runs, frees the socket and the dial */
        return;
    }
    if (d->resolving) {
        uv_cancel((uv_req_t *)&d->gai); /* resolved() runs and frees the dial */
        return;
    }
    if (d->proxy) {
        wr_connect_proxy_cancel(d->proxy);
        d->proxy = NULL;
    }
    finish(d, UV_ECANCELED, NULL);
}

const char *wr_carrier_kind_name(enum wr_carrier_kind kind)
{
    switch (kind) {
    case WR_CARRIER_TCP:
        return "tcp";
    case WR_CARRIER_TLS:
        return "tls";
    case WR_CARRIER_WS:
        return "ws";
    case WR_CARRIER_WSS:
        return "wss";
    case WR_CARRIER_HTTP:
        return "http";
    case WR_CARRIER_HTTPS:
        return "https";
    case WR_CARRIER_KCP:
        return "kcp";
    }
    return "?";
}

static int set_congestion_fd(int fd, const char *name)
{
    if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, (socklen_t)strlen(name)) != 0)
        return uv_translate_sys_error(errno);
    return 0;
}

int wr_tcp_set_congestion(uv_tcp_t *tcp, const char *name)
{
    uv_os_fd_t fd;
    int rc = uv_fileno((uv_handle_t *)tcp, &fd);
    return rc != 0 ? rc : set_congestion_fd(fd, name);
}

int wr_tcp_check_congestion(const char *name)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), rc;
    if (fd < 0) return uv_translate_sys_error(errno);
    rc = set_congestion_fd(fd, name);
    close(fd);
    return rc;
}
