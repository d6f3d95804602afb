/* The HTTP carrier's tokens (wr_hc_proto): the key, the query a request carries and its parse,
 * every field missing or malformed refused, any changed character refused by the tag, the
 * relay's proof, record heads and base64url. */
#include "wr_crypto.h"
#include "wr_hc_proto.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static uint8_t psk[32], key[WR_HC_KEY_LEN];

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof psk; i++)
        psk[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(0, wr_hc_key(psk, key));
    return 0;
}

static wr_hc_request_t sample(enum wr_hc_kind kind, uint64_t offset)
{
    wr_hc_request_t r;
    for (size_t i = 0; i < WR_HC_SID_LEN; i++)
        r.sid[i] = (uint8_t)(0xa0 + i);
    for (size_t i = 0; i < WR_HC_NONCE_LEN; i++)
        r.nonce[i] = (uint8_t)(0x30 + i * 3);
    r.kind = kind;
    r.offset = offset;
    return r;
}

/* The query for r behind path (a path with its own query gets '&' instead of '?', as the
 * client writes it). */
static const char *target_of(const char *path, const wr_hc_request_t *r)
{
    static char out[512];
    char query[WR_HC_QUERY_MAX];
    size_t n = wr_hc_query(key, r, query, sizeof query);
    assert_true(n > 0);
    assert_int_equal(n, strlen(query));
    if (strchr(path, '?')) query[0] = '&';
    snprintf(out, sizeof out, "%s%s", path, query);
    return out;
}

static int parses(const char *target, wr_hc_request_t *r)
{
    return wr_hc_parse(key, target, strlen(target), r);
}

static void key_is_hkdf_of_the_psk(void **state)
{
    uint8_t want[WR_HC_KEY_LEN], other[WR_HC_KEY_LEN], psk2[32];
    static const char info[] = "warren/1 http carrier";
    (void)state;
    assert_int_equal(0, wr_hkdf(NULL, 0, psk, 32, info, sizeof info - 1, want, sizeof want));
    assert_memory_equal(want, key, sizeof want);
    memcpy(psk2, psk, 32);
    psk2[31] ^= 1;
    assert_int_equal(0, wr_hc_key(psk2, other));
    assert_memory_not_equal(other, key, sizeof other);
}

static void query_round_trips(void **state)
{
    static const enum wr_hc_kind kinds[] = {WR_HC_UP, WR_HC_DOWN, WR_HC_POLL};
    static const uint64_t offsets[] = {0, 1, 9, 10, 65535, 4294967296ull, 999999999999999ull};
    static const char *paths[] = {"/", "/app", "/a/b/c", "/tunnel?x=1", "http://front.example/x"};
    (void)state;
    for (size_t k = 0; k < 3; k++)
        for (size_t o = 0; o < sizeof offsets / sizeof *offsets; o++)
            for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
                wr_hc_request_t r = sample(kinds[k], offsets[o]), got;
                const char *t = target_of(paths[p], &r);
                memset(&got, 0xee, sizeof got);
                assert_int_equal(0, parses(t, &got));
                assert_memory_equal(r.sid, got.sid, WR_HC_SID_LEN);
                assert_memory_equal(r.nonce, got.nonce, WR_HC_NONCE_LEN);
                assert_int_equal(r.kind, got.kind);
                assert_true(r.offset == got.offset);
            }
}

