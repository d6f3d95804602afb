/* The relay's byte order for the HTTP carrier (wr_hc_reorder): upstream ranges in any order,
 * twice, overlapping, delivered once and in order, the reorder bound, a delivery that stops or
 * fails; downstream bytes kept, copied out as records from any kept offset, acknowledged whole or
 * in part, and an answer overtaken by a later acknowledgement given nothing. */
#include "wr_hc_proto.h"
#include "wr_hc_reorder.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define STREAM 4096

static char stream[STREAM]; /* the session's bytes: byte i at offset i */

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < STREAM; i++)
        stream[i] = (char)(i * 7 + (i >> 8));
    return 0;
}

typedef struct sink {
    char got[STREAM];
    size_t len;
    int calls, stop_after, fail;
} sink;

static int deliver(void *ctx, const char *data, size_t len)
{
    sink *k = ctx;
    assert_true(k->len + len <= sizeof k->got);
    memcpy(k->got + k->len, data, len);
    k->len += len;
    k->calls++;
    if (k->fail) return -1;
    return k->stop_after && k->calls >= k->stop_after ? 1 : 0;
}

static int put(wr_hc_upq *q, sink *k, size_t off, size_t len)
{
    return wr_hc_upq_input(q, off, stream + off, len, deliver, k);
}

static void in_order_once(void **state)
{
    wr_hc_upq q;
    sink k = {0};
    (void)state;
    wr_hc_upq_init(&q, 1024);
    assert_int_equal(0, put(&q, &k, 0, 100));
    assert_int_equal(0, put(&q, &k, 300, 100)); /* ahead: waits */
    assert_int_equal(0, put(&q, &k, 200, 150)); /* ahead, overlapping what waits */
    assert_int_equal(100, k.len);
    assert_int_equal(250, q.ahead_bytes);
    assert_int_equal(1, put(&q, &k, 0, 100));  /* had it all */
    assert_int_equal(1, put(&q, &k, 300, 50)); /* waits already */
    assert_int_equal(0, put(&q, &k, 50, 160)); /* overlaps both sides: the gap closes */
    assert_int_equal(400, q.next);
    assert_int_equal(400, k.len);
    assert_memory_equal(stream, k.got, 400);
    assert_int_equal(0, q.ahead_bytes);
    assert_null(q.ahead);
    wr_hc_upq_free(&q);
}

static void reorder_bound(void **state)
{
    wr_hc_upq q;
    sink k = {0};
    (void)state;
    wr_hc_upq_init(&q, 1000);
    assert_int_equal(-1, put(&q, &k, 1001, 10)); /* too far ahead */
    assert_int_equal(0, put(&q, &k, 1000, 10));
    assert_int_equal(0, put(&q, &k, 10, 990));
    assert_int_equal(-1, put(&q, &k, 5, 1)); /* 1000 bytes wait: full */
    assert_int_equal(0, k.len);
    assert_int_equal(0, put(&q, &k, 0, 10)); /* what follows on is taken and frees the room */
    assert_int_equal(1010, k.len);
    assert_memory_equal(stream, k.got, 1010);
    assert_int_equal(0, q.ahead_bytes);
    wr_hc_upq_free(&q);
}

static void a_stopped_delivery_keeps_the_rest(void **state)
{
    wr_hc_upq q;
    sink k = {.stop_after = 1};
    (void)state;
    wr_hc_upq_init(&q, 1024);
    assert_int_equal(0, put(&q, &k, 10, 10));
    assert_int_equal(0, put(&q, &k, 0, 10)); /* delivered, then the session ends */
    assert_int_equal(1, k.calls);
    assert_int_equal(10, q.next);
    assert_int_equal(10, q.ahead_bytes);
    k.fail = 1; /* a session that cannot take bytes fails the request */
    assert_int_equal(-1, put(&q, &k, 10, 5));
    wr_hc_upq_free(&q); /* frees what waits */
    assert_null(q.ahead);
}

static void keep(wr_hc_downq *q, size_t len)
{
    wr_buf_t *b = wr_buf_new(len);
    assert_non_null(b);
    memcpy(b->data, stream + q->end, len);
    assert_int_equal(0, wr_hc_downq_push(q, b, b->data, len));
    wr_buf_release(b); /* the queue holds its own reference */
}

/* The records of out[0..n) carry exactly stream[from..to). */
static void records_carry(const char *out, size_t n, uint64_t from, uint64_t to)
{
    size_t i = 0;
    while (i < n) {
        const uint8_t *h = (const uint8_t *)out + i;
        size_t len = (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        assert_int_equal(WR_HC_RECORD_DATA, h[0]);
        assert_true(len > 0 && from + len <= to);
        assert_memory_equal(stream + from, out + i + WR_HC_RECORD_HEAD, len);
        from += len;
        i += WR_HC_RECORD_HEAD + len;
    }
    assert_int_equal(n, i);
    assert_int_equal(to, from);
}

static void kept_copied_and_acknowledged(void **state)
{
    wr_hc_downq q = {0};
    char out[STREAM];
    uint64_t at = 0;
    size_t n;
    (void)state;
    keep(&q, 100);
    keep(&q, 200);
    keep(&q, 50);
    assert_int_equal(350, q.end);
    n = wr_hc_downq_fill(&q, &at, out, sizeof out);
    assert_int_equal(350, at);
    assert_int_equal(350, q.sent_hi);
    records_carry(out, n, 0, 350);
    /* a later request from 120 (part of the second chunk) acknowledges the rest */
    assert_true(wr_hc_downq_covers(&q, 120));
    assert_false(wr_hc_downq_covers(&q, 351));
    assert_int_equal(120, wr_hc_downq_ack(&q, 120));
    assert_int_equal(120, q.base);
    assert_int_equal(2, q.n);
    assert_false(wr_hc_downq_covers(&q, 119));
    at = 120;
    n = wr_hc_downq_fill(&q, &at, out, 4 + 30); /* room for one record of 30 */
    assert_int_equal(150, at);
    records_carry(out, n, 120, 150);
    /* an answer still at 100, overtaken by the acknowledgement of 120: nothing */
    at = 100;
    assert_int_equal(0, wr_hc_downq_fill(&q, &at, out, sizeof out));
    assert_int_equal(100, at);
    assert_int_equal(230, wr_hc_downq_ack(&q, 350));
    assert_int_equal(0, q.n);
    assert_int_equal(350, q.sent_hi);
    at = 350;
    assert_int_equal(0, wr_hc_downq_fill(&q, &at, out, sizeof out));
    wr_hc_downq_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(in_order_once),
        cmocka_unit_test(reorder_bound),
        cmocka_unit_test(a_stopped_delivery_keeps_the_rest),
        cmocka_unit_test(kept_copied_and_acknowledged),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
