/* Control-message codec: exact encodings, round trips, limits, refused forms, the writer's rules
 * and the stream reassembler in every split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_recoder.h"
#include "wr_ctl.h"

/* ---- helpers ---- */

/* A visitor that writes the events as text, so a test can state what it expects. */
struct dump {
    char text[4096];
    size_t len;
    int calls;
    int abort_at; /* a callback returns 1 on this call (1-based); 0 never */
};

static int emit(struct dump *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    d->len += (size_t)vsnprintf(d->text + d->len, sizeof d->text - d->len, fmt, ap);
    va_end(ap);
    assert_true(d->len < sizeof d->text);
    return ++d->calls == d->abort_at;
}

static int d_nil(void *ud)
{
    return emit(ud, "nil ");
}
static int d_bool(void *ud, int v)
{
    return emit(ud, v ? "true " : "false ");
}
static int d_int(void *ud, int64_t v)
{
    return emit(ud, "%lld ", (long long)v);
}
static int d_num(void *ud, double v)
{
    return emit(ud, "%gd ", v);
}
static int d_str(void *ud, const uint8_t *s, size_t len)
{
    return len > 32 ? emit(ud, "s%zu ", len) : emit(ud, "'%.*s' ", (int)len, (const char *)s);
}
static int d_arr(void *ud, uint32_t n)
{
    return emit(ud, "[%u ", n);
}
static int d_map(void *ud, uint32_t n)
{
    return emit(ud, "{%u ", n);
}
static int d_key(void *ud, const uint8_t *s, size_t len)
{
    return emit(ud, "%.*s= ", (int)len, (const char *)s);
}
static int d_end(void *ud)
{
    return emit(ud, ") ");
}

static const wr_ctl_visitor dumper = {d_nil, d_bool, d_int, d_num, d_str,
                                      d_arr, d_map,  d_key, d_end};

/* Decodes buf (from an exact-size copy, so ASan sees any overread) into d. */
static int dump(const uint8_t *buf, size_t len, struct dump *d, const char **err)
{
    uint8_t *copy = malloc(len ? len : 1);
    int rc;
    memcpy(copy, buf, len);
    d->len = 0;
    d->text[0] = '\0';
    d->calls = 0;
    rc = wr_ctl_decode(copy, len, &dumper, d, err);
    free(copy);
    return rc;
}

static void assert_recodes(const uint8_t *value, size_t len)
{
    wr_ctl_writer w;
    const uint8_t *msg;
    size_t mlen;
    wr_ctl_writer_init(&w);
    assert_int_equal(wr_ctl_decode(value, len, &recoder, &w, NULL), WR_CTL_OK);
    assert_int_equal(wr_ctl_writer_finish(&w, &msg, &mlen), WR_CTL_OK);
    assert_int_equal(mlen, len + WR_CTL_PREFIX_LEN);
    assert_memory_equal(msg + WR_CTL_PREFIX_LEN, value, len);
    wr_ctl_writer_free(&w);
}

