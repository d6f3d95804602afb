/* The TLS carrier (wr_tls_endpoint) over real loopback TCP: client and server endpoints, and
 * openssl s_server / s_client as independent peers. Certificates: a test CA and a "localhost"
 * certificate made with the openssl command, and self-signed ones made by the API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <mbedtls/sha256.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wr_io.h"
#include "wr_tls_cert.h"
#include "wr_tls_endpoint.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

/* The newest version the backend speaks: OpenSSL's libssl has TLS 1.3, mbedTLS 2.28 1.2 only. */
#ifdef WR_HAVE_LIBSSL
#define TLS_NEWEST "TLSv1.3"
#else
#define TLS_NEWEST "TLSv1.2"
#endif

static void test_pin_parse(void **state)
{
    uint8_t d[WR_TLS_FP_DIGEST_LEN], e[WR_TLS_FP_DIGEST_LEN];
    char text[WR_TLS_FP_TEXT_LEN], colons[8 + 3 * WR_TLS_FP_DIGEST_LEN];
    const char *why;
    for (size_t i = 0; i < sizeof(d); i++)
        d[i] = (uint8_t)(i * 37 + 5);
    wr_tls_fp_format(d, text);
    assert_int_equal(strlen(text), 71);
    assert_memory_equal(text, "sha256:052a4f", 13);
    assert_int_equal(wr_tls_pin_parse(text, e, &why), 0);
    assert_memory_equal(d, e, sizeof(d));
    /* openssl's form: upper case with colons, and an upper-case prefix. */
    size_t n = (size_t)snprintf(colons, sizeof(colons), "SHA256:");
    for (size_t i = 0; i < sizeof(d); i++)
        n += (size_t)snprintf(colons + n, sizeof(colons) - n, i ? ":%02X" : "%02X", d[i]);
    memset(e, 0, sizeof(e));
    assert_int_equal(wr_tls_pin_parse(colons, e, &why), 0);
    assert_memory_equal(d, e, sizeof(d));

    const char *bad[] = {
        NULL, "", "sha256:", "sha1:00", "052a4f", "sha256:052a4f", "sha256:052A4F:", /* cut short */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(wr_tls_pin_parse(bad[i], e, &why), -1);
        assert_non_null(why);
    }
    char buf[sizeof(colons) + 4];
    snprintf(buf, sizeof(buf), "%s00", text); /* too long */
    assert_int_equal(wr_tls_pin_parse(buf, e, &why), -1);
    snprintf(buf, sizeof(buf), "%s", text);
    buf[40] = 'g'; /* not hex */
    assert_int_equal(wr_tls_pin_parse(buf, e, &why), -1);
    snprintf(buf, sizeof(buf), "%s", colons);
    memmove(buf + 9, buf + 10, strlen(buf + 10) + 1); /* one colon missing: mixed forms */
    assert_int_equal(wr_tls_pin_parse(buf, e, &why), -1);
    snprintf(buf, sizeof(buf), "%s", text);
    buf[70] = '\0'; /* odd number of digits */
    assert_int_equal(wr_tls_pin_parse(buf, e, &why), -1);
}

#include "loop_fixture.h"

/* ---- certificates, made once for the whole file ---- */

static char dir[64];
static char ca_pem[128], srv_pem[128], srv_key[128], self_pem[128];

static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) fail_msg("command failed: %s", cmd);
}

static int group_setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/warren-tls-XXXXXX");
    if (mkdtemp(dir) == NULL) return -1;
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
    snprintf(srv_pem, sizeof(srv_pem), "%s/srv.pem", dir);
    snprintf(srv_key, sizeof(srv_key), "%s/srv.key", dir);
    snprintf(self_pem, sizeof(self_pem), "%s/self.pem", dir);
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    sh("cd %s && openssl req -x509 %s -keyout ca.key -out ca.pem -subj '/CN=warren test CA' "
       "-days 2 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign "
       "2>/dev/null",
       dir, ec);
    sh("cd %s && openssl req -new %s -keyout srv.key -out srv.csr -subj /CN=localhost "
       "-addext subjectAltName=DNS:localhost 2>/dev/null && openssl x509 -req -in srv.csr "
       "-CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -copy_extensions copy "
       "2>/dev/null",
       dir, ec);
    char *err = NULL;
    wr_tls_server_opts o = {.self_signed_file = self_pem};
    wr_tls_ctx_t *c = wr_tls_ctx_new_server(&o, &err);
    if (c == NULL) fail_msg("self-signed certificate: %s", err);
    wr_tls_ctx_free(c);
    return 0;
}

static int group_teardown(void **state)
{
    sh("rm -rf %s", dir);
    return 0;
}

static int setup(void **state)
{
    return loop_setup();
}

static int teardown(void **state)
{
    return loop_teardown();
}

static wr_tls_ctx_t *server_ctx(const char *alpn)
{
    char *err = NULL;
    wr_tls_server_opts o = {.self_signed_file = self_pem, .alpn = alpn};
    wr_tls_ctx_t *c = wr_tls_ctx_new_server(&o, &err);
    if (c == NULL) fail_msg("server context: %s", err);
    return c;
}

static wr_tls_ctx_t *ca_server_ctx(void)
{
    char *err = NULL;
    wr_tls_server_opts o = {.cert_file = srv_pem, .key_file = srv_key, .alpn = "http/1.1"};
    wr_tls_ctx_t *c = wr_tls_ctx_new_server(&o, &err);
    if (c == NULL) fail_msg("server context: %s", err);
    return c;
}

static wr_tls_ctx_t *client_ctx(const wr_tls_client_opts *o)
{
    char *err = NULL;
    wr_tls_ctx_t *c = wr_tls_ctx_new_client(o, &err);
    if (c == NULL) fail_msg("client context: %s", err);
    return c;
}

static wr_tls_ctx_t *pinned_client(wr_tls_ctx_t *server)
{
    wr_tls_client_opts o = {.pin = wr_tls_ctx_fingerprint(server)};
    return client_ctx(&o);
}

/* ---- a connected loopback TCP pair ---- */

typedef struct pair {
    uv_tcp_t *acc, *dialed;
    int accepted, dialed_done;
} pair_t;

static void pair_conn(wr_listener_t *l, int status)
{
    pair_t *p = wr_listener_data(l);
    assert_int_equal(status, 0);
    assert_int_equal(wr_listener_accept(l, &p->acc), 0);
    p->accepted = 1;
}

