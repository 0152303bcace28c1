/* door_mqtt.c - the `mqtt` door of the bench: an MQTT 3.1.1 client of its
 * own (CONNECT, SUBSCRIBE, PUBLISH at QoS 0, 1 and 2 with PUBACK, PUBREC,
 * PUBREL, PUBCOMP, PINGREQ, DISCONNECT) driving --publishers connections
 * that publish stamped payloads over --topics topics and --subscribers
 * connections that each subscribe to every topic. A delivery is a PUBLISH
 * at a subscriber; latency is its arrival time minus the payload's stamp.
 *
 * Accounting: every message sent is expected once per subscriber. A
 * subscriber remembers the sequence numbers it saw (a bitmap with a cap) so
 * a second copy counts as a duplicate, not a delivery; lost = expected -
 * delivered. Publishers keep at most --inflight unacknowledged QoS 1/2
 * messages; QoS 0 publishers write as fast as the socket takes them. */
#include "bench/bench_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/stamp.h"
#include "common/clock.h"

#define MQTT_TOPIC_MAX 1024         /* bytes of one topic name */
#define MQTT_KEEPALIVE_S 60
#define MQTT_PING_NS 20000000000ull /* ping an idle connection after */
#define MQTT_BATCH 65536            /* QoS 0 bytes queued per write */
#define MQTT_OUT_EXTRA (4u << 20)   /* out cap beyond one batch and one message */
#define MQTT_SUB_PER_PACKET 100     /* topic filters per SUBSCRIBE */
#define MQTT_SEEN_TOTAL (256u << 20) /* bytes of duplicate bitmaps, all subscribers */
#define MQTT_SEEN_MIN (1u << 20)    /* ... but at least this per subscriber */

enum { PKT_CONNECT = 1, PKT_CONNACK, PKT_PUBLISH, PKT_PUBACK, PKT_PUBREC, PKT_PUBREL, PKT_PUBCOMP,
       PKT_SUBSCRIBE, PKT_SUBACK, PKT_UNSUBSCRIBE, PKT_UNSUBACK, PKT_PINGREQ, PKT_PINGRESP, PKT_DISCONNECT };

/* Publisher's view of a packet id. */
enum { PID_FREE = 0, PID_WAIT_PUBACK, PID_WAIT_PUBREC, PID_WAIT_PUBCOMP };

typedef struct mqtt_cfg {
    int publishers;    /* --publishers */
    int subscribers;   /* --subscribers */
    int qos;           /* --qos */
    const char *topic; /* --topic */
    int topics;        /* --topics */
    double rate;       /* --rate, per publisher, 0 = flat out */
    int inflight;      /* --inflight, QoS >= 1 window per publisher */
} mqtt_cfg_t;

typedef struct mqtt_door mqtt_door_t;

typedef struct mconn {
    jn_bclient_t cl;      /* first; ready: CONNACK (publisher) / every SUBACK (subscriber) in */
    mqtt_door_t *d;
    int subacks_due;      /* SUBACKs still expected */
    uint64_t last_out;    /* mono ns of the last packet queued */
    /* publisher */
    uint8_t *pid_state;   /* 65536 PID_* entries (QoS >= 1) */
    uint16_t next_pid;
    /* subscriber */
    uint8_t *seen;        /* bit per sequence number */
    size_t seen_bytes;
    bool seen_off;        /* bitmap hit its cap: duplicates not tracked */
} mconn_t;

struct mqtt_door {
    jn_bench_t *b;
    const mqtt_cfg_t *cfg;
    jn_bfleet_t fleet;     /* over conns */
    mconn_t *conns;        /* publishers first, then subscribers */
    char **topics;         /* --topics names */
    uint16_t *topic_len;
    uint8_t *payload;      /* template, restamped per message */
    uint64_t seq;          /* next sequence number, all publishers */
    size_t seen_max;       /* bitmap cap per subscriber */
    size_t in_max;         /* largest packet we accept + a read chunk */
};

/* ---- wire primitives --------------------------------------------------- */

int jn__bench_mqtt_len_put(uint8_t *out, uint32_t v)
{
    if (v > 268435455u)
        return JN_EINVAL;
    int n = 0;
    do {
        uint8_t byte = v % 128;
        v /= 128;
        if (v)
            byte |= 0x80;
        out[n++] = byte;
    } while (v);
    return n;
}

