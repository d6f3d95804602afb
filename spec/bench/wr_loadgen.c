/* wr_loadgen: loopback load generator for warren's benchmark (bench.sh), stress and hardening
 * runs (attack.sh, chaos.sh, soak.sh).
 *
 * One libuv loop, one thread. Every client connection of the echo modes runs the same message
 * loop: send a message (a per-connection, per-message byte pattern), read the echo back, verify
 * every byte, record the round-trip time, then decide what to do next (send again, hold idle, or
 * close and redial). The modes only differ in that last decision, so pingpong, connrate, hold and
 * stress share one code path. The attack modes (probe, flood) use "raw" connections that send
 * random bytes or nothing, from chosen loopback source addresses, and count every byte that comes
 * back; forward is a TCP forwarder that can record a client's first bytes. Only loopback
 * addresses are accepted and every mode ends on its own. */
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define WR_READ_BUF     (64 * 1024)
#define WR_HIST_SUB     64 /* sub-buckets per power of two: ~1.6% resolution */
#define WR_HIST_BUCKETS (WR_HIST_SUB * 48)
#define WR_NS_PER_S     1000000000ull
#define WR_POOL_SIZE    (64 * 1024) /* random bytes that probes and floods send slices of */
#define WR_RAW_TICK_MS  10
#define WR_RAW_REDIAL   WR_NS_PER_S           /* an idle slot dropped by the peer waits this long */
#define WR_GARBAGE_HOLD (20 * 1000 * 1000ull) /* ns a garbage connection stays after its write */
#define WR_IDLE_RAMP    50                    /* idle connections dialled per tick at most */

enum wr_mode {
    WR_PINGPONG,
    WR_CONNRATE,
    WR_HOLD,
    WR_ECHO,
    WR_STRESS,
    WR_PROBE,
    WR_FLOOD,
    WR_FORWARD
};

struct wr_opts {
    enum wr_mode mode;
    const char *target;
    const char *listen;
    long conns;
    long msgs;   /* per connection; 0 = until the duration ends */
    size_t size; /* bytes per message */
    double duration;
    double interval; /* seconds between report lines; 0 = none */
    double timeout;  /* connect or one round trip longer than this is an error */
    long dial_concurrency;
    int quiet;
    /* probe, flood, forward */
    const char *src;     /* source address or FIRST-LAST range, IPv4 loopback */
    const char *payload; /* probe: send this file's bytes instead of random ones */
    const char *record;  /* forward: write the first connection's first bytes here */
    long probes;
    size_t max_size; /* random payloads are 1..max_size bytes */
    double wait;     /* probe: how long each probe listens for an answer */
    long idle;       /* flood: connections held open */
    double drip;     /* flood: an idle connection sends one byte this often; 0 = never */
    double rate;     /* flood: garbage connections per second */
};

/* Log-linear latency histogram in nanoseconds: bounded memory however long the run. */
struct wr_hist {
    uint64_t n;
    uint64_t max;
    uint64_t counts[WR_HIST_BUCKETS];
};

enum wr_cstate { WR_C_FREE, WR_C_CONNECTING, WR_C_WAITING, WR_C_IDLE, WR_C_CLOSING };

struct wr_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uint32_t id;
    enum wr_cstate state;
    int finished; /* done for good: no redial */
    uint64_t seq;
    uint64_t t_op; /* start of the current connect/round trip */
    uint64_t deadline;
    uint64_t t_dial;
    size_t recv_off;
    long msgs_done;
    int failed;
    unsigned char *tx;
};

struct wr_sconn {
    uv_tcp_t tcp;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    char *pending;
    size_t pending_len;
    int failed;
    uint64_t in, out; /* bytes received and echoed back */
    uint64_t t_first; /* arrival of the first byte of the message being echoed */
    struct wr_sconn *prev, *next;
};

/* Client counters; "last" copies feed the per-interval lines. msgs are verified echoes. */
struct wr_counts {
    uint64_t sent, msgs, bytes, ok, failed;
    uint64_t err_connect, err_timeout, err_reset, err_corrupt, err_extra, err_unfinished;
};

/* The echo server's counters. It knows no message boundaries, so it counts whole SIZE-byte
 * messages of each connection's byte stream. */
struct wr_scounts {
    uint64_t accepted, ok, failed, msgs_in, msgs_out, bytes_out, errors;
};

enum wr_rkind { WR_R_PROBE, WR_R_IDLE, WR_R_GARBAGE };
enum wr_rstate { WR_R_FREE, WR_R_CONNECTING, WR_R_OPEN, WR_R_CLOSING };

/* A connection of probe or flood: it sends random bytes (or nothing) and counts what comes back. */
struct wr_raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    enum wr_rkind kind;
    enum wr_rstate state;
    int answered;
    uint64_t due; /* close (probe, garbage), next drip (idle), or redial (idle, when free) */
};

/* probe and flood counters. answered: bytes the target sent back, which for a warren relay
 * facing garbage must stay 0. */
struct wr_rcounts {
    uint64_t dialed, connected, connect_errors, silent, bytes_sent, answered_bytes, answered_conns,
        closed_by_peer, drips;
    int last_connect_error; /* why connects fail tells a full backlog from a lack of ports */
};

/* forward: one accepted connection (side 0) and the one dialled for it (side 1). */
struct wr_fwd {
    uv_tcp_t side[2];
    uv_connect_t creq;
    uv_write_t wreq[2];
    char *pending[2];
    int handles; /* still to be closed */
    int closing;
    int recording;
    struct wr_fwd *prev, *next;
};

static struct {
    struct wr_opts o;
    uv_loop_t *loop;
    struct sockaddr_storage target;
    struct sockaddr_storage listen_addr;
    struct wr_conn *conns;
    long nslots;
    long dialed; /* hold: connections started so far */
    long held;
    long held_at_stop;
    long active;
    int stopping;
    int ready_printed;
    uint64_t t_start, t_end, t_report;
    struct wr_hist hist, ihist, s_hist, s_ihist;
    struct wr_counts c, c_last;
    struct wr_scounts s, s_last;
    uv_timer_t stop_timer, tick_timer, report_timer;
    uv_signal_t sigint, sigterm;
    uv_tcp_t server;
    int server_open;
    struct wr_sconn *sconns;
    uint64_t s_active;
    /* probe, flood, forward */
    uint32_t src_lo, src_hi, src_next; /* host byte order; src_lo 0 = let the kernel choose */
    unsigned char *payload;
    size_t payload_len;
    struct wr_raw *raws; /* probe: -c slots; flood: -idle slots, then the garbage slots */
    long nraws, nidle;
    long *garbage_free; /* indexes of free garbage slots */
    long garbage_nfree;
    uint64_t garbage_due; /* garbage connections the rate asks for so far */
    uint64_t garbage_skipped;
    long probes_started;
    uint64_t t_ramped;     /* flood: when the idle connections were all dialled */
    uint64_t garbage_last; /* garbage connections at the last FLOOD: line */
    struct wr_rcounts r;
    uv_timer_t raw_timer;
    FILE *record;
    int recorded;
    struct wr_fwd *fwds;
    uint64_t fwd_accepted;
    uint64_t rng;
} wr;

static char wr_rbuf[WR_READ_BUF];
static unsigned char wr_pool[WR_POOL_SIZE];

/* ---- histogram ---- */

static size_t wr_hist_index(uint64_t v)
{
    if (v < WR_HIST_SUB) return (size_t)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6;
    size_t idx = (size_t)(shift + 1) * WR_HIST_SUB + (size_t)((v >> shift) - WR_HIST_SUB);
    return idx < WR_HIST_BUCKETS ? idx : WR_HIST_BUCKETS - 1;
}

static uint64_t wr_hist_value(size_t idx)
{
    if (idx < WR_HIST_SUB) return idx;
    int shift = (int)(idx / WR_HIST_SUB) - 1;
    uint64_t low = (uint64_t)(WR_HIST_SUB + idx % WR_HIST_SUB) << shift;
    return low + ((1ull << shift) >> 1); /* bucket midpoint */
}

static void wr_hist_add(struct wr_hist *h, uint64_t ns)
{
    h->counts[wr_hist_index(ns)]++;
    h->n++;
    if (ns > h->max) h->max = ns;
}

