#include "wr_access_log.h"

#include "wr_log.h"
#include "wr_stream_dial.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The longest record kept: longer field values are cut to fit. */
#define RECORD_MAX 4096
/* Records wait this long, or until a quarter of the buffer is full, to go out in one write: a
 * thread-pool round trip per record would cost more than the record. */
#define FLUSH_MS 100

/* Records are appended to `pending` while `flight` is being written; when the write ends the two
 * swap. Each holds at most cap bytes. */
typedef struct access_log {
    uv_loop_t *loop;
    uv_file fd;
    int own_fd; /* a file we opened (not stdout) */
    enum wr_access_format format;
    char *pending, *flight;
    size_t cap, pending_len, flight_len, flight_done;
    int writing;
    int closing;   /* replaced or stopped: writes what it holds, then goes */
    int timer_set; /* the flush timer is armed */
    uv_timer_t flush;
    uv_fs_t req;
    wr_access_stats st;
    time_t stamp_sec; /* the second whose text is in stamp */
    char stamp[32];
} access_log;

static _Thread_local access_log *current;
static int exit_hooked;

static void timer_closed(uv_handle_t *h)
{
    access_log *a = h->data;
    if (a->own_fd) close(a->fd);
    free(a->pending);
    free(a->flight);
    free(a);
}

static void log_free(access_log *a)
{
    uv_close((uv_handle_t *)&a->flush, timer_closed);
}

/* At exit: writes what is left, blocking. A thread-pool write still in flight keeps its part
 * (appends stay whole; only their order may change). */
static void drain_at_exit(void)
{
    access_log *a = current;
    const char *parts[2];
    size_t lens[2];
    if (!a) return;
    parts[0] = a->flight + a->flight_done;
    parts[1] = a->pending;
    lens[0] = a->writing ? 0 : a->flight_len - a->flight_done;
    lens[1] = a->pending_len;
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < lens[i]) {
            ssize_t n = write(a->fd, parts[i] + off, lens[i] - off);
            if (n <= 0) {
                a->st.write_errors++;
                break;
            }
            off += (size_t)n;
        }
    }
    a->pending_len = 0;
}

static void start_write(access_log *a);
static void flush_due(uv_timer_t *t);

/* Writes now when a quarter of the buffer is waiting (or the log is closing), else within
 * FLUSH_MS: one write carries many records. */
static void schedule(access_log *a)
{
    if (a->closing || a->pending_len >= a->cap / 4 || a->flight_done < a->flight_len) {
        start_write(a);
    } else if (a->pending_len && !a->timer_set && !a->writing) {
        uv_timer_start(&a->flush, flush_due, FLUSH_MS, 0);
        a->timer_set = 1;
    }
}

static void written(uv_fs_t *req)
{
    access_log *a = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    a->writing = 0;
    if (n < 0) {
        a->st.write_errors++;
        if (a->st.write_errors == 1) wr_warn("access log: write failed: %s", uv_strerror((int)n));
        a->flight_done = a->flight_len; /* those records are lost; later ones may still go */
    } else {
        a->flight_done += (size_t)n;
        a->st.bytes += (uint64_t)n;
    }
    /* A replaced log goes on writing what it holds, then goes. */
    if (a->closing && a->flight_done >= a->flight_len && a->pending_len == 0) {
        log_free(a);
        return;
    }
    schedule(a);
}

static void flush_due(uv_timer_t *t)
{
    access_log *a = t->data;
    a->timer_set = 0;
    start_write(a);
}

static void start_write(access_log *a)
{
    uv_buf_t buf;
    if (a->timer_set) {
        uv_timer_stop(&a->flush);
        a->timer_set = 0;
    }
    if (a->writing) return;
    if (a->flight_done >= a->flight_len) {
        char *t;
        if (a->pending_len == 0) return;
        t = a->flight;
        a->flight = a->pending;
        a->pending = t;
        a->flight_len = a->pending_len;
        a->flight_done = 0;
        a->pending_len = 0;
    }
    buf = uv_buf_init(a->flight + a->flight_done, (unsigned)(a->flight_len - a->flight_done));
    a->req.data = a;
    if (uv_fs_write(a->loop, &a->req, a->fd, &buf, 1, -1, written) == 0) a->writing = 1;
}

