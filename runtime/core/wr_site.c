#include "wr_site.h"
#include "wr_http_head.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

/* Bytes a connection buffers ahead of the request it is answering: one head, plus one read. */
#define IN_CAP (WR_HTTP_HEAD_MAX + WR_BUF_SIZE)
/* After the last response: how long to read and drop what the client still sends, so that
 * closing with unread bytes does not reset the connection before it has read the response. */
#define LINGER_MS 5000
/* Write queue per connection: a few file chunks. */
#define SITE_HIGH_WATER (256 * 1024)
#define SITE_LOW_WATER  (64 * 1024)
#define INDEX_NAME      "/index.html"

struct wr_site {
    uv_loop_t *loop;
    char *root;
    size_t root_len; /* 0 for "/", so that root + "/x" is never "//x" */
    uint64_t head_ms, idle_ms;
    struct site_conn *conns;
    size_t nconns;
    int freeing;
    time_t date_sec;
    char date[32];
};

enum conn_state {
    ST_HEAD,   /* waiting for the next request head */
    ST_RESP,   /* answering one */
    ST_LINGER, /* last response queued, write side shut */
};

typedef struct site_conn {
    wr_site_t *site;
    wr_endpoint_t *ep;
    struct site_conn *prev, *next;
    uv_timer_t timer;
    uv_fs_t fs;
    int refs; /* the endpoint, the timer, and an fs request in flight */
    int fs_busy;
    int closed;
    int shut_done;
    int in_pump;
    int peer_eof;
    int head_timer; /* the head timer runs for the current request */
    enum conn_state state;
    unsigned requests;

    char *in; /* IN_CAP bytes while any are buffered */
    size_t in_len;
    size_t head_len; /* of the request being answered, consumed when it is done */
    uint64_t skip;   /* body bytes of that request still to drop */
    wr_http_head_t head;

    /* The request being answered. */
    int keep;
    int is_head;
    int dir_form;
    int tried_index;
    const char *query; /* into in, for a redirect */
    size_t query_len;
    uv_file fd;
    wr_buf_t *chunk; /* being filled by a read */
    size_t fill;     /* response head bytes at its start */
    uint64_t offset, remaining;
    int waiting_drain;
    char path[PATH_MAX]; /* root + the normalised request path */
    char real[PATH_MAX]; /* what it resolved to */
} site_conn_t;

static void conn_close(site_conn_t *c, enum wr_close_mode mode);
static void pump(site_conn_t *c);

/* ---- dates, types, validators ---- */

static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* IMF-fixdate (RFC 9110 5.6.7), always 29 characters. Not strftime: it follows the locale. */
static void imf_date(time_t t, char out[32])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    /* The moduli only tell the compiler the fields' widths. */
    snprintf(out, 32, "%s, %02u %s %04u %02u:%02u:%02u GMT", wdays[tm.tm_wday],
             (unsigned)tm.tm_mday % 100u, months[tm.tm_mon], (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u);
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* An IMF-fixdate; -1 for anything else (a recipient ignores a date it cannot parse). */
static int64_t parse_imf_date(const char *s, size_t len)
{
    struct tm tm;
    int mon = -1;
    memset(&tm, 0, sizeof(tm));
    if (len != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return -1;
    for (int i = 0; i < 12; i++)
        if (memcmp(s + 8, months[i], 3) == 0) mon = i;
    if (mon < 0 || digits(s + 5, 2, &tm.tm_mday) || digits(s + 12, 4, &tm.tm_year) ||
        digits(s + 17, 2, &tm.tm_hour) || digits(s + 20, 2, &tm.tm_min) ||
        digits(s + 23, 2, &tm.tm_sec))
        return -1;
    if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_mon = mon;
    tm.tm_year -= 1900;
    return (int64_t)timegm(&tm);
}

static const char *mime_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html"},
        {"htm", "text/html"},
        {"css", "text/css"},
        {"js", "application/javascript"},
        {"mjs", "application/javascript"},
        {"json", "application/json"},
        {"txt", "text/plain"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"svg", "image/svg+xml"},
        {"ico", "image/x-icon"},
        {"webp", "image/webp"},
        {"woff2", "font/woff2"},
        {"pdf", "application/pdf"},
        {"wasm", "application/wasm"},
        {"xml", "text/xml"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    if (dot && (!slash || dot > slash + 1)) {
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
    }
    return "application/octet-stream";
}

/* Whether an If-None-Match value lists our tag (weak comparison, as RFC 9110 13.1.2 asks). */
static int etag_listed(const char *v, size_t len, const char *etag)
{
    size_t tn = strlen(etag);
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i < len && v[i] == '*') return 1;
        if (i + 1 < len && v[i] == 'W' && v[i + 1] == '/') i += 2;
        size_t j = i;
        while (j < len && v[j] != ',')
            j++;
        size_t k = j;
        while (k > i && (v[k - 1] == ' ' || v[k - 1] == '\t'))
            k--;
        if (k - i == tn && memcmp(v + i, etag, tn) == 0) return 1;
        i = j;
    }
    return 0;
}