static double wr_hist_pct_us(const struct wr_hist *h, double p)
{
    if (h->n == 0) return 0;
    uint64_t rank = (uint64_t)(p * (double)h->n + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < WR_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = wr_hist_value(i);
            return (double)(v < h->max ? v : h->max) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

/* ---- helpers ---- */

static double wr_now_s(void)
{
    return (double)(uv_hrtime() - wr.t_start) / 1e9;
}

static void wr_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wr_loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static uint64_t wr_errors(const struct wr_counts *c)
{
    return c->err_connect + c->err_timeout + c->err_reset + c->err_corrupt + c->err_extra +
           c->err_unfinished;
}

/* The pattern depends on connection and message number, so a byte echoed on the wrong
 * connection or replayed from an earlier message is caught, not just a flipped bit. */
static void wr_fill(struct wr_conn *c)
{
    uint64_t x = ((uint64_t)c->id << 32) ^ c->seq ^ 0x9e3779b97f4a7c15ull;
    size_t i = 0;
    while (i < wr.o.size) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for (int k = 0; k < 8 && i < wr.o.size; k++, i++)
            c->tx[i] = (unsigned char)(x >> (8 * k));
    }
}

static int wr_parse_addr(const char *s, struct sockaddr_storage *out)
{
    char host[128];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || strlen(colon + 1) == 0) return -1;
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof host) return -1;
    memcpy(host, s, hl);
    host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535) return -1;
    if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    if (host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
        if (uv_ip6_addr(host + 1, (int)port, a6)) return -1;
        static const unsigned char lo6[16] = {[15] = 1};
        return memcmp(&a6->sin6_addr, lo6, 16) == 0 ? 0 : -2;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    if (uv_ip4_addr(host, (int)port, a4)) return -1;
    return ((const unsigned char *)&a4->sin_addr)[0] == 127 ? 0 : -2;
}

/* ---- client side ---- */

static void wr_stop(void);
static void wr_conn_open(struct wr_conn *c);

/* hold dials the next slot only when one finishes, so at most dial_concurrency connection
 * setups are in flight: a burst of 2,000 SYNs would overflow small listen backlogs (socat's is 5)
 * and measure SYN retransmits instead of the tunnel. */
static void wr_hold_dial_next(void)
{
    while (!wr.stopping && wr.dialed < wr.o.conns) {
        struct wr_conn *c = &wr.conns[wr.dialed];
        wr_conn_open(c);
        if (c->state != WR_C_FREE) return;
    }
}

static void wr_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    /* One thread, and data is consumed inside read_cb: one buffer serves every socket. */
    buf->base = wr_rbuf;
    buf->len = sizeof wr_rbuf;
}

static void wr_maybe_finish(void)
{
    if (wr.stopping) return;
    if (wr.o.mode == WR_HOLD) {
        if (!wr.ready_printed && wr.dialed >= wr.o.conns &&
            wr.held + (long)wr_errors(&wr.c) >= wr.o.conns && wr.active == wr.held) {
            wr.ready_printed = 1;
            printf("ready held=%ld failed=%" PRIu64 " elapsed=%.3f\n", wr.held, wr_errors(&wr.c),
                   wr_now_s());
            fflush(stdout);
        }
        return;
    }
    if ((wr.o.mode == WR_PINGPONG || wr.o.mode == WR_STRESS) && wr.active == 0) wr_stop();
}

static void wr_conn_on_close(uv_handle_t *h)
{
    struct wr_conn *c = h->data;
    c->state = WR_C_FREE;
    wr.active--;
    if (wr.stopping) return;
    if (wr.o.mode == WR_CONNRATE)
        wr_conn_open(c);
    else if (wr.o.mode == WR_HOLD)
        wr_hold_dial_next();
    wr_maybe_finish();
}

static void wr_conn_close(struct wr_conn *c)
{
    if (c->state == WR_C_FREE || c->state == WR_C_CLOSING) return;
    if (c->state == WR_C_IDLE) wr.held--;
    c->state = WR_C_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, wr_conn_on_close);
}

/* A connection that failed in pingpong/stress/hold is not retried: it is one error. */
static void wr_conn_error(struct wr_conn *c, uint64_t *counter, const char *what, int status)
{
    (*counter)++;
    wr.c.failed++;
    c->failed = 1;
    if (!wr.o.quiet && wr.o.mode != WR_CONNRATE)
        fprintf(stderr, "wr_loadgen: conn %u: %s%s%s\n", c->id, what, status ? ": " : "",
                status ? uv_strerror(status) : "");
    if (wr.o.mode != WR_CONNRATE) c->finished = 1;
    wr_conn_close(c);
}

static void wr_conn_on_write(uv_write_t *req, int status)
{
    struct wr_conn *c = req->data;
    if (status < 0 && status != UV_ECANCELED) wr_conn_error(c, &wr.c.err_reset, "write", status);
}

static void wr_conn_send(struct wr_conn *c)
{
    c->seq++;
    wr_fill(c);
    c->recv_off = 0;
    c->t_op = uv_hrtime();
    c->deadline = c->t_op + (uint64_t)(wr.o.timeout * 1e9);
    c->state = WR_C_WAITING;
    wr.c.sent++;

    uv_buf_t b = uv_buf_init((char *)c->tx, (unsigned)wr.o.size);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)wr.o.size) return;
    if (n < 0 && n != UV_EAGAIN) {
        wr_conn_error(c, &wr.c.err_reset, "write", n);
        return;
    }
    if (n > 0) {
        b.base += n;
        b.len -= (size_t)n;
    }
    /* At most one message is in flight per connection, so one write request is enough. */
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, wr_conn_on_write);
    if (rc) wr_conn_error(c, &wr.c.err_reset, "write", rc);
}

static void wr_conn_msg_done(struct wr_conn *c)
{
    uint64_t now = uv_hrtime();
    uint64_t rtt = now - (wr.o.mode == WR_CONNRATE ? c->t_dial : c->t_op);
    wr_hist_add(&wr.hist, rtt);
    wr_hist_add(&wr.ihist, rtt);
    wr.c.msgs++;
    wr.c.bytes += wr.o.size;
    c->msgs_done++;

    switch (wr.o.mode) {
    case WR_CONNRATE:
        wr_conn_close(c);
        break;
    case WR_HOLD:
        c->state = WR_C_IDLE;
        wr.held++;
        wr_hold_dial_next();
        wr_maybe_finish();
        break;
    default:
        if (wr.o.msgs > 0 && c->msgs_done >= wr.o.msgs) {
            c->finished = 1;
            wr.c.ok++;
            wr_conn_close(c);
        } else {
            wr_conn_send(c);
        }
        break;
    }
}

static void wr_conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct wr_conn *c = s->data;
    if (nread == 0 || c->state == WR_C_CLOSING) return;
    if (nread < 0) {
        wr_conn_error(c, &wr.c.err_reset,
                      c->state == WR_C_IDLE ? "dropped while idle" : "closed before the echo",
                      nread == UV_EOF ? 0 : (int)nread);
        return;
    }
    if (c->state != WR_C_WAITING || c->recv_off + (size_t)nread > wr.o.size) {
        wr_conn_error(c, &wr.c.err_extra, "bytes nobody asked for", 0);
        return;
    }
    if (memcmp(buf->base, c->tx + c->recv_off, (size_t)nread) != 0) {
        size_t i = 0;
        while (buf->base[i] == (char)c->tx[c->recv_off + i])
            i++;
        fprintf(stderr, "wr_loadgen: conn %u msg %" PRIu64 ": corrupt byte at offset %zu\n", c->id,
                c->seq, c->recv_off + i);
        wr_conn_error(c, &wr.c.err_corrupt, "corrupt echo", 0);
        return;
    }
    c->recv_off += (size_t)nread;
    if (c->recv_off == wr.o.size) wr_conn_msg_done(c);
}

static void wr_conn_on_connect(uv_connect_t *req, int status)
{
    struct wr_conn *c = req->data;
    if (status == UV_ECANCELED || c->state == WR_C_CLOSING) return;
    if (status < 0) {
        wr_conn_error(c, &wr.c.err_connect, "connect", status);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, wr_alloc, wr_conn_on_read);
    if (rc) {
        wr_conn_error(c, &wr.c.err_connect, "read", rc);
        return;
    }
    wr_conn_send(c);
}

