#include "wr_crypto.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include <mbedtls/chacha20.h>
#include <mbedtls/chachapoly.h>
#include <mbedtls/ecp.h>
#include <mbedtls/gcm.h>
#include <mbedtls/hkdf.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#ifdef WR_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#include <openssl/sha.h>
#endif

#ifdef WR_HAVE_LIBCRYPTO
static enum wr_backend default_backend = WR_BACKEND_LIBCRYPTO;
#else
static enum wr_backend default_backend = WR_BACKEND_MBEDTLS;
#endif

static enum wr_backend resolve(enum wr_backend b)
{
    return b == WR_BACKEND_DEFAULT ? default_backend : b;
}

int wr_crypto_backend_available(enum wr_backend b)
{
    switch (b) {
    case WR_BACKEND_DEFAULT:
    case WR_BACKEND_MBEDTLS:
        return 1;
    case WR_BACKEND_LIBCRYPTO:
#ifdef WR_HAVE_LIBCRYPTO
        return 1;
#else
        return 0;
#endif
    }
    return 0;
}

enum wr_backend wr_crypto_default_backend(void)
{
    return default_backend;
}

int wr_crypto_set_default_backend(enum wr_backend b)
{
    if (b == WR_BACKEND_DEFAULT) return WR_CRYPTO_EINVAL;
    if (!wr_crypto_backend_available(b)) return WR_CRYPTO_EUNSUPPORTED;
    default_backend = b;
    return WR_CRYPTO_OK;
}

const char *wr_crypto_backend_name(enum wr_backend b)
{
    switch (resolve(b)) {
    case WR_BACKEND_MBEDTLS:
        return "mbedtls";
    case WR_BACKEND_LIBCRYPTO:
        return "libcrypto";
    default:
        return "?";
    }
}

const char *wr_aead_alg_name(enum wr_aead_alg alg)
{
    switch (alg) {
    case WR_AEAD_CHACHA20_POLY1305:
        return "chacha20-poly1305";
    case WR_AEAD_AES256_GCM:
        return "aes-256-gcm";
    }
    return "?";
}

#if defined(__x86_64__) || defined(__i386__)
/* libcrypto reads OPENSSL_ia32cap ("[~]WORDS[:...]", the first 64 bits being CPUID.1 EDX then
 * ECX) to hide CPU features from itself; honour it so that we never prefer AES when libcrypto
 * was told not to use the instructions. */
static uint64_t ia32cap_mask(uint64_t cap)
{
    const char *e = getenv("OPENSSL_ia32cap");
    int invert;
    if (!e || !*e || *e == ':') return cap; /* ":..." changes only the later words */
    invert = *e == '~';
    uint64_t v = strtoull(e + invert, NULL, 0);
    return invert ? cap & ~v : v;
}

static int cpu_aes(void)
{
    const uint64_t aesni = 1ull << 57, pclmul = 1ull << 33; /* CPUID.1 ECX bits 25 and 1 */
    uint64_t cap = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("aes")) cap |= aesni;
    if (__builtin_cpu_supports("pclmul")) cap |= pclmul;
    cap = ia32cap_mask(cap);
    return (cap & aesni) && (cap & pclmul);
}
#elif defined(__aarch64__)
static int cpu_aes(void)
{
    unsigned long h = getauxval(AT_HWCAP);
    return (h & HWCAP_AES) && (h & HWCAP_PMULL);
}
#else
static int cpu_aes(void)
{
    return 0;
}
#endif

int wr_aead_aes_hw(enum wr_backend b)
{
    return resolve(b) == WR_BACKEND_LIBCRYPTO && wr_crypto_backend_available(b) && cpu_aes();
}

/* ---- misc ---- */

int wr_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return WR_CRYPTO_ERANDOM;
        }
        p += n;
        len -= (size_t)n;
    }
    return WR_CRYPTO_OK;
}

int wr_ct_equal(const void *a, const void *b, size_t len)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= x[i] ^ y[i];
    /* Map 0 -> 1 and 1..255 -> 0 without a data-dependent branch. */
    return (int)(1 & (((unsigned)acc - 1) >> 8));
}