static void pair_dial(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    pair_t *p = data;
    assert_int_equal(status, 0);
    p->dialed = tcp;
    p->dialed_done = 1;
}

static int pair_done(void *arg)
{
    pair_t *p = arg;
    return p->accepted && p->dialed_done;
}

static void tcp_pair(wr_endpoint_t **server, wr_endpoint_t **client)
{
    pair_t p = {0};
    wr_listener_t *l;
    wr_dial_t *d;
    assert_int_equal(wr_listen(&loop, "127.0.0.1", 0, 0, pair_conn, &p, &l), 0);
    assert_int_equal(
        wr_dial(&loop, "127.0.0.1", (uint16_t)wr_listener_port(l), 5000, pair_dial, &p, &d), 0);
    run_until(pair_done, &p, 5000);
    wr_listener_close(l);
    *server = wr_tcp_endpoint_new(p.acc);
    *client = wr_tcp_endpoint_new(p.dialed);
}

/* ---- a test peer: sends seeded bytes, hashes what it receives ---- */

typedef struct peer {
    wr_endpoint_t *ep;
    int hs, hs_status;
    char hs_err[512];
    int no_auto_read; /* do not start reading at the handshake */
    int echo;         /* write back what arrives, prefixed with "pong " once */
    int pause_reads;  /* read_stop after every delivery; the test resumes */
    int paused, pauses;
    /* received */
    mbedtls_sha256_context rx_sha;
    uint64_t rx;
    char head[4096];
    size_t head_len;
    int eof, error, closed, shut, shut_status, drains;
    /* to send */
    uint64_t seed, to_send, sent;
    mbedtls_sha256_context tx_sha;
    int shut_when_sent, shut_called;
    size_t max_queued;
} peer_t;

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void peer_init(peer_t *p)
{
    memset(p, 0, sizeof(*p));
    mbedtls_sha256_init(&p->rx_sha);
    mbedtls_sha256_starts_ret(&p->rx_sha, 0);
    mbedtls_sha256_init(&p->tx_sha);
    mbedtls_sha256_starts_ret(&p->tx_sha, 0);
}

static void peer_send(peer_t *p)
{
    wr_endpoint_t *ep = p->ep;
    while (p->sent < p->to_send && !wr_endpoint_over_high_water(ep) &&
           !wr_endpoint_is_closing(ep)) {
        wr_buf_t *b = wr_buf_get();
        size_t n = p->to_send - p->sent < b->size ? (size_t)(p->to_send - p->sent) : b->size;
        for (size_t i = 0; i < n; i += 8) {
            uint64_t w = splitmix(p->seed + p->sent + i);
            memcpy(b->data + i, &w, n - i < 8 ? n - i : 8);
        }
        mbedtls_sha256_update_ret(&p->tx_sha, (const unsigned char *)b->data, n);
        assert_int_equal(wr_endpoint_write(ep, b, b->data, n), 0);
        wr_buf_release(b);
        p->sent += n;
        if (ep->queued > p->max_queued) p->max_queued = ep->queued;
    }
    if (p->sent == p->to_send && p->shut_when_sent && !p->shut_called) {
        p->shut_called = 1;
        assert_int_equal(wr_endpoint_shutdown(ep), 0);
    }
}

static void p_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    peer_t *p = ep->data;
    mbedtls_sha256_update_ret(&p->rx_sha, (const unsigned char *)base, len);
    if (p->echo) {
        if (p->rx == 0) {
            wr_buf_t *h = wr_buf_new(5);
            memcpy(h->data, "pong ", 5);
            assert_int_equal(wr_endpoint_write(ep, h, h->data, 5), 0);
            wr_buf_release(h);
        }
        assert_int_equal(wr_endpoint_write(ep, b, base, len), 0);
    }
    p->rx += len;
    size_t room = sizeof(p->head) - 1 - p->head_len;
    if (room > len) room = len;
    memcpy(p->head + p->head_len, base, room);
    p->head_len += room;
    p->head[p->head_len] = '\0';
    if (p->pause_reads) {
        assert_int_equal(wr_endpoint_read_stop(ep), 0);
        p->paused = 1;
        p->pauses++;
    }
}

static void p_eof(wr_endpoint_t *ep)
{
    peer_t *p = ep->data;
    p->eof++;
}

static void p_error(wr_endpoint_t *ep, int err)
{
    peer_t *p = ep->data;
    const char *why = wr_tls_endpoint_error(ep);
    snprintf(p->hs_err, sizeof(p->hs_err), "%s", why ? why : uv_strerror(err));
    p->error = err;
}

static void p_drain(wr_endpoint_t *ep)
{
    peer_t *p = ep->data;
    p->drains++;
    peer_send(p);
}

static void p_shutdown(wr_endpoint_t *ep, int status)
{
    peer_t *p = ep->data;
    p->shut = 1;
    p->shut_status = status;
}

static void p_closed(wr_endpoint_t *ep)
{
    peer_t *p = ep->data;
    p->closed = 1;
}

static const wr_endpoint_cbs_t peer_cbs = {
    .on_read = p_read,
    .on_eof = p_eof,
    .on_error = p_error,
    .on_drain = p_drain,
    .on_shutdown = p_shutdown,
    .on_closed = p_closed,
};

static void p_handshake(wr_endpoint_t *ep, int status, const char *err, void *data)
{
    peer_t *p = data;
    p->hs = 1;
    p->hs_status = status;
    if (status == 0) {
        assert_null(err);
        if (!p->no_auto_read) assert_int_equal(wr_endpoint_read_start(ep), 0);
        peer_send(p);
    } else {
        assert_non_null(err);
        snprintf(p->hs_err, sizeof(p->hs_err), "%s", err);
    }
}

static void peer_wrap(peer_t *p, uv_loop_t *l, wr_tls_ctx_t *ctx, wr_endpoint_t *inner,
                      const char *host, const char *already, size_t len)
{
    p->ep = wr_tls_endpoint_new(l, ctx, inner, host, already, len, p_handshake, p);
    assert_non_null(p->ep);
    wr_endpoint_set_callbacks(p->ep, &peer_cbs, p);
}

static void tls_pair(peer_t *s, peer_t *c, wr_tls_ctx_t *sctx, wr_tls_ctx_t *cctx, const char *host)
{
    wr_endpoint_t *si, *ci;
    tcp_pair(&si, &ci);
    peer_wrap(s, &loop, sctx, si, NULL, NULL, 0);
    peer_wrap(c, &loop, cctx, ci, host, NULL, 0);
}

