/* The TLS carrier on mbedTLS 2.28: the backend when the build has no libssl. TLS 1.2 only (2.28
 * has no TLS 1.3 worth using). The endpoint around it is the pipe both backends share
 * (wr_tls_pipe.c); mbedTLS reads and writes through it with mbedtls_ssl_set_bio. */
#include "wr_tls_pipe.h"

#ifndef WR_HAVE_LIBSSL
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/version.h>

/* TLS 1.2 suites: forward secrecy and AEAD only, with the names OpenSSL gives them (what
 * wr_tls_endpoint_info reports, whatever the backend). ChaCha20-Poly1305 first, unlike the OpenSSL
 * backend: mbedTLS's AES-GCM (a table GHASH, one AES-NI block at a time) runs at half its
 * ChaCha20-Poly1305's speed. A server takes its own order; an OpenSSL server takes this client's.
 */
static const struct {
    int id;
    const char *name;
} suites[] = {
    {MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-ECDSA-CHACHA20-POLY1305"},
    {MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE-RSA-CHACHA20-POLY1305"},
    {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ECDHE-ECDSA-AES128-GCM-SHA256"},
    {MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "ECDHE-RSA-AES128-GCM-SHA256"},
    {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "ECDHE-ECDSA-AES256-GCM-SHA384"},
    {MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "ECDHE-RSA-AES256-GCM-SHA384"},
};
#define N_SUITES (sizeof(suites) / sizeof(suites[0]))
static const int suite_ids[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0,
};

#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define SYSTEM_CA_DIR  "/etc/ssl/certs"

struct wr_tls_ctx {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt certs; /* server: its chain; client: the CAs it trusts */
    mbedtls_pk_context key; /* server only */
    unsigned refs;
    int is_server;
    int pinned;
    uint8_t pin[WR_TLS_FP_DIGEST_LEN];
    const char **alpn; /* NULL-terminated, pointing into alpn_names */
    char *alpn_names;
    char fingerprint[WR_TLS_FP_TEXT_LEN];
};

enum {
    F_PIN_MISMATCH = 1u << 0,
    F_NO_HOST = 1u << 1, /* a client verifying against CAs was given no name to check */
    F_VERIFY_SEEN = 1u << 2,
    F_TOP_SELF = 1u << 3, /* the top of the chain the peer sent is self-signed */
};

typedef struct tls_ep {
    wr_tls_pipe_t pipe; /* first: the endpoint */
    wr_tls_ctx_t *ctx;
    mbedtls_ssl_context ssl;
    unsigned flags;
    uint32_t verify_flags; /* what certificate verification found, every depth */
    int top_depth;
    char host[256]; /* client: the name sent as SNI and verified */
    char sni[256];  /* server: the name the client asked for */
    char peer_fp[WR_TLS_FP_TEXT_LEN];
} tls_ep_t;

static tls_ep_t *ep_of(mbedtls_ssl_context *ssl)
{
    return (tls_ep_t *)(void *)((char *)ssl - offsetof(tls_ep_t, ssl));
}

/* ---- mbedTLS's I/O, through the pipe ---- */

static int io_send(void *arg, const unsigned char *data, size_t len)
{
    tls_ep_t *t = arg;
    return wr_tls__pipe_put(&t->pipe, (const char *)data, len) == 0 ? (int)len
                                                                    : MBEDTLS_ERR_SSL_ALLOC_FAILED;
}

static int io_recv(void *arg, unsigned char *buf, size_t len)
{
    tls_ep_t *t = arg;
    size_t n = wr_tls__pipe_take(&t->pipe, (char *)buf, len);
    return n > 0 ? (int)n : MBEDTLS_ERR_SSL_WANT_READ;
}

/* ---- context ---- */

/* "h2,http/1.1" to the NULL-terminated list mbedTLS takes. */
static int alpn_list(wr_tls_ctx_t *c, const char *list)
{
    size_t len = strlen(list), count = 1;
    if (len == 0 || len > 1024) return -1;
    for (const char *p = list; *p; p++)
        count += *p == ',';
    c->alpn_names = strdup(list);
    c->alpn = calloc(count + 1, sizeof(*c->alpn));
    if (c->alpn_names == NULL || c->alpn == NULL) return -1;
    char *p = c->alpn_names;
    for (size_t i = 0; i < count; i++) {
        char *end = strchr(p, ',');
        if (end) *end = '\0';
        size_t l = strlen(p);
        if (l == 0 || l > 255) return -1;
        c->alpn[i] = p;
        p = end ? end + 1 : p + l;
    }
    return 0;
}

/* The name the client asked for, kept for wr_tls_endpoint_info; any name is served. */
static int sni_seen(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name, size_t len)
{
    tls_ep_t *t = ep_of(ssl);
    if (len < sizeof(t->sni) && memchr(name, '\0', len) == NULL) {
        memcpy(t->sni, name, len);
        t->sni[len] = '\0';
    }
    return 0;
}

static void fp_of(const mbedtls_x509_crt *cert, char out[WR_TLS_FP_TEXT_LEN])
{
    uint8_t d[WR_TLS_FP_DIGEST_LEN];
    wr_tls_cert_digest(cert, d);
    wr_tls_fp_format(d, out);
}

static wr_tls_ctx_t *ctx_new(int is_server, const char *alpn, const char *tls13, char **err)
{
    char why[160];
    wr_tls_ctx_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        *err = wr_tls__errf("out of memory");
        return NULL;
    }
    c->refs = 1;
    c->is_server = is_server;
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_x509_crt_init(&c->certs);
    mbedtls_pk_init(&c->key);
    if (tls13) {
        *err = wr_tls__errf("TLS 1.3 suites need OpenSSL's libssl; this build's TLS is %s",
                            wr_tls_backend());
        goto fail;
    }
    int rc = mbedtls_ssl_config_defaults(&c->conf,
                                         is_server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
                                         MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) {
        *err = wr_tls__errf("cannot set up TLS: %s", wr_tls__mbedtls_reason(rc, why, sizeof(why)));
        goto fail;
    }
    if (alpn && (alpn_list(c, alpn) != 0 || mbedtls_ssl_conf_alpn_protocols(&c->conf, c->alpn))) {
        *err = wr_tls__errf("bad ALPN list \"%s\": comma-separated names of 1 to 255 bytes", alpn);
        goto fail;
    }
    mbedtls_ssl_conf_rng(&c->conf, wr_tls__random, NULL);
    mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&c->conf, suite_ids);
    /* No renegotiation, no resumption: a server without a cache or ticket keys resumes nothing,
     * and clients keep no sessions, so tickets would only cost bytes. */
    mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_session_tickets(&c->conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
    return c;
fail:
    wr_tls_ctx_free(c);
    return NULL;
}

wr_tls_ctx_t *wr_tls_ctx_new_server(const wr_tls_server_opts *o, char **err)
{
    char why[160];
    int rc;
    wr_tls_ctx_t *c = ctx_new(1, o->alpn, o->tls13_suites, err);
    if (c == NULL) return NULL;
    mbedtls_ssl_conf_sni(&c->conf, sni_seen, NULL);
    if (o->cert_file || o->key_file) {
        if (o->cert_file == NULL || o->key_file == NULL) {
            *err = wr_tls__errf("a certificate needs its key: give both --cert and --cert-key");
            goto fail;
        }
        rc = mbedtls_x509_crt_parse_file(&c->certs, o->cert_file);
        if (rc != 0) {
            *err = wr_tls__errf("cannot load the certificate %s: %s", o->cert_file,
                                rc > 0 ? "a certificate does not parse"
                                       : wr_tls__mbedtls_reason(rc, why, sizeof(why)));
            goto fail;
        }
        if ((rc = mbedtls_pk_parse_keyfile(&c->key, o->key_file, NULL)) != 0 ||
            (rc = mbedtls_pk_check_pair(&c->certs.pk, &c->key)) != 0) {
            *err = wr_tls__errf("cannot use the key %s with %s: %s", o->key_file, o->cert_file,
                                wr_tls__mbedtls_reason(rc, why, sizeof(why)));
            goto fail;
        }
    } else if (o->self_signed_file) {
        const char *name = o->self_signed_name ? o->self_signed_name : "localhost";
        if (wr_tls_cert_load_or_make(o->self_signed_file, name, &c->certs, &c->key, err) != 0)
            goto fail;
    } else {
        *err = wr_tls__errf("a TLS server needs --cert and --cert-key, or a file to keep a "
                            "self-signed certificate in");
        goto fail;
    }
    if ((rc = mbedtls_ssl_conf_own_cert(&c->conf, &c->certs, &c->key)) != 0) {
        *err = wr_tls__errf("cannot use the certificate: %s",
                            wr_tls__mbedtls_reason(rc, why, sizeof(why)));
        goto fail;
    }
    fp_of(&c->certs, c->fingerprint);
    return c;
fail:
    wr_tls_ctx_free(c);
    return NULL;
}

/* The system's CAs where OpenSSL looks for them: $SSL_CERT_FILE, else Debian's bundle, else the
 * directory. 0, or an mbedTLS error (a positive count: certificates that did not parse). */
static int load_system_cas(mbedtls_x509_crt *certs)
{
    const char *file = getenv("SSL_CERT_FILE");
    int rc = mbedtls_x509_crt_parse_file(certs, file && *file ? file : SYSTEM_CA_FILE);
    if (rc < 0 && !(file && *file)) rc = mbedtls_x509_crt_parse_path(certs, SYSTEM_CA_DIR);
    /* A bundle holds certificates mbedTLS cannot read; the others still count. */
    return rc > 0 && certs->version != 0 ? 0 : rc;
}

wr_tls_ctx_t *wr_tls_ctx_new_client(const wr_tls_client_opts *o, char **err)
{
    const char *why;
    char reason[160];
    int rc;
    if (o->pin && o->ca_file) {
        *err = wr_tls__errf("give --ca or --pin, not both: a pin replaces CA verification");
        return NULL;
    }
    wr_tls_ctx_t *c = ctx_new(0, o->alpn, o->tls13_suites, err);
    if (c == NULL) return NULL;
    if (o->pin) {
        if (wr_tls_pin_parse(o->pin, c->pin, &why) != 0) {
            *err = wr_tls__errf("bad pin \"%s\": %s", o->pin, why);
            goto fail;
        }
        c->pinned = 1;
        /* The chain is not checked (the verify callback compares the leaf with the pin and
         * aborts the handshake on a mismatch), so whatever signed it is fine. */
        mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
        return c;
    }
    if (o->ca_file) {
        rc = mbedtls_x509_crt_parse_file(&c->certs, o->ca_file);
        if (rc != 0) {
            *err = wr_tls__errf("cannot load CA certificates from %s: %s", o->ca_file,
                                rc > 0 ? "a certificate does not parse"
                                       : wr_tls__mbedtls_reason(rc, reason, sizeof(reason)));
            goto fail;
        }
    } else if ((rc = load_system_cas(&c->certs)) != 0) {
        *err = wr_tls__errf("cannot load the system's CA certificates: %s",
                            rc > 0 ? "none parses"
                                   : wr_tls__mbedtls_reason(rc, reason, sizeof(reason)));
        goto fail;
    }
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&c->conf, &c->certs, NULL);
    return c;
fail:
    wr_tls_ctx_free(c);
    return NULL;
}

wr_tls_ctx_t *wr_tls_ctx_ref(wr_tls_ctx_t *c)
{
    c->refs++;
    return c;
}

void wr_tls_ctx_free(wr_tls_ctx_t *c)
{
    if (c == NULL || --c->refs > 0) return;
    mbedtls_ssl_config_free(&c->conf);
    mbedtls_x509_crt_free(&c->certs);
    mbedtls_pk_free(&c->key);
    free(c->alpn);
    free(c->alpn_names);
    free(c);
}

const char *wr_tls_ctx_fingerprint(const wr_tls_ctx_t *c)
{
    return c->is_server ? c->fingerprint : NULL;
}

/* ---- certificate verification (client) ---- */

static int is_ip_literal(const char *s, unsigned char out[16], size_t *len)
{
    if (inet_pton(AF_INET, s, out) == 1) {
        *len = 4;
        return 1;
    }
    if (inet_pton(AF_INET6, s, out) == 1) {
        *len = 16;
        return 1;
    }
    return 0;
}

static int self_signed(const mbedtls_x509_crt *crt)
{
    return crt->issuer_raw.len == crt->subject_raw.len &&
           memcmp(crt->issuer_raw.p, crt->subject_raw.p, crt->issuer_raw.len) == 0;
}

/* mbedTLS 2.28 checks names only: an address is looked for among the iPAddress entries of the
 * subjectAltName here, which mbedTLS keeps with their context tag. */
static int has_ip_san(const mbedtls_x509_crt *crt, const unsigned char *ip, size_t len)
{
    for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s && s->buf.p; s = s->next)
        if (s->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && s->buf.len == len &&
            memcmp(s->buf.p, ip, len) == 0)
            return 1;
    return 0;
}

