/* Admission of unauthenticated connections: the newcomer always gets in, the oldest goes, failed
 * ones before pending ones, and one address churns only its own connections. */
#include "wr_admit.h"

#include "addr_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define N 16

typedef struct conn {
    wr_admit_entry e; /* first */
    int evicted;
} conn;

static conn conns[N];
static int evictions;

static void on_evict(wr_admit_entry *e, void *data)
{
    (void)data;
    ((conn *)e)->evicted = 1;
    evictions++;
}

static void add(wr_admit_t *a, int i, const char *text, int doomed)
{
    struct sockaddr_storage ss = ip(text);
    wr_admit_add(a, &conns[i].e, (struct sockaddr *)&ss, doomed);
}

static int reset(void **state)
{
    (void)state;
    memset(conns, 0, sizeof conns);
    evictions = 0;
    return 0;
}

static void at_the_cap_the_oldest_goes_not_the_newcomer(void **state)
{
    wr_admit_t *a = wr_admit_new(3, 0, on_evict, NULL);
    wr_admit_stats st;
    (void)state;
    add(a, 0, "10.0.0.1", 0);
    add(a, 1, "10.0.0.2", 0);
    add(a, 2, "10.0.0.3", 0);
    assert_int_equal(0, evictions);
    add(a, 3, "10.0.0.4", 0);
    assert_true(conns[0].evicted);
    assert_false(conns[3].evicted);
    add(a, 4, "10.0.0.5", 0);
    assert_true(conns[1].evicted);
    wr_admit_get_stats(a, &st);
    assert_int_equal(3, st.pending);
    assert_int_equal(2, st.evicted_total);
    wr_admit_free(a);
}

static void failed_connections_go_before_pending_ones(void **state)
{
    wr_admit_t *a = wr_admit_new(3, 0, on_evict, NULL);
    (void)state;
    add(a, 0, "10.0.0.1", 0); /* the oldest, still in its handshake */
    add(a, 1, "10.0.0.2", 0);
    add(a, 2, "10.0.0.3", 1); /* from an address past its failure tally */
    add(a, 3, "10.0.0.4", 0);
    assert_true(conns[2].evicted);
    assert_false(conns[0].evicted);
    wr_admit_doom(a, &conns[1].e); /* its handshake failed: in the probe sink */
    add(a, 4, "10.0.0.5", 0);
    assert_true(conns[1].evicted);
    assert_false(conns[0].evicted);
    add(a, 5, "10.0.0.6", 0);
    assert_true(conns[0].evicted); /* no failed ones left: the oldest pending */
    wr_admit_free(a);
}

static void one_address_churns_only_its_own(void **state)
{
    wr_admit_t *a = wr_admit_new(8, 2, on_evict, NULL);
    wr_admit_stats st;
    (void)state;
    add(a, 0, "10.0.0.9", 0); /* another user, oldest of all */
    add(a, 1, "127.0.0.2", 0);
    add(a, 2, "::ffff:127.0.0.2", 0); /* the same address, seen through a dual-stack listener */
    for (int i = 3; i < 10; i++)
        add(a, i, "127.0.0.2", 0);
    assert_false(conns[0].evicted);
    assert_false(conns[9].evicted);
    assert_false(conns[8].evicted);
    for (int i = 1; i < 8; i++)
        assert_true(conns[i].evicted);
    wr_admit_get_stats(a, &st);
    assert_int_equal(3, st.pending);
    assert_int_equal(7, st.evicted_per_addr);
    assert_int_equal(0, st.evicted_total);
    wr_admit_free(a);
}

static void an_address_loses_its_failed_connection_first(void **state)
{
    wr_admit_t *a = wr_admit_new(8, 2, on_evict, NULL);
    (void)state;
    add(a, 0, "2001:db8::1", 0);
    add(a, 1, "2001:db8::2", 0); /* the same /64 */
    wr_admit_doom(a, &conns[1].e);
    add(a, 2, "2001:db8::3", 0);
    assert_true(conns[1].evicted);
    assert_false(conns[0].evicted);
    wr_admit_free(a);
}

static void removed_entries_no_longer_count(void **state)
{
    wr_admit_t *a = wr_admit_new(2, 0, on_evict, NULL);
    wr_admit_stats st;
    (void)state;
    add(a, 0, "10.0.0.1", 0);
    add(a, 1, "10.0.0.2", 0);
    wr_admit_remove(a, &conns[0].e); /* authenticated */
    wr_admit_remove(a, &conns[0].e); /* and later closed: a no-op */
    add(a, 2, "10.0.0.3", 0);
    assert_int_equal(0, evictions);
    add(a, 3, "10.0.0.4", 0);
    assert_true(conns[1].evicted);
    wr_admit_remove(a, &conns[1].e); /* evicted entries are already out */
    wr_admit_get_stats(a, &st);
    assert_int_equal(2, st.pending);
    wr_admit_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(at_the_cap_the_oldest_goes_not_the_newcomer, reset),
        cmocka_unit_test_setup(failed_connections_go_before_pending_ones, reset),
        cmocka_unit_test_setup(one_address_churns_only_its_own, reset),
        cmocka_unit_test_setup(an_address_loses_its_failed_connection_first, reset),
        cmocka_unit_test_setup(removed_entries_no_longer_count, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
