/* wr_dynamic (the -D proxy) on a real loop over loopback:
 *   test client ──TCP──> [wr_dynamic] ──stream──> session pair ──> "relay" side
 * The relay side is the test, on a real session (keyed, over TCP): it accepts targets named
 * echo.test (and echoes), refuses those named refused.test with the reason a relay gives, and
 * leaves silent.test unanswered. The client is plain libuv code that sends proxy requests and
 * collects what comes back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "wr_dynamic.h"
#include "wr_io.h"
#include "wr_session.h"
#include "wr_tcp_endpoint.h"
#include "loop_fixture.h"

/* ---- the relay side: a session pair over loopback TCP ---- */

typedef struct relay_side {
    wr_listener_t *lis;
    wr_session_server_t *shared;
    uint8_t key[32];
    wr_session_t *client, *server;
    int client_ready, server_ready, client_closed, server_closed;
    wr_stream_t *silent; /* a stream left unanswered */
    uint64_t echoed;
    char last_target[128];
} relay_side;

static relay_side rs;

static void echo_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    rs.echoed += len;
    assert_int_equal(wr_endpoint_write(ep, b, base, len), 0);
}

static void echo_eof(wr_endpoint_t *ep)
{
    wr_endpoint_shutdown(ep);
}

static void echo_error(wr_endpoint_t *ep, int err)
{
    wr_endpoint_close(ep, WR_CLOSE_RESET);
}

static void echo_shutdown(wr_endpoint_t *ep, int status)
{
    wr_endpoint_close(ep, WR_CLOSE_GRACEFUL);
}

static void echo_closed(wr_endpoint_t *ep) {}

static const wr_endpoint_cbs_t echo_cbs = {
    .on_read = echo_read,
    .on_eof = echo_eof,
    .on_error = echo_error,
    .on_shutdown = echo_shutdown,
    .on_closed = echo_closed,
};

static int target_is(const uint8_t *target, size_t len, const char *host)
{
    size_t n = strlen(host);
    return len > n && memcmp(target, host, n) == 0 && target[n] == ':';
}

static void server_stream_open(wr_session_t *s, wr_stream_t *st, const uint8_t *target, size_t len)
{
    snprintf(rs.last_target, sizeof rs.last_target, "%.*s", (int)len, (const char *)target);
    if (target_is(target, len, "echo.test")) {
        wr_endpoint_t *ep = wr_stream_endpoint(st);
        assert_int_equal(wr_stream_accept(st), 0);
        wr_endpoint_set_callbacks(ep, &echo_cbs, NULL);
        assert_int_equal(wr_endpoint_read_start(ep), 0);
    } else if (target_is(target, len, "refused.test")) {
        wr_stream_reject(st, "refused: connection refused");
    } else {
        rs.silent = st; /* answered by nobody; the session's end takes it */
    }
}

static void side_closed(wr_session_t *s, int reason, const char *detail)
{
    if (s == rs.client) rs.client_closed = 1;
    if (s == rs.server) rs.server_closed = 1;
}

static void client_stream_open(wr_session_t *s, wr_stream_t *st, const uint8_t *target, size_t len)
{
    wr_stream_reject(st, "no");
}

static void side_ready(wr_session_t *s)
{
    if (s == rs.client) rs.client_ready = 1;
    if (s == rs.server) rs.server_ready = 1;
}

static const wr_session_cbs server_cbs = {
    .on_ready = side_ready,
    .on_stream_open = server_stream_open,
    .on_closed = side_closed,
};

static const wr_session_cbs client_cbs = {
    .on_ready = side_ready,
    .on_stream_open = client_stream_open,
    .on_closed = side_closed,
};

static void relay_accepted(wr_listener_t *l, int status)
{
    wr_session_config cfg = {.is_server = 1, .hs_server = rs.shared};
    uv_tcp_t *tcp;
    assert_int_equal(status, 0);
    assert_int_equal(wr_listener_accept(l, &tcp), 0);
    rs.server = wr_session_new(&loop, wr_tcp_endpoint_new(tcp), &cfg, &server_cbs, NULL);
    assert_non_null(rs.server);
    wr_listener_close(l);
    rs.lis = NULL;
}

