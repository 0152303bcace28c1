/* test_plog.c - unit tests of the partition log (src/core/plog.c): round
 * trips across segments, reopen, crash recovery of torn or corrupt tails,
 * index rebuilds, time lookups, retention, compaction, group commit,
 * waiters and zero-copy slices. Every test works in its own mkdtemp()
 * directory and drives its own uv loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/log.h"
#include "core/plog.h"

typedef struct fake_clock {
    int64_t now;
} fake_clock_t;

static int64_t fake_now(void *ctx) { return ((fake_clock_t *)ctx)->now; }

typedef struct fixture {
    char root[64];
    char dir[128];
    uv_loop_t loop;
    fake_clock_t fc;
    jn_clock_t clock;
    jn_plog_config_t cfg;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->root, sizeof f->root, "/tmp/jn_plog_XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof f->dir, "%s/p0", f->root);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->fc.now = 1000000;
    f->clock.now_ms = fake_now;
    f->clock.ctx = &f->fc;
    jn_plog_config_default(&f->cfg);
    f->cfg.fsync = JN_FSYNC_NEVER;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    jn_fs_rm_tree(f->root);
    free(f);
    return 0;
}

static jn_plog_t *open_log(fixture_t *f)
{
    jn_plog_t *log = NULL;
    assert_int_equal(jn_plog_open(&f->loop, f->dir, &f->cfg, &f->clock, &log), 0);
    assert_non_null(log);
    return log;
}

/* Builds one batch of |n| records: key "k<key_base + i % nkeys>" (no key
 * when nkeys == 0), value "v<first_offset + i>" (NULL when tombstone),
 * timestamp ts + i. */
static void build(jn_buf_t *b, int n, int64_t first_offset, int key_base, int nkeys, int64_t ts,
                  bool tombstone)
{
    jn_buf_reset(b);
    jn_batch_builder_t bb;
    assert_int_equal(jn_batch_builder_begin(&bb, b), 0);
    for (int i = 0; i < n; i++) {
        char key[32], val[32];
        int kl = snprintf(key, sizeof key, "k%d", key_base + (nkeys ? i % nkeys : 0));
        int vl = snprintf(val, sizeof val, "v%06" PRId64, first_offset + i);
        jn_record_t r = {0};
        r.key = nkeys ? (const uint8_t *)key : NULL;
        r.key_len = nkeys ? kl : -1;
        r.value = tombstone ? NULL : (const uint8_t *)val;
        r.value_len = tombstone ? -1 : vl;
        r.timestamp = ts + i;
        assert_int_equal(jn_batch_builder_add(&bb, &r), 0);
    }
    assert_true(jn_batch_builder_finish(&bb) > 0);
}

/* Appends |nb| batches of |per| keyless records, timestamps base_ts + offset. */
static void append_n(jn_plog_t *log, int nb, int per, int64_t base_ts)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    for (int i = 0; i < nb; i++) {
        int64_t off = jn_plog_end_offset(log);
        build(&b, per, off, 0, 0, base_ts + off, false);
        assert_int_equal(jn_plog_append(log, b.data, b.len), off);
    }
    jn_buf_free(&b);
}

typedef struct rec {
    int64_t offset;
    int64_t ts;
    char key[32];
    char val[32];
    bool tomb;
} rec_t;

/* Reads every record from |from| to the end with reads of |max| bytes. */
static size_t collect(jn_plog_t *log, int64_t from, size_t max, rec_t *out, size_t cap)
{
    jn_buf_t b;
    jn_buf_init(&b, 64 << 20);
    size_t n = 0;
    int64_t off = from;
    while (off < jn_plog_end_offset(log)) {
        jn_buf_reset(&b);
        int rc = jn_plog_read(log, off, max, &b);
        assert_true(rc > 0);
        assert_int_equal((size_t)rc, b.len);
        size_t p = 0;
        while (p < b.len) {
            jn_batch_iter_t it;
            jn_record_t r;
            assert_int_equal(jn_batch_iter_init(&it, b.data + p, b.len - p, true), 0);
            while (jn_batch_iter_next(&it, &r) > 0) {
                if (r.offset < off)
                    continue;
                assert_true(n < cap);
                rec_t *o = &out[n++];
                memset(o, 0, sizeof *o);
                o->offset = r.offset;
                o->ts = r.timestamp;
                if (r.key)
                    memcpy(o->key, r.key, (size_t)r.key_len);
                if (r.value)
                    memcpy(o->val, r.value, (size_t)r.value_len);
                o->tomb = r.value == NULL;
            }
            off = it.info.base_offset + it.info.last_offset_delta + 1;
            p += jn_batch_total_size(&it.info);
        }
    }
    jn_buf_free(&b);
    return n;
}

static void check_sequential(jn_plog_t *log, int64_t from, int64_t count)
{
    rec_t *recs = calloc((size_t)count + 1, sizeof *recs);
    size_t n = collect(log, from, 4096, recs, (size_t)count + 1);
    assert_int_equal(n, (size_t)count);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "v%06" PRId64, from + (int64_t)i);
        assert_int_equal(recs[i].offset, from + (int64_t)i);
        assert_string_equal(recs[i].val, want);
    }
    free(recs);
}

static void seg_path(const fixture_t *f, int64_t base, const char *ext, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%020" PRId64 "%s", f->dir, base, ext);
}

static off_t file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return st.st_size;
}

/* ---- tests -------------------------------------------------------------- */

static void test_roundtrip_segments(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_bytes = 1024;
    f->cfg.index_interval_bytes = 200;
    jn_plog_t *log = open_log(f);
    assert_int_equal(jn_plog_start_offset(log), 0);
    assert_int_equal(jn_plog_end_offset(log), 0);
    append_n(log, 200, 3, 0);
    assert_int_equal(jn_plog_end_offset(log), 600);
    assert_true(jn_plog_segment_count(log) > 10);
    /* Before any flush: reads come from the tail buffer and the files. */
    check_sequential(log, 0, 600);
    assert_int_equal(jn_plog_flush(log), 0);
    check_sequential(log, 0, 600);
    check_sequential(log, 301, 299);

    /* max_bytes: the first batch whole even if larger, then whole batches. */
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    int rc = jn_plog_read(log, 301, 1, &b);
    assert_true(rc > 0);
    jn_batch_info_t bi;
    assert_int_equal(jn_batch_parse(b.data, b.len, b.len, &bi), rc);
    assert_int_equal(bi.base_offset, 300);
    jn_buf_reset(&b);
    int one = rc;
    rc = jn_plog_read(log, 0, (size_t)one * 2 + 10, &b);
    assert_int_equal(rc, 2 * one); /* batches all have the same size here */
    assert_int_equal(b.len, (size_t)rc);
    jn_buf_reset(&b);
    assert_int_equal(jn_plog_read(log, 600, 1000, &b), 0);
    assert_int_equal(jn_plog_read(log, 601, 1000, &b), JN_ERANGE);
    assert_int_equal(jn_plog_read(log, -1, 1000, &b), JN_ERANGE);
    jn_buf_free(&b);

    /* Reopen: same content, appends continue. */
    uint64_t size = jn_plog_size_bytes(log);
    int64_t segs = jn_plog_segment_count(log);
    jn_plog_close(log);
    log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 600);
    assert_int_equal(jn_plog_size_bytes(log), size);
    assert_int_equal(jn_plog_segment_count(log), segs);
    check_sequential(log, 0, 600);
    append_n(log, 10, 3, 0);
    assert_int_equal(jn_plog_end_offset(log), 630);
    check_sequential(log, 550, 80);
    jn_plog_close(log);
}