static void wr_conn_open(struct wr_conn *c)
{
    if (wr.stopping || c->finished) return;
    int rc = uv_tcp_init(wr.loop, &c->tcp);
    if (rc) wr_fail("uv_tcp_init: %s", uv_strerror(rc));
    c->tcp.data = c;
    c->creq.data = c;
    c->state = WR_C_CONNECTING;
    c->recv_off = 0;
    c->t_dial = c->t_op = uv_hrtime();
    c->deadline = c->t_op + (uint64_t)(wr.o.timeout * 1e9);
    wr.active++;
    wr.dialed++;
    rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&wr.target, wr_conn_on_connect);
    if (rc) wr_conn_error(c, &wr.c.err_connect, "connect", rc);
}

/* Deadlines are checked by one coarse timer instead of a timer per connection. */
static void wr_on_tick(uv_timer_t *t)
{
    uint64_t now = uv_hrtime();
    for (long i = 0; i < wr.nslots; i++) {
        struct wr_conn *c = &wr.conns[i];
        if ((c->state == WR_C_CONNECTING || c->state == WR_C_WAITING) && now > c->deadline)
            wr_conn_error(c, &wr.c.err_timeout,
                          c->state == WR_C_CONNECTING ? "connect timed out" : "echo timed out", 0);
    }
}

/* ---- echo server ---- */

static void wr_sconn_on_close(uv_handle_t *h)
{
    struct wr_sconn *sc = h->data;
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        wr.sconns = sc->next;
    if (sc->next) sc->next->prev = sc->prev;
    if (sc->failed)
        wr.s.failed++;
    else
        wr.s.ok++;
    free(sc->pending);
    free(sc);
    wr.s_active--;
}

static void wr_sconn_close(struct wr_sconn *sc)
{
    if (!uv_is_closing((uv_handle_t *)&sc->tcp))
        uv_close((uv_handle_t *)&sc->tcp, wr_sconn_on_close);
}

static void wr_sconn_fail(struct wr_sconn *sc)
{
    wr.s.errors++;
    sc->failed = 1;
    wr_sconn_close(sc);
}

/* Latency as the server sees it: first byte of a message in, last byte handed to the kernel.
 * Exact when one message is in flight per connection, which is what the clients here do. */
static void wr_sconn_echoed(struct wr_sconn *sc, size_t n)
{
    uint64_t before = sc->out / wr.o.size;
    sc->out += n;
    wr.s.bytes_out += n;
    uint64_t done = sc->out / wr.o.size - before;
    if (done == 0) return;
    wr.s.msgs_out += done;
    uint64_t held = uv_hrtime() - sc->t_first;
    wr_hist_add(&wr.s_hist, held);
    wr_hist_add(&wr.s_ihist, held);
}

static void wr_sconn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void wr_sconn_on_write(uv_write_t *req, int status)
{
    struct wr_sconn *sc = req->data;
    free(sc->pending);
    sc->pending = NULL;
    if (status < 0) {
        if (status == UV_ECANCELED)
            wr_sconn_close(sc);
        else
            wr_sconn_fail(sc);
        return;
    }
    wr_sconn_echoed(sc, sc->pending_len);
    if (!uv_is_closing((uv_handle_t *)&sc->tcp))
        uv_read_start((uv_stream_t *)&sc->tcp, wr_alloc, wr_sconn_on_read);
}

static void wr_sconn_on_shutdown(uv_shutdown_t *req, int status)
{
    wr_sconn_close(req->data);
}

static void wr_sconn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct wr_sconn *sc = s->data;
    if (nread == 0) return;
    if (nread < 0) {
        /* Half-close is echoed as half-close, so a tunnel's EOF path is exercised too. */
        if (nread == UV_EOF) {
            uv_read_stop(s);
            sc->sreq.data = sc;
            if (uv_shutdown(&sc->sreq, s, wr_sconn_on_shutdown) == 0) return;
        }
        wr_sconn_fail(sc);
        return;
    }
    if (sc->in % wr.o.size == 0) sc->t_first = uv_hrtime();
    wr.s.msgs_in += (sc->in + (uint64_t)nread) / wr.o.size - sc->in / wr.o.size;
    sc->in += (uint64_t)nread;
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
    int n = uv_try_write(s, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
        wr_sconn_fail(sc);
        return;
    }
    if (n < 0) n = 0;
    wr_sconn_echoed(sc, (size_t)n);
    if (n == nread) return;
    /* The peer is slow to read: keep the rest and stop reading until it drains, so memory stays
     * bounded by one read buffer per connection. */
    sc->pending_len = (size_t)(nread - n);
    sc->pending = malloc(sc->pending_len);
    if (!sc->pending) wr_fail("out of memory");
    memcpy(sc->pending, buf->base + n, sc->pending_len);
    uv_read_stop(s);
    sc->wreq.data = sc;
    uv_buf_t wb = uv_buf_init(sc->pending, (unsigned)sc->pending_len);
    if (uv_write(&sc->wreq, s, &wb, 1, wr_sconn_on_write)) wr_sconn_fail(sc);
}

static void wr_server_on_conn(uv_stream_t *server, int status)
{
    if (status < 0) {
        wr.s.errors++;
        return;
    }
    struct wr_sconn *sc = calloc(1, sizeof *sc);
    if (!sc) wr_fail("out of memory");
    uv_tcp_init(wr.loop, &sc->tcp);
    sc->tcp.data = sc;
    sc->next = wr.sconns;
    if (wr.sconns) wr.sconns->prev = sc;
    wr.sconns = sc;
    wr.s_active++;
    if (uv_accept(server, (uv_stream_t *)&sc->tcp)) {
        wr_sconn_fail(sc);
        return;
    }
    wr.s.accepted++;
    uv_tcp_nodelay(&sc->tcp, 1);
    uv_read_start((uv_stream_t *)&sc->tcp, wr_alloc, wr_sconn_on_read);
}

static void wr_server_start(uv_connection_cb on_conn)
{
    uv_tcp_init(wr.loop, &wr.server);
    int rc = uv_tcp_bind(&wr.server, (const struct sockaddr *)&wr.listen_addr, 0);
    if (!rc) rc = uv_listen((uv_stream_t *)&wr.server, 4096, on_conn);
    if (rc) wr_fail("listen on %s: %s", wr.o.listen, uv_strerror(rc));
    wr.server_open = 1;
    if (!wr.o.quiet) printf("listening %s\n", wr.o.listen);
    fflush(stdout);
}

/* ---- raw connections: probe and flood ---- */

static uint64_t wr_rand(void)
{
    wr.rng ^= wr.rng << 13;
    wr.rng ^= wr.rng >> 7;
    wr.rng ^= wr.rng << 17;
    return wr.rng;
}

/* A slice of the random pool, 1..max_size bytes: never written to after start-up, so writes can
 * point into it without copying. */
static uv_buf_t wr_random_bytes(size_t max)
{
    size_t len = 1 + (size_t)(wr_rand() % max);
    size_t off = (size_t)(wr_rand() % (WR_POOL_SIZE - len + 1));
    return uv_buf_init((char *)wr_pool + off, (unsigned)len);
}

/* Parses "127.0.0.2" or "127.0.0.10-127.0.0.250" into wr.src_lo..src_hi. */
static int wr_parse_src(const char *s)
{
    char first[64];
    const char *dash = strchr(s, '-');
    size_t n = dash ? (size_t)(dash - s) : strlen(s);
    struct in_addr a, b;
    if (n >= sizeof first) return -1;
    memcpy(first, s, n);
    first[n] = 0;
    if (inet_pton(AF_INET, first, &a) != 1) return -1;
    if (inet_pton(AF_INET, dash ? dash + 1 : first, &b) != 1) return -1;
    wr.src_lo = wr.src_next = ntohl(a.s_addr);
    wr.src_hi = ntohl(b.s_addr);
    if (wr.src_lo > wr.src_hi) return -1;
    return (wr.src_lo >> 24) == 127 && (wr.src_hi >> 24) == 127 ? 0 : -2;
}

