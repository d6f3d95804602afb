#include "wr_http_head.h"

#include <string.h>
#include <strings.h>
#include <uv.h>

/* Callback data is kept as offsets into the buffer: it may move between calls, but bytes keep
 * their offsets in it. */
static int span_add(const wr_http_head_t *h, wr_http_span_t *s, const char *at, size_t len)
{
    uint32_t off = (uint32_t)(at - h->base);
    if (s->len == 0)
        s->off = off;
    else if (s->off + s->len != off)
        return -1; /* not contiguous: obs-fold */
    s->len += (uint32_t)len;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    wr_http_head_t *h = p->data;
    if (h->url_span.len + len > WR_HTTP_URL_MAX) {
        h->error = UV_ENAMETOOLONG;
        return -1;
    }
    return span_add(h, &h->url_span, at, len);
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    wr_http_head_t *h = p->data;
    if (h->last_was_value || h->nfields == 0) {
        if (h->nfields == WR_HTTP_FIELDS_MAX) {
            h->error = UV_E2BIG;
            return -1;
        }
        memset(h->spans[h->nfields], 0, sizeof(h->spans[0]));
        h->nfields++;
        h->last_was_value = 0;
    }
    return span_add(h, &h->spans[h->nfields - 1][0], at, len);
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    wr_http_head_t *h = p->data;
    if (h->nfields == 0) return -1;
    h->last_was_value = 1;
    return span_add(h, &h->spans[h->nfields - 1][1], at, len);
}

static int on_headers_complete(http_parser *p)
{
    wr_http_head_t *h = p->data;
    h->keep_alive = http_should_keep_alive(p);
    h->chunked = (p->flags & F_CHUNKED) != 0;
    h->has_length = (p->flags & F_CONTENTLENGTH) != 0;
    h->content_length = h->has_length ? p->content_length : 0;
    return 1; /* the body is the caller's: parse no further than the head */
}

static int on_message_complete(http_parser *p)
{
    wr_http_head_t *h = p->data;
    h->done = 1;
    http_parser_pause(p, 1); /* returns with the head's last byte counted */
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

void wr_http_head_init(wr_http_head_t *h)
{
    memset(h, 0, sizeof(*h));
    http_parser_init(&h->parser, HTTP_REQUEST);
    h->parser.data = h;
}

static void trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

static int finish(wr_http_head_t *h, const char *buf, size_t head_len)
{
    h->method = (enum http_method)h->parser.method;
    h->major = h->parser.http_major;
    h->minor = h->parser.http_minor;
    h->upgrade = h->parser.upgrade;
    h->url = buf + h->url_span.off;
    h->url_len = h->url_span.len;
    for (size_t i = 0; i < h->nfields; i++) {
        wr_http_field_t *f = &h->fields[i];
        f->name = buf + h->spans[i][0].off;
        f->name_len = h->spans[i][0].len;
        f->value = buf + h->spans[i][1].off;
        f->value_len = h->spans[i][1].len;
        trim(&f->value, &f->value_len);
    }
    return h->status = (int)head_len;
}

int wr_http_head_parse(wr_http_head_t *h, const char *buf, size_t len)
{
    if (h->status != 0) {
        /* A complete head moved with its buffer: point into the new one. */
        return h->status > 0 ? finish(h, buf, (size_t)h->status) : h->status;
    }
    if (len <= h->fed) return 0;
    size_t n = len - h->fed;
    if (n > WR_HTTP_HEAD_MAX - h->fed) n = WR_HTTP_HEAD_MAX - h->fed;

    h->base = buf;
    size_t got = http_parser_execute(&h->parser, &settings, buf + h->fed, n);
    h->fed += got;
    if (h->done) return finish(h, buf, h->fed);
    if (HTTP_PARSER_ERRNO(&h->parser) != HPE_OK) return h->status = h->error ? h->error : UV_EINVAL;
    if (h->fed >= WR_HTTP_HEAD_MAX) return h->status = UV_E2BIG;
    return 0;
}

const wr_http_field_t *wr_http_head_field(const wr_http_head_t *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->nfields; i++) {
        const wr_http_field_t *f = &h->fields[i];
        if (f->name_len == n && strncasecmp(f->name, name, n) == 0) return f;
    }
    return NULL;
}

int wr_http_list_has(const char *value, size_t len, const char *token)
{
    size_t tn = strlen(token);
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && value[j] != ',')
            j++;
        const char *item = value + i;
        size_t item_len = j - i;
        trim(&item, &item_len);
        if (item_len == tn && strncasecmp(item, token, tn) == 0) return 1;
        i = j + 1;
    }
    return 0;
}

const char wr_http_not_found[] = "HTTP/1.1 404 Not Found\r\n"
                                 "Content-Type: text/html\r\n"
                                 "Content-Length: 146\r\n"
                                 "Connection: close\r\n"
                                 "\r\n"
                                 "<html>\r\n"
                                 "<head><title>404 Not Found</title></head>\r\n"
                                 "<body>\r\n"
                                 "<center><h1>404 Not Found</h1></center>\r\n"
                                 "<hr><center>nginx</center>\r\n"
                                 "</body>\r\n"
                                 "</html>\r\n";
const size_t wr_http_not_found_len = sizeof wr_http_not_found - 1;
