#include "wr_kcp.h"
#include "wr_kcp_pacer.h"

#include <stdlib.h>
#include <string.h>

#define RTO_NODELAY_MIN 30
#define RTO_MIN         100
#define RTO_DEFAULT     200
#define RTO_MAX         60000
#define PROBE_INIT      7000
#define PROBE_LIMIT     120000
#define THRESH_INIT     2
#define THRESH_MIN      2
#define ASK_SEND        1u /* we must send a WASK */
#define ASK_TELL        2u /* we must send a WINS */

/* One segment in the send ring (sn in [snd_una, snd_nxt)) or the receive ring (sn in
 * [rcv_nxt, rcv_nxt + rcv_wnd)). The rings are indexed by sn, so lookups are O(1). */
typedef struct seg {
    uint32_t sn, ts, resendts, rto, fastack, xmit, len;
    int used;
    uint8_t *data;
} seg_t;

/* A byte FIFO: the send queue (bytes not yet cut into segments) and the receive queue (in-order
 * bytes not yet read). */
typedef struct bytes {
    uint8_t *p;
    size_t head, len, cap;
} bytes_t;

struct wr_kcp {
    uint32_t conv, mtu, mss;
    uint32_t snd_una, snd_nxt, rcv_nxt;
    uint32_t snd_wnd, rcv_wnd, rmt_wnd, cwnd, incr, ssthresh;
    uint32_t srtt, rttvar, rto, rto_min;
    uint32_t interval, ts_flush, ts_probe, probe_wait, probe;
    uint32_t resend, dead_link, burst;
    int nodelay, nocwnd, updated, dead, hold_acks;
    int pacing, pacer_started;
    wr_kcp_pacer pacer;
    seg_t *snd, *rcv;
    uint32_t snd_mask, rcv_mask;
    bytes_t sq, rq;
    uint32_t *acks; /* pairs sn, ts */
    size_t nacks, acks_cap;
    uint8_t *out; /* one datagram being filled */
    size_t out_len;
    wr_kcp_output_fn output;
    void *user;
    wr_kcp_stats st;
};

static inline int32_t diff(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b);
}

static uint32_t clamp(uint32_t v, uint32_t lo, uint32_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* ---- byte FIFOs ---- */

static int bytes_push(bytes_t *b, const uint8_t *data, size_t len)
{
    if (len == 0) return 0;
    if (b->head + b->len + len > b->cap) {
        if (b->head > 0) {
            memmove(b->p, b->p + b->head, b->len);
            b->head = 0;
        }
        if (b->len + len > b->cap) {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap < b->len + len)
                cap *= 2;
            uint8_t *p = realloc(b->p, cap);
            if (!p) return -1;
            b->p = p;
            b->cap = cap;
        }
    }
    memcpy(b->p + b->head + b->len, data, len);
    b->len += len;
    return 0;
}

static size_t bytes_pop(bytes_t *b, uint8_t *dst, size_t cap)
{
    size_t n = b->len < cap ? b->len : cap;
    if (n == 0) return 0;
    if (dst) memcpy(dst, b->p + b->head, n);
    b->head += n;
    b->len -= n;
    if (b->len == 0) b->head = 0;
    return n;
}

/* ---- encoding ---- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int wr_kcp_parse_header(const uint8_t *data, size_t len, wr_kcp_seg_header *h)
{
    if (len < WR_KCP_HEADER) return -1;
    h->conv = get32(data);
    h->cmd = data[4];
    h->frg = data[5];
    h->wnd = (uint16_t)(data[6] | data[7] << 8);
    h->ts = get32(data + 8);
    h->sn = get32(data + 12);
    h->una = get32(data + 16);
    h->len = get32(data + 20);
    if (h->len > len - WR_KCP_HEADER) return -1;
    return 0;
}

static void out_flush(wr_kcp_t *k)
{
    if (k->out_len == 0) return;
    k->output(k->out, k->out_len, k->user);
    k->out_len = 0;
}

/* Appends one segment to the datagram being built, sending it first when it would not fit. */
static void out_seg(wr_kcp_t *k, uint8_t cmd, uint32_t ts, uint32_t sn, const uint8_t *data,
                    uint32_t len)
{
    uint8_t *p;
    uint32_t wnd = k->rcv_wnd;
    size_t queued = (k->rq.len + k->mss - 1) / k->mss;
    wnd = queued >= wnd ? 0 : wnd - (uint32_t)queued;
    if (wnd > 0xffff) wnd = 0xffff;
    if (k->out_len + WR_KCP_HEADER + len > k->mtu) out_flush(k);
    p = k->out + k->out_len;
    put32(p, k->conv);
    p[4] = cmd;
    p[5] = 0;
    p[6] = (uint8_t)wnd;
    p[7] = (uint8_t)(wnd >> 8);
    put32(p + 8, ts);
    put32(p + 12, sn);
    put32(p + 16, k->rcv_nxt);
    put32(p + 20, len);
    if (len) memcpy(p + WR_KCP_HEADER, data, len);
    k->out_len += WR_KCP_HEADER + len;
}

