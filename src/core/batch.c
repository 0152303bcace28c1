/* batch.c - Kafka RecordBatch v2: building, header parsing, CRC checks and
 * record iteration. The byte layout is documented in batch.h.
 *
 * Batches arrive from peers (Kafka Produce) and from disk, so the reader
 * treats every byte as hostile: each varint is bounded by the batch end,
 * each length by the end of its record, a record must consume exactly the
 * bytes its length announces, and the number of records must equal
 * recordCount. A malformed record is JN_EPROTO and the iterator stays at it
 * (calling again returns the same error), so it can never read past the
 * batch or return a partial view.
 *
 * Validity rules enforced by jn_batch_parse:
 *   - magic is 2, baseOffset >= 0, batchLength >= 49 (a header, no records);
 *   - recordCount >= 0 and lastOffsetDelta >= 0, lastOffsetDelta >=
 *     recordCount - 1 (offset deltas are distinct and increasing; compaction
 *     may leave gaps, never overlaps), baseOffset + lastOffsetDelta fits;
 *   - uncompressed: recordCount * 7 (the smallest record) fits in the body
 *     (compressed: in the decompressed records, checked by the iterator).
 *
 * Compressed batches are decompressed by jn_batch_iter_init_scratch into a
 * caller's buffer (compress.c); the plain jn_batch_iter_init keeps refusing
 * them with JN_EUNSUPPORTED for callers without one.
 */
#include "batch.h"

#include <limits.h>
#include <string.h>

#include "../common/crc32c.h"
#include "compress.h"
#include "../common/varint.h"

#define BATCH_MIN_LENGTH (JN_BATCH_HEADER_SIZE - JN_BATCH_LOG_OVERHEAD)
#define BATCH_CRC_OFFSET 17
#define BATCH_ATTR_OFFSET 21 /* the CRC covers from here to the end */
#define RECORD_MIN_SIZE 7    /* length, attributes, ts, offset, key, value, headers: 1 byte each */
/* The largest batch we produce or accept: its total size must fit an int. */
#define BATCH_MAX_TOTAL ((size_t)INT32_MAX)

/* ---- parsing ------------------------------------------------------------ */

int jn_batch_parse(const uint8_t *p, size_t len, size_t max_size, jn_batch_info_t *out)
{
    if (len < JN_BATCH_HEADER_SIZE)
        return JN_EPARTIAL;
    out->base_offset = (int64_t)jn_load_be64(p);
    out->batch_length = (int32_t)jn_load_be32(p + 8);
    uint8_t magic = p[16];
    out->crc = jn_load_be32(p + 17);
    out->attributes = (int16_t)jn_load_be16(p + 21);
    out->last_offset_delta = (int32_t)jn_load_be32(p + 23);
    out->base_timestamp = (int64_t)jn_load_be64(p + 27);
    out->max_timestamp = (int64_t)jn_load_be64(p + 35);
    out->producer_id = (int64_t)jn_load_be64(p + 43);
    out->producer_epoch = (int16_t)jn_load_be16(p + 51);
    out->base_sequence = (int32_t)jn_load_be32(p + 53);
    out->record_count = (int32_t)jn_load_be32(p + 57);

    if (magic != JN_BATCH_MAGIC)
        return JN_EPROTO;
    if (out->batch_length < BATCH_MIN_LENGTH)
        return JN_EPROTO;
    if (out->base_offset < 0)
        return JN_EPROTO;
    if (out->record_count < 0 || out->last_offset_delta < 0)
        return JN_EPROTO;
    if (out->record_count > 0 && out->last_offset_delta < out->record_count - 1)
        return JN_EPROTO;
    if (out->base_offset > INT64_MAX - out->last_offset_delta)
        return JN_EPROTO;
    size_t body = (size_t)out->batch_length - BATCH_MIN_LENGTH;
    if ((out->attributes & JN_BATCH_COMPRESSION_MASK) == 0 &&
        (uint64_t)out->record_count * RECORD_MIN_SIZE > body)
        return JN_EPROTO;

    size_t total = jn_batch_total_size(out);
    if (total > max_size || total > BATCH_MAX_TOTAL)
        return JN_ETOOBIG;
    if (len < total)
        return JN_EPARTIAL;
    return (int)total;
}

int jn_batch_verify_crc(const uint8_t *p, size_t len)
{
    if (len < JN_BATCH_HEADER_SIZE)
        return JN_ECORRUPT;
    uint32_t want = jn_load_be32(p + BATCH_CRC_OFFSET);
    uint32_t got = jn_crc32c(0, p + BATCH_ATTR_OFFSET, len - BATCH_ATTR_OFFSET);
    return want == got ? 0 : JN_ECORRUPT;
}

