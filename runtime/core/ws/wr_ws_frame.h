/* RFC 6455 framing for the WebSocket carrier: frame headers out, and an incremental decoder in.
 * Pure and allocation-free, so it is fuzzed on its own.
 *
 * The decoder unmasks payload in place and hands data-frame payload on as it arrives, piece by
 * piece, without waiting for a whole frame: a carrier frame is as long as the peer likes, and
 * nothing here is sized by it. Control frames (at most 125 bytes, never fragmented) are gathered
 * and handed on whole. Whatever the RFC calls a failure ends decoding with a close status to send
 * (1002 protocol error, 1003 a text message, which this carrier never sends). */
#ifndef WR_WS_FRAME_H
#define WR_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define WR_WS_HEADER_MAX  14  /* 2 + 8 (64-bit length) + 4 (mask key) */
#define WR_WS_CONTROL_MAX 125 /* payload of a control frame */

enum wr_ws_opcode {
    WR_WS_CONTINUATION = 0x0,
    WR_WS_TEXT = 0x1,
    WR_WS_BINARY = 0x2,
    WR_WS_CLOSE = 0x8,
    WR_WS_PING = 0x9,
    WR_WS_PONG = 0xa,
};

enum wr_ws_status {
    WR_WS_NORMAL = 1000,
    WR_WS_PROTOCOL_ERROR = 1002,
    WR_WS_UNSUPPORTED_DATA = 1003,
};

/* Writes the header of one final frame (FIN set) into out (WR_WS_HEADER_MAX bytes); mask_key
 * NULL sends it unmasked (server to client). Returns the header length. */
size_t wr_ws_header(uint8_t *out, enum wr_ws_opcode op, uint64_t len, const uint8_t *mask_key);

/* XORs p[0..len) with key, starting at byte `phase` of the key's cycle (the offset of p within
 * its frame's payload). Masking and unmasking are the same operation. */
void wr_ws_mask(uint8_t *p, size_t len, const uint8_t key[4], uint64_t phase);

typedef struct wr_ws_decoder_cbs {
    /* Payload of a binary message (unmasked, in place). Non-zero stops decoding at once. */
    int (*on_data)(void *ctx, uint8_t *p, size_t len);
    /* A whole control frame (PING, PONG or CLOSE). Non-zero stops decoding at once. */
    int (*on_control)(void *ctx, enum wr_ws_opcode op, const uint8_t *p, size_t len);
} wr_ws_decoder_cbs;

typedef struct wr_ws_decoder {
    int from_client; /* frames must be masked (a server reading); else they must not be */
    uint8_t hdr[WR_WS_HEADER_MAX];
    size_t hdr_have;
    int opcode;
    uint8_t key[4];
    int masked;
    uint64_t left;  /* payload bytes of the current frame still to come */
    uint64_t phase; /* payload bytes of the current frame already seen (mask phase) */
    int in_payload; /* header done, payload (possibly empty) being read */
    int in_message; /* a fragmented binary message is open: continuations expected */
    uint8_t control[WR_WS_CONTROL_MAX];
    size_t control_len;
    int failed; /* the close status of the failure, once decoding failed */
} wr_ws_decoder;

void wr_ws_decoder_init(wr_ws_decoder *d, int from_client);

/* Decodes p[0..len) (modified: payload is unmasked in place). Returns 0 when every byte was
 * taken, 1 when a callback stopped it (*used bytes were taken; the rest is untouched), or a close
 * status (> 1) when the bytes break the RFC; after a failure every call returns that again. */
int wr_ws_decode(wr_ws_decoder *d, uint8_t *p, size_t len, const wr_ws_decoder_cbs *cbs, void *ctx,
                 size_t *used);

#endif
