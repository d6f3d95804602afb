/* wr_io and wr_buf on a real loop and real loopback sockets (127.0.0.1, ::1 when present). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wr_io.h"
#include "loop_fixture.h"

/* Runs the loop until *flag is set. */
static int flag_set(void *flag)
{
    return *(const int *)flag;
}

static int setup(void **state)
{
    return loop_setup();
}

static int teardown(void **state)
{
    return loop_teardown();
}

static int have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = in6addr_loopback;
    int ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* ---- parser ---- */

struct parse_case {
    const char *in;
    unsigned flags;
    int ok;
    const char *host;
    int port;
    int ipv6;
};

static void test_parse_table(void **state)
{
    static const struct parse_case cases[] = {
        {"example.com:80", 0, 1, "example.com", 80, 0},
        {"127.0.0.1:8080", 0, 1, "127.0.0.1", 8080, 0},
        {"[::1]:443", 0, 1, "::1", 443, 1},
        {"[fe80::1%eth0]:22", 0, 1, "fe80::1%eth0", 22, 1},
        {"[::ffff:1.2.3.4]:1", 0, 1, "::ffff:1.2.3.4", 1, 1},
        {":9000", 0, 1, "", 9000, 0},
        {"9000", 0, 1, "", 9000, 0},
        {"*:65535", 0, 1, "", 65535, 0},
        {"localhost:0", WR_ADDR_PORT_ZERO_OK, 1, "localhost", 0, 0},
        {"a-b_c.d.:1", 0, 1, "a-b_c.d.", 1, 0},
        {"", 0, 0, NULL, 0, 0},
        {":", 0, 0, NULL, 0, 0},
        {"host:", 0, 0, NULL, 0, 0},
        {"host", 0, 0, NULL, 0, 0},
        {"host:0", 0, 0, NULL, 0, 0},
        {"host:65536", 0, 0, NULL, 0, 0},
        {"host:123456", 0, 0, NULL, 0, 0},
        {"host:80x", 0, 0, NULL, 0, 0},
        {"host:-1", 0, 0, NULL, 0, 0},
        {"host:+80", 0, 0, NULL, 0, 0},
        {"host: 80", 0, 0, NULL, 0, 0},
        {"::1:80", 0, 0, NULL, 0, 0},
        {"[::1]", 0, 0, NULL, 0, 0},
        {"[::1]80", 0, 0, NULL, 0, 0},
        {"[::1:80", 0, 0, NULL, 0, 0},
        {"[]:80", 0, 0, NULL, 0, 0},
        {"[1.2.3.4]:80", 0, 0, NULL, 0, 0},
        {"[::g]:80", 0, 0, NULL, 0, 0},
        {"[fe80::1%]:80", 0, 0, NULL, 0, 0},
        {"bad host:80", 0, 0, NULL, 0, 0},
        {"-bad.com:80", 0, 0, NULL, 0, 0},
        {"bad-.com:80", 0, 0, NULL, 0, 0},
        {"a..b:80", 0, 0, NULL, 0, 0},
        {".a:80", 0, 0, NULL, 0, 0},
        {"256.1.1.1:80", 0, 0, NULL, 0, 0},
        {"1.2.3:80", 0, 0, NULL, 0, 0},
        {":80", WR_ADDR_HOST_REQUIRED, 0, NULL, 0, 0},
        {"80", WR_ADDR_HOST_REQUIRED, 0, NULL, 0, 0},
        {"0", 0, 0, NULL, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct parse_case *c = &cases[i];
        wr_hostport_t hp;
        const char *err = "unset";
        int rc = wr_parse_hostport(c->in, c->flags, &hp, &err);
        if (c->ok) {
            if (rc != 0) fail_msg("'%s' rejected: %s", c->in, err);
            assert_null(err);
            assert_string_equal(hp.host, c->host);
            assert_int_equal(hp.port, c->port);
            assert_int_equal(hp.ipv6, c->ipv6);
        } else {
            if (rc == 0) fail_msg("'%s' accepted as host='%s' port=%d", c->in, hp.host, hp.port);
            assert_int_equal(rc, UV_EINVAL);
            assert_non_null(err);
            assert_true(strlen(err) > 5);
        }
    }
    /* A host longer than a DNS name can be. */
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    memcpy(longname + 280, ":80", 4);
    wr_hostport_t hp;
    const char *err;
    assert_int_equal(wr_parse_hostport(longname, 0, &hp, &err), UV_EINVAL);
    /* A 64-character label. */
    char label[80];
    memset(label, 'b', 64);
    memcpy(label + 64, ".com:1", 7);
    assert_int_equal(wr_parse_hostport(label, 0, &hp, &err), UV_EINVAL);
    assert_int_equal(wr_parse_hostport(label + 1, 0, &hp, &err), 0);
}

/* ---- listen / dial ---- */

typedef struct conn_test {
    wr_listener_t *l;
    uv_tcp_t *accepted;
    uv_tcp_t *dialed;
    int dial_status;
    int dial_done;
    int accept_status;
    int accepted_done;
    int both;
    uint64_t t0, elapsed_ns;
} conn_test_t;

static void maybe_both(conn_test_t *ct)
{
    ct->both = ct->dial_done && (ct->accepted_done || ct->dial_status != 0);
}

static void on_conn(wr_listener_t *l, int status)
{
    conn_test_t *ct = wr_listener_data(l);
    ct->accept_status = status;
    if (status == 0) ct->accept_status = wr_listener_accept(l, &ct->accepted);
    ct->accepted_done = 1;
    maybe_both(ct);
}

static void on_dial(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    conn_test_t *ct = data;
    ct->dial_status = status;
    ct->dialed = tcp;
    ct->dial_done = 1;
    ct->elapsed_ns = uv_hrtime() - ct->t0;
    if (status == 0)
        assert_non_null(tcp);
    else
        assert_null(tcp);
    maybe_both(ct);
}

static int nodelay_of(uv_tcp_t *t)
{
    uv_os_fd_t fd;
    assert_int_equal(uv_fileno((uv_handle_t *)t, &fd), 0);
    int v = 0;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
    return v;
}

static int peer_family(uv_tcp_t *t)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    assert_int_equal(uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len), 0);
    return ss.ss_family;
}