enum range_kind { RANGE_NONE, RANGE_ONE, RANGE_UNSAT };

static int parse_u64(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (s == end || *s < '0' || *s > '9') return -1;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *p = s;
    *out = v;
    return 0;
}

/* One byte range of a file of size bytes. Malformed headers and several ranges are ignored (the
 * whole file is sent), as RFC 9110 14.2 allows. */
static enum range_kind parse_range(const char *v, size_t len, uint64_t size, uint64_t *first,
                                   uint64_t *last)
{
    const char *p = v, *end = v + len;
    uint64_t a, b;
    if (len < 6 || strncasecmp(v, "bytes=", 6) != 0 || memchr(v, ',', len)) return RANGE_NONE;
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p < end && *p == '-') {
        p++;
        if (parse_u64(&p, end, &b) || p != end) return RANGE_NONE;
        if (b == 0 || size == 0) return RANGE_UNSAT;
        *first = size - (b < size ? b : size);
        *last = size - 1;
        return RANGE_ONE;
    }
    if (parse_u64(&p, end, &a) || p == end || *p++ != '-') return RANGE_NONE;
    if (p == end) {
        b = UINT64_MAX;
    } else if (parse_u64(&p, end, &b) || p != end || b < a) {
        return RANGE_NONE;
    }
    if (a >= size) return RANGE_UNSAT;
    *first = a;
    *last = b < size - 1 ? b : size - 1;
    return RANGE_ONE;
}

/* ---- paths ---- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int is_hidden(const char *seg, size_t len)
{
    static const char wk[] = ".well-known"; /* RFC 8615: ACME and friends live here */
    return len > 0 && seg[0] == '.' && !(len == sizeof(wk) - 1 && memcmp(seg, wk, len) == 0);
}

int wr_site_resolve(const char *root, const char *path, size_t len, char *out, size_t out_size,
                    int *dir_form)
{
    size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
    size_t o = rl, i = 0;
    int dir = 1;
    if (len == 0 || path[0] != '/') return UV_EINVAL;
    if (rl + 1 >= out_size) return UV_ENAMETOOLONG;
    memcpy(out, root, rl);
    while (i < len) {
        if (path[i] == '/') {
            dir = 1;
            i++;
            continue;
        }
        size_t seg = o; /* where this segment's '/' goes */
        if (o + 1 >= out_size) return UV_ENAMETOOLONG;
        out[o++] = '/';
        for (; i < len && path[i] != '/'; i++) {
            char ch = path[i];
            if (ch == '%') {
                int hi = i + 2 < len ? hexval(path[i + 1]) : -1;
                int lo = hi >= 0 ? hexval(path[i + 2]) : -1;
                if (lo < 0) return UV_EINVAL;
                ch = (char)(hi << 4 | lo);
                i += 2;
                if (ch == '/') return UV_ENOENT;
            }
            if (ch == '\0') return UV_EINVAL;
            if (ch == '\\') return UV_ENOENT;
            if (o + 1 >= out_size) return UV_ENAMETOOLONG;
            out[o++] = ch;
        }
        size_t sl = o - seg - 1;
        const char *s = out + seg + 1;
        dir = 0;
        if (sl == 1 && s[0] == '.') {
            o = seg;
            dir = 1;
        } else if (sl == 2 && s[0] == '.' && s[1] == '.') {
            if (seg == rl) return UV_EINVAL;
            for (o = seg - 1; out[o] != '/'; o--) {}
            dir = 1;
        } else if (is_hidden(s, sl)) {
            return UV_ENOENT;
        }
    }
    if (o == 0) out[o++] = '/'; /* the root "/" itself */
    out[o] = '\0';
    *dir_form = dir;
    return 0;
}

