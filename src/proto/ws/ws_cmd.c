/* ws_cmd.c - the JSON side of the WebSocket door's protocol (docs/ws.md):
 * client commands parsed into a jn_ws_cmd_t, and records rendered as
 * events with the REST door's renderer, so a record looks the same on
 * every JSON door.
 *
 * Commands are rare next to records, so they go through jansson; records
 * are rendered by hand into a buffer (one per delivery, no tree).
 */
#include "ws_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/filter.h"
#define JN_REST_PURE_ONLY
#include "../rest/rest_internal.h"

int jn_ws_parse_from(const char *s, enum jn_start *start, int64_t *value)
{
    int64_t v = 0;
    if (!s[0] || strcmp(s, "live") == 0) {
        *start = JN_START_LIVE;
    } else if (strcmp(s, "earliest") == 0) {
        *start = JN_START_EARLIEST;
    } else if (strncmp(s, "time:", 5) == 0) {
        if (jn_rest_parse_i64(s + 5, &v) < 0 || v < 0)
            return JN_EINVAL;
        *start = JN_START_TIME;
    } else {
        if (jn_rest_parse_i64(s, &v) < 0 || v < 0)
            return JN_EINVAL;
        *start = JN_START_OFFSET;
    }
    *value = v;
    return 0;
}

/* A string member: NULL when absent; *bad when present but not a string
 * of 1..max bytes. */
