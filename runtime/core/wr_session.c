/* The session: handshake on the carrier, frame input and dispatch, the output batch (every frame
 * due in one loop turn is sealed into one chunk and handed to the carrier in one write), the
 * deferred-callback tick, keepalive, the probe sink, and the end of a session. */
#include "wr_session_int.h"

#include "wr_log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CARRIER_HIGH_WATER (512 * 1024)
#define CARRIER_LOW_WATER  (128 * 1024)
#define LINGER_MS          2000 /* wait for the peer's FIN after a clean end */
#define TAB_MIN            16

struct wr_session_hs {
    uv_work_t work;
    wr_session_t *s;
    wr_hs_config cfg; /* client: ours; server: a copy of the user's, once msg1 authenticated */
    union {
        wr_hs_server srv;
        wr_hs_client cli;
    } u;
    wr_hs_keys keys;
    wr_buf_t *msg2;
    size_t msg2_len;
    uint64_t now;
    int rc;
    int trailing; /* bytes arrived while the respond step ran */
    size_t have, need;
    uint8_t buf[(WR_HS_MSG1_MAX > WR_HS_MSG2_MAX ? WR_HS_MSG1_MAX : WR_HS_MSG2_MAX) + 1];
};

enum end_how {
    END_CLEAN, /* SESSION_END, FIN, wait for the peer's FIN */
    END_PEER,  /* the peer sent SESSION_END: FIN, wait for its FIN */
    END_ABORT, /* RST now */
    END_QUIET, /* FIN now (client handshake failures) */
};

static void session_end(wr_session_t *s, int reason, const char *detail, enum end_how how);
static void enter_sink(wr_session_t *s, int failure, const char *why);
static uint64_t now_ms(void);
static void maybe_free(wr_session_t *s);
static void ka_arm(wr_session_t *s);
static void defer_cb(uv_idle_t *h);
static void timer_cb(uv_timer_t *t);

/* ---- names ---- */

const char *wr_session_reason_name(int reason)
{
    switch (reason) {
    case WR_SESSION_CLOSED_LOCALLY:
        return "closed locally";
    case WR_SESSION_PEER_ENDED:
        return "peer ended the session";
    case WR_SESSION_GOAWAY_DRAINED:
        return "goaway drained";
    case WR_SESSION_HANDSHAKE_FAILED:
        return "handshake failed";
    case WR_SESSION_HANDSHAKE_TIMEOUT:
        return "handshake timeout";
    case WR_SESSION_AUTH_FAILED:
        return "authentication failed";
    case WR_SESSION_UNANSWERED:
        return "no answer";
    case WR_SESSION_PEER_DEAD:
        return "peer dead";
    case WR_SESSION_TRUNCATED:
        return "truncated";
    case WR_SESSION_CARRIER_ERROR:
        return "carrier error";
    case WR_SESSION_PROTOCOL_ERROR:
        return "protocol error";
    case WR_SESSION_NOMEM:
        return "out of memory";
    }
    return "?";
}

/* ---- shared server state ---- */

int wr_session_server_new(const uint8_t psk[32], uint64_t not_before, wr_session_server_t **out)
{
    wr_session_server_t *srv = calloc(1, sizeof(*srv));
    wr_session_key key = {WR_USER_DEFAULT, psk};
    *out = NULL;
    if (srv == NULL) return UV_ENOMEM;
    srv->not_before = not_before ? not_before : now_ms();
    srv->cipher = WR_HS_CIPHER_AUTO;
    if (wr_session_server_set_keys(srv, &key, 1) != 0 || wr_replay_new(&srv->replay, 0) != 0) {
        wr_session_server_free(srv);
        return UV_EINVAL;
    }
    *out = srv;
    return 0;
}

static void free_keys(wr_hs_config *keys, char (*names)[WR_USER_NAME_MAX], size_t n)
{
    if (keys) wr_zeroize(keys, n * sizeof *keys);
    free(keys);
    free(names);
}

int wr_session_server_set_keys(wr_session_server_t *srv, const wr_session_key *keys, size_t n)
{
    wr_hs_config *cfgs;
    char(*names)[WR_USER_NAME_MAX];
    if (n == 0) return UV_EINVAL;
    cfgs = calloc(n, sizeof *cfgs);
    names = calloc(n, sizeof *names);
    if (!cfgs || !names) {
        free_keys(cfgs, names, n);
        return UV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = keys[i].name ? strlen(keys[i].name) : 0;
        int bad = len == 0 || len >= WR_USER_NAME_MAX || keys[i].psk == NULL ||
                  wr_hs_config_init(&cfgs[i], keys[i].psk, WR_BACKEND_DEFAULT, srv->not_before) !=
                      WR_HS_OK;
        for (size_t j = 0; j < i && !bad; j++)
            bad = strcmp(names[j], keys[i].name) == 0;
        if (bad) {
            free_keys(cfgs, names, n);
            return UV_EINVAL;
        }
        cfgs[i].cipher = srv->cipher;
        memcpy(names[i], keys[i].name, len + 1);
    }
    free_keys(srv->keys, srv->names, srv->nkeys);
    srv->keys = cfgs;
    srv->names = names;
    srv->nkeys = n;
    return 0;
}

void wr_session_server_set_cipher(wr_session_server_t *srv, int cipher)
{
    srv->cipher = cipher;
    for (size_t i = 0; i < srv->nkeys; i++)
        srv->keys[i].cipher = cipher;
}

void wr_session_server_free(wr_session_server_t *srv)
{
    if (srv == NULL) return;
    wr_replay_free(srv->replay);
    free_keys(srv->keys, srv->names, srv->nkeys);
    free(srv);
}

/* ---- small helpers ---- */

static void set_detail(wr_session_t *s, const char *d)
{
    if (d == NULL) d = "";
    size_t n = strlen(d);
    if (n >= sizeof(s->detail_buf)) n = sizeof(s->detail_buf) - 1;
    memcpy(s->detail_buf, d, n);
    s->detail_buf[n] = 0;
    s->detail = s->detail_buf;
}

/* Handshake timestamps are Unix milliseconds: a relay restarted within the second it last ran
 * must still refuse handshakes recorded before its start. */
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void hs_free(wr_session_t *s)
{
    struct wr_session_hs *hs = s->hs;
    if (hs == NULL || s->work_pending) return;
    if (hs->msg2) wr_buf_release(hs->msg2);
    wr_zeroize(hs, sizeof(*hs));
    free(hs);
    s->hs = NULL;
}

void wr_session__sched(wr_session_t *s)
{
    if (s->idle_on || s->handles_closing) return;
    s->idle_on = 1;
    uv_idle_start(&s->defer, defer_cb);
}

/* ---- stream table and lists ---- */