int wr_ct_is_zero(const void *p, size_t len)
{
    const volatile uint8_t *x = p;
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= x[i];
    return (int)(1 & (((unsigned)acc - 1) >> 8));
}

void wr_zeroize(void *p, size_t len)
{
    if (p && len) mbedtls_platform_zeroize(p, len);
}

void wr_aead_nonce(uint8_t nonce[WR_AEAD_NONCE_LEN], uint64_t counter)
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(counter >> (56 - 8 * i));
}

/* ---- AEAD ---- */

struct wr_aead {
    enum wr_backend backend;
    enum wr_aead_alg alg;
    union {
        mbedtls_chachapoly_context cp;
        mbedtls_gcm_context gcm;
#ifdef WR_HAVE_LIBCRYPTO
        EVP_CIPHER_CTX *evp;
#endif
    } u;
};

static int alg_valid(enum wr_aead_alg alg)
{
    return alg == WR_AEAD_CHACHA20_POLY1305 || alg == WR_AEAD_AES256_GCM;
}

#ifdef WR_HAVE_LIBCRYPTO
static const EVP_CIPHER *evp_cipher(enum wr_aead_alg alg)
{
    return alg == WR_AEAD_CHACHA20_POLY1305 ? EVP_chacha20_poly1305() : EVP_aes_256_gcm();
}

static int evp_seal(EVP_CIPHER_CTX *c, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                    const uint8_t *pt, size_t len, uint8_t *out)
{
    int n = 0, fin = 0;
    if (len > INT_MAX || aad_len > INT_MAX) return WR_CRYPTO_EINVAL;
    if (EVP_CipherInit_ex(c, NULL, NULL, NULL, nonce, 1) != 1) return WR_CRYPTO_EINTERNAL;
    if (aad_len && EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1)
        return WR_CRYPTO_EINTERNAL;
    if (len && EVP_CipherUpdate(c, out, &n, pt, (int)len) != 1) return WR_CRYPTO_EINTERNAL;
    if (EVP_CipherFinal_ex(c, out + n, &fin) != 1) return WR_CRYPTO_EINTERNAL;
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, WR_AEAD_TAG_LEN, out + len) != 1)
        return WR_CRYPTO_EINTERNAL;
    return WR_CRYPTO_OK;
}

static int evp_open(EVP_CIPHER_CTX *c, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                    const uint8_t *ct, size_t len, uint8_t *out)
{
    int n = 0, fin = 0;
    uint8_t tag[WR_AEAD_TAG_LEN];
    if (len > INT_MAX || aad_len > INT_MAX) return WR_CRYPTO_EINVAL;
    /* Copy the tag first: with out == ct the plaintext never overlaps it, but keep it simple. */
    memcpy(tag, ct + len, sizeof tag);
    if (EVP_CipherInit_ex(c, NULL, NULL, NULL, nonce, 0) != 1) return WR_CRYPTO_EINTERNAL;
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, WR_AEAD_TAG_LEN, tag) != 1)
        return WR_CRYPTO_EINTERNAL;
    if (aad_len && EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1)
        return WR_CRYPTO_EINTERNAL;
    if (len && EVP_CipherUpdate(c, out, &n, ct, (int)len) != 1) return WR_CRYPTO_EINTERNAL;
    if (EVP_CipherFinal_ex(c, out + n, &fin) != 1) {
        wr_zeroize(out, len);
        return WR_CRYPTO_EAUTH;
    }
    return WR_CRYPTO_OK;
}
#endif

/* mbedTLS GCM cannot decrypt in place, so overlapping buffers go through a stack bounce buffer
 * and a constant-time tag check of our own. */
