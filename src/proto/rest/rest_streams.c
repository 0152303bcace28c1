/* rest_streams.c - /v1/streams: create, describe, update, delete streams,
 * and read a partition's records as JSON.
 *
 * Reads go straight to the partition log: whole batches come back from
 * jn_plog_read, their records are iterated in place and rendered by
 * jn_rest_record_json into one buffer, without a jansson tree per record.
 */
#include "rest_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../../common/log.h"

#define REST_READ_DEFAULT_LIMIT 100
#define REST_READ_DEFAULT_BYTES (1u << 20)
#define REST_READ_MAX_BYTES (16u << 20)
#define REST_READ_RESPONSE_MAX (256u << 20)

static jn_stream_t *find_stream(jn_rest_t *r, jn_http_req_t *req, const char *name)
{
    jn_stream_t *s = name ? jn_broker_stream_find(r->broker, name, strlen(name)) : NULL;
    if (!s)
        jn_http_respond_error(req, 404, "not_found", "stream '%s' does not exist", name ? name : "");
    return s;
}

void jn__rest_streams_list(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    if (!jn__rest_auth(r, req, &p))
        return;
    /* Internal streams (the doors' and queues' own state) only on request. */
    char q[8] = "";
    bool internal = jn_http_req_query(req, "internal", q, sizeof(q)) >= 0 && strcmp(q, "true") == 0;
    json_t *arr = json_array();
    for (jn_stream_t *s = jn_broker_stream_next(r->broker, NULL); arr && s; s = jn_broker_stream_next(r->broker, s))
        if ((internal || !jn_stream_is_internal(s)) && json_array_append_new(arr, jn_stream_json(s)) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    jn__rest_respond_steal(req, 200, arr ? json_pack("{s:o}", "streams", arr) : NULL);
}

int jn__rest_stream_create(jn_rest_t *r, const char *name, uint32_t partitions, const json_t *config,
                           bool compact, jn_stream_t **out, bool *is_name, char *err, size_t errlen)
{
    *is_name = false;
    if (jn_stream_name_validate(name, strlen(name)) < 0) {
        *is_name = true;
        snprintf(err, errlen, "invalid stream name '%s': 1..249 of [A-Za-z0-9._-], not starting with __", name);
        return JN_EINVAL;
    }
    if (partitions < 1 || partitions > JN_PARTITIONS_MAX) {
        snprintf(err, errlen, "partitions must be 1..%d", JN_PARTITIONS_MAX);
        return JN_EINVAL;
    }
    jn_plog_config_t probe;
    char why[128] = "";
    if (config) {
        /* Validated before creating, so that a bad config creates nothing. */
        jn_plog_config_t base;
        jn_plog_config_default(&base);
        if (!json_is_object(config) || jn_plog_config_from_json(config, &base, &probe, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "invalid config: %s", why[0] ? why : "must be an object");
            return JN_EINVAL;
        }
    }
    if (jn_broker_stream_find(r->broker, name, strlen(name))) {
        snprintf(err, errlen, "stream '%s' already exists", name);
        return JN_EEXIST;
    }
    /* Created with the broker's defaults (which this door cannot see), then
     * the requested members are applied over them. */
    jn_stream_t *s;
    int rc = jn_broker_stream_create(r->broker, name, partitions, NULL, &s);
    if (rc < 0) {
        *is_name = rc == JN_EINVAL;
        snprintf(err, errlen, "cannot create stream '%s': %s", name, jn_strerror(rc));
        return rc;
    }
    if (config || compact) {
        jn_plog_config_t c = *jn_stream_config(s);
        if (config && jn_plog_config_from_json(config, jn_stream_config(s), &c, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "invalid config: %s", why);
            return JN_EINVAL;
        }
        if (compact)
            c.compact = true;
        rc = jn_broker_stream_update(r->broker, s, &c);
        if (rc < 0) {
            snprintf(err, errlen, "cannot configure stream '%s': %s", name, jn_strerror(rc));
            return rc;
        }
    }
    *out = s;
    return 0;
}

/* Reads an optional "partitions" member: 1 when absent. */
static int body_partitions(const json_t *body, uint32_t *out)
{
    const json_t *pj = json_object_get(body, "partitions");
    *out = 1;
    if (!pj || json_is_null(pj))
        return 0;
    if (!json_is_integer(pj) || json_integer_value(pj) < 1 || json_integer_value(pj) > JN_PARTITIONS_MAX)
        return JN_EINVAL;
    *out = (uint32_t)json_integer_value(pj);
    return 0;
}

void jn__rest_streams_create(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    json_t *body = NULL;
    if (!jn__rest_auth(r, req, &p))
        return;
    body = jn__rest_body_json(req);
    if (!body)
        return;
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!json_is_object(body) || !name) {
        jn_http_respond_error(req, 400, "invalid_name", "body must be {\"name\": \"<stream>\", ...}");
        goto done;
    }
    if (!jn__rest_admin(r, req, &p, name))
        goto done;
    uint32_t parts = 1;
    if (jn_stream_name_validate(name, strlen(name)) == 0 && body_partitions(body, &parts) < 0) {
        jn_http_respond_error(req, 400, "bad_request", "partitions must be an integer 1..%d", JN_PARTITIONS_MAX);
        goto done;
    }
    const json_t *config = json_object_get(body, "config");
    if (config && json_is_null(config))
        config = NULL;
    char err[256];
    bool is_name;
    jn_stream_t *s;
    int rc = jn__rest_stream_create(r, name, parts, config, false, &s, &is_name, err, sizeof(err));
    if (rc < 0)
        jn__rest_fail(req, rc, is_name, "%s", err);
    else
        jn__rest_respond_steal(req, 201, jn_stream_json(s));
done:
    json_decref(body);
}

