/* The TLS carrier on OpenSSL's libssl: the backend when the build finds libssl 3.0 or newer. The
 * endpoint around it is the pipe both backends share (wr_tls_pipe.c); OpenSSL reads and writes
 * through it with a small BIO. */
#include "wr_tls_pipe.h"

#include <stdlib.h>
#include <string.h>

#ifdef WR_HAVE_LIBSSL
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 has nothing else). */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct wr_tls_ctx {
    SSL_CTX *ssl;
    unsigned refs;
    int is_server;
    int pinned;
    uint8_t pin[WR_TLS_FP_DIGEST_LEN];
    unsigned char *alpn; /* wire format: length-prefixed names */
    unsigned alpn_len;
    char fingerprint[WR_TLS_FP_TEXT_LEN];
};

enum {
    F_PIN_MISMATCH = 1u << 0,
    F_NO_HOST = 1u << 1, /* a client verifying against CAs was given no name to check */
};

typedef struct tls_ep {
    wr_tls_pipe_t pipe; /* first: the endpoint */
    wr_tls_ctx_t *ctx;
    SSL *ssl;
    unsigned flags;
    char host[256]; /* client: the name sent as SNI and verified */
    char peer_fp[WR_TLS_FP_TEXT_LEN];
} tls_ep_t;

/* ---- the BIO between OpenSSL and the pipe ---- */

static int bio_write_ex(BIO *bio, const char *data, size_t len, size_t *written)
{
    tls_ep_t *t = BIO_get_data(bio);
    if (wr_tls__pipe_put(&t->pipe, data, len) != 0) return 0;
    *written = len;
    return 1;
}

static int bio_read_ex(BIO *bio, char *buf, size_t len, size_t *readbytes)
{
    tls_ep_t *t = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    *readbytes = wr_tls__pipe_take(&t->pipe, buf, len);
    if (*readbytes > 0) return 1;
    BIO_set_retry_read(bio);
    return 0;
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH;
}

static int bio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

/* One method for the process: BIO type indexes are few (BIO_get_new_index stops at 255). */
static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "warren endpoint");
    if (m == NULL || !BIO_meth_set_write_ex(m, bio_write_ex) ||
        !BIO_meth_set_read_ex(m, bio_read_ex) || !BIO_meth_set_ctrl(m, bio_ctrl) ||
        !BIO_meth_set_create(m, bio_create)) {
        BIO_meth_free(m);
        return;
    }
    bio_method = m;
}

/* ---- context ---- */

