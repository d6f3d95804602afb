#include "wr_buf.h"

#include <stdlib.h>

/* One loop per thread, so the cache is per thread and needs no lock. */
static _Thread_local struct {
    wr_buf_t *head;
    size_t count;
    size_t limit;
    int limit_set;
    size_t live;
    uint64_t mallocs;
} cache;

static size_t cache_limit(void)
{
    return cache.limit_set ? cache.limit : WR_BUF_CACHE_DEFAULT;
}

static wr_buf_t *buf_alloc(size_t size)
{
    wr_buf_t *b = malloc(sizeof(*b) + size);
    if (b == NULL) return NULL;
    b->refs = 1;
    b->size = (uint32_t)size;
    b->next = NULL;
    cache.mallocs++;
    cache.live++;
    return b;
}

wr_buf_t *wr_buf_get(void)
{
    wr_buf_t *b = cache.head;
    if (b == NULL) return buf_alloc(WR_BUF_SIZE);
    cache.head = b->next;
    cache.count--;
    b->next = NULL;
    b->refs = 1;
    cache.live++;
    return b;
}

wr_buf_t *wr_buf_new(size_t size)
{
    if (size > UINT32_MAX) return NULL;
    return buf_alloc(size);
}

void wr_buf_release(wr_buf_t *b)
{
    if (--b->refs > 0) return;
    cache.live--;
    if (b->size == WR_BUF_SIZE && cache.count < cache_limit()) {
        b->next = cache.head;
        cache.head = b;
        cache.count++;
        return;
    }
    free(b);
}

void wr_buf_cache_set_limit(size_t chunks)
{
    cache.limit = chunks;
    cache.limit_set = 1;
    while (cache.count > chunks) {
        wr_buf_t *b = cache.head;
        cache.head = b->next;
        cache.count--;
        free(b);
    }
}

void wr_buf_cache_trim(void)
{
    while (cache.head != NULL) {
        wr_buf_t *b = cache.head;
        cache.head = b->next;
        free(b);
    }
    cache.count = 0;
}

void wr_buf_get_stats(wr_buf_stats_t *out)
{
    out->live = cache.live;
    out->cached = cache.count;
    out->mallocs = cache.mallocs;
}
