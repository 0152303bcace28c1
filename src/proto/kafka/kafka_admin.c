/* kafka_admin.c - control requests of the Kafka door: ApiVersions,
 * CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs (topic
 * configs mapped to and from the stream config).
 */
#include "kafka_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"

void jn__kafka_api_versions(kconn_t *kc, int16_t unsupported)
{
    int16_t v = kc->hdr.api_version;
    jn_kwriter_t w;
    size_t mark;
    if (unsupported >= 0) {
        /* Answered as v0, the one version every client can read. */
        kc->hdr.api_version = 0;
        kc->hdr.flexible = false;
        v = 0;
    }
    jn__kafka_begin(kc, &w, &mark);
    jn_kw_i16(&w, unsupported >= 0 ? JN_KERR_UNSUPPORTED_VERSION : 0);
    size_t n;
    const jn_kafka_api_range_t *apis = jn_kafka_apis(&n);
    jn_kw_array(&w, (int32_t)n);
    for (size_t i = 0; i < n; i++) {
        jn_kw_i16(&w, apis[i].key);
        jn_kw_i16(&w, apis[i].min);
        jn_kw_i16(&w, apis[i].max);
        jn_kw_tags(&w);
    }
    if (v >= 1)
        jn_kw_i32(&w, 0);
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

/* ---- topic configs ---- */

static bool parse_i64(jn_kstr_t s, int64_t *out)
{
    char buf[32];
    if (s.len <= 0 || s.len >= (int32_t)sizeof buf)
        return false;
    jn__kafka_cstr(s, buf, sizeof buf);
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool kname_is(jn_kstr_t s, const char *n)
{
    return s.len >= 0 && (size_t)s.len == strlen(n) && memcmp(s.p, n, (size_t)s.len) == 0;
}

/* Applies Kafka topic configs to |pc|. Unknown names are ignored (they
 * concern replication or features a single node does not have). Returns
 * 0 or INVALID_CONFIG with |msg| set. */
static int16_t apply_configs(const jn_kafka_config_kv_t *c, int32_t n, jn_plog_config_t *pc, const char **msg)
{
    for (int32_t i = 0; i < n; i++) {
        int64_t v = 0;
        jn_kstr_t val = c[i].value;
        if (val.len < 0)
            continue;
        if (kname_is(c[i].name, "retention.ms")) {
            if (!parse_i64(val, &v) || v < -1)
                goto bad;
            pc->retention_ms = v;
        } else if (kname_is(c[i].name, "retention.bytes")) {
            if (!parse_i64(val, &v) || v < -1)
                goto bad;
            pc->retention_bytes = v;
        } else if (kname_is(c[i].name, "segment.bytes")) {
            if (!parse_i64(val, &v) || v < 4096)
                goto bad;
            pc->segment_bytes = (uint64_t)v;
        } else if (kname_is(c[i].name, "segment.ms")) {
            if (!parse_i64(val, &v) || v < 0)
                goto bad;
            pc->segment_ms = v;
        } else if (kname_is(c[i].name, "max.message.bytes")) {
            if (!parse_i64(val, &v) || v < 1024 || v > INT32_MAX)
                goto bad;
            pc->max_batch_bytes = (uint32_t)v;
        } else if (kname_is(c[i].name, "delete.retention.ms")) {
            if (!parse_i64(val, &v) || v < 0)
                goto bad;
            pc->delete_retention_ms = v;
        } else if (kname_is(c[i].name, "cleanup.policy")) {
            if (kname_is(val, "compact") || kname_is(val, "compact,delete") || kname_is(val, "delete,compact"))
                pc->compact = true;
            else if (kname_is(val, "delete"))
                pc->compact = false;
            else
                goto bad;
        }
        continue;
    bad:
        *msg = "invalid config value";
        return JN_KERR_INVALID_CONFIG;
    }
    return 0;
}

/* ---- CreateTopics ---- */

void jn__kafka_create_topics(kconn_t *kc, const jn_kafka_create_topics_req_t *req)
{
    int16_t v = kc->hdr.api_version;
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    jn_kw_i32(&w, 0);
    jn_kw_array(&w, req->ntopics);
    for (int32_t i = 0; i < req->ntopics; i++) {
        const jn_kafka_create_topic_t *t = &req->topics[i];
        char name[JN_STREAM_NAME_MAX + 1];
        jn__kafka_cstr(t->name, name, sizeof name);
        int16_t err = 0;
        const char *msg = NULL;
        int32_t parts = t->num_partitions == -1 ? (int32_t)kc->k->cfg.default_partitions : t->num_partitions;
        jn_plog_config_t pc;
        jn_stream_t *s = NULL;
        if (t->name.len <= 0 || jn_stream_name_validate(t->name.p, (size_t)t->name.len) < 0 ||
            jn__kafka_hidden(name)) {
            err = JN_KERR_INVALID_TOPIC_EXCEPTION;
        } else if (!jn__kafka_may_admin(kc, name)) {
            err = JN_KERR_TOPIC_AUTHORIZATION_FAILED;
        } else if (jn_broker_stream_find(kc->k->broker, t->name.p, (size_t)t->name.len)) {
            err = JN_KERR_TOPIC_ALREADY_EXISTS;
            msg = "topic already exists";
        } else if (parts < 1 || parts > JN_PARTITIONS_MAX) {
            err = JN_KERR_INVALID_PARTITIONS;
        } else if (t->replication_factor != -1 && t->replication_factor != 1) {
            err = JN_KERR_INVALID_REPLICATION_FACTOR;
            msg = "this broker is a single node: replication factor 1";
        } else if (t->nassignments > 0) {
            err = JN_KERR_INVALID_REPLICA_ASSIGNMENT;
        } else {
            jn_broker_t *b = kc->k->broker;
            /* Start from the broker's defaults as a stream created without a
             * config gets them: create, then update with the topic's configs. */
            jn_plog_config_default(&pc);
            err = apply_configs(t->configs, t->nconfigs, &pc, &msg);
            if (!err && !req->validate_only) {
                int rc = jn_broker_stream_create(b, name, (uint32_t)parts, NULL, &s);
                if (rc == 0 && t->nconfigs > 0) {
                    pc = *jn_stream_config(s);
                    err = apply_configs(t->configs, t->nconfigs, &pc, &msg);
                    if (!err && jn_broker_stream_update(b, s, &pc) != 0)
                        err = JN_KERR_INVALID_CONFIG;
                } else if (rc == JN_EEXIST) {
                    err = JN_KERR_TOPIC_ALREADY_EXISTS;
                } else if (rc) {
                    err = JN_KERR_UNKNOWN_SERVER_ERROR;
                    msg = jn_strerror(rc);
                }
                if (!err)
                    jn_info("kafka: created topic '%s' (%d partitions)", name, parts);
            }
        }
        jn_kw_str(&w, t->name.p, t->name.len);
        if (v >= 7) {
            uint8_t id[16] = {0};
            if (!err)
                jn__kafka_topic_id(name, id);
            jn_kw_uuid(&w, id);
        }
        jn_kw_i16(&w, err);
        jn_kw_cstr(&w, msg);
        if (v >= 5) {
            jn_kw_i32(&w, err ? -1 : parts);
            jn_kw_i16(&w, err ? -1 : 1);
            jn_kw_array(&w, -1);
        }
        jn_kw_tags(&w);
    }
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

/* ---- DeleteTopics ---- */

static jn_stream_t *stream_by_id(jn_broker_t *b, const uint8_t id[16])
{
    for (jn_stream_t *s = jn_broker_stream_next(b, NULL); s; s = jn_broker_stream_next(b, s)) {
        uint8_t x[16];
        jn__kafka_topic_id(jn_stream_name(s), x);
        if (memcmp(x, id, 16) == 0)
            return s;
    }
    return NULL;
}

void jn__kafka_delete_topics(kconn_t *kc, const jn_kafka_delete_topics_req_t *req)
{
    int16_t v = kc->hdr.api_version;
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    jn_kw_i32(&w, 0);
    jn_kw_array(&w, req->ntopics);
    for (int32_t i = 0; i < req->ntopics; i++) {
        const jn_kafka_delete_topic_t *t = &req->topics[i];
        char name[JN_STREAM_NAME_MAX + 1] = "";
        jn_stream_t *s = NULL;
        if (t->name.len >= 0)
            s = jn_broker_stream_find(kc->k->broker, t->name.p, (size_t)t->name.len);
        else
            s = stream_by_id(kc->k->broker, t->topic_id);
        if (s)
            snprintf(name, sizeof name, "%s", jn_stream_name(s));
        else
            jn__kafka_cstr(t->name, name, sizeof name);
        int16_t err = 0;
        uint8_t id[16] = {0};
        if (!s || jn__kafka_hidden(name))
            err = JN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
        else if (!jn__kafka_may_admin(kc, name))
            err = JN_KERR_TOPIC_AUTHORIZATION_FAILED;
        else {
            jn__kafka_topic_id(name, id);
            if (jn_broker_stream_delete(kc->k->broker, name) != 0)
                err = JN_KERR_UNKNOWN_SERVER_ERROR;
            else
                jn_info("kafka: deleted topic '%s'", name);
        }
        if (v >= 6)
            jn_kw_str(&w, *name ? name : NULL, *name ? (int32_t)strlen(name) : -1);
        else
            jn_kw_cstr(&w, name);
        if (v >= 6)
            jn_kw_uuid(&w, t->name.len >= 0 ? id : t->topic_id);
        jn_kw_i16(&w, err);
        if (v >= 5)
            jn_kw_str(&w, NULL, -1);
        jn_kw_tags(&w);
    }
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

/* ---- CreatePartitions ---- */

void jn__kafka_create_partitions(kconn_t *kc, const jn_kafka_create_partitions_req_t *req)
{
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    jn_kw_i32(&w, 0);
    jn_kw_array(&w, req->ntopics);
    for (int32_t i = 0; i < req->ntopics; i++) {
        const jn_kafka_create_partitions_topic_t *t = &req->topics[i];
        char name[JN_STREAM_NAME_MAX + 1];
        jn__kafka_cstr(t->name, name, sizeof name);
        jn_stream_t *s = t->name.len > 0 ? jn_broker_stream_find(kc->k->broker, t->name.p, (size_t)t->name.len)
                                         : NULL;
        int16_t err = 0;
        const char *msg = NULL;
        if (!s || jn__kafka_hidden(name))
            err = JN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
        else if (!jn__kafka_may_admin(kc, name))
            err = JN_KERR_TOPIC_AUTHORIZATION_FAILED;
        else if (t->count <= (int32_t)jn_stream_partitions(s) || t->count > JN_PARTITIONS_MAX) {
            err = JN_KERR_INVALID_PARTITIONS;
            msg = "the partition count can only grow";
        } else if (t->nassignments > 0) {
            err = JN_KERR_INVALID_REPLICA_ASSIGNMENT;
        } else if (!req->validate_only && jn_broker_stream_add_partitions(kc->k->broker, s, (uint32_t)t->count)) {
            err = JN_KERR_UNKNOWN_SERVER_ERROR;
        }
        jn_kw_str(&w, t->name.p, t->name.len);
        jn_kw_i16(&w, err);
        jn_kw_cstr(&w, msg);
        jn_kw_tags(&w);
    }
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}

/* ---- DescribeConfigs ---- */

enum { CT_STRING = 2, CT_INT = 3, CT_LONG = 5, CT_LIST = 7 };

typedef struct kcfg {
    const char *name;
    char value[64];
    int8_t type;
} kcfg_t;

static size_t topic_configs(const jn_plog_config_t *c, kcfg_t *out)
{
    size_t n = 0;
#define PUT(nm, ty, ...)                                               \
    do {                                                               \
        out[n].name = nm;                                              \
        out[n].type = ty;                                              \
        snprintf(out[n].value, sizeof out[n].value, __VA_ARGS__);      \
        n++;                                                           \
    } while (0)
    PUT("cleanup.policy", CT_LIST, "%s", c->compact ? "compact" : "delete");
    PUT("retention.ms", CT_LONG, "%" PRId64, c->retention_ms);
    PUT("retention.bytes", CT_LONG, "%" PRId64, c->retention_bytes);
    PUT("segment.bytes", CT_INT, "%" PRIu64, c->segment_bytes);
    PUT("segment.ms", CT_LONG, "%" PRId64, c->segment_ms);
    PUT("max.message.bytes", CT_INT, "%" PRIu32, c->max_batch_bytes);
    PUT("delete.retention.ms", CT_LONG, "%" PRId64, c->delete_retention_ms);
    PUT("compression.type", CT_STRING, "producer");
    PUT("message.timestamp.type", CT_STRING, "CreateTime");
    PUT("min.insync.replicas", CT_INT, "1");
    PUT("flush.ms", CT_LONG, "%" PRId64, c->fsync == JN_FSYNC_ALWAYS ? (int64_t)0 :
                                        c->fsync == JN_FSYNC_INTERVAL ? c->fsync_interval_ms : INT64_MAX);
#undef PUT
    return n;
}

static size_t broker_configs(jn_kafka_t *k, kcfg_t *out)
{
    size_t n = 0;
    out[n].name = "auto.create.topics.enable";
    out[n].type = 1;
    snprintf(out[n++].value, sizeof out[0].value, "%s", k->cfg.auto_create ? "true" : "false");
    out[n].name = "num.partitions";
    out[n].type = CT_INT;
    snprintf(out[n++].value, sizeof out[0].value, "%u", k->cfg.default_partitions);
    out[n].name = "default.replication.factor";
    out[n].type = CT_INT;
    snprintf(out[n++].value, sizeof out[0].value, "1");
    out[n].name = "message.max.bytes";
    out[n].type = CT_INT;
    snprintf(out[n++].value, sizeof out[0].value, "%zu", k->cfg.max_request_bytes);
    return n;
}

static bool wanted(const jn_kafka_config_resource_t *r, const char *name)
{
    if (r->nkeys < 0)
        return true;
    for (int32_t i = 0; i < r->nkeys; i++)
        if (kname_is(r->keys[i], name))
            return true;
    return false;
}

void jn__kafka_describe_configs(kconn_t *kc, const jn_kafka_describe_configs_req_t *req)
{
    int16_t v = kc->hdr.api_version;
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    jn_kw_i32(&w, 0);
    jn_kw_array(&w, req->nresources);
    for (int32_t i = 0; i < req->nresources; i++) {
        const jn_kafka_config_resource_t *r = &req->resources[i];
        kcfg_t cfgs[16];
        size_t n = 0;
        int16_t err = 0;
        int8_t source = 1; /* TOPIC_CONFIG */
        if (r->type == 2) {
            jn_stream_t *s = r->name.len > 0 ? jn_broker_stream_find(kc->k->broker, r->name.p, (size_t)r->name.len)
                                             : NULL;
            if (!s)
                err = JN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
            else
                n = topic_configs(jn_stream_config(s), cfgs);
        } else if (r->type == 4) {
            n = broker_configs(kc->k, cfgs);
            source = 5; /* DEFAULT_CONFIG */
        } else {
            err = JN_KERR_INVALID_REQUEST;
        }
        jn_kw_i16(&w, err);
        jn_kw_str(&w, NULL, -1);
        jn_kw_i8(&w, r->type);
        jn_kw_str(&w, r->name.p, r->name.len);
        int32_t count = 0;
        for (size_t j = 0; j < n; j++)
            if (wanted(r, cfgs[j].name))
                count++;
        jn_kw_array(&w, count);
        for (size_t j = 0; j < n; j++) {
            if (!wanted(r, cfgs[j].name))
                continue;
            jn_kw_cstr(&w, cfgs[j].name);
            jn_kw_cstr(&w, cfgs[j].value);
            jn_kw_bool(&w, false);
            if (v == 0)
                jn_kw_bool(&w, source == 5);
            else
                jn_kw_i8(&w, source);
            jn_kw_bool(&w, false);
            if (v >= 1)
                jn_kw_array(&w, 0);
            if (v >= 3) {
                jn_kw_i8(&w, cfgs[j].type);
                jn_kw_str(&w, NULL, -1);
            }
            jn_kw_tags(&w);
        }
        jn_kw_tags(&w);
    }
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
}