/* ---- life ---- */

int wr_kcp_preset(const char *name, wr_kcp_config *cfg)
{
    static const struct {
        const char *name;
        int nodelay;
        uint32_t interval, resend;
    } presets[] = {
        {"normal", 0, 40, 2}, {"fast", 0, 30, 2}, {"fast2", 1, 20, 2}, {"fast3", 1, 10, 2}};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (strcmp(name, presets[i].name) != 0) continue;
        cfg->nodelay = presets[i].nodelay;
        cfg->interval = presets[i].interval;
        cfg->resend = presets[i].resend;
        cfg->nocwnd = 1;
        return 0;
    }
    return -1;
}

wr_kcp_t *wr_kcp_new(uint32_t conv, const wr_kcp_config *cfg, wr_kcp_output_fn out, void *user)
{
    wr_kcp_t *k;
    uint32_t mtu = cfg->mtu ? cfg->mtu : WR_KCP_MTU_DEFAULT;
    uint32_t sw = cfg->snd_wnd ? cfg->snd_wnd : 128, rw = cfg->rcv_wnd ? cfg->rcv_wnd : 512;
    if (mtu < WR_KCP_MTU_MIN || mtu > WR_KCP_MTU_MAX || sw > WR_KCP_WND_MAX || rw > WR_KCP_WND_MAX)
        return NULL;
    k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->conv = conv;
    k->mtu = mtu;
    k->mss = mtu - WR_KCP_HEADER;
    k->snd_wnd = sw;
    k->rcv_wnd = rw;
    k->rmt_wnd = 128;
    k->cwnd = 1;
    k->incr = k->mss;
    k->ssthresh = THRESH_INIT;
    k->rto = RTO_DEFAULT;
    k->nodelay = cfg->nodelay;
    k->rto_min = cfg->nodelay ? RTO_NODELAY_MIN : RTO_MIN;
    k->interval = clamp(cfg->interval ? cfg->interval : 40, 10, 5000);
    k->resend = cfg->resend;
    k->nocwnd = cfg->nocwnd;
    k->dead_link = cfg->dead_link ? cfg->dead_link : 20;
    k->burst = cfg->burst ? cfg->burst : 0xffffffffu;
    k->pacing = cfg->pacing;
    k->snd_mask = pow2_at_least(sw) - 1;
    k->rcv_mask = pow2_at_least(rw) - 1;
    k->snd = calloc(k->snd_mask + 1, sizeof *k->snd);
    k->rcv = calloc(k->rcv_mask + 1, sizeof *k->rcv);
    k->out = malloc(mtu);
    k->output = out;
    k->user = user;
    if (!k->snd || !k->rcv || !k->out) {
        wr_kcp_free(k);
        return NULL;
    }
    return k;
}

void wr_kcp_free(wr_kcp_t *k)
{
    if (!k) return;
    if (k->snd)
        for (uint32_t i = 0; i <= k->snd_mask; i++)
            free(k->snd[i].data);
    if (k->rcv)
        for (uint32_t i = 0; i <= k->rcv_mask; i++)
            free(k->rcv[i].data);
    free(k->snd);
    free(k->rcv);
    free(k->sq.p);
    free(k->rq.p);
    free(k->acks);
    free(k->out);
    free(k);
}

