/* test_broker.c - the broker core: streams and their persistence, subject
 * mapping and partitioning, publish results, subscriptions (live, catch-up,
 * backpressure with exactly-once in-order delivery, lossy drops, streams
 * created later), consumer groups, tables and auth persistence. Each test
 * works in its own mkdtemp() directory with its own uv loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/hash.h"
#include "core/broker.h"

/* ---- fixture ---- */

typedef struct fx {
    char dir[64];
    uv_loop_t loop;
    jn_broker_config_t cfg;
    jn_mapping_t maps[2];
    jn_broker_t *b;
} fx_t;

static int rm_cb(const char *p, const struct stat *st, int f, struct FTW *ftw)
{
    (void)st;
    (void)f;
    (void)ftw;
    return remove(p);
}

static void fx_open(fx_t *f)
{
    assert_int_equal(jn_broker_open(&f->loop, &f->cfg, NULL, &f->b), 0);
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

static void fx_reopen(fx_t *f)
{
    fx_close_broker(f);
    fx_open(f);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/jn_broker_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    jn_broker_config_default(&f->cfg);
    f->cfg.data_dir = f->dir;
    f->cfg.stream_defaults.fsync = JN_FSYNC_NEVER;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    if (f->b)
        fx_close_broker(f);
    /* Sync jobs still on the thread pool need the loop. */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static jn_record_t rec_kv(const char *key, const char *val)
{
    jn_record_t r;
    memset(&r, 0, sizeof r);
    r.key = (const uint8_t *)key;
    r.key_len = key ? (int32_t)strlen(key) : -1;
    r.value = (const uint8_t *)val;
    r.value_len = val ? (int32_t)strlen(val) : -1;
    return r;
}

static int pub(fx_t *f, const char *subject, const char *key, const char *val, jn_publish_result_t *res)
{
    jn_record_t r = rec_kv(key, val);
    return jn_broker_publish(f->b, subject, strlen(subject), &r, 1, -1, res);
}

/* ---- a recording sink ---- */

#define SINK_MAX 4096

typedef struct got {
    char subject[64];
    char value[32];
    char stream[32];
    uint32_t partition;
    int64_t offset;
} got_t;

typedef struct sink {
    got_t got[SINK_MAX];
    size_t n;
    long room;   /* records accepted before refusing; < 0 = unlimited */
    int refused;
} sink_t;

static int sink_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg)
{
    (void)sub;
    sink_t *k = arg;
    if (k->room == 0 || k->n >= SINK_MAX) {
        k->refused++;
        return JN_EAGAIN;
    }
    if (k->room > 0)
        k->room--;
    got_t *g = &k->got[k->n++];
    snprintf(g->subject, sizeof g->subject, "%.*s", (int)d->subject_len, d->subject);
    snprintf(g->value, sizeof g->value, "%.*s", d->rec->value_len < 0 ? 0 : (int)d->rec->value_len,
             d->rec->value ? (const char *)d->rec->value : "");
    snprintf(g->stream, sizeof g->stream, "%s", jn_stream_name(d->stream));
    g->partition = d->partition;
    g->offset = d->rec->offset;
    return 0;
}

static jn_sub_t *subscribe(fx_t *f, const char *filter, enum jn_start start, sink_t *k, bool lossy)
{
    jn_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.filter = filter;
    o.start = start;
    o.deliver = sink_deliver;
    o.arg = k;
    o.lossy = lossy;
    jn_sub_t *sub = NULL;
    assert_int_equal(jn_broker_subscribe(f->b, &o, &sub), 0);
    return sub;
}

static sink_t *sink_new(long room)
{
    sink_t *k = calloc(1, sizeof *k);
    k->room = room;
    return k;
}

/* ---- streams ---- */

static void test_stream_names(void **state)
{
    (void)state;
    assert_int_equal(jn_stream_name_validate("orders", 6), 0);
    assert_int_equal(jn_stream_name_validate("a.b_c-D9", 8), 0);
    assert_int_equal(jn_stream_name_validate("", 0), JN_EINVAL);
    assert_int_equal(jn_stream_name_validate(".", 1), JN_EINVAL);
    assert_int_equal(jn_stream_name_validate("..", 2), JN_EINVAL);
    assert_int_equal(jn_stream_name_validate("__internal", 10), JN_EINVAL);
    assert_int_equal(jn_stream_name_validate("a/b", 3), JN_EINVAL);
    assert_int_equal(jn_stream_name_validate("a b", 3), JN_EINVAL);
    char big[251];
    memset(big, 'x', sizeof big);
    assert_int_equal(jn_stream_name_validate(big, 249), 0);
    assert_int_equal(jn_stream_name_validate(big, 250), JN_EINVAL);
}

static void test_config_json(void **state)
{
    (void)state;
    jn_plog_config_t c, d;
    jn_plog_config_default(&c);
    c.retention_ms = 1234;
    c.compact = true;
    c.fsync = JN_FSYNC_ALWAYS;
    json_t *j = jn_plog_config_json(&c);
    assert_non_null(j);
    jn_plog_config_default(&d);
    assert_int_equal(jn_plog_config_from_json(j, &d, &d, NULL, 0), 0);
    assert_int_equal(d.retention_ms, 1234);
    assert_true(d.compact);
    assert_int_equal(d.fsync, JN_FSYNC_ALWAYS);
    assert_memory_equal(&c, &d, sizeof c);
    json_decref(j);

    char err[128] = "";
    j = json_pack("{s:s}", "fsync", "sometimes");
    assert_int_equal(jn_plog_config_from_json(j, &c, &d, err, sizeof err), JN_EINVAL);
    assert_non_null(strstr(err, "fsync"));
    json_decref(j);
    j = json_pack("{s:i}", "retention_ms", -5);
    assert_int_equal(jn_plog_config_from_json(j, &c, &d, err, sizeof err), JN_EINVAL);
    assert_non_null(strstr(err, "retention_ms"));
    json_decref(j);
    j = json_pack("{s:i}", "retention_bytes", 100);
    assert_int_equal(jn_plog_config_from_json(j, &c, &d, NULL, 0), 0);
    assert_int_equal(d.retention_bytes, 100);
    assert_int_equal(d.retention_ms, 1234); /* from base */
    json_decref(j);
}

static void test_streams_crud_reopen(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    jn_stream_t *s = NULL;
    assert_int_equal(jn_broker_stream_create(f->b, "orders", 3, NULL, &s), 0);
    assert_int_equal(jn_stream_partitions(s), 3);
    assert_int_equal(jn_broker_stream_create(f->b, "orders", 1, NULL, NULL), JN_EEXIST);
    assert_int_equal(jn_broker_stream_create(f->b, "__x", 1, NULL, NULL), JN_EINVAL);
    assert_int_equal(jn_broker_stream_create(f->b, "bad", 0, NULL, NULL), JN_EINVAL);
    assert_int_equal(jn_broker_stream_create(f->b, "bad", JN_PARTITIONS_MAX + 1, NULL, NULL), JN_EINVAL);
    jn_plog_config_t c = f->cfg.stream_defaults;
    c.retention_ms = 60000;
    assert_int_equal(jn_broker_stream_create(f->b, "alpha", 1, &c, NULL), 0);
    assert_int_equal(jn_broker_stream_create(f->b, "zeta", 2, NULL, NULL), 0);
    assert_int_equal(jn_broker_stream_create(f->b, "gone", 1, NULL, NULL), 0);
    assert_int_equal(jn_broker_stream_count(f->b), 4);

    /* name order */
    const char *want[] = {"alpha", "gone", "orders", "zeta"};
    size_t i = 0;
    for (jn_stream_t *it = jn_broker_stream_next(f->b, NULL); it; it = jn_broker_stream_next(f->b, it))
        assert_string_equal(jn_stream_name(it), want[i++]);
    assert_int_equal(i, 4);

    assert_int_equal(pub(f, "orders", NULL, "x", NULL), 0);
    json_t *j = jn_stream_json(s);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "orders");
    assert_int_equal(json_integer_value(json_object_get(j, "partitions")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "records")), 1);
    assert_int_equal(json_array_size(json_object_get(j, "partition_info")), 3);
    json_decref(j);

    assert_int_equal(jn_broker_stream_delete(f->b, "gone"), 0);
    assert_int_equal(jn_broker_stream_delete(f->b, "gone"), JN_ENOENT);
    assert_null(jn_broker_stream_find(f->b, "gone", 4));

    /* update and grow */
    jn_stream_t *z = jn_broker_stream_find(f->b, "zeta", 4);
    c = *jn_stream_config(z);
    c.retention_bytes = 1 << 20;
    assert_int_equal(jn_broker_stream_update(f->b, z, &c), 0);
    assert_int_equal(jn_broker_stream_add_partitions(f->b, z, 1), JN_EINVAL);
    assert_int_equal(jn_broker_stream_add_partitions(f->b, z, 4), 0);
    assert_int_equal(jn_stream_partitions(z), 4);

    fx_reopen(f);
    assert_int_equal(jn_broker_stream_count(f->b), 3);
    assert_null(jn_broker_stream_find(f->b, "gone", 4));
    s = jn_broker_stream_find(f->b, "orders", 6);
    assert_non_null(s);
    assert_int_equal(jn_stream_partitions(s), 3);
    int64_t total = 0;
    for (uint32_t p = 0; p < 3; p++)
        total += jn_plog_end_offset(jn_stream_plog(s, p));
    assert_int_equal(total, 1);
    assert_int_equal(jn_stream_config(jn_broker_stream_find(f->b, "alpha", 5))->retention_ms, 60000);
    z = jn_broker_stream_find(f->b, "zeta", 4);
    assert_int_equal(jn_stream_partitions(z), 4);
    assert_int_equal(jn_stream_config(z)->retention_bytes, 1 << 20);

    /* a deleted stream comes back empty */
    assert_int_equal(jn_broker_stream_create(f->b, "gone", 1, NULL, &s), 0);
    assert_int_equal(jn_plog_end_offset(jn_stream_plog(s, 0)), 0);
}