static void query_has_the_documented_form(void **state)
{
    wr_hc_request_t r = sample(WR_HC_DOWN, 1234);
    char query[WR_HC_QUERY_MAX], sid[32], nonce[16], tag[32], text[WR_HC_QUERY_MAX];
    uint8_t mac[WR_SHA256_LEN];
    (void)state;
    assert_true(wr_hc_query(key, &r, query, sizeof query) > 0);
    wr_hc_b64url(r.sid, WR_HC_SID_LEN, sid, sizeof sid);
    wr_hc_b64url(r.nonce, WR_HC_NONCE_LEN, nonce, sizeof nonce);
    assert_int_equal(22, strlen(sid));
    assert_int_equal(11, strlen(nonce));
    snprintf(text, sizeof text, "%s d 1234 %s", sid, nonce);
    assert_int_equal(0, wr_hmac_sha256(key, sizeof key, text, strlen(text), mac));
    wr_hc_b64url(mac, WR_HC_TAG_LEN, tag, sizeof tag);
    snprintf(text, sizeof text, "?s=%s&k=d&o=1234&n=%s&t=%s", sid, nonce, tag);
    assert_string_equal(text, query);
    /* too small a buffer: nothing written that could be taken for a query */
    assert_int_equal(0, wr_hc_query(key, &r, query, strlen(text)));
    assert_int_equal(strlen(text), wr_hc_query(key, &r, query, strlen(text) + 1));
}

static void fields_in_any_order_and_others_ignored(void **state)
{
    wr_hc_request_t r = sample(WR_HC_UP, 77), got;
    char q[WR_HC_QUERY_MAX], t[512];
    char *fields[5], *save = NULL;
    int n = 0;
    (void)state;
    assert_true(wr_hc_query(key, &r, q, sizeof q) > 0);
    for (char *f = strtok_r(q + 1, "&", &save); f; f = strtok_r(NULL, "&", &save))
        fields[n++] = f;
    assert_int_equal(5, n);
    snprintf(t, sizeof t, "/x?utm=1&%s&%s&%s&%s&%s&z=", fields[4], fields[2], fields[0], fields[3],
             fields[1]);
    assert_int_equal(0, parses(t, &got));
    assert_true(got.offset == 77);
}

/* The target with field `name`'s value replaced (value NULL: the field left out). */
static const char *with_field(const char *target, char name, const char *value)
{
    static char out[512];
    const char *q = strchr(target, '?');
    size_t n = (size_t)(q - target) + 1;
    int first = 1;
    memcpy(out, target, n);
    out[n] = '\0';
    for (const char *p = q + 1; *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        char field[128];
        if (p[0] == name && p[1] == '=') {
            if (!value) goto next;
            snprintf(field, sizeof field, "%c=%s", name, value);
        } else {
            snprintf(field, sizeof field, "%.*s", (int)len, p);
        }
        strcat(out, first ? "" : "&");
        strcat(out, field);
        first = 0;
    next:
        p += len + (amp ? 1 : 0);
    }
    return out;
}

static void every_field_missing_is_refused(void **state)
{
    wr_hc_request_t r = sample(WR_HC_POLL, 5), got;
    char t[512];
    (void)state;
    snprintf(t, sizeof t, "%s", target_of("/p", &r));
    assert_int_equal(0, parses(t, &got));
    for (const char *f = "sknot"; *f; f++)
        assert_int_equal(-1, parses(with_field(t, *f, NULL), &got));
    /* no query at all, an empty one, a path alone */
    assert_int_equal(-1, parses("/p", &got));
    assert_int_equal(-1, parses("/p?", &got));
    assert_int_equal(-1, parses("", &got));
    /* the query cut short anywhere */
    for (size_t n = 0; n < strlen(t); n++)
        assert_int_equal(-1, wr_hc_parse(key, t, n, &got));
}

