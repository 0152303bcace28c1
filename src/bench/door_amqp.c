/* door_amqp.c - the `amqp` door of the bench: an AMQP 0-9-1 client of its
 * own, enough to load RabbitMQ or Junction's AMQP door alike. Each
 * connection opens one channel, declares the queue (durable with
 * --persistent), binds it when an exchange is named, and purges it, so a
 * run never sees the leftovers of another. Publishers then send
 * Basic.Publish + header + body frames (delivery-mode 2 with
 * --persistent), optionally in confirm mode (Confirm.Select, a window of
 * --inflight unconfirmed messages, Basic.Ack/Nack with or without
 * "multiple"); consumers Basic.Consume, either no-ack or with manual acks
 * (Basic.Qos --prefetch, one Basic.Ack "multiple" per --ack-every
 * deliveries).
 *
 * Accounting: consumers compete on one queue, so every message is expected
 * once in total (not once per consumer); one bitmap of sequence numbers
 * tells a redelivery (a duplicate) from a delivery. */
#include "bench/bench_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/stamp.h"
#include "common/clock.h"

#define AMQP_BATCH 65536             /* bytes queued per write when flat out */
#define AMQP_OUT_EXTRA (4u << 20)    /* out cap beyond one batch and one message */
#define AMQP_FRAME_MAX 131072u       /* what we ask for in Tune-Ok */
#define AMQP_FRAME_MIN 4096u         /* smallest frame-max the spec allows */
#define AMQP_SEEN_MAX (256u << 20)   /* bytes of the duplicate bitmap */
#define AMQP_NAME_MAX 255            /* a shortstr */

enum { FRAME_METHOD = 1, FRAME_HEADER = 2, FRAME_BODY = 3, FRAME_HEARTBEAT = 8, FRAME_END = 0xCE };

#define M(c, m) ((uint32_t)(c) << 16 | (uint32_t)(m))
enum {
    CONN_START = M(10, 10), CONN_START_OK = M(10, 11), CONN_TUNE = M(10, 30), CONN_TUNE_OK = M(10, 31),
    CONN_OPEN = M(10, 40), CONN_OPEN_OK = M(10, 41), CONN_CLOSE = M(10, 50), CONN_CLOSE_OK = M(10, 51),
    CH_OPEN = M(20, 10), CH_OPEN_OK = M(20, 11), CH_FLOW = M(20, 20), CH_FLOW_OK = M(20, 21),
    CH_CLOSE = M(20, 40), CH_CLOSE_OK = M(20, 41),
    Q_DECLARE = M(50, 10), Q_DECLARE_OK = M(50, 11), Q_BIND = M(50, 20), Q_BIND_OK = M(50, 21),
    Q_PURGE = M(50, 30), Q_PURGE_OK = M(50, 31),
    B_QOS = M(60, 10), B_QOS_OK = M(60, 11), B_CONSUME = M(60, 20), B_CONSUME_OK = M(60, 21),
    B_PUBLISH = M(60, 40), B_DELIVER = M(60, 60), B_ACK = M(60, 80), B_NACK = M(60, 120),
    CONFIRM_SELECT = M(85, 10), CONFIRM_SELECT_OK = M(85, 11),
};

typedef struct amqp_cfg {
    int publishers;       /* --publishers */
    int consumers;        /* --consumers */
    const char *queue;    /* --queue */
    const char *exchange; /* --exchange, "" = the default exchange */
    const char *routing_key; /* --routing-key, default: the queue's name */
    bool persistent;      /* --persistent: durable queue, delivery-mode 2 */
    bool confirms;        /* --confirms */
    int ack_every;        /* --ack-every, 0 = no-ack consumers */
    int prefetch;         /* --prefetch (manual acks) */
    int inflight;         /* --inflight: unconfirmed messages per publisher */
    const char *user;     /* --user */
    const char *password; /* --password */
    const char *vhost;    /* --vhost */
} amqp_cfg_t;

typedef struct amqp_door amqp_door_t;

/* Where a connection is in its set-up; each step waits for one "-Ok". */
enum { ST_HEADER, ST_TUNE, ST_OPEN, ST_CHANNEL, ST_DECLARE, ST_BIND, ST_PURGE, ST_CONFIRM, ST_QOS, ST_CONSUME,
       ST_READY };

