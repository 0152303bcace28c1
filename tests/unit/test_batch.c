/* test_batch.c - unit tests of src/core/batch.c: RecordBatch v2 building,
 * parsing, CRC checks and strict record iteration; and of
 * src/core/compress.c through it: real compressed batches recorded once
 * from librdkafka (tests/unit/data/batch_<codec>.bin, produced with
 * python3-confluent-kafka against junction: keys k0..k7, values
 * "<codec> value <i> " + "abc" x 20, header h=<i>, timestamps
 * 1700000000000 + i), Xerial-framed snappy, bombs and broken streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lz4frame.h>
#include <snappy-c.h>
#include <stdio.h>
#include <zlib.h>
#include <zstd.h>

#include "common/crc32c.h"
#include "common/varint.h"
#include "core/batch.h"
#include "core/compress.h"

/* Recomputes the CRC after a test edits a batch on purpose. */
static void fix_crc(uint8_t *p, size_t len)
{
    jn_store_be32(p + 17, jn_crc32c(0, p + 21, len - 21));
}

/* Builds the three-record batch most tests use into |out|. */
static int build_sample(jn_buf_t *out)
{
    static const jn_header_t h0[] = {
        {(const uint8_t *)":subject", 8, (const uint8_t *)"orders/eu/new", 13},
        {(const uint8_t *)"trace", 5, (const uint8_t *)"abc", 3},
    };
    static const jn_header_t h2[] = {{(const uint8_t *)"empty", 5, NULL, -1}};
    const jn_record_t recs[] = {
        {(const uint8_t *)"key-1", 5, (const uint8_t *)"value one", 9, 1700000000000, 0, 2, h0},
        {NULL, -1, (const uint8_t *)"v2", 2, 1700000000500, 0, 0, NULL},
        {(const uint8_t *)"key-1", 5, NULL, -1, 1699999999000, 0, 1, h2}, /* earlier: negative delta */
    };
    jn_batch_builder_t b;
    int rc = jn_batch_builder_begin(&b, out);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < 3; i++)
        if ((rc = jn_batch_builder_add(&b, &recs[i])) < 0)
            return rc;
    return jn_batch_builder_finish(&b);
}

static void test_round_trip(void **state)
{
    (void)state;
    jn_buf_t out;
    jn_buf_init(&out, 1 << 20);
    int size = build_sample(&out);
    assert_true(size > JN_BATCH_HEADER_SIZE);
    assert_int_equal((size_t)size, out.len);

    jn_batch_info_t bi;
    assert_int_equal(jn_batch_parse(out.data, out.len, 1 << 20, &bi), size);
    assert_int_equal(bi.base_offset, 0);
    assert_int_equal(jn_batch_total_size(&bi), (size_t)size);
    assert_int_equal(bi.record_count, 3);
    assert_int_equal(bi.last_offset_delta, 2);
    assert_int_equal(bi.attributes, 0);
    assert_true(bi.base_timestamp == 1700000000000);
    assert_true(bi.max_timestamp == 1700000000500);
    assert_true(bi.producer_id == -1);
    assert_int_equal(bi.producer_epoch, -1);
    assert_int_equal(bi.base_sequence, -1);
    assert_int_equal(jn_batch_verify_crc(out.data, out.len), 0);

    /* The log assigns the base offset; the CRC does not cover it. */
    jn_batch_set_base_offset(out.data, 100);
    assert_int_equal(jn_batch_verify_crc(out.data, out.len), 0);

    jn_batch_iter_t it;
    jn_record_t r;
    assert_int_equal(jn_batch_iter_init(&it, out.data, out.len, true), 0);

    assert_int_equal(jn_batch_iter_next(&it, &r), 1);
    assert_int_equal(r.offset, 100);
    assert_true(r.timestamp == 1700000000000);
    assert_int_equal(r.key_len, 5);
    assert_memory_equal(r.key, "key-1", 5);
    assert_int_equal(r.value_len, 9);
    assert_memory_equal(r.value, "value one", 9);
    assert_int_equal(r.header_count, 2);
    assert_int_equal(r.headers[0].key_len, 8);
    assert_memory_equal(r.headers[0].key, ":subject", 8);
    assert_int_equal(r.headers[0].value_len, 13);
    assert_memory_equal(r.headers[0].value, "orders/eu/new", 13);
    assert_int_equal(r.headers[1].key_len, 5);
    assert_memory_equal(r.headers[1].value, "abc", 3);
    /* Views point into the batch bytes. */
    assert_true(r.key > out.data && r.key < out.data + out.len);
    size_t slen;
    const char *subj = jn_record_subject(&r, "orders", 6, &slen);
    assert_int_equal(slen, 13);
    assert_memory_equal(subj, "orders/eu/new", 13);

    assert_int_equal(jn_batch_iter_next(&it, &r), 1);
    assert_int_equal(r.offset, 101);
    assert_true(r.timestamp == 1700000000500);
    assert_null(r.key);
    assert_int_equal(r.key_len, -1);
    assert_int_equal(r.value_len, 2);
    assert_memory_equal(r.value, "v2", 2);
    assert_int_equal(r.header_count, 0);
    subj = jn_record_subject(&r, "orders", 6, &slen);
    assert_int_equal(slen, 6);
    assert_memory_equal(subj, "orders", 6);

    assert_int_equal(jn_batch_iter_next(&it, &r), 1);
    assert_int_equal(r.offset, 102);
    assert_true(r.timestamp == 1699999999000);
    assert_int_equal(r.key_len, 5);
    assert_null(r.value);
    assert_int_equal(r.value_len, -1);
    assert_int_equal(r.header_count, 1);
    assert_memory_equal(r.headers[0].key, "empty", 5);
    assert_null(r.headers[0].value);
    assert_int_equal(r.headers[0].value_len, -1);

    assert_int_equal(jn_batch_iter_next(&it, &r), 0);
    assert_int_equal(jn_batch_iter_next(&it, &r), 0);
    jn_buf_free(&out);
}