int jn__bench_mqtt_len_get(const uint8_t *p, size_t len, uint32_t *v)
{
    uint32_t val = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= len)
            return JN_EPARTIAL;
        val |= (uint32_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            /* Overlong forms (a zero continuation byte) are malformed. */
            if (i > 0 && p[i] == 0)
                return JN_EPROTO;
            *v = val;
            return (int)i + 1;
        }
    }
    return JN_EPROTO;
}

/* Appends a fixed header; the caller appends |rl| more bytes. */
static int put_fixed(jn_buf_t *o, uint8_t b0, uint32_t rl)
{
    uint8_t h[5];
    h[0] = b0;
    int n = jn__bench_mqtt_len_put(h + 1, rl);
    if (n < 0)
        return n;
    return jn_buf_append(o, h, (size_t)n + 1);
}

static int put_str(jn_buf_t *o, const char *s, size_t len)
{
    int rc = jn_buf_put_be16(o, (uint16_t)len);
    return rc < 0 ? rc : jn_buf_append(o, s, len);
}

static int put_ack(jn_buf_t *o, uint8_t b0, uint16_t pid)
{
    uint8_t p[4] = {b0, 2, (uint8_t)(pid >> 8), (uint8_t)pid};
    return jn_buf_append(o, p, 4);
}

/* ---- connections ------------------------------------------------------- */

static void mc_queued(mconn_t *m) { m->last_out = jn_mono_ns(); }

static int send_connect(mconn_t *m)
{
    char id[64];
    snprintf(id, sizeof(id), "jnbench-%ld-%c%d", (long)getpid(), m->cl.is_pub ? 'p' : 's', m->cl.idx);
    size_t idlen = strlen(id);
    jn_buf_t *o = &m->cl.c.out;
    uint8_t vh[10] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x02 /* clean session */, 0, MQTT_KEEPALIVE_S};
    int rc = put_fixed(o, PKT_CONNECT << 4, (uint32_t)(sizeof(vh) + 2 + idlen));
    if (rc >= 0)
        rc = jn_buf_append(o, vh, sizeof(vh));
    if (rc >= 0)
        rc = put_str(o, id, idlen);
    mc_queued(m);
    return rc;
}

static int send_subscribes(mconn_t *m)
{
    mqtt_door_t *d = m->d;
    int k = d->cfg->topics;
    jn_buf_t *o = &m->cl.c.out;
    uint16_t pid = 1;
    for (int first = 0; first < k; first += MQTT_SUB_PER_PACKET, pid++) {
        int last = first + MQTT_SUB_PER_PACKET < k ? first + MQTT_SUB_PER_PACKET : k;
        uint32_t rl = 2;
        for (int i = first; i < last; i++)
            rl += 2u + d->topic_len[i] + 1u;
        int rc = put_fixed(o, PKT_SUBSCRIBE << 4 | 0x02, rl);
        if (rc >= 0)
            rc = jn_buf_put_be16(o, pid);
        for (int i = first; i < last && rc >= 0; i++) {
            rc = put_str(o, d->topics[i], d->topic_len[i]);
            if (rc >= 0)
                rc = jn_buf_put_u8(o, (uint8_t)d->cfg->qos);
        }
        if (rc < 0)
            return rc;
        m->subacks_due++;
    }
    mc_queued(m);
    return 0;
}

/* Free packet id for a new QoS >= 1 message (inflight < 65535 holds). */
static uint16_t take_pid(mconn_t *m)
{
    for (;;) {
        m->next_pid++;
        if (m->next_pid == 0)
            m->next_pid = 1;
        if (m->pid_state[m->next_pid] == PID_FREE)
            return m->next_pid;
    }
}