/* Whether a real path lies inside the root and has no hidden segment below it. */
static int inside_root(const wr_site_t *site, const char *real)
{
    size_t rl = site->root_len;
    if (strncmp(real, site->root, rl) != 0 || (real[rl] != '/' && real[rl] != '\0')) return 0;
    for (const char *p = real + rl; *p; p++) {
        if (*p != '/') continue;
        const char *seg = p + 1;
        size_t sl = strcspn(seg, "/");
        if (is_hidden(seg, sl)) return 0;
    }
    return 1;
}

/* ---- responses ---- */

typedef struct out {
    char *p;
    size_t len, cap;
    int overflow;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len)
        o->overflow = 1;
    else
        o->len += (size_t)n;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 416:
        return "Range Not Satisfiable";
    case 431:
        return "Request Header Fields Too Large";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Internal Server Error";
    }
}

static const char *site_date(wr_site_t *site)
{
    time_t now = time(NULL);
    if (now != site->date_sec) {
        site->date_sec = now;
        imf_date(now, site->date);
    }
    return site->date;
}

static void put_status(site_conn_t *c, out_t *o, int status)
{
    put(o, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, reason(status), site_date(c->site));
}

static void put_end(site_conn_t *c, out_t *o)
{
    put(o, "Connection: %s\r\n\r\n", c->keep ? "keep-alive" : "close");
}

static void response_done(site_conn_t *c);

/* Writes out o (inside chunk b), dropping our reference. */
static int send_chunk(site_conn_t *c, wr_buf_t *b, size_t len)
{
    int rc = wr_endpoint_write(c->ep, b, b->data, len);
    wr_buf_release(b);
    if (rc < 0) conn_close(c, WR_CLOSE_RESET);
    return rc;
}

/* A response whose head and body are known now: errors, redirects, 304, HEAD. */
static void send_simple(site_conn_t *c, int status, const char *extra)
{
    wr_buf_t *b = wr_buf_get();
    if (b == NULL) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    out_t o = {b->data, 0, b->size, 0};
    char body[256];
    int blen = snprintf(body, sizeof(body),
                        "<!DOCTYPE html>\n<html><head><title>%d %s</title></head>\n"
                        "<body><h1>%d %s</h1></body></html>\n",
                        status, reason(status), status, reason(status));
    if (status >= 400)
        c->keep = c->keep && status != 400 && status < 500 && status != 413 && status != 414 &&
                  status != 431;
    put_status(c, &o, status);
    if (status != 304) put(&o, "Content-Type: text/html\r\nContent-Length: %d\r\n", blen);
    put(&o, "%s", extra ? extra : "");
    put_end(c, &o);
    if (!c->is_head && status != 304) put(&o, "%s", body);
    if (o.overflow) {
        wr_buf_release(b);
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    if (send_chunk(c, b, o.len) == 0) response_done(c);
}

/* ---- connection lifetime ---- */

static void conn_unref(site_conn_t *c)
{
    if (--c->refs > 0) return;
    wr_site_t *site = c->site;
    free(c->in);
    free(c);
    if (--site->nconns == 0 && site->freeing) {
        free(site->root);
        free(site);
    }
}

static void on_fd_closed(uv_fs_t *req)
{
    uv_fs_req_cleanup(req);
    free(req);
}

/* Closing a local file does not wait on anything, but it is a syscall on the loop all the same:
 * hand it to the threadpool, and forget it. */
static void close_fd(site_conn_t *c)
{
    if (c->fd < 0) return;
    uv_fs_t *req = malloc(sizeof(*req));
    if (req == NULL || uv_fs_close(c->site->loop, req, c->fd, on_fd_closed) < 0) {
        uv_fs_t sync;
        free(req);
        uv_fs_close(NULL, &sync, c->fd, NULL);
        uv_fs_req_cleanup(&sync);
    }
    c->fd = -1;
}

static void on_timer_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_close(site_conn_t *c, enum wr_close_mode mode)
{
    if (c->closed) return;
    c->closed = 1;
    wr_site_t *site = c->site;
    if (c->prev)
        c->prev->next = c->next;
    else
        site->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    wr_endpoint_close(c->ep, mode);
    /* An fs request in flight finishes first; its callback sees closed and tidies up. */
    if (!c->fs_busy) {
        close_fd(c);
        if (c->chunk) wr_buf_release(c->chunk);
        c->chunk = NULL;
    }
}

static void on_timeout(uv_timer_t *t)
{
    site_conn_t *c = t->data;
    /* Slow heads, idle keep-alives and the end of lingering close quietly; a response its reader
     * stopped taking is cut short, so the reader sees it truncated. */
    conn_close(c, c->state == ST_RESP ? WR_CLOSE_RESET : WR_CLOSE_GRACEFUL);
}

static void arm(site_conn_t *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_timeout, ms, 0);
}

