/* wr_relay between real loopback sockets:
 *   client ──> [proxy listener: accepted endpoint A <relay> dialed endpoint B] ──> server
 * The client and servers are plain libuv code (malloc'd buffers), so only the relay path uses
 * wr_buf/wr_endpoint. Data is a deterministic pattern; both ends hash what they sent/received. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <signal.h>
#include <string.h>

#include "wr_buf.h"
#include "wr_io.h"
#include "wr_relay.h"
#include "wr_tcp_endpoint.h"
#include "loop_fixture.h"

#define MiB (1024u * 1024u)

static int open_peers;

static int setup(void **state)
{
    open_peers = 0;
    return loop_setup();
}

static int teardown(void **state)
{
    return loop_teardown();
}

/* Closes a timer that lives on the test's stack, and runs the loop until it is really closed. */
static void close_local_timer(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* ---- data pattern and hash ---- */

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Fills dst with pattern bytes [off, off+n) of the stream `seed` (off multiple of 8). */
static void pattern(uint64_t seed, uint64_t off, char *dst, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = splitmix(seed ^ ((off + i) >> 3));
        memcpy(dst + i, &w, n - i < 8 ? n - i : 8);
    }
}

#define FNV_INIT 0xcbf29ce484222325ull
static uint64_t fnv(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    return h;
}

/* ---- plain libuv peers (client and servers) ---- */

enum role { R_CLIENT, R_ECHO, R_SINK, R_REPLY_AFTER_EOF, R_RESET_ON_READ };

typedef struct peer {
    uv_tcp_t *tcp;
    uv_connect_t creq;
    uv_shutdown_t sreq;
    enum role role;
    /* sending */
    uint64_t seed;
    uint64_t to_send;
    uint64_t queued; /* bytes handed to uv_write */
    uint64_t sent;   /* bytes whose write completed */
    size_t inflight;
    size_t max_inflight;
    uint64_t send_hash;
    int shutdown_after_send;
    int shut;
    /* receiving */
    int reading;
    int read_paused; /* R_SINK: not reading until the test says so */
    uint64_t received;
    uint64_t recv_hash;
    int got_eof;
    int read_err;
    int connect_status;
    int connected;
    int closed;
    uint64_t reply_len; /* R_REPLY_AFTER_EOF */
} peer_t;

typedef struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
} wreq_t;

static void peer_init(peer_t *p, enum role role)
{
    memset(p, 0, sizeof(*p));
    p->role = role;
    p->max_inflight = 1 * MiB;
    p->send_hash = FNV_INIT;
    p->recv_hash = FNV_INIT;
    p->closed = 1; /* until a socket is attached */
}

static void peer_closed_cb(uv_handle_t *h)
{
    peer_t *p = h->data;
    free(h);
    p->tcp = NULL;
    p->closed = 1;
    open_peers--;
}

static void peer_close(peer_t *p)
{
    if (p->tcp && !uv_is_closing((uv_handle_t *)p->tcp))
        uv_close((uv_handle_t *)p->tcp, peer_closed_cb);
}

static void peer_read_start(peer_t *p);
static void pump(peer_t *p);

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    peer_t *p = req->data;
    /* Servers are done once their write side is closed and the client's EOF was seen. */
    if (p->role != R_CLIENT && p->got_eof) peer_close(p);
}

static void peer_shutdown(peer_t *p)
{
    if (p->shut || !p->tcp) return;
    p->shut = 1;
    p->sreq.data = p;
    if (uv_shutdown(&p->sreq, (uv_stream_t *)p->tcp, shutdown_cb) < 0) peer_close(p);
}

static void write_cb(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    peer_t *p = req->data;
    p->inflight -= w->len;
    if (status == 0) p->sent += w->len;
    free(w);
    if (status < 0 || p->closed || !p->tcp || uv_is_closing((uv_handle_t *)p->tcp)) return;
    if (p->role == R_ECHO && !p->reading && !p->got_eof && p->inflight < p->max_inflight / 2)
        peer_read_start(p);
    pump(p);
}

static int send_copy(peer_t *p, const char *data, size_t n)
{
    wreq_t *w = malloc(sizeof(*w) + n);
    memcpy(w->data, data, n);
    w->len = n;
    w->req.data = p;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)p->tcp, &b, 1, write_cb);
    if (rc < 0) {
        free(w);
        return rc;
    }
    p->inflight += n;
    return 0;
}

