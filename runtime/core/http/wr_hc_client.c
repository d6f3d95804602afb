#include "wr_hc_client.h"

#include "wr_carrier.h"
#include "wr_crypto.h"
#include "wr_hc_proto.h"
#include "wr_log.h"

#include <http_parser.h>
#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NCONNS             3 /* conns[0] asks for downstream, the others send upstream */
#define POST_MAX_DEFAULT   (256 * 1024)
#define POST_MIN           4096
#define DETECT_MS_DEFAULT  3000
#define GIVE_UP_MS_DEFAULT 30000
#define UP_TIMEOUT_MS      30000
#define STREAM_IDLE_MS     120000 /* the relay sends a keepalive record well within this */
#define POLL_TIMEOUT_MS    90000
#define BACKOFF_MIN_MS     50
#define BACKOFF_MAX_MS     5000
#define RANGES_MAX         16
#define UP_KEPT_MAX        (1024 * 1024) /* upstream bytes kept for their 2xx, those out included */
#define FIRST_TRIES        3 /* answers to the first request not the relay's: a refusal */

typedef struct hc_client hc_client;

typedef struct range {
    uint64_t off, len;
} range;

typedef struct hc_conn {
    hc_client *cl;
    int index;
    wr_carrier_dial_t *dial;
    wr_endpoint_t *ep;
    uv_timer_t timer; /* the request's deadline, the prelude's, or the retry's backoff */
    int busy;         /* a request is out and its answer not complete */
    int answers;      /* answers this connection carried: a request after the first reuses it */
    int reused;       /* the request out went on a connection that had carried an answer */
    int answering;    /* a byte of its answer came */
    int waiting;      /* backing off before the next try */
    uint32_t backoff_ms;
    enum wr_hc_kind kind;
    range up; /* upstream: the range this POST carries */
    uint8_t nonce[WR_HC_NONCE_LEN];
    http_parser parser;
    int status, proof_ok, complete, in_etag;
    int got_body; /* downstream: a record byte came (the prelude shows it streams) */
    uint8_t rec_head[WR_HC_RECORD_HEAD];
    size_t rec_have, rec_left;
    int rec_type;
    uint64_t rec_off; /* offset of the next data byte of this answer */
    char status_line[64];
} hc_conn;

struct hc_client {
    wr_endpoint_t base;
    uv_loop_t *loop;
    char *host, *tls_name, *path, *host_header, *headers, *proxy_host, *proxy_auth, *proxy_auth_b64;
    uint16_t port, proxy_port;
    int proxy_absolute;
    wr_tls_ctx_t *tls;
    uint8_t key[WR_HC_KEY_LEN];
    uint8_t sid[WR_HC_SID_LEN];
    uint32_t post_max, detect_ms, give_up_ms;
    hc_conn conns[NCONNS];
    /* upstream: the session's bytes from up_acked on, in chunks */
    struct chunk {
        wr_buf_t *b;
        const char *base;
        size_t len;
    } * chunks;
    size_t nchunks, chunks_cap;
    uint64_t up_acked, up_next, up_end;
    range resend[RANGES_MAX], acked[RANGES_MAX];
    int nresend, nacked;
    int first_done; /* the relay answered the first POST (it holds the session) */
    int first_refusals;
    /* Kept-alive connections the far end closed under the next request, and reused ones that
     * answered: a path that closed two and never answered on one serves one request each. */
    int reuse_closed, reuse_answered;
    /* downstream */
    uint64_t down_off;
    int streaming;
    uv_idle_t drain; /* a drain the session asked for comes from the loop */
    /* health */
    uint64_t failing_since; /* 0 while requests succeed */
    int pending_closes;
    wr_hc_client_stats st;
    char why[256];
};

static const wr_endpoint_cbs_t no_cbs;
static void pump(hc_client *c);
static void conn_start(hc_conn *k);

static uint64_t now_ms(hc_client *c)
{
    return uv_now(c->loop);
}

