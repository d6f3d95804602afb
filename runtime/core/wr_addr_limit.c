#include "wr_addr_limit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define PROBES 8 /* slots looked at per address */

typedef struct slot {
    uint8_t key[9]; /* family tag + 4 bytes (IPv4) or the /64 prefix (IPv6); all 0 = free */
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

/* 0 and the key, or -1 for families we do not count. */
static int key_of(const struct sockaddr *sa, uint8_t key[9])
{
    memset(key, 0, 9);
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        key[0] = 6;
        memcpy(key + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 8);
        return 0;
    }
    return -1;
}

static size_t hash(const uint8_t key[9])
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < 9; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)h;
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
    uint8_t key[9];
    slot *victim = NULL;
    size_t h;
    if (key_of(sa, key) != 0) return NULL;
    h = hash(key);
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

int wr_addr_limit_blocked(wr_addr_limit_t *l, const struct sockaddr *sa, uint64_t now_ms)
{
    slot *s = l ? find(l, sa, now_ms, 0) : NULL;
    return s && s->failures >= l->max_failures;
}

void wr_addr_limit_fail(wr_addr_limit_t *l, const struct sockaddr *sa, uint64_t now_ms)
{
    slot *s = l ? find(l, sa, now_ms, 1) : NULL;
    if (s && s->failures < UINT32_MAX) s->failures++;
}
