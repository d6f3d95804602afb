#include "wr_handshake.h"

#include "wr_frame.h"
#include "wr_sniff.h"

#include <string.h>

#define MSG1_TYPE 0x01
#define MSG2_TYPE 0x02
#define VERSION   1

#define HDR1_LEN 16 /* plaintext header sizes */

/* The handshake seals a few dozen bytes at a time: mbedTLS's stack contexts beat libcrypto's
 * per-call context allocation there (cheaper probe rejection); the bytes are identical. */
#define SMALL_AEAD WR_BACKEND_MBEDTLS
#define HDR2_LEN   32

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

const char *wr_hs_reason_name(enum wr_hs_reason r)
{
    switch (r) {
    case WR_HS_R_NONE:
        return "none";
    case WR_HS_R_BAD_MAC:
        return "bad-mac";
    case WR_HS_R_BAD_TYPE:
        return "bad-type";
    case WR_HS_R_BAD_VERSION:
        return "bad-version";
    case WR_HS_R_BAD_FIELD:
        return "bad-field";
    case WR_HS_R_CLOCK:
        return "clock-window";
    case WR_HS_R_BEFORE_START:
        return "before-start";
    case WR_HS_R_REPLAY:
        return "replay";
    case WR_HS_R_REPLAY_FULL:
        return "replay-set-full";
    case WR_HS_R_TRAILING:
        return "trailing-bytes";
    case WR_HS_R_WEAK_KEY:
        return "weak-key";
    case WR_HS_R_BAD_ECHO:
        return "bad-echo";
    case WR_HS_R_NO_CIPHER:
        return "no-common-cipher";
    case WR_HS_R_INTERNAL:
        return "internal";
    case WR_HS_R_NO_ANSWER:
        return "no-answer";
    case WR_HS_R_PLAINTEXT_REPLY:
        return "plaintext-reply";
    case WR_HS_R_SHORT_REPLY:
        return "short-reply";
    case WR_HS_R_CLOSED_UNANSWERED:
        return "closed-unanswered";
    }
    return "?";
}

const char *wr_hs_client_message(enum wr_hs_reason r)
{
    switch (r) {
    case WR_HS_R_NONE:
        return "handshake complete";
    case WR_HS_R_NO_ANSWER:
        return "no valid answer from relay: wrong key, clocks more than 30 s apart, or not a "
               "warren relay";
    case WR_HS_R_PLAINTEXT_REPLY:
        return "the relay answered in plain text: not a warren relay, or one with a fallback "
               "site (-P) that takes clients over TLS only (use --tls)";
    case WR_HS_R_SHORT_REPLY:
        return "the relay closed the connection in the middle of its answer";
    case WR_HS_R_CLOSED_UNANSWERED:
        return "the relay closed the connection without answering: busy dropping connections "
               "without the key (try again), or not a warren relay";
    case WR_HS_R_BAD_MAC:
    case WR_HS_R_WEAK_KEY:
        return "the relay's answer does not verify: not a warren relay, or the connection is "
               "being tampered with";
    case WR_HS_R_BAD_TYPE:
    case WR_HS_R_BAD_VERSION:
    case WR_HS_R_BAD_FIELD:
    case WR_HS_R_BAD_ECHO:
        return "the relay has our key but speaks another protocol version";
    case WR_HS_R_NO_CIPHER:
        return "the relay accepts none of the ciphers we offer (see --cipher)";
    case WR_HS_R_INTERNAL:
        return "local cryptographic failure";
    default:
        return "handshake failed";
    }
}

/* ---- ciphers ---- */

int wr_hs_cipher_from_name(const char *name)
{
    if (!name) return -1;
    if (strcmp(name, "auto") == 0) return WR_HS_CIPHER_AUTO;
    if (strcmp(name, wr_aead_alg_name(WR_AEAD_AES256_GCM)) == 0) return WR_AEAD_AES256_GCM;
    if (strcmp(name, wr_aead_alg_name(WR_AEAD_CHACHA20_POLY1305)) == 0)
        return WR_AEAD_CHACHA20_POLY1305;
    return -1;
}

static int known_cipher(int c)
{
    return c == WR_AEAD_CHACHA20_POLY1305 || c == WR_AEAD_AES256_GCM;
}

