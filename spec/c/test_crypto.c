/* Primitives: RFC vectors on every compiled-in backend, cross-backend agreement, keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "wr_crypto.h"
#include "wr_key.h"
#include "wr_replay.h"

static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = 0;
    while (s[0] && s[1]) {
        unsigned v;
        if (s[0] == ' ' || s[0] == ':') {
            s++;
            continue;
        }
        sscanf(s, "%2x", &v);
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static const enum wr_backend backends[] = {WR_BACKEND_MBEDTLS, WR_BACKEND_LIBCRYPTO};

static int have(enum wr_backend b)
{
    return wr_crypto_backend_available(b);
}

/* RFC 8439 §2.8.2 */
static const char *cp_key = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f";
static const char *cp_nonce = "070000004041424344454647";
static const char *cp_aad = "50515253c0c1c2c3c4c5c6c7";
static const char *cp_pt_text = "Ladies and Gentlemen of the class of '99: If I could offer you "
                                "only one tip for the future, sunscreen would be it.";
static const char *cp_ct = "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
                           "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
                           "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
                           "3ff4def08e4b7a9de576d26586cec64b6116";
static const char *cp_tag = "1ae10b594f09e26a7e902ecbd0600691";

/* GCM spec (McGrew & Viega) test case 16: AES-256, 60-byte plaintext, 20-byte AAD */
static const char *gcm_key = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
static const char *gcm_iv = "cafebabefacedbaddecaf888";
static const char *gcm_aad = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
static const char *gcm_pt = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
static const char *gcm_ct = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
static const char *gcm_tag = "76fc6ece0f4e1768cddf8853bb2d551b";

static void aead_vector(enum wr_backend b, enum wr_aead_alg alg, const char *hkey,
                        const char *hnonce, const char *haad, const uint8_t *pt, size_t pt_len,
                        const char *hct, const char *htag)
{
    uint8_t key[32], nonce[12], aad[64], ct[256], expect[256], out[256], back[256];
    size_t aad_len = unhex(haad, aad), n;
    wr_aead *a;

    unhex(hkey, key);
    unhex(hnonce, nonce);
    n = unhex(hct, expect);
    assert_int_equal(n, pt_len);
    unhex(htag, expect + n);
    assert_int_equal(wr_aead_new(&a, b, alg, key), 0);
    assert_int_equal(wr_aead_seal(a, nonce, aad, aad_len, pt, pt_len, out), 0);
    assert_memory_equal(out, expect, pt_len + 16);
    assert_int_equal(wr_aead_open(a, nonce, aad, aad_len, expect, pt_len + 16, back), 0);
    assert_memory_equal(back, pt, pt_len);
    /* in place, both ways */
    memcpy(ct, pt, pt_len);
    assert_int_equal(wr_aead_seal(a, nonce, aad, aad_len, ct, pt_len, ct), 0);
    assert_memory_equal(ct, expect, pt_len + 16);
    assert_int_equal(wr_aead_open(a, nonce, aad, aad_len, ct, pt_len + 16, ct), 0);
    assert_memory_equal(ct, pt, pt_len);
    /* tampering with tag, ciphertext or AAD fails, and the output is wiped */
    memcpy(ct, expect, pt_len + 16);
    ct[pt_len + 3] ^= 1;
    assert_int_equal(wr_aead_open(a, nonce, aad, aad_len, ct, pt_len + 16, back), WR_CRYPTO_EAUTH);
    ct[pt_len + 3] ^= 1;
    ct[5] ^= 0x80;
    assert_int_equal(wr_aead_open(a, nonce, aad, aad_len, ct, pt_len + 16, back), WR_CRYPTO_EAUTH);
    ct[5] ^= 0x80;
    aad[0] ^= 1;
    assert_int_equal(wr_aead_open(a, nonce, aad, aad_len, ct, pt_len + 16, back), WR_CRYPTO_EAUTH);
    assert_true(wr_ct_is_zero(back, pt_len));
    aad[0] ^= 1;
    assert_int_equal(wr_aead_open(a, nonce, aad, aad_len, ct, 15, back), WR_CRYPTO_EAUTH);
    wr_aead_free(a);
    /* one-shot forms agree */
    assert_int_equal(wr_aead_seal_once(b, alg, key, nonce, aad, aad_len, pt, pt_len, out), 0);
    assert_memory_equal(out, expect, pt_len + 16);
    assert_int_equal(wr_aead_open_once(b, alg, key, nonce, aad, aad_len, out, pt_len + 16, back),
                     0);
    assert_memory_equal(back, pt, pt_len);
}

