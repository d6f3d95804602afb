/* What both TLS backends share (private to runtime/core/tls/): the endpoint around a TLS engine.
 * The pipe holds the ciphertext the engine reads (bytes already read, then the inner chunk being
 * delivered), gathers the records it writes into 64 KiB chunks for the inner endpoint (flushed
 * from the loop), queues plaintext written before the handshake or while the inner endpoint is
 * over its high water, and carries backpressure, half-close, close_notify and failures the same
 * way whatever the library. A backend's endpoint starts with a wr_tls_pipe_t and gives its
 * engine's few operations. */
#ifndef WR_TLS_PIPE_H
#define WR_TLS_PIPE_H

#include "wr_tls_endpoint.h"

typedef struct wr_tls_pipe wr_tls_pipe_t;

/* decrypt's answer when the peer's close_notify came. */
#define WR_TLS_PEER_CLOSED (-1)

typedef struct wr_tls_engine {
    /* Advances the handshake: 1 once done, 0 while it needs more ciphertext, or a libuv code with
     * the words in *err (malloc'd). */
    int (*handshake)(wr_tls_pipe_t *p, char **err);
    /* Encrypts all of data: 0, or a libuv code with *err. */
    int (*encrypt)(wr_tls_pipe_t *p, const char *data, size_t len, char **err);
    /* Decrypts into buf: the bytes (> 0), 0 while it needs more ciphertext, WR_TLS_PEER_CLOSED,
     * or -2 with *err. */
    long (*decrypt)(wr_tls_pipe_t *p, char *buf, size_t size, char **err);
    /* Writes close_notify (the handshake is done). */
    void (*close_notify)(wr_tls_pipe_t *p);
    /* Nonzero when part of a record waits in the engine (an end there is a truncation). */
    int (*cut_short)(wr_tls_pipe_t *p);
    /* Frees the backend's state and the endpoint's memory. */
    void (*destroy)(wr_tls_pipe_t *p);
} wr_tls_engine;

/* Plaintext accepted by write() and not yet encrypted. */
typedef struct wr_tls_pending {
    struct wr_tls_pending *next;
    wr_buf_t *buf;
    const char *base;
    size_t len;
} wr_tls_pending;

struct wr_tls_pipe {
    wr_endpoint_t base;
    wr_endpoint_t *inner;
    const wr_tls_engine *engine;
    uv_idle_t tick; /* flushes records, reports failures, resumes reading: never inside an op */
    wr_tls_handshake_cb on_handshake;
    void *hs_data;
    unsigned state;
    int pending_err;
    int closes; /* inner endpoint and tick handle still open */
    /* Ciphertext for the engine: held bytes first, then the inner chunk being delivered. */
    wr_buf_t *held;
    const char *held_base;
    size_t held_len;
    const char *cur_base;
    size_t cur_len;
    /* Records the engine wrote, gathered into one chunk for the inner endpoint. */
    wr_buf_t *out;
    size_t out_len;
    wr_tls_pending *wq_head, **wq_tail;
    char *err;
};

/* Copies already[0..len) to be read first; 0, or -1 when out of memory (nothing to undo). */
int wr_tls__pipe_hold(wr_tls_pipe_t *p, const char *already, size_t len);
/* Takes inner (which the endpoint owns from now on) and starts the handshake from the loop. */
void wr_tls__pipe_start(wr_tls_pipe_t *p, uv_loop_t *loop, const wr_tls_engine *engine,
                        wr_endpoint_t *inner, wr_tls_handshake_cb on_handshake, void *data);
/* Frees what wr_tls__pipe_hold kept, for a backend whose setup failed before the start. */
void wr_tls__pipe_unhold(wr_tls_pipe_t *p);
/* The engine's I/O: up to len bytes of ciphertext (0: none yet), and records to send (0, or -1
 * when out of memory). */
size_t wr_tls__pipe_take(wr_tls_pipe_t *p, char *buf, size_t len);
int wr_tls__pipe_put(wr_tls_pipe_t *p, const char *data, size_t len);
/* ep as a pipe whose handshake is done, or NULL. */
wr_tls_pipe_t *wr_tls__pipe_ready(wr_endpoint_t *ep);

#endif