/* ---- publish ---- */

static void test_publish_mapping_partitioning(void **state)
{
    fx_t *f = *state;
    f->maps[0].filter = "devices/+/telemetry/#";
    f->maps[0].stream = "telemetry";
    f->cfg.mappings = f->maps;
    f->cfg.nmappings = 1;
    f->cfg.default_partitions = 4;
    fx_open(f);

    size_t nl;
    const char *n = jn_broker_stream_of_subject(f->b, "sensors/kitchen/temp", 20, &nl);
    assert_int_equal(nl, 7);
    assert_memory_equal(n, "sensors", 7);
    n = jn_broker_stream_of_subject(f->b, "devices/d1/telemetry/x", 22, &nl);
    assert_int_equal(nl, 9);
    assert_memory_equal(n, "telemetry", 9);
    n = jn_broker_stream_of_subject(f->b, "plain", 5, &nl);
    assert_int_equal(nl, 5);

    jn_publish_result_t r;
    assert_int_equal(pub(f, "sensors/kitchen/temp", NULL, "1", &r), 0);
    assert_non_null(r.stream);
    assert_string_equal(jn_stream_name(r.stream), "sensors");
    assert_int_equal(jn_stream_partitions(r.stream), 4);
    assert_int_equal(r.offset, 0);
    assert_int_equal(pub(f, "devices/d1/telemetry/x", NULL, "2", &r), 0);
    assert_string_equal(jn_stream_name(r.stream), "telemetry");

    /* keyed records follow Kafka's partitioner */
    const char *keys[] = {"a", "b", "user-42", "zz", "hello world"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(pub(f, "keyed", keys[i], "v", &r), 0);
        assert_int_equal(r.partition, (int32_t)jn_murmur2_partition(keys[i], strlen(keys[i]), 4));
    }
    /* keyless ones go round robin */
    int seen[4] = {0};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(pub(f, "rr", NULL, "v", &r), 0);
        seen[r.partition]++;
    }
    for (int p = 0; p < 4; p++)
        assert_int_equal(seen[p], 2);

    /* a multi-record publish: results in order, offsets consecutive per partition */
    jn_record_t recs[6];
    for (int i = 0; i < 6; i++)
        recs[i] = rec_kv(i % 2 ? "odd" : "even", "x");
    jn_publish_result_t res[6];
    assert_int_equal(jn_broker_publish(f->b, "multi", 5, recs, 6, -1, res), 0);
    int64_t nextoff[4] = {0, 0, 0, 0};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(res[i].partition, (int32_t)jn_murmur2_partition(recs[i].key, (size_t)recs[i].key_len, 4));
        assert_int_equal(res[i].offset, nextoff[res[i].partition]++);
    }
    /* explicit partition */
    assert_int_equal(jn_broker_publish(f->b, "multi", 5, recs, 6, 3, res), 0);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(res[i].partition, 3);
        assert_int_equal(res[i].offset, res[0].offset + i);
    }
    assert_int_equal(jn_broker_publish(f->b, "multi", 5, recs, 1, 4, res), JN_EINVAL);

    /* bad subjects, reserved and invalid stream names */
    assert_int_equal(pub(f, "bad/+/x", NULL, "v", NULL), JN_EINVAL);
    assert_int_equal(pub(f, "__reserved/x", NULL, "v", NULL), JN_EINVAL);
    assert_int_equal(pub(f, "sp ace/x", NULL, "v", NULL), JN_EINVAL);

    /* the subject header round-trips through the log */
    jn_stream_t *s = jn_broker_stream_find(f->b, "sensors", 7);
    jn_buf_t buf;
    jn_buf_init(&buf, 1 << 20);
    uint32_t p0 = 0;
    for (uint32_t p = 0; p < 4; p++)
        if (jn_plog_end_offset(jn_stream_plog(s, p)) > 0)
            p0 = p;
    assert_true(jn_plog_read(jn_stream_plog(s, p0), 0, 1 << 20, &buf) > 0);
    jn_batch_iter_t it;
    assert_int_equal(jn_batch_iter_init(&it, buf.data, buf.len, true), 0);
    jn_record_t rec;
    assert_int_equal(jn_batch_iter_next(&it, &rec), 1);
    size_t sl;
    const char *subj = jn_record_subject(&rec, "sensors", 7, &sl);
    assert_int_equal(sl, 20);
    assert_memory_equal(subj, "sensors/kitchen/temp", 20);
    assert_true(rec.timestamp > 0);
    jn_buf_free(&buf);

    /* auto-create off */
    fx_close_broker(f);
    f->cfg.auto_create_streams = false;
    fx_open(f);
    assert_int_equal(pub(f, "nostream/x", NULL, "v", NULL), JN_ENOENT);
    assert_int_equal(pub(f, "sensors/x", NULL, "v", NULL), 0);
}

static void test_metrics(void **state)
{
    fx_t *f = *state;
    f->maps[0].filter = "a/#/b";
    f->maps[0].stream = "x";
    f->cfg.mappings = f->maps;
    f->cfg.nmappings = 1;
    assert_int_equal(jn_broker_open(&f->loop, &f->cfg, NULL, &f->b), JN_EINVAL);
    f->maps[0].filter = "a/#";
    f->maps[0].stream = "__x";
    assert_int_equal(jn_broker_open(&f->loop, &f->cfg, NULL, &f->b), JN_EINVAL);
    f->b = NULL;
    f->cfg.nmappings = 0;
    fx_open(f);
    assert_int_equal(pub(f, "m/a", NULL, "v", NULL), 0);
    jn_buf_t out;
    jn_buf_init(&out, 1 << 20);
    assert_int_equal(jn_metrics_render(jn_broker_metrics(f->b), &out), 0);
    assert_int_equal(jn_buf_put_u8(&out, 0), 0);
    const char *txt = (const char *)out.data;
    assert_non_null(strstr(txt, "junction_records_published_total{stream=\"m\"} 1"));
    assert_non_null(strstr(txt, "junction_stream_records{stream=\"m\"} 1"));
    assert_non_null(strstr(txt, "junction_stream_end_offset{stream=\"m\",partition=\"0\"} 1"));
    jn_buf_free(&out);
}

/* ---- subscriptions ---- */

