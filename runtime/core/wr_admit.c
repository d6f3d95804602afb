#include "wr_admit.h"

#include <stdlib.h>
#include <string.h>

enum { NOT_ADMITTED = 0, DOOMED = 1, PENDING = 2 }; /* class order = eviction order */

typedef struct age_list {
    wr_admit_entry *head, *tail;
    uint32_t count;
} age_list;

typedef struct bucket {
    wr_admit_entry *head, *tail;
} bucket;

struct wr_admit {
    uint32_t max_total, max_per_addr;
    void (*evict)(wr_admit_entry *e, void *data);
    void *data;
    age_list classes[3]; /* indexed by state; [NOT_ADMITTED] unused */
    uint64_t evicted_per_addr, evicted_total;
    size_t nbuckets; /* a power of two */
    bucket buckets[];
};

wr_admit_t *wr_admit_new(uint32_t max_total, uint32_t max_per_addr,
                         void (*evict)(wr_admit_entry *e, void *data), void *data)
{
    size_t n = 64;
    wr_admit_t *a;
    if (max_total == 0 || !evict) return NULL;
    while (n < 2 * (size_t)max_total && n < (1u << 20))
        n <<= 1;
    a = calloc(1, sizeof *a + n * sizeof(bucket));
    if (!a) return NULL;
    a->max_total = max_total;
    a->max_per_addr = max_per_addr;
    a->evict = evict;
    a->data = data;
    a->nbuckets = n;
    return a;
}

void wr_admit_free(wr_admit_t *a)
{
    free(a);
}

static bucket *bucket_of(wr_admit_t *a, const uint8_t key[WR_ADDR_KEY_LEN])
{
    return &a->buckets[wr_addr_key_hash(key) & (a->nbuckets - 1)];
}

static void age_push(age_list *l, wr_admit_entry *e)
{
    e->age_next = NULL;
    e->age_prev = l->tail;
    if (l->tail)
        l->tail->age_next = e;
    else
        l->head = e;
    l->tail = e;
    l->count++;
}

static void age_unlink(age_list *l, wr_admit_entry *e)
{
    if (e->age_prev)
        e->age_prev->age_next = e->age_next;
    else
        l->head = e->age_next;
    if (e->age_next)
        e->age_next->age_prev = e->age_prev;
    else
        l->tail = e->age_prev;
    l->count--;
}

static void unlink_entry(wr_admit_t *a, wr_admit_entry *e)
{
    bucket *b = bucket_of(a, e->key);
    age_unlink(&a->classes[e->state], e);
    if (e->addr_prev)
        e->addr_prev->addr_next = e->addr_next;
    else
        b->head = e->addr_next;
    if (e->addr_next)
        e->addr_next->addr_prev = e->addr_prev;
    else
        b->tail = e->addr_prev;
    e->state = NOT_ADMITTED;
}

static void drop(wr_admit_t *a, wr_admit_entry *e)
{
    unlink_entry(a, e);
    a->evict(e, a->data);
}

/* The address's oldest doomed entry, else its oldest pending one; sets *count to its entries. */
static wr_admit_entry *oldest_of(wr_admit_t *a, const uint8_t key[WR_ADDR_KEY_LEN], uint32_t *count)
{
    wr_admit_entry *first_doomed = NULL, *first = NULL;
    *count = 0;
    for (wr_admit_entry *e = bucket_of(a, key)->head; e; e = e->addr_next) {
        if (memcmp(e->key, key, WR_ADDR_KEY_LEN) != 0) continue;
        (*count)++;
        if (!first) first = e;
        if (!first_doomed && e->state == DOOMED) first_doomed = e;
    }
    return first_doomed ? first_doomed : first;
}

void wr_admit_add(wr_admit_t *a, wr_admit_entry *e, const struct sockaddr *sa, int doomed)
{
    bucket *b;
    if (wr_addr_key(sa, e->key) == 0 && a->max_per_addr) {
        uint32_t count;
        wr_admit_entry *victim = oldest_of(a, e->key, &count);
        if (count >= a->max_per_addr) {
            a->evicted_per_addr++;
            drop(a, victim);
        }
    }
    if (a->classes[DOOMED].count + a->classes[PENDING].count >= a->max_total) {
        wr_admit_entry *victim =
            a->classes[DOOMED].head ? a->classes[DOOMED].head : a->classes[PENDING].head;
        a->evicted_total++;
        drop(a, victim);
    }
    e->state = doomed ? DOOMED : PENDING;
    age_push(&a->classes[e->state], e);
    b = bucket_of(a, e->key);
    e->addr_next = NULL;
    e->addr_prev = b->tail;
    if (b->tail)
        b->tail->addr_next = e;
    else
        b->head = e;
    b->tail = e;
}

void wr_admit_doom(wr_admit_t *a, wr_admit_entry *e)
{
    if (e->state != PENDING) return;
    /* Moving classes keeps its place among its address's entries (the bucket order). */
    age_unlink(&a->classes[PENDING], e);
    e->state = DOOMED;
    age_push(&a->classes[DOOMED], e);
}

void wr_admit_remove(wr_admit_t *a, wr_admit_entry *e)
{
    if (e->state != NOT_ADMITTED) unlink_entry(a, e);
}

void wr_admit_get_stats(const wr_admit_t *a, wr_admit_stats *out)
{
    out->pending = a->classes[PENDING].count;
    out->doomed = a->classes[DOOMED].count;
    out->evicted_per_addr = a->evicted_per_addr;
    out->evicted_total = a->evicted_total;
}