typedef struct aconn {
    jn_bclient_t cl;     /* first; inflight: unconfirmed in confirm mode */
    amqp_door_t *d;
    int state;           /* ST_* */
    bool flow_stopped;   /* Channel.Flow active=false */
    uint32_t frame_max;  /* negotiated */
    /* publisher, confirm mode */
    uint64_t next_tag;   /* delivery tag of the next publish (from 1) */
    uint64_t low_tag;    /* lowest tag possibly unconfirmed */
    uint8_t *pending;    /* --inflight slots, tag % inflight */
    /* consumer: the message being assembled */
    int msg_stage;       /* 0 none, 1 header expected, 2 body frames */
    uint64_t msg_tag;
    uint64_t body_size, body_got;
    uint8_t stamp[JN_STAMP_LEN];
    uint64_t unacked;    /* deliveries not yet acknowledged (manual acks) */
    uint64_t last_tag;   /* delivery tag of the last delivery */
} aconn_t;

struct amqp_door {
    jn_bench_t *b;
    const amqp_cfg_t *cfg;
    jn_bfleet_t fleet;   /* over conns */
    aconn_t *conns;      /* publishers first, then consumers */
    uint8_t *payload;
    uint64_t seq;
    uint8_t *seen;       /* bit per sequence number, all consumers */
    size_t seen_bytes;
    bool seen_off;
    size_t in_max;
    const char *rkey;    /* routing key used by publishers */
};

/* ---- frame building ---------------------------------------------------- */

static int put_shortstr(jn_buf_t *o, const char *s)
{
    size_t n = strlen(s);
    if (n > AMQP_NAME_MAX)
        return JN_EINVAL;
    int rc = jn_buf_put_u8(o, (uint8_t)n);
    return rc < 0 ? rc : jn_buf_append(o, s, n);
}

/* Starts a frame; returns the offset of its size field for frame_end. */
static int frame_begin(jn_buf_t *o, uint8_t type, uint16_t channel, size_t *size_at)
{
    int rc = jn_buf_put_u8(o, type);
    if (rc >= 0)
        rc = jn_buf_put_be16(o, channel);
    *size_at = o->len;
    if (rc >= 0)
        rc = jn_buf_put_be32(o, 0);
    return rc;
}

static int frame_end(jn_buf_t *o, size_t size_at)
{
    jn_store_be32(o->data + size_at, (uint32_t)(o->len - size_at - 4));
    return jn_buf_put_u8(o, FRAME_END);
}

static int method_begin(jn_buf_t *o, uint16_t channel, uint32_t method, size_t *size_at)
{
    int rc = frame_begin(o, FRAME_METHOD, channel, size_at);
    if (rc >= 0)
        rc = jn_buf_put_be16(o, (uint16_t)(method >> 16));
    if (rc >= 0)
        rc = jn_buf_put_be16(o, (uint16_t)method);
    return rc;
}

/* ---- set-up ------------------------------------------------------------ */

static const char *exchange_of(const amqp_cfg_t *cfg) { return cfg->exchange ? cfg->exchange : ""; }

/* Queues the request of the set-up step |st| and moves there; steps that
 * do not apply to this connection are skipped. */
