#include "wr_site_proxy.h"

#include "wr_http_framer.h"
#include "wr_io.h"
#include "wr_log.h"
#include "wr_tcp_endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Requests the site may owe answers to before their methods are no longer remembered (a HEAD
 * response has no body); past it a claim waits no more and the request goes to the site. */
#define ANSWERS_TRACKED 64

struct wr_site_proxy {
    uv_loop_t *loop;
    char host[WR_HOST_MAX + 1];
    uint16_t port;
    char prefix[WR_SITE_PROXY_PREFIX_MAX];
    size_t prefix_len;
    wr_site_proxy_config cfg;
    struct proxy_conn *conns;
    wr_site_proxy_stats st;
    int freeing;
};

/* The site's responses, followed only to know when it has answered every request sent so far:
 * that is when a claimed request may leave for its carrier. */
typedef struct answers {
    http_parser parser;
    uint64_t sent, answered;
    uint64_t head_bits; /* outstanding requests that were HEAD, by sent % ANSWERS_TRACKED */
    int lost;           /* cannot follow them (any more): claims go to the site */
} answers;

typedef struct proxy_conn {
    wr_site_proxy_t *proxy;
    struct proxy_conn *next, **prev;
    wr_endpoint_t *visitor;      /* NULL once closed or taken by a carrier */
    wr_endpoint_t *site;         /* NULL until connected, and once closed */
    wr_dial_t *dial;             /* while connecting */
    uv_timer_t timer;            /* a head that takes too long */
    int refs;                    /* the visitor, the site or the dial, the timer */
    int visitor_eof, site_eof;   /* they finished sending */
    int visitor_shut, site_shut; /* our half-close to them went out */
    int ending;
    int failed; /* one side failed: the other is being closed */
    /* A write to that side failed: what goes there is dropped until its read side ends (it hands
     * over what that side sent before it went, then the error). */
    int visitor_broken, site_broken;
    char *pending; /* what the visitor sent before the site answered the dial, or the claimed
                    * request and what followed it */
    size_t pending_len;
    int claimed;
    answers ans;
    wr_http_framer_t framer;
} proxy_conn;

static const wr_endpoint_cbs_t visitor_cbs, site_cbs;
static const wr_endpoint_cbs_t detached_cbs; /* a claimed connection, on its way to take */
static void pump_up(proxy_conn *c, wr_buf_t *b, const char *base, size_t len);
static void either_error(wr_endpoint_t *ep, int err);
static void try_hand_over(proxy_conn *c);

/* ---- URL ---- */

int wr_site_proxy_parse_url(const char *url, char *host, size_t host_size, uint16_t *port,
                            char *prefix, size_t prefix_size, const char **err)
{
    static const char scheme[] = "http://";
    char authority[WR_HOST_MAX + 16];
    const char *a, *path;
    size_t alen, plen;
    wr_hostport_t hp;
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        *err = "not an http:// URL";
        return UV_EINVAL;
    }
    a = url + sizeof scheme - 1;
    path = strchr(a, '/');
    alen = path ? (size_t)(path - a) : strlen(a);
    if (alen == 0 || alen >= sizeof authority) {
        *err = "no HOST:PORT";
        return UV_EINVAL;
    }
    memcpy(authority, a, alen);
    authority[alen] = '\0';
    if (wr_parse_hostport(authority, WR_ADDR_HOST_REQUIRED, &hp, err) != 0) return UV_EINVAL;
    if (strlen(hp.host) >= host_size) {
        *err = "host name too long";
        return UV_EINVAL;
    }
    plen = path ? strlen(path) : 0;
    while (plen && path[plen - 1] == '/')
        plen--;
    if (plen >= prefix_size) {
        *err = "path too long";
        return UV_EINVAL;
    }
    for (size_t i = 0; i < plen; i++) {
        unsigned char ch = (unsigned char)path[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#') {
            *err = "the path may not hold spaces, controls, '?' or '#'";
            return UV_EINVAL;
        }
    }
    strcpy(host, hp.host);
    *port = hp.port;
    if (plen) memcpy(prefix, path, plen);
    prefix[plen] = '\0';
    return 0;
}

