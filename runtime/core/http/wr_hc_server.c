#include "wr_hc_server.h"

#include "wr_crypto.h"
#include "wr_handshake.h"
#include "wr_hc_proto.h"
#include "wr_hc_reorder.h"
#include "wr_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS          256
#define NONCES_KEPT      1024 /* a request replayed within a session's last 1024 is refused */
#define UP_BODY_MAX      (1024 * 1024)
#define UP_BODY_CHUNKS   ((UP_BODY_MAX + WR_BUF_SIZE - 1) / WR_BUF_SIZE)
#define FIRST_BODY_MAX   WR_HS_MSG1_MAX
#define REORDER_MAX      (8 * 1024 * 1024)
#define DOWN_MAX_DEFAULT (4 * 1024 * 1024)
#define REAP_MS_DEFAULT  60000
#define POLL_MS_DEFAULT  25000
#define POLL_BODY_MAX    (1024 * 1024)
#define KEEPALIVE_MIN_MS                                                                           \
    15000 /* a streaming answer idle this long gets padding (plus up to 30 s) */
#define CONN_IDLE_MS 60000
#define CONN_BUF     (WR_HTTP_HEAD_MAX + FIRST_BODY_MAX)

typedef struct hc_sess hc_sess;
typedef struct hc_conn hc_conn;

struct wr_hc_server {
    uv_loop_t *loop;
    wr_server_t *server;
    uint8_t (*keys)[WR_HC_KEY_LEN]; /* one per user: a new session's first request tries each */
    size_t nkeys;
    wr_fallback_t site;
    size_t down_max;
    uint32_t reap_ms, poll_max_ms;
    hc_sess *buckets[BUCKETS];
    hc_conn *conns;
    uint32_t live; /* sessions and connections not yet freed */
    int freeing;
    wr_hc_server_stats st;
};

struct hc_sess {
    wr_endpoint_t base; /* the session's carrier */
    wr_hc_server_t *hs;
    hc_sess *next; /* in its bucket */
    uint8_t sid[WR_HC_SID_LEN];
    uint8_t key[WR_HC_KEY_LEN]; /* the user's, from the first request: the later ones use it */
    uint8_t nonces[NONCES_KEPT][WR_HC_NONCE_LEN];
    size_t nnonces, nonce_next;
    wr_hc_upq up;     /* upstream: the session's bytes put in order */
    wr_hc_downq down; /* downstream: the relay's bytes kept until acknowledged */
    hc_conn *getter;  /* the connection answering a downstream request now */
    uv_timer_t timer; /* reaping */
    uv_idle_t idle;   /* callbacks that must come from the loop (shutdown) */
    uint64_t last_seen;
    int in_table, shut_pending, drain_pending, closes_left;
};

enum conn_phase { C_HEAD, C_BODY, C_STREAM, C_POLL, C_FIN, C_GONE };

struct hc_conn {
    wr_hc_server_t *hs;
    hc_conn *next, **prev;
    wr_endpoint_t *ep;
    struct sockaddr_storage peer;
    uv_timer_t timer; /* keep-alive idle, poll wait, stream keepalive */
    enum conn_phase phase;
    wr_http_head_t head;
    char buf[CONN_BUF];
    size_t len; /* bytes in buf */
    size_t head_len;
    wr_hc_request_t rq;
    uint8_t key[WR_HC_KEY_LEN]; /* the key rq's tag was made with: the answer's proof uses it */
    hc_sess *sess;              /* downstream: the session this answer is for */
    /* The upstream body of a session we hold, in pooled chunks that go to the session as they
     * are: no copy, and no fresh pages to fault in for every POST. */
    wr_buf_t *body[UP_BODY_CHUNKS];
    int has_body;
    size_t body_len, body_have;
    uint64_t sent_to; /* downstream: the offset this answer has reached */
    uint64_t answer_bytes;
    int keep_alive, in_process, poll_soon;
};

static const wr_endpoint_cbs_t no_cbs;
static void keepalive_cb(uv_timer_t *t);

static void body_free(hc_conn *c)
{
    for (size_t i = 0; i < UP_BODY_CHUNKS && c->body[i]; i++) {
        wr_buf_release(c->body[i]);
        c->body[i] = NULL;
    }
    c->has_body = 0;
}

/* Chunks for a body of c->body_len bytes: full ones from the cache, the last one to size. 0, or
 * -1 when out of memory. */