static int gcm_open_inplace(mbedtls_gcm_context *g, const uint8_t *nonce, const uint8_t *aad,
                            size_t aad_len, const uint8_t *ct, size_t len, uint8_t *out)
{
    uint8_t tmp[512], tag[WR_AEAD_TAG_LEN];
    int rc = mbedtls_gcm_starts(g, MBEDTLS_GCM_DECRYPT, nonce, WR_AEAD_NONCE_LEN, aad, aad_len);
    for (size_t off = 0; rc == 0 && off < len; off += sizeof tmp) {
        size_t n = len - off < sizeof tmp ? len - off : sizeof tmp;
        rc = mbedtls_gcm_update(g, n, ct + off, tmp);
        memcpy(out + off, tmp, n);
    }
    if (rc == 0) rc = mbedtls_gcm_finish(g, tag, sizeof tag);
    wr_zeroize(tmp, sizeof tmp);
    if (rc != 0) {
        wr_zeroize(out, len);
        return WR_CRYPTO_EINTERNAL;
    }
    if (!wr_ct_equal(tag, ct + len, sizeof tag)) {
        wr_zeroize(out, len);
        return WR_CRYPTO_EAUTH;
    }
    return WR_CRYPTO_OK;
}

static int buffers_overlap(const uint8_t *a, const uint8_t *b, size_t len)
{
    return len && a < b + len && b < a + len;
}

static int mbed_init(wr_aead *a, const uint8_t *key)
{
    if (a->alg == WR_AEAD_CHACHA20_POLY1305) {
        mbedtls_chachapoly_init(&a->u.cp);
        return mbedtls_chachapoly_setkey(&a->u.cp, key) ? WR_CRYPTO_EINTERNAL : WR_CRYPTO_OK;
    }
    mbedtls_gcm_init(&a->u.gcm);
    return mbedtls_gcm_setkey(&a->u.gcm, MBEDTLS_CIPHER_ID_AES, key, 256) ? WR_CRYPTO_EINTERNAL
                                                                          : WR_CRYPTO_OK;
}

static void aead_release(wr_aead *a)
{
    if (a->backend == WR_BACKEND_MBEDTLS) {
        if (a->alg == WR_AEAD_CHACHA20_POLY1305)
            mbedtls_chachapoly_free(&a->u.cp);
        else
            mbedtls_gcm_free(&a->u.gcm);
    }
#ifdef WR_HAVE_LIBCRYPTO
    else if (a->u.evp) {
        EVP_CIPHER_CTX_free(a->u.evp); /* cleanses the key schedule */
        a->u.evp = NULL;
    }
#endif
}

/* Initialise a caller-provided context (stack or heap). */
static int aead_init(wr_aead *a, enum wr_backend b, enum wr_aead_alg alg, const uint8_t *key)
{
    b = resolve(b);
    if (!alg_valid(alg) || !key) return WR_CRYPTO_EINVAL;
    if (!wr_crypto_backend_available(b)) return WR_CRYPTO_EUNSUPPORTED;
    memset(a, 0, sizeof *a);
    a->backend = b;
    a->alg = alg;
    if (b == WR_BACKEND_MBEDTLS) {
        int rc = mbed_init(a, key);
        if (rc) aead_release(a);
        return rc;
    }
#ifdef WR_HAVE_LIBCRYPTO
    a->u.evp = EVP_CIPHER_CTX_new();
    if (!a->u.evp) return WR_CRYPTO_ENOMEM;
    if (EVP_CipherInit_ex(a->u.evp, evp_cipher(alg), NULL, key, NULL, 1) != 1) {
        aead_release(a);
        return WR_CRYPTO_EINTERNAL;
    }
    return WR_CRYPTO_OK;
#else
    return WR_CRYPTO_EUNSUPPORTED;
#endif
}

int wr_aead_new(wr_aead **out, enum wr_backend b, enum wr_aead_alg alg, const uint8_t *key)
{
    wr_aead *a = malloc(sizeof *a);
    int rc;
    *out = NULL;
    if (!a) return WR_CRYPTO_ENOMEM;
    rc = aead_init(a, b, alg, key);
    if (rc) {
        free(a);
        return rc;
    }
    *out = a;
    return WR_CRYPTO_OK;
}

