#include "wr_ws_frame.h"

#include <string.h>

size_t wr_ws_header(uint8_t *out, enum wr_ws_opcode op, uint64_t len, const uint8_t *mask_key)
{
    size_t n = 2;
    out[0] = (uint8_t)(0x80 | op);
    out[1] = mask_key ? 0x80 : 0;
    if (len < 126) {
        out[1] |= (uint8_t)len;
    } else if (len <= 0xffff) {
        out[1] |= 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] |= 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask_key) {
        memcpy(out + n, mask_key, 4);
        n += 4;
    }
    return n;
}

void wr_ws_mask(uint8_t *p, size_t len, const uint8_t key[4], uint64_t phase)
{
    uint8_t k[8];
    uint64_t k64, v;
    size_t i = 0;
    for (int j = 0; j < 8; j++)
        k[j] = key[(phase + (uint64_t)j) & 3];
    memcpy(&k64, k, 8);
    /* Eight bytes at a time: masking runs over every byte a client sends. */
    for (; i + 8 <= len; i += 8) {
        memcpy(&v, p + i, 8);
        v ^= k64;
        memcpy(p + i, &v, 8);
    }
    for (; i < len; i++)
        p[i] ^= k[i & 7];
}

void wr_ws_decoder_init(wr_ws_decoder *d, int from_client)
{
    memset(d, 0, sizeof *d);
    d->from_client = from_client;
}

static int fail(wr_ws_decoder *d, int status)
{
    d->failed = status;
    return status;
}

/* Bytes of the whole header, once its first two are known. */
static size_t header_len(const uint8_t *h)
{
    size_t n = 2;
    if ((h[1] & 0x7f) == 126) n += 2;
    if ((h[1] & 0x7f) == 127) n += 8;
    if (h[1] & 0x80) n += 4;
    return n;
}

/* The header is complete: checks it as RFC 6455 section 5 asks and starts the payload. */
static int start_frame(wr_ws_decoder *d)
{
    const uint8_t *h = d->hdr;
    int fin = h[0] >> 7, op = h[0] & 0x0f;
    size_t off = 2;
    uint64_t len = h[1] & 0x7f;
    if (h[0] & 0x70) return fail(d, WR_WS_PROTOCOL_ERROR); /* no extension was agreed */
    d->masked = h[1] >> 7;
    if (d->masked != d->from_client) return fail(d, WR_WS_PROTOCOL_ERROR);
    if (len == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        off = 4;
        if (len < 126) return fail(d, WR_WS_PROTOCOL_ERROR); /* the shortest form is required */
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        off = 10;
        if (len >> 63 || len <= 0xffff) return fail(d, WR_WS_PROTOCOL_ERROR);
    }
    if (d->masked) memcpy(d->key, h + off, 4);
    switch (op) {
    case WR_WS_CLOSE:
    case WR_WS_PING:
    case WR_WS_PONG:
        if (!fin || len > WR_WS_CONTROL_MAX) return fail(d, WR_WS_PROTOCOL_ERROR);
        break;
    case WR_WS_BINARY:
        if (d->in_message) return fail(d, WR_WS_PROTOCOL_ERROR);
        d->in_message = !fin;
        break;
    case WR_WS_CONTINUATION:
        if (!d->in_message) return fail(d, WR_WS_PROTOCOL_ERROR);
        d->in_message = !fin;
        break;
    case WR_WS_TEXT:
        return fail(d, d->in_message ? WR_WS_PROTOCOL_ERROR : WR_WS_UNSUPPORTED_DATA);
    default:
        return fail(d, WR_WS_PROTOCOL_ERROR);
    }
    d->opcode = op;
    d->left = len;
    d->phase = 0;
    d->control_len = 0;
    d->in_payload = 1;
    return 0;
}

int wr_ws_decode(wr_ws_decoder *d, uint8_t *p, size_t len, const wr_ws_decoder_cbs *cbs, void *ctx,
                 size_t *used)
{
    const uint8_t *start = p;
    *used = 0;
    if (d->failed) return d->failed;
    for (;;) {
        int stop = 0;
        if (!d->in_payload) {
            size_t need = d->hdr_have < 2 ? 2 : header_len(d->hdr);
            while (d->hdr_have < need && len) {
                d->hdr[d->hdr_have++] = *p++;
                len--;
                if (d->hdr_have == 2) need = header_len(d->hdr);
            }
            *used = (size_t)(p - start);
            if (d->hdr_have < need) return 0;
            if (start_frame(d)) return d->failed;
        }
        size_t take = d->left < len ? (size_t)d->left : len;
        int control = d->opcode >= WR_WS_CLOSE;
        if (d->masked) wr_ws_mask(p, take, d->key, d->phase);
        if (control) {
            memcpy(d->control + d->control_len, p, take);
            d->control_len += take;
        } else if (take) {
            stop = cbs->on_data(ctx, p, take);
        }
        d->phase += take;
        d->left -= take;
        p += take;
        len -= take;
        *used = (size_t)(p - start);
        if (d->left == 0) {
            d->in_payload = 0;
            d->hdr_have = 0;
            if (control && !stop)
                stop =
                    cbs->on_control(ctx, (enum wr_ws_opcode)d->opcode, d->control, d->control_len);
        }
        if (stop) return 1;
        if (len == 0) return 0;
    }
}
