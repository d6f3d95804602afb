#include "wr_ctl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A reader keeps a buffer this small between messages; a larger one goes back to malloc. */
#define READER_KEEP 4096

const char *wr_ctl_strerror(int err)
{
    switch (err) {
    case WR_CTL_OK:
        return "ok";
    case WR_CTL_NEED_MORE:
        return "need more bytes";
    case WR_CTL_ETRUNC:
        return "truncated";
    case WR_CTL_ETRAILING:
        return "trailing bytes after the value";
    case WR_CTL_ETAG:
        return "unknown tag";
    case WR_CTL_ELONGFORM:
        return "integer, length or count not in its shortest form";
    case WR_CTL_ENAN:
        return "NaN";
    case WR_CTL_EDEPTH:
        return "nested deeper than 16";
    case WR_CTL_ECOUNT:
        return "count larger than the bytes left";
    case WR_CTL_ETOOBIG:
        return "message longer than 1 MiB";
    case WR_CTL_EEMPTY:
        return "empty message";
    case WR_CTL_EABORT:
        return "stopped by the consumer";
    case WR_CTL_EKEY:
        return "map key longer than 255 bytes";
    case WR_CTL_EORDER:
        return "values written out of order";
    case WR_CTL_ENOMEM:
        return "out of memory";
    }
    return "unknown control message error";
}

/* Bytes after the tag in the shortest form of an integer: 0 for 0..127, held by the tag. */
static unsigned int_width(int64_t v)
{
    if (v >= 0 && v < 128) return 0;
    if (v >= INT8_MIN && v <= INT8_MAX) return 1;
    if (v >= INT16_MIN && v <= INT16_MAX) return 2;
    if (v >= INT32_MIN && v <= INT32_MAX) return 4;
    return 8;
}

/* Bytes of the shortest length or count field. */
static unsigned len_width(uint64_t n)
{
    return n <= 0xff ? 1 : n <= 0xffff ? 2 : 4;
}

/* The low two bits of a tag for a field of w bytes. */
static uint8_t width_bits(unsigned w)
{
    return w == 1 ? 0 : w == 2 ? 1 : w == 4 ? 2 : 3;
}

static uint64_t get_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    while (n--)
        v = v << 8 | *p++;
    return v;
}

static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
    while (n--) {
        p[n] = (uint8_t)v;
        v >>= 8;
    }
}

/* ---- decoder ---- */

struct dec {
    const uint8_t *p, *end;
    /* Bytes promised to elements of open containers that have not started: they cannot be
     * spent by the element being read, so nested counts can never over-promise together. */
    size_t reserved;
    int depth;
    const wr_ctl_visitor *v;
    void *ud;
};

#define VISIT(d, cb, ...) ((d)->v->cb && (d)->v->cb((d)->ud, ##__VA_ARGS__) ? WR_CTL_EABORT : 0)

static size_t room(const struct dec *d)
{
    return (size_t)(d->end - d->p) - d->reserved;
}

static const uint8_t *take(struct dec *d, size_t n)
{
    const uint8_t *p = d->p;
    if (n > room(d)) return NULL;
    d->p += n;
    return p;
}

static int value(struct dec *d);

static int key(struct dec *d)
{
    const uint8_t *p = take(d, 1), *s;
    if (!p || !(s = take(d, *p))) return WR_CTL_ETRUNC;
    return VISIT(d, key, s, *p);
}

static int container(struct dec *d, int is_map, uint64_t n)
{
    size_t cost = is_map ? 2 : 1; /* least bytes: a value's tag, and a key's length byte */
    int rc;

    if (d->depth == WR_CTL_MAX_DEPTH) return WR_CTL_EDEPTH;
    if (n > room(d) / cost) return WR_CTL_ECOUNT;
    d->reserved += n * cost;
    rc = is_map ? VISIT(d, map_begin, (uint32_t)n) : VISIT(d, array_begin, (uint32_t)n);
    if (rc) return rc;
    d->depth++;
    for (; n > 0; n--) {
        if (is_map) {
            d->reserved--;
            if ((rc = key(d))) return rc;
        }
        d->reserved--;
        if ((rc = value(d))) return rc;
    }
    d->depth--;
    return VISIT(d, end);
}