static void test_chachapoly_rfc8439(void **state)
{
    int ran = 0;
    for (size_t i = 0; i < 2; i++) {
        if (!have(backends[i])) continue;
        aead_vector(backends[i], WR_AEAD_CHACHA20_POLY1305, cp_key, cp_nonce, cp_aad,
                    (const uint8_t *)cp_pt_text, strlen(cp_pt_text), cp_ct, cp_tag);
        ran++;
    }
    assert_true(ran >= 1);
}

static void test_aes256gcm_vector(void **state)
{
    uint8_t pt[64];
    size_t n = unhex(gcm_pt, pt);
    for (size_t i = 0; i < 2; i++)
        if (have(backends[i]))
            aead_vector(backends[i], WR_AEAD_AES256_GCM, gcm_key, gcm_iv, gcm_aad, pt, n, gcm_ct,
                        gcm_tag);
}

/* Every backend opens every other's output, for both ciphers, sizes across block edges. */
static void test_aead_cross_backend(void **state)
{
    static const size_t sizes[] = {0, 1, 15, 16, 17, 63, 64, 65, 511, 512, 513, 1500, 16384};
    static uint8_t pt[16384], ct[16384 + 16], back[16384];
    uint8_t key[32], nonce[12];
    if (!have(WR_BACKEND_LIBCRYPTO)) skip();
    wr_random(key, sizeof key);
    wr_random(pt, sizeof pt);
    for (int alg = WR_AEAD_CHACHA20_POLY1305; alg <= WR_AEAD_AES256_GCM; alg++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            for (int from = 0; from < 2; from++) {
                enum wr_backend s = backends[from], o = backends[1 - from];
                wr_aead_nonce(nonce, i * 7 + from);
                assert_int_equal(wr_aead_seal_once(s, alg, key, nonce, pt, 9, pt, sizes[i], ct), 0);
                memset(back, 0xaa, sizes[i]);
                assert_int_equal(
                    wr_aead_open_once(o, alg, key, nonce, pt, 9, ct, sizes[i] + 16, back), 0);
                assert_memory_equal(back, pt, sizes[i]);
                ct[sizes[i]] ^= 0x40; /* first tag byte */
                assert_int_equal(
                    wr_aead_open_once(o, alg, key, nonce, pt, 9, ct, sizes[i] + 16, back),
                    WR_CRYPTO_EAUTH);
            }
        }
    }
}

