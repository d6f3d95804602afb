/* KCP, the ARQ protocol kcp-go and kcptun speak, as a pure state machine: no sockets, no loop,
 * no clock of its own. The owner feeds datagrams in (wr_kcp_input), takes bytes out (wr_kcp_recv),
 * queues bytes (wr_kcp_send) and calls wr_kcp_update with a millisecond clock; datagrams leave
 * through the output callback. Stream mode only: bytes, no message boundaries (frg is sent as 0
 * and ignored on receipt, so a message-mode peer's data still arrives in order).
 *
 * Wire format, little-endian, one or more segments per datagram:
 *   conv u32 | cmd u8 | frg u8 | wnd u16 | ts u32 | sn u32 | una u32 | len u32 | len bytes
 * cmd: PUSH 81 (data), ACK 82 (sn, echoing ts), WASK 83 (window probe), WINS 84 (window answer).
 * Every segment carries wnd (free receive slots) and una (next in-order sn expected). */
#ifndef WR_KCP_H
#define WR_KCP_H

#include <stddef.h>
#include <stdint.h>

#define WR_KCP_HEADER   24
#define WR_KCP_CMD_PUSH 81
#define WR_KCP_CMD_ACK  82
#define WR_KCP_CMD_WASK 83
#define WR_KCP_CMD_WINS 84

#define WR_KCP_MTU_DEFAULT 1400
#define WR_KCP_MTU_MIN     64
#define WR_KCP_MTU_MAX     65000
#define WR_KCP_WND_MAX     32768

typedef struct wr_kcp wr_kcp_t;

/* One datagram to send (the buffer is only valid during the call). */
typedef void (*wr_kcp_output_fn)(const uint8_t *dgram, size_t len, void *user);

typedef struct wr_kcp_config {
    uint32_t mtu;       /* datagram size, header included (0 = 1400) */
    uint32_t snd_wnd;   /* segments (0 = 128) */
    uint32_t rcv_wnd;   /* segments (0 = 512) */
    int nodelay;        /* 0: RTO doubles on loss, minimum 100 ms; 1 or 2: grows by half, 30 ms */
    uint32_t interval;  /* ms between flushes (0 = 40; clamped to 10..5000) */
    uint32_t resend;    /* fast retransmit after this many later segments acked (0 = off) */
    int nocwnd;         /* 1: no congestion window, only the windows limit sending */
    uint32_t dead_link; /* transmissions of one segment before the link counts as dead (0 = 20) */
    uint32_t burst;     /* new segments one flush may send (0 = the window): the rest waits for
                           the next flush, so a window opening at once does not leave as one burst */
    int pacing;         /* 1: new segments leave at an estimated delivery rate (wr_kcp_pacer.h) */
} wr_kcp_config;

typedef struct wr_kcp_stats {
    uint64_t segs_sent, segs_received, bytes_sent, bytes_received; /* payload */
    uint64_t retransmits;      /* segments sent again on timeout */
    uint64_t fast_retransmits; /* segments sent again after `resend` later ones were acked */
    uint64_t lost_segments;    /* timeouts: segments the RTO declared lost */
    uint64_t duplicates;       /* PUSH segments received twice or outside the window */
    uint32_t srtt_ms, rttvar_ms, rto_ms;
    uint32_t cwnd, snd_wnd, rcv_wnd, rmt_wnd, in_flight;
    uint64_t pacing_rate; /* bytes/s new segments leave at (0: not paced) */
} wr_kcp_stats;

/* kcptun's presets: "normal", "fast", "fast2", "fast3" set nodelay, interval, resend, nocwnd.
 * 0, or -1 for an unknown name (cfg untouched). */
int wr_kcp_preset(const char *name, wr_kcp_config *cfg);

/* NULL when out of memory or the config is out of range. */
wr_kcp_t *wr_kcp_new(uint32_t conv, const wr_kcp_config *cfg, wr_kcp_output_fn out, void *user);
void wr_kcp_free(wr_kcp_t *k);
uint32_t wr_kcp_conv(const wr_kcp_t *k);
uint32_t wr_kcp_mss(const wr_kcp_t *k);

/* Queues len bytes (copied). 0, or -1 when out of memory. */
int wr_kcp_send(wr_kcp_t *k, const void *data, size_t len);
/* Bytes queued or in flight, not yet acknowledged. */
size_t wr_kcp_unacked(const wr_kcp_t *k);
/* Bytes queued and not yet cut into segments: waiting for the window or the pace. */
size_t wr_kcp_waiting(const wr_kcp_t *k);

/* One datagram from the peer. 0, or -1 when it is malformed or not this conversation's (what
 * parsed before the bad segment was still processed). now is the owner's clock in ms. */
int wr_kcp_input(wr_kcp_t *k, const uint8_t *data, size_t len, uint32_t now);
/* In-order bytes ready for wr_kcp_recv. */
size_t wr_kcp_readable(const wr_kcp_t *k);
/* Copies up to cap in-order bytes out; returns how many. */
size_t wr_kcp_recv(wr_kcp_t *k, void *buf, size_t cap);

/* Runs the timers: flushes when due. wr_kcp_check says when to call next (an absolute time). */
void wr_kcp_update(wr_kcp_t *k, uint32_t now);
uint32_t wr_kcp_check(const wr_kcp_t *k, uint32_t now);
/* Sends what can go now (acks, window answers, new data, due retransmits). */
void wr_kcp_flush(wr_kcp_t *k, uint32_t now);
/* 1: acknowledgements travel only as the una of data segments, never alone (a relay keeps its
 * answer to an unvalidated address no larger than what it received). */
void wr_kcp_hold_acks(wr_kcp_t *k, int hold);
/* 1 once a segment was sent dead_link times without being acknowledged. */
int wr_kcp_is_dead(const wr_kcp_t *k);
/* Next sn expected from the peer / next sn to send / oldest unacknowledged sn. */
uint32_t wr_kcp_rcv_nxt(const wr_kcp_t *k);
uint32_t wr_kcp_snd_nxt(const wr_kcp_t *k);
uint32_t wr_kcp_snd_una(const wr_kcp_t *k);
uint32_t wr_kcp_rcv_wnd(const wr_kcp_t *k);
void wr_kcp_get_stats(const wr_kcp_t *k, wr_kcp_stats *out);

/* A parsed segment header (no checks but length). */
typedef struct wr_kcp_seg_header {
    uint32_t conv;
    uint8_t cmd, frg;
    uint16_t wnd;
    uint32_t ts, sn, una, len;
} wr_kcp_seg_header;

/* Parses the segment at data: 0 when the header and its len bytes fit in len, else -1. */
int wr_kcp_parse_header(const uint8_t *data, size_t len, wr_kcp_seg_header *out);

#endif
