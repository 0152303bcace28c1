/* webhook_in.c - inbound webhooks: hooks defined over REST (/v1/hooks,
 * stored as "ext/hook/<name>" in the metadata log) and POST
 * /v1/hooks/{name}, which verifies the sender's signature, rejects stale
 * timestamps and exact replays, and publishes the body as a record of the
 * hook's subject so that every other door sees it.
 *
 * Replay protection: the ids of accepted messages are remembered for the
 * tolerance window (a FIFO with a hash index, at most WH_SEEN_MAX per
 * hook; past that the oldest is forgotten first). A message older than the
 * window is refused for its timestamp, so the two together reject every
 * exact replay while the cache holds. */
#include "webhook_int.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/clock.h"
#include "../../common/log.h"
#include "../../core/filter.h"
#include "../rest/rest_internal.h"

#define WH_SEEN_MAX 65536
#define WH_SEEN_BUCKETS 4096
#define WH_HOOK_NAME_MAX 127
#define WH_ID_MAX 256

typedef struct wh_seen {
    jn_list_t node;         /* hook->seen, oldest first */
    struct wh_seen *bnext;
    uint64_t hash;
    int64_t expires;        /* wall ms */
    char id[];
} wh_seen_t;

static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static void seen_unlink(wh_hook_t *h, wh_seen_t *s)
{
    wh_seen_t **b = &h->buckets[s->hash % WH_SEEN_BUCKETS];
    while (*b != s)
        b = &(*b)->bnext;
    *b = s->bnext;
    jn_list_remove(&s->node);
    h->nseen--;
    free(s);
}

/* Forgets expired ids; true when |id| is still remembered. */
static bool seen_has(wh_hook_t *h, const char *id, size_t n, int64_t now)
{
    while (!jn_list_empty(&h->seen)) {
        wh_seen_t *s = jn_container_of(h->seen.next, wh_seen_t, node);
        if (s->expires > now)
            break;
        seen_unlink(h, s);
    }
    uint64_t hv = str_hash(id, n);
    for (wh_seen_t *s = h->buckets[hv % WH_SEEN_BUCKETS]; s; s = s->bnext)
        if (s->hash == hv && strlen(s->id) == n && memcmp(s->id, id, n) == 0)
            return true;
    return false;
}

static void seen_add(wh_hook_t *h, const char *id, size_t n, int64_t expires)
{
    if (h->nseen >= WH_SEEN_MAX)
        seen_unlink(h, jn_container_of(h->seen.next, wh_seen_t, node));
    wh_seen_t *s = malloc(sizeof *s + n + 1);
    if (!s)
        return;
    s->hash = str_hash(id, n);
    s->expires = expires;
    memcpy(s->id, id, n);
    s->id[n] = '\0';
    s->bnext = h->buckets[s->hash % WH_SEEN_BUCKETS];
    h->buckets[s->hash % WH_SEEN_BUCKETS] = s;
    jn_list_insert_tail(&h->seen, &s->node);
    h->nseen++;
}

static void hook_free(wh_hook_t *h)
{
    if (!h)
        return;
    while (!jn_list_empty(&h->seen))
        seen_unlink(h, jn_container_of(h->seen.next, wh_seen_t, node));
    free(h->buckets);
    free(h->subject);
    json_decref(h->def);
    free(h);
}

static wh_hook_t *hook_find(jn_webhook_t *w, const char *name)
{
    jn_list_t *it;
    jn_list_foreach(it, &w->hooks) {
        wh_hook_t *h = jn_container_of(it, wh_hook_t, node);
        if (strcmp(h->name, name) == 0)
            return h;
    }
    return NULL;
}

/* The hook named by the path's {name}: NULL once the 404 is answered. */
static wh_hook_t *path_hook(jn_webhook_t *w, jn_http_req_t *req)
{
    const char *name = jn_http_req_param(req, "name");
    wh_hook_t *h = name ? hook_find(w, name) : NULL;
    if (!h)
        jn_http_respond_error(req, 404, "not_found", "hook '%s' does not exist", name ? name : "");
    return h;
}

static bool name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > WH_HOOK_NAME_MAX)
        return false;
    for (const char *p = n; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return false;
    return true;
}

static void copy_str(char *dst, size_t cap, const json_t *o, const char *name, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, name));
    snprintf(dst, cap, "%s", s ? s : dflt);
}

