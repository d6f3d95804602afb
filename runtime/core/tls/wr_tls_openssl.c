/* The TLS carrier on OpenSSL's libssl: the backend when the build finds libssl 3.0 or newer. */
#include "wr_tls_endpoint.h"

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
    ST_HS_DONE = 1u << 0,
    ST_HS_FAILED = 1u << 1,
    ST_INNER_READING = 1u << 2,
    ST_INNER_EOF = 1u << 3,
    ST_NOTIFY_SENT = 1u << 4, /* close_notify written and inner shut down */
    ST_ERR_PENDING = 1u << 5, /* a failure waits for the tick to be reported */
    ST_PIN_MISMATCH = 1u << 6,
    ST_NO_HOST = 1u << 7, /* a client verifying against CAs was given no name to check */
};

/* Plaintext accepted by write() and not yet encrypted (before the handshake, or while the inner
 * endpoint is over its high water). */
typedef struct pending_write {
    struct pending_write *next;
    wr_buf_t *buf;
    const char *base;
    size_t len;
} pending_write;

typedef struct tls_ep {
    wr_endpoint_t base;
    wr_endpoint_t *inner;
    wr_tls_ctx_t *ctx;
    SSL *ssl;
    uv_idle_t tick; /* flushes records, reports failures, resumes reading: never inside an op */
    wr_tls_handshake_cb on_handshake;
    void *hs_data;
    unsigned state;
    int pending_err;
    int closes; /* inner endpoint and tick handle still open */
    /* Ciphertext for OpenSSL to read: held bytes first, then the inner chunk being delivered. */
    wr_buf_t *held;
    const char *held_base;
    size_t held_len;
    const char *cur_base;
    size_t cur_len;
    /* Records OpenSSL wrote, gathered into one chunk for the inner endpoint. */
    wr_buf_t *out;
    size_t out_len;
    pending_write *wq_head, **wq_tail;
    char *err;
    char host[256]; /* client: the name sent as SNI and verified */
    char peer_fp[WR_TLS_FP_TEXT_LEN];
} tls_ep_t;

static const wr_endpoint_cbs_t no_cbs;
static const wr_endpoint_ops_t tls_ops;

static void schedule(tls_ep_t *t);

/* ---- the BIO between OpenSSL and the inner endpoint ---- */

static void flush_out(tls_ep_t *t);

static int bio_write_ex(BIO *bio, const char *data, size_t len, size_t *written)
{
    tls_ep_t *t = BIO_get_data(bio);
    size_t left = len;
    while (left > 0) {
        if (t->out == NULL) {
            t->out = wr_buf_get();
            if (t->out == NULL) return 0;
            t->out_len = 0;
        }
        size_t n = t->out->size - t->out_len;
        if (n > left) n = left;
        memcpy(t->out->data + t->out_len, data, n);
        t->out_len += n;
        data += n;
        left -= n;
        if (t->out_len == t->out->size) flush_out(t);
    }
    if (t->out_len > 0) schedule(t);
    *written = len;
    return 1;
}

static size_t take(char **dst, size_t *want, const char **src, size_t *have)
{
    size_t n = *want < *have ? *want : *have;
    memcpy(*dst, *src, n);
    *dst += n;
    *want -= n;
    *src += n;
    *have -= n;
    return n;
}