static int body_alloc(hc_conn *c)
{
    c->has_body = 1;
    c->body_have = 0;
    for (size_t i = 0; i * WR_BUF_SIZE < c->body_len; i++) {
        size_t left = c->body_len - i * WR_BUF_SIZE;
        if (!(c->body[i] = left >= WR_BUF_SIZE ? wr_buf_get() : wr_buf_new(left))) return -1;
    }
    return 0;
}

/* Appends up to len bytes to the body; returns how many it took. */
static size_t body_put(hc_conn *c, const char *data, size_t len)
{
    size_t took = 0;
    while (len && c->body_have < c->body_len) {
        size_t at = c->body_have % WR_BUF_SIZE, n = WR_BUF_SIZE - at;
        if (n > len) n = len;
        if (n > c->body_len - c->body_have) n = c->body_len - c->body_have;
        memcpy(c->body[c->body_have / WR_BUF_SIZE]->data + at, data, n);
        c->body_have += n;
        data += n;
        len -= n;
        took += n;
    }
    return took;
}

static void maybe_free_server(wr_hc_server_t *hs)
{
    if (!hs->freeing || hs->live) return;
    wr_zeroize(hs->keys, hs->nkeys * sizeof *hs->keys);
    free(hs->keys);
    free(hs);
}

/* ---- sessions ---- */

static hc_sess **bucket(wr_hc_server_t *hs, const uint8_t sid[WR_HC_SID_LEN])
{
    return &hs->buckets[sid[0] ^ sid[7]];
}

static hc_sess *find(wr_hc_server_t *hs, const uint8_t sid[WR_HC_SID_LEN])
{
    for (hc_sess *s = *bucket(hs, sid); s; s = s->next)
        if (memcmp(s->sid, sid, WR_HC_SID_LEN) == 0) return s;
    return NULL;
}