/* The finished message of w: checks the prefix and returns the value bytes. */
static const uint8_t *finish(wr_ctl_writer *w, size_t *len)
{
    const uint8_t *msg;
    size_t mlen;
    assert_int_equal(wr_ctl_writer_finish(w, &msg, &mlen), WR_CTL_OK);
    assert_true(mlen > WR_CTL_PREFIX_LEN);
    *len = mlen - WR_CTL_PREFIX_LEN;
    assert_int_equal(((size_t)msg[0] << 24 | (size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3]),
                     *len);
    return msg + WR_CTL_PREFIX_LEN;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* A control message of the kind the channel will send, with every type in it. */
static void put_sample(wr_ctl_writer *w)
{
    wr_ctl_put_map(w, 5);
    wr_ctl_put_key(w, "type", 4);
    wr_ctl_put_string(w, "register", 8);
    wr_ctl_put_key(w, "services", 8);
    wr_ctl_put_array(w, 2);
    wr_ctl_put_map(w, 3);
    wr_ctl_put_key(w, "name", 4);
    wr_ctl_put_string(w, "ssh", 3);
    wr_ctl_put_key(w, "port", 4);
    wr_ctl_put_int(w, 22);
    wr_ctl_put_key(w, "weight", 6);
    wr_ctl_put_double(w, 0.5);
    wr_ctl_put_map(w, 2);
    wr_ctl_put_key(w, "name", 4);
    wr_ctl_put_string(w, "web", 3);
    wr_ctl_put_key(w, "port", 4);
    wr_ctl_put_int(w, 8080);
    wr_ctl_put_key(w, "ok", 2);
    wr_ctl_put_bool(w, 1);
    wr_ctl_put_key(w, "err", 3);
    wr_ctl_put_nil(w);
    wr_ctl_put_key(w, "", 0);
    wr_ctl_put_array(w, 4);
    wr_ctl_put_bool(w, 0);
    wr_ctl_put_int(w, -70000);
    wr_ctl_put_string(w, "", 0);
    wr_ctl_put_map(w, 0);
}

static const char sample_dump[] =
    "{5 type= 'register' services= [2 {3 name= 'ssh' port= 22 weight= 0.5d ) {2 name= 'web' "
    "port= 8080 ) ) ok= true err= nil = [4 false -70000 '' {0 ) ) ) ";

/* ---- exact encodings ---- */

struct int_case {
    int64_t v;
    const char *hex;
};

static void hex(char *out, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static void test_integers(void **state)
{
    static const struct int_case cases[] = {
        {0, "80"},
        {1, "81"},
        {127, "ff"},
        {128, "050080"},
        {-1, "04ff"},
        {-128, "0480"},
        {-129, "05ff7f"},
        {255, "0500ff"},
        {32767, "057fff"},
        {32768, "0600008000"},
        {-32768, "058000"},
        {-32769, "06ffff7fff"},
        {INT32_MAX, "067fffffff"},
        {INT32_MIN, "0680000000"},
        {(int64_t)INT32_MAX + 1, "070000000080000000"},
        {(int64_t)INT32_MIN - 1, "07ffffffff7fffffff"},
        {INT64_MAX, "077fffffffffffffff"},
        {INT64_MIN, "078000000000000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wr_ctl_writer w;
        struct dump d = {0};
        char got[32], want[32];
        size_t len;
        const uint8_t *v;
        wr_ctl_writer_init(&w);
        assert_int_equal(wr_ctl_put_int(&w, cases[i].v), WR_CTL_OK);
        v = finish(&w, &len);
        hex(got, v, len);
        assert_string_equal(got, cases[i].hex);
        assert_int_equal(dump(v, len, &d, NULL), WR_CTL_OK);
        snprintf(want, sizeof want, "%lld ", (long long)cases[i].v);
        assert_string_equal(d.text, want);
        wr_ctl_writer_free(&w);
    }
}

static void test_scalars(void **state)
{
    static const double doubles[] = {0.5, -0.0, 1e300, -2.5e-310, INFINITY, -INFINITY, 3.0};
    wr_ctl_writer w;
    struct dump d = {0};
    const uint8_t *v;
    size_t len;
    char text[64];

    wr_ctl_writer_init(&w);
    wr_ctl_put_array(&w, 3);
    wr_ctl_put_nil(&w);
    wr_ctl_put_bool(&w, 0);
    wr_ctl_put_bool(&w, 7);
    v = finish(&w, &len);
    hex(text, v, len);
    assert_string_equal(text, "0c03000102");
    assert_int_equal(dump(v, len, &d, NULL), WR_CTL_OK);
    assert_string_equal(d.text, "[3 nil false true ) ");

    for (size_t i = 0; i < sizeof doubles / sizeof doubles[0]; i++) {
        double back;
        uint64_t bits = 0;
        wr_ctl_writer_reset(&w);
        assert_int_equal(wr_ctl_put_double(&w, doubles[i]), WR_CTL_OK);
        v = finish(&w, &len);
        assert_int_equal(len, 9);
        assert_int_equal(v[0], WR_CTL_DOUBLE);
        for (int b = 1; b < 9; b++)
            bits = bits << 8 | v[b];
        memcpy(&back, &bits, sizeof back);
        assert_memory_equal(&back, &doubles[i], sizeof back); /* bit for bit, -0.0 too */
        assert_recodes(v, len);
    }
    hex(text, v, len);
    assert_string_equal(text, "034008000000000000"); /* 3.0 stays a double */
    wr_ctl_writer_free(&w);
}

static void test_strings(void **state)
{
    static const size_t lens[] = {0, 1, 255, 256, 65535, 65536, 300000};
    static const unsigned widths[] = {1, 1, 1, 2, 2, 4, 4};
    uint8_t *s = malloc(300000);
    wr_ctl_writer w;
    struct dump d = {0};

    for (size_t i = 0; i < 300000; i++)
        s[i] = (uint8_t)(i * 31 + 7);
    wr_ctl_writer_init(&w);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        const uint8_t *v;
        size_t len;
        char want[32];
        wr_ctl_writer_reset(&w);
        assert_int_equal(wr_ctl_put_string(&w, s, lens[i]), WR_CTL_OK);
        v = finish(&w, &len);
        assert_int_equal(len, 1 + widths[i] + lens[i]);
        assert_int_equal(v[0], WR_CTL_STRING + (widths[i] == 1 ? 0 : widths[i] == 2 ? 1 : 2));
        assert_memory_equal(v + 1 + widths[i], s, lens[i]);
        assert_int_equal(dump(v, len, &d, NULL), WR_CTL_OK);
        if (lens[i] > 32) {
            snprintf(want, sizeof want, "s%zu ", lens[i]);
            assert_string_equal(d.text, want);
        }
        assert_recodes(v, len);
    }
    /* bytes are bytes: NUL and high bytes inside strings and keys */
    wr_ctl_writer_reset(&w);
    wr_ctl_put_map(&w, 1);
    wr_ctl_put_key(&w, "a\0b", 3);
    wr_ctl_put_string(&w, "\0\xff", 2);
    {
        size_t len;
        const uint8_t *v = finish(&w, &len);
        char text[32];
        hex(text, v, len);
        assert_string_equal(text, "100103610062080200ff");
        assert_recodes(v, len);
    }
    wr_ctl_writer_free(&w);
    free(s);
}

static void test_nested_roundtrip(void **state)
{
    wr_ctl_writer w;
    struct dump d = {0};
    const uint8_t *v;
    size_t len;
    const char *err = "unset";

    wr_ctl_writer_init(&w);
    put_sample(&w);
    v = finish(&w, &len);
    assert_int_equal(dump(v, len, &d, &err), WR_CTL_OK);
    assert_null(err);
    assert_string_equal(d.text, sample_dump);
    assert_recodes(v, len);
    /* a check-only walk */
    assert_int_equal(wr_ctl_decode(v, len, NULL, NULL, NULL), WR_CTL_OK);
    wr_ctl_writer_free(&w);
}

/* ---- limits ---- */

static void nest(wr_ctl_writer *w, int levels, int maps)
{
    for (int i = 0; i < levels; i++) {
        if (maps && i % 2) {
            assert_int_equal(wr_ctl_put_map(w, 1), WR_CTL_OK);
            assert_int_equal(wr_ctl_put_key(w, "k", 1), WR_CTL_OK);
        } else {
            assert_int_equal(wr_ctl_put_array(w, 1), WR_CTL_OK);
        }
    }
}

static void test_depth(void **state)
{
    uint8_t buf[64];
    size_t n = 0;
    wr_ctl_writer w;
    const uint8_t *v;
    size_t len;
    struct dump d = {0};
    const char *err;

    for (int maps = 0; maps < 2; maps++) {
        wr_ctl_writer_init(&w);
        nest(&w, WR_CTL_MAX_DEPTH, maps);
        assert_int_equal(wr_ctl_put_int(&w, 5), WR_CTL_OK);
        v = finish(&w, &len);
        assert_int_equal(dump(v, len, &d, NULL), WR_CTL_OK);
        assert_int_equal(d.calls, 2 * WR_CTL_MAX_DEPTH + 1 + (maps ? WR_CTL_MAX_DEPTH / 2 : 0));
        assert_recodes(v, len);

        wr_ctl_writer_reset(&w);
        nest(&w, WR_CTL_MAX_DEPTH, maps);
        assert_int_equal(wr_ctl_put_array(&w, 0), WR_CTL_EDEPTH); /* even an empty one */
        assert_int_equal(wr_ctl_put_int(&w, 5), WR_CTL_EDEPTH);   /* sticky */
        wr_ctl_writer_free(&w);
    }

    /* 16 arrays hold a scalar; a 17th array is refused before its visitor call */
    for (int i = 0; i < WR_CTL_MAX_DEPTH; i++) {
        buf[n++] = WR_CTL_ARRAY;
        buf[n++] = 1;
    }
    buf[n++] = WR_CTL_NIL;
    assert_int_equal(dump(buf, n, &d, NULL), WR_CTL_OK);
    n--;
    buf[n++] = WR_CTL_ARRAY;
    buf[n++] = 0;
    assert_int_equal(dump(buf, n, &d, &err), WR_CTL_EDEPTH);
    assert_string_equal(err, "nested deeper than 16");
    assert_int_equal(d.calls, WR_CTL_MAX_DEPTH);
}

static void test_counts(void **state)
{
    struct dump d = {0};
    const char *err;
    /* more elements than bytes: refused before array_begin, whatever the width */
    static const uint8_t arr[] = {0x0c, 0x05, 0x80, 0x80, 0x80, 0x80};
    static const uint8_t arr32[] = {0x0e, 0xff, 0xff, 0xff, 0xff, 0x80};
    static const uint8_t map[] = {0x10, 0x02, 0x00, 0x80, 0x00}; /* 2 entries need 4 bytes */
    static const uint8_t map_ok[] = {0x10, 0x02, 0x00, 0x80, 0x00, 0x81};
    /* each count fits the bytes after it, but together they promise 3 + 3 elements in 5 */
    static const uint8_t nested[] = {0x0c, 0x03, 0x0c, 0x03, 0x80, 0x80, 0x80};
    static const uint8_t nested_ok[] = {0x0c, 0x02, 0x0c, 0x03, 0x80, 0x80, 0x80, 0x80};
    /* a string that would eat the bytes promised to its siblings */
    static const uint8_t str[] = {0x0c, 0x02, 0x08, 0x01, 0x41, 0x80};
    static const uint8_t str_over[] = {0x0c, 0x02, 0x08, 0x02, 0x41, 0x80};

    assert_int_equal(dump(arr, sizeof arr, &d, &err), WR_CTL_ECOUNT);
    assert_string_equal(err, "count larger than the bytes left");
    assert_int_equal(d.calls, 0);
    assert_int_equal(dump(arr, sizeof arr - 1, &d, NULL), WR_CTL_ECOUNT);
    assert_int_equal(dump(arr32, sizeof arr32, &d, NULL), WR_CTL_ECOUNT);
    assert_int_equal(d.calls, 0);
    assert_int_equal(dump(map, sizeof map, &d, NULL), WR_CTL_ECOUNT);
    assert_int_equal(d.calls, 0);
    assert_int_equal(dump(map_ok, sizeof map_ok, &d, NULL), WR_CTL_OK);
    assert_string_equal(d.text, "{2 = 0 = 1 ) ");
    assert_int_equal(dump(nested, sizeof nested, &d, NULL), WR_CTL_ECOUNT);
    assert_string_equal(d.text, "[3 "); /* the inner array_begin never happened */
    assert_int_equal(dump(nested_ok, sizeof nested_ok, &d, NULL), WR_CTL_OK);
    assert_string_equal(d.text, "[2 [3 0 0 0 ) 0 ) ");
    assert_int_equal(dump(str, sizeof str, &d, NULL), WR_CTL_OK);
    assert_int_equal(dump(str_over, sizeof str_over, &d, NULL), WR_CTL_ETRUNC);
    assert_string_equal(d.text, "[2 ");
}

static void test_size_limit(void **state)
{
    size_t max_str = WR_CTL_MAX_MESSAGE - 1 - 4; /* tag and u32 length */
    uint8_t *s = calloc(1, WR_CTL_MAX_MESSAGE + 1);
    wr_ctl_writer w;
    const uint8_t *v;
    size_t len;
    const char *err;

    wr_ctl_writer_init(&w);
    assert_int_equal(wr_ctl_put_string(&w, s, max_str), WR_CTL_OK);
    v = finish(&w, &len);
    assert_int_equal(len, WR_CTL_MAX_MESSAGE);
    assert_int_equal(wr_ctl_decode(v, len, NULL, NULL, NULL), WR_CTL_OK);
    assert_true(w.cap <= WR_CTL_MAX_MESSAGE + WR_CTL_PREFIX_LEN);

    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_string(&w, s, max_str + 1), WR_CTL_ETOOBIG);
    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_string(&w, s, (size_t)1 << 33), WR_CTL_ETOOBIG);
    /* a count the message could never hold is refused at once */
    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_array(&w, WR_CTL_MAX_MESSAGE), WR_CTL_ETOOBIG);
    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_map(&w, WR_CTL_MAX_MESSAGE / 2), WR_CTL_ETOOBIG);
    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_array(&w, UINT32_MAX), WR_CTL_ETOOBIG);
    wr_ctl_writer_reset(&w);
    /* up to the last byte, and not one more */
    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_array(&w, 3), WR_CTL_OK);
    assert_int_equal(wr_ctl_put_string(&w, s, max_str - 3), WR_CTL_OK);
    assert_int_equal(wr_ctl_put_nil(&w), WR_CTL_OK);
    assert_int_equal(wr_ctl_put_nil(&w), WR_CTL_ETOOBIG);
    wr_ctl_writer_free(&w);

    s[0] = WR_CTL_STRING + 2;
    s[1] = 0x00;
    s[2] = 0x10;
    s[3] = 0x00;
    s[4] = 0x00; /* claims exactly the bytes after it */
    assert_int_equal(wr_ctl_decode(s, WR_CTL_MAX_MESSAGE + 1, NULL, NULL, &err), WR_CTL_ETOOBIG);
    assert_string_equal(err, "message longer than 1 MiB");
    free(s);
}

