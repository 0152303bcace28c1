/* test_kafka_pstate.c - unit tests of the Kafka door's idempotent producer
 * state (src/proto/kafka/pstate.c): the sequence checks, the shared cap,
 * expiry, the snapshot encoding (round trip, every truncated prefix, every
 * flipped byte), and the rebuild from a snapshot plus a real partition log
 * in a mkdtemp() directory: without a snapshot, from a snapshot, a log cut
 * shorter than its snapshot by recovery, a log cut and grown again, and a
 * snapshot older than the scan window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/log.h"
#include "proto/kafka/codec.h"
#include "proto/kafka/pstate.h"

#define NOW 1700000000000LL

static jn_batch_info_t bi_of(int64_t pid, int16_t epoch, int32_t seq, int32_t count)
{
    jn_batch_info_t bi = {0};
    bi.producer_id = pid;
    bi.producer_epoch = epoch;
    bi.base_sequence = seq;
    bi.last_offset_delta = count - 1;
    bi.record_count = count;
    return bi;
}

/* ---- checks ---- */

static void test_checks(void **state)
{
    (void)state;
    jn_kps_t ps;
    jn_kps_init(&ps, NULL, 100);
    int64_t dup = -1;
    jn_batch_info_t b = bi_of(7, 0, 0, 3);
    assert_int_equal(jn_kps_check(&ps, &b, &dup), 0); /* unknown: accepted */
    /* Seven batches of 3 records at offsets 100, 110, ... */
    for (int i = 0; i < 7; i++) {
        b = bi_of(7, 0, i * 3, 3);
        assert_int_equal(jn_kps_check(&ps, &b, &dup), 0);
        assert_int_equal(jn_kps_record(&ps, &b, 100 + i * 10, NOW), 0);
    }
    /* The last five are duplicates with their offsets. */
    for (int i = 2; i < 7; i++) {
        b = bi_of(7, 0, i * 3, 3);
        assert_int_equal(jn_kps_check(&ps, &b, &dup), 1);
        assert_int_equal(dup, 100 + i * 10);
    }
    b = bi_of(7, 0, 3, 3); /* older than the cache */
    assert_int_equal(jn_kps_check(&ps, &b, &dup), -JN_KERR_DUPLICATE_SEQUENCE_NUMBER);
    b = bi_of(7, 0, 22, 1); /* a gap: 21 expected */
    assert_int_equal(jn_kps_check(&ps, &b, &dup), -JN_KERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    b = bi_of(7, 0, 21, 1);
    assert_int_equal(jn_kps_check(&ps, &b, &dup), 0);
    b = bi_of(7, 1, 5, 1); /* a new epoch must start at 0 */
    assert_int_equal(jn_kps_check(&ps, &b, &dup), -JN_KERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    b = bi_of(7, 1, 0, 1);
    assert_int_equal(jn_kps_check(&ps, &b, &dup), 0);
    assert_int_equal(jn_kps_record(&ps, &b, 500, NOW), 0);
    b = bi_of(7, 0, 21, 1); /* fenced */
    assert_int_equal(jn_kps_check(&ps, &b, &dup), -JN_KERR_INVALID_PRODUCER_EPOCH);
    const jn_kps_producer_t *p = jn_kps_find(&ps, 7);
    assert_non_null(p);
    assert_int_equal(p->epoch, 1);
    assert_int_equal(p->n, 1);
    /* Untracked batches. */
    b = bi_of(-1, -1, -1, 1);
    assert_false(jn_kps_tracked(&b));
    b = bi_of(3, 0, 0, 1);
    assert_true(jn_kps_tracked(&b));
    b.attributes = JN_BATCH_TRANSACTIONAL;
    assert_false(jn_kps_tracked(&b));
    jn_kps_free(&ps);
}

static void test_cap_and_expiry(void **state)
{
    (void)state;
    size_t total = 0;
    jn_kps_t a, b;
    jn_kps_init(&a, &total, 50);
    jn_kps_init(&b, &total, 50);
    for (int i = 0; i < 30; i++) {
        jn_batch_info_t bi = bi_of(i, 0, 0, 1);
        assert_int_equal(jn_kps_record(&a, &bi, i, NOW - (i < 10 ? 2 * JN_KPS_EXPIRY_MS : 0)), 0);
    }
    for (int i = 0; i < 20; i++) {
        jn_batch_info_t bi = bi_of(i, 0, 0, 1);
        assert_int_equal(jn_kps_record(&b, &bi, i, NOW), 0);
    }
    assert_int_equal(total, 50);
    jn_batch_info_t bi = bi_of(99, 0, 0, 1);
    assert_int_equal(jn_kps_record(&b, &bi, 0, NOW), JN_ETOOBIG);
    bi = bi_of(5, 0, 1, 1); /* a known producer is still recorded */
    assert_int_equal(jn_kps_record(&b, &bi, 1, NOW), 0);
    assert_int_equal(jn_kps_expire(&a, NOW, JN_KPS_EXPIRY_MS), 10);
    assert_int_equal(jn_kps_count(&a), 20);
    assert_int_equal(total, 40);
    assert_null(jn_kps_find(&a, 3));
    assert_non_null(jn_kps_find(&a, 12));
    bi = bi_of(99, 0, 0, 1);
    assert_int_equal(jn_kps_record(&b, &bi, 0, NOW), 0);
    jn_kps_free(&a);
    assert_int_equal(total, 21);
    jn_kps_free(&b);
    assert_int_equal(total, 0);
}

/* ---- snapshots ---- */

/* Whether two states answer every batch alike. */
static void assert_same(const jn_kps_t *x, const jn_kps_t *y)
{
    assert_int_equal(jn_kps_count(x), jn_kps_count(y));
    for (size_t i = 0; i < x->cap; i++) {
        const jn_kps_producer_t *p = &x->slots[i];
        if (p->pid < 0)
            continue;
        const jn_kps_producer_t *q = jn_kps_find(y, p->pid);
        assert_non_null(q);
        assert_int_equal(p->epoch, q->epoch);
        assert_int_equal(p->last_seq, q->last_seq);
        assert_int_equal(p->n, q->n);
        for (int32_t seq = 0; seq <= p->last_seq + 2; seq++) {
            for (int32_t cnt = 1; cnt <= 4; cnt++) {
                jn_batch_info_t b = bi_of(p->pid, p->epoch, seq, cnt);
                int64_t d1 = -1, d2 = -1;
                assert_int_equal(jn_kps_check(x, &b, &d1), jn_kps_check(y, &b, &d2));
                assert_int_equal(d1, d2);
            }
        }
    }
}

static void fill(jn_kps_t *ps)
{
    for (int pid = 1; pid <= 12; pid++)
        for (int i = 0; i < pid % 8; i++) {
            jn_batch_info_t b = bi_of(pid * 1000, (int16_t)(pid % 3), i * 2, 2);
            assert_int_equal(jn_kps_record(ps, &b, pid * 100 + i * 2, NOW - pid), 0);
        }
}

static void test_snapshot_roundtrip(void **state)
{
    (void)state;
    jn_kps_t ps, back;
    jn_kps_init(&ps, NULL, 1000);
    jn_kps_init(&back, NULL, 1000);
    fill(&ps);
    jn_kps_anchor_t a = {.end = 5000, .last_base = 4990, .last_crc = 0xdeadbeef}, a2;
    jn_buf_t out;
    jn_buf_init(&out, 1 << 20);
    assert_int_equal(jn_kps_encode(&ps, &a, &out), 0);
    assert_int_equal(jn_kps_decode(&back, out.data, out.len, &a2), 0);
    assert_int_equal(a2.end, 5000);
    assert_int_equal(a2.last_base, 4990);
    assert_int_equal(a2.last_crc, 0xdeadbeef);
    assert_same(&ps, &back);
    const jn_kps_producer_t *p = jn_kps_find(&back, 7000);
    assert_non_null(p);
    assert_int_equal(p->last_ts, NOW - 7);
    /* Every truncated prefix and every flipped byte is refused, leaving
     * the state empty. */
    for (size_t n = 0; n < out.len; n++) {
        assert_int_equal(jn_kps_decode(&back, out.data, n, &a2), JN_ECORRUPT);
        assert_int_equal(jn_kps_count(&back), 0);
    }
    for (size_t i = 0; i < out.len; i++) {
        out.data[i] ^= 0x40;
        assert_int_equal(jn_kps_decode(&back, out.data, out.len, &a2), JN_ECORRUPT);
        out.data[i] ^= 0x40;
    }
    /* An empty state encodes too. */
    jn_kps_clear(&ps);
    jn_buf_reset(&out);
    assert_int_equal(jn_kps_encode(&ps, &a, &out), 0);
    assert_int_equal(jn_kps_decode(&back, out.data, out.len, &a2), 0);
    assert_int_equal(jn_kps_count(&back), 0);
    /* The output cap is respected, leaving |out| as it was. */
    fill(&ps);
    jn_buf_t small;
    jn_buf_init(&small, 64);
    assert_int_equal(jn_kps_encode(&ps, &a, &small), JN_ETOOBIG);
    assert_int_equal(small.len, 0);
    jn_buf_free(&small);
    jn_buf_free(&out);
    jn_kps_free(&ps);
    jn_kps_free(&back);
}

/* ---- rebuild from a real log ---- */

typedef struct fixture {
    char root[64];
    char dir[128];
    uv_loop_t loop;
    jn_plog_config_t cfg;
    jn_plog_t *log;
    jn_buf_t b;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->root, sizeof f->root, "/tmp/jn_kps_XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof f->dir, "%s/p0", f->root);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    jn_plog_config_default(&f->cfg);
    f->cfg.fsync = JN_FSYNC_NEVER;
    jn_buf_init(&f->b, 1 << 20);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    jn_plog_close(f->log);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    jn_buf_free(&f->b);
    jn_fs_rm_tree(f->root);
    free(f);
    return 0;
}

static void reopen(fixture_t *f)
{
    jn_plog_close(f->log);
    f->log = NULL;
    assert_int_equal(jn_plog_open(&f->loop, f->dir, &f->cfg, NULL, &f->log), 0);
}

/* Appends a batch of |count| records (pid < 0: not idempotent; |tag|
 * changes the bytes) and records it in |live| as the door does. Returns
 * the bytes it takes in the file. */
static size_t append(fixture_t *f, jn_kps_t *live, int64_t pid, int16_t epoch, int32_t seq, int count, int tag)
{
    jn_buf_reset(&f->b);
    jn_batch_builder_t bb;
    assert_int_equal(jn_batch_builder_begin(&bb, &f->b), 0);
    bb.producer_id = pid;
    bb.producer_epoch = pid >= 0 ? epoch : -1;
    bb.base_sequence = pid >= 0 ? seq : -1;
    for (int i = 0; i < count; i++) {
        char val[32];
        int vl = snprintf(val, sizeof val, "v%d-%d-%d", tag, seq, i);
        jn_record_t r = {0};
        r.key_len = -1;
        r.value = (const uint8_t *)val;
        r.value_len = vl;
        r.timestamp = NOW - 1000 + i;
        assert_int_equal(jn_batch_builder_add(&bb, &r), 0);
    }
    assert_true(jn_batch_builder_finish(&bb) > 0);
    jn_batch_info_t bi;
    assert_int_equal(jn_batch_parse(f->b.data, f->b.len, 1 << 20, &bi), (int)f->b.len);
    int64_t base = jn_plog_append(f->log, f->b.data, f->b.len);
    assert_true(base >= 0);
    if (live && jn_kps_tracked(&bi))
        assert_int_equal(jn_kps_record(live, &bi, base, NOW), 0);
    return f->b.len;
}

/* Three producers and some plain batches. */
static size_t traffic(fixture_t *f, jn_kps_t *live, int rounds, int32_t *seq)
{
    size_t bytes = 0;
    for (int r = 0; r < rounds; r++) {
        for (int p = 0; p < 3; p++) {
            int n = 1 + (r + p) % 3;
            bytes += append(f, live, 10 + p, 0, seq[p], n, 0);
            seq[p] += n;
        }
        bytes += append(f, live, -1, -1, -1, 2, r);
    }
    return bytes;
}

static void test_rebuild_scan(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(jn_plog_open(&f->loop, f->dir, &f->cfg, NULL, &f->log), 0);
    jn_kps_t live, re;
    jn_kps_init(&live, NULL, 1000);
    jn_kps_init(&re, NULL, 1000);
    /* An empty log: nothing to anchor, nothing to scan. */
    jn_kps_anchor_t a;
    assert_int_equal(jn_kps_anchor_of(f->log, &a), JN_ENOENT);
    jn_kps_rebuild_info_t info;
    assert_int_equal(jn_kps_rebuild(&re, f->log, NULL, 0, JN_KPS_SCAN_BYTES, NOW, JN_KPS_EXPIRY_MS, &info), 0);
    assert_int_equal(jn_kps_count(&re), 0);
    int32_t seq[3] = {0};
    traffic(f, &live, 8, seq);
    reopen(f);
    assert_int_equal(jn_kps_rebuild(&re, f->log, NULL, 0, JN_KPS_SCAN_BYTES, NOW, JN_KPS_EXPIRY_MS, &info), 0);
    assert_false(info.snapshot_used);
    assert_int_equal(info.scanned_from, 0);
    assert_int_equal(info.batches, 32);
    assert_same(&live, &re);
    /* Old batches are answered with the offset they got. */
    const jn_kps_producer_t *p = jn_kps_find(&re, 11);
    assert_non_null(p);
    assert_int_equal(p->last_seq, seq[1] - 1);
    /* Producers seen in the scan count as active at the rebuild (the
     * batch timestamps are the producer's clock); those of a snapshot
     * idle past the expiry are left out. */
    assert_int_equal(jn_kps_rebuild(&re, f->log, NULL, 0, JN_KPS_SCAN_BYTES, NOW + 2 * JN_KPS_EXPIRY_MS,
                                    JN_KPS_EXPIRY_MS, &info),
                     0);
    assert_int_equal(jn_kps_count(&re), 3);
    jn_buf_t snap;
    jn_buf_init(&snap, JN_KPS_SNAPSHOT_MAX);
    assert_int_equal(jn_kps_snapshot(&live, f->log, &snap), 0); /* live: last_ts NOW */
    assert_int_equal(jn_kps_rebuild(&re, f->log, snap.data, snap.len, JN_KPS_SCAN_BYTES,
                                    NOW + JN_KPS_EXPIRY_MS - 1, JN_KPS_EXPIRY_MS, &info),
                     0);
    assert_true(info.snapshot_used);
    assert_int_equal(jn_kps_count(&re), 3);
    assert_int_equal(jn_kps_rebuild(&re, f->log, snap.data, snap.len, JN_KPS_SCAN_BYTES,
                                    NOW + JN_KPS_EXPIRY_MS + 1, JN_KPS_EXPIRY_MS, &info),
                     0);
    assert_true(info.snapshot_used);
    assert_int_equal(jn_kps_count(&re), 0);
    jn_buf_free(&snap);
    jn_kps_free(&live);
    jn_kps_free(&re);
}

static void test_rebuild_snapshot(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(jn_plog_open(&f->loop, f->dir, &f->cfg, NULL, &f->log), 0);
    jn_kps_t live, re;
    jn_kps_init(&live, NULL, 1000);
    jn_kps_init(&re, NULL, 1000);
    int32_t seq[3] = {0};
    traffic(f, &live, 5, seq);
    jn_buf_t snap;
    jn_buf_init(&snap, JN_KPS_SNAPSHOT_MAX);
    assert_int_equal(jn_kps_snapshot(&live, f->log, &snap), 0);
    int64_t snap_end = jn_plog_end_offset(f->log);
    traffic(f, &live, 3, seq);
    reopen(f);
    jn_kps_rebuild_info_t info;
    assert_int_equal(
        jn_kps_rebuild(&re, f->log, snap.data, snap.len, JN_KPS_SCAN_BYTES, NOW, JN_KPS_EXPIRY_MS, &info), 0);
    assert_true(info.snapshot_used);
    assert_int_equal(info.scanned_from, snap_end);
    assert_int_equal(info.batches, 12);
    assert_same(&live, &re);
    /* A snapshot at the very end: nothing to scan. */
    jn_buf_reset(&snap);
    assert_int_equal(jn_kps_snapshot(&live, f->log, &snap), 0);
    assert_int_equal(
        jn_kps_rebuild(&re, f->log, snap.data, snap.len, JN_KPS_SCAN_BYTES, NOW, JN_KPS_EXPIRY_MS, &info), 0);
    assert_true(info.snapshot_used);
    assert_int_equal(info.batches, 0);
    assert_same(&live, &re);
    /* Garbage instead of a snapshot: ignored, the log is scanned. */
    snap.data[snap.len / 2] ^= 1;
    assert_int_equal(
        jn_kps_rebuild(&re, f->log, snap.data, snap.len, JN_KPS_SCAN_BYTES, NOW, JN_KPS_EXPIRY_MS, &info), 0);
    assert_false(info.snapshot_used);
    assert_same(&live, &re);
    jn_buf_free(&snap);
    jn_kps_free(&live);
    jn_kps_free(&re);
}

/* The log ends up shorter than the snapshot (recovery cut a tail that
 * was never written or synced), then grows again with other batches. */
static void test_rebuild_after_cut(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(jn_plog_open(&f->loop, f->dir, &f->cfg, NULL, &f->log), 0);
    jn_kps_t live, re;
    jn_kps_init(&live, NULL, 1000);
    jn_kps_init(&re, NULL, 1000);
    int32_t seq[3] = {0};
    size_t kept = traffic(f, &live, 4, seq);
    int64_t kept_end = jn_plog_end_offset(f->log);
    jn_kps_t at_cut; /* what the log will say after the cut */
    jn_kps_init(&at_cut, NULL, 1000);
    assert_int_equal(jn_kps_rebuild(&at_cut, f->log, NULL, 0, JN_KPS_SCAN_BYTES, NOW, JN_KPS_EXPIRY_MS, NULL), 0);
    traffic(f, &live, 2, seq);
    jn_buf_t snap;
    jn_buf_init(&snap, JN_KPS_SNAPSHOT_MAX);
    assert_int_equal(jn_kps_snapshot(&live, f->log, &snap), 0);
    jn_plog_close(f->log);
    f->log = NULL;
    char path[256];
    snprintf(path, sizeof path, "%s/%020d.log", f->dir, 0);
    assert_int_equal(truncate(path, (off_t)(kept + 7)), 0); /* and a torn batch */
    reopen(f);
    assert_int_equal(jn_plog_end_offset(f->log), kept_end);
    jn_kps_rebuild_info_t info;
    assert_int_equal(
        jn_kps_rebuild(&re, f->log, snap.data, snap.len, JN_KPS_SCAN_BYTES, NOW, JN_KPS_EXPIRY_MS, &info), 0);
    assert_false(info.snapshot_used);
    assert_int_equal(info.scanned_from, 0);
    assert_same(&at_cut, &re);
    /* The same producers go on with other batches, past the snapshot's end:
     * its anchor batch is not there any more, so it stays unused. */
    int32_t seq2[3];
    for (int p = 0; p < 3; p++)
        seq2[p] = jn_kps_find(&re, 10 + p)->last_seq + 1;
    while (jn_plog_end_offset(f->log) < kept_end + 40)
        traffic(f, &re, 1, seq2);
    assert_int_equal(jn_kps_rebuild(&at_cut, f->log, snap.data, snap.len, JN_KPS_SCAN_BYTES, NOW, JN_KPS_EXPIRY_MS,
                                    &info),
                     0);
    assert_false(info.snapshot_used);
    assert_same(&re, &at_cut);
    jn_buf_free(&snap);
    jn_kps_free(&live);
    jn_kps_free(&re);
    jn_kps_free(&at_cut);
}

/* Segments roll; the scan window covers only the newest ones, and a
 * snapshot older than the window is not combined with it. */
static void test_rebuild_window(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_bytes = 2048;
    assert_int_equal(jn_plog_open(&f->loop, f->dir, &f->cfg, NULL, &f->log), 0);
    jn_kps_t live, re;
    jn_kps_init(&live, NULL, 1000);
    jn_kps_init(&re, NULL, 1000);
    int32_t seq[3] = {0};
    traffic(f, &live, 3, seq);
    jn_buf_t snap;
    jn_buf_init(&snap, JN_KPS_SNAPSHOT_MAX);
    assert_int_equal(jn_kps_snapshot(&live, f->log, &snap), 0);
    traffic(f, &live, 40, seq);
    assert_true(jn_plog_segment_count(f->log) > 4);
    int64_t window = jn_plog_recent_offset(f->log, 4096);
    assert_true(window > 0);
    jn_kps_rebuild_info_t info;
    assert_int_equal(jn_kps_rebuild(&re, f->log, snap.data, snap.len, 4096, NOW, JN_KPS_EXPIRY_MS, &info), 0);
    assert_false(info.snapshot_used);
    assert_int_equal(info.scanned_from, window);
    /* Every producer wrote in the window: next sequences are right. */
    for (int p = 0; p < 3; p++) {
        const jn_kps_producer_t *q = jn_kps_find(&re, 10 + p);
        assert_non_null(q);
        assert_int_equal(q->last_seq, seq[p] - 1);
    }
    /* With a big enough window the snapshot is used and all agree. */
    assert_int_equal(
        jn_kps_rebuild(&re, f->log, snap.data, snap.len, JN_KPS_SCAN_BYTES, NOW, JN_KPS_EXPIRY_MS, &info), 0);
    assert_true(info.snapshot_used);
    assert_same(&live, &re);
    jn_buf_free(&snap);
    jn_kps_free(&live);
    jn_kps_free(&re);
}

int main(void)
{
    jn_log_set_level(JN_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_cap_and_expiry),
        cmocka_unit_test(test_snapshot_roundtrip),
        cmocka_unit_test_setup_teardown(test_rebuild_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_after_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_window, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
