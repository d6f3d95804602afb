#include "wr_kcp_endpoint.h"

#include "wr_addr.h"
#include "wr_log.h"

#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024
/* recvmmsg: libuv cuts the receive buffer into 64 KiB slots, one per datagram. */
#define MMSG_SLOTS 16
#define DGRAM_SLOT (64 * 1024)
#define BURST      128

typedef struct kcp_ep kcp_ep_t;

struct wr_kcp_listener {
    uv_loop_t *loop;
    uv_udp_t udp;
    wr_server_t *srv;
    wr_kcp_config cfg;
    kcp_ep_t *table[BUCKETS];
    char *rbuf;
    int closed, udp_closed;
    int clock_read; /* for the recvmmsg batch being delivered (batch_now) */
    uint32_t live;
    wr_kcp_listener_stats st;
};

struct kcp_ep {
    wr_endpoint_t base;
    uv_loop_t *loop;
    wr_kcp_t *kcp;
    uv_timer_t timer;
    uv_udp_t *udp;          /* the client's own socket, or the listener's */
    wr_kcp_listener_t *lst; /* relay side */
    struct sockaddr_storage peer;
    kcp_ep_t *next;              /* in the listener's bucket */
    char *rbuf;                  /* client: the receive buffer */
    int clock_read;              /* client: for the recvmmsg batch being delivered */
    uint64_t rx_bytes, tx_bytes; /* datagram bytes, for the anti-amplification cap */
    int validated;
    int in_table;
    wr_kcp_counters *counters;
};

static const wr_endpoint_cbs_t no_cbs;
static int warned_buffers;

void wr_kcp_counters_release(wr_kcp_counters *c)
{
    if (c && --c->refs == 0) free(c);
}

static uint32_t now_ms(uv_loop_t *loop)
{
    return (uint32_t)uv_now(loop);
}

/* The clock, read again: the loop's time is taken once per pass, and a busy pass (hundreds of
 * datagrams read, decrypted and delivered) would stamp a late acknowledgement with the pass's
 * start, a round trip shorter than the path's, which the pacer takes as its base. */
static uint32_t fresh_now_ms(uv_loop_t *loop)
{
    uv_update_time(loop);
    return now_ms(loop);
}

/* The time for a received datagram, read once per recvmmsg batch (up to MMSG_SLOTS datagrams):
 * every datagram of a batch had arrived before that read, so none is stamped early, and reading
 * it per datagram cost 3% of loopback throughput. A datagram read on its own reads it itself; the
 * batch's last call (UV_UDP_MMSG_FREE) clears *clock_read. */
