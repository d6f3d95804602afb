/* warren/1 handshake: a pure state machine (no I/O, no clock, no Lua). The caller reads and
 * writes the bytes and passes the current time; runtime/PROTOCOL.md has the byte layouts.
 *
 * Shape (Noise NNpsk0-like): the client sends msg1 (salt, hidden ephemeral key, sealed header,
 * sealed padded variable part); the server authenticates its header with one HKDF and one small
 * AEAD open before anything costly, checks time and replay, then does the DH and sends msg2;
 * both ends derive per-direction frame keys from the transcript.
 *
 * Return values of the step functions: WR_HS_OK, WR_HS_NEED_MORE (see *need) or WR_HS_REJECT
 * (the reason is in the state object: log it locally, never send it), or WR_HS_EMISUSE for a
 * call in the wrong state / bad arguments. */
#ifndef WR_HANDSHAKE_H
#define WR_HANDSHAKE_H

#include "wr_crypto.h"
#include "wr_replay.h"

#include <stddef.h>
#include <stdint.h>

/* The handshake's suite is part of every key derivation, so a peer cannot be talked into
 * another one. The frames' cipher is agreed inside the handshake (below). */
#define WR_HS_PROTO     "warren/1 X25519-ChaChaPoly-SHA256"
#define WR_HS_AEAD      WR_AEAD_CHACHA20_POLY1305 /* seals the handshake messages themselves */
#define WR_HS_SALT_LEN  16
#define WR_HS_WINDOW    30000u /* milliseconds of clock difference accepted either way */
#define WR_HS_VAR_MAX   1024   /* plaintext bytes of a variable part */
#define WR_HS_EARLY_MAX 512    /* client early data carried in msg1 (not forward secret) */
#define WR_HS_VAR1_MIN  34     /* msg1 always outweighs the shortest msg2 (no amplification) */

#define WR_HS_MSG1_FIXED 80 /* salt 16 + key 32 + sealed header 16+16 */
#define WR_HS_MSG1_MAX   (WR_HS_MSG1_FIXED + WR_HS_VAR_MAX + WR_AEAD_TAG_LEN)
#define WR_HS_MSG2_FIXED 96 /* salt 16 + key 32 + sealed header 32+16 */
#define WR_HS_MSG2_MAX   (WR_HS_MSG2_FIXED + WR_HS_VAR_MAX + WR_AEAD_TAG_LEN)

enum wr_hs_result {
    WR_HS_OK = 0,
    WR_HS_NEED_MORE = 1,
    WR_HS_REJECT = -1,
    WR_HS_EMISUSE = -2,
};

/* Why a handshake failed. For local logs only: the wire never says. */
enum wr_hs_reason {
    WR_HS_R_NONE = 0,
    WR_HS_R_BAD_MAC,      /* a sealed part did not authenticate (wrong key, probe, tamper) */
    WR_HS_R_BAD_TYPE,     /* authenticated, but wrong message type */
    WR_HS_R_BAD_VERSION,  /* authenticated, but another protocol version */
    WR_HS_R_BAD_FIELD,    /* authenticated, but a length or reserved field is invalid */
    WR_HS_R_CLOCK,        /* timestamp more than WR_HS_WINDOW from now */
    WR_HS_R_BEFORE_START, /* timestamp older than this process: possible replay */
    WR_HS_R_REPLAY,       /* salt seen within its window */
    WR_HS_R_REPLAY_FULL,  /* replay set at its cap: refuse rather than forget young salts */
    WR_HS_R_TRAILING,     /* bytes after msg1: a client sends nothing until msg2 */
    WR_HS_R_WEAK_KEY,     /* X25519 gave all zeros */
    WR_HS_R_BAD_ECHO,     /* msg2 authenticated but echoes another salt */
    WR_HS_R_NO_CIPHER,    /* the client offered no frame cipher this side accepts */
    WR_HS_R_INTERNAL,     /* randomness/allocation/library failure on our side */
    /* client-side verdicts for a connection that ended before a valid msg2 (wr_hs_client_eof) */
    WR_HS_R_NO_ANSWER,         /* nothing came back */
    WR_HS_R_PLAINTEXT_REPLY,   /* text came back: some other server (HTTP, ...) */
    WR_HS_R_SHORT_REPLY,       /* fewer bytes than a msg2 before the close */
    WR_HS_R_CLOSED_UNANSWERED, /* closed (FIN or reset) before any answer, not a timeout: a
                                  relay shedding load, or not a relay (it sends nothing on a
                                  wrong key and holds the connection past the timeout) */
};
const char *wr_hs_reason_name(enum wr_hs_reason r);
/* A sentence for the user running the client (the CLI prints it). */
const char *wr_hs_client_message(enum wr_hs_reason r);