static int both_hs(void *arg)
{
    peer_t **pp = arg;
    return pp[0]->hs && pp[1]->hs;
}

static void wait_hs(peer_t *s, peer_t *c)
{
    peer_t *pp[2] = {s, c};
    run_until(both_hs, pp, 10000);
}

static int flag_set(void *flag)
{
    return *(const int *)flag;
}

static int both_closed(void *arg)
{
    peer_t **pp = arg;
    return pp[0]->closed && pp[1]->closed;
}

static void close_both(peer_t *s, peer_t *c)
{
    peer_t *pp[2] = {s, c};
    wr_endpoint_close(s->ep, WR_CLOSE_GRACEFUL);
    wr_endpoint_close(c->ep, WR_CLOSE_GRACEFUL);
    run_until(both_closed, pp, 5000);
}

static void same_hash(peer_t *from, peer_t *to)
{
    unsigned char a[32], b[32];
    assert_int_equal(from->sent, to->rx);
    mbedtls_sha256_finish_ret(&from->tx_sha, a);
    mbedtls_sha256_finish_ret(&to->rx_sha, b);
    assert_memory_equal(a, b, 32);
}

/* ---- bytes, half-close, close_notify ---- */

static int transfer_done(void *arg)
{
    peer_t **pp = arg;
    return pp[0]->eof && pp[1]->eof && pp[0]->shut && pp[1]->shut;
}

static void test_bytes_both_ways(void **state)
{
    wr_tls_ctx_t *sctx = server_ctx("http/1.1"), *cctx = pinned_client(sctx);
    peer_t s, c;
    peer_init(&s);
    peer_init(&c);
    uint64_t n = sanitized() ? 4 * MiB : 16 * MiB;
    s.to_send = n + 12345;
    c.to_send = n + 777;
    s.seed = 1;
    c.seed = 2;
    s.shut_when_sent = c.shut_when_sent = 1;
    wr_tls_ctx_t *extra = wr_tls_ctx_ref(sctx);
    tls_pair(&s, &c, sctx, cctx, "localhost");
    wr_tls_ctx_free(cctx); /* endpoints keep their own references */
    wr_tls_ctx_free(extra);
    wait_hs(&s, &c);
    assert_int_equal(s.hs_status, 0);
    assert_int_equal(c.hs_status, 0);

    wr_tls_info si, ci;
    assert_int_equal(wr_tls_endpoint_info(s.ep, &si), 0);
    assert_int_equal(wr_tls_endpoint_info(c.ep, &ci), 0);
    assert_string_equal(si.version, TLS_NEWEST);
    assert_string_equal(ci.cipher, si.cipher);
    assert_string_equal(si.sni, "localhost");
    assert_string_equal(ci.sni, "localhost");
    assert_string_equal(ci.peer_fingerprint, wr_tls_ctx_fingerprint(sctx));
    assert_string_equal(si.peer_fingerprint, ""); /* no client certificate */
    assert_string_equal(si.alpn, "");             /* the client offered none */

    peer_t *pp[2] = {&s, &c};
    run_until(transfer_done, pp, 60000);
    same_hash(&s, &c);
    same_hash(&c, &s);
    assert_int_equal(s.eof, 1);
    assert_int_equal(c.eof, 1);
    assert_int_equal(s.shut_status, 0);
    assert_int_equal(s.error, 0);
    assert_int_equal(c.error, 0);
    assert_int_equal(c.ep->bytes_written, c.sent);
    assert_int_equal(s.ep->bytes_read, c.sent);
    close_both(&s, &c);
    wr_tls_ctx_free(sctx);
}

static int got_eof(void *arg)
{
    return ((peer_t *)arg)->eof;
}

/* One side finishes and shuts down; the other keeps sending, then finishes too. */
static void half_close(int server_first)
{
    wr_tls_ctx_t *sctx = server_ctx(NULL), *cctx = pinned_client(sctx);
    peer_t s, c;
    peer_init(&s);
    peer_init(&c);
    peer_t *first = server_first ? &s : &c, *second = server_first ? &c : &s;
    first->to_send = 1 * MiB + 3;
    first->shut_when_sent = 1;
    first->seed = 10;
    tls_pair(&s, &c, sctx, cctx, "localhost");
    wait_hs(&s, &c);
    run_until(got_eof, second, 10000);
    run_until(flag_set, &first->shut, 5000);
    same_hash(first, second);
    assert_int_equal(first->eof, 0);

    /* The half-closed side still reads everything the other sends. */
    second->seed = 20;
    second->to_send = 2 * MiB + 1;
    second->shut_when_sent = 1;
    peer_send(second);
    run_until(got_eof, first, 10000);
    same_hash(second, first);
    assert_int_equal(s.error, 0);
    assert_int_equal(c.error, 0);
    close_both(&s, &c);
    wr_tls_ctx_free(sctx);
    wr_tls_ctx_free(cctx);
}

static void test_half_close_client_first(void **state)
{
    half_close(0);
}

static void test_half_close_server_first(void **state)
{
    half_close(1);
}

/* close() right after a write: the bytes and a close_notify still go out, so the peer sees an
 * orderly end, not a truncation. */
static void test_close_sends_close_notify(void **state)
{
    wr_tls_ctx_t *sctx = server_ctx(NULL), *cctx = pinned_client(sctx);
    peer_t s, c;
    peer_init(&s);
    peer_init(&c);
    tls_pair(&s, &c, sctx, cctx, "localhost");
    wait_hs(&s, &c);
    wr_buf_t *b = wr_buf_new(3);
    memcpy(b->data, "bye", 3);
    assert_int_equal(wr_endpoint_write(c.ep, b, b->data, 3), 0);
    wr_buf_release(b);
    wr_endpoint_close(c.ep, WR_CLOSE_GRACEFUL);
    run_until(got_eof, &s, 5000);
    assert_string_equal(s.head, "bye");
    assert_int_equal(s.error, 0);
    run_until(flag_set, &c.closed, 5000);
    wr_endpoint_close(s.ep, WR_CLOSE_GRACEFUL);
    run_until(flag_set, &s.closed, 5000);
    wr_tls_ctx_free(sctx);
    wr_tls_ctx_free(cctx);
}

/* ---- certificates: pins, CAs, names ---- */

