/* The relay's byte order for the HTTP carrier (wr_hc_reorder) under arbitrary sequences of
 * requests, the input read as choices (fuzz_input.h):
 *   - upstream: POST bodies for (offset, length) ranges near, behind or far past what the session
 *     has, again and overlapping. Every byte reaches the session once and in order (it checks the
 *     bytes themselves), the session has exactly the bytes before the first one never accepted (so
 *     none is lost either), a range is refused only past the reorder bound, and what waits stays
 *     within it, sorted and counted right;
 *   - downstream: the session writes chunks; requests name offsets (kept ones acknowledge what
 *     came before, others must be the ones refused); a current answer and the one it overtook copy
 *     records out into buffers of any size: each carries the right bytes from where its answer
 *     was, never past what was written, and the overtaken one nothing once acknowledged past.
 * At the end every chunk reference is given back. */
#include "fuzz_input.h"
#include "wr_hc_proto.h"
#include "wr_hc_reorder.h"

#include <stdlib.h>
#include <string.h>

#define UP_MAX    65536     /* the reorder bound under test */
#define UP_SPAN   (1 << 18) /* upstream offsets stay below this (+ one body) */
#define BODY_MAX  4096
#define DOWN_SPAN (1 << 20) /* what the session writes, at most */

static uint8_t have[UP_SPAN + BODY_MAX]; /* upstream bytes accepted, by offset */
static size_t have_hi;

static char up_byte(uint64_t i)
{
    return (char)(i * 131 + (i >> 9) * 7 + 3);
}

static char down_byte(uint64_t i)
{
    return (char)(i * 29 + (i >> 11) + 101);
}

static void check(int ok)
{
    if (!ok) abort();
}

static uint64_t delivered;

static int deliver(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    check(len > 0);
    for (size_t i = 0; i < len; i++)
        check(data[i] == up_byte(delivered + i));
    delivered += len;
    return 0;
}

static void check_upq(const wr_hc_upq *q)
{
    size_t sum = 0;
    uint64_t prev = 0, first_missing = 0;
    check(q->next == delivered);
    check(q->ahead_bytes <= q->max);
    for (const wr_hc_segment *s = q->ahead; s; s = s->next) {
        check(s->off > q->next && s->off >= prev && s->len > 0);
        prev = s->off;
        sum += s->len;
    }
    check(sum == q->ahead_bytes);
    while (first_missing < have_hi && have[first_missing])
        first_missing++;
    check(q->next == first_missing);
}

static void up_request(wr_hc_upq *q, struct reader *in)
{
    static char body[BODY_MAX];
    uint64_t next = q->next, off;
    size_t len = ((size_t)take(in) << 8 | take(in)) % BODY_MAX, waiting = q->ahead_bytes;
    uint8_t how = take(in) % 4;
    uint32_t delta = (uint32_t)take(in) << 8 | take(in);
    int rc;
    if (how == 0) /* behind or at what the session has */
        off = delta % 2048 > next ? 0 : next - delta % 2048;
    else if (how == 3) /* anywhere, past the bound too */
        off = next + delta * 4;
    else /* a little ahead */
        off = next + delta % (4 * BODY_MAX);
    if (off >= UP_SPAN) off = next;
    for (size_t i = 0; i < len; i++)
        body[i] = up_byte(off + i);
    rc = wr_hc_upq_input(q, off, body, len, deliver, NULL);
    if (rc < 0) {
        /* refused only past the bound, and then nothing changed */
        check(off > next && (off - next > q->max || waiting + len > q->max));
        check(q->next == next && q->ahead_bytes == waiting);
    } else {
        for (size_t i = 0; i < len; i++)
            have[off + i] = 1;
        if (off + len > have_hi) have_hi = (size_t)(off + len);
        check(rc == 0 || off + len <= next || off > next || len == 0);
    }
    check_upq(q);
}

typedef struct answer {
    int live;
    uint64_t at;
} answer;

static void check_downq(const wr_hc_downq *q)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < q->n; i++) {
        check(q->chunks[i].len > 0 || q->n == 0);
        sum += q->chunks[i].len;
    }
    check(q->n <= q->cap);
    check(sum == q->end - q->base);
    check(q->base <= q->sent_hi && q->sent_hi <= q->end);
}

static void down_write(wr_hc_downq *q, struct reader *in)
{
    size_t len = 1 + (((size_t)take(in) << 8 | take(in)) % 3000);
    wr_buf_t *b;
    if (q->end + len > DOWN_SPAN) return;
    b = wr_buf_new(len);
    if (!b) abort();
    for (size_t i = 0; i < len; i++)
        b->data[i] = down_byte(q->end + i);
    check(wr_hc_downq_push(q, b, b->data, len) == 0);
    wr_buf_release(b);
}

static void down_request(wr_hc_downq *q, answer *cur, answer *old, struct reader *in)
{
    uint64_t span = q->end - q->base + 200, base = q->base;
    uint64_t off = q->base + ((uint32_t)take(in) << 16 | (uint32_t)take(in) << 8 | take(in)) % span;
    off = off >= 100 ? off - 100 : 0;
    if (!wr_hc_downq_covers(q, off)) {
        check(off < q->base || off > q->end);
        return;
    }
    check(wr_hc_downq_ack(q, off) == off - base);
    check(q->base == off);
    *old = *cur;
    cur->live = 1;
    cur->at = off;
}

static void down_fill(wr_hc_downq *q, answer *a, struct reader *in)
{
    static char out[65536];
    size_t max = 1 + (((size_t)take(in) << 8 | take(in)) % sizeof out), used, i = 0;
    uint64_t at = a->at;
    if (!a->live) return;
    used = wr_hc_downq_fill(q, &a->at, out, max);
    check(used <= max);
    if (at < q->base) {
        check(used == 0 && a->at == at); /* overtaken: nothing */
        return;
    }
    while (i < used) {
        const uint8_t *h = (const uint8_t *)out + i;
        size_t len = (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        check(h[0] == WR_HC_RECORD_DATA && len > 0 && i + WR_HC_RECORD_HEAD + len <= used);
        for (size_t j = 0; j < len; j++)
            check(out[i + WR_HC_RECORD_HEAD + j] == down_byte(at + j));
        at += len;
        i += WR_HC_RECORD_HEAD + len;
    }
    check(at == a->at && at <= q->end);
    /* room for one more record with a byte means everything kept was taken */
    if (max - used > WR_HC_RECORD_HEAD) check(a->at == q->end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader in = {data, size};
    wr_hc_upq up;
    wr_hc_downq down = {0};
    answer cur = {0}, old = {0};
    wr_buf_stats_t before, after;

    wr_buf_get_stats(&before);
    memset(have, 0, have_hi);
    have_hi = 0;
    delivered = 0;
    wr_hc_upq_init(&up, UP_MAX);
    while (in.n) {
        switch (take(&in) % 5) {
        case 0:
            up_request(&up, &in);
            break;
        case 1:
            down_write(&down, &in);
            break;
        case 2:
            down_request(&down, &cur, &old, &in);
            break;
        case 3:
            down_fill(&down, &cur, &in);
            break;
        default:
            down_fill(&down, &old, &in);
            break;
        }
        check_downq(&down);
    }
    wr_hc_upq_free(&up);
    wr_hc_downq_free(&down);
    wr_buf_get_stats(&after);
    check(after.live == before.live);
    return 0;
}