/* The client's list, best first: the one it was told to use, or both with the faster first. */
static void client_offer(const wr_hs_config *cfg, uint8_t offer[2])
{
    if (cfg->cipher != WR_HS_CIPHER_AUTO) {
        offer[0] = (uint8_t)cfg->cipher;
        offer[1] = 0;
    } else {
        offer[0] = cfg->aes_hw ? WR_AEAD_AES256_GCM : WR_AEAD_CHACHA20_POLY1305;
        offer[1] = cfg->aes_hw ? WR_AEAD_CHACHA20_POLY1305 : WR_AEAD_AES256_GCM;
    }
}

/* The server's pick: the client's first choice among those accepted here, except that a server
 * on auto without AES hardware takes ChaCha20-Poly1305 whenever it is offered (so AES-256-GCM
 * is used only when both ends run it in hardware, or one end insists). Numbers this version
 * does not know are skipped, so a later version may offer more. 0: nothing in common. */
static uint8_t server_pick(const wr_hs_config *cfg, const uint8_t offer[2])
{
    uint8_t first = 0;
    int chacha = 0;
    for (int i = 0; i < 2; i++) {
        if (!known_cipher(offer[i])) continue;
        if (cfg->cipher != WR_HS_CIPHER_AUTO && offer[i] != cfg->cipher) continue;
        if (!first) first = offer[i];
        if (offer[i] == WR_AEAD_CHACHA20_POLY1305) chacha = 1;
    }
    if (cfg->cipher == WR_HS_CIPHER_AUTO && !cfg->aes_hw && chacha)
        return WR_AEAD_CHACHA20_POLY1305;
    return first;
}

/* ---- config and keys ---- */

int wr_hs_config_init(wr_hs_config *cfg, const uint8_t psk[32], enum wr_backend b,
                      uint64_t not_before)
{
    static const char proto[] = WR_HS_PROTO;
    int rc;
    memset(cfg, 0, sizeof *cfg);
    if (b == WR_BACKEND_DEFAULT) b = wr_crypto_default_backend();
    if (!wr_crypto_backend_available(b)) return WR_HS_EMISUSE;
    cfg->backend = b;
    cfg->not_before = not_before;
    cfg->window = WR_HS_WINDOW;
    cfg->cipher = WR_HS_CIPHER_AUTO;
    cfg->aes_hw = wr_aead_aes_hw(b);
    cfg->accept_frame = WR_FRAME_MAX_LIMIT;
    rc = wr_hkdf_extract(proto, sizeof proto - 1, psk, 32, cfg->prk0);
    if (!rc) wr_hmac_key_init(&cfg->prk0_mac, cfg->prk0, sizeof cfg->prk0);
    if (!rc) rc = wr_hkdf_expand(cfg->prk0, "obf c", 5, cfg->obf_c, 32);
    if (!rc) rc = wr_hkdf_expand(cfg->prk0, "obf s", 5, cfg->obf_s, 32);
    if (rc) {
        wr_hs_config_wipe(cfg);
        return WR_HS_EMISUSE;
    }
    return WR_HS_OK;
}

void wr_hs_config_wipe(wr_hs_config *cfg)
{
    wr_zeroize(cfg, sizeof *cfg);
}

void wr_hs_keys_wipe(wr_hs_keys *k)
{
    wr_zeroize(k, sizeof *k);
}

/* K = HKDF-Expand(prk, label || salt, 32): the key sealing one handshake message. */
static int msg_key(const uint8_t prk[32], const char label[4], const uint8_t *salt, uint8_t *k)
{
    uint8_t info[4 + WR_HS_SALT_LEN];
    memcpy(info, label, 4);
    memcpy(info + 4, salt, WR_HS_SALT_LEN);
    return wr_hkdf_expand(prk, info, sizeof info, k, 32);
}

/* Public keys are hidden under a PSK keystream: raw X25519 keys always have the top bit clear,
 * which would mark every handshake. The salt's first 12 bytes are the nonce. */
static int hide_key(const uint8_t obf[32], const uint8_t *salt, const uint8_t *in, uint8_t *out)
{
    return wr_chacha20_xor(obf, salt, 0, in, 32, out);
}

/* PRK1 = HKDF-Extract(TH1, z || PRK0): needs both the DH secret and the PSK. */
static int mix_dh(const wr_hs_config *cfg, const uint8_t th1[32], const uint8_t z[32],
                  uint8_t prk1[32])
{
    uint8_t ikm[64];
    int rc;
    memcpy(ikm, z, 32);
    memcpy(ikm + 32, cfg->prk0, 32);
    rc = wr_hkdf_extract(th1, 32, ikm, sizeof ikm, prk1);
    wr_zeroize(ikm, sizeof ikm);
    return rc;
}