/* RFC 7748 §5.2 (single scalar multiplications) and §6.1 (Diffie-Hellman). */
static void test_x25519_rfc7748(void **state)
{
    static const char *vec[][3] = {
        {"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
         "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
         "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
        {"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
         "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
         "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
    };
    const char *a_priv = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const char *a_pub = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const char *b_priv = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
    const char *b_pub = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    const char *shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    uint8_t k[32], u[32], want[32], out[32], ap[32], bp[32], apub[32], bpub[32];

    for (size_t i = 0; i < 2; i++) {
        enum wr_backend b = backends[i];
        if (!have(b)) continue;
        for (size_t v = 0; v < 2; v++) {
            unhex(vec[v][0], k);
            unhex(vec[v][1], u);
            unhex(vec[v][2], want);
            assert_int_equal(wr_x25519_shared(b, k, u, out), 0);
            assert_memory_equal(out, want, 32);
        }
        unhex(a_priv, ap);
        unhex(b_priv, bp);
        assert_int_equal(wr_x25519_public(b, ap, apub), 0);
        unhex(a_pub, want);
        assert_memory_equal(apub, want, 32);
        assert_int_equal(wr_x25519_public(b, bp, bpub), 0);
        unhex(b_pub, want);
        assert_memory_equal(bpub, want, 32);
        unhex(shared, want);
        assert_int_equal(wr_x25519_shared(b, ap, bpub, out), 0);
        assert_memory_equal(out, want, 32);
        assert_int_equal(wr_x25519_shared(b, bp, apub, out), 0);
        assert_memory_equal(out, want, 32);
    }
}

/* Low-order peer keys give an all-zero secret: refused on both backends. */
static void test_x25519_rejects_zero(void **state)
{
    uint8_t priv[32], pub[32], out[32], zero[32] = {0}, one[32] = {1};
    for (size_t i = 0; i < 2; i++) {
        enum wr_backend b = backends[i];
        if (!have(b)) continue;
        assert_int_equal(wr_x25519_keypair(b, priv, pub), 0);
        memset(out, 0x55, sizeof out);
        assert_int_equal(wr_x25519_shared(b, priv, zero, out), WR_CRYPTO_EWEAK);
        assert_true(wr_ct_is_zero(out, 32));
        assert_int_equal(wr_x25519_shared(b, priv, one, out), WR_CRYPTO_EWEAK);
        assert_int_equal(wr_x25519_ephemeral(b, zero, pub, out), WR_CRYPTO_EWEAK);
    }
}

/* A keypair made by one backend agrees with the other; ephemeral matches keypair+shared. */
static void test_x25519_cross_backend(void **state)
{
    uint8_t pa[32], pb[32], qa[32], qb[32], s1[32], s2[32], epub[32], es[32], tmp[32];
    if (!have(WR_BACKEND_LIBCRYPTO)) skip();
    for (int r = 0; r < 4; r++) {
        assert_int_equal(wr_x25519_keypair(WR_BACKEND_MBEDTLS, pa, qa), 0);
        assert_int_equal(wr_x25519_keypair(WR_BACKEND_LIBCRYPTO, pb, qb), 0);
        assert_int_equal(wr_x25519_public(WR_BACKEND_LIBCRYPTO, pa, tmp), 0);
        assert_memory_equal(tmp, qa, 32);
        assert_int_equal(wr_x25519_shared(WR_BACKEND_MBEDTLS, pa, qb, s1), 0);
        assert_int_equal(wr_x25519_shared(WR_BACKEND_LIBCRYPTO, pb, qa, s2), 0);
        assert_memory_equal(s1, s2, 32);
        for (size_t i = 0; i < 2; i++) {
            assert_int_equal(wr_x25519_ephemeral(backends[i], qa, epub, es), 0);
            assert_int_equal(wr_x25519_shared(backends[1 - i], pa, epub, s1), 0);
            assert_memory_equal(s1, es, 32);
        }
    }
}

/* RFC 5869 A.1 */
static void test_hkdf_rfc5869(void **state)
{
    uint8_t ikm[22], salt[13], info[10], prk[32], okm[42], want[42];
    memset(ikm, 0x0b, sizeof ikm);
    unhex("000102030405060708090a0b0c", salt);
    unhex("f0f1f2f3f4f5f6f7f8f9", info);
    assert_int_equal(wr_hkdf_extract(salt, sizeof salt, ikm, sizeof ikm, prk), 0);
    unhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5", want);
    assert_memory_equal(prk, want, 32);
    assert_int_equal(wr_hkdf_expand(prk, info, sizeof info, okm, sizeof okm), 0);
    unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
          want);
    assert_memory_equal(okm, want, 42);
    memset(okm, 0, sizeof okm);
    assert_int_equal(wr_hkdf(salt, sizeof salt, ikm, sizeof ikm, info, sizeof info, okm, 42), 0);
    assert_memory_equal(okm, want, 42);
    assert_int_equal(wr_hkdf_expand(prk, info, sizeof info, okm, 0), WR_CRYPTO_EINVAL);
}

/* FIPS 180-2 "abc", RFC 4231 test case 2, and the two-part hash. */
static void test_sha256_hmac(void **state)
{
    uint8_t out[32], want[32], two[32];
    wr_sha256("abc", 3, out);
    unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want);
    assert_memory_equal(out, want, 32);
    wr_sha256_2("a", 1, "bc", 2, two);
    assert_memory_equal(two, want, 32);
    assert_int_equal(wr_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, out), 0);
    unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want);
    assert_memory_equal(out, want, 32);
}