static int setup_step(aconn_t *a, int st)
{
    amqp_door_t *d = a->d;
    const amqp_cfg_t *cfg = d->cfg;
    jn_buf_t *o = &a->cl.c.out;
    size_t at;
    int rc = 0;
    for (;; st++) {
        if (st == ST_BIND && !*exchange_of(cfg))
            continue;
        if (st == ST_CONFIRM && !(a->cl.is_pub && cfg->confirms))
            continue;
        if ((st == ST_QOS && (a->cl.is_pub || cfg->ack_every == 0)) || (st == ST_CONSUME && a->cl.is_pub))
            continue;
        break;
    }
    a->state = st;
    switch (st) {
    case ST_CHANNEL:
        rc = method_begin(o, 1, CH_OPEN, &at);
        if (rc >= 0)
            rc = put_shortstr(o, "");
        break;
    case ST_DECLARE:
        rc = method_begin(o, 1, Q_DECLARE, &at);
        if (rc >= 0)
            rc = jn_buf_put_be16(o, 0);
        if (rc >= 0)
            rc = put_shortstr(o, cfg->queue);
        if (rc >= 0)
            rc = jn_buf_put_u8(o, cfg->persistent ? 0x02 : 0x00); /* durable */
        if (rc >= 0)
            rc = jn_buf_put_be32(o, 0); /* arguments: empty table */
        break;
    case ST_BIND:
        rc = method_begin(o, 1, Q_BIND, &at);
        if (rc >= 0)
            rc = jn_buf_put_be16(o, 0);
        if (rc >= 0)
            rc = put_shortstr(o, cfg->queue);
        if (rc >= 0)
            rc = put_shortstr(o, exchange_of(cfg));
        if (rc >= 0)
            rc = put_shortstr(o, d->rkey);
        if (rc >= 0)
            rc = jn_buf_put_u8(o, 0);
        if (rc >= 0)
            rc = jn_buf_put_be32(o, 0);
        break;
    case ST_PURGE:
        rc = method_begin(o, 1, Q_PURGE, &at);
        if (rc >= 0)
            rc = jn_buf_put_be16(o, 0);
        if (rc >= 0)
            rc = put_shortstr(o, cfg->queue);
        if (rc >= 0)
            rc = jn_buf_put_u8(o, 0);
        break;
    case ST_CONFIRM:
        rc = method_begin(o, 1, CONFIRM_SELECT, &at);
        if (rc >= 0)
            rc = jn_buf_put_u8(o, 0);
        break;
    case ST_QOS:
        rc = method_begin(o, 1, B_QOS, &at);
        if (rc >= 0)
            rc = jn_buf_put_be32(o, 0);
        if (rc >= 0)
            rc = jn_buf_put_be16(o, (uint16_t)cfg->prefetch);
        if (rc >= 0)
            rc = jn_buf_put_u8(o, 0);
        break;
    case ST_CONSUME:
        rc = method_begin(o, 1, B_CONSUME, &at);
        if (rc >= 0)
            rc = jn_buf_put_be16(o, 0);
        if (rc >= 0)
            rc = put_shortstr(o, cfg->queue);
        if (rc >= 0)
            rc = put_shortstr(o, ""); /* the server picks the tag */
        if (rc >= 0)
            rc = jn_buf_put_u8(o, cfg->ack_every ? 0x00 : 0x02); /* no-ack */
        if (rc >= 0)
            rc = jn_buf_put_be32(o, 0);
        break;
    case ST_READY:
        jn__bclient_ready(&a->cl);
        return 0;
    default:
        return JN_EINVAL;
    }
    return rc < 0 ? rc : frame_end(o, at);
}

static int send_start_ok(aconn_t *a)
{
    const amqp_cfg_t *cfg = a->d->cfg;
    jn_buf_t *o = &a->cl.c.out;
    size_t at;
    size_t ul = strlen(cfg->user), pl = strlen(cfg->password);
    int rc = method_begin(o, 0, CONN_START_OK, &at);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, 0); /* client-properties: empty table */
    if (rc >= 0)
        rc = put_shortstr(o, "PLAIN");
    if (rc >= 0)
        rc = jn_buf_put_be32(o, (uint32_t)(ul + pl + 2));
    if (rc >= 0)
        rc = jn_buf_put_u8(o, 0);
    if (rc >= 0)
        rc = jn_buf_append(o, cfg->user, ul);
    if (rc >= 0)
        rc = jn_buf_put_u8(o, 0);
    if (rc >= 0)
        rc = jn_buf_append(o, cfg->password, pl);
    if (rc >= 0)
        rc = put_shortstr(o, "en_US");
    return rc < 0 ? rc : frame_end(o, at);
}

static int on_tune(aconn_t *a, const uint8_t *p, size_t n)
{
    if (n < 8)
        return JN_EPROTO;
    uint16_t chmax = jn_load_be16(p);
    uint32_t fmax = jn_load_be32(p + 2);
    a->frame_max = fmax == 0 || fmax > AMQP_FRAME_MAX ? AMQP_FRAME_MAX : fmax;
    if (a->frame_max < AMQP_FRAME_MIN)
        return JN_EPROTO;
    jn_buf_t *o = &a->cl.c.out;
    size_t at;
    int rc = method_begin(o, 0, CONN_TUNE_OK, &at);
    if (rc >= 0)
        rc = jn_buf_put_be16(o, chmax == 0 || chmax > 1 ? 1 : chmax);
    if (rc >= 0)
        rc = jn_buf_put_be32(o, a->frame_max);
    if (rc >= 0)
        rc = jn_buf_put_be16(o, 0); /* no heartbeats: runs are short and busy */
    if (rc >= 0)
        rc = frame_end(o, at);
    if (rc >= 0)
        rc = method_begin(o, 0, CONN_OPEN, &at);
    if (rc >= 0)
        rc = put_shortstr(o, a->d->cfg->vhost);
    if (rc >= 0)
        rc = put_shortstr(o, "");
    if (rc >= 0)
        rc = jn_buf_put_u8(o, 0);
    if (rc >= 0)
        rc = frame_end(o, at);
    a->state = ST_OPEN;
    return rc;
}

