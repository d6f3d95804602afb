/* The front door's classifier on arbitrary first bytes: never reads past len, decides by
 * WR_SNIFF_MAX bytes at the latest, and never changes its mind once decided. */
#include "wr_sniff.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum wr_sniff_kind full = wr_sniff(data, size), first = WR_SNIFF_NEED_MORE;
    if (size >= WR_SNIFF_MAX && full == WR_SNIFF_NEED_MORE) abort();
    for (size_t n = 0; n <= size && n <= WR_SNIFF_MAX; n++) {
        enum wr_sniff_kind k = wr_sniff(data, n);
        if (first == WR_SNIFF_NEED_MORE)
            first = k;
        else if (k != first)
            abort();
    }
    if (first != WR_SNIFF_NEED_MORE && full != first) abort();
    return 0;
}