static void drain_cb(uv_idle_t *h)
{
    hc_client *c = h->data;
    uv_idle_stop(h);
    if ((c->base.flags & (WR_EP_DRAIN_ARMED | WR_EP_CLOSING)) == WR_EP_DRAIN_ARMED &&
        c->base.queued <= c->base.low_water) {
        c->base.flags &= ~WR_EP_DRAIN_ARMED;
        if (c->base.cbs->on_drain) c->base.cbs->on_drain(&c->base);
    }
}

/* What the session sees as queued: the bytes no POST carries yet, like a socket's send queue, so
 * that it writes on while POSTs are out and the next one leaves full; and, once UP_KEPT_MAX bytes
 * wait for their 2xx, its high water too, so that it waits. */
static void sync_queued(hc_client *c)
{
    uint64_t unsent = c->up_end - c->up_next;
    for (int i = 0; i < c->nresend; i++)
        unsent += c->resend[i].len;
    c->base.queued = c->up_end - c->up_acked >= UP_KEPT_MAX && unsent < c->base.high_water
                         ? c->base.high_water
                         : (size_t)unsent;
    if ((c->base.flags & (WR_EP_DRAIN_ARMED | WR_EP_CLOSING)) == WR_EP_DRAIN_ARMED &&
        c->base.queued <= c->base.low_water)
        uv_idle_start(&c->drain, drain_cb);
}

/* ---- upstream bookkeeping ---- */

static void drop_acked_chunks(hc_client *c)
{
    uint64_t off = c->up_acked - 0; /* offset of chunks[0] is tracked by walking */
    size_t i = 0, drop = 0;
    uint64_t start = c->up_end;
    for (i = c->nchunks; i-- > 0;)
        start -= c->chunks[i].len; /* offset of chunks[0] */
    for (i = 0; i < c->nchunks; i++) {
        if (start + c->chunks[i].len > off) break;
        start += c->chunks[i].len;
        wr_buf_release(c->chunks[i].b);
        drop++;
    }
    if (drop) {
        memmove(c->chunks, c->chunks + drop, (c->nchunks - drop) * sizeof *c->chunks);
        c->nchunks -= drop;
    }
}

/* Copies the upstream bytes [off, off + len) into out. */
static void copy_range(hc_client *c, uint64_t off, size_t len, char *out)
{
    uint64_t start = c->up_end;
    for (size_t i = c->nchunks; i-- > 0;)
        start -= c->chunks[i].len;
    for (size_t i = 0; i < c->nchunks && len; i++) {
        uint64_t end = start + c->chunks[i].len;
        if (end > off) {
            size_t from = (size_t)(off - start), n = (size_t)(end - off);
            if (n > len) n = len;
            memcpy(out, c->chunks[i].base + from, n);
            out += n;
            off += n;
            len -= n;
        }
        start = end;
    }
}

static void ack_range(hc_client *c, range r)
{
    size_t before = (size_t)(c->up_end - c->up_acked);
    if (c->nacked < RANGES_MAX) c->acked[c->nacked++] = r;
    for (int moved = 1; moved;) {
        moved = 0;
        for (int i = 0; i < c->nacked; i++)
            if (c->acked[i].off <= c->up_acked) {
                uint64_t end = c->acked[i].off + c->acked[i].len;
                if (end > c->up_acked) c->up_acked = end;
                c->acked[i] = c->acked[--c->nacked];
                moved = 1;
                break;
            }
    }
    drop_acked_chunks(c);
    c->base.bytes_written += before - (size_t)(c->up_end - c->up_acked);
    sync_queued(c);
}