static void expect_client_failure(wr_tls_ctx_t *sctx, wr_tls_ctx_t *cctx, const char *host,
                                  const char *want)
{
    peer_t s, c;
    peer_init(&s);
    peer_init(&c);
    tls_pair(&s, &c, sctx, cctx, host);
    wait_hs(&s, &c);
    assert_int_equal(c.hs_status, UV_EPROTO);
    if (strstr(c.hs_err, want) == NULL)
        fail_msg("client error \"%s\" lacks \"%s\"", c.hs_err, want);
    assert_int_not_equal(s.hs_status, 0); /* the server hears about it (an alert) */
    assert_int_equal(wr_tls_endpoint_info(c.ep, &(wr_tls_info){0}), UV_EINVAL);
    wr_buf_t *b = wr_buf_new(1);
    assert_int_equal(wr_endpoint_write(c.ep, b, b->data, 1), UV_EPIPE);
    wr_buf_release(b);
    close_both(&s, &c);
}

static void test_pin_ok_and_wrong(void **state)
{
    wr_tls_ctx_t *sctx = server_ctx(NULL);
    char wrong[WR_TLS_FP_TEXT_LEN], msg[256];
    snprintf(wrong, sizeof(wrong), "%s", wr_tls_ctx_fingerprint(sctx));
    wrong[10] = wrong[10] == '0' ? '1' : '0';
    wr_tls_client_opts o = {.pin = wrong};
    wr_tls_ctx_t *cctx = client_ctx(&o);
    snprintf(msg, sizeof(msg), "certificate of relay.example does not match the pin %s, it is %s",
             wrong, wr_tls_ctx_fingerprint(sctx));
    expect_client_failure(sctx, cctx, "relay.example", msg);
    wr_tls_ctx_free(cctx);

    /* The right pin works whatever name is asked for. */
    cctx = pinned_client(sctx);
    peer_t s, c;
    peer_init(&s);
    peer_init(&c);
    tls_pair(&s, &c, sctx, cctx, "relay.example");
    wait_hs(&s, &c);
    assert_int_equal(c.hs_status, 0);
    close_both(&s, &c);
    wr_tls_ctx_free(cctx);
    wr_tls_ctx_free(sctx);
}

static void test_ca_verification(void **state)
{
    wr_tls_ctx_t *sctx = ca_server_ctx();
    wr_tls_client_opts o = {.ca_file = ca_pem};
    wr_tls_ctx_t *cctx = client_ctx(&o);
    peer_t s, c;
    peer_init(&s);
    peer_init(&c);
    tls_pair(&s, &c, sctx, cctx, "localhost");
    wait_hs(&s, &c);
    assert_int_equal(c.hs_status, 0);
    assert_int_equal(s.hs_status, 0);
    close_both(&s, &c);

    expect_client_failure(sctx, cctx, "relay.example",
                          "certificate verify failed: the certificate is not for relay.example");
    expect_client_failure(sctx, cctx, "127.0.0.1",
                          "certificate verify failed: the certificate is not for 127.0.0.1");
    wr_tls_ctx_free(cctx);

    /* The system's CAs do not know the test CA, nor a self-signed certificate. */
    wr_tls_client_opts sys = {0};
    cctx = client_ctx(&sys);
    expect_client_failure(sctx, cctx, "localhost",
                          "certificate verify failed: unable to get local issuer certificate; "
                          "use --ca or --pin");
    wr_tls_ctx_free(sctx);
    sctx = server_ctx(NULL);
    expect_client_failure(sctx, cctx, "localhost",
                          "certificate verify failed: self-signed certificate; use --ca or --pin");
    wr_tls_ctx_free(cctx);
    wr_tls_ctx_free(sctx);
}

static void test_context_errors(void **state)
{
    char *err = NULL;
    wr_tls_client_opts both = {.ca_file = ca_pem, .pin = "sha256:00"};
    assert_null(wr_tls_ctx_new_client(&both, &err));
    assert_string_equal(err, "give --ca or --pin, not both: a pin replaces CA verification");
    free(err);
    wr_tls_client_opts badpin = {.pin = "sha256:abc"};
    assert_null(wr_tls_ctx_new_client(&badpin, &err));
    assert_non_null(strstr(err, "bad pin"));
    free(err);
    wr_tls_client_opts noca = {.ca_file = "/nonexistent/ca.pem"};
    assert_null(wr_tls_ctx_new_client(&noca, &err));
    assert_non_null(strstr(err, "cannot load CA certificates from /nonexistent/ca.pem"));
    free(err);
    wr_tls_client_opts alpn = {.alpn = "h2,,http/1.1"};
    assert_null(wr_tls_ctx_new_client(&alpn, &err));
    assert_non_null(strstr(err, "bad ALPN list"));
    free(err);
    wr_tls_server_opts nokey = {.cert_file = srv_pem};
    assert_null(wr_tls_ctx_new_server(&nokey, &err));
    assert_non_null(strstr(err, "--cert-key"));
    free(err);
    wr_tls_server_opts wrongkey = {.cert_file = srv_pem, .key_file = self_pem};
    assert_null(wr_tls_ctx_new_server(&wrongkey, &err));
    assert_non_null(strstr(err, "cannot use the key"));
    free(err);
    wr_tls_server_opts none = {0};
    assert_null(wr_tls_ctx_new_server(&none, &err));
    assert_non_null(strstr(err, "needs --cert"));
    free(err);
}

/* The stored certificate: 0600, kept across starts, its fingerprint the one openssl prints, and
 * refused once others can read it. */
