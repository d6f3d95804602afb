#include "wr_proxy_req.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

enum {
    ST_START = 0,
    ST_S5_GREET,
    ST_S5_AUTH,
    ST_S5_REQ,
    ST_S4,
    ST_HTTP,
    ST_DONE,
    ST_ERROR,
};

#define S4_ID_MAX 255 /* SOCKS4 userid; SOCKS4a hostnames are bounded by WR_PROXY_HOST_MAX */

/* ---- small helpers ---- */

static int is_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

static int eq_ci(const char *a, size_t n, const char *lit)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (lit[i] == '\0' || lower((unsigned char)a[i]) != lower((unsigned char)lit[i])) return 0;
    return lit[n] == '\0';
}

/* RFC 9110 token characters (methods, header names). */
static int is_tchar(int c)
{
    return is_alnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Compares without stopping at the first difference, so a wrong password takes as long as a
 * nearly right one. */
static int same_secret(const uint8_t *a, size_t an, const char *b, size_t bn)
{
    unsigned diff = an != bn;
    size_t i, n = an < bn ? an : bn;
    for (i = 0; i < n; i++)
        diff |= (unsigned)(a[i] ^ (uint8_t)b[i]);
    return diff == 0;
}

/* A DNS name (RFC 1123 labels, '_' tolerated), a dotted IPv4 literal, or an IPv6 literal (no
 * zone): the same hosts the relay's target parser accepts, so a bad one fails here, early. */
static int check_host(const char *h, size_t n, int *ipv6)
{
    char tmp[WR_PROXY_HOST_MAX + 1];
    size_t i, label = 0;
    int numeric = 1;

    if (n == 0 || n > WR_PROXY_HOST_MAX) return 0;
    memcpy(tmp, h, n);
    tmp[n] = '\0';
    *ipv6 = 0;
    if (memchr(h, ':', n)) {
        struct in6_addr a6;
        *ipv6 = 1;
        return inet_pton(AF_INET6, tmp, &a6) == 1;
    }
    for (i = 0; i < n; i++) {
        int c = (unsigned char)h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-') return 0;
            label = 0;
            continue;
        }
        if (!is_alnum(c) && c != '-' && c != '_') return 0;
        if (label == 0 && c == '-') return 0;
        if (++label > 63) return 0;
        if (c < '0' || c > '9') numeric = 0;
    }
    if (h[n - 1] == '-') return 0;
    if (numeric) {
        struct in_addr a4;
        return inet_pton(AF_INET, tmp, &a4) == 1;
    }
    return 1;
}

static int set_host(wr_proxy_req *p, const char *h, size_t n)
{
    if (!check_host(h, n, &p->ipv6)) return 0;
    memcpy(p->host, h, n);
    p->host[n] = '\0';
    return 1;
}

/* Copies bytes until the current message has `need` bytes; 1 once it has. */
static int take(wr_proxy_req *p, const uint8_t *data, size_t len, size_t *off, size_t need)
{
    size_t n = need > p->have ? need - p->have : 0;
    if (n > len - *off) n = len - *off;
    memcpy(p->buf + p->have, data + *off, n);
    p->have += n;
    *off += n;
    return p->have >= need;
}

static enum wr_proxy_status send_bytes(wr_proxy_req *p, int next_state, const uint8_t *bytes,
                                       size_t n)
{
    memcpy(p->reply, bytes, n);
    p->reply_len = n;
    p->state = next_state;
    p->have = 0;
    return WR_PROXY_SEND;
}

static enum wr_proxy_status fail_bytes(wr_proxy_req *p, const char *reason, const uint8_t *bytes,
                                       size_t n)
{
    memcpy(p->reply, bytes, n);
    p->reply_len = n;
    p->reason = reason;
    p->state = ST_ERROR;
    return WR_PROXY_ERROR;
}