/* Two records assembled by hand from the layout in batch.h. */
static const uint8_t handmade[] = {
    0, 0, 0, 0, 0, 0, 0, 0,         /*  0 baseOffset */
    0, 0, 0, 71,                    /*  8 batchLength = 83 - 12 */
    0, 0, 0, 0,                     /* 12 partitionLeaderEpoch */
    2,                              /* 16 magic */
    0, 0, 0, 0,                     /* 17 crc, filled by the test */
    0, 0,                           /* 21 attributes */
    0, 0, 0, 1,                     /* 23 lastOffsetDelta */
    0, 0, 0, 0, 0, 0, 0x03, 0xe8,   /* 27 baseTimestamp 1000 */
    0, 0, 0, 0, 0, 0, 0x03, 0xed,   /* 35 maxTimestamp 1005 */
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 43 producerId -1 */
    0xff, 0xff,                     /* 51 producerEpoch -1 */
    0xff, 0xff, 0xff, 0xff,         /* 53 baseSequence -1 */
    0, 0, 0, 2,                     /* 57 recordCount */
    /* record 0: length 12, attrs, tsDelta 0, offsetDelta 0, key "k",
     * value "v", 1 header "h" = "x" */
    0x18, 0x00, 0x00, 0x00, 0x02, 'k', 0x02, 'v', 0x02, 0x02, 'h', 0x02, 'x',
    /* record 1: length 8, attrs, tsDelta 5, offsetDelta 1, null key,
     * value "vv", no headers */
    0x10, 0x00, 0x0a, 0x02, 0x01, 0x04, 'v', 'v', 0x00,
};

static void test_byte_exact(void **state)
{
    (void)state;
    uint8_t want[sizeof handmade];
    memcpy(want, handmade, sizeof want);
    assert_int_equal(sizeof want, 83);
    fix_crc(want, sizeof want);

    static const jn_header_t h = {(const uint8_t *)"h", 1, (const uint8_t *)"x", 1};
    const jn_record_t r0 = {(const uint8_t *)"k", 1, (const uint8_t *)"v", 1, 1000, 0, 1, &h};
    const jn_record_t r1 = {NULL, -1, (const uint8_t *)"vv", 2, 1005, 0, 0, NULL};
    jn_buf_t out;
    jn_buf_init(&out, 4096);
    jn_batch_builder_t b;
    assert_int_equal(jn_batch_builder_begin(&b, &out), 0);
    assert_int_equal(jn_batch_builder_add(&b, &r0), 0);
    assert_int_equal(jn_batch_builder_add(&b, &r1), 0);
    assert_int_equal(jn_batch_builder_finish(&b), (int)sizeof want);
    assert_int_equal(out.len, sizeof want);
    assert_memory_equal(out.data, want, sizeof want);

    /* The CRC field holds CRC-32C of bytes 21..end, whichever path computes it. */
    assert_int_equal(jn_load_be32(out.data + 17), jn__crc32c_sw(0, want + 21, sizeof want - 21));

    /* And the hand-made bytes read back. */
    jn_batch_iter_t it;
    jn_record_t r;
    assert_int_equal(jn_batch_iter_init(&it, want, sizeof want, true), 0);
    assert_int_equal(jn_batch_iter_next(&it, &r), 1);
    assert_int_equal(r.offset, 0);
    assert_int_equal(r.timestamp, 1000);
    assert_memory_equal(r.key, "k", 1);
    assert_int_equal(r.header_count, 1);
    assert_memory_equal(r.headers[0].value, "x", 1);
    assert_int_equal(jn_batch_iter_next(&it, &r), 1);
    assert_int_equal(r.offset, 1);
    assert_int_equal(r.timestamp, 1005);
    assert_int_equal(r.key_len, -1);
    assert_memory_equal(r.value, "vv", 2);
    assert_int_equal(jn_batch_iter_next(&it, &r), 0);
    jn_buf_free(&out);
}

static void test_crc_mismatch(void **state)
{
    (void)state;
    jn_buf_t out;
    jn_buf_init(&out, 1 << 20);
    int size = build_sample(&out);
    assert_true(size > 0);
    jn_batch_iter_t it;
    for (size_t i = 0; i < out.len; i++) {
        out.data[i] ^= 0x40;
        /* Bytes 0..16 are outside the CRC; 17..20 are the CRC itself. */
        assert_int_equal(jn_batch_verify_crc(out.data, out.len), i < 17 ? 0 : JN_ECORRUPT);
        if (i >= 21) {
            int rc = jn_batch_iter_init(&it, out.data, out.len, true);
            assert_true(rc == JN_ECORRUPT || rc == JN_EPROTO);
        }
        out.data[i] ^= 0x40;
    }
    assert_int_equal(jn_batch_verify_crc(out.data, 20), JN_ECORRUPT);
    /* Without the check, a flipped payload byte still iterates. */
    out.data[out.len - 10] ^= 1;
    assert_int_equal(jn_batch_iter_init(&it, out.data, out.len, true), JN_ECORRUPT);
    assert_int_equal(jn_batch_iter_init(&it, out.data, out.len, false), 0);
    jn_buf_free(&out);
}

