/* Frame codec: round trips in every split, cross-backend, tampering, limits, rekey, exhaustion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wr_frame.h"

static uint8_t key[32];

static int setup(void **state)
{
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(0xa0 + i);
    return 0;
}

/* What a test stream contains. */
struct spec {
    uint8_t type, flags;
    uint32_t sid;
    size_t len;
};

static const struct spec specs[] = {
    {WR_FT_OPEN, 0, 1, 12},       {WR_FT_DATA, 0, 1, 1},  {WR_FT_DATA, 1, 1, 16384},
    {WR_FT_WINDOW, 0, 1, 4},      {WR_FT_PING, 0, 0, 8},  {WR_FT_DATA, 0, 0xfffffffe, 100},
    {WR_FT_EOF, 0x80, 1, 0},      {WR_FT_DATA, 0, 7, 15}, {WR_FT_DATA, 0, 7, 17},
    {WR_FT_SESSION_END, 0, 0, 0},
};
#define NSPECS (sizeof specs / sizeof specs[0])

static void fill(uint8_t *p, size_t len, size_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed * 131 + i * 7);
}

/* Seals the spec list into out; returns the stream length. */
static size_t seal_stream(wr_frame_sealer *s, uint8_t *out, size_t cap)
{
    static uint8_t payload[WR_FRAME_MAX_LIMIT];
    size_t total = 0, n;
    for (size_t i = 0; i < NSPECS; i++) {
        fill(payload, specs[i].len, i);
        assert_int_equal(wr_frame_seal(s, out + total, cap - total, specs[i].type, specs[i].flags,
                                       specs[i].sid, payload, specs[i].len, &n),
                         WR_FRAME_OK);
        assert_true(n >= WR_FRAME_WIRE_SIZE(specs[i].len));
        total += n;
    }
    return total;
}

/* Feeds stream in chunks of `chunk` bytes (each chunk its own buffer, like socket reads) and
 * checks every frame against specs. Returns the first negative code, or the frame count. */
static int feed_chunks(wr_frame_opener *o, const uint8_t *stream, size_t len, size_t chunk,
                       int check)
{
    uint8_t *buf = malloc(chunk);
    static uint8_t want[WR_FRAME_MAX_LIMIT];
    size_t got = 0;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk, pos = 0;
        memcpy(buf, stream + off, n);
        while (pos < n || n == 0) {
            wr_frame f;
            size_t used;
            int rc = wr_frame_open(o, buf + pos, n - pos, &used, &f);
            pos += used;
            if (rc < 0) {
                free(buf);
                return rc;
            }
            if (rc == WR_FRAME_NEED_MORE) {
                assert_int_equal(pos, n);
                break;
            }
            if (check) {
                assert_true(got < NSPECS);
                assert_int_equal(f.type, specs[got].type);
                assert_int_equal(f.flags, specs[got].flags);
                assert_int_equal(f.stream_id, specs[got].sid);
                assert_int_equal(f.len, specs[got].len);
                fill(want, f.len, got);
                if (f.len)
                    assert_memory_equal(f.payload, want, f.len);
                else
                    assert_null(f.payload);
            }
            got++;
        }
    }
    free(buf);
    return (int)got;
}

static uint8_t stream[2 * 65536], copy[2 * 65536];

static void test_roundtrip_every_chunk_size(void **state)
{
    wr_frame_sealer s;
    size_t len;
    assert_int_equal(
        wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, NULL), 0);
    len = seal_stream(&s, stream, sizeof stream);
    wr_frame_sealer_free(&s);
    /* 1..64 byte chunks, then larger ones, then the whole stream at once (in place) */
    for (size_t chunk = 1; chunk <= len; chunk = chunk < 64 ? chunk + 1 : chunk * 3) {
        wr_frame_opener o;
        assert_int_equal(
            wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, NULL), 0);
        assert_int_equal(feed_chunks(&o, stream, len, chunk, 1), NSPECS);
        assert_int_equal(wr_frame_opener_need(&o), WR_FRAME_HDR_WIRE);
        wr_frame_opener_free(&o);
    }
    {
        wr_frame_opener o;
        assert_int_equal(
            wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, NULL), 0);
        assert_int_equal(feed_chunks(&o, stream, len, len, 1), NSPECS);
        assert_null(o.buf); /* one contiguous buffer: nothing copied, nothing allocated */
        wr_frame_opener_free(&o);
    }
}

