/* Per-address failure tally: counting, windows, IPv6 /64 grouping, IPv4-mapped addresses counted
 * as IPv4, and a full table. */
#include "wr_addr_limit.h"

#include "addr_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define SA(ss) ((const struct sockaddr *)&(ss))

static void marks_after_max_failures_until_the_window_ends(void **state)
{
    wr_addr_limit_t *l = wr_addr_limit_new(3, 1000, 64);
    struct sockaddr_storage a = ip("127.0.0.2"), b = ip("127.0.0.3");
    (void)state;
    for (int i = 0; i < 3; i++) {
        assert_false(wr_addr_limit_over(l, SA(a), 100));
        /* reaching the limit is reported once, so the caller logs once per window */
        assert_int_equal(i == 2, wr_addr_limit_fail(l, SA(a), 100 + i));
    }
    assert_false(wr_addr_limit_fail(l, SA(a), 200));
    assert_true(wr_addr_limit_over(l, SA(a), 500));
    assert_false(wr_addr_limit_over(l, SA(b), 500)); /* others are not affected */
    assert_true(wr_addr_limit_over(l, SA(a), 1099));
    assert_false(wr_addr_limit_over(l, SA(a), 1100)); /* a new window */
    wr_addr_limit_fail(l, SA(a), 1100);
    assert_false(wr_addr_limit_over(l, SA(a), 1100));
    wr_addr_limit_free(l);
}

static void groups_ipv6_by_64(void **state)
{
    wr_addr_limit_t *l = wr_addr_limit_new(2, 1000, 64);
    struct sockaddr_storage a = ip("2001:db8:1:2::1"), b = ip("2001:db8:1:2::ffff"),
                            c = ip("2001:db8:1:3::1");
    (void)state;
    wr_addr_limit_fail(l, SA(a), 0);
    wr_addr_limit_fail(l, SA(b), 0);
    assert_true(wr_addr_limit_over(l, SA(a), 1));
    assert_true(wr_addr_limit_over(l, SA(b), 1));
    assert_false(wr_addr_limit_over(l, SA(c), 1));
    wr_addr_limit_free(l);
}

/* A dual-stack listener sees 127.0.0.2 as ::ffff:127.0.0.2: it must not share a bucket with
 * 127.0.0.1 or ::1 (the first 8 bytes of all three are zero). */
static void mapped_ipv4_counts_as_ipv4(void **state)
{
    wr_addr_limit_t *l = wr_addr_limit_new(2, 1000, 64);
    struct sockaddr_storage mapped = ip("::ffff:127.0.0.2"), plain = ip("127.0.0.2"),
                            other = ip("::ffff:127.0.0.1"), loop6 = ip("::1");
    (void)state;
    wr_addr_limit_fail(l, SA(mapped), 0);
    wr_addr_limit_fail(l, SA(plain), 0);
    assert_true(wr_addr_limit_over(l, SA(mapped), 1));
    assert_true(wr_addr_limit_over(l, SA(plain), 1));
    assert_false(wr_addr_limit_over(l, SA(other), 1));
    assert_false(wr_addr_limit_over(l, SA(loop6), 1));
    wr_addr_limit_free(l);
}

static void a_full_table_forgets_the_oldest(void **state)
{
    wr_addr_limit_t *l = wr_addr_limit_new(1, 100000, 8); /* one probe run covers the table */
    char text[32];
    struct sockaddr_storage first = ip("10.0.0.1");
    (void)state;
    wr_addr_limit_fail(l, SA(first), 0);
    assert_true(wr_addr_limit_over(l, SA(first), 1));
    for (int i = 2; i < 2 + 64; i++) {
        struct sockaddr_storage a;
        snprintf(text, sizeof text, "10.0.%d.%d", i / 250, i % 250);
        a = ip(text);
        wr_addr_limit_fail(l, SA(a), (uint64_t)i);
        assert_true(wr_addr_limit_over(l, SA(a), (uint64_t)i)); /* the newest is always kept */
    }
    assert_false(wr_addr_limit_over(l, SA(first), 100)); /* evicted: memory stays bounded */
    wr_addr_limit_free(l);
}

static void zero_means_no_limit(void **state)
{
    struct sockaddr_storage a = ip("127.0.0.2");
    (void)state;
    assert_null(wr_addr_limit_new(0, 1000, 64));
    wr_addr_limit_fail(NULL, SA(a), 0);
    assert_false(wr_addr_limit_over(NULL, SA(a), 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(marks_after_max_failures_until_the_window_ends),
        cmocka_unit_test(groups_ipv6_by_64),
        cmocka_unit_test(mapped_ipv4_counts_as_ipv4),
        cmocka_unit_test(a_full_table_forgets_the_oldest),
        cmocka_unit_test(zero_means_no_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
