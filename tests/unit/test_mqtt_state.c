/* test_mqtt_state.c - the saved MQTT session (state.c): its JSON encoded
 * and decoded back, and what a client sees after the door and the broker
 * restart: in-flight messages resent with DUP and their packet ids, PUBREL
 * for QoS 2 past PUBREC, inbound QoS 2 packet ids kept, wills kept,
 * retained messages sent at SUBSCRIBE resent (and kept alive while a slot
 * holds them, named by topic and hash in the saved JSON). Driven
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

/* CONNECT (MQTT 5); |rm| is the Receive Maximum to announce, 0 for none. */
static void send_connect(fake_t *f, const char *id, bool clean, uint32_t expiry, const char *will_topic,
                         uint32_t will_delay, uint16_t rm)
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
    if (rm) {
        c.props.present |= JN_MQTT_PBIT(JN_MQTT_PROP_RECEIVE_MAXIMUM);
        c.props.receive_maximum = rm;
    }
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

/* CONNECT and its CONNACK (checked); |expiry| and |rm| as send_connect's. */
static fake_t *connect_full(env_t *e, const char *id, bool clean, uint32_t expiry, const char *will_topic,
                            uint32_t will_delay, uint16_t rm, bool present)
{
    fake_t *f = fake_new(e);
    send_connect(f, id, clean, expiry, will_topic, will_delay, rm);
    jn_mqtt_packet_t p;
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_CONNACK);
    assert_int_equal(p.u.connack.reason, 0);
    assert_int_equal(p.u.connack.session_present, present);
    return f;
}

static fake_t *connect_client(env_t *e, const char *id, bool clean, const char *will_topic, uint32_t will_delay,
                              bool present)
{
    return connect_full(e, id, clean, 3600, will_topic, will_delay, 0, present);
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


/* SUBSCRIBE (MQTT 5) and its SUBACK. */
static void subscribe(fake_t *f, const char *filter, uint8_t qos, uint32_t sub_id)
{
    send_subscribe_id(f, JN_MQTT_V5, filter, qos, sub_id);
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
    subscribe(f, "r/#", 2, 0);
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
    assert_int_equal(cp->will->at, 12345 + 30 * 1000);
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
    assert_true(st->will->at > jn__mqtt_now(e->m) + 3000 * 1000);
    jn_mqtt_tick(e->m);
    assert_int_equal(end_offset(e, "w"), 0);
    /* The delay runs out: published once, and not again after a restart. */
    st->will->at = jn__mqtt_now(e->m) - 1;
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
    send_connect(g, "wz", true, 0, "w/zero", 0, 0);
    assert_int_equal(next_packet(g, JN_MQTT_V5, &p), JN_MQTT_CONNACK);
    restart(e);
    fake_free(g);
    g = connect_client(e, "wz", false, NULL, 0, false); /* not present */
    assert_int_equal(end_offset(e, "w"), 2);
    fake_free(g);
}

/* ---- retained messages in flight ---- */

/* Sets the retained message of |topic| as a PUBLISH with RETAIN would. */
static void set_retained(env_t *e, const char *topic, const char *payload, uint8_t qos)
{
    jn_record_t rec;
    memset(&rec, 0, sizeof rec);
    rec.key_len = -1;
    rec.value = (const uint8_t *)payload;
    rec.value_len = (int32_t)strlen(payload);
    rec.timestamp = 1000;
    assert_int_equal(jn__mqtt_retained_set(e->m, topic, strlen(topic), &rec, qos, true), 0);
}


/* The next packet is a retained PUBLISH of |payload| on |topic|: checks
 * the fixed header's bits (DUP, QoS, RETAIN) as sent and the packet id
 * (when *pid is set), and returns the packet id in *pid. */
static void expect_retained(fake_t *f, const char *topic, const char *payload, uint8_t qos, bool dup,
                            uint32_t sub_id, uint16_t *pid)
{
    assert_true(f->out.len > 0);
    uint8_t first = f->out.data[0];
    assert_int_equal(first, 0x30 | (dup ? 0x08 : 0) | (qos << 1) | 0x01);
    jn_mqtt_packet_t p;
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBLISH);
    assert_true(p.u.publish.retain);
    assert_int_equal(p.u.publish.dup, dup);
    assert_int_equal(p.u.publish.qos, qos);
    assert_int_equal(p.u.publish.topic.len, strlen(topic));
    assert_memory_equal(p.u.publish.topic.data, topic, strlen(topic));
    assert_int_equal(p.u.publish.payload.len, strlen(payload));
    assert_memory_equal(p.u.publish.payload.data, payload, strlen(payload));
    if (sub_id) {
        assert_true(JN_MQTT_HAS(&p.u.publish.props, JN_MQTT_PROP_SUB_ID));
        assert_int_equal(p.u.publish.props.sub_id, sub_id);
    }
    if (*pid)
        assert_int_equal(p.u.publish.packet_id, *pid);
    *pid = p.u.publish.packet_id;
}

