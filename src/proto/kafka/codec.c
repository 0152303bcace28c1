/* codec.c - Kafka protocol primitives: framing, request headers, the
 * supported-version table, the request arena, and the reader/writer of
 * the classic and flexible encodings. Per-API decoders live in
 * codec_data.c, codec_group.c and codec_admin.c.
 */
#include "codec.h"

#include <stdlib.h>
#include <string.h>

#include "../../common/varint.h"

/* Supported and advertised ranges. Kept in key order (ApiVersions lists
 * them as they are here). The flexible thresholds are Kafka's. */
static const jn_kafka_api_range_t apis[] = {
    /* Produce from v0, as Kafka 3 brokers advertise it: librdkafka before
     * 2.10 compresses with gzip, snappy and lz4 only when the broker's
     * Produce range includes v0. v0-2 requests are parsed and answered;
     * their message sets v0/v1 get UNSUPPORTED_FOR_MESSAGE_FORMAT. */
    {JN_KAPI_PRODUCE, 0, 9, 9, "Produce"},
    {JN_KAPI_FETCH, 4, 12, 12, "Fetch"},
    {JN_KAPI_LIST_OFFSETS, 1, 7, 6, "ListOffsets"},
    {JN_KAPI_METADATA, 0, 12, 9, "Metadata"},
    {JN_KAPI_OFFSET_COMMIT, 0, 8, 8, "OffsetCommit"},
    {JN_KAPI_OFFSET_FETCH, 0, 8, 6, "OffsetFetch"},
    {JN_KAPI_FIND_COORDINATOR, 0, 4, 3, "FindCoordinator"},
    {JN_KAPI_JOIN_GROUP, 0, 9, 6, "JoinGroup"},
    {JN_KAPI_HEARTBEAT, 0, 4, 4, "Heartbeat"},
    {JN_KAPI_LEAVE_GROUP, 0, 5, 4, "LeaveGroup"},
    {JN_KAPI_SYNC_GROUP, 0, 5, 4, "SyncGroup"},
    {JN_KAPI_DESCRIBE_GROUPS, 0, 5, 5, "DescribeGroups"},
    {JN_KAPI_LIST_GROUPS, 0, 4, 3, "ListGroups"},
    {JN_KAPI_SASL_HANDSHAKE, 0, 1, INT16_MAX, "SaslHandshake"},
    {JN_KAPI_API_VERSIONS, 0, 3, 3, "ApiVersions"},
    {JN_KAPI_CREATE_TOPICS, 2, 7, 5, "CreateTopics"},
    {JN_KAPI_DELETE_TOPICS, 1, 6, 4, "DeleteTopics"},
    {JN_KAPI_INIT_PRODUCER_ID, 0, 4, 2, "InitProducerId"},
    {JN_KAPI_DESCRIBE_CONFIGS, 0, 4, 4, "DescribeConfigs"},
    {JN_KAPI_SASL_AUTHENTICATE, 0, 2, 2, "SaslAuthenticate"},
    {JN_KAPI_CREATE_PARTITIONS, 0, 3, 2, "CreatePartitions"},
};
#define NAPIS (sizeof apis / sizeof apis[0])

const jn_kafka_api_range_t *jn_kafka_apis(size_t *n)
{
    *n = NAPIS;
    return apis;
}

const jn_kafka_api_range_t *jn_kafka_api_find(int16_t key)
{
    for (size_t i = 0; i < NAPIS; i++)
        if (apis[i].key == key)
            return &apis[i];
    return NULL;
}

bool jn_kafka_version_supported(int16_t key, int16_t version)
{
    const jn_kafka_api_range_t *r = jn_kafka_api_find(key);
    return r && version >= r->min && version <= r->max;
}

bool jn_kafka_is_flexible(int16_t key, int16_t version)
{
    const jn_kafka_api_range_t *r = jn_kafka_api_find(key);
    return r && version >= r->flex_min;
}

int jn_kafka_response_header_version(int16_t key, int16_t version)
{
    if (key == JN_KAPI_API_VERSIONS)
        return 0;
    return jn_kafka_is_flexible(key, version) ? 1 : 0;
}

int jn_kafka_frame(const uint8_t *p, size_t len, size_t max_size, const uint8_t **body, size_t *body_len,
                   size_t *frame_len)
{
    if (len < 4) {
        *frame_len = 4;
        return JN_EPARTIAL;
    }
    int32_t size = (int32_t)jn_load_be32(p);
    if (size < 0)
        return JN_EPROTO;
    if ((size_t)size > max_size)
        return JN_ETOOBIG;
    if (size < 8) /* key, version, correlation id, client id length */
        return JN_EPROTO;
    *frame_len = 4 + (size_t)size;
    if (len < *frame_len)
        return JN_EPARTIAL;
    *body = p + 4;
    *body_len = (size_t)size;
    return 0;
}

