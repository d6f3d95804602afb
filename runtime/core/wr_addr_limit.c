#include "wr_addr_limit.h"

#include "wr_addr.h"

#include <stdlib.h>
#include <string.h>

#define PROBES 8 /* slots looked at per address */

typedef struct slot {
    uint8_t key[WR_ADDR_KEY_LEN]; /* wr_addr_key; all 0 = free */
    uint32_t failures;
    uint64_t window_start;
} slot;

struct wr_addr_limit {
    uint32_t max_failures;
    uint64_t window_ms;
    size_t nslots;
    slot slots[];
};

wr_addr_limit_t *wr_addr_limit_new(uint32_t max_failures, uint64_t window_ms, size_t slots)
{
    wr_addr_limit_t *l;
    if (max_failures == 0 || slots == 0) return NULL;
    l = calloc(1, sizeof *l + slots * sizeof(slot));
    if (!l) return NULL;
    l->max_failures = max_failures;
    l->window_ms = window_ms;
    l->nslots = slots;
    return l;
}

void wr_addr_limit_free(wr_addr_limit_t *l)
{
    free(l);
}

/* Which slot to give up for a new address: a free one, else an expired one, else the oldest. */
static int rank(const wr_addr_limit_t *l, const slot *s, uint64_t now)
{
    if (s->key[0] == 0) return 0;
    return now - s->window_start >= l->window_ms ? 1 : 2;
}

/* The address's slot (its window restarted if it expired), or with create a slot claimed for
 * it; NULL for other families or when absent. */
static slot *find(wr_addr_limit_t *l, const struct sockaddr *sa, uint64_t now, int create)
{
    uint8_t key[WR_ADDR_KEY_LEN];
    slot *victim = NULL;
    size_t h;
    if (wr_addr_key(sa, key) != 0) return NULL;
    h = (size_t)wr_addr_key_hash(key);
    for (size_t i = 0; i < PROBES; i++) {
        slot *s = &l->slots[(h + i) % l->nslots];
        if (memcmp(s->key, key, sizeof key) == 0) {
            if (now - s->window_start >= l->window_ms) {
                s->failures = 0;
                s->window_start = now;
            }
            return s;
        }
        if (!victim || rank(l, s, now) < rank(l, victim, now) ||
            (rank(l, s, now) == rank(l, victim, now) && s->window_start < victim->window_start))
            victim = s;
    }
    if (!create) return NULL;
    memcpy(victim->key, key, sizeof key);
    victim->failures = 0;
    victim->window_start = now;
    return victim;
}

int wr_addr_limit_over(wr_addr_limit_t *l, const struct sockaddr *sa, uint64_t now_ms)
{
    slot *s = l ? find(l, sa, now_ms, 0) : NULL;
    return s && s->failures >= l->max_failures;
}

int wr_addr_limit_fail(wr_addr_limit_t *l, const struct sockaddr *sa, uint64_t now_ms)
{
    slot *s = l ? find(l, sa, now_ms, 1) : NULL;
    if (!s || s->failures == UINT32_MAX) return 0;
    return ++s->failures == l->max_failures;
}
