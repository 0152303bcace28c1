/* rest_admin.c - /v1/users, /v1/tokens, /v1/acls: the auth core's state
 * over REST. Every route here needs an administrator (jn__rest_admin);
 * the auth core validates names and persists each change.
 */
#include "rest_internal.h"

#include <stdio.h>
#include <string.h>

static void list_as(jn_http_req_t *req, jn_rest_t *r, const char *member, json_t *(*fn)(const jn_auth_t *))
{
    jn_principal_t p;
    if (!jn__rest_admin(r, req, &p, NULL))
        return;
    json_t *a = fn(r->auth);
    jn__rest_respond_steal(req, 200, a ? json_pack("{s:o}", member, a) : NULL);
}

void jn__rest_users_list(jn_http_req_t *req, void *arg)
{
    list_as(req, arg, "users", jn_auth_users_json);
}

void jn__rest_user_put(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *name = jn_http_req_param(req, "name");
    if (!jn__rest_admin(r, req, &p, NULL))
        return;
    json_t *body = jn__rest_body_json(req);
    if (!body)
        return;
    const char *pw = json_string_value(json_object_get(body, "password"));
    const json_t *adm = json_object_get(body, "admin");
    if (!pw || (adm && !json_is_boolean(adm))) {
        jn_http_respond_error(req, 400, "invalid_json", "body must be {\"password\": \"...\", \"admin\"?: bool}");
        goto done;
    }
    int rc = jn_auth_user_set(r->auth, name, pw, adm && json_is_true(adm));
    if (rc < 0)
        jn__rest_fail(req, rc, rc == JN_EINVAL, "cannot set user '%s'%s", name,
                      rc == JN_EINVAL ? ": names are 1..64 of [A-Za-z0-9._@-], passwords 1..1024 bytes" : "");
    else
        jn__rest_respond_steal(req, 200, json_pack("{s:s,s:b}", "name", name, "admin", adm && json_is_true(adm)));
done:
    json_decref(body);
}

void jn__rest_user_delete(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *name = jn_http_req_param(req, "name");
    if (!jn__rest_admin(r, req, &p, NULL))
        return;
    int rc = jn_auth_user_delete(r->auth, name);
    if (rc < 0)
        jn__rest_fail(req, rc, rc == JN_EINVAL, rc == JN_ENOENT ? "user '%s' does not exist" : "cannot delete user '%s'",
                      name);
    else
        jn_http_respond(req, 204, NULL, NULL, 0);
}

void jn__rest_tokens_list(jn_http_req_t *req, void *arg)
{
    list_as(req, arg, "tokens", jn_auth_tokens_json);
}

void jn__rest_token_create(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    if (!jn__rest_admin(r, req, &p, NULL))
        return;
    json_t *body = jn__rest_body_json(req);
    if (!body)
        return;
    const char *user = json_string_value(json_object_get(body, "user"));
    const json_t *dj = json_object_get(body, "description");
    if (!user || (dj && !json_is_null(dj) && !json_is_string(dj))) {
        jn_http_respond_error(req, 400, "invalid_json", "body must be {\"user\": \"...\", \"description\"?: \"...\"}");
        goto done;
    }
    char token[128], id[32];
    int rc = jn_auth_token_create(r->auth, user, json_is_string(dj) ? json_string_value(dj) : "", token, id);
    if (rc < 0)
        jn__rest_fail(req, rc, rc == JN_EINVAL, rc == JN_ENOENT ? "user '%s' does not exist" : "cannot create a token for '%s'",
                      user);
    else
        jn__rest_respond_steal(req, 201, json_pack("{s:s,s:s,s:s}", "token", token, "id", id, "user", user));
done:
    json_decref(body);
}

void jn__rest_token_delete(jn_http_req_t *req, void *arg)
{
    jn_rest_t *r = arg;
    jn_principal_t p;
    const char *id = jn_http_req_param(req, "id");
    if (!jn__rest_admin(r, req, &p, NULL))
        return;
    int rc = jn_auth_token_revoke(r->auth, id);
    if (rc < 0)
        jn__rest_fail(req, rc, false, rc == JN_ENOENT ? "token '%s' does not exist" : "cannot revoke token '%s'", id);
    else
        jn_http_respond(req, 204, NULL, NULL, 0);
}

void jn__rest_acls_list(jn_http_req_t *req, void *arg)
{
    list_as(req, arg, "acls", jn_auth_acls_json);
}

/* Parses {"user","perms":[...],"filter"}; answers 400 on error. */
static bool acl_body(jn_http_req_t *req, const json_t *body, const char **user, unsigned *perms, const char **filter)
{
    *user = json_string_value(json_object_get(body, "user"));
    *filter = json_string_value(json_object_get(body, "filter"));
    const json_t *pj = json_object_get(body, "perms");
    *perms = 0;
    if (!*user || !*filter || !json_is_array(pj) || json_array_size(pj) == 0) {
        jn_http_respond_error(req, 400, "invalid_json",
                              "body must be {\"user\", \"perms\": [\"publish\"|\"subscribe\"|\"admin\"...], \"filter\"}");
        return false;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(pj, i, v) {
        const char *s = json_string_value(v);
        if (s && strcmp(s, "publish") == 0)
            *perms |= JN_PERM_PUBLISH;
        else if (s && strcmp(s, "subscribe") == 0)
            *perms |= JN_PERM_SUBSCRIBE;
        else if (s && strcmp(s, "admin") == 0)
            *perms |= JN_PERM_ADMIN;
        else {
            jn_http_respond_error(req, 400, "bad_request", "unknown permission (publish, subscribe, admin)");
            return false;
        }
    }
    return true;
}

static void acl_change(jn_http_req_t *req, jn_rest_t *r, bool add)
{
    jn_principal_t p;
    if (!jn__rest_admin(r, req, &p, NULL))
        return;
    json_t *body = jn__rest_body_json(req);
    if (!body)
        return;
    const char *user, *filter;
    unsigned perms;
    if (acl_body(req, body, &user, &perms, &filter)) {
        int rc = add ? jn_auth_acl_add(r->auth, user, perms, filter) : jn_auth_acl_remove(r->auth, user, perms, filter);
        if (rc < 0)
            jn__rest_fail(req, rc, rc == JN_EINVAL, "cannot %s the rule for '%s' on '%s'", add ? "add" : "remove", user,
                          filter);
        else if (add)
            jn__rest_respond_steal(req, 201, json_pack("{s:s,s:O,s:s}", "user", user, "perms",
                                                       json_object_get(body, "perms"), "filter", filter));
        else
            jn_http_respond(req, 204, NULL, NULL, 0);
    }
    json_decref(body);
}

void jn__rest_acl_add(jn_http_req_t *req, void *arg)
{
    acl_change(req, arg, true);
}

void jn__rest_acl_remove(jn_http_req_t *req, void *arg)
{
    acl_change(req, arg, false);
}
