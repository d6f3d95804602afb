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

#ifdef WR_HAVE_LIBSSL
#include <openssl/evp.h>
#include <openssl/x509.h>

/* SHA-256 of the DER certificate. 0 or -1. */
int wr_tls_cert_digest(X509 *cert, uint8_t out[WR_TLS_FP_DIGEST_LEN]);

/* Loads the key and certificate stored in one PEM file at path, or, when there is no file,
 * makes a self-signed one (EC P-256, SHA-256, ten years, CN and subjectAltName set to name, an
 * IP address when name is one) and stores it there with mode 0600 first. A stored file readable
 * by group or others is refused, as ssh refuses such keys. 0, or -1 with *err a malloc'd
 * message. Two processes starting at once end up with the same certificate. */
int wr_tls_cert_load_or_make(const char *path, const char *name, X509 **cert, EVP_PKEY **key,
                             char **err);

/* Shared with wr_tls_endpoint.c: a malloc'd formatted message (NULL only when out of memory),
 * and the reason of the newest OpenSSL error on this thread ("unknown error" when none). */
char *wr_tls__errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *wr_tls__ssl_reason(void);
#endif

#endif
