/* kafka_sasl.c - SASL for the Kafka door: SaslHandshake (v0: raw tokens
 * follow; v1: SaslAuthenticate requests follow), PLAIN, and the server
 * side of SCRAM-SHA-256 (RFC 5802, RFC 7677) over the credentials the core
 * stores (salt, iterations, StoredKey, ServerKey: never the password).
 */
#include "kafka_int.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"

enum { MECH_PLAIN = 1, MECH_SCRAM = 2 };

void jn__kafka_sasl_handshake(kconn_t *kc, const jn_kafka_sasl_handshake_req_t *req)
{
    int16_t err = 0;
    if (kc->authenticated && !kc->principal.anonymous)
        err = JN_KERR_ILLEGAL_SASL_STATE;
    else if (req->mechanism.len == 5 && memcmp(req->mechanism.p, "PLAIN", 5) == 0)
        kc->mech = MECH_PLAIN;
    else if (req->mechanism.len == 13 && memcmp(req->mechanism.p, "SCRAM-SHA-256", 13) == 0)
        kc->mech = MECH_SCRAM;
    else
        err = JN_KERR_UNSUPPORTED_SASL_MECHANISM;
    if (!err) {
        kc->sasl = kc->hdr.api_version == 0 ? KSASL_V0_RAW : KSASL_V1;
        kc->authenticated = false;
    }
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    jn_kw_i16(&w, err);
    jn_kw_array(&w, 2);
    jn_kw_cstr(&w, "PLAIN");
    jn_kw_cstr(&w, "SCRAM-SHA-256");
    jn__kafka_end(kc, &w, mark);
}

static bool principal_for(kconn_t *kc, const char *user)
{
    memset(&kc->principal, 0, sizeof kc->principal);
    snprintf(kc->principal.name, sizeof kc->principal.name, "%s", user);
    json_t *users = jn_auth_users_json(kc->k->auth);
    size_t i;
    json_t *u;
    bool found = false;
    json_array_foreach(users, i, u) {
        const char *n = json_string_value(json_object_get(u, "name"));
        if (n && strcmp(n, user) == 0) {
            kc->principal.admin = json_is_true(json_object_get(u, "admin"));
            found = true;
        }
    }
    json_decref(users);
    return found;
}

/* PLAIN: [authzid] NUL authcid NUL passwd. */
static int sasl_plain(kconn_t *kc, const uint8_t *p, size_t len)
{
    char buf[2200];
    if (len == 0 || len >= sizeof buf)
        return JN_EAUTH;
    memcpy(buf, p, len);
    buf[len] = '\0';
    const char *authz = buf;
    const char *user = memchr(buf, '\0', len) ? buf + strlen(buf) + 1 : NULL;
    if (!user || user >= buf + len)
        return JN_EAUTH;
    const char *pass = user + strlen(user) + 1;
    if (pass > buf + len)
        return JN_EAUTH;
    if (*authz && strcmp(authz, user) != 0)
        return JN_EAUTH;
    jn_principal_t pr;
    if (jn_auth_check_password(kc->k->auth, user, pass, &pr) != 0)
        return JN_EAUTH;
    kc->principal = pr;
    kc->authenticated = true;
    return 0;
}

static size_t b64_encode(const uint8_t *in, size_t n, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Decodes standard base64 of at most |max| output bytes; -1 when invalid. */
static int b64_decode(const char *in, size_t n, uint8_t *out, size_t max)
{
    if (n % 4 || n / 4 * 3 > max + 2)
        return -1;
    uint8_t tmp[256];
    if (n / 4 * 3 > sizeof tmp)
        return -1;
    int len = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)n);
    if (len < 0)
        return -1;
    if (n >= 1 && in[n - 1] == '=')
        len--;
    if (n >= 2 && in[n - 2] == '=')
        len--;
    if ((size_t)len > max)
        return -1;
    memcpy(out, tmp, (size_t)len);
    return len;
}

/* The value of attribute |a| ("r", "p"...) in a comma-separated SCRAM
 * message, as a view. */
