/* test_mqtt_session.c - the MQTT session state machine, driven with encoded
 * packets through a fake transport (no sockets) on a real broker in a
 * temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/broker.h"
#include "core/filter.h"
#include "proto/mqtt/mqtt_int.h"

#include "mqtt_fake.h"

static int setup(void **state)
{
    *state = env_new("jn-mqtt-", false);
    return 0;
}

static int teardown(void **state)
{
    env_free(*state);
    return 0;
}

static void do_connect(fake_t *f, uint8_t v, const char *id, bool clean, uint32_t expiry, uint16_t ka,
                       const char *will_topic)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    jn_mqtt_connect_t c;
    memset(&c, 0, sizeof c);
    c.version = v;
    c.clean_start = clean;
    c.keep_alive = ka;
    c.client_id.data = (const uint8_t *)id;
    c.client_id.len = (uint32_t)strlen(id);
    if (v == JN_MQTT_V5 && expiry) {
        c.props.present = JN_MQTT_PBIT(JN_MQTT_PROP_SESSION_EXPIRY);
        c.props.session_expiry = expiry;
    }
    if (will_topic) {
        c.will = true;
        c.will_qos = 1;
        c.will_topic.data = (const uint8_t *)will_topic;
        c.will_topic.len = (uint32_t)strlen(will_topic);
        c.will_payload.data = (const uint8_t *)"bye";
        c.will_payload.len = 3;
    }
    assert_true(jn_mqtt_encode_connect(&b, v, &c) > 0);
    feed(f, &b);
    jn_buf_free(&b);
}

static void send_publish(fake_t *f, uint8_t v, const char *topic, const char *payload, uint8_t qos,
                         uint16_t pid, bool retain, bool dup)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    jn_mqtt_publish_t p;
    memset(&p, 0, sizeof p);
    p.qos = qos;
    p.packet_id = pid;
    p.retain = retain;
    p.dup = dup;
    p.topic.data = (const uint8_t *)topic;
    p.topic.len = (uint32_t)strlen(topic);
    p.payload.data = (const uint8_t *)payload;
    p.payload.len = (uint32_t)strlen(payload);
    assert_true(jn_mqtt_encode_publish(&b, v, &p) > 0);
    feed(f, &b);
    jn_buf_free(&b);
}


static fake_t *connected(env_t *e, uint8_t v, const char *id)
{
    fake_t *f = fake_new(e);
    do_connect(f, v, id, true, 0, 10, NULL);
    jn_mqtt_packet_t p;
    assert_int_equal(next_packet(f, v, &p), JN_MQTT_CONNACK);
    assert_int_equal(p.u.connack.reason, 0);
    return f;
}

static void test_connect_connack(void **state)
{
    env_t *e = *state;
    fake_t *f = fake_new(e);
    assert_int_equal(f->timeout, 10000); /* CONNECT deadline */
    do_connect(f, JN_MQTT_V5, "", true, 0, 20, NULL);
    jn_mqtt_packet_t p;
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_CONNACK);
    assert_int_equal(p.u.connack.reason, 0);
    assert_true(JN_MQTT_HAS(&p.u.connack.props, JN_MQTT_PROP_ASSIGNED_CLIENT_ID));
    assert_true(JN_MQTT_HAS(&p.u.connack.props, JN_MQTT_PROP_RECEIVE_MAXIMUM));
    assert_int_equal(f->timeout, 30000); /* 1.5 x keep alive */
    assert_int_equal(jn_mqtt_clients_connected(e->m), 1);
    fake_free(f);
    assert_int_equal(jn_mqtt_clients_connected(e->m), 0);

    /* 3.1.1: an empty id with clean session 0 is refused (return code 2). */
    f = fake_new(e);
    do_connect(f, JN_MQTT_V311, "", false, 0, 0, NULL);
    assert_int_equal(next_packet(f, JN_MQTT_V311, &p), JN_MQTT_CONNACK);
    assert_int_equal(p.u.connack.reason, 2);
    assert_true(f->closed);
    fake_free(f);
}

