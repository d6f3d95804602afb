/* Pre-shared keys: 32 bytes, printed as unpadded base64url (43 characters).
 *
 * How a user-supplied string becomes a key (the same rule on both ends, so they always agree):
 *   - a string that is exactly 43 base64url characters and decodes canonically is the key itself;
 *   - anything else is a password, stretched with PBKDF2-HMAC-SHA256 over WR_KEY_PBKDF2_SALT
 *     with WR_KEY_PBKDF2_ITERATIONS iterations.
 * A key file holds the string on its first line; the line ending (LF or CRLF) and trailing
 * spaces/tabs are dropped, nothing else is. Passwords are weaker than `warren keygen` keys:
 * the salt is fixed (both ends must derive the same key without talking), so one
 * precomputation serves every warren deployment.
 *
 * Functions return 0 or a negative WR_KEY_E* code. */
#ifndef WR_KEY_H
#define WR_KEY_H

#include <stddef.h>
#include <stdint.h>

#define WR_KEY_LEN     32
#define WR_KEY_B64_LEN 43 /* characters, without the terminating NUL */

/* Domain separation for password stretching; changing either value changes every password key. */
#define WR_KEY_PBKDF2_SALT "warren/1 password to pre-shared key"
/* ~120 ms with libcrypto on the 2-core reference machine, ~490 ms with mbedTLS alone. */
#define WR_KEY_PBKDF2_ITERATIONS 250000u

enum wr_key_err {
    WR_KEY_EFORMAT = -1,  /* not a canonical 43-character base64url key */
    WR_KEY_EEMPTY = -2,   /* empty password or key file line */
    WR_KEY_EIO = -3,      /* key file could not be read */
    WR_KEY_ECRYPTO = -4,  /* randomness or KDF failure */
    WR_KEY_ETOOLONG = -5, /* password or first line over WR_KEY_MAX_TEXT */
};

#define WR_KEY_MAX_TEXT 4096

/* How a key was obtained, for the CLI to tell the user. */
enum wr_key_source { WR_KEY_SRC_KEY = 1, WR_KEY_SRC_PASSWORD = 2 };

/* Fresh random key. */
int wr_key_generate(uint8_t key[WR_KEY_LEN]);
/* Writes 43 characters and a NUL into out. */
void wr_key_encode(const uint8_t key[WR_KEY_LEN], char out[WR_KEY_B64_LEN + 1]);
/* Strict: exactly 43 characters of [A-Za-z0-9_-], no padding or whitespace, and the unused
 * low bits of the last character zero, so every key has exactly one spelling. */
int wr_key_decode(const char *s, size_t len, uint8_t key[WR_KEY_LEN]);
/* PBKDF2 stretch (slow by design: ~0.1 s). */
int wr_key_from_password(const char *pw, size_t len, uint8_t key[WR_KEY_LEN]);
/* The -k/-p rule above. src may be NULL. force_password (for -p) skips the key test. */
int wr_key_from_text(const char *s, size_t len, int force_password, uint8_t key[WR_KEY_LEN],
                     enum wr_key_source *src);
/* The first line of a key file's contents, then wr_key_from_text. */
int wr_key_from_file_text(const char *buf, size_t len, uint8_t key[WR_KEY_LEN],
                          enum wr_key_source *src);
/* Reads at most WR_KEY_MAX_TEXT bytes of path, then wr_key_from_file_text. */
int wr_key_from_file(const char *path, uint8_t key[WR_KEY_LEN], enum wr_key_source *src);
const char *wr_key_strerror(int err);

#endif
