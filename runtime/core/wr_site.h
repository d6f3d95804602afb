/* The fallback web site (`-P DIR`): a static-file HTTP/1.1 server for the connections the front
 * door decides are not ours, so that a relay looks like an ordinary web site to whoever lacks the
 * key. It behaves like a plain, well-configured nginx: index.html for directories (and a 301 to
 * the slash form), MIME types from the extension, HEAD, single byte ranges, Last-Modified / ETag
 * with 304, keep-alive and pipelining, small HTML error pages; no directory listings, no Server
 * header.
 *
 * Nothing outside the directory is ever served: the path is percent-decoded once, encoded slashes
 * and backslashes, NUL and `..` above the root are refused, and the file's real path (symlinks
 * resolved) must lie inside the directory's. Hidden files and directories (a segment starting
 * with '.') are not served, except /.well-known/. Files are read on libuv's threadpool in 64 KiB
 * chunks, and reading pauses while the connection's write queue is over its high water. */
#ifndef WR_SITE_H
#define WR_SITE_H

#include "wr_endpoint.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define WR_SITE_HEAD_TIMEOUT_MS 20000 /* from the first byte of a request to its blank line */
#define WR_SITE_IDLE_TIMEOUT_MS 60000 /* keep-alive wait, and a stalled reader of a response */
#define WR_SITE_REQUESTS_MAX    1000  /* per connection; the last one is answered with close */
#define WR_SITE_BODY_MAX        (1024 * 1024) /* request bodies skipped; longer ones get 413 */

typedef struct wr_site wr_site_t;

/* dir must exist and be a directory; it is resolved with realpath once, here. NULL on failure,
 * with *err (if err is not NULL) set to a malloc'd message for the caller to free. */
wr_site_t *wr_site_new(uv_loop_t *loop, const char *dir, char **err);
/* Closes every connection; the memory goes once the last of them is gone. */
void wr_site_free(wr_site_t *site);
/* The directory's real path. */
const char *wr_site_root(const wr_site_t *site);
/* For tests and operators: the head and idle timeouts in milliseconds (0 keeps the current). */
void wr_site_set_timeouts(wr_site_t *site, uint64_t head_ms, uint64_t idle_ms);

/* Serves HTTP/1.x on ep until either side ends it. The site owns ep from here on (it sets its
 * callbacks and watermarks, and closes it), also when this fails. already[0..len) are the first
 * bytes of the connection, read by the caller before handing it over (up to one head and one
 * read, WR_HTTP_HEAD_MAX + WR_BUF_SIZE); they are copied. 0, or UV_ECANCELED after wr_site_free,
 * UV_ENOMEM, UV_E2BIG (already too long), or a read_start error. */
int wr_site_take(wr_site_t *site, wr_endpoint_t *ep, const char *already, size_t len);

/* Maps the path of a request target (path[0..len), without the query) to a file name under
 * root (a real path: absolute, without a trailing slash unless it is "/"). Pure. On success,
 * out holds root followed by the normalised path, whose segments are never empty, "." or "..",
 * and *dir_form is 1 when the path names a directory by its form (a trailing slash, "." or
 * ".."). Returns 0, or:
 *   UV_EINVAL        400: not starting with '/', a bad %-escape, NUL, or ".." above the root
 *   UV_ENOENT        404: an encoded slash, a backslash, or a hidden segment
 *   UV_ENAMETOOLONG  404: the result would not fit in out_size bytes */
int wr_site_resolve(const char *root, const char *path, size_t len, char *out, size_t out_size,
                    int *dir_form);

#endif