static uint32_t batch_now(uv_loop_t *loop, int *clock_read, unsigned flags)
{
    if (!*clock_read) {
        uv_update_time(loop);
        *clock_read = (flags & UV_UDP_MMSG_CHUNK) != 0;
    }
    return now_ms(loop);
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr *b)
{
    if (a->ss_family != b->sa_family) return 0;
    if (b->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (b->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}

static void copy_addr(struct sockaddr_storage *dst, const struct sockaddr *src)
{
    memset(dst, 0, sizeof *dst);
    memcpy(dst, src,
           src->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
}

/* Socket buffers for a window's worth of datagrams each way; a kernel cap is worth a warning,
 * since a buffer smaller than the window drops what the window lets the peer send. */
static void size_buffers(uv_udp_t *udp, const wr_kcp_config *cfg)
{
    int want_rcv = (int)(cfg->rcv_wnd * cfg->mtu), want_snd = (int)(cfg->snd_wnd * cfg->mtu);
    int rcv = want_rcv, snd = want_snd;
    uv_recv_buffer_size((uv_handle_t *)udp, &rcv);
    uv_send_buffer_size((uv_handle_t *)udp, &snd);
    rcv = snd = 0;
    uv_recv_buffer_size((uv_handle_t *)udp, &rcv);
    uv_send_buffer_size((uv_handle_t *)udp, &snd);
    /* Linux reports twice what it granted. */
    if ((rcv / 2 < want_rcv || snd / 2 < want_snd) && !warned_buffers) {
        warned_buffers = 1;
        wr_warn("kcp: the kernel granted UDP buffers of %d/%d bytes for a window of %d/%d "
                "(raise net.core.rmem_max and net.core.wmem_max)",
                rcv / 2, snd / 2, want_rcv, want_snd);
    }
}

/* ---- the listener's conversation table ---- */

static kcp_ep_t **bucket(wr_kcp_listener_t *l, uint32_t conv)
{
    return &l->table[(conv * 2654435761u) >> 22 & (BUCKETS - 1)];
}

static kcp_ep_t *lookup(wr_kcp_listener_t *l, uint32_t conv)
{
    for (kcp_ep_t *e = *bucket(l, conv); e; e = e->next)
        if (wr_kcp_conv(e->kcp) == conv) return e;
    return NULL;
}

static void unlink_ep(kcp_ep_t *e)
{
    if (!e->in_table) return;
    for (kcp_ep_t **pp = bucket(e->lst, wr_kcp_conv(e->kcp)); *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    e->in_table = 0;
}

static void listener_maybe_free(wr_kcp_listener_t *l);

/* ---- the endpoint ---- */

static void output(const uint8_t *dgram, size_t len, void *user)
{
    kcp_ep_t *e = user;
    uv_buf_t b = uv_buf_init((char *)dgram, (unsigned)len);
    int rc;
    if (e->lst) {
        /* Anti-amplification: no more bytes to an unproven address than it sent. */
        if (!e->validated && e->tx_bytes + len > e->rx_bytes) {
            e->lst->st.amplification_cap++;
            return;
        }
        rc = uv_udp_try_send(e->udp, &b, 1, (const struct sockaddr *)&e->peer);
        if (rc < 0) e->lst->st.send_errors++;
    } else {
        rc = uv_udp_try_send(e->udp, &b, 1, NULL);
    }
    if (rc >= 0) e->tx_bytes += len;
}

static void tick(uv_timer_t *t);

/* Arms the timer for KCP's next due time; with nothing in flight and nothing owed, it sleeps
 * until a write or a datagram. */
static void arm(kcp_ep_t *e, uint32_t min_delay)
{
    uint32_t now = now_ms(e->loop), due;
    wr_kcp_stats st;
    if (e->base.flags & WR_EP_CLOSING) return;
    wr_kcp_get_stats(e->kcp, &st);
    due = wr_kcp_check(e->kcp, now);
    if (due != now && wr_kcp_unacked(e->kcp) == 0 && st.rmt_wnd != 0 &&
        !(e->base.flags & WR_EP_SHUT)) {
        uv_timer_stop(&e->timer);
        return;
    }
    /* From the timer's own callback, a delay of 0 would run it again within the same pass of
     * libuv's timers, for ever: such a tick waits a millisecond. */
    uv_timer_start(&e->timer, tick,
                   (int32_t)(due - now) > (int32_t)min_delay ? due - now : min_delay, 0);
}

/* After KCP ran: bytes cut into segments leave the write queue, in-order bytes go to the reader,
 * a finished shutdown and a dead link are reported. Callbacks may close the endpoint. The write
 * queue is what waits for KCP's window or pace, not what is in flight: counted until
 * acknowledged, the bytes a lossy path keeps in flight would hold the writer back at the
 * queue's high-water mark (512 KiB for a session: 12 MiB/s at 20 ms with 2% loss), long before
 * KCP's own window. */
static void pump(kcp_ep_t *e, uint32_t min_delay)
{
    wr_endpoint_t *ep = &e->base;
    size_t waiting = wr_kcp_waiting(e->kcp);
    if (e->counters) wr_kcp_get_stats(e->kcp, &e->counters->st);
    if (waiting < ep->queued) wr_endpoint__queue_done(ep, ep->queued - waiting, 1);
    while ((ep->flags & (WR_EP_READING | WR_EP_CLOSING)) == WR_EP_READING &&
           wr_kcp_readable(e->kcp) > 0) {
        wr_buf_t *b = wr_buf_get();
        size_t n;
        if (!b) {
            wr_endpoint__report_error(&e->base, UV_ENOMEM);
            return;
        }
        n = wr_kcp_recv(e->kcp, b->data, b->size);
        ep->bytes_read += n;
        if (ep->cbs->on_read) ep->cbs->on_read(ep, b, b->data, n);
        wr_buf_release(b);
    }
    if (ep->flags & WR_EP_CLOSING) return;
    if (wr_kcp_is_dead(e->kcp)) {
        wr_endpoint__report_error(&e->base, UV_ETIMEDOUT);
        return;
    }
    /* Shut down: KCP has no FIN (the session ends in its own frames), so the write side is done
     * once everything written was acknowledged. */
    if ((ep->flags & (WR_EP_SHUT | WR_EP_EOF)) == WR_EP_SHUT && wr_kcp_unacked(e->kcp) == 0) {
        ep->flags |= WR_EP_EOF; /* reused here: on_shutdown was reported */
        wr_endpoint__report_shutdown(ep, 0);
        if (ep->flags & WR_EP_CLOSING) return;
    }
    arm(e, min_delay);
}

/* KCP's clock: the periodic flush, and at once what is owed (acks, new data, window answers). */
static void tick(uv_timer_t *t)
{
    kcp_ep_t *e = t->data;
    uint32_t now = fresh_now_ms(e->loop); /* the segments it sends are stamped with it */
    wr_kcp_update(e->kcp, now);
    if (wr_kcp_check(e->kcp, now) == now) wr_kcp_flush(e->kcp, now);
    pump(e, 1);
}

static void input(kcp_ep_t *e, const uint8_t *data, size_t len, uint32_t now)
{
    e->rx_bytes += len;
    wr_kcp_input(e->kcp, data, len, now);
    if (!e->validated && wr_kcp_rcv_nxt(e->kcp) >= 2) {
        /* Data past msg1: the client read msg2, so it receives at this address. */
        e->validated = 1;
        wr_kcp_hold_acks(e->kcp, 0);
    }
    pump(e, 0);
}

static int ep_read_start(wr_endpoint_t *ep)
{
    kcp_ep_t *e = (kcp_ep_t *)ep;
    if (ep->flags & WR_EP_CLOSING) return UV_EINVAL;
    if (ep->flags & WR_EP_READING) return 0;
    ep->flags |= WR_EP_READING;
    /* Bytes that arrived while reading was stopped go out from the loop, never from here. */
    if (wr_kcp_readable(e->kcp) > 0) uv_timer_start(&e->timer, tick, 0, 0);
    return 0;
}

static int ep_read_stop(wr_endpoint_t *ep)
{
    ep->flags &= ~WR_EP_READING;
    return 0;
}

static int ep_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    kcp_ep_t *e = (kcp_ep_t *)ep;
    (void)b;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_SHUT | WR_EP_ERRORED)) return UV_EPIPE;
    if (len == 0) return 0;
    if (wr_kcp_send(e->kcp, base, len) != 0) return UV_ENOMEM;
    wr_endpoint__queue_add(ep, len);
    /* The flush runs from the loop, so writes of one turn share datagrams (and msg1, the very
     * first write, leaves alone in the first). */
    uv_timer_start(&e->timer, tick, 0, 0);
    return 0;
}

static int ep_shutdown(wr_endpoint_t *ep)
{
    kcp_ep_t *e = (kcp_ep_t *)ep;
    if (ep->flags & WR_EP_CLOSING) return UV_EPIPE;
    if (ep->flags & WR_EP_SHUT) return UV_EALREADY;
    ep->flags |= WR_EP_SHUT;
    uv_timer_start(&e->timer, tick, 0, 0);
    return 0;
}

static void free_ep(kcp_ep_t *e)
{
    wr_kcp_listener_t *l = e->lst;
    if (e->counters) wr_kcp_counters_release(e->counters);
    wr_kcp_free(e->kcp);
    free(e->rbuf);
    free(e);
    if (l) {
        l->live--;
        listener_maybe_free(l);
    }
}

static void client_udp_closed(uv_handle_t *h)
{
    free(h);
}

static void timer_closed(uv_handle_t *h)
{
    kcp_ep_t *e = h->data;
    if (e->base.cbs->on_closed) e->base.cbs->on_closed(&e->base);
    free_ep(e);
}

static void add_stats(wr_kcp_stats *sum, const wr_kcp_stats *s);

static void ep_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    kcp_ep_t *e = (kcp_ep_t *)ep;
    (void)mode; /* KCP has no reset: the peer's session ends on its own keepalive */
    if (ep->flags & WR_EP_CLOSING) return;
    ep->flags |= WR_EP_CLOSING;
    ep->flags &= ~WR_EP_READING;
    if (e->lst) {
        wr_kcp_stats st;
        wr_kcp_get_stats(e->kcp, &st);
        add_stats(&e->lst->st.kcp, &st);
        unlink_ep(e);
    } else {
        uv_close((uv_handle_t *)e->udp, client_udp_closed);
    }
    uv_close((uv_handle_t *)&e->timer, timer_closed);
}