int wr_aead_setkey(wr_aead *a, const uint8_t *key)
{
    if (a->backend == WR_BACKEND_MBEDTLS) {
        int rc = a->alg == WR_AEAD_CHACHA20_POLY1305
                     ? mbedtls_chachapoly_setkey(&a->u.cp, key)
                     : mbedtls_gcm_setkey(&a->u.gcm, MBEDTLS_CIPHER_ID_AES, key, 256);
        return rc ? WR_CRYPTO_EINTERNAL : WR_CRYPTO_OK;
    }
#ifdef WR_HAVE_LIBCRYPTO
    return EVP_CipherInit_ex(a->u.evp, NULL, NULL, key, NULL, -1) == 1 ? WR_CRYPTO_OK
                                                                       : WR_CRYPTO_EINTERNAL;
#else
    return WR_CRYPTO_EUNSUPPORTED;
#endif
}

int wr_aead_seal(wr_aead *a, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                 const uint8_t *pt, size_t len, uint8_t *out)
{
    if (a->backend == WR_BACKEND_MBEDTLS) {
        int rc;
        if (a->alg == WR_AEAD_CHACHA20_POLY1305)
            rc = mbedtls_chachapoly_encrypt_and_tag(&a->u.cp, len, nonce, aad, aad_len, pt, out,
                                                    out + len);
        else
            rc = mbedtls_gcm_crypt_and_tag(&a->u.gcm, MBEDTLS_GCM_ENCRYPT, len, nonce,
                                           WR_AEAD_NONCE_LEN, aad, aad_len, pt, out,
                                           WR_AEAD_TAG_LEN, out + len);
        return rc ? WR_CRYPTO_EINTERNAL : WR_CRYPTO_OK;
    }
#ifdef WR_HAVE_LIBCRYPTO
    return evp_seal(a->u.evp, nonce, aad, aad_len, pt, len, out);
#else
    return WR_CRYPTO_EUNSUPPORTED;
#endif
}

int wr_aead_open(wr_aead *a, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                 const uint8_t *ct, size_t ct_len, uint8_t *out)
{
    size_t len;
    if (ct_len < WR_AEAD_TAG_LEN) return WR_CRYPTO_EAUTH;
    len = ct_len - WR_AEAD_TAG_LEN;
    if (a->backend == WR_BACKEND_MBEDTLS) {
        int rc;
        if (a->alg == WR_AEAD_CHACHA20_POLY1305) {
            rc = mbedtls_chachapoly_auth_decrypt(&a->u.cp, len, nonce, aad, aad_len, ct + len, ct,
                                                 out);
            if (rc == MBEDTLS_ERR_CHACHAPOLY_AUTH_FAILED) return WR_CRYPTO_EAUTH;
        } else {
            if (buffers_overlap(ct, out, len))
                return gcm_open_inplace(&a->u.gcm, nonce, aad, aad_len, ct, len, out);
            rc = mbedtls_gcm_auth_decrypt(&a->u.gcm, len, nonce, WR_AEAD_NONCE_LEN, aad, aad_len,
                                          ct + len, WR_AEAD_TAG_LEN, ct, out);
            if (rc == MBEDTLS_ERR_GCM_AUTH_FAILED) return WR_CRYPTO_EAUTH;
        }
        return rc ? WR_CRYPTO_EINTERNAL : WR_CRYPTO_OK;
    }
#ifdef WR_HAVE_LIBCRYPTO
    return evp_open(a->u.evp, nonce, aad, aad_len, ct, len, out);
#else
    return WR_CRYPTO_EUNSUPPORTED;
#endif
}

enum wr_backend wr_aead_backend(const wr_aead *a)
{
    return a->backend;
}

enum wr_aead_alg wr_aead_alg_of(const wr_aead *a)
{
    return a->alg;
}

void wr_aead_free(wr_aead *a)
{
    if (!a) return;
    aead_release(a);
    wr_zeroize(a, sizeof *a);
    free(a);
}

typedef int (*aead_op)(wr_aead *a, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                       const uint8_t *in, size_t in_len, uint8_t *out);

