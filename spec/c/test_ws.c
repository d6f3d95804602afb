/* The WebSocket carrier's framing (wr_ws_frame) and upgrade (wr_ws_upgrade): header lengths,
 * masking at any phase, incremental decoding, every RFC 6455 failure with its close status, and
 * the upgrade request, its check and the 101 answer's check. */
#include "wr_http_head.h"
#include "wr_ws_frame.h"
#include "wr_ws_upgrade.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

/* What a decoder handed on: data bytes in order, and each control frame as "op:len;" with its
 * payload appended to data too (so order between the two is kept). */
typedef struct events {
    uint8_t data[1 << 18];
    size_t data_len;
    char log[4096];
    size_t log_len;
    int stop_after_data; /* on_data asks to stop once this many calls happened (0 = never) */
    int data_calls;
} events;

static int on_data(void *ctx, uint8_t *p, size_t len)
{
    events *e = ctx;
    assert_true(e->data_len + len <= sizeof e->data);
    memcpy(e->data + e->data_len, p, len);
    e->data_len += len;
    e->data_calls++;
    return e->stop_after_data && e->data_calls >= e->stop_after_data;
}

static int on_control(void *ctx, enum wr_ws_opcode op, const uint8_t *p, size_t len)
{
    events *e = ctx;
    e->log_len += (size_t)snprintf(e->log + e->log_len, sizeof e->log - e->log_len, "%x:%zu;",
                                   (unsigned)op, len);
    memcpy(e->data + e->data_len, p, len);
    e->data_len += len;
    return 0;
}

static const wr_ws_decoder_cbs cbs = {on_data, on_control};

/* A frame with any header bits (fin, rsv, opcode, mask) and a length written in the given form
 * (len_form 0: 7-bit, 2: 16-bit, 8: 64-bit; -1: the shortest), payload masked with key when
 * key is not NULL. Returns the bytes written. */
static size_t frame(uint8_t *out, int fin, int rsv, int op, const uint8_t *key, const uint8_t *p,
                    uint64_t len, int len_form)
{
    size_t n = 2;
    if (len_form < 0) len_form = len < 126 ? 0 : len <= 0xffff ? 2 : 8;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | op);
    out[1] = key ? 0x80 : 0;
    if (len_form == 0) {
        out[1] |= (uint8_t)len;
    } else if (len_form == 2) {
        out[1] |= 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] |= 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (key) {
        memcpy(out + n, key, 4);
        n += 4;
    }
    if (p) {
        memcpy(out + n, p, (size_t)len);
        if (key)
            for (uint64_t i = 0; i < len; i++)
                out[n + i] ^= key[i & 3];
        n += (size_t)len;
    }
    return n;
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)((i * 131u + seed * 7u) ^ (i >> 8));
}

static void header_lengths(void **state)
{
    static const struct {
        uint64_t len;
        size_t n;
    } cases[] = {{0, 2},      {1, 2},       {125, 2},         {126, 4},        {65535, 4},
                 {65536, 10}, {200000, 10}, {1ull << 40, 10}, {1ull << 62, 10}};
    static const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t h[WR_WS_HEADER_MAX], want[WR_WS_HEADER_MAX];
        size_t n = wr_ws_header(h, WR_WS_BINARY, cases[i].len, NULL);
        assert_int_equal(cases[i].n, n);
        assert_int_equal(n, frame(want, 1, 0, WR_WS_BINARY, NULL, NULL, cases[i].len, -1));
        assert_memory_equal(want, h, n);
        n = wr_ws_header(h, WR_WS_CLOSE, cases[i].len, key);
        assert_int_equal(cases[i].n + 4, n);
        assert_int_equal(n, frame(want, 1, 0, WR_WS_CLOSE, key, NULL, cases[i].len, -1));
        assert_memory_equal(want, h, n);
    }
}

