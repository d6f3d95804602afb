/* The fallback site (wr_site) on real loopback sockets: a libuv loop in its own thread listens on
 * 127.0.0.1 and hands each connection to wr_site_take, while the tests talk to it as plain
 * blocking clients, and through curl run as a child process. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "wr_buf.h"
#include "wr_http_head.h"
#include "wr_io.h"
#include "wr_site.h"
#include "wr_tcp_endpoint.h"

#define HELLO     "0123456789abcdefghijklmnopqrstuvwxyz\n"
#define BIG_SIZE  (3 * 1024 * 1024 + 4321)
#define HEAD_MS   1000
#define IDLE_MS   1500
#define SIDE_OPEN ((size_t)-1)

static char dir[64];

/* ---- the server thread ---- */

static struct {
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t stop;
    wr_listener_t *listener;
    wr_site_t *site;
    sem_t ready;
    int port;
    atomic_int front; /* the next connection's first bytes are read before the hand-over */
    size_t live_chunks;
    int take_errors;
} srv;

static void front_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    /* What the front door does: it read some bytes to classify them, then gives them back. */
    wr_endpoint_read_stop(ep);
    if (wr_site_take(srv.site, ep, base, len) != 0) srv.take_errors++;
}

static void front_eof(wr_endpoint_t *ep)
{
    wr_endpoint_close(ep, WR_CLOSE_GRACEFUL);
}

static const wr_endpoint_cbs_t front_cbs = {.on_read = front_read, .on_eof = front_eof};

static void on_connection(wr_listener_t *l, int status)
{
    uv_tcp_t *tcp;
    if (status < 0 || wr_listener_accept(l, &tcp) < 0) return;
    wr_endpoint_t *ep = wr_tcp_endpoint_new(tcp);
    if (ep == NULL) {
        wr_tcp_close_free(tcp);
        return;
    }
    if (atomic_exchange(&srv.front, 0)) {
        wr_endpoint_set_callbacks(ep, &front_cbs, NULL);
        wr_endpoint_read_start(ep);
    } else if (wr_site_take(srv.site, ep, NULL, 0) != 0) {
        srv.take_errors++;
    }
}

static void on_stop(uv_async_t *a)
{
    wr_listener_close(srv.listener);
    wr_site_free(srv.site);
    uv_close((uv_handle_t *)a, NULL);
}

static void *server_main(void *arg)
{
    char *err = NULL;
    uv_loop_init(&srv.loop);
    srv.site = wr_site_new(&srv.loop, dir, &err);
    if (srv.site == NULL) {
        fprintf(stderr, "wr_site_new: %s\n", err);
        free(err);
        srv.port = -1;
        sem_post(&srv.ready);
        return NULL;
    }
    wr_site_set_timeouts(srv.site, HEAD_MS, IDLE_MS);
    uv_async_init(&srv.loop, &srv.stop, on_stop);
    if (wr_listen(&srv.loop, "127.0.0.1", 0, 64, on_connection, NULL, &srv.listener) == 0)
        srv.port = wr_listener_port(srv.listener);
    else
        srv.port = -1;
    sem_post(&srv.ready);
    uv_run(&srv.loop, UV_RUN_DEFAULT);
    wr_buf_stats_t st;
    wr_buf_get_stats(&st);
    srv.live_chunks = st.live; /* chunks are counted per thread: check them here */
    wr_buf_cache_trim();
    wr_tcp_endpoint_cache_trim();
    uv_loop_close(&srv.loop);
    return NULL;
}

/* ---- the site's files ---- */

static char big_byte(size_t i)
{
    return (char)((i * 7 + i / 65536) & 0xff);
}

static void put_file(const char *name, const char *data, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void put_dir(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(mkdir(path, 0755), 0);
}

static void put_link(const char *name, const char *target)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(symlink(target, path), 0);
}