static void finish_conn(conn_test_t *ct)
{
    if (ct->accepted) wr_tcp_close_free(ct->accepted);
    if (ct->dialed) wr_tcp_close_free(ct->dialed);
    if (ct->l) wr_listener_close(ct->l);
}

/* Listens on listen_host, dials dial_host, checks both ends; returns the dialed peer family. */
static int listen_and_dial(const char *listen_host, const char *dial_host)
{
    conn_test_t ct;
    memset(&ct, 0, sizeof(ct));
    assert_int_equal(wr_listen(&loop, listen_host, 0, 16, on_conn, &ct, &ct.l), 0);
    int port = wr_listener_port(ct.l);
    assert_true(port > 0);
    ct.t0 = uv_hrtime();
    assert_int_equal(wr_dial(&loop, dial_host, (uint16_t)port, 2000, on_dial, &ct, NULL), 0);
    assert_false(ct.dial_done); /* never called back from inside wr_dial */
    run_until(flag_set, &ct.both, 5000);
    assert_int_equal(ct.dial_status, 0);
    assert_int_equal(ct.accept_status, 0);
    assert_int_equal(nodelay_of(ct.dialed), 1);
    assert_int_equal(nodelay_of(ct.accepted), 1);
    int fam = peer_family(ct.dialed);
    finish_conn(&ct);
    return fam;
}

static void test_listen_dial_v4(void **state)
{
    assert_int_equal(listen_and_dial("127.0.0.1", "127.0.0.1"), AF_INET);
}

static void test_listen_dial_v6(void **state)
{
    if (!have_ipv6()) skip();
    assert_int_equal(listen_and_dial("::1", "::1"), AF_INET6);
}