/* ---- following the site's answers ---- */

static int answer_headers(http_parser *hp)
{
    answers *a = hp->data;
    if (hp->status_code == 101 || a->answered == a->sent) {
        a->lost = 1; /* switched protocols, or an answer nobody asked for */
        return 0;
    }
    if (hp->status_code / 100 == 1) return 0;
    return (a->head_bits >> (a->answered % ANSWERS_TRACKED)) & 1 ? 1 : 0; /* HEAD: no body */
}

static int answer_complete(http_parser *hp)
{
    answers *a = hp->data;
    if (a->lost || (hp->status_code / 100 == 1)) return 0; /* 100 Continue and such: not final */
    a->head_bits &= ~(1ull << (a->answered % ANSWERS_TRACKED));
    a->answered++;
    return 0;
}

static const http_parser_settings answer_settings = {
    .on_headers_complete = answer_headers,
    .on_message_complete = answer_complete,
};

static void answers_init(answers *a)
{
    memset(a, 0, sizeof *a);
    http_parser_init(&a->parser, HTTP_RESPONSE);
    a->parser.data = a;
}

static void answers_sent(answers *a, enum http_method method)
{
    if (a->sent - a->answered >= ANSWERS_TRACKED) a->lost = 1;
    if (a->lost) return;
    if (method == HTTP_HEAD) a->head_bits |= 1ull << (a->sent % ANSWERS_TRACKED);
    a->sent++;
}

/* len 0: the site ended (a response without a length ends here). */
static void answers_feed(answers *a, const char *p, size_t len)
{
    if (a->lost) return;
    http_parser_execute(&a->parser, &answer_settings, p, len);
    if (HTTP_PARSER_ERRNO(&a->parser) != HPE_OK) a->lost = 1;
}

/* ---- a connection's life ---- */

static void conn_unref(proxy_conn *c)
{
    wr_site_proxy_t *p = c->proxy;
    if (--c->refs > 0) return;
    *c->prev = c->next;
    if (c->next) c->next->prev = c->prev;
    p->st.active--;
    free(c->pending);
    free(c);
    if (p->freeing && !p->conns) free(p);
}

static void timer_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void ep_closed(wr_endpoint_t *ep)
{
    conn_unref(ep->data);
}

/* Ends both sides now. */
static void conn_close(proxy_conn *c, enum wr_close_mode mode)
{
    if (c->ending) return;
    c->ending = 1;
    if (c->dial) wr_dial_cancel(c->dial); /* its callback drops the dial's reference */
    if (c->visitor) wr_endpoint_close(c->visitor, mode);
    c->visitor = NULL;
    if (c->site) wr_endpoint_close(c->site, mode);
    c->site = NULL;
    uv_close((uv_handle_t *)&c->timer, timer_closed);
}

static void maybe_done(proxy_conn *c)
{
    if (c->visitor_eof && c->site_eof && c->visitor_shut && c->site_shut)
        conn_close(c, WR_CLOSE_GRACEFUL);
}

/* A side that cannot be written to and has stopped sending is gone: end as when it fails. */
static int gone(proxy_conn *c, wr_endpoint_t *ep)
{
    int site = ep == c->site;
    if (!(site ? c->site_broken && c->site_eof : c->visitor_broken && c->visitor_eof)) return 0;
    either_error(ep, UV_EPIPE);
    return 1;
}

/* The result of a write to ep: a side that cannot be written to any more is marked. */
static int wrote(proxy_conn *c, wr_endpoint_t *ep, int rc)
{
    if (rc == UV_ENOMEM) {
        conn_close(c, WR_CLOSE_RESET);
    } else if (rc < 0) {
        if (ep == c->site)
            c->site_broken = 1;
        else
            c->visitor_broken = 1;
        gone(c, ep);
    }
    return rc;
}

