/* The -D listener parses whatever a local client sends first. The first input byte picks the
 * configuration (credentials or none) and the chunking; the rest is fed in fuzzer-chosen pieces
 * (each piece's length is the next byte), re-feeding after SEND as the binding does. Invariants:
 * nothing consumed beyond what was fed, replies and heads within their bounds, the host always
 * terminated and valid for a target, a plain HTTP request closed after its answer unless it is an
 * upgrade, final states final. */
#include "wr_proxy_req.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static wr_proxy_req p;

static void check_done(void)
{
    char target[WR_PROXY_TARGET_MAX];
    size_t n;
    if (memchr(p.host, '\0', sizeof p.host) == NULL || p.host[0] == '\0') abort();
    if (p.port == 0) abort();
    if (p.head_len > WR_PROXY_OUT_MAX) abort();
    if ((p.head_len != 0) != (p.kind == WR_PROXY_HTTP)) abort();
    if (p.head_len && memcmp(p.head + p.head_len - 4, "\r\n\r\n", 4) != 0) abort();
    /* a plain request that is not an upgrade ends the origin's connection after its answer */
    if (p.kind != WR_PROXY_HTTP && (p.body_len || p.upgrade)) abort();
    if (p.kind == WR_PROXY_HTTP && !p.upgrade &&
        (p.head_len < 21 || memcmp(p.head + p.head_len - 21, "Connection: close\r\n\r\n", 21)))
        abort();
    n = wr_proxy_req_target(&p, target, sizeof target);
    if (n == 0 || n >= sizeof target || strlen(target) != n) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *in;
    size_t len, off = 0, cut = 0, used, fed = 0, taken = 0;
    enum wr_proxy_status st = WR_PROXY_NEED_MORE;
    uint8_t reply[WR_PROXY_REPLY_MAX];
    int chunked;

    if (size < 1) return 0;
    wr_proxy_req_init(&p, (data[0] & 1) ? "user" : NULL, (data[0] & 1) ? "secret" : NULL);
    chunked = (data[0] & 2) != 0;
    in = data + 1;
    len = size - 1;
    while (off < len) {
        /* chunked: a length byte, then that many bytes; else all at once */
        size_t piece = len - off;
        if (chunked) {
            piece = (size_t)in[off++] + 1;
            if (piece > len - off) piece = len - off;
        }
        cut = off + piece;
        fed += piece;
        for (;;) {
            used = (size_t)-1;
            st = wr_proxy_req_feed(&p, in + off, cut - off, &used);
            if (used > cut - off) abort();
            taken += used;
            off += used;
            if (p.reply_len > WR_PROXY_REPLY_MAX) abort();
            if (st == WR_PROXY_ERROR && (p.reason == NULL || *p.reason == '\0')) abort();
            if (st != WR_PROXY_SEND) break;
            if (p.reply_len == 0) abort();
        }
        if (st == WR_PROXY_DONE || st == WR_PROXY_ERROR) break;
        if (off != cut) abort(); /* NEED_MORE takes everything */
    }
    if (taken > fed) abort();
    if (st == WR_PROXY_DONE) check_done();
    if (st == WR_PROXY_DONE || st == WR_PROXY_ERROR) {
        enum wr_proxy_status again = wr_proxy_req_feed(&p, (const uint8_t *)"x", 1, &used);
        if (again != st || used != 0) abort();
    }
    /* the answers, with the kind the request got and a detail from the input */
    for (int f = WR_PROXY_OK; f <= WR_PROXY_FAIL_UNAVAILABLE; f++) {
        char detail[64];
        size_t dn = len < sizeof detail - 1 ? len : sizeof detail - 1;
        memcpy(detail, in, dn);
        detail[dn] = '\0';
        if (wr_proxy_reply(p.kind, f, detail, reply, sizeof reply) > WR_PROXY_REPLY_MAX) abort();
        (void)wr_proxy_fail_classify(detail);
    }
    return 0;
}