static void unlink_sess(hc_sess *s)
{
    if (!s->in_table) return;
    for (hc_sess **p = bucket(s->hs, s->sid); *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    s->in_table = 0;
    s->hs->st.active--;
}

/* Reads a request's query and finds the key its tag was made with: a session's own, or for the
 * first request of a new session (an upstream at offset 0) each user's in turn. 0 and key set, or
 * -1: not a carrier request. */
static int request_key(wr_hc_server_t *hs, const char *url, size_t len, wr_hc_request_t *rq,
                       uint8_t key[WR_HC_KEY_LEN])
{
    uint8_t tag[WR_HC_TAG_LEN];
    hc_sess *s;
    if (wr_hc_parse_fields(url, len, rq, tag) != 0) return -1;
    s = find(hs, rq->sid);
    if (s) {
        if (wr_hc_check_tag(s->key, rq, tag) != 0) return -1;
        memcpy(key, s->key, WR_HC_KEY_LEN);
        return 0;
    }
    if (rq->kind != WR_HC_UP || rq->offset != 0) return -1;
    for (size_t i = 0; i < hs->nkeys; i++)
        if (wr_hc_check_tag(hs->keys[i], rq, tag) == 0) {
            memcpy(key, hs->keys[i], WR_HC_KEY_LEN);
            return 0;
        }
    return -1;
}

static int nonce_seen(hc_sess *s, const uint8_t nonce[WR_HC_NONCE_LEN])
{
    for (size_t i = 0; i < s->nnonces; i++)
        if (memcmp(s->nonces[i], nonce, WR_HC_NONCE_LEN) == 0) return 1;
    return 0;
}

static void nonce_add(hc_sess *s, const uint8_t nonce[WR_HC_NONCE_LEN])
{
    memcpy(s->nonces[s->nonce_next], nonce, WR_HC_NONCE_LEN);
    s->nonce_next = (s->nonce_next + 1) % NONCES_KEPT;
    if (s->nnonces < NONCES_KEPT) s->nnonces++;
}

static void idle_cb(uv_idle_t *h);

/* What the session sees as queued: bytes no answer has carried yet, like a socket's send queue;
 * and, once down_max bytes wait for the client to show they arrived, its high water too, so the
 * session waits. A drain it asked for comes from the loop. */
static void sync_queued(hc_sess *s)
{
    size_t unsent = (size_t)(s->down.end - s->down.sent_hi);
    size_t unacked = (size_t)(s->down.end - s->down.base);
    s->base.queued =
        unacked >= s->hs->down_max && unsent < s->base.high_water ? s->base.high_water : unsent;
    if ((s->base.flags & WR_EP_DRAIN_ARMED) && s->base.queued <= s->base.low_water &&
        !s->drain_pending && !(s->base.flags & WR_EP_CLOSING)) {
        s->drain_pending = 1;
        uv_idle_start(&s->idle, idle_cb);
    }
}

/* The client showed what arrived: drop it, and let the session write again. */
static void down_ack(hc_sess *s, uint64_t off)
{
    s->base.bytes_written += wr_hc_downq_ack(&s->down, off);
    sync_queued(s);
}

/* What deliver_up gets: the session, and the body chunk the bytes may lie in. */
typedef struct up_input {
    hc_sess *s;
    wr_buf_t *chunk;
} up_input;

/* The next upstream bytes in order, for the session; 1 once it is ending. Bytes of the body's
 * chunk go as they are; bytes that waited in the reorder buffer are copied out. */
static int deliver_up(void *ctx, const char *data, size_t len)
{
    up_input *in = ctx;
    hc_sess *s = in->s;
    wr_buf_t *b;
    if (in->chunk && data >= in->chunk->data && data + len <= in->chunk->data + in->chunk->size) {
        b = wr_buf_retain(in->chunk);
    } else {
        if (!(b = wr_buf_new(len))) return -1;
        memcpy(b->data, data, len);
        data = b->data;
    }
    s->base.bytes_read += len;
    s->hs->st.up_bytes += len;
    if (s->base.cbs->on_read) s->base.cbs->on_read(&s->base, b, data, len);
    wr_buf_release(b);
    return (s->base.flags & WR_EP_CLOSING) ? 1 : 0;
}

/* ---- answers ---- */

static void conn_close(hc_conn *c, enum wr_close_mode mode)
{
    if (c->phase == C_GONE) return;
    c->phase = C_GONE;
    if (c->sess && c->sess->getter == c) c->sess->getter = NULL;
    c->sess = NULL;
    body_free(c);
    uv_timer_stop(&c->timer);
    if (c->ep) wr_endpoint_close(c->ep, mode);
}

static int conn_write(hc_conn *c, const char *data, size_t len)
{
    wr_buf_t *b = wr_buf_new(len);
    int rc;
    if (!b) return UV_ENOMEM;
    memcpy(b->data, data, len);
    rc = wr_endpoint_write(c->ep, b, b->data, len);
    wr_buf_release(b);
    return rc;
}

static int answer_head(hc_conn *c, const char *status, const char *extra, int proof)
{
    char head[512], etag[WR_HC_PROOF_LEN + 16] = "";
    char p[WR_HC_PROOF_LEN + 1];
    int n;
    if (proof && wr_hc_proof(c->key, c->rq.nonce, p) == 0)
        snprintf(etag, sizeof etag, "ETag: \"%s\"\r\n", p);
    n = snprintf(head, sizeof head, "HTTP/1.1 %s\r\nCache-Control: no-store\r\n%s%s%s\r\n", status,
                 etag, c->keep_alive ? "" : "Connection: close\r\n", extra);
    return conn_write(c, head, (size_t)n);
}

static void process(hc_conn *c);

/* The answer is whole: the connection reads its next request (or ends, without keep-alive). */
static void answer_done(hc_conn *c)
{
    if (c->sess && c->sess->getter == c) c->sess->getter = NULL;
    c->sess = NULL;
    c->phase = C_HEAD;
    wr_http_head_init(&c->head);
    c->poll_soon = 0;
    if (!c->keep_alive) {
        /* Flushed, then FIN; the peer's close (or the idle timer) ends it. */
        c->phase = C_FIN;
        if (wr_endpoint_shutdown(c->ep) < 0) conn_close(c, WR_CLOSE_RESET);
        uv_timer_start(&c->timer, keepalive_cb, CONN_IDLE_MS, 0);
        return;
    }
    uv_timer_start(&c->timer, keepalive_cb, CONN_IDLE_MS, 0);
    if (!c->in_process) process(c);
}

/* Session bytes from c->sent_to, up to max, as data records into out; returns the bytes used. */
static size_t fill_records(hc_conn *c, char *out, size_t max)
{
    uint64_t from = c->sent_to;
    size_t used = wr_hc_downq_fill(&c->sess->down, &c->sent_to, out, max);
    c->hs->st.down_bytes += c->sent_to - from;
    sync_queued(c->sess);
    return used;
}

/* A streaming answer: what the session has written, as chunks, while the connection takes them;
 * ended once it carried half of what may be kept, so the client's next request acknowledges. */
static void stream_send(hc_conn *c)
{
    hc_sess *s = c->sess;
    while (c->phase == C_STREAM && s && c->sent_to < s->down.end &&
           !wr_endpoint_over_high_water(c->ep)) {
        wr_buf_t *b = wr_buf_get();
        size_t n;
        int hl;
        if (!b) {
            conn_close(c, WR_CLOSE_RESET);
            return;
        }
        n = fill_records(c, b->data + 16, b->size - 32);
        if (n == 0) { /* an empty chunk would end the answer */
            wr_buf_release(b);
            return;
        }
        hl = snprintf(b->data, 16, "%zx\r\n", n);
        memmove(b->data + hl, b->data + 16, n);
        memcpy(b->data + hl + n, "\r\n", 2);
        c->answer_bytes += n;
        if (wr_endpoint_write(c->ep, b, b->data, (size_t)hl + n + 2) < 0) {
            wr_buf_release(b);
            conn_close(c, WR_CLOSE_RESET);
            return;
        }
        wr_buf_release(b);
        uv_timer_start(&c->timer, keepalive_cb, KEEPALIVE_MIN_MS + (uint64_t)rand() % 30000, 0);
        if (c->answer_bytes >= c->hs->down_max / 2) {
            conn_write(c, "0\r\n\r\n", 5);
            answer_done(c);
            return;
        }
    }
}

/* A long poll's answer: what there is now (possibly nothing), whole. */
static void poll_answer(hc_conn *c)
{
    char extra[64];
    wr_buf_t *b = wr_buf_new(POLL_BODY_MAX + 64);
    size_t n = 0;
    if (!b) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    if (c->sess) n = fill_records(c, b->data, POLL_BODY_MAX);
    snprintf(extra, sizeof extra, "Content-Length: %zu\r\n", n);
    uv_timer_stop(&c->timer);
    if (answer_head(c, "200 OK", extra, 1) < 0 ||
        (n && wr_endpoint_write(c->ep, b, b->data, n) < 0)) {
        wr_buf_release(b);
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    wr_buf_release(b);
    answer_done(c);
}

static void keepalive_cb(uv_timer_t *t)
{
    hc_conn *c = t->data;
    if (c->phase == C_POLL) {
        poll_answer(c);
    } else if (c->phase == C_STREAM) {
        /* No path may see 100 s without a byte: padding of a random length. */
        char chunk[96];
        uint8_t pad = 0;
        wr_random(&pad, 1);
        size_t n = 8 + pad % 48;
        int hl = snprintf(chunk, 16, "%zx\r\n", n + WR_HC_RECORD_HEAD);
        wr_hc_record_head((uint8_t *)chunk + hl, WR_HC_RECORD_PAD, n);
        wr_random(chunk + hl + WR_HC_RECORD_HEAD, n);
        memcpy(chunk + hl + WR_HC_RECORD_HEAD + n, "\r\n", 2);
        if (conn_write(c, chunk, (size_t)hl + WR_HC_RECORD_HEAD + n + 2) < 0) {
            conn_close(c, WR_CLOSE_RESET);
            return;
        }
        uv_timer_start(&c->timer, keepalive_cb, KEEPALIVE_MIN_MS + (uint64_t)rand() % 30000, 0);
    } else {
        conn_close(c, c->phase == C_HEAD || c->phase == C_FIN ? WR_CLOSE_GRACEFUL : WR_CLOSE_RESET);
    }
}

/* A downstream answer that must end now (another took its place, or the session ended). */
static void end_answer(hc_conn *c)
{
    if (c->phase == C_STREAM) {
        conn_write(c, "0\r\n\r\n", 5);
        answer_done(c);
    } else if (c->phase == C_POLL) {
        poll_answer(c);
    }
}

static void start_down(hc_conn *c, hc_sess *s)
{
    if (!wr_hc_downq_covers(&s->down, c->rq.offset)) {
        answer_head(c, "409 Conflict", "Content-Length: 0\r\n", 0);
        c->keep_alive = 0;
        answer_done(c);
        return;
    }
    down_ack(s, c->rq.offset);
    if (s->getter && s->getter != c) end_answer(s->getter);
    s->getter = c;
    c->sess = s;
    c->sent_to = c->rq.offset;
    c->answer_bytes = 0;
    if (c->rq.kind == WR_HC_POLL) {
        c->hs->st.polls++;
        c->phase = C_POLL;
        if (c->sent_to < s->down.end)
            poll_answer(c);
        else
            uv_timer_start(&c->timer, keepalive_cb, c->hs->poll_max_ms, 0);
        return;
    }
    c->hs->st.streams++;
    c->phase = C_STREAM;
    if (answer_head(c, "200 OK",
                    "Content-Type: application/octet-stream\r\nX-Accel-Buffering: no\r\n"
                    "Transfer-Encoding: chunked\r\n",
                    1) < 0) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    keepalive_cb(&c->timer); /* the prelude: shows the client this answer streams */
    stream_send(c);
}

/* ---- the session's endpoint ---- */

static int se_read_start(wr_endpoint_t *ep)
{
    if (ep->flags & WR_EP_CLOSING) return UV_EINVAL;
    ep->flags |= WR_EP_READING;
    return 0;
}

static int se_read_stop(wr_endpoint_t *ep)
{
    ep->flags &= ~WR_EP_READING;
    return 0;
}

static int se_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    hc_sess *s = (hc_sess *)ep;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_SHUT)) return UV_EPIPE;
    if (!len) return 0;
    if (wr_hc_downq_push(&s->down, b, base, len) != 0) return UV_ENOMEM;
    sync_queued(s);
    if (ep->queued >= ep->high_water) ep->flags |= WR_EP_DRAIN_ARMED;
    if (s->getter && s->getter->phase == C_STREAM) {
        stream_send(s->getter);
    } else if (s->getter && s->getter->phase == C_POLL) {
        /* Answer a poll at once with plenty; with a little, wait a moment for more. */
        hc_conn *g = s->getter;
        if (s->down.end - g->sent_to >= POLL_BODY_MAX / 4) {
            poll_answer(g);
        } else if (!g->poll_soon) {
            g->poll_soon = 1;
            uv_timer_start(&g->timer, keepalive_cb, 2, 0);
        }
    }
    return 0;
}

