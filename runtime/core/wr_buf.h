/* Refcounted byte chunks: a socket read lands in a chunk and the same chunk is handed to the
 * other side's write without copying. Full-size chunks come from a small bounded free list so
 * steady-state forwarding does no malloc per read; a chunk goes back to the list as soon as its
 * last reference is dropped, so an idle connection pins no chunk at all. */
#ifndef WR_BUF_H
#define WR_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Read size for sockets: large enough for ~GB/s per syscall, small enough to cache a few. */
#define WR_BUF_SIZE (64 * 1024)
/* Read size for a socket whose last read brought WR_BUF_SIZE or more: a bulk transfer makes a
 * quarter of the read syscalls (on loopback, one -L stream's client went from 52 to 40 syscalls
 * per MiB, 28 with 60 KiB frames), while the many quiet sockets keep reading into small chunks. */
#define WR_BUF_BULK_SIZE (256 * 1024)
/* Default number of idle chunks kept per thread: 32 full-size and 8 bulk ones (2 MiB each). */
#define WR_BUF_CACHE_DEFAULT      32
#define WR_BUF_BULK_CACHE_DEFAULT 8

typedef struct wr_buf {
    uint32_t refs;
    uint32_t size;       /* usable bytes in data[] */
    struct wr_buf *next; /* free-list link while cached */
    char data[];         /* 16-byte aligned after the header on LP64 */
} wr_buf_t;

typedef struct wr_buf_stats {
    size_t live;       /* chunks with at least one reference */
    size_t live_bytes; /* their sizes added up: the memory buffers hold now */
    size_t cached;     /* idle full-size and bulk chunks on the free lists */
    uint64_t mallocs;  /* chunk allocations that went to malloc (cache misses + exact-size) */
} wr_buf_stats_t;

/* A full-size (WR_BUF_SIZE) chunk with one reference; NULL when out of memory. */
wr_buf_t *wr_buf_get(void);
/* A bulk-size (WR_BUF_BULK_SIZE) chunk with one reference; NULL when out of memory. */
wr_buf_t *wr_buf_get_bulk(void);
/* An exact-size chunk (never cached): for small slices that must be held for a while. */
wr_buf_t *wr_buf_new(size_t size);

static inline wr_buf_t *wr_buf_retain(wr_buf_t *b)
{
    b->refs++;
    return b;
}

/* Whether holding base[0..len) of b (queued for a while) would pin far more memory than it
 * carries: a slice of under half its chunk. Such slices are copied before queueing, so a backlog
 * stays within twice the queued bytes: a carrier read holds frames of several streams, and one
 * stalled stream must not keep every chunk its frames arrived in. Copies happen only when bytes
 * wait (a full socket, a paused reader), never on the path that writes or delivers at once. */
static inline int wr_buf_slice_pins_much(const wr_buf_t *b, size_t len)
{
    return b->size > 2 * len;
}

/* Drops one reference; the last one returns the chunk to the cache or frees it. */
void wr_buf_release(wr_buf_t *b);

/* The chunk whose data[] starts at base (as handed to libuv in alloc_cb). */
static inline wr_buf_t *wr_buf_of(char *base)
{
    return (wr_buf_t *)(void *)(base - offsetof(wr_buf_t, data));
}

/* Once per process, before any chunk: freed chunks stay in malloc's heap. When busy streams hold
 * more chunks than the caches keep, chunks are freed and allocated again at line rate, and glibc
 * would give the heap's top back to the kernel on a free and fault fresh pages in on the next
 * malloc (28 page faults per MiB, a third more CPU per byte, with eight -L streams). Memory goes
 * back to the system by wr_buf_release_memory instead, once a backlog is gone. */
void wr_buf_malloc_setup(void);
/* Bound of the per-thread free list of full-size chunks; shrinking frees the surplus at once. */
void wr_buf_cache_set_limit(size_t chunks);
/* Frees every cached chunk (e.g. after a burst, or at exit so leak checkers stay quiet). */
void wr_buf_cache_trim(void);
void wr_buf_get_stats(wr_buf_stats_t *out);
/* Bytes in live chunks (this thread): what relays weigh against the process's buffer budget. */
size_t wr_buf_live_bytes(void);
/* Gives memory back to the system once a backlog is gone: when live bytes fell by at least
 * min_freed and to at most half of their peak since the last time, frees the cached chunks and
 * asks malloc to return free pages. 1 if it did. Cheap to call when there is nothing to do. */
int wr_buf_release_memory(size_t min_freed);

#endif
