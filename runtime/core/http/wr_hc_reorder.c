#include "wr_hc_reorder.h"

#include "wr_hc_proto.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

void wr_hc_upq_init(wr_hc_upq *q, size_t max)
{
    memset(q, 0, sizeof *q);
    q->max = max;
}

static int deliver_from(wr_hc_upq *q, uint64_t off, const char *data, size_t len,
                        wr_hc_deliver_fn deliver, void *ctx)
{
    size_t skip = (size_t)(q->next - off); /* off <= next < off + len */
    q->next = off + len;
    return deliver(ctx, data + skip, len - skip);
}

int wr_hc_upq_input(wr_hc_upq *q, uint64_t off, const char *data, size_t len,
                    wr_hc_deliver_fn deliver, void *ctx)
{
    int rc;
    if (len == 0 || off + len <= q->next) return 1;
    if (off > q->next) {
        wr_hc_segment *seg, **p;
        if (len > q->max - q->ahead_bytes || off - q->next > q->max) return -1;
        for (p = &q->ahead; *p && (*p)->off < off; p = &(*p)->next)
            ;
        if (*p && (*p)->off == off && (*p)->len >= len) return 1; /* had it */
        seg = malloc(sizeof *seg + len);
        if (!seg) return -1;
        seg->off = off;
        seg->len = len;
        memcpy(seg->data, data, len);
        seg->next = *p;
        *p = seg;
        q->ahead_bytes += len;
        return 0;
    }
    rc = deliver_from(q, off, data, len, deliver, ctx);
    /* What waited and now follows on. */
    while (rc == 0 && q->ahead && q->ahead->off <= q->next) {
        wr_hc_segment *seg = q->ahead;
        q->ahead = seg->next;
        q->ahead_bytes -= seg->len;
        if (seg->off + seg->len > q->next)
            rc = deliver_from(q, seg->off, seg->data, seg->len, deliver, ctx);
        free(seg);
    }
    return rc < 0 ? -1 : 0;
}

void wr_hc_upq_free(wr_hc_upq *q)
{
    while (q->ahead) {
        wr_hc_segment *seg = q->ahead;
        q->ahead = seg->next;
        free(seg);
    }
    q->ahead_bytes = 0;
}

int wr_hc_downq_push(wr_hc_downq *q, wr_buf_t *b, const char *base, size_t len)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        void *p = realloc(q->chunks, cap * sizeof *q->chunks);
        if (!p) return UV_ENOMEM;
        q->chunks = p;
        q->cap = cap;
    }
    q->chunks[q->n].b = wr_buf_retain(b);
    q->chunks[q->n].base = base;
    q->chunks[q->n].len = len;
    q->n++;
    q->end += len;
    return 0;
}

int wr_hc_downq_covers(const wr_hc_downq *q, uint64_t off)
{
    return off >= q->base && off <= q->end;
}

uint64_t wr_hc_downq_ack(wr_hc_downq *q, uint64_t off)
{
    uint64_t from = q->base;
    size_t drop = 0;
    if (off > q->end) off = q->end;
    while (drop < q->n && q->base + q->chunks[drop].len <= off) {
        q->base += q->chunks[drop].len;
        wr_buf_release(q->chunks[drop].b);
        drop++;
    }
    if (drop < q->n && off > q->base) { /* part of a chunk */
        size_t n = (size_t)(off - q->base);
        q->chunks[drop].base += n;
        q->chunks[drop].len -= n;
        q->base += n;
    }
    if (drop) {
        memmove(q->chunks, q->chunks + drop, (q->n - drop) * sizeof *q->chunks);
        q->n -= drop;
    }
    if (q->sent_hi < q->base) q->sent_hi = q->base;
    return q->base - from;
}

size_t wr_hc_downq_fill(wr_hc_downq *q, uint64_t *at, char *out, size_t max)
{
    size_t used = 0;
    uint64_t off = q->base;
    if (*at < q->base) return 0;
    for (size_t i = 0; i < q->n && used + WR_HC_RECORD_HEAD < max; i++) {
        uint64_t end = off + q->chunks[i].len;
        if (end > *at) {
            size_t from = (size_t)(*at - off), n = (size_t)(end - *at);
            if (n > max - used - WR_HC_RECORD_HEAD) n = max - used - WR_HC_RECORD_HEAD;
            if (n > WR_HC_RECORD_MAX) n = WR_HC_RECORD_MAX;
            wr_hc_record_head((uint8_t *)out + used, WR_HC_RECORD_DATA, n);
            memcpy(out + used + WR_HC_RECORD_HEAD, q->chunks[i].base + from, n);
            used += WR_HC_RECORD_HEAD + n;
            *at += n;
            if (*at < end) break; /* out is full */
        }
        off = end;
    }
    if (*at > q->sent_hi) q->sent_hi = *at;
    return used;
}

void wr_hc_downq_free(wr_hc_downq *q)
{
    for (size_t i = 0; i < q->n; i++)
        wr_buf_release(q->chunks[i].b);
    free(q->chunks);
    memset(q, 0, sizeof *q);
}
