/* test_queue.c - queues on a real broker: declare and equivalence, enqueue /
 * consume / ack, prefetch, competing consumers, nack with and without
 * requeue, dead letters, TTL on a fake clock, length limits, priorities,
 * get, purge, delete, cancel, exclusive and single-active consumers,
 * refusal and resume, auto-delete and expiry, durability across reopen, and
 * a million-message backlog whose tracked state stays bounded. Each test
 * works in its own mkdtemp() directory with its own uv loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <ftw.h>
#include <unistd.h>

#include "core/broker.h"
#include "core/broker_int.h"
#include "core/queue.h"
#include "core/queue_int.h"
#include "common/log.h"

/* ---- fixture ---- */

typedef struct dl_rec {
    char value[32];
    char reason[16];
} dl_rec_t;

typedef struct fx {
    char dir[64];
    uv_loop_t loop;
    jn_broker_config_t cfg;
    jn_clock_t clock;
    int64_t now;
    jn_broker_t *b;
    dl_rec_t dl[64];
    int ndl;
} fx_t;

static int64_t fake_now(void *ctx) { return *(int64_t *)ctx; }

static int rm_cb(const char *p, const struct stat *st, int f, struct FTW *ftw)
{
    (void)st;
    (void)f;
    (void)ftw;
    return remove(p);
}

static void on_dead_letter(jn_queue_t *q, const jn_record_t *rec, const char *reason, void *arg)
{
    (void)q;
    fx_t *f = arg;
    if (f->ndl >= 64)
        return;
    dl_rec_t *d = &f->dl[f->ndl++];
    size_t n = rec->value_len > 0 ? (size_t)rec->value_len : 0;
    if (n >= sizeof d->value)
        n = sizeof d->value - 1;
    memcpy(d->value, rec->value, n);
    d->value[n] = '\0';
    snprintf(d->reason, sizeof d->reason, "%s", reason);
}

static void fx_open(fx_t *f)
{
    assert_int_equal(jn_broker_open(&f->loop, &f->cfg, &f->clock, &f->b), 0);
    jn_queue_set_dead_letter_handler(f->b, on_dead_letter, f);
}

