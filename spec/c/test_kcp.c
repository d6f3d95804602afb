/* KCP: header codec, presets, and two instances exchanging through an in-memory link that loses,
 * reorders and duplicates datagrams, on a virtual clock: the bytes must arrive exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wr_kcp.h"

/* ---- the link: datagrams in flight, each with its delivery time ---- */

typedef struct dgram {
    uint32_t at;
    size_t len;
    uint8_t *data;
    struct dgram *next;
} dgram_t;

typedef struct link {
    dgram_t *head;
    uint32_t delay, jitter;     /* ms */
    unsigned drop_pct, dup_pct; /* per datagram */
    uint64_t rng;
    uint32_t *now;
    size_t sent, dropped;
    int drop_first_push; /* drop the next datagram that carries data, once */
} link_t;

static uint32_t rnd(link_t *l)
{
    l->rng ^= l->rng << 13;
    l->rng ^= l->rng >> 7;
    l->rng ^= l->rng << 17;
    return (uint32_t)(l->rng >> 11);
}

static void link_put(link_t *l, const uint8_t *data, size_t len)
{
    dgram_t *d = malloc(sizeof *d), **pp;
    assert_non_null(d);
    d->data = malloc(len);
    assert_non_null(d->data);
    memcpy(d->data, data, len);
    d->len = len;
    d->at = *l->now + l->delay + (l->jitter ? rnd(l) % l->jitter : 0);
    /* Sorted by delivery time: jitter reorders. */
    for (pp = &l->head; *pp && (int32_t)((*pp)->at - d->at) <= 0; pp = &(*pp)->next) {}
    d->next = *pp;
    *pp = d;
}

static void link_out(const uint8_t *data, size_t len, void *user)
{
    link_t *l = user;
    l->sent++;
    if (l->drop_first_push && len > WR_KCP_HEADER && data[4] == WR_KCP_CMD_PUSH) {
        l->drop_first_push = 0;
        l->dropped++;
        return;
    }
    if (l->drop_pct && rnd(l) % 100 < l->drop_pct) {
        l->dropped++;
        return;
    }
    link_put(l, data, len);
    if (l->dup_pct && rnd(l) % 100 < l->dup_pct) link_put(l, data, len);
}

/* Delivers what is due to k. */
static void link_deliver(link_t *l, wr_kcp_t *k)
{
    while (l->head && (int32_t)(l->head->at - *l->now) <= 0) {
        dgram_t *d = l->head;
        l->head = d->next;
        assert_int_equal(wr_kcp_input(k, d->data, d->len, *l->now), 0);
        free(d->data);
        free(d);
    }
}

static void link_clear(link_t *l)
{
    while (l->head) {
        dgram_t *d = l->head;
        l->head = d->next;
        free(d->data);
        free(d);
    }
}