static void idle_cb(uv_idle_t *h)
{
    hc_sess *s = h->data;
    uv_idle_stop(h);
    if (s->drain_pending && !(s->base.flags & WR_EP_CLOSING)) {
        s->drain_pending = 0;
        if ((s->base.flags & WR_EP_DRAIN_ARMED) && s->base.queued <= s->base.low_water) {
            s->base.flags &= ~WR_EP_DRAIN_ARMED;
            if (s->base.cbs->on_drain) s->base.cbs->on_drain(&s->base);
        }
    }
    if (s->shut_pending && !(s->base.flags & WR_EP_CLOSING)) {
        s->shut_pending = 0;
        wr_endpoint__report_shutdown(&s->base, 0);
    }
}

static int se_shutdown(wr_endpoint_t *ep)
{
    hc_sess *s = (hc_sess *)ep;
    /* The client learns the end from the session's own frames; nothing to send here. */
    ep->flags |= WR_EP_SHUT;
    s->shut_pending = 1;
    return uv_idle_start(&s->idle, idle_cb);
}

static void sess_handle_closed(uv_handle_t *h)
{
    hc_sess *s = h->data;
    wr_hc_server_t *hs = s->hs;
    if (--s->closes_left > 0) return;
    wr_hc_upq_free(&s->up);
    wr_hc_downq_free(&s->down);
    if (s->base.cbs->on_closed) s->base.cbs->on_closed(&s->base);
    free(s);
    hs->live--;
    maybe_free_server(hs);
}