/* ---- refused input ---- */

struct bad_case {
    const char *hex;
    int rc;
};

static size_t unhex(uint8_t *out, const char *hex)
{
    size_t n = 0;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned b;
        sscanf(hex, "%2x", &b);
        out[n++] = (uint8_t)b;
    }
    return n;
}

static void test_refused(void **state)
{
    static const struct bad_case cases[] = {
        {"", WR_CTL_ETRUNC},
        {"0b00", WR_CTL_ETAG},
        {"0f00", WR_CTL_ETAG},
        {"1300", WR_CTL_ETAG},
        {"14", WR_CTL_ETAG},
        {"7f", WR_CTL_ETAG},
        {"0405", WR_CTL_ELONGFORM},               /* 5 is the tag 0x85 */
        {"04ff", WR_CTL_OK},                      /* -1 */
        {"05007f", WR_CTL_ELONGFORM},             /* 127 */
        {"05ff80", WR_CTL_ELONGFORM},             /* -128 fits 1 byte */
        {"0600007fff", WR_CTL_ELONGFORM},         /* fits 2 bytes */
        {"07000000007fffffff", WR_CTL_ELONGFORM}, /* fits 4 bytes */
        {"0800", WR_CTL_OK},                      /* "" */
        {"090003616263", WR_CTL_ELONGFORM},       /* short string with a u16 length */
        {"0a00000000", WR_CTL_ELONGFORM},         /* u32 length */
        {"0d0000", WR_CTL_ELONGFORM},             /* empty array with a u16 count */
        {"1200000000", WR_CTL_ELONGFORM},         /* empty map with a u32 count */
        {"037ff8000000000000", WR_CTL_ENAN},      /* quiet NaN */
        {"03fff0000000000001", WR_CTL_ENAN},      /* NaN with a payload */
        {"037ff0000000000000", WR_CTL_OK},        /* infinity */
        {"0380", WR_CTL_ETRUNC},                  /* double cut short */
        {"0800ff", WR_CTL_ETRAILING},
        {"8080", WR_CTL_ETRAILING}, /* two values */
        {"1001", WR_CTL_ECOUNT},
        {"10010180", WR_CTL_ETRUNC}, /* key longer than what is left */
        {"100103610081", WR_CTL_ETRUNC},
        {"1001016181", WR_CTL_OK},
        {"0c010c010c00", WR_CTL_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t buf[32];
        size_t n = unhex(buf, cases[i].hex);
        struct dump d = {0};
        const char *err = NULL;
        int rc = dump(buf, n, &d, &err);
        if (rc != cases[i].rc) fail_msg("%s: got %d, want %d", cases[i].hex, rc, cases[i].rc);
        assert_true(rc == 0 ? err == NULL : err && *err);
    }
}

static void test_truncated_everywhere(void **state)
{
    wr_ctl_writer w;
    const uint8_t *v;
    size_t len;
    struct dump d = {0};

    wr_ctl_writer_init(&w);
    put_sample(&w);
    v = finish(&w, &len);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = dump(v, cut, &d, NULL);
        if (rc != WR_CTL_ETRUNC && rc != WR_CTL_ECOUNT)
            fail_msg("cut at %zu: %s", cut, wr_ctl_strerror(rc));
    }
    /* and one byte too many, of any value */
    for (int b = 0; b < 256; b++) {
        uint8_t *more = malloc(len + 1);
        memcpy(more, v, len);
        more[len] = (uint8_t)b;
        assert_int_equal(dump(more, len + 1, &d, NULL), WR_CTL_ETRAILING);
        free(more);
    }
    wr_ctl_writer_free(&w);
}

