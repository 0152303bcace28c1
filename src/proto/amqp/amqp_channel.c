/* amqp_channel.c - AMQP channels: the channel, queue and basic classes,
 * publisher confirms and transactions, on top of core queues.
 *
 * Delivery tags are per channel and map to (queue name, message id); the
 * queue is looked up by name at settlement so that a deleted queue never
 * leaves a dangling pointer here. Unacked messages of a channel that
 * closes (or whose connection dies) are requeued with jn_queue_nack.
 *
 * A channel exception sends Channel.Close and ignores everything on the
 * channel but Close/Close-Ok; the connection and its other channels go on.
 */
#include "amqp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"

#define TX_BYTES_MAX (64u << 20)

typedef struct unacked {
    uint64_t tag;
    int64_t id;
    uint32_t qidx; /* index into ch->qnames */
} unacked_t;

typedef struct consumer {
    jn_list_t node;
    amqp_chan_t *ch;
    char tag[AMQP_NAME_MAX + 1];
    char qname[AMQP_NAME_MAX + 1];
    jn_qconsumer_t *qc;
    bool no_ack;
    bool starved; /* refused a delivery: resume when there is room */
} consumer_t;

struct confirm;
typedef struct confirm_wait {
    jn_durable_waiter_t w;
    struct confirm *cf;
    bool armed;
} confirm_wait_t;

typedef struct confirm {
    jn_list_t node;
    amqp_chan_t *ch;
    uint64_t seq;
    int pending;
    bool nack;
    int nw;
    confirm_wait_t waits[]; /* one per durable queue, plus the stream */
} confirm_t;

/* A buffered transactional operation. */
typedef struct tx_op {
    struct tx_op *next;
    uint32_t method;      /* basic.publish, ack, nack, reject */
    uint64_t tag;
    bool multiple, requeue, mandatory;
    char exchange[AMQP_NAME_MAX + 1];
    char key[AMQP_NAME_MAX + 1];
    jn_buf_t hdr, body;
} tx_op_t;

enum pub_state { PUB_NONE, PUB_HEADER, PUB_BODY };

struct amqp_chan {
    amqp_conn_t *c;
    uint16_t id;
    bool closing;         /* sent Channel.Close, waiting for Close-Ok */
    bool flow;            /* the client lets us deliver */
    /* content being assembled */
    enum pub_state pub;
    char pub_exchange[AMQP_NAME_MAX + 1];
    char pub_key[AMQP_NAME_MAX + 1];
    bool pub_mandatory;
    uint64_t pub_size;
    jn_buf_t hdr, body;
    /* deliveries */
    uint64_t next_tag;
    unacked_t *unacked;   /* ascending tags */
    size_t nunacked, capunacked;
    char **qnames;
    uint32_t nqnames;
    jn_list_t consumers;
    uint16_t prefetch;    /* for new consumers (global=false) */
    uint16_t global_prefetch; /* for the whole channel (global=true); 0 none */
    uint64_t ctag_seq;
    /* confirms */
    bool confirm;
    uint64_t pub_seq;
    jn_list_t confirms;
    /* transactions */
    bool tx;
    tx_op_t *tx_head, **tx_tail;
    size_t tx_bytes;
};

static jn_amqp_t *door(amqp_chan_t *ch)
{
    return ch->c->door;
}

bool jn__amqp_chan_closing(const amqp_chan_t *ch)
{
    return ch->closing;
}

static void chan_send(amqp_chan_t *ch, uint32_t id, const jn_amqp_arg_t *a, size_t n)
{
    jn__amqp_send(ch->c, ch->id, id, a, n);
}

/* Channel exception (section 1.4.2.6 of the spec's reply codes). */
static void chan_error(amqp_chan_t *ch, uint16_t code, const char *text, uint32_t method)
{
    if (ch->closing)
        return;
    jn_debug("amqp: channel %u: error %u %s", ch->id, code, text);
    jn_amqp_arg_t a[4] = {JN_AMQP_U(code), JN_AMQP_STR(text), JN_AMQP_U(method >> 16), JN_AMQP_U(method & 0xffff)};
    if (a[1].len > 255)
        a[1].len = 255;
    chan_send(ch, JN_AMQP_CHANNEL_CLOSE, a, 4);
    ch->closing = true;
    ch->pub = PUB_NONE;
}

static void chan_errorf(amqp_chan_t *ch, uint16_t code, uint32_t method, const char *fmt, const char *arg,
                        size_t arglen)
{
    char text[256];
    snprintf(text, sizeof text, fmt, (int)(arglen > 200 ? 200 : arglen), arg);
    chan_error(ch, code, text, method);
}

static void tx_free(amqp_chan_t *ch)
{
    tx_op_t *op = ch->tx_head;
    while (op) {
        tx_op_t *n = op->next;
        jn_buf_free(&op->hdr);
        jn_buf_free(&op->body);
        free(op);
        op = n;
    }
    ch->tx_head = NULL;
    ch->tx_tail = &ch->tx_head;
    ch->tx_bytes = 0;
}

amqp_chan_t *jn__amqp_chan_new(amqp_conn_t *c, uint16_t id)
{
    amqp_chan_t *ch = calloc(1, sizeof *ch);
    if (!ch)
        return NULL;
    ch->c = c;
    ch->id = id;
    ch->flow = true;
    jn_buf_init(&ch->hdr, 1u << 20);
    jn_buf_init(&ch->body, door(ch)->cfg.max_message);
    jn_list_init(&ch->consumers);
    jn_list_init(&ch->confirms);
    ch->tx_tail = &ch->tx_head;
    return ch;
}

static uint32_t qname_index(amqp_chan_t *ch, const char *name)
{
    for (uint32_t i = 0; i < ch->nqnames; i++)
        if (strcmp(ch->qnames[i], name) == 0)
            return i;
    char **n = realloc(ch->qnames, (ch->nqnames + 1) * sizeof *n);
    if (!n)
        return UINT32_MAX;
    ch->qnames = n;
    n[ch->nqnames] = strdup(name);
    if (!n[ch->nqnames])
        return UINT32_MAX;
    return ch->nqnames++;
}

static int unacked_add(amqp_chan_t *ch, uint64_t tag, const char *qname, int64_t id)
{
    uint32_t qi = qname_index(ch, qname);
    if (qi == UINT32_MAX)
        return JN_ENOMEM;
    if (ch->nunacked == ch->capunacked) {
        size_t ncap = ch->capunacked ? ch->capunacked * 2 : 64;
        unacked_t *n = realloc(ch->unacked, ncap * sizeof *n);
        if (!n)
            return JN_ENOMEM;
        ch->unacked = n;
        ch->capunacked = ncap;
    }
    ch->unacked[ch->nunacked++] = (unacked_t){.tag = tag, .id = id, .qidx = qi};
    return 0;
}

