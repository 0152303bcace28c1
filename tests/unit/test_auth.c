/* test_auth.c - users and passwords (with RFC 7677's SCRAM-SHA-256 vector),
 * tokens, ACL decisions, persistence round trip and persist failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "core/auth.h"

/* The test hook of auth.c (not in auth.h). */
typedef int (*jn__auth_random_cb)(void *ctx, uint8_t *buf, size_t len);
void jn__auth_set_random(jn_auth_t *a, jn__auth_random_cb fill, void *ctx);

/* ---- a recording metadata log ---- */

typedef struct log {
    json_t *entries; /* array of [kind, key, value|null] in order */
    int fail;        /* when nonzero, the callback returns it */
    int calls;
} log_t;

static int log_persist(void *ctx, const char *kind, const char *key, json_t *value)
{
    log_t *l = ctx;
    l->calls++;
    if (l->fail)
        return l->fail;
    json_t *e = json_pack("[s, s, O?]", kind, key, value);
    assert_non_null(e);
    assert_int_equal(json_array_append_new(l->entries, e), 0);
    return 0;
}

static jn_auth_t *new_auth(log_t *l)
{
    memset(l, 0, sizeof *l);
    l->entries = json_array();
    jn_auth_t *a = jn_auth_new(log_persist, l);
    assert_non_null(a);
    return a;
}

static void replay(jn_auth_t *a, const log_t *l)
{
    size_t i;
    json_t *e;
    json_array_foreach(l->entries, i, e) {
        json_t *v = json_array_get(e, 2);
        int rc = jn_auth_load(a, json_string_value(json_array_get(e, 0)), json_string_value(json_array_get(e, 1)),
                              json_is_null(v) ? NULL : v);
        assert_int_equal(rc, 0);
    }
}

static bool json_same(json_t *a, json_t *b)
{
    bool eq = json_equal(a, b);
    json_decref(a);
    json_decref(b);
    return eq;
}

/* ---- users ---- */

static void test_users(void **state)
{
    (void)state;
    log_t l;
    jn_auth_t *a = new_auth(&l);
    jn_principal_t p;

    assert_int_equal(jn_auth_user_set(a, "alice", "wonderland", false), 0);
    assert_int_equal(jn_auth_user_set(a, "root@ops", "s3cret", true), 0);
    assert_true(jn_auth_user_exists(a, "alice"));
    assert_false(jn_auth_user_exists(a, "bob"));
    assert_int_equal(jn_auth_user_count(a), 2);

    assert_int_equal(jn_auth_check_password(a, "alice", "wonderland", &p), 0);
    assert_string_equal(p.name, "alice");
    assert_false(p.admin);
    assert_false(p.anonymous);
    assert_int_equal(jn_auth_check_password(a, "root@ops", "s3cret", &p), 0);
    assert_true(p.admin);
    assert_int_equal(jn_auth_check_password(a, "alice", "wonderlanD", &p), JN_EAUTH);
    assert_int_equal(jn_auth_check_password(a, "alice", "", &p), JN_EAUTH);
    assert_int_equal(jn_auth_check_password(a, "bob", "wonderland", &p), JN_EAUTH);
    assert_int_equal(jn_auth_check_password(a, "bad name", "x", &p), JN_EAUTH);

    /* changing the password replaces the credentials */
    assert_int_equal(jn_auth_user_set(a, "alice", "looking-glass", false), 0);
    assert_int_equal(jn_auth_user_count(a), 2);
    assert_int_equal(jn_auth_check_password(a, "alice", "wonderland", &p), JN_EAUTH);
    assert_int_equal(jn_auth_check_password(a, "alice", "looking-glass", &p), 0);

    /* names and passwords */
    char long_name[66], long_pw[1026];
    memset(long_name, 'n', sizeof long_name);
    long_name[65] = '\0';
    memset(long_pw, 'p', sizeof long_pw);
    long_pw[1025] = '\0';
    assert_int_equal(jn_auth_user_set(a, long_name, "x", false), JN_EINVAL);
    long_name[64] = '\0';
    assert_int_equal(jn_auth_user_set(a, long_name, "x", false), 0);
    assert_int_equal(jn_auth_user_set(a, "", "x", false), JN_EINVAL);
    assert_int_equal(jn_auth_user_set(a, "a b", "x", false), JN_EINVAL);
    assert_int_equal(jn_auth_user_set(a, "a/b", "x", false), JN_EINVAL);
    assert_int_equal(jn_auth_user_set(a, "x", "", false), JN_EINVAL);
    assert_int_equal(jn_auth_user_set(a, "x", long_pw, false), JN_EINVAL);
    long_pw[1024] = '\0';
    assert_int_equal(jn_auth_user_set(a, "x", long_pw, false), 0);
    assert_int_equal(jn_auth_check_password(a, "x", long_pw, &p), 0);

    json_t *users = jn_auth_users_json(a);
    assert_int_equal(json_array_size(users), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(users, 0), "name")), "alice");
    assert_true(json_is_false(json_object_get(json_array_get(users, 0), "admin")));
    assert_true(json_is_true(json_object_get(json_array_get(users, 1), "admin")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(users, 0), "tokens")), 0);
    json_decref(users);

    /* the persisted user record has the documented shape */
    json_t *first = json_array_get(l.entries, 0);
    assert_string_equal(json_string_value(json_array_get(first, 0)), "user");
    assert_string_equal(json_string_value(json_array_get(first, 1)), "alice");
    json_t *rec = json_array_get(first, 2);
    assert_int_equal(json_object_size(rec), 6);
    assert_int_equal(json_integer_value(json_object_get(rec, "iterations")), 4096);
    assert_int_equal(strlen(json_string_value(json_object_get(rec, "salt"))), 24);
    assert_int_equal(strlen(json_string_value(json_object_get(rec, "stored_key"))), 44);
    assert_int_equal(strlen(json_string_value(json_object_get(rec, "server_key"))), 44);

    assert_int_equal(jn_auth_user_delete(a, "alice"), 0);
    assert_int_equal(jn_auth_user_delete(a, "alice"), JN_ENOENT);
    assert_false(jn_auth_user_exists(a, "alice"));
    assert_int_equal(jn_auth_check_password(a, "alice", "looking-glass", &p), JN_EAUTH);

    jn_auth_free(a);
    json_decref(l.entries);
}