uint32_t wr_kcp_conv(const wr_kcp_t *k)
{
    return k->conv;
}

uint32_t wr_kcp_mss(const wr_kcp_t *k)
{
    return k->mss;
}

/* ---- sending ---- */

int wr_kcp_send(wr_kcp_t *k, const void *data, size_t len)
{
    return len ? bytes_push(&k->sq, data, len) : 0;
}

size_t wr_kcp_unacked(const wr_kcp_t *k)
{
    size_t n = k->sq.len;
    for (uint32_t sn = k->snd_una; sn != k->snd_nxt; sn++) {
        const seg_t *s = &k->snd[sn & k->snd_mask];
        if (s->used) n += s->len;
    }
    return n;
}

size_t wr_kcp_waiting(const wr_kcp_t *k)
{
    return k->sq.len;
}

/* The oldest unacknowledged segment moves snd_una. */
static void shrink_snd(wr_kcp_t *k)
{
    while (k->snd_una != k->snd_nxt && !k->snd[k->snd_una & k->snd_mask].used)
        k->snd_una++;
}

static void ack_one(wr_kcp_t *k, uint32_t sn)
{
    seg_t *s;
    if (diff(sn, k->snd_una) < 0 || diff(sn, k->snd_nxt) >= 0) return;
    s = &k->snd[sn & k->snd_mask];
    if (s->used && s->sn == sn) {
        s->used = 0;
        wr_kcp_pacer_delivered(&k->pacer, s->len);
    }
}

/* Everything before una arrived. */
static void ack_until(wr_kcp_t *k, uint32_t una)
{
    if (diff(una, k->snd_nxt) > 0) una = k->snd_nxt;
    while (diff(una, k->snd_una) > 0) {
        seg_t *s = &k->snd[k->snd_una & k->snd_mask];
        if (s->used) wr_kcp_pacer_delivered(&k->pacer, s->len);
        s->used = 0;
        k->snd_una++;
    }
}

/* A later segment was acknowledged: segments before it, sent no later, missed one more ack. */
static void count_fastack(wr_kcp_t *k, uint32_t sn, uint32_t ts)
{
    if (diff(sn, k->snd_una) < 0 || diff(sn, k->snd_nxt) >= 0) return;
    for (uint32_t i = k->snd_una; i != sn; i++) {
        seg_t *s = &k->snd[i & k->snd_mask];
        if (s->used && diff(s->ts, ts) <= 0) s->fastack++;
    }
}

static void rtt_sample(wr_kcp_t *k, int32_t rtt)
{
    uint32_t r = (uint32_t)rtt, var;
    if (k->srtt == 0) {
        k->srtt = r ? r : 1;
        k->rttvar = r / 2;
    } else {
        uint32_t delta = r > k->srtt ? r - k->srtt : k->srtt - r;
        k->rttvar = (3 * k->rttvar + delta) / 4;
        k->srtt = (7 * k->srtt + r) / 8;
        if (k->srtt < 1) k->srtt = 1;
    }
    var = 4 * k->rttvar > k->interval ? 4 * k->rttvar : k->interval;
    k->rto = clamp(k->srtt + var, k->rto_min, RTO_MAX);
}

/* ---- receiving ---- */

static int ack_push(wr_kcp_t *k, uint32_t sn, uint32_t ts)
{
    if (k->nacks * 2 + 2 > k->acks_cap) {
        size_t cap = k->acks_cap ? k->acks_cap * 2 : 64;
        uint32_t *a = realloc(k->acks, cap * sizeof *a);
        if (!a) return -1;
        k->acks = a;
        k->acks_cap = cap;
    }
    k->acks[k->nacks * 2] = sn;
    k->acks[k->nacks * 2 + 1] = ts;
    k->nacks++;
    return 0;
}

static size_t rq_segments(const wr_kcp_t *k)
{
    return (k->rq.len + k->mss - 1) / k->mss;
}