static int bio_read_ex(BIO *bio, char *buf, size_t len, size_t *readbytes)
{
    tls_ep_t *t = BIO_get_data(bio);
    size_t n = 0;
    BIO_clear_retry_flags(bio);
    if (t->held_len > 0) {
        n += take(&buf, &len, &t->held_base, &t->held_len);
        if (t->held_len == 0) {
            wr_buf_release(t->held);
            t->held = NULL;
        }
    }
    if (len > 0 && t->cur_len > 0) n += take(&buf, &len, &t->cur_base, &t->cur_len);
    *readbytes = n;
    if (n > 0) return 1;
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
    t->state |= ST_PIN_MISMATCH;
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

/* ---- endpoint ---- */

static void tick_cb(uv_idle_t *h);

static void schedule(tls_ep_t *t)
{
    if (!(t->base.flags & WR_EP_CLOSING)) uv_idle_start(&t->tick, tick_cb);
}

/* Records a failure (text malloc'd or NULL) for the tick to report: the handshake's, or on_error
 * once. Ops may fail, so nothing is reported from here. */
static void fail(tls_ep_t *t, int err, char *text)
{
    wr_endpoint_t *ep = &t->base;
    if ((ep->flags & (WR_EP_ERRORED | WR_EP_CLOSING)) || (t->state & ST_HS_FAILED)) {
        free(text);
        return;
    }
    ep->flags |= WR_EP_ERRORED;
    if (!(t->state & ST_HS_DONE)) t->state |= ST_HS_FAILED;
    free(t->err);
    t->err = text;
    t->pending_err = err;
    t->state |= ST_ERR_PENDING;
    schedule(t);
}

static void flush_out(tls_ep_t *t)
{
    wr_buf_t *b = t->out;
    if (b == NULL) return;
    t->out = NULL;
    if (t->out_len > 0 && !(t->inner->flags & WR_EP_CLOSING)) {
        int rc = wr_endpoint_write(t->inner, b, b->data, t->out_len);
        if (rc < 0) fail(t, rc, wr_tls__errf("cannot send: %s", uv_strerror(rc)));
    }
    wr_buf_release(b);
}

static void sync_inner_reading(tls_ep_t *t)
{
    wr_endpoint_t *ep = &t->base;
    int want = !(ep->flags & (WR_EP_CLOSING | WR_EP_ERRORED | WR_EP_EOF)) &&
               !(t->state & ST_INNER_EOF) && t->held_len == 0 &&
               (!(t->state & ST_HS_DONE) || (ep->flags & WR_EP_READING));
    if (want && !(t->state & ST_INNER_READING)) {
        int rc = wr_endpoint_read_start(t->inner);
        if (rc < 0)
            fail(t, rc, wr_tls__errf("cannot read: %s", uv_strerror(rc)));
        else
            t->state |= ST_INNER_READING;
    } else if (!want && (t->state & ST_INNER_READING)) {
        wr_endpoint_read_stop(t->inner);
        t->state &= ~ST_INNER_READING;
    }
}

static char *handshake_error(tls_ep_t *t)
{
    const char *host = t->host[0] ? t->host : "the server";
    if (t->state & ST_PIN_MISMATCH) {
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

static void handshake_step(tls_ep_t *t)
{
    wr_endpoint_t *ep = &t->base;
    if (t->state & ST_NO_HOST) {
        fail(t, UV_EINVAL,
             wr_tls__errf("no host name to verify the relay's certificate against; use --pin"));
        return;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
        int e = SSL_get_error(t->ssl, r);
        if (e != SSL_ERROR_WANT_READ)
            fail(t, UV_EPROTO, handshake_error(t));
        else if ((t->state & ST_INNER_EOF) && t->held_len == 0 && t->cur_len == 0)
            fail(t, UV_EOF, wr_tls__errf("the connection was closed during the TLS handshake"));
        return;
    }
    t->state |= ST_HS_DONE;
    if (t->peer_fp[0] == '\0') fp_of(SSL_get0_peer_certificate(t->ssl), t->peer_fp);
    if (t->on_handshake) t->on_handshake(ep, 0, NULL, t->hs_data);
}

static void send_close_notify(tls_ep_t *t)
{
    t->state |= ST_NOTIFY_SENT;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    flush_out(t);
    int rc = wr_endpoint_shutdown(t->inner);
    if (rc < 0 && t->base.cbs->on_shutdown) t->base.cbs->on_shutdown(&t->base, rc);
}

static int encrypt(tls_ep_t *t, const char *base, size_t len)
{
    size_t n;
    ERR_clear_error();
    if (SSL_write_ex(t->ssl, base, len, &n) == 1) return 0;
    fail(t, UV_EPROTO, wr_tls__errf("TLS write failed: %s", wr_tls__ssl_reason()));
    return UV_EPROTO;
}

static void pump_write(tls_ep_t *t)
{
    wr_endpoint_t *ep = &t->base;
    while (t->wq_head && !(ep->flags & (WR_EP_CLOSING | WR_EP_ERRORED)) &&
           !wr_endpoint_over_high_water(t->inner)) {
        pending_write *w = t->wq_head;
        t->wq_head = w->next;
        if (t->wq_head == NULL) t->wq_tail = &t->wq_head;
        int rc = encrypt(t, w->base, w->len);
        size_t len = w->len;
        wr_buf_release(w->buf);
        free(w);
        wr_endpoint__queue_done(ep, len, rc == 0); /* may run on_drain, which may write */
    }
    if (t->wq_head == NULL &&
        (ep->flags & (WR_EP_SHUT | WR_EP_CLOSING | WR_EP_ERRORED)) == WR_EP_SHUT &&
        !(t->state & ST_NOTIFY_SENT))
        send_close_notify(t);
}

/* Inner EOF with every byte consumed: the peer's close_notify never came. A half record is a
 * truncation; otherwise the end is taken as an end (the session above authenticates its own). */
static void input_ended(tls_ep_t *t)
{
    wr_endpoint_t *ep = &t->base;
    if (SSL_has_pending(t->ssl)) {
        fail(t, UV_EPROTO, wr_tls__errf("the connection ended in the middle of a TLS record"));
        return;
    }
    ep->flags |= WR_EP_EOF;
    if (ep->cbs->on_eof) ep->cbs->on_eof(ep);
}

static void pump_read(tls_ep_t *t)
{
    wr_endpoint_t *ep = &t->base;
    while ((ep->flags & (WR_EP_READING | WR_EP_CLOSING | WR_EP_EOF | WR_EP_ERRORED)) ==
           WR_EP_READING) {
        wr_buf_t *b = wr_buf_get();
        if (b == NULL) {
            fail(t, UV_ENOMEM, wr_tls__errf("out of memory"));
            return;
        }
        /* Records decrypt one at a time; gather them into one chunk, one on_read. */
        size_t n = 0, got;
        int e = SSL_ERROR_NONE;
        char *err = NULL;
        ERR_clear_error();
        while (n < b->size) {
            if (SSL_read_ex(t->ssl, b->data + n, b->size - n, &got) != 1) {
                e = SSL_get_error(t->ssl, 0);
                break;
            }
            n += got;
        }
        if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_ZERO_RETURN)
            err = wr_tls__errf("TLS failed: %s", wr_tls__ssl_reason());
        if (n > 0) {
            ep->bytes_read += n;
            if (ep->cbs->on_read) ep->cbs->on_read(ep, b, b->data, n);
        }
        wr_buf_release(b);
        if (e == SSL_ERROR_NONE) continue;
        if (ep->flags & WR_EP_CLOSING) {
            free(err);
            return;
        }
        if (err) {
            fail(t, UV_EPROTO, err);
        } else if (!(ep->flags & WR_EP_READING)) {
            /* Paused in on_read: the end, if it came, is still there when reading resumes. */
        } else if (e == SSL_ERROR_ZERO_RETURN) {
            ep->flags |= WR_EP_EOF;
            if (ep->cbs->on_eof) ep->cbs->on_eof(ep);
        } else if ((t->state & ST_INNER_EOF) && t->held_len == 0 && t->cur_len == 0) {
            input_ended(t);
        }
        return;
    }
}

/* Everything that can move: called from the loop only (the tick and the inner callbacks). */
static void progress(tls_ep_t *t)
{
    wr_endpoint_t *ep = &t->base;
    if (!(t->state & (ST_HS_DONE | ST_HS_FAILED))) handshake_step(t);
    if ((t->state & ST_HS_DONE) && !(ep->flags & WR_EP_CLOSING)) pump_write(t);
    if ((t->state & ST_HS_DONE) && !(ep->flags & WR_EP_CLOSING)) pump_read(t);
}

static void tick_cb(uv_idle_t *h)
{
    tls_ep_t *t = h->data;
    wr_endpoint_t *ep = &t->base;
    uv_idle_stop(h);
    progress(t);
    if (ep->flags & WR_EP_CLOSING) return;
    flush_out(t);
    sync_inner_reading(t);
    if (t->state & ST_ERR_PENDING) {
        t->state &= ~ST_ERR_PENDING;
        if (!(t->state & ST_HS_DONE) && t->on_handshake)
            t->on_handshake(ep, t->pending_err, t->err, t->hs_data);
        else if (ep->cbs->on_error)
            ep->cbs->on_error(ep, t->pending_err);
    }
}

/* Keeps what OpenSSL did not read of the inner chunk b (the reader paused). */
static void hold_rest(tls_ep_t *t, wr_buf_t *b)
{
    if (t->held == NULL && !wr_buf_slice_pins_much(b, t->cur_len)) {
        t->held = wr_buf_retain(b);
        t->held_base = t->cur_base;
        t->held_len = t->cur_len;
    } else {
        wr_buf_t *n = wr_buf_new(t->held_len + t->cur_len);
        if (n == NULL) {
            fail(t, UV_ENOMEM, wr_tls__errf("out of memory"));
            return;
        }
        if (t->held_len) memcpy(n->data, t->held_base, t->held_len);
        memcpy(n->data + t->held_len, t->cur_base, t->cur_len);
        if (t->held) wr_buf_release(t->held);
        t->held = n;
        t->held_base = n->data;
        t->held_len += t->cur_len;
    }
    t->cur_len = 0;
}

static void in_read(wr_endpoint_t *in, wr_buf_t *b, const char *base, size_t len)
{
    tls_ep_t *t = in->data;
    if (t->base.flags & WR_EP_CLOSING) return;
    t->cur_base = base;
    t->cur_len = len;
    progress(t);
    if (t->cur_len > 0 && !(t->base.flags & (WR_EP_CLOSING | WR_EP_ERRORED))) hold_rest(t, b);
    t->cur_len = 0;
    if (!(t->base.flags & WR_EP_CLOSING)) sync_inner_reading(t);
}

static void in_eof(wr_endpoint_t *in)
{
    tls_ep_t *t = in->data;
    t->state = (t->state | ST_INNER_EOF) & ~ST_INNER_READING;
    progress(t);
}

static void in_error(wr_endpoint_t *in, int err)
{
    tls_ep_t *t = in->data;
    t->state &= ~ST_INNER_READING;
    fail(t, err,
         wr_tls__errf(t->state & ST_HS_DONE ? "connection failed: %s"
                                            : "connection failed during the TLS handshake: %s",
                      uv_strerror(err)));
}

static void in_drain(wr_endpoint_t *in)
{
    progress(in->data);
}

static void in_shutdown(wr_endpoint_t *in, int status)
{
    tls_ep_t *t = in->data;
    if (!(t->base.flags & WR_EP_CLOSING) && t->base.cbs->on_shutdown)
        t->base.cbs->on_shutdown(&t->base, status);
}

static void maybe_free(tls_ep_t *t)
{
    if (--t->closes > 0) return;
    if (t->base.cbs->on_closed) t->base.cbs->on_closed(&t->base);
    SSL_free(t->ssl);
    if (t->held) wr_buf_release(t->held);
    if (t->out) wr_buf_release(t->out);
    wr_tls_ctx_free(t->ctx);
    free(t->err);
    free(t);
}

static void in_closed(wr_endpoint_t *in)
{
    maybe_free(in->data);
}

static void tick_closed(uv_handle_t *h)
{
    maybe_free(h->data);
}

static const wr_endpoint_cbs_t inner_cbs = {
    .on_read = in_read,
    .on_eof = in_eof,
    .on_error = in_error,
    .on_drain = in_drain,
    .on_shutdown = in_shutdown,
    .on_closed = in_closed,
};

static int tls_read_start(wr_endpoint_t *ep)
{
    if (ep->flags & (WR_EP_CLOSING | WR_EP_EOF)) return UV_EINVAL;
    ep->flags |= WR_EP_READING;
    schedule((tls_ep_t *)ep); /* held bytes and decrypted records go out from the loop */
    return 0;
}

static int tls_read_stop(wr_endpoint_t *ep)
{
    tls_ep_t *t = (tls_ep_t *)ep;
    ep->flags &= ~WR_EP_READING;
    if (!(ep->flags & WR_EP_CLOSING)) sync_inner_reading(t);
    return 0;
}

static int tls_write(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    tls_ep_t *t = (tls_ep_t *)ep;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_SHUT | WR_EP_ERRORED)) return UV_EPIPE;
    if (len == 0) return 0;
    if ((t->state & ST_HS_DONE) && t->wq_head == NULL && !wr_endpoint_over_high_water(t->inner)) {
        int rc = encrypt(t, base, len);
        if (rc == 0) ep->bytes_written += len;
        return rc;
    }
    pending_write *w = malloc(sizeof(*w));
    if (w == NULL) return UV_ENOMEM;
    if (wr_buf_slice_pins_much(b, len)) {
        w->buf = wr_buf_new(len);
        if (w->buf == NULL) {
            free(w);
            return UV_ENOMEM;
        }
        memcpy(w->buf->data, base, len);
        base = w->buf->data;
    } else {
        w->buf = wr_buf_retain(b);
    }
    w->base = base;
    w->len = len;
    w->next = NULL;
    *t->wq_tail = w;
    t->wq_tail = &w->next;
    wr_endpoint__queue_add(ep, len);
    return 0;
}

