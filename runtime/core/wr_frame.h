/* warren/1 frame codec: one sealer per sending direction, one opener per receiving direction.
 *
 * A frame on the wire is
 *     AEAD(k, n,   {len u16, type u8, flags u8, stream_id u32} big-endian)   8 + 16 bytes
 *     AEAD(k, n+1, payload[len])                                  len + 16 bytes, only if len > 0
 * with nonce = 4 zero bytes || u64 big-endian counter, +1 per AEAD operation and direction.
 * Any failure in the opener is final: the session is over, nothing resynchronises.
 *
 * Rekeying is automatic and invisible to the user of this API: after rekey_interval frames the
 * sealer appends a REKEY frame and both sides switch to HKDF-Expand(k, "rekey", 32) with the
 * counter back at 0. The opener consumes REKEY frames itself.
 *
 * Return values: WR_FRAME_OK (a frame was produced), WR_FRAME_NEED_MORE (opener only: every
 * byte given was consumed), or a negative WR_FRAME_E* code. */
#ifndef WR_FRAME_H
#define WR_FRAME_H

#include "wr_crypto.h"

#include <stddef.h>
#include <stdint.h>

/* Frame types, for the mux. Numbers are part of the wire protocol. */
enum wr_frame_type {
    WR_FT_DATA = 0x01,      /* stream bytes */
    WR_FT_OPEN = 0x02,      /* open a stream; payload: the target, mux-defined */
    WR_FT_OPEN_ACK = 0x03,  /* the stream is connected */
    WR_FT_OPEN_FAIL = 0x04, /* the stream could not be opened; payload: reason */
    WR_FT_WINDOW = 0x05,    /* credit for more DATA on a stream */
    WR_FT_EOF = 0x06,       /* half-close: no more DATA from this side */
    WR_FT_RST = 0x07,       /* abort a stream */
    WR_FT_PING = 0x08,      /* keepalive; payload echoed in PONG */
    WR_FT_PONG = 0x09,
    WR_FT_GOAWAY = 0x0a,      /* no new streams; existing ones finish */
    WR_FT_SESSION_END = 0x0b, /* clean end of session (a cut stream without it is truncation) */
    WR_FT_REKEY = 0x0c,       /* internal to the codec; never handed to the mux */
};

#define WR_FRAME_HDR_LEN      8
#define WR_FRAME_HDR_WIRE     (WR_FRAME_HDR_LEN + WR_AEAD_TAG_LEN) /* 24 */
#define WR_FRAME_MAX_DEFAULT  16384
#define WR_FRAME_MAX_LIMIT    65535
#define WR_FRAME_REKEY_FRAMES (1ull << 30) /* ChaCha20-Poly1305 */
/* AES-256-GCM's margin shrinks with the square of the blocks under one key: 2^24 frames of at
 * most 4 097 blocks keep a distinguisher's advantage under 2^-57 (TLS 1.3's target). */
#define WR_FRAME_REKEY_FRAMES_GCM (1ull << 24)
#define WR_FRAME_COUNTER_MAX      (1ull << 63)

/* Bytes one frame takes on the wire. */
#define WR_FRAME_WIRE_SIZE(len) (WR_FRAME_HDR_WIRE + ((len) ? (size_t)(len) + WR_AEAD_TAG_LEN : 0))
/* Room wr_frame_seal may need: the frame plus a REKEY frame it may append. */
#define WR_FRAME_SEAL_ROOM(len) (WR_FRAME_WIRE_SIZE(len) + WR_FRAME_HDR_WIRE)

enum wr_frame_err {
    WR_FRAME_OK = 0,
    WR_FRAME_NEED_MORE = 1,
    WR_FRAME_EAUTH = -1,    /* a sealed part did not authenticate */
    WR_FRAME_ETOOLONG = -2, /* declared length over max_payload (checked before reading it) */
    WR_FRAME_ELIMIT = -3,   /* nonce counter at its limit: refuse, end the session */
    WR_FRAME_EPROTO = -4,   /* malformed REKEY frame */
    WR_FRAME_ENOMEM = -5,
    WR_FRAME_ESPACE = -6,  /* output buffer too small (nothing written, state unchanged) */
    WR_FRAME_EDEAD = -7,   /* an earlier call failed fatally */
    WR_FRAME_EINVAL = -8,  /* bad argument */
    WR_FRAME_ECRYPTO = -9, /* backend failure */
};
const char *wr_frame_strerror(int err);