static const char *get_str(const json_t *o, const char *name, size_t max, bool *bad)
{
    const json_t *v = json_object_get(o, name);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

static bool group_name_ok(const char *g)
{
    size_t n = strlen(g);
    if (n == 0 || n > JN_STREAM_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (g[i] < 0x21 || g[i] > 0x7e)
            return false;
    return true;
}

#define ERR(c, ...)                                                                                        \
    do {                                                                                                   \
        *code = (c);                                                                                       \
        snprintf(err, errlen, __VA_ARGS__);                                                                \
        goto fail;                                                                                         \
    } while (0)

static int parse_subscribe(jn_ws_cmd_t *c, const char **code, char *err, size_t errlen)
{
    bool bad = false;
    const json_t *o = c->root;
    c->id = get_str(o, "id", JN_WS_ID_MAX, &bad);
    if (!c->id)
        ERR("bad_request", "\"id\" must be a string of 1..%d bytes", JN_WS_ID_MAX);
    c->filter = get_str(o, "filter", JN_SUBJECT_MAX, &bad);
    if (!c->filter || bad || jn_filter_validate(c->filter, strlen(c->filter)) < 0)
        ERR("invalid_name", "\"filter\" must be a valid filter");
    const json_t *from = json_object_get(o, "from");
    if (json_is_integer(from) && json_integer_value(from) >= 0) {
        c->start = JN_START_OFFSET;
        c->start_value = json_integer_value(from);
    } else if (from && !json_is_null(from)) {
        if (!json_is_string(from) || jn_ws_parse_from(json_string_value(from), &c->start, &c->start_value) < 0)
            ERR("bad_request", "\"from\" must be live, earliest, <offset> or time:<ms>");
    }
    c->group = get_str(o, "group", JN_STREAM_NAME_MAX, &bad);
    if (bad || (c->group && !group_name_ok(c->group)))
        ERR("invalid_name", "invalid group name");
    if (c->group && c->start != JN_START_LIVE && c->start != JN_START_EARLIEST)
        ERR("bad_request", "with \"group\", \"from\" may only be live or earliest");
    const json_t *lossy = json_object_get(o, "lossy");
    if (lossy && !json_is_boolean(lossy))
        ERR("bad_request", "\"lossy\" must be a boolean");
    c->lossy = json_is_true(lossy);
    if (c->lossy && (c->start != JN_START_LIVE || c->group))
        ERR("bad_request", "\"lossy\" needs from=live and no group");
    const char *fmt = get_str(o, "format", 16, &bad);
    if (bad || (fmt && strcmp(fmt, "json") != 0 && strcmp(fmt, "binary") != 0))
        ERR("bad_request", "\"format\" must be \"json\" or \"binary\"");
    c->binary = fmt && strcmp(fmt, "binary") == 0;
    return 0;
fail:
    return JN_EINVAL;
}

static int parse_publish(jn_ws_cmd_t *c, const char **code, char *err, size_t errlen)
{
    const json_t *o = c->root;
    const json_t *ack = json_object_get(o, "ack");
    if (ack && !json_is_boolean(ack))
        ERR("bad_request", "\"ack\" must be a boolean");
    c->ack = json_is_true(ack);
    const json_t *s = json_object_get(o, "subject");
    if (!json_is_string(s) || json_string_length(s) == 0)
        ERR("invalid_name", "\"subject\" is required");
    jn_rest_rec_t *r = calloc(1, sizeof(*r));
    if (!r) {
        *code = "internal";
        snprintf(err, errlen, "out of memory");
        return JN_ENOMEM;
    }
    int rc = jn_rest_rec_parse(o, r, err, errlen);
    if (rc < 0) {
        free(r);
        *code = rc == JN_ENOMEM ? "internal" : "bad_request";
        return rc;
    }
    c->rec_state = r;
    c->rec = r->rec;
    c->subject = r->subject;
    c->subject_len = r->subject_len;
    c->partition = r->partition;
    return 0;
fail:
    return JN_EINVAL;
}

static int parse_commit(jn_ws_cmd_t *c, const char **code, char *err, size_t errlen)
{
    bool bad = false;
    const json_t *o = c->root;
    c->group = get_str(o, "group", JN_STREAM_NAME_MAX, &bad);
    if (!c->group || bad || !group_name_ok(c->group))
        ERR("invalid_name", "\"group\" must be a valid group name");
    c->stream = get_str(o, "stream", JN_STREAM_NAME_MAX, &bad);
    if (!c->stream || bad)
        ERR("invalid_name", "\"stream\" is required");
    const json_t *p = json_object_get(o, "partition");
    const json_t *off = json_object_get(o, "offset");
    if (!json_is_integer(p) || json_integer_value(p) < 0 || json_integer_value(p) >= JN_PARTITIONS_MAX)
        ERR("bad_request", "\"partition\" must be a partition number");
    if (!json_is_integer(off) || json_integer_value(off) < 0)
        ERR("bad_request", "\"offset\" must be a non-negative integer");
    c->partition = (int32_t)json_integer_value(p);
    c->offset = json_integer_value(off);
    c->metadata = get_str(o, "metadata", 4096, &bad);
    if (bad)
        ERR("bad_request", "\"metadata\" must be a string");
    return 0;
fail:
    return JN_EINVAL;
}

int jn_ws_cmd_parse(const uint8_t *p, size_t len, jn_ws_cmd_t *out, const char **code, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->partition = -1;
    err[0] = '\0';
    json_error_t je;
    bool bad = false;
    out->root = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &je);
    if (!out->root)
        ERR("invalid_json", "not valid JSON: %s", je.text);
    if (!json_is_object(out->root))
        ERR("invalid_json", "a command must be a JSON object");
    out->ref = get_str(out->root, "ref", JN_WS_ID_MAX, &bad);
    if (bad)
        ERR("bad_request", "\"ref\" must be a string of 1..%d bytes", JN_WS_ID_MAX);
    const char *op = get_str(out->root, "op", 32, &bad);
    if (!op)
        ERR("bad_request", "\"op\" is required");
    if (strcmp(op, "subscribe") == 0) {
        out->op = JN_WS_OP_SUBSCRIBE;
        return parse_subscribe(out, code, err, errlen);
    }
    if (strcmp(op, "unsubscribe") == 0) {
        out->op = JN_WS_OP_UNSUBSCRIBE;
        out->id = get_str(out->root, "id", JN_WS_ID_MAX, &bad);
        if (!out->id)
            ERR("bad_request", "\"id\" must be a string of 1..%d bytes", JN_WS_ID_MAX);
        return 0;
    }
    if (strcmp(op, "publish") == 0) {
        out->op = JN_WS_OP_PUBLISH;
        return parse_publish(out, code, err, errlen);
    }
    if (strcmp(op, "commit") == 0) {
        out->op = JN_WS_OP_COMMIT;
        return parse_commit(out, code, err, errlen);
    }
    if (strcmp(op, "auth") == 0) {
        out->op = JN_WS_OP_AUTH;
        out->token = get_str(out->root, "token", JN_WS_TOKEN_MAX, &bad);
        if (!out->token)
            ERR("bad_request", "\"token\" must be a string of 1..%d bytes", JN_WS_TOKEN_MAX);
        return 0;
    }
    if (strcmp(op, "ping") == 0) {
        out->op = JN_WS_OP_PING;
        return 0;
    }
    ERR("unknown_op", "unknown op \"%.32s\"", op);
fail:
    return JN_EINVAL;
}

void jn_ws_cmd_free(jn_ws_cmd_t *c)
{
    if (c->rec_state) {
        jn_rest_rec_free(c->rec_state);
        free(c->rec_state);
    }
    json_decref(c->root);
    memset(c, 0, sizeof(*c));
}

int jn_ws_record_json_tail(jn_buf_t *out, const jn_delivery_t *d)
{
    const char *sname = jn_stream_name(d->stream);
    size_t at = out->len;
    /* The renderer writes a whole object (or nothing): its '{' becomes
     * the ',' that continues the head. */
    int rc = jn_rest_record_json(out, sname, strlen(sname), d->partition, d->rec, d->subject, d->subject_len);
    if (rc == 0)
        out->data[at] = ',';
    return rc;
}

int jn_ws_record_json(jn_buf_t *out, const char *sub, size_t sub_len, const jn_delivery_t *d)
{
    size_t mark = out->len;
    int rc = jn_buf_append_str(out, JN_WS_RECORD_JSON_HEAD);
    if (rc == 0)
        rc = jn_rest_json_string(out, (const uint8_t *)sub, sub_len);
    if (rc == 0)
        rc = jn_ws_record_json_tail(out, d);
    if (rc < 0)
        out->len = mark;
    return rc;
}