/* The payload of a retained entry (blob: qos, u16 header count, no
 * headers here, i64 timestamp, then the payload). */
static void assert_payload(const mqtt_retained_t *r, const char *payload)
{
    assert_int_equal(r->len, 11 + strlen(payload));
    assert_memory_equal(r->blob + 11, payload, strlen(payload));
}

/* A reconnect resends the retained message sent at SUBSCRIBE, with DUP,
 * its packet id and RETAIN, even after the topic's message changed. */
static void test_retained_reconnect(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    set_retained(e, "t/a", "old", 1);
    set_retained(e, "t/b", "bee", 1);
    fake_t *f = connect_client(e, "ra", true, NULL, 0, false);
    subscribe(f, "t/#", 1, 42);
    uint16_t pa = 0, pb = 0;
    jn_mqtt_packet_t peek;
    /* Two retained messages, in table order: find which is which. */
    assert_int_equal(jn_mqtt_decode(f->out.data, f->out.len, JN_MQTT_V5, 0, &peek) > 0, 1);
    bool a_first = peek.u.publish.topic.len == 3 && memcmp(peek.u.publish.topic.data, "t/a", 3) == 0;
    if (a_first) {
        expect_retained(f, "t/a", "old", 1, false, 42, &pa);
        expect_retained(f, "t/b", "bee", 1, false, 42, &pb);
    } else {
        expect_retained(f, "t/b", "bee", 1, false, 42, &pb);
        expect_retained(f, "t/a", "old", 1, false, 42, &pa);
    }
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, pb); /* t/b done */

    mqtt_state_t *st = jn__mqtt_state_find(e->m, "ra", 2);
    assert_non_null(st);
    mqtt_slot_t *sl = &st->slots[pa % st->cap];
    assert_int_equal(sl->pid, pa);
    assert_null(sl->stream);
    assert_non_null(sl->ret);
    mqtt_retained_t *old = sl->ret;
    assert_int_equal(old->refs, 2); /* the table's and the slot's */
    assert_int_equal(st->inflight, 1);

    /* Replaced: the table lets go, the slot keeps the old message. */
    set_retained(e, "t/a", "new", 1);
    assert_ptr_equal(sl->ret, old);
    assert_int_equal(old->refs, 1);
    assert_ptr_not_equal(jn__mqtt_retained_find(e->m, "t/a", 3), old);
    assert_payload(old, "old");

    /* The connection drops: the slot stays, stale, with its message. */
    fake_free(f);
    assert_null(st->sess);
    assert_int_equal(st->inflight, 1);
    assert_int_equal(st->nstale, 1);
    assert_true(sl->stale);
    assert_ptr_equal(sl->ret, old);
    /* Cleared while offline: still held by the slot. */
    jn_record_t empty;
    memset(&empty, 0, sizeof empty);
    empty.key_len = -1;
    assert_int_equal(jn__mqtt_retained_set(e->m, "t/a", 3, &empty, 0, true), 0);
    assert_null(jn__mqtt_retained_find(e->m, "t/a", 3));
    assert_payload(sl->ret, "old");

    /* Back: the old message again at once, DUP, same packet id, RETAIN,
     * its subscription identifier; t/b (acknowledged) is not resent. */
    f = connect_client(e, "ra", false, NULL, 0, true);
    expect_retained(f, "t/a", "old", 1, true, 42, &pa);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
    assert_false(sl->stale);
    assert_int_equal(st->nstale, 0);
    env_spin(e);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
    /* Acknowledged: the slot and the last reference go (ASan's leak
     * check sees the old entry freed). */
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, pa);
    assert_int_equal(sl->pid, 0);
    assert_null(sl->ret);
    assert_int_equal(st->inflight, 0);
    fake_free(f);
    f = connect_client(e, "ra", false, NULL, 0, true);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
    fake_free(f);
}

/* Retains "soon" (QoS 1) on |topic|, expiring in an hour; |at| gets the
 * expiry's digits, which tests overwrite in the stored copy to expire it. */