static void test_append_invalid(void **state)
{
    fixture_t *f = *state;
    f->cfg.max_batch_bytes = 4096;
    jn_plog_t *log = open_log(f);
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    build(&b, 2, 0, 0, 0, 1, false);
    uint8_t bad[256];
    memcpy(bad, b.data, b.len);
    bad[16] = 1; /* magic */
    assert_int_equal(jn_plog_append(log, bad, b.len), JN_EPROTO);
    assert_int_equal(jn_plog_append(log, b.data, b.len - 1), JN_EPROTO);
    assert_int_equal(jn_plog_append(log, b.data, 10), JN_EPROTO);
    jn_buf_reset(&b);
    jn_batch_builder_t bb;
    assert_int_equal(jn_batch_builder_begin(&bb, &b), 0);
    uint8_t big[5000];
    memset(big, 'x', sizeof big);
    jn_record_t r = {.key_len = -1, .value = big, .value_len = sizeof big};
    assert_int_equal(jn_batch_builder_add(&bb, &r), 0);
    assert_true(jn_batch_builder_finish(&bb) > 0);
    assert_int_equal(jn_plog_append(log, b.data, b.len), JN_ETOOBIG);
    assert_int_equal(jn_plog_end_offset(log), 0);
    /* The caller's bytes are not modified: baseOffset stays 0. */
    build(&b, 1, 0, 0, 0, 1, false);
    assert_int_equal(jn_plog_append(log, b.data, b.len), 0);
    assert_int_equal(jn_plog_append(log, b.data, b.len), 1);
    assert_int_equal(jn_load_be64(b.data), 0);
    jn_buf_free(&b);
    jn_plog_destroy(log);
    assert_int_equal(file_size(f->dir), -1);
}

static void test_large_batches_bypass_tail(void **state)
{
    fixture_t *f = *state;
    f->cfg.max_batch_bytes = 4 << 20;
    f->cfg.segment_bytes = 3 << 20;
    jn_plog_t *log = open_log(f);
    jn_buf_t b;
    jn_buf_init(&b, 8 << 20);
    static uint8_t big[(1 << 20) + 100];
    memset(big, 'y', sizeof big);
    for (int i = 0; i < 4; i++) {
        append_n(log, 3, 2, 0);
        jn_buf_reset(&b);
        jn_batch_builder_t bb;
        assert_int_equal(jn_batch_builder_begin(&bb, &b), 0);
        jn_record_t r = {.key_len = -1, .value = big, .value_len = sizeof big, .timestamp = 5};
        assert_int_equal(jn_batch_builder_add(&bb, &r), 0);
        assert_true(jn_batch_builder_finish(&bb) > 0);
        int64_t off = jn_plog_end_offset(log);
        assert_int_equal(jn_plog_append(log, b.data, b.len), off);
    }
    assert_int_equal(jn_plog_end_offset(log), 28);
    jn_plog_close(log);
    log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 28);
    jn_buf_reset(&b);
    assert_true(jn_plog_read(log, 6, 1, &b) > (1 << 20));
    jn_batch_iter_t it;
    jn_record_t r;
    assert_int_equal(jn_batch_iter_init(&it, b.data, b.len, true), 0);
    assert_int_equal(jn_batch_iter_next(&it, &r), 1);
    assert_int_equal(r.offset, 6);
    assert_int_equal(r.value_len, sizeof big);
    jn_buf_free(&b);
    jn_plog_close(log);
}

/* Appends 20 batches of 2 records in one segment and closes; returns the
 * size of the .log and of one batch. */
static void make_closed_log(fixture_t *f, off_t *size, off_t *batch)
{
    jn_plog_t *log = open_log(f);
    append_n(log, 20, 2, 0);
    jn_plog_close(log);
    char p[256];
    seg_path(f, 0, ".log", p, sizeof p);
    *size = file_size(p);
    *batch = *size / 20;
    assert_int_equal(*batch * 20, *size);
}

static void test_torn_tail(void **state)
{
    fixture_t *f = *state;
    off_t size, batch;
    make_closed_log(f, &size, &batch);
    char p[256];
    seg_path(f, 0, ".log", p, sizeof p);
    assert_int_equal(truncate(p, size - batch / 2), 0);
    jn_plog_t *log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 38);
    assert_int_equal(file_size(p), size - batch);
    check_sequential(log, 0, 38);
    append_n(log, 1, 2, 0);
    assert_int_equal(jn_plog_end_offset(log), 40);
    check_sequential(log, 0, 40);
    jn_plog_close(log);

    /* A tail shorter than a header. */
    assert_int_equal(truncate(p, size + 7), 0);
    log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 40);
    assert_int_equal(file_size(p), size);
    jn_plog_close(log);
}

static void test_garbage_tail(void **state)
{
    fixture_t *f = *state;
    off_t size, batch;
    make_closed_log(f, &size, &batch);
    char p[256];
    seg_path(f, 0, ".log", p, sizeof p);
    int fd = open(p, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    memset(junk, 0, sizeof junk);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    jn_plog_t *log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 40);
    assert_int_equal(file_size(p), size);
    append_n(log, 1, 2, 0);
    check_sequential(log, 0, 42);
    jn_plog_close(log);

    /* Zero fill alone (a crash after the size grew, before the data). */
    assert_int_equal(truncate(p, file_size(p) + 4096), 0);
    log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 42);
    check_sequential(log, 0, 42);
    jn_plog_close(log);
}

static void test_bad_crc(void **state)
{
    fixture_t *f = *state;
    off_t size, batch;
    make_closed_log(f, &size, &batch);
    char p[256];
    seg_path(f, 0, ".log", p, sizeof p);
    /* Flip a byte of the CRC of batch 15: batches 15..19 go. */
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    uint8_t c;
    off_t at = batch * 15 + 18;
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x40;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);
    jn_plog_t *log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 30);
    assert_int_equal(file_size(p), batch * 15);
    check_sequential(log, 0, 30);
    append_n(log, 2, 2, 0);
    assert_int_equal(jn_plog_end_offset(log), 34);
    check_sequential(log, 0, 34);
    jn_plog_close(log);

    /* A batch whose base offset is not the next offset ends the valid region. */
    fd = open(p, O_RDWR);
    uint8_t off8[8];
    jn_store_be64(off8, 99);
    assert_int_equal(pwrite(fd, off8, 8, batch * 16), 8);
    close(fd);
    log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 32);
    jn_plog_close(log);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *d = malloc((size_t)n + 1);
    *len = fread(d, 1, (size_t)n, fp);
    fclose(fp);
    return d;
}

