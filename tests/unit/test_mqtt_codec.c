/* test_mqtt_codec.c - the MQTT 3.1.1/5.0 codec: byte-exact packets from the
 * specifications, every packet type encoded and decoded back in both
 * versions, byte-at-a-time feeding, every truncated prefix, bad remaining
 * lengths, each malformed case with its reason code, maximum packet sizes
 * both ways. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/mqtt/codec.h"

#define V4 JN_MQTT_V311
#define V5 JN_MQTT_V5

static jn_mqtt_view_t S(const char *s) { return (jn_mqtt_view_t){(const uint8_t *)s, (uint32_t)strlen(s)}; }

#define assert_view(v, s)                                                                                    \
    do {                                                                                                     \
        jn_mqtt_view_t v_ = (v);                                                                             \
        const char *s_ = (s);                                                                                \
        assert_int_equal(v_.len, strlen(s_));                                                                \
        if (v_.len)                                                                                          \
            assert_memory_equal(v_.data, s_, v_.len);                                                        \
    } while (0)

static void assert_views_equal(jn_mqtt_view_t a, jn_mqtt_view_t b)
{
    assert_int_equal(a.len, b.len);
    if (a.len)
        assert_memory_equal(a.data, b.data, a.len);
}

/* Decodes |n| bytes expecting a complete packet of exactly |n| bytes. */
static void decode_all(const uint8_t *b, size_t n, uint8_t ver, jn_mqtt_packet_t *pk)
{
    int rc = jn_mqtt_decode(b, n, ver, 0, pk);
    assert_int_equal(rc, (int)n);
    assert_int_equal(pk->len, n);
    assert_int_equal(pk->reason, 0);
}

/* Expects decoding to fail with |err| and |reason|. */
static void expect_fail_at(uint8_t ver, const void *b, size_t n, int err, uint8_t reason, const char *file, int line)
{
    jn_mqtt_packet_t pk;
    int rc = jn_mqtt_decode(b, n, ver, 0, &pk);
    _assert_int_equal(cast_to_largest_integral_type(rc), cast_to_largest_integral_type(err), file, line);
    _assert_int_equal(pk.reason, reason, file, line);
}
#define expect_fail(ver, b, n, err, reason) expect_fail_at((ver), (b), (n), (err), (reason), __FILE__, __LINE__)
#define FAIL(ver, lit, err, reason) expect_fail((ver), (lit), sizeof(lit) - 1, (err), (reason))
#define MALF(ver, lit) FAIL(ver, lit, JN_EPROTO, JN_MQTT_RC_MALFORMED)
#define PERR(ver, lit) FAIL(ver, lit, JN_EPROTO, JN_MQTT_RC_PROTOCOL_ERROR)

/* Every proper prefix of a packet is JN_EPARTIAL. */
static void check_prefixes(const uint8_t *b, size_t n, uint8_t ver)
{
    jn_mqtt_packet_t pk;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(jn_mqtt_decode(b, i, ver, 0, &pk), JN_EPARTIAL);
    assert_int_equal(jn_mqtt_decode(b, n, ver, 0, &pk), (int)n);
}

/* ---------------------------------------------------------------- */
/* Byte-exact packets                                                 */
/* ---------------------------------------------------------------- */

static void test_connect_v4_exact(void **state)
{
    (void)state;
    static const uint8_t want[] = {0x10, 0x1B, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xC2, 0x00, 0x3C, 0x00,
                                   0x03, 'a', 'b', 'c', 0x00, 0x04, 'u', 's', 'e', 'r', 0x00, 0x04, 'p', 'a', 's', 's'};
    jn_mqtt_connect_t c = {0};
    c.clean_start = true;
    c.keep_alive = 60;
    c.client_id = S("abc");
    c.has_username = c.has_password = true;
    c.username = S("user");
    c.password = S("pass");
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    assert_int_equal(jn_mqtt_encode_connect(&b, V4, &c), sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));

    jn_mqtt_packet_t pk;
    decode_all(want, sizeof(want), 0, &pk);
    assert_int_equal(pk.type, JN_MQTT_CONNECT);
    assert_int_equal(pk.version, V4);
    assert_int_equal(pk.u.connect.version, V4);
    assert_true(pk.u.connect.clean_start);
    assert_false(pk.u.connect.will);
    assert_int_equal(pk.u.connect.keep_alive, 60);
    assert_view(pk.u.connect.client_id, "abc");
    assert_view(pk.u.connect.username, "user");
    assert_view(pk.u.connect.password, "pass");
    assert_int_equal(pk.u.connect.props.present, 0);
    check_prefixes(want, sizeof(want), 0);
    jn_buf_free(&b);
}

static void test_connect_v5_exact(void **state)
{
    (void)state;
    /* Session Expiry Interval 10, Receive Maximum 20, will with delay 5. */
    static const uint8_t want[] = {0x10, 0x29, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x0E, 0x00, 0x0A,
                                   0x08, 0x11, 0x00, 0x00, 0x00, 0x0A, 0x21, 0x00, 0x14,
                                   0x00, 0x03, 'c', 'i', 'd',
                                   0x05, 0x18, 0x00, 0x00, 0x00, 0x05,
                                   0x00, 0x04, 'w', '/', 't', 'p',
                                   0x00, 0x03, 'b', 'y', 'e'};
    jn_mqtt_connect_t c = {0};
    c.clean_start = true;
    c.keep_alive = 10;
    c.client_id = S("cid");
    c.will = true;
    c.will_qos = 1;
    c.will_topic = S("w/tp");
    c.will_payload = S("bye");
    c.props.present = JN_MQTT_PBIT(JN_MQTT_PROP_SESSION_EXPIRY) | JN_MQTT_PBIT(JN_MQTT_PROP_RECEIVE_MAXIMUM);
    c.props.session_expiry = 10;
    c.props.receive_maximum = 20;
    c.will_props.present = JN_MQTT_PBIT(JN_MQTT_PROP_WILL_DELAY);
    c.will_props.will_delay = 5;
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    assert_int_equal(jn_mqtt_encode_connect(&b, V5, &c), sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));

    jn_mqtt_packet_t pk;
    decode_all(want, sizeof(want), 0, &pk);
    const jn_mqtt_connect_t *d = &pk.u.connect;
    assert_int_equal(pk.version, V5);
    assert_true(d->will);
    assert_int_equal(d->will_qos, 1);
    assert_false(d->will_retain);
    assert_true(JN_MQTT_HAS(&d->props, JN_MQTT_PROP_SESSION_EXPIRY));
    assert_int_equal(d->props.session_expiry, 10);
    assert_int_equal(d->props.receive_maximum, 20);
    assert_false(JN_MQTT_HAS(&d->props, JN_MQTT_PROP_MAXIMUM_PACKET_SIZE));
    assert_int_equal(d->will_props.present, JN_MQTT_PBIT(JN_MQTT_PROP_WILL_DELAY));
    assert_int_equal(d->will_props.will_delay, 5);
    assert_view(d->will_topic, "w/tp");
    assert_view(d->will_payload, "bye");
    check_prefixes(want, sizeof(want), 0);
    jn_buf_free(&b);
}

/* Small packets: encoded bytes, and the decoder reading them back. */
typedef struct exact {
    uint8_t ver;
    const char *bytes;
    size_t len;
} exact_t;
#define EX(ver, lit) {ver, lit, sizeof(lit) - 1}