/* Random splits, many times. */
static void test_roundtrip_random_splits(void **state)
{
    wr_frame_sealer s;
    size_t len;
    srand(12345);
    assert_int_equal(wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_AES256_GCM, key, NULL),
                     0);
    len = seal_stream(&s, stream, sizeof stream);
    wr_frame_sealer_free(&s);
    for (int round = 0; round < 200; round++) {
        wr_frame_opener o;
        size_t off = 0, got = 0;
        assert_int_equal(
            wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_AES256_GCM, key, NULL), 0);
        memcpy(copy, stream, len);
        while (off < len) {
            size_t n = (size_t)rand() % 3000, used;
            wr_frame f;
            int rc;
            if (n > len - off) n = len - off;
            rc = wr_frame_open(&o, copy + off, n, &used, &f);
            assert_true(rc >= 0);
            off += used;
            if (rc == WR_FRAME_OK) {
                assert_int_equal(f.len, specs[got].len);
                got++;
            }
        }
        assert_int_equal(got, NSPECS);
        wr_frame_opener_free(&o);
    }
}

/* mbedTLS seals, libcrypto opens, and the other way round, for both ciphers. */
static void test_cross_backend(void **state)
{
    static const enum wr_backend bs[] = {WR_BACKEND_MBEDTLS, WR_BACKEND_LIBCRYPTO};
    if (!wr_crypto_backend_available(WR_BACKEND_LIBCRYPTO)) skip();
    for (int alg = WR_AEAD_CHACHA20_POLY1305; alg <= WR_AEAD_AES256_GCM; alg++) {
        for (int i = 0; i < 2; i++) {
            wr_frame_sealer s;
            wr_frame_opener o;
            wr_frame_opts opts = {.rekey_interval = 4}; /* rekeys cross backends too */
            size_t len;
            assert_int_equal(wr_frame_sealer_init(&s, bs[i], alg, key, &opts), 0);
            len = seal_stream(&s, stream, sizeof stream);
            assert_true(s.rekeys == 2);
            wr_frame_sealer_free(&s);
            assert_int_equal(wr_frame_opener_init(&o, bs[1 - i], alg, key, &opts), 0);
            assert_int_equal(feed_chunks(&o, stream, len, 1000, 1), NSPECS);
            assert_true(o.rekeys == 2);
            wr_frame_opener_free(&o);
        }
    }
}

/* Every single-bit flip of the recorded stream ends the session at the damaged frame, after
 * delivering exactly the intact frames before it. */
static void test_bitflip_stream(void **state)
{
    wr_frame_sealer s;
    size_t len, bounds[NSPECS + 1], n = 0;
    static const struct spec small[] = {
        {WR_FT_OPEN, 0, 1, 5}, {WR_FT_DATA, 0, 1, 33}, {WR_FT_EOF, 0, 1, 0}, {WR_FT_RST, 2, 9, 1}};
    uint8_t payload[64];
    assert_int_equal(
        wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, NULL), 0);
    bounds[0] = 0;
    for (size_t i = 0; i < 4; i++) {
        size_t w;
        fill(payload, small[i].len, i);
        assert_int_equal(wr_frame_seal(&s, stream + n, sizeof stream - n, small[i].type,
                                       small[i].flags, small[i].sid, payload, small[i].len, &w),
                         0);
        n += w;
        bounds[i + 1] = n;
    }
    len = n;
    wr_frame_sealer_free(&s);
    for (size_t byte = 0; byte < len; byte++) {
        size_t frame = 0;
        while (bounds[frame + 1] <= byte)
            frame++;
        for (int bit = 0; bit < 8; bit++) {
            wr_frame_opener o;
            size_t off = 0, got = 0, used;
            wr_frame f;
            int rc;
            memcpy(copy, stream, len);
            copy[byte] ^= (uint8_t)(1 << bit);
            assert_int_equal(
                wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, NULL),
                0);
            for (;;) {
                rc = wr_frame_open(&o, copy + off, len - off, &used, &f);
                off += used;
                if (rc != WR_FRAME_OK) break;
                got++;
            }
            /* a flipped length may ask for more than the stream has, or exceed the limit */
            assert_true(rc == WR_FRAME_EAUTH);
            assert_int_equal(got, frame);
            assert_int_equal(wr_frame_open(&o, copy, len, &used, &f), WR_FRAME_EDEAD);
            wr_frame_opener_free(&o);
        }
    }
}

