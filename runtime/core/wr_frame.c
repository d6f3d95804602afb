#include "wr_frame.h"

#include <stdlib.h>
#include <string.h>

const char *wr_frame_strerror(int err)
{
    switch (err) {
    case WR_FRAME_OK:
        return "ok";
    case WR_FRAME_NEED_MORE:
        return "need more bytes";
    case WR_FRAME_EAUTH:
        return "frame authentication failed";
    case WR_FRAME_ETOOLONG:
        return "frame longer than the limit";
    case WR_FRAME_ELIMIT:
        return "nonce counter exhausted";
    case WR_FRAME_EPROTO:
        return "malformed rekey frame";
    case WR_FRAME_ENOMEM:
        return "out of memory";
    case WR_FRAME_ESPACE:
        return "output buffer too small";
    case WR_FRAME_EDEAD:
        return "codec already failed";
    case WR_FRAME_EINVAL:
        return "invalid argument";
    case WR_FRAME_ECRYPTO:
        return "crypto backend failure";
    }
    return "unknown frame error";
}

static int opts_resolve(wr_frame_opts *dst, const wr_frame_opts *src, enum wr_aead_alg alg)
{
    wr_frame_opts o = {0};
    if (src) o = *src;
    if (o.max_payload == 0) o.max_payload = WR_FRAME_MAX_DEFAULT;
    if (o.max_payload > WR_FRAME_MAX_LIMIT) return WR_FRAME_EINVAL;
    if (o.rekey_interval == 0)
        o.rekey_interval =
            alg == WR_AEAD_AES256_GCM ? WR_FRAME_REKEY_FRAMES_GCM : WR_FRAME_REKEY_FRAMES;
    if (o.counter_limit == 0 || o.counter_limit > WR_FRAME_COUNTER_MAX)
        o.counter_limit = WR_FRAME_COUNTER_MAX;
    *dst = o;
    return WR_FRAME_OK;
}

/* k' = HKDF-Expand(k, "rekey", 32): one-way, so a later key leak does not expose earlier frames. */
static int next_key(wr_aead *a, uint8_t key[32])
{
    uint8_t k[32];
    int rc = wr_hkdf_expand(key, "rekey", 5, k, sizeof k);
    if (!rc) rc = wr_aead_setkey(a, k);
    if (!rc) memcpy(key, k, 32);
    wr_zeroize(k, sizeof k);
    return rc ? WR_FRAME_ECRYPTO : WR_FRAME_OK;
}

static void put_header(uint8_t *h, size_t len, uint8_t type, uint8_t flags, uint32_t sid)
{
    h[0] = (uint8_t)(len >> 8);
    h[1] = (uint8_t)len;
    h[2] = type;
    h[3] = flags;
    h[4] = (uint8_t)(sid >> 24);
    h[5] = (uint8_t)(sid >> 16);
    h[6] = (uint8_t)(sid >> 8);
    h[7] = (uint8_t)sid;
}

/* ---- sealer ---- */

/* What a sealer and an opener set up alike: options, the AEAD, and the key kept for rekeying. */
static int codec_init(wr_frame_opts *o, wr_aead **aead, uint8_t kept[32], enum wr_backend b,
                      enum wr_aead_alg alg, const uint8_t key[32], const wr_frame_opts *opts)
{
    if (opts_resolve(o, opts, alg)) return WR_FRAME_EINVAL;
    int rc = wr_aead_new(aead, b, alg, key);
    if (rc) return rc == WR_CRYPTO_ENOMEM ? WR_FRAME_ENOMEM : WR_FRAME_EINVAL;
    memcpy(kept, key, 32);
    return WR_FRAME_OK;
}

int wr_frame_sealer_init(wr_frame_sealer *s, enum wr_backend b, enum wr_aead_alg alg,
                         const uint8_t key[32], const wr_frame_opts *opts)
{
    memset(s, 0, sizeof *s);
    return codec_init(&s->opts, &s->aead, s->key, b, alg, key, opts);
}

void wr_frame_sealer_free(wr_frame_sealer *s)
{
    wr_aead_free(s->aead);
    wr_zeroize(s, sizeof *s);
    s->dead = 1;
}

static int seal_part(wr_frame_sealer *s, const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t nonce[WR_AEAD_NONCE_LEN];
    wr_aead_nonce(nonce, s->counter++);
    return wr_aead_seal(s->aead, nonce, NULL, 0, in, len, out) ? WR_FRAME_ECRYPTO : WR_FRAME_OK;
}