static void test_visitor_abort(void **state)
{
    wr_ctl_writer w;
    const uint8_t *v;
    size_t len;
    struct dump d = {0};
    const char *err;
    int total;

    wr_ctl_writer_init(&w);
    put_sample(&w);
    v = finish(&w, &len);
    assert_int_equal(dump(v, len, &d, NULL), WR_CTL_OK);
    total = d.calls;
    for (int at = 1; at <= total; at++) {
        d.abort_at = at;
        assert_int_equal(dump(v, len, &d, &err), WR_CTL_EABORT);
        assert_int_equal(d.calls, at); /* nothing after the refusal */
        assert_string_equal(err, "stopped by the consumer");
    }
    wr_ctl_writer_free(&w);
}

/* ---- writer rules ---- */

static void test_writer_order(void **state)
{
    wr_ctl_writer w;
    const uint8_t *msg;
    size_t len;
    char key[300];
    memset(key, 'k', sizeof key);

    wr_ctl_writer_init(&w);
    assert_int_equal(wr_ctl_writer_finish(&w, &msg, &len), WR_CTL_EORDER); /* nothing yet */
    assert_int_equal(wr_ctl_put_key(&w, "a", 1), WR_CTL_EORDER);           /* not in a map */

    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_map(&w, 2), WR_CTL_OK);
    assert_int_equal(wr_ctl_writer_finish(&w, &msg, &len), WR_CTL_EORDER); /* not sticky */
    assert_int_equal(wr_ctl_put_key(&w, key, WR_CTL_MAX_KEY), WR_CTL_OK);
    assert_int_equal(wr_ctl_put_key(&w, "a", 1), WR_CTL_EORDER); /* two keys */
    assert_int_equal(wr_ctl_put_nil(&w), WR_CTL_EORDER);         /* the first error sticks */

    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_map(&w, 1), WR_CTL_OK);
    assert_int_equal(wr_ctl_put_int(&w, 1), WR_CTL_EORDER); /* value without a key */

    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_map(&w, 1), WR_CTL_OK);
    assert_int_equal(wr_ctl_put_key(&w, key, WR_CTL_MAX_KEY + 1), WR_CTL_EKEY);

    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_array(&w, 1), WR_CTL_OK);
    assert_int_equal(wr_ctl_put_double(&w, NAN), WR_CTL_ENAN);
    assert_int_equal(wr_ctl_writer_finish(&w, &msg, &len), WR_CTL_ENAN);

    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_int(&w, 1), WR_CTL_OK);
    assert_int_equal(wr_ctl_put_int(&w, 2), WR_CTL_EORDER); /* one value per message */

    /* containers close by count, an empty one at once */
    wr_ctl_writer_reset(&w);
    assert_int_equal(wr_ctl_put_array(&w, 2), WR_CTL_OK);
    assert_int_equal(wr_ctl_put_array(&w, 0), WR_CTL_OK);
    assert_int_equal(wr_ctl_put_map(&w, 0), WR_CTL_OK);
    assert_int_equal(wr_ctl_writer_finish(&w, &msg, &len), WR_CTL_OK);
    assert_int_equal(len, 4 + 6);
    assert_int_equal(wr_ctl_put_nil(&w), WR_CTL_EORDER);
    assert_string_equal(wr_ctl_strerror(WR_CTL_EORDER), "values written out of order");
    wr_ctl_writer_free(&w);
}