/* The frame-size extension at the start of a message's padding: 0x01 then the largest frame
 * payload its sender accepts (u16). Older peers pad with zeros, which says nothing, and ignore
 * what they find there; a value under the default every side accepts is ignored too. */
#define EXT_FRAME     0x01
#define EXT_FRAME_LEN 3

static void put_frame_ext(uint8_t *pad, size_t pad_len, uint16_t accept)
{
    if (accept == 0 || pad_len < EXT_FRAME_LEN) return;
    pad[0] = EXT_FRAME;
    put16(pad + 1, accept);
}

static uint16_t get_frame_ext(const uint8_t *pad, size_t pad_len)
{
    uint16_t v;
    if (pad_len < EXT_FRAME_LEN || pad[0] != EXT_FRAME) return WR_FRAME_MAX_DEFAULT;
    v = get16(pad + 1);
    return v > WR_FRAME_MAX_DEFAULT ? v : WR_FRAME_MAX_DEFAULT;
}

/* TH2 = SHA256(TH1 || msg2); PRK2 = HKDF-Extract(TH2, PRK1); directional keys from PRK2, with
 * the cipher in the label: the transcript already holds the offer and the pick, and a key is
 * never shared between two ciphers whatever a later change does to the messages. */
static int session_keys(const wr_hs_config *cfg, const uint8_t th1[32], const uint8_t prk1[32],
                        const uint8_t *msg2, size_t msg2_len, uint8_t cipher, wr_hs_keys *keys)
{
    uint8_t prk2[32], c2s[4] = {'c', '2', 's', cipher}, s2c[4] = {'s', '2', 'c', cipher};
    int rc;
    memset(keys, 0, sizeof *keys);
    keys->backend = cfg->backend;
    keys->alg = (enum wr_aead_alg)cipher;
    wr_sha256_2(th1, 32, msg2, msg2_len, keys->transcript);
    rc = wr_hkdf_extract(keys->transcript, 32, prk1, 32, prk2);
    if (!rc) rc = wr_hkdf_expand(prk2, c2s, sizeof c2s, keys->c2s, 32);
    if (!rc) rc = wr_hkdf_expand(prk2, s2c, sizeof s2c, keys->s2c, 32);
    wr_zeroize(prk2, sizeof prk2);
    if (rc) wr_hs_keys_wipe(keys);
    return rc;
}

/* Did a plain-text server (HTTP, SSH, SMTP banner...) answer? A known prefix, or at least 16
 * printable bytes: random bytes pass that by chance with odds of about 10^-7. */
static int looks_like_text(const uint8_t *p, size_t len)
{
    size_t n = len < 64 ? len : 64;
    if ((len >= 5 && memcmp(p, "HTTP/", 5) == 0) || (len >= 4 && memcmp(p, "SSH-", 4) == 0))
        return 1;
    if (n < 16) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 0x20 && p[i] < 0x7f) || p[i] == '\r' || p[i] == '\n' || p[i] == '\t'))
            return 0;
    return 1;
}

/* ---- server ---- */

void wr_hs_server_init(wr_hs_server *s)
{
    memset(s, 0, sizeof *s);
    s->state = WR_HS_S_READ_HEADER;
}

static int server_fail(wr_hs_server *s, enum wr_hs_reason r)
{
    uint64_t t = s->client_time;
    wr_zeroize(s, sizeof *s);
    s->client_time = t;
    s->state = WR_HS_S_FAILED;
    s->reason = r;
    return WR_HS_REJECT;
}

/* One key's try at the fixed header: its message key and the 16-byte open. 0, or a wr_crypto
 * code (WR_CRYPTO_EAUTH: not this key). */
