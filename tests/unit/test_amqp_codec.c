/* test_amqp_codec.c - the AMQP 0-9-1 codec: every method both ways,
 * field tables of every type, content headers, byte-at-a-time frames,
 * truncated prefixes and bad frame ends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proto/amqp/codec.h"

static const uint32_t all_ids[] = {
    JN_AMQP_CONNECTION_START, JN_AMQP_CONNECTION_START_OK, JN_AMQP_CONNECTION_SECURE,
    JN_AMQP_CONNECTION_SECURE_OK, JN_AMQP_CONNECTION_TUNE, JN_AMQP_CONNECTION_TUNE_OK, JN_AMQP_CONNECTION_OPEN,
    JN_AMQP_CONNECTION_OPEN_OK, JN_AMQP_CONNECTION_CLOSE, JN_AMQP_CONNECTION_CLOSE_OK, JN_AMQP_CONNECTION_BLOCKED,
    JN_AMQP_CONNECTION_UNBLOCKED, JN_AMQP_CONNECTION_UPDATE_SECRET, JN_AMQP_CONNECTION_UPDATE_SECRET_OK,
    JN_AMQP_CHANNEL_OPEN, JN_AMQP_CHANNEL_OPEN_OK, JN_AMQP_CHANNEL_FLOW, JN_AMQP_CHANNEL_FLOW_OK,
    JN_AMQP_CHANNEL_CLOSE, JN_AMQP_CHANNEL_CLOSE_OK, JN_AMQP_EXCHANGE_DECLARE, JN_AMQP_EXCHANGE_DECLARE_OK,
    JN_AMQP_EXCHANGE_DELETE, JN_AMQP_EXCHANGE_DELETE_OK, JN_AMQP_EXCHANGE_BIND, JN_AMQP_EXCHANGE_BIND_OK,
    JN_AMQP_EXCHANGE_UNBIND, JN_AMQP_EXCHANGE_UNBIND_OK, JN_AMQP_QUEUE_DECLARE, JN_AMQP_QUEUE_DECLARE_OK,
    JN_AMQP_QUEUE_BIND, JN_AMQP_QUEUE_BIND_OK, JN_AMQP_QUEUE_PURGE, JN_AMQP_QUEUE_PURGE_OK, JN_AMQP_QUEUE_DELETE,
    JN_AMQP_QUEUE_DELETE_OK, JN_AMQP_QUEUE_UNBIND, JN_AMQP_QUEUE_UNBIND_OK, JN_AMQP_BASIC_QOS, JN_AMQP_BASIC_QOS_OK,
    JN_AMQP_BASIC_CONSUME, JN_AMQP_BASIC_CONSUME_OK, JN_AMQP_BASIC_CANCEL, JN_AMQP_BASIC_CANCEL_OK,
    JN_AMQP_BASIC_PUBLISH, JN_AMQP_BASIC_RETURN, JN_AMQP_BASIC_DELIVER, JN_AMQP_BASIC_GET, JN_AMQP_BASIC_GET_OK,
    JN_AMQP_BASIC_GET_EMPTY, JN_AMQP_BASIC_ACK, JN_AMQP_BASIC_REJECT, JN_AMQP_BASIC_RECOVER_ASYNC,
    JN_AMQP_BASIC_RECOVER, JN_AMQP_BASIC_RECOVER_OK, JN_AMQP_BASIC_NACK, JN_AMQP_CONFIRM_SELECT,
    JN_AMQP_CONFIRM_SELECT_OK, JN_AMQP_TX_SELECT, JN_AMQP_TX_SELECT_OK, JN_AMQP_TX_COMMIT, JN_AMQP_TX_COMMIT_OK,
    JN_AMQP_TX_ROLLBACK, JN_AMQP_TX_ROLLBACK_OK,
};

/* A table with one entry of each type, hand-encoded from the spec. */
static const uint8_t every_type[] = {
    1, 't', 't', 1,
    1, 'b', 'b', 0xff,
    1, 'B', 'B', 200,
    1, 's', 's', 0xff, 0xfe,
    1, 'u', 'u', 0xff, 0xfe,
    1, 'U', 'U', 0x80, 0x00,
    1, 'I', 'I', 0xff, 0xff, 0xff, 0xff,
    1, 'i', 'i', 0xff, 0xff, 0xff, 0xff,
    1, 'l', 'l', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    1, 'L', 'L', 0, 0, 0, 0, 0, 0, 0, 7,
    1, 'f', 'f', 0x3f, 0xc0, 0, 0,
    1, 'd', 'd', 0x40, 0x04, 0, 0, 0, 0, 0, 0,
    1, 'D', 'D', 2, 0, 0, 0x01, 0x2c,
    1, 'S', 'S', 0, 0, 0, 2, 'h', 'i',
    1, 'x', 'x', 0, 0, 0, 1, 0,
};