/* Our side is done: flush, send FIN, and drop what still arrives for a while (on_shutdown). */
static void finish(site_conn_t *c)
{
    c->state = ST_LINGER;
    free(c->in);
    c->in = NULL;
    c->in_len = 0;
    if (wr_endpoint_shutdown(c->ep) < 0 || (!c->peer_eof && wr_endpoint_read_start(c->ep) < 0)) {
        conn_close(c, WR_CLOSE_GRACEFUL);
        return;
    }
    arm(c, c->site->idle_ms); /* for the flush; the linger starts once it is done */
}

static void consume(site_conn_t *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
    if (c->in_len == 0) {
        /* An idle keep-alive connection holds no buffer. */
        free(c->in);
        c->in = NULL;
    }
}

static void response_done(site_conn_t *c)
{
    close_fd(c);
    c->requests++;
    if (!c->keep) {
        finish(c);
        return;
    }
    consume(c, c->head_len);
    c->head_len = 0;
    c->state = ST_HEAD;
    c->head_timer = 0;
    wr_http_head_init(&c->head);
    arm(c, c->site->idle_ms);
    if (!c->peer_eof && wr_endpoint_read_start(c->ep) < 0) {
        conn_close(c, WR_CLOSE_GRACEFUL);
        return;
    }
    pump(c);
}

/* ---- files ---- */

static void fs_begin(site_conn_t *c)
{
    c->fs_busy = 1;
    c->refs++;
    c->fs.data = c;
}

/* 1 when the connection closed meanwhile: it has been tidied up and must not be touched. */
static int fs_end(site_conn_t *c)
{
    c->fs_busy = 0;
    if (c->closed) {
        if (c->chunk) wr_buf_release(c->chunk);
        c->chunk = NULL;
        close_fd(c);
        conn_unref(c);
        return 1;
    }
    c->refs--;
    return 0;
}

static void fs_failed(site_conn_t *c, int err)
{
    close_fd(c);
    send_simple(c, err == UV_EACCES ? 403 : 404, NULL);
}

static void on_realpath(uv_fs_t *req);

static void lookup(site_conn_t *c)
{
    fs_begin(c);
    int rc = uv_fs_realpath(c->site->loop, &c->fs, c->path, on_realpath);
    if (rc < 0 && !fs_end(c)) fs_failed(c, rc);
}

static void redirect(site_conn_t *c)
{
    static const char keep[] = "-._~!$&'()*+,;=:@/";
    size_t cap = 3 * (sizeof(c->path) + WR_HTTP_URL_MAX) + 64;
    char *loc = malloc(cap);
    size_t n = 0;
    if (loc == NULL) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    n += (size_t)snprintf(loc, cap, "Location: ");
    for (const unsigned char *p = (const unsigned char *)c->path + c->site->root_len; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            (*p && strchr(keep, *p)))
            loc[n++] = (char)*p;
        else
            n += (size_t)snprintf(loc + n, cap - n, "%%%02X", *p);
    }
    n += (size_t)snprintf(loc + n, cap - n, "/%s%.*s\r\n", c->query ? "?" : "", (int)c->query_len,
                          c->query ? c->query : "");
    send_simple(c, 301, loc);
    free(loc);
}