static uint32_t bucket(const wr_session_t *s, uint32_t id)
{
    return (id >> 1 ^ id >> 13) & s->tab_mask;
}

wr_stream_t *wr_session__find(wr_session_t *s, uint32_t id)
{
    if (s->tab == NULL) return NULL;
    for (wr_stream_t *st = s->tab[bucket(s, id)]; st; st = st->hnext)
        if (st->id == id) return st;
    return NULL;
}

static int tab_resize(wr_session_t *s, uint32_t n)
{
    wr_stream_t **t = calloc(n, sizeof(*t));
    if (t == NULL) return -1;
    uint32_t old = s->tab ? s->tab_mask + 1 : 0;
    wr_stream_t **ot = s->tab;
    s->tab = t;
    s->tab_mask = n - 1;
    for (uint32_t i = 0; i < old; i++) {
        wr_stream_t *st = ot[i];
        while (st) {
            wr_stream_t *nx = st->hnext;
            uint32_t b = bucket(s, st->id);
            st->hnext = t[b];
            t[b] = st;
            st = nx;
        }
    }
    free(ot);
    return 0;
}

int wr_session__insert(wr_session_t *s, wr_stream_t *st)
{
    if (s->tab == NULL && tab_resize(s, TAB_MIN)) return -1;
    if (s->nstreams >= 2 * (s->tab_mask + 1)) tab_resize(s, 2 * (s->tab_mask + 1));
    uint32_t b = bucket(s, st->id);
    st->hnext = s->tab[b];
    s->tab[b] = st;
    st->flags |= WR_ST_IN_TABLE;
    s->nstreams++;
    return 0;
}

void wr_session__remove(wr_stream_t *st)
{
    wr_session_t *s = st->s;
    if (!(st->flags & WR_ST_IN_TABLE)) return;
    wr_stream__release_window(st);
    wr_stream_t **pp = &s->tab[bucket(s, st->id)];
    while (*pp != st)
        pp = &(*pp)->hnext;
    *pp = st->hnext;
    st->hnext = NULL;
    st->flags &= ~WR_ST_IN_TABLE;
    s->nstreams--;
    if (s->nstreams == 0) {
        /* An idle session keeps no table. */
        free(s->tab);
        s->tab = NULL;
        s->tab_mask = 0;
    }
    wr_session__stream_done(s);
}

void wr_session__stream_done(wr_session_t *s)
{
    if ((s->goaway_sent || s->goaway_recv) && s->nstreams == 0) wr_session__sched(s);
}

void wr_session__tx(wr_stream_t *st)
{
    wr_session_t *s = st->s;
    if (st->flags & WR_ST_IN_TXL) return;
    st->flags |= WR_ST_IN_TXL;
    st->tx_next = NULL;
    st->tx_prev = s->tx_tail;
    if (s->tx_tail)
        s->tx_tail->tx_next = st;
    else
        s->tx_head = st;
    s->tx_tail = st;
    if (!s->blocked) wr_session__sched(s);
}

void wr_session__tx_remove(wr_stream_t *st)
{
    wr_session_t *s = st->s;
    if (!(st->flags & WR_ST_IN_TXL)) return;
    if (st->tx_prev)
        st->tx_prev->tx_next = st->tx_next;
    else
        s->tx_head = st->tx_next;
    if (st->tx_next)
        st->tx_next->tx_prev = st->tx_prev;
    else
        s->tx_tail = st->tx_prev;
    st->tx_next = st->tx_prev = NULL;
    st->flags &= ~WR_ST_IN_TXL;
}

void wr_session__ev(wr_stream_t *st, unsigned ev)
{
    wr_session_t *s = st->s;
    st->ev |= (uint16_t)ev;
    if (!(st->flags & WR_ST_IN_EVL)) {
        st->flags |= WR_ST_IN_EVL;
        st->ev_next = NULL;
        if (s->ev_tail)
            s->ev_tail->ev_next = st;
        else
            s->ev_head = st;
        s->ev_tail = st;
    }
    wr_session__sched(s);
}

void wr_session__struct_gone(wr_session_t *s)
{
    s->nstructs--;
    if (s->nstructs == 0) maybe_free(s);
}

/* Every live stream fails with err; refused/closed streams waiting to send are dropped. */
static void abort_streams(wr_session_t *s, int err)
{
    if (s->tab) {
        for (uint32_t i = 0; s->tab && i <= s->tab_mask; i++) {
            while (s->tab && s->tab[i])
                wr_stream__kill(s->tab[i], err, s->detail);
        }
    }
    wr_stream_t *st;
    while ((st = s->tx_head)) {
        wr_session__tx_remove(st);
        st->pend = 0;
        if (st->flags & WR_ST_FREE_AFTER) wr_stream__free(st);
    }
}

/* ---- output ---- */

#ifndef WR_SESSION_OUT_MAX
#define WR_SESSION_OUT_MAX (64 * 1024)
#endif

/* Size of the next output chunk: what the streams on the send list can seal now, capped. The
 * stream being emitted is off the list by then, so a lone bulk stream writes one frame per carrier
 * write while many streams share one. Measured on loopback, per-frame writes keep the peer opening
 * frames while we seal: sizing the chunk for the emitting stream too (64 KiB writes) made one
 * iperf3 stream about 10% slower and eight streams no faster. */
static size_t out_cap(const wr_session_t *s)
{
    size_t want = 1024;
    for (const wr_stream_t *st = s->tx_head; st && want < WR_SESSION_OUT_MAX; st = st->tx_next) {
        size_t n = st->txq.bytes < st->tx_credit ? st->txq.bytes : st->tx_credit;
        want += n + (n / s->max_payload + 2) * WR_FRAME_SEAL_ROOM(0);
    }
    return want < WR_SESSION_OUT_MAX ? want : WR_SESSION_OUT_MAX + 4096;
}

static void out_write(wr_session_t *s)
{
    wr_buf_t *o = s->out;
    if (o == NULL) return;
    size_t len = s->out_len - s->out_start;
    s->out = NULL;
    s->out_len = 0;
    if (len && s->carrier && s->phase != WR_PH_SINK) {
        int rc = wr_endpoint_write(s->carrier, o, o->data + s->out_start, len);
        s->st.carrier_writes++;
        s->st.bytes_out += len;
        if (rc < 0) {
            wr_buf_release(o);
            session_end(s, WR_SESSION_CARRIER_ERROR, uv_strerror(rc), END_ABORT);
            return;
        }
        if (wr_endpoint_over_high_water(s->carrier)) s->blocked = 1;
    }
    wr_buf_release(o);
}

