/* The WebSocket carrier's frame codec against another implementation, the wslay library's frame
 * API: frames of many sizes, masked and unmasked, data and control, written by one and read by
 * the other, byte-exact; with the same mask key both write the very same bytes. */
#include "wr_ws_frame.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include <cmocka.h>

static const uint64_t sizes[] = {0, 1, 2, 3, 4, 5, 125, 126, 127, 65535, 65536, 65537, 200000};

/* The wire between the two: what wslay writes, or what it reads (up to a chosen piece size per
 * read, so its own buffering is crossed at odd places). */
typedef struct wire {
    uint8_t *buf;
    size_t len, cap, pos;
    size_t piece;
    uint8_t mask_key[4];
} wire;

static ssize_t wire_send(const uint8_t *data, size_t len, int flags, void *user)
{
    wire *w = user;
    (void)flags;
    if (w->len + len > w->cap) {
        w->cap = (w->len + len) * 2;
        w->buf = realloc(w->buf, w->cap);
        assert_non_null(w->buf);
    }
    memcpy(w->buf + w->len, data, len);
    w->len += len;
    return (ssize_t)len;
}

static ssize_t wire_recv(uint8_t *buf, size_t len, int flags, void *user)
{
    wire *w = user;
    size_t n = w->len - w->pos;
    (void)flags;
    if (n > len) n = len;
    if (w->piece && n > w->piece) n = w->piece;
    memcpy(buf, w->buf + w->pos, n);
    w->pos += n;
    return (ssize_t)n; /* 0: nothing more, wslay reports WANT_READ */
}

static int wire_genmask(uint8_t *buf, size_t len, void *user)
{
    wire *w = user;
    assert_int_equal(4, len);
    memcpy(buf, w->mask_key, 4);
    return 0;
}

static const struct wslay_frame_callbacks wire_cbs = {wire_send, wire_recv, wire_genmask};

static uint8_t *pattern(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len ? len : 1);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(((i + seed) * 2654435761u) >> 13);
    return p;
}

/* Our encoding of one final frame: header, then the payload masked in place. */
static size_t our_frame(uint8_t *out, enum wr_ws_opcode op, const uint8_t *p, size_t len,
                        const uint8_t *key)
{
    size_t n = wr_ws_header(out, op, len, key);
    memcpy(out + n, p, len);
    if (key) wr_ws_mask(out + n, len, key, 0);
    return n + len;
}

/* wslay's encoding of one frame, payload handed over in pieces of `piece` bytes. */
static void wslay_frame(wire *w, int fin, uint8_t op, const uint8_t *p, size_t len, int masked,
                        size_t piece)
{
    wslay_frame_context_ptr ctx;
    struct wslay_frame_iocb io;
    size_t off = 0;
    assert_int_equal(0, wslay_frame_context_init(&ctx, &wire_cbs, w));
    do {
        size_t n = len - off < piece ? len - off : piece;
        ssize_t r;
        memset(&io, 0, sizeof io);
        io.fin = (uint8_t)fin;
        io.opcode = op;
        io.mask = (uint8_t)masked;
        io.payload_length = len;
        io.data = p + off;
        io.data_length = n;
        r = wslay_frame_send(ctx, &io);
        assert_true(r >= 0);
        off += (size_t)r;
    } while (off < len);
    wslay_frame_context_free(ctx);
}

/* Reads frames from w with wslay until the wire is empty: appends every payload byte to out and
 * checks each frame's header fields against the expected ones. Returns the frames read. */
static int wslay_read(wire *w, uint8_t op, int masked, uint64_t len, uint8_t *out, size_t *out_len)
{
    wslay_frame_context_ptr ctx;
    struct wslay_frame_iocb io;
    int frames = 0;
    uint64_t in_frame = 0;
    assert_int_equal(0, wslay_frame_context_init(&ctx, &wire_cbs, w));
    for (;;) {
        ssize_t r = wslay_frame_recv(ctx, &io);
        if (r == WSLAY_ERR_WANT_READ) {
            if (w->pos == w->len) break;
            continue;
        }
        assert_true(r >= 0);
        assert_int_equal(1, io.fin);
        assert_int_equal(0, io.rsv);
        assert_int_equal(op, io.opcode);
        assert_int_equal(masked, io.mask);
        assert_int_equal(len, io.payload_length);
        memcpy(out + *out_len, io.data, io.data_length);
        *out_len += io.data_length;
        in_frame += io.data_length;
        if (in_frame == io.payload_length) {
            frames++;
            in_frame = 0;
        }
    }
    wslay_frame_context_free(ctx);
    assert_int_equal(0, in_frame);
    return frames;
}

