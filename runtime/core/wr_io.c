#include "wr_io.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- address parsing ---- */

static int fail(const char **err, const char *msg)
{
    if (err) *err = msg;
    return UV_EINVAL;
}

static int parse_port(const char *p, unsigned flags, uint16_t *out, const char **err)
{
    size_t n = strlen(p);
    if (n == 0) return fail(err, "missing port after ':'");
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return fail(err, "port must be a decimal number");
        if (i >= 5) return fail(err, "port out of range (1-65535)");
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v > 65535) return fail(err, "port out of range (1-65535)");
    if (v == 0 && !(flags & WR_ADDR_PORT_ZERO_OK)) return fail(err, "port 0 is not allowed here");
    *out = (uint16_t)v;
    return 0;
}

static int is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* DNS name (RFC 1123 labels, '_' tolerated for service names) or a dotted IPv4 literal. */
static int check_host(const char *h, size_t n, const char **err)
{
    if (n > WR_HOST_MAX) return fail(err, "host name too long");
    int all_numeric = n > 0;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0) return fail(err, "empty label in host name");
            if (h[i - 1] == '-') return fail(err, "host name label ends with '-'");
            label = 0;
            continue;
        }
        if (!is_alnum(c) && c != '-' && c != '_') {
            if (c == ':') return fail(err, "IPv6 addresses must be bracketed, e.g. [::1]:80");
            return fail(err, "invalid character in host name");
        }
        if (c < '0' || c > '9') all_numeric = 0;
        if (label == 0 && c == '-') return fail(err, "host name label starts with '-'");
        if (++label > 63) return fail(err, "host name label longer than 63 characters");
    }
    if (label > 0 && h[n - 1] == '-') return fail(err, "host name label ends with '-'");
    if (all_numeric) {
        /* All digits and dots: must be a real IPv4 address, not something "1.2.3" like. */
        char tmp[WR_HOST_MAX + 1];
        struct in_addr a;
        memcpy(tmp, h, n);
        tmp[n] = '\0';
        if (inet_pton(AF_INET, tmp, &a) != 1) return fail(err, "invalid IPv4 address");
    }
    return 0;
}

static int check_ipv6(const char *h, size_t n, const char **err)
{
    char tmp[64];
    const char *pct = memchr(h, '%', n);
    size_t addr_len = pct ? (size_t)(pct - h) : n;
    if (addr_len == 0) return fail(err, "empty IPv6 address in brackets");
    if (addr_len >= sizeof(tmp)) return fail(err, "invalid IPv6 address");
    if (pct) {
        size_t zl = n - addr_len - 1;
        if (zl == 0 || zl > 15) return fail(err, "invalid IPv6 zone");
        for (size_t i = 1; i <= zl; i++) {
            char c = pct[i];
            if (!is_alnum(c) && c != '-' && c != '_' && c != '.')
                return fail(err, "invalid IPv6 zone");
        }
    }
    memcpy(tmp, h, addr_len);
    tmp[addr_len] = '\0';
    struct in6_addr a;
    if (inet_pton(AF_INET6, tmp, &a) != 1) return fail(err, "invalid IPv6 address");
    return 0;
}

int wr_parse_hostport(const char *s, unsigned flags, wr_hostport_t *out, const char **err)
{
    const char *host;
    size_t host_len;
    const char *port;
    int ipv6 = 0;
    int rc;

    if (s == NULL || *s == '\0') return fail(err, "empty address");
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL) return fail(err, "missing ']' after IPv6 address");
        host = s + 1;
        host_len = (size_t)(close - host);
        if ((rc = check_ipv6(host, host_len, err)) != 0) return rc;
        if (close[1] == '\0') return fail(err, "missing ':port' after IPv6 address");
        if (close[1] != ':') return fail(err, "expected ':' after ']'");
        port = close + 2;
        ipv6 = 1;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            /* Bare "port", or a host without a port. */
            size_t n = strlen(s);
            if (strspn(s, "0123456789") != n) return fail(err, "missing ':port'");
            host = s;
            host_len = 0;
            port = s;
        } else {
            if (memchr(s, ':', (size_t)(colon - s)) != NULL)
                return fail(err, "IPv6 addresses must be bracketed, e.g. [::1]:80");
            host = s;
            host_len = (size_t)(colon - s);
            port = colon + 1;
            if (host_len == 1 && host[0] == '*')
                host_len = 0; /* "*:port" = any */
            else if ((rc = check_host(host, host_len, err)) != 0)
                return rc;
        }
        if (host_len == 0 && (flags & WR_ADDR_HOST_REQUIRED)) return fail(err, "missing host");
    }
    uint16_t p;
    if ((rc = parse_port(port, flags, &p, err)) != 0) return rc;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = p;
    out->ipv6 = ipv6;
    if (err) *err = NULL;
    return 0;
}