static void masks_in_place_at_every_phase(void **state)
{
    static const uint8_t key[4] = {0x11, 0x82, 0x3c, 0xf7};
    uint8_t orig[67], p[67], want[67];
    (void)state;
    fill(orig, sizeof orig, 3);
    for (uint64_t phase = 0; phase < 12; phase++) {
        for (size_t len = 0; len <= sizeof orig; len++) {
            memcpy(p, orig, len);
            for (size_t i = 0; i < len; i++)
                want[i] = orig[i] ^ key[(phase + i) & 3];
            wr_ws_mask(p, len, key, phase);
            assert_memory_equal(want, p, len);
            wr_ws_mask(p, len, key, phase); /* masking twice gives the bytes back */
            assert_memory_equal(orig, p, len);
        }
    }
    /* A payload masked in pieces, each at its own offset, equals it masked at once. */
    for (size_t cut = 0; cut <= sizeof orig; cut++) {
        memcpy(p, orig, sizeof p);
        wr_ws_mask(p, cut, key, 0);
        wr_ws_mask(p + cut, sizeof p - cut, key, cut);
        memcpy(want, orig, sizeof want);
        wr_ws_mask(want, sizeof want, key, 0);
        assert_memory_equal(want, p, sizeof p);
    }
    /* Phases past 32 bits still cycle by four. */
    memcpy(p, orig, sizeof p);
    wr_ws_mask(p, sizeof p, key, (1ull << 40) + 2);
    memcpy(want, orig, sizeof want);
    wr_ws_mask(want, sizeof want, key, 2);
    assert_memory_equal(want, p, sizeof p);
}

/* A stream of frames: a whole message, one fragmented around a PING, a PONG, a 16-bit and a
 * 64-bit length, an empty binary frame and a CLOSE. */
static size_t sample_stream(uint8_t *out, int masked, uint8_t *payload, size_t *payload_len)
{
    static const uint8_t key1[4] = {1, 2, 3, 4}, key2[4] = {0xf0, 0x0f, 0x55, 0xaa};
    const uint8_t *k1 = masked ? key1 : NULL, *k2 = masked ? key2 : NULL;
    uint8_t body[70000];
    size_t n = 0, pl = 0;
    fill(body, sizeof body, 9);
#define FRAME(fin, op, key, off, len)                                                              \
    do {                                                                                           \
        n += frame(out + n, fin, 0, op, key, body + (off), len, -1);                               \
        memcpy(payload + pl, body + (off), len);                                                   \
        pl += (len);                                                                               \
    } while (0)
    FRAME(1, WR_WS_BINARY, k1, 0, 10);
    FRAME(0, WR_WS_BINARY, k2, 10, 7);
    FRAME(1, WR_WS_PING, k1, 17, 5);
    FRAME(0, WR_WS_CONTINUATION, k2, 22, 300);
    FRAME(1, WR_WS_PONG, k2, 322, 0);
    FRAME(1, WR_WS_CONTINUATION, k1, 322, 125);
    FRAME(1, WR_WS_BINARY, k2, 447, 65535);
    FRAME(1, WR_WS_BINARY, k1, 0, 0);
    FRAME(1, WR_WS_BINARY, k1, 1, 65536);
    FRAME(1, WR_WS_CLOSE, k2, 100, 2);
#undef FRAME
    *payload_len = pl;
    return n;
}

static const char sample_controls[] = "9:5;a:0;8:2;";