/* ---- building ----------------------------------------------------------- */

int jn_batch_builder_begin(jn_batch_builder_t *b, jn_buf_t *out)
{
    static const uint8_t zero[JN_BATCH_HEADER_SIZE];
    if (!out)
        return JN_EINVAL;
    b->out = out;
    b->start = out->len;
    b->count = 0;
    b->base_ts = 0;
    b->max_ts = 0;
    b->producer_id = -1;
    b->producer_epoch = -1;
    b->base_sequence = -1;
    /* The header is reserved now and filled in by finish, once the record
     * count, timestamps and CRC are known. */
    return jn_buf_append(out, zero, sizeof zero);
}

/* Size of a length-prefixed field (varint length, then bytes); null is -1. */
static uint64_t field_size(int32_t len)
{
    return jn_varint_size(len) + (len > 0 ? (uint64_t)len : 0);
}

/* Bytes of a record after its length varint. 0 when |rec| is invalid. */
static uint64_t record_body_size(const jn_record_t *rec, int64_t ts_delta, int32_t offset_delta)
{
    if (rec->key_len < -1 || (rec->key_len > 0 && !rec->key))
        return 0;
    if (rec->value_len < -1 || (rec->value_len > 0 && !rec->value))
        return 0;
    if (rec->header_count > INT32_MAX || (rec->header_count > 0 && !rec->headers))
        return 0;
    uint64_t n = 1 + jn_varlong_size(ts_delta) + jn_varint_size(offset_delta);
    n += field_size(rec->key_len) + field_size(rec->value_len);
    n += jn_varint_size((int32_t)rec->header_count);
    for (uint32_t i = 0; i < rec->header_count; i++) {
        const jn_header_t *h = &rec->headers[i];
        if (h->key_len > INT32_MAX || (h->key_len > 0 && !h->key))
            return 0;
        if (h->value_len < -1 || (h->value_len > 0 && !h->value))
            return 0;
        n += field_size((int32_t)h->key_len) + field_size(h->value_len);
        if (n > INT32_MAX)
            return n; /* the caller rejects it as too big; stop summing */
    }
    return n;
}

size_t jn_batch_record_size(const jn_record_t *rec)
{
    /* The deltas depend on the batch the record joins; assume their widest
     * encodings so that this is an upper bound for planning. */
    uint64_t body = record_body_size(rec, INT64_MIN, INT32_MIN);
    if (body == 0)
        return 0;
    if (body > INT32_MAX)
        return (size_t)body + JN_VARINT_MAX; /* too big for any batch anyway */
    return (size_t)body + jn_varint_size((int32_t)body);
}

static uint8_t *put_field(uint8_t *w, const uint8_t *data, int32_t len)
{
    w += jn_varint_put(w, len);
    if (len > 0) {
        memcpy(w, data, (size_t)len);
        w += len;
    }
    return w;
}

int jn_batch_builder_add(jn_batch_builder_t *b, const jn_record_t *rec)
{
    if (!b->out || !rec)
        return JN_EINVAL;
    if (b->count == INT32_MAX)
        return JN_ETOOBIG;
    int64_t base_ts = b->count == 0 ? rec->timestamp : b->base_ts;
    /* Wrapping subtraction: far-apart timestamps still encode (as Kafka's
     * long arithmetic does) instead of being undefined behaviour. */
    int64_t ts_delta = (int64_t)((uint64_t)rec->timestamp - (uint64_t)base_ts);
    int32_t offset_delta = b->count;

    uint64_t body = record_body_size(rec, ts_delta, offset_delta);
    if (body == 0)
        return JN_EINVAL;
    if (body > INT32_MAX)
        return JN_ETOOBIG;
    uint64_t size = jn_varint_size((int32_t)body) + body;
    size_t batch_so_far = b->out->len - b->start;
    if (size > BATCH_MAX_TOTAL - batch_so_far)
        return JN_ETOOBIG;
    int rc = jn_buf_reserve(b->out, (size_t)size);
    if (rc < 0)
        return rc;

    uint8_t *w = b->out->data + b->out->len;
    w += jn_varint_put(w, (int32_t)body);
    *w++ = 0; /* record attributes: unused in v2 */
    w += jn_varlong_put(w, ts_delta);
    w += jn_varint_put(w, offset_delta);
    w = put_field(w, rec->key, rec->key_len);
    w = put_field(w, rec->value, rec->value_len);
    w += jn_varint_put(w, (int32_t)rec->header_count);
    for (uint32_t i = 0; i < rec->header_count; i++) {
        const jn_header_t *h = &rec->headers[i];
        w = put_field(w, h->key, (int32_t)h->key_len);
        w = put_field(w, h->value, h->value_len);
    }
    b->out->len += (size_t)size;

    b->base_ts = base_ts;
    if (b->count == 0 || rec->timestamp > b->max_ts)
        b->max_ts = rec->timestamp;
    b->count++;
    return 0;
}

