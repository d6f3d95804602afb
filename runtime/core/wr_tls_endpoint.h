/* The TLS carrier: a wr_endpoint that runs TLS over another endpoint, so the secure session,
 * WebSocket or HTTP can ride TLS over TCP, or anything else, unchanged.
 *
 * Two backends behind this one interface (runtime/core/tls/): OpenSSL's libssl (3.0 or newer)
 * when the build finds it, mbedTLS 2.28 otherwise. AEAD suites only (TLS 1.2: ECDHE with AES-GCM
 * or ChaCha20-Poly1305; TLS 1.3, OpenSSL only: OpenSSL's defaults), no renegotiation, no session
 * resumption. The library never owns a socket: the endpoint feeds it the inner endpoint's chunks
 * and hands the records it writes to the inner endpoint in 64 KiB chunks, flushed once per loop
 * iteration.
 *
 * With mbedTLS the versions are TLS 1.2 only, tls13_suites must be NULL, and a server whose ALPN
 * list has nothing in common with a client's offer refuses the client (no_application_protocol,
 * which RFC 7301 allows) where OpenSSL goes on without ALPN. Error strings (char **err) are
 * malloc'd; the caller frees them. Everything here runs on one loop thread. */
#ifndef WR_TLS_ENDPOINT_H
#define WR_TLS_ENDPOINT_H

#include "wr_endpoint.h"
#include "wr_tls_cert.h"

#include <uv.h>

typedef struct wr_tls_ctx wr_tls_ctx_t;

typedef struct wr_tls_server_opts {
    /* A PEM certificate chain and its key (--cert FILE --cert-key FILE), or else: */
    const char *cert_file;
    const char *key_file;
    /* a self-signed certificate kept (key and certificate, mode 0600) in this file, made at
     * first start with self_signed_name (default "localhost") as its CN and subjectAltName. */
    const char *self_signed_file;
    const char *self_signed_name;
    /* Protocols the server accepts, in order of preference, comma-separated ("http/1.1").
     * NULL: no ALPN. A client offering none of them goes on without ALPN. */
    const char *alpn;
    /* TLS 1.3 suites in OpenSSL's syntax; NULL: OpenSSL's default list (mbedTLS: must be NULL). */
    const char *tls13_suites;
} wr_tls_server_opts;

typedef struct wr_tls_client_opts {
    /* Verify the server against this PEM file of CAs (--ca FILE) instead of the system's. */
    const char *ca_file;
    /* Or accept exactly the certificate with this fingerprint (--pin sha256:...), whatever signed
     * it and whatever name it has: a self-signed relay works. Not together with ca_file. */
    const char *pin;
    const char *alpn;         /* offered, comma-separated; NULL: none */
    const char *tls13_suites; /* as for the server; the server takes the client's order */
} wr_tls_client_opts;

wr_tls_ctx_t *wr_tls_ctx_new_server(const wr_tls_server_opts *o, char **err);
wr_tls_ctx_t *wr_tls_ctx_new_client(const wr_tls_client_opts *o, char **err);
/* Another reference, for an owner that may outlive the one that made it (a relay, a dialer). */
wr_tls_ctx_t *wr_tls_ctx_ref(wr_tls_ctx_t *ctx);
/* Drops a reference; endpoints keep theirs until they are closed. */
void wr_tls_ctx_free(wr_tls_ctx_t *ctx);
/* The server's certificate fingerprint (see wr_tls_cert.h); NULL for a client context. */
const char *wr_tls_ctx_fingerprint(const wr_tls_ctx_t *ctx);

/* status 0 once the handshake is done, else a libuv code (UV_EPROTO for TLS failures, the inner
 * endpoint's error, UV_EOF when the peer left during the handshake) with err saying what went
 * wrong in words the CLI can show ("certificate verify failed: self-signed certificate; use --ca
 * or --pin"). After a failure the endpoint only waits to be closed; on_error does not fire. */
typedef void (*wr_tls_handshake_cb)(wr_endpoint_t *ep, int status, const char *err, void *data);

/* Wraps inner (connected, not reading, callbacks unset), which the endpoint owns from now on and
 * closes when it is closed. The role (client or server) is the context's. A client sends
 * sni_host as SNI (not when it is an IP address) and, verifying against CAs, checks the
 * certificate is for that name or address; a server ignores it. already[0..len) are bytes read
 * from inner before (a sniffed ClientHello): TLS reads them first. The handshake starts at once;
 * on_handshake (with data, also the initial ep->data) reports its end. Writes made before it are
 * queued. NULL when out of memory: inner is then still the caller's. */
wr_endpoint_t *wr_tls_endpoint_new(uv_loop_t *loop, wr_tls_ctx_t *ctx, wr_endpoint_t *inner,
                                   const char *sni_host, const char *already, size_t len,
                                   wr_tls_handshake_cb on_handshake, void *data);

typedef struct wr_tls_info {
    const char *version;                       /* "TLSv1.3" */
    const char *cipher;                        /* OpenSSL's name, whatever the backend */
    char alpn[256];                            /* negotiated protocol, "" when none */
    char sni[256];                             /* the name the client asked for, "" when none */
    char peer_fingerprint[WR_TLS_FP_TEXT_LEN]; /* the peer's certificate, "" when it sent none */
} wr_tls_info;

/* What a status display shows. 0, or UV_EINVAL when ep is not a TLS endpoint or its handshake is
 * not done. */
int wr_tls_endpoint_info(wr_endpoint_t *ep, wr_tls_info *out);
/* Words for the last failure (the handshake's, or the one on_error reported), or NULL. */
const char *wr_tls_endpoint_error(wr_endpoint_t *ep);
/* The TLS library in use, with its version: "OpenSSL 3.0.13" or "mbed TLS 2.28.3". */
const char *wr_tls_backend(void);
/* The wrapped endpoint (addresses, socket options); NULL when ep is not a TLS endpoint. */
wr_endpoint_t *wr_tls_endpoint_inner(wr_endpoint_t *ep);

#endif