/* Queues as many messages as the window, the rate and the batch allow. */
static void pub_fill(jn_bclient_t *k)
{
    mconn_t *m = k->c.owner;
    mqtt_door_t *d = m->d;
    jn_bench_t *b = d->b;
    const mqtt_cfg_t *cfg = d->cfg;
    if (!m->cl.ready || m->cl.dead || !m->cl.c.connected || b->phase != JN_BENCH_RUNNING)
        return;
    size_t size = (size_t)b->o->size;
    uint64_t allowed = jn__bclient_allowance(k, cfg->rate);
    bool any = false;
    while (allowed > 0 && m->cl.c.out.len < MQTT_BATCH) {
        if (cfg->qos > 0 && m->cl.inflight >= (uint32_t)cfg->inflight)
            break;
        if (!jn__bench_take(b))
            break;
        int t = (int)((m->cl.published + (uint64_t)m->cl.idx) % (uint64_t)cfg->topics);
        uint32_t rl = 2u + d->topic_len[t] + (cfg->qos ? 2u : 0u) + (uint32_t)size;
        uint16_t pid = 0;
        if (cfg->qos)
            pid = take_pid(m);
        jn_buf_t *o = &m->cl.c.out;
        int rc = put_fixed(o, (uint8_t)(PKT_PUBLISH << 4 | cfg->qos << 1), rl);
        if (rc >= 0)
            rc = put_str(o, d->topics[t], d->topic_len[t]);
        if (rc >= 0 && cfg->qos)
            rc = jn_buf_put_be16(o, pid);
        if (rc >= 0)
            rc = jn_buf_reserve(o, size);
        if (rc < 0) {
            b->errors++;
            break;
        }
        memcpy(o->data + o->len, d->payload, size);
        if (jn_stamp_write(o->data + o->len, size, (uint32_t)d->seq, jn_mono_ns()) < 0) {
            b->errors++;
            break;
        }
        o->len += size;
        d->seq++;
        if (cfg->qos) {
            m->pid_state[pid] = cfg->qos == 1 ? PID_WAIT_PUBACK : PID_WAIT_PUBREC;
            m->cl.inflight++;
        }
        m->cl.published++;
        allowed--;
        b->sent++;
        b->sent_bytes += size;
        b->expected += (uint64_t)cfg->subscribers;
        any = true;
    }
    if (any)
        mc_queued(m);
    jn__bconn_flush(&m->cl.c);
}

/* True when |seq| was seen before by |m|; remembers it otherwise. */
static bool seen_before(mconn_t *m, uint32_t seq)
{
    if (m->seen_off || m->d->seq > UINT32_MAX)
        return false;
    size_t byte = seq / 8;
    if (byte >= m->seen_bytes) {
        size_t want = m->seen_bytes ? m->seen_bytes : 4096;
        while (want <= byte)
            want *= 2;
        if (want > m->d->seen_max)
            want = m->d->seen_max;
        uint8_t *p = want > byte ? realloc(m->seen, want) : NULL;
        if (!p) {
            m->seen_off = true;
            return false;
        }
        memset(p + m->seen_bytes, 0, want - m->seen_bytes);
        m->seen = p;
        m->seen_bytes = want;
    }
    uint8_t bit = (uint8_t)(1u << (seq % 8));
    if (m->seen[byte] & bit)
        return true;
    m->seen[byte] |= bit;
    return false;
}

static int on_publish(mconn_t *m, uint8_t flags, const uint8_t *p, uint32_t rl)
{
    jn_bench_t *b = m->d->b;
    int qos = (flags >> 1) & 3;
    if (qos == 3 || rl < 2)
        return JN_EPROTO;
    uint32_t tlen = jn_load_be16(p);
    uint32_t off = 2 + tlen + (qos ? 2u : 0u);
    if (off > rl)
        return JN_EPROTO;
    uint16_t pid = qos ? jn_load_be16(p + 2 + tlen) : 0;
    const uint8_t *payload = p + off;
    size_t plen = rl - off;
    uint32_t seq;
    uint64_t ns;
    if (m->cl.is_pub) {
        b->errors++; /* nobody subscribed publishers to anything */
    } else if (jn_stamp_read(payload, plen, &seq, &ns) < 0) {
        b->errors++; /* not ours: retained or someone else's message */
    } else if (seen_before(m, seq)) {
        b->duplicates++;
    } else {
        uint64_t now = jn_mono_ns();
        jn__bench_delivered(b, plen, now > ns ? now - ns : 0);
    }
    int rc = 0;
    if (qos == 1)
        rc = put_ack(&m->cl.c.out, PKT_PUBACK << 4, pid);
    else if (qos == 2)
        rc = put_ack(&m->cl.c.out, PKT_PUBREC << 4, pid);
    if (qos)
        mc_queued(m);
    return rc;
}

