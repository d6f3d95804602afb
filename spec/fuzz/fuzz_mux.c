/* libFuzzer target for the mux state machine: decrypted frames (type, flags, stream id, payload)
 * interleaved with the owner's actions (open, accept, reject, write, read start/stop, shutdown,
 * close, goaway, session close), driven through a plain session (no handshake, no crypto, no
 * carrier). Properties: no crash, no sanitizer report, no leak, and the session always ends
 * cleanly and frees itself once the owner closed its streams. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "wr_session_int.h"

#define MAX_EPS 32

static uv_loop_t loop;
static wr_buf_t *chunk;

typedef struct fctx {
    wr_endpoint_t *eps[MAX_EPS];   /* endpoints the owner holds (open until it closes them) */
    wr_stream_t *pending[MAX_EPS]; /* peer-opened streams not answered yet */
    int npending;
    int closed;
    wr_session_t *s;
} fctx;

static fctx ctx;

static void ep_add(wr_endpoint_t *ep)
{
    for (int i = 0; i < MAX_EPS; i++)
        if (ctx.eps[i] == NULL) {
            ctx.eps[i] = ep;
            return;
        }
    wr_endpoint_close(ep, WR_CLOSE_RESET); /* no room: the owner gives up on it */
}

static void ep_forget(wr_endpoint_t *ep)
{
    for (int i = 0; i < MAX_EPS; i++)
        if (ctx.eps[i] == ep) ctx.eps[i] = NULL;
}

static void close_ep(wr_endpoint_t *ep, enum wr_close_mode mode)
{
    if (!(ep->flags & WR_EP_CLOSING)) wr_endpoint_close(ep, mode);
}

static void on_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    /* Touch the bytes so ASan checks the slice. */
    volatile char x = 0;
    for (size_t i = 0; i < len; i += 512)
        x ^= base[i];
    (void)x;
}
static void on_eof(wr_endpoint_t *ep) {}
static void on_error(wr_endpoint_t *ep, int err)
{
    close_ep(ep, WR_CLOSE_RESET);
}
static void on_drain(wr_endpoint_t *ep) {}
static void on_shutdown(wr_endpoint_t *ep, int status) {}
static void on_closed(wr_endpoint_t *ep)
{
    ep_forget(ep);
}
static const wr_endpoint_cbs_t ep_cbs = {on_read,  on_eof,      on_error,
                                         on_drain, on_shutdown, on_closed};

static void on_open(wr_stream_t *st, int status, const char *reason)
{
    if (status < 0) close_ep(wr_stream_endpoint(st), WR_CLOSE_RESET);
}

static void s_stream_open(wr_session_t *s, wr_stream_t *st, const uint8_t *t, size_t n)
{
    if (ctx.npending < MAX_EPS)
        ctx.pending[ctx.npending++] = st;
    else
        wr_stream_reject(st, "busy");
}
static void s_closed(wr_session_t *s, int reason, const char *detail)
{
    ctx.closed = 1;
}
static const wr_session_cbs s_cbs = {.on_stream_open = s_stream_open, .on_closed = s_closed};

