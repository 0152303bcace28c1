/* auth.c - users, API tokens and ACLs, held in memory and mirrored to the
 * metadata log through the persist callback.
 *
 * Every change is built completely, persisted, and only then applied: room
 * in the arrays is reserved before the callback runs, so a change that the
 * log accepted can no longer fail, and one the log refused leaves no trace.
 * The tables are small, setup-time arrays kept in creation order (listings
 * come out stable); lookups are linear.
 *
 * Persisted records (kind, key -> JSON value):
 *   user  name           {"name","admin","salt"(base64, 16 bytes),
 *                         "iterations","stored_key"(b64),"server_key"(b64)}
 *   token id             {"id","user","description","created"(unix s),
 *                         "sha256"(hex of the whole token)}
 *   acl   "user p filter" {"user","perms":["publish",...],"filter"}
 *                         where p is the perms joined by ',' in bit order.
 */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "filter.h"

#define USER_NAME_MAX 64
#define PASSWORD_MAX 1024
#define DESCRIPTION_MAX 1024
#define SALT_LEN 16
#define KEY_LEN 32
#define SCRAM_ITERATIONS 4096
#define ITERATIONS_MAX 1000000 /* bounds the work a stored record can ask for */
#define TOKEN_PREFIX "jnt_"
#define TOKEN_PREFIX_LEN 4
#define TOKEN_RANDOM 32
#define TOKEN_LEN (TOKEN_PREFIX_LEN + 43) /* base64url of 32 bytes, unpadded */
#define TOKEN_ID_LEN 12
#define SHA256_HEX 64
#define MAX_USERS 65536
#define MAX_TOKENS 65536
#define MAX_ACLS 65536
#define ACL_KEY_MAX (USER_NAME_MAX + 1 + 32 + 1 + JN_SUBJECT_MAX + 1)

/* Test hook, not part of auth.h: replaces RAND_bytes so that tests can fix
 * the salt (to check RFC 7677's vector) and tokens. */
typedef int (*jn__auth_random_cb)(void *ctx, uint8_t *buf, size_t len);
void jn__auth_set_random(jn_auth_t *a, jn__auth_random_cb fill, void *ctx);

typedef struct user {
    char name[USER_NAME_MAX + 1];
    bool admin;
    uint8_t salt[SALT_LEN];
    uint32_t iterations;
    uint8_t stored_key[KEY_LEN];
    uint8_t server_key[KEY_LEN];
} user_t;

typedef struct token {
    char id[TOKEN_ID_LEN + 1];   /* first characters of the token */
    char user[USER_NAME_MAX + 1];
    char *description;           /* owned */
    int64_t created;             /* unix seconds */
    char sha256[SHA256_HEX + 1]; /* lower-case hex digest of the token */
} token_t;

typedef struct acl {
    char user[USER_NAME_MAX + 1];
    unsigned perms;              /* JN_PERM_* bits */
    char *filter;                /* owned, validated */
} acl_t;

struct jn_auth {
    jn_auth_persist_cb persist;
    void *ctx;
    jn__auth_random_cb random;
    void *random_ctx;
    user_t *users;
    size_t nusers, capusers;
    token_t *tokens;
    size_t ntokens, captokens;
    acl_t *acls;
    size_t nacls, capacls;
};

static const char *const perm_names[] = {"publish", "subscribe", "admin"};
#define NPERMS 3

/* ---- helpers ------------------------------------------------------------ */

static int rand_default(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    return RAND_bytes(buf, (int)len) == 1 ? 0 : JN_EIO;
}

void jn__auth_set_random(jn_auth_t *a, jn__auth_random_cb fill, void *ctx)
{
    a->random = fill ? fill : rand_default;
    a->random_ctx = ctx;
}

