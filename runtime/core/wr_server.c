#include "wr_server.h"

#include "wr_access_log.h"
#include "wr_addr.h"
#include "wr_addr_limit.h"
#include "wr_admit.h"
#include "wr_io.h"
#include "wr_log.h"
#include "wr_stream_dial.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIAL_TIMEOUT_DEFAULT_MS 10000
#define FAILURE_SLOTS           4096
/* Dropped connections are logged at most this often, as one summary line. */
#define DROP_LOG_INTERVAL_MS 10000

typedef struct user_limits {
    uint32_t sessions, streams;
} user_limits;

struct wr_server {
    uv_loop_t *loop;
    wr_server_cbs cbs;
    void *data;
    wr_session_server_t *hs;
    wr_session_config scfg;
    wr_relay_opts_t ropts;
    uint64_t dial_timeout_ms;
    wr_admit_t *admit;
    wr_addr_limit_t *failures; /* NULL = no tally */
    wr_server_conn_t *conns;   /* live sessions */
    user_limits *limits;       /* per user, in the order of hs->names (0 = no limit) */
    wr_server_stats st;
    uint64_t drops_logged, drop_log_ms;     /* drops covered by the last summary line, and when */
    uint64_t over_limit, over_limit_log_ms; /* sessions closed for max_sessions; last logged */
    int closed, owner_gone;
    int refs; /* the owner, each conn record */
};

struct wr_server_conn {
    wr_admit_entry admit; /* first: wr_admit hands it back for eviction */
    wr_server_t *srv;
    wr_session_t *session; /* NULL once ended */
    void *data;
    int refs;                    /* the session, each stream being dialled or relayed */
    int ready;                   /* key confirmed */
    uint32_t streams;            /* dialled streams not yet done */
    char user[WR_USER_NAME_MAX]; /* from the session, once its first message authenticated */
    char peer[64];
    struct sockaddr_storage addr;
    wr_server_conn_t *next, **prev;
};

/* Lives as long as the stream's dial and relay; the target is sized to fit. */
typedef struct server_stream {
    wr_server_conn_t *conn;
    char target[];
} server_stream;

static void server_unref(wr_server_t *srv)
{
    if (--srv->refs > 0) return;
    wr_session_server_free(srv->hs);
    free(srv->limits);
    wr_addr_limit_free(srv->failures);
    wr_admit_free(srv->admit);
    free(srv);
}

static void conn_unref(wr_server_conn_t *c)
{
    if (--c->refs > 0) return;
    server_unref(c->srv);
    free(c);
}

static int owner_listens(const wr_server_t *srv)
{
    return !srv->owner_gone;
}

static void info_of(server_stream *ss, wr_server_stream_info *info)
{
    info->conn = ss->conn;
    info->user = ss->conn->user;
    info->target = ss->target;
    info->peer = ss->conn->peer;
}

static void stream_done(void *data, int dial_status, const wr_relay_result_t *res)
{
    server_stream *ss = data;
    wr_server_t *srv = ss->conn->srv;
    wr_server_stream_info info;
    info_of(ss, &info);
    srv->st.streams_active--;
    if (dial_status != 0) {
        srv->st.dials_failed++;
        wr_info("relay: %s from %s failed: %s", ss->target, ss->conn->peer,
                uv_strerror(dial_status));
    } else {
        srv->st.bytes_up += res->bytes_ab; /* a = the stream: bytes from the client onward */
        srv->st.bytes_down += res->bytes_ba;
    }
    if (wr_access_log_on()) {
        /* The relay cannot know the client's name for its tunnel: "-". */
        wr_access_record rec = {
            .user = ss->conn->user[0] ? ss->conn->user : NULL,
            .peer = ss->conn->peer,
            .target = ss->target,
            .bytes_up = res ? res->bytes_ab : 0,
            .bytes_down = res ? res->bytes_ba : 0,
            .duration_ms = res ? res->duration_ms : 0,
            .reason = res ? wr_access_relay_reason(res, 0) : wr_access_dial_reason(dial_status),
        };
        wr_access_log_write(&rec);
    }
    if (srv->cbs.on_stream_done && owner_listens(srv))
        srv->cbs.on_stream_done(srv, &info, dial_status, res);
    ss->conn->streams--;
    conn_unref(ss->conn);
    free(ss);
}

