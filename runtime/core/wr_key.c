#include "wr_key.h"

#include "wr_crypto.h"

#include <stdio.h>
#include <string.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Value of a base64url character, or -1. Branchy is fine: keys are decoded once, and the
 * timing reveals only which characters are valid, not the key. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

int wr_key_generate(uint8_t key[WR_KEY_LEN])
{
    return wr_random(key, WR_KEY_LEN) ? WR_KEY_ECRYPTO : 0;
}

void wr_key_encode(const uint8_t key[WR_KEY_LEN], char out[WR_KEY_B64_LEN + 1])
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < WR_KEY_LEN; i++) {
        acc = (acc << 8) | key[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64url[(acc >> bits) & 63];
        }
    }
    if (bits > 0) out[o++] = b64url[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

int wr_key_decode(const char *s, size_t len, uint8_t key[WR_KEY_LEN])
{
    uint8_t tmp[WR_KEY_LEN];
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    if (len != WR_KEY_B64_LEN) return WR_KEY_EFORMAT;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) return WR_KEY_EFORMAT;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            tmp[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* 43 * 6 = 258 bits: the two left over must be zero, or two spellings would give one key. */
    if (o != WR_KEY_LEN || bits != 2 || (acc & 3) != 0) {
        wr_zeroize(tmp, sizeof tmp);
        return WR_KEY_EFORMAT;
    }
    memcpy(key, tmp, WR_KEY_LEN);
    wr_zeroize(tmp, sizeof tmp);
    return 0;
}

int wr_key_from_password(const char *pw, size_t len, uint8_t key[WR_KEY_LEN])
{
    if (len == 0) return WR_KEY_EEMPTY;
    if (len > WR_KEY_MAX_TEXT) return WR_KEY_ETOOLONG;
    return wr_pbkdf2_sha256(pw, len, WR_KEY_PBKDF2_SALT, sizeof WR_KEY_PBKDF2_SALT - 1,
                            WR_KEY_PBKDF2_ITERATIONS, key, WR_KEY_LEN)
               ? WR_KEY_ECRYPTO
               : 0;
}

int wr_key_from_text(const char *s, size_t len, int force_password, uint8_t key[WR_KEY_LEN],
                     enum wr_key_source *src)
{
    int rc;
    if (len == 0) return WR_KEY_EEMPTY;
    if (!force_password && wr_key_decode(s, len, key) == 0) {
        if (src) *src = WR_KEY_SRC_KEY;
        return 0;
    }
    rc = wr_key_from_password(s, len, key);
    if (rc == 0 && src) *src = WR_KEY_SRC_PASSWORD;
    return rc;
}

int wr_key_from_file_text(const char *buf, size_t len, uint8_t key[WR_KEY_LEN],
                          enum wr_key_source *src)
{
    size_t n = 0;
    while (n < len && buf[n] != '\n')
        n++;
    while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (n > WR_KEY_MAX_TEXT) return WR_KEY_ETOOLONG;
    return wr_key_from_text(buf, n, 0, key, src);
}

int wr_key_from_file(const char *path, uint8_t key[WR_KEY_LEN], enum wr_key_source *src)
{
    char buf[WR_KEY_MAX_TEXT + 2];
    size_t n;
    int rc;
    FILE *f = fopen(path, "rb");
    if (!f) return WR_KEY_EIO;
    n = fread(buf, 1, sizeof buf, f);
    if (ferror(f)) {
        fclose(f);
        wr_zeroize(buf, sizeof buf);
        return WR_KEY_EIO;
    }
    fclose(f);
    rc = wr_key_from_file_text(buf, n, key, src);
    wr_zeroize(buf, sizeof buf);
    return rc;
}

const char *wr_key_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case WR_KEY_EFORMAT:
        return "not a 43-character base64url key";
    case WR_KEY_EEMPTY:
        return "empty key or password";
    case WR_KEY_EIO:
        return "cannot read key file";
    case WR_KEY_ECRYPTO:
        return "key derivation failed";
    case WR_KEY_ETOOLONG:
        return "key or password too long";
    }
    return "unknown key error";
}