static enum wr_proxy_status fail_class(wr_proxy_req *p, enum wr_proxy_fail fail, const char *reason)
{
    p->reply_len = wr_proxy_reply(p->kind, fail, reason, p->reply, sizeof p->reply);
    p->reason = reason;
    p->state = ST_ERROR;
    return WR_PROXY_ERROR;
}

static enum wr_proxy_status done(wr_proxy_req *p)
{
    p->state = ST_DONE;
    return WR_PROXY_DONE;
}

/* ---- SOCKS5 ---- */

static enum wr_proxy_status s5_greet(wr_proxy_req *p, const uint8_t *d, size_t len, size_t *off)
{
    static const uint8_t no_method[2] = {5, 0xff};
    int offers_none = 0, offers_auth = 0;
    size_t i;

    if (!take(p, d, len, off, 2)) return WR_PROXY_NEED_MORE;
    if (p->buf[1] == 0) return fail_bytes(p, "SOCKS5 greeting lists no method", no_method, 2);
    if (!take(p, d, len, off, 2u + p->buf[1])) return WR_PROXY_NEED_MORE;
    for (i = 0; i < p->buf[1]; i++) {
        offers_none |= p->buf[2 + i] == 0;
        offers_auth |= p->buf[2 + i] == 2;
    }
    /* Without configured credentials, a client that only offers username/password is let in
     * with whatever it sends. */
    if (offers_none && !p->user) return send_bytes(p, ST_S5_REQ, (const uint8_t[]){5, 0}, 2);
    if (offers_auth) return send_bytes(p, ST_S5_AUTH, (const uint8_t[]){5, 2}, 2);
    return fail_bytes(p,
                      p->user ? "SOCKS5 client does not offer username/password"
                              : "SOCKS5 client offers no usable method",
                      no_method, 2);
}

static enum wr_proxy_status s5_auth(wr_proxy_req *p, const uint8_t *d, size_t len, size_t *off)
{
    static const uint8_t denied[2] = {1, 1};
    size_t ulen, plen;

    if (!take(p, d, len, off, 2)) return WR_PROXY_NEED_MORE;
    if (p->buf[0] != 1) return fail_bytes(p, "bad SOCKS5 username/password version", denied, 2);
    ulen = p->buf[1];
    if (!take(p, d, len, off, 3 + ulen)) return WR_PROXY_NEED_MORE;
    plen = p->buf[2 + ulen];
    if (!take(p, d, len, off, 3 + ulen + plen)) return WR_PROXY_NEED_MORE;
    if (p->user && !(same_secret(p->buf + 2, ulen, p->user, p->user_len) &
                     same_secret(p->buf + 3 + ulen, plen, p->password, p->password_len)))
        return fail_bytes(p, "wrong SOCKS5 username or password", denied, 2);
    return send_bytes(p, ST_S5_REQ, (const uint8_t[]){1, 0}, 2);
}

static enum wr_proxy_status s5_request(wr_proxy_req *p, const uint8_t *d, size_t len, size_t *off)
{
    static const uint8_t bad_atyp[10] = {5, 8, 0, 1};
    size_t alen, need;
    const uint8_t *a;

    if (!take(p, d, len, off, 4)) return WR_PROXY_NEED_MORE;
    if (p->buf[0] != 5) return fail_class(p, WR_PROXY_FAIL_BAD_REQUEST, "bad SOCKS5 version");
    switch (p->buf[3]) {
    case 1:
        need = 4 + 4 + 2;
        break;
    case 4:
        need = 4 + 16 + 2;
        break;
    case 3:
        if (!take(p, d, len, off, 5)) return WR_PROXY_NEED_MORE;
        need = 5 + (size_t)p->buf[4] + 2;
        break;
    default:
        return fail_bytes(p, "SOCKS5 address type not supported", bad_atyp, sizeof bad_atyp);
    }
    if (!take(p, d, len, off, need)) return WR_PROXY_NEED_MORE;
    if (p->buf[1] != 1) /* BIND, UDP ASSOCIATE and anything unknown */
        return fail_class(p, WR_PROXY_FAIL_UNSUPPORTED, "SOCKS5 command not supported");
    a = p->buf + 4;
    p->port = (uint16_t)(p->buf[need - 2] << 8 | p->buf[need - 1]);
    if (p->buf[3] == 1) {
        inet_ntop(AF_INET, a, p->host, sizeof p->host);
        p->ipv6 = 0;
    } else if (p->buf[3] == 4) {
        inet_ntop(AF_INET6, a, p->host, sizeof p->host);
        p->ipv6 = 1;
    } else {
        alen = a[0];
        if (!set_host(p, (const char *)a + 1, alen))
            return fail_class(p, WR_PROXY_FAIL_BAD_REQUEST, "bad SOCKS5 host name");
    }
    if (p->port == 0) return fail_class(p, WR_PROXY_FAIL_BAD_REQUEST, "SOCKS5 port 0");
    return done(p);
}