/* fsync always: the active segment's file is zero-filled a chunk ahead of
 * the batches (fdatasync then writes no metadata); closing and rolling cut
 * the zeros; zeros left by a crash, in the active segment or in a sealed
 * one whose cut had not reached the disk, are dropped at open. */
static void test_preallocation(void **state)
{
    fixture_t *f = *state;
    f->cfg.fsync = JN_FSYNC_ALWAYS;
    jn_plog_t *log = open_log(f);
    append_n(log, 20, 2, 0);
    assert_int_equal(jn_plog_flush(log), 0);
    char p[256], p2[256];
    seg_path(f, 0, ".log", p, sizeof p);
    off_t len = file_size(p);
    uint64_t data = jn_plog_size_bytes(log);
    assert_true(len > (off_t)data);
    assert_int_equal(len % (1 << 20), 0);
    check_sequential(log, 0, 40);

    /* A crash now leaves the zeros: simulate it with a copy of the file. */
    size_t n;
    char *copy = slurp(p, &n);
    assert_int_equal(n, (size_t)len);
    jn_plog_close(log);
    assert_int_equal(file_size(p), (off_t)data); /* close cut them */
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(copy, 1, n, fp), n);
    fclose(fp);
    free(copy);
    log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 40);
    assert_int_equal(file_size(p), (off_t)data);
    check_sequential(log, 0, 40);

    /* A roll cuts the sealed segment; zeros found after it at open (the
     * cut was lost) are cut again, whatever the indexes say. */
    assert_int_equal(jn_plog_roll(log), 0);
    append_n(log, 5, 2, 0);
    assert_int_equal(jn_plog_flush(log), 0);
    assert_int_equal(file_size(p), (off_t)data);
    seg_path(f, 40, ".log", p2, sizeof p2);
    assert_true(file_size(p2) >= (1 << 20));
    jn_plog_close(log);
    assert_int_equal(truncate(p, (off_t)data + (1 << 20)), 0);
    log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 50);
    assert_int_equal(file_size(p), (off_t)data);
    check_sequential(log, 0, 50);
    append_n(log, 1, 2, 0);
    check_sequential(log, 0, 52);
    jn_plog_close(log);
}

/* A sealed segment damaged in its middle: at open the batches before the
 * damage stay, the rest goes to <base>.log.damaged, the partition opens and
 * reads go on at the next segment; the active segment is untouched. */
static void test_damaged_sealed_segment(void **state)
{
    fixture_t *f = *state;
    jn_plog_t *log = open_log(f);
    append_n(log, 10, 2, 0); /* segment 0: offsets 0..19 */
    assert_int_equal(jn_plog_roll(log), 0);
    append_n(log, 10, 2, 0); /* segment 20: offsets 20..39 */
    assert_int_equal(jn_plog_roll(log), 0);
    append_n(log, 5, 2, 0);  /* active segment 40 */
    jn_plog_close(log);

    char p[256], idx[256], side[256];
    seg_path(f, 20, ".log", p, sizeof p);
    seg_path(f, 20, ".index", idx, sizeof idx);
    seg_path(f, 20, ".log.damaged", side, sizeof side);
    off_t size = file_size(p), batch = size / 10;
    assert_int_equal(batch * 10, size);
    /* Garbage over the header of the 7th batch (offsets 32, 33), indexes gone. */
    FILE *fp = fopen(p, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, batch * 6, SEEK_SET), 0);
    for (int i = 0; i < 20; i++)
        fputc(0xA5, fp);
    fclose(fp);
    unlink(idx);

    log = open_log(f);
    assert_int_equal(jn_plog_start_offset(log), 0);
    assert_int_equal(jn_plog_end_offset(log), 50);
    assert_int_equal(file_size(p), batch * 6);
    assert_int_equal(file_size(side), size - batch * 6);
    rec_t *recs = calloc(64, sizeof *recs);
    size_t n = collect(log, 0, 4096, recs, 64);
    /* 0..31 then 40..49: offsets 32..39 are in the side file. */
    assert_int_equal(n, 42);
    for (size_t i = 0; i < n; i++) {
        int64_t want = i < 32 ? (int64_t)i : (int64_t)i + 8;
        assert_int_equal(recs[i].offset, want);
    }
    free(recs);
    append_n(log, 1, 2, 0);
    assert_int_equal(jn_plog_end_offset(log), 52);
    jn_plog_close(log);

    /* Reopened: a clean segment now, the side file left alone. */
    log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 52);
    assert_int_equal(file_size(side), size - batch * 6);
    jn_plog_close(log);
}

static void test_index_rebuild(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_bytes = 4000;
    f->cfg.index_interval_bytes = 150;
    jn_plog_t *log = open_log(f);
    append_n(log, 120, 2, 0);
    jn_plog_close(log);
    /* Segment bases, from the directory. */
    int64_t bases[64];
    size_t nb = 0;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l == 24 && !strcmp(e->d_name + 20, ".log"))
            bases[nb++] = strtoll(e->d_name, NULL, 10);
    }
    closedir(d);
    assert_true(nb >= 3);
    int64_t b0 = bases[0] < bases[1] ? bases[0] : bases[1];
    int64_t b1 = bases[0] < bases[1] ? bases[1] : bases[0];
    for (size_t i = 2; i < nb; i++) {
        if (bases[i] < b0) {
            b1 = b0;
            b0 = bases[i];
        } else if (bases[i] < b1) {
            b1 = bases[i];
        }
    }
    char i0[256], i1[256], t1[256];
    seg_path(f, b0, ".index", i0, sizeof i0);
    seg_path(f, b1, ".index", i1, sizeof i1);
    seg_path(f, b1, ".timeindex", t1, sizeof t1);
    size_t l0, l1, lt;
    char *orig0 = slurp(i0, &l0), *orig1 = slurp(i1, &l1), *origt = slurp(t1, &lt);
    assert_true(l0 > 0 && l0 % 8 == 0);
    assert_true(lt > 0 && lt % 12 == 0);

    /* Missing index; an index of the wrong size; a decreasing time index. */
    assert_int_equal(unlink(i0), 0);
    FILE *fp = fopen(i1, "ab");
    fputs("xyz", fp);
    fclose(fp);
    fp = fopen(t1, "ab");
    uint8_t zero[12] = {0};
    fwrite(zero, 1, sizeof zero, fp);
    fclose(fp);
    log = open_log(f);
    check_sequential(log, 0, 240);
    for (int64_t o = 0; o < 240; o += 7)
        check_sequential(log, o, 240 - o);
    jn_plog_close(log);
    size_t n0, n1, nt;
    char *new0 = slurp(i0, &n0), *new1 = slurp(i1, &n1), *newt = slurp(t1, &nt);
    assert_int_equal(n0, l0);
    assert_memory_equal(new0, orig0, l0);
    assert_int_equal(n1, l1);
    assert_memory_equal(new1, orig1, l1);
    assert_int_equal(nt, lt);
    assert_memory_equal(newt, origt, lt);
    free(new0), free(new1), free(newt);

    /* An index whose entries point into the middle of batches. */
    fp = fopen(i0, "r+b");
    uint8_t ent[8];
    jn_store_be32(ent, 5);
    jn_store_be32(ent + 4, 77);
    fwrite(ent, 1, 8, fp);
    fclose(fp);
    log = open_log(f);
    check_sequential(log, 0, 240);
    for (int64_t o = 0; o < 240; o += 5)
        check_sequential(log, o, 240 - o);
    jn_plog_close(log);
    new0 = slurp(i0, &n0);
    assert_int_equal(n0, l0);
    assert_memory_equal(new0, orig0, l0);
    free(new0);
    free(orig0), free(orig1), free(origt);
}

