/* mqtt_fake.h - what the MQTT door's unit tests share: a fake transport
 * (no sockets) collecting what the server writes, a real broker and door
 * in a temporary directory, and helpers to feed packets in and pop them
 * out. Included by one test file each (static inline: a test uses what it
 * needs). Needs cmocka.h and proto/mqtt/mqtt_int.h included first.
 */
#ifndef JN_TEST_MQTT_FAKE_H
#define JN_TEST_MQTT_FAKE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fake {
    jn_buf_t out;         /* what the server wrote, not yet popped */
    bool closed;
    uint64_t timeout;     /* the last timeout the session asked for */
    jn_mqtt_session_t *s; /* NULL once the session ended */
} fake_t;

static inline jn_buf_t *fake_outbuf(void *c) { return ((fake_t *)c)->closed ? NULL : &((fake_t *)c)->out; }
static inline void fake_commit(void *c) { (void)c; }
static inline bool fake_above(void *c) { (void)c; return false; }
static inline void fake_close(void *c) { ((fake_t *)c)->closed = true; }
static inline void fake_timeout(void *c, uint64_t ms) { ((fake_t *)c)->timeout = ms; }
static inline void fake_abort(void *c)
{
    fake_t *f = c;
    f->closed = true;
    if (f->s)
        jn_mqtt_session_closed(f->s, 0);
    f->s = NULL;
}

static const jn_mqtt_transport_t fake_transport = {fake_outbuf, fake_commit, fake_above,
                                                   fake_close, fake_abort, fake_timeout};

typedef struct env {
    char dir[64];
    uv_loop_t loop;
    jn_broker_t *b;
    jn_mqtt_t *m;
    bool no_sys;          /* no $SYS updates (their timer would publish) */
} env_t;

/* Opens the broker and the door on e->dir. */
static inline void env_open(env_t *e)
{
    jn_broker_config_t bc;
    jn_broker_config_default(&bc);
    bc.data_dir = e->dir;
    assert_int_equal(jn_broker_open(&e->loop, &bc, NULL, &e->b), 0);
    jn_mqtt_config_t mc;
    jn_mqtt_config_default(&mc);
    mc.allow_anonymous = true;
    mc.version = "test";
    if (e->no_sys)
        mc.sys_interval_ms = 0;
    e->m = jn_mqtt_new(NULL, e->b, &mc);
    assert_non_null(e->m);
}

/* Closes the door and the broker as a graceful stop does. */
static inline void env_close(env_t *e)
{
    jn_mqtt_free(e->m);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    jn_broker_close(e->b);
    /* Until the sync jobs the logs left on the thread pool are done: the
     * loop (and the env holding it) must outlive them. */
    uv_run(&e->loop, UV_RUN_DEFAULT);
    e->m = NULL;
    e->b = NULL;
}

/* A new environment in a fresh "/tmp/<prefix>XXXXXX" directory. */
static inline env_t *env_new(const char *prefix, bool no_sys)
{
    env_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    snprintf(e->dir, sizeof e->dir, "/tmp/%sXXXXXX", prefix);
    assert_non_null(mkdtemp(e->dir));
    assert_int_equal(uv_loop_init(&e->loop), 0);
    e->no_sys = no_sys;
    env_open(e);
    return e;
}

static inline void env_free(env_t *e)
{
    env_close(e);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
}

/* Runs the loop a little: deliveries and timers that are due. */
static inline void env_spin(env_t *e)
{
    for (int i = 0; i < 20; i++)
        uv_run(&e->loop, UV_RUN_NOWAIT);
}

static inline fake_t *fake_new(env_t *e)
{
    fake_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    jn_buf_init(&f->out, 1u << 24);
    f->s = jn_mqtt_session_new(e->m, &fake_transport, f, true);
    assert_non_null(f->s);
    return f;
}

/* Frees the fake; its session (if still open) ends as if the TCP
 * connection dropped. */
static inline void fake_free(fake_t *f)
{
    if (f->s)
        jn_mqtt_session_closed(f->s, 0);
    jn_buf_free(&f->out);
    free(f);
}