/* Drains |it|, returning the first non-positive result. */
static int drain(jn_batch_iter_t *it)
{
    jn_record_t r;
    int rc, guard = 0;
    while ((rc = jn_batch_iter_next(it, &r)) == 1)
        assert_true(++guard < 1000);
    return rc;
}

static void test_truncated_prefixes(void **state)
{
    (void)state;
    jn_buf_t out;
    jn_buf_init(&out, 1 << 20);
    int size = build_sample(&out);
    assert_true(size > 0);
    jn_batch_info_t bi;
    jn_batch_iter_t it;
    for (size_t k = 0; k < out.len; k++) {
        /* An exact-size copy so that ASan sees any read past |k|. */
        uint8_t *p = malloc(k ? k : 1);
        assert_non_null(p);
        memcpy(p, out.data, k);
        assert_int_equal(jn_batch_parse(p, k, 1 << 20, &bi), JN_EPARTIAL);
        if (k >= JN_BATCH_HEADER_SIZE)
            assert_int_equal(bi.record_count, 3); /* header filled in */
        assert_true(jn_batch_iter_init(&it, p, k, false) < 0);

        /* The same prefix presented as a complete batch (length and CRC
         * fixed): the iterator must report an error, never read past it. */
        if (k >= JN_BATCH_HEADER_SIZE) {
            jn_store_be32(p + 8, (uint32_t)(k - 12));
            fix_crc(p, k);
            int rc = jn_batch_iter_init(&it, p, k, true);
            if (rc == 0)
                rc = drain(&it);
            assert_int_equal(rc, JN_EPROTO);
        }
        free(p);
    }
    jn_buf_free(&out);
}

static void test_control_batch(void **state)
{
    (void)state;
    jn_buf_t out;
    jn_buf_init(&out, 1 << 20);
    assert_true(build_sample(&out) > 0);
    jn_store_be16(out.data + 21, JN_BATCH_CONTROL | JN_BATCH_TRANSACTIONAL);
    fix_crc(out.data, out.len);
    jn_batch_iter_t it;
    jn_record_t r;
    assert_int_equal(jn_batch_iter_init(&it, out.data, out.len, true), 0);
    assert_int_equal(jn_batch_iter_next(&it, &r), 0);
    assert_int_equal(jn_batch_iter_next(&it, &r), 0);
    jn_buf_free(&out);
}

static void test_compressed_and_attributes(void **state)
{
    (void)state;
    jn_buf_t out;
    jn_buf_init(&out, 1 << 20);
    assert_true(build_sample(&out) > 0);
    jn_batch_iter_t it;
    jn_record_t r;
    for (int c = 1; c <= 4; c++) {
        jn_store_be16(out.data + 21, (uint16_t)c);
        fix_crc(out.data, out.len);
        assert_int_equal(jn_batch_iter_init(&it, out.data, out.len, true), JN_EUNSUPPORTED);
    }
    jn_store_be16(out.data + 21, 5); /* no such codec */
    fix_crc(out.data, out.len);
    assert_int_equal(jn_batch_iter_init(&it, out.data, out.len, true), JN_EPROTO);

    /* Log-append time: every record carries the batch's maxTimestamp. */
    jn_store_be16(out.data + 21, JN_BATCH_TIMESTAMP_LOG_APPEND);
    jn_store_be64(out.data + 35, 1800000000000);
    fix_crc(out.data, out.len);
    assert_int_equal(jn_batch_iter_init(&it, out.data, out.len, true), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(jn_batch_iter_next(&it, &r), 1);
        assert_true(r.timestamp == 1800000000000);
    }
    assert_int_equal(jn_batch_iter_next(&it, &r), 0);
    jn_buf_free(&out);
}

static void test_parse_header_errors(void **state)
{
    (void)state;
    uint8_t b[sizeof handmade];
    jn_batch_info_t bi;
#define RESET() (memcpy(b, handmade, sizeof b), fix_crc(b, sizeof b))
    RESET();
    assert_int_equal(jn_batch_parse(b, sizeof b, 1000, &bi), (int)sizeof b);
    /* More bytes after the batch are not part of it. */
    assert_int_equal(jn_batch_parse(b, sizeof b, sizeof b, &bi), (int)sizeof b);
    assert_int_equal(jn_batch_parse(b, sizeof b, sizeof b - 1, &bi), JN_ETOOBIG);
    /* Too big is known from the header alone. */
    assert_int_equal(jn_batch_parse(b, JN_BATCH_HEADER_SIZE, 70, &bi), JN_ETOOBIG);

    b[16] = 1;
    assert_int_equal(jn_batch_parse(b, sizeof b, 1000, &bi), JN_EPROTO);
    RESET();
    jn_store_be32(b + 8, 48); /* shorter than a header */
    assert_int_equal(jn_batch_parse(b, sizeof b, 1000, &bi), JN_EPROTO);
    jn_store_be32(b + 8, 0xffffffff); /* negative */
    assert_int_equal(jn_batch_parse(b, sizeof b, 1000, &bi), JN_EPROTO);
    jn_store_be32(b + 8, 0x7fffffff);
    assert_int_equal(jn_batch_parse(b, sizeof b, SIZE_MAX, &bi), JN_ETOOBIG);
    RESET();
    jn_store_be32(b + 57, 0xffffffff); /* recordCount -1 */
    assert_int_equal(jn_batch_parse(b, sizeof b, 1000, &bi), JN_EPROTO);
    jn_store_be32(b + 57, 3); /* more records than lastOffsetDelta allows */
    assert_int_equal(jn_batch_parse(b, sizeof b, 1000, &bi), JN_EPROTO);
    jn_store_be32(b + 23, 100);
    jn_store_be32(b + 57, 100); /* more records than bytes can hold */
    assert_int_equal(jn_batch_parse(b, sizeof b, 1000, &bi), JN_EPROTO);
    RESET();
    jn_store_be32(b + 23, 0xfffffff0); /* negative lastOffsetDelta */
    assert_int_equal(jn_batch_parse(b, sizeof b, 1000, &bi), JN_EPROTO);
    RESET();
    jn_store_be64(b, (uint64_t)-5); /* negative baseOffset */
    assert_int_equal(jn_batch_parse(b, sizeof b, 1000, &bi), JN_EPROTO);
    jn_store_be64(b, (uint64_t)INT64_MAX); /* last offset would overflow */
    assert_int_equal(jn_batch_parse(b, sizeof b, 1000, &bi), JN_EPROTO);
    RESET();
    /* An empty batch (all records compacted away) is valid and yields nothing. */
    jn_store_be32(b + 8, 49);
    jn_store_be32(b + 57, 0);
    fix_crc(b, 61);
    jn_batch_iter_t it;
    jn_record_t r;
    assert_int_equal(jn_batch_iter_init(&it, b, 61, true), 0);
    assert_int_equal(jn_batch_iter_next(&it, &r), 0);
#undef RESET
}