int jn_batch_builder_finish(jn_batch_builder_t *b)
{
    if (!b->out)
        return JN_EINVAL;
    if (b->count == 0) {
        /* Drop the reserved header: an empty batch is never written. */
        b->out->len = b->start;
        return JN_EINVAL;
    }
    uint8_t *p = b->out->data + b->start;
    size_t total = b->out->len - b->start;
    jn_store_be64(p, 0);
    jn_store_be32(p + 8, (uint32_t)(total - JN_BATCH_LOG_OVERHEAD));
    jn_store_be32(p + 12, 0); /* partitionLeaderEpoch */
    p[16] = JN_BATCH_MAGIC;
    jn_store_be16(p + 21, 0); /* uncompressed, CreateTime, not transactional */
    jn_store_be32(p + 23, (uint32_t)(b->count - 1));
    jn_store_be64(p + 27, (uint64_t)b->base_ts);
    jn_store_be64(p + 35, (uint64_t)b->max_ts);
    jn_store_be64(p + 43, (uint64_t)b->producer_id);
    jn_store_be16(p + 51, (uint16_t)b->producer_epoch);
    jn_store_be32(p + 53, (uint32_t)b->base_sequence);
    jn_store_be32(p + 57, (uint32_t)b->count);
    jn_store_be32(p + BATCH_CRC_OFFSET,
                  jn_crc32c(0, p + BATCH_ATTR_OFFSET, total - BATCH_ATTR_OFFSET));
    return (int)total;
}

/* ---- iteration ---------------------------------------------------------- */

int jn_batch_iter_init(jn_batch_iter_t *it, const uint8_t *p, size_t len, bool verify_crc)
{
    return jn_batch_iter_init_scratch(it, p, len, verify_crc, NULL);
}

int jn_batch_iter_init_scratch(jn_batch_iter_t *it, const uint8_t *p, size_t len, bool verify_crc,
                               jn_buf_t *scratch)
{
    memset(&it->info, 0, sizeof it->info);
    it->p = it->end = p;
    it->index = 0;
    int rc = jn_batch_parse(p, len, len, &it->info);
    if (rc < 0)
        return rc == JN_EPARTIAL || rc == JN_ETOOBIG ? JN_EPROTO : rc;
    size_t total = (size_t)rc;
    if (verify_crc && jn_batch_verify_crc(p, total) < 0)
        return JN_ECORRUPT;
    int compression = it->info.attributes & JN_BATCH_COMPRESSION_MASK;
    if (compression > 4)
        return JN_EPROTO;
    if (compression != 0 && !(it->info.attributes & JN_BATCH_CONTROL)) {
        if (!scratch)
            return JN_EUNSUPPORTED;
        /* The records become views into |scratch|; the bounds checks of
         * jn_batch_iter_next apply to the decompressed bytes as to any. */
        jn_buf_reset(scratch);
        int64_t n = jn_decompress(compression, p + JN_BATCH_HEADER_SIZE, total - JN_BATCH_HEADER_SIZE, scratch,
                                  JN_BATCH_MAX_DECOMPRESSED);
        if (n < 0)
            return (int)n;
        if ((uint64_t)it->info.record_count * RECORD_MIN_SIZE > (uint64_t)n)
            return JN_EPROTO;
        it->p = scratch->data ? scratch->data : p; /* p: any non-NULL pointer for an empty range */
        it->end = it->p + n;
        return 0;
    }
    it->end = p + total;
    /* Control records (transaction markers) are Kafka's bookkeeping, not
     * data: a control batch iterates as empty. */
    it->p = (it->info.attributes & JN_BATCH_CONTROL) ? it->end : p + JN_BATCH_HEADER_SIZE;
    return 0;
}

/* Reads a length-prefixed field bounded by |end|: -1 is null, other negative
 * lengths and lengths past |end| are malformed. */
