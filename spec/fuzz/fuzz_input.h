/* The fuzzer's input read as a stream of choices: once it runs out, every further byte is 0, so a
 * target can take as many as it likes without checking lengths. */
#ifndef WR_FUZZ_INPUT_H
#define WR_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

struct reader {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t take(struct reader *r)
{
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static inline void take_n(struct reader *r, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = take(r);
}

#endif
