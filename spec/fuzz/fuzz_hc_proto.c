/* The HTTP carrier's request tokens (wr_hc_proto) on arbitrary input, three ways:
 *  - the input itself as a request target: never out of bounds;
 *  - a real query the input describes (session, kind, offset, nonce), then edited where and how
 *    the input says (bytes changed, cut, put in): whenever the parse accepts the result, what it
 *    read must give back, through wr_hc_query under the same key, a query that parses to the
 *    same request (the tag binds every field), and under another key it is refused;
 *  - base64url of the input: the documented length, only the URL alphabet, and it decodes back.
 * The first input byte chooses whose edit runs; the rest is read as choices (fuzz_input.h). */
#include "fuzz_input.h"
#include "wr_hc_proto.h"

#include <stdlib.h>
#include <string.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static uint8_t key[WR_HC_KEY_LEN], other_key[WR_HC_KEY_LEN];

static void same_or_abort(const wr_hc_request_t *a, const wr_hc_request_t *b)
{
    if (memcmp(a->sid, b->sid, WR_HC_SID_LEN) || memcmp(a->nonce, b->nonce, WR_HC_NONCE_LEN) ||
        a->kind != b->kind || a->offset != b->offset)
        abort();
}

/* An accepted target: its request round-trips and no other key takes it. */
static void check_accepted(const char *target, size_t len, const wr_hc_request_t *r)
{
    char query[WR_HC_QUERY_MAX];
    wr_hc_request_t again;
    size_t n;
    if (r->kind != WR_HC_UP && r->kind != WR_HC_DOWN && r->kind != WR_HC_POLL) abort();
    n = wr_hc_query(key, r, query, sizeof query);
    if (n == 0 || n != strlen(query)) abort();
    if (wr_hc_parse(key, query, n, &again) != 0) abort();
    same_or_abort(r, &again);
    if (wr_hc_parse(other_key, target, len, &again) == 0) abort();
}

static void as_target(const uint8_t *data, size_t size)
{
    wr_hc_request_t r;
    if (wr_hc_parse(key, (const char *)data, size, &r) == 0)
        check_accepted((const char *)data, size, &r);
}

static void edited_query(struct reader *in)
{
    wr_hc_request_t r, got;
    char target[512];
    size_t n;
    static const enum wr_hc_kind kinds[] = {WR_HC_UP, WR_HC_DOWN, WR_HC_POLL};
    take_n(in, r.sid, sizeof r.sid);
    take_n(in, r.nonce, sizeof r.nonce);
    r.kind = kinds[take(in) % 3];
    r.offset = 0;
    for (int i = take(in) % 7; i > 0; i--)
        r.offset = r.offset << 8 | take(in);
    r.offset %= 1000000000000000ull; /* what 15 digits hold: the parse takes no more */
    memcpy(target, "/p", 2);
    n = 2 + wr_hc_query(key, &r, target + 2, sizeof target - 2);
    if (n == 2) abort();
    if (wr_hc_parse(key, target, n, &got) != 0) abort();
    same_or_abort(&r, &got);
    for (int edits = take(in) % 4; edits > 0; edits--) {
        size_t at = n ? take(in) % n : 0;
        uint8_t how = take(in), c = take(in);
        switch (how % 4) {
        case 0:
            target[at] = (char)c;
            break;
        case 1:
            target[at] = alphabet[c % 64];
            break;
        case 2:
            n = at;
            break;
        default:
            if (n + 1 < sizeof target) {
                memmove(target + at + 1, target + at, n - at);
                target[at] = (char)c;
                n++;
            }
        }
    }
    if (wr_hc_parse(key, target, n, &got) == 0) check_accepted(target, n, &got);
}

static void base64url(const uint8_t *data, size_t size)
{
    char text[1400];
    uint8_t back[1024];
    size_t n, want, got = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (size > sizeof back) size = sizeof back;
    want = (size * 4 + 2) / 3;
    if (wr_hc_b64url(data, size, text, want) != 0) abort(); /* no room for the NUL */
    n = wr_hc_b64url(data, size, text, sizeof text);
    if (n != want || text[n] != '\0') abort();
    for (size_t i = 0; i < n; i++) {
        const char *p = memchr(alphabet, text[i], 64);
        if (!p || !text[i]) abort();
        acc = acc << 6 | (uint32_t)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            back[got++] = (uint8_t)(acc >> bits);
        }
    }
    if (got != size || memcmp(back, data, size) != 0) abort();
    if (bits && (acc & ((1u << bits) - 1))) abort(); /* canonical: unused bits are 0 */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader in = {data, size};
    static int ready;
    if (!ready) {
        uint8_t psk[32];
        for (int i = 0; i < 32; i++)
            psk[i] = (uint8_t)(i + 1);
        wr_hc_key(psk, key);
        psk[0] ^= 0xff;
        wr_hc_key(psk, other_key);
        ready = 1;
    }
    switch (take(&in) % 3) {
    case 0:
        as_target(in.p, in.n);
        break;
    case 1:
        edited_query(&in);
        break;
    default:
        base64url(in.p, in.n);
    }
    return 0;
}