static int policy_check(void *data, const struct sockaddr_storage *addrs, int naddrs, char *reason,
                        size_t size)
{
    server_stream *ss = data;
    wr_server_t *srv = ss->conn->srv;
    wr_server_stream_info info;
    int refused;
    if (srv->closed || !owner_listens(srv)) {
        snprintf(reason, size, "relay closing");
        return -1;
    }
    if (!ss->conn->session) {
        snprintf(reason, size, "session ended");
        return -1;
    }
    info_of(ss, &info);
    refused = srv->cbs.policy(srv, &info, addrs, naddrs, reason, size);
    if (refused) {
        srv->st.streams_denied++;
        wr_debug("relay: open %s denied: %s", ss->target, reason[0] ? reason : "by policy");
    }
    return refused;
}

/* The user's limits (zeros: none). */
static user_limits user_limit(const wr_server_t *srv, const char *user)
{
    static const user_limits none;
    for (size_t i = 0; i < srv->hs->nkeys; i++)
        if (strcmp(srv->hs->names[i], user) == 0) return srv->limits[i];
    return none;
}

/* Dialled streams of the user's sessions now, when it has a limit that n reaches. */
static int user_streams_full(const wr_server_t *srv, const wr_server_conn_t *c, uint32_t *max)
{
    uint32_t n = 0;
    *max = user_limit(srv, c->user).streams;
    if (!*max) return 0;
    for (const wr_server_conn_t *o = srv->conns; o && n < *max; o = o->next)
        if (strcmp(o->user, c->user) == 0) n += o->streams;
    return n >= *max;
}

static void on_stream_open(wr_session_t *s, wr_stream_t *st, const uint8_t *target, size_t len)
{
    wr_server_conn_t *c = wr_session_data(s);
    wr_server_t *srv = c->srv;
    server_stream *ss;
    wr_hostport_t hp;
    const char *perr;
    char text[WR_HOST_MAX + 16], reason[WR_SESSION_REASON_MAX];
    uint32_t max;

    srv->st.streams_total++;
    if (len >= sizeof text) {
        wr_stream_reject(st, "bad target: too long");
        return;
    }
    memcpy(text, target, len);
    text[len] = '\0';
    if (strcmp(text, WR_CONTROL_TARGET) == 0) {
        if (srv->cbs.on_channel && owner_listens(srv))
            srv->cbs.on_channel(srv, c, st);
        else
            wr_stream_reject(st, "denied: this relay takes no registrations");
        return;
    }
    if (wr_parse_hostport(text, 0, &hp, &perr) != 0) {
        snprintf(reason, sizeof reason, "bad target: %s", perr);
        wr_stream_reject(st, reason);
        return;
    }
    if (user_streams_full(srv, c, &max)) {
        snprintf(reason, sizeof reason, "denied: user %s has its %u streams open already", c->user,
                 max);
        srv->st.streams_denied++;
        wr_stream_reject(st, reason);
        return;
    }
    /* An empty host means the relay's own localhost. */
    if (hp.host[0] == '\0') snprintf(hp.host, sizeof hp.host, "127.0.0.1");
    ss = malloc(sizeof *ss + len + 1);
    if (!ss) {
        wr_stream_reject(st, "failed: out of memory");
        return;
    }
    ss->conn = c;
    memcpy(ss->target, text, len + 1);
    if (wr_stream_dial(srv->loop, st, hp.host, hp.port, srv->dial_timeout_ms, &srv->ropts,
                       srv->cbs.policy ? policy_check : NULL, stream_done, ss, NULL) != 0) {
        srv->st.dials_failed++;
        free(ss);
        return;
    }
    c->refs++;
    c->streams++;
    srv->st.streams_active++;
}

static void copy_user(wr_server_conn_t *c)
{
    snprintf(c->user, sizeof c->user, "%s", wr_session_user(c->session));
}