/* ---- SCRAM: RFC 7677 section 3 ---- */

static int fixed_salt(void *ctx, uint8_t *buf, size_t len)
{
    const uint8_t *salt = ctx;
    assert_int_equal(len, 16);
    memcpy(buf, salt, len);
    return 0;
}

static void b64dec(const char *s, uint8_t *out, size_t n)
{
    uint8_t tmp[64];
    assert_true(EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)strlen(s)) >= (int)n);
    memcpy(out, tmp, n);
}

static void test_scram_rfc7677(void **state)
{
    (void)state;
    uint8_t salt[16];
    b64dec("W22ZaJ0SNY7soEsUEjb6gQ==", salt, 16);
    jn_auth_t *a = jn_auth_new(NULL, NULL);
    jn__auth_set_random(a, fixed_salt, salt);
    assert_int_equal(jn_auth_user_set(a, "user", "pencil", false), 0);

    uint8_t s[16], stored[32], server[32];
    uint32_t iter = 0;
    assert_int_equal(jn_auth_scram_credentials(a, "user", s, &iter, stored, server), 0);
    assert_int_equal(jn_auth_scram_credentials(a, "nobody", s, &iter, stored, server), JN_ENOENT);
    assert_int_equal(iter, 4096);
    assert_memory_equal(s, salt, 16);

    const char *auth_message =
        "n=user,r=rOprNGfwEbeRWgbNEkqO,"
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    uint8_t proof[32], want_server_sig[32], sig[32], client_key[32], h[32];
    unsigned int len = 0;
    b64dec("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", proof, 32);
    b64dec("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", want_server_sig, 32);

    /* the server signature of the RFC's exchange comes from ServerKey */
    assert_non_null(HMAC(EVP_sha256(), server, 32, (const unsigned char *)auth_message, strlen(auth_message), sig,
                         &len));
    assert_memory_equal(sig, want_server_sig, 32);
    /* and the client's proof verifies against StoredKey */
    assert_non_null(HMAC(EVP_sha256(), stored, 32, (const unsigned char *)auth_message, strlen(auth_message), sig,
                         &len));
    for (int i = 0; i < 32; i++)
        client_key[i] = proof[i] ^ sig[i];
    SHA256(client_key, 32, h);
    assert_memory_equal(h, stored, 32);

    jn_principal_t p;
    assert_int_equal(jn_auth_check_password(a, "user", "pencil", &p), 0);
    assert_int_equal(jn_auth_check_password(a, "user", "pencil!", &p), JN_EAUTH);
    jn_auth_free(a);
}

