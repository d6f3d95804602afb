/* Unix socket credentials: who is at the other end of the control socket. */
#define _GNU_SOURCE /* struct ucred */
#include "wr_bind.h"

#include <errno.h>
#include <sys/socket.h>

/* core.peer_uid(fd) -> the uid of the process at the other end of a connected Unix socket, or
 * nil, err. */
static int l_peer_uid(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
#ifdef SO_PEERCRED
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return wr_push_uv_error(L, -errno);
    lua_pushinteger(L, (lua_Integer)cred.uid);
    return 1;
#else
    lua_pushnil(L);
    lua_pushliteral(L, "SO_PEERCRED is not available on this system");
    return 2;
#endif
}

void wr_bind_unix(lua_State *L)
{
    lua_pushcfunction(L, l_peer_uid);
    lua_setfield(L, -2, "peer_uid");
}