static int on_packet(mconn_t *m, uint8_t b0, const uint8_t *p, uint32_t rl)
{
    mqtt_door_t *d = m->d;
    jn_bench_t *b = d->b;
    int type = b0 >> 4;
    uint16_t pid = rl >= 2 ? jn_load_be16(p) : 0;
    switch (type) {
    case PKT_CONNACK:
        if (rl != 2)
            return JN_EPROTO;
        if (p[1] != 0) {
            static const char *const why[] = {"", "unacceptable protocol version", "identifier rejected",
                                              "server unavailable", "bad user name or password",
                                              "not authorized"};
            jn__bench_fail(b, "the broker refused the connection: %s (code %d)", p[1] < 6 ? why[p[1]] : "?",
                           p[1]);
            return JN_EAUTH;
        }
        if (m->cl.is_pub)
            jn__bclient_ready(&m->cl);
        else if (send_subscribes(m) < 0)
            return JN_ETOOBIG;
        return 0;
    case PKT_SUBACK:
        if (m->cl.is_pub || rl < 3 || m->subacks_due <= 0)
            return JN_EPROTO;
        for (uint32_t i = 2; i < rl; i++)
            if (p[i] == 0x80) {
                jn__bench_fail(b, "the broker refused the subscription to %s", d->cfg->topic);
                return JN_EPERM;
            }
        if (--m->subacks_due == 0)
            jn__bclient_ready(&m->cl);
        return 0;
    case PKT_PUBLISH:
        return on_publish(m, b0 & 0x0f, p, rl);
    case PKT_PUBACK:
    case PKT_PUBREC:
    case PKT_PUBCOMP: {
        if (rl != 2 || !m->cl.is_pub)
            return JN_EPROTO;
        uint8_t want = type == PKT_PUBACK ? PID_WAIT_PUBACK : type == PKT_PUBREC ? PID_WAIT_PUBREC : PID_WAIT_PUBCOMP;
        if (m->pid_state[pid] != want) {
            b->errors++; /* an ack for nothing we sent: count, go on */
            return 0;
        }
        if (type == PKT_PUBREC) {
            m->pid_state[pid] = PID_WAIT_PUBCOMP;
            mc_queued(m);
            return put_ack(&m->cl.c.out, PKT_PUBREL << 4 | 0x02, pid);
        }
        m->pid_state[pid] = PID_FREE;
        m->cl.inflight--;
        b->acked++;
        return 0;
    }
    case PKT_PUBREL:
        if (rl != 2 || (b0 & 0x0f) != 0x02)
            return JN_EPROTO;
        mc_queued(m);
        return put_ack(&m->cl.c.out, PKT_PUBCOMP << 4, pid);
    case PKT_PINGRESP:
        return 0;
    default:
        return JN_EPROTO;
    }
}

static int mc_on_data(jn_bconn_t *c)
{
    mconn_t *m = c->owner;
    mqtt_door_t *d = m->d;
    int rc = 0;
    size_t off = 0;
    while (off < c->in.len) {
        const uint8_t *p = c->in.data + off;
        size_t avail = c->in.len - off;
        if (avail < 2)
            break;
        uint32_t rl;
        int n = jn__bench_mqtt_len_get(p + 1, avail - 1, &rl);
        if (n == JN_EPARTIAL)
            break;
        if (n < 0) {
            rc = n;
            break;
        }
        size_t total = 1 + (size_t)n + rl;
        if (total > d->in_max - JN_BENCH_READ_CHUNK) {
            rc = JN_ETOOBIG;
            break;
        }
        if (avail < total)
            break;
        rc = on_packet(m, p[0], p + 1 + n, rl);
        if (rc < 0)
            break;
        off += total;
    }
    return jn__bclient_parsed(&m->cl, off, rc);
}

static void mc_on_connect(jn_bconn_t *c)
{
    mconn_t *m = c->owner;
    if (send_connect(m) < 0)
        jn__bconn_close(c, JN_ENOMEM);
}

static const jn_bfleet_kind_t mqtt_kind = {
    .door = "mqtt",
    .pub = "publisher",
    .sub = "subscriber",
    .malformed = "the broker sent a malformed or unexpected packet",
    .too_big = "packet larger than expected",
    .on_connect = mc_on_connect,
    .on_data = mc_on_data,
    .fill = pub_fill,
};

/* ---- the door ---------------------------------------------------------- */