static int tls_shutdown(wr_endpoint_t *ep)
{
    tls_ep_t *t = (tls_ep_t *)ep;
    if (ep->flags & (WR_EP_CLOSING | WR_EP_ERRORED)) return UV_EPIPE;
    if (ep->flags & WR_EP_SHUT) return UV_EALREADY;
    ep->flags |= WR_EP_SHUT;
    schedule(t); /* close_notify follows the queued writes */
    return 0;
}

static void tls_close(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    tls_ep_t *t = (tls_ep_t *)ep;
    if (ep->flags & WR_EP_CLOSING) return;
    ep->flags |= WR_EP_CLOSING;
    ep->flags &= ~WR_EP_READING;
    if (mode == WR_CLOSE_GRACEFUL) {
        if ((t->state & (ST_HS_DONE | ST_NOTIFY_SENT)) == ST_HS_DONE &&
            !(ep->flags & WR_EP_ERRORED)) {
            ERR_clear_error();
            SSL_shutdown(t->ssl);
        }
        flush_out(t); /* close_notify, or the alert of a failed handshake */
    }
    while (t->wq_head) {
        pending_write *w = t->wq_head;
        t->wq_head = w->next;
        wr_buf_release(w->buf);
        free(w);
    }
    t->wq_tail = &t->wq_head;
    ep->queued = 0;
    uv_idle_stop(&t->tick);
    uv_close((uv_handle_t *)&t->tick, tick_closed);
    wr_endpoint_close(t->inner, mode);
}