/* ---- tokens ---- */

static void test_tokens(void **state)
{
    (void)state;
    log_t l;
    jn_auth_t *a = new_auth(&l);
    jn_principal_t p;
    char tok[64], id[16], tok2[64], id2[16];

    assert_int_equal(jn_auth_user_set(a, "ci", "pw", true), 0);
    assert_int_equal(jn_auth_token_create(a, "nobody", "x", tok, id), JN_ENOENT);
    assert_int_equal(jn_auth_token_create(a, "ci", "deploys", tok, id), 0);
    assert_int_equal(jn_auth_token_create(a, "ci", NULL, tok2, id2), 0);
    assert_int_equal(strlen(tok), 47);
    assert_memory_equal(tok, "jnt_", 4);
    for (size_t i = 4; i < 47; i++) {
        char c = tok[i];
        assert_true((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_');
    }
    assert_int_equal(strlen(id), 12);
    assert_memory_equal(id, tok, 12);
    assert_string_not_equal(tok, tok2);

    assert_int_equal(jn_auth_check_token(a, tok, &p), 0);
    assert_string_equal(p.name, "ci");
    assert_true(p.admin);
    assert_int_equal(jn_auth_check_token(a, tok2, &p), 0);

    char bad[64];
    memcpy(bad, tok, sizeof bad);
    bad[30] = bad[30] == 'A' ? 'B' : 'A';
    assert_int_equal(jn_auth_check_token(a, bad, &p), JN_EAUTH);
    bad[30] = tok[30];
    bad[46] = '\0';
    assert_int_equal(jn_auth_check_token(a, bad, &p), JN_EAUTH);
    assert_int_equal(jn_auth_check_token(a, "", &p), JN_EAUTH);
    assert_int_equal(jn_auth_check_token(a, "jnt_", &p), JN_EAUTH);
    assert_int_equal(jn_auth_check_token(a, NULL, &p), JN_EAUTH);

    /* the persisted record holds only the digest */
    json_t *rec = json_array_get(json_array_get(l.entries, 1), 2);
    assert_string_equal(json_string_value(json_array_get(json_array_get(l.entries, 1), 0)), "token");
    assert_string_equal(json_string_value(json_array_get(json_array_get(l.entries, 1), 1)), id);
    assert_string_equal(json_string_value(json_object_get(rec, "description")), "deploys");
    assert_int_equal(strlen(json_string_value(json_object_get(rec, "sha256"))), 64);
    assert_true(json_integer_value(json_object_get(rec, "created")) > 0);
    char *dump = json_dumps(l.entries, 0);
    assert_non_null(dump);
    assert_null(strstr(dump, tok + 12)); /* the secret part never reaches the log */
    free(dump);

    json_t *list = jn_auth_tokens_json(a);
    assert_int_equal(json_array_size(list), 2);
    json_t *t0 = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(t0, "id")), id);
    assert_string_equal(json_string_value(json_object_get(t0, "user")), "ci");
    assert_null(json_object_get(t0, "sha256"));
    json_decref(list);
    json_t *users = jn_auth_users_json(a);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(users, 0), "tokens")), 2);
    json_decref(users);

    assert_int_equal(jn_auth_token_revoke(a, id), 0);
    assert_int_equal(jn_auth_token_revoke(a, id), JN_ENOENT);
    assert_int_equal(jn_auth_check_token(a, tok, &p), JN_EAUTH);
    assert_int_equal(jn_auth_check_token(a, tok2, &p), 0);

    /* deleting the user deletes its tokens, each deletion persisted */
    size_t before = json_array_size(l.entries);
    assert_int_equal(jn_auth_acl_add(a, "ci", JN_PERM_PUBLISH, "ci/#"), 0);
    assert_int_equal(jn_auth_user_delete(a, "ci"), 0);
    assert_int_equal(jn_auth_check_token(a, tok2, &p), JN_EAUTH);
    list = jn_auth_tokens_json(a);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    list = jn_auth_acls_json(a);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    assert_int_equal(json_array_size(l.entries), before + 4); /* acl add, token, acl, user */
    json_t *e = json_array_get(l.entries, before + 1);
    assert_string_equal(json_string_value(json_array_get(e, 0)), "token");
    assert_string_equal(json_string_value(json_array_get(e, 1)), id2);
    assert_true(json_is_null(json_array_get(e, 2)));
    e = json_array_get(l.entries, before + 2);
    assert_string_equal(json_string_value(json_array_get(e, 0)), "acl");
    assert_string_equal(json_string_value(json_array_get(e, 1)), "ci publish ci/#");
    assert_true(json_is_null(json_array_get(e, 2)));
    e = json_array_get(l.entries, before + 3);
    assert_string_equal(json_string_value(json_array_get(e, 0)), "user");
    assert_true(json_is_null(json_array_get(e, 2)));

    jn_auth_free(a);
    json_decref(l.entries);
}