/* ---- SOCKS4 / SOCKS4a ---- */

static enum wr_proxy_status s4_finish(wr_proxy_req *p, size_t id_end)
{
    const uint8_t *ip = p->buf + 4;
    if (p->buf[1] != 1)
        return fail_class(p, WR_PROXY_FAIL_UNSUPPORTED, "SOCKS4 BIND not supported");
    if (p->user) return fail_class(p, WR_PROXY_FAIL_NOT_ALLOWED, "SOCKS4 cannot authenticate");
    p->port = (uint16_t)(p->buf[2] << 8 | p->buf[3]);
    if (ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && ip[3] != 0) {
        /* 4a: the name follows the userid, NUL-terminated */
        if (!set_host(p, (const char *)p->buf + id_end, p->have - id_end - 1))
            return fail_class(p, WR_PROXY_FAIL_BAD_REQUEST, "bad SOCKS4a host name");
    } else {
        if (ip[0] == 0) return fail_class(p, WR_PROXY_FAIL_BAD_REQUEST, "SOCKS4 address 0.x.x.x");
        inet_ntop(AF_INET, ip, p->host, sizeof p->host);
        p->ipv6 = 0;
    }
    if (p->port == 0) return fail_class(p, WR_PROXY_FAIL_BAD_REQUEST, "SOCKS4 port 0");
    return done(p);
}

static enum wr_proxy_status s4_request(wr_proxy_req *p, const uint8_t *d, size_t len, size_t *off)
{
    const uint8_t *ip = p->buf + 4;
    const uint8_t *nul;
    int is4a;
    size_t id_end;

    if (!take(p, d, len, off, 8)) return WR_PROXY_NEED_MORE;
    is4a = ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && ip[3] != 0;
    while (*off < len) {
        p->buf[p->have++] = d[(*off)++];
        nul = memchr(p->buf + 8, 0, p->have - 8);
        id_end = nul ? (size_t)(nul - p->buf) + 1 : 0;
        if (!nul) {
            if (p->have - 8 > S4_ID_MAX)
                return fail_class(p, WR_PROXY_FAIL_BAD_REQUEST, "SOCKS4 userid too long");
            continue;
        }
        if (!is4a) return s4_finish(p, id_end);
        if (p->have > id_end && p->buf[p->have - 1] == 0) return s4_finish(p, id_end);
        if (p->have - id_end > WR_PROXY_HOST_MAX)
            return fail_class(p, WR_PROXY_FAIL_BAD_REQUEST, "SOCKS4a host name too long");
    }
    return WR_PROXY_NEED_MORE;
}

/* ---- HTTP ---- */

static size_t http_response(uint8_t *out, size_t cap, int code, const char *text, const char *extra,
                            const char *detail)
{
    char body[224];
    size_t i, n;
    int w;

    /* The detail may come from the relay: keep it printable so it cannot shape the reply. */
    n = (size_t)snprintf(body, sizeof body, "warren: %s\n", detail ? detail : text);
    if (n >= sizeof body) {
        n = sizeof body - 1;
        body[n - 1] = '\n';
    }
    for (i = 0; i + 1 < n; i++)
        if ((unsigned char)body[i] < 0x20 || (unsigned char)body[i] >= 0x7f) body[i] = '?';
    w = snprintf((char *)out, cap,
                 "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n%s",
                 code, text, extra, n, body);
    return w < 0 ? 0 : (size_t)w < cap ? (size_t)w : cap - 1;
}