static int open_header(const wr_hs_config *cfg, const uint8_t *buf, uint8_t k1[32],
                       uint8_t hdr[HDR1_LEN])
{
    uint8_t nonce[WR_AEAD_NONCE_LEN], info[4 + WR_HS_SALT_LEN + 1];
    /* msg_key(prk0, "msg1", salt): HKDF-Expand to 32 bytes is one HMAC of info || 0x01 */
    memcpy(info, "msg1", 4);
    memcpy(info + 4, buf, WR_HS_SALT_LEN);
    info[sizeof info - 1] = 1;
    wr_hmac_sha256_with(&cfg->prk0_mac, info, sizeof info, k1);
    wr_aead_nonce(nonce, 0);
    return wr_aead_open_once(SMALL_AEAD, WR_HS_AEAD, k1, nonce, buf, 48, buf + 48,
                             HDR1_LEN + WR_AEAD_TAG_LEN, hdr);
}

/* The cheap part: per key tried, one HKDF-Expand and one 16-byte AEAD open; then, with the key
 * that opened it, the clock and replay checks. */
static int check_header(wr_hs_server *s, const wr_hs_config *cfgs, size_t ncfg, const wr_replay *rp,
                        const uint8_t *buf, uint64_t now)
{
    uint8_t hdr[HDR1_LEN];
    const wr_hs_config *cfg = NULL;
    uint64_t ts;
    uint16_t var_len;
    int rc = WR_CRYPTO_EAUTH;

    /* Every key is tried, even past the one that opens it: the time to answer must not tell
     * where a user is in the list (it would link that user's connections). */
    for (size_t i = 0; i < ncfg; i++) {
        uint8_t k[32], h[HDR1_LEN];
        int r = open_header(&cfgs[i], buf, k, h);
        if (r != WR_CRYPTO_EAUTH && !cfg && rc == WR_CRYPTO_EAUTH) {
            rc = r;
            if (r == 0) {
                cfg = &cfgs[i];
                s->key = (uint32_t)i;
                memcpy(s->k1, k, sizeof k);
                memcpy(hdr, h, sizeof h);
            }
        }
        wr_zeroize(k, sizeof k);
        wr_zeroize(h, sizeof h);
    }
    if (rc == WR_CRYPTO_EAUTH) return server_fail(s, WR_HS_R_BAD_MAC);
    if (rc) return server_fail(s, WR_HS_R_INTERNAL);
    if (hdr[0] != MSG1_TYPE) return server_fail(s, WR_HS_R_BAD_TYPE);
    if (hdr[1] != VERSION) return server_fail(s, WR_HS_R_BAD_VERSION);
    ts = get64(hdr + 4);
    var_len = get16(hdr + 12);
    /* hdr[14..15]: the offer; it must name something, even if only ciphers unknown here. */
    if (get16(hdr + 2) != 0 || hdr[14] == 0 || var_len < WR_HS_VAR1_MIN || var_len > WR_HS_VAR_MAX)
        return server_fail(s, WR_HS_R_BAD_FIELD);
    s->cipher = server_pick(cfg, hdr + 14);
    s->client_time = ts;
    if ((now > ts && now - ts > cfg->window) || (ts > now && ts - now > cfg->window))
        return server_fail(s, WR_HS_R_CLOCK);
    /* A restart empties the replay set; refusing older timestamps closes that gap. */
    if (ts < cfg->not_before) return server_fail(s, WR_HS_R_BEFORE_START);
    if (wr_replay_seen(rp, buf, now)) return server_fail(s, WR_HS_R_REPLAY);
    memcpy(s->salt_c, buf, WR_HS_SALT_LEN);
    s->msg1_len = WR_HS_MSG1_FIXED + var_len + WR_AEAD_TAG_LEN;
    s->state = WR_HS_S_READ_VAR;
    return WR_HS_OK;
}