/* ---- listen ---- */

struct wr_listener {
    uv_tcp_t tcp;
    wr_connection_cb cb;
    void *data;
};

static void free_on_close(uv_handle_t *h)
{
    free(h);
}

void wr_tcp_close_free(uv_tcp_t *tcp)
{
    uv_close((uv_handle_t *)tcp, free_on_close);
}

static void connection_cb(uv_stream_t *server, int status)
{
    wr_listener_t *l = (wr_listener_t *)server;
    l->cb(l, status);
}

int wr_listen_addr(uv_loop_t *loop, const struct sockaddr *addr, int backlog, wr_connection_cb cb,
                   void *data, wr_listener_t **out)
{
    wr_listener_t *l = malloc(sizeof(*l));
    if (l == NULL) return UV_ENOMEM;
    /* init_ex creates the socket now, so an unsupported family fails here with nothing to
     * close; later failures need uv_close (the handle is registered with the loop). */
    int rc = uv_tcp_init_ex(loop, &l->tcp, addr->sa_family);
    if (rc < 0) {
        free(l);
        return rc;
    }
    l->cb = cb;
    l->data = data;
    l->tcp.data = l;
    rc = uv_tcp_bind(&l->tcp, addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, backlog > 0 ? backlog : WR_LISTEN_BACKLOG_DEFAULT,
                       connection_cb);
    if (rc < 0) {
        uv_close((uv_handle_t *)&l->tcp, free_on_close);
        return rc;
    }
    *out = l;
    return 0;
}

int wr_listen(uv_loop_t *loop, const char *host, uint16_t port, int backlog, wr_connection_cb cb,
              void *data, wr_listener_t **out)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (host == NULL || host[0] == '\0' || strcmp(host, "*") == 0) {
        /* Dual-stack "::" takes IPv4 too; fall back to 0.0.0.0 on hosts without IPv6. */
        uv_ip6_addr("::", port, sin6);
        int rc = wr_listen_addr(loop, (struct sockaddr *)sin6, backlog, cb, data, out);
        if (rc != UV_EAFNOSUPPORT && rc != UV_EADDRNOTAVAIL) return rc;
        uv_ip4_addr("0.0.0.0", port, sin);
    } else if (strcmp(host, "localhost") == 0) {
        uv_ip4_addr("127.0.0.1", port, sin);
    } else if (uv_ip4_addr(host, port, sin) != 0 && uv_ip6_addr(host, port, sin6) != 0) {
        return UV_EINVAL; /* listen takes numeric addresses only: no DNS on the loop */
    }
    return wr_listen_addr(loop, (struct sockaddr *)&ss, backlog, cb, data, out);
}

int wr_listener_accept(wr_listener_t *l, uv_tcp_t **out)
{
    uv_tcp_t *c = malloc(sizeof(*c));
    if (c == NULL) return UV_ENOMEM;
    int rc = uv_tcp_init(l->tcp.loop, c);
    if (rc < 0) {
        free(c);
        return rc;
    }
    rc = uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)c);
    if (rc < 0) {
        wr_tcp_close_free(c);
        return rc;
    }
    uv_tcp_nodelay(c, 1);
    c->data = NULL;
    *out = c;
    return 0;
}

void *wr_listener_data(const wr_listener_t *l)
{
    return l->data;
}

uv_tcp_t *wr_listener_handle(wr_listener_t *l)
{
    return &l->tcp;
}

int wr_listener_port(const wr_listener_t *l)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
    if (rc < 0) return rc;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return UV_EAFNOSUPPORT;
}