typedef struct wr_frame_opts {
    uint32_t max_payload;    /* 0 = WR_FRAME_MAX_DEFAULT; at most WR_FRAME_MAX_LIMIT */
    uint64_t rekey_interval; /* frames per key; 0 = WR_FRAME_REKEY_FRAMES (_GCM for AES-256-GCM);
                                UINT64_MAX = never */
    uint64_t counter_limit;  /* highest usable nonce counter + 1; 0 = WR_FRAME_COUNTER_MAX */
} wr_frame_opts;

typedef struct wr_frame_sealer {
    wr_aead *aead;
    uint8_t key[32];
    uint64_t counter;    /* next nonce */
    uint64_t key_frames; /* frames sealed under the current key */
    uint64_t rekeys;
    wr_frame_opts opts;
    int dead;
} wr_frame_sealer;

/* opts may be NULL. Both ends must use the same max_payload. */
int wr_frame_sealer_init(wr_frame_sealer *s, enum wr_backend b, enum wr_aead_alg alg,
                         const uint8_t key[32], const wr_frame_opts *opts);
void wr_frame_sealer_free(wr_frame_sealer *s);
/* Append one frame at out (cap bytes available; WR_FRAME_SEAL_ROOM(len) always suffices).
 * payload may be out + WR_FRAME_HDR_WIRE (sealed in place, no copy); it must not otherwise
 * overlap out. Seal several frames back to back for one write. type must not be REKEY. */
int wr_frame_seal(wr_frame_sealer *s, uint8_t *out, size_t cap, uint8_t type, uint8_t flags,
                  uint32_t stream_id, const uint8_t *payload, size_t len, size_t *written);
/* Rekey now (e.g. on a timer): appends a REKEY frame (WR_FRAME_HDR_WIRE bytes). */
int wr_frame_seal_rekey(wr_frame_sealer *s, uint8_t *out, size_t cap, size_t *written);

/* A frame handed out by the opener. payload points into the caller's input or the opener's
 * buffer and is valid until the next wr_frame_open call; NULL when len is 0. */
typedef struct wr_frame {
    uint8_t type;
    uint8_t flags;
    uint32_t stream_id;
    uint8_t *payload;
    size_t len;
} wr_frame;

typedef struct wr_frame_opener {
    wr_aead *aead;
    uint8_t key[32];
    uint64_t counter;
    uint64_t frames; /* frames authenticated so far: > 0 confirms the peer's keys */
    uint64_t rekeys;
    wr_frame_opts opts;
    int dead;
    int have_header; /* header opened, payload pending */
    size_t hdr_have; /* sealed header bytes buffered */
    uint8_t hdr_buf[WR_FRAME_HDR_WIRE];
    wr_frame cur; /* the pending frame's header fields */
    uint8_t *buf; /* payload ciphertext of a split frame; allocated on first need */
    size_t buf_have;
} wr_frame_opener;

int wr_frame_opener_init(wr_frame_opener *o, enum wr_backend b, enum wr_aead_alg alg,
                         const uint8_t key[32], const wr_frame_opts *opts);
void wr_frame_opener_free(wr_frame_opener *o);
/* Feed bytes as they arrive, in any split. Decrypts in place in data where a whole frame is
 * present. On OK, *f is a frame and *consumed says how much of data was used: call again with
 * the rest. On NEED_MORE all of data was consumed (buffered). Negative: fatal. */
int wr_frame_open(wr_frame_opener *o, uint8_t *data, size_t len, size_t *consumed, wr_frame *f);
/* Bytes still missing before the opener can make progress: the rest of the sealed header,
 * or, once the header is open, the rest of the sealed payload. */
size_t wr_frame_opener_need(const wr_frame_opener *o);
/* Release the split-frame buffer if no frame is in progress (idle sessions stay small). */
void wr_frame_opener_trim(wr_frame_opener *o);

#endif