/* Any prefix gives NEED_MORE with the right count, and yields only complete frames. */
static void test_truncation(void **state)
{
    wr_frame_sealer s;
    uint8_t p[100];
    size_t n, used;
    wr_frame f;
    fill(p, sizeof p, 1);
    assert_int_equal(
        wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, NULL), 0);
    assert_int_equal(wr_frame_seal(&s, stream, sizeof stream, WR_FT_DATA, 0, 3, p, 100, &n), 0);
    assert_int_equal(n, 24 + 100 + 16);
    for (size_t cut = 0; cut < n; cut++) {
        wr_frame_opener o;
        assert_int_equal(
            wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, NULL), 0);
        memcpy(copy, stream, n);
        assert_int_equal(wr_frame_open(&o, copy, cut, &used, &f), WR_FRAME_NEED_MORE);
        assert_int_equal(used, cut);
        /* the header comes first; only once it is open is the payload length known */
        assert_int_equal(wr_frame_opener_need(&o), cut < 24 ? 24 - cut : n - cut);
        /* the rest completes it */
        assert_int_equal(wr_frame_open(&o, copy + cut, n - cut, &used, &f), WR_FRAME_OK);
        assert_int_equal(f.len, 100);
        assert_memory_equal(f.payload, p, 100);
        wr_frame_opener_free(&o);
    }
    wr_frame_sealer_free(&s);
}

/* An over-limit length is refused from the header alone: no payload read, no buffer. */
static void test_length_limit(void **state)
{
    wr_frame_sealer s;
    wr_frame_opener o;
    wr_frame_opts big = {.max_payload = WR_FRAME_MAX_LIMIT}, bad = {.max_payload = 65536};
    static uint8_t p[WR_FRAME_MAX_LIMIT];
    size_t n, used;
    wr_frame f;
    assert_int_equal(
        wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, &bad),
        WR_FRAME_EINVAL);
    assert_int_equal(
        wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, &big), 0);
    assert_int_equal(wr_frame_seal(&s, stream, sizeof stream, WR_FT_DATA, 0, 1, p, 16385, &n), 0);
    assert_int_equal(
        wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, NULL), 0);
    assert_int_equal(wr_frame_open(&o, stream, WR_FRAME_HDR_WIRE, &used, &f), WR_FRAME_ETOOLONG);
    assert_null(o.buf);
    assert_int_equal(wr_frame_open(&o, stream + 24, 10, &used, &f), WR_FRAME_EDEAD);
    wr_frame_opener_free(&o);
    /* the largest allowed frame passes when both sides agree on the limit */
    wr_frame_sealer_free(&s);
    assert_int_equal(
        wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, &big), 0);
    assert_int_equal(
        wr_frame_seal(&s, stream, sizeof stream, WR_FT_DATA, 0, 1, p, WR_FRAME_MAX_LIMIT, &n), 0);
    assert_int_equal(
        wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, &big), 0);
    assert_int_equal(wr_frame_open(&o, stream, n, &used, &f), WR_FRAME_OK);
    assert_int_equal(f.len, WR_FRAME_MAX_LIMIT);
    wr_frame_opener_free(&o);
    /* and the sealer refuses over its own limit without dying */
    assert_int_equal(wr_frame_seal(&s, stream, sizeof stream, WR_FT_DATA, 0, 1, p,
                                   (size_t)WR_FRAME_MAX_LIMIT + 1, &n),
                     WR_FRAME_ETOOLONG);
    assert_false(s.dead);
    wr_frame_sealer_free(&s);
}

/* AES-256-GCM rekeys sooner by default than ChaCha20-Poly1305 (wr_frame.h says why). */
static void test_rekey_default_per_cipher(void **state)
{
    wr_frame_sealer s;
    wr_frame_opener o;
    assert_int_equal(wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_AES256_GCM, key, NULL),
                     0);
    assert_true(s.opts.rekey_interval == WR_FRAME_REKEY_FRAMES_GCM);
    wr_frame_sealer_free(&s);
    assert_int_equal(
        wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, NULL), 0);
    assert_true(o.opts.rekey_interval == WR_FRAME_REKEY_FRAMES);
    wr_frame_opener_free(&o);
    assert_true(WR_FRAME_REKEY_FRAMES_GCM < WR_FRAME_REKEY_FRAMES);
}