static int get_field(const uint8_t **pp, const uint8_t *end, const uint8_t **data, int32_t *len)
{
    int n = jn_varint_get(*pp, (size_t)(end - *pp), len);
    if (n < 0)
        return JN_EPROTO;
    *pp += n;
    if (*len == -1) {
        *data = NULL;
        return 0;
    }
    if (*len < 0 || *len > end - *pp)
        return JN_EPROTO;
    *data = *pp;
    *pp += *len;
    return 0;
}

int jn_batch_iter_next(jn_batch_iter_t *it, jn_record_t *rec)
{
    const jn_batch_info_t *bi = &it->info;
    if (it->info.attributes & JN_BATCH_CONTROL)
        return 0;
    if (it->index >= bi->record_count)
        return it->p == it->end ? 0 : JN_EPROTO; /* trailing bytes */

    /* Parse into locals; |it| advances only when the whole record is valid. */
    const uint8_t *q = it->p;
    int32_t rlen;
    int n = jn_varint_get(q, (size_t)(it->end - q), &rlen);
    if (n < 0)
        return JN_EPROTO;
    q += n;
    if (rlen < 0 || rlen > it->end - q)
        return JN_EPROTO;
    const uint8_t *rend = q + rlen;

    if (q >= rend)
        return JN_EPROTO;
    q++; /* attributes: unused in v2, ignored as Kafka does */

    int64_t ts_delta;
    n = jn_varlong_get(q, (size_t)(rend - q), &ts_delta);
    if (n < 0)
        return JN_EPROTO;
    q += n;

    int32_t off_delta;
    n = jn_varint_get(q, (size_t)(rend - q), &off_delta);
    if (n < 0)
        return JN_EPROTO;
    q += n;
    if (off_delta < 0 || off_delta > bi->last_offset_delta)
        return JN_EPROTO;

    const uint8_t *key, *value;
    int32_t key_len, value_len;
    if (get_field(&q, rend, &key, &key_len) < 0 || get_field(&q, rend, &value, &value_len) < 0)
        return JN_EPROTO;

    int32_t hcount;
    n = jn_varint_get(q, (size_t)(rend - q), &hcount);
    if (n < 0)
        return JN_EPROTO;
    q += n;
    /* Each header takes at least two bytes; check before the cap so that
     * an impossible count is malformed rather than merely too big. */
    if (hcount < 0 || hcount > (rend - q) / 2)
        return JN_EPROTO;
    if (hcount > JN_BATCH_MAX_HEADERS)
        return JN_ETOOBIG;
    for (int32_t i = 0; i < hcount; i++) {
        jn_header_t *h = &it->headers[i];
        const uint8_t *hk;
        int32_t hk_len;
        if (get_field(&q, rend, &hk, &hk_len) < 0 || hk_len < 0)
            return JN_EPROTO; /* a header key is never null */
        if (get_field(&q, rend, &h->value, &h->value_len) < 0)
            return JN_EPROTO;
        h->key = hk;
        h->key_len = (uint32_t)hk_len;
    }
    if (q != rend)
        return JN_EPROTO; /* the record's length disagrees with its fields */

    rec->key = key;
    rec->key_len = key_len;
    rec->value = value;
    rec->value_len = value_len;
    if (bi->attributes & JN_BATCH_TIMESTAMP_LOG_APPEND)
        rec->timestamp = bi->max_timestamp; /* the broker's time, for every record */
    else
        rec->timestamp = (int64_t)((uint64_t)bi->base_timestamp + (uint64_t)ts_delta);
    rec->offset = bi->base_offset + off_delta;
    rec->header_count = (uint32_t)hcount;
    rec->headers = it->headers;
    it->p = rend;
    it->index++;
    return 1;
}

/* ---- subjects ----------------------------------------------------------- */

const char *jn_record_subject(const jn_record_t *rec, const char *stream, size_t stream_len,
                              size_t *len)
{
    static const size_t hlen = sizeof(JN_SUBJECT_HEADER) - 1;
    /* Junction writes the subject as the first header, but records from
     * other producers may carry it anywhere: take the first one found. */
    for (uint32_t i = 0; rec->headers && i < rec->header_count; i++) {
        const jn_header_t *h = &rec->headers[i];
        if (h->key_len == hlen && memcmp(h->key, JN_SUBJECT_HEADER, hlen) == 0 && h->value &&
            h->value_len > 0) {
            *len = (size_t)h->value_len;
            return (const char *)h->value;
        }
    }
    *len = stream_len;
    return stream;
}