static void test_small_packets_exact(void **state)
{
    (void)state;
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    jn_mqtt_packet_t pk;

    /* CONNACK */
    jn_mqtt_connack_t ca = {.session_present = true};
    assert_int_equal(jn_mqtt_encode_connack(&b, V4, &ca), 4);
    assert_memory_equal(b.data, "\x20\x02\x01\x00", 4);
    decode_all(b.data, 4, V4, &pk);
    assert_true(pk.u.connack.session_present);
    jn_buf_reset(&b);
    ca.session_present = false;
    ca.reason = JN_MQTT_RC_NOT_AUTHORIZED;
    assert_int_equal(jn_mqtt_encode_connack(&b, V5, &ca), 5);
    assert_memory_equal(b.data, "\x20\x03\x00\x87\x00", 5);
    decode_all(b.data, 5, V5, &pk);
    assert_int_equal(pk.u.connack.reason, 0x87);
    jn_buf_reset(&b);

    /* PUBLISH QoS 0 (3.1.1) and QoS 1 (5.0) */
    jn_mqtt_publish_t p = {.topic = S("a/b"), .payload = S("hi")};
    assert_int_equal(jn_mqtt_encode_publish(&b, V4, &p), 9);
    assert_memory_equal(b.data, "\x30\x07\x00\x03" "a/b" "hi", 9);
    decode_all(b.data, 9, V4, &pk);
    assert_view(pk.u.publish.topic, "a/b");
    assert_view(pk.u.publish.payload, "hi");
    assert_int_equal(pk.u.publish.qos, 0);
    jn_buf_reset(&b);
    p.qos = 1;
    p.retain = true;
    p.dup = true;
    p.packet_id = 10;
    assert_int_equal(jn_mqtt_encode_publish(&b, V5, &p), 12);
    assert_memory_equal(b.data, "\x3B\x0A\x00\x03" "a/b" "\x00\x0A\x00" "hi", 12);
    decode_all(b.data, 12, V5, &pk);
    assert_int_equal(pk.u.publish.qos, 1);
    assert_true(pk.u.publish.retain);
    assert_true(pk.u.publish.dup);
    assert_int_equal(pk.u.publish.packet_id, 10);
    jn_buf_reset(&b);

    /* Acks: 3.1.1, 5.0 short forms, 5.0 with a reason code. */
    jn_mqtt_ack_t a = {.packet_id = 10};
    assert_int_equal(jn_mqtt_encode_puback(&b, V4, &a), 4);
    assert_int_equal(jn_mqtt_encode_puback(&b, V5, &a), 4);
    assert_int_equal(jn_mqtt_encode_pubrel(&b, V4, &a), 4);
    a.reason = JN_MQTT_RC_NO_MATCHING_SUBSCRIBERS;
    assert_int_equal(jn_mqtt_encode_pubrec(&b, V5, &a), 5);
    a.reason = JN_MQTT_RC_PACKET_ID_NOT_FOUND;
    assert_int_equal(jn_mqtt_encode_pubcomp(&b, V5, &a), 5);
    assert_memory_equal(b.data, "\x40\x02\x00\x0A" "\x40\x02\x00\x0A" "\x62\x02\x00\x0A" "\x50\x03\x00\x0A\x10"
                                "\x70\x03\x00\x0A\x92", 21);
    decode_all(b.data + 12, 5, V5, &pk);
    assert_int_equal(pk.type, JN_MQTT_PUBREC);
    assert_int_equal(pk.u.ack.reason, 0x10);
    decode_all(b.data + 4, 4, V5, &pk);
    assert_int_equal(pk.u.ack.reason, 0);
    jn_buf_reset(&b);

    /* SUBSCRIBE / SUBACK / UNSUBSCRIBE / UNSUBACK */
    jn_mqtt_sub_t subs[2] = {{.filter = S("a/b"), .qos = 1}, {.filter = S("c/#"), .qos = 2, .no_local = true,
                                                              .retain_as_published = true, .retain_handling = 2}};
    jn_mqtt_subscribe_t s = {.packet_id = 1, .subs = subs, .count = 1};
    assert_int_equal(jn_mqtt_encode_subscribe(&b, V4, &s), 10);
    assert_memory_equal(b.data, "\x82\x08\x00\x01\x00\x03" "a/b" "\x01", 10);
    jn_buf_reset(&b);
    s.count = 2;
    assert_int_equal(jn_mqtt_encode_subscribe(&b, V5, &s), 17);
    assert_memory_equal(b.data, "\x82\x0F\x00\x01\x00\x00\x03" "a/b" "\x01\x00\x03" "c/#" "\x2E", 17);
    jn_buf_reset(&b);
    assert_int_equal(jn_mqtt_encode_unsubscribe(&b, V4, &s), 14);
    assert_memory_equal(b.data, "\xA2\x0C\x00\x01\x00\x03" "a/b" "\x00\x03" "c/#", 14);
    jn_buf_reset(&b);
    jn_mqtt_suback_t sa = {.packet_id = 1, .reasons = {(const uint8_t *)"\x01\x80", 2}};
    assert_int_equal(jn_mqtt_encode_suback(&b, V4, &sa), 6);
    assert_int_equal(jn_mqtt_encode_unsuback(&b, V4, &sa), 4);
    assert_int_equal(jn_mqtt_encode_unsuback(&b, V5, &sa), 7);
    assert_memory_equal(b.data, "\x90\x04\x00\x01\x01\x80" "\xB0\x02\x00\x01" "\xB0\x05\x00\x01\x00\x01\x80", 17);
    jn_buf_reset(&b);

    /* PINGREQ, PINGRESP, DISCONNECT, AUTH */
    jn_mqtt_reason_pkt_t r = {0};
    assert_int_equal(jn_mqtt_encode_pingreq(&b), 2);
    assert_int_equal(jn_mqtt_encode_pingresp(&b), 2);
    assert_int_equal(jn_mqtt_encode_disconnect(&b, V4, &r), 2);
    assert_int_equal(jn_mqtt_encode_disconnect(&b, V5, &r), 2);
    assert_int_equal(jn_mqtt_encode_auth(&b, V5, &r), 2);
    r.reason = JN_MQTT_RC_SESSION_TAKEN_OVER;
    assert_int_equal(jn_mqtt_encode_disconnect(&b, V5, &r), 3);
    assert_memory_equal(b.data, "\xC0\x00\xD0\x00\xE0\x00\xE0\x00\xF0\x00\xE0\x01\x8E", 13);
    decode_all(b.data + 10, 3, V5, &pk);
    assert_int_equal(pk.u.disconnect.reason, 0x8E);
    decode_all(b.data + 8, 2, V5, &pk);
    assert_int_equal(pk.type, JN_MQTT_AUTH);
    assert_int_equal(pk.u.auth.reason, 0);
    assert_int_equal(jn_mqtt_encode_auth(&b, V4, &r), JN_EINVAL);
    assert_int_equal(b.len, 13);
    jn_buf_free(&b);
}

/* The Remaining Length examples of the specifications (2.2.3 / 1.5.5). */
static void test_remaining_length_exact(void **state)
{
    (void)state;
    static const struct {
        uint32_t v;
        const char *enc;
        size_t n;
    } cases[] = {
        {0, "\x00", 1},        {127, "\x7F", 1},           {128, "\x80\x01", 2},          {16383, "\xFF\x7F", 2},
        {16384, "\x80\x80\x01", 3}, {2097151, "\xFF\xFF\x7F", 3}, {2097152, "\x80\x80\x80\x01", 4},
        {268435455, "\xFF\xFF\xFF\x7F", 4},
    };
    /* A QoS 0 PUBLISH with the one-byte topic "t": body = 3 + payload. */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].v < 3)
            continue;
        jn_mqtt_publish_t p = {.topic = S("t"), .payload = {NULL, cases[i].v - 3}};
        uint8_t hdr[16];
        int n = jn_mqtt_publish_header(hdr, sizeof(hdr), V4, &p);
        assert_int_equal(n, 1 + cases[i].n + 3);
        assert_memory_equal(hdr + 1, cases[i].enc, cases[i].n);
        /* The decoder reads the length from the header alone. */
        jn_mqtt_packet_t pk;
        assert_int_equal(jn_mqtt_decode(hdr, (size_t)n, V4, 0, &pk), JN_EPARTIAL);
        assert_int_equal(pk.len, 1 + cases[i].n + cases[i].v);
    }
    jn_mqtt_publish_t big = {.topic = S("t"), .payload = {NULL, JN_MQTT_MAX_REMAINING - 2}};
    uint8_t hdr[16];
    assert_int_equal(jn_mqtt_publish_header(hdr, sizeof(hdr), V4, &big), JN_ETOOBIG);
    assert_int_equal(jn_mqtt_publish_header(hdr, 3, V4, &(jn_mqtt_publish_t){.topic = S("t")}), JN_ETOOBIG);
}

/* ---------------------------------------------------------------- */
/* Round trips with every property                                    */
/* ---------------------------------------------------------------- */

static const jn_mqtt_user_prop_t users[2] = {{{(const uint8_t *)"k1", 2}, {(const uint8_t *)"v1", 2}},
                                             {{(const uint8_t *)"k2", 2}, {(const uint8_t *)"", 0}}};

