/* The loop the C tests run on: a watchdog that turns a hang into a failure, and a teardown that
 * fails when a test left a handle open or a chunk referenced. Include after cmocka.h. */
#ifndef LOOP_FIXTURE_H
#define LOOP_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "wr_buf.h"
#include "wr_tcp_endpoint.h"

/* Under ASan (or when the runner says so) tests shrink their sizes: it runs several times slower.
 */
static inline int sanitized(void)
{
    const char *e = getenv("WARREN_SANITIZED");
    if (e && *e == '1') return 1;
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 1;
#endif
#endif
    return 0;
}

static uv_loop_t loop;
static uv_timer_t watchdog;
static int timed_out;

static void watchdog_cb(uv_timer_t *t)
{
    timed_out = 1;
    uv_stop(t->loop);
}

/* Runs until cond(arg) holds. */
static void run_until(int (*cond)(void *), void *arg, uint64_t ms)
{
    timed_out = 0;
    uv_timer_start(&watchdog, watchdog_cb, ms, 0);
    while (!cond(arg) && !timed_out)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&watchdog);
    if (timed_out) fail_msg("watchdog: no progress within %llu ms", (unsigned long long)ms);
}

static int loop_setup(void)
{
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &watchdog);
    timed_out = 0;
    return 0;
}

static void walk_count(uv_handle_t *h, void *arg)
{
    if (h != (uv_handle_t *)&watchdog && !uv_is_closing(h)) {
        fprintf(stderr, "open handle: %s\n", uv_handle_type_name(uv_handle_get_type(h)));
        ++*(int *)arg;
    }
}

static int loop_teardown(void)
{
    int open = 0;
    wr_buf_stats_t st;
    for (int i = 0; i < 50; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    uv_walk(&loop, walk_count, &open);
    assert_int_equal(open, 0);
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    wr_buf_get_stats(&st);
    assert_int_equal(st.live, 0); /* no chunk reference leaked */
    wr_buf_cache_trim();
    wr_tcp_endpoint_cache_trim();
    return 0;
}

#endif