static void test_dial_by_name(void **state)
{
    assert_int_equal(listen_and_dial("127.0.0.1", "localhost"), AF_INET);
}

static void test_listen_any(void **state)
{
    /* The wildcard listener is dual-stack when IPv6 exists: reachable on both loopbacks. */
    assert_int_equal(listen_and_dial("", "127.0.0.1"), AF_INET);
    if (have_ipv6()) assert_int_equal(listen_and_dial("*", "::1"), AF_INET6);
}

static void test_listen_rejects_names(void **state)
{
    wr_listener_t *l = NULL;
    assert_int_equal(wr_listen(&loop, "example.com", 0, 0, on_conn, NULL, &l), UV_EINVAL);
    assert_null(l);
}

static void test_listen_addr_in_use(void **state)
{
    conn_test_t ct;
    memset(&ct, 0, sizeof(ct));
    assert_int_equal(wr_listen(&loop, "127.0.0.1", 0, 0, on_conn, &ct, &ct.l), 0);
    int port = wr_listener_port(ct.l);
    wr_listener_t *l2 = NULL;
    assert_int_equal(wr_listen(&loop, "127.0.0.1", (uint16_t)port, 0, on_conn, &ct, &l2),
                     UV_EADDRINUSE);
    wr_listener_close(ct.l);
}

/* A loopback port with nothing listening on it. */
static int closed_port(void)
{
    wr_listener_t *l;
    assert_int_equal(wr_listen(&loop, "127.0.0.1", 0, 0, on_conn, NULL, &l), 0);
    int port = wr_listener_port(l);
    wr_listener_close(l);
    uv_run(&loop, UV_RUN_NOWAIT);
    return port;
}

static void test_dial_refused(void **state)
{
    int port = closed_port();
    conn_test_t ct;
    memset(&ct, 0, sizeof(ct));
    ct.t0 = uv_hrtime();
    assert_int_equal(wr_dial(&loop, "127.0.0.1", (uint16_t)port, 5000, on_dial, &ct, NULL), 0);
    run_until(flag_set, &ct.dial_done, 3000);
    assert_int_equal(ct.dial_status, UV_ECONNREFUSED);
    assert_true(ct.elapsed_ns < 1000000000ull); /* promptly, not at the timeout */
}

static void test_dial_tries_each_address(void **state)
{
    int dead = closed_port();
    conn_test_t ct;
    memset(&ct, 0, sizeof(ct));
    assert_int_equal(wr_listen(&loop, "127.0.0.1", 0, 0, on_conn, &ct, &ct.l), 0);
    int live = wr_listener_port(ct.l);
    struct sockaddr_in a1, a2;
    uv_ip4_addr("127.0.0.1", dead, &a1);
    uv_ip4_addr("127.0.0.1", live, &a2);
    const struct sockaddr *addrs[] = {(struct sockaddr *)&a1, (struct sockaddr *)&a1,
                                      (struct sockaddr *)&a2};
    assert_int_equal(wr_dial_addrs(&loop, addrs, 3, 2000, on_dial, &ct, NULL), 0);
    run_until(flag_set, &ct.both, 5000);
    assert_int_equal(ct.dial_status, 0);
    struct sockaddr_in peer;
    int len = sizeof(peer);
    assert_int_equal(uv_tcp_getpeername(ct.dialed, (struct sockaddr *)&peer, &len), 0);
    assert_int_equal(ntohs(peer.sin_port), live);
    finish_conn(&ct);

    /* All dead: the last error comes back. */
    memset(&ct, 0, sizeof(ct));
    assert_int_equal(wr_dial_addrs(&loop, addrs, 2, 2000, on_dial, &ct, NULL), 0);
    run_until(flag_set, &ct.dial_done, 3000);
    assert_int_equal(ct.dial_status, UV_ECONNREFUSED);
}

