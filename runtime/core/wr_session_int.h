/* Private to wr_session.c / wr_stream.c (and the mux fuzzer): the session and stream structs and
 * the calls between the two files. Not part of the public API. */
#ifndef WR_SESSION_INT_H
#define WR_SESSION_INT_H

#include "wr_frame.h"
#include "wr_session.h"

/* A slice of a chunk waiting in a stream's send queue or receive buffer. Nodes come from a small
 * per-thread cache, so steady forwarding does no malloc per write. */
typedef struct wr_seg {
    struct wr_seg *next;
    wr_buf_t *buf;
    char *base;
    uint32_t len;
    uint32_t owned; /* buf is our own copy chunk: later small slices may be appended to it */
} wr_seg_t;

typedef struct wr_segq {
    wr_seg_t *head, *tail;
    size_t bytes;
} wr_segq_t;

/* Stream flags (st->flags). */
enum {
    WR_ST_LOCAL = 1u << 0,     /* we opened it */
    WR_ST_OPEN_SENT = 1u << 1, /* OPEN sealed */
    WR_ST_ACKED = 1u << 2,     /* established: OPEN_ACK received, or we accepted */
    WR_ST_PENDING = 1u << 3,   /* peer-opened, waiting for accept/reject */
    WR_ST_ANSWERED = 1u << 4,  /* accept or reject was called */
    WR_ST_TX_EOF = 1u << 5,    /* shutdown() requested */
    WR_ST_TX_EOF_SENT = 1u << 6,
    WR_ST_RX_EOF = 1u << 7,      /* EOF frame received */
    WR_ST_RX_EOF_DONE = 1u << 8, /* on_eof delivered */
    WR_ST_DEAD = 1u << 9,        /* reset, refused, or the session ended */
    WR_ST_IN_TABLE = 1u << 10,   /* id is live (counts against max_streams) */
    WR_ST_CLOSED = 1u << 11,     /* owner called close() */
    WR_ST_FREE_AFTER = 1u << 12, /* free once the pending frames are sealed */
    WR_ST_IN_TXL = 1u << 13,
    WR_ST_IN_EVL = 1u << 14,
    WR_ST_REPORTED = 1u << 15,    /* failure reported (on_open or on_error) */
    WR_ST_REFUSED = 1u << 16,     /* refused by the mux itself (limit, goaway): only OPEN_FAIL */
    WR_ST_WINDOW_HELD = 1u << 17, /* a WINDOW update waits for the session's receive total */
};

/* Frames a stream still has to send (st->pend). */
enum {
    WR_SP_OPEN = 1u << 0,
    WR_SP_ACK = 1u << 1,
    WR_SP_FAIL = 1u << 2,
    WR_SP_WINDOW = 1u << 3,
    WR_SP_RST = 1u << 4,
};

/* Deferred callbacks due (st->ev). */
enum {
    WR_SE_OPEN = 1u << 0,     /* on_open with open_status */
    WR_SE_DELIVER = 1u << 1,  /* buffered data / EOF for a reading consumer */
    WR_SE_ERROR = 1u << 2,    /* on_error(err) */
    WR_SE_SHUTDOWN = 1u << 3, /* on_shutdown(0) */
    WR_SE_CLOSED = 1u << 4,   /* on_closed, then free */
};

struct wr_stream {
    wr_endpoint_t ep; /* first: a stream is an endpoint */
    wr_session_t *s;
    uint32_t id;
    uint32_t flags;
    uint16_t pend;
    uint16_t ev;
    int err;                        /* libuv code of the failure, once DEAD */
    wr_stream_t *hnext;             /* id table chain */
    wr_stream_t *tx_prev, *tx_next; /* session send list (round robin) */
    wr_stream_t *ev_next;           /* session event list */
    wr_segq_t txq;                  /* written, not yet sealed */
    wr_segq_t rxq;                  /* received, not yet delivered */
    uint64_t tx_sent;               /* DATA bytes sealed (0-RTT accounting) */
    uint64_t rx_total;              /* DATA bytes received */
    uint32_t tx_credit;             /* bytes the peer still accepts */
    uint32_t peer_window;           /* from OPEN (peer-opened streams): credit once accepted */
    uint32_t rx_left;               /* bytes the peer may still send */
    uint32_t rx_unacked;            /* delivered, not yet credited back */
    uint32_t rx_window; /* current receive window (grows from s->window by auto-tuning) */
    uint32_t rx_peak;
    uint64_t rx_epoch_us; /* when the last WINDOW update went out (or the stream began) */
    void (*on_open)(wr_stream_t *st, int status, const char *reason);
    void *data;
    char *note; /* OPEN: target to send; OPEN_FAIL: the reason, ours or the peer's */
    uint16_t note_len;
    const char *why; /* failure reason for on_open (note, a static string or s->detail) */
};