/* Fills every property; the encoder keeps those the packet allows. */
static void full_props(jn_mqtt_props_t *p)
{
    memset(p, 0, sizeof(*p));
    for (int id = 1; id <= 0x2A; id++)
        p->present |= JN_MQTT_PBIT(id);
    p->present &= ~(JN_MQTT_PBIT(4) | JN_MQTT_PBIT(5) | JN_MQTT_PBIT(6) | JN_MQTT_PBIT(7) | JN_MQTT_PBIT(0xA) |
                    JN_MQTT_PBIT(0xC) | JN_MQTT_PBIT(0xD) | JN_MQTT_PBIT(0xE) | JN_MQTT_PBIT(0xF) |
                    JN_MQTT_PBIT(0x10) | JN_MQTT_PBIT(0x14) | JN_MQTT_PBIT(0x1B) | JN_MQTT_PBIT(0x1D) |
                    JN_MQTT_PBIT(0x1E) | JN_MQTT_PBIT(0x20));
    p->payload_format = 1;
    p->message_expiry = 3600;
    p->content_type = S("text/plain");
    p->response_topic = S("resp/1");
    p->correlation_data = S("\x01\x02");
    p->sub_id = 300;
    p->sub_id_count = 1;
    p->session_expiry = 0xFFFFFFFF;
    p->assigned_client_id = S("auto-1");
    p->server_keep_alive = 30;
    p->auth_method = S("SCRAM-SHA-256");
    p->auth_data = S("n,,n=user");
    p->request_problem_info = 1;
    p->will_delay = 7;
    p->request_response_info = 1;
    p->response_info = S("resp/");
    p->server_reference = S("other:1883");
    p->reason_string = S("because");
    p->receive_maximum = 100;
    p->topic_alias_maximum = 10;
    p->topic_alias = 3;
    p->maximum_qos = 1;
    p->retain_available = 1;
    p->user = users;
    p->user_count = 2;
    p->max_packet_size = 65536;
    p->wildcard_sub_available = 1;
    p->sub_id_available = 1;
    p->shared_sub_available = 0;
}

/* Compares the decoded properties with |want| restricted to |allowed|. */
static void check_props(const jn_mqtt_props_t *got, const jn_mqtt_props_t *want, uint64_t allowed)
{
    assert_int_equal(got->present, want->present & allowed);
    jn_mqtt_props_t g = *got;
    for (int id = 1; id < 64; id++) {
        if (!JN_MQTT_HAS(&g, id))
            continue;
        switch (id) {
        case JN_MQTT_PROP_PAYLOAD_FORMAT: assert_int_equal(g.payload_format, want->payload_format); break;
        case JN_MQTT_PROP_MESSAGE_EXPIRY: assert_int_equal(g.message_expiry, want->message_expiry); break;
        case JN_MQTT_PROP_CONTENT_TYPE: assert_views_equal(g.content_type, want->content_type); break;
        case JN_MQTT_PROP_RESPONSE_TOPIC: assert_views_equal(g.response_topic, want->response_topic); break;
        case JN_MQTT_PROP_CORRELATION_DATA: assert_views_equal(g.correlation_data, want->correlation_data); break;
        case JN_MQTT_PROP_SUB_ID: assert_int_equal(g.sub_id, want->sub_id); break;
        case JN_MQTT_PROP_SESSION_EXPIRY: assert_int_equal(g.session_expiry, want->session_expiry); break;
        case JN_MQTT_PROP_ASSIGNED_CLIENT_ID:
            assert_views_equal(g.assigned_client_id, want->assigned_client_id);
            break;
        case JN_MQTT_PROP_SERVER_KEEP_ALIVE: assert_int_equal(g.server_keep_alive, want->server_keep_alive); break;
        case JN_MQTT_PROP_AUTH_METHOD: assert_views_equal(g.auth_method, want->auth_method); break;
        case JN_MQTT_PROP_AUTH_DATA: assert_views_equal(g.auth_data, want->auth_data); break;
        case JN_MQTT_PROP_REQUEST_PROBLEM_INFO:
            assert_int_equal(g.request_problem_info, want->request_problem_info);
            break;
        case JN_MQTT_PROP_WILL_DELAY: assert_int_equal(g.will_delay, want->will_delay); break;
        case JN_MQTT_PROP_REQUEST_RESPONSE_INFO:
            assert_int_equal(g.request_response_info, want->request_response_info);
            break;
        case JN_MQTT_PROP_RESPONSE_INFO: assert_views_equal(g.response_info, want->response_info); break;
        case JN_MQTT_PROP_SERVER_REFERENCE: assert_views_equal(g.server_reference, want->server_reference); break;
        case JN_MQTT_PROP_REASON_STRING: assert_views_equal(g.reason_string, want->reason_string); break;
        case JN_MQTT_PROP_RECEIVE_MAXIMUM: assert_int_equal(g.receive_maximum, want->receive_maximum); break;
        case JN_MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
            assert_int_equal(g.topic_alias_maximum, want->topic_alias_maximum);
            break;
        case JN_MQTT_PROP_TOPIC_ALIAS: assert_int_equal(g.topic_alias, want->topic_alias); break;
        case JN_MQTT_PROP_MAXIMUM_QOS: assert_int_equal(g.maximum_qos, want->maximum_qos); break;
        case JN_MQTT_PROP_RETAIN_AVAILABLE: assert_int_equal(g.retain_available, want->retain_available); break;
        case JN_MQTT_PROP_MAXIMUM_PACKET_SIZE: assert_int_equal(g.max_packet_size, want->max_packet_size); break;
        case JN_MQTT_PROP_WILDCARD_SUB_AVAILABLE:
            assert_int_equal(g.wildcard_sub_available, want->wildcard_sub_available);
            break;
        case JN_MQTT_PROP_SUB_ID_AVAILABLE: assert_int_equal(g.sub_id_available, want->sub_id_available); break;
        case JN_MQTT_PROP_SHARED_SUB_AVAILABLE:
            assert_int_equal(g.shared_sub_available, want->shared_sub_available);
            break;
        case JN_MQTT_PROP_USER: {
            assert_int_equal(g.user_count, want->user_count);
            jn_mqtt_prop_iter_t it;
            jn_mqtt_view_t k, v;
            jn_mqtt_prop_iter_init(&it, got);
            for (uint32_t i = 0; i < want->user_count; i++) {
                assert_true(jn_mqtt_user_next(&it, &k, &v));
                assert_views_equal(k, want->user[i].name);
                assert_views_equal(v, want->user[i].value);
            }
            assert_false(jn_mqtt_user_next(&it, &k, &v));
            break;
        }
        default: fail_msg("unexpected property 0x%02x", id);
        }
    }
}

#define PB(id) JN_MQTT_PBIT(JN_MQTT_PROP_##id)
static const uint64_t A_CONNECT = PB(SESSION_EXPIRY) | PB(AUTH_METHOD) | PB(AUTH_DATA) | PB(REQUEST_PROBLEM_INFO) |
                                  PB(REQUEST_RESPONSE_INFO) | PB(RECEIVE_MAXIMUM) | PB(TOPIC_ALIAS_MAXIMUM) |
                                  PB(USER) | PB(MAXIMUM_PACKET_SIZE);
static const uint64_t A_WILL = PB(PAYLOAD_FORMAT) | PB(MESSAGE_EXPIRY) | PB(CONTENT_TYPE) | PB(RESPONSE_TOPIC) |
                               PB(CORRELATION_DATA) | PB(WILL_DELAY) | PB(USER);
static const uint64_t A_CONNACK =
    PB(SESSION_EXPIRY) | PB(ASSIGNED_CLIENT_ID) | PB(SERVER_KEEP_ALIVE) | PB(AUTH_METHOD) | PB(AUTH_DATA) |
    PB(RESPONSE_INFO) | PB(SERVER_REFERENCE) | PB(REASON_STRING) | PB(RECEIVE_MAXIMUM) | PB(TOPIC_ALIAS_MAXIMUM) |
    PB(MAXIMUM_QOS) | PB(RETAIN_AVAILABLE) | PB(USER) | PB(MAXIMUM_PACKET_SIZE) | PB(WILDCARD_SUB_AVAILABLE) |
    PB(SUB_ID_AVAILABLE) | PB(SHARED_SUB_AVAILABLE);
static const uint64_t A_PUBLISH = PB(PAYLOAD_FORMAT) | PB(MESSAGE_EXPIRY) | PB(CONTENT_TYPE) | PB(RESPONSE_TOPIC) |
                                  PB(CORRELATION_DATA) | PB(SUB_ID) | PB(TOPIC_ALIAS) | PB(USER);
static const uint64_t A_ACK = PB(REASON_STRING) | PB(USER);
static const uint64_t A_DISCONNECT = PB(SESSION_EXPIRY) | PB(SERVER_REFERENCE) | PB(REASON_STRING) | PB(USER);
static const uint64_t A_AUTH = PB(AUTH_METHOD) | PB(AUTH_DATA) | PB(REASON_STRING) | PB(USER);