/* Settles one entry: ack, or nack with requeue/without. */
static void settle(amqp_chan_t *ch, const unacked_t *u, int how, bool requeue)
{
    jn_queue_t *q = jn_queue_find(door(ch)->broker, ch->qnames[u->qidx]);
    if (!q)
        return;
    int rc = how == 0 ? jn_queue_ack(q, u->id) : jn_queue_nack(q, u->id, requeue);
    if (rc && rc != JN_ENOENT)
        jn_warn("amqp: settle %s: %s", ch->qnames[u->qidx], jn_strerror(rc));
}

static void resume_consumers(amqp_chan_t *ch)
{
    jn_list_t *pos;
    jn_list_foreach(pos, &ch->consumers) {
        consumer_t *cs = jn_container_of(pos, consumer_t, node);
        if (cs->starved) {
            cs->starved = false;
            jn_qconsumer_resume(cs->qc);
        }
    }
}

/* Settles tag (and all below it when |multiple|; tag 0 with multiple
 * means all). |how| 0 ack, 1 nack. False when the tag is unknown. */
static bool settle_tags(amqp_chan_t *ch, uint64_t tag, bool multiple, int how, bool requeue)
{
    size_t w = 0;
    bool found = false;
    if (multiple && tag == 0)
        tag = UINT64_MAX;
    for (size_t i = 0; i < ch->nunacked; i++) {
        unacked_t u = ch->unacked[i];
        if (u.tag == tag || (multiple && u.tag < tag)) {
            found = true;
            settle(ch, &u, how, requeue);
        } else {
            ch->unacked[w++] = u;
        }
    }
    if (multiple && tag == UINT64_MAX)
        found = true;
    ch->nunacked = w;
    if (found)
        resume_consumers(ch);
    return found;
}

static void confirm_free(confirm_t *cf)
{
    for (int i = 0; i < cf->nw; i++)
        if (cf->waits[i].armed)
            jn_plog_cancel_durable(&cf->waits[i].w);
    jn_list_remove(&cf->node);
    free(cf);
}

void jn__amqp_chan_free(amqp_chan_t *ch)
{
    jn_list_t *pos, *tmp;
    /* Keep the unacked messages of cancelled consumers with the channel,
     * then requeue everything in delivery order. */
    jn_list_foreach_safe(pos, tmp, &ch->consumers) {
        consumer_t *cs = jn_container_of(pos, consumer_t, node);
        jn_list_remove(&cs->node);
        jn_qconsumer_cancel(cs->qc, true);
        free(cs);
    }
    for (size_t i = 0; i < ch->nunacked; i++)
        settle(ch, &ch->unacked[i], 1, true);
    jn_list_foreach_safe(pos, tmp, &ch->confirms)
        confirm_free(jn_container_of(pos, confirm_t, node));
    tx_free(ch);
    for (uint32_t i = 0; i < ch->nqnames; i++)
        free(ch->qnames[i]);
    free(ch->qnames);
    free(ch->unacked);
    jn_buf_free(&ch->hdr);
    jn_buf_free(&ch->body);
    free(ch);
}

/* ---- deliveries ---- */

/* Placeholders in method arguments for the exchange and routing key,
 * which write_message takes from the record. */
static const uint8_t EX_MARK[] = "ex";
static const uint8_t RK_MARK[] = "rk";

static int write_message(amqp_chan_t *ch, uint32_t method, const jn_amqp_arg_t *args, size_t nargs,
                         const jn_record_t *rec)
{
    jn_buf_t *out = jn_conn_outbuf(ch->c->conn);
    if (!out)
        return JN_ECLOSED;
    jn_amqp_props_t pr;
    jn_amqp_str_t ex, key;
    jn_buf_t *tbl = &door(ch)->scratch;
    jn_buf_reset(tbl);
    jn__amqp_record_props(rec, &pr, tbl, &ex, &key);
    size_t mark = out->len;
    jn_amqp_arg_t a[JN_AMQP_MAX_ARGS];
    memcpy(a, args, nargs * sizeof *a);
    /* Exchange and routing key come from the record (see amqp_exchange.c). */
    for (size_t i = 0; i < nargs; i++) {
        if (a[i].p == EX_MARK)
            a[i] = JN_AMQP_BYTES(ex.p, ex.len);
        else if (a[i].p == RK_MARK)
            a[i] = JN_AMQP_BYTES(key.p, key.len);
    }
    size_t blen = rec->value_len > 0 ? (size_t)rec->value_len : 0;
    int rc = jn_amqp_encode_method(out, ch->id, method, a, nargs);
    if (!rc)
        rc = jn_amqp_encode_header(out, ch->id, 60, blen, &pr);
    if (!rc)
        rc = jn_amqp_encode_body(out, ch->id, rec->value, blen, ch->c->frame_max);
    if (rc) {
        out->len = mark;
        return rc;
    }
    jn_conn_commit(ch->c->conn, 0);
    return 0;
}


static int on_deliver(jn_qconsumer_t *qc, const jn_qdelivery_t *d, void *arg)
{
    (void)qc;
    consumer_t *cs = arg;
    amqp_chan_t *ch = cs->ch;
    if (ch->closing || !ch->flow || !jn__amqp_conn_writable(ch->c) ||
        (!cs->no_ack && ch->global_prefetch && ch->nunacked >= ch->global_prefetch)) {
        cs->starved = true;
        return JN_EAGAIN;
    }
    uint64_t tag = ++ch->next_tag;
    jn_amqp_arg_t a[5] = {JN_AMQP_STR(cs->tag), JN_AMQP_U(tag), JN_AMQP_U(d->redelivered), {.p = EX_MARK},
                          {.p = RK_MARK}};
    if (!cs->no_ack && unacked_add(ch, tag, cs->qname, d->id)) {
        ch->next_tag--;
        cs->starved = true;
        return JN_EAGAIN;
    }
    if (write_message(ch, JN_AMQP_BASIC_DELIVER, a, 5, d->rec)) {
        if (!cs->no_ack)
            ch->nunacked--;
        ch->next_tag--;
        cs->starved = true;
        return JN_EAGAIN;
    }
    return 0;
}

static void on_cancel(jn_qconsumer_t *qc, void *arg)
{
    (void)qc;
    consumer_t *cs = arg;
    amqp_chan_t *ch = cs->ch;
    if (ch->c->cap_cancel_notify && !ch->closing) {
        jn_amqp_arg_t a[2] = {JN_AMQP_STR(cs->tag), JN_AMQP_U(1)};
        chan_send(ch, JN_AMQP_BASIC_CANCEL, a, 2);
    }
    jn_list_remove(&cs->node);
    free(cs);
}

void jn__amqp_chan_drain(amqp_chan_t *ch)
{
    resume_consumers(ch);
}

/* ---- exclusive queues ---- */

