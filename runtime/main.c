/* warren: the C host. Everything user-facing, the command line included, is Lua (lua/warren/). */
#include "wr_buf.h"
#include "wr_host.h"
#include "wr_session.h"
#include "wr_tcp_endpoint.h"

#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>

/* A relay holds two descriptors per tunnelled connection: take every descriptor we may. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    wr_host host;
    int code;

    argv = uv_setup_args(argc, argv);
    signal(SIGPIPE, SIG_IGN); /* a peer that goes away is an error return, not a process kill */
    raise_fd_limit();
    wr_buf_malloc_setup();
    if (wr_host_init(&host) != 0) {
        fprintf(stderr, "warren: cannot initialise the runtime\n");
        return 1;
    }
    wr_host_run(&host, argc, argv);
    code = wr_host_close(&host);
    /* Join the threadpool so per-thread state (the crypto library's, in handshake workers) is
     * released before exit rather than reported as lost. */
    uv_library_shutdown();
    wr_session_cache_trim();
    wr_tcp_endpoint_cache_trim();
    wr_buf_cache_trim();
    return code;
}