static void spin(fx_t *f, int n)
{
    for (int i = 0; i < n; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void fx_close_broker(fx_t *f)
{
    jn_broker_close(f->b);
    f->b = NULL;
    spin(f, 3);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/jn_queue_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    jn_broker_config_default(&f->cfg);
    f->cfg.data_dir = f->dir;
    f->cfg.stream_defaults.fsync = JN_FSYNC_NEVER;
    f->now = 1700000000000;
    f->clock.now_ms = fake_now;
    f->clock.ctx = &f->now;
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    if (f->b)
        fx_close_broker(f);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* sync jobs still on the thread pool need the loop */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static jn_queue_opts_t opts(void)
{
    jn_queue_opts_t o;
    jn_queue_opts_default(&o);
    o.fsync = JN_FSYNC_NEVER;
    return o;
}

static jn_queue_t *declare(fx_t *f, const char *name, const jn_queue_opts_t *o)
{
    jn_queue_t *q = NULL;
    assert_int_equal(jn_queue_declare(f->b, name, o, &q), 0);
    assert_non_null(q);
    return q;
}

static int64_t put(jn_queue_t *q, const char *value, uint8_t prio)
{
    jn_record_t r;
    memset(&r, 0, sizeof r);
    r.key_len = -1;
    r.value = (const uint8_t *)value;
    r.value_len = (int32_t)strlen(value);
    return jn_queue_enqueue(q, &r, prio);
}

static void put_n(jn_queue_t *q, int n)
{
    char v[32];
    for (int i = 0; i < n; i++) {
        snprintf(v, sizeof v, "m%d", i);
        assert_true(put(q, v, 0) >= 0);
    }
}

/* ---- a recording consumer ---- */

#define MAXGOT 256

typedef struct got {
    int64_t id;
    bool redelivered;
    char value[32];
} got_t;

typedef struct tc {
    jn_queue_t *q;
    jn_qconsumer_t *c;
    got_t got[MAXGOT];
    int n;
    bool refuse;     /* answer JN_EAGAIN */
    bool auto_ack;   /* ack inside the callback */
    int cancelled;
    size_t max_tracked;
    int64_t count;   /* deliveries (also past MAXGOT) */
} tc_t;

static int tc_deliver(jn_qconsumer_t *c, const jn_qdelivery_t *d, void *arg)
{
    (void)c;
    tc_t *t = arg;
    if (t->refuse)
        return JN_EAGAIN;
    t->count++;
    if (t->n < MAXGOT) {
        got_t *g = &t->got[t->n++];
        g->id = d->id;
        g->redelivered = d->redelivered;
        size_t n = d->rec->value_len > 0 ? (size_t)d->rec->value_len : 0;
        if (n >= sizeof g->value)
            n = sizeof g->value - 1;
        memcpy(g->value, d->rec->value, n);
        g->value[n] = '\0';
    }
    if (t->auto_ack)
        assert_int_equal(jn_queue_ack(t->q, d->id), 0);
    size_t tr = jn__queue_tracked(t->q);
    if (tr > t->max_tracked)
        t->max_tracked = tr;
    return 0;
}

static void tc_cancel(jn_qconsumer_t *c, void *arg)
{
    (void)c;
    tc_t *t = arg;
    t->cancelled++;
}

static int tc_consume(tc_t *t, jn_queue_t *q, uint32_t prefetch, bool no_ack, bool exclusive, int32_t prio)
{
    memset(t, 0, sizeof *t);
    t->q = q;
    jn_qconsumer_opts_t o;
    memset(&o, 0, sizeof o);
    o.prefetch = prefetch;
    o.no_ack = no_ack;
    o.exclusive = exclusive;
    o.priority = prio;
    o.deliver = tc_deliver;
    o.cancel = tc_cancel;
    o.arg = t;
    return jn_queue_consume(q, &o, &t->c);
}

/* ---- tests ---- */

static void test_declare(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    o.max_length = 10;
    jn_queue_t *q = declare(f, "orders", &o);
    jn_queue_t *q2 = NULL;
    assert_int_equal(jn_queue_declare(f->b, "orders", &o, &q2), 0);
    assert_ptr_equal(q, q2);
    o.max_length = 11;
    assert_int_equal(jn_queue_declare(f->b, "orders", &o, &q2), JN_ESTATE);
    o.max_length = 10;
    o.message_ttl_ms = 5;
    assert_int_equal(jn_queue_declare(f->b, "orders", &o, &q2), JN_ESTATE);
    o = opts();
    assert_int_equal(jn_queue_declare(f->b, "", &o, &q2), JN_EINVAL);
    assert_int_equal(jn_queue_declare(f->b, "a/b", &o, &q2), JN_EINVAL);
    assert_int_equal(jn_queue_declare(f->b, "tab\there", &o, &q2), JN_EINVAL);
    /* Names that are no stream names still work. */
    jn_queue_t *odd = declare(f, "amq.gen-Weird name: with spaces & stuff!", &o);
    jn_queue_t *dots = declare(f, "..", &o);
    assert_ptr_equal(jn_queue_find(f->b, "orders"), q);
    assert_null(jn_queue_find(f->b, "nope"));
    /* Name order. */
    assert_ptr_equal(jn_queue_next(f->b, NULL), dots);
    assert_ptr_equal(jn_queue_next(f->b, dots), odd);
    assert_ptr_equal(jn_queue_next(f->b, odd), q);
    assert_null(jn_queue_next(f->b, q));
    assert_string_equal(jn_queue_name(q), "orders");
    assert_int_equal(jn_queue_options(q)->max_length, 10);
    json_t *j = jn_queue_json(q);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "orders");
    assert_int_equal(json_integer_value(json_object_get(j, "ready")), 0);
    json_decref(j);
    /* The queue's stream is internal. */
    assert_non_null(jn_broker_stream_find(f->b, "__q.orders", 10));
}

static void test_enqueue_consume_ack(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "work", &o);
    put_n(q, 5);
    assert_int_equal(jn_queue_ready(q), 5);
    tc_t t;
    assert_int_equal(tc_consume(&t, q, 0, false, false, 0), 0);
    assert_int_equal(t.n, 0); /* deliveries start on a later iteration */
    spin(f, 3);
    assert_int_equal(t.n, 5);
    for (int i = 0; i < 5; i++) {
        char v[8];
        snprintf(v, sizeof v, "m%d", i);
        assert_string_equal(t.got[i].value, v);
        assert_false(t.got[i].redelivered);
    }
    assert_int_equal(jn_queue_ready(q), 0);
    assert_int_equal(jn_queue_unacked(q), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(jn_queue_ack(q, t.got[i].id), 0);
    assert_int_equal(jn_queue_ack(q, t.got[0].id), JN_ENOENT);
    assert_int_equal(jn_queue_unacked(q), 0);
    /* A message enqueued while a consumer waits is offered at once. */
    assert_true(put(q, "late", 0) >= 0);
    spin(f, 1);
    assert_int_equal(t.n, 6);
    assert_string_equal(t.got[5].value, "late");
    assert_int_equal(jn_queue_consumer_count(q), 1);
}

static void test_prefetch(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "pf", &o);
    put_n(q, 10);
    tc_t t;
    assert_int_equal(tc_consume(&t, q, 3, false, false, 0), 0);
    spin(f, 3);
    assert_int_equal(t.n, 3);
    assert_int_equal(jn_queue_ready(q), 7);
    assert_int_equal(jn_queue_ack(q, t.got[0].id), 0);
    spin(f, 3);
    assert_int_equal(t.n, 4);
    jn_qconsumer_set_prefetch(t.c, 6);
    spin(f, 3);
    assert_int_equal(t.n, 7);
    assert_int_equal(jn_queue_unacked(q), 6);
    /* no-ack consumers settle on take and are not limited by prefetch */
    tc_t n;
    assert_int_equal(tc_consume(&n, q, 1, true, false, 0), 0);
    spin(f, 3);
    assert_int_equal(n.n, 3);
    assert_int_equal(jn_queue_unacked(q), 6);
    assert_int_equal(jn_queue_ready(q), 0);
}

static void test_competing(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "share", &o);
    tc_t a, b, hi;
    assert_int_equal(tc_consume(&a, q, 0, true, false, 0), 0);
    assert_int_equal(tc_consume(&b, q, 0, true, false, 0), 0);
    put_n(q, 10);
    spin(f, 3);
    assert_int_equal(a.n, 5);
    assert_int_equal(b.n, 5);
    assert_string_equal(a.got[0].value, "m0");
    assert_string_equal(b.got[0].value, "m1");
    /* A higher-priority consumer gets everything while it can take. */
    assert_int_equal(tc_consume(&hi, q, 2, false, false, 5), 0);
    put_n(q, 4);
    spin(f, 3);
    assert_int_equal(hi.n, 2);
    assert_int_equal(a.n + b.n, 12);
}