/* Called for each certificate of the chain, its top first. With a pin only the leaf's digest
 * counts; with CAs, the flags mbedTLS found are kept for the error message, and an address is
 * checked. */
static int verify_cert(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    tls_ep_t *t = arg;
    if (!(t->flags & F_VERIFY_SEEN)) {
        t->flags |= F_VERIFY_SEEN;
        t->top_depth = depth;
        if (self_signed(crt)) t->flags |= F_TOP_SELF;
    }
    if (depth == 0) {
        uint8_t d[WR_TLS_FP_DIGEST_LEN];
        wr_tls_cert_digest(crt, d);
        wr_tls_fp_format(d, t->peer_fp);
        if (t->ctx->pinned) {
            if (memcmp(d, t->ctx->pin, sizeof(d)) == 0) {
                *flags = 0;
                return 0;
            }
            t->flags |= F_PIN_MISMATCH;
            /* Not MBEDTLS_ERR_X509_CERT_VERIFY_FAILED: optional verification ignores that. */
            return MBEDTLS_ERR_X509_FATAL_ERROR;
        }
        unsigned char ip[16];
        size_t iplen;
        if (is_ip_literal(t->host, ip, &iplen) && !has_ip_san(crt, ip, iplen))
            *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    }
    t->verify_flags |= *flags;
    return 0;
}