/* Decodes the one packet in |b| and re-encodes it through |reenc|: the
 * bytes must be identical (the encoder writes properties in a fixed order,
 * and what it decoded came from the same encoder). */
static void decode_reencode(jn_buf_t *b, uint8_t ver, jn_mqtt_packet_t *pk)
{
    decode_all(b->data, b->len, ver, pk);
    check_prefixes(b->data, b->len, ver);
    ver = pk->version; /* a CONNECT read with version 0 carries its own */
    jn_buf_t r;
    jn_buf_init(&r, 1 << 20);
    int n;
    switch (pk->type) {
    case JN_MQTT_CONNECT: n = jn_mqtt_encode_connect(&r, ver, &pk->u.connect); break;
    case JN_MQTT_CONNACK: n = jn_mqtt_encode_connack(&r, ver, &pk->u.connack); break;
    case JN_MQTT_PUBLISH: n = jn_mqtt_encode_publish(&r, ver, &pk->u.publish); break;
    case JN_MQTT_PUBACK:
    case JN_MQTT_PUBREC:
    case JN_MQTT_PUBREL:
    case JN_MQTT_PUBCOMP: n = jn_mqtt_encode_ack(&r, ver, pk->type, &pk->u.ack); break;
    case JN_MQTT_SUBSCRIBE: n = jn_mqtt_encode_subscribe(&r, ver, &pk->u.subscribe); break;
    case JN_MQTT_UNSUBSCRIBE: n = jn_mqtt_encode_unsubscribe(&r, ver, &pk->u.subscribe); break;
    case JN_MQTT_SUBACK: n = jn_mqtt_encode_suback(&r, ver, &pk->u.suback); break;
    case JN_MQTT_UNSUBACK: n = jn_mqtt_encode_unsuback(&r, ver, &pk->u.suback); break;
    case JN_MQTT_DISCONNECT: n = jn_mqtt_encode_disconnect(&r, ver, &pk->u.disconnect); break;
    case JN_MQTT_AUTH: n = jn_mqtt_encode_auth(&r, ver, &pk->u.auth); break;
    default: n = jn_mqtt_encode_pingreq(&r); break;
    }
    assert_int_equal(n, (int)b->len);
    assert_memory_equal(r.data, b->data, b->len);
    jn_buf_free(&r);
}

static void test_roundtrip_all(void **state)
{
    (void)state;
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    jn_mqtt_packet_t pk;
    jn_mqtt_props_t full;
    full_props(&full);
    full.sub_id_count = 0; /* the single sub_id; arrays are tested below */

    for (uint8_t ver = V4; ver <= V5; ver++) {
        uint64_t none = 0;
        bool v5 = ver == V5;
        /* CONNECT with will, user name, password */
        jn_mqtt_connect_t c = {.clean_start = false, .will = true, .will_qos = 2, .will_retain = true,
                               .has_username = true, .has_password = true, .keep_alive = 65535};
        c.client_id = S("client-\xC3\xA9");
        c.will_topic = S("lwt/x");
        c.will_payload = (jn_mqtt_view_t){(const uint8_t *)"\x00\xFF", 2};
        c.username = S("u");
        c.password = (jn_mqtt_view_t){(const uint8_t *)"\x00", 1};
        c.props = full;
        c.will_props = full;
        jn_buf_reset(&b);
        assert_true(jn_mqtt_encode_connect(&b, ver, &c) > 0);
        decode_reencode(&b, 0, &pk);
        const jn_mqtt_connect_t *dc = &pk.u.connect;
        assert_int_equal(dc->version, ver);
        assert_false(dc->clean_start);
        assert_true(dc->will && dc->will_retain && dc->has_username && dc->has_password);
        assert_int_equal(dc->will_qos, 2);
        assert_int_equal(dc->keep_alive, 65535);
        assert_views_equal(dc->client_id, c.client_id);
        assert_views_equal(dc->will_topic, c.will_topic);
        assert_views_equal(dc->will_payload, c.will_payload);
        assert_views_equal(dc->username, c.username);
        assert_views_equal(dc->password, c.password);
        check_props(&dc->props, &full, v5 ? A_CONNECT : none);
        check_props(&dc->will_props, &full, v5 ? A_WILL : none);

        /* CONNACK */
        jn_mqtt_connack_t ca = {.session_present = true, .reason = 0, .props = full};
        jn_buf_reset(&b);
        assert_true(jn_mqtt_encode_connack(&b, ver, &ca) > 0);
        decode_reencode(&b, ver, &pk);
        assert_true(pk.u.connack.session_present);
        check_props(&pk.u.connack.props, &full, v5 ? A_CONNACK : none);

        /* PUBLISH at each QoS */
        for (uint8_t q = 0; q <= 2; q++) {
            jn_mqtt_publish_t p = {.qos = q, .retain = q == 1, .dup = q == 2, .packet_id = q ? 65535 : 0,
                                   .topic = S("sensors/kitchen/temp/\xE2\x82\xAC"), .payload = S("21.5"),
                                   .props = full};
            jn_buf_reset(&b);
            assert_true(jn_mqtt_encode_publish(&b, ver, &p) > 0);
            decode_reencode(&b, ver, &pk);
            const jn_mqtt_publish_t *dp = &pk.u.publish;
            assert_int_equal(dp->qos, q);
            assert_int_equal(dp->retain, q == 1);
            assert_int_equal(dp->dup, q == 2);
            assert_int_equal(dp->packet_id, p.packet_id);
            assert_views_equal(dp->topic, p.topic);
            assert_views_equal(dp->payload, p.payload);
            check_props(&dp->props, &full, v5 ? A_PUBLISH : none);
        }

        /* PUBACK, PUBREC, PUBREL, PUBCOMP */
        for (uint8_t t = JN_MQTT_PUBACK; t <= JN_MQTT_PUBCOMP; t++) {
            jn_mqtt_ack_t a = {.packet_id = 7, .reason = v5 && t <= JN_MQTT_PUBREC ? 0x97 : 0, .props = full};
            jn_buf_reset(&b);
            assert_true(jn_mqtt_encode_ack(&b, ver, t, &a) > 0);
            decode_reencode(&b, ver, &pk);
            assert_int_equal(pk.type, t);
            assert_int_equal(pk.flags, t == JN_MQTT_PUBREL ? 2 : 0);
            assert_int_equal(pk.u.ack.packet_id, 7);
            assert_int_equal(pk.u.ack.reason, a.reason);
            check_props(&pk.u.ack.props, &full, v5 ? A_ACK : none);
        }

        /* SUBSCRIBE and UNSUBSCRIBE, iterated */
        jn_mqtt_sub_t subs[3] = {
            {.filter = S("a/+/c"), .qos = 0},
            {.filter = S("#"), .qos = 1, .no_local = true, .retain_handling = 1},
            {.filter = S("$share/g/x"), .qos = 2, .retain_as_published = true, .retain_handling = 2},
        };
        for (int unsub = 0; unsub <= 1; unsub++) {
            jn_mqtt_subscribe_t s = {.packet_id = 99, .count = 3, .subs = subs, .props = full};
            jn_buf_reset(&b);
            assert_true((unsub ? jn_mqtt_encode_unsubscribe(&b, ver, &s) : jn_mqtt_encode_subscribe(&b, ver, &s)) > 0);
            decode_reencode(&b, ver, &pk);
            const jn_mqtt_subscribe_t *ds = &pk.u.subscribe;
            assert_int_equal(ds->unsubscribe, unsub);
            assert_int_equal(ds->packet_id, 99);
            assert_int_equal(ds->count, 3);
            check_props(&ds->props, &full, v5 ? (unsub ? PB(USER) : PB(SUB_ID) | PB(USER)) : none);
            jn_mqtt_sub_iter_t it;
            jn_mqtt_sub_t e;
            jn_mqtt_sub_iter_init(&it, ds);
            for (int i = 0; i < 3; i++) {
                assert_true(jn_mqtt_sub_next(&it, &e));
                assert_views_equal(e.filter, subs[i].filter);
                if (!unsub) {
                    assert_int_equal(e.qos, subs[i].qos);
                    assert_int_equal(e.no_local, v5 && subs[i].no_local);
                    assert_int_equal(e.retain_as_published, v5 && subs[i].retain_as_published);
                    assert_int_equal(e.retain_handling, v5 ? subs[i].retain_handling : 0);
                }
            }
            assert_false(jn_mqtt_sub_next(&it, &e));
        }

        /* SUBACK and UNSUBACK */
        for (int unsub = 0; unsub <= 1; unsub++) {
            jn_mqtt_suback_t sa = {.packet_id = 99, .reasons = {(const uint8_t *)"\x00\x80\x02", 3}, .props = full};
            if (unsub)
                sa.reasons = (jn_mqtt_view_t){(const uint8_t *)"\x00\x11\x87", 3};
            jn_buf_reset(&b);
            assert_true((unsub ? jn_mqtt_encode_unsuback(&b, ver, &sa) : jn_mqtt_encode_suback(&b, ver, &sa)) > 0);
            decode_reencode(&b, ver, &pk);
            assert_int_equal(pk.u.suback.packet_id, 99);
            if (unsub && !v5)
                assert_int_equal(pk.u.suback.reasons.len, 0);
            else
                assert_views_equal(pk.u.suback.reasons, sa.reasons);
            check_props(&pk.u.suback.props, &full, v5 ? A_ACK : none);
        }

        /* DISCONNECT, AUTH, PINGs */
        jn_mqtt_reason_pkt_t d = {.reason = v5 ? 0x04 : 0, .props = full};
        jn_buf_reset(&b);
        assert_true(jn_mqtt_encode_disconnect(&b, ver, &d) > 0);
        decode_reencode(&b, ver, &pk);
        assert_int_equal(pk.u.disconnect.reason, d.reason);
        check_props(&pk.u.disconnect.props, &full, v5 ? A_DISCONNECT : none);
        if (v5) {
            d.reason = JN_MQTT_RC_CONTINUE_AUTH;
            jn_buf_reset(&b);
            assert_true(jn_mqtt_encode_auth(&b, ver, &d) > 0);
            decode_reencode(&b, ver, &pk);
            assert_int_equal(pk.u.auth.reason, 0x18);
            check_props(&pk.u.auth.props, &full, A_AUTH);
        }
        jn_buf_reset(&b);
        assert_int_equal(jn_mqtt_encode_pingreq(&b), 2);
        decode_all(b.data, 2, ver, &pk);
        assert_int_equal(pk.type, JN_MQTT_PINGREQ);
        jn_buf_reset(&b);
        assert_int_equal(jn_mqtt_encode_pingresp(&b), 2);
        decode_all(b.data, 2, ver, &pk);
        assert_int_equal(pk.type, JN_MQTT_PINGRESP);
    }
    jn_buf_free(&b);
}