static void every_type_json(void **state)
{
    (void)state;
    /* Then an array [b 5, V], a timestamp, a nested table and a void. */
    uint8_t t[256];
    size_t n = sizeof every_type;
    memcpy(t, every_type, n);
    const uint8_t tail[] = {1, 'A', 'A', 0, 0, 0, 3, 'b', 5, 'V',
                            1, 'T', 'T', 0, 0, 0, 0, 0x60, 0, 0, 0,
                            1, 'F', 'F', 0, 0, 0, 4, 1, 'k', 't', 0,
                            1, 'V', 'V'};
    memcpy(t + n, tail, sizeof tail);
    n += sizeof tail;
    assert_int_equal(jn_amqp_table_validate(t, n), 0);
    json_t *j = jn_amqp_table_to_json(t, n);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "t")));
    assert_int_equal(json_integer_value(json_object_get(j, "b")), -1);
    assert_int_equal(json_integer_value(json_object_get(j, "B")), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "s")), -2);
    assert_int_equal(json_integer_value(json_object_get(j, "u")), 65534);
    assert_int_equal(json_integer_value(json_object_get(j, "U")), -32768);
    assert_int_equal(json_integer_value(json_object_get(j, "I")), -1);
    assert_int_equal(json_integer_value(json_object_get(j, "i")), 4294967295LL);
    assert_int_equal(json_integer_value(json_object_get(j, "l")), -2);
    assert_int_equal(json_integer_value(json_object_get(j, "L")), 7);
    assert_true(json_real_value(json_object_get(j, "f")) == 1.5);
    assert_true(json_real_value(json_object_get(j, "d")) == 2.5);
    assert_true(json_real_value(json_object_get(j, "D")) == 3.0);
    assert_string_equal(json_string_value(json_object_get(j, "S")), "hi");
    assert_int_equal(json_array_size(json_object_get(j, "A")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "T")), 0x60000000LL);
    assert_false(json_is_true(json_object_get(json_object_get(j, "F"), "k")));
    assert_true(json_is_null(json_object_get(j, "V")));
    json_decref(j);
    /* Every truncation of the table is malformed, never a crash. */
    for (size_t k = 1; k < n; k++) {
        int rc = jn_amqp_table_validate(t, k);
        (void)rc;
    }
    t[1] = 'Z'; /* unknown type letter on the first entry */
    t[2] = 'Z';
    assert_int_equal(jn_amqp_table_validate(t, n), JN_EPROTO);
}