static void test_nack_requeue(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "nq", &o);
    put_n(q, 3);
    tc_t t;
    assert_int_equal(tc_consume(&t, q, 1, false, false, 0), 0);
    spin(f, 3);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.got[0].value, "m0");
    assert_int_equal(jn_queue_nack(q, t.got[0].id, true), 0);
    spin(f, 3);
    assert_int_equal(t.n, 2);
    assert_string_equal(t.got[1].value, "m0");
    assert_true(t.got[1].redelivered);
    assert_int_equal(t.got[1].id, t.got[0].id);
    assert_int_equal(jn_queue_ack(q, t.got[1].id), 0);
    spin(f, 3);
    assert_int_equal(t.n, 3);
    assert_string_equal(t.got[2].value, "m1");
    assert_false(t.got[2].redelivered);
    assert_int_equal(f->ndl, 0);
}

static void test_nack_dead_letter(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    o.dead_letter_target = "dlx";
    jn_queue_t *q = declare(f, "dq", &o);
    jn_queue_opts_t o2 = opts();
    jn_queue_t *plain = declare(f, "plain", &o2);
    put_n(q, 2);
    put_n(plain, 1);
    jn_qdelivery_t d;
    assert_int_equal(jn_queue_get(q, false, &d), 1);
    assert_int_equal(jn_queue_nack(q, d.id, false), 0);
    assert_int_equal(f->ndl, 1);
    assert_string_equal(f->dl[0].value, "m0");
    assert_string_equal(f->dl[0].reason, "rejected");
    assert_int_equal(jn_queue_unacked(q), 0);
    assert_int_equal(jn_queue_ready(q), 1);
    /* Without a dead-letter target the message is dropped. */
    assert_int_equal(jn_queue_get(plain, false, &d), 1);
    assert_int_equal(jn_queue_nack(plain, d.id, false), 0);
    assert_int_equal(f->ndl, 1);
    assert_int_equal(jn_queue_ready(plain), 0);
    assert_int_equal(jn_queue_nack(plain, d.id, false), JN_ENOENT);
}