int wr_session__emit(wr_session_t *s, uint8_t type, uint32_t id, const void *payload, size_t len)
{
    size_t need = s->plain ? WR_FRAME_HDR_LEN + len : WR_FRAME_SEAL_ROOM(len);
    if (s->out && s->out->size - s->out_len < need) out_write(s);
    if (s->ending && type != WR_FT_SESSION_END) return -1;
    if (s->out == NULL) {
        size_t cap = out_cap(s), room = s->carrier ? s->carrier->headroom : 0;
        s->out = wr_buf_new((cap > need ? cap : need) + room);
        s->out_len = s->out_start = room;
        if (s->out == NULL) {
            session_end(s, WR_SESSION_NOMEM, "out of memory", END_ABORT);
            return -1;
        }
    }
    uint8_t *o = (uint8_t *)s->out->data + s->out_len;
    size_t written;
    if (s->plain) {
        o[0] = (uint8_t)(len >> 8);
        o[1] = (uint8_t)len;
        o[2] = type;
        o[3] = 0;
        o[4] = (uint8_t)(id >> 24);
        o[5] = (uint8_t)(id >> 16);
        o[6] = (uint8_t)(id >> 8);
        o[7] = (uint8_t)id;
        if (len) memcpy(o + WR_FRAME_HDR_LEN, payload, len);
        written = WR_FRAME_HDR_LEN + len;
    } else {
        int rc = wr_frame_seal(&s->sealer, o, s->out->size - s->out_len, type, 0, id, payload, len,
                               &written);
        if (rc != WR_FRAME_OK) {
            if (type != WR_FT_SESSION_END)
                session_end(s, WR_SESSION_PROTOCOL_ERROR, wr_frame_strerror(rc), END_ABORT);
            return -1;
        }
    }
    s->out_len += written;
    s->st.frames_out++;
    return 0;
}

static void send_ping(wr_session_t *s)
{
    s->spend |= WR_SS_PING;
    s->ping_sent_ms = uv_now(s->loop);
    wr_session__sched(s);
}

/* Seals session frames, then one frame per stream in turn until nothing is sendable or the
 * carrier is over its high water: a busy stream cannot starve the others. */
static void flush(wr_session_t *s)
{
    if (!s->keyed || s->phase != WR_PH_READY || s->ending) return;
    s->blocked = s->carrier && wr_endpoint_over_high_water(s->carrier);
    while (!s->blocked && !s->ending) {
        if (s->spend) {
            uint8_t sp = s->spend;
            s->spend = 0;
            if ((sp & WR_SS_PONG) && wr_session__emit(s, WR_FT_PONG, 0, s->pong, 8)) break;
            if (sp & WR_SS_PING) {
                wr_random(s->ping, sizeof(s->ping));
                s->ping_hr = uv_hrtime();
                if (wr_session__emit(s, WR_FT_PING, 0, s->ping, 8)) break;
            }
            if ((sp & WR_SS_GOAWAY) && wr_session__emit(s, WR_FT_GOAWAY, 0, NULL, 0)) break;
        }
        wr_stream_t *st = s->tx_head;
        if (st == NULL) break;
        wr_session__tx_remove(st);
        int more = wr_stream__emit(st);
        if ((st->flags & WR_ST_FREE_AFTER) && !st->pend)
            wr_stream__free(st);
        else if (more && !s->ending)
            wr_session__tx(st);
    }
    if (!s->ending) out_write(s);
}

/* ---- the deferred tick ---- */

static void notify(wr_session_t *s)
{
    if (s->notified) return;
    s->notified = 1;
    if (s->cbs.on_closed) s->cbs.on_closed(s, s->reason, s->detail ? s->detail : "");
}

static void defer_cb(uv_idle_t *h)
{
    wr_session_t *s = h->data;
    s->in_tick = 1;
    for (int round = 0; round < 64; round++) {
        wr_stream_t *st;
        while ((st = s->ev_head)) {
            s->ev_head = st->ev_next;
            if (s->ev_head == NULL) s->ev_tail = NULL;
            st->flags &= ~WR_ST_IN_EVL;
            st->ev_next = NULL;
            wr_stream__run_events(st);
        }
        if (!s->ending && s->phase == WR_PH_READY && (s->goaway_sent || s->goaway_recv) &&
            s->nstreams == 0)
            session_end(s, WR_SESSION_GOAWAY_DRAINED, "goaway drained", END_CLEAN);
        flush(s);
        if (s->ev_head == NULL) break;
    }
    s->in_tick = 0;
    if (s->ending && s->carrier == NULL) notify(s);
    int more = s->ev_head ||
               (!s->blocked && !s->ending && s->phase == WR_PH_READY && (s->tx_head || s->spend));
    if (!more && s->idle_on) {
        s->idle_on = 0;
        uv_idle_stop(&s->defer);
    }
    maybe_free(s);
}

/* ---- ending ---- */

static void close_carrier(wr_session_t *s, enum wr_close_mode mode)
{
    s->phase = WR_PH_DONE;
    uv_timer_stop(&s->timer);
    if (s->carrier && !wr_endpoint_is_closing(s->carrier)) wr_endpoint_close(s->carrier, mode);
}

static void session_end(wr_session_t *s, int reason, const char *detail, enum end_how how)
{
    if (s->ending) return;
    s->ending = 1;
    s->reason = reason;
    set_detail(s, detail);
    uv_timer_stop(&s->timer);
    wr_stream__deliver_flush(s, 1);
    abort_streams(s, UV_ECONNABORTED);
    hs_free(s);
    wr_debug("session %p ended: %s (%s)", (void *)s, wr_session_reason_name(reason), s->detail);
    if (s->carrier == NULL) {
        s->phase = WR_PH_DONE;
        wr_session__sched(s); /* notify from the loop */
        return;
    }
    if (how == END_CLEAN && (!s->keyed || s->phase != WR_PH_READY)) how = END_QUIET;
    switch (how) {
    case END_CLEAN:
        out_write(s);
        if (!wr_session__emit(s, WR_FT_SESSION_END, 0, s->end_note, s->end_note_len)) out_write(s);
        /* fall through */
    case END_PEER:
        s->phase = WR_PH_LINGER;
        if (wr_endpoint_shutdown(s->carrier) < 0) {
            close_carrier(s, WR_CLOSE_GRACEFUL);
            return;
        }
        uv_timer_start(&s->timer, timer_cb, LINGER_MS, 0);
        return;
    case END_ABORT:
        close_carrier(s, WR_CLOSE_RESET);
        return;
    case END_QUIET:
        close_carrier(s, WR_CLOSE_GRACEFUL);
        return;
    }
}

int wr_session__protocol_error(wr_session_t *s, const char *detail)
{
    session_end(s, WR_SESSION_PROTOCOL_ERROR, detail, END_ABORT);
    return -1;
}

void wr_session__printable(char *dst, const uint8_t *src, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
    dst[len] = '\0';
}

