/* The user's real address behind a front the operator trusts (nginx, a load balancer, a CDN):
 * such a front connects from its own address and names the user in X-Forwarded-For or Forwarded
 * (RFC 7239). Only a connection from a trusted address is believed, and the list is walked from
 * the right past trusted hops, since anything left of the first untrusted entry is whatever the
 * user chose to send. Pure, so it is fuzzed with the other heads. */
#ifndef WR_FORWARDED_H
#define WR_FORWARDED_H

#include "wr_http_head.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct wr_trusted {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned bits; /* prefix length */
} wr_trusted_t;

/* "ADDR" or "ADDR/BITS" (IPv4 or IPv6). 0, or UV_EINVAL. */
int wr_trusted_parse(const char *text, wr_trusted_t *out);
/* Whether sa (IPv4-mapped forms count as IPv4) lies in one of list[0..n). */
int wr_trusted_match(const wr_trusted_t *list, size_t n, const struct sockaddr *sa);

/* The client a trusted front names in h: the rightmost address of X-Forwarded-For (or, without
 * it, of Forwarded's for= parameters) that is not itself trusted. 0 with *out set (port 0 unless
 * Forwarded gives one), or -1: no such field, or an entry that is not an address (a front that
 * hides the user, "unknown", an obfuscated name): the caller keeps the front's address. */
int wr_forwarded_client(const wr_http_head_t *h, const wr_trusted_t *list, size_t n,
                        struct sockaddr_storage *out);

#endif
