/* Throughput of the TLS carrier against the raw TCP endpoint it wraps: one stream over loopback,
 * the sender on this thread's loop and the receiver on another thread's (as a client and a relay
 * would be, one core each). Not a test: run it by hand from a Release build:
 *   ./spec/bench_tls [MiB per run, default 1024]
 * Besides MB/s it prints each side's CPU time per GiB: on a busy machine the wall-clock figure
 * drifts run to run, the CPU cost much less, and the slower side's cost bounds the throughput. */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "wr_io.h"
#include "wr_tcp_endpoint.h"
#include "wr_tls_endpoint.h"

/* CPU seconds this thread used. */
static double thread_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

typedef struct receiver {
    wr_tls_ctx_t *ctx; /* NULL: raw TCP */
    uv_loop_t loop;
    uv_sem_t ready;
    wr_listener_t *l;
    wr_endpoint_t *ep;
    int port;
    uint64_t rx, t_end;
    double cpu0, cpu;
    char cipher[64];
} receiver_t;

static void rx_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    ((receiver_t *)ep->data)->rx += len;
}

static void rx_eof(wr_endpoint_t *ep)
{
    receiver_t *r = ep->data;
    r->t_end = uv_hrtime();
    r->cpu = thread_cpu() - r->cpu0;
    wr_endpoint_close(ep, WR_CLOSE_GRACEFUL);
}

static void rx_error(wr_endpoint_t *ep, int err)
{
    fprintf(stderr, "receiver: %s\n", uv_strerror(err));
    exit(1);
}

static const wr_endpoint_cbs_t rx_cbs = {
    .on_read = rx_read, .on_eof = rx_eof, .on_error = rx_error};

static void rx_handshake(wr_endpoint_t *ep, int status, const char *err, void *data)
{
    receiver_t *r = data;
    wr_tls_info info;
    if (status != 0) {
        fprintf(stderr, "receiver handshake: %s\n", err);
        exit(1);
    }
    wr_tls_endpoint_info(ep, &info);
    snprintf(r->cipher, sizeof(r->cipher), "%s %s", info.version, info.cipher);
    wr_endpoint_set_callbacks(ep, &rx_cbs, r);
    wr_endpoint_read_start(ep);
}

static void rx_conn(wr_listener_t *l, int status)
{
    receiver_t *r = wr_listener_data(l);
    uv_tcp_t *tcp;
    if (status < 0 || wr_listener_accept(l, &tcp) != 0) exit(1);
    r->cpu0 = thread_cpu();
    wr_listener_close(l);
    r->ep = wr_tcp_endpoint_new(tcp);
    if (r->ctx) {
        r->ep = wr_tls_endpoint_new(&r->loop, r->ctx, r->ep, NULL, NULL, 0, rx_handshake, r);
    } else {
        snprintf(r->cipher, sizeof(r->cipher), "raw TCP endpoint");
        wr_endpoint_set_callbacks(r->ep, &rx_cbs, r);
        wr_endpoint_read_start(r->ep);
    }
}

static void rx_thread(void *arg)
{
    receiver_t *r = arg;
    uv_loop_init(&r->loop);
    if (wr_listen(&r->loop, "127.0.0.1", 0, 0, rx_conn, r, &r->l) != 0) exit(1);
    r->port = wr_listener_port(r->l);
    uv_sem_post(&r->ready);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_loop_close(&r->loop);
    wr_buf_cache_trim();
    wr_tcp_endpoint_cache_trim();
}

typedef struct sender {
    wr_endpoint_t *ep;
    wr_buf_t *chunk;
    uint64_t total, sent, t0;
    double cpu0, cpu;
    int dialed;
    uv_tcp_t *tcp;
} sender_t;

static void tx_pump(sender_t *s)
{
    while (s->sent < s->total && !wr_endpoint_over_high_water(s->ep)) {
        size_t n = s->total - s->sent < s->chunk->size ? s->total - s->sent : s->chunk->size;
        if (wr_endpoint_write(s->ep, s->chunk, s->chunk->data, n) != 0) exit(1);
        s->sent += n;
    }
    if (s->sent == s->total && !(s->ep->flags & WR_EP_SHUT)) wr_endpoint_shutdown(s->ep);
}

static void tx_drain(wr_endpoint_t *ep)
{
    tx_pump(ep->data);
}

static void tx_shutdown(wr_endpoint_t *ep, int status)
{
    sender_t *s = ep->data;
    s->cpu = thread_cpu() - s->cpu0;
    wr_endpoint_close(ep, WR_CLOSE_GRACEFUL);
}

static void tx_error(wr_endpoint_t *ep, int err)
{
    fprintf(stderr, "sender: %s\n", uv_strerror(err));
    exit(1);
}

static const wr_endpoint_cbs_t tx_cbs = {
    .on_drain = tx_drain, .on_shutdown = tx_shutdown, .on_error = tx_error};