static void test_self_signed_file(void **state)
{
    char path[160], cmd[400], line[256];
    snprintf(path, sizeof(path), "%s/made.pem", dir);
    wr_tls_server_opts o = {.self_signed_file = path, .self_signed_name = "relay.example"};
    char *err = NULL;
    wr_tls_ctx_t *a = wr_tls_ctx_new_server(&o, &err);
    assert_non_null(a);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    wr_tls_ctx_t *b = wr_tls_ctx_new_server(&o, &err);
    assert_non_null(b);
    assert_string_equal(wr_tls_ctx_fingerprint(a), wr_tls_ctx_fingerprint(b));

    snprintf(cmd, sizeof(cmd),
             "openssl x509 -in %s -noout -fingerprint -sha256 -ext subjectAltName | tr -d '\\n '",
             path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    pclose(f);
    /* "sha256Fingerprint=AB:CD:...X509v3SubjectAlternativeName:DNS:relay.example" */
    char *eq = strchr(line, '='), *san = strstr(line, "X509v3");
    assert_non_null(eq);
    assert_non_null(san);
    assert_non_null(strstr(san, "DNS:relay.example"));
    *san = '\0';
    char pin[128];
    snprintf(pin, sizeof(pin), "sha256:%s", eq + 1);
    uint8_t d1[32], d2[32];
    const char *why;
    assert_int_equal(wr_tls_pin_parse(pin, d1, &why), 0);
    assert_int_equal(wr_tls_pin_parse(wr_tls_ctx_fingerprint(a), d2, &why), 0);
    assert_memory_equal(d1, d2, 32);

    chmod(path, 0644);
    assert_null(wr_tls_ctx_new_server(&o, &err));
    assert_non_null(strstr(err, "other users can read it (mode 0644); chmod 600 it"));
    free(err);
    wr_tls_ctx_free(a);
    wr_tls_ctx_free(b);

    /* An address gets an IP subjectAltName. */
    snprintf(path, sizeof(path), "%s/ip.pem", dir);
    wr_tls_server_opts ip = {.self_signed_file = path, .self_signed_name = "127.0.0.1"};
    a = wr_tls_ctx_new_server(&ip, &err);
    assert_non_null(a);
    wr_tls_ctx_free(a);
    snprintf(cmd, sizeof(cmd),
             "openssl x509 -in %s -noout -ext subjectAltName | grep -q 'IP Address:127.0.0.1'",
             path);
    assert_int_equal(system(cmd), 0);
}

/* ---- protocol: versions, ALPN, SNI ---- */

/* A TLS 1.1 ClientHello (ECDHE-*-AES128-SHA, no extensions), written by hand. */
static const unsigned char hello_tls11[] = {
    0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x02, 1,    2,
    3,    4,    5,    6,    7,    8,    9,    10,   11,   12,   13,   14,   15,
    16,   17,   18,   19,   20,   21,   22,   23,   24,   25,   26,   27,   28,
    29,   30,   31,   32,   0x00, 0x00, 0x04, 0xc0, 0x09, 0xc0, 0x13, 0x01, 0x00,
};

typedef struct raw {
    wr_endpoint_t *ep;
    char got[512];
    size_t len;
    int eof, error, closed;
} raw_t;

static void raw_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    raw_t *r = ep->data;
    size_t n = sizeof(r->got) - r->len < len ? sizeof(r->got) - r->len : len;
    memcpy(r->got + r->len, base, n);
    r->len += n;
}

static void raw_eof(wr_endpoint_t *ep)
{
    ((raw_t *)ep->data)->eof = 1;
}

static void raw_error(wr_endpoint_t *ep, int err)
{
    ((raw_t *)ep->data)->error = err;
}

static void raw_closed(wr_endpoint_t *ep)
{
    ((raw_t *)ep->data)->closed = 1;
}

static const wr_endpoint_cbs_t raw_cbs = {
    .on_read = raw_read, .on_eof = raw_eof, .on_error = raw_error, .on_closed = raw_closed};

static void raw_send(raw_t *r, const void *data, size_t len)
{
    wr_buf_t *b = wr_buf_new(len);
    memcpy(b->data, data, len);
    assert_int_equal(wr_endpoint_write(r->ep, b, b->data, len), 0);
    wr_buf_release(b);
}

/* A plain TCP client sends bytes to a TLS server; returns the server's handshake error. */
static void server_fails_on(const void *bytes, size_t len, int then_fin, const char *want)
{
    wr_tls_ctx_t *sctx = server_ctx(NULL);
    wr_endpoint_t *si, *ci;
    tcp_pair(&si, &ci);
    peer_t s;
    raw_t r = {.ep = ci};
    peer_init(&s);
    peer_wrap(&s, &loop, sctx, si, NULL, NULL, 0);
    wr_endpoint_set_callbacks(ci, &raw_cbs, &r);
    assert_int_equal(wr_endpoint_read_start(ci), 0);
    raw_send(&r, bytes, len);
    if (then_fin) assert_int_equal(wr_endpoint_shutdown(ci), 0);
    run_until(flag_set, &s.hs, 5000);
    assert_true(s.hs_status < 0);
    if (strstr(s.hs_err, want) == NULL)
        fail_msg("server error \"%s\" lacks \"%s\"", s.hs_err, want);
    wr_endpoint_close(s.ep, WR_CLOSE_GRACEFUL);
    run_until(flag_set, &r.eof, 5000);
    if (memcmp(want, "unsupported protocol", 20) == 0) {
        /* A protocol_version alert went back. */
        assert_true(r.len >= 7);
        assert_int_equal((unsigned char)r.got[0], 0x15);
        assert_int_equal((unsigned char)r.got[6], 70);
    }
    wr_endpoint_close(ci, WR_CLOSE_GRACEFUL);
    run_until(flag_set, &s.closed, 5000);
    run_until(flag_set, &r.closed, 5000);
    wr_tls_ctx_free(sctx);
}

static void test_tls11_refused(void **state)
{
    server_fails_on(hello_tls11, sizeof(hello_tls11), 0, "unsupported protocol");
}

static void test_garbage_instead_of_hello(void **state)
{
    const char http[] = "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n";
#ifdef WR_HAVE_LIBSSL
    server_fails_on(http, sizeof(http) - 1, 0, "TLS handshake failed: http request");
#else
    server_fails_on(http, sizeof(http) - 1, 0, "TLS handshake failed: ");
#endif
    unsigned char junk[3000];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (unsigned char)splitmix(i);
    server_fails_on(junk, sizeof(junk), 0, "TLS handshake failed: ");
    /* Looks like a handshake record, then is not one. */
    memcpy(junk, "\x16\x03\x01\x0b\xb0", 5);
    server_fails_on(junk, sizeof(junk), 0, "TLS handshake failed: ");
    /* Half a ClientHello and the end of the connection. */
    server_fails_on(hello_tls11, 20, 1, "the connection was closed during the TLS handshake");
}

