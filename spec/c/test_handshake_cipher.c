/* The frame cipher agreed inside the handshake: who picks what, the authenticated refusal, the
 * offer and the pick bound to the transcript, frames across backends under both ciphers, and a
 * fixed vector of the messages and keys (runtime/PROTOCOL.md §3, §4, §6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wr_frame.h"
#include "wr_handshake.h"

#define NOW    1700000000000ull /* Unix milliseconds */
#define START  (NOW - 3600000ull)
#define AUTO   WR_HS_CIPHER_AUTO
#define AES    WR_AEAD_AES256_GCM
#define CHACHA WR_AEAD_CHACHA20_POLY1305

static uint8_t psk[32];

static int setup(void **state)
{
    for (int i = 0; i < 32; i++)
        psk[i] = (uint8_t)i;
    return 0;
}

/* One end's settings: what it accepts, whether it counts as having AES hardware, its backend. */
struct side {
    int cipher, aes_hw;
    enum wr_backend backend;
};

struct hs {
    wr_hs_config ccfg, scfg;
    wr_replay *rp;
    wr_hs_client c;
    wr_hs_server s;
    uint8_t msg1[WR_HS_MSG1_MAX], msg2[WR_HS_MSG2_MAX];
    size_t msg1_len, msg2_len;
    wr_hs_keys ck, sk;
    int src, crc; /* respond's and finish's results */
};

static void hs_config(wr_hs_config *cfg, const struct side *side, uint64_t not_before)
{
    assert_int_equal(wr_hs_config_init(cfg, psk, side->backend, not_before), WR_HS_OK);
    cfg->cipher = side->cipher;
    cfg->aes_hw = side->aes_hw;
}

/* msg1 as the client builds it, checked by the server. */
static void hs_begin(struct hs *h, const struct side *cs, const struct side *ss)
{
    size_t need;
    memset(h, 0, sizeof *h);
    hs_config(&h->ccfg, cs, 0);
    hs_config(&h->scfg, ss, START);
    assert_int_equal(wr_replay_new(&h->rp, 0), 0);
    wr_hs_server_init(&h->s);
    assert_int_equal(
        wr_hs_client_start(&h->c, &h->ccfg, NOW, NULL, 0, h->msg1, sizeof h->msg1, &h->msg1_len),
        WR_HS_OK);
    assert_int_equal(wr_hs_server_check(&h->s, &h->scfg, h->rp, h->msg1, h->msg1_len, NOW, &need),
                     WR_HS_OK);
}

/* The rest of the exchange: respond, then the client reads msg2. */
static void hs_finish(struct hs *h)
{
    size_t need;
    h->src =
        wr_hs_server_respond(&h->s, &h->scfg, NOW, h->msg2, sizeof h->msg2, &h->msg2_len, &h->sk);
    if (h->msg2_len)
        h->crc = wr_hs_client_finish(&h->c, &h->ccfg, h->msg2, h->msg2_len, &need, &h->ck);
}

static void hs_run(struct hs *h, const struct side *cs, const struct side *ss)
{
    hs_begin(h, cs, ss);
    hs_finish(h);
}

static void hs_free(struct hs *h)
{
    wr_replay_free(h->rp);
}

/* Who gets what: AES-256-GCM when both ends run it in hardware (or one end insists and the
 * other takes it), ChaCha20-Poly1305 otherwise; nothing in common is refused, by msg2. */