static enum wr_proxy_status http_fail(wr_proxy_req *p, int code, const char *text,
                                      const char *reason)
{
    p->reply_len = http_response(p->reply, sizeof p->reply, code, text, "", reason);
    p->reason = reason;
    p->state = ST_ERROR;
    return WR_PROXY_ERROR;
}

/* Accumulates the head byte by byte (so nothing past it is taken), rejecting control bytes and
 * bare CR or LF as they come. 1 when the blank line ending the head arrived. */
static int http_take(wr_proxy_req *p, const uint8_t *d, size_t len, size_t *off,
                     enum wr_proxy_status *st)
{
    while (*off < len) {
        int c = d[*off];
        int prev = p->have ? p->buf[p->have - 1] : 0;
        if (p->have == sizeof p->buf) {
            *st = p->line_done ? http_fail(p, 431, "Request Header Fields Too Large",
                                           "request head too large")
                               : http_fail(p, 400, "Bad Request", "request line too long");
            return 0;
        }
        (*off)++;
        if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f ||
            (c >= 0x80 && !p->line_done)) {
            *st = http_fail(p, 400, "Bad Request", "control or non-ASCII byte in request");
            return 0;
        }
        if ((c == '\n') != (prev == '\r')) {
            *st = http_fail(p, 400, "Bad Request", "lines must end with CRLF");
            return 0;
        }
        p->buf[p->have++] = (uint8_t)c;
        if (c == '\n') p->line_done = 1;
        if (c == '\n' && p->have >= 4 && memcmp(p->buf + p->have - 4, "\r\n\r\n", 4) == 0) return 1;
    }
    *st = WR_PROXY_NEED_MORE;
    return 0;
}

/* host[:port] with optional [v6] brackets. default_port 0 means the port is required. */
static int parse_authority(wr_proxy_req *p, const char *s, size_t n, unsigned default_port)
{
    const char *host = s, *port = NULL;
    size_t hlen = n, plen = 0, i;
    unsigned long v = 0;

    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) return 0;
        host = s + 1;
        hlen = (size_t)(close - host);
        if (!memchr(host, ':', hlen)) return 0; /* brackets are for IPv6 only */
        if ((size_t)(close + 1 - s) < n) {
            if (close[1] != ':') return 0;
            port = close + 2;
            plen = n - (size_t)(port - s);
        }
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
            plen = n - hlen - 1;
            if (memchr(port, ':', plen)) return 0;
        }
    }
    if (!set_host(p, host, hlen)) return 0;
    if (!port || plen == 0) {
        if (!default_port) return 0;
        p->port = (uint16_t)default_port;
        return 1;
    }
    if (plen > 5) return 0;
    for (i = 0; i < plen; i++) {
        if (port[i] < '0' || port[i] > '9') return 0;
        v = v * 10 + (unsigned long)(port[i] - '0');
    }
    if (v == 0 || v > 65535) return 0;
    p->port = (uint16_t)v;
    return 1;
}

static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* "Basic <base64 of user:password>" against the configured credentials. */
static int basic_auth_ok(const wr_proxy_req *p, const char *v, size_t n)
{
    uint8_t plain[520];
    size_t i, out = 0;
    unsigned acc = 0;
    int bits = 0;
    char want[520];
    int wn;

    if (n < 6 || !eq_ci(v, 5, "basic") || v[5] != ' ') return 0;
    for (i = 6; i < n && v[i] == ' '; i++) {}
    for (; i < n && v[i] != '='; i++) {
        int x = b64_value((unsigned char)v[i]);
        if (x < 0 || out >= sizeof plain) return 0;
        acc = (acc << 6) | (unsigned)x;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            plain[out++] = (uint8_t)(acc >> bits);
        }
    }
    wn = snprintf(want, sizeof want, "%.*s:%.*s", (int)p->user_len, p->user, (int)p->password_len,
                  p->password);
    return wn > 0 && (size_t)wn < sizeof want && same_secret(plain, out, want, (size_t)wn);
}