static void mqtt_defaults(void *cfg)
{
    mqtt_cfg_t *c = cfg;
    c->publishers = 1;
    c->subscribers = 1;
    c->qos = 0;
    c->topic = "bench/t";
    c->topics = 1;
    c->rate = 0;
    c->inflight = 64;
}

static int mqtt_check(const jn_bench_opts_t *o, char *err, size_t errlen)
{
    const mqtt_cfg_t *c = o->cfg;
    size_t tl = strlen(c->topic);
    if (tl + 8 > MQTT_TOPIC_MAX || strpbrk(c->topic, "+#")) {
        snprintf(err, errlen, "--topic must be a topic name (no + or #) of at most %d bytes", MQTT_TOPIC_MAX - 8);
        return -1;
    }
    if ((size_t)o->size + MQTT_TOPIC_MAX + 16 > 268435455u) {
        snprintf(err, errlen, "--size too large for MQTT");
        return -1;
    }
    return 0;
}

static int mqtt_open(jn_bench_t *b)
{
    const mqtt_cfg_t *cfg = b->cfg;
    mqtt_door_t *d = calloc(1, sizeof(*d));
    if (!d)
        goto nomem;
    b->door_state = d;
    b->has_loss = true;
    d->b = b;
    d->cfg = cfg;
    size_t size = (size_t)b->o->size;
    d->payload = malloc(size);
    d->topics = calloc((size_t)cfg->topics, sizeof(*d->topics));
    d->topic_len = calloc((size_t)cfg->topics, sizeof(*d->topic_len));
    d->conns = calloc((size_t)cfg->publishers + (size_t)cfg->subscribers, sizeof(*d->conns));
    if (!d->payload || !d->topics || !d->topic_len || !d->conns)
        goto nomem;
    if (jn_stamp_fill(d->payload, size, 0, 0) < 0)
        goto nomem;
    for (int i = 0; i < cfg->topics; i++) {
        char t[MQTT_TOPIC_MAX];
        int tl = cfg->topics == 1 ? snprintf(t, sizeof(t), "%s", cfg->topic)
                                  : snprintf(t, sizeof(t), "%s/%d", cfg->topic, i);
        if (tl < 0 || (size_t)tl >= sizeof(t) || !(d->topics[i] = strdup(t)))
            goto nomem;
        d->topic_len[i] = (uint16_t)tl;
    }
    d->seen_max = MQTT_SEEN_TOTAL / (cfg->subscribers ? (size_t)cfg->subscribers : 1);
    if (d->seen_max < MQTT_SEEN_MIN)
        d->seen_max = MQTT_SEEN_MIN;
    d->in_max = size + MQTT_TOPIC_MAX + 16 + JN_BENCH_READ_CHUNK;
    if (d->in_max < 2 * JN_BENCH_READ_CHUNK)
        d->in_max = 2 * JN_BENCH_READ_CHUNK;
    size_t out_max = MQTT_BATCH + size + MQTT_TOPIC_MAX + MQTT_OUT_EXTRA;
    jn__bfleet_init(&d->fleet, b, &mqtt_kind, d->conns, sizeof(*d->conns), cfg->publishers, cfg->subscribers,
                    d->in_max, out_max);
    if (cfg->rate > 0)
        jn__bfleet_pace(&d->fleet);
    for (int i = 0; i < d->fleet.nconns; i++) {
        mconn_t *m = &d->conns[i];
        m->d = d;
        if (m->cl.is_pub && cfg->qos && !(m->pid_state = calloc(65536, 1)))
            goto nomem;
    }
    return jn__bfleet_connect(&d->fleet);
nomem:
    jn__bench_fail(b, "out of memory");
    return JN_ENOMEM;
}

static void mqtt_start(jn_bench_t *b) { jn__bfleet_start(&((mqtt_door_t *)b->door_state)->fleet); }
static void mqtt_drain(jn_bench_t *b) { jn__bfleet_drain(&((mqtt_door_t *)b->door_state)->fleet); }
static bool mqtt_settled(jn_bench_t *b) { return jn__bfleet_settled(&((mqtt_door_t *)b->door_state)->fleet); }