typedef struct received {
    uint8_t *data;
    size_t len;
    int controls;
    int last_op;
} received;

static int got_data(void *ctx, uint8_t *p, size_t len)
{
    received *r = ctx;
    memcpy(r->data + r->len, p, len);
    r->len += len;
    return 0;
}

static int got_control(void *ctx, enum wr_ws_opcode op, const uint8_t *p, size_t len)
{
    received *r = ctx;
    memcpy(r->data + r->len, p, len);
    r->len += len;
    r->controls++;
    r->last_op = op;
    return 0;
}

static const wr_ws_decoder_cbs our_cbs = {got_data, got_control};

/* Decodes w's bytes with our decoder, in pieces of `piece` bytes. */
static void our_read(wire *w, int from_client, size_t piece, received *r)
{
    wr_ws_decoder d;
    wr_ws_decoder_init(&d, from_client);
    for (size_t i = 0; i < w->len;) {
        size_t n = w->len - i < piece ? w->len - i : piece, used;
        assert_int_equal(0, wr_ws_decode(&d, w->buf + i, n, &our_cbs, r, &used));
        assert_int_equal(n, used);
        i += n;
    }
    assert_int_equal(0, d.in_payload); /* ends on a frame boundary */
}

static void ours_read_by_wslay(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int masked = 0; masked <= 1; masked++) {
            size_t len = (size_t)sizes[i], got_len = 0;
            uint8_t *p = pattern(len, (unsigned)i), *got = malloc(len + 1);
            uint8_t key[4] = {0x37, (uint8_t)i, 0xc4, 0x5e};
            wire w = {0};
            w.cap = len + WR_WS_HEADER_MAX;
            w.buf = malloc(w.cap);
            assert_non_null(w.buf);
            w.len = our_frame(w.buf, WR_WS_BINARY, p, len, masked ? key : NULL);
            w.piece = 1000 + i;
            assert_int_equal(1, wslay_read(&w, WSLAY_BINARY_FRAME, masked, len, got, &got_len));
            assert_int_equal(len, got_len);
            if (len) assert_memory_equal(p, got, len);
            free(w.buf);
            free(got);
            free(p);
        }
}

static void wslay_read_by_ours(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int masked = 0; masked <= 1; masked++) {
            size_t len = (size_t)sizes[i];
            uint8_t *p = pattern(len, (unsigned)i + 100);
            received r = {malloc(len + 1), 0, 0, 0};
            wire w = {0};
            w.mask_key[0] = 0xa5;
            w.mask_key[1] = (uint8_t)i;
            w.mask_key[2] = 0x00;
            w.mask_key[3] = 0xff;
            wslay_frame(&w, 1, WSLAY_BINARY_FRAME, p, len, masked, 4096);
            /* The very same bytes as ours with that key. */
            uint8_t *mine = malloc(len + WR_WS_HEADER_MAX);
            assert_non_null(mine);
            size_t n = our_frame(mine, WR_WS_BINARY, p, len, masked ? w.mask_key : NULL);
            assert_int_equal(n, w.len);
            assert_memory_equal(mine, w.buf, n);
            free(mine);
            our_read(&w, masked, 777, &r);
            assert_int_equal(len, r.len);
            if (len) assert_memory_equal(p, r.data, len);
            assert_int_equal(0, r.controls);
            free(r.data);
            free(w.buf);
            free(p);
        }
}

/* A message wslay writes in fragments (first frame, continuations of many sizes), with control
 * frames between them, read whole by ours; and control frames of every length both ways. */