static void test_live_filters(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    sink_t *plus = sink_new(-1), *hash = sink_new(-1), *all = sink_new(-1), *other = sink_new(-1);
    jn_sub_t *s1 = subscribe(f, "sensors/+/temp", JN_START_LIVE, plus, false);
    jn_sub_t *s2 = subscribe(f, "sensors/#", JN_START_LIVE, hash, false);
    jn_sub_t *s3 = subscribe(f, "#", JN_START_LIVE, all, false);
    jn_sub_t *s4 = subscribe(f, "other/x", JN_START_LIVE, other, false);
    assert_int_equal(pub(f, "sensors/kitchen/temp", NULL, "1", NULL), 0);
    assert_int_equal(pub(f, "sensors/kitchen/hum", NULL, "2", NULL), 0);
    assert_int_equal(pub(f, "sensors", NULL, "3", NULL), 0);
    assert_int_equal(pub(f, "sensors/hall/temp", NULL, "4", NULL), 0);
    assert_int_equal(pub(f, "other/y", NULL, "5", NULL), 0);
    /* live delivery happens inside publish */
    assert_int_equal(plus->n, 2);
    assert_string_equal(plus->got[0].value, "1");
    assert_string_equal(plus->got[1].value, "4");
    assert_string_equal(plus->got[1].subject, "sensors/hall/temp");
    assert_int_equal(hash->n, 4);
    assert_string_equal(hash->got[2].subject, "sensors");
    assert_int_equal(all->n, 5);
    assert_int_equal(other->n, 0);
    spin(f, 5);
    assert_int_equal(plus->n, 2);
    assert_int_equal(all->n, 5);
    assert_int_equal(jn_sub_lag(s1), 0);
    jn_stream_t *st = jn_broker_stream_find(f->b, "sensors", 7);
    assert_int_equal(jn_sub_position(s1, st, 0), 4);
    jn_sub_close(s2);
    assert_int_equal(pub(f, "sensors/x/temp", NULL, "6", NULL), 0);
    assert_int_equal(hash->n, 4);
    assert_int_equal(plus->n, 3);
    jn_sub_close(s1);
    jn_sub_close(s3);
    jn_sub_close(s4);
    free(plus);
    free(hash);
    free(all);
    free(other);
}

/* A delivery that publishes (as an AMQP forwarder does when it enqueues)
 * must not cut short the offer of the outer record to the other matching
 * subscriptions. */
typedef struct forwarder {
    fx_t *f;
    sink_t *k;
    int nested;
} forwarder_t;

static int forward_deliver(jn_sub_t *sub, const jn_delivery_t *d, void *arg)
{
    forwarder_t *fw = arg;
    int rc = sink_deliver(sub, d, fw->k);
    if (rc == 0 && d->subject_len == 8 && memcmp(d->subject, "fwd/in/x", 8) == 0) {
        char subj[32];
        snprintf(subj, sizeof subj, "copies/%d", fw->nested++);
        assert_int_equal(pub(fw->f, subj, NULL, "copy", NULL), 0);
    }
    return rc;
}

static void test_nested_publish_in_delivery(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    sink_t *k1 = sink_new(-1), *k2 = sink_new(-1), *k3 = sink_new(-1), *copies = sink_new(-1);
    forwarder_t fw1 = {f, k1, 0}, fw2 = {f, k2, 0};
    jn_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.start = JN_START_LIVE;
    o.deliver = forward_deliver;
    jn_sub_t *s1, *s2;
    o.filter = "fwd/#";
    o.arg = &fw1;
    assert_int_equal(jn_broker_subscribe(f->b, &o, &s1), 0);
    jn_sub_t *s3 = subscribe(f, "fwd/in/+", JN_START_LIVE, k3, false);
    o.filter = "fwd/+/x";
    o.arg = &fw2;
    assert_int_equal(jn_broker_subscribe(f->b, &o, &s2), 0);
    jn_sub_t *s4 = subscribe(f, "copies/+", JN_START_LIVE, copies, false);
    assert_int_equal(pub(f, "fwd/in/x", NULL, "orig", NULL), 0);
    assert_int_equal(pub(f, "fwd/in/x", NULL, "again", NULL), 0);
    /* Every subscription got both records, and both forwarders copied each. */
    assert_int_equal(k1->n, 2);
    assert_int_equal(k2->n, 2);
    assert_int_equal(k3->n, 2);
    assert_string_equal(k3->got[1].value, "again");
    assert_int_equal(copies->n, 4);
    jn_sub_close(s1);
    jn_sub_close(s2);
    jn_sub_close(s3);
    jn_sub_close(s4);
    free(k1);
    free(k2);
    free(k3);
    free(copies);
}