/* Assembles a one-batch buffer around hand-written record bytes. */
static size_t make_batch(uint8_t *b, const uint8_t *recs, size_t n, int32_t count, int32_t lod)
{
    memcpy(b, handmade, JN_BATCH_HEADER_SIZE);
    memcpy(b + JN_BATCH_HEADER_SIZE, recs, n);
    size_t total = JN_BATCH_HEADER_SIZE + n;
    jn_store_be32(b + 8, (uint32_t)(total - 12));
    jn_store_be32(b + 23, (uint32_t)lod);
    jn_store_be32(b + 57, (uint32_t)count);
    fix_crc(b, total);
    return total;
}

/* Iterates a batch whose first record is |rec| and returns the result of
 * the first jn_batch_iter_next; checks that the error is sticky. */
static int first_record(const uint8_t *rec, size_t n, int32_t count)
{
    uint8_t *b = malloc(JN_BATCH_HEADER_SIZE + n);
    assert_non_null(b);
    size_t total = make_batch(b, rec, n, count, count > 0 ? count - 1 : 0);
    jn_batch_iter_t it;
    jn_record_t r;
    int rc = jn_batch_iter_init(&it, b, total, true);
    if (rc == 0) {
        rc = jn_batch_iter_next(&it, &r);
        if (rc < 0)
            assert_int_equal(jn_batch_iter_next(&it, &r), rc);
    }
    free(b);
    return rc;
}

static void test_malformed_records(void **state)
{
    (void)state;
    /* A valid minimal record, for reference: null key, null value. */
    static const uint8_t ok[] = {0x0c, 0, 0, 0, 0x01, 0x01, 0};
    assert_int_equal(first_record(ok, sizeof ok, 1), 1);
    /* key length -2 */
    static const uint8_t neg_key[] = {0x0c, 0, 0, 0, 0x03, 0x01, 0};
    assert_int_equal(first_record(neg_key, sizeof neg_key, 1), JN_EPROTO);
    /* value length past the record */
    static const uint8_t long_val[] = {0x0e, 0, 0, 0, 0x01, 0x06, 'a', 0};
    assert_int_equal(first_record(long_val, sizeof long_val, 1), JN_EPROTO);
    /* record length says 7 body bytes, fields use 6 */
    static const uint8_t slack[] = {0x0e, 0, 0, 0, 0x01, 0x01, 0, 0};
    assert_int_equal(first_record(slack, sizeof slack, 1), JN_EPROTO);
    /* record length negative */
    static const uint8_t neg_len[] = {0x0d, 0, 0, 0, 0x01, 0x01, 0};
    assert_int_equal(first_record(neg_len, sizeof neg_len, 1), JN_EPROTO);
    /* record length past the batch */
    static const uint8_t past[] = {0x7e, 0, 0, 0, 0x01, 0x01, 0};
    assert_int_equal(first_record(past, sizeof past, 1), JN_EPROTO);
    /* overlong timestamp delta varint inside the record */
    static const uint8_t overlong[] = {0x20, 0,    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                       0x80, 0x80, 0x80, 0x00, 0,    0x01, 0x01, 0};
    assert_int_equal(first_record(overlong, sizeof overlong, 1), JN_EPROTO);
    /* offset delta beyond lastOffsetDelta (0) */
    static const uint8_t off[] = {0x0c, 0, 0, 0x02, 0x01, 0x01, 0};
    assert_int_equal(first_record(off, sizeof off, 1), JN_EPROTO);
    /* negative header count */
    static const uint8_t neg_hc[] = {0x0c, 0, 0, 0, 0x01, 0x01, 0x01};
    assert_int_equal(first_record(neg_hc, sizeof neg_hc, 1), JN_EPROTO);
    /* header with a null key */
    static const uint8_t null_hk[] = {0x10, 0, 0, 0, 0x01, 0x01, 0x02, 0x01, 0x01};
    assert_int_equal(first_record(null_hk, sizeof null_hk, 1), JN_EPROTO);
    /* header value length -3 */
    static const uint8_t neg_hv[] = {0x12, 0, 0, 0, 0x01, 0x01, 0x02, 0x02, 'h', 0x05};
    assert_int_equal(first_record(neg_hv, sizeof neg_hv, 1), JN_EPROTO);
    /* a header count larger than the bytes can hold */
    static const uint8_t many_hc[] = {0x10, 0, 0, 0, 0x01, 0x01, 0x10, 0x00, 0x00};
    assert_int_equal(first_record(many_hc, sizeof many_hc, 1), JN_EPROTO);
    /* record truncated inside its length varint at the batch end */
    static const uint8_t cut[] = {0x1a, 0, 0, 0, 0x01, 0x0e, 'a', 'a', 'a',
                                  'a', 'a', 'a', 'a', 0, 0x80};
    {
        uint8_t b[JN_BATCH_HEADER_SIZE + sizeof cut];
        size_t total = make_batch(b, cut, sizeof cut, 2, 1);
        jn_batch_iter_t it;
        jn_record_t r;
        assert_int_equal(jn_batch_iter_init(&it, b, total, true), 0);
        assert_int_equal(jn_batch_iter_next(&it, &r), 1);
        assert_int_equal(jn_batch_iter_next(&it, &r), JN_EPROTO);
    }
    /* Trailing bytes after recordCount records. */
    static const uint8_t two[] = {0x0c, 0, 0, 0, 0x01, 0x01, 0, 0x0c, 0, 0, 0x02, 0x01, 0x01, 0};
    {
        uint8_t b[JN_BATCH_HEADER_SIZE + sizeof two];
        size_t total = make_batch(b, two, sizeof two, 1, 1);
        jn_batch_iter_t it;
        jn_record_t r;
        assert_int_equal(jn_batch_iter_init(&it, b, total, true), 0);
        assert_int_equal(jn_batch_iter_next(&it, &r), 1);
        assert_int_equal(jn_batch_iter_next(&it, &r), JN_EPROTO);
        /* ...and fewer records than recordCount. */
        total = make_batch(b, cut, sizeof cut - 1, 2, 1);
        assert_int_equal(jn_batch_iter_init(&it, b, total, true), 0);
        assert_int_equal(jn_batch_iter_next(&it, &r), 1);
        assert_int_equal(r.value_len, 7);
        assert_int_equal(jn_batch_iter_next(&it, &r), JN_EPROTO);
    }
}