static void fragments_and_control_frames(void **state)
{
    static const size_t parts[] = {1, 0, 125, 126, 65535, 65536, 3};
    size_t total = 0, off = 0;
    (void)state;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        total += parts[i];
    for (int masked = 0; masked <= 1; masked++) {
        uint8_t *p = pattern(total, 7), ping[125];
        received r = {malloc(total + 1000), 0, 0, 0};
        wire w = {0};
        memset(ping, 'p', sizeof ping);
        memcpy(w.mask_key, "\x01\x02\x03\x04", 4);
        off = 0;
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
            int last = i + 1 == sizeof parts / sizeof parts[0];
            wslay_frame(&w, last, i ? WSLAY_CONTINUATION_FRAME : WSLAY_BINARY_FRAME, p + off,
                        parts[i], masked, 1 << 20);
            off += parts[i];
            if (!last) wslay_frame(&w, 1, WSLAY_PING, ping, 4, masked, 125);
        }
        our_read(&w, masked, 4093, &r);
        assert_int_equal(sizeof parts / sizeof parts[0] - 1, r.controls);
        assert_int_equal(WR_WS_PING, r.last_op);
        /* Data and the pings' payloads, in order. */
        off = 0;
        size_t at = 0;
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
            assert_memory_equal(p + off, r.data + at, parts[i]);
            off += parts[i];
            at += parts[i];
            if (i + 1 < sizeof parts / sizeof parts[0]) {
                assert_memory_equal("pppp", r.data + at, 4);
                at += 4;
            }
        }
        assert_int_equal(at, r.len);
        free(r.data);
        free(w.buf);
        free(p);
    }
    for (int op = WR_WS_CLOSE; op <= WR_WS_PONG; op++)
        for (size_t len = 0; len <= WR_WS_CONTROL_MAX; len += 31) {
            uint8_t *p = pattern(len, (unsigned)op), got[WR_WS_CONTROL_MAX + 1];
            uint8_t key[4] = {9, 9, (uint8_t)len, 9};
            size_t got_len = 0;
            received r = {got, 0, 0, 0};
            wire w = {0};
            memcpy(w.mask_key, key, 4);
            wslay_frame(&w, 1, (uint8_t)op, p, len, 1, 125);
            our_read(&w, 1, 5, &r);
            assert_int_equal(1, r.controls);
            assert_int_equal(op, r.last_op);
            assert_int_equal(len, r.len);
            if (len) assert_memory_equal(p, got, len);
            w.len = our_frame(w.buf, (enum wr_ws_opcode)op, p, len, NULL);
            w.pos = 0;
            w.piece = 2;
            assert_int_equal(1, wslay_read(&w, (uint8_t)op, 0, len, got, &got_len));
            assert_int_equal(len, got_len);
            if (len) assert_memory_equal(p, got, len);
            free(w.buf);
            free(p);
        }
}

/* What wslay calls a protocol error, ours does too. */
static void both_refuse_the_same_headers(void **state)
{
    static const uint8_t bad[][10] = {
        {0x89, 0x7e, 0x00, 0x7e},                   /* PING of 126 */
        {0x09, 0x01, 'x'},                          /* fragmented PING */
        {0x82, 0x7e, 0x00, 0x7d},                   /* 16-bit form of 125 */
        {0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, /* 64-bit form of 65535 */
        {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0},    /* the top bit set */
    };
    static const size_t lens[] = {4, 3, 4, 10, 10};
    (void)state;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t copy[10];
        wire w = {0};
        wslay_frame_context_ptr ctx;
        struct wslay_frame_iocb io;
        wr_ws_decoder d;
        size_t used;
        received r = {copy, 0, 0, 0};
        w.buf = malloc(sizeof copy);
        memcpy(w.buf, bad[i], lens[i]);
        w.len = lens[i];
        assert_int_equal(0, wslay_frame_context_init(&ctx, &wire_cbs, &w));
        ssize_t rc;
        do
            rc = wslay_frame_recv(ctx, &io);
        while (rc == WSLAY_ERR_WANT_READ && w.pos < w.len);
        assert_int_equal(WSLAY_ERR_PROTO, rc);
        wslay_frame_context_free(ctx);
        memcpy(copy, bad[i], lens[i]);
        wr_ws_decoder_init(&d, 0);
        assert_int_equal(WR_WS_PROTOCOL_ERROR,
                         wr_ws_decode(&d, copy, lens[i], &our_cbs, &r, &used));
        free(w.buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ours_read_by_wslay),
        cmocka_unit_test(wslay_read_by_ours),
        cmocka_unit_test(fragments_and_control_frames),
        cmocka_unit_test(both_refuse_the_same_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