static void test_ttl(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    o.message_ttl_ms = 1000;
    o.dead_letter_target = "dlx";
    jn_queue_t *q = declare(f, "ttl", &o);
    put_n(q, 2);
    f->now += 500;
    assert_true(put(q, "fresh", 0) >= 0);
    f->now += 600; /* m0, m1 are 1100 ms old, fresh 600 */
    tc_t t;
    assert_int_equal(tc_consume(&t, q, 0, false, false, 0), 0);
    spin(f, 3);
    assert_int_equal(f->ndl, 2);
    assert_string_equal(f->dl[0].value, "m0");
    assert_string_equal(f->dl[0].reason, "expired");
    assert_string_equal(f->dl[1].value, "m1");
    assert_int_equal(t.n, 1);
    assert_string_equal(t.got[0].value, "fresh");
    jn_qconsumer_cancel(t.c, false);

    /* At the head, without consumers: the maintenance pass expires. */
    f->ndl = 0;
    put_n(q, 1);
    assert_int_equal(jn_queue_ready(q), 2); /* fresh (requeued) + m0 */
    f->now += 2000;
    jn__queue_maintain(f->b);
    assert_int_equal(jn_queue_ready(q), 0);
    assert_int_equal(f->ndl, 2);
    /* get skips expired messages too */
    f->ndl = 0;
    put_n(q, 1);
    f->now += 1001;
    jn_qdelivery_t d;
    assert_int_equal(jn_queue_get(q, true, &d), 0);
    assert_int_equal(f->ndl, 1);
}

static int64_t put_ttl(jn_queue_t *q, const char *value, const char *ttl)
{
    jn_header_t h = {(const uint8_t *)JN_QUEUE_TTL_HEADER, (uint32_t)strlen(JN_QUEUE_TTL_HEADER),
                     (const uint8_t *)ttl, (int32_t)strlen(ttl)};
    jn_record_t r;
    memset(&r, 0, sizeof r);
    r.key_len = -1;
    r.value = (const uint8_t *)value;
    r.value_len = (int32_t)strlen(value);
    r.headers = &h;
    r.header_count = 1;
    return jn_queue_enqueue(q, &r, 0);
}

/* Per-message TTL (JN_QUEUE_TTL_HEADER): the lesser of it and the
 * queue's, enforced only at the head, as RabbitMQ does. */