/* ---- reassembler ---- */

#define NMSG 12

struct stream {
    uint8_t *bytes;
    size_t len;
    size_t off[NMSG], vlen[NMSG]; /* each value, without its prefix */
};

static void make_stream(struct stream *st)
{
    wr_ctl_writer w;
    static uint8_t big[200000];
    memset(big, 'b', sizeof big);
    st->len = 0;
    st->bytes = NULL;
    wr_ctl_writer_init(&w);
    for (int i = 0; i < NMSG; i++) {
        const uint8_t *msg;
        size_t len;
        wr_ctl_writer_reset(&w);
        switch (i % 4) {
        case 0:
            wr_ctl_put_int(&w, i);
            break;
        case 1:
            put_sample(&w);
            break;
        case 2:
            wr_ctl_put_string(&w, big, i == 2 ? sizeof big : (size_t)(5000 + i));
            break;
        default:
            wr_ctl_put_array(&w, 1);
            wr_ctl_put_string(&w, big, 300 + i);
        }
        assert_int_equal(wr_ctl_writer_finish(&w, &msg, &len), WR_CTL_OK);
        st->bytes = realloc(st->bytes, st->len + len);
        memcpy(st->bytes + st->len, msg, len);
        st->off[i] = st->len + WR_CTL_PREFIX_LEN;
        st->vlen[i] = len - WR_CTL_PREFIX_LEN;
        st->len += len;
    }
    wr_ctl_writer_free(&w);
}