/* Hands |in| to the session, which must take all of it. */
static inline void feed(fake_t *f, const jn_buf_t *in)
{
    size_t n = jn_mqtt_session_input(f->s, in->data, in->len);
    assert_int_equal(n, in->len);
}

/* Pops the next packet the server wrote; returns its type (0: none). Views
 * in |p| stay valid until the next pop. */
static inline int next_packet(fake_t *f, uint8_t version, jn_mqtt_packet_t *p)
{
    if (f->out.len == 0)
        return 0;
    int n = jn_mqtt_decode(f->out.data, f->out.len, 0, 0, p);
    if (p->type != JN_MQTT_CONNECT)
        n = jn_mqtt_decode(f->out.data, f->out.len, version, 0, p);
    assert_true(n > 0);
    static uint8_t keep[1 << 16];
    assert_true((size_t)n <= sizeof keep);
    memcpy(keep, f->out.data, (size_t)n);
    jn_buf_consume(&f->out, (size_t)n);
    assert_int_equal(jn_mqtt_decode(keep, (size_t)n, version, 0, p), n);
    return p->type;
}

/* SUBSCRIBE (or, with |unsub|, UNSUBSCRIBE) of the one |filter|, packet id
 * |pid|: at |qos|, with subscription identifier |sub_id| when not 0
 * (MQTT 5); both ignored by UNSUBSCRIBE. */
static inline void send_sub_packet(fake_t *f, uint8_t v, const char *filter, uint8_t qos, uint32_t sub_id,
                                   uint16_t pid, bool unsub)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    jn_mqtt_sub_t e;
    memset(&e, 0, sizeof e);
    e.filter.data = (const uint8_t *)filter;
    e.filter.len = (uint32_t)strlen(filter);
    e.qos = qos;
    jn_mqtt_subscribe_t s;
    memset(&s, 0, sizeof s);
    s.packet_id = pid;
    s.count = 1;
    s.subs = &e;
    if (sub_id) {
        s.props.present = JN_MQTT_PBIT(JN_MQTT_PROP_SUB_ID);
        s.props.sub_id = sub_id;
    }
    assert_true((unsub ? jn_mqtt_encode_unsubscribe(&b, v, &s) : jn_mqtt_encode_subscribe(&b, v, &s)) > 0);
    feed(f, &b);
    jn_buf_free(&b);
}

/* SUBSCRIBE |filter| at |qos| (packet id 1), with subscription
 * identifier |sub_id| when not 0 (MQTT 5). */
static inline void send_subscribe_id(fake_t *f, uint8_t v, const char *filter, uint8_t qos, uint32_t sub_id)
{
    send_sub_packet(f, v, filter, qos, sub_id, 1, false);
}

/* Sends PUBACK, PUBREC, PUBREL or PUBCOMP (|type|) for |pid|, reason 0. */
static inline void send_ack(fake_t *f, uint8_t v, uint8_t type, uint16_t pid)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    jn_mqtt_ack_t a;
    memset(&a, 0, sizeof a);
    a.packet_id = pid;
    assert_true(jn_mqtt_encode_ack(&b, v, type, &a) > 0);
    feed(f, &b);
    jn_buf_free(&b);
}

/* Publishes |value| on |subject| from outside MQTT, at QoS |qos_hdr|
 * ("0" or "1") or, without it, at the subscription's QoS. */
static inline void broker_publish(env_t *e, const char *subject, const char *value, const char *qos_hdr)
{
    jn_header_t h = {(const uint8_t *)MQTT_H_QOS, sizeof MQTT_H_QOS - 1, (const uint8_t *)qos_hdr,
                     qos_hdr ? (int32_t)strlen(qos_hdr) : 0};
    jn_record_t rec;
    memset(&rec, 0, sizeof rec);
    rec.key_len = -1;
    rec.value = (const uint8_t *)value;
    rec.value_len = (int32_t)strlen(value);
    rec.headers = qos_hdr ? &h : NULL;
    rec.header_count = qos_hdr ? 1 : 0;
    jn_publish_result_t res;
    assert_int_equal(jn_broker_publish(e->b, subject, strlen(subject), &rec, 1, -1, &res), 0);
}

#endif
