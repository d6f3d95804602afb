/* KCP's receive path on arbitrary datagrams: the input is cut into datagrams (a length byte, then
 * the bytes) fed to one instance that also sends, reads and flushes as the input chooses. Nothing
 * may crash or leak, counters must stay coherent, and a datagram whose first header fails to
 * parse must be refused. Conversations are fixed at 1 so segments get past the conv check. */
#include "fuzz_input.h"
#include "wr_kcp.h"

#include <stdlib.h>
#include <string.h>

static void out(const uint8_t *dgram, size_t len, void *user)
{
    size_t *mtu = user;
    if (len > *mtu || len < WR_KCP_HEADER) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader r = {data, size};
    wr_kcp_config cfg = {.mtu = 200 + take(&r),
                         .snd_wnd = 1 + take(&r) % 64,
                         .rcv_wnd = 1 + take(&r) % 64,
                         .nodelay = take(&r) % 3,
                         .resend = take(&r) % 4,
                         .nocwnd = take(&r) & 1};
    size_t mtu = cfg.mtu;
    uint32_t now = 0;
    uint8_t buf[512], sink[4096];
    wr_kcp_t *k = wr_kcp_new(1, &cfg, out, &mtu);
    if (!k) abort();
    while (r.n > 0) {
        uint8_t op = take(&r), n = take(&r);
        wr_kcp_seg_header h;
        take_n(&r, buf, n);
        now += op >> 4;
        switch (op & 3) {
        case 0:
            if (wr_kcp_input(k, buf, n, now) == 0 && n > 0 && wr_kcp_parse_header(buf, n, &h) != 0)
                abort();
            break;
        case 1:
            wr_kcp_send(k, buf, n);
            break;
        case 2:
            wr_kcp_recv(k, sink, (size_t)n * 16);
            break;
        default:
            wr_kcp_update(k, now);
            break;
        }
        if (wr_kcp_snd_nxt(k) - wr_kcp_snd_una(k) > cfg.snd_wnd) abort();
    }
    wr_kcp_flush(k, now);
    wr_kcp_free(k);
    return 0;
}
