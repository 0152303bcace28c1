/* batch.h - Kafka RecordBatch v2: the one on-disk and on-wire record format.
 *
 * Every record Junction stores, from any door, is in a RecordBatch v2, so that
 * a Kafka fetch can send segment bytes unchanged. Layout (big-endian):
 *
 *   off len field
 *    0   8  baseOffset            assigned at append; not covered by the CRC
 *    8   4  batchLength           bytes after this field (total = 12 + batchLength)
 *   12   4  partitionLeaderEpoch  0 here; not covered by the CRC
 *   16   1  magic                 2
 *   17   4  crc                   CRC-32C of bytes 21..end
 *   21   2  attributes            bits 0-2 compression, 3 timestamp type,
 *                                 4 transactional, 5 control
 *   23   4  lastOffsetDelta
 *   27   8  baseTimestamp (firstTimestamp)
 *   35   8  maxTimestamp
 *   43   8  producerId            -1 when none
 *   51   2  producerEpoch         -1 when none
 *   53   4  baseSequence          -1 when none
 *   57   4  recordCount
 *   61      records
 *
 * Each record: length varint (bytes after it), attributes int8 (0),
 * timestampDelta varlong, offsetDelta varint, keyLength varint (-1 = null),
 * key, valueLength varint (-1 = null), value, headerCount varint, then per
 * header keyLength varint, key, valueLength varint (-1 = null), value.
 *
 * Junction's own convention: the subject of a record whose subject differs
 * from its stream's name is carried as a header named ":subject" (first
 * header). Readers that map records to subjects use jn_record_subject().
 */
#ifndef JN_BATCH_H
#define JN_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../common/buf.h"
#include "../common/error.h"

#define JN_BATCH_HEADER_SIZE 61
#define JN_BATCH_LOG_OVERHEAD 12 /* baseOffset + batchLength */
#define JN_BATCH_MAGIC 2
#define JN_SUBJECT_HEADER ":subject"

enum {
    JN_BATCH_COMPRESSION_MASK = 0x07, /* 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd */
    JN_BATCH_TIMESTAMP_LOG_APPEND = 0x08,
    JN_BATCH_TRANSACTIONAL = 0x10,
    JN_BATCH_CONTROL = 0x20,
};

typedef struct jn_header {
    const uint8_t *key; /* view; not NUL-terminated */
    uint32_t key_len;
    const uint8_t *value; /* NULL when the header value is null */
    int32_t value_len;    /* -1 for null */
} jn_header_t;

/* A record as a set of views. When produced by the iterator, all pointers
 * point into the batch bytes given to jn_batch_iter_init and stay valid as
 * long as those bytes do. */
typedef struct jn_record {
    const uint8_t *key;    /* NULL when null */
    int32_t key_len;       /* -1 for null */
    const uint8_t *value;  /* NULL when null (a tombstone) */
    int32_t value_len;     /* -1 for null */
    int64_t timestamp;     /* ms since epoch */
    int64_t offset;        /* absolute offset (iterator output only) */
    uint32_t header_count;
    const jn_header_t *headers; /* builder input: array of header_count */
} jn_record_t;

/* Parsed fixed header of a batch. */
typedef struct jn_batch_info {
    int64_t base_offset;
    int32_t batch_length;   /* bytes after the length field */
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t record_count;
} jn_batch_info_t;

static inline size_t jn_batch_total_size(const jn_batch_info_t *bi) {
    return (size_t)bi->batch_length + JN_BATCH_LOG_OVERHEAD;
}

/* Parses and validates the fixed header of the batch at |p|. Checks magic,
 * that batchLength is at least the header size and at most |max_size|, that
 * recordCount and lastOffsetDelta are sane. Does not check the CRC.
 * Returns the batch's total size (12 + batchLength) when all of it is within
 * |len|, JN_EPARTIAL when |len| is too short for the header or the whole
 * batch (the header is still filled in once its 61 bytes are there),
 * JN_EPROTO when a field is invalid, JN_ETOOBIG when larger than |max_size|. */
int jn_batch_parse(const uint8_t *p, size_t len, size_t max_size, jn_batch_info_t *out);

/* Verifies the CRC of a complete batch of |len| bytes (as returned by
 * jn_batch_parse). Returns 0 or JN_ECORRUPT. */
int jn_batch_verify_crc(const uint8_t *p, size_t len);

/* Rewrites baseOffset in place (not covered by the CRC). */
static inline void jn_batch_set_base_offset(uint8_t *p, int64_t off) {
    jn_store_be64(p, (uint64_t)off);
}