/* RFC 7914 §11 PBKDF2-HMAC-SHA256 vector, on each backend's PBKDF2. */
static void test_pbkdf2(void **state)
{
    uint8_t out[64], want[64];
    enum wr_backend saved = wr_crypto_default_backend();
    unhex("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
          "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783",
          want);
    for (size_t i = 0; i < 2; i++) {
        if (!have(backends[i])) continue;
        assert_int_equal(wr_crypto_set_default_backend(backends[i]), 0);
        memset(out, 0, sizeof out);
        assert_int_equal(wr_pbkdf2_sha256("passwd", 6, "salt", 4, 1, out, 64), 0);
        assert_memory_equal(out, want, 64);
    }
    wr_crypto_set_default_backend(saved);
}

/* RFC 8439 §2.4.2: raw ChaCha20 with counter 1. */
static void test_chacha20(void **state)
{
    uint8_t key[32], nonce[12], out[114], want[114];
    unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", key);
    unhex("000000000000004a00000000", nonce);
    unhex("6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
          "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
          "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
          "5af90bbf74a35be6b40b8eedf2785e42874d",
          want);
    assert_int_equal(wr_chacha20_xor(key, nonce, 1, (const uint8_t *)cp_pt_text, sizeof out, out),
                     0);
    assert_memory_equal(out, want, sizeof out);
}

static void test_ct_and_nonce(void **state)
{
    uint8_t a[40], b[40], n[12];
    memset(a, 7, sizeof a);
    memcpy(b, a, sizeof b);
    assert_int_equal(wr_ct_equal(a, b, sizeof a), 1);
    for (size_t i = 0; i < sizeof a; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (uint8_t)(1 << bit);
            assert_int_equal(wr_ct_equal(a, b, sizeof a), 0);
            b[i] ^= (uint8_t)(1 << bit);
        }
    }
    memset(a, 0, sizeof a);
    assert_int_equal(wr_ct_is_zero(a, sizeof a), 1);
    a[39] = 0x80;
    assert_int_equal(wr_ct_is_zero(a, sizeof a), 0);
    wr_aead_nonce(n, 0x0102030405060708ull);
    assert_memory_equal(n, "\0\0\0\0\x01\x02\x03\x04\x05\x06\x07\x08", 12);
    assert_int_equal(wr_random(a, sizeof a), 0);
    assert_int_equal(wr_random(b, sizeof b), 0);
    assert_int_equal(wr_ct_equal(a, b, sizeof a), 0);
}

static void test_backend_names(void **state)
{
    assert_string_equal(wr_crypto_backend_name(WR_BACKEND_MBEDTLS), "mbedtls");
#ifdef WR_HAVE_LIBCRYPTO
    assert_int_equal(wr_crypto_default_backend(), WR_BACKEND_LIBCRYPTO);
    assert_string_equal(wr_crypto_backend_name(WR_BACKEND_DEFAULT), "libcrypto");
#else
    assert_int_equal(wr_crypto_default_backend(), WR_BACKEND_MBEDTLS);
    assert_int_equal(wr_crypto_set_default_backend(WR_BACKEND_LIBCRYPTO), WR_CRYPTO_EUNSUPPORTED);
#endif
    assert_int_equal(wr_crypto_set_default_backend(WR_BACKEND_DEFAULT), WR_CRYPTO_EINVAL);
}

/* ---- keys ---- */