/* ---- ACLs ---- */

static bool allowed(jn_auth_t *a, const jn_principal_t *p, enum jn_perm perm, const char *s)
{
    return jn_auth_allowed(a, p, perm, s, s ? strlen(s) : 0);
}

static void test_acls(void **state)
{
    (void)state;
    jn_auth_t *a = jn_auth_new(NULL, NULL);
    jn_principal_t free_user, limited, admin, anon;
    assert_int_equal(jn_auth_user_set(a, "free", "pw", false), 0);
    assert_int_equal(jn_auth_user_set(a, "limited", "pw", false), 0);
    assert_int_equal(jn_auth_user_set(a, "boss", "pw", true), 0);
    assert_int_equal(jn_auth_check_password(a, "free", "pw", &free_user), 0);
    assert_int_equal(jn_auth_check_password(a, "limited", "pw", &limited), 0);
    assert_int_equal(jn_auth_check_password(a, "boss", "pw", &admin), 0);
    jn_principal_anonymous(&anon);
    assert_string_equal(anon.name, "anonymous");
    assert_true(anon.anonymous);
    assert_false(anon.admin);

    /* no rules: publish and subscribe anywhere, never administer */
    assert_true(allowed(a, &free_user, JN_PERM_PUBLISH, "any/thing"));
    assert_true(allowed(a, &free_user, JN_PERM_SUBSCRIBE, "#"));
    assert_false(allowed(a, &free_user, JN_PERM_ADMIN, "any"));
    assert_false(allowed(a, &free_user, JN_PERM_ADMIN, NULL));
    assert_true(allowed(a, &anon, JN_PERM_PUBLISH, "x"));
    /* invalid subjects and filters are never allowed */
    assert_false(allowed(a, &free_user, JN_PERM_PUBLISH, "a/+"));
    assert_false(allowed(a, &free_user, JN_PERM_SUBSCRIBE, "a/#/b"));
    assert_false(allowed(a, &free_user, JN_PERM_PUBLISH, ""));

    /* admins do everything */
    assert_true(allowed(a, &admin, JN_PERM_ADMIN, NULL));
    assert_true(allowed(a, &admin, JN_PERM_ADMIN, "streams/x"));
    assert_true(allowed(a, &admin, JN_PERM_PUBLISH, "$SYS/x"));

    assert_int_equal(jn_auth_acl_add(a, "limited", JN_PERM_PUBLISH | JN_PERM_SUBSCRIBE, "sensors/#"), 0);
    assert_int_equal(jn_auth_acl_add(a, "limited", JN_PERM_SUBSCRIBE, "alerts/+"), 0);
    assert_int_equal(jn_auth_acl_add(a, "limited", JN_PERM_ADMIN, "tenant/#"), 0);
    assert_int_equal(jn_auth_acl_add(a, "limited", JN_PERM_SUBSCRIBE, "alerts/+"), JN_EEXIST);
    assert_int_equal(jn_auth_acl_add(a, "limited", 0, "x"), JN_EINVAL);
    assert_int_equal(jn_auth_acl_add(a, "limited", 8, "x"), JN_EINVAL);
    assert_int_equal(jn_auth_acl_add(a, "limited", JN_PERM_PUBLISH, "a/#/b"), JN_EINVAL);
    assert_int_equal(jn_auth_acl_add(a, "bad name", JN_PERM_PUBLISH, "a"), JN_EINVAL);

    assert_true(allowed(a, &limited, JN_PERM_PUBLISH, "sensors"));
    assert_true(allowed(a, &limited, JN_PERM_PUBLISH, "sensors/kitchen/temp"));
    assert_false(allowed(a, &limited, JN_PERM_PUBLISH, "sensorsx"));
    assert_false(allowed(a, &limited, JN_PERM_PUBLISH, "alerts/fire")); /* subscribe-only rule */
    assert_false(allowed(a, &limited, JN_PERM_PUBLISH, "other"));
    assert_true(allowed(a, &limited, JN_PERM_SUBSCRIBE, "sensors/+/temp"));
    assert_true(allowed(a, &limited, JN_PERM_SUBSCRIBE, "sensors/#"));
    assert_true(allowed(a, &limited, JN_PERM_SUBSCRIBE, "alerts/fire"));
    assert_true(allowed(a, &limited, JN_PERM_SUBSCRIBE, "alerts/+"));
    assert_false(allowed(a, &limited, JN_PERM_SUBSCRIBE, "alerts/#"));
    assert_false(allowed(a, &limited, JN_PERM_SUBSCRIBE, "#"));
    assert_false(allowed(a, &limited, JN_PERM_SUBSCRIBE, "+/kitchen"));
    assert_true(allowed(a, &limited, JN_PERM_ADMIN, "tenant/a"));
    assert_false(allowed(a, &limited, JN_PERM_ADMIN, "other"));
    assert_false(allowed(a, &limited, JN_PERM_ADMIN, NULL));
    /* other users are unaffected by limited's rules */
    assert_true(allowed(a, &free_user, JN_PERM_PUBLISH, "other"));

    /* '$' subjects: a leading wildcard does not reach them */
    assert_int_equal(jn_auth_acl_add(a, "anonymous", JN_PERM_PUBLISH | JN_PERM_SUBSCRIBE, "#"), 0);
    assert_true(allowed(a, &anon, JN_PERM_PUBLISH, "public/x"));
    assert_false(allowed(a, &anon, JN_PERM_PUBLISH, "$SYS/x"));
    assert_false(allowed(a, &anon, JN_PERM_SUBSCRIBE, "$SYS/#"));
    assert_true(allowed(a, &anon, JN_PERM_SUBSCRIBE, "+/x"));
    assert_false(allowed(a, &anon, JN_PERM_ADMIN, NULL));

    assert_int_equal(jn_auth_acl_add(a, "limited", JN_PERM_ADMIN, "#"), 0);
    assert_true(allowed(a, &limited, JN_PERM_ADMIN, NULL));

    json_t *acls = jn_auth_acls_json(a);
    assert_int_equal(json_array_size(acls), 5);
    json_t *want = json_pack("{s:s, s:[s,s], s:s}", "user", "limited", "perms", "publish", "subscribe", "filter",
                             "sensors/#");
    assert_true(json_equal(json_array_get(acls, 0), want));
    json_decref(want);
    json_decref(acls);

    assert_int_equal(jn_auth_acl_remove(a, "limited", JN_PERM_SUBSCRIBE, "sensors/#"), JN_ENOENT);
    assert_int_equal(jn_auth_acl_remove(a, "limited", JN_PERM_PUBLISH | JN_PERM_SUBSCRIBE, "sensors/#"), 0);
    assert_false(allowed(a, &limited, JN_PERM_PUBLISH, "sensors/a"));
    assert_int_equal(jn_auth_acl_remove(a, "limited", JN_PERM_SUBSCRIBE, "alerts/+"), 0);
    assert_int_equal(jn_auth_acl_remove(a, "limited", JN_PERM_ADMIN, "tenant/#"), 0);
    assert_int_equal(jn_auth_acl_remove(a, "limited", JN_PERM_ADMIN, "#"), 0);
    /* back to no rules */
    assert_true(allowed(a, &limited, JN_PERM_PUBLISH, "sensors/a"));
    jn_auth_free(a);
}

