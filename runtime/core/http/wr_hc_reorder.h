/* The relay's bookkeeping of one HTTP carrier session's bytes (wr_hc_server), by offset and
 * without I/O, so that it can be tested and fuzzed alone:
 *   - upstream (wr_hc_upq): POST bodies arrive for byte ranges, in any order, any number of times;
 *     the session gets each byte once, in order; ranges ahead wait in a bounded reorder buffer;
 *   - downstream (wr_hc_downq): the session's bytes are kept from the first the client has not
 *     shown it has (base) to the last written (end); an answer copies them out as records from
 *     the offset its request named, and the next request's offset acknowledges what arrived. */
#ifndef WR_HC_REORDER_H
#define WR_HC_REORDER_H

#include "wr_buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct wr_hc_segment {
    struct wr_hc_segment *next;
    uint64_t off;
    size_t len;
    char data[];
} wr_hc_segment;

typedef struct wr_hc_upq {
    uint64_t next;        /* the next offset the session gets */
    wr_hc_segment *ahead; /* ranges past next, by offset (they may overlap) */
    size_t ahead_bytes;   /* their lengths added up: at most max */
    size_t max;
} wr_hc_upq;

/* Called with the next bytes in order (q->next is already past them): 0 goes on, < 0 fails the
 * input, > 0 stops it quietly (the session is ending); what waits stays until wr_hc_upq_free. */
typedef int (*wr_hc_deliver_fn)(void *ctx, const char *data, size_t len);

void wr_hc_upq_init(wr_hc_upq *q, size_t max);
/* The bytes data[0..len) at offset off: what is new goes to deliver in order, what is ahead
 * waits. 0 when something was new or kept, 1 when every byte had been had, -1 when it would
 * overflow the buffer (off more than max ahead, or max bytes waiting), memory ran out, or
 * deliver failed. */
int wr_hc_upq_input(wr_hc_upq *q, uint64_t off, const char *data, size_t len,
                    wr_hc_deliver_fn deliver, void *ctx);
void wr_hc_upq_free(wr_hc_upq *q);

typedef struct wr_hc_kept {
    wr_buf_t *b; /* a reference */
    const char *base;
    size_t len;
} wr_hc_kept;

typedef struct wr_hc_downq {
    wr_hc_kept *chunks;
    size_t n, cap;
    uint64_t base, end; /* the bytes kept: [base, end) */
    uint64_t sent_hi;   /* the furthest any answer has carried (base <= sent_hi <= end) */
} wr_hc_downq;

/* Keeps b's base[0..len) (a reference is taken). 0, or UV_ENOMEM. */
int wr_hc_downq_push(wr_hc_downq *q, wr_buf_t *b, const char *base, size_t len);
/* Whether a request may start at off: what it names is still kept (base <= off <= end). */
int wr_hc_downq_covers(const wr_hc_downq *q, uint64_t off);
/* The client has everything before off (covered): drops it. Returns the bytes dropped. */
uint64_t wr_hc_downq_ack(wr_hc_downq *q, uint64_t off);
/* Copies the kept bytes from *at on into out[0..max) as data records (wr_hc_proto.h), advancing
 * *at past them. An answer whose *at is before base (acknowledged since by a later request)
 * gets nothing. Returns the bytes of out used. */
size_t wr_hc_downq_fill(wr_hc_downq *q, uint64_t *at, char *out, size_t max);
void wr_hc_downq_free(wr_hc_downq *q);

#endif
