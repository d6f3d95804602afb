#include "wr_ws_upgrade.h"

#include "wr_crypto.h"

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"; /* RFC 6455 section 1.3 */

size_t wr_ws_request(char *out, size_t cap, const char *host, const char *path, const char *extra,
                     const char *key, const uint8_t *token, size_t len)
{
    char b64[WR_WS_TOKEN_MAX * 4 / 3 + 8];
    size_t b64_len = 0;
    int n;
    if (len > WR_WS_TOKEN_MAX ||
        mbedtls_base64_encode((unsigned char *)b64, sizeof b64, &b64_len, token, len) != 0)
        return 0;
    n = snprintf(out, cap,
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "Authorization: Bearer %s\r\n"
                 "%s"
                 "\r\n",
                 path, host, key, b64, extra ? extra : "");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

int wr_ws_new_key(char key[WR_WS_KEY_LEN + 1])
{
    uint8_t raw[16];
    size_t n = 0;
    if (wr_random(raw, sizeof raw) != 0) return UV_EIO;
    mbedtls_base64_encode((unsigned char *)key, WR_WS_KEY_LEN + 1, &n, raw, sizeof raw);
    key[n] = '\0';
    return 0;
}

void wr_ws_accept_for(const char *key, size_t len, char accept[WR_WS_ACCEPT_LEN + 1])
{
    mbedtls_sha1_context c;
    uint8_t digest[20];
    size_t n = 0;
    mbedtls_sha1_init(&c);
    mbedtls_sha1_starts_ret(&c);
    mbedtls_sha1_update_ret(&c, (const unsigned char *)key, len);
    mbedtls_sha1_update_ret(&c, (const unsigned char *)ws_guid, sizeof ws_guid - 1);
    mbedtls_sha1_finish_ret(&c, digest);
    mbedtls_sha1_free(&c);
    mbedtls_base64_encode((unsigned char *)accept, WR_WS_ACCEPT_LEN + 1, &n, digest, sizeof digest);
    accept[n] = '\0';
}

static int field_is(const wr_http_head_t *h, const char *name, const char *value)
{
    const wr_http_field_t *f = wr_http_head_field(h, name);
    return f && f->value_len == strlen(value) && strncasecmp(f->value, value, f->value_len) == 0;
}

int wr_ws_upgrade_check(const wr_http_head_t *h, uint8_t *token, size_t cap, size_t *len,
                        char accept[WR_WS_ACCEPT_LEN + 1])
{
    const wr_http_field_t *conn = wr_http_head_field(h, "Connection");
    const wr_http_field_t *key = wr_http_head_field(h, "Sec-WebSocket-Key");
    const wr_http_field_t *auth = wr_http_head_field(h, "Authorization");
    uint8_t raw[18];
    size_t n = 0;
    if (h->method != HTTP_GET || h->major != 1 || h->minor < 1) return UV_EINVAL;
    if (!field_is(h, "Upgrade", "websocket") || !field_is(h, "Sec-WebSocket-Version", "13"))
        return UV_EINVAL;
    if (!conn || !wr_http_list_has(conn->value, conn->value_len, "upgrade")) return UV_EINVAL;
    if (!key || key->value_len != WR_WS_KEY_LEN ||
        mbedtls_base64_decode(raw, sizeof raw, &n, (const unsigned char *)key->value,
                              key->value_len) != 0 ||
        n != 16)
        return UV_EINVAL;
    if (!auth || auth->value_len <= 7 || strncasecmp(auth->value, "Bearer ", 7) != 0)
        return UV_EINVAL;
    if (mbedtls_base64_decode(token, cap, len, (const unsigned char *)auth->value + 7,
                              auth->value_len - 7) != 0 ||
        *len == 0)
        return UV_EINVAL;
    wr_ws_accept_for(key->value, key->value_len, accept);
    return 0;
}

size_t wr_ws_response(char *out, size_t cap, const char *accept)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "\r\n",
                     accept);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The value of header field name in head[0..len) (lines after the status line), or NULL. */
static const char *response_field(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *p = memchr(head, '\n', len), *end = head + len;
    while (p && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) break;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1, *e = eol;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *vlen = (size_t)(e - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

int wr_ws_response_check(const char *buf, size_t len, const char *key, char *why, size_t why_cap)
{
    char accept[WR_WS_ACCEPT_LEN + 1];
    const char *end = NULL, *v;
    size_t head_len, vlen, line;
    for (size_t i = 3; i < len && i < WR_WS_RESPONSE_MAX; i++)
        if (memcmp(buf + i - 3, "\r\n\r\n", 4) == 0) {
            end = buf + i + 1;
            break;
        }
    if (!end) {
        if (len < WR_WS_RESPONSE_MAX) return 0;
        snprintf(why, why_cap, "the relay's answer to the WebSocket upgrade is not HTTP");
        return UV_EPROTO;
    }
    head_len = (size_t)(end - buf);
    line = (size_t)((const char *)memchr(buf, '\r', head_len) - buf);
    if (line < 12 || memcmp(buf, "HTTP/1.", 7) != 0) {
        snprintf(why, why_cap, "the relay's answer to the WebSocket upgrade is not HTTP");
        return UV_EPROTO;
    }
    if (memcmp(buf + 8, " 101", 4) != 0) {
        snprintf(why, why_cap,
                 "the relay answered the WebSocket upgrade with \"%.*s\": wrong key, clocks more "
                 "than 30 s apart, a front that does not pass WebSocket, or not a warren relay",
                 (int)(line > 60 ? 60 : line), buf);
        return UV_EPROTO;
    }
    wr_ws_accept_for(key, strlen(key), accept);
    v = response_field(buf, head_len, "Sec-WebSocket-Accept", &vlen);
    if (!v || vlen != WR_WS_ACCEPT_LEN || memcmp(v, accept, vlen) != 0) {
        snprintf(why, why_cap, "the relay's 101 answer has a wrong Sec-WebSocket-Accept");
        return UV_EPROTO;
    }
    v = response_field(buf, head_len, "Upgrade", &vlen);
    if (!v || vlen != 9 || strncasecmp(v, "websocket", 9) != 0) {
        snprintf(why, why_cap, "the relay's 101 answer does not upgrade to websocket");
        return UV_EPROTO;
    }
    return (int)head_len;
}