/* ---- persistence ---- */

static void test_persist_round_trip(void **state)
{
    (void)state;
    log_t l;
    jn_auth_t *a = new_auth(&l);
    char tok[64], id[16], tok_gone[64], id_gone[16];
    assert_int_equal(jn_auth_user_set(a, "alice", "pw1", false), 0);
    assert_int_equal(jn_auth_user_set(a, "bob", "pw2", true), 0);
    assert_int_equal(jn_auth_user_set(a, "carol", "pw3", false), 0);
    assert_int_equal(jn_auth_user_set(a, "alice", "pw1-new", false), 0);
    assert_int_equal(jn_auth_token_create(a, "alice", "caf\xc3\xa9 token", tok, id), 0);
    assert_int_equal(jn_auth_token_create(a, "bob", "gone", tok_gone, id_gone), 0);
    assert_int_equal(jn_auth_token_revoke(a, id_gone), 0);
    assert_int_equal(jn_auth_acl_add(a, "alice", JN_PERM_PUBLISH, "a/with space/#"), 0);
    assert_int_equal(jn_auth_acl_add(a, "alice", JN_PERM_SUBSCRIBE | JN_PERM_ADMIN, "+/x"), 0);
    assert_int_equal(jn_auth_acl_add(a, "carol", JN_PERM_PUBLISH, "c"), 0);
    assert_int_equal(jn_auth_acl_add(a, "anonymous", JN_PERM_SUBSCRIBE, "pub/#"), 0);
    assert_int_equal(jn_auth_acl_remove(a, "alice", JN_PERM_SUBSCRIBE | JN_PERM_ADMIN, "+/x"), 0);
    assert_int_equal(jn_auth_user_delete(a, "carol"), 0);

    jn_auth_t *b = jn_auth_new(NULL, NULL);
    replay(b, &l);
    assert_true(json_same(jn_auth_users_json(a), jn_auth_users_json(b)));
    assert_true(json_same(jn_auth_tokens_json(a), jn_auth_tokens_json(b)));
    assert_true(json_same(jn_auth_acls_json(a), jn_auth_acls_json(b)));
    assert_int_equal(jn_auth_user_count(b), 2);

    jn_principal_t p;
    assert_int_equal(jn_auth_check_password(b, "alice", "pw1-new", &p), 0);
    assert_int_equal(jn_auth_check_password(b, "alice", "pw1", &p), JN_EAUTH);
    assert_int_equal(jn_auth_check_password(b, "bob", "pw2", &p), 0);
    assert_true(p.admin);
    assert_int_equal(jn_auth_check_password(b, "carol", "pw3", &p), JN_EAUTH);
    assert_int_equal(jn_auth_check_token(b, tok, &p), 0);
    assert_string_equal(p.name, "alice");
    assert_int_equal(jn_auth_check_token(b, tok_gone, &p), JN_EAUTH);

    uint8_t s1[16], s2[16], k1[32], k2[32], v1[32], v2[32];
    uint32_t i1, i2;
    assert_int_equal(jn_auth_scram_credentials(a, "bob", s1, &i1, k1, v1), 0);
    assert_int_equal(jn_auth_scram_credentials(b, "bob", s2, &i2, k2, v2), 0);
    assert_memory_equal(s1, s2, 16);
    assert_memory_equal(k1, k2, 32);
    assert_memory_equal(v1, v2, 32);
    assert_int_equal(i1, i2);

    /* replaying twice changes nothing */
    replay(b, &l);
    assert_true(json_same(jn_auth_acls_json(a), jn_auth_acls_json(b)));
    assert_true(json_same(jn_auth_tokens_json(a), jn_auth_tokens_json(b)));
    jn_auth_free(b);
    jn_auth_free(a);
    json_decref(l.entries);
}