/* Session-level control frames to send (s->spend). */
enum {
    WR_SS_PING = 1u << 0,
    WR_SS_PONG = 1u << 1,
    WR_SS_GOAWAY = 1u << 2,
};

enum wr_session_phase {
    WR_PH_HANDSHAKE = 0, /* client: msg1 sent; server: reading msg1 / respond on a worker */
    WR_PH_CONFIRM,       /* server: msg2 sent, waiting for the first client frame */
    WR_PH_READY,
    WR_PH_SINK,   /* server failure: read and discard until the probe deadline */
    WR_PH_LINGER, /* clean end: SESSION_END sent / received, waiting for the carrier */
    WR_PH_DONE,   /* carrier closing or closed */
};

struct wr_session_hs; /* handshake scratch, freed once keys exist */

struct wr_session {
    uv_loop_t *loop;
    wr_endpoint_t *carrier; /* NULL once closed (or never, in plain mode) */
    wr_session_cbs cbs;
    void *data;
    wr_session_server_t *srv;
    struct wr_session_hs *hs;
    enum wr_session_phase phase;
    /* configuration */
    uint32_t window, max_streams, max_payload, keepalive_ms, hs_timeout_ms;
    uint32_t window_max, rx_budget, rx_grown; /* auto-tuning; rx_grown: extra granted now */
    size_t rx_limit, rx_queued; /* receive total: the cap, and the bytes in receive queues now */
    uint32_t probe_min_ms, probe_max_ms;
    size_t stream_high_water;
    /* state */
    unsigned is_server : 1;
    unsigned plain : 1;    /* fuzz mode: frames are neither sealed nor opened */
    unsigned keyed : 1;    /* sealer/opener initialised */
    unsigned ready : 1;    /* on_ready fired */
    unsigned ending : 1;   /* session_end ran */
    unsigned notified : 1; /* on_closed fired */
    unsigned blocked : 1;  /* carrier over its high water */
    unsigned idle_on : 1;
    unsigned goaway_sent : 1;
    unsigned goaway_recv : 1;
    unsigned work_pending : 1; /* respond step on the threadpool */
    unsigned handles_closing : 1;
    unsigned carrier_eof : 1;
    unsigned carrier_shut : 1;
    unsigned in_tick : 1;
    unsigned windows_held : 1; /* some stream holds a WINDOW update back (rx_limit) */
    uint8_t spend;
    int reason;
    char user[WR_USER_NAME_MAX]; /* server: the user whose key authenticated msg1 */
    const char *detail;
    char detail_buf[256];
    char end_note[WR_SESSION_REASON_MAX]; /* why we end, sent in SESSION_END */
    size_t end_note_len;
    wr_frame_sealer sealer;
    wr_frame_opener opener;
    uv_idle_t defer;  /* runs deferred callbacks and seals pending frames */
    uv_timer_t timer; /* handshake timeout, keepalive, probe deadline or linger */
    uint64_t start_ms, last_rx_ms, ping_sent_ms, ping_hr;
    uint64_t msg2_sent_hr; /* server: for a first RTT sample at key confirmation */
    uint8_t ping[8], pong[8];
    /* streams */
    uint32_t next_id, peer_last_id;
    wr_stream_t **tab;
    uint32_t tab_mask; /* buckets - 1 */
    uint32_t nstreams; /* ids live */
    uint32_t nstructs; /* stream structs alive (the session outlives them) */
    uint32_t nrejects; /* OPEN_FAIL frames waiting to be sent */
    wr_stream_t *tx_head, *tx_tail;
    wr_stream_t *ev_head, *ev_tail;
    /* output batch */
    wr_buf_t *out;
    size_t out_len;   /* end of the frames in out, from out->data */
    size_t out_start; /* where they begin: the carrier's headroom is left in front */
    /* input: consecutive DATA payloads of one stream from one carrier read are compacted into
     * one slice, so the consumer sees one on_read (one socket write) per read, not per frame */
    wr_stream_t *dl_st;
    wr_buf_t *dl_buf;
    char *dl_base;
    size_t dl_len;
    int dl_own; /* dl_buf is our copy (room after the slice is free), not the carrier's chunk */
    wr_session_stats st;
};

