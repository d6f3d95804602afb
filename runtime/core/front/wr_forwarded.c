#include "wr_forwarded.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

int wr_trusted_parse(const char *text, wr_trusted_t *out)
{
    char ip[64];
    const char *slash = strchr(text, '/');
    size_t len = slash ? (size_t)(slash - text) : strlen(text);
    unsigned max;
    memset(out, 0, sizeof *out);
    if (len == 0 || len >= sizeof ip) return UV_EINVAL;
    memcpy(ip, text, len);
    ip[len] = '\0';
    if (uv_inet_pton(AF_INET, ip, out->addr) == 0) {
        out->family = AF_INET;
        max = 32;
    } else if (uv_inet_pton(AF_INET6, ip, out->addr) == 0) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return UV_EINVAL;
    }
    out->bits = max;
    if (slash) {
        char *end;
        unsigned long bits = strtoul(slash + 1, &end, 10);
        if (end == slash + 1 || *end || bits > max) return UV_EINVAL;
        out->bits = (unsigned)bits;
    }
    return 0;
}

/* The address bytes of sa, IPv4-mapped forms as IPv4: family, or 0. */
static int address_of(const struct sockaddr *sa, uint8_t addr[16])
{
    if (sa->sa_family == AF_INET) {
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(addr, a->s6_addr + 12, 4);
            return AF_INET;
        }
        memcpy(addr, a->s6_addr, 16);
        return AF_INET6;
    }
    return 0;
}

int wr_trusted_match(const wr_trusted_t *list, size_t n, const struct sockaddr *sa)
{
    uint8_t addr[16];
    int family = address_of(sa, addr);
    for (size_t i = 0; family && i < n; i++) {
        const wr_trusted_t *t = &list[i];
        unsigned full = t->bits / 8, rest = t->bits % 8;
        if (t->family != family || memcmp(t->addr, addr, full) != 0) continue;
        if (rest && ((t->addr[full] ^ addr[full]) & (0xff00 >> rest) & 0xff)) continue;
        return 1;
    }
    return 0;
}

/* One address as a front writes it: "1.2.3.4", "1.2.3.4:80", "2001:db8::1", "[2001:db8::1]",
 * "[2001:db8::1]:80", optionally in double quotes (Forwarded). 0 and *out, or -1. */
static int parse_node(const char *p, size_t len, struct sockaddr_storage *out)
{
    char ip[64], digits[8];
    unsigned long port = 0;
    const char *port_text = NULL, *end = p + len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (end - p >= 2 && p[0] == '"' && end[-1] == '"') {
        p++;
        end--;
    }
    const char *host = p, *host_end = end;
    if (p < end && p[0] == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close) return -1;
        if (close + 1 < end) {
            if (close[1] != ':') return -1;
            port_text = close + 2;
        }
        host = p + 1;
        host_end = close;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (colon && !memchr(colon + 1, ':', (size_t)(end - colon - 1))) { /* IPv4:port */
            port_text = colon + 1;
            host_end = colon;
        }
    }
    if (host_end <= host || (size_t)(host_end - host) >= sizeof ip) return -1;
    memcpy(ip, host, (size_t)(host_end - host));
    ip[host_end - host] = '\0';
    if (port_text) {
        size_t n = (size_t)(end - port_text);
        char *stop;
        if (n == 0 || n >= sizeof digits) return -1;
        memcpy(digits, port_text, n);
        digits[n] = '\0';
        port = strtoul(digits, &stop, 10);
        if (*stop || digits[0] < '0' || digits[0] > '9' || port > 65535) return -1;
    }
    memset(out, 0, sizeof *out);
    if (uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)out) == 0) return 0;
    if (uv_ip6_addr(ip, (int)port, (struct sockaddr_in6 *)out) == 0) return 0;
    return -1;
}

/* Walks a comma-separated list from the right; for Forwarded, each element's for= parameter. */
static int walk(const char *v, size_t len, int forwarded, const wr_trusted_t *list, size_t n,
                struct sockaddr_storage *out)
{
    size_t end = len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && v[start - 1] != ',')
            start--;
        const char *e = v + start;
        size_t elen = end - start;
        if (forwarded) { /* for=...; proto=...; by=... */
            const char *f = NULL;
            for (size_t i = 0; i + 4 <= elen; i++)
                if ((i == 0 || e[i - 1] == ';' || e[i - 1] == ' ') &&
                    (e[i] == 'f' || e[i] == 'F') && (e[i + 1] == 'o' || e[i + 1] == 'O') &&
                    (e[i + 2] == 'r' || e[i + 2] == 'R') && e[i + 3] == '=') {
                    f = e + i + 4;
                    break;
                }
            if (!f) return -1;
            const char *semi = memchr(f, ';', (size_t)(e + elen - f));
            elen = (size_t)((semi ? semi : e + elen) - f);
            e = f;
        }
        if (parse_node(e, elen, out) != 0) return -1;
        if (!wr_trusted_match(list, n, (struct sockaddr *)out)) return 0;
        end = start ? start - 1 : 0;
    }
    return -1; /* every hop was trusted: the front itself is the client */
}

/* The last field of that name: a front that adds a line rather than extending the user's puts its
 * own last. */
static const wr_http_field_t *last_field(const wr_http_head_t *h, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = h->nfields; i-- > 0;)
        if (h->fields[i].name_len == len && strncasecmp(h->fields[i].name, name, len) == 0)
            return &h->fields[i];
    return NULL;
}

int wr_forwarded_client(const wr_http_head_t *h, const wr_trusted_t *list, size_t n,
                        struct sockaddr_storage *out)
{
    const wr_http_field_t *f = last_field(h, "X-Forwarded-For");
    if (f) return walk(f->value, f->value_len, 0, list, n, out);
    f = last_field(h, "Forwarded");
    if (f) return walk(f->value, f->value_len, 1, list, n, out);
    return -1;
}