void jn__rest_stream_get(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    if (!jn__rest_auth(r, req, &p))
        return;
    jn_stream_t *s = find_stream(r, req, jn_http_req_param(req, "stream"));
    if (s)
        jn__rest_respond_steal(req, 200, jn_stream_json(s));
}

void jn__rest_stream_patch(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    json_t *body = NULL;
    const char *name = jn_http_req_param(req, "stream");
    if (!jn__rest_admin(r, req, &p, name))
        return;
    jn_stream_t *s = find_stream(r, req, name);
    if (!s)
        return;
    body = jn__rest_body_json(req);
    if (!body)
        return;
    if (!json_is_object(body)) {
        jn_http_respond_error(req, 400, "invalid_json", "body must be {\"config\": {...}, \"partitions\"?: n}");
        goto done;
    }
    const json_t *config = json_object_get(body, "config");
    const json_t *pj = json_object_get(body, "partitions");
    jn_plog_config_t c;
    char why[128] = "";
    if (config && !json_is_null(config) &&
        (!json_is_object(config) || jn_plog_config_from_json(config, jn_stream_config(s), &c, why, sizeof(why)) < 0)) {
        jn_http_respond_error(req, 400, "bad_request", "invalid config: %s", why[0] ? why : "must be an object");
        goto done;
    }
    if (pj && (!json_is_integer(pj) || json_integer_value(pj) < 1 || json_integer_value(pj) > JN_PARTITIONS_MAX)) {
        jn_http_respond_error(req, 400, "bad_request", "partitions must be an integer 1..%d", JN_PARTITIONS_MAX);
        goto done;
    }
    if (pj && (uint32_t)json_integer_value(pj) < jn_stream_partitions(s)) {
        jn_http_respond_error(req, 400, "bad_request", "partitions can only grow (now %" PRIu32 ")",
                              jn_stream_partitions(s));
        goto done;
    }
    int rc = 0;
    if (config && !json_is_null(config))
        rc = jn_broker_stream_update(r->broker, s, &c);
    if (rc == 0 && pj && (uint32_t)json_integer_value(pj) > jn_stream_partitions(s))
        rc = jn_broker_stream_add_partitions(r->broker, s, (uint32_t)json_integer_value(pj));
    if (rc < 0)
        jn__rest_fail(req, rc, false, "cannot update stream '%s'", name);
    else
        jn__rest_respond_steal(req, 200, jn_stream_json(s));
done:
    json_decref(body);
}

void jn__rest_stream_delete(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *name = jn_http_req_param(req, "stream");
    if (!jn__rest_admin(r, req, &p, name))
        return;
    int rc = jn_broker_stream_delete(r->broker, name);
    if (rc < 0)
        jn__rest_fail(req, rc, false, rc == JN_ENOENT ? "stream '%s' does not exist" : "cannot delete stream '%s'",
                      name);
    else
        jn_http_respond(req, 204, NULL, NULL, 0);
}

/* ---- reads ---- */

typedef struct read_args {
    int64_t offset;
    int64_t limit;
    int64_t max_bytes;
} read_args_t;

/* Renders records of |log| from |a->offset| into |out| (after "[").
 * Returns the next offset to read, or an error. */