/* Retains `topic` with an expiry at `at` (ms since the epoch, as digits). */
static void set_retained_expiring_at(env_t *e, const char *topic, const char *at)
{
    jn_header_t h = {(const uint8_t *)MQTT_H_EXPIRY, sizeof MQTT_H_EXPIRY - 1, (const uint8_t *)at,
                     (int32_t)strlen(at)};
    jn_record_t rec;
    memset(&rec, 0, sizeof rec);
    rec.key_len = -1;
    rec.value = (const uint8_t *)"soon";
    rec.value_len = 4;
    rec.headers = &h;
    rec.header_count = 1;
    assert_int_equal(jn__mqtt_retained_set(e->m, topic, strlen(topic), &rec, 1, true), 0);
}

/* Retains `topic` expiring in an hour; `at` gets the expiry's digits. */
static void set_expiring_retained(env_t *e, const char *topic, char at[24])
{
    snprintf(at, 24, "%lld", (long long)(jn__mqtt_now(e->m) + 3600 * 1000));
    set_retained_expiring_at(e, topic, at);
}

/* An expired retained message is released at reconnect, not resent. */
static void test_retained_expired(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    char at[24];
    set_expiring_retained(e, "x/e", at);
    fake_t *f = connect_client(e, "rx", true, NULL, 0, false);
    subscribe(f, "x/#", 1, 0);
    uint16_t pid = 0;
    expect_retained(f, "x/e", "soon", 1, false, 0, &pid);
    fake_free(f);
    mqtt_state_t *st = jn__mqtt_state_find(e->m, "rx", 2);
    mqtt_slot_t *sl = &st->slots[pid % st->cap];
    assert_non_null(sl->ret);
    /* Its expiry passes while the client is away (the blob is the slot's
     * own copy: rewrite the digits to the past). */
    uint8_t *digits = memmem(sl->ret->blob, sl->ret->len, at, strlen(at));
    assert_non_null(digits);
    memset(digits, '0', strlen(at) - 1);
    digits[strlen(at) - 1] = '1'; /* 1 ms after the epoch: 0 would mean no expiry */
    f = connect_client(e, "rx", false, NULL, 0, true);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
    assert_int_equal(sl->pid, 0);
    assert_int_equal(st->inflight, 0);
    fake_free(f);
}

/* The saved session names a retained message in flight by topic and hash;
 * decoded, it comes back only when the store has that very message. */