static void decodes_byte_by_byte_as_at_once(void **state)
{
    static uint8_t stream[200000], copy[200000], payload[200000];
    static events whole, bytes;
    (void)state;
    for (int masked = 0; masked <= 1; masked++) {
        size_t pl, n = sample_stream(stream, masked, payload, &pl), used;
        wr_ws_decoder d;
        memset(&whole, 0, sizeof whole);
        memset(&bytes, 0, sizeof bytes);
        memcpy(copy, stream, n);
        wr_ws_decoder_init(&d, masked);
        assert_int_equal(0, wr_ws_decode(&d, copy, n, &cbs, &whole, &used));
        assert_int_equal(n, used);
        memcpy(copy, stream, n);
        wr_ws_decoder_init(&d, masked);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(0, wr_ws_decode(&d, copy + i, 1, &cbs, &bytes, &used));
            assert_int_equal(1, used);
        }
        assert_string_equal(sample_controls, whole.log);
        assert_string_equal(sample_controls, bytes.log);
        assert_int_equal(pl, whole.data_len);
        assert_memory_equal(payload, whole.data, pl);
        assert_int_equal(pl, bytes.data_len);
        assert_memory_equal(payload, bytes.data, pl);
        /* Random cuts give the same too. */
        srand(42 + (unsigned)masked);
        memset(&bytes, 0, sizeof bytes);
        memcpy(copy, stream, n);
        wr_ws_decoder_init(&d, masked);
        for (size_t i = 0; i < n;) {
            size_t piece = (size_t)rand() % 3000;
            if (piece > n - i) piece = n - i;
            assert_int_equal(0, wr_ws_decode(&d, copy + i, piece, &cbs, &bytes, &used));
            assert_int_equal(piece, used);
            i += piece;
        }
        assert_string_equal(sample_controls, bytes.log);
        assert_memory_equal(payload, bytes.data, pl);
    }
}

static void control_frames_between_fragments(void **state)
{
    static const uint8_t key[4] = {9, 8, 7, 6};
    uint8_t buf[512], a[40], b[3] = {'p', 'i', 'n'};
    static events e;
    size_t n = 0, used;
    wr_ws_decoder d;
    (void)state;
    fill(a, sizeof a, 1);
    memset(&e, 0, sizeof e);
    n += frame(buf + n, 0, 0, WR_WS_BINARY, key, a, 10, -1);
    n += frame(buf + n, 1, 0, WR_WS_PING, key, b, 3, -1);
    n += frame(buf + n, 0, 0, WR_WS_CONTINUATION, key, a + 10, 10, -1);
    n += frame(buf + n, 1, 0, WR_WS_PONG, key, b, 2, -1);
    n += frame(buf + n, 1, 0, WR_WS_CLOSE, key, NULL, 0, -1);
    n += frame(buf + n, 1, 0, WR_WS_CONTINUATION, key, a + 20, 20, -1);
    n += frame(buf + n, 1, 0, WR_WS_BINARY, key, a, 1, -1); /* a new message after the last */
    wr_ws_decoder_init(&d, 1);
    assert_int_equal(0, wr_ws_decode(&d, buf, n, &cbs, &e, &used));
    assert_int_equal(n, used);
    assert_string_equal("9:3;a:2;8:0;", e.log);
    assert_int_equal(10 + 3 + 10 + 2 + 20 + 1, e.data_len);
    assert_memory_equal(a, e.data, 10);
    assert_memory_equal("pin", e.data + 10, 3);
    assert_memory_equal(a + 10, e.data + 13, 10);
    assert_memory_equal("pi", e.data + 23, 2);
    assert_memory_equal(a + 20, e.data + 25, 20);
    assert_int_equal(a[0], e.data[45]);
}

static void a_callback_stops_decoding_where_it_was(void **state)
{
    uint8_t buf[64], a[20];
    static events e;
    size_t n = 0, used;
    wr_ws_decoder d;
    (void)state;
    fill(a, sizeof a, 5);
    memset(&e, 0, sizeof e);
    e.stop_after_data = 1;
    n += frame(buf + n, 1, 0, WR_WS_BINARY, NULL, a, 5, -1);
    n += frame(buf + n, 1, 0, WR_WS_BINARY, NULL, a + 5, 15, -1);
    wr_ws_decoder_init(&d, 0);
    assert_int_equal(1, wr_ws_decode(&d, buf, n, &cbs, &e, &used));
    assert_int_equal(7, used); /* the first frame, no more */
    e.stop_after_data = 0;
    assert_int_equal(0, wr_ws_decode(&d, buf + used, n - used, &cbs, &e, &used));
    assert_int_equal(n - 7, used);
    assert_int_equal(20, e.data_len);
    assert_memory_equal(a, e.data, 20);
}

/* Decodes the frame in buf with a fresh decoder; returns the status, and checks that the failure
 * sticks. */