static void fill(uint8_t *p, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* A and B send `size` bytes each to the other, in writes of varying size, both reading as they
 * go; returns the virtual time it took. */
static uint32_t exchange(const char *preset, size_t size, unsigned drop, unsigned dup,
                         uint32_t delay, uint32_t jitter, wr_kcp_stats *sa)
{
    uint32_t now = 1000;
    link_t ab = {
        .delay = delay, .jitter = jitter, .drop_pct = drop, .dup_pct = dup, .rng = 7, .now = &now};
    link_t ba = {
        .delay = delay, .jitter = jitter, .drop_pct = drop, .dup_pct = dup, .rng = 11, .now = &now};
    wr_kcp_config cfg = {.mtu = 1400, .snd_wnd = 256, .rcv_wnd = 256};
    uint8_t *src_a = malloc(size), *src_b = malloc(size), *got_a = malloc(size),
            *got_b = malloc(size);
    size_t sent_a = 0, sent_b = 0, rcvd_a = 0, rcvd_b = 0;
    assert_non_null(src_a);
    assert_non_null(src_b);
    assert_non_null(got_a);
    assert_non_null(got_b);
    assert_int_equal(wr_kcp_preset(preset, &cfg), 0);
    wr_kcp_t *a = wr_kcp_new(0x11223344, &cfg, link_out, &ab);
    wr_kcp_t *b = wr_kcp_new(0x11223344, &cfg, link_out, &ba);
    assert_non_null(a);
    assert_non_null(b);
    fill(src_a, size, 1);
    fill(src_b, size, 2);
    while (rcvd_a < size || rcvd_b < size) {
        size_t chunk = 1 + (now * 7919u) % 20000;
        /* Writers keep about a window's worth queued, like an endpoint at its high water. */
        if (sent_a < size && wr_kcp_unacked(a) < 512 * 1024) {
            size_t n = size - sent_a < chunk ? size - sent_a : chunk;
            assert_int_equal(wr_kcp_send(a, src_a + sent_a, n), 0);
            sent_a += n;
        }
        if (sent_b < size && wr_kcp_unacked(b) < 512 * 1024) {
            size_t n = size - sent_b < chunk ? size - sent_b : chunk;
            assert_int_equal(wr_kcp_send(b, src_b + sent_b, n), 0);
            sent_b += n;
        }
        wr_kcp_update(a, now);
        wr_kcp_update(b, now);
        link_deliver(&ab, b);
        link_deliver(&ba, a);
        rcvd_b += wr_kcp_recv(b, got_b + rcvd_b, size - rcvd_b);
        rcvd_a += wr_kcp_recv(a, got_a + rcvd_a, size - rcvd_a);
        assert_false(wr_kcp_is_dead(a));
        assert_false(wr_kcp_is_dead(b));
        now++;
        assert_true(now < 1000 + 600000); /* ten virtual minutes at most */
    }
    assert_memory_equal(got_b, src_a, size);
    assert_memory_equal(got_a, src_b, size);
    assert_int_equal(wr_kcp_recv(a, got_a, 1), 0);
    if (sa) wr_kcp_get_stats(a, sa);
    wr_kcp_free(a);
    wr_kcp_free(b);
    link_clear(&ab);
    link_clear(&ba);
    free(src_a);
    free(src_b);
    free(got_a);
    free(got_b);
    return now - 1000;
}

static void test_header(void **state)
{
    uint8_t d[WR_KCP_HEADER + 3] = {0x44, 0x33, 0x22, 0x11, 81, 0, 0x00, 0x01, 1, 0, 0, 0,
                                    2,    0,    0,    0,    3,  0, 0,    0,    3, 0, 0, 0};
    wr_kcp_seg_header h;
    assert_int_equal(wr_kcp_parse_header(d, sizeof d, &h), 0);
    assert_int_equal(h.conv, 0x11223344);
    assert_int_equal(h.cmd, WR_KCP_CMD_PUSH);
    assert_int_equal(h.wnd, 256);
    assert_int_equal(h.ts, 1);
    assert_int_equal(h.sn, 2);
    assert_int_equal(h.una, 3);
    assert_int_equal(h.len, 3);
    assert_int_equal(wr_kcp_parse_header(d, sizeof d - 1, &h), -1); /* payload cut short */
    assert_int_equal(wr_kcp_parse_header(d, WR_KCP_HEADER - 1, &h), -1);
}

static void sink(const uint8_t *data, size_t len, void *user)
{
    (void)data;
    (void)len;
    (*(int *)user)++;
}

static void test_bad_input(void **state)
{
    int sent = 0;
    wr_kcp_config cfg = {0};
    wr_kcp_t *k = wr_kcp_new(5, &cfg, sink, &sent);
    uint8_t d[WR_KCP_HEADER] = {6, 0, 0, 0, 81};
    assert_int_equal(wr_kcp_input(k, d, sizeof d, 0), -1); /* another conversation */
    d[0] = 5;
    d[4] = 99;
    assert_int_equal(wr_kcp_input(k, d, sizeof d, 0), -1); /* unknown command */
    d[4] = 81;
    d[20] = 1;
    assert_int_equal(wr_kcp_input(k, d, sizeof d, 0), -1); /* length past the end */
    assert_int_equal(wr_kcp_readable(k), 0);
    wr_kcp_flush(k, 0);
    assert_int_equal(sent, 0); /* nothing was accepted, so nothing to acknowledge */
    wr_kcp_free(k);
    assert_null(wr_kcp_new(1, &(wr_kcp_config){.mtu = 10}, sink, &sent));
    assert_null(wr_kcp_new(1, &(wr_kcp_config){.snd_wnd = WR_KCP_WND_MAX + 1}, sink, &sent));
}

static void test_presets(void **state)
{
    wr_kcp_config cfg = {0};
    assert_int_equal(wr_kcp_preset("fast3", &cfg), 0);
    assert_int_equal(cfg.nodelay, 1);
    assert_int_equal(cfg.interval, 10);
    assert_int_equal(cfg.resend, 2);
    assert_int_equal(cfg.nocwnd, 1);
    assert_int_equal(wr_kcp_preset("normal", &cfg), 0);
    assert_int_equal(cfg.nodelay, 0);
    assert_int_equal(cfg.interval, 40);
    assert_int_equal(wr_kcp_preset("turbo", &cfg), -1);
}

static void test_clean_link(void **state)
{
    wr_kcp_stats st;
    exchange("fast", 1 << 20, 0, 0, 10, 0, &st);
    assert_int_equal(st.retransmits, 0);
    assert_int_equal(st.fast_retransmits, 0);
    /* RTT: 10 ms each way, acks flushed every 30 ms at most. */
    assert_true(st.srtt_ms >= 20 && st.srtt_ms <= 60);
}

static void test_lossy_link(void **state)
{
    static const char *presets[] = {"normal", "fast", "fast2", "fast3"};
    for (size_t i = 0; i < 4; i++) {
        wr_kcp_stats st;
        exchange(presets[i], 3 << 20, 5, 3, 10, 15, &st);
        assert_true(st.retransmits + st.fast_retransmits > 0);
        assert_true(st.lost_segments <= st.retransmits);
    }
}

static void test_heavy_loss(void **state)
{
    exchange("fast3", 512 * 1024, 30, 10, 5, 30, NULL);
}

/* One data segment lost among many: later acks trigger its fast retransmit before the RTO. */
static void test_fast_retransmit(void **state)
{
    uint32_t now = 0;
    link_t ab = {.delay = 20, .rng = 3, .now = &now}, ba = {.delay = 20, .rng = 5, .now = &now};
    wr_kcp_config cfg = {.snd_wnd = 64, .rcv_wnd = 64};
    static uint8_t buf[64 * 1400];
    wr_kcp_stats st;
    wr_kcp_preset("fast2", &cfg);
    wr_kcp_t *a = wr_kcp_new(9, &cfg, link_out, &ab), *b = wr_kcp_new(9, &cfg, link_out, &ba);
    fill(buf, sizeof buf, 3);
    ab.drop_first_push = 1;
    /* A segment each millisecond, each acked in a datagram of its own. */
    for (now = 0; now < 200; now++) {
        if (now < 20) assert_int_equal(wr_kcp_send(a, buf + now * 1376, 1376), 0);
        wr_kcp_flush(a, now);
        wr_kcp_flush(b, now);
        link_deliver(&ab, b);
        link_deliver(&ba, a);
    }
    wr_kcp_get_stats(a, &st);
    assert_int_equal(st.fast_retransmits, 1);
    assert_int_equal(st.retransmits, 0);
    assert_int_equal(wr_kcp_readable(b), 20 * 1376);
    assert_int_equal(wr_kcp_unacked(a), 0);
    wr_kcp_free(a);
    wr_kcp_free(b);
    link_clear(&ab);
    link_clear(&ba);
}

/* A receiver that does not read closes its window; the sender probes, and learns at once when it
 * opens again. */
static void test_window_probe(void **state)
{
    uint32_t now = 0;
    link_t ab = {.delay = 5, .rng = 3, .now = &now}, ba = {.delay = 5, .rng = 5, .now = &now};
    wr_kcp_config cfg = {.snd_wnd = 32, .rcv_wnd = 16, .interval = 10, .nodelay = 1, .nocwnd = 1};
    static uint8_t buf[200000], got[200000];
    size_t rcvd = 0;
    wr_kcp_stats st;
    wr_kcp_t *a = wr_kcp_new(9, &cfg, link_out, &ab), *b = wr_kcp_new(9, &cfg, link_out, &ba);
    fill(buf, sizeof buf, 4);
    assert_int_equal(wr_kcp_send(a, buf, sizeof buf), 0);
    for (now = 0; now < 9000; now++) {
        wr_kcp_update(a, now);
        wr_kcp_update(b, now);
        link_deliver(&ab, b);
        link_deliver(&ba, a);
    }
    wr_kcp_get_stats(a, &st);
    assert_int_equal(st.rmt_wnd, 0);
    assert_int_equal(wr_kcp_readable(b), 16 * 1376);
    for (; rcvd < sizeof buf; now++) {
        wr_kcp_update(a, now);
        wr_kcp_update(b, now);
        link_deliver(&ab, b);
        link_deliver(&ba, a);
        rcvd += wr_kcp_recv(b, got + rcvd, sizeof got - rcvd);
        assert_true(now < 20000);
    }
    assert_memory_equal(got, buf, sizeof buf);
    wr_kcp_free(a);
    wr_kcp_free(b);
    link_clear(&ab);
    link_clear(&ba);
}

/* Acks held: a receiver answers data only with data (its una), never with bare acks. */
static void test_hold_acks(void **state)
{
    int sent = 0;
    uint32_t now = 0;
    link_t ab = {.delay = 1, .rng = 3, .now = &now};
    wr_kcp_config cfg = {0};
    wr_kcp_t *a = wr_kcp_new(9, &cfg, link_out, &ab), *b = wr_kcp_new(9, &cfg, sink, &sent);
    wr_kcp_hold_acks(b, 1);
    wr_kcp_send(a, "hello", 5);
    wr_kcp_flush(a, now);
    now = 2;
    link_deliver(&ab, b);
    wr_kcp_flush(b, now);
    assert_int_equal(sent, 0);
    assert_int_equal(wr_kcp_rcv_nxt(b), 1);
    wr_kcp_hold_acks(b, 0);
    wr_kcp_flush(b, now); /* the held ack is gone: una on the next data covers it */
    assert_int_equal(sent, 0);
    wr_kcp_free(a);
    wr_kcp_free(b);
    link_clear(&ab);
}

/* Bytes in flight are not "waiting": only what the window holds back is. The KCP endpoint counts
 * waiting bytes as queued, so what a lossy path keeps in flight does not stop the session's writes
 * at its carrier's high-water mark. */
static void test_waiting_is_not_in_flight(void **state)
{
    int sent = 0;
    wr_kcp_config cfg = {0};
    assert_int_equal(wr_kcp_preset("fast2", &cfg), 0);
    cfg.snd_wnd = 16;
    wr_kcp_t *k = wr_kcp_new(9, &cfg, sink, &sent);
    size_t mss = wr_kcp_mss(k);
    char *data = calloc(32, mss);
    assert_int_equal(wr_kcp_send(k, data, 32 * mss), 0);
    assert_int_equal(wr_kcp_waiting(k), 32 * mss);
    wr_kcp_flush(k, 0);
    assert_int_equal(sent, 16); /* the window's worth left, nothing is acknowledged */
    assert_int_equal(wr_kcp_unacked(k), 32 * mss);
    assert_int_equal(wr_kcp_waiting(k), 16 * mss);
    free(data);
    wr_kcp_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),          cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_presets),         cmocka_unit_test(test_clean_link),
        cmocka_unit_test(test_lossy_link),      cmocka_unit_test(test_heavy_loss),
        cmocka_unit_test(test_fast_retransmit), cmocka_unit_test(test_window_probe),
        cmocka_unit_test(test_hold_acks),       cmocka_unit_test(test_waiting_is_not_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