static void every_field_malformed_is_refused(void **state)
{
    static const struct {
        char name;
        const char *value;
    } bad[] = {
        {'s', ""},
        {'s', "AKGio6SlpqeoqaqrrK2urw"},  /* another session's sid: the tag fails */
        {'s', "oKGio6SlpqeoqaqrrK2ur"},   /* 21 characters */
        {'s', "oKGio6SlpqeoqaqrrK2urwA"}, /* 23 */
        {'s', "oKGio6SlpqeoqaqrrK2ur+"},  /* not base64url */
        {'s', "oKGio6SlpqeoqaqrrK2ur="},
        {'s', "oKGio6SlpqeoqaqrrK2ur/"},
        {'k', ""},
        {'k', "x"},
        {'k', "U"},
        {'k', "uu"},
        {'k', "dp"},
        {'o', ""},
        {'o', "01"},
        {'o', "00"},
        {'o', "-1"},
        {'o', "+1"},
        {'o', "1a"},
        {'o', " 1"},
        {'o', "1000000000000000"}, /* 16 digits */
        {'o', "0x10"},
        {'n', ""},
        {'n', "MDM2OTw_Qk"},   /* 10 */
        {'n', "MDM2OTw_QkUA"}, /* 12 */
        {'n', "MDM2OTw.QkU"},
        {'t', ""},
        {'t', "AAAAAAAAAAAAAAAAAAAAAA"},
        {'t', "AAAAAAAAAAAAAAAAAAAAA"},
        {'t', "AAAAAAAAAAAAAAAAAAAAAAA"},
    };
    wr_hc_request_t r = sample(WR_HC_UP, 1), got;
    char t[512];
    (void)state;
    snprintf(t, sizeof t, "%s", target_of("/", &r));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *m = with_field(t, bad[i].name, bad[i].value);
        if (parses(m, &got) != 0) continue;
        fail_msg("accepted %s", m);
    }
}

/* base64url has one text per value: the unused low bits of the last character must be 0. */
static void non_canonical_base64_is_refused(void **state)
{
    wr_hc_request_t r = sample(WR_HC_UP, 1), got;
    char t[512], sid[32];
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (void)state;
    snprintf(t, sizeof t, "%s", target_of("/", &r));
    wr_hc_b64url(r.sid, WR_HC_SID_LEN, sid, sizeof sid);
    /* 16 bytes in 22 characters: the last one holds 2 bits and 4 unused ones */
    const char *last = strchr(alphabet, sid[21]);
    assert_int_equal(0, (last - alphabet) & 15);
    for (int low = 1; low < 16; low++) {
        sid[21] = alphabet[(last - alphabet) | low];
        assert_int_equal(-1, parses(with_field(t, 's', sid), &got));
    }
}

static void any_changed_character_is_refused(void **state)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    wr_hc_request_t r = sample(WR_HC_DOWN, 4096), got;
    char t[512];
    size_t q;
    int checked = 0;
    (void)state;
    snprintf(t, sizeof t, "%s", target_of("/app", &r));
    q = (size_t)(strchr(t, '?') - t);
    for (size_t i = q + 1; t[i]; i++) {
        char was = t[i];
        if (was == '&' || was == '=' || (i > 0 && t[i + 1] == '=')) continue;
        for (size_t j = 0; j < sizeof alphabet - 1; j += 7) {
            if (alphabet[j] == was) continue;
            t[i] = alphabet[j];
            if (parses(t, &got) == 0) fail_msg("accepted %s (position %zu)", t, i);
            checked++;
        }
        t[i] = was;
    }
    assert_int_equal(0, parses(t, &got));
    assert_true(checked > 500);
}

static void a_flipped_tag_byte_is_refused(void **state)
{
    wr_hc_request_t r = sample(WR_HC_UP, 0), got;
    char t[512], query[WR_HC_QUERY_MAX], sid[32], nonce[16], tag_text[32], text[96];
    uint8_t mac[WR_SHA256_LEN];
    (void)state;
    snprintf(t, sizeof t, "%s", target_of("/", &r));
    wr_hc_b64url(r.sid, WR_HC_SID_LEN, sid, sizeof sid);
    wr_hc_b64url(r.nonce, WR_HC_NONCE_LEN, nonce, sizeof nonce);
    snprintf(text, sizeof text, "%s u 0 %s", sid, nonce);
    assert_int_equal(0, wr_hmac_sha256(key, sizeof key, text, strlen(text), mac));
    for (int byte = 0; byte < WR_HC_TAG_LEN; byte++)
        for (int bit = 0; bit < 8; bit++) {
            mac[byte] ^= (uint8_t)(1u << bit);
            wr_hc_b64url(mac, WR_HC_TAG_LEN, tag_text, sizeof tag_text);
            assert_int_equal(-1, parses(with_field(t, 't', tag_text), &got));
            mac[byte] ^= (uint8_t)(1u << bit);
        }
    wr_hc_b64url(mac, WR_HC_TAG_LEN, tag_text, sizeof tag_text);
    assert_int_equal(0, parses(with_field(t, 't', tag_text), &got));
    /* the same request under another key */
    uint8_t other[WR_HC_KEY_LEN];
    memcpy(other, key, sizeof other);
    other[0] ^= 0x80;
    assert_true(wr_hc_query(other, &r, query, sizeof query) > 0);
    assert_int_equal(-1, parses(query, &got));
    assert_int_equal(-1, wr_hc_parse(other, t, strlen(t), &got));
}