/* Builds a hook from a stored or requested definition. NULL with |err|. */
static wh_hook_t *hook_from_def(const json_t *d, char *err, size_t errlen)
{
    wh_hook_t *h = calloc(1, sizeof *h);
    if (!h || !(h->buckets = calloc(WH_SEEN_BUCKETS, sizeof *h->buckets))) {
        free(h);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    jn_list_init(&h->seen);
    jn_list_init(&h->node);
    const char *name = json_string_value(json_object_get(d, "name"));
    const char *subject = json_string_value(json_object_get(d, "subject"));
    const char *scheme = json_string_value(json_object_get(d, "scheme"));
    const char *secret = json_string_value(json_object_get(d, "secret"));
    json_t *tol = json_object_get(d, "tolerance_s");
    if (!name || !name_ok(name)) {
        snprintf(err, errlen, "name must be 1..%d of [A-Za-z0-9._-]", WH_HOOK_NAME_MAX);
        goto fail;
    }
    snprintf(h->name, sizeof h->name, "%s", name);
    if (!subject || jn_subject_validate(subject, strlen(subject)) < 0) {
        snprintf(err, errlen, "subject must be a valid subject");
        goto fail;
    }
    if (!(h->subject = strdup(subject))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!scheme || (strcmp(scheme, "standard") != 0 && strcmp(scheme, "hmac") != 0)) {
        snprintf(err, errlen, "scheme must be \"standard\" or \"hmac\"");
        goto fail;
    }
    h->standard = strcmp(scheme, "standard") == 0;
    if (tol && !(json_is_integer(tol) && json_integer_value(tol) >= 1 && json_integer_value(tol) <= 86400)) {
        snprintf(err, errlen, "tolerance_s must be 1..86400");
        goto fail;
    }
    h->tolerance_s = tol ? (int64_t)json_integer_value(tol) : 300;
    if (!secret) {
        snprintf(err, errlen, "secret is required");
        goto fail;
    }
    if (h->standard) {
        int n = jn_wh_secret_decode(secret, h->secret);
        if (n < 1) {
            snprintf(err, errlen, "secret must be \"whsec_\" + base64");
            goto fail;
        }
        h->secret_len = (size_t)n;
    } else {
        size_t n = strlen(secret);
        if (n == 0 || n > sizeof h->secret) {
            snprintf(err, errlen, "secret must be 1..%zu bytes", sizeof h->secret);
            goto fail;
        }
        memcpy(h->secret, secret, n);
        h->secret_len = n;
        copy_str(h->header, sizeof h->header, d, "header", "X-Signature");
        copy_str(h->alg, sizeof h->alg, d, "algorithm", "sha256");
        copy_str(h->prefix, sizeof h->prefix, d, "prefix", "");
        copy_str(h->ts_header, sizeof h->ts_header, d, "timestamp_header", "");
        copy_str(h->id_header, sizeof h->id_header, d, "id_header", "");
        char enc[16];
        copy_str(enc, sizeof enc, d, "encoding", "hex");
        if (!jn_wh_hmac_alg_ok(h->alg) || (strcmp(enc, "hex") != 0 && strcmp(enc, "base64") != 0) || !*h->header) {
            snprintf(err, errlen, "algorithm must be sha256|sha1|sha512, encoding hex|base64, header not empty");
            goto fail;
        }
        h->hex = strcmp(enc, "hex") == 0;
    }
    if (!(h->def = json_deep_copy(d))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return h;
fail:
    hook_free(h);
    return NULL;
}

static void load_hook(const char *key, json_t *value, void *arg)
{
    jn_webhook_t *w = arg;
    char err[256];
    wh_hook_t *h = hook_from_def(value, err, sizeof err);
    if (!h) {
        jn_warn("webhooks: stored hook %s ignored: %s", key, err);
        return;
    }
    jn_list_insert_tail(&w->hooks, &h->node);
}

int jn__wh_hooks_load(jn_webhook_t *w)
{
    jn_broker_meta_each(w->broker, "hook/", load_hook, w);
    return 0;
}

void jn__wh_hooks_free(jn_webhook_t *w)
{
    while (!jn_list_empty(&w->hooks)) {
        wh_hook_t *h = jn_container_of(w->hooks.next, wh_hook_t, node);
        jn_list_remove(&h->node);
        hook_free(h);
    }
}

static json_t *hook_json(const wh_hook_t *h, bool with_secret)
{
    json_t *j = json_deep_copy(h->def);
    if (j && !with_secret)
        json_object_del(j, "secret");
    return j;
}

/* ---- admin routes ---- */

void jn__wh_hook_create(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    jn_principal_t p;
    if (!jn__rest_admin(w->rest, req, &p, NULL))
        return;
    json_t *in = jn__rest_body_json(req);
    if (!in)
        return;
    if (!json_is_object(in)) {
        json_decref(in);
        jn_http_respond_error(req, 400, "invalid_json", "the body must be a JSON object");
        return;
    }
    /* A Standard Webhooks hook without a secret gets one, shown once here. */
    const char *scheme = json_string_value(json_object_get(in, "scheme"));
    if (!json_object_get(in, "secret") && scheme && strcmp(scheme, "standard") == 0) {
        char s[64];
        if (jn_wh_secret_generate(s, sizeof s) == 0)
            json_object_set_new(in, "secret", json_string(s));
    }
    if (!json_object_get(in, "tolerance_s"))
        json_object_set_new(in, "tolerance_s", json_integer(300));
    char err[256];
    wh_hook_t *h = hook_from_def(in, err, sizeof err);
    json_decref(in);
    if (!h) {
        jn_http_respond_error(req, 400, "bad_request", "%s", err);
        return;
    }
    if (hook_find(w, h->name)) {
        jn_http_respond_error(req, 409, "already_exists", "hook '%s' exists", h->name);
        hook_free(h);
        return;
    }
    char key[160];
    snprintf(key, sizeof key, "hook/%s", h->name);
    int rc = jn_broker_meta_put(w->broker, key, h->def);
    if (rc < 0) {
        hook_free(h);
        jn__rest_fail(req, rc, false, "cannot store the hook");
        return;
    }
    jn_list_insert_tail(&w->hooks, &h->node);
    jn__rest_respond_steal(req, 201, hook_json(h, true));
}

void jn__wh_hook_list(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    jn_principal_t p;
    if (!jn__rest_admin(w->rest, req, &p, NULL))
        return;
    json_t *arr = json_array();
    jn_list_t *it;
    jn_list_foreach(it, &w->hooks)
        json_array_append_new(arr, hook_json(jn_container_of(it, wh_hook_t, node), false));
    jn__rest_respond_steal(req, 200, json_pack("{s:o}", "hooks", arr));
}

void jn__wh_hook_get(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    jn_principal_t p;
    if (!jn__rest_admin(w->rest, req, &p, NULL))
        return;
    wh_hook_t *h = path_hook(w, req);
    if (!h)
        return;
    jn__rest_respond_steal(req, 200, hook_json(h, true));
}

void jn__wh_hook_delete(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    jn_principal_t p;
    if (!jn__rest_admin(w->rest, req, &p, NULL))
        return;
    wh_hook_t *h = path_hook(w, req);
    if (!h)
        return;
    char key[160];
    snprintf(key, sizeof key, "hook/%s", h->name);
    int rc = jn_broker_meta_put(w->broker, key, NULL);
    if (rc < 0) {
        jn__rest_fail(req, rc, false, "cannot delete the hook");
        return;
    }
    jn_list_remove(&h->node);
    hook_free(h);
    jn_http_respond(req, 204, NULL, NULL, 0);
}

/* ---- receiving ---- */

/* Copies header |name| of |req| into |out| (NUL-terminated). False when
 * absent, empty or too long. */
static bool header_copy(jn_http_req_t *req, const char *name, char *out, size_t cap)
{
    size_t len;
    const char *v = jn_http_req_header(req, name, &len);
    if (!v || len == 0 || len >= cap)
        return false;
    memcpy(out, v, len);
    out[len] = '\0';
    return true;
}

static bool parse_ts(const char *s, int64_t *out)
{
    return jn_rest_parse_i64(s, out) == 0 && *out >= 0;
}

void jn__wh_hook_receive(jn_http_req_t *req, void *arg)
{
    jn_webhook_t *w = arg;
    wh_hook_t *h = path_hook(w, req);
    if (!h)
        return;
    size_t blen;
    const uint8_t *body = jn_http_req_body(req, &blen);
    int64_t now = jn_wall_ms();
    char id[WH_ID_MAX] = "", ts_text[32] = "";
    int64_t ts = -1;
    bool has_ts = false;
    if (h->standard) {
        size_t slen;
        const char *sig = jn_http_req_header(req, "webhook-signature", &slen);
        if (!header_copy(req, "webhook-id", id, sizeof id) || !header_copy(req, "webhook-timestamp", ts_text, sizeof ts_text) ||
            !sig) {
            jn_http_respond_error(req, 401, "missing_signature",
                                  "webhook-id, webhook-timestamp and webhook-signature are required");
            return;
        }
        if (!parse_ts(ts_text, &ts)) {
            jn_http_respond_error(req, 401, "invalid_timestamp", "webhook-timestamp must be Unix seconds");
            return;
        }
        has_ts = true;
        if (!jn_wh_verify(h->secret, h->secret_len, id, ts, body, blen, sig, slen)) {
            jn_http_respond_error(req, 401, "invalid_signature", "no signature matches");
            return;
        }
    } else {
        char sig[600];
        if (!header_copy(req, h->header, sig, sizeof sig)) {
            jn_http_respond_error(req, 401, "missing_signature", "header %s is required", h->header);
            return;
        }
        size_t plen = strlen(h->prefix);
        if (strncmp(sig, h->prefix, plen) != 0) {
            jn_http_respond_error(req, 401, "invalid_signature", "the signature lacks its prefix '%s'", h->prefix);
            return;
        }
        char signed_prefix[40] = "";
        if (*h->ts_header) {
            if (!header_copy(req, h->ts_header, ts_text, sizeof ts_text) || !parse_ts(ts_text, &ts)) {
                jn_http_respond_error(req, 401, "invalid_timestamp", "header %s must be Unix seconds", h->ts_header);
                return;
            }
            has_ts = true;
            snprintf(signed_prefix, sizeof signed_prefix, "%" PRId64 ".", ts);
        }
        if (!jn_wh_hmac_verify(h->alg, h->secret, h->secret_len, has_ts ? signed_prefix : NULL, body, blen,
                               sig + plen, strlen(sig + plen), h->hex)) {
            jn_http_respond_error(req, 401, "invalid_signature", "the signature does not match");
            return;
        }
        if (*h->id_header)
            header_copy(req, h->id_header, id, sizeof id);
    }
    /* Checked after the signature so that an unsigned request learns
     * nothing about the clock window. */
    if (has_ts && (ts * 1000 < now - h->tolerance_s * 1000 || ts * 1000 > now + h->tolerance_s * 1000)) {
        jn_http_respond_error(req, 401, "stale_timestamp", "the timestamp is outside the %" PRId64 " s tolerance",
                              h->tolerance_s);
        return;
    }
    size_t idlen = strlen(id);
    if (idlen && seen_has(h, id, idlen, now)) {
        jn_http_respond_error(req, 401, "replayed", "message '%s' was already received", id);
        return;
    }
    size_t ctlen = 0;
    const char *ct = jn_http_req_header(req, "Content-Type", &ctlen);
    jn_header_t hs[3];
    uint32_t n = 0;
    if (ct)
        hs[n++] = (jn_header_t){(const uint8_t *)"content-type", 12, (const uint8_t *)ct, (int32_t)ctlen};
    if (idlen)
        hs[n++] = (jn_header_t){(const uint8_t *)"webhook-id", 10, (const uint8_t *)id, (int32_t)idlen};
    hs[n++] = (jn_header_t){(const uint8_t *)"webhook-hook", 12, (const uint8_t *)h->name, (int32_t)strlen(h->name)};
    jn_record_t r = {.value = body, .value_len = (int32_t)blen, .header_count = n, .headers = hs};
    if (blen > INT32_MAX) {
        jn_http_respond_error(req, 413, "payload_too_large", "body too large");
        return;
    }
    int rc = jn_broker_publish(w->broker, h->subject, strlen(h->subject), &r, 1, -1, NULL);
    if (rc < 0) {
        jn__rest_fail(req, rc, false, "cannot publish to '%s'", h->subject);
        return;
    }
    if (idlen)
        seen_add(h, id, idlen, now + h->tolerance_s * 1000 + 1000);
    jn_http_respond(req, 204, NULL, NULL, 0);
}