/* Starts a TCP handle bound to the next source address of -src (round robin). The port is left
 * to connect(): IP_BIND_ADDRESS_NO_PORT lets thousands of connections from one address share
 * ports across targets instead of each reserving one at bind. */
static int wr_tcp_from_src(uv_tcp_t *tcp)
{
    int rc = uv_tcp_init_ex(wr.loop, tcp, wr.target.ss_family);
    if (rc) wr_fail("uv_tcp_init: %s", uv_strerror(rc));
    if (!wr.src_lo) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(wr.src_next);
    wr.src_next = wr.src_next >= wr.src_hi ? wr.src_lo : wr.src_next + 1;
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)tcp, &fd) == 0)
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    return uv_tcp_bind(tcp, (const struct sockaddr *)&a, 0);
}

static void wr_raw_dial(struct wr_raw *r);

static void wr_raw_on_close(uv_handle_t *h)
{
    struct wr_raw *r = h->data;
    r->state = WR_R_FREE;
    wr.active--;
    if (wr.stopping) return;
    switch (r->kind) {
    case WR_R_PROBE:
        if (wr.probes_started < wr.o.probes)
            wr_raw_dial(r);
        else if (wr.active == 0)
            wr_stop();
        break;
    case WR_R_IDLE:
        r->due = uv_hrtime() + WR_RAW_REDIAL;
        break;
    case WR_R_GARBAGE:
        wr.garbage_free[wr.garbage_nfree++] = r - wr.raws;
        break;
    }
}

/* Probes and garbage end with RST: no TIME_WAIT piles up on either side at thousands per
 * second, and the target has had its bytes for the whole -wait (or 20 ms) by then. */
static void wr_raw_close(struct wr_raw *r)
{
    if (r->state == WR_R_FREE || r->state == WR_R_CLOSING) return;
    int open = r->state == WR_R_OPEN;
    r->state = WR_R_CLOSING;
    if (!open || uv_tcp_close_reset(&r->tcp, wr_raw_on_close) != 0)
        uv_close((uv_handle_t *)&r->tcp, wr_raw_on_close);
}

static void wr_raw_send(struct wr_raw *r, uv_buf_t b)
{
    wr.r.bytes_sent += b.len;
    r->wreq.data = r;
    /* A write still queued when the peer resets is cancelled with the handle: nothing to free. */
    uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, NULL);
}

static void wr_raw_connect_failed(struct wr_raw *r, int err)
{
    wr.r.connect_errors++;
    wr.r.last_connect_error = err;
    wr_raw_close(r);
}

static void wr_raw_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct wr_raw *r = s->data;
    if (nread == 0 || r->state != WR_R_OPEN) return;
    if (nread < 0) {
        wr.r.closed_by_peer++;
        wr_raw_close(r);
        return;
    }
    wr.r.answered_bytes += (uint64_t)nread;
    if (!r->answered) wr.r.answered_conns++;
    r->answered = 1;
}

static void wr_raw_on_connect(uv_connect_t *req, int status)
{
    struct wr_raw *r = req->data;
    if (r->state != WR_R_CONNECTING) return;
    if (status < 0) {
        wr_raw_connect_failed(r, status);
        return;
    }
    r->state = WR_R_OPEN;
    wr.r.connected++;
    uv_read_start((uv_stream_t *)&r->tcp, wr_alloc, wr_raw_on_read);
    uint64_t now = uv_hrtime();
    switch (r->kind) {
    case WR_R_PROBE:
        r->due = now + (uint64_t)(wr.o.wait * 1e9);
        if (wr.payload)
            wr_raw_send(r, uv_buf_init((char *)wr.payload, (unsigned)wr.payload_len));
        else if (wr_rand() % 4 == 0)
            wr.r.silent++; /* connect, then nothing */
        else
            wr_raw_send(r, wr_random_bytes(wr.o.max_size));
        break;
    case WR_R_IDLE:
        /* Drips are spread over one period so they do not arrive in bursts. */
        r->due = wr.o.drip > 0 ? now + wr_rand() % (uint64_t)(wr.o.drip * 1e9) + 1 : UINT64_MAX;
        break;
    case WR_R_GARBAGE:
        r->due = now + WR_GARBAGE_HOLD;
        wr_raw_send(r, wr_random_bytes(wr.o.max_size));
        break;
    }
}

static void wr_raw_dial(struct wr_raw *r)
{
    r->state = WR_R_CONNECTING;
    r->answered = 0;
    r->tcp.data = r->creq.data = r;
    wr.active++;
    wr.r.dialed++;
    if (r->kind == WR_R_PROBE) wr.probes_started++;
    int rc = wr_tcp_from_src(&r->tcp);
    if (rc == 0)
        rc = uv_tcp_connect(&r->creq, &r->tcp, (const struct sockaddr *)&wr.target,
                            wr_raw_on_connect);
    if (rc) wr_raw_connect_failed(r, rc);
}

static long wr_idle_held(void)
{
    long n = 0;
    for (long i = 0; i < wr.nidle; i++)
        n += wr.raws[i].state == WR_R_OPEN;
    return n;
}

/* One timer runs every raw connection's clock: closes, drips, redials and the garbage rate. */
static void wr_raw_on_tick(uv_timer_t *t)
{
    uint64_t now = uv_hrtime();
    int ramp = WR_IDLE_RAMP;
    for (long i = 0; i < wr.nraws; i++) {
        struct wr_raw *r = &wr.raws[i];
        if (r->kind == WR_R_IDLE) {
            if (r->state == WR_R_FREE && now >= r->due && ramp > 0) {
                ramp--;
                wr_raw_dial(r);
            } else if (r->state == WR_R_OPEN && now >= r->due) {
                wr.r.drips++;
                wr_raw_send(r, wr_random_bytes(1));
                r->due = now + (uint64_t)(wr.o.drip * 1e9);
            }
        } else if (r->state == WR_R_OPEN && now >= r->due) {
            wr_raw_close(r);
        }
    }
    if (wr.o.mode == WR_FLOOD && !wr.t_ramped) {
        long pending = 0; /* idle slots not dialled yet, or still connecting */
        for (long i = 0; i < wr.nidle; i++) {
            const struct wr_raw *r = &wr.raws[i];
            pending += r->state == WR_R_CONNECTING || (r->state == WR_R_FREE && r->due == 0);
        }
        if (pending) return;
        wr.t_ramped = now;
        printf("ready idle_held=%ld elapsed=%.3f\n", wr_idle_held(), wr_now_s());
    }
    /* The garbage starts once the idle connections are in place, as an attacker would have it. */
    uint64_t want = (uint64_t)(wr.o.rate * (double)(now - wr.t_ramped) / 1e9);
    for (; wr.garbage_due < want; wr.garbage_due++) {
        if (wr.garbage_nfree == 0) {
            wr.garbage_skipped++; /* the target cannot keep up: counted and reported */
            continue;
        }
        wr_raw_dial(&wr.raws[wr.garbage_free[--wr.garbage_nfree]]);
    }
}

static void wr_raw_start(void)
{
    wr.nidle = wr.o.mode == WR_FLOOD ? wr.o.idle : 0;
    /* Garbage connections live ~20 ms after connecting: a tenth of a second's worth is plenty. */
    long ngarbage = wr.o.rate > 0 ? (long)(wr.o.rate / 10) + 16 : 0;
    wr.nraws = wr.o.mode == WR_PROBE ? wr.o.conns : wr.nidle + ngarbage;
    wr.raws = calloc((size_t)wr.nraws + 1, sizeof *wr.raws);
    wr.garbage_free = calloc((size_t)ngarbage + 1, sizeof *wr.garbage_free);
    if (!wr.raws || !wr.garbage_free) wr_fail("out of memory");
    for (long i = 0; i < wr.nraws; i++) {
        struct wr_raw *r = &wr.raws[i];
        r->kind = wr.o.mode == WR_PROBE ? WR_R_PROBE : i < wr.nidle ? WR_R_IDLE : WR_R_GARBAGE;
        if (r->kind == WR_R_GARBAGE) wr.garbage_free[wr.garbage_nfree++] = i;
    }
    uv_timer_init(wr.loop, &wr.raw_timer);
    uv_timer_start(&wr.raw_timer, wr_raw_on_tick, WR_RAW_TICK_MS, WR_RAW_TICK_MS);
    if (wr.o.mode == WR_PROBE)
        for (long i = 0; i < wr.nraws && wr.probes_started < wr.o.probes; i++)
            wr_raw_dial(&wr.raws[i]);
}