static amqp_conn_t *owner_of(jn_amqp_t *a, const char *name)
{
    jn_list_t *pos;
    jn_list_foreach(pos, &a->owned) {
        amqp_owned_t *o = jn_container_of(pos, amqp_owned_t, node);
        if (strcmp(o->name, name) == 0)
            return o->owner;
    }
    return NULL;
}

static void forget_owned(jn_amqp_t *a, const char *name)
{
    jn_list_t *pos, *tmp;
    jn_list_foreach_safe(pos, tmp, &a->owned) {
        amqp_owned_t *o = jn_container_of(pos, amqp_owned_t, node);
        if (strcmp(o->name, name) == 0) {
            jn_list_remove(&o->node);
            free(o);
        }
    }
}

void jn__amqp_release_owned(amqp_conn_t *c)
{
    jn_amqp_t *a = c->door;
    jn_list_t *pos, *tmp;
    jn_list_foreach_safe(pos, tmp, &a->owned) {
        amqp_owned_t *o = jn_container_of(pos, amqp_owned_t, node);
        if (o->owner != c)
            continue;
        jn_queue_t *q = jn_queue_find(a->broker, o->name);
        if (q && jn_queue_delete(q, false, false) < 0)
            jn_warn("amqp: cannot delete exclusive queue %s", o->name);
        jn__amqp_unbind_queue(a, o->name);
        jn_list_remove(&o->node);
        free(o);
    }
}

/* Finds queue |name| for channel |ch|: 404 / 405 as channel errors. */
static jn_queue_t *queue_for(amqp_chan_t *ch, const char *name, uint32_t method)
{
    jn_queue_t *q = jn_queue_find(door(ch)->broker, name);
    if (!q) {
        chan_errorf(ch, JN_AMQP_NOT_FOUND, method, "NOT_FOUND - no queue '%.*s' in vhost '/'", name, strlen(name));
        return NULL;
    }
    amqp_conn_t *own = owner_of(door(ch), name);
    if (own && own != ch->c) {
        chan_errorf(ch, JN_AMQP_RESOURCE_LOCKED, method,
                    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%.*s'", name, strlen(name));
        return NULL;
    }
    return q;
}

/* ACL check on queue |name| (amqp_int.h): false after a 403 channel error. */
static bool queue_allowed(amqp_chan_t *ch, const char *name, enum jn_perm perm, uint32_t method)
{
    if (jn__amqp_allowed_queue(door(ch), &ch->c->principal, perm, name))
        return true;
    char text[256];
    snprintf(text, sizeof text, "ACCESS_REFUSED - access to queue '%.100s' in vhost '/' refused for user '%.40s'", name,
             ch->c->principal.name);
    chan_error(ch, JN_AMQP_ACCESS_REFUSED, text, method);
    return false;
}

static bool exchange_allowed(amqp_chan_t *ch, const jn_amqp_arg_t *name, uint32_t method)
{
    if (jn__amqp_allowed_exchange(door(ch), &ch->c->principal, (const char *)name->p, name->len, NULL, 0, false))
        return true;
    char text[256];
    snprintf(text, sizeof text, "ACCESS_REFUSED - access to exchange '%.*s' in vhost '/' refused for user '%.40s'",
             (int)(name->len > 100 ? 100 : name->len), (const char *)name->p, ch->c->principal.name);
    chan_error(ch, JN_AMQP_ACCESS_REFUSED, text, method);
    return false;
}

/* A queue name argument; the empty name means the channel's last
 * declared queue in AMQP, which RabbitMQ supports; we keep it simple and
 * require names (documented). */
static bool arg_name(amqp_chan_t *ch, const jn_amqp_arg_t *a, char *out, uint32_t method)
{
    if (a->len > AMQP_NAME_MAX || (a->len && memchr(a->p, 0, a->len))) {
        chan_error(ch, JN_AMQP_PRECONDITION_FAILED, "PRECONDITION_FAILED - bad name", method);
        return false;
    }
    memcpy(out, a->p, a->len);
    out[a->len] = 0;
    return true;
}

/* ---- queue class ---- */

static bool int_arg(const jn_amqp_value_t *v, int64_t *out)
{
    static const char ints[] = "bBsUuIilL";
    if (!v->type || !strchr(ints, v->type))
        return false;
    *out = v->i;
    return true;
}

/* Queue arguments -> options; 0 or a reply text for 406. */
static const char *queue_args(const jn_amqp_arg_t *t, jn_queue_opts_t *o, char **dlx, char **dlk)
{
    jn_amqp_iter_t it;
    jn_amqp_str_t k;
    jn_amqp_value_t v;
    jn_amqp_iter_init(&it, t->p, t->len);
    while (jn_amqp_table_next(&it, &k, &v) == 1) {
        int64_t n;
#define IS(s) (k.len == sizeof(s) - 1 && memcmp(k.p, s, k.len) == 0)
        if (IS("x-message-ttl")) {
            if (!int_arg(&v, &n) || n < 0)
                return "PRECONDITION_FAILED - invalid arg 'x-message-ttl'";
            o->message_ttl_ms = n;
        } else if (IS("x-expires")) {
            if (!int_arg(&v, &n) || n <= 0)
                return "PRECONDITION_FAILED - invalid arg 'x-expires'";
            o->expires_ms = n;
        } else if (IS("x-max-length")) {
            if (!int_arg(&v, &n) || n < 0)
                return "PRECONDITION_FAILED - invalid arg 'x-max-length'";
            o->max_length = n;
        } else if (IS("x-max-length-bytes")) {
            if (!int_arg(&v, &n) || n < 0)
                return "PRECONDITION_FAILED - invalid arg 'x-max-length-bytes'";
            o->max_length_bytes = n;
        } else if (IS("x-max-priority")) {
            if (!int_arg(&v, &n) || n < 0 || n > 255)
                return "PRECONDITION_FAILED - invalid arg 'x-max-priority'";
            o->max_priority = (uint8_t)n;
        } else if (IS("x-overflow")) {
            if (v.type != 'S')
                return "PRECONDITION_FAILED - invalid arg 'x-overflow'";
            if (v.len == 9 && memcmp(v.p, "drop-head", 9) == 0)
                o->overflow = JN_QUEUE_DROP_HEAD;
            else if ((v.len == 14 && memcmp(v.p, "reject-publish", 14) == 0) ||
                     (v.len == 18 && memcmp(v.p, "reject-publish-dlx", 18) == 0))
                o->overflow = JN_QUEUE_REJECT_PUBLISH;
            else
                return "PRECONDITION_FAILED - invalid arg 'x-overflow'";
        } else if (IS("x-dead-letter-exchange") || IS("x-dead-letter-routing-key")) {
            if (v.type != 'S' || v.len > AMQP_NAME_MAX)
                return "PRECONDITION_FAILED - invalid dead-letter argument";
            char **dst = IS("x-dead-letter-exchange") ? dlx : dlk;
            free(*dst);
            *dst = strndup((const char *)v.p, v.len);
        } else if (IS("x-single-active-consumer")) {
            if (v.type != 't')
                return "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer'";
            o->single_active_consumer = v.i != 0;
        }
#undef IS
    }
    return NULL;
}

static void gen_name(amqp_chan_t *ch, const char *prefix, char *out, size_t cap)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t r[16];
    uint64_t s = uv_hrtime() ^ (++door(ch)->seq * 0x9E3779B97F4A7C15ull) ^ (uint64_t)(uintptr_t)ch;
    for (int i = 0; i < 16; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        r[i] = (uint8_t)s;
    }
    size_t n = (size_t)snprintf(out, cap, "%s", prefix);
    for (int i = 0; i < 22 && n + 1 < cap; i++)
        out[n++] = b64[r[i % 16] >> (i / 16 * 2) & 63];
    out[n] = 0;
}

