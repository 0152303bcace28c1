/* test_mqtt_state.c - the saved MQTT session (state.c): its JSON encoded
 * and decoded back, and what a client sees after the door and the broker
 * restart: in-flight messages resent with DUP and their packet ids, PUBREL
 * for QoS 2 past PUBREC, inbound QoS 2 packet ids kept, wills kept. Driven
 * through a fake transport (no sockets) on a real broker in a temporary
 * directory.
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
#include "proto/mqtt/mqtt_int.h"

#include "mqtt_fake.h"

/* A graceful stop and start of the door and the broker. */
static void restart(env_t *e)
{
    env_close(e);
    env_open(e);
}

static int setup(void **state)
{
    *state = env_new("jn-mqtt-st-", true);
    return 0;
}

static int teardown(void **state)
{
    env_free(*state);
    return 0;
}

static void send_connect(fake_t *f, const char *id, bool clean, uint32_t expiry, const char *will_topic,
                         uint32_t will_delay)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    jn_mqtt_connect_t c;
    memset(&c, 0, sizeof c);
    c.version = JN_MQTT_V5;
    c.clean_start = clean;
    c.keep_alive = 30;
    c.client_id.data = (const uint8_t *)id;
    c.client_id.len = (uint32_t)strlen(id);
    c.props.present = JN_MQTT_PBIT(JN_MQTT_PROP_SESSION_EXPIRY);
    c.props.session_expiry = expiry;
    if (will_topic) {
        c.will = true;
        c.will_qos = 1;
        c.will_topic.data = (const uint8_t *)will_topic;
        c.will_topic.len = (uint32_t)strlen(will_topic);
        c.will_payload.data = (const uint8_t *)"bye";
        c.will_payload.len = 3;
        c.will_props.present = JN_MQTT_PBIT(JN_MQTT_PROP_WILL_DELAY) | JN_MQTT_PBIT(JN_MQTT_PROP_CONTENT_TYPE);
        c.will_props.will_delay = will_delay;
        c.will_props.content_type.data = (const uint8_t *)"text/plain";
        c.will_props.content_type.len = 10;
    }
    assert_true(jn_mqtt_encode_connect(&b, JN_MQTT_V5, &c) > 0);
    feed(f, &b);
    jn_buf_free(&b);
}

static fake_t *connect_client(env_t *e, const char *id, bool clean, const char *will_topic, uint32_t will_delay,
                              bool present)
{
    fake_t *f = fake_new(e);
    send_connect(f, id, clean, 3600, will_topic, will_delay);
    jn_mqtt_packet_t p;
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_CONNACK);
    assert_int_equal(p.u.connack.reason, 0);
    assert_int_equal(p.u.connack.session_present, present);
    return f;
}

static void send_publish(fake_t *f, const char *topic, const char *payload, uint8_t qos, uint16_t pid, bool dup)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    jn_mqtt_publish_t p;
    memset(&p, 0, sizeof p);
    p.qos = qos;
    p.packet_id = pid;
    p.dup = dup;
    p.topic.data = (const uint8_t *)topic;
    p.topic.len = (uint32_t)strlen(topic);
    p.payload.data = (const uint8_t *)payload;
    p.payload.len = (uint32_t)strlen(payload);
    assert_true(jn_mqtt_encode_publish(&b, JN_MQTT_V5, &p) > 0);
    feed(f, &b);
    jn_buf_free(&b);
}

static void send_subscribe(fake_t *f, const char *filter, uint8_t qos)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    jn_mqtt_sub_t s;
    memset(&s, 0, sizeof s);
    s.filter.data = (const uint8_t *)filter;
    s.filter.len = (uint32_t)strlen(filter);
    s.qos = qos;
    jn_mqtt_subscribe_t sb;
    memset(&sb, 0, sizeof sb);
    sb.packet_id = 1;
    sb.count = 1;
    sb.subs = &s;
    assert_true(jn_mqtt_encode_subscribe(&b, JN_MQTT_V5, &sb) > 0);
    feed(f, &b);
    jn_buf_free(&b);
    jn_mqtt_packet_t p;
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_SUBACK);
}

static int64_t end_offset(env_t *e, const char *stream)
{
    jn_stream_t *s = jn_broker_stream_find(e->b, stream, strlen(stream));
    return s ? jn_plog_end_offset(jn_stream_plog(s, 0)) : 0;
}

static void expect_publish(fake_t *f, const char *payload, uint8_t qos, bool dup, uint16_t *pid)
{
    jn_mqtt_packet_t p;
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBLISH);
    assert_int_equal(p.u.publish.payload.len, strlen(payload));
    assert_memory_equal(p.u.publish.payload.data, payload, strlen(payload));
    assert_int_equal(p.u.publish.qos, qos);
    assert_int_equal(p.u.publish.dup, dup);
    if (*pid)
        assert_int_equal(p.u.publish.packet_id, *pid);
    *pid = p.u.publish.packet_id;
}

/* Records a client has: one QoS 1 not acknowledged, one QoS 2 past PUBREC,
 * one QoS 1 acknowledged; one inbound QoS 2 (packet id 7) not released. */