static int value(struct dec *d)
{
    const uint8_t *p = take(d, 1);
    unsigned tag, w;
    uint64_t u;
    int64_t i;
    double x;

    if (!p) return WR_CTL_ETRUNC;
    tag = *p;
    if (tag & WR_CTL_SMALL) return VISIT(d, integer, (int64_t)(tag & 0x7f));
    w = 1u << (tag & 3);
    switch (tag & ~3u) {
    case 0:
        if (tag == WR_CTL_NIL) return VISIT(d, nil);
        if (tag != WR_CTL_DOUBLE) return VISIT(d, boolean, tag == WR_CTL_TRUE);
        if (!(p = take(d, 8))) return WR_CTL_ETRUNC;
        u = get_be(p, 8);
        memcpy(&x, &u, sizeof x);
        if (isnan(x)) return WR_CTL_ENAN;
        return VISIT(d, number, x);
    case WR_CTL_INT:
        if (!(p = take(d, w))) return WR_CTL_ETRUNC;
        u = get_be(p, w) << (64 - 8 * w);
        i = (int64_t)u >> (64 - 8 * w); /* sign-extend */
        if (int_width(i) != w) return WR_CTL_ELONGFORM;
        return VISIT(d, integer, i);
    case WR_CTL_STRING:
    case WR_CTL_ARRAY:
    case WR_CTL_MAP:
        if (w == 8) break;
        if (!(p = take(d, w))) return WR_CTL_ETRUNC;
        u = get_be(p, w);
        if (len_width(u) != w) return WR_CTL_ELONGFORM;
        if (tag >= WR_CTL_ARRAY) return container(d, tag >= WR_CTL_MAP, u);
        if (!(p = take(d, u))) return WR_CTL_ETRUNC;
        return VISIT(d, string, p, u);
    }
    return WR_CTL_ETAG;
}

int wr_ctl_decode(const uint8_t *buf, size_t len, const wr_ctl_visitor *v, void *ud,
                  const char **err)
{
    static const wr_ctl_visitor none;
    struct dec d = {buf, buf, 0, 0, v ? v : &none, ud};
    int rc;

    if (len == 0) {
        rc = WR_CTL_ETRUNC;
    } else if (len > WR_CTL_MAX_MESSAGE) {
        rc = WR_CTL_ETOOBIG;
    } else {
        d.end = buf + len;
        if ((rc = value(&d)) == WR_CTL_OK && d.p != d.end) rc = WR_CTL_ETRAILING;
    }
    if (err) *err = rc ? wr_ctl_strerror(rc) : NULL;
    return rc;
}

/* ---- writer ---- */

void wr_ctl_writer_init(wr_ctl_writer *w)
{
    memset(w, 0, sizeof *w);
    w->len = WR_CTL_PREFIX_LEN;
}

void wr_ctl_writer_free(wr_ctl_writer *w)
{
    free(w->buf);
    wr_ctl_writer_init(w);
}

void wr_ctl_writer_reset(wr_ctl_writer *w)
{
    w->len = WR_CTL_PREFIX_LEN;
    w->err = 0;
    w->complete = 0;
    w->depth = 0;
}

/* Records the first failure and returns it. */
static int fail(wr_ctl_writer *w, int rc)
{
    if (!w->err) w->err = rc;
    return w->err;
}