static void se_close(wr_endpoint_t *ep, enum wr_close_mode mode);

static const wr_endpoint_ops_t sess_ops = {
    .kind = "http",
    .read_start = se_read_start,
    .read_stop = se_read_stop,
    .write = se_write,
    .shutdown = se_shutdown,
    .close = se_close,
};

static void se_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    hc_sess *s = (hc_sess *)ep;
    (void)mode;
    if (ep->flags & WR_EP_CLOSING) return;
    ep->flags |= WR_EP_CLOSING;
    ep->flags &= ~WR_EP_READING;
    unlink_sess(s);
    if (s->getter) {
        hc_conn *g = s->getter;
        s->getter = NULL;
        g->sess = NULL;
        end_answer(g);
    }
    uv_close((uv_handle_t *)&s->timer, sess_handle_closed);
    uv_close((uv_handle_t *)&s->idle, sess_handle_closed);
}

/* A session no request has named for reap_ms: its client is gone. */
static void reap_cb(uv_timer_t *t)
{
    hc_sess *s = t->data;
    if (!s->getter && uv_now(s->hs->loop) - s->last_seen >= s->hs->reap_ms) {
        wr_debug("http carrier: a session no request named for %u ms ends", s->hs->reap_ms);
        wr_endpoint__report_error(&s->base, UV_ETIMEDOUT);
    }
}

