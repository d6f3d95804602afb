/* A relay with one key per user: the server tries each user's key on msg1's header and the first
 * that authenticates names the user (wr_hs_server_check_keys, runtime/PROTOCOL.md §5.1), the
 * precomputed HMAC that keeps each try cheap, and the shared server state that holds the users
 * (wr_session_server_set_keys). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "wr_handshake.h"
#include "wr_session.h"

#define NOW   1700000000000ull /* Unix milliseconds */
#define START (NOW - 3600000ull)
#define USERS 100

static uint8_t psks[USERS][32];
static wr_hs_config cfgs[USERS];

static int setup(void **state)
{
    (void)state;
    for (int u = 0; u < USERS; u++) {
        for (int i = 0; i < 32; i++)
            psks[u][i] = (uint8_t)(u * 31 + i);
        assert_int_equal(wr_hs_config_init(&cfgs[u], psks[u], WR_BACKEND_DEFAULT, START), WR_HS_OK);
    }
    return 0;
}

/* msg1 from a client holding psk. */
static size_t client_msg1_at(wr_hs_client *c, const uint8_t *psk, uint8_t *msg1, uint64_t now)
{
    wr_hs_config cc;
    size_t len;
    assert_int_equal(wr_hs_config_init(&cc, psk, WR_BACKEND_DEFAULT, 0), WR_HS_OK);
    assert_int_equal(wr_hs_client_start(c, &cc, now, NULL, 0, msg1, WR_HS_MSG1_MAX, &len),
                     WR_HS_OK);
    return len;
}

static size_t client_msg1(wr_hs_client *c, const uint8_t *psk, uint8_t *msg1)
{
    return client_msg1_at(c, psk, msg1, NOW);
}

/* The whole exchange with user u among the first n users: the server finds u, and both ends
 * derive the same keys with u's config. */
static void handshake_as(size_t n, size_t u)
{
    wr_hs_client c;
    wr_hs_server s;
    wr_hs_keys ck, sk;
    wr_hs_config cc;
    wr_replay *rp;
    uint8_t msg1[WR_HS_MSG1_MAX], msg2[WR_HS_MSG2_MAX];
    size_t len = client_msg1(&c, psks[u], msg1), need, msg2_len;
    assert_int_equal(wr_replay_new(&rp, 0), 0);
    wr_hs_server_init(&s);
    assert_int_equal(wr_hs_server_check_keys(&s, cfgs, n, rp, msg1, len, NOW, &need), WR_HS_OK);
    assert_int_equal(s.key, u);
    assert_int_equal(need, len);
    assert_int_equal(wr_hs_server_respond(&s, &cfgs[u], NOW, msg2, sizeof msg2, &msg2_len, &sk),
                     WR_HS_OK);
    assert_int_equal(wr_hs_config_init(&cc, psks[u], WR_BACKEND_DEFAULT, 0), WR_HS_OK);
    assert_int_equal(wr_hs_client_finish(&c, &cc, msg2, msg2_len, &need, &ck), WR_HS_OK);
    assert_memory_equal(ck.c2s, sk.c2s, 32);
    assert_memory_equal(ck.s2c, sk.s2c, 32);
    wr_replay_free(rp);
}

static void finds_each_user(void **state)
{
    (void)state;
    handshake_as(3, 0);
    handshake_as(3, 1);
    handshake_as(3, 2);
}

static void hundred_users_still_handshake(void **state)
{
    (void)state;
    handshake_as(USERS, USERS - 1);
    handshake_as(USERS, USERS / 2);
}

/* A key no user holds is refused as a wrong key always was, whatever the number of users. */
static void unknown_key_is_refused(void **state)
{
    uint8_t other[32], msg1[WR_HS_MSG1_MAX];
    wr_hs_client c;
    wr_hs_server s;
    wr_replay *rp;
    size_t len, need;
    (void)state;
    memset(other, 0xee, sizeof other);
    len = client_msg1(&c, other, msg1);
    assert_int_equal(wr_replay_new(&rp, 0), 0);
    wr_hs_server_init(&s);
    assert_int_equal(wr_hs_server_check_keys(&s, cfgs, USERS, rp, msg1, len, NOW, &need),
                     WR_HS_REJECT);
    assert_int_equal(s.reason, WR_HS_R_BAD_MAC);
    /* a user outside the keys given is not found either */
    len = client_msg1(&c, psks[5], msg1);
    wr_hs_server_init(&s);
    assert_int_equal(wr_hs_server_check_keys(&s, cfgs, 5, rp, msg1, len, NOW, &need), WR_HS_REJECT);
    assert_int_equal(s.reason, WR_HS_R_BAD_MAC);
    wr_hs_server_init(&s);
    assert_int_equal(wr_hs_server_check_keys(&s, cfgs, 0, rp, msg1, len, NOW, &need),
                     WR_HS_EMISUSE);
    wr_replay_free(rp);
}

