/* Throughput and handshake rate of a session on loopback, `ssh -L` style, each end on its own
 * thread and loop:
 *   source (blocking socket) -> [client thread: TCP endpoint <relay> stream] == session/TCP ==>
 *   [server thread: stream <relay> dialed TCP endpoint] -> sink (blocking socket thread)
 * compared with source -> sink directly in the same run. Quick by default (a smoke test that the
 * path works across threads); WARREN_BENCH=1 moves 4 GiB and prints the figures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wr_io.h"
#include "wr_relay.h"
#include "wr_session.h"
#include "wr_tcp_endpoint.h"

static const uint8_t psk[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

/* WARREN_BENCH_WINDOW=bytes overrides the per-stream window (default 256 KiB). */
static uint32_t bench_window(void)
{
    const char *w = getenv("WARREN_BENCH_WINDOW");
    return w ? (uint32_t)atoi(w) : 0;
}

/* ---- sink: a blocking reader thread ---- */

typedef struct sink {
    int lfd, port;
    uint64_t bytes;
    uint64_t done_ns;
} sink_t;

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

static void *sink_main(void *arg)
{
    sink_t *k = arg;
    static char buf[256 * 1024];
    int fd = accept(k->lfd, NULL, NULL);
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        k->bytes += (uint64_t)n;
    k->done_ns = uv_hrtime();
    close(fd);
    return NULL;
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Writes total bytes to port, half-closes, waits for the sink; returns MB/s. */
static double blast(int port, sink_t *k, uint64_t total)
{
    static char buf[256 * 1024];
    memset(buf, 0x5a, sizeof(buf));
    pthread_t th;
    k->bytes = 0;
    pthread_create(&th, NULL, sink_main, k);
    int fd = connect_port(port);
    uint64_t t0 = uv_hrtime(), sent = 0;
    while (sent < total) {
        size_t n = total - sent < sizeof(buf) ? (size_t)(total - sent) : sizeof(buf);
        ssize_t w = write(fd, buf, n);
        assert_true(w > 0);
        sent += (uint64_t)w;
    }
    shutdown(fd, SHUT_WR);
    pthread_join(th, NULL);
    char c;
    while (read(fd, &c, 1) > 0) {}
    close(fd);
    assert_int_equal(k->bytes, total);
    return (double)total / 1e6 / ((double)(k->done_ns - t0) / 1e9);
}

/* ---- the two ends, each on its own loop thread ---- */

typedef struct end {
    uv_loop_t loop;
    uv_async_t stop;
    pthread_t th;
    uv_sem_t ready;
    wr_listener_t *lis;
    int port;
    wr_session_server_t *shared;
    wr_session_t *s;
    int sink_port;
    struct end *server; /* client end: where to dial */
    atomic_int handshakes;
    int want, dialing, done;
} end_t;

static void relay_done(wr_relay_t *r, const wr_relay_result_t *res, void *data) {}

static void stop_cb(uv_async_t *a)
{
    end_t *e = a->data;
    if (e->lis) wr_listener_close(e->lis);
    e->lis = NULL;
    if (e->s) wr_session_close(e->s);
    uv_close((uv_handle_t *)&e->stop, NULL);
}

static void *loop_main(void *arg)
{
    end_t *e = arg;
    uv_run(&e->loop, UV_RUN_DEFAULT);
    wr_buf_cache_trim();
    wr_tcp_endpoint_cache_trim();
    wr_session_cache_trim();
    return NULL;
}

/* server side */

typedef struct pend {
    wr_stream_t *st;
    uv_loop_t *loop;
} pend_t;

static void srv_dialed(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    pend_t *p = data;
    if (status < 0) {
        wr_stream_reject(p->st, "dial failed");
    } else {
        wr_stream_accept(p->st);
        wr_relay_start(p->loop, wr_stream_endpoint(p->st), wr_tcp_endpoint_new(tcp), NULL,
                       relay_done, NULL);
    }
    free(p);
}

static void srv_stream(wr_session_t *s, wr_stream_t *st, const uint8_t *target, size_t len)
{
    end_t *e = wr_session_data(s);
    char port[16] = {0};
    memcpy(port, target, len < 15 ? len : 15);
    pend_t *p = malloc(sizeof(*p));
    p->st = st;
    p->loop = &e->loop;
    wr_dial_t *d;
    if (wr_dial(&e->loop, "127.0.0.1", (uint16_t)atoi(port), 5000, srv_dialed, p, &d) < 0) {
        wr_stream_reject(st, "bad target");
        free(p);
    }
}

static void srv_ready(wr_session_t *s)
{
    end_t *e = wr_session_data(s);
    atomic_fetch_add(&e->handshakes, 1);
}

static void srv_closed(wr_session_t *s, int reason, const char *detail) {}

static const wr_session_cbs srv_cbs = {
    .on_ready = srv_ready, .on_stream_open = srv_stream, .on_closed = srv_closed};

static void srv_accept(wr_listener_t *l, int status)
{
    end_t *e = wr_listener_data(l);
    uv_tcp_t *tcp;
    if (wr_listener_accept(l, &tcp) < 0) return;
    wr_session_config cfg = {.is_server = 1, .hs_server = e->shared, .window = bench_window()};
    wr_session_new(&e->loop, wr_tcp_endpoint_new(tcp), &cfg, &srv_cbs, e);
}

/* client side */

static void cli_open(wr_stream_t *st, int status, const char *reason) {}

static void cli_local(wr_listener_t *l, int status)
{
    end_t *e = wr_listener_data(l);
    uv_tcp_t *tcp;
    if (wr_listener_accept(l, &tcp) < 0) return;
    char port[16];
    int n = snprintf(port, sizeof(port), "%d", e->sink_port);
    wr_stream_t *st = wr_session_open_stream(e->s, (const uint8_t *)port, (size_t)n, cli_open, e);
    /* 0-RTT: relay at once; the bytes flow within the initial credit before OPEN_ACK. */
    wr_relay_start(&e->loop, wr_tcp_endpoint_new(tcp), wr_stream_endpoint(st), NULL, relay_done,
                   NULL);
}

static void cli_ready(wr_session_t *s)
{
    end_t *e = wr_session_data(s);
    if (atomic_fetch_add(&e->handshakes, 1) == 0) uv_sem_post(&e->ready);
}

static void cli_closed(wr_session_t *s, int reason, const char *detail)
{
    end_t *e = wr_session_data(s);
    if (s == e->s) e->s = NULL;
}

static const wr_session_cbs cli_cbs = {.on_ready = cli_ready, .on_closed = cli_closed};

static void cli_dialed(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    end_t *e = data;
    assert_int_equal(status, 0);
    wr_session_config cfg = {.psk = psk, .window = bench_window()};
    e->s = wr_session_new(&e->loop, wr_tcp_endpoint_new(tcp), &cfg, &cli_cbs, e);
}

static void end_init(end_t *e)
{
    memset(e, 0, sizeof(*e));
    uv_loop_init(&e->loop);
    uv_async_init(&e->loop, &e->stop, stop_cb);
    e->stop.data = e;
    uv_sem_init(&e->ready, 0);
}

static void end_finish(end_t *e)
{
    uv_async_send(&e->stop);
    pthread_join(e->th, NULL);
    uv_loop_close(&e->loop);
    uv_sem_destroy(&e->ready);
}

static void test_tunnel_throughput(void **state)
{
    const char *b = getenv("WARREN_BENCH");
    uint64_t total = b && *b == '1' ? 4096ull * 1024 * 1024 : 64ull * 1024 * 1024;
    sink_t k;
    memset(&k, 0, sizeof(k));
    k.lfd = listen_any(&k.port);
    /* For a same-run comparison with another forwarder (e.g. `ssh -L VIA:127.0.0.1:SINK`). */
    const char *sp = getenv("WARREN_BENCH_SINK_PORT"), *via = getenv("WARREN_BENCH_VIA");
    if (sp) {
        close(k.lfd);
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)atoi(sp)),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(fd, 16), 0);
        k.lfd = fd;
        k.port = atoi(sp);
    }

    end_t srv, cli;
    end_init(&srv);
    end_init(&cli);
    assert_int_equal(wr_session_server_new(psk, 0, &srv.shared), 0);
    assert_int_equal(wr_listen(&srv.loop, "127.0.0.1", 0, 0, srv_accept, &srv, &srv.lis), 0);
    srv.port = wr_listener_port(srv.lis);
    assert_int_equal(wr_listen(&cli.loop, "127.0.0.1", 0, 0, cli_local, &cli, &cli.lis), 0);
    cli.port = wr_listener_port(cli.lis);
    cli.sink_port = k.port;
    wr_dial_t *d;
    assert_int_equal(
        wr_dial(&cli.loop, "127.0.0.1", (uint16_t)srv.port, 5000, cli_dialed, &cli, &d), 0);
    pthread_create(&srv.th, NULL, loop_main, &srv);
    pthread_create(&cli.th, NULL, loop_main, &cli);
    uv_sem_wait(&cli.ready);

    double direct = getenv("WARREN_BENCH_NO_DIRECT") ? 1 : blast(k.port, &k, total);
    double tunnel = blast(cli.port, &k, total);
    printf("    %llu MiB one stream: direct TCP %.0f MB/s, through a warren session %.0f MB/s "
           "(%.2f Gbit/s, %.0f%% of direct)\n",
           (unsigned long long)(total >> 20), direct, tunnel, tunnel * 8 / 1000,
           100 * tunnel / direct);
    if (via) {
        double other = blast(atoi(via), &k, total);
        printf(
            "    through the forwarder on port %s: %.0f MB/s (%.2f Gbit/s); warren / it = %.2f\n",
            via, other, other * 8 / 1000, tunnel / other);
    }

    end_finish(&cli);
    end_finish(&srv);
    wr_session_server_free(srv.shared);
    close(k.lfd);
}

