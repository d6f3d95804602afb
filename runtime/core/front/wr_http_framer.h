/* Where each HTTP/1.x request on a connection begins and ends, for a proxy that passes the bytes
 * on untouched (wr_site_proxy): it collects each request head whole (so it can be looked at, and
 * kept back, before any of it goes on), then says how many of the following bytes are that
 * request's body: Content-Length, or chunked (chunk lines, data and trailers all count as body).
 * A request without either has no body (RFC 9112 6.3).
 *
 * When the bytes stop being framable with certainty, the framer gives up for the rest of the
 * connection (RAW) rather than guess: a head that does not parse or is too long, a malformed
 * chunk line, an Upgrade or CONNECT request (the site may switch protocols), and whatever follows
 * a request that ends the connection (HTTP/1.0 without keep-alive, Connection: close). After RAW
 * every byte is passed as it comes, so the site answers exactly what it would answer anyway.
 * Chunk lines must end in CRLF; anything laxer is RAW too.
 *
 * Pure and incremental: no I/O, no allocation; a head is copied into the framer's own buffer. */
#ifndef WR_HTTP_FRAMER_H
#define WR_HTTP_FRAMER_H

#include "wr_http_head.h"

#include <stddef.h>
#include <stdint.h>

#define WR_HTTP_FRAMER_LINE_MAX    4096             /* one chunk-size or trailer line */
#define WR_HTTP_FRAMER_TRAILER_MAX WR_HTTP_HEAD_MAX /* all trailer lines of one request */

enum wr_framer_event {
    WR_FRAMER_NEED_MORE = 0, /* all *used bytes went into the head being collected */
    WR_FRAMER_HEAD,          /* a request head is complete: head[0..head_len), parsed as req */
    WR_FRAMER_BODY,          /* the *used bytes belong to the current request: pass them */
    WR_FRAMER_RAW,           /* given up, for good: pass head[0..head_len) (the bytes collected so
                              * far, *used of them from this call), then everything after */
};

enum wr_framer_state {
    WR_FRAMER_S_HEAD = 0,
    WR_FRAMER_S_LENGTH, /* Content-Length body: remaining bytes */
    WR_FRAMER_S_CHUNK_LINE,
    WR_FRAMER_S_CHUNK_DATA,
    WR_FRAMER_S_CHUNK_CRLF, /* the CRLF after a chunk's data */
    WR_FRAMER_S_TRAILER,
    WR_FRAMER_S_RAW,
};

typedef struct wr_http_framer {
    enum wr_framer_state state;
    uint64_t requests;  /* complete heads so far */
    uint64_t remaining; /* S_LENGTH and S_CHUNK_DATA: bytes left; S_CHUNK_CRLF: 2 or 1 */
    int keep_alive;     /* the current request leaves the connection open */
    /* Chunk and trailer lines. */
    size_t line_len, trailer_len;
    int line_cr;  /* the last byte of the line so far was CR */
    int line_hex; /* hex digits of the size so far (-1 once past them) */
    int line_ext; /* in a chunk extension: anything up to CRLF */

    /* The head being collected, and once complete its parse (pointing into head). */
    size_t head_len;
    int head_done; /* head and req are the last complete head's, until the next call */
    wr_http_head_t req;
    char head[WR_HTTP_HEAD_MAX];
} wr_http_framer_t;

void wr_http_framer_init(wr_http_framer_t *f);

/* Looks at p[0..len) (len > 0), the next bytes of the connection, and consumes a prefix of them:
 * *used (> 0 except when a head completes or RAW begins exactly at the start of p). Call again
 * with the rest. In S_RAW every call returns WR_FRAMER_BODY with all of len. */
enum wr_framer_event wr_http_framer_next(wr_http_framer_t *f, const char *p, size_t len,
                                         size_t *used);

/* Gives up now (say, a head that takes too long to arrive): the caller passes head[0..head_len)
 * and everything after it. */
void wr_http_framer_give_up(wr_http_framer_t *f);

/* Whether the framer is between requests or inside a head: the point where a request could be
 * kept back. */
static inline int wr_http_framer_at_head(const wr_http_framer_t *f)
{
    return f->state == WR_FRAMER_S_HEAD;
}

#endif