const char *wr_hs_failure_name(int kind)
{
    static const char *const names[WR_HSF_KINDS] = {"key",    "replay",  "clock",  "malformed",
                                                    "cipher", "timeout", "closed", "internal"};
    return kind >= 0 && kind < WR_HSF_KINDS ? names[kind] : "unknown";
}

static int hs_failure(enum wr_hs_reason r)
{
    switch (r) {
    case WR_HS_R_BAD_MAC:
        return WR_HSF_KEY;
    case WR_HS_R_BEFORE_START:
    case WR_HS_R_REPLAY:
    case WR_HS_R_REPLAY_FULL:
        return WR_HSF_REPLAY;
    case WR_HS_R_CLOCK:
        return WR_HSF_CLOCK;
    case WR_HS_R_NO_CIPHER:
        return WR_HSF_CIPHER;
    case WR_HS_R_INTERNAL:
        return WR_HSF_INTERNAL;
    default:
        return WR_HSF_MALFORMED;
    }
}

/* Server failure before or at the frame layer: send nothing more, keep reading and discarding,
 * then RST at a uniform random time 60-180 s after the connection started (never depending on
 * what or how much the peer sent). */
static void enter_sink(wr_session_t *s, int failure, const char *why)
{
    if (s->ending) return;
    if (s->srv && !s->ready) {
        s->srv->handshakes_failed++;
        s->srv->handshakes_failed_by[failure]++;
        if (s->cbs.on_rejected) s->cbs.on_rejected(s);
    }
    s->ending = 1;
    s->reason = s->ready ? WR_SESSION_PROTOCOL_ERROR : WR_SESSION_HANDSHAKE_FAILED;
    set_detail(s, why);
    wr_debug("session %p: probe sink (%s)", (void *)s, s->detail);
    uv_timer_stop(&s->timer);
    wr_stream__deliver_flush(s, 1);
    abort_streams(s, UV_ECONNABORTED);
    hs_free(s);
    if (s->out) {
        wr_buf_release(s->out);
        s->out = NULL;
        s->out_len = 0;
    }
    if (s->carrier == NULL) {
        s->phase = WR_PH_DONE;
        wr_session__sched(s);
        return;
    }
    s->phase = WR_PH_SINK;
    if (s->carrier_eof) {
        close_carrier(s, WR_CLOSE_RESET);
        return;
    }
    uint32_t r = 0, span = s->probe_max_ms - s->probe_min_ms;
    wr_random(&r, sizeof(r));
    uint64_t deadline = s->start_ms + s->probe_min_ms + (span ? r % (span + 1) : 0);
    uint64_t now = uv_now(s->loop);
    uv_timer_start(&s->timer, timer_cb, deadline > now ? deadline - now : 0, 0);
}

static void closed_handle(uv_handle_t *h)
{
    wr_session_t *s = h->data;
    if (h == (uv_handle_t *)&s->defer) {
        uv_close((uv_handle_t *)&s->timer, closed_handle);
        return;
    }
    if (s->keyed && !s->plain) {
        wr_frame_sealer_free(&s->sealer);
        wr_frame_opener_free(&s->opener);
    }
    if (s->out) wr_buf_release(s->out);
    free(s->tab);
    hs_free(s);
    free(s);
}

static void maybe_free(wr_session_t *s)
{
    if (!s->notified || s->carrier || s->nstructs || s->work_pending || s->handles_closing ||
        s->in_tick)
        return;
    s->handles_closing = 1;
    uv_close((uv_handle_t *)&s->defer, closed_handle);
}

/* ---- timer: handshake timeout, keepalive, probe deadline, linger ---- */

static void ka_arm(wr_session_t *s)
{
    uint64_t k = s->keepalive_ms, now = uv_now(s->loop);
    uint64_t dead_at = s->last_rx_ms + 3 * k;
    uint64_t ping_at = (s->last_rx_ms > s->ping_sent_ms ? s->last_rx_ms : s->ping_sent_ms) + k;
    uint64_t next = ping_at < dead_at ? ping_at : dead_at;
    uv_timer_start(&s->timer, timer_cb, next > now ? next - now : 1, 0);
}

static void client_fail(wr_session_t *s, int timeout);

static void timer_cb(uv_timer_t *t)
{
    wr_session_t *s = t->data;
    uint64_t now = uv_now(s->loop);
    switch (s->phase) {
    case WR_PH_HANDSHAKE:
    case WR_PH_CONFIRM:
        if (s->is_server)
            enter_sink(s, WR_HSF_TIMEOUT, "handshake timeout");
        else
            client_fail(s, 1);
        return;
    case WR_PH_READY: {
        uint64_t k = s->keepalive_ms, quiet = now - s->last_rx_ms;
        if (quiet >= 3 * k) {
            session_end(s, WR_SESSION_PEER_DEAD, "no frame from the peer for 3 keepalive intervals",
                        END_ABORT);
            return;
        }
        if (quiet >= k && now - s->ping_sent_ms >= k) send_ping(s);
        /* Idle: give back the split-frame buffer. */
        if (!s->plain) wr_frame_opener_trim(&s->opener);
        ka_arm(s);
        return;
    }
    case WR_PH_SINK:
        close_carrier(s, WR_CLOSE_RESET);
        return;
    case WR_PH_LINGER:
        close_carrier(s, WR_CLOSE_GRACEFUL);
        return;
    case WR_PH_DONE:
        return;
    }
}

/* ---- becoming ready ---- */

static int keys_init(wr_session_t *s, const wr_hs_keys *k)
{
    wr_frame_opts so = {0}, ro = {.max_payload = WR_FRAME_MAX_LIMIT}; /* as announced */
    const uint8_t *send = s->is_server ? k->s2c : k->c2s, *recv = s->is_server ? k->c2s : k->s2c;
    if (s->max_payload > k->peer_frame) s->max_payload = k->peer_frame;
    so.max_payload = s->max_payload;
    if (wr_frame_sealer_init(&s->sealer, k->backend, k->alg, send, &so) != WR_FRAME_OK) return -1;
    if (wr_frame_opener_init(&s->opener, k->backend, k->alg, recv, &ro) != WR_FRAME_OK) {
        wr_frame_sealer_free(&s->sealer);
        return -1;
    }
    s->keyed = 1;
    return 0;
}

static void become_ready(wr_session_t *s)
{
    s->phase = WR_PH_READY;
    s->ready = 1;
    s->last_rx_ms = uv_now(s->loop);
    ka_arm(s);
    if (s->tx_head || s->spend) wr_session__sched(s);
    if (s->cbs.on_ready) s->cbs.on_ready(s);
}

/* ---- frames in ---- */