static void test_earliest_catchup_reopen(void **state)
{
    fx_t *f = *state;
    f->cfg.catchup_batch_bytes = 512; /* many loop iterations */
    fx_open(f);
    char v[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(pub(f, i % 3 ? "cu/a" : "cu/b", NULL, v, NULL), 0);
    }
    fx_reopen(f);
    sink_t *k = sink_new(-1), *kb = sink_new(-1);
    jn_sub_t *sub = subscribe(f, "cu/#", JN_START_EARLIEST, k, false);
    jn_sub_t *subb = subscribe(f, "cu/b", JN_START_EARLIEST, kb, false);
    assert_int_equal(k->n, 0); /* never inside subscribe */
    assert_int_equal(jn_sub_lag(sub), 1000);
    for (int i = 0; i < 2000 && (k->n < 1000 || kb->n < 334); i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(k->n, 1000);
    assert_int_equal(kb->n, 334);
    for (int i = 0; i < 1000; i++) {
        snprintf(v, sizeof v, "%d", i);
        assert_string_equal(k->got[i].value, v);
        assert_int_equal(k->got[i].offset, i);
    }
    for (int i = 0; i < 334; i++)
        assert_int_equal(kb->got[i].offset, 3 * i);
    assert_int_equal(jn_sub_lag(sub), 0);
    /* now caught up: live */
    assert_int_equal(pub(f, "cu/a", NULL, "live", NULL), 0);
    assert_int_equal(k->n, 1001);
    assert_int_equal(kb->n, 334);
    jn_sub_close(sub);
    jn_sub_close(subb);
    free(k);
    free(kb);
}

static void test_start_offset_and_time(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    for (int i = 0; i < 10; i++) {
        jn_record_t r = rec_kv(NULL, "x");
        r.timestamp = 1000 + i * 10;
        assert_int_equal(jn_broker_publish(f->b, "t", 1, &r, 1, -1, NULL), 0);
    }
    sink_t *k = sink_new(-1), *kt = sink_new(-1), *kc = sink_new(-1);
    jn_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.filter = "t";
    o.deliver = sink_deliver;
    o.start = JN_START_OFFSET;
    o.start_value = 7;
    o.arg = k;
    jn_sub_t *s1, *s2, *s3;
    assert_int_equal(jn_broker_subscribe(f->b, &o, &s1), 0);
    o.start = JN_START_TIME;
    o.start_value = 1045;
    o.arg = kt;
    assert_int_equal(jn_broker_subscribe(f->b, &o, &s2), 0);
    o.start = JN_START_OFFSET;
    o.start_value = 1000; /* clamped to the end */
    o.arg = kc;
    assert_int_equal(jn_broker_subscribe(f->b, &o, &s3), 0);
    spin(f, 10);
    assert_int_equal(k->n, 3);
    assert_int_equal(k->got[0].offset, 7);
    assert_int_equal(kt->n, 5);
    assert_int_equal(kt->got[0].offset, 5);
    assert_int_equal(kc->n, 0);
    o.filter = "bad/#/x";
    assert_int_equal(jn_broker_subscribe(f->b, &o, &s3), JN_EINVAL);
    jn_sub_close(s1);
    jn_sub_close(s2);
    jn_sub_close(s3);
    free(k);
    free(kt);
    free(kc);
}

/* The key property: a sink that refuses and resumes later gets every
 * record exactly once, in order, while publishes keep coming. */
static void test_backpressure_exactly_once(void **state)
{
    fx_t *f = *state;
    f->cfg.catchup_batch_bytes = 300;
    fx_open(f);
    assert_int_equal(jn_broker_stream_create(f->b, "bp", 1, NULL, NULL), 0);
    sink_t *k = sink_new(5);
    jn_sub_t *sub = subscribe(f, "bp/#", JN_START_LIVE, k, false);
    char v[16];
    int next = 0;
    unsigned seed = 7;
    for (int round = 0; round < 300; round++) {
        int burst = (int)(rand_r(&seed) % 7);
        for (int i = 0; i < burst; i++) {
            snprintf(v, sizeof v, "%d", next++);
            assert_int_equal(pub(f, (next % 4) ? "bp/x" : "bp", NULL, v, NULL), 0);
        }
        if (rand_r(&seed) % 3 == 0) {
            k->room = (long)(rand_r(&seed) % 9);
            jn_sub_resume(sub);
        }
        if (rand_r(&seed) % 11 == 0)
            jn_sub_pause(sub);
        spin(f, (int)(rand_r(&seed) % 3));
    }
    k->room = -1;
    jn_sub_resume(sub);
    for (int i = 0; i < 5000 && k->n < (size_t)next; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_true(k->refused > 0);
    assert_int_equal(k->n, next);
    for (int i = 0; i < next; i++) {
        snprintf(v, sizeof v, "%d", i);
        assert_string_equal(k->got[i].value, v);
        assert_int_equal(k->got[i].offset, i);
    }
    assert_int_equal(jn_sub_lag(sub), 0);
    assert_int_equal(pub(f, "bp/x", NULL, "last", NULL), 0);
    assert_int_equal(k->n, next + 1);
    assert_int_equal(jn_sub_dropped(sub), 0);
    jn_sub_close(sub);
    free(k);
}

/* A lagging cursor whose records retention deleted moves to the start and
 * goes on, in order. */
static void test_retention_while_behind(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    jn_plog_config_t c = f->cfg.stream_defaults;
    c.segment_bytes = 300;
    c.retention_bytes = 600;
    jn_stream_t *s;
    assert_int_equal(jn_broker_stream_create(f->b, "ret", 1, &c, &s), 0);
    char v[16];
    for (int i = 0; i < 20; i++) {
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(pub(f, "ret", NULL, v, NULL), 0);
    }
    sink_t *k = sink_new(1);
    jn_sub_t *sub = subscribe(f, "ret", JN_START_EARLIEST, k, false);
    spin(f, 5);
    assert_int_equal(k->n, 1);
    for (int i = 20; i < 60; i++) {
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(pub(f, "ret", NULL, v, NULL), 0);
    }
    jn_broker_flush(f->b);
    assert_true(jn_plog_maintain(jn_stream_plog(s, 0)) > 0);
    int64_t start = jn_plog_start_offset(jn_stream_plog(s, 0));
    assert_true(start > 1);
    k->room = -1;
    jn_sub_resume(sub);
    for (int i = 0; i < 100 && jn_sub_lag(sub) > 0; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(jn_sub_lag(sub), 0);
    assert_int_equal(k->n, 1 + (size_t)(60 - start));
    assert_int_equal(k->got[1].offset, start);
    for (size_t i = 2; i < k->n; i++)
        assert_int_equal(k->got[i].offset, k->got[i - 1].offset + 1);
    jn_sub_close(sub);
    free(k);
}

static void test_lossy(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    sink_t *k = sink_new(2);
    jn_sub_t *sub = subscribe(f, "lossy/#", JN_START_LIVE, k, true);
    for (int i = 0; i < 5; i++)
        assert_int_equal(pub(f, "lossy/a", NULL, "x", NULL), 0);
    assert_int_equal(k->n, 2);
    assert_int_equal(jn_sub_dropped(sub), 3);
    k->room = -1;
    jn_sub_resume(sub);
    spin(f, 5);
    assert_int_equal(k->n, 2); /* dropped records are not redelivered */
    assert_int_equal(pub(f, "lossy/a", NULL, "y", NULL), 0);
    assert_int_equal(k->n, 3);
    assert_int_equal(k->got[2].offset, 5);
    jn_sub_close(sub);
    free(k);
}

static void test_streams_created_later(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    sink_t *all = sink_new(-1), *lit = sink_new(-1);
    jn_sub_t *s1 = subscribe(f, "#", JN_START_LIVE, all, false);
    jn_sub_t *s2 = subscribe(f, "later/+", JN_START_LIVE, lit, false);
    assert_int_equal(pub(f, "later/one", NULL, "1", NULL), 0);
    assert_int_equal(pub(f, "fresh", NULL, "2", NULL), 0);
    assert_int_equal(all->n, 2);
    assert_int_equal(lit->n, 1);
    assert_string_equal(lit->got[0].stream, "later");
    /* more partitions later: the new ones are covered too */
    jn_stream_t *s = jn_broker_stream_find(f->b, "later", 5);
    assert_int_equal(jn_broker_stream_add_partitions(f->b, s, 3), 0);
    jn_record_t r = rec_kv(NULL, "3");
    assert_int_equal(jn_broker_publish(f->b, "later/two", 9, &r, 1, 2, NULL), 0);
    assert_int_equal(lit->n, 2);
    assert_int_equal(lit->got[1].partition, 2);
    /* deleting a stream drops its cursors */
    assert_int_equal(jn_broker_stream_delete(f->b, "later"), 0);
    assert_int_equal(jn_sub_lag(s2), 0);
    assert_int_equal(pub(f, "later/three", NULL, "4", NULL), 0);
    assert_int_equal(lit->n, 3);
    assert_int_equal(lit->got[2].offset, 0);
    jn_sub_close(s1);
    jn_sub_close(s2);
    free(all);
    free(lit);
}

static void test_append_batch(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    jn_stream_t *s;
    assert_int_equal(jn_broker_stream_create(f->b, "kafka", 2, NULL, &s), 0);
    sink_t *k = sink_new(-1);
    jn_sub_t *sub = subscribe(f, "kafka", JN_START_LIVE, k, false);
    jn_buf_t buf;
    jn_buf_init(&buf, 1 << 20);
    jn_batch_builder_t bb;
    assert_int_equal(jn_batch_builder_begin(&bb, &buf), 0);
    for (int i = 0; i < 3; i++) {
        jn_record_t r = rec_kv(NULL, "kv");
        r.timestamp = 5;
        assert_int_equal(jn_batch_builder_add(&bb, &r), 0);
    }
    int len = jn_batch_builder_finish(&bb);
    assert_true(len > 0);
    assert_int_equal(jn_broker_append_batch(f->b, s, 1, buf.data, (size_t)len), 0);
    assert_int_equal(jn_broker_append_batch(f->b, s, 1, buf.data, (size_t)len), 3);
    assert_int_equal(k->n, 6);
    assert_int_equal(k->got[5].offset, 5);
    assert_int_equal(k->got[5].partition, 1);
    assert_string_equal(k->got[5].subject, "kafka");
    assert_int_equal(jn_broker_append_batch(f->b, s, 2, buf.data, (size_t)len), JN_EINVAL);
    buf.data[len - 1] ^= 0xff;
    assert_int_equal(jn_broker_append_batch(f->b, s, 0, buf.data, (size_t)len), JN_ECORRUPT);
    assert_int_equal(jn_broker_append_batch(f->b, s, 0, buf.data, (size_t)len - 3), JN_EPROTO);
    jn_buf_free(&buf);
    jn_sub_close(sub);
    free(k);
}

/* ---- append hooks ---- */

typedef struct hooked {
    int calls;
    char stream[32];
    uint32_t partition;
    int64_t end;
    int64_t end_sum;
} hooked_t;

static void on_append_count(void *arg, jn_stream_t *s, uint32_t partition, int64_t end_offset)
{
    hooked_t *h = arg;
    h->calls++;
    snprintf(h->stream, sizeof h->stream, "%s", jn_stream_name(s));
    h->partition = partition;
    h->end = end_offset;
    h->end_sum += end_offset;
}

/* Once per partition an append wrote, whatever the entry point, and never
 * by decoding: a batch marked lz4 whose payload is not lz4 at all is
 * notified like any other (no subscriber asks for its records). */
static void test_append_hook(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    hooked_t h = {0}, h2 = {0};
    assert_int_equal(jn_broker_on_append(f->b, on_append_count, &h), 0);

    assert_int_equal(pub(f, "sensors/a", NULL, "v1", NULL), 0);
    assert_int_equal(h.calls, 1);
    assert_string_equal(h.stream, "sensors");
    assert_int_equal(h.end, 1);

    /* Three keyless records round robin over three partitions: three
     * batches, one call each. */
    jn_stream_t *m;
    assert_int_equal(jn_broker_stream_create(f->b, "multi", 3, NULL, &m), 0);
    jn_record_t recs[3] = {rec_kv(NULL, "a"), rec_kv(NULL, "b"), rec_kv(NULL, "c")};
    h.calls = 0;
    h.end_sum = 0;
    assert_int_equal(jn_broker_publish(f->b, "multi", 5, recs, 3, -1, NULL), 0);
    assert_int_equal(h.calls, 3);
    assert_int_equal(h.end_sum, 3);
    /* Two records to one partition: one batch, one call. */
    assert_int_equal(jn_broker_publish(f->b, "multi", 5, recs, 2, 2, NULL), 0);
    assert_int_equal(h.calls, 4);
    assert_int_equal(h.partition, 2);
    assert_int_equal(h.end, 3);
    /* Refused publishes notify nothing. */
    assert_int_equal(jn_broker_publish(f->b, "multi", 5, recs, 1, 7, NULL), JN_EINVAL);
    assert_int_equal(h.calls, 4);

    /* Tables (internal streams included). */
    assert_int_equal(jn_broker_table_open_internal(f->b, "__hooked"), 0);
    assert_int_equal(jn_broker_table_put(f->b, "__hooked", (const uint8_t *)"k", 1, (const uint8_t *)"v", 1, NULL,
                                         NULL), 0);
    assert_int_equal(h.calls, 5);
    assert_string_equal(h.stream, "__hooked");

    /* Raw batches, a second hook, compressed garbage. */
    assert_int_equal(jn_broker_on_append(f->b, on_append_count, &h2), 0);
    jn_buf_t buf;
    jn_buf_init(&buf, 1 << 20);
    jn_batch_builder_t bb;
    assert_int_equal(jn_batch_builder_begin(&bb, &buf), 0);
    for (int i = 0; i < 4; i++) {
        jn_record_t r = rec_kv(NULL, "not lz4 at all, not lz4 at all");
        assert_int_equal(jn_batch_builder_add(&bb, &r), 0);
    }
    int len = jn_batch_builder_finish(&bb);
    assert_true(len > 0);
    assert_int_equal(jn_broker_append_batch(f->b, m, 1, buf.data, (size_t)len), 1);
    assert_int_equal(h.calls, 6);
    assert_int_equal(h2.calls, 1);
    assert_int_equal(h2.partition, 1);
    assert_int_equal(h2.end, 5);
    buf.data[22] = (uint8_t)((buf.data[22] & ~JN_BATCH_COMPRESSION_MASK) | 3); /* lz4 */
    jn_store_be32(buf.data + 17, jn_crc32c(0, buf.data + 21, (size_t)len - 21));
    assert_int_equal(jn_broker_append_batch(f->b, m, 1, buf.data, (size_t)len), 5);
    assert_int_equal(h.calls, 7);
    assert_int_equal(h2.calls, 2);
    assert_int_equal(h2.end, 9);
    jn_buf_free(&buf);

    /* Removal, and the cap. */
    jn_broker_off_append(f->b, on_append_count, &h);
    jn_broker_off_append(f->b, on_append_count, &h); /* not registered any more: nothing */
    assert_int_equal(pub(f, "sensors/b", NULL, "v2", NULL), 0);
    assert_int_equal(h.calls, 7);
    assert_int_equal(h2.calls, 3);
    hooked_t many[JN_BROKER_APPEND_HOOKS_MAX] = {0};
    for (int i = 0; i < JN_BROKER_APPEND_HOOKS_MAX - 1; i++)
        assert_int_equal(jn_broker_on_append(f->b, on_append_count, &many[i]), 0);
    assert_int_equal(jn_broker_on_append(f->b, on_append_count, &many[JN_BROKER_APPEND_HOOKS_MAX - 1]), JN_ENOMEM);
    assert_int_equal(jn_broker_on_append(f->b, NULL, &h), JN_EINVAL);
    assert_int_equal(pub(f, "sensors/c", NULL, "v3", NULL), 0);
    assert_int_equal(h2.calls, 4);
    for (int i = 0; i < JN_BROKER_APPEND_HOOKS_MAX - 1; i++) {
        assert_int_equal(many[i].calls, 1);
        jn_broker_off_append(f->b, on_append_count, &many[i]);
    }
    jn_broker_off_append(f->b, on_append_count, &h2);
    assert_int_equal(pub(f, "sensors/d", NULL, "v4", NULL), 0);
    assert_int_equal(h2.calls, 4);
    assert_int_equal(many[0].calls, 1);
}

/* ---- consumer groups ---- */

static void test_groups(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    jn_stream_t *s;
    assert_int_equal(jn_broker_stream_create(f->b, "g", 2, NULL, &s), 0);
    for (int i = 0; i < 10; i++) {
        jn_record_t r = rec_kv(NULL, "x");
        assert_int_equal(jn_broker_publish(f->b, "g", 1, &r, 1, 0, NULL), 0);
    }
    int64_t off = -1;
    assert_int_equal(jn_broker_group_fetch(f->b, "workers", s, 0, &off), JN_ENOENT);
    assert_int_equal(jn_broker_group_commit(f->b, "workers", s, 0, 4, "meta"), 0);
    assert_int_equal(jn_broker_group_commit(f->b, "workers", s, 0, 6, "m2"), 0);
    assert_int_equal(jn_broker_group_commit(f->b, "workers", s, 1, 0, NULL), 0);
    assert_int_equal(jn_broker_group_commit(f->b, "other", s, 1, 0, NULL), 0);
    assert_int_equal(jn_broker_group_commit(f->b, "", s, 1, 0, NULL), JN_EINVAL);
    assert_int_equal(jn_broker_group_commit(f->b, "x", s, 2, 0, NULL), JN_EINVAL);
    assert_int_equal(jn_broker_group_commit(f->b, "x", s, 0, -1, NULL), JN_EINVAL);
    fx_reopen(f);
    s = jn_broker_stream_find(f->b, "g", 1);
    assert_int_equal(jn_broker_group_fetch(f->b, "workers", s, 0, &off), 0);
    assert_int_equal(off, 6);
    json_t *j = jn_broker_group_json(f->b, "workers");
    assert_non_null(j);
    json_t *offs = json_object_get(j, "offsets");
    assert_int_equal(json_array_size(offs), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *o = json_array_get(offs, i);
        if (json_integer_value(json_object_get(o, "partition")) == 0) {
            assert_int_equal(json_integer_value(json_object_get(o, "lag")), 4);
            assert_string_equal(json_string_value(json_object_get(o, "metadata")), "m2");
        }
    }
    json_decref(j);
    j = jn_broker_groups_json(f->b);
    assert_int_equal(json_array_size(j), 2);
    assert_string_equal(json_string_value(json_array_get(j, 0)), "other");
    json_decref(j);

    /* a subscription starting from the group's offsets */
    sink_t *k = sink_new(-1);
    jn_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.filter = "g";
    o.start = JN_START_GROUP;
    o.group = "workers";
    o.group_default = JN_START_EARLIEST;
    o.deliver = sink_deliver;
    o.arg = k;
    jn_sub_t *sub;
    assert_int_equal(jn_broker_subscribe(f->b, &o, &sub), 0);
    spin(f, 10);
    assert_int_equal(k->n, 4);
    assert_int_equal(k->got[0].offset, 6);
    jn_sub_close(sub);
    free(k);

    assert_int_equal(jn_broker_group_delete(f->b, "workers"), 0);
    assert_int_equal(jn_broker_group_delete(f->b, "workers"), JN_ENOENT);
    assert_null(jn_broker_group_json(f->b, "workers"));
    fx_reopen(f);
    s = jn_broker_stream_find(f->b, "g", 1);
    assert_int_equal(jn_broker_group_fetch(f->b, "workers", s, 0, &off), JN_ENOENT);
    assert_int_equal(jn_broker_group_fetch(f->b, "other", s, 1, &off), 0);
    /* deleting the stream forgets its offsets */
    assert_int_equal(jn_broker_stream_delete(f->b, "g"), 0);
    j = jn_broker_groups_json(f->b);
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
}

/* ---- tables ---- */

typedef struct keys {
    char k[32][16];
    int n;
} keys_t;

static int key_cb(const uint8_t *key, size_t klen, void *arg)
{
    keys_t *ks = arg;
    snprintf(ks->k[ks->n++], 16, "%.*s", (int)klen, (const char *)key);
    return 0;
}

static void test_tables(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    jn_publish_result_t r;
    const char *names[] = {"user/3", "user/1", "item/9", "user/2", "user/10", "zz"};
    for (int i = 0; i < 6; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(jn_broker_table_put(f->b, "users", (const uint8_t *)names[i], strlen(names[i]),
                                             (const uint8_t *)v, strlen(v), "text/plain", &r),
                         0);
    }
    jn_stream_t *s = jn_broker_stream_find(f->b, "users", 5);
    assert_non_null(s);
    assert_true(jn_stream_config(s)->compact);
    assert_int_equal(jn_broker_table_count(f->b, "users"), 6);
    assert_int_equal(jn_broker_table_put(f->b, "users", (const uint8_t *)"user/1", 6, (const uint8_t *)"new",
                                         3, NULL, &r),
                     0);
    assert_int_equal(jn_broker_table_count(f->b, "users"), 6);

    jn_buf_t val;
    jn_buf_init(&val, 1 << 16);
    char ct[128];
    int64_t ts = 0;
    assert_int_equal(jn_broker_table_get(f->b, "users", (const uint8_t *)"user/1", 6, &val, ct, sizeof ct, &r, &ts),
                     0);
    assert_int_equal(val.len, 3);
    assert_memory_equal(val.data, "new", 3);
    assert_string_equal(ct, "");
    assert_true(ts > 0);
    assert_int_equal(jn_broker_table_get(f->b, "users", (const uint8_t *)"user/3", 6, &val, ct, sizeof ct, NULL,
                                         NULL),
                     0);
    assert_memory_equal(val.data, "v0", 2);
    assert_string_equal(ct, "text/plain");
    assert_int_equal(jn_broker_table_get(f->b, "users", (const uint8_t *)"nope", 4, &val, NULL, 0, NULL, NULL),
                     JN_ENOENT);
    assert_int_equal(jn_broker_table_get(f->b, "nosuch", (const uint8_t *)"k", 1, &val, NULL, 0, NULL, NULL),
                     JN_ENOENT);

    assert_int_equal(jn_broker_table_delete(f->b, "users", (const uint8_t *)"user/2", 6, &r), 0);
    assert_int_equal(jn_broker_table_delete(f->b, "users", (const uint8_t *)"user/2", 6, &r), JN_ENOENT);
    assert_int_equal(jn_broker_table_get(f->b, "users", (const uint8_t *)"user/2", 6, &val, NULL, 0, NULL, NULL),
                     JN_ENOENT);
    assert_int_equal(jn_broker_table_count(f->b, "users"), 5);

    keys_t ks;
    memset(&ks, 0, sizeof ks);
    assert_int_equal(jn_broker_table_scan(f->b, "users", (const uint8_t *)"user/", 5, NULL, 0, 100, key_cb, &ks),
                     3);
    assert_string_equal(ks.k[0], "user/1");
    assert_string_equal(ks.k[1], "user/10");
    assert_string_equal(ks.k[2], "user/3");
    /* paging */
    memset(&ks, 0, sizeof ks);
    assert_int_equal(jn_broker_table_scan(f->b, "users", NULL, 0, NULL, 0, 2, key_cb, &ks), 2);
    assert_string_equal(ks.k[0], "item/9");
    assert_string_equal(ks.k[1], "user/1");
    memset(&ks, 0, sizeof ks);
    assert_int_equal(jn_broker_table_scan(f->b, "users", NULL, 0, (const uint8_t *)"user/1", 6, 2, key_cb, &ks),
                     2);
    assert_string_equal(ks.k[0], "user/10");
    assert_string_equal(ks.k[1], "user/3");
    memset(&ks, 0, sizeof ks);
    assert_int_equal(jn_broker_table_scan(f->b, "users", NULL, 0, (const uint8_t *)"user/3", 6, 2, key_cb, &ks),
                     1);
    assert_string_equal(ks.k[0], "zz");
    assert_int_equal(jn_broker_table_scan(f->b, "nosuch", NULL, 0, NULL, 0, 2, key_cb, &ks), JN_ENOENT);

    /* many keys, to exercise the tree */
    for (int i = 0; i < 500; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%04d", (i * 7919) % 500);
        assert_int_equal(jn_broker_table_put(f->b, "big", (const uint8_t *)key, strlen(key), (const uint8_t *)key,
                                             strlen(key), NULL, NULL),
                         0);
    }
    for (int i = 0; i < 500; i += 2) {
        char key[16];
        snprintf(key, sizeof key, "k%04d", i);
        assert_int_equal(jn_broker_table_delete(f->b, "big", (const uint8_t *)key, strlen(key), NULL), 0);
    }
    assert_int_equal(jn_broker_table_count(f->b, "big"), 250);

    /* records published to the table's stream by other paths update it */
    jn_record_t rec = rec_kv("zz", "from-publish");
    assert_int_equal(jn_broker_publish(f->b, "users", 5, &rec, 1, -1, NULL), 0);

    /* a plain stream is not a table */
    assert_int_equal(pub(f, "plain", NULL, "x", NULL), 0);
    assert_int_equal(jn_broker_table_put(f->b, "plain", (const uint8_t *)"k", 1, (const uint8_t *)"v", 1, NULL,
                                         NULL),
                     JN_EINVAL);

    fx_reopen(f);
    assert_int_equal(jn_broker_table_count(f->b, "users"), 5);
    assert_int_equal(jn_broker_table_count(f->b, "big"), 250);
    assert_int_equal(jn_broker_table_get(f->b, "users", (const uint8_t *)"user/1", 6, &val, NULL, 0, NULL, NULL),
                     0);
    assert_memory_equal(val.data, "new", 3);
    assert_int_equal(jn_broker_table_get(f->b, "users", (const uint8_t *)"zz", 2, &val, NULL, 0, NULL, NULL), 0);
    assert_int_equal(val.len, 12);
    assert_memory_equal(val.data, "from-publish", 12);
    assert_int_equal(jn_broker_table_get(f->b, "users", (const uint8_t *)"user/2", 6, &val, NULL, 0, NULL, NULL),
                     JN_ENOENT);
    assert_int_equal(jn_broker_table_get(f->b, "big", (const uint8_t *)"k0001", 5, &val, NULL, 0, NULL, NULL), 0);
    assert_int_equal(jn_broker_table_get(f->b, "big", (const uint8_t *)"k0002", 5, &val, NULL, 0, NULL, NULL),
                     JN_ENOENT);
    memset(&ks, 0, sizeof ks);
    assert_int_equal(jn_broker_table_scan(f->b, "big", (const uint8_t *)"k00", 3, NULL, 0, 3, key_cb, &ks), 3);
    assert_string_equal(ks.k[0], "k0001");
    assert_string_equal(ks.k[2], "k0005");
    jn_buf_free(&val);

    /* auto-create off */
    fx_close_broker(f);
    f->cfg.auto_create_streams = false;
    fx_open(f);
    assert_int_equal(jn_broker_table_put(f->b, "newtable", (const uint8_t *)"k", 1, (const uint8_t *)"v", 1, NULL,
                                         NULL),
                     JN_ENOENT);
}

/* ---- auth ---- */

/* ---- internal streams ---- */

/* Internal streams ("__...") never leak: wildcard subscriptions do not
 * cover them (now or when they appear later), naming one needs internal
 * access, publishing to one is refused, and the table API still writes
 * them. */
static void test_internal_streams(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    jn_publish_result_t r;
    assert_int_equal(jn_broker_table_open_internal(f->b, "__sessions"), 0);
    assert_int_equal(jn_broker_table_put(f->b, "__sessions", (const uint8_t *)"c1", 2, (const uint8_t *)"s1", 2,
                                         NULL, &r), 0);
    jn_stream_t *in = jn_broker_stream_find(f->b, "__sessions", 10);
    assert_non_null(in);
    assert_true(jn_stream_is_internal(in));
    assert_int_equal(pub(f, "sensors/a", NULL, "v1", NULL), 0);
    assert_false(jn_stream_is_internal(jn_broker_stream_find(f->b, "sensors", 7)));

    sink_t *all = sink_new(-1), *plus = sink_new(-1), *priv = sink_new(-1);
    jn_sub_t *s_all = subscribe(f, "#", JN_START_EARLIEST, all, false);
    jn_sub_t *s_plus = subscribe(f, "+", JN_START_EARLIEST, plus, false);
    assert_int_equal(jn_sub_position(s_all, in, 0), JN_ENOENT); /* no cursor in it */

    /* Naming an internal stream needs internal access. */
    jn_sub_opts_t o;
    memset(&o, 0, sizeof o);
    o.start = JN_START_EARLIEST;
    o.deliver = sink_deliver;
    o.arg = priv;
    jn_sub_t *s_priv = NULL;
    o.filter = "__sessions";
    assert_int_equal(jn_broker_subscribe(f->b, &o, &s_priv), JN_EINVAL);
    o.filter = "__sessions/#";
    assert_int_equal(jn_broker_subscribe(f->b, &o, &s_priv), JN_EINVAL);
    o.filter = "__nothing_yet";
    assert_int_equal(jn_broker_subscribe(f->b, &o, &s_priv), JN_EINVAL);
    o.filter = "__sessions";
    o.internal = true;
    assert_int_equal(jn_broker_subscribe(f->b, &o, &s_priv), 0);

    /* Live records of internal streams, and internal streams created after
     * the subscriptions, stay hidden from them too. */
    assert_int_equal(jn_broker_table_put(f->b, "__sessions", (const uint8_t *)"c2", 2, (const uint8_t *)"s2", 2,
                                         NULL, &r), 0);
    assert_int_equal(jn_broker_table_open_internal(f->b, "__later"), 0);
    assert_int_equal(jn_broker_table_put(f->b, "__later", (const uint8_t *)"k", 1, (const uint8_t *)"x", 1, NULL,
                                         &r), 0);
    assert_int_equal(pub(f, "sensors/b", NULL, "v2", NULL), 0);
    assert_int_equal(pub(f, "other", NULL, "v3", NULL), 0);
    spin(f, 10);
    assert_int_equal(all->n, 3);
    for (size_t i = 0; i < all->n; i++)
        assert_true(strncmp(all->got[i].stream, "__", 2) != 0);
    assert_int_equal(plus->n, 1); /* "other": the sensors subjects have two levels */
    assert_string_equal(plus->got[0].value, "v3");
    assert_int_equal(priv->n, 2);
    assert_string_equal(priv->got[0].value, "s1");
    assert_string_equal(priv->got[1].value, "s2");
    assert_string_equal(priv->got[1].stream, "__sessions");

    /* Internal access also lets a wildcard cover internal streams. */
    sink_t *wide = sink_new(-1);
    memset(&o, 0, sizeof o);
    o.filter = "#";
    o.start = JN_START_EARLIEST;
    o.deliver = sink_deliver;
    o.arg = wide;
    o.internal = true;
    jn_sub_t *s_wide = NULL;
    assert_int_equal(jn_broker_subscribe(f->b, &o, &s_wide), 0);
    spin(f, 10);
    assert_int_equal(wide->n, 3 + 2 + 1);

    /* Publishing to an internal stream is refused, existing or not, and
     * creates nothing. */
    assert_int_equal(pub(f, "__sessions", "c3", "s3", NULL), JN_EINVAL);
    assert_int_equal(pub(f, "__sessions/x", NULL, "s3", NULL), JN_EINVAL);
    assert_int_equal(pub(f, "__fresh/x", NULL, "y", NULL), JN_EINVAL);
    assert_null(jn_broker_stream_find(f->b, "__fresh", 7));
    assert_int_equal(jn_broker_table_count(f->b, "__sessions"), 2);
    /* The table path still works after all this. */
    jn_buf_t v;
    jn_buf_init(&v, 1024);
    assert_int_equal(jn_broker_table_get(f->b, "__sessions", (const uint8_t *)"c2", 2, &v, NULL, 0, NULL, NULL), 0);
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.data, "s2", 2);
    jn_buf_free(&v);

    jn_sub_close(s_all);
    jn_sub_close(s_plus);
    jn_sub_close(s_priv);
    jn_sub_close(s_wide);
    free(all);
    free(plus);
    free(priv);
    free(wide);
}

/* ---- asynchronous commits ---- */

typedef struct cwait {
    jn_durable_waiter_t w;
    int fired;
    int status;
} cwait_t;

static void cwait_cb(jn_durable_waiter_t *w, int status)
{
    cwait_t *c = (cwait_t *)w;
    c->fired++;
    c->status = status;
}

/* Runs the loop until |c| fired (the fsync runs on the thread pool). */
static void wait_fired(fx_t *f, cwait_t *c)
{
    for (int i = 0; i < 10000 && !c->fired; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(c->fired, 1);
}

static void offsets_path(const fx_t *f, char *out, size_t len)
{
    snprintf(out, len, "%s/offsets/0/00000000000000000000.log", f->dir);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* Bytes of record batches at the start of a segment file: an open
 * fsync-always log keeps zeros written ahead of them (plog.c,
 * PREALLOCATION), so the file size is not the data size. */
static off_t batches_size(const char *path)
{
    off_t n = file_size(path), pos = 0;
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t h[12];
    while (pos + 12 <= n && pread(fd, h, sizeof h, pos) == (ssize_t)sizeof h) {
        uint32_t len = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
        if (len == 0)
            break;
        pos += 12 + (off_t)len;
    }
    close(fd);
    return pos;
}

/* Commits are visible at once and durable once the barrier fires; waiters
 * share fsyncs; a cancelled waiter never fires; with nothing left to sync
 * the barrier fires at once. */
static void test_commit_durable(void **state)
{
    fx_t *f = *state;
    f->cfg.stream_defaults.fsync = JN_FSYNC_INTERVAL; /* offsets log: fsync always, asynchronous */
    fx_open(f);
    jn_stream_t *s;
    assert_int_equal(jn_broker_stream_create(f->b, "d", 2, NULL, &s), 0);
    char path[128];
    offsets_path(f, path, sizeof path);
    off_t before = file_size(path);

    assert_int_equal(jn_broker_group_commit(f->b, "g", s, 0, 5, "m"), 0);
    int64_t off = -1;
    assert_int_equal(jn_broker_group_fetch(f->b, "g", s, 0, &off), 0); /* visible at once */
    assert_int_equal(off, 5);
    assert_int_equal(jn_broker_group_commit(f->b, "g", s, 1, 7, NULL), 0);

    cwait_t a = {0}, c = {0}, cancelled = {0};
    jn_broker_group_wait_durable(f->b, &a.w, cwait_cb);
    assert_int_equal(a.fired, 0); /* the fsync runs off the loop */
    assert_int_equal(jn_broker_group_commit(f->b, "h", s, 0, 1, NULL), 0);
    jn_broker_group_wait_durable(f->b, &c.w, cwait_cb);
    jn_broker_group_wait_durable(f->b, &cancelled.w, cwait_cb);
    jn_plog_cancel_durable(&cancelled.w);
    wait_fired(f, &a);
    wait_fired(f, &c);
    assert_int_equal(a.status, 0);
    assert_int_equal(c.status, 0);
    assert_int_equal(cancelled.fired, 0);
    assert_true(file_size(path) > before); /* written, not just in memory */

    /* Everything is durable now: a new barrier fires before returning. */
    cwait_t now = {0};
    jn_broker_group_wait_durable(f->b, &now.w, cwait_cb);
    assert_int_equal(now.fired, 1);
    assert_int_equal(now.status, 0);

    fx_reopen(f);
    s = jn_broker_stream_find(f->b, "d", 1);
    assert_int_equal(jn_broker_group_fetch(f->b, "g", s, 0, &off), 0);
    assert_int_equal(off, 5);
    assert_int_equal(jn_broker_group_fetch(f->b, "g", s, 1, &off), 0);
    assert_int_equal(off, 7);
    assert_int_equal(jn_broker_group_fetch(f->b, "h", s, 0, &off), 0);
    assert_int_equal(off, 1);

    /* Under fsync "never" the barrier fires at once. */
    fx_close_broker(f);
    f->cfg.stream_defaults.fsync = JN_FSYNC_NEVER;
    fx_open(f);
    s = jn_broker_stream_find(f->b, "d", 1);
    assert_int_equal(jn_broker_group_commit(f->b, "g", s, 0, 9, NULL), 0);
    cwait_t nv = {0};
    jn_broker_group_wait_durable(f->b, &nv.w, cwait_cb);
    assert_int_equal(nv.fired, 1);
    assert_int_equal(nv.status, 0);
}

/* A crash after commits nobody waited for loses at most the commits after
 * the last barrier - a suffix of the offsets log - and never corrupts it:
 * simulated by cutting the log file anywhere after the durable point (a
 * torn write included) and reopening. */
static void test_commit_crash_tail(void **state)
{
    fx_t *f = *state;
    f->cfg.stream_defaults.fsync = JN_FSYNC_INTERVAL;
    fx_open(f);
    jn_stream_t *s;
    assert_int_equal(jn_broker_stream_create(f->b, "c", 1, NULL, &s), 0);
    for (int64_t i = 1; i <= 5; i++)
        assert_int_equal(jn_broker_group_commit(f->b, "g", s, 0, i, NULL), 0);
    assert_int_equal(jn_broker_group_commit(f->b, "stable", s, 0, 42, NULL), 0);
    cwait_t w = {0};
    jn_broker_group_wait_durable(f->b, &w.w, cwait_cb);
    wait_fired(f, &w);
    assert_int_equal(w.status, 0);
    char path[128];
    offsets_path(f, path, sizeof path);
    off_t durable = batches_size(path);
    for (int64_t i = 6; i <= 10; i++)
        assert_int_equal(jn_broker_group_commit(f->b, "g", s, 0, i, NULL), 0);
    fx_close_broker(f);
    off_t full = file_size(path);
    assert_true(full > durable);

    /* Every cut from the durable point to the end, torn records included. */
    char copy[160];
    snprintf(copy, sizeof copy, "%s.full", path);
    assert_int_equal(link(path, copy), 0);
    int fd = open(copy, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t *bytes = malloc((size_t)full);
    assert_int_equal(read(fd, bytes, (size_t)full), (ssize_t)full);
    close(fd);
    assert_int_equal(unlink(copy), 0);
    int64_t last = 5;
    for (off_t cut = durable; cut <= full; cut += (full - durable) / 7 + 1) {
        fd = open(path, O_WRONLY | O_TRUNC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, bytes, (size_t)cut), (ssize_t)cut);
        close(fd);
        fx_open(f);
        s = jn_broker_stream_find(f->b, "c", 1);
        int64_t off = -1;
        assert_int_equal(jn_broker_group_fetch(f->b, "g", s, 0, &off), 0);
        assert_true(off >= 5 && off <= 10); /* a prefix: never below the barrier */
        assert_true(off >= last);           /* longer cuts keep more */
        last = off;
        assert_int_equal(jn_broker_group_fetch(f->b, "stable", s, 0, &off), 0);
        assert_int_equal(off, 42);
        fx_close_broker(f);
    }
    free(bytes);
}

static void test_auth_persisted(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    jn_auth_t *a = jn_broker_auth(f->b);
    assert_int_equal(jn_auth_user_set(a, "alice", "secret1", true), 0);
    assert_int_equal(jn_auth_user_set(a, "bob", "secret2", false), 0);
    assert_int_equal(jn_auth_acl_add(a, "bob", JN_PERM_PUBLISH, "bob/#"), 0);
    char tok[64], id[16];
    assert_int_equal(jn_auth_token_create(a, "alice", "ci", tok, id), 0);
    assert_int_equal(jn_auth_user_delete(a, "bob"), 0);
    assert_int_equal(jn_auth_user_set(a, "carol", "pw", false), 0);
    fx_reopen(f);
    a = jn_broker_auth(f->b);
    assert_true(jn_auth_user_exists(a, "alice"));
    assert_false(jn_auth_user_exists(a, "bob"));
    assert_true(jn_auth_user_exists(a, "carol"));
    jn_principal_t p;
    assert_int_equal(jn_auth_check_password(a, "alice", "secret1", &p), 0);
    assert_true(p.admin);
    assert_int_equal(jn_auth_check_password(a, "alice", "wrong", &p), JN_EAUTH);
    assert_int_equal(jn_auth_check_token(a, tok, &p), 0);
    assert_string_equal(p.name, "alice");
}

/* Subscriptions come in two shapes (a short filter inside a pooled object,
 * a long one malloc'd) and keep their cursor state apart until a stream
 * they cover exists: all of them deliver the same, and the broker frees
 * the ones still open when it closes. */
static void test_sub_shapes(void **state)
{
    fx_t *f = *state;
    fx_open(f);
    enum { N = 64 };
    static const char *longp = "dev/a-level-longer-than-a-pooled-subscription-holds";
    sink_t *k[2 * N];
    jn_sub_t *subs[2 * N];
    for (int i = 0; i < 2 * N; i++) {
        char filter[128];
        if (i < N)
            snprintf(filter, sizeof filter, "dev/%d", i);
        else
            snprintf(filter, sizeof filter, "%s/%d", longp, i - N);
        k[i] = sink_new(-1);
        subs[i] = subscribe(f, filter, JN_START_EARLIEST, k[i], i % 2 == 0);
        /* no stream yet: no cursor */
        assert_int_equal(jn_sub_dropped(subs[i]), 0);
        assert_int_equal(jn_sub_lag(subs[i]), 0);
    }
    assert_int_equal(pub(f, "dev/7", NULL, "a", NULL), 0);
    char subj[128];
    snprintf(subj, sizeof subj, "%s/%d", longp, 9);
    assert_int_equal(pub(f, subj, NULL, "b", NULL), 0);
    for (int i = 0; i < 2 * N; i++)
        assert_int_equal(k[i]->n, i == 7 || i == N + 9 ? 1 : 0);
    assert_string_equal(k[N + 9]->got[0].subject, subj);
    jn_stream_t *s = jn_broker_stream_find(f->b, "dev", 3);
    assert_non_null(s);
    assert_int_equal(jn_sub_position(subs[7], s, 0), 2);
    /* a lossy sink that refuses counts what it dropped */
    k[8]->room = 0;
    assert_int_equal(pub(f, "dev/8", NULL, "c", NULL), 0);
    assert_int_equal(jn_sub_dropped(subs[8]), 1);
    /* close every other one; the rest still deliver */
    for (int i = 0; i < 2 * N; i += 2)
        jn_sub_close(subs[i]);
    assert_int_equal(pub(f, "dev/7", NULL, "d", NULL), 0);
    assert_int_equal(k[7]->n, 2);
    /* the broker closes (and frees) the ones still open */
    fx_reopen(f);
    sink_t *again = sink_new(-1);
    jn_sub_t *sa = subscribe(f, "dev/+", JN_START_EARLIEST, again, false);
    spin(f, 5);
    assert_int_equal(again->n, 3); /* dev/7, dev/8, dev/7 (the long subject is deeper) */
    jn_sub_close(sa);
    free(again);
    for (int i = 0; i < 2 * N; i++)
        free(k[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_names),
        cmocka_unit_test_setup_teardown(test_nested_publish_in_delivery, setup, teardown),
        cmocka_unit_test(test_config_json),
        cmocka_unit_test_setup_teardown(test_streams_crud_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_mapping_partitioning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_earliest_catchup_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_offset_and_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_while_behind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lossy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streams_created_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sub_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_persisted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_internal_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_crash_tail, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
