/* The access log's records: the text and JSON lines (escaping, absent fields, cut values), drops
 * when the buffer is full, and the short words for why a connection ended. */
#include "wr_access_log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char path[64];

static int setup(void **state)
{
    int fd;
    (void)state;
    snprintf(path, sizeof path, "/tmp/wr-access-test-XXXXXX");
    fd = mkstemp(path);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

/* Stops the log, lets its writes finish, and returns what the file holds (without the time
 * field, which is checked for its shape). */
static char *finish(uv_loop_t *loop)
{
    static char text[65536];
    FILE *f;
    size_t n;
    wr_access_log_close();
    uv_run(loop, UV_RUN_DEFAULT);
    f = fopen(path, "rb");
    assert_non_null(f);
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

static const char *after_time(const char *line, const char *prefix)
{
    size_t n = strlen(prefix);
    assert_memory_equal(line, prefix, n);
    line += n;
    /* 2026-01-02T03:04:05.678Z */
    assert_true(strlen(line) > 24);
    assert_int_equal(line[10], 'T');
    assert_int_equal(line[19], '.');
    assert_int_equal(line[23], 'Z');
    return line + 24;
}

static void test_text(void **state)
{
    uv_loop_t loop;
    wr_access_record r = {.tunnel = "web \"x\"",
                          .peer = "127.0.0.1:5000",
                          .target = "a=b:80",
                          .bytes_up = 12,
                          .bytes_down = 345,
                          .duration_ms = 6,
                          .reason = "eof"};
    char *text;
    (void)state;
    uv_loop_init(&loop);
    assert_int_equal(wr_access_log_open(&loop, path, WR_ACCESS_TEXT, 0), 0);
    assert_true(wr_access_log_on());
    wr_access_log_write(&r);
    r.tunnel = "tab\there\\";
    r.peer = NULL;
    r.target = "\x01\xff";
    wr_access_log_write(&r);
    text = finish(&loop);
    assert_false(wr_access_log_on());
    const char *rest = after_time(text, "time=");
    const char *want1 = " tunnel=\"web \\\"x\\\"\" user=- peer=127.0.0.1:5000 target=\"a=b:80\" "
                        "bytes_up=12 bytes_down=345 duration_ms=6 reason=eof\n";
    assert_memory_equal(rest, want1, strlen(want1));
    rest = after_time(rest + strlen(want1), "time=");
    assert_string_equal(rest, " tunnel=\"tab\\there\\\\\" user=- peer=- target=\"\\x01\\xff\" "
                              "bytes_up=12 bytes_down=345 duration_ms=6 reason=eof\n");
    uv_loop_close(&loop);
}

static void test_json(void **state)
{
    uv_loop_t loop;
    wr_access_record r = {.tunnel = "q\"\\",
                          .user = "alice",
                          .peer = "[::1]:9",
                          .target = "\n\x80",
                          .bytes_up = 1,
                          .bytes_down = 18446744073709551615u,
                          .duration_ms = 0,
                          .reason = "refused"};
    char *text;
    (void)state;
    uv_loop_init(&loop);
    assert_int_equal(wr_access_log_open(&loop, path, WR_ACCESS_JSON, 0), 0);
    wr_access_log_write(&r);
    text = finish(&loop);
    const char *rest = after_time(text, "{\"time\":\"");
    assert_string_equal(rest, "\",\"tunnel\":\"q\\\"\\\\\",\"user\":\"alice\",\"peer\":\"[::1]:9\","
                              "\"target\":\"\\u000a\\u0080\",\"bytes_up\":1,"
                              "\"bytes_down\":18446744073709551615,\"duration_ms\":0,"
                              "\"reason\":\"refused\"}\n");
    uv_loop_close(&loop);
}

/* Values too long for a record are cut; the line stays whole. */
static void test_cut(void **state)
{
    uv_loop_t loop;
    char big[10000];
    wr_access_record r = {.target = big, .tunnel = big, .peer = big, .user = big, .reason = big};
    char *text;
    (void)state;
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    uv_loop_init(&loop);
    assert_int_equal(wr_access_log_open(&loop, path, WR_ACCESS_JSON, 0), 0);
    wr_access_log_write(&r);
    text = finish(&loop);
    assert_true(strlen(text) < 4096);
    assert_non_null(strstr(text, "\"reason\":\"error\"}\n"));
    assert_ptr_equal(strchr(text, '\n'), text + strlen(text) - 1);
    uv_loop_close(&loop);
}

/* A full buffer drops records, counted; it never waits. */
static void test_drops(void **state)
{
    uv_loop_t loop;
    wr_access_record r = {.tunnel = "t", .target = "h:1", .reason = "eof"};
    wr_access_stats st;
    char *text;
    int lines = 0;
    (void)state;
    uv_loop_init(&loop);
    assert_int_equal(wr_access_log_open(&loop, path, WR_ACCESS_TEXT, 400), 0);
    for (int i = 0; i < 10; i++)
        wr_access_log_write(&r); /* the loop does not run: nothing leaves the buffer */
    wr_access_log_get_stats(&st);
    assert_int_equal(st.records + st.dropped, 10);
    assert_true(st.records >= 2 && st.records <= 4);
    text = finish(&loop);
    for (char *p = text; (p = strchr(p, '\n')); p++)
        lines++;
    assert_int_equal(lines, (int)st.records);
    uv_loop_close(&loop);
}

static void test_reasons(void **state)
{
    wr_relay_result_t res = {.err_side = -1};
    char out[16];
    (void)state;
    res.reason = WR_RELAY_EOF;
    assert_string_equal(wr_access_relay_reason(&res, 1), "eof");
    res.reason = WR_RELAY_IDLE;
    assert_string_equal(wr_access_relay_reason(&res, 1), "timeout");
    res.reason = WR_RELAY_RESET;
    assert_string_equal(wr_access_relay_reason(&res, 1), "reset");
    res.reason = WR_RELAY_ERROR;
    res.err = UV_ECONNABORTED;
    res.err_side = 1;
    assert_string_equal(wr_access_relay_reason(&res, 1), "session");
    assert_string_equal(wr_access_relay_reason(&res, 0), "error");
    assert_string_equal(wr_access_dial_reason(UV_ECONNREFUSED), "refused");
    assert_string_equal(wr_access_dial_reason(UV_EACCES), "denied");
    assert_string_equal(wr_access_dial_reason(UV_EAI_NONAME), "unreachable");
    assert_string_equal(wr_access_dial_reason(UV_ETIMEDOUT), "timeout");
    assert_string_equal(wr_access_open_reason("denied: not here", out, sizeof out), "denied");
    assert_string_equal(wr_access_open_reason("refused: connection refused", out, sizeof out),
                        "refused");
    assert_string_equal(wr_access_open_reason("deniedx", out, sizeof out), "failed");
    assert_string_equal(wr_access_open_reason(NULL, out, sizeof out), "session");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drops, setup, teardown),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