/* The next range to send: one that failed, else fresh bytes; 0 when there is none. */
static int next_range(hc_client *c, range *r)
{
    if (c->nresend) {
        *r = c->resend[--c->nresend];
        if (r->len > c->post_max) { /* a 413 shrank the size: send the head, keep the rest */
            range rest = {r->off + c->post_max, r->len - c->post_max};
            c->resend[c->nresend++] = rest;
            r->len = c->post_max;
        }
        sync_queued(c);
        return 1;
    }
    if (c->up_next == c->up_end) return 0;
    r->off = c->up_next;
    r->len = c->up_end - c->up_next;
    if (r->len > c->post_max) r->len = c->post_max;
    if (!c->first_done) r->len = c->chunks[0].len; /* the first POST is the first write alone */
    c->up_next += r->len;
    sync_queued(c);
    return 1;
}

/* ---- requests ---- */

static int send_request(hc_conn *k, const char *method, range *body)
{
    hc_client *c = k->cl;
    wr_hc_request_t rq;
    char query[WR_HC_QUERY_MAX], auth[600] = "";
    size_t len = body ? (size_t)body->len : 0, n;
    wr_buf_t *b;
    int w, rc;
    memcpy(rq.sid, c->sid, sizeof rq.sid);
    rq.kind = k->kind;
    rq.offset = body ? body->off : c->down_off;
    if (wr_random(rq.nonce, sizeof rq.nonce) != 0) return UV_EIO;
    memcpy(k->nonce, rq.nonce, sizeof k->nonce);
    if (!wr_hc_query(c->key, &rq, query, sizeof query)) return UV_EINVAL;
    if (strchr(c->path, '?')) query[0] = '&';
    if (c->proxy_absolute && c->proxy_auth_b64)
        snprintf(auth, sizeof auth, "Proxy-Authorization: Basic %s\r\n", c->proxy_auth_b64);
    b = wr_buf_new(1024 + strlen(c->path) + strlen(c->host_header) * 2 + strlen(c->headers) + len);
    if (!b) return UV_ENOMEM;
    w = snprintf(b->data, b->size,
                 "%s %s%s%s%s HTTP/1.1\r\nHost: %s\r\n%s%sCache-Control: no-store\r\n%s%s\r\n",
                 method, c->proxy_absolute ? "http://" : "",
                 c->proxy_absolute ? c->host_header : "", c->path, query, c->host_header,
                 body ? "Content-Type: application/octet-stream\r\n" : "",
                 body ? "" : "Accept: */*\r\n", c->headers, auth);
    if (w <= 0 || (size_t)w >= b->size - len) {
        wr_buf_release(b);
        return UV_EINVAL;
    }
    n = (size_t)w;
    if (body) {
        /* Content-Length goes before the blank line: rewrite the end of the head. */
        n -= 2;
        n += (size_t)snprintf(b->data + n, b->size - n, "Content-Length: %zu\r\n\r\n", len);
        copy_range(c, body->off, len, b->data + n);
        n += len;
    }
    http_parser_init(&k->parser, HTTP_RESPONSE);
    k->parser.data = k;
    k->status = k->proof_ok = k->complete = k->in_etag = k->got_body = 0;
    k->rec_have = k->rec_left = 0;
    k->rec_off = c->down_off;
    k->busy = 1;
    k->reused = k->answers > 0;
    k->answering = 0;
    c->st.requests++;
    rc = wr_endpoint_write(k->ep, b, b->data, n);
    wr_buf_release(b);
    return rc;
}

static void timer_cb(uv_timer_t *t);

static void conn_drop(hc_conn *k)
{
    if (k->dial) {
        wr_carrier_cancel(k->dial);
        k->dial = NULL;
    }
    if (k->ep) {
        wr_endpoint_set_callbacks(k->ep, &no_cbs, NULL);
        wr_endpoint_close(k->ep, WR_CLOSE_RESET);
        k->ep = NULL;
    }
    k->busy = 0;
    k->answers = 0;
}