static const char *scram_attr(const char *msg, char a, size_t *len)
{
    const char *p = msg;
    while (p && *p) {
        if (p[0] == a && p[1] == '=') {
            const char *e = strchr(p, ',');
            *len = e ? (size_t)(e - p - 2) : strlen(p + 2);
            return p + 2;
        }
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return NULL;
}

/* Client-first: "gs2-header" "n=user,r=cnonce". Returns the server-first
 * message in |out|. */
static int scram_first(kconn_t *kc, const char *msg, char *out, size_t outlen)
{
    if ((msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',')
        return JN_EAUTH;
    const char *c2 = strchr(msg + 2, ',');
    if (!c2)
        return JN_EAUTH;
    const char *bare = c2 + 1;
    size_t ulen, nlen;
    const char *u = scram_attr(bare, 'n', &ulen);
    const char *cn = scram_attr(bare, 'r', &nlen);
    if (!u || !cn || ulen == 0 || ulen > JN_NAME_MAX || nlen == 0 || nlen > 64)
        return JN_EAUTH;
    /* saslname: "=2C" is ',' and "=3D" is '='. */
    size_t k = 0;
    for (size_t i = 0; i < ulen; i++) {
        if (u[i] != '=') {
            kc->scram_user[k++] = u[i];
        } else if (i + 3 <= ulen && memcmp(u + i, "=2C", 3) == 0) {
            kc->scram_user[k++] = ',';
            i += 2;
        } else if (i + 3 <= ulen && memcmp(u + i, "=3D", 3) == 0) {
            kc->scram_user[k++] = '=';
            i += 2;
        } else {
            return JN_EAUTH;
        }
    }
    kc->scram_user[k] = '\0';
    uint8_t salt[16];
    uint32_t iters;
    if (jn_auth_scram_credentials(kc->k->auth, kc->scram_user, salt, &iters, kc->stored_key, kc->server_key) != 0)
        return JN_EAUTH;
    uint8_t rnd[18];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return JN_EAUTH;
    char snonce[32], salt64[32];
    b64_encode(rnd, sizeof rnd, snonce);
    b64_encode(salt, sizeof salt, salt64);
    int n = snprintf(kc->scram_nonce, sizeof kc->scram_nonce, "%.*s%s", (int)nlen, cn, snonce);
    if (n < 0 || (size_t)n >= sizeof kc->scram_nonce)
        return JN_EAUTH;
    n = snprintf(out, outlen, "r=%s,s=%s,i=%u", kc->scram_nonce, salt64, iters);
    if (n < 0 || (size_t)n >= outlen)
        return JN_EAUTH;
    size_t alen = strlen(bare) + 1 + (size_t)n + 1;
    free(kc->scram_auth);
    kc->scram_auth = malloc(alen);
    if (!kc->scram_auth)
        return JN_ENOMEM;
    snprintf(kc->scram_auth, alen, "%s,%s", bare, out);
    return n;
}

/* Client-final: "c=...,r=nonce,p=proof". Returns the server-final. */
static int scram_final(kconn_t *kc, const char *msg, char *out, size_t outlen)
{
    size_t rlen, plen;
    const char *r = scram_attr(msg, 'r', &rlen);
    const char *p = scram_attr(msg, 'p', &plen);
    const char *pp = strstr(msg, ",p=");
    /* The nonce must end with ours, as Kafka checks it: librdkafka sends
     * its client nonce again in front of the combined one. */
    size_t nl = strlen(kc->scram_nonce);
    if (!kc->scram_auth || !r || !p || !pp || rlen < nl || memcmp(r + rlen - nl, kc->scram_nonce, nl)) {
        jn_debug("kafka: SCRAM final: nonce mismatch (%s)", msg);
        return JN_EAUTH;
    }
    uint8_t proof[32];
    if (b64_decode(p, plen, proof, sizeof proof) != 32) {
        jn_debug("kafka: SCRAM final: bad proof encoding");
        return JN_EAUTH;
    }
    size_t alen = strlen(kc->scram_auth) + 1 + (size_t)(pp - msg) + 1;
    char *auth = malloc(alen);
    if (!auth)
        return JN_ENOMEM;
    snprintf(auth, alen, "%s,%.*s", kc->scram_auth, (int)(pp - msg), msg);
    uint8_t sig[32], key[32], stored[32], ssig[32];
    unsigned int sl = 32;
    HMAC(EVP_sha256(), kc->stored_key, 32, (const unsigned char *)auth, strlen(auth), sig, &sl);
    for (int i = 0; i < 32; i++)
        key[i] = proof[i] ^ sig[i];
    EVP_Digest(key, 32, stored, NULL, EVP_sha256(), NULL);
    HMAC(EVP_sha256(), kc->server_key, 32, (const unsigned char *)auth, strlen(auth), ssig, &sl);
    free(auth);
    if (CRYPTO_memcmp(stored, kc->stored_key, 32) != 0) {
        jn_debug("kafka: SCRAM final: proof mismatch for '%s'", kc->scram_user);
        return JN_EAUTH;
    }
    char s64[64];
    b64_encode(ssig, 32, s64);
    int n = snprintf(out, outlen, "v=%s", s64);
    if (!principal_for(kc, kc->scram_user))
        return JN_EAUTH;
    kc->authenticated = true;
    return n;
}

/* Runs one SASL step. Returns the length of the server token in |out|
 * (0 allowed), or JN_EAUTH. */
static int sasl_step(kconn_t *kc, const uint8_t *p, size_t len, char *out, size_t outlen)
{
    if (kc->mech == MECH_PLAIN)
        return sasl_plain(kc, p, len);
    if (kc->mech != MECH_SCRAM || len == 0 || len > 1024)
        return JN_EAUTH;
    char msg[1025];
    memcpy(msg, p, len);
    msg[len] = '\0';
    if (memchr(p, '\0', len))
        return JN_EAUTH;
    if (!kc->scram_auth)
        return scram_first(kc, msg, out, outlen);
    int rc = scram_final(kc, msg, out, outlen);
    free(kc->scram_auth);
    kc->scram_auth = NULL;
    return rc;
}

void jn__kafka_sasl_authenticate(kconn_t *kc, const jn_kafka_sasl_authenticate_req_t *req)
{
    char out[512];
    int n = JN_EAUTH;
    int16_t err = 0;
    const char *msg = NULL;
    if (kc->sasl != KSASL_V1 || kc->authenticated) {
        err = JN_KERR_ILLEGAL_SASL_STATE;
        msg = "SaslHandshake first";
    } else {
        n = sasl_step(kc, req->auth_bytes, (size_t)req->auth_len, out, sizeof out);
        if (n < 0) {
            err = JN_KERR_SASL_AUTHENTICATION_FAILED;
            msg = "Authentication failed: invalid credentials";
            jn_info("kafka: %s: SASL authentication failed", jn_conn_peer(kc->conn));
        }
    }
    jn_kwriter_t w;
    size_t mark;
    jn__kafka_begin(kc, &w, &mark);
    jn_kw_i16(&w, err);
    jn_kw_cstr(&w, msg);
    jn_kw_bytes(&w, out, n > 0 ? n : 0);
    if (kc->hdr.api_version >= 1)
        jn_kw_i64(&w, 0);
    jn_kw_tags(&w);
    jn__kafka_end(kc, &w, mark);
    if (err)
        jn_conn_close(kc->conn); /* Kafka closes after a failed authentication */
}

void jn__kafka_sasl_raw(kconn_t *kc, const uint8_t *p, size_t len)
{
    char out[512];
    int n = sasl_step(kc, p, len, out, sizeof out);
    if (n < 0) {
        jn_info("kafka: %s: SASL authentication failed", jn_conn_peer(kc->conn));
        jn_conn_close(kc->conn);
        return;
    }
    uint8_t hdr[4];
    jn_store_be32(hdr, (uint32_t)n);
    if (jn_conn_write(kc->conn, hdr, 4) != 0 || (n > 0 && jn_conn_write(kc->conn, out, (size_t)n) != 0))
        jn_conn_abort(kc->conn);
    if (kc->authenticated)
        kc->sasl = KSASL_NONE;
}