/* One operation under a context that lives (and is wiped) on the stack. */
static int aead_once(aead_op op, enum wr_backend b, enum wr_aead_alg alg, const uint8_t *key,
                     const uint8_t *nonce, const uint8_t *aad, size_t aad_len, const uint8_t *in,
                     size_t in_len, uint8_t *out)
{
    wr_aead a;
    int rc = aead_init(&a, b, alg, key);
    if (rc) return rc;
    rc = op(&a, nonce, aad, aad_len, in, in_len, out);
    aead_release(&a);
    wr_zeroize(&a, sizeof a);
    return rc;
}

int wr_aead_seal_once(enum wr_backend b, enum wr_aead_alg alg, const uint8_t *key,
                      const uint8_t *nonce, const uint8_t *aad, size_t aad_len, const uint8_t *pt,
                      size_t len, uint8_t *out)
{
    return aead_once(wr_aead_seal, b, alg, key, nonce, aad, aad_len, pt, len, out);
}

int wr_aead_open_once(enum wr_backend b, enum wr_aead_alg alg, const uint8_t *key,
                      const uint8_t *nonce, const uint8_t *aad, size_t aad_len, const uint8_t *ct,
                      size_t ct_len, uint8_t *out)
{
    return aead_once(wr_aead_open, b, alg, key, nonce, aad, aad_len, ct, ct_len, out);
}

/* ---- X25519 ---- */

static _Atomic uint64_t x25519_ops;

uint64_t wr_x25519_ops(void)
{
    return atomic_load_explicit(&x25519_ops, memory_order_relaxed);
}

static void count_op(void)
{
    atomic_fetch_add_explicit(&x25519_ops, 1, memory_order_relaxed);
}

static int mbed_rng(void *ctx, unsigned char *buf, size_t len)
{
    (void)ctx;
    return wr_random(buf, len) ? MBEDTLS_ERR_ECP_RANDOM_FAILED : 0;
}

/* out = scalar * u, both as RFC 7748 little-endian strings. u == NULL means the base point. */
static int mbed_x25519(const uint8_t *scalar, const uint8_t *u, uint8_t *out)
{
    mbedtls_ecp_group grp;
    mbedtls_mpi d;
    mbedtls_ecp_point P, R;
    uint8_t k[32], ub[32];
    int rc, ret = WR_CRYPTO_OK;

    count_op();
    mbedtls_ecp_group_init(&grp);
    mbedtls_mpi_init(&d);
    mbedtls_ecp_point_init(&P);
    mbedtls_ecp_point_init(&R);
    memcpy(k, scalar, 32);
    /* Clamp as RFC 7748 §5 says; mbedtls_ecp_check_privkey insists on it. */
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    rc = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_CURVE25519);
    if (!rc) rc = mbedtls_mpi_read_binary_le(&d, k, 32);
    if (!rc && u) {
        memcpy(ub, u, 32);
        ub[31] &= 127; /* the top bit of u is ignored (RFC 7748 §5) */
        rc = mbedtls_mpi_read_binary_le(&P.X, ub, 32);
        if (!rc) rc = mbedtls_mpi_lset(&P.Z, 1);
    }
    if (!rc) rc = mbedtls_ecp_mul(&grp, &R, &d, u ? &P : &grp.G, mbed_rng, NULL);
    if (!rc) rc = mbedtls_mpi_write_binary_le(&R.X, out, 32);
    if (rc == MBEDTLS_ERR_ECP_INVALID_KEY)
        ret = WR_CRYPTO_EWEAK; /* low-order peer point */
    else if (rc == MBEDTLS_ERR_ECP_RANDOM_FAILED)
        ret = WR_CRYPTO_ERANDOM;
    else if (rc)
        ret = WR_CRYPTO_EINTERNAL;
    wr_zeroize(k, sizeof k);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_point_free(&P);
    mbedtls_ecp_point_free(&R);
    mbedtls_ecp_group_free(&grp);
    return ret;
}

#ifdef WR_HAVE_LIBCRYPTO
static int evp_x25519_public(const uint8_t *priv, uint8_t *pub)
{
    size_t n = 32;
    EVP_PKEY *k;
    int ok;
    count_op();
    k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
    ok = k && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == 32;
    EVP_PKEY_free(k);
    return ok ? WR_CRYPTO_OK : WR_CRYPTO_EINTERNAL;
}

