/* wr_lossy_link: a bad network link in user space, for benchmarks on kernels without netem.
 *
 * Two TUN devices, each in its own network namespace (created beforehand, e.g. with `ip tuntap
 * add`; kcp_link.sh does it), joined by this program: every IP packet read from one is written to
 * the other after the link has done its worst to it. Per direction, in this order:
 *   loss        a packet is dropped with probability --loss
 *   duplication a packet is sent twice with probability --dup (the copy queues like any packet)
 *   bottleneck  with --rate, packets leave one after another at that rate from a drop-tail queue
 *               of --queue full-size packets: a sender that outruns the link fills the queue,
 *               then loses packets, as at a real bottleneck router
 *   delay       every packet arrives --delay ms after it left the queue; with probability
 *               --reorder it takes --reorder-delay ms more, so later packets overtake it
 * Pending packets sit in one heap keyed by release time (bounded: when full, the packet drops);
 * ppoll waits for a TUN to be readable or the next release, whichever is first.
 *
 * Counters (packets and IP bytes, per direction) go to stdout at exit and on SIGUSR1, one line
 * per direction, so a benchmark can take a snapshot before and after each run. The run ends
 * after --seconds, or on SIGTERM/SIGINT. Root only (setns, TUN). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define WR_PKT_MAX     65536
#define WR_HEAP_MAX    (1u << 16) /* pending packets, both directions together */
#define WR_FULL_PACKET 1500       /* bytes: the unit of --queue */

typedef struct wr_link_opts {
    const char *ns[2], *dev[2];
    double delay_ms, loss, dup, reorder, reorder_ms, rate_mbit, seconds;
    uint32_t queue;
    uint64_t seed;
} wr_link_opts;

typedef struct wr_dir_counters {
    uint64_t in, in_bytes;   /* read from the source TUN */
    uint64_t out, out_bytes; /* written to the destination TUN */
    uint64_t lost, queue_drops, heap_drops, write_errors;
    uint64_t duplicated, reordered;
} wr_dir_counters;

typedef struct wr_pending {
    uint64_t release_us, seq; /* seq keeps equal release times in arrival order */
    int dir;                  /* 0: A to B, 1: B to A */
    uint16_t len;
    uint8_t *data;
} wr_pending;

static wr_pending heap[WR_HEAP_MAX];
static uint32_t heap_len;
static uint64_t heap_seq;
static wr_dir_counters counters[2];
static uint64_t link_free_us[2]; /* when the bottleneck has sent what is queued */
static uint64_t rng_state;
static volatile sig_atomic_t stop_requested, dump_requested;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* xorshift64*: fast, and a seed reproduces a run's drop pattern. */
static double rng_unit(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static int heap_before(const wr_pending *a, const wr_pending *b)
{
    return a->release_us != b->release_us ? a->release_us < b->release_us : a->seq < b->seq;
}

static void heap_swap(uint32_t i, uint32_t j)
{
    wr_pending t = heap[i];
    heap[i] = heap[j];
    heap[j] = t;
}

static void heap_push(const wr_pending *p)
{
    uint32_t i = heap_len++;
    heap[i] = *p;
    while (i > 0 && heap_before(&heap[i], &heap[(i - 1) / 2])) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static wr_pending heap_pop(void)
{
    wr_pending top = heap[0];
    uint32_t i = 0;
    heap[0] = heap[--heap_len];
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_len && heap_before(&heap[l], &heap[m])) m = l;
        if (r < heap_len && heap_before(&heap[r], &heap[m])) m = r;
        if (m == i) break;
        heap_swap(i, m);
        i = m;
    }
    return top;
}

/* Queues one copy of a packet through the bottleneck and the delay line. */
static void enqueue(const wr_link_opts *o, int dir, const uint8_t *data, size_t len, uint64_t now)
{
    wr_dir_counters *c = &counters[dir];
    uint64_t leave = now;
    if (o->rate_mbit > 0) {
        double us_per_byte = 8.0 / o->rate_mbit;
        uint64_t start = link_free_us[dir] > now ? link_free_us[dir] : now;
        /* Bytes still queued ahead of this packet, from the time the link needs for them. */
        double backlog = (double)(start - now) / us_per_byte;
        if (backlog + (double)len > (double)o->queue * WR_FULL_PACKET) {
            c->queue_drops++;
            return;
        }
        leave = start + (uint64_t)((double)len * us_per_byte + 0.5);
        link_free_us[dir] = leave;
    }
    if (heap_len == WR_HEAP_MAX) {
        c->heap_drops++;
        return;
    }
    wr_pending p = {.release_us = leave + (uint64_t)(o->delay_ms * 1000.0),
                    .seq = heap_seq++,
                    .dir = dir,
                    .len = (uint16_t)len};
    if (o->reorder > 0 && rng_unit() < o->reorder) {
        p.release_us += (uint64_t)(o->reorder_ms * 1000.0);
        c->reordered++;
    }
    p.data = malloc(len);
    if (!p.data) {
        c->heap_drops++;
        return;
    }
    memcpy(p.data, data, len);
    heap_push(&p);
}