static int seal_rekey(wr_frame_sealer *s, uint8_t *out)
{
    uint8_t h[WR_FRAME_HDR_LEN];
    int rc;
    put_header(h, 0, WR_FT_REKEY, 0, 0);
    rc = seal_part(s, h, sizeof h, out);
    if (!rc) rc = next_key(s->aead, s->key);
    if (rc) return rc;
    s->counter = 0;
    s->key_frames = 0;
    s->rekeys++;
    return WR_FRAME_OK;
}

static int sealer_dead(wr_frame_sealer *s, int rc)
{
    s->dead = 1;
    return rc;
}

int wr_frame_seal(wr_frame_sealer *s, uint8_t *out, size_t cap, uint8_t type, uint8_t flags,
                  uint32_t stream_id, const uint8_t *payload, size_t len, size_t *written)
{
    uint8_t h[WR_FRAME_HDR_LEN];
    size_t wire = WR_FRAME_WIRE_SIZE(len), need;
    uint64_t ops;
    int rekey, rc;

    *written = 0;
    if (s->dead) return WR_FRAME_EDEAD;
    if (type == WR_FT_REKEY || (len && !payload)) return WR_FRAME_EINVAL;
    if (len > s->opts.max_payload) return WR_FRAME_ETOOLONG;
    if (len && payload != out + WR_FRAME_HDR_WIRE && payload < out + wire + WR_FRAME_HDR_WIRE &&
        out < payload + len)
        return WR_FRAME_EINVAL;
    rekey = s->opts.rekey_interval != UINT64_MAX && s->key_frames + 1 >= s->opts.rekey_interval;
    need = wire + (rekey ? WR_FRAME_HDR_WIRE : 0);
    if (cap < need) return WR_FRAME_ESPACE;
    ops = (len ? 2 : 1) + (rekey ? 1 : 0);
    /* The hard stop: a nonce is never used twice under one key, whatever the caller does. */
    if (s->opts.counter_limit - s->counter < ops) return sealer_dead(s, WR_FRAME_ELIMIT);

    put_header(h, len, type, flags, stream_id);
    rc = seal_part(s, h, sizeof h, out);
    if (!rc && len) rc = seal_part(s, payload, len, out + WR_FRAME_HDR_WIRE);
    if (rc) return sealer_dead(s, rc);
    s->key_frames++;
    if (rekey && (rc = seal_rekey(s, out + wire))) return sealer_dead(s, rc);
    *written = need;
    return WR_FRAME_OK;
}

int wr_frame_seal_rekey(wr_frame_sealer *s, uint8_t *out, size_t cap, size_t *written)
{
    int rc;
    *written = 0;
    if (s->dead) return WR_FRAME_EDEAD;
    if (cap < WR_FRAME_HDR_WIRE) return WR_FRAME_ESPACE;
    if (s->opts.counter_limit - s->counter < 1) return sealer_dead(s, WR_FRAME_ELIMIT);
    if ((rc = seal_rekey(s, out))) return sealer_dead(s, rc);
    *written = WR_FRAME_HDR_WIRE;
    return WR_FRAME_OK;
}

/* ---- opener ---- */

int wr_frame_opener_init(wr_frame_opener *o, enum wr_backend b, enum wr_aead_alg alg,
                         const uint8_t key[32], const wr_frame_opts *opts)
{
    memset(o, 0, sizeof *o);
    return codec_init(&o->opts, &o->aead, o->key, b, alg, key, opts);
}

void wr_frame_opener_free(wr_frame_opener *o)
{
    wr_aead_free(o->aead);
    if (o->buf) {
        wr_zeroize(o->buf, (size_t)o->opts.max_payload + WR_AEAD_TAG_LEN);
        free(o->buf);
    }
    wr_zeroize(o, sizeof *o);
    o->dead = 1;
}

static int opener_dead(wr_frame_opener *o, int rc)
{
    o->dead = 1;
    return rc;
}

static int open_part(wr_frame_opener *o, const uint8_t *ct, size_t ct_len, uint8_t *out)
{
    uint8_t nonce[WR_AEAD_NONCE_LEN];
    int rc;
    if (o->counter >= o->opts.counter_limit) return WR_FRAME_ELIMIT;
    wr_aead_nonce(nonce, o->counter++);
    rc = wr_aead_open(o->aead, nonce, NULL, 0, ct, ct_len, out);
    if (rc == WR_CRYPTO_EAUTH) return WR_FRAME_EAUTH;
    return rc ? WR_FRAME_ECRYPTO : WR_FRAME_OK;
}

