/* Certificates with mbedTLS (the build's TLS backend when libssl is not found): fingerprints,
 * and the self-signed certificate made with x509write, stored as the same PEM the OpenSSL
 * backend writes. */
#include "wr_tls_cert.h"

#ifndef WR_HAVE_LIBSSL
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include "wr_crypto.h"

int wr_tls__random(void *unused, unsigned char *out, size_t len)
{
    return wr_random(out, len) == 0 ? 0 : MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
}

const char *wr_tls__mbedtls_reason(int code, char *buf, size_t size)
{
    char text[256];
    mbedtls_strerror(code, text, sizeof(text));
    /* "SSL - The peer notified us that the connection is going to be closed": the words only,
     * lower case first as OpenSSL's reasons are. */
    const char *p = strstr(text, " - ");
    p = p ? p + 3 : text;
    size_t n = strlen(p);
    if (n >= size) n = size - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z')) buf[0] += 'a' - 'A';
    return buf;
}

void wr_tls_cert_digest(const mbedtls_x509_crt *cert, uint8_t out[WR_TLS_FP_DIGEST_LEN])
{
    mbedtls_sha256_ret(cert->raw.p, cert->raw.len, out, 0);
}

/* subjectAltName: SEQUENCE { [2] dNSName } or SEQUENCE { [7] iPAddress }, written backwards as
 * mbedTLS's asn1write does. Returns the DER's start in buf (end - *len), or NULL. */
static unsigned char *san_der(const char *name, unsigned char *buf, size_t size, size_t *len)
{
    unsigned char ip[16], *p = buf + size;
    size_t iplen = inet_pton(AF_INET, name, ip) == 1    ? 4
                   : inet_pton(AF_INET6, name, ip) == 1 ? 16
                                                        : 0;
    const unsigned char *value = iplen ? ip : (const unsigned char *)name;
    size_t vlen = iplen ? iplen : strlen(name);
    int n = mbedtls_asn1_write_raw_buffer(&p, buf, value, vlen), total;
    if (n < 0) return NULL;
    total = n;
    if ((n = mbedtls_asn1_write_len(&p, buf, (size_t)total)) < 0) return NULL;
    total += n;
    if ((n = mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | (iplen ? 7 : 2))) < 0)
        return NULL;
    total += n;
    if ((n = mbedtls_asn1_write_len(&p, buf, (size_t)total)) < 0) return NULL;
    total += n;
    if ((n = mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)) < 0)
        return NULL;
    *len = (size_t)(total + n);
    return p;
}

/* "YYYYMMDDhhmmss" for now + seconds. */
static void validity_time(time_t seconds, char out[16])
{
    time_t t = time(NULL) + seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

/* A CN mbedTLS's name parser takes as is: host names and addresses. Anything else (and names
 * over the 64 characters a CN may have) gets a neutral CN; the subjectAltName, which is what
 * clients check, always carries the name. */
static const char *plain_cn(const char *name)
{
    if (strlen(name) > 64) return "warren relay";
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == ':' || *p == '_' || *p == '*'))
            return "warren relay";
    return name;
}

/* The PEM of a new key and its self-signed certificate, key first as OpenSSL stores it, into
 * out (NUL-terminated). 0 or an mbedTLS error. */
