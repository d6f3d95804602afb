/* Microbenchmark of the secure channel: AEAD throughput per cipher and backend, X25519, the
 * frame codec, server-side handshake cost and cheap rejection. Not a test: run it by hand,
 * ideally from a Release build:  ./spec/bench_crypto [seconds-per-item, default 0.5] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wr_crypto.h"
#include "wr_frame.h"
#include "wr_handshake.h"
#include "wr_key.h"

#define RECORD 16384

static double budget = 0.5;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const enum wr_backend backends[] = {WR_BACKEND_LIBCRYPTO, WR_BACKEND_MBEDTLS};
static const enum wr_aead_alg algs[] = {WR_AEAD_CHACHA20_POLY1305, WR_AEAD_AES256_GCM};

static void bench_aead(void)
{
    static uint8_t pt[RECORD], ct[RECORD + 16], out[RECORD];
    uint8_t key[32], nonce[12];
    wr_random(key, sizeof key);
    wr_random(pt, sizeof pt);
    printf("AEAD, %d-byte records (MB/s = 10^6 bytes/s, one core)\n", RECORD);
    for (size_t b = 0; b < 2; b++) {
        if (!wr_crypto_backend_available(backends[b])) continue;
        for (size_t a = 0; a < 2; a++) {
            wr_aead *s, *o;
            uint64_t n = 0;
            double t0, seal, open;
            wr_aead_new(&s, backends[b], algs[a], key);
            wr_aead_new(&o, backends[b], algs[a], key);
            t0 = now_s();
            do {
                wr_aead_nonce(nonce, n++);
                wr_aead_seal(s, nonce, NULL, 0, pt, RECORD, ct);
            } while (now_s() - t0 < budget);
            seal = (double)n * RECORD / (now_s() - t0) / 1e6;
            n = 0;
            wr_aead_nonce(nonce, 0);
            wr_aead_seal(s, nonce, NULL, 0, pt, RECORD, ct);
            t0 = now_s();
            do {
                if (wr_aead_open(o, nonce, NULL, 0, ct, RECORD + 16, out)) abort();
                n++;
            } while (now_s() - t0 < budget);
            open = (double)n * RECORD / (now_s() - t0) / 1e6;
            printf("  %-10s %-18s seal %7.0f MB/s   open %7.0f MB/s\n",
                   wr_crypto_backend_name(backends[b]), wr_aead_alg_name(algs[a]), seal, open);
            wr_aead_free(s);
            wr_aead_free(o);
        }
    }
}

/* The codec as the mux uses it: seal a 16 KiB DATA frame, open it in place. */
static void bench_frames(void)
{
    static uint8_t wire[WR_FRAME_SEAL_ROOM(RECORD)], payload[RECORD];
    uint8_t key[32];
    wr_random(key, sizeof key);
    printf("Frame codec, seal + open of %d-byte DATA frames (payload MB/s)\n", RECORD);
    for (size_t b = 0; b < 2; b++) {
        if (!wr_crypto_backend_available(backends[b])) continue;
        for (size_t a = 0; a < 2; a++) {
            wr_frame_sealer s;
            wr_frame_opener o;
            uint64_t n = 0;
            double t0;
            wr_frame_sealer_init(&s, backends[b], algs[a], key, NULL);
            wr_frame_opener_init(&o, backends[b], algs[a], key, NULL);
            t0 = now_s();
            do {
                size_t w, used;
                wr_frame f;
                if (wr_frame_seal(&s, wire, sizeof wire, WR_FT_DATA, 0, 1, payload, RECORD, &w) ||
                    wr_frame_open(&o, wire, w, &used, &f))
                    abort();
                n++;
            } while (now_s() - t0 < budget);
            printf("  %-10s %-18s %7.0f MB/s\n", wr_crypto_backend_name(backends[b]),
                   wr_aead_alg_name(algs[a]), (double)n * RECORD / (now_s() - t0) / 1e6);
            wr_frame_sealer_free(&s);
            wr_frame_opener_free(&o);
        }
    }
}