/* Writes len bytes to ep: by reference to chunk b, or a copy when b is NULL. */
static int send_bytes(proxy_conn *c, wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    int rc;
    if (!len) return 0;
    if (b) {
        rc = wr_endpoint_write(ep, b, base, len);
    } else {
        wr_buf_t *copy = wr_buf_new(len);
        if (!copy) {
            conn_close(c, WR_CLOSE_RESET);
            return UV_ENOMEM;
        }
        memcpy(copy->data, base, len);
        rc = wr_endpoint_write(ep, copy, copy->data, len);
        wr_buf_release(copy);
    }
    return wrote(c, ep, rc);
}

/* A head goes on whole; with a prefix, an origin-form target gets it in front. */
static int send_head(proxy_conn *c)
{
    wr_site_proxy_t *p = c->proxy;
    wr_http_framer_t *f = &c->framer;
    size_t url_off = (size_t)(f->req.url - f->head), len = f->head_len + p->prefix_len;
    wr_buf_t *b;
    int rc;
    p->st.requests++;
    answers_sent(&c->ans, f->req.method);
    if (!p->prefix_len || f->req.url_len == 0 || f->req.url[0] != '/')
        return send_bytes(c, c->site, NULL, f->head, f->head_len);
    b = wr_buf_new(len);
    if (!b) {
        conn_close(c, WR_CLOSE_RESET);
        return UV_ENOMEM;
    }
    memcpy(b->data, f->head, url_off);
    memcpy(b->data + url_off, p->prefix, p->prefix_len);
    memcpy(b->data + url_off + p->prefix_len, f->head + url_off, f->head_len - url_off);
    rc = wr_endpoint_write(c->site, b, b->data, len);
    wr_buf_release(b);
    return wrote(c, c->site, rc);
}

/* Passing raw from here on: what was kept back of a head goes first. */
static int go_raw(proxy_conn *c)
{
    uv_timer_stop(&c->timer);
    c->proxy->st.raw++;
    return send_bytes(c, c->site, NULL, c->framer.head, c->framer.head_len);
}

static void head_timeout(uv_timer_t *t)
{
    proxy_conn *c = t->data;
    wr_http_framer_give_up(&c->framer);
    go_raw(c);
}

/* Reads from one side only while the other keeps up. */
static void read_visitor(proxy_conn *c)
{
    if (c->visitor && c->site && !c->visitor_eof && !c->claimed &&
        !wr_endpoint_over_high_water(c->site) && wr_endpoint_read_start(c->visitor) < 0)
        conn_close(c, WR_CLOSE_RESET);
}

static void read_site(proxy_conn *c)
{
    if (c->visitor && c->site && !c->site_eof && !wr_endpoint_over_high_water(c->visitor) &&
        wr_endpoint_read_start(c->site) < 0)
        conn_close(c, WR_CLOSE_RESET);
}

/* is_ours claimed the head just completed: keep it and the rest back until the site is done. */
static void claim(proxy_conn *c, const char *rest, size_t rest_len)
{
    wr_http_framer_t *f = &c->framer;
    char *held = malloc(f->head_len + rest_len);
    if (!held) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    memcpy(held, f->head, f->head_len);
    if (rest_len) memcpy(held + f->head_len, rest, rest_len);
    c->pending = held;
    c->pending_len = f->head_len + rest_len;
    c->claimed = 1;
    uv_timer_stop(&c->timer);
    wr_endpoint_read_stop(c->visitor);
    try_hand_over(c);
}

/* The site could not be followed or ended early: the claimed request is the site's after all. */
static void unclaim(proxy_conn *c)
{
    char *held = c->pending;
    size_t len = c->pending_len;
    c->pending = NULL;
    c->pending_len = 0;
    c->claimed = 0;
    wr_http_framer_give_up(&c->framer);
    c->proxy->st.raw++;
    if (send_bytes(c, c->site, NULL, held, len) == 0) read_visitor(c);
    free(held);
}