static void test_load_malformed(void **state)
{
    (void)state;
    jn_auth_t *a = jn_auth_new(NULL, NULL);
    json_t *v = json_pack("{s:s}", "name", "x");
    assert_int_equal(jn_auth_load(a, "user", "x", v), JN_EPROTO);
    assert_int_equal(jn_auth_load(a, "gadget", "x", v), JN_EPROTO);
    assert_int_equal(jn_auth_load(a, NULL, "x", v), JN_EPROTO);
    json_decref(v);
    v = json_pack("{s:s, s:b, s:s, s:i, s:s, s:s}", "name", "x", "admin", 0, "salt", "AAAAAAAAAAAAAAAAAAAAAA==",
                  "iterations", 4096, "stored_key", "short", "server_key", "short");
    assert_int_equal(jn_auth_load(a, "user", "x", v), JN_EPROTO);
    json_decref(v);
    v = json_pack("{s:s, s:[s], s:s}", "user", "u", "perms", "fly", "filter", "a");
    assert_int_equal(jn_auth_load(a, "acl", "u fly a", v), JN_EPROTO);
    json_decref(v);
    v = json_pack("{s:s, s:[s], s:s}", "user", "u", "perms", "publish", "filter", "a");
    assert_int_equal(jn_auth_load(a, "acl", "u publish b", v), JN_EPROTO); /* key mismatch */
    assert_int_equal(jn_auth_load(a, "acl", "u publish a", v), 0);
    json_decref(v);
    assert_int_equal(jn_auth_load(a, "acl", "u publish", NULL), JN_EPROTO);
    assert_int_equal(jn_auth_load(a, "acl", "u publish a", NULL), 0);
    json_t *acls = jn_auth_acls_json(a);
    assert_int_equal(json_array_size(acls), 0);
    json_decref(acls);
    assert_int_equal(jn_auth_user_count(a), 0);
    jn_auth_free(a);
}

