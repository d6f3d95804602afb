/* libFuzzer target for the frame opener.
 *
 * The first input byte picks the mode and options; the rest drives it:
 *   mode 0: raw bytes into an opener, in fuzzer-chosen chunk sizes (what a prober can send);
 *   mode 1: fuzzer-described frames sealed with the right key, optionally one byte damaged,
 *           fed back in fuzzer-chosen chunks; undamaged streams must decode exactly (oracle);
 *   mode 2: valid frames, then a header with fuzzer-chosen plaintext sealed under the right
 *           key and nonce, then raw bytes: reaches every branch after authentication. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wr_frame.h"
#include "fuzz_input.h"

static const uint8_t key[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

#define STREAM_MAX (1 << 18)
static uint8_t stream[STREAM_MAX], chunkbuf[STREAM_MAX];

struct expect {
    uint8_t type, flags;
    uint32_t sid;
    size_t len, off; /* payload bytes live at input offset off */
};

/* Feeds stream[0..len) in chunks whose sizes come from r; returns frames seen (or -1). */
static int feed(wr_frame_opener *o, size_t len, struct reader *r, const struct expect *ex,
                size_t nex, const uint8_t *payload_src)
{
    size_t off = 0;
    int got = 0;
    while (off < len) {
        size_t chunk = (size_t)take(r) * 97 + 1, pos = 0;
        if (chunk > len - off) chunk = len - off;
        memcpy(chunkbuf, stream + off, chunk);
        off += chunk;
        while (pos < chunk) {
            wr_frame f;
            size_t used;
            int rc = wr_frame_open(o, chunkbuf + pos, chunk - pos, &used, &f);
            if (used > chunk - pos) abort();
            pos += used;
            if (rc < 0) return -1;
            if (rc == WR_FRAME_NEED_MORE) {
                if (pos != chunk) abort();
                break;
            }
            if (f.type == WR_FT_REKEY || f.len > o->opts.max_payload) abort();
            if ((f.len == 0) != (f.payload == NULL)) abort();
            if (ex) {
                if ((size_t)got >= nex) abort();
                if (f.type != ex[got].type || f.flags != ex[got].flags ||
                    f.stream_id != ex[got].sid || f.len != ex[got].len ||
                    (f.len && memcmp(f.payload, payload_src + ex[got].off, f.len) != 0))
                    abort();
            }
            got++;
        }
    }
    return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader r = {data, size};
    uint8_t opt = take(&r);
    int mode = opt % 3;
    enum wr_aead_alg alg = (opt & 4) ? WR_AEAD_AES256_GCM : WR_AEAD_CHACHA20_POLY1305;
    enum wr_backend be = (opt & 8) ? WR_BACKEND_MBEDTLS : WR_BACKEND_DEFAULT;
    wr_frame_opts opts = {.max_payload = (opt & 16) ? 300 : 0,
                          .rekey_interval = (opt & 32) ? 2 : 0};
    wr_frame_opener o;
    wr_frame_sealer s;
    size_t len = 0;

    if (wr_frame_opener_init(&o, be, alg, key, &opts)) abort();
    if (mode == 0) {
        len = r.n < STREAM_MAX / 2 ? r.n : STREAM_MAX / 2;
        /* chunk sizes come from the tail of the same bytes */
        memcpy(stream, r.p, len);
        {
            struct reader sizes = {r.p, r.n};
            feed(&o, len, &sizes, NULL, 0, NULL);
        }
        wr_frame_opener_free(&o);
        return 0;
    }

    if (wr_frame_sealer_init(&s, be, alg, key, &opts)) abort();
    {
        struct expect ex[64];
        size_t nex = 0, w;
        int damage = mode == 1 && (take(&r) & 1);
        size_t damage_at = (size_t)take(&r) << 8 | take(&r);
        uint8_t damage_bit = (uint8_t)(1u << (take(&r) & 7));
        size_t nframes = take(&r) % 16;
        for (size_t i = 0; i < nframes && nex < 64; i++) {
            struct expect e;
            e.type = take(&r);
            if (e.type == WR_FT_REKEY) e.type = WR_FT_DATA;
            e.flags = take(&r);
            e.sid = take(&r);
            e.len = take(&r);
            if (e.len > r.n) e.len = r.n;
            e.off = (size_t)(r.p - data);
            if (wr_frame_seal(&s, stream + len, STREAM_MAX - len, e.type, e.flags, e.sid, r.p,
                              e.len, &w))
                abort();
            r.p += e.len;
            r.n -= e.len;
            len += w;
            ex[nex++] = e;
        }
        if (mode == 2) {
            /* a forged header under the live key and nonce, then raw fuzz bytes */
            uint8_t h[8], nonce[12];
            size_t tail;
            for (int i = 0; i < 8; i++)
                h[i] = take(&r);
            wr_aead_nonce(nonce, s.counter++);
            if (wr_aead_seal_once(be, alg, s.key, nonce, NULL, 0, h, 8, stream + len)) abort();
            len += WR_FRAME_HDR_WIRE;
            tail = r.n / 2 < STREAM_MAX - len ? r.n / 2 : STREAM_MAX - len;
            memcpy(stream + len, r.p, tail);
            r.p += tail;
            r.n -= tail;
            len += tail;
            feed(&o, len, &r, NULL, 0, NULL);
        } else {
            int got;
            damage = damage && len > 0;
            if (damage) stream[damage_at % len] ^= damage_bit;
            got = feed(&o, len, &r, damage ? NULL : ex, nex, data);
            if (!damage && got != (int)nex) abort();
            if (damage && got == (int)nex) abort(); /* a flipped bit must never pass */
        }
    }
    wr_frame_sealer_free(&s);
    wr_frame_opener_free(&o);
    return 0;
}