/* Sends the pattern stream, keeping at most max_inflight bytes queued in libuv. */
static void pump(peer_t *p)
{
    while (p->queued < p->to_send && p->inflight < p->max_inflight) {
        size_t n =
            p->to_send - p->queued < 256 * 1024 ? (size_t)(p->to_send - p->queued) : 256 * 1024;
        wreq_t *w = malloc(sizeof(*w) + n);
        pattern(p->seed, p->queued, w->data, n);
        p->send_hash = fnv(p->send_hash, w->data, n);
        w->len = n;
        w->req.data = p;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
        if (uv_write(&w->req, (uv_stream_t *)p->tcp, &b, 1, write_cb) < 0) {
            free(w);
            return;
        }
        p->queued += n;
        p->inflight += n;
    }
    if (p->queued == p->to_send && p->shutdown_after_send) peer_shutdown(p);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char scratch[256 * 1024];
    *b = uv_buf_init(scratch, sizeof(scratch));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    peer_t *p = s->data;
    if (nread > 0) {
        p->received += (uint64_t)nread;
        p->recv_hash = fnv(p->recv_hash, b->base, (size_t)nread);
        if (p->role == R_ECHO) {
            send_copy(p, b->base, (size_t)nread);
            if (p->inflight >= p->max_inflight) {
                uv_read_stop(s);
                p->reading = 0;
            }
        } else if (p->role == R_RESET_ON_READ) {
            uv_read_stop(s);
            p->reading = 0;
            if (!uv_is_closing((uv_handle_t *)p->tcp)) uv_tcp_close_reset(p->tcp, peer_closed_cb);
        }
        return;
    }
    if (nread == 0) return;
    uv_read_stop(s);
    p->reading = 0;
    if (nread != UV_EOF) {
        p->read_err = (int)nread;
        peer_close(p);
        return;
    }
    p->got_eof = 1;
    switch (p->role) {
    case R_CLIENT:
    case R_SINK:
        peer_close(p);
        break;
    case R_ECHO:
        peer_shutdown(p); /* after the echoed bytes flush */
        break;
    case R_REPLY_AFTER_EOF:
        p->to_send = p->reply_len;
        p->shutdown_after_send = 1;
        pump(p);
        break;
    case R_RESET_ON_READ:
        peer_close(p);
        break;
    }
}

static void peer_read_start(peer_t *p)
{
    if (p->reading || !p->tcp) return;
    p->reading = 1;
    uv_read_start((uv_stream_t *)p->tcp, alloc_cb, read_cb);
}

static void peer_attach(peer_t *p, uv_tcp_t *tcp)
{
    p->tcp = tcp;
    tcp->data = p;
    p->closed = 0;
    open_peers++;
}

/* ---- servers ---- */

typedef struct server {
    wr_listener_t *l;
    peer_t peer;
    int port;
    int accepted;
} server_t;

static void server_conn(wr_listener_t *l, int status)
{
    server_t *sv = wr_listener_data(l);
    uv_tcp_t *tcp;
    assert_int_equal(status, 0);
    assert_int_equal(wr_listener_accept(l, &tcp), 0);
    assert_false(sv->accepted); /* one connection per test */
    sv->accepted = 1;
    peer_attach(&sv->peer, tcp);
    if (!sv->peer.read_paused) peer_read_start(&sv->peer);
}

static void server_start(server_t *sv, enum role role)
{
    memset(sv, 0, sizeof(*sv));
    peer_init(&sv->peer, role);
    sv->peer.max_inflight = 4 * MiB;
    assert_int_equal(wr_listen(&loop, "127.0.0.1", 0, 0, server_conn, sv, &sv->l), 0);
    sv->port = wr_listener_port(sv->l);
}

/* ---- the relay under test ---- */

typedef struct proxy {
    wr_listener_t *l;
    int port;
    struct sockaddr_in target;
    wr_relay_opts_t opts;
    wr_relay_t *relay;
    wr_relay_result_t res;
    int relay_done;
    uv_tcp_t *pending; /* accepted, waiting for its dial */
} proxy_t;

static void relay_closed(wr_relay_t *r, const wr_relay_result_t *res, void *data)
{
    proxy_t *px = data;
    assert_ptr_equal(r, px->relay);
    assert_false(px->relay_done); /* exactly once */
    px->res = *res;
    px->relay_done = 1;
    px->relay = NULL;
}

