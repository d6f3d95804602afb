#include "wr_addr.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

void wr_addr_normalize(struct sockaddr_storage *ss)
{
    struct sockaddr_in6 a6;
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    if (ss->ss_family != AF_INET6) return;
    memcpy(&a6, ss, sizeof a6);
    if (!IN6_IS_ADDR_V4MAPPED(&a6.sin6_addr)) return;
    memset(ss, 0, sizeof *ss);
    a4->sin_family = AF_INET;
    a4->sin_port = a6.sin6_port;
    memcpy(&a4->sin_addr, &a6.sin6_addr.s6_addr[12], 4);
}

int wr_addr_key(const struct sockaddr *sa, uint8_t key[WR_ADDR_KEY_LEN])
{
    memset(key, 0, WR_ADDR_KEY_LEN);
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            key[0] = 4;
            memcpy(key + 1, &a->s6_addr[12], 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, a->s6_addr, 8);
        }
        return 0;
    }
    return -1;
}

uint64_t wr_addr_key_hash(const uint8_t key[WR_ADDR_KEY_LEN])
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < WR_ADDR_KEY_LEN; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return h;
}

void wr_addr_format(const struct sockaddr *sa, int with_port, char *out, size_t size)
{
    struct sockaddr_storage ss;
    char ip[64] = "?";
    unsigned port = 0;
    memset(&ss, 0, sizeof ss);
    if (sa->sa_family == AF_INET6)
        memcpy(&ss, sa, sizeof(struct sockaddr_in6));
    else if (sa->sa_family == AF_INET)
        memcpy(&ss, sa, sizeof(struct sockaddr_in));
    wr_addr_normalize(&ss);
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a6, ip, sizeof ip);
        port = ntohs(a6->sin6_port);
    } else if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a4, ip, sizeof ip);
        port = ntohs(a4->sin_port);
    }
    if (!with_port)
        snprintf(out, size, "%s", ip);
    else if (ss.ss_family == AF_INET6)
        snprintf(out, size, "[%s]:%u", ip, port);
    else
        snprintf(out, size, "%s:%u", ip, port);
}