static int decode_status(int from_client, uint8_t *buf, size_t n)
{
    static events e;
    wr_ws_decoder d;
    size_t used;
    int rc;
    memset(&e, 0, sizeof e);
    wr_ws_decoder_init(&d, from_client);
    rc = wr_ws_decode(&d, buf, n, &cbs, &e, &used);
    if (rc > 1) {
        uint8_t more[2] = {0x82, 0x00};
        assert_int_equal(rc, wr_ws_decode(&d, more, sizeof more, &cbs, &e, &used));
        assert_int_equal(0, used);
    }
    return rc;
}

static void each_rfc_failure_has_its_status(void **state)
{
    static const uint8_t key[4] = {1, 1, 1, 1};
    static uint8_t buf[1024], p[300];
    size_t n;
    (void)state;
    fill(p, sizeof p, 2);
    for (int rsv = 1; rsv < 8; rsv++) {
        n = frame(buf, 1, rsv, WR_WS_BINARY, key, p, 4, -1);
        assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    }
    n = frame(buf, 1, 0, WR_WS_BINARY, NULL, p, 4, -1); /* a client frame must be masked */
    assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    assert_int_equal(0, decode_status(0, buf, n));
    n = frame(buf, 1, 0, WR_WS_BINARY, key, p, 4, -1); /* a server frame must not be */
    assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(0, buf, n));
    assert_int_equal(0, decode_status(1, buf, n));
    n = frame(buf, 1, 0, WR_WS_TEXT, key, p, 4, -1);
    assert_int_equal(WR_WS_UNSUPPORTED_DATA, decode_status(1, buf, n));
    for (int op = WR_WS_CLOSE; op <= WR_WS_PONG; op++) {
        n = frame(buf, 1, 0, op, key, p, 126, -1); /* control payload over 125 */
        assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
        n = frame(buf, 0, 0, op, key, p, 3, -1); /* a fragmented control frame */
        assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
        n = frame(buf, 1, 0, op, key, p, 125, -1);
        assert_int_equal(0, decode_status(1, buf, n));
    }
    n = frame(buf, 1, 0, WR_WS_BINARY, key, p, 100, 2); /* 16-bit form for a 7-bit length */
    assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    n = frame(buf, 1, 0, WR_WS_BINARY, key, p, 125, 2);
    assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    n = frame(buf, 1, 0, WR_WS_BINARY, key, p, 126, 2);
    assert_int_equal(0, decode_status(1, buf, n));
    n = frame(buf, 1, 0, WR_WS_BINARY, key, p, 200, 8); /* 64-bit form for a 16-bit length */
    assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    n = frame(buf, 1, 0, WR_WS_BINARY, key, NULL, 0xffff, 8);
    assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    n = frame(buf, 1, 0, WR_WS_BINARY, key, NULL, 0x10000, 8);
    assert_int_equal(0, decode_status(1, buf, n));
    n = frame(buf, 1, 0, WR_WS_BINARY, key, NULL, 1ull << 63, 8); /* the top bit is reserved */
    assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    n = frame(buf, 1, 0, WR_WS_BINARY, key, NULL, ~0ull, 8);
    assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    n = frame(buf, 1, 0, WR_WS_CONTINUATION, key, p, 4, -1); /* no message to continue */
    assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    n = frame(buf, 0, 0, WR_WS_BINARY, key, p, 4, -1); /* a new message inside an open one */
    n += frame(buf + n, 1, 0, WR_WS_BINARY, key, p, 4, -1);
    assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    n = frame(buf, 0, 0, WR_WS_BINARY, key, p, 4, -1); /* text inside a binary message */
    n += frame(buf + n, 1, 0, WR_WS_TEXT, key, p, 4, -1);
    assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    for (int op = 3; op < 16; op++) {
        if (op >= WR_WS_CLOSE && op <= WR_WS_PONG) continue;
        n = frame(buf, 1, 0, op, key, p, 4, -1); /* reserved opcodes */
        assert_int_equal(WR_WS_PROTOCOL_ERROR, decode_status(1, buf, n));
    }
}

static void accept_of_the_rfc_example(void **state)
{
    char accept[WR_WS_ACCEPT_LEN + 1];
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
    (void)state;
    wr_ws_accept_for(key, strlen(key), accept);
    assert_string_equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", accept);
}