/* ---- publishing -------------------------------------------------------- */

static int put_message(aconn_t *a, const uint8_t *payload, size_t size)
{
    amqp_door_t *d = a->d;
    const amqp_cfg_t *cfg = d->cfg;
    jn_buf_t *o = &a->cl.c.out;
    size_t at;
    int rc = method_begin(o, 1, B_PUBLISH, &at);
    if (rc >= 0)
        rc = jn_buf_put_be16(o, 0);
    if (rc >= 0)
        rc = put_shortstr(o, exchange_of(cfg));
    if (rc >= 0)
        rc = put_shortstr(o, d->rkey);
    if (rc >= 0)
        rc = jn_buf_put_u8(o, 0); /* not mandatory, not immediate */
    if (rc >= 0)
        rc = frame_end(o, at);
    /* Content header: class 60, weight 0, body size, one property. */
    if (rc >= 0)
        rc = frame_begin(o, FRAME_HEADER, 1, &at);
    if (rc >= 0)
        rc = jn_buf_put_be16(o, 60);
    if (rc >= 0)
        rc = jn_buf_put_be16(o, 0);
    if (rc >= 0)
        rc = jn_buf_put_be64(o, size);
    if (rc >= 0)
        rc = jn_buf_put_be16(o, 0x1000); /* delivery-mode present */
    if (rc >= 0)
        rc = jn_buf_put_u8(o, cfg->persistent ? 2 : 1);
    if (rc >= 0)
        rc = frame_end(o, at);
    size_t chunk = a->frame_max - 8;
    for (size_t off = 0; off < size && rc >= 0; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        rc = frame_begin(o, FRAME_BODY, 1, &at);
        if (rc >= 0)
            rc = jn_buf_append(o, payload + off, n);
        if (rc >= 0)
            rc = frame_end(o, at);
    }
    return rc;
}

static void pub_fill(jn_bclient_t *k)
{
    aconn_t *a = k->c.owner;
    amqp_door_t *d = a->d;
    jn_bench_t *b = d->b;
    const amqp_cfg_t *cfg = d->cfg;
    if (a->state != ST_READY || a->cl.dead || a->flow_stopped || !a->cl.c.connected || b->phase != JN_BENCH_RUNNING)
        return;
    size_t size = (size_t)b->o->size;
    while (a->cl.c.out.len < AMQP_BATCH) {
        if (cfg->confirms && a->cl.inflight >= (uint32_t)cfg->inflight)
            break;
        if (!jn__bench_take(b))
            break;
        if (jn_stamp_write(d->payload, size, (uint32_t)d->seq, jn_mono_ns()) < 0 ||
            put_message(a, d->payload, size) < 0) {
            b->errors++;
            break;
        }
        d->seq++;
        if (cfg->confirms) {
            a->pending[a->next_tag % (uint64_t)cfg->inflight] = 1;
            a->next_tag++;
            a->cl.inflight++;
        }
        b->sent++;
        b->sent_bytes += size;
        if (cfg->consumers)
            b->expected++;
    }
    jn__bconn_flush(&a->cl.c);
}

/* Basic.Ack or Basic.Nack from the broker in confirm mode. */
static int on_confirm(aconn_t *a, const uint8_t *p, size_t n, bool ack)
{
    jn_bench_t *b = a->d->b;
    const amqp_cfg_t *cfg = a->d->cfg;
    if (n < 9 || !a->cl.is_pub || !cfg->confirms)
        return JN_EPROTO;
    uint64_t tag = jn_load_be64(p);
    bool multiple = p[8] & 1;
    uint64_t w = (uint64_t)cfg->inflight;
    if (tag >= a->next_tag || tag < a->low_tag) {
        b->errors++; /* a confirm for nothing in flight: count, go on */
        return 0;
    }
    uint64_t from = multiple ? a->low_tag : tag;
    for (uint64_t t = from; t <= tag; t++) {
        if (!a->pending[t % w])
            continue;
        a->pending[t % w] = 0;
        a->cl.inflight--;
        if (ack)
            b->acked++;
        else
            b->errors++;
    }
    while (a->low_tag < a->next_tag && !a->pending[a->low_tag % w])
        a->low_tag++;
    return 0;
}