static void queue_declare(amqp_chan_t *ch, const jn_amqp_method_t *m)
{
    jn_amqp_t *a = door(ch);
    char name[AMQP_NAME_MAX + 1];
    bool passive = m->a[2].u, durable = m->a[3].u, exclusive = m->a[4].u, auto_del = m->a[5].u,
         nowait = m->a[6].u;
    if (!arg_name(ch, &m->a[1], name, m->id))
        return;
    jn_queue_t *q = NULL;
    if (passive) {
        if (!(q = queue_for(ch, name, m->id)))
            return;
    } else {
        if (!name[0])
            gen_name(ch, "amq.gen-", name, sizeof name);
        else if (strncmp(name, "amq.", 4) == 0) {
            chan_errorf(ch, JN_AMQP_ACCESS_REFUSED, m->id, "ACCESS_REFUSED - queue name '%.*s' contains reserved prefix 'amq.*'",
                        name, strlen(name));
            return;
        }
        amqp_conn_t *own = owner_of(a, name);
        if (own && own != ch->c) {
            chan_errorf(ch, JN_AMQP_RESOURCE_LOCKED, m->id,
                        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%.*s'", name, strlen(name));
            return;
        }
        if (!queue_allowed(ch, name, JN_PERM_PUBLISH, m->id))
            return;
        jn_amqp_value_t dv;
        if (jn_amqp_table_get(m->a[7].p, m->a[7].len, "x-dead-letter-exchange", &dv) == 1 && dv.type == 'S' &&
            dv.len <= AMQP_NAME_MAX && !exchange_allowed(ch, &(jn_amqp_arg_t){.p = dv.p, .len = dv.len}, m->id))
            return;
        jn_queue_opts_t o;
        jn_queue_opts_default(&o);
        o.durable = durable && !exclusive;
        o.auto_delete = auto_del;
        char *dlx = NULL, *dlk = NULL;
        const char *bad = queue_args(&m->a[7], &o, &dlx, &dlk);
        o.dead_letter_target = dlx;
        o.dead_letter_key = dlk;
        json_t *args = jn_amqp_table_to_json(m->a[7].p, m->a[7].len);
        o.arguments = args;
        int rc = bad ? 0 : jn_queue_declare(a->broker, name, &o, &q);
        json_decref(args);
        free(dlx);
        free(dlk);
        if (bad) {
            chan_error(ch, JN_AMQP_PRECONDITION_FAILED, bad, m->id);
            return;
        }
        if (rc == JN_ESTATE) {
            chan_errorf(ch, JN_AMQP_PRECONDITION_FAILED, m->id,
                        "PRECONDITION_FAILED - inequivalent arg for queue '%.*s' in vhost '/'", name, strlen(name));
            return;
        }
        if (rc) {
            chan_errorf(ch, rc == JN_EINVAL ? JN_AMQP_PRECONDITION_FAILED : JN_AMQP_INTERNAL_ERROR, m->id,
                        "cannot declare queue '%.*s'", name, strlen(name));
            return;
        }
        if (exclusive && !own) {
            amqp_owned_t *ow = calloc(1, sizeof *ow);
            if (ow) {
                ow->owner = ch->c;
                memcpy(ow->name, name, strlen(name) + 1);
                jn_list_insert_tail(&a->owned, &ow->node);
            }
        }
    }
    if (nowait)
        return;
    jn_amqp_arg_t r[3] = {JN_AMQP_STR(name), JN_AMQP_U(jn_queue_ready(q)), JN_AMQP_U(jn_queue_consumer_count(q))};
    chan_send(ch, JN_AMQP_QUEUE_DECLARE_OK, r, 3);
}

static void queue_bind(amqp_chan_t *ch, const jn_amqp_method_t *m, bool unbind)
{
    char name[AMQP_NAME_MAX + 1], text[256];
    if (!arg_name(ch, &m->a[1], name, m->id) || !queue_for(ch, name, m->id) ||
        !queue_allowed(ch, name, JN_PERM_PUBLISH, m->id))
        return;
    jn_amqp_str_t dest = {m->a[1].p, m->a[1].len}, src = {m->a[2].p, m->a[2].len}, key = {m->a[3].p, m->a[3].len};
    jn_amqp_str_t args = unbind ? (jn_amqp_str_t){m->a[4].p, m->a[4].len} : (jn_amqp_str_t){m->a[5].p, m->a[5].len};
    int code = jn__amqp_bind(door(ch), false, &dest, &src, &key, &args, unbind, &ch->c->principal, text, sizeof text);
    if (code) {
        chan_error(ch, (uint16_t)code, text, m->id);
        return;
    }
    if (unbind)
        chan_send(ch, JN_AMQP_QUEUE_UNBIND_OK, NULL, 0);
    else if (!m->a[4].u)
        chan_send(ch, JN_AMQP_QUEUE_BIND_OK, NULL, 0);
}

static void queue_purge(amqp_chan_t *ch, const jn_amqp_method_t *m)
{
    char name[AMQP_NAME_MAX + 1];
    jn_queue_t *q;
    if (!arg_name(ch, &m->a[1], name, m->id) || !(q = queue_for(ch, name, m->id)) ||
        !queue_allowed(ch, name, JN_PERM_PUBLISH, m->id))
        return;
    int64_t n = jn_queue_purge(q);
    if (n < 0) {
        chan_error(ch, JN_AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - purge failed", m->id);
        return;
    }
    if (!m->a[2].u) {
        jn_amqp_arg_t r[1] = {JN_AMQP_U(n)};
        chan_send(ch, JN_AMQP_QUEUE_PURGE_OK, r, 1);
    }
}

static void queue_delete(amqp_chan_t *ch, const jn_amqp_method_t *m)
{
    char name[AMQP_NAME_MAX + 1];
    if (!arg_name(ch, &m->a[1], name, m->id))
        return;
    jn_queue_t *q = jn_queue_find(door(ch)->broker, name);
    int64_t n = 0;
    if (q && !queue_allowed(ch, name, JN_PERM_PUBLISH, m->id))
        return;
    if (q) {
        amqp_conn_t *own = owner_of(door(ch), name);
        if (own && own != ch->c) {
            chan_errorf(ch, JN_AMQP_RESOURCE_LOCKED, m->id,
                        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%.*s'", name, strlen(name));
            return;
        }
        n = jn_queue_delete(q, m->a[2].u, m->a[3].u);
        if (n == JN_ESTATE) {
            chan_errorf(ch, JN_AMQP_PRECONDITION_FAILED, m->id, "PRECONDITION_FAILED - queue '%.*s' in use or not empty",
                        name, strlen(name));
            return;
        }
        if (n < 0) {
            chan_error(ch, JN_AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - delete failed", m->id);
            return;
        }
        jn__amqp_unbind_queue(door(ch), name);
        forget_owned(door(ch), name);
    }
    /* Deleting a missing queue succeeds, as in RabbitMQ 3.x. */
    if (!m->a[4].u) {
        jn_amqp_arg_t r[1] = {JN_AMQP_U(n)};
        chan_send(ch, JN_AMQP_QUEUE_DELETE_OK, r, 1);
    }
}

/* ---- basic class ---- */

static consumer_t *consumer_find(amqp_chan_t *ch, const uint8_t *tag, size_t len)
{
    jn_list_t *pos;
    jn_list_foreach(pos, &ch->consumers) {
        consumer_t *cs = jn_container_of(pos, consumer_t, node);
        if (strlen(cs->tag) == len && memcmp(cs->tag, tag, len) == 0)
            return cs;
    }
    return NULL;
}

static void basic_consume(amqp_chan_t *ch, const jn_amqp_method_t *m)
{
    char name[AMQP_NAME_MAX + 1], tag[AMQP_NAME_MAX + 1];
    jn_queue_t *q;
    if (!arg_name(ch, &m->a[1], name, m->id) || !(q = queue_for(ch, name, m->id)) ||
        !queue_allowed(ch, name, JN_PERM_SUBSCRIBE, m->id) || !arg_name(ch, &m->a[2], tag, m->id))
        return;
    if (!tag[0]) {
        snprintf(tag, sizeof tag, "amq.ctag-%llu-%llu", (unsigned long long)++door(ch)->seq,
                 (unsigned long long)++ch->ctag_seq);
    } else if (consumer_find(ch, (const uint8_t *)tag, strlen(tag))) {
        jn__amqp_conn_error(ch->c, JN_AMQP_NOT_ALLOWED, "NOT_ALLOWED - attempt to reuse consumer tag", m->id);
        return;
    }
    consumer_t *cs = calloc(1, sizeof *cs);
    if (!cs) {
        chan_error(ch, JN_AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory", m->id);
        return;
    }
    cs->ch = ch;
    memcpy(cs->tag, tag, strlen(tag) + 1);
    memcpy(cs->qname, name, strlen(name) + 1);
    cs->no_ack = m->a[4].u;
    jn_amqp_value_t pv;
    int64_t prio = 0;
    if (jn_amqp_table_get(m->a[7].p, m->a[7].len, "x-priority", &pv) == 1)
        (void)int_arg(&pv, &prio);
    jn_qconsumer_opts_t o = {
        .prefetch = cs->no_ack ? 0 : ch->prefetch,
        .no_ack = cs->no_ack,
        .exclusive = m->a[5].u,
        .priority = (int32_t)prio,
        .deliver = on_deliver,
        .cancel = on_cancel,
        .arg = cs,
    };
    /* Registered first: ConsumeOk must precede the first delivery, and
     * the core starts deliveries on a later loop iteration. */
    jn_list_insert_tail(&ch->consumers, &cs->node);
    int rc = jn_queue_consume(q, &o, &cs->qc);
    if (rc) {
        jn_list_remove(&cs->node);
        free(cs);
        if (rc == JN_ESTATE)
            chan_errorf(ch, JN_AMQP_ACCESS_REFUSED, m->id,
                        "ACCESS_REFUSED - queue '%.*s' in vhost '/' in exclusive use", name, strlen(name));
        else
            chan_error(ch, JN_AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - cannot consume", m->id);
        return;
    }
    if (!m->a[6].u) {
        jn_amqp_arg_t r[1] = {JN_AMQP_STR(tag)};
        chan_send(ch, JN_AMQP_BASIC_CONSUME_OK, r, 1);
    }
}

static void basic_cancel(amqp_chan_t *ch, const jn_amqp_method_t *m)
{
    consumer_t *cs = consumer_find(ch, m->a[0].p, m->a[0].len);
    if (cs) {
        jn_list_remove(&cs->node);
        /* Unacked deliveries stay with the channel until acked or closed. */
        jn_qconsumer_cancel(cs->qc, true);
        free(cs);
    }
    if (!m->a[1].u) {
        jn_amqp_arg_t r[1] = {JN_AMQP_BYTES(m->a[0].p, m->a[0].len)};
        chan_send(ch, JN_AMQP_BASIC_CANCEL_OK, r, 1);
    }
}

static void basic_get(amqp_chan_t *ch, const jn_amqp_method_t *m)
{
    char name[AMQP_NAME_MAX + 1];
    jn_queue_t *q;
    if (!arg_name(ch, &m->a[1], name, m->id) || !(q = queue_for(ch, name, m->id)) ||
        !queue_allowed(ch, name, JN_PERM_SUBSCRIBE, m->id))
        return;
    bool no_ack = m->a[2].u;
    jn_qdelivery_t d;
    int rc = jn_queue_get(q, no_ack, &d);
    if (rc < 0) {
        chan_error(ch, JN_AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - get failed", m->id);
        return;
    }
    if (rc == 0) {
        jn_amqp_arg_t r[1] = {JN_AMQP_EMPTY};
        chan_send(ch, JN_AMQP_BASIC_GET_EMPTY, r, 1);
        return;
    }
    uint64_t tag = ++ch->next_tag;
    if (!no_ack && unacked_add(ch, tag, name, d.id)) {
        if (jn_queue_nack(q, d.id, true))
            jn_warn("amqp: cannot requeue %s", name);
        chan_error(ch, JN_AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory", m->id);
        return;
    }
    jn_amqp_arg_t r[5] = {JN_AMQP_U(tag), JN_AMQP_U(d.redelivered), {.p = EX_MARK}, {.p = RK_MARK},
                          JN_AMQP_U(jn_queue_ready(q))};
    if (write_message(ch, JN_AMQP_BASIC_GET_OK, r, 5, d.rec))
        jn_conn_abort(ch->c->conn);
}

static void basic_qos(amqp_chan_t *ch, const jn_amqp_method_t *m)
{
    uint16_t n = (uint16_t)m->a[1].u;
    if (m->a[2].u) {
        ch->global_prefetch = n;
        resume_consumers(ch);
    } else {
        ch->prefetch = n;
    }
    chan_send(ch, JN_AMQP_BASIC_QOS_OK, NULL, 0);
}

static void do_settle(amqp_chan_t *ch, uint32_t method, uint64_t tag, bool multiple, bool requeue)
{
    bool ok = method == JN_AMQP_BASIC_ACK ? settle_tags(ch, tag, multiple, 0, false)
                                          : settle_tags(ch, tag, multiple, 1, requeue);
    if (!ok) {
        char text[128];
        snprintf(text, sizeof text, "PRECONDITION_FAILED - unknown delivery tag %llu", (unsigned long long)tag);
        chan_error(ch, JN_AMQP_PRECONDITION_FAILED, text, method);
    }
}

static int tx_add(amqp_chan_t *ch, tx_op_t **out)
{
    tx_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return JN_ENOMEM;
    jn_buf_init(&op->hdr, 1u << 20);
    jn_buf_init(&op->body, door(ch)->cfg.max_message);
    *ch->tx_tail = op;
    ch->tx_tail = &op->next;
    *out = op;
    return 0;
}

static void basic_settle_method(amqp_chan_t *ch, const jn_amqp_method_t *m)
{
    bool multiple = false, requeue = false;
    if (m->id == JN_AMQP_BASIC_ACK)
        multiple = m->a[1].u;
    else if (m->id == JN_AMQP_BASIC_REJECT)
        requeue = m->a[1].u;
    else {
        multiple = m->a[1].u;
        requeue = m->a[2].u;
    }
    if (ch->tx) {
        tx_op_t *op;
        if (tx_add(ch, &op)) {
            chan_error(ch, JN_AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory", m->id);
            return;
        }
        op->method = m->id;
        op->tag = m->a[0].u;
        op->multiple = multiple;
        op->requeue = requeue;
        return;
    }
    do_settle(ch, m->id, m->a[0].u, multiple, requeue);
}

static void basic_recover(amqp_chan_t *ch, const jn_amqp_method_t *m)
{
    /* RabbitMQ requeues in both cases (requeue=false is not supported
     * there either); so do we. */
    settle_tags(ch, 0, true, 1, true);
    if (m->id == JN_AMQP_BASIC_RECOVER)
        chan_send(ch, JN_AMQP_BASIC_RECOVER_OK, NULL, 0);
}

/* ---- publishing ---- */

static void confirm_send(amqp_chan_t *ch, uint64_t seq, bool nack)
{
    if (nack) {
        jn_amqp_arg_t a[3] = {JN_AMQP_U(seq), JN_AMQP_U(0), JN_AMQP_U(0)};
        chan_send(ch, JN_AMQP_BASIC_NACK, a, 3);
    } else {
        jn_amqp_arg_t a[2] = {JN_AMQP_U(seq), JN_AMQP_U(0)};
        chan_send(ch, JN_AMQP_BASIC_ACK, a, 2);
    }
}

static void on_durable(jn_durable_waiter_t *w, int status)
{
    confirm_wait_t *cw = (confirm_wait_t *)w;
    confirm_t *cf = cw->cf;
    cw->armed = false;
    if (status)
        cf->nack = true;
    if (--cf->pending > 0)
        return;
    confirm_send(cf->ch, cf->seq, cf->nack);
    confirm_free(cf);
}

/* Publisher confirm for |seq| after routing: at once, or once every
 * persistent copy is durable. */
static void confirm_after(amqp_chan_t *ch, uint64_t seq, bool persistent, const amqp_route_result_t *res, bool nack)
{
    int n = persistent ? res->nwait + (res->wait_stream ? 1 : 0) : 0;
    if (nack || n == 0) {
        confirm_send(ch, seq, nack);
        return;
    }
    confirm_t *cf = calloc(1, sizeof *cf + (size_t)n * sizeof cf->waits[0]);
    if (!cf) {
        confirm_send(ch, seq, true);
        return;
    }
    cf->ch = ch;
    cf->seq = seq;
    cf->pending = n + 1; /* held until all are armed: some fire at once */
    jn_list_insert_tail(&ch->confirms, &cf->node);
    for (int i = 0; i < res->nwait; i++) {
        confirm_wait_t *cw = &cf->waits[cf->nw++];
        cw->cf = cf;
        cw->armed = true;
        jn_queue_wait_durable(res->wait[i].q, res->wait[i].id, &cw->w, on_durable);
    }
    if (res->wait_stream) {
        confirm_wait_t *cw = &cf->waits[cf->nw++];
        cw->cf = cf;
        cw->armed = true;
        jn_broker_wait_durable(door(ch)->broker, res->wait_stream, res->wait_part, res->wait_off, &cw->w, on_durable);
    }
    on_durable(&(confirm_wait_t){.cf = cf}.w, 0);
}

/* Routes one complete message; |hdr| holds the content header payload. */
static void publish(amqp_chan_t *ch, const char *exchange, const char *key, bool mandatory, const jn_buf_t *hdr,
                    const jn_buf_t *body)
{
    jn_amqp_t *a = door(ch);
    jn_amqp_content_header_t h;
    if (jn_amqp_header_decode(hdr->data, hdr->len, &h)) {
        chan_error(ch, JN_AMQP_SYNTAX_ERROR, "SYNTAX_ERROR - bad content header", JN_AMQP_BASIC_PUBLISH);
        return;
    }
    uint64_t seq = ch->confirm ? ++ch->pub_seq : 0;
    if ((h.props.flags & JN_AMQP_P_EXPIRATION) && !jn__amqp_expiration_ok(&h.props.expiration)) {
        chan_errorf(ch, JN_AMQP_PRECONDITION_FAILED, JN_AMQP_BASIC_PUBLISH,
                    "PRECONDITION_FAILED - invalid expiration '%.*s'", (const char *)h.props.expiration.p,
                    h.props.expiration.len);
        return;
    }
    amqp_exchange_t *x = jn__amqp_exchange_find(a, (const uint8_t *)exchange, strlen(exchange));
    if (!x) {
        chan_errorf(ch, JN_AMQP_NOT_FOUND, JN_AMQP_BASIC_PUBLISH, "NOT_FOUND - no exchange '%.*s' in vhost '/'",
                    exchange, strlen(exchange));
        return;
    }
    if (x->internal) {
        chan_errorf(ch, JN_AMQP_ACCESS_REFUSED, JN_AMQP_BASIC_PUBLISH,
                    "ACCESS_REFUSED - cannot publish to internal exchange '%.*s'", exchange, strlen(exchange));
        return;
    }
    amqp_msg_t msg = {
        .exchange = exchange,
        .exchange_len = strlen(exchange),
        .key = key,
        .key_len = strlen(key),
        .props = &h.props,
        .body = body->data,
        .body_len = body->len,
    };
    amqp_route_result_t res;
    int code = jn__amqp_publish(a, x, &msg, &ch->c->principal, &res);
    if (code) {
        jn__amqp_route_result_free(&res);
        chan_error(ch, (uint16_t)code, "ACCESS_REFUSED - publish not allowed", JN_AMQP_BASIC_PUBLISH);
        return;
    }
    if (res.routed == 0 && res.rejected == 0 && mandatory) {
        jn_buf_t *out = jn_conn_outbuf(ch->c->conn);
        jn_amqp_arg_t r[4] = {JN_AMQP_U(JN_AMQP_NO_ROUTE), JN_AMQP_STR("NO_ROUTE"), JN_AMQP_STR(exchange),
                              JN_AMQP_STR(key)};
        if (out && (jn_amqp_encode_method(out, ch->id, JN_AMQP_BASIC_RETURN, r, 4) ||
                    jn_amqp_encode_header(out, ch->id, 60, body->len, &h.props) ||
                    jn_amqp_encode_body(out, ch->id, body->data, body->len, ch->c->frame_max))) {
            jn__amqp_route_result_free(&res);
            jn_conn_abort(ch->c->conn);
            return;
        }
        jn_conn_commit(ch->c->conn, 0);
    }
    if (ch->confirm) {
        bool persistent = (h.props.flags & JN_AMQP_P_DELIVERY_MODE) && h.props.delivery_mode == 2;
        confirm_after(ch, seq, persistent, &res, res.rejected > 0 || res.errors > 0);
    }
    jn__amqp_route_result_free(&res);
}

static void content_done(amqp_chan_t *ch)
{
    ch->pub = PUB_NONE;
    if (ch->tx) {
        tx_op_t *op;
        size_t add = ch->hdr.len + ch->body.len;
        if (ch->tx_bytes + add > TX_BYTES_MAX) {
            chan_error(ch, JN_AMQP_PRECONDITION_FAILED, "PRECONDITION_FAILED - transaction too large",
                       JN_AMQP_BASIC_PUBLISH);
            return;
        }
        if (tx_add(ch, &op) || jn_buf_append(&op->hdr, ch->hdr.data, ch->hdr.len) ||
            (ch->body.len && jn_buf_append(&op->body, ch->body.data, ch->body.len))) {
            chan_error(ch, JN_AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory", JN_AMQP_BASIC_PUBLISH);
            return;
        }
        ch->tx_bytes += add;
        op->method = JN_AMQP_BASIC_PUBLISH;
        op->mandatory = ch->pub_mandatory;
        memcpy(op->exchange, ch->pub_exchange, sizeof op->exchange);
        memcpy(op->key, ch->pub_key, sizeof op->key);
        return;
    }
    publish(ch, ch->pub_exchange, ch->pub_key, ch->pub_mandatory, &ch->hdr, &ch->body);
}

static void basic_publish(amqp_chan_t *ch, const jn_amqp_method_t *m)
{
    if (!arg_name(ch, &m->a[1], ch->pub_exchange, m->id) || !arg_name(ch, &m->a[2], ch->pub_key, m->id))
        return;
    ch->pub_mandatory = m->a[3].u;
    ch->pub = PUB_HEADER;
    jn_buf_reset(&ch->hdr);
    jn_buf_reset(&ch->body);
}

static void tx_commit(amqp_chan_t *ch)
{
    tx_op_t *op = ch->tx_head;
    ch->tx_head = NULL;
    ch->tx_tail = &ch->tx_head;
    ch->tx_bytes = 0;
    while (op) {
        tx_op_t *n = op->next;
        if (!ch->closing) {
            if (op->method == JN_AMQP_BASIC_PUBLISH)
                publish(ch, op->exchange, op->key, op->mandatory, &op->hdr, &op->body);
            else
                do_settle(ch, op->method, op->tag, op->multiple, op->requeue);
        }
        jn_buf_free(&op->hdr);
        jn_buf_free(&op->body);
        free(op);
        op = n;
    }
}

/* ---- dispatch ---- */

static void chan_method(amqp_chan_t *ch, const jn_amqp_method_t *m)
{
    char text[256];
    int code;
    switch (m->id) {
    case JN_AMQP_CHANNEL_CLOSE:
        chan_send(ch, JN_AMQP_CHANNEL_CLOSE_OK, NULL, 0);
        jn__amqp_chan_done(ch->c, ch->id);
        return;
    case JN_AMQP_CHANNEL_CLOSE_OK:
        jn__amqp_chan_done(ch->c, ch->id);
        return;
    case JN_AMQP_CHANNEL_FLOW: {
        ch->flow = m->a[0].u;
        jn_amqp_arg_t r[1] = {JN_AMQP_U(ch->flow)};
        chan_send(ch, JN_AMQP_CHANNEL_FLOW_OK, r, 1);
        if (ch->flow)
            resume_consumers(ch);
        return;
    }
    case JN_AMQP_CHANNEL_FLOW_OK:
        return;
    case JN_AMQP_EXCHANGE_DECLARE:
    case JN_AMQP_EXCHANGE_DELETE:
        if (!(m->id == JN_AMQP_EXCHANGE_DECLARE && m->a[3].u) && m->a[1].len && !exchange_allowed(ch, &m->a[1], m->id))
            return;
        code = m->id == JN_AMQP_EXCHANGE_DECLARE ? jn__amqp_exchange_declare(door(ch), m, text, sizeof text)
                                                 : jn__amqp_exchange_delete(door(ch), m, text, sizeof text);
        if (code == JN_AMQP_COMMAND_INVALID) {
            jn__amqp_conn_error(ch->c, (uint16_t)code, text, m->id);
            return;
        }
        if (code) {
            chan_error(ch, (uint16_t)code, text, m->id);
            return;
        }
        if (m->id == JN_AMQP_EXCHANGE_DECLARE ? !m->a[7].u : !m->a[3].u)
            chan_send(ch, m->id == JN_AMQP_EXCHANGE_DECLARE ? JN_AMQP_EXCHANGE_DECLARE_OK : JN_AMQP_EXCHANGE_DELETE_OK,
                 NULL, 0);
        return;
    case JN_AMQP_EXCHANGE_BIND:
    case JN_AMQP_EXCHANGE_UNBIND: {
        bool unbind = m->id == JN_AMQP_EXCHANGE_UNBIND;
        jn_amqp_str_t dest = {m->a[1].p, m->a[1].len}, src = {m->a[2].p, m->a[2].len},
                      key = {m->a[3].p, m->a[3].len}, args = {m->a[5].p, m->a[5].len};
        if (m->a[1].len && !exchange_allowed(ch, &m->a[1], m->id))
            return;
        code = jn__amqp_bind(door(ch), true, &dest, &src, &key, &args, unbind, &ch->c->principal, text, sizeof text);
        if (code) {
            chan_error(ch, (uint16_t)code, text, m->id);
            return;
        }
        if (!m->a[4].u)
            chan_send(ch, unbind ? JN_AMQP_EXCHANGE_UNBIND_OK : JN_AMQP_EXCHANGE_BIND_OK, NULL, 0);
        return;
    }
    case JN_AMQP_QUEUE_DECLARE:
        queue_declare(ch, m);
        return;
    case JN_AMQP_QUEUE_BIND:
        queue_bind(ch, m, false);
        return;
    case JN_AMQP_QUEUE_UNBIND:
        queue_bind(ch, m, true);
        return;
    case JN_AMQP_QUEUE_PURGE:
        queue_purge(ch, m);
        return;
    case JN_AMQP_QUEUE_DELETE:
        queue_delete(ch, m);
        return;
    case JN_AMQP_BASIC_QOS:
        basic_qos(ch, m);
        return;
    case JN_AMQP_BASIC_CONSUME:
        basic_consume(ch, m);
        return;
    case JN_AMQP_BASIC_CANCEL:
        basic_cancel(ch, m);
        return;
    case JN_AMQP_BASIC_PUBLISH:
        basic_publish(ch, m);
        return;
    case JN_AMQP_BASIC_GET:
        basic_get(ch, m);
        return;
    case JN_AMQP_BASIC_ACK:
    case JN_AMQP_BASIC_NACK:
    case JN_AMQP_BASIC_REJECT:
        basic_settle_method(ch, m);
        return;
    case JN_AMQP_BASIC_RECOVER:
    case JN_AMQP_BASIC_RECOVER_ASYNC:
        basic_recover(ch, m);
        return;
    case JN_AMQP_CONFIRM_SELECT:
        if (ch->tx) {
            chan_error(ch, JN_AMQP_PRECONDITION_FAILED, "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
                       m->id);
            return;
        }
        ch->confirm = true;
        if (!m->a[0].u)
            chan_send(ch, JN_AMQP_CONFIRM_SELECT_OK, NULL, 0);
        return;
    case JN_AMQP_TX_SELECT:
        if (ch->confirm) {
            chan_error(ch, JN_AMQP_PRECONDITION_FAILED, "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
                       m->id);
            return;
        }
        ch->tx = true;
        chan_send(ch, JN_AMQP_TX_SELECT_OK, NULL, 0);
        return;
    case JN_AMQP_TX_COMMIT:
    case JN_AMQP_TX_ROLLBACK:
        if (!ch->tx) {
            chan_error(ch, JN_AMQP_PRECONDITION_FAILED, "PRECONDITION_FAILED - channel is not transactional", m->id);
            return;
        }
        if (m->id == JN_AMQP_TX_COMMIT)
            tx_commit(ch);
        else
            tx_free(ch);
        if (!ch->closing)
            chan_send(ch, m->id == JN_AMQP_TX_COMMIT ? JN_AMQP_TX_COMMIT_OK : JN_AMQP_TX_ROLLBACK_OK, NULL, 0);
        return;
    case JN_AMQP_CHANNEL_OPEN:
        jn__amqp_conn_error(ch->c, JN_AMQP_CHANNEL_ERROR, "CHANNEL_ERROR - second 'channel.open' seen", m->id);
        return;
    default:
        /* Server-to-client methods and connection methods on a channel. */
        jn__amqp_conn_error(ch->c, JN_AMQP_COMMAND_INVALID, "COMMAND_INVALID - method not valid here", m->id);
        return;
    }
}

void jn__amqp_chan_frame(amqp_chan_t *ch, const jn_amqp_frame_t *f)
{
    amqp_conn_t *c = ch->c;
    if (f->type == JN_AMQP_FRAME_METHOD) {
        jn_amqp_method_t m;
        int rc = jn_amqp_method_decode(f->payload, f->size, &m);
        if (rc) {
            jn__amqp_conn_error(c, rc == JN_EUNSUPPORTED ? JN_AMQP_NOT_IMPLEMENTED : JN_AMQP_SYNTAX_ERROR,
                                rc == JN_EUNSUPPORTED ? "NOT_IMPLEMENTED - unknown method" : "SYNTAX_ERROR - bad method",
                                f->size >= 4 ? jn_load_be32(f->payload) : 0);
            return;
        }
        if (ch->closing) {
            /* Only Close and Close-Ok count on a closing channel. */
            if (m.id == JN_AMQP_CHANNEL_CLOSE || m.id == JN_AMQP_CHANNEL_CLOSE_OK) {
                if (m.id == JN_AMQP_CHANNEL_CLOSE)
                    chan_send(ch, JN_AMQP_CHANNEL_CLOSE_OK, NULL, 0);
                jn__amqp_chan_done(c, ch->id);
            }
            return;
        }
        if (ch->pub != PUB_NONE) {
            jn__amqp_conn_error(c, JN_AMQP_UNEXPECTED_FRAME, "UNEXPECTED_FRAME - expected content", m.id);
            return;
        }
        chan_method(ch, &m);
        return;
    }
    if (ch->closing)
        return;
    if (f->type == JN_AMQP_FRAME_HEADER) {
        jn_amqp_content_header_t h;
        if (ch->pub != PUB_HEADER) {
            jn__amqp_conn_error(c, JN_AMQP_UNEXPECTED_FRAME, "UNEXPECTED_FRAME - content header without publish", 0);
            return;
        }
        if (jn_amqp_header_decode(f->payload, f->size, &h) || h.class_id != 60) {
            jn__amqp_conn_error(c, JN_AMQP_FRAME_ERROR, "FRAME_ERROR - bad content header", JN_AMQP_BASIC_PUBLISH);
            return;
        }
        if (h.body_size > door(ch)->cfg.max_message) {
            chan_error(ch, JN_AMQP_PRECONDITION_FAILED, "PRECONDITION_FAILED - message size exceeds max",
                       JN_AMQP_BASIC_PUBLISH);
            /* The body frames still come: skip them. */
            ch->closing = true;
            return;
        }
        if (jn_buf_append(&ch->hdr, f->payload, f->size)) {
            chan_error(ch, JN_AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory", JN_AMQP_BASIC_PUBLISH);
            return;
        }
        ch->pub_size = h.body_size;
        ch->pub = PUB_BODY;
        if (h.body_size == 0)
            content_done(ch);
        return;
    }
    /* body */
    if (ch->pub != PUB_BODY) {
        jn__amqp_conn_error(c, JN_AMQP_UNEXPECTED_FRAME, "UNEXPECTED_FRAME - body without header", 0);
        return;
    }
    if (ch->body.len + f->size > ch->pub_size) {
        jn__amqp_conn_error(c, JN_AMQP_FRAME_ERROR, "FRAME_ERROR - body larger than announced", JN_AMQP_BASIC_PUBLISH);
        return;
    }
    if (f->size && jn_buf_append(&ch->body, f->payload, f->size)) {
        chan_error(ch, JN_AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory", JN_AMQP_BASIC_PUBLISH);
        return;
    }
    if (ch->body.len == ch->pub_size)
        content_done(ch);
}
