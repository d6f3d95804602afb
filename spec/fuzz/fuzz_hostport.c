/* The relay parses the target of every OPEN frame with wr_parse_hostport: arbitrary bytes must
 * give a parsed address or a reason, never a crash, and a parsed host is always terminated. */
#include "wr_io.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned flags[] = {0, WR_ADDR_PORT_ZERO_OK, WR_ADDR_HOST_REQUIRED};
    char text[1100];
    wr_hostport_t hp;
    const char *err;

    if (size >= sizeof text) return 0; /* the relay refuses longer targets before parsing */
    memcpy(text, data, size);
    text[size] = '\0';
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        memset(&hp, 0xa5, sizeof hp);
        if (wr_parse_hostport(text, flags[i], &hp, &err) == 0) {
            if (memchr(hp.host, '\0', sizeof hp.host) == NULL) abort();
        } else if (err == NULL || *err == '\0') {
            abort();
        }
    }
    return 0;
}
