/* The HTTP side of the WebSocket carrier (RFC 6455 section 4): the client's upgrade request, the
 * relay's check of it and its 101 answer, and the client's check of that answer.
 *
 * The session's first handshake message rides in the upgrade request, as a bearer token
 * (`Authorization: Bearer <base64>`), so that the relay answers 101 only to a request that
 * authenticates, and every other request, a replayed one included, goes to the fallback site
 * exactly as it came. Fronts such as nginx and CDNs pass Authorization through untouched. */
#ifndef WR_WS_UPGRADE_H
#define WR_WS_UPGRADE_H

#include "wr_http_head.h"

#include <stddef.h>
#include <stdint.h>

#define WR_WS_KEY_LEN      24 /* base64 of 16 random bytes */
#define WR_WS_ACCEPT_LEN   28 /* base64 of a SHA-1 */
#define WR_WS_TOKEN_MAX    2048
#define WR_WS_RESPONSE_MAX 16384 /* a 101 answer's head longer than this is refused */

/* The request into out (NUL-terminated). host is the Host field (host[:port]), path the request
 * target (starts with '/'), extra the user's own header lines ("Name: value\r\n" each, checked by
 * the caller) or NULL, key a fresh WR_WS_KEY_LEN-character key. token[0..len) goes out as base64.
 * Returns the length, or 0 when out is too small. */
size_t wr_ws_request(char *out, size_t cap, const char *host, const char *path, const char *extra,
                     const char *key, const uint8_t *token, size_t len);

/* A fresh Sec-WebSocket-Key (NUL-terminated). 0 or a negative code (no randomness). */
int wr_ws_new_key(char key[WR_WS_KEY_LEN + 1]);

/* The Sec-WebSocket-Accept for key[0..len) (NUL-terminated). */
void wr_ws_accept_for(const char *key, size_t len, char accept[WR_WS_ACCEPT_LEN + 1]);

/* Relay: whether h is a WebSocket upgrade this carrier takes: GET, HTTP/1.1, Upgrade: websocket,
 * Connection listing upgrade, version 13, a key of 16 bytes and a bearer token, whatever the path
 * (a front may map any location here; the token is what counts). On success, token[0..*len)
 * holds the decoded token and accept the answer's Sec-WebSocket-Accept. 0, or UV_EINVAL. */
int wr_ws_upgrade_check(const wr_http_head_t *h, uint8_t *token, size_t cap, size_t *len,
                        char accept[WR_WS_ACCEPT_LEN + 1]);

/* Relay: the 101 answer into out. Returns its length, or 0 when out is too small. */
size_t wr_ws_response(char *out, size_t cap, const char *accept);

/* Client: checks the relay's answer, buf[0..len) (the bytes received so far). Returns the head's
 * length (> 0) once it is complete and a valid 101 for key, 0 while more is needed, or
 * UV_EPROTO with why (a sentence for the user, e.g. the status line) filled in. */
int wr_ws_response_check(const char *buf, size_t len, const char *key, char *why, size_t why_cap);

#endif
