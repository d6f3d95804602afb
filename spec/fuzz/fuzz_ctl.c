/* libFuzzer target for the control-message codec. The first input byte picks the mode:
 *   0: the rest is one encoded value. Decoding must agree with a check-only walk; when it
 *      succeeds, re-encoding every event through the writer must give the input back byte for
 *      byte (one encoding per value), and that must decode again;
 *   1: the rest is a byte stream of framed messages, fed to the reassembler in splits drawn from
 *      the next two bytes; it must hand out exactly the messages (and the error) that a plain
 *      walk of the whole stream finds, whatever the splits;
 *   2: the rest is a little program of writer calls; whatever the writer accepts and finishes
 *      must decode, and re-encode to the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../c/ctl_recoder.h"
#include "wr_ctl.h"

/* Decodes value; on success re-encodes it and checks the bytes. Returns the decode result. */
static int check_value(const uint8_t *value, size_t len)
{
    wr_ctl_writer w;
    const uint8_t *msg;
    size_t mlen;
    const char *err = NULL;
    int rc = wr_ctl_decode(value, len, NULL, NULL, NULL), rc2;

    wr_ctl_writer_init(&w);
    rc2 = wr_ctl_decode(value, len, &recoder, &w, &err);
    if (rc2 != rc || (rc == 0) != (err == NULL)) abort();
    if (rc == 0) {
        if (wr_ctl_writer_finish(&w, &msg, &mlen) != 0) abort();
        if (mlen != len + WR_CTL_PREFIX_LEN || memcmp(msg + WR_CTL_PREFIX_LEN, value, len) != 0)
            abort();
        if (wr_ctl_decode(msg + WR_CTL_PREFIX_LEN, len, NULL, NULL, NULL) != 0) abort();
    }
    wr_ctl_writer_free(&w);
    return rc;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#define MAX_MSGS 4096

static void stream(const uint8_t *data, size_t size)
{
    static size_t off[MAX_MSGS], len[MAX_MSGS];
    size_t nmsg = 0, at = 0, pos = 0, got = 0;
    int want_err = 0;
    uint32_t rng;
    wr_ctl_reader r;

    if (size < 2) return;
    rng = (uint32_t)data[0] << 8 | data[1] | 1u << 16;
    data += 2;
    size -= 2;

    /* what the stream holds, read in one piece */
    while (at + WR_CTL_PREFIX_LEN <= size && nmsg < MAX_MSGS) {
        uint32_t n = be32(data + at);
        if (n == 0 || n > WR_CTL_MAX_MESSAGE) {
            want_err = n == 0 ? WR_CTL_EEMPTY : WR_CTL_ETOOBIG;
            break;
        }
        if (n > size - at - WR_CTL_PREFIX_LEN) break;
        off[nmsg] = at + WR_CTL_PREFIX_LEN;
        len[nmsg++] = n;
        at += WR_CTL_PREFIX_LEN + n;
    }
    if (nmsg == MAX_MSGS) return;

    wr_ctl_reader_init(&r);
    while (pos < size) {
        size_t n, used = 0, done = 0;
        uint8_t *chunk;
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        n = (rng & 3) == 0 ? size : (rng >> 8) % 17; /* mostly tiny pieces, sometimes the rest */
        if (n > size - pos) n = size - pos;
        chunk = malloc(n ? n : 1); /* its own buffer, so ASan sees a read past the piece */
        memcpy(chunk, data + pos, n);
        for (;;) {
            const uint8_t *msg;
            size_t mlen;
            int rc = wr_ctl_reader_feed(&r, chunk + done, n - done, &used, &msg, &mlen);
            if (used > n - done) abort();
            done += used;
            if (rc == WR_CTL_NEED_MORE) {
                if (done != n) abort();
                break;
            }
            if (rc < 0) {
                if (rc != want_err || got != nmsg) abort();
                free(chunk);
                wr_ctl_reader_free(&r);
                return;
            }
            if (got == nmsg || mlen != len[got] || memcmp(msg, data + off[got], mlen) != 0) abort();
            check_value(msg, mlen);
            got++;
        }
        free(chunk);
        pos += n;
    }
    if (got != nmsg || want_err) abort();
    wr_ctl_reader_free(&r);
}

/* Writer calls from bytes: op, then its arguments from the following bytes. */
static void program(const uint8_t *p, size_t n)
{
    wr_ctl_writer w;
    const uint8_t *msg;
    size_t mlen, i = 0;
    int failed = 0;

    wr_ctl_writer_init(&w);
    while (i < n) {
        uint8_t op = p[i++], arg = i < n ? p[i] : 0;
        size_t len = arg % 64 < n - i ? arg % 64 : n - i;
        int64_t v = 0;
        int rc = w.err; /* when no call is made */
        switch (op % 8) {
        case 0:
            rc = op & 8 ? wr_ctl_put_nil(&w) : wr_ctl_put_bool(&w, op & 16);
            break;
        case 1: /* an integer of 1..8 bytes, sign-extended */
            for (size_t k = 0; k < 1 + (op >> 5) && i < n; k++)
                v = (int64_t)((uint64_t)v << 8 | p[i++]);
            if (op & 16 && v > 0) v = -v;
            rc = wr_ctl_put_int(&w, v);
            break;
        case 2:
            if (n - i >= 8) {
                uint64_t u = 0;
                double x;
                for (int k = 0; k < 8; k++)
                    u = u << 8 | p[i++];
                memcpy(&x, &u, sizeof x);
                rc = wr_ctl_put_double(&w, x);
            }
            break;
        case 3:
        case 4: /* string or key: length byte, then bytes of the input */
            if (i < n) i++;
            if (len > n - i) len = n - i;
            rc = op % 8 == 3 ? wr_ctl_put_string(&w, p + i, len) : wr_ctl_put_key(&w, p + i, len);
            i += len;
            break;
        case 5:
            rc = wr_ctl_put_array(&w, op >> 3);
            break;
        case 6:
            rc = wr_ctl_put_map(&w, op >> 3);
            break;
        default: /* a count beyond what fits, or a key over the limit */
            rc = op & 8 ? wr_ctl_put_array(&w, UINT32_MAX >> (op >> 4))
                        : wr_ctl_put_key(&w, p, WR_CTL_MAX_KEY + 1 > n ? n : WR_CTL_MAX_KEY + 1);
        }
        if (failed && rc != w.err) abort(); /* the first failure sticks */
        if (rc) failed = 1;
    }
    if (wr_ctl_writer_finish(&w, &msg, &mlen) == 0) {
        if (failed || mlen <= WR_CTL_PREFIX_LEN) abort();
        if (be32(msg) != mlen - WR_CTL_PREFIX_LEN) abort();
        if (check_value(msg + WR_CTL_PREFIX_LEN, mlen - WR_CTL_PREFIX_LEN) != 0) abort();
    }
    wr_ctl_writer_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    switch (data[0] % 3) {
    case 0: {
        /* an exact-size copy, so ASan sees any read past the value */
        uint8_t *copy = malloc(size - 1 ? size - 1 : 1);
        memcpy(copy, data + 1, size - 1);
        check_value(copy, size - 1);
        free(copy);
        break;
    }
    case 1:
        stream(data + 1, size - 1);
        break;
    default:
        program(data + 1, size - 1);
    }
    return 0;
}
