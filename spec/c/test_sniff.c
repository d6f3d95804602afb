/* The front door's classifier, and the handshake's promise that a client's first bytes are
 * always read as the raw carrier. */
#include "wr_handshake.h"
#include "wr_sniff.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static enum wr_sniff_kind sniff(const char *s)
{
    return wr_sniff((const uint8_t *)s, strlen(s));
}

static void tells_http_tls_and_raw_apart(void **state)
{
    static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00};
    static const uint8_t alert[] = {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28};
    static const uint8_t not_hello[] = {0x16, 0x03, 0x01, 0x00, 0x10, 0x02};
    (void)state;
    assert_int_equal(WR_SNIFF_HTTP, sniff("GET / HTTP/1.1\r\n"));
    assert_int_equal(WR_SNIFF_HTTP, sniff("OPTIONS * HTTP/1.1\r\n"));
    assert_int_equal(WR_SNIFF_HTTP, sniff("PRI * HTTP/2.0\r\n"));
    assert_int_equal(WR_SNIFF_HTTP, sniff("PROPFIND /x"));
    assert_int_equal(WR_SNIFF_NEED_MORE, sniff("GE"));
    assert_int_equal(WR_SNIFF_NEED_MORE, sniff("POST"));
    assert_int_equal(WR_SNIFF_RAW, sniff("GO "));            /* 2 letters: no method */
    assert_int_equal(WR_SNIFF_RAW, sniff("get / HTTP/1.1")); /* methods are case-sensitive */
    assert_int_equal(WR_SNIFF_RAW, sniff("ABCDEFGHIJK /"));  /* too long for a method */
    assert_int_equal(WR_SNIFF_RAW, sniff("SSH-2.0-OpenSSH"));
    assert_int_equal(WR_SNIFF_TLS, wr_sniff(hello, sizeof hello));
    assert_int_equal(WR_SNIFF_NEED_MORE, wr_sniff(hello, 3));
    assert_int_equal(WR_SNIFF_RAW, wr_sniff(alert, sizeof alert));
    assert_int_equal(WR_SNIFF_RAW, wr_sniff(not_hello, sizeof not_hello));
    assert_int_equal(WR_SNIFF_NEED_MORE, wr_sniff(NULL, 0));
}

/* A real client's msg1 is classified raw from its first bytes, whatever salt it drew. */
static void a_client_handshake_always_reads_as_raw(void **state)
{
    uint8_t psk[32] = {7}, msg1[WR_HS_MSG1_MAX];
    wr_hs_config cfg;
    (void)state;
    assert_int_equal(wr_hs_config_init(&cfg, psk, WR_BACKEND_DEFAULT, 0), WR_HS_OK);
    for (int i = 0; i < 2000; i++) {
        wr_hs_client c;
        size_t len;
        assert_int_equal(
            wr_hs_client_start(&c, &cfg, 1700000000000ull, NULL, 0, msg1, sizeof msg1, &len),
            WR_HS_OK);
        assert_int_equal(WR_SNIFF_RAW, wr_sniff(msg1, WR_SNIFF_MAX));
        wr_hs_client_wipe(&c);
    }
    wr_hs_config_wipe(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tells_http_tls_and_raw_apart),
        cmocka_unit_test(a_client_handshake_always_reads_as_raw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