int jn_kafka_parse_header(const uint8_t *body, size_t len, jn_kafka_header_t *h)
{
    jn_kreader_t r;
    jn_kreader_init(&r, body, len, false);
    h->api_key = jn_kr_i16(&r);
    h->api_version = jn_kr_i16(&r);
    h->correlation_id = jn_kr_i32(&r);
    /* The client id stays a classic nullable string even in header v2. */
    h->client_id = jn_kr_nstr(&r);
    h->flexible = jn_kafka_is_flexible(h->api_key, h->api_version);
    /* An ApiVersions of a version we do not know is answered from the
     * header alone (as v0), so its tagged fields are not required. */
    if (h->api_key == JN_KAPI_API_VERSIONS && !jn_kafka_version_supported(h->api_key, h->api_version))
        h->flexible = false;
    if (h->flexible) {
        r.flex = true;
        jn_kr_tags(&r);
    }
    if (r.err)
        return JN_EPROTO;
    return (int)(r.p - body);
}

/* ---- arena ---- */

struct jn_karena_chunk {
    jn_karena_chunk_t *next;
    max_align_t data[];
};

void jn_karena_init(jn_karena_t *a, size_t max)
{
    a->head = NULL;
    a->used = 0;
    a->max = max;
}

void *jn_karena_alloc(jn_karena_t *a, size_t n, size_t size)
{
    if (n == 0)
        n = 1;
    if (size && n > (SIZE_MAX / 2) / size)
        return NULL;
    size_t bytes = n * size;
    if (bytes > a->max || a->used + bytes > a->max)
        return NULL;
    jn_karena_chunk_t *c = calloc(1, sizeof *c + bytes);
    if (!c)
        return NULL;
    c->next = a->head;
    a->head = c;
    a->used += bytes;
    return c->data;
}