/* OpenSSL's words for the common verification failures, so both backends say the same. */
static const char *verify_words(tls_ep_t *t, char *buf, size_t size)
{
    uint32_t f = t->verify_flags;
    if (f & MBEDTLS_X509_BADCERT_NOT_TRUSTED) {
        if (t->flags & F_TOP_SELF)
            return t->top_depth == 0 ? "self-signed certificate"
                                     : "self-signed certificate in certificate chain";
        return t->top_depth == 0 ? "unable to get local issuer certificate"
                                 : "unable to get issuer certificate";
    }
    if (f & MBEDTLS_X509_BADCERT_EXPIRED) return "certificate has expired";
    if (f & MBEDTLS_X509_BADCERT_FUTURE) return "certificate is not yet valid";
    if (f & MBEDTLS_X509_BADCERT_REVOKED) return "certificate revoked";
    mbedtls_x509_crt_verify_info(buf, size, "", f);
    char *nl = strchr(buf, '\n');
    if (nl) *nl = '\0';
    return buf[0] ? buf : "unknown reason";
}

/* ---- errors ---- */

/* Words for a TLS alert the peer sent (the common ones; RFC 8446 section 6). */
static const char *alert_words(int alert)
{
    switch (alert) {
    case 10:
        return "unexpected message";
    case 20:
        return "bad record mac";
    case 40:
        return "handshake failure";
    case 42:
        return "bad certificate";
    case 43:
        return "unsupported certificate";
    case 45:
        return "certificate expired";
    case 46:
        return "certificate unknown";
    case 47:
        return "illegal parameter";
    case 48:
        return "unknown ca";
    case 49:
        return "access denied";
    case 50:
        return "decode error";
    case 51:
        return "decrypt error";
    case 70:
        return "protocol version";
    case 71:
        return "insufficient security";
    case 80:
        return "internal error";
    case 112:
        return "unrecognized name";
    case 120:
        return "no application protocol";
    default:
        return NULL;
    }
}

