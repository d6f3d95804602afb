/* The WebSocket frame decoder on arbitrary bytes, as a relay (masked frames expected) and as a
 * client: the input decoded at once and decoded in pieces of sizes the input chooses must give
 * the same payload bytes, the same control frames and the same verdict. */
#include "fuzz_input.h"
#include "wr_ws_frame.h"

#include <stdlib.h>
#include <string.h>

#define KEEP (1 << 16)

struct record {
    uint8_t data[KEEP], control[KEEP];
    size_t data_len, control_len;
};

static void add(uint8_t *buf, size_t *len, const uint8_t *p, size_t n)
{
    if (n > KEEP - *len) n = KEEP - *len;
    memcpy(buf + *len, p, n);
    *len += n;
}

static int on_data(void *ctx, uint8_t *p, size_t len)
{
    struct record *r = ctx;
    if (len == 0) abort(); /* empty pieces are never handed on */
    add(r->data, &r->data_len, p, len);
    return 0;
}

static int on_control(void *ctx, enum wr_ws_opcode op, const uint8_t *p, size_t len)
{
    struct record *r = ctx;
    uint8_t head[2] = {(uint8_t)op, (uint8_t)len};
    if (len > WR_WS_CONTROL_MAX) abort();
    if (op != WR_WS_PING && op != WR_WS_PONG && op != WR_WS_CLOSE) abort();
    add(r->control, &r->control_len, head, 2);
    add(r->control, &r->control_len, p, len);
    return 0;
}

static const wr_ws_decoder_cbs cbs = {.on_data = on_data, .on_control = on_control};

static int run(const uint8_t *data, size_t size, int from_client, const uint8_t *cuts, size_t ncuts,
               struct record *rec)
{
    uint8_t *copy = malloc(size ? size : 1);
    wr_ws_decoder d;
    size_t off = 0, used;
    int rc = 0;
    memcpy(copy, data, size);
    wr_ws_decoder_init(&d, from_client);
    for (size_t i = 0; off < size && rc == 0; i++) {
        size_t n = ncuts ? (size_t)cuts[i % ncuts] + 1 : size - off;
        if (n > size - off) n = size - off;
        rc = wr_ws_decode(&d, copy + off, n, &cbs, rec, &used);
        if (used > n || (rc == 0 && used != n)) abort();
        off += n;
    }
    free(copy);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct record whole, pieces;
    struct reader in = {data, size};
    uint8_t cuts[8];
    int from_client = take(&in) & 1, r1, r2;
    take_n(&in, cuts, sizeof cuts);
    memset(&whole, 0, sizeof whole);
    memset(&pieces, 0, sizeof pieces);
    r1 = run(in.p, in.n, from_client, NULL, 0, &whole);
    r2 = run(in.p, in.n, from_client, cuts, sizeof cuts, &pieces);
    if (r1 != r2 || (r1 != 0 && r1 != WR_WS_PROTOCOL_ERROR && r1 != WR_WS_UNSUPPORTED_DATA))
        abort();
    if (r1 == 0 && (whole.data_len != pieces.data_len || whole.control_len != pieces.control_len ||
                    memcmp(whole.data, pieces.data, whole.data_len) != 0 ||
                    memcmp(whole.control, pieces.control, whole.control_len) != 0))
        abort();
    return 0;
}