static void mux_frame(wr_session_t *s, const wr_frame *f, wr_buf_t *b)
{
    if (f->stream_id != 0) {
        wr_stream__frame(s, f, b);
        return;
    }
    wr_stream__deliver_flush(s, 0);
    if (f->flags) {
        wr_session__protocol_error(s, "reserved frame flags set");
        return;
    }
    switch (f->type) {
    case WR_FT_PING:
        if (f->len != 8) break;
        memcpy(s->pong, f->payload, 8);
        s->spend |= WR_SS_PONG;
        wr_session__sched(s);
        return;
    case WR_FT_PONG:
        if (f->len != 8) break;
        if (s->ping_hr && memcmp(f->payload, s->ping, 8) == 0) {
            s->st.rtt_us_last = (uv_hrtime() - s->ping_hr) / 1000;
            s->ping_hr = 0;
        }
        return;
    case WR_FT_GOAWAY:
        if (f->len) break;
        s->goaway_recv = 1;
        /* Our opens the peer has not seen yet will be refused: fail them here instead. */
        for (uint32_t i = 0; s->tab && i <= s->tab_mask; i++) {
            wr_stream_t *st = s->tab[i];
            while (st) {
                wr_stream_t *nx = st->hnext;
                if ((st->flags & WR_ST_LOCAL) && !(st->flags & WR_ST_OPEN_SENT))
                    wr_stream__kill(st, UV_ECONNABORTED, "session going away");
                st = nx;
            }
        }
        wr_session__sched(s);
        return;
    case WR_FT_SESSION_END: {
        /* An optional reason follows the words every peer's end gets. */
        static const char ended[] = "peer ended the session: ";
        char why[sizeof ended + WR_SESSION_REASON_MAX];
        if (f->len > WR_SESSION_REASON_MAX) break;
        memcpy(why, ended, sizeof ended - 1);
        wr_session__printable(why + sizeof ended - 1, f->payload, f->len);
        if (f->len == 0) why[sizeof ended - 3] = '\0'; /* no ": " without a reason */
        session_end(s, WR_SESSION_PEER_ENDED, why, END_PEER);
        return;
    }
    default:
        break;
    }
    wr_session__protocol_error(s, "malformed or unexpected session frame");
}

static void frame_failure(wr_session_t *s, int rc)
{
    if (s->is_server)
        enter_sink(s, WR_HSF_MALFORMED, wr_frame_strerror(rc));
    else
        session_end(s, WR_SESSION_PROTOCOL_ERROR, wr_frame_strerror(rc), END_ABORT);
}

static void frames_input(wr_session_t *s, wr_buf_t *b, char *base, size_t len)
{
    uint8_t *p = (uint8_t *)base;
    size_t off = 0;
    /* The carrier's read chunk is ours for the duration of on_read: frames decrypt in place, and
     * DATA payloads go to the stream consumer as slices of that same chunk. */
    while (off < len && (s->phase == WR_PH_CONFIRM || s->phase == WR_PH_READY) && !s->ending) {
        size_t used;
        wr_frame f;
        int rc = wr_frame_open(&s->opener, p + off, len - off, &used, &f);
        off += used;
        if (rc == WR_FRAME_NEED_MORE) break;
        if (rc < 0) {
            frame_failure(s, rc);
            return;
        }
        s->st.frames_in++;
        if (s->phase == WR_PH_CONFIRM) {
            /* Key confirmation: only now may the server act on anything the client asks. */
            if (s->srv) s->srv->handshakes_ok++;
            /* msg2 out, the client's first frame in: a first RTT sample (window tuning needs
             * one long before the first keepalive PONG). */
            if (s->msg2_sent_hr) s->st.rtt_us_last = (uv_hrtime() - s->msg2_sent_hr) / 1000;
            become_ready(s);
            if (s->phase != WR_PH_READY || s->ending) return;
        }
        wr_buf_t *fb = f.payload && f.payload >= p && f.payload < p + len ? b : NULL;
        mux_frame(s, &f, fb);
    }
    wr_stream__deliver_flush(s, 0);
}

void wr_session__input(wr_session_t *s, const wr_frame *f)
{
    if (s->phase != WR_PH_READY || s->ending) return;
    s->last_rx_ms = uv_now(s->loop);
    s->st.frames_in++;
    mux_frame(s, f, NULL);
    wr_stream__deliver_flush(s, 0);
}

/* ---- client handshake ---- */

static void client_fail(wr_session_t *s, int timeout)
{
    struct wr_session_hs *hs = s->hs;
    enum wr_hs_reason r = hs ? wr_hs_client_eof(&hs->u.cli, hs->buf, hs->have) : WR_HS_R_INTERNAL;
    const char *refused = s->carrier ? wr_endpoint_why(s->carrier) : NULL;
    int code;
    if (refused) { /* the carrier's own layer said no (an HTTP error to a WebSocket upgrade) */
        session_end(s, WR_SESSION_AUTH_FAILED, refused, END_QUIET);
        return;
    }
    /* A relay answers a wrong key with silence until well past our timeout, so a close before
     * any answer is something else: most likely a relay making room under a flood. */
    if (r == WR_HS_R_NO_ANSWER && !timeout) r = WR_HS_R_CLOSED_UNANSWERED;
    switch (r) {
    case WR_HS_R_NO_ANSWER:
    case WR_HS_R_PLAINTEXT_REPLY:
    case WR_HS_R_BAD_MAC:
    case WR_HS_R_WEAK_KEY:
        code = WR_SESSION_AUTH_FAILED;
        break;
    case WR_HS_R_CLOSED_UNANSWERED:
        code = WR_SESSION_UNANSWERED;
        break;
    default:
        code = timeout ? WR_SESSION_HANDSHAKE_TIMEOUT : WR_SESSION_HANDSHAKE_FAILED;
    }
    session_end(s, code, wr_hs_client_message(r), END_QUIET);
}

static int client_start(wr_session_t *s, const wr_session_config *cfg)
{
    struct wr_session_hs *hs = s->hs;
    size_t len;
    if (wr_hs_config_init(&hs->cfg, cfg->psk, WR_BACKEND_DEFAULT, 0) != WR_HS_OK) return UV_EINVAL;
    hs->cfg.cipher = cfg->cipher;
    wr_buf_t *m = wr_buf_new(WR_HS_MSG1_MAX);
    if (m == NULL) return UV_ENOMEM;
    if (wr_hs_client_start(&hs->u.cli, &hs->cfg, now_ms(), NULL, 0, (uint8_t *)m->data,
                           WR_HS_MSG1_MAX, &len) != WR_HS_OK) {
        wr_buf_release(m);
        return UV_EINVAL;
    }
    int rc = wr_endpoint_write(s->carrier, m, m->data, len);
    wr_buf_release(m);
    if (rc == 0) s->st.bytes_out += len;
    hs->need = WR_HS_MSG2_FIXED;
    return rc;
}