static void on_ready(wr_session_t *s)
{
    wr_server_conn_t *c = wr_session_data(s);
    wr_server_t *srv = c->srv;
    uint32_t max = user_limit(srv, c->user).sessions, n = 0;
    wr_admit_remove(srv->admit, &c->admit);
    if (max) {
        for (wr_server_conn_t *o = srv->conns; o; o = o->next)
            n += o->ready && strcmp(o->user, c->user) == 0;
        if (n >= max) {
            uint64_t now = uv_now(srv->loop);
            char why[WR_SESSION_REASON_MAX];
            /* A client retries at once: one line per interval, not one per attempt. */
            if (srv->over_limit_log_ms == 0 ||
                now - srv->over_limit_log_ms >= DROP_LOG_INTERVAL_MS) {
                wr_info("relay: user %s has its %u sessions already: the one from %s is closed "
                        "(%llu closed for a user's limit in all)",
                        c->user, max, c->peer, (unsigned long long)srv->over_limit + 1);
                srv->over_limit_log_ms = now;
            }
            srv->over_limit++;
            snprintf(why, sizeof why, "user %s has its %u sessions at once already (max_sessions)",
                     c->user, max);
            wr_session_close_because(s, why);
            return;
        }
    }
    c->ready = 1;
    wr_debug("relay: session from %s authenticated (user %s)", c->peer, c->user);
}

/* The client showed the key in its first message: a flood can no longer push it out while the
 * key exchange finishes (a real client behind the same NAT as a flooder gets in). */
static void on_verified(wr_session_t *s)
{
    wr_server_conn_t *c = wr_session_data(s);
    copy_user(c);
    wr_admit_remove(c->srv->admit, &c->admit);
}

static void on_closed(wr_session_t *s, int reason, const char *detail)
{
    wr_server_conn_t *c = wr_session_data(s);
    wr_server_t *srv = c->srv;
    const char *why = detail && *detail ? detail : wr_session_reason_name(reason);
    wr_debug("relay: session from %s closed: %s", c->peer, why);
    c->session = NULL;
    *c->prev = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->st.sessions_active--;
    wr_admit_remove(srv->admit, &c->admit);
    if (srv->cbs.on_conn_closed && owner_listens(srv)) srv->cbs.on_conn_closed(srv, c, why);
    conn_unref(c);
}

static void on_rejected(wr_session_t *s)
{
    wr_server_conn_t *c = wr_session_data(s);
    wr_server_t *srv = c->srv;
    wr_admit_doom(srv->admit, &c->admit);
    if (wr_addr_limit_fail(srv->failures, (struct sockaddr *)&c->addr, uv_now(srv->loop))) {
        char ip[64];
        wr_addr_format((struct sockaddr *)&c->addr, 0, ip, sizeof ip);
        wr_warn("relay: failed handshakes from %s reached the limit within %d s: its "
                "unauthenticated connections go first when the relay must drop some",
                ip, WR_SERVER_FAILURE_WINDOW_MS / 1000);
    }
}

static const wr_session_cbs conn_cbs = {.on_ready = on_ready,
                                        .on_stream_open = on_stream_open,
                                        .on_closed = on_closed,
                                        .on_rejected = on_rejected,
                                        .on_verified = on_verified};

/* Closes a connection wr_admit dropped to make room, and says so now and then. */
static void evicted(wr_admit_entry *e, void *data)
{
    wr_server_t *srv = data;
    wr_server_conn_t *victim = (wr_server_conn_t *)e;
    uint64_t now = uv_now(srv->loop);
    wr_admit_stats st;
    wr_session_drop(victim->session);
    wr_admit_get_stats(srv->admit, &st);
    if (srv->drop_log_ms == 0 || now - srv->drop_log_ms >= DROP_LOG_INTERVAL_MS) {
        uint64_t dropped = st.evicted_per_addr + st.evicted_total;
        wr_warn("relay: too many connections without the key: dropped %llu of the oldest since "
                "the last report (%llu for one address's budget; latest from %s)",
                (unsigned long long)(dropped - srv->drops_logged),
                (unsigned long long)st.evicted_per_addr, victim->peer);
        srv->drops_logged = dropped;
        srv->drop_log_ms = now;
    }
}