static bool name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = strnlen(name, USER_NAME_MAX + 1);
    if (n == 0 || n > USER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '@' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* Returns |arr| with room for n+1 elements of |size|, or NULL (|arr|
 * untouched) when memory is short or |max| is reached. */
static void *reserve_one(void *arr, size_t *cap, size_t n, size_t size, size_t max)
{
    if (n < *cap)
        return arr;
    if (n >= max)
        return NULL;
    size_t ncap = *cap ? *cap * 2 : 8;
    if (ncap > max)
        ncap = max;
    void *na = realloc(arr, ncap * size);
    if (na == NULL)
        return NULL;
    *cap = ncap;
    return na;
}

/* Removes element |i| keeping the order of the rest. */
static void remove_index(void *arr, size_t *n, size_t i, size_t size)
{
    char *p = arr;
    memmove(p + i * size, p + (i + 1) * size, (*n - i - 1) * size);
    (*n)--;
}

static void b64_encode(char *out, const uint8_t *in, size_t n)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Decodes exactly |n| bytes from canonical padded base64 |s|. */
static bool b64_decode(const char *s, uint8_t *out, size_t n)
{
    char enc[4 * ((KEY_LEN + 2) / 3) + 1];
    uint8_t tmp[3 * ((KEY_LEN + 2) / 3)];
    size_t want = 4 * ((n + 2) / 3);
    if (s == NULL || n > KEY_LEN || strnlen(s, want + 1) != want)
        return false;
    if (EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)want) < 0)
        return false;
    /* re-encoding rejects stray bits and wrong padding */
    b64_encode(enc, tmp, n);
    if (strcmp(enc, s) != 0)
        return false;
    memcpy(out, tmp, n);
    return true;
}