static int check_var(wr_hs_server *s, const wr_hs_config *cfg, wr_replay *rp, const uint8_t *buf,
                     uint64_t now)
{
    uint8_t var[WR_HS_VAR_MAX], nonce[WR_AEAD_NONCE_LEN];
    size_t var_len = s->msg1_len - WR_HS_MSG1_FIXED - WR_AEAD_TAG_LEN;
    size_t early_len;
    int rc;

    wr_aead_nonce(nonce, 1);
    rc = wr_aead_open_once(SMALL_AEAD, WR_HS_AEAD, s->k1, nonce, NULL, 0, buf + WR_HS_MSG1_FIXED,
                           var_len + WR_AEAD_TAG_LEN, var);
    wr_zeroize(s->k1, sizeof s->k1);
    if (rc == WR_CRYPTO_EAUTH) return server_fail(s, WR_HS_R_BAD_MAC);
    if (rc) return server_fail(s, WR_HS_R_INTERNAL);
    early_len = get16(var);
    if (early_len > WR_HS_EARLY_MAX || 2 + early_len > var_len) {
        wr_zeroize(var, var_len);
        return server_fail(s, WR_HS_R_BAD_FIELD);
    }
    /* Only now, with the whole message valid, does the salt enter the set. */
    rc = wr_replay_insert(rp, s->salt_c, s->client_time + cfg->window, now);
    if (rc) {
        wr_zeroize(var, var_len);
        return server_fail(s, rc == WR_REPLAY_EXISTS  ? WR_HS_R_REPLAY
                              : rc == WR_REPLAY_EFULL ? WR_HS_R_REPLAY_FULL
                                                      : WR_HS_R_INTERNAL);
    }
    memcpy(s->early, var + 2, early_len);
    s->early_len = early_len;
    s->peer_frame = get_frame_ext(var + 2 + early_len, var_len - 2 - early_len);
    wr_zeroize(var, var_len);
    if (hide_key(cfg->obf_c, s->salt_c, buf + WR_HS_SALT_LEN, s->epub_c))
        return server_fail(s, WR_HS_R_INTERNAL);
    wr_sha256(buf, s->msg1_len, s->th1);
    s->state = WR_HS_S_CHECKED;
    return WR_HS_OK;
}

int wr_hs_server_check(wr_hs_server *s, const wr_hs_config *cfg, wr_replay *rp, const uint8_t *buf,
                       size_t len, uint64_t now, size_t *need)
{
    return wr_hs_server_check_keys(s, cfg, 1, rp, buf, len, now, need);
}

int wr_hs_server_check_keys(wr_hs_server *s, const wr_hs_config *cfgs, size_t ncfg, wr_replay *rp,
                            const uint8_t *buf, size_t len, uint64_t now, size_t *need)
{
    int rc;
    *need = 0;
    if (s->state == WR_HS_S_READ_HEADER) {
        if (ncfg == 0) return WR_HS_EMISUSE;
        if (len < WR_HS_MSG1_FIXED) {
            *need = WR_HS_MSG1_FIXED;
            return WR_HS_NEED_MORE;
        }
        rc = check_header(s, cfgs, ncfg, rp, buf, now);
        if (rc) return rc;
    }
    if (s->state != WR_HS_S_READ_VAR || ncfg == 0 || (ncfg > 1 && s->key >= ncfg))
        return WR_HS_EMISUSE;
    if (len < s->msg1_len) {
        *need = s->msg1_len;
        return WR_HS_NEED_MORE;
    }
    if (len > s->msg1_len) return server_fail(s, WR_HS_R_TRAILING);
    rc = check_var(s, ncfg == 1 ? &cfgs[0] : &cfgs[s->key], rp, buf, now);
    if (rc == WR_HS_OK) *need = s->msg1_len;
    return rc;
}

