/* Channels: a mux stream carrying control messages (wr_ctl) between a client and its relay.
 * Lua sends and receives values; the channel encodes them, cuts the byte stream at message
 * boundaries, bounds what it buffers, and lets a task await the next message, cosocket style:
 *
 *   local msg, err = ch:recv(5000)   -- a value; nil, "closed" / "timeout" at the end; or
 *                                    -- nil, "bad message: ..." (the channel stays open)
 *   ch:send{op = "ping"}
 *
 * The channel is anchored while its stream is open, so a relay-side channel whose only user is a
 * task blocked in recv stays alive. */
#include "wr_bind.h"
#include "wr_bind_tunnel.h"
#include "wr_ctl.h"
#include "wr_host.h"
#include "wr_log.h"
#include "wr_task.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define CHANNEL_MT "warren.channel"
/* Received messages not yet taken by recv: reading stops above this. */
#define CHANNEL_RX_QUEUE_MAX (1024 * 1024)
/* Sent bytes the peer has not taken: a peer that never reads is cut off. */
#define CHANNEL_TX_QUEUE_MAX (8 * 1024 * 1024)

typedef struct wr_lchannel {
    wr_closable link;
    lua_State *L;
    wr_endpoint_t *ep; /* NULL once closed */
    /* Closed by us: the stream stays until what we sent is flushed (shutdown) and the peer ended
     * too, so a send right before close is delivered, not cut off by a reset. */
    wr_endpoint_t *lingering;
    int peer_eof, shut_done;
    int ep_closed; /* its on_closed ran */
    int box_alive; /* the state lives until both are done */
    wr_ctl_reader reader;
    int anchor_ref;
    int queue_ref; /* Lua table of received messages, [head, tail) */
    int head, tail;
    size_t queued_bytes;
    int paused;
    int ended; /* no more messages will arrive */
    char reason[96];
    wr_await *waiting; /* a recv in progress */
} wr_lchannel;

static void channel_end(wr_lchannel *ch, const char *reason, int flush);

static void wake(wr_lchannel *ch)
{
    wr_await *aw = ch->waiting;
    lua_State *co;
    if (!aw || (ch->head == ch->tail && !ch->ended)) return;
    ch->waiting = NULL;
    co = wr_await_settle(aw);
    if (co) {
        if (ch->head < ch->tail) {
            size_t len;
            const char *raw, *err;
            lua_rawgeti(co, LUA_REGISTRYINDEX, ch->queue_ref);
            lua_rawgeti(co, -1, ch->head);
            lua_pushnil(co);
            lua_rawseti(co, -3, ch->head);
            ch->head++;
            raw = lua_tolstring(co, -1, &len);
            ch->queued_bytes -= len;
            err = wr_ctl_push_value(co, (const uint8_t *)raw, len);
            if (err) {
                lua_pop(co, 2);
                lua_pushnil(co);
                lua_pushfstring(co, "bad message: %s", err);
                wr_await_resume(aw, 2);
            } else {
                lua_replace(co, -3);
                lua_pop(co, 1);
                wr_await_resume(aw, 1);
            }
        } else {
            lua_pushnil(co);
            lua_pushstring(co, ch->reason);
            wr_await_resume(aw, 2);
        }
    }
    wr_await_release(aw);
    if (ch->paused && ch->ep && ch->queued_bytes < CHANNEL_RX_QUEUE_MAX / 2) {
        ch->paused = 0;
        wr_endpoint_read_start(ch->ep);
    }
}

static void queue_message(wr_lchannel *ch, const uint8_t *msg, size_t len)
{
    lua_State *L = ch->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->queue_ref);
    lua_pushlstring(L, (const char *)msg, len);
    lua_rawseti(L, -2, ch->tail++);
    lua_pop(L, 1);
    ch->queued_bytes += len;
}