/* A TLS client facing a server that talks something else. */
static void test_client_facing_non_tls(void **state)
{
    wr_tls_ctx_t *sctx = server_ctx(NULL), *cctx = pinned_client(sctx);
    wr_endpoint_t *si, *ci;
    tcp_pair(&si, &ci);
    peer_t c;
    raw_t r = {.ep = si};
    peer_init(&c);
    wr_endpoint_set_callbacks(si, &raw_cbs, &r);
    assert_int_equal(wr_endpoint_read_start(si), 0);
    peer_wrap(&c, &loop, cctx, ci, "localhost", NULL, 0);
    raw_send(&r, "SSH-2.0-OpenSSH_9.2\r\n", 21);
    run_until(flag_set, &c.hs, 5000);
    assert_int_equal(c.hs_status, UV_EPROTO);
    assert_non_null(strstr(c.hs_err, "TLS handshake failed: "));
    assert_true(r.len > 0 && (unsigned char)r.got[0] == 0x16); /* it did send a ClientHello */
    wr_endpoint_close(c.ep, WR_CLOSE_RESET);
    wr_endpoint_close(si, WR_CLOSE_GRACEFUL);
    run_until(flag_set, &c.closed, 5000);
    run_until(flag_set, &r.closed, 5000);
    wr_tls_ctx_free(sctx);
    wr_tls_ctx_free(cctx);
}

static void test_alpn_and_sni(void **state)
{
    wr_tls_ctx_t *sctx = server_ctx("h2,http/1.1");
    wr_tls_client_opts o = {.ca_file = self_pem, .alpn = "spdy/1,http/1.1,h2"};
    wr_tls_ctx_t *cctx = client_ctx(&o);
    peer_t s, c;
    peer_init(&s);
    peer_init(&c);
    tls_pair(&s, &c, sctx, cctx, "localhost");
    wait_hs(&s, &c);
    assert_int_equal(c.hs_status, 0);
    wr_tls_info si, ci;
    assert_int_equal(wr_tls_endpoint_info(s.ep, &si), 0);
    assert_int_equal(wr_tls_endpoint_info(c.ep, &ci), 0);
    assert_string_equal(si.alpn, "h2"); /* the server's order wins */
    assert_string_equal(ci.alpn, "h2");
    assert_string_equal(si.sni, "localhost");
    close_both(&s, &c);
    wr_tls_ctx_free(cctx);

    /* Nothing in common: no ALPN, but the connection works (mbedTLS: the server refuses, as RFC
     * 7301 allows). An address sends no SNI. */
    wr_tls_client_opts other = {.pin = wr_tls_ctx_fingerprint(sctx), .alpn = "imap"};
    cctx = client_ctx(&other);
    peer_init(&s);
    peer_init(&c);
    tls_pair(&s, &c, sctx, cctx, "127.0.0.1");
    wait_hs(&s, &c);
#ifdef WR_HAVE_LIBSSL
    assert_int_equal(c.hs_status, 0);
    assert_int_equal(wr_tls_endpoint_info(s.ep, &si), 0);
    assert_string_equal(si.alpn, "");
    assert_string_equal(si.sni, "");
#else
    assert_int_equal(c.hs_status, UV_EPROTO);
    assert_non_null(strstr(c.hs_err, "no application protocol"));
#endif
    close_both(&s, &c);
    wr_tls_ctx_free(cctx);

    /* No ALPN offered, and an address: neither ALPN nor SNI. */
    wr_tls_client_opts none = {.pin = wr_tls_ctx_fingerprint(sctx)};
    cctx = client_ctx(&none);
    peer_init(&s);
    peer_init(&c);
    tls_pair(&s, &c, sctx, cctx, "127.0.0.1");
    wait_hs(&s, &c);
    assert_int_equal(c.hs_status, 0);
    assert_int_equal(wr_tls_endpoint_info(s.ep, &si), 0);
    assert_int_equal(wr_tls_endpoint_info(c.ep, &ci), 0);
    assert_string_equal(si.alpn, "");
    assert_string_equal(ci.alpn, "");
    assert_string_equal(si.sni, "");
    assert_string_equal(ci.sni, "");
    close_both(&s, &c);
    wr_tls_ctx_free(cctx);
    wr_tls_ctx_free(sctx);
}

/* ---- the front door's hand-over: bytes already read ---- */

typedef struct sniff {
    wr_endpoint_t *ep;
    char buf[8192];
    size_t len;
    int got;
} sniff_t;

static void sniff_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    sniff_t *s = ep->data;
    memcpy(s->buf, base, len < sizeof(s->buf) ? len : sizeof(s->buf));
    s->len = len;
    s->got = 1;
    wr_endpoint_read_stop(ep);
}

static const wr_endpoint_cbs_t sniff_cbs = {.on_read = sniff_read};

static void test_already_read_bytes(void **state)
{
    wr_tls_ctx_t *sctx = server_ctx("http/1.1"), *cctx = pinned_client(sctx);
    wr_endpoint_t *si, *ci;
    tcp_pair(&si, &ci);
    sniff_t sn = {.ep = si};
    wr_endpoint_set_callbacks(si, &sniff_cbs, &sn);
    assert_int_equal(wr_endpoint_read_start(si), 0);
    peer_t s, c;
    peer_init(&s);
    peer_init(&c);
    c.to_send = 3 * MiB;
    c.shut_when_sent = 1;
    peer_wrap(&c, &loop, cctx, ci, "localhost", NULL, 0);
    run_until(flag_set, &sn.got, 5000);
    assert_true(sn.len > 5);
    assert_int_equal((unsigned char)sn.buf[0], 0x16); /* what a front door checks */
    peer_wrap(&s, &loop, sctx, si, NULL, sn.buf, sn.len);
    wait_hs(&s, &c);
    assert_int_equal(s.hs_status, 0);
    assert_int_equal(c.hs_status, 0);
    assert_ptr_equal(wr_tls_endpoint_inner(s.ep), si);
    run_until(got_eof, &s, 20000);
    same_hash(&c, &s);
    close_both(&s, &c);
    wr_tls_ctx_free(sctx);
    wr_tls_ctx_free(cctx);
}

/* ---- backpressure ---- */

static int stuck(void *arg)
{
    peer_t *p = arg;
    return p->sent < p->to_send && wr_endpoint_over_high_water(p->ep);
}