static void test_retained_encode_decode(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    set_retained(e, "k/a", "alpha", 1);
    fake_t *f = connect_client(e, "rk", true, NULL, 0, false);
    subscribe(f, "k/a", 1, 0);
    uint16_t pa = 0;
    expect_retained(f, "k/a", "alpha", 1, false, 0, &pa);
    mqtt_state_t *st = jn__mqtt_state_find(e->m, "rk", 2);
    mqtt_retained_t *r = jn__mqtt_retained_find(e->m, "k/a", 3);
    assert_non_null(r);
    char *txt = jn__mqtt_state_encode(st);
    assert_non_null(txt);
    json_t *j = json_loads(txt, 0, NULL);
    json_t *inf = json_object_get(j, "inf");
    assert_int_equal(json_array_size(inf), 1);
    json_t *en = json_array_get(inf, 0);
    assert_int_equal(json_array_size(en), 9);
    assert_int_equal(json_integer_value(json_array_get(en, 0)), pa);
    assert_int_equal(json_integer_value(json_array_get(en, 1)), 1);
    assert_int_equal(json_integer_value(json_array_get(en, 2)), 0);
    assert_string_equal(json_string_value(json_array_get(en, 4)), "");
    assert_string_equal(json_string_value(json_array_get(en, 7)), "k/a");
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r->hash);
    assert_string_equal(json_string_value(json_array_get(en, 8)), hex);
    assert_null(json_object_get(j, "mk")); /* no mark for a retained slot */
    json_decref(j);

    /* The store has it: restored, stale, holding the store's entry. */
    mqtt_state_t *cp = jn__mqtt_state_new(e->m, "copy", 4);
    assert_int_equal(jn__mqtt_state_decode(cp, txt, strlen(txt), 1), 0);
    assert_int_equal(cp->inflight, 1);
    assert_int_equal(cp->nstale, 1);
    const mqtt_slot_t *cs = &cp->slots[pa % cp->cap];
    assert_int_equal(cs->pid, pa);
    assert_int_equal(cs->qos, 1);
    assert_true(cs->stale);
    assert_null(cs->stream);
    assert_ptr_equal(cs->ret, r);
    assert_int_equal(r->refs, 3);
    assert_int_equal(cp->nmarks, 0);
    cp->sess = st->sess;
    char *again = jn__mqtt_state_encode(cp);
    cp->sess = NULL;
    assert_string_equal(again, txt);
    free(again);
    jn__mqtt_state_end(cp);
    assert_int_equal(r->refs, 2);

    /* Replaced (the server down meanwhile): the entry is dropped. */
    set_retained(e, "k/a", "beta", 1);
    cp = jn__mqtt_state_new(e->m, "copy2", 5);
    assert_int_equal(jn__mqtt_state_decode(cp, txt, strlen(txt), 1), 0);
    assert_int_equal(cp->nsubs, 1);
    assert_int_equal(cp->inflight, 0);
    jn__mqtt_state_end(cp);
    /* Cleared, or a bad hash: dropped too. */
    jn_record_t empty;
    memset(&empty, 0, sizeof empty);
    empty.key_len = -1;
    assert_int_equal(jn__mqtt_retained_set(e->m, "k/a", 3, &empty, 0, true), 0);
    cp = jn__mqtt_state_new(e->m, "copy3", 5);
    assert_int_equal(jn__mqtt_state_decode(cp, txt, strlen(txt), 1), 0);
    assert_int_equal(cp->inflight, 0);
    jn__mqtt_state_end(cp);
    free(txt);
    set_retained(e, "k/a", "alpha", 1);
    const char *bad = "{\"v\":5,\"expiry\":10,\"subs\":[{\"f\":\"k/a\",\"q\":1,\"n\":0}],"
                      "\"inf\":[[3,1,0,0,\"\",0,0,\"k/a\",\"zz\"],[4,1,0,0,\"\",0,0,\"k/a\"],"
                      "[5,1,0,0,\"\",0,0,\"k/b\",\"0000000000000000\"],[6,2,1,0,\"\",0,0]]}";
    cp = jn__mqtt_state_new(e->m, "copy4", 5);
    assert_int_equal(jn__mqtt_state_decode(cp, bad, strlen(bad), 1), 0);
    assert_int_equal(cp->inflight, 1); /* only the one past PUBREC, without a message */
    assert_int_equal(cp->slots[6 % cp->cap].state, 1);
    assert_null(cp->slots[6 % cp->cap].ret);
    jn__mqtt_state_end(cp);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, pa);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
    fake_free(f);
}

/* Across a stop and start of the door and the broker: QoS 1 resent with
 * DUP, its packet id and RETAIN; QoS 2 past PUBREC gets its PUBREL. */
static void test_retained_restart(void **state)
{
    env_t *e = *state;
    jn_mqtt_packet_t p;
    set_retained(e, "s/one", "uno", 1);
    set_retained(e, "s/two", "dos", 2);
    fake_t *f = connect_client(e, "rr", true, NULL, 0, false);
    subscribe(f, "s/one", 2, 0);
    uint16_t p1 = 0, p2 = 0;
    expect_retained(f, "s/one", "uno", 1, false, 0, &p1);
    subscribe(f, "s/two", 2, 0);
    expect_retained(f, "s/two", "dos", 2, false, 0, &p2);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBREC, p2);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBREL);
    mqtt_state_t *st = jn__mqtt_state_find(e->m, "rr", 2);
    assert_null(st->slots[p2 % st->cap].ret); /* past PUBREC: no message needed */
    assert_int_equal(jn__mqtt_retained_find(e->m, "s/two", 5)->refs, 1);
    restart(e);
    fake_free(f);

    f = connect_client(e, "rr", false, NULL, 0, true);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBREL);
    assert_int_equal(p.u.ack.packet_id, p2);
    expect_retained(f, "s/one", "uno", 1, true, 0, &p1);
    env_spin(e);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, p1);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBCOMP, p2);
    st = jn__mqtt_state_find(e->m, "rr", 2);
    assert_int_equal(st->inflight, 0);
    /* A restart with a slot held: the stop frees it (ASan: no leak). */
    set_retained(e, "s/one", "again", 1);
    subscribe(f, "s/one", 1, 0);
    uint16_t p3 = 0;
    expect_retained(f, "s/one", "again", 1, false, 0, &p3);
    set_retained(e, "s/one", "later", 1); /* replaced: only the slot holds "again" */
    restart(e);
    fake_free(f);
    /* Replaced before the stop: the saved entry names a message the store
     * no longer has, so it is not resent. */
    f = connect_client(e, "rr", false, NULL, 0, true);
    env_spin(e);
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), 0);
    fake_free(f);
}

