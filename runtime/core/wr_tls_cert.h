/* Certificates for the TLS carrier: fingerprints and pins, and the self-signed certificate a
 * relay makes at first start.
 *
 * A fingerprint is "sha256:" and the SHA-256 of the DER certificate in 64 lowercase hex digits
 * (the same digest `openssl x509 -noout -fingerprint -sha256` prints, there in upper case with
 * colons). A pin is read in either case, with or without the colons between byte pairs, so both
 * forms can be pasted. */
#ifndef WR_TLS_CERT_H
#define WR_TLS_CERT_H

#include <stddef.h>
#include <stdint.h>

#define WR_TLS_FP_DIGEST_LEN 32
/* "sha256:" + 64 hex digits + NUL. */
#define WR_TLS_FP_TEXT_LEN 72

/* Parses a pin into its digest. 0, or -1 with *why set to a static reason. Pure: no OpenSSL. */
int wr_tls_pin_parse(const char *s, uint8_t out[WR_TLS_FP_DIGEST_LEN], const char **why);
/* The text form of a digest. */
void wr_tls_fp_format(const uint8_t digest[WR_TLS_FP_DIGEST_LEN], char out[WR_TLS_FP_TEXT_LEN]);

/* Shared by the backends (runtime/core/tls/): a malloc'd formatted message (NULL only when out
 * of memory); the check of a self-signed certificate's name (0, or -1 with *err); the private
 * file a self-signed certificate is kept in, written with mode 0600 beside path and linked into
 * place (0, or -1 with *err), and read back, NUL-terminated, after refusing a file that group or
 * others can read, as ssh refuses such keys (the malloc'd contents, or NULL with *err). */
char *wr_tls__errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int wr_tls__check_name(const char *name, char **err);
int wr_tls__store_private(const char *path, const char *data, size_t len, char **err);
char *wr_tls__read_private(const char *path, size_t *len, char **err);

/* Each backend: loads the key and certificate stored in one PEM file at path, or, when there is
 * no file, makes a self-signed one (EC P-256, SHA-256, ten years, CN and subjectAltName set to
 * name, an IP address when name is one) and stores it there with mode 0600 first. The stored
 * file is the same PEM either way, so a relay rebuilt with the other backend keeps its
 * certificate. 0, or -1 with *err a malloc'd message. Two processes starting at once end up with
 * the same certificate. */
#ifdef WR_HAVE_LIBSSL
#include <openssl/evp.h>
#include <openssl/x509.h>

/* SHA-256 of the DER certificate. 0 or -1. */
int wr_tls_cert_digest(X509 *cert, uint8_t out[WR_TLS_FP_DIGEST_LEN]);
int wr_tls_cert_load_or_make(const char *path, const char *name, X509 **cert, EVP_PKEY **key,
                             char **err);
/* The reason of the newest OpenSSL error on this thread ("unknown error" when none). */
const char *wr_tls__ssl_reason(void);
#else
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

/* SHA-256 of the DER certificate. */
void wr_tls_cert_digest(const mbedtls_x509_crt *cert, uint8_t out[WR_TLS_FP_DIGEST_LEN]);
/* cert and key are initialised by the caller, and filled. */
int wr_tls_cert_load_or_make(const char *path, const char *name, mbedtls_x509_crt *cert,
                             mbedtls_pk_context *key, char **err);
/* The random generator the backend hands mbedTLS (getrandom(2)). */
int wr_tls__random(void *unused, unsigned char *out, size_t len);
/* Words for an mbedTLS error code, without the module prefix ("the CRT/CRL/CSR format is
 * invalid"), in buf. */
const char *wr_tls__mbedtls_reason(int code, char *buf, size_t size);
#endif

#endif