void wr_listener_close(wr_listener_t *l)
{
    uv_close((uv_handle_t *)&l->tcp, free_on_close);
}

/* ---- dial ---- */

/* One connect attempt. tcp comes first so the handle handed to the caller can be free()d. */
typedef struct attempt {
    uv_tcp_t tcp;
    uv_connect_t req;
    wr_dial_t *dial; /* NULL once abandoned (timeout/cancel): its callbacks then do nothing */
} attempt_t;

struct wr_dial {
    uv_loop_t *loop;
    uv_timer_t timer; /* resolve/connect deadline; also defers numeric dials to the loop */
    uv_getaddrinfo_t gai;
    attempt_t *att;
    wr_dial_cb cb;
    wr_dial_check_cb check; /* not yet run, or NULL */
    void *data;
    uint64_t timeout_ms;
    int gai_pending;
    int timer_closed;
    int done;
    int last_err;
    int naddrs, next;
    struct sockaddr_storage addrs[WR_DIAL_MAX_ADDRS];
};

static void dial_maybe_free(wr_dial_t *d)
{
    if (d->done && d->timer_closed && !d->gai_pending) free(d);
}

static void dial_timer_closed(uv_handle_t *h)
{
    wr_dial_t *d = h->data;
    d->timer_closed = 1;
    dial_maybe_free(d);
}

static void dial_finish(wr_dial_t *d, int status, uv_tcp_t *tcp)
{
    d->done = 1;
    uv_close((uv_handle_t *)&d->timer, dial_timer_closed);
    d->cb(d, status, tcp, d->data);
}

static void attempt_abandon(wr_dial_t *d)
{
    attempt_t *a = d->att;
    if (a == NULL) return;
    d->att = NULL;
    a->dial = NULL;
    wr_tcp_close_free(&a->tcp);
}

static void dial_timeout_cb(uv_timer_t *t);
static int start_connect(attempt_t *a, const struct sockaddr *sa);

static void dial_try_next(wr_dial_t *d)
{
    if (d->check) {
        wr_dial_check_cb check = d->check;
        int rc;
        d->check = NULL;
        rc = check(d, d->addrs, d->naddrs, d->data);
        if (rc != 0) {
            dial_finish(d, rc, NULL);
            return;
        }
    }
    while (d->next < d->naddrs) {
        const struct sockaddr *sa = (const struct sockaddr *)&d->addrs[d->next++];
        attempt_t *a = malloc(sizeof(*a));
        if (a == NULL) {
            d->last_err = UV_ENOMEM;
            break;
        }
        int rc = uv_tcp_init(d->loop, &a->tcp);
        if (rc < 0) {
            free(a);
            d->last_err = rc;
            continue;
        }
        a->dial = d;
        a->tcp.data = a;
        rc = start_connect(a, sa);
        if (rc < 0) {
            d->last_err = rc;
            wr_tcp_close_free(&a->tcp);
            continue;
        }
        d->att = a;
        if (d->timeout_ms) uv_timer_start(&d->timer, dial_timeout_cb, d->timeout_ms, 0);
        return;
    }
    dial_finish(d, d->last_err ? d->last_err : UV_EAI_NONAME, NULL);
}

static void connect_cb(uv_connect_t *req, int status)
{
    attempt_t *a = (attempt_t *)((char *)req - offsetof(attempt_t, req));
    wr_dial_t *d = a->dial;
    if (d == NULL) return; /* abandoned: already closing */
    d->att = NULL;
    uv_timer_stop(&d->timer);
    if (status == 0) {
        uv_tcp_nodelay(&a->tcp, 1);
        a->tcp.data = NULL;
        dial_finish(d, 0, &a->tcp);
        return;
    }
    d->last_err = status;
    wr_tcp_close_free(&a->tcp);
    dial_try_next(d);
}

/* uv_tcp_connect takes the callback at call time; wrap so the attempt type stays private. */
static int start_connect(attempt_t *a, const struct sockaddr *sa)
{
    return uv_tcp_connect(&a->req, &a->tcp, sa, connect_cb);
}