static void relay_dialled(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    wr_session_config cfg = {.psk = rs.key};
    assert_int_equal(status, 0);
    rs.client = wr_session_new(&loop, wr_tcp_endpoint_new(tcp), &cfg, &client_cbs, NULL);
    assert_non_null(rs.client);
}

static int relay_up(void *arg)
{
    return rs.client_ready && rs.server_ready;
}

static void relay_start(void)
{
    wr_dial_t *d;
    memset(&rs, 0, sizeof rs);
    for (int i = 0; i < 32; i++)
        rs.key[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(wr_session_server_new(rs.key, 0, &rs.shared), 0);
    assert_int_equal(wr_listen(&loop, "127.0.0.1", 0, 0, relay_accepted, NULL, &rs.lis), 0);
    assert_int_equal(wr_dial(&loop, "127.0.0.1", (uint16_t)wr_listener_port(rs.lis), 5000,
                             relay_dialled, NULL, &d),
                     0);
    run_until(relay_up, NULL, 5000);
}

static int relay_down(void *arg)
{
    return rs.client_closed && rs.server_closed;
}

static void relay_stop(void)
{
    if (!rs.client_closed) wr_session_close(rs.client);
    if (!rs.server_closed) wr_session_close(rs.server);
    run_until(relay_down, NULL, 5000);
    for (int i = 0; i < 20; i++) /* the last close callbacks */
        uv_run(&loop, UV_RUN_NOWAIT);
    wr_session_server_free(rs.shared);
}

/* ---- the proxy under test ---- */

typedef struct proxy {
    wr_dynamic_t *d;
    int closes, freed;
    char target[128], peer[64];
    uint64_t up, down;
    enum wr_relay_reason reason;
} proxy;

static proxy px;

static wr_session_t *px_session(wr_dynamic_t *d)
{
    return rs.client;
}

static void px_on_close(wr_dynamic_t *d, const wr_dynamic_close_info *info)
{
    assert_ptr_equal(wr_dynamic_data(d), &px);
    px.closes++;
    snprintf(px.target, sizeof px.target, "%s", info->target);
    snprintf(px.peer, sizeof px.peer, "%s", info->peer ? info->peer : "");
    px.up = info->bytes_up;
    px.down = info->bytes_down;
    px.reason = info->res->reason;
}

static void px_freed(wr_dynamic_t *d)
{
    px.freed++;
}

static const wr_dynamic_cbs px_cbs = {
    .session = px_session,
    .on_close = px_on_close,
    .on_freed = px_freed,
};

static void px_start(uint64_t request_timeout_ms)
{
    wr_dynamic_config cfg = {.host = "127.0.0.1", .request_timeout_ms = request_timeout_ms};
    memset(&px, 0, sizeof px);
    assert_int_equal(wr_dynamic_new(&loop, &cfg, &px_cbs, &px, &px.d), 0);
    assert_true(wr_dynamic_port(px.d) > 0);
}

static void px_stop(void)
{
    wr_dynamic_release(px.d);
    uv_run(&loop, UV_RUN_NOWAIT); /* the timer's close */
    assert_int_equal(px.freed, 1);
}

/* ---- the client: plain libuv ---- */

typedef struct client {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_shutdown_t sreq;
    int connected, eof, closed, err;
    char got[4096];
    size_t n;
    uint64_t eof_at;
} client;

static void cl_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    client *c = h->data;
    buf->base = c->got + c->n;
    buf->len = sizeof c->got - c->n;
}

static void cl_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client *c = s->data;
    if (n > 0) c->n += (size_t)n;
    if (n < 0) {
        if (n != UV_EOF) c->err = (int)n;
        c->eof = 1;
        c->eof_at = uv_now(&loop);
        uv_read_stop(s);
    }
}

static void cl_connected(uv_connect_t *req, int status)
{
    client *c = req->data;
    assert_int_equal(status, 0);
    c->connected = 1;
    assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, cl_alloc, cl_read), 0);
}

static int cl_is_connected(void *arg)
{
    return ((client *)arg)->connected;
}

static void cl_connect(client *c, int port)
{
    struct sockaddr_in sin;
    memset(c, 0, sizeof *c);
    uv_ip4_addr("127.0.0.1", port, &sin);
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    assert_int_equal(uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&sin, cl_connected), 0);
    run_until(cl_is_connected, c, 5000);
}

