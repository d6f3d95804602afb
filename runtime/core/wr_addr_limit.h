/* Per-address failure counting for a listener: after max_failures failed handshakes from one
 * address within a window, further connections from it are refused at accept, before any read
 * or crypto. IPv6 addresses count by /64, since one host usually holds a whole /64. The table has
 * a fixed number of slots; when it is full, the oldest window nearby is replaced, so a flood of
 * distinct addresses costs memory bounded by the slot count and at worst forgets old offenders. */
#ifndef WR_ADDR_LIMIT_H
#define WR_ADDR_LIMIT_H

#include <stddef.h>
#include <stdint.h>

struct sockaddr;
typedef struct wr_addr_limit wr_addr_limit_t;

/* NULL when out of memory or max_failures == 0 (no limit: the other calls accept NULL). */
wr_addr_limit_t *wr_addr_limit_new(uint32_t max_failures, uint64_t window_ms, size_t slots);
void wr_addr_limit_free(wr_addr_limit_t *l);
/* 1 when the address used up its failures in the current window. */
int wr_addr_limit_blocked(wr_addr_limit_t *l, const struct sockaddr *sa, uint64_t now_ms);
/* Counts one failed handshake from the address. */
void wr_addr_limit_fail(wr_addr_limit_t *l, const struct sockaddr *sa, uint64_t now_ms);

#endif