/* ---- consuming --------------------------------------------------------- */

static bool seen_before(amqp_door_t *d, uint32_t seq)
{
    if (d->seen_off || d->seq > UINT32_MAX)
        return false;
    size_t byte = seq / 8;
    if (byte >= d->seen_bytes) {
        size_t want = d->seen_bytes ? d->seen_bytes : 4096;
        while (want <= byte)
            want *= 2;
        if (want > AMQP_SEEN_MAX)
            want = AMQP_SEEN_MAX;
        uint8_t *p = want > byte ? realloc(d->seen, want) : NULL;
        if (!p) {
            d->seen_off = true;
            return false;
        }
        memset(p + d->seen_bytes, 0, want - d->seen_bytes);
        d->seen = p;
        d->seen_bytes = want;
    }
    uint8_t bit = (uint8_t)(1u << (seq % 8));
    if (d->seen[byte] & bit)
        return true;
    d->seen[byte] |= bit;
    return false;
}

static int send_ack(aconn_t *a)
{
    jn_buf_t *o = &a->cl.c.out;
    size_t at;
    int rc = method_begin(o, 1, B_ACK, &at);
    if (rc >= 0)
        rc = jn_buf_put_be64(o, a->last_tag);
    if (rc >= 0)
        rc = jn_buf_put_u8(o, 1); /* multiple: everything up to last_tag */
    if (rc >= 0)
        rc = frame_end(o, at);
    if (rc >= 0)
        a->unacked = 0;
    return rc;
}

static void message_done(aconn_t *a)
{
    amqp_door_t *d = a->d;
    jn_bench_t *b = d->b;
    uint32_t seq;
    uint64_t ns;
    a->msg_stage = 0;
    a->last_tag = a->msg_tag;
    if (d->cfg->ack_every)
        a->unacked++;
    if (a->cl.is_pub || a->body_size < JN_STAMP_LEN || jn_stamp_read(a->stamp, JN_STAMP_LEN, &seq, &ns) < 0) {
        b->errors++;
    } else if (seen_before(d, seq)) {
        b->duplicates++;
    } else {
        uint64_t now = jn_mono_ns();
        jn__bench_delivered(b, (size_t)a->body_size, now > ns ? now - ns : 0);
    }
}

static int on_header(aconn_t *a, const uint8_t *p, size_t n)
{
    if (a->msg_stage != 1 || n < 14)
        return JN_EPROTO;
    a->body_size = jn_load_be64(p + 4);
    a->body_got = 0;
    a->msg_stage = 2;
    if (a->body_size == 0)
        message_done(a);
    return 0;
}

static int on_body(aconn_t *a, const uint8_t *p, size_t n)
{
    if (a->msg_stage != 2 || a->body_got + n > a->body_size)
        return JN_EPROTO;
    if (a->body_got < JN_STAMP_LEN) {
        size_t k = JN_STAMP_LEN - (size_t)a->body_got;
        if (k > n)
            k = n;
        memcpy(a->stamp + a->body_got, p, k);
    }
    a->body_got += n;
    if (a->body_got == a->body_size)
        message_done(a);
    return 0;
}

static int on_deliver(aconn_t *a, const uint8_t *p, size_t n)
{
    /* consumer-tag shortstr, delivery-tag u64, redelivered, exchange, key */
    if (n < 1 || a->msg_stage != 0)
        return JN_EPROTO;
    size_t off = 1 + (size_t)p[0];
    if (off + 8 > n)
        return JN_EPROTO;
    a->msg_tag = jn_load_be64(p + off);
    a->msg_stage = 1;
    return 0;
}

/* ---- frames in --------------------------------------------------------- */

static void fail_closed(aconn_t *a, const char *what, const uint8_t *p, size_t n)
{
    jn_bench_t *b = a->d->b;
    uint16_t code = n >= 2 ? jn_load_be16(p) : 0;
    int tl = n >= 3 ? p[2] : 0;
    if ((size_t)tl + 3 > n)
        tl = 0;
    if (b->phase == JN_BENCH_CONNECTING)
        jn__bench_fail(b, "the broker closed the %s: %u %.*s", what, code, tl, (const char *)p + 3);
    else if (!b->o->json)
        fprintf(stderr, "\njunction bench amqp: the broker closed the %s: %u %.*s\n", what, code, tl,
                (const char *)p + 3);
}