static void test_dial_invalid(void **state)
{
    conn_test_t ct;
    memset(&ct, 0, sizeof(ct));
    assert_int_equal(wr_dial(&loop, "", 80, 0, on_dial, &ct, NULL), UV_EINVAL);
    assert_int_equal(wr_dial(&loop, "127.0.0.1", 0, 0, on_dial, &ct, NULL), UV_EINVAL);
    assert_int_equal(wr_dial_addrs(&loop, NULL, 0, 0, on_dial, &ct, NULL), UV_EINVAL);
    assert_false(ct.dial_done);
}

static void test_dial_cancel(void **state)
{
    int port = closed_port();
    conn_test_t ct;
    memset(&ct, 0, sizeof(ct));
    wr_dial_t *d;
    /* Cancel before the attempt starts, then while it is in flight, then during resolution. */
    assert_int_equal(wr_dial(&loop, "127.0.0.1", (uint16_t)port, 0, on_dial, &ct, &d), 0);
    wr_dial_cancel(d);
    assert_true(ct.dial_done);
    assert_int_equal(ct.dial_status, UV_ECANCELED);

    memset(&ct, 0, sizeof(ct));
    assert_int_equal(wr_dial(&loop, "127.0.0.1", (uint16_t)port, 0, on_dial, &ct, &d), 0);
    uv_run(&loop, UV_RUN_NOWAIT); /* the connect is now issued */
    if (!ct.dial_done) {
        wr_dial_cancel(d);
        assert_int_equal(ct.dial_status, UV_ECANCELED);
    }

    memset(&ct, 0, sizeof(ct));
    assert_int_equal(wr_dial(&loop, "localhost", (uint16_t)port, 0, on_dial, &ct, &d), 0);
    wr_dial_cancel(d);
    assert_int_equal(ct.dial_status, UV_ECANCELED);
    /* Let the resolver finish so its memory is released before teardown checks. */
    for (int i = 0; i < 100; i++) {
        if (!uv_loop_alive(&loop)) break;
        uv_run(&loop, UV_RUN_ONCE);
    }
}

/* A listener whose accept queue is full drops SYNs, so a connect to it stays in progress. The
 * listener is a raw socket nobody accepts from, with backlog 0 pre-filled by plain connects. */
#define FILLERS 8
static int full_listener(struct sockaddr_in *sa, int fillers[FILLERS])
{
    uv_ip4_addr("127.0.0.1", 0, sa);
    int lsock = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lsock >= 0);
    assert_int_equal(bind(lsock, (struct sockaddr *)sa, sizeof(*sa)), 0);
    assert_int_equal(listen(lsock, 0), 0);
    socklen_t sl = sizeof(*sa);
    assert_int_equal(getsockname(lsock, (struct sockaddr *)sa, &sl), 0);
    for (int i = 0; i < FILLERS; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)sa, sizeof(*sa));
    }
    return lsock;
}

static void close_fillers(int fillers[FILLERS])
{
    for (int i = 0; i < FILLERS; i++) {
        if (fillers[i] >= 0) close(fillers[i]);
        fillers[i] = -1;
    }
}

/* A connect that hangs: the timeout must fire. */
static void test_dial_timeout(void **state)
{
    struct sockaddr_in sa;
    int fillers[FILLERS];
    int lsock = full_listener(&sa, fillers);
    conn_test_t ct;
    memset(&ct, 0, sizeof(ct));
    ct.t0 = uv_hrtime();
    assert_int_equal(wr_dial(&loop, "127.0.0.1", ntohs(sa.sin_port), 300, on_dial, &ct, NULL), 0);
    run_until(flag_set, &ct.dial_done, 5000);
    close_fillers(fillers);
    close(lsock);
    if (ct.dial_status == 0) {
        /* This network stack queued the connection anyway: nothing to time out. */
        wr_tcp_close_free(ct.dialed);
        skip();
    }
    assert_int_equal(ct.dial_status, UV_ETIMEDOUT);
    assert_true(ct.elapsed_ns >= 250000000ull && ct.elapsed_ns < 2000000000ull);
}

typedef struct {
    int lsock;
    int *fillers;
} make_room_t;

/* Empties the full listener's queue and drops the other connects, so the dial's next SYN
 * gets in. */