static void test_qos_flows(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    fake_t *sub = connected(e, JN_MQTT_V5, "sub");
    send_subscribe_id(sub, JN_MQTT_V5, "q/+", 2, 0);
    assert_int_equal(next_packet(sub, JN_MQTT_V5, &p), JN_MQTT_SUBACK);
    assert_int_equal(p.u.suback.reasons.data[0], 2);
    fake_t *pub = connected(e, JN_MQTT_V311, "pub");

    send_publish(pub, JN_MQTT_V311, "q/1", "one", 1, 5, false, false);
    assert_int_equal(next_packet(pub, JN_MQTT_V311, &p), JN_MQTT_PUBACK);
    assert_int_equal(p.u.ack.packet_id, 5);
    assert_int_equal(next_packet(sub, JN_MQTT_V5, &p), JN_MQTT_PUBLISH);
    assert_int_equal(p.u.publish.qos, 1); /* min(published 1, granted 2) */
    assert_memory_equal(p.u.publish.payload.data, "one", 3);
    send_ack(sub, JN_MQTT_V5, JN_MQTT_PUBACK, p.u.publish.packet_id);

    /* QoS 2 inbound with a DUP resend before PUBREL: stored once. */
    send_publish(pub, JN_MQTT_V311, "q/2", "two", 2, 7, false, false);
    assert_int_equal(next_packet(pub, JN_MQTT_V311, &p), JN_MQTT_PUBREC);
    send_publish(pub, JN_MQTT_V311, "q/2", "two", 2, 7, false, true);
    assert_int_equal(next_packet(pub, JN_MQTT_V311, &p), JN_MQTT_PUBREC);
    send_ack(pub, JN_MQTT_V311, JN_MQTT_PUBREL, 7);
    assert_int_equal(next_packet(pub, JN_MQTT_V311, &p), JN_MQTT_PUBCOMP);
    assert_int_equal(next_packet(sub, JN_MQTT_V5, &p), JN_MQTT_PUBLISH);
    assert_int_equal(p.u.publish.qos, 2);
    assert_memory_equal(p.u.publish.payload.data, "two", 3);
    uint16_t pid = p.u.publish.packet_id;
    send_ack(sub, JN_MQTT_V5, JN_MQTT_PUBREC, pid);
    assert_int_equal(next_packet(sub, JN_MQTT_V5, &p), JN_MQTT_PUBREL);
    send_ack(sub, JN_MQTT_V5, JN_MQTT_PUBCOMP, pid);
    assert_int_equal(next_packet(sub, JN_MQTT_V5, &p), 0); /* no second copy */
    jn_stream_t *s = jn_broker_stream_find(e->b, "q", 1);
    assert_non_null(s);
    assert_int_equal(jn_plog_end_offset(jn_stream_plog(s, 0)), 2);
    fake_free(pub);
    fake_free(sub);
}

/* MQTT 3.8.4: delivery QoS = min(published, granted); records without the
 * published QoS go out at the granted QoS. */
