/* rest.c - the REST door: route table, authentication and the small
 * shared helpers (errors, bodies, queries), plus the routes that belong to
 * no resource (health, metrics, OpenAPI).
 *
 * The resources live in their own files: rest_streams.c (streams and
 * reads), rest_publish.c (publish), rest_feed.c (live NDJSON feeds),
 * rest_tables.c (tables and groups), rest_admin.c (users, tokens, ACLs),
 * rest_stats.c (per-door figures for the console).
 * The route table below is the one list of what the door serves: it is
 * registered on the server and reported by jn_rest_routes, which a test
 * compares with openapi.json.
 */
#include "rest_internal.h"

#include <stdarg.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/assets.h"
#include "../../common/clock.h"
#include "../../common/log.h"
#include "../../core/filter.h"

static JN_REST_HANDLER(rest_health);
static JN_REST_HANDLER(rest_metrics);
static JN_REST_HANDLER(rest_openapi);

typedef struct rest_route {
    const char *method;
    const char *pattern;
    jn_http_handler handler;
} rest_route_t;

static const rest_route_t rest_routes[] = {
    {"GET", "/v1/health", rest_health},
    {"GET", "/v1/stats", jn__rest_stats},
    {"GET", "/metrics", rest_metrics},
    {"GET", "/v1/openapi.json", rest_openapi},
    {"GET", "/v1/streams", jn__rest_streams_list},
    {"POST", "/v1/streams", jn__rest_streams_create},
    {"GET", "/v1/streams/{stream}", jn__rest_stream_get},
    {"PATCH", "/v1/streams/{stream}", jn__rest_stream_patch},
    {"DELETE", "/v1/streams/{stream}", jn__rest_stream_delete},
    {"GET", "/v1/streams/{stream}/partitions/{p}/records", jn__rest_records_read},
    {"POST", "/v1/publish/{subject*}", jn__rest_publish_one},
    {"POST", "/v1/publish", jn__rest_publish_batch},
    {"GET", "/v1/subscribe", jn__rest_subscribe},
    {"GET", "/v1/groups", jn__rest_groups_list},
    {"GET", "/v1/groups/{group}", jn__rest_group_get},
    {"POST", "/v1/groups/{group}/offsets", jn__rest_group_commit},
    {"DELETE", "/v1/groups/{group}", jn__rest_group_delete},
    {"GET", "/v1/tables", jn__rest_tables_list},
    {"POST", "/v1/tables", jn__rest_tables_create},
    {"GET", "/v1/tables/{table}", jn__rest_table_keys},
    {"PUT", "/v1/tables/{table}/{key*}", jn__rest_table_put},
    {"GET", "/v1/tables/{table}/{key*}", jn__rest_table_get},
    {"DELETE", "/v1/tables/{table}/{key*}", jn__rest_table_delete},
    {"GET", "/v1/users", jn__rest_users_list},
    {"PUT", "/v1/users/{name}", jn__rest_user_put},
    {"DELETE", "/v1/users/{name}", jn__rest_user_delete},
    {"GET", "/v1/tokens", jn__rest_tokens_list},
    {"POST", "/v1/tokens", jn__rest_token_create},
    {"DELETE", "/v1/tokens/{id}", jn__rest_token_delete},
    {"GET", "/v1/acls", jn__rest_acls_list},
    {"POST", "/v1/acls", jn__rest_acl_add},
    {"DELETE", "/v1/acls", jn__rest_acl_remove},
};

#define REST_NROUTES (sizeof(rest_routes) / sizeof(rest_routes[0]))

size_t jn_rest_routes(const char *(*out)[2], size_t max)
{
    for (size_t i = 0; i < REST_NROUTES && i < max; i++) {
        out[i][0] = rest_routes[i].method;
        out[i][1] = rest_routes[i].pattern;
    }
    return REST_NROUTES;
}

jn_rest_t *jn_rest_new(jn_httpd_t *httpd, jn_broker_t *broker, const jn_rest_config_t *cfg)
{
    jn_rest_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->httpd = httpd;
    r->broker = broker;
    r->auth = jn_broker_auth(broker);
    r->cfg = *cfg;
    snprintf(r->version, sizeof(r->version), "%s", cfg->version ? cfg->version : "unknown");
    r->cfg.version = r->version;
    if (r->cfg.max_read_records == 0)
        r->cfg.max_read_records = 10000;
    r->start_ns = jn_mono_ns();
    jn_list_init(&r->feeds);
    for (size_t i = 0; i < REST_NROUTES; i++) {
        int rc = jn_httpd_route(httpd, rest_routes[i].method, rest_routes[i].pattern, rest_routes[i].handler, r);
        if (rc < 0) {
            /* A clash is a programming error in the table; say which. */
            jn_error("rest: cannot register %s %s: %s", rest_routes[i].method, rest_routes[i].pattern,
                     jn_strerror(rc));
            free(r);
            return NULL;
        }
    }
    return r;
}

void jn_rest_free(jn_rest_t *r)
{
    if (!r)
        return;
    jn__rest_feeds_end_all(r);
    free(r);
}

/* ---- responses ---- */

void jn__rest_fail(jn_http_req_t *req, int err, bool is_name, const char *fmt, ...)
{
    const char *code;
    int status = jn_rest_error_status(err, is_name, &code);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (status == 500)
        jn_warn("rest: %s: %s", msg, jn_strerror(err));
    jn_http_respond_error(req, status, code, "%s", msg);
}

void jn__rest_respond_buf(jn_http_req_t *req, int status, const jn_buf_t *b)
{
    jn_http_respond(req, status, "application/json", b->data, b->len);
}