static void test_backpressure(void **state)
{
    wr_tls_ctx_t *sctx = server_ctx(NULL), *cctx = pinned_client(sctx);
    peer_t s, c;
    peer_init(&s);
    peer_init(&c);
    s.no_auto_read = 1;
    c.to_send = 64 * MiB;
    c.shut_when_sent = 1;
    tls_pair(&s, &c, sctx, cctx, "localhost");
    wr_endpoint_set_watermarks(c.ep, 64 * KiB, 256 * KiB);
    wait_hs(&s, &c);
    run_until(stuck, &c, 20000);
    /* Let the socket buffers and the inner queues fill for real. */
    uint64_t sent;
    do {
        sent = c.sent;
        uv_timer_t t;
        uv_timer_init(&loop, &t);
        timed_out = 0;
        uv_timer_start(&t, watchdog_cb, 100, 0);
        while (!timed_out)
            uv_run(&loop, UV_RUN_ONCE);
        uv_close((uv_handle_t *)&t, NULL);
        uv_run(&loop, UV_RUN_NOWAIT);
        timed_out = 0;
    } while (c.sent != sent);
    assert_true(c.sent < c.to_send);
    assert_true(c.ep->queued >= 256 * KiB);
    assert_true(c.max_queued < 256 * KiB + 64 * KiB); /* the writer stopped at high water */
    int drains = c.drains; /* the socket buffers may have grown while filling */
    assert_int_equal(s.rx, 0);
    /* The reader that stopped does not read its socket either. */
    assert_int_equal(wr_tls_endpoint_inner(s.ep)->flags & WR_EP_READING, 0);

    assert_int_equal(wr_endpoint_read_start(s.ep), 0);
    run_until(got_eof, &s, 60000);
    assert_true(c.drains > drains);
    same_hash(&c, &s);
    assert_int_equal(c.ep->queued, 0);
    close_both(&s, &c);
    wr_tls_ctx_free(sctx);
    wr_tls_ctx_free(cctx);
}

static int paused_or_eof(void *arg)
{
    peer_t *p = arg;
    return p->paused || p->eof;
}

/* A reader that stops after every delivery and resumes from the loop: held ciphertext and
 * records OpenSSL already decrypted come out in order, and nothing is delivered while paused. */
static void test_pause_and_resume(void **state)
{
    wr_tls_ctx_t *sctx = server_ctx(NULL), *cctx = pinned_client(sctx);
    peer_t s, c;
    peer_init(&s);
    peer_init(&c);
    s.pause_reads = 1;
    c.to_send = 4 * MiB + 99;
    c.shut_when_sent = 1;
    tls_pair(&s, &c, sctx, cctx, "localhost");
    wait_hs(&s, &c);
    while (!s.eof) {
        run_until(paused_or_eof, &s, 10000);
        if (!s.paused) break;
        uint64_t rx = s.rx;
        uv_run(&loop, UV_RUN_NOWAIT);
        assert_int_equal(s.rx, rx);
        s.paused = 0;
        assert_int_equal(wr_endpoint_read_start(s.ep), 0);
    }
    assert_true(s.pauses > 10);
    same_hash(&c, &s);
    close_both(&s, &c);
    wr_tls_ctx_free(sctx);
    wr_tls_ctx_free(cctx);
}

/* ---- openssl s_server / s_client as peers ---- */

typedef struct child {
    uv_process_t proc;
    uv_pipe_t in, out;
    char out_buf[16384];
    size_t out_len;
    int exited, closes;
    int64_t status;
} child_t;

static void child_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    child_t *c = h->data;
    size_t room = sizeof(c->out_buf) - 1 - c->out_len;
    *b = uv_buf_init(c->out_buf + c->out_len, (unsigned)room);
}

static void child_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    child_t *c = s->data;
    if (n > 0) {
        c->out_len += (size_t)n;
        c->out_buf[c->out_len] = '\0';
    } else if (n < 0) {
        uv_read_stop(s);
    }
}

static void child_exit(uv_process_t *p, int64_t status, int sig)
{
    child_t *c = p->data;
    c->exited = 1;
    c->status = sig ? -sig : status;
}

static void child_closed(uv_handle_t *h)
{
    ((child_t *)h->data)->closes--;
}

static void child_start(child_t *c, char **argv)
{
    memset(c, 0, sizeof(*c));
    uv_pipe_init(&loop, &c->in, 0);
    uv_pipe_init(&loop, &c->out, 0);
    c->proc.data = c->in.data = c->out.data = c;
    uv_stdio_container_t io[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&c->in},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->out},
        {.flags = UV_IGNORE},
    };
    uv_process_options_t o = {
        .exit_cb = child_exit, .file = argv[0], .args = argv, .stdio = io, .stdio_count = 3};
    assert_int_equal(uv_spawn(&loop, &c->proc, &o), 0);
    c->closes = 3;
    uv_read_start((uv_stream_t *)&c->out, child_alloc, child_read);
}

static void child_write(child_t *c, const char *text)
{
    uv_buf_t b = uv_buf_init((char *)text, (unsigned)strlen(text));
    assert_int_equal(uv_try_write((uv_stream_t *)&c->in, &b, 1), (int)strlen(text));
}

typedef struct wait_text {
    child_t *c;
    const char *text;
} wait_text;

static int has_text(void *arg)
{
    wait_text *w = arg;
    return strstr(w->c->out_buf, w->text) != NULL;
}

static void child_wait_output(child_t *c, const char *text)
{
    wait_text w = {c, text};
    run_until(has_text, &w, 10000);
}

static int child_gone(void *arg)
{
    return ((child_t *)arg)->closes == 0;
}

