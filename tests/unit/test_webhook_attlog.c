/* test_webhook_attlog.c - aggregated records of the webhooks attempts log
 * (src/proto/webhook/webhook_attlog.c): what a batch of successes renders
 * to (parsed back with jansson), when a batch must be flushed first
 * (another status, full), escaping, caps, and reuse after a reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#define JN_WH_PURE_ONLY
#include "proto/webhook/webhook_int.h"

static json_t *render(const jn_wh_okbatch_t *b, uint64_t seq, int64_t time_ms)
{
    jn_buf_t out;
    jn_buf_init(&out, 1u << 20);
    assert_int_equal(jn_wh_okbatch_render(b, seq, time_ms, &out), 0);
    json_error_t err;
    json_t *j = json_loadb((const char *)out.data, out.len, 0, &err);
    if (!j)
        fail_msg("not JSON (%s): %.*s", err.text, (int)out.len, (const char *)out.data);
    jn_buf_free(&out);
    return j;
}

static void test_batch_record(void **state)
{
    (void)state;
    jn_wh_okbatch_t b;
    jn_wh_okbatch_init(&b);
    jn_buf_t out;
    jn_buf_init(&out, 4096);
    assert_int_equal(jn_wh_okbatch_render(&b, 1, 2, &out), JN_EINVAL); /* empty */
    assert_int_equal(out.len, 0);
    assert_int_equal(jn_wh_okbatch_add(&b, "msg_0_7_orders", "orders", 0, 7, 204, 1.5, "ok", 2), 0);
    assert_int_equal(jn_wh_okbatch_add(&b, "msg_1_3_orders", "orders", 1, 3, 204, 4.5, "other", 5), 0);
    assert_int_equal(jn_wh_okbatch_add(&b, "msg_0_8_orders", "orders", 0, 8, 204, 3.0, NULL, 0), 0);
    assert_int_equal(b.count, 3);
    json_t *j = render(&b, 42, 1700000000123);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 42);
    assert_int_equal(json_integer_value(json_object_get(j, "time")), 1700000000123);
    assert_string_equal(json_string_value(json_object_get(j, "webhook_id")), "msg_0_7_orders");
    assert_string_equal(json_string_value(json_object_get(j, "stream")), "orders");
    assert_int_equal(json_integer_value(json_object_get(j, "partition")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "offset")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "attempt")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 204);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 3);
    assert_true(json_real_value(json_object_get(j, "latency_ms")) == 3.0);     /* mean */
    assert_true(json_real_value(json_object_get(j, "latency_ms_max")) == 4.5);
    assert_string_equal(json_string_value(json_object_get(j, "response")), "ok"); /* the first one's */
    assert_true(json_is_null(json_object_get(j, "error")));
    assert_string_equal(json_string_value(json_object_get(j, "result")), "delivered");
    assert_true(json_is_false(json_object_get(j, "manual")));
    json_t *ids = json_object_get(j, "webhook_ids");
    assert_int_equal(json_array_size(ids), 3);
    assert_string_equal(json_string_value(json_array_get(ids, 0)), "msg_0_7_orders");
    assert_string_equal(json_string_value(json_array_get(ids, 1)), "msg_1_3_orders");
    assert_string_equal(json_string_value(json_array_get(ids, 2)), "msg_0_8_orders");
    json_decref(j);

    /* a render appends and leaves the batch as it was */
    assert_int_equal(jn_buf_append_str(&out, "x"), 0);
    assert_int_equal(jn_wh_okbatch_render(&b, 1, 1, &out), 0);
    assert_int_equal(out.data[0], 'x');
    assert_int_equal(b.count, 3);

    /* reset and reuse: nothing of the previous batch remains */
    jn_wh_okbatch_reset(&b);
    assert_int_equal(b.count, 0);
    assert_int_equal(jn_wh_okbatch_add(&b, "msg_2_1_s", "s", 2, 1, 200, 2.0, "fine", 4), 0);
    j = render(&b, 43, 5);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_string_equal(json_string_value(json_object_get(j, "response")), "fine");
    assert_int_equal(json_array_size(json_object_get(j, "webhook_ids")), 1);
    json_decref(j);
    jn_buf_free(&out);
    jn_wh_okbatch_free(&b);
}