/* Feeds the stream in chunks from next_chunk, each chunk its own buffer; checks every message. */
static void feed_stream(const struct stream *st, size_t (*next_chunk)(void))
{
    wr_ctl_reader r;
    size_t off = 0;
    int got = 0;
    wr_ctl_reader_init(&r);
    while (off < st->len) {
        size_t n = next_chunk(), pos = 0;
        uint8_t *chunk;
        if (n > st->len - off) n = st->len - off;
        chunk = malloc(n ? n : 1);
        memcpy(chunk, st->bytes + off, n);
        for (;;) {
            const uint8_t *msg;
            size_t mlen, used;
            int rc = wr_ctl_reader_feed(&r, chunk + pos, n - pos, &used, &msg, &mlen);
            assert_true(used <= n - pos);
            pos += used;
            if (rc == WR_CTL_NEED_MORE) {
                assert_int_equal(pos, n);
                break;
            }
            assert_int_equal(rc, WR_CTL_OK);
            assert_true(got < NMSG);
            assert_int_equal(mlen, st->vlen[got]);
            assert_memory_equal(msg, st->bytes + st->off[got], mlen);
            assert_int_equal(wr_ctl_decode(msg, mlen, NULL, NULL, NULL), WR_CTL_OK);
            /* memory never exceeds the message being assembled */
            assert_true(r.cap <= mlen || r.cap <= 4096);
            got++;
        }
        free(chunk);
        off += n;
    }
    assert_int_equal(got, NMSG);
    assert_int_equal(r.prefix_have, 0);
    wr_ctl_reader_free(&r);
}