static void test_choice_matrix(void **state)
{
    static const struct {
        int c_cipher, c_hw, s_cipher, s_hw, want;
    } cases[] = {
        {AUTO, 1, AUTO, 1, AES},      {AUTO, 1, AUTO, 0, CHACHA},     {AUTO, 0, AUTO, 1, CHACHA},
        {AUTO, 0, AUTO, 0, CHACHA},   {AES, 0, AUTO, 0, AES},         {AES, 1, AUTO, 1, AES},
        {CHACHA, 1, AUTO, 1, CHACHA}, {CHACHA, 0, AUTO, 0, CHACHA},   {AUTO, 0, AES, 0, AES},
        {AUTO, 1, AES, 1, AES},       {AUTO, 1, CHACHA, 1, CHACHA},   {AUTO, 0, CHACHA, 1, CHACHA},
        {AES, 1, AES, 0, AES},        {CHACHA, 1, CHACHA, 1, CHACHA}, {AES, 1, CHACHA, 1, 0},
        {CHACHA, 1, AES, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct side cs = {cases[i].c_cipher, cases[i].c_hw, WR_BACKEND_DEFAULT};
        struct side ss = {cases[i].s_cipher, cases[i].s_hw, WR_BACKEND_DEFAULT};
        struct hs h;
        hs_run(&h, &cs, &ss);
        if (cases[i].want) {
            assert_int_equal(h.src, WR_HS_OK);
            assert_int_equal(h.crc, WR_HS_OK);
            assert_int_equal(h.sk.alg, cases[i].want);
            assert_int_equal(h.ck.alg, cases[i].want);
            assert_memory_equal(h.ck.c2s, h.sk.c2s, 32);
            assert_memory_equal(h.ck.s2c, h.sk.s2c, 32);
        } else {
            /* the server answers (the client proved the key) but derives nothing */
            assert_int_equal(h.src, WR_HS_REJECT);
            assert_int_equal(h.s.reason, WR_HS_R_NO_CIPHER);
            assert_true(h.msg2_len > 0 && h.msg2_len <= h.msg1_len);
            assert_true(wr_ct_is_zero(&h.sk, sizeof h.sk));
            assert_int_equal(h.crc, WR_HS_REJECT);
            assert_int_equal(h.c.reason, WR_HS_R_NO_CIPHER);
            assert_non_null(strstr(wr_hs_client_failure(&h.c),
                                   wr_aead_alg_name((enum wr_aead_alg)cases[i].c_cipher)));
            assert_non_null(strstr(wr_hs_client_failure(&h.c), "does not accept"));
        }
        hs_free(&h);
    }
}

static void test_names(void **state)
{
    assert_int_equal(wr_hs_cipher_from_name("auto"), AUTO);
    assert_int_equal(wr_hs_cipher_from_name("aes-256-gcm"), AES);
    assert_int_equal(wr_hs_cipher_from_name("chacha20-poly1305"), CHACHA);
    assert_int_equal(wr_hs_cipher_from_name("AES-256-GCM"), -1);
    assert_int_equal(wr_hs_cipher_from_name("aes"), -1);
    assert_int_equal(wr_hs_cipher_from_name(""), -1);
    assert_int_equal(wr_hs_cipher_from_name(NULL), -1);
    /* mbedTLS never counts as AES hardware: ChaCha20 is its faster cipher */
    assert_false(wr_aead_aes_hw(WR_BACKEND_MBEDTLS));
}

/* Each cipher between each pair of backends: the keys agree and frames flow both ways across
 * rekeys, sealed by one library and opened by the other. */
static void test_frames_cross_backend(void **state)
{
    static const enum wr_backend bs[] = {WR_BACKEND_MBEDTLS, WR_BACKEND_LIBCRYPTO};
    static const int ciphers[] = {CHACHA, AES};
    static uint8_t wire[4 * WR_FRAME_SEAL_ROOM(9000)], payload[9000];
    for (size_t k = 0; k < 2; k++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                struct side cs = {ciphers[k], 1, bs[i]}, ss = {AUTO, 1, bs[j]};
                wr_frame_opts o = {.rekey_interval = 2};
                struct hs h;
                if (!wr_crypto_backend_available(bs[i]) || !wr_crypto_backend_available(bs[j]))
                    continue;
                hs_run(&h, &cs, &ss);
                assert_int_equal(h.crc, WR_HS_OK);
                assert_int_equal(h.ck.alg, ciphers[k]);
                for (int dir = 0; dir < 2; dir++) {
                    const wr_hs_keys *sender = dir ? &h.sk : &h.ck, *receiver = dir ? &h.ck : &h.sk;
                    const uint8_t *skey = dir ? sender->s2c : sender->c2s;
                    const uint8_t *rkey = dir ? receiver->s2c : receiver->c2s;
                    wr_frame_sealer se;
                    wr_frame_opener op;
                    size_t len = 0, n, used, off = 0;
                    wr_frame f;
                    assert_int_equal(
                        wr_frame_sealer_init(&se, sender->backend, sender->alg, skey, &o), 0);
                    assert_int_equal(
                        wr_frame_opener_init(&op, receiver->backend, receiver->alg, rkey, &o), 0);
                    for (int m = 0; m < 4; m++) {
                        memset(payload, 'a' + m, sizeof payload);
                        assert_int_equal(wr_frame_seal(&se, wire + len, sizeof wire - len,
                                                       WR_FT_DATA, 0, 1, payload,
                                                       (size_t)(1 + m * 2999), &n),
                                         WR_FRAME_OK);
                        len += n;
                    }
                    for (int m = 0; m < 4; m++) {
                        assert_int_equal(wr_frame_open(&op, wire + off, len - off, &used, &f),
                                         WR_FRAME_OK);
                        off += used;
                        assert_int_equal(f.len, (size_t)(1 + m * 2999));
                        assert_int_equal(f.payload[f.len - 1], 'a' + m);
                    }
                    assert_true(se.rekeys == 2 &&
                                op.rekeys >= 1); /* the last REKEY waits for a frame */
                    wr_frame_sealer_free(&se);
                    wr_frame_opener_free(&op);
                }
                hs_free(&h);
            }
}

/* The sealed offer is bytes 14..15 of msg1's header plaintext, so bytes 62..63 of msg1 carry it
 * (ChaCha20 keeps positions). */
#define OFFER_AT (48 + 14)
#define PICK_AT  (48 + 30)

/* A changed offer is refused before any DH: the header's tag covers it. */
static void test_offer_bits_authenticated(void **state)
{
    struct side cs = {AUTO, 1, WR_BACKEND_DEFAULT}, ss = {AUTO, 1, WR_BACKEND_DEFAULT};
    struct hs h;
    size_t need;
    uint64_t ops;
    hs_begin(&h, &cs, &ss);
    ops = wr_x25519_ops();
    for (int i = OFFER_AT; i < OFFER_AT + 2; i++)
        for (int bit = 0; bit < 8; bit++) {
            wr_hs_server s;
            wr_hs_server_init(&s);
            h.msg1[i] ^= (uint8_t)(1 << bit);
            assert_int_equal(
                wr_hs_server_check(&s, &h.scfg, h.rp, h.msg1, h.msg1_len, NOW + 1, &need),
                WR_HS_REJECT);
            assert_int_equal(s.reason, WR_HS_R_BAD_MAC);
            h.msg1[i] ^= (uint8_t)(1 << bit);
        }
    assert_true(wr_x25519_ops() == ops);
    hs_free(&h);
}

static void seal_hdr(const uint8_t k[32], const uint8_t *aad, size_t aad_len, const uint8_t *pt,
                     size_t len, uint8_t *out)
{
    uint8_t nonce[WR_AEAD_NONCE_LEN];
    wr_aead_nonce(nonce, 0);
    assert_int_equal(
        wr_aead_seal_once(WR_BACKEND_MBEDTLS, WR_HS_AEAD, k, nonce, aad, aad_len, pt, len, out), 0);
}

static void msg_key(const uint8_t prk[32], const char *label, const uint8_t *salt, uint8_t k[32])
{
    uint8_t info[4 + WR_HS_SALT_LEN];
    memcpy(info, label, 4);
    memcpy(info + 4, salt, WR_HS_SALT_LEN);
    assert_int_equal(wr_hkdf_expand(prk, info, sizeof info, k, 32), 0);
}

/* Even someone who could re-seal msg1 (it takes the key) cannot talk the two ends down: the
 * server answers the rewritten offer, and the client, whose transcript holds the offer it sent,
 * refuses that answer. Likewise a changed pick in msg2 fails its tag. */
static void test_downgrade_fails(void **state)
{
    struct side cs = {AUTO, 1, WR_BACKEND_DEFAULT}, ss = {AUTO, 1, WR_BACKEND_DEFAULT};
    uint8_t k1[32], hdr[16], nonce[WR_AEAD_NONCE_LEN];
    struct hs h;
    size_t need;
    hs_begin(&h, &cs, &ss);
    assert_int_equal(h.s.cipher, AES);
    /* a fresh server sees the rewritten msg1: offer ChaCha20-Poly1305 alone */
    wr_hs_server_init(&h.s);
    wr_replay_free(h.rp);
    assert_int_equal(wr_replay_new(&h.rp, 0), 0);
    msg_key(h.scfg.prk0, "msg1", h.msg1, k1);
    wr_aead_nonce(nonce, 0);
    assert_int_equal(wr_aead_open_once(WR_BACKEND_MBEDTLS, WR_HS_AEAD, k1, nonce, h.msg1, 48,
                                       h.msg1 + 48, 32, hdr),
                     0);
    assert_int_equal(hdr[14], AES);
    assert_int_equal(hdr[15], CHACHA);
    hdr[14] = CHACHA;
    hdr[15] = 0;
    seal_hdr(k1, h.msg1, 48, hdr, sizeof hdr, h.msg1 + 48);
    assert_int_equal(wr_hs_server_check(&h.s, &h.scfg, h.rp, h.msg1, h.msg1_len, NOW, &need),
                     WR_HS_OK);
    assert_int_equal(h.s.cipher, CHACHA);
    hs_finish(&h);
    assert_int_equal(h.src, WR_HS_OK);
    assert_int_equal(h.crc, WR_HS_REJECT);
    assert_int_equal(h.c.reason, WR_HS_R_BAD_MAC);
    hs_free(&h);

    /* the pick, flipped on the way back */
    hs_begin(&h, &cs, &ss);
    assert_int_equal(
        wr_hs_server_respond(&h.s, &h.scfg, NOW, h.msg2, sizeof h.msg2, &h.msg2_len, &h.sk),
        WR_HS_OK);
    h.msg2[PICK_AT] ^= AES ^ CHACHA;
    assert_int_equal(wr_hs_client_finish(&h.c, &h.ccfg, h.msg2, h.msg2_len, &need, &h.ck),
                     WR_HS_REJECT);
    assert_int_equal(h.c.reason, WR_HS_R_BAD_MAC);
    hs_free(&h);
}

/* ---- a fixed vector: every input chosen, every message built here from PROTOCOL.md alone ---- */

static void hex(const char *s, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void assert_hex(const uint8_t *got, const char *want, const char *what)
{
    uint8_t w[32] = {0};
    if (strlen(want) == 64) hex(want, w, 32);
    if (strlen(want) != 64 || memcmp(got, w, 32) != 0) {
        fprintf(stderr, "%s: got ", what);
        for (int i = 0; i < 32; i++)
            fprintf(stderr, "%02x", got[i]);
        fprintf(stderr, "\n");
        fail();
    }
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

struct vector {
    uint8_t pick;
    const char *th1, *th2, *c2s, *s2c;
};

/* PSK 00..1f; salt_c a0..af; e_c 40..5f; client clock NOW; offer 02 01 (AES-256-GCM first);
 * var_len 34 (no early data, 32 zero bytes); salt_s b0..bf; e_s 60..7f; server clock NOW + 5;
 * no msg2 padding; the pick as given. */
static void check_vector(const struct vector *v)
{
    static const struct side cs = {AUTO, 1, WR_BACKEND_MBEDTLS}, ss = {AUTO, 1, WR_BACKEND_MBEDTLS};
    uint8_t msg1[80 + 34 + 16], msg2[96 + 16], hdr1[16] = {1, 1}, hdr2[32] = {2, 1}, var[34] = {0};
    uint8_t e_c[32], e_s[32], pub[32], z[32], ikm[64], prk1[32], k1[32], k2[32], aad[80];
    uint8_t nonce[WR_AEAD_NONCE_LEN], th1[32], th2[32];
    struct hs h;
    size_t need;

    memset(&h, 0, sizeof h);
    hs_config(&h.ccfg, &cs, 0);
    hs_config(&h.scfg, &ss, START);
    assert_int_equal(wr_replay_new(&h.rp, 0), 0);
    for (int i = 0; i < 32; i++) {
        e_c[i] = (uint8_t)(0x40 + i);
        e_s[i] = (uint8_t)(0x60 + i);
    }
    /* msg1 */
    for (int i = 0; i < 16; i++)
        msg1[i] = (uint8_t)(0xa0 + i);
    assert_int_equal(wr_x25519_public(WR_BACKEND_MBEDTLS, e_c, pub), 0);
    assert_int_equal(wr_chacha20_xor(h.ccfg.obf_c, msg1, 0, pub, 32, msg1 + 16), 0);
    put64(hdr1 + 4, NOW);
    hdr1[13] = sizeof var;
    hdr1[14] = AES;
    hdr1[15] = CHACHA;
    msg_key(h.ccfg.prk0, "msg1", msg1, k1);
    seal_hdr(k1, msg1, 48, hdr1, sizeof hdr1, msg1 + 48);
    wr_aead_nonce(nonce, 1);
    assert_int_equal(wr_aead_seal_once(WR_BACKEND_MBEDTLS, WR_HS_AEAD, k1, nonce, NULL, 0, var,
                                       sizeof var, msg1 + 80),
                     0);
    wr_sha256(msg1, sizeof msg1, th1);
    assert_hex(th1, v->th1, "TH1");

    /* the real server takes it and picks AES-256-GCM (both ends have the hardware) */
    wr_hs_server_init(&h.s);
    assert_int_equal(wr_hs_server_check(&h.s, &h.scfg, h.rp, msg1, sizeof msg1, NOW, &need),
                     WR_HS_OK);
    assert_int_equal(h.s.cipher, AES);

    /* msg2 */
    for (int i = 0; i < 16; i++)
        msg2[i] = (uint8_t)(0xb0 + i);
    assert_int_equal(wr_x25519_public(WR_BACKEND_MBEDTLS, e_s, pub), 0);
    assert_int_equal(wr_chacha20_xor(h.scfg.obf_s, msg2, 0, pub, 32, msg2 + 16), 0);
    assert_int_equal(wr_x25519_public(WR_BACKEND_MBEDTLS, e_c, pub), 0);
    assert_int_equal(wr_x25519_shared(WR_BACKEND_MBEDTLS, e_s, pub, z), 0);
    memcpy(ikm, z, 32);
    memcpy(ikm + 32, h.scfg.prk0, 32);
    assert_int_equal(wr_hkdf_extract(th1, 32, ikm, sizeof ikm, prk1), 0);
    msg_key(prk1, "msg2", msg2, k2);
    put64(hdr2 + 4, NOW + 5);
    memcpy(hdr2 + 12, msg1, 16);
    hdr2[30] = v->pick;
    memcpy(aad, th1, 32);
    memcpy(aad + 32, msg2, 48);
    seal_hdr(k2, aad, sizeof aad, hdr2, sizeof hdr2, msg2 + 48);
    wr_aead_nonce(nonce, 1);
    assert_int_equal(
        wr_aead_seal_once(WR_BACKEND_MBEDTLS, WR_HS_AEAD, k2, nonce, NULL, 0, NULL, 0, msg2 + 96),
        0);
    wr_sha256_2(th1, 32, msg2, sizeof msg2, th2);
    assert_hex(th2, v->th2, "TH2");

    /* the real client, in the state its msg1 left it in, accepts msg2 and derives the keys */
    h.c.state = WR_HS_C_SENT;
    memcpy(h.c.salt_c, msg1, 16);
    memcpy(h.c.priv, e_c, 32);
    memcpy(h.c.th1, th1, 32);
    h.c.offer[0] = AES;
    h.c.offer[1] = CHACHA;
    assert_int_equal(wr_hs_client_finish(&h.c, &h.ccfg, msg2, sizeof msg2, &need, &h.ck), WR_HS_OK);
    assert_int_equal(h.ck.alg, v->pick);
    assert_memory_equal(h.ck.transcript, th2, 32);
    assert_hex(h.ck.c2s, v->c2s, "k_c2s");
    assert_hex(h.ck.s2c, v->s2c, "k_s2c");
    hs_free(&h);
}

static void test_vector(void **state)
{
    /* also computed by an independent implementation of PROTOCOL.md */
    static const struct vector vs[] = {
        {AES,
         "8f029a12fc249f16519062bfe57a555e"
         "c22c495d8b6cdc8c8b15260295054ce5",
         "0fe3e9e836e0fb2b34b4c0b889fa99a3"
         "33eb4923430b28d145b14c9a3328f92f",
         "1573b9333c1fc73d182de4b2798cd836"
         "50b8f8c452c5dfc7a8ade46d35e2d4bb",
         "64fb5910fd1519d34b6bbe6933b5d9a3"
         "cd470292f045f6e4a96561db0e54c0e5"},
        {CHACHA,
         "8f029a12fc249f16519062bfe57a555e"
         "c22c495d8b6cdc8c8b15260295054ce5",
         "f88b1db3c0647516817204d26887b8e2"
         "91151cc659ec9d9794e253c59b3f9691",
         "5be1cea9fd00a920b3876a2d6c02b11b"
         "c39270032e5183820685165c3410523b",
         "a6587588dc21b6a30e636191430dc71c"
         "c58c3384541bafc71c57124eb45ac795"},
    };
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++)
        check_vector(&vs[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_choice_matrix),
        cmocka_unit_test(test_frames_cross_backend),
        cmocka_unit_test(test_offer_bits_authenticated),
        cmocka_unit_test(test_downgrade_fails),
        cmocka_unit_test(test_vector),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
