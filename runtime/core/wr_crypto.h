/* Cryptographic primitives for the secure channel, behind one small interface.
 *
 * Bulk AEAD and X25519 have two backends with identical bytes on the wire: OpenSSL's libcrypto
 * (compiled in when WR_HAVE_LIBCRYPTO is defined; 10-20x faster here) and mbedTLS 2.28 (always
 * present). The backend is chosen per object at run time, so tests can check one against the
 * other. Hashes and KDFs are cheap and always come from mbedTLS.
 *
 * Every function returning int returns 0 on success or a negative WR_CRYPTO_E* code. */
#ifndef WR_CRYPTO_H
#define WR_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define WR_AEAD_KEY_LEN   32
#define WR_AEAD_NONCE_LEN 12
#define WR_AEAD_TAG_LEN   16
#define WR_X25519_LEN     32
#define WR_SHA256_LEN     32

enum wr_crypto_err {
    WR_CRYPTO_OK = 0,
    WR_CRYPTO_EAUTH = -1,        /* AEAD tag did not verify; output is zeroed */
    WR_CRYPTO_EUNSUPPORTED = -2, /* backend or algorithm not compiled in */
    WR_CRYPTO_EINVAL = -3,       /* bad argument (length, enum) */
    WR_CRYPTO_EWEAK = -4,        /* X25519 result all zero: low-order peer key */
    WR_CRYPTO_ERANDOM = -5,      /* getrandom(2) failed */
    WR_CRYPTO_ENOMEM = -6,
    WR_CRYPTO_EINTERNAL = -7, /* the library refused for another reason */
};

enum wr_backend {
    WR_BACKEND_DEFAULT = 0, /* resolves to wr_crypto_default_backend() */
    WR_BACKEND_MBEDTLS = 1,
    WR_BACKEND_LIBCRYPTO = 2,
};

enum wr_aead_alg {
    WR_AEAD_CHACHA20_POLY1305 = 1,
    WR_AEAD_AES256_GCM = 2,
};

/* 1 when the backend is compiled in (DEFAULT always is). */
int wr_crypto_backend_available(enum wr_backend b);
/* libcrypto when compiled in, mbedTLS otherwise, unless changed by the setter. */
enum wr_backend wr_crypto_default_backend(void);
/* Process-wide; call at startup, before any worker thread runs. */
int wr_crypto_set_default_backend(enum wr_backend b);
/* "libcrypto" or "mbedtls"; DEFAULT names the backend it resolves to. */
const char *wr_crypto_backend_name(enum wr_backend b);
const char *wr_aead_alg_name(enum wr_aead_alg alg);
/* 1 when AES-256-GCM runs on the CPU's AES and carry-less multiply instructions with backend b:
 * libcrypto on x86 with AES-NI and PCLMULQDQ (an OPENSSL_ia32cap mask that hides them counts, as
 * libcrypto obeys it too) or on aarch64 with AES and PMULL. mbedTLS is never counted: without
 * them, and with mbedTLS, ChaCha20-Poly1305 is the faster cipher. */
int wr_aead_aes_hw(enum wr_backend b);

/* ---- AEAD: 32-byte key, 12-byte nonce, 16-byte tag appended to the ciphertext ---- */

/* A keyed context, allocated once per key holder (never per message). Not thread-safe; one
 * context per direction. */
typedef struct wr_aead wr_aead;

int wr_aead_new(wr_aead **out, enum wr_backend b, enum wr_aead_alg alg, const uint8_t *key);
/* Replace the key without reallocating (rekey). */
int wr_aead_setkey(wr_aead *a, const uint8_t *key);
/* out receives len + 16 bytes; out may equal pt (in place). */
int wr_aead_seal(wr_aead *a, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                 const uint8_t *pt, size_t len, uint8_t *out);
/* ct_len includes the tag; out receives ct_len - 16 bytes; out may equal ct. */
int wr_aead_open(wr_aead *a, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                 const uint8_t *ct, size_t ct_len, uint8_t *out);
enum wr_backend wr_aead_backend(const wr_aead *a);
enum wr_aead_alg wr_aead_alg_of(const wr_aead *a);
/* Zeroizes the key schedule. NULL is fine. */
void wr_aead_free(wr_aead *a);

/* One-shot forms for the handshake's few small messages (no heap with mbedTLS). */
int wr_aead_seal_once(enum wr_backend b, enum wr_aead_alg alg, const uint8_t *key,
                      const uint8_t *nonce, const uint8_t *aad, size_t aad_len, const uint8_t *pt,
                      size_t len, uint8_t *out);