static void make_inflight(env_t *e, fake_t *f, uint16_t *p1, uint16_t *p2)
{
    jn_mqtt_packet_t p;
    send_subscribe(f, "r/#", 2);
    broker_publish(e, "r/a", "one", "1");
    broker_publish(e, "r/a", "two", NULL);
    broker_publish(e, "r/a", "three", "1");
    env_spin(e);
    uint16_t p3 = 0;
    *p1 = *p2 = 0;
    expect_publish(f, "one", 1, false, p1);
    expect_publish(f, "two", 2, false, p2);
    expect_publish(f, "three", 1, false, &p3);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBREC, *p2);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBREL);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, p3);
    send_publish(f, "in/x", "q2", 2, 7, false);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBREC);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
}

static void test_encode_decode(void **state)
{
    env_t *e = *state;
    fake_t *f = connect_client(e, "enc", true, "w/enc", 30, false);
    uint16_t p1, p2;
    make_inflight(e, f, &p1, &p2);
    mqtt_state_t *st = jn__mqtt_state_find(e->m, "enc", 3);
    assert_non_null(st);
    char *txt = jn__mqtt_state_encode(st);
    assert_non_null(txt);
    json_t *j = json_loads(txt, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "off")), 0); /* connected */
    assert_int_equal(json_integer_value(json_object_get(j, "expiry")), 3600);
    json_t *inf = json_object_get(j, "inf");
    assert_int_equal(json_array_size(inf), 2);
    json_t *q2 = json_object_get(j, "q2");
    assert_int_equal(json_array_size(q2), 1);
    assert_int_equal(json_integer_value(json_array_get(q2, 0)), 7);
    json_t *w = json_object_get(j, "will");
    assert_string_equal(json_string_value(json_object_get(w, "t")), "w/enc");
    assert_string_equal(json_string_value(json_object_get(w, "p")), "Ynll"); /* "bye" */
    assert_int_equal(json_integer_value(json_object_get(w, "d")), 30);
    /* The mark: everything below the cursor (offset 3) was sent. */
    json_t *mk = json_array_get(json_object_get(j, "mk"), 0);
    assert_string_equal(json_string_value(json_array_get(mk, 1)), "r");
    assert_int_equal(json_integer_value(json_array_get(mk, 3)), 3);
    json_decref(j);

    /* Decoded into another state: the same session, offline, slots stale. */
    mqtt_state_t *cp = jn__mqtt_state_new(e->m, "copy", 4);
    assert_non_null(cp);
    assert_int_equal(jn__mqtt_state_decode(cp, txt, strlen(txt), 12345), 0);
    assert_int_equal(cp->offline_since, 12345);
    assert_int_equal(cp->expiry, 3600);
    assert_int_equal(cp->nsubs, 1);
    assert_int_equal(cp->inflight, 2);
    assert_int_equal(cp->nstale, 2);
    const mqtt_slot_t *s1 = &cp->slots[p1 % cp->cap], *s2 = &cp->slots[p2 % cp->cap];
    assert_int_equal(s1->pid, p1);
    assert_int_equal(s1->qos, 1);
    assert_int_equal(s1->state, 0);
    assert_int_equal(s1->offset, 0);
    assert_int_equal(s2->pid, p2);
    assert_int_equal(s2->qos, 2);
    assert_int_equal(s2->state, 1);
    assert_int_equal(s2->offset, 1);
    assert_true(s1->stale && s2->stale);
    assert_string_equal(jn_stream_name(s1->stream), "r");
    assert_int_equal(cp->nmarks, 1);
    assert_int_equal(cp->marks[0].upto, 3);
    assert_int_equal(cp->nq2, 1);
    assert_int_equal(cp->q2[0], 7);
    assert_non_null(cp->will);
    assert_string_equal(cp->will->topic, "w/enc");
    assert_int_equal(cp->will->payload_len, 3);
    assert_memory_equal(cp->will->payload, "bye", 3);
    assert_int_equal(cp->will->delay, 30);
    assert_int_equal(cp->will->headers.len, st->will->headers.len);
    assert_memory_equal(cp->will->headers.data, st->will->headers.data, st->will->headers.len);
    assert_int_equal(cp->will_at, 12345 + 30 * 1000);
    /* Encoding the copy gives the same JSON (but for the time offline). */
    cp->sess = st->sess;
    char *again = jn__mqtt_state_encode(cp);
    cp->sess = NULL;
    assert_string_equal(again, txt);
    free(again);
    free(txt);
    jn__mqtt_state_end(cp);

    /* Not a session; entries that do not fit are dropped. */
    mqtt_state_t *bad = jn__mqtt_state_new(e->m, "bad", 3);
    assert_int_equal(jn__mqtt_state_decode(bad, "[1]", 3, 1), JN_EPROTO);
    assert_int_equal(jn__mqtt_state_decode(bad, "{\"v\":", 5, 1), JN_EPROTO);
    const char *odd = "{\"v\":5,\"expiry\":10,\"subs\":[{\"f\":\"r/#\",\"q\":1,\"n\":0}],"
                      "\"inf\":[[0,1,0,0,\"r\",0,0],[9,1,1,0,\"r\",0,0],[9,1,0,5,\"r\",0,0],"
                      "[9,1,0,0,\"gone\",0,0],[9,1,0,0,\"r\",7,0],[9,1,0,0,\"r\",0,2],[\"x\"]],"
                      "\"q2\":[0,70000,\"a\",8],\"will\":{\"t\":\"\"}}";
    assert_int_equal(jn__mqtt_state_decode(bad, odd, strlen(odd), 1), 0);
    assert_int_equal(bad->inflight, 1); /* only the last one */
    assert_int_equal(bad->slots[9 % bad->cap].offset, 2);
    assert_int_equal(bad->nq2, 1);
    assert_int_equal(bad->q2[0], 8);
    assert_null(bad->will);
    jn__mqtt_state_end(bad);
    fake_free(f);
}

