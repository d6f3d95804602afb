/* Certificates with OpenSSL's libcrypto: the build's TLS backend when libssl is found. */
#include "wr_tls_cert.h"

#ifdef WR_HAVE_LIBSSL
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

const char *wr_tls__ssl_reason(void)
{
    const char *r = ERR_reason_error_string(ERR_peek_last_error());
    return r ? r : "unknown error";
}

int wr_tls_cert_digest(X509 *cert, uint8_t out[WR_TLS_FP_DIGEST_LEN])
{
    unsigned n = 0;
    return X509_digest(cert, EVP_sha256(), out, &n) == 1 && n == WR_TLS_FP_DIGEST_LEN ? 0 : -1;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    int ok = e && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok;
}

/* subjectAltName built from parts, not from a config string, so no name can add entries. */
static int add_san(X509 *x, const char *name)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(name);
    int ok = 0;
    if (gens == NULL || gen == NULL) goto out;
    if (ip) {
        GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
        ip = NULL;
    } else {
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
        if (dns == NULL || !ASN1_STRING_set(dns, name, -1)) {
            ASN1_IA5STRING_free(dns);
            goto out;
        }
        GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
    }
    if (!sk_GENERAL_NAME_push(gens, gen)) goto out;
    gen = NULL;
    ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
out:
    ASN1_OCTET_STRING_free(ip);
    GENERAL_NAME_free(gen);
    GENERAL_NAMES_free(gens);
    return ok;
}

static int make_self_signed(const char *name, X509 **cert, EVP_PKEY **key)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    unsigned char serial[16];
    int ok = 0;
    if (k == NULL || x == NULL || bn == NULL || RAND_bytes(serial, sizeof(serial)) != 1) goto out;
    serial[0] &= 0x7f; /* positive, as RFC 5280 wants */
    /* CN is limited to 64 characters; the subjectAltName, which is what clients check, is not. */
    const char *cn = strlen(name) <= 64 ? name : "warren relay";
    X509_NAME *subj = X509_get_subject_name(x);
    ok = X509_set_version(x, 2) && BN_bin2bn(serial, sizeof(serial), bn) &&
         BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
         X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
         X509_time_adj_ex(X509_getm_notAfter(x), 3650, 0, NULL) && X509_set_pubkey(x, k) &&
         X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0) &&
         X509_set_issuer_name(x, subj) && add_san(x, name) &&
         add_ext(x, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(x, NID_key_usage, "critical,digitalSignature") &&
         add_ext(x, NID_ext_key_usage, "serverAuth") &&
         add_ext(x, NID_subject_key_identifier, "hash") && X509_sign(x, k, EVP_sha256()) > 0;
out:
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        EVP_PKEY_free(k);
        return -1;
    }
    *cert = x;
    *key = k;
    return 0;
}

static int store_pem(const char *path, X509 *cert, EVP_PKEY *key, char **err)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;
    int rc = -1;
    if (mem == NULL || !PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_X509(mem, cert) || (len = BIO_get_mem_data(mem, &data)) <= 0)
        *err = wr_tls__errf("cannot encode the new certificate: %s", wr_tls__ssl_reason());
    else
        rc = wr_tls__store_private(path, data, (size_t)len, err);
    BIO_free(mem);
    return rc;
}

static int load_pem(const char *path, X509 **cert, EVP_PKEY **key, char **err)
{
    size_t len;
    char *pem = wr_tls__read_private(path, &len, err);
    if (pem == NULL) return -1;
    BIO *mem = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = mem ? PEM_read_bio_PrivateKey(mem, NULL, NULL, NULL) : NULL;
    BIO_free(mem);
    mem = BIO_new_mem_buf(pem, (int)len);
    X509 *x = mem ? PEM_read_bio_X509(mem, NULL, NULL, NULL) : NULL;
    BIO_free(mem);
    OPENSSL_cleanse(pem, len);
    free(pem);
    if (k == NULL || x == NULL || X509_check_private_key(x, k) != 1) {
        *err = wr_tls__errf("%s does not hold a private key and its certificate: %s", path,
                            wr_tls__ssl_reason());
        EVP_PKEY_free(k);
        X509_free(x);
        return -1;
    }
    *cert = x;
    *key = k;
    return 0;
}

int wr_tls_cert_load_or_make(const char *path, const char *name, X509 **cert, EVP_PKEY **key,
                             char **err)
{
    struct stat st;
    ERR_clear_error();
    if (lstat(path, &st) == 0) return load_pem(path, cert, key, err);
    if (errno != ENOENT) {
        *err = wr_tls__errf("cannot use %s: %s", path, strerror(errno));
        return -1;
    }
    if (wr_tls__check_name(name, err) != 0) return -1;
    X509 *x;
    EVP_PKEY *k;
    if (make_self_signed(name, &x, &k) != 0) {
        *err = wr_tls__errf("cannot make a certificate: %s", wr_tls__ssl_reason());
        return -1;
    }
    int rc = store_pem(path, x, k, err);
    X509_free(x);
    EVP_PKEY_free(k);
    /* Read back what is stored: the file another process won a race with, if that happened. */
    return rc == 0 ? load_pem(path, cert, key, err) : -1;
}
#endif