int wr_access_log_open(uv_loop_t *loop, const char *path, enum wr_access_format format,
                       size_t buffer)
{
    access_log *a = calloc(1, sizeof *a);
    if (!a) return UV_ENOMEM;
    a->cap = buffer ? buffer : WR_ACCESS_BUFFER_DEFAULT;
    a->pending = malloc(a->cap);
    a->flight = malloc(a->cap);
    a->loop = loop;
    a->format = format;
    a->stamp_sec = -1;
    if (!a->pending || !a->flight) {
        free(a->pending);
        free(a->flight);
        free(a);
        return UV_ENOMEM;
    }
    if (strcmp(path, "-") == 0) {
        a->fd = STDOUT_FILENO;
    } else {
        a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (a->fd < 0) {
            int err = uv_translate_sys_error(errno);
            free(a->pending);
            free(a->flight);
            free(a);
            return err;
        }
        a->own_fd = 1;
    }
    uv_timer_init(loop, &a->flush);
    a->flush.data = a;
    uv_unref((uv_handle_t *)&a->flush); /* what is left at exit is written by drain_at_exit */
    wr_access_log_close();
    if (!exit_hooked) exit_hooked = atexit(drain_at_exit) == 0;
    current = a;
    return 0;
}

void wr_access_log_close(void)
{
    access_log *a = current;
    if (!a) return;
    current = NULL;
    a->closing = 1;
    start_write(a);
    if (!a->writing) log_free(a); /* nothing left to write; else written() frees it */
}

int wr_access_log_on(void)
{
    return current != NULL;
}

void wr_access_log_get_stats(wr_access_stats *out)
{
    if (current)
        *out = current->st;
    else
        memset(out, 0, sizeof *out);
}

/* ---- formatting ---- */

typedef struct out {
    char *p, *end;
} out;

static void put(out *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) < n) n = (size_t)(o->end - o->p);
    memcpy(o->p, s, n);
    o->p += n;
}