static void client_input(wr_session_t *s, wr_buf_t *b, char *base, size_t len)
{
    struct wr_session_hs *hs = s->hs;
    size_t off = 0;
    while (off < len) {
        /* Copy only up to what msg2 needs: what follows is the server's frame stream. */
        size_t take = hs->need - hs->have;
        if (take > len - off) take = len - off;
        memcpy(hs->buf + hs->have, base + off, take);
        hs->have += take;
        off += take;
        if (hs->have < hs->need) return;
        size_t need;
        int rc = wr_hs_client_finish(&hs->u.cli, &hs->cfg, hs->buf, hs->have, &need, &hs->keys);
        if (rc == WR_HS_NEED_MORE && need > hs->have && need < sizeof(hs->buf)) {
            hs->need = need;
            continue;
        }
        if (rc != WR_HS_OK) {
            session_end(s,
                        hs->u.cli.reason == WR_HS_R_BAD_MAC ? WR_SESSION_AUTH_FAILED
                                                            : WR_SESSION_HANDSHAKE_FAILED,
                        wr_hs_client_failure(&hs->u.cli), END_QUIET);
            return;
        }
        rc = keys_init(s, &hs->keys);
        hs_free(s);
        if (rc) {
            session_end(s, WR_SESSION_HANDSHAKE_FAILED, "local cryptographic failure", END_QUIET);
            return;
        }
        /* Our first frame right away: it is the server's key confirmation (and an RTT sample). */
        send_ping(s);
        become_ready(s);
        if (off < len && s->phase == WR_PH_READY && !s->ending)
            frames_input(s, b, base + off, len - off);
        return;
    }
}

/* ---- server handshake ---- */

static void respond_work(uv_work_t *w)
{
    struct wr_session_hs *hs = w->data;
    hs->rc = wr_hs_server_respond(&hs->u.srv, &hs->cfg, hs->now, (uint8_t *)hs->msg2->data,
                                  WR_HS_MSG2_MAX, &hs->msg2_len, &hs->keys);
}

static void respond_done(uv_work_t *w, int status)
{
    struct wr_session_hs *hs = w->data;
    wr_session_t *s = hs->s;
    s->work_pending = 0;
    s->srv->dh_inflight--;
    if (s->ending || s->phase != WR_PH_HANDSHAKE) {
        hs_free(s);
        maybe_free(s);
        return;
    }
    if (status == 0 && hs->u.srv.reason == WR_HS_R_NO_CIPHER && hs->msg2_len) {
        /* msg2 tells the client; then the sink waits for it to close. */
        wr_info("a client with the key offered no cipher this relay accepts (--cipher)");
        wr_buf_t *m = wr_buf_retain(hs->msg2);
        int rc = wr_endpoint_write(s->carrier, m, m->data, hs->msg2_len);
        wr_buf_release(m);
        if (rc == 0) s->st.bytes_out += hs->msg2_len;
    }
    if (status != 0 || hs->rc != WR_HS_OK) {
        enter_sink(s, hs_failure(hs->u.srv.reason), wr_hs_reason_name(hs->u.srv.reason));
        return;
    }
    if (hs->trailing) {
        enter_sink(s, WR_HSF_MALFORMED, wr_hs_reason_name(WR_HS_R_TRAILING));
        return;
    }
    if (keys_init(s, &hs->keys)) {
        enter_sink(s, WR_HSF_INTERNAL, "local cryptographic failure");
        return;
    }
    wr_buf_t *m = wr_buf_retain(hs->msg2);
    size_t len = hs->msg2_len;
    hs_free(s);
    s->phase = WR_PH_CONFIRM;
    s->msg2_sent_hr = uv_hrtime();
    int rc = wr_endpoint_write(s->carrier, m, m->data, len);
    wr_buf_release(m);
    s->st.bytes_out += len;
    if (rc < 0) enter_sink(s, WR_HSF_CLOSED, uv_strerror(rc));
}

static void start_respond(wr_session_t *s);

/* msg1's header authenticated under user i's key: the session keeps a copy of that user's config
 * and name, so the users may change while its handshake runs on. */
static void pin_user(wr_session_t *s, uint32_t i)
{
    s->hs->cfg = s->srv->keys[i];
    memcpy(s->user, s->srv->names[i], sizeof s->user);
}

static void server_input(wr_session_t *s, const char *base, size_t len)
{
    struct wr_session_hs *hs = s->hs;
    if (s->work_pending) {
        /* A client sends nothing between msg1 and msg2. */
        hs->trailing = 1;
        return;
    }
    size_t take = sizeof(hs->buf) - hs->have;
    if (take > len) take = len;
    memcpy(hs->buf + hs->have, base, take);
    hs->have += take;
    size_t need;
    int rc;
    if (hs->u.srv.state == WR_HS_S_READ_HEADER) {
        wr_session_server_t *srv = s->srv;
        rc = wr_hs_server_check_keys(&hs->u.srv, srv->keys, srv->nkeys, srv->replay, hs->buf,
                                     hs->have, now_ms(), &need);
        if (hs->u.srv.state == WR_HS_S_READ_VAR || hs->u.srv.state == WR_HS_S_CHECKED)
            pin_user(s, hs->u.srv.key);
    } else {
        rc = wr_hs_server_check(&hs->u.srv, &hs->cfg, s->srv->replay, hs->buf, hs->have, now_ms(),
                                &need);
    }
    if (rc == WR_HS_NEED_MORE) return;
    if (rc != WR_HS_OK) {
        enter_sink(s, hs_failure(hs->u.srv.reason), wr_hs_reason_name(hs->u.srv.reason));
        return;
    }
    if (s->cbs.on_verified) s->cbs.on_verified(s);
    start_respond(s);
}

/* msg1 is checked and its salt recorded: the key exchange. */
static void start_respond(wr_session_t *s)
{
    struct wr_session_hs *hs = s->hs;
    /* The DH runs on the threadpool so a burst of handshakes never stalls forwarding. */
    hs->msg2 = wr_buf_new(WR_HS_MSG2_MAX);
    if (hs->msg2 == NULL) {
        enter_sink(s, WR_HSF_INTERNAL, "out of memory");
        return;
    }
    hs->now = now_ms();
    hs->s = s;
    hs->work.data = hs;
    if (uv_queue_work(s->loop, &hs->work, respond_work, respond_done) != 0) {
        enter_sink(s, WR_HSF_INTERNAL, "queue_work failed");
        return;
    }
    s->work_pending = 1;
    s->srv->dh_inflight++;
}

/* ---- carrier callbacks ---- */

static void c_on_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    wr_session_t *s = ep->data;
    s->st.bytes_in += len;
    s->last_rx_ms = uv_now(s->loop);
    switch (s->phase) {
    case WR_PH_HANDSHAKE:
        if (s->is_server)
            server_input(s, base, len);
        else
            client_input(s, b, (char *)base, len);
        return;
    case WR_PH_CONFIRM:
    case WR_PH_READY:
        if (!s->plain) frames_input(s, b, (char *)base, len);
        return;
    default:
        return; /* sink / linger: discard */
    }
}