static void make_room(uv_timer_t *t)
{
    make_room_t *m = t->data;
    int c;
    close_fillers(m->fillers);
    while ((c = accept(m->lsock, NULL, NULL)) >= 0)
        close(c);
}

/* A connect the kernel cannot finish at once is watched until it does, and the handle is as
 * good as one connected at once. */
static void test_dial_waits_for_a_slow_connect(void **state)
{
    struct sockaddr_in sa;
    int fillers[FILLERS];
    int lsock = full_listener(&sa, fillers);
    assert_int_equal(fcntl(lsock, F_SETFL, O_NONBLOCK), 0);
    make_room_t m = {lsock, fillers};
    uv_timer_t room;
    uv_timer_init(&loop, &room);
    room.data = &m;
    uv_timer_start(&room, make_room, 200, 0);
    conn_test_t ct;
    memset(&ct, 0, sizeof(ct));
    ct.t0 = uv_hrtime();
    assert_int_equal(wr_dial(&loop, "127.0.0.1", ntohs(sa.sin_port), 8000, on_dial, &ct, NULL), 0);
    run_until(flag_set, &ct.dial_done, 10000);
    uv_close((uv_handle_t *)&room, NULL);
    uv_run(&loop, UV_RUN_NOWAIT); /* room lives on this stack */
    if (ct.dial_status == 0 && ct.elapsed_ns < 150000000ull) {
        /* This network stack queued the connection anyway: nothing to wait for. */
        wr_tcp_close_free(ct.dialed);
        close(lsock);
        skip();
    }
    assert_int_equal(ct.dial_status, 0);
    assert_int_equal(nodelay_of(ct.dialed), 1);
    assert_int_equal(peer_family(ct.dialed), AF_INET);
    int c = accept(lsock, NULL, NULL);
    assert_true(c >= 0);
    uv_buf_t b = uv_buf_init("x", 1);
    assert_int_equal(uv_try_write((uv_stream_t *)ct.dialed, &b, 1), 1);
    char got = 0;
    assert_int_equal(recv(c, &got, 1, MSG_WAITALL), 1);
    assert_int_equal(got, 'x');
    close(c);
    close(lsock);
    wr_tcp_close_free(ct.dialed);
}

/* ---- buffers ---- */

static void test_buf_refcount_and_cache(void **state)
{
    wr_buf_stats_t st0, st;
    wr_buf_cache_trim();
    wr_buf_get_stats(&st0);
    wr_buf_t *a = wr_buf_get();
    assert_non_null(a);
    assert_int_equal(a->size, WR_BUF_SIZE);
    assert_ptr_equal(wr_buf_of(a->data), a);
    assert_int_equal(((uintptr_t)a->data) % 16, 0);
    wr_buf_retain(a);
    wr_buf_release(a);
    wr_buf_get_stats(&st);
    assert_int_equal(st.live, st0.live + 1);
    wr_buf_release(a);
    wr_buf_get_stats(&st);
    assert_int_equal(st.live, st0.live);
    assert_int_equal(st.cached, 1);

    /* Reuse comes from the cache without malloc. */
    uint64_t m = st.mallocs;
    wr_buf_t *b = wr_buf_get();
    assert_ptr_equal(b, a);
    wr_buf_release(b);
    wr_buf_get_stats(&st);
    assert_int_equal(st.mallocs, m);

    /* The cache is bounded. */
    wr_buf_cache_set_limit(4);
    wr_buf_t *many[10];
    for (int i = 0; i < 10; i++)
        many[i] = wr_buf_get();
    for (int i = 0; i < 10; i++)
        wr_buf_release(many[i]);
    wr_buf_get_stats(&st);
    assert_int_equal(st.cached, 4);
    wr_buf_cache_set_limit(2);
    wr_buf_get_stats(&st);
    assert_int_equal(st.cached, 2);

    /* Exact-size chunks are never cached. */
    wr_buf_t *s = wr_buf_new(100);
    assert_int_equal(s->size, 100);
    wr_buf_release(s);
    wr_buf_get_stats(&st);
    assert_int_equal(st.cached, 2);

    /* Bulk chunks have their own cache, reused without malloc. */
    wr_buf_t *k = wr_buf_get_bulk();
    assert_int_equal(k->size, WR_BUF_BULK_SIZE);
    wr_buf_release(k);
    wr_buf_get_stats(&st);
    assert_int_equal(st.cached, 3);
    m = st.mallocs;
    assert_ptr_equal(wr_buf_get_bulk(), k);
    wr_buf_release(k);
    wr_buf_get_stats(&st);
    assert_int_equal(st.mallocs, m);
    wr_buf_cache_set_limit(WR_BUF_CACHE_DEFAULT);
}