/* ---- retained messages waiting for window room ---- */

/* CONNECT (MQTT 5) with Receive Maximum |rm| and session expiry |expiry|;
 * checks the CONNACK. */
static fake_t *connect_rm(env_t *e, const char *id, bool clean, uint32_t expiry, uint16_t rm, bool present)
{
    return connect_full(e, id, clean, expiry, NULL, 0, rm, present);
}

static void unsubscribe(fake_t *f, const char *filter)
{
    send_sub_packet(f, JN_MQTT_V5, filter, 0, 0, 2, true);
    jn_mqtt_packet_t p;
    assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_UNSUBACK);
}

/* Pops the retained PUBLISHes the server wrote, at most |max|: each must
 * be on a topic "<prefix>/<digit>" at |qos| with RETAIN (and DUP as
 * |dup|); marks its digit in |seen| (never twice) and returns the packet
 * ids in |pids|. Returns how many. */
static int pop_max(fake_t *f, const char *prefix, uint8_t qos, bool dup, bool *seen, uint16_t *pids, int max)
{
    int n = 0;
    jn_mqtt_packet_t p;
    while (f->out.len && n < max) {
        assert_int_equal(next_packet(f, JN_MQTT_V5, &p), JN_MQTT_PUBLISH);
        const jn_mqtt_publish_t *pb = &p.u.publish;
        assert_true(pb->retain);
        assert_int_equal(pb->qos, qos);
        assert_int_equal(pb->dup, dup);
        size_t pl = strlen(prefix);
        assert_int_equal(pb->topic.len, pl + 2);
        assert_memory_equal(pb->topic.data, prefix, pl);
        int d = pb->topic.data[pl + 1] - '0';
        assert_true(d >= 0 && d <= 9);
        if (seen) {
            assert_false(seen[d]);
            seen[d] = true;
        }
        if (pids)
            pids[n] = pb->packet_id;
        n++;
    }
    return n;
}

static int pop_retained(fake_t *f, const char *prefix, uint8_t qos, bool dup, bool *seen, uint16_t *pids)
{
    return pop_max(f, prefix, qos, dup, seen, pids, 8);
}

/* A window of 2 and 5 retained messages: 2 go at once, the others wait and
 * go one per PUBACK, all at QoS 1 with distinct packet ids (none at QoS 0);
 * a QoS 0 one subscribed meanwhile queues behind them. */
static void test_retained_window(void **state)
{
    env_t *e = *state;
    char topic[8];
    for (int i = 1; i <= 5; i++) {
        snprintf(topic, sizeof topic, "w/%d", i);
        set_retained(e, topic, "v", 1);
    }
    set_retained(e, "z/0", "zed", 1);
    fake_t *f = connect_rm(e, "rw", true, 0, 2, false);
    mqtt_state_t *st = jn__mqtt_state_find(e->m, "rw", 2);
    subscribe(f, "w/#", 1, 0);
    bool seen[10] = {false};
    uint16_t all[8], pids[8];
    int got = pop_retained(f, "w", 1, false, seen, all);
    assert_int_equal(got, 2);
    assert_non_null(st->pending);
    assert_int_equal(st->pending->n, 3);
    /* QoS 0 subscription: its message waits behind the pending ones. */
    subscribe(f, "z/#", 0, 0);
    assert_int_equal(f->out.len, 0);
    assert_int_equal(st->pending->n, 4);

    int acked = 0;
    while (got < 4) {
        send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, all[acked++]);
        assert_int_equal(pop_retained(f, "w", 1, false, seen, pids), 1);
        all[got++] = pids[0];
        assert_int_equal(st->inflight, 2);
    }
    assert_int_equal(st->pending->n, 2);
    /* The last QoS 1 one, and right behind it the QoS 0 one (no slot). */
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, all[acked++]);
    assert_int_equal(pop_max(f, "w", 1, false, seen, &all[got++], 1), 1);
    assert_int_equal(pop_retained(f, "z", 0, false, NULL, NULL), 1);
    assert_null(st->pending);
    for (int i = 0; i < 5; i++)
        for (int k = i + 1; k < 5; k++)
            assert_int_not_equal(all[i], all[k]);
    while (acked < 5)
        send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, all[acked++]);
    assert_int_equal(st->inflight, 0);
    assert_int_equal(f->out.len, 0);
    fake_free(f);
}

