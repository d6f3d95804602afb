/* The access log: one record per tunnelled connection, written when it ends (tunnel, user, peer,
 * target, bytes each way, duration, why it ended), as logfmt-like text or JSON lines, to a file
 * or stdout. Records are formatted in C into a buffer that a libuv file write flushes on the
 * thread pool, so a slow disk never stalls the loop; when the buffer is full, records are
 * dropped and counted instead. One log per process (per loop thread). */
#ifndef WR_ACCESS_LOG_H
#define WR_ACCESS_LOG_H

#include "wr_relay.h"
#include "wr_session.h"

#include <stdint.h>
#include <uv.h>

enum wr_access_format { WR_ACCESS_TEXT, WR_ACCESS_JSON };

/* Longest tunnel name kept by the tunnels for their records (with its NUL). */
#define WR_ACCESS_NAME_MAX 96

/* Bytes that may wait for the disk; records beyond that are dropped. */
#define WR_ACCESS_BUFFER_DEFAULT (1024 * 1024)

typedef struct wr_access_record {
    const char *tunnel; /* the tunnel's declared name; NULL = "-" */
    const char *user;   /* the session's user; NULL = "-" */
    const char *peer;   /* who connected, "ip:port"; NULL = "-" */
    const char *target; /* where it went, "host:port"; NULL = "-" */
    uint64_t bytes_up;  /* from the peer toward the target */
    uint64_t bytes_down;
    uint64_t duration_ms;
    const char *reason; /* a short word: eof, reset, refused, timeout, denied, session... */
} wr_access_record;

typedef struct wr_access_stats {
    uint64_t records, dropped, write_errors, bytes;
} wr_access_stats;

/* Opens path ("-" is stdout; a file is created, mode 0640, and appended to) and makes it the
 * process's access log, replacing an earlier one (which still writes what it holds).
 * 0 or a libuv error. */
int wr_access_log_open(uv_loop_t *loop, const char *path, enum wr_access_format format,
                       size_t buffer);
/* Stops logging; what is buffered is still written, asynchronously, before the file is closed. */
void wr_access_log_close(void);
/* 1 when records are wanted: callers skip the work of building one otherwise. */
int wr_access_log_on(void);
void wr_access_log_write(const wr_access_record *rec);
void wr_access_log_get_stats(wr_access_stats *out);

/* The relay user a server session stands for, or NULL ("-") for a client's session. */
const char *wr_access_user(const wr_session_t *s);
/* The end of a relay: eof, timeout (idle), reset, closed, session (the stream's session failed
 * under it: stream_side is the relay's side, 0 or 1, that is the stream; -1 none) or error. */
const char *wr_access_relay_reason(const wr_relay_result_t *res, int stream_side);
/* A dial or an open that failed with a libuv error: refused, timeout, unreachable, denied... */
const char *wr_access_dial_reason(int err);
/* The class of an OPEN_FAIL reason ("refused: ..." -> "refused"), copied into out[size]. */
const char *wr_access_open_reason(const char *reason, char *out, size_t size);

#endif
