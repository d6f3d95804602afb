/* libFuzzer target for both handshake parsers.
 *
 * The first input byte picks the mode:
 *   0: raw bytes as msg1 to the server check (a prober), fed in growing prefixes;
 *   1: raw bytes as msg2 to a real client;
 *   2: a msg1 forged with the right PSK around fuzzer-chosen plaintext (header fields, cipher
 *      offer, variable part, lengths), so the checks after authentication are reached; respond
 *      runs on success, under a fuzzer-chosen cipher setting of the server;
 *   3: a msg2 forged for a real client with the right PSK, DH and transcript around
 *      fuzzer-chosen plaintext (the cipher pick included), the client's cipher setting chosen
 *      too.
 * The forger follows runtime/PROTOCOL.md; canonical forged messages must be accepted, which
 * keeps the forger (and this target's reach) honest. The server holds three users' keys
 * (wr_hs_server_check_keys), the forger's being the second, so the lookup is fuzzed with the rest.
 * Seeds for each mode and cipher setting (offers, picks, refusals) are in corpus/fuzz_handshake/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wr_handshake.h"
#include "fuzz_input.h"

#define NOW 1700000000000ull /* Unix milliseconds */

static wr_hs_config cfg, others[2]; /* the forger's key, and two other users' */
static wr_replay *rp;

static void init_once(void)
{
    static int done;
    uint8_t psk[32];
    if (done) return;
    for (int i = 0; i < 32; i++)
        psk[i] = (uint8_t)(0x40 + i);
    if (wr_hs_config_init(&cfg, psk, WR_BACKEND_DEFAULT, NOW - 100)) abort();
    for (int u = 0; u < 2; u++) {
        psk[0] = (uint8_t)(0x10 + u);
        if (wr_hs_config_init(&others[u], psk, WR_BACKEND_DEFAULT, NOW - 100)) abort();
    }
    if (wr_replay_new(&rp, 256)) abort();
    done = 1;
}

static void seal(const uint8_t *k, uint64_t n, const uint8_t *aad, size_t aad_len,
                 const uint8_t *pt, size_t len, uint8_t *out)
{
    uint8_t nonce[12];
    wr_aead_nonce(nonce, n);
    if (wr_aead_seal_once(cfg.backend, WR_HS_AEAD, k, nonce, aad, aad_len, pt, len, out)) abort();
}

static void msg_key(const uint8_t *prk, const char *label, const uint8_t *salt, uint8_t *k)
{
    uint8_t info[20];
    memcpy(info, label, 4);
    memcpy(info + 4, salt, 16);
    if (wr_hkdf_expand(prk, info, sizeof info, k, 32)) abort();
}

/* The shared config with this input's cipher setting and AES hardware (either way). */
static wr_hs_config cipher_config(struct reader *r)
{
    wr_hs_config c = cfg;
    uint8_t b = take(r);
    c.cipher = b % 3;
    c.aes_hw = (b >> 2) & 1;
    return c;
}

static void server_side(const wr_hs_config *scfg, const uint8_t *msg, size_t len, uint64_t now,
                        int must_pass)
{
    wr_hs_server s;
    wr_hs_config users[3] = {others[0], *scfg, others[1]};
    size_t need = 0, have = 0;
    int rc;
    wr_hs_server_init(&s);
    /* grow the prefix the way a socket would deliver it */
    for (;;) {
        rc = wr_hs_server_check_keys(&s, users, 3, rp, msg, have, now, &need);
        if (rc != WR_HS_NEED_MORE) break;
        if (need <= have || need > WR_HS_MSG1_MAX) abort();
        if (need > len) return; /* the connection would time out here */
        have = need;
    }
    if (must_pass && rc != WR_HS_OK) abort();
    if (rc == WR_HS_OK) {
        uint8_t msg2[WR_HS_MSG2_MAX];
        size_t l;
        wr_hs_keys k;
        if (need != have || s.early_len > WR_HS_EARLY_MAX || s.key != 1) abort();
        rc = wr_hs_server_respond(&s, scfg, now, msg2, sizeof msg2, &l, &k);
        if (rc == WR_HS_OK && (l > WR_HS_MSG2_MAX || l > have)) abort();
        /* only the refusal of every offered cipher sends a msg2 without keys */
        if (rc == WR_HS_REJECT && l && (s.reason != WR_HS_R_NO_CIPHER || l > have)) abort();
    } else if (rc != WR_HS_REJECT || s.reason == WR_HS_R_NONE) {
        abort();
    }
}