static void cl_written(uv_write_t *w, int status)
{
    free(w);
}

static void cl_send(client *c, const void *bytes, size_t len)
{
    uv_write_t *w = malloc(sizeof *w + len);
    uv_buf_t buf = uv_buf_init((char *)(w + 1), (unsigned)len);
    memcpy(w + 1, bytes, len);
    assert_int_equal(uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, cl_written), 0);
}

static void cl_shutdown(client *c)
{
    assert_int_equal(uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, NULL), 0);
}

typedef struct want {
    client *c;
    size_t n;
} want;

static int cl_has(void *arg)
{
    want *w = arg;
    return w->c->n >= w->n || w->c->eof;
}

static void cl_wait_bytes(client *c, size_t n)
{
    want w = {c, n};
    run_until(cl_has, &w, 5000);
    assert_true(c->n >= n);
}

static int cl_has_eof(void *arg)
{
    return ((client *)arg)->eof;
}

static void cl_closed(uv_handle_t *h)
{
    ((client *)h->data)->closed = 1;
}

static int cl_is_closed(void *arg)
{
    return ((client *)arg)->closed;
}

static void cl_close(client *c)
{
    uv_close((uv_handle_t *)&c->tcp, cl_closed);
    run_until(cl_is_closed, c, 5000);
}

static int one_close(void *arg)
{
    return px.closes == 1;
}

static int none_active(void *arg)
{
    wr_dynamic_stats st;
    wr_dynamic_get_stats(px.d, &st);
    return st.active == 0;
}

/* SOCKS5 greeting (no auth) followed at once by CONNECT host:80 by name. */
static size_t socks5_connect(uint8_t *out, const char *host)
{
    size_t hl = strlen(host), n = 0;
    memcpy(out, "\x05\x01\x00\x05\x01\x00\x03", 7);
    n = 7;
    out[n++] = (uint8_t)hl;
    memcpy(out + n, host, hl);
    n += hl;
    out[n++] = 0;
    out[n++] = 80;
    return n;
}

/* ---- tests ---- */

static int setup(void **state)
{
    loop_setup();
    relay_start();
    return 0;
}

static int teardown(void **state)
{
    relay_stop();
    return loop_teardown();
}

static void socks5_connect_relays(void **state)
{
    client c;
    uint8_t req[64];
    wr_dynamic_stats st;
    px_start(5000);
    cl_connect(&c, wr_dynamic_port(px.d));
    cl_send(&c, req, socks5_connect(req, "echo.test"));
    cl_wait_bytes(&c, 2 + 10);
    assert_memory_equal(c.got, "\x05\x00", 2);             /* no auth */
    assert_memory_equal(c.got + 2, "\x05\x00\x00\x01", 4); /* succeeded */
    assert_string_equal(rs.last_target, "echo.test:80");
    cl_send(&c, "hello, target", 13);
    cl_wait_bytes(&c, 12 + 13);
    assert_memory_equal(c.got + 12, "hello, target", 13);
    cl_shutdown(&c);
    run_until(cl_has_eof, &c, 5000);
    run_until(one_close, NULL, 5000);
    /* the target's bytes only: not the request nor our replies */
    assert_string_equal(px.target, "echo.test:80");
    assert_int_equal(px.up, 13);
    assert_int_equal(px.down, 13);
    assert_int_equal(px.reason, WR_RELAY_EOF);
    assert_memory_equal(px.peer, "127.0.0.1:", 10);
    wr_dynamic_get_stats(px.d, &st);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.failed_opens, 0);
    assert_int_equal(st.bytes_up, 13);
    assert_int_equal(st.bytes_down, 13);
    cl_close(&c);
    px_stop();
}

static void socks5_refused_by_the_relay(void **state)
{
    client c;
    uint8_t req[64];
    wr_dynamic_stats st;
    px_start(5000);
    cl_connect(&c, wr_dynamic_port(px.d));
    cl_send(&c, req, socks5_connect(req, "refused.test"));
    run_until(cl_has_eof, &c, 5000); /* reply, then our half-close */
    assert_int_equal(c.n, 2 + 10);
    assert_memory_equal(c.got + 2, "\x05\x05", 2); /* connection refused */
    wr_dynamic_get_stats(px.d, &st);
    assert_int_equal(st.failed_opens, 1);
    assert_int_equal(st.active, 1); /* lingering until the client goes */
    cl_close(&c);
    run_until(none_active, NULL, 5000);
    wr_dynamic_get_stats(px.d, &st);
    assert_int_equal(st.active, 0);
    assert_int_equal(px.closes, 0); /* never relayed: no close report */
    px_stop();
}