static int evp_x25519_shared(const uint8_t *priv, const uint8_t *peer, uint8_t *out)
{
    size_t n = 32;
    int ret = WR_CRYPTO_EINTERNAL;
    EVP_PKEY *k, *p;
    EVP_PKEY_CTX *c;
    count_op();
    k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
    p = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    c = k ? EVP_PKEY_CTX_new(k, NULL) : NULL;
    if (c && p && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, p) == 1) {
        /* libcrypto refuses an all-zero result, the only input-dependent failure left. */
        ret = EVP_PKEY_derive(c, out, &n) == 1 && n == 32 ? WR_CRYPTO_OK : WR_CRYPTO_EWEAK;
    }
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(p);
    EVP_PKEY_free(k);
    return ret;
}

static int evp_x25519_ephemeral(const uint8_t *peer, uint8_t *pub, uint8_t *out)
{
    uint8_t priv[32];
    size_t n = 32, pn = 32;
    int ret = WR_CRYPTO_EINTERNAL;
    EVP_PKEY *k = NULL, *p = NULL;
    EVP_PKEY_CTX *c = NULL;
    if (wr_random(priv, sizeof priv)) return WR_CRYPTO_ERANDOM;
    count_op(); /* two scalar multiplications, counted like keypair + shared */
    count_op();
    /* Importing the scalar computes its public key once; the derive reuses the same object. */
    k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
    wr_zeroize(priv, sizeof priv);
    p = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    if (k && p && EVP_PKEY_get_raw_public_key(k, pub, &pn) == 1 && pn == 32)
        c = EVP_PKEY_CTX_new(k, NULL);
    if (c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, p) == 1)
        ret = EVP_PKEY_derive(c, out, &n) == 1 && n == 32 ? WR_CRYPTO_OK : WR_CRYPTO_EWEAK;
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(p);
    EVP_PKEY_free(k);
    return ret;
}
#endif

int wr_x25519_public(enum wr_backend b, const uint8_t priv[WR_X25519_LEN],
                     uint8_t pub[WR_X25519_LEN])
{
    b = resolve(b);
    if (b == WR_BACKEND_MBEDTLS) return mbed_x25519(priv, NULL, pub);
#ifdef WR_HAVE_LIBCRYPTO
    if (b == WR_BACKEND_LIBCRYPTO) return evp_x25519_public(priv, pub);
#endif
    return WR_CRYPTO_EUNSUPPORTED;
}

int wr_x25519_keypair(enum wr_backend b, uint8_t priv[WR_X25519_LEN], uint8_t pub[WR_X25519_LEN])
{
    int rc = wr_random(priv, WR_X25519_LEN);
    if (!rc) rc = wr_x25519_public(b, priv, pub);
    if (rc) wr_zeroize(priv, WR_X25519_LEN);
    return rc;
}

int wr_x25519_shared(enum wr_backend b, const uint8_t priv[WR_X25519_LEN],
                     const uint8_t peer[WR_X25519_LEN], uint8_t out[WR_X25519_LEN])
{
    int rc = WR_CRYPTO_EUNSUPPORTED;
    b = resolve(b);
    if (b == WR_BACKEND_MBEDTLS) rc = mbed_x25519(priv, peer, out);
#ifdef WR_HAVE_LIBCRYPTO
    if (b == WR_BACKEND_LIBCRYPTO) rc = evp_x25519_shared(priv, peer, out);
#endif
    /* Both libraries already refuse low-order points; check again so neither is trusted. */
    if (rc == WR_CRYPTO_OK && wr_ct_is_zero(out, WR_X25519_LEN)) rc = WR_CRYPTO_EWEAK;
    if (rc) wr_zeroize(out, WR_X25519_LEN);
    return rc;
}