static void tx_start(sender_t *s)
{
    wr_endpoint_set_callbacks(s->ep, &tx_cbs, s);
    s->t0 = uv_hrtime();
    s->cpu0 = thread_cpu();
    tx_pump(s);
}

static void tx_handshake(wr_endpoint_t *ep, int status, const char *err, void *data)
{
    if (status != 0) {
        fprintf(stderr, "sender handshake: %s\n", err);
        exit(1);
    }
    tx_start(data);
}

static void tx_dialed(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    sender_t *s = data;
    if (status != 0) exit(1);
    s->tcp = tcp;
    s->dialed = 1;
}

typedef struct result {
    char what[96];
    double mbs, cpu_tx, cpu_rx; /* CPU seconds per GiB */
} result_t;

/* One run: suites NULL for raw TCP, "" for the backend's default. */
static void run(wr_tls_ctx_t *server, const char *suites, uint64_t total, result_t *res)
{
    receiver_t r = {.ctx = suites ? server : NULL};
    sender_t s = {.total = total};
    uv_loop_t loop;
    uv_thread_t th;
    wr_dial_t *d;
    wr_tls_ctx_t *cctx = NULL;
    uv_loop_init(&loop);
    uv_sem_init(&r.ready, 0);
    uv_thread_create(&th, rx_thread, &r);
    uv_sem_wait(&r.ready);
    wr_dial(&loop, "127.0.0.1", (uint16_t)r.port, 5000, tx_dialed, &s, &d);
    while (!s.dialed)
        uv_run(&loop, UV_RUN_ONCE);
    s.chunk = wr_buf_get();
    for (size_t i = 0; i < s.chunk->size; i++)
        s.chunk->data[i] = (char)(i * 131 + (i >> 9));
    s.ep = wr_tcp_endpoint_new(s.tcp);
    if (suites) {
        char *err = NULL;
        wr_tls_client_opts o = {.pin = wr_tls_ctx_fingerprint(server),
                                .tls13_suites = *suites ? suites : NULL};
        cctx = wr_tls_ctx_new_client(&o, &err);
        if (cctx == NULL) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
        s.ep = wr_tls_endpoint_new(&loop, cctx, s.ep, "localhost", NULL, 0, tx_handshake, &s);
    } else {
        tx_start(&s);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_thread_join(&th);
    wr_buf_release(s.chunk);
    wr_tls_ctx_free(cctx);
    uv_loop_close(&loop);
    uv_sem_destroy(&r.ready);
    if (r.rx != total) {
        fprintf(stderr, "received %llu of %llu bytes\n", (unsigned long long)r.rx,
                (unsigned long long)total);
        exit(1);
    }
    snprintf(res->what, sizeof(res->what), "%s", r.cipher);
    res->mbs = (double)total / ((double)(r.t_end - s.t0) / 1e9) / 1e6;
    res->cpu_tx = s.cpu / ((double)total / (1 << 30));
    res->cpu_rx = r.cpu / ((double)total / (1 << 30));
}

int main(int argc, char **argv)
{
    uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
    char dir[] = "/tmp/warren-bench-tls-XXXXXX", path[64], *err = NULL;
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(dir) == NULL) return 1;
    snprintf(path, sizeof(path), "%s/cert.pem", dir);
    wr_tls_server_opts so = {.self_signed_file = path};
    wr_tls_ctx_t *server = wr_tls_ctx_new_server(&so, &err);
    if (server == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
#ifdef WR_HAVE_LIBSSL
    static const char *const suites[] = {NULL, "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                         "TLS_CHACHA20_POLY1305_SHA256"};
#else
    /* TLS 1.2 and the suite the server prefers for its P-256 key: ECDHE-ECDSA-AES128-GCM. */
    static const char *const suites[] = {NULL, ""};
#endif
    printf("one stream over loopback, %llu MiB per run, sender and receiver on two threads, %s\n",
           (unsigned long long)mib, wr_tls_backend());
    printf("  %-36s %9s %6s   CPU s/GiB: %6s %8s %9s %6s\n", "", "MB/s", "x raw", "sender",
           "receiver", "bound MB/s", "x raw");
    result_t raw;
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
        result_t r;
        run(server, suites[i], mib << 20, &r);
        if (i == 0) raw = r;
        double worst = r.cpu_tx > r.cpu_rx ? r.cpu_tx : r.cpu_rx;
        double raw_worst = raw.cpu_tx > raw.cpu_rx ? raw.cpu_tx : raw.cpu_rx;
        printf("  %-36s %9.0f %6.2f              %6.3f %8.3f %9.0f %6.2f\n", r.what, r.mbs,
               r.mbs / raw.mbs, r.cpu_tx, r.cpu_rx, (1 << 30) / worst / 1e6, raw_worst / worst);
        fflush(stdout);
    }
    wr_tls_ctx_free(server);
    unlink(path);
    rmdir(dir);
    wr_buf_cache_trim();
    wr_tcp_endpoint_cache_trim();
    return 0;
}