static void request_deadline(void **state)
{
    client c;
    wr_dynamic_stats st;
    uint64_t t0;
    px_start(200);
    cl_connect(&c, wr_dynamic_port(px.d));
    t0 = uv_now(&loop);
    cl_send(&c, "\x05", 1); /* a greeting that never completes */
    run_until(cl_has_eof, &c, 5000);
    assert_int_equal(c.n, 0);
    assert_true(c.eof_at - t0 >= 150);
    assert_true(c.eof_at - t0 < 2000);
    wr_dynamic_get_stats(px.d, &st);
    assert_int_equal(st.bad_requests, 1);
    cl_close(&c);
    px_stop();
}

static void open_deadline(void **state)
{
    client c;
    uint8_t req[64];
    wr_dynamic_stats st;
    px_start(200);
    cl_connect(&c, wr_dynamic_port(px.d));
    cl_send(&c, req, socks5_connect(req, "silent.test"));
    run_until(cl_has_eof, &c, 5000);
    assert_non_null(rs.silent);
    assert_int_equal(c.n, 2 + 10);
    assert_memory_equal(c.got + 2, "\x05\x06", 2); /* TTL expired: no answer in time */
    wr_dynamic_get_stats(px.d, &st);
    assert_int_equal(st.failed_opens, 1);
    wr_endpoint_close(wr_stream_endpoint(rs.silent), WR_CLOSE_RESET); /* an owner's last duty */
    cl_close(&c);
    px_stop();
}

static void http_connect_relays(void **state)
{
    static const char req[] = "CONNECT echo.test:80 HTTP/1.1\r\nHost: echo.test:80\r\n\r\n";
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    client c;
    px_start(5000);
    cl_connect(&c, wr_dynamic_port(px.d));
    cl_send(&c, req, sizeof req - 1);
    cl_wait_bytes(&c, sizeof ok - 1);
    assert_memory_equal(c.got, ok, sizeof ok - 1);
    cl_send(&c, "ping", 4);
    cl_wait_bytes(&c, sizeof ok - 1 + 4);
    assert_memory_equal(c.got + sizeof ok - 1, "ping", 4);
    cl_shutdown(&c);
    run_until(one_close, NULL, 5000);
    assert_string_equal(px.target, "echo.test:80");
    assert_int_equal(px.up, 4);
    assert_int_equal(px.down, 4);
    cl_close(&c);
    px_stop();
}

/* A plain HTTP request: the origin sees its head and body, never what the client pipelined. */
static void http_request_body_only(void **state)
{
    static const char req[] = "POST http://echo.test/ HTTP/1.1\r\nHost: echo.test\r\n"
                              "Content-Length: 4\r\n\r\nbody";
    static const char pipelined[] = "GET http://echo.test/secret HTTP/1.1\r\n\r\n";
    client c;
    px_start(5000);
    cl_connect(&c, wr_dynamic_port(px.d));
    cl_send(&c, req, sizeof req - 1 - 2); /* the body's end comes with the next request */
    cl_wait_bytes(&c, 1);
    cl_send(&c, "dy", 2);
    cl_send(&c, pipelined, sizeof pipelined - 1);
    cl_shutdown(&c);
    run_until(one_close, NULL, 5000);
    run_until(cl_has_eof, &c, 5000);
    c.got[c.n] = 0;
    assert_non_null(strstr(c.got, "POST / HTTP/1.1\r\n"));
    assert_true(c.n >= 4 && memcmp(c.got + c.n - 4, "body", 4) == 0);
    assert_null(strstr(c.got, "secret"));
    assert_int_equal(px.up, rs.echoed);
    cl_close(&c);
    px_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(socks5_connect_relays, setup, teardown),
        cmocka_unit_test_setup_teardown(socks5_refused_by_the_relay, setup, teardown),
        cmocka_unit_test_setup_teardown(request_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(open_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(http_connect_relays, setup, teardown),
        cmocka_unit_test_setup_teardown(http_request_body_only, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
