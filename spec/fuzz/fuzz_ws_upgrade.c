/* The HTTP heads of the WebSocket and proxy carriers on arbitrary bytes: a request head checked
 * as a WebSocket upgrade and for the user a trusted front names (the relay's side), and the same
 * bytes read as a relay's answer to an
 * upgrade and as a proxy's answer to CONNECT (the client's side). Each must stay inside its
 * buffers, and an answer judged complete must be judged the same once more bytes follow it. */
#include "wr_connect_proxy.h"
#include "wr_forwarded.h"
#include "wr_http_head.h"
#include "wr_ws_upgrade.h"

#include <stdlib.h>
#include <string.h>

static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wr_http_head_t head;
    uint8_t token[WR_WS_TOKEN_MAX];
    char accept[WR_WS_ACCEPT_LEN + 1], why[256];
    size_t token_len = 0;
    int rc;
    wr_http_head_init(&head);
    rc = wr_http_head_parse(&head, (const char *)data, size);
    if (rc > 0) {
        static wr_trusted_t trusted[2];
        struct sockaddr_storage user;
        if (!trusted[0].family) {
            wr_trusted_parse("10.0.0.0/8", &trusted[0]);
            wr_trusted_parse("fd00::/8", &trusted[1]);
        }
        if (wr_forwarded_client(&head, trusted, 2, &user) == 0 &&
            (wr_trusted_match(trusted, 2, (struct sockaddr *)&user) ||
             (user.ss_family != AF_INET && user.ss_family != AF_INET6)))
            abort(); /* the answer is an address, and never a trusted one */
    }
    if (rc > 0 && wr_ws_upgrade_check(&head, token, sizeof token, &token_len, accept) == 0) {
        if (token_len == 0 || token_len > sizeof token || strlen(accept) != WR_WS_ACCEPT_LEN)
            abort();
    }
    rc = wr_ws_response_check((const char *)data, size, key, why, sizeof why);
    if (rc > (int)size) abort();
    if (rc > 0 && wr_ws_response_check((const char *)data, (size_t)rc, key, why, sizeof why) != rc)
        abort();
    rc = wr_connect_answer_check((const char *)data, size, why, sizeof why);
    if (rc > (int)size) abort();
    if (rc > 0 && wr_connect_answer_check((const char *)data, (size_t)rc, why, sizeof why) != rc)
        abort();
    return 0;
}
