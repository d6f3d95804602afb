/* Pacing for KCP's sender: new segments leave at an estimated delivery rate instead of a whole
 * window at once, so a burst does not overflow the queue at the path's bottleneck (KCP's fast
 * modes have no congestion window, and a window of 1024 segments is several times the bandwidth-
 * delay product of most paths).
 *
 * The estimate is the highest delivery rate (bytes acknowledged per round trip, selective
 * acknowledgements included) of the last few round trips. It starts from an initial rate and
 * doubles each round trip until the measured rate stops growing or the round trip grows by half
 * (and 5 ms) over the lowest seen (the bottleneck's queue is filling), then halves until the round
 * trip is back near the lowest; then the pace cycles around the estimate (a round trip a quarter
 * faster to find more room, one a quarter slower to drain the queue that made, six at the
 * estimate), draining again whenever the round trip grows by half; when two drains in a row do
 * not bring the round trip back, it becomes the new lowest. Rounds in which the sender ran out of
 * data say little about the path and only ever raise the estimate. Losses do not lower it: on a
 * lossy path random loss is not a sign of congestion, and the bottleneck's queue, kept short, is
 * what pacing protects. Pure arithmetic, no clock of its own: times are the owner's ms. */
#ifndef WR_KCP_PACER_H
#define WR_KCP_PACER_H

#include <stdint.h>

#define WR_KCP_PACER_ROUNDS 10 /* round trips the estimate remembers */

typedef struct wr_kcp_pacer {
    uint64_t delivered;                  /* bytes acknowledged, all time */
    uint64_t round_delivered;            /* delivered when the current round began */
    uint32_t round_start;                /* ms */
    int round_app_limited;               /* the sender ran out of data during this round */
    uint64_t rates[WR_KCP_PACER_ROUNDS]; /* bytes/s of recent rounds */
    uint32_t next_rate;
    uint64_t estimate;     /* bytes/s: the highest of rates[] */
    uint64_t startup_best; /* startup ends when the estimate stops growing */
    uint32_t startup_flat; /* rounds without 25% growth */
    int startup;
    int draining; /* after startup: slower until srtt is back near min_rtt */
    uint32_t drain_rounds, failed_drains;
    uint32_t min_rtt, min_rtt_at; /* the lowest srtt of the last 10 s, and when */
    uint32_t phase;               /* position in the gain cycle after startup */
    int64_t budget;               /* bytes that may leave now (negative: owed) */
    uint32_t last_refill;         /* ms */
    uint32_t mss;
} wr_kcp_pacer;

void wr_kcp_pacer_init(wr_kcp_pacer *p, uint32_t mss, uint32_t now);
/* Bytes of payload newly acknowledged. */
void wr_kcp_pacer_delivered(wr_kcp_pacer *p, uint32_t bytes);
/* Once per flush, before sending: closes a round after srtt ms, refills the budget. app_limited:
 * the sender has nothing queued beyond what is in flight. */
void wr_kcp_pacer_tick(wr_kcp_pacer *p, uint32_t now, uint32_t srtt, int app_limited);
/* 1 if a new segment may leave now. */
int wr_kcp_pacer_may_send(const wr_kcp_pacer *p);
/* A datagram's worth of bytes left (new or retransmitted). */
void wr_kcp_pacer_spend(wr_kcp_pacer *p, uint32_t bytes);
/* Milliseconds from now until a tick lets wr_kcp_pacer_may_send turn 1 (0: a tick now would). */
uint32_t wr_kcp_pacer_wait(const wr_kcp_pacer *p, uint32_t now);
/* The current pace in bytes/s, and the delivery-rate estimate. */
uint64_t wr_kcp_pacer_rate(const wr_kcp_pacer *p);

#endif
