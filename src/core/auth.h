/* auth.h - users, API tokens and ACLs: the one auth core of every door.
 *
 * Pure in-memory state with no I/O: every change is reported through the
 * persist callback (the broker writes it to the metadata log) and replayed
 * at start through jn_auth_load. Passwords are stored as SCRAM-SHA-256
 * credentials (salt, iterations, StoredKey, ServerKey; RFC 5802/7677) so
 * that later doors can run SCRAM without the password; plain password checks
 * derive the same keys. API tokens are random, shown once, stored as
 * SHA-256 digests.
 *
 * ACLs: a user with no rules may publish and subscribe anywhere but not
 * administer; a user with rules may do only what a rule allows. Admin users
 * may do everything. The anonymous principal (when the server allows it) is
 * treated as a user named "anonymous" with the same rules.
 */
#ifndef JN_AUTH_H
#define JN_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "../common/error.h"

#define JN_NAME_MAX 255

enum jn_perm {
    JN_PERM_PUBLISH = 1,
    JN_PERM_SUBSCRIBE = 2,
    JN_PERM_ADMIN = 4,
};

typedef struct jn_principal {
    char name[JN_NAME_MAX + 1];
    bool admin;
    bool anonymous;
} jn_principal_t;

typedef struct jn_auth jn_auth_t;

/* Called on every change: |kind| is "user", "token" or "acl", |key| the
 * record's identity, |value| its JSON form (borrowed), or NULL when the
 * record is deleted. Returns 0 or an error, which the change returns. */
typedef int (*jn_auth_persist_cb)(void *ctx, const char *kind, const char *key, json_t *value);

jn_auth_t *jn_auth_new(jn_auth_persist_cb persist, void *ctx);
void jn_auth_free(jn_auth_t *a);
/* Replays one persisted record (NULL value deletes). JN_EPROTO when malformed. */
int jn_auth_load(jn_auth_t *a, const char *kind, const char *key, json_t *value);

/* Users. Names: 1..64 of [A-Za-z0-9._@-]. Passwords: 1..1024 bytes. */
int jn_auth_user_set(jn_auth_t *a, const char *name, const char *password, bool admin) JN_MUST_CHECK;
int jn_auth_user_delete(jn_auth_t *a, const char *name);
bool jn_auth_user_exists(const jn_auth_t *a, const char *name);
size_t jn_auth_user_count(const jn_auth_t *a);
/* JSON array of {"name","admin","tokens":n} (new reference). */
json_t *jn_auth_users_json(const jn_auth_t *a);
/* Checks a password in constant time. 0 and fills |out|, or JN_EAUTH. */
int jn_auth_check_password(const jn_auth_t *a, const char *name, const char *password,
                           jn_principal_t *out) JN_MUST_CHECK;
/* SCRAM-SHA-256 credentials of |name| for later doors; JN_ENOENT. */
int jn_auth_scram_credentials(const jn_auth_t *a, const char *name, uint8_t salt[16],
                              uint32_t *iterations, uint8_t stored_key[32], uint8_t server_key[32]);

/* Tokens: "jnt_" + 43 base64url characters. Writes the token (shown only
 * now) into |token_out| (at least 64 bytes) and its id (the first 12
 * characters, for listing and revoking) into |id_out| (at least 16 bytes). */
int jn_auth_token_create(jn_auth_t *a, const char *user, const char *description,
                         char *token_out, char *id_out) JN_MUST_CHECK;
int jn_auth_token_revoke(jn_auth_t *a, const char *id);
/* JSON array of {"id","user","description","created"} (new reference). */
json_t *jn_auth_tokens_json(const jn_auth_t *a);
int jn_auth_check_token(const jn_auth_t *a, const char *token, jn_principal_t *out) JN_MUST_CHECK;

/* ACL rules: allow |perms| (JN_PERM_* bits) to |user| on subjects matched
 * by |filter|. Rules are identified by "user perms filter". */
int jn_auth_acl_add(jn_auth_t *a, const char *user, unsigned perms, const char *filter) JN_MUST_CHECK;
int jn_auth_acl_remove(jn_auth_t *a, const char *user, unsigned perms, const char *filter);
json_t *jn_auth_acls_json(const jn_auth_t *a);

/* May |p| do |perm| on |subject_or_filter|? For JN_PERM_SUBSCRIBE the
 * argument is a filter, allowed when a rule's filter covers it. */
bool jn_auth_allowed(const jn_auth_t *a, const jn_principal_t *p, enum jn_perm perm,
                     const char *subject_or_filter, size_t len);

/* The anonymous principal. */
void jn_principal_anonymous(jn_principal_t *out);

#endif