int wr_hs_server_respond(wr_hs_server *s, const wr_hs_config *cfg, uint64_t now, uint8_t *out,
                         size_t cap, size_t *out_len, wr_hs_keys *keys)
{
    uint8_t epub_s[32], z[32], prk1[32], k2[32], aad[32 + 48], hdr[HDR2_LEN];
    uint8_t nonce[WR_AEAD_NONCE_LEN], rnd = 0;
    size_t pad, len;
    int rc;

    *out_len = 0;
    if (s->state != WR_HS_S_CHECKED) return WR_HS_EMISUSE;
    if (cap < WR_HS_MSG2_MAX) return WR_HS_EMISUSE;
    rc = wr_x25519_ephemeral(cfg->backend, s->epub_c, epub_s, z);
    if (rc) return server_fail(s, rc == WR_CRYPTO_EWEAK ? WR_HS_R_WEAK_KEY : WR_HS_R_INTERNAL);
    rc = mix_dh(cfg, s->th1, z, prk1);
    wr_zeroize(z, sizeof z);

    /* Random padding, but never longer than msg1: an unauthenticated UDP sender must not gain
     * an amplifier. */
    if (!rc) rc = wr_random(out, WR_HS_SALT_LEN);
    if (!rc) rc = wr_random(&rnd, 1);
    pad = rnd & 63;
    if (pad < EXT_FRAME_LEN && cfg->accept_frame) pad = EXT_FRAME_LEN; /* (msg1 has room for it) */
    if (WR_HS_MSG2_FIXED + pad + WR_AEAD_TAG_LEN > s->msg1_len)
        pad = s->msg1_len > WR_HS_MSG2_FIXED + WR_AEAD_TAG_LEN
                  ? s->msg1_len - WR_HS_MSG2_FIXED - WR_AEAD_TAG_LEN
                  : 0;
    len = WR_HS_MSG2_FIXED + pad + WR_AEAD_TAG_LEN;

    if (!rc) rc = hide_key(cfg->obf_s, out, epub_s, out + WR_HS_SALT_LEN);
    if (!rc) rc = msg_key(prk1, "msg2", out, k2);
    memset(hdr, 0, sizeof hdr);
    hdr[0] = MSG2_TYPE;
    hdr[1] = VERSION;
    put64(hdr + 4, now);
    memcpy(hdr + 12, s->salt_c, WR_HS_SALT_LEN);
    put16(hdr + 28, (uint16_t)pad);
    hdr[30] = s->cipher;
    memcpy(aad, s->th1, 32);
    memcpy(aad + 32, out, 48);
    wr_aead_nonce(nonce, 0);
    if (!rc)
        rc = wr_aead_seal_once(SMALL_AEAD, WR_HS_AEAD, k2, nonce, aad, sizeof aad, hdr, HDR2_LEN,
                               out + 48);
    memset(out + WR_HS_MSG2_FIXED, 0, pad);
    put_frame_ext(out + WR_HS_MSG2_FIXED, pad, cfg->accept_frame);
    wr_aead_nonce(nonce, 1);
    if (!rc)
        rc = wr_aead_seal_once(SMALL_AEAD, WR_HS_AEAD, k2, nonce, NULL, 0, out + WR_HS_MSG2_FIXED,
                               pad, out + WR_HS_MSG2_FIXED);
    if (!rc && s->cipher) rc = session_keys(cfg, s->th1, prk1, out, len, s->cipher, keys);
    if (!rc && s->cipher) keys->peer_frame = s->peer_frame;
    wr_zeroize(prk1, sizeof prk1);
    wr_zeroize(k2, sizeof k2);
    if (rc) return server_fail(s, WR_HS_R_INTERNAL);
    wr_zeroize(s->epub_c, sizeof s->epub_c);
    *out_len = len;
    /* A key holder that asked for a cipher we refuse learns it from msg2, not from silence. */
    if (!s->cipher) return server_fail(s, WR_HS_R_NO_CIPHER);
    s->state = WR_HS_S_RESPONDED;
    return WR_HS_OK;
}

void wr_hs_server_confirm(wr_hs_server *s)
{
    if (s->state == WR_HS_S_RESPONDED) s->state = WR_HS_S_CONFIRMED;
}

int wr_hs_server_confirmed(const wr_hs_server *s)
{
    return s->state == WR_HS_S_CONFIRMED;
}

/* ---- client ---- */

static int client_fail(wr_hs_client *c, enum wr_hs_reason r)
{
    uint64_t t = c->server_time;
    uint8_t offer[2];
    memcpy(offer, c->offer, sizeof offer);
    wr_zeroize(c, sizeof *c);
    c->server_time = t;
    memcpy(c->offer, offer, sizeof offer);
    c->state = WR_HS_C_FAILED;
    c->reason = r;
    return WR_HS_REJECT;
}

void wr_hs_client_wipe(wr_hs_client *c)
{
    wr_zeroize(c, sizeof *c);
}