static void test_key_base64url(void **state)
{
    uint8_t key[32], back[32];
    char s[WR_KEY_B64_LEN + 1], bad[WR_KEY_B64_LEN + 2];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 37 + 11);
    key[0] = 0xfb; /* exercises '-' and '_' */
    key[1] = 0xff;
    wr_key_encode(key, s);
    assert_int_equal(strlen(s), 43);
    assert_null(strpbrk(s, "+/="));
    assert_int_equal(wr_key_decode(s, 43, back), 0);
    assert_memory_equal(back, key, 32);
    /* all-zero and all-one keys */
    memset(key, 0, 32);
    wr_key_encode(key, s);
    assert_string_equal(s, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    memset(key, 0xff, 32);
    wr_key_encode(key, s);
    assert_string_equal(s, "__________________________________________8");
    /* strictness */
    assert_int_equal(wr_key_decode(s, 42, back), WR_KEY_EFORMAT);
    memcpy(bad, s, 43);
    bad[43] = '=';
    assert_int_equal(wr_key_decode(bad, 44, back), WR_KEY_EFORMAT);
    bad[42] = '9'; /* low bits set: a second spelling of a key */
    assert_int_equal(wr_key_decode(bad, 43, back), WR_KEY_EFORMAT);
    memcpy(bad, s, 43);
    bad[10] = '+';
    assert_int_equal(wr_key_decode(bad, 43, back), WR_KEY_EFORMAT);
    bad[10] = ' ';
    assert_int_equal(wr_key_decode(bad, 43, back), WR_KEY_EFORMAT);
    /* random round trips */
    for (int r = 0; r < 200; r++) {
        assert_int_equal(wr_key_generate(key), 0);
        wr_key_encode(key, s);
        assert_int_equal(wr_key_decode(s, strlen(s), back), 0);
        assert_memory_equal(back, key, 32);
    }
}

static void test_key_text_rule(void **state)
{
    uint8_t key[32], k2[32], want[32];
    char s[WR_KEY_B64_LEN + 1];
    enum wr_key_source src = 0;
    char file[128];

    wr_key_generate(want);
    wr_key_encode(want, s);
    assert_int_equal(wr_key_from_text(s, 43, 0, key, &src), 0);
    assert_int_equal(src, WR_KEY_SRC_KEY);
    assert_memory_equal(key, want, 32);
    /* -p forces the password path even for a key-shaped string */
    assert_int_equal(wr_key_from_text(s, 43, 1, k2, &src), 0);
    assert_int_equal(src, WR_KEY_SRC_PASSWORD);
    assert_memory_not_equal(k2, want, 32);
    /* a password is PBKDF2 over the documented salt and count */
    assert_int_equal(wr_key_from_text("hunter2", 7, 0, key, &src), 0);
    assert_int_equal(src, WR_KEY_SRC_PASSWORD);
    assert_int_equal(wr_pbkdf2_sha256("hunter2", 7, WR_KEY_PBKDF2_SALT, strlen(WR_KEY_PBKDF2_SALT),
                                      WR_KEY_PBKDF2_ITERATIONS, k2, 32),
                     0);
    assert_memory_equal(key, k2, 32);
    assert_int_equal(wr_key_from_text("", 0, 0, key, &src), WR_KEY_EEMPTY);

    /* key file: first line, CRLF and trailing blanks dropped */
    snprintf(file, sizeof file, "%s \t\r\nsecond line ignored\n", s);
    memset(key, 0, 32);
    assert_int_equal(wr_key_from_file_text(file, strlen(file), key, &src), 0);
    assert_int_equal(src, WR_KEY_SRC_KEY);
    assert_memory_equal(key, want, 32);
    assert_int_equal(wr_key_from_file_text("\nkey", 4, key, &src), WR_KEY_EEMPTY);
    {
        char path[] = "/tmp/wr_test_keyXXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, file, strlen(file)), (ssize_t)strlen(file));
        close(fd);
        memset(key, 0, 32);
        assert_int_equal(wr_key_from_file(path, key, &src), 0);
        assert_memory_equal(key, want, 32);
        unlink(path);
        assert_int_equal(wr_key_from_file(path, key, &src), WR_KEY_EIO);
    }
}

/* ---- replay set ---- */

