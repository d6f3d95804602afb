#include "wr_buf.h"

#include "wr_freelist.h"

#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Idle full-size and bulk-size chunks. */
static _Thread_local wr_freelist_t cache = WR_FREELIST_INIT(wr_buf_t, next, WR_BUF_CACHE_DEFAULT);
static _Thread_local wr_freelist_t bulk_cache =
    WR_FREELIST_INIT(wr_buf_t, next, WR_BUF_BULK_CACHE_DEFAULT);
static _Thread_local size_t live, live_bytes, peak_bytes;
static _Thread_local uint64_t mallocs;

static void count_live(const wr_buf_t *b)
{
    live++;
    live_bytes += b->size;
    if (live_bytes > peak_bytes) peak_bytes = live_bytes;
}

static wr_buf_t *buf_alloc(size_t size)
{
    wr_buf_t *b = malloc(sizeof(*b) + size);
    if (b == NULL) return NULL;
    b->refs = 1;
    b->size = (uint32_t)size;
    mallocs++;
    count_live(b);
    return b;
}

static wr_buf_t *cached_get(wr_freelist_t *fl, size_t size)
{
    wr_buf_t *b = wr_freelist_pop(fl);
    if (b == NULL) return buf_alloc(size);
    b->refs = 1;
    count_live(b);
    return b;
}

wr_buf_t *wr_buf_get(void)
{
    return cached_get(&cache, WR_BUF_SIZE);
}

wr_buf_t *wr_buf_get_bulk(void)
{
    return cached_get(&bulk_cache, WR_BUF_BULK_SIZE);
}

wr_buf_t *wr_buf_new(size_t size)
{
    if (size > UINT32_MAX) return NULL;
    return buf_alloc(size);
}

void wr_buf_release(wr_buf_t *b)
{
    if (--b->refs > 0) return;
    live--;
    live_bytes -= b->size;
    if (b->size == WR_BUF_SIZE)
        wr_freelist_push(&cache, b);
    else if (b->size == WR_BUF_BULK_SIZE)
        wr_freelist_push(&bulk_cache, b);
    else
        free(b);
}

void wr_buf_malloc_setup(void)
{
#ifdef __GLIBC__
    /* Setting the trim threshold also freezes the mmap threshold at its 128 KiB default: raise
     * it above a bulk chunk, or every bulk chunk malloc'ed would be an mmap and a munmap. */
    mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_MMAP_THRESHOLD, 4 * WR_BUF_BULK_SIZE);
#endif
}

void wr_buf_cache_set_limit(size_t chunks)
{
    wr_freelist_limit(&cache, chunks);
}

void wr_buf_cache_trim(void)
{
    wr_freelist_trim(&cache);
    wr_freelist_trim(&bulk_cache);
}

size_t wr_buf_live_bytes(void)
{
    return live_bytes;
}

int wr_buf_release_memory(size_t min_freed)
{
    if (peak_bytes - live_bytes < min_freed || live_bytes > peak_bytes / 2) return 0;
    wr_buf_cache_trim();
#ifdef __GLIBC__
    /* glibc keeps freed heap pages mapped; a backlog of 64 KiB chunks never goes back without
     * this (they are below the mmap threshold). */
    malloc_trim(0);
#endif
    peak_bytes = live_bytes;
    return 1;
}

void wr_buf_get_stats(wr_buf_stats_t *out)
{
    out->live = live;
    out->live_bytes = live_bytes;
    out->cached = cache.count + bulk_cache.count;
    out->mallocs = mallocs;
}
