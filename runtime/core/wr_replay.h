/* An exact set of recently seen handshake salts, for replay refusal.
 *
 * Each salt lives until its own expiry time (the handshake uses its timestamp + window, the
 * last moment a copy of that message could still pass the clock check). Open addressing with
 * a keyed hash (SipHash-2-4, random key per set) so even key holders cannot aim collisions.
 * At the cap the set refuses new salts instead of forgetting live ones. Single-threaded: the
 * event loop owns it. */
#ifndef WR_REPLAY_H
#define WR_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define WR_REPLAY_KEY_LEN     16
#define WR_REPLAY_DEFAULT_CAP 131072

enum wr_replay_err {
    WR_REPLAY_EXISTS = -1, /* the salt is live in the set */
    WR_REPLAY_EFULL = -2,  /* cap live entries already */
    WR_REPLAY_ENOMEM = -3,
};

typedef struct wr_replay wr_replay;

/* cap = most live salts (0 = default). Memory grows with use: ~48 bytes per live salt at most. */
int wr_replay_new(wr_replay **out, size_t cap);
void wr_replay_free(wr_replay *r);
/* 1 when salt is in the set and not expired at now (expires >= now). */
int wr_replay_seen(const wr_replay *r, const uint8_t salt[WR_REPLAY_KEY_LEN], uint64_t now);
/* Adds salt unless it is live already. 0, or a negative WR_REPLAY_E* code. */
int wr_replay_insert(wr_replay *r, const uint8_t salt[WR_REPLAY_KEY_LEN], uint64_t expires,
                     uint64_t now);
/* Live entries at now (walks the table: for tests and status). */
size_t wr_replay_count(const wr_replay *r, uint64_t now);

/* SipHash-2-4 (Aumasson & Bernstein), exposed for its test vector. */
uint64_t wr_siphash24(const uint8_t key[16], const void *data, size_t len);

#endif
