#include "wr_kcp_pacer.h"

#include <string.h>

#define INITIAL_SEGMENTS 32  /* per round trip, before anything was measured */
#define INITIAL_RTT_MS   100 /* the round trip assumed before one was measured */
#define ROUND_MIN_MS     10  /* shorter rounds measure the clock's granularity, not the path */
#define BURST_MS                                                                                   \
    5 /* budget that may pile up: the owner's timer ticks in milliseconds, late under load */
#define BURST_SEGMENTS    4   /* and at least this much, so a slow pace still sends whole bursts */
#define STARTUP_GAIN      200 /* percent */
#define STARTUP_ROUNDS    3   /* rounds without 25% growth that end startup */
#define QUEUE_RTT         150 /* percent of the lowest srtt: above it, a queue is building */
#define DRAIN_GAIN        50  /* percent, after startup and whenever a queue built up: */
#define DRAIN_RTT         125 /* until srtt is within this percentage of the lowest seen */
#define DRAIN_ROUNDS_MAX  10
#define FAILED_DRAINS_MAX 2     /* drains in a row ended by DRAIN_ROUNDS_MAX: lowest srtt wrong */
#define MIN_RTT_MS        10000 /* how long the lowest srtt counts (the path may change) */
#define QUEUE_MIN_MS      5 /* and a queue is at least this long: a busy host's jitter is not one */

/* The round trip says the bottleneck's queue is growing / is (nearly) empty. */
static int queue_building(const wr_kcp_pacer *p, uint32_t srtt)
{
    return srtt * 100 > p->min_rtt * QUEUE_RTT && srtt > p->min_rtt + QUEUE_MIN_MS;
}

static int queue_gone(const wr_kcp_pacer *p, uint32_t srtt)
{
    return srtt * 100 <= p->min_rtt * DRAIN_RTT || srtt <= p->min_rtt + QUEUE_MIN_MS / 2;
}

/* Gains (percent) of the cycle after startup, one round trip each. */
static const uint32_t cycle[8] = {125, 75, 100, 100, 100, 100, 100, 100};

void wr_kcp_pacer_init(wr_kcp_pacer *p, uint32_t mss, uint32_t now)
{
    memset(p, 0, sizeof *p);
    p->mss = mss;
    p->startup = 1;
    p->round_start = now;
    p->last_refill = now;
    p->estimate = (uint64_t)INITIAL_SEGMENTS * mss * 1000 / INITIAL_RTT_MS;
    p->budget = (int64_t)INITIAL_SEGMENTS * mss;
}

void wr_kcp_pacer_delivered(wr_kcp_pacer *p, uint32_t bytes)
{
    p->delivered += bytes;
}

uint64_t wr_kcp_pacer_rate(const wr_kcp_pacer *p)
{
    uint32_t gain = p->startup ? STARTUP_GAIN : p->draining ? DRAIN_GAIN : cycle[p->phase % 8];
    return p->estimate * gain / 100;
}

static void end_round(wr_kcp_pacer *p, uint32_t now, uint32_t srtt)
{
    uint32_t ms = now - p->round_start;
    uint64_t rate = (p->delivered - p->round_delivered) * 1000 / ms, best = 0;
    /* A round that ran out of data measured the sender, not the path: it may only raise. */
    if (!p->round_app_limited || rate > p->estimate) {
        p->rates[p->next_rate++ % WR_KCP_PACER_ROUNDS] = rate;
        for (int i = 0; i < WR_KCP_PACER_ROUNDS; i++)
            if (p->rates[i] > best) best = p->rates[i];
        if (best > 0) p->estimate = best;
    }
    if (p->startup && queue_building(p, srtt)) {
        p->startup = 0; /* the pipe is full: the bottleneck's queue grows */
        p->draining = 1;
    } else if (p->startup && !p->round_app_limited) {
        if (p->estimate >= p->startup_best + p->startup_best / 4) {
            p->startup_best = p->estimate;
            p->startup_flat = 0;
        } else if (++p->startup_flat >= STARTUP_ROUNDS) {
            p->startup = 0;
            p->draining = 1;
        }
    } else if (p->draining) {
        if (queue_gone(p, srtt)) {
            p->draining = 0;
            p->failed_drains = 0;
        } else if (++p->drain_rounds >= DRAIN_ROUNDS_MAX) {
            p->draining = 0;
            /* Two drains in a row did not bring the round trip down, so no queue of ours holds
             * it up: the path's round trip grew, or the lowest was a sample stamped late by a
             * busy host. Kept, it would start a drain every round and shrink the pace until it
             * aged out (MIN_RTT_MS). One failed drain is not enough: on a lossy, reordering path
             * that also happens with the right lowest, and raising it then lets a queue grow. */
            if (++p->failed_drains >= FAILED_DRAINS_MAX) {
                p->min_rtt = srtt;
                p->min_rtt_at = now;
                p->failed_drains = 0;
            }
        }
    } else if (!p->startup) {
        p->phase++;
        if (queue_building(p, srtt)) {
            p->draining = 1;
            p->drain_rounds = 0;
        }
    }
    p->round_start = now;
    p->round_delivered = p->delivered;
    p->round_app_limited = 0;
}

void wr_kcp_pacer_tick(wr_kcp_pacer *p, uint32_t now, uint32_t srtt, int app_limited)
{
    uint32_t round = srtt > ROUND_MIN_MS ? srtt : ROUND_MIN_MS;
    uint64_t rate;
    int64_t cap;
    if (app_limited) p->round_app_limited = 1;
    if (srtt > 0 &&
        (p->min_rtt == 0 || srtt <= p->min_rtt || (int32_t)(now - p->min_rtt_at) > MIN_RTT_MS)) {
        p->min_rtt = srtt;
        p->min_rtt_at = now;
    }
    if ((int32_t)(now - p->round_start) >= (int32_t)round) end_round(p, now, srtt);
    rate = wr_kcp_pacer_rate(p);
    if ((int32_t)(now - p->last_refill) > 0) {
        p->budget += (int64_t)(rate * (now - p->last_refill) / 1000);
        p->last_refill = now;
    }
    cap = (int64_t)(rate * BURST_MS / 1000);
    if (cap < (int64_t)BURST_SEGMENTS * p->mss) cap = (int64_t)BURST_SEGMENTS * p->mss;
    if (p->budget > cap) p->budget = cap;
}

int wr_kcp_pacer_may_send(const wr_kcp_pacer *p)
{
    return p->budget > 0;
}

void wr_kcp_pacer_spend(wr_kcp_pacer *p, uint32_t bytes)
{
    p->budget -= bytes;
}

uint32_t wr_kcp_pacer_wait(const wr_kcp_pacer *p, uint32_t now)
{
    uint64_t rate = wr_kcp_pacer_rate(p);
    uint32_t need, waited = now - p->last_refill;
    if (p->budget > 0) return 0;
    if (rate == 0) return 1;
    /* The budget refills at the next tick for the time since the last one. */
    need = (uint32_t)(((uint64_t)(1 - p->budget) * 1000 + rate - 1) / rate);
    return need > waited ? need - waited : 0;
}