wr_server_t *wr_server_new(uv_loop_t *loop, const wr_server_config *cfg, const wr_server_cbs *cbs,
                           void *data)
{
    wr_server_t *srv = calloc(1, sizeof *srv);
    uint32_t max_unauth =
        cfg->max_unauthenticated ? cfg->max_unauthenticated : WR_SERVER_MAX_UNAUTHENTICATED_DEFAULT;
    if (!srv) return NULL;
    srv->loop = loop;
    srv->cbs = *cbs;
    srv->data = data;
    srv->refs = 1;
    srv->scfg = cfg->session;
    srv->ropts = cfg->relay;
    srv->dial_timeout_ms = cfg->dial_timeout_ms ? cfg->dial_timeout_ms : DIAL_TIMEOUT_DEFAULT_MS;
    srv->admit = wr_admit_new(max_unauth, cfg->max_unauthenticated_per_address, evicted, srv);
    srv->failures =
        wr_addr_limit_new(cfg->max_failed_handshakes, WR_SERVER_FAILURE_WINDOW_MS, FAILURE_SLOTS);
    if (!srv->admit || (cfg->max_failed_handshakes && !srv->failures) ||
        wr_session_server_new(cfg->psk ? cfg->psk : cfg->users[0].psk, 0, &srv->hs) != 0) {
        wr_admit_free(srv->admit);
        wr_addr_limit_free(srv->failures);
        free(srv);
        return NULL;
    }
    srv->scfg.is_server = 1;
    srv->scfg.hs_server = srv->hs;
    wr_session_server_set_cipher(srv->hs, cfg->session.cipher);
    if (cfg->nusers ? wr_server_set_users(srv, cfg->users, cfg->nusers) < 0
                    : !(srv->limits = calloc(1, sizeof *srv->limits))) {
        server_unref(srv);
        return NULL;
    }
    return srv;
}

/* Is user (an old user's name, with its old derived key) gone from users[], or keyed otherwise? */
static int user_changed(const wr_server_user *users, size_t n, const char *name,
                        const wr_hs_config *old)
{
    for (size_t i = 0; i < n; i++) {
        wr_hs_config cfg;
        int same;
        if (strcmp(users[i].name, name) != 0) continue;
        if (wr_hs_config_init(&cfg, users[i].psk, old->backend, old->not_before) != WR_HS_OK)
            return 1;
        same = wr_ct_equal(cfg.prk0, old->prk0, sizeof cfg.prk0);
        wr_hs_config_wipe(&cfg);
        return !same;
    }
    return 1;
}

int wr_server_set_users(wr_server_t *srv, const wr_server_user *users, size_t n)
{
    wr_session_key *keys;
    user_limits *limits;
    char(*ended)[WR_USER_NAME_MAX];
    size_t nended = 0;
    int rc, count = 0;
    if (n == 0) return UV_EINVAL;
    keys = calloc(n, sizeof *keys);
    limits = calloc(n, sizeof *limits);
    ended = calloc(srv->hs->nkeys, sizeof *ended);
    if (!keys || !limits || !ended) {
        free(keys);
        free(limits);
        free(ended);
        return UV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        keys[i].name = users[i].name;
        keys[i].psk = users[i].psk;
        limits[i].sessions = users[i].max_sessions;
        limits[i].streams = users[i].max_streams;
    }
    /* Before the old keys go: which users lose their sessions. */
    for (size_t i = 0; i < srv->hs->nkeys; i++)
        if (user_changed(users, n, srv->hs->names[i], &srv->hs->keys[i]))
            memcpy(ended[nended++], srv->hs->names[i], WR_USER_NAME_MAX);
    rc = wr_session_server_set_keys(srv->hs, keys, n);
    free(keys);
    if (rc != 0) {
        free(limits);
        free(ended);
        return rc;
    }
    free(srv->limits);
    srv->limits = limits;
    for (size_t u = 0; u < nended; u++) {
        int k = 0;
        /* The session's own record: it names the user from the moment msg1's header
         * authenticated, before on_verified copies it here. */
        for (wr_server_conn_t *c = srv->conns; c; c = c->next)
            if (strcmp(wr_session_user(c->session), ended[u]) == 0) {
                wr_session_close(c->session);
                k++;
            }
        if (k)
            wr_info("relay: user %s was removed or given another key: %d of its sessions end",
                    ended[u], k);
        count += k;
    }
    free(ended);
    return count;
}

void *wr_server_data(const wr_server_t *srv)
{
    return srv->data;
}