static void dial_timeout_cb(uv_timer_t *t)
{
    wr_dial_t *d = t->data;
    if (d->gai_pending) {
        /* Resolution can't be interrupted once running; report now, free when it returns. */
        uv_cancel((uv_req_t *)&d->gai);
        dial_finish(d, UV_ETIMEDOUT, NULL);
        return;
    }
    attempt_abandon(d);
    d->last_err = UV_ETIMEDOUT;
    dial_try_next(d);
}

static void dial_kick_cb(uv_timer_t *t)
{
    dial_try_next(t->data);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    wr_dial_t *d = req->data;
    d->gai_pending = 0;
    if (d->done) {
        if (res) uv_freeaddrinfo(res);
        dial_maybe_free(d);
        return;
    }
    uv_timer_stop(&d->timer);
    if (status < 0) {
        dial_finish(d, status, NULL);
        return;
    }
    for (struct addrinfo *ai = res; ai && d->naddrs < WR_DIAL_MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        memcpy(&d->addrs[d->naddrs++], ai->ai_addr, ai->ai_addrlen);
    }
    uv_freeaddrinfo(res);
    dial_try_next(d);
}

static wr_dial_t *dial_new(uv_loop_t *loop, uint64_t timeout_ms, wr_dial_cb cb, void *data)
{
    wr_dial_t *d = calloc(1, sizeof(*d));
    if (d == NULL) return NULL;
    d->loop = loop;
    d->cb = cb;
    d->data = data;
    d->timeout_ms = timeout_ms;
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->gai.data = d;
    return d;
}

static size_t sockaddr_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

int wr_dial_addrs(uv_loop_t *loop, const struct sockaddr *const *addrs, int naddrs,
                  uint64_t timeout_ms, wr_dial_cb cb, void *data, wr_dial_t **out)
{
    if (naddrs <= 0) return UV_EINVAL;
    for (int i = 0; i < naddrs; i++)
        if (addrs[i]->sa_family != AF_INET && addrs[i]->sa_family != AF_INET6) return UV_EINVAL;
    wr_dial_t *d = dial_new(loop, timeout_ms, cb, data);
    if (d == NULL) return UV_ENOMEM;
    for (int i = 0; i < naddrs && i < WR_DIAL_MAX_ADDRS; i++)
        memcpy(&d->addrs[d->naddrs++], addrs[i], sockaddr_len(addrs[i]));
    /* Start from the loop so the callback never runs inside this call. */
    uv_timer_start(&d->timer, dial_kick_cb, 0, 0);
    if (out) *out = d;
    return 0;
}

int wr_dial(uv_loop_t *loop, const char *host, uint16_t port, uint64_t timeout_ms, wr_dial_cb cb,
            void *data, wr_dial_t **out)
{
    if (host == NULL || host[0] == '\0' || port == 0) return UV_EINVAL;
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        const struct sockaddr *one = (const struct sockaddr *)&ss;
        return wr_dial_addrs(loop, &one, 1, timeout_ms, cb, data, out);
    }
    wr_dial_t *d = dial_new(loop, timeout_ms, cb, data);
    if (d == NULL) return UV_ENOMEM;
    char service[8];
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    /* No AI_ADDRCONFIG: glibc ignores loopback when deciding, which hides "localhost" on a
     * loopback-only host. */
    hints.ai_flags = AI_NUMERICSERV;
    int rc = uv_getaddrinfo(loop, &d->gai, gai_cb, host, service, &hints);
    if (rc < 0) {
        d->done = 1;
        uv_close((uv_handle_t *)&d->timer, dial_timer_closed);
        return rc;
    }
    d->gai_pending = 1;
    if (timeout_ms) uv_timer_start(&d->timer, dial_timeout_cb, timeout_ms, 0);
    if (out) *out = d;
    return 0;
}

void wr_dial_set_check(wr_dial_t *d, wr_dial_check_cb check)
{
    d->check = check;
}

void wr_dial_cancel(wr_dial_t *d)
{
    if (d->done) return;
    if (d->gai_pending) uv_cancel((uv_req_t *)&d->gai);
    uv_timer_stop(&d->timer);
    attempt_abandon(d);
    dial_finish(d, UV_ECANCELED, NULL);
}