int wr_hs_client_start(wr_hs_client *c, const wr_hs_config *cfg, uint64_t now, const uint8_t *early,
                       size_t early_len, uint8_t *out, size_t cap, size_t *out_len)
{
    uint8_t pub[32], k1[32], hdr[HDR1_LEN], nonce[WR_AEAD_NONCE_LEN], rnd;
    size_t var_len, len;
    int rc;

    *out_len = 0;
    if (early_len > WR_HS_EARLY_MAX || (early_len && !early) || cap < WR_HS_MSG1_MAX)
        return WR_HS_EMISUSE;
    memset(c, 0, sizeof *c);
    /* 32..287 bytes of padding: msg1 varies in length and always outweighs msg2. */
    rc = wr_random(&rnd, 1);
    var_len = 2 + early_len + (WR_HS_VAR1_MIN - 2) + rnd;
    len = WR_HS_MSG1_FIXED + var_len + WR_AEAD_TAG_LEN;

    /* msg1 starts with the salt: one that a relay's front door could take for TLS or HTTP is
     * drawn again (wr_sniff), so the raw carrier is always recognised from its first bytes. */
    do {
        if (!rc) rc = wr_random(c->salt_c, WR_HS_SALT_LEN);
    } while (!rc && wr_sniff(c->salt_c, WR_HS_SALT_LEN) != WR_SNIFF_RAW);
    if (!rc) rc = wr_x25519_keypair(cfg->backend, c->priv, pub);
    if (rc) return client_fail(c, WR_HS_R_INTERNAL);
    memcpy(out, c->salt_c, WR_HS_SALT_LEN);
    rc = hide_key(cfg->obf_c, c->salt_c, pub, out + WR_HS_SALT_LEN);
    if (!rc) rc = msg_key(cfg->prk0, "msg1", c->salt_c, k1);

    memset(hdr, 0, sizeof hdr);
    hdr[0] = MSG1_TYPE;
    hdr[1] = VERSION;
    put64(hdr + 4, now);
    put16(hdr + 12, (uint16_t)var_len);
    client_offer(cfg, c->offer);
    memcpy(hdr + 14, c->offer, 2);
    wr_aead_nonce(nonce, 0);
    if (!rc)
        rc = wr_aead_seal_once(SMALL_AEAD, WR_HS_AEAD, k1, nonce, out, 48, hdr, HDR1_LEN, out + 48);

    /* The variable part is sealed in place: [early_len][early][zero padding]. */
    put16(out + WR_HS_MSG1_FIXED, (uint16_t)early_len);
    if (early_len) memcpy(out + WR_HS_MSG1_FIXED + 2, early, early_len);
    memset(out + WR_HS_MSG1_FIXED + 2 + early_len, 0, var_len - 2 - early_len);
    put_frame_ext(out + WR_HS_MSG1_FIXED + 2 + early_len, var_len - 2 - early_len,
                  cfg->accept_frame);
    wr_aead_nonce(nonce, 1);
    if (!rc)
        rc = wr_aead_seal_once(SMALL_AEAD, WR_HS_AEAD, k1, nonce, NULL, 0, out + WR_HS_MSG1_FIXED,
                               var_len, out + WR_HS_MSG1_FIXED);
    wr_zeroize(k1, sizeof k1);
    if (rc) {
        wr_zeroize(out, len);
        return client_fail(c, WR_HS_R_INTERNAL);
    }
    wr_sha256(out, len, c->th1);
    *out_len = len;
    c->state = WR_HS_C_SENT;
    return WR_HS_OK;
}

static int client_header(wr_hs_client *c, const wr_hs_config *cfg, const uint8_t *buf)
{
    uint8_t epub_s[32], z[32], aad[32 + 48], hdr[HDR2_LEN], nonce[WR_AEAD_NONCE_LEN];
    int rc;

    if (hide_key(cfg->obf_s, buf, buf + WR_HS_SALT_LEN, epub_s))
        return client_fail(c, WR_HS_R_INTERNAL);
    rc = wr_x25519_shared(cfg->backend, c->priv, epub_s, z);
    if (rc == WR_CRYPTO_EWEAK) /* garbage from something that is not a relay */
        return client_fail(c, looks_like_text(buf, WR_HS_MSG2_FIXED) ? WR_HS_R_PLAINTEXT_REPLY
                                                                     : WR_HS_R_WEAK_KEY);
    if (rc) return client_fail(c, WR_HS_R_INTERNAL);
    rc = mix_dh(cfg, c->th1, z, c->prk1);
    wr_zeroize(z, sizeof z);
    if (!rc) rc = msg_key(c->prk1, "msg2", buf, c->k2);
    if (rc) return client_fail(c, WR_HS_R_INTERNAL);

    memcpy(aad, c->th1, 32);
    memcpy(aad + 32, buf, 48);
    wr_aead_nonce(nonce, 0);
    rc = wr_aead_open_once(SMALL_AEAD, WR_HS_AEAD, c->k2, nonce, aad, sizeof aad, buf + 48,
                           HDR2_LEN + WR_AEAD_TAG_LEN, hdr);
    if (rc == WR_CRYPTO_EAUTH)
        return client_fail(c, looks_like_text(buf, WR_HS_MSG2_FIXED) ? WR_HS_R_PLAINTEXT_REPLY
                                                                     : WR_HS_R_BAD_MAC);
    if (rc) return client_fail(c, WR_HS_R_INTERNAL);
    /* From here on the relay has proven it holds the key and saw our msg1. */
    if (hdr[0] != MSG2_TYPE) return client_fail(c, WR_HS_R_BAD_TYPE);
    if (hdr[1] != VERSION) return client_fail(c, WR_HS_R_BAD_VERSION);
    c->server_time = get64(hdr + 4);
    c->var_len = get16(hdr + 28);
    if (get16(hdr + 2) != 0 || hdr[31] != 0 || c->var_len > WR_HS_VAR_MAX)
        return client_fail(c, WR_HS_R_BAD_FIELD);
    if (!wr_ct_equal(hdr + 12, c->salt_c, WR_HS_SALT_LEN)) return client_fail(c, WR_HS_R_BAD_ECHO);
    /* hdr[30]: the relay's pick, which must be one we offered; 0 is its refusal. */
    c->cipher = hdr[30];
    if (c->cipher == 0) return client_fail(c, WR_HS_R_NO_CIPHER);
    if (c->cipher != c->offer[0] && c->cipher != c->offer[1])
        return client_fail(c, WR_HS_R_BAD_FIELD);
    c->state = WR_HS_C_READ_VAR;
    return WR_HS_OK;
}