static const wr_endpoint_ops_t kcp_ops = {
    .kind = "kcp",
    .read_start = ep_read_start,
    .read_stop = ep_read_stop,
    .write = ep_write,
    .shutdown = ep_shutdown,
    .close = ep_close,
};

static kcp_ep_t *ep_new(uv_loop_t *loop, uint32_t conv, const wr_kcp_config *cfg)
{
    kcp_ep_t *e = calloc(1, sizeof *e);
    wr_kcp_config paced = *cfg;
    if (!e) return NULL;
    /* A flush sends at most BURST new segments; the next goes out after the loop has read what
     * arrived meanwhile (a millisecond later from the timer). Within that, new segments leave at
     * the estimated delivery rate (wr_kcp_pacer.h): across a 100 Mbit/s bottleneck, 20 ms and 2%
     * loss, that moved a quarter to a third more than sending each window at once, with a fifth
     * fewer bytes on the wire (spec/bench/kcp_link.sh). */
    if (!paced.burst) paced.burst = BURST;
    paced.pacing = 1;
    e->kcp = wr_kcp_new(conv, &paced, output, e);
    e->counters = calloc(1, sizeof *e->counters);
    if (!e->kcp || !e->counters) {
        wr_kcp_free(e->kcp);
        free(e->counters);
        free(e);
        return NULL;
    }
    e->counters->refs = 1;
    wr_endpoint__init(&e->base, &kcp_ops, &no_cbs);
    e->loop = loop;
    uv_timer_init(loop, &e->timer);
    e->timer.data = e;
    return e;
}