static void try_hand_over(proxy_conn *c)
{
    wr_site_proxy_t *p = c->proxy;
    wr_endpoint_t *ep = c->visitor;
    char *held = c->pending;
    size_t len = c->pending_len;
    if (!c->claimed) return;
    if (c->ans.lost) {
        unclaim(c);
        return;
    }
    if (c->ans.answered != c->ans.sent) {
        if (c->site_eof) unclaim(c);
        return;
    }
    /* Everything the site owed is answered: the visitor's connection is the carrier's now. */
    c->visitor = NULL;
    c->pending = NULL;
    c->pending_len = 0;
    c->refs--; /* the visitor's: it will not come back to us */
    p->st.claimed++;
    wr_endpoint_set_callbacks(ep, &detached_cbs, NULL);
    conn_close(c, WR_CLOSE_GRACEFUL);
    p->cfg.take(p->cfg.data, ep, held, len);
    free(held);
}

/* Visitor to site: requests framed, heads kept back until whole (and shown to is_ours), bodies
 * and raw bytes passed by reference as they come. */
static void pump_up(proxy_conn *c, wr_buf_t *b, const char *base, size_t len)
{
    wr_site_proxy_t *p = c->proxy;
    wr_http_framer_t *f = &c->framer;
    while (len && !c->ending) {
        size_t used;
        enum wr_framer_event ev = wr_http_framer_next(f, base, len, &used);
        switch (ev) {
        case WR_FRAMER_NEED_MORE:
            if (!uv_is_active((uv_handle_t *)&c->timer))
                uv_timer_start(&c->timer, head_timeout, p->cfg.head_wait_ms, 0);
            break;
        case WR_FRAMER_HEAD:
            uv_timer_stop(&c->timer);
            if (p->cfg.is_ours && p->cfg.take &&
                p->cfg.is_ours(p->cfg.data, &f->req, f->head, f->head_len)) {
                claim(c, base + used, len - used);
                return;
            }
            if (send_head(c) < 0) return;
            break;
        case WR_FRAMER_BODY:
            if (send_bytes(c, c->site, b, base, used) < 0) return;
            break;
        case WR_FRAMER_RAW:
            if (go_raw(c) < 0) return;
            break;
        }
        base += used;
        len -= used;
    }
    if (c->site && wr_endpoint_over_high_water(c->site)) wr_endpoint_read_stop(c->visitor);
}

static void visitor_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    proxy_conn *c = ep->data;
    if (!c->failed && !c->site_broken) pump_up(c, b, base, len); /* else dropped: no site */
}

static void visitor_eof(wr_endpoint_t *ep)
{
    proxy_conn *c = ep->data;
    c->visitor_eof = 1;
    if (gone(c, ep) || c->failed || c->site_broken) return; /* a broken site's reading ends it */
    if (wr_http_framer_at_head(&c->framer) && !c->framer.head_done && c->framer.head_len) {
        /* A head cut short: the site sees it as sent. */
        wr_http_framer_give_up(&c->framer);
        if (go_raw(c) < 0) return;
    }
    if (wr_endpoint_shutdown(c->site) < 0) conn_close(c, WR_CLOSE_RESET);
}

/* One side failed (mostly a reset): as a forwarder that gives up on the connection, pass on what
 * that side sent, then close the other: a FIN after those bytes (or the kernel's reset, when the
 * other side sent bytes nobody will read). */