static void carrier_ended(wr_session_t *s, int err)
{
    switch (s->phase) {
    case WR_PH_HANDSHAKE:
    case WR_PH_CONFIRM:
        if (s->is_server)
            enter_sink(s, WR_HSF_CLOSED, err ? uv_strerror(err) : "peer closed during handshake");
        else
            client_fail(s, 0);
        return;
    case WR_PH_READY:
        if (err)
            session_end(s, WR_SESSION_CARRIER_ERROR, uv_strerror(err), END_ABORT);
        else
            session_end(s, WR_SESSION_TRUNCATED, "carrier ended without SESSION_END", END_QUIET);
        return;
    case WR_PH_SINK:
        close_carrier(s, WR_CLOSE_RESET);
        return;
    case WR_PH_LINGER:
        if (err || s->carrier_shut) close_carrier(s, WR_CLOSE_GRACEFUL);
        return;
    case WR_PH_DONE:
        return;
    }
}

static void c_on_eof(wr_endpoint_t *ep)
{
    wr_session_t *s = ep->data;
    s->carrier_eof = 1;
    carrier_ended(s, 0);
}

static void c_on_error(wr_endpoint_t *ep, int err)
{
    wr_session_t *s = ep->data;
    s->carrier_eof = 1;
    carrier_ended(s, err);
}

static void c_on_drain(wr_endpoint_t *ep)
{
    wr_session_t *s = ep->data;
    s->blocked = 0;
    if (s->tx_head || s->spend) wr_session__sched(s);
}

static void c_on_shutdown(wr_endpoint_t *ep, int status)
{
    wr_session_t *s = ep->data;
    s->carrier_shut = 1;
    if (s->phase == WR_PH_LINGER && (status < 0 || s->carrier_eof))
        close_carrier(s, WR_CLOSE_GRACEFUL);
}

static void c_on_closed(wr_endpoint_t *ep)
{
    wr_session_t *s = ep->data;
    s->carrier = NULL;
    s->phase = WR_PH_DONE;
    if (!s->ending) {
        /* Closed under us (should not happen: we own it). */
        s->ending = 1;
        s->reason = WR_SESSION_CARRIER_ERROR;
        set_detail(s, "carrier closed");
        abort_streams(s, UV_ECONNABORTED);
    }
    notify(s);
    maybe_free(s);
}

static const wr_endpoint_cbs_t carrier_cbs = {
    .on_read = c_on_read,
    .on_eof = c_on_eof,
    .on_error = c_on_error,
    .on_drain = c_on_drain,
    .on_shutdown = c_on_shutdown,
    .on_closed = c_on_closed,
};

/* ---- construction ---- */

static wr_session_t *session_alloc(uv_loop_t *loop, const wr_session_config *cfg,
                                   const wr_session_cbs *cbs, void *data)
{
    wr_session_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->loop = loop;
    if (cbs) s->cbs = *cbs;
    s->data = data;
    s->is_server = cfg->is_server != 0;
    s->window = cfg->window ? cfg->window : WR_SESSION_WINDOW_DEFAULT;
    if (s->window < WR_SESSION_WINDOW_MIN) s->window = WR_SESSION_WINDOW_MIN;
    if (s->window > (1u << 30)) s->window = 1u << 30;
    s->window_max = cfg->window_max ? cfg->window_max : WR_SESSION_WINDOW_MAX_DEFAULT;
    if (s->window_max < s->window) s->window_max = s->window;
    if (s->window_max > (1u << 30)) s->window_max = 1u << 30;
    s->rx_budget = cfg->rx_budget ? cfg->rx_budget : WR_SESSION_RX_BUDGET_DEFAULT;
    s->rx_limit = cfg->rx_limit ? cfg->rx_limit : WR_SESSION_RX_LIMIT_DEFAULT;
    s->max_streams = cfg->max_streams ? cfg->max_streams : WR_SESSION_MAX_STREAMS_DEFAULT;
    s->max_payload = cfg->max_payload ? cfg->max_payload : WR_SESSION_FRAME_SEND_DEFAULT;
    if (s->max_payload < 2048) s->max_payload = 2048; /* an OPEN must fit one frame */
    if (s->max_payload > WR_FRAME_MAX_LIMIT) s->max_payload = WR_FRAME_MAX_LIMIT;
    s->keepalive_ms = cfg->keepalive_ms ? cfg->keepalive_ms : WR_SESSION_KEEPALIVE_DEFAULT;
    s->hs_timeout_ms =
        cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : WR_SESSION_HS_TIMEOUT_DEFAULT;
    s->probe_min_ms =
        cfg->probe_close_min_ms ? cfg->probe_close_min_ms : WR_SESSION_PROBE_MIN_DEFAULT;
    s->probe_max_ms =
        cfg->probe_close_max_ms ? cfg->probe_close_max_ms : WR_SESSION_PROBE_MAX_DEFAULT;
    if (s->probe_max_ms < s->probe_min_ms) s->probe_max_ms = s->probe_min_ms;
    s->stream_high_water =
        cfg->stream_high_water ? cfg->stream_high_water : WR_EP_HIGH_WATER_DEFAULT;
    s->srv = cfg->hs_server;
    s->next_id = s->is_server ? 2 : 1;
    s->reason = WR_SESSION_CLOSED_LOCALLY;
    uv_idle_init(loop, &s->defer);
    uv_timer_init(loop, &s->timer);
    s->defer.data = s;
    s->timer.data = s;
    s->start_ms = s->last_rx_ms = uv_now(loop);
    return s;
}

/* Only before any handle was used: frees without the loop. */
static void session_discard(wr_session_t *s)
{
    hs_free(s);
    s->notified = 1;
    s->handles_closing = 1;
    uv_close((uv_handle_t *)&s->defer, closed_handle);
}

wr_session_t *wr_session_new(uv_loop_t *loop, wr_endpoint_t *carrier, const wr_session_config *cfg,
                             const wr_session_cbs *cbs, void *data)
{
    if (loop == NULL || carrier == NULL || cfg == NULL) return NULL;
    if (cfg->is_server ? cfg->hs_server == NULL : cfg->psk == NULL) return NULL;
    wr_session_t *s = session_alloc(loop, cfg, cbs, data);
    if (s == NULL) return NULL;
    s->hs = calloc(1, sizeof(*s->hs));
    if (s->hs == NULL) {
        session_discard(s);
        return NULL;
    }
    s->hs->s = s;
    s->carrier = carrier;
    if (!cfg->keepalive_ms && carrier->keepalive_min_ms > s->keepalive_ms)
        s->keepalive_ms = carrier->keepalive_min_ms; /* a default, not what the user asked */
    wr_endpoint_set_callbacks(carrier, &carrier_cbs, s);
    wr_endpoint_set_watermarks(carrier, CARRIER_LOW_WATER, CARRIER_HIGH_WATER);
    if (s->is_server) wr_hs_server_init(&s->hs->u.srv);
    int rc = s->is_server ? 0 : client_start(s, cfg);
    if (rc == 0) rc = wr_endpoint_read_start(carrier);
    if (rc != 0) {
        s->carrier = NULL;
        session_discard(s);
        return NULL;
    }
    uv_timer_start(&s->timer, timer_cb, s->hs_timeout_ms, 0);
    return s;
}