static hc_sess *sess_new(wr_hc_server_t *hs, const uint8_t sid[WR_HC_SID_LEN])
{
    hc_sess *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    wr_endpoint__init(&s->base, &sess_ops, &no_cbs);
    /* Longer than the client's: its PING comes first and the relay's never fires, since a PING
     * sent each way at once costs two POSTs (the PING and the PONG) instead of one. */
    s->base.keepalive_min_ms = WR_HC_KEEPALIVE_MS * 3 / 2;
    s->hs = hs;
    memcpy(s->sid, sid, WR_HC_SID_LEN);
    wr_hc_upq_init(&s->up, REORDER_MAX);
    s->closes_left = 2;
    uv_timer_init(hs->loop, &s->timer);
    uv_idle_init(hs->loop, &s->idle);
    s->timer.data = s->idle.data = s;
    s->last_seen = uv_now(hs->loop);
    uv_timer_start(&s->timer, reap_cb, hs->reap_ms / 2, hs->reap_ms / 2);
    s->next = *bucket(hs, sid);
    *bucket(hs, sid) = s;
    s->in_table = 1;
    hs->live++;
    hs->st.sessions++;
    hs->st.active++;
    return s;
}

/* ---- connections ---- */

static void conn_timer_closed(uv_handle_t *h);

/* Not the carrier's request: the site gets the connection from this request on, untouched. */
static void to_site(hc_conn *c)
{
    wr_hc_server_t *hs = c->hs;
    wr_endpoint_t *ep = c->ep;
    hs->st.refused++;
    if (!hs->site.take) {
        c->keep_alive = 0;
        conn_write(c, wr_http_not_found, wr_http_not_found_len);
        c->phase = C_FIN;
        if (wr_endpoint_shutdown(ep) < 0) conn_close(c, WR_CLOSE_RESET);
        uv_timer_start(&c->timer, keepalive_cb, CONN_IDLE_MS, 0);
        return;
    }
    wr_endpoint_read_stop(ep);
    wr_endpoint_set_callbacks(ep, &no_cbs, NULL);
    c->ep = NULL;
    hs->site.take(hs->site.ctx, ep, c->buf, c->len); /* owns ep from here */
    /* ep's on_closed no longer reaches us: end the connection record now. */
    c->phase = C_GONE;
    body_free(c);
    uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}