static void child_finish(child_t *c)
{
    if (!c->exited) uv_process_kill(&c->proc, SIGTERM);
    run_until(flag_set, &c->exited, 5000);
    uv_close((uv_handle_t *)&c->proc, child_closed);
    if (!uv_is_closing((uv_handle_t *)&c->in)) uv_close((uv_handle_t *)&c->in, child_closed);
    uv_close((uv_handle_t *)&c->out, child_closed);
    run_until(child_gone, c, 5000);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

typedef struct dialer {
    uv_tcp_t *tcp;
    int done, status;
} dialer_t;

static void dialer_cb(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    dialer_t *dl = data;
    dl->tcp = tcp;
    dl->status = status;
    dl->done = 1;
}

static int reversed_back(void *arg)
{
    return strstr(((peer_t *)arg)->head, "nerraw olleh") != NULL;
}

static void test_interop_openssl_s_server(void **state)
{
    char port[8], accept[32];
    snprintf(port, sizeof(port), "%d", free_port());
    snprintf(accept, sizeof(accept), "127.0.0.1:%s", port);
    char *argv[] = {"/usr/bin/openssl",
                    "s_server",
                    "-accept",
                    accept,
                    "-cert",
                    srv_pem,
                    "-key",
                    srv_key,
                    "-rev",
                    "-alpn",
                    "http/1.1",
                    "-naccept",
                    "1",
                    NULL};
    child_t ch;
    child_start(&ch, argv);
    child_wait_output(&ch, "ACCEPT");

    dialer_t dl = {0};
    wr_dial_t *d;
    assert_int_equal(wr_dial(&loop, "127.0.0.1", (uint16_t)atoi(port), 5000, dialer_cb, &dl, &d),
                     0);
    run_until(flag_set, &dl.done, 5000);
    assert_int_equal(dl.status, 0);
    wr_tls_client_opts o = {.ca_file = ca_pem, .alpn = "http/1.1"};
    wr_tls_ctx_t *cctx = client_ctx(&o);
    peer_t c;
    peer_init(&c);
    peer_wrap(&c, &loop, cctx, wr_tcp_endpoint_new(dl.tcp), "localhost", NULL, 0);
    run_until(flag_set, &c.hs, 10000);
    assert_int_equal(c.hs_status, 0);
    wr_tls_info ci;
    assert_int_equal(wr_tls_endpoint_info(c.ep, &ci), 0);
    assert_string_equal(ci.alpn, "http/1.1");
    assert_string_equal(ci.version, TLS_NEWEST);

    wr_buf_t *b = wr_buf_new(13);
    memcpy(b->data, "hello warren\n", 13);
    assert_int_equal(wr_endpoint_write(c.ep, b, b->data, 13), 0);
    wr_buf_release(b);
    run_until(reversed_back, &c, 10000);
    /* Our close_notify ends s_server's session, and with -naccept 1, s_server. */
    assert_int_equal(wr_endpoint_shutdown(c.ep), 0);
    run_until(flag_set, &ch.exited, 10000);
    assert_int_equal(ch.status, 0);
    wr_endpoint_close(c.ep, WR_CLOSE_GRACEFUL);
    run_until(flag_set, &c.closed, 5000);
    child_finish(&ch);
    wr_tls_ctx_free(cctx);
}

typedef struct acceptor {
    wr_tls_ctx_t *ctx;
    peer_t peer;
    int accepted;
} acceptor_t;

static void acceptor_conn(wr_listener_t *l, int status)
{
    acceptor_t *a = wr_listener_data(l);
    uv_tcp_t *tcp;
    assert_int_equal(wr_listener_accept(l, &tcp), 0);
    peer_init(&a->peer);
    a->peer.echo = 1;
    peer_wrap(&a->peer, &loop, a->ctx, wr_tcp_endpoint_new(tcp), NULL, NULL, 0);
    a->accepted = 1;
}

/* s_client against our server: verify, ALPN, SNI, data both ways, close_notify. extra: more
 * s_client options (NULL-terminated). want_err: the server's handshake error, or NULL. */
static void s_client_run(wr_tls_ctx_t *sctx, const char *ca, const char *const *extra,
                         const char *want_err, wr_tls_info *info)
{
    acceptor_t a = {.ctx = sctx};
    wr_listener_t *l;
    char connect[32];
    assert_int_equal(wr_listen(&loop, "127.0.0.1", 0, 0, acceptor_conn, &a, &l), 0);
    snprintf(connect, sizeof(connect), "127.0.0.1:%d", wr_listener_port(l));
    char *argv[24] = {"/usr/bin/openssl",
                      "s_client",
                      "-connect",
                      connect,
                      "-servername",
                      "localhost",
                      "-CAfile",
                      (char *)ca,
                      "-verify_return_error",
                      "-verify_hostname",
                      "localhost",
                      "-alpn",
                      "http/1.1",
                      "-brief"};
    size_t n = 14;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    child_t ch;
    child_start(&ch, argv);
    run_until(flag_set, &a.accepted, 10000);
    run_until(flag_set, &a.peer.hs, 10000);
    if (want_err) {
        assert_true(a.peer.hs_status < 0);
        if (strstr(a.peer.hs_err, want_err) == NULL)
            fail_msg("server error \"%s\" lacks \"%s\"", a.peer.hs_err, want_err);
        run_until(flag_set, &ch.exited, 10000);
        assert_int_not_equal(ch.status, 0);
    } else {
        assert_int_equal(a.peer.hs_status, 0);
        child_write(&ch, "ping\n");
        child_wait_output(&ch, "pong ping");
        assert_string_equal(a.peer.head, "ping\n");
        assert_int_equal(wr_tls_endpoint_info(a.peer.ep, info), 0);
        /* stdin's end makes s_client send close_notify and leave. */
        uv_close((uv_handle_t *)&ch.in, child_closed);
        run_until(got_eof, &a.peer, 10000);
        run_until(flag_set, &ch.exited, 10000);
        assert_int_equal(ch.status, 0);
    }
    wr_endpoint_close(a.peer.ep, WR_CLOSE_GRACEFUL);
    run_until(flag_set, &a.peer.closed, 5000);
    wr_listener_close(l);
    child_finish(&ch);
}

static void test_interop_openssl_s_client(void **state)
{
    wr_tls_ctx_t *sctx = ca_server_ctx();
    wr_tls_info info;
    s_client_run(sctx, ca_pem, NULL, NULL, &info);
    assert_string_equal(info.version, TLS_NEWEST);
    assert_string_equal(info.alpn, "http/1.1");
    assert_string_equal(info.sni, "localhost");

    const char *tls12[] = {"-tls1_2", NULL};
    s_client_run(sctx, ca_pem, tls12, NULL, &info);
    assert_string_equal(info.version, "TLSv1.2");
    assert_true(strstr(info.cipher, "ECDHE-ECDSA-") == info.cipher);
    assert_true(strstr(info.cipher, "GCM") || strstr(info.cipher, "CHACHA20"));

    const char *cbc[] = {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA", NULL};
    s_client_run(sctx, ca_pem, cbc, "no shared cipher", NULL);
    wr_tls_ctx_free(sctx);

    /* The self-signed certificate is usable as its own CA by ordinary clients. */
    sctx = server_ctx("http/1.1");
    s_client_run(sctx, self_pem, NULL, NULL, &info);
    wr_tls_ctx_free(sctx);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pin_parse),
        cmocka_unit_test(test_context_errors),
        cmocka_unit_test(test_self_signed_file),
        cmocka_unit_test_setup_teardown(test_bytes_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_client_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_server_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_sends_close_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pin_ok_and_wrong, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ca_verification, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls11_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_instead_of_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_facing_non_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alpn_and_sni, setup, teardown),
        cmocka_unit_test_setup_teardown(test_already_read_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interop_openssl_s_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interop_openssl_s_client, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
