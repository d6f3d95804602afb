/* KCP against kcp-go, over UDP on loopback: the kcp-go peer (spec/peers/kcpgo, built here with Go
 * from the distribution's sources, offline) echoes what warren's KCP sends, and sends what warren's
 * KCP echoes; both ways byte-exact, checked with SHA-256. Skipped when Go or kcp-go is absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wr_crypto.h"
#include "wr_kcp.h"

#define SIZE (4 << 20)

static char peer_dir[64], peer_bin[256];

static uint32_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Builds the peer once; 0, or -1 when Go or kcp-go is not there (the tests are then skipped). */
static int build_peer(void **state)
{
    char *dir = peer_dir, cmd[1024];
    snprintf(peer_dir, sizeof peer_dir, "/tmp/wr-kcpgo-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(peer_bin, sizeof peer_bin, "%s/kcpgo", dir);
    snprintf(cmd, sizeof cmd,
             "cd '%s/spec/peers/kcpgo' && GOPATH=/usr/share/gocode GO111MODULE=off GOPROXY=off "
             "GOFLAGS= GOCACHE='%s/cache' go build -o '%s' main.go >'%s/build.log' 2>&1",
             WR_SOURCE_DIR, dir, peer_bin, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "kcp-go peer not built (see %s/build.log): interop skipped\n", dir);
        peer_bin[0] = '\0';
        return 0;
    }
    return 0;
}

static int remove_peer(void **state)
{
    char cmd[128];
    if (peer_bin[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", peer_dir);
        return system(cmd) == 0 ? 0 : -1;
    }
    return 0;
}

typedef struct child {
    pid_t pid;
    FILE *out;
} child_t;

static void spawn(child_t *c, char *const argv[])
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failing test must not leave the peer running */
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    c->out = fdopen(fds[0], "r");
    assert_non_null(c->out);
}

static void reap(child_t *c)
{
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    fclose(c->out);
}

typedef struct side {
    int fd;
    struct sockaddr_in peer;
    int have_peer;
} side_t;

static void udp_out(const uint8_t *d, size_t len, void *user)
{
    side_t *s = user;
    sendto(s->fd, d, len, 0, (struct sockaddr *)&s->peer, sizeof s->peer);
}

static int udp_socket(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_DGRAM, 0), size = 4 << 20;
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Runs one KCP instance on the socket: sends `send` (if any) while reading; echo = 1 writes back
 * whatever arrives. Stops when `want` bytes arrived (their SHA-256 in digest) or after 60 s. */
static size_t run(side_t *s, wr_kcp_t **kp, const wr_kcp_config *cfg, const uint8_t *send,
                  size_t want, int echo, uint8_t digest[32], const uint8_t *expect)
{
    static uint8_t buf[65536];
    uint8_t *got = malloc(want);
    size_t sent = 0, rcvd = 0;
    uint32_t deadline = now_ms() + 60000;
    assert_non_null(got);
    while (rcvd < want && (int32_t)(deadline - now_ms()) > 0) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        uint32_t now = now_ms();
        int wait = 1;
        if (*kp) {
            uint32_t due = wr_kcp_check(*kp, now);
            wait = (int32_t)(due - now) > 0 ? (int)(due - now) : 0;
        }
        poll(&p, 1, wait > 10 ? 10 : wait);
        for (;;) {
            struct sockaddr_in from;
            socklen_t flen = sizeof from;
            ssize_t n =
                recvfrom(s->fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
            if (n <= 0) break;
            if (!*kp) { /* server: the first datagram names the conversation */
                wr_kcp_seg_header h;
                if (wr_kcp_parse_header(buf, (size_t)n, &h) != 0) continue;
                s->peer = from;
                *kp = wr_kcp_new(h.conv, cfg, udp_out, s);
                assert_non_null(*kp);
            }
            assert_int_equal(wr_kcp_input(*kp, buf, (size_t)n, now_ms()), 0);
        }
        if (!*kp) continue;
        while (send && sent < SIZE && wr_kcp_unacked(*kp) < 2 << 20) {
            size_t n = SIZE - sent < 50000 ? SIZE - sent : 50000;
            assert_int_equal(wr_kcp_send(*kp, send + sent, n), 0);
            sent += n;
        }
        for (size_t n; (n = wr_kcp_recv(*kp, got + rcvd, want - rcvd)) > 0;) {
            if (echo) assert_int_equal(wr_kcp_send(*kp, got + rcvd, n), 0);
            rcvd += n;
        }
        now = now_ms();
        wr_kcp_update(*kp, now);
        if (wr_kcp_check(*kp, now) == now) wr_kcp_flush(*kp, now);
    }
    if (expect) assert_memory_equal(got, expect, rcvd);
    wr_sha256(got, rcvd, digest);
    free(got);
    return rcvd;
}