int wr_hs_client_finish(wr_hs_client *c, const wr_hs_config *cfg, const uint8_t *buf, size_t len,
                        size_t *need, wr_hs_keys *keys)
{
    uint8_t var[WR_HS_VAR_MAX], nonce[WR_AEAD_NONCE_LEN];
    size_t total;
    int rc;

    *need = 0;
    if (c->state == WR_HS_C_SENT) {
        if (len < WR_HS_MSG2_FIXED) {
            *need = WR_HS_MSG2_FIXED;
            return WR_HS_NEED_MORE;
        }
        rc = client_header(c, cfg, buf);
        if (rc) return rc;
    }
    if (c->state != WR_HS_C_READ_VAR) return WR_HS_EMISUSE;
    total = WR_HS_MSG2_FIXED + c->var_len + WR_AEAD_TAG_LEN;
    if (len < total) {
        *need = total;
        return WR_HS_NEED_MORE;
    }
    wr_aead_nonce(nonce, 1);
    rc = wr_aead_open_once(SMALL_AEAD, WR_HS_AEAD, c->k2, nonce, NULL, 0, buf + WR_HS_MSG2_FIXED,
                           c->var_len + WR_AEAD_TAG_LEN, var);
    if (rc == WR_CRYPTO_EAUTH) return client_fail(c, WR_HS_R_BAD_MAC);
    if (!rc) rc = session_keys(cfg, c->th1, c->prk1, buf, total, c->cipher, keys);
    if (!rc) keys->peer_frame = get_frame_ext(var, c->var_len);
    wr_zeroize(var, c->var_len);
    if (rc) return client_fail(c, WR_HS_R_INTERNAL);
    wr_zeroize(c->priv, sizeof c->priv);
    wr_zeroize(c->prk1, sizeof c->prk1);
    wr_zeroize(c->k2, sizeof c->k2);
    c->state = WR_HS_C_DONE;
    *need = total;
    return WR_HS_OK;
}

enum wr_hs_reason wr_hs_client_eof(const wr_hs_client *c, const uint8_t *buf, size_t len)
{
    if (c->state == WR_HS_C_FAILED) return c->reason;
    if (c->state == WR_HS_C_DONE) return WR_HS_R_NONE;
    if (len == 0) return WR_HS_R_NO_ANSWER;
    if (c->state == WR_HS_C_SENT && looks_like_text(buf, len)) return WR_HS_R_PLAINTEXT_REPLY;
    return WR_HS_R_SHORT_REPLY;
}

const char *wr_hs_client_failure(const wr_hs_client *c)
{
    if (c->reason == WR_HS_R_NO_CIPHER && c->offer[1] == 0) {
        if (c->offer[0] == WR_AEAD_AES256_GCM)
            return "the relay does not accept cipher aes-256-gcm (--cipher): try --cipher auto";
        if (c->offer[0] == WR_AEAD_CHACHA20_POLY1305)
            return "the relay does not accept cipher chacha20-poly1305 (--cipher): try --cipher "
                   "auto";
    }
    return wr_hs_client_message(c->reason);
}