static void test_siphash_vector(void **state)
{
    uint8_t key[16], msg[15];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    assert_true(wr_siphash24(key, msg, 15) == 0xa129ca6149be45e5ull);
    assert_true(wr_siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ull);
}

static void test_replay_set(void **state)
{
    wr_replay *r;
    uint8_t salt[16];
    assert_int_equal(wr_replay_new(&r, 4), 0);
    memset(salt, 1, 16);
    assert_int_equal(wr_replay_seen(r, salt, 100), 0);
    assert_int_equal(wr_replay_insert(r, salt, 130, 100), 0);
    assert_int_equal(wr_replay_seen(r, salt, 100), 1);
    assert_int_equal(wr_replay_seen(r, salt, 130), 1);
    assert_int_equal(wr_replay_insert(r, salt, 140, 120), WR_REPLAY_EXISTS);
    for (int i = 2; i <= 4; i++) {
        memset(salt, i, 16);
        assert_int_equal(wr_replay_insert(r, salt, 100 + i * 10, 100), 0);
    }
    assert_int_equal(wr_replay_count(r, 100), 4);
    /* full: refuse, do not evict young entries */
    memset(salt, 9, 16);
    assert_int_equal(wr_replay_insert(r, salt, 150, 101), WR_REPLAY_EFULL);
    memset(salt, 1, 16);
    assert_int_equal(wr_replay_seen(r, salt, 101), 1);
    /* once the earliest entry (salt 2, expires 120) has expired there is room again */
    memset(salt, 9, 16);
    assert_int_equal(wr_replay_insert(r, salt, 150, 121), 0);
    memset(salt, 2, 16);
    assert_int_equal(wr_replay_seen(r, salt, 121), 0);
    assert_int_equal(wr_replay_insert(r, salt, 160, 121), WR_REPLAY_EFULL);
    memset(salt, 1, 16);
    assert_int_equal(wr_replay_seen(r, salt, 131), 0);
    assert_int_equal(wr_replay_count(r, 131), 2); /* salts 4 and 9 */
    wr_replay_free(r);
}

/* Many entries through growth and expiry: nothing live is ever lost. */
static void test_replay_set_churn(void **state)
{
    wr_replay *r;
    uint8_t salt[16] = {0};
    const uint32_t n = 50000;
    assert_int_equal(wr_replay_new(&r, 20000), 0);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t now = 1000 + i / 1000; /* 1000 inserts per second, each lives 10 s */
        memcpy(salt, &i, sizeof i);
        assert_int_equal(wr_replay_insert(r, salt, now + 10, now), 0);
        if (i >= 9000) { /* an entry from 9 s ago is still live, one from 11 s ago is not */
            uint32_t j = i - 9000, k = i >= 11000 ? i - 11000 : 0;
            memcpy(salt, &j, sizeof j);
            assert_int_equal(wr_replay_seen(r, salt, now), 1);
            if (i >= 11000) {
                memcpy(salt, &k, sizeof k);
                assert_int_equal(wr_replay_seen(r, salt, now), 0);
            }
        }
    }
    assert_true(wr_replay_count(r, 1000 + (n - 1) / 1000) <= 11000);
    wr_replay_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chachapoly_rfc8439),
        cmocka_unit_test(test_aes256gcm_vector),
        cmocka_unit_test(test_aead_cross_backend),
        cmocka_unit_test(test_x25519_rfc7748),
        cmocka_unit_test(test_x25519_rejects_zero),
        cmocka_unit_test(test_x25519_cross_backend),
        cmocka_unit_test(test_hkdf_rfc5869),
        cmocka_unit_test(test_sha256_hmac),
        cmocka_unit_test(test_pbkdf2),
        cmocka_unit_test(test_chacha20),
        cmocka_unit_test(test_ct_and_nonce),
        cmocka_unit_test(test_backend_names),
        cmocka_unit_test(test_key_base64url),
        cmocka_unit_test(test_key_text_rule),
        cmocka_unit_test(test_siphash_vector),
        cmocka_unit_test(test_replay_set),
        cmocka_unit_test(test_replay_set_churn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