int wr_x25519_ephemeral(enum wr_backend b, const uint8_t peer[WR_X25519_LEN],
                        uint8_t pub[WR_X25519_LEN], uint8_t shared[WR_X25519_LEN])
{
    int rc = WR_CRYPTO_EUNSUPPORTED;
    b = resolve(b);
    if (b == WR_BACKEND_MBEDTLS) {
        uint8_t priv[WR_X25519_LEN];
        rc = wr_x25519_keypair(b, priv, pub);
        if (!rc) rc = mbed_x25519(priv, peer, shared);
        wr_zeroize(priv, sizeof priv);
    }
#ifdef WR_HAVE_LIBCRYPTO
    if (b == WR_BACKEND_LIBCRYPTO) rc = evp_x25519_ephemeral(peer, pub, shared);
#endif
    if (rc == WR_CRYPTO_OK && wr_ct_is_zero(shared, WR_X25519_LEN)) rc = WR_CRYPTO_EWEAK;
    if (rc) wr_zeroize(shared, WR_X25519_LEN);
    return rc;
}

/* ---- hashes and KDFs ---- */

static const mbedtls_md_info_t *sha256_info(void)
{
    return mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
}

void wr_sha256(const void *data, size_t len, uint8_t out[WR_SHA256_LEN])
{
    mbedtls_sha256_ret(data, len, out, 0);
}

void wr_sha256_2(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[WR_SHA256_LEN])
{
    mbedtls_sha256_context c;
    mbedtls_sha256_init(&c);
    mbedtls_sha256_starts_ret(&c, 0);
    mbedtls_sha256_update_ret(&c, a, alen);
    mbedtls_sha256_update_ret(&c, b, blen);
    mbedtls_sha256_finish_ret(&c, out);
    mbedtls_sha256_free(&c);
}

int wr_hmac_sha256(const void *key, size_t klen, const void *data, size_t len,
                   uint8_t out[WR_SHA256_LEN])
{
    return mbedtls_md_hmac(sha256_info(), key, klen, data, len, out) ? WR_CRYPTO_EINTERNAL
                                                                     : WR_CRYPTO_OK;
}

/* A SHA-256 state that is plain bytes (copied, not cloned): libcrypto's where it is built in (it
 * uses the CPU's SHA extensions; its low-level API is deprecated in OpenSSL 3 but is the only one
 * without an allocation per use), mbedTLS's otherwise. The bytes are the same either way. */
#ifdef WR_HAVE_LIBCRYPTO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
typedef SHA256_CTX sha_state;
static void sha_start(sha_state *c)
{
    SHA256_Init(c);
}
static void sha_update(sha_state *c, const void *p, size_t n)
{
    SHA256_Update(c, p, n);
}
static void sha_finish(sha_state *c, uint8_t out[WR_SHA256_LEN])
{
    SHA256_Final(out, c);
}
#pragma GCC diagnostic pop
#else
typedef mbedtls_sha256_context sha_state;
static void sha_start(sha_state *c)
{
    mbedtls_sha256_init(c);
    mbedtls_sha256_starts_ret(c, 0);
}
static void sha_update(sha_state *c, const void *p, size_t n)
{
    mbedtls_sha256_update_ret(c, p, n);
}
static void sha_finish(sha_state *c, uint8_t out[WR_SHA256_LEN])
{
    mbedtls_sha256_finish_ret(c, out);
}
#endif

/* The inner and outer hashes with the key's padded block absorbed. */
typedef struct hmac_pre {
    sha_state in, out;
} hmac_pre;
_Static_assert(sizeof(hmac_pre) <= sizeof(((wr_hmac_key *)0)->state), "wr_hmac_key too small");

void wr_hmac_key_init(wr_hmac_key *hk, const void *key, size_t klen)
{
    uint8_t k0[64] = {0}, pad[64];
    hmac_pre pre;
    if (klen > sizeof k0)
        wr_sha256(key, klen, k0);
    else
        memcpy(k0, key, klen);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k0[i] ^ 0x36;
    sha_start(&pre.in);
    sha_update(&pre.in, pad, sizeof pad);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k0[i] ^ 0x5c;
    sha_start(&pre.out);
    sha_update(&pre.out, pad, sizeof pad);
    memset(hk, 0, sizeof *hk);
    memcpy(hk->state, &pre, sizeof pre);
    wr_zeroize(&pre, sizeof pre);
    wr_zeroize(k0, sizeof k0);
    wr_zeroize(pad, sizeof pad);
}