static void test_message_ttl_header(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    o.dead_letter_target = "dlx";
    jn_queue_t *q = declare(f, "own", &o);
    assert_true(put_ttl(q, "short", "100") >= 0);
    assert_true(put(q, "forever", 0) >= 0);
    assert_true(put_ttl(q, "bad", "12x") >= 0);     /* not a number: no TTL */
    assert_true(put_ttl(q, "long", "100000") >= 0);
    f->now += 101;
    jn__queue_maintain(f->b); /* head "short" expired; "forever" stops the pass */
    assert_int_equal(f->ndl, 1);
    assert_string_equal(f->dl[0].value, "short");
    assert_string_equal(f->dl[0].reason, "expired");
    assert_int_equal(jn_queue_ready(q), 3);

    /* Behind an unexpired head a message waits past its TTL; reaching the
     * head (a get) expires it. */
    jn_qdelivery_t d;
    assert_int_equal(jn_queue_get(q, true, &d), 1);
    assert_int_equal(jn_queue_get(q, true, &d), 1); /* "bad" */
    assert_true(put_ttl(q, "behind", "50") >= 0);   /* after "long" */
    f->now += 60;
    jn__queue_maintain(f->b);
    assert_int_equal(f->ndl, 1);                    /* "long" is the head */
    assert_int_equal(jn_queue_get(q, true, &d), 1); /* long */
    assert_int_equal(jn_queue_get(q, true, &d), 0); /* behind: expired */
    assert_int_equal(f->ndl, 2);
    assert_string_equal(f->dl[1].value, "behind");

    /* With a queue TTL the shorter one wins, both ways. */
    jn_queue_opts_t o2 = opts();
    o2.message_ttl_ms = 200;
    o2.dead_letter_target = "dlx";
    jn_queue_t *q2 = declare(f, "both", &o2);
    assert_true(put_ttl(q2, "own-longer", "5000") >= 0);
    assert_true(put_ttl(q2, "own-shorter", "10") >= 0);
    f->now += 20;
    tc_t t;
    assert_int_equal(tc_consume(&t, q2, 0, true, false, 0), 0);
    spin(f, 3);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.got[0].value, "own-longer");
    assert_int_equal(f->ndl, 3);
    assert_string_equal(f->dl[2].value, "own-shorter");
    jn_qconsumer_cancel(t.c, false);
    assert_true(put_ttl(q2, "queue-wins", "5000") >= 0);
    f->now += 201;
    jn__queue_maintain(f->b);
    assert_int_equal(f->ndl, 4);
    assert_string_equal(f->dl[3].value, "queue-wins");
}

static void test_max_length(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    o.max_length = 3;
    o.dead_letter_target = "dlx";
    jn_queue_t *q = declare(f, "drop", &o);
    put_n(q, 5);
    assert_int_equal(jn_queue_ready(q), 3);
    assert_int_equal(f->ndl, 2);
    assert_string_equal(f->dl[0].value, "m0");
    assert_string_equal(f->dl[0].reason, "maxlen");
    assert_string_equal(f->dl[1].value, "m1");
    jn_qdelivery_t d;
    assert_int_equal(jn_queue_get(q, true, &d), 1);
    assert_memory_equal(d.rec->value, "m2", 2);

    jn_queue_opts_t r = opts();
    r.max_length = 2;
    r.overflow = JN_QUEUE_REJECT_PUBLISH;
    jn_queue_t *rq = declare(f, "reject", &r);
    assert_true(put(rq, "a", 0) >= 0);
    assert_true(put(rq, "b", 0) >= 0);
    assert_int_equal(put(rq, "c", 0), JN_ETOOBIG);
    assert_int_equal(jn_queue_ready(rq), 2);
    /* Unacked messages do not count against the limit. */
    assert_int_equal(jn_queue_get(rq, false, &d), 1);
    assert_true(put(rq, "c", 0) >= 0);
    assert_int_equal(put(rq, "d", 0), JN_ETOOBIG);

    jn_queue_opts_t bo = opts();
    bo.max_length_bytes = 10;
    jn_queue_t *bq = declare(f, "bytes", &bo);
    assert_true(put(bq, "12345", 0) >= 0);
    assert_true(put(bq, "67890", 0) >= 0);
    assert_true(put(bq, "abc", 0) >= 0); /* 13 bytes: the oldest goes */
    assert_int_equal(jn_queue_ready(bq), 2);
    assert_int_equal(jn_queue_get(bq, true, &d), 1);
    assert_memory_equal(d.rec->value, "67890", 5);
}

static void test_priorities(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    o.max_priority = 5;
    jn_queue_t *q = declare(f, "prio", &o);
    assert_true(put(q, "low", 1) >= 0);
    assert_true(put(q, "high", 5) >= 0);
    assert_true(put(q, "mid", 3) >= 0);
    assert_true(put(q, "over", 200) >= 0); /* clamped to 5 */
    assert_true(put(q, "zero", 0) >= 0);
    const char *want[] = {"high", "over", "mid", "low", "zero"};
    for (int i = 0; i < 5; i++) {
        jn_qdelivery_t d;
        assert_int_equal(jn_queue_get(q, true, &d), 1);
        assert_int_equal(d.rec->value_len, (int32_t)strlen(want[i]));
        assert_memory_equal(d.rec->value, want[i], strlen(want[i]));
    }
    jn_qdelivery_t d;
    assert_int_equal(jn_queue_get(q, true, &d), 0);
}