static void on_packet(const wr_link_opts *o, int dir, const uint8_t *data, size_t len, uint64_t now)
{
    wr_dir_counters *c = &counters[dir];
    c->in++;
    c->in_bytes += len;
    if (o->loss > 0 && rng_unit() < o->loss) {
        c->lost++;
        return;
    }
    enqueue(o, dir, data, len, now);
    if (o->dup > 0 && rng_unit() < o->dup) {
        c->duplicated++;
        enqueue(o, dir, data, len, now);
    }
}

static void release_due(const int fds[2], uint64_t now)
{
    while (heap_len > 0 && heap[0].release_us <= now) {
        wr_pending p = heap_pop();
        wr_dir_counters *c = &counters[p.dir];
        /* A full TUN queue on the far side is one more drop, as on a real link. */
        if (write(fds[1 - p.dir], p.data, p.len) == (ssize_t)p.len) {
            c->out++;
            c->out_bytes += p.len;
        } else {
            c->write_errors++;
        }
        free(p.data);
    }
}

static void print_counters(void)
{
    static const char *const names[2] = {"a>b", "b>a"};
    for (int d = 0; d < 2; d++) {
        const wr_dir_counters *c = &counters[d];
        printf("%s in=%" PRIu64 " in_bytes=%" PRIu64 " forwarded=%" PRIu64
               " forwarded_bytes=%" PRIu64 " lost=%" PRIu64 " queue_drops=%" PRIu64
               " heap_drops=%" PRIu64 " write_errors=%" PRIu64 " duplicated=%" PRIu64
               " reordered=%" PRIu64 "\n",
               names[d], c->in, c->in_bytes, c->out, c->out_bytes, c->lost, c->queue_drops,
               c->heap_drops, c->write_errors, c->duplicated, c->reordered);
    }
    fflush(stdout);
}

/* Attaches to the TUN device dev inside namespace ns (a name under /var/run/netns), then returns
 * to the namespace the program started in: the fd stays bound to the device. */
static int open_tun(const char *ns, const char *dev)
{
    char path[256];
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof path, "/var/run/netns/%s", ns);
    int target = open(path, O_RDONLY | O_CLOEXEC);
    if (self < 0 || target < 0) {
        fprintf(stderr, "wr_lossy_link: namespace %s: %s\n", ns, strerror(errno));
        return -1;
    }
    if (setns(target, CLONE_NEWNET) != 0) {
        fprintf(stderr, "wr_lossy_link: setns %s: %s\n", ns, strerror(errno));
        return -1;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", dev);
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) != 0) {
        fprintf(stderr, "wr_lossy_link: TUN %s in %s: %s\n", dev, ns, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    if (setns(self, CLONE_NEWNET) != 0) {
        fprintf(stderr, "wr_lossy_link: setns back: %s\n", strerror(errno));
        exit(2);
    }
    close(self);
    close(target);
    return fd;
}

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        dump_requested = 1;
    else
        stop_requested = 1;
}

static void usage(FILE *f)
{
    fputs("usage: wr_lossy_link --ns-a NS --dev-a TUN --ns-b NS --dev-b TUN [options]\n"
          "  forwards IP packets between two TUN devices in two network namespaces (root)\n"
          "  --delay MS          one-way delay, each direction (default 10)\n"
          "  --loss PCT          random loss, each direction (default 2)\n"
          "  --dup PCT           packets sent twice (default 0)\n"
          "  --reorder PCT       packets held back a further --reorder-delay (default 0)\n"
          "  --reorder-delay MS  (default 5)\n"
          "  --rate MBIT         bottleneck rate, each direction; 0 = none (default 0)\n"
          "  --queue PACKETS     bottleneck queue, in 1500-byte packets (default 200)\n"
          "  --seconds S         run time; 0 = until SIGTERM (default 0)\n"
          "  --seed N            random seed (default: from the clock)\n"
          "counters go to stdout at exit and on SIGUSR1\n",
          f);
}