/* Whether a comma-separated header value lists `token`. */
static int has_token(const char *v, size_t n, const char *token)
{
    size_t i = 0;
    while (i < n) {
        size_t start, end;
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        start = i;
        while (i < n && v[i] != ',')
            i++;
        end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end > start && eq_ci(v + start, end - start, token)) return 1;
    }
    return 0;
}

/* A Content-Length value: 1 to 19 digits, nothing else (no lists, signs or spaces inside). */
static int parse_length(const char *v, size_t n, uint64_t *out)
{
    uint64_t x = 0;
    size_t i;
    if (n == 0 || n > 19) return 0;
    for (i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return 0;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return 1;
}

typedef struct out_writer {
    uint8_t *buf;
    size_t len, cap;
    int overflow;
} out_writer;

static void put(out_writer *w, const char *s, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = 1;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void put_str(out_writer *w, const char *s)
{
    put(w, s, strlen(s));
}

/* "Host: host[:port]\r\n" from the request target, as a proxy must send it (RFC 9112 3.2.2). */
static void put_host(out_writer *w, const wr_proxy_req *p)
{
    char line[WR_PROXY_TARGET_MAX + 16];
    int n = snprintf(line, sizeof line, p->ipv6 ? "Host: [%s]" : "Host: %s", p->host);
    if (p->port != 80) n += snprintf(line + n, sizeof line - (size_t)n, ":%u", p->port);
    put(w, line, (size_t)n);
    put(w, "\r\n", 2);
}

static enum wr_proxy_status http_parse(wr_proxy_req *p)
{
    const char *s = (const char *)p->buf, *end = s + p->have, *line, *eol, *sp1, *sp2;
    const char *target, *version, *path, *auth = NULL;
    size_t mlen, tlen, vlen, alen = 0, plen;
    int connect, hosts = 0, upgrade = 0, conn_upgrade = 0, auth_ok = 0, lengths = 0, chunked = 0;
    uint64_t length = 0, v_len;
    out_writer w = {p->out, 0, sizeof p->out, 0};

    eol = memchr(s, '\r', p->have); /* CR is always followed by LF here */
    sp1 = memchr(s, ' ', (size_t)(eol - s));
    if (!sp1) return http_fail(p, 400, "Bad Request", "malformed request line");
    sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (!sp2) return http_fail(p, 400, "Bad Request", "malformed request line");
    mlen = (size_t)(sp1 - s);
    target = sp1 + 1;
    tlen = (size_t)(sp2 - target);
    version = sp2 + 1;
    vlen = (size_t)(eol - version);
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar((unsigned char)s[i]))
            return http_fail(p, 400, "Bad Request", "malformed request line");
    if (tlen == 0 || vlen != 8 || memcmp(version, "HTTP/1.", 7) != 0 || version[7] < '0' ||
        version[7] > '9')
        return http_fail(p, 400, "Bad Request", "malformed request line");
    connect = mlen == 7 && memcmp(s, "CONNECT", 7) == 0;
    p->kind = connect ? WR_PROXY_HTTP_CONNECT : WR_PROXY_HTTP;

    if (connect) {
        if (!parse_authority(p, target, tlen, 0))
            return http_fail(p, 400, "Bad Request", "CONNECT needs host:port");
    } else {
        const char *authority, *aend;
        if (target[0] == '/')
            return http_fail(p, 400, "Bad Request", "not a proxy request (no http:// URL)");
        if (tlen < 7 || !eq_ci(target, 7, "http://")) {
            const char *scheme_end = memchr(target, ':', tlen);
            if (scheme_end && (size_t)(end - scheme_end) > 3 && memcmp(scheme_end, "://", 3) == 0)
                return fail_class(p, WR_PROXY_FAIL_UNSUPPORTED,
                                  "only http:// URLs are proxied (use CONNECT for others)");
            return http_fail(p, 400, "Bad Request", "malformed request target");
        }
        authority = target + 7;
        aend = authority;
        while (aend < sp2 && *aend != '/' && *aend != '?' && *aend != '#')
            aend++;
        if (memchr(authority, '@', (size_t)(aend - authority)))
            return http_fail(p, 400, "Bad Request", "user info in URL");
        if (!parse_authority(p, authority, (size_t)(aend - authority), 80))
            return http_fail(p, 400, "Bad Request", "bad host in URL");
        path = aend;
        plen = (size_t)(sp2 - aend);
        if (memchr(path, '#', plen)) plen = (size_t)((const char *)memchr(path, '#', plen) - path);
        put(&w, s, mlen + 1);
        if (plen == 0 || path[0] != '/') put(&w, "/", 1);
        put(&w, path, plen);
        put(&w, " ", 1);
        put(&w, version, vlen);
        put(&w, "\r\n", 2);
    }

    for (line = eol + 2; line < end; line = eol + 2) {
        const char *colon, *v, *vend;
        size_t nlen;
        eol = memchr(line, '\r', (size_t)(end - line));
        if (eol == line) break; /* the blank line */
        if (line[0] == ' ' || line[0] == '\t')
            return http_fail(p, 400, "Bad Request", "obsolete header line folding");
        colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon || colon == line) return http_fail(p, 400, "Bad Request", "malformed header");
        nlen = (size_t)(colon - line);
        for (size_t i = 0; i < nlen; i++)
            if (!is_tchar((unsigned char)line[i]))
                return http_fail(p, 400, "Bad Request", "malformed header");
        for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++) {}
        for (vend = eol; vend > v && (vend[-1] == ' ' || vend[-1] == '\t'); vend--) {}
        if (eq_ci(line, nlen, "host")) {
            if (++hosts > 1) return http_fail(p, 400, "Bad Request", "more than one Host header");
            if (!connect) put_host(&w, p);
            continue;
        }
        if (eq_ci(line, nlen, "proxy-authorization")) {
            auth = v;
            alen = (size_t)(vend - v);
            continue;
        }
        if (eq_ci(line, nlen, "connection")) {
            conn_upgrade |= has_token(v, (size_t)(vend - v), "upgrade");
            continue;
        }
        if (eq_ci(line, nlen, "proxy-connection") || eq_ci(line, nlen, "keep-alive")) continue;
        if (eq_ci(line, nlen, "upgrade")) upgrade = 1;
        if (eq_ci(line, nlen, "transfer-encoding")) chunked = 1;
        if (eq_ci(line, nlen, "content-length")) {
            /* Where the body ends decides what may reach the origin: no doubt allowed. */
            if (!parse_length(v, (size_t)(vend - v), &v_len) || (lengths++ && v_len != length))
                return http_fail(p, 400, "Bad Request", "bad Content-Length");
            length = v_len;
        }
        if (!connect) put(&w, line, (size_t)(eol + 2 - line));
    }
    if (p->user) {
        auth_ok = auth && basic_auth_ok(p, auth, alen);
        if (!auth_ok) {
            p->reply_len = http_response(
                p->reply, sizeof p->reply, 407, "Proxy Authentication Required",
                "Proxy-Authenticate: Basic realm=\"warren\"\r\n", "proxy authentication required");
            p->reason = "HTTP proxy authentication failed";
            p->state = ST_ERROR;
            return WR_PROXY_ERROR;
        }
    }
    if (!connect) {
        if (chunked)
            return http_fail(p, 411, "Length Required",
                             "request bodies need a Content-Length (chunked is not proxied)");
        if (!hosts) put_host(&w, p);
        /* One origin per tunnelled connection: close after this exchange, unless the client
         * asks to switch protocols (WebSocket), after which the connection is the tunnel. */
        put_str(&w, upgrade && conn_upgrade ? "Connection: Upgrade\r\n\r\n"
                                            : "Connection: close\r\n\r\n");
        if (w.overflow)
            return http_fail(p, 431, "Request Header Fields Too Large", "request head too large");
        p->head = p->out;
        p->head_len = w.len;
        p->body_len = length;
        p->upgrade = upgrade && conn_upgrade;
    }
    return done(p);
}