static void bench_x25519(void)
{
    uint8_t priv[32], pub[32], peer[32], sh[32];
    printf("X25519 (operations/s, one core)\n");
    for (size_t b = 0; b < 2; b++) {
        double t0, kp, dh, eph;
        uint64_t n = 0;
        if (!wr_crypto_backend_available(backends[b])) continue;
        wr_x25519_keypair(backends[b], priv, peer);
        t0 = now_s();
        do {
            wr_x25519_keypair(backends[b], priv, pub);
            n++;
        } while (now_s() - t0 < budget);
        kp = (double)n / (now_s() - t0);
        n = 0;
        t0 = now_s();
        do {
            if (wr_x25519_shared(backends[b], priv, peer, sh)) abort();
            n++;
        } while (now_s() - t0 < budget);
        dh = (double)n / (now_s() - t0);
        n = 0;
        t0 = now_s();
        do {
            if (wr_x25519_ephemeral(backends[b], peer, pub, sh)) abort();
            n++;
        } while (now_s() - t0 < budget);
        eph = (double)n / (now_s() - t0);
        printf("  %-10s keypair %7.0f/s (%6.1f us)   shared %7.0f/s (%6.1f us)   "
               "ephemeral+shared %7.0f/s\n",
               wr_crypto_backend_name(backends[b]), kp, 1e6 / kp, dh, 1e6 / dh, eph);
    }
}

/* Server side only: msg1s are made beforehand, the clock covers check + respond. */
static void bench_handshake(void)
{
    enum { N = 4096 };
    static uint8_t msgs[N][WR_HS_MSG1_MAX];
    static size_t lens[N];
    static uint8_t junk[N][WR_HS_MSG1_FIXED];
    uint8_t psk[32], other[32], msg2[WR_HS_MSG2_MAX];
    uint64_t ts = (uint64_t)time(NULL) * 1000; /* handshake timestamps are milliseconds */
    wr_random(psk, sizeof psk);
    wr_random(other, sizeof other);
    wr_random(junk, sizeof junk);
    printf("Handshake, server side (check + DH + msg2 + keys; msg1 made beforehand)\n");
    for (size_t b = 0; b < 2; b++) {
        wr_hs_config ccfg, scfg;
        wr_replay *rp;
        uint64_t n = 0, made = 0;
        double t0, full, cheap, bad_key;
        if (!wr_crypto_backend_available(backends[b])) continue;
        wr_hs_config_init(&ccfg, psk, backends[b], 0);
        wr_hs_config_init(&scfg, psk, backends[b], 0);
        wr_replay_new(&rp, 1 << 20);
        /* enough msg1s for the time budget at the expected rate */
        made = backends[b] == WR_BACKEND_MBEDTLS ? 512 : N;
        for (uint64_t i = 0; i < made; i++) {
            wr_hs_client c;
            wr_hs_client_start(&c, &ccfg, ts, NULL, 0, msgs[i], sizeof msgs[i], &lens[i]);
        }
        t0 = now_s();
        while (n < made && now_s() - t0 < budget * 2) {
            wr_hs_server s;
            wr_hs_keys k;
            size_t need, m2;
            wr_hs_server_init(&s);
            if (wr_hs_server_check(&s, &scfg, rp, msgs[n], lens[n], ts, &need) ||
                wr_hs_server_respond(&s, &scfg, ts, msg2, sizeof msg2, &m2, &k))
                abort();
            n++;
        }
        full = (double)n / (now_s() - t0);
        /* random bytes: what a prober sends */
        n = 0;
        t0 = now_s();
        do {
            wr_hs_server s;
            size_t need;
            wr_hs_server_init(&s);
            if (wr_hs_server_check(&s, &scfg, rp, junk[n % N], WR_HS_MSG1_FIXED, ts, &need) !=
                WR_HS_REJECT)
                abort();
            n++;
        } while (now_s() - t0 < budget);
        cheap = (double)n / (now_s() - t0);
        /* a real client with the wrong key: same cost, shown for completeness */
        {
            wr_hs_config wrong;
            wr_hs_client c;
            size_t l, need;
            wr_hs_config_init(&wrong, other, backends[b], 0);
            wr_hs_client_start(&c, &wrong, ts, NULL, 0, msgs[0], sizeof msgs[0], &l);
            n = 0;
            t0 = now_s();
            do {
                wr_hs_server s;
                wr_hs_server_init(&s);
                if (wr_hs_server_check(&s, &scfg, rp, msgs[0], l, ts, &need) != WR_HS_REJECT)
                    abort();
                n++;
            } while (now_s() - t0 < budget);
            bad_key = (double)n / (now_s() - t0);
        }
        printf("  %-10s full %7.0f handshakes/s (%6.1f us)   cheap reject %8.0f/s (%4.1f us)"
               "   wrong-key reject %8.0f/s\n",
               wr_crypto_backend_name(backends[b]), full, 1e6 / full, cheap, 1e6 / cheap, bad_key);
        wr_replay_free(rp);
    }
}