/* In-order segments move from the receive ring to the byte queue while the queue has room. */
static void deliver(wr_kcp_t *k)
{
    for (;;) {
        seg_t *s = &k->rcv[k->rcv_nxt & k->rcv_mask];
        if (!s->used || s->sn != k->rcv_nxt || rq_segments(k) >= k->rcv_wnd) return;
        if (bytes_push(&k->rq, s->data, s->len) != 0) return;
        free(s->data);
        s->data = NULL;
        s->used = 0;
        k->rcv_nxt++;
    }
}

static int take_data(wr_kcp_t *k, const wr_kcp_seg_header *h, const uint8_t *payload)
{
    seg_t *s;
    if (diff(h->sn, k->rcv_nxt) < 0 || diff(h->sn, k->rcv_nxt + k->rcv_wnd) >= 0) {
        k->st.duplicates++;
        return 0;
    }
    s = &k->rcv[h->sn & k->rcv_mask];
    if (s->used) {
        k->st.duplicates++;
        return 0;
    }
    s->data = malloc(h->len ? h->len : 1);
    if (!s->data) return -1;
    memcpy(s->data, payload, h->len);
    s->len = h->len;
    s->sn = h->sn;
    s->used = 1;
    k->st.segs_received++;
    k->st.bytes_received += h->len;
    deliver(k);
    return 0;
}

int wr_kcp_input(wr_kcp_t *k, const uint8_t *data, size_t len, uint32_t now)
{
    uint32_t prev_una = k->snd_una, maxack = 0, maxack_ts = 0;
    int have_maxack = 0, rc = 0;
    while (len > 0) {
        wr_kcp_seg_header h;
        if (wr_kcp_parse_header(data, len, &h) != 0 || h.conv != k->conv ||
            h.cmd < WR_KCP_CMD_PUSH || h.cmd > WR_KCP_CMD_WINS) {
            rc = -1;
            break;
        }
        k->rmt_wnd = h.wnd;
        ack_until(k, h.una);
        switch (h.cmd) {
        case WR_KCP_CMD_ACK:
            if (diff(now, h.ts) >= 0) rtt_sample(k, diff(now, h.ts));
            ack_one(k, h.sn);
            if (diff(h.sn, k->snd_una) >= 0 && (!have_maxack || diff(h.sn, maxack) > 0)) {
                maxack = h.sn;
                maxack_ts = h.ts;
                have_maxack = 1;
            }
            break;
        case WR_KCP_CMD_PUSH:
            if (diff(h.sn, k->rcv_nxt + k->rcv_wnd) < 0) {
                if (ack_push(k, h.sn, h.ts) != 0 || take_data(k, &h, data + WR_KCP_HEADER) != 0)
                    return -1;
            } else {
                k->st.duplicates++;
            }
            break;
        case WR_KCP_CMD_WASK:
            k->probe |= ASK_TELL;
            break;
        default: /* WINS: the window, read above, is all it says */
            break;
        }
        shrink_snd(k);
        data += WR_KCP_HEADER + h.len;
        len -= WR_KCP_HEADER + h.len;
    }
    if (have_maxack) count_fastack(k, maxack, maxack_ts);
    /* Congestion window growth on new acknowledgements (slow start, then additive). */
    if (diff(k->snd_una, prev_una) > 0 && k->cwnd < k->rmt_wnd) {
        uint32_t mss = k->mss;
        if (k->cwnd < k->ssthresh) {
            k->cwnd++;
            k->incr += mss;
        } else {
            if (k->incr < mss) k->incr = mss;
            k->incr += (mss * mss) / k->incr + mss / 16;
            if ((k->cwnd + 1) * mss <= k->incr) k->cwnd = (k->incr + mss - 1) / mss;
        }
        if (k->cwnd > k->rmt_wnd) {
            k->cwnd = k->rmt_wnd;
            k->incr = k->rmt_wnd * mss;
        }
    }
    return rc;
}

size_t wr_kcp_readable(const wr_kcp_t *k)
{
    return k->rq.len;
}

size_t wr_kcp_recv(wr_kcp_t *k, void *buf, size_t cap)
{
    int was_full = rq_segments(k) >= k->rcv_wnd;
    size_t n = bytes_pop(&k->rq, buf, cap);
    deliver(k);
    /* The peer may be probing a closed window: tell it at once that it opened. */
    if (was_full && rq_segments(k) < k->rcv_wnd) k->probe |= ASK_TELL;
    return n;
}