static void test_restart_resends_inflight(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    fake_t *f = connect_client(e, "rs", true, NULL, 0, false);
    uint16_t p1, p2;
    make_inflight(e, f, &p1, &p2);
    assert_int_equal(end_offset(e, "in"), 1);
    restart(e); /* the connection drops with the server */
    fake_free(f);

    f = connect_client(e, "rs", false, NULL, 0, true);
    /* 4.4.0-1: PUBREL for the QoS 2 message past PUBREC, then the QoS 1
     * message again with DUP and its packet id; the acknowledged one and
     * the QoS 2 one are not sent again. */
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBREL);
    assert_int_equal(p.u.ack.packet_id, p2);
    env_spin(e);
    expect_publish(f, "one", 1, true, &p1);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, p1);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBCOMP, p2);
    env_spin(e);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);

    /* The inbound QoS 2 resend is not stored twice; PUBREL completes. */
    send_publish(f, "in/x", "q2", 2, 7, true);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBREC);
    assert_int_equal(p.u.ack.packet_id, 7);
    assert_int_equal(end_offset(e, "in"), 1);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBREL, 7);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBCOMP);
    assert_int_equal(p.u.ack.reason, 0);

    /* New records are new messages. */
    broker_publish(e, "r/a", "four", "1");
    env_spin(e);
    uint16_t p4 = 0;
    expect_publish(f, "four", 1, false, &p4);
    assert_int_not_equal(p4, p1);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, p4);

    /* Everything acknowledged: a second restart resends nothing. */
    restart(e);
    fake_free(f);
    f = connect_client(e, "rs", false, NULL, 0, true);
    env_spin(e);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
    fake_free(f);
}

/* Without a restart, a reconnect while the cursor re-reads: a QoS 2
 * message completed before it is not sent again as a new message. */
static void test_reconnect_skips_completed(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    fake_t *f = connect_client(e, "rc", true, NULL, 0, false);
    uint16_t p1, p2;
    make_inflight(e, f, &p1, &p2);
    fake_free(f); /* the connection drops */
    f = connect_client(e, "rc", false, NULL, 0, true);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBREL);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBCOMP, p2); /* before the cursor reads again */
    env_spin(e);
    expect_publish(f, "one", 1, true, &p1);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
    fake_free(f);
}

static void test_will_across_restart(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    /* A graceful stop publishes nothing; the will waits for its delay. */
    fake_t *f = connect_client(e, "wl", true, "w/late", 3600, false);
    restart(e);
    fake_free(f);
    assert_int_equal(end_offset(e, "w"), 0);
    mqtt_state_t *st = jn__mqtt_state_find(e->m, "wl", 2);
    assert_non_null(st);
    assert_non_null(st->will);
    assert_true(st->will_at > jn__mqtt_now(e->m) + 3000 * 1000);
    jn_mqtt_tick(e->m);
    assert_int_equal(end_offset(e, "w"), 0);
    /* The delay runs out: published once, and not again after a restart. */
    st->will_at = jn__mqtt_now(e->m) - 1;
    jn_mqtt_tick(e->m);
    assert_int_equal(end_offset(e, "w"), 1);
    restart(e);
    st = jn__mqtt_state_find(e->m, "wl", 2);
    assert_non_null(st);
    assert_null(st->will);
    jn_mqtt_tick(e->m);
    assert_int_equal(end_offset(e, "w"), 1);

    /* A client back before the delay cancels it. */
    f = connect_client(e, "wc", true, "w/cancel", 3600, false);
    restart(e);
    fake_free(f);
    f = connect_client(e, "wc", false, NULL, 0, true);
    fake_free(f);
    jn_mqtt_tick(e->m);
    assert_int_equal(end_offset(e, "w"), 1);

    /* A clean session's will after a stop: published at once at restart
     * (its session ended with the connection). */
    fake_t *g = fake_new(e);
    send_connect(g, "wz", true, 0, "w/zero", 0);
    assert_int_equal(next_packet(g, JN_MQTT_V5, &p), JN_MQTT_CONNACK);
    restart(e);
    fake_free(g);
    g = connect_client(e, "wz", false, NULL, 0, false); /* not present */
    assert_int_equal(end_offset(e, "w"), 2);
    fake_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_encode_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_resends_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_skips_completed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_will_across_restart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
