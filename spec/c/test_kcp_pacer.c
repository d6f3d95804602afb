/* KCP's pacer against a simulated bottleneck on a millisecond clock: it finds the path's rate
 * from the acknowledgements, keeps the bottleneck's queue short, is not talked down by rounds
 * without data, and says how long to wait when its budget is spent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "wr_kcp_pacer.h"

#define MSS     1376
#define RTT     20   /* ms, without queueing */
#define PATH    1250 /* bytes per ms at the bottleneck: 10 MB/s */
#define HISTORY 4096 /* ms of the simulation */

/* A sender that always has data, through a bottleneck of PATH bytes/ms and RTT ms of delay.
 * Returns the largest queue (bytes) the bottleneck held after the first second; *rate gets the
 * pacer's estimate at the end (bytes/s). At fluke_ms (0: never) the round trip the sender sees
 * is 3 ms for one tick, as a sample stamped late by a busy host would be. */
static uint64_t run_bulk(uint32_t fluke_ms, uint64_t *rate, uint64_t *delivered_last_second)
{
    static uint32_t arriving[HISTORY + RTT + 1]; /* bytes acknowledged at each ms */
    wr_kcp_pacer p;
    uint64_t queue = 0, max_queue = 0, late = 0;
    memset(arriving, 0, sizeof arriving);
    wr_kcp_pacer_init(&p, MSS, 0);
    for (uint32_t now = 0; now < HISTORY; now++) {
        wr_kcp_pacer_delivered(&p, arriving[now]);
        if (now >= HISTORY - 1000) late += arriving[now];
        /* The round trip the sender sees: the path's, plus the time the queue takes. */
        uint32_t rtt = RTT + (uint32_t)(queue / PATH);
        if (fluke_ms && now == fluke_ms) rtt = 3;
        wr_kcp_pacer_tick(&p, now, rtt, 0);
        while (wr_kcp_pacer_may_send(&p)) {
            wr_kcp_pacer_spend(&p, MSS + 24);
            queue += MSS;
        }
        uint32_t out = queue < PATH ? (uint32_t)queue : PATH;
        queue -= out;
        arriving[now + RTT] += out;
        if (now > 1000 && queue > max_queue) max_queue = queue;
    }
    *rate = p.estimate;
    *delivered_last_second = late;
    return max_queue;
}

static void finds_the_rate_and_keeps_the_queue_short(void **state)
{
    (void)state;
    uint64_t rate, late, max_queue = run_bulk(0, &rate, &late);
    print_message("estimate %llu B/s, last second %llu B, largest queue %llu B\n",
                  (unsigned long long)rate, (unsigned long long)late,
                  (unsigned long long)max_queue);
    /* The estimate is the bottleneck's rate, give or take the measuring rounds' granularity. */
    assert_true(rate >= PATH * 1000 * 8 / 10 && rate <= PATH * 1000 * 13 / 10);
    /* The path stays busy... */
    assert_true(late >= (uint64_t)PATH * 1000 * 85 / 100);
    /* ...with a queue well under a window: a fraction of one round trip's worth (BDP). */
    assert_true(max_queue <= (uint64_t)PATH * RTT);
}

/* A lowest round trip below the path's makes every round look queued: the drains that follow
 * cannot bring the round trip down to it, and the pace must not shrink round after round until
 * that sample ages out (10 s); after two drains in a row that failed, the round trip they ended
 * at is the base. */
static void a_fluke_round_trip_does_not_starve_the_path(void **state)
{
    (void)state;
    uint64_t rate, late;
    run_bulk(1000, &rate, &late);
    print_message("after a 3 ms sample: estimate %llu B/s, last second %llu B\n",
                  (unsigned long long)rate, (unsigned long long)late);
    assert_true(late >= (uint64_t)PATH * 1000 * 85 / 100);
}

static void rounds_without_data_do_not_lower_the_estimate(void **state)
{
    (void)state;
    wr_kcp_pacer p;
    uint32_t now = 0;
    wr_kcp_pacer_init(&p, MSS, 0);
    /* Bulk rounds at 5 MB/s... */
    for (; now < 1000; now++) {
        wr_kcp_pacer_delivered(&p, 5000);
        wr_kcp_pacer_tick(&p, now, RTT, 0);
    }
    uint64_t before = p.estimate;
    assert_true(before >= 4000000 && before <= 6000000);
    /* ...then a trickle, the sender out of data. */
    for (; now < 3000; now++) {
        wr_kcp_pacer_delivered(&p, 10);
        wr_kcp_pacer_tick(&p, now, RTT, 1);
    }
    assert_int_equal(before, p.estimate);
    /* Idle, a burst may still leave at once. */
    assert_true(wr_kcp_pacer_may_send(&p));
    assert_int_equal(0, wr_kcp_pacer_wait(&p, now));
}

static void says_how_long_to_wait(void **state)
{
    (void)state;
    wr_kcp_pacer p;
    wr_kcp_pacer_init(&p, MSS, 0);
    wr_kcp_pacer_tick(&p, 0, RTT, 0);
    while (wr_kcp_pacer_may_send(&p))
        wr_kcp_pacer_spend(&p, MSS);
    uint32_t wait = wr_kcp_pacer_wait(&p, 0);
    assert_true(wait >= 1);
    /* At the time it said, a segment may go. */
    wr_kcp_pacer_tick(&p, wait, RTT, 0);
    assert_true(wr_kcp_pacer_may_send(&p));
    assert_int_equal(0, wr_kcp_pacer_wait(&p, wait));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(finds_the_rate_and_keeps_the_queue_short),
        cmocka_unit_test(a_fluke_round_trip_does_not_starve_the_path),
        cmocka_unit_test(rounds_without_data_do_not_lower_the_estimate),
        cmocka_unit_test(says_how_long_to_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
