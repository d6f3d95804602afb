#include "wr_http_framer.h"

#include <string.h>

/* Chunk sizes of more than 15 hex digits are refused: no site takes a chunk that large. */
#define CHUNK_HEX_MAX 15

void wr_http_framer_init(wr_http_framer_t *f)
{
    f->state = WR_FRAMER_S_HEAD;
    f->requests = 0;
    f->remaining = 0;
    f->keep_alive = 1;
    f->head_len = 0;
    f->head_done = 0;
    wr_http_head_init(&f->req);
}

void wr_http_framer_give_up(wr_http_framer_t *f)
{
    if (f->state != WR_FRAMER_S_HEAD || f->head_done) f->head_len = 0; /* nothing kept back */
    f->state = WR_FRAMER_S_RAW;
}

static void line_reset(wr_http_framer_t *f)
{
    f->line_len = 0;
    f->line_cr = 0;
    f->line_hex = 0;
    f->line_ext = 0;
    f->remaining = 0;
}

/* The current request is over: the next byte starts a head, unless it ended the connection. */
static void message_end(wr_http_framer_t *f)
{
    f->state = f->keep_alive ? WR_FRAMER_S_HEAD : WR_FRAMER_S_RAW;
}

static void after_head(wr_http_framer_t *f)
{
    const wr_http_head_t *r = &f->req;
    f->requests++;
    f->keep_alive = r->keep_alive;
    f->head_done = 1;
    if (r->upgrade) {
        f->state = WR_FRAMER_S_RAW; /* the site may switch protocols: no more requests to see */
    } else if (r->chunked) {
        f->state = WR_FRAMER_S_CHUNK_LINE;
        f->trailer_len = 0;
        line_reset(f);
    } else if (r->has_length && r->content_length > 0) {
        f->state = WR_FRAMER_S_LENGTH;
        f->remaining = r->content_length;
    } else {
        message_end(f);
    }
}

static enum wr_framer_event collect_head(wr_http_framer_t *f, const char *p, size_t len,
                                         size_t *used)
{
    size_t old, n;
    int rc;
    if (f->head_done) {
        f->head_done = 0;
        f->head_len = 0;
        wr_http_head_init(&f->req);
    }
    old = f->head_len;
    n = sizeof f->head - old < len ? sizeof f->head - old : len;
    memcpy(f->head + old, p, n);
    f->head_len += n;
    rc = wr_http_head_parse(&f->req, f->head, f->head_len);
    if (rc > 0) {
        *used = (size_t)rc - old;
        f->head_len = (size_t)rc;
        after_head(f);
        return WR_FRAMER_HEAD;
    }
    *used = n;
    if (rc < 0) {
        f->state = WR_FRAMER_S_RAW;
        return WR_FRAMER_RAW;
    }
    return WR_FRAMER_NEED_MORE;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One byte of a chunk-size line: 1 when the line is complete, 0 to go on, -1 to give up. */
static int chunk_line_byte(wr_http_framer_t *f, unsigned char c)
{
    int v;
    if (++f->line_len > WR_HTTP_FRAMER_LINE_MAX) return -1;
    if (f->line_cr) return c == '\n' ? 1 : -1;
    if (c == '\r') {
        f->line_cr = 1;
        return f->line_hex != 0 ? 0 : -1;
    }
    if (f->line_ext) return (c < 0x20 && c != '\t') || c == 0x7f ? -1 : 0;
    v = f->line_hex >= 0 ? hex_value(c) : -1;
    if (v >= 0) {
        if (++f->line_hex > CHUNK_HEX_MAX) return -1;
        f->remaining = f->remaining * 16 + (uint64_t)v;
        return 0;
    }
    /* After the size: whitespace and a ';' start extensions, which run to the CR. */
    if (f->line_hex > 0 && (c == ';' || c == ' ' || c == '\t')) {
        f->line_hex = -1;
        f->line_ext = 1;
        return 0;
    }
    return -1;
}

/* One byte of the trailer section: 1 at the empty line that ends it, 0 to go on, -1 to give up. */
static int trailer_byte(wr_http_framer_t *f, unsigned char c)
{
    if (++f->trailer_len > WR_HTTP_FRAMER_TRAILER_MAX) return -1;
    if (f->line_cr) {
        if (c != '\n') return -1;
        if (f->line_len == 0) return 1;
        f->line_len = 0;
        f->line_cr = 0;
        return 0;
    }
    if (c == '\r') {
        f->line_cr = 1;
        return 0;
    }
    if (c == '\n') return -1; /* bare LF */
    f->line_len++;
    return 0;
}

/* One framing byte of a chunked body: 1 when it ends a line or CRLF (the state moved on), 0 to go
 * on, -1 to give up. */
static int framing_byte(wr_http_framer_t *f, unsigned char c)
{
    int r;
    if (f->state == WR_FRAMER_S_CHUNK_LINE) {
        uint64_t size;
        if ((r = chunk_line_byte(f, c)) != 1) return r;
        size = f->remaining;
        line_reset(f);
        f->state = size == 0 ? WR_FRAMER_S_TRAILER : WR_FRAMER_S_CHUNK_DATA;
        f->remaining = size;
        return 1;
    }
    if (f->state == WR_FRAMER_S_CHUNK_CRLF) {
        if (c != (f->remaining == 2 ? '\r' : '\n')) return -1;
        if (--f->remaining) return 0;
        f->state = WR_FRAMER_S_CHUNK_LINE;
        line_reset(f);
        return 1;
    }
    if ((r = trailer_byte(f, c)) != 1) return r;
    message_end(f);
    return 1;
}

/* Framing bytes of a chunked body, up to the end of the current line or CRLF. */
static size_t chunk_framing(wr_http_framer_t *f, const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len;) {
        int r = framing_byte(f, p[i++]);
        if (r == 1) return i;
        if (r < 0) {
            f->state = WR_FRAMER_S_RAW;
            return len; /* every byte passes from here on */
        }
    }
    return len;
}

enum wr_framer_event wr_http_framer_next(wr_http_framer_t *f, const char *p, size_t len,
                                         size_t *used)
{
    uint64_t n;
    *used = 0;
    switch (f->state) {
    case WR_FRAMER_S_HEAD:
        return collect_head(f, p, len, used);
    case WR_FRAMER_S_LENGTH:
    case WR_FRAMER_S_CHUNK_DATA:
        n = f->remaining < len ? f->remaining : len;
        f->remaining -= n;
        *used = (size_t)n;
        if (f->remaining == 0) {
            if (f->state == WR_FRAMER_S_LENGTH) {
                message_end(f);
            } else {
                f->state = WR_FRAMER_S_CHUNK_CRLF;
                f->remaining = 2;
            }
        }
        return WR_FRAMER_BODY;
    case WR_FRAMER_S_CHUNK_LINE:
    case WR_FRAMER_S_CHUNK_CRLF:
    case WR_FRAMER_S_TRAILER:
        *used = chunk_framing(f, (const unsigned char *)p, len);
        return WR_FRAMER_BODY;
    case WR_FRAMER_S_RAW:
        break;
    }
    *used = len;
    return WR_FRAMER_BODY;
}