int wr_aead_open_once(enum wr_backend b, enum wr_aead_alg alg, const uint8_t *key,
                      const uint8_t *nonce, const uint8_t *aad, size_t aad_len, const uint8_t *ct,
                      size_t ct_len, uint8_t *out);

/* Counter nonce: 4 zero bytes then the counter as u64 big-endian. */
void wr_aead_nonce(uint8_t nonce[WR_AEAD_NONCE_LEN], uint64_t counter);

/* ---- X25519 (RFC 7748) ---- */

/* Fresh random private scalar and its public key. */
int wr_x25519_keypair(enum wr_backend b, uint8_t priv[WR_X25519_LEN], uint8_t pub[WR_X25519_LEN]);
int wr_x25519_public(enum wr_backend b, const uint8_t priv[WR_X25519_LEN],
                     uint8_t pub[WR_X25519_LEN]);
/* Fails with WR_CRYPTO_EWEAK (out zeroed) when the result is all zero. */
int wr_x25519_shared(enum wr_backend b, const uint8_t priv[WR_X25519_LEN],
                     const uint8_t peer[WR_X25519_LEN], uint8_t out[WR_X25519_LEN]);

/* One-shot ephemeral: a fresh private scalar (never leaves the call), its public key, and the
 * shared secret with peer. Cheaper than keypair + shared with libcrypto (one key import less). */
int wr_x25519_ephemeral(enum wr_backend b, const uint8_t peer[WR_X25519_LEN],
                        uint8_t pub[WR_X25519_LEN], uint8_t shared[WR_X25519_LEN]);

/* X25519 scalar multiplications (key generations and agreements) done so far by this process,
 * all threads: lets tests prove
 * that a rejected handshake cost no DH, and the runtime count its DH budget. */
uint64_t wr_x25519_ops(void);

/* ---- hashes and KDFs (mbedTLS) ---- */

void wr_sha256(const void *data, size_t len, uint8_t out[WR_SHA256_LEN]);
/* SHA-256 of a || b, without building the concatenation. */
void wr_sha256_2(const void *a, size_t alen, const void *b, size_t blen,
                 uint8_t out[WR_SHA256_LEN]);
int wr_hmac_sha256(const void *key, size_t klen, const void *data, size_t len,
                   uint8_t out[WR_SHA256_LEN]);
/* HMAC-SHA256 under a key whose padded blocks are hashed once, up front: each MAC of a short
 * message then costs two SHA-256 compressions instead of four and no allocation (a relay tries
 * every user's key on each handshake). Plain bytes: copy it freely; wipe it with wr_zeroize. */
typedef struct wr_hmac_key {
    uint64_t state[32];
} wr_hmac_key;
void wr_hmac_key_init(wr_hmac_key *hk, const void *key, size_t klen);
void wr_hmac_sha256_with(const wr_hmac_key *hk, const void *data, size_t len,
                         uint8_t out[WR_SHA256_LEN]);
int wr_hkdf_extract(const void *salt, size_t salt_len, const void *ikm, size_t ikm_len,
                    uint8_t prk[WR_SHA256_LEN]);
/* out_len <= 255 * 32. */
int wr_hkdf_expand(const uint8_t prk[WR_SHA256_LEN], const void *info, size_t info_len,
                   uint8_t *out, size_t out_len);
int wr_hkdf(const void *salt, size_t salt_len, const void *ikm, size_t ikm_len, const void *info,
            size_t info_len, uint8_t *out, size_t out_len);
/* PBKDF2-HMAC-SHA256; uses libcrypto when it is the default backend (same bytes, faster). */
int wr_pbkdf2_sha256(const void *pw, size_t pw_len, const void *salt, size_t salt_len,
                     uint32_t iterations, uint8_t *out, size_t out_len);
/* Raw ChaCha20 (RFC 8439 §2.4) keystream XOR, used to hide the X25519 public keys. */
int wr_chacha20_xor(const uint8_t key[32], const uint8_t nonce[12], uint32_t counter,
                    const uint8_t *in, size_t len, uint8_t *out);

/* ---- misc ---- */

/* getrandom(2); never returns short. */
int wr_random(void *buf, size_t len);
/* 1 when equal, 0 otherwise; time depends on len only. */
int wr_ct_equal(const void *a, const void *b, size_t len);
/* 1 when every byte is zero; time depends on len only. */
int wr_ct_is_zero(const void *p, size_t len);
/* Wipe a secret; not optimised away. */
void wr_zeroize(void *p, size_t len);

#endif