static int parse_number(const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "wr_lossy_link: %s wants a number from %g to %g, not %s\n", flag, lo, hi,
                s ? s : "nothing");
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, wr_link_opts *o)
{
    double loss = 2, dup = 0, reorder = 0, queue = 200, seed = -1;
    *o = (wr_link_opts){.delay_ms = 10, .reorder_ms = 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--ns-a") && v)
            o->ns[0] = v;
        else if (!strcmp(a, "--ns-b") && v)
            o->ns[1] = v;
        else if (!strcmp(a, "--dev-a") && v)
            o->dev[0] = v;
        else if (!strcmp(a, "--dev-b") && v)
            o->dev[1] = v;
        else if (!strcmp(a, "--delay"))
            bad = parse_number(a, v, 0, 10000, &o->delay_ms);
        else if (!strcmp(a, "--loss"))
            bad = parse_number(a, v, 0, 100, &loss);
        else if (!strcmp(a, "--dup"))
            bad = parse_number(a, v, 0, 100, &dup);
        else if (!strcmp(a, "--reorder"))
            bad = parse_number(a, v, 0, 100, &reorder);
        else if (!strcmp(a, "--reorder-delay"))
            bad = parse_number(a, v, 0, 10000, &o->reorder_ms);
        else if (!strcmp(a, "--rate"))
            bad = parse_number(a, v, 0, 100000, &o->rate_mbit);
        else if (!strcmp(a, "--queue"))
            bad = parse_number(a, v, 1, 100000, &queue);
        else if (!strcmp(a, "--seconds"))
            bad = parse_number(a, v, 0, 1e6, &o->seconds);
        else if (!strcmp(a, "--seed"))
            bad = parse_number(a, v, 0, 1e15, &seed);
        else {
            fprintf(stderr, "wr_lossy_link: unknown option or missing value: %s\n", a);
            usage(stderr);
            return -1;
        }
        if (bad) return -1;
        i++;
    }
    if (!o->ns[0] || !o->ns[1] || !o->dev[0] || !o->dev[1]) {
        usage(stderr);
        return -1;
    }
    o->loss = loss / 100;
    o->dup = dup / 100;
    o->reorder = reorder / 100;
    o->queue = (uint32_t)queue;
    o->seed = seed >= 0 ? (uint64_t)seed : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    return 0;
}

int main(int argc, char **argv)
{
    wr_link_opts o;
    if (parse_args(argc, argv, &o) != 0) return 2;
    rng_state = o.seed | 1;
    int fds[2];
    for (int d = 0; d < 2; d++)
        if ((fds[d] = open_tun(o.ns[d], o.dev[d])) < 0) return 2;

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    /* The signals arrive only inside ppoll, so a flag is never missed between check and wait. */
    sigset_t blocked, during_wait;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGUSR1);
    sigprocmask(SIG_BLOCK, &blocked, &during_wait);

    printf("link ready: delay %g ms, loss %g%%, dup %g%%, reorder %g%% (+%g ms), rate %g Mbit/s, "
           "queue %u, seed %" PRIu64 "\n",
           o.delay_ms, o.loss * 100, o.dup * 100, o.reorder * 100, o.reorder_ms, o.rate_mbit,
           o.queue, o.seed);
    fflush(stdout);

    static uint8_t buf[WR_PKT_MAX];
    uint64_t deadline = o.seconds > 0 ? now_us() + (uint64_t)(o.seconds * 1e6) : UINT64_MAX;
    while (!stop_requested) {
        uint64_t now = now_us();
        if (now >= deadline) break;
        release_due(fds, now);
        uint64_t wake = deadline;
        if (heap_len > 0 && heap[0].release_us < wake) wake = heap[0].release_us;
        uint64_t wait_us = wake > now ? wake - now : 0;
        struct timespec ts = {.tv_sec = (time_t)(wait_us / 1000000u),
                              .tv_nsec = (long)(wait_us % 1000000u) * 1000};
        struct pollfd pfd[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
        int n = ppoll(pfd, 2, &ts, &during_wait);
        if (dump_requested) {
            dump_requested = 0;
            print_counters();
        }
        if (n <= 0) continue;
        now = now_us();
        for (int d = 0; d < 2; d++) {
            if (!(pfd[d].revents & POLLIN)) continue;
            /* A bounded batch per wakeup, so one busy direction cannot starve the other. */
            for (int k = 0; k < 64; k++) {
                ssize_t len = read(fds[d], buf, sizeof buf);
                if (len <= 0) break;
                on_packet(&o, d, buf, (size_t)len, now);
            }
        }
    }
    print_counters();
    while (heap_len > 0)
        free(heap_pop().data);
    return 0;
}