static wr_endpoint_t *pick(uint8_t b)
{
    wr_endpoint_t *ep = ctx.eps[b % MAX_EPS];
    if (ep) return ep;
    for (int i = 0; i < MAX_EPS; i++)
        if (ctx.eps[i]) return ctx.eps[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t payload[WR_FRAME_MAX_LIMIT];
    static int init;
    if (!init) {
        init = 1;
        uv_loop_init(&loop);
        chunk = wr_buf_new(WR_BUF_SIZE);
        for (size_t i = 0; i < WR_BUF_SIZE; i++)
            chunk->data[i] = (char)i;
    }
    struct reader in = {data, size};
    memset(&ctx, 0, sizeof(ctx));
    uint8_t mode = take(&in);
    wr_session_config cfg = {
        .is_server = mode & 1,
        .window = (mode & 2) ? WR_SESSION_WINDOW_MIN : 0,
        .max_streams = (mode & 4) ? 4 : 64,
        .max_payload = 2048,
        .keepalive_ms = 1000000,
        .stream_high_water = (mode & 8) ? 4096 : 0,
    };
    ctx.s = wr_session__new_plain(&loop, NULL, &cfg, &s_cbs, NULL);
    if (ctx.s == NULL) return 0;

    while (in.n && !ctx.closed) {
        uint8_t op = take(&in);
        if (op < 0x80) {
            /* A frame from the peer. Mostly well-formed types and small ids, so the fuzzer
             * reaches deep states; sometimes anything. */
            wr_frame f;
            uint8_t t = take(&in), fl = take(&in), idb = take(&in);
            size_t len = (size_t)take(&in) << 8 | take(&in);
            f.type = (t & 0x80) ? t : (uint8_t)(1 + t % 11);
            f.flags = (fl & 0xf0) == 0xf0 ? fl : 0;
            f.stream_id = (idb & 0x80) ? (uint32_t)idb << 24 | (uint32_t)take(&in) << 8
                                       : (uint32_t)(idb & 0x3f);
            if (f.type == WR_FT_DATA && (t & 0x40))
                len = len & 0x3fff;
            else
                len &= 0x7ff;
            if (len > in.n) len = in.n;
            memcpy(payload, in.p, len);
            in.p += len;
            in.n -= len;
            /* Windows and OPEN payloads: make the u32 plausible half of the time. */
            if ((f.type == WR_FT_OPEN || f.type == WR_FT_OPEN_ACK || f.type == WR_FT_WINDOW) &&
                len >= 4 && (t & 0x20)) {
                payload[0] = 0;
                payload[1] = (uint8_t)(1 + (t & 3));
            }
            f.payload = len ? payload : NULL;
            f.len = len;
            wr_session__input(ctx.s, &f);
        } else {
            uint8_t a = take(&in);
            wr_endpoint_t *ep = pick(a);
            switch (op & 0x0f) {
            case 0: { /* open a stream, maybe with 0-RTT data */
                wr_stream_t *st = wr_session_open_stream(ctx.s, payload, a % 40, on_open, NULL);
                if (st) {
                    wr_endpoint_set_callbacks(wr_stream_endpoint(st), &ep_cbs, NULL);
                    ep_add(wr_stream_endpoint(st));
                }
                break;
            }
            case 1: /* accept */
                if (ctx.npending) {
                    wr_stream_t *st = ctx.pending[--ctx.npending];
                    wr_stream_accept(st);
                    wr_endpoint_set_callbacks(wr_stream_endpoint(st), &ep_cbs, NULL);
                    ep_add(wr_stream_endpoint(st));
                    if (a & 1) wr_endpoint_read_start(wr_stream_endpoint(st));
                }
                break;
            case 2: /* reject */
                if (ctx.npending) wr_stream_reject(ctx.pending[--ctx.npending], "nope");
                break;
            case 3:
                if (ep && !(ep->flags & WR_EP_CLOSING)) {
                    size_t n = (size_t)a * 97 % WR_BUF_SIZE;
                    wr_endpoint_write(ep, chunk, chunk->data + (a & 7), n ? n : 1);
                }
                break;
            case 4:
                if (ep && !(ep->flags & WR_EP_CLOSING)) wr_endpoint_read_start(ep);
                break;
            case 5:
                if (ep && !(ep->flags & WR_EP_CLOSING)) wr_endpoint_read_stop(ep);
                break;
            case 6:
                if (ep && !(ep->flags & WR_EP_CLOSING)) wr_endpoint_shutdown(ep);
                break;
            case 7:
                if (ep) close_ep(ep, (a & 1) ? WR_CLOSE_RESET : WR_CLOSE_GRACEFUL);
                break;
            case 8:
                wr_session_goaway(ctx.s);
                break;
            case 9:
                if (a == 0x5a) wr_session_close(ctx.s);
                break;
            default:
                break;
            }
        }
        uv_run(&loop, UV_RUN_NOWAIT);
    }

    /* The owner lets go of everything; the session must end and free itself. */
    while (ctx.npending)
        wr_stream_reject(ctx.pending[--ctx.npending], "end");
    if (!ctx.closed) wr_session_close(ctx.s);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < MAX_EPS; i++)
            if (ctx.eps[i]) close_ep(ctx.eps[i], WR_CLOSE_RESET);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (!ctx.closed) abort(); /* on_closed must have fired */
    for (int i = 0; i < MAX_EPS; i++)
        if (ctx.eps[i]) abort(); /* every endpoint's on_closed ran */
    return 0;
}