/* A request did not get its answer (or got a failing one): undo it, wait, try again. */
static void request_failed(hc_conn *k)
{
    hc_client *c = k->cl;
    wr_debug("http carrier: %s request failed (HTTP %d%s)",
             k->kind == WR_HC_UP     ? "upstream"
             : k->kind == WR_HC_DOWN ? "downstream"
                                     : "poll",
             k->status, k->busy ? "" : ", not sent");
    if (k->busy && k->kind == WR_HC_UP && c->nresend < RANGES_MAX) c->resend[c->nresend++] = k->up;
    sync_queued(c);
    conn_drop(k);
    if (!c->failing_since) c->failing_since = now_ms(c);
    if (now_ms(c) - c->failing_since >= c->give_up_ms) {
        snprintf(c->why, sizeof c->why, "the relay stopped answering the HTTP carrier's requests");
        wr_endpoint__report_error(&c->base, UV_ETIMEDOUT);
        return;
    }
    c->st.retries++;
    k->backoff_ms = k->backoff_ms ? k->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (k->backoff_ms > BACKOFF_MAX_MS) k->backoff_ms = BACKOFF_MAX_MS;
    k->waiting = 1;
    uv_timer_start(&k->timer, timer_cb,
                   k->backoff_ms / 2 + (uint64_t)rand() % (k->backoff_ms / 2 + 1), 0);
}

/* The far end closed a kept-alive connection before any answer to the request just written on it:
 * a proxy that serves one request per connection and says so to nobody (tinyproxy drops the
 * relay's "Connection: close"), or an idle close that crossed the request. The request never
 * got to be one: it goes again at once on a new connection, not as a failure of the path. */
static void reuse_closed(hc_conn *k)
{
    hc_client *c = k->cl;
    wr_debug(
        "http carrier: %s request met the close of a kept-alive connection: sent again at once",
        k->kind == WR_HC_UP     ? "upstream"
        : k->kind == WR_HC_DOWN ? "downstream"
                                : "poll");
    if (++c->reuse_closed == 2 && !c->reuse_answered)
        wr_info("http carrier: the path closes each connection after one answer (a proxy such as "
                "tinyproxy?): a new connection for every request from now on");
    if (k->kind == WR_HC_UP && c->nresend < RANGES_MAX) c->resend[c->nresend++] = k->up;
    sync_queued(c);
    conn_drop(k);
    uv_timer_stop(&k->timer);
    pump(c);
}

/* Whether a connection whose answer asks to stay open is used again. */
static int reuse_ok(const hc_client *c)
{
    return c->reuse_answered || c->reuse_closed < 2;
}

static void request_done(hc_conn *k)
{
    hc_client *c = k->cl;
    int keep;
    if (k->reused) c->reuse_answered = 1;
    /* Decided before anything below can start the next request on this connection. */
    keep = http_should_keep_alive(&k->parser) && reuse_ok(c);
    k->answers++;
    k->busy = 0;
    k->backoff_ms = 0;
    c->failing_since = 0;
    uv_timer_stop(&k->timer);
    if (!keep) conn_drop(k);
    if (k->kind == WR_HC_UP) {
        c->first_done = 1;
        ack_range(c, k->up); /* may drain the session, which writes and starts requests */
    }
    pump(c);
}

/* ---- answers ---- */

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    hc_conn *k = p->data;
    k->in_etag = len == 4 && strncasecmp(at, "ETag", 4) == 0;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    hc_conn *k = p->data;
    char proof[WR_HC_PROOF_LEN + 1];
    if (!k->in_etag) return 0;
    k->in_etag = 0;
    if (len == WR_HC_PROOF_LEN + 2 && at[0] == '"' && at[len - 1] == '"' &&
        wr_hc_proof(k->cl->key, k->nonce, proof) == 0 &&
        wr_ct_equal(proof, at + 1, WR_HC_PROOF_LEN))
        k->proof_ok = 1;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    hc_conn *k = p->data;
    k->status = p->status_code;
    return 0;
}

