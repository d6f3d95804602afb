/* The fallback site's pure parts: the HTTP request head parser and the mapping of a request path
 * to a file under the root. The first input byte picks the target.
 *
 * Head: the rest is fed in fuzzer-chosen prefixes (each step's growth is the next byte), and the
 * result must match a parse of the whole at once (any error for an error); a complete head lies
 * within what was fed and WR_HTTP_HEAD_MAX, and every field and the target point inside it.
 *
 * Path: the rest is a request path resolved under one of a few roots. A success starts with the
 * root followed by '/' or its end, has no empty, "." or ".." segment, no backslash and no hidden
 * segment, and fits; a failure is one of the documented codes. */
#include "wr_http_head.h"
#include "wr_site.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static wr_http_head_t a, b;

static void inside(const char *p, size_t n, const char *buf, size_t len)
{
    if (n > len || p < buf || p + n > buf + len) abort();
}

static void fuzz_head(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    wr_http_head_init(&a);
    wr_http_head_init(&b);
    int whole = wr_http_head_parse(&a, buf, size);
    int rc = 0;
    size_t len = 0, i = 0;
    while (rc == 0 && len < size) {
        size_t step = i < size ? (size_t)data[i++] % 64 + 1 : size;
        len = len + step < size ? len + step : size;
        rc = wr_http_head_parse(&b, buf, len);
    }
    /* Which error wins may depend on the split (a field flushed early counts toward the limit
     * before a bad character after it is seen); whether there is one may not. */
    if ((rc < 0) != (whole < 0) || (rc >= 0 && rc != whole)) abort();
    if (rc < 0 && rc != UV_E2BIG && rc != UV_ENAMETOOLONG && rc != UV_EINVAL) abort();
    if (rc <= 0) return;
    if ((size_t)rc > size || rc > WR_HTTP_HEAD_MAX) abort();
    if (b.nfields > WR_HTTP_FIELDS_MAX || b.url_len > WR_HTTP_URL_MAX) abort();
    inside(b.url, b.url_len, buf, (size_t)rc);
    for (size_t f = 0; f < b.nfields; f++) {
        inside(b.fields[f].name, b.fields[f].name_len, buf, (size_t)rc);
        inside(b.fields[f].value, b.fields[f].value_len, buf, (size_t)rc);
    }
    if (b.method != a.method || b.nfields != a.nfields || b.url_len != a.url_len) abort();
    /* A repeated call gives the same answer. */
    if (wr_http_head_parse(&b, buf, size) != rc) abort();
}

static void fuzz_path(uint8_t pick, const uint8_t *data, size_t size)
{
    static const char *const roots[] = {"/srv/www", "/", "/r"};
    const char *root = roots[pick % 3];
    size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
    char out[256];
    size_t out_size = (pick & 4) ? sizeof(out) : 24; /* small: exercise the length checks */
    int dir = -1;
    int rc = wr_site_resolve(root, (const char *)data, size, out, out_size, &dir);
    if (rc != 0) {
        if (rc != UV_EINVAL && rc != UV_ENOENT && rc != UV_ENAMETOOLONG) abort();
        return;
    }
    size_t n = strnlen(out, out_size);
    if (n == out_size || (dir != 0 && dir != 1)) abort();
    if (strncmp(out, root, rl) != 0 || (out[rl] != '/' && out[rl] != '\0')) abort();
    if (n == 0 || out[0] != '/') abort();
    if (n > 1 && out[n - 1] == '/') abort();
    if (memchr(out, '\\', n)) abort();
    for (size_t i = rl; i < n; i++) {
        if (out[i] != '/') continue;
        const char *seg = out + i + 1;
        size_t sl = strcspn(seg, "/");
        if (sl == 0 && n > 1) abort();
        if (seg[0] == '.' && !(sl == 11 && memcmp(seg, ".well-known", 11) == 0)) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 0x80)
        fuzz_path(data[0], data + 1, size - 1);
    else
        fuzz_head(data + 1, size - 1);
    return 0;
}