static void on_file_read(uv_fs_t *req);

static void read_next(site_conn_t *c)
{
    wr_buf_t *b = c->chunk;
    if (b == NULL && (b = c->chunk = wr_buf_get()) == NULL) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    size_t n = b->size - c->fill;
    if (n > c->remaining) n = (size_t)c->remaining;
    uv_buf_t ub = uv_buf_init(b->data + c->fill, (unsigned)n);
    fs_begin(c);
    int rc = uv_fs_read(c->site->loop, &c->fs, c->fd, &ub, 1, (int64_t)c->offset, on_file_read);
    if (rc < 0 && !fs_end(c)) conn_close(c, WR_CLOSE_RESET);
}

static void on_file_read(uv_fs_t *req)
{
    site_conn_t *c = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    if (fs_end(c)) return;
    wr_buf_t *b = c->chunk;
    c->chunk = NULL;
    if (r <= 0) {
        /* The file shrank or failed under us: a reset tells the client its copy is short. */
        wr_buf_release(b);
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    size_t n = c->fill + (size_t)r;
    c->fill = 0;
    c->offset += (uint64_t)r;
    c->remaining -= (uint64_t)r;
    if (send_chunk(c, b, n) < 0) return;
    arm(c, c->site->idle_ms);
    if (c->remaining == 0)
        response_done(c);
    else if (wr_endpoint_over_high_water(c->ep))
        c->waiting_drain = 1;
    else
        read_next(c);
}

static int field_is(const wr_http_field_t *f, const char *s)
{
    return f && f->value_len == strlen(s) && memcmp(f->value, s, f->value_len) == 0;
}

static void respond_file(site_conn_t *c, const uv_stat_t *st)
{
    const wr_http_head_t *h = &c->head;
    uint64_t size = st->st_size, first = 0, last = size ? size - 1 : 0;
    int64_t mtime = st->st_mtim.tv_sec;
    char etag[48], lm[32], extra[160];
    snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)mtime, size);
    imf_date((time_t)mtime, lm);
    snprintf(extra, sizeof(extra), "Last-Modified: %s\r\nETag: %s\r\n", lm, etag);

    /* If-None-Match, when present, decides alone (RFC 9110 13.2.2). */
    const wr_http_field_t *inm = wr_http_head_field(h, "If-None-Match");
    const wr_http_field_t *ims = wr_http_head_field(h, "If-Modified-Since");
    int64_t t;
    if (inm ? etag_listed(inm->value, inm->value_len, etag)
            : ims && (t = parse_imf_date(ims->value, ims->value_len)) >= 0 && mtime <= t) {
        close_fd(c);
        send_simple(c, 304, extra);
        return;
    }

    int status = 200;
    const wr_http_field_t *range = c->is_head ? NULL : wr_http_head_field(h, "Range");
    const wr_http_field_t *if_range = wr_http_head_field(h, "If-Range");
    if (range && if_range) {
        /* A range of a file that changed since the client's copy would splice two versions. */
        if (if_range->value_len && if_range->value[0] == '"') {
            if (!field_is(if_range, etag)) range = NULL;
        } else if (parse_imf_date(if_range->value, if_range->value_len) != mtime) {
            range = NULL;
        }
    }
    if (range) {
        switch (parse_range(range->value, range->value_len, size, &first, &last)) {
        case RANGE_UNSAT:
            close_fd(c);
            snprintf(extra, sizeof(extra), "Content-Range: bytes */%" PRIu64 "\r\n", size);
            send_simple(c, 416, extra);
            return;
        case RANGE_ONE:
            status = 206;
            break;
        case RANGE_NONE:
            break;
        }
    }
    uint64_t len = size ? last - first + 1 : 0;

    wr_buf_t *b = wr_buf_get();
    if (b == NULL) {
        conn_close(c, WR_CLOSE_RESET);
        return;
    }
    out_t o = {b->data, 0, b->size, 0};
    put_status(c, &o, status);
    put(&o, "Content-Type: %s\r\nContent-Length: %" PRIu64 "\r\n%sAccept-Ranges: bytes\r\n",
        mime_type(c->path), len, extra); /* the name asked for, as nginx does */
    if (status == 206)
        put(&o, "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n", first, last, size);
    put_end(c, &o);
    if (c->is_head || len == 0) {
        if (send_chunk(c, b, o.len) == 0) response_done(c);
        return;
    }
    /* The head rides in the first chunk, ahead of the file's first bytes. */
    c->chunk = b;
    c->fill = o.len;
    c->offset = first;
    c->remaining = len;
    read_next(c);
}