/* Builder: appends one uncompressed batch to a jn_buf_t.
 *
 *   jn_batch_builder_t b;
 *   jn_batch_builder_begin(&b, out);      // reserves the header
 *   jn_batch_builder_add(&b, &rec);       // any number of times
 *   jn_batch_builder_finish(&b);          // fills the header and CRC
 *
 * The batch starts at out->len as it was at begin. baseOffset is written as
 * 0; the log sets it on append. baseTimestamp is the first record's
 * timestamp; deltas are relative to it. A failed add (JN_ETOOBIG past the
 * buffer's cap, JN_ENOMEM) leaves the builder as it was before that add, so
 * the caller may finish the batch without it. */
typedef struct jn_batch_builder {
    jn_buf_t *out;
    size_t start;       /* position of the batch in out */
    int32_t count;
    int64_t base_ts;
    int64_t max_ts;
    int64_t producer_id;    /* -1 by default */
    int16_t producer_epoch; /* -1 by default */
    int32_t base_sequence;  /* -1 by default */
} jn_batch_builder_t;

int jn_batch_builder_begin(jn_batch_builder_t *b, jn_buf_t *out) JN_MUST_CHECK;
int jn_batch_builder_add(jn_batch_builder_t *b, const jn_record_t *rec) JN_MUST_CHECK;
/* Returns the size of the finished batch in bytes. JN_EINVAL when empty. */
int jn_batch_builder_finish(jn_batch_builder_t *b) JN_MUST_CHECK;
/* Size one record adds to a batch (for planning): an upper bound, exact
 * but for the timestamp and offset deltas, which are counted at their widest
 * (at most 14 bytes more than the real size). 0 when |rec| is invalid. */
size_t jn_batch_record_size(const jn_record_t *rec);

/* Iterator over the records of one complete batch.
 * jn_batch_iter_init validates the header (jn_batch_parse) and, when
 * |verify_crc|, the CRC; returns 0, JN_EPROTO, JN_ECORRUPT, or
 * JN_EUNSUPPORTED for a compressed batch (use jn_batch_iter_init_scratch
 * to read those). jn_batch_iter_next returns 1 with |rec| filled (headers
 * decoded into the iterator's header array, up to JN_BATCH_MAX_HEADERS;
 * more is JN_ETOOBIG), 0 at the end, or JN_EPROTO if a record is
 * malformed (lengths past the batch, overlong varints, record count
 * mismatch). Views stay valid while the batch bytes do, and the header
 * array until the next call. Control batches yield no records. */
#define JN_BATCH_MAX_HEADERS 64
typedef struct jn_batch_iter {
    const uint8_t *p;   /* next record */
    const uint8_t *end; /* end of the batch */
    jn_batch_info_t info;
    int32_t index;      /* records returned so far */
    jn_header_t headers[JN_BATCH_MAX_HEADERS];
} jn_batch_iter_t;

int jn_batch_iter_init(jn_batch_iter_t *it, const uint8_t *p, size_t len, bool verify_crc) JN_MUST_CHECK;
int jn_batch_iter_next(jn_batch_iter_t *it, jn_record_t *rec) JN_MUST_CHECK;

/* Like jn_batch_iter_init, but a compressed batch (gzip, snappy, lz4,
 * zstd: see compress.h) is decompressed into |scratch|, whose content is
 * replaced (reset first; the caller keeps and frees it, and reusing one
 * buffer across batches makes it allocation-free once warm). The records
 * are then views into |scratch| (keys, values, headers) and stay valid
 * until it is changed or freed; offsets and timestamps come from the
 * batch header as for an uncompressed batch. At most
 * JN_BATCH_MAX_DECOMPRESSED bytes (or |scratch|'s cap when lower) are
 * produced: more is JN_ETOOBIG. Uncompressed batches do not touch
 * |scratch|. With |scratch| NULL this is jn_batch_iter_init. Returns 0,
 * JN_EPROTO (bad header, unknown codec, corrupt or truncated compressed
 * data), JN_ECORRUPT (CRC), JN_ETOOBIG, JN_ENOMEM. */
#define JN_BATCH_MAX_DECOMPRESSED ((size_t)64 << 20)
int jn_batch_iter_init_scratch(jn_batch_iter_t *it, const uint8_t *p, size_t len, bool verify_crc,
                               jn_buf_t *scratch) JN_MUST_CHECK;

/* Finds the subject of |rec| in stream |stream|: the ":subject" header when
 * present, the stream name otherwise. Sets *len; returns a view. */
const char *jn_record_subject(const jn_record_t *rec, const char *stream, size_t stream_len,
                              size_t *len);

#endif