/* ---- the parser ---- */

void wr_proxy_req_init(wr_proxy_req *p, const char *user, const char *password)
{
    p->kind = WR_PROXY_UNKNOWN;
    p->host[0] = '\0';
    p->port = 0;
    p->ipv6 = 0;
    p->head = NULL;
    p->head_len = 0;
    p->body_len = 0;
    p->upgrade = 0;
    p->reply_len = 0;
    p->reason = NULL;
    p->user = user && password ? user : NULL;
    p->password = p->user ? password : NULL;
    p->user_len = p->user ? strlen(user) : 0;
    p->password_len = p->user ? strlen(password) : 0;
    p->state = ST_START;
    p->line_done = 0;
    p->have = 0;
}

enum wr_proxy_status wr_proxy_req_feed(wr_proxy_req *p, const uint8_t *data, size_t len,
                                       size_t *consumed)
{
    size_t off = 0;
    enum wr_proxy_status st = WR_PROXY_NEED_MORE;

    *consumed = 0;
    if (p->state == ST_DONE) return WR_PROXY_DONE;
    if (p->state == ST_ERROR) return WR_PROXY_ERROR;
    if (len == 0) return WR_PROXY_NEED_MORE;
    p->reply_len = 0;
    if (p->state == ST_START) {
        int c = data[0];
        if (c == 5) {
            p->kind = WR_PROXY_SOCKS5;
            p->state = ST_S5_GREET;
        } else if (c == 4) {
            p->kind = WR_PROXY_SOCKS4;
            p->state = ST_S4;
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
            p->kind = WR_PROXY_HTTP;
            p->state = ST_HTTP;
        } else {
            p->kind = WR_PROXY_HTTP; /* what a confused client most likely understands */
            *consumed = 1;
            return http_fail(p, 400, "Bad Request", "not a SOCKS or HTTP proxy request");
        }
    }
    switch (p->state) {
    case ST_S5_GREET:
        st = s5_greet(p, data, len, &off);
        break;
    case ST_S5_AUTH:
        st = s5_auth(p, data, len, &off);
        break;
    case ST_S5_REQ:
        st = s5_request(p, data, len, &off);
        break;
    case ST_S4:
        st = s4_request(p, data, len, &off);
        break;
    case ST_HTTP:
        if (http_take(p, data, len, &off, &st)) st = http_parse(p);
        break;
    }
    *consumed = off;
    return st;
}