/* What went wrong, in the OpenSSL backend's words where there are any. */
static char *failure_words(tls_ep_t *t, const char *what, int rc)
{
    char why[160];
    const char *reason;
    switch (rc) {
    case MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION:
        reason = "unsupported protocol";
        break;
    case MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN:
        reason = "no shared cipher";
        break;
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: {
        int alert = t->ssl.in_msg ? t->ssl.in_msg[1] : -1;
        const char *w = alert_words(alert);
        if (w)
            snprintf(why, sizeof(why), "the peer sent the alert \"%s\"", w);
        else
            snprintf(why, sizeof(why), "the peer sent alert %d", alert);
        reason = why;
        break;
    }
    default:
        reason = wr_tls__mbedtls_reason(rc, why, sizeof(why));
    }
    return wr_tls__errf("%s: %s", what, reason);
}

static char *handshake_error(tls_ep_t *t, int rc)
{
    const char *host = t->host[0] ? t->host : "the server";
    char buf[256];
    if (t->flags & F_PIN_MISMATCH) {
        char pin[WR_TLS_FP_TEXT_LEN];
        wr_tls_fp_format(t->ctx->pin, pin);
        return wr_tls__errf("certificate of %s does not match the pin %s, it is %s", host, pin,
                            t->peer_fp);
    }
    if (!t->ctx->is_server && rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        /* OpenSSL's order: the chain's trust, then the name, then the dates. */
        if ((t->verify_flags &
             (MBEDTLS_X509_BADCERT_NOT_TRUSTED | MBEDTLS_X509_BADCERT_CN_MISMATCH)) ==
            MBEDTLS_X509_BADCERT_CN_MISMATCH)
            return wr_tls__errf("certificate verify failed: the certificate is not for %s", host);
        return wr_tls__errf("certificate verify failed: %s; use --ca or --pin",
                            verify_words(t, buf, sizeof(buf)));
    }
    return failure_words(t, "TLS handshake failed", rc);
}

