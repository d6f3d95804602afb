/* The request a local proxy client sends first, for `-D`: SOCKS5 (RFC 1928, with RFC 1929
 * username/password), SOCKS4 and SOCKS4a, or an HTTP proxy request (CONNECT host:port, or an
 * absolute-URI request such as `GET http://host/path HTTP/1.1`), told apart by the first byte.
 *
 * Pure and incremental: no I/O, no allocation, bytes may arrive split anywhere. The caller feeds
 * what it read and acts on the status:
 *  - NEED_MORE: every byte was taken; read more.
 *  - SEND:      write reply[0..reply_len) to the client (a SOCKS5 method choice or auth answer),
 *               then feed the bytes after *consumed, and whatever comes next.
 *  - DONE:      the request is complete: kind, host, port (and for a plain HTTP request the
 *               rewritten head to send upstream). Bytes after *consumed are the client's first
 *               payload, for the target. Answer later with wr_proxy_reply.
 *  - ERROR:     write reply[0..reply_len) (may be empty), then close; reason says why.
 * DONE and ERROR are final: later feeds take nothing and return the same status.
 *
 * Domain names are passed through unresolved (the relay resolves them). HTTP requests are one per
 * connection: the rewritten head carries `Connection: close` (or keeps `Connection: Upgrade` for
 * an upgrade such as WebSocket), since the tunnelled connection goes to one origin only. Only
 * the request's own body (body_len bytes, from Content-Length) may follow it to the origin: bytes
 * after it, such as a pipelined request with the client's Proxy-Authorization, must be dropped.
 * A request body without a Content-Length (chunked) is refused with 411. */
#ifndef WR_PROXY_REQ_H
#define WR_PROXY_REQ_H

#include <stddef.h>
#include <stdint.h>

#define WR_PROXY_HEAD_MAX  8192 /* HTTP request line + headers; longer is refused (400/431) */
#define WR_PROXY_OUT_MAX   (WR_PROXY_HEAD_MAX + 320) /* rewritten head: + Host and Connection */
#define WR_PROXY_REPLY_MAX 512
#define WR_PROXY_HOST_MAX  253 /* longest DNS name */
/* "[host]:port" with its terminating NUL */
#define WR_PROXY_TARGET_MAX (WR_PROXY_HOST_MAX + 9)

enum wr_proxy_kind {
    WR_PROXY_UNKNOWN = 0,
    WR_PROXY_SOCKS5,
    WR_PROXY_SOCKS4, /* SOCKS4 and SOCKS4a */
    WR_PROXY_HTTP_CONNECT,
    WR_PROXY_HTTP, /* absolute-URI request, forwarded in origin form */
};

enum wr_proxy_status {
    WR_PROXY_NEED_MORE = 0,
    WR_PROXY_SEND,
    WR_PROXY_DONE,
    WR_PROXY_ERROR,
};

/* Why a request cannot be served, mapped to each protocol's reply code:
 *
 *   class          SOCKS5                        SOCKS4  HTTP
 *   GENERAL        0x01 general failure          0x5B    502 Bad Gateway
 *   NOT_ALLOWED    0x02 not allowed by ruleset   0x5B    403 Forbidden
 *   UNREACHABLE    0x04 host unreachable         0x5B    502 Bad Gateway
 *   REFUSED        0x05 connection refused       0x5B    502 Bad Gateway
 *   BAD_REQUEST    0x01 general failure          0x5B    400 Bad Request
 *   UNSUPPORTED    0x07 command not supported    0x5B    501 Not Implemented
 *   TIMEOUT        0x06 TTL expired              0x5B    504 Gateway Timeout
 *   UNAVAILABLE    0x01 general failure          0x5B    503 Service Unavailable
 *
 * UNAVAILABLE is "no session to the relay right now". 501 rather than 405 for UNSUPPORTED: what
 * is unsupported is a scheme or command of the proxy, not a method of the resource. */
enum wr_proxy_fail {
    WR_PROXY_OK = 0,
    WR_PROXY_FAIL_GENERAL,
    WR_PROXY_FAIL_NOT_ALLOWED,
    WR_PROXY_FAIL_UNREACHABLE,
    WR_PROXY_FAIL_REFUSED,
    WR_PROXY_FAIL_BAD_REQUEST,
    WR_PROXY_FAIL_UNSUPPORTED,
    WR_PROXY_FAIL_TIMEOUT,
    WR_PROXY_FAIL_UNAVAILABLE,
};

typedef struct wr_proxy_req {
    /* results */
    enum wr_proxy_kind kind;           /* known from the first byte on */
    char host[WR_PROXY_HOST_MAX + 1];  /* DONE: without brackets, always terminated */
    uint16_t port;                     /* DONE: 1..65535 */
    int ipv6;                          /* DONE: host is an IPv6 literal */
    const uint8_t *head;               /* DONE, WR_PROXY_HTTP: head to send upstream */
    size_t head_len;                   /* else 0 */
    uint64_t body_len;                 /* DONE, WR_PROXY_HTTP: body bytes after the head */
    int upgrade;                       /* DONE, WR_PROXY_HTTP: an upgrade (WebSocket) */
    uint8_t reply[WR_PROXY_REPLY_MAX]; /* SEND / ERROR */
    size_t reply_len;
    const char *reason; /* ERROR: static text */
    /* private */
    const char *user, *password; /* NULL user: no authentication required */
    size_t user_len, password_len;
    int state;
    int line_done; /* HTTP: the request line has ended */
    size_t have;   /* bytes of the current message in buf */
    uint8_t buf[WR_PROXY_HEAD_MAX];
    uint8_t out[WR_PROXY_OUT_MAX];
} wr_proxy_req;

/* user/password (both or neither; kept by pointer, so they must outlive p): when set, SOCKS5
 * clients must authenticate with them (RFC 1929), HTTP clients with Proxy-Authorization: Basic,
 * and SOCKS4, which cannot carry a password, is refused. */
void wr_proxy_req_init(wr_proxy_req *p, const char *user, const char *password);

enum wr_proxy_status wr_proxy_req_feed(wr_proxy_req *p, const uint8_t *data, size_t len,
                                       size_t *consumed);

/* The mux OPEN target "host:port" ("[v6]:port") of a DONE request into out (at least
 * WR_PROXY_TARGET_MAX bytes); returns its length. */
size_t wr_proxy_req_target(const wr_proxy_req *p, char *out, size_t cap);

/* The answer to a DONE request: success (WR_PROXY_OK) or a failure class. detail (may be NULL)
 * goes into an HTTP error body, cut to fit. Returns the length written to out (cap >=
 * WR_PROXY_REPLY_MAX always suffices); a successful plain HTTP request needs no reply (0). */
size_t wr_proxy_reply(enum wr_proxy_kind kind, enum wr_proxy_fail fail, const char *detail,
                      uint8_t *out, size_t cap);

/* The class of a relay's OPEN_FAIL reason (wr_stream_dial.h): "refused: ...",
 * "unreachable: ...", "denied: ...", "timeout: ...", "bad target: ..." (the word alone counts
 * too); anything else is GENERAL. */
enum wr_proxy_fail wr_proxy_fail_classify(const char *reason);

const char *wr_proxy_kind_name(enum wr_proxy_kind kind);
const char *wr_proxy_fail_name(enum wr_proxy_fail fail);

#endif