static void test_too_many_headers(void **state)
{
    (void)state;
    jn_header_t hs[JN_BATCH_MAX_HEADERS + 1];
    for (size_t i = 0; i < JN_BATCH_MAX_HEADERS + 1; i++)
        hs[i] = (jn_header_t){(const uint8_t *)"k", 1, (const uint8_t *)"v", 1};
    jn_buf_t out;
    jn_buf_init(&out, 1 << 20);
    jn_batch_builder_t b;
    jn_record_t rec = {NULL, -1, NULL, -1, 5, 0, JN_BATCH_MAX_HEADERS, hs};
    assert_int_equal(jn_batch_builder_begin(&b, &out), 0);
    assert_int_equal(jn_batch_builder_add(&b, &rec), 0);
    rec.header_count = JN_BATCH_MAX_HEADERS + 1;
    assert_int_equal(jn_batch_builder_add(&b, &rec), 0);
    assert_true(jn_batch_builder_finish(&b) > 0);
    jn_batch_iter_t it;
    jn_record_t r;
    assert_int_equal(jn_batch_iter_init(&it, out.data, out.len, true), 0);
    assert_int_equal(jn_batch_iter_next(&it, &r), 1);
    assert_int_equal(r.header_count, JN_BATCH_MAX_HEADERS);
    assert_int_equal(jn_batch_iter_next(&it, &r), JN_ETOOBIG);
    jn_buf_free(&out);
}

static void test_builder_limits(void **state)
{
    (void)state;
    jn_buf_t out;
    jn_batch_builder_t b;
    const jn_record_t rec = {(const uint8_t *)"key", 3, (const uint8_t *)"0123456789", 10,
                             42, 0, 0, NULL};

    /* Empty batches are not written. */
    jn_buf_init(&out, 1000);
    assert_int_equal(jn_buf_append(&out, "xyz", 3), 0);
    assert_int_equal(jn_batch_builder_begin(&b, &out), 0);
    assert_int_equal(out.len, 3 + JN_BATCH_HEADER_SIZE);
    assert_int_equal(jn_batch_builder_finish(&b), JN_EINVAL);
    assert_int_equal(out.len, 3);

    /* A batch after other content starts where begin found the buffer. */
    assert_int_equal(jn_batch_builder_begin(&b, &out), 0);
    assert_int_equal(jn_batch_builder_add(&b, &rec), 0);
    int size = jn_batch_builder_finish(&b);
    assert_int_equal((size_t)size + 3, out.len);
    jn_batch_info_t bi;
    assert_int_equal(jn_batch_parse(out.data + 3, out.len - 3, 1000, &bi), size);
    assert_int_equal(jn_batch_verify_crc(out.data + 3, (size_t)size), 0);
    jn_buf_free(&out);

    /* Invalid records. */
    jn_buf_init(&out, 1000);
    assert_int_equal(jn_batch_builder_begin(&b, &out), 0);
    jn_record_t bad = rec;
    bad.key_len = -2;
    assert_int_equal(jn_batch_builder_add(&b, &bad), JN_EINVAL);
    bad = rec;
    bad.value = NULL;
    assert_int_equal(jn_batch_builder_add(&b, &bad), JN_EINVAL);
    bad = rec;
    bad.header_count = 1;
    assert_int_equal(jn_batch_builder_add(&b, &bad), JN_EINVAL);
    assert_int_equal(jn_batch_record_size(&bad), 0);
    assert_int_equal(b.count, 0);
    assert_int_equal(out.len, JN_BATCH_HEADER_SIZE);
    jn_buf_free(&out);

    /* The buffer cap stops an add and leaves the builder as it was. */
    size_t one = 1 + 1 + 1 + 1 + 1 + 3 + 1 + 10 + 1; /* 20 bytes, the first record */
    jn_buf_init(&out, JN_BATCH_HEADER_SIZE + one + one - 1);
    assert_int_equal(jn_batch_builder_begin(&b, &out), 0);
    assert_int_equal(jn_batch_builder_add(&b, &rec), 0);
    assert_int_equal(out.len, JN_BATCH_HEADER_SIZE + one);
    jn_record_t later = rec;
    later.timestamp = 99;
    assert_int_equal(jn_batch_builder_add(&b, &later), JN_ETOOBIG);
    assert_int_equal(out.len, JN_BATCH_HEADER_SIZE + one);
    assert_int_equal(b.count, 1);
    assert_int_equal(b.max_ts, 42);
    size = jn_batch_builder_finish(&b);
    assert_int_equal(size, JN_BATCH_HEADER_SIZE + one);
    assert_int_equal(jn_batch_parse(out.data, out.len, out.len, &bi), size);
    assert_int_equal(bi.record_count, 1);
    assert_true(bi.max_timestamp == 42);
    jn_buf_free(&out);

    /* Header reservation past the cap. */
    jn_buf_init(&out, JN_BATCH_HEADER_SIZE - 1);
    assert_int_equal(jn_batch_builder_begin(&b, &out), JN_ETOOBIG);
    jn_buf_free(&out);
}

