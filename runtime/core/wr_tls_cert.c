#include "wr_tls_cert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int wr_tls_pin_parse(const char *s, uint8_t out[WR_TLS_FP_DIGEST_LEN], const char **why)
{
    static const char usage[] = "a pin is sha256: and the 64 hex digits of the certificate's "
                                "SHA-256 (colons between byte pairs allowed)";
    if (s == NULL || strncasecmp(s, "sha256:", 7) != 0) {
        *why = usage;
        return -1;
    }
    s += 7;
    size_t n = 0;
    int colons = -1; /* unknown until after the first byte pair */
    while (n < WR_TLS_FP_DIGEST_LEN) {
        if (n > 0) {
            int colon = *s == ':';
            if (colons < 0) colons = colon;
            if (colon != colons) break; /* mixed forms */
            s += colon;
        }
        int hi = hex_value(s[0]), lo = hi < 0 ? -1 : hex_value(s[1]);
        if (lo < 0) break;
        out[n++] = (uint8_t)(hi << 4 | lo);
        s += 2;
    }
    if (n != WR_TLS_FP_DIGEST_LEN || *s != '\0') {
        *why = usage;
        return -1;
    }
    return 0;
}

void wr_tls_fp_format(const uint8_t digest[WR_TLS_FP_DIGEST_LEN], char out[WR_TLS_FP_TEXT_LEN])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (size_t i = 0; i < WR_TLS_FP_DIGEST_LEN; i++) {
        out[7 + 2 * i] = hex[digest[i] >> 4];
        out[8 + 2 * i] = hex[digest[i] & 15];
    }
    out[WR_TLS_FP_TEXT_LEN - 1] = '\0';
}

char *wr_tls__errf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s == NULL) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

int wr_tls__check_name(const char *name, char **err)
{
    if (name == NULL || *name == '\0' || strlen(name) > 253) {
        *err = wr_tls__errf("a self-signed certificate needs a host name of 1 to 253 characters");
        return -1;
    }
    for (const char *p = name; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            *err = wr_tls__errf("the certificate's host name has a space or control character");
            return -1;
        }
    }
    return 0;
}

/* Writes to a private temporary file, then links it into place: the file is never seen half
 * written, and a second process making one at the same time loses the race cleanly. */
int wr_tls__store_private(const char *path, const char *data, size_t len, char **err)
{
    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    int fd = -1, rc = -1;
    if (tmp == NULL) {
        *err = wr_tls__errf("out of memory");
        return -1;
    }
    snprintf(tmp, tlen, "%s.tmp%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        *err = wr_tls__errf("cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *err = wr_tls__errf("cannot write %s: %s", tmp, strerror(errno));
            goto out;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0) {
        *err = wr_tls__errf("cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (link(tmp, path) != 0 && errno != EEXIST) {
        *err = wr_tls__errf("cannot create %s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

char *wr_tls__read_private(const char *path, size_t *len, char **err)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;
    if (fd < 0) {
        *err = wr_tls__errf("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 1024 * 1024) {
        *err = wr_tls__errf("%s is not a certificate file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        *err = wr_tls__errf("%s holds a private key but other users can read it (mode %04o); "
                            "chmod 600 it",
                            path, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    size_t size = (size_t)st.st_size, got = 0;
    buf = malloc(size + 1);
    if (buf == NULL) {
        *err = wr_tls__errf("out of memory");
        goto out;
    }
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *err = wr_tls__errf("cannot read %s: %s", path, n < 0 ? strerror(errno) : "cut short");
            free(buf);
            buf = NULL;
            goto out;
        }
        got += (size_t)n;
    }
    buf[size] = '\0';
    *len = size;
out:
    close(fd);
    return buf;
}
