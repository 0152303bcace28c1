/* rest_tables.c - /v1/tables (the latest value per key of a compacted
 * stream, as a key-value resource) and /v1/groups (consumer groups'
 * committed offsets).
 *
 * Table reads need SUBSCRIBE on "<table>/#", writes PUBLISH on the table
 * name (the subject of every table record). Group offsets need SUBSCRIBE on
 * the streams they point into.
 */
#include "rest_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"

#define TABLE_VALUE_MAX (64u << 20)
#define TABLE_KEYS_DEFAULT 100
#define TABLE_KEYS_MAX 1000
#define TABLE_QUERY_MAX 4096

static bool table_allow(jn_rest_t *r, jn_http_req_t *req, jn_principal_t *p, const char *table, enum jn_perm perm)
{
    char what[JN_STREAM_NAME_MAX + 4];
    if (!table || strlen(table) > JN_STREAM_NAME_MAX) {
        jn_http_respond_error(req, 400, "invalid_name", "invalid table name");
        return false;
    }
    snprintf(what, sizeof(what), perm == JN_PERM_SUBSCRIBE ? "%s/#" : "%s", table);
    return jn__rest_allow(r, req, p, perm, what);
}

void jn__rest_tables_list(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    if (!jn__rest_auth(r, req, &p))
        return;
    json_t *arr = json_array();
    for (jn_stream_t *s = jn_broker_stream_next(r->broker, NULL); arr && s; s = jn_broker_stream_next(r->broker, s)) {
        if (!jn_stream_config(s)->compact || jn_stream_is_internal(s))
            continue; /* internal tables are the doors' own state */
        int64_t keys = jn_broker_table_count(r->broker, jn_stream_name(s));
        if (json_array_append_new(arr, json_pack("{s:s,s:I}", "name", jn_stream_name(s), "keys",
                                                 (json_int_t)(keys < 0 ? 0 : keys))) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    jn__rest_respond_steal(req, 200, arr ? json_pack("{s:o}", "tables", arr) : NULL);
}

void jn__rest_tables_create(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    if (!jn__rest_auth(r, req, &p))
        return;
    json_t *body = jn__rest_body_json(req);
    if (!body)
        return;
    const char *name = json_string_value(json_object_get(body, "name"));
    const json_t *pj = json_object_get(body, "partitions");
    uint32_t parts = 1;
    char err[256];
    bool is_name;
    jn_stream_t *s;
    if (!name) {
        jn_http_respond_error(req, 400, "invalid_name", "body must be {\"name\": \"<table>\", \"partitions\"?: n}");
        goto done;
    }
    if (!jn__rest_admin(r, req, &p, name))
        goto done;
    if (pj && !json_is_null(pj)) {
        if (!json_is_integer(pj) || json_integer_value(pj) < 1 || json_integer_value(pj) > JN_PARTITIONS_MAX) {
            jn_http_respond_error(req, 400, "bad_request", "partitions must be an integer 1..%d", JN_PARTITIONS_MAX);
            goto done;
        }
        parts = (uint32_t)json_integer_value(pj);
    }
    int rc = jn__rest_stream_create(r, name, parts, NULL, true, &s, &is_name, err, sizeof(err));
    if (rc < 0) {
        jn__rest_fail(req, rc, is_name, "%s", err);
        goto done;
    }
    jn__rest_respond_steal(req, 201, json_pack("{s:s,s:i,s:i}", "name", jn_stream_name(s), "partitions",
                                               (int)jn_stream_partitions(s), "keys", 0));
done:
    json_decref(body);
}

typedef struct keys_ctx {
    jn_buf_t *out;
    size_t count;
    size_t last_pos, last_len; /* the last key's JSON text in |out| */
    int rc;
} keys_ctx_t;

static int keys_cb(const uint8_t *key, size_t klen, void *arg)
{
    keys_ctx_t *k = arg;
    if (k->count && (k->rc = jn_buf_append(k->out, ",", 1)) < 0)
        return k->rc;
    size_t pos = k->out->len;
    if ((k->rc = jn_rest_json_string(k->out, key, klen)) < 0)
        return k->rc;
    k->last_pos = pos;
    k->last_len = k->out->len - pos;
    k->count++;
    return 0;
}

void jn__rest_table_keys(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *table = jn_http_req_param(req, "table");
    char prefix[TABLE_QUERY_MAX], after[TABLE_QUERY_MAX];
    jn_buf_t out;
    jn_buf_init(&out, 64u << 20);
    if (!table_allow(r, req, &p, table, JN_PERM_SUBSCRIBE))
        goto done;
    int plen = jn_http_req_query(req, "prefix", prefix, sizeof(prefix));
    int alen = jn_http_req_query(req, "after", after, sizeof(after));
    int64_t limit = TABLE_KEYS_DEFAULT;
    int q = jn__rest_query_i64(req, "limit", &limit);
    if (q < 0)
        goto done;
    if ((plen < 0 && plen != JN_ENOENT) || (alen < 0 && alen != JN_ENOENT) || limit < 1) {
        jn_http_respond_error(req, 400, "bad_request", "bad prefix, after or limit");
        goto done;
    }
    if (limit > TABLE_KEYS_MAX)
        limit = TABLE_KEYS_MAX;
    keys_ctx_t k = {&out, 0, 0, 0, 0};
    int rc = jn_buf_append_str(&out, "{\"keys\":[");
    if (rc == 0)
        rc = jn_broker_table_scan(r->broker, table, (const uint8_t *)prefix, plen < 0 ? 0 : (size_t)plen,
                                  alen < 0 ? NULL : (const uint8_t *)after, alen < 0 ? 0 : (size_t)alen,
                                  (size_t)limit, keys_cb, &k);
    if (rc == JN_ENOENT) {
        jn_http_respond_error(req, 404, "not_found", "table '%s' does not exist", table);
        goto done;
    }
    if (rc >= 0 && k.rc < 0)
        rc = k.rc;
    if (rc < 0) {
        jn__rest_fail(req, rc, false, "cannot list table '%s'", table);
        goto done;
    }
    /* A full page may have more after it: its last key is the cursor. */
    if (k.count == (size_t)limit) {
        rc = jn_buf_append_str(&out, "],\"next\":");
        if (rc == 0 && (rc = jn_buf_reserve(&out, k.last_len + 1)) == 0) {
            memcpy(out.data + out.len, out.data + k.last_pos, k.last_len);
            out.len += k.last_len;
            rc = jn_buf_append(&out, "}", 1);
        }
    } else {
        rc = jn_buf_append_str(&out, "],\"next\":null}");
    }
    if (rc < 0)
        jn__rest_fail(req, rc, false, "cannot list table '%s'", table);
    else
        jn__rest_respond_buf(req, 200, &out);
done:
    jn_buf_free(&out);
}

void jn__rest_table_put(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *table = jn_http_req_param(req, "table");
    const char *key = jn_http_req_param(req, "key");
    if (!table_allow(r, req, &p, table, JN_PERM_PUBLISH))
        return;
    size_t vlen, ctlen = 0;
    const uint8_t *value = jn_http_req_body(req, &vlen);
    const char *cth = jn_http_req_header(req, "Content-Type", &ctlen);
    char ctype[128];
    if (cth) {
        if (ctlen >= sizeof(ctype)) {
            jn_http_respond_error(req, 400, "bad_request", "Content-Type too long");
            return;
        }
        memcpy(ctype, cth, ctlen);
        ctype[ctlen] = '\0';
    }
    jn_publish_result_t res;
    int rc = jn_broker_table_put(r->broker, table, (const uint8_t *)key, strlen(key), value ? value : (const uint8_t *)"",
                                 vlen, cth ? ctype : NULL, &res);
    if (rc < 0) {
        jn__rest_fail(req, rc, rc == JN_EINVAL, "cannot put into table '%s'", table);
        return;
    }
    char body[384];
    int n = snprintf(body, sizeof(body), "{\"stream\":\"%s\",\"partition\":%" PRId32 ",\"offset\":%" PRId64 "}",
                     jn_stream_name(res.stream), res.partition, res.offset);
    jn_http_respond(req, 200, "application/json", body, (size_t)n);
}

void jn__rest_table_get(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *table = jn_http_req_param(req, "table");
    const char *key = jn_http_req_param(req, "key");
    if (!table_allow(r, req, &p, table, JN_PERM_SUBSCRIBE))
        return;
    jn_buf_t v;
    jn_buf_init(&v, TABLE_VALUE_MAX);
    char ctype[128] = "";
    jn_publish_result_t res;
    int rc = jn_broker_table_get(r->broker, table, (const uint8_t *)key, strlen(key), &v, ctype, sizeof(ctype), &res,
                                 NULL);
    if (rc == JN_ENOENT) {
        jn_http_respond_error(req, 404, "not_found", "no key '%s' in table '%s'", key, table);
    } else if (rc < 0) {
        jn__rest_fail(req, rc, rc == JN_EINVAL, "cannot read table '%s'", table);
    } else {
        char off[24];
        snprintf(off, sizeof(off), "%" PRId64, res.offset);
        if (jn_http_add_header(req, "X-Junction-Offset", off) < 0)
            jn_debug("rest: cannot add X-Junction-Offset");
        jn_http_respond(req, 200, ctype[0] ? ctype : "application/octet-stream", v.data, v.len);
    }
    jn_buf_free(&v);
}

void jn__rest_table_delete(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *table = jn_http_req_param(req, "table");
    const char *key = jn_http_req_param(req, "key");
    if (!table_allow(r, req, &p, table, JN_PERM_PUBLISH))
        return;
    /* A delete of an absent key is a 404, not a pointless tombstone. The
     * value is not needed: a value over the cap still proves presence. */
    jn_buf_t v;
    jn_buf_init(&v, TABLE_VALUE_MAX);
    int rc = jn_broker_table_get(r->broker, table, (const uint8_t *)key, strlen(key), &v, NULL, 0, NULL, NULL);
    jn_buf_free(&v);
    if (rc == JN_ETOOBIG)
        rc = 0;
    if (rc == 0)
        rc = jn_broker_table_delete(r->broker, table, (const uint8_t *)key, strlen(key), NULL);
    if (rc == JN_ENOENT)
        jn_http_respond_error(req, 404, "not_found", "no key '%s' in table '%s'", key, table);
    else if (rc < 0)
        jn__rest_fail(req, rc, rc == JN_EINVAL, "cannot delete from table '%s'", table);
    else
        jn_http_respond(req, 204, NULL, NULL, 0);
}

/* ---- consumer groups ---- */

void jn__rest_groups_list(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    if (!jn__rest_auth(r, req, &p))
        return;
    json_t *g = jn_broker_groups_json(r->broker);
    jn__rest_respond_steal(req, 200, g ? json_pack("{s:o}", "groups", g) : NULL);
}

void jn__rest_group_get(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *group = jn_http_req_param(req, "group");
    if (!jn__rest_auth(r, req, &p))
        return;
    json_t *g = jn_broker_group_json(r->broker, group);
    if (!g)
        jn_http_respond_error(req, 404, "not_found", "group '%s' has no committed offsets", group);
    else
        jn__rest_respond_steal(req, 200, g);
}

/* A commit answers once the offsets log is fsynced (the commits above are
 * visible at once, durable a group-committed fsync later). The state lives
 * until the waiter fires or the connection goes away (then the waiter is
 * cancelled). */
typedef struct group_commit_wait {
    jn_durable_waiter_t w;
    jn_http_req_t *req;
    json_t *reply;
} group_commit_wait_t;

static void group_commit_durable(jn_durable_waiter_t *w, int status)
{
    group_commit_wait_t *st = jn_container_of(w, group_commit_wait_t, w);
    jn_http_req_t *req = st->req;
    jn_http_req_set_data(req, NULL);
    jn_http_req_on_abort(req, NULL);
    if (status < 0)
        jn__rest_fail(req, status == JN_ECLOSED ? JN_ECLOSED : JN_EIO, false,
                      "the offsets were committed but are not durable");
    else
        jn_http_respond_json(req, 200, st->reply);
    json_decref(st->reply);
    free(st);
}

static void group_commit_abort(jn_http_req_t *req, void *data)
{
    (void)req;
    group_commit_wait_t *st = data;
    if (!st)
        return;
    jn_plog_cancel_durable(&st->w);
    json_decref(st->reply);
    free(st);
}

void jn__rest_group_commit(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *group = jn_http_req_param(req, "group");
    if (!jn__rest_auth(r, req, &p))
        return;
    json_t *body = jn__rest_body_json(req);
    if (!body)
        return;
    const json_t *offs = json_object_get(body, "offsets");
    if (!json_is_array(offs)) {
        jn_http_respond_error(req, 400, "invalid_json", "body must be {\"offsets\": [{\"stream\",\"partition\",\"offset\"}]}");
        goto done;
    }
    /* Everything is checked before the first commit. */
    size_t i;
    const json_t *o;
    json_array_foreach(offs, i, o) {
        const char *sname = json_string_value(json_object_get(o, "stream"));
        const json_t *pj = json_object_get(o, "partition"), *oj = json_object_get(o, "offset");
        const json_t *mj = json_object_get(o, "metadata");
        if (!sname || !json_is_integer(pj) || !json_is_integer(oj) || json_integer_value(oj) < 0 ||
            (mj && !json_is_null(mj) && !json_is_string(mj))) {
            jn_http_respond_error(req, 400, "invalid_json",
                                  "offsets[%zu] must be {\"stream\", \"partition\", \"offset\", \"metadata\"?}", i);
            goto done;
        }
        jn_stream_t *s = jn_broker_stream_find(r->broker, sname, strlen(sname));
        if (!s) {
            jn_http_respond_error(req, 404, "not_found", "stream '%s' does not exist", sname);
            goto done;
        }
        if (json_integer_value(pj) < 0 || json_integer_value(pj) >= jn_stream_partitions(s)) {
            jn_http_respond_error(req, 404, "not_found", "stream '%s' has no partition %" JSON_INTEGER_FORMAT, sname,
                                  json_integer_value(pj));
            goto done;
        }
        char what[JN_STREAM_NAME_MAX + 4];
        snprintf(what, sizeof(what), "%s/#", sname);
        if (!p.admin && !jn_auth_allowed(r->auth, &p, JN_PERM_SUBSCRIBE, what, strlen(what))) {
            jn_http_respond_error(req, 403, "forbidden", "%s may not consume stream '%s'", p.name, sname);
            goto done;
        }
    }
    json_array_foreach(offs, i, o) {
        const char *sname = json_string_value(json_object_get(o, "stream"));
        jn_stream_t *s = jn_broker_stream_find(r->broker, sname, strlen(sname));
        int rc = jn_broker_group_commit(r->broker, group, s, (uint32_t)json_integer_value(json_object_get(o, "partition")),
                                        json_integer_value(json_object_get(o, "offset")),
                                        json_string_value(json_object_get(o, "metadata")));
        if (rc < 0) {
            jn__rest_fail(req, rc, rc == JN_EINVAL, "cannot commit offsets[%zu] for group '%s'", i, group);
            goto done;
        }
    }
    json_t *g = jn_broker_group_json(r->broker, group);
    if (!g)
        g = json_pack("{s:s,s:[]}", "group", group, "offsets");
    group_commit_wait_t *st = g ? calloc(1, sizeof(*st)) : NULL;
    if (!st) {
        json_decref(g);
        jn__rest_fail(req, JN_ENOMEM, false, "out of memory");
        goto done;
    }
    st->req = req;
    st->reply = g;
    jn_http_req_set_data(req, st);
    jn_http_req_on_abort(req, group_commit_abort);
    /* May fire (and free st) before returning. */
    jn_broker_group_wait_durable(r->broker, &st->w, group_commit_durable);
done:
    json_decref(body);
}

void jn__rest_group_delete(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *group = jn_http_req_param(req, "group");
    if (!jn__rest_auth(r, req, &p))
        return;
    int rc = jn_broker_group_delete(r->broker, group);
    if (rc < 0)
        jn__rest_fail(req, rc, rc == JN_EINVAL, rc == JN_ENOENT ? "group '%s' does not exist" : "cannot delete group '%s'",
                      group);
    else
        jn_http_respond(req, 204, NULL, NULL, 0);
}