static int group_setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    strcpy(dir, "/tmp/wr_site_XXXXXX");
    assert_non_null(mkdtemp(dir));
    put_file("index.html", "<h1>home</h1>\n", 14);
    put_file("hello.txt", HELLO, strlen(HELLO));
    put_file("style.css", "body{}\n", 7);
    put_file("noext", "x", 1);
    put_file("a b.txt", "spaced\n", 7);
    put_file("empty.txt", "", 0);
    put_file(".secret", "secret\n", 7);
    put_dir("sub");
    put_file("sub/index.html", "sub index\n", 10);
    put_dir("nodex");
    put_dir(".well-known");
    put_file(".well-known/acme.txt", "acme\n", 5);
    put_link("link_in", "hello.txt");
    put_link("link_out", "/etc/passwd");
    put_link("dirlink_out", "/etc");
    put_link("link_secret", ".secret");
    char *big = malloc(BIG_SIZE);
    assert_non_null(big);
    for (size_t i = 0; i < BIG_SIZE; i++)
        big[i] = big_byte(i);
    put_file("big.bin", big, BIG_SIZE);
    free(big);

    sem_init(&srv.ready, 0, 0);
    assert_int_equal(pthread_create(&srv.thread, NULL, server_main, NULL), 0);
    sem_wait(&srv.ready);
    assert_true(srv.port > 0);
    return 0;
}

/* ---- a blocking client ---- */

typedef struct client {
    int fd;
    char buf[1 << 16];
    size_t len;
} client_t;

typedef struct resp {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
} resp_t;

static void cli_open(client_t *c)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)srv.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    c->len = 0;
    assert_true(c->fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void cli_send(client_t *c, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

static void cli_sends(client_t *c, const char *s)
{
    cli_send(c, s, strlen(s));
}

/* More bytes into the buffer; 0 at EOF or reset. */
static ssize_t cli_fill(client_t *c)
{
    if (c->len == sizeof(c->buf)) return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n < 0 && errno == ECONNRESET) return 0;
    if (n < 0) fail_msg("recv: %s", strerror(errno));
    c->len += (size_t)n;
    return n;
}

/* The value of a response header (case-insensitive name), or NULL; copied to a static buffer. */
static const char *hdr(const resp_t *r, const char *name)
{
    static char val[1024];
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r");
            snprintf(val, sizeof(val), "%.*s", (int)vl, v);
            return val;
        }
    }
    return NULL;
}