static void test_offset_for_time(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_bytes = 2000;
    f->cfg.index_interval_bytes = 100;
    jn_plog_t *log = open_log(f);
    /* Records at offset o have timestamp 10000 + 10 * o. */
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    for (int i = 0; i < 100; i++) {
        int64_t off = jn_plog_end_offset(log);
        jn_buf_reset(&b);
        jn_batch_builder_t bb;
        assert_int_equal(jn_batch_builder_begin(&bb, &b), 0);
        for (int k = 0; k < 3; k++) {
            jn_record_t r = {.key_len = -1, .value = (const uint8_t *)"x", .value_len = 1,
                             .timestamp = 10000 + 10 * (off + k)};
            assert_int_equal(jn_batch_builder_add(&bb, &r), 0);
        }
        assert_true(jn_batch_builder_finish(&bb) > 0);
        assert_int_equal(jn_plog_append(log, b.data, b.len), off);
    }
    jn_buf_free(&b);
    assert_true(jn_plog_segment_count(log) > 3);
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(jn_plog_offset_for_time(log, 0), 0);
        assert_int_equal(jn_plog_offset_for_time(log, 10000), 0);
        assert_int_equal(jn_plog_offset_for_time(log, 10001), 1);
        assert_int_equal(jn_plog_offset_for_time(log, 10000 + 10 * 157), 157);
        assert_int_equal(jn_plog_offset_for_time(log, 10000 + 10 * 157 - 3), 157);
        assert_int_equal(jn_plog_offset_for_time(log, 10000 + 10 * 299), 299);
        assert_int_equal(jn_plog_offset_for_time(log, 10000 + 10 * 299 + 1), 300);
        for (int64_t o = 0; o < 300; o += 13)
            assert_int_equal(jn_plog_offset_for_time(log, 10000 + 10 * o - 5), o);
        jn_plog_close(log);
        log = open_log(f);
    }
    jn_plog_close(log);
}

static void test_retention_bytes(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_bytes = 1000;
    jn_plog_t *log = open_log(f);
    append_n(log, 100, 2, 0);
    int64_t segs = jn_plog_segment_count(log);
    uint64_t total = jn_plog_size_bytes(log);
    assert_true(segs > 5);
    assert_int_equal(jn_plog_maintain(log), 0);
    f->cfg.retention_bytes = 3000;
    jn_plog_set_config(log, &f->cfg);
    int removed = jn_plog_maintain(log);
    assert_true(removed > 0);
    assert_int_equal(jn_plog_segment_count(log), segs - removed);
    assert_true(jn_plog_size_bytes(log) <= 3000);
    assert_true(jn_plog_size_bytes(log) < total);
    int64_t start = jn_plog_start_offset(log);
    assert_true(start > 0);
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    assert_int_equal(jn_plog_read(log, start - 1, 100, &b), JN_ERANGE);
    jn_buf_free(&b);
    check_sequential(log, start, 200 - start);
    assert_int_equal(jn_plog_maintain(log), 0);
    jn_plog_close(log);
    log = open_log(f);
    assert_int_equal(jn_plog_start_offset(log), start);
    check_sequential(log, start, 200 - start);
    /* The active segment is never deleted. */
    f->cfg.retention_bytes = 0;
    jn_plog_set_config(log, &f->cfg);
    assert_true(jn_plog_maintain(log) > 0);
    assert_int_equal(jn_plog_segment_count(log), 1);
    assert_int_equal(jn_plog_end_offset(log), 200);
    jn_plog_close(log);
}

static void test_retention_time(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_bytes = 1000;
    f->cfg.retention_ms = 60000;
    jn_plog_t *log = open_log(f);
    append_n(log, 40, 2, 100000); /* timestamps 100000.. */
    int64_t mid = jn_plog_end_offset(log);
    jn_plog_roll(log);
    append_n(log, 40, 2, 500000); /* timestamps 500000.. */
    int64_t segs = jn_plog_segment_count(log);
    f->fc.now = 150000;
    assert_int_equal(jn_plog_maintain(log), 0);
    f->fc.now = 100000 + mid + 60001; /* every record below mid expired */
    int removed = jn_plog_maintain(log);
    assert_true(removed > 0);
    assert_int_equal(jn_plog_start_offset(log), mid);
    assert_int_equal(jn_plog_segment_count(log), segs - removed);
    check_sequential(log, mid, 160 - mid);
    f->fc.now = 10000000;
    assert_true(jn_plog_maintain(log) > 0);
    assert_int_equal(jn_plog_segment_count(log), 1);
    assert_int_equal(jn_plog_end_offset(log), 160);
    jn_plog_close(log);
}

static void test_roll_by_age(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_ms = 1000;
    jn_plog_t *log = open_log(f);
    append_n(log, 2, 1, 0);
    f->fc.now += 999;
    append_n(log, 1, 1, 0);
    assert_int_equal(jn_plog_segment_count(log), 1);
    f->fc.now += 1;
    append_n(log, 1, 1, 0);
    assert_int_equal(jn_plog_segment_count(log), 2);
    f->fc.now += 5000;
    assert_int_equal(jn_plog_maintain(log), 0);
    assert_int_equal(jn_plog_segment_count(log), 3);
    assert_int_equal(jn_plog_maintain(log), 0); /* an empty segment never rolls */
    assert_int_equal(jn_plog_segment_count(log), 3);
    check_sequential(log, 0, 4);
    jn_plog_close(log);
}

/* Appends one batch: keys k<first..first+n-1>, values v<offset>. */
static int64_t put_keys(jn_plog_t *log, int first, int n, int64_t ts, bool tomb)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    int64_t off = jn_plog_end_offset(log);
    build(&b, n, off, first, n, ts, tomb);
    int64_t r = jn_plog_append(log, b.data, b.len);
    jn_buf_free(&b);
    return r;
}