static void test_record_size_bound(void **state)
{
    (void)state;
    static const jn_header_t h[] = {{(const uint8_t *)"a", 1, (const uint8_t *)"b", 1}};
    static uint8_t big[300];
    const jn_record_t recs[] = {
        {NULL, -1, NULL, -1, 0, 0, 0, NULL},
        {(const uint8_t *)"k", 1, big, sizeof big, 1000000, 0, 1, h},
        {big, 100, big, 60, -1000000000000, 0, 0, NULL},
    };
    jn_buf_t out;
    jn_buf_init(&out, 1 << 16);
    jn_batch_builder_t b;
    assert_int_equal(jn_batch_builder_begin(&b, &out), 0);
    for (size_t i = 0; i < 3; i++) {
        size_t before = out.len;
        size_t est = jn_batch_record_size(&recs[i]);
        assert_int_equal(jn_batch_builder_add(&b, &recs[i]), 0);
        size_t real = out.len - before;
        assert_true(est >= real);
        assert_true(est <= real + 14);
    }
    assert_true(jn_batch_builder_finish(&b) > 0);
    jn_batch_iter_t it;
    jn_record_t r;
    assert_int_equal(jn_batch_iter_init(&it, out.data, out.len, true), 0);
    assert_int_equal(drain(&it), 0);
    assert_int_equal(it.index, 3);
    (void)r;
    jn_buf_free(&out);
}

static void test_record_subject(void **state)
{
    (void)state;
    jn_header_t hs[] = {
        {(const uint8_t *)"trace", 5, (const uint8_t *)"x", 1},
        {(const uint8_t *)":subject", 8, (const uint8_t *)"a/b", 3},
    };
    jn_record_t r = {NULL, -1, NULL, -1, 0, 0, 2, hs};
    size_t len;
    const char *s = jn_record_subject(&r, "a", 1, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "a/b", 3);
    /* A null subject value falls back to the stream. */
    hs[1].value = NULL;
    hs[1].value_len = -1;
    s = jn_record_subject(&r, "a", 1, &len);
    assert_int_equal(len, 1);
    assert_memory_equal(s, "a", 1);
    /* Similar names are not the subject header. */
    hs[1] = (jn_header_t){(const uint8_t *)":subjec", 7, (const uint8_t *)"z", 1};
    s = jn_record_subject(&r, "str", 3, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "str", 3);
    r.header_count = 0;
    r.headers = NULL;
    s = jn_record_subject(&r, "str", 3, &len);
    assert_int_equal(len, 3);
}

/* ---- compressed batches ---- */