/* Several Subscription Identifiers in a PUBLISH (server to client), and
 * user properties re-encoded from the raw bytes of a decoded packet. */
static void test_sub_ids_and_user_props(void **state)
{
    (void)state;
    static const uint32_t ids[3] = {1, 128, JN_MQTT_MAX_SUB_ID};
    jn_mqtt_publish_t p = {.topic = S("t"), .payload = S("x")};
    p.props.sub_ids = ids;
    p.props.sub_id_count = 3;
    p.props.present = JN_MQTT_PBIT(JN_MQTT_PROP_SUB_ID);
    p.props.user = users;
    p.props.user_count = 2;
    jn_buf_t b, r;
    jn_buf_init(&b, 1 << 16);
    jn_buf_init(&r, 1 << 16);
    assert_true(jn_mqtt_encode_publish(&b, V5, &p) > 0);
    jn_mqtt_packet_t pk;
    decode_all(b.data, b.len, V5, &pk);
    assert_int_equal(pk.u.publish.props.sub_id_count, 3);
    assert_int_equal(pk.u.publish.props.sub_id, 1);
    assert_int_equal(pk.u.publish.props.user_count, 2);
    jn_mqtt_prop_iter_t it;
    jn_mqtt_prop_t pr;
    int n = 0;
    jn_mqtt_prop_iter_init(&it, &pk.u.publish.props);
    while (jn_mqtt_prop_next(&it, &pr))
        if (pr.id == JN_MQTT_PROP_SUB_ID)
            assert_int_equal(pr.num, ids[n++]);
    assert_int_equal(n, 3);
    /* Decoded properties re-encode losslessly. */
    assert_int_equal(jn_mqtt_encode_publish(&r, V5, &pk.u.publish), (int)b.len);
    assert_memory_equal(r.data, b.data, b.len);
    /* A SUBSCRIBE may carry only one. */
    jn_mqtt_sub_t e = {.filter = S("t")};
    jn_mqtt_subscribe_t s = {.packet_id = 1, .subs = &e, .count = 1, .props = p.props};
    assert_int_equal(jn_mqtt_encode_subscribe(&r, V5, &s), JN_EINVAL);
    /* Subscription Identifier 0 cannot be encoded. */
    static const uint32_t zero[1] = {0};
    p.props.sub_ids = zero;
    p.props.sub_id_count = 1;
    assert_int_equal(jn_mqtt_encode_publish(&r, V5, &p), JN_EINVAL);
    jn_buf_free(&b);
    jn_buf_free(&r);
}

/* ---------------------------------------------------------------- */
/* Streams, prefixes, lengths                                         */
/* ---------------------------------------------------------------- */

static void test_byte_at_a_time(void **state)
{
    (void)state;
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    jn_mqtt_connect_t c = {.clean_start = true, .client_id = S("x"), .keep_alive = 5};
    assert_true(jn_mqtt_encode_connect(&b, V5, &c) > 0);
    /* A PUBLISH with a two-byte remaining length. */
    static uint8_t payload[300];
    memset(payload, 'p', sizeof(payload));
    jn_mqtt_publish_t p = {.qos = 1, .packet_id = 1, .topic = S("a"), .payload = {payload, sizeof(payload)}};
    assert_true(jn_mqtt_encode_publish(&b, V5, &p) > 0);
    assert_true(jn_mqtt_encode_pingreq(&b) > 0);
    jn_mqtt_subscribe_t s = {.packet_id = 2, .count = 1, .subs = &(jn_mqtt_sub_t){.filter = S("#")}};
    assert_true(jn_mqtt_encode_subscribe(&b, V5, &s) > 0);
    jn_mqtt_reason_pkt_t d = {0};
    assert_true(jn_mqtt_encode_disconnect(&b, V5, &d) > 0);

    static const uint8_t types[] = {JN_MQTT_CONNECT, JN_MQTT_PUBLISH, JN_MQTT_PINGREQ, JN_MQTT_SUBSCRIBE,
                                    JN_MQTT_DISCONNECT};
    size_t off = 0, have = 0;
    unsigned got = 0;
    uint8_t ver = 0;
    /* The receiver sees one more byte each time. */
    while (off < b.len) {
        have++;
        jn_mqtt_packet_t pk;
        int rc = jn_mqtt_decode(b.data + off, have - off, ver, 0, &pk);
        if (rc == JN_EPARTIAL)
            continue;
        assert_true(rc > 0);
        assert_int_equal(off + (size_t)rc, have);
        assert_int_equal(pk.type, types[got]);
        if (pk.type == JN_MQTT_CONNECT)
            ver = pk.u.connect.version;
        if (pk.type == JN_MQTT_PUBLISH)
            assert_int_equal(pk.u.publish.payload.len, sizeof(payload));
        got++;
        off = have;
    }
    assert_int_equal(got, 5);
    jn_buf_free(&b);
}

static void test_bad_remaining_length(void **state)
{
    (void)state;
    /* Non-minimal encodings. */
    MALF(V4, "\xC0\x80\x00");
    MALF(V4, "\x30\x80\x80\x00");
    MALF(V5, "\x30\xFF\x80\x80\x00");
    /* Five bytes. */
    MALF(V4, "\x30\xFF\xFF\xFF\xFF\x01");
    MALF(V4, "\x30\x80\x80\x80\x80");
    /* Partial lengths stay partial. */
    jn_mqtt_packet_t pk;
    assert_int_equal(jn_mqtt_decode((const uint8_t *)"\x30\xFF\xFF\xFF", 4, V4, 0, &pk), JN_EPARTIAL);
    assert_int_equal(jn_mqtt_decode((const uint8_t *)"\x30", 1, V4, 0, &pk), JN_EPARTIAL);
    assert_int_equal(jn_mqtt_decode((const uint8_t *)"", 0, V4, 0, &pk), JN_EPARTIAL);
    /* A length that does not match the contents. */
    MALF(V4, "\x40\x03\x00\x01\x00");                 /* PUBACK 3.1.1 is exactly 2 */
    MALF(V4, "\x30\x02\x00\x03");                     /* topic runs past the packet */
    MALF(V4, "\x10\x0B\x00\x04MQTT\x04\x02\x00\x3C\x00"); /* client id cut off */
    MALF(V4, "\xC0\x01\x00");
    MALF(V4, "\xD0\x01\x00");
    MALF(V4, "\xE0\x01\x00");
    MALF(V5, "\x20\x01\x00");
    MALF(V5, "\x20\x04\x00\x00\x02\x00");              /* property length past the end */
    MALF(V4, "\x90\x01\x00");                          /* packet id cut */
}

