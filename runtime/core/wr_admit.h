/* Admission of unauthenticated connections: a relay must keep a bounded number of connections
 * that have not proved the key (each holds a descriptor, and failed ones sit in the probe sink for
 * a minute or more), without letting anyone lock real clients out by filling that budget.
 *
 * Every new connection is admitted. When the budget is full, room is made by dropping the oldest
 * entry, never the newcomer: a real client finishes its handshake in one round trip, so it is
 * always among the newest and is dropped only if a whole budget's worth of connections arrives
 * during that round trip. Two budgets apply: one per address (IPv6 by /64, mapped IPv4 as IPv4),
 * so one address churns only its own connections, and one in all. Within each, doomed entries
 * (handshake already failed, or from an address past its failure tally) go before pending ones.
 *
 * The owner embeds a wr_admit_entry in each connection. wr_admit calls evict() for each entry
 * it drops, after unlinking it: the owner then closes that connection (later, from the loop is
 * fine) and must not call wr_admit_remove for it. */
#ifndef WR_ADMIT_H
#define WR_ADMIT_H

#include "wr_addr.h"

#include <stdint.h>

typedef struct wr_admit wr_admit_t;

typedef struct wr_admit_entry {
    struct wr_admit_entry *age_prev, *age_next;   /* in its class, oldest first */
    struct wr_admit_entry *addr_prev, *addr_next; /* in its hash bucket, oldest first */
    uint8_t key[WR_ADDR_KEY_LEN];
    uint8_t state; /* 0 = not admitted, else the class */
} wr_admit_entry;

typedef struct wr_admit_stats {
    uint32_t pending, doomed;  /* admitted now */
    uint64_t evicted_per_addr; /* dropped to keep an address within its budget */
    uint64_t evicted_total;    /* dropped to keep the total within its budget */
} wr_admit_stats;

/* max_total >= 1; max_per_addr 0 = only the total applies. NULL when out of memory. */
wr_admit_t *wr_admit_new(uint32_t max_total, uint32_t max_per_addr,
                         void (*evict)(wr_admit_entry *e, void *data), void *data);
void wr_admit_free(wr_admit_t *a);
/* Admits e (not admitted yet) for the address, dropping older entries first if a budget is full.
 * doomed: the address is past its failure tally. Other families count only in the total. */
void wr_admit_add(wr_admit_t *a, wr_admit_entry *e, const struct sockaddr *sa, int doomed);
/* The connection's handshake failed: it is among the first to go from now on. */
void wr_admit_doom(wr_admit_t *a, wr_admit_entry *e);
/* The connection authenticated or closed: it no longer counts. No-op if not admitted. */
void wr_admit_remove(wr_admit_t *a, wr_admit_entry *e);
void wr_admit_get_stats(const wr_admit_t *a, wr_admit_stats *out);

#endif