void wr_hmac_sha256_with(const wr_hmac_key *hk, const void *data, size_t len,
                         uint8_t out[WR_SHA256_LEN])
{
    hmac_pre pre;
    uint8_t inner[WR_SHA256_LEN];
    memcpy(&pre, hk->state, sizeof pre);
    sha_update(&pre.in, data, len);
    sha_finish(&pre.in, inner);
    sha_update(&pre.out, inner, sizeof inner);
    sha_finish(&pre.out, out);
    wr_zeroize(&pre, sizeof pre);
    wr_zeroize(inner, sizeof inner);
}

int wr_hkdf_extract(const void *salt, size_t salt_len, const void *ikm, size_t ikm_len,
                    uint8_t prk[WR_SHA256_LEN])
{
    return mbedtls_hkdf_extract(sha256_info(), salt, salt_len, ikm, ikm_len, prk)
               ? WR_CRYPTO_EINTERNAL
               : WR_CRYPTO_OK;
}

int wr_hkdf_expand(const uint8_t prk[WR_SHA256_LEN], const void *info, size_t info_len,
                   uint8_t *out, size_t out_len)
{
    if (out_len == 0 || out_len > 255 * WR_SHA256_LEN) return WR_CRYPTO_EINVAL;
    return mbedtls_hkdf_expand(sha256_info(), prk, WR_SHA256_LEN, info, info_len, out, out_len)
               ? WR_CRYPTO_EINTERNAL
               : WR_CRYPTO_OK;
}

int wr_hkdf(const void *salt, size_t salt_len, const void *ikm, size_t ikm_len, const void *info,
            size_t info_len, uint8_t *out, size_t out_len)
{
    uint8_t prk[WR_SHA256_LEN];
    int rc = wr_hkdf_extract(salt, salt_len, ikm, ikm_len, prk);
    if (!rc) rc = wr_hkdf_expand(prk, info, info_len, out, out_len);
    wr_zeroize(prk, sizeof prk);
    return rc;
}

int wr_pbkdf2_sha256(const void *pw, size_t pw_len, const void *salt, size_t salt_len,
                     uint32_t iterations, uint8_t *out, size_t out_len)
{
    mbedtls_md_context_t md;
    int rc;
    if (iterations == 0 || out_len == 0 || out_len > UINT32_MAX) return WR_CRYPTO_EINVAL;
#ifdef WR_HAVE_LIBCRYPTO
    /* libcrypto uses the SHA extensions where the CPU has them: 3-4x more iterations per
     * second, identical output. */
    if (default_backend == WR_BACKEND_LIBCRYPTO && pw_len <= INT_MAX && salt_len <= INT_MAX &&
        iterations <= INT_MAX && out_len <= INT_MAX)
        return PKCS5_PBKDF2_HMAC(pw, (int)pw_len, salt, (int)salt_len, (int)iterations,
                                 EVP_sha256(), (int)out_len, out) == 1
                   ? WR_CRYPTO_OK
                   : WR_CRYPTO_EINTERNAL;
#endif
    mbedtls_md_init(&md);
    rc = mbedtls_md_setup(&md, sha256_info(), 1);
    if (!rc)
        rc = mbedtls_pkcs5_pbkdf2_hmac(&md, pw, pw_len, salt, salt_len, iterations,
                                       (uint32_t)out_len, out);
    mbedtls_md_free(&md);
    return rc ? WR_CRYPTO_EINTERNAL : WR_CRYPTO_OK;
}

int wr_chacha20_xor(const uint8_t key[32], const uint8_t nonce[12], uint32_t counter,
                    const uint8_t *in, size_t len, uint8_t *out)
{
    return mbedtls_chacha20_crypt(key, nonce, counter, len, in, out) ? WR_CRYPTO_EINTERNAL
                                                                     : WR_CRYPTO_OK;
}