static void proxy_dialed(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    proxy_t *px = data;
    assert_int_equal(status, 0);
    wr_endpoint_t *a = wr_tcp_endpoint_new(px->pending);
    wr_endpoint_t *b = wr_tcp_endpoint_new(tcp);
    assert_non_null(a);
    assert_non_null(b);
    px->pending = NULL;
    px->relay = wr_relay_start(&loop, a, b, &px->opts, relay_closed, px);
    assert_non_null(px->relay);
}

static void proxy_conn(wr_listener_t *l, int status)
{
    proxy_t *px = wr_listener_data(l);
    assert_int_equal(status, 0);
    assert_null(px->pending);
    assert_int_equal(wr_listener_accept(l, &px->pending), 0);
    const struct sockaddr *t = (const struct sockaddr *)&px->target;
    assert_int_equal(wr_dial_addrs(&loop, &t, 1, 5000, proxy_dialed, px, NULL), 0);
}

static void proxy_start(proxy_t *px, int target_port, const wr_relay_opts_t *opts)
{
    memset(px, 0, sizeof(*px));
    if (opts) px->opts = *opts;
    uv_ip4_addr("127.0.0.1", target_port, &px->target);
    assert_int_equal(wr_listen(&loop, "127.0.0.1", 0, 0, proxy_conn, px, &px->l), 0);
    px->port = wr_listener_port(px->l);
}

/* ---- client ---- */

static void client_connected(uv_connect_t *req, int status)
{
    peer_t *p = req->data;
    p->connect_status = status;
    p->connected = 1;
    assert_int_equal(status, 0);
    peer_read_start(p);
    pump(p);
}

static void client_start(peer_t *c, int port, uint64_t to_send, int shutdown_after)
{
    peer_init(c, R_CLIENT);
    c->seed = 0x1234;
    c->to_send = to_send;
    c->shutdown_after_send = shutdown_after;
    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    uv_tcp_init(&loop, tcp);
    peer_attach(c, tcp);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    c->creq.data = c;
    assert_int_equal(uv_tcp_connect(&c->creq, tcp, (struct sockaddr *)&sa, client_connected), 0);
}

typedef struct world {
    proxy_t px;
    server_t sv;
    peer_t client;
} world_t;

static int all_done(void *arg)
{
    world_t *w = arg;
    return w->px.relay_done && open_peers == 0;
}

static void world_stop(world_t *w)
{
    wr_listener_close(w->px.l);
    wr_listener_close(w->sv.l);
}

static world_t *world_new(enum role role, const wr_relay_opts_t *opts)
{
    world_t *w = calloc(1, sizeof(*w));
    server_start(&w->sv, role);
    proxy_start(&w->px, w->sv.port, opts);
    return w;
}

/* ---- tests ---- */

/* 64 MiB each way through the relay against an echo server, then a clean half-close. */
static void test_relay_bulk_echo(void **state)
{
    world_t *w = world_new(R_ECHO, NULL);
    wr_buf_stats_t b0, b1;
    wr_buf_get_stats(&b0);
    const uint64_t total = 64ull * MiB;
    client_start(&w->client, w->px.port, total, 1);
    run_until(all_done, w, 120000);

    assert_int_equal(w->client.read_err, 0);
    assert_int_equal(w->client.sent, total);
    assert_int_equal(w->sv.peer.received, total);
    assert_int_equal(w->client.received, total);
    assert_true(w->client.recv_hash == w->client.send_hash);
    assert_true(w->sv.peer.recv_hash == w->client.send_hash);

    assert_int_equal(w->px.res.reason, WR_RELAY_EOF);
    assert_int_equal(w->px.res.err, 0);
    assert_int_equal(w->px.res.err_side, -1);
    assert_int_equal(w->px.res.bytes_ab, total);
    assert_int_equal(w->px.res.bytes_ba, total);

    /* Chunks are recycled: far fewer mallocs than the 1000+ reads of 64 KiB. */
    wr_buf_get_stats(&b1);
    print_message("relay chunk mallocs for 2x64 MiB: %llu\n",
                  (unsigned long long)(b1.mallocs - b0.mallocs));
    assert_true(b1.mallocs - b0.mallocs < 400);
    world_stop(w);
    free(w);
}