static void test_persist_failure(void **state)
{
    (void)state;
    log_t l;
    jn_auth_t *a = new_auth(&l);
    jn_principal_t p;
    char tok[64], id[16];
    assert_int_equal(jn_auth_user_set(a, "alice", "old", false), 0);
    assert_int_equal(jn_auth_token_create(a, "alice", "t", tok, id), 0);
    assert_int_equal(jn_auth_acl_add(a, "alice", JN_PERM_PUBLISH, "a/#"), 0);
    json_t *users = jn_auth_users_json(a), *tokens = jn_auth_tokens_json(a), *acls = jn_auth_acls_json(a);
    size_t logged = json_array_size(l.entries);

    l.fail = JN_EIO;
    assert_int_equal(jn_auth_user_set(a, "bob", "pw", false), JN_EIO);
    assert_false(jn_auth_user_exists(a, "bob"));
    assert_int_equal(jn_auth_user_set(a, "alice", "new", true), JN_EIO);
    assert_int_equal(jn_auth_check_password(a, "alice", "old", &p), 0);
    assert_false(p.admin);
    char tok2[64] = "", id2[16] = "";
    assert_int_equal(jn_auth_token_create(a, "alice", "t2", tok2, id2), JN_EIO);
    assert_int_equal(jn_auth_token_revoke(a, id), JN_EIO);
    assert_int_equal(jn_auth_check_token(a, tok, &p), 0);
    assert_int_equal(jn_auth_acl_add(a, "alice", JN_PERM_PUBLISH, "b"), JN_EIO);
    assert_int_equal(jn_auth_acl_remove(a, "alice", JN_PERM_PUBLISH, "a/#"), JN_EIO);
    assert_int_equal(jn_auth_user_delete(a, "alice"), JN_EIO);
    assert_true(jn_auth_user_exists(a, "alice"));
    /* a positive return still counts as failure */
    l.fail = 1;
    assert_int_equal(jn_auth_user_set(a, "bob", "pw", false), JN_EIO);
    assert_false(jn_auth_user_exists(a, "bob"));

    assert_true(json_same(users, jn_auth_users_json(a)));
    assert_true(json_same(tokens, jn_auth_tokens_json(a)));
    assert_true(json_same(acls, jn_auth_acls_json(a)));
    assert_int_equal(json_array_size(l.entries), logged);
    assert_int_equal(jn_auth_check_password(a, "alice", "old", &p), 0);
    assert_true(jn_auth_allowed(a, &p, JN_PERM_PUBLISH, "a/b", 3));
    assert_false(jn_auth_allowed(a, &p, JN_PERM_PUBLISH, "b", 1));
    jn_auth_free(a);
    json_decref(l.entries);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_users),
        cmocka_unit_test(test_scram_rfc7677),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_acls),
        cmocka_unit_test(test_persist_round_trip),
        cmocka_unit_test(test_load_malformed),
        cmocka_unit_test(test_persist_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