/* ---- wr_stream.c, for the session ---- */
wr_stream_t *wr_stream__new(wr_session_t *s, uint32_t id, uint32_t flags);
void wr_stream__free(wr_stream_t *st);
void wr_stream__release_window(wr_stream_t *st);
/* A frame addressed to a stream (id != 0). b holds f->payload when not NULL (zero-copy). 0, or -1
 * with s->detail set for a protocol error. */
int wr_stream__frame(wr_session_t *s, const wr_frame *f, wr_buf_t *b);
/* Hands the compacted DATA slice (if any) to its consumer; drop = 1 discards it. */
void wr_stream__deliver_flush(wr_session_t *s, int drop);
/* Runs the stream's due callbacks (from the session's deferred tick). */
void wr_stream__run_events(wr_stream_t *st);
/* Seals the stream's control frames and at most one DATA frame. 1 if it has more to send. */
int wr_stream__emit(wr_stream_t *st);
/* 1 when the stream has something it can send now. */
int wr_stream__sendable(const wr_stream_t *st);
/* The session ended: fail the stream with err (deferred callbacks), drop its queues. */
void wr_stream__kill(wr_stream_t *st, int err, const char *reason);
void wr_segq_clear(wr_segq_t *q);
void wr_seg_cache_trim(void);

/* ---- wr_session.c, for the streams ---- */
void wr_session__sched(wr_session_t *s); /* make sure the deferred tick runs */
void wr_session__ev(wr_stream_t *st, unsigned ev);
void wr_session__tx(wr_stream_t *st); /* put the stream on the send list */
void wr_session__tx_remove(wr_stream_t *st);
wr_stream_t *wr_session__find(wr_session_t *s, uint32_t id);
int wr_session__insert(wr_session_t *s, wr_stream_t *st);
void wr_session__remove(wr_stream_t *st);
/* Seals one frame into the output batch. 0, or -1 (session failing). */
int wr_session__emit(wr_session_t *s, uint8_t type, uint32_t id, const void *payload, size_t len);
/* Called when a stream id stops being live (goaway drain check). */
void wr_session__stream_done(wr_session_t *s);
void wr_session__struct_gone(wr_session_t *s);
int wr_session__protocol_error(wr_session_t *s, const char *detail);
/* A reason the peer sent (OPEN_FAIL, SESSION_END) for logs and Lua: its len bytes copied to dst
 * with anything outside printable ASCII shown as '?', then a NUL (dst holds len + 1). */
void wr_session__printable(char *dst, const uint8_t *src, size_t len);
/* 1 when the session may carry frames now / later (not ending). */
static inline int wr_session__alive(const wr_session_t *s)
{
    return !s->ending;
}

/* ---- fuzzing / tests: a session with no handshake, no crypto and an optional carrier ---- */
wr_session_t *wr_session__new_plain(uv_loop_t *loop, wr_endpoint_t *carrier,
                                    const wr_session_config *cfg, const wr_session_cbs *cbs,
                                    void *data);
/* Feeds one frame as if it had been opened from the carrier. */
void wr_session__input(wr_session_t *s, const wr_frame *f);
/* sizeof the handshake scratch (allocated only while handshaking), for memory reports. */
size_t wr_session__hs_size(void);

#endif
