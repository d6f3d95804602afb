/* The HTTP carrier's requests (--http, http://, https://): a session's bytes carried by ordinary
 * HTTP/1.1 requests, for paths where only plain requests pass (a proxy that refuses CONNECT, a
 * buffering front, a CDN). Pure: names, tokens and the downstream record framing, shared by the
 * client (wr_hc_client) and the relay (wr_hc_server), and fuzzed on its own.
 *
 * Every request names its carrier session and proves the key, in the query of the path:
 *
 *     PATH?s=SID&k=KIND&o=OFFSET&n=NONCE&t=TAG
 *
 *   SID     16 random bytes the client draws per carrier session (base64url, 22 characters)
 *   KIND    u: upstream, POST, its body is the session's bytes from OFFSET on
 *           d: downstream, GET, a streaming answer of the relay's bytes from OFFSET on
 *           p: downstream, GET, one bounded answer (long poll) of the relay's bytes from OFFSET
 *   OFFSET  a byte offset in that direction (decimal): upstream, where the body goes; downstream,
 *           all the client has, so the relay drops what came before and resends the rest
 *   NONCE   8 random bytes per request (base64url, 11): a replayed request is refused
 *   TAG     the first 16 bytes of HMAC-SHA256(K, "SID KIND OFFSET NONCE"), base64url (22), with
 *           K = HKDF-SHA256(ikm = the pre-shared key, info = "warren/1 http carrier")
 *
 * A request whose tag fails, whose nonce was seen, or whose session the relay does not hold is
 * not a carrier request: it goes to the fallback site like any other. The first request of a
 * session is an upstream at offset 0 whose body is the session's first handshake message, which
 * the relay checks (replays refused) before the session exists.
 *
 * Every carrier answer carries an ETag that proves the relay holds the key (wr_hc_proof).
 * A downstream answer's body is a sequence of records: a byte of type, three bytes of length (big
 * endian), then the bytes. Type 0 carries session bytes, in order from the request's OFFSET;
 * type 1 is padding (the prelude that shows the answer streams, and keepalives). */
#ifndef WR_HC_PROTO_H
#define WR_HC_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define WR_HC_SID_LEN     16
#define WR_HC_NONCE_LEN   8
#define WR_HC_TAG_LEN     16
#define WR_HC_KEY_LEN     32
#define WR_HC_QUERY_MAX   160 /* the query this carrier writes, with its '?' */
#define WR_HC_RECORD_HEAD 4
#define WR_HC_RECORD_MAX  0xffffff
#define WR_HC_RECORD_DATA 0
#define WR_HC_RECORD_PAD  1
/* Every session message costs a request here: the session pings an idle carrier this seldom
 * (a dead peer is then known after three of them; the relay reaps a silent client sooner). */
#define WR_HC_KEEPALIVE_MS 30000

enum wr_hc_kind {
    WR_HC_UP = 'u',
    WR_HC_DOWN = 'd',
    WR_HC_POLL = 'p',
};

typedef struct wr_hc_request {
    uint8_t sid[WR_HC_SID_LEN];
    enum wr_hc_kind kind;
    uint64_t offset;
    uint8_t nonce[WR_HC_NONCE_LEN];
} wr_hc_request_t;

/* The carrier key from the pre-shared key. 0, or a negative code. */
int wr_hc_key(const uint8_t psk[32], uint8_t key[WR_HC_KEY_LEN]);

/* Writes "?s=...&t=..." for r into out (NUL-terminated). Returns its length, 0 if cap is short. */
size_t wr_hc_query(const uint8_t key[WR_HC_KEY_LEN], const wr_hc_request_t *r, char *out,
                   size_t cap);

/* Reads the query of a request target (target[0..len), the path included) into r and checks its
 * tag. 0 when it is a carrier request with a good tag; -1 otherwise (no query, a field missing or
 * malformed, a bad tag). Constant time in the tag. */
int wr_hc_parse(const uint8_t key[WR_HC_KEY_LEN], const char *target, size_t len,
                wr_hc_request_t *r);
/* The two halves of wr_hc_parse, for a relay with one key per user: the fields and the tag as
 * sent (0, or -1 when not a carrier request), then the tag under one key (0 when it matches;
 * constant time). */
int wr_hc_parse_fields(const char *target, size_t len, wr_hc_request_t *r,
                       uint8_t tag[WR_HC_TAG_LEN]);
int wr_hc_check_tag(const uint8_t key[WR_HC_KEY_LEN], const wr_hc_request_t *r,
                    const uint8_t tag[WR_HC_TAG_LEN]);

/* The relay's proof, in every carrier answer's ETag ("..." around it): the first 16 bytes of
 * HMAC-SHA256(K, "ok NONCE") in base64url, so a client never takes a site's answer for the
 * relay's. out gets WR_HC_PROOF_LEN characters and a NUL. 0 or -1. */
#define WR_HC_PROOF_LEN 22
int wr_hc_proof(const uint8_t key[WR_HC_KEY_LEN], const uint8_t nonce[WR_HC_NONCE_LEN],
                char out[WR_HC_PROOF_LEN + 1]);

/* A record head for type and len (len <= WR_HC_RECORD_MAX). */
void wr_hc_record_head(uint8_t out[WR_HC_RECORD_HEAD], int type, size_t len);

/* Base64url without padding, for the ids: out gets 4*len/3 rounded up characters plus a NUL. */
size_t wr_hc_b64url(const uint8_t *in, size_t len, char *out, size_t cap);

#endif