/* Reads tests/unit/data/|name| (next to this file) into |out|. */
static void read_data(const char *name, jn_buf_t *out)
{
    char path[512];
    const char *here = __FILE__;
    const char *slash = strrchr(here, '/');
    int dl = slash ? (int)(slash - here) : 1;
    snprintf(path, sizeof path, "%.*s/data/%s", dl, slash ? here : ".", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        assert_int_equal(jn_buf_append(out, tmp, n), 0);
    fclose(f);
}

static void test_real_compressed_batches(void **state)
{
    (void)state;
    static const char *codecs[] = {"gzip", "snappy", "lz4", "zstd"};
    for (int c = 0; c < 4; c++) {
        jn_buf_t raw, z;
        jn_buf_init(&raw, 1 << 20);
        jn_buf_init(&z, 1 << 20);
        char name[64];
        snprintf(name, sizeof name, "batch_%s.bin", codecs[c]);
        read_data(name, &raw);
        jn_batch_info_t bi;
        assert_int_equal(jn_batch_parse(raw.data, raw.len, raw.len, &bi), (int)raw.len);
        assert_int_equal(bi.attributes & JN_BATCH_COMPRESSION_MASK, c + 1);
        assert_int_equal(bi.record_count, 8);
        jn_batch_iter_t it;
        assert_int_equal(jn_batch_iter_init(&it, raw.data, raw.len, true), JN_EUNSUPPORTED);
        assert_int_equal(jn_batch_iter_init_scratch(&it, raw.data, raw.len, true, &z), 0);
        jn_record_t r;
        for (int i = 0; i < 8; i++) {
            assert_int_equal(jn_batch_iter_next(&it, &r), 1);
            char want[128];
            int wl = snprintf(want, sizeof want, "%s value %d ", codecs[c], i);
            for (int k = 0; k < 20; k++)
                wl += snprintf(want + wl, sizeof want - (size_t)wl, "abc");
            assert_int_equal(r.value_len, wl);
            assert_memory_equal(r.value, want, (size_t)wl);
            char key[8];
            snprintf(key, sizeof key, "k%d", i);
            assert_int_equal(r.key_len, 2);
            assert_memory_equal(r.key, key, 2);
            assert_int_equal(r.header_count, 1);
            assert_memory_equal(r.headers[0].key, "h", 1);
            assert_int_equal(r.headers[0].value_len, 1);
            assert_int_equal(r.headers[0].value[0], '0' + i);
            assert_true(r.timestamp == 1700000000000 + i);
            assert_true(r.offset == bi.base_offset + i);
            /* Views point into the scratch buffer, not the batch. */
            assert_true(r.value >= z.data && r.value < z.data + z.len);
        }
        assert_int_equal(jn_batch_iter_next(&it, &r), 0);

        /* Every truncation of the compressed payload (header and CRC
         * made consistent) is an error, never fewer records. */
        for (size_t cut = 1; cut < raw.len - JN_BATCH_HEADER_SIZE; cut++) {
            jn_buf_t t;
            jn_buf_init(&t, 1 << 20);
            assert_int_equal(jn_buf_append(&t, raw.data, raw.len - cut), 0);
            jn_store_be32(t.data + 8, (uint32_t)(t.len - 12));
            fix_crc(t.data, t.len);
            int rc = jn_batch_iter_init_scratch(&it, t.data, t.len, true, &z);
            if (rc == 0) {
                int n = 0;
                while ((rc = jn_batch_iter_next(&it, &r)) == 1)
                    n++;
                assert_true(rc < 0 || n == 8); /* lz4 and gzip may lose only their trailing checksum */
            }
            jn_buf_free(&t);
        }
        /* A lower scratch cap is JN_ETOOBIG. */
        jn_buf_t small;
        jn_buf_init(&small, 100);
        assert_int_equal(jn_batch_iter_init_scratch(&it, raw.data, raw.len, true, &small), JN_ETOOBIG);
        jn_buf_free(&small);
        /* One record fewer than the header says: malformed. */
        jn_store_be32(raw.data + 57, 9);
        jn_store_be32(raw.data + 23, 8);
        fix_crc(raw.data, raw.len);
        assert_int_equal(jn_batch_iter_init_scratch(&it, raw.data, raw.len, true, &z), 0);
        int rc;
        while ((rc = jn_batch_iter_next(&it, &r)) == 1)
            ;
        assert_int_equal(rc, JN_EPROTO);
        jn_buf_free(&raw);
        jn_buf_free(&z);
    }
}

/* Builds a batch whose records region is |payload|, compressed with |codec|,
 * from the uncompressed batch |plain|. */
static void make_compressed(const jn_buf_t *plain, int codec, const uint8_t *payload, size_t plen, jn_buf_t *out)
{
    jn_buf_reset(out);
    assert_int_equal(jn_buf_append(out, plain->data, JN_BATCH_HEADER_SIZE), 0);
    assert_int_equal(jn_buf_append(out, payload, plen), 0);
    jn_store_be32(out->data + 8, (uint32_t)(out->len - 12));
    jn_store_be16(out->data + 21, (uint16_t)codec);
    fix_crc(out->data, out->len);
}

/* Iterates |batch| (with scratch) and |plain| side by side. */
static void assert_same_records(const jn_buf_t *batch, const jn_buf_t *plain)
{
    jn_buf_t z;
    jn_buf_init(&z, 1 << 20);
    jn_batch_iter_t a, b;
    assert_int_equal(jn_batch_iter_init_scratch(&a, batch->data, batch->len, true, &z), 0);
    assert_int_equal(jn_batch_iter_init(&b, plain->data, plain->len, true), 0);
    jn_record_t ra, rb;
    int n = 0;
    for (;;) {
        int x = jn_batch_iter_next(&a, &ra), y = jn_batch_iter_next(&b, &rb);
        assert_int_equal(x, y);
        if (x != 1)
            break;
        n++;
        assert_int_equal(ra.value_len, rb.value_len);
        if (ra.value_len > 0)
            assert_memory_equal(ra.value, rb.value, (size_t)ra.value_len);
        assert_int_equal(ra.key_len, rb.key_len);
        assert_true(ra.offset == rb.offset && ra.timestamp == rb.timestamp);
        assert_int_equal(ra.header_count, rb.header_count);
    }
    assert_int_equal(n, 3);
    jn_buf_free(&z);
}

static void test_codecs_built_here(void **state)
{
    (void)state;
    jn_buf_t plain, out, pay;
    jn_buf_init(&plain, 1 << 20);
    jn_buf_init(&out, 1 << 20);
    jn_buf_init(&pay, 1 << 20);
    assert_true(build_sample(&plain) > 0);
    const uint8_t *recs = plain.data + JN_BATCH_HEADER_SIZE;
    size_t rlen = plain.len - JN_BATCH_HEADER_SIZE;
    uint8_t tmp[4096];

    /* Snappy with Xerial framing, split into two blocks. */
    static const uint8_t xhdr[16] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1};
    assert_int_equal(jn_buf_append(&pay, xhdr, sizeof xhdr), 0);
    size_t half = rlen / 2;
    for (int k = 0; k < 2; k++) {
        const uint8_t *src = k ? recs + half : recs;
        size_t sl = k ? rlen - half : half, cl = sizeof tmp;
        assert_int_equal(snappy_compress((const char *)src, sl, (char *)tmp, &cl), SNAPPY_OK);
        assert_int_equal(jn_buf_put_be32(&pay, (uint32_t)cl), 0);
        assert_int_equal(jn_buf_append(&pay, tmp, cl), 0);
    }
    make_compressed(&plain, JN_CODEC_SNAPPY, pay.data, pay.len, &out);
    assert_same_records(&out, &plain);
    /* A Xerial block length past the end is malformed. */
    jn_store_be32(pay.data + 16, 100000);
    make_compressed(&plain, JN_CODEC_SNAPPY, pay.data, pay.len, &out);
    jn_buf_t z;
    jn_buf_init(&z, 1 << 20);
    jn_batch_iter_t it;
    assert_int_equal(jn_batch_iter_init_scratch(&it, out.data, out.len, true, &z), JN_EPROTO);

    /* gzip in two concatenated members. */
    jn_buf_reset(&pay);
    for (int k = 0; k < 2; k++) {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
        zs.next_in = (Bytef *)(k ? recs + half : recs);
        zs.avail_in = (uInt)(k ? rlen - half : half);
        zs.next_out = tmp;
        zs.avail_out = sizeof tmp;
        assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
        assert_int_equal(jn_buf_append(&pay, tmp, sizeof tmp - zs.avail_out), 0);
        deflateEnd(&zs);
    }
    make_compressed(&plain, JN_CODEC_GZIP, pay.data, pay.len, &out);
    assert_same_records(&out, &plain);
    /* Trailing garbage after the last member. */
    assert_int_equal(jn_buf_append(&pay, "xx", 2), 0);
    make_compressed(&plain, JN_CODEC_GZIP, pay.data, pay.len, &out);
    assert_int_equal(jn_batch_iter_init_scratch(&it, out.data, out.len, true, &z), JN_EPROTO);

    /* lz4 frame. */
    size_t n = LZ4F_compressFrame(tmp, sizeof tmp, recs, rlen, NULL);
    assert_false(LZ4F_isError(n));
    make_compressed(&plain, JN_CODEC_LZ4, tmp, n, &out);
    assert_same_records(&out, &plain);

    /* zstd. */
    n = ZSTD_compress(tmp, sizeof tmp, recs, rlen, 3);
    assert_false(ZSTD_isError(n));
    make_compressed(&plain, JN_CODEC_ZSTD, tmp, n, &out);
    assert_same_records(&out, &plain);

    /* Garbage and empty payloads for every codec. */
    for (int c = 1; c <= 4; c++) {
        make_compressed(&plain, c, (const uint8_t *)"\x01\x02\x03\x04garbage!", 12, &out);
        assert_int_equal(jn_batch_iter_init_scratch(&it, out.data, out.len, true, &z), JN_EPROTO);
        make_compressed(&plain, c, NULL, 0, &out);
        assert_int_equal(jn_batch_iter_init_scratch(&it, out.data, out.len, true, &z), JN_EPROTO);
    }
    jn_buf_free(&z);
    jn_buf_free(&plain);
    jn_buf_free(&out);
    jn_buf_free(&pay);
}