static void on_fstat(uv_fs_t *req)
{
    site_conn_t *c = req->data;
    int r = (int)req->result;
    uv_stat_t st = req->statbuf;
    uv_fs_req_cleanup(req);
    if (fs_end(c)) return;
    if (r < 0) {
        fs_failed(c, r);
    } else if (S_ISDIR(st.st_mode)) {
        close_fd(c);
        if (!c->dir_form) {
            redirect(c);
        } else if (c->tried_index) {
            send_simple(c, 404, NULL); /* no listings */
        } else {
            c->tried_index = 1;
            if (strcmp(c->path, "/") == 0) c->path[0] = '\0'; /* root "/": no "//index.html" */
            strcat(c->path, INDEX_NAME); /* room was kept by wr_site_resolve's out_size */
            lookup(c);
        }
    } else if (!S_ISREG(st.st_mode) || (c->dir_form && !c->tried_index)) {
        fs_failed(c, UV_ENOENT); /* "/file/" is not a file, as nginx says */
    } else {
        respond_file(c, &st);
    }
}

static void on_open(uv_fs_t *req)
{
    site_conn_t *c = req->data;
    int r = (int)req->result;
    uv_fs_req_cleanup(req);
    if (r >= 0) c->fd = r;
    if (fs_end(c)) return;
    if (r < 0) {
        fs_failed(c, r);
        return;
    }
    fs_begin(c);
    int rc = uv_fs_fstat(c->site->loop, &c->fs, c->fd, on_fstat);
    if (rc < 0 && !fs_end(c)) fs_failed(c, rc);
}

static void on_realpath(uv_fs_t *req)
{
    site_conn_t *c = req->data;
    int r = (int)req->result;
    if (r == 0 && strlen(req->ptr) >= sizeof(c->real)) r = UV_ENAMETOOLONG;
    if (r == 0) strcpy(c->real, req->ptr);
    uv_fs_req_cleanup(req);
    if (fs_end(c)) return;
    if (r < 0) {
        fs_failed(c, r);
        return;
    }
    if (!inside_root(c->site, c->real)) {
        send_simple(c, 404, NULL);
        return;
    }
    /* O_NONBLOCK: a FIFO swapped in after realpath must not hang a threadpool thread in open;
     * O_NOFOLLOW: nor may a symlink swapped in lead elsewhere. */
    fs_begin(c);
    int rc = uv_fs_open(c->site->loop, &c->fs, c->real,
                        O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0, on_open);
    if (rc < 0 && !fs_end(c)) fs_failed(c, rc);
}

/* ---- requests ---- */

static int error_status(int err)
{
    switch (err) {
    case UV_E2BIG:
        return 431;
    case UV_ENAMETOOLONG:
        return 414;
    default:
        return 400;
    }
}