static const uint8_t token[] = "a first handshake message, as the client would send it";

/* Checks head (a request) with wr_ws_upgrade_check; returns its result. */
static int check_request(const char *head, uint8_t *out, size_t *out_len, char *accept)
{
    static wr_http_head_t h;
    uint8_t scratch[WR_WS_TOKEN_MAX];
    char scratch_accept[WR_WS_ACCEPT_LEN + 1];
    size_t scratch_len;
    int rc;
    wr_http_head_init(&h);
    rc = wr_http_head_parse(&h, head, strlen(head));
    assert_int_equal((int)strlen(head), rc);
    return wr_ws_upgrade_check(&h, out ? out : scratch, WR_WS_TOKEN_MAX,
                               out_len ? out_len : &scratch_len, accept ? accept : scratch_accept);
}

/* The request wr_ws_request builds, with one line replaced (`from` is the start of the line,
 * `to` the whole new line without CRLF, NULL to drop it). */
static void edited(char *out, size_t cap, const char *from, const char *to)
{
    char req[4096], *at, *eol;
    char key[WR_WS_KEY_LEN + 1] = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_true(wr_ws_request(req, sizeof req, "relay.example:8080", "/tunnel", NULL, key, token,
                              sizeof token - 1) > 0);
    at = strstr(req, from);
    assert_non_null(at);
    eol = strstr(at, "\r\n");
    snprintf(out, cap, "%.*s%s%s%s", (int)(at - req), req, to ? to : "", to ? "\r\n" : "", eol + 2);
}

static void upgrade_check_takes_a_real_request(void **state)
{
    char req[4096], key[WR_WS_KEY_LEN + 1], accept[WR_WS_ACCEPT_LEN + 1],
        want[WR_WS_ACCEPT_LEN + 1];
    uint8_t got[WR_WS_TOKEN_MAX];
    size_t got_len = 0, n;
    (void)state;
    assert_int_equal(0, wr_ws_new_key(key));
    assert_int_equal(WR_WS_KEY_LEN, strlen(key));
    n = wr_ws_request(req, sizeof req, "relay.example:8080", "/tunnel", NULL, key, token,
                      sizeof token - 1);
    assert_int_equal(strlen(req), n);
    assert_non_null(strstr(req, "GET /tunnel HTTP/1.1\r\n"));
    assert_non_null(strstr(req, "\r\nHost: relay.example:8080\r\n"));
    assert_int_equal(0, check_request(req, got, &got_len, accept));
    assert_int_equal(sizeof token - 1, got_len);
    assert_memory_equal(token, got, got_len);
    wr_ws_accept_for(key, strlen(key), want);
    assert_string_equal(want, accept);
    /* Too small a buffer is refused, not cut. */
    assert_int_equal(0, wr_ws_request(req, 100, "h", "/", NULL, key, token, sizeof token - 1));
    /* Fields are matched case-insensitively, and Connection is a list. */
    edited(req, sizeof req, "Connection:", "connection: keep-alive, Upgrade");
    assert_int_equal(0, check_request(req, NULL, NULL, NULL));
    edited(req, sizeof req, "Upgrade:", "upgrade: WebSocket");
    assert_int_equal(0, check_request(req, NULL, NULL, NULL));
    edited(req, sizeof req, "GET ", "GET /any/path?x=1 HTTP/1.1");
    assert_int_equal(0, check_request(req, NULL, NULL, NULL));
}