/* Frame ciphers. On the wire a cipher is its wr_aead_alg number (1 ChaCha20-Poly1305, 2
 * AES-256-GCM). What a side accepts is WR_HS_CIPHER_AUTO (both; AES-256-GCM first where the CPU
 * runs it in hardware with libcrypto, ChaCha20-Poly1305 first otherwise) or one wr_aead_alg. */
#define WR_HS_CIPHER_AUTO 0
/* "auto", "aes-256-gcm", "chacha20-poly1305" -> WR_HS_CIPHER_AUTO or the alg; -1 otherwise. */
int wr_hs_cipher_from_name(const char *name);

/* Per-key settings shared by every handshake; read-only after init, so worker threads may use
 * it concurrently. */
typedef struct wr_hs_config {
    enum wr_backend backend; /* for X25519 (and the frame codec, via wr_hs_keys) */
    uint64_t not_before;     /* server: refuse timestamps older than this (process start, ms) */
    uint32_t window;         /* milliseconds; WR_HS_WINDOW by default */
    int cipher;              /* WR_HS_CIPHER_AUTO (default) or the one wr_aead_alg accepted */
    int aes_hw;              /* AES-256-GCM is fast here (wr_aead_aes_hw): auto prefers it */
    uint8_t prk0[32];        /* HKDF-Extract(PROTO, PSK) */
    wr_hmac_key prk0_mac;    /* HMAC under prk0, ready: msg1's key is derived cheaply per user */
    uint8_t obf_c[32];       /* keystream keys hiding the client's / server's public key */
    uint8_t obf_s[32];
    uint16_t accept_frame; /* the largest frame payload this side accepts, announced in its
                              message (WR_FRAME_MAX_LIMIT after init; 0 announces nothing) */
} wr_hs_config;

int wr_hs_config_init(wr_hs_config *cfg, const uint8_t psk[32], enum wr_backend b,
                      uint64_t not_before);
void wr_hs_config_wipe(wr_hs_config *cfg);

/* The result both ends share. Feed send/recv to wr_frame (client sends c2s, server s2c). */
typedef struct wr_hs_keys {
    enum wr_backend backend;
    enum wr_aead_alg alg;
    uint8_t c2s[32];
    uint8_t s2c[32];
    uint8_t transcript[32]; /* hash of msg1 and msg2: a public channel binding */
    uint16_t peer_frame;    /* the largest frame payload the peer accepts, as it announced;
                               WR_FRAME_MAX_DEFAULT when it announced nothing */
} wr_hs_keys;
void wr_hs_keys_wipe(wr_hs_keys *k);

/* ---- server ---- */

enum wr_hs_server_state {
    WR_HS_S_READ_HEADER = 0, /* waiting for the fixed part of msg1 */
    WR_HS_S_READ_VAR,        /* header good, waiting for the variable part */
    WR_HS_S_CHECKED,         /* msg1 valid and recorded: call respond (may be on a worker) */
    WR_HS_S_RESPONDED,       /* msg2 built, keys out; peer NOT yet proven: no side effects */
    WR_HS_S_CONFIRMED,       /* a client frame decrypted: the peer holds the keys */
    WR_HS_S_FAILED,
};

typedef struct wr_hs_server {
    enum wr_hs_server_state state;
    enum wr_hs_reason reason;
    uint64_t client_time;
    size_t msg1_len;
    uint8_t salt_c[WR_HS_SALT_LEN];
    uint8_t epub_c[32];
    uint8_t th1[32];
    uint8_t k1[32];
    uint8_t cipher; /* picked from the client's offer; 0: none accepted (msg2 refuses) */
    uint32_t key;   /* wr_hs_server_check_keys: the index of the config that authenticated */
    size_t early_len;
    uint8_t early[WR_HS_EARLY_MAX]; /* authenticated by the PSK only; replay-bounded */
    uint16_t peer_frame;            /* from msg1's frame-size extension */
} wr_hs_server;

void wr_hs_server_init(wr_hs_server *s);
/* Main thread. buf holds every msg1 byte received so far (append-only between calls). Costs one
 * HKDF + one AEAD open on a bad first message, never a DH. OK: msg1 valid and its salt recorded
 * in rp; *need = msg1 length. NEED_MORE: *need = total bytes to have before calling again. */
