/* Per-address failure tally for a listener: failed handshakes counted by address within a
 * window. An address past max_failures is only marked, never refused: a legitimate client behind
 * the same NAT as a prober must still get in, so the relay uses the mark to choose whose
 * unauthenticated connections go first when it must drop some (wr_admit), and logs it. IPv6
 * addresses count by /64, IPv4-mapped ones as IPv4 (wr_addr_key). The table has a fixed number of
 * slots; when it is full, the oldest window nearby is replaced, so a flood of distinct addresses
 * costs memory bounded by the slot count and at worst forgets old offenders. */
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
int wr_addr_limit_over(wr_addr_limit_t *l, const struct sockaddr *sa, uint64_t now_ms);
/* Counts one failed handshake from the address; 1 when this one reached max_failures (once per
 * window, so a caller can log it without flooding the log). */
int wr_addr_limit_fail(wr_addr_limit_t *l, const struct sockaddr *sa, uint64_t now_ms);

#endif