/* The client shuts down its write side first and must still get the whole reply. */
static void test_relay_half_close(void **state)
{
    world_t *w = world_new(R_REPLY_AFTER_EOF, NULL);
    w->sv.peer.reply_len = 8 * MiB + 123;
    w->sv.peer.seed = 0x5678;
    client_start(&w->client, w->px.port, 1 * MiB + 7, 1);
    run_until(all_done, w, 60000);

    assert_int_equal(w->sv.peer.received, 1 * MiB + 7);
    assert_true(w->sv.peer.recv_hash == w->client.send_hash);
    assert_int_equal(w->client.received, 8 * MiB + 123);
    assert_true(w->client.recv_hash == w->sv.peer.send_hash);
    assert_true(w->client.got_eof);
    assert_int_equal(w->client.read_err, 0);
    assert_int_equal(w->px.res.reason, WR_RELAY_EOF);
    assert_int_equal(w->px.res.bytes_ab, 1 * MiB + 7);
    assert_int_equal(w->px.res.bytes_ba, 8 * MiB + 123);
    world_stop(w);
    free(w);
}

typedef struct bp_watch {
    world_t *w;
    uv_timer_t t;
    uint64_t last_ab_read;
    int stable_ticks;
    int stalled;
    wr_relay_stats_t at_stall;
    size_t live_chunks_at_stall;
} bp_watch_t;

static void bp_tick(uv_timer_t *t)
{
    bp_watch_t *bw = t->data;
    if (bw->w->px.relay == NULL) return;
    wr_relay_stats_t st;
    wr_relay_get_stats(bw->w->px.relay, &st);
    uint64_t progress = st.bytes_ab + st.buffered_ab;
    if (progress == bw->last_ab_read && st.paused_a) {
        if (++bw->stable_ticks >= 5) {
            /* Stalled: record, then let the far reader go. */
            bw->stalled = 1;
            bw->at_stall = st;
            wr_buf_stats_t bs;
            wr_buf_get_stats(&bs);
            bw->live_chunks_at_stall = bs.live;
            uv_timer_stop(t);
            bw->w->sv.peer.read_paused = 0;
            peer_read_start(&bw->w->sv.peer);
            return;
        }
    } else {
        bw->stable_ticks = 0;
    }
    bw->last_ab_read = progress;
}

/* The far reader stops: the relay must stop reading at its cap, then resume and deliver all. */
static void test_relay_backpressure(void **state)
{
    world_t *w = calloc(1, sizeof(*w));
    server_start(&w->sv, R_SINK);
    w->sv.peer.read_paused = 1;
    proxy_start(&w->px, w->sv.port, NULL);
    const uint64_t total = 48ull * MiB;
    client_start(&w->client, w->px.port, total, 1);

    bp_watch_t bw;
    memset(&bw, 0, sizeof(bw));
    bw.w = w;
    uv_timer_init(&loop, &bw.t);
    bw.t.data = &bw;
    uv_timer_start(&bw.t, bp_tick, 50, 50);
    run_until(all_done, w, 120000);
    close_local_timer(&bw.t);

    assert_true(bw.stalled);
    const size_t cap = WR_RELAY_WRITE_CAP_DEFAULT;
    print_message("at stall: buffered A->B %zu, peak %zu, delivered %llu, live chunks %zu\n",
                  bw.at_stall.buffered_ab, bw.at_stall.peak_buffered_ab,
                  (unsigned long long)bw.at_stall.bytes_ab, bw.live_chunks_at_stall);
    /* Engaged (queued reached the cap), and bounded by the cap plus one read: a socket with a
     * backlog reads bulk chunks, so one read may bring up to WR_BUF_BULK_SIZE. */
    assert_true(bw.at_stall.peak_buffered_ab >= cap);
    assert_true(bw.at_stall.peak_buffered_ab <= cap + WR_BUF_BULK_SIZE);
    assert_true(bw.at_stall.buffered_ab <= cap + WR_BUF_BULK_SIZE);
    assert_true(bw.at_stall.paused_a);
    assert_true(bw.live_chunks_at_stall <= 4 * ((cap + WR_BUF_BULK_SIZE) / WR_BUF_SIZE) + 2);

    /* Once the reader resumed, everything arrived intact. */
    assert_int_equal(w->sv.peer.received, total);
    assert_true(w->sv.peer.recv_hash == w->client.send_hash);
    assert_int_equal(w->px.res.reason, WR_RELAY_EOF);
    assert_int_equal(w->px.res.bytes_ab, total);
    assert_int_equal(w->px.res.bytes_ba, 0);
    world_stop(w);
    free(w);
}

/* A quiet relay ends after the idle timeout with the bytes it moved, and a held idle
 * connection pins no chunk. */
typedef struct idle_probe {
    world_t *w;
    uv_timer_t t;
    size_t live_chunks;
    int probed;
} idle_probe_t;