static void wr_load_payload(void)
{
    FILE *f = fopen(wr.o.payload, "rb");
    if (!f) wr_fail("cannot open %s: %s", wr.o.payload, strerror(errno));
    wr.payload = malloc(WR_POOL_SIZE);
    if (!wr.payload) wr_fail("out of memory");
    wr.payload_len = fread(wr.payload, 1, WR_POOL_SIZE, f);
    fclose(f);
    if (wr.payload_len == 0) wr_fail("%s is empty", wr.o.payload);
}

/* ---- forward ---- */

static void wr_fwd_on_close(uv_handle_t *h)
{
    struct wr_fwd *f = h->data;
    if (--f->handles > 0) return;
    if (f->prev)
        f->prev->next = f->next;
    else
        wr.fwds = f->next;
    if (f->next) f->next->prev = f->prev;
    free(f->pending[0]);
    free(f->pending[1]);
    free(f);
}

/* Either side ending ends both: the forwarder stands in for a network path, and what goes through
 * it here (handshakes, probes) never half-closes. */
static void wr_fwd_stop_recording(struct wr_fwd *f)
{
    if (!f->recording) return;
    f->recording = 0;
    fclose(wr.record);
    wr.record = NULL;
}

static void wr_fwd_close(struct wr_fwd *f)
{
    if (f->closing) return;
    f->closing = 1;
    wr_fwd_stop_recording(f);
    for (int i = 0; i < 2; i++)
        if (f->side[i].type == UV_TCP)
            uv_close((uv_handle_t *)&f->side[i], wr_fwd_on_close);
        else
            f->handles--;
}

static void wr_fwd_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void wr_fwd_on_write(uv_write_t *req, int status)
{
    struct wr_fwd *f = req->data;
    int from = req == &f->wreq[0] ? 1 : 0; /* wreq[i] writes to side i */
    free(f->pending[1 - from]);
    f->pending[1 - from] = NULL;
    if (status < 0 || f->closing) {
        wr_fwd_close(f);
        return;
    }
    uv_read_start((uv_stream_t *)&f->side[from], wr_alloc, wr_fwd_on_read);
}

static void wr_fwd_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct wr_fwd *f = s->data;
    int from = s == (uv_stream_t *)&f->side[0] ? 0 : 1, to = 1 - from;
    if (nread == 0 || f->closing) return;
    if (nread < 0) {
        wr_fwd_close(f);
        return;
    }
    /* The client's first bytes are everything it sends before the target's first answer. */
    if (f->recording && from == 0) fwrite(buf->base, 1, (size_t)nread, wr.record);
    if (from == 1) wr_fwd_stop_recording(f);
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
    int n = uv_try_write((uv_stream_t *)&f->side[to], &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
        wr_fwd_close(f);
        return;
    }
    if (n == nread) return;
    if (n < 0) n = 0;
    /* The other side is slow: keep the rest and stop reading until it drains. */
    size_t rest = (size_t)(nread - n);
    f->pending[to] = malloc(rest);
    if (!f->pending[to]) wr_fail("out of memory");
    memcpy(f->pending[to], buf->base + n, rest);
    uv_read_stop(s);
    f->wreq[to].data = f;
    uv_buf_t wb = uv_buf_init(f->pending[to], (unsigned)rest);
    if (uv_write(&f->wreq[to], (uv_stream_t *)&f->side[to], &wb, 1, wr_fwd_on_write))
        wr_fwd_close(f);
}

static void wr_fwd_on_connect(uv_connect_t *req, int status)
{
    struct wr_fwd *f = req->data;
    if (status < 0 || f->closing) {
        wr_fwd_close(f);
        return;
    }
    for (int i = 0; i < 2; i++)
        uv_read_start((uv_stream_t *)&f->side[i], wr_alloc, wr_fwd_on_read);
}

static void wr_fwd_on_conn(uv_stream_t *server, int status)
{
    if (status < 0) return;
    struct wr_fwd *f = calloc(1, sizeof *f);
    if (!f) wr_fail("out of memory");
    f->handles = 2;
    f->next = wr.fwds;
    if (wr.fwds) wr.fwds->prev = f;
    wr.fwds = f;
    uv_tcp_init(wr.loop, &f->side[0]);
    f->side[0].data = f;
    if (uv_accept(server, (uv_stream_t *)&f->side[0])) {
        wr_fwd_close(f);
        return;
    }
    wr.fwd_accepted++;
    if (wr.record && !wr.recorded) f->recording = wr.recorded = 1;
    int rc = wr_tcp_from_src(&f->side[1]);
    f->side[1].data = f->creq.data = f;
    if (rc == 0)
        rc = uv_tcp_connect(&f->creq, &f->side[1], (const struct sockaddr *)&wr.target,
                            wr_fwd_on_connect);
    if (rc) wr_fwd_close(f);
}

/* ---- run control and reports ---- */

static void wr_close_if_open(uv_handle_t *h)
{
    if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h)) uv_close(h, NULL);
}

static void wr_stop(void)
{
    if (wr.stopping) return;
    wr.stopping = 1;
    wr.t_end = uv_hrtime();
    wr.held_at_stop = wr.o.mode == WR_FLOOD ? wr_idle_held() : wr.held;
    for (long i = 0; i < wr.nslots; i++)
        wr_conn_close(&wr.conns[i]);
    for (struct wr_sconn *sc = wr.sconns; sc; sc = sc->next)
        wr_sconn_close(sc);
    for (long i = 0; i < wr.nraws; i++)
        wr_raw_close(&wr.raws[i]);
    for (struct wr_fwd *f = wr.fwds; f; f = f->next)
        wr_fwd_close(f);
    if (wr.server_open) wr_close_if_open((uv_handle_t *)&wr.server);
    wr_close_if_open((uv_handle_t *)&wr.raw_timer);
    wr_close_if_open((uv_handle_t *)&wr.stop_timer);
    wr_close_if_open((uv_handle_t *)&wr.tick_timer);
    wr_close_if_open((uv_handle_t *)&wr.report_timer);
    wr_close_if_open((uv_handle_t *)&wr.sigint);
    wr_close_if_open((uv_handle_t *)&wr.sigterm);
}

/* Accounts for the connections still running when the run is cut short (duration or signal).
 * With a message budget the duration is only a cap: running into it means a stall. A stress
 * connection that never got one echo back in the whole run stalled too. */
static void wr_settle(void)
{
    if (wr.o.mode != WR_STRESS && wr.o.mode != WR_PINGPONG) return;
    for (long i = 0; i < wr.nslots; i++) {
        struct wr_conn *c = &wr.conns[i];
        if (c->finished) continue;
        c->finished = 1;
        if ((wr.o.msgs > 0 && c->msgs_done < wr.o.msgs) ||
            (wr.o.mode == WR_STRESS && c->msgs_done == 0)) {
            wr.c.err_unfinished++;
            wr.c.failed++;
            c->failed = 1;
        } else {
            wr.c.ok++;
        }
    }
}

static void wr_on_stop_timer(uv_timer_t *t)
{
    wr_settle();
    wr_stop();
}

static void wr_on_signal(uv_signal_t *s, int signum)
{
    wr_settle();
    wr_stop();
}

/* One report line for a side: `when` is "t=2.0s" for an interval, "total" at the end. */
static void wr_print_side(const char *side, const char *when, uint64_t active, uint64_t total,
                          uint64_t ok, uint64_t failed, uint64_t m_out, uint64_t m_in, uint64_t dm,
                          uint64_t db, double dt, uint64_t errors, const struct wr_hist *h)
{
    printf("%s: %s conns=%" PRIu64 "/%" PRIu64 " ok=%" PRIu64 " failed=%" PRIu64 " msgs=%" PRIu64
           "->%" PRIu64 " rate=%.0f/s MB/s=%.2f errors=%" PRIu64
           " p50_us=%.1f p99_us=%.1f max_us=%.1f\n",
           side, when, active, total, ok, failed, m_out, m_in, dt > 0 ? (double)dm / dt : 0,
           dt > 0 ? (double)db / dt / 1e6 : 0, errors, wr_hist_pct_us(h, 0.50),
           wr_hist_pct_us(h, 0.99), (double)h->max / 1000.0);
}