static void test_max_packet_size(void **state)
{
    (void)state;
    jn_mqtt_packet_t pk;
    /* Only the fixed header has arrived: 1 + 2 + 16383 bytes announced. */
    int rc = jn_mqtt_decode((const uint8_t *)"\x30\xFF\x7F", 3, V5, 1000, &pk);
    assert_int_equal(rc, JN_ETOOBIG);
    assert_int_equal(pk.reason, JN_MQTT_RC_PACKET_TOO_LARGE);
    assert_int_equal(pk.len, 16386);
    assert_int_equal(pk.type, JN_MQTT_PUBLISH);
    /* The largest possible announcement. */
    rc = jn_mqtt_decode((const uint8_t *)"\x30\xFF\xFF\xFF\x7F", 5, V4, 1u << 20, &pk);
    assert_int_equal(rc, JN_ETOOBIG);
    assert_int_equal(pk.len, JN_MQTT_MAX_PACKET);
    /* Exactly at the limit is fine. */
    rc = jn_mqtt_decode((const uint8_t *)"\x30\x03\x00\x01t", 5, V4, 5, &pk);
    assert_int_equal(rc, 5);
    rc = jn_mqtt_decode((const uint8_t *)"\x30\x03\x00\x01t", 5, V4, 4, &pk);
    assert_int_equal(rc, JN_ETOOBIG);
}

/* The encoder leaves out Reason String, then User Properties, to fit the
 * peer's Maximum Packet Size; a PUBLISH cannot shrink. */
static void test_encode_limit(void **state)
{
    (void)state;
    jn_buf_t b;
    jn_buf_init(&b, 1 << 16);
    char reason[200];
    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = 0;
    jn_mqtt_ack_t a = {.packet_id = 5, .reason = JN_MQTT_RC_NOT_AUTHORIZED};
    a.props.present = JN_MQTT_PBIT(JN_MQTT_PROP_REASON_STRING);
    a.props.reason_string = S(reason);
    a.props.user = users;
    a.props.user_count = 2;
    int full = jn_mqtt_encode_puback(&b, V5, &a);
    assert_true(full > 200);
    jn_mqtt_packet_t pk;
    decode_all(b.data, b.len, V5, &pk);
    assert_true(JN_MQTT_HAS(&pk.u.ack.props, JN_MQTT_PROP_REASON_STRING));

    jn_buf_reset(&b);
    a.props.limit = 100; /* room for the user properties only */
    int n = jn_mqtt_encode_puback(&b, V5, &a);
    assert_true(n > 5 && n <= 100);
    decode_all(b.data, b.len, V5, &pk);
    assert_false(JN_MQTT_HAS(&pk.u.ack.props, JN_MQTT_PROP_REASON_STRING));
    assert_int_equal(pk.u.ack.props.user_count, 2);
    assert_int_equal(pk.u.ack.reason, JN_MQTT_RC_NOT_AUTHORIZED);

    jn_buf_reset(&b);
    a.props.limit = 8; /* nothing optional fits */
    assert_int_equal(jn_mqtt_encode_puback(&b, V5, &a), 5);
    assert_memory_equal(b.data, "\x40\x03\x00\x05\x87", 5);

    jn_buf_reset(&b);
    a.props.limit = 4; /* not even the bare packet */
    assert_int_equal(jn_mqtt_encode_puback(&b, V5, &a), JN_ETOOBIG);
    assert_int_equal(b.len, 0);

    jn_mqtt_reason_pkt_t d = {.reason = JN_MQTT_RC_SERVER_SHUTTING_DOWN, .props = a.props};
    d.props.limit = 50;
    assert_true(jn_mqtt_encode_disconnect(&b, V5, &d) > 0);
    decode_all(b.data, b.len, V5, &pk);
    assert_false(JN_MQTT_HAS(&pk.u.disconnect.props, JN_MQTT_PROP_REASON_STRING));
    assert_int_equal(pk.u.disconnect.props.user_count, 2);

    jn_buf_reset(&b);
    jn_mqtt_publish_t p = {.topic = S("t"), .payload = S(reason)};
    p.props.limit = 100;
    assert_int_equal(jn_mqtt_encode_publish(&b, V5, &p), JN_ETOOBIG);
    p.props.limit = 205; /* 1 + 2 + 2 + 1 + 1 + 199 = 206 */
    assert_int_equal(jn_mqtt_encode_publish(&b, V5, &p), JN_ETOOBIG);
    p.props.limit = 206;
    assert_int_equal(jn_mqtt_encode_publish(&b, V5, &p), 206);
    jn_buf_free(&b);
}

static void test_encode_errors(void **state)
{
    (void)state;
    jn_buf_t b;
    jn_buf_init(&b, 8);
    jn_mqtt_publish_t p = {.topic = S("topic"), .payload = S("payload"), .qos = 3, .packet_id = 1};
    assert_int_equal(jn_mqtt_encode_publish(&b, V4, &p), JN_EINVAL);
    p.qos = 1;
    p.packet_id = 0;
    assert_int_equal(jn_mqtt_encode_publish(&b, V4, &p), JN_EINVAL);
    p.packet_id = 1;
    assert_int_equal(jn_mqtt_encode_publish(&b, 3, &p), JN_EINVAL);
    assert_int_equal(jn_mqtt_encode_publish(&b, V4, &p), JN_ETOOBIG); /* past the buffer's cap */
    assert_int_equal(b.len, 0);
    assert_int_equal(jn_mqtt_encode_puback(&b, V4, &(jn_mqtt_ack_t){.packet_id = 0}), JN_EINVAL);
    jn_mqtt_subscribe_t s = {.packet_id = 1, .count = 0, .subs = NULL};
    assert_int_equal(jn_mqtt_encode_subscribe(&b, V4, &s), JN_EINVAL);
    jn_mqtt_connect_t c = {.has_password = true, .password = S("x")};
    assert_int_equal(jn_mqtt_encode_connect(&b, V4, &c), JN_EINVAL);
    static char big[70000];
    memset(big, 'a', sizeof(big) - 1);
    jn_buf_t bb;
    jn_buf_init(&bb, 1 << 20);
    p.topic = S(big);
    assert_int_equal(jn_mqtt_encode_publish(&bb, V4, &p), JN_EINVAL);
    jn_mqtt_suback_t sa = {.packet_id = 1};
    assert_int_equal(jn_mqtt_encode_suback(&bb, V4, &sa), JN_EINVAL);
    assert_int_equal(bb.len, 0);
    jn_buf_free(&b);
    jn_buf_free(&bb);
}

/* ---------------------------------------------------------------- */
/* Malformed packets and their reason codes                           */
/* ---------------------------------------------------------------- */

static void test_fixed_header_rules(void **state)
{
    (void)state;
    MALF(V4, "\x00\x00");                 /* type 0 is reserved */
    MALF(V4, "\xF0\x00");                 /* AUTH does not exist in 3.1.1 */
    MALF(V4, "\x60\x02\x00\x01");         /* PUBREL flags must be 0010 */
    MALF(V4, "\x80\x08\x00\x01\x00\x03" "a/b" "\x00"); /* SUBSCRIBE flags */
    MALF(V4, "\xA0\x07\x00\x01\x00\x03" "a/b");     /* UNSUBSCRIBE flags */
    MALF(V4, "\x41\x02\x00\x01");         /* PUBACK flags */
    MALF(V4, "\xC1\x00");
    MALF(V5, "\xE8\x00");
    MALF(V4, "\x36\x05\x00\x03" "a/b");   /* QoS 3 */
    MALF(V4, "\x36");                     /* ... seen from the first byte */
    PERR(V4, "\x38\x05\x00\x03" "a/b");   /* DUP on QoS 0 */
    /* Before CONNECT only CONNECT. */
    PERR(0, "\x30\x05\x00\x03" "a/b");
    PERR(0, "\xC0\x00");
    PERR(0, "\xC0");
    MALF(0, "\x00");
}