static void test_rekey(void **state)
{
    wr_frame_sealer s;
    wr_frame_opener o;
    wr_frame_opts opts = {.rekey_interval = 3};
    uint8_t p[40], first_key[32];
    size_t total = 0, n, used, off = 0;
    int got = 0;
    wr_frame f;
    assert_int_equal(
        wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, &opts), 0);
    memcpy(first_key, s.key, 32);
    for (int i = 0; i < 10; i++) {
        fill(p, sizeof p, (size_t)i);
        assert_int_equal(wr_frame_seal(&s, stream + total, sizeof stream - total, WR_FT_DATA, 0,
                                       (uint32_t)i, p, sizeof p, &n),
                         0);
        /* the 3rd, 6th and 9th frames carry a REKEY frame behind them */
        assert_int_equal(n, WR_FRAME_WIRE_SIZE(40) + ((i % 3 == 2) ? WR_FRAME_HDR_WIRE : 0));
        total += n;
    }
    assert_true(s.rekeys == 3);
    assert_memory_not_equal(s.key, first_key, 32);
    /* a room check accounts for the REKEY frame: exactly one frame's room is not enough now */
    assert_int_equal(
        wr_frame_seal(&s, stream + total, WR_FRAME_WIRE_SIZE(40), WR_FT_DATA, 0, 0, p, 0, &n), 0);
    total += n;
    assert_int_equal(wr_frame_seal(&s, stream + total, WR_FRAME_WIRE_SIZE(40), WR_FT_DATA, 0, 0, p,
                                   sizeof p, &n),
                     WR_FRAME_ESPACE);
    assert_int_equal(wr_frame_seal_rekey(&s, stream + total, sizeof stream - total, &n), 0);
    total += n;
    assert_true(s.rekeys == 4);

    assert_int_equal(
        wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, &opts), 0);
    memcpy(copy, stream, total); /* the opener decrypts in place: keep stream intact */
    while (off < total) {
        int rc = wr_frame_open(&o, copy + off, total - off, &used, &f);
        off += used;
        assert_true(rc >= 0);
        if (rc == WR_FRAME_OK) {
            assert_int_equal(f.type, WR_FT_DATA); /* REKEY never surfaces */
            got++;
        }
    }
    assert_int_equal(got, 11);
    assert_true(o.rekeys == 4);
    assert_memory_equal(o.key, s.key, 32);
    wr_frame_opener_free(&o);

    /* an opener that missed the REKEY (skips it) cannot read on: the key really changed */
    assert_int_equal(
        wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, &opts), 0);
    {
        size_t f3 = 3 * WR_FRAME_WIRE_SIZE(40); /* end of third frame, REKEY follows */
        assert_int_equal(feed_chunks(&o, stream, f3, f3, 0), 3);
        assert_int_equal(wr_frame_open(&o, stream + f3 + WR_FRAME_HDR_WIRE, 64, &used, &f),
                         WR_FRAME_EAUTH);
    }
    wr_frame_opener_free(&o);
    wr_frame_sealer_free(&s);
}

/* Hand-made REKEY frames with junk fields are a protocol error. */
static void test_bad_rekey_frame(void **state)
{
    static const uint8_t hdrs[][8] = {
        {0, 0, WR_FT_REKEY, 1, 0, 0, 0, 0}, /* flags */
        {0, 0, WR_FT_REKEY, 0, 0, 0, 0, 5}, /* stream id */
        {0, 4, WR_FT_REKEY, 0, 0, 0, 0, 0}, /* length */
    };
    for (size_t i = 0; i < 3; i++) {
        wr_frame_opener o;
        uint8_t wire[64], nonce[12];
        size_t used;
        wr_frame f;
        wr_aead_nonce(nonce, 0);
        assert_int_equal(wr_aead_seal_once(WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key,
                                           nonce, NULL, 0, hdrs[i], 8, wire),
                         0);
        assert_int_equal(
            wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, NULL), 0);
        assert_int_equal(wr_frame_open(&o, wire, 24, &used, &f), WR_FRAME_EPROTO);
        wr_frame_opener_free(&o);
    }
}