static const wr_endpoint_ops_t tls_ops = {
    .kind = "tls",
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .write = tls_write,
    .shutdown = tls_shutdown,
    .close = tls_close,
};

static int is_ip_literal(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* SNI and the name the certificate must carry (CA verification only). */
static int set_host(tls_ep_t *t, const char *host)
{
    if (host == NULL || *host == '\0') {
        if (!t->ctx->pinned) t->state |= ST_NO_HOST;
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
    if (len > 0) {
        t->held = wr_buf_new(len);
        if (t->held == NULL) goto fail;
        memcpy(t->held->data, already, len);
        t->held_base = t->held->data;
        t->held_len = len;
    }
    wr_endpoint__init(&t->base, &tls_ops, &no_cbs);
    t->base.data = data;
    t->inner = inner;
    t->on_handshake = on_handshake;
    t->hs_data = data;
    t->wq_tail = &t->wq_head;
    t->closes = 2;
    wr_tls_ctx_ref(ctx);
    uv_idle_init(loop, &t->tick);
    t->tick.data = t;
    wr_endpoint_set_callbacks(inner, &inner_cbs, t);
    schedule(t); /* the first flight (client) or the already read bytes (server) */
    return &t->base;
fail:
    BIO_free(bio);
    SSL_free(t->ssl);
    if (t->held) wr_buf_release(t->held);
    free(t);
    return NULL;
}

int wr_tls_endpoint_info(wr_endpoint_t *ep, wr_tls_info *out)
{
    tls_ep_t *t = (tls_ep_t *)ep;
    const unsigned char *alpn;
    unsigned alpn_len;
    if (ep->ops != &tls_ops || !(t->state & ST_HS_DONE)) return UV_EINVAL;
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

const char *wr_tls_endpoint_error(wr_endpoint_t *ep)
{
    return ep->ops == &tls_ops ? ((tls_ep_t *)ep)->err : NULL;
}

wr_endpoint_t *wr_tls_endpoint_inner(wr_endpoint_t *ep)
{
    return ep->ops == &tls_ops ? ((tls_ep_t *)ep)->inner : NULL;
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