static void test_connect_rules(void **state)
{
    (void)state;
    /* A valid 3.1.1 CONNECT with flags byte at offset 9. */
    static const char base[] = "\x10\x0D\x00\x04MQTT\x04\x02\x00\x3C\x00\x01x";
    char b[sizeof(base)];
#define WITH_FLAGS(f)                                                                                         \
    (memcpy(b, base, sizeof(base)), b[9] = (char)(f), (const char *)b)
    expect_fail(0, WITH_FLAGS(0x03), sizeof(base) - 1, JN_EPROTO, JN_MQTT_RC_MALFORMED); /* reserved bit */
    expect_fail(0, WITH_FLAGS(0x0A), sizeof(base) - 1, JN_EPROTO, JN_MQTT_RC_MALFORMED); /* will QoS, no will */
    expect_fail(0, WITH_FLAGS(0x22), sizeof(base) - 1, JN_EPROTO, JN_MQTT_RC_MALFORMED); /* will retain, no will */
    expect_fail(0, WITH_FLAGS(0x1E), sizeof(base) - 1, JN_EPROTO, JN_MQTT_RC_MALFORMED); /* will QoS 3 */
    expect_fail(0, WITH_FLAGS(0x42), sizeof(base) - 1, JN_EPROTO, JN_MQTT_RC_MALFORMED); /* password, no user */
    /* The same password-only CONNECT is fine in 5.0. */
    jn_mqtt_packet_t pk;
    static const char v5pw[] = "\x10\x12\x00\x04MQTT\x05\x42\x00\x3C\x00\x00\x01x\x00\x02pw";
    decode_all((const uint8_t *)v5pw, sizeof(v5pw) - 1, 0, &pk);
    assert_view(pk.u.connect.password, "pw");
    assert_false(pk.u.connect.has_username);
    /* Unsupported protocols: 3.1 (MQIsdp), level 6, a wrong name. */
    jn_mqtt_packet_t p2;
    static const char mqisdp[] = "\x10\x0F\x00\x06MQIsdp\x03\x02\x00\x3C\x00\x01x";
    assert_int_equal(jn_mqtt_decode((const uint8_t *)mqisdp, sizeof(mqisdp) - 1, 0, 0, &p2), JN_EUNSUPPORTED);
    assert_int_equal(p2.reason, JN_MQTT_RC_UNSUPPORTED_VERSION);
    assert_int_equal(p2.u.connect.version, 3);
    FAIL(0, "\x10\x0D\x00\x04MQTT\x06\x02\x00\x3C\x00\x01x", JN_EUNSUPPORTED, 0x84);
    FAIL(0, "\x10\x0D\x00\x04MQTX\x04\x02\x00\x3C\x00\x01x", JN_EUNSUPPORTED, 0x84);
    /* Trailing bytes after the last field. */
    MALF(0, "\x10\x0E\x00\x04MQTT\x04\x02\x00\x3C\x00\x01xy");
    /* Client id that is not UTF-8, contains U+0000. */
    MALF(0, "\x10\x0D\x00\x04MQTT\x04\x02\x00\x3C\x00\x01\xFF");
    MALF(0, "\x10\x0D\x00\x04MQTT\x04\x02\x00\x3C\x00\x01\x00");
    /* Will topic with a wildcard, empty will topic. */
    FAIL(0, "\x10\x13\x00\x04MQTT\x04\x06\x00\x3C\x00\x01x\x00\x01#\x00\x01p", JN_EPROTO, 0x90);
    FAIL(0, "\x10\x12\x00\x04MQTT\x04\x06\x00\x3C\x00\x01x\x00\x00\x00\x01p", JN_EPROTO, 0x90);
    /* The version is reported with a bad 5.0 CONNECT (for its CONNACK). */
    jn_mqtt_packet_t p3;
    static const char dup[] = "\x10\x17\x00\x04MQTT\x05\x02\x00\x3C\x0A\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02"
                              "\x00\x01x";
    assert_int_equal(jn_mqtt_decode((const uint8_t *)dup, sizeof(dup) - 1, 0, 0, &p3), JN_EPROTO);
    assert_int_equal(p3.reason, JN_MQTT_RC_PROTOCOL_ERROR);
    assert_int_equal(p3.type, JN_MQTT_CONNECT);
    assert_int_equal(p3.version, V5);
#undef WITH_FLAGS
}

static void test_property_rules(void **state)
{
    (void)state;
    /* PUBACK 5.0 with reason 0 and a property block: 40 len 00 01 00 plen props */
    PERR(V5, "\x40\x0C\x00\x01\x00\x08\x1F\x00\x01r\x1F\x00\x01s");  /* duplicate Reason String */
    MALF(V5, "\x40\x07\x00\x01\x00\x03\x23\x00\x01");                /* Topic Alias not allowed in PUBACK */
    MALF(V5, "\x40\x06\x00\x01\x00\x02\x7F\x00");                    /* unknown identifier */
    MALF(V5, "\x40\x07\x00\x01\x00\x03\x80\x1F\x00");                 /* identifier with continuation bit */
    MALF(V5, "\x40\x07\x00\x01\x00\x03\x1F\x00\x05");                /* string runs past the block */
    MALF(V5, "\x40\x09\x00\x01\x00\x05\x26\x00\x01k\x00");           /* user property without value */
    MALF(V5, "\x40\x0B\x00\x01\x00\x07\x26\x00\x01k\x00\x01\xC0");   /* user value not UTF-8 */
    MALF(V5, "\x40\x0B\x00\x01\x00\x07\x26\x00\x01\x00\x00\x01v");   /* user name with U+0000 */
    /* Values the spec forbids (CONNACK: 20 len ackf rc plen props). */
    PERR(V5, "\x20\x06\x00\x00\x03\x21\x00\x00");                    /* Receive Maximum 0 */
    PERR(V5, "\x20\x08\x00\x00\x05\x27\x00\x00\x00\x00");            /* Maximum Packet Size 0 */
    PERR(V5, "\x20\x05\x00\x00\x02\x24\x02");                        /* Maximum QoS 2 */
    PERR(V5, "\x20\x05\x00\x00\x02\x25\x05");                        /* Retain Available 5 */
    PERR(V5, "\x20\x06\x00\x00\x03\x16\x00\x00");                    /* Auth Data without Method */
    PERR(V5, "\x20\x05\x00\x01\x02\x24\x01");                        /* ... not that one: session present */
    /* PUBLISH 5.0: 30 len 00 01 t plen props payload */
    FAIL(V5, "\x30\x07\x00\x01t\x03\x23\x00\x00", JN_EPROTO, 0x94);  /* Topic Alias 0 */
    PERR(V5, "\x30\x06\x00\x01t\x02\x0B\x00");                       /* Subscription Identifier 0 */
    PERR(V5, "\x30\x06\x00\x01t\x02\x01\x02");                       /* Payload Format 2 */
    MALF(V5, "\x30\x07\x00\x01t\x03\x0B\x80\x00");                   /* overlong VBI value */
    MALF(V5, "\x30\x05\x00\x01t\x81\x00");                           /* overlong property length */
    PERR(V5, "\x30\x03\x00\x00\x00");                                /* empty topic without alias */
    jn_mqtt_packet_t pk;
    decode_all((const uint8_t *)"\x30\x06\x00\x00\x03\x23\x00\x05", 8, V5, &pk); /* ... with one */
    assert_int_equal(pk.u.publish.props.topic_alias, 5);
    decode_all((const uint8_t *)"\x30\x08\x00\x01t\x04\x0B\x01\x0B\x02", 10, V5, &pk); /* two sub ids */
    assert_int_equal(pk.u.publish.props.sub_id_count, 2);
    /* SUBSCRIBE: one Subscription Identifier at most. */
    PERR(V5, "\x82\x0B\x00\x01\x04\x0B\x01\x0B\x02\x00\x01t\x00");
    /* CONNECT: property of the will in the CONNECT block. */
    MALF(0, "\x10\x13\x00\x04MQTT\x05\x02\x00\x3C\x05\x18\x00\x00\x00\x01\x00\x01x");
    PERR(0, "\x10\x10\x00\x04MQTT\x05\x02\x00\x3C\x02\x17\x02\x00\x01x"); /* Request Problem Info 2 */
}