static void on_read(wr_endpoint_t *ep, wr_buf_t *b, const char *base, size_t len)
{
    wr_lchannel *ch = ep->data;
    const uint8_t *data = (const uint8_t *)base, *msg;
    size_t used, msg_len;
    int rc;
    (void)b;
    if (ch->lingering) return; /* closed on our side: nobody takes messages any more */
    while (len > 0) {
        rc = wr_ctl_reader_feed(&ch->reader, data, len, &used, &msg, &msg_len);
        if (rc < 0) {
            char why[80];
            snprintf(why, sizeof why, "bad control stream: %s", wr_ctl_strerror(rc));
            wr_debug("channel: %s", why);
            channel_end(ch, why, 0);
            return;
        }
        if (rc == WR_CTL_OK) queue_message(ch, msg, msg_len);
        data += used;
        len -= used;
    }
    if (ch->queued_bytes >= CHANNEL_RX_QUEUE_MAX && !ch->paused) {
        ch->paused = 1;
        wr_endpoint_read_stop(ep);
    }
    wake(ch);
}

static void linger_done(wr_lchannel *ch)
{
    wr_endpoint_t *ep = ch->lingering;
    if (!ep || !ch->peer_eof || !ch->shut_done) return;
    ch->lingering = NULL;
    wr_endpoint_close(ep, WR_CLOSE_GRACEFUL);
}

static void on_eof(wr_endpoint_t *ep)
{
    wr_lchannel *ch = ep->data;
    ch->peer_eof = 1;
    if (ch->lingering)
        linger_done(ch);
    else
        channel_end(ch, "closed", 1); /* what we still send goes out before our end */
}

static void on_shutdown(wr_endpoint_t *ep, int status)
{
    wr_lchannel *ch = ep->data;
    ch->shut_done = 1;
    if (status < 0) ch->peer_eof = 1; /* nothing more will come through */
    linger_done(ch);
}

static void on_error(wr_endpoint_t *ep, int err)
{
    wr_lchannel *ch = ep->data;
    (void)err;
    if (ch->lingering) {
        ch->lingering = NULL;
        wr_endpoint_close(ep, WR_CLOSE_RESET);
        return;
    }
    channel_end(ch, "closed", 0);
}

static void channel_free(wr_lchannel *ch)
{
    wr_ctl_reader_free(&ch->reader);
    free(ch);
}

static void on_closed(wr_endpoint_t *ep)
{
    wr_lchannel *ch = ep->data;
    ch->ep_closed = 1;
    if (!ch->box_alive) channel_free(ch);
}

static const wr_endpoint_cbs_t channel_cbs = {.on_read = on_read,
                                              .on_eof = on_eof,
                                              .on_error = on_error,
                                              .on_shutdown = on_shutdown,
                                              .on_closed = on_closed};

/* No more messages: wake the reader, close the stream, drop the anchor. Messages already queued
 * can still be taken by recv. With flush, messages sent but not yet written go out first: the
 * stream half-closes and closes once both ends are done (see lingering). */
static void channel_end(wr_lchannel *ch, const char *reason, int flush)
{
    wr_endpoint_t *ep = ch->ep;
    lua_State *L = ch->L;
    if (!ep) return;
    if (!ch->ended) snprintf(ch->reason, sizeof ch->reason, "%s", reason);
    ch->ended = 1;
    ch->ep = NULL;
    wr_host_untrack(&ch->link);
    wake(ch);
    luaL_unref(L, LUA_REGISTRYINDEX, ch->anchor_ref); /* queued messages stay readable */
    ch->anchor_ref = LUA_NOREF;
    if (flush && wr_endpoint_shutdown(ep) == 0) {
        ch->lingering = ep;
        if (ch->paused) wr_endpoint_read_start(ep); /* to see the peer's end */
        return;
    }
    wr_endpoint_close(ep, WR_CLOSE_GRACEFUL);
}

static void channel_close_tracked(wr_closable *c)
{
    channel_end((wr_lchannel *)((char *)c - offsetof(wr_lchannel, link)), "shutting down", 0);
}