static void proof_is_the_hmac_of_the_nonce(void **state)
{
    uint8_t nonce[WR_HC_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8}, text[11], mac[WR_SHA256_LEN];
    char proof[WR_HC_PROOF_LEN + 1], want[WR_HC_PROOF_LEN + 1], again[WR_HC_PROOF_LEN + 1];
    uint8_t other[WR_HC_KEY_LEN];
    (void)state;
    assert_int_equal(0, wr_hc_proof(key, nonce, proof));
    assert_int_equal(WR_HC_PROOF_LEN, strlen(proof));
    memcpy(text, "ok ", 3);
    memcpy(text + 3, nonce, sizeof nonce);
    assert_int_equal(0, wr_hmac_sha256(key, sizeof key, text, sizeof text, mac));
    wr_hc_b64url(mac, 16, want, sizeof want);
    assert_string_equal(want, proof);
    /* another nonce, another key: another proof */
    nonce[7] ^= 1;
    assert_int_equal(0, wr_hc_proof(key, nonce, again));
    assert_string_not_equal(proof, again);
    nonce[7] ^= 1;
    memcpy(other, key, sizeof other);
    other[31] ^= 1;
    assert_int_equal(0, wr_hc_proof(other, nonce, again));
    assert_string_not_equal(proof, again);
}

static void record_heads(void **state)
{
    uint8_t h[WR_HC_RECORD_HEAD];
    (void)state;
    wr_hc_record_head(h, WR_HC_RECORD_DATA, 0x123456);
    assert_memory_equal("\x00\x12\x34\x56", h, 4);
    wr_hc_record_head(h, WR_HC_RECORD_PAD, 0);
    assert_memory_equal("\x01\x00\x00\x00", h, 4);
    wr_hc_record_head(h, WR_HC_RECORD_DATA, WR_HC_RECORD_MAX);
    assert_memory_equal("\x00\xff\xff\xff", h, 4);
}

static void base64url_vectors(void **state)
{
    /* RFC 4648's vectors, in the URL alphabet without padding */
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    char buf[32];
    (void)state;
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(strlen(out[i]),
                         wr_hc_b64url((const uint8_t *)in[i], strlen(in[i]), buf, sizeof buf));
        assert_string_equal(out[i], buf);
    }
    assert_int_equal(3, wr_hc_b64url((const uint8_t *)"\xfb\xff", 2, buf, sizeof buf));
    assert_string_equal("-_8", buf);
    /* room for the text and its NUL, or nothing */
    assert_int_equal(0, wr_hc_b64url((const uint8_t *)"foo", 3, buf, 4));
    assert_int_equal(4, wr_hc_b64url((const uint8_t *)"foo", 3, buf, 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_is_hkdf_of_the_psk),
        cmocka_unit_test(query_round_trips),
        cmocka_unit_test(query_has_the_documented_form),
        cmocka_unit_test(fields_in_any_order_and_others_ignored),
        cmocka_unit_test(every_field_missing_is_refused),
        cmocka_unit_test(every_field_malformed_is_refused),
        cmocka_unit_test(non_canonical_base64_is_refused),
        cmocka_unit_test(any_changed_character_is_refused),
        cmocka_unit_test(a_flipped_tag_byte_is_refused),
        cmocka_unit_test(proof_is_the_hmac_of_the_nonce),
        cmocka_unit_test(record_heads),
        cmocka_unit_test(base64url_vectors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
