/* The user's address behind a trusted front: trusted ranges, and X-Forwarded-For / Forwarded
 * walked from the right past trusted hops. */
#include "wr_forwarded.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

static wr_trusted_t trusted[3];

static int setup(void **state)
{
    (void)state;
    assert_int_equal(0, wr_trusted_parse("127.0.0.1", &trusted[0]));
    assert_int_equal(0, wr_trusted_parse("10.0.0.0/8", &trusted[1]));
    assert_int_equal(0, wr_trusted_parse("fd00::/8", &trusted[2]));
    return 0;
}

/* The client a head names, as "ip:port", or "-" when none is believed. */
static const char *client_of(const char *head_text)
{
    static wr_http_head_t h;
    static char out[80];
    struct sockaddr_storage ss;
    char ip[64];
    wr_http_head_init(&h);
    assert_true(wr_http_head_parse(&h, head_text, strlen(head_text)) > 0);
    if (wr_forwarded_client(&h, trusted, 3, &ss) != 0) return "-";
    if (ss.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        snprintf(out, sizeof out, "%s:%u", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    } else {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
        snprintf(out, sizeof out, "[%s]:%u", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    }
    return out;
}

static int matches(const char *ip)
{
    struct sockaddr_storage ss;
    if (uv_ip4_addr(ip, 1, (struct sockaddr_in *)&ss) != 0)
        assert_int_equal(0, uv_ip6_addr(ip, 1, (struct sockaddr_in6 *)&ss));
    return wr_trusted_match(trusted, 3, (struct sockaddr *)&ss);
}

static void parses_and_matches_ranges(void **state)
{
    wr_trusted_t t;
    (void)state;
    assert_true(matches("127.0.0.1"));
    assert_false(matches("127.0.0.2"));
    assert_true(matches("10.200.3.4"));
    assert_false(matches("11.0.0.1"));
    assert_true(matches("fd12::1"));
    assert_false(matches("fe80::1"));
    assert_true(matches("::ffff:10.1.1.1")); /* a mapped peer counts as IPv4 */
    assert_int_equal(0, wr_trusted_parse("0.0.0.0/0", &t));
    assert_int_equal(0, wr_trusted_parse("::/0", &t));
    assert_int_equal(UV_EINVAL, wr_trusted_parse("10.0.0.0/33", &t));
    assert_int_equal(UV_EINVAL, wr_trusted_parse("10.0.0.0/", &t));
    assert_int_equal(UV_EINVAL, wr_trusted_parse("nginx.local", &t));
    assert_int_equal(UV_EINVAL, wr_trusted_parse("", &t));
}

static void walks_x_forwarded_for_from_the_right(void **state)
{
    (void)state;
    assert_string_equal("203.0.113.7:0",
                        client_of("GET / HTTP/1.1\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"));
    /* what the user sent itself is left of the first untrusted entry: ignored */
    assert_string_equal("203.0.113.7:0",
                        client_of("GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1, 203.0.113.7, "
                                  "10.0.0.5\r\n\r\n"));
    assert_string_equal("[2001:db8::1]:0",
                        client_of("GET / HTTP/1.1\r\nX-Forwarded-For: 2001:db8::1\r\n\r\n"));
    assert_string_equal("198.51.100.2:4711",
                        client_of("GET / HTTP/1.1\r\nX-Forwarded-For: 198.51.100.2:4711\r\n\r\n"));
    /* a front that adds a line of its own: the last one counts */
    assert_string_equal("198.51.100.9:0", client_of("GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\n"
                                                    "X-Forwarded-For: 198.51.100.9\r\n\r\n"));
    assert_string_equal("-", client_of("GET / HTTP/1.1\r\nX-Forwarded-For: unknown\r\n\r\n"));
    assert_string_equal("-", client_of("GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"));
    assert_string_equal("-", client_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
}

static void reads_forwarded(void **state)
{
    (void)state;
    assert_string_equal("192.0.2.60:0",
                        client_of("GET / HTTP/1.1\r\nForwarded: for=192.0.2.60;proto=http;"
                                  "by=203.0.113.43\r\n\r\n"));
    assert_string_equal("[2001:db8:cafe::17]:4711",
                        client_of("GET / HTTP/1.1\r\nForwarded: for=192.0.2.43, "
                                  "for=\"[2001:db8:cafe::17]:4711\"\r\n\r\n"));
    assert_string_equal("192.0.2.43:0", client_of("GET / HTTP/1.1\r\nForwarded: For=192.0.2.43, "
                                                  "for=10.1.2.3\r\n\r\n"));
    assert_string_equal("-", client_of("GET / HTTP/1.1\r\nForwarded: for=_hidden\r\n\r\n"));
    assert_string_equal("-", client_of("GET / HTTP/1.1\r\nForwarded: proto=https\r\n\r\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_and_matches_ranges),
        cmocka_unit_test(walks_x_forwarded_for_from_the_right),
        cmocka_unit_test(reads_forwarded),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