static void puts_(out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(out *o, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    put(o, num, (size_t)n);
}

/* logfmt: bare when the value has no space, quote, '=' or odd byte; else quoted with \" \\
 * \n \t and \xHH escapes. */
static void put_text_value(out *o, const char *v)
{
    const unsigned char *s = (const unsigned char *)(v && *v ? v : "-");
    int bare = 1;
    for (const unsigned char *c = s; *c; c++)
        if (*c <= ' ' || *c >= 0x7f || *c == '"' || *c == '=' || *c == '\\') bare = 0;
    if (bare) {
        puts_(o, (const char *)s);
        return;
    }
    put(o, "\"", 1);
    for (; *s; s++) {
        char esc[8];
        if (*s == '"' || *s == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*s;
            put(o, esc, 2);
        } else if (*s == '\n') {
            put(o, "\\n", 2);
        } else if (*s == '\t') {
            put(o, "\\t", 2);
        } else if (*s < ' ' || *s >= 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", *s);
            put(o, esc, 4);
        } else {
            put(o, (const char *)s, 1);
        }
    }
    put(o, "\"", 1);
}

/* A JSON string; bytes outside printable ASCII become \u00XX, so the line is valid UTF-8 even
 * when a proxy client sent odd bytes in a host name. */
static void put_json_string(out *o, const char *v)
{
    const unsigned char *s = (const unsigned char *)(v && *v ? v : "-");
    put(o, "\"", 1);
    for (; *s; s++) {
        char esc[8];
        if (*s == '"' || *s == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*s;
            put(o, esc, 2);
        } else if (*s < ' ' || *s >= 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", *s);
            put(o, esc, 6);
        } else {
            put(o, (const char *)s, 1);
        }
    }
    put(o, "\"", 1);
}

/* "2026-01-02T03:04:05.678Z"; the part up to the seconds is made once a second. */
static void put_time(access_log *a, out *o)
{
    struct timespec ts;
    char ms[8];
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != a->stamp_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(a->stamp, sizeof a->stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        a->stamp_sec = ts.tv_sec;
    }
    puts_(o, a->stamp);
    snprintf(ms, sizeof ms, ".%03dZ", (int)(ts.tv_nsec / 1000000));
    put(o, ms, 5);
}

static size_t format_text(access_log *a, const wr_access_record *r, char *buf, size_t size)
{
    out o = {buf, buf + size - 1}; /* room for the newline */
    puts_(&o, "time=");
    put_time(a, &o);
    puts_(&o, " tunnel=");
    put_text_value(&o, r->tunnel);
    puts_(&o, " user=");
    put_text_value(&o, r->user);
    puts_(&o, " peer=");
    put_text_value(&o, r->peer);
    puts_(&o, " target=");
    put_text_value(&o, r->target);
    puts_(&o, " bytes_up=");
    put_u64(&o, r->bytes_up);
    puts_(&o, " bytes_down=");
    put_u64(&o, r->bytes_down);
    puts_(&o, " duration_ms=");
    put_u64(&o, r->duration_ms);
    puts_(&o, " reason=");
    put_text_value(&o, r->reason);
    *o.p++ = '\n';
    return (size_t)(o.p - buf);
}

static size_t format_json(access_log *a, const wr_access_record *r, char *buf, size_t size)
{
    /* The strings are bounded (see wr_access_log_write): even escaped, the line is whole. */
    out o = {buf, buf + size - 1};
    puts_(&o, "{\"time\":\"");
    put_time(a, &o);
    puts_(&o, "\",\"tunnel\":");
    put_json_string(&o, r->tunnel);
    puts_(&o, ",\"user\":");
    put_json_string(&o, r->user);
    puts_(&o, ",\"peer\":");
    put_json_string(&o, r->peer);
    puts_(&o, ",\"target\":");
    put_json_string(&o, r->target);
    puts_(&o, ",\"bytes_up\":");
    put_u64(&o, r->bytes_up);
    puts_(&o, ",\"bytes_down\":");
    put_u64(&o, r->bytes_down);
    puts_(&o, ",\"duration_ms\":");
    put_u64(&o, r->duration_ms);
    puts_(&o, ",\"reason\":");
    put_json_string(&o, r->reason);
    puts_(&o, "}");
    *o.p++ = '\n';
    return (size_t)(o.p - buf);
}

/* A field value cut to max bytes (escaping grows it at most 6 times: the sum stays in a record). */
static const char *cut(const char *v, char *tmp, size_t max)
{
    if (!v || strlen(v) <= max) return v;
    memcpy(tmp, v, max);
    tmp[max] = '\0';
    return tmp;
}

void wr_access_log_write(const wr_access_record *rec)
{
    access_log *a = current;
    char buf[RECORD_MAX];
    char t1[WR_ACCESS_NAME_MAX], t2[48], t3[72], t4[280];
    wr_access_record r;
    size_t n;
    if (!a) return;
    /* Each string field is bounded so that even fully escaped the record fits in RECORD_MAX. */
    r = *rec;
    r.tunnel = cut(rec->tunnel, t1, WR_ACCESS_NAME_MAX - 1);
    r.user = cut(rec->user, t2, 40);
    r.peer = cut(rec->peer, t3, 64);
    r.target = cut(rec->target, t4, 262);
    r.reason = rec->reason && strlen(rec->reason) < 24 ? rec->reason : "error";
    n = a->format == WR_ACCESS_JSON ? format_json(a, &r, buf, sizeof buf)
                                    : format_text(a, &r, buf, sizeof buf);
    if (a->cap - a->pending_len < n) {
        a->st.dropped++;
        return;
    }
    memcpy(a->pending + a->pending_len, buf, n);
    a->pending_len += n;
    a->st.records++;
    schedule(a);
}

/* ---- reasons ---- */

const char *wr_access_user(const wr_session_t *s)
{
    const char *user = s ? wr_session_user(s) : NULL;
    return user && user[0] ? user : NULL; /* a client's own sessions have none */
}

const char *wr_access_relay_reason(const wr_relay_result_t *res, int stream_side)
{
    switch (res->reason) {
    case WR_RELAY_EOF:
        return "eof";
    case WR_RELAY_IDLE:
        return "timeout";
    case WR_RELAY_RESET:
        return "reset";
    case WR_RELAY_CLOSED:
        return "closed";
    case WR_RELAY_ERROR:
        if (res->err_side == stream_side && res->err == UV_ECONNABORTED) return "session";
        return res->err == UV_ETIMEDOUT ? "timeout" : "error";
    }
    return "error";
}

const char *wr_access_dial_reason(int err)
{
    if (err == UV_EACCES) return "denied";
    if (err == UV_ECONNABORTED) return "session";
    return wr_dial_failure_class(err);
}

const char *wr_access_open_reason(const char *reason, char *out, size_t size)
{
    static const char *const classes[] = {"refused", "unreachable", "timeout", "denied"};
    for (size_t i = 0; reason && i < sizeof classes / sizeof classes[0]; i++) {
        size_t n = strlen(classes[i]);
        if (strncmp(reason, classes[i], n) == 0 && reason[n] == ':') {
            snprintf(out, size, "%s", classes[i]);
            return out;
        }
    }
    snprintf(out, size, "%s", reason ? "failed" : "session");
    return out;
}