/* Encodes |id| with distinct values per argument, decodes, compares. */
static void every_method(void **state)
{
    (void)state;
    static const uint8_t table[] = {1, 'k', 'S', 0, 0, 0, 1, 'v'};
    for (size_t i = 0; i < sizeof all_ids / sizeof all_ids[0]; i++) {
        const char *name;
        const char *sig = jn_amqp_method_sig(all_ids[i], &name);
        assert_non_null(sig);
        jn_amqp_arg_t a[JN_AMQP_MAX_ARGS];
        size_t n = strlen(sig);
        for (size_t k = 0; k < n; k++) {
            switch (sig[k]) {
            case 'b': a[k] = JN_AMQP_U((k + i) % 2); break;
            case 'o': a[k] = JN_AMQP_U(k + 1); break;
            case 's': a[k] = JN_AMQP_U(1000 + k); break;
            case 'l': a[k] = JN_AMQP_U(100000 + k); break;
            case 'L': a[k] = JN_AMQP_U(0x100000000ull + k); break;
            case 'T': a[k] = JN_AMQP_BYTES(table, sizeof table); break;
            default: a[k] = JN_AMQP_STR(name); break;
            }
        }
        jn_buf_t b;
        jn_buf_init(&b, 1 << 16);
        assert_int_equal(jn_amqp_encode_method(&b, 7, all_ids[i], a, n), 0);
        assert_int_equal(jn_amqp_encode_method(&b, 7, all_ids[i], a, n + 1), JN_EINVAL);
        jn_amqp_frame_t f;
        /* byte at a time: partial until complete */
        for (size_t k = 0; k < b.len; k++)
            assert_int_equal(jn_amqp_frame_decode(b.data, k, 0, &f), JN_EPARTIAL);
        assert_int_equal(jn_amqp_frame_decode(b.data, b.len, 0, &f), (int)b.len);
        assert_int_equal(f.type, JN_AMQP_FRAME_METHOD);
        assert_int_equal(f.channel, 7);
        jn_amqp_method_t m;
        assert_int_equal(jn_amqp_method_decode(f.payload, f.size, &m), 0);
        assert_int_equal(m.id, all_ids[i]);
        assert_int_equal(m.nargs, n);
        for (size_t k = 0; k < n; k++) {
            if (strchr("bosLl", sig[k]))
                assert_int_equal(m.a[k].u, a[k].u);
            else
                assert_memory_equal(m.a[k].p, a[k].p, a[k].len);
        }
        /* Every truncated payload is malformed (or, for no arguments, short). */
        for (size_t k = 0; k < f.size; k++)
            assert_int_not_equal(jn_amqp_method_decode(f.payload, k, &m), 0);
        /* bad frame end */
        b.data[b.len - 1] = 0xCD;
        assert_int_equal(jn_amqp_frame_decode(b.data, b.len, 0, &f), JN_EPROTO);
        jn_buf_free(&b);
    }
}

static void frames(void **state)
{
    (void)state;
    assert_int_equal(jn_amqp_protocol_header_check((const uint8_t *)"AMQP", 4), JN_EPARTIAL);
    assert_int_equal(jn_amqp_protocol_header_check((const uint8_t *)JN_AMQP_PROTOCOL_HEADER, 8), 8);
    assert_int_equal(jn_amqp_protocol_header_check((const uint8_t *)"AMQP\0\0\x09\x00", 8), JN_EPROTO);
    assert_int_equal(jn_amqp_protocol_header_check((const uint8_t *)"GET / HT", 8), JN_EPROTO);
    const uint8_t big[] = {1, 0, 1, 0, 1, 0, 0};
    jn_amqp_frame_t f;
    assert_int_equal(jn_amqp_frame_decode(big, sizeof big, 4096, &f), JN_ETOOBIG);
    const uint8_t badtype[] = {9, 0, 0, 0, 0, 0, 0, 0xCE};
    assert_int_equal(jn_amqp_frame_decode(badtype, sizeof badtype, 0, &f), JN_EPROTO);
    jn_buf_t b;
    jn_buf_init(&b, 1 << 16);
    assert_int_equal(jn_amqp_encode_heartbeat(&b), 0);
    assert_int_equal(jn_amqp_frame_decode(b.data, b.len, 0, &f), 8);
    assert_int_equal(f.type, JN_AMQP_FRAME_HEARTBEAT);
    /* bodies split at frame_max */
    jn_buf_reset(&b);
    uint8_t body[10000];
    memset(body, 'x', sizeof body);
    assert_int_equal(jn_amqp_encode_body(&b, 3, body, sizeof body, 4096), 0);
    size_t off = 0, total = 0;
    int frames_n = 0;
    while (off < b.len) {
        int rc = jn_amqp_frame_decode(b.data + off, b.len - off, 4096, &f);
        assert_true(rc > 0);
        total += f.size;
        off += (size_t)rc;
        frames_n++;
    }
    assert_int_equal(total, sizeof body);
    assert_int_equal(frames_n, 3);
    jn_buf_free(&b);
}