int wr_session_server_check(wr_session_server_t *srv, const uint8_t *msg1, size_t len,
                            wr_hs_server *out)
{
    size_t need = 0;
    wr_hs_server_init(out);
    if (len > WR_HS_MSG1_MAX ||
        wr_hs_server_check_keys(out, srv->keys, srv->nkeys, srv->replay, msg1, len, now_ms(),
                                &need) != WR_HS_OK ||
        need != len) {
        srv->handshakes_failed++;
        srv->handshakes_failed_by[hs_failure(out->reason)]++; /* too long or short: malformed */
        return -1;
    }
    return 0;
}

wr_session_t *wr_session_new_checked(uv_loop_t *loop, wr_endpoint_t *carrier,
                                     const wr_session_config *cfg, const wr_session_cbs *cbs,
                                     void *data, const wr_hs_server *checked)
{
    wr_session_t *s;
    if (!cfg || !cfg->is_server || !checked || checked->state != WR_HS_S_CHECKED ||
        !cfg->hs_server || checked->key >= cfg->hs_server->nkeys)
        return NULL;
    s = wr_session_new(loop, carrier, cfg, cbs, data);
    if (s == NULL) return NULL;
    s->hs->u.srv = *checked;
    pin_user(s, checked->key);
    start_respond(s);
    return s;
}

wr_session_t *wr_session__new_plain(uv_loop_t *loop, wr_endpoint_t *carrier,
                                    const wr_session_config *cfg, const wr_session_cbs *cbs,
                                    void *data)
{
    wr_session_t *s = session_alloc(loop, cfg, cbs, data);
    if (s == NULL) return NULL;
    s->plain = 1;
    s->keyed = 1;
    s->carrier = carrier;
    if (carrier) {
        wr_endpoint_set_callbacks(carrier, &carrier_cbs, s);
        wr_endpoint_read_start(carrier);
    }
    s->phase = WR_PH_READY;
    s->ready = 1;
    ka_arm(s);
    return s;
}

void wr_session_cache_trim(void)
{
    wr_seg_cache_trim();
}

size_t wr_session__hs_size(void)
{
    return sizeof(struct wr_session_hs);
}

/* ---- public API ---- */

void *wr_session_data(wr_session_t *s)
{
    return s->data;
}

void wr_session_set_data(wr_session_t *s, void *data)
{
    s->data = data;
}

const char *wr_session_user(const wr_session_t *s)
{
    return s->user;
}

int wr_session_is_server(const wr_session_t *s)
{
    return s->is_server;
}

int wr_session_is_ready(const wr_session_t *s)
{
    return s->ready && !s->ending;
}

wr_stream_t *
wr_session_open_stream(wr_session_t *s, const uint8_t *target, size_t len,
                       void (*on_open)(wr_stream_t *st, int status, const char *reason), void *data)
{
    if (len > WR_SESSION_TARGET_MAX || (len && target == NULL)) return NULL;
    wr_stream_t *st = wr_stream__new(s, s->next_id, WR_ST_LOCAL);
    if (st == NULL) return NULL;
    st->on_open = on_open;
    st->data = data;
    const char *fail = NULL;
    int err = UV_ECONNABORTED;
    if (s->ending)
        fail = "session closed";
    else if (s->goaway_sent || s->goaway_recv)
        fail = "session going away";
    else if (s->nstreams >= s->max_streams)
        fail = "too many streams", err = UV_EAGAIN;
    else if (s->next_id > 0xfffffffdu)
        fail = "stream ids exhausted";
    if (fail == NULL && len) {
        st->note = malloc(len);
        if (st->note == NULL)
            fail = "out of memory", err = UV_ENOMEM;
        else
            memcpy(st->note, target, len);
        st->note_len = (uint16_t)len;
    }
    if (fail == NULL && wr_session__insert(s, st)) fail = "out of memory", err = UV_ENOMEM;
    if (fail) {
        st->id = 0;
        wr_stream__kill(st, err, fail);
        return st;
    }
    s->next_id += 2;
    s->st.streams_opened++;
    st->tx_credit = WR_SESSION_WINDOW_MIN; /* 0-RTT: what every receiver buffers before accepting */
    st->rx_left = s->window;
    st->rx_window = s->window;
    st->pend = WR_SP_OPEN;
    wr_session__tx(st);
    return st;
}

void wr_session_goaway(wr_session_t *s)
{
    if (s->ending || s->goaway_sent) return;
    s->goaway_sent = 1;
    s->spend |= WR_SS_GOAWAY;
    wr_session__sched(s);
}

void wr_session_drop(wr_session_t *s)
{
    if (s->ready) {
        wr_session_close(s);
        return;
    }
    if (s->ending) {
        if (s->carrier && s->phase == WR_PH_SINK) close_carrier(s, WR_CLOSE_RESET);
        return;
    }
    session_end(s, WR_SESSION_HANDSHAKE_FAILED, "dropped to make room for newer connections",
                END_ABORT);
}

void wr_session_close(wr_session_t *s)
{
    if (s->ending) {
        /* Already ending (sink or linger): cut it short. */
        if (s->carrier && (s->phase == WR_PH_SINK || s->phase == WR_PH_LINGER))
            close_carrier(s, s->phase == WR_PH_SINK ? WR_CLOSE_RESET : WR_CLOSE_GRACEFUL);
        return;
    }
    s->reason = WR_SESSION_CLOSED_LOCALLY;
    session_end(s, WR_SESSION_CLOSED_LOCALLY, "closed locally", END_CLEAN);
}

void wr_session_close_because(wr_session_t *s, const char *why)
{
    if (!s->ending) {
        size_t n = strlen(why);
        s->end_note_len = n < sizeof s->end_note ? n : sizeof s->end_note;
        memcpy(s->end_note, why, s->end_note_len);
    }
    wr_session_close(s);
}

void wr_session_get_stats(const wr_session_t *s, wr_session_stats *out)
{
    *out = s->st;
    out->streams_active = s->nstreams;
    out->rx_buffered = s->rx_queued;
    out->cipher = s->keyed && !s->plain ? (int)wr_aead_alg_of(s->sealer.aead) : 0;
}