static void handle_request(site_conn_t *c, size_t head_len)
{
    const wr_http_head_t *h = &c->head;
    c->state = ST_RESP;
    c->head_len = head_len;
    c->keep = h->keep_alive && c->requests + 1 < WR_SITE_REQUESTS_MAX;
    c->is_head = h->method == HTTP_HEAD;
    c->tried_index = 0;
    c->query = NULL;
    c->query_len = 0;
    c->skip = 0;
    c->head_timer = 0;
    arm(c, c->site->idle_ms);

    if (h->major != 1) {
        send_simple(c, 505, NULL);
        return;
    }
    if (h->chunked || h->method == HTTP_CONNECT) {
        c->keep = 0; /* what follows is not a next request we could find: answer and close */
    } else if (h->content_length > WR_SITE_BODY_MAX) {
        send_simple(c, 413, NULL);
        return;
    } else if (h->content_length && wr_http_head_field(h, "Expect")) {
        c->keep = 0; /* answered before the body: the client may send it or not */
    } else {
        c->skip = h->content_length;
    }
    if (h->method != HTTP_GET && h->method != HTTP_HEAD) {
        send_simple(c, 405, "Allow: GET, HEAD\r\n");
        return;
    }
    if (h->minor >= 1 && !wr_http_head_field(h, "Host")) {
        send_simple(c, 400, NULL);
        return;
    }

    struct http_parser_url u;
    const char *path = "/";
    size_t plen = 1;
    http_parser_url_init(&u);
    if (http_parser_parse_url(h->url, h->url_len, 0, &u) != 0) {
        send_simple(c, 400, NULL);
        return;
    }
    if (u.field_set & (1u << UF_PATH)) {
        path = h->url + u.field_data[UF_PATH].off;
        plen = u.field_data[UF_PATH].len;
    }
    if (u.field_set & (1u << UF_QUERY)) {
        c->query = h->url + u.field_data[UF_QUERY].off;
        c->query_len = u.field_data[UF_QUERY].len;
    }
    int rc = wr_site_resolve(c->site->root, path, plen, c->path,
                             sizeof(c->path) - strlen(INDEX_NAME), &c->dir_form);
    if (rc < 0) {
        send_simple(c, rc == UV_EINVAL ? 400 : 404, NULL);
        return;
    }
    lookup(c);
}

static void want_read(site_conn_t *c)
{
    if (c->closed || c->peer_eof || c->state == ST_LINGER) return;
    int rc =
        c->in_len < WR_HTTP_HEAD_MAX ? wr_endpoint_read_start(c->ep) : wr_endpoint_read_stop(c->ep);
    if (rc < 0) conn_close(c, WR_CLOSE_GRACEFUL);
}

/* Answers the requests buffered, one at a time and in order, until one needs the loop. */
static void pump(site_conn_t *c)
{
    if (c->in_pump) return;
    c->in_pump = 1;
    while (!c->closed && c->state == ST_HEAD) {
        if (c->skip) {
            size_t n = c->skip < c->in_len ? (size_t)c->skip : c->in_len;
            if (n) consume(c, n);
            c->skip -= n;
            if (c->skip) {
                if (c->peer_eof) finish(c);
                break;
            }
        }
        if (wr_endpoint_over_high_water(c->ep)) {
            c->waiting_drain = 1; /* a client pipelining requests but reading no answers */
            break;
        }
        int rc = c->in ? wr_http_head_parse(&c->head, c->in, c->in_len) : 0;
        if (rc > 0) {
            handle_request(c, (size_t)rc);
        } else if (rc < 0) {
            c->state = ST_RESP;
            c->head_len = c->in_len;
            c->keep = 0;
            c->is_head = 0;
            send_simple(c, error_status(rc), NULL);
        } else {
            if (c->peer_eof) {
                finish(c); /* nothing more will come: a partial head is dropped, like nginx */
            } else if (c->in_len && !c->head_timer) {
                c->head_timer = 1;
                arm(c, c->site->head_ms);
            }
            break;
        }
    }
    want_read(c);
    c->in_pump = 0;
}

/* ---- endpoint callbacks ---- */

static void on_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    site_conn_t *c = ep->data;
    if (c->state == ST_LINGER) return;
    if (len > IN_CAP - c->in_len || (c->in == NULL && (c->in = malloc(IN_CAP)) == NULL)) {
        conn_close(c, WR_CLOSE_RESET); /* more than we stopped reading at */
        return;
    }
    memcpy(c->in + c->in_len, base, len);
    c->in_len += len;
    if (c->state == ST_HEAD) {
        if (c->skip) arm(c, c->site->idle_ms);
        pump(c);
    } else {
        want_read(c);
    }
}

static void on_eof(wr_endpoint_t *ep)
{
    site_conn_t *c = ep->data;
    c->peer_eof = 1;
    if (c->state == ST_LINGER) {
        if (c->shut_done) conn_close(c, WR_CLOSE_GRACEFUL);
    } else if (c->state == ST_HEAD) {
        pump(c);
    }
}

static void on_error(wr_endpoint_t *ep, int err)
{
    conn_close(ep->data, WR_CLOSE_GRACEFUL);
}