/* "h2,http/1.1" to ALPN's wire format. */
static int alpn_wire(const char *list, unsigned char **out, unsigned *out_len)
{
    size_t len = strlen(list);
    unsigned char *w = malloc(len + 1);
    size_t n = 0;
    if (w == NULL || len == 0 || len > 1024) goto bad;
    for (const char *p = list;;) {
        const char *end = strchr(p, ',');
        size_t l = end ? (size_t)(end - p) : strlen(p);
        if (l == 0 || l > 255) goto bad;
        w[n++] = (unsigned char)l;
        memcpy(w + n, p, l);
        n += l;
        if (end == NULL) break;
        p = end + 1;
    }
    *out = w;
    *out_len = (unsigned)n;
    return 0;
bad:
    free(w);
    return -1;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    wr_tls_ctx_t *c = arg;
    unsigned char *sel;
    /* The server's order wins. No common protocol is not fatal: the carrier works without. */
    if (SSL_select_next_proto(&sel, outlen, c->alpn, c->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static void fp_of(X509 *cert, char out[WR_TLS_FP_TEXT_LEN])
{
    uint8_t d[WR_TLS_FP_DIGEST_LEN];
    if (cert && wr_tls_cert_digest(cert, d) == 0)
        wr_tls_fp_format(d, out);
    else
        out[0] = '\0';
}

/* Replaces chain verification when a pin is set: only the leaf's digest counts. */
static int pin_verify(X509_STORE_CTX *xs, void *arg)
{
    wr_tls_ctx_t *c = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    tls_ep_t *t = SSL_get_app_data(ssl);
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    uint8_t d[WR_TLS_FP_DIGEST_LEN];
    if (leaf == NULL || wr_tls_cert_digest(leaf, d) != 0) return 0;
    wr_tls_fp_format(d, t->peer_fp);
    if (memcmp(d, c->pin, sizeof(d)) == 0) return 1;
    t->flags |= F_PIN_MISMATCH;
    X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
    return 0;
}

static wr_tls_ctx_t *ctx_new(int is_server, const char *alpn, const char *suites, char **err)
{
    wr_tls_ctx_t *c = calloc(1, sizeof(*c));
    ERR_clear_error();
    if (c == NULL) {
        *err = wr_tls__errf("out of memory");
        return NULL;
    }
    c->refs = 1;
    c->is_server = is_server;
    c->ssl = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
    pthread_once(&bio_once, bio_method_init);
    if (c->ssl == NULL || bio_method == NULL ||
        !SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(c->ssl, TLS12_CIPHERS)) {
        *err = wr_tls__errf("cannot set up TLS: %s", wr_tls__ssl_reason());
        goto fail;
    }
    if (suites && !SSL_CTX_set_ciphersuites(c->ssl, suites)) {
        *err = wr_tls__errf("no usable TLS 1.3 suite in \"%s\"", suites);
        goto fail;
    }
    if (alpn && alpn_wire(alpn, &c->alpn, &c->alpn_len) != 0) {
        *err = wr_tls__errf("bad ALPN list \"%s\": comma-separated names of 1 to 255 bytes", alpn);
        goto fail;
    }
    /* No resumption: clients keep no sessions, so tickets would only cost bytes. */
    SSL_CTX_set_options(c->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(c->ssl, 0);
    /* Lets OpenSSL take whole chunks from the BIO instead of a header and a body per record. */
    SSL_CTX_set_read_ahead(c->ssl, 1);
    /* An idle connection then holds no record buffers (about 34 KiB otherwise); what it costs is
     * a malloc per record batch, small beside the AEAD of 16 KiB records. */
    SSL_CTX_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
    return c;
fail:
    wr_tls_ctx_free(c);
    return NULL;
}

wr_tls_ctx_t *wr_tls_ctx_new_server(const wr_tls_server_opts *o, char **err)
{
    wr_tls_ctx_t *c = ctx_new(1, o->alpn, o->tls13_suites, err);
    if (c == NULL) return NULL;
    if (c->alpn) SSL_CTX_set_alpn_select_cb(c->ssl, alpn_select, c);
    if (o->cert_file || o->key_file) {
        if (o->cert_file == NULL || o->key_file == NULL) {
            *err = wr_tls__errf("a certificate needs its key: give both --cert and --cert-key");
            goto fail;
        }
        if (SSL_CTX_use_certificate_chain_file(c->ssl, o->cert_file) != 1) {
            *err = wr_tls__errf("cannot load the certificate %s: %s", o->cert_file,
                                wr_tls__ssl_reason());
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(c->ssl, o->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(c->ssl) != 1) {
            *err = wr_tls__errf("cannot use the key %s with %s: %s", o->key_file, o->cert_file,
                                wr_tls__ssl_reason());
            goto fail;
        }
    } else if (o->self_signed_file) {
        X509 *x;
        EVP_PKEY *k;
        const char *name = o->self_signed_name ? o->self_signed_name : "localhost";
        if (wr_tls_cert_load_or_make(o->self_signed_file, name, &x, &k, err) != 0) goto fail;
        int ok = SSL_CTX_use_certificate(c->ssl, x) == 1 && SSL_CTX_use_PrivateKey(c->ssl, k) == 1;
        X509_free(x);
        EVP_PKEY_free(k);
        if (!ok) {
            *err = wr_tls__errf("cannot use the certificate in %s: %s", o->self_signed_file,
                                wr_tls__ssl_reason());
            goto fail;
        }
    } else {
        *err = wr_tls__errf("a TLS server needs --cert and --cert-key, or a file to keep a "
                            "self-signed certificate in");
        goto fail;
    }
    fp_of(SSL_CTX_get0_certificate(c->ssl), c->fingerprint);
    return c;
fail:
    wr_tls_ctx_free(c);
    return NULL;
}

wr_tls_ctx_t *wr_tls_ctx_new_client(const wr_tls_client_opts *o, char **err)
{
    const char *why;
    if (o->pin && o->ca_file) {
        *err = wr_tls__errf("give --ca or --pin, not both: a pin replaces CA verification");
        return NULL;
    }
    wr_tls_ctx_t *c = ctx_new(0, o->alpn, o->tls13_suites, err);
    if (c == NULL) return NULL;
    if (c->alpn && SSL_CTX_set_alpn_protos(c->ssl, c->alpn, c->alpn_len) != 0) {
        *err = wr_tls__errf("cannot set ALPN: %s", wr_tls__ssl_reason());
        goto fail;
    }
    SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
    if (o->pin) {
        if (wr_tls_pin_parse(o->pin, c->pin, &why) != 0) {
            *err = wr_tls__errf("bad pin \"%s\": %s", o->pin, why);
            goto fail;
        }
        c->pinned = 1;
        SSL_CTX_set_cert_verify_callback(c->ssl, pin_verify, c);
    } else if (o->ca_file) {
        if (SSL_CTX_load_verify_locations(c->ssl, o->ca_file, NULL) != 1) {
            *err = wr_tls__errf("cannot load CA certificates from %s: %s", o->ca_file,
                                wr_tls__ssl_reason());
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(c->ssl) != 1) {
        *err = wr_tls__errf("cannot load the system's CA certificates: %s", wr_tls__ssl_reason());
        goto fail;
    }
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
    SSL_CTX_free(c->ssl);
    free(c->alpn);
    free(c);
}

const char *wr_tls_ctx_fingerprint(const wr_tls_ctx_t *c)
{
    return c->is_server ? c->fingerprint : NULL;
}

/* ---- errors ---- */

static char *handshake_error(tls_ep_t *t)
{
    const char *host = t->host[0] ? t->host : "the server";
    if (t->flags & F_PIN_MISMATCH) {
        char pin[WR_TLS_FP_TEXT_LEN];
        wr_tls_fp_format(t->ctx->pin, pin);
        return wr_tls__errf("certificate of %s does not match the pin %s, it is %s", host, pin,
                            t->peer_fp);
    }
    long vr = t->ctx->is_server ? X509_V_OK : SSL_get_verify_result(t->ssl);
    if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
        return wr_tls__errf("certificate verify failed: the certificate is not for %s", host);
    if (vr != X509_V_OK)
        return wr_tls__errf("certificate verify failed: %s; use --ca or --pin",
                            X509_verify_cert_error_string(vr));
    return wr_tls__errf("TLS handshake failed: %s", wr_tls__ssl_reason());
}

/* ---- the engine ---- */

static int engine_handshake(wr_tls_pipe_t *p, char **err)
{
    tls_ep_t *t = (tls_ep_t *)p;
    if (t->flags & F_NO_HOST) {
        *err = wr_tls__errf("no host name to verify the relay's certificate against; use --pin");
        return UV_EINVAL;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
        if (SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_READ) return 0;
        *err = handshake_error(t);
        return UV_EPROTO;
    }
    if (t->peer_fp[0] == '\0') fp_of(SSL_get0_peer_certificate(t->ssl), t->peer_fp);
    return 1;
}

static int engine_encrypt(wr_tls_pipe_t *p, const char *data, size_t len, char **err)
{
    tls_ep_t *t = (tls_ep_t *)p;
    size_t n;
    ERR_clear_error();
    if (SSL_write_ex(t->ssl, data, len, &n) == 1) return 0;
    *err = wr_tls__errf("TLS write failed: %s", wr_tls__ssl_reason());
    return UV_EPROTO;
}

static long engine_decrypt(wr_tls_pipe_t *p, char *buf, size_t size, char **err)
{
    tls_ep_t *t = (tls_ep_t *)p;
    size_t got;
    ERR_clear_error();
    if (SSL_read_ex(t->ssl, buf, size, &got) == 1) return (long)got;
    int e = SSL_get_error(t->ssl, 0);
    if (e == SSL_ERROR_WANT_READ) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) return WR_TLS_PEER_CLOSED;
    *err = wr_tls__errf("TLS failed: %s", wr_tls__ssl_reason());
    return -2;
}

static void engine_close_notify(wr_tls_pipe_t *p)
{
    ERR_clear_error();
    SSL_shutdown(((tls_ep_t *)p)->ssl);
}

static int engine_cut_short(wr_tls_pipe_t *p)
{
    return SSL_has_pending(((tls_ep_t *)p)->ssl);
}

static void engine_destroy(wr_tls_pipe_t *p)
{
    tls_ep_t *t = (tls_ep_t *)p;
    SSL_free(t->ssl);
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

/* ---- endpoint ---- */

static int is_ip_literal(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* SNI and the name the certificate must carry (CA verification only). */
static int set_host(tls_ep_t *t, const char *host)
{
    if (host == NULL || *host == '\0') {
        if (!t->ctx->pinned) t->flags |= F_NO_HOST;
        return 1;
    }
    if (strlen(host) >= sizeof(t->host)) return 0;
    strcpy(t->host, host);
    int ip = is_ip_literal(host);
    /* RFC 6066: SNI carries host names, never addresses. */
    if (!ip && !SSL_set_tlsext_host_name(t->ssl, host)) return 0;
    if (t->ctx->pinned) return 1;
    if (ip) return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) == 1;
    SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(t->ssl, host) == 1;
}

wr_endpoint_t *wr_tls_endpoint_new(uv_loop_t *loop, wr_tls_ctx_t *ctx, wr_endpoint_t *inner,
                                   const char *sni_host, const char *already, size_t len,
                                   wr_tls_handshake_cb on_handshake, void *data)
{
    tls_ep_t *t = calloc(1, sizeof(*t));
    BIO *bio = NULL;
    if (t == NULL) return NULL;
    t->ctx = ctx;
    t->ssl = SSL_new(ctx->ssl);
    bio = BIO_new(bio_method);
    if (t->ssl == NULL || bio == NULL) goto fail;
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio);
    bio = NULL;
    SSL_set_app_data(t->ssl, t);
    if (ctx->is_server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (!set_host(t, sni_host)) goto fail;
    }
    if (wr_tls__pipe_hold(&t->pipe, already, len) != 0) goto fail;
    wr_tls_ctx_ref(ctx);
    wr_tls__pipe_start(&t->pipe, loop, &engine, inner, on_handshake, data);
    return &t->pipe.base;
fail:
    BIO_free(bio);
    SSL_free(t->ssl);
    free(t);
    return NULL;
}

int wr_tls_endpoint_info(wr_endpoint_t *ep, wr_tls_info *out)
{
    tls_ep_t *t = (tls_ep_t *)wr_tls__pipe_ready(ep);
    const unsigned char *alpn;
    unsigned alpn_len;
    if (t == NULL) return UV_EINVAL;
    out->version = SSL_get_version(t->ssl);
    out->cipher = SSL_get_cipher_name(t->ssl);
    SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
    if (alpn == NULL || alpn_len >= sizeof(out->alpn)) alpn_len = 0;
    if (alpn_len) memcpy(out->alpn, alpn, alpn_len);
    out->alpn[alpn_len] = '\0';
    const char *sni = t->ctx->is_server ? SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name)
                      : is_ip_literal(t->host) ? NULL
                                               : t->host;
    snprintf(out->sni, sizeof(out->sni), "%s", sni ? sni : "");
    memcpy(out->peer_fingerprint, t->peer_fp, sizeof(t->peer_fp));
    return 0;
}

static char backend_name[48];
static pthread_once_t backend_once = PTHREAD_ONCE_INIT;

static void backend_name_init(void)
{
    snprintf(backend_name, sizeof(backend_name), "OpenSSL %s",
             OpenSSL_version(OPENSSL_VERSION_STRING));
}

const char *wr_tls_backend(void)
{
    pthread_once(&backend_once, backend_name_init);
    return backend_name;
}
#endif