static void wr_print_client(const char *when, const struct wr_counts *last, double dt,
                            const struct wr_hist *h)
{
    wr_print_side("CLIENT", when, (uint64_t)wr.active, (uint64_t)wr.dialed, wr.c.ok, wr.c.failed,
                  wr.c.sent, wr.c.msgs, wr.c.msgs - last->msgs, wr.c.bytes - last->bytes, dt,
                  wr_errors(&wr.c), h);
}

static void wr_print_server(const char *when, const struct wr_scounts *last, double dt,
                            const struct wr_hist *h)
{
    wr_print_side("SERVER", when, wr.s_active, wr.s.accepted, wr.s.ok, wr.s.failed, wr.s.msgs_in,
                  wr.s.msgs_out, wr.s.msgs_out - last->msgs_out, wr.s.bytes_out - last->bytes_out,
                  dt, wr.s.errors, h);
}

static void wr_on_report(uv_timer_t *t)
{
    uint64_t now = uv_hrtime();
    double dt = (double)(now - wr.t_report) / 1e9;
    char when[32];
    snprintf(when, sizeof when, "t=%.1fs", (double)(now - wr.t_start) / 1e9);
    wr.t_report = now;
    if (wr.o.mode == WR_FLOOD) {
        uint64_t garbage = wr.garbage_due - wr.garbage_skipped;
        printf("FLOOD: %s idle_held=%ld garbage=%" PRIu64 " rate=%.0f/s answered_bytes=%" PRIu64
               " closed_by_peer=%" PRIu64 " connect_errors=%" PRIu64 "\n",
               when, wr_idle_held(), garbage - wr.garbage_last,
               dt > 0 ? (double)(garbage - wr.garbage_last) / dt : 0, wr.r.answered_bytes,
               wr.r.closed_by_peer, wr.r.connect_errors);
        wr.garbage_last = garbage;
    } else if (wr.o.mode != WR_ECHO && wr.o.mode != WR_FORWARD) {
        wr_print_client(when, &wr.c_last, dt, &wr.ihist);
        wr.c_last = wr.c;
        memset(&wr.ihist, 0, sizeof wr.ihist);
    }
    if (wr.server_open) {
        wr_print_server(when, &wr.s_last, dt, &wr.s_ihist);
        wr.s_last = wr.s;
        memset(&wr.s_ihist, 0, sizeof wr.s_ihist);
    }
    fflush(stdout);
}

static int wr_summary(void)
{
    double el = (double)(wr.t_end - wr.t_start) / 1e9;
    const struct wr_hist *h = &wr.hist;
    uint64_t errs = wr_errors(&wr.c);
    static const struct wr_counts c0;
    static const struct wr_scounts s0;
    switch (wr.o.mode) {
    case WR_PINGPONG:
        printf("pingpong conns=%ld size=%zu round_trips=%" PRIu64 " elapsed=%.3f rtt_per_s=%.1f "
               "p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f errors=%" PRIu64 "\n",
               wr.o.conns, wr.o.size, h->n, el, el > 0 ? (double)h->n / el : 0,
               wr_hist_pct_us(h, 0.50), wr_hist_pct_us(h, 0.90), wr_hist_pct_us(h, 0.99),
               (double)h->max / 1000.0, errs);
        break;
    case WR_CONNRATE:
        printf("connrate dialers=%ld conns=%" PRIu64
               " elapsed=%.3f conns_per_s=%.1f failures=%" PRIu64
               " p50_us=%.1f p99_us=%.1f max_us=%.1f\n",
               wr.o.conns, h->n, el, el > 0 ? (double)h->n / el : 0, errs, wr_hist_pct_us(h, 0.50),
               wr_hist_pct_us(h, 0.99), (double)h->max / 1000.0);
        break;
    case WR_HOLD:
        printf("hold held=%ld wanted=%ld failed=%" PRIu64 " elapsed=%.3f\n", wr.held_at_stop,
               wr.o.conns, errs, el);
        break;
    case WR_STRESS:
        wr_print_client("total", &c0, el, h);
        if (wr.server_open) wr_print_server("total", &s0, el, &wr.s_hist);
        errs += wr.s.errors;
        printf("SUMMARY: conns=%ld size=%zu msgs=%" PRIu64 " msgs_per_s=%.1f MB/s=%.2f "
               "p50_us=%.1f p99_us=%.1f max_us=%.1f errors=%" PRIu64 " connect=%" PRIu64
               " timeout=%" PRIu64 " reset=%" PRIu64 " corrupt=%" PRIu64 " extra=%" PRIu64
               " unfinished=%" PRIu64 " server_errors=%" PRIu64 " elapsed=%.3f %s\n",
               wr.o.conns, wr.o.size, wr.c.msgs, el > 0 ? (double)wr.c.msgs / el : 0,
               el > 0 ? (double)wr.c.bytes / el / 1e6 : 0, wr_hist_pct_us(h, 0.50),
               wr_hist_pct_us(h, 0.99), (double)h->max / 1000.0, wr_errors(&wr.c) + wr.s.errors,
               wr.c.err_connect, wr.c.err_timeout, wr.c.err_reset, wr.c.err_corrupt, wr.c.err_extra,
               wr.c.err_unfinished, wr.s.errors, el, errs ? "FAIL" : "OK");
        break;
    case WR_ECHO:
        printf("echo-server accepted=%" PRIu64 " echoed=%" PRIu64 " errors=%" PRIu64 "\n",
               wr.s.accepted, wr.s.bytes_out, wr.s.errors);
        errs = 0; /* a client vanishing is not the server's failure */
        break;
    case WR_PROBE:
        printf("probe probes=%" PRIu64 " connected=%" PRIu64 " silent=%" PRIu64
               " sent_bytes=%" PRIu64 " answered_bytes=%" PRIu64 " answered_conns=%" PRIu64
               " closed_by_peer=%" PRIu64 " connect_errors=%" PRIu64
               " elapsed=%.3f probes_per_s=%.1f\n",
               wr.r.dialed, wr.r.connected, wr.r.silent, wr.r.bytes_sent, wr.r.answered_bytes,
               wr.r.answered_conns, wr.r.closed_by_peer, wr.r.connect_errors, el,
               el > 0 ? (double)wr.r.dialed / el : 0);
        errs = wr.r.answered_bytes;
        break;
    case WR_FLOOD:
        printf("flood idle=%ld idle_held=%ld drips=%" PRIu64 " dialed=%" PRIu64
               " connected=%" PRIu64 " garbage_per_s=%.1f garbage_skipped=%" PRIu64
               " answered_bytes=%" PRIu64 " closed_by_peer=%" PRIu64 " connect_errors=%" PRIu64
               " last_connect_error=%s elapsed=%.3f\n",
               wr.nidle, wr.held_at_stop, wr.r.drips, wr.r.dialed, wr.r.connected,
               wr.t_ramped && wr.t_end > wr.t_ramped
                   ? (double)(wr.garbage_due - wr.garbage_skipped) * 1e9 /
                         (double)(wr.t_end - wr.t_ramped)
                   : 0,
               wr.garbage_skipped, wr.r.answered_bytes, wr.r.closed_by_peer, wr.r.connect_errors,
               wr.r.last_connect_error ? uv_err_name(wr.r.last_connect_error) : "none", el);
        errs = 0; /* load, not a test: the caller judges the figures */
        break;
    case WR_FORWARD:
        printf("forward accepted=%" PRIu64 " recorded=%d elapsed=%.3f\n", wr.fwd_accepted,
               wr.recorded, el);
        errs = 0;
        break;
    }
    fflush(stdout);
    if (wr.o.mode == WR_HOLD) return wr.held_at_stop == wr.o.conns && errs == 0 ? 0 : 1;
    if (wr.o.mode == WR_CONNRATE) return h->n > 0 ? 0 : 1;
    return errs ? 1 : 0;
}

/* ---- command line ---- */

