/* Peer addresses as the relay counts and shows them. A dual-stack listener ([::]) sees IPv4
 * peers as IPv4-mapped IPv6 (::ffff:a.b.c.d); they are turned back into IPv4 here, so limits,
 * hooks and logs see one form of each address. */
#ifndef WR_ADDR_H
#define WR_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Family tag + 4 bytes (IPv4) or the /64 prefix (IPv6: one host usually holds a whole /64). */
#define WR_ADDR_KEY_LEN 9

/* Rewrites an IPv4-mapped IPv6 address (port kept) as AF_INET in place. */
void wr_addr_normalize(struct sockaddr_storage *ss);
/* The counting key of an address (mapped forms count as IPv4): 0, or -1 for other families. */
int wr_addr_key(const struct sockaddr *sa, uint8_t key[WR_ADDR_KEY_LEN]);
/* The hash of a key, for the tables that count by address (FNV-1a over the short key). */
uint64_t wr_addr_key_hash(const uint8_t key[WR_ADDR_KEY_LEN]);
/* "1.2.3.4" / "::1", with with_port "1.2.3.4:80" / "[::1]:80"; mapped forms print as IPv4. */
void wr_addr_format(const struct sockaddr *sa, int with_port, char *out, size_t size);

#endif