static int on_method(aconn_t *a, uint32_t m, const uint8_t *p, size_t n)
{
    jn_bench_t *b = a->d->b;
    switch (m) {
    case CONN_START:
        if (a->state != ST_HEADER)
            return JN_EPROTO;
        a->state = ST_TUNE;
        return send_start_ok(a);
    case CONN_TUNE:
        if (a->state != ST_TUNE)
            return JN_EPROTO;
        return on_tune(a, p, n);
    case CONN_OPEN_OK:
        if (a->state != ST_OPEN)
            return JN_EPROTO;
        return setup_step(a, ST_CHANNEL);
    case CH_OPEN_OK:
    case Q_DECLARE_OK:
    case Q_BIND_OK:
    case Q_PURGE_OK:
    case CONFIRM_SELECT_OK:
    case B_QOS_OK:
    case B_CONSUME_OK: {
        static const uint32_t want[] = {[ST_CHANNEL] = CH_OPEN_OK, [ST_DECLARE] = Q_DECLARE_OK,
                                        [ST_BIND] = Q_BIND_OK, [ST_PURGE] = Q_PURGE_OK,
                                        [ST_CONFIRM] = CONFIRM_SELECT_OK, [ST_QOS] = B_QOS_OK,
                                        [ST_CONSUME] = B_CONSUME_OK};
        if (a->state < ST_CHANNEL || a->state > ST_CONSUME || want[a->state] != m)
            return JN_EPROTO;
        return setup_step(a, a->state + 1);
    }
    case B_ACK:
    case B_NACK:
        if (a->cl.is_pub)
            return on_confirm(a, p, n, m == B_ACK);
        return JN_EPROTO;
    case B_DELIVER:
        return on_deliver(a, p, n);
    case CH_FLOW: {
        bool active = n >= 1 && (p[0] & 1);
        a->flow_stopped = !active;
        jn_buf_t *o = &a->cl.c.out;
        size_t at;
        int rc = method_begin(o, 1, CH_FLOW_OK, &at);
        if (rc >= 0)
            rc = jn_buf_put_u8(o, active ? 1 : 0);
        if (rc >= 0)
            rc = frame_end(o, at);
        return rc;
    }
    case CONN_CLOSE:
        fail_closed(a, "connection", p, n);
        return JN_ECLOSED;
    case CH_CLOSE:
        fail_closed(a, "channel", p, n);
        return JN_ECLOSED;
    default:
        (void)b;
        return JN_EPROTO;
    }
}

static int on_data(jn_bconn_t *c)
{
    aconn_t *a = c->owner;
    amqp_door_t *d = a->d;
    int rc = 0;
    size_t off = 0;
    while (c->in.len - off >= 7) {
        const uint8_t *p = c->in.data + off;
        uint8_t type = p[0];
        uint32_t size = jn_load_be32(p + 3);
        if ((size_t)size + 8 > d->in_max - JN_BENCH_READ_CHUNK) {
            rc = JN_ETOOBIG;
            break;
        }
        if (c->in.len - off < (size_t)size + 8)
            break;
        if (p[7 + size] != FRAME_END) {
            rc = JN_EPROTO;
            break;
        }
        const uint8_t *pl = p + 7;
        if (type == FRAME_METHOD) {
            if (size < 4) {
                rc = JN_EPROTO;
                break;
            }
            rc = on_method(a, (uint32_t)jn_load_be16(pl) << 16 | jn_load_be16(pl + 2), pl + 4, size - 4);
        } else if (type == FRAME_HEADER) {
            rc = on_header(a, pl, size);
        } else if (type == FRAME_BODY) {
            rc = on_body(a, pl, size);
        } else if (type != FRAME_HEARTBEAT) {
            rc = JN_EPROTO;
        }
        if (rc < 0)
            break;
        off += (size_t)size + 8;
    }
    if (rc >= 0 && !a->cl.is_pub && d->cfg->ack_every && a->unacked >= (uint64_t)d->cfg->ack_every && send_ack(a) < 0)
        rc = JN_ENOMEM;
    return jn__bclient_parsed(&a->cl, off, rc);
}

static void on_connect(jn_bconn_t *c)
{
    aconn_t *a = c->owner;
    static const uint8_t hdr[8] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};
    a->state = ST_HEADER;
    if (jn_buf_append(&c->out, hdr, sizeof(hdr)) < 0)
        jn__bconn_close(c, JN_ENOMEM);
}