/* ---- the flush ---- */

/* Segments that may be in flight: both windows, and the congestion window unless it is off. */
static uint32_t send_window(const wr_kcp_t *k)
{
    uint32_t w = k->snd_wnd < k->rmt_wnd ? k->snd_wnd : k->rmt_wnd;
    if (!k->nocwnd && k->cwnd < w) w = k->cwnd;
    return w;
}

void wr_kcp_flush(wr_kcp_t *k, uint32_t now)
{
    uint32_t cwnd, fast, rtomin, fresh = 0;
    int change = 0, lost = 0;

    if (!k->hold_acks)
        for (size_t i = 0; i < k->nacks; i++)
            out_seg(k, WR_KCP_CMD_ACK, k->acks[i * 2 + 1], k->acks[i * 2], NULL, 0);
    k->nacks = 0;

    /* A closed remote window is probed, at growing intervals. */
    if (k->rmt_wnd == 0) {
        if (k->probe_wait == 0) {
            k->probe_wait = PROBE_INIT;
            k->ts_probe = now + k->probe_wait;
        } else if (diff(now, k->ts_probe) >= 0) {
            k->probe_wait += k->probe_wait / 2;
            if (k->probe_wait > PROBE_LIMIT) k->probe_wait = PROBE_LIMIT;
            k->ts_probe = now + k->probe_wait;
            k->probe |= ASK_SEND;
        }
    } else {
        k->ts_probe = k->probe_wait = 0;
    }
    if (k->probe & ASK_SEND) out_seg(k, WR_KCP_CMD_WASK, 0, 0, NULL, 0);
    if (k->probe & ASK_TELL) out_seg(k, WR_KCP_CMD_WINS, 0, 0, NULL, 0);
    k->probe = 0;

    cwnd = send_window(k);
    if (k->pacing) {
        if (!k->pacer_started) {
            wr_kcp_pacer_init(&k->pacer, k->mss, now);
            k->pacer_started = 1;
        }
        wr_kcp_pacer_tick(&k->pacer, now, k->srtt, k->sq.len == 0);
    }
    /* New segments, cut from the byte queue, while the window (and the pace) allows. */
    while (k->sq.len > 0 && diff(k->snd_nxt, k->snd_una + cwnd) < 0 && fresh++ < k->burst &&
           (!k->pacing || wr_kcp_pacer_may_send(&k->pacer))) {
        seg_t *s = &k->snd[k->snd_nxt & k->snd_mask];
        if (!s->data && !(s->data = malloc(k->mss))) break;
        s->len = (uint32_t)bytes_pop(&k->sq, s->data, k->mss);
        s->sn = k->snd_nxt++;
        s->ts = now;
        s->xmit = 0;
        s->fastack = 0;
        s->rto = k->rto;
        s->resendts = now;
        s->used = 1;
        if (k->pacing) wr_kcp_pacer_spend(&k->pacer, s->len + WR_KCP_HEADER);
    }

    fast = k->resend ? k->resend : 0xffffffffu;
    rtomin = k->nodelay ? 0 : k->rto >> 3;
    for (uint32_t sn = k->snd_una; sn != k->snd_nxt; sn++) {
        seg_t *s = &k->snd[sn & k->snd_mask];
        int send = 0;
        if (!s->used) continue;
        if (s->xmit == 0) {
            send = 1;
            s->rto = k->rto;
            s->resendts = now + s->rto + rtomin;
        } else if (diff(now, s->resendts) >= 0) {
            send = 1;
            k->st.retransmits++;
            k->st.lost_segments++;
            if (k->nodelay == 0)
                s->rto += s->rto > k->rto ? s->rto : k->rto;
            else
                s->rto += (k->nodelay < 2 ? s->rto : k->rto) / 2;
            s->resendts = now + s->rto;
            lost = 1;
        } else if (s->fastack >= fast) {
            send = 1;
            k->st.fast_retransmits++;
            s->fastack = 0;
            s->resendts = now + s->rto;
            change = 1;
        }
        if (!send) continue;
        if (k->pacing && s->xmit > 0) wr_kcp_pacer_spend(&k->pacer, s->len + WR_KCP_HEADER);
        s->xmit++;
        s->ts = now;
        out_seg(k, WR_KCP_CMD_PUSH, s->ts, s->sn, s->data, s->len);
        k->st.segs_sent++;
        k->st.bytes_sent += s->len;
        if (s->xmit >= k->dead_link) k->dead = 1;
    }
    out_flush(k);

    /* Congestion: halve on a fast retransmit, restart on a timeout. */
    if (change) {
        uint32_t inflight = k->snd_nxt - k->snd_una;
        k->ssthresh = inflight / 2 < THRESH_MIN ? THRESH_MIN : inflight / 2;
        k->cwnd = k->ssthresh + fast;
        k->incr = k->cwnd * k->mss;
    }
    if (lost) {
        k->ssthresh = cwnd / 2 < THRESH_MIN ? THRESH_MIN : cwnd / 2;
        k->cwnd = 1;
        k->incr = k->mss;
    }
    if (k->cwnd < 1) {
        k->cwnd = 1;
        k->incr = k->mss;
    }
}