void jn__rest_respond_steal(jn_http_req_t *req, int status, json_t *j)
{
    if (!j) {
        jn_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    jn_http_respond_json(req, status, j);
    json_decref(j);
}

json_t *jn__rest_body_json(jn_http_req_t *req)
{
    size_t len;
    const uint8_t *body = jn_http_req_body(req, &len);
    json_error_t e;
    json_t *j = json_loadb((const char *)body, len, 0, &e);
    if (!j)
        jn_http_respond_error(req, 400, "invalid_json", "body is not valid JSON: %s (line %d)", e.text, e.line);
    return j;
}

int jn__rest_query_i64(jn_http_req_t *req, const char *name, int64_t *out)
{
    char v[32];
    int n = jn_http_req_query(req, name, v, sizeof(v));
    if (n == JN_ENOENT)
        return 0;
    if (n < 0 || jn_rest_parse_i64(v, out) < 0) {
        jn_http_respond_error(req, 400, "bad_request", "query parameter '%s' must be an integer", name);
        return -1;
    }
    return 1;
}

/* ---- auth ---- */

static void rest_unauthorized(jn_http_req_t *req, const char *msg)
{
    if (jn_http_add_header(req, "WWW-Authenticate", "Bearer") < 0)
        jn_debug("rest: cannot add WWW-Authenticate");
    jn_http_respond_error(req, 401, "unauthorized", "%s", msg);
}

static bool prefix_ci(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && strncasecmp(s, prefix, n) == 0;
}

bool jn__rest_auth(jn_rest_t *r, jn_http_req_t *req, jn_principal_t *p)
{
    size_t len;
    const char *h = jn_http_req_header(req, "Authorization", &len);
    if (!h) {
        if (!r->cfg.allow_anonymous) {
            rest_unauthorized(req, "credentials required");
            return false;
        }
        jn_principal_anonymous(p);
        return true;
    }
    /* Credentials are short; anything longer is wrong anyway. */
    char cred[1536];
    int rc = JN_EAUTH;
    if (prefix_ci(h, len, "Bearer ")) {
        size_t n = len - 7;
        if (n > 0 && n < sizeof(cred)) {
            memcpy(cred, h + 7, n);
            cred[n] = '\0';
            rc = jn_auth_check_token(r->auth, cred, p);
        }
    } else if (prefix_ci(h, len, "Basic ")) {
        size_t n = len - 6;
        if (n > 0 && jn_rest_base64_decoded_max(n) < sizeof(cred)) {
            int dl = jn_rest_base64_decode(h + 6, n, (uint8_t *)cred);
            if (dl > 0) {
                cred[dl] = '\0';
                char *colon = memchr(cred, ':', (size_t)dl);
                if (colon && strlen(cred) == (size_t)dl) {
                    *colon = '\0';
                    rc = jn_auth_check_password(r->auth, cred, colon + 1, p);
                }
            }
        }
    }
    if (rc < 0) {
        rest_unauthorized(req, "invalid credentials");
        return false;
    }
    return true;
}

bool jn__rest_allow(jn_rest_t *r, jn_http_req_t *req, jn_principal_t *p, enum jn_perm perm, const char *what)
{
    if (!jn__rest_auth(r, req, p))
        return false;
    if (p->admin || jn_auth_allowed(r->auth, p, perm, what, strlen(what)))
        return true;
    jn_http_respond_error(req, 403, "forbidden", "%s may not %s on '%s'", p->name,
                          perm == JN_PERM_PUBLISH ? "publish" : perm == JN_PERM_SUBSCRIBE ? "subscribe" : "administer",
                          what);
    return false;
}

bool jn__rest_admin(jn_rest_t *r, jn_http_req_t *req, jn_principal_t *p, const char *what)
{
    if (!jn__rest_auth(r, req, p))
        return false;
    if (p->admin || (p->anonymous && r->cfg.anonymous_is_admin))
        return true;
    if (what && jn_auth_allowed(r->auth, p, JN_PERM_ADMIN, what, strlen(what)))
        return true;
    jn_http_respond_error(req, 403, "forbidden", "%s is not an administrator", p->name);
    return false;
}

/* ---- health, metrics, OpenAPI ---- */

static void rest_health(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    char body[256];
    char ver[160];
    if (jn_rest_json_string_to(ver, sizeof(ver), (const uint8_t *)r->version, strlen(r->version)) < 0)
        snprintf(ver, sizeof(ver), "\"unknown\"");
    int n = snprintf(body, sizeof(body), "{\"status\":\"ok\",\"version\":%s,\"uptime_ms\":%llu}", ver,
                     (unsigned long long)((jn_mono_ns() - r->start_ns) / 1000000u));
    jn_http_respond(req, 200, "application/json", body, (size_t)n);
}

static void rest_metrics(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    if (!jn__rest_auth(r, req, &p))
        return;
    jn_buf_t b;
    jn_buf_init(&b, 64u << 20);
    int rc = jn_metrics_render(jn_broker_metrics(r->broker), &b);
    if (rc < 0)
        jn__rest_fail(req, rc, false, "cannot render metrics");
    else
        jn_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    jn_buf_free(&b);
}

static void rest_openapi(jn_http_req_t *req, void *arg)
{
    const jn_asset_t *a = jn_asset_find("openapi.json");
    if (!a) {
        jn_http_respond_error(req, 404, "not_found", "openapi.json is not embedded in this build");
        return;
    }
    jn_http_respond(req, 200, "application/json", a->data, a->len);
}