size_t wr_proxy_req_target(const wr_proxy_req *p, char *out, size_t cap)
{
    int n = snprintf(out, cap, p->ipv6 ? "[%s]:%u" : "%s:%u", p->host, p->port);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---- replies ---- */

size_t wr_proxy_reply(enum wr_proxy_kind kind, enum wr_proxy_fail fail, const char *detail,
                      uint8_t *out, size_t cap)
{
    static const uint8_t s5_codes[] = {
        [WR_PROXY_OK] = 0x00,
        [WR_PROXY_FAIL_GENERAL] = 0x01,
        [WR_PROXY_FAIL_NOT_ALLOWED] = 0x02,
        [WR_PROXY_FAIL_UNREACHABLE] = 0x04,
        [WR_PROXY_FAIL_REFUSED] = 0x05,
        [WR_PROXY_FAIL_BAD_REQUEST] = 0x01,
        [WR_PROXY_FAIL_UNSUPPORTED] = 0x07,
        [WR_PROXY_FAIL_TIMEOUT] = 0x06,
        [WR_PROXY_FAIL_UNAVAILABLE] = 0x01,
    };
    static const struct {
        int code;
        const char *text;
    } http[] = {
        [WR_PROXY_OK] = {200, "Connection established"},
        [WR_PROXY_FAIL_GENERAL] = {502, "Bad Gateway"},
        [WR_PROXY_FAIL_NOT_ALLOWED] = {403, "Forbidden"},
        [WR_PROXY_FAIL_UNREACHABLE] = {502, "Bad Gateway"},
        [WR_PROXY_FAIL_REFUSED] = {502, "Bad Gateway"},
        [WR_PROXY_FAIL_BAD_REQUEST] = {400, "Bad Request"},
        [WR_PROXY_FAIL_UNSUPPORTED] = {501, "Not Implemented"},
        [WR_PROXY_FAIL_TIMEOUT] = {504, "Gateway Timeout"},
        [WR_PROXY_FAIL_UNAVAILABLE] = {503, "Service Unavailable"},
    };
    if ((unsigned)fail > WR_PROXY_FAIL_UNAVAILABLE) fail = WR_PROXY_FAIL_GENERAL;
    switch (kind) {
    case WR_PROXY_SOCKS5: {
        /* BND.ADDR 0.0.0.0:0: the relay's outgoing address is not known here */
        const uint8_t r[10] = {5, s5_codes[fail], 0, 1};
        if (cap < sizeof r) return 0;
        memcpy(out, r, sizeof r);
        return sizeof r;
    }
    case WR_PROXY_SOCKS4: {
        const uint8_t r[8] = {0, fail == WR_PROXY_OK ? 0x5a : 0x5b};
        if (cap < sizeof r) return 0;
        memcpy(out, r, sizeof r);
        return sizeof r;
    }
    case WR_PROXY_HTTP_CONNECT:
    case WR_PROXY_HTTP:
    case WR_PROXY_UNKNOWN:
        if (fail == WR_PROXY_OK) {
            static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
            if (kind != WR_PROXY_HTTP_CONNECT || cap < sizeof ok - 1) return 0;
            memcpy(out, ok, sizeof ok - 1);
            return sizeof ok - 1;
        }
        return cap ? http_response(out, cap, http[fail].code, http[fail].text, "", detail) : 0;
    }
    return 0;
}

/* ---- classifying the relay's reasons ---- */

enum wr_proxy_fail wr_proxy_fail_classify(const char *reason)
{
    static const struct {
        const char *text;
        enum wr_proxy_fail fail;
    } prefixes[] = {
        {"refused", WR_PROXY_FAIL_REFUSED},        {"unreachable", WR_PROXY_FAIL_UNREACHABLE},
        {"denied", WR_PROXY_FAIL_NOT_ALLOWED},     {"timeout", WR_PROXY_FAIL_TIMEOUT},
        {"bad target", WR_PROXY_FAIL_BAD_REQUEST},
    };
    if (!reason) return WR_PROXY_FAIL_GENERAL;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t n = strlen(prefixes[i].text);
        if (strncmp(reason, prefixes[i].text, n) == 0 && (reason[n] == ':' || reason[n] == '\0'))
            return prefixes[i].fail;
    }
    return WR_PROXY_FAIL_GENERAL;
}

const char *wr_proxy_kind_name(enum wr_proxy_kind kind)
{
    switch (kind) {
    case WR_PROXY_SOCKS5:
        return "socks5";
    case WR_PROXY_SOCKS4:
        return "socks4";
    case WR_PROXY_HTTP_CONNECT:
        return "http-connect";
    case WR_PROXY_HTTP:
        return "http";
    case WR_PROXY_UNKNOWN:
        break;
    }
    return "unknown";
}

const char *wr_proxy_fail_name(enum wr_proxy_fail fail)
{
    static const char *const names[] = {
        "ok",          "general",     "not allowed", "unreachable", "refused",
        "bad request", "unsupported", "timeout",     "unavailable",
    };
    return (unsigned)fail < sizeof names / sizeof names[0] ? names[fail] : "general";
}