static void hex_encode(char *out, const uint8_t *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool hex_valid(const char *s, size_t n)
{
    if (s == NULL || strnlen(s, n + 1) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* SCRAM-SHA-256 (RFC 5802 section 3): SaltedPassword = PBKDF2(password),
 * StoredKey = H(HMAC(SaltedPassword, "Client Key")),
 * ServerKey = HMAC(SaltedPassword, "Server Key"). */
static int scram_derive(const char *password, size_t plen, const uint8_t salt[SALT_LEN], uint32_t iterations,
                        uint8_t stored_key[KEY_LEN], uint8_t server_key[KEY_LEN])
{
    uint8_t salted[KEY_LEN], client_key[KEY_LEN];
    unsigned int len = 0;
    int rc = JN_ENOMEM; /* OpenSSL fails here only when it cannot allocate */
    if (PKCS5_PBKDF2_HMAC(password, (int)plen, salt, SALT_LEN, (int)iterations, EVP_sha256(), KEY_LEN,
                          salted) != 1)
        goto fail;
    if (HMAC(EVP_sha256(), salted, KEY_LEN, (const unsigned char *)"Client Key", 10, client_key, &len) == NULL)
        goto fail;
    if (SHA256(client_key, KEY_LEN, stored_key) == NULL)
        goto fail;
    if (HMAC(EVP_sha256(), salted, KEY_LEN, (const unsigned char *)"Server Key", 10, server_key, &len) == NULL)
        goto fail;
    rc = 0;
fail:
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_key, sizeof client_key);
    return rc;
}

static int persist(jn_auth_t *a, const char *kind, const char *key, json_t *value)
{
    if (a->persist == NULL)
        return 0;
    int rc = a->persist(a->ctx, kind, key, value);
    return rc == 0 ? 0 : (rc < 0 ? rc : JN_EIO);
}

static void principal_fill(jn_principal_t *out, const char *name, bool admin)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->admin = admin;
    out->anonymous = false;
}

static size_t find_user(const jn_auth_t *a, const char *name)
{
    for (size_t i = 0; i < a->nusers; i++)
        if (strcmp(a->users[i].name, name) == 0)
            return i;
    return SIZE_MAX;
}

static size_t find_token(const jn_auth_t *a, const char *id)
{
    for (size_t i = 0; i < a->ntokens; i++)
        if (strcmp(a->tokens[i].id, id) == 0)
            return i;
    return SIZE_MAX;
}

static size_t find_acl(const jn_auth_t *a, const char *user, unsigned perms, const char *filter)
{
    for (size_t i = 0; i < a->nacls; i++)
        if (a->acls[i].perms == perms && strcmp(a->acls[i].user, user) == 0 &&
            strcmp(a->acls[i].filter, filter) == 0)
            return i;
    return SIZE_MAX;
}

static json_t *user_json(const user_t *u)
{
    char salt[4 * ((SALT_LEN + 2) / 3) + 1], stored[4 * ((KEY_LEN + 2) / 3) + 1],
        server[4 * ((KEY_LEN + 2) / 3) + 1];
    b64_encode(salt, u->salt, SALT_LEN);
    b64_encode(stored, u->stored_key, KEY_LEN);
    b64_encode(server, u->server_key, KEY_LEN);
    return json_pack("{s:s, s:b, s:s, s:I, s:s, s:s}", "name", u->name, "admin", (int)u->admin, "salt", salt,
                     "iterations", (json_int_t)u->iterations, "stored_key", stored, "server_key", server);
}

static json_t *token_json(const token_t *t, bool with_digest)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:I}", "id", t->id, "user", t->user, "description",
                          t->description, "created", (json_int_t)t->created);
    if (j != NULL && with_digest && json_object_set_new(j, "sha256", json_string(t->sha256)) != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static json_t *perms_json(unsigned perms)
{
    json_t *arr = json_array();
    for (unsigned i = 0; arr != NULL && i < NPERMS; i++) {
        if ((perms & (1u << i)) && json_array_append_new(arr, json_string(perm_names[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

static json_t *acl_json(const char *user, unsigned perms, const char *filter)
{
    json_t *p = perms_json(perms);
    return p ? json_pack("{s:s, s:o, s:s}", "user", user, "perms", p, "filter", filter) : NULL;
}

/* "user publish,subscribe filter" into |out| (ACL_KEY_MAX bytes). */
static void acl_key(char *out, const char *user, unsigned perms, const char *filter)
{
    char p[32] = "";
    size_t n = 0;
    for (unsigned i = 0; i < NPERMS; i++) {
        if (!(perms & (1u << i)))
            continue;
        n += (size_t)snprintf(p + n, sizeof p - n, "%s%s", n ? "," : "", perm_names[i]);
    }
    snprintf(out, ACL_KEY_MAX, "%s %s %s", user, p, filter);
}

static bool perms_valid(unsigned perms)
{
    return perms != 0 && (perms & ~(unsigned)(JN_PERM_PUBLISH | JN_PERM_SUBSCRIBE | JN_PERM_ADMIN)) == 0;
}

static bool filter_ok(const char *filter)
{
    return filter != NULL && jn_filter_validate(filter, strnlen(filter, JN_SUBJECT_MAX + 1)) == 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

jn_auth_t *jn_auth_new(jn_auth_persist_cb persist_cb, void *ctx)
{
    jn_auth_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->persist = persist_cb;
    a->ctx = ctx;
    a->random = rand_default;
    return a;
}

void jn_auth_free(jn_auth_t *a)
{
    if (a == NULL)
        return;
    OPENSSL_cleanse(a->users, a->nusers * sizeof *a->users);
    free(a->users);
    for (size_t i = 0; i < a->ntokens; i++)
        free(a->tokens[i].description);
    free(a->tokens);
    for (size_t i = 0; i < a->nacls; i++)
        free(a->acls[i].filter);
    free(a->acls);
    free(a);
}

void jn_principal_anonymous(jn_principal_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "anonymous");
    out->admin = false;
    out->anonymous = true;
}

/* ---- users -------------------------------------------------------------- */

/* Inserts or replaces |u|; room must have been reserved. */
static void user_apply(jn_auth_t *a, const user_t *u)
{
    size_t i = find_user(a, u->name);
    if (i == SIZE_MAX)
        i = a->nusers++;
    a->users[i] = *u;
}

static int reserve_user(jn_auth_t *a)
{
    user_t *nu = reserve_one(a->users, &a->capusers, a->nusers, sizeof *nu, MAX_USERS);
    if (nu == NULL)
        return a->nusers >= MAX_USERS ? JN_ETOOBIG : JN_ENOMEM;
    a->users = nu;
    return 0;
}

int jn_auth_user_set(jn_auth_t *a, const char *name, const char *password, bool admin)
{
    if (!name_valid(name) || password == NULL)
        return JN_EINVAL;
    size_t plen = strnlen(password, PASSWORD_MAX + 1);
    if (plen == 0 || plen > PASSWORD_MAX)
        return JN_EINVAL;
    user_t u;
    json_t *j = NULL;
    memset(&u, 0, sizeof u);
    snprintf(u.name, sizeof u.name, "%s", name);
    u.admin = admin;
    u.iterations = SCRAM_ITERATIONS;
    int rc = find_user(a, name) == SIZE_MAX ? reserve_user(a) : 0;
    if (rc == 0)
        rc = a->random(a->random_ctx, u.salt, SALT_LEN);
    if (rc == 0)
        rc = scram_derive(password, plen, u.salt, u.iterations, u.stored_key, u.server_key);
    if (rc != 0)
        goto fail;
    if ((j = user_json(&u)) == NULL) {
        rc = JN_ENOMEM;
        goto fail;
    }
    if ((rc = persist(a, "user", name, j)) != 0)
        goto fail;
    user_apply(a, &u);
fail:
    json_decref(j);
    OPENSSL_cleanse(&u, sizeof u);
    return rc;
}

int jn_auth_user_delete(jn_auth_t *a, const char *name)
{
    if (!name_valid(name))
        return JN_EINVAL;
    size_t ui = find_user(a, name);
    if (ui == SIZE_MAX)
        return JN_ENOENT;
    int rc;
    /* dependants go first: if a deletion fails midway the user still
     * exists, and what was deleted is deleted in the log too */
    for (size_t i = a->ntokens; i-- > 0;) {
        token_t *t = &a->tokens[i];
        if (strcmp(t->user, name) != 0)
            continue;
        if ((rc = persist(a, "token", t->id, NULL)) != 0)
            return rc;
        free(t->description);
        remove_index(a->tokens, &a->ntokens, i, sizeof *a->tokens);
    }
    for (size_t i = a->nacls; i-- > 0;) {
        acl_t *r = &a->acls[i];
        if (strcmp(r->user, name) != 0)
            continue;
        char key[ACL_KEY_MAX];
        acl_key(key, r->user, r->perms, r->filter);
        if ((rc = persist(a, "acl", key, NULL)) != 0)
            return rc;
        free(r->filter);
        remove_index(a->acls, &a->nacls, i, sizeof *a->acls);
    }
    if ((rc = persist(a, "user", name, NULL)) != 0)
        return rc;
    OPENSSL_cleanse(&a->users[ui], sizeof a->users[ui]);
    remove_index(a->users, &a->nusers, ui, sizeof *a->users);
    return 0;
}

bool jn_auth_user_exists(const jn_auth_t *a, const char *name)
{
    return name != NULL && find_user(a, name) != SIZE_MAX;
}

size_t jn_auth_user_count(const jn_auth_t *a)
{
    return a->nusers;
}

json_t *jn_auth_users_json(const jn_auth_t *a)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < a->nusers; i++) {
        size_t ntok = 0;
        for (size_t k = 0; k < a->ntokens; k++)
            ntok += strcmp(a->tokens[k].user, a->users[i].name) == 0;
        json_t *u = json_pack("{s:s, s:b, s:I}", "name", a->users[i].name, "admin", (int)a->users[i].admin,
                              "tokens", (json_int_t)ntok);
        if (u == NULL || json_array_append_new(arr, u) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

int jn_auth_check_password(const jn_auth_t *a, const char *name, const char *password, jn_principal_t *out)
{
    static const uint8_t dummy_salt[SALT_LEN];
    uint8_t stored[KEY_LEN], server[KEY_LEN];
    if (password == NULL)
        return JN_EAUTH;
    size_t plen = strnlen(password, PASSWORD_MAX + 1);
    if (plen == 0 || plen > PASSWORD_MAX)
        return JN_EAUTH;
    size_t ui = name_valid(name) ? find_user(a, name) : SIZE_MAX;
    if (ui == SIZE_MAX) {
        /* spend the same work so that timing does not reveal unknown names */
        (void)scram_derive(password, plen, dummy_salt, SCRAM_ITERATIONS, stored, server);
        return JN_EAUTH;
    }
    const user_t *u = &a->users[ui];
    int rc = scram_derive(password, plen, u->salt, u->iterations, stored, server);
    if (rc == 0 && CRYPTO_memcmp(stored, u->stored_key, KEY_LEN) != 0)
        rc = JN_EAUTH;
    OPENSSL_cleanse(stored, sizeof stored);
    OPENSSL_cleanse(server, sizeof server);
    if (rc != 0)
        return rc == JN_ENOMEM ? rc : JN_EAUTH;
    if (out != NULL)
        principal_fill(out, u->name, u->admin);
    return 0;
}

int jn_auth_scram_credentials(const jn_auth_t *a, const char *name, uint8_t salt[16], uint32_t *iterations,
                              uint8_t stored_key[32], uint8_t server_key[32])
{
    size_t ui = name ? find_user(a, name) : SIZE_MAX;
    if (ui == SIZE_MAX)
        return JN_ENOENT;
    const user_t *u = &a->users[ui];
    memcpy(salt, u->salt, SALT_LEN);
    *iterations = u->iterations;
    memcpy(stored_key, u->stored_key, KEY_LEN);
    memcpy(server_key, u->server_key, KEY_LEN);
    return 0;
}

/* ---- tokens ------------------------------------------------------------- */

static void token_digest(const char *token, char hex[SHA256_HEX + 1])
{
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), d);
    hex_encode(hex, d, sizeof d);
}

static int reserve_token(jn_auth_t *a)
{
    token_t *nt = reserve_one(a->tokens, &a->captokens, a->ntokens, sizeof *nt, MAX_TOKENS);
    if (nt == NULL)
        return a->ntokens >= MAX_TOKENS ? JN_ETOOBIG : JN_ENOMEM;
    a->tokens = nt;
    return 0;
}

int jn_auth_token_create(jn_auth_t *a, const char *user, const char *description, char *token_out,
                         char *id_out)
{
    if (!name_valid(user) || token_out == NULL || id_out == NULL)
        return JN_EINVAL;
    if (find_user(a, user) == SIZE_MAX)
        return JN_ENOENT;
    if (description == NULL)
        description = "";
    size_t dlen = strnlen(description, DESCRIPTION_MAX + 1);
    if (dlen > DESCRIPTION_MAX)
        return JN_EINVAL;
    token_t t;
    uint8_t raw[TOKEN_RANDOM];
    char b64[4 * ((TOKEN_RANDOM + 2) / 3) + 1], token[TOKEN_LEN + 1];
    json_t *j = NULL;
    memset(&t, 0, sizeof t);
    int rc = reserve_token(a);
    if (rc != 0)
        goto fail;
    /* the id carries 48 random bits; a clash is unlikely but must not
     * make two tokens share an id */
    for (int attempt = 0;; attempt++) {
        if (attempt == 8) {
            rc = JN_EEXIST;
            goto fail;
        }
        if ((rc = a->random(a->random_ctx, raw, sizeof raw)) != 0)
            goto fail;
        b64_encode(b64, raw, sizeof raw);
        for (char *p = b64; *p; p++)
            *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
        memcpy(token, TOKEN_PREFIX, TOKEN_PREFIX_LEN);
        memcpy(token + TOKEN_PREFIX_LEN, b64, TOKEN_LEN - TOKEN_PREFIX_LEN); /* drops the '=' */
        token[TOKEN_LEN] = '\0';
        memcpy(t.id, token, TOKEN_ID_LEN);
        t.id[TOKEN_ID_LEN] = '\0';
        if (find_token(a, t.id) == SIZE_MAX)
            break;
    }
    snprintf(t.user, sizeof t.user, "%s", user);
    t.created = jn_wall_ms() / 1000;
    token_digest(token, t.sha256);
    if ((t.description = malloc(dlen + 1)) == NULL) {
        rc = JN_ENOMEM;
        goto fail;
    }
    memcpy(t.description, description, dlen + 1);
    if ((j = token_json(&t, true)) == NULL) {
        rc = JN_EINVAL; /* description is not valid UTF-8, or memory */
        goto fail;
    }
    if ((rc = persist(a, "token", t.id, j)) != 0)
        goto fail;
    a->tokens[a->ntokens++] = t;
    t.description = NULL;
    memcpy(token_out, token, TOKEN_LEN + 1);
    memcpy(id_out, t.id, TOKEN_ID_LEN + 1);
fail:
    json_decref(j);
    free(t.description);
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(b64, sizeof b64);
    OPENSSL_cleanse(token, sizeof token);
    return rc;
}

int jn_auth_token_revoke(jn_auth_t *a, const char *id)
{
    size_t i = id ? find_token(a, id) : SIZE_MAX;
    if (i == SIZE_MAX)
        return JN_ENOENT;
    int rc = persist(a, "token", id, NULL);
    if (rc != 0)
        return rc;
    free(a->tokens[i].description);
    remove_index(a->tokens, &a->ntokens, i, sizeof *a->tokens);
    return 0;
}

json_t *jn_auth_tokens_json(const jn_auth_t *a)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < a->ntokens; i++) {
        json_t *t = token_json(&a->tokens[i], false);
        if (t == NULL || json_array_append_new(arr, t) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

int jn_auth_check_token(const jn_auth_t *a, const char *token, jn_principal_t *out)
{
    if (token == NULL || strnlen(token, TOKEN_LEN + 1) != TOKEN_LEN ||
        memcmp(token, TOKEN_PREFIX, TOKEN_PREFIX_LEN) != 0)
        return JN_EAUTH;
    char id[TOKEN_ID_LEN + 1], hex[SHA256_HEX + 1];
    memcpy(id, token, TOKEN_ID_LEN);
    id[TOKEN_ID_LEN] = '\0';
    size_t i = find_token(a, id);
    if (i == SIZE_MAX)
        return JN_EAUTH;
    const token_t *t = &a->tokens[i];
    token_digest(token, hex);
    if (CRYPTO_memcmp(hex, t->sha256, SHA256_HEX) != 0)
        return JN_EAUTH;
    size_t ui = find_user(a, t->user);
    if (ui == SIZE_MAX)
        return JN_EAUTH;
    if (out != NULL)
        principal_fill(out, a->users[ui].name, a->users[ui].admin);
    return 0;
}

/* ---- ACLs --------------------------------------------------------------- */

static int reserve_acl(jn_auth_t *a)
{
    acl_t *na = reserve_one(a->acls, &a->capacls, a->nacls, sizeof *na, MAX_ACLS);
    if (na == NULL)
        return a->nacls >= MAX_ACLS ? JN_ETOOBIG : JN_ENOMEM;
    a->acls = na;
    return 0;
}

/* Appends the rule; room must have been reserved. */
static int acl_apply(jn_auth_t *a, const char *user, unsigned perms, const char *filter)
{
    acl_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.user, sizeof r.user, "%s", user);
    r.perms = perms;
    if ((r.filter = strdup(filter)) == NULL)
        return JN_ENOMEM;
    a->acls[a->nacls++] = r;
    return 0;
}

int jn_auth_acl_add(jn_auth_t *a, const char *user, unsigned perms, const char *filter)
{
    if (!name_valid(user) || !perms_valid(perms) || !filter_ok(filter))
        return JN_EINVAL;
    if (find_acl(a, user, perms, filter) != SIZE_MAX)
        return JN_EEXIST;
    char key[ACL_KEY_MAX];
    acl_t r;
    json_t *j = NULL;
    memset(&r, 0, sizeof r);
    int rc = reserve_acl(a);
    if (rc != 0)
        goto fail;
    /* copied before persisting so the apply after it cannot fail */
    snprintf(r.user, sizeof r.user, "%s", user);
    r.perms = perms;
    if ((r.filter = strdup(filter)) == NULL || (j = acl_json(user, perms, filter)) == NULL) {
        rc = JN_ENOMEM;
        goto fail;
    }
    acl_key(key, user, perms, filter);
    if ((rc = persist(a, "acl", key, j)) != 0)
        goto fail;
    a->acls[a->nacls++] = r;
    r.filter = NULL;
fail:
    json_decref(j);
    free(r.filter);
    return rc;
}

int jn_auth_acl_remove(jn_auth_t *a, const char *user, unsigned perms, const char *filter)
{
    if (!name_valid(user) || !perms_valid(perms) || !filter_ok(filter))
        return JN_EINVAL;
    size_t i = find_acl(a, user, perms, filter);
    if (i == SIZE_MAX)
        return JN_ENOENT;
    char key[ACL_KEY_MAX];
    acl_key(key, user, perms, filter);
    int rc = persist(a, "acl", key, NULL);
    if (rc != 0)
        return rc;
    free(a->acls[i].filter);
    remove_index(a->acls, &a->nacls, i, sizeof *a->acls);
    return 0;
}

json_t *jn_auth_acls_json(const jn_auth_t *a)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < a->nacls; i++) {
        const acl_t *r = &a->acls[i];
        json_t *o = acl_json(r->user, r->perms, r->filter);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

bool jn_auth_allowed(const jn_auth_t *a, const jn_principal_t *p, enum jn_perm perm, const char *subject_or_filter,
                     size_t len)
{
    if (p == NULL || (perm != JN_PERM_PUBLISH && perm != JN_PERM_SUBSCRIBE && perm != JN_PERM_ADMIN))
        return false;
    if (p->admin)
        return true;
    const char *s = subject_or_filter;
    /* ADMIN may be asked without an object (server-wide): only a rule on
     * "#" grants that */
    bool server_wide = perm == JN_PERM_ADMIN && (s == NULL || len == 0);
    if (!server_wide) {
        int rc = perm == JN_PERM_PUBLISH ? jn_subject_validate(s, len) : jn_filter_validate(s, len);
        if (rc != 0)
            return false;
    }
    bool has_rules = false;
    for (size_t i = 0; i < a->nacls; i++) {
        const acl_t *r = &a->acls[i];
        if (strcmp(r->user, p->name) != 0)
            continue;
        has_rules = true;
        if (!(r->perms & (unsigned)perm))
            continue;
        size_t flen = strlen(r->filter);
        bool ok;
        if (server_wide)
            ok = strcmp(r->filter, "#") == 0;
        else if (perm == JN_PERM_PUBLISH)
            ok = jn_filter_match(r->filter, flen, s, len);
        else
            ok = jn_filter_covers(r->filter, flen, s, len);
        if (ok)
            return true;
    }
    return !has_rules && perm != JN_PERM_ADMIN;
}

/* ---- replay ------------------------------------------------------------- */

static const char *get_str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int load_user(jn_auth_t *a, const char *key, json_t *v)
{
    if (v == NULL) {
        size_t i = find_user(a, key);
        if (i != SIZE_MAX)
            remove_index(a->users, &a->nusers, i, sizeof *a->users);
        return 0;
    }
    user_t u;
    memset(&u, 0, sizeof u);
    const char *name = get_str(v, "name");
    json_t *admin = json_object_get(v, "admin");
    json_t *iter = json_object_get(v, "iterations");
    if (!name_valid(name) || strcmp(name, key) != 0 || !json_is_boolean(admin) || !json_is_integer(iter) ||
        json_integer_value(iter) < 1 || json_integer_value(iter) > ITERATIONS_MAX ||
        !b64_decode(get_str(v, "salt"), u.salt, SALT_LEN) ||
        !b64_decode(get_str(v, "stored_key"), u.stored_key, KEY_LEN) ||
        !b64_decode(get_str(v, "server_key"), u.server_key, KEY_LEN))
        return JN_EPROTO;
    snprintf(u.name, sizeof u.name, "%s", name);
    u.admin = json_is_true(admin);
    u.iterations = (uint32_t)json_integer_value(iter);
    int rc = find_user(a, u.name) == SIZE_MAX ? reserve_user(a) : 0;
    if (rc == 0)
        user_apply(a, &u);
    OPENSSL_cleanse(&u, sizeof u);
    return rc;
}

static int load_token(jn_auth_t *a, const char *key, json_t *v)
{
    size_t existing = find_token(a, key);
    if (v == NULL) {
        if (existing != SIZE_MAX) {
            free(a->tokens[existing].description);
            remove_index(a->tokens, &a->ntokens, existing, sizeof *a->tokens);
        }
        return 0;
    }
    const char *id = get_str(v, "id"), *user = get_str(v, "user"), *desc = get_str(v, "description");
    const char *sha = get_str(v, "sha256");
    json_t *created = json_object_get(v, "created");
    if (id == NULL || strcmp(id, key) != 0 || strlen(id) != TOKEN_ID_LEN ||
        memcmp(id, TOKEN_PREFIX, TOKEN_PREFIX_LEN) != 0 || !name_valid(user) || desc == NULL ||
        strnlen(desc, DESCRIPTION_MAX + 1) > DESCRIPTION_MAX || !json_is_integer(created) ||
        !hex_valid(sha, SHA256_HEX))
        return JN_EPROTO;
    token_t t;
    memset(&t, 0, sizeof t);
    memcpy(t.id, id, TOKEN_ID_LEN + 1);
    snprintf(t.user, sizeof t.user, "%s", user);
    t.created = (int64_t)json_integer_value(created);
    memcpy(t.sha256, sha, SHA256_HEX + 1);
    int rc = existing == SIZE_MAX ? reserve_token(a) : 0;
    if (rc != 0)
        return rc;
    if ((t.description = strdup(desc)) == NULL)
        return JN_ENOMEM;
    if (existing != SIZE_MAX) {
        free(a->tokens[existing].description);
        a->tokens[existing] = t;
    } else {
        a->tokens[a->ntokens++] = t;
    }
    return 0;
}

/* Parses a perms array; 0 when malformed. */
static unsigned perms_from_json(json_t *arr)
{
    unsigned perms = 0;
    size_t i;
    json_t *e;
    if (!json_is_array(arr))
        return 0;
    json_array_foreach(arr, i, e) {
        const char *s = json_string_value(e);
        unsigned bit = 0;
        for (unsigned k = 0; s != NULL && k < NPERMS; k++)
            if (strcmp(s, perm_names[k]) == 0)
                bit = 1u << k;
        if (bit == 0)
            return 0;
        perms |= bit;
    }
    return perms;
}

/* Parses "user p1,p2 filter"; false when malformed. */
static bool acl_key_parse(const char *key, char user[USER_NAME_MAX + 1], unsigned *perms, const char **filter)
{
    const char *sp1 = strchr(key, ' ');
    if (sp1 == NULL || (size_t)(sp1 - key) > USER_NAME_MAX)
        return false;
    const char *sp2 = strchr(sp1 + 1, ' ');
    if (sp2 == NULL)
        return false;
    memcpy(user, key, (size_t)(sp1 - key));
    user[sp1 - key] = '\0';
    *perms = 0;
    for (const char *p = sp1 + 1; p < sp2;) {
        const char *end = memchr(p, ',', (size_t)(sp2 - p));
        if (end == NULL)
            end = sp2;
        unsigned bit = 0;
        for (unsigned k = 0; k < NPERMS; k++)
            if (strlen(perm_names[k]) == (size_t)(end - p) && memcmp(p, perm_names[k], (size_t)(end - p)) == 0)
                bit = 1u << k;
        if (bit == 0)
            return false;
        *perms |= bit;
        p = end + 1;
    }
    *filter = sp2 + 1;
    return name_valid(user) && perms_valid(*perms) && filter_ok(*filter);
}

static int load_acl(jn_auth_t *a, const char *key, json_t *v)
{
    char user[USER_NAME_MAX + 1], expect[ACL_KEY_MAX];
    unsigned perms;
    const char *filter;
    if (v == NULL) {
        if (!acl_key_parse(key, user, &perms, &filter))
            return JN_EPROTO;
        size_t i = find_acl(a, user, perms, filter);
        if (i != SIZE_MAX) {
            free(a->acls[i].filter);
            remove_index(a->acls, &a->nacls, i, sizeof *a->acls);
        }
        return 0;
    }
    const char *u = get_str(v, "user");
    filter = get_str(v, "filter");
    perms = perms_from_json(json_object_get(v, "perms"));
    if (!name_valid(u) || !perms_valid(perms) || !filter_ok(filter))
        return JN_EPROTO;
    acl_key(expect, u, perms, filter);
    if (strcmp(expect, key) != 0)
        return JN_EPROTO;
    if (find_acl(a, u, perms, filter) != SIZE_MAX)
        return 0;
    int rc = reserve_acl(a);
    return rc != 0 ? rc : acl_apply(a, u, perms, filter);
}

int jn_auth_load(jn_auth_t *a, const char *kind, const char *key, json_t *value)
{
    if (kind == NULL || key == NULL || (value != NULL && !json_is_object(value)))
        return JN_EPROTO;
    if (strcmp(kind, "user") == 0)
        return load_user(a, key, value);
    if (strcmp(kind, "token") == 0)
        return load_token(a, key, value);
    if (strcmp(kind, "acl") == 0)
        return load_acl(a, key, value);
    return JN_EPROTO;
}