static void mqtt_tick(jn_bench_t *b)
{
    mqtt_door_t *d = b->door_state;
    uint64_t now = jn_mono_ns();
    for (int i = 0; i < d->fleet.nconns; i++) {
        mconn_t *m = &d->conns[i];
        if (!m->cl.ready || m->cl.dead || !m->cl.c.connected || now - m->last_out < MQTT_PING_NS)
            continue;
        static const uint8_t ping[2] = {PKT_PINGREQ << 4, 0};
        if (jn_buf_append(&m->cl.c.out, ping, 2) == 0) {
            mc_queued(m);
            jn__bconn_flush(&m->cl.c);
        }
    }
}

static void mqtt_close(jn_bench_t *b)
{
    mqtt_door_t *d = b->door_state;
    if (!d)
        return;
    for (int i = 0; i < d->fleet.nconns; i++) {
        mconn_t *m = &d->conns[i];
        if (m->cl.c.connected && !m->cl.c.writing && m->cl.c.out.len == 0) {
            /* A polite goodbye when the socket is idle; best effort. */
            static const uint8_t bye[2] = {PKT_DISCONNECT << 4, 0};
            uv_buf_t ub = uv_buf_init((char *)bye, 2);
            (void)uv_try_write((uv_stream_t *)&m->cl.c.tcp, &ub, 1);
        }
    }
    jn__bfleet_close(&d->fleet);
}

static void mqtt_free(jn_bench_t *b)
{
    mqtt_door_t *d = b->door_state;
    jn__bfleet_free(&d->fleet);
    for (int i = 0; i < d->fleet.nconns; i++) {
        free(d->conns[i].pid_state);
        free(d->conns[i].seen);
    }
    for (int i = 0; d->topics && i < d->cfg->topics; i++)
        free(d->topics[i]);
    free(d->topics);
    free(d->topic_len);
    free(d->conns);
    free(d->payload);
    free(d);
    b->door_state = NULL;
}

static void mqtt_describe(const jn_bench_t *b, json_t *config)
{
    const mqtt_cfg_t *c = b->cfg;
    json_object_set_new(config, "qos", json_integer(c->qos));
    json_object_set_new(config, "publishers", json_integer(c->publishers));
    json_object_set_new(config, "subscribers", json_integer(c->subscribers));
    json_object_set_new(config, "topic", json_string(c->topic));
    json_object_set_new(config, "topics", json_integer(c->topics));
    json_object_set_new(config, "rate", json_real(c->rate));
    if (c->qos)
        json_object_set_new(config, "inflight", json_integer(c->inflight));
}

#define MOPT(f) offsetof(mqtt_cfg_t, f)
static const jn_bench_opt_t mqtt_opts[] = {
    {"publishers", JN_BOPT_INT, MOPT(publishers), 1, 10000, "publishing connections (default 1)"},
    {"subscribers", JN_BOPT_INT, MOPT(subscribers), 0, 10000, "subscribing connections, each on every topic (default 1)"},
    {"qos", JN_BOPT_INT, MOPT(qos), 0, 2, "QoS of publications and subscriptions: 0, 1 or 2 (default 0)"},
    {"topic", JN_BOPT_STR, MOPT(topic), 0, 0, "topic, or prefix of topic/0..K-1 with --topics K (default bench/t)"},
    {"topics", JN_BOPT_INT, MOPT(topics), 1, 10000, "topics to spread publications over (default 1)"},
    {"rate", JN_BOPT_DOUBLE, MOPT(rate), 0, 1e9, "messages/s per publisher, 0 = flat out (default 0)"},
    {"inflight", JN_BOPT_INT, MOPT(inflight), 1, 65535, "unacknowledged QoS 1/2 messages per publisher (default 64)"},
    {NULL, 0, 0, 0, 0, NULL},
};

const jn_bench_door_t jn__bench_door_mqtt = {
    .name = "mqtt",
    .summary = "MQTT 3.1.1 publishers and subscribers, QoS 0/1/2",
    .default_url = "mqtt://127.0.0.1:1883",
    .default_port = 1883,
    .schemes = {"mqtt", "tcp", NULL},
    .opts = mqtt_opts,
    .cfg_size = sizeof(mqtt_cfg_t),
    .defaults = mqtt_defaults,
    .check = mqtt_check,
    .open = mqtt_open,
    .start = mqtt_start,
    .drain = mqtt_drain,
    .settled = mqtt_settled,
    .tick = mqtt_tick,
    .close = mqtt_close,
    .free = mqtt_free,
    .describe = mqtt_describe,
};