static void conn_consume(hc_conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static void up_done(hc_conn *c, hc_sess *s)
{
    int rc = 0, had = 1;
    for (size_t i = 0; i * WR_BUF_SIZE < c->body_len && !(s->base.flags & WR_EP_CLOSING); i++) {
        size_t n = c->body_len - i * WR_BUF_SIZE;
        up_input in = {s, c->body[i]};
        rc = wr_hc_upq_input(&s->up, c->rq.offset + i * WR_BUF_SIZE, c->body[i]->data,
                             n < WR_BUF_SIZE ? n : WR_BUF_SIZE, deliver_up, &in);
        if (rc < 0) break;
        if (rc != 1) had = 0;
    }
    if (rc < 0) {
        answer_head(c, "503 Service Unavailable", "Content-Length: 0\r\n", 0);
        return;
    }
    if (had) c->hs->st.duplicates++;
    answer_head(c, "200 OK", "Content-Length: 0\r\n", 1);
}

/* An upstream request is whole (head and body). */
static void handle_up(hc_conn *c)
{
    wr_hc_server_t *hs = c->hs;
    hc_sess *s = find(hs, c->rq.sid);
    if (c->has_body) { /* a session we hold */
        if (s && !(s->base.flags & WR_EP_CLOSING)) {
            s->last_seen = uv_now(hs->loop);
            up_done(c, s);
        } else {
            answer_head(c, "410 Gone", "Content-Length: 0\r\n", 0);
        }
        body_free(c);
        conn_consume(c, c->head_len);
        answer_done(c);
        return;
    }
    /* The first request: its body is the session's first handshake message. */
    wr_hs_server checked;
    if (s || wr_server_check(hs->server, (const uint8_t *)c->buf + c->head_len, c->body_len,
                             &checked) != 0) {
        to_site(c);
        return;
    }
    s = sess_new(hs, c->rq.sid);
    if (!s) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    memcpy(s->key, c->key, WR_HC_KEY_LEN);
    nonce_add(s, c->rq.nonce);
    s->up.next = c->body_len; /* msg1, which the checked session does not read again */
    if (wr_server_take_checked(hs->server, &s->base, (struct sockaddr *)&c->peer, &checked) != 0) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    answer_head(c, "200 OK", "Content-Length: 0\r\n", 1);
    conn_consume(c, c->head_len + c->body_len);
    answer_done(c);
}

/* The buffered bytes: the next request's head, its body, and what to do with it. */
static void process_requests(hc_conn *c);

static void process(hc_conn *c)
{
    c->in_process = 1;
    process_requests(c);
    c->in_process = 0;
}

static void process_requests(hc_conn *c)
{
    wr_hc_server_t *hs = c->hs;
    while (c->phase == C_HEAD && c->len) {
        int rc = wr_http_head_parse(&c->head, c->buf, c->len);
        hc_sess *s;
        if (rc == 0) {
            if (c->len == sizeof c->buf) to_site(c);
            return;
        }
        if (rc < 0 || request_key(hs, c->head.url, c->head.url_len, &c->rq, c->key) != 0) {
            to_site(c);
            return;
        }
        c->head_len = (size_t)rc;
        s = find(hs, c->rq.sid);
        if (s && (nonce_seen(s, c->rq.nonce) || (s->base.flags & WR_EP_CLOSING))) {
            to_site(c); /* a replay, or a session that is ending */
            return;
        }
        if (!s && !(c->rq.kind == WR_HC_UP && c->rq.offset == 0)) {
            to_site(c);
            return;
        }
        hs->st.requests++;
        c->keep_alive = c->head.keep_alive;
        uv_timer_stop(&c->timer);
        if (c->rq.kind != WR_HC_UP) {
            if (c->head.method != HTTP_GET) {
                to_site(c);
                return;
            }
            nonce_add(s, c->rq.nonce);
            s->last_seen = uv_now(hs->loop);
            conn_consume(c, c->head_len);
            start_down(c, s);
            continue;
        }
        if (c->head.method != HTTP_POST || !c->head.has_length || c->head.chunked ||
            (!s && c->head.content_length > FIRST_BODY_MAX)) {
            to_site(c);
            return;
        }
        if (c->head.content_length > UP_BODY_MAX) {
            nonce_add(s, c->rq.nonce);
            c->keep_alive = 0;
            answer_head(c, "413 Payload Too Large", "Content-Length: 0\r\n", 0);
            answer_done(c);
            return;
        }
        c->body_len = (size_t)c->head.content_length;
        if (s) {
            size_t have = c->len - c->head_len;
            nonce_add(s, c->rq.nonce);
            if (body_alloc(c) != 0) {
                conn_close(c, WR_CLOSE_RESET);
                return;
            }
            have = body_put(c, c->buf + c->head_len, have);
            /* The head stays in buf until the answer; the body bytes leave it. */
            memmove(c->buf + c->head_len, c->buf + c->head_len + have, c->len - c->head_len - have);
            c->len -= have;
        }
        c->phase = C_BODY;
        if ((c->has_body && c->body_have == c->body_len) ||
            (!c->has_body && c->len >= c->head_len + c->body_len)) {
            c->phase = C_HEAD;
            handle_up(c);
            continue;
        }
        return;
    }
}

/* Bytes from the connection: a known session's body goes straight to it, the rest through buf,
 * which holds at most a head and a first message, a piece at a time. */
static void input(hc_conn *c, const char *base, size_t len)
{
    while (len && c->phase != C_GONE && c->phase != C_FIN) {
        size_t take;
        if (c->phase == C_BODY && c->has_body) {
            take = body_put(c, base, len);
        } else {
            take = sizeof c->buf - c->len < len ? sizeof c->buf - c->len : len;
            if (take == 0) {
                conn_close(c, WR_CLOSE_RESET); /* more pipelined than anyone sends */
                return;
            }
            memcpy(c->buf + c->len, base, take);
            c->len += take;
        }
        base += take;
        len -= take;
        if (c->phase == C_BODY && ((c->has_body && c->body_have == c->body_len) ||
                                   (!c->has_body && c->len >= c->head_len + c->body_len))) {
            c->phase = C_HEAD;
            handle_up(c);
        }
        if (c->phase == C_HEAD) process(c);
    }
}

static void on_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    (void)b;
    input(ep->data, base, len);
}

static void on_eof(wr_endpoint_t *ep)
{
    hc_conn *c = ep->data;
    conn_close(c, c->phase == C_FIN ? WR_CLOSE_GRACEFUL : WR_CLOSE_RESET);
}

static void on_error(wr_endpoint_t *ep, int err)
{
    (void)err;
    conn_close(ep->data, WR_CLOSE_RESET);
}

static void on_drain(wr_endpoint_t *ep)
{
    hc_conn *c = ep->data;
    if (c->phase == C_STREAM) stream_send(c);
}

static void conn_timer_closed(uv_handle_t *h)
{
    hc_conn *c = h->data;
    wr_hc_server_t *hs = c->hs;
    *c->prev = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c);
    hs->live--;
    maybe_free_server(hs);
}