static void wr_usage(FILE *f)
{
    fputs(
        "usage: wr_loadgen MODE [options]   (loopback addresses only)\n"
        "\n"
        "modes:\n"
        "  echo-server  -l ADDR            echo every byte back; half-close is echoed\n"
        "  pingpong     -t ADDR            N connections, each sends SIZE bytes, waits for the\n"
        "                                  echo, repeats; prints p50/p90/p99/max latency (us)\n"
        "                                  and round trips/s\n"
        "  connrate     -t ADDR            C dialers open a connection, do one 1-byte echo,\n"
        "                                  close, repeat; prints connections/s and failures\n"
        "  hold         -t ADDR            open N connections (one echo each), print\n"
        "                                  'ready ...', stay idle until SIGTERM/SIGINT or the\n"
        "                                  duration ends\n"
        "  stress       -t ADDR [-l ADDR]  capacity test: N connections each send a SIZE-byte\n"
        "                                  message, verify every echoed byte and send the next\n"
        "                                  one at once (no think time), M times or until the\n"
        "                                  duration ends\n"
        "  probe        -t ADDR            -probes P connections, -c at a time: each sends 1 to\n"
        "                                  -max-size random bytes (a quarter send nothing), or\n"
        "                                  the bytes of -payload FILE, listens -wait seconds\n"
        "                                  and resets; counts the bytes that came back\n"
        "  flood        -t ADDR            holds -idle connections open (redialled a second\n"
        "                                  after the target drops one; with -drip each sends\n"
        "                                  a byte that often) and opens -rate garbage\n"
        "                                  connections per second (random bytes, reset 20 ms\n"
        "                                  later); prints 'ready ...' once the idle ones are\n"
        "                                  dialled, FLOOD: lines each -interval\n"
        "  forward      -l ADDR -t ADDR    forward every connection to -t (from -src); either\n"
        "                                  side ending ends both; -record FILE keeps what the\n"
        "                                  first client sent before the target's first byte\n"
        "\n"
        "stress output: each interval a CLIENT: line and, with -l, a SERVER: line; at the end\n"
        "both again with 'total' in place of t=, then one SUMMARY: line.\n"
        "  CLIENT: t=2.0s conns=ACTIVE/DIALED ok=N failed=N msgs=SENT->VERIFIED rate=N/s\n"
        "          MB/s=N errors=N p50_us=N p99_us=N max_us=N\n"
        "    ok/failed count connections that ended; rate, MB/s (verified echo bytes) and the\n"
        "    round-trip latency cover the interval, the other fields the run so far.\n"
        "  SERVER: the same fields from the echo server's side: conns=OPEN/ACCEPTED,\n"
        "    msgs=RECEIVED->ECHOED in whole SIZE-byte messages of each connection's stream,\n"
        "    latency = first byte of a message in to its last byte written back. The echo\n"
        "    server runs in this process, on the same thread as the clients; -t may point at\n"
        "    a tunnel that leads to it (without -t, clients connect to -l directly).\n"
        "  SUMMARY: conns size msgs msgs_per_s MB/s p50_us p99_us max_us errors (client and\n"
        "    server), then errors by kind: connect timeout reset corrupt extra unfinished\n"
        "    server_errors; elapsed; OK or FAIL.\n"
        "  A connection ends at its first error. corrupt: an echoed byte differs from the one\n"
        "  sent (the pattern depends on connection and message number, so bytes from another\n"
        "  connection or an earlier message are caught too; the offset goes to stderr even\n"
        "  with -q); extra: bytes arrived that nobody asked for; reset: the connection closed\n"
        "  or failed before its echo; unfinished: when the run was cut (duration or signal),\n"
        "  the connection had not completed its -msgs budget, or with -msgs 0 had not had a\n"
        "  single echo back.\n"
        "\n"
        "options (single or double dash):\n"
        "  -t, -target ADDR     where clients connect (HOST:PORT; HOST is 127.x.x.x, ::1 or\n"
        "                       localhost)\n"
        "  -l, -listen ADDR     where the echo server listens\n"
        "  -c, -conns N         connections (pingpong 1, connrate dialers 16, hold 2000,\n"
        "                       stress 500)\n"
        "  -n, -msgs M          messages per connection; 0 = until the duration ends (default 0)\n"
        "  -s, -size BYTES      message size (default 1; stress 8192; echo-server: the size its\n"
        "                       SERVER: lines count messages in)\n"
        "  -d, -duration SECS   run time; with -msgs it is a cap and hitting it is an error\n"
        "                       (pingpong/connrate 5, stress 10 or 60 with -msgs, hold 60,\n"
        "                       echo-server 600)\n"
        "  -i, -interval SECS   report line period, 0 = none (stress 1, others 0)\n"
        "  -timeout SECS        a connect or round trip slower than this is an error\n"
        "                       (default 10)\n"
        "  -dial-concurrency K  hold: connections being set up at once (default 64)\n"
        "  -q, -quiet           no per-connection error lines\n"
        "  -src ADDR[-ADDR]     probe, flood, forward: source address of each connection,\n"
        "                       round robin over an IPv4 loopback range (default: the\n"
        "                       kernel's choice)\n"
        "  -probes P            probe: connections in all (default 1000)\n"
        "  -payload FILE        probe: send the first 64 KiB of FILE instead of random bytes\n"
        "  -max-size BYTES      probe, flood: random payloads are 1..BYTES long (default 600)\n"
        "  -wait SECS           probe: how long each probe listens (default 0.1)\n"
        "  -idle N              flood: connections held open (default 0)\n"
        "  -drip SECS           flood: each idle connection sends one byte this often\n"
        "                       (default 0: never)\n"
        "  -rate R              flood: garbage connections per second (default 0)\n"
        "  -record FILE         forward: where the first client's first bytes go\n"
        "\n"
        "The open-file limit is raised to its hard limit; if that is still too low for the\n"
        "connections asked for (two descriptors each with -l), nothing starts (exit 2).\n"
        "\n"
        "exit status: 0 on success; 1 if a connection failed, timed out, was dropped, echoed a\n"
        "wrong or extra byte or was unfinished, or the in-process echo server had an error\n"
        "(hold: also if fewer than N were held; connrate: only if nothing succeeded, failures\n"
        "are counted; echo-server, flood and forward: never; probe: only if any byte came\n"
        "back); 2 on bad usage or when it cannot start (listen fails, too few file\n"
        "descriptors).\n",
        f);
}

static const char *wr_opt_name(const char *arg)
{
    if (arg[0] != '-') return NULL;
    return arg[1] == '-' ? arg + 2 : arg + 1;
}

static double wr_num(const char *name, const char *v, double min, double max)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || *end || end == v || d < min || d > max)
        wr_fail("bad value for -%s: '%s' (expected %g..%g)", name, v, min, max);
    return d;
}