/* ---- the engine ---- */

static int engine_handshake(wr_tls_pipe_t *p, char **err)
{
    tls_ep_t *t = (tls_ep_t *)p;
    if (t->flags & F_NO_HOST) {
        *err = wr_tls__errf("no host name to verify the relay's certificate against; use --pin");
        return UV_EINVAL;
    }
    int r = mbedtls_ssl_handshake(&t->ssl);
    if (r == MBEDTLS_ERR_SSL_WANT_READ) return 0;
    if (r != 0) {
        *err = handshake_error(t, r);
        return UV_EPROTO;
    }
    if (t->peer_fp[0] == '\0' && mbedtls_ssl_get_peer_cert(&t->ssl))
        fp_of(mbedtls_ssl_get_peer_cert(&t->ssl), t->peer_fp);
    return 1;
}

static int engine_encrypt(wr_tls_pipe_t *p, const char *data, size_t len, char **err)
{
    tls_ep_t *t = (tls_ep_t *)p;
    /* One record per call, at most 16 KiB each; io_send takes all of it. */
    while (len > 0) {
        int n = mbedtls_ssl_write(&t->ssl, (const unsigned char *)data, len);
        if (n <= 0) {
            *err = failure_words(t, "TLS write failed", n);
            return UV_EPROTO;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static long engine_decrypt(wr_tls_pipe_t *p, char *buf, size_t size, char **err)
{
    tls_ep_t *t = (tls_ep_t *)p;
    int r = mbedtls_ssl_read(&t->ssl, (unsigned char *)buf, size);
    if (r > 0) return r;
    if (r == MBEDTLS_ERR_SSL_WANT_READ) return 0;
    /* 0: the transport ended without close_notify, which io_recv never says; taken as one. */
    if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || r == 0) return WR_TLS_PEER_CLOSED;
    *err = failure_words(t, "TLS failed", r);
    return -2;
}

static void engine_close_notify(wr_tls_pipe_t *p)
{
    mbedtls_ssl_close_notify(&((tls_ep_t *)p)->ssl);
}

static int engine_cut_short(wr_tls_pipe_t *p)
{
    tls_ep_t *t = (tls_ep_t *)p;
    return t->ssl.in_left > 0 || mbedtls_ssl_check_pending(&t->ssl);
}

static void engine_destroy(wr_tls_pipe_t *p)
{
    tls_ep_t *t = (tls_ep_t *)p;
    mbedtls_ssl_free(&t->ssl);
    wr_tls_ctx_free(t->ctx);
    free(t);
}

static const wr_tls_engine engine = {
    .handshake = engine_handshake,
    .encrypt = engine_encrypt,
    .decrypt = engine_decrypt,
    .close_notify = engine_close_notify,
    .cut_short = engine_cut_short,
    .destroy = engine_destroy,
};

/* SNI and the name the certificate must carry (CA verification only; an address is checked by
 * verify_cert). */
static int set_host(tls_ep_t *t, const char *host)
{
    unsigned char ip[16];
    size_t iplen;
    if (host == NULL || *host == '\0') {
        if (!t->ctx->pinned) t->flags |= F_NO_HOST;
        return 1;
    }
    if (strlen(host) >= sizeof(t->host)) return 0;
    strcpy(t->host, host);
    /* RFC 6066: SNI carries host names, never addresses. */
    if (is_ip_literal(host, ip, &iplen)) return 1;
    return mbedtls_ssl_set_hostname(&t->ssl, host) == 0;
}

wr_endpoint_t *wr_tls_endpoint_new(uv_loop_t *loop, wr_tls_ctx_t *ctx, wr_endpoint_t *inner,
                                   const char *sni_host, const char *already, size_t len,
                                   wr_tls_handshake_cb on_handshake, void *data)
{
    tls_ep_t *t = calloc(1, sizeof(*t));
    if (t == NULL) return NULL;
    t->ctx = ctx;
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &ctx->conf) != 0) goto fail;
    mbedtls_ssl_set_bio(&t->ssl, t, io_send, io_recv, NULL);
    if (!ctx->is_server) {
        mbedtls_ssl_set_verify(&t->ssl, verify_cert, t);
        if (!set_host(t, sni_host)) goto fail;
    }
    if (wr_tls__pipe_hold(&t->pipe, already, len) != 0) goto fail;
    wr_tls_ctx_ref(ctx);
    wr_tls__pipe_start(&t->pipe, loop, &engine, inner, on_handshake, data);
    return &t->pipe.base;
fail:
    mbedtls_ssl_free(&t->ssl);
    free(t);
    return NULL;
}

