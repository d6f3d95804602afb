/* warren: the C host. Everything user-facing, the command line included, is Lua (lua/warren/). */
#include "wr_host.h"

#include <signal.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    wr_host host;

    argv = uv_setup_args(argc, argv);
    signal(SIGPIPE, SIG_IGN); /* a peer that goes away is an error return, not a process kill */
    if (wr_host_init(&host) != 0) {
        fprintf(stderr, "warren: cannot initialise the runtime\n");
        return 1;
    }
    wr_host_run(&host, argc, argv);
    return wr_host_close(&host);
}