/* ---- handshakes per second: many clients against the server thread ---- */

static void hs_ready(wr_session_t *s)
{
    end_t *e = wr_session_data(s);
    atomic_fetch_add(&e->handshakes, 1);
    e->done++;
    wr_session_close(s);
}

static void hs_closed(wr_session_t *s, int reason, const char *detail);
static const wr_session_cbs hs_cbs = {.on_ready = hs_ready, .on_closed = hs_closed};

static void hs_dial_next(end_t *e);

static void hs_dialed(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    end_t *e = data;
    e->dialing--;
    assert_int_equal(status, 0);
    wr_session_config cfg = {.psk = psk};
    wr_session_new(&e->loop, wr_tcp_endpoint_new(tcp), &cfg, &hs_cbs, e);
}

static void hs_closed(wr_session_t *s, int reason, const char *detail)
{
    end_t *e = wr_session_data(s);
    assert_int_equal(reason, WR_SESSION_CLOSED_LOCALLY);
    hs_dial_next(e);
}

static void hs_dial_next(end_t *e)
{
    if (e->want == 0) {
        if (e->done == (int)atomic_load(&e->handshakes) && e->dialing == 0 && e->lis == NULL) {}
        return;
    }
    e->want--;
    e->dialing++;
    wr_dial_t *d;
    assert_int_equal(
        wr_dial(&e->loop, "127.0.0.1", (uint16_t)e->server->port, 5000, hs_dialed, e, &d), 0);
}

