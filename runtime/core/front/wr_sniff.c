#include "wr_sniff.h"

/* A method token: 3 to 10 capital letters (GET, POST, OPTIONS, PROPFIND, the HTTP/2 preface's
 * PRI...). Servers answer unknown methods themselves, so any such token counts. */
#define METHOD_MIN 3
#define METHOD_MAX 10

static enum wr_sniff_kind sniff_tls(const uint8_t *p, size_t len)
{
    /* Record: type 22 (handshake), version 3.x (x <= 4), length; then handshake type 1. */
    if (len >= 2 && p[1] != 0x03) return WR_SNIFF_RAW;
    if (len >= 3 && p[2] > 0x04) return WR_SNIFF_RAW;
    if (len < 6) return WR_SNIFF_NEED_MORE;
    return p[5] == 0x01 ? WR_SNIFF_TLS : WR_SNIFF_RAW;
}

static enum wr_sniff_kind sniff_http(const uint8_t *p, size_t len)
{
    size_t i;
    for (i = 0; i < len && i <= METHOD_MAX; i++) {
        if (p[i] == ' ') return i >= METHOD_MIN ? WR_SNIFF_HTTP : WR_SNIFF_RAW;
        if (p[i] < 'A' || p[i] > 'Z') return WR_SNIFF_RAW;
    }
    return i > METHOD_MAX ? WR_SNIFF_RAW : WR_SNIFF_NEED_MORE;
}

enum wr_sniff_kind wr_sniff(const uint8_t *p, size_t len)
{
    if (len == 0) return WR_SNIFF_NEED_MORE;
    if (p[0] == 0x16) return sniff_tls(p, len);
    if (p[0] >= 'A' && p[0] <= 'Z') return sniff_http(p, len);
    return WR_SNIFF_RAW;
}

const char *wr_sniff_name(enum wr_sniff_kind kind)
{
    switch (kind) {
    case WR_SNIFF_NEED_MORE:
        return "undecided";
    case WR_SNIFF_RAW:
        return "raw";
    case WR_SNIFF_TLS:
        return "tls";
    case WR_SNIFF_HTTP:
        return "http";
    }
    return "?";
}