/* Files in the log's directory whose name ends with |suffix|. */
static int count_files(const fixture_t *f, const char *suffix)
{
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    int n = 0;
    size_t sl = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l >= sl && strcmp(e->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* One maintenance call, then the loop until its fsync jobs (if any) are
 * done and the rewritten segment is installed. */
static int maintain_run(fixture_t *f, jn_plog_t *log)
{
    int r = jn_plog_maintain(log);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(count_files(f, ".cleaned"), 0);
    return r;
}

/* Calls maintenance (without running the loop) until it starts a segment
 * rewrite, whose fdatasync is then in flight on the thread pool. */
static void maintain_until_rewrite(jn_plog_t *log)
{
    for (int i = 0; i < 100; i++) {
        int r = jn_plog_maintain(log);
        assert_true(r >= 0 && r <= 1);
        if (r == 1)
            return;
    }
    fail_msg("no segment rewrite started");
}

static void test_compaction(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_bytes = 600;
    f->cfg.compact = true;
    f->cfg.delete_retention_ms = 10000;
    f->fc.now = 1000000;
    jn_plog_t *log = open_log(f);
    /* 20 rounds writing k0..k9; keyless records in between. */
    for (int round = 0; round < 20; round++) {
        assert_true(put_keys(log, 0, 10, 990000 + round, false) >= 0);
        append_n(log, 1, 1, 0);
    }
    /* Tombstones: k3 old (expires), k4 recent (stays). */
    int64_t t3 = put_keys(log, 3, 1, 900000, true);
    int64_t t4 = put_keys(log, 4, 1, 999999, true);
    assert_true(t3 > 0 && t4 == t3 + 1);
    assert_int_equal(jn_plog_roll(log), 0);
    /* The latest k5 lives in the active segment. */
    int64_t k5 = put_keys(log, 5, 1, 999999, false);
    int64_t end = jn_plog_end_offset(log);
    assert_int_equal(end, 20 * 11 + 3);

    int64_t removed = jn_plog_compact(log);
    /* 19 old rounds of 10 keys, plus k3/k4/k5 of the last round, plus the
     * old k3 tombstone. */
    assert_int_equal(removed, 19 * 10 + 3 + 1);
    assert_int_equal(jn_plog_end_offset(log), end);
    assert_int_equal(jn_plog_start_offset(log), 0);

    for (int pass = 0; pass < 2; pass++) {
        rec_t recs[300];
        size_t n = collect(log, 0, 100, recs, 300);
        assert_int_equal(n, 20 + 7 + 1 + 1); /* keyless, k0-9 minus 3,4,5, k4 tomb, k5 */
        int64_t prev = -1;
        int keyed = 0;
        for (size_t i = 0; i < n; i++) {
            assert_true(recs[i].offset > prev);
            prev = recs[i].offset;
            if (recs[i].tomb) {
                assert_string_equal(recs[i].key, "k4");
                assert_int_equal(recs[i].offset, t4);
                continue;
            }
            /* Offsets are preserved: the value names the original offset. */
            char want[32];
            snprintf(want, sizeof want, "v%06" PRId64, recs[i].offset);
            assert_string_equal(recs[i].val, want);
            if (recs[i].key[0]) {
                keyed++;
                assert_string_not_equal(recs[i].key, "k3");
                if (!strcmp(recs[i].key, "k5"))
                    assert_int_equal(recs[i].offset, k5);
                else
                    assert_true(recs[i].offset >= 19 * 11); /* the last round */
            }
        }
        assert_int_equal(keyed, 8);
        /* Reads from inside a removed range land on the next survivor. */
        rec_t one[300];
        size_t m = collect(log, 5, 100, one, 300);
        assert_true(m > 0);
        assert_true(one[0].offset >= 5);
        jn_plog_close(log);
        log = open_log(f);
    }
    /* A second pass finds nothing more. */
    assert_int_equal(jn_plog_compact(log), 0);
    /* Later the k4 tombstone expires too (by maintain). */
    put_keys(log, 7, 1, 1000000, false);
    assert_int_equal(jn_plog_roll(log), 0);
    f->fc.now = 1000000 + 20000;
    /* Maintenance compacts in bounded steps (keys mapped, then one segment
     * rewritten per call): one call per segment, plus the mapping and the
     * end of the pass, finish it. */
    int64_t steps = jn_plog_segment_count(log) + 2, rewritten = 0;
    for (int64_t i = 0; i < steps; i++) {
        int r = maintain_run(f, log);
        assert_true(r >= 0 && r <= 1); /* bounded: at most one segment per call */
        rewritten += r;
    }
    assert_true(rewritten > 0);
    rec_t recs[300];
    size_t n = collect(log, 0, 1 << 20, recs, 300);
    for (size_t i = 0; i < n; i++)
        assert_false(recs[i].tomb);
    /* Installed segments got their new indexes once the rename was durable. */
    assert_int_equal(count_files(f, ".index"), jn_plog_segment_count(log));
    assert_int_equal(count_files(f, ".timeindex"), jn_plog_segment_count(log));
    jn_plog_close(log);
    log = open_log(f);
    rec_t again[300];
    assert_int_equal(collect(log, 0, 1 << 20, again, 300), n);
    assert_memory_equal(again, recs, n * sizeof *recs);
    jn_plog_close(log);
}

/* Maintenance compacts in bounded steps while the log keeps changing:
 * at most one segment rewritten per call; keys that arrive between steps
 * (and so are not in the pass's key map) are never dropped; the result
 * keeps the latest value of every key. */
static void test_compaction_steps(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_bytes = 600;
    f->cfg.compact = true;
    f->fc.now = 1000000;
    jn_plog_t *log = open_log(f);
    for (int round = 0; round < 20; round++)
        assert_true(put_keys(log, 0, 10, 990000 + round, false) >= 0);
    assert_int_equal(jn_plog_roll(log), 0);
    int64_t segs = jn_plog_segment_count(log);
    assert_true(segs > 4);
    /* First step: the keys of every segment are mapped (small log), nothing
     * is rewritten yet. */
    assert_int_equal(jn_plog_maintain(log), 0);
    /* Meanwhile: new keys, and a newer k0, sealed into segments of their
     * own (after the pass started: not cleaned by it). */
    int64_t k0 = put_keys(log, 0, 1, 995000, false);
    int64_t k20 = put_keys(log, 20, 5, 995000, false);
    assert_int_equal(jn_plog_roll(log), 0);
    /* A rewrite's fdatasync runs on the thread pool: until the loop
     * installs the result, reads see the old file, and no other step
     * starts. */
    rec_t before[400], during[400];
    size_t nb = collect(log, 0, 1 << 20, before, 400);
    maintain_until_rewrite(log);
    assert_int_equal(count_files(f, ".cleaned"), 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(jn_plog_maintain(log), 0);
    assert_int_equal(count_files(f, ".cleaned"), 1);
    assert_int_equal(collect(log, 0, 1 << 20, during, 400), nb);
    assert_memory_equal(during, before, nb * sizeof *before);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(count_files(f, ".cleaned"), 0);
    assert_true(collect(log, 0, 1 << 20, during, 400) < nb);
    int rewritten = 1, calls = 1;
    for (int64_t i = 0; i < segs + 2; i++, calls++) {
        int r = maintain_run(f, log);
        assert_true(r >= 0 && r <= 1);
        rewritten += r;
    }
    assert_true(rewritten > 1); /* spread over several calls */
    assert_true(rewritten < calls);
    /* Every key is still there with its latest value. */
    rec_t recs[400];
    size_t n = collect(log, 0, 1 << 20, recs, 400);
    bool seen[25] = {false};
    for (size_t i = 0; i < n; i++) {
        int k = (int)strtol(recs[i].key + 1, NULL, 10);
        assert_true(k >= 0 && k < 25);
        seen[k] = true;
    }
    for (int k = 0; k < 10; k++)
        assert_true(seen[k]);
    for (int k = 20; k < 25; k++)
        assert_true(seen[k]);
    char want[32];
    snprintf(want, sizeof want, "v%06" PRId64, k0);
    bool latest_k0 = false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(recs[i].key, "k0") == 0 && strcmp(recs[i].val, want) == 0)
            latest_k0 = true;
    assert_true(latest_k0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(recs[i].key, "k20") == 0)
            assert_int_equal(recs[i].offset, k20);
    /* Fewer records than written: the old rounds are gone. */
    assert_true(n < 20 * 10);
    /* A full pass afterwards removes what the stepwise pass kept
     * conservatively, and nothing of the latest values. */
    assert_true(jn_plog_compact(log) >= 0);
    jn_plog_close(log);
    log = open_log(f);
    n = collect(log, 0, 1 << 20, recs, 400);
    assert_true(n >= 15);
    jn_plog_close(log);
}

/* A log of 20 rounds of k0..k9, sealed, ready for compaction. */
static jn_plog_t *open_compactable(fixture_t *f)
{
    f->cfg.segment_bytes = 600;
    f->cfg.compact = true;
    f->fc.now = 1000000;
    jn_plog_t *log = open_log(f);
    for (int round = 0; round < 20; round++)
        assert_true(put_keys(log, 0, 10, 990000 + round, false) >= 0);
    assert_int_equal(jn_plog_roll(log), 0);
    return log;
}

/* The log is closed while a rewrite's fdatasync is in flight: the job
 * finishes alone, the cleaned file is a leftover that the next open
 * deletes, and nothing stored is lost. */
static void test_compaction_close_in_flight(void **state)
{
    fixture_t *f = *state;
    jn_plog_t *log = open_compactable(f);
    rec_t before[300], after[300];
    size_t nb = collect(log, 0, 1 << 20, before, 300);
    assert_int_equal(nb, 200);
    maintain_until_rewrite(log);
    assert_int_equal(count_files(f, ".cleaned"), 1);
    jn_plog_close(log);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the job completes after the close */
    assert_int_equal(count_files(f, ".cleaned"), 1);
    log = open_log(f);
    assert_int_equal(count_files(f, ".cleaned"), 0);
    assert_int_equal(collect(log, 0, 1 << 20, after, 300), nb);
    assert_memory_equal(after, before, nb * sizeof *before);

    /* Closed once the rename is done but (maybe) not the directory fsync:
     * the compacted segment stays, its indexes are rebuilt at open. */
    maintain_until_rewrite(log);
    for (int i = 0; i < 1000 && count_files(f, ".cleaned") > 0; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(count_files(f, ".cleaned"), 0);
    size_t nc = collect(log, 0, 1 << 20, before, 300);
    assert_true(nc < nb);
    jn_plog_close(log);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    log = open_log(f);
    assert_int_equal(collect(log, 0, 1 << 20, after, 300), nc);
    assert_memory_equal(after, before, nc * sizeof *before);
    /* Maintenance goes on from there. */
    for (int i = 0; i < 30; i++)
        assert_true(maintain_run(f, log) >= 0);
    size_t nd = collect(log, 0, 1 << 20, after, 300);
    assert_true(nd < nc);
    jn_plog_close(log);
}

/* Retention deletes the segment being rewritten while its fdatasync is in
 * flight: the cleaned file is discarded, the segment stays deleted. */
/* Appends one batch of idempotent producer |pid| (epoch 0, base sequence
 * |seq|): one record, key k0, timestamp |ts|. */
static int64_t put_producer(jn_plog_t *log, int64_t pid, int32_t seq, int64_t ts)
{
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    jn_batch_builder_t bb;
    assert_int_equal(jn_batch_builder_begin(&bb, &b), 0);
    bb.producer_id = pid;
    bb.producer_epoch = 0;
    bb.base_sequence = seq;
    jn_record_t r = {0};
    r.key = (const uint8_t *)"k0";
    r.key_len = 2;
    r.value = (const uint8_t *)"p";
    r.value_len = 1;
    r.timestamp = ts;
    assert_int_equal(jn_batch_builder_add(&bb, &r), 0);
    assert_true(jn_batch_builder_finish(&bb) > 0);
    int64_t off = jn_plog_append(log, b.data, b.len);
    jn_buf_free(&b);
    return off;
}

typedef struct pbatches {
    int64_t pid[64], base[64];
    int32_t seq[64];
    int n;
} pbatches_t;

static int note_producer_batch(const jn_batch_info_t *bi, void *arg)
{
    pbatches_t *pb = arg;
    if (bi->producer_id >= 0 && pb->n < 64) {
        pb->pid[pb->n] = bi->producer_id;
        pb->base[pb->n] = bi->base_offset;
        pb->seq[pb->n++] = bi->base_sequence;
    }
    return 0;
}

/* Compaction keeps the last batch of each idempotent producer whole, even
 * when a newer record shadows all of it (Kafka's cleaner does the same:
 * the producer's sequence state is rebuilt from those headers), unless the
 * producer has been idle for longer than a day. */
static void test_compaction_keeps_producer_state(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_bytes = 400;
    f->cfg.compact = true;
    int64_t day = 24 * 3600 * 1000LL;
    f->fc.now = 10 * day;
    jn_plog_t *log = open_log(f);
    int64_t old_last = put_producer(log, 9, 0, 8 * day); /* idle for two days */
    int64_t p7[3];
    for (int i = 0; i < 3; i++) {
        p7[i] = put_producer(log, 7, i, 10 * day - 1000 + i);
        int64_t p8 = put_producer(log, 8, i, 10 * day - 500 + i);
        assert_true(p8 > p7[i]);
    }
    assert_true(put_keys(log, 0, 1, 10 * day, false) > 0); /* the newest k0: no producer */
    assert_int_equal(jn_plog_roll(log), 0);
    assert_true(jn_plog_segment_count(log) > 2);
    assert_true(jn_plog_compact(log) > 0);
    for (int pass = 0; pass < 2; pass++) {
        pbatches_t pb = {0};
        assert_int_equal(jn_plog_scan_headers(log, 0, note_producer_batch, &pb), 0);
        assert_int_equal(pb.n, 2);
        assert_int_equal(pb.pid[0], 7);
        assert_int_equal(pb.base[0], p7[2]);
        assert_int_equal(pb.seq[0], 2);
        assert_int_equal(pb.pid[1], 8);
        assert_int_equal(pb.seq[1], 2);
        for (int i = 0; i < pb.n; i++)
            assert_true(pb.base[i] != old_last);
        jn_plog_close(log);
        log = open_log(f);
    }
    jn_plog_close(log);
}

static void test_compaction_retention_in_flight(void **state)
{
    fixture_t *f = *state;
    jn_plog_t *log = open_compactable(f);
    maintain_until_rewrite(log);
    char p[256];
    seg_path(f, 0, ".log.cleaned", p, sizeof p);
    assert_true(file_size(p) >= 0); /* the oldest segment is rewritten first */
    assert_true(jn_plog_delete_before(log, 100) > 0);
    int64_t start = jn_plog_start_offset(log);
    assert_true(start > 0);
    rec_t before[300], after[300];
    size_t nb = collect(log, start, 1 << 20, before, 300);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(file_size(p), -1);
    seg_path(f, 0, ".log", p, sizeof p);
    assert_int_equal(file_size(p), -1); /* not brought back by a rename */
    assert_int_equal(jn_plog_start_offset(log), start);
    assert_int_equal(collect(log, start, 1 << 20, after, 300), nb);
    assert_memory_equal(after, before, nb * sizeof *before);
    /* The pass goes on with the segments that are left. */
    int rewritten = 0;
    for (int i = 0; i < 30; i++)
        rewritten += maintain_run(f, log);
    assert_true(rewritten > 0);
    jn_plog_close(log);
    log = open_log(f);
    assert_int_equal(jn_plog_start_offset(log), start);
    assert_true(collect(log, start, 1 << 20, after, 300) < nb);
    jn_plog_close(log);
}

/* Retention deletes a bounded number of segments per call. */
static void test_retention_bounded(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_bytes = 100; /* one small batch per segment */
    jn_plog_t *log = open_log(f);
    append_n(log, 200, 1, 0);
    int64_t segs = jn_plog_segment_count(log);
    assert_true(segs > 130);
    f->cfg.retention_bytes = 0;
    jn_plog_set_config(log, &f->cfg);
    int first = jn_plog_maintain(log);
    assert_true(first > 0 && first < segs - 1);
    while (jn_plog_segment_count(log) > 1)
        assert_true(jn_plog_maintain(log) > 0);
    assert_int_equal(jn_plog_end_offset(log), 200);
    jn_plog_close(log);
}

typedef struct waiter {
    jn_durable_waiter_t w;
    int fired;
    int status;
} waiter_t;

static void on_durable(jn_durable_waiter_t *w, int status)
{
    waiter_t *t = jn_container_of(w, waiter_t, w);
    t->fired++;
    t->status = status;
}

static void test_group_commit(void **state)
{
    fixture_t *f = *state;
    f->cfg.fsync = JN_FSYNC_ALWAYS;
    f->cfg.segment_bytes = 300;
    jn_plog_t *log = open_log(f);
    assert_int_equal(jn_plog_durable_offset(log), 0);
    waiter_t w[6];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 6; i++) {
        append_n(log, 1, 2, 0);
        jn_plog_wait_durable(log, &w[i].w, 2 * i + 1, on_durable);
    }
    assert_true(jn_plog_segment_count(log) > 1); /* sealed segments are covered too */
    for (int i = 0; i < 6; i++)
        assert_int_equal(w[i].fired, 0);
    assert_int_equal(jn_plog_flush(log), 0);
    /* More appends and waiters while the first fsync is in flight. */
    waiter_t late = {0};
    append_n(log, 1, 2, 0);
    jn_plog_wait_durable(log, &late.w, 12, on_durable);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(w[i].fired, 1);
        assert_int_equal(w[i].status, 0);
    }
    assert_int_equal(late.fired, 1);
    assert_int_equal(late.status, 0);
    assert_int_equal(jn_plog_durable_offset(log), 14);
    /* Seven waiters, at most two sync jobs (group commit), none failed. */
    jn_plog_sync_stats_t st;
    jn_plog_get_sync_stats(log, &st);
    assert_true(st.syncs >= 1 && st.syncs <= 2);
    assert_int_equal(st.failures, 0);

    /* Already durable: fires at once. */
    waiter_t now = {0};
    jn_plog_wait_durable(log, &now.w, 3, on_durable);
    assert_int_equal(now.fired, 1);
    assert_int_equal(now.status, 0);

    /* Cancel: the waiter never fires; another one does. */
    waiter_t c = {0}, k = {0};
    append_n(log, 1, 2, 0);
    jn_plog_wait_durable(log, &c.w, 14, on_durable);
    jn_plog_wait_durable(log, &k.w, 15, on_durable);
    jn_plog_cancel_durable(&c.w);
    jn_plog_cancel_durable(&c.w); /* twice is harmless */
    assert_int_equal(jn_plog_flush(log), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(c.fired, 0);
    assert_int_equal(k.fired, 1);
    assert_int_equal(jn_plog_durable_offset(log), 16);

    /* A waiter for an offset not appended yet stays armed until it is. */
    waiter_t fut = {0};
    jn_plog_wait_durable(log, &fut.w, 16, on_durable);
    assert_int_equal(jn_plog_flush(log), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(fut.fired, 0);
    append_n(log, 1, 1, 0);
    assert_int_equal(jn_plog_flush(log), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(fut.fired, 1);

    /* Closing with a waiter pending and an fsync in flight. */
    waiter_t pend = {0};
    append_n(log, 1, 1, 0);
    jn_plog_wait_durable(log, &pend.w, 17, on_durable);
    assert_int_equal(jn_plog_flush(log), 0);
    jn_plog_close(log);
    assert_int_equal(pend.fired, 1);
    assert_int_equal(pend.status, JN_ECLOSED);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the job completes after the close */
    log = open_log(f);
    assert_int_equal(jn_plog_end_offset(log), 18);
    check_sequential(log, 0, 18);
    jn_plog_close(log);
}

static void test_policies(void **state)
{
    fixture_t *f = *state;
    /* NEVER: waiters fire at once. */
    jn_plog_t *log = open_log(f);
    append_n(log, 1, 1, 0);
    waiter_t w = {0};
    jn_plog_wait_durable(log, &w.w, 0, on_durable);
    assert_int_equal(w.fired, 1);
    assert_int_equal(w.status, 0);
    /* INTERVAL: the timer flushes and syncs. */
    f->cfg.fsync = JN_FSYNC_INTERVAL;
    f->cfg.fsync_interval_ms = 1;
    jn_plog_set_config(log, &f->cfg);
    assert_int_equal(jn_plog_config(log)->fsync, JN_FSYNC_INTERVAL);
    append_n(log, 2, 1, 0);
    for (int i = 0; i < 100000 && jn_plog_durable_offset(log) < 3; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(jn_plog_durable_offset(log), 3);
    jn_plog_close(log);
}

/* ALWAYS syncs what was written with no one waiting; under INTERVAL a
 * jn_plog_wait_synced waiter gets its fsync at the next flush, not at the
 * interval; under NEVER it fires at once. */
static void test_sync_on_demand(void **state)
{
    fixture_t *f = *state;
    f->cfg.fsync = JN_FSYNC_ALWAYS;
    jn_plog_t *log = open_log(f);
    append_n(log, 3, 1, 0);
    assert_int_equal(jn_plog_flush(log), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(jn_plog_durable_offset(log), 3);
    jn_plog_sync_stats_t st;
    jn_plog_get_sync_stats(log, &st);
    assert_int_equal(st.syncs, 1);

    f->cfg.fsync = JN_FSYNC_INTERVAL;
    f->cfg.fsync_interval_ms = 3600 * 1000;
    jn_plog_set_config(log, &f->cfg);
    append_n(log, 2, 1, 0);
    waiter_t d = {0}, s = {0};
    jn_plog_wait_durable(log, &d.w, 4, on_durable);
    assert_int_equal(d.fired, 1); /* the policy's promise: at once */
    jn_plog_wait_synced(log, &s.w, 4, on_durable);
    assert_int_equal(s.fired, 0);
    assert_int_equal(jn_plog_flush(log), 0);
    for (int i = 0; i < 100000 && !s.fired; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(s.fired, 1);
    assert_int_equal(s.status, 0);
    assert_int_equal(jn_plog_durable_offset(log), 5);
    /* Already synced: at once. */
    waiter_t again = {0};
    jn_plog_wait_synced(log, &again.w, 4, on_durable);
    assert_int_equal(again.fired, 1);

    f->cfg.fsync = JN_FSYNC_NEVER;
    jn_plog_set_config(log, &f->cfg);
    append_n(log, 1, 1, 0);
    waiter_t n = {0};
    jn_plog_wait_synced(log, &n.w, 5, on_durable);
    assert_int_equal(n.fired, 1);
    assert_int_equal(n.status, 0);
    jn_plog_close(log);
}

/* jn_plog_sync: durable when it returns, its waiters answered, no job. */
static void test_sync_here(void **state)
{
    fixture_t *f = *state;
    f->cfg.fsync = JN_FSYNC_INTERVAL;
    f->cfg.fsync_interval_ms = 3600 * 1000;
    jn_plog_t *log = open_log(f);
    append_n(log, 4, 1, 0);
    waiter_t w = {0};
    jn_plog_wait_synced(log, &w.w, 3, on_durable);
    assert_int_equal(jn_plog_sync(log), 0);
    assert_int_equal(jn_plog_durable_offset(log), 4);
    assert_int_equal(w.fired, 1);
    assert_int_equal(w.status, 0);
    assert_int_equal(jn_plog_flush(log), 0); /* nothing left to sync: no job */
    jn_plog_sync_stats_t st;
    jn_plog_get_sync_stats(log, &st);
    assert_int_equal(st.syncs, 0);
    jn_plog_close(log);
}

static void test_slices(void **state)
{
    fixture_t *f = *state;
    f->cfg.segment_bytes = 1000;
    jn_plog_t *log = open_log(f);
    append_n(log, 30, 2, 0);
    int64_t end = jn_plog_end_offset(log);

    /* In the tail: memory. */
    jn_plog_slice_t s;
    assert_int_equal(jn_plog_slice(log, end - 1, 1, &s), 0);
    assert_int_equal(s.fd, -1);
    assert_non_null(s.mem);
    jn_batch_info_t bi;
    assert_int_equal(jn_batch_parse(s.mem, s.len, s.len, &bi), (int)s.len);
    assert_int_equal(bi.base_offset, end - 2);
    jn_plog_segment_unref(s.seg);

    assert_int_equal(jn_plog_flush(log), 0);
    assert_int_equal(jn_plog_slice(log, 3, 1 << 20, &s), 0);
    assert_true(s.fd >= 0);
    assert_null(s.mem);
    uint8_t *data = malloc(s.len);
    assert_int_equal(pread(s.fd, data, s.len, (off_t)s.pos), (ssize_t)s.len);
    assert_true(jn_batch_parse(data, s.len, s.len, &bi) > 0);
    assert_int_equal(bi.base_offset, 2);
    /* Whole batches only, and the same bytes a read returns. */
    jn_buf_t b;
    jn_buf_init(&b, 1 << 20);
    size_t q = 0;
    while (q < s.len) {
        assert_true(jn_batch_parse(data + q, s.len - q, s.len, &bi) > 0);
        q += jn_batch_total_size(&bi);
    }
    assert_int_equal(q, s.len);
    assert_true(jn_plog_read(log, 3, 1, &b) > 0);
    assert_memory_equal(b.data, data, b.len);

    /* The segment is deleted by retention while sliced: the fd stays valid. */
    f->cfg.retention_bytes = 0;
    jn_plog_set_config(log, &f->cfg);
    assert_true(jn_plog_maintain(log) > 0);
    assert_true(jn_plog_start_offset(log) > 3);
    memset(data, 0, s.len);
    assert_int_equal(pread(s.fd, data, s.len, (off_t)s.pos), (ssize_t)s.len);
    assert_memory_equal(b.data, data, b.len);
    jn_plog_segment_unref(s.seg);
    assert_int_equal(jn_plog_slice(log, 0, 100, &s), JN_ERANGE);
    assert_int_equal(jn_plog_slice(log, end, 100, &s), 0);
    assert_int_equal(s.len, 0);
    assert_null(s.seg);
    free(data);
    jn_buf_free(&b);
    jn_plog_close(log);
}

static void test_cleaned_leftover(void **state)
{
    fixture_t *f = *state;
    jn_plog_t *log = open_log(f);
    append_n(log, 3, 1, 0);
    jn_plog_close(log);
    char p[256];
    seg_path(f, 0, ".log.cleaned", p, sizeof p);
    FILE *fp = fopen(p, "wb");
    fputs("partial", fp);
    fclose(fp);
    log = open_log(f);
    assert_int_equal(file_size(p), -1);
    check_sequential(log, 0, 3);
    jn_plog_close(log);
}

int main(void)
{
    jn_log_set_level(JN_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_batches_bypass_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_crc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offset_for_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roll_by_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_keeps_producer_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_close_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_retention_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_on_demand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_here, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cleaned_leftover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preallocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_sealed_segment, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
