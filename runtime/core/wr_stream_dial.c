#include "wr_stream_dial.h"

#include "wr_io.h"
#include "wr_tcp_endpoint.h"

#include <stdio.h>
#include <stdlib.h>

struct wr_stream_dial {
    wr_stream_t *st;
    wr_dial_t *dial;   /* while dialling */
    wr_relay_t *relay; /* once relaying */
    wr_relay_opts_t ropts;
    wr_stream_dial_check check;
    wr_stream_dial_cb cb;
    void *data;
    char denied[WR_SESSION_REASON_MAX]; /* the policy's reason, when it said no */
};
typedef struct wr_stream_dial stream_dial;

const char *wr_dial_failure_class(int err)
{
    switch (err) {
    case UV_ECONNREFUSED:
        return "refused";
    case UV_ETIMEDOUT:
        return "timeout";
    case UV_EHOSTUNREACH:
    case UV_ENETUNREACH:
    case UV_EADDRNOTAVAIL:
    case UV_EAI_NONAME:
    case UV_EAI_AGAIN:
    case UV_EAI_FAIL:
    case UV_EAI_NODATA:
    case UV_EAI_ADDRFAMILY:
        return "unreachable";
    default:
        return "failed";
    }
}

void wr_stream_reject_uv(wr_stream_t *st, int err)
{
    char reason[WR_SESSION_REASON_MAX];
    snprintf(reason, sizeof reason, "%s: %s", wr_dial_failure_class(err), uv_strerror(err));
    wr_stream_reject(st, reason);
}

static void relayed(wr_relay_t *r, const wr_relay_result_t *res, void *data)
{
    stream_dial *sd = data;
    (void)r;
    sd->cb(sd->data, 0, res);
    free(sd);
}

static int check_addresses(wr_dial_t *d, const struct sockaddr_storage *addrs, int naddrs,
                           void *data)
{
    stream_dial *sd = data;
    char reason[WR_SESSION_REASON_MAX - 8] = "";
    (void)d;
    if (sd->check(sd->data, addrs, naddrs, reason, sizeof reason) == 0) return 0;
    snprintf(sd->denied, sizeof sd->denied, "denied: %s", reason[0] ? reason : "by policy");
    return UV_EACCES;
}

static void dialed(wr_dial_t *d, int status, uv_tcp_t *tcp, void *data)
{
    stream_dial *sd = data;
    wr_endpoint_t *ep;
    (void)d;
    sd->dial = NULL;
    if (status != 0) {
        if (sd->denied[0])
            wr_stream_reject(sd->st, sd->denied);
        else
            wr_stream_reject_uv(sd->st, status);
        goto failed;
    }
    ep = wr_tcp_endpoint_new(tcp);
    if (!ep) {
        wr_tcp_close_free(tcp);
        status = UV_ENOMEM;
        wr_stream_reject_uv(sd->st, status);
        goto failed;
    }
    wr_stream_accept(sd->st); /* answered only here, so it cannot be answered twice */
    sd->relay = wr_relay_start(tcp->loop, wr_stream_endpoint(sd->st), ep, &sd->ropts, relayed, sd);
    if (sd->relay) return;
    wr_endpoint_close(ep, WR_CLOSE_RESET);
    wr_endpoint_close(wr_stream_endpoint(sd->st), WR_CLOSE_RESET);
    status = UV_ENOMEM;
failed:
    sd->cb(sd->data, status, NULL);
    free(sd);
}

int wr_stream_dial(uv_loop_t *loop, wr_stream_t *st, const char *host, uint16_t port,
                   uint64_t timeout_ms, const wr_relay_opts_t *ropts, wr_stream_dial_check check,
                   wr_stream_dial_cb cb, void *data, wr_stream_dial_t **out)
{
    stream_dial *sd = calloc(1, sizeof *sd);
    wr_dial_t *d;
    int rc;
    if (!sd) {
        wr_stream_reject_uv(st, UV_ENOMEM);
        return UV_ENOMEM;
    }
    sd->st = st;
    if (ropts) sd->ropts = *ropts;
    sd->check = check;
    sd->cb = cb;
    sd->data = data;
    rc = wr_dial(loop, host, port, timeout_ms, dialed, sd, &d);
    if (rc != 0) {
        wr_stream_reject_uv(st, rc);
        free(sd);
        return rc;
    }
    if (check) wr_dial_set_check(d, check_addresses);
    sd->dial = d;
    if (out) *out = sd;
    return 0;
}

void wr_stream_dial_cut(wr_stream_dial_t *sd)
{
    if (sd->dial)
        wr_dial_cancel(sd->dial);
    else if (sd->relay)
        wr_relay_close(sd->relay);
}