static int make_self_signed(const char *name, char *out, size_t size)
{
    mbedtls_pk_context key;
    mbedtls_x509write_cert w;
    mbedtls_mpi serial;
    unsigned char rnd[16], sanbuf[300], *san;
    char subject[96], not_before[16], not_after[16];
    size_t san_len = 0;
    /* extendedKeyUsage: SEQUENCE { id-kp-serverAuth } */
    static const unsigned char server_auth[] = {0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06,
                                                0x01, 0x05, 0x05, 0x07, 0x03, 0x01};
    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&serial);
    int rc = mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc == 0)
        rc =
            mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key), wr_tls__random, NULL);
    if (rc == 0) rc = wr_tls__random(NULL, rnd, sizeof(rnd));
    rnd[0] &= 0x7f; /* positive, as RFC 5280 wants */
    if (rc == 0) rc = mbedtls_mpi_read_binary(&serial, rnd, sizeof(rnd));
    if (rc != 0) goto out;
    snprintf(subject, sizeof(subject), "CN=%s", plain_cn(name));
    validity_time(-3600, not_before);
    validity_time(3650L * 86400, not_after);
    mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, &key);
    mbedtls_x509write_crt_set_issuer_key(&w, &key);
    san = san_der(name, sanbuf, sizeof(sanbuf), &san_len);
    if (san == NULL) {
        rc = MBEDTLS_ERR_X509_BAD_INPUT_DATA;
        goto out;
    }
    if ((rc = mbedtls_x509write_crt_set_serial(&w, &serial)) != 0 ||
        (rc = mbedtls_x509write_crt_set_subject_name(&w, subject)) != 0 ||
        (rc = mbedtls_x509write_crt_set_issuer_name(&w, subject)) != 0 ||
        (rc = mbedtls_x509write_crt_set_validity(&w, not_before, not_after)) != 0 ||
        (rc = mbedtls_x509write_crt_set_extension(&w, MBEDTLS_OID_SUBJECT_ALT_NAME,
                                                  MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
                                                  san, san_len)) != 0 ||
        (rc = mbedtls_x509write_crt_set_basic_constraints(&w, 0, -1)) != 0 ||
        (rc = mbedtls_x509write_crt_set_key_usage(&w, MBEDTLS_X509_KU_DIGITAL_SIGNATURE)) != 0 ||
        (rc = mbedtls_x509write_crt_set_extension(&w, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                                  MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE),
                                                  0, server_auth, sizeof(server_auth))) != 0 ||
        (rc = mbedtls_x509write_crt_set_subject_key_identifier(&w)) != 0 ||
        (rc = mbedtls_pk_write_key_pem(&key, (unsigned char *)out, size)) != 0)
        goto out;
    size_t used = strlen(out);
    rc = mbedtls_x509write_crt_pem(&w, (unsigned char *)out + used, size - used, wr_tls__random,
                                   NULL);
out:
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&w);
    mbedtls_pk_free(&key);
    return rc;
}

static int load_pem(const char *path, mbedtls_x509_crt *cert, mbedtls_pk_context *key, char **err)
{
    size_t len;
    char why[160];
    char *pem = wr_tls__read_private(path, &len, err);
    if (pem == NULL) return -1;
    /* The parsers want the PEM's terminating NUL counted. */
    int rc = mbedtls_pk_parse_key(key, (const unsigned char *)pem, len + 1, NULL, 0);
    if (rc == 0) rc = mbedtls_x509_crt_parse(cert, (const unsigned char *)pem, len + 1);
    if (rc == 0) rc = mbedtls_pk_check_pair(&cert->pk, key);
    mbedtls_platform_zeroize(pem, len);
    free(pem);
    if (rc != 0) {
        *err = wr_tls__errf("%s does not hold a private key and its certificate: %s", path,
                            rc > 0 ? "a certificate does not parse"
                                   : wr_tls__mbedtls_reason(rc, why, sizeof(why)));
        return -1;
    }
    return 0;
}

int wr_tls_cert_load_or_make(const char *path, const char *name, mbedtls_x509_crt *cert,
                             mbedtls_pk_context *key, char **err)
{
    struct stat st;
    char why[160];
    if (lstat(path, &st) == 0) return load_pem(path, cert, key, err);
    if (errno != ENOENT) {
        *err = wr_tls__errf("cannot use %s: %s", path, strerror(errno));
        return -1;
    }
    if (wr_tls__check_name(name, err) != 0) return -1;
    size_t size = 8192;
    char *pem = malloc(size);
    if (pem == NULL) {
        *err = wr_tls__errf("out of memory");
        return -1;
    }
    int rc = make_self_signed(name, pem, size);
    if (rc != 0) {
        *err = wr_tls__errf("cannot make a certificate: %s",
                            wr_tls__mbedtls_reason(rc, why, sizeof(why)));
        mbedtls_platform_zeroize(pem, size);
        free(pem);
        return -1;
    }
    rc = wr_tls__store_private(path, pem, strlen(pem), err);
    mbedtls_platform_zeroize(pem, size);
    free(pem);
    /* Read back what is stored: the file another process won a race with, if that happened. */
    return rc == 0 ? load_pem(path, cert, key, err) : -1;
}
#endif