static void forge_msg1(struct reader *r)
{
    uint8_t msg[WR_HS_MSG1_MAX + 64], k1[32], hdr[16], var[WR_HS_VAR_MAX + 64];
    wr_hs_config scfg = cipher_config(r);
    int canonical = take(r) & 1;
    size_t var_len = ((size_t)take(r) << 8 | take(r)) % (WR_HS_VAR_MAX + 40);
    uint64_t now = NOW + (take(r) % 64);
    take_n(r, msg, 48); /* salt and (obfuscated) key: anything */
    take_n(r, hdr, sizeof hdr);
    take_n(r, var, var_len);
    if (canonical) {
        /* a well-formed message: must pass (unless its salt is already in the set) */
        var_len = WR_HS_VAR1_MIN + var_len % 600;
        memset(hdr, 0, sizeof hdr);
        hdr[0] = 1;
        hdr[1] = 1;
        for (int i = 0; i < 8; i++)
            hdr[4 + i] = (uint8_t)((uint64_t)now >> (56 - 8 * i));
        hdr[12] = (uint8_t)(var_len >> 8);
        hdr[13] = (uint8_t)var_len;
        hdr[14] = (uint8_t)(1 + hdr[14] % 2); /* a cipher offer: one or both, in either order */
        hdr[15] = (uint8_t)(hdr[15] % 2 ? 3 - hdr[14] : 0);
        var[0] = 0;
        var[1] = (uint8_t)(var_len - 2 > 100 ? 100 : var_len - 2);
    }
    msg_key(cfg.prk0, "msg1", msg, k1);
    seal(k1, 0, msg, 48, hdr, sizeof hdr, msg + 48);
    seal(k1, 1, NULL, 0, var, var_len, msg + 80);
    server_side(&scfg, msg, 80 + var_len + 16, now,
                canonical && !wr_replay_seen(rp, msg, now) && wr_replay_count(rp, now) < 200);
}

static void forge_msg2(struct reader *r)
{
    wr_hs_client c;
    uint8_t msg1[WR_HS_MSG1_MAX], msg2[WR_HS_MSG2_MAX + 64], th1[32], epub_c[32], es[32];
    uint8_t epub_s[32], z[32], ikm[64], prk1[32], k2[32], hdr[32], var[WR_HS_VAR_MAX + 64];
    uint8_t aad[80];
    size_t l1, need;
    wr_hs_keys keys;
    wr_hs_config ccfg = cipher_config(r);
    int canonical = take(r) & 1, picked = 0;
    size_t var_len = ((size_t)take(r) << 8 | take(r)) % (WR_HS_VAR_MAX + 40), len;
    uint8_t pick = 0;
    int rc;

    if (wr_hs_client_start(&c, &ccfg, NOW, NULL, 0, msg1, sizeof msg1, &l1)) abort();
    wr_sha256(msg1, l1, th1);
    wr_chacha20_xor(cfg.obf_c, msg1, 0, msg1 + 16, 32, epub_c);
    take_n(r, es, 32);
    take_n(r, msg2, 16); /* salt_s */
    if (wr_x25519_public(cfg.backend, es, epub_s)) abort();
    if (wr_x25519_shared(cfg.backend, es, epub_c, z)) return; /* weak: nothing to forge */
    wr_chacha20_xor(cfg.obf_s, msg2, 0, epub_s, 32, msg2 + 16);
    memcpy(ikm, z, 32);
    memcpy(ikm + 32, cfg.prk0, 32);
    wr_hkdf_extract(th1, 32, ikm, 64, prk1);
    msg_key(prk1, "msg2", msg2, k2);
    take_n(r, hdr, sizeof hdr);
    take_n(r, var, var_len);
    if (canonical) {
        /* any pick 0..3: one the client offered must pass, any other (0 refuses) must not */
        pick = hdr[30] % 4;
        picked = pick && (pick == c.offer[0] || pick == c.offer[1]);
        var_len %= 64;
        memset(hdr, 0, sizeof hdr);
        hdr[0] = 2;
        hdr[1] = 1;
        memcpy(hdr + 12, c.salt_c, 16);
        hdr[28] = (uint8_t)(var_len >> 8);
        hdr[29] = (uint8_t)var_len;
        hdr[30] = pick;
    }
    memcpy(aad, th1, 32);
    memcpy(aad + 32, msg2, 48);
    seal(k2, 0, aad, sizeof aad, hdr, sizeof hdr, msg2 + 48);
    seal(k2, 1, NULL, 0, var, var_len, msg2 + 96);
    len = 96 + var_len + 16;
    rc = wr_hs_client_finish(&c, &ccfg, msg2, len, &need, &keys);
    if (canonical && (rc == WR_HS_OK) != picked) abort();
    if (canonical && !picked && c.reason != (pick ? WR_HS_R_BAD_FIELD : WR_HS_R_NO_CIPHER)) abort();
    if (rc == WR_HS_OK && keys.alg != c.offer[0] && keys.alg != c.offer[1]) abort();
    if (rc == WR_HS_NEED_MORE && need <= len) abort();
    if (rc == WR_HS_OK && need != len) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct reader r = {data, size};
    int mode;
    init_once();
    mode = take(&r) % 4;
    if (mode == 0) {
        server_side(&cfg, r.p, r.n, NOW, 0);
    } else if (mode == 1) {
        wr_hs_client c;
        uint8_t msg1[WR_HS_MSG1_MAX];
        size_t l, need;
        wr_hs_keys k;
        int rc;
        if (wr_hs_client_start(&c, &cfg, NOW, NULL, 0, msg1, sizeof msg1, &l)) abort();
        rc = wr_hs_client_finish(&c, &cfg, r.p, r.n, &need, &k);
        if (rc == WR_HS_OK) abort(); /* random bytes never authenticate */
        if (rc == WR_HS_NEED_MORE) (void)wr_hs_client_eof(&c, r.p, r.n);
    } else if (mode == 2) {
        forge_msg1(&r);
    } else {
        forge_msg2(&r);
    }
    return 0;
}