static void either_error(wr_endpoint_t *ep, int err)
{
    proxy_conn *c = ep->data;
    int from_visitor = ep == c->visitor;
    wr_endpoint_t *other = from_visitor ? c->site : c->visitor;
    wr_debug("site proxy: %s side: %s", from_visitor ? "visitor" : "site", uv_strerror(err));
    if (!other) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    c->failed = 1;
    if (from_visitor)
        c->visitor = NULL;
    else
        c->site = NULL;
    wr_endpoint_close(ep, WR_CLOSE_RESET);
    uv_timer_stop(&c->timer);
    /* The other side is still read (and what it sends dropped) until it is closed: closed with
     * bytes unread, the kernel would reset it where a forwarder, which reads eagerly, ends it. */
    if (!(other->flags & (WR_EP_EOF | WR_EP_READING)) && wr_endpoint_read_start(other) < 0) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    if (!(other->flags & WR_EP_SHUT)) {
        if (wr_endpoint_shutdown(other) < 0) conn_close(c, WR_CLOSE_RESET);
    } else if (from_visitor ? c->site_shut : c->visitor_shut) {
        conn_close(c, WR_CLOSE_GRACEFUL);
    } /* else its shutdown is on the way, and ends it */
}

static void visitor_drain(wr_endpoint_t *ep)
{
    read_site(ep->data);
}

static void visitor_shutdown(wr_endpoint_t *ep, int status)
{
    proxy_conn *c = ep->data;
    if (status < 0) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    c->visitor_shut = 1;
    if (c->failed)
        conn_close(c, WR_CLOSE_GRACEFUL);
    else
        maybe_done(c);
}

static void site_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    proxy_conn *c = ep->data;
    if (c->failed || c->visitor_broken) return; /* the visitor is gone */
    answers_feed(&c->ans, base, len);
    if (send_bytes(c, c->visitor, b, base, len) < 0) return;
    if (wr_endpoint_over_high_water(c->visitor)) wr_endpoint_read_stop(c->site);
    try_hand_over(c);
}

static void site_eof(wr_endpoint_t *ep)
{
    proxy_conn *c = ep->data;
    c->site_eof = 1;
    if (gone(c, ep) || c->failed || c->visitor_broken)
        return; /* a broken visitor's reading ends it */
    answers_feed(&c->ans, NULL, 0);
    try_hand_over(c);
    if (c->ending || !c->visitor) return;
    if (wr_endpoint_shutdown(c->visitor) < 0) conn_close(c, WR_CLOSE_RESET);
}

static void site_drain(wr_endpoint_t *ep)
{
    read_visitor(ep->data);
}

static void site_shutdown(wr_endpoint_t *ep, int status)
{
    proxy_conn *c = ep->data;
    if (status < 0) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    c->site_shut = 1;
    if (c->failed)
        conn_close(c, WR_CLOSE_GRACEFUL);
    else
        maybe_done(c);
}

static const wr_endpoint_cbs_t visitor_cbs = {
    .on_read = visitor_read,
    .on_eof = visitor_eof,
    .on_error = either_error,
    .on_drain = visitor_drain,
    .on_shutdown = visitor_shutdown,
    .on_closed = ep_closed,
};

static const wr_endpoint_cbs_t site_cbs = {
    .on_read = site_read,
    .on_eof = site_eof,
    .on_error = either_error,
    .on_drain = site_drain,
    .on_shutdown = site_shutdown,
    .on_closed = ep_closed,
};

static void dialled(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    proxy_conn *c = data;
    wr_site_proxy_t *p = c->proxy;
    char *already = c->pending;
    size_t len = c->pending_len;
    (void)d;
    c->dial = NULL;
    if (status == 0 && !c->ending) c->site = wr_tcp_endpoint_new(tcp);
    if (!c->site) {
        if (tcp) wr_tcp_close_free(tcp);
        if (!c->ending) {
            p->st.dial_failed++;
            wr_debug("site proxy: %s:%u: %s", p->host, p->port,
                     uv_strerror(status ? status : UV_ENOMEM));
            /* As a forwarder that could not connect: closed, reset if it had unread bytes. */
            conn_close(c, len ? WR_CLOSE_RESET : WR_CLOSE_GRACEFUL);
        }
        conn_unref(c); /* the dial's reference */
        return;
    }
    wr_endpoint_set_callbacks(c->site, &site_cbs, c);
    wr_endpoint_set_watermarks(c->site, WR_SITE_PROXY_LOW_WATER, WR_SITE_PROXY_HIGH_WATER);
    c->pending = NULL;
    c->pending_len = 0;
    pump_up(c, NULL, already, len);
    free(already);
    if (c->ending) return;
    /* The front door saw the visitor's FIN already (bytes cut short before they could be told
     * apart): it cannot be read again, so it is passed on now, as a forwarder would. */
    if (c->visitor && (c->visitor->flags & WR_EP_EOF) && !c->visitor_eof)
        visitor_eof(c->visitor);
    else
        read_visitor(c); /* not while a claimed request waits */
    if (!c->ending) read_site(c);
}