static size_t one_byte(void)
{
    return 1;
}

static size_t random_chunk(void)
{
    switch (rnd() % 4) {
    case 0:
        return rnd() % 8;
    case 1:
        return rnd() % 300;
    case 2:
        return rnd() % 70000;
    }
    return rnd() % 400000;
}

static size_t whole(void)
{
    return SIZE_MAX;
}

static void test_reader_splits(void **state)
{
    struct stream st;
    make_stream(&st);
    feed_stream(&st, one_byte);
    feed_stream(&st, whole);
    for (int i = 0; i < 200; i++)
        feed_stream(&st, random_chunk);
    free(st.bytes);
}

static void test_reader_zero_copy_and_memory(void **state)
{
    wr_ctl_reader r;
    wr_ctl_writer w;
    static uint8_t big[100000];
    const uint8_t *msg, *out;
    size_t len, used, olen;

    wr_ctl_writer_init(&w);
    wr_ctl_put_string(&w, big, sizeof big);
    assert_int_equal(wr_ctl_writer_finish(&w, &msg, &len), WR_CTL_OK);
    wr_ctl_reader_init(&r);

    /* a whole message in one chunk is handed out in place */
    assert_int_equal(wr_ctl_reader_feed(&r, msg, len, &used, &out, &olen), WR_CTL_OK);
    assert_int_equal(used, len);
    assert_ptr_equal(out, msg + WR_CTL_PREFIX_LEN);
    assert_null(r.buf);

    /* a split one is buffered, the buffer growing with the bytes that came */
    assert_int_equal(wr_ctl_reader_feed(&r, msg, 10, &used, &out, &olen), WR_CTL_NEED_MORE);
    assert_int_equal(used, 10);
    assert_true(r.cap <= 256);
    assert_int_equal(wr_ctl_reader_feed(&r, msg + 10, 1000, &used, &out, &olen), WR_CTL_NEED_MORE);
    assert_true(r.cap < 4096);
    assert_int_equal(wr_ctl_reader_feed(&r, msg + 1010, len - 1010, &used, &out, &olen), WR_CTL_OK);
    assert_int_equal(olen, 1 + 4 + sizeof big);
    assert_int_equal(r.cap, olen);
    /* and given back on the next call */
    assert_int_equal(wr_ctl_reader_feed(&r, NULL, 0, &used, &out, &olen), WR_CTL_NEED_MORE);
    assert_null(r.buf);
    wr_ctl_reader_free(&r);
    wr_ctl_writer_free(&w);
}