static void idle_probe_cb(uv_timer_t *t)
{
    idle_probe_t *ip = t->data;
    wr_buf_stats_t bs;
    wr_buf_get_stats(&bs);
    ip->live_chunks = bs.live;
    ip->probed = 1;
}

static void test_relay_idle_timeout(void **state)
{
    wr_relay_opts_t opts = {.idle_timeout_ms = 300};
    world_t *w = world_new(R_ECHO, &opts);
    client_start(&w->client, w->px.port, 1000, 0);
    idle_probe_t ip = {.w = w};
    uv_timer_init(&loop, &ip.t);
    ip.t.data = &ip;
    uv_timer_start(&ip.t, idle_probe_cb, 150, 0);
    uint64_t t0 = uv_hrtime();
    run_until(all_done, w, 10000);
    uint64_t ms = (uv_hrtime() - t0) / 1000000u;
    close_local_timer(&ip.t);

    assert_int_equal(w->px.res.reason, WR_RELAY_IDLE);
    assert_int_equal(w->px.res.bytes_ab, 1000);
    assert_int_equal(w->px.res.bytes_ba, 1000);
    assert_true(w->px.res.duration_ms >= 290);
    assert_true(ms < 3000);
    assert_int_equal(w->client.received, 1000);
    assert_true(w->client.got_eof); /* graceful: the client sees FIN */
    assert_true(ip.probed);
    assert_int_equal(ip.live_chunks, 0);
    world_stop(w);
    free(w);
}

/* The far side resets: the relay reports it and resets the near side too. */
static void test_relay_reset(void **state)
{
    world_t *w = world_new(R_RESET_ON_READ, NULL);
    client_start(&w->client, w->px.port, 100, 0);
    run_until(all_done, w, 10000);
    assert_int_equal(w->px.res.reason, WR_RELAY_RESET);
    assert_int_equal(w->px.res.err, UV_ECONNRESET);
    assert_int_equal(w->px.res.err_side, 1);
    assert_int_equal(w->px.res.bytes_ab, 100);
    assert_int_equal(w->client.read_err, UV_ECONNRESET);
    assert_false(w->client.got_eof);
    world_stop(w);
    free(w);
}

/* The owner closes a live relay. */
typedef struct closer {
    world_t *w;
    uv_timer_t t;
} closer_t;

static void closer_cb(uv_timer_t *t)
{
    closer_t *c = t->data;
    if (c->w->client.received < 5000 || c->w->px.relay == NULL) return;
    uv_timer_stop(t);
    wr_relay_close(c->w->px.relay);
    wr_relay_close(c->w->px.relay); /* idempotent while ending */
}

static void test_relay_owner_close(void **state)
{
    world_t *w = world_new(R_ECHO, NULL);
    client_start(&w->client, w->px.port, 5000, 0);
    closer_t c = {.w = w};
    uv_timer_init(&loop, &c.t);
    c.t.data = &c;
    uv_timer_start(&c.t, closer_cb, 10, 10);
    run_until(all_done, w, 10000);
    close_local_timer(&c.t);
    assert_int_equal(w->px.res.reason, WR_RELAY_CLOSED);
    assert_int_equal(w->px.res.bytes_ab, 5000);
    assert_int_equal(w->px.res.bytes_ba, 5000);
    assert_int_equal(w->px.res.err_side, -1);
    assert_true(w->client.got_eof);
    assert_string_equal(wr_relay_reason_name(WR_RELAY_CLOSED), "closed");
    world_stop(w);
    free(w);
}

/* With a small cap, backpressure must engage in both directions at once (echo of a big
 * stream) and still move everything. */
static void test_relay_small_cap_echo(void **state)
{
    wr_relay_opts_t opts = {.write_cap = 128 * 1024, .low_water = 32 * 1024};
    world_t *w = world_new(R_ECHO, &opts);
    const uint64_t total = 16ull * MiB;
    w->client.max_inflight = 4 * MiB;
    client_start(&w->client, w->px.port, total, 1);
    w->client.max_inflight = 4 * MiB;
    run_until(all_done, w, 60000);
    assert_int_equal(w->client.received, total);
    assert_true(w->client.recv_hash == w->client.send_hash);
    assert_int_equal(w->px.res.reason, WR_RELAY_EOF);
    world_stop(w);
    free(w);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the host does: a vanished peer is an error return */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_relay_bulk_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_owner_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_small_cap_echo, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