static void test_handshake_rate(void **state)
{
    const char *b = getenv("WARREN_BENCH");
    int n = b && *b == '1' ? 5000 : 200;
    end_t srv, cli;
    end_init(&srv);
    end_init(&cli);
    assert_int_equal(wr_session_server_new(psk, 0, &srv.shared), 0);
    assert_int_equal(wr_listen(&srv.loop, "127.0.0.1", 0, 0, srv_accept, &srv, &srv.lis), 0);
    srv.port = wr_listener_port(srv.lis);
    pthread_create(&srv.th, NULL, loop_main, &srv);
    cli.server = &srv;
    cli.want = n;
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < 32; i++)
        hs_dial_next(&cli);
    uv_close((uv_handle_t *)&cli.stop, NULL);
    uv_run(&cli.loop, UV_RUN_DEFAULT);
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    assert_int_equal(atomic_load(&cli.handshakes), n);
    /* Server-side confirmations trail the clients' on_ready by one frame. */
    for (int i = 0; i < 200 && atomic_load(&srv.handshakes) < n; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&srv.handshakes), n);
    printf("    %d handshakes (32 concurrent, client and server on this box): %.0f /s; server "
           "DH on the threadpool\n",
           n, n / secs);
    end_finish(&srv);
    uv_loop_close(&cli.loop);
    uv_sem_destroy(&cli.ready);
    wr_session_server_free(srv.shared);
    wr_buf_cache_trim();
    wr_tcp_endpoint_cache_trim();
    wr_session_cache_trim();
}

int main(void)
{
    const char *only = getenv("WARREN_BENCH_ONLY");
    if (only) cmocka_set_test_filter(only);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tunnel_throughput),
        cmocka_unit_test(test_handshake_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