/* Appends n bytes of room, within the message limit. */
static uint8_t *grow(wr_ctl_writer *w, size_t n)
{
    uint8_t *p;
    if (n > WR_CTL_MAX_MESSAGE - (w->len - WR_CTL_PREFIX_LEN)) {
        fail(w, WR_CTL_ETOOBIG);
        return NULL;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
            cap *= 2;
        if (cap > WR_CTL_MAX_MESSAGE + WR_CTL_PREFIX_LEN)
            cap = WR_CTL_MAX_MESSAGE + WR_CTL_PREFIX_LEN;
        if (!(p = realloc(w->buf, cap))) {
            fail(w, WR_CTL_ENOMEM);
            return NULL;
        }
        w->buf = p;
        w->cap = cap;
    }
    p = w->buf + w->len;
    w->len += n;
    return p;
}

/* Room for a value of n bytes, where a value may come next. */
static uint8_t *begin(wr_ctl_writer *w, size_t n)
{
    if (w->err) return NULL;
    if (w->depth == 0 ? w->complete : w->stack[w->depth - 1].want_key) {
        fail(w, WR_CTL_EORDER);
        return NULL;
    }
    return grow(w, n);
}

/* A value is complete: count it, and close the containers it fills. */
static int done(wr_ctl_writer *w)
{
    while (w->depth > 0) {
        wr_ctl_level *l = &w->stack[w->depth - 1];
        l->want_key = l->is_map;
        if (--l->left > 0) return WR_CTL_OK;
        w->depth--;
    }
    w->complete = 1;
    return WR_CTL_OK;
}

int wr_ctl_put_nil(wr_ctl_writer *w)
{
    uint8_t *p = begin(w, 1);
    if (!p) return w->err;
    *p = WR_CTL_NIL;
    return done(w);
}

int wr_ctl_put_bool(wr_ctl_writer *w, int value)
{
    uint8_t *p = begin(w, 1);
    if (!p) return w->err;
    *p = value ? WR_CTL_TRUE : WR_CTL_FALSE;
    return done(w);
}

int wr_ctl_put_int(wr_ctl_writer *w, int64_t value)
{
    unsigned n = int_width(value);
    uint8_t *p = begin(w, 1 + n);
    if (!p) return w->err;
    if (n == 0) {
        *p = (uint8_t)(WR_CTL_SMALL | value);
    } else {
        *p = WR_CTL_INT | width_bits(n);
        put_be(p + 1, (uint64_t)value, n);
    }
    return done(w);
}

int wr_ctl_put_double(wr_ctl_writer *w, double value)
{
    uint64_t u;
    uint8_t *p;
    if (isnan(value)) return fail(w, WR_CTL_ENAN);
    if (!(p = begin(w, 9))) return w->err;
    memcpy(&u, &value, sizeof u);
    *p = WR_CTL_DOUBLE;
    put_be(p + 1, u, 8);
    return done(w);
}

int wr_ctl_put_string(wr_ctl_writer *w, const void *s, size_t len)
{
    unsigned n;
    uint8_t *p;
    if (len > WR_CTL_MAX_MESSAGE) return fail(w, WR_CTL_ETOOBIG);
    n = len_width(len);
    if (!(p = begin(w, 1 + n + len))) return w->err;
    *p = WR_CTL_STRING | width_bits(n);
    put_be(p + 1, len, n);
    if (len) memcpy(p + 1 + n, s, len);
    return done(w);
}

static int put_container(wr_ctl_writer *w, int is_map, uint32_t count)
{
    unsigned n = len_width(count);
    uint64_t least = (uint64_t)count * (is_map ? 2 : 1);
    uint8_t *p;

    if (w->err) return w->err;
    if (w->depth == WR_CTL_MAX_DEPTH) return fail(w, WR_CTL_EDEPTH);
    /* Refuse at once a count the rest of the message could never hold. */
    if (least > WR_CTL_MAX_MESSAGE) return fail(w, WR_CTL_ETOOBIG);
    if (!(p = begin(w, 1 + n + (size_t)least))) return w->err;
    w->len -= (size_t)least; /* only the header is written now */
    *p = (is_map ? WR_CTL_MAP : WR_CTL_ARRAY) | width_bits(n);
    put_be(p + 1, count, n);
    if (count == 0) return done(w);
    w->stack[w->depth++] = (wr_ctl_level){count, (uint8_t)is_map, (uint8_t)is_map};
    return WR_CTL_OK;
}