static void test_get(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "g", &o);
    jn_qdelivery_t d;
    assert_int_equal(jn_queue_get(q, false, &d), 0);
    put_n(q, 2);
    assert_int_equal(jn_queue_get(q, false, &d), 1);
    assert_memory_equal(d.rec->value, "m0", 2);
    assert_false(d.redelivered);
    assert_int_equal(jn_queue_unacked(q), 1);
    int64_t id = d.id;
    assert_int_equal(jn_queue_get(q, true, &d), 1);
    assert_memory_equal(d.rec->value, "m1", 2);
    assert_int_equal(jn_queue_unacked(q), 1);
    assert_int_equal(jn_queue_nack(q, id, true), 0);
    assert_int_equal(jn_queue_get(q, false, &d), 1);
    assert_true(d.redelivered);
    assert_int_equal(d.id, id);
    assert_int_equal(jn_queue_ack(q, id), 0);
    assert_int_equal(jn_queue_get(q, false, &d), 0);
}

static void test_purge(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "p", &o);
    put_n(q, 5);
    jn_qdelivery_t d;
    assert_int_equal(jn_queue_get(q, false, &d), 1);
    int64_t id = d.id;
    assert_int_equal(jn_queue_get(q, false, &d), 1);
    assert_int_equal(jn_queue_nack(q, d.id, true), 0);
    assert_int_equal(jn_queue_purge(q), 4);
    assert_int_equal(jn_queue_ready(q), 0);
    assert_int_equal(jn_queue_unacked(q), 1);
    assert_int_equal(jn_queue_ack(q, id), 0);
    put_n(q, 1);
    assert_int_equal(jn_queue_get(q, true, &d), 1);
    assert_memory_equal(d.rec->value, "m0", 2);
    assert_int_equal(jn__queue_tracked(q), 0);
}

static void test_delete(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "del", &o);
    put_n(q, 3);
    tc_t t;
    assert_int_equal(tc_consume(&t, q, 1, false, false, 0), 0);
    assert_int_equal(jn_queue_delete(q, true, false), JN_ESTATE);
    assert_int_equal(jn_queue_delete(q, false, true), JN_ESTATE);
    assert_int_equal(jn_queue_delete(q, false, false), 3);
    assert_int_equal(t.cancelled, 1);
    assert_null(jn_queue_find(f->b, "del"));
    assert_null(jn_broker_stream_find(f->b, "__q.del", 7));
    spin(f, 3);
    assert_int_equal(t.n, 0);
    /* if_unused and if_empty met */
    jn_queue_t *e = declare(f, "empty", &o);
    assert_int_equal(jn_queue_delete(e, true, true), 0);
    assert_null(jn_queue_find(f->b, "empty"));
    /* redeclared after delete: a new, empty queue */
    q = declare(f, "del", &o);
    assert_int_equal(jn_queue_ready(q), 0);
}

static void test_cancel_requeues(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "cq", &o);
    put_n(q, 3);
    tc_t a;
    assert_int_equal(tc_consume(&a, q, 0, false, false, 0), 0);
    spin(f, 3);
    assert_int_equal(a.n, 3);
    jn_qconsumer_cancel(a.c, false);
    assert_int_equal(a.cancelled, 0); /* the callback is for queue deletion */
    assert_int_equal(jn_queue_ready(q), 3);
    assert_int_equal(jn_queue_unacked(q), 0);
    tc_t b;
    assert_int_equal(tc_consume(&b, q, 0, false, false, 0), 0);
    spin(f, 3);
    assert_int_equal(b.n, 3);
    for (int i = 0; i < 3; i++)
        assert_true(b.got[i].redelivered);
    assert_string_equal(b.got[0].value, "m0");
    /* keep_unacked: the messages stay unacked, settled later by id */
    jn_qconsumer_cancel(b.c, true);
    assert_int_equal(jn_queue_unacked(q), 3);
    assert_int_equal(jn_queue_ready(q), 0);
    assert_int_equal(jn_queue_ack(q, b.got[0].id), 0);
    assert_int_equal(jn_queue_nack(q, b.got[1].id, true), 0);
    assert_int_equal(jn_queue_ready(q), 1);
    assert_int_equal(jn_queue_unacked(q), 1);
}

