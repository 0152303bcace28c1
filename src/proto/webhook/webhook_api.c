/* webhook_api.c - the REST resources of outbound webhooks (/v1/webhooks,
 * docs/webhooks.md): definitions are validated here, stored in the
 * metadata log ("ext/webhook/<id>") and handed to the engine
 * (webhook.c). Authentication, admin checks and error answers are the
 * REST door's own helpers. */
#include "webhook_int.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

#include "../../common/clock.h"
#include "../../common/log.h"
#include "../../core/filter.h"
#include "../rest/rest_internal.h"

#define WH_URL_MAX 2048
#define WH_HEADERS_MAX 32
#define WH_GRACE_DEFAULT_MS (24LL * 3600 * 1000)

static void set_err(const char **code, const char *c, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void set_err(const char **code, const char *c, char *err, size_t errlen, const char *fmt, ...)
{
    *code = c;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool int_in(const json_t *v, int64_t lo, int64_t hi)
{
    return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

static bool header_name_ok(const char *n)
{
    if (!*n || strlen(n) > 128)
        return false;
    for (const char *p = n; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
            return false;
    static const char *const reserved[] = {"content-type", "content-length", "host", "transfer-encoding",
                                           "connection", "expect", NULL};
    for (int i = 0; reserved[i]; i++)
        if (strcasecmp(n, reserved[i]) == 0)
            return false;
    return strncasecmp(n, "webhook-", 8) != 0;
}

static bool header_value_ok(const char *v)
{
    if (strlen(v) > 800)
        return false;
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            return false;
    return true;
}

static bool url_ok(const char *url, char *why, size_t wl)
{
    if (strlen(url) > WH_URL_MAX) {
        snprintf(why, wl, "url is longer than %d bytes", WH_URL_MAX);
        return false;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool ok = false;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        snprintf(why, wl, "url '%s' is not a valid absolute URL", url);
    } else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
               (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        snprintf(why, wl, "url must be http:// or https://");
    } else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
        snprintf(why, wl, "url has no host");
    } else {
        ok = true;
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

json_t *jn__wh_def_build(jn_webhook_t *w, const json_t *base, const json_t *in, const char **code, char *err,
                         size_t errlen)
{
    static const char *const known[] = {"url", "filter", "start", "headers", "timeout_ms", "rate_limit",
                                        "max_concurrency", "ordering", "secret", "retry_schedule", "disabled",
                                        "envelope", "disable_after_ms", "description", "max_redirects", NULL};
    if (!json_is_object(in)) {
        set_err(code, "invalid_json", err, errlen, "the body must be a JSON object");
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)in, k, v) {
        int i = 0;
        while (known[i] && strcmp(known[i], k) != 0)
            i++;
        if (!known[i]) {
            set_err(code, "bad_request", err, errlen, "unknown member '%s'", k);
            return NULL;
        }
    }
    json_t *d = base ? json_deep_copy(base) : json_object();
    if (!d) {
        set_err(code, "internal", err, errlen, "out of memory");
        return NULL;
    }
    char why[256];
    if ((v = json_object_get(in, "url"))) {
        if (!json_is_string(v) || !url_ok(json_string_value(v), why, sizeof why)) {
            set_err(code, "invalid_url", err, errlen, "%s", json_is_string(v) ? why : "url must be a string");
            goto fail;
        }
        json_object_set(d, "url", v);
    }
    if ((v = json_object_get(in, "filter"))) {
        if (!json_is_string(v) || jn_filter_validate(json_string_value(v), json_string_length(v)) < 0) {
            set_err(code, "invalid_filter", err, errlen, "filter must be a valid subject filter (e.g. orders/#)");
            goto fail;
        }
        json_object_set(d, "filter", v);
    }
    if ((v = json_object_get(in, "start"))) {
        const char *s = json_string_value(v);
        if (!(s && (strcmp(s, "live") == 0 || strcmp(s, "earliest") == 0)) && !int_in(v, 0, INT64_MAX)) {
            set_err(code, "bad_request", err, errlen, "start must be \"live\", \"earliest\" or an offset");
            goto fail;
        }
        json_object_set(d, "start", v);
    }
    if ((v = json_object_get(in, "headers"))) {
        if (!json_is_object(v) || json_object_size(v) > WH_HEADERS_MAX) {
            set_err(code, "bad_request", err, errlen, "headers must be an object of at most %d strings",
                    WH_HEADERS_MAX);
            goto fail;
        }
        const char *hn;
        json_t *hv;
        json_object_foreach(v, hn, hv) {
            if (!header_name_ok(hn) || !json_is_string(hv) || !header_value_ok(json_string_value(hv))) {
                set_err(code, "bad_request", err, errlen, "header '%s' is not allowed or not a valid value", hn);
                goto fail;
            }
        }
        json_object_set(d, "headers", v);
    }
    static const struct {
        const char *name;
        int64_t lo, hi;
    } ints[] = {{"timeout_ms", 100, 300000},
                {"rate_limit", 0, 1000000},
                {"max_concurrency", 1, 4096},
                {"max_redirects", 0, JN_WH_REDIRECTS_MAX},
                {"disable_after_ms", 0, 365LL * 24 * 3600 * 1000}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if ((v = json_object_get(in, ints[i].name))) {
            if (!int_in(v, ints[i].lo, ints[i].hi)) {
                set_err(code, "bad_request", err, errlen, "%s must be an integer in %" PRId64 "..%" PRId64,
                        ints[i].name, ints[i].lo, ints[i].hi);
                goto fail;
            }
            json_object_set(d, ints[i].name, v);
        }
    }
    if ((v = json_object_get(in, "ordering"))) {
        const char *s = json_string_value(v);
        if (!s || (strcmp(s, "key") != 0 && strcmp(s, "parallel") != 0)) {
            set_err(code, "bad_request", err, errlen, "ordering must be \"key\" or \"parallel\"");
            goto fail;
        }
        json_object_set(d, "ordering", v);
    }
    if ((v = json_object_get(in, "envelope"))) {
        const char *s = json_string_value(v);
        if (!s || (strcmp(s, "raw") != 0 && strcmp(s, "json") != 0)) {
            set_err(code, "bad_request", err, errlen, "envelope must be \"raw\" or \"json\"");
            goto fail;
        }
        json_object_set(d, "envelope", v);
    }
    if ((v = json_object_get(in, "secret"))) {
        uint8_t tmp[JN_WH_SECRET_MAX];
        if (!json_is_string(v) || jn_wh_secret_decode(json_string_value(v), tmp) < 16) {
            set_err(code, "bad_request", err, errlen,
                    "secret must be \"whsec_\" + base64 of 16 to %d bytes", JN_WH_SECRET_MAX);
            goto fail;
        }
        json_object_set(d, "secret", v);
    }
    if ((v = json_object_get(in, "retry_schedule"))) {
        int64_t sched[JN_WH_SCHEDULE_MAX];
        int n = -1;
        if (json_is_string(v)) {
            n = jn_wh_schedule_parse(json_string_value(v), sched);
        } else if (json_is_array(v) && json_array_size(v) <= JN_WH_SCHEDULE_MAX) {
            size_t i;
            json_t *e;
            n = (int)json_array_size(v);
            json_array_foreach(v, i, e) {
                if (!int_in(e, 0, 7LL * 24 * 3600 * 1000))
                    n = -1;
                else
                    sched[i] = (int64_t)json_integer_value(e);
                if (n < 0)
                    break;
            }
        }
        if (n < 0) {
            set_err(code, "bad_request", err, errlen,
                    "retry_schedule must be up to %d delays: [ms, ...] or \"5s,5m,30m\"", JN_WH_SCHEDULE_MAX);
            goto fail;
        }
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, json_integer(sched[i]));
        json_object_set_new(d, "retry_schedule", arr);
    }
    if ((v = json_object_get(in, "disabled"))) {
        if (!json_is_boolean(v)) {
            set_err(code, "bad_request", err, errlen, "disabled must be a boolean");
            goto fail;
        }
        json_object_set(d, "disabled", v);
        if (!json_is_true(v))
            json_object_del(d, "disabled_reason");
    }
    if ((v = json_object_get(in, "description"))) {
        if (!json_is_string(v) || json_string_length(v) > 512) {
            set_err(code, "bad_request", err, errlen, "description must be a string of at most 512 bytes");
            goto fail;
        }
        json_object_set(d, "description", v);
    }
    if (!base) {
        if (!json_object_get(d, "url")) {
            set_err(code, "invalid_url", err, errlen, "url is required");
            goto fail;
        }
        if (!json_object_get(d, "filter")) {
            set_err(code, "invalid_filter", err, errlen, "filter is required");
            goto fail;
        }
        if (!json_object_get(d, "secret")) {
            char s[64];
            if (jn_wh_secret_generate(s, sizeof s) < 0) {
                set_err(code, "internal", err, errlen, "no randomness for a secret");
                goto fail;
            }
            json_object_set_new(d, "secret", json_string(s));
        }
        if (!json_object_get(d, "retry_schedule")) {
            const int64_t *sched;
            int n = jn__wh_default_schedule(w, &sched);
            json_t *arr = json_array();
            for (int i = 0; i < n; i++)
                json_array_append_new(arr, json_integer(sched[i]));
            json_object_set_new(d, "retry_schedule", arr);
        }
        struct {
            const char *name;
            json_t *val;
        } defaults[] = {{"start", json_string("live")},
                        {"headers", json_object()},
                        {"timeout_ms", json_integer(w->cfg.default_timeout_ms)},
                        {"rate_limit", json_integer(0)},
                        {"max_concurrency", json_integer(16)},
                        {"max_redirects", json_integer(JN_WH_REDIRECTS_DEFAULT)},
                        {"ordering", json_string("parallel")},
                        {"envelope", json_string("raw")},
                        {"disabled", json_false()},
                        {"disable_after_ms", json_integer(w->cfg.disable_after_ms)}};
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
            if (!json_object_get(d, defaults[i].name))
                json_object_set(d, defaults[i].name, defaults[i].val);
            json_decref(defaults[i].val);
        }
    }
    return d;
fail:
    json_decref(d);
    return NULL;
}

/* ---- handlers ---- */

/* Every resource here is for administrators: false once the refusal is
 * answered. */
static bool admin_only(jn_webhook_t *w, jn_http_req_t *req)
{
    jn_principal_t p;
    return jn__rest_admin(w->rest, req, &p, NULL);
}

/* The admin check, then the endpoint named by the path's {id}: NULL once
 * the refusal or the 404 is answered. */
static wh_ep_t *admin_endpoint(jn_webhook_t *w, jn_http_req_t *req)
{
    if (!admin_only(w, req))
        return NULL;
    const char *id = jn_http_req_param(req, "id");
    wh_ep_t *ep = id ? jn__wh_ep_find(w, id) : NULL;
    if (!ep)
        jn_http_respond_error(req, 404, "not_found", "webhook endpoint '%s' does not exist", id ? id : "");
    return ep;
}

/* Builds a definition from the request's JSON body over |base| (NULL for a
 * new endpoint): NULL once the error is answered. */
static json_t *def_from_body(jn_webhook_t *w, jn_http_req_t *req, const json_t *base)
{
    json_t *in = jn__rest_body_json(req);
    if (!in)
        return NULL;
    const char *code;
    char err[512];
    json_t *def = jn__wh_def_build(w, base, in, &code, err, sizeof err);
    json_decref(in);
    if (!def)
        jn_http_respond_error(req, strcmp(code, "internal") == 0 ? 500 : 400, code, "%s", err);
    return def;
}

/* Answers 400 bad_request with |msg| after dropping the request body |in|. */
static void bad_body(jn_http_req_t *req, json_t *in, const char *msg)
{
    json_decref(in);
    jn_http_respond_error(req, 400, "bad_request", "%s", msg);
}

/* Stores |def| as endpoint |id| and (re)starts it; answers errors. */
static bool store_and_apply(jn_webhook_t *w, jn_http_req_t *req, const char *id, json_t *def)
{
    char key[96];
    snprintf(key, sizeof key, "webhook/%s", id);
    int rc = jn_broker_meta_put(w->broker, key, def);
    if (rc == 0)
        rc = jn__wh_ep_apply(w, id, def);
    if (rc < 0) {
        jn__rest_fail(req, rc, false, "cannot store webhook endpoint '%s'", id);
        return false;
    }
    return true;
}

static void wh_create(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    if (!admin_only(w, req))
        return;
    json_t *def = def_from_body(w, req, NULL);
    if (!def)
        return;
    uint8_t raw[8];
    char id[32];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        json_decref(def);
        jn_http_respond_error(req, 500, "internal", "no randomness for an id");
        return;
    }
    snprintf(id, sizeof id, "ep_%02x%02x%02x%02x%02x%02x%02x%02x", raw[0], raw[1], raw[2], raw[3], raw[4], raw[5],
             raw[6], raw[7]);
    json_object_set_new(def, "id", json_string(id));
    json_object_set_new(def, "created_at", json_integer(jn_wall_ms()));
    if (store_and_apply(w, req, id, def)) {
        wh_ep_t *ep = jn__wh_ep_find(w, id);
        jn__rest_respond_steal(req, 201, ep ? jn__wh_ep_json(ep, true) : json_incref(def));
    }
    json_decref(def);
}

static void wh_list(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    if (!admin_only(w, req))
        return;
    json_t *arr = jn__wh_list_json(w);
    jn__rest_respond_steal(req, 200, arr ? json_pack("{s:o}", "webhooks", arr) : NULL);
}

static void wh_get(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    wh_ep_t *ep = admin_endpoint(w, req);
    if (ep)
        jn__rest_respond_steal(req, 200, jn__wh_ep_json(ep, true));
}

static void wh_patch(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    wh_ep_t *ep = admin_endpoint(w, req);
    if (!ep)
        return;
    json_t *def = def_from_body(w, req, jn__wh_ep_def(ep));
    if (!def)
        return;
    char id[64];
    snprintf(id, sizeof id, "%s", jn__wh_ep_id(ep));
    if (store_and_apply(w, req, id, def)) {
        ep = jn__wh_ep_find(w, id);
        jn__rest_respond_steal(req, 200, ep ? jn__wh_ep_json(ep, true) : NULL);
    }
    json_decref(def);
}

static void wh_delete(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    wh_ep_t *ep = admin_endpoint(w, req);
    if (!ep)
        return;
    char key[96];
    snprintf(key, sizeof key, "webhook/%s", jn__wh_ep_id(ep));
    int rc = jn_broker_meta_put(w->broker, key, NULL);
    if (rc < 0) {
        jn__rest_fail(req, rc, false, "cannot delete the endpoint");
        return;
    }
    jn__wh_ep_remove(ep, true);
    jn_http_respond(req, 204, NULL, NULL, 0);
}

static void wh_rotate(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    wh_ep_t *ep = admin_endpoint(w, req);
    if (!ep)
        return;
    size_t blen;
    jn_http_req_body(req, &blen);
    json_t *in = blen ? jn__rest_body_json(req) : json_object();
    if (!in)
        return;
    json_t *sec = json_object_get(in, "secret");
    json_t *grace = json_object_get(in, "grace_ms");
    char s[64];
    uint8_t tmp[JN_WH_SECRET_MAX];
    if (sec && (!json_is_string(sec) || jn_wh_secret_decode(json_string_value(sec), tmp) < 16)) {
        bad_body(req, in, "secret must be \"whsec_\" + base64 of 16 to 64 bytes");
        return;
    }
    if (grace && !int_in(grace, 0, 30LL * 24 * 3600 * 1000)) {
        bad_body(req, in, "grace_ms must be an integer from 0 to 30 days");
        return;
    }
    if (sec)
        snprintf(s, sizeof s, "%s", json_string_value(sec));
    else if (jn_wh_secret_generate(s, sizeof s) < 0) {
        json_decref(in);
        jn_http_respond_error(req, 500, "internal", "no randomness for a secret");
        return;
    }
    int64_t until = jn_wall_ms() + (grace ? (int64_t)json_integer_value(grace) : WH_GRACE_DEFAULT_MS);
    json_decref(in);
    json_t *def = json_deep_copy(jn__wh_ep_def(ep));
    if (!def) {
        jn_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    json_object_set(def, "old_secret", json_object_get(def, "secret"));
    json_object_set_new(def, "old_secret_until", json_integer(until));
    json_object_set_new(def, "secret", json_string(s));
    char id[64];
    snprintf(id, sizeof id, "%s", jn__wh_ep_id(ep));
    if (store_and_apply(w, req, id, def))
        jn__rest_respond_steal(req, 200, json_pack("{s:s,s:I}", "secret", s, "old_secret_valid_until", (json_int_t)until));
    json_decref(def);
}

static void wh_attempts(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    wh_ep_t *ep = admin_endpoint(w, req);
    if (!ep)
        return;
    int64_t limit = 100;
    int q = jn__rest_query_i64(req, "limit", &limit);
    if (q < 0)
        return;
    if (limit < 1 || limit > JN_WH_ATTEMPTS_KEEP) {
        jn_http_respond_error(req, 400, "bad_request", "limit must be 1..%d", JN_WH_ATTEMPTS_KEEP);
        return;
    }
    json_t *a = jn__wh_attempts_json(w, jn__wh_ep_id(ep), (size_t)limit);
    jn__rest_respond_steal(req, 200, a ? json_pack("{s:o}", "attempts", a) : NULL);
}

static void respond_queued(jn_http_req_t *req, int rc)
{
    if (rc >= 0)
        jn__rest_respond_steal(req, 202, json_pack("{s:i}", "queued", rc));
    else if (rc == JN_ESTATE)
        jn_http_respond_error(req, 409, "disabled", "the endpoint is disabled");
    else
        jn__rest_fail(req, rc, false, "cannot queue the records");
}

/* Reads "stream", "partition" (default 0) from |in|. */
static bool stream_part(jn_http_req_t *req, const json_t *in, const char **stream, uint32_t *partition)
{
    json_t *s = json_object_get(in, "stream");
    json_t *p = json_object_get(in, "partition");
    if (!json_is_string(s) || (p && !int_in(p, 0, JN_PARTITIONS_MAX - 1))) {
        jn_http_respond_error(req, 400, "bad_request", "stream (string) and partition (integer) are required");
        return false;
    }
    *stream = json_string_value(s);
    *partition = p ? (uint32_t)json_integer_value(p) : 0;
    return true;
}

static void wh_retry(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    wh_ep_t *ep = admin_endpoint(w, req);
    if (!ep)
        return;
    json_t *in = jn__rest_body_json(req);
    if (!in)
        return;
    char stream[JN_STREAM_NAME_MAX + 1];
    const char *sname = NULL;
    uint32_t part = 0;
    int64_t off = -1;
    json_t *mid = json_object_get(in, "message_id");
    if (json_is_string(mid)) {
        if (jn_wh_msgid_parse(json_string_value(mid), stream, sizeof stream, &part, &off) < 0) {
            bad_body(req, in, "message_id is not a webhook-id of this server");
            return;
        }
        sname = stream;
    } else {
        if (!stream_part(req, in, &sname, &part)) {
            json_decref(in);
            return;
        }
        json_t *o = json_object_get(in, "offset");
        if (!int_in(o, 0, INT64_MAX)) {
            bad_body(req, in, "offset (integer) or message_id is required");
            return;
        }
        off = (int64_t)json_integer_value(o);
        snprintf(stream, sizeof stream, "%s", sname);
    }
    json_decref(in);
    respond_queued(req, jn__wh_ep_replay(ep, stream, part, off, off));
}

static void wh_replay(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    wh_ep_t *ep = admin_endpoint(w, req);
    if (!ep)
        return;
    json_t *in = jn__rest_body_json(req);
    if (!in)
        return;
    const char *sname;
    uint32_t part;
    char stream[JN_STREAM_NAME_MAX + 1];
    if (!stream_part(req, in, &sname, &part)) {
        json_decref(in);
        return;
    }
    snprintf(stream, sizeof stream, "%s", sname);
    json_t *from = json_object_get(in, "from"), *to = json_object_get(in, "to");
    if (!int_in(from, 0, INT64_MAX) || !int_in(to, 0, INT64_MAX)) {
        bad_body(req, in, "from and to (inclusive offsets) are required");
        return;
    }
    int64_t f = (int64_t)json_integer_value(from), t = (int64_t)json_integer_value(to);
    json_decref(in);
    respond_queued(req, jn__wh_ep_replay(ep, stream, part, f, t));
}

int jn__wh_routes(jn_webhook_t *w)
{
    static const struct {
        const char *method, *pattern;
        jn_http_handler h;
    } routes[] = {
        {"POST", "/v1/webhooks", wh_create},
        {"GET", "/v1/webhooks", wh_list},
        {"GET", "/v1/webhooks/{id}", wh_get},
        {"PATCH", "/v1/webhooks/{id}", wh_patch},
        {"DELETE", "/v1/webhooks/{id}", wh_delete},
        {"POST", "/v1/webhooks/{id}/rotate-secret", wh_rotate},
        {"GET", "/v1/webhooks/{id}/attempts", wh_attempts},
        {"POST", "/v1/webhooks/{id}/retry", wh_retry},
        {"POST", "/v1/webhooks/{id}/replay", wh_replay},
        {"POST", "/v1/hooks", jn__wh_hook_create},
        {"GET", "/v1/hooks", jn__wh_hook_list},
        {"GET", "/v1/hooks/{name}", jn__wh_hook_get},
        {"DELETE", "/v1/hooks/{name}", jn__wh_hook_delete},
        {"POST", "/v1/hooks/{name}", jn__wh_hook_receive},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = jn_httpd_route(w->httpd, routes[i].method, routes[i].pattern, routes[i].h, w);
        if (rc < 0) {
            jn_error("webhooks: cannot register %s %s: %s", routes[i].method, routes[i].pattern, jn_strerror(rc));
            return rc;
        }
    }
    return 0;
}
