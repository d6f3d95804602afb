#include "wr_hc_proto.h"

#include "wr_crypto.h"

#include <stdio.h>
#include <string.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char info[] = "warren/1 http carrier";

int wr_hc_key(const uint8_t psk[32], uint8_t key[WR_HC_KEY_LEN])
{
    return wr_hkdf(NULL, 0, psk, 32, info, sizeof info - 1, key, WR_HC_KEY_LEN);
}

size_t wr_hc_b64url(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (cap < (len * 4 + 2) / 3 + 1) return 0;
    for (size_t i = 0; i < len; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[n++] = b64url[(acc >> bits) & 63];
        }
    }
    if (bits) out[n++] = b64url[(acc << (6 - bits)) & 63];
    out[n] = '\0';
    return n;
}

/* Decodes exactly `want` bytes from text[0..len) (no padding, no other length). 0 or -1. */
static int b64url_decode(const char *text, size_t len, uint8_t *out, size_t want)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    if (len != (want * 4 + 2) / 3) return -1;
    for (size_t i = 0; i < len; i++) {
        const char *p = memchr(b64url, text[i], 64);
        if (!p || !text[i]) return -1;
        acc = acc << 6 | (uint32_t)(p - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    /* The unused low bits of the last character must be zero: one text per value. */
    return n == want && (acc & ((1u << bits) - 1)) == 0 ? 0 : -1;
}

/* The tag's input: "SID KIND OFFSET NONCE" with the ids in base64url. */
static int tag_of(const uint8_t key[WR_HC_KEY_LEN], const wr_hc_request_t *r,
                  uint8_t tag[WR_HC_TAG_LEN])
{
    char sid[32], nonce[16], text[96];
    uint8_t mac[WR_SHA256_LEN];
    int n;
    wr_hc_b64url(r->sid, WR_HC_SID_LEN, sid, sizeof sid);
    wr_hc_b64url(r->nonce, WR_HC_NONCE_LEN, nonce, sizeof nonce);
    n = snprintf(text, sizeof text, "%s %c %llu %s", sid, (char)r->kind,
                 (unsigned long long)r->offset, nonce);
    if (n <= 0 || (size_t)n >= sizeof text) return -1;
    if (wr_hmac_sha256(key, WR_HC_KEY_LEN, text, (size_t)n, mac) != 0) return -1;
    memcpy(tag, mac, WR_HC_TAG_LEN);
    return 0;
}

size_t wr_hc_query(const uint8_t key[WR_HC_KEY_LEN], const wr_hc_request_t *r, char *out,
                   size_t cap)
{
    char sid[32], nonce[16], tag_text[32];
    uint8_t tag[WR_HC_TAG_LEN];
    int n;
    if (tag_of(key, r, tag) != 0) return 0;
    wr_hc_b64url(r->sid, WR_HC_SID_LEN, sid, sizeof sid);
    wr_hc_b64url(r->nonce, WR_HC_NONCE_LEN, nonce, sizeof nonce);
    wr_hc_b64url(tag, WR_HC_TAG_LEN, tag_text, sizeof tag_text);
    n = snprintf(out, cap, "?s=%s&k=%c&o=%llu&n=%s&t=%s", sid, (char)r->kind,
                 (unsigned long long)r->offset, nonce, tag_text);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The value of name in query[0..len) ("a=1&b=2"), or NULL. */
static const char *param(const char *query, size_t len, char name, size_t *vlen)
{
    const char *p = query, *end = query + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if (stop - p >= 2 && p[0] == name && p[1] == '=') {
            *vlen = (size_t)(stop - p - 2);
            return p + 2;
        }
        p = stop + 1;
    }
    return NULL;
}

int wr_hc_parse_fields(const char *target, size_t len, wr_hc_request_t *r,
                       uint8_t tag[WR_HC_TAG_LEN])
{
    const char *q = memchr(target, '?', len), *v;
    size_t qlen, vlen;
    uint64_t off = 0;
    if (!q) return -1;
    q++;
    qlen = len - (size_t)(q - target);
    memset(r, 0, sizeof *r);
    if (!(v = param(q, qlen, 's', &vlen)) || b64url_decode(v, vlen, r->sid, WR_HC_SID_LEN) != 0)
        return -1;
    if (!(v = param(q, qlen, 'k', &vlen)) || vlen != 1 ||
        (v[0] != WR_HC_UP && v[0] != WR_HC_DOWN && v[0] != WR_HC_POLL))
        return -1;
    r->kind = (enum wr_hc_kind)v[0];
    if (!(v = param(q, qlen, 'o', &vlen)) || vlen == 0 || vlen > 15) return -1;
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9' || (i == 0 && v[i] == '0' && vlen > 1)) return -1;
        off = off * 10 + (uint64_t)(v[i] - '0');
    }
    r->offset = off;
    if (!(v = param(q, qlen, 'n', &vlen)) || b64url_decode(v, vlen, r->nonce, WR_HC_NONCE_LEN) != 0)
        return -1;
    if (!(v = param(q, qlen, 't', &vlen)) || b64url_decode(v, vlen, tag, WR_HC_TAG_LEN) != 0)
        return -1;
    return 0;
}

int wr_hc_check_tag(const uint8_t key[WR_HC_KEY_LEN], const wr_hc_request_t *r,
                    const uint8_t tag[WR_HC_TAG_LEN])
{
    uint8_t want[WR_HC_TAG_LEN];
    if (tag_of(key, r, want) != 0) return -1;
    return wr_ct_equal(tag, want, WR_HC_TAG_LEN) ? 0 : -1;
}

int wr_hc_parse(const uint8_t key[WR_HC_KEY_LEN], const char *target, size_t len,
                wr_hc_request_t *r)
{
    uint8_t tag[WR_HC_TAG_LEN];
    if (wr_hc_parse_fields(target, len, r, tag) != 0) return -1;
    return wr_hc_check_tag(key, r, tag);
}

int wr_hc_proof(const uint8_t key[WR_HC_KEY_LEN], const uint8_t nonce[WR_HC_NONCE_LEN],
                char out[WR_HC_PROOF_LEN + 1])
{
    uint8_t text[3 + WR_HC_NONCE_LEN], mac[WR_SHA256_LEN];
    memcpy(text, "ok ", 3);
    memcpy(text + 3, nonce, WR_HC_NONCE_LEN);
    if (wr_hmac_sha256(key, WR_HC_KEY_LEN, text, sizeof text, mac) != 0) return -1;
    wr_hc_b64url(mac, 16, out, WR_HC_PROOF_LEN + 1);
    return 0;
}

void wr_hc_record_head(uint8_t out[WR_HC_RECORD_HEAD], int type, size_t len)
{
    out[0] = (uint8_t)type;
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}