wr_site_proxy_t *wr_site_proxy_new(uv_loop_t *loop, const wr_site_proxy_config *cfg, char **err)
{
    wr_site_proxy_t *p = calloc(1, sizeof *p);
    const char *why = NULL;
    if (err) *err = NULL;
    if (!p) return NULL;
    if (wr_site_proxy_parse_url(cfg->url, p->host, sizeof p->host, &p->port, p->prefix,
                                sizeof p->prefix, &why) != 0) {
        if (err) {
            size_t n = strlen(why) + 1;
            *err = malloc(n);
            if (*err) memcpy(*err, why, n);
        }
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->prefix_len = strlen(p->prefix);
    p->cfg = *cfg;
    p->cfg.url = NULL; /* not kept */
    if (!p->cfg.dial_timeout_ms) p->cfg.dial_timeout_ms = WR_SITE_PROXY_DIAL_TIMEOUT_MS;
    if (!p->cfg.head_wait_ms) p->cfg.head_wait_ms = WR_SITE_PROXY_HEAD_WAIT_MS;
    return p;
}

void wr_site_proxy_free(wr_site_proxy_t *p)
{
    p->freeing = 1;
    if (!p->conns) {
        free(p);
        return;
    }
    for (proxy_conn *c = p->conns; c; c = c->next)
        conn_close(c, WR_CLOSE_RESET);
}

int wr_site_proxy_take(wr_site_proxy_t *p, wr_endpoint_t *ep, const char *already, size_t len)
{
    proxy_conn *c = p->freeing ? NULL : calloc(1, sizeof *c);
    int rc;
    if (!c || (len && !(c->pending = malloc(len)))) {
        free(c);
        wr_endpoint_close(ep, WR_CLOSE_RESET);
        return p->freeing ? UV_ECANCELED : UV_ENOMEM;
    }
    if (len) memcpy(c->pending, already, len);
    c->pending_len = len;
    c->proxy = p;
    c->visitor = ep;
    wr_http_framer_init(&c->framer);
    answers_init(&c->ans);
    uv_timer_init(p->loop, &c->timer);
    c->timer.data = c;
    c->refs = 3; /* visitor, dial, timer */
    c->next = p->conns;
    c->prev = &p->conns;
    if (p->conns) p->conns->prev = &c->next;
    p->conns = c;
    p->st.connections++;
    p->st.active++;
    wr_endpoint_set_callbacks(ep, &visitor_cbs, c);
    wr_endpoint_set_watermarks(ep, WR_SITE_PROXY_LOW_WATER, WR_SITE_PROXY_HIGH_WATER);
    /* Nothing is read from the visitor until the site answers, as with a forwarder. */
    rc = wr_dial(p->loop, p->host, p->port, p->cfg.dial_timeout_ms, dialled, c, &c->dial);
    if (rc != 0) {
        c->dial = NULL;
        c->refs--;
        p->st.dial_failed++;
        conn_close(c, len ? WR_CLOSE_RESET : WR_CLOSE_GRACEFUL);
        return 0;
    }
    return 0;
}

void wr_site_proxy_get_stats(const wr_site_proxy_t *p, wr_site_proxy_stats *out)
{
    *out = p->st;
}
