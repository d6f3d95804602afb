/* The pass-through fallback site (wr_site_proxy) and its request framer (wr_http_framer).
 * The framer is tested pure. The proxy runs on a libuv loop in its own thread, listening on
 * 127.0.0.1 and handing each connection over the way the front door does (the first bytes read);
 * the tests are the visitor and the site at once, as blocking sockets, so they see exactly which
 * bytes the site got and how each connection ended. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "wr_buf.h"
#include "wr_http_framer.h"
#include "wr_io.h"
#include "wr_site_proxy.h"
#include "wr_tcp_endpoint.h"

#define BIG_SIZE     (3 * 1024 * 1024 + 777)
#define HEAD_WAIT_MS 300
#define OURS_HEADER  "X-Test-Ours: yes\r\n"

/* ---- the framer, pure ---- */

typedef struct framed {
    int heads, raw;
    size_t head_bytes, body_bytes, raw_bytes; /* raw: head bytes handed back, then the rest */
    char urls[8][64];
} framed_t;

/* Feeds text in pieces of step bytes; returns what came out. */
static framed_t frame(const char *text, size_t len, size_t step)
{
    static wr_http_framer_t f;
    framed_t out;
    memset(&out, 0, sizeof out);
    wr_http_framer_init(&f);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < step ? len - off : step, used = 0;
        while (n) {
            enum wr_framer_event ev = wr_http_framer_next(&f, text + off, n, &used);
            if (ev == WR_FRAMER_HEAD) {
                if (out.heads < 8)
                    snprintf(out.urls[out.heads], sizeof out.urls[0], "%.*s", (int)f.req.url_len,
                             f.req.url);
                out.heads++;
                out.head_bytes += f.head_len;
            } else if (ev == WR_FRAMER_RAW) {
                out.raw++;
                out.raw_bytes += f.head_len;
            } else if (ev == WR_FRAMER_BODY) {
                if (f.state == WR_FRAMER_S_RAW && out.raw)
                    out.raw_bytes += used;
                else
                    out.body_bytes += used;
            }
            assert_true(used > 0 || ev == WR_FRAMER_HEAD || ev == WR_FRAMER_RAW);
            off += used;
            n -= used;
        }
    }
    return out;
}

static const char pipeline[] =
    "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
    "hello world"
    "POST /chunks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5;name=value\r\nabcde\r\n10\r\n0123456789abcdef\r\n0\r\n"
    "Trailer-Field: x\r\n\r\n"
    "GET /last HTTP/1.1\r\nHost: a\r\n\r\n";

static void framer_finds_every_boundary(void **state)
{
    (void)state;
    /* However the bytes are cut, the same requests come out, bodies whole. */
    for (size_t step = 1; step <= sizeof pipeline; step++) {
        framed_t out = frame(pipeline, sizeof pipeline - 1, step);
        assert_int_equal(out.heads, 3);
        assert_int_equal(out.raw, 0);
        assert_string_equal(out.urls[0], "/upload");
        assert_string_equal(out.urls[1], "/chunks");
        assert_string_equal(out.urls[2], "/last");
        assert_int_equal(out.body_bytes,
                         11 + strlen("5;name=value\r\nabcde\r\n10\r\n0123456789abcdef"
                                     "\r\n0\r\nTrailer-Field: x\r\n\r\n"));
        assert_int_equal(out.head_bytes + out.body_bytes, sizeof pipeline - 1);
    }
}

static void framer_gives_up_rather_than_guess(void **state)
{
    static const struct {
        const char *text;
        int heads; /* complete heads before giving up */
    } cases[] = {
        {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc", 0},
        {"GET / HTTP/1.1\r\nHost: a\r\nbad header line\r\n\r\n", 0},
        {"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 0},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 1},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 1},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 1},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbare\n\r\n", 1},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", 1},
        {"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET / "
         "HTTP/1.1\r\n\r\n",
         1},
        {"CONNECT a:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /next HTTP/1.1\r\n\r\n", 1},
        {"GET / HTTP/1.0\r\n\r\nGET /next HTTP/1.0\r\n\r\n", 1},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].text);
        for (size_t step = 1; step <= len; step++) {
            framed_t out = frame(cases[i].text, len, step);
            if (out.heads != cases[i].heads)
                fail_msg("case %zu step %zu: %d heads", i, step, out.heads);
            /* Every byte is accounted for exactly once, whatever happened. */
            assert_int_equal(out.head_bytes + out.body_bytes + out.raw_bytes, len);
        }
    }
}