static void fill(uint8_t *p, size_t n)
{
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

/* warren's KCP dials kcp-go's echo server. */
static void test_warren_client(void **state)
{
    child_t c;
    char line[64], *argv[] = {peer_bin, "echo", NULL};
    uint8_t *data = malloc(SIZE), mine[32], theirs[32];
    uint16_t port, local;
    side_t s = {0};
    wr_kcp_config cfg = {.mtu = 1400, .snd_wnd = 1024, .rcv_wnd = 1024};
    wr_kcp_t *k;
    if (!peer_bin[0]) skip();
    fill(data, SIZE);
    spawn(&c, argv);
    assert_non_null(fgets(line, sizeof line, c.out));
    assert_int_equal(sscanf(line, "port %hu", &port), 1);
    s.fd = udp_socket(&local);
    s.peer.sin_family = AF_INET;
    s.peer.sin_port = htons(port);
    s.peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    wr_kcp_preset("fast2", &cfg);
    k = wr_kcp_new(0x0badf00d, &cfg, udp_out, &s);
    assert_int_equal(run(&s, &k, &cfg, data, SIZE, 0, mine, data), SIZE);
    wr_sha256(data, SIZE, theirs);
    assert_memory_equal(mine, theirs, 32);
    wr_kcp_free(k);
    close(s.fd);
    reap(&c);
    free(data);
}

/* kcp-go dials warren's KCP, which echoes; kcp-go checks the echo and prints its digest. */
static void test_warren_server(void **state)
{
    child_t c;
    char addr[32], line[160], hex[65], *argv[] = {peer_bin, "send", addr, "4194304", "7", NULL};
    uint8_t mine[32];
    uint16_t port;
    side_t s = {0};
    wr_kcp_config cfg = {.mtu = 1400, .snd_wnd = 1024, .rcv_wnd = 1024};
    wr_kcp_t *k = NULL;
    size_t n;
    if (!peer_bin[0]) skip();
    s.fd = udp_socket(&port);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
    wr_kcp_preset("fast2", &cfg);
    spawn(&c, argv);
    assert_int_equal(run(&s, &k, &cfg, NULL, SIZE, 1, mine, NULL), SIZE);
    /* Keep acknowledging until the peer has its echo. */
    {
        uint32_t until = now_ms() + 30000;
        struct pollfd p = {.fd = fileno(c.out), .events = POLLIN};
        while (poll(&p, 1, 0) == 0 && (int32_t)(until - now_ms()) > 0) {
            static uint8_t buf[65536];
            ssize_t r = recv(s.fd, buf, sizeof buf, MSG_DONTWAIT);
            if (r > 0) wr_kcp_input(k, buf, (size_t)r, now_ms());
            wr_kcp_update(k, now_ms());
            usleep(1000);
        }
    }
    assert_non_null(fgets(line, sizeof line, c.out));
    assert_int_equal(sscanf(line, "ok %zu %64s", &n, hex), 2);
    assert_int_equal(n, SIZE);
    for (int i = 0; i < 32; i++) {
        char b[3];
        snprintf(b, sizeof b, "%02x", mine[i]);
        assert_memory_equal(b, hex + 2 * i, 2);
    }
    wr_kcp_free(k);
    close(s.fd);
    reap(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warren_client),
        cmocka_unit_test(test_warren_server),
    };
    return cmocka_run_group_tests(tests, build_peer, remove_peer);
}