wr_kcp_counters *wr_kcp_endpoint_counters(wr_endpoint_t *ep)
{
    kcp_ep_t *e = (kcp_ep_t *)ep;
    if (!ep || ep->ops != &kcp_ops) return NULL;
    e->counters->refs++;
    return e->counters;
}

/* ---- client ---- */

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    kcp_ep_t *e = h->data;
    (void)suggested;
    *out = uv_buf_init(e->rbuf, MMSG_SLOTS * DGRAM_SLOT);
}

static void client_recv(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags)
{
    kcp_ep_t *e = udp->data;
    (void)addr;
    if (flags & UV_UDP_MMSG_FREE) e->clock_read = 0;
    if (nread <= 0 || (e->base.flags & WR_EP_CLOSING)) return; /* errors: KCP retransmits */
    input(e, (const uint8_t *)buf->base, (size_t)nread, batch_now(e->loop, &e->clock_read, flags));
}

static uint32_t random_conv(void)
{
    uint32_t conv = 0;
    while (conv == 0)
        if (uv_random(NULL, NULL, &conv, sizeof conv, 0, NULL) != 0) conv = (uint32_t)rand();
    return conv;
}

int wr_kcp_client_new(uv_loop_t *loop, const struct sockaddr *relay, const wr_kcp_config *cfg,
                      wr_endpoint_t **out)
{
    kcp_ep_t *e;
    int rc;
    if ((cfg->mtu ? cfg->mtu : WR_KCP_MTU_DEFAULT) < WR_KCP_CARRIER_MTU_MIN) return UV_EINVAL;
    e = ep_new(loop, random_conv(), cfg);
    if (!e) return UV_ENOMEM;
    e->udp = malloc(sizeof *e->udp);
    e->rbuf = malloc(MMSG_SLOTS * DGRAM_SLOT);
    rc = !e->udp || !e->rbuf ? UV_ENOMEM
                             : uv_udp_init_ex(loop, e->udp, relay->sa_family | UV_UDP_RECVMMSG);
    if (rc != 0) {
        free(e->udp);
        e->udp = NULL;
        goto fail;
    }
    e->udp->data = e;
    e->validated = 1;
    if ((rc = uv_udp_connect(e->udp, relay)) != 0 ||
        (rc = uv_udp_recv_start(e->udp, client_alloc, client_recv)) != 0) {
        uv_close((uv_handle_t *)e->udp, client_udp_closed);
        e->udp = NULL;
        goto fail;
    }
    size_buffers(e->udp, cfg);
    *out = &e->base;
    return 0;
fail:
    uv_close((uv_handle_t *)&e->timer, timer_closed); /* frees e; no callbacks are set yet */
    return rc;
}

/* ---- relay ---- */