/* The header arrives first: the user is known from it, and the rest is checked with that
 * user's config alone (what a session does, so the users may change in between). */
static void header_first_then_the_users_config(void **state)
{
    uint8_t msg1[WR_HS_MSG1_MAX];
    wr_hs_client c;
    wr_hs_server s;
    wr_replay *rp;
    size_t len, need;
    (void)state;
    len = client_msg1(&c, psks[7], msg1);
    assert_int_equal(wr_replay_new(&rp, 0), 0);
    wr_hs_server_init(&s);
    assert_int_equal(wr_hs_server_check_keys(&s, cfgs, 10, rp, msg1, WR_HS_MSG1_FIXED, NOW, &need),
                     WR_HS_NEED_MORE);
    assert_int_equal(s.key, 7);
    assert_int_equal(need, len);
    assert_int_equal(wr_hs_server_check(&s, &cfgs[7], rp, msg1, len, NOW, &need), WR_HS_OK);
    /* the same message again is a replay, whoever's key it is under */
    wr_hs_server_init(&s);
    assert_int_equal(wr_hs_server_check_keys(&s, cfgs, 10, rp, msg1, len, NOW, &need),
                     WR_HS_REJECT);
    assert_int_equal(s.reason, WR_HS_R_REPLAY);
    wr_replay_free(rp);
}

/* The precomputed HMAC the trial uses is HMAC-SHA256, for short and long keys and messages. */
static void hmac_with_is_hmac(void **state)
{
    static const size_t klens[] = {0, 1, 32, 64, 65, 200};
    static const size_t mlens[] = {0, 21, 55, 56, 64, 300};
    uint8_t key[200], msg[300], want[32], got[32];
    (void)state;
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 13 + 5);
    for (size_t k = 0; k < sizeof klens / sizeof klens[0]; k++) {
        wr_hmac_key hk;
        wr_hmac_key_init(&hk, key, klens[k]);
        for (size_t m = 0; m < sizeof mlens / sizeof mlens[0]; m++) {
            assert_int_equal(wr_hmac_sha256(key, klens[k], msg, mlens[m], want), 0);
            wr_hmac_sha256_with(&hk, msg, mlens[m], got);
            assert_memory_equal(got, want, 32);
        }
    }
}

static void server_users(void **state)
{
    wr_session_server_t *srv;
    uint8_t msg1[WR_HS_MSG1_MAX];
    wr_hs_client c;
    wr_hs_server out;
    size_t len;
    wr_session_key two[2] = {{"alice", psks[1]}, {"bob", psks[2]}};
    wr_session_key dup[2] = {{"alice", psks[1]}, {"alice", psks[2]}};
    wr_session_key unnamed[1] = {{"", psks[1]}};
    char longname[WR_USER_NAME_MAX + 1];
    wr_session_key toolong[1] = {{longname, psks[1]}};
    (void)state;
    memset(longname, 'x', WR_USER_NAME_MAX);
    longname[WR_USER_NAME_MAX] = '\0';
    assert_int_equal(wr_session_server_new(psks[0], 0, &srv), 0);
    assert_int_equal(srv->nkeys, 1);
    assert_string_equal(srv->names[0], WR_USER_DEFAULT);
    assert_int_equal(wr_session_server_set_keys(srv, two, 2), 0);
    /* the server's clock is the real one (and it refuses times before its start) */
    len = client_msg1_at(&c, psks[2], msg1, (uint64_t)time(NULL) * 1000 + 1000);
    assert_int_equal(wr_session_server_check(srv, msg1, len, &out), 0);
    assert_int_equal(out.key, 1);
    len = client_msg1_at(&c, psks[0], msg1, (uint64_t)time(NULL) * 1000 + 1000);
    assert_int_equal(wr_session_server_check(srv, msg1, len, &out), -1); /* no longer a user */
    assert_int_equal(wr_session_server_set_keys(srv, dup, 2), UV_EINVAL);
    assert_int_equal(wr_session_server_set_keys(srv, unnamed, 1), UV_EINVAL);
    assert_int_equal(wr_session_server_set_keys(srv, toolong, 1), UV_EINVAL);
    assert_int_equal(wr_session_server_set_keys(srv, two, 0), UV_EINVAL);
    /* refused changes keep the users in force */
    assert_int_equal(srv->nkeys, 2);
    assert_string_equal(srv->names[1], "bob");
    wr_session_server_set_cipher(srv, WR_AEAD_AES256_GCM);
    assert_int_equal(srv->keys[0].cipher, WR_AEAD_AES256_GCM);
    assert_int_equal(srv->keys[1].cipher, WR_AEAD_AES256_GCM);
    wr_session_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(finds_each_user),
        cmocka_unit_test(hundred_users_still_handshake),
        cmocka_unit_test(unknown_key_is_refused),
        cmocka_unit_test(header_first_then_the_users_config),
        cmocka_unit_test(hmac_with_is_hmac),
        cmocka_unit_test(server_users),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