static void on_drain(wr_endpoint_t *ep)
{
    site_conn_t *c = ep->data;
    if (!c->waiting_drain) return;
    c->waiting_drain = 0;
    if (c->state == ST_RESP) {
        arm(c, c->site->idle_ms);
        read_next(c);
    } else {
        pump(c);
    }
}

static void on_shutdown(wr_endpoint_t *ep, int status)
{
    site_conn_t *c = ep->data;
    c->shut_done = 1;
    if (status < 0 || c->peer_eof)
        conn_close(c, WR_CLOSE_GRACEFUL);
    else
        arm(c, LINGER_MS);
}

static void on_closed(wr_endpoint_t *ep)
{
    conn_unref(ep->data);
}

static const wr_endpoint_cbs_t site_cbs = {
    .on_read = on_read,
    .on_eof = on_eof,
    .on_error = on_error,
    .on_drain = on_drain,
    .on_shutdown = on_shutdown,
    .on_closed = on_closed,
};

/* ---- the site ---- */

int wr_site_take(wr_site_t *site, wr_endpoint_t *ep, const char *already, size_t len)
{
    if (site->freeing) {
        wr_endpoint_close(ep, WR_CLOSE_RESET);
        return UV_ECANCELED;
    }
    site_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        wr_endpoint_close(ep, WR_CLOSE_RESET);
        return UV_ENOMEM;
    }
    c->site = site;
    c->ep = ep;
    c->fd = -1;
    c->refs = 2;
    c->state = ST_HEAD;
    wr_http_head_init(&c->head);
    uv_timer_init(site->loop, &c->timer);
    c->timer.data = c;
    c->next = site->conns;
    if (c->next) c->next->prev = c;
    site->conns = c;
    site->nconns++;
    wr_endpoint_set_callbacks(ep, &site_cbs, c);
    wr_endpoint_set_watermarks(ep, SITE_LOW_WATER, SITE_HIGH_WATER);

    int rc = 0;
    if (len > IN_CAP)
        rc = UV_E2BIG;
    else if (len && (c->in = malloc(IN_CAP)) == NULL)
        rc = UV_ENOMEM;
    if (rc == 0) rc = wr_endpoint_read_start(ep);
    if (rc < 0) {
        conn_close(c, WR_CLOSE_RESET);
        return rc;
    }
    if (len) memcpy(c->in, already, len);
    c->in_len = len;
    /* The head timer runs from the hand-over, bytes or not (a connection that says nothing
     * is held no longer than a slow one). */
    c->head_timer = 1;
    arm(c, site->head_ms);
    pump(c);
    return 0;
}

static char *errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *errorf(const char *fmt, ...)
{
    char buf[PATH_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return strdup(buf);
}

wr_site_t *wr_site_new(uv_loop_t *loop, const char *dir, char **err)
{
    struct stat st;
    char *real = realpath(dir, NULL);
    char *msg = NULL;
    if (real == NULL)
        msg = errorf("%s: %s", dir, strerror(errno));
    else if (stat(real, &st) != 0)
        msg = errorf("%s: %s", dir, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        msg = errorf("%s: not a directory", dir);
    wr_site_t *site = msg ? NULL : calloc(1, sizeof(*site));
    if (site == NULL) {
        if (msg == NULL) msg = errorf("out of memory");
        if (err)
            *err = msg;
        else
            free(msg);
        free(real);
        return NULL;
    }
    site->loop = loop;
    site->root = real;
    site->root_len = strcmp(real, "/") == 0 ? 0 : strlen(real);
    site->head_ms = WR_SITE_HEAD_TIMEOUT_MS;
    site->idle_ms = WR_SITE_IDLE_TIMEOUT_MS;
    return site;
}

const char *wr_site_root(const wr_site_t *site)
{
    return site->root;
}

void wr_site_set_timeouts(wr_site_t *site, uint64_t head_ms, uint64_t idle_ms)
{
    if (head_ms) site->head_ms = head_ms;
    if (idle_ms) site->idle_ms = idle_ms;
}

void wr_site_free(wr_site_t *site)
{
    if (site == NULL) return;
    site->freeing = 1;
    while (site->conns)
        conn_close(site->conns, WR_CLOSE_RESET);
    if (site->nconns == 0) {
        free(site->root);
        free(site);
    }
}