int wr_ctl_put_array(wr_ctl_writer *w, uint32_t n)
{
    return put_container(w, 0, n);
}

int wr_ctl_put_map(wr_ctl_writer *w, uint32_t n)
{
    return put_container(w, 1, n);
}

int wr_ctl_put_key(wr_ctl_writer *w, const void *s, size_t len)
{
    wr_ctl_level *l = w->depth ? &w->stack[w->depth - 1] : NULL;
    uint8_t *p;
    if (w->err) return w->err;
    if (!l || !l->want_key) return fail(w, WR_CTL_EORDER);
    if (len > WR_CTL_MAX_KEY) return fail(w, WR_CTL_EKEY);
    if (!(p = grow(w, 1 + len))) return w->err;
    *p = (uint8_t)len;
    if (len) memcpy(p + 1, s, len);
    l->want_key = 0;
    return WR_CTL_OK;
}

int wr_ctl_writer_finish(wr_ctl_writer *w, const uint8_t **msg, size_t *len)
{
    if (w->err) return w->err;
    if (!w->complete) return WR_CTL_EORDER;
    put_be(w->buf, w->len - WR_CTL_PREFIX_LEN, WR_CTL_PREFIX_LEN);
    *msg = w->buf;
    *len = w->len;
    return WR_CTL_OK;
}

/* ---- stream reassembly ---- */

void wr_ctl_reader_init(wr_ctl_reader *r)
{
    memset(r, 0, sizeof *r);
}

void wr_ctl_reader_free(wr_ctl_reader *r)
{
    free(r->buf);
    wr_ctl_reader_init(r);
}

int wr_ctl_reader_feed(wr_ctl_reader *r, const uint8_t *data, size_t len, size_t *consumed,
                       const uint8_t **msg, size_t *msg_len)
{
    size_t pos = 0, n;

    *consumed = 0;
    if (r->err) return r->err;
    if (r->delivered) {
        r->delivered = 0;
        r->have = 0;
        if (r->cap > READER_KEEP) {
            free(r->buf);
            r->buf = NULL;
            r->cap = 0;
        }
    }
    while (r->prefix_have < WR_CTL_PREFIX_LEN) {
        if (pos == len) {
            *consumed = len;
            return WR_CTL_NEED_MORE;
        }
        r->prefix[r->prefix_have++] = data[pos++];
    }
    if (r->have == 0) {
        r->want = get_be(r->prefix, WR_CTL_PREFIX_LEN);
        if (r->want == 0) return r->err = WR_CTL_EEMPTY;
        if (r->want > WR_CTL_MAX_MESSAGE) return r->err = WR_CTL_ETOOBIG;
        if (len - pos >= r->want) { /* whole in this chunk: no copy */
            *msg = data + pos;
            *msg_len = r->want;
            *consumed = pos + r->want;
            r->prefix_have = 0;
            return WR_CTL_OK;
        }
    }
    n = len - pos < r->want - r->have ? len - pos : r->want - r->have;
    if (r->have + n > r->cap) {
        /* grow with the bytes that came, never past the announced length */
        size_t cap = r->cap ? r->cap * 2 : 256;
        uint8_t *p;
        if (cap < r->have + n) cap = r->have + n;
        if (cap > r->want) cap = r->want;
        if (!(p = realloc(r->buf, cap))) return r->err = WR_CTL_ENOMEM;
        r->buf = p;
        r->cap = cap;
    }
    if (n) memcpy(r->buf + r->have, data + pos, n);
    r->have += n;
    *consumed = pos + n;
    if (r->have < r->want) return WR_CTL_NEED_MORE;
    *msg = r->buf;
    *msg_len = r->want;
    r->delivered = 1;
    r->prefix_have = 0;
    return WR_CTL_OK;
}