void wr_kcp_update(wr_kcp_t *k, uint32_t now)
{
    int32_t slap;
    if (!k->updated) {
        k->updated = 1;
        k->ts_flush = now;
    }
    slap = diff(now, k->ts_flush);
    if (slap >= 10000 || slap < -10000) {
        k->ts_flush = now;
        slap = 0;
    }
    if (slap >= 0) {
        k->ts_flush += k->interval;
        if (diff(now, k->ts_flush) >= 0) k->ts_flush = now + k->interval;
        wr_kcp_flush(k, now);
    }
}

uint32_t wr_kcp_check(const wr_kcp_t *k, uint32_t now)
{
    uint32_t next = now + k->interval;
    int32_t until;
    if (!k->updated) return now;
    if (k->nacks || k->probe) return now;
    until = diff(k->ts_flush, now);
    if (until <= 0) return now;
    if ((uint32_t)until < k->interval) next = k->ts_flush;
    if (k->sq.len > 0 && diff(k->snd_nxt, k->snd_una + send_window(k)) < 0) {
        /* New data may go: now, or when the pace allows. */
        uint32_t wait = k->pacing && k->pacer_started ? wr_kcp_pacer_wait(&k->pacer, now) : 0;
        if (wait == 0) return now;
        if (diff(now + wait, next) < 0) next = now + wait;
    }
    for (uint32_t sn = k->snd_una; sn != k->snd_nxt; sn++) {
        const seg_t *s = &k->snd[sn & k->snd_mask];
        if (!s->used) continue;
        if (diff(s->resendts, now) <= 0) return now;
        if (diff(s->resendts, next) < 0) next = s->resendts;
    }
    return next;
}

void wr_kcp_hold_acks(wr_kcp_t *k, int hold)
{
    k->hold_acks = hold;
}

int wr_kcp_is_dead(const wr_kcp_t *k)
{
    return k->dead;
}

uint32_t wr_kcp_rcv_nxt(const wr_kcp_t *k)
{
    return k->rcv_nxt;
}

uint32_t wr_kcp_snd_nxt(const wr_kcp_t *k)
{
    return k->snd_nxt;
}

uint32_t wr_kcp_snd_una(const wr_kcp_t *k)
{
    return k->snd_una;
}

uint32_t wr_kcp_rcv_wnd(const wr_kcp_t *k)
{
    return k->rcv_wnd;
}

void wr_kcp_get_stats(const wr_kcp_t *k, wr_kcp_stats *out)
{
    *out = k->st;
    out->srtt_ms = k->srtt;
    out->rttvar_ms = k->rttvar;
    out->rto_ms = k->rto;
    out->cwnd = k->cwnd;
    out->snd_wnd = k->snd_wnd;
    out->rcv_wnd = k->rcv_wnd;
    out->rmt_wnd = k->rmt_wnd;
    out->in_flight = k->snd_nxt - k->snd_una;
    out->pacing_rate = k->pacing && k->pacer_started ? wr_kcp_pacer_rate(&k->pacer) : 0;
}
