#include "wr_connect_proxy.h"

#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct wr_connect_proxy {
    wr_endpoint_t *ep;
    wr_connect_proxy_cb cb;
    void *data;
    char answer[WR_CONNECT_ANSWER_MAX];
    size_t len;
    char why[256];
};

static const wr_endpoint_cbs_t no_cbs;

size_t wr_connect_request(char *out, size_t cap, const char *host, uint16_t port, const char *auth)
{
    char cred[1024] = "";
    const char *open = strchr(host, ':') ? "[" : "", *close = *open ? "]" : "";
    size_t n = 0;
    int w;
    if (auth) {
        if (strlen(auth) > 700) return 0;
        memcpy(cred, "Proxy-Authorization: Basic ", 27);
        if (mbedtls_base64_encode((unsigned char *)cred + 27, sizeof cred - 30, &n,
                                  (const unsigned char *)auth, strlen(auth)) != 0)
            return 0;
        memcpy(cred + 27 + n, "\r\n", 3);
    }
    w = snprintf(out, cap, "CONNECT %s%s%s:%u HTTP/1.1\r\nHost: %s%s%s:%u\r\n%s\r\n", open, host,
                 close, (unsigned)port, open, host, close, (unsigned)port, cred);
    return w > 0 && (size_t)w < cap ? (size_t)w : 0;
}

int wr_connect_answer_check(const char *buf, size_t len, char *why, size_t why_cap)
{
    size_t line = 0;
    const char *end = NULL;
    for (size_t i = 3; i < len; i++)
        if (memcmp(buf + i - 3, "\r\n\r\n", 4) == 0) {
            end = buf + i + 1;
            break;
        }
    if (!end) {
        if (len < WR_CONNECT_ANSWER_MAX) return 0;
        snprintf(why, why_cap, "the proxy's answer to CONNECT is not HTTP");
        return UV_EPROTO;
    }
    while (line < len && buf[line] != '\r')
        line++;
    if (line < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ') {
        snprintf(why, why_cap, "the proxy's answer to CONNECT is not HTTP");
        return UV_EPROTO;
    }
    if (buf[9] != '2') {
        snprintf(why, why_cap, "the proxy answered CONNECT with \"%.*s\"",
                 (int)(line > 80 ? 80 : line), buf);
        return UV_EPROTO;
    }
    return (int)(end - buf);
}

/* Hands the endpoint back (status 0) or closes it, reports, and frees p. */
static void finish(wr_connect_proxy_t *p, int status, const char *why)
{
    wr_endpoint_t *ep = p->ep;
    wr_endpoint_set_callbacks(ep, &no_cbs, NULL);
    if (status == 0) {
        wr_endpoint_read_stop(ep);
    } else {
        wr_endpoint_close(ep, WR_CLOSE_RESET);
        ep = NULL;
    }
    p->cb(status, why, ep, p->data);
    free(p);
}

static void on_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    wr_connect_proxy_t *p = ep->data;
    size_t take = sizeof p->answer - p->len < len ? sizeof p->answer - p->len : len;
    int rc;
    (void)b;
    memcpy(p->answer + p->len, base, take);
    p->len += take;
    rc = wr_connect_answer_check(p->answer, p->len, p->why, sizeof p->why);
    if (rc == 0) return;
    if (rc > 0 && (size_t)rc != p->len) {
        /* Neither TLS nor WebSocket lets the relay speak first. */
        snprintf(p->why, sizeof p->why, "the proxy sent bytes after its answer to CONNECT");
        rc = UV_EPROTO;
    }
    if (rc < 0)
        finish(p, rc, p->why);
    else
        finish(p, 0, NULL);
}

static void on_eof(wr_endpoint_t *ep)
{
    finish(ep->data, UV_ECONNRESET, "the proxy closed the connection before answering CONNECT");
}

static void on_error(wr_endpoint_t *ep, int err)
{
    wr_connect_proxy_t *p = ep->data;
    snprintf(p->why, sizeof p->why, "the connection to the proxy failed: %s", uv_strerror(err));
    finish(p, err, p->why);
}

static const wr_endpoint_cbs_t proxy_cbs = {
    .on_read = on_read,
    .on_eof = on_eof,
    .on_error = on_error,
};

wr_connect_proxy_t *wr_connect_proxy_start(wr_endpoint_t *ep, const char *host, uint16_t port,
                                           const char *auth, wr_connect_proxy_cb cb, void *data)
{
    wr_connect_proxy_t *p = calloc(1, sizeof *p);
    wr_buf_t *b = wr_buf_get();
    size_t n;
    if (!p || !b) {
        free(p);
        if (b) wr_buf_release(b);
        return NULL;
    }
    p->ep = ep;
    p->cb = cb;
    p->data = data;
    n = wr_connect_request(b->data, b->size, host, port, auth);
    wr_endpoint_set_callbacks(ep, &proxy_cbs, p);
    if (n == 0 || wr_endpoint_write(ep, b, b->data, n) < 0 || wr_endpoint_read_start(ep) < 0) {
        wr_buf_release(b);
        wr_endpoint_set_callbacks(ep, &no_cbs, NULL);
        free(p);
        return NULL;
    }
    wr_buf_release(b);
    return p;
}

void wr_connect_proxy_cancel(wr_connect_proxy_t *p)
{
    wr_endpoint_set_callbacks(p->ep, &no_cbs, NULL);
    wr_endpoint_close(p->ep, WR_CLOSE_RESET);
    free(p);
}