/* Pending ones go with their subscription (UNSUBSCRIBE) or when it is
 * replaced (matched again); expired ones are skipped when their turn
 * comes; a persistent session keeps them while offline; a clean one
 * drops them (ASan: nothing leaks). */
static void test_retained_pending_lifecycle(void **state)
{
    env_t *e = *state;
    char topic[8];
    for (int i = 1; i <= 4; i++) {
        snprintf(topic, sizeof topic, "u/%d", i);
        set_retained(e, topic, "v", 1);
    }
    fake_t *f = connect_rm(e, "rp", true, 3600, 2, false);
    mqtt_state_t *st = jn__mqtt_state_find(e->m, "rp", 2);
    uint16_t pids[8];

    /* UNSUBSCRIBE: the 2 waiting ones go; acks send nothing more. */
    subscribe(f, "u/#", 1, 0);
    assert_int_equal(pop_retained(f, "u", 1, false, NULL, pids), 2);
    assert_int_equal(st->pending->n, 2);
    unsubscribe(f, "u/#");
    assert_null(st->pending);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, pids[0]);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, pids[1]);
    assert_int_equal(f->out.len, 0);

    /* Replaced: matched again, not queued twice. */
    subscribe(f, "u/#", 1, 0);
    assert_int_equal(pop_retained(f, "u", 1, false, NULL, pids), 2);
    subscribe(f, "u/#", 1, 0);
    assert_int_equal(f->out.len, 0);
    assert_int_equal(st->pending->n, 4);

    /* Offline (persistent): kept; back, the 2 in flight go again with DUP
     * and the others follow as PUBACKs come. */
    fake_free(f);
    assert_non_null(st->pending);
    assert_int_equal(st->pending->n, 4);
    f = connect_rm(e, "rp", false, 3600, 2, true);
    uint16_t again[2];
    assert_int_equal(pop_retained(f, "u", 1, true, NULL, again), 2);
    assert_int_equal(again[0], pids[0]);
    assert_int_equal(again[1], pids[1]);
    bool seen[10] = {false};
    int got = 0;
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, again[0]);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, again[1]);
    got += pop_retained(f, "u", 1, false, seen, pids);
    assert_int_equal(got, 2);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, pids[0]);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, pids[1]);
    got += pop_retained(f, "u", 1, false, seen, pids);
    assert_int_equal(got, 4);
    assert_null(st->pending);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, pids[0]);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, pids[1]);
    unsubscribe(f, "u/#");

    /* Expiry: checked when a waiting one's turn comes. */
    char at[24]; /* one expiry for all three: the clock may tick between them */
    set_expiring_retained(e, "x/1", at);
    set_retained_expiring_at(e, "x/2", at);
    set_retained_expiring_at(e, "x/3", at);
    subscribe(f, "x/#", 1, 0);
    assert_int_equal(pop_retained(f, "x", 1, false, NULL, pids), 2);
    assert_int_equal(st->pending->n, 1);
    mqtt_retained_t *r = st->pending->v[st->pending->head].ret;
    uint8_t *digits = memmem(r->blob, r->len, at, strlen(at));
    assert_non_null(digits);
    memset(digits, '0', strlen(at) - 1);
    digits[strlen(at) - 1] = '1'; /* 1 ms after the epoch: 0 would mean no expiry */
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, pids[0]);
    assert_int_equal(f->out.len, 0);
    assert_null(st->pending);
    send_ack(f, JN_MQTT_V5, JN_MQTT_PUBACK, pids[1]);
    assert_int_equal(st->inflight, 0);
    fake_free(f);

    /* A clean session with messages waiting ends with its connection. */
    f = connect_rm(e, "rq", true, 0, 1, false);
    subscribe(f, "u/#", 1, 0);
    assert_int_equal(pop_retained(f, "u", 1, false, NULL, pids), 1);
    st = jn__mqtt_state_find(e->m, "rq", 2);
    assert_int_equal(st->pending->n, 3);
    fake_free(f);
    assert_null(jn__mqtt_state_find(e->m, "rq", 2));
    /* A persistent one still waiting at shutdown is freed with it
     * (env_free; ASan's leak check). */
    f = connect_rm(e, "rs", true, 3600, 1, false);
    subscribe(f, "u/#", 1, 0);
    assert_int_equal(pop_retained(f, "u", 1, false, NULL, pids), 1);
    fake_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_encode_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_resends_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_skips_completed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_will_across_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retained_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retained_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retained_encode_decode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retained_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retained_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retained_pending_lifecycle, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