/* Session bytes at offset off of this answer: only what is new goes up. */
static int deliver(hc_conn *k, const char *data, size_t len, uint64_t off)
{
    hc_client *c = k->cl;
    if (off + len <= c->down_off) return 0;
    if (off > c->down_off) return -1; /* a gap: the relay never skips */
    data += c->down_off - off;
    len -= (size_t)(c->down_off - off);
    c->down_off += len;
    c->base.bytes_read += len;
    if (c->base.cbs->on_read) {
        wr_buf_t *b = wr_buf_new(len);
        if (!b) return -1;
        memcpy(b->data, data, len);
        c->base.cbs->on_read(&c->base, b, b->data, len);
        wr_buf_release(b);
    }
    return (c->base.flags & WR_EP_CLOSING) ? -1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    hc_conn *k = p->data;
    if (k->kind == WR_HC_UP || k->status != 200 || !k->proof_ok) return 0;
    k->got_body = 1;
    if (k->kind == WR_HC_DOWN) uv_timer_start(&k->timer, timer_cb, STREAM_IDLE_MS, 0);
    while (len) {
        if (k->rec_have < WR_HC_RECORD_HEAD) {
            k->rec_head[k->rec_have++] = (uint8_t)*at++;
            len--;
            if (k->rec_have == WR_HC_RECORD_HEAD) {
                k->rec_type = k->rec_head[0];
                k->rec_left =
                    (size_t)k->rec_head[1] << 16 | (size_t)k->rec_head[2] << 8 | k->rec_head[3];
                if (k->rec_type != WR_HC_RECORD_DATA && k->rec_type != WR_HC_RECORD_PAD) return -1;
                if (k->rec_left == 0) k->rec_have = 0;
            }
            continue;
        }
        size_t n = k->rec_left < len ? k->rec_left : len;
        if (k->rec_type == WR_HC_RECORD_DATA) {
            if (deliver(k, at, n, k->rec_off) != 0) return -1;
            k->rec_off += n;
        }
        at += n;
        len -= n;
        k->rec_left -= n;
        if (k->rec_left == 0) k->rec_have = 0;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    hc_conn *k = p->data;
    k->complete = 1;
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* The first request came back with something else than the carrier's answer: say what. */
static void refused(hc_conn *k)
{
    hc_client *c = k->cl;
    snprintf(c->why, sizeof c->why,
             "the relay answered the HTTP carrier's first request with HTTP %d: wrong key, clocks "
             "more than 30 s apart, a front that changes requests, or not a warren relay",
             k->status);
    wr_endpoint__report_error(&c->base, UV_EPROTO);
}

static void in_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    hc_conn *k = ep->data;
    hc_client *c = k->cl;
    size_t n;
    (void)b;
    if (!k->busy) { /* the relay speaks out of turn */
        conn_drop(k);
        pump(c);
        return;
    }
    k->answering = 1;
    n = http_parser_execute(&k->parser, &parser_settings, base, len);
    if (c->base.flags & (WR_EP_CLOSING | WR_EP_ERRORED)) return;
    if (k->parser.http_errno != HPE_OK || n != len) {
        if (!k->complete) {
            request_failed(k);
            return;
        }
    }
    if (!k->complete) return;
    if (k->status == 413 && k->kind == WR_HC_UP) {
        c->st.too_large++;
        if (c->post_max / 2 >= POST_MIN) c->post_max /= 2;
        request_failed(k);
        return;
    }
    if (k->status / 100 != 2 || !k->proof_ok) {
        /* A proxy that sent the first request twice: its copy made the session, and ours reads
         * as a replay. The same bytes with a fresh nonce are answered; a wrong key never is. */
        if (!c->first_done && k->kind == WR_HC_UP && ++c->first_refusals >= FIRST_TRIES) {
            refused(k);
            return;
        }
        request_failed(k);
        return;
    }
    request_done(k);
}

/* The connection ended (closed or failed) without a complete answer to take. */
static void conn_lost(hc_conn *k)
{
    if (k->busy && k->reused && !k->answering) {
        reuse_closed(k);
        return;
    }
    if (k->busy) {
        request_failed(k);
        return;
    }
    conn_drop(k); /* an idle keep-alive connection the far end closed */
    pump(k->cl);
}

static void in_eof(wr_endpoint_t *ep)
{
    hc_conn *k = ep->data;
    /* An answer without a length ends with the connection. */
    if (k->busy) http_parser_execute(&k->parser, &parser_settings, NULL, 0);
    if (k->busy && k->complete && k->status / 100 == 2 && k->proof_ok) {
        request_done(k);
        conn_drop(k);
        return;
    }
    conn_lost(k);
}

static void in_error(wr_endpoint_t *ep, int err)
{
    (void)err;
    conn_lost(ep->data);
}

static const wr_endpoint_cbs_t conn_cbs = {
    .on_read = in_read,
    .on_eof = in_eof,
    .on_error = in_error,
};

/* ---- connections ---- */

static void start_on(hc_conn *k)
{
    hc_client *c = k->cl;
    range r;
    int rc;
    if (k->index == 0) {
        if (!c->first_done) return;
        k->kind = c->streaming ? WR_HC_DOWN : WR_HC_POLL;
        if (k->kind == WR_HC_POLL) c->st.polls++;
        rc = send_request(k, "GET", NULL);
        if (rc == 0)
            uv_timer_start(&k->timer, timer_cb,
                           k->kind == WR_HC_DOWN ? c->detect_ms : POLL_TIMEOUT_MS, 0);
    } else {
        if (!next_range(c, &r)) return;
        k->kind = WR_HC_UP;
        k->up = r;
        rc = send_request(k, "POST", &r);
        if (rc == 0) uv_timer_start(&k->timer, timer_cb, UP_TIMEOUT_MS, 0);
    }
    if (rc < 0) request_failed(k);
}

/* A connection is up: it reads answers from now on. 0 or a libuv code. */
static int conn_adopt(hc_conn *k, wr_endpoint_t *ep)
{
    k->ep = ep;
    wr_endpoint_set_callbacks(ep, &conn_cbs, k);
    return wr_endpoint_read_start(ep);
}

static void dialed(int status, const char *err, wr_endpoint_t *ep, void *data)
{
    hc_conn *k = data;
    k->dial = NULL;
    (void)err;
    if (status != 0 || conn_adopt(k, ep) < 0) {
        request_failed(k);
        return;
    }
    start_on(k);
}

static void conn_start(hc_conn *k)
{
    hc_client *c = k->cl;
    wr_carrier_spec spec;
    if (k->busy || k->waiting || k->dial || (c->base.flags & (WR_EP_CLOSING | WR_EP_ERRORED)))
        return;
    if (k->ep) {
        start_on(k);
        return;
    }
    /* Dial only when there is something to ask. */
    if (k->index == 0 ? !c->first_done : (!c->nresend && c->up_next == c->up_end)) return;
    if (k->index > 1 && !c->first_done) return;
    memset(&spec, 0, sizeof spec);
    spec.kind = c->tls ? WR_CARRIER_TLS : WR_CARRIER_TCP;
    spec.host = c->proxy_absolute ? c->proxy_host : c->host;
    spec.port = c->proxy_absolute ? c->proxy_port : c->port;
    spec.tls = c->tls;
    spec.tls_name = c->tls_name;
    if (c->proxy_host && !c->proxy_absolute) { /* https through CONNECT */
        spec.proxy_host = c->proxy_host;
        spec.proxy_port = c->proxy_port;
        spec.proxy_auth = c->proxy_auth;
    }
    if (wr_carrier_dial(c->loop, &spec, dialed, k, &k->dial) != 0) {
        k->dial = NULL;
        request_failed(k);
    }
}

static void pump(hc_client *c)
{
    for (int i = 0; i < NCONNS; i++)
        conn_start(&c->conns[i]);
}

static void timer_cb(uv_timer_t *t)
{
    hc_conn *k = t->data;
    hc_client *c = k->cl;
    if (k->waiting) {
        k->waiting = 0;
        conn_start(k);
        return;
    }
    if (k->busy && k->kind == WR_HC_DOWN && !k->got_body && c->streaming) {
        /* No prelude in time: something holds the answer back. Long polls from now on. */
        wr_info("http carrier: the downstream answer does not stream (a buffering proxy?): "
                "long polls from now on");
        c->streaming = 0;
        c->st.streaming = 0;
        conn_drop(k);
        conn_start(k);
        return;
    }
    request_failed(k);
}

/* ---- the endpoint ---- */

static int hc_read_start(wr_endpoint_t *ep)
{
    if (ep->flags & (WR_EP_CLOSING | WR_EP_EOF)) return UV_EINVAL;
    ep->flags |= WR_EP_READING;
    return 0;
}

static int hc_read_stop(wr_endpoint_t *ep)
{
    ep->flags &= ~WR_EP_READING;
    return 0;
}

static int hc_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    hc_client *c = (hc_client *)ep;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_SHUT | WR_EP_ERRORED)) return UV_EPIPE;
    if (len == 0) return 0;
    if (c->nchunks == c->chunks_cap) {
        size_t cap = c->chunks_cap ? c->chunks_cap * 2 : 16;
        void *p = realloc(c->chunks, cap * sizeof *c->chunks);
        if (!p) return UV_ENOMEM;
        c->chunks = p;
        c->chunks_cap = cap;
    }
    c->chunks[c->nchunks].b = wr_buf_retain(b);
    c->chunks[c->nchunks].base = base;
    c->chunks[c->nchunks].len = len;
    c->nchunks++;
    c->up_end += len;
    sync_queued(c);
    if (c->base.queued >= c->base.high_water) c->base.flags |= WR_EP_DRAIN_ARMED;
    pump(c);
    return 0;
}