static void test_delivery_qos(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    fake_t *s2 = connected(e, JN_MQTT_V5, "s2");
    send_subscribe_id(s2, JN_MQTT_V5, "d/two", 2, 0);
    assert_int_equal(next_packet(s2, JN_MQTT_V5, &p), JN_MQTT_SUBACK);
    fake_t *s1 = connected(e, JN_MQTT_V311, "s1");
    send_subscribe_id(s1, JN_MQTT_V311, "d/one", 1, 0);
    assert_int_equal(next_packet(s1, JN_MQTT_V311, &p), JN_MQTT_SUBACK);
    fake_t *pub = connected(e, JN_MQTT_V5, "dpub");

    send_publish(pub, JN_MQTT_V5, "d/two", "zero", 0, 0, false, false);
    assert_int_equal(next_packet(s2, JN_MQTT_V5, &p), JN_MQTT_PUBLISH);
    assert_int_equal(p.u.publish.qos, 0);
    assert_int_equal(p.u.publish.packet_id, 0);
    assert_memory_equal(p.u.publish.payload.data, "zero", 4);
    assert_false(JN_MQTT_HAS(&p.u.publish.props, JN_MQTT_PROP_USER)); /* ":mqtt-qos" stays internal */

    send_publish(pub, JN_MQTT_V5, "d/one", "two", 2, 9, false, false);
    assert_int_equal(next_packet(pub, JN_MQTT_V5, &p), JN_MQTT_PUBREC);
    send_ack(pub, JN_MQTT_V5, JN_MQTT_PUBREL, 9);
    assert_int_equal(next_packet(pub, JN_MQTT_V5, &p), JN_MQTT_PUBCOMP);
    assert_int_equal(next_packet(s1, JN_MQTT_V311, &p), JN_MQTT_PUBLISH);
    assert_int_equal(p.u.publish.qos, 1);
    assert_memory_equal(p.u.publish.payload.data, "two", 3);
    send_ack(s1, JN_MQTT_V311, JN_MQTT_PUBACK, p.u.publish.packet_id);

    /* Other doors: no header, or one that is not "0"/"1": granted QoS. */
    broker_publish(e, "d/two", "rest", NULL);
    assert_int_equal(next_packet(s2, JN_MQTT_V5, &p), JN_MQTT_PUBLISH);
    assert_int_equal(p.u.publish.qos, 2);
    assert_memory_equal(p.u.publish.payload.data, "rest", 4);
    uint16_t pid = p.u.publish.packet_id;
    send_ack(s2, JN_MQTT_V5, JN_MQTT_PUBREC, pid);
    assert_int_equal(next_packet(s2, JN_MQTT_V5, &p), JN_MQTT_PUBREL);
    send_ack(s2, JN_MQTT_V5, JN_MQTT_PUBCOMP, pid);
    broker_publish(e, "d/one", "odd", "7");
    assert_int_equal(next_packet(s1, JN_MQTT_V311, &p), JN_MQTT_PUBLISH);
    assert_int_equal(p.u.publish.qos, 1);
    send_ack(s1, JN_MQTT_V311, JN_MQTT_PUBACK, p.u.publish.packet_id);
    broker_publish(e, "d/one", "low", "0");
    assert_int_equal(next_packet(s1, JN_MQTT_V311, &p), JN_MQTT_PUBLISH);
    assert_int_equal(p.u.publish.qos, 0);
    assert_memory_equal(p.u.publish.payload.data, "low", 3);

    /* Retained: the blob's QoS caps as before, without the header. */
    send_publish(pub, JN_MQTT_V5, "d/ret", "kept", 0, 0, true, false);
    fake_t *s3 = connected(e, JN_MQTT_V5, "s3");
    send_subscribe_id(s3, JN_MQTT_V5, "d/ret", 2, 0);
    assert_int_equal(next_packet(s3, JN_MQTT_V5, &p), JN_MQTT_SUBACK);
    assert_int_equal(next_packet(s3, JN_MQTT_V5, &p), JN_MQTT_PUBLISH);
    assert_int_equal(p.u.publish.qos, 0);
    assert_true(p.u.publish.retain);
    fake_free(s3);
    fake_free(pub);
    fake_free(s1);
    fake_free(s2);
}

static void test_retained_and_will(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    fake_t *pub = connected(e, JN_MQTT_V311, "rpub");
    send_publish(pub, JN_MQTT_V311, "r/a", "keep", 0, 0, true, false);
    fake_t *sub = connected(e, JN_MQTT_V311, "rsub");
    send_subscribe_id(sub, JN_MQTT_V311, "r/#", 1, 0);
    assert_int_equal(next_packet(sub, JN_MQTT_V311, &p), JN_MQTT_SUBACK);
    assert_int_equal(next_packet(sub, JN_MQTT_V311, &p), JN_MQTT_PUBLISH);
    assert_true(p.u.publish.retain);
    assert_memory_equal(p.u.publish.payload.data, "keep", 4);

    fake_t *w = fake_new(e);
    do_connect(w, JN_MQTT_V311, "dying", true, 0, 10, "r/will");
    assert_int_equal(next_packet(w, JN_MQTT_V311, &p), JN_MQTT_CONNACK);
    jn_mqtt_session_closed(w->s, JN_ECLOSED); /* abnormal: the will goes out */
    w->s = NULL;
    assert_int_equal(next_packet(sub, JN_MQTT_V311, &p), JN_MQTT_PUBLISH);
    assert_memory_equal(p.u.publish.topic.data, "r/will", 6);
    assert_memory_equal(p.u.publish.payload.data, "bye", 3);
    fake_free(w);
    fake_free(pub);
    fake_free(sub);
}