static void add_stats(wr_kcp_stats *sum, const wr_kcp_stats *s)
{
    sum->segs_sent += s->segs_sent;
    sum->segs_received += s->segs_received;
    sum->bytes_sent += s->bytes_sent;
    sum->bytes_received += s->bytes_received;
    sum->retransmits += s->retransmits;
    sum->fast_retransmits += s->fast_retransmits;
    sum->lost_segments += s->lost_segments;
    sum->duplicates += s->duplicates;
}

static void listener_udp_closed(uv_handle_t *h)
{
    wr_kcp_listener_t *l = h->data;
    l->udp_closed = 1;
    listener_maybe_free(l);
}

static void listener_maybe_free(wr_kcp_listener_t *l)
{
    if (!l->closed || l->live > 0) return;
    if (!l->udp_closed) {
        if (!uv_is_closing((uv_handle_t *)&l->udp))
            uv_close((uv_handle_t *)&l->udp, listener_udp_closed);
        return;
    }
    free(l->rbuf);
    free(l);
}

static void listener_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    wr_kcp_listener_t *l = h->data;
    (void)suggested;
    *out = uv_buf_init(l->rbuf, MMSG_SLOTS * DGRAM_SLOT);
}

/* A datagram of an unknown conversation: a session starts only on one PUSH segment, sn 0, una
 * 0, holding a whole msg1 the server accepts. Nothing is sent, nothing kept, otherwise. */
static void first_datagram(wr_kcp_listener_t *l, const uint8_t *data, size_t len,
                           const struct sockaddr *peer)
{
    wr_kcp_seg_header h;
    wr_hs_server checked;
    uint8_t scratch[WR_KCP_MTU_DEFAULT];
    kcp_ep_t *e;
    if (l->closed || wr_kcp_parse_header(data, len, &h) != 0 || h.cmd != WR_KCP_CMD_PUSH ||
        h.sn != 0 || h.una != 0 || h.conv == 0 || h.len != len - WR_KCP_HEADER || h.len == 0 ||
        wr_server_check(l->srv, data + WR_KCP_HEADER, h.len, &checked) != 0) {
        l->st.refused++;
        return;
    }
    e = ep_new(l->loop, h.conv, &l->cfg);
    if (!e) return;
    e->lst = l;
    e->udp = &l->udp;
    copy_addr(&e->peer, peer);
    l->live++;
    l->st.sessions++;
    wr_kcp_hold_acks(e->kcp, 1);
    e->rx_bytes = len;
    wr_kcp_input(e->kcp, data, len, now_ms(l->loop));
    /* msg1 was checked here: the session must not see it again. */
    while (wr_kcp_readable(e->kcp) > 0)
        wr_kcp_recv(e->kcp, scratch, sizeof scratch);
    e->next = *bucket(l, h.conv);
    *bucket(l, h.conv) = e;
    e->in_table = 1;
    wr_server_take_checked(l->srv, &e->base, peer, &checked); /* on failure it closes e */
}

/* Would this datagram move its conversation forward? Only such a one may move it to a new
 * address (see the header). */
static int advances(kcp_ep_t *e, const uint8_t *data, size_t len)
{
    uint32_t rcv_nxt = wr_kcp_rcv_nxt(e->kcp), snd_una = wr_kcp_snd_una(e->kcp),
             snd_nxt = wr_kcp_snd_nxt(e->kcp), wnd = wr_kcp_rcv_wnd(e->kcp);
    int forward = 0;
    if (!e->validated) return 0;
    while (len > 0) {
        wr_kcp_seg_header h;
        if (wr_kcp_parse_header(data, len, &h) != 0 || h.conv != wr_kcp_conv(e->kcp) ||
            h.cmd < WR_KCP_CMD_PUSH || h.cmd > WR_KCP_CMD_WINS)
            return 0;
        /* Every segment must fit: a una past what was sent proves a guess. */
        if ((int32_t)(h.una - snd_una) < 0 || (int32_t)(h.una - snd_nxt) > 0) return 0;
        if (h.una != snd_una) forward = 1;
        if (h.cmd == WR_KCP_CMD_PUSH) {
            if ((int32_t)(h.sn - rcv_nxt) < 0 || (int32_t)(h.sn - (rcv_nxt + wnd)) >= 0) return 0;
            forward = 1;
        } else if (h.cmd == WR_KCP_CMD_ACK) {
            if ((int32_t)(h.sn - snd_una) < 0 || (int32_t)(h.sn - snd_nxt) >= 0) return 0;
            forward = 1;
        }
        data += WR_KCP_HEADER + h.len;
        len -= WR_KCP_HEADER + h.len;
    }
    return forward;
}