/* A small batch that inflates past the limit is refused before the memory
 * is spent (a compression bomb). */
static void test_decompression_bomb(void **state)
{
    (void)state;
    size_t big = JN_BATCH_MAX_DECOMPRESSED + 1;
    uint8_t *zeros = calloc(1, big);
    assert_non_null(zeros);
    size_t cap = ZSTD_compressBound(big);
    uint8_t *c = malloc(cap);
    assert_non_null(c);
    size_t n = ZSTD_compress(c, cap, zeros, big, 1);
    assert_false(ZSTD_isError(n));
    free(zeros);
    jn_buf_t plain, out, z;
    jn_buf_init(&plain, 1 << 20);
    jn_buf_init(&out, 4 << 20);
    jn_buf_init(&z, (size_t)1 << 30); /* the batch limit applies, not this cap */
    assert_true(build_sample(&plain) > 0);
    make_compressed(&plain, JN_CODEC_ZSTD, c, n, &out);
    jn_batch_iter_t it;
    assert_int_equal(jn_batch_iter_init_scratch(&it, out.data, out.len, true, &z), JN_ETOOBIG);
    assert_true(z.cap <= JN_BATCH_MAX_DECOMPRESSED);
    /* jn_decompress restores the output on failure. */
    assert_int_equal(jn_buf_append(&z, "keep", 4), 0);
    assert_true(jn_decompress(JN_CODEC_ZSTD, c, n, &z, 1000) == JN_ETOOBIG);
    assert_int_equal(z.len, 4);
    assert_true(jn_decompress(9, c, n, &z, 1000) == JN_EPROTO);
    free(c);
    jn_buf_free(&plain);
    jn_buf_free(&out);
    jn_buf_free(&z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_byte_exact),
        cmocka_unit_test(test_crc_mismatch),
        cmocka_unit_test(test_truncated_prefixes),
        cmocka_unit_test(test_control_batch),
        cmocka_unit_test(test_compressed_and_attributes),
        cmocka_unit_test(test_parse_header_errors),
        cmocka_unit_test(test_malformed_records),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_builder_limits),
        cmocka_unit_test(test_record_size_bound),
        cmocka_unit_test(test_record_subject),
        cmocka_unit_test(test_real_compressed_batches),
        cmocka_unit_test(test_codecs_built_here),
        cmocka_unit_test(test_decompression_bomb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
