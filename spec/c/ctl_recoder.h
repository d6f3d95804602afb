/* A control-message visitor that writes every event it sees into a wr_ctl_writer: decoding
 * through it re-encodes the value. Containers close by count in the writer, so a decoder that
 * emitted one element too many or too few, or a value without its key, makes the writer fail.
 * Shared by the unit tests and the fuzz target. */
#ifndef WR_SPEC_CTL_RECODER_H
#define WR_SPEC_CTL_RECODER_H

#include "wr_ctl.h"

static int r_nil(void *ud)
{
    return wr_ctl_put_nil(ud);
}
static int r_bool(void *ud, int v)
{
    return wr_ctl_put_bool(ud, v);
}
static int r_int(void *ud, int64_t v)
{
    return wr_ctl_put_int(ud, v);
}
static int r_num(void *ud, double v)
{
    return wr_ctl_put_double(ud, v);
}
static int r_str(void *ud, const uint8_t *s, size_t len)
{
    return wr_ctl_put_string(ud, s, len);
}
static int r_arr(void *ud, uint32_t n)
{
    return wr_ctl_put_array(ud, n);
}
static int r_map(void *ud, uint32_t n)
{
    return wr_ctl_put_map(ud, n);
}
static int r_key(void *ud, const uint8_t *s, size_t len)
{
    return wr_ctl_put_key(ud, s, len);
}

static const wr_ctl_visitor recoder = {r_nil, r_bool, r_int, r_num, r_str,
                                       r_arr, r_map,  r_key, NULL};

#endif