static void wr_parse_args(int argc, char **argv)
{
    struct wr_opts *o = &wr.o;
    if (argc < 2) {
        wr_usage(stderr);
        exit(2);
    }
    const char *m = argv[1];
    if (!strcmp(m, "-h") || !strcmp(m, "--help") || !strcmp(m, "help")) {
        wr_usage(stdout);
        exit(0);
    }
    if (!strcmp(m, "pingpong"))
        o->mode = WR_PINGPONG;
    else if (!strcmp(m, "connrate"))
        o->mode = WR_CONNRATE;
    else if (!strcmp(m, "hold"))
        o->mode = WR_HOLD;
    else if (!strcmp(m, "echo-server"))
        o->mode = WR_ECHO;
    else if (!strcmp(m, "stress"))
        o->mode = WR_STRESS;
    else if (!strcmp(m, "probe"))
        o->mode = WR_PROBE;
    else if (!strcmp(m, "flood"))
        o->mode = WR_FLOOD;
    else if (!strcmp(m, "forward"))
        o->mode = WR_FORWARD;
    else
        wr_fail("unknown mode '%s' (try --help)", m);

    o->conns = -1;
    o->duration = -1;
    o->interval = -1;
    o->size = 0;
    o->timeout = 10;
    o->dial_concurrency = 64;
    o->probes = 1000;
    o->max_size = 600;
    o->wait = 0.1;
    for (int i = 2; i < argc; i++) {
        const char *n = wr_opt_name(argv[i]);
        if (!n) wr_fail("unexpected argument '%s'", argv[i]);
        if (!strcmp(n, "h") || !strcmp(n, "help")) {
            wr_usage(stdout);
            exit(0);
        }
        if (!strcmp(n, "q") || !strcmp(n, "quiet")) {
            o->quiet = 1;
            continue;
        }
        if (i + 1 >= argc) wr_fail("-%s needs a value", n);
        const char *v = argv[++i];
        if (!strcmp(n, "t") || !strcmp(n, "target"))
            o->target = v;
        else if (!strcmp(n, "l") || !strcmp(n, "listen"))
            o->listen = v;
        else if (!strcmp(n, "c") || !strcmp(n, "conns"))
            o->conns = (long)wr_num(n, v, 1, 100000);
        else if (!strcmp(n, "n") || !strcmp(n, "msgs"))
            o->msgs = (long)wr_num(n, v, 0, 1e12);
        else if (!strcmp(n, "s") || !strcmp(n, "size"))
            o->size = (size_t)wr_num(n, v, 1, 64 * 1024 * 1024);
        else if (!strcmp(n, "d") || !strcmp(n, "duration"))
            o->duration = wr_num(n, v, 0.01, 86400);
        else if (!strcmp(n, "i") || !strcmp(n, "interval"))
            o->interval = wr_num(n, v, 0, 3600);
        else if (!strcmp(n, "timeout"))
            o->timeout = wr_num(n, v, 0.01, 3600);
        else if (!strcmp(n, "dial-concurrency"))
            o->dial_concurrency = (long)wr_num(n, v, 1, 100000);
        else if (!strcmp(n, "src"))
            o->src = v;
        else if (!strcmp(n, "probes"))
            o->probes = (long)wr_num(n, v, 1, 1e9);
        else if (!strcmp(n, "payload"))
            o->payload = v;
        else if (!strcmp(n, "max-size"))
            o->max_size = (size_t)wr_num(n, v, 1, WR_POOL_SIZE);
        else if (!strcmp(n, "wait"))
            o->wait = wr_num(n, v, 0, 3600);
        else if (!strcmp(n, "idle"))
            o->idle = (long)wr_num(n, v, 0, 100000);
        else if (!strcmp(n, "drip"))
            o->drip = wr_num(n, v, 0, 3600);
        else if (!strcmp(n, "rate"))
            o->rate = wr_num(n, v, 0, 100000);
        else if (!strcmp(n, "record"))
            o->record = v;
        else
            wr_fail("unknown option '%s' (try --help)", argv[i - 1]);
    }

    if (o->mode == WR_STRESS && o->listen && !o->target) o->target = o->listen;
    if ((o->mode == WR_ECHO || o->mode == WR_FORWARD) && !o->listen) wr_fail("%s needs -l ADDR", m);
    if (o->mode != WR_ECHO && !o->target) wr_fail("%s needs -t ADDR", m);
    if (o->target) {
        int rc = wr_parse_addr(o->target, &wr.target);
        if (rc == -2) wr_fail("%s is not a loopback address", o->target);
        if (rc) wr_fail("bad address '%s' (want HOST:PORT)", o->target);
    }
    if (o->listen) {
        int rc = wr_parse_addr(o->listen, &wr.listen_addr);
        if (rc == -2) wr_fail("%s is not a loopback address", o->listen);
        if (rc) wr_fail("bad address '%s' (want HOST:PORT)", o->listen);
    }

    if (o->src) {
        int rc = wr_parse_src(o->src);
        if (rc == -2) wr_fail("%s is not a loopback address", o->src);
        if (rc) wr_fail("bad -src '%s' (want an IPv4 address or FIRST-LAST)", o->src);
        if (wr.target.ss_family != AF_INET) wr_fail("-src needs an IPv4 -t");
    }
    if (o->record && !(wr.record = fopen(o->record, "wb")))
        wr_fail("cannot write %s: %s", o->record, strerror(errno));
    if (o->payload) wr_load_payload();

    static const long def_conns[] = {
        [WR_PINGPONG] = 1, [WR_CONNRATE] = 16, [WR_HOLD] = 2000, [WR_ECHO] = 0,
        [WR_STRESS] = 500, [WR_PROBE] = 200,   [WR_FLOOD] = 0,   [WR_FORWARD] = 0};
    if (o->conns < 0) o->conns = def_conns[o->mode];
    if (o->size == 0) o->size = o->mode == WR_STRESS ? 8192 : 1;
    if (o->mode == WR_CONNRATE || o->mode == WR_HOLD) o->size = 1;
    if (o->duration < 0) {
        if (o->mode == WR_HOLD || o->mode == WR_FLOOD)
            o->duration = 60;
        else if (o->mode == WR_ECHO || o->mode == WR_FORWARD || o->mode == WR_PROBE)
            o->duration = 600;
        else if (o->msgs > 0)
            o->duration = 60;
        else
            o->duration = o->mode == WR_STRESS ? 10 : 5;
    }
    if (o->interval < 0) o->interval = o->mode == WR_STRESS ? 1 : 0;
}

static void wr_raise_nofile(void)
{
    /* hold and stress keep hundreds or thousands of sockets open: take whatever the hard limit
     * allows, and refuse to start rather than fail connections with EMFILE halfway through. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t need = 64;
    if (wr.o.mode == WR_FLOOD)
        need += (rlim_t)wr.o.idle + (rlim_t)(wr.o.rate / 10) + 16;
    else if (wr.o.mode != WR_ECHO && wr.o.mode != WR_FORWARD)
        need += (rlim_t)wr.o.conns * (wr.o.listen ? 2 : 1);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        wr_fail("%ld connections need %lu open files, the limit is %lu (raise ulimit -Hn)",
                wr.o.conns, (unsigned long)need, (unsigned long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
    wr_parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    wr_raise_nofile();

    wr.loop = uv_default_loop();
    wr.t_start = wr.t_report = uv_hrtime();
    uv_timer_init(wr.loop, &wr.stop_timer);
    uv_timer_start(&wr.stop_timer, wr_on_stop_timer, (uint64_t)(wr.o.duration * 1000), 0);
    uv_signal_init(wr.loop, &wr.sigint);
    uv_signal_start(&wr.sigint, wr_on_signal, SIGINT);
    uv_signal_init(wr.loop, &wr.sigterm);
    uv_signal_start(&wr.sigterm, wr_on_signal, SIGTERM);
    if (wr.o.interval > 0) {
        uint64_t ms = (uint64_t)(wr.o.interval * 1000);
        uv_timer_init(wr.loop, &wr.report_timer);
        uv_timer_start(&wr.report_timer, wr_on_report, ms ? ms : 1, ms ? ms : 1);
    }
    wr.rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < WR_POOL_SIZE; i++)
        wr_pool[i] = (unsigned char)(wr_rand() >> 24);
    if (wr.o.listen) wr_server_start(wr.o.mode == WR_FORWARD ? wr_fwd_on_conn : wr_server_on_conn);

    if (wr.o.mode == WR_PROBE || wr.o.mode == WR_FLOOD) {
        wr_raw_start();
    } else if (wr.o.mode != WR_ECHO && wr.o.mode != WR_FORWARD) {
        wr.nslots = wr.o.conns;
        wr.conns = calloc((size_t)wr.nslots, sizeof *wr.conns);
        if (!wr.conns) wr_fail("out of memory");
        for (long i = 0; i < wr.nslots; i++) {
            wr.conns[i].id = (uint32_t)i;
            wr.conns[i].tx = malloc(wr.o.size);
            if (!wr.conns[i].tx) wr_fail("out of memory");
        }
        uv_timer_init(wr.loop, &wr.tick_timer);
        uv_timer_start(&wr.tick_timer, wr_on_tick, 100, 100);
        long first = wr.o.mode == WR_HOLD && wr.o.dial_concurrency < wr.nslots
                         ? wr.o.dial_concurrency
                         : wr.nslots;
        for (long i = 0; i < first; i++)
            wr_conn_open(&wr.conns[i]);
    }

    uv_run(wr.loop, UV_RUN_DEFAULT);
    if (!wr.t_end) wr.t_end = uv_hrtime();
    int rc = wr_summary();
    uv_loop_close(wr.loop);
    return rc;
}
