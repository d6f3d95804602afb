/* An HTTP/1.x request head (request line and header fields, up to the blank line), parsed with
 * http-parser. Shared by everything on the relay's port that reads HTTP: the fallback site, the
 * WebSocket upgrade and the HTTP carrier.
 *
 * Pure and incremental: no I/O, no allocation. The caller keeps the bytes received so far in one
 * buffer (which it may move between calls) and calls wr_http_head_parse with all of them; only
 * the bytes not seen before are parsed. The result points into that buffer, so it stays valid as
 * long as the buffer does not move. Bytes after the head (a body, the next pipelined request) are
 * left alone: the head says how long it is.
 *
 * Limits: the head up to and including its blank line is at most WR_HTTP_HEAD_MAX bytes, the
 * request target at most WR_HTTP_URL_MAX, and there are at most WR_HTTP_FIELDS_MAX fields.
 * Obsolete line folding is refused (RFC 9112 allows a server to), and so are both Content-Length
 * and Transfer-Encoding in one request, or two Content-Lengths (request smuggling). */
#ifndef WR_HTTP_HEAD_H
#define WR_HTTP_HEAD_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#define WR_HTTP_HEAD_MAX   (16 * 1024)
#define WR_HTTP_URL_MAX    (8 * 1024)
#define WR_HTTP_FIELDS_MAX 100

typedef struct wr_http_field {
    const char *name;
    size_t name_len;
    const char *value; /* without surrounding whitespace */
    size_t value_len;
} wr_http_field_t;

typedef struct wr_http_span {
    uint32_t off, len;
} wr_http_span_t;

typedef struct wr_http_head {
    /* Valid once wr_http_head_parse returned a length. */
    enum http_method method;
    unsigned major, minor;
    int keep_alive;          /* what the version and Connection ask for */
    int upgrade;             /* an Upgrade request (or CONNECT) */
    int chunked;             /* Transfer-Encoding: chunked */
    int has_length;          /* Content-Length given */
    uint64_t content_length; /* 0 unless has_length */
    const char *url;         /* request target as sent */
    size_t url_len;
    size_t nfields;
    wr_http_field_t fields[WR_HTTP_FIELDS_MAX];

    /* Private. */
    http_parser parser;
    const char *base; /* the buffer of the current call */
    size_t fed;       /* bytes of the buffer already parsed */
    int status;       /* 0, or the final result */
    int error;        /* why a callback stopped the parser */
    int done;
    int last_was_value;
    wr_http_span_t url_span;
    wr_http_span_t spans[WR_HTTP_FIELDS_MAX][2];
} wr_http_head_t;

void wr_http_head_init(wr_http_head_t *h);

/* Parses buf[0..len), the bytes received so far (the ones from earlier calls included). Returns
 * the length of the head (> 0) once it is complete, 0 while more bytes are needed, or:
 *   UV_E2BIG         the head is longer than WR_HTTP_HEAD_MAX or has too many fields (431)
 *   UV_ENAMETOOLONG  the request target is longer than WR_HTTP_URL_MAX (414)
 *   UV_EINVAL        not a valid HTTP/1.x request head (400)
 * A final result is returned again by later calls. */
int wr_http_head_parse(wr_http_head_t *h, const char *buf, size_t len);

/* The answer of a plain web server without the page asked for (nginx's 404, with close): what
 * HTTP gets on a relay port without a fallback site. */
extern const char wr_http_not_found[];
extern const size_t wr_http_not_found_len;

/* The first field of that name (case-insensitive), or NULL. */
const wr_http_field_t *wr_http_head_field(const wr_http_head_t *h, const char *name);

/* Whether a comma-separated field value (such as Connection's) lists token, case-insensitively. */
int wr_http_list_has(const char *value, size_t len, const char *token);

#endif