static void test_batch_limits(void **state)
{
    (void)state;
    jn_wh_okbatch_t b;
    jn_wh_okbatch_init(&b);
    assert_int_equal(jn_wh_okbatch_add(&b, "msg_0_1_s", "s", 0, 1, 204, 1, NULL, 0), 0);
    /* another status: the batch must be written first; it is unchanged */
    assert_int_equal(jn_wh_okbatch_add(&b, "msg_0_2_s", "s", 0, 2, 200, 1, NULL, 0), JN_EAGAIN);
    assert_int_equal(b.count, 1);
    /* over the caps */
    char id[JN_WH_MSGID_MAX + 2];
    memset(id, 'i', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    assert_int_equal(jn_wh_okbatch_add(&b, id, "s", 0, 2, 204, 1, NULL, 0), JN_EINVAL);
    char stream[300];
    memset(stream, 's', sizeof stream - 1);
    stream[sizeof stream - 1] = '\0';
    assert_int_equal(jn_wh_okbatch_add(&b, "msg_0_2_s", stream, 0, 2, 204, 1, NULL, 0), JN_EINVAL);
    assert_int_equal(b.count, 1);
    /* full at JN_WH_OKBATCH_MAX */
    for (uint32_t i = 1; i < JN_WH_OKBATCH_MAX; i++) {
        char mid[64];
        snprintf(mid, sizeof mid, "msg_0_%u_s", 100 + i);
        assert_int_equal(jn_wh_okbatch_add(&b, mid, "s", 0, 100 + i, 204, 1, NULL, 0), 0);
    }
    assert_int_equal(b.count, JN_WH_OKBATCH_MAX);
    assert_int_equal(jn_wh_okbatch_add(&b, "msg_0_9_s", "s", 0, 9, 204, 1, NULL, 0), JN_EAGAIN);
    json_t *j = render(&b, 1, 1);
    assert_int_equal(json_array_size(json_object_get(j, "webhook_ids")), JN_WH_OKBATCH_MAX);
    json_decref(j);
    /* a long response excerpt is cut at JN_WH_OKBATCH_TEXT_MAX */
    jn_wh_okbatch_reset(&b);
    char resp[JN_WH_OKBATCH_TEXT_MAX + 100];
    memset(resp, 'r', sizeof resp);
    assert_int_equal(jn_wh_okbatch_add(&b, "msg_0_1_s", "s", 0, 1, 204, 1, resp, sizeof resp), 0);
    j = render(&b, 1, 1);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "response"))), JN_WH_OKBATCH_TEXT_MAX);
    json_decref(j);
    /* a full output buffer: JN_ETOOBIG, nothing appended */
    jn_buf_t small;
    jn_buf_init(&small, 16);
    assert_int_equal(jn_buf_append_str(&small, "keep"), 0);
    assert_int_equal(jn_wh_okbatch_render(&b, 1, 1, &small), JN_ETOOBIG);
    assert_int_equal(small.len, 4);
    jn_buf_free(&small);
    jn_wh_okbatch_free(&b);
}

static void test_json_escaping(void **state)
{
    (void)state;
    jn_buf_t out;
    jn_buf_init(&out, 256);
    const char raw[] = "a\"b\\c\n\x01\xc3\xa9";
    assert_int_equal(jn_wh_json_str(&out, raw, sizeof raw - 1), 0);
    assert_int_equal(out.len, strlen("\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9\""));
    assert_memory_equal(out.data, "\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9\"", out.len);
    jn_buf_free(&out);

    /* quotes in a stream name and a response survive a round trip */
    jn_wh_okbatch_t b;
    jn_wh_okbatch_init(&b);
    assert_int_equal(jn_wh_okbatch_add(&b, "msg_0_1_we\"ird", "we\"ird", 0, 1, 204, 1, "{\"ok\":true}\r\n", 13), 0);
    json_t *j = render(&b, 1, 1);
    assert_string_equal(json_string_value(json_object_get(j, "stream")), "we\"ird");
    assert_string_equal(json_string_value(json_object_get(j, "response")), "{\"ok\":true}\r\n");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "webhook_ids"), 0)), "msg_0_1_we\"ird");
    json_decref(j);
    jn_wh_okbatch_free(&b);

    /* the cap holds */
    jn_buf_t tiny;
    jn_buf_init(&tiny, 4);
    assert_int_equal(jn_wh_json_str(&tiny, "abc", 3), JN_ETOOBIG);
    assert_int_equal(tiny.len, 0);
    jn_buf_free(&tiny);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_record),
        cmocka_unit_test(test_batch_limits),
        cmocka_unit_test(test_json_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