/* Opens a sealed header into o->cur. Returns 1 for a REKEY that was applied. */
static int open_header(wr_frame_opener *o, const uint8_t *ct)
{
    uint8_t h[WR_FRAME_HDR_LEN];
    int rc = open_part(o, ct, WR_FRAME_HDR_WIRE, h);
    if (rc) return rc;
    o->cur.len = (size_t)h[0] << 8 | h[1];
    o->cur.type = h[2];
    o->cur.flags = h[3];
    o->cur.stream_id = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
    o->cur.payload = NULL;
    /* Checked before any allocation or any wait for the payload. */
    if (o->cur.len > o->opts.max_payload) return WR_FRAME_ETOOLONG;
    if (o->cur.type != WR_FT_REKEY) return 0;
    if (o->cur.len || o->cur.flags || o->cur.stream_id) return WR_FRAME_EPROTO;
    if ((rc = next_key(o->aead, o->key))) return rc;
    o->counter = 0;
    o->frames++;
    o->rekeys++;
    return 1;
}

int wr_frame_open(wr_frame_opener *o, uint8_t *data, size_t len, size_t *consumed, wr_frame *f)
{
    size_t used = 0, need, n;
    uint8_t *p;
    int rc;

    *consumed = 0;
    if (o->dead) return WR_FRAME_EDEAD;
    if (len && !data) return WR_FRAME_EINVAL;
    for (;;) {
        if (!o->have_header) {
            const uint8_t *ct;
            if (o->hdr_have == 0 && len - used >= WR_FRAME_HDR_WIRE) {
                ct = data + used; /* whole header present: no copy */
                used += WR_FRAME_HDR_WIRE;
            } else {
                n = WR_FRAME_HDR_WIRE - o->hdr_have;
                if (n > len - used) n = len - used;
                memcpy(o->hdr_buf + o->hdr_have, data + used, n);
                o->hdr_have += n;
                used += n;
                if (o->hdr_have < WR_FRAME_HDR_WIRE) {
                    *consumed = used;
                    return WR_FRAME_NEED_MORE;
                }
                ct = o->hdr_buf;
                o->hdr_have = 0;
            }
            rc = open_header(o, ct);
            *consumed = used;
            if (rc < 0) return opener_dead(o, rc);
            if (rc == 1) continue; /* REKEY: swallowed */
            if (o->cur.len == 0) {
                o->frames++;
                *f = o->cur;
                return WR_FRAME_OK;
            }
            o->have_header = 1;
        }

        need = o->cur.len + WR_AEAD_TAG_LEN;
        if (o->buf_have == 0 && len - used >= need) {
            p = data + used; /* whole payload present: decrypt in place, no copy */
            used += need;
        } else {
            if (!o->buf) {
                o->buf = malloc((size_t)o->opts.max_payload + WR_AEAD_TAG_LEN);
                if (!o->buf) return opener_dead(o, WR_FRAME_ENOMEM);
            }
            n = need - o->buf_have;
            if (n > len - used) n = len - used;
            memcpy(o->buf + o->buf_have, data + used, n);
            o->buf_have += n;
            used += n;
            *consumed = used;
            if (o->buf_have < need) return WR_FRAME_NEED_MORE;
            p = o->buf;
            o->buf_have = 0;
        }
        *consumed = used;
        rc = open_part(o, p, need, p);
        if (rc) return opener_dead(o, rc);
        o->have_header = 0;
        o->frames++;
        *f = o->cur;
        f->payload = p;
        return WR_FRAME_OK;
    }
}

size_t wr_frame_opener_need(const wr_frame_opener *o)
{
    if (!o->have_header) return WR_FRAME_HDR_WIRE - o->hdr_have;
    return o->cur.len + WR_AEAD_TAG_LEN - o->buf_have;
}

void wr_frame_opener_trim(wr_frame_opener *o)
{
    if (o->buf && !o->have_header) {
        wr_zeroize(o->buf, (size_t)o->opts.max_payload + WR_AEAD_TAG_LEN);
        free(o->buf);
        o->buf = NULL;
    }
}