static const jn_bfleet_kind_t amqp_kind = {
    .door = "amqp",
    .pub = "publisher",
    .sub = "consumer",
    .malformed = "the broker sent a malformed or unexpected frame",
    .too_big = "frame larger than expected",
    .on_connect = on_connect,
    .on_data = on_data,
    .fill = pub_fill,
};

/* ---- the door ---------------------------------------------------------- */

static void amqp_defaults(void *cfg)
{
    amqp_cfg_t *c = cfg;
    c->publishers = 1;
    c->consumers = 1;
    c->queue = NULL; /* jnbench, or jnbench.durable with --persistent */
    c->exchange = "";
    c->routing_key = NULL;
    c->ack_every = 0;
    c->prefetch = 1000;
    c->inflight = 1000;
    c->user = "guest";
    c->password = "guest";
    c->vhost = "/";
}

static int amqp_check(const jn_bench_opts_t *o, char *err, size_t errlen)
{
    amqp_cfg_t *c = o->cfg;
    /* A queue's durability is fixed when declared: one name for each, so
     * a persistent run after a transient one does not fail. */
    if (!c->queue)
        c->queue = c->persistent ? "jnbench.durable" : "jnbench";
    if (strlen(c->queue) > AMQP_NAME_MAX || strlen(c->exchange) > AMQP_NAME_MAX || strlen(c->vhost) > AMQP_NAME_MAX ||
        (c->routing_key && strlen(c->routing_key) > AMQP_NAME_MAX)) {
        snprintf(err, errlen, "--queue, --exchange, --routing-key and --vhost take at most %d bytes", AMQP_NAME_MAX);
        return -1;
    }
    if (strlen(c->user) + strlen(c->password) > 1024) {
        snprintf(err, errlen, "--user and --password too long");
        return -1;
    }
    if (c->ack_every && c->prefetch && c->ack_every > c->prefetch) {
        snprintf(err, errlen, "--ack-every (%d) must not exceed --prefetch (%d): the consumer would stall",
                 c->ack_every, c->prefetch);
        return -1;
    }
    if (c->routing_key && !*c->exchange) {
        snprintf(err, errlen, "--routing-key needs --exchange (the default exchange routes by queue name)");
        return -1;
    }
    return 0;
}

static int amqp_open(jn_bench_t *b)
{
    const amqp_cfg_t *cfg = b->cfg;
    amqp_door_t *d = calloc(1, sizeof(*d));
    if (!d)
        goto nomem;
    b->door_state = d;
    b->has_loss = cfg->consumers > 0;
    d->b = b;
    d->cfg = cfg;
    d->rkey = cfg->routing_key ? cfg->routing_key : cfg->queue;
    size_t size = (size_t)b->o->size;
    d->payload = malloc(size);
    d->conns = calloc((size_t)cfg->publishers + (size_t)cfg->consumers, sizeof(*d->conns));
    if (!d->payload || !d->conns || jn_stamp_fill(d->payload, size, 0, 0) < 0)
        goto nomem;
    d->in_max = AMQP_FRAME_MAX + 8 + JN_BENCH_READ_CHUNK;
    size_t out_max = AMQP_BATCH + 2 * size + AMQP_OUT_EXTRA;
    jn__bfleet_init(&d->fleet, b, &amqp_kind, d->conns, sizeof(*d->conns), cfg->publishers, cfg->consumers,
                    d->in_max, out_max);
    for (int i = 0; i < d->fleet.nconns; i++) {
        aconn_t *a = &d->conns[i];
        a->d = d;
        a->frame_max = AMQP_FRAME_MAX;
        a->next_tag = a->low_tag = 1;
        if (a->cl.is_pub && cfg->confirms && !(a->pending = calloc((size_t)cfg->inflight, 1)))
            goto nomem;
    }
    return jn__bfleet_connect(&d->fleet);
nomem:
    jn__bench_fail(b, "out of memory");
    return JN_ENOMEM;
}

static void amqp_start(jn_bench_t *b) { jn__bfleet_start(&((amqp_door_t *)b->door_state)->fleet); }
static bool amqp_settled(jn_bench_t *b) { return jn__bfleet_settled(&((amqp_door_t *)b->door_state)->fleet); }

static void amqp_tick(jn_bench_t *b)
{
    amqp_door_t *d = b->door_state;
    /* Acknowledge the tail that did not fill an --ack-every group, so a
     * slow trickle is not held back by prefetch. */
    for (int i = d->cfg->publishers; i < d->fleet.nconns; i++) {
        aconn_t *a = &d->conns[i];
        if (a->state == ST_READY && !a->cl.dead && a->cl.c.connected && a->unacked && send_ack(a) == 0)
            jn__bconn_flush(&a->cl.c);
    }
}