static void framer_head_too_long_is_raw(void **state)
{
    size_t len = WR_HTTP_HEAD_MAX + 100;
    char *text = malloc(len);
    (void)state;
    assert_non_null(text);
    memcpy(text, "GET / HTTP/1.1\r\nX: ", 19);
    memset(text + 19, 'a', len - 19);
    framed_t out = frame(text, len, 4096);
    assert_int_equal(out.heads, 0);
    assert_int_equal(out.raw, 1);
    assert_int_equal(out.raw_bytes, len);
    free(text);
}

static void parse_url(void **state)
{
    char host[WR_HOST_MAX + 1], prefix[64];
    uint16_t port;
    const char *err;
    (void)state;
    assert_int_equal(wr_site_proxy_parse_url("http://127.0.0.1:8080", host, sizeof host, &port,
                                             prefix, sizeof prefix, &err),
                     0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_string_equal(prefix, "");
    assert_int_equal(wr_site_proxy_parse_url("http://[::1]:80/blog/", host, sizeof host, &port,
                                             prefix, sizeof prefix, &err),
                     0);
    assert_string_equal(host, "::1");
    assert_string_equal(prefix, "/blog");
    static const char *bad[] = {"https://a:1",     "http://a",        "http://:80",
                                "http://a:80/x?y", "http://a:80/a b", "ftp://a:21"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(
            wr_site_proxy_parse_url(bad[i], host, sizeof host, &port, prefix, sizeof prefix, &err),
            UV_EINVAL);
}

/* ---- the proxy thread ---- */

static struct {
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t stop;
    wr_listener_t *listener, *down_listener, *prefix_listener;
    wr_site_proxy_t *proxy, *down, *prefixed;
    sem_t ready;
    int port, down_port, prefix_port;
    size_t live_chunks;
    wr_site_proxy_stats st;
} srv;

static int site_fd, site_port; /* the test's site: a listening socket */

static int is_ours(void *data, const wr_http_head_t *req, const char *head, size_t len)
{
    (void)data;
    (void)req;
    return memmem(head, len, OURS_HEADER, strlen(OURS_HEADER)) != NULL;
}

/* The test's carrier: answers the claimed request with what it was given, then closes. */
static void taken_shutdown(wr_endpoint_t *ep, int status)
{
    (void)status;
    wr_endpoint_close(ep, WR_CLOSE_GRACEFUL);
}

static void taken_error(wr_endpoint_t *ep, int err)
{
    (void)err;
    wr_endpoint_close(ep, WR_CLOSE_RESET);
}

static const wr_endpoint_cbs_t taken_cbs = {.on_shutdown = taken_shutdown, .on_error = taken_error};

static void take(void *data, wr_endpoint_t *ep, const char *already, size_t len)
{
    char head[96];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nX-Taken: %zu\r\nContent-Length: %zu\r\n\r\n", len, len);
    wr_buf_t *b = wr_buf_new((size_t)n + len);
    (void)data;
    wr_endpoint_set_callbacks(ep, &taken_cbs, NULL);
    memcpy(b->data, head, (size_t)n);
    memcpy(b->data + n, already, len);
    if (wr_endpoint_write(ep, b, b->data, (size_t)n + len) < 0 || wr_endpoint_shutdown(ep) < 0)
        wr_endpoint_close(ep, WR_CLOSE_RESET);
    wr_buf_release(b);
}

/* What the front door does: it reads the first bytes, then hands them over with the endpoint. */
static void front_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    (void)b;
    wr_endpoint_read_stop(ep);
    wr_site_proxy_take(ep->data, ep, base, len);
}

static void front_eof(wr_endpoint_t *ep)
{
    wr_endpoint_read_stop(ep);
    wr_site_proxy_take(ep->data, ep, NULL, 0);
}

static const wr_endpoint_cbs_t front_cbs = {.on_read = front_read, .on_eof = front_eof};

static void on_connection(wr_listener_t *l, int status)
{
    uv_tcp_t *tcp;
    wr_endpoint_t *ep;
    if (status < 0 || wr_listener_accept(l, &tcp) < 0) return;
    ep = wr_tcp_endpoint_new(tcp);
    if (!ep) {
        wr_tcp_close_free(tcp);
        return;
    }
    wr_endpoint_set_callbacks(ep, &front_cbs, wr_listener_data(l));
    wr_endpoint_read_start(ep);
}

static void on_stop(uv_async_t *a)
{
    wr_site_proxy_get_stats(srv.proxy, &srv.st);
    wr_listener_close(srv.listener);
    wr_listener_close(srv.down_listener);
    wr_listener_close(srv.prefix_listener);
    wr_site_proxy_free(srv.proxy);
    wr_site_proxy_free(srv.down);
    wr_site_proxy_free(srv.prefixed);
    uv_close((uv_handle_t *)a, NULL);
}

static wr_site_proxy_t *proxy_to(const char *url, wr_listener_t **l, int *port)
{
    wr_site_proxy_config cfg = {
        .url = url, .is_ours = is_ours, .take = take, .head_wait_ms = HEAD_WAIT_MS};
    wr_site_proxy_t *p = wr_site_proxy_new(&srv.loop, &cfg, NULL);
    if (!p || wr_listen(&srv.loop, "127.0.0.1", 0, 64, on_connection, p, l) != 0) return NULL;
    *port = wr_listener_port(*l);
    return p;
}

static void *server_main(void *arg)
{
    char url[64], down_url[64];
    (void)arg;
    uv_loop_init(&srv.loop);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", site_port);
    snprintf(down_url, sizeof down_url, "http://127.0.0.1:%d", *(int *)arg);
    uv_async_init(&srv.loop, &srv.stop, on_stop);
    srv.proxy = proxy_to(url, &srv.listener, &srv.port);
    srv.down = proxy_to(down_url, &srv.down_listener, &srv.down_port);
    strcat(url, "/pre/");
    srv.prefixed = proxy_to(url, &srv.prefix_listener, &srv.prefix_port);
    sem_post(&srv.ready);
    uv_run(&srv.loop, UV_RUN_DEFAULT);
    wr_buf_stats_t st;
    wr_buf_get_stats(&st);
    srv.live_chunks = st.live;
    wr_buf_cache_trim();
    wr_tcp_endpoint_cache_trim();
    uv_loop_close(&srv.loop);
    return NULL;
}

/* ---- blocking sockets ---- */

static int listen_any(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 16), 0);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port = ntohs(sa.sin_port);
    return fd;
}

