/* rest_stats.c - GET /v1/stats: connections and message counters per door,
 * for the web console (docs/console.md), read back from the metrics
 * registry so that the door needs to know no other door.
 *
 * Doors register the families of proto/common/door_metrics.h; the HTTP
 * server's own gauge and request counters appear as door "http", and the
 * broker's per-stream publish counters are summed into "published". The
 * figures are monotonic counters with the server's wall clock: a client
 * computes rates from two samples, as Prometheus does, so that any number
 * of consoles can poll without disturbing each other.
 */
#include "rest_internal.h"

#include <stdlib.h>
#include <string.h>

#include "../../common/clock.h"
#include "../common/door_metrics.h"

#define STATS_METRICS_MAX (64u << 20)
#define STATS_DOOR_NAME_MAX 32

/* Finds label |name| in the label text |l| (|len| bytes, without braces)
 * and copies its value into |out|. Returns false when absent or too long. */
static bool label_value(const char *l, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 2 <= len; i++) {
        if ((i == 0 || l[i - 1] == ',') && memcmp(l + i, name, nl) == 0 && l[i + nl] == '=' && l[i + nl + 1] == '"') {
            const char *v = l + i + nl + 2;
            const char *e = memchr(v, '"', len - (size_t)(v - l));
            if (!e || (size_t)(e - v) >= outlen)
                return false;
            memcpy(out, v, (size_t)(e - v));
            out[e - v] = '\0';
            return true;
        }
    }
    return false;
}

/* The door object named |name| in |doors|, created on first use. */
static json_t *door_obj(json_t *doors, const char *name)
{
    json_t *d = json_object_get(doors, name);
    if (!d) {
        d = json_pack("{s:s,s:I,s:I,s:I}", "door", name, "connections", (json_int_t)0, "messages_in",
                      (json_int_t)0, "messages_out", (json_int_t)0);
        if (!d || json_object_set_new(doors, name, d) < 0)
            return NULL;
    }
    return d;
}

static int add_int(json_t *o, const char *key, json_int_t v)
{
    json_t *cur = json_object_get(o, key);
    return json_object_set_new(o, key, json_integer((cur ? json_integer_value(cur) : 0) + v));
}

/* One sample line "name{labels} value" into |doors| / |pub|. */
static int take_line(const char *p, size_t len, json_t *doors, json_t *pub)
{
    const char *brace = memchr(p, '{', len);
    const char *sp = memchr(p, ' ', len);
    if (!sp)
        return 0;
    size_t nlen = (size_t)((brace && brace < sp ? brace : sp) - p);
    const char *labels = "";
    size_t llen = 0;
    if (brace && brace < sp) {
        const char *close = memchr(brace, '}', len - (size_t)(brace - p));
        if (!close)
            return 0;
        labels = brace + 1;
        llen = (size_t)(close - labels);
        sp = memchr(close, ' ', len - (size_t)(close - p));
        if (!sp)
            return 0;
    }
    char num[32];
    size_t vl = len - (size_t)(sp + 1 - p);
    if (vl == 0 || vl >= sizeof num)
        return 0;
    memcpy(num, sp + 1, vl);
    num[vl] = '\0';
    json_int_t v = (json_int_t)strtod(num, NULL);

#define IS(lit) (nlen == sizeof(lit) - 1 && memcmp(p, lit, nlen) == 0)
    char door[STATS_DOOR_NAME_MAX], dir[8];
    json_t *d;
    if (IS("junction_http_connections")) {
        if (!(d = door_obj(doors, "http")))
            return JN_ENOMEM;
        return add_int(d, "connections", v);
    }
    if (IS("junction_http_requests_total")) {
        if (!(d = door_obj(doors, "http")))
            return JN_ENOMEM;
        return add_int(d, "messages_in", v) < 0 || add_int(d, "messages_out", v) < 0 ? JN_ENOMEM : 0;
    }
    if (IS(JN_DOOR_CONNECTIONS) && label_value(labels, llen, "door", door, sizeof door)) {
        if (!(d = door_obj(doors, door)))
            return JN_ENOMEM;
        return add_int(d, "connections", v);
    }
    if (IS(JN_DOOR_MESSAGES) && label_value(labels, llen, "door", door, sizeof door) &&
        label_value(labels, llen, "direction", dir, sizeof dir)) {
        if (!(d = door_obj(doors, door)))
            return JN_ENOMEM;
        return add_int(d, strcmp(dir, "in") == 0 ? "messages_in" : "messages_out", v);
    }
    if (IS("junction_records_published_total"))
        return add_int(pub, "records", v);
    if (IS("junction_published_bytes_total"))
        return add_int(pub, "bytes", v);
#undef IS
    return 0;
}

void jn__rest_stats(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    if (!jn__rest_auth(r, req, &p))
        return;
    jn_buf_t b;
    jn_buf_init(&b, STATS_METRICS_MAX);
    json_t *doors = json_object();
    json_t *pub = json_pack("{s:I,s:I}", "records", (json_int_t)0, "bytes", (json_int_t)0);
    json_t *out = NULL;
    int rc = doors && pub ? jn_metrics_render(jn_broker_metrics(r->broker), &b) : JN_ENOMEM;
    for (size_t i = 0; rc == 0 && i < b.len;) {
        const char *line = (const char *)b.data + i;
        const char *nl = memchr(line, '\n', b.len - i);
        size_t len = nl ? (size_t)(nl - line) : b.len - i;
        if (len > 0 && line[0] != '#')
            rc = take_line(line, len, doors, pub);
        i += len + 1;
    }
    if (rc == 0) {
        /* An array in name order reads better than an object in a table. */
        json_t *arr = json_array();
        const char *k;
        json_t *v;
        void *tmp;
        if (!arr)
            rc = JN_ENOMEM;
        json_object_foreach_safe(doors, tmp, k, v) {
            if (rc == 0 && json_array_append(arr, v) < 0)
                rc = JN_ENOMEM;
        }
        out = json_pack("{s:I,s:I,s:I,s:o,s:O}", "time_ms", (json_int_t)jn_wall_ms(), "uptime_ms",
                        (json_int_t)((jn_mono_ns() - r->start_ns) / 1000000u), "streams",
                        (json_int_t)jn_broker_stream_count(r->broker), "doors", arr, "published", pub);
        if (!out)
            rc = JN_ENOMEM;
    }
    if (rc < 0)
        jn__rest_fail(req, rc, false, "cannot collect stats");
    else
        jn__rest_respond_steal(req, 200, out);
    json_decref(doors);
    json_decref(pub);
    jn_buf_free(&b);
}