static void test_exclusive_and_sac(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "ex", &o);
    tc_t a, b;
    assert_int_equal(tc_consume(&a, q, 0, false, true, 0), 0);
    assert_int_equal(tc_consume(&b, q, 0, false, false, 0), JN_ESTATE);
    jn_qconsumer_cancel(a.c, false);
    assert_int_equal(tc_consume(&b, q, 0, false, false, 0), 0);
    assert_int_equal(tc_consume(&a, q, 0, false, true, 0), JN_ESTATE);

    jn_queue_opts_t so = opts();
    so.single_active_consumer = true;
    jn_queue_t *s = declare(f, "sac", &so);
    tc_t c1, c2;
    assert_int_equal(tc_consume(&c1, s, 0, true, false, 0), 0);
    assert_int_equal(tc_consume(&c2, s, 0, true, false, 9), 0);
    put_n(s, 4);
    spin(f, 3);
    assert_int_equal(c1.n, 4);
    assert_int_equal(c2.n, 0);
    jn_qconsumer_cancel(c1.c, false);
    put_n(s, 2);
    spin(f, 3);
    assert_int_equal(c2.n, 2);
}

static void test_refuse_resume(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "rr", &o);
    tc_t a, b;
    assert_int_equal(tc_consume(&a, q, 0, false, false, 0), 0);
    a.refuse = true;
    put_n(q, 2);
    spin(f, 3);
    assert_int_equal(a.n, 0);
    assert_int_equal(jn_queue_ready(q), 2);
    assert_int_equal(jn_queue_unacked(q), 0);
    /* another consumer takes what the refusing one cannot */
    assert_int_equal(tc_consume(&b, q, 1, false, false, 0), 0);
    spin(f, 3);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.got[0].value, "m0");
    assert_false(b.got[0].redelivered);
    a.refuse = false;
    spin(f, 3);
    assert_int_equal(a.n, 0); /* skipped until resumed */
    jn_qconsumer_resume(a.c);
    spin(f, 3);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.got[0].value, "m1");
    assert_false(a.got[0].redelivered);
}

static void test_auto_delete_and_expires(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    o.auto_delete = true;
    jn_queue_t *q = declare(f, "ad", &o);
    tc_t a, b;
    assert_int_equal(tc_consume(&a, q, 0, false, false, 0), 0);
    assert_int_equal(tc_consume(&b, q, 0, false, false, 0), 0);
    jn_qconsumer_cancel(a.c, false);
    assert_ptr_equal(jn_queue_find(f->b, "ad"), q);
    jn_qconsumer_cancel(b.c, false);
    assert_null(jn_queue_find(f->b, "ad"));

    jn_queue_opts_t e = opts();
    e.expires_ms = 1000;
    q = declare(f, "exp", &e);
    f->now += 500;
    jn__queue_maintain(f->b);
    assert_non_null(jn_queue_find(f->b, "exp"));
    jn_qdelivery_t d;
    assert_int_equal(jn_queue_get(q, true, &d), 0); /* use resets the timer */
    f->now += 900;
    jn__queue_maintain(f->b);
    assert_non_null(jn_queue_find(f->b, "exp"));
    f->now += 200;
    jn__queue_maintain(f->b);
    assert_null(jn_queue_find(f->b, "exp"));
}

