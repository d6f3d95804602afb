/* The site proxy's request framer (wr_http_framer) on arbitrary connection bytes: however the
 * bytes are cut into reads, the same requests come out (heads, body bytes, the point where it
 * gives up), every byte is accounted for exactly once, every call but a completed head or the
 * start of RAW consumes something, and a reported head lies within the framer's buffer and limit.
 *
 * The input is fed three ways and the outcomes compared: whole, one byte at a time, and in pieces
 * whose sizes come from the input's own bytes. */
#include "wr_http_framer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct outcome {
    uint64_t heads, head_bytes, body_bytes, raw_bytes;
    int raw; /* gave up, and after how many heads */
    uint64_t raw_after;
} outcome_t;

static wr_http_framer_t f;

static void feed(outcome_t *o, const char *p, size_t len)
{
    while (len) {
        size_t used = 0;
        enum wr_framer_event ev = wr_http_framer_next(&f, p, len, &used);
        if (used > len) abort();
        switch (ev) {
        case WR_FRAMER_NEED_MORE:
            if (used != len) abort(); /* all of it went into the head */
            break;
        case WR_FRAMER_HEAD:
            if (f.head_len == 0 || f.head_len > WR_HTTP_HEAD_MAX) abort();
            if (f.req.url < f.head || f.req.url + f.req.url_len > f.head + f.head_len) abort();
            o->heads++;
            o->head_bytes += f.head_len;
            break;
        case WR_FRAMER_RAW:
            if (o->raw || f.state != WR_FRAMER_S_RAW || f.head_len > WR_HTTP_HEAD_MAX) abort();
            o->raw = 1;
            o->raw_after = o->heads;
            o->raw_bytes += f.head_len;
            break;
        case WR_FRAMER_BODY:
            if (used == 0) abort();
            if (o->raw)
                o->raw_bytes += used;
            else
                o->body_bytes += used;
            break;
        }
        if (used == 0 && ev != WR_FRAMER_HEAD && ev != WR_FRAMER_RAW) abort();
        p += used;
        len -= used;
    }
}

static void run(outcome_t *o, const uint8_t *data, size_t size, int how)
{
    const char *p = (const char *)data;
    size_t off = 0, i = 0;
    memset(o, 0, sizeof *o);
    wr_http_framer_init(&f);
    while (off < size) {
        size_t step = how == 0 ? size : how == 1 ? 1 : (size_t)data[i++ % size] * 7 % 997 + 1;
        if (step > size - off) step = size - off;
        feed(o, p + off, step);
        off += step;
    }
    /* Bytes still in an incomplete head are the rest. */
    if (!o->raw && wr_http_framer_at_head(&f) && !f.head_done) o->raw_bytes += f.head_len;
    if (o->head_bytes + o->body_bytes + o->raw_bytes != size) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    outcome_t whole, bytewise, pieces;
    if (size > 256 * 1024) return 0;
    run(&whole, data, size, 0);
    run(&bytewise, data, size, 1);
    run(&pieces, data, size, 2);
    if (memcmp(&whole, &bytewise, sizeof whole) != 0 || memcmp(&whole, &pieces, sizeof whole) != 0)
        abort();
    return 0;
}