static void test_reader_bad_prefix(void **state)
{
    static const uint8_t over[] = {0x00, 0x10, 0x00, 0x01, 0x80};
    static const uint8_t at_limit[] = {0x00, 0x10, 0x00, 0x00, 0x08};
    static const uint8_t empty[] = {0, 0, 0, 0, 0x80};
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    wr_ctl_reader r;
    const uint8_t *out;
    size_t used, olen;

    /* refused as soon as the prefix is complete, before anything is allocated; sticky */
    wr_ctl_reader_init(&r);
    assert_int_equal(wr_ctl_reader_feed(&r, over, 3, &used, &out, &olen), WR_CTL_NEED_MORE);
    assert_int_equal(wr_ctl_reader_feed(&r, over + 3, 2, &used, &out, &olen), WR_CTL_ETOOBIG);
    assert_null(r.buf);
    assert_int_equal(wr_ctl_reader_feed(&r, over, 1, &used, &out, &olen), WR_CTL_ETOOBIG);
    assert_int_equal(used, 0);
    wr_ctl_reader_free(&r);

    wr_ctl_reader_init(&r);
    assert_int_equal(wr_ctl_reader_feed(&r, huge, 4, &used, &out, &olen), WR_CTL_ETOOBIG);
    assert_null(r.buf);
    wr_ctl_reader_free(&r);

    wr_ctl_reader_init(&r);
    assert_int_equal(wr_ctl_reader_feed(&r, empty, sizeof empty, &used, &out, &olen),
                     WR_CTL_EEMPTY);
    assert_string_equal(wr_ctl_strerror(WR_CTL_EEMPTY), "empty message");
    wr_ctl_reader_free(&r);

    /* exactly the limit is accepted, and costs only what arrived */
    wr_ctl_reader_init(&r);
    assert_int_equal(wr_ctl_reader_feed(&r, at_limit, sizeof at_limit, &used, &out, &olen),
                     WR_CTL_NEED_MORE);
    assert_true(r.cap <= 256);
    wr_ctl_reader_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_nested_roundtrip),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_visitor_abort),
        cmocka_unit_test(test_writer_order),
        cmocka_unit_test(test_reader_splits),
        cmocka_unit_test(test_reader_zero_copy_and_memory),
        cmocka_unit_test(test_reader_bad_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