int wr_tls_endpoint_info(wr_endpoint_t *ep, wr_tls_info *out)
{
    tls_ep_t *t = (tls_ep_t *)wr_tls__pipe_ready(ep);
    if (t == NULL) return UV_EINVAL;
    out->version = mbedtls_ssl_get_version(&t->ssl);
    const char *name = mbedtls_ssl_get_ciphersuite(&t->ssl);
    int id = name ? mbedtls_ssl_get_ciphersuite_id(name) : 0;
    out->cipher = name ? name : "";
    for (size_t i = 0; i < N_SUITES; i++)
        if (suites[i].id == id) out->cipher = suites[i].name;
    const char *alpn = mbedtls_ssl_get_alpn_protocol(&t->ssl);
    snprintf(out->alpn, sizeof(out->alpn), "%s", alpn ? alpn : "");
    unsigned char ip[16];
    size_t iplen;
    const char *sni = t->ctx->is_server                    ? t->sni
                      : is_ip_literal(t->host, ip, &iplen) ? ""
                                                           : t->host;
    snprintf(out->sni, sizeof(out->sni), "%s", sni);
    memcpy(out->peer_fingerprint, t->peer_fp, sizeof(t->peer_fp));
    return 0;
}

const char *wr_tls_backend(void)
{
    return MBEDTLS_VERSION_STRING_FULL;
}
#endif