static void listener_recv(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf,
                          const struct sockaddr *addr, unsigned flags)
{
    wr_kcp_listener_t *l = udp->data;
    const uint8_t *data = (const uint8_t *)buf->base;
    kcp_ep_t *e;
    uint32_t conv;
    if (flags & UV_UDP_MMSG_FREE) l->clock_read = 0;
    if (nread <= 0 || !addr) return;
    if (nread < WR_KCP_HEADER) {
        l->st.refused++;
        return;
    }
    conv = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
           (uint32_t)data[3] << 24;
    e = lookup(l, conv);
    if (!e) {
        first_datagram(l, data, (size_t)nread, addr);
        return;
    }
    if (!same_addr(&e->peer, addr)) {
        if (!advances(e, data, (size_t)nread)) {
            l->st.refused++;
            return;
        }
        copy_addr(&e->peer, addr);
        l->st.rebinds++;
    }
    input(e, data, (size_t)nread, batch_now(l->loop, &l->clock_read, flags));
}

int wr_kcp_listen(uv_loop_t *loop, const struct sockaddr *addr, wr_server_t *srv,
                  const wr_kcp_config *cfg, wr_kcp_listener_t **out)
{
    wr_kcp_listener_t *l;
    wr_kcp_t *probe;
    int rc;
    /* The config must make a valid KCP instance, checked now rather than on the first client. */
    if (!(probe = wr_kcp_new(1, cfg, output, NULL))) return UV_EINVAL;
    wr_kcp_free(probe);
    l = calloc(1, sizeof *l);
    if (!l || !(l->rbuf = malloc(MMSG_SLOTS * DGRAM_SLOT))) {
        free(l);
        return UV_ENOMEM;
    }
    l->loop = loop;
    l->srv = srv;
    l->cfg = *cfg;
    if (!l->cfg.mtu) l->cfg.mtu = WR_KCP_MTU_DEFAULT;
    if (!l->cfg.snd_wnd) l->cfg.snd_wnd = 128;
    if (!l->cfg.rcv_wnd) l->cfg.rcv_wnd = 512;
    rc = uv_udp_init_ex(loop, &l->udp, addr->sa_family | UV_UDP_RECVMMSG);
    if (rc != 0) {
        free(l->rbuf);
        free(l);
        return rc;
    }
    l->udp.data = l;
    if ((rc = uv_udp_bind(&l->udp, addr, 0)) != 0 ||
        (rc = uv_udp_recv_start(&l->udp, listener_alloc, listener_recv)) != 0) {
        l->closed = 1;
        listener_maybe_free(l);
        return rc;
    }
    size_buffers(&l->udp, &l->cfg);
    *out = l;
    return 0;
}

int wr_kcp_listener_port(const wr_kcp_listener_t *l)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_udp_getsockname(&l->udp, (struct sockaddr *)&ss, &len) != 0) return -1;
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void wr_kcp_listener_close(wr_kcp_listener_t *l)
{
    if (l->closed) return;
    l->closed = 1;
    uv_udp_recv_stop(&l->udp);
    listener_maybe_free(l);
}

void wr_kcp_listener_get_stats(const wr_kcp_listener_t *l, wr_kcp_listener_stats *out)
{
    uint32_t n = 0;
    uint64_t srtt = 0, rto = 0, cwnd = 0;
    *out = l->st;
    out->conversations = l->live;
    for (size_t i = 0; i < BUCKETS; i++)
        for (kcp_ep_t *e = l->table[i]; e; e = e->next) {
            wr_kcp_stats st;
            wr_kcp_get_stats(e->kcp, &st);
            add_stats(&out->kcp, &st);
            srtt += st.srtt_ms;
            rto += st.rto_ms;
            cwnd += st.cwnd;
            out->kcp.in_flight += st.in_flight;
            out->kcp.pacing_rate += st.pacing_rate;
            n++;
        }
    if (n) {
        out->kcp.srtt_ms = (uint32_t)(srtt / n);
        out->kcp.rto_ms = (uint32_t)(rto / n);
        out->kcp.cwnd = (uint32_t)(cwnd / n);
    }
    out->kcp.snd_wnd = l->cfg.snd_wnd;
    out->kcp.rcv_wnd = l->cfg.rcv_wnd;
}