void jn_karena_free(jn_karena_t *a)
{
    jn_karena_chunk_t *c = a->head;
    while (c) {
        jn_karena_chunk_t *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->used = 0;
}

/* ---- reader ---- */

void jn_kreader_init(jn_kreader_t *r, const uint8_t *p, size_t len, bool flex)
{
    r->p = p;
    r->end = p + len;
    r->flex = flex;
    r->err = 0;
}

size_t jn_kr_left(const jn_kreader_t *r)
{
    return (size_t)(r->end - r->p);
}

static const uint8_t *take(jn_kreader_t *r, size_t n)
{
    if (r->err || jn_kr_left(r) < n) {
        r->err = JN_EPROTO;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

int8_t jn_kr_i8(jn_kreader_t *r)
{
    const uint8_t *p = take(r, 1);
    return p ? (int8_t)p[0] : 0;
}

int16_t jn_kr_i16(jn_kreader_t *r)
{
    const uint8_t *p = take(r, 2);
    return p ? (int16_t)jn_load_be16(p) : 0;
}

int32_t jn_kr_i32(jn_kreader_t *r)
{
    const uint8_t *p = take(r, 4);
    return p ? (int32_t)jn_load_be32(p) : 0;
}

int64_t jn_kr_i64(jn_kreader_t *r)
{
    const uint8_t *p = take(r, 8);
    return p ? (int64_t)jn_load_be64(p) : 0;
}

bool jn_kr_bool(jn_kreader_t *r)
{
    return jn_kr_i8(r) != 0;
}

uint32_t jn_kr_uvarint(jn_kreader_t *r)
{
    if (r->err)
        return 0;
    uint32_t v = 0;
    int n = jn_uvarint_get(r->p, jn_kr_left(r), &v);
    if (n <= 0) {
        r->err = JN_EPROTO;
        return 0;
    }
    r->p += n;
    return v;
}

void jn_kr_uuid(jn_kreader_t *r, uint8_t out[16])
{
    const uint8_t *p = take(r, 16);
    if (p)
        memcpy(out, p, 16);
    else
        memset(out, 0, 16);
}

/* Length of a string/bytes field: classic int16/int32 or compact
 * uvarint(len + 1). -1 for null. */
static int64_t read_len(jn_kreader_t *r, bool is_bytes)
{
    if (r->flex) {
        uint32_t v = jn_kr_uvarint(r);
        if (r->err)
            return 0;
        return (int64_t)v - 1;
    }
    return is_bytes ? jn_kr_i32(r) : jn_kr_i16(r);
}

jn_kstr_t jn_kr_nstr(jn_kreader_t *r)
{
    jn_kstr_t s = {NULL, -1};
    int64_t n = read_len(r, false);
    if (r->err || n < 0) {
        if (n < -1)
            r->err = JN_EPROTO;
        return s;
    }
    const uint8_t *p = take(r, (size_t)n);
    if (!p)
        return s;
    s.p = (const char *)p;
    s.len = (int32_t)n;
    return s;
}

jn_kstr_t jn_kr_str(jn_kreader_t *r)
{
    jn_kstr_t s = jn_kr_nstr(r);
    if (!r->err && s.len < 0) {
        r->err = JN_EPROTO;
        s.len = 0;
    }
    if (r->err) {
        s.p = "";
        s.len = 0;
    }
    return s;
}

const uint8_t *jn_kr_bytes(jn_kreader_t *r, int32_t *len)
{
    *len = -1;
    int64_t n = read_len(r, true);
    if (r->err || n < 0) {
        if (n < -1)
            r->err = JN_EPROTO;
        return NULL;
    }
    const uint8_t *p = take(r, (size_t)n);
    if (!p)
        return NULL;
    *len = (int32_t)n;
    return p;
}

int32_t jn_kr_array(jn_kreader_t *r, bool nullable, size_t min_elem)
{
    int64_t n;
    if (r->flex) {
        uint32_t v = jn_kr_uvarint(r);
        n = (int64_t)v - 1;
    } else {
        n = jn_kr_i32(r);
    }
    if (r->err)
        return 0;
    if (n < 0) {
        if (n == -1 && nullable)
            return -1;
        r->err = JN_EPROTO;
        return 0;
    }
    if (min_elem == 0)
        min_elem = 1;
    if ((uint64_t)n > jn_kr_left(r) / min_elem) {
        r->err = JN_EPROTO;
        return 0;
    }
    return (int32_t)n;
}

void jn_kr_tags(jn_kreader_t *r)
{
    if (!r->flex || r->err)
        return;
    uint32_t n = jn_kr_uvarint(r);
    for (uint32_t i = 0; i < n && !r->err; i++) {
        (void)jn_kr_uvarint(r); /* tag */
        uint32_t size = jn_kr_uvarint(r);
        (void)take(r, size);
    }
}

/* ---- writer ---- */

void jn_kwriter_init(jn_kwriter_t *w, jn_buf_t *b, bool flex)
{
    w->b = b;
    w->flex = flex;
    w->err = 0;
}

void jn_kw_raw(jn_kwriter_t *w, const void *p, size_t n)
{
    if (w->err || n == 0)
        return;
    int rc = jn_buf_append(w->b, p, n);
    if (rc)
        w->err = rc;
}

void jn_kw_i8(jn_kwriter_t *w, int8_t v)
{
    uint8_t b = (uint8_t)v;
    jn_kw_raw(w, &b, 1);
}

void jn_kw_i16(jn_kwriter_t *w, int16_t v)
{
    uint8_t b[2];
    jn_store_be16(b, (uint16_t)v);
    jn_kw_raw(w, b, 2);
}

void jn_kw_i32(jn_kwriter_t *w, int32_t v)
{
    uint8_t b[4];
    jn_store_be32(b, (uint32_t)v);
    jn_kw_raw(w, b, 4);
}

void jn_kw_i64(jn_kwriter_t *w, int64_t v)
{
    uint8_t b[8];
    jn_store_be64(b, (uint64_t)v);
    jn_kw_raw(w, b, 8);
}

void jn_kw_bool(jn_kwriter_t *w, bool v)
{
    jn_kw_i8(w, v ? 1 : 0);
}

void jn_kw_uvarint(jn_kwriter_t *w, uint32_t v)
{
    uint8_t b[JN_VARINT_MAX];
    jn_kw_raw(w, b, jn_uvarint_put(b, v));
}

void jn_kw_uuid(jn_kwriter_t *w, const uint8_t v[16])
{
    jn_kw_raw(w, v, 16);
}

void jn_kw_str(jn_kwriter_t *w, const char *p, int32_t len)
{
    if (!p)
        len = -1;
    if (w->flex)
        jn_kw_uvarint(w, (uint32_t)(len + 1));
    else
        jn_kw_i16(w, (int16_t)len);
    if (len > 0)
        jn_kw_raw(w, p, (size_t)len);
}

void jn_kw_cstr(jn_kwriter_t *w, const char *s)
{
    jn_kw_str(w, s, s ? (int32_t)strlen(s) : -1);
}

void jn_kw_bytes_len(jn_kwriter_t *w, int32_t len)
{
    if (w->flex)
        jn_kw_uvarint(w, (uint32_t)(len + 1));
    else
        jn_kw_i32(w, len);
}

void jn_kw_bytes(jn_kwriter_t *w, const void *p, int32_t len)
{
    if (!p && len > 0)
        len = -1;
    jn_kw_bytes_len(w, len);
    if (len > 0)
        jn_kw_raw(w, p, (size_t)len);
}

void jn_kw_array(jn_kwriter_t *w, int32_t n)
{
    if (w->flex)
        jn_kw_uvarint(w, (uint32_t)(n + 1));
    else
        jn_kw_i32(w, n);
}

void jn_kw_tags(jn_kwriter_t *w)
{
    if (w->flex)
        jn_kw_uvarint(w, 0);
}

/* ---- dispatch ---- */

_Static_assert(sizeof(jn_kafka_fetch_req_t) <= JN_KAFKA_REQ_MAX, "JN_KAFKA_REQ_MAX");
_Static_assert(sizeof(jn_kafka_join_group_req_t) <= JN_KAFKA_REQ_MAX, "JN_KAFKA_REQ_MAX");
_Static_assert(sizeof(jn_kafka_sync_group_req_t) <= JN_KAFKA_REQ_MAX, "JN_KAFKA_REQ_MAX");
_Static_assert(sizeof(jn_kafka_offset_commit_req_t) <= JN_KAFKA_REQ_MAX, "JN_KAFKA_REQ_MAX");
_Static_assert(sizeof(jn_kafka_create_topics_req_t) <= JN_KAFKA_REQ_MAX, "JN_KAFKA_REQ_MAX");

int jn_kafka_decode_request(const jn_kafka_header_t *h, const uint8_t *body, size_t len, jn_karena_t *a,
                            void *out)
{
    if (!jn_kafka_version_supported(h->api_key, h->api_version))
        return JN_EUNSUPPORTED;
    jn_kreader_t r;
    jn_kreader_init(&r, body, len, h->flexible);
    int16_t v = h->api_version;
    memset(out, 0, JN_KAFKA_REQ_MAX);
    switch (h->api_key) {
    case JN_KAPI_PRODUCE: return jn_kafka_decode_produce(&r, v, a, out);
    case JN_KAPI_FETCH: return jn_kafka_decode_fetch(&r, v, a, out);
    case JN_KAPI_LIST_OFFSETS: return jn_kafka_decode_list_offsets(&r, v, a, out);
    case JN_KAPI_METADATA: return jn_kafka_decode_metadata(&r, v, a, out);
    case JN_KAPI_OFFSET_COMMIT: return jn_kafka_decode_offset_commit(&r, v, a, out);
    case JN_KAPI_OFFSET_FETCH: return jn_kafka_decode_offset_fetch(&r, v, a, out);
    case JN_KAPI_FIND_COORDINATOR: return jn_kafka_decode_find_coordinator(&r, v, a, out);
    case JN_KAPI_JOIN_GROUP: return jn_kafka_decode_join_group(&r, v, a, out);
    case JN_KAPI_HEARTBEAT: return jn_kafka_decode_heartbeat(&r, v, a, out);
    case JN_KAPI_LEAVE_GROUP: return jn_kafka_decode_leave_group(&r, v, a, out);
    case JN_KAPI_SYNC_GROUP: return jn_kafka_decode_sync_group(&r, v, a, out);
    case JN_KAPI_DESCRIBE_GROUPS: return jn_kafka_decode_describe_groups(&r, v, a, out);
    case JN_KAPI_LIST_GROUPS: return jn_kafka_decode_list_groups(&r, v, a, out);
    case JN_KAPI_SASL_HANDSHAKE: return jn_kafka_decode_sasl_handshake(&r, v, a, out);
    case JN_KAPI_API_VERSIONS: return jn_kafka_decode_api_versions(&r, v, a, out);
    case JN_KAPI_CREATE_TOPICS: return jn_kafka_decode_create_topics(&r, v, a, out);
    case JN_KAPI_DELETE_TOPICS: return jn_kafka_decode_delete_topics(&r, v, a, out);
    case JN_KAPI_INIT_PRODUCER_ID: return jn_kafka_decode_init_producer_id(&r, v, a, out);
    case JN_KAPI_DESCRIBE_CONFIGS: return jn_kafka_decode_describe_configs(&r, v, a, out);
    case JN_KAPI_SASL_AUTHENTICATE: return jn_kafka_decode_sasl_authenticate(&r, v, a, out);
    case JN_KAPI_CREATE_PARTITIONS: return jn_kafka_decode_create_partitions(&r, v, a, out);
    default: return JN_EUNSUPPORTED;
    }
}
