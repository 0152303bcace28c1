/* codec_admin.c - request decoders of the control APIs: ApiVersions,
 * CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
 * InitProducerId, SaslHandshake, SaslAuthenticate.
 */
#include "codec_int.h"

#include <string.h>

int jn_kafka_decode_api_versions(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_api_versions_req_t *out)
{
    (void)a;
    out->client_software_name = out->client_software_version = (jn_kstr_t){NULL, -1};
    if (v >= 3) {
        out->client_software_name = jn_kr_str(r);
        out->client_software_version = jn_kr_str(r);
        jn_kr_tags(r);
    }
    return KDONE(r);
}

int jn_kafka_decode_create_topics(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_create_topics_req_t *out)
{
    out->ntopics = jn_kr_array(r, false, 12);
    KCHECK(r);
    KALLOC(a, out->ntopics, jn_kafka_create_topic_t, out->topics);
    for (int32_t i = 0; i < out->ntopics; i++) {
        jn_kafka_create_topic_t *t = &out->topics[i];
        t->name = jn_kr_str(r);
        t->num_partitions = jn_kr_i32(r);
        t->replication_factor = jn_kr_i16(r);
        t->nassignments = jn_kr_array(r, false, 5);
        for (int32_t j = 0; j < t->nassignments && !r->err; j++) {
            (void)jn_kr_i32(r);
            int32_t nb = jn_kr_array(r, false, 4);
            for (int32_t k = 0; k < nb && !r->err; k++)
                (void)jn_kr_i32(r);
            jn_kr_tags(r);
        }
        t->nconfigs = jn_kr_array(r, false, 3);
        KCHECK(r);
        KALLOC(a, t->nconfigs, jn_kafka_config_kv_t, t->configs);
        for (int32_t j = 0; j < t->nconfigs; j++) {
            t->configs[j].name = jn_kr_str(r);
            t->configs[j].value = jn_kr_nstr(r);
            jn_kr_tags(r);
            KCHECK(r);
        }
        jn_kr_tags(r);
        KCHECK(r);
    }
    out->timeout_ms = jn_kr_i32(r);
    if (v >= 1)
        out->validate_only = jn_kr_bool(r);
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_delete_topics(jn_kreader_t *r, int16_t v, jn_karena_t *a, jn_kafka_delete_topics_req_t *out)
{
    out->ntopics = jn_kr_array(r, false, v >= 6 ? 17 : 1);
    KCHECK(r);
    KALLOC(a, out->ntopics, jn_kafka_delete_topic_t, out->topics);
    for (int32_t i = 0; i < out->ntopics; i++) {
        if (v >= 6) {
            out->topics[i].name = jn_kr_nstr(r);
            jn_kr_uuid(r, out->topics[i].topic_id);
            jn_kr_tags(r);
        } else {
            out->topics[i].name = jn_kr_str(r);
        }
        KCHECK(r);
    }
    out->timeout_ms = jn_kr_i32(r);
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_create_partitions(jn_kreader_t *r, int16_t v, jn_karena_t *a,
                                      jn_kafka_create_partitions_req_t *out)
{
    (void)v;
    out->ntopics = jn_kr_array(r, false, 9);
    KCHECK(r);
    KALLOC(a, out->ntopics, jn_kafka_create_partitions_topic_t, out->topics);
    for (int32_t i = 0; i < out->ntopics; i++) {
        jn_kafka_create_partitions_topic_t *t = &out->topics[i];
        t->name = jn_kr_str(r);
        t->count = jn_kr_i32(r);
        t->nassignments = jn_kr_array(r, true, 1);
        for (int32_t j = 0; j < t->nassignments && !r->err; j++) {
            int32_t nb = jn_kr_array(r, false, 4);
            for (int32_t k = 0; k < nb && !r->err; k++)
                (void)jn_kr_i32(r);
            jn_kr_tags(r);
        }
        jn_kr_tags(r);
        KCHECK(r);
    }
    out->timeout_ms = jn_kr_i32(r);
    out->validate_only = jn_kr_bool(r);
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_describe_configs(jn_kreader_t *r, int16_t v, jn_karena_t *a,
                                     jn_kafka_describe_configs_req_t *out)
{
    out->nresources = jn_kr_array(r, false, 4);
    KCHECK(r);
    KALLOC(a, out->nresources, jn_kafka_config_resource_t, out->resources);
    for (int32_t i = 0; i < out->nresources; i++) {
        jn_kafka_config_resource_t *res = &out->resources[i];
        res->type = jn_kr_i8(r);
        res->name = jn_kr_str(r);
        res->nkeys = jn_kr_array(r, true, 1);
        KCHECK(r);
        if (res->nkeys > 0) {
            KALLOC(a, res->nkeys, jn_kstr_t, res->keys);
            for (int32_t j = 0; j < res->nkeys; j++)
                res->keys[j] = jn_kr_str(r);
        }
        jn_kr_tags(r);
        KCHECK(r);
    }
    if (v >= 1)
        out->include_synonyms = jn_kr_bool(r);
    if (v >= 3)
        out->include_documentation = jn_kr_bool(r);
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_init_producer_id(jn_kreader_t *r, int16_t v, jn_karena_t *a,
                                     jn_kafka_init_producer_id_req_t *out)
{
    (void)a;
    out->transactional_id = jn_kr_nstr(r);
    out->transaction_timeout_ms = jn_kr_i32(r);
    out->producer_id = -1;
    out->producer_epoch = -1;
    if (v >= 3) {
        out->producer_id = jn_kr_i64(r);
        out->producer_epoch = jn_kr_i16(r);
    }
    jn_kr_tags(r);
    return KDONE(r);
}

int jn_kafka_decode_sasl_handshake(jn_kreader_t *r, int16_t v, jn_karena_t *a,
                                   jn_kafka_sasl_handshake_req_t *out)
{
    (void)v;
    (void)a;
    out->mechanism = jn_kr_str(r);
    return KDONE(r);
}

int jn_kafka_decode_sasl_authenticate(jn_kreader_t *r, int16_t v, jn_karena_t *a,
                                      jn_kafka_sasl_authenticate_req_t *out)
{
    (void)v;
    (void)a;
    out->auth_bytes = jn_kr_bytes(r, &out->auth_len);
    KCHECK(r);
    if (out->auth_len < 0)
        return JN_EPROTO;
    jn_kr_tags(r);
    return KDONE(r);
}