static void test_publish_rules(void **state)
{
    (void)state;
    FAIL(V4, "\x30\x05\x00\x03" "a/+", JN_EPROTO, 0x90);
    FAIL(V4, "\x30\x05\x00\x03" "a/#", JN_EPROTO, 0x90);
    FAIL(V5, "\x30\x0E\x00\x0B" "aaaaaaaaaa+" "\x00", JN_EPROTO, 0x90); /* past the 8-byte fast path */
    /* Long topics: the 16- and 8-byte scans, the overlapping tail. */
    FAIL(V4, "\x30\x16\x00\x14" "sensors/kitchen/tem+", JN_EPROTO, 0x90);
    FAIL(V4, "\x30\x16\x00\x14" "#ensors/kitchen/temp", JN_EPROTO, 0x90);
    FAIL(V4, "\x30\x23\x00\x21" "sensors/kitchen/temperature/deep#", JN_EPROTO, 0x90);
    MALF(V4, "\x30\x16\x00\x14" "sensors/kitchen/te\x00p");
    MALF(V4, "\x30\x16\x00\x14" "sensors/kitchen/te\xFFp");
    MALF(V4, "\x30\x05\x00\x03" "a\x00" "b");
    MALF(V4, "\x30\x0D\x00\x0B" "aaaaaaaa\x00" "bb");
    MALF(V4, "\x30\x06\x00\x04" "a\xED\xA0\x80");                     /* surrogate */
    MALF(V4, "\x30\x05\x00\x03" "a\xC0\x80");                         /* overlong NUL */
    MALF(V4, "\x30\x05\x00\x03" "ab\xC3");                            /* cut sequence */
    PERR(V4, "\x32\x05\x00\x01t\x00\x00");                            /* QoS 1, packet id 0 */
    PERR(V4, "\x30\x02\x00\x00");                                     /* empty topic in 3.1.1 */
    MALF(V4, "\x32\x04\x00\x01t\x00");                                /* packet id cut */
    jn_mqtt_packet_t pk;
    decode_all((const uint8_t *)"\x30\x03\x00\x01t", 5, V4, &pk);     /* empty payload */
    assert_int_equal(pk.u.publish.payload.len, 0);
}

static void test_subscribe_rules(void **state)
{
    (void)state;
    PERR(V4, "\x82\x02\x00\x01");                      /* no entries */
    PERR(V5, "\x82\x03\x00\x01\x00");
    PERR(V4, "\xA2\x02\x00\x01");
    PERR(V4, "\x82\x06\x00\x00\x00\x01t\x00");         /* packet id 0 */
    MALF(V4, "\x82\x06\x00\x01\x00\x01t\x03");         /* QoS 3 */
    MALF(V4, "\x82\x06\x00\x01\x00\x01t\x04");         /* 3.1.1 reserved option bits */
    MALF(V5, "\x82\x07\x00\x01\x00\x00\x01t\x40");     /* 5.0 reserved option bits */
    PERR(V5, "\x82\x07\x00\x01\x00\x00\x01t\x30");     /* Retain Handling 3 */
    MALF(V4, "\x82\x05\x00\x01\x00\x01t");             /* options byte missing */
    MALF(V4, "\x82\x06\x00\x01\x00\x01\xFFt");         /* filter not UTF-8 */
    PERR(V5, "\x82\x10\x00\x01\x00\x00\x0A$share/g/t\x04"); /* No Local on a shared subscription */
    jn_mqtt_packet_t pk;
    decode_all((const uint8_t *)"\x82\x10\x00\x01\x00\x00\x0A$share/g/t\x02", 18, V5, &pk);
    decode_all((const uint8_t *)"\x82\x05\x00\x01\x00\x00\x00", 7, V4, &pk); /* empty filter: session's call */
    /* SUBACK and UNSUBACK codes */
    PERR(V4, "\x90\x03\x00\x01\x03");
    PERR(V4, "\x90\x03\x00\x01\x87");
    decode_all((const uint8_t *)"\x90\x04\x00\x01\x00\x87", 6, V5, &pk);
    PERR(V5, "\x90\x04\x00\x01\x00\x11");
    PERR(V5, "\x90\x03\x00\x01\x00");                   /* no codes */
    PERR(V5, "\xB0\x04\x00\x01\x00\x02");
    MALF(V4, "\xB0\x03\x00\x01\x00");                   /* 3.1.1 UNSUBACK has none */
}

static void test_ack_and_disconnect_rules(void **state)
{
    (void)state;
    PERR(V4, "\x40\x02\x00\x00");                  /* packet id 0 */
    PERR(V5, "\x40\x03\x00\x01\x92");              /* PUBACK cannot say Packet Identifier not found */
    PERR(V5, "\x70\x03\x00\x01\x10");              /* PUBCOMP cannot say No matching subscribers */
    jn_mqtt_packet_t pk;
    decode_all((const uint8_t *)"\x62\x03\x00\x01\x92", 5, V5, &pk);
    assert_int_equal(pk.u.ack.reason, 0x92);
    decode_all((const uint8_t *)"\x40\x04\x00\x01\x80\x00", 6, V5, &pk);
    PERR(V5, "\xE0\x01\x01");                      /* not a DISCONNECT reason */
    decode_all((const uint8_t *)"\xE0\x02\x04\x00", 4, V5, &pk);
    assert_int_equal(pk.u.disconnect.reason, 0x04);
    MALF(V5, "\xE0\x06\x00\x04\x21\x00\x01\x00");  /* Receive Maximum in DISCONNECT */
    MALF(V5, "\xF0\x01\x18");                      /* AUTH has no reason-only form */
    PERR(V5, "\xF0\x02\x18\x00");                  /* AUTH without Authentication Method */
    PERR(V5, "\xF0\x02\x05\x00");
    decode_all((const uint8_t *)"\xF0\x06\x18\x04\x15\x00\x01m", 8, V5, &pk);
    assert_view(pk.u.auth.props.auth_method, "m");
    MALF(V4, "\x20\x02\x02\x00");                  /* CONNACK reserved ack flags */
    PERR(V4, "\x20\x02\x00\x06");                  /* return code 6 */
    PERR(V4, "\x20\x02\x01\x05");                  /* session present with a refusal */
    PERR(V5, "\x20\x03\x00\x01\x00");              /* 0x01 is not a CONNACK reason */
}

static void test_utf8(void **state)
{
    (void)state;
#define U(lit) jn_mqtt_utf8_valid((const uint8_t *)(lit), sizeof(lit) - 1)
    assert_true(U(""));
    assert_true(U("plain ascii text, longer than eight bytes"));
    assert_true(U("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9D\x84\x9E"));
    assert_true(U("\xF4\x8F\xBF\xBF"));  /* U+10FFFF */
    assert_true(U("\xEF\xBF\xBF"));      /* U+FFFF: a non-character, allowed */
    assert_true(U("\x01\x7F"));          /* control characters: allowed */
    assert_true(U("0123456789abcdef\xC3\xA9"));
    assert_true(U("0123456789abcdef0123456789abcdef"));
    assert_true(U("\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC"));
    assert_false(U("0123456789abcdef0\x00"));
    assert_false(U("0123456789abcdef0123456789abcde\x80"));
    assert_false(U("0123456789ab\xED\xA0\x80"));
    assert_false(U("\x00"));
    assert_false(U("abcdefgh\x00"));
    assert_false(U("\x80"));
    assert_false(U("\xC1\xBF"));         /* overlong */
    assert_false(U("\xE0\x9F\xBF"));     /* overlong */
    assert_false(U("\xF0\x8F\xBF\xBF")); /* overlong */
    assert_false(U("\xED\xA0\x80"));     /* U+D800 */
    assert_false(U("\xED\xBF\xBF"));     /* U+DFFF */
    assert_false(U("\xF4\x90\x80\x80")); /* above U+10FFFF */
    assert_false(U("\xF5\x80\x80\x80"));
    assert_false(U("\xE2\x82"));
    assert_false(U("\xE2\x28\xA1"));
#undef U
    assert_string_equal(jn_mqtt_type_name(JN_MQTT_PUBLISH), "PUBLISH");
    assert_string_equal(jn_mqtt_type_name(0), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_v4_exact),
        cmocka_unit_test(test_connect_v5_exact),
        cmocka_unit_test(test_small_packets_exact),
        cmocka_unit_test(test_remaining_length_exact),
        cmocka_unit_test(test_roundtrip_all),
        cmocka_unit_test(test_sub_ids_and_user_props),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_bad_remaining_length),
        cmocka_unit_test(test_max_packet_size),
        cmocka_unit_test(test_encode_limit),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_fixed_header_rules),
        cmocka_unit_test(test_connect_rules),
        cmocka_unit_test(test_property_rules),
        cmocka_unit_test(test_publish_rules),
        cmocka_unit_test(test_subscribe_rules),
        cmocka_unit_test(test_ack_and_disconnect_rules),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