static int hc_shutdown(wr_endpoint_t *ep)
{
    /* Nothing to tell the relay: the session's own end says it. */
    ep->flags |= WR_EP_SHUT;
    return 0;
}

static void handle_closed(hc_client *c)
{
    if (--c->pending_closes > 0) return;
    for (size_t i = 0; i < c->nchunks; i++)
        wr_buf_release(c->chunks[i].b);
    free(c->chunks);
    if (c->tls) wr_tls_ctx_free(c->tls);
    free(c->host);
    free(c->tls_name);
    free(c->path);
    free(c->host_header);
    free(c->headers);
    free(c->proxy_host);
    free(c->proxy_auth);
    free(c->proxy_auth_b64);
    wr_zeroize(c->key, sizeof c->key);
    if (c->base.cbs->on_closed) c->base.cbs->on_closed(&c->base);
    free(c);
}

static void timer_closed(uv_handle_t *h)
{
    hc_conn *k = h->data;
    handle_closed(k->cl);
}

static void drain_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void hc_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    hc_client *c = (hc_client *)ep;
    (void)mode;
    if (ep->flags & WR_EP_CLOSING) return;
    ep->flags |= WR_EP_CLOSING;
    ep->flags &= ~WR_EP_READING;
    for (int i = 0; i < NCONNS; i++) {
        conn_drop(&c->conns[i]);
        uv_close((uv_handle_t *)&c->conns[i].timer, timer_closed);
    }
    uv_close((uv_handle_t *)&c->drain, drain_closed);
}