static void test_counter_exhaustion(void **state)
{
    wr_frame_sealer s;
    wr_frame_opener o;
    wr_frame_opts lim = {.rekey_interval = UINT64_MAX, .counter_limit = 5};
    wr_frame_opts wide = {.rekey_interval = UINT64_MAX};
    uint8_t p[10] = {0};
    size_t n, total = 0, used, off = 0;
    wr_frame f;
    int rc, got = 0;
    assert_int_equal(
        wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, &lim), 0);
    /* nonces 0..4: two payload frames use 4, a third needs 2 more: refused for good */
    assert_int_equal(wr_frame_seal(&s, stream, sizeof stream, WR_FT_DATA, 0, 1, p, 10, &n), 0);
    assert_int_equal(wr_frame_seal(&s, stream + n, sizeof stream, WR_FT_DATA, 0, 1, p, 10, &n), 0);
    assert_int_equal(wr_frame_seal(&s, stream, sizeof stream, WR_FT_DATA, 0, 1, p, 10, &n),
                     WR_FRAME_ELIMIT);
    assert_int_equal(n, 0);
    assert_int_equal(wr_frame_seal(&s, stream, sizeof stream, WR_FT_PING, 0, 0, NULL, 0, &n),
                     WR_FRAME_EDEAD);
    wr_frame_sealer_free(&s);

    /* an opener refuses a peer that runs past its limit */
    assert_int_equal(
        wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, &wide), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(
            wr_frame_seal(&s, stream + total, sizeof stream - total, WR_FT_DATA, 0, 1, p, 10, &n),
            0);
        total += n;
    }
    wr_frame_sealer_free(&s);
    assert_int_equal(
        wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_CHACHA20_POLY1305, key, &lim), 0);
    while ((rc = wr_frame_open(&o, stream + off, total - off, &used, &f)) == WR_FRAME_OK) {
        off += used;
        got++;
    }
    assert_int_equal(got, 2);
    assert_int_equal(rc, WR_FRAME_ELIMIT);
    wr_frame_opener_free(&o);
}

/* Seal in place (payload already at out + 24), small buffers, argument checks. */
static void test_seal_in_place_and_space(void **state)
{
    wr_frame_sealer s;
    wr_frame_opener o;
    uint8_t buf[24 + 300 + 16 + 24], want[300];
    size_t n, used;
    wr_frame f;
    uint64_t ctr;
    assert_int_equal(wr_frame_sealer_init(&s, WR_BACKEND_DEFAULT, WR_AEAD_AES256_GCM, key, NULL),
                     0);
    assert_int_equal(wr_frame_opener_init(&o, WR_BACKEND_DEFAULT, WR_AEAD_AES256_GCM, key, NULL),
                     0);
    fill(want, 300, 9);
    memcpy(buf + WR_FRAME_HDR_WIRE, want, 300);
    ctr = s.counter;
    assert_int_equal(
        wr_frame_seal(&s, buf, 24 + 300 + 15, WR_FT_DATA, 0, 2, buf + WR_FRAME_HDR_WIRE, 300, &n),
        WR_FRAME_ESPACE);
    assert_true(s.counter == ctr && !s.dead);
    assert_int_equal(wr_frame_seal(&s, buf, sizeof buf, WR_FT_DATA, 0, 2, buf + 1, 300, &n),
                     WR_FRAME_EINVAL);
    assert_int_equal(wr_frame_seal(&s, buf, sizeof buf, WR_FT_REKEY, 0, 0, NULL, 0, &n),
                     WR_FRAME_EINVAL);
    assert_int_equal(
        wr_frame_seal(&s, buf, sizeof buf, WR_FT_DATA, 0, 2, buf + WR_FRAME_HDR_WIRE, 300, &n), 0);
    assert_memory_not_equal(buf + WR_FRAME_HDR_WIRE, want, 300);
    assert_int_equal(wr_frame_open(&o, buf, n, &used, &f), WR_FRAME_OK);
    assert_int_equal(used, n);
    assert_ptr_equal(f.payload, buf + WR_FRAME_HDR_WIRE); /* opened in place */
    assert_memory_equal(f.payload, want, 300);
    assert_int_equal(wr_frame_open(&o, buf, 0, &used, &f), WR_FRAME_NEED_MORE);
    wr_frame_opener_trim(&o);
    assert_null(o.buf);
    assert_string_equal(wr_frame_strerror(WR_FRAME_EAUTH), "frame authentication failed");
    wr_frame_sealer_free(&s);
    wr_frame_opener_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_chunk_size),
        cmocka_unit_test(test_roundtrip_random_splits),
        cmocka_unit_test(test_cross_backend),
        cmocka_unit_test(test_bitflip_stream),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_rekey_default_per_cipher),
        cmocka_unit_test(test_rekey),
        cmocka_unit_test(test_bad_rekey_frame),
        cmocka_unit_test(test_counter_exhaustion),
        cmocka_unit_test(test_seal_in_place_and_space),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