int wr_channel_push(lua_State *L, wr_endpoint_t *ep)
{
    wr_lchannel *ch = calloc(1, sizeof *ch);
    if (!ch) return UV_ENOMEM;
    ch->L = wr_host_get(L)->L;
    wr_ctl_reader_init(&ch->reader);
    ch->ep = ep;
    ch->head = ch->tail = 1;
    lua_newtable(L);
    ch->queue_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    wr_endpoint_set_callbacks(ep, &channel_cbs, ch);
    ch->link.close = channel_close_tracked;
    wr_host_track(wr_host_get(L), &ch->link);
    wr_box_new(L, ch, CHANNEL_MT);
    ch->box_alive = 1;
    lua_pushvalue(L, -1);
    ch->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    wr_endpoint_read_start(ep);
    return 0;
}

static wr_lchannel *check_channel(lua_State *L)
{
    return *(wr_lchannel **)luaL_checkudata(L, 1, CHANNEL_MT);
}

/* ch:send(value) -> true | nil, err (raises on a value that cannot be encoded). */
static int l_channel_send(lua_State *L)
{
    wr_lchannel *ch = check_channel(L);
    size_t len;
    const char *msg;
    wr_buf_t *b;
    int rc;
    luaL_checkany(L, 2);
    if (!ch->ep) return wr_push_closed(L);
    wr_ctl_push_encoded(L, 2);
    msg = lua_tolstring(L, -1, &len);
    if (ch->ep->queued + len > CHANNEL_TX_QUEUE_MAX) {
        channel_end(ch, "peer does not read its control messages", 0);
        return wr_push_closed(L);
    }
    b = wr_buf_new(len);
    if (!b) return luaL_error(L, "channel:send: out of memory");
    memcpy(b->data, msg, len);
    rc = wr_endpoint_write(ch->ep, b, b->data, len);
    wr_buf_release(b);
    if (rc != 0) return wr_push_uv_error(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static void recv_aborted(wr_await *aw)
{
    wr_lchannel *ch = aw->data;
    if (ch->waiting == aw) {
        ch->waiting = NULL;
        wr_await_release(aw);
    }
}

/* ch:recv([timeout_ms]) -> message | nil, "closed" | nil, "timeout" (awaits; one at a time) */
static int l_channel_recv(lua_State *L)
{
    wr_lchannel *ch = check_channel(L);
    lua_Integer timeout = luaL_optinteger(L, 2, 0);
    wr_await *aw;
    if (ch->waiting) return luaL_error(L, "channel:recv: another task is already receiving");
    aw = wr_await_begin(L, "channel:recv");
    aw->data = ch;
    aw->abort = recv_aborted;
    aw->refs++;
    ch->waiting = aw;
    if (timeout > 0) wr_await_timeout(aw, (uint64_t)timeout);
    wake(ch); /* a queued message or the end settles it before the yield */
    return wr_await_yield(L, aw);
}

static int l_channel_is_open(lua_State *L)
{
    lua_pushboolean(L, check_channel(L)->ep != NULL);
    return 1;
}

/* Ends the channel at once (queued outgoing messages may be dropped: answer before closing). */
static int l_channel_close(lua_State *L)
{
    wr_lchannel *ch = check_channel(L);
    if (!ch->ep) return wr_push_closed(L);
    channel_end(ch, "closed", 1);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_channel_gc(lua_State *L)
{
    wr_lchannel *ch = check_channel(L); /* anchored while open: ended by now */
    ch->box_alive = 0;
    luaL_unref(L, LUA_REGISTRYINDEX, ch->queue_ref);
    if (ch->ep_closed) channel_free(ch);
    return 0;
}

static const luaL_Reg channel_methods[] = {
    {"send", l_channel_send},
    {"recv", l_channel_recv},
    {"is_open", l_channel_is_open},
    {"close", l_channel_close},
    {NULL, NULL},
};

void wr_bind_channel(lua_State *L)
{
    wr_bind_class(L, CHANNEL_MT, channel_methods, l_channel_gc, NULL, NULL);
}