/* ---- tcp endpoint reads ---- */

typedef struct bulk_reader {
    size_t got, want, largest_read, last_chunk;
} bulk_reader;

static void bulk_on_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    bulk_reader *r = ep->data;
    r->got += len;
    if (len > r->largest_read) r->largest_read = len;
    r->last_chunk = b->size;
}

static int bulk_done(void *arg)
{
    const bulk_reader *r = arg;
    return r->got >= r->want;
}

static void closed_ep(wr_endpoint_t *ep)
{
    *(int *)ep->data = 1;
}

/* A socket with a backlog is read in bulk chunks (a quarter of the syscalls); a short read puts it
 * back on full-size chunks, so quiet sockets do not hold bulk ones. */
static void test_tcp_endpoint_bulk_reads(void **state)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0), wfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    assert_int_equal(connect(wfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    int rfd = accept(lfd, NULL, NULL);
    assert_true(rfd >= 0);
    close(lfd);

    /* A backlog (up to 1 MiB, as the socket buffers allow) waits before the endpoint reads. */
    int big = 4 << 20;
    setsockopt(rfd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setsockopt(wfd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    static char data[1 << 20];
    memset(data, 'b', sizeof(data));
    size_t sent = 0;
    while (sent < sizeof(data)) {
        ssize_t n = send(wfd, data + sent, sizeof(data) - sent, MSG_DONTWAIT);
        if (n <= 0) break;
        sent += (size_t)n;
    }
    assert_true(sent > 2 * WR_BUF_BULK_SIZE);
    usleep(50 * 1000); /* loopback delivery */

    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    uv_tcp_init(&loop, tcp);
    assert_int_equal(uv_tcp_open(tcp, rfd), 0);
    wr_endpoint_t *ep = wr_tcp_endpoint_new(tcp);
    static const wr_endpoint_cbs_t cbs = {.on_read = bulk_on_read};
    bulk_reader r = {.want = sent};
    wr_endpoint_set_callbacks(ep, &cbs, &r);
    assert_int_equal(wr_endpoint_read_start(ep), 0);
    run_until(bulk_done, &r, 5000);
    assert_int_equal(r.got, sent);
    assert_true(r.largest_read > WR_BUF_SIZE);

    /* Caught up: after a short read, a few bytes land in a full-size chunk, not a bulk one. */
    for (int i = 0; i < 2; i++) {
        r.want = r.got + 100;
        assert_int_equal(send(wfd, data, 100, 0), 100);
        run_until(bulk_done, &r, 5000);
    }
    assert_int_equal(r.last_chunk, WR_BUF_SIZE);

    static const wr_endpoint_cbs_t close_cbs = {.on_closed = closed_ep};
    int closed = 0;
    wr_endpoint_set_callbacks(ep, &close_cbs, &closed);
    wr_endpoint_close(ep, WR_CLOSE_GRACEFUL);
    run_until(flag_set, &closed, 5000);
    close(wfd);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the host does: a vanished peer is an error return */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_buf_refcount_and_cache),
        cmocka_unit_test_setup_teardown(test_listen_dial_v4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_dial_v6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dial_by_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_any, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_rejects_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_addr_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dial_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dial_tries_each_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dial_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dial_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dial_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dial_waits_for_a_slow_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_endpoint_bulk_reads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