static void test_keepalive_and_errors(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    fake_t *f = connected(e, JN_MQTT_V5, "ka");
    jn_mqtt_session_timeout(f->s);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_DISCONNECT);
    assert_int_equal(p.u.disconnect.reason, JN_MQTT_RC_KEEP_ALIVE_TIMEOUT);
    assert_true(f->closed);
    fake_free(f);

    /* A second CONNECT: DISCONNECT 0x82. */
    f = connected(e, JN_MQTT_V5, "twice");
    do_connect(f, JN_MQTT_V5, "twice", true, 0, 10, NULL);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_DISCONNECT);
    assert_int_equal(p.u.disconnect.reason, JN_MQTT_RC_PROTOCOL_ERROR);
    fake_free(f);

    /* A PUBLISH before CONNECT: closed without an answer. */
    f = fake_new(e);
    send_publish(f, JN_MQTT_V311, "a/b", "x", 0, 0, false, false);
    assert_true(f->closed);
    assert_int_equal(f->out.len, 0);
    fake_free(f);

    /* A wildcard in a PUBLISH topic (v5): DISCONNECT 0x90. */
    f = connected(e, JN_MQTT_V5, "wild");
    const uint8_t bad[] = {0x30, 0x06, 0x00, 0x03, 'a', '/', '+', 0x00};
    size_t n = jn_mqtt_session_input(f->s, bad, sizeof bad);
    assert_int_equal(n, sizeof bad);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_DISCONNECT);
    assert_true(p.u.disconnect.reason == JN_MQTT_RC_TOPIC_NAME_INVALID ||
                p.u.disconnect.reason == JN_MQTT_RC_MALFORMED || p.u.disconnect.reason == JN_MQTT_RC_PROTOCOL_ERROR);
    assert_true(f->closed);
    fake_free(f);

    /* A v5 CONNECT with an authentication method: CONNACK 0x8C. */
    f = fake_new(e);
    jn_buf_t b;
    jn_buf_init(&b, 1 << 16);
    jn_mqtt_connect_t c;
    memset(&c, 0, sizeof c);
    c.version = JN_MQTT_V5;
    c.clean_start = true;
    c.client_id.data = (const uint8_t *)"auth";
    c.client_id.len = 4;
    c.props.present = JN_MQTT_PBIT(JN_MQTT_PROP_AUTH_METHOD);
    c.props.auth_method.data = (const uint8_t *)"SCRAM-SHA-1";
    c.props.auth_method.len = 11;
    assert_true(jn_mqtt_encode_connect(&b, JN_MQTT_V5, &c) > 0);
    feed(f, &b);
    jn_buf_free(&b);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_CONNACK);
    assert_int_equal(p.u.connack.reason, JN_MQTT_RC_BAD_AUTH_METHOD);
    fake_free(f);
}

/* The remembered valid topic (session.vtopic) never lets a bad one
 * through: a topic published twice, then one over JN_SUBJECT_MAX bytes
 * (valid MQTT, not a subject) is DISCONNECT 0x90. And input offered a
 * byte at a time, as a WebSocket transport may split it, is taken whole
 * packets at a time. */
static void test_topic_memory_and_split_input(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    fake_t *f = connected(e, JN_MQTT_V5, "topics");
    send_publish(f, JN_MQTT_V5, "tm/a", "1", 1, 1, false, false);
    send_publish(f, JN_MQTT_V5, "tm/a", "2", 1, 2, false, false);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBACK);
    assert_int_equal(p.u.ack.packet_id, 1);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBACK);
    assert_int_equal(p.u.ack.packet_id, 2);
    static char longt[JN_SUBJECT_MAX + 2];
    memset(longt, 'x', JN_SUBJECT_MAX + 1);
    longt[2] = '/';
    send_publish(f, JN_MQTT_V5, longt, "3", 0, 0, false, false);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_DISCONNECT);
    assert_int_equal(p.u.disconnect.reason, JN_MQTT_RC_TOPIC_NAME_INVALID);
    assert_true(f->closed);
    fake_free(f);

    f = connected(e, JN_MQTT_V311, "split");
    jn_buf_t b;
    jn_buf_init(&b, 1 << 16);
    jn_mqtt_publish_t pub;
    memset(&pub, 0, sizeof pub);
    pub.qos = 1;
    pub.packet_id = 7;
    pub.topic.data = (const uint8_t *)"tm/b";
    pub.topic.len = 4;
    pub.payload.data = (const uint8_t *)"payload";
    pub.payload.len = 7;
    assert_true(jn_mqtt_encode_publish(&b, JN_MQTT_V311, &pub) > 0);
    assert_true(jn_mqtt_encode_publish(&b, JN_MQTT_V311, &pub) > 0);
    size_t one = b.len / 2, off = 0, pending = 0, acks = 0;
    for (size_t i = 0; i < b.len; i++) {
        pending++;
        size_t n = jn_mqtt_session_input(f->s, b.data + off, pending);
        assert_true(n == 0 || n == one);
        off += n;
        pending -= n;
        while (next_packet(f, JN_MQTT_V311, &p) == JN_MQTT_PUBACK)
            acks++;
    }
    assert_int_equal(off, b.len);
    assert_int_equal(acks, 2);
    jn_buf_free(&b);
    fake_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_connack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qos_flows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_qos, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retained_and_will, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_memory_and_split_input, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