static void amqp_close(jn_bench_t *b)
{
    amqp_door_t *d = b->door_state;
    if (d)
        jn__bfleet_close(&d->fleet);
}

static void amqp_free(jn_bench_t *b)
{
    amqp_door_t *d = b->door_state;
    jn__bfleet_free(&d->fleet);
    for (int i = 0; i < d->fleet.nconns; i++)
        free(d->conns[i].pending);
    free(d->conns);
    free(d->payload);
    free(d->seen);
    free(d);
    b->door_state = NULL;
}

static void amqp_describe(const jn_bench_t *b, json_t *config)
{
    const amqp_cfg_t *c = b->cfg;
    const amqp_door_t *d = b->door_state;
    json_object_set_new(config, "publishers", json_integer(c->publishers));
    json_object_set_new(config, "consumers", json_integer(c->consumers));
    json_object_set_new(config, "queue", json_string(c->queue));
    json_object_set_new(config, "exchange", json_string(c->exchange));
    if (d)
        json_object_set_new(config, "routing_key", json_string(d->rkey));
    json_object_set_new(config, "persistent", json_boolean(c->persistent));
    json_object_set_new(config, "confirms", json_boolean(c->confirms));
    if (c->confirms)
        json_object_set_new(config, "inflight", json_integer(c->inflight));
    json_object_set_new(config, "ack_every", json_integer(c->ack_every));
    if (c->ack_every)
        json_object_set_new(config, "prefetch", json_integer(c->prefetch));
}

#define AOPT(f) offsetof(amqp_cfg_t, f)
static const jn_bench_opt_t amqp_opts[] = {
    {"publishers", JN_BOPT_INT, AOPT(publishers), 1, 10000, "publishing connections (default 1)"},
    {"consumers", JN_BOPT_INT, AOPT(consumers), 0, 10000, "consuming connections on the one queue (default 1)"},
    {"queue", JN_BOPT_STR, AOPT(queue), 0, 0, "queue, declared and purged at the start (default jnbench, or jnbench.durable with --persistent)"},
    {"exchange", JN_BOPT_STR, AOPT(exchange), 0, 0, "exchange to publish to, the queue bound to it (default: the default exchange)"},
    {"routing-key", JN_BOPT_STR, AOPT(routing_key), 0, 0, "routing and binding key with --exchange (default: the queue's name)"},
    {"persistent", JN_BOPT_FLAG, AOPT(persistent), 0, 0, "durable queue, delivery-mode 2"},
    {"confirms", JN_BOPT_FLAG, AOPT(confirms), 0, 0, "publisher confirms (Confirm.Select)"},
    {"inflight", JN_BOPT_INT, AOPT(inflight), 1, 1000000, "unconfirmed messages per publisher with --confirms (default 1000)"},
    {"ack-every", JN_BOPT_INT, AOPT(ack_every), 0, 65535, "manual acks, one Basic.Ack (multiple) per N deliveries; 0 = no-ack (default 0)"},
    {"prefetch", JN_BOPT_INT, AOPT(prefetch), 0, 65535, "Basic.Qos prefetch count with manual acks (default 1000)"},
    {"user", JN_BOPT_STR, AOPT(user), 0, 0, "PLAIN user (default guest)"},
    {"password", JN_BOPT_STR, AOPT(password), 0, 0, "PLAIN password (default guest)"},
    {"vhost", JN_BOPT_STR, AOPT(vhost), 0, 0, "virtual host (default /)"},
    {NULL, 0, 0, 0, 0, NULL},
};

const jn_bench_door_t jn__bench_door_amqp = {
    .name = "amqp",
    .summary = "AMQP 0-9-1 publishers and consumers on one queue, confirms, manual acks",
    .default_url = "amqp://127.0.0.1:5672",
    .default_port = 5672,
    .schemes = {"amqp", "tcp", NULL},
    .opts = amqp_opts,
    .cfg_size = sizeof(amqp_cfg_t),
    .defaults = amqp_defaults,
    .check = amqp_check,
    .open = amqp_open,
    .start = amqp_start,
    .drain = NULL,
    .settled = amqp_settled,
    .tick = amqp_tick,
    .close = amqp_close,
    .free = amqp_free,
    .describe = amqp_describe,
};