/* A relay with one key per user tries each key on msg1's header (wr_hs_server_check_keys): what a
 * probe (random bytes: every key tried) and a real client (the last user: every key tried, then
 * the rest of the check) cost at 1 to 1,000 users. */
static void bench_users(void)
{
    enum { MAXU = 1000, N = 256 };
    static const size_t counts[] = {1, 10, 100, 1000};
    static wr_hs_config cfgs[MAXU];
    static uint8_t junk[N][WR_HS_MSG1_FIXED], msgs[N][WR_HS_MSG1_MAX];
    size_t lens[N];
    uint64_t ts = (uint64_t)time(NULL) * 1000;
    printf("Handshake check with one key per user (default backend; per msg1, one core)\n");
    wr_random(junk, sizeof junk);
    for (size_t i = 0; i < MAXU; i++) {
        uint8_t psk[32];
        wr_random(psk, sizeof psk);
        wr_hs_config_init(&cfgs[i], psk, WR_BACKEND_DEFAULT, 0);
    }
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        size_t users = counts[c];
        wr_replay *rp;
        uint64_t n = 0;
        double t0, probe, last;
        for (size_t i = 0; i < N; i++) {
            wr_hs_client cl;
            wr_hs_client_start(&cl, &cfgs[users - 1], ts, NULL, 0, msgs[i], sizeof msgs[i],
                               &lens[i]);
        }
        t0 = now_s();
        do {
            wr_hs_server s;
            size_t need;
            wr_hs_server_init(&s);
            if (wr_hs_server_check_keys(&s, cfgs, users, NULL, junk[n % N], WR_HS_MSG1_FIXED, ts,
                                        &need) != WR_HS_REJECT)
                abort();
            n++;
        } while (now_s() - t0 < budget);
        probe = (now_s() - t0) / (double)n;
        wr_replay_new(&rp, 1 << 20);
        n = 0;
        t0 = now_s();
        while (n < N && now_s() - t0 < budget) {
            wr_hs_server s;
            size_t need;
            wr_hs_server_init(&s);
            if (wr_hs_server_check_keys(&s, cfgs, users, rp, msgs[n], lens[n], ts, &need) ||
                s.key != users - 1)
                abort();
            n++;
        }
        last = (now_s() - t0) / (double)n;
        wr_replay_free(rp);
        printf("  %5zu users: probe rejected in %8.1f us (%8.0f/s)   last user's msg1 checked in "
               "%8.1f us\n",
               users, probe * 1e6, 1 / probe, last * 1e6);
    }
}

static void bench_password(void)
{
    uint8_t key[32];
    printf("Password to key (PBKDF2-HMAC-SHA256, %u iterations)\n", WR_KEY_PBKDF2_ITERATIONS);
    for (size_t b = 0; b < 2; b++) {
        double t0;
        if (!wr_crypto_backend_available(backends[b])) continue;
        wr_crypto_set_default_backend(backends[b]);
        t0 = now_s();
        wr_key_from_password("correct horse battery staple", 28, key);
        printf("  %-10s %6.0f ms\n", wr_crypto_backend_name(backends[b]), (now_s() - t0) * 1e3);
    }
    wr_crypto_set_default_backend(backends[0]);
}

int main(int argc, char **argv)
{
    if (argc > 1) budget = atof(argv[1]);
    if (budget <= 0) budget = 0.5;
    printf("warren crypto bench: default backend %s, suite %s\n",
           wr_crypto_backend_name(WR_BACKEND_DEFAULT), WR_HS_PROTO);
    bench_aead();
    bench_frames();
    bench_x25519();
    bench_handshake();
    bench_users();
    bench_password();
    return 0;
}
