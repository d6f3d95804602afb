/* Proxy request parser: every protocol, fed whole, split at every byte offset and byte by byte,
 * every error path, the reply builders and the relay-reason classifier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wr_proxy_req.h"

/* What a client conversation produced: final status, every reply byte, bytes used. */
typedef struct outcome {
    enum wr_proxy_status st;
    uint8_t replies[4096];
    size_t replies_len;
    size_t used;
    enum wr_proxy_kind kind;
    char host[WR_PROXY_HOST_MAX + 1];
    unsigned port;
    int ipv6;
    char head[WR_PROXY_OUT_MAX + 1];
    size_t head_len;
    uint64_t body_len;
    int upgrade;
    const char *reason;
} outcome;

static wr_proxy_req parser; /* large: keep it off the stack */

/* Feeds `in` in the chunks that `cuts` (ascending offsets) delimit, writing SEND replies out as
 * a client would read them. */
static void drive(const char *user, const char *pass, const uint8_t *in, size_t len,
                  const size_t *cuts, size_t ncuts, outcome *o)
{
    size_t start = 0, c;
    memset(o, 0, sizeof *o);
    wr_proxy_req_init(&parser, user, pass);
    o->st = WR_PROXY_NEED_MORE;
    for (c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : len, off = start;
        for (;;) {
            size_t used = 99999;
            o->st = wr_proxy_req_feed(&parser, in + off, end - off, &used);
            assert_true(used <= end - off);
            assert_true(parser.reply_len <= WR_PROXY_REPLY_MAX);
            off += used;
            o->used += used;
            if (o->st == WR_PROXY_SEND || o->st == WR_PROXY_ERROR) {
                assert_true(o->replies_len + parser.reply_len <= sizeof o->replies);
                memcpy(o->replies + o->replies_len, parser.reply, parser.reply_len);
                o->replies_len += parser.reply_len;
            }
            if (o->st != WR_PROXY_SEND) break;
        }
        if (o->st == WR_PROXY_DONE || o->st == WR_PROXY_ERROR) break;
        start = end;
    }
    o->kind = parser.kind;
    o->reason = parser.reason;
    if (o->st == WR_PROXY_DONE) {
        assert_non_null(memchr(parser.host, '\0', sizeof parser.host));
        strcpy(o->host, parser.host);
        o->port = parser.port;
        o->ipv6 = parser.ipv6;
        assert_true(parser.head_len <= WR_PROXY_OUT_MAX);
        if (parser.head_len) memcpy(o->head, parser.head, parser.head_len);
        o->head_len = parser.head_len;
        o->body_len = parser.body_len;
        o->upgrade = parser.upgrade;
    }
}

static void same_outcome(const outcome *a, const outcome *b, size_t cut)
{
    if (a->st != b->st || a->replies_len != b->replies_len ||
        memcmp(a->replies, b->replies, a->replies_len) != 0 || a->used != b->used ||
        a->kind != b->kind || strcmp(a->host, b->host) != 0 || a->port != b->port ||
        a->head_len != b->head_len || memcmp(a->head, b->head, a->head_len) != 0 ||
        a->body_len != b->body_len || a->upgrade != b->upgrade)
        fail_msg("outcome differs when split at %zu", cut);
}

/* Runs a conversation whole, split at each offset, and byte by byte: all must agree. Returns
 * the whole-run outcome. */
static void converse(const char *user, const char *pass, const void *in, size_t len, outcome *o)
{
    static outcome other;
    static size_t cuts[16384];
    size_t k;
    drive(user, pass, in, len, NULL, 0, o);
    for (k = 0; k <= len; k++) {
        drive(user, pass, in, len, &k, 1, &other);
        same_outcome(o, &other, k);
    }
    assert_true(len <= sizeof cuts / sizeof cuts[0]);
    for (k = 0; k + 1 < len; k++)
        cuts[k] = k + 1;
    drive(user, pass, in, len, cuts, len ? len - 1 : 0, &other);
    same_outcome(o, &other, (size_t)-1);
}

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static void expect_replies(const outcome *o, const uint8_t *want, size_t n)
{
    assert_int_equal(o->replies_len, n);
    assert_memory_equal(o->replies, want, n);
}

/* ---- SOCKS5 ---- */

