/* Live connections counted per address (IPv6 by /64, mapped IPv4 as IPv4: wr_addr_key), so a
 * listener can cap what one address holds at once, as web servers cap connections per client
 * address: one slowloris source then holds its share, not the whole service. */
#ifndef WR_ADDR_COUNT_H
#define WR_ADDR_COUNT_H

#include <stdint.h>
#include <sys/socket.h>

typedef struct wr_addr_count wr_addr_count_t;

wr_addr_count_t *wr_addr_count_new(void); /* NULL when out of memory */
void wr_addr_count_free(wr_addr_count_t *c);
/* Counts one more connection from sa unless it already has limit (0 = no limit): 0, or -1 when
 * the address is at its limit or memory runs out (nothing counted then). */
int wr_addr_count_add(wr_addr_count_t *c, const struct sockaddr *sa, uint32_t limit);
/* One connection from sa ended (it was counted by wr_addr_count_add). */
void wr_addr_count_remove(wr_addr_count_t *c, const struct sockaddr *sa);

#endif