static void test_durability(void **state)
{
    fx_t *f = *state;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "dur", &o);
    jn_queue_opts_t t = opts();
    t.durable = false;
    jn_queue_t *tq = declare(f, "temp", &t);
    put_n(tq, 2);
    put_n(q, 6);
    tc_t c;
    assert_int_equal(tc_consume(&c, q, 4, false, false, 0), 0);
    spin(f, 3);
    assert_int_equal(c.n, 4); /* m0..m3 delivered; m4, m5 never */
    assert_int_equal(jn_queue_ack(q, c.got[0].id), 0);
    assert_int_equal(jn_queue_ack(q, c.got[2].id), 0);
    /* closed before the consumer is offered m4 and m5 */
    fx_close_broker(f);
    fx_open(f);

    assert_null(jn_queue_find(f->b, "temp"));
    assert_null(jn_broker_stream_find(f->b, "__q.temp", 8));
    q = jn_queue_find(f->b, "dur");
    assert_non_null(q);
    assert_int_equal(jn_queue_ready(q), 4);
    assert_int_equal(tc_consume(&c, q, 0, false, false, 0), 0);
    spin(f, 3);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.got[0].value, "m1");
    assert_true(c.got[0].redelivered);
    assert_string_equal(c.got[1].value, "m3");
    assert_true(c.got[1].redelivered);
    assert_string_equal(c.got[2].value, "m4");
    assert_false(c.got[2].redelivered);
    assert_string_equal(c.got[3].value, "m5");
    assert_false(c.got[3].redelivered);
    /* ack m1 and m4, checkpoint, then ack m5 after it */
    assert_int_equal(jn_queue_ack(q, c.got[0].id), 0);
    assert_int_equal(jn_queue_ack(q, c.got[2].id), 0);
    assert_int_equal(jn__queue_checkpoint(q), 0);
    assert_int_equal(jn_queue_ack(q, c.got[3].id), 0);
    spin(f, 2);
    fx_close_broker(f);
    fx_open(f);
    q = jn_queue_find(f->b, "dur");
    assert_non_null(q);
    assert_int_equal(jn_queue_ready(q), 1);
    jn_qdelivery_t d;
    assert_int_equal(jn_queue_get(q, false, &d), 1);
    assert_memory_equal(d.rec->value, "m3", 2);
    assert_true(d.redelivered);
    assert_int_equal(jn_queue_ack(q, d.id), 0);
    assert_int_equal(jn_queue_get(q, false, &d), 0);
    fx_close_broker(f);
    fx_open(f);
    q = jn_queue_find(f->b, "dur");
    assert_int_equal(jn_queue_ready(q), 0);
    assert_int_equal(jn__queue_tracked(q), 0);
    /* a deleted queue stays deleted */
    assert_int_equal(jn_queue_delete(q, false, false), 0);
    fx_close_broker(f);
    fx_open(f);
    assert_null(jn_queue_find(f->b, "dur"));
    assert_null(jn_broker_stream_find(f->b, "__q.dur", 7));
}

static void test_backlog_bounded(void **state)
{
    fx_t *f = *state;
    const int N = 1000000;
    jn_queue_opts_t o = opts();
    jn_queue_t *q = declare(f, "big", &o);
    jn_record_t r;
    memset(&r, 0, sizeof r);
    r.key_len = -1;
    r.value = (const uint8_t *)"x";
    r.value_len = 1;
    for (int i = 0; i < N; i++) {
        assert_true(jn_queue_enqueue(q, &r, 0) >= 0);
        if (i % 65536 == 0)
            spin(f, 1);
    }
    assert_int_equal(jn_queue_ready(q), N);
    assert_true(jn__queue_tracked(q) == 0);
    tc_t c;
    assert_int_equal(tc_consume(&c, q, 100, false, false, 0), 0);
    c.auto_ack = true;
    for (int i = 0; i < 100000 && (jn_queue_ready(q) > 0 || jn_queue_unacked(q) > 0); i++)
        spin(f, 1);
    assert_int_equal(c.count, N);
    assert_int_equal(jn_queue_ready(q), 0);
    assert_int_equal(jn_queue_unacked(q), 0);
    assert_true(c.max_tracked <= 100);
    assert_int_equal(jn__queue_tracked(q), 0);
    /* The stream's segments below the head go. */
    jn__queue_maintain(f->b);
    jn_stream_t *s = jn_broker_stream_find(f->b, "__q.big", 7);
    assert_non_null(s);
    assert_true(jn_plog_start_offset(jn_stream_plog(s, 0)) > 0);
    assert_true(jn_plog_segment_count(jn_stream_plog(s, 0)) <= 2);
    /* and the state survives a restart */
    fx_close_broker(f);
    fx_open(f);
    q = jn_queue_find(f->b, "big");
    assert_int_equal(jn_queue_ready(q), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_declare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue_consume_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefetch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_competing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nack_requeue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nack_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_ttl_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priorities, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_requeues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exclusive_and_sac, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuse_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_delete_and_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durability, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backlog_bounded, setup, teardown),
    };
    jn_log_set_level(JN_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