static void on_closed(wr_endpoint_t *ep)
{
    hc_conn *c = ep->data;
    c->ep = NULL;
    uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}

static const wr_endpoint_cbs_t conn_cbs = {
    .on_read = on_read,
    .on_eof = on_eof,
    .on_error = on_error,
    .on_drain = on_drain,
    .on_closed = on_closed,
};

/* ---- the object ---- */

wr_hc_server_t *wr_hc_server_new(uv_loop_t *loop, const wr_hc_server_config *cfg)
{
    wr_hc_server_t *hs = calloc(1, sizeof *hs);
    if (!hs) return NULL;
    hs->loop = loop;
    hs->server = cfg->server;
    hs->site = cfg->site;
    hs->down_max = cfg->down_max ? cfg->down_max : DOWN_MAX_DEFAULT;
    hs->reap_ms = cfg->reap_ms ? cfg->reap_ms : REAP_MS_DEFAULT;
    hs->poll_max_ms = cfg->poll_max_ms ? cfg->poll_max_ms : POLL_MS_DEFAULT;
    if (!cfg->psk || wr_hc_server_set_keys(hs, &cfg->psk, 1) != 0) {
        free(hs);
        return NULL;
    }
    return hs;
}

int wr_hc_server_set_keys(wr_hc_server_t *hs, const uint8_t *const *psks, size_t n)
{
    uint8_t(*keys)[WR_HC_KEY_LEN];
    if (n == 0) return UV_EINVAL;
    keys = calloc(n, sizeof *keys);
    if (!keys) return UV_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (wr_hc_key(psks[i], keys[i]) != 0) {
            wr_zeroize(keys, n * sizeof *keys);
            free(keys);
            return UV_EINVAL;
        }
    if (hs->keys) wr_zeroize(hs->keys, hs->nkeys * sizeof *hs->keys);
    free(hs->keys);
    hs->keys = keys;
    hs->nkeys = n;
    return 0;
}

void wr_hc_server_set_site(wr_hc_server_t *hs, wr_fallback_t site)
{
    hs->site = site;
}

int wr_hc_server_claims(wr_hc_server_t *hs, const wr_http_head_t *req)
{
    wr_hc_request_t rq;
    uint8_t key[WR_HC_KEY_LEN];
    hc_sess *s;
    if (hs->freeing || request_key(hs, req->url, req->url_len, &rq, key) != 0) return 0;
    wr_zeroize(key, sizeof key);
    s = find(hs, rq.sid);
    if (s) return !nonce_seen(s, rq.nonce) && !(s->base.flags & WR_EP_CLOSING);
    return rq.kind == WR_HC_UP && rq.offset == 0 && req->method == HTTP_POST;
}

void wr_hc_server_take(wr_hc_server_t *hs, wr_endpoint_t *ep, const struct sockaddr *peer,
                       const char *already, size_t len)
{
    hc_conn *c = hs->freeing ? NULL : calloc(1, sizeof *c);
    if (!c) {
        wr_endpoint_close(ep, WR_CLOSE_RESET);
        return;
    }
    c->hs = hs;
    c->ep = ep;
    if (peer && (peer->sa_family == AF_INET || peer->sa_family == AF_INET6))
        memcpy(&c->peer, peer,
               peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in));
    c->phase = C_HEAD;
    wr_http_head_init(&c->head);
    uv_timer_init(hs->loop, &c->timer);
    c->timer.data = c;
    c->next = hs->conns;
    c->prev = &hs->conns;
    if (hs->conns) hs->conns->prev = &c->next;
    hs->conns = c;
    hs->live++;
    wr_endpoint_set_callbacks(ep, &conn_cbs, c);
    if (wr_endpoint_read_start(ep) < 0) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    uv_timer_start(&c->timer, keepalive_cb, CONN_IDLE_MS, 0);
    input(c, already, len);
}

void wr_hc_server_free(wr_hc_server_t *hs)
{
    hs->freeing = 1;
    for (hc_conn *c = hs->conns; c; c = c->next)
        conn_close(c, WR_CLOSE_RESET);
    for (int i = 0; i < BUCKETS; i++)
        for (hc_sess *s = hs->buckets[i], *next; s; s = next) {
            next = s->next; /* the session's end unlinks it */
            wr_endpoint__report_error(&s->base, UV_ECANCELED);
        }
    maybe_free_server(hs);
}

void wr_hc_server_get_stats(const wr_hc_server_t *hs, wr_hc_server_stats *out)
{
    *out = hs->st;
}