static int take(wr_server_t *srv, wr_endpoint_t *carrier, const struct sockaddr *peer,
                const wr_hs_server *checked)
{
    wr_server_conn_t *c;
    if (srv->closed) {
        wr_endpoint_close(carrier, WR_CLOSE_RESET);
        return UV_ECANCELED;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        wr_endpoint_close(carrier, WR_CLOSE_RESET);
        return UV_ENOMEM;
    }
    if (peer && (peer->sa_family == AF_INET || peer->sa_family == AF_INET6))
        memcpy(&c->addr, peer,
               peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in));
    wr_addr_normalize(&c->addr);
    wr_addr_format((struct sockaddr *)&c->addr, 1, c->peer, sizeof c->peer);
    c->srv = srv;
    c->refs = 1;
    c->session = checked
                     ? wr_session_new_checked(srv->loop, carrier, &srv->scfg, &conn_cbs, c, checked)
                     : wr_session_new(srv->loop, carrier, &srv->scfg, &conn_cbs, c);
    if (!c->session) {
        wr_endpoint_close(carrier, WR_CLOSE_RESET);
        free(c);
        return UV_ENOMEM;
    }
    if (checked) copy_user(c);
    srv->refs++;
    c->next = srv->conns;
    c->prev = &srv->conns;
    if (srv->conns) srv->conns->prev = &c->next;
    srv->conns = c;
    srv->st.sessions_total++;
    srv->st.sessions_active++;
    if (checked) return 0; /* it showed the key already: nothing to admit */
    /* Last: making room may drop other sessions (never this one). */
    wr_admit_add(srv->admit, &c->admit, (struct sockaddr *)&c->addr,
                 wr_addr_limit_over(srv->failures, (struct sockaddr *)&c->addr, uv_now(srv->loop)));
    return 0;
}

int wr_server_take(wr_server_t *srv, wr_endpoint_t *carrier, const struct sockaddr *peer)
{
    return take(srv, carrier, peer, NULL);
}

int wr_server_check(wr_server_t *srv, const uint8_t *msg1, size_t len, wr_hs_server *out)
{
    return srv->closed ? -1 : wr_session_server_check(srv->hs, msg1, len, out);
}

int wr_server_take_checked(wr_server_t *srv, wr_endpoint_t *carrier, const struct sockaddr *peer,
                           const wr_hs_server *checked)
{
    return take(srv, carrier, peer, checked);
}

void wr_server_close(wr_server_t *srv)
{
    if (srv->closed) return;
    srv->closed = 1;
    for (wr_server_conn_t *c = srv->conns; c; c = c->next)
        wr_session_close(c->session);
}

void wr_server_free(wr_server_t *srv)
{
    wr_server_close(srv);
    srv->owner_gone = 1;
    server_unref(srv);
}

void wr_server_get_stats(const wr_server_t *srv, wr_server_stats *out)
{
    wr_admit_stats adm;
    wr_admit_get_stats(srv->admit, &adm);
    *out = srv->st;
    out->unauthenticated = adm.pending + adm.doomed;
    out->unauthenticated_failed = adm.doomed;
    out->dropped_unauthenticated = adm.evicted_total;
    out->dropped_per_address = adm.evicted_per_addr;
    out->handshakes_ok = srv->hs->handshakes_ok;
    out->handshakes_failed = srv->hs->handshakes_failed;
    memcpy(out->handshakes_failed_by, srv->hs->handshakes_failed_by,
           sizeof out->handshakes_failed_by);
}

wr_session_t *wr_server_conn_session(const wr_server_conn_t *conn)
{
    return conn->session;
}

const char *wr_server_conn_peer(const wr_server_conn_t *conn)
{
    return conn->peer;
}

const char *wr_server_conn_user(const wr_server_conn_t *conn)
{
    return conn->user;
}

void wr_server_each_conn(wr_server_t *srv, void (*fn)(wr_server_conn_t *conn, void *data),
                         void *data)
{
    for (wr_server_conn_t *c = srv->conns; c; c = c->next)
        fn(c, data);
}

void *wr_server_conn_data(const wr_server_conn_t *conn)
{
    return conn->data;
}

void wr_server_conn_set_data(wr_server_conn_t *conn, void *data)
{
    conn->data = data;
}