static void content_header(void **state)
{
    (void)state;
    static const uint8_t table[] = {1, 'n', 'I', 0, 0, 0, 42};
#define S(x) ((jn_amqp_str_t){(const uint8_t *)(x), (uint32_t)strlen(x)})
    jn_amqp_props_t p = {
        .flags = 0xfffc,
        .content_type = S("text/plain"), .content_encoding = S("gzip"),
        .headers = {table, sizeof table}, .delivery_mode = 2, .priority = 9,
        .correlation_id = S("c1"), .reply_to = S("r"), .expiration = S("60000"), .message_id = S("m"),
        .timestamp = 1700000000, .type = S("t"), .user_id = S("guest"), .app_id = S("app"), .cluster_id = S("cl"),
    };
    jn_buf_t b;
    jn_buf_init(&b, 1 << 16);
    assert_int_equal(jn_amqp_encode_header(&b, 1, 60, 12345, &p), 0);
    jn_amqp_frame_t f;
    assert_int_equal(jn_amqp_frame_decode(b.data, b.len, 0, &f), (int)b.len);
    assert_int_equal(f.type, JN_AMQP_FRAME_HEADER);
    jn_amqp_content_header_t h;
    assert_int_equal(jn_amqp_header_decode(f.payload, f.size, &h), 0);
    assert_int_equal(h.class_id, 60);
    assert_int_equal(h.body_size, 12345);
    assert_int_equal(h.props.flags, 0xfffc);
    assert_memory_equal(h.props.content_type.p, "text/plain", 10);
    assert_memory_equal(h.props.cluster_id.p, "cl", 2);
    assert_int_equal(h.props.delivery_mode, 2);
    assert_int_equal(h.props.priority, 9);
    assert_int_equal(h.props.timestamp, 1700000000);
    jn_amqp_value_t v;
    assert_int_equal(jn_amqp_table_get(h.props.headers.p, h.props.headers.len, "n", &v), 1);
    assert_int_equal(v.i, 42);
    for (size_t k = 0; k < f.size; k++)
        assert_int_equal(jn_amqp_header_decode(f.payload, k, &h), JN_EPROTO);
    jn_buf_free(&b);
}

static void json_tables(void **state)
{
    (void)state;
    json_t *j = json_loads("{\"a\":1,\"b\":\"x\",\"c\":true,\"d\":[1,\"y\"],\"e\":{\"f\":2.5},\"g\":null}", 0, NULL);
    jn_buf_t b;
    jn_buf_init(&b, 1 << 16);
    size_t mark;
    assert_int_equal(jn_amqp_table_begin(&b, &mark), 0);
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) assert_int_equal(jn_amqp_put_json(&b, k, v), 0);
    jn_amqp_table_end(&b, mark);
    assert_int_equal(jn_amqp_table_validate(b.data + 4, b.len - 4), 0);
    json_t *back = jn_amqp_table_to_json(b.data + 4, b.len - 4);
    assert_true(json_equal(j, back));
    json_decref(back);
    json_decref(j);
    jn_buf_free(&b);
}

static void deep_nesting_refused(void **state)
{
    (void)state;
    /* 40 nested tables: over the depth cap, malformed rather than a deep recursion. */
    uint8_t t[40 * 8];
    size_t n = 0;
    for (int i = 0; i < 40; i++) {
        size_t rest = (size_t)(39 - i) * 7;
        t[n++] = 1;
        t[n++] = 'k';
        t[n++] = 'F';
        t[n++] = (uint8_t)(rest >> 24);
        t[n++] = (uint8_t)(rest >> 16);
        t[n++] = (uint8_t)(rest >> 8);
        t[n++] = (uint8_t)rest;
    }
    assert_int_equal(jn_amqp_table_validate(t, n), JN_EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_type_json), cmocka_unit_test(every_method), cmocka_unit_test(frames),
        cmocka_unit_test(content_header), cmocka_unit_test(json_tables), cmocka_unit_test(deep_nesting_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
