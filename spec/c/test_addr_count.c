/* Live connections per address: the limit holds per address, IPv4-mapped and plain IPv4 are one
 * address, IPv6 counts by /64, and an address's place frees as its connections end. */
#include "wr_addr_count.h"

#include "addr_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#define SA(ss) ((const struct sockaddr *)&(ss))

static void limits_each_address_on_its_own(void **state)
{
    wr_addr_count_t *c = wr_addr_count_new();
    struct sockaddr_storage a = ip("127.0.0.4"), mapped = ip("::ffff:127.0.0.4"),
                            b = ip("127.0.0.1");
    (void)state;
    assert_int_equal(0, wr_addr_count_add(c, SA(a), 2));
    assert_int_equal(0, wr_addr_count_add(c, SA(mapped), 2)); /* the same address */
    assert_int_equal(-1, wr_addr_count_add(c, SA(a), 2));
    assert_int_equal(0, wr_addr_count_add(c, SA(b), 2)); /* another address is unaffected */
    wr_addr_count_remove(c, SA(a));
    assert_int_equal(0, wr_addr_count_add(c, SA(mapped), 2)); /* a place came free */
    assert_int_equal(0, wr_addr_count_add(c, SA(a), 0));      /* 0: no limit */
    wr_addr_count_free(c);
}

static void counts_ipv6_by_64(void **state)
{
    wr_addr_count_t *c = wr_addr_count_new();
    struct sockaddr_storage a = ip("2001:db8:1:2::1"), b = ip("2001:db8:1:2::2"),
                            other = ip("2001:db8:1:3::1");
    (void)state;
    assert_int_equal(0, wr_addr_count_add(c, SA(a), 1));
    assert_int_equal(-1, wr_addr_count_add(c, SA(b), 1));
    assert_int_equal(0, wr_addr_count_add(c, SA(other), 1));
    wr_addr_count_remove(c, SA(b)); /* b's /64 is a's: removing frees that place */
    assert_int_equal(0, wr_addr_count_add(c, SA(a), 1));
    wr_addr_count_free(c);
}

static void forgets_addresses_that_left(void **state)
{
    wr_addr_count_t *c = wr_addr_count_new();
    struct sockaddr_storage a = ip("10.0.0.1");
    (void)state;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(0, wr_addr_count_add(c, SA(a), 1));
        wr_addr_count_remove(c, SA(a));
    }
    wr_addr_count_remove(c, SA(a)); /* not counted: harmless */
    assert_int_equal(0, wr_addr_count_add(c, SA(a), 1));
    wr_addr_count_free(c); /* leak checkers see every node freed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(limits_each_address_on_its_own),
        cmocka_unit_test(counts_ipv6_by_64),
        cmocka_unit_test(forgets_addresses_that_left),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
