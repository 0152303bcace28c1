/* codec_data.c - request decoders of the data-path APIs: Metadata,
 * Produce, Fetch, ListOffsets (field layout per version from Kafka's
 * message schemas).
 */
#include "codec_int.h"

int jn_kafka_decode_metadata(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_metadata_req_t *out)
{
    /* v0: an empty array means all topics; v1+: null means all. */
    int32_t n = jn_kr_array(r, v >= 1, v >= 10 ? 17 : 2);
    KCHECK(r);
    out->allow_auto_create = true;
    if (n < 0 || (v == 0 && n == 0)) {
        out->ntopics = -1;
    } else {
        out->ntopics = n;
        KALLOC(a, n, jn_kstr_t, out->topics);
        for (int32_t i = 0; i < n; i++) {
            if (v >= 10) {
                uint8_t id[16];
                jn_kr_uuid(r, id);
                out->topics[i] = jn_kr_nstr(r);
            } else {
                out->topics[i] = jn_kr_str(r);
            }
            jn_kr_tags(r);
            KCHECK(r);
        }
    }
    if (v >= 4)
        out->allow_auto_create = jn_kr_bool(r);
    if (v >= 8 && v <= 10)
        (void)jn_kr_bool(r); /* include_cluster_authorized_operations */
    if (v >= 8)
        (void)jn_kr_bool(r); /* include_topic_authorized_operations */
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_produce(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_produce_req_t *out)
{
    /* v0-2 have no transactional id (message sets v0/v1 follow). */
    if (v >= 3)
        out->transactional_id = jn_kr_nstr(r);
    else
        out->transactional_id = (jn_kstr_t){NULL, -1};
    out->acks = jn_kr_i16(r);
    out->timeout_ms = jn_kr_i32(r);
    out->ntopics = jn_kr_array(r, false, 2);
    KCHECK(r);
    KALLOC(a, out->ntopics, jn_kafka_produce_topic_t, out->topics);
    for (int32_t i = 0; i < out->ntopics; i++) {
        jn_kafka_produce_topic_t *t = &out->topics[i];
        t->name = jn_kr_str(r);
        t->nparts = jn_kr_array(r, false, 5);
        KCHECK(r);
        KALLOC(a, t->nparts, jn_kafka_produce_part_t, t->parts);
        for (int32_t j = 0; j < t->nparts; j++) {
            t->parts[j].index = jn_kr_i32(r);
            t->parts[j].records = jn_kr_bytes(r, &t->parts[j].records_len);
            jn_kr_tags(r);
            KCHECK(r);
        }
        jn_kr_tags(r);
    }
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_fetch(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_fetch_req_t *out)
{
    out->replica_id = jn_kr_i32(r);
    out->max_wait_ms = jn_kr_i32(r);
    out->min_bytes = jn_kr_i32(r);
    out->max_bytes = v >= 3 ? jn_kr_i32(r) : INT32_MAX;
    if (v >= 4)
        out->isolation_level = jn_kr_i8(r);
    out->session_epoch = -1;
    if (v >= 7) {
        out->session_id = jn_kr_i32(r);
        out->session_epoch = jn_kr_i32(r);
    }
    out->ntopics = jn_kr_array(r, false, v >= 13 ? 17 : 2);
    KCHECK(r);
    KALLOC(a, out->ntopics, jn_kafka_fetch_topic_t, out->topics);
    for (int32_t i = 0; i < out->ntopics; i++) {
        jn_kafka_fetch_topic_t *t = &out->topics[i];
        if (v >= 13)
            jn_kr_uuid(r, t->topic_id);
        else
            t->name = jn_kr_str(r);
        t->nparts = jn_kr_array(r, false, 16);
        KCHECK(r);
        KALLOC(a, t->nparts, jn_kafka_fetch_part_t, t->parts);
        for (int32_t j = 0; j < t->nparts; j++) {
            jn_kafka_fetch_part_t *p = &t->parts[j];
            p->partition = jn_kr_i32(r);
            p->current_leader_epoch = v >= 9 ? jn_kr_i32(r) : -1;
            p->fetch_offset = jn_kr_i64(r);
            if (v >= 12)
                (void)jn_kr_i32(r); /* last_fetched_epoch */
            p->log_start_offset = v >= 5 ? jn_kr_i64(r) : -1;
            p->max_bytes = jn_kr_i32(r);
            jn_kr_tags(r);
            KCHECK(r);
        }
        jn_kr_tags(r);
    }
    if (v >= 7) {
        /* forgotten_topics_data: sessions are not kept, so it only needs
         * to be skipped. */
        int32_t n = jn_kr_array(r, false, 2);
        for (int32_t i = 0; i < n && !r->err; i++) {
            if (v >= 13) {
                uint8_t id[16];
                jn_kr_uuid(r, id);
            } else {
                (void)jn_kr_str(r);
            }
            int32_t np = jn_kr_array(r, false, 4);
            for (int32_t j = 0; j < np && !r->err; j++)
                (void)jn_kr_i32(r);
            jn_kr_tags(r);
        }
    }
    if (v >= 11)
        out->rack_id = jn_kr_str(r);
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_list_offsets(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_list_offsets_req_t *out)
{
    out->replica_id = jn_kr_i32(r);
    if (v >= 2)
        out->isolation_level = jn_kr_i8(r);
    out->ntopics = jn_kr_array(r, false, 2);
    KCHECK(r);
    KALLOC(a, out->ntopics, jn_kafka_list_offsets_topic_t, out->topics);
    for (int32_t i = 0; i < out->ntopics; i++) {
        jn_kafka_list_offsets_topic_t *t = &out->topics[i];
        t->name = jn_kr_str(r);
        t->nparts = jn_kr_array(r, false, 12);
        KCHECK(r);
        KALLOC(a, t->nparts, jn_kafka_list_offsets_part_t, t->parts);
        for (int32_t j = 0; j < t->nparts; j++) {
            jn_kafka_list_offsets_part_t *p = &t->parts[j];
            p->partition = jn_kr_i32(r);
            p->current_leader_epoch = v >= 4 ? jn_kr_i32(r) : -1;
            p->timestamp = jn_kr_i64(r);
            jn_kr_tags(r);
            KCHECK(r);
        }
        jn_kr_tags(r);
    }
    jn_kr_tags(r);
    return KDONE(r);
}
