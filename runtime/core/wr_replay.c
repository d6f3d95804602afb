#include "wr_replay.h"

#include "wr_crypto.h"

#include <stdlib.h>
#include <string.h>

struct entry {
    uint8_t salt[WR_REPLAY_KEY_LEN];
    uint64_t expires; /* 0 = never used; < now = expired, reusable, but probing goes past it */
};

struct wr_replay {
    struct entry *slots;
    size_t size;     /* power of two */
    size_t max_size; /* keeps the load at the cap under one half */
    size_t used;     /* slots with expires != 0, live or not: an upper bound of the live count */
    size_t cap;
    uint64_t min_expires; /* no entry expires before this (may be stale low: only costs a scan) */
    uint8_t key[16];
};

#define INITIAL_SIZE 1024u

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

uint64_t wr_siphash24(const uint8_t key[16], const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
    uint64_t m, b = (uint64_t)len << 56;
    size_t i, full = len & ~(size_t)7;

    for (i = 0; i < full; i += 8) {
        m = load_le64(p + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; j < (len & 7); j++)
        b |= (uint64_t)p[full + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

int wr_replay_new(wr_replay **out, size_t cap)
{
    wr_replay *r;
    *out = NULL;
    if (cap == 0) cap = WR_REPLAY_DEFAULT_CAP;
    if (cap > ((size_t)1 << 30)) return WR_REPLAY_ENOMEM;
    r = calloc(1, sizeof *r);
    if (!r) return WR_REPLAY_ENOMEM;
    r->cap = cap;
    r->max_size = INITIAL_SIZE;
    while (r->max_size < 2 * cap)
        r->max_size *= 2;
    r->size = INITIAL_SIZE;
    r->min_expires = UINT64_MAX;
    r->slots = calloc(r->size, sizeof *r->slots);
    if (!r->slots || wr_random(r->key, sizeof r->key)) {
        free(r->slots);
        free(r);
        return WR_REPLAY_ENOMEM;
    }
    *out = r;
    return 0;
}

void wr_replay_free(wr_replay *r)
{
    if (!r) return;
    free(r->slots);
    free(r);
}

static size_t home(const wr_replay *r, const uint8_t *salt)
{
    return (size_t)wr_siphash24(r->key, salt, WR_REPLAY_KEY_LEN) & (r->size - 1);
}

int wr_replay_seen(const wr_replay *r, const uint8_t salt[WR_REPLAY_KEY_LEN], uint64_t now)
{
    size_t mask = r->size - 1;
    for (size_t i = home(r, salt);; i = (i + 1) & mask) {
        const struct entry *e = &r->slots[i];
        if (e->expires == 0) return 0;
        if (memcmp(e->salt, salt, WR_REPLAY_KEY_LEN) == 0) return e->expires >= now;
    }
}

size_t wr_replay_count(const wr_replay *r, uint64_t now)
{
    size_t n = 0;
    for (size_t i = 0; i < r->size; i++)
        n += r->slots[i].expires != 0 && r->slots[i].expires >= now;
    return n;
}

/* Rehash the live entries into a table of new_size slots, dropping expired ones. */
static int rebuild(wr_replay *r, size_t new_size, uint64_t now)
{
    struct entry *old = r->slots, *slots = calloc(new_size, sizeof *slots);
    size_t old_size = r->size, mask = new_size - 1;
    uint64_t min_exp = UINT64_MAX;
    if (!slots) return WR_REPLAY_ENOMEM;
    r->slots = slots;
    r->size = new_size;
    r->used = 0;
    for (size_t i = 0; i < old_size; i++) {
        size_t j;
        if (old[i].expires == 0 || old[i].expires < now) continue;
        for (j = home(r, old[i].salt); slots[j].expires != 0; j = (j + 1) & mask) {}
        slots[j] = old[i];
        r->used++;
        if (old[i].expires < min_exp) min_exp = old[i].expires;
    }
    free(old);
    r->min_expires = min_exp;
    return 0;
}

/* Make sure one more entry fits under the cap and the load limit. */
static int make_room(wr_replay *r, uint64_t now)
{
    size_t live, size;
    if (r->used < r->cap && (r->used + 1) * 4 <= r->size * 3) return 0;
    /* At the cap and before the earliest expiry nothing can have expired: refuse without a
     * scan, so a full set costs at most one scan per second. */
    if (r->used >= r->cap && now <= r->min_expires) return WR_REPLAY_EFULL;
    live = wr_replay_count(r, now);
    size = r->size;
    while ((live + 1) * 2 > size && size < r->max_size)
        size *= 2;
    if (rebuild(r, size, now)) return WR_REPLAY_ENOMEM;
    return r->used >= r->cap ? WR_REPLAY_EFULL : 0;
}

int wr_replay_insert(wr_replay *r, const uint8_t salt[WR_REPLAY_KEY_LEN], uint64_t expires,
                     uint64_t now)
{
    size_t mask, reuse = SIZE_MAX, i;
    int rc;
    if (expires == 0) expires = 1; /* 0 marks an empty slot */
    if (wr_replay_seen(r, salt, now)) return WR_REPLAY_EXISTS;
    rc = make_room(r, now);
    if (rc) return rc;
    mask = r->size - 1;
    for (i = home(r, salt); r->slots[i].expires != 0; i = (i + 1) & mask) {
        struct entry *e = &r->slots[i];
        if (memcmp(e->salt, salt, WR_REPLAY_KEY_LEN) == 0) {
            e->expires = expires; /* the same salt, expired: revive in place */
            if (expires < r->min_expires) r->min_expires = expires;
            return 0;
        }
        if (e->expires < now && reuse == SIZE_MAX) reuse = i;
    }
    if (reuse == SIZE_MAX) {
        reuse = i;
        r->used++;
    }
    memcpy(r->slots[reuse].salt, salt, WR_REPLAY_KEY_LEN);
    r->slots[reuse].expires = expires;
    if (expires < r->min_expires) r->min_expires = expires;
    return 0;
}