int wr_hs_server_check(wr_hs_server *s, const wr_hs_config *cfg, wr_replay *rp, const uint8_t *buf,
                       size_t len, uint64_t now, size_t *need);
/* Like wr_hs_server_check for a server holding several keys (one per user): each config is tried
 * on the fixed header, and the first that authenticates it is the client's (s->key is its index;
 * the others are tried all the same, so the time taken does not tell users apart); the clock,
 * replay and variable-part checks then run once, with that config. Nothing on the wire names the
 * key, so an observer cannot link two connections of one user. A bad first message costs ncfg
 * HKDF-Expand + 16-byte AEAD opens, never a DH. Once the header passed (state WR_HS_S_READ_VAR),
 * later calls pass the same array again or the matched config alone (ncfg 1), and
 * wr_hs_server_respond takes that config. */
int wr_hs_server_check_keys(wr_hs_server *s, const wr_hs_config *cfgs, size_t ncfg, wr_replay *rp,
                            const uint8_t *buf, size_t len, uint64_t now, size_t *need);
/* Thread-safe (touches only s, out, keys; reads cfg): the DH, msg2 (at most WR_HS_MSG2_MAX
 * bytes, never longer than msg1) and the session keys. Wipes the handshake secrets in s.
 * When the client offered no cipher this side accepts, msg2 still goes out (*out_len > 0) but
 * says so and carries no keys: the result is WR_HS_REJECT with reason WR_HS_R_NO_CIPHER, and the
 * caller sends msg2, then closes. Only a key holder gets that far: probes still get silence. */
int wr_hs_server_respond(wr_hs_server *s, const wr_hs_config *cfg, uint64_t now, uint8_t *out,
                         size_t cap, size_t *out_len, wr_hs_keys *keys);
/* The session calls this once the first client frame has decrypted (wr_frame_opener_frames > 0);
 * only then may it dial, register or run side-effecting hooks. */
void wr_hs_server_confirm(wr_hs_server *s);
int wr_hs_server_confirmed(const wr_hs_server *s);

/* ---- client ---- */

enum wr_hs_client_state {
    WR_HS_C_INIT = 0,
    WR_HS_C_SENT,     /* msg1 built, waiting for msg2 */
    WR_HS_C_READ_VAR, /* msg2 header authenticated: the relay has our key */
    WR_HS_C_DONE,
    WR_HS_C_FAILED,
};

typedef struct wr_hs_client {
    enum wr_hs_client_state state;
    enum wr_hs_reason reason;
    uint64_t server_time; /* from msg2, for reporting clock skew */
    size_t var_len;
    uint8_t offer[2]; /* ciphers offered in msg1, in order of preference; 0 ends the list */
    uint8_t cipher;   /* the relay's pick (keys.alg) */
    uint8_t salt_c[WR_HS_SALT_LEN];
    uint8_t priv[32];
    uint8_t th1[32];
    uint8_t prk1[32];
    uint8_t k2[32];
} wr_hs_client;

/* Builds msg1 (at most WR_HS_MSG1_MAX bytes) into out. early: optional data for the server
 * (<= WR_HS_EARLY_MAX), sealed under the PSK only: not forward secret. */
int wr_hs_client_start(wr_hs_client *c, const wr_hs_config *cfg, uint64_t now, const uint8_t *early,
                       size_t early_len, uint8_t *out, size_t cap, size_t *out_len);
/* buf holds every byte received so far. OK: keys out, *need = msg2 length; bytes past it are
 * the start of the server's frame stream. NEED_MORE: *need = total bytes to have. */
int wr_hs_client_finish(wr_hs_client *c, const wr_hs_config *cfg, const uint8_t *buf, size_t len,
                        size_t *need, wr_hs_keys *keys);
/* The connection closed or timed out before finish succeeded: classify what came back.
 * In raw mode a relay sends nothing on any failure, so "no answer" cannot tell a wrong key
 * from a clock off by more than the window or from something that is not a warren relay. */
enum wr_hs_reason wr_hs_client_eof(const wr_hs_client *c, const uint8_t *buf, size_t len);
/* wr_hs_client_message for a failed client, naming the cipher the relay refused. */
const char *wr_hs_client_failure(const wr_hs_client *c);
void wr_hs_client_wipe(wr_hs_client *c);

#endif