static void socks5_ipv4_with_payload(void **state)
{
    outcome o;
    converse(NULL, NULL, BYTES(5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90, 'h', 'i'), &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_int_equal(o.kind, WR_PROXY_SOCKS5);
    assert_string_equal(o.host, "127.0.0.1");
    assert_int_equal(o.port, 8080);
    assert_int_equal(o.ipv6, 0);
    assert_int_equal(o.used, 13); /* "hi" is payload */
    expect_replies(&o, BYTES(5, 0));
    assert_int_equal(o.head_len, 0);
}

static void socks5_domain_and_ipv6(void **state)
{
    outcome o;
    char target[WR_PROXY_TARGET_MAX];
    static const uint8_t v6[] = {5, 2, 0, 1, 5, 1, 0, 4, 0, 0, 0, 0, 0,
                                 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xbb};
    converse(NULL, NULL,
             BYTES(5, 1, 0, 5, 1, 0, 3, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm',
                   0, 80),
             &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_string_equal(o.host, "example.com");
    assert_int_equal(o.port, 80);
    assert_int_equal(wr_proxy_req_target(&parser, target, sizeof target), 14);
    assert_string_equal(target, "example.com:80");

    converse(NULL, NULL, v6, sizeof v6, &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_string_equal(o.host, "::1");
    assert_int_equal(o.ipv6, 1);
    assert_int_equal(o.port, 443);
    wr_proxy_req_target(&parser, target, sizeof target);
    assert_string_equal(target, "[::1]:443");

    /* an IPv6 literal sent as a domain name is recognised as one */
    converse(NULL, NULL, BYTES(5, 1, 0, 5, 1, 0, 3, 3, ':', ':', '1', 0, 22), &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_int_equal(o.ipv6, 1);
    wr_proxy_req_target(&parser, target, sizeof target);
    assert_string_equal(target, "[::1]:22");
}

static const uint8_t auth_ok_conv[] = {5,   2,   0,   2, 1, 4, 'u', 's', 'e', 'r', 6, 's', 'e', 'c',
                                       'r', 'e', 't', 5, 1, 0, 1,   10,  0,   0,   1, 0,   22};

static void socks5_username_password(void **state)
{
    outcome o;
    uint8_t wrong[sizeof auth_ok_conv];

    converse("user", "secret", auth_ok_conv, sizeof auth_ok_conv, &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    expect_replies(&o, BYTES(5, 2, 1, 0));
    assert_string_equal(o.host, "10.0.0.1");

    memcpy(wrong, auth_ok_conv, sizeof wrong);
    wrong[12] = 'E'; /* one byte of the password */
    converse("user", "secret", wrong, sizeof wrong, &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    expect_replies(&o, BYTES(5, 2, 1, 1));
    assert_int_equal(o.used, 17); /* the request after the failed auth is not read */
    assert_string_equal(o.reason, "wrong SOCKS5 username or password");

    converse("user", "secret!", auth_ok_conv, sizeof auth_ok_conv, &o); /* password longer */
    assert_int_equal(o.st, WR_PROXY_ERROR);
    converse("use", "secret", auth_ok_conv, sizeof auth_ok_conv, &o); /* user shorter */
    assert_int_equal(o.st, WR_PROXY_ERROR);

    /* required but not offered */
    converse("user", "secret", BYTES(5, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 0, 80), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    expect_replies(&o, BYTES(5, 0xff));

    /* not required, only offered: any credentials do */
    converse(NULL, NULL, BYTES(5, 1, 2, 1, 1, 'x', 0, 5, 1, 0, 1, 1, 2, 3, 4, 0, 80), &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    expect_replies(&o, BYTES(5, 2, 1, 0));

    /* bad sub-negotiation version */
    converse("user", "secret", BYTES(5, 1, 2, 2, 4, 'u', 's', 'e', 'r', 0), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    expect_replies(&o, BYTES(5, 2, 1, 1));
}

static void socks5_errors(void **state)
{
    outcome o;
    /* no method at all, and only methods we do not speak */
    converse(NULL, NULL, BYTES(5, 0), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    expect_replies(&o, BYTES(5, 0xff));
    converse(NULL, NULL, BYTES(5, 2, 1, 3), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    expect_replies(&o, BYTES(5, 0xff));

    /* BIND and UDP ASSOCIATE: command not supported */
    for (uint8_t cmd = 2; cmd <= 4; cmd++) {
        converse(NULL, NULL, BYTES(5, 1, 0, 5, cmd, 0, 1, 1, 2, 3, 4, 0, 80), &o);
        assert_int_equal(o.st, WR_PROXY_ERROR);
        expect_replies(&o, BYTES(5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0));
    }
    /* unknown address type */
    converse(NULL, NULL, BYTES(5, 1, 0, 5, 1, 0, 9), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    expect_replies(&o, BYTES(5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0));
    /* wrong version in the request, empty and bad names, port 0 */
    converse(NULL, NULL, BYTES(5, 1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 0, 80), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    expect_replies(&o, BYTES(5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0));
    converse(NULL, NULL, BYTES(5, 1, 0, 5, 1, 0, 3, 0, 0, 80), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    converse(NULL, NULL, BYTES(5, 1, 0, 5, 1, 0, 3, 3, 'a', ' ', 'b', 0, 80), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    assert_string_equal(o.reason, "bad SOCKS5 host name");
    converse(NULL, NULL, BYTES(5, 1, 0, 5, 1, 0, 3, 3, 'a', 0, 'b', 0, 80), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    converse(NULL, NULL, BYTES(5, 1, 0, 5, 1, 0, 3, 4, '1', '.', '2', '3', 0, 80), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR); /* all-numeric but not an IPv4 address */
    converse(NULL, NULL, BYTES(5, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 0, 0), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    assert_string_equal(o.reason, "SOCKS5 port 0");
}

static void socks5_truncated_needs_more(void **state)
{
    static const uint8_t conv[] = {5, 1, 0, 5, 1, 0, 3, 4, 'h', 'o', 's', 't', 0, 80};
    outcome o;
    for (size_t n = 0; n < sizeof conv; n++) {
        converse(NULL, NULL, conv, n, &o);
        assert_int_equal(o.st, WR_PROXY_NEED_MORE);
        assert_int_equal(o.used, n);
        assert_int_equal(o.replies_len, n >= 3 ? 2 : 0);
    }
}

/* ---- SOCKS4 / 4a ---- */

static void socks4_and_4a(void **state)
{
    outcome o;
    char target[WR_PROXY_TARGET_MAX];
    converse(NULL, NULL, BYTES(4, 1, 0, 80, 127, 0, 0, 1, 'b', 'o', 'b', 0, 'G', 'E', 'T'), &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_int_equal(o.kind, WR_PROXY_SOCKS4);
    assert_string_equal(o.host, "127.0.0.1");
    assert_int_equal(o.port, 80);
    assert_int_equal(o.used, 12);
    assert_int_equal(o.replies_len, 0);

    converse(NULL, NULL,
             BYTES(4, 1, 1, 0xbb, 0, 0, 0, 9, 0, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0),
             &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_string_equal(o.host, "localhost");
    assert_int_equal(o.port, 443);
    wr_proxy_req_target(&parser, target, sizeof target);
    assert_string_equal(target, "localhost:443");
}

static void socks4_errors(void **state)
{
    outcome o;
    static uint8_t big[8 + 300];
    converse(NULL, NULL, BYTES(4, 2, 0, 80, 1, 2, 3, 4, 0), &o); /* BIND */
    assert_int_equal(o.st, WR_PROXY_ERROR);
    expect_replies(&o, BYTES(0, 0x5b, 0, 0, 0, 0, 0, 0));
    converse("u", "p", BYTES(4, 1, 0, 80, 1, 2, 3, 4, 'u', 0), &o); /* no password in SOCKS4 */
    assert_int_equal(o.st, WR_PROXY_ERROR);
    expect_replies(&o, BYTES(0, 0x5b, 0, 0, 0, 0, 0, 0));
    converse(NULL, NULL, BYTES(4, 1, 0, 80, 0, 0, 0, 0, 0), &o); /* 0.0.0.0 */
    assert_int_equal(o.st, WR_PROXY_ERROR);
    converse(NULL, NULL, BYTES(4, 1, 0, 0, 1, 2, 3, 4, 0), &o); /* port 0 */
    assert_int_equal(o.st, WR_PROXY_ERROR);
    converse(NULL, NULL, BYTES(4, 1, 0, 80, 0, 0, 0, 1, 0, 0), &o); /* 4a, empty name */
    assert_int_equal(o.st, WR_PROXY_ERROR);
    converse(NULL, NULL, BYTES(4, 1, 0, 80, 0, 0, 0, 1, 0, 'a', '!', 0), &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);

    memcpy(big, (const uint8_t[]){4, 1, 0, 80, 1, 2, 3, 4}, 8);
    memset(big + 8, 'u', 300);
    converse(NULL, NULL, big, sizeof big, &o); /* userid without end */
    assert_int_equal(o.st, WR_PROXY_ERROR);
    assert_string_equal(o.reason, "SOCKS4 userid too long");
    assert_int_equal(o.used, 8 + 256);
    big[7] = 1;
    big[4] = big[5] = big[6] = 0;
    big[8] = 0;
    converse(NULL, NULL, big, sizeof big, &o); /* 4a name without end */
    assert_int_equal(o.st, WR_PROXY_ERROR);
    assert_string_equal(o.reason, "SOCKS4a host name too long");
}

/* ---- HTTP ---- */

static void converse_text(const char *user, const char *pass, const char *text, outcome *o)
{
    converse(user, pass, text, strlen(text), o);
}

static void http_connect(void **state)
{
    outcome o;
    const char *req = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                      "User-Agent: t\r\n\r\n";
    char with_payload[256];
    snprintf(with_payload, sizeof with_payload, "%s\x16\x03\x01", req);
    converse_text(NULL, NULL, with_payload, &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_int_equal(o.kind, WR_PROXY_HTTP_CONNECT);
    assert_string_equal(o.host, "example.com");
    assert_int_equal(o.port, 443);
    assert_int_equal(o.used, strlen(req));
    assert_int_equal(o.head_len, 0);

    converse_text(NULL, NULL, "CONNECT [::1]:22 HTTP/1.1\r\n\r\n", &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_string_equal(o.host, "::1");
    assert_int_equal(o.ipv6, 1);

    for (const char *const *bad =
             (const char *const[]){
                 "CONNECT example.com HTTP/1.1\r\n\r\n", "CONNECT example.com:0 HTTP/1.1\r\n\r\n",
                 "CONNECT example.com:65536 HTTP/1.1\r\n\r\n", "CONNECT ::1:22 HTTP/1.1\r\n\r\n",
                 "CONNECT [::1 HTTP/1.1\r\n\r\n", "CONNECT [example.com]:1 HTTP/1.1\r\n\r\n",
                 "CONNECT [::1]x HTTP/1.1\r\n\r\n", "CONNECT a:b HTTP/1.1\r\n\r\n", NULL};
         *bad; bad++) {
        converse_text(NULL, NULL, *bad, &o);
        assert_int_equal(o.st, WR_PROXY_ERROR);
        assert_int_equal(o.kind, WR_PROXY_HTTP_CONNECT);
        assert_memory_equal(o.replies, "HTTP/1.1 400 ", 13);
    }
}

static void http_absolute_uri_rewritten(void **state)
{
    outcome o;
    converse_text(NULL, NULL,
                  "GET http://example.com/path?q=1 HTTP/1.1\r\n"
                  "Host: example.com\r\n"
                  "Proxy-Connection: keep-alive\r\n"
                  "User-Agent: curl/8\r\n"
                  "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
                  "Connection: keep-alive\r\n"
                  "Keep-Alive: 300\r\n"
                  "Accept:  */*  \r\n\r\n",
                  &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_int_equal(o.kind, WR_PROXY_HTTP);
    assert_string_equal(o.host, "example.com");
    assert_int_equal(o.port, 80);
    assert_string_equal(o.head, "GET /path?q=1 HTTP/1.1\r\n"
                                "Host: example.com\r\n"
                                "User-Agent: curl/8\r\n"
                                "Accept:  */*  \r\n"
                                "Connection: close\r\n\r\n");

    /* no path, no Host, a port, HTTP/1.0, a fragment */
    converse_text(NULL, NULL, "HEAD http://Example.COM:8080#frag HTTP/1.0\r\n\r\n", &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_int_equal(o.port, 8080);
    assert_string_equal(o.head,
                        "HEAD / HTTP/1.0\r\nHost: Example.COM:8080\r\nConnection: close\r\n\r\n");

    /* the Host header takes the URL's authority, and a query without a path gets one */
    converse_text(NULL, NULL, "GET HTTP://[::1]:81?x HTTP/1.1\r\nhost: elsewhere\r\n\r\n", &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_int_equal(o.ipv6, 1);
    assert_string_equal(o.head, "GET /?x HTTP/1.1\r\nHost: [::1]:81\r\nConnection: close\r\n\r\n");
}

static void http_body_is_payload(void **state)
{
    outcome o;
    const char *head = "POST http://10.1.2.3:9/form HTTP/1.1\r\nContent-Length: 4\r\n\r\n";
    char req[256];
    snprintf(req, sizeof req, "%sbody", head);
    converse_text(NULL, NULL, req, &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_int_equal(o.used, strlen(head));
    assert_string_equal(o.head, "POST /form HTTP/1.1\r\nContent-Length: 4\r\nHost: 10.1.2.3:9\r\n"
                                "Connection: close\r\n\r\n");
    assert_int_equal(o.body_len, 4);
    assert_false(o.upgrade);
}

/* The binding forwards the head and body_len bytes, nothing after: what the body length is must
 * be certain, and a body of unknown length is refused. */
static void http_body_length(void **state)
{
    static const struct {
        const char *req;
        const char *status; /* NULL: accepted */
        uint64_t body_len;
    } cases[] = {
        {"GET http://h/ HTTP/1.1\r\n\r\nGET http://h/2 HTTP/1.1\r\n\r\n", NULL, 0},
        {"POST http://h/ HTTP/1.1\r\ncontent-length: 0\r\n\r\n", NULL, 0},
        {"POST http://h/ HTTP/1.1\r\nContent-Length:  12 \r\n\r\n", NULL, 12},
        {"POST http://h/ HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", NULL, 7},
        {"POST http://h/ HTTP/1.1\r\nContent-Length: 9999999999999999999\r\n\r\n", NULL,
         9999999999999999999u},
        {"POST http://h/ HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n", "400", 0},
        {"POST http://h/ HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n", "400", 0},
        {"POST http://h/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "400", 0},
        {"POST http://h/ HTTP/1.1\r\nContent-Length: +1\r\n\r\n", "400", 0},
        {"POST http://h/ HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", "400", 0},
        {"POST http://h/ HTTP/1.1\r\nContent-Length:\r\n\r\n", "400", 0},
        {"POST http://h/ HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", "400", 0},
        {"POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "411", 0},
        {"POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
         "411", 0},
        {"POST http://h/ HTTP/1.0\r\ntransfer-encoding: gzip, chunked\r\n\r\n", "411", 0},
    };
    outcome o;
    char status[16];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        converse_text(NULL, NULL, cases[i].req, &o);
        if (!cases[i].status) {
            if (o.st != WR_PROXY_DONE) fail_msg("refused: %s", cases[i].req);
            assert_true(o.body_len == cases[i].body_len);
            continue;
        }
        if (o.st != WR_PROXY_ERROR) fail_msg("accepted: %s", cases[i].req);
        snprintf(status, sizeof status, "HTTP/1.1 %s ", cases[i].status);
        if (memcmp(o.replies, status, 13) != 0)
            fail_msg("%s: got %.*s", cases[i].req, 20, (const char *)o.replies);
    }
    /* a pipelined second request is left unread: the binding drops it */
    converse_text(NULL, NULL, cases[0].req, &o);
    assert_int_equal(o.used, strlen("GET http://h/ HTTP/1.1\r\n\r\n"));
    /* CONNECT has no body of its own: its headers do not matter */
    converse_text(NULL, NULL, "CONNECT h:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
}

static void http_upgrade_keeps_connection(void **state)
{
    outcome o;
    converse_text(NULL, NULL,
                  "GET http://h:8080/ws HTTP/1.1\r\nHost: h:8080\r\nUpgrade: websocket\r\n"
                  "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
                  &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_string_equal(o.head, "GET /ws HTTP/1.1\r\nHost: h:8080\r\nUpgrade: websocket\r\n"
                                "Sec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n\r\n");
    assert_true(o.upgrade);
    /* Upgrade without Connection: upgrade is not an upgrade */
    converse_text(NULL, NULL, "GET http://h/ HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", &o);
    assert_non_null(strstr(o.head, "Connection: close\r\n"));
    assert_false(o.upgrade);
}

static void http_errors(void **state)
{
    static const struct {
        const char *req;
        const char *status;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
        {"GET https://example.com/ HTTP/1.1\r\n\r\n", "501"},
        {"GET ftp://example.com/ HTTP/1.1\r\n\r\n", "501"},
        {"GET example.com HTTP/1.1\r\n\r\n", "400"},
        {"GET http://user@example.com/ HTTP/1.1\r\n\r\n", "400"},
        {"GET http:///x HTTP/1.1\r\n\r\n", "400"},
        {"GET http://bad_host!/ HTTP/1.1\r\n\r\n", "400"},
        {"GET http://h/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"},
        {"GET http://h/ HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", "400"},
        {"GET http://h/ HTTP/1.1\r\nno colon here\r\n\r\n", "400"},
        {"GET http://h/ HTTP/1.1\r\n: empty name\r\n\r\n", "400"},
        {"GET http://h/ HTTP/1.1\r\nBad Name: x\r\n\r\n", "400"},
        {"GET http://h/ HTTP/2.0\r\n\r\n", "400"},
        {"GET http://h/ HTTP/1.1 extra\r\n\r\n", "400"},
        {"GET  http://h/ HTTP/1.1\r\n\r\n", "400"},
        {"GET\r\n\r\n", "400"},
        {"GET http://h/\r\n\r\n", "400"},
        {"G(T http://h/ HTTP/1.1\r\n\r\n", "400"},
        {"GET http://h/ HTTP/1.1\nHost: h\n\n", "400"},
        {"GET http://h/ HTTP/1.1\r\rHost: h\r\n\r\n", "400"},
        {"GET http://h/\x01 HTTP/1.1\r\n\r\n", "400"},
        {"GET http://h/\xc3\xa9 HTTP/1.1\r\n\r\n", "400"},
        {"\x16\x03\x01\x02\x00", "400"},
        {"\xff", "400"},
    };
    outcome o;
    char status[16];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        converse_text(NULL, NULL, cases[i].req, &o);
        if (o.st != WR_PROXY_ERROR) fail_msg("accepted: %s", cases[i].req);
        snprintf(status, sizeof status, "HTTP/1.1 %s ", cases[i].status);
        if (o.replies_len < 13 || memcmp(o.replies, status, 13) != 0)
            fail_msg("%s: got %.*s", cases[i].req, 20, (const char *)o.replies);
        assert_non_null(o.reason);
    }
    /* non-ASCII is fine in a header value */
    converse_text(NULL, NULL, "GET http://h/ HTTP/1.1\r\nX-Name: caf\xc3\xa9\r\n\r\n", &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
}

static void http_head_limit(void **state)
{
    static char req[WR_PROXY_HEAD_MAX + 64];
    static const char line[] = "GET http://h/ HTTP/1.1\r\n";
    outcome o;
    size_t n, pad;

    /* exactly at the limit: accepted */
    n = (size_t)sprintf(req, "%sX-Pad: ", line);
    pad = WR_PROXY_HEAD_MAX - n - 4;
    memset(req + n, 'a', pad);
    memcpy(req + n + pad, "\r\n\r\n", 5);
    assert_int_equal(strlen(req), WR_PROXY_HEAD_MAX);
    converse_text(NULL, NULL, req, &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_int_equal(o.used, WR_PROXY_HEAD_MAX);

    /* one byte more: 431 */
    memset(req + n, 'a', pad + 1);
    memcpy(req + n + pad + 1, "\r\n\r\n", 5);
    converse_text(NULL, NULL, req, &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    assert_memory_equal(o.replies, "HTTP/1.1 431 ", 13);
    assert_int_equal(o.used, WR_PROXY_HEAD_MAX);

    /* a request line that never ends: 400 */
    memcpy(req, "GET http://h/", 13);
    memset(req + 13, 'a', sizeof req - 14);
    req[sizeof req - 1] = '\0';
    converse_text(NULL, NULL, req, &o);
    assert_int_equal(o.st, WR_PROXY_ERROR);
    assert_memory_equal(o.replies, "HTTP/1.1 400 ", 13);
    assert_string_equal(o.reason, "request line too long");
}

static void http_basic_auth(void **state)
{
    outcome o;
    /* base64("user:secret") = dXNlcjpzZWNyZXQ= */
    converse_text("user", "secret",
                  "GET http://h/ HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n\r\n",
                  &o);
    assert_int_equal(o.st, WR_PROXY_DONE);
    assert_null(strstr(o.head, "Proxy-Authorization"));
    converse_text("user", "secret",
                  "CONNECT h:443 HTTP/1.1\r\nproxy-authorization: basic   dXNlcjpzZWNyZXQ\r\n\r\n",
                  &o);
    assert_int_equal(o.st, WR_PROXY_DONE);

    for (const char *const *bad =
             (const char *const[]){
                 "GET http://h/ HTTP/1.1\r\n\r\n",
                 "GET http://h/ HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpzZWNyZXN=\r\n\r\n",
                 "GET http://h/ HTTP/1.1\r\nProxy-Authorization: Bearer dXNlcjpzZWNyZXQ=\r\n\r\n",
                 "GET http://h/ HTTP/1.1\r\nProxy-Authorization: Basic dXNl*jpzZWNyZXQ=\r\n\r\n",
                 "CONNECT h:443 HTTP/1.1\r\nProxy-Authorization: Basic\r\n\r\n", NULL};
         *bad; bad++) {
        converse_text("user", "secret", *bad, &o);
        assert_int_equal(o.st, WR_PROXY_ERROR);
        assert_memory_equal(o.replies, "HTTP/1.1 407 ", 13);
        assert_non_null(strstr((const char *)o.replies, "Proxy-Authenticate: Basic"));
    }
}

static void terminal_states_stick(void **state)
{
    size_t used = 7;
    wr_proxy_req_init(&parser, NULL, NULL);
    assert_int_equal(wr_proxy_req_feed(&parser, (const uint8_t *)"", 0, &used), WR_PROXY_NEED_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(wr_proxy_req_feed(&parser, BYTES(4, 1, 0, 80, 1, 2, 3, 4, 0, 9), &used),
                     WR_PROXY_DONE);
    assert_int_equal(used, 9);
    assert_int_equal(wr_proxy_req_feed(&parser, BYTES(1, 2), &used), WR_PROXY_DONE);
    assert_int_equal(used, 0);
    wr_proxy_req_init(&parser, NULL, NULL);
    assert_int_equal(wr_proxy_req_feed(&parser, BYTES(0), &used), WR_PROXY_ERROR);
    assert_int_equal(wr_proxy_req_feed(&parser, BYTES(5, 1, 0), &used), WR_PROXY_ERROR);
    assert_int_equal(used, 0);
}

/* ---- replies and reasons ---- */

static void replies_for_every_class(void **state)
{
    static const uint8_t s5[] = {0, 1, 2, 4, 5, 1, 7, 6, 1};
    static const char *const http[] = {NULL,  "502", "403", "502", "502",
                                       "400", "501", "504", "503"};
    uint8_t out[WR_PROXY_REPLY_MAX];
    size_t n;
    for (int f = WR_PROXY_OK; f <= WR_PROXY_FAIL_UNAVAILABLE; f++) {
        n = wr_proxy_reply(WR_PROXY_SOCKS5, f, NULL, out, sizeof out);
        assert_int_equal(n, 10);
        assert_int_equal(out[0], 5);
        assert_int_equal(out[1], s5[f]);
        assert_int_equal(out[3], 1);
        n = wr_proxy_reply(WR_PROXY_SOCKS4, f, NULL, out, sizeof out);
        assert_int_equal(n, 8);
        assert_int_equal(out[0], 0);
        assert_int_equal(out[1], f == WR_PROXY_OK ? 0x5a : 0x5b);
        for (int k = WR_PROXY_HTTP_CONNECT; k <= WR_PROXY_HTTP; k++) {
            n = wr_proxy_reply(k, f, NULL, out, sizeof out);
            if (f == WR_PROXY_OK) {
                if (k == WR_PROXY_HTTP) {
                    assert_int_equal(n, 0);
                } else {
                    assert_int_equal(n, 39);
                    assert_memory_equal(out, "HTTP/1.1 200 Connection established\r\n\r\n", n);
                }
                continue;
            }
            assert_true(n > 13);
            assert_memory_equal(out + 9, http[f], 3);
            assert_non_null(strstr((const char *)out, "Connection: close\r\n"));
        }
        assert_string_not_equal(wr_proxy_fail_name(f), "");
    }
    assert_int_equal(wr_proxy_reply(WR_PROXY_SOCKS5, WR_PROXY_OK, NULL, out, 9), 0);
}

static void reply_detail_is_bounded_and_printable(void **state)
{
    uint8_t out[WR_PROXY_REPLY_MAX + 1];
    char detail[2000];
    const char *body;
    size_t n, len;
    memset(detail, 'x', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    memcpy(detail, "refused: \r\nSet-Cookie: a=b", 26);
    n = wr_proxy_reply(WR_PROXY_HTTP, WR_PROXY_FAIL_REFUSED, detail, out, WR_PROXY_REPLY_MAX);
    assert_true(n < WR_PROXY_REPLY_MAX);
    out[n] = '\0';
    assert_null(strstr((const char *)out, "\r\nSet-Cookie"));
    body = strstr((const char *)out, "\r\n\r\n") + 4;
    assert_int_equal(
        sscanf(strstr((const char *)out, "Content-Length: "), "Content-Length: %zu", &len), 1);
    assert_int_equal(len, strlen(body));
    assert_memory_equal(body, "warren: refused: ??Set-Cookie", 29);
    assert_int_equal(body[len - 1], '\n');
    /* a tiny buffer never overflows */
    n = wr_proxy_reply(WR_PROXY_HTTP, WR_PROXY_FAIL_GENERAL, "x", out, 20);
    assert_true(n < 20);
}

static void classify_reasons(void **state)
{
    assert_int_equal(wr_proxy_fail_classify("refused: connection refused"), WR_PROXY_FAIL_REFUSED);
    assert_int_equal(wr_proxy_fail_classify("unreachable: no route"), WR_PROXY_FAIL_UNREACHABLE);
    assert_int_equal(wr_proxy_fail_classify("denied: port 25"), WR_PROXY_FAIL_NOT_ALLOWED);
    assert_int_equal(wr_proxy_fail_classify("denied"), WR_PROXY_FAIL_NOT_ALLOWED);
    assert_int_equal(wr_proxy_fail_classify("timeout: 10 s"), WR_PROXY_FAIL_TIMEOUT);
    assert_int_equal(wr_proxy_fail_classify("bad target: x"), WR_PROXY_FAIL_BAD_REQUEST);
    assert_int_equal(wr_proxy_fail_classify("connection refused"), WR_PROXY_FAIL_GENERAL);
    assert_int_equal(wr_proxy_fail_classify("refusedx: y"), WR_PROXY_FAIL_GENERAL);
    assert_int_equal(wr_proxy_fail_classify("Refused: y"), WR_PROXY_FAIL_GENERAL);
    assert_int_equal(wr_proxy_fail_classify("session closed"), WR_PROXY_FAIL_GENERAL);
    assert_int_equal(wr_proxy_fail_classify(""), WR_PROXY_FAIL_GENERAL);
    assert_int_equal(wr_proxy_fail_classify(NULL), WR_PROXY_FAIL_GENERAL);
    assert_string_equal(wr_proxy_kind_name(WR_PROXY_SOCKS4), "socks4");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(socks5_ipv4_with_payload),
        cmocka_unit_test(socks5_domain_and_ipv6),
        cmocka_unit_test(socks5_username_password),
        cmocka_unit_test(socks5_errors),
        cmocka_unit_test(socks5_truncated_needs_more),
        cmocka_unit_test(socks4_and_4a),
        cmocka_unit_test(socks4_errors),
        cmocka_unit_test(http_connect),
        cmocka_unit_test(http_absolute_uri_rewritten),
        cmocka_unit_test(http_body_is_payload),
        cmocka_unit_test(http_body_length),
        cmocka_unit_test(http_upgrade_keeps_connection),
        cmocka_unit_test(http_errors),
        cmocka_unit_test(http_head_limit),
        cmocka_unit_test(http_basic_auth),
        cmocka_unit_test(terminal_states_stick),
        cmocka_unit_test(replies_for_every_class),
        cmocka_unit_test(reply_detail_is_bounded_and_printable),
        cmocka_unit_test(classify_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