static int dial(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {5, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* The proxy's connection to the test's site. */
static int site_accept(void)
{
    struct pollfd p = {.fd = site_fd, .events = POLLIN};
    struct timeval tv = {5, 0};
    int fd;
    assert_int_equal(poll(&p, 1, 5000), 1);
    fd = accept(site_fd, NULL, NULL);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Whether the site has no connection waiting within ms. */
static int site_quiet(int ms)
{
    struct pollfd p = {.fd = site_fd, .events = POLLIN};
    return poll(&p, 1, ms) == 0;
}

static void send_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void sends(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/* Reads exactly len bytes. */
static void recv_exact(int fd, char *out, size_t len)
{
    while (len) {
        ssize_t n = recv(fd, out, len, 0);
        if (n <= 0) fail_msg("recv: %s", n == 0 ? "EOF" : strerror(errno));
        out += n;
        len -= (size_t)n;
    }
}

static void expect(int fd, const char *s)
{
    size_t len = strlen(s);
    char *got = malloc(len + 1);
    assert_non_null(got);
    recv_exact(fd, got, len);
    got[len] = '\0';
    assert_string_equal(got, s);
    free(got);
}

enum ending { ENDED_FIN, ENDED_RESET, ENDED_TIMEOUT, ENDED_DATA };

/* How the connection ends, with no more bytes on it (ENDED_DATA when bytes came instead). */
static enum ending ending_of(int fd, int ms)
{
    char c;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    ssize_t n;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    n = recv(fd, &c, 1, 0);
    tv = (struct timeval){5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (n == 0) return ENDED_FIN;
    if (n > 0) return ENDED_DATA;
    if (errno == ECONNRESET) return ENDED_RESET;
    return ENDED_TIMEOUT;
}

static void reset_close(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static int group_setup(void **state)
{
    static int down_port;
    int fd;
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    site_fd = listen_any(&site_port);
    fd = listen_any(&down_port);
    close(fd); /* nothing listens there now */
    sem_init(&srv.ready, 0, 0);
    assert_int_equal(pthread_create(&srv.thread, NULL, server_main, &down_port), 0);
    sem_wait(&srv.ready);
    assert_true(srv.port > 0 && srv.down_port > 0 && srv.prefix_port > 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    uv_async_send(&srv.stop);
    pthread_join(srv.thread, NULL);
    close(site_fd);
    assert_int_equal(srv.live_chunks, 0);
    assert_int_equal(srv.st.claimed, 2);
    assert_int_equal(srv.st.active, 0);
    assert_true(srv.st.requests >= 10);
    return 0;
}

/* ---- the proxy ---- */

static char big_byte(size_t i)
{
    return (char)((i * 131 + i / 4099) & 0xff);
}

typedef struct sender {
    int fd;
    const char *p;
    size_t len;
} sender_t;

static void *send_main(void *arg)
{
    sender_t *s = arg;
    send_all(s->fd, s->p, s->len);
    return NULL;
}

static void large_bodies_both_ways_untouched(void **state)
{
    char *big = malloc(BIG_SIZE), *got = malloc(BIG_SIZE);
    char head[128];
    pthread_t t;
    sender_t s;
    int v, o;
    (void)state;
    assert_non_null(big);
    assert_non_null(got);
    for (size_t i = 0; i < BIG_SIZE; i++)
        big[i] = big_byte(i);
    v = dial(srv.port);
    snprintf(head, sizeof head, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
             BIG_SIZE);
    sends(v, head);
    o = site_accept();
    s = (sender_t){v, big, BIG_SIZE};
    pthread_create(&t, NULL, send_main, &s);
    expect(o, head);
    recv_exact(o, got, BIG_SIZE);
    pthread_join(t, NULL);
    assert_memory_equal(got, big, BIG_SIZE);
    /* And a large answer back, then the next request on the same connection. */
    snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_SIZE);
    sends(o, head);
    s = (sender_t){o, big, BIG_SIZE};
    pthread_create(&t, NULL, send_main, &s);
    expect(v, head);
    memset(got, 0, BIG_SIZE);
    recv_exact(v, got, BIG_SIZE);
    pthread_join(t, NULL);
    assert_memory_equal(got, big, BIG_SIZE);
    sends(v, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(o, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    /* Connection: close from the site: its FIN reaches the visitor. */
    sends(o, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    shutdown(o, SHUT_WR);
    expect(v, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    assert_int_equal(ending_of(v, 2000), ENDED_FIN);
    close(v);
    assert_int_equal(ending_of(o, 2000), ENDED_FIN);
    close(o);
    free(big);
    free(got);
}

static void pipelined_chunked_and_slow(void **state)
{
    int v = dial(srv.port), o;
    (void)state;
    /* Pipelined, cut at odd places, with pauses: the site gets the very same bytes. */
    size_t len = sizeof pipeline - 1, cuts[] = {3, 40, 41, 90, 130, 160, len};
    size_t off = 0;
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        send_all(v, pipeline + off, cuts[i] - off);
        off = cuts[i];
        usleep(20000);
    }
    o = site_accept();
    expect(o, pipeline);
    sends(o, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n2\r\n0\r\n\r\n"
             "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n3");
    expect(v, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n2\r\n0\r\n\r\n"
              "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n3");
    /* The visitor's half-close reaches the site, and the site's answer still comes back. */
    shutdown(v, SHUT_WR);
    assert_int_equal(ending_of(o, 2000), ENDED_FIN);
    sends(o, "late");
    close(o);
    expect(v, "late");
    assert_int_equal(ending_of(v, 2000), ENDED_FIN);
    close(v);
}

static void raw_bytes_pass_both_ways(void **state)
{
    static const char garbage[] = "\x00\xff\x16\x03 not http at all\r\n\r\n\x01\x02";
    int v = dial(srv.port), o;
    char got[sizeof garbage];
    (void)state;
    send_all(v, garbage, sizeof garbage);
    o = site_accept();
    recv_exact(o, got, sizeof garbage);
    assert_memory_equal(got, garbage, sizeof garbage);
    sends(v, "GET / HTTP/1.1\r\n\r\n"); /* once raw, raw to the end */
    expect(o, "GET / HTTP/1.1\r\n\r\n");
    send_all(o, garbage, sizeof garbage);
    recv_exact(v, got, sizeof garbage);
    assert_memory_equal(got, garbage, sizeof garbage);
    shutdown(o, SHUT_WR);
    assert_int_equal(ending_of(v, 2000), ENDED_FIN);
    sends(v, "after the site's FIN");
    expect(o, "after the site's FIN");
    close(v);
    assert_int_equal(ending_of(o, 2000), ENDED_FIN);
    close(o);
}

static void resets_end_as_a_forwarder_ends_them(void **state)
{
    int v = dial(srv.port), o;
    (void)state;
    /* The site answers and resets: the answer arrives, then a FIN. */
    sends(v, "GET / HTTP/1.1\r\n\r\n");
    o = site_accept();
    expect(o, "GET / HTTP/1.1\r\n\r\n");
    sends(o, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    reset_close(o);
    expect(v, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(ending_of(v, 2000), ENDED_FIN);
    close(v);

    /* The site answers before the body and resets; the body still comes: the answer arrives,
     * then a FIN, whether the proxy sees the reset on writing or on reading. */
    v = dial(srv.port);
    sends(v, "POST / HTTP/1.1\r\nContent-Length: 200000\r\n\r\n");
    o = site_accept();
    expect(o, "POST / HTTP/1.1\r\nContent-Length: 200000\r\n\r\n");
    sends(o, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
    reset_close(o);
    {
        char *body = calloc(1, 200000);
        assert_non_null(body);
        send_all(v, body, 200000);
        free(body);
    }
    expect(v, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(ending_of(v, 2000), ENDED_FIN);
    close(v);

    v = dial(srv.port);
    sends(v, "GET / HTTP/1.1\r\n\r\n");
    o = site_accept();
    expect(o, "GET / HTTP/1.1\r\n\r\n");
    reset_close(v);
    assert_int_equal(ending_of(o, 2000), ENDED_FIN);
    close(o);
}

static void site_down_closes_like_a_forwarder(void **state)
{
    int v = dial(srv.down_port);
    (void)state;
    sends(v, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    /* Bytes the visitor sent were never read by the site: reset, as a forwarder's close gives. */
    assert_int_equal(ending_of(v, 3000), ENDED_RESET);
    close(v);
}

static void slow_head_goes_on_raw(void **state)
{
    int v = dial(srv.port), o;
    (void)state;
    sends(v, "GET /slow HTTP/1.1\r\nHost: x\r\n");
    o = site_accept();
    /* Kept back until the head wait runs out, then passed on as it is. */
    expect(o, "GET /slow HTTP/1.1\r\nHost: x\r\n");
    sends(v, "\r\n");
    expect(o, "\r\n");
    close(v);
    assert_int_equal(ending_of(o, 2000), ENDED_FIN);
    close(o);

    /* A head cut short by the visitor's FIN reaches the site at once. */
    v = dial(srv.port);
    sends(v, "GET /cut HTTP/1.1\r\nHo");
    shutdown(v, SHUT_WR);
    o = site_accept();
    expect(o, "GET /cut HTTP/1.1\r\nHo");
    assert_int_equal(ending_of(o, 2000), ENDED_FIN);
    close(o);
    assert_int_equal(ending_of(v, 2000), ENDED_FIN);
    close(v);
}

static void prefix_goes_in_front_of_paths(void **state)
{
    int v = dial(srv.prefix_port), o;
    (void)state;
    sends(v, "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET http://x/abs HTTP/1.1\r\nHost: x\r\n\r\n");
    o = site_accept();
    expect(o, "GET /pre/a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
              "GET http://x/abs HTTP/1.1\r\nHost: x\r\n\r\n");
    close(v);
    close(o);
}

static void claimed_request_waits_for_the_site(void **state)
{
    static const char ours[] =
        "POST /carrier HTTP/1.1\r\n" OURS_HEADER "Content-Length: 3\r\n\r\nabc";
    char expect_taken[256];
    int v = dial(srv.port), o;
    (void)state;
    /* A HEAD and a GET for the site, then a request a carrier claims, on one connection. */
    sends(v, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\n");
    sends(v, ours);
    o = site_accept();
    expect(o, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\n");
    /* The site's answers pass; the claimed request waits until the last of them is complete. */
    sends(o, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n");
    sends(o, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab");
    expect(v, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
              "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab");
    assert_int_equal(ending_of(v, 200), ENDED_TIMEOUT);
    sends(o, "cd");
    expect(v, "cd");
    snprintf(expect_taken, sizeof expect_taken,
             "HTTP/1.1 200 OK\r\nX-Taken: %zu\r\nContent-Length: %zu\r\n\r\n%s", strlen(ours),
             strlen(ours), ours);
    expect(v, expect_taken);
    assert_int_equal(ending_of(v, 2000), ENDED_FIN);
    /* The site never saw the claimed request: its connection just ended. */
    assert_int_equal(ending_of(o, 2000), ENDED_FIN);
    close(o);
    close(v);

    /* Claimed as the first request: the site's connection ends unused. */
    v = dial(srv.port);
    sends(v, ours);
    o = site_accept();
    expect(v, expect_taken);
    assert_int_equal(ending_of(o, 2000), ENDED_FIN);
    close(o);
    close(v);
}

static void claim_falls_back_when_the_site_cannot_be_followed(void **state)
{
    static const char ours[] = "GET /carrier HTTP/1.1\r\n" OURS_HEADER "\r\n";
    int v = dial(srv.port), o;
    (void)state;
    sends(v, "GET /g HTTP/1.1\r\nHost: x\r\n\r\n");
    o = site_accept();
    expect(o, "GET /g HTTP/1.1\r\nHost: x\r\n\r\n");
    sends(v, ours);
    usleep(50000);
    sends(o, "not an HTTP response\r\n\r\n");
    /* The claimed request is the site's after all. */
    expect(o, ours);
    expect(v, "not an HTTP response\r\n\r\n");
    close(v);
    close(o);
    assert_true(site_quiet(50));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(framer_finds_every_boundary),
        cmocka_unit_test(framer_gives_up_rather_than_guess),
        cmocka_unit_test(framer_head_too_long_is_raw),
        cmocka_unit_test(parse_url),
        cmocka_unit_test(large_bodies_both_ways_untouched),
        cmocka_unit_test(pipelined_chunked_and_slow),
        cmocka_unit_test(raw_bytes_pass_both_ways),
        cmocka_unit_test(resets_end_as_a_forwarder_ends_them),
        cmocka_unit_test(site_down_closes_like_a_forwarder),
        cmocka_unit_test(slow_head_goes_on_raw),
        cmocka_unit_test(prefix_goes_in_front_of_paths),
        cmocka_unit_test(claimed_request_waits_for_the_site),
        cmocka_unit_test(claim_falls_back_when_the_site_cannot_be_followed),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