static void upgrade_check_refuses_each_missing_piece(void **state)
{
    static const char *const broken[][2] = {
        {"GET ", "POST /tunnel HTTP/1.1"},
        {"GET ", "GET /tunnel HTTP/1.0"},
        {"Upgrade:", NULL},
        {"Upgrade:", "Upgrade: h2c"},
        {"Connection:", NULL},
        {"Connection:", "Connection: keep-alive"},
        {"Sec-WebSocket-Key:", NULL},
        {"Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"},   /* 22 chars */
        {"Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZXM="}, /* 17 bytes */
        {"Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSEh"}, /* 18 bytes */
        {"Sec-WebSocket-Key:", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q=="}, /* not base64 */
        {"Sec-WebSocket-Version:", NULL},
        {"Sec-WebSocket-Version:", "Sec-WebSocket-Version: 8"},
        {"Authorization:", NULL},
        {"Authorization:", "Authorization: Basic dXNlcjpwYXNz"},
        {"Authorization:", "Authorization: Bearer "},
        {"Authorization:", "Authorization: Bearer !!not base64!!"},
    };
    char req[4096];
    (void)state;
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        edited(req, sizeof req, broken[i][0], broken[i][1]);
        assert_int_equal(UV_EINVAL, check_request(req, NULL, NULL, NULL));
    }
}

static void the_client_checks_the_101(void **state)
{
    char key[WR_WS_KEY_LEN + 1], accept[WR_WS_ACCEPT_LEN + 1], ans[512], why[256];
    size_t n;
    (void)state;
    assert_int_equal(0, wr_ws_new_key(key));
    wr_ws_accept_for(key, strlen(key), accept);
    n = wr_ws_response(ans, sizeof ans, accept);
    assert_int_equal(strlen(ans), n);
    assert_int_equal((int)n, wr_ws_response_check(ans, n, key, why, sizeof why));
    for (size_t cut = 0; cut < n; cut++) /* an answer still coming in */
        assert_int_equal(0, wr_ws_response_check(ans, cut, key, why, sizeof why));
    /* Frames right behind the head are not part of it. */
    memcpy(ans + n, "\x82\x01x", 3);
    assert_int_equal((int)n, wr_ws_response_check(ans, n + 3, key, why, sizeof why));
    static const char forbidden[] = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(UV_EPROTO,
                     wr_ws_response_check(forbidden, strlen(forbidden), key, why, sizeof why));
    assert_non_null(
        strstr(why, "answered the WebSocket upgrade with \"HTTP/1.1 403 Forbidden\": wrong key"));
    static const char not_http[] = "SSH-2.0-OpenSSH_9.2\r\n\r\n";
    assert_int_equal(UV_EPROTO,
                     wr_ws_response_check(not_http, strlen(not_http), key, why, sizeof why));
    assert_string_equal("the relay's answer to the WebSocket upgrade is not HTTP", why);
    char other[WR_WS_KEY_LEN + 1];
    assert_int_equal(0, wr_ws_new_key(other));
    assert_int_equal(UV_EPROTO, wr_ws_response_check(ans, n, other, why, sizeof why));
    assert_string_equal("the relay's 101 answer has a wrong Sec-WebSocket-Accept", why);
    snprintf(ans, sizeof ans,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
             "Sec-WebSocket-Accept: %s\r\n\r\n",
             accept);
    assert_int_equal(UV_EPROTO, wr_ws_response_check(ans, strlen(ans), key, why, sizeof why));
    assert_string_equal("the relay's 101 answer does not upgrade to websocket", why);
    /* A head that never ends is refused once it passes the limit. */
    char *big = malloc(WR_WS_RESPONSE_MAX + 1);
    assert_non_null(big);
    memset(big, 'x', WR_WS_RESPONSE_MAX + 1);
    memcpy(big, "HTTP/1.1 101 ", 13);
    assert_int_equal(UV_EPROTO,
                     wr_ws_response_check(big, WR_WS_RESPONSE_MAX + 1, key, why, sizeof why));
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_lengths),
        cmocka_unit_test(masks_in_place_at_every_phase),
        cmocka_unit_test(decodes_byte_by_byte_as_at_once),
        cmocka_unit_test(control_frames_between_fragments),
        cmocka_unit_test(a_callback_stops_decoding_where_it_was),
        cmocka_unit_test(each_rfc_failure_has_its_status),
        cmocka_unit_test(accept_of_the_rfc_example),
        cmocka_unit_test(upgrade_check_takes_a_real_request),
        cmocka_unit_test(upgrade_check_refuses_each_missing_piece),
        cmocka_unit_test(the_client_checks_the_101),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