static int64_t render_records(jn_plog_t *log, jn_stream_t *s, uint32_t partition, const read_args_t *a,
                              jn_buf_t *out)
{
    const char *sname = jn_stream_name(s);
    size_t slen = strlen(sname);
    int64_t next = a->offset, count = 0, bytes_left = a->max_bytes;
    int64_t end = jn_plog_end_offset(log);
    jn_buf_t raw;
    jn_buf_init(&raw, REST_READ_MAX_BYTES + (64u << 20)); /* the first batch may exceed max_bytes */
    jn_buf_t z; /* records of a compressed batch */
    jn_buf_init(&z, JN_BATCH_MAX_DECOMPRESSED);
    int rc = 0;
    while (count < a->limit && next < end && bytes_left > 0) {
        int64_t before = next;
        jn_buf_reset(&raw);
        rc = jn_plog_read(log, next, (size_t)bytes_left, &raw);
        if (rc <= 0)
            break;
        bytes_left -= rc;
        size_t pos = 0;
        while (pos < raw.len && count < a->limit) {
            jn_batch_info_t bi;
            int blen = jn_batch_parse(raw.data + pos, raw.len - pos, raw.len - pos, &bi);
            if (blen < 0) {
                rc = JN_ECORRUPT;
                goto done;
            }
            jn_batch_iter_t it;
            int irc = jn_batch_iter_init_scratch(&it, raw.data + pos, (size_t)blen, false, &z);
            if (irc < 0) {
                rc = irc;
                goto done;
            } else {
                jn_record_t rec;
                while (count < a->limit && (irc = jn_batch_iter_next(&it, &rec)) == 1) {
                    if (rec.offset < next)
                        continue;
                    size_t sublen;
                    const char *sub = jn_record_subject(&rec, sname, slen, &sublen);
                    if (count > 0 && (rc = jn_buf_append(out, ",", 1)) < 0)
                        goto done;
                    if ((rc = jn_rest_record_json(out, sname, slen, partition, &rec, sub, sublen)) < 0)
                        goto done;
                    count++;
                    next = rec.offset + 1;
                }
                if (irc < 0) {
                    rc = irc;
                    goto done;
                }
            }
            /* Records removed by compaction leave gaps: move past the
             * batch when it was read to its end. */
            if (count < a->limit) {
                int64_t last = bi.base_offset + bi.last_offset_delta;
                if (last + 1 > next)
                    next = last + 1;
            }
            pos += (size_t)blen;
        }
        rc = 0;
        if (next == before)
            break; /* the log gave nothing at or past |next|: do not spin */
    }
done:
    jn_buf_free(&raw);
    jn_buf_free(&z);
    return rc < 0 ? rc : next;
}

void jn__rest_records_read(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *name = jn_http_req_param(req, "stream");
    const char *pstr = jn_http_req_param(req, "p");
    jn_buf_t out;
    jn_buf_init(&out, REST_READ_RESPONSE_MAX);
    char filter[JN_STREAM_NAME_MAX + 4];
    snprintf(filter, sizeof(filter), "%s/#", name ? name : "");
    if (!jn__rest_allow(r, req, &p, JN_PERM_SUBSCRIBE, filter))
        goto done;
    jn_stream_t *s = find_stream(r, req, name);
    if (!s)
        goto done;
    int64_t part;
    if (jn_rest_parse_i64(pstr, &part) < 0 || part < 0) {
        jn_http_respond_error(req, 400, "bad_request", "partition must be a non-negative integer");
        goto done;
    }
    if (part >= jn_stream_partitions(s)) {
        jn_http_respond_error(req, 404, "not_found", "stream '%s' has no partition %" PRId64, name, part);
        goto done;
    }
    jn_plog_t *log = jn_stream_plog(s, (uint32_t)part);
    read_args_t a = {jn_plog_start_offset(log), REST_READ_DEFAULT_LIMIT, REST_READ_DEFAULT_BYTES};
    int64_t ts;
    int q1, q2, q3, q4;
    if ((q1 = jn__rest_query_i64(req, "offset", &a.offset)) < 0 || (q2 = jn__rest_query_i64(req, "timestamp", &ts)) < 0 ||
        (q3 = jn__rest_query_i64(req, "limit", &a.limit)) < 0 || (q4 = jn__rest_query_i64(req, "max_bytes", &a.max_bytes)) < 0)
        goto done;
    if ((q3 && a.limit < 1) || (q4 && a.max_bytes < 1) || (q1 && q2)) {
        jn_http_respond_error(req, 400, "bad_request",
                              "limit and max_bytes must be positive; give offset or timestamp, not both");
        goto done;
    }
    if (a.limit > (int64_t)r->cfg.max_read_records)
        a.limit = r->cfg.max_read_records;
    if (a.max_bytes > (int64_t)REST_READ_MAX_BYTES)
        a.max_bytes = REST_READ_MAX_BYTES;
    if (q2)
        a.offset = jn_plog_offset_for_time(log, ts);
    int64_t start = jn_plog_start_offset(log), end = jn_plog_end_offset(log);
    if (a.offset < start || a.offset > end) {
        jn_http_respond_error(req, 416, "offset_out_of_range",
                              "offset %" PRId64 " is outside %" PRId64 "..%" PRId64 " of %s/%" PRId64, a.offset, start,
                              end, name, part);
        goto done;
    }
    int rc = jn_buf_append_str(&out, "{\"records\":[");
    int64_t next = rc < 0 ? rc : render_records(log, s, (uint32_t)part, &a, &out);
    if (next < 0) {
        jn__rest_fail(req, (int)next, false, "cannot read %s/%" PRId64, name, part);
        goto done;
    }
    rc = jn_buf_printf(&out, "],\"next_offset\":%" PRId64 ",\"end_offset\":%" PRId64 "}", next,
                       jn_plog_end_offset(log));
    if (rc < 0)
        jn__rest_fail(req, rc, false, "cannot read %s/%" PRId64, name, part);
    else
        jn__rest_respond_buf(req, 200, &out);
done:
    jn_buf_free(&out);
}
