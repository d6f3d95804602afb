/* A bounded free list of same-size objects, so hot paths reuse memory instead of calling malloc
 * per read or write. One loop per thread: lists are declared _Thread_local and need no lock. A
 * cached object keeps the list's link in its own `next` member (named by WR_FREELIST_INIT). */
#ifndef WR_FREELIST_H
#define WR_FREELIST_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct wr_freelist {
    void *head;
    size_t count;
    size_t max;  /* objects kept at most; more are freed */
    size_t link; /* offset of the link member in the objects */
} wr_freelist_t;

#define WR_FREELIST_INIT(type, member, max_)                                                       \
    {                                                                                              \
        NULL, 0, (max_), offsetof(type, member)                                                    \
    }

/* A cached object, or NULL when the list is empty. */
static inline void *wr_freelist_pop(wr_freelist_t *fl)
{
    void *p = fl->head;
    if (p == NULL) return NULL;
    memcpy(&fl->head, (char *)p + fl->link, sizeof(void *));
    fl->count--;
    return p;
}

/* Keeps p for reuse, or frees it when the list is full. */
static inline void wr_freelist_push(wr_freelist_t *fl, void *p)
{
    if (fl->count >= fl->max) {
        free(p);
        return;
    }
    memcpy((char *)p + fl->link, &fl->head, sizeof(void *));
    fl->head = p;
    fl->count++;
}

/* Sets the bound and frees what is cached beyond it. */
static inline void wr_freelist_limit(wr_freelist_t *fl, size_t max)
{
    fl->max = max;
    while (fl->count > max)
        free(wr_freelist_pop(fl));
}

/* Frees every cached object (after a burst, or at exit for leak checkers); the bound stays. */
static inline void wr_freelist_trim(wr_freelist_t *fl)
{
    while (fl->count > 0)
        free(wr_freelist_pop(fl));
}

#endif
