#include "wr_addr_count.h"

#include "wr_addr.h"

#include <stdlib.h>
#include <string.h>

#define BUCKETS 256 /* chains stay short for the few thousand addresses a listener holds */

typedef struct node {
    uint8_t key[WR_ADDR_KEY_LEN];
    uint32_t count;
    struct node *next;
} node;

struct wr_addr_count {
    node *buckets[BUCKETS];
};

wr_addr_count_t *wr_addr_count_new(void)
{
    return calloc(1, sizeof(wr_addr_count_t));
}

void wr_addr_count_free(wr_addr_count_t *c)
{
    if (!c) return;
    for (int i = 0; i < BUCKETS; i++) {
        node *n = c->buckets[i];
        while (n) {
            node *next = n->next;
            free(n);
            n = next;
        }
    }
    free(c);
}

static node **slot_of(wr_addr_count_t *c, const uint8_t key[WR_ADDR_KEY_LEN])
{
    node **p;
    for (p = &c->buckets[wr_addr_key_hash(key) % BUCKETS]; *p; p = &(*p)->next)
        if (memcmp((*p)->key, key, WR_ADDR_KEY_LEN) == 0) break;
    return p;
}

int wr_addr_count_add(wr_addr_count_t *c, const struct sockaddr *sa, uint32_t limit)
{
    uint8_t key[WR_ADDR_KEY_LEN];
    node **p;
    if (wr_addr_key(sa, key) != 0) return 0; /* other families are not counted */
    p = slot_of(c, key);
    if (*p) {
        if (limit && (*p)->count >= limit) return -1;
        (*p)->count++;
        return 0;
    }
    *p = calloc(1, sizeof(node));
    if (!*p) return -1;
    memcpy((*p)->key, key, WR_ADDR_KEY_LEN);
    (*p)->count = 1;
    return 0;
}

void wr_addr_count_remove(wr_addr_count_t *c, const struct sockaddr *sa)
{
    uint8_t key[WR_ADDR_KEY_LEN];
    node **p, *gone;
    if (wr_addr_key(sa, key) != 0) return;
    p = slot_of(c, key);
    if (!*p) return;
    if (--(*p)->count > 0) return;
    gone = *p;
    *p = gone->next;
    free(gone);
}