static const char *hc_why(wr_endpoint_t *ep)
{
    hc_client *c = (hc_client *)ep;
    return c->why[0] ? c->why : NULL;
}

static const wr_endpoint_ops_t hc_ops = {
    .kind = "http",
    .read_start = hc_read_start,
    .read_stop = hc_read_stop,
    .write = hc_write,
    .shutdown = hc_shutdown,
    .close = hc_close,
    .why = hc_why,
};

static char *dup_or(const char *s, const char *fallback)
{
    return strdup(s ? s : fallback);
}

wr_endpoint_t *wr_hc_client_new(uv_loop_t *loop, const wr_hc_client_config *cfg,
                                wr_endpoint_t *first)
{
    hc_client *c;
    char hh[300];
    if (!cfg->host || !cfg->port || !cfg->psk || (cfg->path && cfg->path[0] != '/')) return NULL;
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
    wr_endpoint__init(&c->base, &hc_ops, &no_cbs);
    c->base.keepalive_min_ms = WR_HC_KEEPALIVE_MS;
    c->loop = loop;
    if (strchr(cfg->host, ':'))
        snprintf(hh, sizeof hh, "[%s]:%u", cfg->host, (unsigned)cfg->port);
    else
        snprintf(hh, sizeof hh, "%s:%u", cfg->host, (unsigned)cfg->port);
    c->host = strdup(cfg->host);
    c->tls_name = cfg->tls_name ? strdup(cfg->tls_name) : NULL;
    c->path = dup_or(cfg->path, "/");
    c->host_header = dup_or(cfg->host_header, hh);
    c->headers = dup_or(cfg->headers, "");
    c->port = cfg->port;
    if (cfg->proxy_host) {
        c->proxy_host = strdup(cfg->proxy_host);
        c->proxy_port = cfg->proxy_port;
        c->proxy_absolute = cfg->proxy_absolute;
    }
    if (cfg->proxy_auth) {
        c->proxy_auth = strdup(cfg->proxy_auth);
        size_t n = 0, cap = strlen(cfg->proxy_auth) * 4 / 3 + 8;
        c->proxy_auth_b64 = malloc(cap);
        if (c->proxy_auth_b64)
            mbedtls_base64_encode((unsigned char *)c->proxy_auth_b64, cap, &n,
                                  (const unsigned char *)cfg->proxy_auth, strlen(cfg->proxy_auth));
    }
    c->post_max = cfg->post_max ? cfg->post_max : POST_MAX_DEFAULT;
    c->detect_ms = cfg->stream_detect_ms ? cfg->stream_detect_ms : DETECT_MS_DEFAULT;
    c->give_up_ms = cfg->give_up_ms ? cfg->give_up_ms : GIVE_UP_MS_DEFAULT;
    c->streaming = 1;
    c->st.streaming = 1;
    if (!c->host || !c->path || !c->host_header || !c->headers ||
        (cfg->proxy_host && !c->proxy_host) ||
        (cfg->proxy_auth && (!c->proxy_auth || !c->proxy_auth_b64)) ||
        wr_hc_key(cfg->psk, c->key) != 0 || wr_random(c->sid, sizeof c->sid) != 0) {
        free(c->host);
        free(c->tls_name);
        free(c->path);
        free(c->host_header);
        free(c->headers);
        free(c->proxy_host);
        free(c->proxy_auth);
        free(c->proxy_auth_b64);
        free(c);
        return NULL;
    }
    if (cfg->tls) c->tls = wr_tls_ctx_ref(cfg->tls);
    for (int i = 0; i < NCONNS; i++) {
        c->conns[i].cl = c;
        c->conns[i].index = i;
        uv_timer_init(loop, &c->conns[i].timer);
        c->conns[i].timer.data = &c->conns[i];
    }
    uv_idle_init(loop, &c->drain);
    c->drain.data = c;
    c->pending_closes = NCONNS + 1;
    if (conn_adopt(&c->conns[1], first) < 0) {
        c->conns[1].ep = NULL; /* still the caller's */
        wr_endpoint_set_callbacks(first, &no_cbs, NULL);
        hc_close(&c->base, WR_CLOSE_RESET);
        return NULL;
    }
    return &c->base;
}

void wr_hc_client_get_stats(wr_endpoint_t *ep, wr_hc_client_stats *out)
{
    if (ep->ops != &hc_ops) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = ((hc_client *)ep)->st;
}