/* Reads one response; a HEAD answer and 304 have no body, others have Content-Length bytes. */
static void cli_response(client_t *c, resp_t *r, int head_only)
{
    char *end;
    memset(r, 0, sizeof(*r));
    while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
        if (cli_fill(c) <= 0) fail_msg("connection ended before a response head");
    size_t hl = (size_t)(end - c->buf) + 4;
    assert_true(hl < sizeof(r->head));
    memcpy(r->head, c->buf, hl);
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
    memmove(c->buf, c->buf + hl, c->len - hl);
    c->len -= hl;
    const char *cl = hdr(r, "Content-Length");
    size_t want = cl && !head_only && r->status != 304 ? strtoul(cl, NULL, 10) : 0;
    r->body = malloc(want + 1);
    while (r->body_len < want) {
        if (c->len == 0 && cli_fill(c) <= 0) fail_msg("connection ended inside a body");
        size_t n = c->len < want - r->body_len ? c->len : want - r->body_len;
        memcpy(r->body + r->body_len, c->buf, n);
        r->body_len += n;
        memmove(c->buf, c->buf + n, c->len - n);
        c->len -= n;
    }
    r->body[r->body_len] = '\0';
}

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* Whether the server ends the connection (EOF or reset) within ms, with no more bytes. */
static int cli_ends(client_t *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char b[256];
    ssize_t n = recv(c->fd, b, sizeof(b), 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void cli_close(client_t *c)
{
    close(c->fd);
    c->fd = -1;
}

/* One request on a fresh connection. */
static void fetch(const char *raw, resp_t *r)
{
    client_t *c = malloc(sizeof(*c));
    cli_open(c);
    cli_sends(c, raw);
    cli_response(c, r, strncmp(raw, "HEAD ", 5) == 0);
    cli_close(c);
    free(c);
}

static int get_status(const char *path, resp_t *r)
{
    char raw[12288];
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    fetch(raw, r);
    return r->status;
}

/* ---- tests ---- */

static void serves_files_with_types(void **state)
{
    resp_t r;
    assert_int_equal(get_status("/hello.txt", &r), 200);
    assert_string_equal(r.body, HELLO);
    assert_string_equal(hdr(&r, "Content-Type"), "text/plain");
    assert_string_equal(hdr(&r, "Content-Length"), "37");
    assert_string_equal(hdr(&r, "Accept-Ranges"), "bytes");
    assert_non_null(hdr(&r, "ETag"));
    assert_int_equal(strlen(hdr(&r, "Last-Modified")), 29);
    assert_int_equal(strlen(hdr(&r, "Date")), 29);
    assert_string_equal(hdr(&r, "Connection"), "keep-alive");
    assert_null(hdr(&r, "Server"));
    resp_free(&r);

    assert_int_equal(get_status("/style.css", &r), 200);
    assert_string_equal(hdr(&r, "Content-Type"), "text/css");
    resp_free(&r);
    assert_int_equal(get_status("/noext", &r), 200);
    assert_string_equal(hdr(&r, "Content-Type"), "application/octet-stream");
    resp_free(&r);
    assert_int_equal(get_status("/a%20b.txt", &r), 200);
    assert_string_equal(r.body, "spaced\n");
    resp_free(&r);
    assert_int_equal(get_status("/empty.txt", &r), 200);
    assert_int_equal(r.body_len, 0);
    resp_free(&r);
    assert_int_equal(get_status("/hello.txt?v=1#frag", &r), 200);
    resp_free(&r);
    /* Absolute form, and HTTP/1.0 without Host. */
    fetch("GET http://example.org/hello.txt HTTP/1.1\r\nHost: example.org\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, HELLO);
    resp_free(&r);
}

static void directories_index_and_redirect(void **state)
{
    resp_t r;
    assert_int_equal(get_status("/", &r), 200);
    assert_string_equal(r.body, "<h1>home</h1>\n");
    assert_string_equal(hdr(&r, "Content-Type"), "text/html");
    resp_free(&r);
    assert_int_equal(get_status("/sub/", &r), 200);
    assert_string_equal(r.body, "sub index\n");
    resp_free(&r);
    assert_int_equal(get_status("/sub", &r), 301);
    assert_string_equal(hdr(&r, "Location"), "/sub/");
    assert_non_null(strstr(r.body, "301"));
    resp_free(&r);
    assert_int_equal(get_status("/sub?a=1&b=2", &r), 301);
    assert_string_equal(hdr(&r, "Location"), "/sub/?a=1&b=2");
    resp_free(&r);
    /* A directory with no index.html: no listing. */
    assert_int_equal(get_status("/nodex/", &r), 404);
    assert_string_equal(hdr(&r, "Content-Type"), "text/html");
    assert_non_null(strstr(r.body, "404 Not Found"));
    resp_free(&r);
    assert_int_equal(get_status("/missing.html", &r), 404);
    resp_free(&r);
    /* A file named as a directory is not found, as with nginx. */
    assert_int_equal(get_status("/hello.txt/", &r), 404);
    resp_free(&r);
}

static void no_traversal(void **state)
{
    static const struct {
        const char *path;
        int status;
    } cases[] = {
        {"/../etc/passwd", 400},
        {"/../../../../../etc/passwd", 400},
        {"/%2e%2e/etc/passwd", 400},
        {"/%2E%2E/%2E%2E/etc/passwd", 400},
        {"/sub/../../etc/passwd", 400},
        {"/..%2fetc%2fpasswd", 404},
        {"/..%2Fetc/passwd", 404},
        {"/%2e%2e%2f%2e%2e%2fetc/passwd", 404},
        {"/..%5c..%5cetc%5cpasswd", 404},
        {"/hello.txt%00", 400},
        {"/hello.txt%00.html", 400},
        {"/%zz", 400},
        {"/%2", 400},
        {"/link_out", 404},
        {"/dirlink_out/passwd", 404},
        {"/dirlink_out/", 404},
        {"/.secret", 404},
        {"/link_secret", 404},
        {"/%2esecret", 404},
        {"/sub/../.secret", 404},
        {"/%252e%252e/etc/passwd", 404}, /* decoded once: a file literally named "%2e%2e" */
    };
    resp_t r;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int st = get_status(cases[i].path, &r);
        if (st != cases[i].status) fail_msg("%s: %d, not %d", cases[i].path, st, cases[i].status);
        assert_null(strstr(r.body, "root:"));
        resp_free(&r);
    }
    /* What stays inside is served, however it is spelled. */
    static const char *const inside[] = {"/link_in",    "/sub/../hello.txt", "/./hello.txt",
                                         "//hello.txt", "/%68ello.txt",      "/sub/./../hello.txt"};
    for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++) {
        if (get_status(inside[i], &r) != 200) fail_msg("%s: %d", inside[i], r.status);
        assert_string_equal(r.body, HELLO);
        resp_free(&r);
    }
    assert_int_equal(get_status("/.well-known/acme.txt", &r), 200);
    assert_string_equal(r.body, "acme\n");
    resp_free(&r);
}

static void resolve_is_pure_and_bounded(void **state)
{
    char out[64];
    int d;
    assert_int_equal(wr_site_resolve("/srv", "/a/./b/../c/", 12, out, sizeof(out), &d), 0);
    assert_string_equal(out, "/srv/a/c");
    assert_int_equal(d, 1);
    assert_int_equal(wr_site_resolve("/srv", "/a/b", 4, out, sizeof(out), &d), 0);
    assert_string_equal(out, "/srv/a/b");
    assert_int_equal(d, 0);
    assert_int_equal(wr_site_resolve("/srv", "/", 1, out, sizeof(out), &d), 0);
    assert_string_equal(out, "/srv");
    assert_int_equal(d, 1);
    assert_int_equal(wr_site_resolve("/", "/etc/../x", 9, out, sizeof(out), &d), 0);
    assert_string_equal(out, "/x");
    assert_int_equal(wr_site_resolve("/", "/", 1, out, sizeof(out), &d), 0);
    assert_string_equal(out, "/");
    assert_int_equal(wr_site_resolve("/srv", "/a/..", 5, out, sizeof(out), &d), 0);
    assert_string_equal(out, "/srv");
    assert_int_equal(wr_site_resolve("/srv", "/..", 3, out, sizeof(out), &d), UV_EINVAL);
    assert_int_equal(wr_site_resolve("/srv", "a", 1, out, sizeof(out), &d), UV_EINVAL);
    assert_int_equal(wr_site_resolve("/srv", "/a\0b", 4, out, sizeof(out), &d), UV_EINVAL);
    assert_int_equal(wr_site_resolve("/srv", "/a\\b", 4, out, sizeof(out), &d), UV_ENOENT);
    char longp[200];
    memset(longp, 'a', sizeof(longp));
    longp[0] = '/';
    assert_int_equal(wr_site_resolve("/srv", longp, sizeof(longp), out, sizeof(out), &d),
                     UV_ENAMETOOLONG);
}

static void head_requests(void **state)
{
    client_t *c = malloc(sizeof(*c));
    resp_t r;
    cli_open(c);
    cli_sends(c, "HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_response(c, &r, 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Length"), "37");
    resp_free(&r);
    /* No body came with it: the next answer starts right away. */
    cli_sends(c, "HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_response(c, &r, 1);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    cli_sends(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, HELLO);
    resp_free(&r);
    cli_close(c);
    free(c);
}

static void ranges(void **state)
{
    resp_t r;
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=10-19\r\n\r\n", &r);
    assert_int_equal(r.status, 206);
    assert_string_equal(r.body, "abcdefghij");
    assert_string_equal(hdr(&r, "Content-Range"), "bytes 10-19/37");
    resp_free(&r);
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=30-\r\n\r\n", &r);
    assert_int_equal(r.status, 206);
    assert_string_equal(r.body, "uvwxyz\n");
    resp_free(&r);
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=-4\r\n\r\n", &r);
    assert_int_equal(r.status, 206);
    assert_string_equal(r.body, "xyz\n");
    assert_string_equal(hdr(&r, "Content-Range"), "bytes 33-36/37");
    resp_free(&r);
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=30-1000\r\n\r\n", &r);
    assert_int_equal(r.status, 206);
    assert_string_equal(hdr(&r, "Content-Range"), "bytes 30-36/37");
    resp_free(&r);
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=-100\r\n\r\n", &r);
    assert_int_equal(r.status, 206);
    assert_string_equal(r.body, HELLO);
    resp_free(&r);
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=37-\r\n\r\n", &r);
    assert_int_equal(r.status, 416);
    assert_string_equal(hdr(&r, "Content-Range"), "bytes */37");
    resp_free(&r);
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=-0\r\n\r\n", &r);
    assert_int_equal(r.status, 416);
    resp_free(&r);
    /* Several ranges, a reversed one, another unit: the whole file. */
    static const char *const whole[] = {"bytes=0-1,5-6", "bytes=5-2", "lines=1-2", "bytes=x-"};
    for (size_t i = 0; i < 4; i++) {
        char raw[256];
        snprintf(raw, sizeof(raw), "GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: %s\r\n\r\n",
                 whole[i]);
        fetch(raw, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, HELLO);
        resp_free(&r);
    }
    /* If-Range: the range only while the client's copy is current. */
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    char etag[64];
    snprintf(etag, sizeof(etag), "%s", hdr(&r, "ETag"));
    resp_free(&r);
    char raw[256];
    snprintf(raw, sizeof(raw),
             "GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\nIf-Range: %s\r\n\r\n",
             etag);
    fetch(raw, &r);
    assert_int_equal(r.status, 206);
    resp_free(&r);
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\nIf-Range: \"old\"\r\n\r\n",
          &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* A range across chunk boundaries of a big file. */
    fetch("GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=65530-200000\r\n\r\n", &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body_len, 200000 - 65530 + 1);
    for (size_t i = 0; i < r.body_len; i++)
        if (r.body[i] != big_byte(65530 + i)) fail_msg("byte %zu differs", 65530 + i);
    resp_free(&r);
}

static void conditional_requests(void **state)
{
    resp_t r;
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    char etag[64], lm[64], raw[512];
    snprintf(etag, sizeof(etag), "%s", hdr(&r, "ETag"));
    snprintf(lm, sizeof(lm), "%s", hdr(&r, "Last-Modified"));
    resp_free(&r);

    snprintf(raw, sizeof(raw), "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: %s\r\n\r\n",
             etag);
    fetch(raw, &r);
    assert_int_equal(r.status, 304);
    assert_string_equal(hdr(&r, "ETag"), etag);
    assert_null(hdr(&r, "Content-Length"));
    resp_free(&r);
    snprintf(raw, sizeof(raw),
             "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"a\", W/%s\r\n\r\n", etag);
    fetch(raw, &r);
    assert_int_equal(r.status, 304);
    resp_free(&r);
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\n\r\n", &r);
    assert_int_equal(r.status, 304);
    resp_free(&r);
    snprintf(raw, sizeof(raw),
             "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"other\"\r\n"
             "If-Modified-Since: %s\r\n\r\n",
             lm);
    fetch(raw, &r); /* If-None-Match decides alone */
    assert_int_equal(r.status, 200);
    resp_free(&r);
    snprintf(raw, sizeof(raw),
             "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: %s\r\n\r\n", lm);
    fetch(raw, &r);
    assert_int_equal(r.status, 304);
    resp_free(&r);
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\n"
          "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n\r\n",
          &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    fetch("GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: yesterday\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void methods_and_bodies(void **state)
{
    client_t *c = malloc(sizeof(*c));
    resp_t r;
    cli_open(c);
    /* A POST gets 405 and its body is skipped; so is a GET's. The connection stays usable. */
    cli_sends(c, "POST /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                 "GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                 "DELETE / HTTP/1.1\r\nHost: t\r\n\r\n"
                 "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(hdr(&r, "Allow"), "GET, HEAD");
    resp_free(&r);
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, HELLO);
    resp_free(&r);
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "body{}\n");
    resp_free(&r);
    cli_close(c);

    /* A body too large to skip, and a chunked one: answered, then closed. */
    cli_open(c);
    cli_sends(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\nxx");
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 413);
    assert_string_equal(hdr(&r, "Connection"), "close");
    resp_free(&r);
    assert_true(cli_ends(c, 2000));
    cli_close(c);
    cli_open(c);
    cli_sends(c, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(hdr(&r, "Connection"), "close");
    resp_free(&r);
    assert_true(cli_ends(c, 2000));
    cli_close(c);
    free(c);
}

static void malformed_requests(void **state)
{
    static const struct {
        const char *raw;
        int status;
    } cases[] = {
        {"GARBAGE\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n\r\n", 400}, /* no Host */
        {"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n", 400},
        {"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400},
        {"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505},
    };
    resp_t r;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        client_t *c = malloc(sizeof(*c));
        cli_open(c);
        cli_sends(c, cases[i].raw);
        cli_response(c, &r, 0);
        if (r.status != cases[i].status)
            fail_msg("case %zu: %d, not %d", i, r.status, cases[i].status);
        assert_string_equal(hdr(&r, "Connection"), "close");
        resp_free(&r);
        assert_true(cli_ends(c, 2000));
        cli_close(c);
        free(c);
    }

    /* Limits: a head over 16 KiB, too many fields, a very long target. */
    size_t big = 20000;
    char *raw = malloc(big + 128);
    int n = snprintf(raw, 128, "GET / HTTP/1.1\r\nHost: t\r\nX: ");
    memset(raw + n, 'a', big);
    strcpy(raw + n + big, "\r\n\r\n");
    fetch(raw, &r);
    assert_int_equal(r.status, 431);
    resp_free(&r);
    n = snprintf(raw, 128, "GET / HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 150; i++)
        n += snprintf(raw + n, 16, "X%d: y\r\n", i);
    strcpy(raw + n, "\r\n");
    fetch(raw, &r);
    assert_int_equal(r.status, 431);
    resp_free(&r);
    n = snprintf(raw, 128, "GET /");
    memset(raw + n, 'a', 9000);
    strcpy(raw + n + 9000, " HTTP/1.1\r\nHost: t\r\n\r\n");
    fetch(raw, &r);
    assert_int_equal(r.status, 414);
    resp_free(&r);
    free(raw);
}

static void keep_alive_and_pipelining(void **state)
{
    client_t *c = malloc(sizeof(*c));
    resp_t r;
    cli_open(c);
    /* Three at once, answered in order, with a big file among them. */
    cli_sends(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                 "HEAD /index.html HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /sub/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    usleep(200 * 1000); /* the client is slow to read: the site waits on its queue */
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, HELLO);
    resp_free(&r);
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, BIG_SIZE);
    for (size_t i = 0; i < r.body_len; i++)
        if (r.body[i] != big_byte(i)) fail_msg("byte %zu differs", i);
    resp_free(&r);
    cli_response(c, &r, 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Length"), "14");
    resp_free(&r);
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "sub index\n");
    assert_string_equal(hdr(&r, "Connection"), "close");
    resp_free(&r);
    assert_true(cli_ends(c, 2000));
    cli_close(c);

    /* HTTP/1.0: closed after one answer, unless it asks for keep-alive. */
    cli_open(c);
    cli_sends(c, "GET /hello.txt HTTP/1.0\r\n\r\n");
    cli_response(c, &r, 0);
    assert_string_equal(hdr(&r, "Connection"), "close");
    assert_string_equal(r.body, HELLO);
    resp_free(&r);
    assert_true(cli_ends(c, 2000));
    cli_close(c);
    cli_open(c);
    cli_sends(c, "GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cli_response(c, &r, 0);
    assert_string_equal(hdr(&r, "Connection"), "keep-alive");
    resp_free(&r);
    cli_sends(c, "GET /style.css HTTP/1.0\r\n\r\n");
    cli_response(c, &r, 0);
    assert_string_equal(r.body, "body{}\n");
    resp_free(&r);
    assert_true(cli_ends(c, 2000));
    cli_close(c);

    /* A client that sends its request and half-closes still gets the whole answer. */
    cli_open(c);
    cli_sends(c, "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    shutdown(c->fd, SHUT_WR);
    cli_response(c, &r, 0);
    assert_int_equal(r.body_len, BIG_SIZE);
    resp_free(&r);
    assert_true(cli_ends(c, 2000));
    cli_close(c);
    free(c);
}

/* A reader with a tiny receive buffer that pauses: the site stops reading the file while the
 * connection's queue is full, and every byte still arrives in order. */
static void slow_reader_gets_everything(void **state)
{
    client_t *c = malloc(sizeof(*c));
    resp_t r;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)srv.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    c->len = 0;
    int small = 4096;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cli_sends(c, "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000000-\r\n\r\n");
    usleep(500 * 1000);
    cli_response(c, &r, 0);
    assert_int_equal(r.body_len, BIG_SIZE);
    for (size_t i = 0; i < r.body_len; i++)
        if (r.body[i] != big_byte(i)) fail_msg("byte %zu differs", i);
    resp_free(&r);
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body_len, BIG_SIZE - 1000000);
    for (size_t i = 0; i < r.body_len; i++)
        if (r.body[i] != big_byte(1000000 + i)) fail_msg("byte %zu differs", 1000000 + i);
    resp_free(&r);
    cli_close(c);
    free(c);
}

static void first_bytes_from_the_front_door(void **state)
{
    client_t *c = malloc(sizeof(*c));
    resp_t r;
    atomic_store(&srv.front, 1);
    cli_open(c);
    cli_sends(c, "GET /hello.txt HT");
    usleep(100 * 1000); /* the front door reads these alone and hands them over */
    cli_sends(c, "TP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_response(c, &r, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, HELLO);
    resp_free(&r);
    cli_response(c, &r, 0);
    assert_string_equal(r.body, "body{}\n");
    resp_free(&r);
    cli_close(c);

    /* A whole request in the first bytes. */
    atomic_store(&srv.front, 1);
    cli_open(c);
    cli_sends(c, "GET /sub/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    cli_response(c, &r, 0);
    assert_string_equal(r.body, "sub index\n");
    resp_free(&r);
    assert_true(cli_ends(c, 2000));
    cli_close(c);
    free(c);
    assert_int_equal(srv.take_errors, 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void timeouts(void **state)
{
    client_t *c = malloc(sizeof(*c));
    resp_t r;
    /* Silent connection: closed after the head timeout. */
    double t0 = now_s();
    cli_open(c);
    assert_true(cli_ends(c, 4000));
    double dt = now_s() - t0;
    assert_true(dt > HEAD_MS / 1000.0 * 0.8 && dt < HEAD_MS / 1000.0 + 1.5);
    cli_close(c);

    /* Slowloris: a header line every 200 ms never buys more time than the head timeout. */
    t0 = now_s();
    cli_open(c);
    cli_sends(c, "GET / HTTP/1.1\r\n");
    int ended = 0;
    for (int i = 0; i < 20 && !ended; i++) {
        usleep(200 * 1000);
        if (send(c->fd, "X: y\r\n", 6, MSG_NOSIGNAL) < 0)
            ended = 1;
        else
            ended = cli_ends(c, 1);
    }
    if (!ended) ended = cli_ends(c, 2000);
    assert_true(ended);
    assert_true(now_s() - t0 < HEAD_MS / 1000.0 + 1.5);
    cli_close(c);

    /* Keep-alive: idle connections go after the idle timeout. */
    cli_open(c);
    cli_sends(c, "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    cli_response(c, &r, 0);
    resp_free(&r);
    t0 = now_s();
    assert_true(cli_ends(c, 4000));
    dt = now_s() - t0;
    assert_true(dt > IDLE_MS / 1000.0 * 0.8 && dt < IDLE_MS / 1000.0 + 1.5);
    cli_close(c);
    free(c);
}

/* ---- curl ---- */

static int have_curl(void)
{
    return system("curl --version >/dev/null 2>&1") == 0;
}

/* Runs curl with args against the site; returns its output (head and body, -i) or NULL. */
static char *curl(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "curl -sS -i --max-time 10 %s 2>&1", args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 20, len = 0, n;
    char *out = malloc(cap);
    while (len < cap - 1 && (n = fread(out + len, 1, cap - 1 - len, p)) > 0)
        len += n;
    out[len] = '\0';
    assert_int_equal(pclose(p), 0);
    return out;
}

static void with_curl(void **state)
{
    if (!have_curl()) skip();
    char args[512], *out;
    const char *base = "http://127.0.0.1";

    snprintf(args, sizeof(args), "-r 10-19 %s:%d/hello.txt", base, srv.port);
    out = curl(args);
    assert_non_null(strstr(out, "HTTP/1.1 206 Partial Content\r\n"));
    assert_non_null(strstr(out, "Content-Range: bytes 10-19/37\r\n"));
    assert_non_null(strstr(out, "\r\n\r\nabcdefghij"));
    free(out);

    snprintf(args, sizeof(args), "-I %s:%d/hello.txt", base, srv.port);
    out = curl(args);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "Content-Length: 37\r\n"));
    assert_null(strstr(out, "0123456789"));
    free(out);

    snprintf(args, sizeof(args), "--path-as-is %s:%d/../../../etc/passwd", base, srv.port);
    out = curl(args);
    assert_true(strstr(out, "HTTP/1.1 400 ") || strstr(out, "HTTP/1.1 404 "));
    assert_null(strstr(out, "root:"));
    free(out);

    snprintf(args, sizeof(args), "--path-as-is %s:%d/%%2e%%2e/%%2e%%2e/etc/passwd", base, srv.port);
    out = curl(args);
    assert_true(strstr(out, "HTTP/1.1 400 ") || strstr(out, "HTTP/1.1 404 "));
    assert_null(strstr(out, "root:"));
    free(out);

    /* -z FILE sends If-Modified-Since with the file's own time. */
    snprintf(args, sizeof(args), "-z %s/hello.txt %s:%d/hello.txt", dir, base, srv.port);
    out = curl(args);
    assert_non_null(strstr(out, "HTTP/1.1 304 Not Modified\r\n"));
    free(out);
    snprintf(args, sizeof(args), "-z '1 Jan 2001' %s:%d/hello.txt", base, srv.port);
    out = curl(args);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    free(out);

    /* A redirect followed, then another file on the same connection. */
    snprintf(args, sizeof(args),
             "-o /dev/null -o /dev/null -w '%%{http_code} %%{num_redirects} %%{num_connects}\\n' "
             "-L %s:%d/sub %s:%d/big.bin",
             base, srv.port, base, srv.port);
    out = curl(args);
    assert_non_null(strstr(out, "200 1 1\n200 0 0\n"));
    free(out);
}

/* ---- the head parser alone ---- */

static void head_parser_incremental(void **state)
{
    const char *req = "\r\nGET /x?y HTTP/1.1\r\nHost:  a  \r\nConnection: close, Foo\r\n"
                      "Content-Length: 4\r\n\r\nbodyGET";
    wr_http_head_t *h = malloc(sizeof(*h));
    wr_http_head_init(h);
    size_t len = strlen(req);
    int rc = 0;
    for (size_t i = 1; i <= len && rc == 0; i++)
        rc = wr_http_head_parse(h, req, i);
    assert_int_equal(rc, (int)(strstr(req, "body") - req));
    assert_int_equal(h->method, HTTP_GET);
    assert_int_equal(h->major, 1);
    assert_int_equal(h->minor, 1);
    assert_int_equal(h->keep_alive, 0);
    assert_int_equal(h->has_length, 1);
    assert_int_equal(h->content_length, 4);
    assert_int_equal(h->url_len, 4);
    assert_memory_equal(h->url, "/x?y", 4);
    const wr_http_field_t *f = wr_http_head_field(h, "host");
    assert_non_null(f);
    assert_int_equal(f->value_len, 1);
    assert_int_equal(f->value[0], 'a');
    f = wr_http_head_field(h, "CONNECTION");
    assert_true(wr_http_list_has(f->value, f->value_len, "foo"));
    assert_false(wr_http_list_has(f->value, f->value_len, "keep-alive"));
    assert_null(wr_http_head_field(h, "Upgrade"));
    /* A moved buffer: the result follows it. */
    char *copy = strdup(req);
    assert_int_equal(wr_http_head_parse(h, copy, len), rc);
    assert_ptr_equal(h->url, copy + 6);
    free(copy);
    free(h);
}

static int group_teardown(void **state)
{
    /* Connections still open when the site goes: one mid-head, one idle. */
    client_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    cli_open(a);
    cli_open(b);
    cli_sends(a, "GET / HTTP/1.1\r\n");
    usleep(50 * 1000);
    uv_async_send(&srv.stop);
    pthread_join(srv.thread, NULL);
    assert_true(cli_ends(a, 2000));
    assert_true(cli_ends(b, 2000));
    cli_close(a);
    cli_close(b);
    free(a);
    free(b);
    assert_int_equal(srv.live_chunks, 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void site_new_checks_dir(void **state)
{
    uv_loop_t l;
    char *err = NULL;
    uv_loop_init(&l);
    assert_null(wr_site_new(&l, "/nonexistent/dir", &err));
    assert_non_null(strstr(err, "/nonexistent/dir"));
    free(err);
    char file[128];
    snprintf(file, sizeof(file), "%s/hello.txt", dir);
    assert_null(wr_site_new(&l, file, &err));
    assert_non_null(strstr(err, "not a directory"));
    free(err);
    wr_site_t *s = wr_site_new(&l, "/tmp/../tmp/", &err);
    assert_non_null(s);
    assert_string_equal(wr_site_root(s), "/tmp");
    wr_site_free(s);
    uv_loop_close(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(head_parser_incremental),
        cmocka_unit_test(resolve_is_pure_and_bounded),
        cmocka_unit_test(site_new_checks_dir),
        cmocka_unit_test(serves_files_with_types),
        cmocka_unit_test(directories_index_and_redirect),
        cmocka_unit_test(no_traversal),
        cmocka_unit_test(head_requests),
        cmocka_unit_test(ranges),
        cmocka_unit_test(conditional_requests),
        cmocka_unit_test(methods_and_bodies),
        cmocka_unit_test(malformed_requests),
        cmocka_unit_test(keep_alive_and_pipelining),
        cmocka_unit_test(slow_reader_gets_everything),
        cmocka_unit_test(first_bytes_from_the_front_door),
        cmocka_unit_test(with_curl),
        cmocka_unit_test(timeouts),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
